"""Strategy-name modifiers, e.g. ``grow+two_speed``, ``grow+moment_transplant+two_speed``.

A modifier is the part of a strategy name after a ``+``. It turns the base strategy's plugin list into
the modified one (docs/protocol.md §5). Options read from ``StrategyConfig.options`` (all optional):

- ``two_speed``: ``two_speed_r`` (5), ``two_speed_window`` (1955) — docs/protocol.md §5.1.
- ``moment_transplant``: none — §5.2.
- ``net2wider``: ``net2wider_noise`` (1e-3, [ours]) — §5.3.
- ``gradmax``: switches the Grow selector to ``gradient`` — §5.4.
- ``rand_smooth_leaky``: model activation, settings from ``SMOOTH_LEAKY_DEFAULTS`` by scenario, each
  field overridable with ``smooth_leaky = {"c_s": ..., "p": ..., "lower": ..., "upper": ..., "lr": ...}``
  — §5.5. It leaves the plugins as they are: the runner asks :func:`activation_factory` for the model's
  activation, and the CLI asks :func:`preferred_lr` when the user gives no ``--lr``.

- ``sft``: Auto-RGN layer-wise learning rates (surgical fine-tuning, Lee et al. 2023), ``sft_group``
  (``tensor``) — docs/protocol.md §17; combines with any base (``dense+sft``, ``dyno+sft``).
- the plasticity remedies ``l2_init``, ``shrink_perturb``, ``redo``, ``cbp`` (plugins added to the base's) and
  ``crelu``, ``layernorm`` (model options, read by :func:`model_options`) — docs/protocol.md §14;
- Avalanche's classic CL strategies ``ewc``, ``si``, ``lwf``, ``replay``, ``agem``
  (:mod:`plasticity_bench.strategies.avalanche_cl`).

Those and ``rand_smooth_leaky`` combine with any base (``grow+redo``, ``prune+ewc``); the others apply to
``grow`` only. Each remedy and CL strategy is also a base strategy of its own (``redo`` = Dense + ReDo).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from avalanche.core import BasePlugin
from torch import nn

from plasticity_bench.core.activations import (
    SMOOTH_LEAKY_DEFAULTS,
    CReLU,
    SmoothLeakySettings,
    make_activation,
)
from plasticity_bench.core.options import Option, did_you_mean
from plasticity_bench.strategies.avalanche_cl import AVALANCHE_STRATEGIES
from plasticity_bench.strategies.base import StrategyConfig
from plasticity_bench.strategies.cbp import (
    CBP_BIAS,
    CBP_DECAY,
    CBP_MATURITY,
    CBP_OPTIONS,
    CBP_RATE,
    ContinualBackpropPlugin,
)
from plasticity_bench.strategies.grow import BirthIntervention, GrowPlugin
from plasticity_bench.strategies.interventions import (
    NET2WIDER_NOISE_OPTION,
    TWO_SPEED_R_OPTION,
    TWO_SPEED_WINDOW_OPTION,
    MomentTransplant,
    Net2Wider,
    TwoSpeed,
)
from plasticity_bench.strategies.l2_init import L2_INIT_WEIGHT, L2InitPlugin
from plasticity_bench.strategies.redo import REDO_EVERY, REDO_OPTIONS, REDO_TAU, ReDoPlugin
from plasticity_bench.strategies.sft import SFT_GROUP, SurgicalFineTuningPlugin
from plasticity_bench.strategies.shrink_perturb import (
    PERTURB,
    PERTURB_NOISE,
    SHRINK,
    SHRINK_PERTURB_OPTIONS,
    SP_FORM,
    STEP_PERTURB,
    STEP_SHRINK,
    ShrinkPerturbPlugin,
)

Plugins = list[BasePlugin]
IID_KEY = "iid"
SMOOTH_LEAKY = Option(
    "smooth_leaky",
    "json",
    {},
    "Rand. Smooth-Leaky settings overriding the scenario's: c_s, p, lower, upper, lr",
)


@dataclass(frozen=True)
class Modifier:
    """A named modifier: ``apply(config, plugins) -> plugins`` for the base strategies in ``bases``.

    ``bases`` is ``None`` when the modifier combines with any base strategy; ``options`` are the run options
    it reads (:mod:`plasticity_bench.core.options`); ``batchable`` is False when its runs cannot share a
    run-batch (plugins that change the loss or the weights of one run in ways a stacked network does not
    replay).
    Calling the object applies it.
    """

    apply: Callable[[StrategyConfig, Plugins], Plugins]
    bases: frozenset[str] | None = frozenset({"grow"})
    options: tuple[Option, ...] = ()
    batchable: bool = True

    def __call__(self, config: StrategyConfig, plugins: Plugins) -> Plugins:
        return self.apply(config, plugins)


def grow_plugin(plugins: Plugins, modifier: str) -> GrowPlugin:
    """The Grow plugin of ``plugins``.

    Raises:
        ValueError: if there is none (the modifier was put on a strategy other than grow).
    """
    for plugin in plugins:
        if isinstance(plugin, GrowPlugin):
            return plugin
    raise ValueError(f"modifier {modifier!r} applies to grow only (e.g. grow+{modifier})")


def _add_intervention(
    make: Callable[[StrategyConfig], BirthIntervention], name: str, config: StrategyConfig, plugins: Plugins
) -> Plugins:
    grow = grow_plugin(plugins, name)
    intervention = make(config)
    grow.interventions = (*grow.interventions, intervention)
    return [*plugins, intervention] if isinstance(intervention, BasePlugin) else plugins


def _intervention(
    make: Callable[[StrategyConfig], BirthIntervention], name: str, options: tuple[Option, ...] = ()
) -> Modifier:
    return Modifier(partial(_add_intervention, make, name), options=options)


def _two_speed(config: StrategyConfig) -> TwoSpeed:
    return TwoSpeed(TWO_SPEED_R_OPTION.get(config.options), TWO_SPEED_WINDOW_OPTION.get(config.options))


def _net2wider(config: StrategyConfig) -> Net2Wider:
    return Net2Wider(NET2WIDER_NOISE_OPTION.get(config.options), config.seed)


def _gradmax(config: StrategyConfig, plugins: Plugins) -> Plugins:
    grow_plugin(plugins, "gradmax").use_selector("gradient")
    return plugins


def _unchanged(config: StrategyConfig, plugins: Plugins) -> Plugins:
    return plugins


def _adding(make: Callable[[StrategyConfig], BasePlugin]) -> Callable[[StrategyConfig, Plugins], Plugins]:
    """A modifier's ``apply`` that adds ``make(config)`` after the base strategy's plugins."""
    return lambda config, plugins: [*plugins, make(config)]


def _remedy(make: Callable[[StrategyConfig], BasePlugin], options: tuple[Option, ...]) -> Modifier:
    return Modifier(_adding(make), bases=None, options=options, batchable=False)


def _l2_init(config: StrategyConfig) -> L2InitPlugin:
    return L2InitPlugin(L2_INIT_WEIGHT.get(config.options))


def _shrink_perturb(config: StrategyConfig) -> ShrinkPerturbPlugin:
    o = config.options
    if SP_FORM.get(o) == "per_step":
        shrink, perturb = 1.0 - STEP_SHRINK.get(o), STEP_PERTURB.get(o)
    else:
        shrink, perturb = SHRINK.get(o), PERTURB.get(o)
    return ShrinkPerturbPlugin(SP_FORM.get(o), shrink, perturb, PERTURB_NOISE.get(o), config.seed)


def _redo(config: StrategyConfig) -> ReDoPlugin:
    every = REDO_EVERY.get(config.options) or config.steps_per_task or 1000
    return ReDoPlugin(config.seed, REDO_TAU.get(config.options), every)


def _cbp(config: StrategyConfig) -> ContinualBackpropPlugin:
    o = config.options
    return ContinualBackpropPlugin(
        config.seed, CBP_RATE.get(o), CBP_DECAY.get(o), CBP_MATURITY.get(o), bias_correction=CBP_BIAS.get(o)
    )


def _avalanche(name: str) -> Modifier:
    strategy = AVALANCHE_STRATEGIES[name]
    return _remedy(lambda config: strategy.make(config.options, config.seed), strategy.options)


#: Model options (docs/protocol.md §14): the runner reads them through :func:`model_options`.
MODEL_OPTIONS = ("crelu", "layernorm")
#: Plasticity remedies and Avalanche CL strategies: modifiers of any base, and base strategies of their own.
BASELINES: dict[str, Modifier] = {
    "l2_init": _remedy(_l2_init, (L2_INIT_WEIGHT,)),
    "shrink_perturb": _remedy(_shrink_perturb, SHRINK_PERTURB_OPTIONS),
    "redo": _remedy(_redo, REDO_OPTIONS),
    "cbp": _remedy(_cbp, CBP_OPTIONS),
    **{name: Modifier(_unchanged, bases=None, batchable=False) for name in MODEL_OPTIONS},
    **{name: _avalanche(name) for name in AVALANCHE_STRATEGIES},
}

MODIFIERS: dict[str, Modifier] = {
    "two_speed": _intervention(_two_speed, "two_speed", (TWO_SPEED_R_OPTION, TWO_SPEED_WINDOW_OPTION)),
    "moment_transplant": _intervention(lambda config: MomentTransplant(), "moment_transplant"),
    "net2wider": _intervention(_net2wider, "net2wider", (NET2WIDER_NOISE_OPTION,)),
    "gradmax": Modifier(_gradmax),
    "rand_smooth_leaky": Modifier(_unchanged, bases=None, options=(SMOOTH_LEAKY,)),
    "sft": _remedy(lambda config: SurgicalFineTuningPlugin(SFT_GROUP.get(config.options)), (SFT_GROUP,)),
    **BASELINES,
}


def check_modifiers(base: str, modifiers: tuple[str, ...]) -> None:
    """Validate the modifiers of a built-in strategy name.

    Raises:
        ValueError: for an unknown or repeated modifier, or one that does not combine with ``base``.
    """
    unknown = [m for m in modifiers if m not in MODIFIERS]
    if unknown:
        hint = did_you_mean(unknown[0], MODIFIERS) if len(unknown) == 1 else ""
        raise ValueError(f"unknown modifier(s) {unknown}{hint}; choose from {sorted(MODIFIERS)}")
    repeated = sorted({m for m in modifiers if modifiers.count(m) > 1})
    if repeated:
        raise ValueError(f"modifier(s) {repeated} given more than once")
    for mod in modifiers:
        bases = MODIFIERS[mod].bases
        if bases is not None and base not in bases:
            raise ValueError(
                f"modifier {mod!r} applies to {sorted(bases)} only, not {base!r} (e.g. grow+{mod})"
            )


def smooth_leaky_key(scenario: str) -> str:
    """Key of ``SMOOTH_LEAKY_DEFAULTS`` for a scenario name: ``iid`` for ``*_iid`` scenarios."""
    name = scenario.partition("@")[0]
    return IID_KEY if name.endswith("_iid") else name


def smooth_leaky_settings(scenario: str, override: dict[str, float] | None = None) -> SmoothLeakySettings:
    """Rand. Smooth-Leaky settings of docs/protocol.md §5.5 for ``scenario``, with ``override`` fields
    applied.

    Raises:
        ValueError: if the scenario has no published settings and ``override`` does not give all five
            fields (``c_s``, ``p``, ``lower``, ``upper``, ``lr``), or ``override`` has unknown fields.
    """
    override = dict(override or {})
    fields = [f.name for f in dataclasses.fields(SmoothLeakySettings)]
    unknown = sorted(set(override) - set(fields))
    if unknown:
        raise ValueError(f"unknown smooth_leaky option(s) {unknown}; fields are {fields}")
    default = SMOOTH_LEAKY_DEFAULTS.get(smooth_leaky_key(scenario))
    if default is not None:
        return dataclasses.replace(default, **{k: float(v) for k, v in override.items()})
    if set(override) != set(fields):
        raise ValueError(
            f"no Rand. Smooth-Leaky settings for scenario {scenario!r} (docs/protocol.md §5.5 has "
            f"{sorted(SMOOTH_LEAKY_DEFAULTS)}); give all of {fields} in options['smooth_leaky']"
        )
    return SmoothLeakySettings(**{k: float(v) for k, v in override.items()})


def uses(config: StrategyConfig, part: str) -> bool:
    """True when ``part`` is the strategy name's base or one of its modifiers (``crelu``, ``grow+crelu``)."""
    return config.name.split("+")[0] == part or part in config.modifiers


def model_options(config: StrategyConfig) -> dict[str, object]:
    """Keyword arguments of :func:`~plasticity_bench.core.models.build_model` set by the strategy name:
    ``hidden_activation=CReLU`` for ``crelu`` (the masked layers only; a conv trunk keeps its activation
    [ours]) and ``layer_norm=True`` for ``layernorm`` (Kumar23 Sec. 5)."""
    found: dict[str, object] = {}
    if uses(config, "crelu"):
        found["hidden_activation"] = CReLU
    if uses(config, "layernorm"):
        found["layer_norm"] = True
    return found


def uses_smooth_leaky(config: StrategyConfig) -> bool:
    """True when the strategy name carries ``+rand_smooth_leaky``."""
    return "rand_smooth_leaky" in config.modifiers


def activation_factory(config: StrategyConfig) -> Callable[[], nn.Module]:
    """The model activation of a run: ReLU, or Rand. Smooth-Leaky with the scenario's settings (§5.5).

    Settings come from :func:`smooth_leaky_settings` (``config.scenario``, ``options["smooth_leaky"]``).

    Raises:
        ValueError: as :func:`smooth_leaky_settings`.
    """
    if not uses_smooth_leaky(config):
        return nn.ReLU
    settings = smooth_leaky_settings(config.scenario, SMOOTH_LEAKY.get(config.options))
    return partial(make_activation, "rand_smooth_leaky", settings)


def preferred_lr(config: StrategyConfig) -> float | None:
    """The learning rate docs/protocol.md §5.5 pairs with the activation settings, or ``None`` (no
    preference).

    The CLI uses it in place of the scenario's default when the user gives no ``--lr``.
    """
    if not uses_smooth_leaky(config):
        return None
    return smooth_leaky_settings(config.scenario, SMOOTH_LEAKY.get(config.options)).lr
