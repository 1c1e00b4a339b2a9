"""Run-batched training (plasticity_bench.batch.trainer, .stacked, .stacked_optim): run r of a batch makes the
record the same run makes alone, to float tolerance, for every strategy family; the per-run views edit one
run only; the sweep and the CLI run batches."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from plasticity_bench.batch.optim import StackedOptimizer
from plasticity_bench.batch.stacked import StackedNet
from plasticity_bench.batch.trainer import execute_batch, parse_batch_runs, plan_batches
from plasticity_bench.cli import app
from plasticity_bench.core.masks import masked_layers_of, zero_optimizer_state
from plasticity_bench.core.models import build_model
from plasticity_bench.measure.cohorts import CohortDiagnostics
from plasticity_bench.run.config import OptimizerSpec
from plasticity_bench.run.execute import execute
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.strategies.dyno import RingBuffer
from plasticity_bench.strategies.interventions import TwoSpeed
from plasticity_bench.sweep.plan import expand, sweep_base

TOLERANCE = 1e-5
EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "random_grow.py") + ":RandomGrow"

# name: (scenario, strategy, tasks, steps, model, options, winning ticket, compactness, seeds, lrs)
VARIANTS: dict[str, tuple[Any, ...]] = {
    "dense": ("permuted_mnist", "dense", 3, 12, None, {}, False, [1.0], [0, 1, 2], None),
    "grow_mixed_lr": (
        "permuted_mnist", "grow", 4, 10, None, {"diag_every": 3}, False, [0.5, 0.25], [0, 1], [1e-3, 3e-4],
    ),
    "prune_imp": (
        "permuted_mnist", "prune", 4, 10, None, {"rewind": "imp", "diag_every": 4}, False, [0.5, 0.25],
        [0, 1], None,
    ),
    "interventions_ticket": (
        "permuted_mnist", "grow+two_speed+moment_transplant+gradmax", 6, 8, None, {"two_speed_window": 12},
        True, [0.5, 0.25], [0, 1], None,
    ),
    "net2wider_smooth_leaky": (
        "permuted_mnist", "grow+net2wider+rand_smooth_leaky", 4, 10, None, {}, False, [0.5], [0, 1], None,
    ),
    "dyno": (
        "permuted_mnist", "dyno", 6, 10, "kumar_mlp", {"trigger_every": 4, "dyno_delta": 0.0}, False, [1.0],
        [0, 1, 2], None,
    ),
    "tiny_er_concat": (
        "split_mnist", "grow", 5, 4, None, {"replay_mix": "concat"}, False, [0.5], [0, 1], None,
    ),
    "user_plugin": ("permuted_mnist", EXAMPLE, 4, 8, None, {}, False, [0.5, 0.25], [0, 1], None),
    "convnet_head_reset": (
        "continual_imagenet", "prune", 3, 4, None, {"reset_head": True}, False, [0.5], [0, 1], None,
    ),
}  # fmt: skip


def configs_of(name: str) -> list:
    scenario, strategy, tasks, steps, model, options, wt, compactness, seeds, lrs = VARIANTS[name]
    base = sweep_base(SCENARIOS[scenario], tasks, steps, model=model, winning_ticket=wt)
    return expand(scenario, [strategy], compactness, seeds, base, options, lrs=lrs)


def differences(alone: Any, batched: Any, path: str = "") -> list[tuple[float, str]]:
    """Float differences between two records; every non-float (masks, edit logs, counts) must be equal."""
    if isinstance(alone, dict):
        keys = set(alone) - {"created", "wall_seconds", "batched"}
        assert keys == set(batched) - {"created", "wall_seconds", "batched"}, path
        return [d for k in sorted(keys) for d in differences(alone[k], batched[k], f"{path}.{k}")]
    if isinstance(alone, list):
        assert len(alone) == len(batched), path
        return [d for i, (a, b) in enumerate(zip(alone, batched)) for d in differences(a, b, f"{path}[{i}]")]
    if isinstance(alone, float):
        assert math.isnan(alone) == math.isnan(batched), path
        return [] if math.isnan(alone) else [(abs(alone - batched), path)]
    assert alone == batched, (path, alone, batched)
    return []


CASES = [(name, "auto") for name in VARIANTS] + [
    (name, "batched") for name in ("grow_mixed_lr", "prune_imp", "dyno")
]


@pytest.mark.parametrize(("name", "kernels"), CASES)
def test_each_run_of_a_batch_makes_its_lone_record(
    name: str, kernels: str, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``auto`` on CPU: per-run kernels; ``batched``: the GPU kernels (batched matmul), run on the CPU.
    Two-Speed, the cohort diagnostics and (batched kernels) DYNO's buffers run vectorized over the batch
    (their per-run step hooks are never called)."""
    configs = configs_of(name)
    assert len(configs) > 1
    alone = [execute(c, data_root, "cpu") for c in configs]
    for event in ("before_update", "after_update"):
        monkeypatch.setattr(TwoSpeed, event, lambda *a, **k: pytest.fail("per-run Two-Speed hook called"))
    monkeypatch.setattr(
        CohortDiagnostics, "after_training_iteration", lambda *a, **k: pytest.fail("per-run diagnostics hook")
    )
    if kernels == "batched":  # DYNO's buffers: one stacked copy per layer, no per-run push
        monkeypatch.setattr(RingBuffer, "push", lambda *a, **k: pytest.fail("per-run DYNO buffer push"))
    batched = execute_batch(configs, data_root, "cpu", kernels=kernels)
    for one, many in zip(alone, batched):
        assert many["batched"]["runs"] == len(configs)
        diffs = differences(one, many)  # metrics, diagnostics, DYNO's phi: every float
        assert max((d for d, _ in diffs), default=0.0) <= TOLERANCE, name
    if name == "dyno":
        assert any(r["dyno"]["events"] for r in alone), "DYNO should change its width in this test"
    if name in ("grow_mixed_lr", "prune_imp"):
        assert all(any(row["snapshot"] == "curve" for row in r["diagnostics"]) for r in batched)
    if name == "interventions_ticket":
        assert all("wt_taoa" in r["summary"] for r in batched)


def test_a_batch_refuses_runs_that_do_not_share_a_stream(data_root: Path) -> None:
    base = sweep_base(SCENARIOS["permuted_mnist"], 2, 4)
    configs = expand("permuted_mnist", ["dense", "grow"], [0.5], [0], base)
    with pytest.raises(ValueError, match="differ only in seed, compactness and lr"):
        execute_batch(configs, data_root)


def test_plan_batches_groups_by_stream_and_cuts_to_size() -> None:
    base = sweep_base(SCENARIOS["permuted_mnist"], 2, 4)
    configs = expand("permuted_mnist", ["grow", "dense"], [0.5, 0.25], [0, 1, 2], base)
    batches = plan_batches(configs, 4)
    assert [len(b) for b in batches] == [4, 2, 3]
    assert {c.strategy for c in batches[0] + batches[1]} == {"grow"} and batches[2][0].strategy == "dense"
    assert sorted(map(id, (c for b in batches for c in b))) == sorted(map(id, configs))
    assert parse_batch_runs("auto") is None and parse_batch_runs("16") == 16
    for bad in ("0", "x", "-2"):
        with pytest.raises(ValueError, match="--batch-runs"):
            parse_batch_runs(bad)


def stacked_pair(name: str, shape: tuple[int, ...], kernels: str = "auto") -> tuple[list, StackedNet, list]:
    torch.manual_seed(0)
    models = [build_model(name, shape, 10) for _ in range(3)]
    reference = copy.deepcopy(models)
    return models, StackedNet(models, [None] * 3, kernels), reference


@pytest.mark.parametrize("kernels", ["batched", "per_run"])
@pytest.mark.parametrize(("name", "shape"), [("mlp", (1, 28, 28)), ("kumar_cnn", (3, 32, 32))])
def test_stacked_forward_is_each_runs_forward_and_edits_go_through(
    name: str, shape: tuple, kernels: str
) -> None:
    models, net, reference = stacked_pair(name, shape, kernels)
    masked_layers_of(models[1])[0].units.set_units(torch.arange(5), False)  # one run's edit...
    masked_layers_of(reference[1])[0].units.set_units(torch.arange(5), False)
    with torch.no_grad():
        masked_layers_of(models[2])[1].producer.weight[3].fill_(0.5)  # ...and another's weight write
        masked_layers_of(reference[2])[1].producer.weight[3].fill_(0.5)
    assert net.mask(0)[1, :5].sum() == 0 and net.mask(0)[0].sum() == net.mask(0).shape[1]
    x = torch.randn(3, 4, *shape)
    out = net(x)
    for r in range(3):
        torch.testing.assert_close(out[r], reference[r](x[r]), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out[r], models[r](x[r]), rtol=1e-5, atol=1e-5)


def test_stacked_adam_follows_torch_adam_per_run_with_its_own_lr_and_state_surgery() -> None:
    models, net, reference = stacked_pair("kumar_mlp", (1, 8, 8))
    lrs = [1e-3, 1e-2, 3e-4]
    spec = OptimizerSpec("adam")
    optimizer = StackedOptimizer(spec, net, lrs)
    views = [optimizer.run(r, lr) for r, lr in enumerate(lrs)]
    singles = [spec.build(m.parameters(), lr) for m, lr in zip(reference, lrs)]  # the lone trainer's Adam
    x, y = torch.randn(3, 16, 1, 8, 8), torch.randint(0, 10, (3, 16))
    for step in range(6):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x).flatten(0, 1), y.flatten(), reduction="sum").backward()
        optimizer.step(lrs)
        for r, (model, single) in enumerate(zip(reference, singles)):
            single.zero_grad()
            torch.nn.functional.cross_entropy(model(x[r]), y[r], reduction="sum").backward()
            single.step()
        if step == 2:  # surgery on run 1 only, in both worlds
            units = torch.tensor([0, 4])
            zero_optimizer_state(views[1], masked_layers_of(models[1])[0].slices(units))
            zero_optimizer_state(singles[1], masked_layers_of(reference[1])[0].slices(units))
            head = models[2].head.weight
            views[2].state.pop(head)
            singles[2].state.pop(reference[2].head.weight)
            assert (
                float(views[2].state[head]["step"]) == 0
                and float(views[0].state[models[0].head.weight]["step"]) == 3
            )
    for model, ref in zip(models, reference):
        for p, q in zip(model.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)  # Adam's m/sqrt(v) on tiny gradients
    with pytest.raises(TypeError, match="edited in place"):
        views[0].state[models[0].head.weight] = {}


def test_a_forward_hook_that_replaces_an_output_is_refused() -> None:
    models, net, _ = stacked_pair("mlp", (1, 4, 4), "batched")
    handle = models[1].head.register_forward_hook(lambda module, inputs, output: output * 2)
    with pytest.raises(RuntimeError, match="--batch-runs 1"):
        net(torch.randn(3, 2, 1, 4, 4))
    handle.remove()
    net(torch.randn(3, 2, 1, 4, 4))  # removed through its handle: no longer replayed


def test_batched_kernels_replay_forward_hooks_and_refuse_pre_hooks() -> None:
    """Forward hooks on a run's modules see that run's slice; a forward pre-hook cannot be replayed and
    is refused when registered (it used to be skipped silently)."""
    models, net, _ = stacked_pair("mlp", (1, 4, 4), "batched")
    seen: list[tuple[int, ...]] = []
    handle = (
        models[2].units[0].register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    )
    x = torch.randn(3, 2, 1, 4, 4)
    net(x)
    assert seen == [(2, models[2].units[0].n_units)]
    handle.remove()
    net(x)
    assert len(seen) == 1
    with pytest.raises(ValueError, match=r"pre-hook on hidden\.0 cannot run in a run-batch"):
        models[0].hidden[0].register_forward_pre_hook(lambda module, inputs: None)
    runs, per_run, _ = stacked_pair("mlp", (1, 4, 4), "per_run")  # each run's own forward: pre-hooks fire
    fired: list[int] = []
    runs[1].hidden[0].register_forward_pre_hook(lambda module, inputs: fired.append(1))
    per_run(x)
    assert fired == [1]


def records(out: Path) -> dict[str, dict]:
    found = {}
    for path in (out / "records").rglob("*.json"):
        record = json.loads(path.read_text())
        found[record["key"]] = record
    return found


def test_cli_batch_runs_writes_every_record_of_the_sweep(data_root: Path, tmp_path: Path) -> None:
    common = [
        "run", "--scenario", "permuted_mnist", "--tasks", "2", "--steps", "6", "--seeds", "3",
        "--strategy", "dense,grow", "--compactness", "0.5,0.25", "--data-root", str(data_root),
    ]  # fmt: skip
    alone = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "alone")])
    assert alone.exit_code == 0, alone.output
    wide = {"COLUMNS": "300"}
    dry = CliRunner().invoke(
        app, [*common, "--out", str(tmp_path / "batched"), "--batch-runs", "4", "--dry-run"], env=wide
    )
    assert dry.exit_code == 0 and "in batches of 4, " in dry.output and "per run (calibrated)" in dry.output
    batched = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "batched"), "--batch-runs", "4"])
    assert batched.exit_code == 0, batched.output
    one, many = records(tmp_path / "alone"), records(tmp_path / "batched")
    assert set(one) == set(many) and len(one) == 9
    assert sorted(r["batched"]["runs"] for r in many.values()) == [2, 2, 3, 3, 3, 4, 4, 4, 4]
    for key, record in one.items():
        assert max((d for d, _ in differences(record, many[key])), default=0.0) <= TOLERANCE
    again_flags = ["--out", str(tmp_path / "batched"), "--batch-runs", "4", "--force", "--dry-run"]
    again = CliRunner().invoke(app, [*common, *again_flags], env=wide)
    assert "grow: 4 runs in batches of 4, " in again.output and "per run (4 records)" in again.output
    bad = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "bad"), "--batch-runs", "0"])
    assert bad.exit_code == 2 and "--batch-runs" in bad.output


def test_auto_batch_runs_fits_memory_and_caps(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import plasticity_bench.batch.trainer as batched
    from plasticity_bench.sweep.claims import SweepSettings

    base = sweep_base(SCENARIOS["permuted_mnist"], 2, 4)
    configs = expand("permuted_mnist", ["grow"], [0.5, 0.25], list(range(12)), base)
    per_run = batched.run_bytes(configs[0], data_root)
    assert per_run > 4 * 5 * 784 * 256  # parameters with gradient and Adam state at least
    monkeypatch.setattr(
        batched, "free_bytes", lambda device: int(10.5 * per_run / batched.AUTO_MEMORY_FRACTION)
    )
    assert batched.auto_batch_runs(configs[0], data_root, "cpu") == 10
    monkeypatch.setattr(batched, "free_bytes", lambda device: 10**15)
    assert batched.auto_batch_runs(configs[0], data_root, "cpu") == batched.AUTO_MAX["cpu"]
    sizes = [len(b) for b in SweepSettings(data_root, batch_runs=None).batches(configs)]
    assert sizes == [16, 8]
