"""The convolution op (1-D and 2-D, strides, valid/same padding): its lowering against a direct loop reference,
QConv1D/QConv2D import bit-exact with QKeras predict, the schema, and the RTL through Verilator."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import l1ad.firmware as fw
from l1ad.firmware.ir import ConvLayer


def _direct(x: np.ndarray, k: np.ndarray, b: np.ndarray, strides, padding) -> np.ndarray:
    """Integer convolution by loops over output pixels (channels last), Keras' padding rule."""
    nd = k.ndim - 2
    if nd == 1:
        return _direct(x[None], k[None], b, (1,) + tuple(strides), padding)[0]
    H, W, C = x.shape
    kh, kw, _, F = k.shape
    sh, sw = strides
    if padding == "same":
        Ho, Wo = -(-H // sh), -(-W // sw)
        ph, pw = max((Ho - 1) * sh + kh - H, 0) // 2, max((Wo - 1) * sw + kw - W, 0) // 2
    else:
        Ho, Wo, ph, pw = (H - kh) // sh + 1, (W - kw) // sw + 1, 0, 0
    out = np.zeros((Ho, Wo, F), dtype=np.int64)
    for oy in range(Ho):
        for ox in range(Wo):
            acc = b.astype(np.int64).copy()
            for dy in range(kh):
                for dx in range(kw):
                    iy, ix = oy * sh - ph + dy, ox * sw - pw + dx
                    if 0 <= iy < H and 0 <= ix < W:
                        acc += x[iy, ix] @ k[dy, dx]
            out[oy, ox] = acc
    return out


@pytest.mark.parametrize("case", [((7, 6, 2), (3, 3), (1, 1), "valid"), ((7, 6, 2), (3, 2), (2, 2), "same"),
                                  ((6, 5, 3), (2, 3), (2, 1), "same"), ((11, 3), (4,), (2,), "same"), ((9, 2), (3,), (1,), "valid")])
def test_lowering_matches_direct_convolution(case):
    shape, ks, strides, padding = case
    rng = np.random.default_rng(len(shape) * 10 + ks[0])
    C, F = shape[-1], 3
    k = rng.integers(-8, 8, ks + (C, F))
    b = rng.integers(-8, 8, F)
    L = ConvLayer("c", k, "ap_fixed<4,1>", b, "ap_fixed<4,1>", shape, strides, padding)
    for _ in range(5):
        x = rng.integers(-20, 20, shape)
        ref = _direct(x, k, b, strides, padding)
        assert ref.shape == L.out_shape
        got = x.reshape(-1) @ L.weights.astype(np.int64) + L.bias_dense
        assert np.array_equal(got, ref.reshape(-1))


def test_conv_schema_roundtrip_and_refusals(tmp_path):
    rng = np.random.default_rng(0)
    L = ConvLayer("c", rng.integers(-8, 8, (3, 3, 1, 2)), "ap_fixed<4,1>", [1, -2], "ap_fixed<4,1>", (6, 5, 1), (1, 1), "same", "relu")
    q = fw.QModel(input=fw.InputSpec.identity(30, "ap_int<6>"), input_quantizer="ap_int<6>", layers=[L])
    assert fw.QModel.load(q.save(tmp_path / "q.json")) == q
    with pytest.raises(fw.QModelError, match="does not hold the exact values"):
        q.replace_formats(c={"accum_format": "ap_fixed<6,4>"})
    with pytest.raises(fw.QModelError, match="input channels"):
        ConvLayer("c", np.zeros((3, 3, 2, 2), int), "ap_fixed<4,1>", [0, 0], "ap_fixed<4,1>", (6, 5, 1))
    with pytest.raises(fw.QModelError, match="padding"):
        ConvLayer("c", np.zeros((3, 3, 1, 2), int), "ap_fixed<4,1>", [0, 0], "ap_fixed<4,1>", (6, 5, 1), (1, 1), "full")


def _keras_conv(seed: int = 0):
    import tensorflow as tf
    from qkeras import QActivation, QConv1D, QConv2D, QDense, quantized_bits, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((18, 14, 1))
    x = QActivation(quantized_bits(8, 5, alpha=1), name="qin")(inp)
    x = QConv2D(4, (3, 3), strides=(2, 2), padding="same", kernel_quantizer=quantized_bits(6, 0, alpha=1),
                bias_quantizer=quantized_bits(6, 0, alpha=1), name="c1")(x)
    x = QActivation(quantized_relu(8, 4), name="r1")(x)
    x = QConv2D(2, (3, 3), kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(4, 0, alpha=1),
                activation=quantized_relu(8, 4), name="c2")(x)
    x = tf.keras.layers.Flatten()(x)
    x = QDense(3, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1), name="d")(x)
    m2 = tf.keras.Model(inp, QActivation(quantized_bits(12, 6, alpha=1), name="qout")(x))
    inp = tf.keras.Input((20, 3))
    x = QActivation(quantized_bits(8, 3, alpha=1))(inp)
    x = QConv1D(5, 4, strides=2, padding="same", kernel_quantizer=quantized_bits(5, 0, alpha=1),
                bias_quantizer=quantized_bits(5, 0, alpha=1), activation=quantized_relu(6, 2))(x)
    x = tf.keras.layers.Flatten()(x)
    m1 = tf.keras.Model(inp, QDense(2, kernel_quantizer=quantized_bits(5, 0, alpha=1), bias_quantizer=quantized_bits(5, 0, alpha=1))(x))
    return m2, m1


def test_qconv_import_bit_exact_with_predict():
    pytest.importorskip("qkeras")
    m2, m1 = _keras_conv()
    rng = np.random.default_rng(1)
    for m, x in ((m2, np.round(rng.exponential(3, (5000, 18, 14, 1)) * 8) / 8), (m1, np.round(rng.normal(0, 3, (5000, 20, 3)) * 16) / 16)):
        q = fw.import_qkeras(m, "ap_fixed<12,8>")
        assert q.layers[0].kind == "conv"
        e = fw.emulate(q, x.reshape(len(x), -1))
        assert int(np.count_nonzero(e.outputs != m.predict(x, verbose=0, batch_size=2500))) == 0


def test_dense_on_an_image_refused():
    pytest.importorskip("qkeras")
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    inp = tf.keras.Input((4, 4, 1))
    m = tf.keras.Model(inp, QDense(2, kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(4, 0, alpha=1))(inp))
    with pytest.raises(Exception, match="add a Flatten"):
        fw.import_qkeras(m)


@pytest.mark.verilator
@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator not installed")
def test_conv_rtl_bit_exact(tmp_path):
    pytest.importorskip("qkeras")
    from l1ad.firmware.verilog import VerilogConfig, export_verilog
    from l1ad.sim.cosim import cosim, default_vectors

    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    tf.keras.utils.set_random_seed(3)  # a small image keeps the Verilator build short (the 18 x 14 one: bench/)
    inp = tf.keras.Input((7, 6, 1))
    x = QActivation(quantized_bits(8, 5, alpha=1))(inp)
    x = QConv2D(3, (3, 3), strides=(2, 2), padding="same", kernel_quantizer=quantized_bits(6, 0, alpha=1),
                bias_quantizer=quantized_bits(6, 0, alpha=1), activation=quantized_relu(8, 4))(x)
    x = QConv2D(2, (2, 2), kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(4, 0, alpha=1),
                activation=quantized_relu(8, 4))(x)
    x = tf.keras.layers.Flatten()(x)
    m = tf.keras.Model(inp, QDense(2, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1))(x))
    q = fw.import_qkeras(m, "ap_fixed<12,8>")
    export_verilog(q, tmp_path / "rtl", VerilogConfig(top="convnet", levels_per_stage=3, expose_outputs=True))
    x = default_vectors(q, 3000, seed=2)
    r = cosim(tmp_path / "rtl", x, build_root=tmp_path / "build")
    assert r["ok"] and r["vectors"] == len(x), (r["mismatch_fields"], r["details"][:2])


@pytest.mark.parametrize("fixed", [True, False])
def test_brevitas_quantconv_import(tmp_path, fixed):
    """Brevitas QuantConv2d (channels first, explicit symmetric padding) -> the channels-last conv op: fixed-point
    quantizers bit-exact with the exported graph; default float scales through dense-view conv + affine requant."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("brevitas")
    import brevitas.nn as qnn

    from bench.zoo_models import brevitas_quants, export_brevitas
    from l1ad.firmware.import_qonnx import compare_qonnx, import_qonnx

    torch.manual_seed(0)
    w, a, r = brevitas_quants(fixed)
    net = torch.nn.Sequential(qnn.QuantIdentity(return_quant_tensor=True, **a), qnn.QuantConv2d(1, 4, 3, stride=2, padding=1, **w),
                              qnn.QuantReLU(return_quant_tensor=True, **r), qnn.QuantConv2d(4, 3, 3, **w),
                              qnn.QuantReLU(return_quant_tensor=True, **r), torch.nn.Flatten(),
                              qnn.QuantLinear(3 * 7 * 5, 3, bias=True, **w), qnn.QuantIdentity(**a))
    path = export_brevitas(net, tmp_path / "c.onnx", lambda: torch.rand(64, 1, 18, 14) * 3, 10)
    q = import_qonnx(path, "ap_fixed<12,6>")
    kinds = [L.kind for L in q.layers]
    assert kinds == (["conv", "conv", "dense"] if fixed else ["affine", "conv", "affine", "conv", "affine", "dense", "affine"])
    assert q.layers[0 if fixed else 1].padding == ((1, 1), (1, 1))
    x = np.round(np.random.default_rng(0).exponential(1, (3000, 252)) * 32) / 32
    rep = compare_qonnx(q, path, x)
    # fixed point: float32 is exact; float scales: onnxruntime has no float64 Conv, the float32 graph rounds rarely
    assert rep["output_mismatches"] == 0 if fixed else rep["output_mismatches"] <= 5
