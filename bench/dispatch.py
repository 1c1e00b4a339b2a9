"""Ops and host syncs per update of every built-in strategy family, lone and run-batched
(``plasticity_bench.measure.dispatch``; docs/protocol.md §12).

Prints one line per strategy and mode, for scripts to read:
``<strategy> <lone|batched16> ops/update <N> syncs/update <M> edit-ops <E> edit-syncs <S>``
(edit work inside tasks, DYNO's triggers, counted apart; task-boundary work is outside the window; a
batch runs the batched kernels a GPU runs; strategies that may not share a batch have no batched line).
Targets: 0 syncs per update, and a batched update's op count independent of the number of runs.

Usage: python bench/dispatch.py [--runs 16] [--device cpu]   (seconds on a CPU; mnist5k, no data needed)
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

from plasticity_bench.batch.trainer import BatchedTrainer
from plasticity_bench.measure.dispatch import DispatchWindow, OpCounts
from plasticity_bench.run.build import build_benchmark
from plasticity_bench.run.config import RunConfig
from plasticity_bench.run.execute import fresh_runs
from plasticity_bench.run.lone import LoneTrainer
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.strategies.registry import batchable
from plasticity_bench.sweep.plan import expand, sweep_base

STRATEGIES = (
    "dense", "grow", "prune", "dyno", "grow+two_speed", "grow+moment_transplant", "l2_init", "redo", "cbp",
)  # fmt: skip
TASKS, STEPS = 2, 40


def configs(strategy: str, runs: int, device: str) -> list[RunConfig]:
    """``runs`` short Permuted-MNIST (mnist5k) runs of ``strategy``, differing in seed."""
    spec = SCENARIOS["permuted_mnist"]
    base = sweep_base(spec, TASKS, STEPS, cycles=2, device=torch.device(device).type)
    return expand("permuted_mnist@mnist5k", [strategy], [0.5], list(range(runs)), base)


def counted(configs: list[RunConfig], device: str, batched: bool) -> OpCounts:
    """Train ``configs`` (one batch, or the first alone) with a window over updates 5-24 of task 1."""
    chosen = configs if batched else configs[:1]
    runs = fresh_runs(chosen, [build_benchmark(c, None) for c in chosen], device)
    window = DispatchWindow(task=1, first=4, updates=20)
    runs[0].plugins.append(window)
    make = partial(BatchedTrainer, kernels="batched") if batched else LoneTrainer  # the GPU's kernels
    make(runs, device).train()
    return window.counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for strategy in STRATEGIES:
        grid = configs(strategy, args.runs, args.device)
        modes = [("lone", False)] + ([(f"batched{args.runs}", True)] if batchable(strategy) else [])
        for mode, batched in modes:
            c = counted(grid, args.device, batched)
            print(
                f"{strategy} {mode} ops/update {c.ops_per_update:.1f} syncs/update {c.syncs_per_update:.2f} "
                f"edit-ops {c.edit_ops} edit-syncs {c.edit_syncs}"
                + (f"  ({', '.join(f'{k} x{v}' for k, v in c.syncs_by_name.items())})" if c.syncs else "")
            )


if __name__ == "__main__":
    main()
