"""``plasticity-bench reproduce lc26-table14``: cells, verdict rule, written report, smoke mode."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from plasticity_bench.cli import app
from plasticity_bench.leaderboard.aggregate import aggregate
from plasticity_bench.leaderboard.paper import attach_reference
from plasticity_bench.leaderboard.reproduce import cell_configs, compare, select_cells, verdict
from plasticity_bench.run.records import make_record
from plasticity_bench.scenarios.registry import SCENARIOS


def test_verdict_from_both_intervals() -> None:
    # ours 80.0 ± 1.0, paper 82.5 ± 1.0: intervals 79-81 and 81.5-83.5 do not overlap
    assert verdict(80.0, 1.0, 3, 82.5, 1.0, True) == "differs"
    assert verdict(80.0, 1.0, 3, 81.9, 1.0, True) == "agrees"  # |diff| 1.9 <= 2.0
    assert verdict(80.0, 1.0, 3, 80.5, math.nan, True) == "agrees"  # paper without ±: ours' CI alone
    assert verdict(80.0, 1.0, 3, 80.0, 1.0, False) == "not comparable"  # not the paper's protocol
    assert verdict(80.0, math.nan, 1, 80.0, 1.0, True) == "not comparable"  # one seed: no interval


def test_cells_and_their_configs_follow_the_papers_protocol() -> None:
    cells = select_cells("lc26-table14", ["permuted_mnist"], ["dense", "grow"])
    assert len(cells) == 5  # dense + grow at 20/30/40/50
    configs = cell_configs(cells, [0, 1], [], smoke=False, extra={"device": "cpu", "threads": 1})
    spec = SCENARIOS["permuted_mnist"]
    dense = [c for c in configs if c.strategy == "dense"]
    grow = [c for c in configs if c.strategy == "grow"]
    assert {(c.lr, c.compactness) for c in dense} == {(spec.lr, 1.0)} and len(dense) == 2
    assert {c.lr for c in grow} == {0.01, 0.001, 0.0001} and {c.compactness for c in grow} == {
        0.2,
        0.3,
        0.4,
        0.5,
    }
    assert all((c.tasks, c.steps_per_task, c.variant) == (500, 625, None) for c in configs)
    with pytest.raises(ValueError, match="not in lc26-table14; choose from"):
        select_cells("lc26-table14", ["permuted_mnist"], ["grow+bogus"])
    with pytest.raises(ValueError, match="unknown table"):
        select_cells("lc99", None, None)


def paper_record(seed: int, taoa: float, strategy: str = "dense", compactness: float = 1.0, lr: float = 1e-3):
    spec = SCENARIOS["permuted_mnist"]
    config = {
        "scenario": "permuted_mnist", "variant": None, "strategy": strategy, "compactness": compactness,
        "seed": seed, "lr": lr, "model": "mlp", "tasks": spec.tasks, "steps_per_task": spec.steps_per_task,
        "batch_size": spec.batch_size, "cycles": 5, "schedule": "neutral", "optimizer": "adam",
        "winning_ticket": False, "options": {},
    }  # fmt: skip
    return make_record(config, {"taoa": taoa, "early_task_taa": 0.5}, {}, {}, 1.0)


def test_compare_per_cell_with_difference_and_verdict() -> None:
    records = [paper_record(s, t) for s, t in enumerate((0.80, 0.81, 0.79))]  # 80.0 ± 2.5
    records += [paper_record(s, t, "grow", 0.2) for s, t in enumerate((0.60, 0.61, 0.59))]
    cells = select_cells("lc26-table14", ["permuted_mnist"], ["dense", "grow"])
    frame = compare(attach_reference(aggregate(records)), cells, smoke=False).set_index(
        ["method", "compactness_pct"]
    )
    dense = frame.loc[("dense", 100)]
    assert dense["ours"] == pytest.approx(80.0) and dense["diff"] == pytest.approx(80.0 - 80.6)
    assert dense["metric"] == "taoa"
    assert dense["verdict"] == "agrees" and dense["n"] == 3
    grow = frame.loc[("grow", 20)]
    assert grow["diff"] == pytest.approx(60.0 - 71.5) and grow["verdict"] == "differs"
    assert (
        frame.loc[("grow", 30), "verdict"] == "not comparable" and frame.loc[("grow", 30), "why"] == "not run"
    )
    smoke = compare(attach_reference(aggregate(records)), cells, smoke=True)
    assert set(smoke["verdict"]) == {"not comparable"}


def smoke(data_root: Path, out: Path, *args: str):
    result = CliRunner().invoke(
        app, ["reproduce", "lc26-table14", "--smoke", *args, "--data-root", str(data_root), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return result, pd.read_csv(out / "reproduction.csv")


def test_reproduce_smoke_on_every_benchmark_writes_the_report(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "lc26"
    _, frame = smoke(data_root, out, "--method", "dense", "--seeds", "2")
    assert sorted(frame["benchmark"]) == sorted(SCENARIOS[n].name for n in frame["benchmark"])
    assert len(frame) == 6 and set(frame["verdict"]) == {"not comparable"} and (frame["n"] == 2).all()
    assert frame["why"].eq("smoke run (shortened streams)").all()
    md = (out / "reproduction.md").read_text()
    assert "**Smoke run**" in md and "6 not comparable" in md and "| split_cifar100 | dense | 100 |" in md
    again, _ = smoke(data_root, out, "--method", "dense", "--seeds", "2")
    assert "12 runs, 12 already on disk" in " ".join(again.output.split())  # cells are reused
    _, swept = smoke(data_root, out, "--scenario", "permuted_mnist", "--method", "grow", "--seeds", "1")
    assert len(swept) == 4 and set(swept["lr"]) <= {0.01, 0.001, 0.0001}


@pytest.mark.slow
def test_reproduce_smoke_runs_every_cell(data_root: Path, tmp_path: Path) -> None:
    _, frame = smoke(data_root, tmp_path, "--seeds", "1")
    assert len(frame) == 174 and (frame["n"] == 1).all()


def test_reproduce_without_data_fails_before_training(tmp_path: Path) -> None:
    args = ["reproduce", "lc26-table14", "--scenario", "cifar_5plus1", "--data-root", str(tmp_path / "none")]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "CIFAR-100 (train) not found" in result.output
    assert not (tmp_path / "out" / "records").exists()
