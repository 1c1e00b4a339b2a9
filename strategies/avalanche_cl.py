"""Avalanche's classic continual-learning strategies as comparison rows (``ewc``, ``si``, ``lwf``, ``replay``,
``agem``; docs/protocol.md §14): each is Avalanche's own plugin, built with the run's options, so a sweep
compares them with Dense, Grow, Prune and the plasticity remedies under identical streams and seeds.

Defaults are Avalanche's where its plugin has one; where it has none (``ewc_lambda``, ``si_lambda``,
``agem_patterns``) the default is ours, marked as such. These rows never run in a run-batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from avalanche.core import BasePlugin
from avalanche.training.plugins import AGEMPlugin, EWCPlugin, LwFPlugin, SynapticIntelligencePlugin

from plasticity_bench.core.options import Option
from plasticity_bench.strategies.replay import ONLINE_ROWS, ExperienceReplayPlugin

EWC_LAMBDA = Option(
    "ewc_lambda", "float", 1.0, "EWC: penalty strength (Kirkpatrick et al. 2017)", minimum=0.0, ours=True
)
SI_LAMBDA = Option(
    "si_lambda", "float", 1.0, "SI: penalty strength (Zenke et al. 2017)", minimum=0.0, ours=True
)
LWF_ALPHA = Option("lwf_alpha", "float", 1.0, "LwF: distillation weight (Li & Hoiem 2017)", minimum=0.0)
LWF_TEMPERATURE = Option("lwf_temperature", "float", 2.0, "LwF: softmax temperature", minimum=0.0)
REPLAY_MEM = Option(
    "replay_mem_size", "int", 200, "Replay: buffer size, balanced over experiences", minimum=1
)
AGEM_PATTERNS = Option(
    "agem_patterns",
    "int",
    250,
    "A-GEM: samples kept per experience (Chaudhry et al. 2019)",
    minimum=1,
    ours=True,
)
AGEM_SAMPLE = Option("agem_sample_size", "int", 64, "A-GEM: memory samples per reference gradient", minimum=1)


@dataclass(frozen=True)
class AvalancheStrategy:
    """A classic CL strategy: ``make(options, seed)`` builds its Avalanche plugin; ``options`` are the run
    options it reads; ``source`` the paper."""

    make: Callable[[dict[str, object], int], BasePlugin]
    options: tuple[Option, ...]
    source: str


AVALANCHE_STRATEGIES: dict[str, AvalancheStrategy] = {
    "ewc": AvalancheStrategy(
        lambda o, seed: EWCPlugin(ewc_lambda=EWC_LAMBDA.get(o)), (EWC_LAMBDA,), "Kirkpatrick et al. 2017"
    ),
    "si": AvalancheStrategy(
        lambda o, seed: SynapticIntelligencePlugin(si_lambda=SI_LAMBDA.get(o)),
        (SI_LAMBDA,),
        "Zenke et al. 2017",
    ),
    "lwf": AvalancheStrategy(
        lambda o, seed: LwFPlugin(alpha=LWF_ALPHA.get(o), temperature=LWF_TEMPERATURE.get(o)),
        (LWF_ALPHA, LWF_TEMPERATURE),
        "Li & Hoiem 2017",
    ),
    "replay": AvalancheStrategy(
        lambda o, seed: ExperienceReplayPlugin(seed, REPLAY_MEM.get(o), ONLINE_ROWS.get(o) == "all"),
        (REPLAY_MEM, ONLINE_ROWS),
        "experience replay (Avalanche's buffer, our batches)",
    ),
    "agem": AvalancheStrategy(
        lambda o, seed: AGEMPlugin(AGEM_PATTERNS.get(o), AGEM_SAMPLE.get(o)),
        (AGEM_PATTERNS, AGEM_SAMPLE),
        "Chaudhry et al. 2019",
    ),
}
