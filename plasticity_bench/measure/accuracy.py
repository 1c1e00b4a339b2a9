"""Checkpoint metrics on test sets: ACC and TAA (docs/protocol.md §1, "ACC / TAA").

At checkpoint ``t`` (the end of task or cycle ``t``) the model is tested on the test split of task ``k``,
giving ``Acc_{t,k}``. The cumulative accuracy is ``Acc_t = mean_k Acc_{t,k}`` over the tasks tested at
``t``; ``ACC = Acc_T`` (last checkpoint) and ``TAA = mean_t Acc_t``. Which tasks are tested is the
scenario's *checkpoint rule*:

- ``seen``: every task seen so far (``k <= t``), for class-incremental streams (Split-*, 5+1 CIFAR). The
  test splits of seen tasks are kept (what the metric needs; at most the dataset's test set).
- ``current``: the current task only (``k = t``): IID scenarios, whose every cycle has the same full test
  set, and Continual ImageNet, where testing all past pairs would be quadratic in 500 tasks and hold 500
  test splits (our rule [ours]: ``Acc_t`` is the test accuracy on the pair just learnt, as in LoP).
- ``none``: no checkpoint metric (online-only streams without a test split: Permuted / Random-Label).

Avalanche's eval streams do not fit here: they go through per-sample dataloaders and task labels, while
the tasks' test tensors are already in memory; the metric calls
:func:`~plasticity_bench.measure.accuracy.model_accuracy` on the strategy's model instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from avalanche.evaluation.metric_definitions import PluginMetric
from avalanche.evaluation.metric_results import MetricValue
from torch import Tensor, nn

from plasticity_bench.core.host import Host
from plasticity_bench.measure.metrics import updates_before

CHECKPOINT_RULES = ("none", "seen", "current")


def cumulative_accuracy(rows: Sequence[Sequence[float]]) -> list[float]:
    """``Acc_t = mean_k Acc_{t,k}`` for every checkpoint ``t``.

    Args:
        rows: ``rows[t]`` holds the accuracies (fractions) ``Acc_{t,k}`` of the tasks tested at ``t``.

    Raises:
        ValueError: a checkpoint with no accuracy.
    """
    if any(len(row) == 0 for row in rows):
        raise ValueError("every checkpoint needs at least one tested task")
    return [float(np.mean(row)) for row in rows]


def acc_and_taa(rows: Sequence[Sequence[float]]) -> tuple[float, float]:
    """``(ACC, TAA)``: the last cumulative accuracy and the mean over checkpoints (fractions; NaN if none)."""
    if not rows:
        return math.nan, math.nan
    cumulative = cumulative_accuracy(rows)
    return cumulative[-1], float(np.mean(cumulative))


class CheckpointAccuracy(PluginMetric[list[list[float]]]):
    """Tests the model at the end of every training experience under a checkpoint rule (see module doc).

    Reads the experience's ``task.test_x`` (``float32`` ``(n, *input_shape)``) and ``task.test_y``
    (``int64`` ``(n,)``); a task without a test split adds no checkpoint. Where the task also carries
    validation rows (``task.val_x``, ``task.val_y``: carved from its training data, docs/protocol.md §7)
    they are tested under the same rule: the validation figures choose the lr, the test figures are
    reported. Emits ``CheckpointAcc`` (``Acc_t``, x = task index).

    Attributes:
        rows: ``rows[t][k]`` = ``Acc_{t,k}`` (fractions), one row per checkpoint.
        val_rows: the same on the validation rows (empty without a validation split).

    Raises:
        ValueError: for an unknown rule.
    """

    def __init__(self, rule: str) -> None:
        super().__init__()
        if rule not in CHECKPOINT_RULES:
            raise ValueError(f"unknown checkpoint rule {rule!r}; choose one of {CHECKPOINT_RULES}")
        self.rule = rule
        self.rows: list[list[float]] = []
        self.val_rows: list[list[float]] = []
        self._seen: list[tuple[Tensor, Tensor]] = []
        self._seen_val: list[tuple[Tensor, Tensor]] = []

    def reset(self) -> None:
        self.rows, self._seen, self.val_rows, self._seen_val = [], [], [], []

    def result(self) -> list[list[float]]:
        return self.rows

    def summary(self) -> dict[str, float]:
        """``{"acc": ACC, "taa": TAA}`` (and ``val_acc``, ``val_taa`` on the validation rows), or ``{}``
        when no checkpoint was taken."""
        if not self.rows:
            return {}
        acc, taa = acc_and_taa(self.rows)
        out = {"acc": acc, "taa": taa}
        if self.val_rows:
            out["val_acc"], out["val_taa"] = acc_and_taa(self.val_rows)
        return out

    def per_task(self) -> dict[str, list]:
        """``checkpoint_acc`` (``Acc_t`` per checkpoint), ``acc_matrix`` (the rows) and, with a validation
        split, ``val_checkpoint_acc``; ``{}`` if none."""
        if not self.rows:
            return {}
        out = {"checkpoint_acc": cumulative_accuracy(self.rows), "acc_matrix": self.rows}
        if self.val_rows:
            out["val_checkpoint_acc"] = cumulative_accuracy(self.val_rows)
        return out

    def after_training_exp(self, strategy: Host) -> MetricValue | None:
        """Test the model on the task(s) the rule names and append the checkpoint's row."""
        task = strategy.experience.task
        if self.rule == "none" or task.test_x is None:
            return None
        model, device, size = strategy.model, strategy.device, strategy.eval_mb_size
        tested = self._tested(self._seen, task.test_x, task.test_y)
        self.rows.append([model_accuracy(model, x, y, device, size) for x, y in tested])
        if getattr(task, "val_x", None) is not None:
            checked = self._tested(self._seen_val, task.val_x, task.val_y)
            self.val_rows.append([model_accuracy(model, x, y, device, size) for x, y in checked])
        return MetricValue(
            self, "CheckpointAcc", float(np.mean(self.rows[-1])), updates_before(strategy, True)
        )

    def _tested(self, seen: list[tuple[Tensor, Tensor]], x: Tensor, y: Tensor) -> list[tuple[Tensor, Tensor]]:
        """The splits the rule tests now: this task's ``(x, y)``, or (``seen``) every task's so far."""
        if self.rule != "seen":
            return [(x, y)]
        seen.append((x, y))
        return seen


@torch.no_grad()
def model_accuracy(
    model: nn.Module, x: Tensor, y: Tensor, device: str | torch.device, batch_size: int = 1000
) -> float:
    """Fraction of ``(x, y)`` that ``model`` classifies right, in eval mode (its mode restored after), in
    batches of ``batch_size`` moved to ``device``. ``x``: ``(N, *input_shape)`` float32; ``y``: ``(N,)``
    int64."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), device=device)
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size].to(device)
        yb = y[start : start + batch_size].to(device)
        correct += (model(xb).argmax(1) == yb).sum()
    model.train(was_training)
    return float(correct) / max(1, x.shape[0])
