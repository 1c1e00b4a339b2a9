"""Leaderboard: seed aggregation with 95% CIs, the lr-selection rule and LC26's reference figures.

Pipeline: ``aggregate(records)`` -> ``attach_reference(df)`` -> ``render(df)`` / ``write_leaderboard(df)``.
Our metrics are fractions in [0, 1] (docs/protocol.md §1) in the DataFrame and the CSV; the paper's columns
(``paper_*``) are in percent, as printed in LC26 Table 14 (§10). The rendered table and the Markdown file
show everything in percent.

A row pools the records that differ only in ``seed``: every other config field (cycles, schedule,
options, device, threads, ...) and the records' protocol version separate rows, and a ``settings`` column
names the fields that tell apart rows which would otherwise look alike. Where several learning rates were
run for one row, one is chosen by the scenario's primary metric (§7); ``lr_selection`` says on which seeds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table
from scipy import stats

from plasticity_bench.options import resolve
from plasticity_bench.records import atomic_write_text, canonical_json, record_protocol
from plasticity_bench.runner import used_options
from scenarios.registry import SCENARIOS
from strategies.registry import is_user_plugin

#: LC26 Table 14 (figures only, never used for tuning), shipped as package data of ``leaderboard``.
DEFAULT_REFERENCE = resources.files("leaderboard") / "reference" / "lc2026_table14.csv"

#: Config fields shown as columns, in this order (every other field still separates rows).
GROUP_KEYS = (
    "scenario", "variant", "strategy", "compactness", "lr", "model", "tasks", "steps_per_task", "batch_size",
    "cycles", "schedule", "optimizer", "winning_ticket", "device", "threads",
)  # fmt: skip
LR_FREE_KEYS = tuple(k for k in GROUP_KEYS if k != "lr")
PRIMARY_METRICS = ("taoa", "acc")
FRACTION_METRICS = frozenset(
    {"taoa", "early_task_taa", "acc", "taa", "wt_acc", "wt_taa", "wt_taoa", "delta_wt_c"}
    | {"val_acc", "val_taa"}
)
#: Counts of the compact network: shown as plain numbers (a seed spread only when the seeds differ).
COUNT_METRICS = frozenset({"params", "flops"})
PAPER_COLUMNS = {
    "avg_acc": "paper_avg_acc",
    "avg_acc_pm": "paper_avg_acc_pm",
    "early_task_taa": "paper_early_task_taa",
    "early_task_taa_pm": "paper_early_task_taa_pm",
}
PAPER_LABELS = {
    "paper_avg_acc": "LC26 Avg. Acc.",
    "paper_early_task_taa": "LC26 Early TAA (definition unknown)",
}
DENSE_COMPACTNESS_PCT = 100
#: LC26 Table 14 sweeps every method but Dense over these learning rates (docs/protocol.md §7).
PAPER_LRS = (0.01, 0.001, 0.0001)
SELECTION_SINGLE = "single lr"
SELECTION_OPTIMISTIC = "on reported seeds (optimistic)"
#: The lr was chosen on the reported seeds' validation splits; their test figures are reported.
SELECTION_VALIDATION = "validation"


def ci95(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean and 95% confidence half-width over seeds, Student t (docs/protocol.md §7 leaderboard).

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


def _identity(record: dict[str, Any], drop: Sequence[str]) -> str:
    """Canonical text of a record's config without the ``drop`` fields, plus its protocol version."""
    config = {k: v for k, v in record["config"].items() if k not in drop}
    return canonical_json({"config": config, "protocol": record_protocol(record)})


def _check_records(records: Sequence[dict[str, Any]]) -> None:
    """Every record has scenario, strategy, seed and lr; no key appears twice.

    Raises:
        ValueError: naming the record or the repeated key.
    """
    keys: set[str] = set()
    for record in records:
        for required in ("scenario", "strategy", "seed", "lr"):
            if required not in record["config"]:
                raise ValueError(f"record {record.get('key', '?')} has no config['{required}']")
        if record["key"] in keys:
            raise ValueError(f"record {record['key']} appears twice; load records with ResultStore.load()")
        keys.add(record["key"])


def primary_metric(scenario: str, records: Sequence[dict[str, Any]]) -> str | None:
    """The lr-selection metric of ``scenario``: its registered metric (``ScenarioSpec.metric``: ``taoa``
    online, ``acc`` checkpoint; §7) when the records have it, else ``taoa``, else ``acc``, else None."""
    spec = SCENARIOS.get(scenario)
    order = (spec.metric, *PRIMARY_METRICS) if spec else PRIMARY_METRICS
    present = {k for r in records for k, v in r["summary"].items() if _is_number(v)}
    return next((m for m in order if m in present), None)


def selection_metric(metric: str | None, records: Sequence[dict[str, Any]]) -> str | None:
    """The figure an lr is chosen by: the validation figure ``val_<metric>`` when every record has one
    (a validation split carved from the training data, docs/protocol.md §7), else ``metric`` itself."""
    if metric is None:
        return None
    val = f"val_{metric}"
    return val if records and all(_is_number(r["summary"].get(val)) for r in records) else metric


def paper_metric(scenario: str) -> str:
    """Our metric that LC26 Table 14's "Avg. Acc." of ``scenario`` is compared with (docs/protocol.md §10):
    the scenario's primary metric, TAOA on five benchmarks and TAA on Split-CIFAR100 [ours: inference]."""
    spec = SCENARIOS.get(scenario)
    return spec.metric if spec is not None else "taoa"


def _mean_metric(records: Sequence[dict[str, Any]], metric: str) -> float:
    values = [r["summary"].get(metric) for r in records]
    finite = [float(v) for v in values if _is_number(v) and not math.isnan(v)]
    return float(np.mean(finite)) if finite else -math.inf


def _count_note(label: str, counts: dict[float, int]) -> str:
    """``""`` when every lr has the same number of seeds, else which lr had how many."""
    if len(set(counts.values())) <= 1:
        return ""
    return f"unequal {label} seeds: " + ", ".join(f"lr {lr:g} n={n}" for lr, n in counts.items())


def choose_lr(
    by_lr: dict[float, list[dict[str, Any]]], metric: str | None, select_seeds: Sequence[int] = ()
) -> tuple[float, list[dict[str, Any]], str, str]:
    """Pick one learning rate of a row and the records to report (docs/protocol.md §7).

    ``metric`` may be a validation figure (``val_acc``, :func:`selection_metric`): then ``lr_selection``
    says ``validation``. With several lrs and records of every lr on each of ``select_seeds``-seeds
    present, the lr with the best mean ``metric`` over the selection seeds wins and the row reports that
    lr's *other* seeds (no optimistic bias). Otherwise the lr is chosen on the same seeds it reports, and
    the row says so. Ties go to the smaller lr in sorted order. Seeds in ``select_seeds`` are never
    reported when other seeds exist.

    Returns:
        ``(lr, reported records, lr_selection, note)``: ``lr_selection`` is ``single lr``, ``on held-out
        seeds a,b``, ``on reported seeds (optimistic)``, ``validation`` or ``validation, on held-out seeds
        a,b``; ``note`` names lrs compared on unequal seed
        counts (empty when equal).

    Raises:
        ValueError: several lrs and no metric to choose by.
    """
    chosen = set(select_seeds)
    held = {lr: [r for r in rs if r["config"]["seed"] in chosen] for lr, rs in by_lr.items()}
    rest = {lr: [r for r in rs if r["config"]["seed"] not in chosen] or rs for lr, rs in by_lr.items()}
    lrs = sorted(by_lr)
    if len(lrs) == 1:
        return lrs[0], rest[lrs[0]], SELECTION_SINGLE, ""
    if metric is None:
        raise ValueError("cannot pick an lr: the records have neither 'taoa' nor 'acc'")
    validated = metric.startswith("val_")
    if chosen and all(held[lr] for lr in lrs):
        best = max(lrs, key=lambda lr: (_mean_metric(held[lr], metric), -lrs.index(lr)))
        seeds = ",".join(str(s) for s in sorted({r["config"]["seed"] for rs in held.values() for r in rs}))
        note = _count_note("selection", {lr: len(held[lr]) for lr in lrs})
        how = f"on held-out seeds {seeds}"
        return best, rest[best], f"validation, {how}" if validated else how, note
    best = max(lrs, key=lambda lr: (_mean_metric(by_lr[lr], metric), -lrs.index(lr)))
    return (
        best,
        by_lr[best],
        SELECTION_VALIDATION if validated else SELECTION_OPTIMISTIC,
        _count_note("reported", {lr: len(by_lr[lr]) for lr in lrs}),
    )


def paper_protocol_gaps(config: dict[str, Any]) -> list[str]:
    """How a run's config departs from the paper's protocol (docs/protocol.md §10); empty when it follows it.

    Checked: the scenario's own data (no variant), full stream (tasks, steps per task), batch size, model,
    optimizer, cycles, the neutral schedule, every option at its default, and Dense at the scenario lr.
    """
    spec = SCENARIOS.get(config.get("scenario"))
    if spec is None:
        return [f"scenario {config.get('scenario')!r} is not in the paper"]
    expected = {
        "variant": None, "tasks": spec.tasks, "steps_per_task": spec.steps_per_task,
        "batch_size": spec.batch_size, "model": spec.model, "optimizer": spec.optimizer,
        "cycles": spec.cycles_for(spec.tasks), "schedule": "neutral",
    }  # fmt: skip
    gaps = [
        f"{k}={config.get(k)} (paper: {v})" for k, v in expected.items() if k in config and config[k] != v
    ]
    if config.get("strategy") == "dense" and spec.table14 and config.get("lr") != spec.lr:
        gaps.append(f"Dense at lr {config.get('lr')} (paper: {spec.lr:g})")
    gaps += _option_gaps(spec, config)
    return gaps


def _option_gaps(spec: Any, config: dict[str, Any]) -> list[str]:
    """``k=v (paper: default)`` for every option of ``config`` that is not at its default. A user
    strategy's code is never loaded here (a results folder may come from anyone): it is not in the paper."""
    strategy = str(config.get("strategy"))
    if is_user_plugin(strategy):
        return [f"{strategy} is a user strategy, not in the paper"]
    try:
        defaults = resolve(
            {}, used_options(spec, str(config["strategy"]), bool(config.get("winning_ticket")))
        )
    except ValueError:
        return [f"strategy {config.get('strategy')!r} is not in the paper"]
    options = config.get("options") or {}
    return [f"{k}={v} (paper: {defaults[k]})" for k, v in sorted(options.items()) if defaults.get(k, v) != v]


def _flat_config(record: dict[str, Any]) -> dict[str, Any]:
    """Config fields, options as ``option.<name>``, and the protocol version, for telling rows apart."""
    config = {k: v for k, v in record["config"].items() if k not in ("seed", "options")}
    config.update({f"option.{k}": v for k, v in (record["config"].get("options") or {}).items()})
    config["protocol"] = record_protocol(record)
    return config


def _settings(rows: list[dict[str, Any]], flats: list[dict[str, Any]]) -> list[str]:
    """Per row, ``k=v`` of the fields that differ between rows sharing scenario, variant, strategy and
    compactness (e.g. ``cycles=3``, ``option.rewind=none``); ``""`` where nothing tells a row apart."""
    shared: dict[tuple[Any, ...], list[int]] = {}
    for i, row in enumerate(rows):
        shared.setdefault(tuple(json.dumps(row.get(k)) for k in COMPACT_KEYS), []).append(i)
    out = [""] * len(rows)
    for members in shared.values():
        if len(members) < 2:
            continue
        keys = sorted({k for i in members for k in flats[i]} - {"lr"})
        varying = [k for k in keys if len({json.dumps(flats[i].get(k), sort_keys=True) for i in members}) > 1]
        for i in members:
            out[i] = ", ".join(f"{k}={_fmt_key(flats[i].get(k))}" for k in varying)
    return out


def _row(
    lr: float,
    reported: list[dict[str, Any]],
    metrics: list[str],
    selection: tuple[list[float], str, str, str],
) -> dict[str, Any]:
    """One leaderboard row from the reported records of the chosen lr."""
    first = reported[0]
    config = first["config"]
    lrs, metric, how, note = selection
    row: dict[str, Any] = {k: config.get(k) for k in GROUP_KEYS}
    row.update(
        lr=lr, n=len(reported), seeds=",".join(str(r["config"]["seed"]) for r in reported),
        lrs_swept=",".join(f"{x:g}" for x in lrs), lr_metric=metric, lr_selection=how, lr_note=note,
        options=canonical_json(config.get("options") or {}), protocol=record_protocol(first),
        paper_protocol="; ".join(paper_protocol_gaps(config)) or "yes",
    )  # fmt: skip
    for m in metrics:
        mean, half, n = ci95(math.nan if r["summary"].get(m) is None else r["summary"][m] for r in reported)
        row.update({f"{m}_mean": mean, f"{m}_ci95": half, f"{m}_n": n})
    return row


def aggregate(
    records: Sequence[dict[str, Any]], metrics: list[str] | None = None, select_seeds: Sequence[int] = ()
) -> pd.DataFrame:
    """Aggregate run records over seeds and apply the lr-selection rule (docs/protocol.md §1, §7).

    Records are grouped by every config field but ``seed`` and ``lr``, and by protocol version; within a
    group each lr is a candidate and :func:`choose_lr` picks one (on ``select_seeds`` when given and present,
    else on the reported seeds, which the ``lr_selection`` column then says). For every metric in
    ``metrics`` (default: every numeric summary key) the row has ``<m>_mean``, ``<m>_ci95`` (Student-t 95%
    half-width, NaN for one seed) and ``<m>_n``, in the records' units (fractions for accuracies); ``n``
    counts the reported seeds, ``seeds`` lists them. Other columns: ``lrs_swept``, ``lr_metric``,
    ``lr_selection``, ``lr_note``, ``options``, ``protocol``, ``settings``, ``paper_protocol`` (``yes`` or
    how the config departs from the paper's protocol, §10). Rows are sorted by the group keys.

    Raises:
        ValueError: a requested metric absent from every summary; a record without scenario, strategy,
            seed or lr; a key that appears twice; several lrs and no primary metric.
    """
    _check_records(records)
    present = _summary_metrics(records)
    wanted = present if metrics is None else list(metrics)
    missing = [m for m in wanted if m not in present]
    if missing:
        raise ValueError(f"metrics {missing} appear in no record summary (present: {present})")
    groups: dict[str, dict[float, list[dict[str, Any]]]] = {}
    for record in records:
        by_lr = groups.setdefault(_identity(record, ("seed", "lr")), {})
        by_lr.setdefault(record["config"]["lr"], []).append(record)
    rows, flats = [], []
    for by_lr in groups.values():
        members = [r for rs in by_lr.values() for r in rs]
        metric = selection_metric(primary_metric(members[0]["config"]["scenario"], members), members)
        lr, reported, how, note = choose_lr(by_lr, metric, select_seeds)
        rows.append(_row(lr, reported, wanted, (sorted(by_lr), metric, how, note)))
        flats.append(_flat_config(reported[0]))
    if not rows:
        return pd.DataFrame(columns=[*GROUP_KEYS, "n", "lrs_swept", "lr_metric", "lr_selection", "settings"])
    for row, settings in zip(rows, _settings(rows, flats)):
        row["settings"] = settings
    df = pd.DataFrame(rows)
    leading = [*GROUP_KEYS, "settings", "n", "seeds", "lrs_swept", "lr_metric", "lr_selection", "lr_note"]
    df = df[leading + [c for c in df.columns if c not in leading]]
    return df.sort_values([*LR_FREE_KEYS, "settings"], na_position="first", key=_sort_key).reset_index(
        drop=True
    )


def row_records(row: dict[str, Any] | pd.Series, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records a row of :func:`aggregate` reports: equal config (every group key, the options), the
    row's chosen lr, one of its reported seeds, and the row's protocol version."""
    seeds = {int(s) for s in str(row["seeds"]).split(",") if s}
    return [
        r for r in records
        if all(r["config"].get(k) == row[k] for k in GROUP_KEYS) and r["config"]["seed"] in seeds
        and canonical_json(r["config"].get("options") or {}) == row["options"]
        and record_protocol(r) == row["protocol"]
    ]  # fmt: skip


def _sort_key(column: pd.Series) -> pd.Series:
    """Sort mixed/None-bearing columns as strings, numeric columns as numbers."""
    return column if pd.api.types.is_numeric_dtype(column) else column.fillna("").astype(str)


def _compactness_pct(row: pd.Series) -> int:
    """LC26's integer compactness in percent; dense runs (or a missing compactness) are 100."""
    c = row["compactness"]
    if row["strategy"] == "dense" or c is None or (isinstance(c, float) and math.isnan(c)):
        return DENSE_COMPACTNESS_PCT
    return round(float(c) * 100)


def read_reference(reference_csv: Path | Any = DEFAULT_REFERENCE) -> pd.DataFrame:
    """LC26 Table 14 as a DataFrame (percent), checked for its columns and for one row per key.

    Raises ``ValueError`` on missing columns or on a repeated (benchmark, method, compactness_pct).
    """
    with resources.as_file(reference_csv) as path:
        ref = pd.read_csv(path)
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


def attach_reference(df: pd.DataFrame, reference_csv: Path | Any = DEFAULT_REFERENCE) -> pd.DataFrame:
    """Add LC26 Table 14's figures to leaderboard rows (docs/protocol.md §10).

    Matches ``benchmark == scenario``, ``method == strategy``, ``compactness_pct == round(compactness*100)``
    (dense: 100) and adds ``paper_avg_acc``, ``paper_avg_acc_pm``, ``paper_early_task_taa`` and
    ``paper_early_task_taa_pm`` in **percent**, as in the file (the paper's ± is of unstated kind); NaN where
    the paper has no entry. LC26's "Avg. Acc." is our ``taoa``; the paper does not define its Early Task
    TAA precisely, so that column is of unknown definition. ``paper_comparable`` is True only where the
    paper has an entry and the row follows the paper's protocol (``paper_protocol == "yes"``): the tables
    show the figures of other rows as "not comparable". Row order and count are kept.
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
    has_entry = merged["paper_avg_acc"].notna()
    follows = merged["paper_protocol"].eq("yes") if "paper_protocol" in merged else False
    merged["paper_comparable"] = has_entry & follows
    return merged.drop(columns=["_pct", "benchmark", "method", "compactness_pct"])


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


def _fmt_key(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:g}" if isinstance(value, float) else str(value)


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

#: Columns of the printed (terminal) table; the CSV and Markdown files hold every column.
COMPACT_KEYS = ("scenario", "variant", "strategy", "compactness")
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
        cells = [_fmt_key(row.get(k)) for k in keys]
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
