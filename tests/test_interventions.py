"""Integration interventions (docs/protocol.md §5): Two-Speed, Moment Transplant, Net2Wider, GradMax selector,
Rand. Smooth-Leaky activation, and their names as strategy modifiers."""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import pytest
import torch
from structural_helpers import fake_strategy, set_mask, tiny_net
from torch import nn

from plasticity_bench.core.activations import SMOOTH_LEAKY_DEFAULTS, RandSmoothLeaky
from plasticity_bench.core.models import MaskedNet
from plasticity_bench.measure.cohorts import CohortDiagnostics
from plasticity_bench.measure.importance import ActivationFrequency, AsIfActiveGradient
from plasticity_bench.measure.probes import probe
from plasticity_bench.strategies.base import StrategyConfig
from plasticity_bench.strategies.grow import GrowPlugin
from plasticity_bench.strategies.interventions import MomentTransplant, Net2Wider, TwoSpeed, ranked_donors
from plasticity_bench.strategies.modifiers import activation_factory, preferred_lr, smooth_leaky_settings
from plasticity_bench.strategies.registry import build_plugins, entry_for

X = torch.rand(32, 8)
Y = torch.randint(0, 3, (32,))


def grow_config(name: str, **options: object) -> StrategyConfig:
    _, *mods = name.split("+")
    return StrategyConfig(name=name, compactness=0.5, n_tasks=2, modifiers=tuple(mods), options=options)


# --- Net2Wider ----------------------------------------------------------------------------------------


def net2wider_birth(layer: int, incumbents: list[int], newborn: list[int], noise: float) -> tuple:
    model = tiny_net()
    set_mask(model, layer, incumbents)
    model.eval()
    before = model(X).detach()
    p = probe(model, X)
    new = torch.tensor(newborn)
    model.units[layer].set_units(new, True)
    strategy = fake_strategy(model, X, Y)
    Net2Wider(noise=noise, seed=0).on_birth(
        strategy, model.masked_layers()[layer], new, torch.tensor(incumbents), p
    )
    return model, before, model(X).detach(), p


@pytest.mark.parametrize(
    ("layer", "incumbents", "newborn"),
    [(0, [0, 1, 2], [3, 4]), (1, [0, 1, 2], [3, 4]), (0, [1], [0, 3, 5])],  # last: more newborns than donors
)
def test_net2wider_without_noise_preserves_function(layer: int, incumbents: list, newborn: list) -> None:
    _, before, after, _ = net2wider_birth(layer, incumbents, newborn, noise=0.0)
    assert (after - before).abs().max() < 1e-6


def test_net2wider_copies_fan_in_and_halves_fan_out() -> None:
    model = tiny_net()
    original = model.hidden[1].weight.detach().clone()
    model, _, _, p = net2wider_birth(0, [0, 1, 2], [4], noise=0.0)
    donor = int(ranked_donors(p, model.masked_layers()[0], torch.tensor([0, 1, 2]))[0])
    w_in, b_in, w_out = model.hidden[0].weight, model.hidden[0].bias, model.hidden[1].weight
    assert torch.equal(w_in[4], w_in[donor]) and b_in[4] == b_in[donor]
    assert torch.allclose(w_out[:, 4], original[:, donor] / 2) and torch.equal(w_out[:, 4], w_out[:, donor])


def test_net2wider_noise_changes_function_by_a_bounded_amount() -> None:
    """With the default noise (1e-3 x donor-row std) the function moves, but by less than 1e-2 relative."""
    _, before, after, _ = net2wider_birth(0, [0, 1, 2], [3, 4], noise=1e-3)
    change = (after - before).abs().max()
    assert 0 < change < 1e-2 * before.abs().max()


@pytest.mark.parametrize(("name", "preserved"), [("grow+net2wider", True), ("grow", False)])
def test_grow_edit_with_net2wider_preserves_function_in_every_layer(name: str, preserved: bool) -> None:
    """Through the Grow plugin: both masked layers get newborns in one edit; outputs stay equal."""
    model = tiny_net(hidden=(20, 20))
    grow = build_plugins(grow_config(name, net2wider_noise=0.0, diagnostics=False))[0]
    strategy = fake_strategy(model, X, Y)
    grow.before_training(strategy)
    model.eval()
    before = model(X).detach()
    grow.edit(strategy, 0)
    assert [entry["layer"] for entry in grow.edit_log] == [0, 1]
    assert ((model(X) - before).abs().max() < 1e-6) == preserved


# --- Moment Transplant --------------------------------------------------------------------------------


def donor_net() -> tuple[nn.Module, int]:
    """Layer 0 with incumbents 0..3 where unit 2 fires on every input and the others almost never."""
    model = tiny_net()
    with torch.no_grad():
        model.hidden[0].bias.copy_(torch.tensor([-50.0, -50.0, 50.0, -50.0, 0.0, 0.0]))
    set_mask(model, 0, [0, 1, 2, 3])
    return model, 2


def fill_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """One real step (creates the state), then distinct random values in every per-element buffer."""
    nn.functional.cross_entropy(model(X), Y).backward()
    optimizer.step()
    gen = torch.Generator().manual_seed(1)
    for state in optimizer.state.values():
        for key, value in state.items():
            if key != "step":
                value.copy_(torch.rand(value.shape, generator=gen))


@pytest.mark.parametrize(
    "make",
    [lambda p: torch.optim.Adam(p, lr=1e-3), lambda p: torch.optim.SGD(p, 0.1, 0.9)],
    ids=["adam", "sgd_momentum"],
)
def test_moment_transplant_copies_exactly_the_donor_buffers(make) -> None:
    model, donor = donor_net()
    optimizer = make(model.parameters())
    fill_state(model, optimizer)
    before = {p: {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}
    p = probe(model, X)
    newborn = torch.tensor([4, 5])
    model.units[0].set_units(newborn, True)
    MomentTransplant().on_birth(
        fake_strategy(model, X, Y, optimizer), model.masked_layers()[0], newborn, torch.arange(4), p
    )
    w_in, b_in, w_out = model.hidden[0].weight, model.hidden[0].bias, model.hidden[1].weight
    for param, state in optimizer.state.items():
        for key, value in state.items():
            expected = before[param][key].clone()
            if key != "step":  # step counters untouched, per-element buffers copied
                if param is w_in or param is b_in:
                    expected[[4, 5]] = expected[donor].clone()
                elif param is w_out:
                    expected[:, [4, 5]] = expected[:, [donor]].clone()
            assert torch.equal(value, expected), (key, param.shape)


# --- Two-Speed ----------------------------------------------------------------------------------------


def associated(model: nn.Module, cohorts: list[tuple[int, list[int]]]) -> dict[nn.Parameter, torch.Tensor]:
    """Boolean masks of the newborn-associated entries: fan-in rows, biases, fan-out columns."""
    marks = {p: torch.zeros_like(p, dtype=torch.bool) for p in model.parameters()}
    consumers = [*model.hidden[1:], model.head]
    for layer, units in cohorts:
        marks[model.hidden[layer].weight][units] = True
        marks[model.hidden[layer].bias][units] = True
        marks[consumers[layer].weight][:, units] = True
    return marks


def two_speed_steps(
    cohorts: list[tuple[int, list[int]]], r: float, window: int, steps: int
) -> tuple[nn.Module, list[dict]]:
    """SGD steps with Two-Speed; per step and parameter: (actual change, plain change ``-lr * grad``)."""
    model = tiny_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plugin = TwoSpeed(r=r, window=window)
    strategy = fake_strategy(model, X, Y, optimizer)
    for layer, units in cohorts:
        plugin.on_birth(strategy, model.masked_layers()[layer], torch.tensor(units), torch.tensor([]), None)
    changes = []
    for _ in range(steps):
        before = {p: p.detach().clone() for p in model.parameters()}
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(X), Y).backward()
        plain = {p: -0.1 * p.grad for p in model.parameters()}
        plugin.before_update(strategy)
        optimizer.step()
        plugin.after_update(strategy)
        changes.append({p: (p.detach() - before[p], plain[p]) for p in model.parameters()})
    return model, changes


def test_two_speed_scales_newborn_slices_for_the_window_only() -> None:
    r, window = 5.0, 3
    model, steps = two_speed_steps([(0, [1, 4])], r, window, steps=5)
    marks = associated(model, [(0, [1, 4])])
    for t, changes in enumerate(steps):
        factor = r if t < window else 1.0
        for param, (delta, plain) in changes.items():
            mark = marks[param]
            torch.testing.assert_close(delta[mark], factor * plain[mark], rtol=1e-4, atol=1e-7)
            torch.testing.assert_close(delta[~mark], plain[~mark], rtol=1e-4, atol=1e-7)
    newborn_moves = [plain[marks[p]].abs().sum() for p, (_, plain) in steps[0].items()]
    assert sum(newborn_moves) > 0  # the check above is not vacuous


def test_two_speed_overlapping_cohorts_scale_once_and_keep_their_own_windows() -> None:
    """A weight linking a newborn of layer 0 to a newborn of layer 1 moves r (not r^2) times faster."""
    r = 4.0
    model, steps = two_speed_steps([(0, [2]), (1, [3])], r, window=2, steps=3)
    w1 = model.hidden[1].weight
    delta, plain = steps[0][w1]
    torch.testing.assert_close(delta[3, 2], r * plain[3, 2])
    delta, plain = steps[2][w1]
    torch.testing.assert_close(delta, plain, rtol=1e-4, atol=1e-7)


def test_two_speed_validates_arguments() -> None:
    with pytest.raises(ValueError, match="r >= 0"):
        TwoSpeed(r=-1)
    with pytest.raises(ValueError, match="window >= 1"):
        TwoSpeed(window=0)


# --- GradMax-style selector ---------------------------------------------------------------------------


def test_gradmax_selector_picks_largest_gradient_units() -> None:
    """One masked layer, every pre-activation positive (ReLU' = 1): |dL/dz_j| = s_j |<p - y, v>| for a
    head column ``s_j v``, so the newborns are the inactive units with the largest ``s_j``."""
    torch.manual_seed(0)
    model = tiny_net(hidden=(6,))
    scales = torch.tensor([1.0, 1.0, 1.0, 5.0, 0.1, 2.0])
    with torch.no_grad():
        model.hidden[0].weight.uniform_(0.1, 1.0)
        model.hidden[0].bias.fill_(1.0)
        model.head.weight.copy_(torch.tensor([1.0, -2.0, 0.5])[:, None] * scales[None, :])
    set_mask(model, 0, [0, 1, 2])
    config = grow_config("grow+gradmax")
    grow = build_plugins(config)[0]
    assert isinstance(grow, GrowPlugin) and isinstance(grow.selector, AsIfActiveGradient)
    grow.targets = [5]
    grow.edit(fake_strategy(model, X, Y), cycle=config.cycles - 1)
    assert model.units[0].active().tolist() == [0, 1, 2, 3, 5]


# --- Rand. Smooth-Leaky -------------------------------------------------------------------------------


def smooth_leaky_reference(x: torch.Tensor, a: float, c_s: float, p: float) -> tuple:
    s = torch.sigmoid(c_s * x / p)
    value = a * x + (1 - a) * x * s
    slope = a + (1 - a) * (s + x * (c_s / p) * s * (1 - s))
    return value, slope


def test_rand_smooth_leaky_eval_value_and_gradient_match_formula() -> None:
    c_s, p, lower, upper = 0.8, 1.0, 0.3, 0.6
    act = RandSmoothLeaky(c_s, p, lower, upper).eval()
    x = torch.linspace(-6, 6, 101, dtype=torch.float64, requires_grad=True)
    out = act(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    value, slope = smooth_leaky_reference(x.detach(), (lower + upper) / 2, c_s, p)
    torch.testing.assert_close(out.detach(), value)
    torch.testing.assert_close(grad, slope)


def test_rand_smooth_leaky_training_draws_leak_per_element_in_bounds() -> None:
    c_s, p, lower, upper = 0.5, 0.5, 0.673, 2.673
    act = RandSmoothLeaky(c_s, p, lower, upper).train()
    x = torch.linspace(0.5, 4, 400, dtype=torch.float64)
    s = torch.sigmoid(c_s * x / p)
    leak = (act(x) - x * s) / (x - x * s)  # solve f(x) = a x + (1 - a) x s for a
    assert leak.min() >= lower - 1e-9 and leak.max() <= upper + 1e-9
    assert leak.std() > 0.3 and not torch.equal(act(x), act(x))
    fixed = RandSmoothLeaky(c_s, p, 0.5, 0.5)
    assert torch.equal(fixed.train()(x), fixed.eval()(x))
    with pytest.raises(ValueError):
        RandSmoothLeaky(c_s, 0.0, lower, upper)


def test_smooth_leaky_settings_per_scenario_and_override() -> None:
    assert smooth_leaky_settings("permuted_mnist") == SMOOTH_LEAKY_DEFAULTS["permuted_mnist"]
    assert smooth_leaky_settings("cifar100_iid") == SMOOTH_LEAKY_DEFAULTS["iid"]
    assert smooth_leaky_settings("permuted_mnist", {"c_s": 2.0}).c_s == 2.0
    with pytest.raises(ValueError, match="no Rand\\. Smooth-Leaky settings"):
        smooth_leaky_settings("split_mnist")
    with pytest.raises(ValueError, match="unknown smooth_leaky"):
        smooth_leaky_settings("permuted_mnist", {"slope": 1.0})
    config = StrategyConfig(
        "grow+rand_smooth_leaky", scenario="split_cifar100", modifiers=("rand_smooth_leaky",)
    )
    module = activation_factory(config)()
    assert isinstance(module, RandSmoothLeaky) and (module.lower, module.upper) == (0.673, 2.673)
    assert math.isclose(preferred_lr(config), 1e-4)
    plain = StrategyConfig("grow", scenario="split_cifar100")
    assert activation_factory(plain) is nn.ReLU and preferred_lr(plain) is None


# --- Names --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["prune+two_speed", "dense+gradmax", "dyno+net2wider", "grow+two_speed+two_speed"]
)
def test_modifiers_other_than_activation_need_grow(name: str) -> None:
    with pytest.raises(ValueError):
        entry_for(name)


def test_modifiers_compose_and_two_speed_plugin_only_when_asked() -> None:
    plugins = build_plugins(grow_config("grow+moment_transplant+two_speed", two_speed_window=7))
    grow, two_speed, diagnostics = plugins
    assert [type(i) for i in grow.interventions] == [MomentTransplant, TwoSpeed]
    assert two_speed is grow.interventions[1] and two_speed.window == 7
    assert isinstance(diagnostics, CohortDiagnostics)
    assert not any(isinstance(p, TwoSpeed) for p in build_plugins(grow_config("grow+net2wider")))
    entry_for("dense+rand_smooth_leaky")


def test_scores_are_deterministic_with_rand_smooth_leaky() -> None:
    """docs/protocol.md §4.1: scoring one probe twice gives identical scores, although the model is in
    training mode (where Rand. Smooth-Leaky draws a new slope per element and call)."""
    settings = SMOOTH_LEAKY_DEFAULTS["permuted_mnist"]
    torch.manual_seed(0)
    model = MaskedNet(
        nn.Flatten(), 20, (256, 64), 3, partial(RandSmoothLeaky, *dataclasses.astuple(settings)[:4])
    )
    model.train()
    x, y = torch.randn(32, 20), torch.randint(0, 3, (32,))
    p = probe(model, x, y)
    assert model.training
    incumbents = torch.arange(0, 256, 2)
    layer = model.masked_layers()[0]
    for score in (ActivationFrequency(), AsIfActiveGradient()):
        first, second = score(layer, p), score(layer, p)
        assert torch.equal(first, second)
    assert torch.equal(ranked_donors(p, layer, incumbents), ranked_donors(p, layer, incumbents))
    # the eval-mode slope is what the scores use: equal to a probe of the model in eval mode
    model.eval()
    score = ActivationFrequency()
    assert torch.equal(score(layer, probe(model, x, y)), score(layer, p))
