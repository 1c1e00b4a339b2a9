"""Sweep files: a sweep as YAML (``plasticity-bench run my_sweep.yaml``; the shipped ones are suites:
``plasticity-bench run lc26_table14``).

A sweep file holds the grid (what is run), never the machine (where and how fast: ``--data-root``,
``--device``, ``--workers``, ``--out`` stay on the command line). Keys and their types::

    scenarios: [permuted_mnist, split_cifar100]      # list, each name[@variant]
    strategies: [dense, grow, grow+two_speed]         # list
    compactness: [0.2, 0.3, 0.4, 0.5]                 # list of fractions in (0, 1]
    seeds: 5                                          # count or list
    select_seeds: 3                                   # count (after the seeds) or list; optional
    lrs: [0.01, 0.001, 0.0001]                        # optional; default: each scenario's lr
    options: {rewind: imp}                            # optional run options (docs/protocol.md §11)
    preset: paper                                     # demo | paper (default paper)
    tasks: 2, steps: 3, batch_size: 64, model: mlp, cycles: 5, schedule: neutral, winning_ticket: false

Every key is checked (unknown keys, wrong types) before any run starts, and the grid then goes through the
same validation as the flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class SweepGrid:
    """What a sweep runs: for every scenario, every strategy x compactness x lr x seed."""

    scenarios: list[str]
    strategies: list[str] = field(default_factory=lambda: ["dense", "grow", "prune"])
    compactness: list[float] = field(default_factory=lambda: [0.5])
    seeds: int | list[int] = 3
    select_seeds: int | list[int] | None = None
    lrs: list[float] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    preset: str = "paper"
    tasks: int | None = None
    steps: int | None = None
    batch_size: int | None = None
    model: str | None = None
    cycles: int | None = None
    schedule: str = "neutral"
    winning_ticket: bool = False


#: key -> (accepted Python types, description for errors)
KEY_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "scenarios": ((list,), "a list of scenario names"),
    "strategies": ((list,), "a list of strategy names"),
    "compactness": ((list,), "a list of fractions"),
    "seeds": ((int, list), "a count or a list of seeds"),
    "select_seeds": ((int, list), "a count or a list of seeds"),
    "lrs": ((list,), "a list of learning rates"),
    "options": ((dict,), "a mapping of run options"),
    "preset": ((str,), "demo or paper"),
    "tasks": ((int,), "an integer"),
    "steps": ((int,), "an integer"),
    "batch_size": ((int,), "an integer"),
    "model": ((str,), "a model name"),
    "cycles": ((int,), "an integer"),
    "schedule": ((str,), "a schedule name"),
    "winning_ticket": ((bool,), "true or false"),
}
ELEMENT_TYPES = {
    "scenarios": (str,), "strategies": (str,), "compactness": (int, float), "seeds": (int,),
    "select_seeds": (int,), "lrs": (int, float),
}  # fmt: skip


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no Python tags) that refuses a mapping with a key given twice: with the plain
    loader the later value silently wins."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (keep one)", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error on one line: the problem and where (``line 3, column 1``)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def load_sweep(path: Path) -> SweepGrid:
    """Read and check a sweep file.

    Raises:
        ValueError: the file is missing, not UTF-8 text or not YAML, repeats a key, is not a mapping, has
            unknown keys (the valid ones are listed), a value of the wrong type, or no ``scenarios``.
    """
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # safe: no tags
    except OSError as err:
        raise ValueError(f"sweep file {path}: cannot read it ({err.strerror or err})") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"sweep file {path}: not a YAML text file (byte {err.start} is not UTF-8)") from err
    except yaml.YAMLError as err:
        raise ValueError(f"sweep file {path}: not valid YAML ({yaml_problem(err)})") from err
    if not isinstance(data, dict):
        raise ValueError(f"sweep file {path}: expected a mapping of keys ({', '.join(KEY_TYPES)})")
    unknown = sorted(set(data) - set(KEY_TYPES))
    if unknown:
        raise ValueError(
            f"sweep file {path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(KEY_TYPES)}"
        )
    for key, value in data.items():
        _check_type(path, key, value)
    if not data.get("scenarios"):
        raise ValueError(f"sweep file {path}: 'scenarios' is required (a list of scenario names)")
    return SweepGrid(**{f.name: data[f.name] for f in fields(SweepGrid) if f.name in data})


def _check_type(path: Path, key: str, value: Any) -> None:
    types, what = KEY_TYPES[key]
    bad = isinstance(value, bool) and bool not in types
    if bad or not isinstance(value, types):
        raise ValueError(f"sweep file {path}: {key} must be {what}, got {value!r}")
    element = ELEMENT_TYPES.get(key)
    if not (element and isinstance(value, list)):
        return
    if not value or any(isinstance(v, bool) or not isinstance(v, element) for v in value):
        raise ValueError(f"sweep file {path}: {key} must be {what}, got {value!r}")
