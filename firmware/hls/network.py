"""The network function of the HLS project, written from the QModel's layer list alone.

One handler per IR layer kind (``HANDLERS``, keyed on ``layer.kind``); adding an op to the IR is one class in
firmware.ir plus one handler here. A handler gives, for its layer:

  types    the C++ typedefs of its tensors (``firmware/defines.h``), each from the IR format
  config   its hls4ml-style configuration struct, if it calls an nnet_utils function (``firmware/parameters.h``)
  weights  its constant arrays (``firmware/weights/<layer>.h``), values written exactly from the integer codes
           (double literals; the C-simulation library sets the bits from the codes instead, see _weights_header)
  body     the statements of the network function: input array -> output array

Handlers:

  dense   ``nnet::dense_latency`` from hls4ml's nnet_utils (copied into the project) with product
          ``nnet::product::mult`` (the exact ap_fixed product ``a * w``), each product converted to accum_t, the
          accumulator started at ``(accum_t) bias`` and summed in input order ``acc += (accum_t) p``: the IR's
          hls4ml order (firmware.ir module doc), which is the exact sum when the accumulator is exact. The
          result array is accum_t; the handler's own loop then applies relu on the accumulator and assigns to the
          output type (the IR's requantization: rounding, then overflow).
  conv    its dense view (lowered matrix, exact accumulator) through the dense handler.
  affine  a loop of its own: ``accum_t a = in[j] * scale[j] + offset[j]`` (the ap_fixed product and sum are
          exact, and the IR's affine accumulator always holds them), relu, assignment to the output type.
  pool    max: a loop of its own over a constant window index table (exact compares), relu, assignment;
          average: its dense view (weights 2**-k) through the dense handler (``pool_code``).

Every tensor type is an ``ap_fixed`` / ``ap_ufixed`` with the IR format's width, integer bits, rounding and
overflow mode (``cpp_type``), so every assignment ``T y = x;`` is the IR's ``requantize(x -> T)``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Callable, Mapping

from l1ad.firmware.fixed import FixedFormat
from l1ad.firmware.ir import QModel

from .errors import HLSExportError

#: nnet_utils headers the generated code includes (their own includes are copied with them)
NNET_HEADERS = ("nnet_dense_latency.h",)
#: the largest weight / constant width written as an exact C++ double literal
MAX_CONST_WIDTH = 53


def cpp_type(fmt: FixedFormat) -> str:
    """The ap_fixed type of an IR format, modes explicit: ``ap_fixed<12,4,AP_RND_CONV,AP_SAT,0>``."""
    return f"ap_{'' if fmt.signed else 'u'}fixed<{fmt.width},{fmt.integer},AP_{fmt.rounding},AP_{fmt.overflow},0>"


def value_literal(code: int, fmt: FixedFormat, what: str) -> str:
    """An exact C++ literal of the value code * 2**-frac (a double: exact for codes below 2**53)."""
    code = int(code)
    if abs(code) >= 1 << MAX_CONST_WIDTH:
        raise HLSExportError(f"{what}: code {code} of {fmt} needs more than {MAX_CONST_WIDTH} bits; the HLS writer "
                             f"writes constants as exact double literals")
    v = math.ldexp(float(code), -fmt.frac)
    if v == 0:
        return "0"
    if v == int(v) and abs(v) < 1 << 53:
        return f"{int(v)}.0"
    return repr(v)


def _array_init(vals: list[str], per_line: int = 16) -> str:
    rows = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return "{\n    " + ",\n    ".join(rows) + "\n}"


def c_names(q: QModel) -> list[str]:
    """A C identifier per layer (its IR name when that is one; otherwise sanitised, with its index if needed)."""
    out: list[str] = []
    for i, L in enumerate(q.layers):
        s = re.sub(r"\W", "_", L.name)
        if not re.match(r"[A-Za-z]", s) or s in out or s.startswith("l1ad") or s.startswith("nnet"):
            s = f"layer{i}_{s}"
        out.append(s)
    return out


@dataclass(frozen=True)
class LayerCode:
    """What a handler writes for one layer."""

    types: list[str]  # typedef lines (defines.h)
    config: list[str]  # config struct lines (parameters.h)
    weights: str  # the weights header text (firmware/weights/<name>.h), "" if none
    body: list[str]  # network function statements (indented 4)
    precisions: list[tuple[str, str, str]]  # (IR tensor, format, C++ typedef name)
    arrays: tuple[str, ...] = ()  # its constant arrays, partitioned completely in the network function


def _typedef(name: str, fmt: FixedFormat, comment: str) -> str:
    return f"typedef {cpp_type(fmt)} {name};  // {comment}: {fmt}"


def _act_and_assign(n: str, acc_t: str, res_t: str, src: str, dst: str, size: int, relu: bool) -> list[str]:
    lines = [
        f"    {n}_act: for (int j = 0; j < {size}; j++) {{",
        "        #pragma HLS UNROLL",
        f"        {acc_t} a = {src}[j];",
    ]
    if relu:
        lines.append("        if (a < 0) a = 0;  // relu on the accumulator")
    lines += [f"        {dst}[j] = a;  // requantize to {res_t} (its rounding, then its overflow mode)", "    }"]
    return lines


def _weights_header(n: str, arrays: list[tuple[str, str, FixedFormat, list[int], str]]) -> str:
    """The constant arrays of one layer: (C++ type, variable, format, integer codes, what) each.

    By default (Vitis HLS synthesis, C simulation and co-simulation of the testbench) each array is initialised
    with the exact values as double literals. ``L1AD_FAST_INIT`` (defined by build_lib.sh for the C-simulation
    library) instead copies the integer codes into the arrays' bits once at load time: the same values, without
    a compiled ap_fixed constructor per element (which makes g++ take minutes on large layers)."""
    g = f"L1AD_WEIGHTS_{n.upper()}_H_"
    lines = [f"// Generated by l1ad from the QModel (layer {n}): the constants as exact values of the IR's integer",
             "// codes. Do not edit.",
             f"#ifndef {g}", f"#define {g}", "", '#include "../defines.h"', ""]
    wide = [a for a in arrays if any(abs(int(c)) >= 1 << MAX_CONST_WIDTH for c in a[3])]
    if wide:  # codes beyond a double's 53 bits (multiply-and-shift constants): their bits from a hex string
        lines += ["#ifndef L1AD_FROM_HEX_", "#define L1AD_FROM_HEX_",
                  "// a fixed-point constant whose two's complement bits are the hex digits s (exact at any width)",
                  "template <class T, int W> static T l1ad_from_hex(const char *s) {",
                  "    ap_uint<W> u(s, 16);", "    T t;", "    t.range(W - 1, 0) = u.range(W - 1, 0);", "    return t;", "}",
                  "#endif", ""]
        for ctype, var, fmt, codes, what in wide:
            w = fmt.width
            vals = [f'l1ad_from_hex<{ctype}, {w}>("{int(c) & ((1 << w) - 1):x}")' for c in codes]
            lines += [f"static {ctype} {var}[{len(codes)}] = {_array_init(vals, 4)};", ""]
    arrays = [a for a in arrays if a not in wide]
    lines.append("#ifndef L1AD_FAST_INIT")
    for ctype, var, fmt, codes, what in arrays:
        vals = [value_literal(c, fmt, what) for c in codes]
        lines += [f"static {ctype} {var}[{len(codes)}] = {_array_init(vals)};", ""]
    lines += ["#else  // the same values, set from the integer codes at load time (C-simulation library)", ""]
    for ctype, var, fmt, codes, what in arrays:
        w = fmt.width
        it = f"ap_int<{w}>" if fmt.signed else f"ap_uint<{w}>"
        lines += [
            f"static {ctype} {var}[{len(codes)}];",
            f"static const long long {var}_codes[{len(codes)}] = {_array_init([f'{int(c)}LL' for c in codes])};",
            f"static struct {var}_init_t {{",
            f"    {var}_init_t() {{",
            f"        for (int i = 0; i < {len(codes)}; i++) {{ {it} c = {var}_codes[i]; "
            f"{var}[i].range({w - 1}, 0) = c.range({w - 1}, 0); }}",
            "    }",
            f"}} {var}_init;",
            "",
        ]
    lines += ["#endif", "", "#endif", ""]
    return "\n".join(lines)


def dense_code(q: QModel, i: int, n: str, src: str, src_t: str, dst: str, dst_t: str, *, view=None,
               weight_name: str = "weight") -> LayerCode:
    """A dense layer (or `view`, the dense view of layer i) through nnet::dense_latency."""
    orig = q.layers[i]
    L = orig if view is None else view
    wt, bt, at = f"{n}_{weight_name}_t", f"{n}_bias_t", f"{n}_accum_t"
    types = [
        f"// {L.name}: {orig.describe()}" + ("" if q.layer_exact(i) else " (accumulator narrower than exact: hls4ml order)"),
        _typedef(wt, L.weight_format, "weights"),
        _typedef(bt, L.bias_format, "bias"),
        _typedef(at, L.accum_format, "accumulator (products are converted to it, then summed in input order)"),
        _typedef(dst_t, L.output_format, "output"),
    ]
    n_mult = L.n_in * L.n_out
    config = [
        f"struct config_{n} {{  // nnet::dense_latency, {L.n_in} -> {L.n_out}",
        f"    typedef {wt} weight_t;",
        f"    typedef {bt} bias_t;",
        f"    typedef {at} accum_t;",
        f"    static const unsigned n_in = {L.n_in};",
        f"    static const unsigned n_out = {L.n_out};",
        "    static const unsigned reuse_factor = 1;",
        f"    static const unsigned multiplier_limit = {n_mult};",
        "    // the exact ap_fixed product a * w (converted to accum_t by dense_latency)",
        "    template <class x_T, class y_T> using product = nnet::product::mult<x_T, y_T>;",
        "};",
    ]
    w = [int(v) for row in L.weights.tolist() for v in row]  # w[i * n_out + j]: input i -> output j
    weights = _weights_header(n, [(wt, f"w_{n}", L.weight_format, w, f"layer {L.name} weights"),
                                  (bt, f"b_{n}", L.bias_format, [int(v) for v in L.bias.tolist()], f"layer {L.name} bias")])
    body = [
        f"    // {L.name}: {orig.describe()}" + ("" if view is None else " (its dense view: the lowered matrix)"),
        f"    {at} {n}_acc[{L.n_out}];",
        f"    #pragma HLS ARRAY_PARTITION variable={n}_acc complete dim=0",
        f"    nnet::dense_latency<{src_t}, {at}, config_{n}>({src}, {n}_acc, w_{n}, b_{n});",
        *_act_and_assign(n, at, dst_t, f"{n}_acc", dst, L.n_out, L.activation == "relu"),
    ]
    prec = [(f"{L.name}.{weight_name}", str(L.weight_format), wt), (f"{L.name}.bias", str(L.bias_format), bt),
            (f"{L.name}.accum", str(L.accum_format), at), (f"{L.name}.out", str(L.output_format), dst_t)]
    return LayerCode(types, config, weights, body, prec, (f"w_{n}", f"b_{n}"))


def affine_code(q: QModel, i: int, n: str, src: str, src_t: str, dst: str, dst_t: str) -> LayerCode:
    L = q.layers[i]
    st, ot, at = f"{n}_scale_t", f"{n}_offset_t", f"{n}_accum_t"
    types = [
        f"// {L.name}: {L.describe()}",
        _typedef(st, L.scale_format, "per-channel scale"),
        _typedef(ot, L.offset_format, "per-channel offset"),
        _typedef(at, L.accum_format, "accumulator (exact)"),
        _typedef(dst_t, L.output_format, "output"),
    ]
    weights = _weights_header(n, [(st, f"s_{n}", L.scale_format, [int(v) for v in L.scale.tolist()], f"layer {L.name} scale"),
                                  (ot, f"o_{n}", L.offset_format, [int(v) for v in L.offset.tolist()],
                                   f"layer {L.name} offset")])
    body = [
        f"    // {L.name}: {L.describe()}",
        f"    {at} {n}_acc[{L.n_in}];",
        f"    #pragma HLS ARRAY_PARTITION variable={n}_acc complete dim=0",
        f"    {n}_affine: for (int j = 0; j < {L.n_in}; j++) {{",
        "        #pragma HLS UNROLL",
        f"        {n}_acc[j] = {src}[j] * s_{n}[j] + o_{n}[j];  // exact product and sum; {at} holds them",
        "    }",
        *_act_and_assign(n, at, dst_t, f"{n}_acc", dst, L.n_in, L.activation == "relu"),
    ]
    prec = [(f"{L.name}.scale", str(L.scale_format), st), (f"{L.name}.offset", str(L.offset_format), ot),
            (f"{L.name}.accum", str(L.accum_format), at), (f"{L.name}.out", str(L.output_format), dst_t)]
    return LayerCode(types, [], weights, body, prec, (f"s_{n}", f"o_{n}"))


def conv_code(q: QModel, i: int, n: str, src: str, src_t: str, dst: str, dst_t: str) -> LayerCode:
    """A convolution as its dense view (the lowered (n_in, n_out) matrix, the bias repeated per position) through
    nnet::dense_latency. The IR's conv accumulator is always exact, so the view's zero products and the summation
    order change no value; Vitis drops the products by constant zeros when it unrolls the layer."""
    return dense_code(q, i, n, src, src_t, dst, dst_t, view=q.layers[i].dense_view(), weight_name="kernel")


def pool_code(q: QModel, i: int, n: str, src: str, src_t: str, dst: str, dst_t: str) -> LayerCode:
    """Pooling. Average: its dense view (weights 2**-k, zero bias, exact accumulator) through the dense handler.
    Max: a loop of its own over a constant index table (``idx_<n>[n_out][N]``: each output's window, a window cut
    by padding repeating its first valid input, which leaves a max unchanged): ``m = in[idx[j][0]]; if (in[idx[j][k]]
    > m) m = in[idx[j][k]];`` compares ap_fixed values exactly and the accumulator type holds every input of the
    window, so the result is the IR's max; then relu and the assignment to the output type. (hls4ml's
    nnet_pooling.h is not used: its average is ``y /= length`` in accum_t, which truncates unless accum_t carries
    k more fraction bits; the IR's own window table keeps the geometry, Keras 'same' and explicit ONNX pads
    included, identical to the emulator's by construction.)"""
    L = q.layers[i]
    if L.mode == "avg":
        return dense_code(q, i, n, src, src_t, dst, dst_t, view=L.dense_view(), weight_name="pool")
    at = f"{n}_accum_t"
    idx = L.gather_index()
    n_out, N = idx.shape
    types = [f"// {L.name}: {L.describe()}", _typedef(at, L.accum_format, "max (exact: holds every input of a window)"),
             _typedef(dst_t, L.output_format, "output")]
    g = f"L1AD_WEIGHTS_{n.upper()}_H_"
    rows = ["{" + ", ".join(str(int(v)) for v in r) + "}" for r in idx.tolist()]
    weights = "\n".join([f"// Generated by l1ad from the QModel (layer {n}): the input index of every window position. "
                         "Do not edit.", f"#ifndef {g}", f"#define {g}", "",
                         f"static const int idx_{n}[{n_out}][{N}] = {_array_init(rows, 4)};", "", "#endif", ""])
    body = [
        f"    // {L.name}: {L.describe()}",
        f"    {at} {n}_acc[{n_out}];",
        f"    #pragma HLS ARRAY_PARTITION variable={n}_acc complete dim=0",
        f"    {n}_max: for (int j = 0; j < {n_out}; j++) {{",
        "        #pragma HLS UNROLL",
        f"        {at} m = {src}[idx_{n}[j][0]];",
        f"        {n}_win: for (int k = 1; k < {N}; k++) {{",
        "            #pragma HLS UNROLL",
        f"            if ({src}[idx_{n}[j][k]] > m) m = {src}[idx_{n}[j][k]];",
        "        }",
        f"        {n}_acc[j] = m;",
        "    }",
        *_act_and_assign(n, at, dst_t, f"{n}_acc", dst, n_out, L.activation == "relu"),
    ]
    prec = [(f"{L.name}.accum", str(L.accum_format), at), (f"{L.name}.out", str(L.output_format), dst_t)]
    return LayerCode(types, [], weights, body, prec)


Handler = Callable[[QModel, int, str, str, str, str, str], LayerCode]
#: layer kind -> handler (q, layer index, C name, input array, input type, output array, output type)
HANDLERS: Mapping[str, Handler] = {"dense": dense_code, "affine": affine_code, "conv": conv_code, "pool": pool_code}


@dataclass(frozen=True)
class NetworkCode:
    defines_h: str
    parameters_h: str
    weights: dict[str, str]  # file name under firmware/weights/ -> text
    function: str  # the network function (firmware/<P>.cpp)
    precisions: list[dict]  # rows {tensor, format, cpp, typedef}


def network_code(q: QModel, project: str) -> NetworkCode:
    """defines.h, parameters.h, the weights headers and the network function ``<project>_network(input_t xq[],
    result_t y[])`` of QModel `q` (the network input is the output of the input quantizer)."""
    names = c_names(q)
    for L in q.layers:
        if L.kind not in HANDLERS:
            raise HLSExportError(f"layer {L.name}: the HLS writer has no handler for layer kind {L.kind!r} "
                                 f"(handled: {', '.join(HANDLERS)})")
    codes: list[LayerCode] = []
    src, src_t = "xq", "input_t"
    for i, (L, n) in enumerate(zip(q.layers, names)):
        last = i == len(q.layers) - 1
        dst, dst_t = ("y", f"{n}_result_t") if last else (f"{n}_out", f"{n}_result_t")
        code = HANDLERS[L.kind](q, i, n, src, src_t, dst, dst_t)
        if not last:
            code = replace(code, body=[code.body[0], f"    {dst_t} {dst}[{L.n_out}];",
                                       f"    #pragma HLS ARRAY_PARTITION variable={dst} complete dim=0", *code.body[1:]])
        codes.append(code)
        src, src_t = dst, dst_t
    defines = [
        "// Generated by l1ad (firmware.hls.network) from the QModel: every tensor type of the network. Do not edit.",
        "#ifndef DEFINES_H_",
        "#define DEFINES_H_",
        "",
        '#include "ap_fixed.h"',
        '#include "ap_int.h"',
        "",
        f"#define N_INPUT {q.n_inputs}",
        f"#define N_OUTPUT {q.n_outputs}",
        "",
        _typedef("input_t", q.input_quantizer, "network input (the input quantizer)"),
    ]
    for c in codes:
        defines += [""] + c.types
    defines += ["", f"typedef {names[-1]}_result_t result_t;  // network output: {q.output_format}", "", "#endif", ""]
    params = [
        "// Generated by l1ad (firmware.hls.network): layer configurations for hls4ml's nnet_utils and the weights.",
        "#ifndef PARAMETERS_H_",
        "#define PARAMETERS_H_",
        "",
        '#include "ap_fixed.h"',
        '#include "ap_int.h"',
        "",
        *[f'#include "nnet_utils/{h}"' for h in NNET_HEADERS],
        '#include "defines.h"',
        "",
        *[f'#include "weights/{n}.h"' for n in names],
        "",
    ]
    for c in codes:
        if c.config:
            params += c.config + [""]
    params += ["#endif", ""]
    arrays = [a for c in codes for a in c.arrays]
    fn = [
        "// the network (generated from the QModel's layers by firmware.hls.network), inlined into the top level",
        f"static void {project}_network(input_t xq[N_INPUT], result_t y[N_OUTPUT]) {{",
        "    #pragma HLS INLINE",
        *[f"    #pragma HLS ARRAY_PARTITION variable={a} complete dim=0" for a in arrays],
    ]
    for c in codes:
        fn += [""] + c.body
    fn += ["}", ""]
    prec = [{"tensor": "xq", "format": str(q.input_quantizer), "cpp": cpp_type(q.input_quantizer), "typedef": "input_t"}]
    for c in codes:
        for t, f, td in c.precisions:
            prec.append({"tensor": t, "format": f, "cpp": cpp_type(FixedFormat.parse(f)), "typedef": td})
    return NetworkCode("\n".join(defines), "\n".join(params), {f"{n}.h": c.weights for n, c in zip(names, codes)},
                       "\n".join(fn), prec)
