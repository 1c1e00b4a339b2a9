"""Ops and host syncs per update (docs/protocol.md §12): what decides a small network's speed on a GPU.

A window of updates inside one task is recorded with ``torch.profiler`` (public API; it sees the backward
pass too) and its ``aten::`` events are counted: all of them (dispatched ops, nested ones included), and
those that make the host wait for the device (:data:`SYNC_OPS`: reading a value, ops whose output size
depends on the data; not the step count a fused optimizer's CPU kernel reads, :data:`HOST_SCALAR_KERNELS`,
nor draws marked as host values, :data:`~plasticity_bench.core.seeding.HOST_RANGE`).
Work a plugin marks as a structural edit (``torch.profiler.record_function`` with
:data:`EDIT_RANGE`: DYNO's triggers) is counted apart, like task-boundary work, which the window leaves out.
On a CPU nothing waits, but the same ops would: a plugin that syncs every update is caught here.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field

from avalanche.core import SupervisedPlugin
from torch.profiler import ProfilerActivity, profile

from plasticity_bench.core.host import Host
from plasticity_bench.core.seeding import HOST_RANGE

#: Ops whose result the host must wait for: a value read (``item``, ``bool``, ``float`` of a tensor) or an
#: output whose size depends on the data (``nonzero``, boolean-mask indexing, ``unique``).
SYNC_OPS = frozenset({
    "aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::unique",
    "aten::_unique", "aten::_unique2", "aten::unique_consecutive", "aten::unique_dim", "aten::equal",
})  # fmt: skip
#: The ``record_function`` name of structural-edit work inside a task (counted apart).
EDIT_RANGE = "plasticity_bench::edit"
#: Fused optimizer kernels whose CPU implementation reads its step count as a host scalar; on a GPU the
#: kernel reads it on the device, so the read is counted as an op, not a sync.
HOST_SCALAR_KERNELS = frozenset({"aten::_fused_adam_", "aten::_fused_adamw_", "aten::_fused_sgd_"})


@dataclass
class OpCounts:
    """Counts over ``updates`` updates: all ``aten::`` ops and the syncing ones, outside and inside
    structural-edit ranges; ``syncs_by_name`` names the syncing ops seen outside them."""

    updates: int
    ops: int = 0
    syncs: int = 0
    edit_ops: int = 0
    edit_syncs: int = 0
    syncs_by_name: Counter = field(default_factory=Counter)

    @property
    def ops_per_update(self) -> float:
        return self.ops / max(1, self.updates)

    @property
    def syncs_per_update(self) -> float:
        return self.syncs / max(1, self.updates)


def count_events(events: list, updates: int) -> OpCounts:
    """:class:`OpCounts` of profiler ``events`` (``profile.events()``) recorded over ``updates`` updates."""
    counts = OpCounts(updates)
    for event in events:
        if not event.name.startswith("aten::"):
            continue
        parent, ancestors = event.cpu_parent, set()
        while parent is not None:
            ancestors.add(parent.name)
            parent = parent.cpu_parent
        in_edit = EDIT_RANGE in ancestors
        sync = event.name in SYNC_OPS and not ancestors & HOST_SCALAR_KERNELS and HOST_RANGE not in ancestors
        if in_edit:
            counts.edit_ops, counts.edit_syncs = counts.edit_ops + 1, counts.edit_syncs + sync
        else:
            counts.ops, counts.syncs = counts.ops + 1, counts.syncs + sync
            if sync:
                counts.syncs_by_name[event.name] += 1
    return counts


class DispatchWindow(SupervisedPlugin):
    """Records updates ``first + 1 .. first + updates`` of task ``task`` (counted from the end of update
    ``first``'s callbacks to the end of the last one's) and keeps their :class:`OpCounts` in ``counts``.
    Add it last among a run's plugins (a batch: to its first run only)."""

    BATCHABLE = True

    def __init__(self, task: int = 1, first: int = 4, updates: int = 20) -> None:
        super().__init__()
        self.task, self.first, self.updates = task, first, updates
        self.counts: OpCounts | None = None
        self._profile: profile | None = None
        self._step = -1

    def before_training_exp(self, strategy: Host, **kwargs: object) -> None:
        self._step = -1

    def after_training_iteration(self, strategy: Host, **kwargs: object) -> None:
        self._step += 1
        if strategy.experience.current_experience != self.task:
            return
        if self._step == self.first:
            with warnings.catch_warnings():  # the profiler warns that it found no GPU
                warnings.simplefilter("ignore")
                self._profile = profile(activities=[ProfilerActivity.CPU])
                self._profile.start()
        elif self._step == self.first + self.updates and self._profile is not None:
            self._profile.stop()
            self.counts = count_events(list(self._profile.events()), self.updates)
            self._profile = None
