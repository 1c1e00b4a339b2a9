"""What one run is built from, whichever trainer runs it: its stream, network and winning ticket, its
plugins and metrics (:class:`StreamRun`), its learning-rate schedule, and the record made from a finished
run (docs/protocol.md §1, §7). The pipeline that puts them together is :mod:`plasticity_bench.run.execute`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin

from plasticity_bench.core.budget import unit_targets
from plasticity_bench.core.masks import masked_layers_of, unit_indices
from plasticity_bench.core.models import MaskedNet, count_flops, count_params
from plasticity_bench.core.networks import build_network, default_init
from plasticity_bench.core.seeding import derive_seed
from plasticity_bench.core.vgg import WEIGHTS, WIDTH_SCALE, load_pretrained, read_weights
from plasticity_bench.measure.accuracy import CheckpointAccuracy
from plasticity_bench.measure.cost import TrainingCost
from plasticity_bench.measure.metrics import (
    CURVE_BIN,
    ActiveUnitsMetric,
    EarlyTaskTAAMetric,
    OnlineAccuracyLog,
    OnlineAccuracyRecorder,
    PluginValuesMetric,
    TAOAMetric,
    TrainingLossLog,
)
from plasticity_bench.measure.plasticity import PlasticityDiagnostics
from plasticity_bench.run.config import LR_SCHEDULES, WT_INIT, RunConfig
from plasticity_bench.run.records import make_record
from plasticity_bench.scenarios import standin
from plasticity_bench.scenarios.imagenet import RESET_HEAD
from plasticity_bench.scenarios.registry import ScenarioSpec, parse_scenario
from plasticity_bench.scenarios.stream import StreamInfo, TaskBenchmark
from plasticity_bench.strategies.head import ResetHeadPlugin
from plasticity_bench.strategies.modifiers import activation_factory, model_options
from plasticity_bench.strategies.registry import entry_for, plugin_reports
from plasticity_bench.strategies.replay import ONLINE_ROWS, REPLAY_MIX, TinyERPlugin


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


def width_of(config: RunConfig) -> float:
    """The factor by which ``config``'s strategy widens the network's hidden layers (1 for most)."""
    return entry_for(config.strategy).width_factor(config.strategy_config())


def new_model(
    config: RunConfig, info: StreamInfo, width_factor: float, init_key: str, device: str
) -> MaskedNet:
    """A fresh ``config.model`` for the stream, all units active, weights drawn from
    ``derive_seed(config.seed, init_key)`` (``"init"`` for the cycle run, ``"wt-init"`` for the ticket).

    With the run option ``weights`` (VGG11, docs/protocol.md §17) the weights drawn at ``init`` (the run's
    own, and its ``original`` ticket's; not a ``fresh`` ticket's) are then replaced by the pretrained ones
    (:func:`~plasticity_bench.core.vgg.load_pretrained`; the head by the pretrained classifier's rows of
    ``info.imagenet_classes`` where the stream has them), and ``model.weights`` says which file (its
    sha256).

    Raises:
        ValueError: for an unknown model. WeightsError: pretrained weights missing or not VGG11's.
    """
    torch.manual_seed(derive_seed(config.seed, init_key))
    # ReLU or Rand. Smooth-Leaky (docs/protocol.md §5.5); CReLU / layer norm (§14)
    strategy = config.strategy_config()
    model = build_network(
        config.model, info.input_shape, info.n_classes, activation_factory(strategy), width_factor,
        WIDTH_SCALE.get(config.options), **model_options(strategy),
    )  # fmt: skip
    source = WEIGHTS.get(config.options)
    # the run's own initial weights only: a fresh ticket (wt-init) is the random-reinit control; a timing
    # run on stand-in data times any weights
    if source != "none" and init_key == "init" and not standin.active():
        state, model.weights = read_weights(source)
        load_pretrained(model, state, info.imagenet_classes)
    return model.to(device)


def run_generator(config: RunConfig, init_key: str, device: str) -> torch.Generator:
    """The generator of a run's random activations (Rand. Smooth-Leaky), in the state torch's global RNG
    has right after :func:`new_model` drew the run's network with ``init_key``: what a run draws from
    next. Call it right after ``new_model``."""
    generator = torch.Generator(device=device)
    if torch.device(device).type == "cuda":
        generator.manual_seed(derive_seed(config.seed, init_key))  # init ran on the CPU: no CUDA draw yet
    else:
        generator.set_state(torch.get_rng_state())
    return generator


def ticket_init_key(config: RunConfig) -> str:
    """The seed key of a ticket's weights: ``init`` (``wt_init=original``) or ``wt-init`` (``fresh``)."""
    return "init" if WT_INIT.get(config.options) == "original" else "wt-init"


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


def scenario_plugins(spec: ScenarioSpec, info: StreamInfo, config: RunConfig) -> list[SupervisedPlugin]:
    """Plugins that belong to the run, not the strategy: the plasticity diagnostics (docs/protocol.md §14),
    the training cost (§16) and the scenario's (§7): Tiny ER for Split-MNIST/Fashion, the head reset of
    Continual ImageNet's ``reset_head`` option. They run before the strategy's plugins."""
    plugins: list[SupervisedPlugin] = [PlasticityDiagnostics(), TrainingCost()]
    if spec.replay:
        mix, count_replay = REPLAY_MIX.get(config.options), ONLINE_ROWS.get(config.options) == "all"
        plugins.append(TinyERPlugin(config.seed, mix=mix, count_replay=count_replay))
    if RESET_HEAD.get(config.options):
        plugins.append(ResetHeadPlugin(default_init(config.model), config.seed))
    return plugins


@dataclass
class StreamRun:
    """One run as a trainer holds it: config, scenario and stream, network, plugins (the scenario's, then
    the strategy's), metrics, the generator of its random activations (:func:`run_generator`) and the
    evaluator that hands the metrics to its loggers. ``optimizer`` is what the trainer built for it (a
    ``torch.optim`` optimizer, or a batched run's :class:`~plasticity_bench.batch.optim.RunOptimizer`).
    While the run is detached for a checkpoint (:meth:`detach`), ``spec``, ``benchmark`` and
    ``evaluator`` are ``None``.
    """

    config: RunConfig
    spec: ScenarioSpec | None
    benchmark: TaskBenchmark | None
    model: MaskedNet
    plugins: list[SupervisedPlugin]
    metrics: OnlineMetrics
    generator: torch.Generator
    evaluator: EvaluationPlugin | None
    optimizer: Any = None

    @classmethod
    def start(
        cls, config: RunConfig, stream: tuple[ScenarioSpec, TaskBenchmark], model: MaskedNet,
        generator: torch.Generator, plugins: list[SupervisedPlugin], curve_bin: int = CURVE_BIN,
        loggers: Sequence[Any] = (),
    ) -> StreamRun:  # fmt: skip
        """A run before its first task: the scenario's plugins before ``plugins``, fresh metrics (curve bin
        ``curve_bin``) whose values go to ``loggers``, with the training loss
        (:class:`~plasticity_bench.measure.metrics.TrainingLossLog`) when there are loggers."""
        spec, benchmark = stream
        everything = [*scenario_plugins(spec, benchmark.info, config), *plugins]
        if loggers:  # the loss, for the loggers only (docs/protocol.md §13)
            everything.append(TrainingLossLog(curve_bin))
        metrics = OnlineMetrics.new(spec.checkpoint, curve_bin)
        evaluator = metrics.evaluator(list(loggers))
        return cls(config, spec, benchmark, model, everything, metrics, generator, evaluator)

    def detach(self) -> tuple[ScenarioSpec | None, TaskBenchmark | None, EvaluationPlugin | None]:
        """Drop what a checkpoint does not save (stream, evaluator: its loggers hold files); returns it
        for :meth:`reattach`."""
        kept = (self.spec, self.benchmark, self.evaluator)
        self.spec = self.benchmark = self.evaluator = None
        return kept

    def reattach(
        self, spec: ScenarioSpec | None, benchmark: TaskBenchmark | None, evaluator: EvaluationPlugin | None
    ) -> None:
        """Put back what :meth:`detach` dropped."""
        self.spec, self.benchmark, self.evaluator = spec, benchmark, evaluator

    def attach(self, stream: tuple[ScenarioSpec, TaskBenchmark], loggers: Sequence[Any]) -> None:
        """Give a run loaded from a checkpoint its stream, and an evaluator handing to ``loggers``."""
        self.reattach(*stream, self.metrics.evaluator(list(loggers)))


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


def cycle_results(run: StreamRun, metrics: StreamMetrics) -> dict[str, Any]:
    """What the record needs from the finished cycle run: summary (with the compact network's ``params``
    and ``flops`` per sample, and ``train_flops``, the run's training FLOPs), per-task arrays, data
    description, plugin reports, the final masks (active unit indices per masked layer,
    :func:`~plasticity_bench.core.masks.unit_indices`) and the metrics themselves."""
    spec, info, model = run.spec, run.benchmark.info, run.model
    compact = model.export_compact()
    summary = {
        **metrics.summary,
        "params": count_params(compact),
        "flops": count_flops(compact, info.input_shape),
        "train_flops": next(p.flops for p in run.plugins if isinstance(p, TrainingCost)),
    }
    per_task = {**metrics.per_task, "final_active_units": model.active_units()}
    data = {"source": info.source, "variant": info.variant, "input_shape": list(info.input_shape)}
    data.update(info.options)
    if model.weights is not None:  # pretrained: which file (docs/protocol.md §17)
        data["pretrained"] = dict(model.weights)
    data.update(checkpoint_rule=spec.checkpoint, lr_schedule=spec.lr_schedule, replay=spec.replay)
    reports = plugin_reports(run.plugins)
    masks = unit_indices(model.masks())
    return {
        "summary": summary, "per_task": per_task, "data": data, "reports": reports, "metrics": metrics,
        "final_masks": masks, "flags": budget_flags(run, reports),
    }  # fmt: skip


#: Record flags of runs the leaderboard shows as off-budget (docs/protocol.md §16).
OVER_BUDGET, STACKED_EDITS = "over budget", "edits without training"


def budget_flags(run: StreamRun, reports: dict[str, Any]) -> list[str]:
    """The finished cycle run's budget flags, each with a warning: :data:`OVER_BUDGET` when a structural
    strategy ended with more active units in a layer than its compactness target
    (:func:`~plasticity_bench.core.budget.unit_targets`), :data:`STACKED_EDITS` when its plugin ran several
    edits at one task boundary (``stacked_edits`` in its report)."""
    config, flags = run.config, []
    if entry_for(config.strategy).structural:
        layers = masked_layers_of(run.model)
        widths, fan_in = [layer.width for layer in layers], [layer.fan_in_size for layer in layers]
        targets = unit_targets(widths, fan_in, config.compactness, config.schedule)
        over = [
            f"layer {i}: {n} > {t}"
            for i, (n, t) in enumerate(zip(run.model.active_units(), targets))
            if n > t
        ]
        if over:
            flags.append(OVER_BUDGET)
            warn_flag(config, f"ended above its compactness budget ({', '.join(over)})")
    if reports.get("stacked_edits"):
        flags.append(STACKED_EDITS)
        tasks = ", ".join(str(t) for t in reports["stacked_edits"])
        warn_flag(config, f"ran several structural edits with no training between them (tasks {tasks})")
    return flags


def warn_flag(config: RunConfig, what: str) -> None:
    """One warning for a flagged run: which run, what it did, what the leaderboard will show."""
    warnings.warn(
        f"{config.strategy} c={config.compactness:g} seed {config.seed} on {config.scenario} {what}; the "
        "leaderboard marks its row off-budget",
        stacklevel=3,
    )


def winning_ticket_summary(cycle: StreamMetrics, ticket: StreamMetrics) -> tuple[dict[str, float], str]:
    """``wt_acc``, ``wt_taa``, ``wt_taoa`` (those the scenario measures) and ``delta_wt_c``.

    ``delta_wt_c = wt_acc - acc`` (docs/protocol.md §1); on streams without checkpoint metrics [ours]
    ``wt_taoa - taoa``. Returns the metrics and the name of the metric the delta is taken on.
    """
    summary = {f"wt_{k}": ticket.summary[k] for k in ("acc", "taa", "taoa") if k in ticket.summary}
    base = "acc" if "acc" in cycle.summary else "taoa"
    summary["delta_wt_c"] = ticket.summary[base] - cycle.summary[base]
    return summary, base


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
    if cycle["flags"]:
        record["flags"] = cycle["flags"]
    # edit log (docs/protocol.md §3), cohort diagnostics (§9), DYNO widths (§6)
    record.update(cycle["reports"])
    return record
