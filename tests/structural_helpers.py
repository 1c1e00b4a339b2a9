"""Small networks and a stand-in strategy object for tests of interventions, DYNO and diagnostics."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor, nn

from plasticity_bench.core.models import MaskedNet


def tiny_net(
    hidden: tuple[int, ...] = (6, 5), in_features: int = 8, classes: int = 3, seed: int = 0
) -> MaskedNet:
    """``in_features -> hidden... -> classes`` ReLU MaskedNet with all units active."""
    torch.manual_seed(seed)
    return MaskedNet(nn.Flatten(), in_features, hidden, classes, nn.ReLU)


def set_mask(model: MaskedNet, layer: int, active: list[int]) -> None:
    """Exactly the units ``active`` of masked layer ``layer`` are on."""
    model.units[layer].mask.zero_()
    model.units[layer].mask[active] = 1.0


def fake_strategy(
    model: nn.Module, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer | None = None, task: int = 0
) -> SimpleNamespace:
    """What the plugins read from an ``OnlineStrategy``: model, optimizer, batches, experience, mini-batch."""
    return SimpleNamespace(
        model=model,
        optimizer=optimizer or torch.optim.SGD(model.parameters(), lr=0.1),
        batches=SimpleNamespace(batch=lambda step: (x, y)),
        experience=SimpleNamespace(current_experience=task, task=SimpleNamespace(x=x, y=y)),
        mb_x=x,
        mb_y=y,
    )


def forward_hook_count(model: nn.Module) -> int:
    """Forward (pre-)hooks registered on any module of ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
