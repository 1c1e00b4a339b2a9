"""Tests for online accuracy (docs/protocol.md §1), TAOA, Early Task TAA and their Avalanche metrics."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from avalanche.training.plugins import EvaluationPlugin
from torch import nn

from plasticity_bench.core.models import MaskedNet
from plasticity_bench.measure.metrics import (
    ActiveUnitsMetric,
    EarlyTaskTAAMetric,
    OnlineAccuracyLog,
    TAOAMetric,
    early_steps,
    early_task_taa,
    taoa,
)
from plasticity_bench.run.loop import OnlineStrategy
from plasticity_bench.scenarios.stream import TaskData, TaskStream

# ----------------------------------------------------------------------------------- functions on arrays


def test_taoa_is_mean_over_all_steps_not_over_tasks() -> None:
    per_task = [np.array([1.0, 0.0, 1.0, 1.0]), np.array([0.0, 0.0])]
    assert taoa(per_task) == pytest.approx(3 / 6)  # a mean of task means would give 0.375


def test_taoa_include_filter_hard_tasks_only() -> None:
    per_task = [np.array([1.0, 0.0, 1.0, 1.0]), np.array([0.0, 0.0]), np.array([0.5, 0.5])]
    assert taoa(per_task, [True, False, True]) == pytest.approx(4 / 6)
    assert taoa(per_task, [False, True, False]) == 0.0
    assert math.isnan(taoa(per_task, [False, False, False]))
    assert math.isnan(taoa([]))


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, 1), (5, 1), (10, 1), (11, 2), (25, 3), (30, 3), (120, 12), (625, 63), (780, 78), (30_000, 3000)],
)
def test_early_steps_ceil_rule(n: int, expected: int) -> None:
    assert early_steps(n) == expected  # max(1, ceil(0.1 * n))


def test_early_steps_other_fraction() -> None:
    assert early_steps(3, 0.5) == 2
    assert early_steps(4, 0.5) == 2
    assert early_steps(7, 0.0) == 1


def test_early_task_taa_hand_computed() -> None:
    a = np.zeros(10)
    a[0] = 1.0  # early part = first step -> 1.0
    b = np.ones(15)
    b[1] = 0.0  # early part = first 2 steps [1, 0] -> 0.5
    c = np.array([0.0, 1.0, 1.0, 1.0, 1.0])  # early part = first step -> 0.0
    d = np.full(25, 0.2)
    d[2] = 0.8  # early part = first 3 steps -> 0.4
    assert early_task_taa([a, b]) == pytest.approx(0.75)
    assert early_task_taa([a, b, c, d]) == pytest.approx((1.0 + 0.5 + 0.0 + 0.4) / 4)
    assert early_task_taa([c], fraction=0.5) == pytest.approx(2 / 3)  # ceil(2.5) = 3 steps: [0, 1, 1]
    assert math.isnan(early_task_taa([]))


# ------------------------------------------------------------------------------------ the online loop


def identity_net() -> MaskedNet:
    """2 -> 2 -> 2 with identity weights and zero biases: logits = relu(x)."""
    model = MaskedNet(nn.Flatten(), 2, (2,), 2, nn.ReLU)
    with torch.no_grad():
        for layer in (model.hidden[0], model.head):
            layer.weight.copy_(torch.eye(2))
            layer.bias.zero_()
    return model


X = torch.tensor(
    [[2.0, 0.0], [0.0, 2.0], [3.0, 1.0], [1.0, 3.0], [5.0, 0.0], [0.0, 5.0], [4.0, 1.0], [1.0, 4.0]]
)
# predictions of identity_net on X: [0, 1, 0, 1, 0, 1, 0, 1]


def stream(*tasks: TaskData) -> TaskStream:
    """A lazy Avalanche stream over the given tasks (experiences carry ``experience.task``)."""
    return TaskStream("train", len(tasks), lambda i: tasks[i])


def make_strategy(model: nn.Module, optimizer, steps: int, batch: int, hard_only: bool = False):
    log = OnlineAccuracyLog()
    metrics = (log, TAOAMetric(log, hard_only=hard_only), EarlyTaskTAAMetric(log), ActiveUnitsMetric())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluator = EvaluationPlugin(*metrics, loggers=[])
    strategy = OnlineStrategy(
        model=model,
        optimizer=optimizer,
        train_mb_size=batch,
        steps_per_task=steps,
        seed=0,
        evaluator=evaluator,
    )
    return strategy, metrics


def test_online_accuracy_hand_computed_with_lr_zero() -> None:
    model = identity_net()
    strategy, (log, online, early, active) = make_strategy(
        model, torch.optim.SGD(model.parameters(), lr=0.0), 3, 8
    )
    y0 = torch.tensor([0, 1, 0, 1, 0, 1, 1, 0])  # 6 of 8 right
    y1 = torch.ones(8, dtype=torch.long)  # 4 of 8 right
    exps = stream(TaskData(X, y0), TaskData(X, y1, hard=False))
    strategy.train(exps[0])
    assert strategy.online_acc_host.tolist() == [0.75, 0.75, 0.75]
    strategy.train(exps[1])
    assert strategy.online_acc_host.tolist() == [0.5, 0.5, 0.5]
    assert [a.tolist() for a in log.per_task] == [[0.75] * 3, [0.5] * 3]
    assert log.hard == [True, False]
    assert online.result() == pytest.approx(0.625)
    assert early.result() == pytest.approx(0.625)
    assert early.per_task() == pytest.approx([0.75, 0.5])
    assert active.result() == [[2], [2]]
    last = strategy.evaluator.get_last_metrics()
    assert last["TAOA"] == pytest.approx(0.625)
    assert last["EarlyTaskTAA"] == pytest.approx(0.625)


def test_taoa_metric_hard_only() -> None:
    model = identity_net()
    strategy, (_, online, _, _) = make_strategy(
        model, torch.optim.SGD(model.parameters(), lr=0.0), 2, 8, hard_only=True
    )
    exps = stream(
        TaskData(X, torch.tensor([0, 1, 0, 1, 0, 1, 1, 0])),
        TaskData(X, torch.ones(8, dtype=torch.long), hard=False),
    )
    for exp in exps:
        strategy.train(exp)
    assert online.result() == pytest.approx(0.75)  # the easy task does not count


def test_online_accuracy_is_from_the_forward_before_the_update() -> None:
    """All samples predicted class 0, labelled 1: step 0 is wrong (0.0); one SGD step at lr=10 moves the
    head bias by 10 * 0.731 towards class 1, so every later step is right. Measured after the update, step 0
    would read 1.0."""
    model = identity_net()
    strategy, (_, online, early, _) = make_strategy(model, torch.optim.SGD(model.parameters(), lr=10.0), 4, 4)
    x = torch.tensor([[1.0, 0.0]]).repeat(8, 1)
    strategy.train(stream(TaskData(x, torch.ones(8, dtype=torch.long)))[0])
    assert strategy.online_acc_host.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert online.result() == pytest.approx(0.75)
    assert early.result() == 0.0  # ceil(0.1 * 4) = 1 step
    assert model.head.bias[1] > model.head.bias[0]


def test_online_strategy_runs_exactly_steps_per_task_full_batches() -> None:
    model = identity_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    strategy, _ = make_strategy(model, opt, 5, 3)
    sizes: list[int] = []

    class Count(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            sizes.append(x.shape[0])
            return x

    model.trunk = Count()
    strategy.train(stream(TaskData(X, torch.zeros(8, dtype=torch.long)))[0])
    assert sizes == [3] * 5  # 8 rows, batch 3: the 2-row tail is dropped and the data reshuffled
    assert strategy.online_acc_host.shape == (5,)


def test_optimizer_state_carries_over_between_tasks() -> None:
    """Tasks arrive unannounced: the Adam state is not reset at a task boundary (3 + 3 steps)."""
    model = identity_net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    strategy, _ = make_strategy(model, opt, 3, 4)
    y = torch.tensor([0, 1, 0, 1, 0, 1, 1, 0])
    for i, exp in enumerate(stream(TaskData(X, y), TaskData(X, 1 - y))):
        strategy.train(exp)
        assert [int(opt.state[p]["step"]) for p in model.parameters()] == [3 * (i + 1)] * 4
    assert opt.param_groups[0]["params"][0] is model.hidden[0].weight
