"""One run = (scenario, strategy, options, seed): build everything, train on the stream, make a record
(:func:`execute`), with the winning ticket's retraining and the checkpoint policy of
:mod:`plasticity_bench.run.resume`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin

from plasticity_bench.core.element_adam import ElementStepAdam
from plasticity_bench.core.host import Host
from plasticity_bench.core.masks import masks_from_indices, unit_indices
from plasticity_bench.core.models import NETWORKS, MaskedNet, build_model, count_flops, count_params
from plasticity_bench.core.seeding import derive_seed
from plasticity_bench.measure.accuracy import CheckpointAccuracy
from plasticity_bench.measure.metrics import (
    CURVE_BIN,
    ActiveUnitsMetric,
    EarlyTaskTAAMetric,
    OnlineAccuracyLog,
    OnlineAccuracyRecorder,
    PluginValuesMetric,
    TAOAMetric,
)
from plasticity_bench.measure.plasticity import PlasticityDiagnostics
from plasticity_bench.run.config import LR_SCHEDULES, MOMENTUM, OPTIMIZERS, WT_INIT, RunConfig
from plasticity_bench.run.loggers import Recording
from plasticity_bench.run.loop import OnlineStrategy
from plasticity_bench.run.records import make_record
from plasticity_bench.run.resume import BoundarySaver, RunCheckpoint, set_rng_state
from plasticity_bench.scenarios import standin
from plasticity_bench.scenarios.imagenet import RESET_HEAD
from plasticity_bench.scenarios.registry import ScenarioSpec, parse_scenario
from plasticity_bench.scenarios.stream import StreamInfo, TaskBenchmark
from plasticity_bench.strategies.head import ResetHeadPlugin
from plasticity_bench.strategies.modifiers import activation_factory, model_options
from plasticity_bench.strategies.registry import (
    build_plugins,
    entry_for,
    plugin_reports,
)
from plasticity_bench.strategies.replay import ONLINE_ROWS, REPLAY_MIX, TinyERPlugin
from plasticity_bench.strategies.resets import element_steps


class TaskProgress(SupervisedPlugin):
    """Calls ``callback(task_index)`` after every training experience (drives the progress bar)."""

    def __init__(self, callback: Callable[[int], None]) -> None:
        super().__init__()
        self.callback = callback

    def after_training_exp(self, strategy: Host, **kwargs: object) -> None:
        self.callback(strategy.experience.current_experience)


def make_optimizer(
    name: str, params: Any, lr: float, momentum: float = 0.0, element_step: bool = False
) -> torch.optim.Optimizer:
    """Adam (betas 0.9/0.999, no weight decay) or SGD (no weight decay, ``momentum``; docs/protocol.md §7).

    Adam uses torch's fused kernel: the same update as the default implementation (to float rounding,
    ~1e-7), but the default one takes a slow path for ``sqrt`` of exact zeros on x86 CPUs, which is what
    the second moments of inactive units are: a 90%-masked MLP stepped 1.5-2x slower than a dense one.
    ``element_step``: Adam with a step count per element
    (:class:`~plasticity_bench.core.element_adam.ElementStepAdam`), for runs that reset units (§14).

    Raises:
        ValueError: for an unknown optimizer name.
    """
    if name == "adam" and element_step:
        return ElementStepAdam(params, lr=lr, betas=(0.9, 0.999))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), fused=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


@dataclass
class StreamMetrics:
    """Metrics of one model trained once on a stream.

    ``summary``: ``taoa``, ``early_task_taa`` and, where the scenario has checkpoints, ``acc`` and ``taa``
    (fractions, docs/protocol.md §1). ``per_task``: per-task lists (``online_acc``, ``early_task_acc``,
    ``active_units``, ``checkpoint_acc``, ``acc_matrix``). ``curve``: per task, the online accuracy in bins
    of ``curve_bin`` updates.
    """

    summary: dict[str, float]
    per_task: dict[str, Any]
    curve: list[list[float]] = field(default_factory=list)
    curve_bin: int = CURVE_BIN


def new_model(
    config: RunConfig, info: StreamInfo, width_factor: float, init_key: str, device: str
) -> MaskedNet:
    """A fresh ``config.model`` for the stream, all units active, weights drawn from
    ``derive_seed(config.seed, init_key)`` (``"init"`` for the cycle run, ``"wt-init"`` for the ticket).

    Raises:
        ValueError: for an unknown model.
    """
    torch.manual_seed(derive_seed(config.seed, init_key))
    # ReLU or Rand. Smooth-Leaky (docs/protocol.md §5.5); CReLU / layer norm (§14)
    strategy = config.strategy_config()
    model = build_model(
        config.model,
        info.input_shape,
        info.n_classes,
        activation=activation_factory(strategy),
        width_factor=width_factor,
        **model_options(strategy),
    )
    return model.to(device)


def ticket_model(
    trained: MaskedNet, config: RunConfig, info: StreamInfo, width_factor: float, device: str
) -> MaskedNet:
    """The winning ticket of a cycle run (docs/protocol.md §1): ``trained``'s final masks, weights rewound.

    ``wt_init=original`` (default, standard Lottery-Ticket evaluation): the run's own initial weights
    ``theta_0`` (the same draw as the cycle run, ``derive_seed(seed, "init")``). ``wt_init=fresh``: a new
    draw from the same init (``derive_seed(seed, "wt-init")``), the random-reinit control. The masks are
    copies of ``trained.masks()``.
    """
    ticket = new_model(config, info, width_factor, ticket_init_key(config), device)
    ticket.load_masks(trained.masks())
    return ticket


def retrain_ticket(
    record: dict[str, Any], data_root: Path | None = None, device: str = "cpu"
) -> StreamMetrics:
    """A run's winning ticket rebuilt from its record alone and retrained (docs/protocol.md §1): the
    network of ``record["config"]`` at its initial weights (``wt_init``), the record's ``final_masks``
    frozen on it, trained on the same stream with no strategy plugin. On the device and thread count the
    record was made with, its metrics equal the record's ``wt_*`` figures.

    Raises:
        ValueError: for a record without ``final_masks`` or with masks that do not fit the network.
    """
    if "final_masks" not in record:
        raise ValueError(
            f"record {record.get('key', '?')[:16]} has no final_masks (made before they were kept)"
        )
    config = RunConfig(**record["config"])
    spec, benchmark = build_benchmark(config, data_root)
    width = entry_for(config.strategy).width_factor(config.strategy_config())
    ticket = new_model(config, benchmark.info, width, ticket_init_key(config), device)
    ticket.load_masks(masks_from_indices(record["final_masks"], [len(u.mask) for u in ticket.units]))
    curve_bin = record.get("curves", {}).get("bin", CURVE_BIN)
    state = start_stream(config, spec, benchmark.info, ticket, [], curve_bin)
    return train_on_stream(config, spec, benchmark, state, device)


def ticket_init_key(config: RunConfig) -> str:
    """The seed key of a ticket's weights: ``init`` (``wt_init=original``) or ``wt-init`` (``fresh``)."""
    return "init" if WT_INIT.get(config.options) == "original" else "wt-init"


def make_lr_schedule(
    name: str, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """``constant`` (no scheduler) or ``cosine``: ``CosineAnnealingLR`` over ``total_steps`` optimizer steps
    (the whole run; docs/protocol.md §7: IID and Split-MNIST/Fashion).

    Raises:
        ValueError: for an unknown schedule.
    """
    if name == "constant":
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    raise ValueError(f"unknown lr schedule {name!r}; choose one of {LR_SCHEDULES}")


def scenario_plugins(spec: ScenarioSpec, info: StreamInfo, config: RunConfig) -> list[SupervisedPlugin]:
    """Plugins that belong to the run, not the strategy: the plasticity diagnostics (docs/protocol.md §14)
    and the scenario's (§7): Tiny ER for Split-MNIST/Fashion, the head reset of Continual ImageNet's
    ``reset_head`` option. They run before the strategy's plugins."""
    plugins: list[SupervisedPlugin] = [PlasticityDiagnostics()]
    if spec.replay:
        mix, count_replay = REPLAY_MIX.get(config.options), ONLINE_ROWS.get(config.options) == "all"
        plugins.append(TinyERPlugin(config.seed, mix=mix, count_replay=count_replay))
    if RESET_HEAD.get(config.options):
        plugins.append(ResetHeadPlugin(NETWORKS[config.model].default_init, config.seed))
    return plugins


@dataclass
class OnlineMetrics:
    """The metric objects of one stream's training (docs/protocol.md §1), kept across tasks and saved
    with a checkpoint."""

    log: OnlineAccuracyLog
    online: TAOAMetric
    early: EarlyTaskTAAMetric
    active: ActiveUnitsMetric
    checkpoint: CheckpointAccuracy
    plugin_values: PluginValuesMetric = field(default_factory=PluginValuesMetric)
    recorder: OnlineAccuracyRecorder | None = None

    @classmethod
    def new(cls, rule: str, curve_bin: int = CURVE_BIN, any_template: bool = False) -> OnlineMetrics:
        """Fresh metrics; TAOA counts the tasks flagged ``hard``; ``rule``: the checkpoint rule (``none``,
        ``current``, ``seen``); ``curve_bin``: updates per point of the learning curve. ``any_template``:
        for an Avalanche template other than :class:`~plasticity_bench.run.loop.OnlineStrategy` (``Naive``,
        ``EWC``, ...), which keeps no per-step online accuracy: a recorder metric keeps it."""
        recorder = OnlineAccuracyRecorder() if any_template else None
        log = OnlineAccuracyLog(curve_bin, recorder)
        return cls(
            log,
            TAOAMetric(log, hard_only=True),
            EarlyTaskTAAMetric(log, hard_only=True),
            ActiveUnitsMetric(),
            CheckpointAccuracy(rule),
            recorder=recorder,
        )

    def all(self) -> tuple[Any, ...]:
        kept = (self.log, self.online, self.early, self.active, self.checkpoint, self.plugin_values)
        return kept if self.recorder is None else (self.recorder, *kept)

    def evaluator(self, loggers: list[Any]) -> EvaluationPlugin:
        """The Avalanche ``EvaluationPlugin`` of these metrics, handing their values to ``loggers``."""
        return EvaluationPlugin(*self.all(), loggers=loggers)

    def results(self) -> StreamMetrics:
        summary = {
            "taoa": self.online.result(),
            "early_task_taa": self.early.result(),
            **self.checkpoint.summary(),
        }
        per_task = {
            "online_acc": [float(a.mean()) for a in self.log.per_task],
            "early_task_acc": self.early.per_task(),
            "active_units": self.active.per_task,
            **self.checkpoint.per_task(),
        }
        return StreamMetrics(summary, per_task, self.log.curves(), self.log.curve_bin)


@dataclass
class StreamState:
    """Everything the training of one model on one stream needs to continue from a task boundary: the
    model, its optimizer, the plugins (scenario's, then strategy's), the metrics, the lr schedule's
    ``state_dict`` and the index of the next task. A checkpoint saves it whole
    (:mod:`plasticity_bench.run.resume`).
    """

    model: MaskedNet
    optimizer: torch.optim.Optimizer
    plugins: list[SupervisedPlugin]
    metrics: OnlineMetrics
    schedule: dict[str, Any] | None = None
    next_task: int = 0


def start_stream(
    config: RunConfig,
    spec: ScenarioSpec,
    info: StreamInfo,
    model: MaskedNet,
    plugins: list[SupervisedPlugin],
    curve_bin: int = CURVE_BIN,
) -> StreamState:
    """The state before the first task: ``config``'s optimizer on ``model``, the scenario's plugins before
    ``plugins``, fresh metrics (learning curve in bins of ``curve_bin`` updates)."""
    optimizer = make_optimizer(
        config.optimizer, model.parameters(), config.lr, MOMENTUM.get(config.options),
        element_steps(config.options),
    )  # fmt: skip
    everything = [*scenario_plugins(spec, info, config), *plugins]
    return StreamState(model, optimizer, everything, OnlineMetrics.new(spec.checkpoint, curve_bin))


def restore_schedule(
    name: str, optimizer: torch.optim.Optimizer, total_steps: int, saved: dict[str, Any] | None
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """:func:`make_lr_schedule`, moved to ``saved`` (a ``state_dict``) when resuming.

    Building a scheduler sets the optimizer's lr to the schedule's first value; the optimizer's own lrs
    (those of the step it stopped at) are put back after loading.
    """
    lrs = [group["lr"] for group in optimizer.param_groups]
    scheduler = make_lr_schedule(name, optimizer, total_steps)
    if scheduler is not None and saved is not None:
        scheduler.load_state_dict(saved)
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
    return scheduler


def train_on_stream(
    config: RunConfig,
    spec: ScenarioSpec,
    benchmark: TaskBenchmark,
    state: StreamState,
    device: str,
    on_task: Callable[[int], None] | None = None,
    on_boundary: Callable[[StreamState], object] | None = None,
    loggers: list[Any] | None = None,
) -> StreamMetrics:
    """Train ``state.model`` on ``benchmark``'s stream from task ``state.next_task`` to the end and return
    the online metrics and the scenario's checkpoint metrics.

    The batches are those of ``config`` and ``spec``; ``on_task(i)`` runs after task ``i`` trained (progress)
    and ``on_boundary(state)`` after ``state`` was brought up to date at each task's end (checkpoints);
    the metrics' values go to ``loggers`` (Avalanche loggers; closed by the caller).
    """
    plugins = [*state.plugins, *([TaskProgress(on_task)] if on_task is not None else [])]
    total = config.tasks * config.steps_per_task
    scheduler = restore_schedule(spec.lr_schedule, state.optimizer, total, state.schedule)
    strategy = OnlineStrategy(
        model=state.model,
        optimizer=state.optimizer,
        train_mb_size=config.batch_size,
        steps_per_task=config.steps_per_task,
        seed=config.seed,
        device=device,
        plugins=plugins,
        evaluator=state.metrics.evaluator(loggers or []),
        lr_scheduler=scheduler,
    )
    for task in range(state.next_task, config.tasks):
        strategy.train(benchmark.train_stream[task])
        state.next_task = task + 1
        state.schedule = scheduler.state_dict() if scheduler is not None else None
        if on_boundary is not None:
            on_boundary(state)
    return state.metrics.results()


def winning_ticket_summary(cycle: StreamMetrics, ticket: StreamMetrics) -> tuple[dict[str, float], str]:
    """``wt_acc``, ``wt_taa``, ``wt_taoa`` (those the scenario measures) and ``delta_wt_c``.

    ``delta_wt_c = wt_acc - acc`` (docs/protocol.md §1); on streams without checkpoint metrics [ours]
    ``wt_taoa - taoa``. Returns the metrics and the name of the metric the delta is taken on.
    """
    summary = {f"wt_{k}": ticket.summary[k] for k in ("acc", "taa", "taoa") if k in ticket.summary}
    base = "acc" if "acc" in cycle.summary else "taoa"
    summary["delta_wt_c"] = ticket.summary[base] - cycle.summary[base]
    return summary, base


def scenario_of(config: RunConfig) -> tuple[ScenarioSpec, str | None, dict[str, Any]]:
    """``config``'s scenario, data variant, and the values of the options its stream builder reads.

    Raises:
        ValueError: for an unknown scenario or variant.
    """
    spec, variant = parse_scenario(config.scenario + (f"@{config.variant}" if config.variant else ""))
    return spec, variant, {o.name: o.get(config.options) for o in spec.options}


def build_benchmark(config: RunConfig, data_root: Path | None) -> tuple[ScenarioSpec, TaskBenchmark]:
    """The scenario of ``config`` and its stream for the run's seed; the data is read and validated now.

    Raises:
        ValueError: for an unknown scenario or variant.
        plasticity_bench.scenarios.readers.DatasetNotFoundError,
        plasticity_bench.scenarios.readers.CorruptDatasetError: missing or bad data.
    """
    spec, variant, options = scenario_of(config)
    if standin.active():  # timing a run whose data is absent (--dry-run): random tensors of its shapes
        rows = max(config.batch_size, config.batch_size * config.steps_per_task)
        return spec, standin.standin_benchmark(spec.name, config.tasks, rows, spec.checkpoint != "none")
    return spec, spec.build(config.seed, config.tasks, variant, data_root, **options)


def execute(
    config: RunConfig,
    data_root: Path | None = None,
    device: str = "cpu",
    on_task: Callable[[int], None] | None = None,
    checkpoint: RunCheckpoint | None = None,
    recording: Recording | None = None,
) -> dict[str, Any]:
    """Run ``config`` and return its record (not yet written).

    The cycle run trains with the strategy's plugins. With ``config.winning_ticket`` its final masks are
    frozen on rewound weights and retrained on the same stream with the same hyperparameters and no
    strategy plugin; the record then also holds ``wt_*`` and ``delta_wt_c`` (docs/protocol.md §1).
    With ``checkpoint``, the training state is saved at task boundaries as its policy says, and a run
    whose checkpoint exists continues from it (the record is the one an uninterrupted run makes, but for
    ``created`` and ``wall_seconds``); tasks already done are reported to ``on_task`` at once.
    ``recording`` sets the learning-curve bin and the experiment loggers of the cycle run (default: bin
    :data:`~plasticity_bench.measure.metrics.CURVE_BIN`, no logger).

    Raises:
        ValueError: for unknown scenario/strategy/model names or out-of-range options.
        plasticity_bench.scenarios.readers.DatasetNotFoundError: when the data is missing (before training).
        plasticity_bench.scenarios.readers.CorruptDatasetError: when a data file is malformed (before
        training).
    """
    use_config_resources(config, device)
    recording = recording or Recording()
    saved = checkpoint.load(device) if checkpoint is not None else None
    saver = BoundarySaver(checkpoint, saved["elapsed"] if saved else 0.0)

    def boundary(phase: str, cycle: dict[str, Any] | None) -> Callable[[StreamState], object] | None:
        if not saver.enabled:
            return None
        return lambda state: saver.boundary(
            {"phase": phase, "next_task": state.next_task, "state": state, "cycle": cycle}
        )

    spec, benchmark = build_benchmark(config, data_root)
    width = entry_for(config.strategy).width_factor(config.strategy_config())
    report_done(saved, config.tasks, on_task)
    if saved is not None:
        set_rng_state(saved["rng"])
    if saved is None or saved["phase"] == "cycle":
        state = (
            saved["state"] if saved else fresh_state(config, spec, benchmark.info, width, device, recording)
        )
        with recording.logging(config.as_dict()) as loggers:
            metrics = train_on_stream(
                config, spec, benchmark, state, device, on_task, boundary("cycle", None), loggers
            )
        cycle = cycle_results(spec, benchmark.info, state, metrics)
        if config.winning_ticket:
            ticket = ticket_model(state.model, config, benchmark.info, width, device)
            ticket_state = start_stream(config, spec, benchmark.info, ticket, [], recording.curve_bin)
    else:
        cycle, ticket_state = saved["cycle"], saved["state"]
    wt = None
    if config.winning_ticket:
        wt = train_on_stream(
            config, spec, benchmark, ticket_state, device, on_task, boundary("ticket", cycle)
        )
    return run_record(config, cycle, wt, saver.elapsed())


def fresh_state(
    config: RunConfig, spec: ScenarioSpec, info: StreamInfo, width: float, device: str, recording: Recording
) -> StreamState:
    """A new run's state before its first task: its network at ``init``, its strategy's plugins."""
    model = new_model(config, info, width, "init", device)
    plugins = build_plugins(config.strategy_config())
    return start_stream(config, spec, info, model, plugins, recording.curve_bin)


def use_config_resources(config: RunConfig, device: str) -> None:
    """Make the run use what its record will say: ``device`` must be of ``config.device``'s kind, and torch
    runs on ``config.threads`` CPU threads (both change float rounding, so both are in the run key).

    Raises:
        ValueError: for a device of another kind than the config's.
    """
    if torch.device(device).type != config.device:
        raise ValueError(
            f"device {device} for a run configured for {config.device}: its record would say "
            f"{config.device}; build the config with device={torch.device(device).type!r}"
        )
    if torch.get_num_threads() != config.threads:
        torch.set_num_threads(config.threads)


def run_record(
    config: RunConfig, cycle: dict[str, Any], wt: StreamMetrics | None, wall_seconds: float
) -> dict[str, Any]:
    """The record of a finished run: ``cycle`` as :func:`cycle_results` returns it, the winning ticket's
    metrics ``wt`` (``None`` without one) and the run's wall time in seconds."""
    summary, per_task, data = dict(cycle["summary"]), dict(cycle["per_task"]), dict(cycle["data"])
    curves = {"bin": cycle["metrics"].curve_bin, "online_acc": cycle["metrics"].curve}
    if wt is not None:
        wt_summary, data["delta_wt_c_metric"] = winning_ticket_summary(cycle["metrics"], wt)
        summary.update(wt_summary)
        per_task.update({f"wt_{k}": v for k, v in wt.per_task.items()})
        curves["wt_online_acc"] = wt.curve
    record = make_record(config.as_dict(), summary, per_task, data, wall_seconds)
    record.update(curves=curves, final_masks=cycle["final_masks"])
    # edit log (docs/protocol.md §3), cohort diagnostics (§9), DYNO widths (§6)
    record.update(cycle["reports"])
    return record


def report_done(
    saved: dict[str, Any] | None, tasks: int, on_task: Callable[[int], None] | None, runs: int = 1
) -> None:
    """Tell ``on_task`` (once per run of ``runs``) about the tasks of ``tasks`` per stream that a resumed run
    or run-batch does not train again (its checkpoint ``saved``: phase and next task)."""
    if saved is None or on_task is None:
        return
    done = saved["next_task"] + (tasks if saved["phase"] == "ticket" else 0)
    for task in range(done):
        for _ in range(runs):
            on_task(task % tasks)


def cycle_results(
    spec: ScenarioSpec, info: StreamInfo, state: StreamState, metrics: StreamMetrics
) -> dict[str, Any]:
    """What the record needs from the finished cycle run: summary (with the compact network's ``params``
    and ``flops``), per-task arrays, data description, plugin reports, the final masks (active unit
    indices per masked layer, :func:`~plasticity_bench.core.masks.unit_indices`) and the metrics
    themselves."""
    compact = state.model.export_compact()
    summary = {
        **metrics.summary,
        "params": count_params(compact),
        "flops": count_flops(compact, info.input_shape),
    }
    per_task = {**metrics.per_task, "final_active_units": state.model.active_units()}
    data = {"source": info.source, "variant": info.variant, "input_shape": list(info.input_shape)}
    data.update(info.options)
    data.update(checkpoint_rule=spec.checkpoint, lr_schedule=spec.lr_schedule, replay=spec.replay)
    reports = plugin_reports(state.plugins)
    masks = unit_indices(state.model.masks())
    return {
        "summary": summary, "per_task": per_task, "data": data, "reports": reports, "metrics": metrics,
        "final_masks": masks,
    }  # fmt: skip
