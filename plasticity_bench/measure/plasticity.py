"""Plasticity diagnostics at every task end (docs/protocol.md §14): per masked layer, on a fixed probe batch,
the tau-dormant fraction (Sokar et al. 2023), the effective rank of the features (Roy & Vetterli 2007, as
used by Kumar et al. 2021 and Dohare et al. 2024), the mean ``|fan-in weight|`` and the mean feature norm.

All four are taken over the layer's *active* units: a unit masked off is switched off, not dormant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from avalanche.core import SupervisedPlugin
from rich.table import Table
from torch import Tensor, nn

from plasticity_bench.core.defaults import eval_batch_size
from plasticity_bench.core.host import Host
from plasticity_bench.core.io import atomic_write_text
from plasticity_bench.core.masks import masked_layers_of
from plasticity_bench.measure.importance import Dormancy
from plasticity_bench.measure.metrics import updates_before
from plasticity_bench.measure.probes import probe, probe_batch, unit_output

#: tau of the dormant fraction: ReDo's default threshold, so the diagnostic counts what ReDo would reset.
DORMANT_TAU = 0.1
#: Rows of the probe batch: the first rows of the task's training data [ours].
PROBE_SIZE = 256
#: Config fields that tell runs apart in the tables.
RUN_KEYS = ["scenario", "strategy", "compactness", "lr", "seed"]
#: Record fields of one row, in table order.
FIELDS = ("dormant_fraction", "effective_rank", "mean_abs_weight", "feature_norm")


def effective_rank(features: Tensor) -> float:
    """``exp(H(p))`` with ``p_i = sigma_i / sum_j sigma_j`` the normalised singular values of ``features``
    ``(N, d)`` (Roy & Vetterli 2007; Dohare et al. 2024, Methods). Between 1 and ``min(N, d)``; 0 for an
    all-zero matrix."""
    sigma = torch.linalg.svdvals(features.double())
    total = sigma.sum()
    if total <= 0:
        return 0.0
    p = sigma / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def dormant_fraction(scores: Tensor, tau: float = DORMANT_TAU) -> float:
    """Fraction of units whose ReDo score ``s_j`` (:class:`~plasticity_bench.measure.importance.Dormancy`) is
    ``<= tau``; NaN for no units."""
    return float((scores <= tau).float().mean()) if scores.numel() else float("nan")


def layer_diagnostics(model: nn.Module, x: Tensor, tau: float = DORMANT_TAU) -> list[dict[str, float]]:
    """The four diagnostics of every masked layer of ``model`` on the batch ``x`` (eval mode), as dicts with
    ``layer``, ``active`` and :data:`FIELDS`. A conv layer's effective rank and feature norm are those of
    its channels' outputs averaged over positions (docs/protocol.md §17, [ours])."""
    p = probe(model, x)
    rows = []
    for layer in masked_layers_of(model):
        active = layer.units.active()
        h = unit_output(p.z[layer.index], p.activations[layer.index])[:, active]  # (B, n_active): Linear
        if h.dim() > 2:  # a conv layer's channels: their mean over positions (B, n_active) [ours]
            h = h.mean(tuple(range(2, h.dim())))
        weights = layer.producer.weight.detach()[active]
        rows.append(
            {
                "layer": layer.index,
                "active": int(active.numel()),
                "dormant_fraction": dormant_fraction(Dormancy()(layer, p)[active], tau),
                "effective_rank": effective_rank(h),
                "mean_abs_weight": float(weights.abs().mean()) if weights.numel() else float("nan"),
                "feature_norm": float(h.norm(dim=1).mean()),
            }
        )
    return rows


class PlasticityDiagnostics(SupervisedPlugin):
    """Records :func:`layer_diagnostics` at the end of every task on the task's first ``size`` training rows
    (the same rows for every strategy of a seed; fewer for large images,
    :func:`~plasticity_bench.core.defaults.eval_batch_size`). Works in any Avalanche ``SupervisedTemplate``.
    ``report()`` gives the record's ``plasticity`` rows: ``task``, ``layer``, ``active``, :data:`FIELDS`;
    :meth:`logged_values` hands the same figures to experiment loggers."""

    def __init__(self, size: int = PROBE_SIZE) -> None:
        super().__init__()
        self.size = size
        self.rows: list[dict[str, Any]] = []
        self.updates: list[int] = []  # per row: the global update count at its task's end
        self._logged = 0

    def after_training_exp(self, strategy: Host, **kwargs: object) -> None:
        shape = tuple(strategy.experience.task.x.shape[1:])  # large images: an evaluation batch's rows
        x, _ = probe_batch(strategy, min(self.size, eval_batch_size(shape)))
        task = strategy.experience.current_experience
        rows = layer_diagnostics(strategy.model, x)
        self.rows += [{"task": task, **row} for row in rows]
        self.updates += [updates_before(strategy, end=True)] * len(rows)

    def logged_values(self) -> list[tuple[str, float, int]]:
        """The rows added since the last call, for experiment loggers:
        ``(f"Plasticity/{field}/Layer{l}", value, updates)`` for every field of :data:`FIELDS`."""
        start, self._logged = self._logged, len(self.rows)
        return [
            (f"Plasticity/{field}/Layer{row['layer']}", float(row[field]), x)
            for row, x in zip(self.rows[start:], self.updates[start:])
            for field in FIELDS
        ]

    def report(self) -> dict[str, Any]:
        return {"plasticity": list(self.rows)}


def plasticity_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Every record's ``plasticity`` rows with the record's scenario, strategy, compactness, lr and seed, one
    row per (record, task, layer); empty when no record has any."""
    rows = [
        {key: r["config"][key] for key in RUN_KEYS} | row for r in records for row in r.get("plasticity", [])
    ]
    return pd.DataFrame(rows)


def last_task_summary(frame: pd.DataFrame, per_seed: bool = False) -> pd.DataFrame:
    """The rows of each run's last task, averaged over seeds (unless ``per_seed``), one row per scenario,
    strategy, compactness, lr and layer."""
    last = frame[frame["task"] == frame.groupby(RUN_KEYS)["task"].transform("max")]
    keys = [k for k in RUN_KEYS if per_seed or k != "seed"] + ["task", "layer"]
    return last.groupby(keys, as_index=False)[["active", *FIELDS]].mean()


def render_plasticity(summary: pd.DataFrame) -> Table:
    """A rich table of :func:`last_task_summary` (dormant fraction in percent; tasks numbered from 1, as
    the figures number them; records and the CSV keep Avalanche's index from 0)."""
    table = Table(title="Plasticity diagnostics at the last task (docs/protocol.md §14; mean over seeds)")
    for column in summary.columns:
        table.add_column(
            column.replace("_", " "), justify="left" if column in ("scenario", "strategy") else "right"
        )
    for row in summary.itertuples(index=False):
        cells = []
        for column, value in zip(summary.columns, row):
            if column == "dormant_fraction":
                cells.append(f"{100 * value:.1f}%")
            elif column == "task":
                cells.append(str(int(value) + 1))
            elif isinstance(value, float) and column not in ("compactness", "lr"):
                cells.append(f"{value:.3g}")
            else:
                cells.append(str(value))
        table.add_row(*cells)
    return table


def write_plasticity_csv(frame: pd.DataFrame, results: Path) -> Path:
    """Every plasticity row to ``results/plasticity.csv`` (written atomically)."""
    path = results / "plasticity.csv"
    atomic_write_text(path, frame.to_csv(index=False))
    return path
