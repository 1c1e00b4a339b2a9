"""ReDo: recycle tau-dormant units every F updates (Sokar, Agarwal, Castro & Evci 2023, Sec. 4, Alg. 1;
docs/protocol.md §14)."""

from __future__ import annotations

from torch import Tensor

from plasticity_bench.core.host import Host
from plasticity_bench.core.masks import masked_layers_of
from plasticity_bench.core.options import Option
from plasticity_bench.measure.importance import Dormancy, Importance
from plasticity_bench.measure.probes import probe
from plasticity_bench.strategies.resets import RESET_STATE, UnitResetPlugin

REDO_TAU = Option("redo_tau", "float", 0.1, "ReDo: a unit is dormant when its score s_j <= tau", minimum=0.0)
REDO_EVERY = Option(
    "redo_every", "int", None, "ReDo: updates between dormant-unit recycling (default: the task length)",
    minimum=1,
)  # fmt: skip
REDO_OPTIONS = (REDO_TAU, REDO_EVERY, RESET_STATE)


class ReDoPlugin(UnitResetPlugin):
    """Every ``every`` updates, score the active units of every masked layer on the mini-batch just
    trained on with ``score`` (default :class:`~plasticity_bench.measure.importance.Dormancy`, Sokar et al.
    Eq. 1) and reset those with score ``<= tau``: fan-in redrawn from the init distribution, fan-out zero,
    their optimizer state zero (Sokar et al. Sec. 4; with
    :class:`~plasticity_bench.core.element_adam.ElementStepAdam` their Adam step count too). Units masked off
    are never reset.

    Defaults: ``tau = 0.1`` (the threshold Sokar et al. use with ReDo and LoP's ReDo configuration); the
    period ``every`` is the task length where the run gives it (``redo_every`` unset: Kumar23 recycles once
    per task, 625 / 120 / 780 updates on Permuted MNIST / Continual ImageNet / 5+1 CIFAR).

    Raises:
        ValueError: for ``every < 1``.
    """

    name = "redo"

    def __init__(
        self, seed: int, tau: float = 0.1, every: int = 1000, score: Importance | None = None
    ) -> None:
        super().__init__(seed)
        if every < 1:
            raise ValueError(f"ReDo needs a recycling period of at least 1 update (got {every})")
        self.tau, self.every = tau, every
        self.score = score or Dormancy()

    def dormant(self, strategy: Host, x: Tensor) -> list[Tensor]:
        """The tau-dormant active units of every masked layer on the batch ``x`` (int64 indices)."""
        p = probe(strategy.model, x)
        found = []
        for layer in masked_layers_of(strategy.model):
            active = layer.units.active()
            found.append(active[self.score(layer, p)[active] <= self.tau])
        return found

    def after_update(self, strategy: Host, **kwargs: object) -> None:
        self.updates += 1
        if self.updates % self.every:
            return
        for layer, units in zip(masked_layers_of(strategy.model), self.dormant(strategy, strategy.mb_x)):
            self.reset(strategy, layer, units)
