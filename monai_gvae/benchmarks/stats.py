"""Statistics of benchmark figures over seeds: mean and spread, paired differences, 95 % confidence intervals.

The benchmarks compare arms that share a seed (same labelled subset, same initial weights), so the honest
comparison is the *paired* difference per seed. Two ways of calling it are offered:

* the seed spread (what the tables print today): a difference counts only when ``mean - std > 0`` (a gain) or
  ``mean + std < 0`` (a loss), see :func:`spread_verdict`;
* a 95 % confidence interval of the mean paired difference (Student t or a seeded paired bootstrap): a gain is
  called only when the whole interval lies above zero, see :func:`interval_verdict` (benchmark rule 9).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy import stats as scipy_stats

__all__ = [
    "Verdict",
    "PairedDifference",
    "mean_std",
    "summarize",
    "t_interval",
    "bootstrap_interval",
    "paired_differences_by_seed",
    "paired_difference",
    "spread_verdict",
    "interval_verdict",
]


class Verdict(str, Enum):
    """What a paired difference says about two arms."""

    NO_SPREAD = "no_spread"  # fewer than two pairs: no spread, not a comparison
    GAIN = "gain"  # resolved above zero
    LOSS = "loss"  # resolved below zero
    WITHIN = "within"  # zero lies inside the spread (or the interval)
    UNDECIDED = "undecided"  # not a number (NaN figures)


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0.0 for a single value).

    Args:
        values: the figures, e.g. one Dice per seed.

    Returns:
        ``(mean, std)``; NaN figures propagate.

    Example::

        mean_std([0.70, 0.72, 0.74])  # (0.72, 0.02)
    """
    arr = np.asarray(list(values), dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def summarize(values: Iterable[float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation and count of the finite figures (``None`` and NaN/inf are skipped).

    Returns:
        ``(mean, std, n)``: ``(nan, nan, 0)`` without finite figures, ``std`` NaN for a single one.

    Example::

        summarize([1.0, None, 3.0, float("nan")])  # (2.0, 1.414..., 2)
    """
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan, 0
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan, int(arr.size)


def t_interval(differences: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean of ``differences`` (paired differences, one per seed).

    Args:
        differences: at least two values.
        confidence: coverage in (0, 1).

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: fewer than two values, or a confidence outside (0, 1).

    Example::

        t_interval([1, 2, 3, 4, 5])  # (1.037, 4.963): mean 3 +- 2.776 * 1.581 / sqrt(5)
    """
    arr = _check_sample(differences, confidence)
    half = scipy_stats.t.ppf(0.5 + confidence / 2, arr.size - 1) * arr.std(ddof=1) / math.sqrt(arr.size)
    return float(arr.mean() - half), float(arr.mean() + half)


def bootstrap_interval(
    differences: Sequence[float], confidence: float = 0.95, num_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``differences``: resamples the pairs with replacement.

    Seeded, so the same figures give the same interval. With few pairs the bootstrap interval is too narrow
    (it cannot see beyond the observed values); prefer :func:`t_interval` below about ten pairs.

    Args:
        differences: at least two values (paired differences, one per seed or per test item).
        confidence: coverage in (0, 1).
        num_resamples: bootstrap resamples.
        seed: seed of the resampling.

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: fewer than two values, a confidence outside (0, 1) or ``num_resamples < 1``.

    Example::

        bootstrap_interval([0.01, 0.03, 0.02, 0.04], seed=0)
    """
    arr = _check_sample(differences, confidence)
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}.")
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(num_resamples, arr.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def _check_sample(values: Sequence[float], confidence: float) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"a confidence interval needs at least two paired differences, got {arr.size}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    return arr


@dataclass(frozen=True)
class PairedDifference:
    """Mean ± standard deviation of the paired differences ``a[seed] - b[seed]`` over the shared seeds, with
    the 95 % Student-t interval of the mean (``nan`` with fewer than two pairs)."""

    mean: float
    std: float
    n: int
    ci_low: float = math.nan
    ci_high: float = math.nan

    @property
    def spread_verdict(self) -> Verdict:
        """:func:`spread_verdict` of this difference."""
        return spread_verdict(self.mean, self.std, self.n)

    @property
    def interval_verdict(self) -> Verdict:
        """:func:`interval_verdict` of this difference's confidence interval."""
        return interval_verdict(self.ci_low, self.ci_high, self.n)


def paired_differences_by_seed(a: Mapping[int, float], b: Mapping[int, float]) -> dict[int, float]:
    """``{seed: a[seed] - b[seed]}`` over the seeds both have, in ``a``'s order (what :func:`paired_difference`
    summarises; the per-seed figures show, e.g., the one seed a mean hides).

    Example::

        paired_differences_by_seed({0: 0.75, 1: 0.71}, {1: 0.70, 2: 0.71})  # {1: 0.01...}
    """
    return {s: a[s] - b[s] for s in a if s in b}


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> PairedDifference:
    """Paired difference of two arms scored on the same seeds.

    Args:
        a: ``{seed: figure}`` of the arm under test.
        b: ``{seed: figure}`` of the baseline; seeds missing on either side are skipped.

    Returns:
        the :class:`PairedDifference` (``mean``/``std`` NaN when no seed is shared).

    Example::

        d = paired_difference({0: 0.75, 1: 0.71, 2: 0.73}, {0: 0.70, 1: 0.70, 2: 0.71})
        d.mean, d.spread_verdict  # 0.026..., Verdict.GAIN
    """
    diff = list(paired_differences_by_seed(a, b).values())
    if not diff:
        return PairedDifference(math.nan, math.nan, 0)
    mean, std = mean_std(diff)
    low, high = t_interval(diff) if len(diff) > 1 else (math.nan, math.nan)
    return PairedDifference(mean, std, len(diff), low, high)


def spread_verdict(mean: float, std: float, n: int) -> Verdict:
    """A difference counts only outside the seed spread: a gain when ``mean - std > 0``, a loss when
    ``mean + std < 0``.

    Returns:
        ``NO_SPREAD`` for fewer than two pairs, ``GAIN``, ``LOSS``, ``WITHIN`` (``|mean| <= std``) or
        ``UNDECIDED`` (NaN figures).
    """
    if n < 2:
        return Verdict.NO_SPREAD
    if mean - std > 0:
        return Verdict.GAIN
    if mean + std < 0:
        return Verdict.LOSS
    if abs(mean) <= std:
        return Verdict.WITHIN
    return Verdict.UNDECIDED


def interval_verdict(low: float, high: float, n: int = 2) -> Verdict:
    """A gain only when the whole confidence interval lies above zero (a loss when it lies below).

    Returns:
        ``NO_SPREAD`` for fewer than two pairs, ``GAIN``, ``LOSS``, ``WITHIN`` (the interval holds zero) or
        ``UNDECIDED`` (NaN bounds).

    Example::

        interval_verdict(*t_interval([0.01, 0.03, 0.02, 0.04]))  # Verdict.GAIN
    """
    if n < 2:
        return Verdict.NO_SPREAD
    if low > 0:
        return Verdict.GAIN
    if high < 0:
        return Verdict.LOSS
    if low <= 0 <= high:
        return Verdict.WITHIN
    return Verdict.UNDECIDED
