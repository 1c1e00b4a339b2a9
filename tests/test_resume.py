"""Resumable runs (plasticity_bench.run.resume): a run killed with SIGKILL and restarted from its checkpoint
writes the record an uninterrupted run writes, bit for bit (but for ``created`` and ``wall_seconds``)."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
import torch

from plasticity_bench.run.execute import execute
from plasticity_bench.run.records import run_key
from plasticity_bench.run.resume import CheckpointPolicy, RunCheckpoint, checkpoint_key, verified
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.sweep.plan import expand, sweep_base

VARIANTS = {  # name: (scenario, strategy, tasks, steps, model, options, winning ticket, kill at on_task call)
    "dense": ("permuted_mnist", "dense", 6, 8, None, {}, False, 4),
    "grow": ("permuted_mnist", "grow", 6, 8, None, {}, False, 4),
    "prune": ("permuted_mnist", "prune", 6, 8, None, {"rewind": "imp"}, False, 4),
    "dyno": ("permuted_mnist", "dyno", 6, 10, "kumar_mlp", {"trigger_every": 4, "dyno_delta": 0.0}, False, 4),
    "tiny_er": ("split_mnist", "grow", 5, 4, None, {}, False, 4),
    "ticket": (
        "permuted_mnist", "grow+two_speed+moment_transplant", 6, 8, None, {"two_speed_window": 12}, True, 10,
    ),
}  # fmt: skip


def run_variant(name: str, mode: str, out: Path, data_root: Path) -> dict:
    """Run one variant; ``kill`` sends SIGKILL to this process at the variant's ``on_task`` call (in the
    ticket variant: inside the winning-ticket phase); ``plain`` runs without a checkpoint."""
    scenario, strategy, tasks, steps, model, options, wt, kill_at = VARIANTS[name]
    base = sweep_base(SCENARIOS[scenario], tasks, steps, model=model, winning_ticket=wt)
    (config,) = expand(scenario, [strategy], [0.5], [0], base, options)
    checkpoint = RunCheckpoint(out / f"{name}.pt", run_key(config.as_dict()), CheckpointPolicy(tasks=1))
    calls: list[int] = []

    def on_task(task: int) -> None:
        calls.append(task)
        if mode == "kill" and len(calls) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    record = execute(config, data_root, "cpu", on_task, checkpoint if mode != "plain" else None)
    record.pop("created"), record.pop("wall_seconds")
    return json.loads(json.dumps(record, sort_keys=True))


def unpickled(path: Path) -> dict:
    """A checkpoint's payload, read the way :class:`RunCheckpoint` reads it (signature first)."""
    data = verified(path.read_bytes(), checkpoint_key())
    assert data is not None, f"{path} is not signed with the session's key"
    return torch.load(io.BytesIO(data), weights_only=False)


def test_killed_runs_resume_to_the_uninterrupted_record(data_root: Path, tmp_path: Path) -> None:
    """Kill each run with SIGKILL after task 3 (the ticket variant: task 3 of its retraining; the
    checkpoint is then task 2's), restart it, compare its record with an uninterrupted run's."""
    fork = multiprocessing.get_context("fork")
    for name in VARIANTS:
        plain = run_variant(name, "plain", tmp_path, data_root)
        killed = fork.Process(target=run_variant, args=(name, "kill", tmp_path, data_root))
        killed.start()
        killed.join(300)
        assert killed.exitcode == -signal.SIGKILL, name  # killed: no cleanup ran
        saved = unpickled(tmp_path / f"{name}.pt")
        assert saved["next_task"] == 3 and saved["phase"] == ("ticket" if name == "ticket" else "cycle")
        resumed = run_variant(name, "resume", tmp_path, data_root)
        assert json.dumps(resumed, sort_keys=True) == json.dumps(plain, sort_keys=True), name
        if name == "dyno":
            assert plain["dyno"]["events"], "the DYNO run should change its width, so its state matters"
        if name == "ticket":
            assert "wt_taoa" in plain["summary"] and plain["diagnostics"]


def test_checkpoint_policy_parsing_and_due() -> None:
    assert CheckpointPolicy.parse("5") == CheckpointPolicy(tasks=5)
    assert CheckpointPolicy.parse("10m") == CheckpointPolicy(minutes=10.0)
    assert not CheckpointPolicy.parse("off").enabled
    for bad in ("x", "-1", "2.5", "10h"):
        with pytest.raises(ValueError, match="--checkpoint-every"):
            CheckpointPolicy.parse(bad)
    assert CheckpointPolicy(tasks=2).due(2, 0.0) and not CheckpointPolicy(tasks=2).due(1, 1e9)
    assert CheckpointPolicy(minutes=1).due(1, 60.0) and not CheckpointPolicy(minutes=1).due(9, 59.0)


def test_a_checkpoint_of_another_run_or_a_corrupt_one_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "run.pt"
    RunCheckpoint(path, "key-a", CheckpointPolicy(tasks=1)).save({"next_task": 2})
    assert RunCheckpoint(path, "key-a", CheckpointPolicy()).load()["next_task"] == 2
    with pytest.warns(UserWarning, match="another run"):
        assert RunCheckpoint(path, "key-b", CheckpointPolicy()).load() is None
    assert not path.exists()
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="not signed.*restarting the run from scratch"):
        assert RunCheckpoint(path, "key-a", CheckpointPolicy()).load() is None
    assert not path.exists()


class Planted:
    """A pickle that runs code when loaded: what a hostile results folder could hold."""

    def __reduce__(self) -> tuple:
        return (Path.touch, (Path(os.environ["PLANTED_MARK"]),))


def test_a_planted_or_tampered_checkpoint_is_refused_without_unpickling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mark = tmp_path / "code-ran"
    monkeypatch.setenv("PLANTED_MARK", str(mark))
    path = tmp_path / "run.pt"
    torch.save({"key": "key-a", "schema": 2, "x": Planted()}, path)  # planted: a plain, unsigned pickle
    with pytest.warns(UserWarning, match="foreign or tampered"):
        assert RunCheckpoint(path, "key-a", CheckpointPolicy()).load() is None
    assert not mark.exists() and not path.exists()
    RunCheckpoint(path, "key-a", CheckpointPolicy(tasks=1)).save({"next_task": 2})
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF  # one flipped byte in the signed pickle
    path.write_bytes(bytes(blob))
    assert not RunCheckpoint(path, "key-a", CheckpointPolicy()).usable()
    with pytest.warns(UserWarning, match="foreign or tampered"):
        assert RunCheckpoint(path, "key-a", CheckpointPolicy()).load() is None
    other = RunCheckpoint(path, "key-a", CheckpointPolicy(), signing_key=b"k" * 32)  # another user's key
    other.save({"next_task": 1})
    with pytest.warns(UserWarning, match="foreign"):
        assert RunCheckpoint(path, "key-a", CheckpointPolicy()).load() is None


def test_checkpoint_faults_warn_and_the_run_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.pt"
    leftover = tmp_path / ".run.pt.abc123.tmp"  # what a kill during a save leaves
    leftover.write_bytes(b"half")
    checkpoint = RunCheckpoint(path, "key-a", CheckpointPolicy(tasks=1))
    assert checkpoint.load() is None and not leftover.exists()

    def full_disk(path: Path, write: object) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("plasticity_bench.run.resume.atomic_write", full_disk)
    with pytest.warns(UserWarning, match="No space left on device.*continuing without it"):
        checkpoint.save({"next_task": 1})
    assert not path.exists()


def test_sweep_resumes_from_a_checkpoint_and_removes_it(data_root: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from plasticity_bench.cli import app

    args = ["run", "--scenario", "permuted_mnist", "--strategy", "grow", "--seeds", "1", "--tasks", "3"]
    args += ["--steps", "4", "--data-root", str(data_root), "--out", str(tmp_path), "--checkpoint-every", "1"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    (record,) = (tmp_path / "records").rglob("*.json")
    assert not list((tmp_path / "checkpoints").rglob("*.pt"))  # removed once the record is written
    assert json.loads(record.read_text())["config"]["tasks"] == 3


BATCH_VARIANTS = {  # name: (scenario, strategy, tasks, steps, winning ticket, kill at on_task call)
    "grow": ("permuted_mnist", "grow+two_speed", 5, 6, False, 9),  # 4 runs: inside task 2
    "ticket": ("split_mnist", "prune", 3, 4, True, 17),  # inside the winning ticket's task 1
}


def run_batch(name: str, mode: str, out: Path, data_root: Path) -> list[str]:
    """One run-batch of 4 runs; ``kill`` SIGKILLs this process at the variant's ``on_task`` call."""
    from plasticity_bench.batch.trainer import execute_batch

    scenario, strategy, tasks, steps, wt, kill_at = BATCH_VARIANTS[name]
    base = sweep_base(SCENARIOS[scenario], tasks, steps, winning_ticket=wt)
    configs = expand(scenario, [strategy], [0.5, 0.25], [0, 1], base, {"two_speed_window": 10}
                     if "two_speed" in strategy else {})  # fmt: skip
    checkpoint = RunCheckpoint(out / f"batch-{name}.pt", f"batch-{name}", CheckpointPolicy(tasks=1))
    calls: list[int] = []

    def on_task(task: int) -> None:
        calls.append(task)
        if mode == "kill" and len(calls) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    records = execute_batch(
        configs, data_root, "cpu", on_task, checkpoint=checkpoint if mode != "plain" else None
    )
    out_records = []
    for record in records:
        record.pop("created"), record.pop("wall_seconds"), record["batched"].pop("wall_seconds")
        out_records.append(json.dumps(record, sort_keys=True))
    return out_records


@pytest.mark.parametrize("name", list(BATCH_VARIANTS))
def test_a_killed_run_batch_resumes_to_the_uninterrupted_records(
    name: str, data_root: Path, tmp_path: Path
) -> None:
    """Batched runs checkpoint and resume bit for bit like lone runs: SIGKILL mid-batch (the ticket
    variant: inside the winning ticket's retraining), restart, compare with an uninterrupted batch."""
    plain = run_batch(name, "plain", tmp_path, data_root)
    killed = multiprocessing.get_context("fork").Process(
        target=run_batch, args=(name, "kill", tmp_path, data_root)
    )
    killed.start()
    killed.join(300)
    assert killed.exitcode == -signal.SIGKILL
    saved = unpickled(tmp_path / f"batch-{name}.pt")
    assert saved["phase"] == ("ticket" if name == "ticket" else "cycle") and saved["next_task"] >= 1
    assert run_batch(name, "resume", tmp_path, data_root) == plain


def test_a_killed_batch_sweep_continues_to_identical_records(data_root: Path, tmp_path: Path) -> None:
    """The issue's case: a ``--batch-runs 4`` sweep SIGKILLed mid-run continues to identical records."""
    import subprocess
    import sys
    import time

    args = [
        sys.executable, "-m", "plasticity_bench.cli", "run", "--scenario", "permuted_mnist", "--strategy",
        "grow", "--compactness", "0.5,0.25", "--seeds", "2", "--tasks", "8", "--steps", "150",
        "--data-root", str(data_root), "--batch-runs", "4", "--checkpoint-every", "1",
    ]  # fmt: skip
    subprocess.run([*args, "--out", str(tmp_path / "plain")], check=True, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while (
        not list(out.glob("checkpoints/batches/*.pt")) and time.monotonic() < deadline and proc.poll() is None
    ):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert list(out.glob("checkpoints/batches/*.pt")) and not list(out.glob("records/**/*.json"))
    resumed = subprocess.run([*args, "--out", str(out)], check=True, capture_output=True, text=True)
    assert "4 runs continue from their checkpoint" in resumed.stdout  # the batch's, counted per run
    assert not list(out.glob("checkpoints/batches/*.pt"))  # removed once the records are written

    def records(root: Path) -> dict[str, str]:
        found = {}
        for path in sorted((root / "records").rglob("*.json")):
            record = json.loads(path.read_text())
            for key in ("created", "wall_seconds"):
                record.pop(key)
            record["batched"].pop("wall_seconds")
            found[path.name] = json.dumps(record, sort_keys=True)
        return found

    assert records(out) == records(tmp_path / "plain") and len(records(out)) == 4
