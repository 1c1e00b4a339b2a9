"""VGG11 with a unit mask on every conv channel and hidden dense unit, and its ImageNet-pretrained weights
(DYNO workshop paper, App. A; Simonyan & Zisserman 2015, configuration A; docs/protocol.md §17).

The layers are torchvision's ``vgg11`` (no batch norm): eight 3x3 convs (64, 128, 256, 256, 512, 512, 512,
512 channels) with a 2x2 max-pool after convs 1, 2, 4, 6 and 8, an adaptive average pool to 7x7, then two
4096-wide dense layers (ReLU, dropout 0.5) and the classifier. Here every conv and hidden dense layer is a
masked layer (10 of them: layers 0-7 are the convs, 8 and 9 the dense layers); the classifier is the
unmasked head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from plasticity_bench.core.masks import MaskedActivation
from plasticity_bench.core.models import MaskedNet, init_weights
from plasticity_bench.core.options import Option

#: Conv channels of VGG11 ("M": a 2x2 max-pool after the conv before it).
VGG11_CONVS: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
VGG11_DENSE = (4096, 4096)
POOLED = (7, 7)  # torchvision's AdaptiveAvgPool2d before the classifier
DROPOUT = 0.5
#: torchvision ``vgg11`` state-dict prefixes of the masked layers, input side first, then the classifier.
TORCHVISION_LAYERS = (
    *(f"features.{i}" for i in (0, 3, 6, 8, 11, 13, 16, 18)), "classifier.0", "classifier.3",
)  # fmt: skip
TORCHVISION_HEAD = "classifier.6"
#: ``--weights`` value that loads torchvision's own ImageNet weights (from torch hub's cache).
TORCHVISION_WEIGHTS = "imagenet1k_v1"

WEIGHTS = Option(
    "weights", "str", "none",
    f"VGG11 weights: none (random init), {TORCHVISION_WEIGHTS} (torchvision's, from its cache), or the path "
    "of a torchvision vgg11 state-dict file",
)  # fmt: skip
WIDTH_SCALE = Option(
    "width_scale", "float", 1.0,
    "VGG11: multiplies every standard width (1: the paper's; smaller for a quick look on a CPU)",
    minimum=0.0, ours=True,
)  # fmt: skip


def nominal_widths(scale: float = 1.0) -> tuple[int, ...]:
    """The masked layers' standard widths ``(64, 128, 256, 256, 512, 512, 512, 512, 4096, 4096)`` times
    ``scale`` (at least 1 each)."""
    convs = [c for c in VGG11_CONVS if c != "M"]
    return tuple(max(1, round(int(c) * scale)) for c in (*convs, *VGG11_DENSE))


def _after_modules(n_convs: int) -> list[nn.Module]:
    """What follows each masked layer's output: pooling after convs 1, 2, 4, 6, 8 (the last also the
    average pool and the flatten), dropout after the dense layers."""
    pools = [i for i, c in enumerate(VGG11_CONVS) if c == "M"]
    pooled_convs = {p - 1 - k for k, p in enumerate(pools)}  # index of the conv before each "M"
    after: list[nn.Module] = [nn.MaxPool2d(2) if i in pooled_convs else nn.Identity() for i in range(n_convs)]
    after[-1] = nn.Sequential(nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(POOLED), nn.Flatten())
    return [*after, *(nn.Dropout(DROPOUT) for _ in VGG11_DENSE)]


def build_vgg11(
    input_shape: tuple[int, ...],
    n_classes: int,
    activation: Callable[[], nn.Module] = nn.ReLU,
    width_factor: float = 1.0,
    width_scale: float = 1.0,
    init: str = "kaiming",
) -> MaskedNet:
    """VGG11 on ``(3, H, W)`` inputs (H, W >= 32: five 2x2 pools) with all units active.

    Args:
        width_factor: DYNO's reserve (each width times it, docs/protocol.md §6). width_scale: shrinks
            the standard widths (:data:`WIDTH_SCALE`). init: ``kaiming`` (torchvision's VGG init for convs
            is Kaiming too) or ``torch_default``; weights are drawn from torch's global RNG.

    Raises:
        ValueError: for an input that is not ``(C, H, W)`` with H, W >= 32.
    """
    if len(input_shape) != 3 or min(input_shape[1:]) < 32:
        raise ValueError(f"vgg11 needs image input (C, H, W) with H, W >= 32, got shape {input_shape}")
    widths = [max(1, round(w * width_factor)) for w in nominal_widths(width_scale)]
    n_convs = len(widths) - len(VGG11_DENSE)
    inputs = [input_shape[0], *widths[: n_convs - 1]]
    producers: list[nn.Linear | nn.Conv2d] = [nn.Conv2d(a, b, 3, padding=1) for a, b in zip(inputs, widths)]
    flat = widths[n_convs - 1] * POOLED[0] * POOLED[1]
    dense_in = [flat, *widths[n_convs:-1]]
    producers += [nn.Linear(a, b) for a, b in zip(dense_in, widths[n_convs:])]
    units = [MaskedActivation(w, activation()) for w in widths]
    net = MaskedNet.from_layers(
        producers, units, _after_modules(n_convs), nn.Linear(widths[-1], n_classes), init
    )
    init_weights(net, init)
    return net


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class WeightsError(ValueError):
    """Pretrained weights that cannot be read or do not fit the network; the message says why and what to
    do."""


def check_weights(source: str) -> None:
    """Refuse a ``--weights`` file that is not there before any run starts (``none`` and
    ``imagenet1k_v1``, which the run fetches into torch hub's cache when online, pass).

    Raises:
        WeightsError: naming the path and how to make the file.
    """
    if source not in ("none", TORCHVISION_WEIGHTS) and not Path(source).expanduser().is_file():
        raise WeightsError(f"--weights {source}: no such file; {SAVE_HINT}")


SAVE_HINT = (
    "save torchvision's vgg11 weights with "
    "torch.save(torchvision.models.vgg11(weights='IMAGENET1K_V1').state_dict(), PATH)"
)


def read_weights(source: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The state dict named by ``source`` (:data:`WEIGHTS`) and what the record says of it
    (``{"weights": source, "sha256": ...}``).

    ``imagenet1k_v1``: torchvision's ``VGG11_Weights.IMAGENET1K_V1`` from torch hub's cache (torchvision
    downloads it there when the machine is online). A path: a file saved with ``torch.save(state_dict)``
    in torchvision's ``vgg11`` key names, loaded with ``weights_only=True`` (no code runs).

    Raises:
        WeightsError: a missing or unreadable file, naming where to get the weights.
    """
    if source == TORCHVISION_WEIGHTS:
        from torchvision.models import VGG11_Weights

        weights = VGG11_Weights.IMAGENET1K_V1
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if not path.is_file():
            try:
                weights.get_state_dict(progress=False)
            except OSError as err:
                raise WeightsError(
                    f"torchvision's VGG11 ImageNet weights are not in {path.parent} and cannot be downloaded "
                    f"({type(err).__name__}); copy {weights.url} there, or pass --weights PATH"
                ) from None
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise WeightsError(f"--weights {source}: no such file; {SAVE_HINT}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle, zip and runtime errors for a bad file
        raise WeightsError(f"--weights {path}: not a readable state-dict file ({err})") from None
    return state, {"weights": source, "sha256": file_sha256(path)}


def load_pretrained(net: MaskedNet, state: dict[str, Tensor], head_classes: Sequence[int] | None) -> None:
    """Put torchvision VGG11 weights into ``net`` (built by :func:`build_vgg11`, any reserve).

    Each masked layer's first ``d`` units (``d`` the pretrained width) get the pretrained fan-in and
    bias, and their fan-out columns the pretrained weights between pretrained units; the reserve units'
    fan-out is zero, so the network computes the pretrained function (DYNO switches the reserve off).
    The head: with ``head_classes`` (the ImageNet class index of each output, Imagenette/Imagewoof) the
    pretrained classifier's rows of those classes; otherwise it keeps its fresh draw (Galaxy10).

    Raises:
        WeightsError: for a state dict without VGG11's keys or with a layer wider than ``net``'s.
    """
    missing = [k for k in (*TORCHVISION_LAYERS, TORCHVISION_HEAD) if f"{k}.weight" not in state]
    if missing:
        raise WeightsError(f"the weights have no {missing[0]}.weight: not a torchvision vgg11 state dict")
    with torch.no_grad():
        inputs = state[f"{TORCHVISION_LAYERS[0]}.weight"].shape[1]  # the image's channels
        for layer, key in zip(net.masked_layers(), TORCHVISION_LAYERS):
            _fit(layer.producer, state[f"{key}.weight"], state[f"{key}.bias"], inputs, key)
            inputs = state[f"{key}.weight"].shape[0]
        if head_classes is not None:
            rows = torch.as_tensor(list(head_classes))
            weight, bias = state[f"{TORCHVISION_HEAD}.weight"][rows], state[f"{TORCHVISION_HEAD}.bias"][rows]
            _fit(net.head, weight, bias, inputs, "head")


def _fit(producer: nn.Linear | nn.Conv2d, weight: Tensor, bias: Tensor, in_units: int, key: str) -> None:
    """Copy ``weight`` / ``bias`` (``in_units`` pretrained input units: channels, or units of the layer
    before) into the leading block of ``producer``: each input unit's columns (a conv's ``kH x kW`` kernel,
    a flattened channel's ``H x W`` positions, one dense column) go to the same unit's columns, and the
    columns of a wider layer's reserve inputs get zero. The reserve units' own rows keep their fresh
    fan-in."""
    target = producer.weight
    rows = weight.shape[0]
    per_unit = weight[0].numel() // in_units
    if rows > target.shape[0] or weight[0].numel() > target[0].numel() or target[0].numel() % per_unit:
        raise WeightsError(f"{key}: pretrained {tuple(weight.shape)} does not fit {tuple(target.shape)}")
    padded = weight.new_zeros(rows, target[0].numel() // per_unit, per_unit)
    padded[:, :in_units] = weight.reshape(rows, in_units, per_unit)
    target[:rows].copy_(padded.view(rows, *target.shape[1:]).to(target.dtype))
    producer.bias[:rows].copy_(bias.to(target.dtype))
