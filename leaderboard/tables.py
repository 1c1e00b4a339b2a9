"""The leaderboard as people read it: the terminal table (:func:`render`), ``leaderboard.md``
(:func:`to_markdown`) and ``leaderboard.csv`` (:func:`write_leaderboard`). Accuracy-type metrics in
percent, counts as plain numbers, the paper's figures only where comparable."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from plasticity_bench.core.io import atomic_write_text
from plasticity_bench.leaderboard.aggregate import COMPACT_KEYS, fmt_key, row_label
from plasticity_bench.leaderboard.paper import PAPER_LABELS, paper_metric
from plasticity_bench.scenarios.registry import SCENARIOS

FRACTION_METRICS = frozenset(
    {"taoa", "early_task_taa", "acc", "taa", "wt_acc", "wt_taa", "wt_taoa", "delta_wt_c"}
    | {"val_acc", "val_taa"}
)
#: Counts of the compact network: shown as plain numbers (a seed spread only when the seeds differ);
#: the training FLOPs of a run (docs/protocol.md §16) with three significant digits.
COUNT_METRICS = frozenset({"params", "flops", "train_flops"})
SCIENTIFIC_METRICS = frozenset({"train_flops"})


def _fmt_number(value: float, percent: bool) -> str:
    return f"{value * 100:.1f}" if percent else f"{value:.4g}"


def _fmt_metric(mean: float, half: float, n: int, percent: bool) -> str:
    """``"71.0 ± 1.2 (n=3)"``; no seeds: ``"—"``; one seed: ``"71.0 ± — (n=1)"``."""
    if n == 0 or math.isnan(mean):
        return "—"
    ci = "—" if math.isnan(half) else _fmt_number(half, percent)
    return f"{_fmt_number(mean, percent)} ± {ci} (n={n})"


def _fmt_count(mean: float, half: float, n: int, scientific: bool = False) -> str:
    """``"269,322"`` (``scientific``: ``"3.87e+09"``); when the seeds' counts differ (DYNO):
    ``"269,322 ± 1,204 (n=3)"``; none: ``"—"``."""
    if n == 0 or math.isnan(mean):
        return "—"
    text = _count_text(mean, half, scientific)
    return text if "±" not in text else f"{text} (n={n})"


def _count_text(mean: float, half: float, scientific: bool) -> str:
    form = "{:.3g}" if scientific else "{:,.0f}"
    if math.isnan(half) or half == 0:
        return form.format(mean)
    return f"{form.format(mean)} ± {form.format(half)}"


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
    "train_flops": "train FLOPs",
    "flops": "inference FLOPs",
}
TERMINAL_KEYS = (*COMPACT_KEYS, "settings", "budget", "lr", "lr_selection")
FULL_KEYS = (
    *COMPACT_KEYS, "settings", "budget", "lr", "lr_selection", "lr_note", "model", "tasks", "paper_protocol",
)  # fmt: skip
KEY_LABELS = {
    "lr_selection": "lr chosen", "lr_note": "lr note", "paper_protocol": "paper's protocol",
    "budget": "off-budget",
}  # fmt: skip


def table_cells(
    df: pd.DataFrame, keys: Sequence[str] = FULL_KEYS, only: Sequence[str] | None = None
) -> tuple[list[str], list[list[str]]]:
    """Headers and string cells shared by :func:`render` and the Markdown writer (accuracies in percent).

    ``only`` restricts the metrics shown, in its order (default: every ``<m>_mean`` column).
    """
    metrics = [c[: -len("_mean")] for c in df.columns if c.endswith("_mean")]
    metrics = metrics if only is None else [m for m in only if m in metrics]
    paper = [c for c in PAPER_LABELS if c in df.columns and df[c].notna().any()]
    keys = [k for k in keys if k in df.columns and (k not in OPTIONAL_KEYS or df[k].astype(bool).any())]
    headers = [KEY_LABELS.get(k, k) for k in keys]
    headers += [metric_header(m) for m in metrics]
    headers += [PAPER_LABELS[c] + " (%)" for c in paper]
    rows = []
    for _, row in df.iterrows():
        cells = [fmt_key(row.get(k)) for k in keys]
        for m in metrics:
            n = int(row.get(f"{m}_n", row["n"]))
            mean, half = row[f"{m}_mean"], row[f"{m}_ci95"]
            if m in COUNT_METRICS:
                cells.append(_fmt_count(mean, half, n, m in SCIENTIFIC_METRICS))
            else:
                cells.append(_fmt_metric(mean, half, n, m in FRACTION_METRICS))
        comparable = bool(row.get("paper_comparable", False))
        cells += [_fmt_paper(row[c], row[f"{c}_pm"], comparable) for c in paper]
        rows.append(cells)
    return headers, rows


#: Key columns shown only when some row has a value (``settings`` is empty unless rows need telling apart).
OPTIONAL_KEYS = frozenset({"settings", "lr_note", "budget"})


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


def comparison_cells(table: pd.DataFrame) -> list[tuple[str, list[list[str]]]]:
    """The cells of a comparison (:func:`~plasticity_bench.leaderboard.compare.compare`) by scenario, in
    its row order: per strategy the seeds, the mean difference, its Student-t 95% interval, the Holm p,
    the probability of improvement and the seeds 80% power needs."""
    sections: dict[str, list[list[str]]] = {}
    for r in table.to_dict("records"):
        name = row_label(r)
        power = "—" if pd.isna(r["seeds_for_80_power"]) else f"{int(r['seeds_for_80_power'])}"
        p = "—" if pd.isna(r["p_holm"]) else f"{r['p_holm']:.3f}"
        title = f"{r['scenario']} ({r['metric']}, {r['unit']})"
        sections.setdefault(title, []).append([
            name, str(r["n"]), f"{r['mean_diff']:+.2f}", f"[{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]", p,
            f"{r['prob_improvement']:.2f}", power,
        ])  # fmt: skip
    return list(sections.items())


COMPARISON_HEADERS = ("strategy", "n", "Δ", "95% CI", "p Holm", "P(>)", "n 80%")


def render_comparison(table: pd.DataFrame, scores: pd.DataFrame, baseline: str) -> Group:
    """``rich`` tables of a comparison with ``baseline``, for printing: one per scenario (then ``ALL``), and
    the normalised scores (:func:`~plasticity_bench.leaderboard.compare.scores_table`); whole words in an
    80-column terminal."""
    parts: list[Table | Text] = [Text(f"strategy − {baseline}, paired per seed on identical streams", "bold")]
    for title, rows in comparison_cells(table):
        parts.append(_narrow_table(title, COMPARISON_HEADERS, rows))
    score_rows = [
        [r["strategy"], str(r["scenarios"]), str(r["runs"]), f"{r['iqm']:.3f}",
         f"[{r['iqm_low']:.3f}, {r['iqm_high']:.3f}]", f"{r['mean']:.3f}"]
        for r in scores.to_dict("records")
    ]  # fmt: skip
    headers = ("strategy", "scen.", "runs", "IQM", "95% CI", "mean")
    parts += [
        _narrow_table("normalised score (Dense 1, chance 0)", headers, score_rows),
        Text(COMPARISON_NOTE),
    ]
    return Group(*parts)


def _narrow_table(title: str, headers: Sequence[str], rows: list[list[str]]) -> Table:
    """A borderless table whose cells never wrap, the first column left-aligned."""
    view = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for i, header in enumerate(headers):
        view.add_column(header, no_wrap=True, justify="left" if i == 0 else "right")
    for cells in rows:
        view.add_row(*cells)
    return view


COMPARISON_NOTE = (
    "Δ: percent points (ALL: points of the score normalised to Dense, chance 0). P(>): share of seeds "
    "where the strategy wins. n 80%: the seeds a Δ of this size needs at 80% power. p Holm: Wilcoxon "
    "signed-rank, Holm-corrected over the rows."
)


def write_comparison(table: pd.DataFrame, scores: pd.DataFrame, out_dir: Path) -> tuple[Path, Path]:
    """Write ``compare.csv`` (every column of the comparison) and ``compare_scores.csv`` (the normalised
    scores per strategy) atomically into ``out_dir``; returns both paths."""
    paths = Path(out_dir) / "compare.csv", Path(out_dir) / "compare_scores.csv"
    atomic_write_text(paths[0], table.to_csv(index=False))
    atomic_write_text(paths[1], scores.to_csv(index=False))
    return paths


#: Below this many columns the terminal gets :func:`render_narrow` (one small table per scenario).
NARROW_WIDTH = 140


def render_narrow(df: pd.DataFrame) -> Group:
    """The leaderboard for a narrow terminal: one table per scenario with the strategy (compactness,
    settings, off-budget), seeds, the chosen lr, the scenario's primary metric, Early TAA, Δ WT-C where
    measured and LC26's figure where comparable, in percent, whole words. The files hold every column."""
    parts: list[Table | Text] = []
    for (scenario, variant), rows in df.groupby(["scenario", "variant"], sort=False, dropna=False):
        metric = paper_metric(scenario)
        wanted = (metric, "early_task_taa", "delta_wt_c", *(("flops",) if shows_flops(scenario) else ()))
        metrics = [m for m in wanted if rows.get(f"{m}_mean") is not None and rows[f"{m}_mean"].notna().any()]
        paper = bool("paper_avg_acc" in rows and rows["paper_comparable"].astype(bool).any())
        headers = ["strategy", "n", "lr", *(metric_header(m) for m in metrics)] + ["LC26"] * paper
        name = scenario + ("" if pd.isna(variant) or not variant else f"@{variant}")
        cells = [
            [_narrow_label(r), str(r["n"]), fmt_key(r["lr"]), *(_narrow_metric(r, m) for m in metrics)]
            + ([_fmt_paper(r["paper_avg_acc"], r["paper_avg_acc_pm"], bool(r["paper_comparable"]))] if paper
               else [])
            for r in rows.to_dict("records")
        ]  # fmt: skip
        parts.append(_narrow_table(f"{name}: mean ± 95% CI over seeds", headers, cells))
    parts.append(Text("All columns (lr, lr chosen, the paper's protocol, ...): leaderboard.csv / .md"))
    return Group(*parts)


def _narrow_label(row: dict) -> str:
    return row_label(row) + (" [off-budget]" if row.get("budget") else "")


def shows_flops(scenario: str) -> bool:
    """True for the scenarios whose leaderboard prints inference FLOPs (``ScenarioSpec.show_flops``)."""
    spec = SCENARIOS.get(scenario)
    return bool(spec is not None and spec.show_flops)


def metric_header(metric: str) -> str:
    """A metric's column header: its label, with ``(%)`` for fractions."""
    label = METRIC_LABELS.get(metric, metric)
    return f"{label} (%)" if metric in FRACTION_METRICS else label


def _narrow_metric(row: dict, metric: str) -> str:
    mean, half = row[f"{metric}_mean"], row[f"{metric}_ci95"]
    if pd.isna(mean):
        return "—"
    if metric in COUNT_METRICS:
        return _count_text(mean, half, metric in SCIENTIFIC_METRICS)
    return f"{100 * mean:.1f}" + ("" if pd.isna(half) else f" ± {100 * half:.1f}")
