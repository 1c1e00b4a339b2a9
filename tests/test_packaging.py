"""The repository travels with its protocol: the README's option table is the schema's, and a built wheel
(not only an editable install) carries the reference figures and draws a leaderboard anywhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from plasticity_bench.cli import option_rows, options_markdown
from plasticity_bench.run.records import ResultStore, make_record
from plasticity_bench.scenarios.registry import SCENARIOS

REPO = Path(__file__).resolve().parents[1]


def test_readme_option_table_is_generated_from_the_schema() -> None:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- options table: .*? -->\n(.*?)\n<!-- end of options table -->", readme, re.S)
    assert block is not None, "README lost its generated options table"
    assert block.group(1) == options_markdown(option_rows()), (
        "regenerate: plasticity-bench options --markdown"
    )


def test_protocol_doc_names_every_option_marked_ours() -> None:
    protocol = (REPO / "docs" / "protocol.md").read_text()
    ours = [row[0] for row in option_rows() if "[ours]" in row[3]]
    assert ours and all(f"`{name}`" in protocol for name in ours)


def paper_record(seed: int) -> dict:
    spec = SCENARIOS["permuted_mnist"]
    config = {
        "scenario": "permuted_mnist", "variant": None, "strategy": "dense", "compactness": 1.0, "seed": seed,
        "lr": spec.lr, "model": "mlp", "tasks": spec.tasks, "steps_per_task": spec.steps_per_task,
        "batch_size": spec.batch_size, "cycles": 5, "schedule": "neutral", "optimizer": "adam",
        "winning_ticket": False, "options": {"subset": "fixed"},
    }  # fmt: skip
    return make_record(config, {"taoa": 0.8 + seed / 100, "early_task_taa": 0.5}, {}, {}, 1.0)


def test_built_wheel_draws_a_leaderboard_from_another_directory(tmp_path: Path) -> None:
    wheels, site, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "strategies").mkdir()  # a user's own package named strategies, next to where they run
    (elsewhere / "strategies" / "__init__.py").write_text('MARK = "theirs"\n')
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO)], check=True
    )
    (wheel,) = wheels.glob("plasticity_bench-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    out = tmp_path / "results"
    for seed in range(2):
        ResultStore(out).write(paper_record(seed))
    code = "import plasticity_bench as pb; print(pb.__file__); from plasticity_bench.cli import app; app()"
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "300"}
    done = subprocess.run(
        [sys.executable, "-c", code, "leaderboard", "--out", str(out)],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0].startswith(str(site)), "ran the editable checkout, not the wheel"
    both = (
        "import strategies, plasticity_bench.strategies.grow as ours; "
        f"print(strategies.MARK, ours.__file__.startswith({str(site)!r}))"
    )
    names = subprocess.run(
        [sys.executable, "-c", both], cwd=elsewhere, env=env, capture_output=True, text=True, check=False
    )
    assert names.stdout.split() == ["theirs", "True"], (
        names.stdout + names.stderr
    )  # neither shadows the other
    suite = "from plasticity_bench.leaderboard.suite import suite_path; print(suite_path('lc26_table14'))"
    found = subprocess.run(
        [sys.executable, "-c", suite], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert found.stdout.startswith(str(site)), found.stdout + found.stderr  # the wheel carries the suites
    board = pd.read_csv(out / "leaderboard.csv")
    assert board.loc[0, "paper_avg_acc"] == 80.6 and bool(board.loc[0, "paper_comparable"])
    assert "80.6 ± 0.9" in done.stdout


def test_list_options_names_every_option_key() -> None:
    from typer.testing import CliRunner

    from plasticity_bench.cli import app

    text = " ".join(CliRunner().invoke(app, ["list", "options"], env={"COLUMNS": "400"}).output.split())
    assert all(row[0] in text for row in option_rows())


def test_help_answers_without_loading_torch() -> None:
    """``--help`` took 6 s: the command line imported torch and Avalanche before parsing anything."""
    code = "import sys, plasticity_bench.cli; print(sorted({'torch', 'avalanche'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
