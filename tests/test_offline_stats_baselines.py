"""Outlier baselines (k-means distance, DBSCAN noise, Gaussian-mixture density) against direct computations,
and their ability to flag far outliers; event features from an EventBatch."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from l1ad.offline import baselines as bl
from l1ad.trigger.toy import toy_events


def _blobs(rng, n=3000):
    centres = np.array([[0, 0, 0], [5, 5, 0], [0, 5, 5]], dtype=float)
    return centres[rng.integers(0, 3, n)] + rng.normal(scale=0.7, size=(n, 3))


@pytest.mark.parametrize("name,kw", [("kmeans", {"n_clusters": 3}), ("dbscan", {"eps": 0.3, "min_samples": 10}),
                                     ("gmm", {"n_components": 3})])
def test_baselines_flag_far_outliers(name, kw):
    rng = np.random.default_rng(0)
    train = _blobs(rng)
    inl = _blobs(rng, 1000)
    out = rng.uniform(-8, 13, size=(1000, 3))
    out = out[np.min(np.linalg.norm(out[:, None, :] - np.array([[0, 0, 0], [5, 5, 0], [0, 5, 5]])[None], axis=2), axis=1) > 3]
    m = bl.make_baseline(name, **kw).fit(train)
    s = np.r_[m.score(inl), m.score(out)]
    auc = roc_auc_score(np.r_[np.zeros(len(inl)), np.ones(len(out))], s)
    assert auc > 0.97, auc


def test_kmeans_score_is_the_distance_to_the_nearest_centre():
    rng = np.random.default_rng(1)
    x = _blobs(rng, 500)
    m = bl.KMeansOutlier(3).fit(x)
    z = (x - x.mean(0)) / x.std(0)
    centres = m.model.cluster_centers_
    want = np.min(np.linalg.norm(z[:, None, :] - centres[None], axis=2), axis=1)
    assert np.allclose(m.score(x), want)


def test_dbscan_noise_labels_agree_with_the_eps_rule():
    rng = np.random.default_rng(2)
    x = np.r_[_blobs(rng, 800), rng.uniform(-10, 15, size=(40, 3))]
    m = bl.DBSCANOutlier(eps=0.3, min_samples=8).fit(x)
    # a training point is noise iff no core sample lies within eps (border points have one)
    assert np.array_equal(m.labels_ == -1, m.is_outlier(x))
    assert 0 < m.noise_fraction < 0.2


def test_gmm_score_is_minus_log_density_in_original_coordinates():
    rng = np.random.default_rng(3)
    x = _blobs(rng, 1500) * np.array([1.0, 10.0, 0.1])
    m = bl.GMMOutlier(n_components=3).fit(x)
    g = m.model
    mu_, sd_ = x.mean(0), x.std(0)
    z = (x[:20] - mu_) / sd_
    dens = sum(w * stats.multivariate_normal(mu, cov).pdf(z) for w, mu, cov in zip(g.weights_, g.means_, g.covariances_))
    assert np.allclose(m.score(x[:20]), -(np.log(dens) - np.log(sd_).sum()), rtol=1e-8)


def test_event_features_and_errors():
    b = toy_events(300, seed=1)
    f = bl.event_features(b)
    assert f.shape == (300, len(bl.SUMMARY_FEATURES)) and np.isfinite(f).all()
    assert np.array_equal(f[:, 2], b.multiplicity("Jet"))
    assert bl.event_features(b, "l1").shape == (300, 57)
    with pytest.raises(ValueError):
        bl.event_features(b, "nope")
    with pytest.raises(ValueError):
        bl.make_baseline("isolation")
    with pytest.raises(RuntimeError):
        bl.GMMOutlier().score(f)
