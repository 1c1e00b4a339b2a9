"""Who reads which run option: the catalogue behind ``plasticity-bench options`` and the README table."""

from __future__ import annotations

from plasticity_bench.core.options import Option
from plasticity_bench.run.config import WT_INIT
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.strategies.modifiers import MODIFIERS
from plasticity_bench.strategies.registry import STRATEGIES
from plasticity_bench.sweep.plan import scenario_options


def option_users() -> list[tuple[Option, list[str]]]:
    """Every declared option once, in declaration order, with the scenarios / strategies / modifiers that
    read it (``+name`` for a modifier, ``--winning-ticket`` for the ticket's option)."""
    users: dict[str, tuple[Option, list[str]]] = {}

    def add(option: Option, user: str) -> None:
        users.setdefault(option.name, (option, []))[1].append(user)

    for name, spec in SCENARIOS.items():
        for option in scenario_options(spec):
            add(option, name)
    for name, entry in STRATEGIES.items():
        for option in entry.options:
            add(option, name)
    for name, modifier in MODIFIERS.items():
        for option in modifier.options:
            add(option, f"+{name}")
    add(WT_INIT, "--winning-ticket")
    return [(option, _compress(names)) for option, names in users.values()]


def _compress(names: list[str]) -> list[str]:
    """Scenario lists shortened: every SGD scenario -> ``SGD scenarios``."""
    sgd = [n for n, spec in SCENARIOS.items() if spec.optimizer == "sgd"]
    if set(sgd) <= set(names) and len(sgd) > 1:
        return ["SGD scenarios", *(n for n in names if n not in sgd)]
    return names
