"""One run = (scenario, strategy, options, seed): build everything, train on the stream, make a record."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin

from plasticity_bench.metrics import ActiveUnitsMetric, EarlyTaskTAAMetric, OnlineAccuracyLog, TAOAMetric
from plasticity_bench.models import build_model, count_flops, count_params
from plasticity_bench.records import ResultStore, make_record
from plasticity_bench.seeding import derive_seed
from plasticity_bench.training import OnlineStrategy
from scenarios.registry import parse_scenario
from strategies.base import StrategyConfig
from strategies.registry import build_plugins, entry_for, split_name

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run's result (what the record's ``config`` holds).

    Machine-specific choices (device, data root) are not part of it: they must not change results.
    ``options`` holds strategy options (e.g. ``rewind``) and scenario options (e.g. ``label_mode``).
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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def strategy_config(self) -> StrategyConfig:
        _, mods = split_name(self.strategy)
        return StrategyConfig(
            name=self.strategy,
            compactness=self.compactness,
            cycles=self.cycles,
            n_tasks=self.tasks,
            seed=self.seed,
            scenario=self.scenario,
            schedule=self.schedule,
            edit_every_tasks=self.options.get("edit_every_tasks"),
            modifiers=mods,
            options=self.options,
        )


class TaskProgress(SupervisedPlugin):
    """Calls ``callback(task_index)`` after every training experience (drives the progress bar)."""

    def __init__(self, callback: Callable[[int], None]) -> None:
        super().__init__()
        self.callback = callback

    def after_training_exp(self, strategy: object, **kwargs: object) -> None:
        self.callback(strategy.experience.current_experience)


def make_optimizer(name: str, params: Any, lr: float) -> torch.optim.Optimizer:
    """Adam (betas 0.9/0.999, no weight decay) or SGD (PROTOCOL §7).

    Raises:
        ValueError: for an unknown optimizer name.
    """
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


def execute(
    config: RunConfig,
    data_root: Path | None = None,
    device: str = "cpu",
    on_task: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run ``config`` and return its record (not yet written).

    Raises:
        ValueError: for unknown scenario/strategy/model names or out-of-range options.
        scenarios.readers.DatasetNotFoundError: when the data is missing.
    """
    start = time.perf_counter()
    spec, variant = parse_scenario(config.scenario + (f"@{config.variant}" if config.variant else ""))
    strategy_config = config.strategy_config()
    entry = entry_for(config.strategy)
    scenario_options = {k: v for k, v in config.options.items() if k in ("label_mode",)}
    benchmark = spec.build(config.seed, config.tasks, variant, data_root, **scenario_options)
    info = benchmark.info

    torch.manual_seed(derive_seed(config.seed, "init"))
    model = build_model(
        config.model, info.input_shape, info.n_classes, width_factor=entry.width_factor(strategy_config)
    ).to(device)
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr)
    plugins = build_plugins(strategy_config)
    log = OnlineAccuracyLog()
    online, early, active = TAOAMetric(log), EarlyTaskTAAMetric(log), ActiveUnitsMetric()
    evaluator = EvaluationPlugin(log, online, early, active, loggers=[])
    if on_task is not None:
        plugins.append(TaskProgress(on_task))
    strategy = OnlineStrategy(
        model=model,
        optimizer=optimizer,
        train_mb_size=config.batch_size,
        steps_per_task=config.steps_per_task,
        seed=config.seed,
        device=device,
        plugins=plugins,
        evaluator=evaluator,
    )
    for experience in benchmark.train_stream:
        strategy.train(experience)

    compact = model.export_compact()
    summary = {
        "taoa": online.result(),
        "early_task_taa": early.result(),
        "params": count_params(compact),
        "flops": count_flops(compact, info.input_shape),
    }
    per_task = {
        "online_acc": [float(a.mean()) for a in log.per_task],
        "early_task_acc": early.per_task(),
        "active_units": active.per_task,
        "final_active_units": model.active_units(),
    }
    data = {"source": info.source, "variant": info.variant, "input_shape": list(info.input_shape)}
    data.update({k: v for k, v in info.options.items()})
    return make_record(config.as_dict(), summary, per_task, data, time.perf_counter() - start)


def expand(
    scenario: str,
    strategies: list[str],
    compactness: list[float],
    seeds: list[int],
    base: dict[str, Any],
) -> list[RunConfig]:
    """All run configs of a sweep; non-structural strategies (Dense) run once at compactness 1.0.

    ``base`` holds the remaining :class:`RunConfig` fields (lr, model, tasks, ...).
    """
    spec, variant = parse_scenario(scenario)
    configs: list[RunConfig] = []
    for name in strategies:
        entry_for(name)  # fail fast on unknown names
        levels = compactness if entry_for(name).structural else [1.0]
        for c in levels:
            for seed in seeds:
                configs.append(
                    RunConfig(
                        scenario=spec.name, variant=variant, strategy=name, compactness=c, seed=seed, **base
                    )
                )
    return configs


def pending(configs: list[RunConfig], store: ResultStore, force: bool) -> list[RunConfig]:
    """Configs without an identical record on disk (all of them with ``force``)."""
    return [c for c in configs if force or not store.has(c.as_dict())]
