"""Sweeps on Ray: pending runs fanned out over worker processes, on this machine or a cluster.

``plasticity-bench run ... --workers N`` starts a local Ray instance (or joins ``--ray-address``) and keeps
at most ``N`` runs in flight, each a Ray task asking ``--cpus-per-run`` CPUs and ``--gpus-per-run`` GPUs
(fractions share a device: four runs at 0.25 on one GPU). A worker runs exactly what the in-process path
runs (:func:`plasticity_bench.sweep.claims.claim_and_run`): it claims the run's file lock, continues from a
checkpoint if there is one, writes the record atomically, so records are the same either way and a
sweep killed mid-way resumes. A run that raises is reported with its config and error; the others go on.
On a cluster every node needs the package installed and the results folder on a shared file system.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from plasticity_bench.run.config import RunConfig
from plasticity_bench.run.records import ResultStore
from plasticity_bench.sweep.claims import SweepOutcome, SweepSettings, claim_and_run_batch, failure_text

LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2  # runs exchange configs and status strings only


def worker_run(batch: list[RunConfig], root: str, settings: SweepSettings) -> list[str]:
    """One run-batch inside a Ray worker: torch on the configs' thread count, then
    :func:`~plasticity_bench.sweep.claims.claim_and_run_batch`; the status of each config."""
    torch.set_num_threads(batch[0].threads)
    return claim_and_run_batch(batch, ResultStore(Path(root)), settings, wait=True)


#: Seconds a cluster address gets to answer before a sweep gives up on it (Ray itself retries for minutes).
CONNECT_TIMEOUT_S = 5.0


def check_reachable(address: str) -> None:
    """Refuse a Ray address whose host does not accept a TCP connection within :data:`CONNECT_TIMEOUT_S`
    (``host:port`` and ``ray://host:port`` forms; ``auto`` and other forms are left to Ray).

    Raises:
        ValueError: naming the address and what the connection attempt said.
    """
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address.strip())
    if match is None:
        return
    host, port = match.group(1), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ValueError(
            f"--ray-address {address}: no Ray cluster answers there within {CONNECT_TIMEOUT_S:g} s "
            f"({err.strerror or err}); start one with `ray start --head` or fix the address"
        ) from err


def start_ray(workers: int, cpus_per_run: float, address: str | None) -> bool:
    """Join ``address`` or start a local instance sized for ``workers`` runs; True when started here.

    Raises:
        ValueError: when Ray is not installed or cannot start / connect (naming the address).
    """
    try:
        import ray
    except ImportError as err:
        raise ValueError("--workers > 1 needs Ray: pip install 'ray>=2.9'") from err
    if ray.is_initialized():
        return False
    if address:
        check_reachable(address)
    local = (
        {}
        if address
        else {
            "num_cpus": max(1, round(workers * cpus_per_run)),
            "object_store_memory": LOCAL_OBJECT_STORE_BYTES,
        }
    )
    try:
        ray.init(
            address=address, include_dashboard=False, logging_level="ERROR", configure_logging=True, **local
        )
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise ValueError(f"cannot start or join {where}: {err}") from err
    return True


def run_on_ray(
    todo: list[RunConfig],
    store: ResultStore,
    settings: SweepSettings,
    workers: int,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
    address: str | None = None,
    on_update: Callable[[SweepOutcome, int], None] | None = None,
) -> SweepOutcome:
    """Run ``todo`` on Ray with at most ``workers`` run-batches in flight (``settings.batch_runs`` runs
    each; a worker trains its batch as one model, asking ``cpus_per_run`` / ``gpus_per_run`` per batch).

    ``on_update(outcome, running)`` is called after every submission wave and every finished batch
    (progress display; ``running`` counts runs). A local instance started here is shut down at the end.
    """
    import ray

    started = start_ray(workers, cpus_per_run, address)
    remote = ray.remote(worker_run).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)
    outcome, queue, running = SweepOutcome(), list(reversed(settings.batches(todo, store))), {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                batch = queue.pop()
                running[remote.remote(batch, str(store.root), settings)] = batch
            if on_update is not None:
                on_update(outcome, sum(map(len, running.values())))
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                _collect(ray, ref, running.pop(ref), outcome)
        if on_update is not None:
            on_update(outcome, 0)
    finally:
        if started:
            ray.shutdown()
    return outcome


def _collect(ray: Any, ref: Any, batch: list[RunConfig], outcome: SweepOutcome) -> None:
    """Record a finished Ray task's statuses, or its error (the original exception's type and message)
    against every run of its batch."""
    try:
        for config, status in zip(batch, ray.get(ref)):
            outcome.add(config, status)
    except ray.exceptions.RayTaskError as err:
        cause = err.cause if getattr(err, "cause", None) is not None else err
        outcome.failed += [(config, failure_text(cause)) for config in batch]
