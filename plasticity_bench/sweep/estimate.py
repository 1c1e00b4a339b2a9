"""How long a sweep will take: ``plasticity-bench run ... --dry-run``.

Per group of runs with the same cost per step (scenario, data variant, model, batch size, strategy, device,
threads, and the size ``R`` of the run-batch they train in, ``--batch-runs``; docs/protocol.md §12) the
seconds per update and run come from the records already under ``--out`` when there are some (wall time
over updates; a batched record's wall time is its batch's over ``R``), else from a calibration here: after
one untimed warm-up, the group's first batch on two tasks of 20 and 120 updates in all; the difference
gives the cost per update without the set-up, the shorter run the set-up, both divided by ``R``. A run's
estimate is set-up + updates x cost per update; the sweep's is their sum, divided by the workers (an ideal
spread; Ray start-up not counted). Where a scenario's data is not here the calibration trains on a stand-in
stream of its shapes (:mod:`plasticity_bench.scenarios.standin`) and the report ends with one warning per
absent dataset.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from plasticity_bench.batch.trainer import execute_batch
from plasticity_bench.run.build import build_benchmark
from plasticity_bench.run.config import RunConfig
from plasticity_bench.run.execute import execute
from plasticity_bench.run.records import ResultStore
from plasticity_bench.scenarios import readers
from plasticity_bench.scenarios.standin import standin_streams
from plasticity_bench.sweep.claims import SweepSettings

#: Updates of the two timed calibration trainings (their difference gives the time per update), after an
#: untimed warm-up of the first count; a group whose warm-up of :data:`SLOW_STEPS`'s first count takes over
#: :data:`SLOW_WARMUP` seconds (VGG11 at 224 px on a CPU: tens of seconds an update) is timed on
#: ``SLOW_STEPS``, so that a dry run ends in minutes, not hours.
CALIBRATION_STEPS = (20, 120)
SLOW_STEPS, SLOW_WARMUP = (2, 6), 20.0
#: A dry run warns beyond these (a grid that large is more often a typo than a plan).
LARGE_RUNS, LARGE_SECONDS = 10_000, 7 * 24 * 3600.0
GROUP_FIELDS = ("scenario", "variant", "model", "batch_size", "strategy", "device", "threads")


def updates(config: RunConfig | dict[str, Any]) -> int:
    """Optimizer updates of a run (the winning ticket's retraining included)."""
    c = config if isinstance(config, dict) else config.as_dict()
    return c["tasks"] * c["steps_per_task"] * (2 if c.get("winning_ticket") else 1)


def group_of(config: dict[str, Any], runs: int = 1) -> tuple[Any, ...]:
    """Runs with one cost per update: :data:`GROUP_FIELDS` and ``runs``, the size of their run-batch."""
    return (*(str(config.get(k)) for k in GROUP_FIELDS), runs)


def measured_rates(records: list[dict[str, Any]]) -> dict[tuple[Any, ...], tuple[float, float, str]]:
    """Per group with records: ``(setup seconds, seconds per update, source)`` from their wall times."""
    totals: dict[tuple[Any, ...], list[float]] = {}
    for record in records:
        steps = updates(record["config"])
        if steps and record.get("wall_seconds"):
            runs = record.get("batched", {}).get("runs", 1)
            sums = totals.setdefault(group_of(record["config"], runs), [0.0, 0.0, 0])
            sums[0] += record["wall_seconds"]
            sums[1] += steps
            sums[2] += 1
    return {g: (0.0, s / n, f"{int(k)} records") for g, (s, n, k) in totals.items()}


def missing_data(configs: list[RunConfig], data_root: Path | None) -> dict[str, str]:
    """Scenario (``name[@variant]``) -> one line saying what is wrong with its data (absent: where it was
    looked for and how to get it; malformed: the file and problem), for every scenario of ``configs`` whose
    data is absent or unreadable under ``data_root`` (each stream read once)."""
    missing: dict[str, str] = {}
    seen: set[str] = set()
    for config in configs:
        name = config.scenario + (f"@{config.variant}" if config.variant else "")
        if name in seen:
            continue
        seen.add(name)
        try:
            build_benchmark(replace(config, tasks=1), data_root)
        except readers.DatasetNotFoundError as err:
            missing[name] = f"{err.dataset} not found under {', '.join(err.searched)}; to get it: {err.hint}"
        except readers.CorruptDatasetError as err:
            missing[name] = str(err)
    return missing


def calibrate(
    batch: list[RunConfig], settings: SweepSettings, absent: bool = False
) -> tuple[float, float, str]:
    """``(setup seconds, seconds per update, "calibrated")`` per run, from two two-task trainings of
    ``batch`` (a lone run or a run-batch; two tasks, so a structural run edits once, between them), after
    untimed ones that absorb one-off costs (imports, caches, allocator warm-up): :data:`CALIBRATION_STEPS`,
    or :data:`SLOW_STEPS` for slow updates. ``absent``: the data is
    not here, so the trainings run on stand-in streams of the scenario's shapes
    (:mod:`plasticity_bench.scenarios.standin`)."""
    with standin_streams() if absent else nullcontext():
        counts = SLOW_STEPS if train_for(batch, SLOW_STEPS[0], settings) > SLOW_WARMUP else CALIBRATION_STEPS
        if counts is CALIBRATION_STEPS:
            train_for(batch, counts[0], settings)  # the warm-up of the usual counts
        first, second = (train_for(batch, steps, settings) / len(batch) for steps in counts)
    per_step = max(0.0, (second - first) / (counts[1] - counts[0]))
    source = "calibrated on a stand-in: data absent" if absent else "calibrated"
    return max(0.0, first - counts[0] * per_step), per_step, source


def train_for(batch: list[RunConfig], steps: int, settings: SweepSettings) -> float:
    """Seconds to train ``batch`` (a lone run or a run-batch) on two tasks of ``steps // 2`` updates."""
    short = [replace(c, tasks=2, steps_per_task=steps // 2, winning_ticket=False) for c in batch]
    start = time.perf_counter()
    if len(short) == 1:
        execute(short[0], settings.data_root, settings.device)
    else:
        execute_batch(short, settings.data_root, settings.device)
    return time.perf_counter() - start


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
    groups: dict[tuple[Any, ...], list[list[RunConfig]]] = {}
    for batch in settings.batches(pending):
        groups.setdefault(group_of(batch[0].as_dict(), len(batch)), []).append(batch)
    missing = missing_data(pending, settings.data_root)
    lines, total = [], 0.0
    for key, batches in groups.items():
        first = batches[0][0]
        absent = (first.scenario + (f"@{first.variant}" if first.variant else "")) in missing
        setup, per_step, source = rates.get(key) or calibrate(batches[0], settings, absent)
        members = [c for batch in batches for c in batch]
        seconds = sum(setup + updates(c) * per_step for c in members)
        total += seconds
        name = f"{first.scenario}{'@' + first.variant if first.variant else ''} {first.strategy}"
        together = f" in batches of {len(batches[0])}" if len(batches[0]) > 1 else ""
        rate = f"{per_step * 1e3:.2f} ms/update per run ({source})"
        lines.append(f"  {name}: {len(members)} runs{together}, {rate}, {hours(seconds)}")
    done = len(configs) - len(pending)
    head = [
        f"{len(configs)} runs, {len(pending)} pending, {done} already on disk under {store.root}",
        f"estimated {hours(total)} of compute; {hours(total / max(1, workers))} on {workers} worker(s)",
    ]
    warnings = [f"warning: data absent for {name}: {why}" for name, why in missing.items()]
    if len(pending) > LARGE_RUNS or total / max(1, workers) > LARGE_SECONDS:
        warnings.append(
            f"warning: {len(pending):,} runs and {hours(total / max(1, workers))} on {workers} worker(s): "
            "check the grid (seeds, lrs, compactness multiply) before starting it"
        )
    return "\n".join(head + lines + warnings)
