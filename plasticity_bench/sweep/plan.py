"""Planning a sweep: a scenario, strategies, compactness levels, seeds and learning rates become
:class:`~plasticity_bench.run.config.RunConfig` objects (:func:`expand`), every name, value and option
validated before any run starts; which options a run reads (:func:`used_options`) and which runs are still
to do (:func:`pending`)."""

from __future__ import annotations

import itertools
import math
from typing import Any

from plasticity_bench.core.budget import SCHEDULES, check_compactness, edit_schedule
from plasticity_bench.core.networks import CONV_UNIT_NETWORKS, NETWORK_NAMES, NETWORK_OPTIONS
from plasticity_bench.core.options import Option, by_name, check_known, resolve
from plasticity_bench.run.config import MOMENTUM, WT_INIT, RunConfig, weight_decay_options
from plasticity_bench.run.records import ResultStore
from plasticity_bench.scenarios.registry import ScenarioSpec, parse_scenario
from plasticity_bench.strategies.base import EDIT_EVERY_TASKS, EDIT_PLACEMENT
from plasticity_bench.strategies.registry import entry_for, options_for, plugin_source, split_name
from plasticity_bench.strategies.replay import ONLINE_ROWS, REPLAY_MIX


def sweep_base(
    spec: ScenarioSpec,
    tasks: int,
    steps: int | None = None,
    batch_size: int | None = None,
    model: str | None = None,
    cycles: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The non-swept :class:`RunConfig` fields of a sweep on ``spec`` with ``tasks`` tasks: docs/protocol.md
    §7 sizes where a value is ``None``. Steps per task follow the batch size ("N epochs"); cycles follow the
    scenario (one edit per task on Split-*). ``extra``: further fields (schedule, device, ...)."""
    batch = batch_size or spec.batch_size
    return {
        "lr": spec.lr,
        "model": model or spec.model,
        "tasks": tasks,
        "steps_per_task": steps or spec.steps_for(batch),
        "batch_size": batch,
        "optimizer": spec.optimizer,
        "cycles": cycles or spec.cycles_for(tasks),
        **extra,
    }


def scenario_options(spec: ScenarioSpec, model: str | None = None) -> tuple[Option, ...]:
    """The run options a scenario reads: its builder's, SGD ``momentum``, its weight decay's, Tiny ER's
    ``replay_mix`` and ``online_rows``, and those of its network (``model``, default the scenario's: VGG11's
    ``weights`` and ``width_scale``)."""
    extra = (MOMENTUM,) if spec.optimizer == "sgd" else ()
    network = NETWORK_OPTIONS.get(model or spec.model, ())
    replay = (REPLAY_MIX, ONLINE_ROWS) if spec.replay else ()
    return (*spec.options, *extra, *weight_decay_options(spec.weight_decay), *replay, *network)


def used_options(
    spec: ScenarioSpec, strategy: str, winning_ticket: bool, model: str | None = None
) -> dict[str, Option]:
    """Every option a run of ``strategy`` on ``spec`` (with network ``model``, default the scenario's)
    reads (``wt_init`` only with a winning ticket).

    Raises:
        ValueError: for an unknown strategy; for two declarations of one option name.
    """
    ticket = (WT_INIT,) if winning_ticket else ()
    return by_name((*scenario_options(spec, model), *options_for(strategy), *ticket))


def run_lrs(entry_fixed_lr: bool, lrs: list[float], scenario_lr: float) -> list[float]:
    """Learning rates of one strategy in a sweep: ``lrs``, except that a fixed-lr strategy (Dense, on the
    six benchmarks of LC26 Table 14 only: ``ScenarioSpec.table14``) runs at the scenario's lr only when
    several lrs are swept (LC26 Sec. 6; docs/protocol.md §7). Elsewhere A.2 sweeps "all relevant methods"."""
    return [scenario_lr] if entry_fixed_lr and len(lrs) > 1 else lrs


def expand(
    scenario: str,
    strategies: list[str],
    compactness: list[float],
    seeds: list[int],
    base: dict[str, Any],
    options: dict[str, Any] | None = None,
    lrs: list[float] | None = None,
    select_seeds: list[int] | None = None,
) -> list[RunConfig]:
    """All run configs of a sweep; non-structural strategies (Dense, DYNO) run once at compactness 1.0.

    Args:
        base: the remaining :class:`RunConfig` fields (lr, model, tasks, ...); ``base["lr"]`` is used when
            ``lrs`` is not given.
        options: ``--option`` values (strings or typed); each config gets the ones its scenario and
            strategy read, typed, with every other option at its default.
        lrs: learning rates to sweep; with several, fixed-lr strategies (Dense) run at ``base["lr"]`` only
            on the LC26 Table 14 benchmarks (:func:`run_lrs`).
        select_seeds: extra seeds for lr selection (docs/protocol.md §7), run only for strategies whose lr
            is swept.

    Every name, compactness value and option is validated before any run starts.

    Raises:
        ValueError: for an unknown scenario or strategy, a compactness outside (0, 1], or an option that
            no strategy of the sweep reads or of the wrong type (``OptionError``).
    """
    spec, variant = parse_scenario(scenario)
    for c in compactness:
        check_compactness(c)
    check_fields(base, lrs or [base["lr"]], seeds + list(select_seeds or []))
    given = dict(options or {})
    wt = bool(base.get("winning_ticket", False))
    used = {name: used_options(spec, name, wt, base.get("model")) for name in strategies}
    known = {k: o for table in used.values() for k, o in table.items()}
    check_known(given, known, f"{scenario} with {', '.join(strategies)}")
    fields = {k: v for k, v in base.items() if k != "lr"}
    configs: list[RunConfig] = []
    for name in strategies:
        entry = entry_for(name)
        resolved = resolve(given, used[name])
        check_fits(scenario, name, entry.structural, fields, resolved)
        name_lrs = run_lrs(entry.fixed_lr and spec.table14, lrs or [base["lr"]], base["lr"])
        extra = [s for s in (select_seeds or []) if s not in seeds] if len(name_lrs) > 1 else []
        common = {"scenario": spec.name, "variant": variant, "strategy": name, "options": resolved, **fields}
        common["plugin_source"] = plugin_source(name)
        grid = itertools.product(compactness if entry.structural else [1.0], name_lrs, seeds + extra)
        configs += [RunConfig(compactness=c, seed=seed, lr=lr, **common) for c, lr, seed in grid]
    return configs


#: Seeds are drawn into 64-bit generators through ``derive_seed``; keep them in a range every RNG takes.
MAX_SEED = 2**32 - 1


def check_fields(base: dict[str, Any], lrs: list[float], seeds: list[int]) -> None:
    """Refuse sweep values that would fail only once a run trains, or train nothing.

    Raises:
        ValueError: an lr that is not a finite number > 0, a seed outside ``0 .. 2**32 - 1``, an unknown
            model or budget schedule, naming the flag and the valid values.
    """
    for lr in lrs:
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"--lr {lr}: a learning rate must be a finite number > 0 (e.g. 0.001)")
    for seed in seeds:
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"--seeds: seed {seed} is outside 0..{MAX_SEED}")
    if base.get("model") not in NETWORK_NAMES:
        raise ValueError(f"--model {base.get('model')}: choose one of {', '.join(NETWORK_NAMES)}")
    if base.get("schedule", "neutral") not in SCHEDULES:
        raise ValueError(f"--schedule {base.get('schedule')}: choose one of {', '.join(SCHEDULES)}")


def check_fits(
    scenario: str, strategy: str, structural: bool, fields: dict[str, Any], options: dict[str, Any]
) -> None:
    """Refuse a strategy that cannot do what it says on this stream, before any run starts.

    A structural strategy needs an edit schedule (:func:`~plasticity_bench.core.budget.edit_schedule`: under
    the ``exit`` placement at least 2 tasks and 2 cycles); Moment Transplant copies optimizer state, so
    it needs an optimizer that keeps some (Adam, or SGD with momentum; LC26 C.2); CReLU and layer norm act
    on dense units, so not on a network whose units are conv channels too (VGG11).

    Raises:
        ValueError: naming the strategy, the stream and the fix.
    """
    if structural:
        try:
            edit_schedule(
                fields["tasks"], fields.get("cycles", 5), EDIT_EVERY_TASKS.get(options),
                EDIT_PLACEMENT.get(options),
            )  # fmt: skip
        except ValueError as err:
            raise ValueError(f"{strategy} on {scenario}: {err}") from None
    base, mods = split_name(strategy)
    if fields.get("model") in CONV_UNIT_NETWORKS and {"crelu", "layernorm"} & {base, *mods}:
        raise ValueError(
            f"{strategy} on {fields['model']}: CReLU and layer norm act on dense units, and this network's "
            "units are conv channels too; drop crelu / layernorm"
        )
    stateless = fields.get("optimizer") == "sgd" and not MOMENTUM.get(options)
    if "moment_transplant" in mods and stateless:
        raise ValueError(
            f"{strategy} on {scenario}: Moment Transplant copies optimizer state and plain SGD keeps none "
            "(LC26 C.2 uses Adam); add --option momentum=0.9 or drop +moment_transplant"
        )


def pending(configs: list[RunConfig], store: ResultStore, force: bool) -> list[RunConfig]:
    """Configs without an identical record on disk (all of them with ``force``)."""
    return [c for c in configs if force or not store.has(c.as_dict())]
