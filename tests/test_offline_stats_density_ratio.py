"""Classifier density ratio with prior correction (against the analytic Gaussian ratio), calibration, and
self-normalised importance sampling with its heavy-tail diagnostic."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from l1ad.offline import density_ratio as dr


def test_from_classifier_formula_and_edges():
    s = np.array([0.0, 0.2, 0.5, 0.9, 1.0])
    r = dr.from_classifier(s, 0.25, 0.75)
    assert r[0] == 0.0 and np.isinf(r[-1])
    assert np.allclose(r[1:4], 3.0 * s[1:4] / (1 - s[1:4]))
    assert np.isfinite(dr.from_classifier(s, 1, 3, eps=1e-6)).all()
    assert dr.from_classifier(0.5, 100, 300) == pytest.approx(3.0)  # counts work: only the ratio matters
    for bad in ((0.5, 0.0, 1.0), (0.5, 1.0, -1.0)):
        with pytest.raises(ValueError):
            dr.from_classifier(*bad)
    with pytest.raises(ValueError):
        dr.from_classifier(np.array([1.2]), 1, 1)


def test_ratio_from_an_unbalanced_classifier_matches_the_analytic_ratio():
    rng = np.random.default_rng(0)
    n_d, n_b = 20_000, 80_000
    xd, xb = rng.normal(0.5, 1, n_d), rng.normal(0, 1, n_b)
    clf = LogisticRegression().fit(np.r_[xd, xb][:, None], np.r_[np.ones(n_d), np.zeros(n_b)])
    grid = np.linspace(-2, 2.5, 10)
    s = clf.predict_proba(grid[:, None])[:, 1]
    r = dr.from_classifier(s, n_d / (n_d + n_b), n_b / (n_d + n_b))
    truth = np.exp(0.5 * grid - 0.125)
    assert np.max(np.abs(r / truth - 1)) < 0.06
    # without the prior correction the ratio would be off by pi_b / pi_d = 4
    assert np.median(s / (1 - s) / truth) == pytest.approx(0.25, rel=0.1)


def test_isotonic_calibration_repairs_a_distorted_score():
    rng = np.random.default_rng(1)
    n = 40_000
    x = np.r_[rng.normal(0.5, 1, n), rng.normal(0, 1, n)]
    y = np.r_[np.ones(n), np.zeros(n)]
    p_true = 1 / (1 + np.exp(-(0.5 * x - 0.125)))  # Bayes posterior with equal priors
    raw = p_true**3  # monotone but miscalibrated
    cal = dr.calibrate(raw[::2], y[::2], method="isotonic")
    grid = np.linspace(-1.5, 2.0, 8)
    pt = 1 / (1 + np.exp(-(0.5 * grid - 0.125)))
    r_raw = dr.from_classifier(pt**3, 0.5, 0.5)
    r_cal = dr.from_classifier(cal(pt**3), 0.5, 0.5)
    truth = np.exp(0.5 * grid - 0.125)
    assert np.max(np.abs(r_cal / truth - 1)) < 0.1
    assert np.max(np.abs(r_raw / truth - 1)) > 0.5
    sig = dr.calibrate(raw[::2], y[::2], method="sigmoid")
    assert np.all((sig(raw[:100]) > 0) & (sig(raw[:100]) < 1))
    with pytest.raises(ValueError):
        dr.calibrate(raw[:10], np.zeros(10))


def test_snis_estimate_ess_and_standard_error():
    rng = np.random.default_rng(2)
    x = rng.normal(size=50_000)
    w = np.exp(0.5 * x - 0.125)  # reweights N(0,1) to N(0.5,1)
    res = dr.snis(np.column_stack([x, x**2]), w)
    assert abs(res.estimate[0] - 0.5) < 4 * res.std_error[0]
    assert abs(res.estimate[1] - 1.25) < 4 * res.std_error[1]
    assert res.ess == pytest.approx(w.sum() ** 2 / (w**2).sum())
    # E[w^2] = e^0.25 -> ESS / n ~ e^-0.25
    assert res.ess_fraction == pytest.approx(np.exp(-0.25), rel=0.03)
    assert not res.heavy_tail
    with pytest.raises(ValueError):
        dr.snis(x, -w)
    with pytest.raises(ValueError):
        dr.snis(x, np.zeros_like(w))


@pytest.mark.parametrize("alpha", [1.2, 1.5, 2.5, 4.0])
def test_hill_estimator_recovers_pareto_tail_index(alpha):
    rng = np.random.default_rng(3)
    xi = np.mean([dr.hill_tail_index(rng.pareto(alpha, 20_000) + 1)[0] for _ in range(5)])
    assert xi == pytest.approx(1 / alpha, abs=0.05)


def test_heavy_tailed_weights_warn_and_light_ones_do_not():
    rng = np.random.default_rng(4)
    f = rng.normal(size=20_000)
    with pytest.warns(dr.ImportanceWeightWarning, match="heavy-tailed"):
        r = dr.snis(f, rng.pareto(1.5, 20_000) + 1)  # E[w^2] = inf
    assert r.heavy_tail and r.tail_index > 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = dr.snis(f, rng.pareto(4.0, 20_000) + 1)  # finite variance
        assert not r.heavy_tail
