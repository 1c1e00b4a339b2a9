"""Lazy task streams as Avalanche benchmarks.

A stream of ``K`` tasks never holds more than the task being built: :class:`TaskStream` is an Avalanche
``SequenceCLStream`` whose experiences are made on access from a ``make_task(i)`` function, and nothing
is memoised (a 500-task Permuted MNIST stream holds the base images plus one task).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from avalanche.benchmarks import CLScenario, DatasetExperience
from avalanche.benchmarks.scenarios.generic_scenario import SequenceCLStream
from avalanche.benchmarks.utils import TaskAwareSupervisedClassificationDataset
from avalanche.benchmarks.utils.data_attribute import DataAttribute, TaskLabels
from avalanche.benchmarks.utils.flat_data import ConstantSequence
from torch import Tensor
from torch.utils.data import TensorDataset


@dataclass
class TaskData:
    """One task's data, already normalised.

    Attributes:
        x: ``(N, *input_shape)`` float32 training inputs. y: ``(N,)`` int64 labels.
        test_x, test_y: the task's test split (same layout) or ``None`` for online-only scenarios.
        classes: the label values the task introduces.
        hard: ``False`` for the easy tasks of 5+1 CIFAR (excluded from its TAOA); ``True`` otherwise.
    """

    x: Tensor
    y: Tensor
    test_x: Tensor | None = None
    test_y: Tensor | None = None
    classes: tuple[int, ...] = ()
    hard: bool = True


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
    """

    scenario: str
    variant: str | None
    input_shape: tuple[int, ...]
    n_classes: int
    source: str
    options: dict[str, object] = field(default_factory=dict)


class TaskBenchmark(CLScenario):
    """An Avalanche benchmark with one lazy ``train_stream`` and its :class:`StreamInfo`."""

    def __init__(self, train_stream: TaskStream, info: StreamInfo) -> None:
        super().__init__([train_stream])
        self.info = info
