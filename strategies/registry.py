"""Strategies by name: built-ins, ``+``-joined interventions, and users' own plugins.

A name is ``base[+modifier...]`` (``grow+moment_transplant+two_speed``), or a user plugin given as
``path/to/file.py:ClassName``, ``package.module:ClassName``, or the name of an entry point in the group
``plasticity_bench.strategies``. A user plugin (class or function) is called with one
:class:`~plasticity_bench.strategies.base.StrategyConfig` and returns an Avalanche plugin or a list of them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from avalanche.core import BasePlugin

from plasticity_bench.core.options import Option, did_you_mean
from plasticity_bench.measure.cohorts import DIAG_EVERY, DIAG_HORIZON, DIAGNOSTICS, CohortDiagnostics
from plasticity_bench.strategies.base import STRUCTURAL_OPTIONS, StrategyConfig, StructuralPlugin
from plasticity_bench.strategies.dyno import DYNO_OPTIONS, dyno_plugin, reserve_factor
from plasticity_bench.strategies.grow import SELECTOR, GrowPlugin
from plasticity_bench.strategies.modifiers import BASELINES, MODIFIERS, check_modifiers
from plasticity_bench.strategies.prune import (
    PRUNE_OPTIONS,
    REWIND,
    REWIND_LR,
    REWIND_POINT,
    REWIND_SCOPE,
    PrunePlugin,
)

PluginFactory = Callable[[StrategyConfig], BasePlugin | list[BasePlugin]]
ENTRY_POINT_GROUP = "plasticity_bench.strategies"


@dataclass(frozen=True)
class StrategyEntry:
    """A registered base strategy.

    ``factory`` builds the plugins; ``structural`` is False for Dense (compactness does not apply);
    ``width_factor`` scales the model's hidden widths (DYNO's reserve); ``options`` are the run options the
    strategy reads (:mod:`plasticity_bench.core.options`); ``fixed_lr``: the strategy runs at the scenario's
    learning rate only, even in an lr sweep (Dense in LC26 Table 14, docs/protocol.md §7); ``batchable``:
    its runs may share a run-batch (docs/protocol.md §12).
    """

    factory: PluginFactory
    structural: bool = True
    width_factor: Callable[[StrategyConfig], float] = lambda config: 1.0
    options: tuple[Option, ...] = ()
    fixed_lr: bool = False
    batchable: bool = True


def _dense(config: StrategyConfig) -> list[BasePlugin]:
    return []


def _grow(config: StrategyConfig) -> list[BasePlugin]:
    return [GrowPlugin(config, selector=SELECTOR.get(config.options))]


def _prune(config: StrategyConfig) -> list[BasePlugin]:
    o = config.options
    scope, point, lr = REWIND_SCOPE.get(o), REWIND_POINT.get(o), REWIND_LR.get(o)
    return [PrunePlugin(config, REWIND.get(o), scope=scope, point=point, lr=lr)]


def _baseline(name: str) -> StrategyEntry:
    """Dense with one baseline (a remedy or Avalanche CL strategy, docs/protocol.md §14): ``redo`` is
    ``dense`` + ReDo; swept over the lr like every method but Dense."""
    modifier = BASELINES[name]
    return StrategyEntry(
        lambda config: modifier(config, []), structural=False, options=modifier.options, batchable=False
    )


STRATEGIES: dict[str, StrategyEntry] = {
    "dense": StrategyEntry(_dense, structural=False, fixed_lr=True),
    "grow": StrategyEntry(_grow, options=(*STRUCTURAL_OPTIONS, SELECTOR)),
    "prune": StrategyEntry(_prune, options=(*STRUCTURAL_OPTIONS, *PRUNE_OPTIONS)),
    # DYNO sizes itself by effective dimension: no compactness budget, so a sweep runs it once (c = 1.0).
    "dyno": StrategyEntry(dyno_plugin, structural=False, width_factor=reserve_factor, options=DYNO_OPTIONS),
    **{name: _baseline(name) for name in BASELINES},
}

__all__ = [
    "MODIFIERS", "STRATEGIES", "batchable", "build_plugins", "entry_for", "options_for", "plugin_reports"
]  # fmt: skip


def is_user_plugin(name: str) -> bool:
    """True for ``file.py:Class`` / ``module:Class`` / entry-point names (not built-in names)."""
    return ":" in name or (name.split("+")[0] not in STRATEGIES and name in _entry_point_names())


def _entry_point_names() -> set[str]:
    return {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_user_factory(name: str) -> PluginFactory:
    """Load a user plugin class/function from ``file.py:Name``, ``module:Name`` or an entry point.

    Raises:
        ValueError: if the file, module or attribute does not exist, naming what was tried.
    """
    if ":" not in name:
        (ep,) = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        return ep.load()
    target, _, attr = name.rpartition(":")
    if not target.strip() or not attr.strip():
        raise ValueError(f"--strategy {name!r}: a user strategy is path/file.py:Class or module:Class")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ValueError(f"strategy file {path} not found (from --strategy {name})")
        module = _file_module(str(path.resolve()))
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise ValueError(f"cannot import module {target!r} for --strategy {name}: {err}") from err
    if not hasattr(module, attr):
        raise ValueError(f"{target} has no attribute {attr!r} (from --strategy {name})")
    return getattr(module, attr)


def plugin_source(name: str) -> str | None:
    """The hex sha256 of the source file that defines user strategy ``name`` (None for built-in names):
    part of its runs' identity, so editing the file makes new runs (docs/protocol.md §16). Only that file
    counts, not the modules it imports.

    Raises:
        ValueError: as :func:`load_user_factory`.
    """
    if not is_user_plugin(name):
        return None
    load_user_factory(name)  # the file, module or entry point exists (or the error names it)
    target = name.rpartition(":")[0]
    if target.endswith(".py"):
        source = target
    else:
        module = target or next(e for e in entry_points(group=ENTRY_POINT_GROUP) if e.name == name).module
        source = getattr(importlib.import_module(module), "__file__", None)
    if source is None:
        raise ValueError(f"--strategy {name}: its source file cannot be found (a namespace package?)")
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()


@functools.cache
def _file_module(path: str) -> ModuleType:
    """The module of a user strategy file, executed once per process: every config of a sweep gets the same
    class objects (``path``: absolute)."""
    spec = importlib.util.spec_from_file_location(f"user_strategy_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise ValueError(f"strategy file {path}, line {err.lineno}: {err.msg} (--debug shows it)") from err
    except Exception as err:  # the file's own imports or top-level code: one line, not a traceback
        frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == path]
        line = f", line {frames[-1].lineno}" if frames else ""
        raise ValueError(
            f"strategy file {path}{line}: loading it raised {type(err).__name__}: {err} (--debug shows the "
            "traceback)"
        ) from err
    return module


def split_name(name: str) -> tuple[str, tuple[str, ...]]:
    """``grow+a+b`` -> ``("grow", ("a", "b"))``."""
    base, *mods = name.split("+")
    return base, tuple(mods)


def entry_for(name: str) -> StrategyEntry:
    """The registry entry of a strategy name.

    A user plugin gets a structural entry whose options are the structural ones plus those its factory
    declares in an ``OPTIONS`` attribute (a tuple of :class:`~plasticity_bench.core.options.Option`).

    Raises:
        ValueError: for an unknown base name or modifier, listing the valid choices.
    """
    if is_user_plugin(name):
        factory = load_user_factory(name)
        options = (*STRUCTURAL_OPTIONS, *getattr(factory, "OPTIONS", ()))
        return StrategyEntry(factory, options=options, batchable=getattr(factory, "BATCHABLE", False) is True)
    base, mods = split_name(name)
    if base not in STRATEGIES:
        hint = did_you_mean(base, STRATEGIES)
        raise ValueError(
            f"unknown strategy {base!r}{hint}; choose one of {sorted(STRATEGIES)}, a user plugin "
            "'path/to/file.py:ClassName' / 'module:ClassName', or an entry point in "
            f"{ENTRY_POINT_GROUP!r}"
        )
    try:
        check_modifiers(base, mods)
    except ValueError as err:
        raise ValueError(f"{err} (in strategy {name!r})") from err
    return STRATEGIES[base]


def batchable(name: str) -> bool:
    """True when runs of strategy ``name`` may share a run-batch: its base entry and every modifier allow it
    (a user plugin opts in with the class attribute ``BATCHABLE = True``: it has been written for the
    per-run stand-in of docs/protocol.md §12).

    Raises:
        ValueError: as :func:`entry_for`.
    """
    entry = entry_for(name)
    if is_user_plugin(name):
        return entry.batchable
    return entry.batchable and all(MODIFIERS[mod].batchable for mod in split_name(name)[1])


def options_for(name: str) -> tuple[Option, ...]:
    """The run options strategy ``name`` reads: its base entry's and its modifiers' (in that order).

    Raises:
        ValueError: as :func:`entry_for`.
    """
    entry = entry_for(name)
    if is_user_plugin(name):
        return entry.options
    return (*entry.options, *(o for mod in split_name(name)[1] for o in MODIFIERS[mod].options))


def build_plugins(config: StrategyConfig) -> list[BasePlugin]:
    """The Avalanche plugins of ``config.name`` (modifiers applied in the order given).

    Every structural plugin (Grow, Prune and their variants, structural user plugins) gets a
    :class:`~plasticity_bench.measure.cohorts.CohortDiagnostics` (docs/protocol.md §9) unless
    ``options["diagnostics"]`` is false; ``diag_every`` / ``diag_horizon`` set its curve spacing/length.

    Raises:
        ValueError: for unknown names (see :func:`entry_for`), a user factory that is not callable or fails
            when called with the ``StrategyConfig``, or a factory returning a non-plugin.
    """
    factory = entry_for(config.name).factory
    made = factory(config) if not is_user_plugin(config.name) else _call_user_factory(factory, config)
    plugins = list(made) if isinstance(made, list | tuple) else [made]
    if not is_user_plugin(config.name):
        for mod in config.modifiers:
            plugins = MODIFIERS[mod](config, plugins)
    bad = [p for p in plugins if not isinstance(p, BasePlugin)]
    if bad:
        kinds = ", ".join(sorted({type(p).__name__ for p in bad}))
        raise ValueError(f"strategy {config.name!r} returned {kinds}, not Avalanche plugins; return plugins")
    return plugins + _diagnostics(config, plugins)


def _call_user_factory(factory: Any, config: StrategyConfig) -> Any:
    """``factory(config)`` for a user plugin, its failure reported as the user's input error."""
    hint = "give a plugin class or function that takes a StrategyConfig and returns Avalanche plugins"
    if not callable(factory):
        raise ValueError(f"strategy {config.name!r} is not callable; {hint}")
    try:
        return factory(config)
    except Exception as err:  # the user's code: any failure is an input error, reported in one line
        raise ValueError(
            f"strategy {config.name!r} failed when built ({type(err).__name__}: {err}); {hint}"
        ) from err


def _diagnostics(config: StrategyConfig, plugins: list[BasePlugin]) -> list[BasePlugin]:
    if not DIAGNOSTICS.get(config.options):
        return []
    every, horizon = DIAG_EVERY.get(config.options), DIAG_HORIZON.get(config.options)
    return [CohortDiagnostics(p, every, horizon) for p in plugins if isinstance(p, StructuralPlugin)]


def plugin_reports(plugins: list[BasePlugin]) -> dict[str, Any]:
    """Merged ``report()`` dicts of the plugins that offer one (extra top-level record keys).

    ``CohortDiagnostics`` gives ``diagnostics`` (docs/protocol.md §9 rows), ``DynoPlugin`` gives ``dyno``
    (active width per layer over time, change events).
    """
    reports: dict[str, Any] = {}
    for plugin in plugins:
        if callable(getattr(plugin, "report", None)):
            reports.update(plugin.report())
    return reports
