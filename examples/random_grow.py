"""A user strategy in a few dozen lines: Grow with random (instead of scored) newborn selection.

Run it beside the built-ins on identical streams and seeds:

    plasticity-bench run --strategy grow,examples/random_grow.py:RandomGrow --compactness 0.5 --seeds 3
"""

from __future__ import annotations

import torch

from plasticity_bench.core.host import Host
from plasticity_bench.core.seeding import generator
from plasticity_bench.strategies.grow import GrowPlugin


class RandomGrow(GrowPlugin):
    """Grow (10% seed, same budget and edit points), but newborns are drawn uniformly at random."""

    BATCHABLE = True  # may share a run-batch: it edits one run's units through the masked-unit core

    def edit(self, strategy: Host, cycle: int) -> None:
        for layer in self.layers(strategy):
            inactive = layer.units.inactive()
            k = self.budget(layer, cycle, inactive.numel())
            if k == 0:
                continue
            order = torch.randperm(
                inactive.numel(), generator=generator(self.config.seed, "random-grow", cycle)
            )
            newborn = inactive[order[:k]]
            layer.units.set_units(newborn, True)
            self.log_edit(strategy, cycle, layer, newborn)
