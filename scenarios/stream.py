"""Lazy task streams as Avalanche benchmarks.

A stream of ``K`` tasks never holds more than the task being built: :class:`TaskStream` is an Avalanche
``SequenceCLStream`` whose experiences are made on access from a ``make_task(i)`` function, and nothing
is memoised (a 500-task Permuted MNIST stream holds the base images plus one task).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from avalanche.benchmarks import CLScenario, DatasetExperience
from avalanche.benchmarks.scenarios.generic_scenario import SequenceCLStream
from avalanche.benchmarks.utils import TaskAwareSupervisedClassificationDataset
from avalanche.benchmarks.utils.data_attribute import DataAttribute, TaskLabels
from avalanche.benchmarks.utils.flat_data import ConstantSequence
from torch import Tensor
from torch.utils.data import TensorDataset

from plasticity_bench.core.options import Option

VAL_FRACTION = Option(
    "val_fraction", "float", 0.1,
    "share of each task's training rows held out to choose the lr (0: choose on the test set)",
    minimum=0.0, ours=True,
)  # fmt: skip


@dataclass
class TaskData:
    """One task's data, already normalised.

    Attributes:
        x: ``(N, *input_shape)`` float32 training inputs. y: ``(N,)`` int64 labels.
        test_x, test_y: the task's test split (same layout) or ``None`` for online-only scenarios.
        val_x, val_y: the validation rows carved from the task's training data (:func:`carve_validation`;
            not trained on), or ``None``.
        classes: the label values the task introduces.
        hard: ``False`` for the easy tasks of 5+1 CIFAR (excluded from its TAOA); ``True`` otherwise.
    """

    x: Tensor
    y: Tensor
    test_x: Tensor | None = None
    test_y: Tensor | None = None
    classes: tuple[int, ...] = ()
    hard: bool = True
    val_x: Tensor | None = None
    val_y: Tensor | None = None


def carve_validation(
    x: Tensor, y: Tensor, fraction: float, gen: torch.Generator
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Split a task's training rows into training and validation rows (docs/protocol.md §7, [ours]).

    ``round(fraction * N)`` rows, drawn by ``randperm(N, generator=gen)``, become validation rows; the rest
    keep their file order. ``fraction = 0`` returns ``(x, y, None, None)``.

    Args:
        x: ``(N, *input_shape)`` float32. y: ``(N,)`` int64. fraction: in ``[0, 1)``.

    Returns:
        ``(train_x, train_y, val_x, val_y)``.

    Raises:
        ValueError: for a fraction outside ``[0, 1)`` or one that leaves no training or no validation row.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction {fraction} must be in [0, 1)")
    n_val = round(fraction * len(y))
    if fraction == 0.0:
        return x, y, None, None
    if n_val < 1 or n_val >= len(y):
        raise ValueError(f"val_fraction {fraction} of {len(y)} rows leaves no validation or training rows")
    order = torch.randperm(len(y), generator=gen)
    val = order[:n_val].sort().values
    keep = order[n_val:].sort().values
    return x[keep], y[keep], x[val], y[val]


class TaskExperience(DatasetExperience):
    """An Avalanche experience that also exposes its tensors as ``experience.task``.

    Its ``dataset`` is a classification dataset as Avalanche's own benchmarks make them: items
    ``(x, y, task_label)`` (task label 0: one shared head), with ``targets`` and ``targets_task_labels``, so
    Avalanche's strategies and plugins (EWC, LwF, replay buffers, A-GEM) read it as they read theirs.
    """

    def __init__(self, task: TaskData, index: int) -> None:
        n = len(task.y)
        dataset = TaskAwareSupervisedClassificationDataset(
            [TensorDataset(task.x, task.y)],
            data_attributes=[DataAttribute(task.y.tolist(), "targets"), TaskLabels(ConstantSequence(0, n))],
        )
        super().__init__(dataset=dataset, current_experience=index)
        self.task = task


class TaskStream(SequenceCLStream[TaskExperience]):
    """``n_tasks`` experiences built on access by ``make_task(i)`` (int -> :class:`TaskData`)."""

    def __init__(self, name: str, n_tasks: int, make_task: Callable[[int], TaskData]) -> None:
        self._n_tasks = n_tasks
        self._make_task = make_task
        super().__init__(name=name, benchmark=None)

    def _full_length(self) -> int:
        return self._n_tasks

    def _make_experience(self, experience_idx: int) -> TaskExperience:
        return TaskExperience(self._make_task(experience_idx), experience_idx)


@dataclass(frozen=True)
class StreamInfo:
    """What a run record needs to know about the stream it ran on.

    ``input_shape``: one sample's shape, e.g. ``(1, 28, 28)``; ``source``: the files or package the data
    came from; ``variant``: data variant (``mnist5k``, ``fashion`` or ``None`` for the PROTOCOL data).
    ``imagenet_classes``: the ImageNet-1k output index of each class where a pretrained classifier's rows
    make the head (Imagenette, Imagewoof; docs/protocol.md §17), else ``None``.
    """

    scenario: str
    variant: str | None
    input_shape: tuple[int, ...]
    n_classes: int
    source: str
    options: dict[str, object] = field(default_factory=dict)
    imagenet_classes: tuple[int, ...] | None = None


class TaskBenchmark(CLScenario):
    """An Avalanche benchmark with one lazy ``train_stream`` and its :class:`StreamInfo`."""

    def __init__(self, train_stream: TaskStream, info: StreamInfo) -> None:
        super().__init__([train_stream])
        self.info = info
