"""The online training loop, as an Avalanche strategy (docs/protocol.md §1, §7).

:class:`OnlineStrategy` is a ``SupervisedTemplate`` that runs exactly ``steps_per_task`` mini-batches per
experience (one update per mini-batch), slicing batches from the task's tensors and reshuffling when the
task's data is exhausted. The online accuracy of step ``t`` is taken from the forward pass used for that
update and written into a device tensor, so the per-step path adds no host synchronisation; it is copied
to the host once per task.

Plugins receive every Avalanche callback they implement. Per-iteration callbacks are dispatched only to
plugins (and, inside the ``EvaluationPlugin``, to metrics and loggers) that override them: calling
no-op handlers ten times per step would cost more than the step itself for the small networks here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from avalanche.core import BasePlugin, BaseSGDPlugin, SupervisedPlugin
from avalanche.evaluation.metric_definitions import PluginMetric
from avalanche.logging import BaseLogger
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import Tensor, nn

from plasticity_bench.core.seeding import generator

ITERATION_EVENTS = (
    "before_training_iteration",
    "before_forward",
    "after_forward",
    "before_backward",
    "after_backward",
    "before_update",
    "after_update",
    "after_training_iteration",
)


class TensorBatches:
    """Exactly ``steps`` mini-batches of ``batch_size`` rows sliced from ``(x, y)`` (docs/protocol.md §7).

    Each epoch is a fresh permutation drawn from ``generator(seed, "batches", task, epoch)``; a tail of
    fewer than ``batch_size`` rows is dropped and the data reshuffled, so every batch is full. The
    permutation of an epoch depends only on (seed, task, epoch): every strategy sees the same batches.

    Args:
        x: ``(N, *input_shape)`` float32 on the training device. y: ``(N,)`` int64.

    Raises:
        ValueError: if the task has fewer rows than one batch.
    """

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, steps: int, seed: int, task: int) -> None:
        if x.shape[0] < batch_size:
            raise ValueError(f"task {task} has {x.shape[0]} samples, fewer than one batch ({batch_size})")
        self.x, self.y, self.batch_size, self.steps = x, y, batch_size, steps
        self.seed, self.task = seed, task
        self.per_epoch = x.shape[0] // batch_size

    def __len__(self) -> int:
        return self.steps

    def permutation(self, epoch: int) -> Tensor:
        """Row order of ``epoch`` (int64, shape ``(N,)``, on the data's device)."""
        perm = torch.randperm(self.x.shape[0], generator=generator(self.seed, "batches", self.task, epoch))
        return perm.to(self.x.device)

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        """The mini-batch of ``step`` (used by structural plugins to probe without consuming the stream)."""
        epoch, j = divmod(step, self.per_epoch)
        index = self.permutation(epoch)[j * self.batch_size : (j + 1) * self.batch_size]
        return self.x[index], self.y[index]

    def index_table(self) -> Tensor:
        """Row indices of every step's batch: int64 ``(steps, batch_size)`` on the data's device; row ``t``
        selects the rows of step ``t`` (:meth:`__iter__` and run-batched training gather with it)."""
        epochs = -(-self.steps // self.per_epoch)
        used = self.per_epoch * self.batch_size
        rows = torch.cat([self.permutation(epoch)[:used] for epoch in range(epochs)])
        return rows[: self.steps * self.batch_size].view(self.steps, self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for rows in self.index_table():
            yield self.x[rows], self.y[rows]


#: Avalanche base classes whose callback methods are no-ops.
NOOP_PLUGIN_BASES = (BasePlugin, BaseSGDPlugin, SupervisedPlugin)


def overrides(obj: object, event: str, noop_bases: tuple[type, ...]) -> bool:
    """True when ``obj``'s class defines ``event`` somewhere other than in the no-op base classes."""
    owner = next((cls for cls in type(obj).__mro__ if event in cls.__dict__), None)
    return owner is not None and owner not in noop_bases


def handles(plugin: BasePlugin, event: str) -> bool:
    """True when ``plugin`` does something on ``event``: it overrides the handler, or (an
    ``EvaluationPlugin``) one of its metrics or loggers does."""
    if isinstance(plugin, EvaluationPlugin):
        return any(overrides(m, event, (PluginMetric,)) for m in plugin.metrics) or any(
            overrides(lg, event, (BaseLogger,)) for lg in plugin.loggers
        )
    return overrides(plugin, event, NOOP_PLUGIN_BASES)


class OnlineStrategy(SupervisedTemplate):
    """Avalanche ``SupervisedTemplate`` with a fixed number of steps per experience (docs/protocol.md §7).

    Experiences must carry ``experience.task`` with tensors ``x`` ``(N, *input_shape)`` float32 and
    ``y`` ``(N,)`` int64 (see ``plasticity_bench.scenarios.stream.TaskExperience``).

    Attributes updated during training:
        online_acc: float32 tensor ``(steps_per_task,)`` on the device, accuracy of each step's batch
            from the forward pass used for that update (docs/protocol.md §1).
        online_acc_host: the same as a numpy array, copied once at the end of each experience.
        current_rows: how many leading rows of this step's batch are current-task rows, set by a plugin
            that mixes in replayed rows (``None``: all rows are); the online accuracy counts those rows
            only (docs/protocol.md §1).
        batches: the current experience's :class:`TensorBatches`.
        task_step: step index within the current experience.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_mb_size: int,
        steps_per_task: int,
        seed: int,
        device: str | torch.device = "cpu",
        plugins: list[BasePlugin] | None = None,
        evaluator: EvaluationPlugin | None = None,
        lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        eval_mb_size: int = 1000,
    ) -> None:
        super().__init__(
            model=model,
            optimizer=optimizer,
            criterion=nn.CrossEntropyLoss(),
            train_mb_size=train_mb_size,
            train_epochs=1,
            eval_mb_size=eval_mb_size,
            device=device,
            plugins=plugins,
            evaluator=evaluator or EvaluationPlugin(),
            eval_every=-1,
        )
        self.steps_per_task = steps_per_task
        self.seed = seed
        self.lr_scheduler = lr_scheduler
        self.online_acc = torch.zeros(steps_per_task, device=self.device)
        self.online_acc_host = np.zeros(steps_per_task, dtype=np.float32)
        self.task_step = 0
        self.current_rows: int | None = None
        self.batches: TensorBatches | None = None
        self._dispatch: dict[str, list[BasePlugin]] = {}

    def make_train_dataloader(self, **kwargs: object) -> None:
        task = self.experience.task
        self.batches = TensorBatches(
            task.x.to(self.device),
            task.y.to(self.device),
            self.train_mb_size,
            self.steps_per_task,
            self.seed,
            self.experience.current_experience,
        )
        self.dataloader = self.batches

    def check_model_and_optimizer(self, **kwargs: object) -> None:
        """Keep the optimizer exactly as it is.

        Units are masks, never new parameters, so the optimizer built for the model stays valid; Avalanche's
        default would rebuild its parameter list, and reset its state, on the first experience a strategy
        object sees, which would wipe the moments of a run resumed from a checkpoint.
        """
        self.model = self.model_adaptation()

    def _before_training_exp(self, **kwargs: object) -> None:
        self._dispatch = {e: [p for p in self.plugins if handles(p, e)] for e in ITERATION_EVENTS}
        super()._before_training_exp(**kwargs)

    def _call(self, event: str) -> None:
        for plugin in self._dispatch[event]:
            getattr(plugin, event)(self)

    def training_epoch(self, **kwargs: object) -> None:
        """One pass of exactly ``steps_per_task`` updates (Avalanche's epoch = our task)."""
        call = self._call
        for step, batch in enumerate(self.step_batches()):
            self.task_step, self.mbatch, self.current_rows = step, batch, None
            call("before_training_iteration")
            self.optimizer.zero_grad(set_to_none=True)
            call("before_forward")
            self.mb_output = self.model(self.mb_x)
            call("after_forward")
            self.online_acc[self.task_step] = online_accuracy(self.mb_output, self.mb_y, self.current_rows)
            self.loss = self.criterion()
            call("before_backward")
            self.loss.backward()
            call("after_backward")
            call("before_update")
            self.optimizer.step()
            if self.lr_scheduler is not None:
                self.lr_scheduler.step()
            call("after_update")
            call("after_training_iteration")
        self.online_acc_host = self.online_acc.cpu().numpy().copy()

    def step_batches(self) -> Iterable[Any]:
        """The task's ``steps_per_task`` mini-batches: :attr:`batches`, or, when a plugin put a loader of its
        own in ``self.dataloader`` (Avalanche's ``ReplayPlugin`` mixes the buffer in this way), that loader's
        batches, cycled to exactly ``steps_per_task`` and moved to the device."""
        if self.dataloader is self.batches:
            return self.batches
        return itertools.islice(self._cycled(self.dataloader), self.steps_per_task)

    def _cycled(self, loader: Iterable[Any]) -> Iterator[list[Any]]:
        while True:
            for batch in loader:
                yield [t.to(self.device) if isinstance(t, Tensor) else t for t in batch]

    def _unpack_minibatch(self) -> None:
        """Batches are sliced on the device already: nothing to move."""

    @property
    def mb_rows(self) -> int:
        """Rows of this step's batch (the Host contract's ``mb_rows``)."""
        return len(self.mbatch[0])


def online_accuracy(output: Tensor, y: Tensor, rows: int | None = None) -> Tensor:
    """Accuracy of a training step's forward pass (docs/protocol.md §1): a float32 scalar tensor on the
    output's device (no host synchronisation). ``output``: ``(..., B, classes)`` logits; ``y``: ``(..., B)``;
    ``rows``: count only the first ``rows`` rows (the current-task rows of a replay-mixed batch), ``None``
    for all. With leading run dimensions the result has them, ``(R,)``."""
    hit = output.detach()[..., :rows, :].argmax(-1) == y[..., :rows]
    return hit.float().mean(-1)
