"""Every LC26 method name (and DYNO, and a composed name) runs end to end through ``runner.execute``."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from plasticity_bench.cli import with_preferred_lr
from plasticity_bench.core.activations import RandSmoothLeaky
from plasticity_bench.core.models import build_model
from plasticity_bench.leaderboard.paper import DEFAULT_REFERENCE
from plasticity_bench.run.config import RunConfig
from plasticity_bench.run.execute import execute
from plasticity_bench.strategies.registry import entry_for

REFERENCE_METHODS = sorted(set(pd.read_csv(DEFAULT_REFERENCE)["method"]))
METHODS = [*REFERENCE_METHODS, "grow+moment_transplant+two_speed", "dyno"]
DIAGNOSED = {"grow", "prune"}

pytestmark = pytest.mark.usefixtures("single_thread")  # conftest: one torch thread for the small nets


def run(strategy: str, **options: object) -> dict:
    config = RunConfig(
        scenario="permuted_mnist", variant="mnist5k", strategy=strategy, compactness=0.5, seed=0,
        lr=1e-3, model="mlp", tasks=2, steps_per_task=50, batch_size=16, options=options,
    )  # fmt: skip
    return execute(config)


def test_reference_method_names_are_strategy_names() -> None:
    assert len(REFERENCE_METHODS) == 8
    for name in REFERENCE_METHODS:
        entry_for(name)


@pytest.mark.parametrize("name", METHODS)
def test_method_runs_by_name(name: str) -> None:
    record = run(name, trigger_every=10) if name == "dyno" else run(name)
    assert record["config"]["strategy"] == name
    assert 0.0 <= record["summary"]["taoa"] <= 1.0 and record["summary"]["params"] > 0
    if name.split("+")[0] in DIAGNOSED:
        rows = record["diagnostics"]
        assert {r["snapshot"] for r in rows} >= {"post", "exit", "end"}
        assert all(math.isnan(r["act_log_parity"]) or r["n_a"] > 0 for r in rows)
    else:
        assert "diagnostics" not in record
    if name == "dyno":
        widths = record["dyno"]["active_width"]
        assert widths[0]["widths"] == [256, 256]  # nominal mlp widths, out of a reserve of 512
        assert record["per_task"]["final_active_units"] == widths[-1]["widths"]
        assert len(widths) > 1  # triggers every 10 updates change the width on this stream


def test_rand_smooth_leaky_builds_the_model_with_the_scenario_settings(monkeypatch) -> None:
    built = []

    def spy(*args: object, **kwargs: object) -> object:
        model = build_model(*args, **kwargs)
        built.append(model)
        return model

    monkeypatch.setattr("plasticity_bench.core.networks.build_model", spy)
    run("prune+rand_smooth_leaky", diag_every=0)
    (activation,) = {type(u.activation) for u in built[0].units}
    assert activation is RandSmoothLeaky and built[0].units[0].activation.c_s == 0.8


def test_cli_uses_the_activation_lr_only_for_rand_smooth_leaky() -> None:
    base = {"variant": None, "compactness": 0.5, "seed": 0, "lr": 1e-3, "model": "convnet", "tasks": 10}
    base |= {"steps_per_task": 5, "batch_size": 32, "scenario": "split_cifar100"}
    configs = [RunConfig(strategy=name, **base) for name in ("grow", "grow+rand_smooth_leaky")]
    assert [c.lr for c in with_preferred_lr(configs)] == [1e-3, 1e-4]
