"""Look-elsewhere effect: global p-values of a scanned test-statistic field.

Three estimates of ``p_global(u) = P(max_theta t(theta) >= u | H0)`` are provided:

* **toys** (`toy_global_pvalue`): ``(1 + #{max t_toy >= u}) / (1 + n_toys)``, exact up to Monte-Carlo error;
* **Gross-Vitells** (`gross_vitells`, 1-D scans; Gross & Vitells, EPJC 70 (2010) 525)::

      p_global(u) ~= P(chi2_dof > u) + N(u0) (u / u0)^((dof-1)/2) exp(-(u - u0) / 2)

  where ``N(u0)`` is the mean number of upcrossings of the level ``u0`` (a low level, measured on a few toys);
* **Euler characteristic** (`fit_ec_coefficients`, `ec_global_pvalue`; random-field theory, Vitells & Gross,
  Astropart. Phys. 35 (2011) 230): for a D-dimensional scan ``p_global(u) ~= E[phi(A_u)]``, the mean Euler
  characteristic of the excursion set ``A_u = {theta : t(theta) >= u}``, with::

      E[phi(A_u)] = phi(M) rho_0(u) + sum_{d=1..D} N_d rho_d(u)

  ``rho_0(u) = P(chi2_dof > u)`` and, for a chi2 field with ``s = dof`` degrees of freedom (Worsley 1994), up to
  constants absorbed in the unknown coefficients ``N_d``::

      rho_1(u) ~ u^((s-1)/2) e^{-u/2},      rho_2(u) ~ u^((s-2)/2) (u - s + 1) e^{-u/2}

  The ``N_d`` (Lipschitz-Killing curvatures times the density constants) are estimated, as in Vitells & Gross,
  from the mean Euler characteristic of excursion sets at a few low thresholds in a handful of toys.

``one_sided=True`` (dof = 1 only) is for one-sided statistics such as the bump-hunt t(m0) that is 0 for a
deficit: t = max(Z, 0)^2 with Z Gaussian, so ``rho_0(u) = P(Z > sqrt(u)) = P(chi2_1 > u) / 2``; the higher
EC densities keep their form (the upcrossings of t above u are those of Z above sqrt(u)).

All approximations are clipped to [0, 1]. They are upper-bound-like, accurate for large u (small p_global);
at low u, where E[phi] need not be a probability, trust the toys.

Euler characteristics of binary sets on a lattice (`euler_characteristic`) use the cubical complex of the
pixel centres: vertices = selected pixels, edges = pairs of 4-neighbours, faces = 2x2 blocks, so
``phi = V - E + F`` = (4-connected components) - (holes), which is the lattice analogue of the continuum EC.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = [
    "chi2_tail",
    "count_upcrossings",
    "ec_basis",
    "ec_global_pvalue",
    "euler_characteristic",
    "fit_ec_coefficients",
    "gross_vitells",
    "highest_levels",
    "mean_euler_characteristic",
    "toy_global_pvalue",
]


def _check_dof(dof: int, one_sided: bool) -> int:
    if int(dof) != dof or dof < 1:
        raise ValueError(f"dof must be a positive integer, got {dof!r}")
    if one_sided and dof != 1:
        raise ValueError("one_sided applies to dof = 1 only (t = max(Z, 0)^2)")
    return int(dof)


def chi2_tail(u: np.ndarray | float, dof: int = 1, one_sided: bool = False) -> np.ndarray:
    """rho_0(u): P(chi2_dof > u), halved for a one-sided dof = 1 statistic. u <= 0 gives 1 (one-sided: 1 at u <= 0)."""
    dof = _check_dof(dof, one_sided)
    u = np.asarray(u, dtype=float)
    p = stats.chi2.sf(np.maximum(u, 0.0), dof)
    if one_sided:
        p = np.where(u > 0, 0.5 * p, 1.0)
    return p


def gross_vitells(u: np.ndarray | float, u0: float, n_u0: float, dof: int = 1, *, one_sided: bool = False) -> np.ndarray:
    """Gross-Vitells global p-value of a 1-D scan at level(s) u.

    ``p_global(u) ~= P(chi2_dof > u) + n_u0 * (u/u0)^((dof-1)/2) * exp(-(u-u0)/2)`` (first term halved when
    ``one_sided``), with ``n_u0`` the mean number of upcrossings of the reference level ``u0 > 0`` under H0
    (see `count_upcrossings`). Clipped to [0, 1].
    """
    dof = _check_dof(dof, one_sided)
    if not u0 > 0:
        raise ValueError(f"reference level u0 must be > 0, got {u0}")
    if not n_u0 >= 0:
        raise ValueError(f"mean upcrossing count n_u0 must be >= 0, got {n_u0}")
    u = np.asarray(u, dtype=float)
    uu = np.maximum(u, 0.0)
    p = chi2_tail(uu, dof, one_sided) + n_u0 * (uu / u0) ** ((dof - 1) / 2.0) * np.exp(-(uu - u0) / 2.0)
    return np.clip(p, 0.0, 1.0)


def count_upcrossings(field: np.ndarray, u: float, *, axis: int = -1) -> np.ndarray:
    """Number of upcrossings of level u along `axis`: positions i with field[i] <= u < field[i+1].

    NaN entries (points outside the scanned domain) count as below the level.
    """
    f = np.moveaxis(np.asarray(field, dtype=float), axis, -1)
    above = np.where(np.isnan(f), False, f > u)
    return (~above[..., :-1] & above[..., 1:]).sum(axis=-1)


def euler_characteristic(mask: np.ndarray, ndim: int | None = None) -> np.ndarray:
    """Euler characteristic of binary set(s) on a 1-D or 2-D lattice; leading axes are batch axes.

    ``ndim`` is the lattice dimension (default: ``mask.ndim`` if <= 2). 1-D: phi = #points - #adjacent pairs
    (= number of runs). 2-D: phi = V - E + F with 4-neighbour edges and 2x2 faces.
    """
    m = np.asarray(mask, dtype=bool)
    ndim = ndim if ndim is not None else min(m.ndim, 2)
    if ndim not in (1, 2) or m.ndim < ndim:
        raise ValueError(f"euler_characteristic supports 1-D and 2-D lattices, got ndim={ndim}, shape {m.shape}")
    if ndim == 1:
        v = m.sum(axis=-1)
        e = (m[..., 1:] & m[..., :-1]).sum(axis=-1)
        return (v - e).astype(np.int64)
    v = m.sum(axis=(-2, -1))
    e = (m[..., 1:, :] & m[..., :-1, :]).sum(axis=(-2, -1)) + (m[..., :, 1:] & m[..., :, :-1]).sum(axis=(-2, -1))
    f = (m[..., 1:, 1:] & m[..., :-1, 1:] & m[..., 1:, :-1] & m[..., :-1, :-1]).sum(axis=(-2, -1))
    return (v - e + f).astype(np.int64)


def mean_euler_characteristic(fields: np.ndarray, thresholds: np.ndarray, ndim: int) -> np.ndarray:
    """Mean over toys (axis 0) of phi({field >= u}) for each threshold u; NaN cells are outside the domain."""
    f = np.asarray(fields, dtype=float)
    finite = ~np.isnan(f)
    return np.array([euler_characteristic(finite & (np.nan_to_num(f, nan=-np.inf) >= u), ndim).mean() for u in np.atleast_1d(thresholds)])


def ec_basis(u: np.ndarray | float, dof: int = 1, dim: int = 1) -> np.ndarray:
    """The u-dependence of the EC densities rho_1..rho_dim of a chi2_dof field (constants dropped), shape (dim, len(u))."""
    dof = _check_dof(dof, False)
    if dim not in (1, 2):
        raise ValueError(f"EC densities implemented for 1-D and 2-D scans, got dim={dim}")
    u = np.atleast_1d(np.asarray(u, dtype=float))
    uu = np.maximum(u, 1e-300)
    e = np.exp(-uu / 2.0)
    rows = [uu ** ((dof - 1) / 2.0) * e]
    if dim == 2:
        rows.append(uu ** ((dof - 2) / 2.0) * (uu - dof + 1) * e)
    return np.array(rows)


def fit_ec_coefficients(thresholds: np.ndarray, mean_ec: np.ndarray, *, dof: int = 1, dim: int = 1,
                        one_sided: bool = False, ec_domain: float = 1.0) -> np.ndarray:
    """Least-squares estimate of N_1..N_dim from mean Euler characteristics measured at low thresholds.

    Solves ``mean_ec(u_i) - ec_domain * rho_0(u_i) = sum_d N_d rho_d(u_i)``; needs at least `dim` thresholds.
    ``ec_domain`` is the Euler characteristic of the scanned domain itself (1 for an interval or a disc-like region).
    """
    u = np.atleast_1d(np.asarray(thresholds, dtype=float))
    y = np.atleast_1d(np.asarray(mean_ec, dtype=float))
    if u.shape != y.shape:
        raise ValueError(f"thresholds and mean_ec differ in shape: {u.shape} vs {y.shape}")
    if u.size < dim:
        raise ValueError(f"need at least {dim} thresholds to fit {dim} EC coefficients, got {u.size}")
    if np.any(u <= 0):
        raise ValueError("EC thresholds must be > 0")
    a = ec_basis(u, dof, dim).T
    rhs = y - ec_domain * chi2_tail(u, dof, one_sided)
    coef, *_ = np.linalg.lstsq(a, rhs, rcond=None)
    return coef


def ec_global_pvalue(u: np.ndarray | float, coefficients: np.ndarray, *, dof: int = 1, one_sided: bool = False,
                     ec_domain: float = 1.0) -> np.ndarray:
    """E[phi(A_u)] = ec_domain * rho_0(u) + sum_d N_d rho_d(u), clipped to [0, 1]: the EC global p-value."""
    coef = np.atleast_1d(np.asarray(coefficients, dtype=float))
    u_arr = np.asarray(u, dtype=float)
    flat = np.atleast_1d(u_arr)
    val = ec_domain * chi2_tail(flat, dof, one_sided) + coef @ ec_basis(flat, dof, coef.size)
    out = np.clip(val, 0.0, 1.0)
    return out.reshape(u_arr.shape) if u_arr.ndim else out[0]


LEVEL_GRID = np.arange(0.5, 25.01, 0.5)


def highest_levels(fields: np.ndarray, ndim: int, *, statistic: str = "ec", min_mean: float = 1.0, n_levels: int = 1,
                   grid: np.ndarray = LEVEL_GRID) -> np.ndarray:
    """The `n_levels` highest levels of `grid` at which the toys' mean Euler characteristic (``statistic='ec'``)
    or mean number of upcrossings along the last axis (``'upcrossings'``, 1-D) is still >= `min_mean`.

    Extrapolating from the highest well-measured level keeps the lattice (roughness) bias of the Gross-Vitells
    and EC formulas small: on a binned sliding-window scan the field is not smooth, and the number of
    upcrossings falls somewhat faster than exp(-u/2); the shorter the extrapolation, the smaller the
    overestimate. Falls back to the lowest levels of the grid when no level reaches `min_mean`.
    """
    g = np.asarray(grid, dtype=float)
    if statistic == "ec":
        m = mean_euler_characteristic(fields, g, ndim)
    elif statistic == "upcrossings":
        m = np.array([count_upcrossings(fields, u).mean() for u in g])
    else:
        raise ValueError(f"statistic must be 'ec' or 'upcrossings', got {statistic!r}")
    ok = np.flatnonzero(m >= min_mean)
    if ok.size == 0:
        return g[:n_levels]
    top = ok.max()
    idx = np.arange(top - n_levels + 1, top + 1)
    return g[np.clip(idx, 0, None)][-n_levels:] if idx[0] >= 0 else g[:n_levels]


def toy_global_pvalue(t_obs: float, t_max_toys: np.ndarray) -> float:
    """(1 + #{max t in a toy >= t_obs}) / (1 + n_toys): a valid (super-uniform) Monte-Carlo p-value."""
    t = np.asarray(t_max_toys, dtype=float)
    if t.size == 0:
        raise ValueError("no toys")
    return float((1 + np.count_nonzero(t >= t_obs)) / (1 + t.size))
