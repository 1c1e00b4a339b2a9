"""Integration-time interventions on Grow (LC26 Sec. 5, App. C; docs/protocol.md §5).

Each intervention is a :class:`~plasticity_bench.strategies.grow.BirthIntervention`: the Grow plugin calls
``on_birth(strategy, layer, newborn, incumbents, probe)`` right after switching ``newborn`` units on.
All of them act only on *newborn-associated parameters* (fan-in row, bias entry and fan-out column of
each newborn unit) and only through the masked-unit core's :class:`~plasticity_bench.core.masks.UnitSlices`.

- :class:`TwoSpeed` (§5.1) is also an Avalanche plugin (``before_update`` / ``after_update``), so the
  training loop only calls it when a run asks for it.
- :class:`MomentTransplant` (§5.2) copies a donor's optimizer buffers into the newborns' slices.
- :class:`Net2Wider` (§5.3) duplicates incumbents and splits their fan-out (function-preserving).
- The GradMax-style selector (§5.4) is the Grow plugin's ``gradient`` selector
(``plasticity_bench.strategies.grow``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn

from plasticity_bench.core.host import Host
from plasticity_bench.core.masks import MaskedLayer, UnitSlices, copy_optimizer_state
from plasticity_bench.core.options import Option
from plasticity_bench.core.seeding import generator
from plasticity_bench.measure.probes import Probe, activation_frequency
from plasticity_bench.strategies.grow import top_units

TWO_SPEED_R = 5.0
TWO_SPEED_WINDOW = 1955
NET2WIDER_NOISE = 1e-3  # [ours]: relative std of the noise added to the copied fan-in (docs/protocol.md §5.3)
TWO_SPEED_R_OPTION = Option("two_speed_r", "float", TWO_SPEED_R, "Two-Speed speed factor r", minimum=0)
TWO_SPEED_WINDOW_OPTION = Option(
    "two_speed_window", "int", TWO_SPEED_WINDOW, "Two-Speed steps per birth cohort", minimum=1
)
NET2WIDER_NOISE_OPTION = Option(
    "net2wider_noise",
    "float",
    NET2WIDER_NOISE,
    "Net2Wider fan-in noise std relative to the donor row's",
    minimum=0,
    ours=True,
)


def ranked_donors(p: Probe, layer: MaskedLayer, incumbents: Tensor) -> Tensor:
    """Incumbents of ``layer`` by activation frequency on the birth batch, highest first (docs/protocol.md
    §5.2-3).

    ``incumbents``: int64 ``(n,)`` unit indices; returns a permutation of them (ties: lower index first).
    The frequency is ``act(j)`` of docs/protocol.md §4.1 (``tau = 0.05``) on the probe taken before the edit.
    """
    scores = activation_frequency(p.z[layer.index], p.activations[layer.index])
    return top_units(incumbents, scores[incumbents.to(scores.device)], incumbents.numel())


@dataclass
class _Cohort:
    """Newborn-associated slices of one birth (one layer of one edit) and its remaining steps."""

    slices: UnitSlices
    remaining: int


class TwoSpeed(SupervisedPlugin):
    """Two-Speed integration (LC26 Sec. 5; docs/protocol.md §5.1).

    After every optimizer step, newborn-associated entries become ``W_old + r * (W_new - W_old)``
    (``W_old``: value before the step), for the first ``window`` steps after their birth; each birth
    cohort (one layer of one Grow edit) has its own window. Entries that belong to several live cohorts
    (the weight linking a newborn of layer ``l`` to a newborn of layer ``l+1``) are scaled once, by ``r``.

    Ordinary steps pay only while a cohort is live: ``before_update`` copies the parameters that hold
    live entries, ``after_update`` adds ``(r - 1) * (W_new - W_old)`` weighted by a 0/1 mask of the live
    entries (built from the cohorts' slices once per cohort change). Entries outside the mask keep the
    plain update exactly. (A dense masked update is about 10x faster on CPU than gathering the entries.)

    Args:
        r: speed factor (default 5). window: steps per cohort (default 1955).

    Raises:
        ValueError: if ``r < 0`` or ``window < 1``.
    """

    def __init__(self, r: float = TWO_SPEED_R, window: int = TWO_SPEED_WINDOW) -> None:
        super().__init__()
        if r < 0 or window < 1:
            raise ValueError(f"Two-Speed needs r >= 0 and window >= 1 (got r={r}, window={window})")
        self.r, self.window = float(r), int(window)
        self.cohorts: list[_Cohort] = []
        self._scale: dict[nn.Parameter, Tensor] | None = None
        #: Counts the rebuilds of :meth:`live_scale`: a run-batch's vectorized form rebuilds its own scale
        #: when a member's version moved.
        self.scale_version = 0
        self._old: dict[nn.Parameter, Tensor] = {}

    def on_birth(
        self, strategy: Host, layer: MaskedLayer, newborn: Tensor, incumbents: Tensor, probe: Probe
    ) -> None:
        """Register the newborns' slices as a new cohort with a full window."""
        if newborn.numel():
            self.cohorts.append(_Cohort(layer.slices(newborn), self.window))
            self._scale = None

    def live_scale(self) -> dict[nn.Parameter, Tensor]:
        """Per parameter with live entries: ``r - 1`` on the live cohorts' slices (union), 0 elsewhere."""
        if self._scale is None:
            self.scale_version += 1
            marks: dict[nn.Parameter, Tensor] = {}
            for cohort in self.cohorts:
                for piece in cohort.slices:
                    piece.fill(self.r - 1.0, marks.setdefault(piece.param, torch.zeros_like(piece.param)))
            self._scale = marks
        return self._scale

    def before_update(self, strategy: Host, **kwargs: object) -> None:
        """Snapshot ``W_old`` of the parameters with live entries."""
        if self.cohorts:
            self._old = {p: p.detach().clone() for p in self.live_scale()}

    def after_update(self, strategy: Host, **kwargs: object) -> None:
        """``W <- W_old + r (W_new - W_old)`` on the live entries; count the step against each window."""
        if not self._old:
            return
        for param, scale in self.live_scale().items():
            param.data.addcmul_(scale, param.data - self._old[param])
        self._old = {}
        self.count_step()

    def count_step(self) -> None:
        """One update against every live cohort's window; expired cohorts are dropped."""
        for cohort in self.cohorts:
            cohort.remaining -= 1
        alive = [c for c in self.cohorts if c.remaining > 0]
        if len(alive) != len(self.cohorts):
            self.cohorts, self._scale = alive, None

    @staticmethod
    def for_runs(members: list[tuple[TwoSpeed, Any]], net: Any) -> TwoSpeedRuns:
        """The Two-Speed plugins of a run-batch (``net``: its stacked network) as one per-step hook
        (:class:`TwoSpeedRuns`)."""
        return TwoSpeedRuns(members, net.aliases)


class TwoSpeedRuns:
    """The :class:`TwoSpeed` plugins of the runs of a batch, vectorized (docs/protocol.md §5.1, §12).

    Instead of a snapshot and an update per run and step, one snapshot and one
    ``W <- W + scale * (W_new - W_old)`` per stacked parameter, with each run's rows of ``scale`` taken from
    its plugin's :meth:`TwoSpeed.live_scale` (rebuilt only when some run's cohorts changed). Rows of runs
    without a live cohort have scale 0 and keep the plain update exactly, so every run gets what its own
    plugin does.

    Args:
        members: ``(plugin, run view)`` pairs (the view's ``index`` is the run).
        aliases: per run, run parameter -> ``(stacked, run)`` (``StackedNet.aliases``).
    """

    def __init__(self, members: list[tuple[TwoSpeed, Any]], aliases: list[dict]) -> None:
        self.members, self.aliases = members, aliases
        self._scale: dict[nn.Parameter, Tensor] | None = None  # built at the first live step
        self._versions: list[int] = []
        self._old: dict[nn.Parameter, Tensor] = {}

    def _stacked_scale(self) -> dict[nn.Parameter, Tensor]:
        marks = [plugin.live_scale() for plugin, _ in self.members]  # rebuilds those whose cohorts changed
        versions = [plugin.scale_version for plugin, _ in self.members]
        if self._scale is None or versions != self._versions:
            scale: dict[nn.Parameter, Tensor] = {}
            for (_, view), rows_of in zip(self.members, marks):
                for param, rows in rows_of.items():
                    stacked, r = self.aliases[view.index][param]
                    scale.setdefault(stacked, torch.zeros_like(stacked))[r] = rows
            self._scale, self._versions = scale, versions
        return self._scale

    def before_update(self) -> None:
        """Snapshot ``W_old`` of the stacked parameters with live entries in some run."""
        if any(plugin.cohorts for plugin, _ in self.members):
            self._old = {p: p.detach().clone() for p in self._stacked_scale()}

    def after_update(self) -> None:
        """The Two-Speed correction of every run at once; each run's windows count the step."""
        if not self._old:
            return
        for param, scale in self._stacked_scale().items():
            param.data.addcmul_(scale, param.data - self._old[param])
        self._old = {}
        for plugin, _ in self.members:
            plugin.count_step()


class MomentTransplant:
    """Moment Transplant (LC26 Sec. 5; docs/protocol.md §5.2).

    At birth, the optimizer buffers shaped like their parameter (Adam ``exp_avg``/``exp_avg_sq``, SGD
    ``momentum_buffer``) of one donor are copied into every newborn's fan-in row, bias entry and fan-out
    column, via :func:`~plasticity_bench.core.masks.copy_optimizer_state`; step counters stay as they are.
    Donor: the incumbent of the same layer with the highest activation frequency on the birth mini-batch,
    one donor for all newborns of that layer and edit [ours; LC26 does not say]. Nothing happens when
    the layer has no incumbent or the optimizer has no state yet (before the first step).
    """

    def on_birth(
        self, strategy: Host, layer: MaskedLayer, newborn: Tensor, incumbents: Tensor, probe: Probe
    ) -> None:
        if newborn.numel() == 0 or incumbents.numel() == 0:
            return
        donor = ranked_donors(probe, layer, incumbents)[:1]
        source = layer.slices(donor.expand(newborn.numel()))
        copy_optimizer_state(strategy.optimizer, source, layer.slices(newborn))


def net2wider_split(
    layer: MaskedLayer,
    donors: Tensor,
    newborn: Tensor,
    noise: float = 0.0,
    gen: torch.Generator | None = None,
) -> None:
    """Make ``newborn[i]`` a copy of ``donors[i]`` and share each donor's fan-out among its copies.

    Fan-in row and bias of each newborn := its donor's, plus ``N(0, (noise * s)^2)`` with ``s`` the std
    of the donor's fan-in weights (docs/protocol.md §5.3, [ours]). The fan-out column (conv: input channel)
    of a donor with ``m`` copies in this call is divided by ``m + 1`` and written to the donor and each copy
    (``m = 1``: the halving of Net2Wider), so with ``noise = 0`` the network function is unchanged (eval
    mode; a random-leak activation in training mode draws independent leaks for donor and copies).

    Args:
        donors, newborn: int64 unit indices of equal length ``n`` (donors may repeat, newborns may not).
        noise: relative noise std (0 disables noise). gen: CPU generator for the noise.

    Raises:
        ValueError: if the lengths differ.
    """
    if donors.numel() != newborn.numel():
        raise ValueError(f"{donors.numel()} donors for {newborn.numel()} newborn units")
    source, target = layer.slices(donors), layer.slices(newborn)
    row_std = source.fan_in[0].read().flatten(1).std(1)  # (n,) std of each donor's fan-in weights
    for src, dst in zip(source.fan_in, target.fan_in):
        value = src.read()
        if noise > 0:
            draw = torch.randn(value.shape, generator=gen).to(value.device)
            value = value + noise * row_std.view(-1, *[1] * (value.dim() - 1)) * draw
        dst.write(value)
    copies = torch.bincount(donors, minlength=layer.width)[donors].to(row_std.dtype)  # (n,)
    for src, dst in zip(source.fan_out, target.fan_out):
        value = src.read()
        share = (1.0 / (copies + 1.0)).repeat_interleave(layer.columns_per_unit)
        value = value * share.to(value.device).view(1, -1, *[1] * (value.dim() - 2))  # dim 1: the columns
        dst.write(value)
        src.write(value)


class Net2Wider:
    """Net2Wider birth (Chen et al. 2016; LC26 Sec. 5; docs/protocol.md §5.3), see :func:`net2wider_split`.

    Donors: incumbents by activation frequency on the birth mini-batch, highest first, without repeats
    within one edit [ours]; when an edit has more newborns than incumbents, donors are reused round-robin
    and each donor's fan-out is shared among all its copies, which keeps the function unchanged.

    Args:
        noise: relative std of the fan-in noise, default ``1e-3`` [ours]; ``0`` gives an exact copy.
        seed: run seed (the noise of the ``i``-th birth is drawn from ``generator(seed, "net2wider", i)``).
    """

    def __init__(self, noise: float = NET2WIDER_NOISE, seed: int = 0) -> None:
        if noise < 0:
            raise ValueError(f"Net2Wider noise must be >= 0 (got {noise})")
        self.noise, self.seed, self.births = float(noise), seed, 0

    def on_birth(
        self, strategy: Host, layer: MaskedLayer, newborn: Tensor, incumbents: Tensor, probe: Probe
    ) -> None:
        if newborn.numel() == 0 or incumbents.numel() == 0:
            return
        ranked = ranked_donors(probe, layer, incumbents)
        donors = ranked[torch.arange(newborn.numel(), device=ranked.device) % ranked.numel()]
        gen = generator(self.seed, "net2wider", self.births)
        self.births += 1
        net2wider_split(layer, donors, newborn.to(donors.device), self.noise, gen)
