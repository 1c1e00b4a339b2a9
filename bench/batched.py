"""Run-batched training against the same runs one after another, side by side in one invocation.

For each network (the Permuted-MNIST MLP on ``permuted_mnist@mnist5k``, real digits; the CIFAR convnet
``convnet`` on ``random_label_cifar``, with CIFAR-10 files written in the real pickle format into a
temporary folder, since speed does not depend on pixel values) and each ``R`` in ``--runs``, ``R`` Dense runs
(seeds 0..R-1, ``--tasks`` x ``--steps`` updates at the scenario's batch size) are trained

- one after another through the single-run path (``plasticity_bench.run.execute.execute``), and
- as one batch (``plasticity_bench.batch.trainer.execute_batch``),

and the bench prints run-steps per second of both and their ratio. Stream building, model init and record
assembly are inside both timings. The sequential rate is measured on ``min(R, --seq-cap)`` runs (it is
per run, so it does not depend on R). Targets: CPU, R = 16 >= 1.0x; GPU, R = 64 >= 30x.

It then projects the Permuted-MNIST part of ``--grid`` (default the LC26 Table 14 sweep file, at full
length) from the MLP rates: one run after another, and cut into run-batches of at most the largest ``R``
measured, each batch at the rate of the largest measured ``R`` it reaches (smaller ones at the sequential
rate). The projection assumes Dense's cost per update (structural edits happen at task boundaries only).
GPU target: under 2 hours.

Usage: ``python bench/batched.py [--device cpu|cuda] [--runs 1,4,16,64] [--tasks 1] [--steps 40]
[--nets mlp,convnet] [--seq-cap 8] [--grid sweeps/lc26_table14.yaml]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from plasticity_bench.batch.trainer import execute_batch, plan_batches
from plasticity_bench.cli import plan
from plasticity_bench.run.config import RunConfig
from plasticity_bench.run.execute import execute
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.sweep.estimate import updates
from plasticity_bench.sweep.file import load_sweep
from plasticity_bench.sweep.plan import expand, sweep_base

NETS = {"mlp": "permuted_mnist@mnist5k", "convnet": "random_label_cifar"}
GRID = Path(__file__).resolve().parents[1] / "sweeps" / "lc26_table14.yaml"


def configs(scenario: str, runs: int, tasks: int, steps: int, device: str) -> list[RunConfig]:
    spec = SCENARIOS[scenario.split("@")[0]]
    base = sweep_base(spec, tasks, steps, device=torch.device(device).type)
    return expand(scenario, ["dense"], [1.0], list(range(runs)), base)


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def rate(run, n_runs: int, steps: int, device: str) -> float:
    """Run-steps per second of ``run()`` (which trains ``n_runs`` runs of ``steps`` updates each)."""
    sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    return n_runs * steps / (time.perf_counter() - start)


def write_cifar(root: Path) -> Path:
    """CIFAR-10 files in the real pickle format (random pixels) under ``root``; returns ``root``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from scenario_data import write_cifar10

    write_cifar10(root, np.random.default_rng(0))
    return root


def project_grid(grid: Path, device: str, sequential: float, batched: dict[int, float]) -> None:
    """Print the hours the Permuted-MNIST runs of ``grid`` take at the measured MLP rates (run-steps/s)."""
    configs = [
        c for c in plan(load_sweep(grid), torch.device(device).type, 1)[0] if c.scenario == "permuted_mnist"
    ]
    total = sum(updates(c) for c in configs)
    seconds = 0.0
    for batch in plan_batches(configs, max(batched)):
        reached = [r for r in batched if r <= len(batch)]
        seconds += len(batch) * updates(batch[0]) / (batched[max(reached)] if reached else sequential)
    print(
        f"\nPermuted-MNIST grid of {grid.name}: {len(configs)} runs, {total:,} updates at full length\n"
        f"  one after another: {total / sequential / 3600:,.1f} h\n"
        f"  run-batched (--batch-runs {max(batched)}): {seconds / 3600:,.1f} h"
    )


def measure(
    net: str, counts: list[int], args: argparse.Namespace, root: Path | None
) -> tuple[float, dict[int, float]]:
    """Print and return the sequential run-steps/s (of the last ``R``) and the batched one per ``R``."""
    scenario, steps = NETS[net], args.tasks * args.steps
    execute_batch(configs(scenario, 2, 1, 2, args.device), root, args.device)  # warm-up (imports, kernels)
    rates: dict[int, float] = {}
    for runs in counts:
        todo = configs(scenario, runs, args.tasks, args.steps, args.device)
        seq = todo[: min(runs, args.seq_cap)]
        sequential = rate(
            lambda s=seq: [execute(c, root, args.device) for c in s], len(seq), steps, args.device
        )
        rates[runs] = rate(lambda t=todo: execute_batch(t, root, args.device), runs, steps, args.device)
        print(f"{net:8} {runs:>4} {sequential:>23.0f} {rates[runs]:>20.0f} {rates[runs] / sequential:>6.2f}x")
    return sequential, rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", default="1,4,16,64")
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--nets", default="mlp,convnet")
    parser.add_argument("--seq-cap", type=int, default=8, help="most runs timed one after another")
    parser.add_argument(
        "--grid", type=Path, default=GRID, help="sweep file whose Permuted-MNIST runs to project"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    counts = [int(r) for r in args.runs.split(",")]
    print(f"device {args.device}, {args.tasks} task(s) x {args.steps} steps, Dense, one torch thread")
    print(f"{'net':8} {'R':>4} {'sequential run-steps/s':>23} {'batched run-steps/s':>20} {'ratio':>7}")
    nets = args.nets.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-cifar-") as folder:
        measured = {
            net: measure(net, counts, args, write_cifar(Path(folder)) if net == "convnet" else None)
            for net in nets
        }
    if "mlp" in measured:
        project_grid(args.grid, args.device, *measured["mlp"])


if __name__ == "__main__":
    main()
