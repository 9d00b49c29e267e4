"""Issue 13: a classifier whose trained layers are re-called behind a new input quantizer imports as the new model
computes it (emulator == model.predict, 0 mismatches); graphs that branch are refused naming the layer."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qkeras")

from l1ad.firmware import emulate, import_qkeras  # noqa: E402
from l1ad.firmware.import_qkeras import QKerasImportError  # noqa: E402

N = 10_000


def _q():
    from qkeras import quantized_bits

    return dict(kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1))


def _trained_classifier():
    """16 -> 12 -> 5, trained weights stand-in (seeded), with its own input quantizer q0."""
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu
    from tensorflow import keras

    inp = keras.Input((16,), name="x")
    h = QActivation(quantized_bits(12, 4, alpha=1), name="q0")(inp)
    h = QDense(12, name="d0", **_q())(h)
    h = QActivation(quantized_relu(8, 3), name="r0")(h)
    h = QDense(5, name="d1", **_q())(h)
    out = QActivation(quantized_bits(10, 4, alpha=1), name="o")(h)
    m1 = keras.Model(inp, out, name="m1")
    rng = np.random.default_rng(13)
    for layer in m1.layers:
        if layer.get_weights():
            layer.set_weights([rng.normal(0, 0.5, a.shape).astype(np.float32) for a in layer.get_weights()])
    return m1


def _mismatches(model, qm, x) -> int:
    e = emulate(qm, x)
    p = model.predict(x, verbose=0, batch_size=4096)
    return int(np.count_nonzero(qm.output_format.to_float(e.outputs_int) != p))


def test_recalled_classifier_with_defaults_is_bit_exact():
    from qkeras import QActivation, quantized_bits
    from tensorflow import keras

    m1 = _trained_classifier()
    inp2 = keras.Input((16,), name="x2")
    g = m1.get_layer("d0")(QActivation(quantized_bits(8, 3, alpha=1), name="q_new")(inp2))
    for name in ("r0", "d1", "o"):
        g = m1.get_layer(name)(g)
    m2 = keras.Model(inp2, g, name="m2")
    x = np.round(np.random.default_rng(1).normal(0, 3, (N, 16)) * 256) / 256
    q2 = import_qkeras(m2)  # defaults: a 16 -> 5 classifier gets no score block and no gate
    assert q2.score is None
    assert q2.meta["layers"] == ["x2", "q_new", "d0", "r0", "d1", "o"]
    assert str(q2.input_quantizer) == "ap_fixed<8,4,RND_CONV,SAT>"
    assert _mismatches(m2, q2, x) == 0
    # the layers' first graph (the old import) computes something else on these inputs
    q1 = import_qkeras(m1)
    assert _mismatches(m1, q1, x) == 0
    assert _mismatches(m2, q1, x) > N  # of 5 * N outputs


def test_skip_connection_is_refused_naming_the_merge_layer():
    from qkeras import QActivation, QDense, quantized_bits
    from tensorflow import keras

    inp = keras.Input((8,), name="x")
    h = QActivation(quantized_bits(10, 3, alpha=1), name="q0")(inp)
    s = keras.layers.Add(name="skip")([h, QDense(8, name="d0", **_q())(h)])
    m = keras.Model(inp, QDense(4, name="d1", **_q())(s))
    with pytest.raises(QKerasImportError, match="layer 'skip' has 2 inputs"):
        import_qkeras(m)


def test_nested_model_is_refused_naming_it():
    from qkeras import QActivation, quantized_bits
    from tensorflow import keras

    m1 = _trained_classifier()
    inp2 = keras.Input((16,))
    m2 = keras.Model(inp2, m1(QActivation(quantized_bits(8, 3, alpha=1))(inp2)))
    with pytest.raises(QKerasImportError, match=r"'m1' \(Functional\): a model nested as a layer"):
        import_qkeras(m2)


def test_two_heads_import_the_one_asked_for():
    from qkeras import QActivation, QDense, quantized_bits
    from tensorflow import keras

    inp = keras.Input((8,), name="x")
    h = QDense(6, name="d0", **_q())(QActivation(quantized_bits(10, 3, alpha=1), name="q0")(inp))
    a = QActivation(quantized_bits(10, 4, alpha=1), name="oa")(QDense(3, name="ha", **_q())(h))
    b = QActivation(quantized_bits(10, 4, alpha=1), name="ob")(QDense(2, name="hb", **_q())(h))
    m = keras.Model(inp, [a, b])
    rng = np.random.default_rng(2)
    for layer in m.layers:
        if layer.get_weights():
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    with pytest.raises(QKerasImportError, match="2 outputs"):
        import_qkeras(m)
    qb = import_qkeras(m, output_layer="ob")
    assert qb.meta["layers"] == ["x", "q0", "d0", "hb", "ob"]
    x = np.round(rng.normal(0, 2, (N, 8)) * 256) / 256
    assert _mismatches(keras.Model(inp, b), qb, x) == 0
