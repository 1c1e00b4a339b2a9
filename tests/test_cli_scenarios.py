"""Every scenario through the CLI and runner (fixture data), and Split-Fashion end to end on the real data."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from plasticity_bench import cli
from plasticity_bench.cli import app
from plasticity_bench.leaderboard.tables import METRIC_LABELS
from plasticity_bench.run.config import OptimizerSpec
from plasticity_bench.scenarios.readers import DEBIAN_FASHION_MNIST_DIR
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.sweep.plan import sweep_base

WT_FIELDS = ("acc", "taa", "wt_acc", "wt_taa", "delta_wt_c")


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, ["run", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def summaries(out: Path) -> list[dict]:
    return [json.loads(p.read_text())["summary"] for p in sorted((out / "records").rglob("*.json"))]


#: DYNO's transfer streams run one task on VGG11: tests/test_transfer.py runs them end to end.
CONTINUAL = sorted(name for name, spec in SCENARIOS.items() if spec.tasks > 1)


@pytest.mark.parametrize("name", CONTINUAL)
def test_every_scenario_runs_through_the_cli(data_root: Path, tmp_path: Path, name: str) -> None:
    spec = SCENARIOS[name]
    invoke(
        "--scenario", name, "--strategy", "grow", "--compactness", "0.5", "--seeds", "1", "--tasks", "2",
        "--steps", "2", "--data-root", str(data_root), "--out", str(tmp_path), "--winning-ticket",
    )  # fmt: skip
    (summary,) = summaries(tmp_path)
    assert 0.0 <= summary["taoa"] <= 1.0 and "wt_taoa" in summary and "delta_wt_c" in summary
    assert ("acc" in summary) == (spec.checkpoint != "none")
    assert ("wt_acc" in summary) == (spec.checkpoint != "none")


def test_scenario_options_reach_the_builder(data_root: Path, tmp_path: Path) -> None:
    invoke(
        "--scenario", "continual_imagenet", "--strategy", "dense", "--seeds", "1", "--tasks", "2", "--steps",
        "1", "--data-root", str(data_root), "--out", str(tmp_path), "--option", "reset_head=yes",
    )  # fmt: skip
    (path,) = (tmp_path / "records").rglob("*.json")
    record = json.loads(path.read_text())
    assert record["config"]["options"] == {"reset_head": True} and record["data"]["reset_head"] is True


def test_missing_data_is_reported_by_the_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["run", "--scenario", "cifar_5plus1", "--seeds", "1", "--data-root", str(tmp_path / "none"),
              "--out", str(tmp_path / "out")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "CIFAR-100 (train) not found" in result.output and "cifar-100-python" in result.output


needs_fashion = pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)",
)


def run_split_fashion(out: Path, monkeypatch: pytest.MonkeyPatch, *sizes: str) -> tuple[str, pd.DataFrame]:
    """The issue's command on the real Fashion-MNIST (found in the Debian folder), with ``sizes`` flags."""
    monkeypatch.setenv("PLASTICITY_BENCH_CACHE", str(out / "cache"))  # no stray data root on this machine
    monkeypatch.setattr(cli, "console", Console(width=300))  # the whole table on one line per row
    output = invoke(
        "--scenario", "split_fashion", "--strategy", "dense,grow,prune", "--compactness", "0.2,0.5",
        "--winning-ticket", "--out", str(out), *sizes,
    )  # fmt: skip
    return output, pd.read_csv(out / "leaderboard.csv")


@needs_fashion
def test_split_fashion_end_to_end_on_real_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output, board = run_split_fashion(tmp_path, monkeypatch, "--seeds", "1", "--tasks", "5", "--steps", "30")
    assert len(board) == 5  # dense + grow, prune at two compactness levels
    for field in WT_FIELDS:
        assert board[f"{field}_mean"].notna().all(), field
    records = summaries(tmp_path)
    assert all(r["delta_wt_c"] == pytest.approx(r["wt_acc"] - r["acc"]) for r in records)
    assert all(r["acc"] > 0.1 for r in records)  # 10 real classes: above chance after 5 tasks
    assert max(r["acc"] for r in records) > 0.4
    for field in WT_FIELDS:  # the printed table names them as the field does (ACC, WT ACC, Δ WT-C, ...)
        assert f" {METRIC_LABELS[field]} (%) " in output


@needs_fashion
@pytest.mark.slow
def test_split_fashion_three_seeds_with_cis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's command with 3 seeds at a tenth of the PROTOCOL steps: every metric gets a CI."""
    _, board = run_split_fashion(tmp_path, monkeypatch, "--seeds", "3", "--steps", "374")
    for field in WT_FIELDS:
        assert (board[f"{field}_n"] == 3).all() and board[f"{field}_ci95"].notna().all(), field


def test_split_cifar100_edits_at_every_task_boundary(data_root: Path, tmp_path: Path) -> None:
    """LC26 A.1.2: at each task boundary the model either stays dense or undergoes a structural edit."""
    invoke(
        "--scenario", "split_cifar100", "--strategy", "grow", "--compactness", "0.5", "--seeds", "1",
        "--tasks", "3", "--steps", "2", "--data-root", str(data_root), "--out", str(tmp_path),
    )  # fmt: skip
    (path,) = (tmp_path / "records").rglob("*.json")
    record = json.loads(path.read_text())
    assert record["config"]["cycles"] == 3
    # T = K = 3: no edit before task 0 has trained; the edits close cycles 1 and 2 at the two boundaries
    assert sorted({row["task"] for row in record["diagnostics"] if row["snapshot"] == "post"}) == [1, 2]
    widths = [counts[0] for counts in record["per_task"]["active_units"]]
    assert widths[0] < widths[1] < widths[2] == 256  # grows at each boundary, the last task at target


def test_split_batch_size_momentum_and_cosine_are_run_settings(data_root: Path, tmp_path: Path) -> None:
    invoke(
        "--scenario", "split_mnist", "--strategy", "dense", "--seeds", "1", "--tasks", "2", "--steps", "3",
        "--batch-size", "32", "--option", "momentum=0.9", "--option", "replay_mix=concat",
        "--data-root", str(data_root), "--out", str(tmp_path),
    )  # fmt: skip
    (path,) = (tmp_path / "records").rglob("*.json")
    record = json.loads(path.read_text())
    assert record["config"]["batch_size"] == 32
    assert record["config"]["options"] == {
        "momentum": 0.9, "replay_mix": "concat", "online_rows": "current", "val_fraction": 0.1
    }  # fmt: skip
    assert record["data"]["lr_schedule"] == "cosine"
    base = sweep_base(SCENARIOS["split_fashion"], 5, batch_size=32)
    assert base["steps_per_task"] == 20 * (12_000 // 32) and base["cycles"] == 5  # "20 epochs" at batch 32
    optimizer = OptimizerSpec("sgd", momentum=0.9).build([torch.nn.Parameter(torch.zeros(2))], 0.01)
    assert optimizer.param_groups[0]["momentum"] == 0.9
