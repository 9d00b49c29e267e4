"""The compiled integer kernel (firmware.native) against the NumPy path, bit for bit: output codes, score codes,
trigger bits and every statistic, on the default architecture, the autoencoder, the bench's stand-in networks
(4-bit weights included), random networks of every rounding and overflow mode, and edge inputs (saturating raw
values, the input format's extreme codes, off-grid values and exact rounding ties, NaN/inf, partial tiles); and
the refusals (other layer kinds, narrow accumulators, keep=True, no compiler) that leave the NumPy path in charge."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import l1ad.firmware as fw
from l1ad.firmware import OVERFLOW_MODES, ROUNDING_MODES, FixedFormat, native
from l1ad.firmware.ir import ConvLayer

from test_emulator_fastpath import fast_model, inputs

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found: the native kernel is compiled with it")


def assert_same(a: fw.EmulationResult, b: fw.EmulationResult) -> None:
    """Everything a caller reads: outputs (int64), score codes, trigger bits, statistics (so n_overflow too)."""
    assert a.outputs_int.dtype == b.outputs_int.dtype == np.int64
    np.testing.assert_array_equal(a.outputs_int, b.outputs_int)
    if b.score_int is None:
        assert a.score_int is None
    else:
        np.testing.assert_array_equal(a.score_int, b.score_int)
    np.testing.assert_array_equal(a.trigger, b.trigger)
    assert a.stats == b.stats
    assert a.n_overflow == b.n_overflow


def check(q: fw.QModel, x: np.ndarray, **kw) -> fw.EmulationResult:
    """The native result on x, asserted equal to the NumPy path's (and run on the kernel)."""
    r = fw.emulate(q, x, backend="native", **kw)
    assert set(r.backends.values()) == {"native"}
    assert_same(r, fw.emulate(q, x, backend="numpy"))
    return r


def edge_rows(q: fw.QModel, rng: np.random.Generator) -> np.ndarray:
    """Raw inputs at and beyond the input format's extreme codes, off the grid (exact ties of its LSB included),
    zeros and -0.0, in separate rows."""
    f = q.input.format
    lsb, lo, hi = float(f.lsb), float(f.min_value), float(f.max_value)
    vals = [lo, hi, lo - lsb, hi + lsb, 10 * (hi - lo), -10 * (hi - lo), 0.0, -0.0, 0.5 * lsb, -0.5 * lsb, 2.5 * lsb,
            -1.5 * lsb, 0.25 * lsb]
    rows = rng.choice(vals, size=(6 * len(vals), q.n_inputs))
    rows[: len(vals)] = np.array(vals)[:, None]
    return rows


# ---------------------------------------------------------------------- the project's networks
@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_default_architecture_and_autoencoder(kind):
    """ArchitectureConfig.default('vae') (the deployed encoder, mu^2 score) and the AE (masked MSE), imported from
    QKeras as the pipeline does, on L1 events plus edge rows; any thread split gives the same codes."""
    from l1ad.trigger.models.arch import ArchitectureConfig
    from test_default_design import _default_qmodel, _events

    q = _default_qmodel(ArchitectureConfig.default(kind))
    rng = np.random.default_rng(1)
    x = np.concatenate([_events(4000, 3), edge_rows(q, rng)]).astype(np.float32)
    r = check(q, x)
    assert r.stats["input"]["inexact"] > 0 and r.stats["input"]["overflow"] > 0
    assert_same(fw.emulate(q, x, backend="native", threads=1), r)
    assert_same(fw.emulate(q, x[:37], backend="native", threads=3), fw.emulate(q, x[:37], backend="numpy"))


@pytest.mark.parametrize("net", ["default", "w4"])
def test_bench_networks(net):
    """The stand-in networks of bench_da4ml: the encoder with 8-bit and with 4-bit weights, float64 input."""
    from bench.bench_da4ml import bench_network

    q = bench_network(net).with_thresholds((300, 1000))
    rng = np.random.default_rng(2)
    x = rng.integers(-3000, 3000, (3000, q.n_inputs)).astype(np.float64)
    x[:, 0::3] = np.abs(x[:, 0::3]) * (rng.random((3000, 19)) < 0.6)
    r = check(q, np.concatenate([x, edge_rows(q, rng)]))
    assert r.stats["dense1.out"]["overflow"] > 0 and r.trigger.any(axis=0).all()


# ---------------------------------------------------------------------- random networks, every mode
def random_net(seed: int) -> fw.QModel:
    """A network in the style of bench_da4ml.bench_network with random sizes, formats and modes: weights of 3 to 10
    bits, output formats that round (ties included) and overflow, input offsets and shifts, one of the scores."""
    rng = np.random.default_rng(seed)
    modes = lambda: (str(rng.choice(ROUNDING_MODES)), str(rng.choice(OVERFLOW_MODES)))  # noqa: E731
    n = 3 * int(rng.integers(2, 8))
    shift = rng.integers(-1, 8, n)
    offset = rng.integers(-4, 5, n) * (rng.random(n) < 0.5)
    w = int(rng.integers(8, 19))
    inp = fw.InputSpec(FixedFormat(w, int(rng.integers(4, w + 1)), True, *modes()), offset, shift)
    xq = FixedFormat(int(rng.integers(6, 15)), int(rng.integers(2, 6)), True, *modes())
    kind = str(rng.choice(["mse", "mu2", "out"]))
    sizes = [int(rng.integers(2, 20)) for _ in range(int(rng.integers(1, 4)))]
    sizes.append(n if kind == "mse" else 1 if kind == "out" else int(rng.integers(2, 9)))
    layers, prev = [], n
    for li, m in enumerate(sizes):
        wbits = int(rng.integers(3, 11))
        wf, bf = FixedFormat(wbits, int(rng.integers(-1, 3)), True), FixedFormat(int(rng.integers(4, 10)), int(rng.integers(1, 5)), True)
        W = rng.integers(wf.min_code, wf.max_code + 1, (prev, m))
        b = rng.integers(bf.min_code, bf.max_code + 1, m)
        last = li == len(sizes) - 1
        relu = not last and rng.random() < 0.8
        of = FixedFormat(int(rng.integers(4, 13)), int(rng.integers(1, 6)), bool(not relu or rng.random() < 0.3), *modes())
        layers.append(fw.DenseLayer(f"dense{li + 1}", W, wf, b, bf, "relu" if relu else "linear", of))
        prev = m
    fmts = {"format": FixedFormat(int(rng.integers(6, 20)), int(rng.integers(2, 12)), kind != "out", *modes())}
    if kind != "out" and rng.random() < 0.5:
        fmts["square_format"] = FixedFormat(int(rng.integers(6, 16)), int(rng.integers(1, 8)), False, *modes())
    if kind == "mse" and rng.random() < 0.5:
        fmts["diff_format"] = FixedFormat(int(rng.integers(5, 12)), int(rng.integers(1, 6)), True, *modes())
    gate = tuple(3 * (j // 3) for j in range(n)) if kind == "mse" and rng.random() < 0.7 else None
    q = fw.QModel(input=inp, input_quantizer=xq, layers=layers, score=fw.ScoreSpec(kind, gate=gate, **fmts), name=f"random{seed}")
    sf = q.score.format
    return q.with_thresholds([sf.min_code - 1, (sf.min_code + sf.max_code) // 2, sf.max_code])


@pytest.mark.parametrize("seed", range(6))
def test_random_networks(seed):
    q = random_net(seed)
    x = inputs(q, 2500, seed)
    check(q, np.concatenate([x, edge_rows(q, np.random.default_rng(seed))]))


@pytest.mark.parametrize("seed", [0, 3, 7, 11])
def test_random_small_networks_of_the_fast_path_tests(seed):
    """test_emulator_fastpath's generator: negative fraction bits, unsigned relu outputs, arbitrary gates."""
    q = fast_model(seed, ("mse", "mu2", "")[seed % 3], wide=seed % 4 == 3)
    check(q, inputs(q, 1000, seed))


def mode_chain(first: int) -> fw.QModel:
    """Eight features through 7 layers, each with another rounding mode and overflow mode (layer k: rounding
    ROUNDING_MODES[k], overflow OVERFLOW_MODES[(first + k) % 4]), weights of 2 fraction bits dropped again at the
    output (a quarter of the values are exact ties), narrow outputs that overflow on both sides."""
    rng = np.random.default_rng(first)
    layers = []
    for k, rounding in enumerate(ROUNDING_MODES):
        of = FixedFormat(5, 3, k % 3 != 2, rounding, OVERFLOW_MODES[(first + k) % 4])
        layers.append(fw.DenseLayer(f"m{k}", rng.integers(-8, 8, (8, 8)), "ap_fixed<4,2>", rng.integers(-8, 8, 8), "ap_fixed<6,3>",
                                    "relu" if k % 3 == 1 else "linear", of))
    return fw.QModel(input=fw.InputSpec.identity(8, "ap_fixed<10,6>"), input_quantizer="ap_fixed<5,3,RND_CONV,SAT>",
                     layers=layers, score=fw.ScoreSpec("mu2", format="ap_ufixed<8,6,RND_INF,SAT_SYM>"), thresholds=(5, 60))


@pytest.mark.parametrize("first", [0, 2])
def test_every_rounding_and_overflow_mode_with_ties(first):
    q = mode_chain(first)
    x = np.random.default_rng(first).uniform(-40, 40, (3000, 8))
    r = check(q, x)
    kept = fw.emulate(q, x, backend="numpy", keep=True)
    for L in q.layers:  # the guard: every layer rounds exact ties and overflows
        acc = np.asarray(kept.tensors[f"{L.name}.accum"])
        acc = np.maximum(acc, 0) if L.activation == "relu" else acc
        assert np.count_nonzero((acc & 3) == 2) > 0, L.name
        assert r.stats[f"{L.name}.out"]["inexact"] > 0 and r.stats[f"{L.name}.out"]["overflow"] > 0, L.name


def test_wide_formats_take_the_32_and_64_bit_lanes():
    """The layouts besides 16-bit pairs: a -32768 weight (no pairs, 32-bit lanes); activations beyond 16 bits and
    partial sums beyond 32 bits (64-bit lanes), whose codes then go into pairs for the next layer; a 40-bit output
    (64-bit requantization, 64-bit output codes)."""
    rng = np.random.default_rng(4)
    w2 = rng.integers(-2**15, 2**15, (5, 3))
    w2[0, 0] = -2**15
    narrow = fw.QModel(input=fw.InputSpec.identity(6, "ap_fixed<10,6>"), input_quantizer="ap_fixed<8,5,RND,SAT>", layers=[
        fw.DenseLayer("a", rng.integers(-128, 128, (6, 5)), "ap_fixed<8,4>", rng.integers(-9, 9, 5), "ap_fixed<6,3>", "relu",
                      "ap_ufixed<12,6,RND_CONV,SAT>"),
        fw.DenseLayer("b", w2, "ap_fixed<16,2>", [3, -3, 0], "ap_fixed<8,4>", "linear", "ap_fixed<14,8,TRN_ZERO,SAT_ZERO>")])
    wide = fw.QModel(input=fw.InputSpec.identity(6, "ap_fixed<24,10>"), input_quantizer="ap_fixed<20,8,RND_INF,SAT_SYM>", layers=[
        fw.DenseLayer("a", rng.integers(-2**15, 2**15, (6, 5)), "ap_fixed<16,2>", rng.integers(-99, 99, 5), "ap_fixed<8,4>",
                      "relu", "ap_ufixed<20,6,RND,SAT>"),
        fw.DenseLayer("b", rng.integers(-2**11, 2**11, (5, 4)), "ap_fixed<12,2>", rng.integers(-99, 99, 4), "ap_fixed<8,4>",
                      "linear", "ap_fixed<10,4,RND_MIN_INF,SAT>"),
        fw.DenseLayer("c", rng.integers(-8, 8, (4, 3)), "ap_fixed<4,1>", [1, 2, 3], "ap_fixed<4,2>", "linear",
                      "ap_fixed<40,20,RND_ZERO,WRAP>", accum_format="ap_fixed<40,20>")])
    layouts = {"narrow": [(True, "int32_t", "int32_t"), (False, "int32_t", "int32_t")],
               "wide": [(False, "int64_t", "int64_t"), (False, "int64_t", "int64_t"), (True, "int32_t", "int64_t")]}
    for name, q in (("narrow", narrow), ("wide", wide)):
        lay = native._layout(q)
        assert [(L.paired, L.acc, L.work) for L in lay["layers"]] == layouts[name]
        x = rng.uniform(-600, 600, (2000, 6))
        r = check(q, np.concatenate([x, edge_rows(q, rng)]))
        assert r.stats["xq"]["overflow"] > 0 and r.stats["b.out"]["overflow"] > 0, (name, r.stats)
    assert r.codes.dtype == np.int64


def test_bias_finer_than_the_products_and_padded_neuron_blocks():
    """Biases with more fraction bits than input x weight (added after the pair products, shifted), layer widths
    that are not a multiple of the neuron block (2, 7): the padding neurons read and write nothing real."""
    rng = np.random.default_rng(12)
    sizes, layers, prev = (2, 7), [], 6
    for k, m in enumerate(sizes):
        layers.append(fw.DenseLayer(f"f{k}", rng.integers(-8, 8, (prev, m)), "ap_fixed<4,2>", rng.integers(-2**9, 2**9, m),
                                    "ap_fixed<10,1>", "relu", "ap_ufixed<10,11,RND_CONV,SAT_ZERO>"))
        prev = m
    q = fw.QModel(input=fw.InputSpec.identity(6, "ap_fixed<10,6>"), input_quantizer="ap_fixed<8,4,RND,SAT>", layers=layers,
                  score=fw.ScoreSpec("mu2"), thresholds=(10, 100))
    assert all(L.shift_p > 0 and L.paired for L in native._layout(q)["layers"])
    check(q, np.random.default_rng(3).uniform(-40, 40, (3000, 6)))


def test_portable_build_without_avx2(monkeypatch):
    """The kernel compiled for plain x86-64 (the portable pair product, no vpmaddwd) gives the same codes."""
    monkeypatch.setattr(native, "FLAGS", tuple("-march=x86-64" if f == "-march=native" else f for f in native.FLAGS))
    q = fast_model(1, "mu2")
    check(q, inputs(q, 500, 1))


# ---------------------------------------------------------------------- edge inputs
def test_edge_inputs_partial_tiles_and_dtypes():
    q = random_net(2)
    rng = np.random.default_rng(9)
    x = np.concatenate([inputs(q, 200, 9), edge_rows(q, rng)])
    for n in (0, 1, 15, 16, 17, 33):
        r = check(q, x[:n])
        assert r.outputs_int.shape == (n, q.n_outputs)
    codes = q.input.format.quantize(x)
    for xx in (codes.astype(np.int32), codes.astype(np.int64), q.input.format.to_float(codes).astype(np.float32)):
        check(q, xx)
    check(q, x.reshape(len(x), q.n_inputs // 3, 3) if q.n_inputs % 3 == 0 else x)


def test_nan_inf_and_strict_are_refused_like_the_numpy_path():
    q = random_net(1)
    x = inputs(q, 300, 1)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[217, 2] = bad
        msgs = []
        for backend in ("native", "numpy"):
            with pytest.raises(fw.EmulatorInputError, match="NaN/inf in 1 event.*row 217, column 2") as e:
                fw.emulate(q, y, backend=backend)
            msgs.append(str(e.value))
        assert msgs[0] == msgs[1]
    with pytest.raises(fw.EmulatorInputError, match="input value.* off the grid .*strict=True"):
        fw.emulate(q, x, backend="native", strict=True)
    f = q.input.format
    ok = f.to_float(f.quantize(x))
    check(q, ok, strict=True)


def test_values_the_kernel_leaves_to_numpy():
    """A wrapping input format and a raw value far beyond 62 bits: the NumPy path answers (the same codes)."""
    q = fw.QModel(input=fw.InputSpec.identity(3, "ap_fixed<12,6>"), input_quantizer="ap_fixed<8,4,RND,SAT>",
                  layers=[fw.DenseLayer("d", [[1, 2], [3, -4], [5, 6]], "ap_fixed<4,2>", [0, 1], "ap_fixed<4,2>", "linear",
                                        "ap_fixed<10,6,RND,WRAP>")])
    x = np.random.default_rng(0).uniform(-40, 40, (100, 3))
    x[50, 1] = 1e30
    r = fw.emulate(q, x, backend="native")
    assert set(r.backends.values()) == {"float64"} or set(r.backends.values()) == {"float32"}
    assert_same(r, fw.emulate(q, x, backend="int"))


# ---------------------------------------------------------------------- refusals and the auto choice
def _conv_model() -> fw.QModel:
    rng = np.random.default_rng(0)
    conv = ConvLayer("c", rng.integers(-8, 8, (3, 3, 1, 2)), "ap_fixed<4,1>", [1, -2], "ap_fixed<4,1>", (6, 5, 1), (1, 1), "same", "relu",
                     "ap_ufixed<8,4,RND,SAT>")
    dense = fw.DenseLayer("d", rng.integers(-8, 8, (60, 2)), "ap_fixed<4,1>", [0, 0], "ap_fixed<4,1>", "linear", "ap_fixed<10,5>")
    return fw.QModel(input=fw.InputSpec.identity(30, "ap_fixed<8,4>"), input_quantizer="ap_fixed<8,4>", layers=[conv, dense])


def test_unsupported_models_stay_on_numpy(monkeypatch):
    """A conv layer, a narrow (hls4ml-order) accumulator: auto takes the NumPy path silently, native names why."""
    monkeypatch.setattr(native, "NATIVE_MIN_EVENTS", 0)
    seq = fw.QModel(input=fw.InputSpec.identity(4, "ap_fixed<8,4>"), input_quantizer="ap_fixed<8,4>",
                    layers=[fw.DenseLayer("d", np.full((4, 2), 100), "ap_fixed<8,1>", [0, 0], "ap_fixed<8,4>", "linear",
                                          "ap_fixed<8,4>", accum_format="ap_fixed<10,5,TRN,WRAP>")])
    for q, why in ((_conv_model(), "layer c is a conv layer"), (seq, "accumulator ap_fixed<10,5> is not exact")):
        assert why in native.unsupported(q)
        x = np.random.default_rng(0).uniform(-8, 8, (50, q.n_inputs))
        r = fw.emulate(q, x)
        assert "native" not in r.backends.values()
        assert_same(r, fw.emulate(q, x, backend="numpy"))
        with pytest.raises(fw.EmulatorInputError, match=f"backend='native' cannot run model .*{why}"):
            fw.emulate(q, x, backend="native")


def test_keep_runs_on_numpy_and_native_refuses_it():
    q = fast_model(0, "mse")
    x = inputs(q, 100, 0)
    fw.emulate(q, x, backend="native")  # loaded: auto would take the kernel
    r = fw.emulate(q, x, keep=True)
    assert r.tensors and "native" not in r.backends.values()
    with pytest.raises(fw.EmulatorInputError, match="keep=True needs backend='numpy'"):
        fw.emulate(q, x, backend="native", keep=True)


def test_auto_takes_the_kernel_when_loaded_or_for_large_inputs(monkeypatch):
    q, q2 = fast_model(3, "mu2"), fast_model(3, "mu2")  # equal models, separate objects (each keeps its own kernel)
    x = inputs(q, 400, 3)
    assert set(fw.emulate(q, x).backends.values()) <= {"float32", "float64"}  # small input, nothing loaded: NumPy
    fw.emulate(q, x[:10], backend="native")
    assert set(fw.emulate(q, x).backends.values()) == {"native"}
    monkeypatch.setattr(native, "NATIVE_MIN_EVENTS", 400)
    assert not native.loaded(q2) and set(fw.emulate(q2, x).backends.values()) == {"native"}


def test_without_a_compiler_auto_falls_back_and_native_says_why(monkeypatch):
    monkeypatch.setattr(native, "NATIVE_MIN_EVENTS", 0)
    monkeypatch.setattr(native, "compiler", lambda: None)
    q = fast_model(4, "")
    x = inputs(q, 100, 4)
    r = fw.emulate(q, x)
    assert "native" not in r.backends.values()
    with pytest.raises(fw.EmulatorInputError, match="g\\+\\+ not found"):
        fw.emulate(q, x, backend="native")


def test_the_library_is_cached_by_source_hash(tmp_path, monkeypatch):
    """Built once into $XDG_CACHE_HOME/l1ad/native (nothing else left there); a new object of the same model loads
    it without the compiler."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    q = fast_model(5, "")
    k = native.kernel(q)
    assert k.path.parent == tmp_path / "l1ad" / "native" and [p.name for p in k.path.parent.iterdir()] == [k.path.name]

    run, cxx = subprocess.run, native.compiler()

    def no_compiler(cmd, *a, **kw):
        assert cmd[0] != cxx, "compiled again"
        return run(cmd, *a, **kw)

    monkeypatch.setattr(subprocess, "run", no_compiler)
    again = fast_model(5, "")
    assert native.kernel(again).path == k.path
    check(again, inputs(again, 50, 5))


def test_an_unusable_cache_folder_falls_back_to_the_temp_folder(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    q = fast_model(6, "mu2")
    k = native.kernel(q)
    assert isinstance(k, native.NativeKernel) and k.path.parent.name.startswith("l1ad-native-")
    check(q, inputs(q, 50, 6))
