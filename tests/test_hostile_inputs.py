"""Hostile inputs (issue: "safe to share, hard to break"): a results folder runs no code, and every bad input
of the review gets one ``error:`` line (exit 2, before training) or a warning and a correct continuation.
One test per case, table driven where it fits; the review's case is named in each."""

from __future__ import annotations

import copy
import json
import os
import stat
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plasticity_bench.cli import app
from plasticity_bench.run.records import CorruptRecordError, ResultStore, read_record, run_key

QUICK = ["run", "--strategy", "dense", "--tasks", "2", "--steps", "3", "--seeds", "1"]


def invoke(*args: str, env: dict[str, str] | None = None):
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400", **(env or {})})
    result.text = " ".join(result.output.split())
    return result


def assert_one_error(result, *fragments: str) -> None:
    """Exit 2, one ``error:`` line naming the problem, no traceback."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in result.text, (fragment, result.output)


# --------------------------------------------------------------------- inputs refused before training

BAD_RUNS = [
    (["--threads", "100000"], ["--threads 100000", "give 1 to"]),
    (["--seeds", "99999999999999999999999"], ["--seeds", "count from 1 to"]),
    (["--seeds", "0,99999999999"], ["--seeds", "at most"]),
    (["--lr", "0"], ["--lr 0.0", "finite number > 0"]),
    (["--lr", "-0.01"], ["--lr -0.01", "> 0"]),
    (["--lr", "nan"], ["--lr nan", "finite"]),
    (["--lr", "inf"], ["--lr inf", "finite"]),
    (["--model", "resnet"], ["--model resnet", "mlp"]),
    (["--schedule", "bogus"], ["--schedule bogus", "neutral"]),
    (["--batch-size", "1000000"], ["--batch-size 1000000", "training rows"]),
    (["--strategy", "l2_init", "--option", "l2_init_weight=nan"], ["l2_init_weight=nan", "finite"]),
    (["--strategy", "l2_init", "--option", "l2_init_weight=inf"], ["l2_init_weight=inf", "finite"]),
    (["--strategy", "grow+rand_smooth_leaky", "--option", 'smooth_leaky={"c_s": NaN}'],
     ["smooth_leaky", "finite"]),
    (["--workers", "2", "--cpus-per-run", "nan"], ["--cpus-per-run nan"]),
    (["--strategy", ":"], ["--strategy ':'", "file.py:Class"]),
    (["--workers", "2", "--ray-address", "127.0.0.1:1"], ["--ray-address 127.0.0.1:1", "within 5 s"]),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "fragments"), BAD_RUNS, ids=[" ".join(e) for e, _ in BAD_RUNS])
def test_bad_run_inputs_get_one_error_line(tmp_path: Path, extra: list[str], fragments: list[str]) -> None:
    result = invoke(*QUICK, "--out", str(tmp_path / "out"), *extra)
    assert_one_error(result, *fragments)
    assert not (tmp_path / "out" / "records").exists()  # nothing trained, nothing written


def test_an_empty_out_is_refused(tmp_path: Path) -> None:
    """``--out ""`` wrote into the current folder."""
    result = invoke(*QUICK, "--out", "")
    assert result.exit_code == 2 and "--out" in result.output and "empty" in result.output


def test_markup_in_a_path_is_printed_as_typed(tmp_path: Path) -> None:
    """``--out .../[bold]x`` showed ``.../x`` (rich markup swallowed)."""
    missing = tmp_path / "[bold]x" / "[red]sweep.yaml"
    result = invoke("run", str(missing), "--out", str(tmp_path / "out"))
    assert_one_error(result, "[bold]x/[red]sweep.yaml", "cannot read it")
    plugin = tmp_path / "[bold]plugin.py"
    result = invoke(*QUICK[:2], f"{plugin}:X", *QUICK[3:], "--out", str(tmp_path / "out"))
    assert_one_error(result, "[bold]plugin.py", "not found")


def test_grids_are_deduplicated(tmp_path: Path) -> None:
    """``--strategy dense,dense`` printed "2 runs" and a false "computed meanwhile by another sweep"."""
    out = tmp_path / "out"
    result = invoke(*QUICK[:2], "dense,dense", *QUICK[3:], "--lr", "0.001,0.001", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "1 runs, 0 already on disk" in result.text and "meanwhile" not in result.text
    assert len(list((out / "records").rglob("*.json"))) == 1


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\x89PNG\r\n\x1a\n\xff\xfe", "not a YAML text file"),
        (b"scenarios: [permuted_mnist@mnist5k]\nseeds: 1\nseeds: 2\n", "'seeds' appears twice"),
    ],
    ids=["binary file", "duplicate key"],
)
def test_bad_sweep_files_name_the_file(tmp_path: Path, content: bytes, fragment: str) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_bytes(content)
    assert_one_error(invoke("run", str(sweep), "--out", str(tmp_path / "out")), str(sweep), fragment)


def test_a_plugin_that_exits_is_a_failed_run_not_a_success(tmp_path: Path) -> None:
    """A plugin raising ``SystemExit(0)`` gave exit 0 with nothing written."""
    plugin = tmp_path / "quits.py"
    plugin.write_text(
        textwrap.dedent(
            """
            from avalanche.core import SupervisedPlugin

            class Quits(SupervisedPlugin):
                def __init__(self, config):
                    super().__init__()

                def before_training_exp(self, strategy, **kwargs):
                    raise SystemExit(0)
            """
        )
    )
    result = invoke(*QUICK[:2], f"{plugin}:Quits", *QUICK[3:], "--out", str(tmp_path / "out"))
    assert result.exit_code == 1 and "run failed" in result.output and "SystemExit" in result.output


def test_a_dry_run_of_an_enormous_grid_warns(tmp_path: Path) -> None:
    """A 37,000-run, 2,285-hour dry run gave no warning."""
    seeds = ",".join(str(s) for s in range(4000))
    result = invoke(
        *QUICK[:2], "dense,grow,prune", "--tasks", "2", "--steps", "3", "--seeds", seeds,
        "--compactness", "0.2,0.3,0.4,0.5", "--out", str(tmp_path / "out"), "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning: 36,000 runs" in result.text and "check the grid" in result.text


# --------------------------------------------------------------------- a results folder runs no code

EVIL = """
from pathlib import Path
Path(__file__).with_name("code-ran").touch()

class Evil:
    pass
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small results folder: 2 dense and 2 grow runs."""
    out = tmp_path_factory.mktemp("results")
    for strategy in ("dense", "grow"):
        result = invoke(
            *QUICK[:2], strategy, "--tasks", "2", "--steps", "3", "--seeds", "2", "--out", str(out)
        )
        assert result.exit_code == 0, result.output
    return out


def copy_results(results: Path, tmp_path: Path) -> Path:
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(results, out)
    return out


def plant_record(out: Path, change) -> Path:
    """A copy of one of ``out``'s records, changed by ``change(record)``, with its key recomputed."""
    source = next((out / "records").rglob("*.json"))
    record = json.loads(source.read_text())
    change(record)
    if isinstance(record.get("config"), dict):
        record["key"] = run_key(record["config"])
    path = source.with_name("planted.json")
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize(
    "view", [["leaderboard", "--out"], ["plot", "--out"], ["report", "--out"], ["diagnose", "--out"]]
)
@pytest.mark.parametrize("body", [EVIL, "def broken(:\n"], ids=["runs code", "syntax error"])
def test_views_never_import_a_strategy_named_in_a_record(
    results: Path, tmp_path: Path, view: list[str], body: str
) -> None:
    """A record whose ``config.strategy`` names ``file.py:Class`` made ``leaderboard`` import it."""
    out = copy_results(results, tmp_path)
    evil = tmp_path / "evil.py"
    evil.write_text(body)
    plant_record(out, lambda r: r["config"].update(strategy=f"{evil}:Evil"))
    result = invoke(*view, str(out))
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "code-ran").exists()
    assert "Traceback" not in result.output


MALFORMED = {
    "summary not a number": lambda r: r["summary"].update(taoa="abc"),
    "summary a list": lambda r: r["summary"].update(taoa=[1]),
    "unknown schema": lambda r: r.update(schema=99),
    "no schema": lambda r: r.pop("schema"),
    "no config.model": lambda r: r["config"].pop("model"),
    "seed a string": lambda r: r["config"].update(seed="0"),
    "lr a string": lambda r: r["config"].update(lr="fast"),
    "tasks a float": lambda r: r["config"].update(tasks=2.5),
    "strategy a number": lambda r: r["config"].update(strategy=3),
    "options a list": lambda r: r["config"].update(options=[1]),
    "config a list": lambda r: r.update(config=[]),
    "summary missing": lambda r: r.pop("summary"),
    "per_task a list": lambda r: r.update(per_task=[1, 2]),
    "curves a string": lambda r: r.update(curves="x"),
    "edits not objects": lambda r: r.update(edits=[1, 2]),
    "diagnostics a dict": lambda r: r.update(diagnostics={}),
    "final_masks a string": lambda r: r.update(final_masks="all"),
}


@pytest.mark.parametrize("change", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_records_are_named_and_skipped_by_every_view(results: Path, tmp_path: Path, change) -> None:
    out = copy_results(results, tmp_path)
    planted = plant_record(out, change)
    with pytest.raises(CorruptRecordError):
        read_record(planted)
    for view in (["leaderboard", "--out"], ["plot", "--out"], ["report", "--out"], ["diagnose", "--out"]):
        result = invoke(*view, str(out))
        assert result.exit_code == 0, (view, result.output)
        assert f"skipped corrupt record {planted}" in result.text, (view, result.output)
        assert "Traceback" not in result.output


# --------------------------------------------------------------------- folders and disks


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_views_on_a_read_only_folder_give_one_line(results: Path, tmp_path: Path) -> None:
    out = copy_results(results, tmp_path)
    out.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        for view in (["leaderboard", "--out"], ["plot", "--out"], ["report", "--out"]):
            result = invoke(*view, str(out))
            assert (
                result.exit_code == 2 and "cannot write" in result.output and "Traceback" not in result.output
            )
    finally:
        out.chmod(stat.S_IRWXU)


def test_plot_into_a_file_and_report_into_a_folder_give_one_line(results: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    result = invoke("plot", "--out", str(results), "--figures", str(a_file))
    assert result.exit_code == 2 and "error: cannot write" in result.output and str(a_file) in result.text
    result = invoke("report", "--out", str(results), "--html", str(tmp_path))
    assert result.exit_code == 2 and "error: cannot write" in result.output and str(tmp_path) in result.text


def test_a_full_disk_at_the_leaderboard_write_gives_one_line(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = copy_results(results, tmp_path)

    def full(path: Path, text: str) -> Path:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr("plasticity_bench.leaderboard.tables.atomic_write_text", full)
    result = invoke("leaderboard", "--out", str(out))
    assert (
        result.exit_code == 2
        and "No space left on device" in result.text
        and "Traceback" not in result.output
    )


def test_a_checkpoint_left_by_a_killed_run_resumes_under_another_batch_size(tmp_path: Path) -> None:
    """Rerun with another ``--batch-runs``, a killed run said "continue from their checkpoint" and trained
    from scratch, leaving the checkpoint: now runs with a checkpoint run alone and continue from it."""
    out = tmp_path / "out"
    args = [*QUICK[:2], "grow", "--tasks", "3", "--steps", "4", "--seeds", "2", "--out", str(out)]
    assert invoke(*args, "--checkpoint-every", "1").exit_code == 0
    store = ResultStore(out)
    (first, *_) = sorted((out / "records").rglob("*.json"))
    record = json.loads(first.read_text())
    reference = copy.deepcopy(record)
    # leave the run as a kill would: its record gone, a checkpoint of an earlier boundary in place
    from plasticity_bench.run.config import RunConfig
    from plasticity_bench.run.execute import execute
    from plasticity_bench.run.resume import CheckpointPolicy, RunCheckpoint

    config = RunConfig(**record["config"])
    path = store.checkpoint_path(record["config"])
    checkpoint = RunCheckpoint(path, record["key"], CheckpointPolicy(tasks=1))
    calls = []

    def stop_after_two(task: int) -> None:
        calls.append(task)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(config, None, "cpu", stop_after_two, checkpoint)
    first.unlink()
    assert path.is_file()
    result = invoke(*args, "--batch-runs", "2")
    assert result.exit_code == 0 and "1 runs continue from their checkpoint" in result.text, result.output
    assert not path.exists()
    again = json.loads(first.read_text())
    for part in ("summary", "per_task", "edits"):
        assert again[part] == reference[part], part


def test_waiting_for_a_held_lock_says_so(tmp_path: Path) -> None:
    """A sweep waiting on a stopped lock holder waited silently."""
    import threading
    import time

    from filelock import FileLock

    from plasticity_bench.sweep.claims import acquire

    path = tmp_path / "run.lock"
    held = threading.Event()

    def hold() -> None:  # another holder (a thread here; another sweep's process in the field)
        with FileLock(path):
            held.set()
            time.sleep(0.5)

    threading.Thread(target=hold).start()
    held.wait(5)
    waiter = FileLock(path)
    assert not acquire(waiter, wait=False)
    with pytest.warns(UserWarning, match=f"waiting for another process.*{path.name}"):
        assert acquire(waiter, wait=True)
    waiter.release()


def test_a_dry_run_estimates_without_the_data(tmp_path: Path) -> None:
    """``--dry-run`` counts runs and estimates time with no data present, every absent dataset named at
    once (the fidelity issue's outcome 4), for ``run`` and ``reproduce`` alike."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    result = invoke(
        "run", "--scenario", "split_cifar100", "--strategy", "dense,grow", "--seeds", "1", "--tasks", "2",
        "--steps", "4", "--data-root", str(empty), "--out", str(tmp_path / "out"), "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 runs, 2 pending" in result.text and "calibrated on a stand-in: data absent" in result.text
    assert result.text.count("warning: data absent for split_cifar100") == 1 and str(empty) in result.text
    result = invoke(
        "reproduce", "lc26-leaderboard", "--scenario", "permuted_mnist,random_label_mnist", "--seeds", "2",
        "--data-root", str(empty), "--out", str(tmp_path / "lc26"), "--dry-run", "--smoke",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "12 runs, 12 pending" in result.text  # 2 headline cells x 3 lrs x 2 seeds
    for name in ("permuted_mnist", "random_label_mnist"):
        assert f"warning: data absent for {name}" in result.text
    assert not (tmp_path / "lc26" / "records").exists()


@pytest.mark.parametrize(
    ("source", "fragments"),
    [
        ("class Bad(object)\n    pass\n", ["bad.py, line 1: expected ':'", "--debug"]),
        (
            "import not_a_module_anywhere\n",
            ["bad.py, line 1: loading it raised ModuleNotFoundError", "--debug"],
        ),
    ],
)
def test_a_plugin_that_does_not_load_is_one_error_line(
    tmp_path: Path, source: str, fragments: list[str]
) -> None:
    """A syntax error or a failing import in a plugin file gave a 61-line traceback and exit 1."""
    plugin = tmp_path / "bad.py"
    plugin.write_text(source)
    result = invoke(*QUICK[:2], f"{plugin}:Bad", *QUICK[3:], "--out", str(tmp_path / "out"))
    assert_one_error(result, *fragments)


BOOM = """
from plasticity_bench.strategies.grow import GrowPlugin


class Boom(GrowPlugin):
    def edit(self, strategy, cycle):
        raise RuntimeError("my bug")
"""


def test_a_plugin_that_raises_is_named_with_its_line_and_no_empty_leaderboard_follows(tmp_path: Path) -> None:
    plugin = tmp_path / "boom.py"
    plugin.write_text(BOOM)
    args = [
        "run",
        "--strategy",
        f"{plugin}:Boom",
        "--tasks",
        "3",
        "--steps",
        "3",
        "--cycles",
        "2",
        "--seeds",
        "1",
    ]
    result = invoke(*args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert f"RuntimeError: my bug (at {plugin}:7; --debug shows the traceback)" in result.output
    assert "no record of this sweep: every run failed" in result.output
    assert (
        "leaderboard" not in result.output.replace("no leaderboard", "") and "records." not in result.output
    )
