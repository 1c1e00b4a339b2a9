"""L2 Init: L2 regularisation toward the initial parameters (Kumar, Marklund & Van Roy 2023, Eq. 2;
docs/protocol.md §14)."""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn

from plasticity_bench.core.host import Host
from plasticity_bench.core.masks import MaskCache, inactive_slices, masked_layers_of
from plasticity_bench.core.options import Option

L2_INIT_WEIGHT = Option(
    "l2_init_weight",
    "float",
    1e-3,
    "L2 Init strength lambda: loss + lambda/2 * ||theta - theta_0||^2 (Kumar et al. 2023)",
    minimum=0.0,
    ours=True,
)


def regularised_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters L2 Init pulls back: every trainable one but the layer norms' (as Kumar23's code)."""
    norms = {
        id(p) for m in model.modules() if getattr(m, "norm", None) is not None for p in m.norm.parameters()
    }
    return [p for p in model.parameters() if p.requires_grad and id(p) not in norms]


class L2InitPlugin(SupervisedPlugin):
    """Adds ``lambda/2 * sum ||theta - theta_0||^2`` to the loss (Kumar et al. 2023, Eq. 2), where ``theta_0``
    are the parameters before the first update.

    The term is added to the gradients after the backward pass, ``grad += lambda * (theta - theta_0)``, which
    is its exact gradient and costs no second graph. Units that are masked off keep exactly zero gradient
    (docs/protocol.md §1): their fan-in and fan-out slices get no regularisation gradient either.

    Args:
        weight: ``lambda`` >= 0 (default 1e-3 [ours]: the middle of Kumar23's sweep {1e-2 ... 1e-5}; the paper
            tunes it per benchmark).
    """

    def __init__(self, weight: float = L2_INIT_WEIGHT.default) -> None:
        super().__init__()
        self.weight = weight
        self.params: list[nn.Parameter] = []
        self.initial: list[Tensor] = []
        #: The slices of each layer's inactive units, found again only after a mask change (no ``nonzero``
        #: per update).
        self.inactive_slices = MaskCache(inactive_slices)

    def before_training(self, strategy: Host, **kwargs: object) -> None:
        if not self.params:
            self.params = regularised_parameters(strategy.model)
            self.initial = [p.detach().clone() for p in self.params]

    def after_backward(self, strategy: Host, **kwargs: object) -> None:
        with torch.no_grad():
            for param, initial in zip(self.params, self.initial):
                if param.grad is None:
                    param.grad = torch.zeros_like(param)
                param.grad.add_(param - initial, alpha=self.weight)
            for layer in masked_layers_of(strategy.model):
                for piece in self.inactive_slices(layer):
                    piece.fill(0.0, piece.param.grad)
