"""Two-sample goodness-of-fit tests with permutation p-values (seed talk "Theoretical topics on Anomaly
Detection": KS, binned chi2, MMD, Wasserstein, classifier two-sample tests).

One interface: ``test(name, x, y, n_perm=..., seed=...) -> TwoSampleResult(statistic, pvalue, ...)``, with
x the data (e.g. measured events) and y the reference (e.g. Standard-Model simulation). The p-value is the
permutation one, (1 + #{t_perm >= t_obs}) / (1 + n_perm): the pooled sample is relabelled at random with the
two sample sizes kept, which is exact (super-uniform) under H0: x and y from the same distribution.

Statistics (larger = more discrepant):

* ``ks``: sup_z |F_x(z) - F_y(z)| (1-D).
* ``chi2``: binned two-sample chi2 = sum_i (sqrt(N_y/N_x) n_x,i - sqrt(N_x/N_y) n_y,i)^2 / (n_x,i + n_y,i), bins of
  equal pooled probability (or given edges) fixed before permuting (1-D). The asymptotic chi2(B-1) p-value
  is reported as an extra.
* ``mmd``: unbiased MMD^2 with a Gaussian kernel exp(-|a-b|^2 / (2 sigma^2)), sigma = the median pairwise
  distance of the pooled sample (median heuristic, on at most 1000 points). Any dimension; the pooled kernel
  matrix is held in memory (at most `max_points` = 6000 points in all).
* ``wasserstein``: W1; exact in 1-D (integral of |F_x - F_y|), sliced for d > 1 (mean of the 1-D W1 over
  `n_projections` random unit directions, fixed before permuting).
* ``classifier``: classifier two-sample test. The pooled sample is split in half; a classifier (default:
  scikit-learn HistGradientBoostingClassifier) is trained on one half and scores the other; the statistic is
  the held-out ROC AUC. Under H0 the held-out labels are exchangeable given the (independently trained)
  classifier, so permuting them yields an exact null without retraining.

Permutations are vectorised (blocks of label matrices), so 1000 permutations of a few thousand events take
well under a second for ks, chi2 and wasserstein.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from l1ad.offline._stats_util import one_thread

__all__ = ["TESTS", "TwoSampleConfig", "TwoSampleResult", "permutation_pvalue", "statistic", "test"]

TestName = Literal["ks", "chi2", "mmd", "wasserstein", "classifier"]
TESTS: tuple[str, ...] = ("ks", "chi2", "mmd", "wasserstein", "classifier")


class TwoSampleConfig(BaseModel):
    """Settings of `test` (one config for all tests; each reads the fields it needs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tests: tuple[TestName, ...] = ("ks", "chi2", "mmd", "wasserstein", "classifier")
    n_perm: int = Field(1000, ge=0, description="permutations (0: statistic only, p-value NaN)")
    seed: int = 0
    bins: int = Field(20, ge=2, description="chi2: number of equal-probability bins of the pooled sample")
    n_projections: int = Field(50, ge=1, description="sliced Wasserstein: random directions")
    mmd_bandwidth: float | None = Field(None, gt=0, description="MMD kernel sigma; None = median heuristic")
    max_points: int = Field(6000, ge=2, description="MMD: largest pooled sample (kernel matrix in memory)")
    train_fraction: float = Field(0.5, gt=0, lt=1, description="classifier test: share of events for training")


@dataclass
class TwoSampleResult:
    """Observed statistic, permutation p-value and the permutation null."""

    name: str
    statistic: float
    pvalue: float
    n_perm: int
    null: np.ndarray = field(repr=False)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "statistic": self.statistic, "pvalue": self.pvalue, "n_perm": self.n_perm,
                "null_mean": float(np.mean(self.null)) if self.null.size else None,
                "null_std": float(np.std(self.null)) if self.null.size else None, **self.extra}


def permutation_pvalue(t_obs: float, t_perm: np.ndarray) -> float:
    """(1 + #{t_perm >= t_obs}) / (1 + n_perm), with a relative tolerance of 1e-12 for floating-point ties."""
    t = np.asarray(t_perm, dtype=float)
    tol = 1e-12 * max(1.0, abs(t_obs))
    return float((1 + np.count_nonzero(t >= t_obs - tol)) / (1 + t.size))


# ---------------------------------------------------------------------------------------------- helpers
def _prep(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    a = a[:, None] if a.ndim == 1 else a
    b = b[:, None] if b.ndim == 1 else b
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y must be (n,) or (n, d) with the same d; got {np.shape(x)} and {np.shape(y)}")
    if a.shape[0] < 1 or b.shape[0] < 1:
        raise ValueError("both samples need at least one event")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("samples contain NaN or inf")
    return a, b


def _one_d(a: np.ndarray, name: str) -> np.ndarray:
    if a.shape[1] != 1:
        raise ValueError(f"the {name} test is one-dimensional; got {a.shape[1]} features (project first, or use mmd, "
                         "wasserstein (sliced) or classifier)")
    return a[:, 0]


def _label_blocks(n_tot: int, m: int, n_perm: int, rng: np.random.Generator, block: int):
    """Yield boolean (b, n_tot) matrices: True marks the m events relabelled as 'x'."""
    base = np.zeros(n_tot, dtype=bool)
    base[:m] = True
    done = 0
    while done < n_perm:
        b = min(block, n_perm - done)
        yield rng.permuted(np.broadcast_to(base, (b, n_tot)), axis=1)
        done += b


def _block(n_tot: int, per_event: int = 1) -> int:
    return int(max(1, min(1000, 20_000_000 // max(1, n_tot * per_event))))


# ---------------------------------------------------------------------------------------------- statistics
def _ecdf_diff(sorted_labels: np.ndarray, m: int, n: int) -> np.ndarray:
    """F_x - F_y at every pooled sorted position, (b, N)."""
    cx = np.cumsum(sorted_labels, axis=-1, dtype=np.float64)
    pos = np.arange(1, sorted_labels.shape[-1] + 1, dtype=np.float64)
    return cx / m - (pos - cx) / n


def _w1_stat(gaps: np.ndarray, labels_sorted: np.ndarray, m: int, n: int) -> np.ndarray:
    d = _ecdf_diff(labels_sorted, m, n)[..., :-1]
    return np.abs(d) @ gaps


def _run_1d_sorted(z: np.ndarray, m: int, n_perm: int, rng: np.random.Generator, fn: Callable) -> tuple[float, np.ndarray]:
    order = np.argsort(z, kind="stable")
    obs_labels = np.zeros(z.size, dtype=bool)
    obs_labels[:m] = True
    t_obs = float(fn(obs_labels[order][None, :])[0])
    null = np.concatenate([fn(L[:, order]) for L in _label_blocks(z.size, m, n_perm, rng, _block(z.size, 3))]) if n_perm else np.empty(0)
    return t_obs, null


def _ks(x, y, cfg, rng):
    a, b = _one_d(x, "ks"), _one_d(y, "ks")
    z = np.concatenate([a, b])
    zs = np.sort(z, kind="stable")
    last = np.flatnonzero(np.r_[zs[1:] != zs[:-1], True])  # the last index of each run of ties
    m, n = a.size, b.size
    t, null = _run_1d_sorted(z, m, cfg.n_perm, rng, lambda L: np.abs(_ecdf_diff(L, m, n)[..., last]).max(axis=-1))
    return t, null, {"scipy_asymptotic_pvalue": float(stats.ks_2samp(a, b).pvalue)}


def _wasserstein(x, y, cfg, rng):
    m, n = x.shape[0], y.shape[0]
    if x.shape[1] == 1:
        z = np.concatenate([x[:, 0], y[:, 0]])
        gaps = np.diff(np.sort(z, kind="stable"))
        t, null = _run_1d_sorted(z, m, cfg.n_perm, rng, lambda L: _w1_stat(gaps, L, m, n))
        return t, null, {"sliced": False}
    d = x.shape[1]
    dirs = np.random.default_rng(cfg.seed + 7919).normal(size=(cfg.n_projections, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    pooled = np.concatenate([x, y])
    proj = pooled @ dirs.T  # (N, P)
    orders = np.argsort(proj, axis=0, kind="stable")  # (N, P)
    gaps = np.diff(np.take_along_axis(proj, orders, axis=0), axis=0)  # (N-1, P)
    N = pooled.shape[0]

    def stat(L):  # L (b, N)
        tot = np.zeros(L.shape[0])
        for p in range(dirs.shape[0]):
            tot += _w1_stat(gaps[:, p], L[:, orders[:, p]], m, n)
        return tot / dirs.shape[0]

    obs = np.zeros(N, dtype=bool)
    obs[:m] = True
    t = float(stat(obs[None, :])[0])
    null = np.concatenate([stat(L) for L in _label_blocks(N, m, cfg.n_perm, rng, _block(N, 3))]) if cfg.n_perm else np.empty(0)
    return t, null, {"sliced": True, "n_projections": int(dirs.shape[0])}


def _chi2(x, y, cfg, rng, edges=None):
    a, b = _one_d(x, "chi2"), _one_d(y, "chi2")
    z = np.concatenate([a, b])
    m, n = a.size, b.size
    if edges is None:
        e = np.unique(np.quantile(z, np.linspace(0, 1, cfg.bins + 1)))
        if e.size < 3:
            raise ValueError("the pooled sample has too few distinct values for a binned chi2")
    else:
        e = np.asarray(edges, dtype=float)
    idx = np.clip(np.searchsorted(e, z, side="right") - 1, 0, e.size - 2)
    nb = e.size - 1
    onehot = np.zeros((z.size, nb))
    onehot[np.arange(z.size), idx] = 1.0
    tot = onehot.sum(axis=0)
    used = tot > 0
    k1, k2 = math.sqrt(n / m), math.sqrt(m / n)

    def stat(L):
        nx = L.astype(np.float64) @ onehot
        ny = tot[None, :] - nx
        return (((k1 * nx - k2 * ny) ** 2)[:, used] / tot[used]).sum(axis=1)

    obs = np.zeros(z.size, dtype=bool)
    obs[:m] = True
    t = float(stat(obs[None, :])[0])
    null = np.concatenate([stat(L) for L in _label_blocks(z.size, m, cfg.n_perm, rng, _block(z.size, 2))]) if cfg.n_perm else np.empty(0)
    dof = int(used.sum()) - 1
    return t, null, {"bins": int(nb), "asymptotic_pvalue": float(stats.chi2.sf(t, dof)), "dof": dof}


def median_heuristic(z: np.ndarray, max_points: int = 1000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance of (a subsample of) the pooled sample."""
    from scipy.spatial.distance import pdist

    if z.shape[0] > max_points:
        z = z[np.random.default_rng(seed).choice(z.shape[0], max_points, replace=False)]
    d = pdist(z)
    med = float(np.median(d[d > 0])) if np.any(d > 0) else 1.0
    return med


def _mmd(x, y, cfg, rng):
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError("the unbiased MMD needs at least 2 events per sample")
    N = m + n
    if N > cfg.max_points:
        raise ValueError(f"MMD holds the {N}x{N} kernel matrix in memory; limit is max_points={cfg.max_points} "
                         "(subsample the inputs or raise max_points)")
    pooled = np.concatenate([x, y])
    sigma = cfg.mmd_bandwidth or median_heuristic(pooled, seed=cfg.seed)
    sq = np.einsum("ij,ij->i", pooled, pooled)
    K = np.exp(-np.maximum(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0.0) / (2 * sigma * sigma))
    np.fill_diagonal(K, 1.0)
    rowsum = K.sum(axis=1)
    total = rowsum.sum()

    def stat(L):  # (b, N) bool -> unbiased MMD^2
        A = L.T.astype(np.float64)  # (N, b)
        aKa = np.einsum("ib,ib->b", A, K @ A)
        aK1 = rowsum @ A
        s_xx = aKa - m
        s_yy = total - 2 * aK1 + aKa - n
        s_xy = aK1 - aKa
        return s_xx / (m * (m - 1)) + s_yy / (n * (n - 1)) - 2 * s_xy / (m * n)

    obs = np.zeros(N, dtype=bool)
    obs[:m] = True
    t = float(stat(obs[None, :])[0])
    null = np.concatenate([stat(L) for L in _label_blocks(N, m, cfg.n_perm, rng, _block(N, N // 50 + 1))]) if cfg.n_perm else np.empty(0)
    return t, null, {"bandwidth": float(sigma)}


def _auc_from_ranks(ranks: np.ndarray, L: np.ndarray, n1: int, n0: int) -> np.ndarray:
    r1 = (L * ranks[None, :]).sum(axis=1)
    return (r1 - n1 * (n1 + 1) / 2.0) / (n1 * n0)


def _classifier(x, y, cfg, rng, classifier=None):
    m, n = x.shape[0], y.shape[0]
    pooled = np.concatenate([x, y])
    lab = np.r_[np.ones(m, dtype=int), np.zeros(n, dtype=int)]
    perm = rng.permutation(m + n)
    n_tr = int(round(cfg.train_fraction * (m + n)))
    tr, te = perm[:n_tr], perm[n_tr:]
    if len(np.unique(lab[tr])) < 2 or len(np.unique(lab[te])) < 2:
        raise ValueError("classifier test: both halves need events of both samples (samples too small)")
    if classifier is None:
        from sklearn.ensemble import HistGradientBoostingClassifier

        classifier = HistGradientBoostingClassifier(max_iter=100, random_state=cfg.seed)
    # one thread (the import above happens first, so that threadpoolctl sees the OpenMP runtime)
    with one_thread():
        classifier.fit(pooled[tr], lab[tr])
        score = classifier.predict_proba(pooled[te])[:, 1]
    ranks = stats.rankdata(score)  # average ranks for ties
    yl = lab[te].astype(bool)
    n1, n0 = int(yl.sum()), int((~yl).sum())
    t = float(_auc_from_ranks(ranks, yl[None, :], n1, n0)[0])
    null = np.concatenate([_auc_from_ranks(ranks, L, n1, n0) for L in _label_blocks(te.size, n1, cfg.n_perm, rng, _block(te.size, 2))]) if cfg.n_perm else np.empty(0)
    return t, null, {"n_train": int(tr.size), "n_test": int(te.size), "classifier": type(classifier).__name__}


_IMPL = {"ks": _ks, "chi2": _chi2, "mmd": _mmd, "wasserstein": _wasserstein, "classifier": _classifier}


def statistic(name: str, x: np.ndarray, y: np.ndarray, **options) -> float:
    """The observed statistic only (no permutations)."""
    return test(name, x, y, n_perm=0, **options).statistic


def test(name: str, x: np.ndarray, y: np.ndarray, *, n_perm: int | None = None, seed: int | None = None,
         config: TwoSampleConfig | None = None, edges: np.ndarray | None = None, classifier=None,
         **overrides) -> TwoSampleResult:
    """Run the two-sample test `name` ('ks', 'chi2', 'mmd', 'wasserstein', 'classifier') of x against y.

    `n_perm`, `seed` and other `TwoSampleConfig` fields may be given directly. `edges` fixes the chi2 bins;
    `classifier` is any scikit-learn classifier with predict_proba (classifier test).
    """
    if name not in _IMPL:
        raise ValueError(f"unknown two-sample test {name!r}; known: {TESTS}")
    base = config or TwoSampleConfig()
    upd = dict(overrides)
    if n_perm is not None:
        upd["n_perm"] = n_perm
    if seed is not None:
        upd["seed"] = seed
    cfg = TwoSampleConfig.model_validate({**base.model_dump(), **upd}) if upd else base
    a, b = _prep(x, y)
    rng = np.random.default_rng(cfg.seed)
    kw = {}
    if name == "chi2" and edges is not None:
        kw["edges"] = edges
    if name == "classifier" and classifier is not None:
        kw["classifier"] = classifier
    t, null, extra = _IMPL[name](a, b, cfg, rng, **kw)
    p = permutation_pvalue(t, null) if null.size else float("nan")
    return TwoSampleResult(name=name, statistic=float(t), pvalue=p, n_perm=int(null.size), null=null, extra=extra)
