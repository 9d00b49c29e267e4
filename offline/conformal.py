"""Conformal p-values for anomaly scores (review chapter, "Conformal Prediction: Model-Agnostic p-values").

Split conformal: with scores eta of a background-only calibration set (independent of the data the score was
trained on), the p-value of a test event with score eta(x) is::

    p(x) = (1 + #{j : eta(X_j^cal) >= eta(x)}) / (1 + n_cal)

Under H0 the test event is exchangeable with the calibration events, so P(p <= a) <= a for every a
(super-uniform; exactly floor(a (n+1)) / (n+1) for continuous scores). ``randomize=True`` breaks ties with a
uniform variate, (#{>} + U (1 + #{=})) / (1 + n), which is exactly uniform under H0.

Conditional conformal: when the score's distribution depends on covariates Z (pile-up, run conditions), one
global calibration gives different false-positive rates at different Z. `ConditionalConformal` estimates the
conditional CDF F_z(s) = P(S <= s | Z = z) by quantile regression on a grid of levels tau (monotone
rearrangement of the predicted quantiles, linear interpolation between them, exponential tails beyond the
extreme levels fitted to the last two quantiles so that the order of extreme scores survives), and then
applies split conformal to the probability-integral transform V = F_Z(S) on a *separate* calibration split
(computed as -ln(1 - F_Z(S)), the same ordering without floating-point saturation at F = 1).
The p-values are therefore valid (super-uniform) marginally whatever the quality of the regression, and
approximately uniform conditionally on Z when F_z is accurate.

Quantile-regression back ends: 'hgb' (HistGradientBoostingRegressor, quantile loss; default), 'gbr'
(GradientBoostingRegressor), 'linear' (QuantileRegressor on a cubic spline basis of each covariate), and
'binned' (empirical quantiles within quantile bins of a single covariate: fast and robust for one discrete or
smooth covariate such as the number of pile-up vertices).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from l1ad.offline._stats_util import one_thread

__all__ = ["ConditionalConformal", "ConformalConfig", "conditional_pvalues", "split_pvalues"]

DEFAULT_LEVELS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99)


def _scores(a: np.ndarray, name: str) -> np.ndarray:
    s = np.asarray(a, dtype=float)
    if s.ndim != 1:
        s = s.ravel()
    if np.any(np.isnan(s)):
        raise ValueError(f"{name} contain NaN")
    return s


def split_pvalues(cal_scores: np.ndarray, test_scores: np.ndarray, *, randomize: bool = False,
                  rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Split-conformal p-values (1 + #{cal >= s}) / (1 + n_cal) for every test score (vectorised, O((n+m) log n)).

    Larger scores are more anomalous. +inf scores are allowed (an inf test score is matched only by inf
    calibration scores).
    """
    cal = np.sort(_scores(cal_scores, "calibration scores"))
    test = np.asarray(test_scores, dtype=float)
    shape = test.shape
    t = _scores(test, "test scores")
    n = cal.size
    if n == 0:
        raise ValueError("empty calibration set")
    ge = n - np.searchsorted(cal, t, side="left")
    if not randomize:
        return ((1.0 + ge) / (1.0 + n)).reshape(shape)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    gt = n - np.searchsorted(cal, t, side="right")
    eq = ge - gt
    u = gen.uniform(size=t.size)
    return ((gt + u * (1.0 + eq)) / (1.0 + n)).reshape(shape)


# ---------------------------------------------------------------------------------------------- conditional
class ConformalConfig(BaseModel):
    """Settings of the (conditional) conformal p-values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    levels: tuple[float, ...] = Field(DEFAULT_LEVELS, description="quantile levels tau of the conditional model")
    model: Literal["hgb", "gbr", "linear", "binned"] = "hgb"
    train_fraction: float = Field(0.5, gt=0, lt=1, description="share of the calibration sample used to fit the quantile model")
    n_bins: int = Field(10, ge=1, description="covariate bins for model='binned'")
    max_iter: int = Field(100, ge=1, description="boosting iterations for 'hgb' / 'gbr'")
    randomize: bool = Field(False, description="randomised tie-breaking (exactly uniform p-values)")
    seed: int = 0

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        v = tuple(sorted(set(v)))
        if len(v) < 3 or v[0] <= 0 or v[-1] >= 1:
            raise ValueError("need at least 3 quantile levels strictly inside (0, 1)")
        return v


def _covariates(z: np.ndarray, n: int) -> np.ndarray:
    a = np.asarray(z, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != n:
        raise ValueError(f"covariates must be (n,) or (n, k) with n = {n}, got {np.shape(z)}")
    if not np.all(np.isfinite(a)):
        raise ValueError("covariates contain NaN or inf")
    return a


class ConditionalConformal:
    """Conformal p-values calibrated conditionally on covariates through quantile regression.

    Usage: ``cc = ConditionalConformal(config).fit(train_scores, train_cov).calibrate(cal_scores, cal_cov)``,
    then ``cc.pvalues(test_scores, test_cov)``. The quantile model and the conformal calibration must use
    disjoint background samples (`conditional_pvalues` splits one sample for you).
    """

    def __init__(self, config: ConformalConfig | None = None, **overrides):
        base = config or ConformalConfig()
        self.config = ConformalConfig.model_validate({**base.model_dump(), **overrides}) if overrides else base
        self.levels = np.asarray(self.config.levels)
        self._models: list = []
        self._bins: tuple[np.ndarray, np.ndarray] | None = None
        self._cal_v: np.ndarray | None = None

    # ------------------------------------------------------------------ quantile model
    def fit(self, scores: np.ndarray, covariates: np.ndarray) -> "ConditionalConformal":
        """Fit the conditional quantiles q_tau(z) of the score on a background training split."""
        s = _scores(scores, "scores")
        if not np.all(np.isfinite(s)):
            raise ValueError("training scores must be finite")
        z = _covariates(covariates, s.size)
        cfg = self.config
        if s.size < 2 * len(self.levels):
            raise ValueError(f"too few training scores ({s.size}) for {len(self.levels)} quantile levels")
        self._models = []
        self._bins = None
        if cfg.model == "binned":
            if z.shape[1] != 1:
                raise ValueError("model='binned' takes a single covariate")
            edges = np.unique(np.quantile(z[:, 0], np.linspace(0, 1, cfg.n_bins + 1)))
            idx = np.clip(np.searchsorted(edges, z[:, 0], side="right") - 1, 0, max(edges.size - 2, 0))
            q = np.empty((max(edges.size - 1, 1), self.levels.size))
            for b in range(q.shape[0]):
                sel = s[idx == b]
                if sel.size < 2:
                    raise ValueError("a covariate bin holds fewer than 2 scores; reduce n_bins")
                q[b] = np.quantile(sel, self.levels)
            self._bins = (edges, q)
            return self
        models = [self._make(tau) for tau in self.levels]  # import (and load OpenMP) before limiting threads
        with one_thread():
            for m in models:
                self._models.append(m.fit(z, s))
        return self

    def _make(self, tau: float):
        cfg = self.config
        if cfg.model == "hgb":
            from sklearn.ensemble import HistGradientBoostingRegressor

            return HistGradientBoostingRegressor(loss="quantile", quantile=float(tau), max_iter=cfg.max_iter,
                                                 learning_rate=0.05, max_leaf_nodes=8, min_samples_leaf=100,
                                                 random_state=cfg.seed)
        if cfg.model == "gbr":
            from sklearn.ensemble import GradientBoostingRegressor

            return GradientBoostingRegressor(loss="quantile", alpha=float(tau), n_estimators=cfg.max_iter,
                                             learning_rate=0.05, max_depth=3, min_samples_leaf=100, random_state=cfg.seed)
        from sklearn.linear_model import QuantileRegressor
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import SplineTransformer

        return make_pipeline(SplineTransformer(n_knots=5, degree=3), QuantileRegressor(quantile=float(tau), alpha=0.0, solver="highs"))

    def quantiles(self, covariates: np.ndarray) -> np.ndarray:
        """Predicted conditional quantiles (m, n_levels), rearranged to be non-decreasing in tau."""
        z = _covariates(covariates, np.shape(covariates)[0])
        if self._bins is not None:
            edges, q = self._bins
            idx = np.clip(np.searchsorted(edges, z[:, 0], side="right") - 1, 0, q.shape[0] - 1)
            return q[idx]
        if not self._models:
            raise RuntimeError("ConditionalConformal is not fitted")
        with one_thread():
            q = np.column_stack([m.predict(z) for m in self._models])
        return np.sort(q, axis=1)

    def cdf(self, scores: np.ndarray, covariates: np.ndarray) -> np.ndarray:
        """Estimated conditional CDF F_z(s) (non-decreasing in s; exponential tails beyond the extreme levels)."""
        return -np.expm1(-self.tail_score(scores, covariates))

    def tail_score(self, scores: np.ndarray, covariates: np.ndarray) -> np.ndarray:
        """-ln(1 - F_z(s)): a monotone transform of the conditional CDF that stays strictly increasing and
        unbounded in the upper tail (where 1 - F underflows in floating point). Used as the conformity score."""
        s = _scores(scores, "scores")
        q = self.quantiles(covariates)
        if q.shape[0] != s.size:
            raise ValueError(f"{s.size} scores but {q.shape[0]} covariate rows")
        tau = self.levels
        k = tau.size
        eps = 1e-12 * np.maximum(1.0, np.abs(q).max(axis=1))
        # tail scales matched to the two outermost quantiles
        beta_hi = np.maximum(q[:, -1] - q[:, -2], eps) / np.log((1 - tau[-2]) / (1 - tau[-1]))
        beta_lo = np.maximum(q[:, 1] - q[:, 0], eps) / np.log(tau[1] / tau[0])
        out = np.empty(s.size)
        hi = s >= q[:, -1]
        lo = s <= q[:, 0]
        # upper tail: 1 - F = (1 - tau_K) exp(-(s - q_K) / beta)  ->  -ln(1 - F) = -ln(1 - tau_K) + (s - q_K) / beta
        out[hi] = -np.log1p(-tau[-1]) + (s[hi] - q[hi, -1]) / beta_hi[hi]
        with np.errstate(under="ignore"):
            f_lo = tau[0] * np.exp((s[lo] - q[lo, 0]) / beta_lo[lo])
        out[lo] = -np.log1p(-f_lo)
        mid = ~(hi | lo)
        if mid.any():
            qm, sm = q[mid], s[mid]
            j = np.clip((qm <= sm[:, None]).sum(axis=1) - 1, 0, k - 2)
            rows = np.arange(qm.shape[0])
            q0, q1 = qm[rows, j], qm[rows, j + 1]
            frac = np.where(q1 > q0, (sm - q0) / np.where(q1 > q0, q1 - q0, 1.0), 1.0)
            out[mid] = -np.log1p(-(tau[j] + frac * (tau[j + 1] - tau[j])))
        return out

    # ------------------------------------------------------------------ conformal step
    def calibrate(self, scores: np.ndarray, covariates: np.ndarray) -> "ConditionalConformal":
        """Store the transformed scores V = -ln(1 - F_Z(S)) (monotone in F_Z(S)) of a background calibration split
        (disjoint from `fit`'s)."""
        self._cal_v = self.tail_score(scores, covariates)
        return self

    def pvalues(self, scores: np.ndarray, covariates: np.ndarray, *, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Conditional conformal p-values of test events."""
        if self._cal_v is None:
            raise RuntimeError("call calibrate() before pvalues()")
        v = self.tail_score(scores, covariates)
        return split_pvalues(self._cal_v, v, randomize=self.config.randomize,
                             rng=self.config.seed if rng is None else rng)


def conditional_pvalues(cal_scores: np.ndarray, cal_covariates: np.ndarray, test_scores: np.ndarray,
                        test_covariates: np.ndarray, config: ConformalConfig | None = None, **overrides) -> np.ndarray:
    """Split one background calibration sample into a quantile-model part and a conformal part
    (`train_fraction`), and return conditional conformal p-values of the test events."""
    s = _scores(cal_scores, "calibration scores")
    z = _covariates(cal_covariates, s.size)
    cc = ConditionalConformal(config, **overrides)
    rng = np.random.default_rng(cc.config.seed)
    perm = rng.permutation(s.size)
    n_fit = int(round(cc.config.train_fraction * s.size))
    if n_fit < 2 * len(cc.levels) or s.size - n_fit < 1:
        raise ValueError(f"calibration sample of {s.size} too small to split for the conditional model")
    a, b = perm[:n_fit], perm[n_fit:]
    cc.fit(s[a], z[a]).calibrate(s[b], z[b])
    return cc.pvalues(test_scores, test_covariates)
