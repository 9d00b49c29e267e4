"""From anomaly scores to trigger rates: the LHC rate constants, weighted rates and their uncertainties.

Conventions (used by every module in trigger/ that turns scores into decisions):

* **The trigger fires when ``score > threshold``** (strictly greater). An event whose score equals the
  threshold does not fire. This holds for float scores and for integer score codes alike.
* **rate(threshold) = ZERO_BIAS_RATE_HZ x (weighted fraction of zero-bias events with score > threshold)**,
  fraction = sum(w over events above) / sum(w over all events). Rates are in Hz everywhere in the library.
* Weights must be finite and non-negative, with a positive sum.

Uncertainty on a weighted fraction (``binomial_interval``) uses **variance-matched effective counts**: the
weighted estimator p = W_pass / W has variance V = [(1-p)^2 S_pass + p^2 S_fail] / W^2 (S = sum of w^2),
and (k_eff, n_eff) are chosen so that a binomial with those counts has the same p and variance:
n_eff = p (1 - p) / V, k_eff = p n_eff. For unit (or any equal) weights this gives exactly k and n, so the
interval is the exact Clopper-Pearson one. For small p, k_eff -> W_pass^2 / S_pass, the effective count of
the *passing* events: this matters for zero-bias samples stitched from pT-hat slices, where the rate tail is
carried by many small-weight events (a single global scale factor W / S would misjudge it by orders of
magnitude). V is the linearised variance of the ratio, so it also counts the fluctuation of the denominator
(the p^2 S_fail term); for stitched samples whose slice normalisations are fixed by cross sections that part
is conservative. When p = 0 or p = 1 the variance vanishes and the global effective count n_eff = W^2 / S is used
(k_eff = 0 or n_eff), which gives the one-sided limit. The interval is then

* ``clopper-pearson`` (default): [B^-1(a/2; k, n-k+1), B^-1(1-a/2; k+1, n-k)], 0 / 1 at the ends;
* ``jeffreys``: Beta(k + 1/2, n - k + 1/2) equal-tailed quantiles, 0 / 1 at the ends;
* ``normal``: p -/+ z sqrt(V), clipped to [0, 1] (zero width when nothing passes: avoid for tails).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

#: LHC bunch-crossing (RF / 10) frequency [Hz]
LHC_BUNCH_CROSSING_HZ = 40.079e6
#: bunch slots per LHC orbit (25 ns spacing)
LHC_BUNCH_SLOTS = 3564
#: colliding bunch pairs at the experiment in a typical full Run-2/Run-3 filling scheme
LHC_COLLIDING_BUNCHES = 2544
#: the zero-bias rate: one event per colliding bunch crossing, 40.079 MHz x 2544 / 3564 = 28.6085 MHz
ZERO_BIAS_RATE_HZ = LHC_BUNCH_CROSSING_HZ * LHC_COLLIDING_BUNCHES / LHC_BUNCH_SLOTS

StatMethod = Literal["clopper-pearson", "jeffreys", "normal"]
STAT_METHODS: tuple[str, ...] = ("clopper-pearson", "jeffreys", "normal")
#: one Gaussian sigma, two-sided
ONE_SIGMA_CL = 0.682689492137086


class RateStatisticsWarning(UserWarning):
    """The sample is too small for the requested rate or efficiency: the number is an estimate with a
    large (or only one-sided) uncertainty. Results also carry the same message in their `warnings`."""


def zero_bias_rate(colliding_bunches: int = LHC_COLLIDING_BUNCHES) -> float:
    """Zero-bias rate [Hz] for a filling scheme with `colliding_bunches` colliding pairs (of 3564 slots)."""
    if not 0 < colliding_bunches <= LHC_BUNCH_SLOTS:
        raise ValueError(f"colliding bunches must lie in [1, {LHC_BUNCH_SLOTS}], got {colliding_bunches}")
    return LHC_BUNCH_CROSSING_HZ * colliding_bunches / LHC_BUNCH_SLOTS


def warn_stat(message: str) -> str:
    """Emit a RateStatisticsWarning and return the message (so results can keep it)."""
    warnings.warn(message, RateStatisticsWarning, stacklevel=3)
    return message


# ---------------------------------------------------------------------------------------- validation
def check_scores(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    """A 1-d array of finite scores: integer codes as int64, floats as float64 (both exact)."""
    s = np.asarray(scores)
    if s.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {s.shape}")
    if s.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numeric, got dtype {s.dtype}")
    if s.dtype.kind in "iu":  # int64: unsigned codes compare exactly with negative thresholds
        s = s.astype(np.int64, copy=False)
    if s.dtype.kind == "f":
        # float64 (exact for float16/32 values): numpy compares a float32 array with a Python float in float32,
        # so `np.float32(0.1) > 0.1` is False although the value 0.10000000149 is larger; here it is True
        s = s.astype(np.float64, copy=False)
    if s.dtype.kind == "f" and not np.isfinite(s).all():
        raise ValueError(f"{name}: {int((~np.isfinite(s)).sum())} value(s) are NaN or inf")
    return s


def check_weights(weights: np.ndarray | None, n: int, name: str = "weights") -> np.ndarray:
    """Float64 weights of length n (ones when None); finite, non-negative, with a positive sum."""
    if weights is None:
        if n == 0:
            raise ValueError(f"{name}: empty sample")
        return np.ones(n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError(f"{name}: NaN or inf weight")
    if (w < 0).any():
        raise ValueError(f"{name}: {int((w < 0).sum())} negative weight(s); rates need non-negative weights")
    if not w.sum() > 0:
        raise ValueError(f"{name}: the weights sum to zero (empty sample)")
    return w


# ---------------------------------------------------------------------------------------- intervals
def _ratio_stats(w_pass, s_pass, w_total, s_total):
    """(p, Var(p), k_eff, n_eff) of the weighted fraction W_pass / W (see module docstring); vectorised."""
    w_pass, s_pass, w_total, s_total = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (w_pass, s_pass, w_total, s_total)))
    p = np.clip(w_pass / w_total, 0.0, 1.0)  # the same expression as ScoreDistribution.fraction_above
    var = ((1 - p) ** 2 * s_pass + p**2 * np.maximum(s_total - s_pass, 0.0)) / w_total**2
    inner = (var > 0) & (p > 0) & (p < 1)
    n = np.where(inner, p * (1 - p) / np.where(inner, var, 1.0), w_total**2 / s_total)
    k = np.where(p >= 1, n, np.where(inner, p * n, 0.0))
    return p, var, k, n


def effective_counts(w_pass, s_pass, w_total, s_total) -> tuple[np.ndarray, np.ndarray]:
    """Variance-matched effective (k, n) for a weighted fraction W_pass / W (see module docstring).

    Arguments are sums of w and of w^2 over the passing events and over all events (scalars or arrays)."""
    _, _, k, n = _ratio_stats(w_pass, s_pass, w_total, s_total)
    return k, n


def interval_from_sums(w_pass, s_pass, w_total, s_total, cl: float = ONE_SIGMA_CL,
                       method: StatMethod = "clopper-pearson"):
    """(p, lo, hi, k_eff, n_eff) of the weighted fraction from sums of w and w^2; vectorised."""
    p, var, k, n = _ratio_stats(w_pass, s_pass, w_total, s_total)
    lo, hi = binomial_interval(k, n, cl, method, var=var)
    return p, lo, hi, k, n


def binomial_interval(k, n, cl: float = ONE_SIGMA_CL, method: StatMethod = "clopper-pearson", var=None):
    """Equal-tailed interval (lo, hi) on a binomial fraction from (possibly non-integer) counts k of n.

    `var` (the variance of the estimate) is used by the `normal` method only; by default p(1-p)/n."""
    from scipy.stats import beta, norm

    if not 0 < cl < 1:
        raise ValueError(f"confidence level must lie in (0, 1), got {cl}")
    if method not in STAT_METHODS:
        raise ValueError(f"unknown stat method {method!r}; choose from {STAT_METHODS}")
    k, n = np.broadcast_arrays(np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64))
    if (n <= 0).any() or (k < 0).any() or (k > n * (1 + 1e-12)).any():
        raise ValueError("binomial interval needs 0 <= k <= n and n > 0")
    k = np.minimum(k, n)
    alpha = 1 - cl
    p = k / n
    if method == "normal":
        sd = np.sqrt(p * (1 - p) / n if var is None else np.asarray(var, dtype=np.float64))
        z = norm.ppf(1 - alpha / 2)
        return np.clip(p - z * sd, 0, 1), np.clip(p + z * sd, 0, 1)
    if method == "jeffreys":
        a_lo, b_lo, a_hi, b_hi = k + 0.5, n - k + 0.5, k + 0.5, n - k + 0.5
    else:  # Clopper-Pearson
        a_lo, b_lo, a_hi, b_hi = k, n - k + 1, k + 1, n - k
    tiny = np.finfo(np.float64).tiny  # the ends (k = 0, k = n) are set by np.where; keep ppf's arguments valid
    lo = np.where(k > 0, beta.ppf(alpha / 2, np.maximum(a_lo, tiny), np.maximum(b_lo, tiny)), 0.0)
    hi = np.where(k < n, beta.ppf(1 - alpha / 2, np.maximum(a_hi, tiny), np.maximum(b_hi, tiny)), 1.0)
    # the point estimate always lies inside (guards against ppf round-off at extreme counts)
    return np.minimum(lo, p), np.maximum(hi, p)


@dataclass(frozen=True)
class Fraction:
    """A weighted fraction with its interval and the statistics behind it."""

    value: float
    lo: float
    hi: float
    n_events: int  # raw number of passing events
    k_eff: float  # effective passing count (variance-matched)
    n_eff: float  # effective total count (variance-matched)
    cl: float
    method: str

    def scaled(self, factor: float) -> tuple[float, float, float]:
        """(value, lo, hi) times a factor, e.g. the zero-bias rate."""
        return self.value * factor, self.lo * factor, self.hi * factor

    def to_dict(self, key: str = "fraction", factor: float = 1.0) -> dict:
        """{key, key_lo, key_hi} (times `factor`) and the counts behind them; a unit suffix stays last:
        key 'rate_hz' gives rate_hz, rate_lo_hz, rate_hi_hz."""
        v, lo, hi = self.scaled(factor)
        base, unit = (key[:-3], "_hz") if key.endswith("_hz") else (key, "")
        return {key: v, f"{base}_lo{unit}": lo, f"{base}_hi{unit}": hi, "n_events": self.n_events,
                "k_eff": self.k_eff, "n_eff": self.n_eff}


def fraction_from_sums(w_pass: float, s_pass: float, w_total: float, s_total: float, n_events: int,
                       cl: float = ONE_SIGMA_CL, method: StatMethod = "clopper-pearson") -> Fraction:
    """A Fraction (value and interval) from the sums of w and w^2 over passing and all events."""
    p, lo, hi, k, n = (float(x) for x in interval_from_sums(w_pass, s_pass, w_total, s_total, cl, method))
    return Fraction(value=p, lo=lo, hi=hi, n_events=int(n_events), k_eff=k, n_eff=n, cl=cl, method=method)


def weighted_fraction(mask: np.ndarray, weights: np.ndarray | None = None, cl: float = ONE_SIGMA_CL,
                      method: StatMethod = "clopper-pearson") -> Fraction:
    """Weighted fraction of events where `mask` is true, with its interval."""
    mask = np.asarray(mask, dtype=bool)
    w = check_weights(weights, mask.shape[0])
    return fraction_from_sums(float(w[mask].sum()), float((w[mask] ** 2).sum()), float(w.sum()), float((w**2).sum()),
                              int(mask.sum()), cl, method)


# ---------------------------------------------------------------------------------------- distributions
class ScoreDistribution:
    """Weighted scores sorted once, so that rate(threshold) and threshold(rate) are O(log N) look-ups.

    `w_above(t)` = sum of weights of events with score > t, computed from suffix sums (exact in the far tail,
    no `total - cumsum` cancellation). Integer score arrays stay integer: thresholds found on them are codes.
    """

    def __init__(self, scores: np.ndarray, weights: np.ndarray | None = None, *, name: str = "scores"):
        s = check_scores(scores, name)
        w = check_weights(weights, s.shape[0], f"{name} weights")
        order = np.argsort(s, kind="stable")
        self.sorted = s[order]
        ws = w[order]
        # suffix[j] = sum of w over sorted positions >= j; suffix[N] = 0
        self._w_suffix = np.append(np.cumsum(ws[::-1])[::-1], 0.0)
        self._s_suffix = np.append(np.cumsum((ws**2)[::-1])[::-1], 0.0)
        self.w_total = float(self._w_suffix[0])
        self.s_total = float(self._s_suffix[0])
        self.name = name

    def __len__(self) -> int:
        return int(self.sorted.shape[0])

    @property
    def is_integer(self) -> bool:
        return self.sorted.dtype.kind in "iu"

    @property
    def n_eff(self) -> float:
        """Kish effective sample size (sum w)^2 / sum w^2."""
        return self.w_total**2 / self.s_total

    def _index_above(self, threshold) -> np.ndarray:
        """Sorted position of the first event with score > threshold."""
        t = np.asarray(threshold)
        if t.dtype.kind == "f" and np.isnan(t).any():
            raise ValueError("threshold is NaN")
        return np.searchsorted(self.sorted, t, side="right")

    def w_above(self, threshold) -> np.ndarray:
        return self._w_suffix[self._index_above(threshold)]

    def n_above(self, threshold) -> np.ndarray:
        return len(self) - self._index_above(threshold)

    def fraction_above(self, threshold) -> np.ndarray:
        """Weighted fraction of events with score > threshold (array or scalar, like `threshold`)."""
        return _fraction(self._w_suffix[self._index_above(threshold)], self.w_total)

    def fraction_estimate(self, threshold, cl: float = ONE_SIGMA_CL, method: StatMethod = "clopper-pearson") -> Fraction:
        """The fraction above one threshold, with its interval."""
        j = int(self._index_above(threshold))
        return fraction_from_sums(float(self._w_suffix[j]), float(self._s_suffix[j]), self.w_total, self.s_total,
                                  len(self) - j, cl, method)

    def fraction_band(self, thresholds, cl: float = ONE_SIGMA_CL, method: StatMethod = "clopper-pearson"):
        """(fraction, lo, hi) arrays at many thresholds (vectorised)."""
        j = self._index_above(np.asarray(thresholds))
        p, lo, hi, _, _ = interval_from_sums(self._w_suffix[j], self._s_suffix[j], self.w_total, self.s_total, cl, method)
        return p, lo, hi

    def min_threshold_for_fraction(self, fraction: float):
        """The smallest threshold t with fraction_above(t) <= `fraction` (0 <= fraction < 1).

        It is always one of the scores (the sorted score just below the cut), so the same `>` comparison on the
        same sample gives a fraction <= the request, and any lower threshold gives more. Returns a numpy scalar
        of the scores' dtype."""
        return self.sorted[self._cut_index(fraction) - 1]

    def _cut_index(self, fraction: float) -> int:
        # the fraction per cut position, computed exactly as fraction_above computes it (so `<=` is preserved)
        fr = _fraction(self._w_suffix, self.w_total)
        j = int(np.searchsorted(-fr, -fraction, side="left"))  # first j with fr[j] <= fraction (fr non-increasing)
        if j == 0:
            raise ValueError(f"fraction {fraction} keeps every event: no threshold is needed")
        return j

    def quantile_thresholds(self, max_points: int = 300) -> np.ndarray:
        """Thresholds (unique scores, ascending) for a curve, dense in the tail: the number of events above
        each is geometrically spaced from 0 to N."""
        u = np.unique(self.sorted)
        if u.size <= max_points:
            return u
        n = len(self)
        above = np.unique(np.round(np.geomspace(1, n, max_points)).astype(np.int64)) - 1  # 0 .. n-1 events above
        return np.unique(self.sorted[n - 1 - above])


def _fraction(w_above, w_total):
    return np.asarray(w_above, dtype=np.float64) / w_total


def rate(scores: np.ndarray, threshold, weights: np.ndarray | None = None, zb_rate_hz: float = ZERO_BIAS_RATE_HZ):
    """Trigger rate [Hz] at `threshold` (scalar or array): zb_rate x weighted fraction of scores > threshold."""
    return ScoreDistribution(scores, weights).fraction_above(threshold) * zb_rate_hz


def check_target_rate(target_hz: float, zb_rate_hz: float = ZERO_BIAS_RATE_HZ) -> float:
    """A target rate in (0, zero-bias rate); anything else is a ValueError naming the bound."""
    t = float(target_hz)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"target rate must be positive and finite, got {target_hz} Hz")
    if t >= zb_rate_hz:
        raise ValueError(
            f"target rate {t:.6g} Hz is not below the zero-bias rate {zb_rate_hz:.6g} Hz: every bunch crossing would be kept"
        )
    return t
