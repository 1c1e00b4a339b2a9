"""Compare two results folders made by ``bench/same_records.sh`` before and after a change.

Every record of BEFORE must have a record at the same path in AFTER with the same content but for the
fields that hold time or the code's identity (``created``, ``wall_seconds``, ``batched.wall_seconds``,
``code.commit``, ``code.dirty``) and the fields named after the folders, which a change adds (dotted:
``summary.train_flops``). Prints one line per difference and exits 1 when there is any.

Usage: python bench/same_records.py BEFORE AFTER [FIELD ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TIMING = ("created", "wall_seconds")


def comparable(path: Path, added: tuple[str, ...] = ()) -> dict:
    """The record at ``path`` without its timing and commit fields and the ``added`` (dotted) fields."""
    record = json.loads(path.read_text())
    for key in TIMING:
        record.pop(key, None)
    for dotted in added:
        *parents, last = dotted.split(".")
        part = record
        for name in parents:
            part = part.get(name, {})
        part.pop(last, None)
    record.get("batched", {}).pop("wall_seconds", None)
    for key in ("commit", "dirty"):
        record.get("code", {}).pop(key, None)
    return record


def differences(before: Path, after: Path, added: tuple[str, ...] = ()) -> list[str]:
    """One line per record of ``before`` that ``after`` lacks or holds differently (``added`` left out)."""
    lines = []
    paths = sorted(p.relative_to(before) for p in before.rglob("*.json") if p.parent.name != "logs")
    for rel in paths:
        if not (after / rel).exists():
            lines.append(f"missing {rel}")
        elif comparable(before / rel, added) != comparable(after / rel, added):
            lines.append(f"differs {rel}")
    return lines


def main() -> int:
    before, after = (Path(a) for a in sys.argv[1:3])
    lines = differences(before, after, tuple(sys.argv[3:]))
    print("\n".join(lines) or f"identical: {len(list(before.rglob('*.json')))} records")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
