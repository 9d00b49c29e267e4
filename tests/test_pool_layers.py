"""The pooling op (max / average, 1-D and 2-D, strides, valid / same / explicit padding, global): its arithmetic
against Keras and torch pooling, the schema and the refusals, QKeras and Brevitas (QONNX) imports bit-exact with
the frameworks, and the HLS C simulation and the RTL (Verilator) bit-exact with the emulator."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import l1ad.firmware as fw
from l1ad.firmware.fixed import FixedFormat
from l1ad.firmware.ir import ConvLayer, DenseLayer, InputSpec, PoolLayer, QModel, QModelError

IN_FMT = "ap_fixed<9,4>"


def _codes(rng, fmt, shape):
    f = FixedFormat.parse(fmt)
    return rng.integers(f.min_code, f.max_code + 1, size=shape)


def _alone(L: PoolLayer) -> PoolLayer:
    """The layer with the formats a QModel fills in (input IN_FMT)."""
    return QModel(InputSpec.identity(L.n_in, IN_FMT), IN_FMT, [L]).layers[0]


@pytest.mark.parametrize("case", [("max", (7, 6, 3), (2, 2), None, "valid"), ("max", (7, 5, 2), (3, 2), (2, 1), "same"),
                                  ("avg", (8, 6, 2), (2, 2), (1, 2), "valid"), ("avg", (5, 5, 1), (2, 2), None, "same"),
                                  ("max", (11, 3), (3,), (2,), "same"), ("avg", (12, 2), (4,), (3,), "valid")])
def test_pooling_matches_keras(case):
    """apply_codes == Keras' own pooling layer on the same values (float32, exact at these sizes), valid and
    same padding (Keras skips padded cells: a max over the valid ones, an average over their count)."""
    tf = pytest.importorskip("tensorflow")
    mode, shape, ps, st, pad = case
    L = _alone(PoolLayer("p", mode, shape, ps, st, pad))
    nd = len(shape) - 1
    cls = {("max", 1): "MaxPooling1D", ("max", 2): "MaxPooling2D", ("avg", 1): "AveragePooling1D",
           ("avg", 2): "AveragePooling2D"}[(mode, nd)]
    layer = getattr(tf.keras.layers, cls)(ps, strides=st, padding=pad)
    x = _codes(np.random.default_rng(len(shape) + ps[0]), IN_FMT, (500,) + shape)
    f = FixedFormat.parse(IN_FMT)
    want = layer(tf.constant(f.to_float(x), dtype=tf.float32)).numpy().reshape(len(x), -1)
    got = L.output_format.to_float(L.apply_codes(x.reshape(len(x), -1), IN_FMT))
    assert L.out_shape == tuple(layer.compute_output_shape((1,) + shape)[1:])
    assert np.array_equal(got, want)


@pytest.mark.parametrize("mode,include", [("max", 0), ("avg", 0), ("avg", 1)])
def test_explicit_padding_matches_torch(mode, include):
    """Explicit (before, after) pads as ONNX / torch define them: padding never wins a max; an average divides by
    the valid count (count_include_pad=0) or by the full window (1, torch's default, padded zeros summed)."""
    torch = pytest.importorskip("torch")
    x = _codes(np.random.default_rng(3), IN_FMT, (400, 2, 7, 6))  # channels first, as torch
    L = _alone(PoolLayer("p", mode, (7, 6, 2), (2, 2), (2, 2), ((1, 1), (1, 1)), bool(include) and mode == "avg"))
    t = torch.tensor(FixedFormat.parse(IN_FMT).to_float(x))
    if mode == "max":
        want = torch.nn.functional.max_pool2d(t, 2, 2, 1)
    else:
        want = torch.nn.functional.avg_pool2d(t, 2, 2, 1, count_include_pad=bool(include))
    want = want.numpy().transpose(0, 2, 3, 1).reshape(len(x), -1)
    got = L.output_format.to_float(L.apply_codes(x.transpose(0, 2, 3, 1).reshape(len(x), -1), IN_FMT))
    assert np.array_equal(got, want)


def test_bounds_formats_and_schema(tmp_path):
    rng = np.random.default_rng(0)
    layers = [ConvLayer("c", _codes(rng, "ap_fixed<5,1>", (3, 3, 1, 2)), "ap_fixed<5,1>", [1, -2], "ap_fixed<4,1>",
                        (6, 6, 1), (1, 1), "same", "relu", "ap_ufixed<6,3,RND,SAT>"),
              PoolLayer("m", "max", (6, 6, 2), (2, 2)),
              PoolLayer("a", "avg", (3, 3, 2), (2, 2), (1, 1), "valid", activation="relu", output_format="ap_fixed<7,3,RND,SAT>")]
    q = QModel(InputSpec.identity(36, "ap_int<6>"), "ap_int<6>", layers)
    m, a = q.layers[1], q.layers[2]
    assert m.accum_format == m.output_format and m.output_format.frac == 3  # a max is exact at the input LSB
    assert a.accum_format.frac == 3 + 2 and a.dense_view().weights.max() == 1  # the mean: 2 more fraction bits
    b = q.tensor_bounds()
    assert b["m.out"][0] == [0] * 18 and max(b["m.out"][1]) == 63
    assert QModel.load(q.save(tmp_path / "q.json")) == q
    assert [L.kind for L in QModel.load(tmp_path / "q.json").layers] == ["conv", "pool", "pool"]
    with pytest.raises(QModelError, match="does not hold the exact values"):
        q.replace_formats(a={"accum_format": "ap_ufixed<6,1>"})


def test_refusals():
    with pytest.raises(QModelError, match=r"layer p: average pooling over a 3x3 window divides by 9, not a power of two"):
        PoolLayer("p", "avg", (6, 6, 1), (3, 3))
    # 'same' on 5 with window 4, stride 2: the edge windows hold 3 valid inputs
    with pytest.raises(QModelError, match=r"layer e: .*divides by 3.*'valid' padding"):
        PoolLayer("e", "avg", (5, 2), (4,), (2,), "same")
    with pytest.raises(QModelError, match="count_pad applies to average pooling only"):
        PoolLayer("p", "max", (6, 6, 1), (2, 2), None, ((1, 0), (1, 0)), True)
    with pytest.raises(QModelError, match="pooling mode 'l2'"):
        PoolLayer("p", "l2", (6, 6, 1), (2, 2))
    with pytest.raises(QModelError, match="larger than the"):
        PoolLayer("p", "max", (3, 3, 1), (4, 4))
    with pytest.raises(QModelError, match="max pooling is not linear"):
        PoolLayer("p", "max", (4, 4, 1), (2, 2)).dense_view()


def _keras_models(seed: int = 4):
    import tensorflow as tf
    from qkeras import QActivation, QAveragePooling2D, QConv1D, QConv2D, QDense, quantized_bits, quantized_relu

    K = tf.keras.layers
    q = lambda b, i: dict(kernel_quantizer=quantized_bits(b, i, alpha=1), bias_quantizer=quantized_bits(b, i, alpha=1))  # noqa: E731
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((9, 8, 1))
    x = QActivation(quantized_bits(8, 5, alpha=1))(inp)
    x = QConv2D(3, (3, 3), padding="same", activation=quantized_relu(8, 4), **q(6, 0))(x)
    x = K.MaxPooling2D((2, 2), padding="same")(x)  # (5, 4, 3)
    x = K.AveragePooling2D((2, 2), strides=(1, 1))(x)  # (4, 3, 3)
    x = QActivation(quantized_bits(8, 3, alpha=1))(x)
    x = QAveragePooling2D((2, 2), padding="same", average_quantizer=quantized_bits(8, 0, alpha=1),
                          activation=quantized_relu(7, 3))(x)  # (2, 2, 3): edge windows of 2 inputs
    x = K.Flatten()(x)
    m2 = tf.keras.Model(inp, QActivation(quantized_bits(10, 4, alpha=1))(QDense(3, **q(6, 0))(x)))
    inp = tf.keras.Input((16, 2))
    x = QActivation(quantized_bits(8, 3, alpha=1))(inp)
    x = QConv1D(4, 3, padding="same", activation=quantized_relu(6, 2), **q(5, 0))(x)
    x = K.MaxPooling1D(3, strides=2, padding="same")(x)  # (8, 4)
    x = K.AveragePooling1D(2)(x)  # (4, 4)
    x = K.GlobalMaxPooling1D()(x)
    m1 = tf.keras.Model(inp, QDense(2, **q(5, 0))(x))
    inp = tf.keras.Input((4, 4, 2))
    x = K.GlobalAveragePooling2D()(QActivation(quantized_bits(8, 3, alpha=1))(inp))
    m0 = tf.keras.Model(inp, QDense(2, **q(5, 0))(x))
    return m2, m1, m0


def test_qkeras_pooling_import_bit_exact_with_predict():
    pytest.importorskip("qkeras")
    rng = np.random.default_rng(1)
    for m in _keras_models():
        shape = tuple(int(d) for d in m.input_shape[1:])
        x = np.round(rng.normal(0, 4, (6000,) + shape) * 8) / 8
        q = fw.import_qkeras(m, "ap_fixed<12,8>")
        assert "pool" in [L.kind for L in q.layers]
        e = fw.emulate(q, x.reshape(len(x), -1))
        assert int(np.count_nonzero(e.outputs != m.predict(x, verbose=0, batch_size=3000))) == 0


def test_qkeras_pooling_refusals():
    pytest.importorskip("qkeras")
    import tensorflow as tf
    from qkeras import QActivation, QAveragePooling2D, QDense, quantized_bits

    def model(pool):
        inp = tf.keras.Input((6, 6, 1))
        x = tf.keras.layers.Flatten()(pool(QActivation(quantized_bits(8, 3, alpha=1))(inp)))
        return tf.keras.Model(inp, QDense(2, kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(4, 0, alpha=1))(x))

    with pytest.raises(QModelError, match=r"layer 'a3' \(AveragePooling2D\): .*divides by 9, not a power of two"):
        fw.import_qkeras(model(tf.keras.layers.AveragePooling2D((3, 3), name="a3")))
    with pytest.raises(QModelError, match=r"average_quantizer .* turns 1/4 into"):
        fw.import_qkeras(model(QAveragePooling2D((2, 2), average_quantizer=quantized_bits(2, 0, alpha=1), name="qa")))
    with pytest.raises(QModelError, match="3-d pooling is not supported"):
        inp = tf.keras.Input((4, 4, 4, 1))
        fw.import_qkeras(tf.keras.Model(inp, tf.keras.layers.MaxPooling3D()(QActivation(quantized_bits(8, 3, alpha=1))(inp))))


@pytest.mark.parametrize("fixed", [True, False])
def test_brevitas_pooling_import(tmp_path, fixed):
    """torch MaxPool2d / AvgPool2d (count_include_pad, padded) on Brevitas QuantTensors -> QONNX MaxPool /
    AveragePool -> PoolLayer: bit-exact with the exported graph (fixed point and float scales)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("brevitas")
    import brevitas.nn as qnn

    from bench.zoo_models import brevitas_quants, export_brevitas
    from l1ad.firmware.import_qonnx import compare_qonnx, import_qonnx

    torch.manual_seed(0)
    w, a, r = brevitas_quants(fixed)
    net = torch.nn.Sequential(qnn.QuantIdentity(return_quant_tensor=True, **a), qnn.QuantConv2d(1, 4, 3, padding=1, **w),
                              qnn.QuantReLU(return_quant_tensor=True, **r), torch.nn.MaxPool2d(2),
                              torch.nn.AvgPool2d(2, stride=1, padding=1), torch.nn.Flatten(),
                              qnn.QuantLinear(4 * 5 * 5, 3, bias=True, **w), qnn.QuantIdentity(**a))
    path = export_brevitas(net, tmp_path / "p.onnx", lambda: torch.rand(64, 1, 8, 8) * 3, 10)
    q = import_qonnx(path, "ap_fixed<12,6>")
    pools = [L for L in q.layers if L.kind == "pool"]
    assert [(L.mode, L.count_pad) for L in pools] == [("max", False), ("avg", True)]
    x = np.round(np.random.default_rng(0).exponential(1, (4000, 64)) * 32) / 32
    assert compare_qonnx(q, path, x)["output_mismatches"] == 0


def net_pool() -> QModel:
    """Conv (same) -> max pool (same, relu, narrower output) -> average pool (stride 1) -> 1-D max pool of the
    flat tensor seen as (9, 3) -> dense, with rounding and saturation in the pools' output formats."""
    rng = np.random.default_rng(606)
    layers = [
        ConvLayer("c1", _codes(rng, "ap_fixed<6,1>", (3, 3, 1, 3)), "ap_fixed<6,1>", _codes(rng, "ap_fixed<6,2>", 3),
                  "ap_fixed<6,2>", (8, 7, 1), (1, 1), "same", "linear", "ap_fixed<9,4,RND_CONV,SAT>"),  # (8, 7, 3)
        PoolLayer("mp", "max", (8, 7, 3), (2, 2), None, "same", activation="relu",
                  output_format="ap_ufixed<7,3,RND,SAT>"),  # (4, 4, 3)
        PoolLayer("ap", "avg", (4, 4, 3), (2, 2), (1, 1), "valid", output_format="ap_fixed<8,3,RND_CONV,SAT>"),  # (3, 3, 3)
        PoolLayer("mp1", "max", (9, 3), (3,), (2,), "same"),  # (5, 3)
        DenseLayer("out", _codes(rng, "ap_fixed<6,1>", (15, 4)), "ap_fixed<6,1>", _codes(rng, "ap_fixed<6,2>", 4),
                   "ap_fixed<6,2>", "linear", "ap_fixed<10,4,RND,SAT>"),
    ]
    return QModel(InputSpec.identity(56, "ap_int<9>"), "ap_fixed<9,5,RND_CONV,SAT>", layers, None, name="poolnet")


@pytest.mark.hls
@pytest.mark.skipif(shutil.which("g++") is None, reason="the C simulation needs g++")
def test_pool_csim_equals_emulator(tmp_path):
    from l1ad.firmware.hls import HLSConfig, export_hls, verify_project

    q = net_pool()
    prj = export_hls(q, None, tmp_path / "p", HLSConfig(tb_vectors=50))
    assert "idx_mp[48][4]" in (tmp_path / "p" / "firmware" / "weights" / "mp.h").read_text()
    rep = verify_project(prj, 20000, with_coverage=True)
    assert rep["passed"] and rep["mismatches"]["outputs"] == 0, rep["examples"][:2]
    cov = rep["coverage"]
    assert cov["mp.out"]["inexact"] > 0 and cov["ap.out"]["inexact"] > 0 and cov["ap.out"]["overflow"] > 0


@pytest.mark.verilator
@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator not installed")
def test_pool_rtl_bit_exact(tmp_path):
    from l1ad.firmware.verilog import VerilogConfig, export_verilog
    from l1ad.sim.cosim import cosim, default_vectors

    q = net_pool()
    export_verilog(q, tmp_path / "rtl", VerilogConfig(top="poolnet", levels_per_stage=3, expose_outputs=True))
    text = (tmp_path / "rtl" / "poolnet_mp.v").read_text()
    # per channel and output row: 3 windows of 4 inputs (3 nodes each) and the edge window of 2 valid inputs (1 node)
    assert text.count("// max") == 3 * 4 * (3 * 3 + 1)
    x = default_vectors(q, 3000, seed=2)
    r = cosim(tmp_path / "rtl", x, build_root=tmp_path / "build")
    assert r["ok"] and r["vectors"] == len(x), (r["mismatch_fields"], r["details"][:2])
