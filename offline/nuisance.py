"""Nuisance orthogonalisation of anomaly scores with the Fisher information (review chapter,
"Orthogonalization for Nuisance Insensitivity").

The nuisance score vector t_theta(x) = grad_theta ln p_theta(x) spans the directions in which the background
density moves when the nuisance parameters (jet energy scale, ...) move. A raw anomaly score u(x) is made
locally insensitive to them by removing its projection on that span::

    s_perp(x) = u(x) - c^T t_theta(x),     I(theta) c = E_theta[t_theta(x) u(x)],
    I(theta) = E_theta[t_theta t_theta^T]  (the Fisher information matrix).

Then E[s_perp t_theta] = 0: to first order, the mean of s_perp does not change when theta moves
(d/dtheta E_theta[s] = E_theta[s t_theta]). Expectations are sample means over background events drawn at
the nominal theta (optionally weighted); the Fisher matrix may be given instead (e.g. computed analytically).
c is then the least-squares coefficient of u regressed on t without intercept, which the tests use as the
independent check.

`score_vector` computes t_theta by central finite differences of any log-density ln p(x; theta);
`false_positive_rates` measures how a score's false-positive rate at a fixed threshold moves with theta (the
demonstration in the tests and the figure `plots.plot_nuisance_fpr`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["OrthogonalizedScore", "false_positive_rates", "fisher_information", "orthogonalize", "score_vector"]


def _t2d(t_theta: np.ndarray, n: int | None = None) -> np.ndarray:
    t = np.asarray(t_theta, dtype=float)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or (n is not None and t.shape[0] != n):
        raise ValueError(f"nuisance scores must be (n,) or (n, k) with n = {n}, got {np.shape(t_theta)}")
    if not np.all(np.isfinite(t)):
        raise ValueError("nuisance scores contain NaN or inf")
    return t


def _weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=float).ravel()
    if w.size != n or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
        raise ValueError("weights must be finite, >= 0, not all zero, one per event")
    return w / w.sum()


def fisher_information(t_theta: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """I = E[t t^T] estimated from per-event nuisance scores (n, k) -> (k, k)."""
    t = _t2d(t_theta)
    w = _weights(weights, t.shape[0])
    return (t * w[:, None]).T @ t


@dataclass
class OrthogonalizedScore:
    """The projected score and the projection (apply it to new events with `transform`)."""

    score: np.ndarray
    c: np.ndarray
    fisher: np.ndarray

    def transform(self, u: np.ndarray, t_theta: np.ndarray) -> np.ndarray:
        """s_perp = u - t_theta c for new events."""
        u = np.asarray(u, dtype=float)
        return u - _t2d(t_theta, u.size) @ self.c


def orthogonalize(u: np.ndarray, t_theta: np.ndarray, *, fisher: np.ndarray | None = None,
                  weights: np.ndarray | None = None) -> OrthogonalizedScore:
    """Project the raw score u (n,) onto the complement of the nuisance-score directions t_theta (n,) or (n, k).

    c solves I c = E[t u] (least squares if I is singular); returns s_perp = u - t c with c and I.
    """
    uu = np.asarray(u, dtype=float).ravel()
    if not np.all(np.isfinite(uu)):
        raise ValueError("raw scores contain NaN or inf")
    t = _t2d(t_theta, uu.size)
    w = _weights(weights, uu.size)
    info = fisher_information(t, weights) if fisher is None else np.atleast_2d(np.asarray(fisher, dtype=float))
    if info.shape != (t.shape[1], t.shape[1]):
        raise ValueError(f"Fisher matrix must be {t.shape[1]}x{t.shape[1]}, got {info.shape}")
    rhs = (t * w[:, None]).T @ uu
    c, *_ = np.linalg.lstsq(info, rhs, rcond=None)
    return OrthogonalizedScore(score=uu - t @ c, c=c, fisher=info)


def score_vector(log_prob: Callable[[np.ndarray, np.ndarray], np.ndarray], x: np.ndarray, theta: np.ndarray | float,
                 *, eps: float | np.ndarray = 1e-4) -> np.ndarray:
    """t_theta(x) = grad_theta ln p(x; theta) by central differences; `log_prob(x, theta)` returns (n,).

    Returns (n, k) for k nuisance parameters (k = 1 for a scalar theta).
    """
    th = np.atleast_1d(np.asarray(theta, dtype=float))
    h = np.broadcast_to(np.asarray(eps, dtype=float), th.shape) * np.maximum(1.0, np.abs(th))
    cols = []
    for i in range(th.size):
        up, dn = th.copy(), th.copy()
        up[i] += h[i]
        dn[i] -= h[i]
        a = np.asarray(log_prob(x, up if th.size > 1 else up[0]), dtype=float)
        b = np.asarray(log_prob(x, dn if th.size > 1 else dn[0]), dtype=float)
        cols.append((a - b) / (2 * h[i]))
    return np.column_stack(cols)


def false_positive_rates(score: Callable[[np.ndarray], np.ndarray], sample: Callable[[float, int], np.ndarray],
                         thetas: np.ndarray, *, theta0: float = 1.0, fpr: float = 0.01, n: int = 200_000) -> np.ndarray:
    """False-positive rate of `score` at the threshold that gives `fpr` at theta0, for background drawn at each theta.

    `sample(theta, n)` draws n background events; `score(events)` returns their scores.
    """
    thr = np.quantile(score(sample(theta0, n)), 1.0 - fpr)
    return np.array([np.mean(score(sample(float(th), n)) > thr) for th in np.atleast_1d(thetas)])
