"""Tests for the masked-unit core: masks, gradients, UnitSlices, optimizer-state surgery, compact export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from plasticity_bench.core.activations import RandSmoothLeaky
from plasticity_bench.core.masks import (
    MaskedActivation,
    MaskedLayer,
    copy_optimizer_state,
    reset_optimizer_state,
    zero_optimizer_state,
)
from plasticity_bench.core.models import MaskedNet, build_model, count_flops, count_params

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "smooth_leaky": lambda: RandSmoothLeaky(0.8, 1.0, 0.3, 0.6),
}


def random_masks(model: MaskedNet, seed: int, p_on: float = 0.5) -> None:
    """Random masks with at least two active and two inactive units per layer."""
    gen = torch.Generator().manual_seed(seed)
    for units in model.units:
        d = units.n_units
        mask = (torch.rand(d, generator=gen) < p_on).float()
        mask[:2], mask[-2:] = 1.0, 0.0
        units.mask.copy_(mask)


def small_mlp(activation=nn.ReLU, seed: int = 0) -> MaskedNet:
    torch.manual_seed(seed)
    return build_model("mlp", (1, 6, 6), 5, activation=activation)


# --------------------------------------------------------------------------------------- masks / gradients


def test_masked_activation_forward_multiplies_by_mask() -> None:
    units = MaskedActivation(3, nn.ReLU())
    units.mask.copy_(torch.tensor([1.0, 0.0, 1.0]))
    z = torch.tensor([[1.0, 2.0, -3.0], [-1.0, 5.0, 4.0]])
    assert torch.equal(units(z), torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 4.0]]))
    # conv shape (B, C, H, W): the mask broadcasts over H, W
    zc = torch.ones(2, 3, 2, 2)
    out = units(zc)
    assert torch.equal(out[:, 1], torch.zeros(2, 2, 2))
    assert torch.equal(out[:, [0, 2]], torch.ones(2, 2, 2, 2))
    assert units.active().tolist() == [0, 2] and units.inactive().tolist() == [1]
    assert units.n_active() == 2
    units.set_units(torch.tensor([1]), True)
    units.set_units(torch.tensor([0]), False)
    assert units.mask.tolist() == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_inactive_units_get_exactly_zero_gradient(act: str) -> None:
    model = small_mlp(ACTIVATIONS[act])
    random_masks(model, seed=1)
    x = torch.randn(32, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 5, (32,), generator=torch.Generator().manual_seed(3))
    nn.functional.cross_entropy(model(x), y).backward()
    layers = model.masked_layers()
    for layer in layers:
        off, on = layer.units.inactive(), layer.units.active()
        assert off.numel() >= 2 and on.numel() >= 2
        w_in, b_in, w_out = layer.producer.weight.grad, layer.producer.bias.grad, layer.consumer.weight.grad
        assert torch.count_nonzero(w_in[off]) == 0, "fan-in rows of inactive units must get zero gradient"
        assert torch.count_nonzero(b_in[off]) == 0, "bias entries of inactive units must get zero gradient"
        assert torch.count_nonzero(w_out[:, off]) == 0, "fan-out columns of inactive units: zero gradient"
    if act == "relu":
        return  # ReLU units can be dead on a batch; nonzero checks use activations with act' > 0
    for layer in layers:
        on = layer.units.active()
        # the consumer's own inactive rows get no gradient: look at rows that are alive downstream
        alive_rows = (
            layers[layer.index + 1].units.active()
            if layer.index + 1 < len(layers)
            else torch.arange(layer.consumer.out_features)
        )
        assert bool((layer.producer.weight.grad[on].abs().sum(1) > 0).all())
        assert bool((layer.producer.bias.grad[on] != 0).all())
        fan_out = layer.consumer.weight.grad[alive_rows][:, on]
        assert bool((fan_out.abs().sum(0) > 0).all())


def test_inactive_units_unchanged_by_adam_steps() -> None:
    """Zero gradient + zero Adam state => inactive units' parameters stay exactly at their initial draw."""
    model = small_mlp(nn.Tanh)
    random_masks(model, seed=4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        opt.zero_grad()
        x = torch.randn(16, 1, 6, 6, generator=gen)
        y = torch.randint(0, 5, (16,), generator=gen)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for layer in model.masked_layers():
        off = layer.units.inactive()
        for piece in layer.slices(off):
            assert torch.equal(piece.read(), piece.read(before[_name(model, piece.param)]))
    # and the active units did move
    assert not torch.equal(model.hidden[0].weight, before["hidden.0.weight"])


def _name(model: nn.Module, param: nn.Parameter) -> str:
    return next(n for n, p in model.named_parameters() if p is param)


def test_masks_are_saved_in_state_dict() -> None:
    model = small_mlp()
    random_masks(model, seed=7)
    state = model.state_dict()
    assert "units.0.mask" in state and "units.1.mask" in state
    assert torch.equal(state["units.0.mask"], model.units[0].mask)
    fresh = small_mlp(seed=99)
    assert fresh.active_units() == [256, 256]
    fresh.load_state_dict(state)
    assert fresh.active_units() == model.active_units()
    for a, b in zip(fresh.masks(), model.masks()):
        assert torch.equal(a, b)


def test_load_masks_validates() -> None:
    model = small_mlp()
    with pytest.raises(ValueError, match="expected 2 masks"):
        model.load_masks([torch.ones(256)])
    with pytest.raises(ValueError, match="shape"):
        model.load_masks([torch.ones(256), torch.ones(3)])
    masks = [torch.zeros(256), torch.ones(256)]
    masks[0][[3, 9]] = 1.0
    model.load_masks(masks)
    assert model.active_units() == [2, 256]


# --------------------------------------------------------------------------------------------- UnitSlices


def test_unit_slices_index_rows_bias_and_columns() -> None:
    model = small_mlp()
    layer0, layer1 = model.masked_layers()
    assert layer0.producer is model.hidden[0] and layer0.consumer is model.hidden[1]
    assert layer1.producer is model.hidden[1] and layer1.consumer is model.head
    assert layer0.fan_in_size == 36 and layer1.fan_in_size == 256
    units = torch.tensor([5, 2, 200])
    s = layer1.slices(units)
    (w_in, b_in), (w_out,) = s.fan_in, s.fan_out
    assert w_in.param is model.hidden[1].weight and w_in.dim == 0
    assert b_in.param is model.hidden[1].bias and b_in.dim == 0
    assert w_out.param is model.head.weight and w_out.dim == 1
    assert torch.equal(w_in.read(), model.hidden[1].weight.detach()[[5, 2, 200]])
    assert torch.equal(b_in.read(), model.hidden[1].bias.detach()[[5, 2, 200]])
    assert torch.equal(w_out.read(), model.head.weight.detach()[:, [5, 2, 200]])
    assert len(list(s)) == 3


def test_param_slice_write_and_fill_touch_only_the_slice() -> None:
    model = small_mlp()
    layer = model.masked_layers()[0]
    s = layer.slices(torch.tensor([1, 4]))
    w_out = s.fan_out[0]
    before = model.hidden[1].weight.detach().clone()
    w_out.write(torch.full((256, 2), 7.0))
    after = model.hidden[1].weight.detach()
    assert torch.equal(after[:, [1, 4]], torch.full((256, 2), 7.0))
    keep = [j for j in range(256) if j not in (1, 4)]
    assert torch.equal(after[:, keep], before[:, keep])
    # on a separate tensor of the parameter's shape
    buf = torch.ones(256, 36)
    s.fan_in[0].fill(0.0, buf)
    assert torch.count_nonzero(buf[[1, 4]]) == 0 and bool((buf[[0, 2, 3, 5]] == 1).all())
    assert int(buf.sum()) == 254 * 36


def test_unit_slices_conv_flatten_groups_and_range_check() -> None:
    """A unit read through a flatten owns H*W consecutive consumer columns (channel-major layout)."""
    producer, consumer = nn.Conv2d(1, 3, 1), nn.Linear(3 * 4, 2)
    layer = MaskedLayer(0, producer, MaskedActivation(3, nn.ReLU()), consumer)
    assert layer.fan_in_size == 1
    s = layer.slices(torch.tensor([1]))
    assert s.fan_out[0].index.tolist() == [4, 5, 6, 7]
    assert s.fan_in[0].read().shape == (1, 1, 1, 1)
    assert layer.slices(torch.tensor([2, 0])).fan_out[0].index.tolist() == [8, 9, 10, 11, 0, 1, 2, 3]
    with pytest.raises(IndexError):
        layer.slices(torch.tensor([3]))
    with pytest.raises(IndexError):
        layer.slices(torch.tensor([-1]))


# --------------------------------------------------------------------------------------- optimizer state


def trained_adam(steps: int = 3) -> tuple[MaskedNet, torch.optim.Adam]:
    model = small_mlp(nn.Tanh)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(11)
    for _ in range(steps):
        opt.zero_grad()
        x = torch.randn(16, 1, 6, 6, generator=gen)
        y = torch.randint(0, 5, (16,), generator=gen)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt


def state_copy(opt: torch.optim.Optimizer) -> dict[int, dict[str, torch.Tensor]]:
    return {id(p): {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}


def mask_of(piece_param: nn.Parameter, dim: int, index: list[int]) -> torch.Tensor:
    """Boolean tensor of the parameter's shape, True on the sliced entries."""
    m = torch.zeros_like(piece_param, dtype=torch.bool)
    m.index_fill_(dim, torch.tensor(index), True)
    return m


def test_zero_optimizer_state_touches_exactly_the_slices() -> None:
    model, opt = trained_adam()
    before = state_copy(opt)
    layer = model.masked_layers()[0]
    units = [1, 4, 100]
    zero_optimizer_state(opt, layer.slices(torch.tensor(units)))
    touched = {
        id(model.hidden[0].weight): mask_of(model.hidden[0].weight, 0, units),
        id(model.hidden[0].bias): mask_of(model.hidden[0].bias, 0, units),
        id(model.hidden[1].weight): mask_of(model.hidden[1].weight, 1, units),
    }
    for param, state in opt.state.items():
        old = before[id(param)]
        assert torch.equal(state["step"], old["step"]), "step counters are left as they are"
        for key in ("exp_avg", "exp_avg_sq"):
            sel = touched.get(id(param), torch.zeros_like(param, dtype=torch.bool))
            assert torch.count_nonzero(state[key][sel]) == 0
            assert torch.equal(state[key][~sel], old[key][~sel])
            if sel.any():
                assert torch.count_nonzero(old[key][sel]) > 0, "the slice held nonzero state before"


def test_copy_optimizer_state_touches_exactly_the_target() -> None:
    model, opt = trained_adam()
    before = state_copy(opt)
    layer = model.masked_layers()[1]
    src, dst = [3, 7], [10, 250]
    copy_optimizer_state(opt, layer.slices(torch.tensor(src)), layer.slices(torch.tensor(dst)))
    pieces = {
        id(model.hidden[1].weight): (0, model.hidden[1].weight),
        id(model.hidden[1].bias): (0, model.hidden[1].bias),
        id(model.head.weight): (1, model.head.weight),
    }
    for param, state in opt.state.items():
        old = before[id(param)]
        assert torch.equal(state["step"], old["step"])
        for key in ("exp_avg", "exp_avg_sq"):
            if id(param) not in pieces:
                assert torch.equal(state[key], old[key])
                continue
            dim, p = pieces[id(param)]
            new_t, old_t = state[key], old[key]
            assert torch.equal(
                new_t.index_select(dim, torch.tensor(dst)), old_t.index_select(dim, torch.tensor(src))
            )
            sel = mask_of(p, dim, dst)
            assert torch.equal(new_t[~sel], old_t[~sel])
            assert not torch.equal(new_t, old_t)


def test_zero_optimizer_state_sgd_momentum() -> None:
    model = small_mlp(nn.Tanh)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 5, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    buf = opt.state[model.hidden[0].weight]["momentum_buffer"]
    old = buf.clone()
    zero_optimizer_state(opt, model.masked_layers()[0].slices(torch.tensor([0, 2])))
    assert torch.count_nonzero(buf[[0, 2]]) == 0
    assert torch.equal(buf[1], old[1]) and torch.equal(buf[3:], old[3:])


def test_reset_optimizer_state_zeroes_only_given_params() -> None:
    model, opt = trained_adam()
    before = state_copy(opt)
    chosen = (model.hidden[1].weight, model.head.bias)
    reset_optimizer_state(opt, chosen)
    for param, state in opt.state.items():
        if any(param is c for c in chosen):
            assert all(torch.count_nonzero(v) == 0 for v in state.values())
        else:
            assert all(torch.equal(v, before[id(param)][k]) for k, v in state.items())


# ------------------------------------------------------------------------------------------ compact export


@pytest.mark.parametrize(
    ("name", "shape", "act"),
    [
        ("mlp", (1, 28, 28), nn.ReLU),
        ("mlp", (1, 28, 28), lambda: RandSmoothLeaky(0.8, 1.0, 0.3, 0.6)),
        ("kumar_mlp", (1, 28, 28), nn.ReLU),
        ("convnet", (3, 32, 32), nn.ReLU),
        ("kumar_cnn", (3, 32, 32), nn.ReLU),
    ],
)
def test_export_compact_same_function(name: str, shape: tuple[int, ...], act) -> None:
    torch.manual_seed(0)
    model = build_model(name, shape, 10, activation=act)
    random_masks(model, seed=3, p_on=0.4)
    model.eval()
    state = torch.get_rng_state()
    compact = model.export_compact().eval()
    # no draw from torch's RNG: while a run trains it is that run's stream of random leaks
    assert torch.equal(torch.get_rng_state(), state)
    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full, small = model(x), compact(x)
    assert small.shape == (8, 10)
    torch.testing.assert_close(small, full, atol=1e-6, rtol=1e-6)
    linears = [m for m in compact.modules() if isinstance(m, nn.Linear)]
    active = model.active_units()
    assert [m.out_features for m in linears] == [*active, 10]
    # the export is a copy: changing it leaves the masked net alone
    with torch.no_grad():
        linears[0].weight.zero_()
    assert torch.equal(model(x), full)


def test_compact_params_and_flops_mlp_hand_computed() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", (1, 28, 28), 10)
    assert count_params(model) == 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10
    masks = [torch.zeros(256), torch.zeros(256)]
    masks[0][torch.arange(0, 60, 2)] = 1.0  # a1 = 30
    masks[1][torch.arange(100, 120)] = 1.0  # a2 = 20
    model.load_masks(masks)
    compact = model.export_compact()
    a1, a2 = 30, 20
    assert count_params(compact) == 784 * a1 + a1 + a1 * a2 + a2 + a2 * 10 + 10  # 24380
    assert count_params(compact) == 24380
    # FLOPs: 2 x MACs plus one add per bias, per output element
    assert count_flops(compact, (1, 28, 28)) == a1 * (2 * 784 + 1) + a2 * (2 * a1 + 1) + 10 * (2 * a2 + 1)
    compact.train()
    assert count_flops(compact, (1, 28, 28)) == 48700
    assert compact.training, "count_flops restores the train/eval mode"


def test_compact_params_and_flops_kumar_cnn_hand_computed() -> None:
    torch.manual_seed(0)
    model = build_model("kumar_cnn", (3, 32, 32), 10)
    masks = [torch.zeros(100), torch.zeros(100)]
    masks[0][:7] = 1.0
    masks[1][[1, 50, 99]] = 1.0
    model.load_masks(masks)
    compact = model.export_compact()
    conv_params = (3 * 16 * 25 + 16) + (16 * 16 * 25 + 16)  # trunk never edited
    fc_params = 400 * 7 + 7 + 7 * 3 + 3 + 3 * 10 + 10
    assert count_params(compact) == conv_params + fc_params
    conv_flops = 16 * 28 * 28 * (2 * 75 + 1) + 16 * 10 * 10 * (2 * 400 + 1)
    fc_flops = 7 * (2 * 400 + 1) + 3 * (2 * 7 + 1) + 10 * (2 * 3 + 1)
    assert count_flops(compact, (3, 32, 32)) == conv_flops + fc_flops
