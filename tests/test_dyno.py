"""DYNO (docs/protocol.md §6): effective dimension, prune/grow counts, pruning order, NORTH growth, the
plugin."""

from __future__ import annotations

import math

import pytest
import torch
from structural_helpers import fake_strategy, forward_hook_count, tiny_net

from plasticity_bench.strategies.base import StrategyConfig
from plasticity_bench.strategies.dyno import (
    DynoPlugin,
    RingBuffer,
    dyno_counts,
    effective_dimension,
    north_select,
    prune_order,
    residual_norms,
)
from plasticity_bench.strategies.registry import entry_for
from plasticity_bench.sweep.plan import expand


def rank_matrix(n: int, m: int, rank: int, seed: int = 0) -> torch.Tensor:
    """``(n, m)`` matrix of exactly ``rank`` with singular values far above ``eps``."""
    gen = torch.Generator().manual_seed(seed)
    return 10 * torch.randn(n, rank, generator=gen) @ torch.randn(rank, m, generator=gen)


@pytest.mark.parametrize("rank", [0, 1, 3, 8])
def test_effective_dimension_of_known_rank(rank: int) -> None:
    h = rank_matrix(40, 8, rank) if rank else torch.zeros(40, 8)
    assert effective_dimension(h) == rank / 8


def test_effective_dimension_threshold_and_conv_layout() -> None:
    h = torch.zeros(100, 4)
    h[:, 0] = 1.0  # singular value of H / sqrt(n) = 1
    h[:, 1] = 5e-3 * torch.linspace(-1, 1, 100) * math.sqrt(3)  # about 5e-3 < eps
    assert effective_dimension(h) == 1 / 4
    conv = rank_matrix(30, 6, 2).T.reshape(6, 5, 2, 3).permute(1, 0, 2, 3)  # (n=5, M=6, H=2, W=3)
    assert effective_dimension(conv) == 2 / 6


def test_dyno_counts_follow_the_protocol_formula() -> None:
    assert dyno_counts(0.5, 0.5, 8) == (0, 0)
    assert dyno_counts(0.25, 0.5, 8) == (round(8 * (0.97 * 0.5 - 0.25)), 0) == (2, 0)
    assert dyno_counts(0.75, 0.25, 8) == (0, round(8 * (0.75 - 1.03 * 0.25))) == (0, 4)
    assert dyno_counts(0.5 * 0.975, 0.5, 8) == (0, 0)  # inside the +-delta band


def test_trigger_counts_on_constructed_activation_history() -> None:
    """Ranks 4, 4, 2, 2, 6 of 8 units: baseline, nothing, prune 2 (baseline moves), nothing, grow 4."""
    baseline, decisions = None, []
    for rank in (4, 4, 2, 2, 6):
        phi = effective_dimension(rank_matrix(64, 8, rank, seed=rank))
        if baseline is None:
            baseline = phi
            continue
        counts = dyno_counts(phi, baseline, 8)
        decisions.append(counts)
        if any(counts):
            baseline = phi
    assert decisions == [(0, 0), (2, 0), (0, 0), (0, 4)]


def naive_prune_order(h: torch.Tensor, k: int) -> list[int]:
    """Reference: dormant units, then recompute every remaining unit's cosine-similarity norm each round."""
    dormant = [j for j in range(h.shape[1]) if h[:, j].abs().max() == 0]
    order, remaining = dormant[:k], [j for j in range(h.shape[1]) if j not in dormant]
    unit = h / h.norm(dim=0).clamp_min(1e-30)
    while len(order) < k:
        norms = [sum(float(unit[:, i] @ unit[:, j]) ** 2 for j in remaining if j != i) for i in remaining]
        pick = remaining[max(range(len(remaining)), key=lambda i: (norms[i], -i))]
        remaining.remove(pick)
        order.append(pick)
    return order


def test_prune_order_dormant_first_then_most_redundant() -> None:
    columns = [
        [1.0, 0.0, 0.0, 0.0],  # 0: near-duplicate of 2
        [0.0, 0.0, 0.0, 0.0],  # 1: dormant
        [1.0, 0.1, 0.0, 0.0],  # 2
        [0.0, 0.0, 1.0, 0.0],  # 3: orthogonal to 0 and 2, close to 5
        [0.0, 0.0, 0.0, 0.0],  # 4: dormant
        [0.0, 0.0, 1.0, 0.6],  # 5
        [0.3, 0.0, 0.0, 1.0],  # 6
    ]
    h = torch.tensor(columns, dtype=torch.float64).T
    order = prune_order(h, 7).tolist()
    assert order[:2] == [1, 4]
    # greedy: 0 (near-duplicate of 2, also similar to 6), then 5 (similar to 3 and 6) once 2 has no twin left
    assert order[2:4] == [0, 5]
    assert order == naive_prune_order(h, 7)
    assert prune_order(h, 1).tolist() == [1]


def test_prune_order_matches_reference_on_random_activations() -> None:
    h = torch.relu(torch.randn(50, 12, generator=torch.Generator().manual_seed(3)))
    h[:, 5] = 0.0
    assert prune_order(h, 9).tolist() == naive_prune_order(h.double(), 9)


def test_residual_norms_and_north_select() -> None:
    existing = rank_matrix(30, 5, 2)
    inside, outside = existing[:, :1] * 3, torch.randn(30, 1)
    outside = outside - existing @ torch.linalg.lstsq(existing, outside).solution
    scores = residual_norms(torch.cat([inside, outside], 1), existing)
    assert scores[0] < 1e-3 * scores[1]
    torch.testing.assert_close(scores[1], outside.norm(), rtol=1e-4, atol=1e-6)
    inputs = torch.rand(30, 7)
    w1 = north_select(inputs, existing, torch.relu, 3, 0.5, torch.Generator().manual_seed(0))
    w2 = north_select(inputs, existing, torch.relu, 3, 0.5, torch.Generator().manual_seed(0))
    assert w1.shape == (3, 7) and torch.equal(w1, w2) and w1.abs().max() <= 0.5


def test_ring_buffer_keeps_the_latest_rows() -> None:
    buffer = RingBuffer(5)
    buffer.push(torch.arange(3.0)[:, None])
    assert not buffer.full
    buffer.push(torch.arange(3.0, 7.0)[:, None])
    assert buffer.full and sorted(buffer.rows().flatten().tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    buffer.push(torch.arange(10.0, 17.0)[:, None])
    assert sorted(buffer.rows().flatten().tolist()) == [12.0, 13.0, 14.0, 15.0, 16.0]


# --- the plugin on a constructed network: layer 0 passes its inputs through (identity weights, ReLU) ---


def identity_dyno(reserve: float = 2.0) -> tuple[DynoPlugin, object]:
    """8 units (``8 / reserve`` active) whose post-activations equal the 8 input features."""
    model = tiny_net(hidden=(8, 6), in_features=8)
    with torch.no_grad():
        model.hidden[0].weight.copy_(torch.eye(8))
        model.hidden[0].bias.zero_()
    plugin = DynoPlugin(StrategyConfig("dyno"), reserve_factor=reserve, buffer_factor=2.0, rescale_init=False)
    strategy = fake_strategy(model, torch.rand(16, 8), torch.randint(0, 3, (16,)))
    plugin.setup(strategy.model)
    return plugin, strategy


def history(rank_on: list[int], rows: int = 16, seed: int = 0) -> torch.Tensor:
    """Non-negative inputs, full rank on the features ``rank_on``, zero elsewhere."""
    x = torch.zeros(rows, 8)
    x[:, rank_on] = torch.rand(rows, len(rank_on), generator=torch.Generator().manual_seed(seed)) + 0.1
    return x


def test_dyno_setup_switches_the_reserve_off_and_rescales() -> None:
    plugin, strategy = identity_dyno()
    assert strategy.model.active_units() == [4, 3]
    assert plugin.buffers[0].capacity == 16 and plugin.active_width == [
        {"step": 0, "task": 0, "widths": [4, 3]}
    ]
    model = tiny_net(hidden=(8, 6))
    head = model.head.weight.detach().clone()
    DynoPlugin(StrategyConfig("dyno")).setup(model)
    torch.testing.assert_close(model.head.weight[:, :3], head[:, :3] * math.sqrt(2))
    torch.testing.assert_close(model.head.weight[:, 3:], head[:, 3:])


def test_dyno_prunes_dormant_units_and_sets_phi_star_after_the_change() -> None:
    plugin, strategy = identity_dyno()
    model, layer = strategy.model, strategy.model.masked_layers()[0]
    plugin.buffers[0].push(history([0, 1, 2, 3]))
    plugin.trigger(strategy)  # first measurement: phi* = 1, no change
    assert plugin.phi_star[0] == 1.0 and model.active_units()[0] == 4
    plugin.buffers[0].push(history([0, 1]))  # units 2, 3 dormant: phi = 0.5 -> prune round(4 * 0.47) = 2
    plugin.trigger(strategy)
    assert layer.units.active().tolist() == [0, 1] and plugin.events[-1]["pruned"] == [2, 3]
    # phi* is measured after the prune, on the new active set: rank 2 of 2 units
    assert plugin.phi_star[0] == 1.0 and plugin.events[-1]["phi_star_after"] == 1.0
    plugin.buffers[0].push(history([0, 1], seed=1))
    plugin.trigger(strategy)  # phi = 1 = phi*: nothing to undo
    assert layer.units.active().tolist() == [0, 1] and len(plugin.events) == 1


def test_dyno_stays_stable_after_pruning_dormant_units() -> None:
    """The review's probe: 100 active units, 40 made dormant. The first trigger prunes 37 of the dormant
    units; with phi* measured before the change (0.6), the next trigger regrew 21 units. Now no trigger on
    the same buffer changes anything."""
    width = 200
    model = tiny_net(hidden=(width, 6), in_features=width)
    with torch.no_grad():
        model.hidden[0].weight.copy_(torch.eye(width))
        model.hidden[0].bias.zero_()
    plugin = DynoPlugin(StrategyConfig("dyno"), reserve_factor=2.0, buffer_factor=2.0, rescale_init=False)
    strategy = fake_strategy(model, torch.rand(16, width), torch.randint(0, 3, (16,)))
    plugin.setup(strategy.model)
    gen = torch.Generator().manual_seed(0)
    full = torch.zeros(2 * width, width)
    full[:, :100] = torch.rand(2 * width, 100, generator=gen) + 0.1
    plugin.buffers[0].push(full)
    plugin.trigger(strategy)  # phi* = 1 on 100 active units
    dormant = full.clone()
    dormant[:, 60:] = 0.0  # units 60..99 go dormant
    plugin.buffers[0].push(dormant)
    plugin.trigger(strategy)
    assert plugin.events[-1]["pruned"] == list(range(60, 97)) and model.active_units()[0] == 63
    assert plugin.phi_star[0] == pytest.approx(60 / 63)
    for _ in range(10):
        plugin.trigger(strategy)
    assert model.active_units()[0] == 63 and len(plugin.events) == 1


def test_dyno_grows_without_changing_the_function() -> None:
    plugin, strategy = identity_dyno()
    model, layer = strategy.model, strategy.model.masked_layers()[0]
    plugin.buffers[0].push(history([0, 1]))
    plugin.trigger(strategy)  # first measurement: phi* = 2 / 4
    plugin.buffers[0].push(history([0, 1, 2, 3]))  # phi = 1 > 1.03 * 0.5: grow round(4 * 0.485) = 2
    x = torch.rand(10, 8)
    model.eval()
    before = model(x).detach()
    plugin.trigger(strategy)
    assert plugin.events[-1]["grown"] == [4, 5] and layer.units.active().tolist() == [0, 1, 2, 3, 4, 5]
    assert (model(x) - before).abs().max() < 1e-6
    assert torch.equal(model.hidden[1].weight[:, 4:6], torch.zeros(6, 2)) and model.hidden[0].bias[4] == 0
    assert [w["widths"][0] for w in plugin.active_width] == [4, 6]


def test_dyno_growth_is_capped_by_the_reserve_and_pruning_keeps_one_unit() -> None:
    plugin, strategy = identity_dyno(reserve=8 / 7)  # 7 active, 1 in reserve
    plugin.buffers[0].push(history([0]))
    plugin.trigger(strategy)  # phi* = 1/7
    plugin.buffers[0].push(history(list(range(8))))  # phi = 1: wants round(7 * (1 - 1.03 / 7)) = 6 units
    plugin.trigger(strategy)
    assert strategy.model.active_units()[0] == 8
    plugin, strategy = identity_dyno()
    plugin.buffers[0].push(history([0, 1, 2, 3]))
    plugin.trigger(strategy)  # phi* = 1
    plugin.buffers[0].push(history([5]))  # every active unit dormant: wants round(4 * 0.97) = 4 units
    plugin.trigger(strategy)
    assert strategy.model.active_units()[0] == 1


def test_dyno_buffer_hooks_capture_training_batches_only_and_are_removed() -> None:
    plugin, strategy = identity_dyno()
    plugin.before_training_exp(strategy)
    assert forward_hook_count(strategy.model) == 2
    strategy.model.train()
    strategy.model(torch.rand(4, 8))
    strategy.model.eval()
    strategy.model(torch.rand(3, 8))
    assert plugin.buffers[1].filled == 4
    plugin.after_training_exp(strategy)
    assert forward_hook_count(strategy.model) == 0


def test_dyno_registry_entry() -> None:
    entry = entry_for("dyno")
    assert not entry.structural and entry.width_factor(StrategyConfig("dyno")) == 2.0
    assert entry.width_factor(StrategyConfig("dyno", options={"reserve_factor": 3})) == 3.0
    base = {"lr": 1e-3, "model": "mlp", "tasks": 2, "steps_per_task": 5, "batch_size": 16}
    configs = expand("permuted_mnist@mnist5k", ["dyno"], [0.3, 0.5], [0], base)
    assert [c.compactness for c in configs] == [1.0]
    with pytest.raises(ValueError):
        DynoPlugin(StrategyConfig("dyno"), buffer_factor=1.0)
