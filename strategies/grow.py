"""Grow: start from a 10% seed mask and switch units on over T cycles (LC26 App. A.6.1; docs/protocol.md
§4.1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from plasticity_bench.masks import MaskedLayer
from plasticity_bench.options import Option
from plasticity_bench.probes import Probe, activation_frequency, as_if_active_gradient, probe
from plasticity_bench.seeding import generator
from strategies.base import StrategyConfig, StructuralPlugin

SEED_FRACTION = 0.1

Selector = Callable[[Probe, int], Tensor]


def activation_selector(p: Probe, layer: int) -> Tensor:
    """Score ``s_j`` = activation frequency as if switched on, ``tau = 0.05`` (docs/protocol.md §4.1)."""
    return activation_frequency(p.z[layer], p.activations[layer])


def gradient_selector(p: Probe, layer: int) -> Tensor:
    """GradMax-style score ``s_j = mean |dL/dz_j|`` as if active (LC26 App. B.4; docs/protocol.md §5.4)."""
    return as_if_active_gradient(p.z[layer], p.grad_h[layer], p.activations[layer])


SELECTORS: dict[str, Selector] = {"activation": activation_selector, "gradient": gradient_selector}
SELECTOR = Option("selector", "str", "activation", "which score picks newborn units", tuple(SELECTORS))


class BirthIntervention(Protocol):
    """Something the Grow plugin calls right after switching ``newborn`` units on (docs/protocol.md §5).

    ``incumbents``: units active before the edit; ``probe``: the birth mini-batch probe.
    """

    def on_birth(
        self, strategy: object, layer: MaskedLayer, newborn: Tensor, incumbents: Tensor, probe: Probe
    ) -> None: ...


def top_units(candidates: Tensor, scores: Tensor, k: int, largest: bool = True) -> Tensor:
    """The ``k`` candidates with the largest (or smallest) score; ties go to the lower unit index.

    ``candidates``: int64 ``(n,)`` unit indices; ``scores``: ``(n,)`` aligned with them.
    """
    order = torch.sort(scores if not largest else -scores, stable=True).indices
    return candidates[order[:k]]


class GrowPlugin(StructuralPlugin):
    """Grow (docs/protocol.md §4.1): seed 10% of each masked layer, then add the top-k scored inactive units.

    Newborn units keep their weights (the initial draw, since inactive units get no gradient) and their
    optimizer state (zero if never active); no rewind. Options: ``selector`` (``activation`` default,
    ``gradient``), ``interventions`` (objects called at birth, docs/protocol.md §5).

    Raises:
        ValueError: for an unknown selector.
    """

    grows = True

    def __init__(
        self,
        config: StrategyConfig,
        selector: str = "activation",
        interventions: tuple[BirthIntervention, ...] = (),
    ) -> None:
        super().__init__(config)
        self.use_selector(selector)
        self.interventions = interventions

    def use_selector(self, selector: str) -> None:
        """Switch the unit selector (``activation`` or ``gradient``, e.g. for ``grow+gradmax``).

        Raises:
            ValueError: for an unknown selector.
        """
        if selector not in SELECTORS:
            raise ValueError(f"unknown grow selector {selector!r}; choose one of {sorted(SELECTORS)}")
        self.selector_name = selector
        self.select = SELECTORS[selector]

    def setup(self, strategy: object) -> None:
        """Switch every unit off but a random seed of 10% (>= 1, <= target) per layer."""
        for layer in self.layers(strategy):
            n_seed = min(self.targets[layer.index], max(1, round(SEED_FRACTION * layer.width)))
            seed = torch.randperm(
                layer.width, generator=generator(self.config.seed, "grow-seed", layer.index)
            )
            layer.units.mask.zero_()
            layer.units.set_units(seed[:n_seed], True)

    def edit(self, strategy: object, cycle: int) -> None:
        x, y = strategy.batches.batch(0)
        p = probe(strategy.model, x, y if self.selector_name == "gradient" else None)
        for layer in self.layers(strategy):
            inactive = layer.units.inactive()
            k = self.budget(layer, cycle, inactive.numel())
            if k == 0:
                continue
            incumbents = layer.units.active()
            newborn = top_units(inactive, self.select(p, layer.index)[inactive], k)
            layer.units.set_units(newborn, True)
            for intervention in self.interventions:
                intervention.on_birth(strategy, layer, newborn, incumbents, p)
            self.log_edit(strategy, cycle, layer, newborn)
