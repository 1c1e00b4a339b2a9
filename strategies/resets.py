"""What ReDo and continual backprop share: resetting units during training through the masked-unit core
(:func:`~plasticity_bench.core.masks.reinitialize_units`) and counting the resets for the run record."""

from __future__ import annotations

from avalanche.core import SupervisedPlugin
from torch import Tensor

from plasticity_bench.core.host import Host
from plasticity_bench.core.masks import MaskedLayer, reinitialize_units
from plasticity_bench.core.options import Option
from plasticity_bench.core.seeding import generator

RESET_STATES = ("per_element", "moments")
RESET_STATE = Option(
    "reset_state", "str", "per_element",
    "reset units: zero moments and Adam step count per element (LoP's AdamGnT), or the moments only",
    RESET_STATES,
)  # fmt: skip


def element_steps(options: dict[str, object]) -> bool:
    """True when a run's resets need Adam's step count per element (a reset strategy with
    ``reset_state=per_element``): the runner then builds
    :class:`~plasticity_bench.core.element_adam.ElementStepAdam` instead of torch's Adam."""
    return options.get(RESET_STATE.name) == "per_element"


class UnitResetPlugin(SupervisedPlugin):
    """Base of plugins that reinitialise units between updates (ReDo, CBP).

    ``updates`` counts the updates seen so far (subclasses increment it in ``after_update``); the fresh
    weights of a reset at update ``t`` in layer ``l`` come from ``generator(seed, name, t, l)``, so a resumed
    run draws what an uninterrupted one draws. ``resets[(task, layer)]`` counts the units reset.
    """

    #: Purpose key of the reset draws (``generator(seed, name, ...)``) and the record's key prefix.
    name = "resets"

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed
        self.updates = 0
        self.resets: dict[tuple[int, int], int] = {}

    def reset(self, strategy: Host, layer: MaskedLayer, units: Tensor) -> None:
        """Reinitialise ``units`` of ``layer`` (fan-in redrawn, fan-out and optimizer state zeroed)."""
        if units.numel() == 0:
            return
        init = getattr(strategy.model, "init", "torch_default")
        gen = generator(self.seed, self.name, self.updates, layer.index)
        reinitialize_units(layer, units, strategy.optimizer, init, gen)
        key = (strategy.experience.current_experience, layer.index)
        self.resets[key] = self.resets.get(key, 0) + units.numel()

    def report(self) -> dict[str, object]:
        """``{"resets": [{"task", "layer", "units"}, ...]}``: units reset per task and masked layer."""
        rows = [{"task": t, "layer": i, "units": n} for (t, i), n in sorted(self.resets.items())]
        return {"resets": rows}
