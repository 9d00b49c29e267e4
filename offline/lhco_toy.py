"""A fast synthetic LHCO-like dijet sample: m_JJ, two large-R jet masses, their tau21, and a resonant signal.

This is a stand-in for the LHCO R&D data set (QCD dijets + W'(3.5 TeV) -> X(500 GeV) Y(100 GeV), X, Y -> qq)
so that the weak-supervision methods, NPLM and the discovery reach can be developed and tested in seconds.
It is not a physics simulation; its shapes were chosen to reproduce the qualitative features that matter:

* background m_JJ: a smooth falling dijet spectrum p(x) ~ (1 - x)^a / x^b (x = m_JJ / sqrt(s)) times a
  trigger-like turn-on at 2.5 TeV (negligible above 2.9 TeV); about 11 % of it falls in the signal region 3.3-3.7 TeV (LHCO: ~12 %);
* background jets: mass ~ pT^0.5 times a log-normal factor, pT ~ m_JJ / 2, so jet masses grow slowly with m_JJ
  (the mild feature/m_JJ correlation that makes CWoLa hunting and CATHODE non-trivial); tau21 from a Beta
  distribution whose mean falls with the jet's rho (heavier QCD jets look a little more two-pronged);
* signal: m_JJ a narrow Gaussian core at 3.5 TeV with a low-mass tail (~81 % inside the signal region, LHCO
  ~77 %), jet masses 500 and 100 GeV with 10-12 % resolution, tau21 ~ 0.38 (two prongs), and a fraction of
  jets that lost a prong (lower mass, QCD-like tau21).

With the defaults a fully supervised BDT reaches a maximum SIC of ~20 in the signal region (eff_B floor
2.5e-4), close to the ~18 quoted for the LHCO R&D set, so weak supervision is neither trivial nor hopeless.

Injected signal is counted as in the CATHODE paper: S/B is signal over background inside the signal region.
"""
from __future__ import annotations

import functools

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import ndtr

from l1ad.offline.dijet import SIGNAL_REGION, DijetSample

SQRT_S = 13000.0


class ToyConfig(BaseModel):
    """Shape parameters of the synthetic dijet sample (GeV)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mjj_range: tuple[float, float] = (1800.0, 7000.0)
    signal_region: tuple[float, float] = SIGNAL_REGION
    # background m_JJ: (1-x)^a / x^b times a turn-on Phi((m - turn_on) / turn_on_width)
    bkg_a: float = 6.0
    bkg_b: float = 4.0
    turn_on: float = 2500.0
    turn_on_width: float = 120.0
    # background jets
    rho_median: float = 0.045  # median m_J / pT at pT = pt_ref
    rho_log_sigma: float = 0.85
    pt_ref: float = 1500.0
    mass_pt_power: float = 0.5  # m_J ~ pT^power: how strongly jet masses follow m_JJ
    tau21_bkg_mean: float = 0.66
    tau21_bkg_slope: float = 0.07  # mean tau21 falls by this per unit sigma of log rho
    tau21_concentration: float = 7.0
    # signal
    m_res: float = 3500.0
    m_res_width: float = 110.0
    low_tail_fraction: float = 0.2
    low_tail_mean: float = 3250.0
    low_tail_width: float = 350.0
    m_x: float = 500.0
    m_y: float = 100.0
    jet_mass_resolution: tuple[float, float] = (0.10, 0.12)  # relative, for the X and Y jets
    tau21_sig_mean: float = 0.38
    lost_prong_fraction: float = 0.15
    n_cdf_grid: int = Field(20001, ge=1001)


DEFAULT = ToyConfig()


# ---------------------------------------------------------------------- m_JJ sampling
def _bkg_pdf(m: np.ndarray, cfg: ToyConfig) -> np.ndarray:
    x = m / SQRT_S
    return (1.0 - x) ** cfg.bkg_a / x**cfg.bkg_b * ndtr((m - cfg.turn_on) / cfg.turn_on_width)


@functools.lru_cache(maxsize=16)
def _bkg_cdf(cfg: ToyConfig) -> tuple[np.ndarray, np.ndarray]:
    m = np.linspace(*cfg.mjj_range, cfg.n_cdf_grid)
    p = _bkg_pdf(m, cfg)
    c = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(m))])
    return m, c / c[-1]


def background_mjj_fraction(lo: float, hi: float, cfg: ToyConfig = DEFAULT) -> float:
    """Fraction of the background m_JJ spectrum in [lo, hi)."""
    m, c = _bkg_cdf(cfg)
    return float(np.interp(hi, m, c) - np.interp(lo, m, c))


def sample_background_mjj(n: int, rng: np.random.Generator, cfg: ToyConfig = DEFAULT, mjj_range: tuple[float, float] | None = None) -> np.ndarray:
    m, c = _bkg_cdf(cfg)
    lo, hi = mjj_range or cfg.mjj_range
    u = rng.uniform(np.interp(lo, m, c), np.interp(hi, m, c), size=n)
    return np.interp(u, c, m)


def sample_signal_mjj(n: int, rng: np.random.Generator, cfg: ToyConfig = DEFAULT, mjj_range: tuple[float, float] | None = None) -> np.ndarray:
    lo, hi = mjj_range or cfg.mjj_range
    out = np.empty(0)
    while out.size < n:
        k = max(2 * (n - out.size), 64)
        tail = rng.random(k) < cfg.low_tail_fraction
        m = np.where(tail, rng.normal(cfg.low_tail_mean, cfg.low_tail_width, k), rng.normal(cfg.m_res, cfg.m_res_width, k))
        out = np.concatenate([out, m[(m >= lo) & (m < hi)]])
    return out[:n]


# ---------------------------------------------------------------------- jets
def _beta(rng: np.random.Generator, mean: np.ndarray, kappa: float) -> np.ndarray:
    mean = np.clip(mean, 0.05, 0.95)
    return rng.beta(mean * kappa, (1.0 - mean) * kappa)


def _jet_pts(mjj: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # back-to-back jets: pT = m_JJ / (2 cosh(dy / 2)) with a modest rapidity gap
    dy = np.abs(rng.normal(0.0, 0.8, size=mjj.shape))
    return mjj / (2.0 * np.cosh(dy / 2.0))


def _bkg_jets(pt: np.ndarray, rng: np.random.Generator, cfg: ToyConfig) -> tuple[np.ndarray, np.ndarray]:
    z = rng.normal(size=pt.shape)
    rho = cfg.rho_median * np.exp(cfg.rho_log_sigma * z) * (pt / cfg.pt_ref) ** (cfg.mass_pt_power - 1.0)
    mass = np.clip(pt * rho, 5.0, 0.6 * pt)
    tau = _beta(rng, cfg.tau21_bkg_mean - cfg.tau21_bkg_slope * z, cfg.tau21_concentration)
    return mass, tau


def _sig_jets(m_true: float, res: float, n: int, rng: np.random.Generator, cfg: ToyConfig) -> tuple[np.ndarray, np.ndarray]:
    mass = m_true * (1.0 + res * rng.normal(size=n))
    tau = _beta(rng, np.full(n, cfg.tau21_sig_mean), cfg.tau21_concentration)
    lost = rng.random(n) < cfg.lost_prong_fraction
    mass = np.where(lost, mass * rng.uniform(0.15, 0.7, n), mass)
    tau = np.where(lost, _beta(rng, np.full(n, cfg.tau21_bkg_mean), cfg.tau21_concentration), tau)
    return np.clip(mass, 5.0, None), tau


def sample_background(n: int, rng: np.random.Generator | int | None = None, cfg: ToyConfig = DEFAULT,
                      mjj_range: tuple[float, float] | None = None) -> DijetSample:
    """n QCD-like background events (optionally only with m_JJ in `mjj_range`)."""
    rng = np.random.default_rng(rng)
    mjj = sample_background_mjj(n, rng, cfg, mjj_range)
    m1, t1 = _bkg_jets(_jet_pts(mjj, rng), rng, cfg)
    m2, t2 = _bkg_jets(_jet_pts(mjj, rng), rng, cfg)
    return DijetSample.build(mjj, m1, m2, t1, t2, is_signal=np.zeros(n, bool))


def sample_signal(n: int, rng: np.random.Generator | int | None = None, cfg: ToyConfig = DEFAULT,
                  mjj_range: tuple[float, float] | None = None) -> DijetSample:
    """n signal events W' -> X Y -> (qq)(qq) (optionally only with m_JJ in `mjj_range`)."""
    rng = np.random.default_rng(rng)
    mjj = sample_signal_mjj(n, rng, cfg, mjj_range)
    mx, tx = _sig_jets(cfg.m_x, cfg.jet_mass_resolution[0], n, rng, cfg)
    my, ty = _sig_jets(cfg.m_y, cfg.jet_mass_resolution[1], n, rng, cfg)
    first_is_x = rng.random(n) < 0.5  # which of the two is harder is random
    m1, m2 = np.where(first_is_x, mx, my), np.where(first_is_x, my, mx)
    t1, t2 = np.where(first_is_x, tx, ty), np.where(first_is_x, ty, tx)
    return DijetSample.build(mjj, m1, m2, t1, t2, is_signal=np.ones(n, bool))


@functools.lru_cache(maxsize=16)
def signal_sr_efficiency(cfg: ToyConfig = DEFAULT) -> float:
    """Fraction of signal events with m_JJ inside the signal region (analytic from the two Gaussians)."""
    lo, hi = cfg.signal_region
    a, b = cfg.mjj_range

    def frac(mu: float, s: float, x0: float, x1: float) -> float:
        return float(ndtr((x1 - mu) / s) - ndtr((x0 - mu) / s))

    f = cfg.low_tail_fraction
    inside = (1 - f) * frac(cfg.m_res, cfg.m_res_width, lo, hi) + f * frac(cfg.low_tail_mean, cfg.low_tail_width, lo, hi)
    total = (1 - f) * frac(cfg.m_res, cfg.m_res_width, a, b) + f * frac(cfg.low_tail_mean, cfg.low_tail_width, a, b)
    return inside / total


def n_signal_for(s_over_b: float, n_bkg: int, cfg: ToyConfig = DEFAULT) -> int:
    """Total number of signal events to inject so that the expected S/B in the signal region is `s_over_b`."""
    if s_over_b < 0:
        raise ValueError(f"s_over_b must be >= 0, got {s_over_b}")
    n_b_sr = n_bkg * background_mjj_fraction(*cfg.signal_region, cfg)
    return int(round(s_over_b * n_b_sr / signal_sr_efficiency(cfg)))


def make_dataset(n_bkg: int, s_over_b: float = 0.0, seed: int | None = 0, cfg: ToyConfig = DEFAULT, *,
                 n_signal: int | None = None) -> DijetSample:
    """A shuffled 'data' sample: n_bkg background events plus signal injected at `s_over_b` in the SR
    (or exactly `n_signal` signal events if given)."""
    rng = np.random.default_rng(seed)
    n_sig = n_signal_for(s_over_b, n_bkg, cfg) if n_signal is None else int(n_signal)
    parts = [sample_background(n_bkg, rng, cfg)]
    if n_sig:
        parts.append(sample_signal(n_sig, rng, cfg))
    return DijetSample.concat(parts).shuffled(rng)


def make_sr_test_set(n_bkg: int, n_sig: int, seed: int | None = 12345, cfg: ToyConfig = DEFAULT) -> DijetSample:
    """Labelled events inside the signal region only, for SIC curves (never used in training)."""
    rng = np.random.default_rng(seed)
    sr = cfg.signal_region
    return DijetSample.concat([sample_background(n_bkg, rng, cfg, sr), sample_signal(n_sig, rng, cfg, sr)])
