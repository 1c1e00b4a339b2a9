"""CIFAR continual scenarios: Random-Label CIFAR and 5+1 CIFAR (docs/protocol.md §7).

Split-CIFAR100 is in :mod:`plasticity_bench.scenarios.split`, the IID CIFAR scenarios in
:mod:`plasticity_bench.scenarios.iid`.
"""

from __future__ import annotations

from pathlib import Path

from plasticity_bench.scenarios import mnist
from plasticity_bench.scenarios.datasets import CIFAR10, CIFAR100
from plasticity_bench.scenarios.split import class_group_benchmark, class_order, consecutive_groups
from plasticity_bench.scenarios.stream import TaskBenchmark

HARD_CLASSES = 5
EASY_CLASSES = 1


def random_label_cifar(
    seed: int,
    tasks: int,
    variant: str | None,
    data_root: Path | None,
    subset: int = 1_200,
    label_mode: str = mnist.LABEL_MODE.default,
) -> TaskBenchmark:
    """Random-Label CIFAR: ``subset`` fixed CIFAR-10 train images, labels re-drawn each task
    (docs/protocol.md §7).

    Inputs ``float32`` ``(3, 32, 32)`` normalised per channel; 10 classes; no test split (online metric).

    Raises:
        plasticity_bench.scenarios.readers.DatasetNotFoundError,
        plasticity_bench.scenarios.readers.CorruptDatasetError: missing or
            malformed CIFAR-10 files.
        ValueError: unknown ``label_mode``.
    """
    images = CIFAR10.load(data_root, "train")
    return mnist.random_label_benchmark(
        "random_label_cifar", variant, images, CIFAR10.normalise, seed, tasks, subset, label_mode
    )


def five_plus_one_sizes(tasks: int) -> list[int]:
    """Classes per task of 5+1 CIFAR: hard (5 classes) at even task indices, easy (1 class) at odd ones."""
    return [HARD_CLASSES if i % 2 == 0 else EASY_CLASSES for i in range(tasks)]


def cifar_5plus1(seed: int, tasks: int, variant: str | None, data_root: Path | None) -> TaskBenchmark:
    """5+1 CIFAR (docs/protocol.md §7): CIFAR-100 classes in a seeded order, no class repeats,
    alternating hard tasks (5 new classes, 2,500 train images) and easy tasks (1 new class, 500 images),
    starting hard.

    Labels are the raw CIFAR-100 ids (100-way head); every task has the test images of its classes
    (100 per class) for checkpoint metrics; easy tasks carry ``hard=False`` (TAOA counts hard tasks only).
    The steps per task (780 at batch 32) are the same for hard and easy tasks (set by the registry).

    Raises:
        ValueError: more tasks than 100 classes allow (at most 33 tasks).
        plasticity_bench.scenarios.readers.DatasetNotFoundError,
        plasticity_bench.scenarios.readers.CorruptDatasetError: missing or
            malformed CIFAR-100 files.
    """
    sizes = five_plus_one_sizes(tasks)
    groups = consecutive_groups(class_order(CIFAR100.n_classes, seed), sizes)
    hard = [size == HARD_CLASSES for size in sizes]
    return class_group_benchmark("cifar_5plus1", variant, CIFAR100, data_root, groups, hard)
