"""Avalanche both ways (docs/protocol.md §14): our plugins and metrics inside Avalanche's own ``Naive``
template, and Avalanche's CL strategies as sweep rows inside ours."""

from __future__ import annotations

import pytest
import torch
from avalanche.training import Naive

from plasticity_bench.core.models import build_model
from plasticity_bench.measure.cohorts import CohortDiagnostics
from plasticity_bench.measure.plasticity import PlasticityDiagnostics
from plasticity_bench.run.build import OnlineMetrics
from plasticity_bench.run.config import RunConfig
from plasticity_bench.run.execute import execute
from plasticity_bench.scenarios.registry import parse_scenario
from plasticity_bench.scenarios.stream import TaskBenchmark
from plasticity_bench.strategies.base import StrategyConfig
from plasticity_bench.strategies.grow import GrowPlugin
from plasticity_bench.strategies.redo import ReDoPlugin


def stream(tasks: int) -> TaskBenchmark:
    spec, variant = parse_scenario("permuted_mnist@mnist5k")
    return spec.build(0, tasks, variant, None)


def test_grow_redo_metrics_and_diagnostics_run_under_naive() -> None:
    benchmark = stream(2)
    torch.manual_seed(0)
    model = build_model("kumar_mlp", (1, 28, 28), 10)
    grow = GrowPlugin(StrategyConfig("grow", compactness=0.5, cycles=2, n_tasks=2))
    plugins = [
        grow,
        CohortDiagnostics(grow, every=10),
        ReDoPlugin(seed=0, every=50),
        PlasticityDiagnostics(64),
    ]
    metrics = OnlineMetrics.new("none", curve_bin=8, any_template=True)
    strategy = Naive(
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
        train_mb_size=64,
        train_epochs=1,
        plugins=plugins,
        evaluator=metrics.evaluator([]),
    )
    for experience in benchmark.train_stream:
        strategy.train(experience)
    # Grow seeded 10 units trains through task 0; the edit closing cycle 1 (t = 1 of T = 2, eq. 23: k = q)
    # switches on the other 40 at the start of task 1, so cycle 2 trains at the target
    assert model.active_units() == [50, 50] and [e["task"] for e in grow.edit_log] == [1, 1]
    steps = -(-5000 // 64)  # one epoch of the 5,000 digits
    results = metrics.results()
    assert [len(a) for a in metrics.log.per_task] == [steps, steps]
    assert 0.2 < results.summary["taoa"] <= 1.0 and results.per_task["active_units"] == [[10, 10], [50, 50]]
    assert {row["snapshot"] for row in plugins[1].report()["diagnostics"]} >= {"post", "curve"}
    rows = plugins[3].report()["plasticity"]
    assert [(r["task"], r["layer"], r["active"]) for r in rows] == [
        (0, 0, 10),
        (0, 1, 10),
        (1, 0, 50),
        (1, 1, 50),
    ]


def test_metrics_refuse_a_foreign_template_without_a_recorder() -> None:
    benchmark = stream(1)
    model = build_model("kumar_mlp", (1, 28, 28), 10)
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        train_mb_size=500,
        evaluator=OnlineMetrics.new("none").evaluator([]),
    )
    with pytest.raises(ValueError, match="any_template=True"):
        strategy.train(benchmark.train_stream[0])


@pytest.mark.parametrize("name", ["ewc", "si", "lwf", "replay", "agem", "grow+ewc"])
def test_avalanche_strategies_run_as_sweep_rows(name: str) -> None:
    options = {"replay_mem_size": 50} if name == "replay" else {}
    config = RunConfig(
        "permuted_mnist", "mnist5k", name, 0.5 if "grow" in name else 1.0, 0, 1e-3, "kumar_mlp", 2, 12, 16,
        cycles=2, options=options,
    )  # fmt: skip
    record = execute(config)
    assert len(record["per_task"]["online_acc"]) == 2 and 0.0 <= record["summary"]["taoa"] <= 1.0
    assert (
        len(record["curves"]["online_acc"][1]) == 1
    )  # exactly 12 updates per task, replay's loader included
