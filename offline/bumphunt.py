"""Sliding-window bump hunt with the profile-likelihood statistic and look-elsewhere-corrected global p-values.

For a window W(m0) of width Delta centred at m0 and adjacent sidebands S(m0), with counts n_W and n_S, the
background-only hypothesis fixes the ratio of expected counts mu_W / mu_S = alpha (the transfer factor, here
from a smooth fit of the falling spectrum or from a user-given template or number) and leaves the overall
normalisation free. Profiling it out of the two Poisson likelihoods, with a signal s >= 0 allowed in W, gives
(review chapter, "Bump Hunting: A Classical Paradigm")::

    t(m0) = 2 [ n_W ln( n_W (alpha+1) / (alpha (n_W + n_S)) ) + n_S ln( n_S (alpha+1) / (n_W + n_S) ) ]

and t = 0 when n_W <= alpha n_S (one-sided: only excesses). 0 ln 0 = 0, so zero counts are finite.

Asymptotically t ~ (1/2) chi2_0 + (1/2) chi2_1 under H0, so the local p-value is p = P(chi2_1 > t) / 2 =
Phi(-sqrt(t)) for t > 0 (p = 1 at t = 0) and the local significance Z = sqrt(t).

`scan` slides windows of several widths (in bins) over a histogram. The windows form a 2-D grid (width x
centre bin); the global p-value of the largest t is computed

* from background-only toys: Poisson fluctuations of the fitted (or given) background, scanned the same way;
* with Gross-Vitells (one width: a 1-D scan) from the mean number of upcrossings of a low level u0;
* with the Euler-characteristic formula of random-field theory (several widths: a 2-D scan over centre x width),
  the EC-density coefficients estimated from the mean Euler characteristic of low-threshold excursion sets in a
  few toys (Vitells & Gross 2011). See `offline.lee`.

Window geometry for width w (bins) at centre index k: bins [k - w//2, k - w//2 + w); sidebands of
``max(1, ceil(sideband_factor * w))`` bins on each side. With ``full_sidebands`` (default) a window is scanned
only if both sidebands fit inside the histogram; otherwise truncated sidebands are allowed (at least one bin).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy import special, stats

from l1ad.offline import lee
from l1ad.offline.fit import SQRT_S, DijetFit, fit_dijet

__all__ = [
    "BumpHuntConfig",
    "BumpHuntResult",
    "local_pvalue",
    "profile_t",
    "scan",
    "scan_events",
    "window_grid",
]


# ---------------------------------------------------------------------------------------------- statistic
def profile_t(n_w: np.ndarray | float, n_s: np.ndarray | float, alpha: np.ndarray | float) -> np.ndarray:
    """The sliding-window profile-likelihood statistic t(m0) (vectorised, broadcasting).

    Exactly 0 where ``n_w <= alpha * n_s``; finite for zero counts (0 ln 0 = 0). Counts may be non-integer
    (weighted); they must be >= 0 and alpha must be > 0 and finite.
    """
    nw, ns, a = np.broadcast_arrays(np.asarray(n_w, dtype=float), np.asarray(n_s, dtype=float), np.asarray(alpha, dtype=float))
    if np.any(nw < 0) or np.any(ns < 0):
        raise ValueError("window and sideband counts must be >= 0")
    if not (np.all(a > 0) and np.all(np.isfinite(a))):
        raise ValueError("transfer factor alpha must be finite and > 0")
    t = np.zeros(nw.shape)
    on = nw > a * ns  # implies n_w > 0, hence n_w + n_s > 0
    if np.any(on):
        w, s, al = nw[on], ns[on], a[on]
        tot = w + s
        val = 2.0 * (w * np.log(w * (al + 1.0) / (al * tot)) + special.xlogy(s, s * (al + 1.0) / tot))
        t[on] = np.maximum(val, 0.0)
    return t if t.ndim else t[()]


def local_pvalue(t: np.ndarray | float) -> np.ndarray:
    """Asymptotic one-sided local p-value: P(chi2_1 > t)/2 for t > 0, 1 for t = 0 (NaN stays NaN)."""
    t = np.asarray(t, dtype=float)
    p = np.where(t > 0, 0.5 * stats.chi2.sf(np.maximum(t, 0), 1), 1.0)
    out = np.where(np.isnan(t), np.nan, p)
    return out if out.ndim else out[()]


# ---------------------------------------------------------------------------------------------- config
class BumpHuntConfig(BaseModel):
    """Settings of a sliding-window bump hunt (`scan`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    widths: tuple[int, ...] = Field((3, 5, 7, 9), description="window widths in bins")
    sideband_factor: float = Field(1.0, gt=0, description="sideband bins per side = max(1, ceil(factor * width))")
    full_sidebands: bool = Field(True, description="scan only windows whose sidebands fit entirely")
    scan_range: tuple[float, float] | None = Field(None, description="window centres limited to [lo, hi] (GeV)")
    sqrt_s: float = Field(SQRT_S, gt=0, description="collision energy for x = m / sqrt(s) [GeV]")
    n_params: int = Field(4, ge=3, le=5, description="dijet-function parameters (3, 4 or 5)")
    family: str = Field("dijet", description="fit function family: 'dijet' or 'ua2' (offline.fit.FAMILIES)")
    fit_uncertainty: bool = Field(False, description="constrain ln alpha by the fit covariance in every window's t "
                                  "(offline.bkgsyst.profile_t_syst); toys use the same per-window sigma")
    n_toys: int = Field(1000, ge=0, description="background-only toys for the global p-value (0: none)")
    refit_toys: bool = Field(False, description="refit the dijet function in every toy (slow); else toys reuse alpha")
    n_lee_toys: int = Field(500, ge=2, description="toys (the first ones) used to estimate N(u0) and the EC coefficients")
    gv_u0: float | None = Field(None, gt=0, description="Gross-Vitells reference level u0; None: the highest level "
                                "(step 0.5) still crossed >= lee_min_mean times per toy on average")
    ec_thresholds: tuple[float, ...] | None = Field(None, description="thresholds for the EC fit; None: the 8 highest "
                                                   "levels (step 0.5) with mean EC >= lee_min_mean")
    lee_min_mean: float = Field(1.0, gt=0, description="minimum mean count per toy at the adaptive GV / EC levels")
    seed: int = 0

    @field_validator("widths")
    @classmethod
    def _widths(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(w < 1 for w in v):
            raise ValueError("widths must be a non-empty list of positive bin counts")
        if len(set(v)) != len(v):
            raise ValueError("widths must be distinct")
        return tuple(sorted(v))

    @field_validator("family")
    @classmethod
    def _family(cls, v: str) -> str:
        from l1ad.offline.fit import FAMILIES

        if v not in FAMILIES:
            raise ValueError(f"family {v!r} is not one of {sorted(FAMILIES)}")
        return v

    @field_validator("ec_thresholds")
    @classmethod
    def _thr(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is None:
            return v
        if len(v) < 2 or any(u <= 0 for u in v):
            raise ValueError("ec_thresholds needs at least two levels > 0")
        return tuple(sorted(v))


# ---------------------------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class WindowGrid:
    """Window geometry on a (n_widths, n_bins) grid: window bins [lo, hi), sidebands [slo, lo) + [hi, shi)."""

    widths: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    slo: np.ndarray
    shi: np.ndarray
    valid: np.ndarray

    def sums(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Window and sideband sums of counts (..., n_bins) -> two arrays (..., n_widths, n_bins); 0 where invalid."""
        c = np.asarray(counts, dtype=float)
        cs = np.concatenate([np.zeros(c.shape[:-1] + (1,)), np.cumsum(c, axis=-1)], axis=-1)
        lo, hi, slo, shi = (np.clip(a, 0, c.shape[-1]) for a in (self.lo, self.hi, self.slo, self.shi))
        n_w = cs[..., hi] - cs[..., lo]
        n_s = (cs[..., lo] - cs[..., slo]) + (cs[..., shi] - cs[..., hi])
        return np.where(self.valid, n_w, 0.0), np.where(self.valid, n_s, 0.0)


def window_grid(n_bins: int, widths: Sequence[int], sideband_factor: float = 1.0, full_sidebands: bool = True,
                centre_mask: np.ndarray | None = None) -> WindowGrid:
    """Windows of each width centred on every bin; `valid` marks those that fit (with their sidebands)."""
    w = np.asarray(widths, dtype=int)[:, None]
    k = np.arange(n_bins)[None, :]
    lo = k - w // 2
    hi = lo + w
    sb = np.maximum(1, np.ceil(sideband_factor * w - 1e-9).astype(int))
    slo, shi = lo - sb, hi + sb
    inside = (lo >= 0) & (hi <= n_bins)
    if full_sidebands:
        valid = inside & (slo >= 0) & (shi <= n_bins)
    else:
        valid = inside & ((lo > 0) | (hi < n_bins))
        slo, shi = np.maximum(slo, 0), np.minimum(shi, n_bins)
    if centre_mask is not None:
        valid &= np.asarray(centre_mask, dtype=bool)[None, :]
    lo, hi, slo, shi = (np.broadcast_to(a, valid.shape).copy() for a in (lo, hi, slo, shi))
    return WindowGrid(widths=w[:, 0].copy(), lo=lo, hi=hi, slo=slo, shi=shi, valid=valid)


# ---------------------------------------------------------------------------------------------- result
@dataclass
class BumpHuntResult:
    """Output of `scan`. Grids have shape (n_widths, n_bins); cells outside the scanned domain hold NaN."""

    edges: np.ndarray
    counts: np.ndarray
    widths: np.ndarray
    t: np.ndarray
    alpha: np.ndarray
    n_window: np.ndarray
    n_sideband: np.ndarray
    centres: np.ndarray
    window_lo: np.ndarray
    window_hi: np.ndarray
    valid: np.ndarray
    background: np.ndarray | None
    fit: DijetFit | None
    config: BumpHuntConfig
    t_max: float
    best: dict
    global_p_toys: float | None = None
    t_max_toys: np.ndarray | None = field(default=None, repr=False)
    global_p_gv: float | None = None
    gv: dict | None = None
    global_p_ec: float | None = None
    ec: dict | None = None
    sigma_ln_alpha: np.ndarray | None = field(default=None, repr=False)

    @property
    def local_p(self) -> np.ndarray:
        return local_pvalue(self.t)

    @property
    def local_z(self) -> np.ndarray:
        return np.sqrt(self.t)

    @property
    def z_local_max(self) -> float:
        return math.sqrt(self.t_max)

    @property
    def global_z_toys(self) -> float | None:
        return None if self.global_p_toys is None else _z(self.global_p_toys)

    @property
    def global_z_gv(self) -> float | None:
        return None if self.global_p_gv is None else _z(self.global_p_gv)

    @property
    def global_z_ec(self) -> float | None:
        return None if self.global_p_ec is None else _z(self.global_p_ec)

    @property
    def global_p_asymptotic(self) -> float | None:
        """The random-field estimate that applies: Gross-Vitells for one width, Euler characteristic for several."""
        return self.global_p_gv if self.global_p_gv is not None else self.global_p_ec

    def global_p_curve(self, u: np.ndarray) -> dict[str, np.ndarray]:
        """Global p-value versus level u: toys (empirical), Gross-Vitells and/or EC where available."""
        u = np.asarray(u, dtype=float)
        out: dict[str, np.ndarray] = {}
        if self.t_max_toys is not None and self.t_max_toys.size:
            tt = np.sort(self.t_max_toys)
            out["toys"] = (tt.size - np.searchsorted(tt, u, side="left")) / tt.size
        if self.gv is not None:
            out["gross_vitells"] = lee.gross_vitells(u, self.gv["u0"], self.gv["n_u0"], 1, one_sided=True)
        if self.ec is not None:
            out["euler_characteristic"] = lee.ec_global_pvalue(u, np.array(self.ec["coefficients"]), dof=1, one_sided=True,
                                                              ec_domain=self.ec["ec_domain"])
        return out

    def summary(self) -> dict:
        """JSON-ready summary (no per-toy arrays)."""
        def f(x):
            return None if x is None else float(x)

        return {
            "t_max": self.t_max,
            "z_local": self.z_local_max,
            "p_local": float(local_pvalue(self.t_max)),
            "best_window": self.best,
            "global": {
                "toys": {"p": f(self.global_p_toys), "z": f(self.global_z_toys),
                         "n_toys": 0 if self.t_max_toys is None else int(self.t_max_toys.size),
                         "is_bound": bool(self.t_max_toys is not None and self.t_max_toys.size and not np.any(self.t_max_toys >= self.t_max))},
                "gross_vitells": None if self.gv is None else {"p": f(self.global_p_gv), "z": f(self.global_z_gv), **self.gv},
                "euler_characteristic": None if self.ec is None else {"p": f(self.global_p_ec), "z": f(self.global_z_ec), **self.ec},
            },
            "fit": None if self.fit is None else self.fit.to_dict(),
            "limits_best_window": self.best_window_limits(),
            "config": self.config.model_dump(mode="json"),
        }

    def best_window_limits(self, cl: float = 0.95) -> dict:
        """Asymptotic CLs limits on the best window's signal and its Asimov 3/5 sigma yields (offline.limits)."""
        from l1ad.offline.limits import window_limits

        b = self.best
        j = int(np.flatnonzero(self.widths == b["width_bins"])[0])
        sig = 0.0 if self.sigma_ln_alpha is None else float(self.sigma_ln_alpha[j, b["centre_bin"]])
        try:
            return {**window_limits(b["n_window"], b["n_sideband"], b["alpha"], sig, cl), "sigma_ln_alpha": sig}
        except (RuntimeError, ValueError) as exc:  # a limit that cannot be bracketed must not break the summary
            return {"error": f"no CLs limit for the best window: {exc}", "sigma_ln_alpha": sig}

    def to_dict(self) -> dict:
        """Summary plus the scan grids (NaN -> None) for plotting elsewhere."""
        def grid(a):
            return [[None if not np.isfinite(v) else float(v) for v in row] for row in np.asarray(a, dtype=float)]

        d = self.summary()
        d["scan"] = {
            "edges": self.edges.tolist(), "counts": self.counts.tolist(), "widths": self.widths.tolist(),
            "centres": grid(self.centres), "t": grid(self.t), "alpha": grid(self.alpha),
            "background": None if self.background is None else self.background.tolist(),
        }
        return d


def _z(p: float) -> float:
    return float(stats.norm.isf(min(max(p, 1e-300), 1.0)))


# ---------------------------------------------------------------------------------------------- scan
def _t_field(counts: np.ndarray, grid: WindowGrid, alpha: np.ndarray, sigma: np.ndarray | None = None) -> np.ndarray:
    n_w, n_s = grid.sums(counts)
    a = np.where(grid.valid, alpha, 1.0)
    if sigma is None:
        t = profile_t(n_w, n_s, a)
    else:
        from l1ad.offline.bkgsyst import profile_t_syst

        t = profile_t_syst(n_w, n_s, a, np.where(grid.valid, sigma, 0.0))
    return np.where(grid.valid, t, np.nan)


def _alpha_from(expected: np.ndarray, grid: WindowGrid) -> np.ndarray:
    mu_w, mu_s = grid.sums(expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = mu_w / mu_s
    return np.where(grid.valid, a, np.nan)


def scan(hist_counts: np.ndarray, edges: np.ndarray, *, config: BumpHuntConfig | None = None,
         alpha: float | np.ndarray | None = None, background: np.ndarray | None = None,
         fit_mask: np.ndarray | None = None, **overrides) -> BumpHuntResult:
    """Sliding-window bump hunt over a histogram.

    Parameters
    ----------
    hist_counts, edges
        The observed histogram (counts per bin, n_bins + 1 edges in GeV).
    config, **overrides
        A `BumpHuntConfig`; keyword overrides (e.g. ``widths=(5,), n_toys=500``) replace its fields.
    alpha
        Transfer factor(s) mu_W / mu_S: a number (all windows) or an array (n_widths, n_bins). If omitted it is
        computed from `background`, or else from a dijet-function fit of the histogram.
    background
        Expected background counts per bin (a template). Used for alpha (unless given) and for the toys.
    fit_mask
        Bins entering the dijet fit (default: all).

    The toys are Poisson fluctuations of `background` if given, else of the dijet fit (which is then performed
    even when `alpha` is given). Toys reuse the nominal alpha unless ``refit_toys``.
    """
    base = config or BumpHuntConfig()
    cfg = BumpHuntConfig.model_validate({**base.model_dump(), **overrides}) if overrides else base
    counts = np.asarray(hist_counts, dtype=float)
    e = np.asarray(edges, dtype=float)
    if counts.ndim != 1 or e.shape != (counts.size + 1,):
        raise ValueError(f"need 1-D counts and len(counts)+1 edges; got counts {counts.shape}, edges {e.shape}")
    if not np.all(np.diff(e) > 0):
        raise ValueError("edges must be strictly increasing")
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ValueError("counts must be finite and >= 0")
    nb = counts.size
    mids = 0.5 * (e[:-1] + e[1:])
    centre_mask = None
    if cfg.scan_range is not None:
        lo_m, hi_m = cfg.scan_range
        centre_mask = (mids >= lo_m) & (mids <= hi_m)
    grid = window_grid(nb, cfg.widths, cfg.sideband_factor, cfg.full_sidebands, centre_mask)
    if not grid.valid.any():
        raise ValueError(f"no window of widths {cfg.widths} (with sidebands, factor {cfg.sideband_factor}) fits in {nb} bins")

    fit = None
    bkg = None if background is None else np.asarray(background, dtype=float)
    if bkg is not None and (bkg.shape != counts.shape or np.any(bkg < 0) or not np.all(np.isfinite(bkg))):
        raise ValueError(f"background must be finite, >= 0 and of shape {counts.shape}")
    need_fit = bkg is None and (alpha is None or cfg.n_toys > 0 or cfg.fit_uncertainty)
    if need_fit:
        fit = fit_dijet(counts, e, sqrt_s=cfg.sqrt_s, n_params=cfg.n_params, mask=fit_mask, family=cfg.family)
    if cfg.fit_uncertainty and fit is None:
        raise ValueError("fit_uncertainty needs the dijet fit: it does not apply with a given background template")
    expected = bkg if bkg is not None else (fit.expected if fit is not None else None)

    if alpha is None:
        a = _alpha_from(expected, grid)
    else:
        a = np.broadcast_to(np.asarray(alpha, dtype=float), grid.valid.shape).copy()
        a[~grid.valid] = np.nan
    bad = grid.valid & ~(np.isfinite(a) & (a > 0))
    if bad.any():
        raise ValueError(f"transfer factor not finite and > 0 in {int(bad.sum())} window(s) (empty background sidebands?)")

    sigma = None
    if cfg.fit_uncertainty:
        from l1ad.offline.bkgsyst import ln_alpha_sigma

        sigma = np.where(grid.valid, np.nan_to_num(ln_alpha_sigma(fit, grid), nan=0.0), 0.0)
    t = _t_field(counts, grid, a, sigma)
    n_w, n_s = grid.sums(counts)
    t_max = float(np.nanmax(t))
    j, k = np.unravel_index(np.nanargmax(t), t.shape)
    lo_b, hi_b = int(grid.lo[j, k]), int(grid.hi[j, k])
    best = {
        "width_bins": int(grid.widths[j]), "centre_bin": int(k), "lo_bin": lo_b, "hi_bin": hi_b,
        "m_lo": float(e[lo_b]), "m_hi": float(e[hi_b]), "m0": float(0.5 * (e[lo_b] + e[hi_b])),
        "sideband_lo": float(e[int(grid.slo[j, k])]), "sideband_hi": float(e[int(grid.shi[j, k])]),
        "n_window": float(n_w[j, k]), "n_sideband": float(n_s[j, k]), "alpha": float(a[j, k]),
        "background_window": float(a[j, k] * n_s[j, k]), "signal_estimate": float(n_w[j, k] - a[j, k] * n_s[j, k]),
        "t": t_max, "z_local": math.sqrt(t_max), "p_local": float(local_pvalue(t_max)),
    }
    centres = np.where(grid.valid, 0.5 * (e[np.clip(grid.lo, 0, nb)] + e[np.clip(grid.hi, 0, nb)]), np.nan)
    res = BumpHuntResult(
        edges=e, counts=counts, widths=grid.widths, t=t, alpha=a, n_window=np.where(grid.valid, n_w, np.nan),
        n_sideband=np.where(grid.valid, n_s, np.nan), centres=centres,
        window_lo=np.where(grid.valid, e[np.clip(grid.lo, 0, nb)], np.nan),
        window_hi=np.where(grid.valid, e[np.clip(grid.hi, 0, nb)], np.nan),
        valid=grid.valid, background=expected, fit=fit, config=cfg, t_max=t_max, best=best, sigma_ln_alpha=sigma,
    )
    if cfg.n_toys > 0:
        _toys(res, grid, expected, a, cfg, fit_mask)
    return res


def _toys(res: BumpHuntResult, grid: WindowGrid, expected: np.ndarray, alpha: np.ndarray, cfg: BumpHuntConfig,
          fit_mask: np.ndarray | None) -> None:
    rng = np.random.default_rng(cfg.seed)
    n_toys = cfg.n_toys
    t_fields = np.empty((n_toys,) + grid.valid.shape)
    chunk = max(1, 2_000_000 // max(1, grid.valid.size))
    for start in range(0, n_toys, chunk):
        stop = min(n_toys, start + chunk)
        toys = rng.poisson(expected, size=(stop - start, expected.size)).astype(float)
        if cfg.refit_toys:
            for i, c in enumerate(toys):
                f = fit_dijet(c, res.edges, sqrt_s=cfg.sqrt_s, n_params=cfg.n_params, mask=fit_mask,
                              start=res.fit.params[1:] if res.fit else None, family=cfg.family)
                t_fields[start + i] = _t_field(c, grid, _alpha_from(f.expected, grid), res.sigma_ln_alpha)
        else:
            t_fields[start:stop] = _t_field(toys, grid, alpha, res.sigma_ln_alpha)
    t_max_toys = np.nanmax(t_fields.reshape(n_toys, -1), axis=1)
    res.t_max_toys = t_max_toys
    res.global_p_toys = lee.toy_global_pvalue(res.t_max, t_max_toys)

    lee_fields = t_fields[: min(cfg.n_lee_toys, n_toys)]
    if lee_fields.shape[0] < 2:
        return
    rows = np.flatnonzero(grid.valid.any(axis=1))
    if rows.size == 1:
        # 1-D scan: Gross-Vitells with the mean number of upcrossings of u0 along the centre axis
        line = lee_fields[:, rows[0], :]
        u0 = cfg.gv_u0 if cfg.gv_u0 is not None else float(
            lee.highest_levels(line, 1, statistic="upcrossings", min_mean=cfg.lee_min_mean)[0])
        n_u0 = float(lee.count_upcrossings(line, u0).mean())
        res.gv = {"u0": u0, "n_u0": n_u0, "n_lee_toys": int(line.shape[0]), "dof": 1, "one_sided": True}
        res.global_p_gv = float(lee.gross_vitells(res.t_max, u0, n_u0, 1, one_sided=True))
        dim = 1
        fields = line
    else:
        dim = 2
        fields = lee_fields
    if cfg.ec_thresholds is not None:
        thr = np.asarray(cfg.ec_thresholds, dtype=float)
    else:
        thr = lee.highest_levels(fields, dim, statistic="ec", min_mean=cfg.lee_min_mean, n_levels=8)
    mean_ec = lee.mean_euler_characteristic(fields, thr, ndim=dim)
    domain = grid.valid[rows[0]] if dim == 1 else grid.valid
    ec_domain = float(lee.euler_characteristic(domain, ndim=dim))
    coef = lee.fit_ec_coefficients(thr, mean_ec, dof=1, dim=dim, one_sided=True, ec_domain=ec_domain)
    res.ec = {"dim": dim, "thresholds": thr.tolist(), "mean_ec": mean_ec.tolist(), "coefficients": coef.tolist(),
              "ec_domain": ec_domain, "n_lee_toys": int(fields.shape[0]), "dof": 1, "one_sided": True}
    res.global_p_ec = float(lee.ec_global_pvalue(res.t_max, coef, dof=1, one_sided=True, ec_domain=ec_domain))


def scan_events(m: np.ndarray, edges: np.ndarray, *, weights: np.ndarray | None = None, **kwargs) -> BumpHuntResult:
    """Histogram the values `m` (e.g. an EventBatch's offline 'mjj') into `edges` and run `scan`.

    Values <= 0 (the EventBatch convention for "not defined") are dropped.
    """
    m = np.asarray(m, dtype=float)
    keep = m > 0
    w = None if weights is None else np.asarray(weights, dtype=float)[keep]
    counts, _ = np.histogram(m[keep], bins=np.asarray(edges, dtype=float), weights=w)
    return scan(counts, edges, **kwargs)


def falling_spectrum(edges: np.ndarray, n_events: float, *, params: Sequence[float] = (1.0, 10.0, 5.0, 0.0),
                     sqrt_s: float = SQRT_S, bump: tuple[float, float, float] | None = None) -> np.ndarray:
    """Expected counts of a dijet-function spectrum normalised to `n_events`, plus an optional Gaussian bump
    (mass, sigma, n_signal). A test and benchmark helper."""
    from l1ad.offline.fit import dijet_log_bin_integrals

    e = np.asarray(edges, dtype=float)
    lg = dijet_log_bin_integrals(e, np.asarray(params[1:], dtype=float), sqrt_s)
    mu = np.exp(lg - special.logsumexp(lg)) * n_events
    if bump is not None:
        m0, sigma, ns = bump
        mu = mu + ns * np.diff(stats.norm.cdf(e, m0, sigma))
    return mu

