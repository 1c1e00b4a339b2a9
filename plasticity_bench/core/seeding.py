"""Deterministic seeds derived from the run seed (docs/protocol.md §7: every random choice comes from it)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

#: The ``torch.profiler.record_function`` name of draws made on the host from a CPU generator: reading
#: their value waits for no device (:mod:`plasticity_bench.measure.dispatch` does not count it as a sync).
HOST_RANGE = "plasticity_bench::host"


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed for the random choice named by ``keys`` (e.g. ``("permutation", task)``).

    Independent of the order in which choices are drawn, so two strategies that consume different
    amounts of randomness still see the identical stream for one run seed.
    """
    words = [seed] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return int(np.random.SeedSequence(words).generate_state(2, np.uint64)[0] >> np.uint64(1))


def generator(seed: int, *keys: int | str) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed`."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


def rng(seed: int, *keys: int | str) -> np.random.Generator:
    """A numpy ``Generator`` seeded with :func:`derive_seed`."""
    return np.random.default_rng(derive_seed(seed, *keys))


@contextmanager
def drawing_from(generator: torch.Generator) -> Iterator[None]:
    """Inside the block torch's global RNG of ``generator``'s device is ``generator``: modules that draw from
    the global RNG (Rand. Smooth-Leaky) advance ``generator``; the global state is restored after."""
    device = generator.device
    if device.type == "cuda":
        get, put = (lambda: torch.cuda.get_rng_state(device)), (lambda s: torch.cuda.set_rng_state(s, device))
    else:
        get, put = torch.get_rng_state, torch.set_rng_state
    kept = get()
    put(generator.get_state())
    try:
        yield
    finally:
        generator.set_state(get())
        put(kept)
