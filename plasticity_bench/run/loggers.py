"""Experiment loggers: ``--logger tensorboard|wandb|csv`` (docs/protocol.md §13).

Each run gets its own logger run, named by its config (:func:`run_name`), under ``<out>/logs/<logger>/``.
TensorBoard goes through Avalanche's own ``TensorboardLogger``. Weights & Biases is :class:`WandbLogger`
(Avalanche's ``WandBLogger`` calls APIs that recent wandb releases removed), offline by default
(``wandb sync`` uploads later; ``WANDB_MODE=online`` streams). CSV is :class:`MetricCSVLogger`, since
Avalanche's ``CSVLogger`` writes only its own fixed metric names.

What is logged is what the run's metrics emit at task boundaries (:mod:`plasticity_bench.measure.metrics`):
the binned online accuracy and training loss, each task's mean, TAOA and Early Task TAA so far, active units
per layer, checkpoint ACC, the plasticity diagnostics, the cohort log-parities and DYNO's widths
(``logged_values`` of the plugins). Every value's x is the global update count. Nothing is read inside a
task, so logging adds no per-step host synchronisation. At the run's end (:func:`log_run_summary`) its
config and final figures go to TensorBoard's HParams dashboard, W&B's run summary and ``final/`` CSV rows.
The winning ticket's retraining is not logged (its figures are in the record).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avalanche.logging import BaseLogger
from torch.utils.tensorboard.summary import hparams

from plasticity_bench.measure.metrics import CURVE_BIN
from plasticity_bench.run.records import run_key, safe_name

LOGGERS = ("tensorboard", "wandb", "csv")
#: The run's own columns in every CSV row (so that rows of several runs concatenate), then the value's.
RUN_COLUMNS = ("run", "scenario", "strategy", "compactness", "lr", "seed")
CSV_COLUMNS = (*RUN_COLUMNS, "metric", "x", "value")
WANDB_PROJECT = "plasticity_bench"


def run_name(config: dict[str, Any]) -> str:
    """A logger run's name: ``scenario[@variant]_strategy_c0.5_lr0.001_s2_<key[:8]>`` (path-safe)."""
    scenario = config["scenario"] + (f"@{config['variant']}" if config.get("variant") else "")
    fields = (
        f"{scenario}_{config['strategy']}_c{config['compactness']:g}_lr{config['lr']:g}_s{config['seed']}"
    )
    return safe_name(f"{fields}_{run_key(config)[:8]}")


def parse_loggers(names: Sequence[str] | None) -> tuple[str, ...]:
    """``--logger`` values (repeatable, or comma lists) as a tuple without repeats.

    Raises:
        ValueError: for a name outside :data:`LOGGERS`.
    """
    found: list[str] = []
    for name in (n.strip() for given in names or () for n in given.split(",")):
        if name not in LOGGERS:
            raise ValueError(f"--logger {name!r}: choose from {', '.join(LOGGERS)}")
        if name not in found:
            found.append(name)
    return tuple(found)


class MetricCSVLogger(BaseLogger):
    """Appends every metric value as a row of :data:`CSV_COLUMNS` to ``path`` (long format, for pandas):
    the run (its name, scenario, strategy, compactness, lr and seed from ``config``), then
    ``metric,x,value``.

    The header is written when the file is new; rows are flushed after every batch of values (one per
    task boundary), so a killed run keeps the rows of the tasks it finished.
    """

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        super().__init__()
        self.run = (run_name(config), *(config.get(k) for k in RUN_COLUMNS[1:]))
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        self._file = self.path.open("a", newline="")
        self._writer = csv.writer(self._file)
        if fresh:
            self._writer.writerow(CSV_COLUMNS)

    def log_single_metric(self, name: str, value: Any, x_plot: int) -> None:
        if isinstance(value, int | float):
            self._writer.writerow((*self.run, name, x_plot, value))

    def log_metrics(self, metric_values: list[Any]) -> None:
        super().log_metrics(metric_values)
        self._file.flush()

    def log_summary(self, final: dict[str, float], x: int) -> None:
        """The run's final figures, one row each at update ``x``."""
        for name, value in final.items():
            self._writer.writerow((*self.run, name, x, value))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class Recording:
    """What a run records besides its results, shared by the runs of a sweep (not part of the run key):
    the learning-curve bin of the record (``curve_bin`` updates per point, docs/protocol.md §1) and the
    experiment loggers (:data:`LOGGERS`) writing under ``log_dir``.

    Raises:
        ValueError: for ``curve_bin < 1``, an unknown logger, or loggers without ``log_dir``.
    """

    curve_bin: int = CURVE_BIN
    loggers: tuple[str, ...] = ()
    log_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.curve_bin < 1:
            raise ValueError(f"--curve-bin {self.curve_bin}: must be >= 1 update")
        parse_loggers(self.loggers)
        if self.loggers and self.log_dir is None:
            raise ValueError("loggers need a log folder")

    def where(self) -> list[str]:
        """One line per logger: where its runs are and the command that shows or uploads them."""
        root = Path(self.log_dir or ".")
        hints = {
            "tensorboard": f"tensorboard: tensorboard --logdir {root / 'tensorboard'}",
            "wandb": f"wandb ({os.environ.get('WANDB_MODE', 'offline')}): wandb sync "
            f"{root / 'wandb' / 'wandb'}/offline-run-*",
            "csv": f"csv: {root / 'csv'}/*.csv (run columns, then metric,x,value)",
        }
        return [hints[name] for name in self.loggers]

    @contextmanager
    def logging(self, config: dict[str, Any], fresh: bool = True) -> Iterator[list[BaseLogger]]:
        """The loggers of one run (named by :func:`run_name`), closed on exit. ``fresh`` (a run that starts
        from its first task, e.g. under ``--force``): the run's earlier CSV file and TensorBoard folder are
        removed first, so the logs hold one run, not two appended; a run resumed from its checkpoint
        appends to them."""
        if fresh and self.log_dir is not None:
            name = run_name(config)
            Path(self.log_dir, "csv", f"{name}.csv").unlink(missing_ok=True)
            shutil.rmtree(Path(self.log_dir, "tensorboard", name), ignore_errors=True)
        loggers = [_LOGGER_FACTORIES[name](Path(self.log_dir), config) for name in self.loggers]
        try:
            yield loggers
        finally:
            close_loggers(loggers)


def hparam_values(config: dict[str, Any]) -> dict[str, str | int | float | bool]:
    """A run's config as TensorBoard hparams: every field and ``option.<name>`` (None as ``"none"``, a
    mapping as its JSON)."""
    flat = {k: v for k, v in config.items() if k != "options"}
    flat.update({f"option.{k}": v for k, v in sorted((config.get("options") or {}).items())})
    return {
        k: v if isinstance(v, str | int | float | bool) else ("none" if v is None else json.dumps(v))
        for k, v in flat.items()
    }


def log_run_summary(loggers: Sequence[BaseLogger], config: dict[str, Any], summary: dict[str, float]) -> None:
    """A finished cycle run's final figures (the record's summary, finite numbers only) beside its config:
    TensorBoard's HParams (its experiment and session summaries, and ``final/<metric>`` scalars, in the
    run's own event file), W&B's run summary, CSV rows ``final/<metric>``; x is the run's last update."""
    final = {
        f"final/{k}": float(v) for k, v in summary.items() if isinstance(v, int | float) and math.isfinite(v)
    }
    end = config["tasks"] * config["steps_per_task"]
    for logger in loggers:
        if hasattr(logger, "writer"):  # Avalanche's TensorboardLogger: into the run's own event file
            for name, value in final.items():
                logger.writer.add_scalar(name, value, end)
            for summary in hparams(hparam_values(config), final):
                logger.writer.file_writer.add_summary(summary)
        elif callable(getattr(logger, "log_summary", None)):
            logger.log_summary(final, end)


def close_loggers(loggers: Sequence[BaseLogger]) -> None:
    """Flush and close each logger's files (TensorBoard writer, W&B run, CSV file)."""
    for logger in loggers:
        if hasattr(logger, "writer"):
            logger.writer.close()
        elif callable(getattr(logger, "close", None)):
            logger.close()


def _tensorboard(log_dir: Path, config: dict[str, Any]) -> BaseLogger:
    from avalanche.logging import TensorboardLogger

    return TensorboardLogger(tb_log_dir=log_dir / "tensorboard" / run_name(config))


class WandbLogger(BaseLogger):
    """One Weights & Biases run per run, every value logged against ``updates`` (the global update count).

    Ours rather than Avalanche's ``WandBLogger``, which calls APIs that recent wandb releases removed
    (``wandb.util.generate_id``, ``wandb.viz``). ``mode``: ``offline`` (default; ``wandb sync`` uploads
    later) or ``online``. wandb's own console output (about 25 lines per run) is off unless ``WANDB_SILENT``
    is set; :meth:`Recording.where` tells the user where the runs are and how to upload them.
    """

    def __init__(self, folder: Path, config: dict[str, Any], mode: str) -> None:
        super().__init__()
        import wandb

        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=WANDB_PROJECT, name=run_name(config), id=run_key(config)[:16], dir=folder, config=config,
            mode=mode, reinit="finish_previous", group=wandb_group(config), tags=wandb_tags(config),
            settings=wandb.Settings(silent="WANDB_SILENT" not in os.environ),
        )  # fmt: skip
        self.run.define_metric("updates")
        self.run.define_metric("*", step_metric="updates")

    def log_single_metric(self, name: str, value: Any, x_plot: int) -> None:
        if isinstance(value, int | float):
            self.run.log({name: value, "updates": x_plot})

    def log_summary(self, final: dict[str, float], x: int) -> None:
        """The run's final figures into its W&B summary (the runs table's columns)."""
        self.run.summary.update(final)

    def close(self) -> None:
        self.run.finish()


def wandb_group(config: dict[str, Any]) -> str:
    """A W&B group per leaderboard row but the seed: ``scenario[@variant]/strategy/c0.5/lr0.001``."""
    scenario = config["scenario"] + (f"@{config['variant']}" if config.get("variant") else "")
    return f"{scenario}/{config['strategy']}/c{config['compactness']:g}/lr{config['lr']:g}"


def wandb_tags(config: dict[str, Any]) -> list[str]:
    """W&B tags to filter by: scenario, strategy and each modifier, compactness, seed (64 characters at
    most each, as wandb requires)."""
    base, *modifiers = str(config["strategy"]).split("+")
    tags = [config["scenario"], base, *modifiers, f"c={config['compactness']:g}", f"seed={config['seed']}"]
    return [tag[:64] for tag in tags]


def _wandb(log_dir: Path, config: dict[str, Any]) -> BaseLogger:
    return WandbLogger(log_dir / "wandb", config, os.environ.get("WANDB_MODE", "offline"))


def _csv(log_dir: Path, config: dict[str, Any]) -> BaseLogger:
    return MetricCSVLogger(log_dir / "csv" / f"{run_name(config)}.csv", config)


_LOGGER_FACTORIES = {"tensorboard": _tensorboard, "wandb": _wandb, "csv": _csv}
