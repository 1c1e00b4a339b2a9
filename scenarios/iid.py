"""Stationary (IID) scenarios: mnist_iid, cifar10_iid, cifar100_iid (docs/protocol.md §7).

There is one data distribution; the run is cut into ``cycles`` equal "tasks", each one cycle of epochs
over the whole train set, and the checkpoint metrics are taken on the whole test set at the end of every
cycle. Every cycle returns the same tensors, normalised once when the stream is built (the train set is
needed by every cycle, so it is held for the run); each cycle reshuffles (the batch order depends on the
cycle index).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from plasticity_bench.core.seeding import generator
from plasticity_bench.scenarios.datasets import CIFAR10, CIFAR100, FASHION_MNIST, MNIST, Dataset
from plasticity_bench.scenarios.stream import (
    VAL_FRACTION,
    StreamInfo,
    TaskBenchmark,
    TaskData,
    TaskStream,
    carve_validation,
)

#: Data variants of mnist_iid: the MNIST IDX files (None) or Fashion-MNIST.
MNIST_IID_VARIANTS: dict[str | None, Dataset] = {None: MNIST, "fashion": FASHION_MNIST}


def iid_benchmark(
    name: str, variant: str | None, dataset: Dataset, data_root: Path | None, cycles: int,
    validation: tuple[float, int] = (0.0, 0),
) -> TaskBenchmark:  # fmt: skip
    """``cycles`` identical tasks holding the train set (less its validation rows) and the whole test set.

    ``validation``: ``(fraction, seed)``; one validation split for the run, carved with
    ``generator(seed, "validation")`` (:func:`~plasticity_bench.scenarios.stream.carve_validation`).

    Raises:
        readers.DatasetNotFoundError, readers.CorruptDatasetError: missing or malformed files.
    """
    train, test = dataset.splits(data_root)
    fraction, seed = validation
    x, y, val_x, val_y = carve_validation(
        dataset.normalise(train.images), torch.from_numpy(train.labels), fraction,
        generator(seed, "validation"),
    )  # fmt: skip
    task = TaskData(
        x, y, dataset.normalise(test.images), torch.from_numpy(test.labels),
        classes=tuple(range(dataset.n_classes)), val_x=val_x, val_y=val_y,
    )  # fmt: skip
    info = StreamInfo(
        name, variant, tuple(train.images.shape[1:]), dataset.n_classes, f"{train.source}; {test.source}",
        {"val_fraction": fraction, "val_draw": 'generator(seed, "validation")'},
    )  # fmt: skip
    return TaskBenchmark(TaskStream("train", cycles, lambda i: task), info)


def iid_scenario(name: str, datasets: dict[str | None, Dataset]) -> Callable[..., TaskBenchmark]:
    """The builder ``build(seed, tasks, variant, data_root, val_fraction)`` of an IID scenario; ``tasks`` =
    cycles.

    ``datasets`` maps each data variant to its dataset. The seed chooses the validation rows (and, through
    the training loop, the batch order).
    """

    def build(
        seed: int, tasks: int, variant: str | None, data_root: Path | None,
        val_fraction: float = VAL_FRACTION.default,
    ) -> TaskBenchmark:  # fmt: skip
        return iid_benchmark(name, variant, datasets[variant], data_root, tasks, (val_fraction, seed))

    build.__name__ = name
    build.__doc__ = (
        f"{name}: stationary training on {datasets[None].name}, one task per cycle (docs/protocol.md §7)."
    )
    return build


mnist_iid = iid_scenario("mnist_iid", MNIST_IID_VARIANTS)
cifar10_iid = iid_scenario("cifar10_iid", {None: CIFAR10})
cifar100_iid = iid_scenario("cifar100_iid", {None: CIFAR100})
