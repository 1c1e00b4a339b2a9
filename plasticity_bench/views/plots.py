"""Figures of a results folder: ``plasticity-bench plot RESULTS [--out DIR]`` (docs/protocol.md §13).

Per scenario (records of one ``scenario@variant``), each figure as PNG and SVG:

- ``online_accuracy``: online accuracy over the stream (the records' binned learning curves), x in updates;
- ``task_accuracy``: mean online accuracy of each task (TAOA per task);
- ``active_units``: active units per masked layer at each task start (DYNO: its width changes, by update);
- ``cohort_parity``: cohort activation and gradient log-parity after each edit (post-birth curves; LC26
  Sec. 4's "forward-active but backward-starved" picture: act near 0 with grad below 0);
- ``leaderboard``: a panel per accuracy (the primary metric first), each row a dot with its 95% interval in
  its strategy's colour, and LC26 Table 14's figure as a marker where comparable (docs/protocol.md §10);
- ``ticket``: Cycle against winning-ticket ACC (TAOA where the scenario has no checkpoints);
- ``compute``: the primary metric against the training FLOPs, with the Pareto front (equal compute);
- DYNO's transfer streams (docs/protocol.md §17): ``accuracy_flops`` (final test accuracy against final
  inference FLOPs, every seed a point, an ellipse of one standard deviation per row), ``inference_cost``
  (inference FLOPs per sample over training) and ``layer_changes`` (units grown and pruned per layer,
  relative to its original width).

A *group* is a leaderboard row: records equal but for the seed, at the row's chosen lr. Lines are the mean
over seeds with a 95% Student-t band (none for one seed); colours are the Okabe-Ito palette, safe for
colour-blind readers. A figure whose data no record holds (no edits, no ticket) is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from matplotlib.ticker import MaxNLocator
from scipy import stats

from plasticity_bench.core.io import atomic_write
from plasticity_bench.leaderboard.aggregate import aggregate, primary_metric, row_label, row_records
from plasticity_bench.leaderboard.paper import attach_reference, paper_metric
from plasticity_bench.leaderboard.tables import METRIC_LABELS, shows_flops
from plasticity_bench.measure.metrics import bin_ends
from plasticity_bench.measure.plasticity import FIELDS as PLASTICITY_FIELDS

#: Okabe & Ito (2008) colour-blind-safe palette.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
LINESTYLES = ("-", "--", ":", "-.")
FORMATS = ("png", "svg")


@dataclass
class Group:
    """One leaderboard row's records (all seeds at its chosen lr); ``label`` names it in legends."""

    label: str
    records: list[dict[str, Any]]
    row: dict[str, Any]
    #: Palette index: one per label in every figure of a results folder (:func:`colour_map`).
    colour: int = 0


def mean_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over axis 0 (seeds) and the 95% Student-t half-width per point (NaN for one seed).

    ``values``: float ``(seeds, points)``; NaN entries are ignored. Returns two ``(points,)`` arrays.
    """
    n = np.sum(~np.isnan(values), axis=0)
    mean = np.nanmean(values, axis=0)
    if values.shape[0] < 2:
        return mean, np.full_like(mean, np.nan)
    sd = np.nanstd(values, axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.975, np.maximum(n - 1, 1)) * sd / np.sqrt(n)
    return mean, np.where(n > 1, half, np.nan)


def scenario_name(record: dict[str, Any]) -> str:
    config = record["config"]
    return config["scenario"] + (f"@{config['variant']}" if config.get("variant") else "")


def groups_of(records: Sequence[dict[str, Any]]) -> list[Group]:
    """The leaderboard rows of ``records`` (one scenario, LC26 figures attached) as :class:`Group` objects,
    in table order."""
    groups = []
    for _, row in attach_reference(aggregate(records)).iterrows():
        groups.append(Group(row_label(row), row_records(row, records), row.to_dict(), len(groups)))
    return groups


def colour_map(records: Sequence[dict[str, Any]]) -> dict[str, int]:
    """A palette index per group label of ``records``, in order of first appearance over the scenarios:
    a strategy keeps its colour in every figure of the folder."""
    labels = [g.label for members in by_scenario(records).values() for g in groups_of(members)]
    return {label: i for i, label in enumerate(dict.fromkeys(labels))}


def line_style(i: int) -> dict[str, Any]:
    """Colour (Okabe-Ito, by palette index ``i``) and line style of a group's lines."""
    return {
        "color": PALETTE[i % len(PALETTE)],
        "linestyle": LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)],
    }


def mean_line(
    ax: Any, x: np.ndarray, values: np.ndarray, label: str, i: int, percent: bool = True,
    stairs: bool = False, floor: float | None = None,
) -> None:  # fmt: skip
    """Mean of ``values`` ``(seeds, points)`` against ``x``, with its 95% band, in colour ``i``
    (:func:`line_style`); ``percent``: the values are fractions, drawn in percent with the band cut to
    [0, 100] (a t-interval of few seeds can pass the bounds); ``floor``: the lowest value the quantity can
    take (a rank, a norm: 0), where the band is cut likewise; ``stairs``: a value holds until the next x."""
    mean, half = mean_band(values)
    scale = 100.0 if percent else 1.0
    style = line_style(i)
    draw = {"drawstyle": "steps-post"} if stairs else {}
    ax.plot(x, mean * scale, label=label, linewidth=1.2, **style, **draw)
    if np.isfinite(half).any():
        low, high = (mean - half) * scale, (mean + half) * scale
        if percent:
            low, high = np.clip(low, 0.0, 100.0), np.clip(high, 0.0, 100.0)
        elif floor is not None:
            low = np.maximum(low, floor)
        ax.fill_between(x, low, high, color=style["color"], alpha=0.2, lw=0, step="post" if stairs else None)


def _stack(rows: list[list[float]]) -> np.ndarray:
    """Seeds' series as ``(seeds, points)``, cut to the shortest."""
    length = min(len(r) for r in rows)
    return np.array([r[:length] for r in rows], dtype=float)


#: Most panels side by side; more go on further rows (VGG11's ten layers: 4 + 4 + 2).
MAX_COLUMNS = 4


def _figure(title: str, panels: int = 1) -> tuple[Figure, list[Any]]:
    """A figure of ``panels`` axes, at most :data:`MAX_COLUMNS` a row (narrower panels when they wrap),
    unused grid cells hidden."""
    columns = min(panels, MAX_COLUMNS)
    rows = math.ceil(panels / columns)
    width = 6.4 if rows == 1 else 4.2
    fig, grid = plt.subplots(rows, columns, figsize=(width * columns, 4.0 * rows), squeeze=False)
    fig.suptitle(title)
    axes = list(grid.flat)
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def task_axis(ax: Any, ylabel: str) -> None:
    """An x axis of task numbers (integer ticks only) and ``ylabel``."""
    ax.set(xlabel="task", ylabel=ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def finish(fig: Figure, axes: list[Any]) -> Figure:
    axes[0].legend(fontsize="small", frameon=False)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def online_accuracy(groups: list[Group], scenario: str) -> Figure | None:
    """Online accuracy (%) over the stream, per group: mean and 95% band over seeds."""
    with_curves = [g for g in groups if all("curves" in r for r in g.records)]
    if not with_curves:
        return None
    fig, axes = _figure(f"{scenario}: online accuracy over the stream")
    for group in with_curves:
        i = group.colour
        curves = [r["curves"] for r in group.records]
        values = _stack([[v for task in c["online_acc"] for v in task] for c in curves])
        steps = group.records[0]["config"]["steps_per_task"]
        x = _curve_updates(curves[0]["online_acc"], curves[0]["bin"], steps)[: values.shape[1]]
        mean_line(axes[0], x, values, group.label, i)
    axes[0].set(xlabel="updates", ylabel="online accuracy (%)")
    return finish(fig, axes)


def _curve_updates(tasks: list[list[float]], size: int, steps: int) -> np.ndarray:
    """Update count at the end of every curve point of a stream of ``steps``-update tasks."""
    return np.array([t * steps + end for t in range(len(tasks)) for end in bin_ends(steps, size)])


def task_accuracy(groups: list[Group], scenario: str) -> Figure | None:
    """Mean online accuracy (%) of each task, per group."""
    fig, axes = _figure(f"{scenario}: online accuracy per task")
    for group in groups:
        i = group.colour
        values = _stack([r["per_task"]["online_acc"] for r in group.records])
        mean_line(axes[0], np.arange(1, values.shape[1] + 1), values, group.label, i)
    task_axis(axes[0], "task online accuracy (%)")
    return finish(fig, axes)


def active_units(groups: list[Group], scenario: str) -> Figure | None:
    """Active units per masked layer over the stream, per structural group (DYNO at its width changes)."""
    moving = [g for g in groups if _changes_width(g)]
    if not moving:
        return None
    layers = len(moving[0].records[0]["per_task"]["final_active_units"])
    fig, axes = _figure(f"{scenario}: active units per layer", layers)
    for group in moving:
        i = group.colour
        draw = _dyno_widths if "dyno" in group.records[0] else _task_widths
        for layer, ax in enumerate(axes):
            draw(ax, group, layer, i)
    for layer, ax in enumerate(axes):
        ax.set(title=f"layer {layer}", xlabel="updates", ylabel="active units")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # units are whole
    return finish(fig, axes)


def _dyno_widths(ax: Any, group: Group, layer: int, i: int) -> None:
    """Each seed's DYNO width of ``layer`` as steps at its width changes (seeds change at different steps)."""
    for r, record in enumerate(group.records):
        widths = record["dyno"]["active_width"]
        x = [w["step"] for w in widths] + [record["config"]["tasks"] * record["config"]["steps_per_task"]]
        y = [w["widths"][layer] for w in widths] + [widths[-1]["widths"][layer]]
        ax.step(x, y, where="post", label=group.label if r == 0 else None, **line_style(i))


def _task_widths(ax: Any, group: Group, layer: int, i: int) -> None:
    """Active units of ``layer`` after each task's edit and at the end: mean and band over seeds (stairs)."""
    values = _stack(
        [[*(t[layer] for t in r["per_task"]["active_units"]), r["per_task"]["final_active_units"][layer]]
         for r in group.records]
    )  # fmt: skip
    steps = group.records[0]["config"]["steps_per_task"]
    x = np.arange(values.shape[1]) * steps
    mean_line(ax, x, values, group.label, i, percent=False, stairs=True, floor=0.0)  # units: >= 0


def _changes_width(group: Group) -> bool:
    record = group.records[0]
    return "dyno" in record or len({tuple(t) for t in record["per_task"]["active_units"]}) > 1


def cohort_parity(groups: list[Group], scenario: str) -> Figure | None:
    """Cohort activation and gradient log-parity against updates after each edit (post and curve
    snapshots), per group: mean over edits, layers and seeds with a 95% band over seeds."""
    with_rows = [g for g in groups if any(r.get("diagnostics") for r in g.records)]
    if not with_rows:
        return None
    fig, axes = _figure(f"{scenario}: newborn/kept vs incumbent/pruned cohorts after each edit", 2)
    for group in with_rows:
        i = group.colour
        for ax, kind in zip(axes, ("act", "grad")):
            per_seed = [_parity_by_age(r.get("diagnostics", []), kind) for r in group.records]
            ages = sorted(set().union(*per_seed))
            values = np.array([[seed.get(a, math.nan) for a in ages] for seed in per_seed], dtype=float)
            mean_line(ax, np.array(ages), values, group.label, i, percent=False)
    for ax, kind in zip(axes, ("activation", "gradient")):
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set(xlabel="updates after the edit", ylabel=f"{kind} log-parity (A vs B)", title=kind)
    return finish(fig, axes)


def _parity_by_age(rows: list[dict[str, Any]], kind: str) -> dict[int, float]:
    """Mean finite ``<kind>_log_parity`` per ``steps_after_edit`` over the post and curve rows."""
    sums: dict[int, list[float]] = {}
    for row in rows:
        value = row[f"{kind}_log_parity"]
        if row["snapshot"] in ("post", "curve") and value is not None and math.isfinite(value):
            sums.setdefault(int(row["steps_after_edit"]), []).append(value)
    return {age: float(np.mean(v)) for age, v in sums.items()}


#: The accuracies the leaderboard chart draws, a panel each where the rows have them (primary metric first).
CHART_METRICS = ("taoa", "acc", "taa", "early_task_taa", "wt_acc", "wt_taa", "wt_taoa")
MAX_CHART_PANELS = 4


def chart_metrics(groups: list[Group], primary: str) -> list[str]:
    """The metrics of the leaderboard chart: ``primary``, then those of :data:`CHART_METRICS` some row has."""
    present = [
        m for m in CHART_METRICS
        if m != primary and any(not math.isnan(g.row.get(f"{m}_mean", math.nan)) for g in groups)
    ]  # fmt: skip
    return [primary, *present][:MAX_CHART_PANELS]


def leaderboard_chart(groups: list[Group], scenario: str) -> Figure | None:
    """One panel per accuracy (:func:`chart_metrics`): every row as a dot with its 95% interval, in its
    strategy's colour; LC26's figure (x marker) where the row follows the paper's protocol."""
    records = [r for g in groups for r in g.records]
    name = records[0]["config"]["scenario"]
    primary = primary_metric(name, records)
    if primary is None:
        return None
    metrics = chart_metrics(groups, primary)
    fig, grid = plt.subplots(
        1,
        len(metrics),
        figsize=(3.4 * len(metrics) + 1.6, 0.45 * len(groups) + 1.6),
        sharey=True,
        squeeze=False,
    )
    fig.suptitle(f"{scenario}: leaderboard (mean and 95% CI over seeds)")
    for ax, metric in zip(grid[0], metrics):
        _chart_panel(ax, groups, metric, name)
    grid[0][0].set_yticks(range(len(groups)), [g.label for g in groups])
    grid[0][0].invert_yaxis()
    if grid[0][0].get_legend_handles_labels()[0]:
        grid[0][0].legend(fontsize="small", frameon=False)
    fig.tight_layout()
    return fig


def _chart_panel(ax: Any, groups: list[Group], metric: str, scenario: str) -> None:
    """One metric of the leaderboard chart."""
    for y, group in enumerate(groups):
        row = group.row
        mean, half = row.get(f"{metric}_mean", math.nan) * 100, row.get(f"{metric}_ci95", math.nan) * 100
        if math.isnan(mean):
            continue
        error = None if math.isnan(half) else percent_error(mean, half)
        ax.errorbar(mean, y, xerr=error, fmt="o", color=line_style(group.colour)["color"], capsize=3)
        paper = row.get("paper_avg_acc", math.nan) if metric == paper_metric(scenario) else math.nan
        if bool(row.get("paper_comparable", False)) and not math.isnan(paper):
            ax.plot(paper, y, "x", color=PALETTE[3], markersize=8, label="LC26 Table 14" if y == 0 else None)
    ax.set(xlabel=f"{METRIC_LABELS.get(metric, metric)} (%)")
    ax.grid(alpha=0.3, axis="x")


def compute(groups: list[Group], scenario: str) -> Figure | None:
    """Equal compute (docs/protocol.md §16): each row's primary metric (%) against its training FLOPs
    (log axis), mean and 95% CI over seeds (cut to [0, 100]), with the Pareto front (no other row is both
    cheaper and better) as a dashed line."""
    costed = [g for g in groups if not math.isnan(g.row.get("train_flops_mean", math.nan))]
    records = [r for g in costed for r in g.records]
    metric = primary_metric(records[0]["config"]["scenario"], records) if records else None
    if metric is None:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    points = []
    for group in groups:
        i = group.colour
        if group not in costed:
            continue
        x, y = group.row["train_flops_mean"], group.row[f"{metric}_mean"] * 100
        half = group.row[f"{metric}_ci95"] * 100
        error = None if math.isnan(half) else percent_error(y, half)
        ax.errorbar(x, y, yerr=error, fmt="o", capsize=3, label=group.label, color=line_style(i)["color"])
        points.append((x, y))
    front = pareto_front(points)
    ax.plot(*zip(*front), "--", color="grey", linewidth=0.8, label="Pareto front")
    ax.set(xscale="log", xlabel="training FLOPs (forward + backward, active units)",
           ylabel=f"{metric.upper()} (%)", title=f"{scenario}: metric vs training compute")  # fmt: skip
    return finish(fig, [ax])


def percent_error(value: float, half: float) -> list[list[float]]:
    """Matplotlib's asymmetric error bar of ``value ± half`` (percent) cut to [0, 100]: an interval of few
    seeds can pass the bounds an accuracy cannot."""
    return [[value - max(0.0, value - half)], [min(100.0, value + half) - value]]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both cost (lower ``x``) and score (higher ``y``), by cost."""
    front, best = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def ticket(groups: list[Group], scenario: str) -> Figure | None:
    """Cycle against winning-ticket ACC (TAOA without checkpoints), per group: mean and 95% CI over seeds
    on both axes, with the diagonal (points below it: the ticket does worse than the cycle run)."""
    with_wt = [g for g in groups if all("delta_wt_c" in r["summary"] for r in g.records)]
    if not with_wt:
        return None
    metric = "acc" if all("wt_acc" in r["summary"] for g in with_wt for r in g.records) else "taoa"
    fig, axes = _figure(f"{scenario}: Cycle vs winning ticket ({metric.upper()})")
    ax = axes[0]
    for group in with_wt:
        i = group.colour
        (cm,), (ch,) = mean_band(np.array([[r["summary"][metric]] for r in group.records]))
        (wm,), (wh,) = mean_band(np.array([[r["summary"][f"wt_{metric}"]] for r in group.records]))
        ax.errorbar(cm * 100, wm * 100, xerr=_bar(ch), yerr=_bar(wh), fmt="o", capsize=3, label=group.label,
                    color=line_style(i)["color"])  # fmt: skip
    low, high = ax.get_xlim()
    ax.plot([low, high], [low, high], color="grey", linewidth=0.8)
    ax.set(xlabel=f"Cycle {metric.upper()} (%)", ylabel=f"winning ticket {metric.upper()} (%)")
    return finish(fig, axes)


def plasticity(groups: list[Group], scenario: str) -> Figure | None:
    """The plasticity diagnostics (docs/protocol.md §14) at every task end, averaged over the masked layers:
    dormant fraction (%), effective rank, mean |weight|, feature norm; per group, mean and 95% band."""
    with_rows = [g for g in groups if all(r.get("plasticity") for r in g.records)]
    if not with_rows:
        return None
    fig, grid = plt.subplots(2, 2, figsize=(9.6, 7.2))  # a grid that fits a page, not a 1 x 4 strip
    fig.suptitle(f"{scenario}: plasticity diagnostics at task ends (mean over masked layers)")
    axes = list(grid.flat)
    for group in with_rows:
        i = group.colour
        fields = list(PLASTICITY_FIELDS)
        frames = [pd.DataFrame(r["plasticity"]).groupby("task")[fields].mean() for r in group.records]
        for ax, field in zip(axes, PLASTICITY_FIELDS):
            values = _stack([f[field].tolist() for f in frames])
            percent = field == "dormant_fraction"
            x = np.arange(1, values.shape[1] + 1)
            mean_line(ax, x, values, group.label, i, percent=percent, floor=0.0)  # ranks, norms: >= 0
    for ax, field in zip(axes, PLASTICITY_FIELDS):
        unit = " (%)" if field == "dormant_fraction" else ""
        task_axis(ax, field.replace("_", " ") + unit)
    return finish(fig, axes)


def _transfer(groups: list[Group], scenario: str) -> list[Group]:
    """The groups of a DYNO transfer stream (``ScenarioSpec.show_flops``) whose records have final FLOPs."""
    if not shows_flops(scenario.partition("@")[0]):
        return []
    return [g for g in groups if all("flops" in r["summary"] and "acc" in r["summary"] for r in g.records)]


def accuracy_flops(groups: list[Group], scenario: str) -> Figure | None:
    """Final test accuracy (%) against the final network's inference FLOPs per sample (DYNO paper, its
    Fig. 2): every seed a small point, each row's mean a large one inside its one-sd ellipse (the seeds'
    covariance; none for one seed)."""
    rows = _transfer(groups, scenario)
    if not rows:
        return None
    fig, axes = _figure(f"{scenario}: test accuracy vs inference cost")
    ax, (scale, unit) = axes[0], flops_unit([r["summary"]["flops"] for g in rows for r in g.records])
    for group in rows:
        colour = line_style(group.colour)["color"]
        points = np.array([[r["summary"]["flops"] / scale, 100 * r["summary"]["acc"]] for r in group.records])
        ax.scatter(points[:, 0], points[:, 1], s=12, color=colour, alpha=0.6)
        ax.scatter(*points.mean(0), s=60, color=colour, label=group.label, edgecolor="black", linewidth=0.5)
        if len(points) > 1:
            ax.add_patch(sd_ellipse(points, colour))
    ax.set(xlabel=f"inference {unit} per sample (active network)", ylabel="test accuracy (%)")
    return finish(fig, axes)


def flops_unit(values: Sequence[float]) -> tuple[float, str]:
    """``(1e9, "GFLOPs")`` when the largest of ``values`` reaches a GFLOP, else ``(1e6, "MFLOPs")``."""
    return (1e9, "GFLOPs") if max(values) >= 1e9 else (1e6, "MFLOPs")


def sd_ellipse(points: np.ndarray, colour: str) -> Ellipse:
    """The one-standard-deviation ellipse of ``points`` ``(n, 2)``: centred on their mean, axes along the
    eigenvectors of their covariance, half-lengths the square roots of its eigenvalues."""
    values, vectors = np.linalg.eigh(np.cov(points.T))
    angle = math.degrees(math.atan2(vectors[1, -1], vectors[0, -1]))
    width, height = 2 * np.sqrt(np.maximum(values[::-1], 0.0))
    return Ellipse(points.mean(0), width, height, angle=angle, facecolor=colour, alpha=0.15, edgecolor=colour)


def inference_cost(groups: list[Group], scenario: str) -> Figure | None:
    """The active network's inference FLOPs per sample over training (the records' ``inference_flops``
    steps), per row: mean and 95% band over seeds."""
    rows = [g for g in _transfer(groups, scenario) if all(r.get("inference_flops") for r in g.records)]
    if not rows:
        return None
    fig, axes = _figure(f"{scenario}: inference cost over training")
    scale, unit = flops_unit([f for g in rows for r in g.records for _, f in r["inference_flops"]])
    for group in rows:
        config = group.records[0]["config"]
        x = np.linspace(0, config["tasks"] * config["steps_per_task"], 200)
        values = np.array([_steps_at(r["inference_flops"], x) for r in group.records]) / scale
        mean_line(axes[0], x, values, group.label, group.colour, percent=False, stairs=True, floor=0.0)
    axes[0].set(xlabel="updates", ylabel=f"inference {unit} per sample")
    return finish(fig, axes)


def _steps_at(history: list[list[int]], x: np.ndarray) -> np.ndarray:
    """A step function given as ``[[x_k, y_k], ...]`` (``y_k`` from ``x_k`` on) at the points ``x``."""
    starts, values = np.array(history, dtype=float).T
    return values[np.maximum(np.searchsorted(starts, x, side="right") - 1, 0)]


def layer_changes(groups: list[Group], scenario: str) -> Figure | None:
    """Units grown (up) and pruned (down) in each masked layer over the run, in percent of the layer's
    original width (DYNO paper, its Fig. 3; DYNO rows only): mean over seeds with a 95% interval, which stops
    at zero (a count cannot cross it)."""
    rows = [g for g in _transfer(groups, scenario) if all("dyno" in r for r in g.records)]
    if not rows:
        return None
    fig, axes = _figure(f"{scenario}: units grown and pruned per layer")
    ax, width = axes[0], 0.8 / len(rows)
    for k, group in enumerate(rows):
        grown, pruned = np.array([_layer_totals(r) for r in group.records]).transpose(1, 0, 2)
        x = np.arange(grown.shape[1]) + (k - (len(rows) - 1) / 2) * width
        colour = line_style(group.colour)["color"]
        for values, sign in ((grown, 1), (pruned, -1)):
            mean, half = mean_band(values)
            half = np.nan_to_num(half)
            toward_zero = np.minimum(half, mean)  # a count of units is >= 0: its bar stops at the axis
            error = [toward_zero, half] if sign > 0 else [half, toward_zero]
            shade = 1.0 if sign > 0 else 0.5
            ax.bar(x, sign * mean, width, yerr=error, color=colour, alpha=shade,
                   label=group.label if sign > 0 else None, capsize=2)  # fmt: skip
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="masked layer (grown above 0, pruned below)", ylabel="units, % of the original width")
    return finish(fig, axes)


def _layer_totals(record: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Percent of each layer's original (first recorded) width that DYNO grew and pruned over the run."""
    original = record["dyno"]["active_width"][0]["widths"]
    grown, pruned = [0.0] * len(original), [0.0] * len(original)
    for event in record["dyno"]["events"]:
        grown[event["layer"]] += len(event["grown"])
        pruned[event["layer"]] += len(event["pruned"])
    return ([100 * g / w for g, w in zip(grown, original)], [100 * p / w for p, w in zip(pruned, original)])


def _bar(half: float) -> float | None:
    return None if math.isnan(half) else half * 100


#: Figure name -> plot function, in report order.
FIGURES: dict[str, Callable[[list[Group], str], Figure | None]] = {
    "online_accuracy": online_accuracy,
    "task_accuracy": task_accuracy,
    "active_units": active_units,
    "cohort_parity": cohort_parity,
    "leaderboard": leaderboard_chart,
    "ticket": ticket,
    "plasticity": plasticity,
    "compute": compute,
    "accuracy_flops": accuracy_flops,
    "inference_cost": inference_cost,
    "layer_changes": layer_changes,
}


#: The figures drawn on DYNO's transfer streams only (``ScenarioSpec.show_flops``, docs/protocol.md §17).
TRANSFER_FIGURES = ("accuracy_flops", "inference_cost", "layer_changes")


def by_scenario(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records per ``scenario@variant``, in name order."""
    found: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        found.setdefault(scenario_name(record), []).append(record)
    return dict(sorted(found.items()))


def figures(records: Sequence[dict[str, Any]]) -> list[tuple[str, str, Figure]]:
    """Every figure of ``records``: ``(scenario, figure name, matplotlib Figure)``, skipped ones left out."""
    made, colours = [], colour_map(records)
    for scenario, members in by_scenario(records).items():
        groups = groups_of(members)
        for group in groups:
            group.colour = colours[group.label]
        for name, plot in FIGURES.items():
            fig = plot(groups, scenario)
            if fig is not None:
                made.append((scenario, name, fig))
    return made


def save_atomically(fig: Figure, path: Path, fmt: str) -> Path:
    """``fig`` saved as ``fmt`` to ``path`` atomically (:func:`~plasticity_bench.core.io.atomic_write`:
    the user's umask, no partial file); the canvas grows to hold long tick labels (``bbox_inches``)."""
    return atomic_write(path, lambda stream: fig.savefig(stream, format=fmt, dpi=120, bbox_inches="tight"))


def write_figures(
    records: Sequence[dict[str, Any]], out: Path, extra: Sequence[tuple[str, str, Figure]] = ()
) -> list[Path]:
    """Write every figure of ``records``, then ``extra`` (the comparison's), under ``out`` as
    ``<scenario>_<name>.png`` and ``.svg``; returns the paths written (PNG and SVG of each figure).

    Raises:
        ValueError: for no records.
    """
    if not records:
        raise ValueError("no records to plot")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for scenario, name, fig in [*figures(records), *extra]:
        stem = f"{scenario.replace('@', '-')}_{name}"
        for fmt in FORMATS:
            written.append(save_atomically(fig, out / f"{stem}.{fmt}", fmt))
        plt.close(fig)
    return written
