"""Tests for the Grow and Prune plugins (docs/protocol.md §4.1, §4.2).

The plugins are driven either through ``execute`` on a tiny run or directly with a fake strategy object
exposing ``model``, ``optimizer``, ``batches`` and ``experience`` (what the plugins read).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from plasticity_bench.core.models import MaskedNet, build_model
from plasticity_bench.run.config import RunConfig
from plasticity_bench.run.execute import execute
from plasticity_bench.run.loop import TensorBatches
from plasticity_bench.strategies.base import StrategyConfig
from plasticity_bench.strategies.grow import GrowPlugin
from plasticity_bench.strategies.prune import PrunePlugin


def fake_strategy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer=None) -> SimpleNamespace:
    return SimpleNamespace(
        model=model,
        optimizer=optimizer or torch.optim.Adam(model.parameters(), lr=1e-3),
        batches=TensorBatches(x, y, batch_size=x.shape[0], steps=1, seed=0, task=0),
        experience=SimpleNamespace(current_experience=0),
    )


def at_task(strategy: SimpleNamespace, task: int) -> SimpleNamespace:
    strategy.experience = SimpleNamespace(current_experience=task)
    return strategy


def adam_steps(model: nn.Module, opt: torch.optim.Optimizer, shape: tuple[int, ...], steps: int = 2) -> None:
    gen = torch.Generator().manual_seed(123)
    for _ in range(steps):
        opt.zero_grad()
        x = torch.randn(4, *shape, generator=gen)
        y = torch.randint(0, 10, (4,), generator=gen)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def tiny_run(strategy: str, tasks: int, **kw: object) -> dict:
    config = RunConfig(
        scenario="permuted_mnist", variant="mnist5k", strategy=strategy, compactness=0.5, seed=0,
        lr=1e-3, model="mlp", tasks=tasks, steps_per_task=5, batch_size=16, **kw,
    )  # fmt: skip
    return execute(config)


# ------------------------------------------------------------------------------------------------------ Grow


@pytest.mark.parametrize(
    ("name", "shape", "seed_units"),
    [
        ("mlp", (1, 28, 28), [26, 26]),  # round(25.6)
        ("kumar_mlp", (1, 28, 28), [10, 10]),
        ("convnet", (3, 32, 32), [51, 51, 26]),  # round(51.2), round(25.6)
    ],
)
def test_grow_seed_is_ten_percent_per_layer(name: str, shape: tuple[int, ...], seed_units: list[int]) -> None:
    torch.manual_seed(0)
    model = build_model(name, shape, 10)
    plugin = GrowPlugin(StrategyConfig("grow", compactness=0.5, n_tasks=5, seed=3))
    strategy = fake_strategy(model, torch.zeros(2, *shape), torch.zeros(2, dtype=torch.long))
    plugin.before_training(strategy)
    assert model.active_units() == seed_units
    masks = model.masks()
    # seeded: the same run seed gives the same seed mask, another seed another one
    again = build_model(name, shape, 10)
    GrowPlugin(StrategyConfig("grow", compactness=0.5, n_tasks=5, seed=3)).before_training(
        fake_strategy(again, strategy.batches.x, strategy.batches.y)
    )
    assert all(torch.equal(a, b) for a, b in zip(again.masks(), masks))
    other = build_model(name, shape, 10)
    GrowPlugin(StrategyConfig("grow", compactness=0.5, n_tasks=5, seed=4)).before_training(
        fake_strategy(other, strategy.batches.x, strategy.batches.y)
    )
    assert not torch.equal(other.masks()[0], masks[0])
    # a random choice, not the first units
    assert masks[0][: seed_units[0]].sum() < seed_units[0]
    # before_training runs again for every experience: the seed mask must not be redrawn
    model.units[0].mask[:] = 1.0
    plugin.before_training(strategy)
    assert model.active_units()[0] == model.units[0].n_units


def test_grow_seed_capped_at_target() -> None:
    torch.manual_seed(0)
    model = build_model("kumar_mlp", (1, 28, 28), 10)  # 100 units, seed would be 10
    plugin = GrowPlugin(StrategyConfig("grow", compactness=0.05, n_tasks=5))
    plugin.before_training(fake_strategy(model, torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)))
    assert plugin.targets == [5, 5]
    assert model.active_units() == [5, 5]


def test_grow_through_execute_reaches_targets_on_schedule() -> None:
    # mlp 256 units: seed 26, target 128, q = 102. Edits close cycles t = 1..4 (LC26 eq. 23) at the starts
    # of tasks 1..4: ceil(102/4) = 26, ceil(76/3) = 26, ceil(50/2) = 25, 25; task 0 trains on the seed and
    # task 4 (cycle 5) at target
    record = tiny_run("grow", tasks=5)
    assert record["per_task"]["active_units"] == [[26, 26], [52, 52], [78, 78], [103, 103], [128, 128]]
    assert record["per_task"]["final_active_units"] == [128, 128]
    assert [e["cycle"] for e in record["edits"][::2]] == [1, 2, 3, 4]
    # K=3 tasks, T=5 cycles: edits t = 1, 2, 3 at task 1 (never before task 0 trained), t = 4 at task 2
    record = tiny_run("grow", tasks=3)
    assert record["per_task"]["active_units"] == [[26, 26], [103, 103], [128, 128]]
    # the protocol-2 placement, as an option: edit 0 before the first update, t from 0
    record = tiny_run("grow", tasks=5, options={"edit_placement": "step0"})
    assert record["per_task"]["active_units"] == [[47, 47], [68, 68], [88, 88], [108, 108], [128, 128]]
    # compact export holds only the active units: 784*128+128 + 128*128+128 + 128*10+10
    assert record["summary"]["params"] == 784 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10


def firing_net() -> tuple[MaskedNet, torch.Tensor, list[int]]:
    """10 units over 16 one-hot inputs; unit j fires (z = +1) on exactly ``fires[j]`` of the 16 samples."""
    fires = [16, 10, 1, 15, 2, 0, 8, 14, 3, 5]
    model = MaskedNet(nn.Flatten(), 16, (10,), 2, nn.ReLU)
    with torch.no_grad():
        for j, m in enumerate(fires):
            model.hidden[0].weight[j] = torch.tensor([1.0 if b < m else -1.0 for b in range(16)])
        model.hidden[0].bias.zero_()
    return model, torch.eye(16), fires


def test_grow_newborns_chosen_by_activation_frequency() -> None:
    model, x, _ = firing_net()
    y = torch.zeros(16, dtype=torch.long)
    config = StrategyConfig("grow", compactness=0.5, cycles=2, n_tasks=2, seed=0, edit_placement="step0")
    plugin = GrowPlugin(config)
    strategy = fake_strategy(model, x, y)
    plugin.before_training(strategy)
    assert plugin.targets == [5]
    model.units[0].mask.zero_()
    model.units[0].mask[0] = 1.0  # known seed: unit 0 (the most frequent one, already active)
    params_before = [p.detach().clone() for p in model.parameters()]

    plugin.before_training_exp(at_task(strategy, 0))  # cycle 0: q = 4, k = ceil(4 / 2) = 2
    assert model.units[0].active().tolist() == [0, 3, 7]  # frequencies 15/16 and 14/16
    assert plugin.edit_log[-1] == {"task": 0, "cycle": 0, "layer": 0, "units": [3, 7], "active": 3}

    plugin.before_training_exp(at_task(strategy, 1))  # cycle 1: the last two, 10/16 and 8/16
    assert model.units[0].active().tolist() == [0, 1, 3, 6, 7]
    assert plugin.edit_log[-1]["units"] == [1, 6]
    assert model.active_units() == plugin.targets
    # no rewind: switching units on leaves every weight as it was
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), params_before))


def test_grow_no_edit_between_edit_points() -> None:
    model, x, _ = firing_net()
    plugin = GrowPlugin(
        StrategyConfig("grow", compactness=0.5, cycles=2, n_tasks=4, edit_placement="step0")
    )  # edits at tasks 0, 2
    strategy = fake_strategy(model, x, torch.zeros(16, dtype=torch.long))
    plugin.before_training(strategy)
    counts = []
    for task in range(4):
        plugin.before_training_exp(at_task(strategy, task))
        counts.append(model.active_units()[0])
    assert counts == [3, 3, 5, 5]  # seed 1 -> +2 at task 0, +2 at task 2


# ----------------------------------------------------------------------------------------------------- Prune


def magnitude_net() -> MaskedNet:
    """8 units with mean |fan-in| = [0.5, 0.1, 2.0, 0.05, 3.0, 0.3, 1.0, 0.2]; signs alternate per input."""
    mags = [0.5, -0.1, 2.0, 0.05, -3.0, 0.3, 1.0, -0.2]
    model = MaskedNet(nn.Flatten(), 4, (8,), 3, nn.ReLU)
    with torch.no_grad():
        for j, m in enumerate(mags):
            model.hidden[0].weight[j] = m * torch.tensor([1.0, -1.0, 1.0, -1.0])
    return model


def test_prune_removes_lowest_magnitude_units() -> None:
    model = magnitude_net()
    plugin = PrunePlugin(
        StrategyConfig("prune", compactness=0.5, cycles=2, n_tasks=2, edit_placement="step0"), rewind="none"
    )
    strategy = fake_strategy(model, torch.zeros(4, 4), torch.zeros(4, dtype=torch.long))
    plugin.before_training(strategy)
    assert plugin.targets == [4] and model.active_units() == [8]  # Prune starts dense
    weights = model.hidden[0].weight.detach().clone()
    plugin.before_training_exp(at_task(strategy, 0))  # k = 2: |w| 0.05 and 0.1
    assert model.units[0].inactive().tolist() == [1, 3]
    assert plugin.edit_log[-1]["units"] == [3, 1]
    plugin.before_training_exp(at_task(strategy, 1))  # k = 2: |w| 0.2 and 0.3
    assert model.units[0].active().tolist() == [0, 2, 4, 6]
    assert torch.equal(model.hidden[0].weight, weights)  # rewind none: weights kept


def test_prune_keeps_at_least_one_unit() -> None:
    model = magnitude_net()
    plugin = PrunePlugin(
        StrategyConfig("prune", compactness=0.01, cycles=1, n_tasks=1, edit_placement="step0")
    )
    strategy = fake_strategy(model, torch.zeros(4, 4), torch.zeros(4, dtype=torch.long))
    plugin.before_training(strategy)
    plugin.before_training_exp(strategy)
    assert model.units[0].active().tolist() == [4]  # the largest |w| survives


def snapshot(model: nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    state = {n: {k: v.clone() for k, v in opt.state[p].items()} for n, p in model.named_parameters()}
    return params, state


@pytest.mark.parametrize("rewind", ["imp", "none"])
def test_prune_rewind_touches_only_masked_layers_and_readers(rewind: str) -> None:
    torch.manual_seed(0)
    shape = (3, 32, 32)
    model = build_model("convnet", shape, 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    strategy = fake_strategy(model, torch.zeros(2, *shape), torch.zeros(2, dtype=torch.long), opt)
    plugin = PrunePlugin(
        StrategyConfig("prune", compactness=0.5, cycles=2, n_tasks=4, edit_placement="step0"), rewind=rewind
    )
    plugin.before_training(strategy)
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    adam_steps(model, opt, shape)
    plugin.before_training(strategy)  # called again at every experience: the step-0 snapshot stays
    adam_steps(model, opt, shape)
    before, state_before = snapshot(model, opt)

    plugin.before_training_exp(at_task(strategy, 0))
    assert model.active_units() == [384, 384, 192]  # 512 -> 256 in 2 cycles: k = 128 now; 256 -> 128: 64

    rewound = {n for n, _ in model.named_parameters() if n.startswith(("hidden.", "head."))}
    trunk = {n for n, _ in model.named_parameters() if n.startswith("trunk.")}
    assert len(rewound) == 8 and len(trunk) == 4
    for name, param in model.named_parameters():
        state = opt.state[param]
        if rewind == "imp" and name in rewound:
            assert torch.equal(param, initial[name]), f"{name} not rewound to its initial value"
            assert not torch.equal(before[name], initial[name])
            assert all(torch.count_nonzero(v) == 0 for v in state.values()), f"{name} state not zeroed"
        else:
            assert torch.equal(param, before[name]), f"{name} changed"
            assert all(torch.equal(v, state_before[name][k]) for k, v in state.items()), f"{name} state"


def test_prune_through_execute_reaches_targets_on_schedule() -> None:
    # 256 -> 128 units, q = 128: no prune of the untrained net at task 0, then 32 at each of tasks 1..4
    record = tiny_run("prune", tasks=5)
    assert record["per_task"]["active_units"] == [[256, 256], [224, 224], [192, 192], [160, 160], [128, 128]]
    assert record["per_task"]["final_active_units"] == [128, 128]


def test_unknown_plugin_options_raise() -> None:
    config = StrategyConfig("grow", compactness=0.5, n_tasks=5)
    with pytest.raises(ValueError, match="selector"):
        GrowPlugin(config, selector="magic")
    with pytest.raises(ValueError, match="rewind"):
        PrunePlugin(config, rewind="sometimes")
    with pytest.raises(ValueError, match="out of range"):
        GrowPlugin(StrategyConfig("grow", compactness=1.5, n_tasks=5))
