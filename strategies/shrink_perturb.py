"""Shrink & Perturb (Ash & Adams 2020, Sec. 4; docs/protocol.md §14): at every task boundary
``theta <- lambda * theta + sigma * noise``."""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn

from plasticity_bench.masks import masked_layers_of
from plasticity_bench.models import fresh_parameters
from plasticity_bench.options import Option
from plasticity_bench.seeding import generator

SHRINK = Option(
    "shrink",
    "float",
    0.4,
    "Shrink & Perturb: lambda, the factor every weight is scaled by",
    minimum=0.0,
    ours=True,
)
PERTURB = Option(
    "perturb", "float", 0.1, "Shrink & Perturb: sigma, the scale of the added noise", minimum=0.0, ours=True
)
NOISES = ("init", "gaussian")
PERTURB_NOISE = Option(
    "perturb_noise",
    "str",
    "init",
    "Shrink & Perturb noise: a fresh draw of the network's init (Ash & Adams), or N(0, 1)",
    NOISES,
)
SHRINK_PERTURB_OPTIONS = (SHRINK, PERTURB, PERTURB_NOISE)


def shrink_perturb(params: list[nn.Parameter], shrink: float, perturb: float, noise: list[Tensor]) -> None:
    """In place ``theta <- shrink * theta + perturb * noise`` for every parameter (``noise`` aligned with
    ``params``, same shapes)."""
    with torch.no_grad():
        for param, eps in zip(params, noise, strict=True):
            param.mul_(shrink).add_(eps, alpha=perturb)


class ShrinkPerturbPlugin(SupervisedPlugin):
    """Before every task but the first: ``theta <- lambda * theta + sigma * eps`` for every parameter (Ash &
    Adams 2020, "shrink and perturb", applied when new data arrives).

    ``noise="init"`` (default): ``eps`` is a fresh draw of the network's own initialisation
    (:func:`~plasticity_bench.models.fresh_parameters`; Kumar23's implementation of this baseline does the
    same); ``gaussian``: ``eps ~ N(0, 1)`` per weight. Units masked off are left exactly as they are (their
    weights are what Grow would switch on). Optimizer state is kept. Defaults ``lambda = 0.4``,
    ``sigma = 0.1`` [ours: not tuned; Ash & Adams and Kumar23 sweep both, and so should a comparison:
    ``--option shrink=... --option perturb=...``].

    Args:
        seed: run seed; task ``i``'s noise comes from ``generator(seed, "shrink-perturb", i)``.

    Raises:
        ValueError: for an unknown noise kind.
    """

    def __init__(self, shrink: float, perturb: float, noise: str, seed: int) -> None:
        super().__init__()
        if noise not in NOISES:
            raise ValueError(f"unknown perturb_noise {noise!r}; choose one of {NOISES}")
        self.shrink, self.perturb, self.noise, self.seed = shrink, perturb, noise, seed

    def draw_noise(self, model: nn.Module, task: int) -> list[Tensor]:
        """``eps`` for task ``task``: one tensor per parameter of ``model``, on its device."""
        gen = generator(self.seed, "shrink-perturb", task)
        if self.noise == "init":
            return fresh_parameters(model, gen)
        return [torch.randn(p.shape, generator=gen).to(p.device) for p in model.parameters()]

    def before_training_exp(self, strategy: object, **kwargs: object) -> None:
        task = strategy.experience.current_experience
        if task == 0:
            return
        model = strategy.model
        layers = masked_layers_of(model)
        kept = [(piece, piece.read()) for layer in layers for piece in layer.slices(layer.units.inactive())]
        shrink_perturb(list(model.parameters()), self.shrink, self.perturb, self.draw_noise(model, task))
        for piece, value in kept:
            piece.write(value)
