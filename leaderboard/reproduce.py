"""Reproducing a published table: run (or reuse) its cells, then compare ours with the paper per cell.

``plasticity-bench reproduce lc26-table14`` runs every (benchmark, method, compactness) cell of LC26
Table 14, ``reproduce lc26-leaderboard`` only its six headline entries (:func:`headline_cells`), at the
paper's protocol (docs/protocol.md §7, §10): full streams, the benchmark's data, model and
batch size; methods other than Dense swept over the paper's learning rates and reported at the best one,
Dense at the scenario's lr. The verdict of a cell compares two intervals: ours (mean ± 95% CI over seeds)
and the paper's (value ± its printed ±, of unstated kind): ``agrees`` when they overlap
(``|ours - paper| <= ci + pm``; ours is TAOA, on Split-CIFAR100 TAA, :func:`paper_metric`), ``differs``
when they do not, ``not comparable`` when the cell's runs do
not follow the paper's protocol (a ``--smoke`` run, shortened streams, other data), have fewer than two
seeds, or were not run. Early Task TAA is shown beside the paper's but gets no verdict: the paper's
definition is unknown (§10).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from plasticity_bench.core.defaults import TABLE_NAMES
from plasticity_bench.core.io import atomic_write_text
from plasticity_bench.leaderboard.aggregate import aggregate
from plasticity_bench.leaderboard.paper import (
    DEFAULT_REFERENCE,
    PAPER_LRS,
    attach_reference,
    paper_metric,
    read_reference,
)
from plasticity_bench.leaderboard.tables import METRIC_LABELS
from plasticity_bench.run.config import RunConfig
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.sweep.plan import expand, sweep_base

#: Reproducible targets: LC26 Table 14 whole, and its six headline leaderboard entries (docs/protocol.md §10).
TABLES = dict.fromkeys(TABLE_NAMES, DEFAULT_REFERENCE)
HEADLINE_METHOD = "grow+moment_transplant"


def headline_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """LC26's six headline leaderboard entries (docs/protocol.md §10): per benchmark, the Grow + Moment
    Transplant cell of Table 14 at the compactness where its Avg. Acc. is best. Where two compactness
    levels tie (Split-CIFAR100: 22.1 at 30% and 50%), every tied cell is kept: the text does not say which
    one the headline figure is."""
    mine = cells[cells["method"] == HEADLINE_METHOD]
    best = mine.groupby("benchmark")["avg_acc"].transform("max")
    return mine[mine["avg_acc"] == best].reset_index(drop=True)


SMOKE_TASKS, SMOKE_STEPS = 2, 3
CELL_KEYS = ["benchmark", "method", "compactness_pct"]
VERDICTS = ("agrees", "differs", "not comparable")

Finish = Callable[[list[dict[str, Any]], Path], tuple[Table, list[Path]]]


def select_cells(table: str, scenarios: Sequence[str] | None, methods: Sequence[str] | None) -> pd.DataFrame:
    """The reference cells of ``table``, restricted to ``scenarios`` and ``methods`` (None: all).

    Raises:
        ValueError: an unknown table, benchmark or method, naming the valid ones.
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; choose one of {', '.join(TABLES)}")
    cells = read_reference(TABLES[table])
    if table == "lc26-leaderboard":
        cells = headline_cells(cells)
    for column, wanted, flag in (("benchmark", scenarios, "--scenario"), ("method", methods, "--method")):
        valid = sorted(cells[column].unique())
        unknown = sorted(set(wanted or ()) - set(valid))
        if unknown:
            raise ValueError(f"{flag} {','.join(unknown)}: not in {table}; choose from {', '.join(valid)}")
        if wanted:
            cells = cells[cells[column].isin(wanted)]
    return cells.reset_index(drop=True)


def cell_configs(
    cells: pd.DataFrame, seeds: list[int], select_seeds: list[int], smoke: bool, extra: dict[str, Any]
) -> list[RunConfig]:
    """Run configs of every cell: the paper's protocol, or a 2-task, 3-step stream with ``smoke``."""
    configs: list[RunConfig] = []
    for (scenario, method), part in cells.groupby(["benchmark", "method"], sort=False):
        spec = SCENARIOS[scenario]
        tasks, steps = (SMOKE_TASKS, SMOKE_STEPS) if smoke else (spec.tasks, None)
        base = sweep_base(spec, tasks, steps, schedule="neutral", winning_ticket=False, **extra)
        levels = sorted(p / 100 for p in part["compactness_pct"] if p != 100) or [1.0]
        configs += expand(scenario, [method], levels, seeds, base, {}, list(PAPER_LRS), select_seeds)
    return configs


def verdict(ours: float, half: float, n: int, paper: float, pm: float, comparable: bool) -> str:
    """``agrees`` / ``differs`` from the two intervals (percent), or ``not comparable`` (see module doc)."""
    if not comparable or n < 2 or math.isnan(half) or math.isnan(ours) or math.isnan(paper):
        return "not comparable"
    return "agrees" if abs(ours - paper) <= half + (0.0 if math.isnan(pm) else pm) else "differs"


def compare(board: pd.DataFrame, cells: pd.DataFrame, smoke: bool) -> pd.DataFrame:
    """One row per cell: ours (TAOA, Early TAA in percent, CI, n, lr), the paper's, difference, verdict."""
    board = (
        board.assign(
            compactness_pct=[
                100 if s == "dense" else round(c * 100)
                for s, c in zip(board["strategy"], board["compactness"])
            ]
        )
        if len(board)
        else board.assign(compactness_pct=[])
    )
    rows = []
    for cell in cells.itertuples(index=False):
        match = board[
            (board["scenario"] == cell.benchmark) & (board["strategy"] == cell.method)
            & (board["compactness_pct"] == cell.compactness_pct)
        ]  # fmt: skip
        rows.append(_cell_row(cell, match.iloc[0] if len(match) else None, smoke))
    return pd.DataFrame(rows)


def _cell_row(cell: Any, row: pd.Series | None, smoke: bool) -> dict[str, Any]:
    out: dict[str, Any] = {k: getattr(cell, k) for k in CELL_KEYS}
    out.update(paper_avg_acc=cell.avg_acc, paper_avg_acc_pm=cell.avg_acc_pm)
    out.update(paper_early_task_taa=cell.early_task_taa, paper_early_task_taa_pm=cell.early_task_taa_pm)
    if row is None:
        return {**out, "n": 0, "verdict": "not comparable", "why": "not run"}
    metric = paper_metric(cell.benchmark)
    ours, half, n = row[f"{metric}_mean"] * 100, row[f"{metric}_ci95"] * 100, int(row[f"{metric}_n"])
    comparable = bool(row["paper_comparable"]) and not smoke
    why = "smoke run (shortened streams)" if smoke else ("" if comparable else row["paper_protocol"])
    if comparable and n < 2:
        why = "fewer than 2 seeds"
    out.update(
        metric=metric, ours=ours, ours_ci95=half, n=n, lr=row["lr"], lr_selection=row["lr_selection"],
        diff=ours - cell.avg_acc, verdict=verdict(ours, half, n, cell.avg_acc, cell.avg_acc_pm, comparable),
        ours_early_task_taa=row["early_task_taa_mean"] * 100, why=why,
    )  # fmt: skip
    return out


def _fmt(value: Any, pm: Any = None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = f"{value:+.1f}" if signed else f"{value:.1f}"
    return text if pm is None or (isinstance(pm, float) and math.isnan(pm)) else f"{text} ± {pm:.1f}"


DISPLAY = ("benchmark", "method", "c (%)", "metric", "ours", "n", "lr", "LC26 Avg. Acc.", "diff", "verdict",
           "ours Early TAA", "LC26 Early TAA (def. unknown)", "why")  # fmt: skip


def display_rows(frame: pd.DataFrame) -> list[list[str]]:
    """String cells of the comparison, in :data:`DISPLAY` order (percent)."""
    rows = []
    for r in frame.to_dict("records"):
        rows.append([
            r["benchmark"], r["method"], str(r["compactness_pct"]),
            METRIC_LABELS[paper_metric(r["benchmark"])],
            _fmt(r.get("ours"), r.get("ours_ci95")), str(r["n"]), _fmt_lr(r.get("lr")),
            _fmt(r["paper_avg_acc"], r["paper_avg_acc_pm"]), _fmt(r.get("diff"), signed=True), r["verdict"],
            _fmt(r.get("ours_early_task_taa")), _fmt(r["paper_early_task_taa"], r["paper_early_task_taa_pm"]),
            r.get("why") or "",
        ])  # fmt: skip
    return rows


def _fmt_lr(lr: Any) -> str:
    return "—" if lr is None or (isinstance(lr, float) and math.isnan(lr)) else f"{lr:g}"


def to_markdown(frame: pd.DataFrame, table: str, smoke: bool) -> str:
    """``reproduction.md``: the per-cell table, the verdict counts and how to read them."""
    head = "| " + " | ".join(DISPLAY) + " |\n|" + "---|" * len(DISPLAY) + "\n"
    body = "".join(
        "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |\n" for row in display_rows(frame)
    )
    counts = frame["verdict"].value_counts().reindex(VERDICTS, fill_value=0)
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    warning = (
        "**Smoke run**: every stream was shortened to check the machinery; no verdict is comparable.\n\n"
        if smoke else ""
    )  # fmt: skip
    notes = (
        "Percent. Ours: TAOA (Split-CIFAR100: checkpoint TAA, which its Avg. Acc. fits) mean ± 95% CI over\n"
        "seeds (Student t) at the lr chosen by that metric (Split-CIFAR100: on validation rows; Dense: the\n"
        "scenario's lr). LC26: Avg. Acc. ± as printed (CI or SE, unstated). diff = ours - paper. Verdict:\n"
        "agrees when the two intervals overlap, differs when they do not, not comparable when the runs do\n"
        "not follow the paper's protocol (why says how), have fewer than 2 seeds, or were not run. Early\n"
        "Task TAA gets no verdict: the paper's definition is unknown (ours: the first 10% of each task's\n"
        "steps).\n"
    )
    return f"# Reproduction of {table}\n\n{warning}{summary}.\n\n{head}{body}\n{notes}"


def reproduce_table(
    table: str,
    scenarios: Sequence[str] | None,
    methods: Sequence[str] | None,
    seeds: list[int],
    select_seeds: list[int],
    smoke: bool,
    extra: dict[str, Any],
) -> tuple[list[RunConfig], Finish]:
    """The run configs of a table's cells, and ``finish(records, out)`` that compares the records of those
    runs with the paper, writes ``reproduction.md`` / ``reproduction.csv`` under ``out`` and returns a rich
    table and the written paths.

    Raises:
        ValueError: as :func:`select_cells`.
    """
    cells = select_cells(table, scenarios, methods)
    configs = cell_configs(cells, seeds, select_seeds, smoke, extra)

    def finish(records: list[dict[str, Any]], out: Path) -> tuple[Table, list[Path]]:
        frame = compare(attach_reference(aggregate(records, select_seeds=select_seeds)), cells, smoke)
        csv = atomic_write_text(Path(out) / "reproduction.csv", frame.to_csv(index=False))
        md = atomic_write_text(Path(out) / "reproduction.md", to_markdown(frame, table, smoke))
        view = Table(title=f"{table}: ours vs the paper" + (" (smoke: not comparable)" if smoke else ""))
        for header in DISPLAY:
            view.add_column(header, overflow="fold")
        for row in display_rows(frame):
            view.add_row(*row)
        return view, [md, csv]

    return configs, finish
