"""Strategy registry: built-in names, modifiers, and users' plugins by module path or entry point."""

from __future__ import annotations

import re
from importlib.metadata import EntryPoint

import pytest

from plasticity_bench.measure.cohorts import CohortDiagnostics
from plasticity_bench.scenarios.registry import parse_scenario
from plasticity_bench.strategies import registry
from plasticity_bench.strategies.base import StrategyConfig
from plasticity_bench.strategies.grow import GrowPlugin
from plasticity_bench.strategies.prune import PrunePlugin
from plasticity_bench.strategies.registry import entry_for


def config(name: str) -> StrategyConfig:
    return StrategyConfig(name, compactness=0.5, cycles=2, n_tasks=2)


def test_module_path_plugin_is_built_with_the_config() -> None:
    plugin, diagnostics = registry.build_plugins(config("plasticity_bench.strategies.prune:PrunePlugin"))
    assert isinstance(plugin, PrunePlugin)
    assert plugin.config.compactness == 0.5
    assert isinstance(diagnostics, CohortDiagnostics)  # every structural plugin gets docs/protocol.md §9


def test_entry_point_plugin_is_found_by_its_short_name(monkeypatch: pytest.MonkeyPatch) -> None:
    point = EntryPoint(
        name="my_grow", value="plasticity_bench.strategies.grow:GrowPlugin", group=registry.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(registry, "entry_points", lambda group: [point] if group == point.group else [])
    assert registry.is_user_plugin("my_grow")
    plugin, diagnostics = registry.build_plugins(config("my_grow"))
    assert type(plugin) is GrowPlugin
    assert isinstance(diagnostics, CohortDiagnostics)


def test_unknown_names_say_what_exists() -> None:
    with pytest.raises(ValueError, match="choose one of") as err:
        registry.entry_for("grwo")
    assert "dense" in str(err.value) and "plasticity_bench.strategies" in str(err.value)
    with pytest.raises(ValueError, match="not found"):
        registry.entry_for("missing/file.py:Thing")
    with pytest.raises(ValueError, match="has no attribute"):
        registry.entry_for("plasticity_bench.strategies.grow:NoSuchPlugin")


def test_factory_must_return_plugins() -> None:
    with pytest.raises(ValueError, match="returned str, not Avalanche plugins"):
        registry.build_plugins(config("builtins:repr"))


@pytest.mark.parametrize(
    ("make", "hint"),
    [
        (lambda: entry_for("grwo"), "unknown strategy 'grwo' (did you mean 'grow'?)"),
        (lambda: entry_for("grow+two_sped"), "['two_sped'] (did you mean 'two_speed'?)"),
        (
            lambda: parse_scenario("permutd_mnist"),
            "unknown scenario 'permutd_mnist' (did you mean 'permuted_mnist'?)",
        ),
    ],
)
def test_a_mistyped_name_gets_the_closest_choice(make, hint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(hint)):
        make()
    with pytest.raises(ValueError) as far:
        entry_for("xyzzy")
    assert "did you mean" not in str(far.value)
