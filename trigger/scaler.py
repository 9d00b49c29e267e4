"""Hardware-friendly input scaling: per feature an integer offset and a power-of-two shift.

    scaled_j = (x_hw_j - offset_j) * 2**(-shift_j)

x_hw is the (N, 57) hardware-unit input (trigger.l1units.hw_inputs: exact integers). On the chip this is one
subtraction and a wire shift; the network's input quantizer then snaps it to its fixed-point grid (no rounding at
all when shift_j <= the input format's fractional bits, which holds for the defaults).

Fit (weighted, on the training split), per feature over the events where that feature's object is present
(hardware pT code > 0; absent objects are zero rows and would otherwise pull every statistic to zero):
- pT features: offset 0, so an absent object stays exactly 0 and a pT is a pure right shift;
- eta / phi features: offset = weighted mean rounded to the nearest integer;
- shift = ceil(log2(weighted RMS of x_hw - offset)), at least 0: the scaled RMS lies in (0.5, 1], so an input
  format with I integer bits saturates beyond 2**I RMS (the defaults: 8 RMS).
A feature with fewer than `min_count` present events (e.g. the 10th jet in a small sample) takes the statistics
pooled over all slots of its object type; one never present takes offset 0 and the type default shift
(`DEFAULT_SHIFT`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from l1ad.trigger.events import N_FEATURES, N_INPUTS, OBJECT_SLOTS

#: shift used for a feature never seen in training: pT 0.5 GeV * 2**6 = 32 GeV per unit; eta/phi 256 codes per unit
DEFAULT_SHIFT = (6, 8, 8)
SCALER_VERSION = 1


class _hybridmethod:
    """`InputScaler.fit(x, w)` returns a new fitted scaler; `scaler.fit(x, w)` fits in place and returns it."""

    def __init__(self, func):
        self.func = func

    def __get__(self, obj, cls):
        target = obj if obj is not None else cls()
        return self.func.__get__(target, cls)


@dataclass
class InputScaler:
    """offset, shift: int64 arrays of shape (57,). Unfitted until `fit` (or construction with both arrays)."""

    offset: np.ndarray | None = None
    shift: np.ndarray | None = None
    min_count: int = 20
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.offset is None) != (self.shift is None):
            raise ValueError("InputScaler needs both offset and shift, or neither")
        if self.offset is not None:
            self.offset, self.shift = _as_int_vector(self.offset, "offset"), _as_int_vector(self.shift, "shift")

    @property
    def fitted(self) -> bool:
        return self.offset is not None

    # ------------------------------------------------------------------ fit / transform
    @_hybridmethod
    def fit(self, x_hw: np.ndarray, weight: np.ndarray | None = None) -> "InputScaler":
        x = _check_x(x_hw)
        w = np.ones(len(x)) if weight is None else np.asarray(weight, dtype=np.float64)
        if w.shape != (len(x),):
            raise ValueError(f"weight must have shape ({len(x)},), got {w.shape}")
        if (w < 0).any() or not np.isfinite(w).all():
            raise ValueError("scaler fit needs finite, non-negative weights")
        present = x[:, 0::N_FEATURES] > 0  # (N, 19)
        offset = np.zeros(N_INPUTS, dtype=np.int64)
        shift = np.zeros(N_INPUTS, dtype=np.int64)
        pooled_features = []
        for _, _, first, count in OBJECT_SLOTS:
            rows = range(first, first + count)
            for f in range(N_FEATURES):
                cols = [r * N_FEATURES + f for r in rows]
                pooled = _stats(x[:, cols].ravel(), np.repeat(w, count).reshape(len(x), count).ravel(),
                                present[:, list(rows)].ravel(), is_pt=f == 0, min_count=self.min_count)
                for r, c in zip(rows, cols):
                    s = _stats(x[:, c], w, present[:, r], is_pt=f == 0, min_count=self.min_count)
                    if s is None:
                        s = pooled
                        pooled_features.append(c)
                    offset[c], shift[c] = s if s is not None else (0, DEFAULT_SHIFT[f])
        self.offset, self.shift = offset, shift
        self.info = {"n_events": int(len(x)), "weight_sum": float(w.sum()), "pooled_features": pooled_features}
        return self

    def transform(self, x_hw: np.ndarray) -> np.ndarray:
        """(x_hw - offset) * 2**-shift as float64 (exact; also exact in float32 for |x_hw - offset| < 2**24)."""
        if not self.fitted:
            raise RuntimeError("InputScaler is not fitted; call fit(x_hw, weight) first")
        x = _check_x(x_hw)
        return (x - self.offset) * np.ldexp(1.0, -self.shift)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        if not self.fitted:
            raise RuntimeError("cannot serialise an unfitted InputScaler")
        return {
            "version": SCALER_VERSION,
            "formula": "scaled = (x_hw - offset) * 2**(-shift)",
            "offset": [int(v) for v in self.offset],
            "shift": [int(v) for v in self.shift],
            "min_count": self.min_count,
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "InputScaler":
        try:
            return cls(offset=d["offset"], shift=d["shift"], min_count=int(d.get("min_count", 20)), info=dict(d.get("info", {})))
        except KeyError as e:
            raise ValueError(f"scaler description lacks the field {e.args[0]!r}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InputScaler):
            return NotImplemented
        if not (self.fitted and other.fitted):
            return self.fitted == other.fitted
        return bool(np.array_equal(self.offset, other.offset) and np.array_equal(self.shift, other.shift))


def _stats(x: np.ndarray, w: np.ndarray, present: np.ndarray, *, is_pt: bool, min_count: int) -> tuple[int, int] | None:
    """(offset, shift) of one feature from its present entries, or None when there are too few."""
    sel = present & (w > 0)
    if sel.sum() < min_count:
        return None
    x, w = x[sel], w[sel]
    offset = 0 if is_pt else int(np.floor(np.average(x, weights=w) + 0.5))
    rms = math.sqrt(float(np.average((x - offset) ** 2, weights=w)))
    if rms <= 0:
        return offset, 0
    m, e = math.frexp(rms)  # rms = m * 2**e, m in [0.5, 1)
    return offset, max(0, e - 1 if m == 0.5 else e)


def _check_x(x_hw: np.ndarray) -> np.ndarray:
    x = np.asarray(x_hw, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != N_INPUTS:
        raise ValueError(f"expected hardware inputs of shape (N, {N_INPUTS}), got {x.shape}")
    return x


def _as_int_vector(v: Any, name: str) -> np.ndarray:
    a = np.asarray(v)
    if a.shape != (N_INPUTS,):
        raise ValueError(f"scaler {name} must have shape ({N_INPUTS},), got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        if not np.array_equal(a, np.round(a)):
            raise ValueError(f"scaler {name} must hold integers")
    return a.astype(np.int64)
