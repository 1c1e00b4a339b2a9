"""Per-unit probes on one mini-batch: activation frequency and as-if-active gradient.

Used by the Grow selector (docs/protocol.md §4.1), the GradMax-style selector (§5.4), DYNO (§6) and the
cohort diagnostics (§9). Hooks are attached only for the probe and removed before returning; the probe
leaves parameter ``.grad`` fields and the model's train/eval mode as they were.

Every score is a deterministic function of the network and the batch (§4.1): activations are evaluated in
eval mode, so a stochastic activation (Rand. Smooth-Leaky draws a slope per element in training mode) is
scored at its eval-mode slope, and scoring the same batch twice gives the same scores.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from plasticity_bench.core.host import Host
from plasticity_bench.core.masks import MaskedActivation

TAU = 0.05  # activation threshold of LC26 App. A.6.1


@dataclass
class Probe:
    """Pre-activations of every masked layer on one batch, and optionally ``dL/dh``.

    ``z[l]``: ``(B, d_l)`` (or ``(B, d_l, H, W)``) pre-activations (after the layer norm where there is one),
    detached. ``grad_h[l]``: gradient of
    the batch-mean cross-entropy with respect to the layer's masked output ``h = act(z) * m`` (same
    shape), defined for inactive units too because their fan-out weights exist; ``None`` if not asked.
    """

    z: list[Tensor]
    grad_h: list[Tensor] | None
    activations: list[nn.Module]


def probe(model: nn.Module, x: Tensor, y: Tensor | None = None) -> Probe:
    """Run ``model`` on ``x`` in eval mode and capture every masked layer's ``z`` (and ``dL/dh`` if ``y``).

    Raises:
        ValueError: if the model has no :class:`MaskedActivation` modules.
    """
    units = [m for m in model.modules() if isinstance(m, MaskedActivation)]
    if not units:
        raise ValueError("probe needs a model with masked layers (MaskedActivation modules)")
    zs: list[Tensor] = []
    hs: list[Tensor] = []

    def hook(module: MaskedActivation, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        z = inputs[0] if module.norm is None else module.norm(inputs[0], module.mask)
        zs.append(z.detach())
        hs.append(output)

    handles = [u.register_forward_hook(hook) for u in units]
    was_training = model.training
    model.eval()
    try:
        with torch.set_grad_enabled(y is not None):
            logits = model(x)
            grads = None
            if y is not None:
                loss = nn.functional.cross_entropy(logits, y)
                grads = [g.detach() for g in torch.autograd.grad(loss, hs)]
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return Probe(zs, grads, [u.activation for u in units])


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside the block, its previous train/eval mode restored after it."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def _unit_mean(values: Tensor) -> Tensor:
    """Mean over every dimension but the unit dimension 1: ``(B, d[, H, W]) -> (d,)``."""
    return values.transpose(0, 1).reshape(values.shape[1], -1).mean(1)


def unit_output(z: Tensor, activation: nn.Module) -> Tensor:
    """Each unit's output as if it were active: ``activation(z)`` (eval mode, no grad), shaped like ``z``.
    An activation giving several features per unit (CReLU: ``relu(z)``, ``relu(-z)``) has them summed, which
    for CReLU is ``|z|``."""
    with torch.no_grad(), eval_mode(activation):
        h = activation(z)
    if h.shape[1] == z.shape[1]:
        return h
    return h.view(z.shape[0], z.shape[1], -1, *z.shape[2:]).sum(2)


def activation_frequency(z: Tensor, activation: nn.Module, tau: float = TAU) -> Tensor:
    """``act(j)``: fraction of ``activation(z_j) > tau`` over the batch (and H, W) (docs/protocol.md §4.1,
    §9).

    ``z``: ``(B, d[, H, W])``; returns float32 ``(d,)``, computed as if every unit were switched on, with
    the activation in eval mode (deterministic; :func:`unit_output`).
    """
    return _unit_mean((unit_output(z, activation) > tau).float())


def mean_abs_output(z: Tensor, activation: nn.Module) -> Tensor:
    """``E|h_j|``: mean absolute output of each unit over the batch (and H, W), as if active; float32 ``(d,)``
    (the quantity of ReDo's dormancy score, Sokar et al. 2023 Eq. 1, and of CBP's contribution utility)."""
    return _unit_mean(unit_output(z, activation).abs())


def activation_derivative(z: Tensor, activation: nn.Module) -> Tensor:
    """Elementwise ``act'(z)`` (same shape as ``z``), by autograd on the activation alone, in eval mode."""
    z = z.detach().requires_grad_(True)
    with torch.enable_grad(), eval_mode(activation):
        (grad,) = torch.autograd.grad(activation(z).sum(), z)
    return grad


def as_if_active_gradient(z: Tensor, grad_h: Tensor, activation: nn.Module) -> Tensor:
    """``grad(j)``: mean ``|dL/dz_j|`` over the batch (and H, W) as if unit ``j`` were active.

    ``dL/dz_j = act'(z_j) * (W_next[:, j]^T delta_next)`` and the second factor is ``dL/dh_j``
    (docs/protocol.md §5.4, §9). For active units this is the real gradient. Returns float32 ``(d,)``. With
    several features per unit (CReLU) the chain rule runs through autograd (a vector-Jacobian product).
    """
    if grad_h.shape == z.shape:
        return _unit_mean((activation_derivative(z, activation) * grad_h).abs())
    z = z.detach().requires_grad_(True)
    with torch.enable_grad(), eval_mode(activation):
        (grad,) = torch.autograd.grad(activation(z), z, grad_outputs=grad_h)
    return _unit_mean(grad.abs())


def probe_batch(strategy: Host, size: int | None = None) -> tuple[Tensor, Tensor]:
    """A mini-batch to probe the network on: inputs ``(B, ...)`` and labels ``(B,)`` on the strategy's device.

    ``size=None``: the batch structural edits and cohort diagnostics use at a task's start. In
    :class:`~plasticity_bench.run.loop.OnlineStrategy` (and a run-batch) that is the task's first training
    batch (``strategy.batches.batch(0)``); in any other Avalanche ``SupervisedTemplate`` (``Naive``, ``EWC``,
    ...) the first ``train_mb_size`` samples of the current experience's dataset. ``size=n``: the first ``n``
    samples of the experience's dataset, in dataset order (fewer if it is smaller).
    """
    batches = getattr(strategy, "batches", None)
    if size is None and batches is not None:
        return batches.batch(0)
    dataset = strategy.experience.dataset
    n = min(len(dataset), size or strategy.train_mb_size)
    # item by item, not through a DataLoader: iterating one draws a seed from torch's global RNG
    items = [dataset[i] for i in range(n)]
    x = torch.stack([torch.as_tensor(item[0]) for item in items])
    y = torch.as_tensor([int(item[1]) for item in items])
    return x.to(strategy.device), y.to(strategy.device)
