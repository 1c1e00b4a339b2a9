"""Equal compute and a strategy's identity (docs/protocol.md §16): training FLOPs from active units, the
plugin file's hash in the run key, and the off-budget flags."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from plasticity_bench.core.models import build_model, count_flops
from plasticity_bench.leaderboard.aggregate import aggregate
from plasticity_bench.measure.cost import TrainingCost
from plasticity_bench.run.build import OVER_BUDGET, STACKED_EDITS
from plasticity_bench.run.config import RunConfig
from plasticity_bench.run.execute import execute
from plasticity_bench.run.records import ResultStore, run_key
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.sweep.plan import expand, sweep_base

TASKS, STEPS = 2, 12


def configs(strategy: str, **extra: object) -> list[RunConfig]:
    base = sweep_base(SCENARIOS["permuted_mnist"], TASKS, STEPS, **{"cycles": 2, **extra})
    return expand("permuted_mnist", [strategy], [0.5], [0], base)


def test_dense_training_flops_are_three_forward_passes_per_row_and_update(data_root: Path) -> None:
    (config,) = configs("dense")
    record = execute(config, data_root)
    model = build_model("mlp", (1, 28, 28), 10)
    forward = count_flops(model, (1, 28, 28))
    assert record["summary"]["train_flops"] == 3 * forward * config.batch_size * TASKS * STEPS


class Host:
    """What TrainingCost reads: the model, the task's inputs and the step's batch."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.experience = type("E", (), {"task": type("T", (), {"x": torch.zeros(4, 1, 28, 28)})()})()
        self.mb_x = torch.zeros(16, 1, 28, 28)
        self.mb_rows = 16


def test_cost_is_recounted_only_after_a_mask_change(monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_model("mlp", (1, 28, 28), 10)
    host, cost = Host(model), TrainingCost()
    counted = []
    monkeypatch.setattr(
        "plasticity_bench.measure.cost.count_flops", lambda m, s: counted.append(1) or count_flops(m, s)
    )
    cost.before_training_exp(host)
    full = cost.per_row
    for _ in range(3):
        cost.after_training_iteration(host)
    model.units[0].set_units(torch.arange(128), False)  # half of layer 0 off
    cost.after_training_iteration(host)
    half = count_flops(model.export_compact(), (1, 28, 28))
    assert len(counted) == 2 and half < full  # counted at the start and after the edit, not per update
    assert cost.flops == 3 * 16 * (3 * full + half)


def test_editing_a_plugin_file_makes_new_runs(data_root: Path, tmp_path: Path) -> None:
    plugin = tmp_path / "mine.py"
    plugin.write_text(
        "from plasticity_bench.strategies.grow import GrowPlugin\n\n\nclass Mine(GrowPlugin):\n    pass\n"
    )
    (before,) = configs(f"{plugin}:Mine")
    assert before.plugin_source is not None and "plugin_source" not in configs("grow")[0].as_dict()
    store = ResultStore(tmp_path / "out")
    store.write(execute(before, data_root))
    plugin.write_text(plugin.read_text() + "# tuned\n")
    (after,) = configs(f"{plugin}:Mine")
    assert run_key(after.as_dict()) != run_key(before.as_dict())
    assert store.status(after.as_dict()) == "stale" and not store.has(after.as_dict())
    assert store.has(after.as_dict(), allow_stale=True)
    assert store.counted_key(after.as_dict(), allow_stale=True) == run_key(before.as_dict())
    record = execute(after, data_root)
    assert record["config"]["plugin_source"] == after.plugin_source
    store.write(record)  # replaces the record made from the older file
    assert [r["key"] for r in store.load().records] == [run_key(after.as_dict())]


OVERGROWN = """
from plasticity_bench.strategies.grow import GrowPlugin


class Overgrown(GrowPlugin):
    def edit(self, strategy, cycle):
        for layer in self.layers(strategy):
            layer.units.set_units(layer.units.inactive(), True)
"""


def test_a_run_above_its_budget_is_flagged_and_marked_off_budget(data_root: Path, tmp_path: Path) -> None:
    plugin = tmp_path / "overgrown.py"
    plugin.write_text(textwrap.dedent(OVERGROWN))
    (config,) = configs(f"{plugin}:Overgrown")
    with pytest.warns(UserWarning, match=r"ended above its compactness budget \(layer 0: 256 > 128"):
        record = execute(config, data_root)
    assert record["flags"] == [OVER_BUDGET]
    assert aggregate([record]).loc[0, "budget"] == OVER_BUDGET
    (fine,) = configs("grow")
    assert "flags" not in execute(fine, data_root)


def test_several_edits_at_one_boundary_are_flagged(data_root: Path) -> None:
    (config,) = configs("prune", cycles=4)  # 2 tasks, 4 cycles: three edits close at task 1
    with pytest.warns(UserWarning, match="several structural edits with no training between them"):
        record = execute(config, data_root)
    assert record["flags"] == [STACKED_EDITS] and record["stacked_edits"] == [1]
