"""Seeing the runs: learning curves, edit logs and final masks in records, the winning ticket rebuilt from a
record, experiment loggers, figures, the HTML report and the terminal output of a sweep."""

from __future__ import annotations

import copy
import io
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from scipy import stats
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from plasticity_bench.cli import app
from plasticity_bench.core.masks import masks_from_indices, unit_indices
from plasticity_bench.leaderboard.aggregate import aggregate
from plasticity_bench.leaderboard.tables import to_markdown
from plasticity_bench.measure.cohorts import CohortDiagnostics
from plasticity_bench.measure.metrics import binned
from plasticity_bench.run.execute import execute, retrain_ticket
from plasticity_bench.run.loggers import Recording, hparam_values, parse_loggers, run_name
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.sweep.plan import expand, sweep_base
from plasticity_bench.sweep.progress import ProgressLines, duration
from plasticity_bench.views.plots import (
    FIGURES,
    TRANSFER_FIGURES,
    Group,
    groups_of,
    mean_band,
    write_figures,
)
from plasticity_bench.views.report import render_report

#: The figures a continual stream's records draw (the transfer ones need DYNO's transfer streams).
CONTINUAL_FIGURES = {name: plot for name, plot in FIGURES.items() if name not in TRANSFER_FIGURES}

TASKS, STEPS = 3, 20


def configs(strategies: list[str], seeds: list[int], options: dict[str, Any], **extra: Any) -> list:
    base = sweep_base(SCENARIOS["permuted_mnist"], TASKS, STEPS, **extra)
    return expand("permuted_mnist", strategies, [0.5], seeds, base, options)


@pytest.fixture(scope="module")
def fixture_records(data_root: Path) -> list[dict[str, Any]]:
    """Dense, Grow, Prune and DYNO with a winning ticket, two seeds each (written as a sweep would)."""
    options = {"diag_every": 4, "trigger_every": 10}
    todo = configs(["dense", "grow", "prune", "dyno"], [0, 1], options, winning_ticket=True)
    return [execute(c, data_root, recording=Recording(curve_bin=8)) for c in todo]


def test_binned_means_with_a_short_last_bin() -> None:
    assert binned(np.array([1, 0, 1, 1, 0]), 2) == [0.5, 1.0, 0.0]
    assert binned(np.array([0.25, 0.75]), 5) == [0.5]
    with pytest.raises(ValueError, match="bin"):
        binned(np.array([1.0]), 0)


def test_records_hold_curves_edits_and_final_masks(fixture_records: list[dict[str, Any]]) -> None:
    for record in fixture_records:
        curves = record["curves"]
        assert curves["bin"] == 8
        assert [len(task) for task in curves["online_acc"]] == [math.ceil(STEPS / 8)] * TASKS
        assert len(curves["wt_online_acc"]) == TASKS
        for task_curve, task_mean in zip(curves["online_acc"], record["per_task"]["online_acc"]):
            weights = [8, 8, STEPS - 16]  # the curve's bins weighted back give the task's mean
            assert np.average(task_curve, weights=weights) == pytest.approx(task_mean, abs=1e-6)
        active = [len(units) for units in record["final_masks"]]
        assert active == record["per_task"]["final_active_units"]
    for strategy in ("grow", "prune"):
        record = next(r for r in fixture_records if r["config"]["strategy"] == strategy)
        for layer, units in enumerate(record["final_masks"]):
            edits = [e for e in record["edits"] if e["layer"] == layer]
            assert edits and edits[-1]["active"] == len(units)
            touched = {u for e in edits for u in e["units"]}
            assert touched <= set(units) if strategy == "grow" else touched.isdisjoint(units)
    assert all("edits" not in r for r in fixture_records if r["config"]["strategy"] in ("dense", "dyno"))


def test_a_winning_ticket_is_rebuilt_from_its_record_alone(
    fixture_records: list[dict[str, Any]], data_root: Path
) -> None:
    for record in [r for r in fixture_records if r["config"]["strategy"] in ("grow", "prune")][:2]:
        metrics = retrain_ticket(record, data_root)
        assert metrics.summary["taoa"] == record["summary"]["wt_taoa"]
        assert metrics.curve == record["curves"]["wt_online_acc"]


def test_masks_round_trip_through_unit_indices() -> None:
    masks = masks_from_indices([[0, 3], [], [1]], [4, 2, 3])
    assert [m.tolist() for m in masks] == [[1, 0, 0, 1], [0, 0], [0, 1, 0]]
    assert unit_indices(masks) == [[0, 3], [], [1]]
    with pytest.raises(ValueError, match="outside"):
        masks_from_indices([[4]], [4])


def test_loggers_write_files_their_readers_parse(data_root: Path, tmp_path: Path) -> None:
    config = configs(["grow"], [0], {"diag_every": 4})[0]
    recording = Recording(curve_bin=5, loggers=("tensorboard", "csv"), log_dir=tmp_path)
    record = execute(config, data_root, recording=recording)
    name = run_name(config.as_dict())
    table = pd.read_csv(tmp_path / "csv" / f"{name}.csv")
    assert list(table.columns) == [
        "run",
        "scenario",
        "strategy",
        "compactness",
        "lr",
        "seed",
        "metric",
        "x",
        "value",
    ]
    assert set(table.run) == {name} and set(table.strategy) == {"grow"} and set(table.seed) == {0}
    curve = table[table.metric == "OnlineAcc/Curve"]
    flat = [v for task in record["curves"]["online_acc"] for v in task]
    assert curve.value.tolist() == pytest.approx(flat) and curve.x.tolist()[-1] == TASKS * STEPS
    taoa = table[table.metric == "TAOA"]
    assert taoa.x.tolist() == [STEPS, 2 * STEPS, 3 * STEPS]
    assert taoa.value.iloc[-1] == pytest.approx(record["summary"]["taoa"])
    assert table.metric.str.startswith("Parity/grad/Layer0/").any()
    ranks = table[table.metric == "Plasticity/effective_rank/Layer0"]  # the diagnostics reach the loggers
    expected = [row["effective_rank"] for row in record["plasticity"] if row["layer"] == 0]
    assert ranks.value.tolist() == pytest.approx(expected) and ranks.x.tolist() == [
        STEPS,
        2 * STEPS,
        3 * STEPS,
    ]
    assert table[table.metric == "ActiveUnits/Layer0"].value.tolist() == [
        t[0] for t in record["per_task"]["active_units"]
    ]
    events = EventAccumulator(str(tmp_path / "tensorboard" / name))
    events.Reload()
    scalars = events.Scalars("TAOA")
    assert [s.step for s in scalars] == [STEPS, 2 * STEPS, 3 * STEPS]
    assert scalars[-1].value == pytest.approx(record["summary"]["taoa"], abs=1e-6)
    assert "ActiveUnits/Layer1" in events.Tags()["scalars"]
    # the loss in the curve's bins, and the final figures (TensorBoard's HParams) at the run's end
    loss = table[table.metric == "Loss/Train"]
    assert loss.x.tolist() == curve.x.tolist() and (loss.value > 0).all()
    final = table[table.metric == "final/taoa"]
    assert final.value.tolist() == pytest.approx([record["summary"]["taoa"]]) and final.x.tolist() == [
        TASKS * STEPS
    ]
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")
    assert events.Scalars("final/taoa")[0].value == pytest.approx(record["summary"]["taoa"], abs=1e-6)
    # logging changes nothing of the run
    quiet = execute(config, data_root, recording=Recording(curve_bin=5))
    assert quiet["summary"] == record["summary"] and quiet["curves"] == record["curves"]


def test_hparams_flatten_the_config() -> None:
    config = {
        "scenario": "s",
        "variant": None,
        "lr": 0.1,
        "options": {"smooth_leaky": {"p": 1}, "rewind": "imp"},
    }
    assert hparam_values(config) == {
        "scenario": "s", "variant": "none", "lr": 0.1, "option.rewind": "imp",
        "option.smooth_leaky": '{"p": 1}',
    }  # fmt: skip


def test_two_edits_at_one_step_log_under_tags_of_their_own() -> None:
    plugin = CohortDiagnostics.__new__(CohortDiagnostics)
    plugin._logged = 0
    row = {"layer": 0, "snapshot": "post", "step": 40, "act_log_parity": 0.5, "grad_log_parity": -1.0}
    plugin.rows = [{**row, "cycle": 1}, {**row, "cycle": 2, "act_log_parity": 0.25}]
    values = plugin.logged_values()
    tags = [(tag, x) for tag, _, x in values]
    assert len(set(tags)) == 4 and ("Parity/act/Layer0/post/edit2", 40) in tags
    assert ("Parity/act/Layer0/post", 0.5, 40) in values and (
        "Parity/act/Layer0/post/edit2",
        0.25,
        40,
    ) in values


def test_dyno_widths_reach_the_loggers(data_root: Path, tmp_path: Path) -> None:
    config = configs(["dyno"], [0], {"trigger_every": 10, "dyno_delta": 0.0})[0]
    record = execute(config, data_root, recording=Recording(loggers=("csv",), log_dir=tmp_path))
    table = pd.read_csv(tmp_path / "csv" / f"{run_name(config.as_dict())}.csv")
    widths = table[table.metric == "DynoWidth/Layer0"]
    assert widths.value.tolist() == [float(w["widths"][0]) for w in record["dyno"]["active_width"]]


def test_logger_names_are_checked() -> None:
    assert parse_loggers(["csv", "tensorboard,csv"]) == ("csv", "tensorboard")
    with pytest.raises(ValueError, match="--logger 'mlflow'"):
        parse_loggers(["mlflow"])
    with pytest.raises(ValueError, match="curve-bin"):
        Recording(curve_bin=0)


def test_every_plot_function_draws_from_fixture_records(
    fixture_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    groups = groups_of(fixture_records)
    assert sorted(len(g.records) for g in groups) == [2, 2, 2, 2]
    for name, plot in CONTINUAL_FIGURES.items():
        fig = plot(groups, "permuted_mnist")
        assert fig is not None, name
        assert any(ax.has_data() for ax in fig.axes), name
    assert all(FIGURES[name](groups, "permuted_mnist") is None for name in TRANSFER_FIGURES)
    written = write_figures(fixture_records, tmp_path)
    assert sorted(p.name for p in written) == sorted(
        f"permuted_mnist_{name}.{fmt}" for name in CONTINUAL_FIGURES for fmt in ("png", "svg")
    )
    for path in written:
        head = path.read_bytes()[:8]
        assert path.stat().st_size > 5000 and (head.startswith(b"\x89PNG") or b"<?xml" in head)


def test_percent_bands_stay_in_bounds_and_task_axes_have_whole_ticks() -> None:
    """Two seeds at 2% and 98%: the t-band (mean 50 +- 610 points) is drawn inside [0, 100]."""
    records = [{"per_task": {"online_acc": [acc, acc, acc]}} for acc in (0.02, 0.98)]
    fig = FIGURES["task_accuracy"]([Group("grow", records, {})], "permuted_mnist")
    (band,) = fig.axes[0].collections
    y = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
    assert y.min() == 0.0 and y.max() == 100.0
    ticks = fig.axes[0].xaxis.get_major_locator().tick_values(1, 3)
    assert all(float(t).is_integer() for t in ticks)


def test_mean_band_is_the_student_t_interval() -> None:
    mean, half = mean_band(np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]]))
    assert mean.tolist() == [2.0, 1.0]
    assert half[0] == pytest.approx(4.302652729911275 * 2.0 / math.sqrt(3)) and half[1] == 0.0
    assert np.isnan(mean_band(np.array([[3.0]]))[1]).all()


def test_report_embeds_every_figure_and_the_table(fixture_records: list[dict[str, Any]]) -> None:
    page = render_report(fixture_records)
    images = re.findall(r'<img class="figure" alt="([^"]+)" src="data:image/png;base64,', page)
    assert len(images) == len(CONTINUAL_FIGURES)
    assert "http://" not in page and "https://" not in page  # self-contained
    rows = re.search(r'<table id="leaderboard">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    assert rows.count("<tr>") == len(aggregate(fixture_records))
    assert page.count("<tr>", page.index('id="runs"')) == len(fixture_records) + 1


@pytest.mark.slow
def test_report_renders_in_headless_chromium(fixture_records: list[dict[str, Any]], tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("needs Chromium: apt-get install chromium")
    path = tmp_path / "report.html"
    path.write_text(render_report(fixture_records))
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom",
         path.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert f'data-figures-loaded="{len(CONTINUAL_FIGURES)}"' in dom
    rows = re.search(r'<table id="leaderboard">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    assert rows.count("<tr>") == len(aggregate(fixture_records))


def test_cli_plot_and_report(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    common = ["--data-root", str(data_root), "--out", str(out), "--tasks", "2", "--steps", "8"]
    ran = CliRunner().invoke(
        app, ["run", "--scenario", "permuted_mnist", "--seeds", "2", "--logger", "csv", *common]
    )
    assert ran.exit_code == 0, ran.output
    assert len(list((out / "logs" / "csv").glob("*.csv"))) == 6
    assert f"logs, csv: {out / 'logs' / 'csv'}/*.csv" in ran.output
    plotted = CliRunner().invoke(app, ["plot", "--out", str(out)])
    assert plotted.exit_code == 0, plotted.output
    assert (out / "figures" / "permuted_mnist_online_accuracy.svg").is_file()
    reported = CliRunner().invoke(app, ["report", "--out", str(out), "--html", str(tmp_path / "r.html")])
    assert reported.exit_code == 0 and (tmp_path / "r.html").read_text().count('class="figure"') >= 4
    empty = CliRunner().invoke(app, ["plot", "--out", str(tmp_path / "nothing")])
    assert empty.exit_code == 1 and "no records" in empty.output


def test_progress_lines_when_output_is_not_a_terminal() -> None:
    stream, now = io.StringIO(), [0.0]
    console = Console(file=stream, width=200)
    with ProgressLines(console, total=1000, unit="updates", interval=5.0, clock=lambda: now[0]) as lines:
        for _ in range(10):
            now[0] += 1.0
            lines.update("[1/2] grow c=0.5 lr=0.001 seed=0: task 1/4", advance=50)
    printed = stream.getvalue().splitlines()
    assert len(printed) == 3  # at 5 s, at 10 s, and the closing line
    assert printed[0].endswith("250/1,000 updates (25%) | 50.0 updates/s | ETA 15 s")
    assert "finished: 500 updates in 10 s" in printed[-1]
    assert duration(3725) == "1 h 02 min" and duration(65) == "1 min 05 s"


def test_a_sweep_to_a_file_prints_progress_and_no_stray_warnings(data_root: Path) -> None:
    result = subprocess.run(
        ["plasticity-bench", "run", "--scenario", "permuted_mnist", "--data-root", str(data_root), "--out",
         str(data_root.parent / "sweep_to_file"), "--tasks", "2", "--steps", "4", "--seeds", "1",
         "--strategy", "grow"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert "grow c=0.5 lr=0.001 seed=0: task 2/2 | finished: 8 updates" in result.stdout
    assert "warn" not in result.stderr.lower() and "QP solver" not in result.stdout + result.stderr


def test_third_party_warnings_are_silenced_by_the_package() -> None:
    """In a fresh interpreter (pytest installs its own warning filters): the messages qpsolvers and
    Avalanche print at import are silenced by importing the package, other warnings still show."""
    code = (
        "import warnings, plasticity_bench\n"
        "warnings.warn('no QP solver found on your system, you can install solvers')\n"
        "warnings.warn('No loggers specified, metrics will not be logged')\n"
        "warnings.warn('a warning of ours')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "QP solver" not in done.stderr and "No loggers" not in done.stderr
    assert "a warning of ours" in done.stderr


def test_counts_are_plain_numbers_in_the_tables(fixture_records: list[dict[str, Any]]) -> None:
    grow = [r for r in fixture_records if r["config"]["strategy"] == "grow"]
    text = to_markdown(aggregate(grow))
    summary = grow[0]["summary"]
    assert f"| {summary['flops']:,} |" in text and f"| {summary['params']:,} |" in text


class FakeWandbRun:
    """Stands in for ``wandb.init``'s run: records what the logger logs."""

    def __init__(self, **kwargs: Any) -> None:
        self.init, self.logged, self.metrics, self.finished = kwargs, [], [], False
        self.summary: dict[str, float] = {}

    def define_metric(self, name: str, **kwargs: Any) -> None:
        self.metrics.append((name, kwargs))

    def log(self, values: dict[str, Any]) -> None:
        self.logged.append(values)

    def finish(self) -> None:
        self.finished = True


def test_wandb_logger_logs_against_updates_offline(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    runs: list[FakeWandbRun] = []
    monkeypatch.setattr(wandb, "init", lambda **kw: runs.append(FakeWandbRun(**kw)) or runs[-1])
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    config = configs(["grow"], [0], {"diag_every": 4})[0]
    recording = Recording(loggers=("wandb",), log_dir=tmp_path)
    record = execute(config, data_root, recording=recording)
    (run,) = runs
    assert run.init["mode"] == "offline" and run.init["name"] == run_name(config.as_dict())
    assert run.init["settings"].silent, "wandb's ~25 console lines per run are off by default"
    assert run.init["group"] == "permuted_mnist/grow/c0.5/lr0.001"  # the row, across its seeds
    assert run.init["tags"] == ["permuted_mnist", "grow", "c=0.5", "seed=0"]
    assert recording.where() == [f"wandb (offline): wandb sync {tmp_path / 'wandb' / 'wandb'}/offline-run-*"]
    assert ("*", {"step_metric": "updates"}) in run.metrics and run.finished
    taoa = [v for v in run.logged if "TAOA" in v]
    assert [v["updates"] for v in taoa] == [STEPS, 2 * STEPS, 3 * STEPS]
    assert taoa[-1]["TAOA"] == pytest.approx(record["summary"]["taoa"])


def test_rows_that_differ_only_in_options_keep_their_own_records(
    fixture_records: list[dict[str, Any]],
) -> None:
    grow = [r for r in fixture_records if r["config"]["strategy"] == "grow"]
    other = copy.deepcopy(grow)
    for record in other:
        record["config"]["options"] = {**record["config"]["options"], "selector": "gradient"}
        record["key"] = record["key"][::-1]
    groups = groups_of(grow + other)
    default = grow[0]["config"]["options"]["selector"]
    assert default != "gradient"
    assert sorted(g.row["settings"] for g in groups) == sorted(
        [f"option.selector={default}", "option.selector=gradient"]
    )
    for group in groups:
        selectors = {r["config"]["options"]["selector"] for r in group.records}
        assert len(group.records) == 2 and selectors == {group.row["settings"].split("=")[1]}


def test_a_strategy_keeps_its_colour_in_every_figure(fixture_records: list[dict[str, Any]]) -> None:
    """Grow was orange in the online-accuracy figure and blue in the active-units one (each figure
    coloured the groups it drew in its own order)."""
    from plasticity_bench.views.plots import figures

    seen: dict[str, set[str]] = {}
    for _, name, fig in figures(fixture_records):
        for ax in fig.axes:
            for line in ax.get_lines():
                if not line.get_label().startswith("_") and name != "leaderboard":
                    seen.setdefault(line.get_label(), set()).add(str(line.get_color()))
        plt.close(fig)
    assert {"grow c=0.5", "prune c=0.5", "dyno"} <= set(seen)
    assert all(len(colours) == 1 for colours in seen.values()), seen


def test_force_starts_fresh_logger_runs(data_root: Path, tmp_path: Path) -> None:
    """``--force`` appended duplicate rows to the CSV log (96 -> 191 lines) and a second event file to the
    same TensorBoard run."""
    out = tmp_path / "results"
    args = ["run", "--scenario", "permuted_mnist", "--strategy", "dense", "--seeds", "1", "--tasks", "2",
            "--steps", "8", "--data-root", str(data_root), "--out", str(out), "--logger", "csv",
            "--logger", "tensorboard"]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    (csv_log,) = (out / "logs" / "csv").glob("*.csv")
    lines = csv_log.read_text().splitlines()
    assert CliRunner().invoke(app, [*args, "--force"]).exit_code == 0
    assert csv_log.read_text().splitlines() == lines
    (run,) = (out / "logs" / "tensorboard").iterdir()
    assert len(list(run.glob("events.out.tfevents.*"))) == 1


def test_the_report_keeps_the_paper_protocol_text_out_of_the_table(
    fixture_records: list[dict[str, Any]],
) -> None:
    """The protocol text dominated the HTML table and overflowed 1400 px: now a note number per row, and
    each distinct departure once under the table."""
    page = render_report(fixture_records)
    table = page[page.index('<table id="leaderboard">') : page.index("</table>")]
    assert "no [1]" in table and "(paper: 500)" not in table
    assert '<ol class="notes"><li>tasks=3 (paper: 500)' in page


def test_layer_change_bars_stop_at_zero() -> None:
    """Two seeds grew 0 and 4 units of a 4-wide layer (0% and 100%): the 95% interval (50 +- 635) of the
    grown bar stops at 0, and that of the pruned bar (drawn below the axis) at 0 from below."""
    records = [
        {"summary": {"flops": 1.0, "acc": 0.5}, "dyno": {
            "active_width": [{"step": 0, "widths": [4]}],
            "events": [{"layer": 0, "grown": list(range(n)), "pruned": list(range(n))}],
        }}
        for n in (0, 4)
    ]  # fmt: skip
    fig = FIGURES["layer_changes"]([Group("dyno", records, {})], "imagenette")
    ends = sorted(y for c in fig.axes[0].collections for segment in c.get_segments() for _, y in segment)
    half = stats.t.ppf(0.975, 1) * np.std([0, 100], ddof=1) / np.sqrt(2)  # 635.3
    assert ends == pytest.approx([-50 - half, 0.0, 0.0, 50 + half])
