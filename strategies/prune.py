"""Prune: start dense, remove the lowest-magnitude units over T cycles (LC26 App. A.6.2; docs/protocol.md
§4.2)."""

from __future__ import annotations

from torch import Tensor, nn

from plasticity_bench.core.host import Host
from plasticity_bench.core.masks import reset_optimizer_state
from plasticity_bench.core.options import Option
from plasticity_bench.measure.importance import Importance, importance
from plasticity_bench.measure.probes import probe, probe_batch
from plasticity_bench.strategies.base import StrategyConfig, StructuralPlugin
from plasticity_bench.strategies.grow import top_units

REWINDS = ("imp", "none")
REWIND = Option(
    "rewind", "str", "imp", "IMP rewind to the initial weights after each prune, or none", REWINDS
)
#: Which parameters an IMP rewind touches (LC26 A.6.2 "surviving parameter slices ... rows, filters, and
#: input columns"): ``readers`` every parameter of the masked layers and of the layers reading them, the
#: head included (its input columns are a masked layer's); ``hidden`` the masked layers' producers only,
#: the head keeps its trained weights and optimizer state.
REWIND_SCOPES = ("readers", "hidden")
REWIND_SCOPE = Option(
    "rewind_scope", "str", "readers",
    "IMP rewind: masked layers and every layer reading them (head included), or the masked layers only",
    REWIND_SCOPES,
)  # fmt: skip
#: Where an IMP rewind goes back to (LC26 A.6.2 "to their initialization (or stored rewind snapshot)"):
#: ``init`` theta_0; ``first_edit`` the weights stored just before the first prune (late rewinding,
#: Frankle et al. 2019, at the end of the first cycle).
REWIND_POINTS = ("init", "first_edit")
REWIND_POINT = Option(
    "rewind_point", "str", "init",
    "IMP rewind target: the initial weights, or the weights stored at the first prune (late rewinding)",
    REWIND_POINTS,
)  # fmt: skip
#: What an IMP rewind does to the lr schedule (LC26 A.2: "cosine annealing over the full training
#: horizon"): ``keep`` one schedule over the whole run; ``restart`` the schedule returns to its first step at
#: every rewind, as an IMP round retrains with the original schedule (Frankle & Carbin 2019).
REWIND_LRS = ("keep", "restart")
REWIND_LR = Option(
    "rewind_lr", "str", "keep",
    "IMP rewind: the lr schedule runs on over the whole run, or restarts at every rewind", REWIND_LRS,
)  # fmt: skip
PRUNE_OPTIONS = (REWIND, REWIND_SCOPE, REWIND_POINT, REWIND_LR)


class PrunePlugin(StructuralPlugin):
    """Prune (docs/protocol.md §4.2): at each cycle switch off the k active units of lowest magnitude score.

    ``rewind="imp"`` (default): after the mask update the rewound parameters (``scope``: ``readers``,
    every parameter of the masked layers and of the layers reading them, head included; ``hidden``, the
    masked layers' producers only) go back to their snapshot (``point``: ``init``, the values before the
    first update; ``first_edit``, the values just before the first prune) and their optimizer state is
    zeroed [ours: state reset]; ``lr``: ``keep`` the lr schedule running over the whole run, or
    ``restart`` it at every rewind. ``rewind="none"`` keeps the current weights.
    ``score``: the unit score (an :class:`~plasticity_bench.measure.importance.Importance` or a built-in's
    name; default ``magnitude``, mean ``|fan-in weight|``); scores needing a probe are taken on the task's
    first
    mini-batch.

    Raises:
        ValueError: for an unknown rewind mode or score name.
    """

    grows = False

    def __init__(
        self,
        config: StrategyConfig,
        rewind: str = "imp",
        score: str | Importance = "magnitude",
        scope: str = "readers",
        point: str = "init",
        lr: str = "keep",
    ) -> None:
        super().__init__(config)
        checks = (
            (rewind, REWINDS, "rewind"), (scope, REWIND_SCOPES, "rewind_scope"),
            (point, REWIND_POINTS, "rewind_point"), (lr, REWIND_LRS, "rewind_lr"),
        )  # fmt: skip
        for value, allowed, name in checks:
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; choose one of {allowed}")
        self.rewind, self.scope, self.point, self.lr = rewind, scope, point, lr
        self.score = importance(score, "prune score") if isinstance(score, str) else score
        self.initial: dict[nn.Parameter, Tensor] = {}

    def rewound_parameters(self, strategy: Host) -> tuple[nn.Parameter, ...]:
        """The parameters a rewind touches, each once: producer and consumer parameters of every masked
        layer (``readers``), or the producers only (``hidden``)."""
        layers = self.layers(strategy)
        if self.scope == "hidden":
            found = [p for layer in layers for p in layer.producer.parameters()]
        else:
            found = [p for layer in layers for p in layer.parameters()]
        return tuple({id(p): p for p in found}.values())

    def setup(self, strategy: Host) -> None:
        if self.point == "init":
            self.snapshot(strategy)

    def snapshot(self, strategy: Host) -> None:
        """Store the rewind target: the rewound parameters' current values."""
        self.initial = {p: p.detach().clone() for p in self.rewound_parameters(strategy)}

    def edit(self, strategy: Host, cycle: int) -> None:
        if not self.initial:
            self.snapshot(strategy)  # first_edit: late rewinding to the weights before the first prune
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

    def rewind_to_init(self, strategy: Host) -> None:
        """IMP rewind: the stored values back into the rewound parameters, their optimizer state zeroed."""
        params = self.rewound_parameters(strategy)
        for param in params:
            param.data.copy_(self.initial[param])
        reset_optimizer_state(strategy.optimizer, params)
        if self.lr == "restart":
            restart_schedule(strategy)


def restart_schedule(strategy: Host) -> None:
    """Put the strategy's lr schedule back to its first step (``rewind_lr=restart``); a constant lr has
    nothing to restart.

    Raises:
        ValueError: for a host without its own scheduler (a run-batch steps every run's schedule itself).
    """
    if not hasattr(strategy, "lr_scheduler"):
        raise ValueError("rewind_lr=restart needs a run of its own: use --batch-runs 1")
    scheduler = strategy.lr_scheduler
    if scheduler is None:
        return
    scheduler.last_epoch = 0
    for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
        group["lr"] = base
