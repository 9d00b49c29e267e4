"""NPLM with nuisance parameters (d'Agnolo, Grosso, Pierini, Wulzer, Zanetti, "Learning new physics from an
imperfect machine", 2111.13633), in its simplest form: the NN learner, nuisances entering through a
quadratic log-ratio per event, Gaussian auxiliary measurements.

The reference hypothesis depends on nuisances nu (in units of their prior sigma, measured by auxiliary data
A ~ N(nu, 1)):

    n(x | R_nu) = n(x | R_0) exp r(x; nu),      r(x; nu) ~ sum_k [ nu_k a1_k(x) + nu_k^2 a2_k(x) ],

with a1, a2 from the exact log-ratio at nu_k = +-1 (a1 = (r(+1) - r(-1)) / 2, a2 = (r(+1) + r(-1)) / 2). The
alternative multiplies it by e^{f(x; w)} (the clipped network of `offline.nplm`). With

    G(nu, f) = - sum_R w_R (e^{f + r(nu)} - 1) + sum_D (f + r(nu)) - |nu - A|^2 / 2

(the extended log-likelihood ratio to nu = 0, f = 0, plus the auxiliary term), the test statistic is

    t = tau - Delta,   tau = 2 max_{nu, w} G(nu, f_w),   Delta = 2 max_nu G(nu, 0),

asymptotically chi2 with dof = the network's parameters, whatever the true nu: a data set whose only
difference from the reference is a nuisance shift costs Delta as much as tau. Without the nuisances
(`offline.nplm`) such a shift counts as new physics.

Built-in nuisances: `normalization(sigma)` (r = nu ln(1 + sigma), exactly linear) and `scale(sigma, log_density)`
(features multiplied by (1 + sigma)^nu; needs the reference's log-density, e.g. analytic or a KDE). Toys
(`null_toys`) draw data from the reference reweighted to the nuisances' values (default nominal) and the
auxiliary A from N(nu_true, 1), on Dask.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from l1ad.offline.nplm import NPLMConfig, NumpyNet, nplm_loss, toy_split

__all__ = ["Nuisance", "normalization", "scale", "expansion", "fit_syst", "null_toys", "toy_task"]


@dataclass
class Nuisance:
    """log_ratio(X, nu) = log n(x | R_nu) / n(x | R_0) for nu in units of the prior sigma (raw feature units)."""

    name: str
    log_ratio: Callable[[np.ndarray, float], np.ndarray]


def normalization(sigma: float, name: str = "normalization") -> Nuisance:
    """Total rate uncertain by a relative sigma: n(x | R_nu) = (1 + sigma)^nu n(x | R_0)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    return Nuisance(name, lambda X, nu: np.full(len(X), nu * math.log1p(sigma)))


def scale(sigma: float, log_density: Callable[[np.ndarray], np.ndarray], columns: Sequence[int] | None = None,
          name: str = "scale") -> Nuisance:
    """The features in `columns` (all by default) multiplied by s = (1 + sigma)^nu: x' = s x has density
    n_0(x' / s) / s^k, so r(x; nu) = log n_0(x / s) - k log s - log n_0(x). `log_density(X)` is the reference's
    log-density (up to a constant)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")

    def r(X: np.ndarray, nu: float) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        cols = list(range(X.shape[1])) if columns is None else list(columns)
        s = (1.0 + sigma) ** nu
        Xs = X.copy()
        Xs[:, cols] = X[:, cols] / s
        return log_density(Xs) - len(cols) * math.log(s) - log_density(X)

    return Nuisance(name, r)


def expansion(X: np.ndarray, nuisances: Sequence[Nuisance]) -> tuple[np.ndarray, np.ndarray]:
    """(a1, a2), each (N, k): r(x; nu) ~ sum_k nu_k a1_k + nu_k^2 a2_k through nu_k = -1, 0, +1."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    up = np.column_stack([np.asarray(n.log_ratio(X, 1.0), dtype=np.float64) for n in nuisances])
    dn = np.column_stack([np.asarray(n.log_ratio(X, -1.0), dtype=np.float64) for n in nuisances])
    if not (np.all(np.isfinite(up)) and np.all(np.isfinite(dn))):
        raise ValueError("a nuisance log-ratio is not finite on these events")
    return 0.5 * (up - dn), 0.5 * (up + dn)


def _r(a1: np.ndarray, a2: np.ndarray, nu: np.ndarray) -> np.ndarray:
    return a1 @ nu + a2 @ (nu * nu)


def _fit_delta(a1, a2, is_ref, w, A) -> tuple[float, np.ndarray]:
    """min over nu of L0 = sum_R w (e^r - 1) - sum_D r + |nu - A|^2 / 2 (Newton-free: L-BFGS on k numbers)."""
    from scipy.optimize import minimize

    def fun(nu):
        r = _r(a1, a2, nu)
        loss, g = nplm_loss(r, is_ref, w)
        return loss + 0.5 * float(np.sum((nu - A) ** 2)), a1.T @ g + 2.0 * nu * (a2.T @ g) + (nu - A)

    res = minimize(fun, np.zeros(len(A)), jac=True, method="L-BFGS-B", bounds=[(-10.0, 10.0)] * len(A),
                   options={"ftol": 1e-13, "gtol": 1e-8, "maxiter": 1000})
    return float(res.fun), res.x


def _fit_tau(Z, a1, a2, is_ref, w, A, nu0, cfg: NPLMConfig, seed: int) -> tuple[float, np.ndarray, NumpyNet, dict]:
    """min over (network weights, nu) of sum_R w (e^{f + r} - 1) - sum_D (f + r) + |nu - A|^2 / 2."""
    from scipy.optimize import minimize

    net = NumpyNet([Z.shape[1], *cfg.hidden, 1])
    n, k = net.n_params, len(A)

    def fun(x):
        theta, nu = x[:n], x[n:]
        f, acts = net.forward(Z, theta)
        loss, g = nplm_loss(f + _r(a1, a2, nu), is_ref, w)
        g_nu = a1.T @ g + 2.0 * nu * (a2.T @ g) + (nu - A)
        return loss + 0.5 * float(np.sum((nu - A) ** 2)), np.concatenate([net.backward(theta, acts, g), g_nu])

    rng = np.random.default_rng(seed)
    bounds = net.bounds(cfg.weight_clip) + [(-10.0, 10.0)] * k
    best = None
    for _ in range(cfg.restarts):
        x0 = np.concatenate([np.clip(net.init(rng), -cfg.weight_clip, cfg.weight_clip), nu0])
        r = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                     options={"maxiter": cfg.max_iter, "maxfun": 2 * cfg.max_iter, "ftol": 1e-11, "gtol": 1e-6})
        if best is None or r.fun < best.fun:
            best = r
    net.theta = best.x[:n]
    return float(best.fun), best.x[n:], net, {"iterations": int(best.nit), "converged": bool(best.success)}


def fit_syst(X_ref: np.ndarray, X_data: np.ndarray, nuisances: Sequence[Nuisance] | None = None, cfg: NPLMConfig | None = None,
             *, n_expected: float, aux: Sequence[float] | None = None, w_ref: np.ndarray | None = None,
             expansions: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None, seed: int | None = None) -> dict:
    """t = tau - Delta for data against the reference with nuisances (extended: N(SM) = n_expected at nu = 0).

    aux: the auxiliary measurements A (units of sigma; default 0 = the nominal values). `expansions` =
    (a1_ref, a2_ref, a1_data, a2_data) replaces `nuisances` when the expansion is already computed (toys).
    Returns t, tau, Delta, the fitted nu under both hypotheses, and the network's parameter count."""
    cfg = NPLMConfig(model="nn") if cfg is None else cfg
    X_ref = np.asarray(X_ref, dtype=np.float64).reshape(len(X_ref), -1)
    X_data = np.asarray(X_data, dtype=np.float64).reshape(len(X_data), -1)
    if X_ref.shape[1] != X_data.shape[1]:
        raise ValueError(f"X_ref and X_data must have equal d, got {X_ref.shape}, {X_data.shape}")
    if expansions is None:
        if not nuisances:
            raise ValueError("give the nuisances (or their expansions)")
        a1r, a2r = expansion(X_ref, nuisances)
        a1d, a2d = expansion(X_data, nuisances)
    else:
        a1r, a2r, a1d, a2d = (np.asarray(a, dtype=np.float64) for a in expansions)
    k = a1r.shape[1]
    A = np.zeros(k) if aux is None else np.asarray(aux, dtype=np.float64).reshape(k)
    wr = np.full(len(X_ref), float(n_expected) / len(X_ref)) if w_ref is None else \
        np.asarray(w_ref, dtype=np.float64) * float(n_expected) / np.sum(w_ref)
    mu = np.average(X_ref, axis=0, weights=wr)
    sd = np.sqrt(np.average((X_ref - mu) ** 2, axis=0, weights=wr)) + 1e-12
    Z = (np.concatenate([X_ref, X_data]) - mu) / sd
    a1, a2 = np.concatenate([a1r, a1d]), np.concatenate([a2r, a2d])
    is_ref = np.concatenate([np.ones(len(X_ref), bool), np.zeros(len(X_data), bool)])
    w = np.concatenate([wr, np.ones(len(X_data))])
    t0 = time.perf_counter()
    L0, nu0 = _fit_delta(a1, a2, is_ref, w, A)
    seed = cfg.seed if seed is None else seed
    L1, nu1, net, info = _fit_tau(Z, a1, a2, is_ref, w, A, nu0, cfg, seed)
    # the terms |A|^2 / 2 of the nu = 0, f = 0 baseline cancel in t
    tau, delta = -2.0 * (L1 - 0.5 * float(A @ A)), -2.0 * (L0 - 0.5 * float(A @ A))
    return {"t": tau - delta, "tau": tau, "delta": delta, "nu_null": nu0.tolist(), "nu_alt": nu1.tolist(),
            "aux": A.tolist(), "n_params": net.n_params, "seconds": time.perf_counter() - t0, **info}


def toy_task(seed: int, X_ref: np.ndarray, a1: np.ndarray, a2: np.ndarray, n_expected: float, cfg_json: str,
             nu_true: Sequence[float] | None = None, plain: bool = False) -> dict:
    """One toy (module level, for Dask): data drawn from the reference reweighted by exp r(x; nu_true) (a
    Poisson number with mean N(SM) e^{r} summed), the rest as reference, A ~ N(nu_true, 1); `plain` adds the
    t of the NPLM without nuisances (`offline.nplm.fit`, extended) on the same data."""
    from l1ad.offline import nplm

    cfg = NPLMConfig.model_validate_json(cfg_json)
    rng = np.random.default_rng(seed)
    k = a1.shape[1]
    nu = np.zeros(k) if nu_true is None else np.asarray(nu_true, dtype=np.float64)
    wt = np.exp(_r(a1, a2, nu))
    d_idx, r_idx = toy_split(len(X_ref), n_expected * float(np.mean(wt)), rng, wt if np.any(nu != 0) else None)
    A = nu + rng.standard_normal(k)
    res = fit_syst(X_ref[r_idx], X_ref[d_idx], cfg=cfg, n_expected=n_expected, aux=A,
                   expansions=(a1[r_idx], a2[r_idx], a1[d_idx], a2[d_idx]), seed=seed)
    res["seed"] = seed
    if plain:
        res["t_plain"] = nplm.fit(X_ref[r_idx], X_ref[d_idx], cfg, n_expected=n_expected, seed=seed).t
    return res


def null_toys(X_ref: np.ndarray, nuisances: Sequence[Nuisance], cfg: NPLMConfig, *, n_expected: float, n_toys: int,
              nu_true: Sequence[float] | None = None, plain: bool = False, seed: int = 7000,
              scheduler: str | None = None, n_workers: int | None = None, client=None) -> list[dict]:
    """`toy_task` for `n_toys` seeds on Dask (the nuisance expansion is computed once on the reference)."""
    from l1ad.offline.toys_dask import map_toys

    X_ref = np.asarray(X_ref, dtype=np.float64).reshape(len(X_ref), -1)
    a1, a2 = expansion(X_ref, nuisances)
    return map_toys(toy_task, [seed + i for i in range(n_toys)], shared={"X_ref": X_ref, "a1": a1, "a2": a2},
                    scheduler=scheduler, n_workers=n_workers, client=client, n_expected=float(n_expected),
                    cfg_json=cfg.model_dump_json(), nu_true=None if nu_true is None else [float(x) for x in nu_true],
                    plain=bool(plain))
