"""Run records: one JSON file per run, keyed by the hash of the run's config.

A record holds the config of one run (scenario, strategy, compactness, seed, lr, ...), the package versions
and data source it ran with, its summary metrics (fractions in [0, 1], PROTOCOL §1: ``taoa``,
``early_task_taa``, optionally ``acc``, ``taa``, ``wt_*``, ``delta_wt_c``; counts such as ``params`` and
``flops`` are plain numbers) and its per-task arrays. Schema version 1::

    {"schema": 1, "key": <run_key(config)>, "config": {...}, "versions": {...}, "data": {...},
     "summary": {...}, "per_task": {...}, "created": <ISO timestamp>, "wall_seconds": <float>}

Records live at ``<root>/records/<scenario>/<strategy>/<key[:16]>.json`` and are written atomically, so an
interrupted run never leaves a half-written record under its final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import tempfile
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

SCHEMA_VERSION = 1
VERSIONED_PACKAGES = ("plasticity_bench", "torch", "avalanche-lib")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._+-]")


class CorruptRecordError(ValueError):
    """A record file that cannot be parsed or does not follow the record schema."""


def canonical_json(config: dict[str, Any]) -> str:
    """Canonical JSON of a config: sorted keys, no whitespace (the text that :func:`run_key` hashes)."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def run_key(config: dict[str, Any]) -> str:
    """Identity of a run: hex sha256 (64 chars) of :func:`canonical_json` of its config.

    Two configs get the same key exactly when they are equal as JSON (key order does not matter; ``1`` and
    ``1.0`` differ). Raises ``TypeError`` if the config holds values JSON cannot encode.
    """
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()


def safe_name(name: str) -> str:
    """``name`` made safe as one path component: characters outside ``[A-Za-z0-9._+-]`` become ``_``."""
    safe = _UNSAFE_CHARS.sub("_", name)
    return "_" if safe in {"", ".", ".."} else safe


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on, plus ``python``.

    Returns ``{"plasticity_bench": ..., "torch": ..., "avalanche-lib": ..., "python": ...}``; a package
    that is not installed maps to ``"not installed"``.
    """
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["python"] = platform.python_version()
    return versions


def make_record(
    config: dict[str, Any],
    summary: dict[str, Any],
    per_task: dict[str, list[Any]],
    data: dict[str, Any],
    wall_seconds: float,
    created: str | None = None,
) -> dict[str, Any]:
    """Assemble a schema-1 record; ``key`` and ``versions`` are filled in, ``created`` defaults to now (UTC).

    Metric values in ``summary`` and ``per_task`` are fractions in [0, 1], as the runner measured them.
    """
    return {
        "schema": SCHEMA_VERSION,
        "key": run_key(config),
        "config": config,
        "versions": package_versions(),
        "data": data,
        "summary": summary,
        "per_task": per_task,
        "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": float(wall_seconds),
    }


def _fsync_dir(directory: Path) -> None:
    """Persist a rename in ``directory`` (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file atomically with ``write(handle)`` (binary handle) and return ``path``.

    The bytes go to a temporary file in the same directory, are flushed and fsynced, and are then moved onto
    ``path`` with ``os.replace``. Readers see either the old file or the complete new one; if anything fails
    the temporary file is removed, nothing appears under ``path``, and the error is re-raised. Missing
    parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`) and return ``path``."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def _corrupt(path: Path, reason: str) -> CorruptRecordError:
    return CorruptRecordError(
        f"corrupt run record {path}: {reason}. Delete the file, or rerun that config with --force to "
        "overwrite it."
    )


def read_record(path: Path) -> dict[str, Any]:
    """Parse and check one record file.

    Raises :class:`CorruptRecordError` (naming the file and the fix) if it is not valid JSON, not an object,
    lacks a dict ``config`` or ``summary``, or its ``key`` is not ``run_key(config)``.
    """
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _corrupt(path, f"cannot be read as JSON ({err})") from err
    if not isinstance(record, dict):
        raise _corrupt(path, "top level is not a JSON object")
    for field in ("config", "summary"):
        if not isinstance(record.get(field), dict):
            raise _corrupt(path, f"missing or non-object '{field}'")
    if record.get("key") != run_key(record["config"]):
        raise _corrupt(path, "'key' does not match the hash of 'config'")
    return record


class ResultStore:
    """Directory of run records, ``<root>/records/<scenario>/<strategy>/<key[:16]>.json``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.records_dir = self.root / "records"

    def path_for(self, config: dict[str, Any]) -> Path:
        """Final path of the record for ``config`` (scenario and strategy made filesystem-safe).

        Raises ``KeyError`` if ``config`` lacks ``scenario`` or ``strategy``.
        """
        scenario, strategy = safe_name(str(config["scenario"])), safe_name(str(config["strategy"]))
        return self.records_dir / scenario / strategy / f"{run_key(config)[:16]}.json"

    def has(self, config: dict[str, Any]) -> bool:
        """True when a record for exactly this config exists: the file parses and carries the same key.

        A missing, corrupt or colliding file gives False (the run is due; writing it replaces the file).
        """
        path = self.path_for(config)
        if not path.is_file():
            return False
        try:
            return read_record(path)["key"] == run_key(config)
        except CorruptRecordError:
            return False

    def write(self, record: dict[str, Any]) -> Path:
        """Write ``record`` atomically under :meth:`path_for` its config and return the path.

        A missing ``key`` is filled in; a ``key`` that is not ``run_key(record["config"])`` raises
        ``ValueError``. JSON is written indented with sorted keys (NaN is written as ``NaN``).
        """
        config = record["config"]
        key = run_key(config)
        if record.setdefault("key", key) != key:
            raise ValueError(f"record key {record['key']!r} is not the hash of its config ({key!r})")
        path = self.path_for(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")

    def record_paths(self) -> list[Path]:
        """Every record file under the store, sorted (temporary files of unfinished writes excluded)."""
        if not self.records_dir.is_dir():
            return []
        return sorted(p for p in self.records_dir.rglob("*.json") if not p.name.startswith("."))

    def load_all(self, skip_corrupt: bool = False) -> list[dict[str, Any]]:
        """Read every record, in path order.

        A corrupt file raises :class:`CorruptRecordError` naming it; with ``skip_corrupt=True`` it is
        reported with ``warnings.warn`` and left out instead.
        """
        records = []
        for path in self.record_paths():
            try:
                records.append(read_record(path))
            except CorruptRecordError as err:
                if not skip_corrupt:
                    raise
                warnings.warn(f"skipping {err}", stacklevel=2)
        return records
