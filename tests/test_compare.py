"""Paired comparisons and aggregate scores (plasticity_bench.leaderboard.stats / .compare, docs/protocol.md
§16): every statistic on a hand-computed case, pairing on identical streams, the command and its files."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from plasticity_bench.leaderboard import stats
from plasticity_bench.leaderboard.compare import COLUMNS, compare
from plasticity_bench.run.records import ResultStore, make_record

T_975_2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)


def test_paired_difference_and_its_t_interval_by_hand() -> None:
    result = stats.paired([0.80, 0.82, 0.85], [0.78, 0.81, 0.80])  # d = 0.02, 0.01, 0.05
    sd = math.sqrt(((0.02 - 0.08 / 3) ** 2 + (0.01 - 0.08 / 3) ** 2 + (0.05 - 0.08 / 3) ** 2) / 2)
    assert result.n == 3 and result.mean == pytest.approx(0.08 / 3) and result.sd == pytest.approx(sd)
    half = T_975_2 * sd / math.sqrt(3)
    assert (result.t_low, result.t_high) == pytest.approx((0.08 / 3 - half, 0.08 / 3 + half))
    assert result.prob_improvement == 1.0
    # a resample of all 0.01 (or all 0.05) has probability 1/27 > 2.5%: the percentile interval's ends
    assert (result.boot_low, result.boot_high) == pytest.approx((0.01, 0.05))


def test_wilcoxon_exact_p_by_hand() -> None:
    """Five positive differences: W- = 0 has probability 1/32 of 2^5 sign patterns; two-sided 2/32."""
    assert stats.wilcoxon_p(np.array([1.0, 2.0, 3.0, 4.0, 5.0])) == pytest.approx(2 / 32)
    assert stats.wilcoxon_p(np.zeros(4)) == 1.0 and math.isnan(stats.wilcoxon_p(np.array([1.0])))


def test_holm_adjustment_by_hand() -> None:
    """Sorted 0.01, 0.03, 0.04 times 3, 2, 1 -> 0.03, 0.06, 0.04, kept monotone -> 0.03, 0.06, 0.06."""
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = stats.holm([0.2, math.nan, 0.6])  # NaN does not count: m = 2
    assert adjusted[0] == pytest.approx(0.4) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.6)


def test_probability_of_improvement_counts_ties_half() -> None:
    x, y = np.array([2.0, 1.0, 0.0, 3.0]), np.array([1.0, 1.0, 1.0, 1.0])
    assert stats.prob_improvement(x, y) == pytest.approx((2 + 0.5) / 4)


def test_seeds_for_80_percent_power_match_the_textbook() -> None:
    """Paired t, two-sided alpha 0.05, power 0.8: effect size 1 needs 10 pairs, 0.5 needs 34 (G*Power)."""
    assert stats.seeds_needed(1.0, 1.0) == 10 and stats.seeds_needed(-0.5, 1.0) == 34
    assert stats.seeds_needed(0.0, 1.0) is None and stats.seeds_needed(1.0, 0.0) == 2


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    assert stats.iqm(np.arange(1, 9)) == pytest.approx(4.5)  # mean of 3, 4, 5, 6


def test_stratified_bootstrap_resamples_within_each_stratum() -> None:
    """Strata [0, 0, 0, 0] and [0, 1]: a resample keeps four zeros and two draws of the second stratum, so
    the pooled mean is 0, 1/6 or 2/6 with probabilities 1/4, 1/2, 1/4: percentile interval [0, 1/3].
    Pooled resampling would reach higher means (up to 1)."""
    low, high = stats.stratified_interval([np.zeros(4), np.array([0.0, 1.0])], np.mean, seed=3)
    assert (low, high) == pytest.approx((0.0, 1 / 3))
    assert stats.stratified_interval([np.zeros(4), np.array([0.0, 1.0])], np.mean, seed=3) == (low, high)


def test_normalised_score() -> None:
    assert stats.normalised(0.55, 0.1, 0.9) == pytest.approx(0.5625)
    assert math.isnan(stats.normalised(0.5, 0.5, 0.5))


def record(
    scenario: str, strategy: str, seed: int, value: float, per_task: list[float] | None = None
) -> dict:
    metric = "acc" if scenario == "split_mnist" else "taoa"
    compactness = 1.0 if strategy == "dense" else 0.5
    config = {
        "scenario": scenario, "variant": None, "strategy": strategy, "compactness": compactness,
        "seed": seed, "lr": 0.001, "model": "mlp", "tasks": 3, "steps_per_task": 10, "batch_size": 16,
        "cycles": 3, "winning_ticket": False, "options": {},
    }  # fmt: skip
    per_task = {"online_acc": [value] * 3, "active_units": [[8, 8]] * 3, "final_active_units": [8, 8]}
    if metric == "acc":
        per_task["checkpoint_acc"] = [value] * 3
    return make_record(config, {metric: value}, per_task, {}, 1.0)


def grid() -> list[dict]:
    """Dense and grow on two scenarios, three seeds; grow's gain is +2, +1, +5 points on Permuted-MNIST."""
    out = []
    for seed, (dense, grow) in enumerate([(0.78, 0.80), (0.81, 0.82), (0.80, 0.85)]):
        out += [record("permuted_mnist", "dense", seed, dense), record("permuted_mnist", "grow", seed, grow)]
    for seed, (dense, grow) in enumerate([(0.60, 0.55), (0.62, 0.58), (0.61, 0.57)]):
        out += [record("split_mnist", "dense", seed, dense), record("split_mnist", "grow", seed, grow)]
    return out


def test_compare_pairs_seeds_on_identical_streams() -> None:
    result = compare(grid(), "dense")
    table = result.table.set_index(["scenario", "strategy"])
    pm = table.loc[("permuted_mnist", "grow")]
    assert pm["metric"] == "taoa" and pm["unit"] == "pp" and pm["n"] == 3
    assert pm["mean_diff"] == pytest.approx(8 / 3)  # (2 + 1 + 5) / 3 points
    assert pm["prob_improvement"] == 1.0 and pm["p_wilcoxon"] == pytest.approx(0.25)  # exact, 3 pairs
    sm = table.loc[("split_mnist", "grow")]
    assert sm["metric"] == "acc" and sm["mean_diff"] == pytest.approx(-13 / 3)
    assert list(result.table.columns) == list(COLUMNS)


def test_aggregate_row_normalises_to_dense_and_chance() -> None:
    """Permuted-MNIST: chance 0.1, Dense mean 0.79667; Split-MNIST: chance 0.1, Dense mean 0.61."""
    result = compare(grid(), "dense")
    everything = result.table.set_index(["scenario", "strategy"]).loc[("ALL", "grow")]
    pm_dense, sm_dense = np.mean([0.78, 0.81, 0.80]), 0.61
    grow = [(v - 0.1) / (pm_dense - 0.1) for v in (0.80, 0.82, 0.85)]
    grow += [(v - 0.1) / (sm_dense - 0.1) for v in (0.55, 0.58, 0.57)]
    dense = [(v - 0.1) / (pm_dense - 0.1) for v in (0.78, 0.81, 0.80)]
    dense += [(v - 0.1) / (sm_dense - 0.1) for v in (0.60, 0.62, 0.61)]
    assert everything["n"] == 6 and everything["scenarios"] == 2
    assert everything["mean_diff"] == pytest.approx(100 * (np.mean(grow) - np.mean(dense)))
    assert everything["score_mean"] == pytest.approx(np.mean(grow))
    assert everything["score_iqm"] == pytest.approx(stats.iqm(np.array(grow)))
    assert everything["prob_improvement"] == pytest.approx(0.5)  # wins every seed on one of two scenarios
    holm = stats.holm(result.table["p_wilcoxon"].tolist())
    assert result.table["p_holm"].tolist() == pytest.approx(holm)


def test_unpaired_rows_are_noted_not_compared() -> None:
    records = [*grid(), record("permuted_mnist", "prune", 7, 0.7)]  # seed 7: Dense never ran it
    result = compare(records, "dense")
    assert "prune" not in set(result.table["strategy"])
    assert any("prune c=0.5: no seed in common" in note for note in result.notes)
    with pytest.raises(ValueError, match="no records of strategy 'grwo'; strategies here: dense, grow"):
        compare(grid(), "grwo")


def test_compare_command_prints_whole_words_and_writes_compare_csv(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    for r in grid():
        store.write(r)
    args = ["-m", "plasticity_bench.cli", "compare", "--out", str(tmp_path), "--baseline", "dense"]
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"}
    )  # a terminal of 80 columns: rich wraps to it
    assert result.returncode == 0, result.stdout + result.stderr
    shown = [line for line in result.stdout.splitlines() if not line.startswith("written:")]
    assert all(len(line) <= 80 for line in shown), result.stdout
    assert "permuted_mnist (taoa, pp)" in result.stdout and "+2.67" in result.stdout
    table = pd.read_csv(tmp_path / "compare.csv")
    assert set(table["scenario"]) == {"permuted_mnist", "split_mnist", "ALL"}
    assert {"mean_diff", "ci_low", "ci_high", "p_wilcoxon", "p_holm", "prob_improvement"} <= set(
        table.columns
    )
    scores = pd.read_csv(tmp_path / "compare_scores.csv").set_index("strategy")
    assert scores.loc["dense", "mean"] == pytest.approx(1.0)  # Dense is the normalisation's 1


def test_plot_and_report_draw_the_comparison_with_dense(tmp_path: Path) -> None:
    from plasticity_bench.views.comparison import comparison_figures
    from plasticity_bench.views.report import render_report

    made = {
        (scenario, name): fig for scenario, name, fig in comparison_figures(grid(), compare(grid(), "dense"))
    }
    assert set(made) == {
        ("permuted_mnist", "paired_by_task"), ("split_mnist", "paired_by_task"),
        ("all", "performance_profile"), ("all", "aggregate_scores"),
    }  # fmt: skip
    (line,) = made[("permuted_mnist", "paired_by_task")].axes[0].get_lines()[:1]
    assert line.get_ydata().tolist() == pytest.approx([8 / 3] * 3)  # grow - dense per task, in points
    page = render_report(grid(), baseline="dense")
    assert '<table id="comparison">' in page and "Compared with dense" in page
