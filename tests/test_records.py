"""Tests for plasticity_bench.run.records: keys, atomic writes, corrupt-record handling, has()."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from plasticity_bench.core import io
from plasticity_bench.core.io import atomic_write_text
from plasticity_bench.run import records
from plasticity_bench.run.records import CorruptRecordError, ResultStore, make_record, run_key


def config(**overrides: object) -> dict:
    base = {
        "scenario": "permuted_mnist",
        "variant": "mnist5k",
        "strategy": "grow+moment_transplant",
        "compactness": 0.5,
        "seed": 0,
        "lr": 0.001,
        "model": "mlp",
        "tasks": 20,
        "steps_per_task": 625,
        "batch_size": 16,
        "cycles": 5,
        "winning_ticket": False,
        "options": {"tau": 0.05},
    }
    return {**base, **overrides}


def record(cfg: dict) -> dict:
    return make_record(
        cfg, {"taoa": 0.71, "early_task_taa": 0.3}, {"online_acc": [0.7]}, {"source": "x"}, 1.5
    )


def test_run_key_is_sha256_of_canonical_json_and_order_free() -> None:
    import hashlib

    cfg = config()
    text = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
    assert run_key(cfg) == hashlib.sha256(text.encode()).hexdigest()
    assert run_key(dict(reversed(list(cfg.items())))) == run_key(cfg)
    assert run_key(config(seed=1)) != run_key(cfg)


def test_path_layout_and_safe_strategy_name(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    cfg = config(strategy="grow/odd name")
    path = store.path_for(cfg)
    assert path == tmp_path / "records" / "permuted_mnist" / "grow_odd_name" / f"{run_key(cfg)[:16]}.json"
    assert store.path_for(config()).parent.name == "grow+moment_transplant"


def test_write_roundtrip_and_has_only_for_identical_config(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    cfg = config()
    assert not store.has(cfg)
    path = store.write(record(cfg))
    assert path.is_file()
    assert store.has(cfg)
    assert store.has(json.loads(json.dumps(cfg)))  # equal config from elsewhere
    assert not store.has(config(seed=1))
    assert not store.has(config(lr=0.01))
    assert not store.has(config(options={"tau": 0.1}))
    [loaded] = store.load().records
    assert loaded["key"] == run_key(cfg) and loaded["summary"]["taoa"] == 0.71
    assert set(loaded["versions"]) == {"plasticity_bench", "torch", "avalanche-lib", "python"}


def test_has_false_when_file_under_path_holds_other_key(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    cfg, other = config(), config(seed=7)
    path = store.path_for(cfg)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record(other)))  # simulated prefix collision
    assert not store.has(cfg)


def test_write_rejects_wrong_key(tmp_path: Path) -> None:
    rec = record(config())
    rec["key"] = "0" * 64
    with pytest.raises(ValueError, match="not the hash"):
        ResultStore(tmp_path).write(rec)


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_crash_during_replace_leaves_nothing_under_final_name(tmp_path: Path, monkeypatch) -> None:
    def crash(src: str, dst: str) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr(io.os, "replace", crash)
    store = ResultStore(tmp_path)
    cfg = config()
    with pytest.raises(OSError, match="simulated crash"):
        store.write(record(cfg))
    path = store.path_for(cfg)
    assert not path.exists()
    assert list(path.parent.iterdir()) == []  # temp file cleaned up too
    assert not store.has(cfg)


def test_crash_keeps_previous_version(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    monkeypatch.setattr(io.os, "replace", lambda s, d: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


@pytest.mark.parametrize(
    "content",
    ['{"key": "abc", "config": {', "[1, 2]", '{"config": {"a": 1}, "summary": {}, "key": "bad"}', ""],
)
def test_corrupt_record_is_reported_by_path_and_skipped(tmp_path: Path, content: str) -> None:
    store = ResultStore(tmp_path)
    store.write(record(config()))
    bad = tmp_path / "records" / "permuted_mnist" / "dense" / "deadbeef.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(content)
    with pytest.raises(CorruptRecordError) as info:
        records.read_record(bad)
    assert str(bad) in str(info.value) and "delete the file" in str(info.value)
    assert isinstance(info.value, ValueError)
    report = store.load()
    assert [r["key"] for r in report.records] == [run_key(config())]
    assert [path for path, _ in report.corrupt] == [bad]
    assert any("deadbeef.json" in line for line in report.problems())


def test_duplicate_record_is_reported_by_file_name_and_skipped(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    original = store.write(record(config()))
    copy = original.with_name("a (copy).json")
    copy.write_bytes(original.read_bytes())
    report = store.load()
    assert len(report.records) == 1
    assert report.duplicates == [(copy, original)]
    assert "a (copy).json" in report.problems()[0]


def test_load_empty_store(tmp_path: Path) -> None:
    report = ResultStore(tmp_path / "nothing").load()
    assert report.records == [] and report.corrupt == [] and report.duplicates == []


def test_records_of_another_protocol_version_are_stale(tmp_path: Path, monkeypatch) -> None:
    store = ResultStore(tmp_path)
    cfg = config()
    old = record(cfg)
    old["code"] = {**old["code"], "protocol": records.PROTOCOL_VERSION - 1}
    store.write(old)
    assert store.status(cfg) == "stale" and not store.has(cfg) and store.has(cfg, allow_stale=True)
    legacy = record(cfg)
    del legacy["code"]  # written before records carried a code version: protocol 1
    store.write(legacy)
    assert records.record_protocol(legacy) == 1 and store.status(cfg) == "stale"
    store.write(record(cfg))
    assert store.status(cfg) == "current" and store.has(cfg)


def test_code_version_names_package_commit_and_protocol() -> None:
    code = records.code_version()
    assert code["protocol"] == records.PROTOCOL_VERSION and code["package"][0].isdigit()
    repo = Path(records.__file__).resolve().parents[2]
    if (repo / ".git").exists():
        assert len(code["commit"]) == 40 and isinstance(code["dirty"], bool)
    assert record(config())["code"] == code


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_are_written_with_the_users_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        path = ResultStore(tmp_path).write(record(config()))
        text = atomic_write_text(tmp_path / "leaderboard.md", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert text.stat().st_mode & 0o777 == 0o666 & ~umask


def test_package_versions_marks_missing(monkeypatch) -> None:
    monkeypatch.setattr(records, "VERSIONED_PACKAGES", ("surely-not-a-package-xyz", "pandas"))
    versions = records.package_versions()
    assert versions["surely-not-a-package-xyz"] == "not installed"
    assert versions["pandas"][0].isdigit() and versions["python"][0].isdigit()
