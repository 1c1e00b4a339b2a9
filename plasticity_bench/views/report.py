"""One self-contained HTML report of a results folder: ``plasticity-bench report RESULTS``
(docs/protocol.md §13).

``report.html`` holds, with nothing fetched from elsewhere (it opens from disk, no server): the leaderboard
table (percent, mean ± 95% CI over seeds, LC26's figures where comparable), every figure of
:mod:`plasticity_bench.views.plots` embedded as a PNG data URI, the code versions and protocol versions of the
records, the data sources, and the config of every run. A small inline script counts the figures that
loaded and writes the count into ``body[data-figures-loaded]`` (the headless-browser test reads it).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from plasticity_bench.core.io import atomic_write_text
from plasticity_bench.leaderboard.aggregate import aggregate
from plasticity_bench.leaderboard.compare import Comparison, compare
from plasticity_bench.leaderboard.paper import attach_reference
from plasticity_bench.leaderboard.tables import table_cells
from plasticity_bench.run.records import code_version
from plasticity_bench.views.comparison import comparison_figures
from plasticity_bench.views.plots import figures

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } figure { margin: 1.5em 0; } img { max-width: 100%; }
figcaption { font-size: 0.9em; color: #555; } code { font-size: 0.9em; }
"""
SCRIPT = """
window.addEventListener("load", () => {
  const images = Array.from(document.querySelectorAll("img.figure"));
  const loaded = images.filter((img) => img.complete && img.naturalWidth > 0).length;
  document.body.dataset.figuresLoaded = String(loaded);
});
"""
CONFIG_COLUMNS = ("scenario", "variant", "strategy", "compactness", "lr", "seed", "tasks", "steps_per_task",
                  "batch_size", "model", "winning_ticket", "device")  # fmt: skip


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], css_id: str) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{css_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _png_uri(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure_html(made: list[tuple[str, str, Any]]) -> str:
    parts = []
    for scenario, name, fig in made:
        caption = f"{scenario}: {name.replace('_', ' ')}"
        alt = html.escape(caption)
        parts.append(
            f'<figure><img class="figure" alt="{alt}" src="{_png_uri(fig)}">'
            f"<figcaption>{alt}</figcaption></figure>"
        )
    return "\n".join(parts)


def _versions(records: Sequence[dict[str, Any]]) -> list[list[str]]:
    seen: dict[tuple[str, ...], int] = {}
    for record in records:
        code = record.get("code") or {}
        versions = record.get("versions") or {}
        fields = [code.get(k) for k in ("package", "commit", "dirty", "protocol")]
        key = tuple(str(v) for v in [*fields, versions.get("torch"), versions.get("avalanche-lib")])
        seen[key] = seen.get(key, 0) + 1
    return [[*key, str(n)] for key, n in seen.items()]


def _sources(records: Sequence[dict[str, Any]]) -> list[list[str]]:
    seen: dict[tuple[str, str], int] = {}
    for record in records:
        data = record.get("data") or {}
        key = (f"{record['config']['scenario']}", str(data.get("source")))
        seen[key] = seen.get(key, 0) + 1
    return [[*key, str(n)] for key, n in sorted(seen.items())]


def render_report(
    records: Sequence[dict[str, Any]], title: str = "plasticity_bench report", baseline: str | None = None
) -> str:
    """The report of ``records`` as one HTML document (see the module docstring); with ``baseline``, the
    comparison with it (its table and :mod:`plasticity_bench.views.comparison`'s figures) too.

    Raises:
        ValueError: for no records.
    """
    if not records:
        raise ValueError("no records to report")
    headers, rows, gaps = short_protocol(*table_cells(attach_reference(aggregate(records))))
    comparison = compare(records, baseline) if baseline is not None else None
    made = [*figures(records), *comparison_figures(records, comparison)]
    configs = sorted(
        ([str(r["config"].get(c)) for c in CONFIG_COLUMNS] + [r["key"][:16]] for r in records),
        key=lambda row: row,
    )
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    current = code_version()
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(records)} runs; made {now} by plasticity_bench {html.escape(str(current['package']))} "
        f"(protocol {current['protocol']}). Ours: mean ± 95% CI over seeds (Student t).</p>",
        "<h2>Leaderboard</h2>",
        _table(headers, rows, "leaderboard"),
        _notes(gaps),
        *_comparison_html(comparison, baseline),
        f"<h2>Figures</h2><p>{len(made)} figures; lines are means over seeds with 95% bands.</p>",
        _figure_html(made),
        "<h2>Code</h2>",
        _table(
            ["package", "commit", "dirty", "protocol", "torch", "avalanche-lib", "runs"],
            _versions(records),
            "code",
        ),
        "<h2>Data sources</h2>",
        _table(["scenario", "source", "runs"], _sources(records), "data"),
        "<h2>Runs</h2><details><summary>config of every run</summary>",
        _table([*CONFIG_COLUMNS, "key"], configs, "runs"),
        "</details>",
    ]
    body = "\n".join(sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style><script>{SCRIPT}</script></head>\n<body>\n{body}\n</body></html>\n"
    )


PROTOCOL_HEADER = "paper's protocol"


def short_protocol(headers: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]], list[str]]:
    """The leaderboard's "paper's protocol" cells cut to ``yes`` or a note number (``no [2]``), and the
    notes: each distinct way rows depart from the paper's protocol, listed once under the table."""
    if PROTOCOL_HEADER not in headers:
        return headers, rows, []
    column, notes = headers.index(PROTOCOL_HEADER), []
    for row in rows:
        if row[column] != "yes":
            if row[column] not in notes:
                notes.append(row[column])
            row[column] = f"no [{notes.index(row[column]) + 1}]"
    return headers, rows, notes


def _notes(notes: list[str]) -> str:
    """The numbered notes of :func:`short_protocol` as a list under the table."""
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    return f'<p>How rows depart from the paper\'s protocol:</p><ol class="notes">{items}</ol>'


def _comparison_html(comparison: Comparison | None, baseline: str | None) -> list[str]:
    """The comparison section: the paired table with ``baseline`` (none without a comparison)."""
    if comparison is None or baseline is None:
        return []
    table = comparison.table
    shown = table[[c for c in COMPARED if c in table.columns]]
    cells = [[_cell(v) for v in row] for row in shown.itertuples(index=False)]
    note = (f"<p>Paired per seed on identical streams: strategy − {html.escape(baseline)}, percent points "
            "(ALL: normalised points); 95% Student-t interval; Wilcoxon p, Holm-corrected.</p>")  # fmt: skip
    return [f"<h2>Compared with {html.escape(baseline)}</h2>", note, _table(COMPARED, cells, "comparison")]


COMPARED = ("scenario", "strategy", "compactness", "metric", "n", "mean_diff", "ci_low", "ci_high",
            "p_holm", "prob_improvement", "seeds_for_80_power")  # fmt: skip


def _cell(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write_report(records: Sequence[dict[str, Any]], path: Path, baseline: str | None = None) -> Path:
    """Write :func:`render_report` of ``records`` (compared with ``baseline`` when given) to ``path``
    atomically; returns ``path``."""
    atomic_write_text(path, render_report(records, baseline=baseline))
    return path
