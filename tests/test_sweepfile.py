"""Sweep files (plasticity_bench.sweep.file): the shipped LC26 sweeps, bad keys refused before any run, a
YAML sweep run end to end."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plasticity_bench.cli import app, plan
from plasticity_bench.leaderboard.reproduce import cell_configs, select_cells
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.sweep.file import load_sweep

REPO = Path(__file__).resolve().parents[1]


def grid_of(configs) -> set[tuple]:
    return {(c.scenario, c.strategy, c.compactness, c.lr, c.seed) for c in configs}


def test_shipped_lc26_sweep_is_the_reproduce_grid() -> None:
    configs, held = plan(load_sweep(REPO / "sweeps" / "lc26_table14.yaml"), "cpu", 1)
    cells = cell_configs(select_cells("lc26-table14", None, None), [0, 1, 2, 3, 4], [5, 6, 7], False, {})
    assert held == [5, 6, 7] and grid_of(configs) == grid_of(cells)
    assert len(configs) == 6 * (5 + 7 * 4 * 3 * 8)
    spec = SCENARIOS  # full protocol sizes, the paper's data
    assert all(
        (c.variant, c.tasks, c.steps_per_task)
        == (None, spec[c.scenario].tasks, spec[c.scenario].steps_per_task)
        for c in configs
    )
    dense = {c.lr for c in configs if c.strategy == "dense" and c.scenario == "split_cifar100"}
    assert dense == {1e-3}


def test_smoke_sweep_is_the_same_grid_shortened() -> None:
    full, _ = plan(load_sweep(REPO / "sweeps" / "lc26_table14.yaml"), "cpu", 1)
    smoke, held = plan(load_sweep(REPO / "sweeps" / "lc26_table14_smoke.yaml"), "cpu", 1)
    assert held == [] and {c.seed for c in smoke} == {0}
    assert {k[:4] for k in grid_of(smoke)} == {k[:4] for k in grid_of(full)}
    assert {(c.tasks, c.steps_per_task) for c in smoke} == {(2, 3)}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("scenarios: [permuted_mnist]\nbogus: 1\n", "unknown key(s) bogus; valid keys: scenarios"),
        ("scenarios: permuted_mnist\n", "scenarios must be a list of scenario names"),
        ("scenarios: [permuted_mnist]\nseeds: [0, true]\n", "seeds must be a count or a list of seeds"),
        ("strategies: [dense]\n", "'scenarios' is required"),
        ("scenarios: [permuted_mnist]\nstrategies: [bogus]\n", "unknown strategy 'bogus'"),
        ("scenarios: [permuted_mnist]\noptions: {bogus_key: 1}\n", "bogus_key"),
        ("scenarios: [permuted_mnist\n", "not valid YAML"),
    ],
)
def test_bad_sweep_files_are_refused_before_any_run(tmp_path: Path, text: str, fragment: str) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(text)
    result = CliRunner().invoke(
        app, ["run", str(sweep), "--out", str(tmp_path / "out")], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2, result.output
    assert fragment in " ".join(result.output.split())
    assert not (tmp_path / "out" / "records").exists()


def test_grid_flags_beside_a_sweep_file_are_refused(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("scenarios: [permuted_mnist@mnist5k]\n")
    result = CliRunner().invoke(app, ["run", str(sweep), "--seeds", "2"], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "--seeds: the sweep file" in " ".join(result.output.split())


def test_a_yaml_sweep_runs_and_dry_run_estimates(data_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "scenarios: [permuted_mnist, split_mnist]\nstrategies: [dense, grow]\ncompactness: [0.5]\n"
        "seeds: [3]\ntasks: 2\nsteps: 3\noptions: {selector: gradient}\n"
    )
    out = tmp_path / "out"
    common = ["run", str(sweep), "--data-root", str(data_root), "--out", str(out)]
    dry = CliRunner().invoke(app, [*common, "--dry-run"], env={"COLUMNS": "300"})
    assert dry.exit_code == 0, dry.output
    assert "4 runs, 4 pending, 0 already on disk" in dry.output
    assert "ms/update per run (calibrated)" in dry.output
    assert not (out / "records").exists()
    done = CliRunner().invoke(app, common, env={"COLUMNS": "300"})
    assert done.exit_code == 0, done.output
    again = CliRunner().invoke(app, [*common, "--dry-run"], env={"COLUMNS": "300"})
    assert "4 runs, 0 pending, 4 already on disk" in again.output


def test_run_takes_a_shipped_suite_by_name_and_names_the_suites_for_anything_else(tmp_path: Path) -> None:
    from plasticity_bench.leaderboard.suite import suite_path, sweep_file

    assert sweep_file(Path("lc26_table14_smoke")) == suite_path("lc26_table14_smoke")
    assert suite_path("lc26_table14").read_bytes() == (REPO / "sweeps" / "lc26_table14.yaml").read_bytes()
    result = CliRunner().invoke(app, ["run", "lc26_table15", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert (
        "lc26_table15: neither a sweep file nor a suite; suites: "
        "dyno_transfer, lc26_table14, lc26_table14_smoke" in (" ".join(result.output.split()))
    )


def test_calibration_times_slow_updates_on_fewer_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seconds = setup + per-update x updates: the fit gives both back; a slow group (VGG11 on a CPU) is
    timed on 2 and 6 updates instead of 20 and 120."""
    from plasticity_bench.sweep import estimate

    cases = ((1.0, 0.01, estimate.CALIBRATION_STEPS), (30.0, 10.0, estimate.SLOW_STEPS))
    for setup, per_update, counts in cases:
        trained: list[int] = []
        monkeypatch.setattr(estimate, "train_for", partial(_fake_training, trained, setup, per_update))
        got_setup, got_per_update, _ = estimate.calibrate([object()], object())
        assert got_setup == pytest.approx(setup) and got_per_update == pytest.approx(per_update)
        assert trained[-2:] == list(counts)


def _fake_training(
    trained: list, setup: float, per_update: float, batch: list, steps: int, settings: object
) -> float:
    trained.append(steps)
    return setup + per_update * steps
