"""The run pipeline: a run, or a batch of runs, from configs to records (:func:`execute_runs`), written once
for both trainers. It builds the runs (:mod:`plasticity_bench.run.build`), trains them with a
:class:`Trainer` (the lone :class:`~plasticity_bench.run.lone.LoneTrainer`, or the batched
:class:`~plasticity_bench.batch.trainer.BatchedTrainer`), builds and trains the winning tickets,
checkpoints at task boundaries and resumes (:mod:`plasticity_bench.run.resume`), and makes the records.
:func:`execute` is one run with the lone trainer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from plasticity_bench.core.masks import masks_from_indices
from plasticity_bench.measure.metrics import CURVE_BIN
from plasticity_bench.run.build import (
    StreamMetrics,
    StreamRun,
    build_benchmark,
    cycle_results,
    new_model,
    run_generator,
    run_record,
    ticket_init_key,
    ticket_model,
    use_config_resources,
    width_of,
)
from plasticity_bench.run.config import RunConfig
from plasticity_bench.run.loggers import Recording, log_run_summary
from plasticity_bench.run.lone import LoneTrainer
from plasticity_bench.run.resume import BoundarySaver, RunCheckpoint, set_rng_state
from plasticity_bench.scenarios.registry import ScenarioSpec
from plasticity_bench.scenarios.stream import TaskBenchmark
from plasticity_bench.strategies.registry import build_plugins

Stream = tuple[ScenarioSpec, TaskBenchmark]


class Trainer(Protocol):
    """What the pipeline asks of a trainer; ``runs`` are its :class:`~plasticity_bench.run.build.StreamRun`
    s in order, ``batched`` says whether records get a ``batched`` entry."""

    runs: list[StreamRun]
    batched: ClassVar[bool]

    def train(
        self, on_task: Callable[[int], None] | None, start: int, on_boundary: Callable[[int], object] | None
    ) -> list[StreamMetrics]:
        """Train every run from task ``start`` on; their metrics in order. ``on_task(i)`` once per run
        after task ``i``; ``on_boundary(next_task)`` after each task."""

    def detached(self) -> AbstractContextManager[None]:
        """A block in which the trainer holds only what a checkpoint saves."""

    def attach(self, streams: list[Stream], loggers: list[Sequence[Any]]) -> None:
        """Give a trainer loaded from a checkpoint its runs' streams and loggers again."""


#: Builds the trainer of some runs on a device: :class:`~plasticity_bench.run.lone.LoneTrainer` or a
#: batched one.
TrainerFactory = Callable[[list[StreamRun], str], Trainer]


def execute(
    config: RunConfig,
    data_root: Path | None = None,
    device: str = "cpu",
    on_task: Callable[[int], None] | None = None,
    checkpoint: RunCheckpoint | None = None,
    recording: Recording | None = None,
) -> dict[str, Any]:
    """Run ``config`` with the lone trainer and return its record (not yet written); see
    :func:`execute_runs`."""
    return execute_runs([config], LoneTrainer, data_root, device, on_task, checkpoint, recording)[0]


def execute_runs(
    configs: list[RunConfig],
    trainer: TrainerFactory,
    data_root: Path | None = None,
    device: str = "cpu",
    on_task: Callable[[int], None] | None = None,
    checkpoint: RunCheckpoint | None = None,
    recording: Recording | None = None,
) -> list[dict[str, Any]]:
    """Run ``configs`` together on one ``trainer`` and return their records (not yet written), in order.

    The cycle run trains with the strategy's plugins. With ``winning_ticket`` its final masks are frozen on
    rewound weights and retrained on the same stream with the same hyperparameters and no strategy plugin;
    the record then also holds ``wt_*`` and ``delta_wt_c`` (docs/protocol.md §1). With ``checkpoint``, the
    trainer is saved at task boundaries as its policy says, and runs whose checkpoint exists continue from
    it (the records are those an uninterrupted run makes, but for ``created`` and ``wall_seconds``); tasks
    already done are reported to ``on_task`` at once (once per run). ``recording`` sets the learning-curve
    bin and the loggers of the cycle run (default: bin
    :data:`~plasticity_bench.measure.metrics.CURVE_BIN`, no logger). A record's ``wall_seconds`` is the
    wall time over the number of runs; a batched trainer's records say ``batched: {runs, wall_seconds}``.

    Raises:
        ValueError: for unknown scenario/strategy/model names or out-of-range options.
        plasticity_bench.scenarios.readers.DatasetNotFoundError,
        plasticity_bench.scenarios.readers.CorruptDatasetError: missing or bad data (before training).
    """
    use_config_resources(configs[0], device)
    recording = recording or Recording()
    saved = checkpoint.load(device) if checkpoint is not None else None
    saver = BoundarySaver(checkpoint, saved["elapsed"] if saved else 0.0)
    if saved is not None:
        set_rng_state(saved["rng"])
    streams = [build_benchmark(config, data_root) for config in configs]
    report_done(saved, configs[0].tasks, on_task, len(configs))
    phases = Phases(configs, streams, trainer, device, recording, saver, on_task)
    cycles, tickets, last = phases.run(saved)
    wall = saver.elapsed()
    records = [run_record(*parts, wall / len(configs)) for parts in zip(configs, cycles, tickets)]
    for record in records if last.batched else []:
        record["batched"] = {"runs": len(configs), "wall_seconds": wall}
    return records


@dataclass
class Phases:
    """The two phases of :func:`execute_runs`: the cycle run and, with ``winning_ticket``, the tickets."""

    configs: list[RunConfig]
    streams: list[Stream]
    trainer: TrainerFactory
    device: str
    recording: Recording
    saver: BoundarySaver
    on_task: Callable[[int], None] | None

    def run(
        self, saved: dict[str, Any] | None
    ) -> tuple[list[dict[str, Any]], list[StreamMetrics | None], Trainer]:
        """Train what is left after the checkpoint ``saved`` (``None``: everything); the cycles' results
        (:func:`~plasticity_bench.run.build.cycle_results`), the tickets' metrics (``None`` without
        tickets) and the trainer that trained last."""
        if saved is not None and saved["phase"] == "ticket":
            cycles, ticket = saved["cycles"], saved["trainer"]
            ticket.attach(self.streams, [()] * len(self.configs))
            return cycles, self.train(ticket, "ticket", saved["next_task"], cycles), ticket
        with ExitStack() as open_loggers:
            logs = (self.recording.logging(c.as_dict(), fresh=saved is None) for c in self.configs)
            loggers = [open_loggers.enter_context(log) for log in logs]
            cycle, first = self.cycle_trainer(loggers, saved)
            metrics = self.train(cycle, "cycle", first)
            for logs, config, result in zip(loggers, self.configs, metrics):
                log_run_summary(logs, config.as_dict(), result.summary)
        cycles = [cycle_results(run, m) for run, m in zip(cycle.runs, metrics)]
        if not self.configs[0].winning_ticket:
            return cycles, [None] * len(cycles), cycle
        ticket = self.trainer(ticket_runs(cycle.runs, self.device, self.recording.curve_bin), self.device)
        return cycles, self.train(ticket, "ticket", 0, cycles), ticket

    def train(
        self, trainer: Trainer, phase: str, first: int, cycles: list[dict[str, Any]] | None = None
    ) -> list[StreamMetrics]:
        """``trainer`` from task ``first`` on, checkpointed as ``phase``."""
        return trainer.train(self.on_task, first, trainer_boundary(self.saver, phase, trainer, cycles))

    def cycle_trainer(
        self, loggers: list[Sequence[Any]], saved: dict[str, Any] | None
    ) -> tuple[Trainer, int]:
        """The cycle phase's trainer and its first task: :func:`fresh_runs`, or the checkpoint ``saved``'s."""
        if saved is not None:
            saved["trainer"].attach(self.streams, loggers)
            return saved["trainer"], saved["next_task"]
        runs = fresh_runs(self.configs, self.streams, self.device, self.recording.curve_bin, loggers)
        return self.trainer(runs, self.device), 0


def fresh_runs(
    configs: list[RunConfig], streams: list[Stream], device: str, curve_bin: int = CURVE_BIN,
    loggers: Sequence[Sequence[Any]] | None = None,
) -> list[StreamRun]:  # fmt: skip
    """New runs of ``configs`` on their ``streams``: each network drawn at ``init``, then the generator of
    its activations, then its strategy's plugins; metrics in bins of ``curve_bin`` updates, handed to each
    run's ``loggers`` (default none)."""
    runs = []
    for config, stream, logs in zip(configs, streams, loggers or [()] * len(configs)):
        model = new_model(config, stream[1].info, width_of(config), "init", device)
        generator = run_generator(config, "init", device)
        plugins = build_plugins(config.strategy_config())
        runs.append(StreamRun.start(config, stream, model, generator, plugins, curve_bin, logs))
    return runs


def ticket_runs(runs: list[StreamRun], device: str, curve_bin: int) -> list[StreamRun]:
    """The winning tickets of finished cycle runs (docs/protocol.md §1): each run's final masks on rewound
    weights (:func:`~plasticity_bench.run.build.ticket_model`), the scenario's plugins only."""
    tickets = []
    for run in runs:
        config = run.config
        model = ticket_model(run.model, config, run.benchmark.info, width_of(config), device)
        generator = run_generator(config, ticket_init_key(config), device)
        tickets.append(StreamRun.start(config, (run.spec, run.benchmark), model, generator, [], curve_bin))
    return tickets


def trainer_boundary(
    saver: BoundarySaver, phase: str, trainer: Trainer, cycles: list[dict[str, Any]] | None = None
) -> Callable[[int], object] | None:
    """The task-boundary callback that checkpoints ``trainer`` in ``phase`` (``cycle`` or ``ticket``; in the
    ticket phase with the finished cycles' results ``cycles``), detached from its data, streams and
    loggers; ``None`` when ``saver`` saves nothing."""
    if not saver.enabled:
        return None

    def boundary(next_task: int) -> None:
        with trainer.detached():
            saver.boundary({"phase": phase, "next_task": next_task, "trainer": trainer, "cycles": cycles})

    return boundary


def report_done(
    saved: dict[str, Any] | None, tasks: int, on_task: Callable[[int], None] | None, runs: int = 1
) -> None:
    """Tell ``on_task`` (once per run of ``runs``) about the tasks of ``tasks`` per stream that a resumed run
    or run-batch does not train again (its checkpoint ``saved``: phase and next task)."""
    if saved is None or on_task is None:
        return
    done = saved["next_task"] + (tasks if saved["phase"] == "ticket" else 0)
    for task in range(done):
        for _ in range(runs):
            on_task(task % tasks)


def retrain_ticket(
    record: dict[str, Any], data_root: Path | None = None, device: str = "cpu"
) -> StreamMetrics:
    """A run's winning ticket rebuilt from its record alone and retrained (docs/protocol.md §1): the
    network of ``record["config"]`` at its initial weights (``wt_init``), the record's ``final_masks``
    frozen on it, trained on the same stream with no strategy plugin. On the device and thread count the
    record was made with, its metrics equal the record's ``wt_*`` figures.

    Raises:
        ValueError: for a record without ``final_masks`` or with masks that do not fit the network.
    """
    if "final_masks" not in record:
        raise ValueError(
            f"record {record.get('key', '?')[:16]} has no final_masks (made before they were kept)"
        )
    config = RunConfig(**record["config"])
    stream = build_benchmark(config, data_root)
    init_key = ticket_init_key(config)
    ticket = new_model(config, stream[1].info, width_of(config), init_key, device)
    generator = run_generator(config, init_key, device)
    ticket.load_masks(masks_from_indices(record["final_masks"], [len(u.mask) for u in ticket.units]))
    curve_bin = record.get("curves", {}).get("bin", CURVE_BIN)
    run = StreamRun.start(config, stream, ticket, generator, [], curve_bin)
    return LoneTrainer([run], device).train()[0]
