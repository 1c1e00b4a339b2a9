"""What a run and a plugin author can rely on: a user strategy file runs once per process and joins
run-batches only when it says so, a record's device and threads are what the run used, and the command
line takes ``--debug`` anywhere and lists what it offers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from plasticity_bench.cli import app, run_cli
from plasticity_bench.run.config import RunConfig
from plasticity_bench.run.execute import execute
from plasticity_bench.strategies.registry import batchable, entry_for

PLUGIN = """
from pathlib import Path

with Path(__file__).with_name("loads.log").open("a") as log:
    log.write("loaded\\n")

from plasticity_bench.strategies.grow import GrowPlugin


class Mine(GrowPlugin):
    {attribute}
"""


def plugin_file(tmp_path: Path, attribute: str = "pass") -> Path:
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent(PLUGIN.format(attribute=attribute)))
    return path


def test_a_user_strategy_file_runs_once_per_process(tmp_path: Path) -> None:
    name = f"{plugin_file(tmp_path)}:Mine"
    first, second = entry_for(name).factory, entry_for(name).factory
    assert first is second
    assert (tmp_path / "loads.log").read_text().count("loaded") == 1


@pytest.mark.parametrize(("attribute", "expected"), [("pass", False), ("BATCHABLE = True", True)])
def test_user_strategies_opt_in_to_run_batches(tmp_path: Path, attribute: str, expected: bool) -> None:
    folder = tmp_path / attribute.split()[0]
    folder.mkdir()
    assert batchable(f"{plugin_file(folder, attribute)}:Mine") is expected


def test_a_run_uses_the_device_and_threads_its_record_names() -> None:
    config = RunConfig(
        scenario="permuted_mnist", variant="mnist5k", strategy="dense", compactness=1.0, seed=0, lr=1e-3,
        model="mlp", tasks=1, steps_per_task=2, batch_size=16, device="cuda", threads=1,
    )  # fmt: skip
    with pytest.raises(ValueError, match="configured for cuda"):
        execute(config, device="cpu")
    torch.set_num_threads(2)
    try:
        record = execute(RunConfig(**{**config.as_dict(), "device": "cpu"}), device="cpu")
        assert torch.get_num_threads() == 1 and record["config"]["threads"] == 1
    finally:
        torch.set_num_threads(1)


def test_debug_may_stand_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="finite number > 0"):  # --debug: the traceback, not one line
        run_cli(["run", "--lr", "0", "--tasks", "2", "--debug"])
    with pytest.raises(SystemExit) as stop:
        run_cli(["run", "--lr", "0", "--tasks", "2"])
    assert stop.value.code == 2 and "error: --lr 0.0" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("what", "expected"),
    [("scenarios", ["split_cifar100", "taa", "18,740"]), ("strategies", ["+moment_transplant", "dyno"]),
     ("options", ["edit_placement", "val_fraction"]), ("suites", ["lc26_table14_smoke", "LC26 Table 14"])],
)  # fmt: skip
def test_list_shows_scenarios_strategies_and_options(what: str, expected: list[str]) -> None:
    result = CliRunner().invoke(app, ["list", what], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    for text in expected:
        assert text in result.output, text
    wrong = CliRunner().invoke(app, ["list", "everything"])
    assert wrong.exit_code == 2 and "choose one of scenarios, strategies, options, suites" in wrong.output


HOST_PROBE = """
from pathlib import Path

from avalanche.core import SupervisedPlugin

from plasticity_bench.core.host import Host


class Probe(SupervisedPlugin):
    BATCHABLE = True

    def __init__(self, config):
        super().__init__()

    def after_update(self, strategy: Host, **kwargs):
        with Path(__file__).with_name("hosts.log").open("a") as log:
            log.write(f"{type(strategy).__name__} {isinstance(strategy, Host)}\\n")
"""


def test_both_hosts_satisfy_the_host_contract(tmp_path: Path) -> None:
    """The lone loop and a run-batch's per-run stand-in are both a :class:`Host` to a plugin."""
    from plasticity_bench.batch.trainer import execute_batch
    from plasticity_bench.scenarios.registry import SCENARIOS
    from plasticity_bench.sweep.plan import expand, sweep_base

    plugin = tmp_path / "probe.py"
    plugin.write_text(textwrap.dedent(HOST_PROBE))
    base = sweep_base(SCENARIOS["permuted_mnist"], 2, 1)
    configs = expand("permuted_mnist@mnist5k", [f"{plugin}:Probe"], [0.5], [0, 1], base)
    execute(configs[0])
    execute_batch(configs)
    seen = set((tmp_path / "hosts.log").read_text().splitlines())
    assert seen == {"OnlineStrategy True", "RunView True"}


def test_options_read_whole_words_in_an_80_column_terminal() -> None:
    """``options`` had a 12-character meaning column at 80 columns."""
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "plasticity_bench.cli", "options"], capture_output=True, text=True, check=True,
        env={**os.environ, "COLUMNS": "80"},
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    at = lines.index("subset")  # the option's name, then its fields indented, broken between fields
    assert lines[at + 1].startswith("    used by: permuted_mnist   values: fixed|per_task")
    assert any("one image subset for the stream" in line for line in lines)
