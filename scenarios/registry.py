"""Scenario registry: PROTOCOL §7 sizes and the builder of each named scenario."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scenarios import cifar, iid, imagenet, mnist, split
from scenarios.stream import TaskBenchmark


@dataclass(frozen=True)
class ScenarioSpec:
    """A named scenario and its PROTOCOL §7 defaults.

    ``build(seed, tasks, variant, data_root, **options)`` returns a :class:`TaskBenchmark`.
    ``demo_tasks`` shortens the stream under ``--preset demo`` (None: PROTOCOL size).
    ``metric`` is the leaderboard's primary metric (``taoa`` online, ``acc`` checkpoint).
    ``options``: names of run options (``RunConfig.options``) passed on to ``build``.
    ``lr_schedule``: ``constant`` or ``cosine`` (cosine annealing over the whole run, IID).
    ``replay``: Tiny ER (:class:`strategies.replay.TinyERPlugin`) runs with every strategy.
    ``checkpoint``: the checkpoint rule of ACC/TAA (``none``, ``seen``, ``current``; see
    :mod:`plasticity_bench.checkpoint`).
    """

    name: str
    build: Callable[..., TaskBenchmark]
    tasks: int
    steps_per_task: int
    batch_size: int
    optimizer: str
    lr: float
    model: str
    metric: str
    variants: tuple[str | None, ...] = (None,)
    demo_tasks: int | None = None
    options: tuple[str, ...] = ()
    lr_schedule: str = "constant"
    replay: bool = False
    checkpoint: str = "none"


def epoch_steps(n_train: int, batch_size: int, epochs: int) -> int:
    """Steps of ``epochs`` passes over ``n_train`` images: ``epochs * floor(n_train / batch_size)``.

    Floor, because the training loop drops an epoch's incomplete last batch (every batch is full).
    """
    return epochs * (n_train // batch_size)


#: PROTOCOL §7 "N epochs" as fixed steps per task (the data size of the PROTOCOL datasets).
RANDOM_LABEL_STEPS = epoch_steps(1_200, 16, 400)  # 30,000
SPLIT_MNIST_STEPS = epoch_steps(60_000 // 5, 64, 20)  # 3,740: 2 of 10 classes of 60,000 images
SPLIT_CIFAR100_STEPS = epoch_steps(50_000 // 10, 32, 20)  # 3,120: 10 of 100 classes of 50,000 images
IMAGENET_STEPS = epoch_steps(1_200, 100, 10)  # 120
MNIST_IID_STEPS = epoch_steps(60_000, 128, 20)  # 9,360 per cycle
CIFAR_IID_STEPS = epoch_steps(50_000, 128, 40)  # 15,600 per cycle


SCENARIOS: dict[str, ScenarioSpec] = {
    spec.name: spec
    for spec in (
        ScenarioSpec(
            "permuted_mnist", mnist.permuted_mnist, 500, 625, 16, "adam", 1e-3, "mlp", "taoa",
            mnist.MNIST_VARIANTS, demo_tasks=20,
        ),
        ScenarioSpec(
            "random_label_mnist", mnist.random_label_mnist, 50, RANDOM_LABEL_STEPS, 16, "adam", 1e-3, "mlp",
            "taoa", mnist.MNIST_VARIANTS, demo_tasks=5, options=("label_mode",),
        ),
        ScenarioSpec(
            "random_label_cifar", cifar.random_label_cifar, 50, RANDOM_LABEL_STEPS, 16, "adam", 1e-3,
            "convnet", "taoa", demo_tasks=5, options=("label_mode",),
        ),
        ScenarioSpec(
            "cifar_5plus1", cifar.cifar_5plus1, 30, 780, 32, "adam", 1e-3, "convnet", "taoa",
            demo_tasks=6, checkpoint="seen",
        ),
        ScenarioSpec(
            "continual_imagenet", imagenet.continual_imagenet, 500, IMAGENET_STEPS, 100, "adam", 1e-3,
            "convnet", "taoa", demo_tasks=50, options=("reset_head",), checkpoint="current",
        ),
        ScenarioSpec(
            "split_cifar100", split.split_cifar100, 10, SPLIT_CIFAR100_STEPS, 32, "adam", 1e-3, "convnet",
            "taoa", checkpoint="seen",
        ),
        ScenarioSpec(
            "split_mnist", split.split_mnist, 5, SPLIT_MNIST_STEPS, 64, "sgd", 0.01, "mlp", "acc",
            replay=True, checkpoint="seen",
        ),
        ScenarioSpec(
            "split_fashion", split.split_fashion, 5, SPLIT_MNIST_STEPS, 64, "sgd", 0.01, "mlp", "acc",
            replay=True, checkpoint="seen",
        ),
        ScenarioSpec(
            "mnist_iid", iid.mnist_iid, 5, MNIST_IID_STEPS, 128, "sgd", 0.1, "mlp", "acc",
            tuple(iid.MNIST_IID_VARIANTS), lr_schedule="cosine", checkpoint="current",
        ),
        ScenarioSpec(
            "cifar10_iid", iid.cifar10_iid, 5, CIFAR_IID_STEPS, 128, "sgd", 0.1, "convnet", "acc",
            lr_schedule="cosine", checkpoint="current",
        ),
        ScenarioSpec(
            "cifar100_iid", iid.cifar100_iid, 5, CIFAR_IID_STEPS, 128, "sgd", 0.1, "convnet", "acc",
            lr_schedule="cosine", checkpoint="current",
        ),
    )
}  # fmt: skip


def parse_scenario(text: str) -> tuple[ScenarioSpec, str | None]:
    """Split ``name[@variant]`` (e.g. ``permuted_mnist@mnist5k``) and validate both parts.

    Raises:
        ValueError: for an unknown scenario or a variant the scenario does not offer.
    """
    name, _, variant = text.partition("@")
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(sorted(SCENARIOS))}")
    spec = SCENARIOS[name]
    chosen = variant or None
    if chosen not in spec.variants:
        offered = ", ".join(f"{name}@{v}" for v in spec.variants if v) or "none"
        raise ValueError(f"scenario {name!r} has no data variant {variant!r}; variants: {offered}")
    return spec, chosen
