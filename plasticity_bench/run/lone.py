"""The lone trainer: one run, one update per step through the Avalanche template
:class:`~plasticity_bench.run.loop.OnlineStrategy` (docs/protocol.md §1, §7). The run pipeline
(:mod:`plasticity_bench.run.execute`) drives it, or the batched trainer
(:class:`~plasticity_bench.batch.trainer.BatchedTrainer`) in its place: they differ only in how a step runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from plasticity_bench.core.defaults import eval_batch_size
from plasticity_bench.core.seeding import drawing_from
from plasticity_bench.run.build import StreamMetrics, StreamRun, restore_schedule
from plasticity_bench.run.config import OptimizerSpec
from plasticity_bench.run.loop import OnlineStrategy
from plasticity_bench.scenarios.registry import ScenarioSpec
from plasticity_bench.scenarios.stream import TaskBenchmark


class LoneTrainer:
    """Trains one :class:`~plasticity_bench.run.build.StreamRun` on its stream.

    The run's optimizer is built from its :class:`~plasticity_bench.run.config.OptimizerSpec`; its random
    activations draw from the run's generator (torch's global RNG is that generator while a task trains);
    ``schedule`` is the lr scheduler's ``state_dict`` at the last task boundary (saved with a checkpoint).

    Raises:
        ValueError: for anything but exactly one run.
    """

    batched: ClassVar[bool] = False

    def __init__(self, runs: list[StreamRun], device: str) -> None:
        if len(runs) != 1:
            raise ValueError(f"the lone trainer trains one run, not {len(runs)}")
        self.runs, self.device = runs, device
        run = runs[0]
        run.optimizer = OptimizerSpec.of(run.config).build(run.model.parameters(), run.config.lr)
        self.schedule: dict[str, Any] | None = None

    def train(
        self,
        on_task: Callable[[int], None] | None = None,
        start: int = 0,
        on_boundary: Callable[[int], object] | None = None,
    ) -> list[StreamMetrics]:
        """Train the run from task ``start`` to the end; its metrics (a list of one). ``on_task(i)`` runs
        after task ``i`` trained (progress), ``on_boundary(next_task)`` after the trainer was brought up to
        date at each task's end (checkpoints)."""
        (run,) = self.runs
        config = run.config
        total = config.tasks * config.steps_per_task
        scheduler = restore_schedule(run.spec.lr_schedule, run.optimizer, total, self.schedule)
        strategy = OnlineStrategy(
            model=run.model,
            optimizer=run.optimizer,
            train_mb_size=config.batch_size,
            eval_mb_size=eval_batch_size(run.benchmark.info.input_shape),
            steps_per_task=config.steps_per_task,
            seed=config.seed,
            device=self.device,
            plugins=run.plugins,
            evaluator=run.evaluator,
            lr_scheduler=scheduler,
        )
        for task in range(start, config.tasks):
            with drawing_from(run.generator):
                strategy.train(run.benchmark.train_stream[task])
            self.schedule = scheduler.state_dict() if scheduler is not None else None
            if on_task is not None:
                on_task(task)
            if on_boundary is not None:
                on_boundary(task + 1)
        return [run.metrics.results()]

    @contextmanager
    def detached(self) -> Iterator[None]:
        """Inside the block the trainer holds only what a checkpoint saves (no stream, no evaluator)."""
        kept = self.runs[0].detach()
        try:
            yield
        finally:
            self.runs[0].reattach(*kept)

    def attach(self, streams: list[tuple[ScenarioSpec, TaskBenchmark]], loggers: list[Sequence[Any]]) -> None:
        """Give a trainer loaded from a checkpoint its run's stream and evaluator again."""
        self.runs[0].attach(streams[0], loggers[0])
