"""Unit masks and the parameter slices that belong to units.

This is the masked-unit core that every structural operator (Grow, Prune, DYNO, the integration
interventions) acts through. docs/protocol.md §1: a *masked layer* computes ``h = act(z) * m`` with a binary
unit mask ``m`` kept as a registered buffer. A unit with ``m_j = 0`` contributes nothing forward, and
its fan-in row, bias entry and fan-out column receive exactly zero gradient (multiplication by 0.0).

The one abstraction the operators reuse is :class:`UnitSlices`: for a masked layer and a set of unit
indices, the slices of the producer's weight rows and bias entries (fan-in) and of the consumer's weight
columns (fan-out). The same slices index a parameter *or* any tensor of the parameter's shape (an Adam
``exp_avg`` buffer, a weight snapshot), which is what makes optimizer-state surgery exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

Activation = Callable[[Tensor], Tensor]


class MaskedLayerNorm(nn.Module):
    """Layer normalisation over the *active* units of a masked layer (Ba et al. 2016; the ``layernorm`` option
    of Kumar23 Sec. 5, applied to the pre-activations as in their code).

    ``z_hat = (z - mu) / sqrt(var + eps) * weight + bias`` with ``mu`` and ``var`` taken over the units whose
    mask is 1 only, so an inactive unit changes nothing forward (docs/protocol.md §1). With every unit
    active it equals ``nn.LayerNorm(n_units)``. ``weight`` / ``bias``: float32 ``(n_units,)``, part of each
    unit's fan-in (:meth:`MaskedLayer.slices`). Input ``(B, n_units)``.
    """

    def __init__(self, n_units: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_units))
        self.bias = nn.Parameter(torch.zeros(n_units))

    def forward(self, z: Tensor, mask: Tensor) -> Tensor:
        m = mask.view(1, -1)
        n = m.sum().clamp_min(1.0)
        mu = (z * m).sum(1, keepdim=True) / n
        var = ((z - mu) * m).square().sum(1, keepdim=True) / n
        return (z - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias


class MaskedActivation(nn.Module):
    """``h = act(norm(z)) * m`` for one masked layer (docs/protocol.md §1).

    Args:
        n_units: number of units ``d_l`` (Linear out_features or Conv2d out_channels).
        activation: elementwise module (``nn.ReLU``, ``RandSmoothLeaky``) or one that gives
            ``expansion`` features per unit (``CReLU``: 2, interleaved).
        layer_norm: put a :class:`MaskedLayerNorm` before the activation (Linear layers only).

    Buffers:
        mask: float32 tensor of shape ``(n_units,)`` with values in {0, 1}; saved in the state dict.

    Input ``z`` has shape ``(B, n_units)`` or ``(B, n_units, H, W)``; the output has ``n_units * expansion``
    features in dimension 1.
    """

    def __init__(self, n_units: int, activation: nn.Module, layer_norm: bool = False) -> None:
        super().__init__()
        self.activation = activation
        self.norm = MaskedLayerNorm(n_units) if layer_norm else None
        self.expansion: int = getattr(activation, "expansion", 1)
        self.register_buffer("mask", torch.ones(n_units))
        #: Counts the mask's changes (:meth:`set_units`, :meth:`clear`, :meth:`assign`): who caches
        #: something of the active network (its FLOPs) compares it instead of reading the mask (no sync).
        self.version = 0

    @property
    def n_units(self) -> int:
        return self.mask.numel()

    def forward(self, z: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (z.dim() - 2)
        if self.norm is not None:
            z = self.norm(z, self.mask)
        mask = self.mask if self.expansion == 1 else self.mask.repeat_interleave(self.expansion)
        return self.activation(z) * mask.view(shape)

    def active(self) -> Tensor:
        """Indices (int64, shape ``(n_active,)``) of the active units, ascending."""
        return torch.nonzero(self.mask > 0.5).flatten()

    def inactive(self) -> Tensor:
        """Indices (int64, shape ``(n_inactive,)``) of the inactive units, ascending."""
        return torch.nonzero(self.mask < 0.5).flatten()

    def n_active(self) -> int:
        return int((self.mask > 0.5).sum())

    def set_units(self, units: Tensor, on: bool) -> None:
        """Switch the given units on (``on=True``) or off. ``units``: int64 indices."""
        self.mask[units.to(self.mask.device)] = 1.0 if on else 0.0
        self.version += 1

    def clear(self) -> None:
        """Switch every unit off."""
        self.mask.zero_()
        self.version += 1

    def assign(self, mask: Tensor) -> None:
        """Set the mask to ``mask`` (float32 ``(n_units,)`` of 0 and 1)."""
        self.mask.copy_(mask)
        self.version += 1


@dataclass(frozen=True)
class ParamSlice:
    """The entries of one parameter that belong to a set of units: ``param.index_select(dim, index)``.

    ``index`` is an int64 tensor on the parameter's device. Reading/writing works on the parameter
    itself or on any tensor of the same shape (optimizer buffers, initial-weight snapshots).
    """

    param: nn.Parameter
    dim: int
    index: Tensor

    def read(self, tensor: Tensor | None = None) -> Tensor:
        """Copy of the sliced entries of ``tensor`` (default: the parameter's data)."""
        source = self.param.data if tensor is None else tensor
        return source.index_select(self.dim, self.index)

    def write(self, value: Tensor, tensor: Tensor | None = None) -> None:
        """In-place ``tensor[slice] = value`` (default target: the parameter's data)."""
        target = self.param.data if tensor is None else tensor
        target.index_copy_(self.dim, self.index, value.to(target.dtype))

    def fill(self, value: float, tensor: Tensor | None = None) -> None:
        """In-place ``tensor[slice] = value``."""
        target = self.param.data if tensor is None else tensor
        target.index_fill_(self.dim, self.index, value)


@dataclass(frozen=True)
class UnitSlices:
    """Fan-in and fan-out parameter slices of a set of units of one masked layer.

    Attributes:
        fan_in: weight rows (``dim=0``) and bias entries of the producing layer, then the unit's layer-norm
            weight and bias entries when the layer has a :class:`MaskedLayerNorm`.
        fan_out: weight columns (``dim=1``) of the consuming layer. When the consumer is a Linear layer
            reading a flattened conv output, each unit owns ``H*W`` consecutive columns; with CReLU, its
            2 features' columns.
    """

    fan_in: tuple[ParamSlice, ...]
    fan_out: tuple[ParamSlice, ...]

    def __iter__(self) -> Iterator[ParamSlice]:
        yield from self.fan_in
        yield from self.fan_out


@dataclass(frozen=True)
class MaskedLayer:
    """One masked layer: ``producer`` (Linear/Conv2d) -> ``units`` (activation + mask) -> ``consumer``.

    ``index`` is the position among the model's masked layers (0 = closest to the input).
    """

    index: int
    producer: nn.Linear | nn.Conv2d
    units: MaskedActivation
    consumer: nn.Linear | nn.Conv2d

    @property
    def width(self) -> int:
        return self.units.n_units

    @property
    def columns_per_unit(self) -> int:
        """Consumer weight columns (dim 1) each unit owns: 1 (a Linear or conv consumer), its
        ``expansion`` features (CReLU), or ``H * W`` positions (a Linear reading a flattened conv output)."""
        return self.consumer.weight.shape[1] // self.width

    @property
    def fan_in_size(self) -> int:
        """Number of fan-in weights of one unit (Linear: in_features; Conv: C_in*kH*kW)."""
        return self.producer.weight[0].numel()

    def slices(self, units: Tensor) -> UnitSlices:
        """Parameter slices of ``units`` (int64 indices into this layer's units).

        Raises:
            IndexError: if an index is outside ``[0, width)``.
        """
        units = units.to(self.producer.weight.device, torch.long).flatten()
        if units.numel() and (units.min() < 0 or units.max() >= self.width):
            raise IndexError(f"unit index out of range [0, {self.width}) in masked layer {self.index}")
        fan_in = [ParamSlice(self.producer.weight, 0, units)]
        if self.producer.bias is not None:
            fan_in.append(ParamSlice(self.producer.bias, 0, units))
        if self.units.norm is not None:
            fan_in += [
                ParamSlice(self.units.norm.weight, 0, units),
                ParamSlice(self.units.norm.bias, 0, units),
            ]
        group = self.columns_per_unit
        columns = (units[:, None] * group + torch.arange(group, device=units.device)).flatten()
        return UnitSlices(tuple(fan_in), (ParamSlice(self.consumer.weight, 1, columns),))

    def parameters(self) -> tuple[nn.Parameter, ...]:
        """Producer and consumer parameters (what an IMP rewind of this layer touches)."""
        return tuple(self.producer.parameters()) + tuple(self.consumer.parameters())


def apply_producer(producer: nn.Linear | nn.Conv2d, x: Tensor, weight: Tensor | None = None) -> Tensor:
    """``producer``'s function on ``x`` with its own weights and bias, or with ``weight`` (``(k, *fan_in
    shape)``) and no bias; functional, so the producer's forward hooks do not fire. Linear: ``(n, in) ->
    (n, k)``; Conv2d: ``(n, C, H, W) -> (n, k, H', W')`` with the producer's stride, padding and dilation.

    Raises:
        TypeError: for a producer that is neither.
    """
    bias = producer.bias if weight is None else None
    weight = producer.weight if weight is None else weight
    if isinstance(producer, nn.Conv2d):
        geometry = (producer.stride, producer.padding, producer.dilation, producer.groups)
        return nn.functional.conv2d(x, weight, bias, *geometry)
    if isinstance(producer, nn.Linear):
        return nn.functional.linear(x, weight, bias)
    raise TypeError(f"masked layers are produced by Linear or Conv2d layers, not {type(producer).__name__}")


def zero_optimizer_state(optimizer: torch.optim.Optimizer, slices: UnitSlices) -> None:
    """Set every per-element optimizer buffer entry of ``slices`` to zero.

    Acts on buffers shaped like their parameter (Adam ``exp_avg``/``exp_avg_sq``, SGD
    ``momentum_buffer``); scalar entries such as Adam's ``step`` are left as they are.
    """
    for piece in slices:
        for buffer in _param_buffers(optimizer, piece.param):
            piece.fill(0.0, buffer)


def fan_in_bounds(init: str, fan_in: int) -> tuple[float, float]:
    """Bounds ``(weight, bias)`` of the uniform draw a fresh unit gets under the network's init
    (docs/protocol.md §2): ``kaiming`` -> ``(sqrt(6 / fan_in), 0)`` (He uniform, zero bias);
    ``torch_default`` -> ``(1 / sqrt(fan_in), 1 / sqrt(fan_in))`` (what ``nn.Linear.reset_parameters`` draws).

    Raises:
        ValueError: for an unknown init name.
    """
    if init == "kaiming":
        return math.sqrt(6.0 / fan_in), 0.0
    if init == "torch_default":
        return 1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in)
    raise ValueError(f"unknown init {init!r}; choose 'kaiming' or 'torch_default'")


def reinitialize_units(
    layer: MaskedLayer,
    units: Tensor,
    optimizer: torch.optim.Optimizer | None,
    init: str,
    generator: torch.Generator,
) -> None:
    """Give ``units`` of ``layer`` a fresh start, as ReDo (Sokar et al. 2023, Sec. 4) and continual backprop
    (Dohare et al. 2024, Methods) do: fan-in weights and bias redrawn from the init distribution
    (:func:`fan_in_bounds`), layer-norm weight 1 and bias 0, fan-out columns zero (the network's function is
    unchanged at the moment of the reset), and every per-element optimizer buffer entry of those slices zero
    (:func:`zero_optimizer_state`). ``units``: int64 indices; draws come from ``generator`` (CPU).

    Raises:
        IndexError: for a unit index outside the layer. ValueError: for an unknown init name.
    """
    if units.numel() == 0:
        return
    slices = layer.slices(units)
    weight_bound, bias_bound = fan_in_bounds(init, layer.fan_in_size)
    for piece in slices.fan_in:
        shape = list(piece.param.shape)
        shape[piece.dim] = piece.index.numel()
        if piece.param is layer.producer.weight:
            value = torch.empty(shape).uniform_(-weight_bound, weight_bound, generator=generator)
        elif piece.param is layer.producer.bias:
            value = torch.empty(shape).uniform_(-bias_bound, bias_bound, generator=generator)
        else:  # layer norm: weight 1, bias 0
            value = torch.full(shape, 1.0 if piece.param is layer.units.norm.weight else 0.0)
        piece.write(value.to(piece.param.device))
    for piece in slices.fan_out:
        piece.fill(0.0)
    if optimizer is not None:
        zero_optimizer_state(optimizer, slices)


def copy_optimizer_state(optimizer: torch.optim.Optimizer, source: UnitSlices, target: UnitSlices) -> None:
    """Copy per-element optimizer buffers of ``source`` units into ``target`` units (same order).

    Implements Moment Transplant (LC26 Sec. 5, docs/protocol.md §5.2). Parameter-level step counters are left
    as they are. ``source`` and ``target`` must come from the same masked layer with the same number
    of units.
    """
    for src, dst in zip(source, target, strict=True):
        for buffer in _param_buffers(optimizer, src.param):
            dst.write(src.read(buffer), buffer)


def reset_optimizer_state(optimizer: torch.optim.Optimizer, params: tuple[nn.Parameter, ...]) -> None:
    """Zero all optimizer state of ``params`` (buffers and step counters), as for fresh parameters.

    Used by the IMP rewind of Prune (docs/protocol.md §4.2, [ours: state reset]).
    """
    for param in params:
        for value in optimizer.state.get(param, {}).values():
            if isinstance(value, Tensor):
                value.zero_()


def _param_buffers(optimizer: torch.optim.Optimizer, param: nn.Parameter) -> list[Tensor]:
    state = optimizer.state.get(param, {})
    return [v for v in state.values() if isinstance(v, Tensor) and v.shape == param.shape]


def masked_layers_of(model: nn.Module) -> list[MaskedLayer]:
    """The masked layers of a :class:`~plasticity_bench.core.models.MaskedNet` (input side first).

    Raises:
        TypeError: if ``model`` does not expose ``masked_layers()``.
    """
    if not hasattr(model, "masked_layers"):
        raise TypeError(f"{type(model).__name__} has no masked layers; use a plasticity_bench model")
    return model.masked_layers()


def unit_indices(masks: list[Tensor]) -> list[list[int]]:
    """Active unit indices per masked layer, ascending (how a record stores the final masks,
    docs/protocol.md §1): ``masks`` are float ``(d_l,)`` unit masks as ``MaskedNet.masks()`` returns them."""
    return [torch.nonzero(mask, as_tuple=True)[0].tolist() for mask in masks]


def masks_from_indices(indices: list[list[int]], widths: list[int]) -> list[Tensor]:
    """The unit masks (float32 ``(d_l,)``) whose active units are ``indices`` (inverse of
    :func:`unit_indices`).

    Raises:
        ValueError: for a count of layers other than ``len(widths)`` or an index outside a layer.
    """
    if len(indices) != len(widths):
        raise ValueError(f"{len(indices)} layers of unit indices for {len(widths)} masked layers")
    masks = []
    for layer, (active, width) in enumerate(zip(indices, widths)):
        if any(not 0 <= u < width for u in active):
            raise ValueError(f"layer {layer}: unit index outside 0..{width - 1}")
        mask = torch.zeros(width)
        mask[list(active)] = 1.0
        masks.append(mask)
    return masks


class MaskCache:
    """Something computed from a masked layer's mask (its inactive units' slices, the mask on the host),
    kept per layer until the mask changes (:attr:`MaskedActivation.version`): a per-update plugin reads it
    without a device sync. ``compute`` must be a module-level function (checkpoints pickle the cache)."""

    def __init__(self, compute: Callable[[MaskedLayer], Any]) -> None:
        self.compute = compute
        self.kept: dict[int, tuple[int, Any]] = {}

    def __call__(self, layer: MaskedLayer) -> Any:
        version, value = self.kept.get(layer.index, (-1, None))
        if version != layer.units.version:
            value = self.compute(layer)
            self.kept[layer.index] = (layer.units.version, value)
        return value


def inactive_slices(layer: MaskedLayer) -> list[ParamSlice]:
    """The parameter slices of ``layer``'s inactive units (none when every unit is on); for a
    :class:`MaskCache`."""
    inactive = layer.units.inactive()
    return list(layer.slices(inactive)) if inactive.numel() else []
