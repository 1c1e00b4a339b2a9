"""What defines a run's result: :class:`RunConfig` (the record's ``config``), the run options every run
may read (optimizer, SGD momentum, the winning ticket's weights) and :class:`OptimizerSpec`, the one
description of a run's optimizer that the lone and the batched trainer both build from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from plasticity_bench.core.element_adam import ElementStepAdam
from plasticity_bench.core.options import Option
from plasticity_bench.strategies.base import EDIT_EVERY_TASKS, EDIT_PLACEMENT, StrategyConfig
from plasticity_bench.strategies.registry import split_name
from plasticity_bench.strategies.resets import element_steps

OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine")
WT_INITS = ("original", "fresh")
WT_INIT = Option(
    "wt_init", "str", "original",
    "winning ticket weights: the run's own initial weights (standard LT), or a fresh draw",
    WT_INITS, ours=True,
)  # fmt: skip
MOMENTUM = Option("momentum", "float", 0.0, "SGD momentum (SGD scenarios)", minimum=0, ours=True)
#: Declared for the scenarios with a weight decay (``ScenarioSpec.weight_decay``, its default), so that the
#: run keys of every other scenario stay as they were (:func:`weight_decay_options`).
WEIGHT_DECAY = Option(
    "weight_decay", "float", 0.0, "weight decay of the optimizer (L2 on the gradient, torch's weight_decay)",
    minimum=0.0,
)  # fmt: skip
DECOUPLED = Option(
    "decoupled_weight_decay", "bool", False,
    "weight decay decoupled from the gradient (AdamW, Loshchilov & Hutter 2019) instead of L2",
)  # fmt: skip


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run's result (what the record's ``config`` holds).

    ``plugin_source`` is the sha256 of a user strategy's source file
    (:func:`~plasticity_bench.strategies.registry.plugin_source`; None for built-ins): editing the file
    makes new runs. ``options`` holds every run option the scenario and strategy read (e.g. ``rewind``,
    ``label_mode``), defaults included (:func:`used_options`,
    :func:`plasticity_bench.core.options.resolve`). ``device``
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
    plugin_source: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The record's ``config``: every field, but ``plugin_source`` only for user strategies (built-in
        runs keep the run keys they had before the field existed)."""
        fields = asdict(self)
        if fields["plugin_source"] is None:
            del fields["plugin_source"]
        return fields

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


@dataclass(frozen=True)
class OptimizerSpec:
    """A run's optimizer (docs/protocol.md §7): ``kind`` ``adam`` (betas :attr:`BETAS`, eps :attr:`EPS`) or
    ``sgd`` (``momentum``, no dampening); ``weight_decay`` (0 but on DYNO's transfer streams, §17), as L2 on
    the gradient or, ``decoupled``, AdamW's; ``element_step``: Adam with a step count per element
    (:class:`~plasticity_bench.core.element_adam.ElementStepAdam`), for runs that reset units (§14). The
    lone trainer builds it with :meth:`build`; the batched one
    (:class:`~plasticity_bench.batch.optim.StackedOptimizer`) reads the same fields (no weight decay).

    Raises:
        ValueError: for an unknown kind; decoupled weight decay with SGD.
    """

    kind: str
    momentum: float = 0.0
    element_step: bool = False
    weight_decay: float = 0.0
    decoupled: bool = False

    BETAS = (0.9, 0.999)
    EPS = 1e-8

    def __post_init__(self) -> None:
        if self.kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.kind!r}; choose one of {OPTIMIZERS}")
        if self.decoupled and self.weight_decay and self.kind != "adam":
            raise ValueError(
                "--option decoupled_weight_decay=true needs Adam (torch's SGD has no AdamW form)"
            )

    @classmethod
    def of(cls, config: RunConfig) -> OptimizerSpec:
        """The optimizer ``config`` asks for: its ``optimizer``, ``momentum``, weight-decay and reset
        options."""
        o = config.options
        decay = (WEIGHT_DECAY.get(o), DECOUPLED.get(o))
        return cls(config.optimizer, MOMENTUM.get(o), element_steps(o), *decay)

    def build(self, params: Any, lr: float) -> torch.optim.Optimizer:
        """The torch optimizer of one run over ``params`` at learning rate ``lr``.

        Adam uses torch's fused kernel: the same update as the default implementation (to float rounding,
        ~1e-7), but the default one takes a slow path for ``sqrt`` of exact zeros on x86 CPUs, which is
        what the second moments of inactive units are: a 90%-masked MLP stepped 1.5-2x slower than a
        dense one.
        """
        if self.kind == "adam" and self.element_step:
            decay = {"weight_decay": self.weight_decay, "decoupled_weight_decay": self.decoupled}
            return ElementStepAdam(params, lr=lr, betas=self.BETAS, eps=self.EPS, **decay)
        if self.kind == "adam":  # AdamW: the decoupled form, in every torch release we support
            adam = torch.optim.AdamW if self.decoupled else torch.optim.Adam
            return adam(
                params, lr=lr, betas=self.BETAS, eps=self.EPS, fused=True, weight_decay=self.weight_decay
            )
        return torch.optim.SGD(params, lr=lr, momentum=self.momentum, weight_decay=self.weight_decay)


def weight_decay_options(scenario_weight_decay: float | None) -> tuple[Option, ...]:
    """The weight-decay run options of a scenario whose ``ScenarioSpec.weight_decay`` is given (with that
    default); none for the others."""
    if scenario_weight_decay is None:
        return ()
    return (replace(WEIGHT_DECAY, default=scenario_weight_decay), DECOUPLED)
