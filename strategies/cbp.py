"""Continual backprop: replace a small fraction of mature, low-utility units at every update (Dohare et al.
2024, Nature 632, Methods "Continual backpropagation", Algorithm 1; docs/protocol.md §14)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from plasticity_bench.core.host import Host
from plasticity_bench.core.masks import MaskCache, MaskedActivation, MaskedLayer, masked_layers_of
from plasticity_bench.core.options import Option
from plasticity_bench.measure.importance import Contribution, Importance
from plasticity_bench.measure.probes import Probe, eval_mode
from plasticity_bench.strategies.resets import RESET_STATE, UnitResetPlugin

CBP_RATE = Option(
    "cbp_replacement_rate", "float", 1e-4, "CBP: units replaced per eligible unit per update", minimum=0.0
)
CBP_DECAY = Option("cbp_decay", "float", 0.99, "CBP: decay of the running utility", minimum=0.0)
CBP_MATURITY = Option(
    "cbp_maturity", "int", 100, "CBP: updates a unit lives before it may be replaced", minimum=0
)
CBP_BIAS = Option(
    "cbp_bias_correction", "bool", True,
    "CBP: move a replaced unit's mean contribution into the next layer's bias (LoP's code)",
)  # fmt: skip
CBP_OPTIONS = (CBP_RATE, CBP_DECAY, CBP_MATURITY, CBP_BIAS, RESET_STATE)


class LayerUtility:
    """CBP's per-unit state of one masked layer: running utility ``u``, age (updates since birth or reset),
    the fractional count of replacements owed (``pending``) and the running mean of every feature the next
    layer reads (``mean_feature``, ``(d * group,)``: one per consumer column; for the bias correction)."""

    def __init__(self, width: int, device: torch.device) -> None:
        self.utility = torch.zeros(width, device=device)
        self.age = torch.zeros(width, dtype=torch.long, device=device)
        #: The ages again, on the host: how many units are old enough is known without waiting for the
        #: device (the ages only depend on the masks and the updates, which the host knows).
        self.age_host = np.zeros(width, dtype=np.int64)
        self.pending = 0.0
        self.mean_feature: Tensor | None = None

    def update(
        self,
        instant: Tensor,
        active: Tensor,
        active_host: Tensor,
        decay: float,
        features: Tensor | None = None,
    ) -> None:
        """``u <- decay * u + (1 - decay) * instant``; ages of the ``active`` units (bool ``(d,)``, on the
        device and, ``active_host``, a numpy array on the host) + 1; with ``features`` (the batch mean of
        each consumer column's input), their running mean likewise."""
        self.utility.mul_(decay).add_(instant, alpha=1 - decay)
        self.age += active.long()
        self.age_host += active_host
        if features is not None:
            if self.mean_feature is None:
                self.mean_feature = torch.zeros_like(features)
            self.mean_feature.mul_(decay).add_(features, alpha=1 - decay)

    def correction(self, decay: float) -> Tensor:
        """``1 - decay**age`` per unit (float32; 1 where age is 0): the bias correction of running means."""
        factor = (1 - decay ** self.age.double()).clamp_min(1e-12).float()
        return torch.where(self.age > 0, factor, torch.ones_like(factor))

    def corrected(self, decay: float) -> Tensor:
        """Bias-corrected utility ``u / (1 - decay**age)`` (Adam-style; ``u`` where age is 0)."""
        return self.utility / self.correction(decay)


def replacement_count(state: LayerUtility, eligible: int, rate: float) -> int:
    """Replacements due now: ``pending += rate * eligible``, the whole part is due and leaves ``pending``
    (Dohare et al.: the number to replace accumulates over updates)."""
    state.pending += rate * eligible
    due = int(state.pending)
    state.pending -= due
    return due


class ContinualBackpropPlugin(UnitResetPlugin):
    """Continual backprop (Dohare et al. 2024): after every update, for each masked layer, update every unit's
    running utility with ``score`` (default :class:`~plasticity_bench.measure.importance.Contribution`,
    ``E|h_j| * mean_k |w_kj|`` on the update's batch), then replace the ``replacement_count`` active units
    older than ``maturity`` with the lowest bias-corrected utility: fan-in redrawn from the init
    distribution, fan-out zero, optimizer state zero, utility and age zero.

    With ``bias_correction`` (default, LoP's code): before a unit's fan-out is zeroed, the next layer's bias
    absorbs its mean contribution, ``b_k += sum_c w_kc * mean_c / (1 - decay**age)`` over the unit's
    columns ``c`` (``mean_c``: the running mean of the feature column ``c`` carries), so the network's
    output moves as little as the reset allows.

    Defaults (Dohare et al.'s Permuted MNIST setting): replacement rate 1e-4, decay 0.99, maturity 100.
    Units masked off neither age nor get replaced, so a Grow newborn is protected for ``maturity`` updates.
    """

    name = "cbp"

    def __init__(
        self,
        seed: int,
        rate: float = 1e-4,
        decay: float = 0.99,
        maturity: int = 100,
        score: Importance | None = None,
        bias_correction: bool = True,
    ) -> None:
        super().__init__(seed)
        self.rate, self.decay, self.maturity = rate, decay, maturity
        self.bias_correction = bias_correction
        self.score = score or Contribution()
        self.state: list[LayerUtility] = []
        self.active_host = MaskCache(host_mask)
        self._z: dict[int, Tensor] = {}
        self._hooks: list[RemovableHandle] = []

    def before_training_exp(self, strategy: Host, **kwargs: object) -> None:
        layers = masked_layers_of(strategy.model)
        if not self.state:
            self.state = [LayerUtility(layer.width, layer.units.mask.device) for layer in layers]
        self._hooks = [layer.units.register_forward_hook(self._capture(layer.index)) for layer in layers]

    def _capture(self, index: int) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        def hook(module: MaskedActivation, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            z = inputs[0] if module.norm is None else module.norm(inputs[0], module.mask)
            self._z[index] = z.detach()

        return hook

    def after_training_exp(self, strategy: Host, **kwargs: object) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks, self._z = [], {}

    def after_update(self, strategy: Host, **kwargs: object) -> None:
        self.updates += 1
        layers = masked_layers_of(strategy.model)
        p = Probe(
            [self._z[layer.index] for layer in layers], None, [layer.units.activation for layer in layers]
        )
        for layer, state in zip(layers, self.state):
            self.step_layer(strategy, layer, state, p)

    def step_layer(self, strategy: Host, layer: MaskedLayer, state: LayerUtility, p: Probe) -> None:
        """One update of ``layer``'s utilities, then its due replacements."""
        active, active_host = layer.units.mask > 0.5, self.active_host(layer)  # host copy: per mask change
        features = consumer_features(p, layer.index) if self.bias_correction else None
        state.update(self.score(layer, p), active, active_host, self.decay, features)
        mature = active_host & (state.age_host > self.maturity)
        count = int(mature.sum())  # host arrays: no device sync
        due = min(replacement_count(state, count, self.rate), count)
        if due == 0:
            return
        eligible = torch.from_numpy(np.flatnonzero(mature)).to(layer.units.mask.device)
        utility = state.corrected(self.decay)[eligible]
        order = torch.sort(utility, stable=True).indices[:due]
        units = eligible[order]
        if self.bias_correction:
            correct_consumer_bias(layer, units, state, self.decay)
        self.reset(strategy, layer, units)
        state.utility[units] = 0.0
        state.age[units] = 0
        state.age_host[units.cpu().numpy()] = 0


def consumer_features(p: Probe, index: int) -> Tensor:
    """Batch mean of every input column the next layer reads from masked layer ``index``: ``act(z)`` with
    the activation in eval mode (its expected value for Rand. Smooth-Leaky), flattened as the model feeds
    its consumer, ``(d * group,)`` float32."""
    activation = p.activations[index]
    with eval_mode(activation), torch.no_grad():
        return activation(p.z[index]).flatten(1).mean(0)


def correct_consumer_bias(layer: MaskedLayer, units: Tensor, state: LayerUtility, decay: float) -> None:
    """LoP's bias correction of continual backprop: the consumer's bias gains the replaced ``units``' mean
    contribution, ``sum over their columns c of w[:, c] * mean_c / (1 - decay**age)``, before their fan-out
    is zeroed. No-op for a consumer without bias or before any feature mean exists."""
    bias = layer.consumer.bias
    if bias is None or state.mean_feature is None:
        return
    columns = layer.slices(units).fan_out[0].index
    group = columns.numel() // max(1, units.numel())
    scale = state.correction(decay)[units].repeat_interleave(group)
    means = state.mean_feature[columns] / scale
    with torch.no_grad():
        bias.add_(layer.consumer.weight[:, columns] @ means)


def host_mask(layer: MaskedLayer) -> np.ndarray:
    """``layer``'s active units as a bool array on the host."""
    return (layer.units.mask > 0.5).cpu().numpy()
