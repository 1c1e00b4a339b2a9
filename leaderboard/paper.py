"""LC26's published figures beside ours: Table 14 as shipped (``reference/``), which of our metrics its
"Avg. Acc." is (:func:`paper_metric`), whether a row follows the paper's protocol
(:func:`paper_protocol_gaps`) and the paper's columns joined to the leaderboard (:func:`attach_reference`;
docs/protocol.md §10). The paper's figures are in percent, as printed."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from plasticity_bench.core.options import resolve
from plasticity_bench.scenarios.registry import SCENARIOS
from plasticity_bench.strategies.registry import is_user_plugin
from plasticity_bench.sweep.plan import used_options

#: LC26 Table 14 (figures only, never used for tuning), shipped as package data of ``leaderboard``.
DEFAULT_REFERENCE = resources.files("plasticity_bench.leaderboard") / "reference" / "lc2026_table14.csv"
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


def paper_metric(scenario: str) -> str:
    """Our metric that LC26 Table 14's "Avg. Acc." of ``scenario`` is compared with (docs/protocol.md §10):
    the scenario's primary metric, TAOA on five benchmarks and TAA on Split-CIFAR100 [ours: inference]."""
    spec = SCENARIOS.get(scenario)
    return spec.metric if spec is not None else "taoa"


def paper_protocol_gaps(config: dict[str, Any]) -> list[str]:
    """How a run's config departs from the paper's protocol (docs/protocol.md §10); empty when it follows it.

    Checked: the scenario's own data (no variant), full stream (tasks, steps per task), batch size, model,
    optimizer, cycles, the neutral schedule, every option at its default, Dense at the scenario lr, and on
    DYNO's transfer streams (docs/protocol.md §17) pretrained weights; the path of a weights file is a
    user's choice, not a gap.
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
    if spec.show_flops and (config.get("options") or {}).get("weights", "none") == "none":
        gaps.append("random init (DYNO paper: ImageNet-pretrained VGG11, --weights)")
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
            {}, used_options(spec, strategy, bool(config.get("winning_ticket")), config.get("model"))
        )
    except ValueError:
        return [f"strategy {config.get('strategy')!r} is not in the paper"]
    options = config.get("options") or {}
    return [
        f"{k}={v} (paper: {defaults[k]})"
        for k, v in sorted(options.items()) if defaults.get(k, v) != v and k != "weights"
    ]  # fmt: skip


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
