"""Bad input gets one clear line and exit code 2 before any run trains; a results folder can hold any mix of
runs (one test per case the review reproduced), and two sweeps on one folder never compute a run twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from test_readers import write_idx
from typer.testing import CliRunner

from plasticity_bench.cli import app
from plasticity_bench.run.records import PROTOCOL_VERSION, ResultStore

QUICK = ["run", "--strategy", "dense", "--tasks", "2", "--steps", "5", "--seeds", "1"]


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    result.text = " ".join(result.output.split())
    return result


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "records").rglob("*.json"))]


def assert_input_error(result, *fragments: str) -> None:
    """Exit 2, one ``error:`` line naming the problem, no traceback."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.text, (fragment, result.output)


# --- a results folder holding runs that differ only in --cycles or an --option, or a copied record ---


def test_runs_differing_in_cycles_or_an_option_share_a_folder(tmp_path: Path) -> None:
    out = str(tmp_path)
    base = [*QUICK[:2], "grow", *QUICK[3:], "--out", out]
    for extra in ([], ["--cycles", "3"], ["--option", "selector=gradient"]):
        result = invoke(*base, *extra)
        assert result.exit_code == 0, result.output
    assert len(records(tmp_path)) == 3
    board = invoke("leaderboard", "--out", out)
    assert board.exit_code == 0, board.output
    rows = (tmp_path / "leaderboard.csv").read_text().splitlines()[1:]
    assert len(rows) == 3
    md = (tmp_path / "leaderboard.md").read_text()
    assert "cycles=3" in md and "option.selector=gradient" in md


def test_a_copied_record_is_named_and_skipped(tmp_path: Path) -> None:
    assert invoke(*QUICK, "--out", str(tmp_path)).exit_code == 0
    (original,) = (tmp_path / "records").rglob("*.json")
    original.with_name("a (copy).json").write_bytes(original.read_bytes())
    for args in (("leaderboard", "--out", str(tmp_path)), (*QUICK, "--out", str(tmp_path))):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert "skipped duplicate record" in result.text and "a (copy).json" in result.text
        assert "1 records; 1 files skipped" in result.text


# --- counts, data, device, plugins: refused before training ---


@pytest.mark.parametrize(
    ("flag", "value"), [("--tasks", "0"), ("--steps", "0"), ("--tasks", "-1"), ("--steps", "-5")]
)
def test_counts_below_one_are_refused(tmp_path: Path, flag: str, value: str) -> None:
    result = invoke(*QUICK, flag, value, "--out", str(tmp_path))
    assert_input_error(result, f"{flag} {value}: must be at least 1")
    assert not (tmp_path / "records").exists()


def test_an_idx_file_with_no_images_is_refused_before_training(tmp_path: Path) -> None:
    raw = tmp_path / "data" / "MNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte.gz", np.zeros((0, 28, 28), np.uint8))
    write_idx(raw / "train-labels-idx1-ubyte.gz", np.zeros(0, np.uint8))
    result = invoke(
        *QUICK,
        "--scenario",
        "permuted_mnist",
        "--data-root",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "out"),
    )
    assert_input_error(result, "train-images-idx3-ubyte.gz", "holds no items")
    assert not (tmp_path / "out" / "records").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_cuda_without_a_gpu_is_refused(tmp_path: Path) -> None:
    assert_input_error(invoke(*QUICK, "--device", "cuda", "--out", str(tmp_path)), "no CUDA GPU")


def test_an_unknown_device_is_refused(tmp_path: Path) -> None:
    assert_input_error(invoke(*QUICK, "--device", "gpu", "--out", str(tmp_path)), "--device gpu", "cpu, cuda")


@pytest.mark.parametrize(
    ("name", "fragment"), [("json:dumps", "failed when built"), ("math:pi", "not callable")]
)
def test_a_user_plugin_that_is_not_one_is_refused(tmp_path: Path, name: str, fragment: str) -> None:
    result = invoke(*QUICK, "--strategy", name, "--out", str(tmp_path))
    assert_input_error(result, name, fragment)
    assert not (tmp_path / "records").exists()


# --- options: unknown, unused, typed ---


def test_unknown_option_key_is_refused_with_the_valid_keys(tmp_path: Path) -> None:
    result = invoke(*QUICK[:2], "grow", *QUICK[3:], "--option", "bogus_key=1", "--out", str(tmp_path))
    assert_input_error(result, "bogus_key", "valid keys:", "selector", "subset", "diagnostics")


def test_option_unused_by_the_sweep_is_refused(tmp_path: Path) -> None:
    result = invoke(*QUICK, "--option", "rewind=none", "--out", str(tmp_path))  # dense reads no rewind
    assert_input_error(result, "rewind", "permuted_mnist@mnist5k with dense")


@pytest.mark.parametrize(("text", "value"), [("no", False), ("0", False), ("false", False), ("yes", True)])
def test_booleans_accept_words_and_digits(tmp_path: Path, text: str, value: bool) -> None:
    result = invoke(*QUICK[:2], "grow", *QUICK[3:], "--option", f"diagnostics={text}", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    (record,) = records(tmp_path)
    assert record["config"]["options"]["diagnostics"] is value
    assert ("diagnostics" in record) is value


def test_wrongly_typed_option_is_refused(tmp_path: Path) -> None:
    result = invoke(*QUICK[:2], "grow", *QUICK[3:], "--option", "diag_every=often", "--out", str(tmp_path))
    assert_input_error(result, "diag_every=often", "expected an integer")
    result = invoke(*QUICK[:2], "grow", *QUICK[3:], "--option", "selector=best", "--out", str(tmp_path))
    assert_input_error(result, "selector=best", "activation, gradient")


# --- an unusable --out is found before the first run trains ---


def test_out_that_is_a_file_is_refused_before_training(tmp_path: Path) -> None:
    target = tmp_path / "results.txt"
    target.write_text("not a folder")
    assert_input_error(invoke(*QUICK, "--out", str(target)), "is a file")
    assert_input_error(invoke(*QUICK, "--out", str(target / "sub")), "cannot write there")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_refused_before_training(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert_input_error(invoke(*QUICK, "--out", str(folder)), "cannot write there")
    finally:
        folder.chmod(0o755)


# --- records of older code are not reused as current ---


def test_stale_records_are_rerun_unless_allowed(tmp_path: Path) -> None:
    assert invoke(*QUICK, "--out", str(tmp_path)).exit_code == 0
    (path,) = (tmp_path / "records").rglob("*.json")
    record = json.loads(path.read_text())
    record["code"]["protocol"] = PROTOCOL_VERSION - 1
    record["summary"]["taoa"] = 0.123456
    path.write_text(json.dumps(record))
    allowed = invoke(*QUICK, "--out", str(tmp_path), "--allow-stale")
    assert allowed.exit_code == 0 and "1 runs, 1 already on disk" in allowed.text
    assert json.loads(path.read_text())["summary"]["taoa"] == 0.123456
    rerun = invoke(*QUICK, "--out", str(tmp_path))
    assert rerun.exit_code == 0
    assert "1 records of an older protocol version or strategy file will be rerun" in rerun.text
    fresh = json.loads(path.read_text())
    assert fresh["code"]["protocol"] == PROTOCOL_VERSION and fresh["summary"]["taoa"] != 0.123456


def test_threads_are_part_of_the_run_key(tmp_path: Path) -> None:
    assert invoke(*QUICK, "--out", str(tmp_path)).exit_code == 0
    result = invoke(*QUICK, "--threads", "2", "--out", str(tmp_path))
    assert result.exit_code == 0 and "1 runs, 0 already on disk" in result.text
    assert sorted(r["config"]["threads"] for r in records(tmp_path)) == [1, 2]


# --- a corrupt record: reported by path and skipped in run and leaderboard ---


def test_truncated_record_is_reported_and_skipped(tmp_path: Path) -> None:
    assert invoke(*QUICK, "--out", str(tmp_path)).exit_code == 0
    (path,) = (tmp_path / "records").rglob("*.json")
    stray = path.with_name("stray.json")
    stray.write_text(path.read_text()[:40])
    for args in (("leaderboard", "--out", str(tmp_path)), (*QUICK, "--out", str(tmp_path))):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
        assert "skipped corrupt record" in result.text and "stray.json" in result.text
        assert "1 files skipped" in result.text
    assert ResultStore(tmp_path).load().corrupt[0][0] == stray


# --- two sweeps on one folder ---

SLOW_PLUGIN = '''
import os
import time
from pathlib import Path

from avalanche.core import SupervisedPlugin


class Slow(SupervisedPlugin):
    """Logs every run it trains (pid, seed) and takes a while, so two sweeps overlap."""

    def __init__(self, config):
        super().__init__()
        self.config = config

    def before_training_exp(self, strategy, **kwargs):
        if strategy.experience.current_experience:  # once per run, not per task
            return
        with Path(__file__).with_name("runs.log").open("a") as f:
            f.write(f"{os.getpid()} {self.config.seed}\\n")
        time.sleep(0.6)
'''


def test_two_sweeps_on_one_folder_never_compute_a_run_twice(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(textwrap.dedent(SLOW_PLUGIN))
    command = [
        sys.executable, "-m", "plasticity_bench.cli", "run", "--strategy", f"{tmp_path / 'slow.py'}:Slow",
        "--tasks", "2", "--steps", "2", "--seeds", "6", "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "300"}
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    runs = (tmp_path / "runs.log").read_text().split()
    seeds = sorted(int(s) for s in runs[1::2])
    assert seeds == list(range(6)), runs  # each seed trained exactly once
    assert len(set(runs[0::2])) == 2, "both processes should have run some seeds"
    for output in outputs:  # each prints the complete row of its sweep: all six seeds
        assert "(n=6)" in output, output
    assert not list(tmp_path.rglob("*.lock"))  # every record is there: no lock file is left beside it
