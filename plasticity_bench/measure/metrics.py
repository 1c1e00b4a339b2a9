"""Online and structural metrics (docs/protocol.md §1), as plain functions and as Avalanche metrics.

The Avalanche metrics read what :class:`~plasticity_bench.run.loop.OnlineStrategy` recorded: the
per-step online accuracy is written on the device inside the training step and copied to the host once
per task, so the metrics add nothing to the per-step path. Their values reach any Avalanche logger
attached to the ``EvaluationPlugin``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metric_definitions import PluginMetric
from avalanche.evaluation.metric_results import MetricValue
from torch import Tensor

from plasticity_bench.core.defaults import CURVE_BIN
from plasticity_bench.core.host import Host

EARLY_FRACTION = 0.1  # [ours]: LC26 does not give the fraction f of Early Task TAA


def taoa(per_task: list[np.ndarray], include: list[bool] | None = None) -> float:
    """Total average online accuracy: mean of ``a_t`` over all mini-batches seen (docs/protocol.md §1).

    Args:
        per_task: one float array of per-step online accuracies (fractions) per task.
        include: optional per-task flags; only flagged tasks count (5+1 CIFAR: hard tasks only).

    Returns:
        a fraction in [0, 1]; NaN when no step is included.
    """
    chosen = [a for i, a in enumerate(per_task) if include is None or include[i]]
    steps = sum(len(a) for a in chosen)
    return float(sum(a.sum() for a in chosen) / steps) if steps else math.nan


def binned(values: np.ndarray, size: int) -> list[float]:
    """Means of consecutive bins of ``size`` entries of ``values`` (1-D); the last bin holds the rest
    (docs/protocol.md §1 learning curves). ``binned([1, 0, 1, 1, 0], 2) == [0.5, 1.0, 0.0]``.

    Raises:
        ValueError: for ``size < 1``.
    """
    if size < 1:
        raise ValueError(f"curve bin must be >= 1 update (got {size})")
    values = np.asarray(values, dtype=np.float64)
    return [float(values[i : i + size].mean()) for i in range(0, len(values), size)]


def bin_ends(length: int, size: int) -> list[int]:
    """Where each :func:`binned` bin of ``length`` entries ends (exclusive):
    ``bin_ends(5, 2) == [2, 4, 5]``."""
    return [min(i + size, length) for i in range(0, length, size)]


def updates_before(strategy: Host, end: bool = False) -> int:
    """Global update count at the start (``end``: the end) of the strategy's current experience: the x of
    every value our metrics give to loggers (one axis, in updates, for all of them). A strategy without a
    fixed ``steps_per_task`` (another Avalanche template) gets the experience index instead."""
    return (strategy.experience.current_experience + int(end)) * getattr(strategy, "steps_per_task", 1)


def early_steps(n_steps: int, fraction: float = EARLY_FRACTION) -> int:
    """Number of leading steps of a task that count as early: ``max(1, ceil(f * n_steps))``."""
    return max(1, math.ceil(fraction * n_steps))


def early_task_taa(
    per_task: list[np.ndarray], fraction: float = EARLY_FRACTION, include: list[bool] | None = None
) -> float:
    """Early Task TAA: mean over tasks of the mean online accuracy of each task's first ``f`` fraction of
    steps (docs/protocol.md §1; ``f = 0.1`` [ours]). ``include``: optional per-task flags, only flagged
    tasks count (5+1 CIFAR: hard tasks only, LC26 A.1.3). Returns NaN when no task is included."""
    chosen = [a for i, a in enumerate(per_task) if include is None or include[i]]
    if not chosen:
        return math.nan
    return float(np.mean([a[: early_steps(len(a), fraction)].mean() for a in chosen]))


class OnlineAccuracyRecorder(PluginMetric[None]):
    """Per-step online accuracy for Avalanche templates that do not keep it (``Naive``, ``EWC``, ...): the
    accuracy of each training mini-batch from the forward pass used for its update (docs/protocol.md §1),
    kept on the device and handed to :class:`OnlineAccuracyLog` at the experience's end.
    :class:`~plasticity_bench.run.loop.OnlineStrategy` keeps it itself and needs no recorder (a per-step
    metric would cost a dispatch per step)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[Tensor] = []

    def reset(self) -> None:
        self.steps = []

    def result(self) -> None:
        return None

    def before_training_exp(self, strategy: Host) -> None:
        self.steps = []

    def after_forward(self, strategy: Host) -> None:
        if strategy.is_training:
            self.steps.append((strategy.mb_output.detach().argmax(1) == strategy.mb_y).float().mean())

    def per_step(self) -> np.ndarray:
        """This experience's per-step accuracies, float32 ``(steps,)``."""
        if not self.steps:
            return np.zeros(0, dtype=np.float32)
        return torch.stack(self.steps).cpu().numpy().astype(np.float32)


class OnlineAccuracyLog(PluginMetric[list[np.ndarray]]):
    """Keeps every task's per-step online accuracy (float32 arrays) and emits each task's mean.

    Emits, after each training experience, ``OnlineAcc/Task`` (the task's mean) and ``OnlineAcc/Curve``
    (its learning curve in bins of ``curve_bin`` updates, one value per bin at the bin's last update); x
    is the global update count. ``hard`` keeps the per-task flag of the task data
    (``experience.task.hard``), used by :class:`TAOAMetric`.
    """

    def __init__(self, curve_bin: int = CURVE_BIN, recorder: OnlineAccuracyRecorder | None = None) -> None:
        super().__init__()
        self.per_task: list[np.ndarray] = []
        self.hard: list[bool] = []
        self.curve_bin = curve_bin
        self.recorder = recorder

    def reset(self) -> None:
        self.per_task, self.hard = [], []

    def result(self) -> list[np.ndarray]:
        return self.per_task

    def curves(self) -> list[list[float]]:
        """Every task's learning curve (:func:`binned` by ``curve_bin``), fractions."""
        return [binned(a, self.curve_bin) for a in self.per_task]

    def after_training_exp(self, strategy: Host) -> list[MetricValue]:
        kept = getattr(strategy, "online_acc_host", None)
        if kept is None and self.recorder is None:
            raise ValueError(
                "this strategy keeps no online accuracy: build the evaluator with "
                "OnlineMetrics.new(rule, any_template=True)"
            )
        self.per_task.append(kept.copy() if kept is not None else self.recorder.per_step())
        self.hard.append(bool(getattr(strategy.experience.task, "hard", True)))
        start, acc = updates_before(strategy), self.per_task[-1]
        ends = bin_ends(len(acc), self.curve_bin)
        curve = [
            MetricValue(self, "OnlineAcc/Curve", v, start + e)
            for v, e in zip(binned(acc, self.curve_bin), ends)
        ]
        return [*curve, MetricValue(self, "OnlineAcc/Task", float(acc.mean()), start + len(acc))]


class TAOAMetric(PluginMetric[float]):
    """Running TAOA over the tasks seen so far; ``hard_only`` for 5+1 CIFAR (docs/protocol.md §1, §7)."""

    def __init__(self, log: OnlineAccuracyLog, hard_only: bool = False) -> None:
        super().__init__()
        self.log, self.hard_only = log, hard_only

    def reset(self) -> None:
        """Stateless: the values live in the shared :class:`OnlineAccuracyLog`."""

    def result(self) -> float:
        return taoa(self.log.per_task, self.log.hard if self.hard_only else None)

    def after_training_exp(self, strategy: Host) -> MetricValue:
        return MetricValue(self, "TAOA", self.result(), updates_before(strategy, end=True))


class EarlyTaskTAAMetric(PluginMetric[float]):
    """Running Early Task TAA over the tasks seen so far; ``hard_only`` for 5+1 CIFAR, whose every figure
    is over its hard tasks (docs/protocol.md §1; LC26 A.1.3)."""

    def __init__(
        self, log: OnlineAccuracyLog, fraction: float = EARLY_FRACTION, hard_only: bool = False
    ) -> None:
        super().__init__()
        self.log, self.fraction, self.hard_only = log, fraction, hard_only

    def reset(self) -> None:
        """Stateless: the values live in the shared :class:`OnlineAccuracyLog`."""

    def result(self) -> float:
        return early_task_taa(self.log.per_task, self.fraction, self.log.hard if self.hard_only else None)

    def per_task(self) -> list[float]:
        """Early online accuracy of each task (fractions)."""
        return [float(a[: early_steps(len(a), self.fraction)].mean()) for a in self.log.per_task]

    def after_training_exp(self, strategy: Host) -> MetricValue:
        return MetricValue(self, "EarlyTaskTAA", self.result(), updates_before(strategy, end=True))


class ActiveUnitsMetric(PluginMetric[list[list[int]]]):
    """Active units per masked layer at the start of every task, after that task's structural edits.

    Emits ``ActiveUnits/Layer{l}`` (x = global update count). The ``EvaluationPlugin`` runs after the
    strategy's own plugins, so the counts include the edits made at this task boundary.
    """

    def __init__(self) -> None:
        super().__init__()
        self.per_task: list[list[int]] = []

    def reset(self) -> None:
        self.per_task = []

    def result(self) -> list[list[int]]:
        return self.per_task

    def before_training_exp(self, strategy: Host) -> list[MetricValue]:
        counts = strategy.model.active_units()
        self.per_task.append(counts)
        x = updates_before(strategy)
        return [MetricValue(self, f"ActiveUnits/Layer{i}", n, x) for i, n in enumerate(counts)]


class PluginValuesMetric(PluginMetric[None]):
    """Hands to loggers, after each training experience, the values that the strategy's plugins offer
    through ``logged_values() -> [(name, value, x)]`` (new values since the last call; x in global
    updates): the cohort log-parities of the diagnostics, DYNO's widths. Keeps nothing itself."""

    def reset(self) -> None:
        """Stateless."""

    def result(self) -> None:
        return None

    def after_training_exp(self, strategy: Host) -> list[MetricValue]:
        found = [
            v
            for p in strategy.plugins
            if callable(getattr(p, "logged_values", None))
            for v in p.logged_values()
        ]
        return [MetricValue(self, name, value, x) for name, value, x in sorted(found, key=lambda v: v[2])]


class TrainingLossLog(SupervisedPlugin):
    """The training loss of every update, for experiment loggers only (added to a run that has loggers):
    kept on the device during a task (one ``detach`` per update, no sync), read once at the task's end and
    offered through :meth:`logged_values` as ``Loss/Train`` in bins of ``curve_bin`` updates (each bin's
    mean at its last update, as ``OnlineAcc/Curve``). Nothing of it goes into the record."""

    BATCHABLE = True

    def __init__(self, curve_bin: int = CURVE_BIN) -> None:
        super().__init__()
        self.curve_bin = curve_bin
        self.steps: list[Tensor] = []
        self.pending: list[tuple[str, float, int]] = []

    def before_training_exp(self, strategy: Host, **kwargs: object) -> None:
        self.steps = []

    def after_training_iteration(self, strategy: Host, **kwargs: object) -> None:
        self.steps.append(strategy.loss.detach())

    def after_training_exp(self, strategy: Host, **kwargs: object) -> None:
        if not self.steps:
            return
        losses = torch.stack(self.steps).float().cpu().numpy()
        start, ends = updates_before(strategy), bin_ends(len(losses), self.curve_bin)
        self.pending += [("Loss/Train", v, start + e) for v, e in zip(binned(losses, self.curve_bin), ends)]
        self.steps = []

    def logged_values(self) -> list[tuple[str, float, int]]:
        """The binned losses of the tasks finished since the last call."""
        found, self.pending = self.pending, []
        return found
