"""Framework model -> hls4ml ModelGraph whose every precision is the IR's (not hls4ml's guess).

Both sources go through hls4ml's own converters:
  QKeras  ``hls4ml.converters.convert_from_keras_model``
  QONNX   (Brevitas export) cleanup -> ConvertToChannelsLastAndClean -> GemmToMatMul -> cleanup ->
          ``hls4ml.converters.convert_from_onnx_model``
and the converted graph is then walked against the QModel: Input, the input quantizer (a linear Activation),
and per IR dense layer a Dense (+ a ReLU / linear Activation). Each hls4ml tensor type is set from the IR:

  Input.result            = QModel.scaled_format  (the exact scaled input; hls4ml's default would truncate it)
  input quantizer.result  = QModel.input_quantizer (a model without one: the IR's is the identity on the scaled
                            input, whose exact format the Input already has)
  Dense.weight / bias     = layer weight_format / bias_format (hls4ml's weight values are checked code for code)
  Dense.accum             = layer accum_format
  Dense.result            = accum_format when an Activation follows, else the layer's output_format
                            (hls4ml drops a trailing QKeras quantized_bits QActivation: its format lands here)
  Activation.result       = layer output_format

A layer hls4ml produces that the IR does not have (or the other way round) raises HLSExportError naming it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from l1ad.firmware.fixed import FixedFormat
from l1ad.firmware.ir import QModel
from l1ad.trigger.errors import UserInputError

from .config import HLSConfig

#: hls4ml reserves this layer name (ModelGraph raises on a Keras layer called 'input')
RESERVED_INPUT_NAME = "input"
RENAMED_INPUT = "x_scaled"


class HLSExportError(UserInputError):
    """The model cannot be exported to hls4ml as the IR describes it; the message names the layer."""


# ---------------------------------------------------------------------------------------------- precisions
def hls4ml_precision(fmt: FixedFormat):
    """The hls4ml (ap_ types) precision object of an IR format, rounding and overflow included."""
    from hls4ml.backends.fpga.fpga_types import APTypeConverter
    from hls4ml.model.types import FixedPrecisionType, RoundingMode, SaturationMode

    p = FixedPrecisionType(width=fmt.width, integer=fmt.integer, signed=fmt.signed,
                           rounding_mode=RoundingMode.from_string(fmt.rounding),
                           saturation_mode=SaturationMode.from_string(fmt.overflow))
    return APTypeConverter().convert(p)


def cpp_type(fmt: FixedFormat) -> str:
    """The C++ type of an IR format as hls4ml writes it (e.g. ``ap_fixed<12,4,AP_RND_CONV,AP_SAT,0>``)."""
    return hls4ml_precision(fmt).definition_cpp()


def _set_type(named_type, fmt: FixedFormat) -> None:
    named_type.precision = hls4ml_precision(fmt)


# ---------------------------------------------------------------------------------------------- sources
def keras_for_hls4ml(model: Any):
    """The Keras model, with its input layer renamed if it is called 'input' (reserved in hls4ml's ModelGraph).
    The layers are shared (same weights and quantizers); only a chain of single-input layers is supported."""
    from tensorflow import keras

    out_layer, node_index, _ = model.outputs[0]._keras_history
    if len(model.outputs) == 1 and getattr(getattr(out_layer, "activation", None), "__name__", "") == "softmax" \
            and type(out_layer).__name__ in ("Activation", "QActivation"):
        # the IR holds the logits (import_qkeras(softmax="drop")): hls4ml converts the model without the softmax
        model = keras.Model(model.inputs, out_layer._inbound_nodes[node_index].input_tensors, name=model.name)
    if model.layers[0].name != RESERVED_INPUT_NAME:
        return model

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise HLSExportError(f"model {model.name}: only single-input single-output Keras models are supported")
    specs = model.get_config()["layers"]
    for prev, spec in zip(specs, specs[1:]):  # topological order: each layer must take exactly the previous one
        nodes = spec.get("inbound_nodes") or []
        if len(nodes) != 1 or len(nodes[0]) != 1 or nodes[0][0][0] != prev["config"]["name"]:
            raise HLSExportError(f"layer {spec['config']['name']}: the exporter takes a chain of single-input layers")
    inp = keras.Input(shape=model.input_shape[1:], name=RENAMED_INPUT)
    h = inp
    for layer in model.layers[1:]:
        h = layer(h)
    return keras.Model(inp, h, name=model.name)


def prepare_qonnx(source: Any):
    """The QONNX graph in the form hls4ml's ONNX converter takes (the recipe that is bit-exact, STACK.md)."""
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    from l1ad.firmware.import_qonnx import load_qonnx

    mw = load_qonnx(source)
    mw = mw.transform(ConvertToChannelsLastAndClean())
    mw = mw.transform(GemmToMatMul())
    return cleanup_model(mw)


def is_qonnx_source(source: Any) -> bool:
    if isinstance(source, (str, Path)):
        return str(source).endswith(".onnx")
    mod = type(source).__module__
    return mod.startswith("qonnx") or mod.startswith("onnx")


def convert(source: Any, output_dir: Path, cfg: HLSConfig):
    """hls4ml ModelGraph of a QKeras model or a QONNX model (path / ModelProto / ModelWrapper), precisions
    still hls4ml's (see ``apply_ir_precisions``)."""
    import hls4ml

    common = dict(output_dir=str(output_dir), project_name=cfg.project_name, backend=cfg.backend, part=cfg.part,
                  clock_period=cfg.clock_period_ns, clock_uncertainty=cfg.clock_uncertainty, io_type=cfg.io_type)
    if is_qonnx_source(source):
        mw = prepare_qonnx(source)
        kind = "qonnx"
    elif hasattr(source, "layers") and hasattr(source, "to_json"):
        model = keras_for_hls4ml(source)
        kind = "qkeras"
    else:
        raise HLSExportError(f"cannot export a {type(source).__name__}: expected a QKeras model or a QONNX model "
                             f"(path ending in .onnx, onnx.ModelProto or qonnx ModelWrapper)")
    try:
        if kind == "qonnx":
            hcfg = hls4ml.utils.config.config_from_onnx_model(mw, granularity="name", backend=cfg.backend,
                                                                default_reuse_factor=cfg.reuse_factor)
            hcfg["Model"]["Strategy"] = cfg.strategy
            return hls4ml.converters.convert_from_onnx_model(mw, hls_config=hcfg, **common), kind
        hcfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=cfg.backend,
                                                    default_reuse_factor=cfg.reuse_factor)
        hcfg["Model"]["Strategy"] = cfg.strategy
        return hls4ml.converters.convert_from_keras_model(model, hls_config=hcfg, **common), kind
    except Exception as e:  # hls4ml raises plain Exceptions naming the unsupported layer
        if isinstance(e, HLSExportError):
            raise
        raise HLSExportError(f"hls4ml cannot convert the {kind} model: {type(e).__name__}: {e}") from e


# ---------------------------------------------------------------------------------------------- IR mapping
def _desc(layer) -> str:
    act = layer.get_attr("activation")
    return f"'{layer.name}' ({layer.class_name}{'' if act is None else ', ' + str(act)})"


def _is_act(layer, kind: str) -> bool:
    if layer is None or layer.class_name not in ("Activation", "ReLU"):
        return False
    act = str(layer.get_attr("activation", "")).lower()
    return act == kind or (kind == "relu" and layer.class_name == "ReLU")


def _check_codes(values: np.ndarray, fmt: FixedFormat, expect: np.ndarray, what: str) -> None:
    codes = np.ldexp(np.asarray(values, dtype=np.float64), fmt.frac)
    if codes.shape != expect.shape:
        raise HLSExportError(f"{what}: hls4ml holds shape {codes.shape}, the IR {expect.shape}")
    if not np.all(codes == np.round(codes)):
        raise HLSExportError(f"{what}: hls4ml's values are not on the IR grid {fmt} (the framework model and the IR "
                             f"disagree)")
    bad = int(np.count_nonzero(codes.astype(np.int64) != np.asarray(expect, dtype=np.int64)))
    if bad:
        raise HLSExportError(f"{what}: {bad} value(s) differ between hls4ml's converted model and the IR")


def _plain_weights(layer, name: str) -> None:
    """Refuse power-of-two weights (QKeras quantized_po2): hls4ml writes them as {sign, exponent} structs with a
    shift product whose types are hls4ml's, not the IR's (measured: 99,106 / 100,000 C-sim outputs differed)."""
    from hls4ml.model.types import ExponentWeightVariable

    if isinstance(layer.weights["weight"], ExponentWeightVariable):
        raise HLSExportError(f"layer {name}: quantized_po2 weights become hls4ml exponent weights, which the HLS "
                             f"exporter does not support yet (the emulator and the Verilog take them); use "
                             f"quantized_bits weights for the HLS project")


def apply_ir_precisions(hls_model, q: QModel) -> list[dict]:
    """Set every hls4ml tensor type from the IR (module doc); check weights and biases code for code.
    Returns the precision table: rows {hls4ml_layer, tensor, ir_tensor, format, cpp}."""
    layers = list(hls_model.get_layers())
    table: list[dict] = []

    def put(layer, key: str, fmt: FixedFormat, ir_name: str) -> None:
        if key == "result":
            _set_type(layer.get_output_variable().type, fmt)
        elif key in ("weight", "bias"):
            layer.weights[key].update_precision(hls4ml_precision(fmt))
        else:
            t = layer.get_attr(f"{key}_t")
            if t is None:
                raise HLSExportError(f"hls4ml layer {_desc(layer)} has no {key} type")
            _set_type(t, fmt)
        table.append({"hls4ml_layer": layer.name, "tensor": key, "ir_tensor": ir_name, "format": str(fmt),
                      "cpp": cpp_type(fmt)})

    pos = 0

    def take(what: str):
        nonlocal pos
        if pos >= len(layers):
            raise HLSExportError(f"hls4ml's graph ended where the IR expects {what}")
        layer = layers[pos]
        pos += 1
        return layer

    def peek():
        return layers[pos] if pos < len(layers) else None

    first = take("the input")
    if first.class_name != "Input":
        raise HLSExportError(f"hls4ml's first layer is {_desc(first)}, expected the Input")
    put(first, "result", q.scaled_format, "scaled")
    if _is_act(peek(), "linear") or (_is_act(peek(), "relu") and not q.input_quantizer.signed):
        # a quantized_relu input quantizer: relu then the unsigned saturating format == the IR's format alone
        put(take("the input quantizer"), "result", q.input_quantizer, "xq")
    elif q.input_quantizer != q.scaled_format:
        nxt = peek()
        raise HLSExportError(f"hls4ml layer {'nothing' if nxt is None else _desc(nxt)} where the IR has the network input "
                             f"quantizer {q.input_quantizer} (a linear quantized activation), which is not the identity on "
                             f"the scaled input {q.scaled_format}")
    # else: no input quantizer in the model; the IR's is the identity on the exact scaled input (the Input type)
    for L in q.layers:
        d = take(f"dense layer {L.name}")
        if d.class_name != "Dense":
            raise HLSExportError(f"hls4ml layer {_desc(d)} cannot be mapped: the IR expects dense layer {L.name} "
                                 f"({L.n_in} -> {L.n_out}); hls4ml layers of this kind are not supported by the exporter")
        n_in, n_out = d.get_attr("n_in"), d.get_attr("n_out")
        if (n_in, n_out) != (L.n_in, L.n_out):
            raise HLSExportError(f"hls4ml layer {_desc(d)} is {n_in} -> {n_out}, IR layer {L.name} is {L.n_in} -> {L.n_out}")
        _check_codes(d.weights["weight"].data, L.weight_format, L.weights, f"layer {L.name} weights")
        _check_codes(d.weights["bias"].data, L.bias_format, L.bias, f"layer {L.name} bias")
        _plain_weights(d, L.name)
        put(d, "weight", L.weight_format, f"{L.name}.weight")
        put(d, "bias", L.bias_format, f"{L.name}.bias")
        put(d, "accum", L.accum_format, f"{L.name}.accum")
        nxt = peek()
        if L.activation == "relu":
            if not _is_act(nxt, "relu"):
                raise HLSExportError(f"IR layer {L.name} (mapped to hls4ml layer {_desc(d)}) has a ReLU, hls4ml's next "
                                     f"layer is {'nothing' if nxt is None else _desc(nxt)}")
            put(d, "result", L.accum_format, f"{L.name}.accum")
            put(take("relu"), "result", L.output_format, f"{L.name}.out")
        elif _is_act(nxt, "linear"):
            put(d, "result", L.accum_format, f"{L.name}.accum")
            put(take("linear"), "result", L.output_format, f"{L.name}.out")
        else:
            # e.g. hls4ml dropped a trailing QKeras quantized_bits activation: the Dense result carries its format
            put(d, "result", L.output_format, f"{L.name}.out")
    if pos != len(layers):
        extra = ", ".join(_desc(x) for x in layers[pos:])
        raise HLSExportError(f"hls4ml layer(s) {extra} after the last IR layer cannot be mapped (not supported by "
                             f"the exporter)")
    return table


def network_ports(hls_model) -> tuple[str, str, str, str]:
    """(input type name, input array name, output type name, output array name) of hls4ml's top function."""
    iv = hls_model.get_input_variables()
    ov = hls_model.get_output_variables()
    if len(iv) != 1 or len(ov) != 1:
        raise HLSExportError(f"expected one input and one output, hls4ml has {len(iv)} and {len(ov)}")
    return iv[0].type.name, iv[0].name, ov[0].type.name, ov[0].name
