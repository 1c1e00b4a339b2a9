"""Tests for the compactness budget (docs/protocol.md §3): unit targets, schedules, edit counts, edit
points."""

from __future__ import annotations

import math

import pytest

from plasticity_bench.core.budget import check_compactness, edit_count, edit_schedule, unit_targets

# ------------------------------------------------------------------------------------------------ targets


def test_neutral_targets_round_and_floor_at_one() -> None:
    assert unit_targets([256, 256], [784, 256], 0.3) == [77, 77]  # 76.8 -> 77
    assert unit_targets([512, 512, 256], [4096, 512, 512], 0.2) == [102, 102, 51]  # 102.4, 51.2
    assert unit_targets([512, 512, 256], [4096, 512, 512], 0.5) == [256, 256, 128]
    assert unit_targets([3, 1], [5, 3], 0.2) == [1, 1]  # 0.6 -> 1 and 0.2 -> 0 -> at least one unit
    assert unit_targets([100, 100], [1, 1], 1.0) == [100, 100]


def test_bias_schedule_renormalises_fan_in_weights() -> None:
    # total fan-in weights 100*3 + 100 + 100 = 500; biased 1.5*300 + 1.5*100 + 0.6*100 = 660
    # scale = 0.5 * 500 / 660 = 0.3788: layer 1 1.5*0.3788*100 = 56.8 -> 57, layer 3 0.6*37.88 = 22.7 -> 23
    assert unit_targets([100, 100, 100], [3, 1, 1], 0.5, "fc1_protect") == [57, 57, 23]
    # equal fan-ins: scale = 0.4 * 300 / 270; 0.6 * 44.4 = 26.7 -> 27, 1.5 * 44.4 = 66.7 -> 67
    assert unit_targets([100, 100, 100], [1, 1, 1], 0.4, "fc3_protect") == [27, 27, 67]
    # ends_skewed (1.2, 0.6, 1.2): biased = 120 + 60 + 120 = 300 = total, so scale = c
    assert unit_targets([100, 100, 100], [1, 1, 1], 0.3, "ends_skewed") == [36, 18, 36]


def test_bias_schedule_on_lc26_convnet_keeps_the_weight_budget() -> None:
    widths, fan_in = [512, 512, 256], [4096, 512, 512]
    # total = 2,490,368; biased = 1.5*2,097,152 + 1.5*262,144 + 0.6*131,072 = 3,617,587.2
    # scale = 0.5 * total / biased = 0.344205: 1.5*0.344205*512 = 264.35, 0.6*0.344205*256 = 52.87
    targets = unit_targets(widths, fan_in, 0.5, "fc1_protect")
    assert targets == [264, 264, 53]
    kept = sum(u * f for u, f in zip(targets, fan_in))
    total = sum(d * f for d, f in zip(widths, fan_in))
    assert abs(kept - 0.5 * total) <= sum(f / 2 for f in fan_in)  # off by rounding only


def test_bias_schedule_clips_to_layer_width_and_one() -> None:
    # fc1_protect at c=0.9: scale 0.75, layer 1 wants 112.5 units of 100 -> clipped to 100
    assert unit_targets([100, 100, 100], [1, 1, 1], 0.9, "fc1_protect") == [100, 100, 45]
    # tiny c: the middle layer of ends_skewed wants 0.05 units -> at least 1
    assert unit_targets([100, 10, 100], [1, 1, 1], 0.01, "ends_skewed") == [1, 1, 1]


def test_bias_schedule_errors() -> None:
    with pytest.raises(ValueError, match="neutral"):
        unit_targets([256, 256], [784, 256], 0.5, "fc1_protect")  # 2 masked layers, 3 factors
    with pytest.raises(ValueError, match="unknown schedule"):
        unit_targets([256, 256], [784, 256], 0.5, "no_such_schedule")


# ------------------------------------------------------------------------------------------------ compactness


@pytest.mark.parametrize("c", [1.5, 0.0, -0.2, 1.0001, math.nan])
def test_compactness_out_of_range_raises_helpful_error(c: float) -> None:
    with pytest.raises(ValueError, match=r"out of range") as info:
        check_compactness(c)
    assert "(0, 1]" in str(info.value) and "0.2,0.3,0.4,0.5" in str(info.value)
    with pytest.raises(ValueError, match="out of range"):
        unit_targets([10, 10], [1, 1], c)


@pytest.mark.parametrize("c", [0.2, 0.5, 1.0])
def test_compactness_in_range_passes(c: float) -> None:
    assert check_compactness(c) == c


# ------------------------------------------------------------------------------------------------ edit counts


def run_cycles(q: int, cycles: int, available: int = 10**6) -> list[int]:
    edits = []
    for t in range(cycles):
        k = edit_count(q, t, cycles, available)
        edits.append(k)
        q -= k
    return edits


@pytest.mark.parametrize(
    ("q", "cycles", "expected"),
    [
        (102, 5, [21, 21, 20, 20, 20]),  # Grow on mlp: 26 seed units -> 128
        (128, 5, [26, 26, 26, 25, 25]),  # Prune on mlp: 256 -> 128
        (7, 3, [3, 2, 2]),
        (10, 1, [10]),
        (3, 5, [1, 1, 1, 0, 0]),  # T > q
        (1, 4, [1, 0, 0, 0]),
        (0, 3, [0, 0, 0]),
    ],
)
def test_edit_count_sequence_reaches_target_at_last_cycle(q: int, cycles: int, expected: list[int]) -> None:
    edits = run_cycles(q, cycles)
    assert edits == expected
    assert sum(edits) == q


def test_edit_count_respects_available_and_last_cycle() -> None:
    assert edit_count(10, 0, 5, 1) == 1  # not more than can be edited
    assert edit_count(10, 4, 5, 100) == 10  # last cycle edits all that remains
    assert edit_count(10, 7, 5, 100) == 10  # past the last cycle: still all that remains
    assert edit_count(-3, 0, 5, 100) == 0


# ------------------------------------------------------------------------------------------------ edit points


@pytest.mark.parametrize(
    ("tasks", "cycles", "expected"),
    [
        (20, 5, [4, 8, 12, 16]),  # edits close cycles 1..4; cycle 5 (tasks 16..19) trains at target
        (5, 5, [1, 2, 3, 4]),  # Split-MNIST/Fashion: no edit before task 1 has trained
        (10, 10, list(range(1, 10))),  # split_cifar100: one edit per task boundary
        (3, 5, [1, 1, 1, 2]),  # fewer tasks than cycles: never before the first task has trained
        (500, 5, [100, 200, 300, 400]),
        (7, 2, [3]),
    ],
)
def test_exit_placement_edits_after_training(tasks: int, cycles: int, expected: list[int]) -> None:
    points = edit_schedule(tasks, cycles)
    assert [task for task, _ in points] == expected
    assert [t for _, t in points] == list(range(1, cycles))  # LC26 eq. 23 counts t = 1..T
    assert all(1 <= task < tasks for task, _ in points)


def test_exit_placement_reaches_target_before_the_last_cycle() -> None:
    """Eq. 23 with t = 1..T-1 takes everything by t = T - 1: the last cycle trains at target."""
    for q, cycles in [(102, 5), (128, 5), (7, 3), (3, 5), (230, 10)]:
        left = q
        for _, t in edit_schedule(cycles * 2, cycles):
            left -= edit_count(left, t, cycles, 10**6)
        assert left == 0
    # 102 units over T = 5 under eq. 23: ceil(102/4), ceil(76/3), ceil(50/2), 25
    left, ks = 102, []
    for _, t in edit_schedule(5, 5):
        ks.append(edit_count(left, t, 5, 10**6))
        left -= ks[-1]
    assert ks == [26, 26, 25, 25]


def test_exit_placement_refuses_streams_without_room() -> None:
    with pytest.raises(ValueError, match="edit_placement=step0"):
        edit_schedule(1, 5)
    with pytest.raises(ValueError, match="at least 2 tasks and 2 cycles"):
        edit_schedule(10, 1)


@pytest.mark.parametrize(
    ("tasks", "cycles", "expected"),
    [
        (20, 5, [0, 4, 8, 12, 16]),
        (10, 10, list(range(10))),
        (3, 5, [0, 0, 1, 1, 2]),
        (1, 3, [0, 0, 0]),
    ],
)
def test_step0_placement_is_protocol_2(tasks: int, cycles: int, expected: list[int]) -> None:
    points = edit_schedule(tasks, cycles, placement="step0")
    assert points == list(zip(expected, range(cycles)))


def test_edit_every_override() -> None:
    assert [a for a, _ in edit_schedule(20, 5, edit_every_tasks=2)] == [2, 4, 6, 8]
    assert [a for a, _ in edit_schedule(20, 3, edit_every_tasks=1, placement="step0")] == [0, 1, 2]
    assert [a for a, _ in edit_schedule(4, 5, edit_every_tasks=3)] == [3, 3, 3, 3]
    with pytest.raises(ValueError, match="edit_every_tasks"):
        edit_schedule(10, 5, edit_every_tasks=0)
    with pytest.raises(ValueError, match="at least one task"):
        edit_schedule(0, 5)
    with pytest.raises(ValueError, match="edit_placement"):
        edit_schedule(5, 5, placement="middle")
