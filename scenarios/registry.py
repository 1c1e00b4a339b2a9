"""Scenario registry: docs/protocol.md §7 sizes and the builder of each named scenario."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from plasticity_bench.core.options import Option, did_you_mean
from plasticity_bench.scenarios import cifar, iid, imagenet, mnist, split, standin, transfer
from plasticity_bench.scenarios.stream import VAL_FRACTION, TaskBenchmark


@dataclass(frozen=True)
class ScenarioSpec:
    """A named scenario and its docs/protocol.md §7 defaults.

    ``build(seed, tasks, variant, data_root, **options)`` returns a :class:`TaskBenchmark`.
    ``task_images`` and ``epochs`` fix the steps per task, ``epochs * floor(task_images / batch)`` (the
    "N epochs" of §7), so another batch size keeps the number of passes over the data.
    ``demo_tasks`` shortens the stream under ``--preset demo`` (None: protocol size).
    ``metric`` is the leaderboard's primary metric (``taoa`` online, ``acc`` checkpoint).
    ``options``: the run options passed on to ``build`` (declared :class:`Option` objects).
    ``lr_schedule``: ``constant`` or ``cosine`` (cosine annealing over the whole run).
    ``replay``: Tiny ER (:class:`plasticity_bench.strategies.replay.TinyERPlugin`) runs with every strategy.
    ``checkpoint``: the checkpoint rule of ACC/TAA (``none``, ``seen``, ``current``; see
    :mod:`plasticity_bench.measure.accuracy`).
    ``edit_every_task``: one structural edit at every task boundary, so the default cycle count ``T`` is
    the number of tasks (Split-*, §3); otherwise ``T = DEFAULT_CYCLES``.
    ``table14``: one of the six continual benchmarks of LC26 Table 14 (Sec. 6), where Dense keeps the
    scenario's lr in an lr sweep; elsewhere (Sec. 4-5, A.2) Dense is swept like every method (§7).
    ``show_flops``: the leaderboard prints the final network's inference FLOPs beside the accuracy (DYNO's
    transfer streams report accuracy against FLOPs, §17).
    ``weight_decay``: the scenario's Adam weight decay, which its runs may change with the run option
    ``weight_decay`` (DYNO's transfer streams: 1e-3, §17); ``None``: no weight decay and no such option.
    ``metric`` ``acc`` / ``taa`` with a validation split (option ``val_fraction``): the lr is chosen by
    the validation figure of that metric, the test figure is reported (§7).
    """

    name: str
    build: Callable[..., TaskBenchmark]
    tasks: int
    task_images: int
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    model: str
    metric: str
    variants: tuple[str | None, ...] = (None,)
    demo_tasks: int | None = None
    options: tuple[Option, ...] = ()
    lr_schedule: str = "constant"
    replay: bool = False
    checkpoint: str = "none"
    edit_every_task: bool = False
    table14: bool = False
    weight_decay: float | None = None
    show_flops: bool = False

    @property
    def steps_per_task(self) -> int:
        """Steps per task at the scenario's own batch size."""
        return self.steps_for(self.batch_size)

    def steps_for(self, batch_size: int) -> int:
        """Steps per task at ``batch_size``: ``epochs * floor(task_images / batch_size)``."""
        return epoch_steps(self.task_images, batch_size, self.epochs)

    def cycles_for(self, tasks: int) -> int:
        """Default number of structural edits ``T`` for a stream of ``tasks`` tasks (§3)."""
        return tasks if self.edit_every_task else DEFAULT_CYCLES


DEFAULT_CYCLES = 5


def epoch_steps(n_train: int, batch_size: int, epochs: int) -> int:
    """Steps of ``epochs`` passes over ``n_train`` images: ``epochs * floor(n_train / batch_size)``.

    Floor, because the training loop drops an epoch's incomplete last batch (every batch is full).
    """
    return epochs * (n_train // batch_size)


SPLIT_MNIST_IMAGES = 60_000 // 5  # 2 of 10 classes of 60,000 images: 3,740 steps at batch 64, 20 epochs
#: DYNO's transfer runs (App. A): 1000 iterations of 64 images, kept as images seen at another batch size.
TRANSFER_IMAGES = 1_000 * 64
SPLIT_CIFAR100_IMAGES = 50_000 // 10  # 10 of 100 classes: 3,120 steps at batch 32, 20 epochs

#: Options of the scenarios whose lr is chosen on a test-set metric: the validation split (§7).
VALIDATED = (VAL_FRACTION,)

SCENARIOS: dict[str, ScenarioSpec] = {
    spec.name: spec
    for spec in (
        ScenarioSpec(
            "permuted_mnist", mnist.permuted_mnist, 500, mnist.PERMUTED_SUBSET, 1, 16, "adam", 1e-3, "mlp",
            "taoa", mnist.MNIST_VARIANTS, demo_tasks=20, options=(mnist.SUBSET_MODE,), table14=True,
        ),
        ScenarioSpec(
            "random_label_mnist", mnist.random_label_mnist, 50, 1_200, 400, 16, "adam", 1e-3, "mlp",
            "taoa", mnist.MNIST_VARIANTS, demo_tasks=5, options=(mnist.LABEL_MODE,), table14=True,
        ),
        ScenarioSpec(
            "random_label_cifar", cifar.random_label_cifar, 50, 1_200, 400, 16, "adam", 1e-3,
            "convnet", "taoa", demo_tasks=5, options=(mnist.LABEL_MODE,), table14=True,
        ),
        ScenarioSpec(
            "cifar_5plus1", cifar.cifar_5plus1, 30, 2_500, 10, 32, "adam", 1e-3, "convnet", "taoa",
            demo_tasks=6, checkpoint="seen", table14=True,
        ),
        ScenarioSpec(
            "continual_imagenet", imagenet.continual_imagenet, 500, 1_200, 10, 100, "adam", 1e-3,
            "convnet", "taoa", demo_tasks=50, options=(imagenet.RESET_HEAD,), checkpoint="current",
            table14=True,
        ),
        ScenarioSpec(
            "split_cifar100", split.split_cifar100, 10, SPLIT_CIFAR100_IMAGES, 20, 32, "adam", 1e-3,
            "convnet", "taa", options=VALIDATED, checkpoint="seen", edit_every_task=True, table14=True,
        ),
        ScenarioSpec(
            "split_mnist", split.split_mnist, 5, SPLIT_MNIST_IMAGES, 20, 64, "sgd", 0.01, "mlp", "acc",
            options=VALIDATED, lr_schedule="cosine", replay=True, checkpoint="seen", edit_every_task=True,
        ),
        ScenarioSpec(
            "split_fashion", split.split_fashion, 5, SPLIT_MNIST_IMAGES, 20, 64, "sgd", 0.01, "mlp", "acc",
            options=VALIDATED, lr_schedule="cosine", replay=True, checkpoint="seen", edit_every_task=True,
        ),
        ScenarioSpec(
            "mnist_iid", iid.mnist_iid, 5, 60_000, 20, 64, "sgd", 0.1, "mlp", "acc",
            tuple(iid.MNIST_IID_VARIANTS), options=VALIDATED, lr_schedule="cosine", checkpoint="current",
        ),
        ScenarioSpec(
            "cifar10_iid", iid.cifar10_iid, 5, 50_000, 40, 64, "sgd", 0.1, "convnet", "acc",
            options=VALIDATED, lr_schedule="cosine", checkpoint="current",
        ),
        ScenarioSpec(
            "cifar100_iid", iid.cifar100_iid, 5, 50_000, 40, 64, "sgd", 0.1, "convnet", "acc",
            options=VALIDATED, lr_schedule="cosine", checkpoint="current",
        ),
        *(
            ScenarioSpec(
                name, build, 1, TRANSFER_IMAGES, 1, 64, "adam", 3e-4, "vgg11", "acc", options=options,
                checkpoint="current", weight_decay=1e-3, show_flops=True,
            )
            for name, build, options in (
                ("imagenette", transfer.imagenette, (transfer.IMAGE_SIZE,)),
                ("imagewoof", transfer.imagewoof, (transfer.IMAGE_SIZE,)),
                ("galaxy10", transfer.galaxy10, transfer.GALAXY10_OPTIONS),
            )
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
        hint = did_you_mean(name, SCENARIOS)
        raise ValueError(f"unknown scenario {name!r}{hint}; choose one of {', '.join(sorted(SCENARIOS))}")
    spec = SCENARIOS[name]
    chosen = variant or None
    if chosen not in spec.variants:
        offered = ", ".join(f"{name}@{v}" for v in spec.variants if v) or "none"
        raise ValueError(f"scenario {name!r} has no data variant {variant!r}; variants: {offered}")
    return spec, chosen


def chance_accuracy(scenario: str) -> float:
    """What a uniform guess over the scenario's head scores on its accuracy metrics (TAOA, ACC, TAA all
    take the argmax over every output, docs/protocol.md §1): ``1 / head classes`` (e.g. 0.1 for
    Permuted-MNIST, 0.5 for Continual ImageNet's pairs, 0.01 for the 100-way CIFAR-100 heads).

    Raises:
        ValueError: for an unknown scenario.
    """
    if scenario not in standin.SHAPES:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(sorted(SCENARIOS))}")
    return 1.0 / standin.SHAPES[scenario][1]
