"""Sweeps on Ray (plasticity_bench.sweep.cluster): 2 local workers give the in-process path's records, and a
run
that raises inside a worker is reported while the others complete."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plasticity_bench.cli import app

pytest.importorskip("ray")

TINY = ["run", "--scenario", "permuted_mnist", "--tasks", "2", "--steps", "4", "--seeds", "2"]

BOOM = '''
from avalanche.core import SupervisedPlugin


class Boom(SupervisedPlugin):
    """Fails in the middle of the run of seed 1 only."""

    def __init__(self, config):
        super().__init__()
        self.seed = config.seed

    def after_training_exp(self, strategy, **kwargs):
        if self.seed == 1:
            raise RuntimeError("boom in seed 1")
'''


def records(out: Path) -> dict[str, dict]:
    found = {}
    for path in (out / "records").rglob("*.json"):
        record = json.loads(path.read_text())
        record.pop("created"), record.pop("wall_seconds")
        found[record["key"]] = record
    return found


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})
    result.text = " ".join(result.output.split())
    return result


def test_ray_workers_write_the_records_of_the_in_process_path(data_root: Path, tmp_path: Path) -> None:
    common = [*TINY, "--strategy", "dense,grow", "--data-root", str(data_root)]
    here = invoke(*common, "--out", str(tmp_path / "here"))
    assert here.exit_code == 0, here.output
    ray = invoke(*common, "--out", str(tmp_path / "ray"), "--workers", "2")
    assert ray.exit_code == 0, ray.output
    assert "runs on 2 workers" in ray.text
    expected, got = records(tmp_path / "here"), records(tmp_path / "ray")
    assert len(expected) == 4 and got == expected


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_failing_run_is_reported_and_the_others_complete(
    data_root: Path, tmp_path: Path, workers: str
) -> None:
    (tmp_path / "boom.py").write_text(textwrap.dedent(BOOM))
    out = tmp_path / "out"
    args = ["--strategy", f"{tmp_path / 'boom.py'}:Boom", "--data-root", str(data_root), "--out", str(out)]
    result = invoke(*TINY, *args, "--workers", workers)
    assert result.exit_code == 1, result.output
    assert "run failed:" in result.text and "seed=1: RuntimeError: boom in seed 1" in result.text
    assert [r["config"]["seed"] for r in records(out).values()] == [0]  # seed 0 completed and is on the board
    assert (out / "leaderboard.csv").is_file()


def test_ray_workers_take_run_batches(data_root: Path, tmp_path: Path) -> None:
    """With --batch-runs, a Ray worker trains a whole batch: the records of the in-process batches."""
    common = [*TINY, "--strategy", "grow", "--compactness", "0.5,0.25", "--data-root", str(data_root)]
    here = invoke(*common, "--out", str(tmp_path / "here"), "--batch-runs", "2")
    ray = invoke(*common, "--out", str(tmp_path / "ray"), "--batch-runs", "2", "--workers", "2")
    assert here.exit_code == 0 and ray.exit_code == 0, here.output + ray.output
    expected, got = records(tmp_path / "here"), records(tmp_path / "ray")
    for found in (expected, got):
        for record in found.values():
            assert record.pop("batched").pop("runs") == 2
    assert len(expected) == 4 and got == expected
