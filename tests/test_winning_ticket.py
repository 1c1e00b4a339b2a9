"""Winning-ticket evaluation (docs/protocol.md §1): frozen final masks, rewound (or fresh) weights, same
stream, WT fields."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from plasticity_bench.leaderboard.aggregate import aggregate
from plasticity_bench.run.build import StreamMetrics, StreamRun, new_model, run_generator, ticket_model
from plasticity_bench.run.config import RunConfig
from plasticity_bench.run.execute import execute
from plasticity_bench.run.lone import LoneTrainer
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.strategies.registry import build_plugins


def config(scenario: str = "split_fashion", strategy: str = "grow", **fields: object) -> RunConfig:
    spec = SCENARIOS[scenario]
    base = {
        "variant": None, "strategy": strategy, "compactness": 0.5 if strategy != "dense" else 1.0, "seed": 0,
        "lr": spec.lr, "model": spec.model, "tasks": 3, "steps_per_task": 3, "batch_size": spec.batch_size,
        "optimizer": spec.optimizer, "cycles": 3, "winning_ticket": True,
    }  # fmt: skip
    return RunConfig(scenario=scenario, **{**base, **fields})


def trained_grow(data_root: Path, **options: object) -> tuple:
    cfg = config(options=options)
    spec = SCENARIOS[cfg.scenario]
    benchmark = spec.build(cfg.seed, cfg.tasks, None, data_root)
    model = new_model(cfg, benchmark.info, 1.0, "init", "cpu")
    initial = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("mask")}
    generator = run_generator(cfg, "init", "cpu")
    run = StreamRun.start(cfg, (spec, benchmark), model, generator, build_plugins(cfg.strategy_config()))
    LoneTrainer([run], "cpu").train()
    assert any(m.sum() < len(m) for m in model.masks())  # grow left units off
    return cfg, benchmark, model, initial


def test_ticket_rewinds_to_the_runs_own_initial_weights(data_root: Path) -> None:
    """Default ``wt_init=original``: standard Lottery-Ticket evaluation rewinds to theta_0."""
    cfg, benchmark, model, initial = trained_grow(data_root)
    ticket = ticket_model(model, cfg, benchmark.info, 1.0, "cpu")
    assert all(torch.equal(a, b) for a, b in zip(ticket.masks(), model.masks()))
    rewound = ticket.state_dict()
    for name, value in initial.items():
        assert torch.equal(rewound[name], value), name
        if name.endswith("weight"):
            assert not torch.equal(rewound[name], model.state_dict()[name]), name


def test_fresh_ticket_is_a_new_seeded_draw(data_root: Path) -> None:
    cfg, benchmark, model, initial = trained_grow(data_root, wt_init="fresh")
    ticket = ticket_model(model, cfg, benchmark.info, 1.0, "cpu")
    assert all(torch.equal(a, b) for a, b in zip(ticket.masks(), model.masks()))
    fresh = ticket.state_dict()
    for name, value in initial.items():
        if name.endswith("weight"):  # a new draw: differs from the cycle run's init and its trained weights
            assert not torch.equal(fresh[name], value), name
            assert not torch.equal(fresh[name], model.state_dict()[name]), name
    again = ticket_model(model, cfg, benchmark.info, 1.0, "cpu")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), fresh.values()))  # seeded


def test_record_holds_wt_fields_and_masks_stay_frozen(data_root: Path) -> None:
    record = execute(config(), data_root=data_root)
    summary, per_task = record["summary"], record["per_task"]
    for key in ("acc", "taa", "taoa", "wt_acc", "wt_taa", "wt_taoa", "delta_wt_c"):
        assert 0.0 <= abs(summary[key]) <= 1.0, key
    assert summary["delta_wt_c"] == pytest.approx(summary["wt_acc"] - summary["acc"])
    assert record["data"]["delta_wt_c_metric"] == "acc"
    assert len(per_task["wt_checkpoint_acc"]) == 3 and len(per_task["wt_online_acc"]) == 3
    final = per_task["final_active_units"]
    assert all(counts == final for counts in per_task["wt_active_units"])  # no edit during the WT run
    assert per_task["active_units"][0] != final  # while the cycle run grew


def test_ticket_run_gets_no_strategy_plugin(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    original = LoneTrainer.train

    def spy(self: LoneTrainer, *args: object, **kwargs: object) -> list[StreamMetrics]:
        seen.append([type(p).__name__ for p in self.runs[0].plugins])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LoneTrainer, "train", spy)
    execute(config(), data_root=data_root)
    assert len(seen) == 2 and "GrowPlugin" in seen[0]
    assert seen[1] == [
        "PlasticityDiagnostics",
        "TrainingCost",
        "TinyERPlugin",
    ]  # the run's diagnostics and cost, the scenario's replay


def test_online_only_scenario_takes_delta_on_taoa(data_root: Path) -> None:
    record = execute(config("permuted_mnist", batch_size=16), data_root=data_root)
    summary = record["summary"]
    assert "acc" not in summary and "wt_acc" not in summary
    assert summary["delta_wt_c"] == pytest.approx(summary["wt_taoa"] - summary["taoa"])
    assert record["data"]["delta_wt_c_metric"] == "taoa"


def test_no_wt_fields_without_the_flag(data_root: Path) -> None:
    summary = execute(config(strategy="dense", winning_ticket=False), data_root=data_root)["summary"]
    assert not any(k.startswith("wt_") or k == "delta_wt_c" for k in summary)
    assert {"acc", "taa", "taoa"} <= set(summary)


def test_runs_with_and_without_the_ticket_are_separate_leaderboard_rows(data_root: Path) -> None:
    records = [
        execute(config(strategy="dense", winning_ticket=wt), data_root=data_root) for wt in (False, True)
    ]
    board = aggregate(records)
    assert len(board) == 2 and board["winning_ticket"].tolist() == [False, True]
    assert board["wt_acc_n"].tolist() == [0, 1]
