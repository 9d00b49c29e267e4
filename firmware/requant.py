"""Requantization by a non-power-of-two factor as integer multiply-and-shift, proven exact.

A quantizer with a float scale (Brevitas' default ``*PerTensorFloat`` / per-channel quantizers) computes
``code = clip(round(y / s_out))`` where ``y = acc * s_in * s_w + b`` is an exact dyadic number (floats are
dyadic) but ``1 / s_out`` is not. ``multiply_shift`` finds integers ``m, n`` and a shift ``k`` with

    round((acc * m + n) / 2**k) == round(acc * P + Q)   for EVERY integer acc in [lo, hi]

(P, Q the exact rationals), i.e. the fixed-point affine op reproduces the exact rational arithmetic bit for bit
over the whole reachable accumulator range, not just on test vectors. The argument: write acc*P + Q = N(acc)/D
with one denominator D. A rounding boundary (a half-integer for round-to-nearest, an integer for floor-like
modes) is either hit exactly or missed by at least 1/(2D); with |m/2**k - P| and |n/2**k - Q| at most 2**-(k+1),
the error of the approximation is below (|acc|max + 1) * 2**-(k+1) < 1/(2D) once 2**k > (|acc|max + 1) * D. The
exact hits are counted by solving a linear congruence; a reachable exact tie makes the rounding direction of
the approximation undefined, so it is refused (it never happens unless the scales are related by small odd
factors).
"""
from __future__ import annotations

import math
from fractions import Fraction

from l1ad.trigger.errors import UserInputError

#: rounding modes whose boundaries are half-integers (the rest have integer boundaries)
_HALF = {"RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV"}


class RequantError(UserInputError):
    """No exact multiply-and-shift exists for a requantization (a reachable exact rounding tie)."""


def _ties_in_range(num_p: int, num_q: int, den: int, lo: int, hi: int, half: bool) -> int:
    """How many integers acc in [lo, hi] put acc*num_p/den + num_q/den exactly on a rounding boundary."""
    # boundary: half: acc*p + q = t + 1/2  <=>  2(acc*Np + Nq) = (2t+1) D  <=>  acc*2Np = (2t+1)D - 2Nq
    # integer:  acc*Np + Nq = t D
    if half:
        a, c, mod = 2 * num_p, den - 2 * num_q, 2 * den  # acc * a = c (mod 2D) and the quotient must be odd*D
    else:
        a, c, mod = num_p, -num_q, den
    g = math.gcd(a, mod)
    if c % g:
        return 0
    a2, c2, m2 = a // g, c // g, mod // g
    inv = pow(a2 % m2, -1, m2) if m2 > 1 else 0
    x0 = (c2 * inv) % m2 if m2 > 1 else 0
    step = m2 if m2 > 0 else 1
    first = lo + ((x0 - lo) % step)
    return 0 if first > hi else (hi - first) // step + 1


def multiply_shift(p: Fraction, q: Fraction, lo: int, hi: int, rounding: str) -> tuple[int, int, int, int]:
    """(m, n, k, n_ties): integers with round((acc*m + n) / 2**k) == round(acc*p + q) for every integer acc in
    [lo, hi] that does not land exactly on a rounding boundary, for any ap_fixed rounding mode; exact (and
    n_ties = 0) when p and q are dyadic. The approximation errs upwards by less than 1/(2D), so exact boundary hits
    round up: right for RND (half up) and TRN (floor); for the other modes ``n_ties`` counts the reachable
    accumulator values whose tie-breaking differs from the exact rule (the caller reports them)."""
    den = math.lcm(p.denominator, q.denominator)
    if den & (den - 1) == 0:  # dyadic: exact constants, the fixed-point rounding does the rest
        k = den.bit_length() - 1
        return int(p * den), int(q * den), k, 0
    num_p, num_q = int(p * den), int(q * den)
    n_ties = 0 if rounding in ("RND", "TRN") else _ties_in_range(num_p, num_q, den, lo, hi, rounding in _HALF)
    amax = max(abs(lo), abs(hi))
    k = ((amax + 1) * den).bit_length() + 3
    m = round(p * (1 << k))
    n = round(q * (1 << k)) + -(-(1 << k) // (4 * den))  # + ceil(2**k / 4D): an upward bias of ~1/(4D)
    # the bound, checked exactly rather than trusted: 0 < approximation - exact < 1/(2D) for every acc in range
    dev = max(abs(lo), abs(hi)) * abs(Fraction(m, 1 << k) - p)
    off = Fraction(n, 1 << k) - q
    assert Fraction(0) < off - dev and off + dev < Fraction(1, 2 * den), (p, q, off, dev)
    return m, n, k, n_ties
