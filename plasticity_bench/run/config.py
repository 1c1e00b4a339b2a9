"""What defines a run's result: :class:`RunConfig` (the record's ``config``) and the run options every run
may read (optimizer, SGD momentum, the winning ticket's weights)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from plasticity_bench.core.options import Option
from plasticity_bench.strategies.base import EDIT_EVERY_TASKS, EDIT_PLACEMENT, StrategyConfig
from plasticity_bench.strategies.registry import (
    split_name,
)

OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine")
WT_INITS = ("original", "fresh")
WT_INIT = Option(
    "wt_init", "str", "original",
    "winning ticket weights: the run's own initial weights (standard LT), or a fresh draw",
    WT_INITS, ours=True,
)  # fmt: skip
MOMENTUM = Option("momentum", "float", 0.0, "SGD momentum (SGD scenarios)", minimum=0, ours=True)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run's result (what the record's ``config`` holds).

    ``options`` holds every run option the scenario and strategy read (e.g. ``rewind``, ``label_mode``),
    defaults included (:func:`used_options`, :func:`plasticity_bench.core.options.resolve`). ``device``
    (``cpu`` or ``cuda``) and ``threads`` (torch CPU threads) are part of it because they change float
    reduction
    order, hence the last digits of results and diagnostics; the data root is not (the data must be the
    same wherever it lives).
    """

    scenario: str
    variant: str | None
    strategy: str
    compactness: float
    seed: int
    lr: float
    model: str
    tasks: int
    steps_per_task: int
    batch_size: int
    cycles: int = 5
    schedule: str = "neutral"
    optimizer: str = "adam"
    winning_ticket: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    threads: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def strategy_config(self) -> StrategyConfig:
        _, mods = split_name(self.strategy)
        return StrategyConfig(
            name=self.strategy,
            compactness=self.compactness,
            cycles=self.cycles,
            n_tasks=self.tasks,
            steps_per_task=self.steps_per_task,
            seed=self.seed,
            scenario=self.scenario,
            schedule=self.schedule,
            edit_every_tasks=EDIT_EVERY_TASKS.get(self.options),
            edit_placement=EDIT_PLACEMENT.get(self.options),
            modifiers=mods,
            options=self.options,
        )
