"""Every named network (docs/protocol.md §2, §17) behind one builder: the LC26 / Kumar23 networks of
:mod:`plasticity_bench.core.models` and VGG11 (:mod:`plasticity_bench.core.vgg`)."""

from __future__ import annotations

from typing import Any

from torch import nn

from plasticity_bench.core.models import NETWORKS, ActivationFactory, MaskedNet, build_model
from plasticity_bench.core.options import Option
from plasticity_bench.core.vgg import WEIGHTS, WIDTH_SCALE, build_vgg11

#: Networks whose conv channels are units too (their runs cannot share a run-batch, docs/protocol.md §12).
CONV_UNIT_NETWORKS = ("vgg11",)
NETWORK_NAMES = (*sorted(NETWORKS), *CONV_UNIT_NETWORKS)
#: The run options a network reads (docs/protocol.md §17).
NETWORK_OPTIONS: dict[str, tuple[Option, ...]] = {"vgg11": (WEIGHTS, WIDTH_SCALE)}


def default_init(name: str) -> str:
    """The init a network draws its weights from by default (``kaiming`` or ``torch_default``).

    Raises:
        ValueError: for an unknown network.
    """
    check_network(name)
    return "kaiming" if name in CONV_UNIT_NETWORKS else NETWORKS[name].default_init


def check_network(name: str) -> None:
    """Raises ValueError naming the choices when ``name`` is not a network."""
    if name not in NETWORK_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(NETWORK_NAMES)}")


def build_network(
    name: str,
    input_shape: tuple[int, ...],
    n_classes: int,
    activation: ActivationFactory = nn.ReLU,
    width_factor: float = 1.0,
    width_scale: float = 1.0,
    **model_options: Any,
) -> MaskedNet:
    """:func:`~plasticity_bench.core.models.build_model` for the LC26 / Kumar23 networks (``model_options``:
    its ``init``, ``hidden_activation``, ``layer_norm``), :func:`~plasticity_bench.core.vgg.build_vgg11` for
    ``vgg11`` (``width_scale`` applies to it only). Weights are drawn from torch's global RNG.

    Raises:
        ValueError: for an unknown network, a conv net on a non-image input, or a CReLU / layer-norm
            option on VGG11 (its units are conv channels).
    """
    check_network(name)
    if name not in CONV_UNIT_NETWORKS:
        return build_model(
            name, input_shape, n_classes, activation, width_factor=width_factor, **model_options
        )
    if model_options.get("layer_norm") or model_options.get("hidden_activation") is not None:
        raise ValueError(f"{name} takes no crelu / layernorm modifier (its units are conv channels)")
    init = model_options.get("init") or default_init(name)
    return build_vgg11(input_shape, n_classes, activation, width_factor, width_scale, init)
