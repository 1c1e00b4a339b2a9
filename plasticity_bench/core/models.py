"""Unit-masked networks (docs/protocol.md §2) and their compact export.

Every network is ``trunk -> [producer -> act -> mask -> after] x L -> head``: an unedited trunk (flatten for
the MLPs, a conv stack for the CNNs), ``L`` masked layers and an unmasked output layer. The LC26 networks
mask hidden Linear layers only (``after`` is the identity); VGG11 (:mod:`plasticity_bench.core.vgg`) masks
every conv channel too, with its pooling, flatten and dropout as the ``after`` modules.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import skip_init
from torch.profiler import record_function

from plasticity_bench.core.masks import MaskedActivation, MaskedLayer
from plasticity_bench.core.seeding import HOST_RANGE

ActivationFactory = Callable[[], nn.Module]

INITS = ("kaiming", "torch_default")


@dataclass(frozen=True)
class NetSpec:
    """Architecture of a named network: trunk builder, hidden widths and default init."""

    hidden: tuple[int, ...]
    default_init: str
    in_features: Callable[[tuple[int, ...]], int]
    trunk: Callable[[int, ActivationFactory], nn.Module]


def _flatten_trunk(in_channels: int, act: ActivationFactory) -> nn.Module:
    return nn.Flatten()


def _lc26_conv_trunk(in_channels: int, act: ActivationFactory) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1), act(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), act(), nn.MaxPool2d(2),
        nn.Flatten(),
    )  # fmt: skip


def _kumar_conv_trunk(in_channels: int, act: ActivationFactory) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 5), act(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 5), act(), nn.MaxPool2d(2),
        nn.Flatten(),
    )  # fmt: skip


def _flat_size(shape: tuple[int, ...]) -> int:
    return int(torch.tensor(shape).prod())


def _conv_out(trunk: Callable[[int, ActivationFactory], nn.Module]) -> Callable[[tuple[int, ...]], int]:
    def size(shape: tuple[int, ...]) -> int:
        with torch.no_grad():
            return trunk(shape[0], nn.ReLU)(torch.zeros(1, *shape)).shape[1]

    return size


#: Named networks of docs/protocol.md §2.
NETWORKS: dict[str, NetSpec] = {
    "mlp": NetSpec((256, 256), "kaiming", _flat_size, _flatten_trunk),
    "kumar_mlp": NetSpec((100, 100), "torch_default", _flat_size, _flatten_trunk),
    "convnet": NetSpec((512, 512, 256), "kaiming", _conv_out(_lc26_conv_trunk), _lc26_conv_trunk),
    "kumar_cnn": NetSpec((100, 100), "torch_default", _conv_out(_kumar_conv_trunk), _kumar_conv_trunk),
}


class MaskedNet(nn.Module):
    """``trunk -> (producer -> act -> mask -> after) x L -> head`` with unit masks on every hidden layer.

    Args:
        trunk: unedited feature extractor producing ``(B, in_features)``.
        in_features: trunk output width.
        hidden: hidden widths ``d_l`` (with any DYNO reserve already included).
        n_classes: output width ``C`` (the head is never masked).
        activation: factory of the activation used after every hidden layer; one that gives several
            features per unit (``CReLU``) widens the inputs of the layer after it.
        layer_norm: a :class:`~plasticity_bench.core.masks.MaskedLayerNorm` before every hidden activation.
        init: the init scheme the weights were drawn from (``kaiming`` / ``torch_default``); unit resets
            (:func:`~plasticity_bench.core.masks.reinitialize_units`) draw from it again.

    Input: ``(B, *input_shape)`` float32. Output: logits ``(B, n_classes)``. :meth:`from_layers` builds any
    other stack of masked Linear / Conv2d layers (VGG11).

    Attributes:
        after: per masked layer, the module applied to its masked output (identity here; pooling,
            flatten or dropout in VGG11). Holds no parameters.
        weights: where the weights came from: ``None`` (drawn from ``init``) or ``{"weights", "sha256"}``
            of a pretrained file (:func:`~plasticity_bench.core.vgg.load_pretrained`).
    """

    def __init__(
        self,
        trunk: nn.Module,
        in_features: int,
        hidden: tuple[int, ...],
        n_classes: int,
        activation: ActivationFactory,
        layer_norm: bool = False,
        init: str = "torch_default",
    ) -> None:
        super().__init__()
        self.trunk, self.init = trunk, init
        units = [MaskedActivation(d, activation(), layer_norm) for d in hidden]
        inputs = (in_features, *(d * u.expansion for d, u in zip(hidden, units)))
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(inputs, hidden))
        self.units = nn.ModuleList(units)
        self.after = nn.ModuleList(nn.Identity() for _ in hidden)
        self.head = nn.Linear(inputs[-1], n_classes)
        self.weights: dict[str, str] | None = None

    @classmethod
    def from_layers(
        cls, producers: list[nn.Linear | nn.Conv2d], units: list[MaskedActivation], after: list[nn.Module],
        head: nn.Linear, init: str,
    ) -> MaskedNet:  # fmt: skip
        """A masked net of the given layers (no trunk): ``producers[l] -> units[l] -> after[l]``, then
        ``head``; ``producers[l + 1]`` must read ``after[l]``'s output (a Linear after a flatten of
        ``C x H x W`` reads ``H * W`` columns per channel, channel-major, as :meth:`MaskedLayer.slices
        <plasticity_bench.core.masks.MaskedLayer.slices>` assumes).

        Raises:
            ValueError: for lists of different lengths.
        """
        if not len(producers) == len(units) == len(after):
            raise ValueError(
                f"{len(producers)} producers, {len(units)} unit masks, {len(after)} after-modules"
            )
        net = cls.__new__(cls)
        nn.Module.__init__(net)
        net.trunk, net.init, net.weights = nn.Identity(), init, None
        net.hidden, net.units = nn.ModuleList(producers), nn.ModuleList(units)
        net.after, net.head = nn.ModuleList(after), head
        return net

    def forward(self, x: Tensor) -> Tensor:
        x = self.trunk(x)
        for layer, units, after in zip(self.hidden, self.units, self.after):
            x = after(units(layer(x)))
        return self.head(x)

    def masked_layers(self) -> list[MaskedLayer]:
        """The masked layers, input side first; each knows its producer and consumer."""
        consumers = [*self.hidden[1:], self.head]
        return [
            MaskedLayer(i, producer, units, consumer)
            for i, (producer, units, consumer) in enumerate(zip(self.hidden, self.units, consumers))
        ]

    def active_units(self) -> list[int]:
        """Active unit count per masked layer."""
        return [units.n_active() for units in self.units]

    def mask_version(self) -> int:
        """Grows whenever a unit mask changes (the sum of the layers' :attr:`MaskedActivation.version`)."""
        return sum(units.version for units in self.units)

    def masks(self) -> list[Tensor]:
        """Copies of the unit masks (float32, shape ``(d_l,)``), input side first."""
        return [units.mask.detach().clone() for units in self.units]

    def load_masks(self, masks: list[Tensor]) -> None:
        """Set every unit mask; ``masks`` as returned by :meth:`masks`.

        Raises:
            ValueError: if the count or a shape does not match.
        """
        if len(masks) != len(self.units):
            raise ValueError(f"expected {len(self.units)} masks, got {len(masks)}")
        for units, mask in zip(self.units, masks):
            if mask.shape != units.mask.shape:
                raise ValueError(f"mask shape {tuple(mask.shape)} != {tuple(units.mask.shape)}")
            units.assign(mask)

    def export_compact(self) -> nn.Sequential:
        """A plain network holding only the active units, with the same function.

        Hidden layers (Linear or Conv2d) keep only active rows / output channels (fan-in) and the following
        layer only the matching columns / input channels (fan-out; with CReLU both features of a unit, after
        a flatten every position of a channel); a masked layer norm becomes an ``nn.LayerNorm`` over the
        active units; the trunk, the after-modules and the head are copied. In eval mode its outputs equal
        this network's outputs (up to float rounding). Parameter and FLOP counts (:func:`count_params`,
        :func:`count_flops`) are taken from it.
        """
        layers: list[nn.Module] = [copy.deepcopy(self.trunk)]
        keep_in = None
        for layer, after in zip(self.masked_layers(), self.after):
            units, keep_out = layer.units, layer.units.active()
            layers.append(_sub_producer(layer.producer, keep_in, keep_out))
            if units.norm is not None:
                layers.append(_sub_layer_norm(units.norm, keep_out))
            layers += [copy.deepcopy(units.activation), copy.deepcopy(after)]
            group = layer.columns_per_unit
            keep_in = (keep_out[:, None] * group + torch.arange(group, device=keep_out.device)).flatten()
        layers.append(_sub_producer(self.head, keep_in, None))
        return nn.Sequential(*layers)


def _sub_layer_norm(norm: nn.Module, rows: Tensor) -> nn.LayerNorm:
    out = skip_init(nn.LayerNorm, rows.numel(), eps=norm.eps, device=rows.device)
    out.weight.data.copy_(norm.weight.detach()[rows])
    out.bias.data.copy_(norm.bias.detach()[rows])
    return out


def _sub_producer(layer: nn.Linear | nn.Conv2d, rows_in: Tensor | None, rows_out: Tensor | None) -> nn.Module:
    weight = layer.weight.detach()
    bias = layer.bias.detach()
    if rows_out is not None:
        weight, bias = weight[rows_out], bias[rows_out]
    if rows_in is not None:
        weight = weight[:, rows_in]
    # no initial draw (torch's RNG is a run's stream of random activations while it trains)
    if isinstance(layer, nn.Conv2d):
        geometry = {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation}
        out = skip_init(
            nn.Conv2d, weight.shape[1], weight.shape[0], layer.kernel_size, **geometry,
            device=weight.device, dtype=weight.dtype,
        )  # fmt: skip
    else:
        out = skip_init(nn.Linear, weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
    out.weight.data.copy_(weight)
    out.bias.data.copy_(bias)
    return out


def init_weights(model: nn.Module, init: str) -> None:
    """Initialise every Linear/Conv2d of ``model`` in place (docs/protocol.md §2).

    ``kaiming``: ``kaiming_uniform_(w, nonlinearity="relu")`` (He, fan-in), biases zero.
    ``torch_default``: PyTorch's own ``reset_parameters``.

    Raises:
        ValueError: for an unknown init name.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            if init == "kaiming":
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
            else:
                module.reset_parameters()


def fresh_parameters(
    model: MaskedNet, gen: torch.Generator, template: MaskedNet | None = None
) -> list[Tensor]:
    """A new draw of ``model``'s init (:func:`init_weights` with ``model.init``; layer norms at weight 1,
    bias 0): one tensor per parameter, in ``model.parameters()`` order, on its device. The draw is seeded
    from ``gen`` (a CPU generator: its draw is a host value, marked :data:`~plasticity_bench.core.seeding.
    HOST_RANGE`) and leaves torch's global RNG as it was. ``template``: a CPU copy of ``model`` to draw
    into (and overwrite), so that a draw every update copies nothing from the device."""
    fresh = template if template is not None else copy.deepcopy(model).cpu()
    with torch.random.fork_rng(devices=[]):
        with record_function(HOST_RANGE):
            torch.manual_seed(int(torch.randint(2**62, (), generator=gen)))
        init_weights(fresh, getattr(model, "init", "torch_default"))
    for units in fresh.units:
        if units.norm is not None:
            nn.init.ones_(units.norm.weight)
            nn.init.zeros_(units.norm.bias)
    return [
        q.detach().to(p.device, copy=True)
        for p, q in zip(model.parameters(), fresh.parameters(), strict=True)
    ]


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    n_classes: int,
    activation: ActivationFactory = nn.ReLU,
    init: str | None = None,
    width_factor: float = 1.0,
    hidden_activation: ActivationFactory | None = None,
    layer_norm: bool = False,
) -> MaskedNet:
    """Build a named network (``mlp``, ``kumar_mlp``, ``convnet``, ``kumar_cnn``) with all units active.

    Args:
        input_shape: one sample's shape, e.g. ``(1, 28, 28)`` or ``(3, 32, 32)``.
        width_factor: multiplies every hidden width (DYNO's reserve capacity, docs/protocol.md §6).
        init: ``kaiming`` or ``torch_default``; ``None`` picks the network's default.
        hidden_activation: the masked layers' activation when it differs from the trunk's (``CReLU``:
            the conv trunk keeps ``activation`` [ours], docs/protocol.md §14).
        layer_norm: layer norm before every masked layer's activation (Kumar23's ``layernorm``).

    Weights are drawn from torch's global RNG: seed it first for reproducibility.

    Raises:
        ValueError: for an unknown network or init, or a conv net on a non-image input.
    """
    if name not in NETWORKS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(NETWORKS)}")
    spec = NETWORKS[name]
    if spec.trunk is not _flatten_trunk and len(input_shape) != 3:
        raise ValueError(f"model {name!r} needs image input (C, H, W), got shape {input_shape}")
    hidden = tuple(max(1, round(d * width_factor)) for d in spec.hidden)
    init = init or spec.default_init
    model = MaskedNet(
        spec.trunk(input_shape[0], activation),
        spec.in_features(input_shape),
        hidden,
        n_classes,
        hidden_activation or activation,
        layer_norm,
        init,
    )
    init_weights(model, init)
    return model


def count_params(model: nn.Module) -> int:
    """Number of parameters (use on :meth:`MaskedNet.export_compact` for the active count)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs for one sample: 2 x multiply-accumulates of every Linear/Conv2d (plus biases)."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        fan_in = module.weight[0].numel()
        total += output[0].numel() * (2 * fan_in + (module.bias is not None))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            device = next(model.parameters()).device
            model(torch.zeros(1, *input_shape, device=device))
        model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    return total
