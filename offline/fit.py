"""Smooth fit of a falling spectrum with a dijet function family, binned Poisson likelihood (iminuit).

    dijet: f(m) = p0 (1 - x)^p1 / x^(p2 + p3 ln x + p4 ln^2 x),   x = m / sqrt(s)
    ua2:   f(m) = p0 x^-p1 exp(-p2 x - p3 x^2 - p4 x^3)            (the UA2 / ATLAS alternative family)

``n_params`` = 3, 4 or 5 selects (p0, p1, p2), (p0..p3) or (p0..p4); the unused exponents are 0. p0 is a density
per GeV. ``family`` selects the function (`FAMILIES`); two families give the discrete choice of
`offline.bkgsyst`. Expected bin counts are the integral of f over each bin (8-point Gauss-Legendre per bin, in log space
so that steep spectra neither overflow nor underflow).

The fit minimises the Poisson negative log-likelihood ``sum_b (mu_b - n_b ln mu_b)`` with p0 profiled
analytically (``p0_hat = N / sum_b G_b``, i.e. a multinomial likelihood in the shape exponents), from several
starting points (MIGRAD, HESSE errors; it stops once two starts reach the same minimum). The exponents are strongly correlated (|rho| ~ 0.99 is typical); the
profiled parameterisation keeps MIGRAD/HESSE well conditioned, and the p0 error follows by propagation
(the fitted total is independent of the shape). The goodness of fit is the Poisson deviance ``2 sum (mu - n + n ln(n/mu))`` against
chi2 with ``n_bins - n_params`` degrees of freedom.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import special, stats

__all__ = ["FAMILIES", "DijetFit", "dijet_function", "dijet_log_bin_integrals", "fit_dijet", "poisson_deviance"]

SQRT_S = 13000.0  # GeV
_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)


def _check_edges(edges: np.ndarray, sqrt_s: float) -> np.ndarray:
    e = np.asarray(edges, dtype=float)
    if e.ndim != 1 or e.size < 2 or not np.all(np.diff(e) > 0):
        raise ValueError("bin edges must be a strictly increasing 1-D array with at least 2 entries")
    if e[0] <= 0 or e[-1] >= sqrt_s:
        raise ValueError(f"the dijet function needs 0 < m < sqrt(s) = {sqrt_s}; edges span [{e[0]}, {e[-1]}]")
    return e


def _log_dijet(x: np.ndarray, exps: np.ndarray) -> np.ndarray:
    """ln[(1-x)^p1 / x^(p2 + p3 ln x + p4 ln^2 x)] for exponents (p1, p2[, p3[, p4]])."""
    lx = np.log(x)
    power = exps[1] + (exps[2] * lx if len(exps) > 2 else 0.0) + (exps[3] * lx * lx if len(exps) > 3 else 0.0)
    return exps[0] * np.log1p(-x) - power * lx


def _log_ua2(x: np.ndarray, exps: np.ndarray) -> np.ndarray:
    """ln[x^-p1 exp(-p2 x - p3 x^2 - p4 x^3)] for exponents (p1, p2[, p3[, p4]])."""
    poly = exps[1] * x + (exps[2] * x * x if len(exps) > 2 else 0.0) + (exps[3] * x ** 3 if len(exps) > 3 else 0.0)
    return -exps[0] * np.log(x) - poly


#: function families: name -> ln of the shape (p0 = 1) as a function of x and the exponents
FAMILIES = {"dijet": _log_dijet, "ua2": _log_ua2}
_FAMILY_STARTS = {
    "dijet": [(10.0, 5.0), (5.0, 3.0), (20.0, 6.0), (1.0, 2.0), (30.0, 8.0), (10.0, 1.0)],
    "ua2": [(5.0, 10.0), (3.0, 15.0), (8.0, 5.0), (2.0, 25.0), (10.0, 0.0), (1.0, 35.0)],
}


def _shape(family: str):
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown function family {family!r}; allowed: {sorted(FAMILIES)}") from None


def _log_shape(x: np.ndarray, exps: np.ndarray, family: str = "dijet") -> np.ndarray:
    return _shape(family)(x, exps)


def dijet_function(m: np.ndarray, params: np.ndarray, sqrt_s: float = SQRT_S, family: str = "dijet") -> np.ndarray:
    """f(m) for params (p0, p1, p2[, p3[, p4]]), per GeV."""
    p = np.asarray(params, dtype=float)
    x = np.asarray(m, dtype=float) / sqrt_s
    return p[0] * np.exp(_log_shape(x, p[1:], family))


def dijet_log_bin_integrals(edges: np.ndarray, exps: np.ndarray, sqrt_s: float = SQRT_S, family: str = "dijet") -> np.ndarray:
    """ln of the integral over each bin of the family's shape (p0 = 1) dm, per bin."""
    e = np.asarray(edges, dtype=float)
    lo, hi = e[:-1], e[1:]
    half = 0.5 * (hi - lo)
    m = 0.5 * (hi + lo)[:, None] + half[:, None] * _GL_X[None, :]
    lg = _log_shape(m / sqrt_s, np.asarray(exps, dtype=float), family)
    return special.logsumexp(lg, b=_GL_W[None, :] * half[:, None], axis=1)


def poisson_deviance(n: np.ndarray, mu: np.ndarray) -> float:
    """2 sum (mu - n + n ln(n / mu)), with 0 ln 0 = 0."""
    n = np.asarray(n, dtype=float)
    mu = np.asarray(mu, dtype=float)
    return float(2.0 * np.sum(mu - n + special.xlogy(n, n) - special.xlogy(n, mu)))


@dataclass
class DijetFit:
    """Result of `fit_dijet`. `expected` holds the fitted counts of every bin of `edges` (also outside the fit mask)."""

    params: np.ndarray
    errors: np.ndarray
    edges: np.ndarray
    counts: np.ndarray
    expected: np.ndarray
    mask: np.ndarray
    sqrt_s: float
    deviance: float
    ndof: int
    valid: bool
    n_params: int
    covariance: np.ndarray | None = field(default=None, repr=False)
    family: str = "dijet"

    @property
    def pvalue(self) -> float:
        """Goodness-of-fit p-value: P(chi2_ndof > deviance)."""
        return float(stats.chi2.sf(self.deviance, self.ndof)) if self.ndof > 0 else float("nan")

    def expected_counts(self, edges: np.ndarray | None = None) -> np.ndarray:
        """Fitted expected counts in the bins of `edges` (default: the fitted histogram's)."""
        e = self.edges if edges is None else _check_edges(edges, self.sqrt_s)
        return self.params[0] * np.exp(dijet_log_bin_integrals(e, self.params[1:], self.sqrt_s, self.family))

    def expected_jacobian(self, edges: np.ndarray | None = None) -> np.ndarray:
        """d expected counts / d params, (n_bins, n_params), by central differences (p0 enters linearly)."""
        e = self.edges if edges is None else _check_edges(edges, self.sqrt_s)
        base = np.exp(dijet_log_bin_integrals(e, self.params[1:], self.sqrt_s, self.family))
        jac = np.empty((base.size, self.n_params))
        jac[:, 0] = base
        for i in range(1, self.n_params):
            h = 1e-5 * max(1.0, abs(self.params[i]))
            up, dn = self.params[1:].copy(), self.params[1:].copy()
            up[i - 1] += h
            dn[i - 1] -= h
            d = np.exp(dijet_log_bin_integrals(e, up, self.sqrt_s, self.family)) - np.exp(dijet_log_bin_integrals(e, dn, self.sqrt_s, self.family))
            jac[:, i] = self.params[0] * d / (2 * h)
        return jac

    def residuals(self) -> np.ndarray:
        """(n - mu) / sqrt(mu) per bin."""
        mu = np.maximum(self.expected, 1e-300)
        return (self.counts - self.expected) / np.sqrt(mu)

    def to_dict(self) -> dict:
        return {
            "function": f"{self.family}-{self.n_params}p",
            "params": self.params.tolist(),
            "errors": self.errors.tolist(),
            "sqrt_s": self.sqrt_s,
            "deviance": self.deviance,
            "ndof": self.ndof,
            "pvalue": self.pvalue,
            "valid": self.valid,
        }


def fit_dijet(counts: np.ndarray, edges: np.ndarray, *, sqrt_s: float = SQRT_S, n_params: int = 4,
              mask: np.ndarray | None = None, start: np.ndarray | None = None, family: str = "dijet") -> DijetFit:
    """Fit a dijet-function family to a histogram by binned Poisson maximum likelihood.

    `mask` (bool per bin) selects the bins that enter the likelihood (e.g. to blind a signal region);
    `start` optionally gives starting exponents (p1, p2, ...); `family` is a key of `FAMILIES`.
    """
    from iminuit import Minuit

    shape = _shape(family)
    if n_params not in (3, 4, 5):
        raise ValueError(f"n_params must be 3, 4 or 5, got {n_params}")
    e = _check_edges(edges, sqrt_s)
    n = np.asarray(counts, dtype=float)
    if n.shape != (e.size - 1,):
        raise ValueError(f"counts has shape {n.shape}, expected ({e.size - 1},) for {e.size} edges")
    if np.any(n < 0) or not np.all(np.isfinite(n)):
        raise ValueError("counts must be finite and >= 0")
    use = np.ones(n.size, bool) if mask is None else np.asarray(mask, dtype=bool)
    if use.shape != n.shape:
        raise ValueError(f"mask has shape {use.shape}, expected {n.shape}")
    n_fit = n[use]
    total = n_fit.sum()
    if total <= 0:
        raise ValueError("no events in the fitted bins")
    if use.sum() <= n_params:
        raise ValueError(f"{int(use.sum())} fitted bins cannot constrain {n_params} parameters")
    n_exp = n_params - 1
    e_lo, e_hi = e[:-1][use], e[1:][use]

    def log_g(exps):
        half = 0.5 * (e_hi - e_lo)
        m = 0.5 * (e_hi + e_lo)[:, None] + half[:, None] * _GL_X[None, :]
        lg = shape(m / sqrt_s, np.asarray(exps, dtype=float))
        return special.logsumexp(lg, b=_GL_W[None, :] * half[:, None], axis=1)

    def nll_profiled(*exps):
        lg = log_g(exps)
        if not np.all(np.isfinite(lg)):
            return 1e300
        return float(-np.sum(n_fit * (lg - special.logsumexp(lg))))

    names = [f"p{i}" for i in range(1, n_params)]
    starts = [np.asarray(start, dtype=float)] if start is not None else [np.array([a, b] + [0.0] * (n_exp - 2)) for a, b in _FAMILY_STARTS[family]]
    best, agree = None, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s0 in starts:
            if s0.shape != (n_exp,):
                raise ValueError(f"start must have {n_exp} exponents, got {s0.shape}")
            mi = Minuit(nll_profiled, *s0, name=names)
            mi.errordef = Minuit.LIKELIHOOD
            mi.strategy = 1
            try:
                mi.migrad(ncall=20000)
            except (RuntimeError, FloatingPointError):
                continue
            if not np.isfinite(mi.fval):
                continue
            if best is None or mi.fval < best.fval - 1e-4:
                best, agree = mi, 1
            elif mi.fval < best.fval + 1e-4:
                agree += 1
                if mi.fval < best.fval:
                    best = mi
            if agree >= 2 and mi.valid:  # two starting points reached the same minimum: stop early
                break
    if best is None:
        raise RuntimeError("dijet fit failed from every starting point")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best.hesse()
    exps = np.array(best.values)
    lnp0 = np.log(total) - special.logsumexp(log_g(exps))
    params = np.concatenate([[np.exp(lnp0)], exps])
    # Covariance: the fitted total N is independent of the shape (Poisson = Poisson(N) x multinomial), so
    # ln p0 = ln N - logsumexp(ln G(exps)) has var 1/N + J C J^T with J the gradient of -logsumexp(ln G).
    cov_e = np.array(best.covariance) if best.covariance is not None else np.full((n_exp, n_exp), np.nan)
    step = 1e-5 * np.maximum(1.0, np.abs(exps))
    jac_e = np.empty(n_exp)
    for i in range(n_exp):
        d = np.zeros(n_exp)
        d[i] = step[i]
        jac_e[i] = -(special.logsumexp(log_g(exps + d)) - special.logsumexp(log_g(exps - d))) / (2 * step[i])
    cov_ln = np.empty((n_params, n_params))
    cov_ln[1:, 1:] = cov_e
    cov_ln[0, 1:] = cov_ln[1:, 0] = cov_e @ jac_e
    cov_ln[0, 0] = 1.0 / total + jac_e @ cov_e @ jac_e
    jac = np.eye(n_params)
    jac[0, 0] = params[0]
    cov = jac @ cov_ln @ jac.T
    errors = np.sqrt(np.clip(np.diag(cov), 0, None))
    valid = bool(best.valid)
    expected = params[0] * np.exp(dijet_log_bin_integrals(e, params[1:], sqrt_s, family))
    dev = poisson_deviance(n_fit, expected[use])
    return DijetFit(
        params=params, errors=errors, edges=e, counts=n, expected=expected, mask=use, sqrt_s=float(sqrt_s),
        deviance=dev, ndof=int(use.sum() - n_params), valid=valid, n_params=n_params, covariance=cov, family=family,
    )
