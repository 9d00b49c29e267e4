"""Thresholds for target rates, rate-versus-threshold curves, and float <-> integer-code thresholds.

The trigger fires when ``score > threshold`` (see trigger.rates). ``threshold_for_rate`` returns the *smallest*
threshold whose rate on the given zero-bias sample is <= the target; it is always one of the sample's scores
(events tied with it do not fire), so evaluating the rate with the same `>` on the same sample gives <= target,
and every lower threshold gives more than the target. The same functions work unchanged on integer score codes
(e.g. from the firmware emulator): the threshold is then an integer code with the same `>` meaning.

Uncertainties: the rate at the chosen threshold carries an interval [rate_lo, rate_hi] (trigger.rates.
binomial_interval, weighted, at confidence level `cl`). The threshold interval is that rate interval carried
back through the measured rate curve: threshold_lo = threshold_for_rate(rate_hi), threshold_hi =
threshold_for_rate(rate_lo); None where the curve gives no bound (rate_lo = 0: no events above, so nothing
limits the threshold from above; rate_hi reaching the zero-bias rate: nothing limits it from below).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .rates import (
    ONE_SIGMA_CL,
    ZERO_BIAS_RATE_HZ,
    ScoreDistribution,
    StatMethod,
    check_target_rate,
    warn_stat,
)

#: below this many effective events above a threshold, its rate is flagged as statistically poor
MIN_EFFECTIVE_EVENTS = 10.0
DEFAULT_TARGET_RATES_KHZ = (1.0, 5.0, 10.0, 100.0)


def as_distribution(scores, weights=None) -> ScoreDistribution:
    """A ScoreDistribution from scores (+ weights), or the distribution itself."""
    if isinstance(scores, ScoreDistribution):
        if weights is not None:
            raise ValueError("weights are already part of the ScoreDistribution")
        return scores
    return ScoreDistribution(scores, weights)


def _py(x):
    """A numpy scalar as a plain Python int or float (JSON-safe, keeps integer codes integer)."""
    return None if x is None else x.item() if isinstance(x, np.generic) else x


@dataclass(frozen=True)
class ThresholdResult:
    """The threshold for one target rate, with the rate it gives on the sample and their uncertainties."""

    target_hz: float
    threshold: int | float  # fire when score > threshold
    rate_hz: float  # measured rate at the threshold on the sample (<= target_hz)
    rate_lo_hz: float
    rate_hi_hz: float
    rate_if_lower_hz: float  # the rate one score step lower (events tied at the threshold fire); > target_hz
    threshold_lo: int | float | None  # the threshold interval implied by [rate_lo, rate_hi]; None: unbounded
    threshold_hi: int | float | None
    n_events: int  # raw events above the threshold
    k_eff: float  # effective events above
    n_eff: float
    cl: float
    method: str
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["warnings"] = list(self.warnings)
        return d


def threshold_for_rate(
    scores,
    target_hz: float,
    weights=None,
    *,
    cl: float = ONE_SIGMA_CL,
    method: StatMethod = "clopper-pearson",
    zb_rate_hz: float = ZERO_BIAS_RATE_HZ,
    min_effective_events: float = MIN_EFFECTIVE_EVENTS,
) -> ThresholdResult:
    """The smallest threshold t with rate(t) <= target_hz on this zero-bias sample (see module docstring).

    Raises ValueError for a target <= 0 or >= the zero-bias rate. Warns (RateStatisticsWarning, and records
    it in the result) when no event lies above the threshold or fewer than `min_effective_events` effective
    events do."""
    dist = as_distribution(scores, weights)
    target = check_target_rate(target_hz, zb_rate_hz)
    t = dist.min_threshold_for_fraction(target / zb_rate_hz)
    est = dist.fraction_estimate(t, cl, method)
    rate, lo, hi = est.scaled(zb_rate_hz)
    lower = float(dist.fraction_above(_next_lower(dist, t))) * zb_rate_hz if t > dist.sorted[0] else zb_rate_hz
    messages = []
    if est.n_events == 0:
        messages.append(warn_stat(
            f"target {target:.6g} Hz: no event of the sample ({len(dist)} events, n_eff {dist.n_eff:.4g}) lies above "
            f"the threshold, which is the largest score; the rate there is only bounded, < {hi:.4g} Hz at CL {cl:.4g}. "
            f"A lower target needs a larger zero-bias sample"))
    elif est.k_eff < min_effective_events:
        messages.append(warn_stat(
            f"target {target:.6g} Hz: only {est.k_eff:.3g} effective events ({est.n_events} events) lie above the "
            f"threshold (fewer than {min_effective_events:g}); the rate {rate:.4g} Hz is uncertain: [{lo:.4g}, {hi:.4g}] Hz"))
    t_lo = None if hi >= zb_rate_hz else dist.min_threshold_for_fraction(est.hi)
    t_hi = None if lo <= 0 else dist.min_threshold_for_fraction(est.lo)
    return ThresholdResult(
        target_hz=target, threshold=_py(t), rate_hz=rate, rate_lo_hz=lo, rate_hi_hz=hi, rate_if_lower_hz=lower,
        threshold_lo=_py(t_lo), threshold_hi=_py(t_hi), n_events=est.n_events, k_eff=est.k_eff, n_eff=est.n_eff,
        cl=cl, method=method, warnings=tuple(messages),
    )


def _next_lower(dist: ScoreDistribution, t):
    """The largest score of the sample strictly below t (t must be above the smallest score)."""
    return dist.sorted[np.searchsorted(dist.sorted, t, side="left") - 1]


def thresholds_for_rates(scores, targets_hz, weights=None, **kwargs) -> list[ThresholdResult]:
    """threshold_for_rate for each target (the scores are sorted once)."""
    dist = as_distribution(scores, weights)
    targets = list(targets_hz)
    if not targets:
        raise ValueError("no target rates given")
    return [threshold_for_rate(dist, t, **kwargs) for t in targets]


@dataclass(frozen=True)
class RateCurve:
    """Rate versus threshold (score > threshold) with its interval band, at `thresholds` (ascending)."""

    thresholds: np.ndarray
    rate_hz: np.ndarray
    rate_lo_hz: np.ndarray
    rate_hi_hz: np.ndarray
    cl: float
    method: str

    def to_dict(self) -> dict:
        return {"thresholds": self.thresholds.tolist(), "rate_hz": self.rate_hz.tolist(), "rate_lo_hz": self.rate_lo_hz.tolist(),
                "rate_hi_hz": self.rate_hi_hz.tolist(), "cl": self.cl, "method": self.method}


def rate_curve(
    scores,
    weights=None,
    thresholds=None,
    *,
    max_points: int = 300,
    cl: float = ONE_SIGMA_CL,
    method: StatMethod = "clopper-pearson",
    zb_rate_hz: float = ZERO_BIAS_RATE_HZ,
) -> RateCurve:
    """The rate curve at `thresholds`, or at up to `max_points` sample scores spaced for a log-rate axis."""
    dist = as_distribution(scores, weights)
    t = dist.quantile_thresholds(max_points) if thresholds is None else np.sort(np.asarray(thresholds))
    p, lo, hi = dist.fraction_band(t, cl, method)
    return RateCurve(thresholds=t, rate_hz=p * zb_rate_hz, rate_lo_hz=lo * zb_rate_hz, rate_hi_hz=hi * zb_rate_hz,
                     cl=cl, method=method)


# ---------------------------------------------------------------------------------------- integer codes
def score_code_range(fmt) -> tuple[int, int, int]:
    """(fractional bits, smallest code, largest code) of a fixed-point score format.

    `fmt` is a firmware.fixed.FixedFormat (ap_fixed<W, I>: I counts the sign bit), a trigger.models.quant.
    FixedFormat (fixed<bits, integer>: integer excludes the sign bit), or a string such as 'ap_ufixed<18,10>'
    (parsed by firmware.fixed). Both classes expose `frac`, the number of fractional bits: a code c stands for
    the value c x 2^-frac. The two classes count integer bits differently; `frac` is what both agree on."""
    if isinstance(fmt, str):
        from l1ad.firmware.fixed import FixedFormat

        fmt = FixedFormat.parse(fmt)
    try:
        frac = int(fmt.frac)
        lo = fmt.min_code if hasattr(fmt, "min_code") else fmt.int_min
        hi = fmt.max_code if hasattr(fmt, "max_code") else fmt.int_max
    except AttributeError:
        raise TypeError(f"not a fixed-point format (needs frac and a code range): {fmt!r}") from None
    return frac, int(lo), int(hi)


def float_threshold_to_code(threshold: float, fmt) -> int:
    """The integer threshold code T for a float threshold t, such that the firmware comparator `code > T`
    takes the same decision as `value > t` for every score value the format can represent.

    T = floor(t / lsb), lsb = 2^-frac. Proof: for an integer c, c x lsb > t <=> c > t / lsb <=> c > floor(t / lsb);
    t / lsb is exact in float64 (a power-of-two scaling). A t at or above the largest value gives T = largest
    code (nothing fires, as for t). A t below the smallest value (every code fires) has no T within the format
    and raises ValueError. The decisions agree on the *same* quantized scores: a float threshold found on float
    (unquantized) model scores does not give the rate it had there; find thresholds on the codes instead."""
    frac, lo, hi = score_code_range(fmt)
    t = float(threshold)
    if not math.isfinite(t):
        raise ValueError(f"threshold must be finite, got {threshold}")
    code = math.floor(math.ldexp(t, frac))
    if code < lo:
        raise ValueError(
            f"threshold {t} lies below the smallest score {math.ldexp(lo, -frac)} of {fmt}: every event fires and no "
            f"threshold code inside the format gives that with `>`")
    return min(code, hi)


def code_threshold_to_float(code: int, fmt) -> float:
    """The float threshold equivalent to the comparator `code > T` on the format's values: T x lsb (exact)."""
    frac, _, _ = score_code_range(fmt)
    if int(code) != code:
        raise ValueError(f"threshold code must be an integer, got {code}")
    return math.ldexp(float(int(code)), -frac)
