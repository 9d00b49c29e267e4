"""CWoLa hunting (Collins, Howe, Nachman, 1805.02664 / 1902.02634): weak supervision inside a bump hunt.

For every hypothesised signal window in m_JJ (a sliding window of `window_bins` bins, sidebands of
`sideband_bins` bins on each side):

1. train a k-fold CWoLa classifier, window (label 1) vs sidebands (label 0), on the substructure features;
2. score every event in the fit range: events of the window and sidebands out of fold (never by a model that
   saw them), all others by one randomly chosen fold model (so all scores are of the same kind);
3. keep the `efficiency` most signal-like fraction of the events in the fit range;
4. fit the dijet function to the selected m_JJ spectrum with the window's bins blinded, take the transfer
   factor alpha = mu_W / mu_S from the fit, and evaluate the bump statistic of the selected events in that
   window with ln alpha constrained by the blinded fit's uncertainty (its covariance, propagated to ln alpha:
   ``offline.bkgsyst.profile_t_syst``; ``fit_uncertainty=False`` gives the plain ``profile_t``).

Sculpting. A classifier that can infer m_JJ from features correlated with it selects window events
preferentially even without signal, i.e. it *makes* a bump. The guards here: the background is estimated by
a smooth fit of the selected spectrum outside the window (a smooth efficiency change is absorbed); each
window reports the fit's goodness of fit (`fit_p`), and `sculpting_check` runs background-only data sets and
tests that the global p-values are uniform and the selected spectra stay smooth.

Global p-value: the windows are few and their classifiers differ, so toys with retraining are the only exact
look-elsewhere correction: `null_toys` runs whole hunts (every window retrained) on background-only samples on
Dask (`offline.toys_dask`) and `HuntResult.with_toys` turns their maximum t into the global p
``(1 + #{t_toy >= t_obs}) / (1 + n_toys)``; `hunt_toys.cwola_search` does both at several efficiency cuts (the
statistic is then the largest t over windows and cuts). The Sidak ``1 - (1 - p_min)^n_windows`` stays as a
labelled quick estimate only: on 200 background-only hunts (20k toy events, 12 windows, cuts 0.2 and 0.05, fit
uncertainty on) P(p_Sidak <= 0.05) = 0.155 +- 0.026 at efficiency 0.2 (0.130 +- 0.024 for Sidak over all 24
tests) and the local p gives P(p <= 0.05) = 0.082 +- 0.006, while the toy global p, each hunt against the
other 199, covers by construction (out/offline/coverage/cwola_merged.md, bench/coverage_offline.py).
"""
from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from l1ad.offline.bkgsyst import profile_t_syst
from l1ad.offline.bumphunt import local_pvalue, profile_t
from l1ad.offline.classify import ClassifierConfig, kfold_classify
from l1ad.offline.dijet import DijetSample
from l1ad.offline.fit import fit_dijet

#: how a global p from the Sidak correction is labelled wherever it is shown without toys
SIDAK_LABEL = "quick estimate (Sidak, can be anti-conservative)"


class HuntConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    edges: tuple[float, ...] = tuple(float(x) for x in np.arange(2900.0, 5901.0, 100.0))
    window_bins: int = Field(4, ge=1)
    sideband_bins: int = Field(2, ge=1)
    step_bins: int = Field(2, ge=1)
    first_window_lo: float | None = Field(3100.0, description="low edge of the first window (GeV); None = first that fits")
    last_window_hi: float | None = Field(None, description="windows end at or below this (GeV); None = last that fits")
    efficiency: float = Field(0.1, gt=0, le=1, description="fraction of events kept by the classifier cut")
    n_fit_params: int = Field(4, ge=3, le=5)
    fit_uncertainty: bool = Field(True, description="constrain ln alpha by the blinded fit's covariance in each window")
    classifier: ClassifierConfig = ClassifierConfig()
    seed: int = 0


def small_config(**over) -> HuntConfig:
    """CI-sized: 3 folds, 1 model per fold, 60 boosting iterations."""
    base = dict(classifier=ClassifierConfig(n_folds=3, n_ensemble=1, max_iter=60))
    base.update(over)
    return HuntConfig(**base)


@dataclass
class WindowResult:
    lo: float
    hi: float
    t: float
    z: float
    p_local: float
    n_window: float
    n_sideband: float
    alpha: float
    background_window: float
    fit_p: float
    fit_valid: bool
    sigma_ln_alpha: float = 0.0

    def as_dict(self) -> dict:
        return {k: float(v) if isinstance(v, (int, float, np.floating)) else v for k, v in self.__dict__.items()}


@dataclass
class HuntResult:
    windows: list[WindowResult]
    edges: np.ndarray
    selected_counts: list[np.ndarray] = field(repr=False)
    all_counts: np.ndarray = field(repr=False)
    config: HuntConfig | None = None
    t_max_toys: np.ndarray | None = field(default=None, repr=False)

    @property
    def best(self) -> WindowResult:
        return max(self.windows, key=lambda w: w.t)

    @property
    def p_min(self) -> float:
        return float(min(w.p_local for w in self.windows))

    @property
    def t_max(self) -> float:
        return float(max(w.t for w in self.windows))

    @property
    def global_p_sidak(self) -> float:
        """Quick estimate only (anti-conservative on background-only hunts): 1 - (1 - p_min)^n_windows."""
        return float(-math.expm1(len(self.windows) * math.log1p(-min(self.p_min, 1 - 1e-16))))

    @property
    def global_p_toys(self) -> float | None:
        """(1 + #{t_max_toy >= t_max}) / (1 + n_toys) from retrained background-only hunts; None without toys."""
        if self.t_max_toys is None or self.t_max_toys.size == 0:
            return None
        return float((1 + np.sum(self.t_max_toys >= self.t_max)) / (1 + self.t_max_toys.size))

    @property
    def global_p(self) -> float:
        """The toy global p when toys were run, else the Sidak quick estimate (see `global_p_method`)."""
        p = self.global_p_toys
        return self.global_p_sidak if p is None else p

    @property
    def global_p_method(self) -> str:
        return SIDAK_LABEL if self.global_p_toys is None else \
            f"toys ({self.t_max_toys.size} retrained hunts)"

    @property
    def global_z(self) -> float:
        return float(stats.norm.isf(self.global_p))

    def with_toys(self, t_max_toys: np.ndarray) -> "HuntResult":
        """A copy carrying the maximum t of background-only toy hunts (`null_toys`)."""
        from dataclasses import replace

        t = np.asarray(t_max_toys, dtype=float)
        if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
            raise ValueError(f"t_max_toys must be a non-empty 1-D array of finite values, got shape {t.shape}")
        return replace(self, t_max_toys=t)

    def window_at(self, m: float) -> WindowResult:
        """The window whose centre is closest to m (GeV)."""
        return min(self.windows, key=lambda w: abs(0.5 * (w.lo + w.hi) - m))

    def summary(self) -> dict:
        b = self.best
        ps = self.global_p_sidak
        return {"best": b.as_dict(), "p_min": self.p_min, "t_max": self.t_max,
                "global_p_sidak": ps, "global_z_sidak": float(stats.norm.isf(ps)), "global_p_sidak_note": "quick estimate (Sidak, can be anti-conservative)",
                "global_p_toys": self.global_p_toys,
                "n_toys": 0 if self.t_max_toys is None else int(self.t_max_toys.size),
                "global_p": self.global_p, "global_z": self.global_z, "global_p_method": self.global_p_method,
                "n_windows": len(self.windows), "windows": [w.as_dict() for w in self.windows]}


def window_starts(cfg: HuntConfig) -> list[int]:
    """First-bin indices of the scanned windows (sidebands must fit inside the histogram)."""
    e = np.asarray(cfg.edges)
    nb = len(e) - 1
    out = []
    for k in range(cfg.sideband_bins, nb - cfg.window_bins - cfg.sideband_bins + 1):
        if cfg.first_window_lo is not None and e[k] < cfg.first_window_lo - 1e-6:
            continue
        if cfg.last_window_hi is not None and e[k + cfg.window_bins] > cfg.last_window_hi + 1e-6:
            continue
        out.append(k)
    first = out[0] if out else 0
    return [k for k in out if (k - first) % cfg.step_bins == 0]


def window_edges(cfg: HuntConfig, k: int) -> tuple[float, float, float, float]:
    """(sideband low, window low, window high, sideband high) of the window starting at bin k (GeV)."""
    e = np.asarray(cfg.edges)
    return (float(e[k - cfg.sideband_bins]), float(e[k]), float(e[k + cfg.window_bins]),
            float(e[k + cfg.window_bins + cfg.sideband_bins]))


def window_index(cfg: HuntConfig, lo: float) -> int:
    """Bin index of the window whose low edge is `lo` (GeV)."""
    e = np.asarray(cfg.edges)
    k = int(np.argmin(np.abs(e - lo)))
    if abs(e[k] - lo) > 1e-6 or k < cfg.sideband_bins or k + cfg.window_bins + cfg.sideband_bins > len(e) - 1:
        raise ValueError(f"no window of {cfg.window_bins} bins with {cfg.sideband_bins}-bin sidebands starts at {lo} GeV")
    return k


def selected_window_test(mjj: np.ndarray, weight: np.ndarray, score: np.ndarray, k: int, cfg: HuntConfig) -> tuple[WindowResult, np.ndarray]:
    """Keep the `cfg.efficiency` highest-score events of the fit range, fit the dijet function to their m_JJ
    spectrum with window k blinded, and return the bump statistic of window k (plus the selected histogram).

    Shared by CWoLa hunting and CATHODE (any per-event score defined over the fit range)."""
    e = np.asarray(cfg.edges)
    in_range = (mjj >= e[0]) & (mjj < e[-1])
    cut = np.quantile(score[in_range], 1.0 - cfg.efficiency) if cfg.efficiency < 1 else -np.inf
    sel = in_range & (score >= cut)
    counts, _ = np.histogram(mjj[sel], bins=e, weights=weight[sel])
    return window_test(counts, k, cfg), counts


def window_test(counts: np.ndarray, k: int, cfg: HuntConfig) -> WindowResult:
    """Bump statistic of window k of a histogram, alpha from a dijet fit with the window blinded."""
    e = np.asarray(cfg.edges)
    blind = np.ones(len(counts), bool)
    blind[k : k + cfg.window_bins] = False
    fit = fit_dijet(counts, e, n_params=cfg.n_fit_params, mask=blind)
    mu = fit.expected
    w_bins = slice(k, k + cfg.window_bins)
    s_bins = np.r_[k - cfg.sideband_bins : k, k + cfg.window_bins : k + cfg.window_bins + cfg.sideband_bins]
    mu_w, mu_s = mu[w_bins].sum(), mu[s_bins].sum()
    n_w, n_s = counts[w_bins].sum(), counts[s_bins].sum()
    alpha = mu_w / mu_s if mu_s > 0 else float("nan")
    sigma = _ln_alpha_sigma(fit, w_bins, s_bins) if cfg.fit_uncertainty else 0.0
    if not (np.isfinite(alpha) and alpha > 0):
        t = 0.0
    elif sigma > 0:
        t = float(profile_t_syst(n_w, n_s, alpha, sigma))
    else:
        t = float(profile_t(n_w, n_s, alpha))
    return WindowResult(float(e[k]), float(e[k + cfg.window_bins]), t, math.sqrt(t), float(local_pvalue(t)), float(n_w),
                        float(n_s), float(alpha), float(alpha * n_s), fit.pvalue, bool(fit.valid), float(sigma))


def _ln_alpha_sigma(fit, w_bins: slice, s_bins: np.ndarray) -> float:
    """sd of ln(mu_W / mu_S) from the fit covariance (0 if HESSE gave none)."""
    cov = fit.covariance
    if cov is None or not np.all(np.isfinite(cov)):
        return 0.0
    jac, mu = fit.expected_jacobian(), fit.expected
    g = jac[w_bins].sum(0) / mu[w_bins].sum() - jac[s_bins].sum(0) / mu[s_bins].sum()
    return float(np.sqrt(max(g @ cov @ g, 0.0)))


def score_all(kf, X: np.ndarray, in1: np.ndarray, in0: np.ndarray, in_range: np.ndarray, seed: int) -> np.ndarray:
    """Per-event scores over the fit range from a k-fold result trained on events `in1` (label 1) and `in0`
    (label 0): those out of fold, every other event by ONE randomly chosen fold ensemble, so that all scores
    are of the same kind (averaging all folds would narrow the score distribution outside the training
    region and make a step in the selection efficiency at its edges: a bump made by the method)."""
    score = np.full(len(X), np.nan)
    score[in1], score[in0] = kf.score1, kf.score0
    rest = np.flatnonzero(in_range & ~in1 & ~in0)
    if rest.size:
        fold = np.random.default_rng(seed).integers(0, len(kf.folds), rest.size)
        for j, ens in enumerate(kf.folds):
            idx = rest[fold == j]
            if idx.size:
                score[idx] = ens.predict(X[idx])
    return score


def hunt_window(sample: DijetSample, k: int, cfg: HuntConfig, X: np.ndarray | None = None) -> tuple[WindowResult, np.ndarray]:
    """Train, select and bump-test the window starting at bin k; returns its result and the selected histogram."""
    score = window_scores(sample, k, cfg, X)
    return selected_window_test(sample.mjj, sample.weight, score, k, cfg)


def window_scores(sample: DijetSample, k: int, cfg: HuntConfig, X: np.ndarray | None = None) -> np.ndarray:
    """Train the window-vs-sidebands classifier of the window starting at bin k; per-event scores (see `score_all`)."""
    e = np.asarray(cfg.edges)
    X = sample.features if X is None else X
    m = sample.mjj
    in_range = (m >= e[0]) & (m < e[-1])
    slo, lo, hi, shi = window_edges(cfg, k)
    sr = (m >= lo) & (m < hi)
    sb = ((m >= slo) & (m < lo)) | ((m >= hi) & (m < shi))
    clf = cfg.classifier.model_copy(update={"seed": cfg.seed + 7 * k})
    res = kfold_classify(X[sb], X[sr], clf, w0=sample.weight[sb], w1=sample.weight[sr])
    return score_all(res, X, sr, sb, in_range, cfg.seed + 11 * k)


def cwola_hunt(sample: DijetSample, cfg: HuntConfig = HuntConfig(), log=lambda s: None) -> HuntResult:
    """Scan all windows; see the module docstring."""
    X = sample.features
    e = np.asarray(cfg.edges)
    all_counts, _ = np.histogram(sample.mjj, bins=e, weights=sample.weight)
    windows, selected = [], []
    for k in window_starts(cfg):
        w, c = hunt_window(sample, k, cfg, X)
        windows.append(w)
        selected.append(c)
        log(f"window [{w.lo:.0f}, {w.hi:.0f}) GeV: n_W={w.n_window:.0f} bkg={w.background_window:.1f} Z={w.z:.2f} fit p={w.fit_p:.2f}")
    if not windows:
        raise ValueError("no window fits the histogram with its sidebands; check edges / first_window_lo / last_window_hi")
    return HuntResult(windows, e, selected, all_counts, cfg)


def sculpting_check(make_background, cfg: HuntConfig = HuntConfig(), n_runs: int = 10, seed: int = 0) -> dict:
    """Run the hunt on `n_runs` background-only samples (`make_background(seed)` -> DijetSample) and test that
    nothing is found: the Sidak global p-values should be uniform (KS test), the local p-values of all windows
    too, and the selected spectra smooth (fit p-values not piling up at 0)."""
    gp, lp, fp = [], [], []
    for i in range(n_runs):
        r = cwola_hunt(make_background(seed + i), cfg.model_copy(update={"seed": seed + i}))
        gp.append(r.global_p_sidak)
        lp += [w.p_local for w in r.windows]
        fp += [w.fit_p for w in r.windows]
    gp, lp, fp = np.array(gp), np.array(lp), np.array(fp)
    # local p-values have an atom at 1 (t = 0 for deficits): test only the continuous part, p < 0.5
    lp_cont = lp[lp < 0.5] * 2.0
    return {
        "global_p": gp.tolist(), "ks_global_uniform_p": float(stats.kstest(gp, "uniform").pvalue),
        "local_p": lp.tolist(), "ks_local_uniform_p": float(stats.kstest(lp_cont, "uniform").pvalue) if lp_cont.size > 1 else float("nan"),
        "fraction_local_p_below_0.01": float(np.mean(lp < 0.01)), "fit_p": fp.tolist(),
        "fraction_fit_p_below_0.01": float(np.mean(fp < 0.01)), "min_global_p": float(gp.min()),
    }


def plot_hunt(result: HuntResult, path, *, title: str = "") -> Path:
    """Local significance per window and the selected spectrum of the best window with its fit."""
    import matplotlib

    matplotlib.use("Agg")

    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    c = [0.5 * (w.lo + w.hi) for w in result.windows]
    a1.plot(c, [w.z for w in result.windows], "o-")
    a1.set_xlabel("window centre m_JJ [GeV]")
    a1.set_ylabel("local Z")
    a1.set_title(title or f"CWoLa hunting (global Z = {result.global_z:.2f}, {result.global_p_method})", fontsize=10)
    i = int(np.argmax([w.t for w in result.windows]))
    e = result.edges
    mids = 0.5 * (e[1:] + e[:-1])
    a2.step(mids, result.all_counts, where="mid", label="all events")
    a2.step(mids, result.selected_counts[i], where="mid", label="selected (best window)")
    a2.axvspan(result.windows[i].lo, result.windows[i].hi, color="orange", alpha=0.2)
    a2.set_yscale("log")
    a2.set_xlabel("m_JJ [GeV]")
    a2.legend(fontsize=8)
    fig.tight_layout()
    from l1ad.trigger.atomic import save_figure

    return save_figure(fig, path)
