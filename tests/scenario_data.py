"""Small datasets in exactly the real on-disk formats (docs/protocol.md §8), with balanced, known labels.

Used by the scenario, replay, winning-ticket and CLI tests through the ``data_root`` fixture
(``conftest.py``); the readers' own format tests (random labels, corrupt files) are in
``test_readers.py``, whose IDX writer is reused here.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
from PIL import Image
from test_readers import write_idx

from plasticity_bench.scenarios.transfer import IMAGENETTE, IMAGEWOOF

MNIST_TRAIN_PER_CLASS = 40  # a split task (2 classes) fills one batch of 64
MNIST_TEST_PER_CLASS = 5
CIFAR10_TRAIN_PER_CLASS = 20  # 200 images: one batch of 128 for the IID scenarios
CIFAR100_TRAIN_PER_CLASS = 32  # one batch of 32 for the easy tasks of 5+1 CIFAR
CIFAR_TEST_PER_CLASS = 2
IMAGENET_CLASSES = 8
TRANSFER_PER_CLASS = {"train": 7, "val": 1}


def balanced_labels(n_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` copies of every label ``0 .. n_classes - 1`` in a random order (``int64``)."""
    return rng.permutation(np.repeat(np.arange(n_classes), per_class))


def write_idx_dataset(folder: Path, per_class: dict[str, int], rng: np.random.Generator) -> None:
    """The four gzipped IDX files of an MNIST-like dataset (10 classes, 28x28) in ``folder``."""
    for split, prefix in (("train", "train"), ("test", "t10k")):
        labels = balanced_labels(10, per_class[split], rng)
        images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))


def write_pickle(path: Path, labels: np.ndarray, label_key: bytes, rng: np.random.Generator) -> None:
    """A CIFAR python batch: a pickled dict with ``b"data"`` ``uint8`` ``(N, 3072)`` and a label list."""
    batch = {
        label_key: [int(v) for v in labels],
        b"data": rng.integers(0, 256, (len(labels), 3072), np.uint8),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(batch, f, protocol=2)


def write_cifar10(root: Path, rng: np.random.Generator) -> None:
    """``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``, balanced labels."""
    folder = root / "cifar-10-batches-py"
    train = balanced_labels(10, CIFAR10_TRAIN_PER_CLASS, rng)
    for i, part in enumerate(np.array_split(train, 5), 1):
        write_pickle(folder / f"data_batch_{i}", part, b"labels", rng)
    write_pickle(folder / "test_batch", balanced_labels(10, CIFAR_TEST_PER_CLASS, rng), b"labels", rng)


def write_cifar100(root: Path, rng: np.random.Generator) -> None:
    """``cifar-100-python/train``, ``test`` and ``meta``, balanced fine labels."""
    folder = root / "cifar-100-python"
    write_pickle(folder / "train", balanced_labels(100, CIFAR100_TRAIN_PER_CLASS, rng), b"fine_labels", rng)
    write_pickle(folder / "test", balanced_labels(100, CIFAR_TEST_PER_CLASS, rng), b"fine_labels", rng)
    with (folder / "meta").open("wb") as f:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, f, protocol=2)


def write_imagenet(folder: Path, n_classes: int, rng: np.random.Generator) -> None:
    """LoP class files ``<id>.npy`` of 700 ``uint8`` 32x32 RGB images; even ids HWC, odd ids CHW."""
    folder.mkdir(parents=True, exist_ok=True)
    for class_id in range(n_classes):
        shape = (700, 32, 32, 3) if class_id % 2 == 0 else (700, 3, 32, 32)
        np.save(folder / f"{class_id}.npy", rng.integers(0, 256, size=shape, dtype=np.uint8))


def write_image_folder(
    root: Path, wnids: tuple[str, ...], per_class: dict[str, int], folder: str = "imagenette2"
) -> Path:
    """A fastai-style release: ``root/<folder>-160/{train,val}/<wnid>/`` of PNG and JPEG files of
    various sizes; class ``k``'s pixels are near ``20 k`` (so labels can be checked from pixels)."""
    rng = np.random.default_rng(0)
    release = root / f"{folder}-160"
    for split, n in per_class.items():
        for k, wnid in enumerate(wnids):
            folder = release / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = (rng.integers(0, 8, (40 + 3 * i, 48, 3)) + 20 * k).astype(np.uint8)
                Image.fromarray(pixels).save(folder / (f"{i}.png" if i % 2 else f"{i}.JPEG"), quality=100)
    return release


def write_galaxy10(path: Path, n: int = 30, size: int = 40) -> np.ndarray:
    """A Galaxy10-format HDF5 file: ``images`` ``(n, size, size, 3)`` uint8 and ``ans`` labels (returned)."""
    rng = np.random.default_rng(1)
    labels = np.arange(n) % 10
    with h5py.File(path, "w") as handle:
        handle["images"] = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        handle["ans"] = labels.astype(np.uint8)
    return labels


def write_all(root: Path) -> Path:
    """Every dataset the scenarios read, under ``root`` in torchvision / LoP / fastai / astroNN layout;
    returns ``root``.

    MNIST and Fashion-MNIST: 40 train / 5 test images per class; CIFAR-10: 20 / 2; CIFAR-100: 32 / 2;
    Continual ImageNet: 8 classes in ``<root>/continual_imagenet``; Imagenette and Imagewoof: 7 / 1 (a batch
    of 64); Galaxy10: 80 images.
    """
    rng = np.random.default_rng(0)
    per_class = {"train": MNIST_TRAIN_PER_CLASS, "test": MNIST_TEST_PER_CLASS}
    write_idx_dataset(root / "MNIST" / "raw", per_class, rng)
    write_idx_dataset(root / "FashionMNIST" / "raw", per_class, rng)
    write_cifar10(root, rng)
    write_cifar100(root, rng)
    write_imagenet(root / "continual_imagenet", IMAGENET_CLASSES, rng)
    write_image_folder(root, IMAGENETTE.wnids, TRANSFER_PER_CLASS)
    write_image_folder(root, IMAGEWOOF.wnids, TRANSFER_PER_CLASS, "imagewoof2")
    write_galaxy10(root / "Galaxy10_DECals.h5", n=80)
    return root
