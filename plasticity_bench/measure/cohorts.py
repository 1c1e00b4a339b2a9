"""Newborn-cohort diagnostics (LC26 App. B.3; docs/protocol.md §9): are newborn units forward-active but
backward-starved?

Per structural edit and masked layer, two cohorts are compared:
Grow: A = newborn (switched on by the edit), B = incumbent (active before it).
Prune: A = kept (active after it), B = pruned (switched off by it).

Per unit, on one mini-batch: ``act(j)`` = fraction of ``act(z_j) > tau`` (``tau = 0.05``) and
``grad(j)`` = mean ``|dL/dz_j|``. Both are computed *as if the unit were active* (for active units that is
their real value; pruned units are masked, so their real post-activation and gradient are zero, and
docs/protocol.md §9 would give log-parity ``+inf`` for every Prune edit). Parity
``R = mean_A / (mean_B + 1e-8)``, log-parity ``log R`` (``-inf`` when ``mean_A = 0``, NaN when a cohort
is empty).

Snapshots, for the cohorts of edit ``e`` (our reading of docs/protocol.md §9, where a cycle is one edit
plus the training segment after it):

- ``post``: right after edit ``e``, before any update, on the edit's decision batch (the task's first
  mini-batch, the one the edit was scored on).
- ``exit``: end of cycle ``e``, where edit ``e+1`` is decided: just before edit ``e+1``, on its decision
  batch. After the last edit: at the end of the run, on the last training mini-batch.
- ``end``: end of the training segment that follows the exit point, i.e. of cycle ``e+1``: the moment of
  ``exit`` of edit ``e+1`` (just before edit ``e+2``, or the end of the run), same batch. The last edit
  has no ``end``. Cohort membership stays that of edit ``e``.
- ``curve``: every ``every`` updates after edit ``e`` (default 100), for at most ``horizon`` updates
  (default 2000 [ours], about Two-Speed's window) and never past the next edit, on the mini-batch just
  trained on (after its update).

Probes attach forward hooks only for the snapshot and remove them (``probes.probe``); ordinary steps
cost one integer comparison.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from avalanche.core import SupervisedPlugin
from rich.table import Table
from torch import Tensor, nn

from plasticity_bench.core.host import Host
from plasticity_bench.core.io import atomic_write_text
from plasticity_bench.core.masks import masked_layers_of
from plasticity_bench.core.options import Option
from plasticity_bench.measure.probes import activation_frequency, as_if_active_gradient, probe, probe_batch

PARITY_EPS = 1e-8
CURVE_EVERY = 100
CURVE_HORIZON = 2000  # [ours]: docs/protocol.md §9 does not bound the post-birth curves
DIAGNOSTICS = Option("diagnostics", "bool", True, "record the cohort diagnostics of structural edits")
DIAG_EVERY = Option("diag_every", "int", CURVE_EVERY, "updates between post-birth curve points", minimum=1)
DIAG_HORIZON = Option(
    "diag_horizon", "int", CURVE_HORIZON, "updates after an edit covered by its curve", minimum=1, ours=True
)
DIAGNOSTIC_OPTIONS = (DIAGNOSTICS, DIAG_EVERY, DIAG_HORIZON)
SNAPSHOT_ORDER = {"post": 0, "curve": 1, "exit": 2, "end": 3}
CONFIG_COLUMNS = ("scenario", "variant", "strategy", "compactness", "lr", "seed")
ROW_COLUMNS = (
    "cycle", "task", "layer", "snapshot", "step", "steps_after_edit", "cohort_a", "cohort_b", "n_a", "n_b",
    "act_a", "act_b", "grad_a", "grad_b", "act_log_parity", "grad_log_parity",
)  # fmt: skip
CSV_NAME = "diagnostics.csv"
HEADERS = {
    "compactness": "c",
    "cycle": "edit",
    "steps_after_edit": "steps",
    "act_log_parity": "act logR",
    "grad_log_parity": "grad logR",
}


def log_parity(a: Tensor, b: Tensor) -> float:
    """``log(mean(a) / (mean(b) + 1e-8))`` for per-unit values of cohorts A and B (docs/protocol.md §9).

    ``a``, ``b``: float tensors ``(n_a,)``, ``(n_b,)``. Returns NaN if a cohort is empty, ``-inf`` if
    ``mean(a) == 0``.
    """
    if a.numel() == 0 or b.numel() == 0:
        return math.nan
    ratio = float(a.float().mean()) / (float(b.float().mean()) + PARITY_EPS)
    return math.log(ratio) if ratio > 0 else -math.inf


@dataclass(frozen=True)
class UnitStats:
    """Per-layer unit statistics on one mini-batch: ``act[l]``, ``grad[l]`` float32 ``(d_l,)``."""

    act: list[Tensor]
    grad: list[Tensor]


def unit_statistics(model: nn.Module, x: Tensor, y: Tensor) -> UnitStats:
    """``act(j)`` and ``grad(j)`` of every unit of every masked layer on ``(x, y)``, as if active (§9).

    One probe (eval mode; hooks removed afterwards). ``x``: ``(B, *input_shape)``; ``y``: ``(B,)`` int64.
    """
    p = probe(model, x, y)
    act = [activation_frequency(z, a) for z, a in zip(p.z, p.activations)]
    grad = [as_if_active_gradient(z, g, a) for z, g, a in zip(p.z, p.grad_h, p.activations)]
    return UnitStats(act, grad)


@dataclass(frozen=True)
class Cohort:
    """The two cohorts of one edit in one masked layer (unit indices, int64)."""

    cycle: int
    task: int
    layer: int
    step: int
    a: Tensor
    b: Tensor
    names: tuple[str, str]

    def row(self, stats: UnitStats, snapshot: str, step: int) -> dict[str, Any]:
        """One diagnostics row: cohort means and log-parities at ``snapshot``, taken at global ``step``."""
        act, grad = stats.act[self.layer], stats.grad[self.layer]
        a, b = self.a.to(act.device), self.b.to(act.device)
        return {
            "cycle": self.cycle,
            "task": self.task,
            "layer": self.layer,
            "snapshot": snapshot,
            "step": step,
            "steps_after_edit": step - self.step,
            "cohort_a": self.names[0],
            "cohort_b": self.names[1],
            "n_a": int(a.numel()),
            "n_b": int(b.numel()),
            "act_a": _mean(act[a]),
            "act_b": _mean(act[b]),
            "grad_a": _mean(grad[a]),
            "grad_b": _mean(grad[b]),
            "act_log_parity": log_parity(act[a], act[b]),
            "grad_log_parity": log_parity(grad[a], grad[b]),
        }


def _mean(values: Tensor) -> float:
    return float(values.mean()) if values.numel() else math.nan


def edit_cohorts(model: nn.Module, grows: bool, cycle: int, step: int, entries: list[dict]) -> list[Cohort]:
    """Cohorts of one edit from its ``edit_log`` entries (``task``, ``layer``, ``units``), after the edit.

    Grow: A = the entry's units (newborn), B = the other active units (incumbents). Prune: A = the active
    units (kept), B = the entry's units (pruned).
    """
    layers = masked_layers_of(model)
    cohorts = []
    for entry in entries:
        units = layers[int(entry["layer"])].units
        edited = torch.as_tensor(entry["units"], dtype=torch.long)
        active = units.active().cpu()
        if grows:
            others = active[~torch.isin(active, edited)]
            a, b, names = edited, others, ("newborn", "incumbent")
        else:
            a, b, names = active, edited, ("kept", "pruned")
        cohorts.append(Cohort(cycle, int(entry["task"]), int(entry["layer"]), step, a, b, names))
    return cohorts


@dataclass
class UpdateClock:
    """The update count of cohort diagnostics and the first count at which a curve point may be due.

    One per plugin in a lone run; one shared by every run's plugin in a run-batch (docs/protocol.md §12),
    so a step costs one increment and one comparison for the whole batch.
    """

    step: int = 0
    due: float = math.inf


class CohortDiagnostics(SupervisedPlugin):
    """Records docs/protocol.md §9 cohort diagnostics of a structural plugin's edits (see the module
    docstring).

    Registers itself as an observer of ``structural`` (a
    :class:`~plasticity_bench.strategies.base.StructuralPlugin`).
    ``rows`` holds one dict per (edit, layer, snapshot) with keys ``cycle``, ``task``, ``layer``,
    ``snapshot``, ``step`` (global update count), ``steps_after_edit``, ``cohort_a``/``cohort_b``,
    ``n_a``/``n_b``, ``act_a``/``act_b``/``grad_a``/``grad_b`` (cohort means; act a fraction, grad in
    loss units per pre-activation unit) and ``act_log_parity``/``grad_log_parity``.

    Args:
        structural: the plugin whose edits are diagnosed (its ``grows`` picks the cohort names).
        every: updates between post-birth curve points (0: no curves). horizon: curve length in updates.

    Raises:
        ValueError: for negative ``every`` or ``horizon``.
    """

    def __init__(self, structural: Any, every: int = CURVE_EVERY, horizon: int = CURVE_HORIZON) -> None:
        super().__init__()
        if every < 0 or horizon < 0:
            raise ValueError(f"diagnostics need every >= 0 and horizon >= 0 (got {every}, {horizon})")
        self.structural, self.every, self.horizon = structural, every, horizon
        self.n_tasks = structural.config.n_tasks
        structural.observers.append(self)
        self.cohorts: dict[int, list[Cohort]] = {}
        self.rows: list[dict[str, Any]] = []
        self.clock = UpdateClock()
        self._logged = 0  # rows already given to loggers
        self._curve: tuple[int, int] | None = None  # (cycle, next global step) of the live curve

    @property
    def step(self) -> int:
        """Updates so far (global over tasks)."""
        return self.clock.step

    def snapshot(self, strategy: Host, x: Tensor, y: Tensor, which: dict[int, str]) -> None:
        """Probe once on ``(x, y)``; add a row per cohort of the cycles in ``which`` (cycle -> snapshot)."""
        chosen = [(c, name) for cycle, name in which.items() for c in self.cohorts.get(cycle, [])]
        if not chosen:
            return
        stats = unit_statistics(strategy.model, x, y)
        self.rows += [cohort.row(stats, name, self.step) for cohort, name in chosen]

    def edit_starting(self, strategy: Host, cycle: int) -> None:
        """Exit of the previous edit's cohorts, End of the one before, on this edit's decision batch."""
        self._curve = None
        self.snapshot(strategy, *probe_batch(strategy), {cycle - 1: "exit", cycle - 2: "end"})
        self.cohorts.pop(cycle - 2, None)

    def edit_finished(self, strategy: Host, cycle: int, entries: list[dict]) -> None:
        """Form the edit's cohorts and take the Post snapshot."""
        self.cohorts[cycle] = edit_cohorts(strategy.model, self.structural.grows, cycle, self.step, entries)
        self.snapshot(strategy, *probe_batch(strategy), {cycle: "post"})
        if self.every and self.cohorts[cycle]:
            self._schedule((cycle, self.step + self.every))

    def _schedule(self, curve: tuple[int, int] | None) -> None:
        self._curve = curve
        if curve is not None:
            self.clock.due = min(self.clock.due, curve[1])

    def _curve_point(self, strategy: Host) -> None:
        """The live curve's point when it is due now, and the next one scheduled."""
        if self._curve is None or self.step != self._curve[1]:
            self._schedule(self._curve)
            return
        cycle, due = self._curve
        self.snapshot(strategy, strategy.mb_x, strategy.mb_y, {cycle: "curve"})
        birth = self.cohorts[cycle][0].step
        self._schedule((cycle, due + self.every) if due + self.every - birth <= self.horizon else None)

    @staticmethod
    def tick(members: list[tuple[CohortDiagnostics, Any]]) -> None:
        """Count one update on the members' shared clock; when some curve may be due, each member
        (``(plugin, strategy or run view)``) takes its point and the clock learns the next due count."""
        clock = members[0][0].clock
        clock.step += 1
        if clock.step < clock.due:
            return
        clock.due = math.inf
        for plugin, strategy in members:
            plugin._curve_point(strategy)

    def after_training_iteration(self, strategy: Host, **kwargs: object) -> None:
        """Count the update; take a curve point when one is due (one comparison otherwise)."""
        self.tick([(self, strategy)])

    @staticmethod
    def for_runs(members: list[tuple[CohortDiagnostics, Any]], net: Any) -> CohortDiagnosticsRuns:
        """The cohort diagnostics of a run-batch as one per-step hook (:class:`CohortDiagnosticsRuns`)."""
        return CohortDiagnosticsRuns(members)

    def after_training_exp(self, strategy: Host, **kwargs: object) -> None:
        """At the end of the run: Exit of the last edit's cohorts, End of the one before."""
        if strategy.experience.current_experience != self.n_tasks - 1:
            return
        last = self.structural.cycle - 1
        self.snapshot(strategy, strategy.mb_x, strategy.mb_y, {last: "exit", last - 1: "end"})
        self._curve = None

    def report(self) -> dict[str, Any]:
        """What goes into the run record: ``{"diagnostics": rows}``."""
        return {"diagnostics": list(self.rows)}

    def logged_values(self) -> list[tuple[str, float, int]]:
        """The log-parities of the rows added since the last call, for experiment loggers:
        ``(f"Parity/{act|grad}/Layer{l}/{snapshot}", value, step)``; non-finite values are left out. A value
        whose tag already has one at its step (two edits at one task boundary) gets the edit's number in its
        tag (``.../post/edit3``), so that no two values share a tag and an x."""
        start, self._logged = self._logged, len(self.rows)
        found, tagged = [], set()  # rows of one step are made at one task boundary: logged in one call
        for row in self.rows[start:]:
            for kind in ("act", "grad"):
                if not math.isfinite(row[f"{kind}_log_parity"]):
                    continue
                tag = f"Parity/{kind}/Layer{row['layer']}/{row['snapshot']}"
                if (tag, row["step"]) in tagged:
                    tag = f"{tag}/edit{row['cycle']}"
                tagged.add((tag, row["step"]))
                found.append((tag, row[f"{kind}_log_parity"], row["step"]))
        return found


class CohortDiagnosticsRuns:
    """The :class:`CohortDiagnostics` of the runs of a batch as one per-step hook (docs/protocol.md §12):
    their plugins share one :class:`UpdateClock` (all runs of a batch take the same updates), so a step is
    one increment and one comparison for the batch; a run's plugin is called only when one of the runs may
    have a curve point due.

    Args:
        members: ``(plugin, run view)`` pairs, all at the same update count.
    """

    def __init__(self, members: list[tuple[CohortDiagnostics, Any]]) -> None:
        clock = UpdateClock(members[0][0].step, min(plugin.clock.due for plugin, _ in members))
        for plugin, _ in members:
            plugin.clock = clock
        self.members = members

    def after_training_iteration(self) -> None:
        CohortDiagnostics.tick(self.members)


def diagnostics_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """All diagnostics rows of ``records``, each with the run's config columns (:data:`CONFIG_COLUMNS`).

    Columns: :data:`CONFIG_COLUMNS`, then :data:`ROW_COLUMNS`, then any other row keys. Records without
    diagnostics (Dense, DYNO, older records) contribute nothing; no rows give an empty frame.
    """
    rows = [
        {**{k: record["config"].get(k) for k in CONFIG_COLUMNS}, **row}
        for record in records
        for row in record.get("diagnostics") or []
    ]
    columns = [*CONFIG_COLUMNS, *ROW_COLUMNS]
    columns += sorted({k for row in rows for k in row} - set(columns))
    return pd.DataFrame(rows, columns=columns)


def summarize(frame: pd.DataFrame, per_seed: bool = False, curves: bool = False) -> pd.DataFrame:
    """Mean log-parities over seeds per (run config, cycle, layer, snapshot[, steps_after_edit]).

    ``per_seed`` keeps seeds apart; ``curves`` keeps the post-birth curve rows (one per curve point).
    Output columns: the keys, ``seeds`` (count), ``act_log_parity``, ``grad_log_parity``; rows in
    (config, cycle, layer, snapshot order post < curve < exit < end, steps_after_edit) order.
    """
    if frame.empty:
        return frame
    data = frame if curves else frame[frame["snapshot"] != "curve"]
    keys = [k for k in CONFIG_COLUMNS if per_seed or k != "seed"]
    keys += ["cycle", "layer", "snapshot", "steps_after_edit"]
    data = data.assign(variant=data["variant"].fillna(""))
    table = (
        data.groupby(keys, sort=False)
        .agg(
            seeds=("seed", "nunique"),
            act_log_parity=("act_log_parity", "mean"),
            grad_log_parity=("grad_log_parity", "mean"),
        )
        .reset_index()
    )
    order = table["snapshot"].map(SNAPSHOT_ORDER)
    table = table.assign(_order=order).sort_values([*keys[:-2], "_order", "steps_after_edit"], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)


def render_diagnostics(
    table: pd.DataFrame, title: str = "Cohort log-parity (docs/protocol.md §9)"
) -> list[Table]:
    """Rich tables of :func:`summarize` output, one per run configuration (log-parities with 3 decimals;
    0 = parity), so each fits a terminal: the configuration is in the table's title.

    Short headers: ``edit`` cycle, ``steps`` updates since the edit, ``act logR`` / ``grad logR`` the
    log-parities (A over B: newborn/incumbent for Grow, kept/pruned for Prune).
    """
    group_keys = [k for k in CONFIG_COLUMNS if k in table.columns]
    columns = [c for c in table.columns if c not in group_keys]
    views = []
    for key, rows in table.groupby(group_keys, sort=False):
        named = dict(zip(group_keys, key))
        label = ", ".join(f"{HEADERS.get(k, k)}={v}" for k, v in named.items() if v not in ("", None))
        view = Table(title=f"{title}: {label}")
        for column in columns:
            view.add_column(HEADERS.get(column, column), justify="left" if column == "snapshot" else "right")
        for _, row in rows.iterrows():
            view.add_row(*[_cell(row[c]) for c in columns])
        views.append(view)
    return views


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def write_diagnostics_csv(frame: pd.DataFrame, out: Path) -> Path:
    """Write ``frame`` (per-seed rows, curves included) to ``out/diagnostics.csv`` atomically."""
    return atomic_write_text(Path(out) / CSV_NAME, frame.to_csv(index=False))
