"""Output-layer reset between tasks: Continual ImageNet's ``reset_head`` option (LoP; docs/protocol.md §7)."""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin

from plasticity_bench.core.host import Host
from plasticity_bench.core.models import init_weights
from plasticity_bench.core.seeding import derive_seed


class ResetHeadPlugin(SupervisedPlugin):
    """Re-initialises ``strategy.model.head`` at the start of every task after the first.

    The new weights are a fresh draw of the network's init (``init``: ``kaiming`` or ``torch_default``)
    seeded by ``derive_seed(seed, "head", task)``, under a forked RNG so the global RNG stream is left
    as it was. The optimizer state of the head's parameters is dropped [ours], so the reset head starts
    like a new one.

    Raises:
        ValueError: for an unknown init (at the first reset).
    """

    def __init__(self, init: str, seed: int) -> None:
        super().__init__()
        self.init, self.seed = init, seed
        self.resets = 0

    def before_training_exp(self, strategy: Host, **kwargs: object) -> None:
        """Reset the head (and drop its optimizer state) unless this is the first task."""
        task = strategy.experience.current_experience
        if task == 0:
            return
        head = strategy.model.head
        weight = head.weight
        devices = [weight.device.index or 0] if weight.is_cuda else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(derive_seed(self.seed, "head", task))
            init_weights(head, self.init)
        for param in head.parameters():
            strategy.optimizer.state.pop(param, None)
        self.resets += 1
