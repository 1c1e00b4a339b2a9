"""Tiny ER (docs/protocol.md §7): buffer capacity, per-class limit, the half/half batch mix, and its use in
a run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from avalanche.core import SupervisedPlugin

from plasticity_bench.core.models import build_model
from plasticity_bench.core.seeding import generator
from plasticity_bench.run.loop import OnlineStrategy
from plasticity_bench.scenarios.split import split_fashion
from plasticity_bench.strategies.replay import TinyERPlugin


def class_data(classes: list[int], per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose single feature equals their row index (so rows can be traced), labels ``classes``."""
    y = torch.tensor(classes).repeat_interleave(per_class)
    return torch.arange(len(y), dtype=torch.float32)[:, None], y


def test_per_class_limit_and_capacity() -> None:
    plugin = TinyERPlugin(seed=0)
    sizes = []
    for task in range(5):
        classes = [2 * task, 2 * task + 1]
        x, y = class_data(classes, 80)
        plugin.add(x, y, classes, generator(0, task))
        sizes.append({c: len(by) for c, (_, by) in plugin.buffer.items()})
        assert len(plugin) <= 200
    assert sizes[0] == {0: 50, 1: 50}  # up to 50 per new class
    assert sizes[1] == dict.fromkeys(range(4), 50)  # 200 in total: still 50 each
    assert sizes[2] == dict.fromkeys(range(6), 33)  # over capacity: even quota 200 // 6
    assert sizes[4] == dict.fromkeys(range(10), 20)


def test_stored_rows_are_of_their_class_and_distinct() -> None:
    plugin = TinyERPlugin(seed=0)
    x, y = class_data([3, 7], 80)
    plugin.add(x, y, [3, 7], generator(0, 0))
    for c, (bx, by) in plugin.buffer.items():
        assert torch.all(by == c) and torch.all(y[bx[:, 0].long()] == c)
        assert len(set(bx[:, 0].tolist())) == len(bx)


def test_classes_already_in_the_buffer_are_not_added_again() -> None:
    plugin = TinyERPlugin(seed=0, per_class=5)
    x, y = class_data([1], 10)
    plugin.add(x, y, [1], generator(0, 0))
    before = plugin.buffer[1][0].clone()
    plugin.add(x + 100, y, [1], generator(0, 1))
    assert torch.equal(plugin.buffer[1][0], before)


def test_mix_replaces_half_of_the_batch() -> None:
    plugin = TinyERPlugin(seed=0)
    x, y = torch.zeros(64, 1), torch.full((64,), 9)
    assert plugin.mix(x, y)[0] is x  # empty buffer (first task): batch unchanged
    bx, by = class_data([0, 1], 50)
    plugin.add(bx + 1000, by, [0, 1], generator(0, 0))
    mixed_x, mixed_y = plugin.mix(x, y)
    assert mixed_x.shape == (64, 1) and mixed_y.shape == (64,)
    assert torch.all(mixed_y[:32] == 9) and torch.all(mixed_x[:32] == 0)
    assert torch.all(mixed_y[32:] < 2) and torch.all(mixed_x[32:] >= 1000)
    assert len(set(mixed_x[32:, 0].tolist())) == 32  # without replacement when the buffer is big enough


def test_mix_concat_appends_a_full_batch_of_replay() -> None:
    plugin = TinyERPlugin(seed=0, mix="concat")
    x, y = torch.zeros(64, 1), torch.full((64,), 9)
    bx, by = class_data([0, 1], 50)
    plugin.add(bx + 1000, by, [0, 1], generator(0, 0))
    mixed_x, mixed_y = plugin.mix(x, y)
    assert mixed_x.shape == (128, 1) and torch.equal(mixed_x[:64], x) and torch.all(mixed_y[:64] == 9)
    assert torch.all(mixed_y[64:] < 2) and torch.all(mixed_x[64:] >= 1000)
    with pytest.raises(ValueError, match="replace, concat"):
        TinyERPlugin(seed=0, mix="interleave")


def test_sampling_is_seeded() -> None:
    draws = []
    for _ in range(2):
        plugin = TinyERPlugin(seed=3)
        bx, by = class_data([0, 1], 50)
        plugin.add(bx, by, [0, 1], generator(3, 0))
        draws.append(plugin.sample(32)[0])
    assert torch.equal(draws[0], draws[1])


def test_invalid_sizes() -> None:
    with pytest.raises(ValueError, match="per_class and capacity"):
        TinyERPlugin(seed=0, capacity=0)


class BatchSpy(SupervisedPlugin):
    """Records the labels of every training batch as the model sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[list[torch.Tensor]] = []

    def before_training_exp(self, strategy: object, **kwargs: object) -> None:
        self.labels.append([])

    def before_forward(self, strategy: object, **kwargs: object) -> None:
        self.labels[-1].append(strategy.mb_y.clone())


def test_split_run_mixes_current_and_replayed_classes(data_root: Path) -> None:
    benchmark = split_fashion(0, 3, None, data_root)
    model = build_model("mlp", (1, 28, 28), 10)
    replay, spy = TinyERPlugin(seed=0), BatchSpy()
    strategy = OnlineStrategy(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        train_mb_size=64,
        steps_per_task=4,
        seed=0,
        plugins=[replay, spy],
    )
    seen: set[int] = set()
    for task, experience in enumerate(benchmark.train_stream):
        strategy.train(experience)
        current = set(experience.task.classes)
        for labels in spy.labels[task]:
            assert len(labels) == 64
            first, second = set(labels[:32].tolist()), set(labels[32:].tolist())
            assert first <= current
            assert second <= (seen if task else current)  # task 1: no buffer yet
        seen |= current
        assert set(replay.buffer) == seen
    assert strategy.online_acc.shape == (4,)


def test_plugin_reads_the_task_and_the_device() -> None:
    plugin = TinyERPlugin(seed=0)
    x, y = class_data([4], 60)
    experience = SimpleNamespace(task=SimpleNamespace(x=x, y=y, classes=(4,)), current_experience=0)
    plugin.after_training_exp(SimpleNamespace(experience=experience, device=torch.device("cpu")))
    assert len(plugin.buffer[4][1]) == 50
