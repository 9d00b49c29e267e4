"""Keras front-ends: QKeras (quantization-aware, the deployable one) and the float reference (plain Keras).

Deployed network (QKeras), layer names as in ArchitectureConfig.deployed_layers():
    input -> QActivation(quantized_bits(Bi, Ii, alpha=1), name="input_quant")
          -> QDense(kernel quantized_bits(Bw, Iw, alpha=1), bias quantized_bits(Bb, Ib, alpha=1), name=<layer>)
          -> QActivation(quantized_relu(Ba, Ia), name=<layer>_relu)          (hidden layers)
          -> ... -> last QDense (linear) -> QActivation(quantized_bits(Bo, Io, alpha=1), name="output_quant")
The float reference has the same layers as Dense/ReLU, without any quantizer.
VAE training adds (float, not deployed): logvar Dense, a sampling layer, decoder Dense layers.

Every forward value is exact in float32 (ArchitectureConfig checks the accumulator width), so predict() returns
fixed-point numbers that the firmware reproduces bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l1ad.trigger.atomic import atomic_path

from .arch import ArchitectureConfig
from .runtime import EpochMonitor, import_tf, seed_tf

PREDICT_BATCH = 16384


@dataclass
class KerasNet:
    train: Any  # keras.Model used for fitting (the AE itself; for the VAE encoder + logvar + decoder)
    deployed: Any  # keras.Model on the chip: scaled input -> reconstruction / mu
    kind: str


def _output_layer_name(arch: ArchitectureConfig) -> str:
    return "mu_quant" if arch.kind == "vae" else "output_quant"


def build(arch: ArchitectureConfig, seed: int, quantized: bool = True, threads: int | None = None) -> KerasNet:
    tf = import_tf(threads)
    seed_tf(seed)
    keras = tf.keras
    init = dict(kernel_initializer="glorot_uniform", bias_initializer="zeros")
    inp = keras.Input(shape=(arch.n_inputs,), name="input")
    if quantized:
        from qkeras import QActivation, QDense, quantized_bits, quantized_relu

        iq, wq, bq, aq, oq = arch.input_quant, arch.weight_quant, arch.bias_quant, arch.activation_quant, arch.output_quant
        h = QActivation(quantized_bits(iq.bits, iq.integer, alpha=1), name="input_quant")(inp)
    else:
        h = inp
    trunk = h
    for layer in arch.deployed_layers():
        trunk = h
        if quantized:
            h = QDense(layer.n_out, name=layer.name, kernel_quantizer=quantized_bits(wq.bits, wq.integer, alpha=1),
                       bias_quantizer=quantized_bits(bq.bits, bq.integer, alpha=1), **init)(h)
        else:
            h = keras.layers.Dense(layer.n_out, name=layer.name, **init)(h)
        if layer.activation == "relu":
            h = (QActivation(quantized_relu(aq.bits, aq.integer), name=f"{layer.name}_relu") if quantized
                 else keras.layers.ReLU(name=f"{layer.name}_relu"))(h)
    if quantized:
        h = QActivation(quantized_bits(oq.bits, oq.integer, alpha=1), name=_output_layer_name(arch))(h)
    deployed = keras.Model(inp, h, name=f"{arch.name}_{'qkeras' if quantized else 'float'}")
    if arch.kind == "ae":
        return KerasNet(train=deployed, deployed=deployed, kind="ae")
    # VAE training graph: trunk -> logvar; z = mu + sigma * eps; float decoder
    mu = h
    logvar = keras.layers.Dense(arch.latent, name="logvar", kernel_initializer="zeros", bias_initializer="zeros")(trunk)
    d = _Sampling(name="sampling")([mu, logvar])
    for i, n in enumerate(arch.decoder_sizes):
        d = keras.layers.Dense(n, activation="relu", name=f"vae_dec_{i + 1}", **init)(d)
    xhat = keras.layers.Dense(arch.n_inputs, name="vae_output", **init)(d)
    train = keras.Model(inp, keras.layers.Concatenate(name="train_outputs")([xhat, mu, logvar]), name=f"{arch.name}_vae_train")
    return KerasNet(train=train, deployed=deployed, kind="vae")


def deployed(net: KerasNet):
    return net.deployed


def _sampling_layer():
    tf = import_tf()

    class Sampling(tf.keras.layers.Layer):
        """z = mu + exp(logvar / 2) * eps in training; z = mu otherwise (deterministic validation loss)."""

        def call(self, inputs, training=None):
            mu, logvar = inputs
            if training:
                return mu + tf.exp(0.5 * logvar) * tf.random.normal(tf.shape(mu))
            return mu

    return Sampling


def _Sampling(**kw):
    return _sampling_layer()(**kw)


# ---------------------------------------------------------------------------------------------- losses
def _losses(arch: ArchitectureConfig):
    """Per-event loss functions on y_true = [target x | mask] and the model output; plus metrics."""
    tf = import_tf()
    n, lat, beta = arch.n_inputs, arch.latent, arch.vae_beta

    def sq_err(y_true, y_pred):
        x, m = y_true[:, :n], y_true[:, n:]
        return tf.reduce_sum(m * tf.square(x - y_pred[:, :n]), axis=-1)

    if arch.kind == "ae":
        def mse(y_true, y_pred):
            return sq_err(y_true, y_pred) / n

        return mse, []

    def reco(y_true, y_pred):
        return sq_err(y_true, y_pred)

    def kl(y_true, y_pred):
        mu, lv = y_pred[:, n:n + lat], tf.clip_by_value(y_pred[:, n + lat:], -16.0, 16.0)
        return -0.5 * tf.reduce_sum(1.0 + lv - tf.square(mu) - tf.exp(lv), axis=-1)

    def loss(y_true, y_pred):
        return (1.0 - beta) * reco(y_true, y_pred) + beta * kl(y_true, y_pred)

    return loss, [reco, kl]


# ---------------------------------------------------------------------------------------------- training
def fit(net: KerasNet, arch: ArchitectureConfig, data, cfg, ckpt_dir: Path | None, desc: str = "training") -> dict:
    tf = import_tf(cfg.threads)
    loss, metrics = _losses(arch)
    model = net.train
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=cfg.learning_rate), loss=loss,
                  weighted_metrics=metrics or [])
    y = np.concatenate([data.t, data.m], axis=1)
    y_val = np.concatenate([data.t_val, data.m_val], axis=1)
    monitor = EpochMonitor(cfg.epochs, cfg.patience, cfg.min_delta, cfg.progress, desc)
    keep = _KeepBest(monitor, ckpt_dir)
    callbacks = [keep]
    if cfg.lr_patience:
        callbacks.append(tf.keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=cfg.lr_patience, verbose=0))
    try:
        model.fit(data.x, y, sample_weight=data.w, validation_data=(data.x_val, y_val, data.w_val), epochs=cfg.epochs,
                  batch_size=cfg.batch_size, shuffle=True, verbose=0, callbacks=callbacks)
    finally:
        summary = monitor.close()
    return summary


def _KeepBest(monitor: EpochMonitor, ckpt_dir: Path | None):
    tf = import_tf()

    class KeepBest(tf.keras.callbacks.Callback):
        """Early stopping + best-weights checkpoint + restore at the end, driven by the shared EpochMonitor."""

        def __init__(self):
            super().__init__()
            self.best = None

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            logs["lr"] = float(tf.keras.backend.get_value(self.model.optimizer.learning_rate))
            improved, stop = monitor.update(epoch, logs)
            if improved:
                self.best = self.model.get_weights()
                if ckpt_dir is not None:
                    ckpt_dir.mkdir(parents=True, exist_ok=True)
                    with atomic_path(ckpt_dir / "best.weights.h5", suffix=".h5") as tmp:
                        self.model.save_weights(str(tmp))
            if stop:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.best is not None:
                self.model.set_weights(self.best)

    return KeepBest()


# ---------------------------------------------------------------------------------------------- inference / IO
def predict(model, xs: np.ndarray) -> np.ndarray:
    x = np.asarray(xs, dtype=np.float32)
    if len(x) == 0:
        return np.zeros((0, model.output_shape[-1]))
    return np.asarray(model.predict(x, batch_size=PREDICT_BATCH, verbose=0), dtype=np.float64)


def save(model, path: Path) -> None:
    import warnings

    with atomic_path(path, suffix=".h5") as tmp, warnings.catch_warnings():
        # HDF5 is what hls4ml and qkeras.utils.load_qmodel read; QKeras quantizers as constraints warn harmlessly
        warnings.simplefilter("ignore", UserWarning)
        model.save(str(tmp), save_format="h5", include_optimizer=False)


def load(path: Path, arch: ArchitectureConfig):
    import_tf()
    from qkeras.utils import load_qmodel

    model = load_qmodel(str(path), compile=False)
    check(model, arch, source=str(path))
    return model


def check(model, arch: ArchitectureConfig, *, source: str) -> None:
    """Clear error when a saved network does not match its architecture config (sizes or quantizers)."""
    names = {l.name for l in model.layers}
    for layer in arch.deployed_layers():
        if layer.name not in names:
            raise ValueError(f"{source}: has no layer '{layer.name}' that the architecture config describes")
        shape = tuple(model.get_layer(layer.name).kernel.shape)
        if shape != (layer.n_in, layer.n_out):
            raise ValueError(f"{source}: layer '{layer.name}' has shape {shape}, the architecture config says "
                             f"{(layer.n_in, layer.n_out)}")
    if "input_quant" in names:
        expect = {"input_quant": arch.input_quant, _output_layer_name(arch): arch.output_quant}
        for name, spec in expect.items():
            q = model.get_layer(name).quantizer
            if (int(q.bits), int(q.integer)) != (spec.bits, spec.integer):
                raise ValueError(f"{source}: quantizer of '{name}' is ({q.bits}, {q.integer}) bits, the architecture "
                                 f"config says ({spec.bits}, {spec.integer})")
