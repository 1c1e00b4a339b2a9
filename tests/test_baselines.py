"""Tests for the plasticity remedies, the unit scores, the model options and the plasticity diagnostics
(docs/protocol.md §14): each baseline's defining update on a hand-checked case."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from plasticity_bench.batch.trainer import plan_batches
from plasticity_bench.core.activations import CReLU
from plasticity_bench.core.masks import MaskedLayerNorm, fan_in_bounds, reinitialize_units
from plasticity_bench.core.models import MaskedNet, build_model
from plasticity_bench.measure.importance import Contribution, Dormancy, FanInMagnitude
from plasticity_bench.measure.plasticity import dormant_fraction, effective_rank, layer_diagnostics
from plasticity_bench.measure.probes import probe
from plasticity_bench.run.config import RunConfig
from plasticity_bench.strategies.base import StrategyConfig
from plasticity_bench.strategies.cbp import ContinualBackpropPlugin, LayerUtility, replacement_count
from plasticity_bench.strategies.grow import GrowPlugin
from plasticity_bench.strategies.l2_init import L2InitPlugin
from plasticity_bench.strategies.redo import ReDoPlugin
from plasticity_bench.strategies.registry import batchable, build_plugins
from plasticity_bench.strategies.shrink_perturb import ShrinkPerturbPlugin


def tiny_net(hidden: tuple[int, ...] = (4, 3), **kw: object) -> MaskedNet:
    torch.manual_seed(0)
    return MaskedNet(nn.Identity(), 2, hidden, 2, kw.pop("activation", nn.ReLU), **kw)


def strategy_of(model: nn.Module, task: int = 0, **kw: object) -> SimpleNamespace:
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    return SimpleNamespace(
        model=model, optimizer=optimizer, experience=SimpleNamespace(current_experience=task), **kw
    )


def filled_adam(model: nn.Module) -> torch.optim.Adam:
    """Adam with non-zero moments on every parameter (one step on a random batch)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    nn.functional.cross_entropy(model(torch.randn(8, 2)), torch.randint(0, 2, (8,))).backward()
    optimizer.step()
    return optimizer


# ---------------------------------------------------------------------------------------------- L2 Init


def test_l2_init_adds_lambda_times_distance_to_init_and_spares_masked_units() -> None:
    model = tiny_net()
    model.units[0].mask[1] = 0.0
    plugin, strategy = L2InitPlugin(weight=0.5), strategy_of(model)
    plugin.before_training(strategy)
    initial = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    for p in model.parameters():
        p.grad = torch.full_like(p, 2.0)
    plugin.after_backward(strategy)
    # d/dtheta [lambda/2 ||theta - theta0||^2] = lambda * (theta - theta0) = 0.5 * 1 on top of the loss's 2.0
    for p, p0 in zip(model.parameters(), initial):
        assert torch.allclose(p - p0, torch.ones_like(p))
    assert torch.all(model.hidden[0].weight.grad[1] == 0) and model.hidden[0].bias.grad[1] == 0
    assert torch.all(model.hidden[1].weight.grad[:, 1] == 0)
    assert torch.allclose(model.hidden[0].weight.grad[0], torch.full((2,), 2.5))
    assert torch.allclose(model.head.weight.grad, torch.full_like(model.head.weight, 2.5))


# --------------------------------------------------------------------------------------- Shrink & Perturb


def test_shrink_perturb_scales_and_adds_noise_at_task_boundaries_only() -> None:
    model = tiny_net()
    model.units[1].mask[2] = 0.0
    plugin = ShrinkPerturbPlugin("per_task", shrink=0.4, perturb=0.1, noise="gaussian", seed=3)
    before = [p.detach().clone() for p in model.parameters()]
    plugin.before_training_exp(strategy_of(model, task=0))
    plugin.after_update(strategy_of(model, task=0))  # the per-task form does nothing per update
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    noise = plugin.draw_noise(model, 1)
    plugin.before_training_exp(strategy_of(model, task=1))
    expected = [0.4 * b + 0.1 * n for b, n in zip(before, noise)]
    layer = model.masked_layers()[1]
    for p, e, b in zip(model.parameters(), expected, before):
        if p is model.hidden[1].weight:
            assert torch.equal(p[2], b[2]) and torch.allclose(p[:2], e[:2])
        elif p is model.head.weight:
            assert torch.equal(p[:, 2], b[:, 2]) and torch.allclose(p[:, :2], e[:, :2])
        elif p is model.hidden[1].bias:
            assert p[2] == b[2] and torch.allclose(p[:2], e[:2])
        else:
            assert torch.allclose(p, e)
    assert layer.units.n_active() == 2


def test_shrink_perturb_init_noise_is_a_fresh_draw_of_the_init() -> None:
    model = build_model("kumar_mlp", (1, 28, 28), 10)
    plugin = ShrinkPerturbPlugin("per_task", 0.5, 1.0, "init", seed=0)
    first, again = plugin.draw_noise(model, 1), plugin.draw_noise(model, 1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    bound = 1 / math.sqrt(784)  # torch's default Linear init for the first layer
    assert first[0].abs().max() <= bound and first[0].std() > bound / 3
    assert not torch.equal(first[0], model.hidden[0].weight)


def test_shrink_perturb_per_step_is_kumar23s_decrement_after_every_update() -> None:
    """Kumar23's ShrinkAndPerturbAgent: after every step theta <- (1 - s) theta + p theta_fresh."""
    model = build_model("kumar_mlp", (1, 28, 28), 10)
    config = StrategyConfig("shrink_perturb", options={"step_shrink": 1e-2, "step_perturb": 1e-3})
    (plugin,) = build_plugins(config)
    assert (plugin.form, plugin.shrink, plugin.perturb) == ("per_step", 0.99, 1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    plugin.before_training_exp(strategy_of(model, task=1))  # no per-task shrink in this form
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    fresh = plugin.draw_noise(model, 1)
    plugin.after_update(strategy_of(model, task=1))
    for p, b, f in zip(model.parameters(), before, fresh):
        assert torch.allclose(p, 0.99 * b + 1e-3 * f, atol=1e-7)
    second = plugin.draw_noise(model, 2)
    assert not torch.equal(second[0], fresh[0])  # a new draw of the init at every update


# ---------------------------------------------------------------------------------- unit resets (core)


def test_reinitialize_units_redraws_fan_in_zeroes_fan_out_and_optimizer_state() -> None:
    model = tiny_net(layer_norm=True)
    optimizer = filled_adam(model)
    layer = model.masked_layers()[0]
    with torch.no_grad():
        layer.units.norm.weight.fill_(3.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    reinitialize_units(layer, torch.tensor([0, 2]), optimizer, "kaiming", torch.Generator().manual_seed(0))
    bound, _ = fan_in_bounds("kaiming", 2)
    w = model.hidden[0].weight
    assert not torch.equal(w[[0, 2]], before["hidden.0.weight"][[0, 2]]) and w[[0, 2]].abs().max() <= bound
    assert torch.equal(w[[1, 3]], before["hidden.0.weight"][[1, 3]])
    assert torch.all(model.hidden[0].bias[[0, 2]] == 0)  # kaiming: zero bias
    assert torch.equal(layer.units.norm.weight.detach(), torch.tensor([1.0, 3.0, 1.0, 3.0]))
    assert torch.all(model.hidden[1].weight[:, [0, 2]] == 0)
    assert torch.equal(model.hidden[1].weight[:, [1, 3]], before["hidden.1.weight"][:, [1, 3]])
    for piece in layer.slices(torch.tensor([0, 2])):
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.all(piece.read(optimizer.state[piece.param][key]) == 0)
    assert optimizer.state[w]["exp_avg"][1].abs().sum() > 0


# -------------------------------------------------------------------------------------------------- ReDo


def dormant_net() -> tuple[MaskedNet, torch.Tensor]:
    """Layer 0: unit j's output is (j + 1) * relu(x0), but unit 3 never fires: E|h| = [1, 2, 3, 0]."""
    model = tiny_net(hidden=(4, 3))
    with torch.no_grad():
        model.hidden[0].weight.copy_(torch.tensor([[1.0, 0], [2.0, 0], [3.0, 0], [-1.0, 0]]))
        model.hidden[0].bias.zero_()
    return model, torch.tensor([[1.0, 5.0], [1.0, -5.0]])


def test_dormancy_score_is_normalised_mean_activation() -> None:
    model, x = dormant_net()
    scores = Dormancy()(model.masked_layers()[0], probe(model, x))
    assert torch.allclose(scores, torch.tensor([1.0, 2.0, 3.0, 0.0]) / 1.5)
    model.units[0].mask[2] = 0.0  # normalised over active units only: mean of [1, 2, 0]
    assert torch.allclose(
        Dormancy()(model.masked_layers()[0], probe(model, x)), torch.tensor([1, 2, 3, 0]) / 1.0
    )


def test_redo_resets_exactly_the_dormant_units_every_f_updates() -> None:
    model, x = dormant_net()
    plugin = ReDoPlugin(seed=0, tau=0.5, every=2)
    strategy = strategy_of(model, mb_x=x)
    strategy.optimizer = filled_adam(model)
    dormant = plugin.dormant(strategy, x)
    assert dormant[0].tolist() == [3]  # 0 / 1.5 <= 0.5; 1 / 1.5 > 0.5
    kept_rows = [u for u in range(3) if u not in dormant[1].tolist()]  # layer 1's own resets redraw rows
    before = model.hidden[0].weight.detach().clone()
    plugin.after_update(strategy)  # update 1: nothing
    assert torch.equal(model.hidden[0].weight, before)
    plugin.after_update(strategy)  # update 2: unit 3 of layer 0 reset
    assert torch.equal(model.hidden[0].weight[:3], before[:3]) and not torch.equal(
        model.hidden[0].weight[3], before[3]
    )
    assert torch.all(model.hidden[1].weight[kept_rows, 3] == 0)
    assert torch.all(strategy.optimizer.state[model.hidden[0].weight]["exp_avg"][3] == 0)
    assert plugin.report()["resets"][0] == {"task": 0, "layer": 0, "units": 1}
    assert len(plugin.report()["resets"]) == 1 + (len(kept_rows) < 3)


# --------------------------------------------------------------------------------------------------- CBP


def test_cbp_utility_is_a_running_average_of_contribution() -> None:
    state = LayerUtility(2, torch.device("cpu"))
    active = torch.tensor([True, False])
    state.update(torch.tensor([1.0, 2.0]), active, active.numpy(), decay=0.9)
    state.update(torch.tensor([1.0, 2.0]), active, active.numpy(), decay=0.9)
    assert torch.allclose(state.utility, torch.tensor([0.19, 0.38]))  # 0.1 * x, then 0.9 * 0.1x + 0.1x
    assert state.age.tolist() == [2, 0]
    assert torch.allclose(state.corrected(0.9), torch.tensor([0.19 / (1 - 0.81), 0.38]))


def test_cbp_contribution_is_mean_output_times_mean_fan_out() -> None:
    model, x = dormant_net()
    with torch.no_grad():
        model.hidden[1].weight.copy_(torch.arange(12.0).view(3, 4) - 5)
    scores = Contribution()(model.masked_layers()[0], probe(model, x))
    fan_out = (torch.arange(12.0).view(3, 4) - 5).abs().mean(0)
    assert torch.allclose(scores, torch.tensor([1.0, 2.0, 3.0, 0.0]) * fan_out)


def test_cbp_replacement_count_accumulates_fractions() -> None:
    state = LayerUtility(4, torch.device("cpu"))
    assert [replacement_count(state, 5, 0.3) for _ in range(3)] == [1, 2, 1]  # 1.5, 0.5+1.5=2.0, 1.5
    assert state.pending == pytest.approx(0.5)


def test_cbp_replaces_the_lowest_utility_mature_units() -> None:
    model, x = dormant_net()
    plugin = ContinualBackpropPlugin(seed=0, rate=0.5, decay=0.0, maturity=1)
    strategy = strategy_of(model)
    strategy.optimizer = filled_adam(model)
    plugin.before_training_exp(strategy)
    model(x)  # the update's forward pass: the hooks keep z
    plugin.after_update(strategy)  # age 1: nobody mature yet
    assert plugin.resets == {}
    before = model.hidden[0].weight.detach().clone()
    model(x)
    plugin.after_update(strategy)  # age 2 > 1: 4 eligible * 0.5 = 2 replaced: lowest utility = units 3, 0
    assert plugin.resets == {(0, 0): 2, (0, 1): 1}
    assert torch.equal(model.hidden[0].weight[[1, 2]], before[[1, 2]])
    kept_rows = torch.nonzero(plugin.state[1].age > 0).flatten()  # layer 1's reset unit has its row redrawn
    assert kept_rows.numel() == 2 and torch.all(model.hidden[1].weight[kept_rows][:, [0, 3]] == 0)
    assert plugin.state[0].age.tolist() == [0, 2, 2, 0] and plugin.state[0].utility[[0, 3]].tolist() == [0, 0]
    plugin.after_training_exp(strategy)
    assert not model.units[0]._forward_hooks


# ------------------------------------------------------------------------------------ CReLU, layer norm


def test_crelu_doubles_the_width_each_unit_feeds_forward() -> None:
    model = build_model("kumar_mlp", (1, 28, 28), 10, hidden_activation=CReLU)
    assert model.hidden[1].in_features == 200 and model.head.in_features == 200
    z = torch.tensor([[1.5, -2.0, 0.0]])
    assert torch.equal(CReLU()(z), torch.tensor([[1.5, 0.0, 0.0, 2.0, 0.0, 0.0]]))
    layer = model.masked_layers()[0]
    assert layer.slices(torch.tensor([3])).fan_out[0].index.tolist() == [6, 7]
    model.units[0].mask[3] = 0.0
    model.eval()
    x = torch.randn(5, 1, 28, 28)
    h = model.units[0](model.hidden[0](x.flatten(1)))
    assert h.shape == (5, 200) and torch.all(h[:, 6:8] == 0)
    assert torch.allclose(model(x), model.export_compact()(x), atol=1e-6)


def test_masked_layer_norm_matches_layer_norm_and_ignores_inactive_units() -> None:
    norm, z = MaskedLayerNorm(5), torch.randn(3, 5)
    assert torch.allclose(norm(z, torch.ones(5)), nn.functional.layer_norm(z, (5,)), atol=1e-6)
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0])
    moved = z.clone()
    moved[:, [2, 4]] += 100.0
    keep = [0, 1, 3]
    assert torch.allclose(norm(z, mask)[:, keep], norm(moved, mask)[:, keep])
    assert torch.allclose(norm(z, mask)[:, keep], nn.functional.layer_norm(z[:, keep], (3,)), atol=1e-6)


# ----------------------------------------------------------------------------------------- diagnostics


def test_effective_rank_of_known_spectra() -> None:
    assert effective_rank(torch.eye(4)) == pytest.approx(4.0)
    assert effective_rank(torch.diag(torch.tensor([2.0, 2.0, 0.0, 0.0]))) == pytest.approx(2.0)
    p = torch.tensor([3.0, 1.0]) / 4
    assert effective_rank(torch.diag(torch.tensor([3.0, 1.0]))) == pytest.approx(
        float(torch.exp(-(p * p.log()).sum()))
    )
    assert effective_rank(torch.zeros(3, 3)) == 0.0


def test_layer_diagnostics_on_constructed_activations() -> None:
    model, x = dormant_net()
    rows = layer_diagnostics(model, x, tau=0.1)
    first = rows[0]
    assert first["active"] == 4 and first["dormant_fraction"] == pytest.approx(0.25)
    # features [1, 2, 3, 0] on both rows: rank one
    assert first["effective_rank"] == pytest.approx(1.0)
    assert first["feature_norm"] == pytest.approx(math.sqrt(14))
    assert first["mean_abs_weight"] == pytest.approx((1 + 2 + 3 + 1) / 8)
    assert dormant_fraction(torch.tensor([0.0, 0.05, 0.5, 2.0]), 0.1) == 0.5
    model.units[0].mask[3] = 0.0  # a unit switched off is not dormant
    assert layer_diagnostics(model, x, tau=0.1)[0]["dormant_fraction"] == 0.0


def test_fan_in_magnitude_is_prunes_score() -> None:
    model, _ = dormant_net()
    assert torch.allclose(FanInMagnitude()(model.masked_layers()[0]), torch.tensor([0.5, 1.0, 1.5, 0.5]))


# ------------------------------------------------------------------------------------------- registry


def test_baselines_compose_with_structural_strategies_and_never_batch() -> None:
    plugins = build_plugins(StrategyConfig("grow+redo", compactness=0.5, n_tasks=5, modifiers=("redo",)))
    assert [type(p) for p in plugins[:2]] == [GrowPlugin, ReDoPlugin]
    assert [type(p) for p in build_plugins(StrategyConfig("cbp"))] == [ContinualBackpropPlugin]
    assert build_plugins(StrategyConfig("crelu")) == []
    assert not batchable("grow+redo") and not batchable("ewc") and batchable("grow+two_speed")
    configs = [
        RunConfig("permuted_mnist", "mnist5k", name, 1.0, seed, 1e-3, "kumar_mlp", 2, 5, 16)
        for name in ("redo", "dense")
        for seed in (0, 1, 2)
    ]
    assert [len(b) for b in plan_batches(configs, 4)] == [1, 1, 1, 3]
