"""Time DYNO's transfer runs (docs/protocol.md §17) at the paper's size: VGG11 at 224 px, batch 64, for
``dense``, ``dense+sft``, ``dyno`` and ``dyno+sft``, on stand-in images (random tensors of Imagenette's
shape: the cost of an update does not depend on the pixels), and project the 1000 iterations of one run.

Prints one line per strategy, side by side in one run::

    <strategy> ms/update <t> run(1000) <s> s peak <GiB> GiB final GFLOPs <f>

Usage: ``python bench/transfer.py --device cuda [--steps 60]``; on a CPU, ``--width-scale 0.0625`` gives
a quick look at the machinery (its times mean nothing for a GPU). Each time includes the run's setup and
its final test pass on 64 stand-in images.
"""

from __future__ import annotations

import argparse

import torch

from plasticity_bench.run.config import RunConfig
from plasticity_bench.run.execute import execute
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.scenarios.standin import standin_streams

STRATEGIES = ("dense", "dense+sft", "dyno", "dyno+sft")
PAPER_STEPS = 1000


def time_run(strategy: str, args: argparse.Namespace) -> str:
    """One stand-in run of ``strategy``; its line of the table."""
    spec = SCENARIOS["imagenette"]
    options = {"width_scale": args.width_scale, "weight_decay": 1e-3}  # stand-in images are 224 px
    config = RunConfig(
        "imagenette", None, strategy, 1.0, 0, spec.lr, "vgg11", 1, args.steps, args.batch_size,
        optimizer="adam", options=options, device=torch.device(args.device).type,
    )  # fmt: skip
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with standin_streams():
        record = execute(config, None, args.device)
    per_update = record["wall_seconds"] / args.steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return (
        f"{strategy} ms/update {1e3 * per_update:.1f} run({PAPER_STEPS}) {per_update * PAPER_STEPS:.0f} s "
        f"peak {peak:.1f} GiB final GFLOPs {record['summary']['flops'] / 1e9:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=60, help="updates per strategy (DYNO triggers at 50)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width-scale", type=float, default=1.0)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    args = parser.parse_args()
    for strategy in args.strategies.split(","):
        print(time_run(strategy, args), flush=True)


if __name__ == "__main__":
    main()
