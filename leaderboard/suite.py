"""The benchmark's suites: the sweep files shipped in the repository's ``sweeps/`` folder, installed as the
package data ``plasticity_bench.leaderboard.suites``, so ``plasticity-bench run lc26_table14`` works from
any install (docs/protocol.md §10: the LC26 Table 14 grid, its smoke version)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SUITES = "plasticity_bench.leaderboard.suites"


def suite_names() -> list[str]:
    """The shipped suites' names (their file names without ``.yaml``), sorted."""
    files = resources.files(SUITES).iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def suite_path(name: str) -> Path:
    """The sweep file of suite ``name``.

    Raises:
        ValueError: for a name that is no shipped suite (the valid names are listed).
    """
    if name not in suite_names():
        raise ValueError(
            f"{name}: neither a sweep file nor a suite; suites: {', '.join(suite_names())} "
            "(plasticity-bench list suites)"
        )
    return Path(str(resources.files(SUITES) / f"{name}.yaml"))


def suite_summary(name: str) -> str:
    """The first line of suite ``name``'s header comment (what it runs)."""
    first = suite_path(name).read_text(encoding="utf-8").splitlines()[0]
    return first.lstrip("# ").strip()


def sweep_file(given: Path) -> Path:
    """``given`` when it names a file (it exists, has a suffix or a folder), else the sweep file of the
    suite of that name.

    Raises:
        ValueError: for a bare name that is no suite.
    """
    return given if given.exists() or given.suffix or len(given.parts) > 1 else suite_path(str(given))
