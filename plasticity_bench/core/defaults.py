"""Defaults that the command line shows before anything heavy is imported (``--help`` answers at once)."""

#: Updates per point of a record's within-task learning curve: a full Permuted-MNIST run (500 tasks x 625
#: updates) stores 500 x 20 = 10,000 points [ours] (docs/protocol.md §1).
CURVE_BIN = 32
#: When a run saves its training state (``--checkpoint-every``) [ours]: a few MB every 10 minutes costs
#: nothing next to the run.
CHECKPOINT_EVERY = "10m"
#: The published tables ``plasticity-bench reproduce`` knows (docs/protocol.md §10).
TABLE_NAMES = ("lc26-table14", "lc26-leaderboard")
