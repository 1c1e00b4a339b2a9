"""Is my strategy better? Paired comparisons against a baseline on identical streams, and scores
aggregated over benchmarks (docs/protocol.md §16).

Every strategy sees the same stream for a seed (same tasks, batches and test sets), so a strategy's row
(:func:`~plasticity_bench.leaderboard.aggregate.aggregate`: its chosen lr, its reported seeds) is compared
with the baseline's row of the same stream seed by seed (:mod:`plasticity_bench.leaderboard.stats`).
Across benchmarks each run's figure is normalised, ``(x - chance) / (dense - chance)`` with ``chance``
the scenario's chance accuracy and ``dense`` Dense's mean on that stream, and pooled: IQM and mean with
stratified-bootstrap intervals, and the probability of improvement averaged over benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from plasticity_bench.leaderboard import stats
from plasticity_bench.leaderboard.aggregate import aggregate, row_label, row_records
from plasticity_bench.run.records import is_number
from plasticity_bench.scenarios.registry import SCENARIOS, chance_accuracy

#: Config fields that make two rows' streams identical seed by seed (with the protocol version).
STREAM_KEYS = ("scenario", "variant", "tasks", "steps_per_task", "batch_size", "device", "threads")
#: Accuracy metrics (fractions): their differences are shown in percent points, their scores normalised.
ACCURACIES = ("taoa", "acc", "taa", "early_task_taa")
#: The columns of ``compare.csv``, in order (``scenario`` is ``ALL`` on the aggregate rows).
COLUMNS = (
    "scenario", "strategy", "compactness", "settings", "baseline", "metric", "unit", "n", "mean_diff",
    "ci_low", "ci_high", "boot_low", "boot_high", "p_wilcoxon", "p_ttest", "p_holm", "prob_improvement",
    "seeds_for_80_power", "score_iqm", "score_iqm_low", "score_iqm_high", "score_mean", "score_mean_low",
    "score_mean_high", "scenarios",
)  # fmt: skip
ALL = "ALL"
#: The columns of ``compare_scores.csv`` (:func:`scores_table`).
SCORE_COLUMNS = (
    "strategy",
    "scenarios",
    "runs",
    "iqm",
    "iqm_low",
    "iqm_high",
    "mean",
    "mean_low",
    "mean_high",
)


@dataclass
class Arm:
    """One leaderboard row and its reported records by seed."""

    row: dict[str, Any]
    by_seed: dict[int, dict[str, Any]]

    @property
    def stream(self) -> tuple[Any, ...]:
        """What must match for two arms to share their streams: :data:`STREAM_KEYS` and protocol."""
        return (*(self.row[k] for k in STREAM_KEYS), self.row["protocol"])

    @property
    def label(self) -> str:
        """The strategy as the tables name it (:func:`~plasticity_bench.leaderboard.aggregate.row_label`)."""
        return row_label(self.row)

    def values(self, metric: str, seeds: Sequence[int]) -> np.ndarray:
        """The metric on ``seeds`` (NaN where a record lacks it), float64 ``(len(seeds),)``."""
        found = (self.by_seed[s]["summary"].get(metric) for s in seeds)
        return np.array([float(v) if is_number(v) else math.nan for v in found])


@dataclass
class Pair:
    """A strategy's arm, the baseline's arm on its streams, the metric and the seeds both have."""

    arm: Arm
    base: Arm
    metric: str
    seeds: list[int]


@dataclass
class Comparison:
    """What :func:`compare` found: ``table`` (the :data:`COLUMNS`, per-scenario rows then ``ALL``),
    ``pairs`` (for figures), ``scores`` (per strategy label, per scenario: the normalised scores of its
    seeds), ``score_table`` (:func:`scores_table` of them) and ``notes`` (rows left out and why)."""

    table: pd.DataFrame
    pairs: list[Pair]
    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    score_table: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SCORE_COLUMNS))
    notes: list[str] = field(default_factory=list)


def arms_of(records: Sequence[dict[str, Any]], select_seeds: Sequence[int] = ()) -> list[Arm]:
    """The leaderboard rows of ``records`` (lr chosen as the leaderboard chooses it) as arms."""
    table = aggregate(records, select_seeds=select_seeds)
    arms = []
    for row in table.to_dict("records"):
        arms.append(Arm(row, {r["config"]["seed"]: r for r in row_records(row, records)}))
    return arms


def baseline_arm(arm: Arm, candidates: Sequence[Arm]) -> Arm | None:
    """The baseline arm on ``arm``'s streams: the only one, else the one at ``arm``'s compactness, else
    the one with no settings of its own; None when none or several remain."""
    same = [c for c in candidates if c.stream == arm.stream]
    for narrow in (lambda c: c.row["compactness"] == arm.row["compactness"], lambda c: not c.row["settings"]):
        if len(same) > 1:
            same = [c for c in same if narrow(c)] or same
    return same[0] if len(same) == 1 else None


def metric_for(arm: Arm, metric: str | None) -> str:
    """``metric``, or the scenario's primary metric (``ScenarioSpec.metric``: TAOA online, ACC / TAA)."""
    spec = SCENARIOS.get(arm.row["scenario"])
    return metric or (spec.metric if spec else "taoa")


def scale(metric: str) -> tuple[float, str]:
    """Accuracies (fractions) are compared in percent points; other metrics in their own units."""
    base = metric.removeprefix("wt_").removeprefix("val_")
    return (100.0, "pp") if base in ACCURACIES else (1.0, "raw")


def pair_arms(
    arms: Sequence[Arm], baseline: str, metric: str | None, strategies: Sequence[str] | None
) -> tuple[list[Pair], list[str]]:
    """Every strategy arm (of ``strategies``, default all but the baseline) with its baseline arm and the
    seeds both report; notes for arms without a baseline or a shared seed.

    Raises:
        ValueError: for a baseline or a strategy that no record has.
    """
    names = {a.row["strategy"] for a in arms}
    for name in [baseline, *(strategies or [])]:
        if name not in names:
            raise ValueError(f"no records of strategy {name!r}; strategies here: {', '.join(sorted(names))}")
    bases = [a for a in arms if a.row["strategy"] == baseline]
    wanted = set(strategies) if strategies else names - {baseline}
    pairs, notes = [], []
    for arm in (a for a in arms if a.row["strategy"] in wanted):
        base = baseline_arm(arm, bases)
        shared = sorted(set(arm.by_seed) & set(base.by_seed)) if base else []
        if not shared:
            why = "no baseline row on its streams" if base is None else "no seed in common with it"
            notes.append(f"{arm.row['scenario']} {arm.label}: {why}")
            continue
        pairs.append(Pair(arm, base, metric_for(arm, metric), shared))
    return pairs, notes


def compare(
    records: Sequence[dict[str, Any]],
    baseline: str,
    metric: str | None = None,
    strategies: Sequence[str] | None = None,
    select_seeds: Sequence[int] = (),
) -> Comparison:
    """Compare every strategy of ``records`` (or ``strategies``) with ``baseline``, per scenario and over
    all scenarios, on ``metric`` (default: each scenario's primary metric). Differences are
    ``strategy - baseline``, in percent points for accuracies; p-values are Holm-corrected over the rows.

    Raises:
        ValueError: for a baseline or strategy that no record has.
    """
    arms = arms_of(records, select_seeds)
    pairs, notes = pair_arms(arms, baseline, metric, strategies)
    scores = normalised_scores(pairs, dense_references(arms), notes)
    score_table = scores_table(scores)
    rows = [scenario_row(p) for p in pairs] + aggregate_rows(pairs, scores, score_table, baseline)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["p_holm"] = stats.holm(table["p_wilcoxon"].tolist())
    return Comparison(table, pairs, scores, score_table, notes)


def scenario_row(pair: Pair) -> dict[str, Any]:
    """The :data:`COLUMNS` of one strategy against its baseline on one scenario's streams."""
    factor, unit = scale(pair.metric)
    x, y = pair.arm.values(pair.metric, pair.seeds), pair.base.values(pair.metric, pair.seeds)
    result = stats.paired(factor * x, factor * y)
    row = pair.arm.row
    return {
        "scenario": row["scenario"], "strategy": row["strategy"], "compactness": row["compactness"],
        "settings": row["settings"], "baseline": pair.base.label, "metric": pair.metric, "unit": unit,
        "n": result.n, "mean_diff": result.mean, "ci_low": result.t_low, "ci_high": result.t_high,
        "boot_low": result.boot_low, "boot_high": result.boot_high, "p_wilcoxon": result.p_wilcoxon,
        "p_ttest": result.p_ttest, "prob_improvement": result.prob_improvement,
        "seeds_for_80_power": result.seeds_needed,
    }  # fmt: skip


def dense_references(arms: Sequence[Arm]) -> dict[tuple[Any, ...], Arm]:
    """Dense's arm per stream (the one without settings where several exist): the normalisation's 1."""
    found: dict[tuple[Any, ...], Arm] = {}
    for arm in arms:
        if arm.row["strategy"] == "dense" and (arm.stream not in found or not arm.row["settings"]):
            found[arm.stream] = arm
    return found


def normalised_scores(
    pairs: Sequence[Pair], references: dict[tuple[Any, ...], Arm], notes: list[str]
) -> dict[str, dict[str, np.ndarray]]:
    """Per strategy label (the baseline's too), per scenario: ``(x - chance) / (dense - chance)`` of each
    seed (:func:`~plasticity_bench.leaderboard.stats.normalised`); pairs on non-accuracy metrics, on streams
    without Dense or where Dense is at chance are noted and left out."""
    scores: dict[str, dict[str, np.ndarray]] = {}
    for pair in pairs:
        scenario = pair.arm.row["scenario"]
        dense = references.get(pair.arm.stream)
        if scale(pair.metric)[1] != "pp" or dense is None:
            why = "not an accuracy" if dense is not None else "no Dense run on its streams"
            notes.append(f"{scenario} {pair.arm.label}: not in the aggregate ({why})")
            continue
        chance = chance_accuracy(scenario)
        reference = float(np.nanmean(dense.values(pair.metric, sorted(dense.by_seed))))
        if not reference > chance:
            notes.append(f"{scenario} {pair.arm.label}: not in the aggregate (Dense is at chance there)")
            continue
        for arm in (pair.arm, pair.base):
            values = arm.values(pair.metric, pair.seeds)
            scores.setdefault(arm.label, {})[scenario] = np.array(
                [stats.normalised(v, chance, reference) for v in values]
            )
    return scores


def aggregate_rows(
    pairs: Sequence[Pair], scores: dict[str, dict[str, np.ndarray]], score_table: pd.DataFrame,
    baseline: str,
) -> list[dict[str, Any]]:  # fmt: skip
    """One ``ALL`` row per strategy label: the normalised difference to the baseline pooled over the
    scenarios (mean, stratified-bootstrap interval, Wilcoxon on the pooled differences, probability of
    improvement averaged over scenarios) and the strategy's own normalised IQM and mean (its row of
    ``score_table``)."""
    own_scores = score_table.set_index("strategy")
    rows = []
    by_label: dict[str, list[Pair]] = {}
    for pair in pairs:
        if pair.arm.label in scores and pair.arm.row["scenario"] in scores[pair.arm.label]:
            by_label.setdefault(pair.arm.label, []).append(pair)
    for label, members in by_label.items():
        diffs = finite(
            [100 * (scores[label][p.arm.row["scenario"]] - scores[p.base.label][p.arm.row["scenario"]])
             for p in members]
        )  # fmt: skip
        pooled = np.concatenate(diffs)
        low, high = stats.stratified_interval(diffs, np.mean)
        own = own_scores.loc[label]
        first = members[0].arm.row
        rows.append({
            "scenario": ALL, "strategy": first["strategy"], "compactness": first["compactness"],
            "settings": first["settings"], "baseline": baseline, "metric": "normalised score",
            "unit": "points", "n": int(pooled.size), "mean_diff": float(pooled.mean()), "ci_low": low,
            "ci_high": high, "p_wilcoxon": stats.wilcoxon_p(pooled),
            "prob_improvement": float(np.mean([stats.prob_improvement(d, np.zeros_like(d)) for d in diffs])),
            "score_iqm": own["iqm"], "score_iqm_low": own["iqm_low"], "score_iqm_high": own["iqm_high"],
            "score_mean": own["mean"], "score_mean_low": own["mean_low"], "score_mean_high": own["mean_high"],
            "scenarios": len(members),
        })  # fmt: skip
    return rows


def scores_table(scores: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """Per strategy label (the baseline's too): the scenarios and runs its normalised scores pool, their
    IQM and mean with stratified-bootstrap 95% intervals (seeds resampled within each scenario)."""
    rows = []
    for label, by_scenario in scores.items():
        strata = finite(list(by_scenario.values()))
        pooled = np.concatenate(strata)
        if pooled.size == 0:
            continue
        iqm_low, iqm_high = stats.stratified_interval(strata, stats.iqm)
        mean_low, mean_high = stats.stratified_interval(strata, np.mean)
        rows.append({
            "strategy": label, "scenarios": len(strata), "runs": int(pooled.size), "iqm": stats.iqm(pooled),
            "iqm_low": iqm_low, "iqm_high": iqm_high, "mean": float(pooled.mean()), "mean_low": mean_low,
            "mean_high": mean_high,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def finite(strata: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each stratum without its NaN entries (runs whose record lacks the metric)."""
    return [s[np.isfinite(s)] for s in strata]
