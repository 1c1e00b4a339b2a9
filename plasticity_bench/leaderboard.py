"""Leaderboard: seed aggregation with 95% CIs, the best-lr rule and LC26's reference figures.

Pipeline: ``aggregate(records)`` -> ``attach_reference(df)`` -> ``render(df)`` / ``write_leaderboard(df)``.
Our metrics are fractions in [0, 1] (PROTOCOL §1) in the DataFrame and the CSV; the paper's columns
(``paper_*``) are in percent, as printed in LC26 Table 14 (PROTOCOL §10). The rendered table and the
Markdown file show everything in percent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table
from scipy import stats

from plasticity_bench.records import atomic_write_text
from scenarios.registry import SCENARIOS

DEFAULT_REFERENCE = Path(__file__).resolve().parents[1] / "leaderboard" / "reference" / "lc2026_table14.csv"

#: The fields that make a leaderboard row; the records pooled into one row must differ only in ``seed``.
GROUP_KEYS = (
    "scenario", "variant", "strategy", "compactness", "lr", "model", "tasks", "steps_per_task",
    "winning_ticket",
)  # fmt: skip
LR_FREE_KEYS = tuple(k for k in GROUP_KEYS if k != "lr")
PRIMARY_METRICS = ("taoa", "acc")
FRACTION_METRICS = frozenset(
    {"taoa", "early_task_taa", "acc", "taa", "wt_acc", "wt_taa", "wt_taoa", "delta_wt_c"}
)
PAPER_COLUMNS = {
    "avg_acc": "paper_avg_acc",
    "avg_acc_pm": "paper_avg_acc_pm",
    "early_task_taa": "paper_early_task_taa",
    "early_task_taa_pm": "paper_early_task_taa_pm",
}
PAPER_LABELS = {"paper_avg_acc": "LC26 Table 14 Avg. Acc.", "paper_early_task_taa": "LC26 Table 14 Early TAA"}
DENSE_COMPACTNESS_PCT = 100


def ci95(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean and 95% confidence half-width over seeds, Student t (PROTOCOL §7 leaderboard).

    ``half_width = t.ppf(0.975, n - 1) * sd(ddof=1) / sqrt(n)`` over the non-NaN values. Returns
    ``(mean, half_width, n)`` with ``n`` the number of non-NaN values; ``n == 1`` gives half_width NaN,
    ``n == 0`` gives ``(nan, nan, 0)``. Units are those of ``values``.
    """
    x = np.asarray(list(values), dtype=float)
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(x.mean())
    if n == 1:
        return mean, math.nan, 1
    half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return mean, half, n


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _summary_metrics(records: Sequence[dict[str, Any]]) -> list[str]:
    """Numeric summary keys present in any record, in order of first appearance."""
    seen: dict[str, None] = {}
    for record in records:
        for name, value in record["summary"].items():
            if _is_number(value) or value is None:
                seen.setdefault(name, None)
    return list(seen)


def _group_key(config: dict[str, Any], keys: Sequence[str]) -> tuple[Any, ...]:
    return tuple(config.get(k) for k in keys)


def _group_by_config(records: Sequence[dict[str, Any]]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Records grouped by :data:`GROUP_KEYS`, each group checked to differ only in ``seed``."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for record in records:
        for required in ("scenario", "strategy", "seed"):
            if required not in record["config"]:
                raise ValueError(f"record {record.get('key', '?')} has no config['{required}']")
        groups.setdefault(_group_key(record["config"], GROUP_KEYS), []).append(record)
    for key, members in groups.items():
        _check_seed_only_difference(key, members)
    return groups


def _check_seed_only_difference(key: tuple[Any, ...], members: list[dict[str, Any]]) -> None:
    """Raise ``ValueError`` if records pooled into one leaderboard row differ in more than ``seed``."""
    seeds = [m["config"]["seed"] for m in members]
    if len(set(map(json.dumps, seeds))) != len(seeds):
        raise ValueError(f"group {dict(zip(GROUP_KEYS, key))} has duplicate seeds {sorted(seeds, key=str)}")
    first = members[0]["config"]
    for other in members[1:]:
        fields = sorted(
            k
            for k in set(first) | set(other["config"])
            if k != "seed"
            and json.dumps(first.get(k), sort_keys=True) != json.dumps(other["config"].get(k), sort_keys=True)
        )
        if fields:
            raise ValueError(
                f"records pooled into {dict(zip(GROUP_KEYS, key))} differ in {fields}; seeds of one "
                "leaderboard row must share every config field but 'seed'"
            )


def _aggregate_group(key: tuple[Any, ...], members: list[dict[str, Any]], metrics: list[str]) -> dict:
    """One leaderboard row: group keys, ``n`` seeds, and ``<m>_mean``, ``<m>_ci95``, ``<m>_n`` per metric."""
    row: dict[str, Any] = dict(zip(GROUP_KEYS, key))
    row["n"] = len(members)
    for metric in metrics:
        values = [m["summary"].get(metric) for m in members]
        mean, half, n = ci95(math.nan if v is None else v for v in values)
        row.update({f"{metric}_mean": mean, f"{metric}_ci95": half, f"{metric}_n": n})
    return row


def _primary_metric_by_scenario(rows: pd.DataFrame) -> dict[str, str | None]:
    """Per scenario, the lr-selection metric: the registered scenario's own (``ScenarioSpec.metric``:
    ``taoa`` online, ``acc`` checkpoint; PROTOCOL §7) when the rows have it, else ``taoa`` if any row has
    it, else ``acc``, else None."""
    chosen: dict[str, str | None] = {}
    for scenario, part in rows.groupby("scenario", sort=False):
        spec = SCENARIOS.get(scenario)
        order = (spec.metric, *PRIMARY_METRICS) if spec else PRIMARY_METRICS
        chosen[scenario] = next(
            (m for m in order if f"{m}_mean" in part and part[f"{m}_mean"].notna().any()), None
        )
    return chosen


def _select_best_lr(rows: pd.DataFrame) -> pd.DataFrame:
    """Keep, per lr-free group, the lr with the best mean primary metric (PROTOCOL §7).

    Ties and NaN means: the first row in lr order with the highest finite mean wins. Adds ``lr_metric`` (the
    metric used) and ``lrs_swept`` (every lr seen for that group). Raises ``ValueError`` if a group has
    several lrs and no finite primary metric to choose by.
    """
    primary = _primary_metric_by_scenario(rows)
    kept = []
    for key, part in rows.groupby(list(LR_FREE_KEYS), sort=False, dropna=False):
        part = part.sort_values("lr", na_position="last")
        metric = primary[part["scenario"].iloc[0]]
        if len(part) == 1:
            best = part.index[0]
        else:
            scores = part[f"{metric}_mean"] if metric else pd.Series(dtype=float)
            if scores.notna().sum() == 0:
                raise ValueError(f"cannot pick an lr for {dict(zip(LR_FREE_KEYS, key))}: no 'taoa' or 'acc'")
            best = scores.idxmax(skipna=True)
        row = part.loc[[best]].copy()
        row["lr_metric"] = metric
        row["lrs_swept"] = ",".join(f"{lr:g}" for lr in part["lr"].dropna())
        kept.append(row)
    return pd.concat(kept, ignore_index=True) if kept else rows


def aggregate(records: Sequence[dict[str, Any]], metrics: list[str] | None = None) -> pd.DataFrame:
    """Aggregate run records over seeds and apply the best-lr rule (PROTOCOL §1 metrics, §7 lr sweep).

    Groups by :data:`GROUP_KEYS`; each group must differ only in ``seed`` (else ``ValueError``, also for a
    repeated seed). For every metric in ``metrics`` (default: every numeric summary key present in any record)
    the result has ``<m>_mean``, ``<m>_ci95`` (Student-t 95% half-width, NaN for one seed) and ``<m>_n``
    (seeds with a value), in the records' units (fractions for accuracies). ``n`` counts seeds per row.
    Where several lrs exist for one (scenario, variant, strategy, compactness, model, tasks, steps_per_task),
    only the lr with the best mean ``taoa`` (scenarios without ``taoa``: ``acc``) is kept; ``lr`` shows the
    choice, ``lrs_swept`` the candidates and ``lr_metric`` the metric used. One row per kept group, sorted by
    the group keys. A requested metric absent from every summary raises ``ValueError``.
    """
    present = _summary_metrics(records)
    wanted = present if metrics is None else list(metrics)
    missing = [m for m in wanted if m not in present]
    if missing:
        raise ValueError(f"metrics {missing} appear in no record summary (present: {present})")
    computed = wanted + [m for m in PRIMARY_METRICS if m in present and m not in wanted]
    groups = _group_by_config(records)
    rows = pd.DataFrame([_aggregate_group(k, v, computed) for k, v in groups.items()])
    if rows.empty:
        return pd.DataFrame(columns=[*GROUP_KEYS, "n", "lrs_swept", "lr_metric"])
    rows = _select_best_lr(rows)
    dropped = [f"{m}_{s}" for m in computed if m not in wanted for s in ("mean", "ci95", "n")]
    rows = rows.drop(columns=dropped)
    leading = [*GROUP_KEYS, "n", "lrs_swept", "lr_metric"]
    rows = rows[leading + [c for c in rows.columns if c not in leading]]
    return rows.sort_values(list(LR_FREE_KEYS), na_position="first", key=_sort_key).reset_index(drop=True)


def _sort_key(column: pd.Series) -> pd.Series:
    """Sort mixed/None-bearing columns as strings, numeric columns as numbers."""
    return column if pd.api.types.is_numeric_dtype(column) else column.fillna("").astype(str)


def _compactness_pct(row: pd.Series) -> int:
    """LC26's integer compactness in percent; dense runs (or a missing compactness) are 100."""
    c = row["compactness"]
    if row["strategy"] == "dense" or c is None or (isinstance(c, float) and math.isnan(c)):
        return DENSE_COMPACTNESS_PCT
    return round(float(c) * 100)


def read_reference(reference_csv: Path = DEFAULT_REFERENCE) -> pd.DataFrame:
    """LC26 Table 14 as a DataFrame (percent), checked for its columns and for one row per key.

    Raises ``ValueError`` on missing columns or on a repeated (benchmark, method, compactness_pct).
    """
    ref = pd.read_csv(reference_csv)
    needed = ["benchmark", "method", "compactness_pct", *PAPER_COLUMNS]
    absent = [c for c in needed if c not in ref.columns]
    if absent:
        raise ValueError(f"{reference_csv} lacks columns {absent}")
    keys = ["benchmark", "method", "compactness_pct"]
    if ref.duplicated(keys).any():
        raise ValueError(
            f"{reference_csv} repeats rows for {ref[ref.duplicated(keys)][keys].values.tolist()}"
        )
    return ref[needed].astype({"compactness_pct": int})


def attach_reference(df: pd.DataFrame, reference_csv: Path = DEFAULT_REFERENCE) -> pd.DataFrame:
    """Add LC26 Table 14's figures to leaderboard rows (PROTOCOL §10).

    Matches ``benchmark == scenario``, ``method == strategy``, ``compactness_pct == round(compactness*100)``
    (dense: 100) and adds ``paper_avg_acc``, ``paper_avg_acc_pm``, ``paper_early_task_taa`` and
    ``paper_early_task_taa_pm`` in **percent**, as in the file (the paper's ± is of unstated kind); NaN where
    the paper has no entry. LC26's "Avg. Acc." is our ``taoa``. The ``variant`` column is kept: a row whose
    variant is set (e.g. ``mnist5k``) ran on different data than the paper. Row order and count are kept.
    """
    ref = read_reference(reference_csv).rename(columns=PAPER_COLUMNS)
    out = df.drop(columns=[c for c in PAPER_COLUMNS.values() if c in df.columns]).copy()
    out["_pct"] = out.apply(_compactness_pct, axis=1) if len(out) else pd.Series(dtype=int)
    merged = out.merge(
        ref,
        how="left",
        left_on=["scenario", "strategy", "_pct"],
        right_on=["benchmark", "method", "compactness_pct"],
        validate="many_to_one",
    )
    merged.index = out.index
    return merged.drop(columns=["_pct", "benchmark", "method", "compactness_pct"])


def _fmt_number(value: float, percent: bool) -> str:
    return f"{value * 100:.1f}" if percent else f"{value:.4g}"


def _fmt_metric(mean: float, half: float, n: int, percent: bool) -> str:
    """``"71.0 ± 1.2 (n=3)"``; no seeds: ``"—"``; one seed: ``"71.0 ± — (n=1)"``."""
    if n == 0 or math.isnan(mean):
        return "—"
    ci = "—" if math.isnan(half) else _fmt_number(half, percent)
    return f"{_fmt_number(mean, percent)} ± {ci} (n={n})"


def _fmt_paper(value: float, pm: float) -> str:
    if pd.isna(value):
        return "—"
    return f"{value:.1f}" if pd.isna(pm) else f"{value:.1f} ± {pm:.1f}"


def _fmt_key(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:g}" if isinstance(value, float) else str(value)


#: Display names of metrics (PROTOCOL §1); the CSV keeps the record keys.
METRIC_LABELS = {
    "taoa": "TAOA",
    "early_task_taa": "Early TAA",
    "acc": "ACC",
    "taa": "TAA",
    "wt_acc": "WT ACC",
    "wt_taa": "WT TAA",
    "wt_taoa": "WT TAOA",
    "delta_wt_c": "Δ WT-C",
}

#: Columns of the printed (terminal) table; the CSV and Markdown files hold every column.
COMPACT_KEYS = ("scenario", "variant", "strategy", "compactness")
FULL_KEYS = ("scenario", "variant", "strategy", "compactness", "lr", "model")


def _display(
    df: pd.DataFrame, keys: Sequence[str] = FULL_KEYS, only: Sequence[str] | None = None
) -> tuple[list[str], list[list[str]]]:
    """Headers and string cells shared by :func:`render` and the Markdown writer (accuracies in percent).

    ``only`` restricts the metrics shown, in its order (default: every ``<m>_mean`` column).
    """
    metrics = [c[: -len("_mean")] for c in df.columns if c.endswith("_mean")]
    metrics = metrics if only is None else [m for m in only if m in metrics]
    paper = [c for c in PAPER_LABELS if c in df.columns and df[c].notna().any()]
    labels = [METRIC_LABELS.get(m, m) for m in metrics]
    headers = [*keys, *(f"{lb} (%)" if m in FRACTION_METRICS else lb for m, lb in zip(metrics, labels))]
    headers += [PAPER_LABELS[c] + " (%)" for c in paper]
    rows = []
    for _, row in df.iterrows():
        cells = [_fmt_key(row.get(k)) for k in keys]
        for m in metrics:
            n = row.get(f"{m}_n", row["n"])
            cells.append(_fmt_metric(row[f"{m}_mean"], row[f"{m}_ci95"], int(n), m in FRACTION_METRICS))
        cells += [_fmt_paper(row[c], row[f"{c}_pm"]) for c in paper]
        rows.append(cells)
    return headers, rows


def render(
    df: pd.DataFrame, title: str = "plasticity_bench leaderboard", only: Sequence[str] | None = None
) -> Table:
    """A ``rich`` table of an aggregated (optionally reference-attached) leaderboard, for printing.

    Accuracy-type metrics (PROTOCOL §1) in percent with one decimal as ``"mean ± ci95 (n=seeds)"``; counts
    (params, flops) as plain numbers; LC26 Table 14 figures in their own columns (percent, ± as printed).
    ``only`` limits the metric columns (the terminal view); lr and model are in the written files.
    """
    headers, rows = _display(df, COMPACT_KEYS if only else FULL_KEYS, only)
    table = Table(title=title, caption="ours: mean ± 95% CI over seeds (Student t); — = not available")
    for header in headers:
        table.add_column(header, overflow="fold")
    for cells in rows:
        table.add_row(*cells)
    return table


def to_markdown(df: pd.DataFrame) -> str:
    """The leaderboard as a Markdown document: a table in percent plus notes on units and the paper's data."""
    headers, rows = _display(df)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    table = [line(headers), line(["---"] * len(headers)), *(line(r) for r in rows)]
    notes = [
        "Ours: mean ± 95% CI half-width over seeds (Student t), in percent; n = seeds. The lr shown is the",
        "best of the sweep by the scenario's primary metric (TAOA, else ACC; PROTOCOL §7).",
        "LC26 Table 14: the paper's figures (percent, ± as printed; the paper does not say if it is a CI",
        "or an SE). Its Avg. Acc. corresponds to our taoa. A set `variant` (e.g. mnist5k) means we ran on",
        "different data than the paper.",
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
