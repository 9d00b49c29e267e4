"""Brevitas -> QONNX -> the firmware IR (``QModel``).

``import_qonnx(path, input_format, scaler=..., score=..., thresholds=...)`` reads a QONNX file (as written by
``brevitas.export.export_qonnx(..., dynamo=False)``, see trigger.models.brevitas_nets.export_qonnx) and walks its
graph, which must be a chain

    Quant (input quantizer) -> { Gemm | MatMul [+ Add] | Conv  (weight and bias each through a Quant node)
                                 | MaxPool | AveragePool | GlobalMaxPool | GlobalAveragePool | Flatten
                                 -> [Relu] -> [Quant] }+

(pooling: power-of-two divisors only for averages, ceil_mode 0, no dilation; see ``_pool_stage``)

Every Quant node becomes a fixed-point format: bit width b, scale 2**-f (a power of two, per tensor, zero point 0)
gives ``ap_fixed<b, b - f>`` (``ap_ufixed`` when unsigned), rounding from ``rounding_mode`` (ROUND = half to even
= RND_CONV, FLOOR = TRN, DOWN = TRN_ZERO, HALF_UP = RND_INF, HALF_DOWN = RND_ZERO) and saturation (SAT, or
SAT_SYM for a signed narrow-range quantizer). Weights and biases become the integer codes QONNX's own Quant
semantics give (cross-checked against the ap_fixed conversion). Anything else (per-channel or non-power-of-two
scales, non-zero zero points, CEIL/UP rounding, unquantized weights or biases, other operators) raises
``QonnxImportError`` naming the node.

Where the framework's float simulation can differ from true fixed-point arithmetic, the importer says so in
``QModel.warnings`` (it does not hide it): Brevitas and QONNX evaluate a layer as one float32 Gemm, which is exact
only while every partial sum stays below 2**24 codes of the accumulator LSB; the scaled input must be exact in
float32 as well. ``compare_brevitas`` and ``compare_qonnx`` measure the agreement with the emulator.
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .fixed import FixedFormat
from .ir import AffineLayer, ConvLayer, DenseLayer, InputSpec, PoolLayer, QModel, QModelError, ScoreSpec, default_gate
from .requant import multiply_shift

#: float32 significand: integers below 2**24 (times any power of two) are exact
FLOAT32_EXACT_BITS = 24

#: QONNX rounding_mode -> ap_fixed rounding (CEIL and UP have no ap_fixed equivalent)
ROUNDING = {"ROUND": "RND_CONV", "HALF_EVEN": "RND_CONV", "FLOOR": "TRN", "DOWN": "TRN_ZERO",
            "HALF_UP": "RND_INF", "HALF_DOWN": "RND_ZERO"}


class QonnxImportError(QModelError):
    """The QONNX graph holds something the IR (or true fixed-point arithmetic) cannot represent."""


# ---------------------------------------------------------------------------------------------- loading
def load_qonnx(model: Any):
    """A cleaned-up qonnx ModelWrapper from a path, an onnx ModelProto or a ModelWrapper."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    if isinstance(model, (str, Path)):
        p = Path(model)
        if not p.is_file():
            raise FileNotFoundError(f"QONNX model not found: {p}")
        mw = ModelWrapper(str(p))
    elif isinstance(model, ModelWrapper):
        mw = model
    else:
        mw = ModelWrapper(model)
    return cleanup_model(mw)


def _layer_names(model: Any) -> list[str]:
    """Names of the Gemm/MatMul nodes in graph order, from the export names ('/enc_1/Gemm' -> 'enc_1')."""
    import onnx

    from qonnx.core.modelwrapper import ModelWrapper

    if isinstance(model, (str, Path)):
        proto = onnx.load(str(model))
    elif isinstance(model, ModelWrapper):
        proto = model.model
    else:
        proto = model
    names = []
    for n in proto.graph.node:
        if n.op_type in ("Gemm", "MatMul", "Conv"):
            parts = [p for p in n.name.split("/") if p]
            names.append(parts[0] if len(parts) > 1 else "")
    return names


# ---------------------------------------------------------------------------------------------- Quant nodes
def _const(mw, tensor: str, node, what: str) -> np.ndarray:
    v = mw.get_initializer(tensor)
    if v is None:
        raise QonnxImportError(f"node {node.name} (Quant): its {what} is computed at run time, not a constant; "
                               f"only constant fixed-point quantizers can be imported")
    return np.asarray(v)


def quant_spec(mw, node) -> tuple[FixedFormat, np.ndarray | None]:
    """(format, scale) of one QONNX Quant node. A per-tensor power-of-two scale is a plain fixed-point format and
    scale None; any other positive scale (float, per-tensor or per-channel: Brevitas' defaults) gives the integer
    format of the codes (``ap_int<b>`` / ``ap_uint<b>``, its rounding and saturation) and the float64 scale array
    (exactly the float32 values): the real value is code * scale."""
    from qonnx.custom_op.registry import getCustomOp

    if node.op_type != "Quant":
        raise QonnxImportError(f"node {node.name}: expected a Quant node, got {node.op_type}")
    scale = np.asarray(_const(mw, node.input[1], node, "scale"), dtype=np.float32)
    s0 = float(scale.ravel()[0])
    if scale.size == 1 or np.all(scale == scale.ravel()[0]):
        m, _ = math.frexp(s0)
        if s0 > 0 and m == 0.5:
            return quant_format(mw, node), None
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise QonnxImportError(f"node {node.name} (Quant): scales must be positive and finite, got {scale.ravel()[:4]}")
    op = getCustomOp(node)
    signed, narrow = bool(op.get_nodeattr("signed")), bool(op.get_nodeattr("narrow"))
    mode = str(op.get_nodeattr("rounding_mode")).upper()
    bw = _const(mw, node.input[3], node, "bit width")
    _check_quant_attrs(node, _const(mw, node.input[2], node, "zero point"), bw, mode, signed, narrow)
    b = int(bw.ravel()[0])  # the codes themselves: an integer format (frac 0); the real value is code * scale
    return FixedFormat(b, b, signed, ROUNDING[mode], "SAT_SYM" if narrow else "SAT"), scale.astype(np.float64)


def _check_quant_attrs(node, zp: np.ndarray, bw: np.ndarray, mode: str, signed: bool, narrow: bool) -> None:
    if np.any(zp != 0):
        raise QonnxImportError(f"node {node.name} (Quant): non-zero zero point {zp.ravel()[:4]}; fixed point needs 0")
    if bw.size != 1 or float(bw.ravel()[0]) != int(bw.ravel()[0]) or int(bw.ravel()[0]) < 1:
        raise QonnxImportError(f"node {node.name} (Quant): bit width {bw.ravel()} is not one positive integer")
    if mode not in ROUNDING:
        raise QonnxImportError(f"node {node.name} (Quant): rounding mode {mode} has no ap_fixed equivalent "
                               f"(supported: {', '.join(ROUNDING)})")
    if int(bw.ravel()[0]) == 1 and signed:
        raise QonnxImportError(f"node {node.name} (Quant): 1-bit signed (bipolar) quantizers are not supported")
    if narrow and not signed:
        raise QonnxImportError(f"node {node.name} (Quant): unsigned narrow range [0, 2**b - 2] is not an ap_fixed range")


def quant_format(mw, node) -> FixedFormat:
    """The fixed-point format of one QONNX Quant node with a power-of-two per-tensor scale; raises
    QonnxImportError otherwise (``quant_spec`` takes any scale)."""
    from qonnx.custom_op.registry import getCustomOp

    if node.op_type != "Quant":
        raise QonnxImportError(f"node {node.name}: expected a Quant node, got {node.op_type}")
    op = getCustomOp(node)
    signed, narrow = bool(op.get_nodeattr("signed")), bool(op.get_nodeattr("narrow"))
    mode = str(op.get_nodeattr("rounding_mode")).upper()
    scale = _const(mw, node.input[1], node, "scale")
    if scale.size != 1 and not np.all(scale == scale.ravel()[0]):
        raise QonnxImportError(f"node {node.name} (Quant): per-channel scales {np.unique(scale)[:4]}... cannot be one "
                               f"fixed-point format; use per-tensor fixed-point quantizers")
    bw = _const(mw, node.input[3], node, "bit width")
    _check_quant_attrs(node, _const(mw, node.input[2], node, "zero point"), bw, mode, signed, narrow)
    s = float(scale.ravel()[0])
    m, e = math.frexp(s)
    if s <= 0 or m != 0.5:
        raise QonnxImportError(f"node {node.name} (Quant): scale {s!r} is not a power of two; use fixed-point "
                               f"quantizers (power-of-two scales, e.g. Int8WeightPerTensorFixedPoint)")
    b = int(bw.ravel()[0])
    return FixedFormat(b, b + (e - 1), signed, ROUNDING[mode], "SAT_SYM" if narrow else "SAT")


def _quantized_const(mw, node, what: str, layer: str) -> tuple[np.ndarray, FixedFormat]:
    """Integer codes and format of a constant (weight or bias) passed through a Quant node."""
    from qonnx.custom_op.general.quant import quant as qonnx_quant
    from qonnx.custom_op.registry import getCustomOp

    fmt = quant_format(mw, node)
    w = mw.get_initializer(node.input[0])
    if w is None:
        raise QonnxImportError(f"layer {layer}: the {what} is not a constant tensor")
    w = np.asarray(w, dtype=np.float32)
    op = getCustomOp(node)
    q = qonnx_quant(w, _const(mw, node.input[1], node, "scale"), _const(mw, node.input[2], node, "zero point"),
                    _const(mw, node.input[3], node, "bit width"), op.get_nodeattr("signed"), op.get_nodeattr("narrow"),
                    op.get_nodeattr("rounding_mode"))
    codes = np.ldexp(np.asarray(q, dtype=np.float64), fmt.frac)
    if not np.all(codes == np.round(codes)):  # pragma: no cover - QONNX quant always lands on the grid
        raise QonnxImportError(f"layer {layer}: quantized {what} is off its grid {fmt}")
    codes = codes.astype(np.int64)
    ref = fmt.quantize(w.astype(np.float64))
    if not np.array_equal(codes, ref):
        bad = int(np.count_nonzero(codes != ref))
        raise QonnxImportError(f"layer {layer}: QONNX quantization of the {what} differs from ap_fixed {fmt} in {bad} "
                               f"value(s)")
    return codes, fmt


def _scaled_const(mw, node, what: str, layer: str) -> tuple[np.ndarray, FixedFormat, np.ndarray | None]:
    """(codes, format, scale or None) of a constant through a Quant node of any scale; the codes are what QONNX /
    Brevitas compute in float32: clip(round(w / s)) (the real constant is codes * scale)."""
    fmt, scale = quant_spec(mw, node)
    if scale is None:
        codes, fmt = _quantized_const(mw, node, what, layer)
        return codes, fmt, None
    w = mw.get_initializer(node.input[0])
    if w is None:
        raise QonnxImportError(f"layer {layer}: the {what} is not a constant tensor")
    w32 = np.asarray(w, dtype=np.float32)
    t = w32 / np.asarray(scale, dtype=np.float32).reshape(scale.shape)  # float32, as the framework divides
    r = {"RND_CONV": np.rint, "TRN": np.floor, "TRN_ZERO": np.trunc}.get(fmt.rounding)
    if r is None:
        r = (lambda v: np.floor(v.astype(np.float64) + 0.5)) if fmt.rounding == "RND" else (
            lambda v: np.sign(v) * np.floor(np.abs(v.astype(np.float64)) + (0.5 if fmt.rounding == "RND_INF" else 0.4999999)))
    lo = fmt.min_code + (1 if fmt.overflow == "SAT_SYM" else 0)
    codes = np.clip(r(t).astype(np.float64), lo, fmt.max_code).astype(np.int64)
    return codes, fmt, np.broadcast_to(scale, w32.shape) if scale.size > 1 else scale.reshape(())


def _const_operand(mw, tensor: str, what: str, layer: str) -> tuple[np.ndarray, FixedFormat, np.ndarray | None]:
    """(codes, format, scale or None) of a weight or bias; a float bias (Brevitas' default: no bias quantizer)
    comes back as its float32 values with format None (it is exact: a float32 is a dyadic number)."""
    prod = mw.find_producer(tensor)
    if prod is None:
        init = mw.get_initializer(tensor)
        if init is not None:
            if what == "bias":
                return np.asarray(init, dtype=np.float32), None, None
            raise QonnxImportError(f"layer {layer}: the {what} is not quantized (a float constant); give the layer a "
                                   f"{what} quantizer (e.g. Int8WeightPerTensorFloat or Int8WeightPerTensorFixedPoint)")
        raise QonnxImportError(f"layer {layer}: the {what} is a graph input, not a constant")
    if prod.op_type != "Quant":
        raise QonnxImportError(f"layer {layer}: the {what} comes from node {prod.name} ({prod.op_type}), expected a Quant node")
    return _scaled_const(mw, prod, what, layer)


def _single_consumer(mw, tensor: str):
    cons = mw.find_consumers(tensor) or []
    if len(cons) > 1:
        raise QonnxImportError(f"tensor {tensor} feeds {len(cons)} nodes ({', '.join(c.name for c in cons)}); only a "
                               f"chain of layers can be imported")
    return cons[0] if cons else None


# ---------------------------------------------------------------------------------------------- graph walk
def _walk(mw, names: Sequence[str]) -> tuple[tuple[FixedFormat, np.ndarray | None], list[dict]]:
    """The input quantizer (format, scale) and the layers of a chain-shaped QONNX graph, as stages: weight codes
    (n_in, n_out) with format and per-output scale (or None), the bias (codes/format/scale, float values, or
    None), relu, and the output quantizer (format, scale) or None."""
    g = mw.graph
    if len(g.input) != 1 or len(g.output) != 1:
        raise QonnxImportError(f"expected one graph input and one output, got {len(g.input)} and {len(g.output)}")
    out_name = g.output[0].name
    node = _single_consumer(mw, g.input[0].name)
    if node is None or node.op_type != "Quant":
        raise QonnxImportError("the graph input must go through a Quant node first (the network's input quantizer), got "
                               + ("nothing" if node is None else f"{node.name} ({node.op_type})"))
    in_q = quant_spec(mw, node)
    if in_q[1] is not None and in_q[1].size > 1:
        raise QonnxImportError(f"node {node.name} (Quant): per-channel input scales are not supported (one scale for the "
                               f"input tensor)")
    t = node.output[0]
    stages: list[dict] = []
    dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim][1:]
    shape = tuple(int(d) for d in dims)  # channels first (C, H, W) / (C, L), as the graph holds it
    if len(shape) > 1 and shape[0] != 1:
        raise QonnxImportError(f"graph input of shape {shape} (channels first) with {shape[0]} channels: only one input "
                               f"channel is supported (the IR is channels last)")
    perm = None  # after a Flatten of a channels-first image: the next layer's input rows in channels-last order
    while t != out_name:
        node = _single_consumer(mw, t)
        if node is None:
            break
        idx = sum(1 for st in stages if st["kind"] != "pool")  # `names` lists the Gemm/MatMul/Conv layers
        lname = names[idx] if idx < len(names) and names[idx] else f"layer_{idx + 1}"
        bias = None
        if node.op_type in ("Flatten", "Reshape"):
            if len(shape) > 1:
                perm = _chw_to_hwc(shape)
                shape = (int(np.prod(shape)),)
            t = node.output[0]
            continue
        if node.op_type in POOL_OPS:
            st = _pool_stage(mw, node, t, shape, len(stages))
            shape = st.pop("next_shape")
            t = st.pop("t")
            stages.append(st)
            continue
        if node.op_type == "Conv":
            st = _conv_stage(mw, node, t, lname, shape)
            shape = st.pop("next_shape")
            t = st.pop("t")
            stages.append(st)
            continue
        if len(shape) > 1:
            raise QonnxImportError(f"node {node.name} ({node.op_type}) on a {len(shape)}-d tensor {shape}: flatten it first")
        if node.op_type == "Gemm":
            attrs = {a.name: a for a in node.attribute}
            import onnx

            get = lambda k, d: onnx.helper.get_attribute_value(attrs[k]) if k in attrs else d  # noqa: E731
            if get("alpha", 1.0) != 1.0 or get("beta", 1.0) != 1.0 or get("transA", 0) != 0:
                raise QonnxImportError(f"node {node.name} (Gemm): alpha/beta must be 1 and transA 0")
            if node.input[0] != t:
                raise QonnxImportError(f"node {node.name} (Gemm): the activation must be the first operand")
            w, wf, ws = _const_operand(mw, node.input[1], "weight", lname)
            if get("transB", 0):
                w = w.T
                ws = None if ws is None else (ws.T if ws.ndim == 2 else ws)
            if len(node.input) > 2 and node.input[2]:
                bias = _const_operand(mw, node.input[2], "bias", lname)
            t = node.output[0]
        elif node.op_type == "MatMul":
            if node.input[0] != t:
                raise QonnxImportError(f"node {node.name} (MatMul): the activation must be the first operand")
            w, wf, ws = _const_operand(mw, node.input[1], "weight", lname)
            t = node.output[0]
            nxt = _single_consumer(mw, t)
            if nxt is not None and nxt.op_type == "Add":
                other = nxt.input[1] if nxt.input[0] == t else nxt.input[0]
                bias = _const_operand(mw, other, "bias", lname)
                t = nxt.output[0]
        else:
            raise QonnxImportError(f"node {node.name} ({node.op_type}) is not supported: the importer takes a chain of "
                                   f"Quant -> Gemm/MatMul(+Add) -> [Relu] -> Quant layers")
        if w.ndim != 2:
            raise QonnxImportError(f"layer {lname}: weight has shape {w.shape}, expected a matrix")
        if perm is not None:  # rows were in the channels-first flatten order
            w, perm = w[perm], None
        shape = (int(w.shape[1]),)
        w_scale = None
        if ws is not None:
            ws = np.asarray(ws, dtype=np.float64)
            if ws.ndim == 0:
                w_scale = np.full(w.shape[1], float(ws))
            else:
                if not np.all(ws == ws[:1, :]):
                    raise QonnxImportError(f"layer {lname}: weight scales vary along the input axis; only per-tensor or "
                                           f"per-output-channel scales are supported")
                w_scale = ws[0, :].copy()
        if bias is not None:
            bias = (np.asarray(bias[0]).reshape(-1), bias[1],
                    None if bias[2] is None else np.broadcast_to(np.asarray(bias[2], dtype=np.float64).reshape(-1), (w.shape[1],)))
            if bias[0].shape[0] != w.shape[1]:
                raise QonnxImportError(f"layer {lname}: bias has {bias[0].shape[0]} values for {w.shape[1]} outputs")
        relu, out_q, t = _act_and_quant(mw, t, out_name, lname)
        stages.append({"kind": "dense", "name": lname, "w": np.asarray(w), "wf": wf, "w_scale": w_scale, "bias": bias,
                       "relu": relu, "out": out_q})
    if not stages:
        raise QonnxImportError("the graph has no dense (Gemm/MatMul) layer")
    return in_q, stages


def _act_and_quant(mw, t: str, out_name: str, lname: str) -> tuple[bool, Any, str]:
    """The optional Relu and output Quant after a layer: (relu, (format, scale) or None, the tensor after them)."""
    relu, out_q = False, None
    nxt = _single_consumer(mw, t) if t != out_name else None
    if nxt is not None and nxt.op_type == "Relu":
        relu, t = True, nxt.output[0]
        nxt = _single_consumer(mw, t) if t != out_name else None
    if nxt is not None and nxt.op_type == "Quant":
        out_q, t = quant_spec(mw, nxt), nxt.output[0]
        if out_q[1] is not None and out_q[1].size > 1 and not np.all(out_q[1] == out_q[1].ravel()[0]):
            raise QonnxImportError(f"node {nxt.name} (Quant): per-channel activation scales are not supported")
        if out_q[1] is not None:
            out_q = (out_q[0], np.asarray(out_q[1]).ravel()[:1].reshape(()))
    elif nxt is not None and nxt.op_type not in ("Gemm", "MatMul", "Conv", "Flatten", "Reshape") + POOL_OPS:
        raise QonnxImportError(f"node {nxt.name} ({nxt.op_type}) after layer {lname} is not supported "
                               f"(expected Relu, Quant or the next layer)")
    return relu, out_q, t


def _chw_to_hwc(shape: tuple[int, ...]) -> np.ndarray:
    """perm with hwc_flat = chw_flat[perm] for a channels-first tensor of `shape` (C, H, W) or (C, L)."""
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    return np.moveaxis(idx, 0, -1).reshape(-1)


def _conv_stage(mw, node, t: str, lname: str, shape: tuple[int, ...]) -> dict:
    """A Conv node (channels first, as exported) as a conv stage in the IR's channels-last terms."""
    import onnx

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.input[0] != t:
        raise QonnxImportError(f"node {node.name} (Conv): the activation must be the first operand")
    if int(attrs.get("group", 1)) != 1 or any(int(d) != 1 for d in attrs.get("dilations", [1])):
        raise QonnxImportError(f"node {node.name} (Conv): grouped or dilated convolutions are not supported")
    if str(attrs.get("auto_pad", b"NOTSET")).strip("b'") not in ("NOTSET", ""):
        raise QonnxImportError(f"node {node.name} (Conv): auto_pad is not supported (explicit pads are)")
    w, wf, ws = _const_operand(mw, node.input[1], "weight", lname)
    nd = w.ndim - 2
    if len(shape) != nd + 1:
        raise QonnxImportError(f"node {node.name} (Conv): a {nd}-d kernel on a tensor of shape {shape}")
    kernel = np.moveaxis(np.moveaxis(np.asarray(w), 0, -1), 0, -2)  # (F, C, *k) -> (*k, C, F)
    F = kernel.shape[-1]
    w_scale = None
    if ws is not None and np.asarray(ws).size == 1:
        w_scale = np.full(F, float(np.asarray(ws).ravel()[0]))
    elif ws is not None:
        ws = np.asarray(ws, dtype=np.float64).reshape(F, -1)  # (F, C, *k) as exported -> per filter
        if not np.all(ws == ws[:, :1]):
            raise QonnxImportError(f"layer {lname}: conv weight scales vary inside a filter; only per-tensor or "
                                   f"per-output-channel scales are supported")
        w_scale = ws[:, 0].copy()
    bias = None
    if len(node.input) > 2 and node.input[2]:
        b = _const_operand(mw, node.input[2], "bias", lname)
        bias = (np.asarray(b[0]).reshape(-1), b[1],
                None if b[2] is None else np.broadcast_to(np.asarray(b[2], dtype=np.float64).reshape(-1), (F,)))
    pads = [int(v) for v in attrs.get("pads", [0] * 2 * nd)]
    padding = tuple((pads[a], pads[a + nd]) for a in range(nd))
    strides = tuple(int(v) for v in attrs.get("strides", [1] * nd))
    in_shape = tuple(shape[1:]) + (shape[0],)
    from .ir import ConvLayer

    probe = ConvLayer(lname, np.zeros(kernel.shape, dtype=np.int64), "ap_int<2>", None, "ap_int<2>", in_shape, strides, padding)
    t = node.output[0]
    relu, out_q, t = _act_and_quant(mw, t, mw.graph.output[0].name, lname)
    oh = probe.out_shape
    return {"kind": "conv", "name": lname, "w": kernel, "wf": wf, "w_scale": w_scale, "bias": bias, "relu": relu,
            "out": out_q, "in_shape": in_shape, "strides": strides, "padding": padding, "out_shape": oh,
            "next_shape": (oh[-1],) + tuple(oh[:-1]), "t": t}


#: ONNX pooling operators imported as the IR's PoolLayer
POOL_OPS = ("MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool")


def _pool_stage(mw, node, t: str, shape: tuple[int, ...], k: int) -> dict:
    """A MaxPool / AveragePool / GlobalMaxPool / GlobalAveragePool node (channels first, as exported; torch's
    MaxPool2d / AvgPool2d on a Brevitas QuantTensor export as these) as a pool stage in channels-last terms.
    ONNX's padded cells never win a max; an average divides by the valid count (count_include_pad=0) or by the
    full window (count_include_pad=1, torch's default: the padded zeros are summed)."""
    import onnx

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    where = f"node {node.name} ({node.op_type})"
    if node.input[0] != t:
        raise QonnxImportError(f"{where}: the activation must be the first operand")
    nd = len(shape) - 1
    if nd not in (1, 2):
        raise QonnxImportError(f"{where}: pooling a tensor of shape {shape}: only 1-D and 2-D pooling of a (C, L) or "
                               f"(C, H, W) tensor is supported")
    in_shape = tuple(shape[1:]) + (shape[0],)
    parts = [p for p in node.name.split("/") if p]
    name = f"pool_{parts[0]}" if len(parts) > 1 else f"pool_{k + 1}"
    mode = "max" if "Max" in node.op_type else "avg"
    if node.op_type.startswith("Global"):
        pool, strides, padding, count_pad = in_shape[:-1], in_shape[:-1], "valid", False
    else:
        if int(attrs.get("ceil_mode", 0)) != 0:
            raise QonnxImportError(f"{where}: ceil_mode=1 is not supported (floor output sizes are)")
        if any(int(d) != 1 for d in attrs.get("dilations", [1])):
            raise QonnxImportError(f"{where}: dilated pooling is not supported")
        if str(attrs.get("auto_pad", b"NOTSET")).strip("b'") not in ("NOTSET", ""):
            raise QonnxImportError(f"{where}: auto_pad is not supported (explicit pads are)")
        pool = tuple(int(v) for v in attrs["kernel_shape"])
        strides = tuple(int(v) for v in attrs.get("strides", [1] * nd))
        pads = [int(v) for v in attrs.get("pads", [0] * 2 * nd)]
        padding = tuple((pads[a], pads[a + nd]) for a in range(nd))
        count_pad = mode == "avg" and int(attrs.get("count_include_pad", 0)) == 1 and any(max(p) for p in padding)
    from .ir import PoolLayer

    try:
        probe = PoolLayer(name, mode, in_shape, pool, strides, padding, count_pad)
    except QModelError as e:
        raise QonnxImportError(f"{where}: {e}") from None
    relu, out_q, t = _act_and_quant(mw, node.output[0], mw.graph.output[0].name, name)
    oh = probe.out_shape
    return {"kind": "pool", "name": name, "mode": mode, "in_shape": in_shape, "pool_size": probe.pool_size,
            "strides": probe.strides, "padding": padding, "count_pad": count_pad, "relu": relu, "out": out_q,
            "out_shape": oh, "next_shape": (oh[-1],) + tuple(oh[:-1]), "t": t}


def _fr(v: float) -> Fraction:
    return Fraction(float(v))


def _affine_requant(name: str, lo: Sequence[int], hi: Sequence[int], fa: int, S: Sequence[Fraction],
                    O: Sequence[Fraction], out_fmt: FixedFormat | None, relu: bool, notes: list[str]) -> AffineLayer:
    """An affine op computing out = rq(relu?(acc * S_j + O_j)) for the input accumulator codes in [lo_j, hi_j]
    (at frac fa): exact constants when S and O are dyadic (and always without an output format), else the
    multiply-and-shift proven exact over the range (firmware.requant)."""
    if out_fmt is None:  # no output quantizer: S and O are dyadic (float products), the exact accumulator is the output
        fs = max(x.denominator.bit_length() - 1 for x in S)  # denominators are powers of two here
        fo = max(x.denominator.bit_length() - 1 for x in O)
        sc = [int(x * (1 << fs)) for x in S]
        of = [int(x * (1 << fo)) for x in O]
        return AffineLayer(name, np.array(sc, dtype=object), FixedFormat.covering(min(sc + [0]), max(sc + [0]), fs),
                           np.array(of, dtype=object), FixedFormat.covering(min(of + [0]), max(of + [0]), fo),
                           "relu" if relu else "linear", None)
    fo = out_fmt.frac
    res = [multiply_shift(Sj * Fraction(2) ** (fo - fa), Oj * Fraction(2) ** fo, int(a), int(b), out_fmt.rounding)
           for Sj, Oj, a, b in zip(S, O, lo, hi)]
    K = max(r[2] for r in res)
    m = [r[0] << (K - r[2]) for r in res]
    n = [r[1] << (K - r[2]) for r in res]
    ties = sum(r[3] for r in res)
    if ties:
        notes.append(f"layer {name}: up to {ties} reachable accumulator value(s) fall exactly on a rounding tie of "
                     f"{out_fmt.rounding}; the multiply-and-shift rounds them up (the exact rule may round some down)")
    return AffineLayer(name, np.array(m, dtype=object), FixedFormat.covering(min(m + [0]), max(m + [0]), K + fo - fa),
                       np.array(n, dtype=object), FixedFormat.covering(min(n + [0]), max(n + [0]), K + fo),
                       "relu" if relu else "linear", out_fmt)


def _build(inp: InputSpec, in_q: tuple[FixedFormat, np.ndarray | None], stages: list[dict],
           accum_formats: Mapping[str, str]) -> tuple[FixedFormat, list, Fraction | None, list[str]]:
    """(input quantizer, IR layers, the output's real scale (None: the IR value is the real value), notes).
    Power-of-two everywhere: one dense op per layer, as the framework's fixed point. Any float scale or float
    bias: a dense op on the integer codes (exact accumulator) then an affine op with the real factors."""
    notes: list[str] = []
    layers: list = []

    def bounds(name: str) -> tuple[list[int], list[int]]:
        qm = QModel(input=inp, input_quantizer=iq, layers=layers)
        return qm.tensor_bounds()[name]

    fmt, sigma = in_q
    if sigma is None:
        iq = fmt
        in_fmt = fmt
    else:  # input quantizer with a float scale: the scaled input exactly, then code = rq(x / s)
        iq = inp.scaled_format()
        lo, hi = inp.scaled_bounds()
        s_in = _fr(float(sigma))
        layers.append(_affine_requant("input_quant", lo, hi, iq.frac, [1 / s_in] * inp.n, [Fraction(0)] * inp.n, fmt,
                                      False, notes))
        in_fmt = fmt
    sig = None if sigma is None else _fr(float(sigma))
    for st in stages:
        if st["kind"] == "pool":  # max and mean commute with a positive per-tensor scale: pool the codes
            nm, relu, out = st["name"], st["relu"], st["out"]

            def pool(name: str, act: str, out_fmt):
                return PoolLayer(name, st["mode"], st["in_shape"], st["pool_size"], st["strides"], st["padding"],
                                 st["count_pad"], act, out_fmt)

            if out is None or (sig is None and out[1] is None):
                layers.append(pool(nm, "relu" if relu else "linear", None if out is None else out[0]))
            else:  # a float-scale quantizer after the pooling: exact pooling, then the multiply-and-shift
                layers.append(pool(f"{nm}_pool", "linear", None))
                lo, hi = bounds(f"{nm}_pool.accum")
                fa = layers[-1].exact_frac(in_fmt)
                r = (sig if sig is not None else Fraction(1)) / (Fraction(1) if out[1] is None else _fr(float(out[1])))
                layers.append(_affine_requant(nm, lo, hi, fa, [r] * len(lo), [Fraction(0)] * len(lo), out[0], relu, notes))
                sig = None if out[1] is None else _fr(float(out[1]))
            in_fmt = layers[-1].output_format or QModel(input=inp, input_quantizer=iq, layers=layers).layers[-1].output_format
            continue
        nm, w, wf, ws, b, relu, out = st["name"], st["w"], st["wf"], st["w_scale"], st["bias"], st["relu"], st["out"]
        conv = st.get("kind") == "conv"
        n_ch = w.shape[-1]  # outputs (dense) or filters (conv)
        n_out = int(np.prod(st["out_shape"])) if conv else n_ch
        filt = np.arange(n_out) % n_ch  # channels last: the filter (per-channel constant) of every flat output

        def op(name: str, bias_codes, bias_fmt, act: str, out_fmt, acc):
            if conv:
                return ConvLayer(name=name, kernel=w, kernel_format=wf, bias=bias_codes, bias_format=bias_fmt,
                                 in_shape=st["in_shape"], strides=st["strides"], padding=st["padding"], activation=act,
                                 output_format=out_fmt, accum_format=acc)
            return DenseLayer(name=name, weights=w, weight_format=wf, bias=bias_codes, bias_format=bias_fmt, activation=act,
                              output_format=out_fmt, accum_format=acc)

        plain = sig is None and ws is None and (b is None or (b[1] is not None and b[2] is None)) and (out is None or out[1] is None)
        if plain:
            bc, bf = (b[0], b[1]) if b is not None else (np.zeros(n_ch, dtype=np.int64), FixedFormat(1, 1, True))
            layers.append(op(nm, bc, bf, "relu" if relu else "linear", None if out is None else out[0], accum_formats.get(nm)))
            in_fmt = layers[-1].output_format or in_fmt
            continue
        if nm in accum_formats:
            raise QonnxImportError(f"accum_formats: layer {nm} has float scales; its accumulator is always exact")
        mm = f"{nm}_mm"
        layers.append(op(mm, np.zeros(n_ch, dtype=np.int64), FixedFormat(1, 1, True), "linear", None, None))
        fa = layers[-1].exact_frac(in_fmt)
        lo, hi = bounds(f"{mm}.accum")
        # real value of the accumulator = acc_code * 2**-fa * sig * ws_j; the bias in real units
        one = Fraction(1)
        Rc = [(sig if sig is not None else one) * (_fr(ws[c]) if ws is not None else one) for c in range(n_ch)]
        if b is None:
            Bc = [Fraction(0)] * n_ch
        elif b[1] is None:  # float bias
            Bc = [_fr(v) for v in b[0]]
        else:
            Bc = [Fraction(int(c)) * b[1].lsb * (_fr(b[2][j]) if b[2] is not None else 1) for j, c in enumerate(b[0])]
        R = [Rc[c] for c in filt]
        B = [Bc[c] for c in filt]
        if out is None:
            layers.append(_affine_requant(nm, lo, hi, fa, R, B, None, relu, notes))
            sig = None
        else:
            s_o = Fraction(1) if out[1] is None else _fr(float(out[1]))
            layers.append(_affine_requant(nm, lo, hi, fa, [r / s_o for r in R], [x / s_o for x in B], out[0], relu, notes))
            sig = None if out[1] is None else s_o
        in_fmt = layers[-1].output_format
    return iq, layers, sig, notes


# ---------------------------------------------------------------------------------------------- float32 report
def float32_report(q: QModel) -> list[str]:
    """Where a float32 evaluation (Brevitas forward, QONNX/onnxruntime) can differ from the fixed-point IR."""
    notes = []
    sf = q.scaled_format
    if sf.width - int(sf.signed) > FLOAT32_EXACT_BITS:
        notes.append(f"scaled input format {sf} has more than {FLOAT32_EXACT_BITS} significant bits: the float32 network "
                     f"input of the framework can round values the fixed-point input keeps")
    bounds = q.tensor_bounds()
    in_fmt = q.input_quantizer
    for L in q.layers:
        if L.kind == "affine":  # a float-scale requantization: the framework's float32 division rounds (see below)
            in_fmt = L.output_format
            continue
        plo, phi = bounds[f"{L.name}.part"]  # any partial sum, bias included, at the exact accumulator LSB
        worst = max(max(abs(int(v)) for v in plo), max(abs(int(v)) for v in phi))
        if worst >= 1 << FLOAT32_EXACT_BITS:
            notes.append(f"layer {L.name}: partial sums reach {worst.bit_length()} bits of the accumulator LSB "
                         f"2**-{L.exact_frac(in_fmt)}; a float32 Gemm (Brevitas/QONNX) is exact only below "
                         f"{FLOAT32_EXACT_BITS} bits, so the framework forward can differ from the fixed-point result")
        in_fmt = L.output_format
    if any(L.kind == "affine" for L in q.layers):
        notes.append("float scales: a float32 forward (Brevitas, onnxruntime) rounds x / scale and the products before "
                     "each quantizer, so it can differ from the exact result next to rounding boundaries; compare with "
                     "the float64 forward (compare_brevitas(..., dtype='float64'))")
    return notes


# ---------------------------------------------------------------------------------------------- public API
def make_score(score: str | None, n_inputs: int, gate: Sequence[int] | str | None = None,
               score_formats: Mapping[str, str] | None = None, *, n_outputs: int | None = None,
               error: type = None) -> ScoreSpec | None:
    """The score block (shared by firmware.import_qkeras and import_qonnx).

    score  "auto" (the default): "mse" for an autoencoder (n_outputs == n_inputs), no score block otherwise;
           "mse" / "mu2" / None.
    gate   None (the default: every feature counted), "l1" (the L1 object mask: 57 inputs, feature j counted iff
           its object's raw pT code > 0), "auto" ("l1" when n_inputs == 57, else None) or explicit indices."""
    err = error or QonnxImportError
    if score == "auto":
        score = "mse" if n_outputs is None or n_outputs == n_inputs else None
    if score is None:
        return None
    if score not in ("mse", "mu2", "out"):
        raise err(f"score must be 'auto', 'mse', 'mu2', 'out' or None, got {score!r}")
    if score == "out" and n_outputs is not None and n_outputs != 1:
        raise err(f"score='out' takes a single-output network as the score; this one has {n_outputs} outputs")
    if score == "mse" and n_outputs is not None and n_outputs != n_inputs:
        raise err(f"score='mse' needs an autoencoder (n_outputs == n_inputs), this network maps {n_inputs} inputs "
                  f"to {n_outputs} outputs; use score=None (or 'mu2' for a VAE encoder)")
    g = None
    if score == "mse":
        n_l1 = len(default_gate())
        if gate == "l1" and n_inputs != n_l1:
            raise err(f"gate='l1' is the L1 object mask for {n_l1} inputs; this network has {n_inputs}")
        if gate == "l1" or (gate == "auto" and n_inputs == n_l1):
            g = default_gate()
        elif isinstance(gate, str):
            if gate != "auto":
                raise err(f"gate must be None, 'l1', 'auto' or a list of feature indices, got {gate!r}")
        elif gate is not None:
            g = tuple(int(v) for v in gate)
    sf = dict(score_formats or {})
    bad = set(sf) - {"diff_format", "square_format", "accum_format", "format"}
    if bad:
        raise err(f"unknown score_formats keys {sorted(bad)}")
    return ScoreSpec(kind=score, gate=g, **sf)


def import_qonnx(
    path: Any,
    input_format: FixedFormat | str = "ap_fixed<16,6>",
    *,
    scaler: Any = None,
    score: str | None = "auto",
    thresholds: Iterable[int] = (),
    gate: Sequence[int] | str | None = None,
    accum_formats: Mapping[str, str] | None = None,
    score_formats: Mapping[str, str] | None = None,
    name: str | None = None,
) -> QModel:
    """A QModel from a QONNX model (file path, onnx ModelProto or qonnx ModelWrapper), e.g. a Brevitas export.

    Arguments as firmware.import_qkeras: input_format is the raw hardware-unit input's format; scaler None
    (identity) or an object with integer ``offset``/``shift`` (trigger.scaler.InputScaler); score "mse" / "mu2" /
    None; thresholds integer codes of the score format; gate / accum_formats / score_formats as there.
    Where a float32 evaluation (Brevitas forward, QONNX execution) can differ from the fixed-point IR, the
    reason is listed in ``QModel.warnings``."""
    mw = load_qonnx(path)
    in_q, stages = _walk(mw, _layer_names(path if isinstance(path, (str, Path)) else mw))
    accum_formats = dict(accum_formats or {})
    unknown = set(accum_formats) - {st["name"] for st in stages}
    if unknown:
        raise QonnxImportError(f"accum_formats names unknown layers {sorted(unknown)}; layers: {[st['name'] for st in stages]}")
    thr = list(thresholds)
    for t in thr:
        if isinstance(t, (float, np.floating)) and not float(t).is_integer():
            raise QonnxImportError(f"threshold {t} is not an integer code; convert real values with qmodel.threshold_code(value)")
    n = int(np.prod(stages[0]["in_shape"])) if stages[0].get("kind") in ("conv", "pool") else stages[0]["w"].shape[0]
    inp = InputSpec.from_scaler(scaler, n, input_format)
    iq, layers, out_scale, notes = _build(inp, in_q, stages, accum_formats)
    src = str(path) if isinstance(path, (str, Path)) else "<in-memory>"
    if stages[-1]["out"] is None:
        notes.append(f"the last layer {layers[-1].name!r} has no output quantizer: the output is the exact accumulator")
    float_scales = in_q[1] is not None or out_scale is not None or any(L.kind == "affine" for L in layers)
    if float_scales:
        notes.append("float (non-power-of-two) scales: each requantization is an exact multiply-and-shift affine op "
                     "(firmware.requant); IR codes times the real scales are the framework's values")
        if score == "mse" or (score == "auto" and layers[-1].n_out == n):
            if score == "mse" and (in_q[1] is not None or out_scale is not None):
                raise QonnxImportError("score='mse' compares the input quantizer's codes with the outputs: with float "
                                       "scales they are on different grids; use score=None")
            if score == "auto" and (in_q[1] is not None or out_scale is not None):
                score = None
                notes.append("no score block: the input and output have float scales (score='mse' needs one grid)")
    meta = {"source": "qonnx", "frontend": "brevitas", "file": src, "layers": [L.name for L in layers]}
    if out_scale is not None:
        meta["output_scale"] = float(out_scale)
    q = QModel(
        input=inp,
        input_quantizer=iq,
        layers=layers,
        score=make_score(score, n, gate, score_formats, n_outputs=layers[-1].n_out),
        thresholds=tuple(int(t) for t in thr),
        name=name or (Path(src).stem if src != "<in-memory>" else "qonnx"),
        meta=meta,
    )
    notes += float32_report(q)
    return q.with_warnings(notes) if notes else q


# ---------------------------------------------------------------------------------------------- agreement
def _compare(q: QModel, x_hw: np.ndarray, fw_out: np.ndarray, what: str) -> dict:
    """Framework outputs (floats) vs the emulator's output codes, exactly (the score follows from the outputs
    bit for bit; its block is checked against the C simulation)."""
    from .emulator import emulate

    res = emulate(q, x_hw)
    fw = np.asarray(fw_out)
    sigma = q.meta.get("output_scale")
    if sigma is None:
        codes = np.ldexp(np.asarray(fw_out, dtype=np.float64), q.output_format.frac)
        on_grid = codes == np.round(codes)
        diff = ~on_grid | (np.round(codes).astype(np.int64) != res.outputs_int)
    else:  # real output = code * 2**-frac * scale, exact in float64; the framework rounds it once to its dtype
        real = np.ldexp(res.outputs_int.astype(np.float64), -q.output_format.frac) * float(sigma)
        diff = real.astype(fw.dtype) != fw
        on_grid = np.ones_like(diff)
    return {
        "compared": what,
        "n_events": int(len(x_hw)),
        "n_values": int(diff.size),
        "output_mismatches": int(diff.sum()),
        "events_with_mismatch": int(diff.any(axis=1).sum()) if diff.size else 0,
        "off_grid_outputs": int((~on_grid).sum()),
    }


def compare_brevitas(q: QModel, net: Any, x_hw: np.ndarray, scaler: Any = None, *, batch: int = 65536) -> dict:
    """Brevitas forward (torch, float32, as trained) vs the emulator on raw hardware-unit inputs x_hw: mismatch
    counts. (With float scales, float32 rounds next to quantization boundaries: compare_qonnx(..., dtype=
    "float64") evaluates the exported graph, its float32 constants unchanged, in float64.)"""
    import torch

    x_hw = np.asarray(x_hw)
    xs = x_hw.astype(np.float64) if scaler is None else scaler.transform(x_hw)
    net.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(xs), batch):
            o = net(torch.from_numpy(np.ascontiguousarray(xs[i:i + batch], dtype=np.float32)))
            outs.append((o.value if hasattr(o, "value") else o).detach().numpy())
    out = np.concatenate(outs) if outs else np.zeros((0, q.n_outputs))
    return _compare(q, x_hw, out, "brevitas_forward")


def qonnx_session(path: Any, dtype: str = "float32"):
    """An onnxruntime session for a QONNX model whose Quant nodes are rewritten as standard ONNX operators
    (Div by the scale, Round (half to even) or Floor, Clip to the integer range, Mul by the scale): exact in
    float32 for power-of-two scales, and thousands of times faster than qonnx.core.onnx_exec. (QONNX's own
    QuantToQCDQ needs onnxscript, which fails to import next to TensorFlow 2.14's ml_dtypes, and QCDQ covers only
    <= 8 bits.) ``dtype="float64"``: every constant (the float32 values, unchanged) and every operation in float64,
    which is exact wherever a float32 graph with float scales rounds."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    from qonnx.custom_op.general.quant import max_int, min_int
    from qonnx.custom_op.registry import getCustomOp

    mw = load_qonnx(path)
    g = mw.graph
    new_nodes, inits = [], []
    for node in g.node:
        if node.op_type != "Quant":
            new_nodes.append(node)
            continue
        fmt, scale = quant_spec(mw, node)  # validates: zero point 0, rounding, bit width
        op = getCustomOp(node)
        rnd = {"RND_CONV": "Round", "TRN": "Floor"}.get(fmt.rounding)
        if rnd is None:
            raise QonnxImportError(f"node {node.name}: rounding {fmt.rounding} has no plain ONNX operator")
        signed, narrow, bits = bool(op.get_nodeattr("signed")), bool(op.get_nodeattr("narrow")), fmt.width
        k = node.name
        sv = np.asarray(_const(mw, node.input[1], node, "scale"), dtype=np.float32)
        consts = {f"{k}_s": sv, f"{k}_lo": np.float32(min_int(signed, narrow, bits)),
                  f"{k}_hi": np.float32(max_int(signed, narrow, bits))}
        inits += [numpy_helper.from_array(np.array(v, dtype=np.float32), name=n) for n, v in consts.items()]
        new_nodes += [
            helper.make_node("Div", [node.input[0], f"{k}_s"], [f"{k}_d"], name=f"{k}_div"),
            helper.make_node(rnd, [f"{k}_d"], [f"{k}_r"], name=f"{k}_rnd"),
            helper.make_node("Clip", [f"{k}_r", f"{k}_lo", f"{k}_hi"], [f"{k}_c"], name=f"{k}_clip"),
            helper.make_node("Mul", [f"{k}_c", f"{k}_s"], [node.output[0]], name=f"{k}_mul"),
        ]
    del g.node[:]
    g.node.extend(new_nodes)
    used = {i for n in new_nodes for i in n.input}
    keep = [t for t in g.initializer if t.name in used] + inits
    del g.initializer[:]
    g.initializer.extend(keep)
    del g.value_info[:]  # shapes inferred for batch 1; the batch dimension becomes symbolic below
    for v in list(g.input) + list(g.output):
        v.type.tensor_type.shape.dim[0].dim_param = "N"
    if dtype == "float64":  # the same float32 constant values, widened exactly; every op then runs in float64
        for i, t in enumerate(list(g.initializer)):
            a = numpy_helper.to_array(t)
            if a.dtype == np.float32:
                g.initializer[i].CopyFrom(numpy_helper.from_array(a.astype(np.float64), name=t.name))
        for v in list(g.input) + list(g.output):
            v.type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    proto = mw.model
    del proto.opset_import[:]
    proto.opset_import.extend([helper.make_opsetid("", 13)])
    onnx.checker.check_model(proto)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # no operator fusion or reordering
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def compare_qonnx(q: QModel, path: Any, x_hw: np.ndarray, scaler: Any = None, *, dtype: str = "float32") -> dict:
    """The QONNX file itself (onnxruntime, Quant as Div/Round/Clip/Mul; in float32 or float64, see qonnx_session)
    vs the emulator: mismatch counts."""
    x_hw = np.asarray(x_hw)
    xs = x_hw.astype(np.float64) if scaler is None else scaler.transform(x_hw)
    sess = qonnx_session(path, dtype)
    inp = sess.get_inputs()[0]
    dims = [int(d) for d in inp.shape[1:]]  # an image input (1 channel: its flat order is the IR's channels-last one)
    xs = np.asarray(xs).reshape((len(xs), *dims))
    out = sess.run(None, {inp.name: np.ascontiguousarray(xs, dtype=np.float64 if dtype == "float64" else np.float32)})[0]
    out = out.reshape(len(xs), -1)
    return _compare(q, x_hw, out, f"qonnx_onnxruntime_{dtype}")
