"""Two-sample tests: statistics against scipy / scikit-learn / direct formulas, the permutation p-value, power
against a shift, and uniformity of the p-values under the null (KS test of the p-values)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from l1ad.offline import twosample as ts


def test_statistics_match_independent_implementations():
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=150), 1)  # ties
    y = np.round(rng.normal(0.3, 1.2, size=210), 1)
    assert ts.statistic("ks", x, y) == pytest.approx(stats.ks_2samp(x, y).statistic)
    assert ts.statistic("wasserstein", x, y) == pytest.approx(stats.wasserstein_distance(x, y))
    # chi2 two-sample formula on fixed bins, written out
    e = np.linspace(-4, 4, 9)
    nx, _ = np.histogram(np.clip(x, -4, 4), e)
    ny, _ = np.histogram(np.clip(y, -4, 4), e)
    k = (nx + ny) > 0
    want = np.sum((np.sqrt(ny.sum() / nx.sum()) * nx - np.sqrt(nx.sum() / ny.sum()) * ny)[k] ** 2 / (nx + ny)[k])
    r = ts.test("chi2", np.clip(x, -4, 4), np.clip(y, -4, 4), edges=e, n_perm=10)
    assert r.statistic == pytest.approx(want)
    # unbiased MMD^2, double loop
    X, Y = rng.normal(size=(40, 2)), rng.normal(0.5, 1, size=(50, 2))
    sig = 1.3
    k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * sig**2))  # noqa: E731
    kxx = sum(k(X[i], X[j]) for i in range(40) for j in range(40) if i != j) / (40 * 39)
    kyy = sum(k(Y[i], Y[j]) for i in range(50) for j in range(50) if i != j) / (50 * 49)
    kxy = sum(k(X[i], Y[j]) for i in range(40) for j in range(50)) / (40 * 50)
    assert ts.statistic("mmd", X, Y, mmd_bandwidth=sig) == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-9)
    # sliced Wasserstein of a 1-D problem embedded in 2-D along one axis = |cos| average... check 1 direction exactly
    d = ts.test("wasserstein", X, Y, n_perm=0, n_projections=1)
    dirs = np.random.default_rng(0 + 7919).normal(size=(1, 2))
    dirs /= np.linalg.norm(dirs)
    assert d.statistic == pytest.approx(stats.wasserstein_distance(X @ dirs[0], Y @ dirs[0]))


def test_classifier_auc_and_permutation_pvalue():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(300, 3)), rng.normal(size=(300, 3))
    Y[:, 0] += 0.8
    r = ts.test("classifier", X, Y, n_perm=500, classifier=LogisticRegression())
    # recompute the held-out AUC with scikit-learn from the same split
    perm = np.random.default_rng(0).permutation(600)
    tr, te = perm[:300], perm[300:]
    P = np.concatenate([X, Y])
    lab = np.r_[np.ones(300), np.zeros(300)]
    auc = roc_auc_score(lab[te], LogisticRegression().fit(P[tr], lab[tr]).predict_proba(P[te])[:, 1])
    assert r.statistic == pytest.approx(auc)
    assert r.pvalue == pytest.approx(1 / 501)
    assert ts.permutation_pvalue(2.0, np.array([1.0, 2.0, 3.0])) == pytest.approx(3 / 4)


@pytest.mark.parametrize("name", ["ks", "chi2", "mmd", "wasserstein"])
def test_power_against_a_shift(name):
    rng = np.random.default_rng(2)
    r = ts.test(name, rng.normal(0.4, 1, 400), rng.normal(0, 1, 400), n_perm=300)
    assert r.pvalue < 0.01 and r.null.size == 300


@pytest.mark.parametrize("name,d,reps", [("ks", 1, 150), ("chi2", 1, 150), ("mmd", 2, 100), ("wasserstein", 1, 150),
                                          ("wasserstein", 3, 60), ("classifier", 2, 80)])
def test_pvalues_are_uniform_under_the_null(name, d, reps):
    rng = np.random.default_rng(10 + d)
    kw = {"classifier": LogisticRegression()} if name == "classifier" else {}
    if name == "wasserstein" and d > 1:
        kw["n_projections"] = 10
    ps = np.array([ts.test(name, rng.normal(size=(120, d)), rng.normal(size=(100, d)), n_perm=99, seed=i, **kw).pvalue
                   for i in range(reps)])
    # discrete p-values (step 1/100) are super-uniform; KS against U(0,1) still must not reject
    assert stats.kstest(ps, "uniform").pvalue > 0.005
    assert np.mean(ps <= 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps)


@pytest.mark.slow
def test_default_boosted_classifier_null_uniformity():
    rng = np.random.default_rng(5)
    ps = [ts.test("classifier", rng.normal(size=(150, 2)), rng.normal(size=(150, 2)), n_perm=99, seed=i).pvalue for i in range(60)]
    assert stats.kstest(ps, "uniform").pvalue > 0.005


def test_bad_input():
    with pytest.raises(ValueError, match="one-dimensional"):
        ts.test("ks", np.ones((10, 2)), np.ones((10, 2)))
    with pytest.raises(ValueError, match="unknown"):
        ts.test("anderson", np.ones(5), np.ones(5))
    with pytest.raises(ValueError, match="max_points"):
        ts.test("mmd", np.zeros((50, 1)), np.zeros((60, 1)), max_points=100)
    with pytest.raises(ValueError):
        ts.test("ks", np.array([1.0, np.nan]), np.ones(3))
