"""Stand-in streams of random tensors with a scenario's shapes, for timing runs whose data is absent.

``plasticity-bench run|reproduce --dry-run`` estimates a sweep's time by training each group of runs for a
few updates. The cost of an update depends on the shapes (input, classes, batch, network), not on the pixel
values, so where a scenario's data is not on this machine the calibration trains on a stand-in: random
inputs of the dataset's shape, labels drawn from the classes a task of the scenario holds, a test split
where the scenario has one. A stand-in never produces a record: :func:`standin_streams` is entered only by
the estimate.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

from plasticity_bench.scenarios.stream import StreamInfo, TaskBenchmark, TaskData, TaskStream

#: Per scenario: one sample's shape, the head's classes, the classes one task holds (docs/protocol.md §7).
SHAPES: dict[str, tuple[tuple[int, ...], int, int]] = {
    "permuted_mnist": ((1, 28, 28), 10, 10),
    "random_label_mnist": ((1, 28, 28), 10, 10),
    "random_label_cifar": ((3, 32, 32), 10, 10),
    "cifar_5plus1": ((3, 32, 32), 100, 5),
    "continual_imagenet": ((3, 32, 32), 2, 2),
    "split_cifar100": ((3, 32, 32), 100, 10),
    "split_mnist": ((1, 28, 28), 10, 2),
    "split_fashion": ((1, 28, 28), 10, 2),
    "mnist_iid": ((1, 28, 28), 10, 10),
    "cifar10_iid": ((3, 32, 32), 10, 10),
    "cifar100_iid": ((3, 32, 32), 100, 100),
    **{name: ((3, 224, 224), 10, 10) for name in ("imagenette", "imagewoof", "galaxy10")},
}
_ACTIVE: ContextVar[bool] = ContextVar("standin", default=False)


@contextmanager
def standin_streams() -> Iterator[None]:
    """Inside the block, :func:`active` is True: the runner builds stand-in streams instead of reading
    data (``runner.build_benchmark``)."""
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active() -> bool:
    """True inside :func:`standin_streams`."""
    return _ACTIVE.get()


def standin_benchmark(scenario: str, tasks: int, rows: int, with_test: bool) -> TaskBenchmark:
    """``tasks`` tasks of ``rows`` random training rows (float32 N(0, 1), labels uniform over the task's
    classes; task ``i`` holds classes ``i * k .. i * k + k - 1`` modulo the head) and, ``with_test``, 64
    test rows each. Drawn from a fixed generator: the same stand-in every time.

    Raises:
        KeyError: for a scenario without a stand-in shape.
    """
    shape, n_classes, per_task = SHAPES[scenario]
    gen = torch.Generator().manual_seed(0)

    def make_task(i: int) -> TaskData:
        classes = tuple((i * per_task + c) % n_classes for c in range(per_task))
        pick = torch.tensor(classes)

        def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.randn(n, *shape, generator=gen), pick[torch.randint(per_task, (n,), generator=gen)]

        x, y = draw(rows)
        test_x, test_y = draw(64) if with_test else (None, None)
        return TaskData(x, y, test_x, test_y, classes=classes)

    info = StreamInfo(scenario, None, shape, n_classes, "stand-in (random tensors, timing only)")
    return TaskBenchmark(TaskStream("train", tasks, make_task), info)
