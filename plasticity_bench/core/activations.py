"""Activation functions used by the masked networks (docs/protocol.md §2, §5.5)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class SmoothLeakySettings:
    """Parameters of Rand. Smooth-Leaky (Lillo & Cheney 2025; docs/protocol.md §5.5).

    ``c_s`` sharpness, ``p`` scale, ``lower``/``upper`` bounds of the random leak ``a``; ``lr`` is the
    learning rate the paper pairs with these settings (used when the user gives no ``--lr``).
    """

    c_s: float
    p: float
    lower: float
    upper: float
    lr: float


#: Per-benchmark settings of docs/protocol.md §5.5, keyed by scenario name.
SMOOTH_LEAKY_DEFAULTS: dict[str, SmoothLeakySettings] = {
    "permuted_mnist": SmoothLeakySettings(0.8, 1.0, 0.3, 0.6, 1e-3),
    "random_label_mnist": SmoothLeakySettings(2.0, 0.8, 0.3, 0.6, 1e-3),
    "random_label_cifar": SmoothLeakySettings(0.8, 3.0, 0.5, 0.5, 1e-3),
    "cifar_5plus1": SmoothLeakySettings(0.5, 0.5, 0.673, 2.673, 1e-3),
    "continual_imagenet": SmoothLeakySettings(0.5, 0.5, 0.3, 0.3, 1e-3),
    "split_cifar100": SmoothLeakySettings(0.5, 0.5, 0.673, 2.673, 1e-4),
    "iid": SmoothLeakySettings(3.0, 5.0, 0.125, 0.333, 0.1),
}


class RandSmoothLeaky(nn.Module):
    """``f(x) = a*x + (1 - a) * x * sigmoid(c_s * x / p)`` (Lillo & Cheney 2025; docs/protocol.md §5.5).

    Training mode draws ``a ~ U(lower, upper)`` per element per forward (like ``nn.RReLU``); eval mode
    uses ``a = (lower + upper) / 2``. Input and output: any shape, floating dtype.

    Raises:
        ValueError: if ``p <= 0`` or ``lower > upper``.
    """

    def __init__(self, c_s: float, p: float, lower: float, upper: float) -> None:
        super().__init__()
        if p <= 0 or lower > upper:
            raise ValueError(
                f"Rand. Smooth-Leaky needs p > 0 and lower <= upper (got p={p}, {lower}>{upper})"
            )
        self.c_s, self.p, self.lower, self.upper = c_s, p, lower, upper

    @property
    def random(self) -> bool:
        """True when a forward pass draws random leaks (training mode with ``lower < upper``)."""
        return self.training and self.upper > self.lower

    def draw_leak(self, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Leaks ``a ~ U(lower, upper)`` shaped like ``like``, from ``generator`` (default: torch's global
        RNG, which is what :meth:`forward` uses)."""
        empty = torch.empty(like.shape, dtype=like.dtype, device=like.device)  # contiguous: draw order fixed
        return empty.uniform_(self.lower, self.upper, generator=generator)

    def with_leak(self, x: Tensor, a: Tensor | float) -> Tensor:
        """``f(x)`` with the given leak ``a`` (a tensor broadcastable to ``x``, or a number)."""
        return a * x + (1 - a) * x * torch.sigmoid(self.c_s * x / self.p)

    def forward(self, x: Tensor) -> Tensor:
        a = self.draw_leak(x) if self.random else (self.lower + self.upper) / 2
        return self.with_leak(x, a)

    def extra_repr(self) -> str:
        return f"c_s={self.c_s}, p={self.p}, lower={self.lower}, upper={self.upper}"


class CReLU(nn.Module):
    """Concatenated ReLU (Shang et al. 2016; the ``crelu`` option of Kumar23 Sec. 5): every unit gives two
    features, ``relu(z)`` and ``relu(-z)``.

    Input ``(B, d[, H, W])``; output ``(B, 2d[, H, W])`` with unit ``j``'s pair at features ``2j, 2j + 1``
    (interleaved, so that a unit's fan-out columns stay consecutive, docs/protocol.md §1). ``expansion``
    tells the masked layer how many features each unit gives.
    """

    expansion = 2

    def forward(self, z: Tensor) -> Tensor:
        return torch.relu(torch.stack((z, -z), dim=2).flatten(1, 2))


def make_activation(name: str, settings: SmoothLeakySettings | None = None) -> nn.Module:
    """Build an activation module by name: ``relu`` or ``rand_smooth_leaky``.

    Raises:
        ValueError: for an unknown name, or ``rand_smooth_leaky`` without settings.
    """
    if name == "relu":
        return nn.ReLU()
    if name == "rand_smooth_leaky":
        if settings is None:
            raise ValueError("rand_smooth_leaky needs SmoothLeakySettings (see SMOOTH_LEAKY_DEFAULTS)")
        return RandSmoothLeaky(settings.c_s, settings.p, settings.lower, settings.upper)
    raise ValueError(f"unknown activation {name!r}; choose 'relu' or 'rand_smooth_leaky'")
