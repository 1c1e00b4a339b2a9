"""Adam with a step count per element, so that a reset entry restarts its bias correction (docs/protocol.md
§14; LoP's AdamGnT, Dohare et al. 2024).

Torch's Adam keeps one step count per parameter tensor. When ReDo or continual backprop resets a unit, its
moments are zeroed but the tensor's count stays at ``t``: the first update of a reset entry is then
``lr * (1 - b1) g / sqrt((1 - b2) g^2) ~ 3.2 lr`` instead of ``lr``, and the entry takes several lr-sized
steps for tens of updates. Here ``state["step"]`` has the parameter's shape, so zeroing a unit's slice of
every per-element buffer (:func:`~plasticity_bench.core.masks.zero_optimizer_state`) zeroes its count too, and
its next update is bias-corrected as if it were a fresh parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor


class ElementStepAdam(torch.optim.Optimizer):
    """Adam (Kingma & Ba 2015, Alg. 1) whose step count ``t`` is a tensor per parameter of the parameter's
    shape (float32), one count per element.

    Update per element: ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``, ``t <- t + 1``,
    ``p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``: torch's Adam to float rounding while
    no entry is reset. State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``, all shaped like it.
    ``weight_decay`` as torch's Adam: ``g <- g + wd p`` before the moments, or, ``decoupled_weight_decay``,
    AdamW's ``p <- p (1 - lr wd)`` before the update.

    Args:
        params: parameters or parameter groups. lr: learning rate (> 0). betas, eps, weight_decay,
            decoupled_weight_decay: as torch's Adam.

    Raises:
        ValueError: for a non-positive lr or betas outside ``[0, 1)``.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
    ) -> None:
        if lr <= 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"ElementStepAdam needs lr > 0 and betas in [0, 1) (got {lr}, {betas})")
        decay = {"weight_decay": weight_decay, "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, **decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One Adam update of every parameter with a gradient; returns ``closure()``'s loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is not None:
                    self._update(param, group, beta1, beta2)
        return loss

    def _update(self, param: Tensor, group: dict, beta1: float, beta2: float) -> None:
        state, lr, eps, decay = self.state[param], group["lr"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = torch.zeros_like(param, dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        grad, step = param.grad, state["step"]
        if decay and group["decoupled_weight_decay"]:
            param.mul_(1 - lr * decay)
        elif decay:
            grad = grad.add(param, alpha=decay)
        step.add_(1.0)
        state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        first = 1 - torch.pow(beta1, step)
        second = 1 - torch.pow(beta2, step)
        denom = (state["exp_avg_sq"] / second).sqrt_().add_(eps)
        param.addcdiv_(state["exp_avg"] / first, denom, value=-lr)
