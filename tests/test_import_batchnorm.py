"""BatchNormalization in QKeras models: imported as the IR's exact affine op, refused with the bits it needs when
Keras' float32 arithmetic cannot be exact, and quantize_batchnorm's copy imports bit-exactly (emulator ==
predict, and Verilator == emulator)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
qkeras = pytest.importorskip("qkeras")

import l1ad.firmware as fw  # noqa: E402
from l1ad.firmware.import_qkeras import QKerasImportError, quantize_batchnorm  # noqa: E402


def _bn_model(seed: int, *, after_relu: bool = False, in_quant: bool = True):
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    rng = np.random.default_rng(seed)
    tf.keras.utils.set_random_seed(seed)  # the same kernels every call
    inp = tf.keras.Input((16,))
    x = QActivation(quantized_bits(10, 4, alpha=1), name="qin")(inp) if in_quant else inp
    x = QDense(12, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1),
               activation=quantized_relu(8, 3) if after_relu else None, name="d1")(x)
    x = tf.keras.layers.BatchNormalization(name="bn1")(x)
    x = QActivation(quantized_relu(8, 3) if not after_relu else quantized_bits(8, 3, alpha=1), name="a1")(x)
    x = QDense(4, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1), name="d2")(x)
    m = tf.keras.Model(inp, x, name=f"bn{seed}")
    m.get_layer("bn1").set_weights([rng.uniform(0.5, 2, 12).astype("f4"), rng.normal(0, 1, 12).astype("f4"),
                                    rng.normal(0, 2, 12).astype("f4"), rng.uniform(0.5, 4, 12).astype("f4")])
    return m


def _x(n: int, seed: int) -> np.ndarray:
    return np.round(np.random.default_rng(seed).normal(0, 4, (n, 16)) * 1024) / 1024


def test_float_batchnorm_refused_with_bits():
    with pytest.raises(QKerasImportError, match=r"layer 'bn1' \(BatchNormalization\).*need \d+ significant bits, more than "
                                                r"float32's 24.*quantize_batchnorm"):
        fw.import_qkeras(_bn_model(0), "ap_fixed<16,6>")


@pytest.mark.parametrize("after_relu", [False, True])
def test_quantized_batchnorm_bit_exact_with_predict(after_relu):
    m = quantize_batchnorm(_bn_model(1, after_relu=after_relu), scale_bits=6)
    q = fw.import_qkeras(m, "ap_fixed<16,6>")
    assert [L.kind for L in q.layers] == ["dense", "affine", "dense"]
    x = _x(10000, 2)
    e = fw.emulate(q, x)
    p = m.predict(x, verbose=0, batch_size=4096)
    assert int(np.count_nonzero(e.outputs != p)) == 0
    # the rounding is a real change of the model, small against the BN output grid
    p0 = _bn_model(1, after_relu=after_relu).predict(x, verbose=0, batch_size=4096)
    assert np.abs(p0 - p).max() < 0.5


def test_quantize_batchnorm_constants_exact():
    m = quantize_batchnorm(_bn_model(3), scale_bits=5, offset_bits=6)
    from l1ad.firmware.import_qkeras import batchnorm_constants

    inv, off = batchnorm_constants(m.get_layer("bn1"))
    for v in inv:  # 5 significant bits
        mant, _ = np.frexp(float(v))
        assert float(mant * 32).is_integer()
    assert np.all(inv > 0) and len(np.unique(off)) > 1


@pytest.mark.verilator
@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator not installed")
def test_batchnorm_model_through_verilator(tmp_path):
    from l1ad.firmware.verilog import VerilogConfig, export_verilog
    from l1ad.sim.cosim import cosim, default_vectors

    m = quantize_batchnorm(_bn_model(4), scale_bits=6)
    q = fw.import_qkeras(m, "ap_fixed<16,6>")
    export_verilog(q, tmp_path / "rtl", VerilogConfig(top="bnnet", levels_per_stage=3))
    x = default_vectors(q, 3000, seed=1)
    r = cosim(tmp_path / "rtl", x, build_root=tmp_path / "build")
    assert r["ok"] and r["vectors"] == len(x), (r["mismatch_fields"], r["details"][:2])
    # and the RTL's reference (the emulator) is Keras' own prediction on those inputs
    p = m.predict(q.input.format.to_float(x), verbose=0, batch_size=4096)
    assert int(np.count_nonzero(fw.emulate(q, q.input.format.to_float(x)).outputs != p)) == 0
