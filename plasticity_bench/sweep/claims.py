"""Running a sweep safely: every input checked before the first run, runs claimed by per-key file locks.

:func:`preflight` validates what would otherwise fail mid-sweep (device, results folder, data, plugins);
:func:`run_sweep` runs the pending configs in this process (:mod:`plasticity_bench.sweep.cluster` on Ray), so
that concurrent sweeps on one results folder never compute one run twice: a run is claimed by its lock
file (``ResultStore.lock``); a run claimed by another process is deferred, then waited for at the end and
only computed here if that process left no record.
"""

from __future__ import annotations

import hashlib
import tempfile
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from plasticity_bench.batch.trainer import auto_batch_runs, batch_groups, execute_batch, plan_batches
from plasticity_bench.core.vgg import WEIGHTS, check_weights
from plasticity_bench.run.build import build_benchmark, scenario_of
from plasticity_bench.run.config import RunConfig
from plasticity_bench.run.execute import execute
from plasticity_bench.run.loggers import Recording
from plasticity_bench.run.records import ResultStore, canonical_json, run_key
from plasticity_bench.run.resume import CheckpointPolicy, RunCheckpoint
from plasticity_bench.strategies.registry import build_plugins

DEVICE_KINDS = ("cpu", "cuda")


def device_kind(device: str) -> str:
    """The kind (``cpu`` or ``cuda``) of a torch device string, checked to be usable here.

    Raises:
        ValueError: for a string torch cannot parse, a kind other than cpu/cuda, or CUDA without a GPU.
    """
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"--device {device}: not a torch device; use cpu, cuda or cuda:N") from err
    if kind not in DEVICE_KINDS:
        raise ValueError(f"--device {device}: {kind} is not supported; use cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"--device {device}: torch sees no CUDA GPU here (torch.cuda.is_available() is False)"
        )
    return kind


def check_writable(out: Path) -> None:
    """Create ``out`` if needed and prove a file can be written there (a probe file, removed again).

    Raises:
        ValueError: ``out`` is a file, or a file cannot be created in it (naming the OS error).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, not a folder; give a folder for the results")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-probe-"):
            pass
    except OSError as err:
        raise ValueError(
            f"--out {out}: cannot write there ({err.strerror or err}); choose a writable folder"
        ) from err


def preflight(configs: list[RunConfig], out: Path, data_root: Path | None, device: str) -> None:
    """Check everything a sweep needs before its first run trains.

    The device exists, ``out`` is writable, every scenario's data is present and well formed (its stream is
    built for the first seed, which reads and validates the files, and its first task holds a full batch),
    every strategy builds real Avalanche plugins, and a pretrained-weights file named by ``--weights`` is
    there (:func:`~plasticity_bench.core.vgg.check_weights`).

    Raises:
        ValueError: as :func:`device_kind`, :func:`check_writable`, or a strategy that builds no plugins;
            WeightsError (a ValueError) for a missing weights file.
        plasticity_bench.scenarios.readers.DatasetNotFoundError,
        plasticity_bench.scenarios.readers.CorruptDatasetError: missing or bad data.
    """
    device_kind(device)
    check_writable(out)
    streams = {(c.scenario, c.variant, c.tasks, canonical_json(scenario_of(c)[2])): c for c in configs}
    largest = {}
    for config in configs:
        stream = (config.scenario, config.variant, config.tasks, canonical_json(scenario_of(config)[2]))
        largest[stream] = max(largest.get(stream, 0), config.batch_size)
    for stream, config in streams.items():
        _, benchmark = build_benchmark(config, data_root)
        rows = len(benchmark.train_stream[0].task.y)
        if rows < largest[stream]:
            raise ValueError(
                f"--batch-size {largest[stream]}: a task of {config.scenario} has {rows} training rows; "
                f"use at most {rows}"
            )
    strategies = {(c.strategy, c.compactness, canonical_json(c.options)): c for c in configs}
    for config in strategies.values():
        build_plugins(config.strategy_config())
    for source in {WEIGHTS.get(c.options) for c in configs}:
        check_weights(source)


@dataclass(frozen=True)
class SweepSettings:
    """What every run of a sweep shares: where the data is, the device, whether stale records count as
    done, whether existing records are rerun, the checkpoint policy, the run-batch size and what runs
    record besides results (learning-curve bin, experiment loggers)."""

    data_root: Path | None = None
    device: str = "cpu"
    allow_stale: bool = False
    force: bool = False
    policy: CheckpointPolicy = field(default_factory=CheckpointPolicy)
    batch_runs: int | None = 1  # runs trained together (docs/protocol.md §12); None: auto
    recording: Recording = field(default_factory=Recording)

    def batches(self, todo: list[RunConfig], store: ResultStore | None = None) -> list[list[RunConfig]]:
        """``todo`` cut into run-batches (:func:`~plasticity_bench.batch.trainer.plan_batches`); with
        ``auto``, each group's size fits the device memory
        (:func:`~plasticity_bench.batch.trainer.auto_batch_runs`). Runs with a checkpoint of their own under
        ``store`` run alone, so they continue from it; a batch continues from its batch checkpoint
        (:func:`batch_checkpoint`) when the same runs are batched again."""
        lone = [c for c in todo if store is not None and store.checkpoint_path(c.as_dict()).is_file()]
        rest = [c for c in todo if c not in lone]
        if self.batch_runs is not None:
            planned = plan_batches(rest, self.batch_runs)
        else:
            planned = [
                batch
                for group in batch_groups(rest)
                for batch in plan_batches(group, auto_batch_runs(group[0], self.data_root, self.device))
            ]
        return [[c] for c in lone] + planned

    def resumable(self, todo: list[RunConfig], store: ResultStore) -> tuple[int, int]:
        """How many runs of ``todo`` continue from a checkpoint (their own or their batch's), and how many
        checkpoint files of theirs are unusable (not signed with this user's key: they restart). With
        ``--batch-runs auto`` only the runs' own checkpoints are counted (the plan needs the data)."""
        batches = self.batches(todo, store) if self.batch_runs is not None else [[c] for c in todo]
        usable = unusable = 0
        for batch in batches:
            checkpoint = checkpoint_of(batch, store, self)
            if checkpoint.path.is_file():
                usable += len(batch) if checkpoint.usable() else 0
                unusable += 0 if checkpoint.usable() else 1
        return usable, unusable


def failure_text(err: BaseException) -> str:
    """One line for a run that raised: ``Type: message (at file:line; --debug shows the traceback)``, the
    line being the innermost one outside installed packages (a user plugin's, or ours)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith("<")]
    own = [f for f in frames if "site-packages" not in f.filename and "dist-packages" not in f.filename]
    where = (own or frames)[-1:] if frames else []
    at = f"at {where[0].filename}:{where[0].lineno}; " if where else ""
    return f"{type(err).__name__}: {err} ({at}--debug shows the traceback)"


@dataclass
class SweepOutcome:
    """What a sweep did: configs run here, those another process computed meanwhile, and the failed ones
    with their error (``"TypeName: message"``)."""

    ran: list[RunConfig] = field(default_factory=list)
    by_others: list[RunConfig] = field(default_factory=list)
    failed: list[tuple[RunConfig, str]] = field(default_factory=list)

    def add(self, config: RunConfig, status: str) -> None:
        """Count ``config`` as ``ran`` or ``done`` (by another process)."""
        (self.ran if status == "ran" else self.by_others).append(config)


def acquire(lock: FileLock, wait: bool) -> bool:
    """Take ``lock``: at once (False when another process holds it), or with ``wait`` until it is free,
    saying once which lock file it waits for (a stopped process keeps its lock)."""
    try:
        lock.acquire(timeout=0)
        return True
    except Timeout:
        if not wait:
            return False
    warnings.warn(
        f"waiting for another process to finish the run locked by {lock.lock_file} (if no sweep is running"
        " it, stop the process that holds it)",
        stacklevel=2,
    )
    lock.acquire(timeout=-1)
    return True


def release(lock: FileLock, store: ResultStore, config: RunConfig) -> None:
    """Release a run's lock, and remove its file once the run's record exists: a process that waited on
    the lock, or takes it later, then finds the record and computes nothing. After a failed run the file
    stays, so two later sweeps cannot both take the run (one on the old file, one on a new one)."""
    lock.release()
    if store.has(config.as_dict(), allow_stale=True):
        Path(lock.lock_file).unlink(missing_ok=True)


def claim_and_run(
    config: RunConfig,
    store: ResultStore,
    settings: SweepSettings,
    wait: bool,
    on_task: Callable[[int], None] | None = None,
) -> str:
    """Run ``config`` under its run key's file lock unless its record exists, and write the record.

    Returns ``busy`` (another process holds the lock and ``wait`` is False), ``done`` (a record exists: a
    current one, or a stale one with ``allow_stale``; with ``force`` only a record that appeared while
    waiting counts) or ``ran``. The run continues from its checkpoint when one exists, checkpoints by
    ``settings.policy``, and its checkpoint is removed once the record is written.
    """
    key = config.as_dict()
    lock = store.lock(key)
    if not acquire(lock, wait):
        return "busy"
    try:
        if (wait or not settings.force) and store.has(key, settings.allow_stale):
            return "done"
        run_claimed([config], store, settings, on_task)
        return "ran"
    finally:
        release(lock, store, config)


def run_claimed(
    configs: list[RunConfig],
    store: ResultStore,
    settings: SweepSettings,
    on_task: Callable[[int], None] | None = None,
) -> None:
    """Run configs whose locks this process holds and write their records. One config runs alone, from
    its checkpoint if one exists and checkpointing by ``settings.policy``; several run as one batch
    (:func:`~plasticity_bench.batch.trainer.execute_batch`) with one checkpoint for the batch
    (:func:`batch_checkpoint`). Checkpoints are removed once the records are written."""
    checkpoint = checkpoint_of(configs, store, settings)
    if len(configs) > 1:
        records = execute_batch(
            configs, settings.data_root, settings.device, on_task, recording=settings.recording,
            checkpoint=checkpoint,
        )  # fmt: skip
    else:
        records = [
            execute(configs[0], settings.data_root, settings.device, on_task, checkpoint, settings.recording)
        ]
    for record in records:
        store.write(record)
    checkpoint.delete()


def checkpoint_of(configs: list[RunConfig], store: ResultStore, settings: SweepSettings) -> RunCheckpoint:
    """The checkpoint of a run (its own, beside its record's path) or of a run-batch
    (:func:`batch_checkpoint`)."""
    if len(configs) > 1:
        return batch_checkpoint(configs, store, settings)
    key = configs[0].as_dict()
    return RunCheckpoint(store.checkpoint_path(key), run_key(key), settings.policy)


def batch_checkpoint(configs: list[RunConfig], store: ResultStore, settings: SweepSettings) -> RunCheckpoint:
    """The checkpoint of a run-batch: ``<out>/checkpoints/batches/<key[:16]>.pt``, keyed by the hash of its
    runs' keys in batch order (the same runs in the same batch resume it; another batch plan starts over)."""
    key = hashlib.sha256(" ".join(run_key(c.as_dict()) for c in configs).encode()).hexdigest()
    path = store.root / "checkpoints" / "batches" / f"{key[:16]}.pt"
    return RunCheckpoint(path, key, settings.policy)


def claim_and_run_batch(
    batch: list[RunConfig],
    store: ResultStore,
    settings: SweepSettings,
    wait: bool,
    on_task: Callable[[int], None] | None = None,
) -> list[str]:
    """:func:`claim_and_run` for a run-batch: claim every config's lock, run the claimed configs without a
    record together, release the locks. Returns each config's status (``busy``, ``done`` or ``ran``)."""
    if len(batch) == 1:
        return [claim_and_run(batch[0], store, settings, wait, on_task)]
    status: list[str] = []
    held, claimed = [], []
    try:
        for config in batch:
            key, lock = config.as_dict(), store.lock(config.as_dict())
            if not acquire(lock, wait):
                status.append("busy")
                continue
            held.append((config, lock))
            done = (wait or not settings.force) and store.has(key, settings.allow_stale)
            status.append("done" if done else "ran")
            if not done:
                claimed.append(config)
        if claimed:
            run_claimed(claimed, store, settings, on_task)
    finally:
        for config, lock in held:
            release(lock, store, config)
    return status


def run_sweep(
    todo: list[RunConfig],
    store: ResultStore,
    settings: SweepSettings,
    on_task: Callable[[int], None] | None = None,
    on_run: Callable[[RunConfig], None] | None = None,
    reraise: bool = False,
) -> SweepOutcome:
    """Run ``todo`` one after another in this process (see :func:`claim_and_run`), in run-batches of
    ``settings.batch_runs`` (see :func:`claim_and_run_batch`; a failing batch fails all its runs).

    A config whose lock another process holds is deferred; after the others, each deferred config is waited
    for and run here only if that process left no record. A run that raises is reported in the outcome with
    its error and the sweep goes on (``reraise``: the error propagates, e.g. under ``--debug``). ``on_run``
    is called before each run, ``on_task`` after each trained task (progress display).
    """
    outcome = SweepOutcome()
    deferred: list[list[RunConfig]] = []
    for wait, queue in ((False, settings.batches(todo, store)), (True, deferred)):
        for batch in queue:
            for config in batch if on_run is not None else ():
                on_run(config)
            try:
                statuses = claim_and_run_batch(batch, store, settings, wait, on_task)
            except (
                Exception,
                SystemExit,
            ) as err:  # one failed run (or a plugin's exit) must not stop the others
                if reraise:
                    raise
                outcome.failed += [(config, failure_text(err)) for config in batch]
                continue
            busy = [c for c, status in zip(batch, statuses) if status == "busy"]
            deferred += [busy] if busy else []
            for config, status in zip(batch, statuses):
                if status != "busy":
                    outcome.add(config, status)
    return outcome
