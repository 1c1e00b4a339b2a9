"""Cohort diagnostics (docs/protocol.md §9): parity arithmetic, snapshot schedule, hooks, the diagnose
command."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from structural_helpers import fake_strategy, forward_hook_count, set_mask, tiny_net
from typer.testing import CliRunner

from plasticity_bench.cli import app
from plasticity_bench.measure.cohorts import (
    CSV_NAME,
    Cohort,
    CohortDiagnostics,
    UnitStats,
    diagnostics_frame,
    edit_cohorts,
    log_parity,
    summarize,
    unit_statistics,
)
from plasticity_bench.run.records import ResultStore, make_record
from plasticity_bench.strategies.base import StrategyConfig
from plasticity_bench.strategies.grow import GrowPlugin
from plasticity_bench.strategies.prune import PrunePlugin

X = torch.rand(24, 8)
Y = torch.randint(0, 3, (24,))


def test_log_parity_hand_values() -> None:
    assert log_parity(torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.25])) == pytest.approx(math.log(2))
    assert log_parity(torch.tensor([0.0]), torch.tensor([0.3])) == -math.inf
    assert math.isnan(log_parity(torch.tensor([]), torch.tensor([0.3])))
    assert log_parity(torch.tensor([1e-3]), torch.tensor([0.0])) == pytest.approx(math.log(1e-3 / 1e-8))


def test_parity_of_two_cohorts_on_hand_made_activations_and_gradients() -> None:
    stats = UnitStats(
        act=[torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7])],
        grad=[torch.tensor([0.02, 0.04, 0.3, 0.1, 9.0])],
    )
    cohort = Cohort(2, 4, 0, 100, torch.tensor([0, 1]), torch.tensor([2, 3]), ("newborn", "incumbent"))
    row = cohort.row(stats, "exit", 350)
    assert row["act_log_parity"] == pytest.approx(math.log(0.5 / (0.4 + 1e-8)))
    assert row["grad_log_parity"] == pytest.approx(math.log(0.03 / (0.2 + 1e-8)))
    assert (row["act_a"], row["grad_b"]) == (pytest.approx(0.5), pytest.approx(0.2))
    assert row["steps_after_edit"] == 250 and (row["n_a"], row["n_b"]) == (2, 2)
    assert (row["cycle"], row["task"], row["layer"], row["snapshot"]) == (2, 4, 0, "exit")


def test_unit_statistics_are_as_if_active_and_remove_hooks() -> None:
    model = tiny_net(hidden=(4,))
    with torch.no_grad():
        model.hidden[0].bias.copy_(torch.tensor([50.0, -50.0, 50.0, -50.0]))
    set_mask(model, 0, [0, 1])
    stats = unit_statistics(model, X, Y)
    assert stats.act[0].tolist() == [1.0, 0.0, 1.0, 0.0]  # unit 2 is masked but fires as if active
    assert stats.grad[0][2] > 0 and stats.grad[0][1] == 0  # ReLU' = 0 below zero
    assert forward_hook_count(model) == 0


def test_edit_cohorts_for_grow_and_prune() -> None:
    model = tiny_net()
    set_mask(model, 1, [0, 2, 3])
    entries = [{"task": 1, "layer": 1, "units": [3]}]
    grow = edit_cohorts(model, True, 0, 10, entries)[0]
    assert (grow.a.tolist(), grow.b.tolist(), grow.names) == ([3], [0, 2], ("newborn", "incumbent"))
    prune = edit_cohorts(model, False, 0, 10, [{"task": 1, "layer": 1, "units": [1, 4]}])[0]
    assert (prune.a.tolist(), prune.b.tolist(), prune.names) == ([0, 2, 3], [1, 4], ("kept", "pruned"))


def drive(plugin_cls: type, every: int, horizon: int, steps: int, tasks: int) -> tuple[list, int]:
    """Run a structural plugin's edits and a diagnostics plugin through ``tasks`` x ``steps`` fake updates.

    Returns the rows and the largest number of forward hooks seen after an ordinary step.
    """
    model = tiny_net(hidden=(20, 20))
    config = StrategyConfig("x", compactness=0.5, cycles=tasks, n_tasks=tasks)
    structural = plugin_cls(config)
    diagnostics = CohortDiagnostics(structural, every=every, horizon=horizon)
    strategy = fake_strategy(model, X, Y)
    structural.before_training(strategy)
    hooks = 0
    for task in range(tasks):
        strategy.experience.current_experience = task
        structural.before_training_exp(strategy)
        for _ in range(steps):
            diagnostics.after_training_iteration(strategy)
            hooks = max(hooks, forward_hook_count(model))
        diagnostics.after_training_exp(strategy)
    return diagnostics.rows, hooks


def test_snapshot_schedule_post_exit_end_and_curves() -> None:
    rows, hooks = drive(GrowPlugin, every=4, horizon=8, steps=10, tasks=3)
    assert hooks == 0
    seen = {(r["cycle"], r["snapshot"], r["steps_after_edit"]) for r in rows}
    expected = set()
    for cycle in (1, 2):  # T = 3 cycles: edits close cycles 1 and 2 (at tasks 1, 2); cycle 3 trains at target
        expected |= {(cycle, "post", 0), (cycle, "curve", 4), (cycle, "curve", 8), (cycle, "exit", 10)}
    expected |= {(1, "end", 20)}
    assert seen == expected
    assert {(r["cohort_a"], r["cohort_b"]) for r in rows} == {("newborn", "incumbent")}
    assert all(r["n_a"] > 0 and r["n_b"] > 0 for r in rows)
    assert len(rows) == 2 * len(expected)  # both masked layers are edited at every cycle


def test_prune_diagnostics_use_kept_and_pruned() -> None:
    rows, _ = drive(PrunePlugin, every=0, horizon=0, steps=3, tasks=3)
    assert {r["snapshot"] for r in rows} == {"post", "exit", "end"}
    assert {(r["cohort_a"], r["cohort_b"]) for r in rows} == {("kept", "pruned")}
    assert all(r["grad_b"] > 0 for r in rows)  # pruned units: as-if-active gradient, not zero


def fake_record(seed: int, strategy: str = "grow", parity: float = 0.5) -> dict:
    config = {
        "scenario": "permuted_mnist",
        "variant": "mnist5k",
        "strategy": strategy,
        "compactness": 0.5,
        "seed": seed,
        "lr": 1e-3,
        "model": "mlp",
        "tasks": 2,
        "steps_per_task": 10,
        "batch_size": 16,
    }
    base = {
        "cycle": 0,
        "task": 0,
        "layer": 0,
        "step": 0,
        "act_log_parity": parity,
        "grad_log_parity": -parity,
    }
    rows = [
        {**base, "snapshot": "post", "steps_after_edit": 0},
        {**base, "snapshot": "exit", "steps_after_edit": 50, "act_log_parity": parity + 1},
        {**base, "snapshot": "curve", "steps_after_edit": 10},
    ]
    record = make_record(config, {"taoa": 0.5}, {}, {}, 1.0)
    record["diagnostics"] = rows
    return record


def test_summarize_means_over_seeds_and_orders_snapshots() -> None:
    frame = diagnostics_frame([fake_record(0, parity=0.2), fake_record(1, parity=0.4), {"config": {}}])
    table = summarize(frame)
    assert table["snapshot"].tolist() == ["post", "exit"]
    assert table["act_log_parity"].tolist() == pytest.approx([0.3, 1.3])
    assert table["seeds"].tolist() == [2, 2]
    assert len(summarize(frame, per_seed=True, curves=True)) == 6


def test_diagnose_command_prints_and_writes_csv(tmp_path) -> None:
    store = ResultStore(tmp_path)
    for seed in (0, 1):
        store.write(fake_record(seed))
    result = CliRunner().invoke(app, ["diagnose", "--out", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "exit" in result.output and "act logR" in result.output and "1.500" in result.output
    csv = pd.read_csv(tmp_path / CSV_NAME)
    assert len(csv) == 6 and set(csv["snapshot"]) == {"post", "exit", "curve"}
    empty = CliRunner().invoke(app, ["diagnose", "--out", str(tmp_path / "none")])
    assert empty.exit_code == 1


def test_the_plasticity_table_numbers_tasks_from_one_like_the_figures() -> None:
    import pandas as pd
    from rich.console import Console

    from plasticity_bench.measure.plasticity import render_plasticity

    summary = pd.DataFrame([{"scenario": "permuted_mnist", "strategy": "grow", "task": 4, "layer": 0,
                             "dormant_fraction": 0.25, "effective_rank": 12.0}])  # fmt: skip
    console = Console(width=200, record=True)
    console.print(render_plasticity(summary))
    row = next(line for line in console.export_text().splitlines() if "permuted_mnist" in line)
    assert row.split("│")[3].strip() == "5" and "25.0%" in row
