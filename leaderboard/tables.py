"""The leaderboard as people read it: the terminal table (:func:`render`), ``leaderboard.md``
(:func:`to_markdown`) and ``leaderboard.csv`` (:func:`write_leaderboard`). Accuracy-type metrics in
percent, counts as plain numbers, the paper's figures only where comparable."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from rich.table import Table

from plasticity_bench.core.io import atomic_write_text
from plasticity_bench.leaderboard.aggregate import COMPACT_KEYS, fmt_key
from plasticity_bench.leaderboard.paper import PAPER_LABELS

FRACTION_METRICS = frozenset(
    {"taoa", "early_task_taa", "acc", "taa", "wt_acc", "wt_taa", "wt_taoa", "delta_wt_c"}
    | {"val_acc", "val_taa"}
)
#: Counts of the compact network: shown as plain numbers (a seed spread only when the seeds differ).
COUNT_METRICS = frozenset({"params", "flops"})


def _fmt_number(value: float, percent: bool) -> str:
    return f"{value * 100:.1f}" if percent else f"{value:.4g}"


def _fmt_metric(mean: float, half: float, n: int, percent: bool) -> str:
    """``"71.0 ± 1.2 (n=3)"``; no seeds: ``"—"``; one seed: ``"71.0 ± — (n=1)"``."""
    if n == 0 or math.isnan(mean):
        return "—"
    ci = "—" if math.isnan(half) else _fmt_number(half, percent)
    return f"{_fmt_number(mean, percent)} ± {ci} (n={n})"


def _fmt_count(mean: float, half: float, n: int) -> str:
    """``"269,322"``; when the seeds' counts differ (DYNO): ``"269,322 ± 1,204 (n=3)"``; none: ``"—"``."""
    if n == 0 or math.isnan(mean):
        return "—"
    if math.isnan(half) or half == 0:
        return f"{mean:,.0f}"
    return f"{mean:,.0f} ± {half:,.0f} (n={n})"


def _fmt_paper(value: float, pm: float, comparable: bool) -> str:
    if pd.isna(value):
        return "—"
    if not comparable:
        return "not comparable"
    return f"{value:.1f}" if pd.isna(pm) else f"{value:.1f} ± {pm:.1f}"


#: Display names of metrics (docs/protocol.md §1); the CSV keeps the record keys.
METRIC_LABELS = {
    "taoa": "TAOA",
    "early_task_taa": "Early TAA",
    "acc": "ACC",
    "taa": "TAA",
    "wt_acc": "WT ACC",
    "wt_taa": "WT TAA",
    "wt_taoa": "WT TAOA",
    "delta_wt_c": "Δ WT-C",
    "val_acc": "val ACC",
    "val_taa": "val TAA",
}
TERMINAL_KEYS = (*COMPACT_KEYS, "settings", "lr", "lr_selection")
FULL_KEYS = (*COMPACT_KEYS, "settings", "lr", "lr_selection", "lr_note", "model", "tasks", "paper_protocol")
KEY_LABELS = {"lr_selection": "lr chosen", "lr_note": "lr note", "paper_protocol": "paper's protocol"}


def table_cells(
    df: pd.DataFrame, keys: Sequence[str] = FULL_KEYS, only: Sequence[str] | None = None
) -> tuple[list[str], list[list[str]]]:
    """Headers and string cells shared by :func:`render` and the Markdown writer (accuracies in percent).

    ``only`` restricts the metrics shown, in its order (default: every ``<m>_mean`` column).
    """
    metrics = [c[: -len("_mean")] for c in df.columns if c.endswith("_mean")]
    metrics = metrics if only is None else [m for m in only if m in metrics]
    paper = [c for c in PAPER_LABELS if c in df.columns and df[c].notna().any()]
    labels = [METRIC_LABELS.get(m, m) for m in metrics]
    keys = [k for k in keys if k in df.columns and (k not in OPTIONAL_KEYS or df[k].astype(bool).any())]
    headers = [KEY_LABELS.get(k, k) for k in keys]
    headers += [f"{lb} (%)" if m in FRACTION_METRICS else lb for m, lb in zip(metrics, labels)]
    headers += [PAPER_LABELS[c] + " (%)" for c in paper]
    rows = []
    for _, row in df.iterrows():
        cells = [fmt_key(row.get(k)) for k in keys]
        for m in metrics:
            n = int(row.get(f"{m}_n", row["n"]))
            mean, half = row[f"{m}_mean"], row[f"{m}_ci95"]
            counted = m in COUNT_METRICS
            cells.append(
                _fmt_count(mean, half, n) if counted else _fmt_metric(mean, half, n, m in FRACTION_METRICS)
            )
        comparable = bool(row.get("paper_comparable", False))
        cells += [_fmt_paper(row[c], row[f"{c}_pm"], comparable) for c in paper]
        rows.append(cells)
    return headers, rows


#: Key columns shown only when some row has a value (``settings`` is empty unless rows need telling apart).
OPTIONAL_KEYS = frozenset({"settings", "lr_note"})


def render(
    df: pd.DataFrame, title: str = "plasticity_bench leaderboard", only: Sequence[str] | None = None
) -> Table:
    """A ``rich`` table of an aggregated (optionally reference-attached) leaderboard, for printing.

    Accuracy-type metrics (docs/protocol.md §1) in percent with one decimal as
    ``"mean ± ci95 (n=seeds)"``; counts (params, flops) as plain numbers; LC26 Table 14 figures in their
    own columns (percent, ± as printed).
    ``only`` limits the metric columns (the terminal view); lr and model are in the written files.
    """
    headers, rows = table_cells(df, TERMINAL_KEYS if only else FULL_KEYS, only)
    table = Table(title=title, caption="ours: mean ± 95% CI over seeds (Student t); — = not available")
    for header in headers:
        table.add_column(header, overflow="fold")
    for cells in rows:
        table.add_row(*cells)
    return table


def to_markdown(df: pd.DataFrame) -> str:
    """The leaderboard as a Markdown document: a table in percent plus notes on units and the paper's data."""
    headers, rows = table_cells(df)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    table = [line(headers), line(["---"] * len(headers)), *(line(r) for r in rows)]
    notes = [
        "Ours: mean ± 95% CI half-width over seeds (Student t), in percent; n = seeds. Where several lrs",
        "ran, the lr shown is the best by the scenario's primary metric (TAOA, else ACC; protocol §7);",
        "'lr chosen' says whether it was chosen on held-out seeds or on the reported ones (optimistic).",
        "LC26 Table 14: the paper's figures (percent, ± as printed; the paper does not say if it is a CI",
        "or an SE), shown only beside rows that follow the paper's protocol (full streams, the paper's data,",
        "model, batch size and options); other rows say 'not comparable' and 'paper's protocol' says why.",
        "Its Avg. Acc. corresponds to our TAOA; its Early Task TAA is of unknown definition (ours: the first",
        "10% of each task's steps), so compare that column with care.",
    ]
    return "# Leaderboard\n\n" + "\n".join(table) + "\n\n" + "\n".join(notes) + "\n"


def write_leaderboard(df: pd.DataFrame, out_dir: Path) -> tuple[Path, Path]:
    """Write ``leaderboard.csv`` (raw values: ours as fractions, ``paper_*`` in percent) and
    ``leaderboard.md`` (Markdown, percent) atomically into ``out_dir`` (created if needed).

    Returns ``(csv_path, md_path)``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = atomic_write_text(out_dir / "leaderboard.csv", df.to_csv(index=False))
    md_path = atomic_write_text(out_dir / "leaderboard.md", to_markdown(df))
    return csv_path, md_path
