"""The shipped sweep files: the leaderboard's suites (``plasticity_bench.leaderboard.suites``)."""
