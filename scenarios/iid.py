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

from scenarios.datasets import CIFAR10, CIFAR100, FASHION_MNIST, MNIST, Dataset
from scenarios.stream import StreamInfo, TaskBenchmark, TaskData, TaskStream

#: Data variants of mnist_iid: the MNIST IDX files (None) or Fashion-MNIST.
MNIST_IID_VARIANTS: dict[str | None, Dataset] = {None: MNIST, "fashion": FASHION_MNIST}


def iid_benchmark(
    name: str, variant: str | None, dataset: Dataset, data_root: Path | None, cycles: int
) -> TaskBenchmark:
    """``cycles`` identical tasks holding the whole train set and the whole test set of ``dataset``.

    Raises:
        readers.DatasetNotFoundError, readers.CorruptDatasetError: missing or malformed files.
    """
    train, test = dataset.splits(data_root)
    task = TaskData(
        dataset.normalise(train.images),
        torch.from_numpy(train.labels),
        dataset.normalise(test.images),
        torch.from_numpy(test.labels),
        classes=tuple(range(dataset.n_classes)),
    )
    info = StreamInfo(
        name, variant, tuple(train.images.shape[1:]), dataset.n_classes, f"{train.source}; {test.source}"
    )
    return TaskBenchmark(TaskStream("train", cycles, lambda i: task), info)


def iid_scenario(name: str, datasets: dict[str | None, Dataset]) -> Callable[..., TaskBenchmark]:
    """The builder ``build(seed, tasks, variant, data_root)`` of an IID scenario; ``tasks`` = cycles.

    ``datasets`` maps each data variant to its dataset. The stream does not depend on the seed (the batch
    order does, through the training loop).
    """

    def build(seed: int, tasks: int, variant: str | None, data_root: Path | None) -> TaskBenchmark:
        return iid_benchmark(name, variant, datasets[variant], data_root, tasks)

    build.__name__ = name
    build.__doc__ = (
        f"{name}: stationary training on {datasets[None].name}, one task per cycle (docs/protocol.md §7)."
    )
    return build


mnist_iid = iid_scenario("mnist_iid", MNIST_IID_VARIANTS)
cifar10_iid = iid_scenario("cifar10_iid", {None: CIFAR10})
cifar100_iid = iid_scenario("cifar100_iid", {None: CIFAR100})
