"""QKeras predict() against the emulator of the imported QModel: bit for bit when inputs are on the input grid,
and every known cause of difference (float32 straight-through saturation, float32 accumulation, double rounding
of off-grid inputs) is reported by the importer and reproduced here."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
qkeras = pytest.importorskip("qkeras")
from qkeras import QActivation, QDense, quantized_bits, quantized_relu  # noqa: E402

import l1ad.firmware as fw  # noqa: E402
from l1ad.firmware import FixedFormat  # noqa: E402
from l1ad.firmware.import_qkeras import QKerasImportError  # noqa: E402

N_EVENTS = 20000


def build(sizes=(57, 32, 16, 8, 16, 32, 57), iq=(12, 3), wq=(8, 0), bq=(8, 3), aq=(8, 3), oq=(12, 3), seed=0,
          out_quant=True, symmetric=0, dense_act=False, out_keep_negative=True):
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((sizes[0],), name="input")
    h = QActivation(quantized_bits(*iq, alpha=1), name="input_quant")(inp)
    for k, s in enumerate(sizes[1:]):
        last = k == len(sizes) - 2
        act = quantized_relu(*aq) if (dense_act and not last) else None
        h = QDense(s, name=f"d{k}", activation=act,
                   kernel_quantizer=quantized_bits(*wq, symmetric=symmetric, alpha=1),
                   bias_quantizer=quantized_bits(*bq, alpha=1),
                   bias_initializer=tf.keras.initializers.RandomUniform(-1, 1, seed=seed))(h)
        if not last and not dense_act:
            h = QActivation(quantized_relu(*aq), name=f"d{k}_relu")(h)
    if out_quant:
        h = QActivation(quantized_bits(*oq, alpha=1, keep_negative=out_keep_negative), name="output_quant")(h)
    return tf.keras.Model(inp, h)


def on_grid(fmt: str, x: np.ndarray) -> np.ndarray:
    f = FixedFormat.parse(fmt)
    return f.to_float(f.quantize(x))


def predict(model, x):
    return np.asarray(model.predict(np.asarray(x, dtype=np.float32), batch_size=8192, verbose=0), dtype=np.float64)


def inputs(n=N_EVENTS, seed=1, scale=2.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, scale, (n, 57))
    x[rng.random((n, 57)) < 0.3] = 0.0
    return x


# ---------------------------------------------------------------------- bit-exact cases
@pytest.mark.parametrize("variant", [
    {},
    {"symmetric": 1},
    {"dense_act": True},
    {"out_keep_negative": False},
    {"iq": (10, 4), "wq": (6, 1), "bq": (10, 2), "aq": (6, 2), "oq": (8, 2), "seed": 3},
])
def test_ae_bit_exact(variant):
    m = build(**variant)
    iq = variant.get("iq", (12, 3))
    in_fmt = f"ap_fixed<{iq[0]},{iq[1] + 1}>"
    q = fw.import_qkeras(m, in_fmt, score="mse", gate="l1", thresholds=(100, 1000))
    assert q.warnings == ()
    x = on_grid(in_fmt, inputs())
    y = predict(m, x)
    r = fw.emulate(q, x)
    assert r.stats["input"] == {"inexact": 0, "overflow": 0}
    mism = int(np.count_nonzero(r.outputs != y))
    assert mism == 0, f"{mism} of {y.size} outputs differ"
    # the score from QKeras' own tensors (float64 sum of exact squares) equals the emulated score
    xq = predict(tf.keras.Model(m.input, m.get_layer("input_quant").output), x)
    mask = np.repeat(x[:, 0::3] > 0, 3, axis=1)
    np.testing.assert_array_equal(r.score, np.sum(mask * (xq - y) ** 2, axis=1))
    if shutil.which("g++"):  # the compiled kernel (what large inputs run on) against QKeras too
        rn = fw.emulate(q, x, backend="native")
        assert int(np.count_nonzero(rn.outputs != y)) == 0
        np.testing.assert_array_equal(rn.score, r.score)


def test_vae_mu2_bit_exact_from_multi_output_model():
    tf.keras.utils.set_random_seed(7)
    inp = tf.keras.Input((57,), name="input")
    h = QActivation(quantized_bits(12, 3, alpha=1), name="input_quant")(inp)
    h = QDense(32, name="enc_1", kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1))(h)
    h = QActivation(quantized_relu(8, 3), name="enc_1_relu")(h)
    mu = QDense(8, name="mu", kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1))(h)
    mu = QActivation(quantized_bits(12, 3, alpha=1), name="mu_quant")(mu)
    logvar = tf.keras.layers.Dense(8, name="logvar")(h)  # float, training only
    m = tf.keras.Model(inp, [mu, logvar])
    with pytest.raises(QKerasImportError, match="outputs"):
        fw.import_qkeras(m, "ap_fixed<12,4>", score="mu2")
    q = fw.import_qkeras(m, "ap_fixed<12,4>", score="mu2", output_layer="mu_quant", thresholds=(0, 50, 500))
    assert [L.name for L in q.layers] == ["enc_1", "mu"] and q.warnings == ()
    x = on_grid("ap_fixed<12,4>", inputs(seed=2))
    mu_tf = predict(tf.keras.Model(m.input, m.get_layer("mu_quant").output), x)
    r = fw.emulate(q, x)
    assert np.count_nonzero(r.outputs != mu_tf) == 0
    np.testing.assert_array_equal(r.score, np.sum(mu_tf**2, axis=1))
    np.testing.assert_array_equal(r.trigger, r.score_int[:, None] > np.array([0, 50, 500])[None, :])
    if shutil.which("g++"):  # the compiled kernel against QKeras too
        rn = fw.emulate(q, x, backend="native")
        assert np.count_nonzero(rn.outputs != mu_tf) == 0
        np.testing.assert_array_equal(rn.score, np.sum(mu_tf**2, axis=1))
        np.testing.assert_array_equal(rn.trigger, r.trigger)


def test_integer_scaler_path_bit_exact():
    """Raw L1 hardware codes -> (x - offset) * 2**-shift on chip; QKeras gets the scaled float input."""
    class Scaler:
        offset = np.tile([0, 2, -1], 19)
        shift = np.tile([6, 7, 7], 19)

    m = build(seed=5)
    q = fw.import_qkeras(m, "ap_int<18>", scaler=Scaler(), score="mse", gate="l1")
    assert q.warnings == ()
    rng = np.random.default_rng(3)
    x_hw = np.stack([rng.integers(0, 2000, (N_EVENTS, 19)), rng.integers(-460, 461, (N_EVENTS, 19)),
                     rng.integers(-288, 288, (N_EVENTS, 19))], axis=2).astype(np.float64)
    x_hw[rng.random((N_EVENTS, 19)) < 0.4] = 0
    x_hw = x_hw.reshape(N_EVENTS, 57)
    scaled = (x_hw - Scaler.offset) * 2.0 ** -Scaler.shift
    y = predict(m, scaled)
    r = fw.emulate(q, x_hw)
    assert np.count_nonzero(r.outputs != y) == 0
    # the mask uses the raw pT code (> 0): absent objects do not count
    xq = predict(tf.keras.Model(m.input, m.get_layer("input_quant").output), scaled)
    np.testing.assert_array_equal(r.score, np.sum(np.repeat(x_hw[:, 0::3] > 0, 3, axis=1) * (xq - y) ** 2, axis=1))


def test_project_models_bit_exact():
    """The QAT models of trigger.models (the deployed QKeras network) import and emulate bit for bit."""
    arch_mod = pytest.importorskip("l1ad.trigger.models.arch")
    nets = pytest.importorskip("l1ad.trigger.models.keras_nets")
    for kind, score, out in (("ae", "mse", "output_quant"), ("vae", "mu2", "mu_quant")):
        arch = arch_mod.ArchitectureConfig(kind=kind)
        net = nets.build(arch, seed=1)
        q = fw.import_qkeras(net.deployed, "ap_fixed<12,4>", score=score)
        assert q.warnings == (), q.warnings
        x = on_grid("ap_fixed<12,4>", inputs(5000, seed=4))
        y = predict(net.deployed, x)
        assert np.count_nonzero(fw.emulate(q, x).outputs != y) == 0, kind


# ---------------------------------------------------------------------- reported causes of difference
def test_off_grid_inputs_double_rounding():
    """Raw floats: QKeras rounds them half-to-even in its input quantizer. An emulator input format that truncates
    (ap_fixed<W,I> default TRN, like hls4ml's default input type) rounds twice and differs; declaring the input
    format with the quantizer's own rounding (RND_CONV, SAT) restores bit-exactness."""
    m = build()
    x = inputs(seed=6)
    y = predict(m, x.astype(np.float32).astype(np.float64))
    q_trn = fw.import_qkeras(m, "ap_fixed<16,6>", score=None)
    q_rnd = fw.import_qkeras(m, "ap_fixed<40,10,RND_CONV,SAT>", score=None)
    x32 = x.astype(np.float32).astype(np.float64)
    bad_trn = int(np.count_nonzero(fw.emulate(q_trn, x32).outputs != y))
    bad_rnd = int(np.count_nonzero(fw.emulate(q_rnd, x32).outputs != y))
    assert bad_rnd == 0
    assert bad_trn > 0


def test_ste_saturation_artefact_reported_and_reproduced():
    """quantized_bits returns x + (q(x) - x) in float32: for |x| >= 2**(24 - frac) (here 2**16) the result can be
    a grid point next to (even beyond) the saturation value. The importer warns; the emulator keeps true ap_fixed SAT."""
    m = build()
    q = fw.import_qkeras(m, "ap_fixed<40,24,RND_CONV,SAT>", score=None)
    assert any("straight-through" in w for w in q.warnings)
    rng = np.random.default_rng(0)
    x = on_grid("ap_fixed<40,24,RND_CONV,SAT>", rng.normal(0, 2, (4000, 57)) * np.exp(rng.uniform(0, 14, (4000, 1))))
    xq_tf = predict(tf.keras.Model(m.input, m.get_layer("input_quant").output), x)
    xq = q.input_quantizer.to_float(fw.emulate(q, x, keep=True).tensors["xq"])
    bad = xq_tf != xq
    assert bad.any() and np.abs(x[bad]).min() >= 2.0**16
    lsb = float(q.input_quantizer.lsb)
    assert np.abs(xq_tf[bad] - xq[bad]).max() <= 2 * lsb  # one or two grid steps off the saturation value ...
    assert np.any(np.abs(xq_tf[bad]) == 8.0)  # ... including 8.0, which lies outside ap_fixed<12,4> altogether
    assert not (xq_tf != xq)[np.abs(x) < 2.0**16].any()


def test_float32_accumulation_warning():
    """Accumulators wider than float32's 24-bit significand are reported (predict may round partial sums)."""
    m = build(iq=(16, 7), wq=(12, 2), bq=(12, 5), aq=(12, 5), oq=(16, 7), seed=1)
    q = fw.import_qkeras(m, "ap_fixed<16,8>", score="mse")
    assert any("partial sums need" in w and "'d0'" in w for w in q.warnings)
    x = on_grid("ap_fixed<16,8>", inputs(seed=8, scale=20))
    mism = int(np.count_nonzero(fw.emulate(q, x).outputs != predict(m, x)))
    print(f"float32-accumulation model: {mism} of {x.shape[0] * 57} outputs differ")


# ---------------------------------------------------------------------- importer errors
def test_import_errors():
    inp = tf.keras.Input((4,))
    h = QActivation(quantized_bits(8, 3, alpha=1))(inp)
    with pytest.raises(QKerasImportError, match="not quantized|not supported"):
        fw.import_qkeras(tf.keras.Model(inp, tf.keras.layers.Dense(4)(h)), score=None)
    # a float BatchNormalization is imported as an affine op only when float32 predict() is exact: here (fresh
    # moving_variance 1, epsilon 1e-3) the scale needs 23 bits on a 16-bit input -> refused, naming the bits
    with pytest.raises(QKerasImportError, match=r"\(BatchNormalization\).*significant bits.*quantize_batchnorm"):
        d = QDense(4, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1))(h)
        fw.import_qkeras(tf.keras.Model(inp, tf.keras.layers.BatchNormalization()(d)), score=None)
    with pytest.raises(QKerasImportError, match="alpha"):
        d = QDense(4, kernel_quantizer=quantized_bits(8, 0, alpha="auto"), bias_quantizer=quantized_bits(8, 3, alpha=1))(h)
        fw.import_qkeras(tf.keras.Model(inp, d), score=None)
    with pytest.raises(QKerasImportError, match="no quantizer"):
        d = QDense(4, kernel_quantizer=quantized_bits(8, 0, alpha=1))(h)
        fw.import_qkeras(tf.keras.Model(inp, d), score=None)
    with pytest.raises(QKerasImportError, match="stochastic"):
        d = QDense(4, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1))(h)
        a = QActivation(quantized_relu(8, 3, use_stochastic_rounding=True))(d)
        fw.import_qkeras(tf.keras.Model(inp, a), score=None)
    with pytest.raises(QKerasImportError, match="integer code"):
        d = QDense(4, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1))(h)
        fw.import_qkeras(tf.keras.Model(inp, d), "ap_fixed<8,4>", score="mse", gate=None, thresholds=(0.5,))


def test_missing_quantizers_are_reported():
    inp = tf.keras.Input((4,))
    d = QDense(4, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1))(inp)
    q = fw.import_qkeras(tf.keras.Model(inp, d), "ap_fixed<8,4>", score=None)
    assert any("no input quantizer" in w for w in q.warnings)
    assert any("no output quantizer" in w for w in q.warnings)
    x = on_grid("ap_fixed<8,4>", np.random.default_rng(0).normal(0, 2, (500, 4)))
    assert np.count_nonzero(fw.emulate(q, x).outputs != predict(tf.keras.Model(inp, d), x)) == 0


def test_auto_po2_kernel_is_folded_and_exact():
    tf.keras.utils.set_random_seed(2)
    inp = tf.keras.Input((8,))
    h = QActivation(quantized_bits(10, 3, alpha=1))(inp)
    d = QDense(6, kernel_quantizer=quantized_bits(6, 0), bias_quantizer=quantized_bits(8, 3, alpha=1))(h)  # alpha None -> auto_po2
    o = QActivation(quantized_bits(12, 4, alpha=1))(d)
    m = tf.keras.Model(inp, o)
    q = fw.import_qkeras(m, "ap_fixed<10,4>", score=None)
    assert any("auto_po2" in w for w in q.warnings)
    x = on_grid("ap_fixed<10,4>", np.random.default_rng(1).normal(0, 2, (2000, 8)))
    assert np.count_nonzero(fw.emulate(q, x).outputs != predict(m, x)) == 0


def test_save_load_emulates_identically(tmp_path):
    m = build(seed=9)
    q = fw.import_qkeras(m, "ap_fixed<12,4>", score="mse", thresholds=(10, 100))
    q2 = fw.QModel.load(q.save(tmp_path / "q.json"))
    x = on_grid("ap_fixed<12,4>", inputs(2000, seed=9))
    a, b = fw.emulate(q, x), fw.emulate(q2, x)
    np.testing.assert_array_equal(a.outputs_int, b.outputs_int)
    np.testing.assert_array_equal(a.trigger, b.trigger)
    assert q2.meta["source"] == "qkeras"


# ---------------------------------------------------------------------- quantizer semantics
@pytest.mark.parametrize("qname, args, kw, expect", [
    ("quantized_bits", (8, 3), {"alpha": 1}, "ap_fixed<8,4,RND_CONV,SAT>"),
    ("quantized_bits", (12, 0), {"alpha": 1, "symmetric": 1}, "ap_fixed<12,1,RND_CONV,SAT_SYM>"),
    ("quantized_bits", (6, 2), {"alpha": 1, "keep_negative": False}, "ap_ufixed<6,2,RND_CONV,SAT>"),
    ("quantized_bits", (10, 1), {}, "ap_fixed<10,2,RND_CONV,SAT>"),  # alpha None: scale 1 (QActivation)
    ("quantized_relu", (8, 3), {}, "ap_ufixed<8,3,RND_CONV,SAT>"),
    ("quantized_relu", (6, 0), {}, "ap_ufixed<6,0,RND_CONV,SAT>"),
])
def test_quantizer_semantics_match_fixed_format(qname, args, kw, expect):
    """tf.round is half-to-even (RND_CONV), clipping is saturation; checked on exact ties and random values."""
    from l1ad.firmware.import_qkeras import quantizer_format

    qz = getattr(qkeras, qname)(*args, **kw)
    fmt, relu = quantizer_format(qz, where="test")
    assert str(fmt) == expect and relu == (qname == "quantized_relu")
    rng = np.random.default_rng(0)
    lsb = float(fmt.lsb)
    span = float(fmt.max_value - fmt.min_value)
    ties = (rng.integers(fmt.min_code - 8, fmt.max_code + 8, 2000) + 0.5) * lsb
    x = np.concatenate([ties, rng.uniform(float(fmt.min_value) - span, float(fmt.max_value) + span, 4000), [0.0, -0.0]])
    x = x.astype(np.float32)
    got = qz(tf.constant(x)).numpy().astype(np.float64)
    want = fmt.to_float(fmt.quantize(np.maximum(x, 0) if relu else x))
    np.testing.assert_array_equal(got, want)
    if fmt.rounding == "RND_CONV" and not relu and fmt.signed:  # plain round-half-up would differ on ties
        assert np.count_nonzero(fmt.with_modes("RND").quantize(ties) != fmt.quantize(ties)) > 100
