"""Rate arithmetic: the zero-bias rate, rate(threshold), thresholds for target rates, intervals, integer codes."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import beta

from l1ad.trigger.rates import (
    ONE_SIGMA_CL,
    ZERO_BIAS_RATE_HZ,
    RateStatisticsWarning,
    ScoreDistribution,
    binomial_interval,
    effective_counts,
    rate,
    weighted_fraction,
    zero_bias_rate,
)
from l1ad.trigger.thresholds import (
    code_threshold_to_float,
    float_threshold_to_code,
    rate_curve,
    threshold_for_rate,
    thresholds_for_rates,
)

ZB = ZERO_BIAS_RATE_HZ


def test_zero_bias_rate_constant():
    assert ZERO_BIAS_RATE_HZ == 40.079e6 * 2544 / 3564
    assert ZERO_BIAS_RATE_HZ == pytest.approx(28.6085791e6, rel=1e-9)
    assert zero_bias_rate(3564) == 40.079e6
    assert zero_bias_rate() == ZERO_BIAS_RATE_HZ
    with pytest.raises(ValueError, match="colliding bunches"):
        zero_bias_rate(0)


def _direct_rate(s, w, t):
    return ZB * w[s > t].sum() / w.sum()


def test_rate_matches_direct_weighted_count():
    rng = np.random.default_rng(0)
    s = np.round(rng.exponential(size=5000), 2)  # many ties
    w = rng.uniform(0, 3, size=s.size)
    ts = np.r_[-1.0, np.unique(s)[::37], s.max(), s.max() + 1, 0.505]
    got = rate(s, ts, w)
    want = np.array([_direct_rate(s, w, t) for t in ts])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
    assert got[0] == pytest.approx(ZB) and got[-3] == 0.0 and got[-2] == 0.0
    # ties: events exactly at the threshold do not fire (score > threshold)
    t = s[0]
    assert rate(s, t, w) == pytest.approx(_direct_rate(s, w, t), rel=1e-12)
    assert rate(np.array([1.0, 2.0, 2.0, 3.0]), 2.0) == ZB / 4


def test_rate_on_integer_codes():
    codes = np.array([0, 3, 3, 3, 7, 7, 12], dtype=np.int32)
    assert rate(codes, 3) == pytest.approx(ZB * 3 / 7)
    assert rate(codes, 2) == pytest.approx(ZB * 6 / 7)
    assert rate(codes, 2.5) == rate(codes, 2)
    assert rate(codes.astype(np.uint16), -1) == ZB  # unsigned codes compare exactly with negative thresholds


def test_float32_scores_compare_exactly():
    # numpy alone says np.float32(0.1) > 0.1 is False; the value 0.10000000149 is larger than 0.1
    s = np.array([0.1, 0.2], dtype=np.float32)
    assert rate(s, 0.1) == ZB
    r = threshold_for_rate(s, ZB / 2, min_effective_events=0)
    assert r.threshold == float(np.float32(0.1)) and rate(s, r.threshold) == ZB / 2


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 400),
    n_levels=st.integers(1, 50),
    seed=st.integers(0, 2**32 - 1),
    target_frac=st.floats(1e-6, 0.999),
    integer=st.booleans(),
)
def test_threshold_gives_at_most_target_and_is_minimal(n, n_levels, seed, target_frac, integer):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, n_levels, size=n)
    s = s if integer else s * 0.37 + 0.1
    w = rng.uniform(0, 2, size=n) * (rng.random(n) > 0.1)  # some zero weights
    if w.sum() == 0:
        w[0] = 1.0
    target = target_frac * ZB
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RateStatisticsWarning)
        r = threshold_for_rate(s, target, w)
    assert r.rate_hz <= target
    assert rate(s, r.threshold, w) == r.rate_hz
    assert _direct_rate(s, w, r.threshold) <= target * (1 + 1e-12)
    # any lower threshold (the next lower score) exceeds the target
    lower = s[s < r.threshold]
    if lower.size:
        assert rate(s, lower.max(), w) > target
        assert r.rate_if_lower_hz == rate(s, lower.max(), w)
    else:
        assert r.rate_if_lower_hz == ZB
    assert r.threshold in s
    assert isinstance(r.threshold, int) == integer
    assert r.rate_lo_hz <= r.rate_hz <= r.rate_hi_hz
    if r.threshold_lo is not None:
        assert r.threshold_lo <= r.threshold
    if r.threshold_hi is not None:
        assert r.threshold_hi >= r.threshold


def test_threshold_exact_tie_cases():
    s = np.arange(100, dtype=float)  # unit weights: the top k events are > s[99-k]
    with pytest.warns(RateStatisticsWarning, match="only 5 effective events"):
        r = threshold_for_rate(s, ZB * 0.05)
    assert r.threshold == 94.0 and r.rate_hz == ZB * 5 / 100 and r.n_events == 5
    # a block of tied scores: the threshold cannot split it, the rate falls below the target
    s = np.r_[np.zeros(90), np.full(10, 5.0)]
    with pytest.warns(RateStatisticsWarning, match="no event of the sample"):
        r = threshold_for_rate(s, ZB * 0.05)
    assert r.threshold == 5.0 and r.rate_hz == 0.0 and r.rate_if_lower_hz == pytest.approx(ZB * 0.1)


def test_thresholds_monotone_in_target():
    rng = np.random.default_rng(3)
    s = rng.normal(size=20000)
    with pytest.warns(RateStatisticsWarning, match="no event of the sample"):  # 1 kHz: below one event in 20k
        res = thresholds_for_rates(s, [1e5, 1e4, 5e3, 1e3][::-1], min_effective_events=0)
    ts = [r.threshold for r in res]
    assert ts == sorted(ts, reverse=True)  # lower target -> higher threshold


@pytest.mark.parametrize("bad", [0.0, -5.0, ZB, 2 * ZB, float("nan"), float("inf")])
def test_bad_target_rates(bad):
    with pytest.raises(ValueError, match="target rate"):
        threshold_for_rate(np.arange(10.0), bad)


def test_bad_inputs():
    with pytest.raises(ValueError, match="NaN or inf"):
        rate(np.array([1.0, np.nan]), 0.5)
    with pytest.raises(ValueError, match="negative weight"):
        rate(np.array([1.0, 2.0]), 0.5, np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="sum to zero"):
        rate(np.array([1.0, 2.0]), 0.5, np.zeros(2))
    with pytest.raises(ValueError, match="empty"):
        rate(np.array([]), 0.5)
    with pytest.raises(ValueError, match="shape"):
        rate(np.arange(3.0), 0.5, np.ones(2))
    with pytest.raises(ValueError, match="NaN"):
        ScoreDistribution(np.arange(3.0)).fraction_above(np.nan)


def test_warnings_instead_of_nan():
    s = np.arange(1000.0)
    with pytest.warns(RateStatisticsWarning, match="no event of the sample"):
        r = threshold_for_rate(s, 1000.0)  # 1 kHz needs 3.5e-5 of ZB: below one event in 1000
    assert r.threshold == 999.0 and r.rate_hz == 0.0 and r.n_events == 0
    assert r.rate_lo_hz == 0.0 and 0 < r.rate_hi_hz < ZB and r.threshold_hi is None
    assert all(np.isfinite([r.rate_hz, r.rate_lo_hz, r.rate_hi_hz])) and r.warnings
    with pytest.warns(RateStatisticsWarning, match="effective events"):
        r = threshold_for_rate(s, 100e3)  # ~3.5 events above
    assert r.n_events == 3 and r.warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", RateStatisticsWarning)
        r = threshold_for_rate(s, 1e6)  # 34 events above: no warning
    assert r.warnings == ()


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (5, 10), (10, 10), (3, 1000), (999, 1000)])
@pytest.mark.parametrize("cl", [ONE_SIGMA_CL, 0.95])
def test_clopper_pearson_matches_scipy_beta(k, n, cl):
    a = 1 - cl
    lo, hi = binomial_interval(k, n, cl)
    assert lo == (0.0 if k == 0 else beta.ppf(a / 2, k, n - k + 1))
    assert hi == (1.0 if k == n else beta.ppf(1 - a / 2, k + 1, n - k))
    jlo, jhi = binomial_interval(k, n, cl, "jeffreys")
    assert jlo == (0.0 if k == 0 else beta.ppf(a / 2, k + 0.5, n - k + 0.5))
    assert jhi == (1.0 if k == n else beta.ppf(1 - a / 2, k + 0.5, n - k + 0.5))


def test_clopper_pearson_zero_events_limit():
    # k = 0: the one-sided upper limit 1 - (alpha/2)^(1/n)
    lo, hi = binomial_interval(0, 1000, 0.9)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.05 ** (1 / 1000), rel=1e-10)


def test_effective_counts():
    rng = np.random.default_rng(5)
    mask = rng.random(500) < 0.2
    # equal weights (any scale): exactly the raw counts, so exact Clopper-Pearson
    for c in (1.0, 0.003, 7.5):
        f = weighted_fraction(mask, np.full(500, c))
        assert f.k_eff == pytest.approx(mask.sum(), rel=1e-12) and f.n_eff == pytest.approx(500, rel=1e-12)
        lo, hi = binomial_interval(mask.sum(), 500)
        assert f.lo == pytest.approx(lo, rel=1e-10) and f.hi == pytest.approx(hi, rel=1e-10)
    # the binomial with (k_eff, n_eff) has the weighted estimator's variance
    w = rng.uniform(0.1, 5, 500)
    k, n = effective_counts(w[mask].sum(), (w[mask] ** 2).sum(), w.sum(), (w**2).sum())
    p = w[mask].sum() / w.sum()
    var = ((1 - p) ** 2 * (w[mask] ** 2).sum() + p**2 * (w[~mask] ** 2).sum()) / w.sum() ** 2
    assert k / n == pytest.approx(p) and p * (1 - p) / n == pytest.approx(var)
    # the tail of a stitched sample, carried by many small-weight events: a single global scale factor
    # (k = p (sum w)^2 / sum w^2 = 0.3) would call it a third of an event; the variance-matched k is ~760
    # (3000 passing events, diluted by the normalisation's own fluctuation, the p^2 sum_fail w^2 term)
    w = np.r_[np.ones(1000), np.full(100_000, 1e-4)]
    mask = np.r_[np.zeros(1000, bool), np.arange(100_000) < 3000]
    f = weighted_fraction(mask, w)
    k_global = f.value * w.sum() ** 2 / (w**2).sum()
    assert k_global < 0.31 and 700 < f.k_eff < 800
    assert (f.hi - f.lo) / f.value < 0.08
    # nothing passes: the global effective size sets the upper limit
    f = weighted_fraction(np.zeros(4, bool), np.array([1.0, 1.0, 2.0, 2.0]))
    assert f.k_eff == 0 and f.n_eff == pytest.approx(36 / 10) and f.lo == 0 and f.hi > 0


def test_normal_interval_and_errors():
    lo, hi = binomial_interval(20, 100, 0.6827, "normal")
    sd = math.sqrt(0.2 * 0.8 / 100)
    assert lo == pytest.approx(0.2 - 1.0000 * sd, rel=1e-3) and hi == pytest.approx(0.2 + sd, rel=1e-3)
    with pytest.raises(ValueError, match="stat method"):
        binomial_interval(1, 2, method="wald")
    with pytest.raises(ValueError, match="confidence level"):
        binomial_interval(1, 2, cl=1.0)


def test_threshold_interval_brackets():
    rng = np.random.default_rng(7)
    s = rng.exponential(size=50_000)
    r = threshold_for_rate(s, 50e3)
    assert r.threshold_lo < r.threshold < r.threshold_hi
    assert rate(s, r.threshold_lo) <= r.rate_hi_hz and rate(s, r.threshold_hi) <= r.rate_lo_hz


def test_rate_curve():
    rng = np.random.default_rng(9)
    s = rng.exponential(size=20_000)
    w = rng.uniform(0.5, 1.5, s.size)
    c = rate_curve(s, w, max_points=100)
    assert 50 < c.thresholds.size <= 100 and np.all(np.diff(c.thresholds) > 0)
    np.testing.assert_allclose(c.rate_hz, rate(s, c.thresholds, w), rtol=1e-12)
    assert np.all(np.diff(c.rate_hz) <= 0)
    assert np.all(c.rate_lo_hz <= c.rate_hz) and np.all(c.rate_hz <= c.rate_hi_hz)
    assert c.rate_hz[-1] == 0.0 and c.rate_hi_hz[-1] > 0  # the top score: an upper limit only
    small = rate_curve(np.array([1, 2, 2, 5]))
    assert small.thresholds.tolist() == [1, 2, 5]


class _Fmt:  # a duck-typed format: 4 fractional bits, codes in [-128, 127]
    frac, min_code, max_code = 4, -128, 127


def test_float_threshold_to_code_gives_identical_decisions():
    from l1ad.firmware.fixed import FixedFormat as FwFormat

    formats = [_Fmt(), FwFormat.parse("ap_fixed<8,4>"), "ap_ufixed<10,3>"]
    rng = np.random.default_rng(11)
    for fmt in formats:
        from l1ad.trigger.thresholds import score_code_range

        frac, lo, hi = score_code_range(fmt)
        codes = np.arange(lo, hi + 1)
        values = codes * 2.0**-frac
        for t in np.r_[rng.uniform(values[0], values[-1] + 1, 200), values[::7], values[-1], values[-1] + 3]:
            T = float_threshold_to_code(t, fmt)
            assert isinstance(T, int) and lo <= T <= hi
            np.testing.assert_array_equal(codes > T, values > t)
            assert code_threshold_to_float(T, fmt) <= t
            np.testing.assert_array_equal(values > code_threshold_to_float(T, fmt), codes > T)
        with pytest.raises(ValueError, match="every event fires"):
            float_threshold_to_code(values[0] - 2.0**-frac / 2, fmt)
    assert float_threshold_to_code(0.0625, _Fmt()) == 1 and float_threshold_to_code(0.06, _Fmt()) == 0
    assert float_threshold_to_code(-0.06, _Fmt()) == -1
    with pytest.raises(ValueError, match="integer"):
        code_threshold_to_float(1.5, _Fmt())
    with pytest.raises(TypeError, match="fixed-point format"):
        float_threshold_to_code(1.0, object())


def test_integer_codes_threshold_roundtrip():
    """Thresholds found on firmware codes equal those found on their float values, mapped to codes."""
    rng = np.random.default_rng(13)
    fmt = _Fmt()
    codes = rng.integers(-128, 128, 5000)
    values = codes * 2.0**-fmt.frac
    for target in (1e4, 1e5, 1e6):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RateStatisticsWarning)
            rc = threshold_for_rate(codes, target)
            rv = threshold_for_rate(values, target)
        assert isinstance(rc.threshold, int)
        assert rc.threshold == float_threshold_to_code(rv.threshold, fmt)
        assert rc.rate_hz == rv.rate_hz
