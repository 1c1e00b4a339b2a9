"""The training cost of a run from its active units (docs/protocol.md §16, equal compute).

Forward plus backward is counted as 3 x the forward FLOPs of the active network per row (the backward
pass costs two forwards: Kaplan et al. 2020, "Scaling laws for neural language models", C = 6N per token),
summed over every row of every update (replayed rows included). The forward FLOPs are those of the compact
network (:func:`~plasticity_bench.core.models.count_flops` of ``export_compact()``): masked units cost
nothing. They are recounted only when a mask changed (:meth:`~plasticity_bench.core.models.MaskedNet.
mask_version`, a Python counter): the per-update path reads no tensor.
"""

from __future__ import annotations

from avalanche.core import SupervisedPlugin

from plasticity_bench.core.host import Host
from plasticity_bench.core.models import count_flops

#: Training FLOPs per row and update, in forward passes (forward 1 + backward 2).
PASSES_PER_UPDATE = 3


class TrainingCost(SupervisedPlugin):
    """Sums the training FLOPs of a run (see the module doc).

    Attributes:
        flops: training FLOPs so far (float; a 1,000-task run passes 2**53 only beyond 10^15 FLOPs per
            update, where float rounding is far below the count's own approximation).
        history: ``[update, flops]`` at the start and at every mask change: from update ``update`` (0-based,
            counted over the run) on, the active network's inference costs ``flops`` FLOPs per sample (the
            record's ``inference_flops``, docs/protocol.md §17).
    """

    BATCHABLE = True

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0.0
        self.per_row = 0
        self.version = -1
        self.updates = 0
        self.history: list[list[int]] = []

    def _recount(self, strategy: Host) -> None:
        """The forward FLOPs per row of the active network, when a mask changed since the last count."""
        model = strategy.model
        if model.mask_version() != self.version:
            shape = tuple(strategy.experience.task.x.shape[1:])
            self.per_row = count_flops(model.export_compact(), shape)
            self.version = model.mask_version()
            if self.history and self.history[-1][0] == self.updates:  # changed again before any update
                self.history.pop()
            if not self.history or self.history[-1][1] != self.per_row:
                self.history.append([self.updates, self.per_row])

    def before_training_exp(self, strategy: Host, **kwargs: object) -> None:
        self._recount(strategy)

    def after_training_iteration(self, strategy: Host, **kwargs: object) -> None:
        self._recount(strategy)
        rows = getattr(strategy, "mb_rows", None)  # our hosts; another Avalanche template: its batch
        self.flops += (
            PASSES_PER_UPDATE * self.per_row * (rows if rows is not None else len(strategy.mbatch[0]))
        )
        self.updates += 1

    def after_training_exp(self, strategy: Host, **kwargs: object) -> None:
        """Count a change made after the task's last update (a DYNO trigger at its last step)."""
        self._recount(strategy)

    def report(self) -> dict[str, list[list[int]]]:
        """The record's ``inference_flops``: :attr:`history`."""
        return {"inference_flops": [list(entry) for entry in self.history]}
