"""monai_gvae.benchmarks.stats: mean and spread, paired differences, confidence intervals and verdicts."""

import math

import numpy as np
import pytest

from monai_gvae.benchmarks.stats import (
    PairedDifference,
    Verdict,
    bootstrap_interval,
    interval_verdict,
    mean_std,
    paired_difference,
    paired_differences_by_seed,
    spread_verdict,
    summarize,
    t_interval,
)


def test_mean_std_and_summarize():
    assert mean_std([0.70, 0.72, 0.74]) == pytest.approx((0.72, 0.02))
    assert mean_std([0.5]) == (0.5, 0.0)  # one seed: no spread
    m, s = mean_std([np.nan])
    assert math.isnan(m) and s == 0.0
    assert summarize([1.0, None, 3.0, float("nan"), float("inf")]) == pytest.approx((2.0, math.sqrt(2), 2))
    m, s, n = summarize([4.0])
    assert (m, n) == (4.0, 1) and math.isnan(s)
    m, s, n = summarize([None])
    assert n == 0 and math.isnan(m) and math.isnan(s)


def test_t_interval_of_a_known_sample():
    # mean 3, sd sqrt(2.5), t(0.975, 4) = 2.776445: half width 2.776445 * 1.581139 / sqrt(5) = 1.963243
    low, high = t_interval([1, 2, 3, 4, 5])
    assert low == pytest.approx(1.036757, abs=1e-6) and high == pytest.approx(4.963243, abs=1e-6)
    low90, high90 = t_interval([1, 2, 3, 4, 5], confidence=0.9)
    assert low < low90 < 3 < high90 < high
    assert t_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)
    with pytest.raises(ValueError, match="at least two"):
        t_interval([1.0])
    with pytest.raises(ValueError, match="confidence"):
        t_interval([1.0, 2.0], confidence=1.5)


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    diffs = [0.01, 0.03, 0.02, 0.04, -0.01, 0.05, 0.02, 0.03]
    a, b = bootstrap_interval(diffs, seed=0), bootstrap_interval(diffs, seed=0)
    assert a == b  # seeded: the same pairs give the same interval
    low, high = a
    assert low < np.mean(diffs) < high
    assert min(diffs) <= low and high <= max(diffs)  # a bootstrap mean never leaves the observed range
    # a percentile interval of resampled means: narrower than the t interval for the same pairs
    t_low, t_high = t_interval(diffs)
    assert high - low < t_high - t_low
    assert bootstrap_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)
    with pytest.raises(ValueError, match="num_resamples"):
        bootstrap_interval(diffs, num_resamples=0)


def test_paired_difference_uses_shared_seeds():
    d = paired_difference({0: 0.75, 1: 0.71, 2: 0.73, 3: 0.9}, {0: 0.70, 1: 0.70, 2: 0.71})
    assert d.n == 3 and d.mean == pytest.approx(0.026666, abs=1e-6) and d.std == pytest.approx(0.020817, abs=1e-6)
    assert d.ci_low == pytest.approx(t_interval([0.05, 0.01, 0.02])[0]) and d.ci_high > d.mean
    assert d.spread_verdict is Verdict.GAIN  # mean - std > 0
    assert d.interval_verdict is Verdict.WITHIN  # but the 95 % interval still holds zero with 3 pairs
    empty = paired_difference({0: 1.0}, {1: 1.0})
    assert empty.n == 0 and math.isnan(empty.mean) and empty.spread_verdict is Verdict.NO_SPREAD
    one = paired_difference({0: 0.8}, {0: 0.7})
    assert one.n == 1 and one.std == 0.0 and math.isnan(one.ci_low)
    assert PairedDifference(0.1, 0.01, 5, 0.05, 0.15).interval_verdict is Verdict.GAIN
    by_seed = paired_differences_by_seed({0: 0.75, 1: 0.71, 2: 0.73, 3: 0.9}, {0: 0.70, 1: 0.70, 2: 0.71})
    assert by_seed == pytest.approx({0: 0.05, 1: 0.01, 2: 0.02}) and paired_differences_by_seed({0: 1.0}, {1: 1.0}) == {}


@pytest.mark.parametrize(
    "mean, std, n, expected",
    [(0.02, 0.01, 3, Verdict.GAIN), (-0.02, 0.01, 3, Verdict.LOSS), (0.01, 0.01, 3, Verdict.WITHIN),
     (-0.005, 0.01, 3, Verdict.WITHIN), (0.5, 0.0, 1, Verdict.NO_SPREAD), (math.nan, 0.1, 3, Verdict.UNDECIDED)],
)
def test_spread_verdict(mean, std, n, expected):
    assert spread_verdict(mean, std, n) is expected


def test_interval_verdict_calls_a_gain_only_above_zero():
    assert interval_verdict(0.001, 0.05) is Verdict.GAIN
    assert interval_verdict(-0.05, -0.001) is Verdict.LOSS
    assert interval_verdict(0.0, 0.05) is Verdict.WITHIN  # touching zero is not a gain
    assert interval_verdict(-0.01, 0.05) is Verdict.WITHIN
    assert interval_verdict(0.01, 0.05, n=1) is Verdict.NO_SPREAD
    assert interval_verdict(math.nan, math.nan) is Verdict.UNDECIDED
