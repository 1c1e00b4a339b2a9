"""Tiny Experience Replay for the Split-* scenarios (docs/protocol.md §7; Chaudhry et al. 2019, "Tiny ER").

Spec: a buffer of up to 50 images per seen class and at most 200 in total; from task 2 on, every
mini-batch mixes current-task and replay samples at replay fraction 0.5; after each task, up to 50 images
of every new class are added.

Our choices [ours]:

- Mixing (option ``replay_mix``; LC26 does not say how): ``replace`` (default) replaces the last
  ``B // 2`` rows of each mini-batch of ``B`` rows by buffer samples, so the batch size and the steps per
  task stay those of the scenario (the replaced current-task rows come back in later epochs in another
  order); ``concat`` appends ``B`` buffer samples to the full current-task batch (the common ER
  implementation; the update sees ``2B`` rows). Both draw uniformly without replacement (with
  replacement only if the buffer holds fewer images than asked).
- Over capacity: when adding new classes would exceed the total, every class is cut to the same quota
  ``min(per_class, capacity // classes_seen)`` (keeping a random subset: images are stored in a random
  order and the tail is dropped); slots left by the integer division stay empty.
- Online accuracy (option ``online_rows``): over the current-task rows of a mixed batch only (default;
  replayed rows were seen before and say nothing of plasticity), or over all its rows (results protocol 2).
  The plugin names the current-task rows through ``strategy.current_rows``.
- Sampling uses one generator per run, ``generator(seed, "replay")``, and additions
  ``generator(seed, "replay-add", task)``: every strategy sees the same replayed images.

Avalanche's ``ReplayPlugin`` + ``ClassBalancedBuffer`` concatenate a replay dataloader to the task's
dataloader, which does not give "half of every mini-batch" with the tensor-sliced loop of
:class:`~plasticity_bench.run.loop.OnlineStrategy`; this plugin edits ``strategy.mbatch`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.storage_policy import ExperienceBalancedBuffer
from torch import Tensor

from plasticity_bench.core.host import Host
from plasticity_bench.core.options import Option
from plasticity_bench.core.seeding import derive_seed, generator

ONLINE_ROWS = Option(
    "online_rows", "str", "current",
    "online accuracy under replay: over the current-task rows of a mixed batch, or over all its rows",
    ("current", "all"), ours=True,
)  # fmt: skip
PER_CLASS = 50
CAPACITY = 200
MIX_MODES = ("replace", "concat")
REPLAY_MIX = Option(
    "replay_mix",
    "str",
    "replace",
    "Tiny ER: replay replaces half of the batch, or is appended to it",
    MIX_MODES,
    ours=True,
)


def sample_rows(x: Tensor, y: Tensor, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` rows of ``(x, y)`` drawn uniformly without replacement (with replacement when there are fewer
    than ``n``) by the CPU generator ``gen``."""
    size = len(y)
    draw = torch.randperm(size, generator=gen)[:n] if size >= n else torch.randint(size, (n,), generator=gen)
    index = draw.to(y.device)
    return x[index], y[index]


class TinyERPlugin(SupervisedPlugin):
    """Class-balanced replay buffer that supplies half of every mini-batch (see module doc).

    Args:
        seed: run seed (all random choices derive from it).
        per_class: most images kept per class (50).
        capacity: most images kept in total (200).
        mix: ``replace`` or ``concat`` (see the module docstring).
        count_replay: the online accuracy counts the replayed rows too (``online_rows=all``).

    Attributes:
        buffer: class id -> ``(x, y)``, ``x`` ``float32`` ``(n_c, *input_shape)``, ``y`` ``int64`` ``(n_c,)``,
            on the training device.

    Raises:
        ValueError: for non-positive sizes or an unknown mix mode.
    """

    def __init__(
        self, seed: int, per_class: int = PER_CLASS, capacity: int = CAPACITY, mix: str = REPLAY_MIX.default,
        count_replay: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        if per_class < 1 or capacity < 1:
            raise ValueError(f"per_class and capacity must be >= 1 (got {per_class}, {capacity})")
        self.mix_mode = REPLAY_MIX.parse(mix)
        self.count_replay = count_replay
        self.seed, self.per_class, self.capacity = seed, per_class, capacity
        self.buffer: dict[int, tuple[Tensor, Tensor]] = {}
        self._generator = generator(seed, "replay")
        self._x: Tensor | None = None
        self._y: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self._y is None else len(self._y)

    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` buffer images and labels, uniformly without replacement when the buffer has ``n``.

        Raises:
            RuntimeError: the buffer is empty.
        """
        if self._x is None or self._y is None:
            raise RuntimeError("the replay buffer is empty")
        return sample_rows(self._x, self._y, n, self._generator)

    def mix(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The batch mixed with buffer samples at replay fraction 0.5 (unchanged while the buffer is empty).

        ``replace``: the last ``len(y) // 2`` rows replaced (same size); ``concat``: ``len(y)`` buffer rows
        appended (twice the size).
        """
        n_replay = len(y) // 2 if self.mix_mode == "replace" else len(y)
        if len(self) == 0 or n_replay == 0:
            return x, y
        replay_x, replay_y = self.sample(n_replay)
        keep = len(y) - n_replay if self.mix_mode == "replace" else len(y)
        return torch.cat([x[:keep], replay_x]), torch.cat([y[:keep], replay_y])

    def add(
        self,
        x: Tensor,
        y: Tensor,
        classes: Sequence[int],
        gen: torch.Generator,
        device: torch.device | str | None = None,
    ) -> None:
        """Store up to ``per_class`` random rows of every class of ``classes`` not yet in the buffer, then
        shrink every class to the common quota if the total exceeds ``capacity``.

        Args:
            x: ``float32`` ``(N, *input_shape)`` task inputs. y: ``int64`` ``(N,)`` labels.
            gen: CPU generator choosing the rows. device: where the buffer lives (default: ``x``'s device).
        """
        for c in classes:
            c = int(c)
            if c in self.buffer:
                continue
            rows = torch.nonzero(y == c).flatten()
            if len(rows) == 0:
                continue
            pick = rows[torch.randperm(len(rows), generator=gen)[: self.per_class].to(rows.device)]
            self.buffer[c] = (x[pick].to(device or x.device), y[pick].to(device or x.device))
        quota = min(self.per_class, self.capacity // max(1, len(self.buffer)))
        self.buffer = {c: (bx[:quota], by[:quota]) for c, (bx, by) in self.buffer.items()}
        if self.buffer:
            self._x = torch.cat([bx for bx, _ in self.buffer.values()])
            self._y = torch.cat([by for _, by in self.buffer.values()])

    def before_training_iteration(self, strategy: Host, **kwargs: object) -> None:
        """Mix buffer samples into ``strategy.mbatch`` (from task 2 on) and name its current-task rows."""
        x, y = strategy.mbatch[0], strategy.mbatch[1]
        strategy.mbatch = list(self.mix(x, y))
        if len(self) and not self.count_replay:
            strategy.current_rows = len(y) - len(y) // 2 if self.mix_mode == "replace" else len(y)

    def after_training_exp(self, strategy: Host, **kwargs: object) -> None:
        """Add up to ``per_class`` images of each new class of the task just trained (``task.classes``)."""
        task = strategy.experience.task
        index = strategy.experience.current_experience
        self.add(task.x, task.y, task.classes, generator(self.seed, "replay-add", index), strategy.device)


class ExperienceReplayPlugin(SupervisedPlugin):
    """Experience replay (the ``replay`` strategy, docs/protocol.md §14) on this benchmark's own batches.

    The memory is Avalanche's ``ExperienceBalancedBuffer`` (what its ``ReplayPlugin`` uses: ``mem_size``
    samples split evenly over the experiences seen, reservoir-sampled within each). Avalanche's
    ``ReplayDataLoader`` would replace the task's batches with its own, so the current-task rows would
    differ from every other strategy's on the same seed; here every step keeps the stream's ``B``
    current-task rows and appends ``B`` memory rows (Avalanche's default ``batch_size_mem`` = the batch
    size), drawn by ``generator(seed, "replay")``. The reservoir draws of task ``i`` use torch's RNG seeded
    from ``derive_seed(seed, "replay-buffer", i)``, leaving the global RNG as it was.

    Args:
        seed: run seed. mem_size: memory size (samples). count_replay: as :class:`TinyERPlugin`.
    """

    def __init__(self, seed: int, mem_size: int, count_replay: bool = False) -> None:
        super().__init__()
        self.seed, self.count_replay = seed, count_replay
        self.storage = ExperienceBalancedBuffer(max_size=mem_size, adaptive_size=True)
        self._generator = generator(seed, "replay")
        self._x: Tensor | None = None
        self._y: Tensor | None = None

    def before_training_iteration(self, strategy: Host, **kwargs: object) -> None:
        """Append ``B`` memory rows to the step's batch (from the second experience on)."""
        if self._x is None or self._y is None:
            return
        x, y = strategy.mbatch[0], strategy.mbatch[1]
        memory_x, memory_y = sample_rows(self._x, self._y, len(y), self._generator)
        strategy.mbatch = [torch.cat([x, memory_x]), torch.cat([y, memory_y])]
        if not self.count_replay:
            strategy.current_rows = len(y)

    def after_training_exp(self, strategy: Host, **kwargs: object) -> None:
        """Add the experience to the memory; keep the memory's rows as tensors on the device."""
        index = strategy.experience.current_experience
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, "replay-buffer", index))
            self.storage.post_adapt(strategy, strategy.experience)
        items = [self.storage.buffer[i] for i in range(len(self.storage.buffer))]
        self._x = torch.stack([item[0] for item in items]).to(strategy.device)
        self._y = torch.as_tensor([int(item[1]) for item in items], device=strategy.device)
