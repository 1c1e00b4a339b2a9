"""Compactness budget, bias schedules and the per-cycle edit-count rule (docs/protocol.md §3)."""

from __future__ import annotations

import math

#: Bias schedules of LC26 App. B.5: per-layer multipliers b_l of the kept fraction (3 masked layers).
#: For networks with another number of masked layers only ``neutral`` applies.
SCHEDULES: dict[str, tuple[float, ...]] = {
    "neutral": (1.0, 1.0, 1.0),
    "fc1_protect": (1.5, 1.5, 0.6),
    "fc3_protect": (0.6, 0.6, 1.5),
    "ends_skewed": (1.2, 0.6, 1.2),
}


def check_compactness(c: float) -> float:
    """Validate a compactness value: the fraction of units kept, ``0 < c <= 1`` (docs/protocol.md §1).

    Raises:
        ValueError: if ``c`` is outside ``(0, 1]``, with the fix in the message.
    """
    if not 0.0 < c <= 1.0:
        raise ValueError(
            f"compactness {c} is out of range: use a fraction in (0, 1], e.g. 0.2,0.3,0.4,0.5 (1.0 = dense)"
        )
    return c


def unit_targets(widths: list[int], fan_in: list[int], c: float, schedule: str = "neutral") -> list[int]:
    """Per-layer target unit counts ``u*_l`` for compactness ``c`` (docs/protocol.md §3; LC26 App. B.5).

    Args:
        widths: units ``d_l`` per masked layer.
        fan_in: fan-in weights per unit of each masked layer (Linear: in_features).
        c: compactness in (0, 1].
        schedule: ``neutral`` keeps ``round(c * d_l)`` (>= 1) units per layer. A bias schedule scales
            the kept fraction of layer ``l`` by ``b_l`` and renormalises so the kept fan-in weight count
            ``sum_l u_l * fan_in_l`` equals ``c * sum_l d_l * fan_in_l`` [ours: exact renormalisation],
            then clips to ``[1, d_l]``.

    Returns:
        list of ints, one per masked layer.

    Raises:
        ValueError: for ``c`` out of range, an unknown schedule, or a bias schedule whose length does
            not match the number of masked layers.
    """
    check_compactness(c)
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {sorted(SCHEDULES)}")
    if schedule == "neutral":
        return [min(d, max(1, round(c * d))) for d in widths]
    bias = SCHEDULES[schedule]
    if len(bias) != len(widths):
        raise ValueError(
            f"schedule {schedule!r} has {len(bias)} layer factors but the model has {len(widths)} "
            "masked layers; use --schedule neutral"
        )
    total = sum(d * f for d, f in zip(widths, fan_in))
    biased = sum(b * d * f for b, d, f in zip(bias, widths, fan_in))
    scale = c * total / biased
    return [min(d, max(1, round(b * scale * d))) for b, d in zip(bias, widths)]


def edit_count(remaining: int, cycle: int, cycles: int, available: int) -> int:
    """Units to edit in one layer at cycle ``cycle`` (0-based) of ``cycles`` (docs/protocol.md §3).

    ``k = min(q, ceil(q / max(1, T - t)), available)`` with ``q`` = |target - active|. With ``t``
    counted from 0 the last cycle (``t = T - 1``) edits all that remains, so every layer is exactly at
    target after the last cycle.
    """
    if remaining <= 0:
        return 0
    return min(remaining, math.ceil(remaining / max(1, cycles - cycle)), available)


def edit_tasks(n_tasks: int, cycles: int, edit_every_tasks: int | None = None) -> list[int]:
    """Task indices at whose start a structural edit happens (docs/protocol.md §3, [ours]).

    Default: edit ``i`` (0-based, ``i < T``) happens at the start of task ``floor(i * K / T)`` for ``K``
    tasks; with ``edit_every_tasks = e``: at task ``min(i * e, K - 1)``, so edits that do not fit in the
    stream all happen at the start of the last task and every layer still ends at its target. When
    several edits share a task they are applied in sequence there.

    Raises:
        ValueError: for non-positive counts.
    """
    if n_tasks < 1 or cycles < 1:
        raise ValueError(f"need at least one task and one cycle (got tasks={n_tasks}, cycles={cycles})")
    if edit_every_tasks is not None:
        if edit_every_tasks < 1:
            raise ValueError("edit_every_tasks must be >= 1")
        return [min(i * edit_every_tasks, n_tasks - 1) for i in range(cycles)]
    return [i * n_tasks // cycles for i in range(cycles)]
