"""Continual backprop: replace a small fraction of mature, low-utility units at every update (Dohare et al.
2024, Nature 632, Methods "Continual backpropagation", Algorithm 1; docs/protocol.md §14)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from plasticity_bench.importance import Contribution, Importance
from plasticity_bench.masks import MaskedActivation, MaskedLayer, masked_layers_of
from plasticity_bench.options import Option
from plasticity_bench.probes import Probe
from strategies.resets import UnitResetPlugin

CBP_RATE = Option(
    "cbp_replacement_rate", "float", 1e-4, "CBP: units replaced per eligible unit per update", minimum=0.0
)
CBP_DECAY = Option("cbp_decay", "float", 0.99, "CBP: decay of the running utility", minimum=0.0)
CBP_MATURITY = Option(
    "cbp_maturity", "int", 100, "CBP: updates a unit lives before it may be replaced", minimum=0
)
CBP_OPTIONS = (CBP_RATE, CBP_DECAY, CBP_MATURITY)


class LayerUtility:
    """CBP's per-unit state of one masked layer: running utility ``u``, age (updates since birth or reset)
    and the fractional count of replacements owed (``pending``)."""

    def __init__(self, width: int, device: torch.device) -> None:
        self.utility = torch.zeros(width, device=device)
        self.age = torch.zeros(width, dtype=torch.long, device=device)
        self.pending = 0.0

    def update(self, instant: Tensor, active: Tensor, decay: float) -> None:
        """``u <- decay * u + (1 - decay) * instant``; ages of the ``active`` units (bool ``(d,)``) + 1."""
        self.utility.mul_(decay).add_(instant, alpha=1 - decay)
        self.age += active.long()

    def corrected(self, decay: float) -> Tensor:
        """Bias-corrected utility ``u / (1 - decay**age)`` (Adam-style; ``u`` where age is 0)."""
        correction = 1 - decay ** self.age.double()
        return torch.where(self.age > 0, self.utility / correction.clamp_min(1e-12).float(), self.utility)


def replacement_count(state: LayerUtility, eligible: int, rate: float) -> int:
    """Replacements due now: ``pending += rate * eligible``, the whole part is due and leaves ``pending``
    (Dohare et al.: the number to replace accumulates over updates)."""
    state.pending += rate * eligible
    due = int(state.pending)
    state.pending -= due
    return due


class ContinualBackpropPlugin(UnitResetPlugin):
    """Continual backprop (Dohare et al. 2024): after every update, for each masked layer, update every unit's
    running utility with ``score`` (default :class:`~plasticity_bench.importance.Contribution`,
    ``E|h_j| * mean_k |w_kj|`` on the update's batch), then replace the ``replacement_count`` active units
    older than ``maturity`` with the lowest bias-corrected utility: fan-in redrawn from the init
    distribution, fan-out zero, optimizer state zero, utility and age zero.

    Defaults (Dohare et al.'s Permuted MNIST setting): replacement rate 1e-4, decay 0.99, maturity 100.
    Units masked off neither age nor get replaced, so a Grow newborn is protected for ``maturity`` updates.
    [ours: no next-layer bias correction; LoP's code also shifts the consumer's bias by the reset unit's
    mean contribution.]
    """

    name = "cbp"

    def __init__(
        self,
        seed: int,
        rate: float = 1e-4,
        decay: float = 0.99,
        maturity: int = 100,
        score: Importance | None = None,
    ) -> None:
        super().__init__(seed)
        self.rate, self.decay, self.maturity = rate, decay, maturity
        self.score = score or Contribution()
        self.state: list[LayerUtility] = []
        self._z: dict[int, Tensor] = {}
        self._hooks: list[RemovableHandle] = []

    def before_training_exp(self, strategy: object, **kwargs: object) -> None:
        layers = masked_layers_of(strategy.model)
        if not self.state:
            self.state = [LayerUtility(layer.width, layer.units.mask.device) for layer in layers]
        self._hooks = [layer.units.register_forward_hook(self._capture(layer.index)) for layer in layers]

    def _capture(self, index: int) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        def hook(module: MaskedActivation, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            z = inputs[0] if module.norm is None else module.norm(inputs[0], module.mask)
            self._z[index] = z.detach()

        return hook

    def after_training_exp(self, strategy: object, **kwargs: object) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks, self._z = [], {}

    def after_update(self, strategy: object, **kwargs: object) -> None:
        self.updates += 1
        layers = masked_layers_of(strategy.model)
        p = Probe(
            [self._z[layer.index] for layer in layers], None, [layer.units.activation for layer in layers]
        )
        for layer, state in zip(layers, self.state):
            self.step_layer(strategy, layer, state, p)

    def step_layer(self, strategy: object, layer: MaskedLayer, state: LayerUtility, p: Probe) -> None:
        """One update of ``layer``'s utilities, then its due replacements."""
        active = layer.units.mask > 0.5
        state.update(self.score(layer, p), active, self.decay)
        eligible = torch.nonzero(active & (state.age > self.maturity)).flatten()
        due = min(replacement_count(state, eligible.numel(), self.rate), eligible.numel())
        if due == 0:
            return
        utility = state.corrected(self.decay)[eligible]
        order = torch.sort(utility, stable=True).indices[:due]
        units = eligible[order]
        self.reset(strategy, layer, units)
        state.utility[units] = 0.0
        state.age[units] = 0
