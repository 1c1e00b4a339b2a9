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


#: Where the T cycles' edits go (docs/protocol.md §3): ``exit`` (default) edits at the end of cycles 1..T-1
#: (LC26 B.3.1: Exit is "the end-of-cycle checkpoint at which prune decisions are made"; eq. 23 counts
#: t = 1..T), so no edit happens before the network has trained and the last cycle trains at target;
#: ``step0`` is the placement of results protocol 2: edit 0 before the first update, t counted from 0.
EDIT_PLACEMENTS = ("exit", "step0")


def edit_count(remaining: int, cycle: int, cycles: int, available: int) -> int:
    """Units to edit in one layer at cycle ``t = cycle`` of ``T = cycles`` (LC26 eq. 23; docs/protocol.md §3).

    ``k = min(q, ceil(q / max(1, T - t)), available)`` with ``q`` = |target - active|. Under the ``exit``
    placement ``t`` runs from 1 as in eq. 23, so the edit at the end of cycle ``T - 1`` takes all that
    remains and cycle ``T`` trains at target; under ``step0`` it runs from 0 and the last edit (``t = T -
    1``) reaches the target.
    """
    if remaining <= 0:
        return 0
    return min(remaining, math.ceil(remaining / max(1, cycles - cycle)), available)


def edit_schedule(
    n_tasks: int, cycles: int, edit_every_tasks: int | None = None, placement: str = "exit"
) -> list[tuple[int, int]]:
    """``(task, t)`` of every structural edit: the edit with cycle number ``t`` happens at the start of task
    ``task``, before that task's first update (docs/protocol.md §3).

    ``exit`` (default): the edit closing cycle ``t = 1 .. T-1`` happens at the start of task
    ``max(1, floor(t * K / T))`` for ``K`` tasks (with ``edit_every_tasks = e``: ``min(t * e, K - 1)``), so
    the first edit comes after a whole task of training; cycle ``T``'s closing edit would have nothing left
    to do (eq. 23) and is not made. ``step0``: edit ``t = 0 .. T-1`` at task ``floor(t * K / T)`` (or
    ``min(t * e, K - 1)``), the first before any update. Several edits may share a task; they are applied
    in order there.

    Raises:
        ValueError: for non-positive counts, an unknown placement, or (``exit``) a stream of one task or a
            single cycle, where no edit could follow training and precede training at target.
    """
    if n_tasks < 1 or cycles < 1:
        raise ValueError(f"need at least one task and one cycle (got tasks={n_tasks}, cycles={cycles})")
    if placement not in EDIT_PLACEMENTS:
        raise ValueError(f"unknown edit_placement {placement!r}; choose one of {', '.join(EDIT_PLACEMENTS)}")
    if edit_every_tasks is not None and edit_every_tasks < 1:
        raise ValueError("edit_every_tasks must be >= 1")
    if placement == "step0":
        numbers = range(cycles)
    elif n_tasks < 2 or cycles < 2:
        raise ValueError(
            f"a structural run with tasks={n_tasks}, cycles={cycles} has no edit between training and "
            "training at target: use at least 2 tasks and 2 cycles, or --option edit_placement=step0"
        )
    else:
        numbers = range(1, cycles)

    def task_of(t: int) -> int:
        at = min(t * edit_every_tasks, n_tasks - 1) if edit_every_tasks else t * n_tasks // cycles
        return at if placement == "step0" else max(1, at)

    return [(task_of(t), t) for t in numbers]
