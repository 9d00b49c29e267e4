"""Multiply-and-shift requantization (firmware.requant): exact against rational arithmetic over whole ranges."""
from __future__ import annotations

import math
from fractions import Fraction as F

import numpy as np
import pytest

from l1ad.firmware.requant import multiply_shift


def _round(v: F, mode: str) -> int:
    fl = math.floor(v)
    fr = v - fl
    if mode == "TRN":
        return fl
    if mode == "RND":
        return math.floor(v + F(1, 2))
    if mode == "RND_CONV":
        return fl + 1 if fr > F(1, 2) else fl if fr < F(1, 2) else (fl if fl % 2 == 0 else fl + 1)
    raise ValueError(mode)


@pytest.mark.parametrize("mode", ["TRN", "RND", "RND_CONV"])
def test_multiply_shift_exhaustive(mode):
    """Float32-built factors (scale ratios, float biases over a float scale): every accumulator value in range."""
    rng = np.random.default_rng({"TRN": 1, "RND": 2, "RND_CONV": 3}[mode])
    for _ in range(40):
        p = F(float(np.float32(rng.uniform(1e-3, 3)))) * F(float(np.float32(rng.uniform(1e-3, 1)))) / F(float(np.float32(rng.uniform(1e-3, 1))))
        q = F(float(np.float32(rng.normal(0, 20)))) / F(float(np.float32(rng.uniform(0.01, 1))))
        lo, hi = int(rng.integers(-2000, 1)), int(rng.integers(0, 2000))
        m, n, k, ties = multiply_shift(p, q, lo, hi, mode)
        for a in range(lo, hi + 1):
            assert _round(F(a * m + n, 1 << k), mode) == _round(a * p + q, mode), (p, q, a)


def test_dyadic_is_exact_and_ties_counted():
    assert multiply_shift(F(3, 8), F(-5, 4), -10, 10, "RND_CONV") == (3, -10, 3, 0)
    # 1/3 * acc + 1/2 is a tie for every acc divisible by 3: 7 values in [-10, 10]; RND rounds them up exactly
    m, n, k, ties = multiply_shift(F(1, 3), F(1, 2), -10, 10, "RND_CONV")
    assert ties == 7
    wrong = [a for a in range(-10, 11) if _round(F(a * m + n, 1 << k), "RND_CONV") != _round(F(a, 3) + F(1, 2), "RND_CONV")]
    assert wrong == [-6, 0, 6]  # the ties whose lower neighbour is even: the only values that differ, and counted
    m, n, k, ties = multiply_shift(F(1, 3), F(1, 2), -10, 10, "RND")
    assert ties == 0 and all(_round(F(a * m + n, 1 << k), "RND") == _round(F(a, 3) + F(1, 2), "RND") for a in range(-10, 11))
    # floor: exact integer hits stay exact
    m, n, k, ties = multiply_shift(F(1, 3), F(0), -30, 30, "TRN")
    assert all(math.floor(F(a * m + n, 1 << k)) == math.floor(F(a, 3)) for a in range(-30, 31))
