"""How long a sweep will take: ``plasticity-bench run ... --dry-run``.

Per group of runs with the same cost per step (scenario, data variant, model, batch size, strategy, device,
threads) the seconds per update come from the records already under ``--out`` when there are some (wall
time over updates), else from a calibration here: after one untimed warm-up run, the group's first config
on one task at 20 and 120 updates; the difference gives the cost per update without the set-up, the shorter
run the set-up. A run's estimate is set-up + updates x cost per update; the sweep's is their sum, divided by
the workers (an ideal spread; Ray start-up not counted).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from plasticity_bench.records import ResultStore
from plasticity_bench.runner import RunConfig, execute
from plasticity_bench.sweep import SweepSettings

CALIBRATION_STEPS = (20, 120)
GROUP_FIELDS = ("scenario", "variant", "model", "batch_size", "strategy", "device", "threads")


def updates(config: RunConfig | dict[str, Any]) -> int:
    """Optimizer updates of a run (the winning ticket's retraining included)."""
    c = config if isinstance(config, dict) else config.as_dict()
    return c["tasks"] * c["steps_per_task"] * (2 if c.get("winning_ticket") else 1)


def group_of(config: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(str(config.get(k)) for k in GROUP_FIELDS)


def measured_rates(records: list[dict[str, Any]]) -> dict[tuple[Any, ...], tuple[float, float, str]]:
    """Per group with records: ``(setup seconds, seconds per update, source)`` from their wall times."""
    totals: dict[tuple[Any, ...], list[float]] = {}
    for record in records:
        steps = updates(record["config"])
        if steps and record.get("wall_seconds"):
            sums = totals.setdefault(group_of(record["config"]), [0.0, 0.0, 0])
            sums[0] += record["wall_seconds"]
            sums[1] += steps
            sums[2] += 1
    return {g: (0.0, s / n, f"{int(k)} records") for g, (s, n, k) in totals.items()}


def calibrate(config: RunConfig, settings: SweepSettings) -> tuple[float, float, str]:
    """``(setup seconds, seconds per update, "calibrated")`` from two one-task runs of ``config`` (after an
    untimed one that absorbs one-off costs: imports, caches, allocator warm-up)."""
    timings = []
    for steps in (CALIBRATION_STEPS[0], *CALIBRATION_STEPS):
        short = replace(config, tasks=1, steps_per_task=steps, winning_ticket=False)
        start = time.perf_counter()
        execute(short, settings.data_root, settings.device)
        timings.append(time.perf_counter() - start)
    timings = timings[1:]
    per_step = max(0.0, (timings[1] - timings[0]) / (CALIBRATION_STEPS[1] - CALIBRATION_STEPS[0]))
    return max(0.0, timings[0] - CALIBRATION_STEPS[0] * per_step), per_step, "calibrated"


def hours(seconds: float) -> str:
    """``"2.5 h"`` / ``"12 min"`` / ``"40 s"``."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def dry_run_report(
    configs: list[RunConfig], store: ResultStore, settings: SweepSettings, workers: int
) -> str:
    """Run count, pending count and estimated time of a sweep, with the cost per update of each group."""
    reused = {"current", "stale"} if settings.allow_stale else {"current"}
    pending = configs if settings.force else [c for c in configs if store.status(c.as_dict()) not in reused]
    rates = measured_rates(store.load().records)
    groups: dict[tuple[Any, ...], list[RunConfig]] = {}
    for config in pending:
        groups.setdefault(group_of(config.as_dict()), []).append(config)
    lines, total = [], 0.0
    for key, members in groups.items():
        setup, per_step, source = rates.get(key) or calibrate(members[0], settings)
        seconds = sum(setup + updates(c) * per_step for c in members)
        total += seconds
        first = members[0]
        name = f"{first.scenario}{'@' + first.variant if first.variant else ''} {first.strategy}"
        rate = f"{per_step * 1e3:.2f} ms/update ({source})"
        lines.append(f"  {name}: {len(members)} runs, {rate}, {hours(seconds)}")
    done = len(configs) - len(pending)
    head = [
        f"{len(configs)} runs, {len(pending)} pending, {done} already on disk under {store.root}",
        f"estimated {hours(total)} of compute; {hours(total / max(1, workers))} on {workers} worker(s)",
    ]
    return "\n".join(head + lines)
