"""The package is layered (docs/architecture.md): each layer imports only from the layers below it (and
from its own), so a plugin author knows what a strategy may import and a view never pulls in training."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Layer of every subpackage, bottom first (docs/architecture.md draws the same stack).
LAYERS = {
    "core": 0, "measure": 1, "scenarios": 2, "strategies": 2, "run": 3, "batch": 4, "sweep": 5,
    "leaderboard": 6, "views": 7, "cli": 8,
}  # fmt: skip
FOLDERS = {
    "scenarios": REPO / "scenarios",
    "strategies": REPO / "strategies",
    "leaderboard": REPO / "leaderboard",
}


def modules() -> list[tuple[str, Path]]:
    """(layer name, file) of every module of the package."""
    found = [(path.parent.name, path) for path in (REPO / "plasticity_bench").glob("*/*.py")]
    found += [(name, path) for name, folder in FOLDERS.items() for path in folder.glob("*.py")]
    found += [("cli", REPO / "plasticity_bench" / "cli.py")]
    return found


def imported_layers(path: Path) -> set[str]:
    """The layers ``path`` imports from (``plasticity_bench.<layer>...``)."""
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "plasticity_bench" and len(parts) > 1:
                layers.add(parts[1])
    return layers


@pytest.mark.parametrize(("layer", "path"), modules(), ids=[str(p.relative_to(REPO)) for _, p in modules()])
def test_each_module_imports_only_downward(layer: str, path: Path) -> None:
    above = {other for other in imported_layers(path) if LAYERS.get(other, -1) > LAYERS[layer]}
    assert not above, f"{path.relative_to(REPO)} ({layer}) imports from layers above it: {sorted(above)}"


def test_every_module_sits_in_a_layer() -> None:
    assert {layer for layer, _ in modules()} == set(LAYERS)
    assert not list((REPO / "plasticity_bench").glob("[!_]*.py"))[1:], "only cli.py lives at the top"
