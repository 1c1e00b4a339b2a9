"""The labelled image datasets the scenarios draw from, with their reader and normaliser (docs/protocol.md
§7, §8)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from plasticity_bench.scenarios import readers


@dataclass(frozen=True)
class Dataset:
    """A dataset with a train and a test split.

    Attributes:
        name: display name, e.g. ``"CIFAR-100"``.
        load: ``load(data_root, split)`` -> :class:`readers.ImageSet` (``uint8`` ``(N, C, H, W)``).
        normalise: ``uint8`` array ``(N, C, H, W)`` -> ``float32`` tensor of the same shape
        (docs/protocol.md §7).
        n_classes: number of labels (labels are ``0 .. n_classes - 1``).
    """

    name: str
    load: Callable[[Path | None, str], readers.ImageSet]
    normalise: Callable[[np.ndarray], torch.Tensor]
    n_classes: int

    def splits(self, data_root: Path | None) -> tuple[readers.ImageSet, readers.ImageSet]:
        """The (train, test) splits, read and validated now (so bad data fails before training).

        Raises:
            readers.DatasetNotFoundError: the files are missing (the message names paths and how to get them).
            readers.CorruptDatasetError: a file is malformed.
        """
        return self.load(data_root, "train"), self.load(data_root, "test")


MNIST = Dataset("MNIST", readers.load_mnist, readers.normalize_mnist, 10)
FASHION_MNIST = Dataset("Fashion-MNIST", readers.load_fashion_mnist, readers.normalize_mnist, 10)
CIFAR10 = Dataset("CIFAR-10", readers.load_cifar10, readers.normalize_cifar, 10)
CIFAR100 = Dataset("CIFAR-100", readers.load_cifar100, readers.normalize_cifar, 100)
