"""The host contract: what a plugin may read from the strategy object its callbacks receive.

Two hosts run plugins: the lone training loop (:class:`~plasticity_bench.run.loop.OnlineStrategy`, an
Avalanche ``SupervisedTemplate``) and a run-batch's per-run stand-in
(:class:`~plasticity_bench.batch.trainer.RunView`). Both satisfy :class:`Host`, and every callback of our
plugins is annotated with it (``def after_update(self, strategy: Host, **kwargs)``), so a plugin written
against it runs in either (docs/architecture.md). Anything else a plugin reads is not promised.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class Host(Protocol):
    """What plugins read from the strategy (Avalanche's names).

    Attributes:
        model: the run's network (a :class:`~plasticity_bench.core.models.MaskedNet`).
        optimizer: its optimizer; per-element buffers in ``optimizer.state[param]`` (the masked-unit core
            edits them), ``param_groups`` with the base ``lr``.
        experience: the current experience; ``experience.current_experience`` is the task index and
            ``experience.task`` its tensors (``x``, ``y``, test and validation splits, ``classes``).
        mbatch: this step's ``[x, y, ...]``; a plugin may assign it (replay mixes rows in) and then says
            in ``current_rows`` how many leading rows are the current task's.
        mb_x, mb_y: this step's inputs ``(B, *input_shape)`` float32 and labels ``(B,)`` int64.
        mb_rows: ``B``, the rows of this step's batch (replayed ones included), read without a tensor op.
        mb_output: the logits of this step's forward ``(B, classes)``; ``loss`` its scalar loss.
        batches: the task's batch source; ``batches.batch(step)`` gives a step's ``(x, y)`` (probes).
        device: the training device; ``train_mb_size`` the batch size; ``eval_mb_size`` the test batch.
        plugins: the run's plugins (scenario's, then strategy's), in callback order.
        is_training: True inside training callbacks.
    """

    model: nn.Module
    optimizer: Any
    experience: Any
    batches: Any
    device: str | torch.device
    train_mb_size: int
    eval_mb_size: int
    plugins: list[Any]
    is_training: bool
    current_rows: int | None
    mbatch: list[Tensor]

    @property
    def mb_x(self) -> Tensor: ...

    @property
    def mb_rows(self) -> int: ...

    @property
    def mb_y(self) -> Tensor: ...

    @property
    def mb_output(self) -> Tensor: ...

    @property
    def loss(self) -> Tensor: ...
