"""Determinism (docs/protocol.md §7): one seed gives identical records and the same stream for every
strategy."""

from __future__ import annotations

import hashlib

import pytest
import torch
from avalanche.core import SupervisedPlugin

import plasticity_bench.run.execute as runner
from plasticity_bench.run.config import RunConfig
from plasticity_bench.run.execute import execute
from plasticity_bench.run.loop import TensorBatches

pytestmark = pytest.mark.filterwarnings("ignore:No loggers specified")


def config(strategy: str, seed: int = 0, tasks: int = 3, steps: int = 8) -> RunConfig:
    return RunConfig(
        scenario="permuted_mnist", variant="mnist5k", strategy=strategy, compactness=0.5, seed=seed,
        lr=1e-3, model="mlp", tasks=tasks, steps_per_task=steps, batch_size=16,
    )  # fmt: skip


class BatchHashes(SupervisedPlugin):
    """Records a hash of every mini-batch the strategy trains on (``mb_x``, ``mb_y``), in order."""

    def __init__(self) -> None:
        super().__init__()
        self.hashes: list[str] = []

    def before_forward(self, strategy: object, **kwargs: object) -> None:
        digest = hashlib.sha256(strategy.mb_x.detach().cpu().numpy().tobytes())
        digest.update(strategy.mb_y.cpu().numpy().tobytes())
        self.hashes.append(digest.hexdigest())


def batches_seen(monkeypatch: pytest.MonkeyPatch, cfg: RunConfig) -> tuple[list[str], dict]:
    recorder = BatchHashes()
    original = runner.build_plugins
    monkeypatch.setattr(runner, "build_plugins", lambda sc: [*original(sc), recorder])
    record = execute(cfg)
    monkeypatch.setattr(runner, "build_plugins", original)
    return recorder.hashes, record


def test_same_seed_gives_identical_records() -> None:
    first, second = execute(config("grow")), execute(config("grow"))
    assert first["summary"] == second["summary"]
    assert first["per_task"] == second["per_task"]
    assert first["key"] == second["key"] and first["config"] == second["config"]
    # the records hold real measurements, not placeholders
    assert len(first["per_task"]["online_acc"]) == 3
    assert all(0.0 <= a <= 1.0 for a in first["per_task"]["online_acc"])


def test_strategies_see_the_identical_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {name: batches_seen(monkeypatch, config(name)) for name in ("dense", "grow", "prune")}
    hashes = {name: h for name, (h, _) in seen.items()}
    assert len(hashes["dense"]) == 3 * 8
    assert len(set(hashes["dense"])) == 3 * 8  # every batch differs (new permutation / new rows)
    assert hashes["dense"] == hashes["grow"] == hashes["prune"]
    # ... while the strategies themselves do differ
    assert seen["grow"][1]["per_task"]["active_units"] != seen["dense"][1]["per_task"]["active_units"]


def test_different_seeds_give_different_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    seed0, _ = batches_seen(monkeypatch, config("dense", seed=0, tasks=2, steps=4))
    seed1, _ = batches_seen(monkeypatch, config("dense", seed=1, tasks=2, steps=4))
    assert len(seed0) == len(seed1) == 8
    assert not set(seed0) & set(seed1)


def test_tensor_batches_depend_only_on_seed_task_epoch() -> None:
    x = torch.arange(10, dtype=torch.float32)[:, None]
    y = torch.arange(10)
    a = TensorBatches(x, y, batch_size=4, steps=7, seed=5, task=2)
    b = TensorBatches(x, y, batch_size=4, steps=7, seed=5, task=2)
    got = [yb.tolist() for _, yb in a]
    assert got == [yb.tolist() for _, yb in b]
    assert got == [a.batch(s)[1].tolist() for s in range(7)]  # probing a batch does not consume the stream
    assert len(got) == 7 and all(len(g) == 4 for g in got)  # 10 rows, batch 4: 2 full batches per epoch
    for epoch in range(3):  # the two batches of an epoch are disjoint rows
        assert not set(got[2 * epoch]) & set(got[2 * epoch + 1])
    other_task = [yb.tolist() for _, yb in TensorBatches(x, y, 4, 7, seed=5, task=3)]
    other_seed = [yb.tolist() for _, yb in TensorBatches(x, y, 4, 7, seed=6, task=2)]
    assert got != other_task and got != other_seed
    with pytest.raises(ValueError, match="fewer than one batch"):
        TensorBatches(x, y, batch_size=11, steps=1, seed=0, task=0)
