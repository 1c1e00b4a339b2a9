"""Shrink & Perturb in its two published forms (docs/protocol.md §14), option ``sp_form``:

- ``per_step`` (default; Kumar23's plasticity benchmarks, ``ShrinkAndPerturbAgent`` of their code): after
  every update ``theta <- (1 - s) theta + p theta_fresh``, ``s`` a decrement and ``p`` a scale, both in
  Kumar23's grid {1e-2, 1e-3, 1e-4, 1e-5} (``step_shrink``, ``step_perturb``; 1e-4 each [ours: the middle
  of the grid, their Continual ImageNet choice]).
- ``per_task`` (Ash & Adams 2020, Sec. 4: when new data arrives): before every task but the first
  ``theta <- lambda theta + sigma eps``, ``lambda`` a multiplier (``shrink``), ``sigma`` a scale
  (``perturb``).
"""

from __future__ import annotations

import copy

import torch
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn

from plasticity_bench.core.host import Host
from plasticity_bench.core.masks import MaskCache, inactive_slices, masked_layers_of
from plasticity_bench.core.models import fresh_parameters
from plasticity_bench.core.options import Option
from plasticity_bench.core.seeding import generator

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
SP_FORMS = ("per_step", "per_task")
SP_FORM = Option(
    "sp_form", "str", "per_step",
    "Shrink & Perturb after every update (Kumar23: step_*), or before each task (Ash & Adams)",
    SP_FORMS,
)  # fmt: skip
STEP_SHRINK = Option(
    "step_shrink", "float", 1e-4, "Shrink & Perturb per step: s, theta <- (1 - s) theta + p theta_fresh",
    minimum=0.0, ours=True,
)  # fmt: skip
STEP_PERTURB = Option(
    "step_perturb", "float", 1e-4, "Shrink & Perturb per step: p, the scale of the fresh init draw",
    minimum=0.0, ours=True,
)  # fmt: skip
SHRINK_PERTURB_OPTIONS = (SP_FORM, STEP_SHRINK, STEP_PERTURB, SHRINK, PERTURB, PERTURB_NOISE)


def shrink_perturb(params: list[nn.Parameter], shrink: float, perturb: float, noise: list[Tensor]) -> None:
    """In place ``theta <- shrink * theta + perturb * noise`` for every parameter (``noise`` aligned with
    ``params``, same shapes)."""
    with torch.no_grad():
        for param, eps in zip(params, noise, strict=True):
            param.mul_(shrink).add_(eps, alpha=perturb)


class ShrinkPerturbPlugin(SupervisedPlugin):
    """Shrink & Perturb (see the module docstring): ``theta <- shrink * theta + perturb * eps`` for every
    parameter, after every update (``per_step``: ``shrink = 1 - s``) or before every task but the first
    (``per_task``: ``shrink = lambda``).

    ``noise="init"`` (default): ``eps`` is a fresh draw of the network's own initialisation
    (:func:`~plasticity_bench.core.models.fresh_parameters`, as Kumar23's code); ``gaussian``: ``eps ~ N(0,
    1)`` per weight. Units masked off are left exactly as they are (their weights are what Grow would switch
    on). Optimizer state is kept. The per-task defaults ``lambda = 0.4``, ``sigma = 0.1`` are ours (not
    tuned; sweep them).

    Args:
        form: ``per_step`` or ``per_task``. shrink: the multiplier. perturb: the noise scale.
        seed: run seed; the noise of update ``t`` (per step) or task ``i`` (per task) comes from
            ``generator(seed, "shrink-perturb", form, t or i)``.

    Raises:
        ValueError: for an unknown form or noise kind.
    """

    def __init__(self, form: str, shrink: float, perturb: float, noise: str, seed: int) -> None:
        super().__init__()
        if noise not in NOISES or form not in SP_FORMS:
            raise ValueError(f"unknown sp_form {form!r} / perturb_noise {noise!r}: {SP_FORMS} / {NOISES}")
        self.form, self.shrink, self.perturb, self.noise, self.seed = form, shrink, perturb, noise, seed
        self.updates = 0
        self.template: nn.Module | None = None  # a CPU copy of the network the init is drawn into
        self.kept_slices = MaskCache(inactive_slices)

    def draw_noise(self, model: nn.Module, key: int) -> list[Tensor]:
        """``eps`` for update or task ``key``: one tensor per parameter of ``model``, on its device."""
        gen = generator(self.seed, "shrink-perturb", self.form, key)
        if self.noise == "init":
            if self.template is None:
                self.template = copy.deepcopy(model).cpu()
            return fresh_parameters(model, gen, self.template)
        return [torch.randn(p.shape, generator=gen).to(p.device) for p in model.parameters()]

    def apply(self, model: nn.Module, key: int) -> None:
        """One shrink-and-perturb of ``model``'s parameters; masked-off units' slices are kept."""
        layers = masked_layers_of(model)
        kept = [(piece, piece.read()) for layer in layers for piece in self.kept_slices(layer)]
        shrink_perturb(list(model.parameters()), self.shrink, self.perturb, self.draw_noise(model, key))
        for piece, value in kept:
            piece.write(value)

    def after_update(self, strategy: Host, **kwargs: object) -> None:
        self.updates += 1
        if self.form == "per_step":
            self.apply(strategy.model, self.updates)

    def before_training_exp(self, strategy: Host, **kwargs: object) -> None:
        task = strategy.experience.current_experience
        if self.form == "per_task" and task > 0:
            self.apply(strategy.model, task)
