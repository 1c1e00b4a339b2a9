"""The Layout table of README.md and docs/architecture.md: per layer, its files, lines and longest function
(lines from ``def`` to the end, signature and docstring included).

Usage: python bench/layout.py   (prints the Markdown table)
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = {
    "core": "plasticity_bench/core", "measure": "plasticity_bench/measure", "scenarios": "scenarios",
    "strategies": "strategies", "run": "plasticity_bench/run", "batch": "plasticity_bench/batch",
    "sweep": "plasticity_bench/sweep", "leaderboard": "leaderboard", "views": "plasticity_bench/views",
    "cli": "plasticity_bench/cli.py",
}  # fmt: skip


def longest(path: Path) -> tuple[int, str]:
    """The longest function of ``path``: its length in lines and ``module.name``."""
    found = [(0, "")]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.append((node.end_lineno - node.lineno + 1, f"{path.stem}.{node.name}"))
    return max(found)


def row(name: str, where: str) -> str:
    """The table row of layer ``name`` (its files under ``where``)."""
    root = REPO / where
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    lines = sum(len(f.read_text().splitlines()) for f in files)
    size, function = max(longest(f) for f in files)
    return f"| `{name}` | {len(files)} | {lines:,} | `{function}` ({size}) |"


def main() -> None:
    print("| layer | files | lines | longest function |\n|---|---|---|---|")
    print("\n".join(row(name, where) for name, where in LAYERS.items()))


if __name__ == "__main__":
    main()
