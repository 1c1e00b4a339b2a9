"""Figures of a comparison with a baseline (:mod:`plasticity_bench.leaderboard.compare`; docs/protocol.md
§16):

- ``<scenario>_paired_by_task``: per strategy, the paired difference to the baseline task by task (on the
  scenario's per-task accuracy: online accuracy for TAOA, checkpoint accuracy for ACC / TAA), mean over
  seeds with its 95% Student-t band: where in the stream one strategy wins;
- ``all_performance_profile``: per strategy, the fraction of runs whose normalised score exceeds τ
  (Agarwal et al. 2021), pooled over scenarios;
- ``all_aggregate_scores``: IQM and mean of the normalised scores with stratified-bootstrap 95% intervals.

A strategy keeps one colour in all of them (its place among the compared labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from plasticity_bench.leaderboard.compare import Comparison, Pair
from plasticity_bench.views.plots import colour_map, finish, line_style, mean_line, scenario_name, task_axis

#: Per-task series a metric's paired difference is drawn on (fractions, one value per task or checkpoint).
PER_TASK = {"taoa": "online_acc", "acc": "checkpoint_acc", "taa": "checkpoint_acc"}


def default_baseline(records: Sequence[dict[str, Any]]) -> str | None:
    """``dense`` when the records have Dense runs (the field's reference), else None (no comparison)."""
    return "dense" if any(r["config"]["strategy"] == "dense" for r in records) else None


def colours(records: Sequence[dict[str, Any]], labels: Sequence[str]) -> dict[str, int]:
    """One palette index per strategy label: the one the folder's other figures give it
    (:func:`~plasticity_bench.views.plots.colour_map`), a free one for a label they lack."""
    known = colour_map(records)
    extra = {label: len(known) + i for i, label in enumerate(lb for lb in labels if lb not in known)}
    return {label: {**known, **extra}[label] for label in labels}


def paired_by_task(pairs: Sequence[Pair], scenario: str, colour: dict[str, int]) -> Figure | None:
    """The per-task paired difference of every pair of ``scenario`` (``name@variant``; percent points);
    None without one."""
    drawn = [p for p in pairs if pair_scenario(p) == scenario and p.metric in PER_TASK]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    fig.suptitle(f"{scenario}: strategy − {drawn[0].base.label}, per task")
    for pair in drawn:
        key = PER_TASK[pair.metric]
        rows = [np.subtract(pair.arm.by_seed[s]["per_task"].get(key, []), pair.base.by_seed[s]["per_task"]
                            .get(key, [])) for s in pair.seeds]  # fmt: skip
        if min(len(r) for r in rows) == 0:
            continue
        values = 100 * np.array([r[: min(len(r) for r in rows)] for r in rows], dtype=float)
        mean_line(ax, np.arange(1, values.shape[1] + 1), values, pair.arm.label, colour[pair.arm.label],
                  percent=False)  # fmt: skip
    ax.axhline(0.0, color="grey", linewidth=0.8)
    task_axis(ax, f"Δ {drawn[0].metric} per task (pp)")
    return finish(fig, [ax])


def pair_scenario(pair: Pair) -> str:
    """The ``scenario@variant`` a pair was run on, as the other figures name it."""
    return scenario_name(pair.arm.by_seed[pair.seeds[0]])


def performance_profile(comparison: Comparison, colour: dict[str, int]) -> Figure | None:
    """Fraction of runs with a normalised score above τ, per strategy; None without scores."""
    pooled = {label: np.concatenate(list(s.values())) for label, s in comparison.scores.items()}
    finite = np.concatenate([v[np.isfinite(v)] for v in pooled.values()] or [np.zeros(0)])
    if finite.size == 0:
        return None
    taus = np.linspace(min(0.0, float(finite.min())), max(1.2, float(finite.max())), 200)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    fig.suptitle("performance profile over all scenarios")
    for label, values in pooled.items():
        above = [(values > tau).mean() for tau in taus]
        ax.plot(taus, above, label=label, linewidth=1.4, **line_style(colour[label]))
    ax.set(xlabel="normalised score τ (Dense 1, chance 0)", ylabel="fraction of runs with score > τ")
    ax.set_ylim(0, 1.02)
    return finish(fig, [ax])


def aggregate_scores(comparison: Comparison, colour: dict[str, int]) -> Figure | None:
    """IQM and mean of the normalised scores, each with its stratified-bootstrap 95% interval."""
    table = comparison.score_table
    if table.empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 0.6 * len(table) + 1.6), sharey=True)
    fig.suptitle("normalised score over all scenarios (95% stratified-bootstrap intervals)")
    ys = np.arange(len(table))
    for ax, stat in zip(axes, ("iqm", "mean")):
        for y, row in zip(ys, table.to_dict("records")):
            errors = [[row[stat] - row[f"{stat}_low"]], [row[f"{stat}_high"] - row[stat]]]
            color = line_style(colour[row["strategy"]])["color"]
            ax.errorbar(row[stat], y, xerr=errors, fmt="o", color=color, capsize=3)
        ax.set(xlabel="IQM" if stat == "iqm" else "mean")
        ax.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax.grid(alpha=0.3)
    axes[0].set_yticks(ys, table["strategy"])
    axes[0].invert_yaxis()
    fig.tight_layout()
    return fig


def comparison_figures(
    records: Sequence[dict[str, Any]], comparison: Comparison | None
) -> list[tuple[str, str, Figure]]:
    """The figures of ``comparison`` (:func:`~plasticity_bench.leaderboard.compare.compare` of
    ``records``; none when it is None): ``(scenario or "all", figure name, Figure)``."""
    if comparison is None:
        return []
    labels = list(dict.fromkeys([*comparison.scores, *(p.arm.label for p in comparison.pairs)]))
    colour = colours(records, labels)
    made = []
    for scenario in sorted({pair_scenario(p) for p in comparison.pairs}):
        fig = paired_by_task(comparison.pairs, scenario, colour)
        if fig is not None:
            made.append((scenario, "paired_by_task", fig))
    for name, plot in (("performance_profile", performance_profile), ("aggregate_scores", aggregate_scores)):
        fig = plot(comparison, colour)
        if fig is not None:
            made.append(("all", name, fig))
    return made
