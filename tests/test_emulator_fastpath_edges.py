"""Edges of the float fast path's shortcuts, against the integer path: the overflow checks the interval bounds
skip (``_fits`` must be conservative for every rounding and overflow mode), the input stage that bounds the raw
input from the scaled codes (edge codes, values just out of range, huge finite values, NaN/inf in a late
chunk, float64 input), and the output codes kept as floats until ``outputs_int`` is read."""
from __future__ import annotations

import numpy as np
import pytest

import l1ad.firmware as fw
from l1ad.firmware import OVERFLOW_MODES, ROUNDING_MODES, FixedFormat
from l1ad.firmware.emulator import _fits
from l1ad.firmware.fixed import requantize

from test_emulator_fastpath import assert_same


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
@pytest.mark.parametrize("overflow", OVERFLOW_MODES)
def test_fits_is_conservative_for_every_mode(rounding, overflow):
    """Whenever _fits says a side cannot overflow, requantizing every code in the bounds (after relu) overflows
    on no value of that side; and it does say so for bounds well inside the format."""
    rng = np.random.default_rng(11)
    said = 0
    for _ in range(150):
        dst = FixedFormat(int(rng.integers(2, 9)), int(rng.integers(-2, 6)), bool(rng.integers(2)), rounding, overflow)
        frac = dst.frac + int(rng.integers(-3, 5))
        lo, hi = sorted(int(v) for v in rng.integers(-(1 << 9), 1 << 9, 2))
        relu = bool(rng.integers(2))
        lo_ok, hi_ok = _fits(([lo], [hi]), frac, dst, relu)
        codes = np.arange(lo, hi + 1, dtype=np.int64)
        if relu:
            codes = np.maximum(codes, 0)
        src = FixedFormat(24, 24 - frac, True)
        for part, ok in ((codes[codes < 0], lo_ok), (codes[codes >= 0], hi_ok)):
            if ok and part.size:
                assert requantize(part, src, dst)[2] == 0, (dst, frac, lo, hi, relu)
        said += lo_ok + hi_ok
        small = FixedFormat(dst.width + 4, dst.integer + 4, dst.signed, rounding, overflow)
        assert all(_fits(([dst.min_code >> 1], [dst.max_code >> 1]), dst.frac, small, relu))
    assert said > 0


def _model(out_fmt: str, relu: bool, scaler: bool = True) -> fw.QModel:
    rng = np.random.default_rng(5)
    layer = fw.DenseLayer("d", rng.integers(-8, 8, (6, 6)), "ap_fixed<4,1>", rng.integers(-8, 8, 6), "ap_fixed<4,2>",
                          "relu" if relu else "linear", out_fmt)
    inp = (fw.InputSpec(FixedFormat(12, 12), np.array([0, 3, -2, 0, 1, 0]), np.array([4, 5, 5, 4, 5, 5])) if scaler
           else fw.InputSpec.identity(6, "ap_fixed<10,5>"))
    return fw.QModel(input=inp, input_quantizer="ap_fixed<10,4,RND_CONV,SAT>", layers=[layer],
                     score=fw.ScoreSpec("mse", tuple(3 * (j // 3) for j in range(6))), thresholds=(10, 1000))


def test_bound_proven_layers_skip_their_checks_and_stay_exact():
    """A wide output format (no overflow possible) and a narrow one (overflows): both equal the integer path."""
    wide, narrow = _model("ap_fixed<16,10,RND,SAT>", False), _model("ap_fixed<5,2,RND,SAT>", True)
    fl = fw.emulator._plan(wide)["float"]["layers"][0]
    assert not fl.check_hi and not fl.check_lo
    assert fw.emulator._plan(narrow)["float"]["layers"][0].check_hi
    x = np.random.default_rng(1).integers(-2048, 2048, (3000, 6)).astype(np.float32)
    for q in (wide, narrow):
        assert_same(fw.emulate(q, x, chunk=500), fw.emulate(q, x, backend="int"))
    assert fw.emulate(narrow, x).stats["d.out"]["overflow"] > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_edges_equal_the_integer_path(dtype):
    """Edge codes, one beyond each edge, off-grid values, huge finite values (float32: the scaling overflows to
    inf) in separate chunks: counted and saturated like the integer path; chunks without them take the shortcut."""
    q = _model("ap_fixed<8,3,RND_CONV,SAT>", True)
    f = q.input.format
    rng = np.random.default_rng(2)
    x = rng.integers(-300, 300, (1200, 6)).astype(dtype)
    x[0], x[1] = f.min_code, f.max_code
    x[110, 2], x[220, 4] = f.min_code - 1, f.max_code + 1
    x[330, 1], x[440, 5] = 0.5, -7.25
    x[550, 0] = np.finfo(dtype).max / 2
    x[660, 3] = -np.finfo(dtype).max
    fast = fw.emulate(q, x, chunk=100)
    assert set(fast.backends.values()) == {"float32"}
    assert_same(fast, fw.emulate(q, x, backend="int"))
    assert fast.stats["input"] == {"inexact": 2, "overflow": 4}
    clean = fw.emulate(q, x[700:], chunk=100)
    assert clean.stats["input"] == {"inexact": 0, "overflow": 0}
    assert_same(clean, fw.emulate(q, x[700:], backend="int"))


def test_nan_or_inf_in_a_late_chunk_is_refused_with_its_row():
    q = _model("ap_fixed<8,3,RND_CONV,SAT>", True)
    x = np.zeros((5000, 6), dtype=np.float32)
    for bad, col in ((np.nan, 4), (np.inf, 0), (-np.inf, 5)):
        y = x.copy()
        y[4321, col] = bad
        y[4999, 1] = bad
        for threads in (1, 2):
            with pytest.raises(fw.EmulatorInputError, match=f"NaN/inf in 2 event.*row 4321, column {col}"):
                fw.emulate(q, y, chunk=1000, threads=threads)


def test_output_codes_are_floats_until_read_as_int64():
    q = _model("ap_fixed<8,3,RND_CONV,SAT>", False)
    x = np.random.default_rng(4).integers(-500, 500, (400, 6)).astype(np.float32)
    r, ref = fw.emulate(q, x), fw.emulate(q, x, backend="int")
    assert r.codes.dtype == np.float32 and len(r) == 400
    np.testing.assert_array_equal(r.outputs, ref.outputs)  # real values straight from the float codes
    out = r.outputs_int
    assert out.dtype == np.int64 and r.outputs_int is out  # converted once, then kept
    np.testing.assert_array_equal(out, ref.outputs_int)
