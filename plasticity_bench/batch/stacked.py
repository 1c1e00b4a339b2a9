"""Run-batched networks: ``R`` masked networks of one architecture as one model (docs/protocol.md §12).

A :class:`StackedNet` holds every parameter and unit mask of ``R``
:class:`~plasticity_bench.core.models.MaskedNet`
objects with a leading run dimension (``(R, *shape)``) and computes all ``R`` forward passes in one
autograd graph: on GPUs hidden and output Linear layers as batched matmuls (``torch.baddbmm``) and conv
layers as one grouped convolution with ``groups = R``; on CPUs each run's own network on its rows (faster
there, see ``kernels``). The ``R`` networks stay real ``MaskedNet`` objects whose parameters and masks are
*views* of row ``r`` of the stacked tensors (storage shared), so the masked-unit core
(:class:`~plasticity_bench.core.masks.MaskedLayer`, :class:`~plasticity_bench.core.masks.UnitSlices`) and
every single-run plugin edit one run's units in place, and the next batched step sees the edit.

Exactness: run ``r`` computes what its own network computes: bit for bit with per-run kernels (CPU), to
float rounding with batched ones (batched matmul and grouped convolution may sum in another order). A random
activation (Rand. Smooth-Leaky) draws each run's leaks from that run's own generator in the order the single
network would, so a run's random stream is its own.

With batched kernels, forward hooks registered on a run's hidden Linear layers, masked activations or head
(DYNO's input buffer, a user's probe) are called with that run's slice of the batched input and output after
each batched forward; a hook's return value cannot replace the output there (raises ``RuntimeError``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from plasticity_bench.core.activations import RandSmoothLeaky
from plasticity_bench.core.models import MaskedNet
from plasticity_bench.core.seeding import drawing_from

#: Trunk modules a stacked network can run (besides elementwise activations).
TRUNK_MODULES = (nn.Conv2d, nn.MaxPool2d, nn.Flatten)
#: How the layers of all runs are computed (see :class:`StackedNet`).
KERNELS = ("auto", "batched", "per_run")
#: Elementwise activations a stacked network can run.
ACTIVATIONS = (nn.ReLU, RandSmoothLeaky)


def replayed_modules(model: MaskedNet) -> list[str]:
    """The modules of a run whose forward hooks the batched kernels replay: hidden layers, masked
    activations, head."""
    names = [f"hidden.{i}" for i in range(len(model.hidden))]
    return names + [f"units.{i}" for i in range(len(model.units))] + ["head"]


class HookRegistrar:
    """Stands in for ``register_forward_hook`` of a run's module under batched kernels: the hook is
    registered on the module as usual (public API) and recorded for replay on the run's slice; the returned
    handle's ``remove()`` undoes both. Picklable, so a batch checkpoint can hold the run's modules."""

    def __init__(self, net: StackedNet, run: int, name: str, module: nn.Module) -> None:
        self.net, self.run, self.name, self.module = net, run, name, module

    def __call__(self, hook: Callable[..., Any], *args: Any, **kwargs: Any) -> ReplayHandle:
        handle = nn.Module.register_forward_hook(self.module, hook, *args, **kwargs)
        entry = (self.run, self.module, hook)
        self.net.hooks(self.name).append(entry)
        return ReplayHandle(handle, self.net, self.name, entry)


class ReplayHandle:
    """The handle of a replayed hook: ``remove()`` removes it from the module and from the replay list."""

    def __init__(self, handle: Any, net: StackedNet, name: str, entry: tuple) -> None:
        self.handle, self.net, self.name, self.entry = handle, net, name, entry

    def remove(self) -> None:
        self.handle.remove()
        hooks = self.net.hooks(self.name)
        if self.entry in hooks:
            hooks.remove(self.entry)


class PreHookRefusal:
    """Stands in for ``register_forward_pre_hook`` under batched kernels, which cannot replay one: refused
    with the fix, instead of silently never called."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise ValueError(
            f"a forward pre-hook on {self.name} cannot run in a run-batch on batched kernels; use "
            "--batch-runs 1 (or leave BATCHABLE unset in the plugin)"
        )


def _key(name: str) -> str:
    return name.replace(".", "__")


class StackedNet(nn.Module):
    """``R`` same-shaped :class:`MaskedNet` runs as one network with a leading run dimension.

    Args:
        models: the runs' networks (same architecture and widths, on one device). Their parameters and
            masks become views of this module's stacked tensors; do not move them to another device after.
        generators: one generator per run for random activations (``None`` entries: unused / not random).
        kernels: ``batched`` (batched matmul, grouped convolution; forward hooks of the runs' modules are
            replayed on each run's slice), ``per_run`` (each run's own network forward on its rows, inside
            the one autograd graph: exactly its lone computation; its parameters get their own gradients), or
            ``auto``: per-run on CPUs, where CPU batched matmul is slower than single matmuls and the
            arithmetic, not the launches, bounds the step; batched on GPUs, where one launch for R runs wins.

    Input ``x``: ``(R, B, *input_shape)`` float32. Output: ``(R, B, n_classes)`` logits.

    Raises:
        ValueError: for no models, or models whose parameter names or shapes differ.
        TypeError: for a trunk module or activation a stacked network cannot run.
    """

    def __init__(
        self,
        models: Sequence[MaskedNet],
        generators: Sequence[torch.Generator | None],
        kernels: str = "auto",
    ) -> None:
        super().__init__()
        if kernels not in KERNELS:
            raise ValueError(f"unknown kernels {kernels!r}; choose one of {KERNELS}")
        device = next(models[0].parameters()).device if models else torch.device("cpu")
        self.per_run = kernels == "per_run" or (kernels == "auto" and device.type == "cpu")
        if not models or len(generators) != len(models):
            raise ValueError("a stacked network needs at least one model and one generator per model")
        self.runs = list(models)
        self.generators = list(generators)
        self.stacked = nn.ParameterDict()
        self.aliases: list[dict[nn.Parameter, tuple[nn.Parameter, int]]] = [{} for _ in models]
        self.run_params: list[dict[str, nn.Parameter]] = [{} for _ in models]
        self._check_modules(models[0])
        self.names = [name for name, _ in models[0].named_parameters()]
        for name in self.names:
            self._stack_parameter(name)
        for layer in range(len(models[0].units)):
            masks = torch.stack([m.units[layer].mask for m in models])
            self.register_buffer(f"mask{layer}", masks)
            for r, model in enumerate(models):
                model.units[layer].mask = masks[r]
        self._hooks: dict[str, list[tuple[int, nn.Module, Callable[..., Any]]]] = {}
        self._stacked_hooks: dict[str, list[Callable[[Tensor, Tensor], None]]] = {}
        if not self.per_run:  # batched kernels replay the runs' forward hooks: know them when registered
            for r, model in enumerate(models):
                for name in replayed_modules(model):
                    module = model.get_submodule(name)
                    module.register_forward_hook = HookRegistrar(self, r, name, module)
                    module.register_forward_pre_hook = PreHookRefusal(name)
        self._random = [[m for m in model.modules() if isinstance(m, RandSmoothLeaky)] for model in models]

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    def _check_modules(self, model: MaskedNet) -> None:
        trunk = list(model.trunk) if isinstance(model.trunk, nn.Sequential) else [model.trunk]
        norms = [u.norm for u in model.units if u.norm is not None]
        for module in [*trunk, *(u.activation for u in model.units), *norms]:
            if not isinstance(module, TRUNK_MODULES + ACTIVATIONS):
                raise TypeError(
                    f"run-batched training cannot run {type(module).__name__}; supported: "
                    f"{', '.join(t.__name__ for t in TRUNK_MODULES + ACTIVATIONS)} (use --batch-runs 1)"
                )

    def _stack_parameter(self, name: str) -> None:
        params = [m.get_parameter(name) for m in self.runs]
        if len({tuple(p.shape) for p in params}) != 1:
            raise ValueError(f"runs of one batch need equal shapes; {name} differs")
        stacked = nn.Parameter(torch.stack([p.detach() for p in params]))
        self.stacked[_key(name)] = stacked
        owner, _, leaf = name.rpartition(".")
        for r, model in enumerate(self.runs):
            view = nn.Parameter(stacked.data[r])
            setattr(model.get_submodule(owner), leaf, view)
            self.aliases[r][view] = (stacked, r)
            self.run_params[r][name] = view

    def param(self, name: str) -> nn.Parameter:
        """The stacked ``(R, *shape)`` tensor of the runs' parameter ``name`` (e.g. ``head.weight``)."""
        return self.stacked[_key(name)]

    def mask(self, layer: int) -> Tensor:
        """Stacked unit masks of masked layer ``layer``: ``(R, d_l)`` float32."""
        return getattr(self, f"mask{layer}")

    def share_grads(self) -> None:
        """Point every run parameter's ``.grad`` at its row of the stacked gradient (batched kernels), for
        per-run hooks that read or scale gradients between backward and the optimizer step. With per-run
        kernels the run parameters hold their own gradients already."""
        if self.per_run:
            return
        for aliases in self.aliases:
            for view, (stacked, r) in aliases.items():
                view.grad = None if stacked.grad is None else stacked.grad[r]

    def gradients(self) -> list[list[Tensor | None]]:
        """Each run's gradient of each stacked parameter (``[param][run]``, order of ``stacked``): the run
        parameter's own ``.grad`` (per-run kernels) or the row of the stacked gradient (batched)."""
        if self.per_run:
            return [[params[name].grad for params in self.run_params] for name in self.names]
        return [
            [None if p.grad is None else p.grad[r] for r in range(self.n_runs)] for p in self.stacked.values()
        ]

    def zero_grad(self) -> None:
        """Drop every gradient (stacked and per run)."""
        for p in self.parameters():
            p.grad = None
        for params in self.run_params:
            for p in params.values():
                p.grad = None

    def hooks(self, name: str) -> list[tuple[int, nn.Module, Callable[..., Any]]]:
        """``(run, module, hook)`` of every live forward hook on the runs' module ``name`` (registered
        through :class:`HookRegistrar`), replayed on each run's slice by the batched kernels."""
        return self._hooks.setdefault(name, [])

    def add_stacked_hook(self, name: str, hook: Callable[[Tensor, Tensor], None]) -> None:
        """Call ``hook(inputs, output)`` with the stacked ``(R, B, ...)`` input and output of module ``name``
        at every batched forward (batched kernels only): a plugin's form for the whole batch (``for_runs``)
        sees every run at once, at a cost independent of ``R``. Kept until :meth:`clear_stacked_hooks`.

        Raises:
            ValueError: under per-run kernels (there is no stacked forward).
        """
        if self.per_run:
            raise ValueError("per-run kernels have no stacked forward to hook")
        self._stacked_hooks.setdefault(name, []).append(hook)

    def clear_stacked_hooks(self) -> None:
        """Remove every hook of :meth:`add_stacked_hook` (the trainer does, around each task)."""
        self._stacked_hooks = {}

    def _replay(self, name: str, inputs: Tensor, output: Tensor) -> None:
        for r, module, hook in list(self._hooks.get(name, ())):
            if hook(module, (inputs[r],), output[r]) is not None:
                raise RuntimeError(f"a forward hook on {name} returned a value; run-batched training "
                                   "cannot replace one run's output (use --batch-runs 1)")  # fmt: skip
        for hook in self._stacked_hooks.get(name, ()):
            hook(inputs, output)

    def _activate(self, module: nn.Module, x: Tensor, run_dim: int) -> Tensor:
        """Elementwise activation; random leaks drawn per run (run ``r`` is chunk ``r`` along ``run_dim``)."""
        if isinstance(module, RandSmoothLeaky) and module.random:
            chunks = x.chunk(self.n_runs, dim=run_dim)
            chunks = [c.squeeze(0) for c in chunks] if run_dim == 0 else chunks
            leaks = [module.draw_leak(c, g) for c, g in zip(chunks, self.generators)]
            a = torch.stack(leaks) if run_dim == 0 else torch.cat(leaks, dim=run_dim)
            return module.with_leak(x, a)
        return module(x)

    def _trunk_modules(self, r: int) -> list[nn.Module]:
        trunk = self.runs[r].trunk
        return list(trunk) if isinstance(trunk, nn.Sequential) else [trunk]

    def _trunk(self, x: Tensor) -> Tensor:
        """``(R, B, *input_shape)`` -> ``(R, B, F)`` (batched kernels): conv maps are kept as
        ``(B, R*C, H, W)``, one grouped convolution per layer."""
        sequential = isinstance(self.runs[0].trunk, nn.Sequential)
        runs, batch = x.shape[:2]
        grouped: Tensor | None = None
        for i, module in enumerate(self._trunk_modules(0)):
            prefix = f"trunk.{i}" if sequential else "trunk"
            if isinstance(module, nn.Conv2d):
                if grouped is None:
                    grouped = x.transpose(0, 1).reshape(batch, -1, *x.shape[3:])
                weight = self.param(f"{prefix}.weight").flatten(0, 1)
                bias = self.param(f"{prefix}.bias").flatten() if module.bias is not None else None
                conv = (module.stride, module.padding, module.dilation, runs * module.groups)
                grouped = F.conv2d(grouped, weight, bias, *conv)
            elif isinstance(module, nn.MaxPool2d):
                grouped = module(grouped)
            elif isinstance(module, nn.Flatten) and grouped is not None:
                x, grouped = grouped.reshape(batch, runs, -1).transpose(0, 1), None
            elif isinstance(module, nn.Flatten):
                x = x.flatten(2)
            elif grouped is not None:
                grouped = self._activate(module, grouped, run_dim=1)
            else:
                x = self._activate(module, x, run_dim=0)
        return x

    def _linear(self, name: str, x: Tensor) -> Tensor:
        weight, bias = self.param(f"{name}.weight"), self.param(f"{name}.bias")
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    def run_forward(self, r: int, x: Tensor) -> Tensor:
        """Run ``r``'s own network on its ``(B, *input_shape)`` rows (per-run kernels): exactly its lone
        forward, forward hooks included, random leaks drawn from its generator."""
        model, generator = self.runs[r], self.generators[r]
        if generator is None or not any(m.random for m in self._random[r]):
            return model(x)
        with drawing_from(generator):
            return model(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.per_run:
            return torch.stack([self.run_forward(r, x_r) for r, x_r in enumerate(x.unbind(0))])
        h = self._trunk(x)
        model = self.runs[0]
        for layer, units in enumerate(model.units):
            z = self._linear(f"hidden.{layer}", h)
            self._replay(f"hidden.{layer}", h, z)
            out = self._activate(units.activation, z, run_dim=0) * self.mask(layer).unsqueeze(1)
            self._replay(f"units.{layer}", z, out)
            h = out
        logits = self._linear("head", h)
        self._replay("head", h, logits)
        return logits
