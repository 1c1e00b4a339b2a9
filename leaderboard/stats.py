"""Statistics of paired comparisons on identical streams and of scores aggregated over benchmarks
(docs/protocol.md §16), computed with ``scipy.stats``.

Paired: every strategy runs on the same stream for a seed, so the per-seed difference ``d_s = x_s - y_s``
removes the stream's share of the variance. :func:`paired` gives its mean with a Student-t and a bootstrap
95% interval, the Wilcoxon signed-rank and paired-t p-values, the probability of improvement and the seeds
a difference of that size needs at 80% power. Aggregate (Agarwal et al. 2021, "Deep RL at the edge of the
statistical precipice"): the interquartile mean and the mean of normalised scores with stratified-bootstrap
intervals (:func:`stratified_interval`: seeds resampled within each benchmark).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Bootstrap resamples of every interval; the seed of their generator (intervals are reproducible).
RESAMPLES = 9999
BOOTSTRAP_SEED = 0
#: The power target of :func:`seeds_needed` and the largest count it reports.
POWER, ALPHA, MOST_SEEDS = 0.8, 0.05, 10_000


@dataclass(frozen=True)
class Paired:
    """A paired comparison of ``n`` seeds, in the units of its inputs (``d = x - y`` per seed).

    ``t_low``/``t_high``: Student-t 95% interval of the mean difference; ``boot_low``/``boot_high``: the
    percentile-bootstrap 95% interval (NaN below 3 seeds); ``p_wilcoxon``, ``p_ttest``: two-sided p-values
    (NaN below 2 seeds; 1.0 when every difference is 0); ``prob_improvement``: P(x > y) over the seed pairs,
    ties counted half; ``seeds_needed``: seeds for 80% power at this mean and sd (None when unreachable).
    """

    n: int
    mean: float
    sd: float
    t_low: float
    t_high: float
    boot_low: float
    boot_high: float
    p_wilcoxon: float
    p_ttest: float
    prob_improvement: float
    seeds_needed: int | None


def paired(x: Sequence[float], y: Sequence[float], seed: int = BOOTSTRAP_SEED) -> Paired:
    """Compare ``x`` with ``y`` seed by seed (equal length, same seed order).

    Raises:
        ValueError: for inputs of different length or no pair.
    """
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired comparison needs equal, non-empty samples (got {a.size} and {b.size})")
    d = a - b
    n, mean = int(d.size), float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    t_low, t_high = t_interval(d)
    boot_low, boot_high = bootstrap_interval(d, seed) if n >= 3 else (math.nan, math.nan)
    return Paired(
        n, mean, sd, t_low, t_high, boot_low, boot_high, wilcoxon_p(d), ttest_p(d),
        prob_improvement(a, b), seeds_needed(mean, sd),
    )  # fmt: skip


def t_interval(d: np.ndarray) -> tuple[float, float]:
    """Student-t 95% interval of the mean of ``d``: ``mean ± t.ppf(0.975, n-1) * sd / sqrt(n)``; NaN for
    fewer than 2 values."""
    if d.size < 2:
        return math.nan, math.nan
    half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return float(d.mean()) - half, float(d.mean()) + half


def bootstrap_interval(d: np.ndarray, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile-bootstrap 95% interval of the mean of ``d`` (``scipy.stats.bootstrap``)."""
    return stratified_interval([d], mean, seed)


def mean(values: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """The mean along ``axis`` (a statistic :func:`stratified_interval` takes)."""
    return np.mean(values, axis=axis)


def wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of ``d`` (exact for small samples without ties or zeros);
    1.0 when every difference is 0, NaN below 2 values."""
    if d.size < 2:
        return math.nan
    if not np.any(d):
        return 1.0
    return float(stats.wilcoxon(d).pvalue)


def ttest_p(d: np.ndarray) -> float:
    """Two-sided paired-t p-value (one-sample t of ``d`` against 0); 1.0 when every difference is 0."""
    if d.size < 2:
        return math.nan
    if not np.any(d):
        return 1.0
    with warnings.catch_warnings():  # constant non-zero differences: p is 0, scipy warns of precision
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_1samp(d, 0.0).pvalue)


def prob_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) over the seed pairs: the share of seeds where ``x`` beats ``y``, ties counted half."""
    return float(np.mean(x > y) + 0.5 * np.mean(x == y))


def seeds_needed(mean: float, sd: float, power: float = POWER, alpha: float = ALPHA) -> int | None:
    """Smallest seed count at which a two-sided paired t-test at level ``alpha`` detects a mean difference
    ``mean`` with per-seed sd ``sd`` with probability ``power`` (noncentral t, ``scipy.stats.nct``); 2 for
    sd 0 and a nonzero mean; None for a zero mean, an unknown sd or more than :data:`MOST_SEEDS`."""
    if math.isnan(sd) or mean == 0:
        return None
    if sd == 0:
        return 2
    effect = abs(mean) / sd
    for n in range(2, MOST_SEEDS + 1):
        df, shift = n - 1, effect * math.sqrt(n)
        critical = stats.t.ppf(1 - alpha / 2, df)
        if stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift) >= power:
            return n
    return None


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in input order; NaN entries stay NaN and do not count.

    The ``i``-th smallest of ``m`` p-values becomes ``max_{j <= i} min(1, (m - j) * p_(j))`` (0-based).
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Interquartile mean along ``axis``: the mean of the middle 50% (``scipy.stats.trim_mean(values,
    0.25)``)."""
    return stats.trim_mean(np.asarray(values, dtype=float), 0.25, axis=axis)


def stratified_interval(
    strata: Sequence[np.ndarray], statistic: Callable[..., np.ndarray | float], seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile-bootstrap 95% interval of ``statistic`` (called as ``statistic(values, axis=-1)``, e.g.
    :func:`mean`, :func:`iqm`) of the pooled ``strata``, each stratum resampled on its own (its size kept):
    ``scipy.stats.bootstrap`` over the strata as independent samples, vectorised (a stratum of one value
    resamples to itself). NaN when a stratum is empty or no stratum has two values."""
    if not strata or any(len(s) == 0 for s in strata):
        return math.nan, math.nan
    samples = tuple(np.asarray(s, dtype=float) for s in strata if len(s) > 1)
    fixed = np.concatenate([np.asarray(s, dtype=float) for s in strata if len(s) == 1] or [np.zeros(0)])
    if not samples:
        return math.nan, math.nan

    def pooled(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        constant = np.broadcast_to(fixed, (*resampled[0].shape[:-1], fixed.size))
        return statistic(np.concatenate([*resampled, constant], axis=-1), axis=-1)

    result = stats.bootstrap(
        samples, pooled, n_resamples=RESAMPLES, vectorized=True, method="percentile",
        rng=np.random.default_rng(seed),
    )  # fmt: skip
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def normalised(value: float, chance: float, reference: float) -> float:
    """``(value - chance) / (reference - chance)``: 0 at chance, 1 at the reference (Dense); NaN when the
    reference is not above chance."""
    span = reference - chance
    return (value - chance) / span if span > 0 else math.nan
