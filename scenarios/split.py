"""Streams of tasks made of groups of classes: class-incremental Split-* (docs/protocol.md §7).

Each task introduces a group of classes that no earlier task had; labels stay the dataset's own class
ids and the network has one shared head over all classes. The class order is a permutation drawn from the
run seed (``generator(seed, "class-order")``), so every strategy sees the same stream.

Memory: the ``uint8`` train and test arrays are read once (what the on-disk format allows: a CIFAR pickle
or IDX file holds every class); the ``float32`` tensors of a task are made only when the task is built,
and only for that task's classes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from plasticity_bench.core.seeding import generator
from plasticity_bench.scenarios import readers
from plasticity_bench.scenarios.datasets import CIFAR100, FASHION_MNIST, MNIST, Dataset
from plasticity_bench.scenarios.stream import (
    VAL_FRACTION,
    StreamInfo,
    TaskBenchmark,
    TaskData,
    TaskStream,
    carve_validation,
)

Groups = list[tuple[int, ...]]


def class_order(n_classes: int, seed: int) -> list[int]:
    """A permutation of ``0 .. n_classes - 1`` drawn from the run seed (docs/protocol.md §7)."""
    return torch.randperm(n_classes, generator=generator(seed, "class-order")).tolist()


def consecutive_groups(order: Sequence[int], sizes: Sequence[int]) -> Groups:
    """Cut ``order`` into consecutive groups of the given ``sizes``; no class appears twice.

    Raises:
        ValueError: if the sizes need more classes than ``order`` holds.
    """
    if sum(sizes) > len(order):
        raise ValueError(f"{len(sizes)} tasks need {sum(sizes)} classes, the dataset has {len(order)}")
    starts = np.cumsum([0, *sizes])
    return [tuple(order[a:b]) for a, b in itertools.pairwise(starts)]


def class_subset(
    images: readers.ImageSet, classes: Sequence[int], normalise: Callable[[np.ndarray], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of ``images`` whose label is in ``classes``, in file order.

    Returns:
        ``x`` ``float32`` ``(n, C, H, W)`` normalised by ``normalise``; ``y`` ``int64`` ``(n,)`` with the
        dataset's own labels.
    """
    rows = np.flatnonzero(np.isin(images.labels, classes))
    return normalise(images.images[rows]), torch.from_numpy(images.labels[rows])


def class_group_benchmark(
    name: str,
    variant: str | None,
    dataset: Dataset,
    data_root: Path | None,
    groups: Groups,
    hard: Sequence[bool] | None = None,
    options: dict[str, object] | None = None,
    validation: tuple[float, int] = (0.0, 0),
) -> TaskBenchmark:
    """A lazy stream whose task ``i`` holds the train and test rows of the classes ``groups[i]``.

    Args:
        dataset: where the images come from (read now, so missing/corrupt files fail before training).
        groups: the classes of each task (disjoint).
        hard: per-task flag (5+1 CIFAR's easy tasks are ``False``); default all ``True``.
        validation: ``(fraction, seed)``: task ``i``'s validation rows are carved from its training rows
            with ``generator(seed, "validation", i)``
            (:func:`~plasticity_bench.scenarios.stream.carve_validation`).

    Raises:
        readers.DatasetNotFoundError, readers.CorruptDatasetError: from reading the dataset.
    """
    train, test = dataset.splits(data_root)
    flags = list(hard) if hard is not None else [True] * len(groups)

    fraction, seed = validation

    def make_task(i: int) -> TaskData:
        x, y = class_subset(train, groups[i], dataset.normalise)
        x, y, val_x, val_y = carve_validation(x, y, fraction, generator(seed, "validation", i))
        test_x, test_y = class_subset(test, groups[i], dataset.normalise)
        return TaskData(x, y, test_x, test_y, classes=groups[i], hard=flags[i], val_x=val_x, val_y=val_y)

    info = StreamInfo(
        name, variant, tuple(train.images.shape[1:]), dataset.n_classes, f"{train.source}; {test.source}",
        {"class_groups": [list(g) for g in groups], **(options or {})},
    )  # fmt: skip
    return TaskBenchmark(TaskStream("train", len(groups), make_task), info)


def split_scenario(name: str, dataset: Dataset, classes_per_task: int) -> Callable[..., TaskBenchmark]:
    """The builder of a class-incremental Split scenario on ``dataset`` (docs/protocol.md §7).

    The builder ``build(seed, tasks, variant, data_root, val_fraction)`` makes ``tasks`` tasks of
    ``classes_per_task`` classes each, in the seed's class order, with ``val_fraction`` of each task's
    training rows held out for lr selection, and raises ``ValueError`` if the dataset has too few classes.
    """

    def build(
        seed: int, tasks: int, variant: str | None, data_root: Path | None,
        val_fraction: float = VAL_FRACTION.default,
    ) -> TaskBenchmark:  # fmt: skip
        groups = consecutive_groups(class_order(dataset.n_classes, seed), [classes_per_task] * tasks)
        options = {"val_fraction": val_fraction, "val_draw": 'generator(seed, "validation", task)'}
        return class_group_benchmark(
            name, variant, dataset, data_root, groups, options=options, validation=(val_fraction, seed)
        )

    build.__name__ = name
    build.__doc__ = (
        f"{name}: class-incremental {dataset.name}, {classes_per_task} new classes per task, shared "
        f"{dataset.n_classes}-way head (docs/protocol.md §7)."
    )
    return build


split_mnist = split_scenario("split_mnist", MNIST, 2)
split_fashion = split_scenario("split_fashion", FASHION_MNIST, 2)
split_cifar100 = split_scenario("split_cifar100", CIFAR100, 10)
