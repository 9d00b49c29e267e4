"""Gaussian kernel density estimation with leave-one-out bandwidth selection, for background models learned
from data (review chapter, "Learning the Background from Data")::

    p_hat(x; h) = 1/(n h^d) sum_j phi_d((x - x_j) / h)
    L(h)        = -(1/n) sum_i ln p_hat_{-i}(x_i; h)          (leave-one-out cross-validation loss)
    s(x)        = -ln p_hat(x; h*)                              (anomaly score)

The kernel is isotropic in the given coordinates, or in standardised ones (``standardize=True``: each feature
divided by its standard deviation; the density returned is still the density in the original coordinates,
i.e. it includes the Jacobian ``-sum_d ln sigma_d``).

Speed (1e5 training points): three evaluation paths, chosen per bandwidth by ``method='auto'``:

* ``grid`` (d <= 3; in 2-D/3-D only from 20k training points): linear binning onto a regular grid (2^16
  nodes in 1-D, 1024^2, 160^3), separable FFT convolution with the sampled Gaussian, multilinear
  interpolation; O(n + G log G). Used when the grid spacing delta <= `grid_tolerance` * h (relative density
  error ~ (delta/h)^2 / 8 in the bulk; default tolerance 0.1 in 1-D/2-D, 0.25 in 3-D, where a 1e5-point,
  h = 0.3 sigma case measured a median |d ln p| of 1e-3 and a maximum of 0.04 against the brute force, in
  4.5 s for 1e4 queries instead of 66 s). The leave-one-out density subtracts each
  point's own contribution *exactly as binned and interpolated*, so LOO stays consistent.
* ``pairs``: exact sums over the neighbours within 8.5 h (sorted array in 1-D, a k-d tree in d-D). A query
  whose sum is not at least 1e8 times the largest possible truncated remainder (n e^-36) is a tail query.
  Fast when h is small compared with the data spread.
* tails: queries where the grid density is below 1e-4 of its maximum (where linear interpolation of a
  steeply falling density loses accuracy), outside the grid, or failing the pair-sum check, are evaluated
  exactly from the points within sqrt(d_min^2 + 80 h^2) (d_min = nearest-neighbour distance), which holds
  every term larger than e^-40 times the largest.

``method='exact'`` is the O(n m) brute force (reference for tests and small samples).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from scipy import special

__all__ = ["KDE", "LOOCVResult", "anomaly_score", "kde_log_density", "loo_log_density", "loocv_bandwidth", "loocv_loss"]

Method = Literal["auto", "grid", "pairs", "exact"]
_CUT = 8.5  # kernel truncation in units of h for the pair sums
_TAIL_EXTRA = 80.0  # tail queries: radius^2 = d_min^2 + 80 h^2
_GRID_SIZE = {1: 1 << 16, 2: 1024, 3: 160}
_GRID_MIN_N = {1: 0, 2: 20_000, 3: 20_000}  # below this many training points the pair sums are cheaper
_FLOOR = 1e-4  # grid densities below this fraction of the grid maximum are recomputed exactly
_GRID_TOL = {1: 0.1, 2: 0.1, 3: 0.25}  # default max grid spacing / h per dimension
_PAIR_RTOL = 1e-8  # pair sums must exceed n e^{-cut^2/2} / rtol, else the query is recomputed as a tail


# ---------------------------------------------------------------------------------------------- helpers
def _as2d(x: np.ndarray, name: str = "x") -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be (n,) or (n, d), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _log_norm(d: int, h: float) -> float:
    return -0.5 * d * math.log(2 * math.pi) - d * math.log(h)


def _exact_sums(train: np.ndarray, x: np.ndarray, h: float, self_index: np.ndarray | None = None) -> np.ndarray:
    """ln sum_j exp(-|x - x_j|^2 / 2h^2) by brute force, chunked; `self_index[i]` (>= 0) is excluded for query i."""
    n = train.shape[0]
    out = np.empty(x.shape[0])
    chunk = max(1, 4_000_000 // max(1, n))
    t2 = np.einsum("ij,ij->i", train, train)
    for s in range(0, x.shape[0], chunk):
        q = x[s : s + chunk]
        d2 = np.einsum("ij,ij->i", q, q)[:, None] + t2[None, :] - 2.0 * q @ train.T
        d2 = np.maximum(d2, 0.0)
        a = -d2 / (2 * h * h)
        if self_index is not None:
            si = self_index[s : s + chunk]
            rows = np.flatnonzero(si >= 0)
            a[rows, si[rows]] = -np.inf
        out[s : s + chunk] = special.logsumexp(a, axis=1)
    return out


class _Neighbours:
    """Exact neighbour sums: a sorted array in 1-D, a cKDTree in d-D."""

    def __init__(self, train: np.ndarray):
        self.train = train
        self.n, self.d = train.shape
        if self.d == 1:
            self.order = np.argsort(train[:, 0], kind="stable")
            self.sorted = train[self.order, 0]
        else:
            from scipy.spatial import cKDTree

            self.tree = cKDTree(train)

    def nearest(self, x: np.ndarray, self_index: np.ndarray | None) -> np.ndarray:
        """Distance to the nearest training point (other than the query's own index)."""
        if self.d == 1:
            v = x[:, 0]
            pos = np.searchsorted(self.sorted, v)
            best = np.full(v.size, np.inf)
            for off in (-2, -1, 0, 1):
                idx = pos + off
                ok = (idx >= 0) & (idx < self.n)
                cand = np.where(ok, np.abs(self.sorted[np.clip(idx, 0, self.n - 1)] - v), np.inf)
                if self_index is not None:
                    cand = np.where(ok & (self.order[np.clip(idx, 0, self.n - 1)] == self_index), np.inf, cand)
                best = np.minimum(best, cand)
            if self_index is not None and np.isinf(best).any():  # duplicates of the query: search wider
                bad = np.flatnonzero(np.isinf(best))
                for i in bad:
                    others = np.delete(np.arange(self.n), self_index[i])
                    best[i] = np.min(np.abs(self.train[others, 0] - v[i])) if others.size else np.inf
            return best
        k = 2 if self_index is not None else 1
        dist, idx = self.tree.query(x, k=k)
        if self_index is None:
            return dist
        return np.where(idx[:, 0] == self_index, dist[:, 1], dist[:, 0])

    def log_sums(self, x: np.ndarray, h: float, radius: np.ndarray | float, self_index: np.ndarray | None = None) -> np.ndarray:
        """ln sum over training points within `radius` (per query or scalar) of exp(-d^2/2h^2); -inf if none."""
        m = x.shape[0]
        r = np.broadcast_to(np.asarray(radius, dtype=float), (m,))
        out = np.full(m, -np.inf)
        if self.d == 1:
            v = x[:, 0]
            lo = np.searchsorted(self.sorted, v - r, side="left")
            hi = np.searchsorted(self.sorted, v + r, side="right")
            counts = hi - lo
            budget = 20_000_000
            start = 0
            while start < m:
                # chunk so that the flattened neighbour list stays within budget
                cum = np.cumsum(counts[start:])
                stop = start + max(1, int(np.searchsorted(cum, budget, side="right")))
                qi = np.arange(start, stop)
                c = counts[qi]
                tot = int(c.sum())
                if tot:
                    rep = np.repeat(qi, c)
                    offs = np.arange(tot) - np.repeat(np.cumsum(c) - c, c)
                    j = lo[rep] + offs
                    a = -((self.sorted[j] - v[rep]) ** 2) / (2 * h * h)
                    if self_index is not None:
                        a = np.where(self.order[j] == self_index[rep], -np.inf, a)
                    out[qi] = _segment_logsumexp(a, rep - start, stop - start)
                start = stop
            return out
        from scipy.spatial import cKDTree

        # estimate the neighbour count per query to keep each chunk's pair list near `budget`
        budget = 5_000_000
        sample = np.linspace(0, m - 1, min(m, 200)).astype(int)
        est = self.tree.query_ball_point(x[sample], r[sample], return_length=True)
        chunk = int(max(1, min(m, budget // max(1.0, float(np.mean(est)) * 1.5))))
        for s in range(0, m, chunk):
            q = x[s : s + chunk]
            rq = r[s : s + chunk]
            pairs = cKDTree(q).sparse_distance_matrix(self.tree, float(rq.max()), output_type="ndarray")
            if pairs.size == 0:
                continue
            i, j, v = pairs["i"], pairs["j"], pairs["v"]
            keep = v <= rq[i]
            if self_index is not None:
                keep &= j != self_index[s + i]
            i, v = i[keep], v[keep]
            if i.size:
                out[s : s + q.shape[0]] = _segment_logsumexp(-(v * v) / (2 * h * h), i, q.shape[0])
        return out


def _segment_logsumexp(a: np.ndarray, seg: np.ndarray, n_seg: int) -> np.ndarray:
    """logsumexp of `a` within segments `seg` (sorted, 0..n_seg-1); -inf for empty segments."""
    mx = np.full(n_seg, -np.inf)
    np.maximum.at(mx, seg, a)
    fin = np.where(np.isfinite(mx), mx, 0.0)
    s = np.bincount(seg, weights=np.exp(a - fin[seg]), minlength=n_seg)
    with np.errstate(divide="ignore"):
        return np.where(s > 0, np.log(s) + fin, -np.inf)


class _Grid:
    """Linear binning + separable FFT convolution on a regular grid spanning the training data."""

    def __init__(self, train: np.ndarray, h: float, size: int | None = None):
        from scipy.signal import fftconvolve

        n, d = train.shape
        g = size or _GRID_SIZE[d]
        self.lo = train.min(axis=0)
        self.hi = train.max(axis=0)
        span = self.hi - self.lo
        span = np.where(span > 0, span, 1.0)
        self.hi = self.lo + span
        self.g = g
        self.delta = span / (g - 1)
        idx, frac = self._locate(train)
        dens = np.zeros((g,) * d)
        for corner in range(1 << d):
            w = np.ones(n)
            ii = []
            for k in range(d):
                bit = (corner >> k) & 1
                w = w * (frac[:, k] if bit else 1.0 - frac[:, k])
                ii.append(idx[:, k] + bit)
            np.add.at(dens, tuple(ii), w)
        self.kernels = []
        for k in range(d):
            L = int(min(g - 1, math.ceil(_CUT * h / self.delta[k])))
            off = np.arange(-L, L + 1) * self.delta[k]
            ker = np.exp(-0.5 * (off / h) ** 2) / (math.sqrt(2 * math.pi) * h)
            self.kernels.append(ker)
            shape = [1] * d
            shape[k] = ker.size
            dens = fftconvolve(dens, ker.reshape(shape), mode="same", axes=k)
        self.dens = dens / n
        self.max = float(self.dens.max())
        self.n, self.d, self.h = n, d, h

    def _locate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = (x - self.lo) / self.delta
        i = np.clip(np.floor(u).astype(np.int64), 0, self.g - 2)
        f = np.clip(u - i, 0.0, 1.0)
        return i, f

    def inside(self, x: np.ndarray) -> np.ndarray:
        return np.all((x >= self.lo) & (x <= self.hi), axis=1)

    def density(self, x: np.ndarray) -> np.ndarray:
        idx, frac = self._locate(x)
        out = np.zeros(x.shape[0])
        for corner in range(1 << self.d):
            w = np.ones(x.shape[0])
            ii = []
            for k in range(self.d):
                bit = (corner >> k) & 1
                w = w * (frac[:, k] if bit else 1.0 - frac[:, k])
                ii.append(idx[:, k] + bit)
            out += w * self.dens[tuple(ii)]
        return np.maximum(out, 0.0)

    def self_term(self, x: np.ndarray) -> np.ndarray:
        """Each training point's own contribution to `density` at itself (times n), as binned and interpolated."""
        _, frac = self._locate(x)
        out = np.ones(x.shape[0])
        for k in range(self.d):
            ker = self.kernels[k]
            c = ker.size // 2
            k0 = ker[c]
            k1 = ker[c + 1] if ker.size > 1 else 0.0
            f = frac[:, k]
            out *= ((1 - f) ** 2 + f**2) * k0 + 2 * f * (1 - f) * k1
        return out


def _choose(method: Method, d: int, h: float, train: np.ndarray, grid_tolerance: float | None, grid_size: int | None) -> str:
    if method != "auto":
        if method == "grid" and d > 3:
            raise ValueError("method='grid' supports d <= 3")
        return method
    if d > 3 or train.shape[0] < _GRID_MIN_N[d]:
        return "pairs"
    g = grid_size or _GRID_SIZE[d]
    span = np.ptp(train, axis=0)
    delta = np.max(span) / (g - 1)
    tol = _GRID_TOL[d] if grid_tolerance is None else grid_tolerance
    return "grid" if delta <= tol * h else "pairs"


def _scale(train: np.ndarray, standardize: bool) -> np.ndarray:
    if not standardize:
        return np.ones(train.shape[1])
    s = train.std(axis=0, ddof=1) if train.shape[0] > 1 else np.ones(train.shape[1])
    return np.where(s > 0, s, 1.0)


# ---------------------------------------------------------------------------------------------- core
def _log_density_scaled(train: np.ndarray, x: np.ndarray, h: float, method: Method, grid_tolerance: float | None,
                        grid_size: int | None, loo: bool, nb: _Neighbours | None = None,
                        subset: np.ndarray | None = None) -> np.ndarray:
    """ln p_hat at x (scaled coordinates). With `loo`, x is the training sample itself (optionally only the
    rows `subset`) and each point's own kernel is left out."""
    n, d = train.shape
    if h <= 0 or not np.isfinite(h):
        raise ValueError(f"bandwidth must be finite and > 0, got {h}")
    lnorm = _log_norm(d, h)
    if loo and n < 2:
        raise ValueError("leave-one-out needs at least 2 training points")
    denom = math.log(n - 1) if loo else math.log(n)
    self_index = (np.arange(n) if subset is None else np.asarray(subset)) if loo else None
    if loo and subset is not None:
        x = x[subset]
    how = _choose(method, d, h, train, grid_tolerance, grid_size)
    if how == "exact":
        return _exact_sums(train, x, h, self_index) - denom + lnorm
    nb = nb or _Neighbours(train)
    out = np.full(x.shape[0], np.nan)
    if how == "grid":
        grid = _Grid(train, h, grid_size)
        inside = grid.inside(x)
        p = np.zeros(x.shape[0])
        p[inside] = grid.density(x[inside])
        if loo:
            p = (n * p - grid.self_term(x)) / (n - 1)
        good = inside & (p > _FLOOR * grid.max)
        out[good] = np.log(p[good])
        todo = ~good
    else:
        ls = nb.log_sums(x, h, _CUT * h, self_index)
        # the truncated terms (each < e^{-cut^2/2}) must be negligible against the sum found
        good = ls > math.log(n) - 0.5 * _CUT**2 - math.log(_PAIR_RTOL)
        out[good] = ls[good] - denom + lnorm
        todo = ~good
    if todo.any():
        ti = np.flatnonzero(todo)
        si = None if self_index is None else self_index[ti]
        dmin = nb.nearest(x[ti], si)
        radius = np.sqrt(dmin**2 + _TAIL_EXTRA * h * h) * (1 + 1e-12)
        ls = nb.log_sums(x[ti], h, radius, si)
        out[ti] = ls - denom + lnorm
    return out


def kde_log_density(train: np.ndarray, x: np.ndarray, h: float, *, standardize: bool = False, method: Method = "auto",
                    grid_tolerance: float | None = None, grid_size: int | None = None) -> np.ndarray:
    """ln p_hat(x; h) of the Gaussian KDE built on `train` ((n,) or (n, d)); x is (m,) or (m, d)."""
    tr = _as2d(train, "train")
    xx = _as2d(x)
    if xx.shape[1] != tr.shape[1]:
        raise ValueError(f"x has {xx.shape[1]} features, train has {tr.shape[1]}")
    if tr.shape[0] == 0:
        raise ValueError("empty training sample")
    sc = _scale(tr, standardize)
    return _log_density_scaled(tr / sc, xx / sc, float(h), method, grid_tolerance, grid_size, loo=False) - np.log(sc).sum()


def anomaly_score(train: np.ndarray, x: np.ndarray, h: float, **kwargs) -> np.ndarray:
    """s(x) = -ln p_hat(x; h): large for events unlikely under the background model."""
    return -kde_log_density(train, x, h, **kwargs)


def loo_log_density(train: np.ndarray, h: float, *, standardize: bool = False, method: Method = "auto",
                    grid_tolerance: float | None = None, grid_size: int | None = None) -> np.ndarray:
    """ln p_hat_{-i}(x_i; h) for every training point (the density from all *other* points)."""
    tr = _as2d(train, "train")
    sc = _scale(tr, standardize)
    z = tr / sc
    return _log_density_scaled(z, z, float(h), method, grid_tolerance, grid_size, loo=True) - np.log(sc).sum()


def loocv_loss(train: np.ndarray, h: float, **kwargs) -> float:
    """L(h) = -(1/n) sum_i ln p_hat_{-i}(x_i; h)."""
    return float(-np.mean(loo_log_density(train, h, **kwargs)))


@dataclass
class LOOCVResult:
    """The LOOCV-optimal bandwidth and the loss curve. ``float(result)`` is the bandwidth."""

    bandwidth: float
    bandwidths: np.ndarray
    losses: np.ndarray
    standardize: bool

    def __float__(self) -> float:
        return self.bandwidth

    @property
    def at_edge(self) -> bool:
        """True when the minimum lies at the first or last candidate (widen the grid)."""
        i = int(np.nanargmin(self.losses))
        return i in (0, len(self.losses) - 1)


def loocv_bandwidth(x: np.ndarray, bandwidths: Sequence[float] | np.ndarray | None = None, *, standardize: bool = False,
                    method: Method = "auto", grid_tolerance: float | None = None, grid_size: int | None = None,
                    n_eval: int | None = None, seed: int = 0) -> LOOCVResult:
    """The bandwidth minimising the leave-one-out loss L(h) over the candidates.

    Default candidates: 25 values log-spaced over [0.05, 2] x the Silverman/Scott rule-of-thumb
    ``sigma n^(-1/(d+4))`` (sigma: mean per-feature std, or 1 if standardised).

    ``n_eval``: average the leave-one-out terms over a random subset of that many points (each p_hat_{-i}
    still uses all other n - 1 points): an unbiased estimate of L(h) at a fraction of the cost, useful for
    d >= 2 with large n where only the pair sums apply (the 1-D grid path does not need it).
    """
    tr = _as2d(x, "x")
    n, d = tr.shape
    if n < 2:
        raise ValueError("LOOCV needs at least 2 points")
    if bandwidths is None:
        sig = 1.0 if standardize else float(np.mean(tr.std(axis=0, ddof=1)))
        ref = max(sig, 1e-12) * n ** (-1.0 / (d + 4))
        hs = ref * np.geomspace(0.05, 2.0, 25)
    else:
        hs = np.asarray(bandwidths, dtype=float).ravel()
    if hs.size == 0 or np.any(hs <= 0) or not np.all(np.isfinite(hs)):
        raise ValueError("bandwidths must be finite and > 0")
    sc = _scale(tr, standardize)
    z = tr / sc
    nb = _Neighbours(z)
    jac = np.log(sc).sum()
    subset = None
    if n_eval is not None and n_eval < n:
        subset = np.sort(np.random.default_rng(seed).choice(n, size=int(n_eval), replace=False))
    losses = np.array([
        float(-np.mean(_log_density_scaled(z, z, float(h), method, grid_tolerance, grid_size, loo=True, nb=nb,
                                           subset=subset) - jac))
        for h in hs
    ])
    best = int(np.nanargmin(losses))
    return LOOCVResult(bandwidth=float(hs[best]), bandwidths=hs, losses=losses, standardize=standardize)


class KDE:
    """A fitted KDE background model: ``KDE().fit(train)`` picks h by LOOCV (or takes `bandwidth`)."""

    def __init__(self, bandwidth: float | None = None, *, standardize: bool = False, method: Method = "auto",
                 bandwidths: Sequence[float] | None = None):
        self.bandwidth = bandwidth
        self.standardize = standardize
        self.method = method
        self.bandwidths = bandwidths
        self.loocv: LOOCVResult | None = None
        self.train: np.ndarray | None = None

    def fit(self, train: np.ndarray) -> "KDE":
        self.train = _as2d(train, "train")
        if self.bandwidth is None:
            self.loocv = loocv_bandwidth(self.train, self.bandwidths, standardize=self.standardize, method=self.method)
            self.bandwidth = self.loocv.bandwidth
        return self

    def log_density(self, x: np.ndarray) -> np.ndarray:
        if self.train is None:
            raise RuntimeError("KDE not fitted")
        return kde_log_density(self.train, x, self.bandwidth, standardize=self.standardize, method=self.method)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Anomaly score -ln p_hat(x)."""
        return -self.log_density(x)
