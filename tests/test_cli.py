"""Tests for ``plasticity-bench run``: leaderboard files, skip/force, errors, user plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from plasticity_bench.cli import app
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.sweep.plan import expand, sweep_base

QUICK = ["run", "--tasks", "2", "--steps", "50", "--seeds", "1"]

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    # rich wraps long lines at the terminal width: compare on whitespace-normalised text
    result.text = " ".join(result.output.split())
    return result


def leaderboard_strategies(out: Path) -> list[str]:
    assert (out / "leaderboard.csv").is_file() and (out / "leaderboard.md").is_file()
    return sorted(pd.read_csv(out / "leaderboard.csv")["strategy"])


def record_files(out: Path) -> dict[Path, tuple[int, int, bytes]]:
    return {
        p: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted((out / "records").rglob("*.json"))
    }


def test_run_writes_leaderboard_skips_existing_and_forces(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = invoke(*QUICK, "--out", str(out))
    assert first.exit_code == 0, first.output
    assert "3 runs, 0 already on disk" in first.text
    assert leaderboard_strategies(out) == ["dense", "grow", "prune"]
    md = (out / "leaderboard.md").read_text()
    assert all(f"| {name} |" in md for name in ("dense", "grow", "prune"))
    records = record_files(out)
    assert len(records) == 3
    by_strategy = {json.loads(b)["config"]["strategy"]: json.loads(b) for _, _, b in records.values()}
    assert by_strategy["dense"]["config"]["compactness"] == 1.0  # Dense runs once, dense
    assert by_strategy["grow"]["config"]["compactness"] == 0.5
    assert by_strategy["grow"]["per_task"]["final_active_units"] == [128, 128]
    assert (
        by_strategy["grow"]["config"]["tasks"] == 2 and by_strategy["grow"]["config"]["steps_per_task"] == 50
    )

    second = invoke(*QUICK, "--out", str(out))
    assert second.exit_code == 0, second.output
    assert "3 runs, 3 already on disk" in second.text
    assert record_files(out) == records  # untouched: same inode, mtime and bytes

    forced = invoke(*QUICK, "--out", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    assert "3 runs, 0 already on disk" in forced.text
    rerun = record_files(out)
    assert rerun.keys() == records.keys()
    assert all(rerun[p] != records[p] for p in records)  # every record rewritten
    assert leaderboard_strategies(out) == ["dense", "grow", "prune"]


def test_unknown_strategy_exit_code_2_names_valid_ones(tmp_path: Path) -> None:
    result = invoke(*QUICK, "--strategy", "dense,bogus", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "unknown strategy 'bogus'" in result.text
    assert all(f"'{name}'" in result.text for name in ("dense", "grow", "prune"))
    assert not (tmp_path / "out" / "records").exists()  # failed before any run


def test_compactness_out_of_range_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke(*QUICK, "--strategy", "grow", "--compactness", "1.5", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "compactness 1.5 is out of range" in result.text
    assert "(0, 1]" in result.text


def test_compactness_out_of_range_fails_before_any_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke(*QUICK, "--compactness", "0.5,1.5", "--out", str(out))
    assert result.exit_code == 2
    assert not list(out.rglob("*.json")), "no run should start when a requested compactness is invalid"


USER_PLUGINS = '''
from pathlib import Path

from avalanche.core import SupervisedPlugin

from plasticity_bench.strategies.base import StructuralPlugin

CALLS = Path(__file__).with_name("calls.txt")


class MyPlugin(SupervisedPlugin):
    """A plain Avalanche plugin built from a StrategyConfig: logs every task it trains on."""

    def __init__(self, config):
        super().__init__()
        self.config = config

    def after_training_exp(self, strategy, **kwargs):
        with CALLS.open("a") as f:
            f.write(f"{self.config.compactness} {strategy.experience.current_experience}\\n")


class DropLast(StructuralPlugin):
    """Prune-like: switch off the highest-index active units at each edit point."""

    grows = False

    def edit(self, strategy, cycle):
        for layer in self.layers(strategy):
            active = layer.units.active()
            k = self.budget(layer, cycle, active.numel() - 1)
            if k:
                layer.units.set_units(active[active.numel() - k :], False)
                self.log_edit(strategy, cycle, layer, active[active.numel() - k :])
'''


def test_user_plugin_from_file_runs_and_is_on_the_leaderboard(tmp_path: Path) -> None:
    plugin_file = tmp_path / "my_plugins.py"
    plugin_file.write_text(textwrap.dedent(USER_PLUGINS))
    out = tmp_path / "out"
    names = f"{plugin_file}:MyPlugin,{plugin_file}:DropLast"
    result = invoke(*QUICK, "--strategy", names, "--compactness", "0.3", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "calls.txt").read_text().split("\n") == ["0.3 0", "0.3 1", ""]
    strategies = leaderboard_strategies(out)
    assert strategies == sorted([f"{plugin_file}:MyPlugin", f"{plugin_file}:DropLast"])
    records = {json.loads(b)["config"]["strategy"]: json.loads(b) for _, _, b in record_files(out).values()}
    drop = records[f"{plugin_file}:DropLast"]["per_task"]
    assert drop["final_active_units"] == [77, 77]  # round(0.3 * 256), reached by the user's edits
    assert records[f"{plugin_file}:MyPlugin"]["per_task"]["final_active_units"] == [256, 256]


def test_console_script_subprocess(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("plasticity-bench")
    assert script.is_file(), "console script not installed (pip install -e .)"
    out = tmp_path / "out"
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}  # see one_torch_thread
    proc = subprocess.run(
        [str(script), *QUICK, "--out", str(out)], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 runs, 0 already on disk" in proc.stdout
    assert leaderboard_strategies(out) == ["dense", "grow", "prune"]
    assert "leaderboard.csv" in proc.stdout


def test_dense_runs_at_the_scenario_lr_only_in_an_lr_sweep() -> None:
    spec = SCENARIOS["permuted_mnist"]
    base = sweep_base(spec, 2, 5)
    configs = expand("permuted_mnist@mnist5k", ["dense", "grow"], [0.5], [0, 1], base, {}, [0.01, 0.001], [7])
    dense = {(c.lr, c.seed) for c in configs if c.strategy == "dense"}
    grow = {(c.lr, c.seed) for c in configs if c.strategy == "grow"}
    assert dense == {(spec.lr, 0), (spec.lr, 1)}  # no selection seeds: Dense's lr is not chosen
    assert grow == {(lr, s) for lr in (0.01, 0.001) for s in (0, 1, 7)}
    single = expand("permuted_mnist@mnist5k", ["dense"], [0.5], [0], base, {}, [0.01])
    assert [c.lr for c in single] == [0.01]  # one lr given: everyone runs at it


def test_stacked_fields_break_between_fields_only() -> None:
    from plasticity_bench.cli import field_lines

    fields = ["tasks: 500", "steps/task: 30,000", "batch: 16", "optimizer: adam"]
    # 10 + 3 + 18 = 31 fits in 32, the next field does not; a field wider than a line keeps one of its own
    assert field_lines(fields, 32) == ["tasks: 500   steps/task: 30,000", "batch: 16   optimizer: adam"]
    assert field_lines(["a" * 40, "b"], 10) == ["a" * 40, "b"]
