"""`l1ad cosim` takes a model file as well as generated RTL: it generates the RTL, co-simulates it against the
emulator, and compares the emulator with the source framework's own prediction (a wrong import fails)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("qkeras")
pytestmark = [pytest.mark.verilator, pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator not installed")]


def _keras_file(path):
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    tf.keras.utils.set_random_seed(5)
    inp = tf.keras.Input((6,))
    x = QActivation(quantized_bits(8, 3, alpha=1), name="qin")(inp)
    x = QDense(5, kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(4, 0, alpha=1),
               activation=quantized_relu(6, 2), name="d1")(x)
    x = QDense(6, kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(4, 0, alpha=1), name="d2")(x)
    m = tf.keras.Model(inp, QActivation(quantized_bits(10, 4, alpha=1), name="out")(x))
    m.save(path)
    return path


def test_cosim_cli_on_a_keras_file(tmp_path, monkeypatch):
    from l1ad.cli import main

    monkeypatch.chdir(tmp_path)
    src = _keras_file(tmp_path / "net.h5")
    rc = main(["cosim", str(src), "-n", "3000", "--out", str(tmp_path / "c.json")])
    assert rc in (0, None)
    rep = json.loads((tmp_path / "c.json").read_text())
    assert rep["ok"] and rep["mismatches"] == 0 and rep["vectors"] >= 3000
    fa = rep["framework_agreement"]
    assert fa["compared"] == "qkeras_predict" and fa["output_mismatches"] == 0 and fa["n_values"] == rep["vectors"] * 6
    assert (tmp_path / "net_rtl" / "design.json").is_file()
    # a qmodel.json source has no framework: said, not faked
    rc = main(["cosim", str(tmp_path / "net_rtl" / "qmodel.json"), "-n", "500", "--rtl-out", str(tmp_path / "r2"),
               "--out", str(tmp_path / "c2.json")])
    assert json.loads((tmp_path / "c2.json").read_text())["framework_agreement"] is None
    assert np.isfinite(rep["sim_seconds"])
