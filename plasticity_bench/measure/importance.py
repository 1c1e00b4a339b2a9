"""One interface for every per-unit score: an :class:`Importance` maps a masked layer (and, when it needs one,
a probe of the network on a mini-batch) to one float per unit (docs/protocol.md §14).

Grow's selectors (activation frequency, GradMax-style gradient), Prune's magnitude, ReDo's dormancy and
continual backprop's contribution utility are all such scores; so is anything a user writes. Strategies
take an ``Importance`` object, so a new score plugs into every one of them (the design of Torch-Pruning's
``Importance``: one call, one tensor of scores).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from torch import Tensor

from plasticity_bench.core.masks import MaskedLayer
from plasticity_bench.measure.probes import (
    TAU,
    Probe,
    activation_frequency,
    as_if_active_gradient,
    mean_abs_output,
)


class Importance(ABC):
    """A score per unit of one masked layer.

    ``needs_probe``: the score reads the layer's pre-activations on a mini-batch (``probe.z``);
    ``needs_gradient``: it also reads ``probe.grad_h`` (the probe must be taken with labels). Scores are
    computed for every unit, active or not, as if it were active; callers restrict them to the candidates.
    """

    needs_probe: ClassVar[bool] = False
    needs_gradient: ClassVar[bool] = False

    @abstractmethod
    def __call__(self, layer: MaskedLayer, probe: Probe | None = None) -> Tensor:
        """Float32 ``(d,)`` scores, one per unit of ``layer``, on the layer's device.

        Raises:
            ValueError: if the score needs a probe (or its gradient) and none was given.
        """

    def _probe(self, probe: Probe | None) -> Probe:
        if probe is None or (self.needs_gradient and probe.grad_h is None):
            need = "a probe with labels (gradients)" if self.needs_gradient else "a probe"
            raise ValueError(f"{type(self).__name__} needs {need} of the network on a mini-batch")
        return probe


class ActivationFrequency(Importance):
    """Fraction of the batch on which the unit's output exceeds ``tau`` (Grow's selector, LC26 App. A.6.1;
    docs/protocol.md §4.1; ``tau = 0.05``)."""

    needs_probe = True

    def __init__(self, tau: float = TAU) -> None:
        self.tau = tau

    def __call__(self, layer: MaskedLayer, probe: Probe | None = None) -> Tensor:
        p = self._probe(probe)
        return activation_frequency(p.z[layer.index], p.activations[layer.index], self.tau)


class AsIfActiveGradient(Importance):
    """Mean ``|dL/dz_j|`` as if the unit were active (GradMax-style selector, LC26 App. B.4;
    docs/protocol.md §5.4)."""

    needs_probe = True
    needs_gradient = True

    def __call__(self, layer: MaskedLayer, probe: Probe | None = None) -> Tensor:
        p = self._probe(probe)
        return as_if_active_gradient(p.z[layer.index], p.grad_h[layer.index], p.activations[layer.index])


class FanInMagnitude(Importance):
    """Mean ``|fan-in weight|`` per unit (Prune's score, LC26 App. A.6.2; docs/protocol.md §4.2)."""

    def __call__(self, layer: MaskedLayer, probe: Probe | None = None) -> Tensor:
        return layer.producer.weight.detach().abs().flatten(1).mean(1)


class Dormancy(Importance):
    """ReDo's score ``s_j = E|h_j| / mean_{k active} E|h_k|`` (Sokar et al. 2023, Eq. 1): a unit is
    tau-dormant when ``s_j <= tau``. The normalising mean runs over the active units only (inactive units are
    masked, not dormant); 0 for every unit when no active unit fires."""

    needs_probe = True

    def __call__(self, layer: MaskedLayer, probe: Probe | None = None) -> Tensor:
        p = self._probe(probe)
        magnitude = mean_abs_output(p.z[layer.index], p.activations[layer.index])
        active = layer.units.mask.to(magnitude.device) > 0.5
        mean = magnitude[active].mean() if active.any() else magnitude.new_zeros(())
        return magnitude / mean if mean > 0 else magnitude.new_zeros(magnitude.shape)


class Contribution(Importance):
    """Continual backprop's instantaneous contribution utility ``E|h_j| * mean_k |w_kj|`` (Dohare et al.
    2024, Methods, "contribution utility"): the unit's mean output magnitude times the mean magnitude of its
    fan-out weights (per output feature for CReLU/conv consumers: all of the unit's columns)."""

    needs_probe = True

    def __call__(self, layer: MaskedLayer, probe: Probe | None = None) -> Tensor:
        p = self._probe(probe)
        magnitude = mean_abs_output(p.z[layer.index], p.activations[layer.index])
        fan_out = layer.consumer.weight.detach().abs()
        per_unit = fan_out.view(fan_out.shape[0], layer.width, -1).mean((0, 2))
        return magnitude * per_unit


#: Built-in scores by name (``--option selector=...`` for Grow; ``PrunePlugin(score=...)``).
IMPORTANCES: dict[str, type[Importance]] = {
    "activation": ActivationFrequency,
    "gradient": AsIfActiveGradient,
    "magnitude": FanInMagnitude,
    "dormancy": Dormancy,
    "contribution": Contribution,
}


def importance(name: str, role: str = "unit score") -> Importance:
    """A built-in :class:`Importance` by name (default settings); ``role`` names it in the error.

    Raises:
        ValueError: for an unknown name, listing the built-ins.
    """
    if name not in IMPORTANCES:
        raise ValueError(f"unknown {role} {name!r}; choose one of {sorted(IMPORTANCES)}")
    return IMPORTANCES[name]()
