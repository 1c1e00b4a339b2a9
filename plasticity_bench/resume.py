"""Resumable runs: a run's whole training state saved at task boundaries, so a killed run continues.

A checkpoint is one ``torch.save`` of everything the rest of the run depends on: the model (weights and
unit masks), the optimizer (moments, step counters), the lr schedule's position, every plugin (Grow/Prune
edit logs and budgets, IMP snapshots, Two-Speed cohorts, DYNO buffers, Tiny ER's buffer and sampler, the
cohort diagnostics), the metrics so far, the torch RNG states and, in the winning-ticket phase, the
finished cycle run's results. Saving them in one pickle keeps the objects they share (a parameter is a
key of the optimizer state, of Prune's snapshot and of Two-Speed's cohorts) shared after loading, so the
resumed run continues bit for bit: its record equals an uninterrupted run's except for ``created`` and
``wall_seconds``.

Files live beside the records (``<out>/checkpoints/<scenario>/<strategy>/<key[:16]>.pt``), are written
atomically, and are deleted once the run's record is written. When they are written is a
:class:`CheckpointPolicy` (``--checkpoint-every``: every N tasks, every N minutes, or off).
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from plasticity_bench.records import atomic_write

CHECKPOINT_SCHEMA = 1
DEFAULT_EVERY = "10m"  # [ours]: a few MB every 10 minutes costs nothing next to the run


@dataclass(frozen=True)
class CheckpointPolicy:
    """When to save: after every ``tasks`` tasks, or at the first task boundary ``minutes`` after the last
    save (``None`` for neither: never)."""

    tasks: int | None = None
    minutes: float | None = None

    @classmethod
    def parse(cls, text: str) -> CheckpointPolicy:
        """``"5"`` (tasks), ``"10m"`` (minutes), ``"off"``.

        Raises:
            ValueError: for anything else, or a value that is not positive.
        """
        text = text.strip().lower()
        if text in ("off", "never", "0"):
            return cls()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(m|min|minutes)?", text)
        if not match or float(match.group(1)) <= 0:
            raise ValueError(f"--checkpoint-every {text}: give a task count (5), minutes (10m) or off")
        if match.group(2):
            return cls(minutes=float(match.group(1)))
        if not float(match.group(1)).is_integer():
            raise ValueError(f"--checkpoint-every {text}: a task count must be a whole number")
        return cls(tasks=int(float(match.group(1))))

    @property
    def enabled(self) -> bool:
        return self.tasks is not None or self.minutes is not None

    def due(self, tasks_since: int, seconds_since: float) -> bool:
        """True when a boundary ``tasks_since`` tasks and ``seconds_since`` seconds after the last save
        should save."""
        by_tasks = self.tasks is not None and tasks_since >= self.tasks
        by_time = self.minutes is not None and seconds_since >= 60 * self.minutes
        return by_tasks or by_time


def rng_state() -> dict[str, Any]:
    """The torch RNG states a run draws from (CPU, and every CUDA device when CUDA is up)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RunCheckpoint:
    """The checkpoint file of one run (identified by its run key).

    Args:
        path: the ``.pt`` file. key: the run key the file must carry. policy: when to save.
    """

    def __init__(self, path: Path, key: str, policy: CheckpointPolicy) -> None:
        self.path, self.key, self.policy = Path(path), key, policy
        self._tasks_since = 0
        self._saved_at = time.monotonic()

    def load(self, device: str = "cpu") -> dict[str, Any] | None:
        """The saved payload with its tensors on ``device``, or None when there is none. An unreadable file,
        or one of another run or schema, is reported with a warning, deleted, and treated as absent (the run
        starts over)."""
        if not self.path.is_file():
            return None
        try:
            payload = torch.load(self.path, map_location=device, weights_only=False)
        except Exception as err:  # any unpickling failure means the file cannot be used
            warnings.warn(
                f"ignoring unreadable checkpoint {self.path} ({type(err).__name__}: {err})", stacklevel=2
            )
            self.delete()
            return None
        if (
            not isinstance(payload, dict)
            or payload.get("key") != self.key
            or payload.get("schema") != CHECKPOINT_SCHEMA
        ):
            warnings.warn(f"ignoring checkpoint {self.path}: made for another run or version", stacklevel=2)
            self.delete()
            return None
        return payload

    def boundary(self, payload: dict[str, Any]) -> bool:
        """Called at every task boundary with the state to save; saves when the policy says so.

        Returns True when it saved.
        """
        self._tasks_since += 1
        if not self.policy.due(self._tasks_since, time.monotonic() - self._saved_at):
            return False
        self.save(payload)
        return True

    def save(self, payload: dict[str, Any]) -> None:
        """Write ``payload`` (plus key and schema) atomically."""
        payload = {**payload, "key": self.key, "schema": CHECKPOINT_SCHEMA}
        atomic_write(self.path, lambda handle: torch.save(payload, handle))
        self._tasks_since, self._saved_at = 0, time.monotonic()

    def delete(self) -> None:
        """Remove the file (no error if it is gone)."""
        self.path.unlink(missing_ok=True)
