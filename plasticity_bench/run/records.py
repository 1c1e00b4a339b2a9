"""Run records: one JSON file per run, keyed by the hash of the run's config.

A record holds the config of one run (scenario, strategy, compactness, seed, lr, options, ...), the code
and package versions and data source it ran with, its summary metrics (fractions in [0, 1],
docs/protocol.md §1: ``taoa``, ``early_task_taa``, optionally ``acc``, ``taa``, ``wt_*``, ``delta_wt_c``;
counts such as ``params`` and ``flops`` are plain numbers) and its per-task arrays. Schema version 1::

    {"schema": 1, "key": <run_key(config)>, "config": {...}, "versions": {...}, "data": {...},
     "code": {"package": ..., "commit": ..., "dirty": ..., "protocol": <PROTOCOL_VERSION>},
     "summary": {...}, "per_task": {...}, "created": <ISO timestamp>, "wall_seconds": <float>,
     "curves": {"bin": ..., "online_acc": [[...] per task], "wt_online_acc": ...}, "final_masks": [[...]],
     "edits": [...], "diagnostics": [...], "dyno": {...}, "batched": {...}}

The keys after ``wall_seconds`` are written by newer code or only by some strategies (docs/protocol.md §13):
the learning curve, the final masks (active unit indices per masked layer), a structural run's edit log,
its cohort diagnostics, DYNO's widths, and the run-batch a run was trained in. Readers treat them as
optional.

``PROTOCOL_VERSION`` is bumped by every change that alters numbers; a record of another protocol version
is *stale*: it is not reused as a result of the current code (``ResultStore.status``) and the leaderboard
never pools it with current records.

Records live at ``<root>/records/<scenario>/<strategy>/<key[:16]>.json`` and are written atomically (with
the user's umask), so an interrupted run never leaves a half-written record under its final name. A
per-key lock file beside each record (``.lock``) lets concurrent sweeps on one folder claim runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import re
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from filelock import FileLock

from plasticity_bench.core.io import atomic_write_text, current_umask

SCHEMA_VERSION = 1
#: Bumped by every change that alters results. 1: the code before this field existed. 2: docs/protocol.md
#: revision of 2026-11 (DYNO phi* after the change, deterministic scores, cosine on Split-*, Split-CIFAR100
#: edits per task, uniform random labels, per-task Permuted-MNIST subsets, WT rewind to theta_0, options
#: and device/threads in the run key). 3: the second fidelity pass of 2026-12 (one fixed Permuted-MNIST
#: subset, Split-CIFAR100 ranked by TAA, 5+1 Early TAA over hard tasks, no edit before training and eq. 23's
#: 1-based cycles, validation split for lr choice, IID batch 64, online accuracy over current-task rows,
#: per-step Shrink & Perturb, per-element optimizer resets, CBP bias correction, ReDo every task, DYNO's
#: network-wide phi*).
PROTOCOL_VERSION = 3
VERSIONED_PACKAGES = ("plasticity_bench", "torch", "avalanche-lib")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._+-]")


class CorruptRecordError(ValueError):
    """A record file that cannot be parsed or does not follow the record schema.

    ``path``: the file; ``reason``: what is wrong with it (with the fix).
    """

    def __init__(self, reason: str, path: Path) -> None:
        super().__init__(f"corrupt run record {path}: {reason}")
        self.reason, self.path = reason, Path(path)


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


@functools.cache
def code_version() -> dict[str, Any]:
    """What code made a record: ``package`` version, git ``commit`` and ``dirty`` flag when the package runs
    from a git checkout (else ``None``), and the results' ``protocol`` version."""
    commit, dirty = None, None
    here = Path(__file__).resolve().parent
    try:
        top = _git(here, "rev-parse", "--show-toplevel")
        if top and here.is_relative_to(Path(top)):
            commit = _git(here, "rev-parse", "HEAD")
            dirty = bool(_git(here, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "package": package_versions()["plasticity_bench"],
        "commit": commit,
        "dirty": dirty,
        "protocol": PROTOCOL_VERSION,
    }


def _git(cwd: Path, *args: str) -> str | None:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def record_protocol(record: dict[str, Any]) -> int:
    """The protocol version a record was made under (1 for records older than the ``code`` field)."""
    return int((record.get("code") or {}).get("protocol", 1))


def make_record(
    config: dict[str, Any],
    summary: dict[str, Any],
    per_task: dict[str, list[Any]],
    data: dict[str, Any],
    wall_seconds: float,
    created: str | None = None,
) -> dict[str, Any]:
    """Assemble a schema-1 record; ``key``, ``versions`` and ``code`` are filled in, ``created`` defaults to
    now (UTC).

    Metric values in ``summary`` and ``per_task`` are fractions in [0, 1], as the runner measured them.
    """
    return {
        "schema": SCHEMA_VERSION,
        "key": run_key(config),
        "config": config,
        "versions": package_versions(),
        "code": code_version(),
        "data": data,
        "summary": summary,
        "per_task": per_task,
        "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": float(wall_seconds),
    }


def _corrupt(path: Path, reason: str) -> CorruptRecordError:
    return CorruptRecordError(f"{reason} (delete the file, or rerun that config to replace it)", path)


#: Config fields every record has, with their JSON types (what the views read).
CONFIG_FIELDS: dict[str, tuple[type, ...]] = {
    "scenario": (str,), "strategy": (str,), "seed": (int,), "lr": (int, float), "model": (str,),
    "tasks": (int,), "steps_per_task": (int,), "batch_size": (int,), "compactness": (int, float),
}  # fmt: skip
#: Optional top-level parts and their JSON type; lists hold objects where ``ROWS`` says so.
PARTS: dict[str, type] = {
    "per_task": dict, "data": dict, "curves": dict, "edits": list, "diagnostics": list, "plasticity": list,
    "final_masks": list, "dyno": dict, "resets": list, "versions": dict, "code": dict, "flags": list,
    "stacked_edits": list,
}  # fmt: skip
ROWS = ("edits", "diagnostics", "plasticity", "resets")


def is_number(value: Any) -> bool:
    """True for an int or float that is not a bool (what a summary value may be, with null)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def record_problem(record: Any) -> str | None:
    """What makes ``record`` (parsed JSON) not a record of this schema, or None when it is one: the schema
    number, the config fields the views read and their types, summary values (numbers or null), the types
    of the optional parts, and ``key`` = ``run_key(config)``."""
    if not isinstance(record, dict):
        return "top level is not a JSON object"
    if record.get("schema") != SCHEMA_VERSION:
        return f"schema {record.get('schema')!r} is not {SCHEMA_VERSION} (made by another plasticity_bench)"
    for name in ("config", "summary"):
        if not isinstance(record.get(name), dict):
            return f"missing or non-object '{name}'"
    config = record["config"]
    for name, kinds in CONFIG_FIELDS.items():
        value = config.get(name)
        if not isinstance(value, kinds) or isinstance(value, bool):
            return f"config.{name} is {value!r}, not a {' or '.join(k.__name__ for k in kinds)}"
    if not isinstance(config.get("options", {}), dict):
        return "config.options is not an object"
    bad = [k for k, v in record["summary"].items() if v is not None and not is_number(v)]
    if bad:
        return f"summary.{bad[0]} is {record['summary'][bad[0]]!r}, not a number"
    for name, kind in PARTS.items():
        if name in record and not isinstance(record[name], kind):
            return f"'{name}' is not a JSON {'object' if kind is dict else 'array'}"
        if name in ROWS and name in record and not all(isinstance(r, dict) for r in record[name]):
            return f"'{name}' holds entries that are not objects"
    if record.get("key") != run_key(config):
        return "'key' does not match the hash of 'config'"
    return None


def read_record(path: Path) -> dict[str, Any]:
    """Parse and check one record file (:func:`record_problem`).

    Raises :class:`CorruptRecordError` (naming the file, what is wrong and the fix) if it is not valid JSON
    or not a record of this schema.
    """
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _corrupt(path, f"cannot be read as JSON ({err})") from err
    problem = record_problem(record)
    if problem is not None:
        raise _corrupt(path, problem)
    return record


@dataclass
class LoadReport:
    """What :meth:`ResultStore.load` found.

    Attributes:
        records: the usable records, one per key, in path order.
        corrupt: ``(path, reason)`` of every file that is not a valid record (left out).
        duplicates: ``(path, kept_path)`` of every file whose key another file already has (left out).
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    corrupt: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)

    def problems(self) -> list[str]:
        """One line per skipped file, naming it and the reason."""
        lines = [f"skipped corrupt record {path}: {reason}" for path, reason in self.corrupt]
        lines += [
            f"skipped duplicate record {path} (same run as {kept.name})" for path, kept in self.duplicates
        ]
        return lines


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

    def checkpoint_path(self, config: dict[str, Any]) -> Path:
        """Where a run's training checkpoint lives while it runs (``<root>/checkpoints/...``, see
        :mod:`plasticity_bench.run.resume`)."""
        record = self.path_for(config)
        return self.root / "checkpoints" / record.relative_to(self.records_dir).with_suffix(".pt")

    def status(self, config: dict[str, Any]) -> str:
        """``current`` (a record of this config and of the current protocol version), ``stale`` (a record
        of another protocol version, or of this user strategy made from another version of its source file:
        :meth:`other_source`), or ``missing`` (none, a corrupt file, or a colliding key)."""
        path = self.path_for(config)
        if not path.is_file():
            return "missing" if self.other_source(config) is None else "stale"
        try:
            record = read_record(path)
        except CorruptRecordError:
            return "missing"
        if record["key"] != run_key(config):
            return "missing"
        return "current" if record_protocol(record) == PROTOCOL_VERSION else "stale"

    def other_source(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """A record of user-strategy config ``config`` but for its ``plugin_source``: made before the
        strategy's file was edited (None when there is none, or for built-in strategies)."""
        if config.get("plugin_source") is None:
            return None
        bare = {k: v for k, v in config.items() if k != "plugin_source"}
        folder = self.path_for(config).parent
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                record = read_record(path)
            except CorruptRecordError:
                continue
            other = record["config"]
            same = {k: v for k, v in other.items() if k != "plugin_source"} == bare
            if same and other.get("plugin_source") != config["plugin_source"]:
                return record
        return None

    def counted_key(self, config: dict[str, Any], allow_stale: bool = False) -> str:
        """The key of the record that stands for ``config``: its own, or with ``allow_stale`` that of the
        record :meth:`other_source` finds when it has none."""
        other = None if self.path_for(config).is_file() or not allow_stale else self.other_source(config)
        return run_key(config) if other is None else other["key"]

    def has(self, config: dict[str, Any], allow_stale: bool = False) -> bool:
        """True when a current record of exactly this config exists (or a stale one, with ``allow_stale``)."""
        return self.status(config) in (("current", "stale") if allow_stale else ("current",))

    def lock(self, config: dict[str, Any]) -> FileLock:
        """The per-key file lock of ``config``'s run (``<record path>.lock``); parents are created."""
        path = self.path_for(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(path.with_suffix(".lock"), mode=0o666 & ~current_umask())

    def write(self, record: dict[str, Any]) -> Path:
        """Write ``record`` atomically under :meth:`path_for` its config and return the path.

        A missing ``key`` is filled in; a ``key`` that is not ``run_key(record["config"])`` raises
        ``ValueError``. JSON is written indented with sorted keys (NaN is written as ``NaN``). Like a record
        of an older protocol version, which it overwrites, a user strategy's record made from an older
        version of its file (:meth:`other_source`) is removed.
        """
        config = record["config"]
        key = run_key(config)
        if record.setdefault("key", key) != key:
            raise ValueError(f"record key {record['key']!r} is not the hash of its config ({key!r})")
        path = self.path_for(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        written = atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
        while (older := self.other_source(config)) is not None:
            self.path_for(older["config"]).unlink()
        return written

    def record_paths(self) -> list[Path]:
        """Every record file under the store, sorted (temporary files of unfinished writes excluded)."""
        if not self.records_dir.is_dir():
            return []
        return sorted(p for p in self.records_dir.rglob("*.json") if not p.name.startswith("."))

    def load(self) -> LoadReport:
        """Read every record, skipping (and reporting) corrupt files and duplicates of a key.

        Of several files with one key, the one at the key's own path (:meth:`path_for`) is kept, else the
        first in path order.
        """
        report = LoadReport()
        kept: dict[str, tuple[Path, dict[str, Any]]] = {}
        for path in self.record_paths():
            try:
                record = read_record(path)
            except CorruptRecordError as err:
                report.corrupt.append((path, err.reason))
                continue
            key = record["key"]
            if key not in kept:
                kept[key] = (path, record)
                continue
            first = kept[key][0]
            if path == self.path_for(record["config"]):
                kept[key] = (path, record)
                path, first = first, path
            report.duplicates.append((path, first))
        report.records = [record for _, record in sorted(kept.values(), key=lambda item: item[0])]
        return report
