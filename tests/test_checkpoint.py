"""Checkpoint metrics ACC/TAA (docs/protocol.md §1), the IID cosine schedule and the head reset
(docs/protocol.md §7)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from plasticity_bench.core.models import build_model
from plasticity_bench.measure.accuracy import CheckpointAccuracy, acc_and_taa, cumulative_accuracy
from plasticity_bench.run.build import make_lr_schedule
from plasticity_bench.strategies.head import ResetHeadPlugin


def test_cumulative_accuracy_acc_and_taa() -> None:
    rows = [[0.9], [0.6, 0.8], [0.3, 0.5, 1.0]]
    assert cumulative_accuracy(rows) == pytest.approx([0.9, 0.7, 0.6])
    acc, taa = acc_and_taa(rows)
    assert acc == pytest.approx(0.6) and taa == pytest.approx((0.9 + 0.7 + 0.6) / 3)
    assert all(math.isnan(v) for v in acc_and_taa([]))
    with pytest.raises(ValueError, match="at least one"):
        cumulative_accuracy([[0.5], []])


class Oracle(torch.nn.Module):
    """Classifies row ``i`` of a test set ``x = (i, task)`` as ``task`` when ``i < task``: accuracy task / 10
    on 10 rows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pred = torch.where(x[:, 0] < x[:, 1], x[:, 1], x[:, 1] + 1).long()
        return torch.nn.functional.one_hot(pred, 20).float()


class FakeStrategy:
    """Stands in for OnlineStrategy: its model's accuracy on task ``t``'s test set is ``t / 10``."""

    def __init__(self) -> None:
        self.experience = None
        self.model, self.device, self.eval_mb_size = Oracle(), "cpu", 3

    def finish(self, metric: CheckpointAccuracy, task: int, with_test: bool = True) -> None:
        y = torch.full((10,), task)
        x = torch.stack([torch.arange(10.0), torch.full((10,), float(task))], 1)
        data = SimpleNamespace(test_x=x if with_test else None, test_y=y if with_test else None)
        self.experience = SimpleNamespace(task=data, current_experience=task)
        metric.after_training_exp(self)


@pytest.mark.parametrize(
    ("rule", "rows"),
    [("seen", [[0.1], [0.1, 0.2], [0.1, 0.2, 0.3]]), ("current", [[0.1], [0.2], [0.3]]), ("none", [])],
)
def test_checkpoint_rules(rule: str, rows: list[list[float]]) -> None:
    metric, strategy = CheckpointAccuracy(rule), FakeStrategy()
    for task in (1, 2, 3):
        strategy.finish(metric, task)
    assert len(metric.rows) == len(rows) and all(a == pytest.approx(b) for a, b in zip(metric.rows, rows))
    if rows:
        acc, taa = acc_and_taa(rows)
        assert metric.summary() == pytest.approx({"acc": acc, "taa": taa})
        assert metric.per_task()["checkpoint_acc"] == pytest.approx(cumulative_accuracy(rows))
    else:
        assert metric.summary() == {} and metric.per_task() == {} and metric.rows == []


def test_tasks_without_test_split_add_no_checkpoint() -> None:
    metric, strategy = CheckpointAccuracy("seen"), FakeStrategy()
    strategy.finish(metric, 1, with_test=False)
    assert metric.rows == [] and metric.summary() == {}


def test_unknown_rule() -> None:
    with pytest.raises(ValueError, match="unknown checkpoint rule"):
        CheckpointAccuracy("all")


def test_cosine_schedule_anneals_over_the_whole_run() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = make_lr_schedule("cosine", optimizer, total_steps=100)
    lrs = []
    for _ in range(100):
        optimizer.step()
        schedule.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[49] == pytest.approx(0.05) and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert make_lr_schedule("constant", optimizer, 100) is None
    with pytest.raises(ValueError, match="unknown lr schedule"):
        make_lr_schedule("step", optimizer, 100)


def test_reset_head_redraws_the_output_layer_after_the_first_task() -> None:
    torch.manual_seed(0)
    model = build_model("kumar_cnn", (3, 32, 32), 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    optimizer.step()
    trunk_before = [p.detach().clone() for p in model.trunk.parameters()]
    plugin = ResetHeadPlugin("torch_default", seed=0)
    strategy = SimpleNamespace(
        model=model, optimizer=optimizer, experience=SimpleNamespace(current_experience=0)
    )
    head_before = model.head.weight.detach().clone()
    plugin.before_training_exp(strategy)
    assert torch.equal(model.head.weight, head_before) and plugin.resets == 0

    strategy.experience.current_experience = 1
    rng_state = torch.get_rng_state()
    plugin.before_training_exp(strategy)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global stream is left alone
    assert not torch.equal(model.head.weight, head_before)
    assert model.head.weight not in optimizer.state and model.head.bias not in optimizer.state
    assert all(torch.equal(a, b) for a, b in zip(trunk_before, model.trunk.parameters()))
    first_draw = model.head.weight.detach().clone()
    plugin.before_training_exp(strategy)
    assert torch.equal(model.head.weight, first_draw)  # seeded by (seed, task)
