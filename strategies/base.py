"""Shared machinery of structural strategies: configuration, edit points and the edit log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from avalanche.core import SupervisedPlugin

from plasticity_bench.core.budget import (
    EDIT_PLACEMENTS,
    check_compactness,
    edit_count,
    edit_schedule,
    unit_targets,
)
from plasticity_bench.core.host import Host
from plasticity_bench.core.masks import MaskedLayer, masked_layers_of
from plasticity_bench.core.options import Option
from plasticity_bench.measure.cohorts import DIAGNOSTIC_OPTIONS

EDIT_EVERY_TASKS = Option(
    "edit_every_tasks", "int", None, "tasks between structural edits (default: spread evenly)", minimum=1
)
EDIT_PLACEMENT = Option(
    "edit_placement", "str", "exit",
    "structural edits at the end of cycles 1..T-1 (no edit before training), or the first at step 0",
    EDIT_PLACEMENTS,
)  # fmt: skip
#: Options every structural strategy (Grow, Prune, their variants, structural user plugins) reads.
STRUCTURAL_OPTIONS = (EDIT_EVERY_TASKS, EDIT_PLACEMENT, *DIAGNOSTIC_OPTIONS)


@dataclass(frozen=True)
class StrategyConfig:
    """Everything a strategy factory may use to build its plugins.

    Attributes:
        name: full strategy name as given (e.g. ``grow+moment_transplant``).
        compactness: fraction of units kept at the end, in (0, 1] (docs/protocol.md §1).
        cycles: number of structural edits ``T`` (docs/protocol.md §3, default 5).
        n_tasks: tasks in the stream (edit points are spread over them).
        steps_per_task: updates per task (ReDo's default period, docs/protocol.md §14); 0 when unknown.
        seed: run seed.
        scenario: scenario name (per-benchmark defaults, e.g. Rand. Smooth-Leaky settings).
        schedule: per-layer budget schedule (``neutral``, ``fc1_protect``, ...).
        edit_every_tasks: override of the edit spacing (docs/protocol.md §3).
        edit_placement: ``exit`` (edits close cycles 1..T-1) or ``step0`` (protocol 2; docs/protocol.md §3).
        modifiers: the ``+``-joined parts after the base name (interventions).
        options: free-form strategy options (e.g. ``{"rewind": "none"}``).
    """

    name: str
    compactness: float = 1.0
    cycles: int = 5
    n_tasks: int = 1
    steps_per_task: int = 0
    seed: int = 0
    scenario: str = ""
    schedule: str = "neutral"
    edit_every_tasks: int | None = None
    edit_placement: str = "exit"
    modifiers: tuple[str, ...] = ()
    options: dict[str, object] = field(default_factory=dict)


class EditObserver(Protocol):
    """Told of every structural edit (e.g. the cohort diagnostics of docs/protocol.md §9).

    ``edit_starting`` runs just before the edit of ``cycle`` is decided; ``edit_finished`` right after it,
    with the ``edit_log`` entries that edit added (one per edited layer).
    """

    def edit_starting(self, strategy: Host, cycle: int) -> None: ...

    def edit_finished(self, strategy: Host, cycle: int, entries: list[dict[str, object]]) -> None: ...


class StructuralPlugin(SupervisedPlugin):
    """Base Avalanche plugin: applies :meth:`edit` at the docs/protocol.md §3 edit points.

    At the start of task ``i`` it applies the edits :func:`~plasticity_bench.core.budget.edit_schedule` puts
    there, in order, each with its cycle number ``t`` (from 1 under the default ``exit`` placement).
    Subclasses implement :meth:`setup` (called once before the first update) and :meth:`edit`.

    Attributes:
        targets: target active-unit count per masked layer (docs/protocol.md §3).
        edit_log: one dict per edit and layer: ``task``, ``cycle``, ``layer``, ``units`` (indices
            switched on or off), ``active`` (active units after the edit).
        observers: :class:`EditObserver` objects told of every edit.
    """

    #: True for strategies whose edits switch units on (Grow), False for those that switch them off.
    grows: bool = True

    def __init__(self, config: StrategyConfig) -> None:
        super().__init__()
        check_compactness(config.compactness)
        self.config = config
        self.edit_points = edit_schedule(
            config.n_tasks, config.cycles, config.edit_every_tasks, config.edit_placement
        )
        self.cycle = self.edit_points[0][1] if self.edit_points else 0
        self.targets: list[int] | None = None
        self.edit_log: list[dict[str, object]] = []
        self.observers: list[EditObserver] = []
        #: Task boundaries at which several edits ran with no training between them (docs/protocol.md §16).
        self.stacked_edits: list[int] = []

    def layers(self, strategy: Host) -> list[MaskedLayer]:
        return masked_layers_of(strategy.model)

    def before_training(self, strategy: Host, **kwargs: object) -> None:
        if self.targets is None:
            layers = self.layers(strategy)
            self.targets = unit_targets(
                [layer.width for layer in layers],
                [layer.fan_in_size for layer in layers],
                self.config.compactness,
                self.config.schedule,
            )
            self.setup(strategy)

    def before_training_exp(self, strategy: Host, **kwargs: object) -> None:
        task = strategy.experience.current_experience
        edits = sum(1 for at, _ in self.edit_points if at == task)
        if edits > 1:
            self.stacked_edits.append(task)
        for _ in range(edits):
            for observer in self.observers:
                observer.edit_starting(strategy, self.cycle)
            first = len(self.edit_log)
            self.edit(strategy, self.cycle)
            for observer in self.observers:
                observer.edit_finished(strategy, self.cycle, self.edit_log[first:])
            self.cycle += 1

    def report(self) -> dict[str, object]:
        """What goes into the run record: ``{"edits": edit_log}`` (when and which units were switched on or
        off, per layer) and, where several edits ran back to back, ``stacked_edits`` (their tasks)."""
        stacked = {"stacked_edits": list(self.stacked_edits)} if self.stacked_edits else {}
        return {"edits": list(self.edit_log), **stacked}

    def setup(self, strategy: Host) -> None:
        """Prepare masks and snapshots before the first update (default: nothing)."""

    def edit(self, strategy: Host, cycle: int) -> None:
        """Apply the structural edit of cycle number ``cycle`` (LC26 eq. 23's t; :meth:`budget`)."""
        raise NotImplementedError

    def budget(self, layer: MaskedLayer, cycle: int, available: int) -> int:
        """Units to edit in ``layer`` at ``cycle`` by the docs/protocol.md §3 rule."""
        remaining = abs(self.targets[layer.index] - layer.units.n_active())
        return edit_count(remaining, cycle, self.config.cycles, available)

    def log_edit(self, strategy: Host, cycle: int, layer: MaskedLayer, units: object) -> None:
        self.edit_log.append(
            {
                "task": strategy.experience.current_experience,
                "cycle": cycle,
                "layer": layer.index,
                "units": [int(u) for u in units],
                "active": layer.units.n_active(),
            }
        )
