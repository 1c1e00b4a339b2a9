"""Tests for plasticity_bench.leaderboard.aggregate: CI, seed aggregation, best-lr rule, reference figures,
writers."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from plasticity_bench.leaderboard.aggregate import aggregate, ci95
from plasticity_bench.leaderboard.paper import DEFAULT_REFERENCE, attach_reference
from plasticity_bench.leaderboard.tables import render, write_leaderboard
from plasticity_bench.run.records import make_record

T_975_2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)


def rec(seed: int, lr: float, taoa: float, early: float = 0.2, **cfg: object) -> dict:
    config = {
        "scenario": "permuted_mnist",
        "variant": "mnist5k",
        "strategy": "grow+moment_transplant",
        "compactness": 0.5,
        "seed": seed,
        "lr": lr,
        "model": "mlp",
        "tasks": 20,
        "steps_per_task": 625,
        "batch_size": 16,
        "cycles": 5,
        "winning_ticket": False,
        "options": {},
        **cfg,
    }
    return make_record(config, {"taoa": taoa, "early_task_taa": early}, {}, {}, 1.0)


def test_ci95_hand_computed() -> None:
    mean, half, n = ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and n == 3
    assert half == pytest.approx(T_975_2 * 1.0 / math.sqrt(3))
    assert half == pytest.approx(2.484, abs=1e-3)


def test_ci95_drops_nan_and_single_value() -> None:
    assert ci95([1.0, float("nan"), 3.0])[::2] == (2.0, 2)
    mean, half, n = ci95([0.5, float("nan")])
    assert (mean, n) == (0.5, 1) and math.isnan(half)
    mean, half, n = ci95([])
    assert n == 0 and math.isnan(mean) and math.isnan(half)


def test_aggregate_picks_best_lr_by_taoa_and_counts_seeds() -> None:
    records = [rec(s, 0.001, t) for s, t in zip(range(3), (0.70, 0.72, 0.74))]
    records += [rec(s, 0.01, t, early=0.9) for s, t in zip(range(3), (0.60, 0.61, 0.62))]
    df = aggregate(records)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["lr"] == 0.001 and row["n"] == 3 and row["lr_metric"] == "taoa"
    assert row["lrs_swept"] == "0.001,0.01"
    assert row["taoa_mean"] == pytest.approx(0.72)
    assert row["taoa_ci95"] == pytest.approx(T_975_2 * 0.02 / math.sqrt(3))
    # lr is chosen by taoa, not by early_task_taa (which favours lr=0.01)
    assert row["early_task_taa_mean"] == pytest.approx(0.2)
    assert {"taoa_mean", "taoa_ci95", "early_task_taa_mean", "early_task_taa_ci95", "n", "variant"} <= set(df)


def test_aggregate_other_direction_and_separate_groups() -> None:
    records = [rec(s, 0.001, 0.5) for s in range(2)] + [rec(s, 0.0001, 0.8) for s in range(3)]
    records += [rec(s, 0.01, 0.9, compactness=0.2) for s in range(2)]
    df = aggregate(records)
    assert list(zip(df["compactness"], df["lr"], df["n"])) == [(0.2, 0.01, 2), (0.5, 0.0001, 3)]


def test_aggregate_falls_back_to_acc_and_metric_subset() -> None:
    def acc_rec(seed: int, lr: float, acc: float) -> dict:
        r = rec(seed, lr, 0.0, scenario="split_mnist")
        r["summary"] = {"acc": acc, "params": 1000.0}
        return r

    df = aggregate([acc_rec(0, 0.1, 0.3), acc_rec(1, 0.1, 0.4), acc_rec(0, 0.01, 0.9)], metrics=["params"])
    row = df.iloc[0]
    assert row["lr"] == 0.01 and row["lr_metric"] == "acc" and row["n"] == 1
    assert "acc_mean" not in df and row["params_mean"] == 1000.0
    with pytest.raises(ValueError, match="appear in no record"):
        aggregate([acc_rec(0, 0.1, 0.3)], metrics=["taoa"])


def test_runs_differing_in_any_config_field_are_different_rows() -> None:
    records = [rec(0, 0.001, 0.5), rec(1, 0.001, 0.6)]
    records += [rec(0, 0.001, 0.7, cycles=3), rec(0, 0.001, 0.8, options={"rewind": "none"})]
    df = aggregate(records)
    assert sorted(df["n"]) == [1, 1, 2]
    assert set(df["settings"]) == {
        "cycles=3, option.rewind=—", "cycles=5, option.rewind=—", "cycles=5, option.rewind=none",
    }  # fmt: skip
    with pytest.raises(ValueError, match="appears twice"):
        aggregate([rec(0, 0.001, 0.5), rec(0, 0.001, 0.5)])


def test_records_of_another_protocol_version_are_another_row() -> None:
    old = rec(1, 0.001, 0.9)
    old["code"] = {**old["code"], "protocol": old["code"]["protocol"] - 1}
    df = aggregate([rec(0, 0.001, 0.5), old])
    assert len(df) == 2 and sorted(df["protocol"]) == [old["code"]["protocol"], old["code"]["protocol"] + 1]
    assert all("protocol=" in s for s in df["settings"])


def test_attach_reference_matches_real_csv_and_leaves_nan() -> None:
    records = [rec(s, 0.001, 0.7) for s in range(2)]
    records += [rec(0, 0.001, 0.7, strategy="no_such_method")]
    records += [rec(0, 0.001, 0.8, strategy="dense", compactness=1.0)]
    df = attach_reference(aggregate(records), DEFAULT_REFERENCE)
    by_strategy = df.set_index("strategy")
    mt = by_strategy.loc["grow+moment_transplant"]
    assert (mt["paper_avg_acc"], mt["paper_avg_acc_pm"]) == (76.1, 0.1)
    assert (mt["paper_early_task_taa"], mt["paper_early_task_taa_pm"]) == (18.4, 0.0)
    assert mt["variant"] == "mnist5k"
    assert by_strategy.loc["dense", "paper_avg_acc"] == 80.6
    assert math.isnan(by_strategy.loc["no_such_method", "paper_avg_acc"])
    assert len(df) == 3


def test_render_and_write_leaderboard(tmp_path: Path) -> None:
    records = [rec(s, 0.001, t) for s, t in zip(range(3), (0.70, 0.72, 0.74))]
    records += [rec(0, 0.001, 0.5, strategy="grow")]
    df = attach_reference(aggregate(records))
    console = Console(record=True, width=400)
    console.print(render(df))
    text = console.export_text()
    assert "72.0 ± 5.0 (n=3)" in text
    assert "LC26 Avg. Acc." in text and "LC26 Early TAA (definition unknown)" in text
    assert "not comparable" in text and "76.1" not in text  # mnist5k, 20 tasks: not the paper's protocol
    assert "50.0 ± — (n=1)" in text
    csv_path, md_path = write_leaderboard(df, tmp_path / "lb")
    assert sorted(os.listdir(tmp_path / "lb")) == ["leaderboard.csv", "leaderboard.md"]
    back = pd.read_csv(csv_path)
    assert back["taoa_mean"].tolist() == pytest.approx(df["taoa_mean"].tolist())
    md = md_path.read_text()
    assert "| permuted_mnist | mnist5k | grow+moment_transplant |" in md
    assert "72.0 ± 5.0 (n=3)" in md and "not comparable" in md and "variant=mnist5k" in md


PAPER = {"variant": None, "tasks": 500}


def test_paper_figures_only_beside_runs_of_the_papers_protocol() -> None:
    records = [rec(s, 0.001, 0.75, **PAPER) for s in range(2)]
    records += [rec(s, 0.001, 0.75, **{**PAPER, "tasks": 20}, strategy="grow") for s in range(2)]
    records += [
        rec(s, 0.001, 0.75, **PAPER, options={"subset": "per_task"}, strategy="prune") for s in range(2)
    ]
    df = attach_reference(aggregate(records)).set_index("strategy")
    assert df.loc["grow+moment_transplant", "paper_comparable"]
    assert df.loc["grow+moment_transplant", "paper_protocol"] == "yes"
    assert (
        not df.loc["grow", "paper_comparable"] and "tasks=20 (paper: 500)" in df.loc["grow", "paper_protocol"]
    )
    assert not df.loc["prune", "paper_comparable"]
    assert "subset=per_task (paper: fixed)" in df.loc["prune", "paper_protocol"]
    console = Console(record=True, width=400)
    console.print(render(df.reset_index()))
    text = console.export_text()
    assert "76.1 ± 0.1" in text and text.count("not comparable") == 4  # 2 rows x 2 paper columns


def test_checkpoint_scenario_picks_lr_by_its_own_metric_acc() -> None:
    """split_fashion's primary metric is ACC (docs/protocol.md §7): TAOA must not decide its lr."""

    def split_rec(seed: int, lr: float, taoa: float, acc: float) -> dict:
        record = rec(seed, lr, taoa, scenario="split_fashion", variant=None, strategy="grow")
        record["summary"]["acc"] = acc
        return record

    records = [split_rec(s, 0.1, taoa=0.9, acc=0.3) for s in range(3)]  # best TAOA, worst ACC
    records += [split_rec(s, 0.01, taoa=0.6, acc=0.7) for s in range(3)]
    (row,) = aggregate(records).to_dict("records")
    assert row["lr"] == 0.01 and row["lr_metric"] == "acc"
    assert row["acc_mean"] == pytest.approx(0.7)


def sweep_records(rng: np.random.Generator, seeds: list[int], lrs=(0.01, 0.001, 0.0001)) -> list[dict]:
    """Three lrs of identical true TAOA 0.70, seed-to-seed sd 0.02 (the review's probe)."""
    return [rec(s, lr, float(rng.normal(0.70, 0.02))) for lr in lrs for s in seeds]


def test_lr_chosen_on_held_out_seeds_removes_the_optimistic_bias() -> None:
    rng = np.random.default_rng(0)
    optimistic, held_out = [], []
    for _ in range(400):
        records = sweep_records(rng, [0, 1, 2, 3, 4, 5])
        optimistic.append(aggregate([r for r in records if r["config"]["seed"] < 3])["taoa_mean"][0])
        (row,) = aggregate(records, select_seeds=[3, 4, 5]).to_dict("records")
        held_out.append(row["taoa_mean"])
        assert row["n"] == 3 and row["seeds"] == "0,1,2"
    # the max of three noisy means is biased up by ~0.85 sd/sqrt(3) ~ 0.010; held-out seeds are not
    assert np.mean(optimistic) > 0.705
    assert abs(np.mean(held_out) - 0.70) < 0.002


def test_lr_selection_column_says_how_the_lr_was_chosen() -> None:
    rng = np.random.default_rng(1)
    records = sweep_records(rng, [0, 1, 2, 3])
    (same,) = aggregate(records).to_dict("records")
    assert same["lr_selection"] == "on reported seeds (optimistic)" and same["n"] == 4
    (held,) = aggregate(records, select_seeds=[3]).to_dict("records")
    assert held["lr_selection"] == "on held-out seeds 3" and held["seeds"] == "0,1,2"
    (single,) = aggregate([rec(0, 0.001, 0.7), rec(1, 0.001, 0.6)]).to_dict("records")
    assert single["lr_selection"] == "single lr" and single["lr_note"] == ""


def test_unequal_seed_counts_between_lrs_are_named() -> None:
    rng = np.random.default_rng(2)
    records = [*sweep_records(rng, [0, 1, 2]), rec(3, 0.01, 0.9)]
    (row,) = aggregate(records).to_dict("records")
    assert row["lr_note"] == "unequal reported seeds: lr 0.0001 n=3, lr 0.001 n=3, lr 0.01 n=4"
    records = [*sweep_records(rng, [0, 1, 2]), rec(5, 0.01, 0.6), rec(5, 0.001, 0.7)]
    (row,) = aggregate(records, select_seeds=[5]).to_dict("records")
    assert row["lr_selection"] == "on reported seeds (optimistic)"  # lr 0.0001 has no selection seed
    assert row["lr_note"].startswith("unequal reported seeds")


def test_row_records_match_a_missing_variant_beside_rows_that_have_one() -> None:
    """A column of variants with None beside "mnist5k" becomes NaN in the table; rows must still find
    their records (comparisons found no seed of Split-Fashion next to Permuted-MNIST@mnist5k)."""
    from plasticity_bench.leaderboard.aggregate import row_records

    records = [rec(s, 0.001, 0.7) for s in range(2)] + [rec(s, 0.001, 0.6, variant=None) for s in range(2)]
    rows = aggregate(records).to_dict("records")
    assert sorted(len(row_records(row, records)) for row in rows) == [2, 2]


def test_leaderboard_files_lead_with_the_primary_metric() -> None:
    """Columns were alphabetical, the primary metric last."""
    records = [rec(s, 0.001, 0.7) for s in range(2)]
    columns = list(aggregate(records).columns)
    assert columns[:5] == ["scenario", "variant", "strategy", "compactness", "settings"]
    assert columns.index("taoa_mean") < columns.index("early_task_taa_mean") < columns.index("lr")


def test_a_narrow_terminal_gets_whole_words() -> None:
    """At 80 columns the leaderboard split words (``permu│ted_m│nist``, ``singl│e lr``)."""
    from plasticity_bench.leaderboard.tables import render_narrow

    records = [rec(s, 0.001, 0.7 + s / 100) for s in range(3)]
    records += [rec(s, 0.001, 0.6, strategy="dense", compactness=1.0) for s in range(3)]
    console = Console(width=80, record=True)
    console.print(render_narrow(attach_reference(aggregate(records))))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "permuted_mnist@mnist5k" in text and "grow+moment_transplant c=0.5" in text
    assert "71.0 ± 2.5" in text  # TAOA of seeds 0.70, 0.71, 0.72 in percent with its t interval
