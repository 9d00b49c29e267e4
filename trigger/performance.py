"""Signal performance of a score: weighted ROC curve, AUC, TPR at a fixed FPR, efficiency at a trigger rate.

All with the trigger's convention `score > threshold` (trigger.rates). The ROC curve has one vertex per distinct
score value of the two samples together (plus (0, 0) and (1, 1)); between vertices it is linear, which is what a
threshold randomised on a tie achieves. The trapezoidal AUC over these vertices is therefore the weighted
P(s > b) + 1/2 P(s = b), correct with ties (and equal to sklearn's roc_auc_score with sample weights).

TPR at a target FPR f (default 1e-5): `tpr` is the ROC curve at f: the highest vertex with FPR <= f, and the
straight line from it to the next vertex when that one lies above f (never an interpolation in log FPR, which
has no meaning at FPR = 0). `tpr_step` is the TPR of the deterministic threshold `threshold` with FPR <= f (the
vertex itself): the value a real trigger with that threshold gets. When the background's effective size n_eff
gives fewer than `min_effective_events` events at f (n_eff x f), or f lies below the smallest non-zero FPR of
the sample (so the value comes from the line leaving FPR = 0), a RateStatisticsWarning says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .rates import (
    ONE_SIGMA_CL,
    Fraction,
    ScoreDistribution,
    StatMethod,
    check_scores,
    check_weights,
    warn_stat,
)
from .thresholds import MIN_EFFECTIVE_EVENTS, ThresholdResult, _py

DEFAULT_FPR = 1e-5


@dataclass(frozen=True)
class RocCurve:
    """Vertices (ascending FPR) of the weighted ROC curve. thresholds[i] is the threshold (score > t) at vertex
    i; the last vertex (1, 1) has threshold -inf (every event fires)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    bkg_n_eff: float
    integer: bool = False  # integer score codes: finite thresholds are integers

    @property
    def auc(self) -> float:
        return float(_trapezoid(self.tpr, self.fpr))

    def downsampled(self, max_points: int = 200) -> dict:
        """Up to ~max_points vertices, geometrically spaced in FPR (for JSON and plots)."""
        pos = np.flatnonzero(self.fpr > 0)
        if pos.size > max_points:
            grid = np.geomspace(self.fpr[pos[0]], 1.0, max_points)
            pos = np.unique(np.clip(np.searchsorted(self.fpr, grid, side="left"), pos[0], self.fpr.size - 1))
        idx = np.unique(np.concatenate([[0, max(pos[0] - 1, 0) if pos.size else 0], pos]))
        return {"fpr": self.fpr[idx].tolist(), "tpr": self.tpr[idx].tolist()}


def roc_curve(bkg_scores, sig_scores, bkg_weight=None, sig_weight=None) -> RocCurve:
    """The weighted ROC curve of signal against background for `score > threshold`."""
    b = check_scores(bkg_scores, "background scores")
    s = check_scores(sig_scores, "signal scores")
    wb = check_weights(bkg_weight, b.shape[0], "background weights")
    ws = check_weights(sig_weight, s.shape[0], "signal weights")
    scores = np.concatenate([b, s])  # int64 if both are integer codes, else float64
    is_sig = np.concatenate([np.zeros(b.size, bool), np.ones(s.size, bool)])
    w = np.concatenate([wb, ws])
    order = np.argsort(scores, kind="stable")[::-1]  # descending
    scores, is_sig, w = scores[order], is_sig[order], w[order]
    # last position of each run of equal scores: cumulative sums there count every event with score >= that value
    ends = np.r_[np.flatnonzero(np.diff(scores) != 0), scores.size - 1]
    tp = np.cumsum(np.where(is_sig, w, 0.0))[ends]
    fp = np.cumsum(np.where(is_sig, 0.0, w))[ends]
    # vertex 0: threshold at the top score, nothing fires. Vertex i >= 1 counts scores >= value_{i-1}, which
    # is score > value_i (the next lower distinct value), and -inf after the lowest value.
    values = scores[ends].astype(np.float64)
    thresholds = np.r_[values, -np.inf]
    fpr = np.r_[0.0, fp / wb.sum()]
    tpr = np.r_[0.0, tp / ws.sum()]
    fpr[-1] = tpr[-1] = 1.0  # exact end point (cumulative-sum round-off)
    return RocCurve(fpr=np.minimum(fpr, 1.0), tpr=np.minimum(tpr, 1.0), thresholds=thresholds,
                    bkg_n_eff=float(wb.sum() ** 2 / (wb**2).sum()), integer=scores.dtype.kind in "iu")


def roc_auc(bkg_scores, sig_scores, bkg_weight=None, sig_weight=None) -> float:
    """Weighted area under the ROC curve (ties count one half)."""
    return roc_curve(bkg_scores, sig_scores, bkg_weight, sig_weight).auc


@dataclass(frozen=True)
class TprAtFpr:
    fpr: float
    tpr: float  # the ROC curve at fpr (linear between vertices)
    tpr_step: float  # TPR of the deterministic threshold below
    fpr_step: float  # its FPR (<= fpr)
    threshold: int | float  # fire when score > threshold (-inf: every event)
    bkg_n_eff: float
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {"fpr": self.fpr, "tpr": self.tpr, "tpr_step": self.tpr_step, "fpr_step": self.fpr_step,
                "threshold": self.threshold, "bkg_n_eff": self.bkg_n_eff, "warnings": list(self.warnings)}


def tpr_at_fpr(roc: RocCurve, fpr: float = DEFAULT_FPR, *, min_effective_events: float = MIN_EFFECTIVE_EVENTS) -> TprAtFpr:
    """TPR at a target FPR (see module docstring for the interpolation and the warnings)."""
    if not 0 < fpr < 1:
        raise ValueError(f"target FPR must lie in (0, 1), got {fpr}")
    i = int(np.searchsorted(roc.fpr, fpr, side="right")) - 1  # last vertex with FPR <= fpr (highest TPR there)
    if roc.fpr[i] == fpr or i == roc.fpr.size - 1:
        tpr = float(roc.tpr[i])
    else:
        f0, f1, t0, t1 = roc.fpr[i], roc.fpr[i + 1], roc.tpr[i], roc.tpr[i + 1]
        tpr = float(t0 + (t1 - t0) * (fpr - f0) / (f1 - f0))
    messages = []
    expected = roc.bkg_n_eff * fpr
    if expected < min_effective_events:
        messages.append(warn_stat(
            f"FPR {fpr:g}: the background sample (n_eff {roc.bkg_n_eff:.4g}) holds only {expected:.3g} effective "
            f"events at this FPR (fewer than {min_effective_events:g}); the TPR there is not measured reliably"))
    if roc.fpr[i] == 0:  # then fpr[i + 1] is the smallest non-zero FPR
        messages.append(warn_stat(
            f"FPR {fpr:g} lies below the smallest non-zero FPR of the sample ({roc.fpr[i + 1]:.3g}): the TPR "
            f"{tpr:.4g} comes from the straight line to the last point at FPR 0, and the threshold keeps no "
            f"background event"))
    return TprAtFpr(fpr=fpr, tpr=tpr, tpr_step=float(roc.tpr[i]), fpr_step=float(roc.fpr[i]),
                    threshold=_threshold_value(roc, i), bkg_n_eff=roc.bkg_n_eff, warnings=tuple(messages))


def _threshold_value(roc: RocCurve, i: int) -> int | float:
    t = float(roc.thresholds[i])
    return int(t) if roc.integer and np.isfinite(t) else t


def _trapezoid(y, x):
    return (getattr(np, "trapezoid", None) or np.trapz)(y, x)


def efficiency(sig_scores, threshold, sig_weight=None, *, cl: float = ONE_SIGMA_CL,
               method: StatMethod = "clopper-pearson") -> Fraction:
    """Weighted signal fraction with score > threshold, with its interval."""
    return ScoreDistribution(sig_scores, sig_weight, name="signal scores").fraction_estimate(threshold, cl, method)


def efficiencies_at_rates(sig_scores, thresholds: list[ThresholdResult], sig_weight=None, *, cl: float = ONE_SIGMA_CL,
                          method: StatMethod = "clopper-pearson") -> list[dict]:
    """For each threshold found for a target rate: the signal efficiency above it, with its interval."""
    dist = ScoreDistribution(sig_scores, sig_weight, name="signal scores")
    out = []
    for th in thresholds:
        e = dist.fraction_estimate(th.threshold, cl, method)
        out.append({"target_hz": th.target_hz, "threshold": _py(th.threshold), "rate_hz": th.rate_hz,
                    **e.to_dict("efficiency")})
    return out


def efficiency_curve(sig_scores, thresholds, sig_weight=None) -> np.ndarray:
    """Signal efficiency (score > t) at each threshold (e.g. those of a RateCurve: efficiency versus rate)."""
    return ScoreDistribution(sig_scores, sig_weight, name="signal scores").fraction_above(np.asarray(thresholds))
