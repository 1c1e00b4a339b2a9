"""Per-step cost of the interventions, cohort diagnostics and DYNO, against plain Grow / Dense.

Runs ``OnlineStrategy`` on one synthetic task (MLP, batch 16, Adam) with the plugins that
``plasticity_bench.strategies.registry.build_plugins`` makes for each variant, interleaved, best of N:

- ``grow``: Grow without diagnostics (the reference of the Grow variants);
- ``grow+diag(no snapshot)``: diagnostics attached, no curve points (ordinary steps only);
- ``grow+diag(every 100)``: diagnostics with post-birth curve points every 100 steps;
- ``grow+two_speed``: a Two-Speed cohort live for the whole task (window >= steps);
- ``dense(2x width)`` (the reference of DYNO, whose model carries a 2x reserve), ``dyno(no trigger)``
  (buffer hooks only) and ``dyno(every 50)``.

Usage: ``python bench/structural_overhead.py [--steps 1000] [--repeats 3] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from avalanche.training.plugins import EvaluationPlugin
from overhead import BATCH, benchmark, make_data

from plasticity_bench.core.models import build_model
from plasticity_bench.run.config import OptimizerSpec
from plasticity_bench.run.loop import OnlineStrategy
from plasticity_bench.scenarios.stream import TaskData
from plasticity_bench.strategies.base import StrategyConfig
from plasticity_bench.strategies.registry import build_plugins, entry_for, split_name

VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "grow": ("grow", {"diagnostics": False}),
    "grow+diag(no snapshot)": ("grow", {"diag_every": 0}),
    "grow+diag(every 100)": ("grow", {}),
    "grow+two_speed": ("grow+two_speed", {"diagnostics": False, "two_speed_window": 10**9}),
    "dense(2x width)": ("dense", {"width": 2.0}),
    "dyno(no trigger)": ("dyno", {"trigger_every": 10**9}),
    "dyno(every 50)": ("dyno", {}),
}


def run_variant(name: str, options: dict[str, object], data: TaskData, steps: int) -> float:
    """Seconds per step of one task of ``steps`` updates with the plugins of strategy ``name``."""
    config = StrategyConfig(  # one task: its edit at step 0 (the exit placement needs two tasks)
        name, compactness=0.5, cycles=1, n_tasks=1, modifiers=split_name(name)[1], options=options,
        edit_placement="step0",
    )  # fmt: skip
    torch.manual_seed(0)
    width = float(options.get("width", entry_for(name).width_factor(config)))
    model = build_model("mlp", (1, 28, 28), 10, width_factor=width)
    strategy = OnlineStrategy(
        model=model, optimizer=OptimizerSpec("adam").build(model.parameters(), 1e-3), train_mb_size=BATCH,
        steps_per_task=steps, seed=0, plugins=build_plugins(config), evaluator=EvaluationPlugin(loggers=[]),
    )  # fmt: skip
    start = time.perf_counter()
    strategy.train(benchmark(data, steps).train_stream[0])
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    data = make_data()
    best = dict.fromkeys(VARIANTS, float("inf"))
    for _ in range(args.repeats):
        for label, (name, options) in VARIANTS.items():
            best[label] = min(best[label], run_variant(name, options, data, args.steps))
    print(f"threads={torch.get_num_threads()} steps={args.steps} batch={BATCH} model=mlp")
    for label, seconds in best.items():
        reference = best["dense(2x width)"] if label.startswith(("dyno", "dense")) else best["grow"]
        print(f"{label:24s} {seconds * 1e3:.3f} ms/step {seconds / reference:.2f}x")


if __name__ == "__main__":
    main()
