"""On a GPU (``pytest -m cuda``; skipped without one): batched runs equal lone runs to tolerance, resume is
bit-identical with deterministic algorithms, no host sync inside the update loop, and ``--batch-runs auto``
sizes batches from free device memory (docs/protocol.md §12)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from avalanche.core import SupervisedPlugin

from plasticity_bench.batch.trainer import AUTO_MEMORY_FRACTION, auto_batch_runs, execute_batch, run_bytes
from plasticity_bench.run.build import build_benchmark
from plasticity_bench.run.execute import execute, fresh_runs
from plasticity_bench.run.lone import LoneTrainer
from plasticity_bench.run.resume import CheckpointPolicy, RunCheckpoint
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.strategies.registry import STRATEGIES
from plasticity_bench.sweep.plan import expand, sweep_base

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
FAMILIES = ("dense", "grow", "prune", "dyno", "grow+two_speed", "grow+moment_transplant")


def configs(strategy: str, seeds: int, tasks: int = 2, steps: int = 30, options: dict | None = None) -> list:
    base = sweep_base(SCENARIOS["permuted_mnist"], tasks, steps, cycles=2, device="cuda")
    return expand("permuted_mnist", [strategy], [0.5], list(range(seeds)), base, options)


@pytest.mark.parametrize("strategy", FAMILIES)
def test_batched_equals_lone_on_cuda(strategy: str, data_root: Path) -> None:
    runs = configs(strategy, 3)
    batched = execute_batch(runs, data_root, "cuda", kernels="batched")
    for config, many in zip(runs, batched):
        alone = execute(config, data_root, "cuda")
        for key, value in alone["summary"].items():
            assert many["summary"][key] == pytest.approx(value, rel=1e-3, abs=1e-3), key


class Stop(Exception):
    """Ends a run after its first task, as a kill would."""


def test_resume_is_bit_identical_on_cuda_with_deterministic_algorithms(
    data_root: Path, tmp_path: Path
) -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    try:
        (config,) = configs("grow", 1, tasks=3)
        plain = execute(config, data_root, "cuda")
        checkpoint = RunCheckpoint(tmp_path / "run.pt", "grow", CheckpointPolicy.parse("1"))

        def stop(task: int) -> None:
            if task == 1:
                raise Stop

        with pytest.raises(Stop):
            execute(config, data_root, "cuda", stop, checkpoint)
        resumed = execute(config, data_root, "cuda", None, checkpoint)
    finally:
        torch.use_deterministic_algorithms(False)
    for record in (plain, resumed):
        record.pop("created"), record.pop("wall_seconds")
    assert resumed == plain


class SyncsRaise(SupervisedPlugin):
    """Turns CUDA's sync debug mode to ``error`` from update 3 of each task to its last update (the task
    boundary's work, which may sync, stays outside)."""

    BATCHABLE = True

    def __init__(self) -> None:
        super().__init__()
        self.step = 0

    def before_training_exp(self, strategy: object, **kwargs: object) -> None:
        self.step = 0

    def after_training_iteration(self, strategy: object, **kwargs: object) -> None:
        self.step += 1
        if self.step == 3:
            torch.cuda.set_sync_debug_mode("error")
        if self.step == strategy.steps_per_task:
            torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("strategy", [*(s for s in STRATEGIES if s != "agem"), "dense+sft", "dyno+sft"])
def test_no_host_sync_inside_the_update_loop(strategy: str, data_root: Path) -> None:
    """DYNO's triggers are structural edits (they read the effective dimension): kept out of the window."""
    options = {"trigger_every": 10_000} if strategy.startswith("dyno") else None
    (config,) = configs(strategy, 1, tasks=1, steps=300, options=options)
    runs = fresh_runs([config], [build_benchmark(config, data_root)], "cuda")
    runs[0].plugins.append(SyncsRaise())
    try:
        LoneTrainer(runs, "cuda").train()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_batch_runs_auto_fits_free_device_memory(data_root: Path) -> None:
    (config,) = configs("dense", 1)
    count = auto_batch_runs(config, data_root, "cuda")
    free = torch.cuda.mem_get_info()[0]
    assert 1 <= count <= 256
    assert count == 256 or (count + 1) * run_bytes(config, data_root) > AUTO_MEMORY_FRACTION * free


def test_a_transfer_run_of_vgg11_trains_on_cuda(data_root: Path) -> None:
    """DYNO + SFT on conv channels (docs/protocol.md §17), a tiny VGG11 on the fixture's Imagenette."""
    base = sweep_base(SCENARIOS["imagenette"], 1, 40, batch_size=8, device="cuda")
    options = {"width_scale": 0.0625, "image_size": 32, "trigger_every": 10}
    (config,) = expand("imagenette", ["dyno+sft"], [1.0], [0], base, options)
    record = execute(config, data_root, "cuda")
    assert record["dyno"]["events"] and record["inference_flops"][-1][1] == record["summary"]["flops"]
