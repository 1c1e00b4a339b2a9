"""DYNO grow-and-prune on unit masks (DYNO workshop paper; NORTH, Maile et al. 2022; docs/protocol.md §6).

Every ``trigger_every`` updates and per masked layer, DYNO measures the effective dimension ``phi`` of the
layer's post-activations over a FIFO buffer of recent samples and compares it with ``phi*``, its value at
the network's last structural change (option ``dyno_baseline=network``; DYNO: "at the last structural
change of f"; ``layer``: at the layer's own last change), measured *after* that change, on the new active
set (so that pruning dormant or redundant units, which lowers ``M`` but not the rank, is not undone by the
next trigger): a drop
below ``(1 - delta) phi*`` prunes (dormant units first, then greedily the most redundant by cosine
similarity), a rise above ``(1 + delta) phi*`` grows units with
NORTH-Select fan-in and zero fan-out (so growth never changes the function at birth).

With unit masks DYNO grows from a reserve: the runner builds the model with ``reserve_factor`` x the
nominal widths (``StrategyEntry.width_factor``) and :class:`DynoPlugin` switches the extra units off at
the start. The registry marks DYNO non-structural (no compactness budget: its width is decided by the
effective dimension), so a sweep runs it once, at compactness 1.0; the compact export of the final model
gives its real parameter and FLOP counts.

Buffer [ours]: a preallocated ring of the last inputs of each masked layer's producer, enough of them for
``buffer_factor x width`` rows of post-activations (width with the reserve; a conv layer's sample gives one
row per output position, H x W, DYNO eq. 2), filled by a forward hook that copies the training
mini-batch (one slice copy per layer and step; eval-mode forwards are skipped). At a trigger the
post-activations are recomputed from those inputs with the current weights, in eval mode (deterministic
activation), with the previous layer's current mask applied to its buffered outputs. A layer is measured
only once its ring is full. The first measurement sets ``phi*`` (no change).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn
from torch.profiler import record_function

from plasticity_bench.core.host import Host
from plasticity_bench.core.masks import MaskedLayer, apply_producer, masked_layers_of, zero_optimizer_state
from plasticity_bench.core.options import Option
from plasticity_bench.core.seeding import generator
from plasticity_bench.measure.dispatch import EDIT_RANGE
from plasticity_bench.measure.probes import eval_mode
from plasticity_bench.strategies.base import StrategyConfig
from plasticity_bench.strategies.grow import top_units

RESERVE_FACTOR = 2.0  # [ours]
TRIGGER_EVERY = 50
EPS = 1e-2
DELTA = 3e-2
#: Which phi* a layer's decision compares with (docs/protocol.md §6): the value at the network's last change,
#: or at the layer's own last change.
BASELINES = ("network", "layer")
BUFFER_FACTOR = 2.0  # [ours]: buffer rows per unit of layer width (reserve included)
CANDIDATES_PER_UNIT = 100


def _rows(h: Tensor) -> Tensor:
    """``(n, M)`` or conv ``(n, M, H, W)`` -> ``(rows, M)`` with rows = n (or n*H*W)."""
    return h if h.dim() == 2 else h.transpose(0, 1).reshape(h.shape[1], -1).T


def effective_dimension(h: Tensor, eps: float = EPS) -> float:
    """``phi = #{singular values of H / sqrt(n) > eps} / M`` (DYNO; docs/protocol.md §6).

    Args:
        h: post-activations of the ``M`` active units, ``(n, M)`` float (conv: ``(n, M, H, W)``, taken
            as ``M`` x ``n*H*W``). eps: singular-value threshold.

    Returns:
        a float in ``[0, 1]``; 0 for ``M = 0``.
    """
    h = _rows(h)
    if h.shape[1] == 0 or h.shape[0] == 0:
        return 0.0
    values = torch.linalg.svdvals(h.double() / math.sqrt(h.shape[0]))
    return float((values > eps).sum()) / h.shape[1]


def dyno_counts(phi: float, phi_star: float, n_active: int, delta: float = DELTA) -> tuple[int, int]:
    """``(prune, grow)`` unit counts of docs/protocol.md §6 for one layer with ``n_active`` active units.

    ``prune = max(0, round(M ((1 - delta) phi* - phi)))``,
    ``grow = max(0, round(M (phi - (1 + delta) phi*)))`` (at most one of them is positive).
    Limits (reserve, at least one unit kept) are the caller's.
    """
    prune = max(0, round(n_active * ((1 - delta) * phi_star - phi)))
    grow = max(0, round(n_active * (phi - (1 + delta) * phi_star)))
    return prune, grow


def prune_order(h: Tensor, k: int) -> Tensor:
    """The ``k`` columns of ``h`` to prune, in order (DYNO; docs/protocol.md §6).

    First every dormant unit (all-zero column over the buffer), ascending index; then greedily the unit
    whose unit-normalised activation vector has the largest L2 norm of cosine similarities to the other
    remaining (non-dormant) units, removing it before the next choice; ties go to the lower index.

    Args:
        h: ``(n, M)`` post-activations (conv ``(n, M, H, W)``). k: count, ``0 <= k <= M``.

    Returns:
        int64 ``(k,)`` column indices into ``h``.
    """
    h = _rows(h).double()
    dormant = h.abs().amax(0) == 0
    order = torch.nonzero(dormant).flatten()[:k].tolist()
    alive = torch.nonzero(~dormant).flatten()
    normed = h[:, alive] / h[:, alive].norm(dim=0)
    squared = (normed.T @ normed) ** 2
    squared = (squared + squared.T) / 2  # exactly symmetric, so equal similarities tie exactly
    squared.fill_diagonal_(0.0)
    remaining = torch.ones(alive.numel(), dtype=squared.dtype)
    while len(order) < k:
        # squared norm of each unit's similarities to the remaining units, recomputed (no drift)
        scores = torch.where(remaining > 0, squared @ remaining, -1.0)
        pick = int(torch.argmax(scores))  # argmax returns the first maximum: lower index on ties
        remaining[pick] = 0.0
        order.append(int(alive[pick]))
    return torch.tensor(order, dtype=torch.long)


def residual_norms(candidates: Tensor, existing: Tensor, eps: float = EPS) -> Tensor:
    """Norm of each candidate's activation column after projection off the span of ``existing``.

    ``candidates``: ``(n, C)``, ``existing``: ``(n, M)``; the span uses the left singular vectors whose
    singular values of ``existing / sqrt(n)`` exceed ``eps`` (the effective-dimension threshold).
    Returns float ``(C,)``.
    """
    return _residuals(candidates, span_basis(existing, eps))


def span_basis(existing: Tensor, eps: float = EPS) -> Tensor | None:
    """Orthonormal float64 basis ``(n, r)`` of the span :func:`residual_norms` projects off (``None`` for
    no existing unit)."""
    if existing.shape[1] == 0:
        return None
    u, s, _ = torch.linalg.svd(existing.double() / math.sqrt(existing.shape[0]), full_matrices=False)
    return u[:, s > eps]


def _residuals(candidates: Tensor, basis: Tensor | None) -> Tensor:
    if basis is None:
        return candidates.norm(dim=0)
    a = candidates.double()
    return (a - basis @ (basis.T @ a)).norm(dim=0).to(candidates.dtype)


#: [ours] The most candidate fan-in weights NORTH-Select holds at once (2**26 float32: 256 MiB); more
#: candidates are drawn and scored in chunks of this size, with the same draws and the same choice.
CANDIDATE_ELEMENTS = 1 << 26


def north_select(
    inputs: Tensor,
    existing: Tensor,
    activation: Callable[[Tensor], Tensor],
    n_new: int,
    bound: float,
    gen: torch.Generator,
    n_candidates: int | None = None,
    eps: float = EPS,
    producer: nn.Linear | nn.Conv2d | None = None,
) -> Tensor:
    """NORTH-Select fan-in weights for ``n_new`` units (Maile et al. 2022; docs/protocol.md §6).

    Draws ``n_candidates`` (default ``100 n_new``) fan-ins ``~ U(-bound, bound)`` (Kaiming-uniform scale),
    computes their activations ``activation(producer with w, zero bias)`` on ``inputs`` and keeps the
    ``n_new`` whose activations have the largest residual after projection onto the span of ``existing``
    (a conv candidate's activation is one column of ``n H W`` rows, DYNO eq. 2); ties go to the earlier
    draw. Candidates beyond :data:`CANDIDATE_ELEMENTS` weights are drawn and scored chunk by chunk.

    Args:
        inputs: the layer's inputs, ``(n, fan_in)`` (Linear) or ``(n, C, H, W)`` (Conv2d); existing: the
            active units' post-activations, ``(n, M)`` or ``(n, M, H', W')``. gen: CPU generator for the
            draw. producer: the layer that reads ``inputs`` (default: a Linear of ``inputs``' width).

    Returns:
        ``(n_new, *fan-in shape)`` weights (``(n_new, fan_in)``, conv ``(n_new, C, kH, kW)``) on
        ``inputs``' device and dtype, best first.
    """
    count = n_candidates or CANDIDATES_PER_UNIT * n_new
    shape = tuple(producer.weight.shape[1:]) if producer is not None else (inputs.shape[1],)
    per_chunk = max(n_new, CANDIDATE_ELEMENTS // math.prod(shape))
    basis = span_basis(_rows(existing), eps)
    kept_weights, kept_scores = inputs.new_zeros(0, *shape), inputs.new_zeros(0)
    for start in range(0, count, per_chunk):
        draw = torch.rand(min(per_chunk, count - start), *shape, generator=gen, dtype=inputs.dtype)
        weights = (2 * draw.to(inputs.device) - 1) * bound
        z = apply_producer(producer, inputs, weights) if producer is not None else inputs @ weights.T
        weights = torch.cat([kept_weights, weights])
        scores = torch.cat([kept_scores, _residuals(_rows(activation(z)), basis)])
        keep = top_units(torch.arange(len(scores), device=scores.device), scores, n_new).sort().values
        kept_weights, kept_scores = weights[keep], scores[keep]  # in draw order: ties keep the earlier
    best = top_units(torch.arange(len(kept_scores), device=kept_scores.device), kept_scores, n_new)
    return kept_weights[best]


class RingBuffer:
    """FIFO of the last ``capacity`` rows pushed (preallocated on the first push's device and dtype)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"buffer capacity must be >= 1 (got {capacity})")
        self.capacity, self.position, self.filled = capacity, 0, 0
        self.data: Tensor | None = None

    @property
    def full(self) -> bool:
        """True once ``capacity`` rows have been pushed."""
        return self.filled == self.capacity

    def push(self, rows: Tensor) -> None:
        """Append ``rows`` ``(B, dim)`` (detached), dropping the oldest when full."""
        rows = rows.detach()[-self.capacity :]
        if self.data is None:
            self.data = rows.new_zeros(self.capacity, *rows.shape[1:])
        ring_write(self.data, self.position, rows)
        self.advance(rows.shape[0])

    def advance(self, count: int) -> None:
        """Count ``count`` rows (at most ``capacity``) written at the current position."""
        self.position, self.filled = (
            (self.position + count) % self.capacity,
            min(self.capacity, self.filled + count),
        )

    def rows(self) -> Tensor:
        """The stored rows ``(filled, dim)`` (order not chronological)."""
        return self.data[: self.filled]


def ring_write(data: Tensor, position: int, rows: Tensor, axis: int = 0) -> None:
    """Write ``rows`` into the ring ``data`` from ``position`` on along ``axis``, wrapping past its end
    (``rows`` at most as long as the ring along ``axis``): :meth:`RingBuffer.push` (axis 0) and a
    run-batch's stacked rings (:class:`DynoRuns`, axis 1, the runs first)."""
    capacity, count = data.shape[axis], rows.shape[axis]
    head = min(count, capacity - position)
    if head == count:  # no wrap: one copy
        data.narrow(axis, position, count).copy_(rows)
        return
    data.narrow(axis, position, head).copy_(rows.narrow(axis, 0, head))
    data.narrow(axis, 0, count - head).copy_(rows.narrow(axis, head, count - head))


def _eval_apply(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` in eval mode without grad, restoring the mode."""
    with torch.no_grad(), eval_mode(module):
        return module(x)


def post_activations(layer: MaskedLayer, inputs: Tensor) -> Tensor:
    """``act(producer(inputs)) * m`` of ``layer`` in eval mode, no grad: ``(n, fan_in) -> (n, width)``
    (conv: ``(n, C, H, W) -> (n, width, H', W')``).

    The producer is applied functionally, so forward hooks on it (the buffer's) do not fire.
    """
    with torch.no_grad():
        return _eval_apply(layer.units, apply_producer(layer.producer, inputs))


def output_positions(model: nn.Module, input_shape: tuple[int, ...] | None) -> list[int]:
    """Per masked layer, the rows one sample adds to its post-activation matrix: ``H' x W'`` of a conv
    layer's output, 1 for a Linear layer (found by one eval forward of a zero sample of ``input_shape``).

    Raises:
        ValueError: a conv masked layer and no ``input_shape``.
    """
    layers = masked_layers_of(model)
    if all(isinstance(layer.producer, nn.Linear) for layer in layers):
        return [1] * len(layers)
    if input_shape is None:
        raise ValueError("DYNO on conv layers needs the input shape to size its buffers")
    sizes: list[int] = []
    hooks = [
        layer.producer.register_forward_hook(lambda m, i, out: sizes.append(out[0, 0].numel()))
        for layer in layers
    ]
    try:
        device = next(model.parameters()).device
        _eval_apply(model, torch.zeros(1, *input_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


class DynoPlugin(SupervisedPlugin):
    """DYNO as an Avalanche plugin (docs/protocol.md §6; see the module docstring for buffer and baseline).

    Args:
        config: the run's strategy config (seed, n_tasks).
        reserve_factor: hidden widths the model was built with, over the nominal widths (2 [ours]).
        trigger_every: updates between measurements (50). eps: singular-value threshold (1e-2).
        delta: tolerance around ``phi*`` (3e-2). buffer_factor: buffer rows per unit of width (2 [ours]).
        candidates_per_unit: NORTH candidates per grown unit (100).
        baseline: ``network`` (default): ``phi*`` of every layer is re-measured whenever any layer of the
            network changes (DYNO: the value "at the last structural change of f", the whole network);
            ``layer``: only the changed layer's (results protocol 2).
        rescale_init: [ours] multiply the fan-out of the initially active units by
            ``sqrt(width / nominal)`` at the start, so layers reading a reserve layer start with the
            weight scale of the nominal-width network (their fan-in init saw the reserve width).

    Attributes:
        active_width: ``[{"step", "task", "widths"}]`` at the start and after every change.
        events: one dict per change: ``step``, ``task``, ``layer``, ``phi``, ``phi_star`` (the baseline the
            decision used), ``phi_star_after`` (the new baseline, measured after the change), ``pruned``,
            ``grown`` (unit indices).

    Raises:
        ValueError: for non-positive factors or intervals. TypeError (at setup) for producers other than
            Linear and Conv2d.
    """

    def __init__(
        self,
        config: StrategyConfig,
        reserve_factor: float = RESERVE_FACTOR,
        trigger_every: int = TRIGGER_EVERY,
        eps: float = EPS,
        delta: float = DELTA,
        buffer_factor: float = BUFFER_FACTOR,
        candidates_per_unit: int = CANDIDATES_PER_UNIT,
        rescale_init: bool = True,
        baseline: str = "network",
    ) -> None:
        super().__init__()
        if baseline not in BASELINES:
            raise ValueError(f"unknown dyno_baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
        self.baseline = baseline
        if reserve_factor < 1 or trigger_every < 1 or buffer_factor <= 1 or candidates_per_unit < 1:
            raise ValueError(
                "DYNO needs reserve_factor >= 1, trigger_every >= 1, buffer_factor > 1 (the buffer must hold "
                "more samples than the layer's capacity) and candidates_per_unit >= 1"
            )
        self.config, self.reserve_factor, self.trigger_every = config, reserve_factor, trigger_every
        self.eps, self.delta, self.buffer_factor = eps, delta, buffer_factor
        self.candidates_per_unit, self.rescale_init = candidates_per_unit, rescale_init
        self.step = 0
        self.buffers: list[RingBuffer] = []
        self.phi_star: list[float | None] = []
        self.active_width: list[dict[str, Any]] = []
        self._logged = 0  # widths already given to loggers
        self.events: list[dict[str, Any]] = []
        self._hooks: list[Any] = []

    def setup(self, model: nn.Module, input_shape: tuple[int, ...] | None = None) -> None:
        """Switch the reserve off (the first ``round(width / reserve_factor)`` units stay on); buffers
        (conv layers: sized from ``input_shape``, :func:`output_positions`). ``rescale_init`` is skipped for
        pretrained weights (``model.weights``): they are the nominal network's already."""
        positions = output_positions(model, input_shape)
        pretrained = getattr(model, "weights", None) is not None
        for layer in masked_layers_of(model):
            nominal = min(layer.width, max(1, round(layer.width / self.reserve_factor)))
            layer.units.clear()
            active = torch.arange(nominal)
            layer.units.set_units(active, True)
            if self.rescale_init and nominal < layer.width and not pretrained:
                for piece in layer.slices(active).fan_out:
                    piece.write(piece.read() * math.sqrt(layer.width / nominal))
            rows = math.ceil(self.buffer_factor * layer.width)
            self.buffers.append(RingBuffer(math.ceil(rows / positions[layer.index])))
            self.phi_star.append(None)
        self._log_width(model, task=0)

    def before_training_exp(self, strategy: Host, **kwargs: object) -> None:
        """At the first task, :meth:`setup` (conv buffers sized from the task's input shape); attach the
        buffer hooks (removed again after the experience)."""
        if not self.buffers:
            self.setup(strategy.model, tuple(strategy.experience.task.x.shape[1:]))
        for layer, buffer in zip(masked_layers_of(strategy.model), self.buffers):
            self._hooks.append(layer.producer.register_forward_hook(_capture(buffer)))

    @staticmethod
    def for_runs(members: list[tuple[DynoPlugin, Any]], net: Any) -> DynoRuns:
        """The DYNO plugins of a run-batch as one (:class:`DynoRuns`: one stacked buffer copy per layer and
        step)."""
        return DynoRuns(members, net)

    def after_training_exp(self, strategy: Host, **kwargs: object) -> None:
        """Remove the buffer hooks."""
        self.remove_hooks()

    def remove_hooks(self) -> None:
        """Remove the buffer hooks of this task (a run-batch's :class:`DynoRuns` fills the buffers)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    def after_training_iteration(self, strategy: Host, **kwargs: object) -> None:
        """Count the update; every ``trigger_every`` updates, :meth:`trigger`."""
        self.step += 1
        if self.step % self.trigger_every == 0:
            with record_function(EDIT_RANGE):  # edit work: counted apart from the per-update path
                self.trigger(strategy)

    def trigger(self, strategy: Host) -> None:
        """Measure every layer with a full buffer and apply its prune/grow decision. With the ``network``
        baseline, a change anywhere re-measures every layer's ``phi*`` on the changed network."""
        layers = masked_layers_of(strategy.model)
        changed = [self.update_layer(strategy, layers, layer) for layer in layers]
        if not any(changed):
            return
        if self.baseline == "network":
            for layer in layers:
                if self.buffers[layer.index].full:
                    self.phi_star[layer.index] = self.measure(layer, self.layer_inputs(layers, layer.index))
            for event in self.events[len(self.events) - sum(changed) :]:
                event["phi_star_after"] = self.phi_star[event["layer"]]
        self._log_width(strategy.model, strategy.experience.current_experience)

    def layer_inputs(self, layers: list[MaskedLayer], index: int) -> Tensor:
        """Buffered inputs of layer ``index`` (``(n, fan_in)`` or conv ``(n, C, H, W)``), with the previous
        layer's current mask (over each unit's columns or channel)."""
        inputs = self.buffers[index].rows()
        if index == 0:
            return inputs
        previous = layers[index - 1]
        mask = previous.units.mask.to(inputs.dtype)
        if inputs.dim() > 2:
            return inputs * mask.view(1, -1, *(1,) * (inputs.dim() - 2))
        return inputs * mask.repeat_interleave(previous.columns_per_unit)

    def measure(self, layer: MaskedLayer, inputs: Tensor) -> float:
        """``phi`` of ``layer``'s current active units on the buffered ``inputs`` (docs/protocol.md §6)."""
        return effective_dimension(post_activations(layer, inputs)[:, layer.units.active()], self.eps)

    def update_layer(self, strategy: Host, layers: list[MaskedLayer], layer: MaskedLayer) -> bool:
        """One layer's measurement and decision; True when its active set changed."""
        if not self.buffers[layer.index].full:
            return False
        inputs = self.layer_inputs(layers, layer.index)
        active = layer.units.active()
        h = post_activations(layer, inputs)[:, active]
        phi, phi_star = effective_dimension(h, self.eps), self.phi_star[layer.index]
        if phi_star is None:
            self.phi_star[layer.index] = phi
            return False
        n_prune, n_grow = dyno_counts(phi, phi_star, active.numel(), self.delta)
        n_prune = min(n_prune, active.numel() - 1)
        n_grow = min(n_grow, layer.width - active.numel())
        pruned = active[prune_order(h, n_prune).to(active.device)] if n_prune else active[:0]
        layer.units.set_units(pruned, False)
        grown = self.grow(strategy, layers, layer, inputs, h, n_grow) if n_grow else active[:0]
        if not (n_prune or n_grow):
            return False
        self.phi_star[layer.index] = self.measure(layer, inputs)
        self.events.append(
            {
                "step": self.step,
                "task": strategy.experience.current_experience,
                "layer": layer.index,
                "phi": phi,
                "phi_star": phi_star,
                "phi_star_after": self.phi_star[layer.index],
                "pruned": pruned.tolist(),
                "grown": grown.tolist(),
            }
        )
        return True

    def grow(
        self, strategy: Host, layers: list[MaskedLayer], layer: MaskedLayer, inputs: Tensor, h: Tensor, n: int
    ) -> Tensor:
        """Switch on the ``n`` lowest-index reserve units with NORTH-Select fan-in, zero bias and fan-out.

        Their optimizer state is zeroed. Kaiming-uniform bound ``sqrt(6 / fan_in)`` with ``fan_in`` the
        active inputs (layer 0: all inputs; conv: active input channels x kernel area) [ours]. Returns the
        grown unit indices (int64 ``(n,)``).
        """
        newborn = layer.units.inactive()[:n]
        fan_in = layer.fan_in_size
        if layer.index > 0:  # the active inputs: the previous layer's active units' columns / channels
            previous = layers[layer.index - 1]
            fan_in = previous.units.n_active() * (layer.fan_in_size // previous.width)
        gen = generator(self.config.seed, "dyno-north", self.step, layer.index)
        weights = north_select(
            inputs,
            h,
            lambda z: _eval_apply(layer.units.activation, z),
            n,
            math.sqrt(6.0 / max(1, fan_in)),
            gen,
            self.candidates_per_unit * n,
            self.eps,
            layer.producer,
        )
        slices = layer.slices(newborn)
        slices.fan_in[0].write(weights)
        for piece in (*slices.fan_in[1:], *slices.fan_out):
            piece.fill(0.0)
        zero_optimizer_state(strategy.optimizer, slices)
        layer.units.set_units(newborn, True)
        return newborn

    def _log_width(self, model: nn.Module, task: int) -> None:
        widths = [layer.units.n_active() for layer in masked_layers_of(model)]
        self.active_width.append({"step": self.step, "task": task, "widths": widths})

    def report(self) -> dict[str, Any]:
        """What goes into the run record: ``{"dyno": {"active_width": [...], "events": [...]}}``."""
        return {"dyno": {"active_width": list(self.active_width), "events": list(self.events)}}

    def logged_values(self) -> list[tuple[str, float, int]]:
        """The active widths recorded since the last call, for experiment loggers:
        ``(f"DynoWidth/Layer{l}", width, step)``."""
        start, self._logged = self._logged, len(self.active_width)
        return [
            (f"DynoWidth/Layer{layer}", float(width), entry["step"])
            for entry in self.active_width[start:]
            for layer, width in enumerate(entry["widths"])
        ]


class DynoRuns:
    """The :class:`DynoPlugin` objects of a run-batch as one (docs/protocol.md §12): on batched kernels
    the runs' buffers of a layer become rows of one stacked ring, filled by one hook on the stacked layer,
    so a step's buffer copies cost the same for any number of runs; the runs' counts and triggers are
    their own plugins' (:meth:`DynoPlugin.after_training_iteration`). Under per-run kernels, or when the
    runs' buffers do not line up, every plugin keeps its own hooks.

    Args:
        members: ``(plugin, run view)`` pairs. net: the batch's
            :class:`~plasticity_bench.batch.stacked.StackedNet`.
    """

    def __init__(self, members: list[tuple[DynoPlugin, Any]], net: Any) -> None:
        self.members, self.net = members, net
        self.plugins = [plugin for plugin, _ in members]
        self.stacks: list[Tensor | None] = []
        if net.per_run or not self._aligned():
            return
        for plugin in self.plugins:  # their own per-run hooks give way to one stacked hook per layer
            plugin.remove_hooks()
        for layer in range(len(self.plugins[0].buffers)):
            self.stacks.append(self._restack(layer))
            net.add_stacked_hook(f"hidden.{layer}", partial(self._push, layer))

    def _aligned(self) -> bool:
        """True when every run's buffer of every layer has the same capacity, position and fill."""
        shapes = {
            tuple((b.capacity, b.position, b.filled, b.data is None) for b in plugin.buffers)
            for plugin in self.plugins
        }
        return len(shapes) == 1 and bool(self.plugins[0].buffers)

    def _restack(self, layer: int) -> Tensor | None:
        """The runs' rings of ``layer`` as one ``(R, capacity, dim)`` tensor (a copy, once per task), each
        run's ``data`` a view of its row; ``None`` before the first push."""
        buffers = [plugin.buffers[layer] for plugin in self.plugins]
        if buffers[0].data is None:
            return None
        stack = torch.stack([b.data for b in buffers])
        for r, buffer in enumerate(buffers):
            buffer.data = stack[r]
        return stack

    def _push(self, layer: int, inputs: Tensor, output: Tensor) -> None:
        """:meth:`RingBuffer.push` of every run's ``inputs`` ``(R, B, dim)`` at once (training forwards)."""
        if not self.net.training:
            return
        first = self.plugins[0].buffers[layer]
        rows = inputs.detach()[:, -first.capacity :]
        if self.stacks[layer] is None:
            self.stacks[layer] = rows.new_zeros(len(self.plugins), first.capacity, *rows.shape[2:])
            for r, plugin in enumerate(self.plugins):
                plugin.buffers[layer].data = self.stacks[layer][r]
        ring_write(self.stacks[layer], first.position, rows, axis=1)
        for plugin in self.plugins:
            plugin.buffers[layer].advance(rows.shape[1])

    def after_training_iteration(self) -> None:
        """Each run's update count and, every ``trigger_every`` updates, its trigger."""
        for plugin, view in self.members:
            plugin.after_training_iteration(view)


def _capture(buffer: RingBuffer) -> Callable[..., None]:
    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if module.training:
            buffer.push(inputs[0])

    return hook


RESERVE_OPTION = Option(
    "reserve_factor",
    "float",
    RESERVE_FACTOR,
    "DYNO: model width over the nominal width",
    minimum=1,
    ours=True,
)
TRIGGER_OPTION = Option(
    "trigger_every", "int", TRIGGER_EVERY, "DYNO: updates between measurements", minimum=1
)
EPS_OPTION = Option("dyno_eps", "float", EPS, "DYNO: singular-value threshold of phi", minimum=0)
DELTA_OPTION = Option("dyno_delta", "float", DELTA, "DYNO: tolerance around phi*", minimum=0)
BUFFER_OPTION = Option(
    "buffer_factor", "float", BUFFER_FACTOR, "DYNO: buffer rows per unit of width (> 1)", minimum=1, ours=True
)
CANDIDATES_OPTION = Option(
    "candidates_per_unit",
    "int",
    CANDIDATES_PER_UNIT,
    "DYNO: NORTH-Select candidates per grown unit",
    minimum=1,
)
RESCALE_OPTION = Option(
    "rescale_init",
    "bool",
    True,
    "DYNO: rescale the active units' fan-out to the nominal width at setup",
    ours=True,
)
BASELINE_OPTION = Option(
    "dyno_baseline", "str", "network",
    "DYNO: phi* re-measured at any change of the network, or per layer at its own changes", BASELINES,
)  # fmt: skip
DYNO_OPTIONS = (
    RESERVE_OPTION, TRIGGER_OPTION, EPS_OPTION, DELTA_OPTION, BUFFER_OPTION, CANDIDATES_OPTION,
    RESCALE_OPTION, BASELINE_OPTION,
)  # fmt: skip


def dyno_plugin(config: StrategyConfig) -> DynoPlugin:
    """:class:`DynoPlugin` with the options of :data:`DYNO_OPTIONS` from ``config.options``."""
    options = config.options
    return DynoPlugin(
        config,
        reserve_factor=reserve_factor(config),
        trigger_every=TRIGGER_OPTION.get(options),
        eps=EPS_OPTION.get(options),
        delta=DELTA_OPTION.get(options),
        buffer_factor=BUFFER_OPTION.get(options),
        candidates_per_unit=CANDIDATES_OPTION.get(options),
        rescale_init=RESCALE_OPTION.get(options),
        baseline=BASELINE_OPTION.get(options),
    )


def reserve_factor(config: StrategyConfig) -> float:
    """The model width factor of a DYNO run (``options["reserve_factor"]``, default 2 [ours])."""
    return float(RESERVE_OPTION.get(config.options))
