"""The model zoo of bench/model_zoo.py: networks written as their users write them (not for l1ad), saved as the
files they would hand over. Weights are seeded random draws (trained weights change no code path of the import;
BatchNormalization statistics are drawn too, so the layer is not an identity).

The two hls4ml example models (fastmachinelearning/example-models keras/qkeras_3layer and qkeras_mnist_dense)
are rebuilt layer for layer: that repository states no licence, so its files are not copied.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _seeded(m, seed: int, sd: float = 0.4):
    rng = np.random.default_rng(seed)
    for layer in m.layers:
        w = layer.get_weights()
        if w and type(layer).__name__ != "BatchNormalization":
            layer.set_weights([rng.normal(0, sd, a.shape).astype(np.float32) for a in w])
    return m


def _bn_stats(layer, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = layer.get_weights()[0].shape[0]
    layer.set_weights([rng.uniform(0.5, 2, n).astype("f4"), rng.normal(0, 1, n).astype("f4"),
                       rng.normal(0, 2, n).astype("f4"), rng.uniform(0.5, 4, n).astype("f4")])


def _save(m, work: Path, name: str) -> Path:
    p = Path(work) / f"{name}.h5"
    m.save(p)
    return p


# ---------------------------------------------------------------------------------------------- QKeras
def qkeras_3layer_model(seed: int = 0):
    """16 -> 64 -> 32 -> 32 -> 5, 6-bit quantized_bits(6,0) weights and biases, quantized_relu(6,0), softmax."""
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu
    from tensorflow import keras

    inp = keras.Input((16,), name="fc1_input")
    h = inp
    for i, n in enumerate((64, 32, 32), 1):
        h = QDense(n, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1), name=f"fc{i}")(h)
        h = QActivation(quantized_relu(6, 0), name=f"relu{i}")(h)
    h = QDense(5, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1), name="output")(h)
    return _seeded(keras.Model(inp, keras.layers.Activation("softmax", name="softmax")(h)), seed)


def qkeras_mnist_dense_model(seed: int = 0):
    """784 -> quantized_relu(2) -> 20 (quantized_po2(4,1) kernel) -> quantized_relu(3,1) -> 10 -> softmax."""
    from qkeras import QActivation, QDense, quantized_bits, quantized_po2
    from tensorflow import keras

    inp = keras.Input((784,), name="input_3")
    h = QActivation("quantized_relu(2)", name="q_activation_2")(inp)
    h = QDense(20, kernel_quantizer=quantized_po2(4, 1), bias_quantizer=quantized_bits(2, 0, symmetric=1, alpha=None),
               name="q_dense_2")(h)
    h = QActivation("quantized_relu(3,1)", name="q_activation_3")(h)
    h = QDense(10, kernel_quantizer=quantized_bits(4, 0, symmetric=1, alpha=1),
               bias_quantizer=quantized_bits(4, 0, symmetric=1, alpha=None), name="q_dense_3")(h)
    return _seeded(keras.Model(inp, keras.layers.Activation("softmax", name="activation_3")(h)), seed)


def qkeras_3layer(work: Path) -> Path:
    return _save(qkeras_3layer_model(0), work, "qkeras_3layer")


def qkeras_mnist_dense(work: Path) -> Path:
    return _save(qkeras_mnist_dense_model(0), work, "qkeras_mnist_dense")


def _mlp(work: Path, name: str, bits: int, *, use_bias: bool = True, sizes=(16, 24, 12, 5), in_quant: bool = True,
         out_quant: bool = True, softmax: bool = False, seed: int = 1, kernel=None):
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu
    from tensorflow import keras

    inp = keras.Input((sizes[0],))
    h = QActivation(quantized_bits(10, 4, alpha=1), name="qin")(inp) if in_quant else inp
    for i, n in enumerate(sizes[1:], 1):
        last = i == len(sizes) - 1
        kq = kernel if kernel is not None else quantized_bits(bits, 0, alpha=1)
        h = QDense(n, kernel_quantizer=kq, bias_quantizer=quantized_bits(bits, 2, alpha=1) if use_bias else None,
                   use_bias=use_bias, name=f"d{i}")(h)
        if not last:
            h = QActivation(quantized_relu(8, 3), name=f"r{i}")(h)
    if out_quant:
        h = QActivation(quantized_bits(12, 5, alpha=1), name="qout")(h)
    if softmax:
        h = keras.layers.Softmax(name="softmax")(h)
    return _save(_seeded(keras.Model(inp, h, name=name), seed), work, name)


def plain_ae(work: Path) -> Path:
    """An autoencoder as in the AD tutorials: no input quantizer, relu encoder/decoder, 8-bit everything."""
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu
    from tensorflow import keras

    inp = keras.Input((16,))
    h = inp
    for i, n in enumerate((8, 4, 8), 1):
        h = QDense(n, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 0, alpha=1), name=f"d{i}")(h)
        h = QActivation(quantized_relu(8, 2), name=f"r{i}")(h)
    h = QDense(16, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 0, alpha=1), name="out")(h)
    return _save(_seeded(keras.Model(inp, h, name="plain_ae"), 2), work, "plain_ae")


def _bn_net(work: Path, name: str, quantize: bool) -> Path:
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu
    from tensorflow import keras

    from l1ad.firmware.import_qkeras import quantize_batchnorm

    inp = keras.Input((16,))
    h = QActivation(quantized_bits(8, 3, alpha=1), name="qin")(inp)
    h = QDense(12, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1), name="d1")(h)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = QActivation(quantized_relu(8, 3), name="r1")(h)
    h = QDense(4, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1), name="d2")(h)
    h = QActivation(quantized_bits(10, 4, alpha=1), name="qout")(h)
    m = _seeded(keras.Model(inp, h, name=name), 3)
    _bn_stats(m.get_layer("bn1"), 3)
    return _save(quantize_batchnorm(m, scale_bits=6) if quantize else m, work, name)


def recalled(work: Path) -> Path:
    """A trained model's layers re-called on a new input with an input quantizer in front (the layers' first
    graph is not the model's)."""
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu
    from tensorflow import keras

    inp = keras.Input((10,))
    h = QDense(8, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1), name="d0")(inp)
    h = QActivation(quantized_relu(6, 2), name="r0")(h)
    h = QDense(3, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1), name="d1")(h)
    m1 = _seeded(keras.Model(inp, h), 4)
    inp2 = keras.Input((10,))
    g = QActivation(quantized_bits(8, 3, alpha=1), name="qin")(inp2)
    for ln in ("d0", "r0", "d1"):
        g = m1.get_layer(ln)(g)
    return _save(keras.Model(inp2, g, name="recalled"), work, "recalled")


def qconv2d(work: Path) -> Path:
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu
    from tensorflow import keras

    inp = keras.Input((18, 14, 1))
    h = QConv2D(4, (3, 3), kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1), name="conv")(inp)
    h = QActivation(quantized_relu(8, 3), name="r")(h)
    h = keras.layers.Flatten()(h)
    h = QDense(1, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1), name="out")(h)
    return _save(_seeded(keras.Model(inp, h, name="qconv2d"), 5), work, "qconv2d")


def qconv2d_pool(work: Path) -> Path:
    """QConv2D (same) -> MaxPooling2D -> AveragePooling2D (2x2: an exact mean) -> Flatten -> QDense."""
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu
    from tensorflow import keras

    inp = keras.Input((18, 14, 1))
    h = QActivation(quantized_bits(8, 5, alpha=1), name="qin")(inp)
    h = QConv2D(4, (3, 3), padding="same", kernel_quantizer=quantized_bits(6, 0, alpha=1),
                bias_quantizer=quantized_bits(6, 0, alpha=1), name="conv")(h)
    h = QActivation(quantized_relu(8, 3), name="r")(h)
    h = keras.layers.MaxPooling2D((2, 2), name="max")(h)  # (9, 7, 4)
    h = keras.layers.AveragePooling2D((2, 2), padding="same", name="avg")(h)  # (5, 4, 4): edge windows of 2 and 1
    h = keras.layers.Flatten()(h)
    h = QDense(1, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1), name="out")(h)
    return _save(_seeded(keras.Model(inp, h, name="qconv2d_pool"), 7), work, "qconv2d_pool")


# ---------------------------------------------------------------------------------------------- Brevitas
def brevitas_quants(fixed: bool) -> tuple[dict, dict, dict]:
    """Keyword arguments for Brevitas layers: (weights and bias, signed activations, unsigned activations).
    fixed=True: 8-bit fixed-point (power-of-two scale) quantizers; False: Brevitas' defaults (float scales learned
    from statistics, float bias), i.e. no arguments."""
    if not fixed:
        return {}, {}, {}
    from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8BiasPerTensorFixedPointInternalScaling,
                                Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint)

    return (dict(weight_quant=Int8WeightPerTensorFixedPoint, bias_quant=Int8BiasPerTensorFixedPointInternalScaling),
            dict(act_quant=Int8ActPerTensorFixedPoint), dict(act_quant=Uint8ActPerTensorFixedPoint))


def export_brevitas(net, path: str | Path, batch, rounds: int) -> Path:
    """The QONNX file of a Brevitas net, after calibrating its statistics-based scales on `rounds` calls of
    `batch()` in train mode (as a training loop would); the export's example input has batch()'s shape."""
    import torch
    from brevitas.export import export_qonnx

    net.train()
    with torch.no_grad():
        for _ in range(rounds):
            x = batch()
            net(x)
    net.eval()
    export_qonnx(net, args=torch.zeros(1, *x.shape[1:]), export_path=str(path), dynamo=False)
    return Path(path)


def _brevitas(work: Path, name: str, kind: str) -> Path:
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import Int8WeightPerChannelFloat

    torch.manual_seed(6)
    w, a, r = brevitas_quants(kind == "fixed")
    if kind == "per_channel":
        w = dict(weight_quant=Int8WeightPerChannelFloat)
    relu = qnn.QuantReLU(return_quant_tensor=True, **r) if kind == "fixed" else qnn.QuantReLU()
    layers = [qnn.QuantIdentity(return_quant_tensor=True, **a), qnn.QuantLinear(12, 16, bias=True, **w), relu,
              qnn.QuantLinear(16, 4, bias=True, **w), qnn.QuantIdentity(**a)]
    return export_brevitas(torch.nn.Sequential(*layers), Path(work) / f"{name}.onnx", lambda: torch.randn(256, 12) * 2, 20)


MODELS: dict[str, dict] = {
    "qkeras_3layer": {"build": qkeras_3layer, "what": "hls4ml example, 6-bit, softmax (dropped)", "drop_softmax": True},
    "qkeras_mnist_dense": {"build": qkeras_mnist_dense, "what": "hls4ml example, quantized_po2 kernel, softmax (dropped)",
                           "drop_softmax": True, "scale": 1.5},
    "plain_ae": {"build": plain_ae, "what": "AE, no input quantizer, 8-bit", "scale": 2.0},
    "bn_quantized": {"build": lambda w: _bn_net(w, "bn_quantized", True),
                     "what": "QDense + BatchNormalization (quantize_batchnorm copy)", "scale": 2.0},
    "bn_float": {"build": lambda w: _bn_net(w, "bn_float", False), "what": "QDense + BatchNormalization, float constants"},
    "bias_free": {"build": lambda w: _mlp(w, "bias_free", 6, use_bias=False), "what": "QDense(use_bias=False)", "scale": 2.0},
    "w3": {"build": lambda w: _mlp(w, "w3", 3), "what": "3-bit weights", "scale": 2.0},
    "w4": {"build": lambda w: _mlp(w, "w4", 4), "what": "4-bit weights", "scale": 2.0},
    "w8": {"build": lambda w: _mlp(w, "w8", 8), "what": "8-bit weights", "scale": 2.0},
    "auto_po2": {"build": lambda w: _mlp(w, "auto_po2", 6, kernel=__import__("qkeras").quantized_bits(6, 0, alpha="auto_po2")),
                 "what": "quantized_bits(alpha='auto_po2') kernel", "scale": 2.0},
    "classifier_softmax": {"build": lambda w: _mlp(w, "classifier_softmax", 6, sizes=(20, 32, 10), out_quant=False, softmax=True),
                           "what": "classifier ending in softmax (dropped)", "drop_softmax": True, "scale": 2.0},
    "recalled": {"build": recalled, "what": "trained layers re-called behind a new input quantizer", "scale": 2.0},
    "brevitas_fixed": {"build": lambda w: _brevitas(w, "brevitas_fixed", "fixed"), "what": "Brevitas fixed-point quantizers"},
    "brevitas_default": {"build": lambda w: _brevitas(w, "brevitas_default", "default"),
                         "what": "Brevitas defaults (float scales, float bias)"},
    "brevitas_per_channel": {"build": lambda w: _brevitas(w, "brevitas_per_channel", "per_channel"),
                             "what": "Brevitas per-channel float weight scales"},
    "qconv2d": {"build": qconv2d, "what": "QConv2D on an 18x14 image"},
    "qconv2d_pool": {"build": qconv2d_pool, "what": "QConv2D + MaxPooling2D + AveragePooling2D (same) on an 18x14 image"},
}
