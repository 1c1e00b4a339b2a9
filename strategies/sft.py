"""Surgical fine-tuning with Auto-RGN (Lee et al. 2023, "Surgical Fine-Tuning Improves Adaptation to
Distribution Shifts", ICLR; the layer-wise learning rates the DYNO paper combines with DYNO, its App. A;
docs/protocol.md §17).

Every update, each parameter group ``k`` gets its relative gradient norm ``RGN_k = ||g_k|| / ||theta_k||``,
and its learning rate is the run's times ``RGN_k / max_j RGN_j`` (the group with the largest relative
gradient learns at the full rate, the others slower). Groups: each parameter tensor (``tensor``, a weight
and its bias apart, as Lee et al.'s code names its parameters) or each layer's parameters together
(``layer``), the option ``sft_group``.

The scale is applied to the optimizer's update, ``theta <- theta_old + s_k (theta_new - theta_old)``, which
is exactly the update at learning rate ``s_k * lr`` for Adam and SGD (weight decay included) and leaves
the optimizer's state as it is; every quantity stays on the device (no sync).
"""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn

from plasticity_bench.core.host import Host
from plasticity_bench.core.options import Option

SFT_GROUPS = ("tensor", "layer")
SFT_GROUP = Option(
    "sft_group", "str", "tensor",
    "SFT: a relative gradient norm per parameter tensor, or per layer (its weight and bias together)",
    SFT_GROUPS, ours=True,
)  # fmt: skip
TINY = 1e-12  # guards the ratios of all-zero parameters and gradients


def parameter_groups(model: nn.Module, group: str) -> list[list[nn.Parameter]]:
    """The trainable parameters of ``model`` in Auto-RGN groups: one per tensor, or one per module that
    holds parameters itself (``tensor`` / ``layer``).

    Raises:
        ValueError: for another ``group``.
    """
    if group not in SFT_GROUPS:
        raise ValueError(f"unknown sft_group {group!r}; choose one of {', '.join(SFT_GROUPS)}")
    if group == "tensor":
        return [[p] for p in model.parameters() if p.requires_grad]
    groups = [[p for p in m.parameters(recurse=False) if p.requires_grad] for m in model.modules()]
    return [g for g in groups if g]


def rgn_scales(groups: list[list[nn.Parameter]]) -> Tensor:
    """``RGN_k / max_j RGN_j`` per group, float32 ``(n_groups,)`` on the parameters' device, with
    ``RGN_k = sqrt(sum ||g||^2) / sqrt(sum ||theta||^2)`` over the group (a missing gradient counts as 0)."""
    ratios = []
    for params in groups:
        grads = [p.grad.norm() ** 2 for p in params if p.grad is not None]
        grad = torch.stack(grads).sum().sqrt() if grads else params[0].new_zeros(())
        weight = torch.stack([p.detach().norm() ** 2 for p in params]).sum().sqrt()
        ratios.append(grad / weight.clamp_min(TINY))
    rgn = torch.stack(ratios)
    return rgn / rgn.max().clamp_min(TINY)


class SurgicalFineTuningPlugin(SupervisedPlugin):
    """Auto-RGN layer-wise learning rates (see the module doc). Works with any strategy's plugins: it
    acts on the update only, after every other ``before_update``.

    Attributes:
        scales: the last update's scale per group (float32 tensor, or ``None`` before the first).
    """

    def __init__(self, group: str = SFT_GROUP.default) -> None:
        super().__init__()
        if group not in SFT_GROUPS:
            raise ValueError(f"unknown sft_group {group!r}; choose one of {', '.join(SFT_GROUPS)}")
        self.group = group
        self.scales: Tensor | None = None
        self._before: list[Tensor] = []

    def before_update(self, strategy: Host, **kwargs: object) -> None:
        """Take the scales from this step's gradients; keep the parameters before the step."""
        with torch.no_grad():
            groups = parameter_groups(strategy.model, self.group)
            self.scales = rgn_scales(groups)
            self._before = [p.detach().clone() for params in groups for p in params]

    def after_update(self, strategy: Host, **kwargs: object) -> None:
        """Scale each group's update by its ``RGN_k / max RGN``."""
        with torch.no_grad():
            groups = parameter_groups(strategy.model, self.group)
            before = iter(self._before)
            for scale, params in zip(self.scales, groups):
                for p in params:  # theta_old + s (theta_new - theta_old), in the kept copy: no new tensor
                    p.copy_(next(before).lerp_(p, scale.to(p.dtype)))
        self._before = []
