"""FixedFormat: parsing, rendering, ranges, and each arithmetic primitive against slow Fraction references
(property-based with hypothesis)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from l1ad.firmware import OVERFLOW_MODES, ROUNDING_MODES, FixedFormat, FixedFormatError
from l1ad.firmware.fixed import (apply_overflow, quantize_float, ref_quantize, ref_requantize, requantize, round_shift,
                            to_fraction)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------- parsing / rendering
@pytest.mark.parametrize("text, fields", [
    ("ap_fixed<16,6>", (16, 6, True, "TRN", "WRAP")),
    ("ap_fixed<16,6,RND_CONV,SAT>", (16, 6, True, "RND_CONV", "SAT")),
    ("ap_fixed<16, 6, AP_RND_CONV, AP_SAT>", (16, 6, True, "RND_CONV", "SAT")),
    ("ap_ufixed<8,3,RND,SAT_SYM>", (8, 3, False, "RND", "SAT_SYM")),
    ("ap_fixed<8,3,RND_ZERO>", (8, 3, True, "RND_ZERO", "WRAP")),
    ("ap_fixed<8,-2,TRN_ZERO,SAT_ZERO,0>", (8, -2, True, "TRN_ZERO", "SAT_ZERO")),
    ("ap_int<17>", (17, 17, True, "TRN", "WRAP")),
    ("ap_uint<8>", (8, 8, False, "TRN", "WRAP")),
    ("fixed<12,4,RND_INF,SAT>", (12, 4, True, "RND_INF", "SAT")),
    ("ufixed<12,14>", (12, 14, False, "TRN", "WRAP")),
])
def test_parse(text, fields):
    f = FixedFormat.parse(text)
    assert (f.width, f.integer, f.signed, f.rounding, f.overflow) == fields
    assert FixedFormat.parse(str(f)) == f


@pytest.mark.parametrize("bad", ["ap_fixed<16>", "ap_fixed<0,0>", "ap_fixed<16,6,FOO>", "ap_fixed<16,6,RND,BAR>",
                                 "ap_fixed<16,6,RND,SAT,2>", "float", "ap_int<4,2>", "ap_fixed<x,3>", "ap_fixed<16,,>"])
def test_parse_errors(bad):
    with pytest.raises(FixedFormatError):
        FixedFormat.parse(bad)


def test_render_forms():
    assert str(FixedFormat(16, 6)) == "ap_fixed<16,6>"
    assert str(FixedFormat(16, 6, True, "RND")) == "ap_fixed<16,6,RND>"
    assert str(FixedFormat(16, 6, True, "TRN", "SAT")) == "ap_fixed<16,6,TRN,SAT>"
    assert str(FixedFormat(8, 8, False)) == "ap_uint<8>"
    assert FixedFormat(8, 3, False, "RND_CONV", "SAT").render(style="hls4ml") == "ufixed<8,3,RND_CONV,SAT>"


def test_ranges():
    f = FixedFormat.parse("ap_fixed<8,3>")
    assert (f.frac, f.min_code, f.max_code) == (5, -128, 127)
    assert f.min_value == Fraction(-4) and f.max_value == Fraction(127, 32)
    u = FixedFormat.parse("ap_ufixed<8,3>")
    assert (u.min_code, u.max_code, u.max_value) == (0, 255, Fraction(255, 32))
    assert FixedFormat.parse("ap_fixed<16,6>").contains_format(FixedFormat.parse("ap_fixed<8,3>"))
    assert not FixedFormat.parse("ap_fixed<8,3>").contains_format(FixedFormat.parse("ap_ufixed<8,3>"))
    c = FixedFormat.covering(-5, 1000, 4)
    assert c.signed and c.min_code <= -5 and c.max_code >= 1000 and c.frac == 4 and c.width == 11


def test_from_values_rejects_off_grid():
    f = FixedFormat.parse("ap_fixed<8,3>")
    assert list(f.from_values([0.5, -4.0, 3.96875])) == [16, -128, 127]
    with pytest.raises(FixedFormatError):
        f.from_values([0.01])
    with pytest.raises(FixedFormatError):
        f.from_values([4.0])


# ---------------------------------------------------------------------- hand-checked semantics
@pytest.mark.parametrize("mode, expect", [
    # values -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.25, -0.75 rounded to integers
    ("TRN", [-3, -2, -1, 0, 1, 2, 0, -1]),
    ("TRN_ZERO", [-2, -1, 0, 0, 1, 2, 0, 0]),
    ("RND", [-2, -1, 0, 1, 2, 3, 0, -1]),
    ("RND_ZERO", [-2, -1, 0, 0, 1, 2, 0, -1]),
    ("RND_INF", [-3, -2, -1, 1, 2, 3, 0, -1]),
    ("RND_MIN_INF", [-3, -2, -1, 0, 1, 2, 0, -1]),
    ("RND_CONV", [-2, -2, 0, 0, 2, 2, 0, -1]),
])
def test_rounding_table(mode, expect):
    x = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.25, -0.75]
    f = FixedFormat(8, 8, True, mode, "WRAP")
    assert list(f.quantize(x)) == expect
    src = FixedFormat(10, 8, True)  # two fraction bits: codes = 4x
    assert list(f.requantize(np.array([int(v * 4) for v in x]), src)) == expect


@pytest.mark.parametrize("mode, expect", [
    ("WRAP", [-126, 127, -128, 0, 127]),
    ("SAT", [127, 127, -128, 0, -128]),
    ("SAT_ZERO", [0, 127, -128, 0, 0]),
    ("SAT_SYM", [127, 127, -127, 0, -127]),
])
def test_overflow_table(mode, expect):
    f = FixedFormat(8, 8, True, "TRN", mode)
    got = list(apply_overflow(np.array([130, 127, -128, 0, -129]), f))
    assert got == [ref_quantize(v, f) for v in (130, 127, -128, 0, -129)] == expect


def test_rounding_carry_then_overflow():
    # 127.75 rounds up to 128 -> overflow handled after rounding
    src = FixedFormat(12, 10, True)
    v = np.array([int(127.75 * 4), int(-128.75 * 4)])
    assert list(FixedFormat(8, 8, True, "RND", "SAT").requantize(v, src)) == [127, -128]
    assert list(FixedFormat(8, 8, True, "RND", "WRAP").requantize(v, src)) == [-128, 127]
    assert list(FixedFormat(8, 8, True, "RND", "SAT_ZERO").requantize(v, src)) == [0, 0]


def test_float_input_edge_cases():
    f = FixedFormat(8, 3, True, "RND", "SAT")
    # 0.5 - 2**-54 must not round up (the classic floor(t + 0.5) double-rounding trap)
    assert list(FixedFormat(8, 8, True, "RND").quantize([0.5 - 2.0**-54, -0.5 - 2.0**-53])) == [0, -1]
    assert list(f.quantize([np.inf, -np.inf, 1e300])) == [127, -128, 127]
    with pytest.raises(ValueError):
        f.quantize([np.nan])
    with pytest.raises(ValueError):
        FixedFormat(8, 3).quantize([np.inf])
    codes, n_inexact, n_ovf = quantize_float(np.array([0.03125, 0.04, 5.0]), f)
    assert (n_inexact, n_ovf) == (1, 1)


def test_wide_formats_use_python_ints():
    src = FixedFormat(100, 60, True)
    dst = FixedFormat(70, 40, True, "RND_CONV", "SAT")
    codes = np.array([(1 << 98) + 12345, -(1 << 97) - 3, 7], dtype=object)
    out = dst.requantize(codes, src)
    assert out.dtype == object
    assert [int(v) for v in out] == [ref_requantize(int(c), src, dst) for c in codes]


# ---------------------------------------------------------------------- property-based
@st.composite
def formats(draw, max_width=80, any_modes=True):
    w = draw(st.integers(1, max_width))
    i = draw(st.integers(-24, 48))
    signed = draw(st.booleans())
    r = draw(st.sampled_from(ROUNDING_MODES)) if any_modes else "TRN"
    o = draw(st.sampled_from(OVERFLOW_MODES)) if any_modes else "WRAP"
    return FixedFormat(w, i, signed, r, o)


@st.composite
def codes_of(draw, fmt, n=16):
    edge = [fmt.min_code, fmt.max_code, 0, min(1, fmt.max_code), max(-1, fmt.min_code)]
    vals = draw(st.lists(st.one_of(st.integers(fmt.min_code, fmt.max_code), st.sampled_from(edge)), min_size=1, max_size=n))
    return vals


@SETTINGS
@given(data=st.data())
def test_requantize_matches_reference(data):
    src = data.draw(formats(any_modes=False))
    dst = data.draw(formats())
    vals = data.draw(codes_of(src))
    arr = np.array(vals, dtype=src.code_dtype)
    out, n_inexact, n_ovf = requantize(arr, src, dst)
    assert out.dtype == dst.code_dtype
    assert [int(v) for v in out] == [ref_requantize(v, src, dst) for v in vals]
    shift = src.frac - dst.frac
    assert n_inexact == sum(1 for v in vals if shift > 0 and v % (1 << shift) != 0)


@SETTINGS
@given(data=st.data())
def test_round_shift_matches_reference(data):
    mode = data.draw(st.sampled_from(ROUNDING_MODES))
    shift = data.draw(st.integers(-8, 70))
    vals = data.draw(st.lists(st.integers(-(1 << 61), (1 << 61) - 1), min_size=1, max_size=20))
    got = round_shift(np.array(vals, dtype=np.int64), shift, mode)
    from l1ad.firmware.fixed import _ref_round

    assert [int(v) for v in got] == [_ref_round(Fraction(v, 1) / Fraction(2) ** shift, mode) for v in vals]


@SETTINGS
@given(data=st.data())
def test_quantize_float_matches_reference(data):
    dst = data.draw(formats(max_width=60))
    xs = data.draw(st.lists(st.one_of(
        st.floats(allow_nan=False, allow_infinity=False, width=64),
        st.floats(-1e4, 1e4, allow_nan=False),
        st.integers(-(1 << 20), 1 << 20).map(lambda k: k / 8.0),  # exact ties for many formats
        st.integers(-(1 << 20), 1 << 20).map(lambda k: k * 2.0 ** -20),
    ), min_size=1, max_size=16))
    got = dst.quantize(np.array(xs, dtype=np.float64))
    assert [int(v) for v in got] == [ref_quantize(Fraction(x), dst) for x in xs]


@SETTINGS
@given(data=st.data())
def test_float32_input_widened_exactly(data):
    dst = data.draw(formats(max_width=40))
    xs = data.draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=16))
    got = dst.quantize(np.array(xs, dtype=np.float32))
    assert [int(v) for v in got] == [ref_quantize(Fraction(float(np.float32(x))), dst) for x in xs]


@SETTINGS
@given(fmt=formats())
def test_render_parse_roundtrip(fmt):
    assert FixedFormat.parse(str(fmt)) == fmt
    assert FixedFormat.parse(fmt.render(style="hls4ml")) == fmt


@SETTINGS
@given(data=st.data())
def test_to_float_exact(data):
    fmt = data.draw(formats(max_width=53))
    vals = data.draw(codes_of(fmt))
    got = fmt.to_float(np.array(vals, dtype=np.int64))
    assert [Fraction(float(v)) for v in got] == [to_fraction(v, fmt) for v in vals]


@SETTINGS
@given(data=st.data())
def test_requantize_identity_and_exact_widening(data):
    src = data.draw(formats(max_width=40, any_modes=False))
    extra_i = data.draw(st.integers(0, 8))
    extra_f = data.draw(st.integers(0, 8))
    dst = FixedFormat(src.width + extra_i + extra_f + (0 if src.signed else 1), src.integer + extra_i + (0 if src.signed else 1),
                      True, data.draw(st.sampled_from(ROUNDING_MODES)), data.draw(st.sampled_from(OVERFLOW_MODES)))
    assume(dst.contains_format(src))
    vals = data.draw(codes_of(src))
    out, n_inexact, n_ovf = requantize(np.array(vals, dtype=src.code_dtype), src, dst)
    assert (n_inexact, n_ovf) == (0, 0)
    assert [to_fraction(int(v), dst) for v in out] == [to_fraction(v, src) for v in vals]


def test_quantize_float_wraps_past_2_pow_53():
    """float(2**54 - 1) rounds up to 2**54: the fast in-range check must not let 2**54 through unwrapped."""
    f = FixedFormat(54, 0, False, "TRN", "WRAP")
    assert [int(v) for v in f.quantize(np.array([1.0, 0.5]))] == [0, 1 << 53]
    s = FixedFormat(60, 6, True, "TRN", "SAT")
    assert int(s.quantize(np.array([64.0]))[0]) == s.max_code
