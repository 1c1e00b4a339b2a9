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

Trust. Unpickling runs code, and a results folder may be shared. A checkpoint file is ``MAGIC``, then an
HMAC-SHA256 tag of the pickle under a key that never lives in the results folder (:func:`checkpoint_key`:
``$XDG_CONFIG_HOME/plasticity_bench/checkpoint.key``, made on first use, mode 0600), then the pickle. A file
whose tag does not verify under this user's key (planted, tampered, or written with another key) is
refused with one warning and the run restarts from scratch; nothing of it is unpickled. Runs that share a
folder across machines resume each other's checkpoints only when the machines share the key file.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import re
import secrets
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from plasticity_bench.core.io import atomic_write

#: Layout of a checkpoint payload; 3: lone runs save their trainer as run-batches do (one pipeline); 4: the
#: plugins and networks keep new state (training cost's FLOPs history, the after-modules of a masked net),
#: so a checkpoint of 3 is refused and its run starts over.
CHECKPOINT_SCHEMA = 4
MAGIC = b"plasticity_bench checkpoint v2\n"
KEY_BYTES = 32


def checkpoint_key(config_dir: Path | None = None) -> bytes:
    """This user's checkpoint signing key: 32 random bytes in ``config_dir / "checkpoint.key"`` (default
    ``$XDG_CONFIG_HOME/plasticity_bench``, else ``~/.config/plasticity_bench``), created with mode 0600
    on first use.

    Raises:
        OSError: when the key file can be neither read nor created.
    """
    base = (
        config_dir or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "plasticity_bench"
    )
    path = base / "checkpoint.key"
    if not path.is_file():
        base.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it meanwhile
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(KEY_BYTES))
    key = path.read_bytes()
    if len(key) < KEY_BYTES:
        raise OSError(f"checkpoint key {path} is shorter than {KEY_BYTES} bytes: delete it to make a new one")
    return key


def sign(data: bytes, key: bytes) -> bytes:
    """``MAGIC + HMAC-SHA256(key, data) + data``: what a checkpoint file holds."""
    return MAGIC + hmac.new(key, data, hashlib.sha256).digest() + data


def verified(blob: bytes, key: bytes) -> bytes | None:
    """The pickle inside a checkpoint file's bytes when its tag verifies under ``key``; None otherwise."""
    tag_end = len(MAGIC) + hashlib.sha256().digest_size
    if not blob.startswith(MAGIC) or len(blob) < tag_end:
        return None
    tag, data = blob[len(MAGIC) : tag_end], blob[tag_end:]
    return data if hmac.compare_digest(tag, hmac.new(key, data, hashlib.sha256).digest()) else None


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

    def __init__(
        self, path: Path, key: str, policy: CheckpointPolicy, signing_key: bytes | None = None
    ) -> None:
        self.path, self.key, self.policy = Path(path), key, policy
        self.signing_key = signing_key
        self._tasks_since = 0
        self._saved_at = time.monotonic()

    def _key(self) -> bytes:
        if self.signing_key is None:
            self.signing_key = checkpoint_key()
        return self.signing_key

    def load(self, device: str = "cpu") -> dict[str, Any] | None:
        """The saved payload with its tensors on ``device``, or None when there is none. A file that is not
        signed by this user's key (see the module docstring), unreadable, or of another run or schema is
        reported with one warning, deleted, and treated as absent: the run restarts from scratch. Temporary
        files a killed save left beside it are removed."""
        self.remove_leftovers()
        if not self.path.is_file():
            return None
        data = verified(self.path.read_bytes(), self._key())
        if data is None:
            return self._refuse("not signed with this user's checkpoint key (foreign or tampered)")
        try:
            payload = torch.load(io.BytesIO(data), map_location=device, weights_only=False)
        except Exception as err:  # a signed file that does not unpickle (another torch version, say)
            return self._refuse(f"unreadable ({type(err).__name__}: {err})")
        if (
            not isinstance(payload, dict)
            or payload.get("key") != self.key
            or payload.get("schema") != CHECKPOINT_SCHEMA
        ):
            return self._refuse("made for another run or version")
        return payload

    def usable(self) -> bool:
        """True when a checkpoint file is there and verifies (nothing is unpickled)."""
        if not self.path.is_file():
            return False
        try:
            return verified(self.path.read_bytes(), self._key()) is not None
        except OSError:
            return False

    def _refuse(self, why: str) -> None:
        warnings.warn(f"checkpoint {self.path}: {why}; restarting the run from scratch", stacklevel=3)
        self.delete()

    def remove_leftovers(self) -> None:
        """Delete the temporary files an interrupted save of this checkpoint left (only the process that
        holds the run's claim writes its checkpoint, so any such file belongs to a dead writer)."""
        for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)

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
        """Write ``payload`` (plus key and schema), signed, atomically. A failed write (a full disk) is a
        warning: the run carries on without this checkpoint."""
        payload = {**payload, "key": self.key, "schema": CHECKPOINT_SCHEMA}
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        try:
            atomic_write(self.path, lambda handle: handle.write(sign(buffer.getvalue(), self._key())))
        except OSError as err:
            warnings.warn(
                f"could not write checkpoint {self.path} ({err.strerror or err}); continuing without it",
                stacklevel=2,
            )
        self._tasks_since, self._saved_at = 0, time.monotonic()

    def delete(self) -> None:
        """Remove the file (no error if it is gone)."""
        self.path.unlink(missing_ok=True)


class BoundarySaver:
    """Checkpoints one run or one run-batch at task boundaries and keeps its wall clock across processes:
    what :func:`~plasticity_bench.run.execute.execute` and
    :func:`~plasticity_bench.batch.trainer.execute_batch` share.

    Args:
        checkpoint: where to save (``None``: never). before: wall seconds spent in earlier processes (a
            resumed run's ``elapsed``).
    """

    def __init__(self, checkpoint: RunCheckpoint | None, before: float = 0.0) -> None:
        self.checkpoint, self.before, self.start = checkpoint, before, time.perf_counter()

    @property
    def enabled(self) -> bool:
        """True when boundaries may save (a checkpoint with a policy that is not ``off``)."""
        return self.checkpoint is not None and self.checkpoint.policy.enabled

    def elapsed(self) -> float:
        """Wall seconds of the run so far, earlier processes' parts included."""
        return self.before + time.perf_counter() - self.start

    def boundary(self, payload: dict[str, Any]) -> None:
        """A task boundary: ``payload`` (phase, next task, state) with the RNG states and the clock, saved
        when the checkpoint's policy says so."""
        if self.enabled:
            self.checkpoint.boundary({**payload, "rng": rng_state(), "elapsed": self.elapsed()})
