"""Leaderboard rows: seed aggregation with 95% CIs and the lr-selection rule (docs/protocol.md §7).

Pipeline: ``aggregate(records)`` -> :func:`~plasticity_bench.leaderboard.paper.attach_reference` ->
:func:`~plasticity_bench.leaderboard.tables.render` / ``write_leaderboard``. Our metrics are fractions in
[0, 1] (docs/protocol.md §1) in the DataFrame and the CSV.

A row pools the records that differ only in ``seed``: every other config field (cycles, schedule,
options, device, threads, ...) and the records' protocol version separate rows, and a ``settings`` column
names the fields that tell apart rows which would otherwise look alike. Where several learning rates were
run for one row, one is chosen by the scenario's primary metric (§7; its validation figure where the
records have one); ``lr_selection`` says on which seeds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from plasticity_bench.leaderboard.paper import paper_protocol_gaps
from plasticity_bench.run.records import canonical_json, is_number, record_protocol
from plasticity_bench.scenarios.registry import SCENARIOS

#: Config fields shown as columns, in this order (every other field still separates rows).
GROUP_KEYS = (
    "scenario", "variant", "strategy", "compactness", "lr", "model", "tasks", "steps_per_task", "batch_size",
    "cycles", "schedule", "optimizer", "winning_ticket", "device", "threads",
)  # fmt: skip
LR_FREE_KEYS = tuple(k for k in GROUP_KEYS if k != "lr")
PRIMARY_METRICS = ("taoa", "acc")
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


def _summary_metrics(records: Sequence[dict[str, Any]]) -> list[str]:
    """Numeric summary keys present in any record, in order of first appearance."""
    seen: dict[str, None] = {}
    for record in records:
        for name, value in record["summary"].items():
            if is_number(value) or value is None:
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
    present = {k for r in records for k, v in r["summary"].items() if is_number(v)}
    return next((m for m in order if m in present), None)


def selection_metric(metric: str | None, records: Sequence[dict[str, Any]]) -> str | None:
    """The figure an lr is chosen by: the validation figure ``val_<metric>`` when every record has one
    (a validation split carved from the training data, docs/protocol.md §7), else ``metric`` itself."""
    if metric is None:
        return None
    val = f"val_{metric}"
    return val if records and all(is_number(r["summary"].get(val)) for r in records) else metric


def _mean_metric(records: Sequence[dict[str, Any]], metric: str) -> float:
    values = [r["summary"].get(metric) for r in records]
    finite = [float(v) for v in values if is_number(v) and not math.isnan(v)]
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
            out[i] = ", ".join(f"{k}={fmt_key(flats[i].get(k))}" for k in varying)
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
        budget="; ".join(sorted({f for r in reported for f in r.get("flags", [])})),
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
    how the config departs from the paper's protocol, §10), ``budget`` (empty, or the flags of off-budget
    runs: ``over budget``, ``edits without training``; §16). Rows are sorted by the group keys.

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
    df = ordered_columns(pd.DataFrame(rows), wanted)
    return df.sort_values([*LR_FREE_KEYS, "settings"], na_position="first", key=_sort_key).reset_index(
        drop=True
    )


#: The order of metric columns in the leaderboard files: the primary metrics first (docs/protocol.md §1).
METRIC_ORDER = (
    "taoa", "acc", "taa", "early_task_taa", "wt_taoa", "wt_acc", "wt_taa", "delta_wt_c", "params", "flops",
    "train_flops",
)  # fmt: skip


def ordered_columns(df: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """``df``'s columns in leaderboard order: who (scenario, strategy, compactness, settings, budget, n),
    the metrics by :func:`metric_rank`, the rest of the config, then everything else."""
    figures = [f"{m}_{part}" for m in sorted(metrics, key=metric_rank) for part in ("mean", "ci95", "n")]
    leading = [*COMPACT_KEYS, "settings", "budget", "n", *figures, *GROUP_KEYS, "seeds", "lrs_swept"]
    leading = list(dict.fromkeys([*leading, "lr_metric", "lr_selection", "lr_note"]))
    return df[leading + [c for c in df.columns if c not in leading]]


def metric_rank(metric: str) -> tuple[int, str]:
    """Sort key of a metric column: its place in :data:`METRIC_ORDER`, then by name."""
    return (METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER), metric)


def row_records(row: dict[str, Any] | pd.Series, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records a row of :func:`aggregate` reports: equal config (every group key, the options), the
    row's chosen lr, one of its reported seeds, and the row's protocol version."""
    seeds = {int(s) for s in str(row["seeds"]).split(",") if s}
    return [
        r for r in records
        if all(same_value(r["config"].get(k), row[k]) for k in GROUP_KEYS) and r["config"]["seed"] in seeds
        and canonical_json(r["config"].get("options") or {}) == row["options"]
        and record_protocol(r) == row["protocol"]
    ]  # fmt: skip


def short_name(strategy: str) -> str:
    """A strategy as tables and legends name it: a user plugin by its class (``path/mine.py:MyGrow`` ->
    ``MyGrow``), a built-in by its name."""
    return strategy.rpartition(":")[2] if ":" in strategy else strategy


def row_label(row: dict[str, Any] | pd.Series) -> str:
    """A leaderboard row as tables, legends and comparisons name it: ``grow c=0.5`` (compactness only
    below 1), a user plugin by its class (:func:`short_name`), its settings in parentheses when it has any
    (``prune c=0.5 (option.rewind=none)``)."""
    name = short_name(row["strategy"])
    name += f" c={fmt_key(row['compactness'])}" if row["compactness"] != 1 else ""
    return f"{name} ({row['settings']})" if row.get("settings") else name


def same_value(a: Any, b: Any) -> bool:
    """Equal config values, a missing one (``None``, or the NaN a DataFrame makes of it) equal to another."""
    missing = [v is None or (isinstance(v, float) and math.isnan(v)) for v in (a, b)]
    return all(missing) or (not any(missing) and a == b)


def _sort_key(column: pd.Series) -> pd.Series:
    """Sort mixed/None-bearing columns as strings, numeric columns as numbers."""
    return column if pd.api.types.is_numeric_dtype(column) else column.fillna("").astype(str)


def fmt_key(value: Any) -> str:
    """A config value as the tables show it: ``"—"`` for none, ``0.001`` for floats, ``str`` otherwise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:g}" if isinstance(value, float) else str(value)


#: Columns of the printed (terminal) table; the CSV and Markdown files hold every column.
COMPACT_KEYS = ("scenario", "variant", "strategy", "compactness")
