"""Prune: start dense, remove the lowest-magnitude units over T cycles (LC26 App. A.6.2; docs/protocol.md
§4.2)."""

from __future__ import annotations

from torch import Tensor, nn

from plasticity_bench.importance import Importance, importance
from plasticity_bench.masks import reset_optimizer_state
from plasticity_bench.options import Option
from plasticity_bench.probes import probe, probe_batch
from strategies.base import StrategyConfig, StructuralPlugin
from strategies.grow import top_units

REWINDS = ("imp", "none")
REWIND = Option(
    "rewind", "str", "imp", "IMP rewind to the initial weights after each prune, or none", REWINDS
)


class PrunePlugin(StructuralPlugin):
    """Prune (docs/protocol.md §4.2): at each cycle switch off the k active units of lowest magnitude score.

    ``rewind="imp"`` (default): after the mask update every parameter of the masked layers and of the
    layers reading them is reset to its value at initialisation (snapshot before the first update) and
    its optimizer state is zeroed [ours: state reset]. ``rewind="none"`` keeps the current weights.
    ``score``: the unit score (an :class:`~plasticity_bench.importance.Importance` or a built-in's name;
    default ``magnitude``, mean ``|fan-in weight|``); scores needing a probe are taken on the task's first
    mini-batch.

    Raises:
        ValueError: for an unknown rewind mode or score name.
    """

    grows = False

    def __init__(
        self, config: StrategyConfig, rewind: str = "imp", score: str | Importance = "magnitude"
    ) -> None:
        super().__init__(config)
        if rewind not in REWINDS:
            raise ValueError(f"unknown rewind {rewind!r}; choose one of {REWINDS}")
        self.rewind = rewind
        self.score = importance(score, "prune score") if isinstance(score, str) else score
        self.initial: dict[nn.Parameter, Tensor] = {}

    def rewound_parameters(self, strategy: object) -> tuple[nn.Parameter, ...]:
        """Producer and consumer parameters of every masked layer, each once."""
        params = {id(p): p for layer in self.layers(strategy) for p in layer.parameters()}
        return tuple(params.values())

    def setup(self, strategy: object) -> None:
        self.initial = {p: p.detach().clone() for p in self.rewound_parameters(strategy)}

    def edit(self, strategy: object, cycle: int) -> None:
        p = None
        if self.score.needs_probe:
            x, y = probe_batch(strategy)
            p = probe(strategy.model, x, y if self.score.needs_gradient else None)
        for layer in self.layers(strategy):
            active = layer.units.active()
            k = self.budget(layer, cycle, active.numel() - 1)
            if k == 0:
                continue
            pruned = top_units(active, self.score(layer, p)[active], k, largest=False)
            layer.units.set_units(pruned, False)
            self.log_edit(strategy, cycle, layer, pruned)
        if self.rewind == "imp":
            self.rewind_to_init(strategy)

    def rewind_to_init(self, strategy: object) -> None:
        """IMP rewind: initial values back into the rewound parameters, their optimizer state zeroed."""
        params = self.rewound_parameters(strategy)
        for param in params:
            param.data.copy_(self.initial[param])
        reset_optimizer_state(strategy.optimizer, params)
