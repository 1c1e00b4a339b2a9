"""Optimizers and learning-rate schedules for run-batched training (docs/protocol.md §7, §12).

:class:`StackedOptimizer` is a run's :class:`~plasticity_bench.run.config.OptimizerSpec` (Adam or SGD, the
lone trainer's settings) on stacked parameters ``(R, *shape)`` with a learning rate and an Adam step counter
*per run* (per parameter, as torch keeps them), so each run gets the update its own ``torch.optim`` optimizer
makes.
:class:`RunOptimizer` is one run's window onto it, shaped like the ``torch.optim.Optimizer`` that single-run
plugins expect as ``strategy.optimizer``: its ``state`` maps the run's parameters to views of the stacked
buffers, so the masked-unit core's optimizer surgery
(:func:`~plasticity_bench.core.masks.zero_optimizer_state`,
``copy_optimizer_state``, ``reset_optimizer_state``) and ``state.pop(param)`` (a fresh start for that
parameter) act on that run only.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping

import torch
from torch import Tensor, nn
from torch.optim.adam import adam
from torch.optim.sgd import sgd

from plasticity_bench.batch.stacked import StackedNet
from plasticity_bench.run.build import make_lr_schedule
from plasticity_bench.run.config import OptimizerSpec


class StackedOptimizer:
    """Adam or SGD over the stacked parameters of a :class:`StackedNet`, each run at its own learning rate.

    Args:
        spec: the runs' optimizer (their shared config's); Adam with a step count per element is not
            offered. net: the stacked network. lrs: each run's base learning rate.

    State per stacked parameter ``p`` (``(R, *shape)``): Adam ``exp_avg``, ``exp_avg_sq`` (like ``p``) and
    ``step`` (float32 ``(R,)``); SGD with momentum ``momentum_buffer``. Zero-initialised state reproduces
    torch's lazily created state exactly (``0 * beta + g`` is ``g``).

    The update is torch's own: runs that share a learning rate are updated by one call of torch's public
    functional optimizers (``torch.optim.adam.adam`` with ``fused=True``, what
    ``torch.optim.Adam(fused=True)`` runs; ``torch.optim.sgd.sgd`` with ``foreach=True``) on the runs' rows
    of every parameter, gradient and buffer, so a run gets the arithmetic its own optimizer would do.

    Raises:
        ValueError: for per-element step counts or a learning-rate count other than the number of runs.
    """

    def __init__(self, spec: OptimizerSpec, net: StackedNet, lrs: list[float]) -> None:
        if spec.element_step:
            raise ValueError("run-batched Adam keeps one step count per run and tensor, not per element")
        if len(lrs) != net.n_runs:
            raise ValueError(f"{len(lrs)} learning rates for {net.n_runs} runs")
        self.spec, self.kind, self.momentum, self.net = spec, spec.kind, float(spec.momentum), net
        self.params = list(net.stacked.values())
        self.state: dict[nn.Parameter, dict[str, Tensor]] = {p: self._fresh(p) for p in self.params}
        self.groups: dict[float, list[int]] = {}
        for r, lr in enumerate(lrs):
            self.groups.setdefault(float(lr), []).append(r)
        self._rows: dict[str, list[list[Tensor]]] = {}
        #: True while every run's Adam step counts are equal (no run's state was dropped): then one call
        #: on the stacked tensors serves all runs (:meth:`whole`), and ``steps`` holds the common count.
        self.uniform = True
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def _fresh(self, p: nn.Parameter) -> dict[str, Tensor]:
        if self.kind == "adam":
            steps = torch.zeros(p.shape[0], dtype=torch.float32, device=p.device)
            return {"step": steps, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        return {"momentum_buffer": torch.zeros_like(p)} if self.momentum else {}

    def zero_grad(self) -> None:
        """Drop every gradient (see :meth:`StackedNet.zero_grad`)."""
        self.net.zero_grad()

    def _group_rows(self, tensors: list[list[Tensor]]) -> list[list[Tensor]]:
        """Per lr group: ``tensors[param][run]`` for every parameter, then every run of the group."""
        return [[per_run[r] for per_run in tensors for r in runs] for runs in self.groups.values()]

    def _stacked_rows(self, name: str) -> list[list[Tensor]]:
        tensors = [p.data if name == "params" else self.state[p][name] for p in self.params]
        return self._group_rows([[t[r] for r in range(self.net.n_runs)] for t in tensors])

    def check_steps(self) -> None:
        """At a task start, after the boundary's edits (an IMP rewind zeroes a run's step counts in place):
        update the stacked tensors whole again only when every run's counts agree. It reads the counts on
        the host: boundary work, not per update. Mid-task, a plugin restarts a run's counts with
        ``state.pop(param)``, which switches to updates by rows at once."""
        if self.kind != "adam":
            return
        rows = torch.stack([self.state[p]["step"] for p in self.params])  # (params, runs)
        self.uniform = bool((rows == rows[:, :1]).all())
        if self.uniform:
            for common, count in zip(self.steps, rows[:, 0]):
                common.copy_(count)

    @property
    def whole(self) -> bool:
        """One update call on the stacked tensors serves every run: one learning-rate group, gradients on
        the stacked parameters (batched kernels) and equal step counts. Elementwise, it is the arithmetic of
        one call per run's rows, with a dispatch count independent of the number of runs."""
        return len(self.groups) == 1 and not self.net.per_run and self.uniform

    @torch.no_grad()
    def step(self, lrs: list[float]) -> None:
        """One update of every run; ``lrs``: this step's learning rate of each run (Python floats)."""
        if self.whole:
            self._step_whole(lrs[0])
            return
        if not self._rows:  # views of parameters and buffers stay valid: built once
            self._rows = {name: self._stacked_rows(name) for name in ("params", *self.state[self.params[0]])}
        gradients = self.net.gradients()
        if any(g is None for per_run in gradients for g in per_run):
            raise RuntimeError("run-batched step without a gradient for every parameter and run")
        grads = self._group_rows(gradients)
        for g, runs in enumerate(self.groups.values()):
            rows = {name: tensors[g] for name, tensors in self._rows.items()}
            rows["grads"] = grads[g]
            lr = lrs[runs[0]]
            if self.kind == "adam":  # counts the steps up itself, then the fused kernel
                adam(
                    rows["params"], rows["grads"], rows["exp_avg"], rows["exp_avg_sq"], [], rows["step"],
                    fused=True, amsgrad=False, lr=lr, beta1=self.spec.BETAS[0], beta2=self.spec.BETAS[1],
                    weight_decay=0.0, eps=self.spec.EPS, maximize=False,
                )  # fmt: skip
            else:
                buffers = rows["momentum_buffer"] if self.momentum else [None] * len(rows["params"])
                sgd(
                    rows["params"], rows["grads"], buffers, foreach=True, weight_decay=0.0,
                    momentum=self.momentum, lr=lr, dampening=0.0, nesterov=False, maximize=False,
                )  # fmt: skip

    def _step_whole(self, lr: float) -> None:
        """:meth:`step` as one call on the stacked parameters (see :attr:`whole`); the per-run step rows
        are kept counting, for a later step by rows."""
        grads = [p.grad for p in self.params]
        if any(g is None for g in grads):
            raise RuntimeError("run-batched step without a gradient for every parameter and run")
        params = [p.data for p in self.params]
        if self.kind == "adam":
            adam(
                params, grads, [self.state[p]["exp_avg"] for p in self.params],
                [self.state[p]["exp_avg_sq"] for p in self.params], [], self.steps, fused=True,
                amsgrad=False, lr=lr, beta1=self.spec.BETAS[0], beta2=self.spec.BETAS[1], weight_decay=0.0,
                eps=self.spec.EPS, maximize=False,
            )  # fmt: skip
            for p in self.params:
                self.state[p]["step"].add_(1.0)
        else:
            buffers = [self.state[p]["momentum_buffer"] for p in self.params] if self.momentum else None
            sgd(
                params, grads, buffers or [None] * len(params), foreach=True, weight_decay=0.0,
                momentum=self.momentum, lr=lr, dampening=0.0, nesterov=False, maximize=False,
            )  # fmt: skip

    def run(self, r: int, lr: float) -> RunOptimizer:
        """Run ``r``'s view (see :class:`RunOptimizer`); ``lr``: that run's base learning rate."""
        return RunOptimizer(self, r, lr)


class RunState(MutableMapping):
    """One run's optimizer state: run parameter -> ``{name: view of row r of the stacked buffer}``.

    Deleting (``del state[p]`` / ``state.pop(p)``) zeroes the run's rows, step counter included: the next
    step treats the parameter as new, as torch does after its state was dropped. Assignment is refused.
    """

    def __init__(self, optimizer: StackedOptimizer, run: int) -> None:
        self.optimizer, self.run = optimizer, run
        self.aliases = optimizer.net.aliases[run]

    def __getitem__(self, param: nn.Parameter) -> dict[str, Tensor]:
        if param not in self.aliases:
            raise KeyError(param)
        stacked, r = self.aliases[param]
        return {name: buffer[r] for name, buffer in self.optimizer.state[stacked].items()}

    def __setitem__(self, param: nn.Parameter, value: object) -> None:
        raise TypeError("run-batched optimizer state is edited in place (zero_optimizer_state), not assigned")

    def __delitem__(self, param: nn.Parameter) -> None:
        for buffer in self[param].values():
            buffer.zero_()
        self.optimizer.uniform = False  # this run's step count restarts: update by rows from now on

    def __iter__(self) -> Iterator[nn.Parameter]:
        return iter(self.aliases)

    def __len__(self) -> int:
        return len(self.aliases)


class RunOptimizer:
    """What a single-run plugin sees as ``strategy.optimizer`` in a run-batched batch.

    ``state`` is a :class:`RunState`; ``param_groups`` is one group with the run's parameters and its
    base ``lr`` (read-only: changing it does not change the batched update).
    """

    def __init__(self, optimizer: StackedOptimizer, run: int, lr: float) -> None:
        self.state = RunState(optimizer, run)
        self.param_groups = [{"params": list(self.state.aliases), "lr": lr}]


class StackedSchedule:
    """Per-run learning rates, step by step, as each run's own scheduler gives them.

    One holder optimizer with a param group per run carries torch's scheduler (``constant``: none;
    ``cosine``: ``CosineAnnealingLR`` over ``total_steps``), so every run's lr follows the exact float
    sequence of its single-run schedule.
    """

    def __init__(self, name: str, lrs: list[float], total_steps: int) -> None:
        groups = [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs]
        self.holder = torch.optim.SGD(groups, lr=lrs[0])
        self.scheduler = make_lr_schedule(name, self.holder, total_steps)

    def next(self, steps: int) -> list[list[float]]:
        """The learning rates of the next ``steps`` updates: one list of per-run lrs per step."""
        rows = []
        for _ in range(steps):
            rows.append([group["lr"] for group in self.holder.param_groups])
            if self.scheduler is not None:
                self.holder.step()  # no gradients: changes nothing, keeps torch's step-order check quiet
                self.scheduler.step()
        return rows
