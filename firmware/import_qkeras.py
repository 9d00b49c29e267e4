"""QKeras -> QModel importer.

Supported graphs: a chain (each layer has one input) from the model input to the chosen output layer, made of
    InputLayer, QActivation(quantized_bits | quantized_relu | "relu" | "linear"), QDense (kernel and bias
    quantizers quantized_bits with alpha None/1 or "auto_po2"; activation linear / relu / quantized_relu /
    quantized_bits), Activation("linear"|"relu"), Dropout (inference identity), Flatten, QConv1D / QConv2D,
    MaxPooling1D/2D, AveragePooling1D/2D, QAveragePooling2D, GlobalMax/GlobalAveragePooling1D/2D (average pooling
    only with power-of-two divisors: the mean is then exact; any other divisor is refused, naming it),
    BatchNormalization (an exact per-channel affine op x * inv + off with Keras' own float32 constants; refused,
    naming the layer and the bits, when float32 cannot compute it exactly: ``quantize_batchnorm(model)`` returns a
    copy with rounded constants that imports exactly), a trailing softmax with ``softmax="drop"``.
The chain is: [input quantizer] ((QDense | BatchNormalization) [activation quantizer])* [output quantizer].
Anything else raises QKerasImportError naming the layer.

QKeras quantizer semantics (qkeras 0.9.0, read from its source):
    quantized_bits(b, i, symmetric=s, keep_negative=True, alpha=1):  xq = clip(tf.round(x * 2**(b-1-i)),
        -2**(b-1) + s, 2**(b-1) - 1) * 2**-(b-1-i)          == ap_fixed<b, i+1, RND_CONV, SAT (SAT_SYM if s)>
    quantized_bits(..., keep_negative=False):              == ap_ufixed<b, i, RND_CONV, SAT>
    quantized_relu(b, i):  clip(tf.round(relu(x) * 2**(b-i)), 0, 2**b - 1) * 2**-(b-i)
                                                            == relu, then ap_ufixed<b, i, RND_CONV, SAT>
tf.round rounds half to even (RND_CONV). The forward value QKeras returns is ``x + (xq - x)`` in float32 (the
straight-through form), which equals xq only when ``xq - x`` is exact in float32; and QDense computes
``dot(x, Wq) + bq`` in float32, exact only while every partial sum fits 24 significant bits. The importer
checks both bounds per layer and reports every place where predict() can differ from true fixed point in
``QModel.warnings`` (never silently).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .fixed import FixedFormat, quantize_float
from .ir import AffineLayer, ConvLayer, DenseLayer, InputSpec, PoolLayer, QModel, QModelError

F32_BITS = 24


class QKerasImportError(QModelError):
    """The Keras/QKeras model cannot be represented exactly in the IR."""


# ---------------------------------------------------------------------- quantizer -> FixedFormat
def _num(v: Any) -> Any:
    if hasattr(v, "numpy"):
        v = v.numpy()
    if isinstance(v, np.ndarray):
        if v.size != 1:
            raise QKerasImportError(f"per-channel quantizer parameter {v!r} is not supported")
        v = v.reshape(()).item()
    return v


def quantizer_format(q: Any, *, where: str) -> tuple[FixedFormat, bool]:
    """(format, applies_relu) of a QKeras quantizer object; raises for quantizers without an exact fixed-point
    equivalent (stochastic rounding, qnoise_factor != 1, non-power-of-two scale, relu with negative slope...)."""
    name = type(q).__name__
    if name not in ("quantized_bits", "quantized_relu"):
        raise QKerasImportError(f"{where}: quantizer {name} has no fixed-point equivalent here (use quantized_bits / quantized_relu)")
    if getattr(q, "use_stochastic_rounding", False):
        raise QKerasImportError(f"{where}: stochastic rounding is not supported")
    qn = float(_num(getattr(q, "qnoise_factor", 1.0)))
    if qn != 1.0:
        raise QKerasImportError(f"{where}: qnoise_factor={qn} (must be 1 for a deployed model)")
    bits, integer = int(_num(q.bits)), int(_num(q.integer))
    if name == "quantized_bits":
        alpha = q.alpha
        if isinstance(alpha, str):
            raise QKerasImportError(f"{where}: alpha={alpha!r} (a learned scale) - use alpha=1 (power-of-two fixed point)")
        if alpha is not None and float(_num(alpha)) != 1.0:
            raise QKerasImportError(f"{where}: alpha={alpha} - only alpha=1 (or None) is a plain fixed-point format")
        keep_neg = bool(q.keep_negative)
        if bits - int(keep_neg) <= 0:
            raise QKerasImportError(f"{where}: {bits}-bit quantized_bits is a sign/binary quantizer, not fixed point")
        if keep_neg:
            return FixedFormat(bits, integer + 1, True, "RND_CONV", "SAT_SYM" if q.symmetric else "SAT"), False
        return FixedFormat(bits, integer, False, "RND_CONV", "SAT"), False
    # quantized_relu
    if getattr(q, "use_sigmoid", 0):
        raise QKerasImportError(f"{where}: quantized_relu(use_sigmoid=1) is not supported")
    if float(_num(getattr(q, "negative_slope", 0.0))) != 0.0:
        raise QKerasImportError(f"{where}: quantized_relu with negative_slope (leaky relu) is not supported")
    if not getattr(q, "is_quantized_clip", True) and getattr(q, "relu_upper_bound", None) is not None:
        raise QKerasImportError(f"{where}: quantized_relu with relu_upper_bound is not supported")
    return FixedFormat(bits, integer, False, "RND_CONV", "SAT"), True


def _activation_kind(act: Any, *, where: str) -> tuple[str, Any]:
    """('linear'|'relu'|'quant', quantizer-or-None) for a Keras activation / QActivation payload."""
    if act is None:
        return "linear", None
    if isinstance(act, str):
        a = act.strip()
        if a in ("linear", "None", ""):
            return "linear", None
        if a == "relu":
            return "relu", None
        from qkeras.quantizers import get_quantizer

        try:
            return "quant", get_quantizer(a)
        except Exception:
            raise QKerasImportError(f"{where}: activation {a!r} not supported") from None
    nm = getattr(act, "__name__", type(act).__name__)
    if nm == "linear":
        return "linear", None
    if nm == "relu":
        return "relu", None
    if type(act).__name__ in ("quantized_bits", "quantized_relu") or hasattr(act, "bits"):
        return "quant", act
    raise QKerasImportError(f"{where}: activation {nm!r} not supported (linear, relu, quantized_relu, quantized_bits)")


# ---------------------------------------------------------------------- graph walk
def _model_node(model: Any, layer: Any) -> Any:
    """The node of `layer` that belongs to `model`'s graph (a layer re-called on a new input has several nodes:
    the first one belongs to the model it was built in, not necessarily to this one)."""
    keys = getattr(model, "_network_nodes", None)
    nodes = list(layer._inbound_nodes)
    mine = [n for i, n in enumerate(nodes) if keys is None or f"{layer.name}_ib-{i}" in keys]
    if len(mine) != 1:
        raise QKerasImportError(f"layer {layer.name!r} is called {len(mine)} times in model {getattr(model, 'name', '')!r}; "
                                "only chains that use each layer once are supported")
    return mine[0]


def _chain(model: Any, output_layer: str | None) -> list[Any]:
    """Layers from the input to the output of `model`'s own graph, each with exactly one inbound layer."""
    if output_layer is not None:
        try:
            last = model.get_layer(output_layer)
        except ValueError:
            raise QKerasImportError(f"model has no layer named {output_layer!r}; layers: {[l.name for l in model.layers]}") from None
        node = _model_node(model, last)
    else:
        outs = model.outputs
        if len(outs) != 1:
            raise QKerasImportError(f"model has {len(outs)} outputs; pass output_layer= to pick one ({[l.name for l in model.layers]})")
        layer, node_index, _ = outs[0]._keras_history
        node = layer._inbound_nodes[node_index]
    chain = []
    seen: set[int] = set()
    while True:
        layer = node.layer
        if id(node) in seen:
            raise QKerasImportError("cyclic graph")
        seen.add(id(node))
        if any(l is layer for l in chain):
            n = sum(l is layer for l in chain) + 1
            raise QKerasImportError(f"layer {layer.name!r} is called {n} times in model {getattr(model, 'name', '')!r}; "
                                    "only chains that use each layer once are supported")
        chain.append(layer)
        parents = list(node.parent_nodes)
        if type(layer).__name__ == "InputLayer" or not parents:
            break
        if len(parents) != 1:
            raise QKerasImportError(f"layer {layer.name!r} has {len(parents)} inputs; only chains are supported")
        node = parents[0]
    chain.reverse()
    return chain


# ---------------------------------------------------------------------- weights
def _tf_eval(q: Any, w: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    return np.asarray(q(tf.constant(w, dtype=tf.float32)).numpy(), dtype=np.float32)


def _derived_format(vals: np.ndarray, *, where: str) -> FixedFormat:
    """Narrowest signed fixed format holding every float value exactly (for folded power-of-two scales)."""
    v = np.asarray(vals, dtype=np.float64).ravel()
    nz = v[v != 0]
    if nz.size == 0:
        return FixedFormat(2, 2, True)
    m, e = np.frexp(nz)  # v = m * 2**e, 0.5 <= |m| < 1; m has <= 53 bits
    frac = 0
    for mm, ee in zip(m.tolist(), e.tolist()):
        k = 0
        while mm != int(mm):
            mm *= 2
            k += 1
        frac = max(frac, k - ee)
    codes = np.round(v * 2.0**frac).astype(np.int64)
    f = FixedFormat.covering(int(codes.min()), int(codes.max()), frac, signed=True)
    if f.width > 32:
        raise QKerasImportError(f"{where}: the quantized values need a {f.width}-bit fixed format (not a fixed-point quantizer?)")
    return f


def _quantize_param(layer: Any, kind: str, raw: np.ndarray, qobj: Any, warnings: list[str]) -> tuple[np.ndarray, FixedFormat]:
    where = f"layer {layer.name!r} {kind}"
    if qobj is None:
        raise QKerasImportError(f"{where} has no quantizer: a float {kind} has no fixed-point equivalent")
    tf_vals = _tf_eval(qobj, raw)
    if type(qobj).__name__ == "quantized_po2":
        if getattr(qobj, "use_stochastic_rounding", False):
            raise QKerasImportError(f"{where}: stochastic rounding is not supported")
        fmt = _derived_format(tf_vals, where=where)
        warnings.append(f"{where}: quantized_po2 power-of-two values held exactly in {fmt}")
        return fmt.from_values(tf_vals.astype(np.float64)), fmt
    if type(qobj).__name__ == "quantized_bits" and isinstance(getattr(qobj, "alpha", None), str):
        if qobj.alpha != "auto_po2":
            raise QKerasImportError(f"{where}: alpha={qobj.alpha!r} is not a power-of-two scale")
        fmt = _derived_format(tf_vals, where=where)
        warnings.append(f"{where}: alpha='auto_po2' per-channel power-of-two scales folded into one format {fmt}")
        return fmt.from_values(tf_vals.astype(np.float64)), fmt
    fmt, _ = quantizer_format(qobj, where=where)
    codes, _, _ = quantize_float(raw.astype(np.float64), fmt)  # the true fixed-point quantization of the float parameter
    exact_vals = fmt.to_float(codes)
    bad = int(np.count_nonzero(exact_vals != tf_vals.astype(np.float64)))
    if bad:
        warnings.append(f"{where}: {bad} value(s) that QKeras uses differ from their fixed-point quantization "
                        f"(float32 straight-through x + (q(x) - x) far outside the range of {fmt}); the IR uses the fixed-point values")
    return codes, fmt


# ---------------------------------------------------------------------- importer
def import_qkeras(
    model: Any,
    input_format: str | FixedFormat = "ap_fixed<16,6>",
    *,
    scaler: Any = None,
    score: str | None = "auto",
    thresholds: Iterable[int] = (),
    gate: Sequence[int] | str | None = None,
    output_layer: str | None = None,
    accum_formats: Mapping[str, str] | None = None,
    score_formats: Mapping[str, str] | None = None,
    name: str | None = None,
    softmax: str = "refuse",
) -> QModel:
    """Build a QModel from a trained QKeras model.

    model         a keras.Model (chain of QActivation / QDense, see module doc); the VAE's deployed encoder
                  (input -> mu quantizer) or any model with ``output_layer=`` naming the mu quantizer.
    input_format  format of the raw hardware-unit input x that the chip receives (e.g. "ap_int<17>" for L1
                  hardware codes, or the default "ap_fixed<16,6>" for already-scaled inputs with scaler=None).
    scaler        None (identity) or an object with integer ``offset`` and ``shift`` arrays (trigger.scaler):
                  the model sees (x - offset) * 2**-shift.
    score         "auto" (default: "mse" for an autoencoder, n_outputs == n_inputs, else no score block), "mse"
                  (AE: masked squared error, no division), "mu2" (VAE: sum mu_i**2) or None.
    thresholds    integer codes in the score format (``QModel.threshold_code`` converts real values).
    gate          None (default): no mask; "l1": the L1 object mask (57 inputs; feature j counted iff its object's
                  raw pT code > 0); "auto": "l1" when n_inputs == 57; or an explicit list of gate feature indices.
    accum_formats {layer name: format} to override (narrow) an accumulator; default exact.
    score_formats {"diff_format"|"square_format"|"accum_format"|"format": format}; default exact.
    softmax       a trailing softmax: "refuse" (default, an error naming the layer) or "drop" (import the logits;
                  recorded in ``qmodel.warnings``; compare with the model up to the layer before the softmax).
    Returns the QModel; ``qmodel.warnings`` lists every place where QKeras' float simulation can differ from
    true fixed point (empty when predict() is provably bit-exact for inputs on the input grid).
    """
    try:
        import qkeras  # noqa: F401
    except ImportError as e:  # pragma: no cover
        raise QKerasImportError(f"QKeras is not importable: {e}") from None
    if softmax not in ("refuse", "drop"):
        raise QKerasImportError(f"softmax must be 'refuse' or 'drop', got {softmax!r}")
    warnings: list[str] = []
    chain = _chain(model, output_layer)
    if type(chain[0]).__name__ != "InputLayer":
        raise QKerasImportError("the chain does not start at an InputLayer")
    in_shape = chain[0].output.shape if hasattr(chain[0], "output") else chain[0].input_shape
    dims = [int(d) for d in tuple(in_shape)[1:]]
    n_in = int(np.prod(dims))
    input_format = FixedFormat.parse(input_format)
    inp = InputSpec.from_scaler(scaler, n_in, input_format)

    # walk: collect stages
    input_quant: FixedFormat | None = None
    layers: list[dict[str, Any]] = []
    layer_names: list[str] = []
    shape = tuple(dims)  # the current tensor's shape (channels last); the IR holds it flattened row-major
    for layer in chain[1:]:
        cls = type(layer).__name__
        where = f"layer {layer.name!r} ({cls})"
        if cls in ("Dropout", "GaussianNoise", "GaussianDropout", "ActivityRegularization"):
            continue
        if cls == "Flatten":  # channels-last row-major: the IR's flat order already
            shape = (int(np.prod(shape)),)
            continue
        if cls in ("QConv1D", "QConv2D"):
            layers.append(_conv_entry(layer, cls, where, shape, warnings))
            layer_names.append(layer.name)
            shape = layers[-1]["out_shape"]
            kind, q = _activation_kind(layer.activation, where=where)
            _apply_activation(layers[-1], kind, q, where, warnings, layer)
            continue
        if cls in ("Conv1D", "Conv2D", "Conv3D", "QConv3D", "QDepthwiseConv2D", "DepthwiseConv2D", "QSeparableConv2D",
                   "SeparableConv2D", "Conv2DTranspose", "QConv2DTranspose"):
            raise QKerasImportError(f"{where}: not supported (QConv1D and QConv2D with kernel and bias quantizers are)")
        if cls in POOLING_LAYERS:
            layers.append(_pool_entry(layer, cls, where, shape))
            layer_names.append(layer.name)
            shape = layers[-1]["out_shape"]
            act = getattr(layer, "activation", None) if cls.startswith("Q") else None
            if act is not None:
                kind, q = _activation_kind(act, where=where)
                _apply_activation(layers[-1], kind, q, where, warnings, layer)
            continue
        if cls in ("MaxPooling3D", "AveragePooling3D", "GlobalMaxPooling3D", "GlobalAveragePooling3D"):
            raise QKerasImportError(f"{where}: 3-d pooling is not supported (1-D and 2-D are)")
        if cls == "QDense" and len(shape) != 1:
            raise QKerasImportError(f"{where}: a dense layer on a {len(shape)}-d tensor {shape} (Keras applies it to the "
                                    f"last axis only); add a Flatten before it")
        if cls == "QDense":
            if getattr(layer, "kernel_quantizer_internal", None) is None:
                raise QKerasImportError(f"{where}: no kernel_quantizer")
            kernel = np.asarray(layer.kernel.numpy(), dtype=np.float32)
            w_codes, w_fmt = _quantize_param(layer, "kernel", kernel, layer.kernel_quantizer_internal, warnings)
            if layer.use_bias:
                bias = np.asarray(layer.bias.numpy(), dtype=np.float32)
                b_codes, b_fmt = _quantize_param(layer, "bias", bias, layer.bias_quantizer_internal, warnings)
            else:
                b_codes, b_fmt = np.zeros(kernel.shape[1], dtype=np.int64), FixedFormat(2, 2, True)
            kind, q = _activation_kind(layer.activation, where=where)
            entry = {"kind": "dense", "name": layer.name, "weights": w_codes, "weight_format": w_fmt, "bias": b_codes,
                     "bias_format": b_fmt, "activation": "linear", "output_format": None, "keras": layer,
                     "n_out": int(kernel.shape[1])}
            shape = (int(kernel.shape[1]),)
            layers.append(entry)
            layer_names.append(layer.name)
            _apply_activation(entry, kind, q, where, warnings, layer)
            continue
        if cls in ("Activation", "QActivation", "Softmax") and _is_softmax(layer):
            if layer is not chain[-1]:
                raise QKerasImportError(f"{where}: softmax is supported only as the last layer (to drop it)")
            if softmax != "drop":
                raise QKerasImportError(f"{where}: softmax has no exact fixed-point form; pass softmax='drop' to import "
                                        "the logits (the argmax is unchanged)")
            warnings.append(f"{where}: trailing softmax dropped: the outputs are the logits (argmax unchanged)")
            continue
        if cls in ("QActivation", "Activation", "ReLU"):
            if cls == "ReLU":
                if getattr(layer, "max_value", None) is not None or float(getattr(layer, "negative_slope", 0)) != 0 or float(getattr(layer, "threshold", 0)) != 0:
                    raise QKerasImportError(f"{where}: only a plain ReLU is supported")
                kind, q = "relu", None
            else:
                payload = getattr(layer, "quantizer", None) if cls == "QActivation" else layer.activation
                if cls == "QActivation" and isinstance(layer.activation, str) and layer.activation in ("relu", "linear"):
                    payload = layer.activation
                kind, q = _activation_kind(payload, where=where)
            if not layers:
                if kind == "linear":
                    continue
                if kind == "relu":
                    raise QKerasImportError(f"{where}: a relu on the raw input is not supported")
                if input_quant is not None:
                    raise QKerasImportError(f"{where}: two input quantizers in a row")
                fmt, _relu = quantizer_format(q, where=where)
                # quantized_relu: relu then ap_ufixed<b,i,RND_CONV,SAT>; the unsigned format's saturation maps every
                # negative (rounded) value to 0, so the format alone is the same function
                input_quant = fmt
                continue
            _apply_activation(layers[-1], kind, q, where, warnings, layer)
            continue
        if cls == "BatchNormalization":
            entry = _batchnorm_entry(layer, where, shape[-1])
            reps = int(np.prod(shape[:-1]))
            if reps > 1:  # channels last: the same scale and offset at every position of the flat tensor
                entry["scale"], entry["offset"] = np.tile(entry["scale"], reps), np.tile(entry["offset"], reps)
            entry["n_out"] = int(np.prod(shape))
            layers.append(entry)
            layer_names.append(layer.name)
            continue
        if cls in ("QBatchNormalization", "QDenseBatchnorm"):
            raise QKerasImportError(
                f"{where}: {cls} is not imported (its quantized-parameter arithmetic is not modelled); use a plain "
                "BatchNormalization (imported as an exact per-channel affine op; l1ad.firmware.import_qkeras."
                "quantize_batchnorm rounds its constants when float32 cannot be exact)")
        if cls == "Dense":
            raise QKerasImportError(f"{where}: an unquantized Dense is not supported: float weights (use QDense with kernel and bias "
                                    "quantizers)")
        if hasattr(layer, "layers") and hasattr(layer, "_nodes_by_depth"):
            raise QKerasImportError(f"{where}: a model nested as a layer is not supported; build the outer model from "
                                    "its layers (call each trained layer on the new input) instead")
        raise QKerasImportError(f"{where}: layer type not supported")
    if not layers:
        raise QKerasImportError("the model has no QDense layer")
    if input_quant is None:
        input_quant = inp.scaled_format()
        warnings.append(f"no input quantizer: the network sees the scaled input exactly ({input_quant})")
    if layers[-1]["output_format"] is None:
        warnings.append(f"the last layer {layers[-1]['name']!r} has no output quantizer: the output is the exact accumulator "
                        "(hls4ml keeps its own accumulator type there - set it explicitly)")
    accum_formats = dict(accum_formats or {})
    unknown = set(accum_formats) - set(layer_names)
    if unknown:
        raise QKerasImportError(f"accum_formats names unknown layers {sorted(unknown)}; layers: {layer_names}")
    bad = [k for k in accum_formats if any(e["name"] == k and e["kind"] in ("affine", "pool") for e in layers)]
    if bad:
        raise QKerasImportError(f"accum_formats: {bad} are batch normalisations or pooling layers, whose accumulator is "
                                "always exact")
    ir_layers = [_ir_layer(e, accum_formats) for e in layers]
    # score block
    from .import_qonnx import make_score

    sc = make_score(score, n_in, gate, score_formats, n_outputs=ir_layers[-1].n_out, error=QKerasImportError)
    thr = list(thresholds)
    for t in thr:
        if isinstance(t, (float, np.floating)) and not float(t).is_integer():
            raise QKerasImportError(f"threshold {t} is not an integer code; convert real values with qmodel.threshold_code(value)")
    meta = {"source": "qkeras", "keras_model": str(getattr(model, "name", "")), "layers": [l.name for l in chain],
            "input_shape": dims}
    qm = QModel(input=inp, input_quantizer=input_quant, layers=ir_layers, score=sc, thresholds=tuple(int(t) for t in thr),
                name=name or str(getattr(model, "name", "qkeras_model")), warnings=(), meta=meta)
    _check_batchnorm_float32(qm)
    warnings.extend(_float32_warnings(qm, [e.get("ste") for e in layers]))
    return qm.with_warnings(warnings)


def _conv_entry(layer: Any, cls: str, where: str, shape: tuple[int, ...], warnings: list[str]) -> dict:
    nd = 1 if cls == "QConv1D" else 2
    if len(shape) != nd + 1:
        raise QKerasImportError(f"{where}: expects a {nd + 1}-d input (channels last), the previous tensor is {shape}")
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise QKerasImportError(f"{where}: data_format {layer.data_format!r}; only channels_last is supported")
    if any(int(d) != 1 for d in np.atleast_1d(layer.dilation_rate)):
        raise QKerasImportError(f"{where}: dilation {layer.dilation_rate} is not supported")
    if int(getattr(layer, "groups", 1)) != 1:
        raise QKerasImportError(f"{where}: grouped convolution is not supported")
    pad = str(layer.padding).lower()
    if pad not in ("valid", "same"):
        raise QKerasImportError(f"{where}: padding {layer.padding!r} is not supported (valid, same)")
    if getattr(layer, "kernel_quantizer_internal", None) is None:
        raise QKerasImportError(f"{where}: no kernel_quantizer")
    kernel = np.asarray(layer.kernel.numpy(), dtype=np.float32)
    k_codes, k_fmt = _quantize_param(layer, "kernel", kernel, layer.kernel_quantizer_internal, warnings)
    if layer.use_bias:
        b_codes, b_fmt = _quantize_param(layer, "bias", np.asarray(layer.bias.numpy(), dtype=np.float32),
                                         layer.bias_quantizer_internal, warnings)
    else:
        b_codes, b_fmt = np.zeros(kernel.shape[-1], dtype=np.int64), FixedFormat(2, 2, True)
    probe = ConvLayer(layer.name, np.asarray(k_codes).reshape(kernel.shape), k_fmt, b_codes, b_fmt, shape,
                      tuple(int(v) for v in np.atleast_1d(layer.strides)), pad)
    return {"kind": "conv", "name": layer.name, "kernel": probe.kernel, "kernel_format": k_fmt, "bias": b_codes,
            "bias_format": b_fmt, "in_shape": shape, "strides": probe.strides, "padding": pad, "activation": "linear",
            "output_format": None, "keras": layer, "out_shape": probe.out_shape, "n_out": probe.n_out}


#: Keras / QKeras pooling layers the importer maps to the IR's PoolLayer
POOLING_LAYERS = ("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "QAveragePooling2D",
                  "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
                  "QGlobalAveragePooling2D")


def _pool_entry(layer: Any, cls: str, where: str, shape: tuple[int, ...]) -> dict:
    """A Keras pooling layer as a pool stage. Keras' max and average skip padded cells ("same": an edge window
    averages its valid inputs only), as the IR does. QKeras' Q(Global)AveragePooling2D computes
    ``avg * N * q(1/N)``: the same value when its average_quantizer keeps 1/N exact (checked here), and its
    activation quantizer becomes the layer's output format."""
    nd = 1 if "1D" in cls else 2
    if len(shape) != nd + 1:
        raise QKerasImportError(f"{where}: expects a {nd + 1}-d input (channels last), the previous tensor is {shape}")
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise QKerasImportError(f"{where}: data_format {layer.data_format!r}; only channels_last is supported")
    mode = "max" if "Max" in cls else "avg"
    if "Global" in cls:
        pool, strides, pad = tuple(shape[:-1]), tuple(shape[:-1]), "valid"
    else:
        pool = tuple(int(v) for v in np.atleast_1d(layer.pool_size))
        strides = tuple(int(v) for v in np.atleast_1d(layer.strides)) if layer.strides is not None else pool
        pad = str(layer.padding).lower()
        if pad not in ("valid", "same"):
            raise QKerasImportError(f"{where}: padding {layer.padding!r} is not supported (valid, same)")
    try:
        probe = PoolLayer(layer.name, mode, shape, pool, strides, pad)
    except QModelError as e:
        raise QKerasImportError(f"{where}: {e}") from None
    aq = getattr(layer, "average_quantizer_internal", None) if cls.startswith("Q") else None
    if aq is not None:
        n = probe.window
        qv = float(_tf_eval(aq, np.array(1.0 / n, dtype=np.float32)))
        if qv != 1.0 / n:
            raise QKerasImportError(f"{where}: average_quantizer {aq} turns 1/{n} into {qv!r}: the layer then computes "
                                    f"avg * {n} * {qv!r}, not the mean, which has no exact fixed-point form here; use an "
                                    f"average_quantizer that holds 1/{n} exactly (or none)")
    return {"kind": "pool", "name": layer.name, "mode": mode, "in_shape": shape, "pool_size": probe.pool_size,
            "strides": probe.strides, "padding": pad, "activation": "linear", "output_format": None, "keras": layer,
            "out_shape": (probe.out_shape[-1],) if "Global" in cls and not getattr(layer, "keepdims", False)
            else probe.out_shape, "n_out": probe.n_out}


def _ir_layer(e: dict, accum_formats: Mapping[str, str]) -> DenseLayer | AffineLayer | ConvLayer | PoolLayer:
    if e["kind"] == "pool":
        return PoolLayer(name=e["name"], mode=e["mode"], in_shape=e["in_shape"], pool_size=e["pool_size"],
                         strides=e["strides"], padding=e["padding"], activation=e["activation"],
                         output_format=e["output_format"])
    if e["kind"] == "conv":
        return ConvLayer(name=e["name"], kernel=e["kernel"], kernel_format=e["kernel_format"], bias=e["bias"],
                         bias_format=e["bias_format"], in_shape=e["in_shape"], strides=e["strides"], padding=e["padding"],
                         activation=e["activation"], output_format=e["output_format"], accum_format=accum_formats.get(e["name"]))
    if e["kind"] == "affine":
        return AffineLayer(name=e["name"], scale=e["scale"], scale_format=e["scale_format"], offset=e["offset"],
                           offset_format=e["offset_format"], activation=e["activation"], output_format=e["output_format"])
    return DenseLayer(name=e["name"], weights=e["weights"], weight_format=e["weight_format"], bias=e["bias"],
                      bias_format=e["bias_format"], activation=e["activation"], output_format=e["output_format"],
                      accum_format=accum_formats.get(e["name"]))


def _dyadic_codes(vals: np.ndarray, *, where: str, what: str) -> tuple[np.ndarray, FixedFormat]:
    """Float32 values -> (integer codes, the narrowest fixed format holding every one exactly)."""
    from fractions import Fraction

    fr = [Fraction(float(v)) for v in np.asarray(vals, dtype=np.float32).ravel()]
    if not all(math.isfinite(float(v)) for v in np.asarray(vals, dtype=np.float32).ravel()):
        raise QKerasImportError(f"{where}: {what} has non-finite values")
    frac = max((f.denominator.bit_length() - 1 for f in fr), default=0)
    codes = [int(f * (1 << frac)) if frac >= 0 else int(f) for f in fr]
    # drop trailing zero bits common to all codes (negative frac: a coarser grid)
    while codes and all(c % 2 == 0 for c in codes) and any(codes) and frac > -64:
        codes = [c // 2 for c in codes]
        frac -= 1
    if not any(codes):
        frac = 0
    return np.array(codes, dtype=object), FixedFormat.covering(min(codes + [0]), max(codes + [0]), frac)


def batchnorm_constants(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """(inv, off) in float32 exactly as Keras' inference computes BatchNormalization on a 2-d input:
    tf.nn.batch_normalization gives x * inv + off with inv = rsqrt(var + eps) * gamma, off = beta - mean * inv."""
    import tensorflow as tf

    var = tf.constant(np.asarray(layer.moving_variance.numpy(), dtype=np.float32))
    mean = tf.constant(np.asarray(layer.moving_mean.numpy(), dtype=np.float32))
    inv = tf.math.rsqrt(var + layer.epsilon)
    if layer.scale:
        inv = inv * tf.constant(np.asarray(layer.gamma.numpy(), dtype=np.float32))
    off = -mean * inv
    if layer.center:
        off = tf.constant(np.asarray(layer.beta.numpy(), dtype=np.float32)) - mean * inv
    return np.asarray(inv.numpy(), dtype=np.float32), np.asarray(off.numpy(), dtype=np.float32)


def _batchnorm_entry(layer: Any, where: str, n: int) -> dict:
    axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
    if axis not in (-1, 1):
        raise QKerasImportError(f"{where}: batch normalisation over axis {layer.axis} is not supported (only the feature axis)")
    inv, off = batchnorm_constants(layer)
    if inv.shape != (n,):
        raise QKerasImportError(f"{where}: {inv.shape[0]} channels, but the previous tensor has {n} features")
    s_codes, s_fmt = _dyadic_codes(inv, where=where, what="the scale gamma / sqrt(var + eps)")
    o_codes, o_fmt = _dyadic_codes(off, where=where, what="the offset beta - mean * scale")
    return {"kind": "affine", "name": layer.name, "scale": s_codes, "scale_format": s_fmt, "offset": o_codes,
            "offset_format": o_fmt, "activation": "linear", "output_format": None, "keras": layer, "n_out": n}


def _check_batchnorm_float32(qm: QModel) -> None:
    """A batch normalisation is exact in Keras' float32 forward pass (and so predict() equals the IR) only when
    every product x * inv and every sum with the offset fits float32's 24 significant bits; else refuse, naming
    the layer and the bits it needs."""
    b = qm.tensor_bounds()
    in_fmt = qm.input_quantizer
    for L in qm.layers:
        prev_fmt, in_fmt = in_fmt, L.output_format
        if L.kind != "affine":
            continue
        lo, hi = b[f"{L.name}.part"]
        fa = L.exact_frac(prev_fmt)
        bits = 0
        for j in range(L.n_in):  # per channel: every value is a multiple of its own finest LSB
            fj = max(prev_fmt.frac + L.scale_format.frac - _tz(int(L.scale[j])),
                     L.offset_format.frac - _tz(int(L.offset[j])) if int(L.offset[j]) else -10**6)
            m = max(abs(lo[j]), abs(hi[j]))
            bits = max(bits, (m >> max(0, fa - fj)).bit_length())
        if bits > F32_BITS:
            plo, phi = b[_prev_name(qm, L)]
            x_bits = max(max(abs(v) for v in plo), max(abs(v) for v in phi)).bit_length()
            room = F32_BITS - x_bits - 1
            if room < 3:
                raise QKerasImportError(
                    f"layer {L.name!r} (BatchNormalization): its input needs {x_bits} significant bits, which leaves "
                    f"{max(room, 0)} of float32's {F32_BITS} for the batch-norm scale, so Keras' predict() rounds x * scale "
                    f"and no fixed-point design equals it; quantize the input more coarsely (an input quantizer or a "
                    f"narrower --input-format) or fold the normalisation into the previous layer's weights when training")
            sig = max((abs(int(v)) >> _tz(int(v))).bit_length() for v in L.scale.tolist())
            suggest = max(1, min(sig - (bits - F32_BITS), room))
            raise QKerasImportError(
                f"layer {L.name!r} (BatchNormalization): folded exactly it is x * scale + offset with scale {L.scale_format} "
                f"and offset {L.offset_format}; its values need {bits} significant bits, more than float32's {F32_BITS}, so "
                f"Keras' predict() rounds them and no fixed-point design equals it. Round its constants first: "
                f"model = l1ad.firmware.import_qkeras.quantize_batchnorm(model, scale_bits=N) with N <= {suggest} (the input "
                f"takes {x_bits} of the {F32_BITS} bits; the copy's predict() uses the rounded constants), then import it")


def _prev_name(qm: QModel, L: Any) -> str:
    """The tensor-bounds key of layer L's input."""
    i = [x.name for x in qm.layers].index(L.name)
    return "xq" if i == 0 else f"{qm.layers[i - 1].name}.out"


def _tz(v: int) -> int:
    """Trailing zero bits of a nonzero integer (0 for 0)."""
    return (v & -v).bit_length() - 1 if v else 0


def quantize_batchnorm(model: Any, *, scale_bits: int = 8, offset_bits: int = 12) -> Any:
    """A copy of a Keras model whose BatchNormalization layers compute x * s + o with each channel's s rounded to
    `scale_bits` significant bits and o to `offset_bits` bits below the layer's largest |o|, written back as
    gamma = s, beta = o, mean = 0, var = 1 - eps (so Keras computes exactly x * s + o and the import is exact).
    The layers' other weights are copied unchanged; compare the copy's predict() with the original's to see
    what the rounding costs."""
    import tensorflow as tf

    if scale_bits < 1 or scale_bits > 23:
        raise QKerasImportError(f"scale_bits must be in [1, 23], got {scale_bits}")
    from qkeras.utils import _add_supported_quantized_objects

    co: dict = {}
    _add_supported_quantized_objects(co)
    clone = tf.keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for layer in clone.layers:
        if type(layer).__name__ != "BatchNormalization":
            continue
        if not (layer.scale and layer.center):
            raise QKerasImportError(f"layer {layer.name!r}: quantize_batchnorm needs scale=True and center=True")
        inv, off = batchnorm_constants(layer)
        e = np.floor(np.log2(np.maximum(np.abs(inv.astype(np.float64)), 1e-30)))
        step = 2.0 ** (e - (scale_bits - 1))
        s = (np.round(inv / step) * step).astype(np.float32)
        top = float(np.abs(off.astype(np.float64)).max())
        ostep = 2.0 ** (np.floor(np.log2(top)) - (offset_bits - 1)) if top > 0 else 1.0
        o = (np.round(off.astype(np.float64) / ostep) * ostep).astype(np.float32)
        eps32 = np.float32(layer.epsilon)
        var = np.float32(1.0) - eps32
        for _ in range(16):  # var + eps must be exactly 1 in float32, so that rsqrt gives 1 and inv = gamma
            t = float((tf.constant(var) + layer.epsilon).numpy())
            if t == 1.0:
                break
            var = np.nextafter(var, np.float32(0.0) if t > 1.0 else np.float32(2.0))
        else:  # pragma: no cover
            raise QKerasImportError(f"layer {layer.name!r}: cannot make var + eps exactly 1 in float32")
        layer.gamma.assign(s)
        layer.beta.assign(o)
        layer.moving_mean.assign(np.zeros_like(s))
        layer.moving_variance.assign(np.full_like(s, var))
    return clone


def _is_softmax(layer: Any) -> bool:
    if type(layer).__name__ == "Softmax":
        return True
    act = getattr(layer, "activation", None)
    if isinstance(act, str):
        return act.strip() == "softmax"
    return getattr(act, "__name__", "") == "softmax"


def _apply_activation(entry: dict, kind: str, q: Any, where: str, warnings: list[str], layer: Any) -> None:
    if kind == "linear":
        return
    if entry["output_format"] is not None:
        raise QKerasImportError(f"{where}: a second activation/quantizer after layer {entry['name']!r} is not supported "
                                "(one quantizer per dense layer)")
    if kind == "relu":
        if entry["activation"] == "relu":
            return
        entry["activation"] = "relu"
        return
    fmt, relu = quantizer_format(q, where=where)
    if relu:
        entry["activation"] = "relu"
    entry["output_format"] = fmt
    entry["ste"] = {"relu": relu, "quantizer": q, "clip": bool(getattr(q, "is_quantized_clip", True)) if relu else False}


def _float32_warnings(qm: QModel, ste: list[Any]) -> list[str]:
    """Where TensorFlow's float32 forward pass can differ from exact fixed point, with the reason and bound."""
    out = []
    b = qm.tensor_bounds()
    # input quantizer: STE x + (xq - x) on the float32 scaled input
    lo, hi = b["scaled"]
    sf, xf = qm.scaled_format, qm.input_quantizer
    xmax = max(max(abs(v) for v in lo), max(abs(v) for v in hi)) * 2.0 ** -sf.frac
    fine = max(sf.frac, xf.frac)
    need = math.log2(max(xmax + float(xf.max_value), 2.0**-fine) * 2.0**fine + 1)
    if need > F32_BITS:
        out.append(f"input quantizer {xf}: scaled inputs up to {xmax:g} make QKeras' float32 straight-through value "
                   f"x + (q(x) - x) inexact ({need:.1f} > {F32_BITS} bits) for inputs far outside the quantizer range")
    if sf.width > F32_BITS and not qm.input.is_identity:
        out.append(f"scaled input needs {sf.width} bits ({sf}): feeding it to QKeras as float32 can round it")
    in_fmt = qm.input_quantizer
    for L, st in zip(qm.layers, ste):
        part_lo, part_hi = b[f"{L.name}.part"]
        fa = L.exact_frac(in_fmt)
        m = max(max(abs(v) for v in part_lo), max(abs(v) for v in part_hi))
        bits = m.bit_length()
        if bits > F32_BITS and (L.kind == "dense" or (L.kind == "pool" and L.mode == "avg")):  # (affine: checked per channel, exactly, by _check_batchnorm_float32)
            out.append(f"layer {L.name!r}: partial sums need {bits} significant bits > {F32_BITS}: TensorFlow's float32 "
                       f"dot/bias_add can round them, so QKeras predict may differ from fixed point after the next quantizer")
        if st is not None and not (st["relu"] and st["clip"]):
            # quantized_bits (or an unclipped quantized_relu): x + (xq - x) with x the float32 accumulator
            of = L.output_format
            fine = max(fa, of.frac)
            xm = m * 2.0 ** -fa
            need = math.log2((xm + float(max(abs(of.min_value), abs(of.max_value)))) * 2.0**fine + 1)
            if need > F32_BITS:
                out.append(f"quantizer after layer {L.name!r} ({of}): accumulator values up to {xm:g} make QKeras' float32 "
                           f"straight-through value x + (q(x) - x) inexact when it saturates ({need:.1f} > {F32_BITS} bits)")
        in_fmt = L.output_format
    return out
