"""The full scores-to-rates evaluation behind `l1ad rates`: thresholds for target rates, the rate curve, the
reference menu and pure rates, and per-signal efficiencies, ROC, AUC and TPR at fixed FPR.

Works on score arrays and event batches only; the CLI (l1ad.commands.rates) loads the model and the files.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .events import EventBatch
from .menu import MenuConfig, MenuRates, menu_fires, menu_rates, pure_fraction, seed_decisions
from .performance import (
    DEFAULT_FPR,
    RocCurve,
    TprAtFpr,
    efficiencies_at_rates,
    efficiency,
    efficiency_curve,
    roc_curve,
    tpr_at_fpr,
)
from .rates import (
    LHC_BUNCH_SLOTS,
    LHC_COLLIDING_BUNCHES,
    ONE_SIGMA_CL,
    RateStatisticsWarning,
    ScoreDistribution,
    StatMethod,
    weighted_fraction,
    zero_bias_rate,
)
from .thresholds import DEFAULT_TARGET_RATES_KHZ, MIN_EFFECTIVE_EVENTS, RateCurve, ThresholdResult, rate_curve, thresholds_for_rates

INTERVAL_DESCRIPTION = (
    "equal-tailed interval on the weighted fraction from variance-matched effective counts "
    "(n_eff = p(1-p)/Var, k_eff = p n_eff, Var = [(1-p)^2 sum_pass w^2 + p^2 sum_fail w^2] / (sum w)^2; "
    "global (sum w)^2 / sum w^2 when p is 0 or 1)"
)


class RatesConfig(BaseModel):
    """What `l1ad rates` computes: target rates [kHz], the reference menu, the interval method and CL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_rates_khz: tuple[float, ...] = DEFAULT_TARGET_RATES_KHZ
    menu: MenuConfig = MenuConfig()
    stat_method: StatMethod = "clopper-pearson"
    cl: float = Field(ONE_SIGMA_CL, gt=0, lt=1)
    colliding_bunches: int = Field(LHC_COLLIDING_BUNCHES, ge=1, le=LHC_BUNCH_SLOTS)
    fpr_targets: tuple[float, ...] = (DEFAULT_FPR,)
    min_effective_events: float = Field(MIN_EFFECTIVE_EVENTS, ge=0)
    curve_points: int = Field(300, ge=2)
    #: a reached rate below this fraction of its target is flagged as "target not reached"
    min_rate_fraction: float = Field(0.5, gt=0, le=1)

    @field_validator("target_rates_khz")
    @classmethod
    def _targets(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v:
            raise ValueError("at least one target rate is needed")
        if any(not np.isfinite(x) or x <= 0 for x in v):
            raise ValueError(f"target rates must be positive, got {list(v)} kHz")
        return tuple(sorted(v))

    @field_validator("fpr_targets")
    @classmethod
    def _fprs(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < x < 1 for x in v):
            raise ValueError(f"FPR targets must lie in (0, 1), got {list(v)}")
        return v

    @model_validator(mode="after")
    def _below_zero_bias(self) -> "RatesConfig":
        zb = self.zb_rate_hz
        too_high = [x for x in self.target_rates_khz if x * 1e3 >= zb]
        if too_high:
            raise ValueError(f"target rates {too_high} kHz are not below the zero-bias rate {zb / 1e3:.6g} kHz")
        return self

    @property
    def zb_rate_hz(self) -> float:
        return zero_bias_rate(self.colliding_bunches)

    @property
    def targets_hz(self) -> list[float]:
        return [x * 1e3 for x in self.target_rates_khz]


@dataclass
class SignalReport:
    name: str
    n_events: int
    n_eff: float
    roc: RocCurve
    tpr: list[TprAtFpr]
    efficiency_at_rate: list[dict]
    efficiency_curve: np.ndarray  # at the report's rate-curve thresholds
    menu_efficiency: dict
    pure_efficiency_at_rate: list[dict]
    tpr_checks: list[dict] = field(default_factory=list)  # per FPR target: interval and statistics (tpr_check)

    def to_dict(self) -> dict:
        return {
            "n_events": self.n_events, "n_eff": self.n_eff, "auc": self.roc.auc,
            "tpr_at_fpr": [{**t.to_dict(), **c} for t, c in zip(self.tpr, self.tpr_checks)],
            "efficiency_at_rate": self.efficiency_at_rate,
            "menu_efficiency": self.menu_efficiency,
            "pure_efficiency_at_rate": self.pure_efficiency_at_rate,
            "roc": self.roc.downsampled(),
            "efficiency_curve": self.efficiency_curve.tolist(),
        }


@dataclass
class RatesReport:
    config: RatesConfig
    zero_bias: dict
    thresholds: list[ThresholdResult]
    curve: RateCurve
    menu: MenuRates
    pure_rates: list[dict]
    signals: dict[str, SignalReport] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    threshold_checks: list[dict] = field(default_factory=list)  # per target: check_thresholds

    def to_dict(self) -> dict:
        return {
            "conventions": {
                "trigger_fires": "score > threshold",
                "menu_seeds_fire": "object pT >= threshold and |eta| <= eta_max",
                "rate_unit": "Hz",
                "zero_bias_rate_hz": self.config.zb_rate_hz,
                "rate": "zero_bias_rate_hz x (sum of weights with score > threshold) / (sum of weights)",
                "interval": f"{self.config.stat_method}, CL {self.config.cl:.6g}: {INTERVAL_DESCRIPTION}",
                "threshold_interval": "[threshold_for_rate(rate_hi_hz), threshold_for_rate(rate_lo_hz)]; null: unbounded",
                "pure_rate": "rate of events with score > threshold that no menu seed accepts",
            },
            "config": self.config.model_dump(mode="json"),
            "zero_bias": self.zero_bias,
            "thresholds": [t.to_dict() for t in self.thresholds],
            "rate_curve": self.curve.to_dict(),
            "menu": self.menu.to_dict(),
            "pure_rates": self.pure_rates,
            "signals": {k: v.to_dict() for k, v in self.signals.items()},
            "threshold_checks": self.threshold_checks,
            "warnings": self.warnings,
        }


def _check(batch: EventBatch, scores, what: str) -> np.ndarray:
    s = np.asarray(scores)
    if s.shape != (len(batch),):
        raise ValueError(f"{what}: {s.shape[0] if s.ndim else 0} scores for {len(batch)} events (shape {s.shape})")
    return s


def evaluate(
    zb: EventBatch,
    zb_scores: np.ndarray,
    signals: Mapping[str, tuple[EventBatch, np.ndarray]] | None = None,
    config: RatesConfig | None = None,
) -> RatesReport:
    """Everything `l1ad rates` reports, from a zero-bias batch and its scores, and signal batches with theirs.

    Warnings about statistics are emitted (RateStatisticsWarning) and also collected in report.warnings."""
    cfg = config or RatesConfig()
    zb_rate, cl, method = cfg.zb_rate_hz, cfg.cl, cfg.stat_method
    stat = {"cl": cl, "method": method}
    zb_scores = _check(zb, zb_scores, "zero-bias sample")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RateStatisticsWarning)
        dist = ScoreDistribution(zb_scores, zb.weight, name="zero-bias scores")
        ths = thresholds_for_rates(dist, cfg.targets_hz, zb_rate_hz=zb_rate,
                                   min_effective_events=cfg.min_effective_events, **stat)
        curve = rate_curve(dist, max_points=cfg.curve_points, zb_rate_hz=zb_rate, **stat)
        decisions = seed_decisions(zb, cfg.menu)
        menu_fired = menu_fires(zb, decisions=decisions)
        menu = menu_rates(zb, cfg.menu, zb_rate_hz=zb_rate, decisions=decisions, **stat)
        pure = []
        for th in ths:
            ad = zb_scores > th.threshold
            p = pure_fraction(ad, menu_fired, zb.weight, **stat)
            pure.append({"target_hz": th.target_hz, "threshold": th.threshold, "rate_hz": th.rate_hz,
                         **p.to_dict("pure_rate_hz", zb_rate),
                         "pure_share": float(p.value * zb_rate / th.rate_hz) if th.rate_hz > 0 else None})
        report = RatesReport(
            config=cfg,
            zero_bias={"n_events": len(zb), "weight_sum": dist.w_total, "n_eff": dist.n_eff,
                       "score_dtype": str(dist.sorted.dtype), "score_min": dist.sorted[0].item(),
                       "score_max": dist.sorted[-1].item()},
            thresholds=ths, curve=curve, menu=menu, pure_rates=pure,
            threshold_checks=check_thresholds(ths, dist.n_eff, zb_rate, cfg.min_rate_fraction, cfg.min_effective_events),
        )
        report.warnings.extend(c["message"] for c in report.threshold_checks if not c["reachable"])
        for name, (batch, scores) in (signals or {}).items():
            report.signals[name] = _signal(name, batch, _check(batch, scores, f"signal {name!r}"), zb_scores, zb, ths, curve, cfg)
    for w in caught:
        if issubclass(w.category, RateStatisticsWarning):
            report.warnings.append(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)  # re-emit to the caller
    return report


def _signal(name, batch, scores, zb_scores, zb, ths, curve, cfg) -> SignalReport:
    stat = {"cl": cfg.cl, "method": cfg.stat_method}
    roc = roc_curve(zb_scores, scores, zb.weight, batch.weight)
    tprs = []
    for f in cfg.fpr_targets:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RateStatisticsWarning)
            t = tpr_at_fpr(roc, f, min_effective_events=cfg.min_effective_events)
        for w in caught:  # name the signal in the message
            warnings.warn(f"signal {name!r}: {w.message}", w.category, stacklevel=2)
        tprs.append(t)
    checks = [tpr_check(scores, batch.weight, t, cfg) for t in tprs]
    menu_fired = menu_fires(batch, cfg.menu)
    pure = []
    for th in ths:
        p = pure_fraction(scores > th.threshold, menu_fired, batch.weight, **stat)
        pure.append({"target_hz": th.target_hz, "threshold": th.threshold, **p.to_dict("pure_efficiency")})
    return SignalReport(
        name=name, n_events=len(batch), n_eff=float(batch.weight.sum() ** 2 / (batch.weight**2).sum()),
        roc=roc, tpr=tprs,
        efficiency_at_rate=efficiencies_at_rates(scores, ths, batch.weight, **stat),
        efficiency_curve=efficiency_curve(scores, curve.thresholds, batch.weight),
        menu_efficiency=weighted_fraction(menu_fired, batch.weight, **stat).to_dict("efficiency"),
        pure_efficiency_at_rate=pure, tpr_checks=checks,
    )


def zb_events_needed(rate_fraction: float, min_effective_events: float) -> int:
    """Effective zero-bias events needed so that `min_effective_events` lie above a threshold passing the
    weighted fraction `rate_fraction` (rate / zero-bias rate, or an FPR)."""
    return int(math.ceil(min_effective_events / rate_fraction))


def check_thresholds(ths: list[ThresholdResult], n_eff: float, zb_rate_hz: float, min_rate_fraction: float,
                     min_effective_events: float) -> list[dict]:
    """Is each target rate reached? A target is unreachable when its reached rate lies below
    `min_rate_fraction` x target (the zero-bias sample has no score whose rate falls near the target: the rate
    jumps from `rate_hz` to `rate_if_lower_hz` across one score step), and in any case when it shares its
    threshold with another target. Each entry names the reason and the effective zero-bias events needed."""
    out = []
    for th in ths:
        shared = [t.target_hz for t in ths if t.threshold == th.threshold and t is not th]
        ratio = th.rate_hz / th.target_hz
        needed = zb_events_needed(th.target_hz / zb_rate_hz, min_effective_events)
        reasons = []
        if ratio < min_rate_fraction:
            reasons.append(f"reached rate {th.rate_hz / 1e3:.4g} kHz is {th.target_hz / max(th.rate_hz, 1e-300):.3g}x "
                           f"below the target" if th.rate_hz > 0 else "no zero-bias event lies above the threshold")
        if shared:
            reasons.append("shares its threshold with the " + ", ".join(f"{t / 1e3:g}" for t in shared) + " kHz target(s)")
        msg = ""
        if reasons:
            msg = (f"target {th.target_hz / 1e3:g} kHz not reached: " + "; ".join(reasons)
                   + f"; the next lower threshold gives {th.rate_if_lower_hz / 1e3:.4g} kHz. The zero-bias sample "
                   f"(n_eff {n_eff:.4g}) is too coarse here: about {needed:,} effective events are needed "
                   f"({min_effective_events:g} above the threshold)")
        out.append({"target_hz": th.target_hz, "threshold": th.threshold, "rate_hz": th.rate_hz,
                    "rate_over_target": ratio, "rate_if_lower_hz": th.rate_if_lower_hz, "shared_with_hz": shared,
                    "reachable": not reasons, "zb_n_eff": n_eff, "zb_events_needed": needed, "message": msg})
    return out


def tpr_check(scores: np.ndarray, weights: np.ndarray, t: TprAtFpr, cfg: RatesConfig) -> dict:
    """The interval of the TPR at an FPR target (signal efficiency above the step threshold, weighted
    Clopper-Pearson at cfg.cl) and whether the zero-bias sample resolves that FPR: `reliable` is false when fewer
    than `min_effective_events` effective zero-bias events are expected at the FPR; `zb_events_needed` says how
    many would be."""
    e = efficiency(scores, t.threshold, weights, cl=cfg.cl, method=cfg.stat_method)
    needed = zb_events_needed(t.fpr, cfg.min_effective_events)
    return {"tpr_step_lo": e.lo, "tpr_step_hi": e.hi, "interval": f"{cfg.stat_method}, CL {cfg.cl:.3g} (signal statistics)",
            "reliable": bool(t.bkg_n_eff * t.fpr >= cfg.min_effective_events), "zb_events_needed": needed}
