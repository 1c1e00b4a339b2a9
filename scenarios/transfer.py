"""DYNO's transfer-learning streams: Imagenette, Imagewoof and Galaxy10 (DYNO workshop paper, App. A;
docs/protocol.md §17).

Each is one task: the training images, then the held-out test images for the final test accuracy
(checkpoint rule ``current``). Images are resized so that the shorter side is ``image_size`` and
center-cropped to ``image_size`` square (224: the VGG11 input the pretrained weights were trained on), then
normalised with the ImageNet mean and std (what torchvision's VGG11 weights expect). No augmentation [ours].

Formats read:

- Imagenette / Imagewoof: the fastai releases in torchvision's ``ImageFolder`` layout,
  ``<root>/imagenette2[-320|-160]/{train,val}/<wnid>/*.JPEG`` (any image size; ``val`` is the test set).
- Galaxy10: one HDF5 file, ``<root>/Galaxy10_DECals.h5`` (17,736 images of 256x256x3) or the SDSS
  ``<root>/Galaxy10.h5`` (21,785 of 69x69x3), with datasets ``images`` ``(N, H, W, 3)`` uint8 and ``ans``
  ``(N,)`` labels 0-9. It has no test split: one is drawn with the ``split_seed`` option (the same for
  every run seed, so paired runs share it) and recorded.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import functional as tvf

from plasticity_bench.core.options import Option
from plasticity_bench.core.seeding import generator
from plasticity_bench.scenarios.readers import (
    CorruptDatasetError,
    DatasetNotFoundError,
    ImageSet,
    normalize_channels,
    resolve_root,
)
from plasticity_bench.scenarios.stream import StreamInfo, TaskBenchmark, TaskData, TaskStream

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")

IMAGE_SIZE = Option(
    "image_size", "int", 224, "transfer streams: images resized and center-cropped to this square size",
    minimum=32,
)  # fmt: skip
TEST_FRACTION = Option(
    "test_fraction", "float", 0.1, "Galaxy10: share of the images held out as the test set", minimum=0.0,
    ours=True,
)  # fmt: skip
SPLIT_SEED = Option(
    "split_seed", "int", 0, "Galaxy10: seed of the train/test split (the same for every run seed)",
    minimum=0, ours=True,
)  # fmt: skip

GALAXY10_OPTIONS = (IMAGE_SIZE, TEST_FRACTION, SPLIT_SEED)


@dataclass(frozen=True)
class ImageFolderSet:
    """A fastai ImageFolder release: folder names tried in order, the class wnids (sorted, as
    ``ImageFolder`` orders them) and each class's ImageNet-1k output index (the head rule of the DYNO
    paper: a 10-way classifier made of the pretrained classifier's rows of these classes)."""

    name: str
    folders: tuple[str, ...]
    wnids: tuple[str, ...]
    imagenet_classes: tuple[int, ...]
    url: str


IMAGENETTE = ImageFolderSet(
    "Imagenette", ("imagenette2", "imagenette2-320", "imagenette2-160"),
    ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042", "n03425413",
     "n03445777", "n03888605"),
    (0, 217, 482, 491, 497, 566, 569, 571, 574, 701),
    "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz (https://github.com/fastai/imagenette)",
)  # fmt: skip
IMAGEWOOF = ImageFolderSet(
    "Imagewoof", ("imagewoof2", "imagewoof2-320", "imagewoof2-160"),
    ("n02086240", "n02087394", "n02088364", "n02089973", "n02093754", "n02096294", "n02099601", "n02105641",
     "n02111889", "n02115641"),
    (155, 159, 162, 167, 182, 193, 207, 229, 258, 273),
    "https://s3.amazonaws.com/fast-ai-imageclas/imagewoof2-320.tgz (https://github.com/fastai/imagenette)",
)  # fmt: skip
GALAXY10_FILES = ("Galaxy10_DECals.h5", "Galaxy10.h5")
GALAXY10_HINT = (
    "download Galaxy10_DECals.h5 from https://zenodo.org/records/10845026 (astroNN, "
    "https://astronn.readthedocs.io/en/latest/galaxy10.html) into the data root"
)
N_CLASSES = 10  # every stream here has ten classes
RESIZE_CHUNK = 1024  # images resized at once (a float copy of 17,736 Galaxy10 images would take 14 GB)


def square(images: torch.Tensor, size: int) -> torch.Tensor:
    """``uint8`` ``(N, 3, H, W)`` (or one ``(3, H, W)``) resized so the shorter side is ``size`` (bilinear,
    antialiased) and center-cropped to ``size x size``."""
    return tvf.center_crop(tvf.resize(images, size, antialias=True), [size, size])


def normalise(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``uint8`` ``(N, 3, H, W)`` -> float32 ``(x / 255 - mean) / std`` with ImageNet's mean and std."""
    return normalize_channels(images, IMAGENET_MEAN, IMAGENET_STD)


def find_image_folder(dataset: ImageFolderSet, root: Path) -> Path:
    """The release folder holding ``train/`` and ``val/``.

    Raises:
        DatasetNotFoundError: none of ``dataset.folders`` under ``root`` has both.
    """
    tried = [root / name for name in dataset.folders]
    for folder in tried:
        if (folder / "train").is_dir() and (folder / "val").is_dir():
            return folder
    raise DatasetNotFoundError(
        dataset.name, tried, f"download and unpack {dataset.url}", "Wanted: train/ and val/"
    )


@functools.lru_cache(maxsize=4)
def read_image_folder(folder: Path, wnids: tuple[str, ...], size: int) -> ImageSet:
    """Every image of an ImageFolder split, decoded to RGB and made :func:`square`; labels are the class
    folders' positions in ``wnids`` (sorted). Kept in memory for the next run of this process.

    Raises:
        CorruptDatasetError: class folders other than ``wnids``, an empty class, an unreadable image.
    """
    from PIL import Image, UnidentifiedImageError

    found = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
    if found != wnids:
        raise CorruptDatasetError(
            folder, f"class folders {found[:3]}... are not the {len(wnids)} expected wnids"
        )
    images, labels = [], []
    for label, wnid in enumerate(wnids):
        files = sorted(p for p in (folder / wnid).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise CorruptDatasetError(folder / wnid, "no images")
        for path in files:
            try:
                with Image.open(path) as image:
                    pixels = tvf.pil_to_tensor(image.convert("RGB"))
            except (OSError, UnidentifiedImageError) as err:
                raise CorruptDatasetError(path, f"unreadable image ({err})") from None
            images.append(square(pixels, size))
            labels.append(label)
    return ImageSet(torch.stack(images).numpy(), np.asarray(labels, dtype=np.int64), str(folder))


def read_galaxy10(path: Path, size: int) -> ImageSet:
    """The Galaxy10 HDF5 file: ``images`` ``(N, H, W, 3)`` uint8 made :func:`square`, labels ``ans``.

    Raises:
        CorruptDatasetError: a file that is not HDF5, lacks ``images`` / ``ans``, or has bad shapes / labels.
    """
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            if "images" not in handle or "ans" not in handle:
                raise CorruptDatasetError(path, f"needs datasets 'images' and 'ans', has {sorted(handle)}")
            pixels, answers = handle["images"][()], handle["ans"][()]
    except OSError as err:
        raise CorruptDatasetError(path, f"not a readable HDF5 file ({err})") from None
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[3] != 3 or len(answers) != len(pixels):
        raise CorruptDatasetError(path, f"images {pixels.dtype} {pixels.shape}, ans {answers.shape}")
    labels = answers.astype(np.int64)
    if labels.min() < 0 or labels.max() >= N_CLASSES:
        raise CorruptDatasetError(path, f"labels outside 0..{N_CLASSES - 1}")
    chunks = torch.from_numpy(pixels).permute(0, 3, 1, 2).split(RESIZE_CHUNK)  # resizing works in float
    images = torch.cat([square(chunk, size) for chunk in chunks])
    return ImageSet(images.contiguous().numpy(), labels, str(path))


def transfer_benchmark(
    name: str, train: ImageSet, test: ImageSet, imagenet_classes: Sequence[int] | None, details: dict
) -> TaskBenchmark:
    """One task: ``train`` to learn, ``test`` for the final accuracy (normalised here)."""
    task = TaskData(
        normalise(train.images), torch.from_numpy(train.labels), normalise(test.images),
        torch.from_numpy(test.labels), classes=tuple(range(N_CLASSES)),
    )  # fmt: skip
    heads = tuple(imagenet_classes) if imagenet_classes is not None else None
    info = StreamInfo(
        name, None, tuple(train.images.shape[1:]), N_CLASSES, f"{train.source}; {test.source}", details,
        imagenet_classes=heads,
    )  # fmt: skip
    return TaskBenchmark(TaskStream("train", 1, lambda i: task), info)


def image_folder_scenario(name: str, dataset: ImageFolderSet) -> Callable[..., TaskBenchmark]:
    """The builder ``build(seed, tasks, variant, data_root, image_size)`` of Imagenette or Imagewoof."""

    def build(
        seed: int,
        tasks: int,
        variant: str | None,
        data_root: Path | None,
        image_size: int = IMAGE_SIZE.default,
    ) -> TaskBenchmark:
        _one_task(name, tasks)
        folder = find_image_folder(dataset, resolve_root(data_root))
        train = read_image_folder(folder / "train", dataset.wnids, image_size)
        test = read_image_folder(folder / "val", dataset.wnids, image_size)
        details = {"image_size": image_size, "test_split": "val"}
        return transfer_benchmark(name, train, test, dataset.imagenet_classes, details)

    build.__name__ = name
    build.__doc__ = f"{dataset.name}: one transfer task, the release's val/ as the test set."
    return build


def galaxy10(
    seed: int, tasks: int, variant: str | None, data_root: Path | None, image_size: int = IMAGE_SIZE.default,
    test_fraction: float = TEST_FRACTION.default, split_seed: int = SPLIT_SEED.default,
) -> TaskBenchmark:  # fmt: skip
    """Galaxy10: one transfer task; ``round(test_fraction * N)`` images, drawn by
    ``randperm(N, generator(split_seed, "galaxy10-split"))``, are the test set.

    Raises:
        DatasetNotFoundError: no Galaxy10 file under the data root. CorruptDatasetError: a malformed one.
        ValueError: a test fraction that leaves no train or no test image.
    """
    _one_task("galaxy10", tasks)
    root = resolve_root(data_root)
    path = next((root / f for f in GALAXY10_FILES if (root / f).is_file()), None)
    if path is None:
        raise DatasetNotFoundError("Galaxy10", [root / f for f in GALAXY10_FILES], GALAXY10_HINT)
    images = read_galaxy10(path, image_size)
    n_test = round(test_fraction * len(images))
    if not 0 < n_test < len(images):
        raise ValueError(
            f"test_fraction {test_fraction} of {len(images)} images leaves no train or test image"
        )
    order = torch.randperm(len(images), generator=generator(split_seed, "galaxy10-split")).numpy()
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    details = {"image_size": image_size, "test_fraction": test_fraction, "split_seed": split_seed,
               "split_draw": 'randperm(N, generator(split_seed, "galaxy10-split"))'}  # fmt: skip
    return transfer_benchmark("galaxy10", _rows(images, train), _rows(images, test), None, details)


def _rows(images: ImageSet, rows: np.ndarray) -> ImageSet:
    return ImageSet(images.images[rows], images.labels[rows], images.source)


def _one_task(name: str, tasks: int) -> None:
    if tasks != 1:
        raise ValueError(f"{name} is one transfer task; use --tasks 1 (got {tasks})")


imagenette = image_folder_scenario("imagenette", IMAGENETTE)
imagewoof = image_folder_scenario("imagewoof", IMAGEWOOF)
