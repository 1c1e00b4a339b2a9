"""Per-step time of three loops on the same tensors, measured side by side in one run.

(a) a bare PyTorch loop doing the same math (forward, cross-entropy, backward, Adam step);
(b) Avalanche's ``Naive`` strategy with its minibatch-accuracy metric;
(c) ours: ``OnlineStrategy`` with all online metrics and a Grow plugin attached;
(d) ours with experiment loggers: (c) plus TensorBoard and CSV loggers (``--logger``), which must add no
    per-step cost (our metrics hand values to loggers only at task ends: no per-step host sync).

All three train the same dense MLP with the same optimizer (``OptimizerSpec.build``): the Grow plugin
runs at compactness 1.0 with one cycle, so after its task-0 edit every unit is active and the math is
identical; what differs is only the machinery around the step.

Usage: ``python bench/overhead.py [--steps 512] [--repeats 10] [--threads 1] [--device cpu]``.
Prints one line per loop with ms/step and the ratio to (a). Targets: (c)/(a) <= 1.2, (d)/(c) ~ 1.0.
Per-step time is the difference between a run of 3S and a run of S steps divided by 2S, so fixed costs
(building the strategy, Avalanche's per-experience set-up, the Grow edit) cancel out. The loops run
interleaved and each length keeps its best repeat: on a shared virtual machine, short repeats and the
minimum are far less noisy than one long run.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.logging import TensorboardLogger
from avalanche.training import Naive
from avalanche.training.plugins import EvaluationPlugin
from torch import nn

from plasticity_bench.core.models import build_model
from plasticity_bench.measure.metrics import TrainingLossLog
from plasticity_bench.run.build import OnlineMetrics
from plasticity_bench.run.config import OptimizerSpec
from plasticity_bench.run.loggers import MetricCSVLogger, close_loggers
from plasticity_bench.run.loop import OnlineStrategy
from plasticity_bench.scenarios.stream import StreamInfo, TaskBenchmark, TaskData, TaskStream
from plasticity_bench.strategies.base import StrategyConfig
from plasticity_bench.strategies.grow import GrowPlugin

BATCH = 16


def make_data(n: int = 4096) -> TaskData:
    gen = torch.Generator().manual_seed(0)
    return TaskData(torch.randn(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen))


def fresh_model(device: str) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = build_model("mlp", (1, 28, 28), 10).to(device)
    return model, OptimizerSpec("adam").build(model.parameters(), 1e-3)


def bare_loop(data: TaskData, steps: int, device: str) -> None:
    model, opt = fresh_model(device)
    x, y = data.x.to(device), data.y.to(device)
    per_epoch = len(x) // BATCH
    perm = torch.randperm(len(x)).to(device)
    for step in range(steps):
        j = step % per_epoch
        if j == 0:
            perm = torch.randperm(len(x)).to(device)
        index = perm[j * BATCH : (j + 1) * BATCH]
        xb, yb = x[index], y[index]
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()


def benchmark(data: TaskData, steps: int) -> TaskBenchmark:
    stream = TaskStream("train", 1, lambda i: data)
    return TaskBenchmark(stream, StreamInfo("bench", None, (1, 28, 28), 10, "random"))


def avalanche_naive(data: TaskData, steps: int, device: str) -> None:
    model, opt = fresh_model(device)
    evaluator = EvaluationPlugin(accuracy_metrics(minibatch=True), loggers=[])
    epochs = max(1, round(steps * BATCH / len(data.x)))
    strategy = Naive(
        model=model,
        optimizer=opt,
        train_mb_size=BATCH,
        train_epochs=epochs,
        device=device,
        evaluator=evaluator,
    )
    strategy.train(benchmark(data, steps).train_stream[0])


def ours(data: TaskData, steps: int, device: str, log_dir: Path | None = None) -> None:
    model, opt = fresh_model(device)
    grow = GrowPlugin(StrategyConfig("grow", compactness=1.0, cycles=1, n_tasks=1, edit_placement="step0"))
    loggers, plugins = [], [grow]
    if log_dir is not None:  # what a run with loggers has: the loggers and the loss it logs
        run = Path(tempfile.mkdtemp(dir=log_dir))
        config = {"scenario": "permuted_mnist", "variant": None, "strategy": "grow", "compactness": 1.0,
                  "lr": 1e-3, "seed": 0}  # fmt: skip
        loggers = [TensorboardLogger(tb_log_dir=run / "tb"), MetricCSVLogger(run / "metrics.csv", config)]
        plugins.append(TrainingLossLog())
    evaluator = OnlineMetrics.new("none").evaluator(loggers)
    strategy = OnlineStrategy(
        model=model, optimizer=opt, train_mb_size=BATCH, steps_per_task=steps, seed=0, device=device,
        plugins=plugins, evaluator=evaluator,
    )  # fmt: skip
    strategy.train(benchmark(data, steps).train_stream[0])
    close_loggers(loggers)


def time_loop(loop: Callable[[TaskData, int, str], None], data: TaskData, steps: int, device: str) -> float:
    start = time.perf_counter()
    loop(data, steps, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    data = make_data()
    # Avalanche Naive runs whole epochs: every length is a whole number of epochs.
    epoch = len(data.x) // BATCH
    short = max(1, round(args.steps / epoch)) * epoch
    with tempfile.TemporaryDirectory(prefix="bench-loggers-") as log_dir:
        loops = {
            "bare": bare_loop, "avalanche": avalanche_naive, "ours": ours,
            "ours+loggers": functools.partial(ours, log_dir=Path(log_dir)),
        }  # fmt: skip
        best = {(name, n): float("inf") for name in loops for n in (short, 3 * short)}
        for _ in range(args.repeats):
            for name, loop in loops.items():
                for n in (short, 3 * short):
                    best[name, n] = min(best[name, n], n * time_loop(loop, data, n, args.device))
    per_step = {name: (best[name, 3 * short] - best[name, short]) / (2 * short) for name in loops}
    threads = torch.get_num_threads()
    print(f"device={args.device} threads={threads} steps={short}/{3 * short} batch={BATCH} model=mlp")
    for name, seconds in per_step.items():
        print(f"{name}: {seconds * 1e3:.3f} ms/step {seconds / per_step['bare']:.2f}x")


if __name__ == "__main__":
    main()
