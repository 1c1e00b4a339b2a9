"""Grow: start from a 10% seed mask and switch units on over T cycles (LC26 App. A.6.1; docs/protocol.md
§4.1)."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from plasticity_bench.core.host import Host
from plasticity_bench.core.masks import MaskedLayer
from plasticity_bench.core.options import Option
from plasticity_bench.core.seeding import generator
from plasticity_bench.measure.importance import IMPORTANCES, Importance, importance
from plasticity_bench.measure.probes import Probe, probe, probe_batch
from plasticity_bench.strategies.base import StrategyConfig, StructuralPlugin

SEED_FRACTION = 0.1

SELECTOR = Option(
    "selector", "str", "activation", "which unit score picks newborn units (measure.importance)",
    tuple(IMPORTANCES),
)  # fmt: skip


class BirthIntervention(Protocol):
    """Something the Grow plugin calls right after switching ``newborn`` units on (docs/protocol.md §5).

    ``incumbents``: units active before the edit; ``probe``: the birth mini-batch probe.
    """

    def on_birth(
        self, strategy: Host, layer: MaskedLayer, newborn: Tensor, incumbents: Tensor, probe: Probe
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
    optimizer state (zero if never active); no rewind. Options: ``selector``, the unit score that ranks
    the inactive units (an :class:`~plasticity_bench.measure.importance.Importance` or a built-in's name:
    ``activation`` default, ``gradient`` for GradMax), ``interventions`` (objects called at birth,
    docs/protocol.md §5).

    Raises:
        ValueError: for an unknown selector name.
    """

    grows = True

    def __init__(
        self,
        config: StrategyConfig,
        selector: str | Importance = "activation",
        interventions: tuple[BirthIntervention, ...] = (),
    ) -> None:
        super().__init__(config)
        self.use_selector(selector)
        self.interventions = interventions

    def use_selector(self, selector: str | Importance) -> None:
        """Switch the unit score (e.g. ``gradient`` for ``grow+gradmax``, or a user's ``Importance``).

        Raises:
            ValueError: for an unknown built-in name.
        """
        self.selector = importance(selector, "grow selector") if isinstance(selector, str) else selector

    def setup(self, strategy: Host) -> None:
        """Switch every unit off but a random seed of 10% (>= 1, <= target) per layer."""
        for layer in self.layers(strategy):
            n_seed = min(self.targets[layer.index], max(1, round(SEED_FRACTION * layer.width)))
            seed = torch.randperm(
                layer.width, generator=generator(self.config.seed, "grow-seed", layer.index)
            )
            layer.units.clear()
            layer.units.set_units(seed[:n_seed], True)

    def edit(self, strategy: Host, cycle: int) -> None:
        x, y = probe_batch(strategy)
        p = probe(strategy.model, x, y if self.selector.needs_gradient else None)
        for layer in self.layers(strategy):
            inactive = layer.units.inactive()
            k = self.budget(layer, cycle, inactive.numel())
            if k == 0:
                continue
            incumbents = layer.units.active()
            newborn = top_units(inactive, self.selector(layer, p)[inactive], k)
            layer.units.set_units(newborn, True)
            for intervention in self.interventions:
                intervention.on_birth(strategy, layer, newborn, incumbents, p)
            self.log_edit(strategy, cycle, layer, newborn)
