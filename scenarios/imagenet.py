"""Continual ImageNet (Dohare et al. 2024; Kumar23; docs/protocol.md §7, §8).

Task ``i`` is a binary classification between two ImageNet classes (32x32), labels 0 and 1; the pairs
are drawn from the run seed without repetition. Each task loads only its own two class files (600 train
+ 100 test images each), so a 500-task stream holds one task's data at a time. Every class file the
stream will use is validated from its ``.npy`` header when the stream is built, so a corrupt or wrongly
shaped file stops the run before training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from plasticity_bench.core.options import Option
from plasticity_bench.core.seeding import generator
from plasticity_bench.scenarios import readers
from plasticity_bench.scenarios.stream import StreamInfo, TaskBenchmark, TaskData, TaskStream

#: Sub-folder of the data root searched after the data root itself.
IMAGENET_SUBFOLDER = "continual_imagenet"
INPUT_SHAPE = (3, 32, 32)
RESET_HEAD = Option(
    "reset_head",
    "bool",
    False,
    "Continual ImageNet: re-initialise the output layer per task (LoP)",
    ours=True,
)


def find_class_folder(data_root: Path | None) -> readers.ImageNetClassFolder:
    """The class folder: ``<data_root>`` itself if it holds ``<class_id>.npy`` files, else
    ``<data_root>/continual_imagenet`` (``data_root=None``: :func:`readers.default_data_root`).

    Raises:
        readers.DatasetNotFoundError: neither folder holds class files; the message names both.
    """
    base = Path(data_root) if data_root is not None else readers.default_data_root()
    candidates = [base, base / IMAGENET_SUBFOLDER]
    for folder in candidates:
        try:
            return readers.ImageNetClassFolder(folder)
        except readers.DatasetNotFoundError:
            continue
    raise readers.DatasetNotFoundError(
        readers.ImageNetClassFolder.DATASET, candidates, readers.IMAGENET_HINT, "No <class_id>.npy file found"
    )


def class_pairs(class_ids: Sequence[int], tasks: int, seed: int) -> list[tuple[int, int]]:
    """``tasks`` disjoint class pairs: a seeded permutation of ``class_ids`` cut into consecutive pairs.

    The first class of a pair gets label 0, the second label 1.

    Raises:
        ValueError: fewer than ``2 * tasks`` classes.
    """
    if 2 * tasks > len(class_ids):
        raise ValueError(f"{tasks} Continual ImageNet tasks need {2 * tasks} classes, found {len(class_ids)}")
    order = torch.randperm(len(class_ids), generator=generator(seed, "class-pairs")).tolist()
    chosen = [class_ids[j] for j in order[: 2 * tasks]]
    return list(zip(chosen[0::2], chosen[1::2]))


def pair_data(folder: readers.ImageNetClassFolder, pair: tuple[int, int]) -> TaskData:
    """Task data of one class pair: 1,200 train and 200 test images, ``float32`` ``x / 255``, labels 0/1.

    Raises:
        readers.CorruptDatasetError: a class file is malformed.
    """
    (train_a, test_a), (train_b, test_b) = (folder.load_class(c) for c in pair)

    def stack(a: np.ndarray, b: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.cat([torch.zeros(len(a), dtype=torch.int64), torch.ones(len(b), dtype=torch.int64)])
        return readers.normalize_imagenet(np.concatenate([a, b])), labels

    x, y = stack(train_a, train_b)
    test_x, test_y = stack(test_a, test_b)
    return TaskData(x, y, test_x, test_y, classes=(0, 1))


def continual_imagenet(
    seed: int, tasks: int, variant: str | None, data_root: Path | None, reset_head: bool = False
) -> TaskBenchmark:
    """Continual ImageNet: ``tasks`` binary tasks on disjoint seeded class pairs (docs/protocol.md §7).

    ``reset_head`` (LoP's variant; default off as in Kumar23) is recorded in the stream's options; the
    runner then re-initialises the output layer at the start of every task after the first.

    Raises:
        readers.DatasetNotFoundError: no class folder (see :func:`find_class_folder`).
        readers.CorruptDatasetError: a class file the stream uses is malformed (checked now).
        ValueError: too few classes for ``tasks`` pairs.
    """
    folder = find_class_folder(data_root)
    pairs = class_pairs(folder.class_ids, tasks, seed)
    for pair in pairs:
        for class_id in pair:
            folder.check_class(class_id)
    info = StreamInfo(
        "continual_imagenet", variant, INPUT_SHAPE, 2, str(folder.root),
        {"class_pairs": [list(p) for p in pairs], "reset_head": bool(reset_head)},
    )  # fmt: skip
    return TaskBenchmark(TaskStream("train", tasks, lambda i: pair_data(folder, pairs[i])), info)
