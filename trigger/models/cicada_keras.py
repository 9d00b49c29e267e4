"""Keras front-end of the CICADA-style trigger: a float convolutional autoencoder teacher and a QKeras student.

Teacher (float, training only), on the (18, 14, 1) image t = log1p(code) / log(1024), filters (f1, f2, ...):
    Conv2D(f1, 3x3, same, relu) -> AveragePooling2D(2) -> [Conv2D(f_i, 3x3, same, relu) at 9 x 7 for f2, ...]
    -> Flatten -> Dense(latent, relu) -> Dense(9 * 7 * f1, relu) -> Reshape(9, 7, f1) -> UpSampling2D(2)
    -> Conv2D(1, 3x3, same, linear)                      score: mean squared error over the 252 regions
Student (deployed; channels last, input (18, 14, 1) = region code * 2**-input_shift):
    QActivation(quantized_bits(Bi, Ii, alpha=1), "input_quant")
    conv:  -> QConv2D(F, k x k, stride s, valid, "conv") -> QActivation(quantized_relu(Ba, Ia), "conv_relu") -> Flatten
    dense: -> Flatten
    -> QDense(h, "dense_<i>") -> QActivation(quantized_relu, "dense_<i>_relu") ... -> QDense(1, "output")
    -> QActivation(quantized_bits(Bo, Io, alpha=1), "output_quant")
Every student layer is one that firmware.import_qkeras imports exactly (QConv2D / MaxPooling2D / QDense / QActivation /
Flatten).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from l1ad.trigger.atomic import atomic_path

from .runtime import EpochMonitor, import_tf, seed_tf

PREDICT_BATCH = 8192
MODEL_SUFFIX = ".h5"


def build_teacher(cfg, seed: int):
    tf = import_tf(cfg.threads)
    seed_tf(seed)
    L = tf.keras.layers
    f1 = cfg.teacher_filters[0]
    inp = tf.keras.Input((18, 14, 1), name="image")
    h = L.Conv2D(f1, 3, padding="same", activation="relu", name="enc_conv1")(inp)
    h = L.AveragePooling2D(2, name="enc_pool")(h)
    for i, f in enumerate(cfg.teacher_filters[1:]):
        h = L.Conv2D(f, 3, padding="same", activation="relu", name=f"enc_conv{i + 2}")(h)
    h = L.Flatten(name="enc_flat")(h)
    h = L.Dense(cfg.teacher_latent, activation="relu", name="latent")(h)
    h = L.Dense(9 * 7 * f1, activation="relu", name="dec_dense")(h)
    h = L.Reshape((9, 7, f1), name="dec_reshape")(h)
    h = L.UpSampling2D(2, name="dec_up")(h)
    out = L.Conv2D(1, 3, padding="same", name="reconstruction")(h)
    return tf.keras.Model(inp, out, name="cicada_teacher")


def build_student(cfg, seed: int):
    tf = import_tf(cfg.threads)
    seed_tf(seed + 1)
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    iq, wq, bq, aq, oq = cfg.input_quant, cfg.weight_quant, cfg.bias_quant, cfg.activation_quant, cfg.output_quant
    wk = dict(kernel_quantizer=quantized_bits(wq.bits, wq.integer, alpha=1),
              bias_quantizer=quantized_bits(bq.bits, bq.integer, alpha=1), kernel_initializer="glorot_uniform",
              bias_initializer="zeros")
    inp = tf.keras.Input((18, 14, 1), name="regions")
    h = QActivation(quantized_bits(iq.bits, iq.integer, alpha=1), name="input_quant")(inp)
    if cfg.student == "conv":
        h = QConv2D(cfg.student_filters, cfg.student_kernel, strides=cfg.student_stride, padding="valid", name="conv", **wk)(h)
        h = QActivation(quantized_relu(aq.bits, aq.integer), name="conv_relu")(h)
        if cfg.student_pool > 1:
            h = tf.keras.layers.MaxPooling2D(cfg.student_pool, name="pool")(h)
    h = tf.keras.layers.Flatten(name="flatten")(h)
    for i, n in enumerate(cfg.student_hidden):
        h = QDense(n, name=f"dense_{i + 1}", **wk)(h)
        h = QActivation(quantized_relu(aq.bits, aq.integer), name=f"dense_{i + 1}_relu")(h)
    h = QDense(1, name="output", **wk)(h)
    out = QActivation(quantized_bits(oq.bits, oq.integer, alpha=1), name="output_quant")(h)
    return tf.keras.Model(inp, out, name=f"cicada_student_{cfg.student}")


def n_params(model) -> int:
    return int(model.count_params())


# ---------------------------------------------------------------------------------------------- training
def fit(model, x, y, w, x_val, y_val, w_val, *, epochs: int, cfg, learning_rate: float, desc: str) -> dict:
    """Weighted per-sample mean squared error (over every output value), Adam, early stopping on the validation
    loss with the best weights restored, ReduceLROnPlateau, a progress bar over epochs."""
    tf = import_tf(cfg.threads)
    from .keras_nets import _KeepBest

    def per_sample_mse(y_true, y_pred):
        axes = list(range(1, len(y_pred.shape)))
        return tf.reduce_mean(tf.square(y_true - y_pred), axis=axes)

    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=learning_rate), loss=per_sample_mse,
                  weighted_metrics=[])  # no metrics beyond the sample-weighted loss (silences a per-call warning)
    monitor = EpochMonitor(epochs, cfg.patience, 0.0, cfg.progress, desc)
    callbacks = [_KeepBest(monitor, None)]
    if cfg.lr_patience:
        callbacks.append(tf.keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=cfg.lr_patience, verbose=0))
    try:
        model.fit(x, y, sample_weight=w, validation_data=(x_val, y_val, w_val), epochs=epochs, batch_size=cfg.batch_size,
                  shuffle=True, verbose=0, callbacks=callbacks)
    finally:
        summary = monitor.close()
    return summary


def predict(model, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if len(x) == 0:
        return np.zeros((0, *model.output_shape[1:]))
    return np.asarray(model.predict(x, batch_size=PREDICT_BATCH, verbose=0), dtype=np.float64)


def image_layout(x: np.ndarray) -> np.ndarray:
    """(N, 18, 14) -> the network's (N, 18, 14, 1) channels-last input."""
    return np.ascontiguousarray(x[..., None], dtype=np.float32)


# ---------------------------------------------------------------------------------------------- IO
def save(model, path: Path) -> None:
    import warnings

    with atomic_path(path, suffix=".h5") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.save(str(tmp), save_format="h5", include_optimizer=False)


def load(path: Path, cfg, role: str):
    import_tf(cfg.threads)
    if role == "student":
        from qkeras.utils import load_qmodel

        return load_qmodel(str(path), compile=False)
    import tensorflow as tf

    return tf.keras.models.load_model(str(path), compile=False)
