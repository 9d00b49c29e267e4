"""Brevitas -> QONNX -> the firmware IR (``QModel``).

``import_qonnx(path, input_format, scaler=..., score=..., thresholds=...)`` reads a QONNX file (as written by
``brevitas.export.export_qonnx(..., dynamo=False)``, see trigger.models.brevitas_nets.export_qonnx) and walks its
graph, which must be a chain

    Quant (input quantizer) -> { Gemm | MatMul [+ Add]  (weight and bias each through a Quant node)
                                 -> [Relu] -> [Quant] }+

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
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .fixed import FixedFormat
from .ir import DenseLayer, InputSpec, QModel, QModelError, ScoreSpec, default_gate

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
        if n.op_type in ("Gemm", "MatMul"):
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


def quant_format(mw, node) -> FixedFormat:
    """The fixed-point format of one QONNX Quant node (see module doc); raises QonnxImportError otherwise."""
    from qonnx.custom_op.registry import getCustomOp

    if node.op_type != "Quant":
        raise QonnxImportError(f"node {node.name}: expected a Quant node, got {node.op_type}")
    op = getCustomOp(node)
    signed, narrow = bool(op.get_nodeattr("signed")), bool(op.get_nodeattr("narrow"))
    mode = str(op.get_nodeattr("rounding_mode")).upper()
    scale = _const(mw, node.input[1], node, "scale")
    zp = _const(mw, node.input[2], node, "zero point")
    bw = _const(mw, node.input[3], node, "bit width")
    if scale.size != 1 and not np.all(scale == scale.ravel()[0]):
        raise QonnxImportError(f"node {node.name} (Quant): per-channel scales {np.unique(scale)[:4]}... cannot be one "
                               f"fixed-point format; use per-tensor fixed-point quantizers")
    if np.any(zp != 0):
        raise QonnxImportError(f"node {node.name} (Quant): non-zero zero point {zp.ravel()[:4]}; fixed point needs 0")
    if bw.size != 1 or float(bw.ravel()[0]) != int(bw.ravel()[0]) or int(bw.ravel()[0]) < 1:
        raise QonnxImportError(f"node {node.name} (Quant): bit width {bw.ravel()} is not one positive integer")
    b = int(bw.ravel()[0])
    s = float(scale.ravel()[0])
    m, e = math.frexp(s)
    if s <= 0 or m != 0.5:
        raise QonnxImportError(f"node {node.name} (Quant): scale {s!r} is not a power of two; use fixed-point "
                               f"quantizers (power-of-two scales, e.g. Int8WeightPerTensorFixedPoint)")
    frac = -(e - 1)
    if mode not in ROUNDING:
        raise QonnxImportError(f"node {node.name} (Quant): rounding mode {mode} has no ap_fixed equivalent "
                               f"(supported: {', '.join(ROUNDING)})")
    if b == 1 and signed:
        raise QonnxImportError(f"node {node.name} (Quant): 1-bit signed (bipolar) quantizers are not supported")
    if narrow and not signed:
        raise QonnxImportError(f"node {node.name} (Quant): unsigned narrow range [0, 2**b - 2] is not an ap_fixed range")
    return FixedFormat(b, b - frac, signed, ROUNDING[mode], "SAT_SYM" if narrow else "SAT")


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


def _const_operand(mw, tensor: str, what: str, layer: str) -> tuple[np.ndarray, FixedFormat]:
    prod = mw.find_producer(tensor)
    if prod is None:
        if mw.get_initializer(tensor) is not None:
            raise QonnxImportError(f"layer {layer}: the {what} is not quantized (a float constant); give the layer a "
                                   f"fixed-point {what} quantizer (e.g. Int8{'Weight' if what == 'weight' else 'Bias'}"
                                   f"PerTensorFixedPoint{'' if what == 'weight' else 'InternalScaling'})")
        raise QonnxImportError(f"layer {layer}: the {what} is a graph input, not a constant")
    if prod.op_type != "Quant":
        raise QonnxImportError(f"layer {layer}: the {what} comes from node {prod.name} ({prod.op_type}), expected a Quant node")
    return _quantized_const(mw, prod, what, layer)


def _single_consumer(mw, tensor: str):
    cons = mw.find_consumers(tensor) or []
    if len(cons) > 1:
        raise QonnxImportError(f"tensor {tensor} feeds {len(cons)} nodes ({', '.join(c.name for c in cons)}); only a "
                               f"chain of layers can be imported")
    return cons[0] if cons else None


# ---------------------------------------------------------------------------------------------- graph walk
def _walk(mw, names: Sequence[str]) -> tuple[FixedFormat, list[DenseLayer]]:
    """The input quantizer and the dense layers of a chain-shaped QONNX graph."""
    g = mw.graph
    if len(g.input) != 1 or len(g.output) != 1:
        raise QonnxImportError(f"expected one graph input and one output, got {len(g.input)} and {len(g.output)}")
    out_name = g.output[0].name
    node = _single_consumer(mw, g.input[0].name)
    if node is None or node.op_type != "Quant":
        raise QonnxImportError("the graph input must go through a Quant node first (the network's input quantizer), got "
                               + ("nothing" if node is None else f"{node.name} ({node.op_type})"))
    in_q = quant_format(mw, node)
    t = node.output[0]
    layers: list[DenseLayer] = []
    while t != out_name:
        node = _single_consumer(mw, t)
        if node is None:
            break
        idx = len(layers)
        lname = names[idx] if idx < len(names) and names[idx] else f"dense_{idx + 1}"
        if node.op_type == "Gemm":
            attrs = {a.name: a for a in node.attribute}
            import onnx

            get = lambda k, d: onnx.helper.get_attribute_value(attrs[k]) if k in attrs else d  # noqa: E731
            if get("alpha", 1.0) != 1.0 or get("beta", 1.0) != 1.0 or get("transA", 0) != 0:
                raise QonnxImportError(f"node {node.name} (Gemm): alpha/beta must be 1 and transA 0")
            if node.input[0] != t:
                raise QonnxImportError(f"node {node.name} (Gemm): the activation must be the first operand")
            w, wf = _const_operand(mw, node.input[1], "weight", lname)
            if get("transB", 0):
                w = w.T
            if len(node.input) > 2 and node.input[2]:
                b, bf = _const_operand(mw, node.input[2], "bias", lname)
            else:
                b, bf = np.zeros(w.shape[1], dtype=np.int64), FixedFormat(1, 1, True)
            t = node.output[0]
        elif node.op_type == "MatMul":
            if node.input[0] != t:
                raise QonnxImportError(f"node {node.name} (MatMul): the activation must be the first operand")
            w, wf = _const_operand(mw, node.input[1], "weight", lname)
            t = node.output[0]
            nxt = _single_consumer(mw, t)
            if nxt is not None and nxt.op_type == "Add":
                other = nxt.input[1] if nxt.input[0] == t else nxt.input[0]
                b, bf = _const_operand(mw, other, "bias", lname)
                t = nxt.output[0]
            else:
                b, bf = np.zeros(w.shape[1], dtype=np.int64), FixedFormat(1, 1, True)
        else:
            raise QonnxImportError(f"node {node.name} ({node.op_type}) is not supported: the importer takes a chain of "
                                   f"Quant -> Gemm/MatMul(+Add) -> [Relu] -> Quant layers")
        if w.ndim != 2:
            raise QonnxImportError(f"layer {lname}: weight has shape {w.shape}, expected a matrix")
        b = np.asarray(b).reshape(-1)
        if b.shape[0] != w.shape[1]:
            raise QonnxImportError(f"layer {lname}: bias has {b.shape[0]} values for {w.shape[1]} outputs")
        act, out_fmt = "linear", None
        nxt = _single_consumer(mw, t) if t != out_name else None
        if nxt is not None and nxt.op_type == "Relu":
            act, t = "relu", nxt.output[0]
            nxt = _single_consumer(mw, t) if t != out_name else None
        if nxt is not None and nxt.op_type == "Quant":
            out_fmt, t = quant_format(mw, nxt), nxt.output[0]
        elif nxt is not None and nxt.op_type not in ("Gemm", "MatMul"):
            raise QonnxImportError(f"node {nxt.name} ({nxt.op_type}) after layer {lname} is not supported "
                                   f"(expected Relu, Quant or the next layer)")
        layers.append(DenseLayer(name=lname, weights=w, weight_format=wf, bias=b, bias_format=bf,
                                 activation=act, output_format=out_fmt))
    if not layers:
        raise QonnxImportError("the graph has no dense (Gemm/MatMul) layer")
    return in_q, layers


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
        plo, phi = bounds[f"{L.name}.part"]  # any partial sum, bias included, at the exact accumulator LSB
        worst = max(max(abs(int(v)) for v in plo), max(abs(int(v)) for v in phi))
        if worst >= 1 << FLOAT32_EXACT_BITS:
            notes.append(f"layer {L.name}: partial sums reach {worst.bit_length()} bits of the accumulator LSB "
                         f"2**-{L.exact_frac(in_fmt)}; a float32 Gemm (Brevitas/QONNX) is exact only below "
                         f"{FLOAT32_EXACT_BITS} bits, so the framework forward can differ from the fixed-point result")
        in_fmt = L.output_format
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
    if score not in ("mse", "mu2"):
        raise err(f"score must be 'auto', 'mse', 'mu2' or None, got {score!r}")
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
    in_q, layers = _walk(mw, _layer_names(path if isinstance(path, (str, Path)) else mw))
    accum_formats = dict(accum_formats or {})
    unknown = set(accum_formats) - {L.name for L in layers}
    if unknown:
        raise QonnxImportError(f"accum_formats names unknown layers {sorted(unknown)}; layers: {[L.name for L in layers]}")
    if accum_formats:
        layers = [DenseLayer(name=L.name, weights=L.weights, weight_format=L.weight_format, bias=L.bias,
                             bias_format=L.bias_format, activation=L.activation, output_format=L.output_format,
                             accum_format=accum_formats.get(L.name)) for L in layers]
    thr = list(thresholds)
    for t in thr:
        if isinstance(t, (float, np.floating)) and not float(t).is_integer():
            raise QonnxImportError(f"threshold {t} is not an integer code; convert real values with qmodel.threshold_code(value)")
    n = layers[0].n_in
    src = str(path) if isinstance(path, (str, Path)) else "<in-memory>"
    notes = []
    if layers[-1].output_format is None:
        notes.append(f"the last layer {layers[-1].name!r} has no output quantizer: the output is the exact accumulator")
    q = QModel(
        input=InputSpec.from_scaler(scaler, n, input_format),
        input_quantizer=in_q,
        layers=layers,
        score=make_score(score, n, gate, score_formats, n_outputs=layers[-1].n_out),
        thresholds=tuple(int(t) for t in thr),
        name=name or (Path(src).stem if src != "<in-memory>" else "qonnx"),
        meta={"source": "qonnx", "frontend": "brevitas", "file": src, "layers": [L.name for L in layers]},
    )
    notes += float32_report(q)
    return q.with_warnings(notes) if notes else q


# ---------------------------------------------------------------------------------------------- agreement
def _compare(q: QModel, x_hw: np.ndarray, fw_out: np.ndarray, what: str) -> dict:
    """Framework outputs (floats) vs the emulator's output codes, exactly (the score follows from the outputs
    bit for bit; its block is checked against the C simulation)."""
    from .emulator import emulate

    res = emulate(q, x_hw)
    codes = np.ldexp(np.asarray(fw_out, dtype=np.float64), q.output_format.frac)
    on_grid = codes == np.round(codes)
    diff = ~on_grid | (np.round(codes).astype(np.int64) != res.outputs_int)
    return {
        "compared": what,
        "n_events": int(len(x_hw)),
        "n_values": int(diff.size),
        "output_mismatches": int(diff.sum()),
        "events_with_mismatch": int(diff.any(axis=1).sum()) if diff.size else 0,
        "off_grid_outputs": int((~on_grid).sum()),
    }


def compare_brevitas(q: QModel, net: Any, x_hw: np.ndarray, scaler: Any = None, *, batch: int = 65536) -> dict:
    """Brevitas forward (torch, float32) vs the emulator on raw hardware-unit inputs x_hw: mismatch counts."""
    import torch

    x_hw = np.asarray(x_hw)
    xs = x_hw.astype(np.float64) if scaler is None else scaler.transform(x_hw)
    net.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(xs), batch):
            outs.append(net(torch.from_numpy(np.ascontiguousarray(xs[i:i + batch], dtype=np.float32))).numpy())
    out = np.concatenate(outs) if outs else np.zeros((0, q.n_outputs))
    return _compare(q, x_hw, out, "brevitas_forward")


def qonnx_session(path: Any):
    """An onnxruntime session for a QONNX model whose Quant nodes are rewritten as standard ONNX operators
    (Div by the power-of-two scale, Round (half to even) or Floor, Clip to the integer range, Mul by the scale):
    exact in float32, and thousands of times faster than qonnx.core.onnx_exec. (QONNX's own QuantToQCDQ needs
    onnxscript, which fails to import next to TensorFlow 2.14's ml_dtypes, and QCDQ covers only <= 8 bits.)"""
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
        fmt = quant_format(mw, node)  # validates: power-of-two per-tensor scale, zero point 0
        op = getCustomOp(node)
        rnd = {"RND_CONV": "Round", "TRN": "Floor"}.get(fmt.rounding)
        if rnd is None:
            raise QonnxImportError(f"node {node.name}: rounding {fmt.rounding} has no plain ONNX operator")
        signed, narrow, bits = bool(op.get_nodeattr("signed")), bool(op.get_nodeattr("narrow")), fmt.width
        k = node.name
        consts = {f"{k}_s": np.float32(2.0 ** -fmt.frac), f"{k}_lo": np.float32(min_int(signed, narrow, bits)),
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
    proto = mw.model
    del proto.opset_import[:]
    proto.opset_import.extend([helper.make_opsetid("", 13)])
    onnx.checker.check_model(proto)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # no operator fusion or reordering
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def compare_qonnx(q: QModel, path: Any, x_hw: np.ndarray, scaler: Any = None) -> dict:
    """The QONNX file itself (onnxruntime after QuantToQCDQ) vs the emulator: mismatch counts."""
    x_hw = np.asarray(x_hw)
    xs = x_hw.astype(np.float64) if scaler is None else scaler.transform(x_hw)
    sess = qonnx_session(path)
    name = sess.get_inputs()[0].name
    out = sess.run(None, {name: np.ascontiguousarray(xs, dtype=np.float32)})[0]
    return _compare(q, x_hw, out, "qonnx_onnxruntime")
