"""The vectorised emulator against a slow, independent reference written with Python integers and Fractions
(event by event, value by value, hls4ml accumulation order), on random models covering every rounding and
overflow mode, narrow accumulators, integer input scaling, object masks and both score kinds."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import l1ad.firmware as fw
from l1ad.firmware import OVERFLOW_MODES, ROUNDING_MODES, FixedFormat
from l1ad.firmware.fixed import ref_quantize


# ---------------------------------------------------------------------- the reference
def ref_emulate(q: fw.QModel, x: np.ndarray) -> tuple[list[list[int]], list[int] | None, list[list[bool]]]:
    """Event by event with Fractions. Every accumulator follows hls4ml: acc = (acc_t) b; acc = (acc_t)(acc + (acc_t)p)."""
    outs, scores, trig = [], [], []
    for row in np.asarray(x, dtype=np.float64):
        xin = [ref_quantize(Fraction(float(v)), q.input.format) for v in row]
        xin_v = [c * q.input.format.lsb for c in xin]
        scaled = [(v - int(o)) * Fraction(2) ** (-int(s)) for v, o, s in zip(xin_v, q.input.offset, q.input.shift)]
        for v in scaled:  # the scaled format must hold the scaled value exactly
            c = v / q.scaled_format.lsb
            assert c.denominator == 1 and q.scaled_format.min_code <= c.numerator <= q.scaled_format.max_code
        xq = [ref_quantize(v, q.input_quantizer) * q.input_quantizer.lsb for v in scaled]
        h = xq
        for L in q.layers:
            af, wl, bl = L.accum_format, L.weight_format.lsb, L.bias_format.lsb
            new = []
            for j in range(L.n_out):
                acc = ref_quantize(int(L.bias[j]) * bl, af) * af.lsb
                for i in range(L.n_in):
                    p = h[i] * int(L.weights[i, j]) * wl
                    pq = ref_quantize(p, af) * af.lsb
                    acc = ref_quantize(acc + pq, af) * af.lsb
                if L.activation == "relu":
                    acc = max(acc, Fraction(0))
                new.append(ref_quantize(acc, L.output_format) * L.output_format.lsb)
            h = new
        outs.append([int(v / q.output_format.lsb) for v in h])
        if q.score is None:
            scores.append(None)
            trig.append([])
            continue
        sc = q.score
        if sc.kind == "mse":
            terms = [ref_quantize(a - b, sc.diff_format) * sc.diff_format.lsb for a, b in zip(xq, h)]
        else:
            terms = list(h)
        sq = [ref_quantize(t * t, sc.square_format) * sc.square_format.lsb for t in terms]
        if sc.gate is not None:
            sq = [v if xin[g] > 0 else Fraction(0) for v, g in zip(sq, sc.gate)]
        acc = Fraction(0)
        for v in sq:
            acc = ref_quantize(acc + ref_quantize(v, sc.accum_format) * sc.accum_format.lsb, sc.accum_format) * sc.accum_format.lsb
        code = ref_quantize(acc, sc.format)
        scores.append(code)
        trig.append([code > t for t in q.thresholds])
    return outs, (None if q.score is None else scores), trig


# ---------------------------------------------------------------------- random models
def _fmt(rng, w_lo, w_hi, i_lo, i_hi, signed=None, modes=True):
    w = int(rng.integers(w_lo, w_hi + 1))
    return FixedFormat(w, int(rng.integers(i_lo, i_hi + 1)), bool(rng.integers(2)) if signed is None else signed,
                       str(rng.choice(ROUNDING_MODES)) if modes else "TRN", str(rng.choice(OVERFLOW_MODES)) if modes else "WRAP")


def random_model(seed: int, *, kind: str = "mse", narrow: bool = True, n_in: int = 6, wide: bool = False) -> fw.QModel:
    rng = np.random.default_rng(seed)
    sizes = [n_in] + [int(rng.integers(2, 6)) for _ in range(int(rng.integers(0, 3)))] + ([n_in] if kind == "mse" else [int(rng.integers(1, 4))])
    inp_fmt = _fmt(rng, 4, 12, -2, 10, modes=True)
    offs = rng.integers(-3, 4, n_in) if rng.random() < 0.5 else np.zeros(n_in, dtype=int)
    offs = offs * 2 ** max(0, -inp_fmt.frac)  # offsets must lie on the input grid
    shifts = rng.integers(-2, 4, n_in) if rng.random() < 0.7 else np.zeros(n_in, dtype=int)
    xq = _fmt(rng, 3, 40 if wide else 12, -2, 8, signed=True)
    layers = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        wf = _fmt(rng, 2, 30 if wide else 8, -2, 3, signed=True, modes=False)
        bf = _fmt(rng, 2, 10, -2, 6, signed=bool(rng.integers(2)) or True, modes=False)
        W = rng.integers(wf.min_code, wf.max_code + 1, (a, b))
        B = rng.integers(bf.min_code, bf.max_code + 1, b)
        last = k == len(sizes) - 2
        act = "linear" if last else str(rng.choice(["relu", "linear"]))
        out = _fmt(rng, 2, 12, -1, 6, signed=bool(rng.integers(2)))
        acc = None
        if narrow and rng.random() < 0.4:
            acc = _fmt(rng, 4, 16, 0, 8, signed=True)
        layers.append(fw.DenseLayer(f"l{k}", W, wf, B, bf, act, out, accum_format=acc))
    score = None
    if kind:
        gate = None
        if kind == "mse" and rng.random() < 0.7:
            gate = tuple(int(g) for g in rng.integers(0, n_in, n_in))
        fmts = {}
        if narrow and rng.random() < 0.5:
            fmts["format"] = _fmt(rng, 4, 20, 0, 10, signed=False)
        if narrow and rng.random() < 0.3:
            fmts["accum_format"] = _fmt(rng, 4, 20, 0, 10, signed=bool(rng.integers(2)))
        if narrow and rng.random() < 0.3:
            fmts["square_format"] = _fmt(rng, 3, 16, 0, 8, signed=False)
        if narrow and kind == "mse" and rng.random() < 0.3:
            fmts["diff_format"] = _fmt(rng, 3, 12, 0, 6, signed=True)
        score = fw.ScoreSpec(kind, gate=gate, **fmts)
    q = fw.QModel(input=fw.InputSpec(inp_fmt, offs, shifts), input_quantizer=xq, layers=layers, score=score, name=f"rand{seed}")
    if score is not None:
        sf = q.score.format
        span = sf.max_code - sf.min_code
        thr = [sf.min_code + int(span * float(u)) for u in rng.random(3)]  # any width (may exceed int64)
        q = q.with_thresholds(thr + [sf.min_code - 1, sf.max_code])
    return q


def random_inputs(q: fw.QModel, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = q.input.format
    lo, hi = float(f.min_value), float(f.max_value)
    x = rng.uniform(lo - 0.3 * (hi - lo), hi + 0.3 * (hi - lo), (n, q.n_inputs))
    on_grid = rng.random((n, q.n_inputs)) < 0.5
    x = np.where(on_grid, f.to_float(f.quantize(x)), x)
    x[rng.random((n, q.n_inputs)) < 0.2] = 0.0
    x[0] = lo
    x[1] = hi
    return x


def _check(q, x, **kw):
    r = fw.emulate(q, x, **kw)
    outs, scores, trig = ref_emulate(q, x)
    np.testing.assert_array_equal(r.outputs_int, np.array(outs, dtype=np.int64).reshape(r.outputs_int.shape))
    if q.score is not None:
        assert [int(v) for v in r.score_int] == scores
        np.testing.assert_array_equal(r.trigger, np.array(trig, dtype=bool).reshape(r.trigger.shape))
    return r


# ---------------------------------------------------------------------- tests
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), kind=st.sampled_from(["mse", "mu2", None]))
def test_emulator_matches_reference(seed, kind):
    q = random_model(seed, kind=kind or "")
    x = random_inputs(q, 40, seed + 1)
    r = _check(q, x)
    ri = fw.emulate(q, x, backend="i64")  # the integer path agrees with the (usually float) auto path, stats too
    np.testing.assert_array_equal(ri.outputs_int, r.outputs_int)
    np.testing.assert_array_equal(ri.trigger, r.trigger)
    assert ri.stats == r.stats


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6))
def test_emulator_wide_formats_python_ints(seed):
    q = random_model(seed, kind="mse", wide=True)
    x = random_inputs(q, 20, seed)
    r = _check(q, x)
    for b in ("i64", "object"):
        r2 = fw.emulate(q, x, backend=b)
        np.testing.assert_array_equal(np.asarray(r2.outputs_int, dtype=object), np.asarray(r.outputs_int, dtype=object))
        np.testing.assert_array_equal(r2.score_int, r.score_int)


def test_backends_agree_on_l1_sized_model():
    """57-32-16-8-16-32-57 with 16-bit inputs: f64 BLAS (first layer), f32 BLAS (others), i64 and Python ints agree."""
    rng = np.random.default_rng(5)
    sizes = [57, 32, 16, 8, 16, 32, 57]
    layers = [fw.DenseLayer(f"d{k}", rng.integers(-128, 128, (a, b)), "ap_fixed<8,1>", rng.integers(-128, 128, b), "ap_fixed<8,3>",
                            "linear" if k == 5 else "relu", "ap_fixed<16,7,RND_CONV,SAT>" if k == 5 else "ap_ufixed<8,3,RND_CONV,SAT>")
              for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
    q = fw.QModel(input=fw.InputSpec.identity(57, "ap_fixed<16,6>"), input_quantizer="ap_fixed<16,7,RND_CONV,SAT>", layers=layers,
                  score=fw.ScoreSpec("mse", fw.default_gate()), thresholds=(0, 10**6, 10**9))
    x = rng.normal(0, 8, (3000, 57))
    x[rng.random((3000, 57)) < 0.3] = 0
    r = fw.emulate(q, x)
    assert r.backends["d0"] == "float64" and r.backends["d1"] == "float32"  # float fast path
    ri = fw.emulate(q, x, backend="int")
    assert ri.backends["d0"] == "f64" and ri.backends["d1"] == "f32"  # int64 path with exact BLAS products
    np.testing.assert_array_equal(ri.outputs_int, r.outputs_int)
    np.testing.assert_array_equal(ri.score_int, r.score_int)
    assert ri.stats == r.stats
    for b in ("i64", "object"):
        r2 = fw.emulate(q, x[:500], backend=b)
        assert set(r2.backends.values()) == {b}
        np.testing.assert_array_equal(np.asarray(r2.outputs_int, dtype=np.int64), r.outputs_int[:500])
        np.testing.assert_array_equal(np.asarray(r2.score_int, dtype=np.int64), r.score_int[:500])
    _check(q, x[:25])


def test_chunking_and_threads_do_not_change_results():
    q = random_model(11, kind="mse")
    x = random_inputs(q, 101, 3)
    a = fw.emulate(q, x, keep=True, threads=1)
    for kw in ({"chunk": 7, "threads": 1}, {"chunk": 7, "threads": 3}, {"chunk": 10, "threads": 2, "backend": "int"}):
        b = fw.emulate(q, x, keep=True, **kw)
        np.testing.assert_array_equal(a.outputs_int, b.outputs_int)
        np.testing.assert_array_equal(a.score_int, b.score_int)
        assert a.stats == b.stats
        assert set(a.tensors) == set(b.tensors)
        for k in a.tensors:
            np.testing.assert_array_equal(a.tensors[k], b.tensors[k])


def test_keep_returns_every_tensor_in_its_format():
    q = random_model(12, kind="mse")
    x = random_inputs(q, 64, 4)
    r = fw.emulate(q, x, keep=True)
    fmts = q.tensor_formats()
    for name, codes in r.tensors.items():
        f = fmts[name]
        c = np.asarray(codes, dtype=object)
        assert all(f.min_code <= int(v) <= f.max_code for v in c.ravel()), name
    np.testing.assert_array_equal(r.tensors[f"{q.layers[-1].name}.out"], r.outputs_int)
    assert r.xq_int.shape == (64, q.n_inputs)
