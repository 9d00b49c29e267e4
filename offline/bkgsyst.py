"""Background-model systematics of the bump hunts: function choice, spurious signal, fit uncertainty.

* `select_function`: within each family (`offline.fit.FAMILIES`, 3 to 5 parameters) the Fisher F-test on the
  Poisson deviances picks the fewest parameters that the data do not ask to extend
  (``F = (D_n - D_{n+1}) / (D_{n+1} / ndof_{n+1})`` against F(1, ndof_{n+1}); extend while p < `f_test_p`);
  across families, discrete profiling (Dauncey, Kenzie, Wardle, Davies 2015) ranks the fits by the corrected
  ``D + c n_params`` (c = 1) and keeps every function as a member of the envelope.
* `envelope_t`: the discrete-profiling statistic per window,
  ``t_env = min_f [ t_f + (D_f + c n_f) - min_g (D_g + c n_g) ]``: the H0 likelihood is profiled over the
  function index, the H1 (free window excess) likelihood is the same for every function.
* `ln_alpha_sigma`: the uncertainty of ln alpha = ln(mu_W / mu_S) of every window from the fit covariance
  (linear propagation with the Jacobian of the expected counts).
* `profile_t_syst`: the window statistic with ln alpha a nuisance parameter constrained by a Gaussian of width
  sigma (the fit's, and optionally the spurious signal's). With s >= 0 and n_W > alpha0 n_S the H1 fit is
  saturated and

      t = min_theta [ t(n_W, n_S, e^theta) + (theta - ln alpha0)^2 / sigma^2 ],  theta in [ln alpha0, ln(n_W/n_S)]

  (t = 0 otherwise). Its derivative ``2 [N a / (a + 1) - n_W] + 2 (theta - theta0) / sigma^2`` (a = e^theta,
  N = n_W + n_S) increases with theta, so the minimum is the root, found by vectorised bisection.
* `spurious_signal`: a signal + background fit (box signal over the window) to a background-only template or
  toys; the fitted signal yield is the spurious signal, quoted also relative to its statistical error.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from l1ad.offline.fit import FAMILIES, SQRT_S, DijetFit, dijet_log_bin_integrals, fit_dijet, poisson_deviance

__all__ = ["FunctionChoice", "envelope_scan", "envelope_t", "f_test_p", "fit_signal_plus_background", "ln_alpha_sigma",
           "profile_t_syst", "select_function", "spurious_signal", "spurious_sigma"]

PENALTY = 1.0  # per parameter, in -2 ln L units (the "p-value correction" of discrete profiling, c = 1)


def f_test_p(dev_small: float, dev_big: float, ndof_big: int, extra: int = 1) -> float:
    """p-value of the F-test that `extra` more parameters (deviance dev_small -> dev_big) improve the fit."""
    if ndof_big <= 0:
        raise ValueError(f"the larger fit needs ndof > 0, got {ndof_big}")
    if dev_big <= 0:
        return 0.0 if dev_small > dev_big else 1.0
    f = max(dev_small - dev_big, 0.0) / extra / (dev_big / ndof_big)
    return float(stats.f.sf(f, extra, ndof_big))


@dataclass
class FunctionChoice:
    """All fits (family, n_params) -> DijetFit, the F-test choice per family and the overall best."""

    fits: dict[tuple[str, int], DijetFit]
    per_family: dict[str, int]
    f_tests: dict[str, list[float]]
    best: tuple[str, int]

    def corrected(self, key: tuple[str, int]) -> float:
        f = self.fits[key]
        return f.deviance + PENALTY * f.n_params

    @property
    def envelope(self) -> list[tuple[str, int]]:
        """The F-test choice of every family (the discrete-profiling candidate set)."""
        return [(fam, n) for fam, n in self.per_family.items()]

    @property
    def best_fit(self) -> DijetFit:
        return self.fits[self.best]

    def summary(self) -> dict:
        return {"best": f"{self.best[0]}-{self.best[1]}p",
                "per_family": {k: f"{k}-{v}p" for k, v in self.per_family.items()},
                "f_test_p": self.f_tests,
                "fits": {f"{k[0]}-{k[1]}p": {"deviance": f.deviance, "ndof": f.ndof, "gof_p": f.pvalue, "valid": f.valid,
                                             "corrected_nll2": self.corrected(k)} for k, f in self.fits.items()}}


def select_function(counts: np.ndarray, edges: np.ndarray, *, families: tuple[str, ...] = ("dijet", "ua2"),
                    n_params: tuple[int, ...] = (3, 4, 5), mask: np.ndarray | None = None, sqrt_s: float = SQRT_S,
                    f_test_threshold: float = 0.05) -> FunctionChoice:
    """Fit every family with every parameter count, choose per family by F-test and overall by D + n_params."""
    bad = [f for f in families if f not in FAMILIES]
    if bad or not families:
        raise ValueError(f"families {list(families)}: allowed {sorted(FAMILIES)} (at least one)")
    ns = tuple(sorted(set(n_params)))
    if not ns or any(n not in (3, 4, 5) for n in ns):
        raise ValueError(f"n_params {list(n_params)}: allowed 3, 4, 5")
    if not 0 < f_test_threshold < 1:
        raise ValueError(f"f_test_threshold must be in (0, 1), got {f_test_threshold}")
    fits: dict[tuple[str, int], DijetFit] = {}
    per_family: dict[str, int] = {}
    f_tests: dict[str, list[float]] = {}
    for fam in families:
        start = None
        for n in ns:
            f = fit_dijet(counts, edges, sqrt_s=sqrt_s, n_params=n, mask=mask, family=fam)
            if start is not None:  # nested: the smaller fit's minimum extended by a zero is a valid start
                g = fit_dijet(counts, edges, sqrt_s=sqrt_s, n_params=n, mask=mask, family=fam,
                              start=np.concatenate([start, np.zeros(n - 1 - start.size)]))
                f = g if g.deviance < f.deviance else f
            fits[(fam, n)] = f
            start = f.params[1:]
        ps, chosen = [], ns[0]
        for a, b in zip(ns[:-1], ns[1:]):
            fa, fb = fits[(fam, a)], fits[(fam, b)]
            ps.append(f_test_p(fa.deviance, fb.deviance, fb.ndof, b - a))
        for i, p in enumerate(ps):  # extend while the next parameter is significant
            if p < f_test_threshold:
                chosen = ns[i + 1]
            else:
                break
        per_family[fam], f_tests[fam] = chosen, ps
    best = min(((fam, n) for fam, n in per_family.items()),
               key=lambda k: fits[k].deviance + PENALTY * fits[k].n_params)
    return FunctionChoice(fits, per_family, f_tests, best)


def ln_alpha_sigma(fit: DijetFit, grid) -> np.ndarray:
    """Standard deviation of ln(mu_W / mu_S) per window of a `bumphunt.WindowGrid` from the fit covariance."""
    if fit.covariance is None or not np.all(np.isfinite(fit.covariance)):
        raise ValueError("the fit has no finite covariance matrix (HESSE failed); cannot propagate its uncertainty")
    jac = fit.expected_jacobian()  # (n_bins, n_params)
    mu = fit.expected
    nb = mu.size
    cs_mu = np.concatenate([[0.0], np.cumsum(mu)])
    cs_j = np.concatenate([np.zeros((1, jac.shape[1])), np.cumsum(jac, axis=0)])
    lo, hi, slo, shi = (np.clip(a, 0, nb) for a in (grid.lo, grid.hi, grid.slo, grid.shi))
    mu_w = cs_mu[hi] - cs_mu[lo]
    mu_s = cs_mu[lo] - cs_mu[slo] + cs_mu[shi] - cs_mu[hi]
    d_w = cs_j[hi] - cs_j[lo]
    d_s = cs_j[lo] - cs_j[slo] + cs_j[shi] - cs_j[hi]
    with np.errstate(divide="ignore", invalid="ignore"):
        g = d_w / mu_w[..., None] - d_s / mu_s[..., None]  # d ln alpha / d params
        var = np.einsum("...i,ij,...j->...", g, fit.covariance, g)
    return np.where(grid.valid, np.sqrt(np.clip(var, 0.0, None)), np.nan)


def profile_t_syst(n_w, n_s, alpha, sigma, *, n_iter: int = 80) -> np.ndarray:
    """Window statistic with ln alpha constrained by N(ln alpha, sigma^2); sigma = 0 gives `profile_t`."""
    from l1ad.offline.bumphunt import profile_t

    nw, ns, a0, sg = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (n_w, n_s, alpha, sigma)))
    if np.any(sg < 0) or not np.all(np.isfinite(sg)):
        raise ValueError("sigma (uncertainty of ln alpha) must be finite and >= 0")
    t0 = profile_t(nw, ns, a0)
    on = (t0 > 0) & (sg > 0)
    out = np.array(t0, dtype=float, copy=True)
    if np.any(on):
        w, s, th0, sig = nw[on], ns[on], np.log(a0[on]), sg[on]
        tot = w + s
        with np.errstate(divide="ignore"):
            top = np.where(s > 0, np.log(w / np.where(s > 0, s, 1.0)), np.inf)
        lo, hi = th0.copy(), np.minimum(top, th0 + w * sig * sig)

        def grad(th):
            a = np.exp(th)
            return 2.0 * (tot * a / (a + 1.0) - w) + 2.0 * (th - th0) / (sig * sig)

        for _ in range(n_iter):
            mid = 0.5 * (lo + hi)
            neg = grad(mid) < 0
            lo, hi = np.where(neg, mid, lo), np.where(neg, hi, mid)
        th = 0.5 * (lo + hi)
        out[on] = np.maximum(profile_t(w, s, np.exp(th)) + (th - th0) ** 2 / (sig * sig), 0.0)
    return out if out.ndim else out[()]


def envelope_t(t_by_function: dict, choice: FunctionChoice) -> np.ndarray:
    """Discrete-profiling window statistic from per-function t grids {(family, n): t} (see module docstring)."""
    keys = list(t_by_function)
    if not keys:
        raise ValueError("envelope_t needs at least one function's t grid")
    missing = [k for k in keys if k not in choice.fits]
    if missing:
        raise ValueError(f"no fit for functions {missing}; have {sorted(choice.fits)}")
    c_min = min(choice.corrected(k) for k in keys)
    stack = np.stack([np.asarray(t_by_function[k], dtype=float) + choice.corrected(k) - c_min for k in keys])
    return np.min(stack, axis=0)


# ---------------------------------------------------------------------------------------------- spurious signal
def fit_signal_plus_background(counts: np.ndarray, edges: np.ndarray, signal_shape: np.ndarray, *,
                               family: str = "dijet", n_params: int = 4, sqrt_s: float = SQRT_S,
                               start: DijetFit | None = None) -> dict:
    """Binned Poisson fit of b(params) + s * signal_shape (s may be negative); returns s, its error, the fit."""
    from iminuit import Minuit

    n = np.asarray(counts, dtype=float)
    g = np.asarray(signal_shape, dtype=float)
    if g.shape != n.shape or np.any(g < 0) or not g.sum() > 0:
        raise ValueError(f"signal_shape must be >= 0, not all zero and of shape {n.shape}, got {g.shape}")
    g = g / g.sum()
    b0 = start if start is not None else fit_dijet(n, edges, sqrt_s=sqrt_s, n_params=n_params, family=family)
    e = np.asarray(edges, dtype=float)

    def mu(lnp0, exps, s):
        return np.exp(lnp0 + dijet_log_bin_integrals(e, exps, sqrt_s, family)) + s * g

    def nll(*par):
        m = mu(par[0], np.asarray(par[1:-1]), par[-1])
        if np.any(m <= 0) or not np.all(np.isfinite(m)):
            return 1e300
        return 0.5 * poisson_deviance(n, m)

    names = ["lnp0"] + [f"p{i}" for i in range(1, n_params)] + ["s"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mi = Minuit(nll, np.log(b0.params[0]), *b0.params[1:], 0.0, name=names)
        mi.errordef = Minuit.LIKELIHOOD
        mi.migrad(ncall=20000)
        mi.hesse()
    s_hat = float(mi.values["s"])
    return {"s": s_hat, "s_error": float(mi.errors["s"]), "valid": bool(mi.valid),
            "deviance": 2.0 * float(mi.fval), "deviance_background_only": b0.deviance}


def spurious_signal(template: np.ndarray, edges: np.ndarray, windows: list[tuple[int, int]], *,
                    family: str = "dijet", n_params: int = 4, sqrt_s: float = SQRT_S,
                    scale_to: float | None = None) -> list[dict]:
    """Spurious signal of each window [lo_bin, hi_bin) on a background-only template (e.g. a large MC sample).

    The template is fitted with b + s * box(window); s (scaled by `scale_to / template.sum()` when the data set
    is smaller than the template) is the spurious signal. ``s_over_error`` compares it with the statistical
    error of s expected in a data set of `scale_to` events (error scales with sqrt of the size).
    """
    t = np.asarray(template, dtype=float)
    k = 1.0 if scale_to is None else float(scale_to) / t.sum()
    b0 = fit_dijet(t, edges, sqrt_s=sqrt_s, n_params=n_params, family=family)
    out = []
    for lo, hi in windows:
        if not 0 <= lo < hi <= t.size:
            raise ValueError(f"window [{lo}, {hi}) is outside the {t.size} bins")
        box = np.zeros(t.size)
        box[lo:hi] = 1.0
        r = fit_signal_plus_background(t, edges, box, family=family, n_params=n_params, sqrt_s=sqrt_s, start=b0)
        s, err = r["s"] * k, r["s_error"] * np.sqrt(k)
        bw = float(b0.expected[lo:hi].sum()) * k
        out.append({"lo_bin": int(lo), "hi_bin": int(hi), "m_lo": float(edges[lo]), "m_hi": float(edges[hi]),
                    "spurious_signal": s, "stat_error": err, "s_over_error": s / err if err > 0 else float("nan"),
                    "background_window": bw, "s_over_b": s / bw if bw > 0 else float("nan"), "valid": r["valid"]})
    return out


def spurious_sigma(spurious: list[dict]) -> np.ndarray:
    """|S_spur| / B_window per window: a relative uncertainty on alpha to add in quadrature to the fit's."""
    return np.array([abs(d["s_over_b"]) for d in spurious])


def envelope_scan(counts: np.ndarray, edges: np.ndarray, *, widths: tuple[int, ...] = (3, 5, 7),
                  sideband_factor: float = 1.0, families: tuple[str, ...] = ("dijet", "ua2"),
                  n_params: tuple[int, ...] = (3, 4, 5), fit_uncertainty: bool = True, sqrt_s: float = SQRT_S) -> dict:
    """Window statistic of every envelope function (each with its fit uncertainty) and their discrete-profiling
    envelope; returns the choice, the per-function and envelope t grids (NaN outside the valid windows)."""
    from l1ad.offline.bumphunt import window_grid

    n = np.asarray(counts, dtype=float)
    choice = select_function(n, edges, families=families, n_params=n_params, sqrt_s=sqrt_s)
    grid = window_grid(n.size, widths, sideband_factor)
    n_w, n_s = grid.sums(n)
    t_by = {}
    for key in choice.envelope:
        fit = choice.fits[key]
        mu_w, mu_s = grid.sums(fit.expected)
        alpha = np.where(grid.valid & (mu_s > 0), mu_w / np.where(mu_s > 0, mu_s, 1.0), 1.0)
        sig = np.nan_to_num(ln_alpha_sigma(fit, grid), nan=0.0) if fit_uncertainty else np.zeros(alpha.shape)
        t_by[key] = np.where(grid.valid, profile_t_syst(n_w, n_s, alpha, np.where(grid.valid, sig, 0.0)), np.nan)
    t_env = envelope_t(t_by, choice)
    return {"choice": choice, "grid": grid, "t": {f"{k[0]}-{k[1]}p": v for k, v in t_by.items()}, "t_envelope": t_env,
            "t_max_envelope": float(np.nanmax(t_env))}
