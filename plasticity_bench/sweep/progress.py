"""Sweep progress for the terminal and for logs.

On a terminal, a ``rich`` progress bar. When the output is not a terminal (a batch job writing to a file,
``nohup``, CI), a bar cannot redraw and ``rich`` prints nothing until the end, so :class:`ProgressLines`
prints plain lines instead: at most one every ``interval`` seconds (and one when the sweep ends), each
with what is running, the work done, the rate and the estimated time left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: Least seconds between two progress lines when the output is not a terminal.
LINE_INTERVAL = 5.0


def duration(seconds: float) -> str:
    """``"1 h 05 min"``, ``"3 min 20 s"`` or ``"45 s"``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


class ProgressLines:
    """Plain progress lines: ``"<label> | 1,234/9,000 updates (14%) | 850 updates/s | ETA 9 min 08 s"``.

    Args:
        console: where to print. total: work of the whole sweep, in ``unit``. interval: least seconds
            between lines. clock: seconds (``time.monotonic``; replaceable in tests).
    """

    def __init__(
        self,
        console: Console,
        total: float,
        unit: str,
        interval: float = LINE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console, self.total, self.unit, self.interval, self.clock = console, total, unit, interval, clock
        self.done, self.label = 0.0, ""
        self.start = self.clock()
        self.last = self.start

    def update(self, label: str | None = None, advance: float = 0.0, completed: float | None = None) -> None:
        """New label and/or work done; prints a line when ``interval`` has passed since the last one."""
        self.label = self.label if label is None else label
        self.done = self.done + advance if completed is None else completed
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self.console.print(self.line(now), highlight=False, soft_wrap=True)

    def rate(self, now: float) -> float:
        """Work done per second since the start."""
        return self.done / max(now - self.start, 1e-9)

    def line(self, now: float) -> str:
        rate = self.rate(now)
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        left = f"ETA {duration((self.total - self.done) / rate)}" if rate > 0 else "ETA unknown"
        work = f"{self.done:,.0f}/{self.total:,.0f} {self.unit}{share}"
        return f"{self.label} | {work} | {rate:,.1f} {self.unit}/s | {left}"

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        now = self.clock()
        took, rate = duration(now - self.start), self.rate(now)
        summary = f"{self.done:,.0f} {self.unit} in {took} ({rate:,.1f} {self.unit}/s)"
        self.console.print(f"{self.label} | finished: {summary}", highlight=False, soft_wrap=True)


class ProgressBar:
    """The ``rich`` bar with :class:`ProgressLines`' interface (for terminals)."""

    def __init__(self, console: Console, total: float, unit: str) -> None:
        columns = (
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        self.progress = Progress(*columns, TextColumn(unit), console=console, transient=False)
        self.bar = self.progress.add_task("", total=total)

    def update(self, label: str | None = None, advance: float = 0.0, completed: float | None = None) -> None:
        self.progress.update(self.bar, description=label, advance=advance, completed=completed)

    def __enter__(self) -> ProgressBar:
        self.progress.__enter__()
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.progress.__exit__(kind, error, trace)


def sweep_progress(console: Console, total: float, unit: str) -> ProgressBar | ProgressLines:
    """A bar on a terminal, plain lines otherwise (see the module docstring)."""
    return ProgressBar(console, total, unit) if console.is_terminal else ProgressLines(console, total, unit)
