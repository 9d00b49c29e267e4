"""Conformal p-values: the split formula against a loop, exact super-uniformity under the null, randomised
uniformity, and the conditional version restoring uniformity across a covariate where the plain one fails."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from l1ad.offline import conformal as cf


def test_split_pvalues_match_the_definition_with_ties():
    rng = np.random.default_rng(0)
    cal = rng.integers(0, 20, 300).astype(float)  # many ties
    test = np.r_[rng.integers(-2, 23, 200).astype(float), np.inf]
    p = cf.split_pvalues(cal, test)
    want = np.array([(1 + np.sum(cal >= s)) / (1 + cal.size) for s in test])
    assert np.array_equal(p, want)
    assert p.min() >= 1 / 301 and p.max() == 1.0
    assert cf.split_pvalues(cal, test.reshape(-1, 1)).shape == (201, 1)
    with pytest.raises(ValueError):
        cf.split_pvalues([], [1.0])
    with pytest.raises(ValueError):
        cf.split_pvalues([1.0, np.nan], [1.0])


def test_super_uniform_under_the_null_exactly():
    """P(p <= a) = floor(a (n+1)) / (n+1) <= a over repeated calibration sets (exchangeability)."""
    rng = np.random.default_rng(1)
    n_cal, reps = 39, 40_000
    scores = rng.standard_exponential((reps, n_cal + 1))
    p = np.array([cf.split_pvalues(s[:-1], s[-1:])[0] for s in scores[:4000]])
    # vectorised version for all repetitions: rank of the test point among the n+1
    p_all = (1 + (scores[:, :-1] >= scores[:, -1:]).sum(axis=1)) / (n_cal + 1)
    assert np.array_equal(p, p_all[:4000])
    for a in (0.01, 0.05, 0.1, 0.25, 0.5, 0.9):
        exact = np.floor(a * (n_cal + 1)) / (n_cal + 1)
        emp = np.mean(p_all <= a)
        se = np.sqrt(max(exact * (1 - exact), 1e-4) / reps)
        assert abs(emp - exact) < 4 * se + 1e-4
        assert emp <= a + 4 * se


def test_randomised_pvalues_are_uniform():
    rng = np.random.default_rng(2)
    p = np.array([cf.split_pvalues(rng.integers(0, 5, 30), rng.integers(0, 5, 1), randomize=True, rng=rng)[0] for _ in range(3000)])
    assert stats.kstest(p, "uniform").pvalue > 0.01


def _pileup_sample(rng, n):
    z = rng.uniform(0, 80, n)
    return rng.normal(0.04 * z, 1 + 0.02 * z), z


def _rates(p, z, a, edges=(0, 20, 40, 60, 80)):
    b = np.digitize(z, edges[1:-1])
    return np.array([np.mean(p[b == i] <= a) for i in range(len(edges) - 1)])


@pytest.mark.parametrize("model", ["binned", pytest.param("hgb", marks=pytest.mark.slow), pytest.param("linear", marks=pytest.mark.slow)])
def test_conditional_restores_uniformity_across_the_covariate(model):
    rng = np.random.default_rng(3)
    s_cal, z_cal = _pileup_sample(rng, 8000)
    s_te, z_te = _pileup_sample(rng, 40_000)
    a = 0.05
    plain = _rates(cf.split_pvalues(s_cal, s_te), z_te, a)
    cond_p = cf.conditional_pvalues(s_cal, z_cal, s_te, z_te, model=model)
    cond = _rates(cond_p, z_te, a)
    # the plain p-values are valid only on average: far too few alarms at low pile-up, far too many at high
    assert plain[0] < 0.01 and plain[-1] > 0.1
    assert np.all(np.abs(cond - a) < 0.025), cond
    assert np.max(np.abs(cond - a)) < 0.3 * np.max(np.abs(plain - a))
    # and stay valid marginally
    assert abs(np.mean(cond_p <= a) - a) < 0.01


def test_conditional_cdf_is_monotone_with_tails():
    rng = np.random.default_rng(4)
    s, z = _pileup_sample(rng, 4000)
    cc = cf.ConditionalConformal(model="binned").fit(s, z)
    grid = np.linspace(-20, 40, 400)
    F = cc.cdf(grid, np.full(grid.size, 50.0))
    v = cc.tail_score(grid, np.full(grid.size, 50.0))
    assert np.all(np.diff(F) >= 0) and F[0] > 0 and np.all(np.diff(v) > 0)  # strictly increasing, no saturation
    # close to the true conditional CDF in the bulk
    true = stats.norm.cdf(grid, 0.04 * 50, 1 + 0.02 * 50)
    mid = (true > 0.05) & (true < 0.95)
    assert np.max(np.abs(F[mid] - true[mid])) < 0.05
    with pytest.raises(RuntimeError):
        cf.ConditionalConformal().pvalues(s[:3], z[:3])
    with pytest.raises(ValueError):
        cf.ConformalConfig(levels=(0.5,))
