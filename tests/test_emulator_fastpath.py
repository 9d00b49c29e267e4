"""The fused float fast path of the emulator against its integer path (itself checked against the Fraction
reference in test_emulator_reference.py) on random networks: every rounding and overflow mode, saturation,
wrapping, negative fraction bits, relu into signed and unsigned formats, input offsets and shifts, score blocks
with gates, chunk and thread splits. Outputs, scores, trigger bits, statistics and kept tensors must be equal."""
from __future__ import annotations

import numpy as np
import pytest

import l1ad.firmware as fw
from l1ad.firmware import OVERFLOW_MODES, ROUNDING_MODES, FixedFormat
from l1ad.firmware.emulator import stage_profile

FAST = {"float32", "float64"}


def _fmt(rng, w_lo: int, w_hi: int, i_lo: int, i_hi: int, *, signed: bool | None = None, modes: bool = True) -> FixedFormat:
    w = int(rng.integers(w_lo, w_hi + 1))
    return FixedFormat(w, int(rng.integers(i_lo, i_hi + 1)), bool(rng.integers(2)) if signed is None else signed,
                       str(rng.choice(ROUNDING_MODES)) if modes else "TRN", str(rng.choice(OVERFLOW_MODES)) if modes else "WRAP")


def fast_model(seed: int, kind: str = "mse", *, wide: bool = False) -> fw.QModel:
    """A random network that the float path takes: exact accumulators, formats up to 12 bits (18 when wide).
    Integer bits may exceed the width (negative fraction bits); every output format has random modes."""
    rng = np.random.default_rng(seed)
    block = int(rng.choice([1, 3]))
    n_in = block * int(rng.integers(2, 5))
    hidden = [int(rng.integers(2, 7)) for _ in range(int(rng.integers(0, 3)))]
    sizes = [n_in] + hidden + ([n_in] if kind == "mse" else [int(rng.integers(1, 5))])
    inp = _fmt(rng, 4, 14, -3, 18)
    offs = (rng.integers(-3, 4, n_in) if rng.random() < 0.5 else np.zeros(n_in, dtype=int)) * 2 ** max(0, -inp.frac)
    shifts = rng.integers(-2, 4, n_in) if rng.random() < 0.7 else np.zeros(n_in, dtype=int)
    xq = _fmt(rng, 3, 18 if wide else 12, -3, 12, signed=True)
    layers = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        wf = _fmt(rng, 2, 8, -2, 4, signed=True, modes=False)
        bf = _fmt(rng, 2, 10, -2, 6, signed=True, modes=False)
        act = "linear" if k == len(sizes) - 2 else str(rng.choice(["relu", "linear"]))
        out = _fmt(rng, 2, 18 if wide else 12, -3, 14)
        layers.append(fw.DenseLayer(f"l{k}", rng.integers(wf.min_code, wf.max_code + 1, (a, b)), wf,
                                    rng.integers(bf.min_code, bf.max_code + 1, b), bf, act, out))
    score = None
    if kind:
        gate = None
        if kind == "mse":
            gate = (tuple(block * (j // block) for j in range(n_in)) if rng.random() < 0.5
                    else tuple(int(g) for g in rng.integers(0, n_in, n_in)) if rng.random() < 0.5 else None)
        fmts = {}
        if rng.random() < 0.5:
            fmts["format"] = _fmt(rng, 4, 20, -2, 12, signed=False)
        if rng.random() < 0.3:
            fmts["square_format"] = _fmt(rng, 3, 16, -2, 8, signed=False)
        if kind == "mse" and rng.random() < 0.4:
            fmts["diff_format"] = _fmt(rng, 3, 12, -2, 6, signed=True)
        score = fw.ScoreSpec(kind, gate=gate, **fmts)
    q = fw.QModel(input=fw.InputSpec(inp, offs, shifts), input_quantizer=xq, layers=layers, score=score, name=f"fast{seed}")
    if score is not None:
        sf = q.score.format
        q = q.with_thresholds([sf.min_code + int((sf.max_code - sf.min_code) * u) for u in rng.random(3)] + [sf.min_code - 1])
    return q


def inputs(q: fw.QModel, n: int, seed: int) -> np.ndarray:
    """On and off the input grid, beyond its range on both sides, exact zeros (absent objects), both limits."""
    rng = np.random.default_rng(seed)
    f = q.input.format
    lo, hi = float(f.min_value), float(f.max_value)
    x = rng.uniform(lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo), (n, q.n_inputs))
    x = np.where(rng.random(x.shape) < 0.6, f.to_float(f.quantize(x)), x)
    x[rng.random(x.shape) < 0.25] = 0.0
    x[0], x[1] = lo, hi
    return x


def assert_same(a: fw.EmulationResult, b: fw.EmulationResult) -> None:
    np.testing.assert_array_equal(np.asarray(a.outputs_int, dtype=object), np.asarray(b.outputs_int, dtype=object))
    if a.score_int is not None:
        np.testing.assert_array_equal(np.asarray(a.score_int, dtype=object), np.asarray(b.score_int, dtype=object))
    np.testing.assert_array_equal(a.trigger, b.trigger)
    assert a.stats == b.stats


@pytest.mark.parametrize("seed", range(60))
def test_fast_path_equals_integer_path_on_random_networks(seed):
    kind = ("mse", "mu2", "")[seed % 3]
    q = fast_model(seed, kind, wide=seed % 4 == 3)
    x = inputs(q, 300, seed)
    fast, slow = fw.emulate(q, x, chunk=128), fw.emulate(q, x, backend="int")
    assert_same(fast, slow)  # (the guard test below checks that the fast path ran on nearly all of these)
    kf, ks = fw.emulate(q, x[:60], keep=True, chunk=17), fw.emulate(q, x[:60], keep=True, backend="int")
    assert set(kf.tensors) == set(ks.tensors)
    for name in ks.tensors:
        np.testing.assert_array_equal(np.asarray(kf.tensors[name], dtype=object), np.asarray(ks.tensors[name], dtype=object), err_msg=name)


def test_random_networks_exercise_saturation_wrapping_rounding_and_negative_fractions():
    """Guards the generator above: the edge cases it is meant to cover do occur in the fast path."""
    seen = {"overflow": set(), "inexact": set(), "neg_frac": 0, "float32": 0, "float64": 0, "fast": 0}
    for seed in range(60):
        q = fast_model(seed, ("mse", "mu2", "")[seed % 3], wide=seed % 4 == 3)
        r = fw.emulate(q, inputs(q, 300, seed))
        fmts = q.tensor_formats()
        for name, st in r.stats.items():
            if name in fmts and st["overflow"]:
                seen["overflow"].add(fmts[name].overflow)
            if name in fmts and st["inexact"]:
                seen["inexact"].add(fmts[name].rounding)
        seen["neg_frac"] += any(L.output_format.frac < 0 for L in q.layers)
        seen["fast"] += set(r.backends.values()) <= FAST
        for b in r.backends.values():
            seen[b] = seen.get(b, 0) + 1
    assert seen["overflow"] == set(OVERFLOW_MODES)
    assert seen["inexact"] == set(ROUNDING_MODES)
    assert seen["fast"] >= 55 and seen["neg_frac"] >= 5 and seen["float32"] >= 10 and seen["float64"] >= 10, seen


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
@pytest.mark.parametrize("overflow", OVERFLOW_MODES)
def test_every_mode_in_a_saturating_layer(rounding, overflow):
    """A narrow output (with and without negative fraction bits) that rounds ties and overflows on both sides."""
    rng = np.random.default_rng(7)
    for out in (FixedFormat(5, 2, True, rounding, overflow), FixedFormat(4, 6, True, rounding, overflow),
                FixedFormat(4, 1, False, rounding, overflow)):
        for act in ("relu", "linear"):
            layer = fw.DenseLayer("d", rng.integers(-128, 128, (6, 4)), "ap_fixed<8,1>", rng.integers(-64, 64, 4), "ap_fixed<8,3>",
                                  act, out)
            q = fw.QModel(input=fw.InputSpec.identity(6, "ap_fixed<10,5>"), input_quantizer="ap_fixed<10,5,RND_CONV,SAT>",
                          layers=[layer])
            x = rng.normal(0, 6, (400, 6))
            fast, slow = fw.emulate(q, x), fw.emulate(q, x, backend="int")
            assert set(fast.backends.values()) <= FAST
            assert_same(fast, slow)
            assert fast.stats["d.out"]["inexact"] > 0 and fast.stats["d.out"]["overflow"] > 0, (out, act)


def test_gated_object_sums_equal_the_general_mask_and_integer_paths():
    """gate[j] = 3 * (j // 3): the strided per-object sum (keep=False) against the general mask (keep=True)."""
    rng = np.random.default_rng(3)
    sizes = [12, 5, 12]
    layers = [fw.DenseLayer(f"d{k}", rng.integers(-128, 128, (a, b)), "ap_fixed<8,1>", rng.integers(-128, 128, b), "ap_fixed<8,3>",
                            "relu" if k == 0 else "linear", "ap_ufixed<8,3,RND_CONV,SAT>" if k == 0 else "ap_fixed<12,4,RND_CONV,SAT>")
              for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
    q = fw.QModel(input=fw.InputSpec(FixedFormat(16, 16), np.zeros(12, dtype=int), np.tile([6, 7, 7], 4)),
                  input_quantizer="ap_fixed<12,4,RND_CONV,SAT>", layers=layers,
                  score=fw.ScoreSpec("mse", tuple(3 * (j // 3) for j in range(12))), thresholds=(100, 1000))
    x = rng.integers(-700, 700, (2000, 12)).astype(np.float32)
    x[:, 0::3] = np.abs(x[:, 0::3]) * (rng.random((2000, 4)) < 0.5)
    fast = fw.emulate(q, x)
    assert_same(fast, fw.emulate(q, x, keep=True))
    assert_same(fast, fw.emulate(q, x, backend="int"))
    assert 0 < np.count_nonzero(fast.score_int) < len(x)


def test_chunks_threads_and_empty_input_do_not_change_results():
    q = fast_model(5, "mse")
    x = inputs(q, 257, 5)
    ref = fw.emulate(q, x, backend="int")
    for kw in ({"chunk": 1, "threads": 1}, {"chunk": 7, "threads": 3}, {"chunk": 256, "threads": 2}, {"chunk": 10**6}):
        assert_same(fw.emulate(q, x, **kw), ref)
    empty = fw.emulate(q, x[:0])
    assert empty.outputs_int.shape == (0, q.n_outputs) and empty.score_int.shape == (0,)


def test_stage_profile_times_the_fast_path_and_refuses_other_models():
    q = fast_model(2, "mse")
    prof = stage_profile(q, inputs(q, 500, 2), chunk=100)
    assert prof["layers: GEMM and bias"] > 0 and prof["score: gate and sum"] > 0
    slow = fw.QModel(input=fw.InputSpec.identity(3, "ap_fixed<60,30>"), input_quantizer="ap_fixed<60,30>",
                     layers=[fw.DenseLayer("d", np.ones((3, 2), dtype=int), "ap_fixed<8,1>", np.zeros(2, dtype=int), "ap_fixed<8,3>",
                                           "linear", "ap_fixed<60,30>")])
    with pytest.raises(ValueError, match="does not take the float fast path"):
        stage_profile(slow, np.zeros((4, 3)))
