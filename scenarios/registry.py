"""Scenario registry: PROTOCOL §7 sizes and the builder of each named scenario."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scenarios import mnist
from scenarios.stream import TaskBenchmark


@dataclass(frozen=True)
class ScenarioSpec:
    """A named scenario and its PROTOCOL §7 defaults.

    ``build(seed, tasks, variant, data_root, **options)`` returns a :class:`TaskBenchmark`.
    ``demo_tasks`` shortens the stream under ``--preset demo`` (None: PROTOCOL size).
    ``metric`` is the leaderboard's primary metric (``taoa`` online, ``acc`` checkpoint).
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


SCENARIOS: dict[str, ScenarioSpec] = {
    spec.name: spec
    for spec in (
        ScenarioSpec(
            "permuted_mnist", mnist.permuted_mnist, 500, 625, 16, "adam", 1e-3, "mlp", "taoa",
            mnist.MNIST_VARIANTS, demo_tasks=20,
        ),
        ScenarioSpec(
            "random_label_mnist", mnist.random_label_mnist, 50, 30_000, 16, "adam", 1e-3, "mlp", "taoa",
            mnist.MNIST_VARIANTS, demo_tasks=5,
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
