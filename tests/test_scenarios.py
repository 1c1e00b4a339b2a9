"""Stream invariants of every scenario on small files in the real formats (docs/protocol.md §7, §8)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scenario_data import CIFAR100_TRAIN_PER_CLASS, IMAGENET_CLASSES, MNIST_TRAIN_PER_CLASS

from plasticity_bench.measure.metrics import OnlineAccuracyLog, TAOAMetric
from plasticity_bench.run.config import RunConfig
from plasticity_bench.run.execute import execute
from plasticity_bench.scenarios import imagenet, readers
from plasticity_bench.scenarios.registry import SCENARIOS, parse_scenario
from plasticity_bench.scenarios.split import consecutive_groups
from plasticity_bench.scenarios.stream import TaskBenchmark, TaskData

#: Tasks built per scenario on the fixture data (Split-CIFAR100 and 5+1 need few; ImageNet has 8 classes).
FIXTURE_TASKS = {
    "continual_imagenet": 4, "cifar_5plus1": 6, "split_cifar100": 3, "imagenette": 1, "imagewoof": 1,
    "galaxy10": 1,
}  # fmt: skip
#: Streams the run seed does not change: the IID ones (only the batch order is seeded) and DYNO's transfer
#: streams (Galaxy10's split has its own seed, shared by every run seed so that runs pair).
SEED_FREE = {"imagenette", "imagewoof", "galaxy10"}


def build(
    name: str, data_root: Path, seed: int = 0, tasks: int | None = None, **options: object
) -> TaskBenchmark:
    spec, variant = parse_scenario(name)
    return spec.build(seed, tasks or FIXTURE_TASKS.get(spec.name, 3), variant, data_root, **options)


def tasks_of(benchmark: TaskBenchmark) -> list[TaskData]:
    return [experience.task for experience in benchmark.train_stream]


def test_registry_holds_every_protocol_scenario_with_its_sizes() -> None:
    sizes = {name: (s.tasks, s.steps_per_task, s.batch_size) for name, s in SCENARIOS.items()}
    assert sizes == {
        "permuted_mnist": (500, 625, 16),
        "random_label_mnist": (50, 30_000, 16),
        "random_label_cifar": (50, 30_000, 16),
        "cifar_5plus1": (30, 780, 32),
        "continual_imagenet": (500, 120, 100),
        "split_cifar100": (10, 20 * (5_000 // 32), 32),
        "split_mnist": (5, 20 * (12_000 // 64), 64),
        "split_fashion": (5, 20 * (12_000 // 64), 64),
        # batch 64: LC26 C.1's Two-Speed windows are multiples of ceil(50000 / 64)
        "mnist_iid": (5, 20 * (60_000 // 64), 64),
        "cifar10_iid": (5, 40 * (50_000 // 64), 64),
        "cifar100_iid": (5, 40 * (50_000 // 64), 64),
        # DYNO App. A: 1000 iterations of 64 images
        "imagenette": (1, 1000, 64),
        "imagewoof": (1, 1000, 64),
        "galaxy10": (1, 1000, 64),
    }
    models = {name: s.model for name, s in SCENARIOS.items()}
    assert {n for n, m in models.items() if m == "mlp"} == {
        "permuted_mnist", "random_label_mnist", "split_mnist", "split_fashion", "mnist_iid",
    }  # fmt: skip
    assert all(
        m == "convnet" for n, m in models.items() if ("cifar" in n or "imagenet" in n) and n not in SEED_FREE
    )
    assert {n for n, m in models.items() if m == "vgg11"} == SEED_FREE
    # LC26 App. A.2: cosine annealing over the full horizon for every Sec. 4-5 experiment, Split-* included
    assert {n for n, s in SCENARIOS.items() if s.lr_schedule == "cosine"} == {
        "mnist_iid", "cifar10_iid", "cifar100_iid", "split_mnist", "split_fashion",
    }  # fmt: skip
    # Split-*: one edit at every task boundary (T = K), Split-CIFAR100 included; elsewhere T = 5
    cycles = {name: s.cycles_for(s.tasks) for name, s in SCENARIOS.items()}
    assert cycles["split_cifar100"] == 10 and cycles["split_mnist"] == cycles["split_fashion"] == 5
    assert cycles["permuted_mnist"] == 5 and SCENARIOS["split_cifar100"].cycles_for(4) == 4
    # "N epochs" stays N epochs at another batch size
    assert SCENARIOS["split_fashion"].steps_for(32) == 20 * (12_000 // 32)
    assert {n for n, s in SCENARIOS.items() if s.replay} == {"split_mnist", "split_fashion"}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_stream_basic_invariants(data_root: Path, name: str) -> None:
    spec = SCENARIOS[name]
    benchmark = spec.build(0, FIXTURE_TASKS.get(name, 3), None, data_root)
    tasks = tasks_of(benchmark)
    assert len(tasks) == FIXTURE_TASKS.get(name, 3) == len(benchmark.train_stream)
    for task in tasks:
        assert task.x.dtype == torch.float32 and task.y.dtype == torch.int64
        assert tuple(task.x.shape[1:]) == benchmark.info.input_shape
        assert int(task.y.min()) >= 0 and int(task.y.max()) < benchmark.info.n_classes
        assert len(task.x) >= spec.batch_size
        if spec.checkpoint == "none":
            assert task.test_x is None
        else:
            assert task.test_x is not None and len(task.test_x) == len(task.test_y) > 0
            assert int(task.test_y.max()) < benchmark.info.n_classes


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_same_seed_same_stream(data_root: Path, name: str) -> None:
    first, again, other = (tasks_of(build(name, data_root, seed)) for seed in (0, 0, 1))
    for a, b in zip(first, again):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.classes == b.classes
    if not name.endswith("_iid") and name not in SEED_FREE:
        assert any(not torch.equal(a.y, c.y) or not torch.equal(a.x, c.x) for a, c in zip(first, other))


@pytest.mark.parametrize(("name", "per_task", "n_classes"), [
    ("split_mnist", 2, 10), ("split_fashion", 2, 10), ("split_cifar100", 10, 100),
])  # fmt: skip
def test_split_is_class_incremental(data_root: Path, name: str, per_task: int, n_classes: int) -> None:
    tasks = tasks_of(build(name, data_root, tasks=SCENARIOS[name].tasks if n_classes == 10 else 3))
    seen: set[int] = set()
    for task in tasks:
        classes = set(task.y.tolist())
        assert classes == set(task.classes) == set(task.test_y.tolist()) and len(classes) == per_task
        assert not classes & seen  # no class repeats
        seen |= classes
        # the validation rows are carved from the task's own training rows (10%, docs/protocol.md §7)
        assert set(task.val_y.tolist()) <= classes and len(task.val_y) == round(
            0.1 * (len(task.y) + len(task.val_y))
        )
        trained = {row.numpy().tobytes() for row in task.x.reshape(len(task.x), -1)}
        assert not trained & {row.numpy().tobytes() for row in task.val_x.reshape(len(task.val_x), -1)}
    if n_classes == 10:
        assert seen == set(range(10))
        assert all(len(t.y) + len(t.val_y) == per_task * MNIST_TRAIN_PER_CLASS for t in tasks)


def test_split_too_many_tasks_fails_before_training(data_root: Path) -> None:
    with pytest.raises(ValueError, match="6 tasks need 12 classes"):
        build("split_fashion", data_root, tasks=6)


def test_consecutive_groups_cut_without_repeats() -> None:
    assert consecutive_groups([4, 2, 0, 1, 3, 5], [2, 1, 3]) == [(4, 2), (0,), (1, 3, 5)]


def test_5plus1_alternates_hard_and_easy(data_root: Path) -> None:
    tasks = tasks_of(build("cifar_5plus1", data_root, tasks=6))
    assert [len(t.classes) for t in tasks] == [5, 1, 5, 1, 5, 1]
    assert [t.hard for t in tasks] == [True, False] * 3
    assert [len(t.y) for t in tasks] == [n * CIFAR100_TRAIN_PER_CLASS for n in (5, 1, 5, 1, 5, 1)]
    classes = [c for t in tasks for c in t.classes]
    assert len(set(classes)) == len(classes)  # no class repeats
    for task in tasks:  # raw CIFAR-100 ids as labels
        assert set(task.y.tolist()) == set(task.classes)
    assert SCENARIOS["cifar_5plus1"].steps_per_task == 780  # the same for hard and easy tasks


def test_5plus1_taoa_counts_hard_tasks_only() -> None:
    log = OnlineAccuracyLog()
    log.per_task = [np.full(780, 0.5, np.float32), np.ones(780, np.float32), np.full(780, 0.3, np.float32)]
    log.hard = [True, False, True]
    assert TAOAMetric(log, hard_only=True).result() == pytest.approx(0.4)
    assert TAOAMetric(log).result() == pytest.approx(0.6)


@pytest.mark.parametrize("mode", ["permute", "uniform"])
def test_random_label_cifar_redraws_labels(data_root: Path, mode: str) -> None:
    tasks = tasks_of(build("random_label_cifar", data_root, label_mode=mode))
    assert all(torch.equal(t.x, tasks[0].x) for t in tasks)  # fixed images
    assert not torch.equal(tasks[0].y, tasks[1].y)
    if mode == "permute":  # a permutation of the original labels keeps the class balance
        counts = [torch.bincount(t.y, minlength=10) for t in tasks]
        assert all(torch.equal(c, counts[0]) for c in counts)


def test_random_labels_are_uniform_per_image_by_default(data_root: Path) -> None:
    """LC26: "a fresh random label for every image": i.i.d. uniform labels, class counts not kept."""
    tasks = tasks_of(build("random_label_mnist", data_root, tasks=4))
    counts = [torch.bincount(t.y, minlength=10) for t in tasks]
    assert not all(torch.equal(c, counts[0]) for c in counts)
    assert build("random_label_mnist", data_root).info.options["label_mode"] == "uniform"


def test_permuted_mnist_keeps_one_subset_by_default(data_root: Path) -> None:
    """LC26 A.1.3: one fixed subset for every task; ``subset=per_task`` (Kumar23's code) draws a new one."""
    from plasticity_bench.scenarios.mnist import permuted_mnist

    def image_sets(**options: object) -> list[set[bytes]]:
        stream = permuted_mnist(0, 3, None, data_root, size=100, **options)
        out = []
        for task in tasks_of(stream):  # sorted pixel values: an image's fingerprint under any permutation
            out.append({row.sort().values.numpy().tobytes() for row in task.x.reshape(len(task.x), -1)})
        return out

    per_task = image_sets(subset="per_task")
    assert per_task[0] != per_task[1] and len(per_task[0]) == 100
    fixed = image_sets()
    assert fixed[0] == fixed[1] == fixed[2] and len(fixed[0]) == 100
    assert build("permuted_mnist", data_root).info.options["subset"] == "fixed"


def test_random_label_unknown_mode_fails_at_build(data_root: Path) -> None:
    with pytest.raises(ValueError, match="unknown label mode"):
        build("random_label_cifar", data_root, label_mode="shuffle")


def test_iid_cycles_share_the_whole_dataset(data_root: Path) -> None:
    tasks = tasks_of(build("cifar10_iid", data_root, tasks=2))
    assert tasks[0] is tasks[1]
    assert len(tasks[0].y) == 180 and len(tasks[0].val_y) == 20 and len(tasks[0].test_y) == 20
    fashion = tasks_of(build("mnist_iid@fashion", data_root, tasks=1))[0]
    assert len(fashion.y) + len(fashion.val_y) == 10 * MNIST_TRAIN_PER_CLASS
    whole = tasks_of(build("cifar10_iid", data_root, tasks=1, val_fraction=0.0))[0]
    assert len(whole.y) == 200 and whole.val_y is None  # val_fraction=0: no split (lr chosen on test)
    other = tasks_of(build("cifar10_iid", data_root, seed=1, tasks=1))[0]
    assert not torch.equal(other.val_y, tasks[0].val_y) or not torch.equal(other.val_x, tasks[0].val_x)


def test_continual_imagenet_pairs(data_root: Path) -> None:
    benchmark = build("continual_imagenet", data_root, tasks=4)
    pairs = benchmark.info.options["class_pairs"]
    flat = [c for pair in pairs for c in pair]
    assert len(set(flat)) == len(flat) == 8  # without repetition
    for task in tasks_of(benchmark):
        assert task.x.shape == (1200, 3, 32, 32) and task.test_x.shape == (200, 3, 32, 32)
        assert task.y.tolist() == [0] * 600 + [1] * 600 and task.test_y.tolist() == [0] * 100 + [1] * 100
        assert float(task.x.min()) >= 0.0 and float(task.x.max()) <= 1.0
    with pytest.raises(ValueError, match="need 10 classes, found 8"):
        build("continual_imagenet", data_root, tasks=5)


def test_continual_imagenet_loads_only_the_current_pair(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[int] = []
    original = readers.ImageNetClassFolder.load_class

    def spy(self: readers.ImageNetClassFolder, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        loaded.append(class_id)
        return original(self, class_id)

    monkeypatch.setattr(readers.ImageNetClassFolder, "load_class", spy)
    benchmark = build("continual_imagenet", data_root, tasks=4)
    assert loaded == []  # building the stream reads headers only
    for i, pair in enumerate(benchmark.info.options["class_pairs"]):
        loaded.clear()
        benchmark.train_stream[i]
        assert loaded == pair


def test_continual_imagenet_data_root_is_the_folder_itself(data_root: Path) -> None:
    benchmark = build("continual_imagenet", data_root / "continual_imagenet", tasks=1)
    assert benchmark.info.source == str(data_root / "continual_imagenet")


def test_continual_imagenet_missing_folder_names_paths(tmp_path: Path) -> None:
    with pytest.raises(readers.DatasetNotFoundError) as err:
        build("continual_imagenet", tmp_path, tasks=1)
    message = str(err.value)
    assert str(tmp_path / "continual_imagenet") in message and "<class_id>.npy" in message


def test_corrupt_imagenet_file_fails_before_training(data_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "classes"
    folder.mkdir()
    for class_id in range(IMAGENET_CLASSES):
        (folder / f"{class_id}.npy").symlink_to(data_root / "continual_imagenet" / f"{class_id}.npy")
    (folder / "3.npy").unlink()
    np.save(folder / "3.npy", np.zeros((700, 32, 32), dtype=np.uint8))  # wrongly shaped
    with pytest.raises(readers.CorruptDatasetError, match=r"3\.npy.*shape \(700, 32, 32\)"):
        build("continual_imagenet", folder, tasks=4)


def short_config(scenario: str, **fields: object) -> RunConfig:
    spec, variant = parse_scenario(scenario)
    base = {
        "variant": variant, "strategy": "dense", "compactness": 1.0, "seed": 0, "lr": spec.lr,
        "model": spec.model, "tasks": 2, "steps_per_task": 2, "batch_size": spec.batch_size,
        "optimizer": spec.optimizer,
    }  # fmt: skip
    return RunConfig(scenario=spec.name, **{**base, **fields})


@pytest.mark.parametrize(
    ("scenario", "error", "message"),
    [
        ("split_cifar100", readers.DatasetNotFoundError, "CIFAR-100 (train) not found"),
        ("cifar10_iid", readers.DatasetNotFoundError, "cifar-10-python.tar.gz"),
        ("split_mnist", readers.DatasetNotFoundError, "MNIST (train) not found"),
        ("continual_imagenet", readers.DatasetNotFoundError, "loss-of-plasticity"),
    ],
)
def test_missing_data_fails_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario: str, error: type, message: str
) -> None:
    monkeypatch.setattr("plasticity_bench.run.lone.OnlineStrategy", None)  # training would crash differently
    with pytest.raises(error, match=re.escape(message)) as err:
        execute(short_config(scenario), data_root=tmp_path)
    assert str(tmp_path) in str(err.value)


def test_corrupt_cifar_fails_before_training(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("test", "meta"):
        (folder / name).symlink_to(data_root / "cifar-100-python" / name)
    with (folder / "train").open("wb") as f:
        pickle.dump({b"data": np.zeros((4, 1024), np.uint8), b"fine_labels": [0, 1, 2, 3]}, f)
    monkeypatch.setattr("plasticity_bench.run.lone.OnlineStrategy", None)
    with pytest.raises(readers.CorruptDatasetError, match=r"'data' must be uint8 of shape \(N, 3072\)"):
        execute(short_config("cifar_5plus1"), data_root=tmp_path)


def test_fake_500_task_imagenet_stream_runs_in_bounded_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 500-task Continual ImageNet run (one step per task) keeps its peak memory flat after warm-up."""
    resource = pytest.importorskip("resource")

    images = np.random.default_rng(0).integers(0, 256, (700, 3, 32, 32), np.uint8)

    class FakeFolder:  # 1,000 classes without 2 GB of files: every class returns fresh copies of one block
        root = "fake"
        class_ids = tuple(range(1000))

        def check_class(self, class_id: int) -> None:
            pass

        def load_class(self, class_id: int) -> tuple[np.ndarray, np.ndarray]:
            return images[:600].copy(), images[600:].copy()

    monkeypatch.setattr(imagenet, "find_class_folder", lambda data_root: FakeFolder())
    peaks: dict[int, int] = {}

    def on_task(task: int) -> None:
        peaks[task] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    record = execute(
        short_config("continual_imagenet", tasks=500, steps_per_task=1, model="mlp"), on_task=on_task
    )
    assert len(record["per_task"]["online_acc"]) == 500
    assert len(record["per_task"]["checkpoint_acc"]) == 500
    assert all(len(row) == 1 for row in record["per_task"]["acc_matrix"])  # current pair only
    growth_mib = (peaks[499] - peaks[49]) / 1024
    assert growth_mib < 40, f"peak memory grew by {growth_mib:.0f} MiB over 450 tasks"
