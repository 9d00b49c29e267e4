"""import_qkeras walks the given model's own graph: trained layers re-called on a new input (the usual way to put an
input quantizer in front of a trained network) are imported as the new model computes them, not from the graph
the layers were first built in."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qkeras")

from l1ad.firmware import emulate, import_qkeras  # noqa: E402
from l1ad.firmware.import_qkeras import QKerasImportError  # noqa: E402

N = 12_000


def _trained():
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu
    from tensorflow import keras

    q = dict(kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1))
    inp = keras.Input((8,), name="x")
    h = QActivation(quantized_bits(10, 3, alpha=1), name="q0")(inp)
    h = QDense(6, name="d0", **q)(h)
    h = QActivation(quantized_relu(8, 3), name="r0")(h)
    h = QDense(4, name="d1", **q)(h)
    out = QActivation(quantized_bits(10, 4, alpha=1), name="o")(h)
    m1 = keras.Model(inp, out)
    rng = np.random.default_rng(5)
    for layer in m1.layers:
        w = layer.get_weights()
        if w:
            layer.set_weights([rng.normal(0, 0.6, a.shape).astype(np.float32) for a in w])
    return m1


def _recalled(m1):
    from qkeras import QActivation, quantized_bits
    from tensorflow import keras

    inp2 = keras.Input((8,), name="x2")
    g = m1.get_layer("d0")(QActivation(quantized_bits(8, 2, alpha=1), name="q_new")(inp2))
    for name in ("r0", "d1", "o"):
        g = m1.get_layer(name)(g)
    return keras.Model(inp2, g, name="recalled")


def _mismatches(model, q, x):
    e = emulate(q, x)
    p = model.predict(x, verbose=0, batch_size=4096)
    return int(np.count_nonzero(q.output_format.to_float(e.outputs_int) != p))


def test_recalled_layers_follow_the_models_own_graph():
    m1 = _trained()
    m2 = _recalled(m1)
    x = np.round(np.random.default_rng(0).normal(0, 2, (N, 8)) * 1024) / 1024
    q2 = import_qkeras(m2, "ap_fixed<16,6>", score=None)
    assert q2.meta["layers"] == ["x2", "q_new", "d0", "r0", "d1", "o"]
    assert str(q2.input_quantizer) == "ap_fixed<8,3,RND_CONV,SAT>"
    assert _mismatches(m2, q2, x) == 0
    # the first model still imports as itself
    q1 = import_qkeras(m1, "ap_fixed<16,6>", score=None)
    assert q1.meta["layers"] == ["x", "q0", "d0", "r0", "d1", "o"]
    assert _mismatches(m1, q1, x) == 0
    # and the two differ (the test would pass vacuously otherwise)
    assert _mismatches(m2, q1, x) > 0


def test_layer_used_twice_in_one_model_is_refused():
    from tensorflow import keras

    m1 = _trained()
    inp = keras.Input((8,))
    r = m1.get_layer("r0")
    d = keras.layers.Dense(6, name="sq")
    h = r(d(r(m1.get_layer("d0")(inp))))
    with pytest.raises(QKerasImportError, match="'r0' is called 2 times"):
        import_qkeras(keras.Model(inp, h), "ap_fixed<16,6>", score=None)
