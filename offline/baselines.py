"""Classical outlier-detection baselines from the seed notes (Unit III: clustering and density estimation as
outlier detection), on event-level features, via scikit-learn:

* `KMeansOutlier`: distance to the nearest of k cluster centres (k-means objective
  min sum_a sum_{x in C_a} |x - mu_a|^2); larger = more anomalous.
* `DBSCANOutlier`: DBSCAN's noise label (-1) marks outliers of the training sample; a new event is noise if
  no core sample lies within eps of it. Score: the distance to the nearest core sample (continuous, so that it
  can be thresholded or turned into conformal p-values), with `is_outlier` the eps cut.
* `GMMOutlier`: -ln p(x) of a Gaussian mixture (a density-estimation score; like every -ln p score it depends
  on the coordinates chosen, as the notes stress).

All standardise the features on the training sample (zero mean, unit variance). `event_features` builds a
small per-event feature vector from a `trigger.events.EventBatch`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from l1ad.offline._stats_util import one_thread
from l1ad.trigger.events import EventBatch, slot_rows

__all__ = ["DBSCANOutlier", "GMMOutlier", "KMeansOutlier", "SUMMARY_FEATURES", "event_features", "make_baseline"]

SUMMARY_FEATURES = ("log1p_met", "log1p_ht", "n_jet", "n_egamma", "n_muon", "log1p_pt_j1", "log1p_pt_lep1")


def event_features(batch: EventBatch, kind: str = "summary") -> np.ndarray:
    """Per-event features: 'summary' -> (N, 7) [ln(1+MET), ln(1+HT), n_jet, n_egamma, n_muon, ln(1+pT_j1),
    ln(1+pT of the leading lepton)]; 'l1' -> the (N, 57) L1 input with pT as ln(1 + pT)."""
    o = batch.objects.astype(np.float64)
    if kind == "l1":
        x = o.copy()
        x[:, :, 0] = np.log1p(x[:, :, 0])
        return x.reshape(len(batch), -1)
    if kind != "summary":
        raise ValueError(f"kind must be 'summary' or 'l1', got {kind!r}")
    jets = o[:, slot_rows("Jet"), 0]
    eg = o[:, slot_rows("EGamma"), 0]
    mu = o[:, slot_rows("Muon"), 0]
    lep1 = np.maximum(eg.max(axis=1, initial=0.0), mu.max(axis=1, initial=0.0))
    return np.column_stack([
        np.log1p(o[:, 0, 0]), np.log1p(jets.sum(axis=1)), (jets > 0).sum(axis=1), (eg > 0).sum(axis=1),
        (mu > 0).sum(axis=1), np.log1p(jets.max(axis=1, initial=0.0)), np.log1p(lep1),
    ])


@dataclass
class _Standardizer:
    mean: np.ndarray = field(default=None)  # type: ignore[assignment]
    std: np.ndarray = field(default=None)  # type: ignore[assignment]

    def fit(self, x: np.ndarray) -> np.ndarray:
        x = _as2d(x)
        self.mean = x.mean(axis=0)
        s = x.std(axis=0)
        self.std = np.where(s > 0, s, 1.0)
        return (x - self.mean) / self.std

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.mean is None:
            raise RuntimeError("not fitted")
        x = _as2d(x)
        if x.shape[1] != self.mean.size:
            raise ValueError(f"expected {self.mean.size} features, got {x.shape[1]}")
        return (x - self.mean) / self.std


def _as2d(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    a = a[:, None] if a.ndim == 1 else a
    if a.ndim != 2:
        raise ValueError(f"features must be (n,) or (n, d), got {np.shape(x)}")
    if not np.all(np.isfinite(a)):
        raise ValueError("features contain NaN or inf")
    return a


class KMeansOutlier:
    """Distance to the nearest k-means centre (standardised features)."""

    def __init__(self, n_clusters: int = 8, seed: int = 0):
        self.n_clusters = n_clusters
        self.seed = seed
        self._std = _Standardizer()
        self.model = None

    def fit(self, x: np.ndarray) -> "KMeansOutlier":
        from sklearn.cluster import KMeans

        z = self._std.fit(x)
        with one_thread():
            self.model = KMeans(n_clusters=self.n_clusters, n_init=4, random_state=self.seed).fit(z)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("KMeansOutlier not fitted")
        with one_thread():
            return self.model.transform(self._std(x)).min(axis=1)


class DBSCANOutlier:
    """DBSCAN noise points as outliers; new events scored by their distance to the nearest core sample."""

    def __init__(self, eps: float = 0.5, min_samples: int = 10):
        self.eps = eps
        self.min_samples = min_samples
        self._std = _Standardizer()
        self.labels_: np.ndarray | None = None
        self._nn = None

    def fit(self, x: np.ndarray) -> "DBSCANOutlier":
        from sklearn.cluster import DBSCAN
        from sklearn.neighbors import NearestNeighbors

        z = self._std.fit(x)
        with one_thread():
            db = DBSCAN(eps=self.eps, min_samples=self.min_samples).fit(z)
        self.labels_ = db.labels_
        core = z[db.core_sample_indices_]
        if core.shape[0] == 0:
            raise ValueError(f"DBSCAN found no core samples (eps={self.eps}, min_samples={self.min_samples}); increase eps")
        self._nn = NearestNeighbors(n_neighbors=1).fit(core)
        return self

    @property
    def noise_fraction(self) -> float:
        return float(np.mean(self.labels_ == -1)) if self.labels_ is not None else float("nan")

    def score(self, x: np.ndarray) -> np.ndarray:
        if self._nn is None:
            raise RuntimeError("DBSCANOutlier not fitted")
        d, _ = self._nn.kneighbors(self._std(x))
        return d[:, 0]

    def is_outlier(self, x: np.ndarray) -> np.ndarray:
        """True for events that DBSCAN would label noise (no core sample within eps)."""
        return self.score(x) > self.eps


class GMMOutlier:
    """-ln p(x) under a Gaussian mixture fitted to background (standardised features, Jacobian included)."""

    def __init__(self, n_components: int = 8, covariance_type: str = "full", seed: int = 0):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.seed = seed
        self._std = _Standardizer()
        self.model = None

    def fit(self, x: np.ndarray) -> "GMMOutlier":
        from sklearn.mixture import GaussianMixture

        z = self._std.fit(x)
        with one_thread():
            self.model = GaussianMixture(self.n_components, covariance_type=self.covariance_type, reg_covar=1e-4,
                                         random_state=self.seed).fit(z)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("GMMOutlier not fitted")
        with one_thread():
            return -(self.model.score_samples(self._std(x)) - np.log(self._std.std).sum())


def make_baseline(name: str, **kwargs):
    """'kmeans' | 'dbscan' | 'gmm' -> an unfitted baseline."""
    table = {"kmeans": KMeansOutlier, "dbscan": DBSCANOutlier, "gmm": GMMOutlier}
    if name not in table:
        raise ValueError(f"unknown baseline {name!r}; known: {sorted(table)}")
    return table[name](**kwargs)
