"""Running a sweep safely: every input checked before the first run, runs claimed by per-key file locks.

:func:`preflight` validates what would otherwise fail mid-sweep (device, results folder, data, plugins);
:func:`run_sweep` runs the pending configs, so that concurrent sweeps on one results folder never compute
one run twice: a run is claimed by its lock file (``ResultStore.lock``); a run claimed by another process
is deferred, then waited for at the end and only computed here if that process left no record.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from filelock import Timeout

from plasticity_bench.records import ResultStore, canonical_json, run_key
from plasticity_bench.resume import CheckpointPolicy, RunCheckpoint
from plasticity_bench.runner import RunConfig, execute
from scenarios.registry import parse_scenario
from strategies.registry import build_plugins

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
    built for the first seed, which reads and validates the files), and every strategy builds real Avalanche
    plugins.

    Raises:
        ValueError: as :func:`device_kind`, :func:`check_writable`, or a strategy that builds no plugins.
        scenarios.readers.DatasetNotFoundError, scenarios.readers.CorruptDatasetError: missing or bad data.
    """
    device_kind(device)
    check_writable(out)
    streams = {(c.scenario, c.variant, c.tasks, canonical_json(c.options)): c for c in configs}
    for config in streams.values():
        spec, variant = parse_scenario(config.scenario + (f"@{config.variant}" if config.variant else ""))
        spec.build(
            config.seed,
            config.tasks,
            variant,
            data_root,
            **{o.name: o.get(config.options) for o in spec.options},
        )
    strategies = {(c.strategy, c.compactness, canonical_json(c.options)): c for c in configs}
    for config in strategies.values():
        build_plugins(config.strategy_config())


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did: configs run here, and those another process computed meanwhile."""

    ran: list[RunConfig] = field(default_factory=list)
    by_others: list[RunConfig] = field(default_factory=list)


def run_sweep(
    todo: list[RunConfig],
    store: ResultStore,
    data_root: Path | None,
    device: str,
    allow_stale: bool = False,
    force: bool = False,
    on_task: Callable[[int], None] | None = None,
    on_run: Callable[[RunConfig], None] | None = None,
    policy: CheckpointPolicy | None = None,
) -> SweepOutcome:
    """Run ``todo`` one after another, each under its run key's file lock, writing each record when done.

    A config whose lock another process holds is deferred; after the others, each deferred config is waited
    for (blocking on its lock) and run here only if no record of it exists then. A config whose record
    appeared while it waited in the queue is not rerun (unless ``force``). Each run checkpoints by
    ``policy`` (default: never) and continues from its checkpoint when one exists (a killed sweep resumes
    its runs where they stopped). ``on_run`` is called before each run, ``on_task`` after each trained task
    (progress display).
    """
    outcome = SweepOutcome()
    deferred = []
    for config in todo:
        lock = store.lock(config.as_dict())
        try:
            lock.acquire(timeout=0)
        except Timeout:
            deferred.append(config)
            continue
        try:
            if not force and store.has(config.as_dict(), allow_stale):
                outcome.by_others.append(config)
                continue
            _run_one(config, store, data_root, device, on_task, on_run, policy)
            outcome.ran.append(config)
        finally:
            lock.release()
    for config in deferred:
        with store.lock(config.as_dict()):
            if store.has(config.as_dict(), allow_stale):
                outcome.by_others.append(config)
                continue
            _run_one(config, store, data_root, device, on_task, on_run, policy)
            outcome.ran.append(config)
    return outcome


def _run_one(
    config: RunConfig,
    store: ResultStore,
    data_root: Path | None,
    device: str,
    on_task: Callable[[int], None] | None,
    on_run: Callable[[RunConfig], None] | None,
    policy: CheckpointPolicy | None,
) -> None:
    """Run one config (from its checkpoint if there is one), write its record, drop its checkpoint."""
    if on_run is not None:
        on_run(config)
    key = config.as_dict()
    checkpoint = RunCheckpoint(store.checkpoint_path(key), run_key(key), policy or CheckpointPolicy())
    store.write(execute(config, data_root, device, on_task=on_task, checkpoint=checkpoint))
    checkpoint.delete()
