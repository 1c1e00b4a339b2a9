"""Run-batched training: the runs of a sweep that share a stream shape train together (docs/protocol.md §12).

Runs that differ only in seed, compactness and learning rate (same scenario, strategy, options, model, stream
size and batch size; :func:`batch_key`) train as one :class:`~plasticity_bench.batch.stacked.StackedNet`: one
batched forward, backward and optimizer step per update for all ``R`` runs. Each run keeps its own data
stream (its seed's tasks and batches), learning rate, optimizer state, random activation stream, plugins,
structural edits, metrics and record; run ``r`` of a batch makes the record it makes alone, to float
tolerance.

Plugins are the single-run ones, unchanged: each run's plugins and metrics receive every Avalanche callback
with a :class:`RunView`, that run's stand-in for the strategy object (``model``, ``optimizer``,
``experience``, ``batches``, ``mbatch``, ``mb_output``, ...). Callbacks a plugin does not override cost
nothing; per-step callbacks are called once per run that has them, except for plugin classes that offer a
form for the whole batch (``for_runs``; Two-Speed).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.nn import functional as F

from plasticity_bench.batch.optim import StackedOptimizer, StackedSchedule
from plasticity_bench.batch.stacked import StackedNet
from plasticity_bench.core.defaults import EVAL_ROWS
from plasticity_bench.core.models import count_params
from plasticity_bench.core.networks import CONV_UNIT_NETWORKS
from plasticity_bench.run.build import (
    StreamMetrics,
    StreamRun,
    build_benchmark,
    new_model,
    width_of,
)
from plasticity_bench.run.config import OptimizerSpec, RunConfig
from plasticity_bench.run.execute import execute_runs
from plasticity_bench.run.loggers import Recording
from plasticity_bench.run.loop import (
    ITERATION_EVENTS,
    NOOP_PLUGIN_BASES,
    TensorBatches,
    handles,
    online_accuracy,
    overrides,
)
from plasticity_bench.run.records import canonical_json
from plasticity_bench.run.resume import RunCheckpoint
from plasticity_bench.scenarios.registry import ScenarioSpec
from plasticity_bench.scenarios.stream import TaskBenchmark
from plasticity_bench.strategies.registry import batchable

#: A per-step call of a plugin (or a vectorized form) with its host bound.
Handler = Callable[[], object]
#: RunConfig fields that may differ between the runs of one batch.
FREE_FIELDS = ("seed", "compactness", "lr")
#: Most runs per batch that ``--batch-runs auto`` picks (GPU / CPU).
AUTO_MAX = {"cuda": 256, "cpu": 16}
AUTO_MEMORY_FRACTION = 0.7
AFTER_TASK_EVENTS = ("after_training_epoch", "after_training_exp", "after_training")


def batch_key(config: RunConfig) -> str:
    """What runs of one batch share: every :class:`RunConfig` field but :data:`FREE_FIELDS`."""
    return canonical_json({k: v for k, v in config.as_dict().items() if k not in FREE_FIELDS})


def batch_groups(configs: list[RunConfig]) -> list[list[RunConfig]]:
    """``configs`` grouped by :func:`batch_key`, groups in order of first appearance."""
    groups: dict[str, list[RunConfig]] = {}
    for config in configs:
        groups.setdefault(batch_key(config), []).append(config)
    return list(groups.values())


def plan_batches(configs: list[RunConfig], size: int) -> list[list[RunConfig]]:
    """:func:`batch_groups` of ``configs``, each cut into batches of at most ``size`` runs; runs of a strategy
    that may not share a batch (:func:`~plasticity_bench.strategies.registry.batchable`: the plasticity
    remedies and Avalanche CL strategies), of a network with conv-channel units (VGG11) or with weight
    decay each get a batch of their own (:func:`shares_batches`).

    Raises:
        ValueError: if ``size < 1``.
    """
    if size < 1:
        raise ValueError(f"--batch-runs must be >= 1 or auto (got {size})")
    batches = []
    for group in batch_groups(configs):
        step = size if shares_batches(group[0]) else 1
        batches += [group[i : i + step] for i in range(0, len(group), step)]
    return batches


def shares_batches(config: RunConfig) -> bool:
    """True when runs like ``config`` may share a run-batch: a batchable strategy on a network whose units
    are hidden Linear units only, without weight decay (the stacked network and optimizer have neither)."""
    spec = OptimizerSpec.of(config)
    return batchable(config.strategy) and config.model not in CONV_UNIT_NETWORKS and not spec.weight_decay


def parse_batch_runs(text: str) -> int | None:
    """``--batch-runs`` value: a count ``>= 1``, or ``None`` for ``auto``.

    Raises:
        ValueError: for anything else.
    """
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"--batch-runs {text}: give a count >= 1 or auto")
    return value


def run_bytes(config: RunConfig, data_root: Path | None = None) -> int:
    """Estimated device memory of one run in a batch, in bytes: parameters with gradient and Adam state,
    activations of one batch, and one task's training data (read from the run's first task)."""
    _, benchmark = build_benchmark(config, data_root)
    task = benchmark.train_stream[0].task
    model = new_model(config, benchmark.info, width_of(config), "init", "cpu")
    activations = sum(layer.width for layer in model.masked_layers()) * config.batch_size * 8
    return 4 * (5 * count_params(model) + activations) + task.x.element_size() * task.x.numel()


def free_bytes(device: str) -> int:
    """Free memory on ``device``: ``torch.cuda.mem_get_info`` on CUDA, available RAM on CPU."""
    if torch.device(device).type == "cuda":
        return torch.cuda.mem_get_info(torch.device(device))[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def auto_batch_runs(config: RunConfig, data_root: Path | None, device: str) -> int:
    """``--batch-runs auto``: as many runs as fit in :data:`AUTO_MEMORY_FRACTION` of the free memory of
    ``device`` by :func:`run_bytes`, at most :data:`AUTO_MAX` (on CPU, batching gains little: 16)."""
    kind = torch.device(device).type
    fit = int(AUTO_MEMORY_FRACTION * free_bytes(device) // max(1, run_bytes(config, data_root)))
    return max(1, min(AUTO_MAX[kind], fit))


class RunView:
    """One run of a batch as its plugins and metrics see the strategy (the attributes of
    :class:`~plasticity_bench.run.loop.OnlineStrategy` they read).

    ``model`` is the run's own :class:`MaskedNet` (views of the stacked tensors), ``optimizer`` its
    :class:`RunOptimizer`; ``mbatch`` / ``mb_x`` / ``mb_y`` / ``mb_output`` / ``loss`` are the run's slices of
    the current batched step; assigning ``mbatch`` (Tiny ER) replaces the run's batch for this step.
    """

    def __init__(self, trainer: BatchedTrainer, index: int, run: StreamRun) -> None:
        self.trainer, self.index, self.run = trainer, index, run
        self.model, self.optimizer, self.plugins = run.model, run.optimizer, run.plugins
        self.device, self.seed = trainer.device, run.config.seed
        self.train_mb_size, self.steps_per_task = run.config.batch_size, run.config.steps_per_task
        self.eval_mb_size = EVAL_ROWS  # no run-batch holds large images (VGG11 trains alone)
        self.experience: Any = None
        self.batches: TensorBatches | None = None
        self.online_acc_host: Any = None
        self.is_training = True
        self.current_rows: int | None = None
        self._mbatch: list[Tensor] | None = None

    @property
    def task_step(self) -> int:
        return self.trainer.step

    @property
    def mbatch(self) -> list[Tensor]:
        if self._mbatch is not None:
            return self._mbatch
        return [self.trainer.x[self.index], self.trainer.y[self.index]]

    @mbatch.setter
    def mbatch(self, value: list[Tensor]) -> None:
        self._mbatch = list(value)

    @property
    def mb_x(self) -> Tensor:
        return self.mbatch[0]

    @property
    def mb_rows(self) -> int:
        """Rows of the run's batch this step, without a view of it (the batch's shape says)."""
        return len(self._mbatch[0]) if self._mbatch is not None else self.trainer.x.shape[1]

    @property
    def mb_y(self) -> Tensor:
        return self.mbatch[1]

    @property
    def mb_output(self) -> Tensor:
        return self.trainer.out[self.index]

    @property
    def loss(self) -> Tensor:
        return self.trainer.losses[self.index]


def _handlers(view: RunView, event: str, skip: set[int] = frozenset()) -> list[Callable[[RunView], object]]:
    """The run's plugins (but those whose ``id`` is in ``skip``) that override ``event``, then its evaluator
    (metrics and loggers) when one of those does (Avalanche's order: evaluator last)."""
    plugins = [p for p in view.plugins if id(p) not in skip]
    found = [getattr(p, event) for p in plugins if overrides(p, event, NOOP_PLUGIN_BASES)]
    evaluator = view.run.evaluator
    return found + ([getattr(evaluator, event)] if handles(evaluator, event) else [])


class BatchedTrainer:
    """Trains the runs of one batch on their streams, one batched update per step (see module doc).

    Args:
        runs: the batch (equal :func:`batch_key`); their networks become views of one :class:`StackedNet`.
        device: training device. kernels: see :class:`~plasticity_bench.batch.stacked.StackedNet`.
    """

    batched: ClassVar[bool] = True

    def __init__(self, runs: list[StreamRun], device: str, kernels: str = "auto") -> None:
        config = runs[0].config
        self.runs, self.device, self.config = runs, device, config
        self.net = StackedNet([r.model for r in runs], [r.generator for r in runs], kernels)
        lrs = [r.config.lr for r in runs]
        self.optimizer = StackedOptimizer(OptimizerSpec.of(config), self.net, lrs)
        for i, run in enumerate(runs):
            run.optimizer = self.optimizer.run(i, run.config.lr)
        total = config.tasks * config.steps_per_task
        self.schedule = StackedSchedule(runs[0].spec.lr_schedule, lrs, total)
        self.views = [RunView(self, i, run) for i, run in enumerate(runs)]
        self.step = 0
        self.x = self.y = self.out = self.losses = torch.zeros(0)
        self.data_x: Any = None
        self.data_y: Any = None

    def notify(self, event: str) -> None:
        """Call ``event`` on every run's plugins and metrics that handle it, run by run."""
        for view in self.views:
            for handler in _handlers(view, event):
                handler(view)

    def train(
        self, on_task: Callable[[int], None] | None = None, start: int = 0,
        on_boundary: Callable[[int], object] | None = None,
    ) -> list[StreamMetrics]:  # fmt: skip
        """Train every run on its stream from task ``start`` on; the runs' metrics, in batch order.
        ``on_boundary(next_task)`` runs after each task (checkpoints)."""
        for task in range(start, self.config.tasks):
            self.train_task(task)
            for _ in self.runs:
                if on_task is not None:
                    on_task(task)
            if on_boundary is not None:
                on_boundary(task + 1)
        return [run.metrics.results() for run in self.runs]

    @contextmanager
    def detached(self) -> Iterator[None]:
        """Inside the block the trainer holds only what a checkpoint saves: no task data, no stream, no
        evaluator (its loggers hold files); all are put back after it."""
        kept = (self.data_x, self.data_y)
        parts = [run.detach() for run in self.runs]
        views = [(view.experience, view.batches) for view in self.views]
        self.data_x = self.data_y = None
        for view in self.views:
            view.experience = view.batches = None
        try:
            yield
        finally:
            self.data_x, self.data_y = kept
            for run, part in zip(self.runs, parts):
                run.reattach(*part)
            for view, (experience, batches) in zip(self.views, views):
                view.experience, view.batches = experience, batches

    def attach(self, streams: list[tuple[ScenarioSpec, TaskBenchmark]], loggers: list[Sequence[Any]]) -> None:
        """Give a trainer loaded from a checkpoint its runs' streams and evaluators again."""
        for run, stream, logs in zip(self.runs, streams, loggers):
            run.attach(stream, logs)

    def train_task(self, task: int) -> None:
        """One experience for every run: Avalanche's callback sequence around :meth:`train_steps`."""
        for view, run in zip(self.views, self.runs):
            run.model.train()
            view.experience = run.benchmark.train_stream[task]
        self.notify("before_training")
        index = self._load_task(task)
        self.notify("before_training_exp")
        self.optimizer.check_steps()
        self.notify("before_training_epoch")
        acc = self.train_steps(index)
        host = acc.cpu().numpy()
        for r, view in enumerate(self.views):
            view.online_acc_host = host[r].copy()
        for event in AFTER_TASK_EVENTS:
            self.notify(event)

    def _load_task(self, task: int) -> Tensor:
        """Put every run's task data on the device, give each run its :class:`TensorBatches` and return the
        gather index of every step: int64 ``(steps, R, B)``. Batched kernels gather all runs' rows with one
        index into one tensor of all runs' data (row offsets added); per-run kernels gather run by run from
        the runs' own tensors, as a lone run does, with no copy of the task data."""
        datas = [view.experience.task for view in self.views]
        sizes = [d.x.shape[0] for d in datas]
        offsets = [0] * len(datas) if self.net.per_run else [0, *itertools.accumulate(sizes)][:-1]
        if self.net.per_run:
            self.data_x = [d.x.to(self.device) for d in datas]
            self.data_y = [d.y.to(self.device) for d in datas]
            pieces = list(zip(self.data_x, self.data_y))
        else:
            self.data_x = torch.cat([d.x for d in datas]).to(self.device)
            self.data_y = torch.cat([d.y for d in datas]).to(self.device)
            pieces = [(self.data_x[o : o + n], self.data_y[o : o + n]) for o, n in zip(offsets, sizes)]
        tables, cfg = [], self.config
        for view, (x, y), offset in zip(self.views, pieces, offsets):
            view.batches = TensorBatches(x, y, cfg.batch_size, cfg.steps_per_task, view.seed, task)
            tables.append(view.batches.index_table() + offset)
        return torch.stack(tables, dim=1)

    def _gather(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """The step's batch of every run, ``(R, B, *input_shape)`` and ``(R, B)``; ``rows``: ``(R, B)``."""
        if self.net.per_run:
            x = torch.stack([x_r[i] for x_r, i in zip(self.data_x, rows)])
            return x, torch.stack([y_r[i] for y_r, i in zip(self.data_y, rows)])
        return self.data_x[rows], self.data_y[rows]

    def train_steps(self, index: Tensor) -> Tensor:
        """Every step of the task for all runs; returns the online accuracies, float32 ``(R, steps)``. The
        stacked hooks of the task's vectorized plugin forms are removed after it (a checkpoint holds none)."""
        hooks, per_run = self._step_hooks()
        try:
            return self._run_steps(index, hooks, per_run)
        finally:
            self.net.clear_stacked_hooks()

    def _run_steps(
        self, index: Tensor, hooks: dict[str, list[Handler]], per_run: dict[str, list[Handler]]
    ) -> Tensor:
        steps = index.shape[0]
        restack = bool(hooks["before_training_iteration"] or hooks["before_forward"])
        # a vectorized form (for_runs) acts on the stacked tensors: only per-run handlers read run grads
        share_grads = bool(per_run["after_backward"] or per_run["before_update"])
        run_by_run = self.net.per_run and not (hooks["after_forward"] or hooks["before_backward"])
        lrs = self.schedule.next(steps)
        acc = torch.zeros(len(self.runs), steps, device=self.device)
        for step in range(steps):
            self.step = step
            self.x, self.y = self._gather(index[step])
            if restack:
                for view in self.views:
                    view.current_rows = None
                self._call(hooks["before_training_iteration"])
                self._call(hooks["before_forward"])
                self._restack()
            self.optimizer.zero_grad()
            if run_by_run:
                self._forward_backward_by_run()
            else:
                self.out = self.net(self.x)
                self._call(hooks["after_forward"])
                losses = F.cross_entropy(self.out.flatten(0, 1), self.y.flatten(), reduction="none")
                self.losses = losses.view(len(self.runs), -1).mean(1)
                self._call(hooks["before_backward"])
                self.losses.sum().backward()
            acc[:, step] = self._online_accuracy(restack)
            if share_grads:
                self.net.share_grads()
            self._call(hooks["after_backward"])
            self._call(hooks["before_update"])
            self.optimizer.step(lrs[step])
            self._call(hooks["after_update"])
            self._call(hooks["after_training_iteration"])
        return acc

    def _online_accuracy(self, restacked: bool) -> Tensor:
        """Every run's online accuracy of this step, ``(R,)``, over the current-task rows each run's plugins
        named (``RunView.current_rows``; all rows when none did)."""
        rows = [view.current_rows for view in self.views] if restacked else [None]
        if len(set(rows)) == 1:
            return online_accuracy(self.out, self.y, rows[0])
        return torch.stack([online_accuracy(o, y, n) for o, y, n in zip(self.out, self.y, rows)])

    def _forward_backward_by_run(self) -> None:
        """Per-run kernels with no hook between forward and backward: each run's forward and backward in
        turn, as a lone run does them (its activations stay in cache; the gradients are the same, since runs
        share no parameter). Sets ``out`` ``(R, B, n_classes)`` (detached) and ``losses`` ``(R,)``."""
        outs, losses = [], []
        for r, (x, y) in enumerate(zip(self.x, self.y)):
            out = self.net.run_forward(r, x)
            loss = F.cross_entropy(out, y)
            loss.backward()
            outs.append(out.detach())
            losses.append(loss.detach())
        self.out, self.losses = torch.stack(outs), torch.stack(losses)

    def _step_hooks(self) -> tuple[dict[str, list[Handler]], dict[str, list[Handler]]]:
        """Per iteration event, what to call: the handlers of every run's plugins and metrics, except that
        plugins whose class offers ``for_runs(members, net)`` (``members``: ``(plugin, RunView)`` pairs,
        ``net`` the :class:`~plasticity_bench.batch.stacked.StackedNet`; Two-Speed, DYNO, the cohort
        diagnostics) are called through one object per class for the whole batch; and, apart, the per-run
        handlers alone."""
        groups: dict[type, list[tuple[Any, RunView]]] = {}
        for view in self.views:
            for plugin in view.plugins:
                if hasattr(type(plugin), "for_runs"):
                    groups.setdefault(type(plugin), []).append((plugin, view))
        grouped = {id(p) for members in groups.values() for p, _ in members}
        vectorized = [cls.for_runs(members, self.net) for cls, members in groups.items()]
        hooks: dict[str, list[Handler]] = {}
        per_run: dict[str, list[Handler]] = {}
        for event in ITERATION_EVENTS:
            per_run[event] = [partial(h, v) for v in self.views for h in _handlers(v, event, grouped)]
            hooks[event] = per_run[event] + [getattr(g, event) for g in vectorized if hasattr(g, event)]
        return hooks, per_run

    @staticmethod
    def _call(handlers: list[Callable[[], object]]) -> None:
        for handler in handlers:
            handler()

    def _restack(self) -> None:
        """The batch after per-run hooks (Tiny ER) changed some runs' ``mbatch``."""
        if any(v._mbatch is not None for v in self.views):
            self.x = torch.stack([v.mbatch[0] for v in self.views])
            self.y = torch.stack([v.mbatch[1] for v in self.views])
        for view in self.views:
            view._mbatch = None


def execute_batch(
    configs: list[RunConfig],
    data_root: Path | None = None,
    device: str = "cpu",
    on_task: Callable[[int], None] | None = None,
    kernels: str = "auto",
    recording: Recording | None = None,
    checkpoint: RunCheckpoint | None = None,
) -> list[dict[str, Any]]:
    """Run ``configs`` as one batch and return their records (not yet written), in order.

    Every run makes the record :func:`~plasticity_bench.run.execute.execute` makes for it (to float
    tolerance); its ``wall_seconds`` is the batch's wall time over the number of runs, and ``batched``
    says ``{"runs": R, "wall_seconds": batch wall time}``. ``on_task(i)`` is called once per run after task
    ``i``; ``kernels`` as in :class:`~plasticity_bench.batch.stacked.StackedNet`; ``recording``: curve bin
    and loggers, as for a lone run. With ``checkpoint`` the whole batch is saved at task boundaries as its
    policy says and continues from its checkpoint when one exists, bit for bit as a lone run does.

    Raises:
        ValueError: for an empty batch, runs that may not share a batch (:func:`batch_key`), or what
            :func:`~plasticity_bench.run.execute.execute` raises.
        TypeError: for a network a stacked model cannot run.
    """
    if not configs or len({batch_key(c) for c in configs}) != 1:
        raise ValueError("a batch needs runs that differ only in seed, compactness and lr")
    trainer = partial(BatchedTrainer, kernels=kernels)
    return execute_runs(configs, trainer, data_root, device, on_task, checkpoint, recording)
