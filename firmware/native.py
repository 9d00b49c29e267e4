"""A compiled integer kernel for the emulator: per QModel, a generated C++ source with the model's constants baked in.

``kernel(q)`` generates, compiles (g++ -O3 -march=native) and loads, through ctypes, a library that computes per
event exactly the integer codes of ``firmware.emulator`` (raw float input -> input codes with the input format's
rounding and overflow, scaling, the input quantizer, every dense layer's exact accumulator, relu, the output
requantization, the score block), with the same statistics (values rounded / changed by an overflow mode, per
tensor). Events go in tiles of ``TILE``: a tensor is stored feature-major within a tile (events innermost), so every
elementwise step is a fixed-length loop that the compiler vectorises; a dense layer whose inputs and weights fit
16 bits and whose partial sums fit 32 bits multiplies input pairs (AVX2 ``vpmaddwd``: two products and their sum
per 32-bit lane; a portable expression elsewhere), every other one in 32- or 64-bit lanes as its bounds allow.

Only what the interval bounds prove exact runs here: dense layers with accumulators that hold every partial sum,
every code and intermediate within 62 bits, a score whose accumulator is exact. Anything else (other layer
kinds, narrow accumulators, wider formats) gets a reason string (``unsupported(q)``) and the emulator keeps its
NumPy path. The library is cached by a hash of its source, the compiler and the CPU in ``cache_dir()``
($XDG_CACHE_HOME/l1ad/native or ~/.cache/l1ad/native), written atomically; the loaded kernel is kept on the QModel.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .emulator import _fits
from .fixed import FixedFormat
from .ir import DenseLayer, QModel, _holds

#: emulate(backend="auto") builds a model's kernel (seconds, once: then cached) only for inputs this large
NATIVE_MIN_EVENTS = 1 << 17
TILE = 16  # events per tile (two 8-lane vectors of 32-bit codes)
BLOCK = 4  # output neurons per register block of a paired (16-bit) layer
# no -ffast-math: NaN, rounding and floor semantics matter; -fno-trapping-math only lets comparisons be if-converted
FLAGS = ("-O3", "-march=native", "-std=c++17", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC")
ROUND = {"TRN": 0, "TRN_ZERO": 1, "RND": 2, "RND_ZERO": 3, "RND_INF": 4, "RND_MIN_INF": 5, "RND_CONV": 6}
OVERFLOW = {"WRAP": 0, "SAT": 1, "SAT_ZERO": 2, "SAT_SYM": 3}
STATUS_NONFINITE, STATUS_FALLBACK = 1, 2  # kernel return bits: NaN/inf in the input; a value the kernel leaves to NumPy
_CACHE_KEY = "_emu_native"


class _Unsupported(Exception):
    """The model has something the kernel does not handle (the message says what)."""


# ---------------------------------------------------------------------- C++ helpers (model independent)
_PRELUDE = r"""
#include <cstdint>
#include <type_traits>
// compiler builtins instead of <cmath>, <cstring>, <immintrin.h>: those headers would double the build time
#define L1AD_INLINE inline __attribute__((always_inline))
// a loop over the tile's events: kept a loop (not unrolled first) so that the vectoriser takes it whole
#define L1AD_LANES(e) _Pragma("GCC unroll 1") for (int e = 0; e < B; e++)
namespace {
enum { TRN, TRN_ZERO, RND, RND_ZERO, RND_INF, RND_MIN_INF, RND_CONV };
enum { WRAP, SAT, SAT_ZERO, SAT_SYM };
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef short v16h __attribute__((vector_size(32)));

// the helpers below take a scalar (int32_t / int64_t) or 8 lanes (v8i); conditions are then lane masks (-1 / 0)
template <typename T> struct Lane { using elem = T; using uns = std::make_unsigned_t<T>; };
template <> struct Lane<v8i> { using elem = int32_t; using uns = v8u; };
template <typename T> L1AD_INLINE T shl(T c, int k) { return (T)((typename Lane<T>::uns)c << k); }
// 1 where a condition holds (a bool, or a lane mask of -1)
template <typename T, typename M> L1AD_INLINE T one_if(M m) {
  if constexpr (std::is_same_v<T, v8i>) return -m; else return (T)m;
}

// c / 2**S rounded with mode M (S >= 1): a bias, then the floor shift (T holds |c| + 2**S)
template <int S, int M, typename T> L1AD_INLINE T round_shift(T c) {
  using E = typename Lane<T>::elem;
  constexpr E h = E(1) << (S - 1);
  if constexpr (M == TRN) return c >> S;
  else if constexpr (M == RND) return (c + h) >> S;
  else if constexpr (M == RND_MIN_INF) return (c + (h - 1)) >> S;
  else if constexpr (M == RND_CONV) return (c + ((c >> S) & 1) + (h - 1)) >> S;
  else if constexpr (M == RND_INF) return (c + h - one_if<T>(c < 0)) >> S;
  else if constexpr (M == RND_ZERO) return (c + (h - 1) + one_if<T>(c < 0)) >> S;
  else return (c + one_if<T>(c < 0) * ((E(1) << S) - 1)) >> S;  // TRN_ZERO
}

// a code at the format's LSB fitted to W bits with overflow mode O; ovf counts the values the mode changes. A side
// the interval bounds prove safe is not checked (LC / HC false)
template <int O, int W, bool SG, bool LC, bool HC, typename T, typename C> L1AD_INLINE T fit(T q, C& ovf) {
  using E = typename Lane<T>::elem;
  constexpr E LO = SG ? -(E(1) << (W - 1)) : E(0);
  constexpr E HI = SG ? (E(1) << (W - 1)) - 1 : (E(1) << W) - 1;
  constexpr E LOS = (O == SAT_SYM && SG) ? E(-HI) : LO;  // SAT_SYM: the signed minimum code becomes -max
  if constexpr (LC) ovf += one_if<C>(q < LOS);
  if constexpr (HC) ovf += one_if<C>(q > HI);
  if constexpr (!LC && !HC) {
    return q;
  } else if constexpr (O == WRAP && SG) {
    constexpr int K = 8 * (int)sizeof(E) - W;
    return shl(q, K) >> K;
  } else if constexpr (O == WRAP) {
    return q & HI;
  } else if constexpr (O == SAT_ZERO) {
    if constexpr (LC && HC) return ((q < LO) | (q > HI)) ? T{} : q;
    else if constexpr (LC) return q < LO ? T{} : q;
    else return q > HI ? T{} : q;
  } else {
    T r = q;
    if constexpr (LC) r = r < LOS ? T{} + LOS : r;
    if constexpr (HC) r = r > HI ? T{} + HI : r;
    return r;
  }
}

// codes with S fraction bits to drop (S <= 0: exact left shift) -> the format <W, SG, M, O>
template <int S, int M, int O, int W, bool SG, bool LC = true, bool HC = true, typename T, typename C>
L1AD_INLINE T requant(T c, C& inexact, C& ovf) {
  using E = typename Lane<T>::elem;
  if constexpr (S > 0) {
    inexact += one_if<C>((c & ((E(1) << S) - 1)) != 0);
    return fit<O, W, SG, LC, HC>(round_shift<S, M>(c), ovf);
  } else {
    return fit<O, W, SG, LC, HC>(shl(c, -S), ovf);
  }
}

// a raw (finite or not) input value -> code of the input format <W, SG, M, O> at FI fraction bits, as ap_fixed
// converts a double; status bit 1: NaN/inf, bit 2: a value left to the NumPy path (scaled past double range,
// or a wrapped code beyond 62 bits)
template <int FI, int M, int O, int W, bool SG> int64_t quant_in(double x, int32_t& inexact, int32_t& ovf, int& status) {
  if (!__builtin_isfinite(x)) { status |= 1; return 0; }
  const double t = __builtin_ldexp(x, FI);
  if (!__builtin_isfinite(t)) { status |= 2; return 0; }
  const double r = __builtin_floor(t), d = t - r;
  const bool odd = __builtin_fmod(r, 2.0) != 0, neg = t < 0, gt = d > 0.5, eq = d == 0.5;
  inexact += (int32_t)(d != 0);
  bool inc = false;
  if constexpr (M == TRN_ZERO) inc = d != 0 && neg;
  else if constexpr (M == RND) inc = gt || eq;
  else if constexpr (M == RND_MIN_INF) inc = gt;
  else if constexpr (M == RND_INF) inc = gt || (eq && !neg);
  else if constexpr (M == RND_ZERO) inc = gt || (eq && neg);
  else if constexpr (M == RND_CONV) inc = gt || (eq && odd);
  double q = r + (inc ? 1.0 : 0.0);
  const double lo = SG ? -__builtin_ldexp(1.0, W - 1) : 0.0, hi = SG ? __builtin_ldexp(1.0, W - 1) - 1 : __builtin_ldexp(1.0, W) - 1;
  ovf += (int32_t)((O == SAT_SYM && SG ? q <= lo : q < lo) || q > hi);
  if constexpr (O != WRAP) {
    const double big = __builtin_ldexp(1.0, W + 2 < 1000 ? W + 2 : 1000);
    q = q < -big ? -big : (q > big ? big : q);
  }
  if (__builtin_fabs(q) >= 0x1p62) { status |= 2; return 0; }
  int32_t unused = 0;
  return fit<O, W, SG, true, true>((int64_t)q, unused);
}

// four neurons (a, b, c, d: 8 events each) into the rows of 8 events (row stride N): a 4 x 8 transpose in registers
template <int N> L1AD_INLINE void store_rows4(int32_t* __restrict out, v8i a, v8i b, v8i c, v8i d) {
  const v8i lo = {0, 8, 1, 9, 4, 12, 5, 13}, hi = {2, 10, 3, 11, 6, 14, 7, 15};
  const v8i lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
  const v8i t0 = __builtin_shuffle(a, b, lo), t1 = __builtin_shuffle(a, b, hi);
  const v8i t2 = __builtin_shuffle(c, d, lo), t3 = __builtin_shuffle(c, d, hi);
  const v8i u[4] = {__builtin_shuffle(t0, t2, lo2), __builtin_shuffle(t0, t2, hi2), __builtin_shuffle(t1, t3, lo2),
                    __builtin_shuffle(t1, t3, hi2)};  // events (0, 4), (1, 5), (2, 6), (3, 7)
  for (int e = 0; e < 4; e++) {
    __builtin_memcpy(out + e * N, &u[e], 16);
    __builtin_memcpy(out + (e + 4) * N, (const char*)&u[e] + 16, 16);
  }
}

// two 16-bit products per 32-bit lane, summed: a = (a0, a1), b = (b0, b1) -> a0 * b0 + a1 * b1
L1AD_INLINE v8i madd(v8i a, v8i b) {
#if defined(__AVX2__)
  return (v8i)__builtin_ia32_pmaddwd256((v16h)a, (v16h)b);
#else
  return ((v8i)((v8u)a << 16) >> 16) * ((v8i)((v8u)b << 16) >> 16) + (a >> 16) * (b >> 16);
#endif
}
}  // namespace
"""


# ---------------------------------------------------------------------- integer types from bounds
def _lane(bits: int) -> str | None:
    """The C type holding |v| < 2**bits with one bit of headroom: int32_t, int64_t, or None (too wide)."""
    return "int32_t" if bits <= 30 else "int64_t" if bits <= 62 else None


def _store_type(lo: int, hi: int) -> str:
    """The C type storing codes in [lo, hi]."""
    if -(1 << 31) <= lo and hi < (1 << 31):
        return "int32_t"
    return "int64_t"


def _rq_type(src_bits: int, shift: int, dst: FixedFormat, what: str) -> str:
    """Working type of one requantization (rounding bias, exact left shift, dst's constants all in range)."""
    need = max(src_bits, shift, src_bits - shift if shift < 0 else 0, dst.width)
    t = _lane(need)
    if t is None:
        raise _Unsupported(f"{what}: a {need}-bit intermediate (the native kernel handles up to 62 bits)")
    return t


def _rq_args(shift: int, dst: FixedFormat, sides: tuple[bool, bool] = (False, False)) -> str:
    """Template arguments of requant<>: shift, modes, width, signedness, and which sides need an overflow check
    (``sides`` = what ``_fits`` proved safe: (low side safe, high side safe))."""
    b = lambda v: "true" if v else "false"  # noqa: E731
    return (f"{shift}, {ROUND[dst.rounding]}, {OVERFLOW[dst.overflow]}, {dst.width}, {b(dst.signed)}, "
            f"{b(not sides[0])}, {b(not sides[1])}")


def _arr(name: str, ctype: str, values: Any, per_line: int = 32) -> str:
    vals = [str(int(v)) for v in values] or ["0"]
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return f"static const {ctype} {name}[{len(vals)}] __attribute__((aligned(32))) = {{\n  " + ",\n  ".join(lines) + "};\n"


# ---------------------------------------------------------------------- the model, checked and laid out
@dataclass
class _Layer:
    name: str
    n_in: int
    n_out: int
    paired: bool  # 16-bit input pairs (vpmaddwd); else plain lanes of type `acc`
    acc: str  # accumulator lane type
    work: str  # requantization working type
    h_in: str  # plain input lane type (unpaired)
    shift_p: int  # product LSB -> exact accumulator LSB
    shift: int  # exact accumulator -> output: fraction bits dropped (<= 0: exact left shift)
    relu: bool
    out: FixedFormat
    weights: np.ndarray  # int64 (n_in, n_out)
    bias: list[int]  # bias codes at the exact accumulator LSB
    sides: tuple[bool, bool]  # the output's low / high side proven safe (no overflow check)


def unsupported(q: QModel) -> str | None:
    """Why the native kernel cannot run `q` (a short reason naming the construct), or None when it can. No
    compiler is involved (see ``compiler_reason`` for that)."""
    cached = q.__dict__.get(_CACHE_KEY + "_reason", False)
    if cached is not False:
        return cached
    try:
        _layout(q)
        reason = None
    except _Unsupported as e:
        reason = str(e)
    q.__dict__[_CACHE_KEY + "_reason"] = reason
    return reason


def _layout(q: QModel) -> dict[str, Any]:
    """The per-tensor types and layer plans of the kernel; raises _Unsupported naming the first obstacle."""
    cached = q.__dict__.get(_CACHE_KEY + "_layout")
    if cached is not None:
        return cached
    fin, sf, qi = q.input.format, q.scaled_format, q.input_quantizer
    if fin.width > 52 or abs(fin.frac) > 60:
        raise _Unsupported(f"input format {fin}: wider than 52 bits or more than 60 fraction bits")
    sub, lsh = q.input.scaled_code_params()
    if sf.width > 60 or any(abs(int(s)) >= 1 << 60 for s in sub) or any(int(k) > 60 for k in lsh):
        raise _Unsupported(f"scaled input format {sf}: wider than 60 bits")
    bounds = q.tensor_bounds()
    s_xq = sf.frac - qi.frac
    lay: dict[str, Any] = {"fin": fin, "sub": [int(s) for s in sub], "lsh": [int(k) for k in lsh], "s_xq": s_xq,
                           "code": "int32_t" if fin.width <= 31 else "int64_t",
                           "scale_t": _rq_type(sf.width, s_xq, qi, "input quantizer"), "qi": qi,
                           "xq_sides": _fits(bounds["scaled"], sf.frac, qi, False)}
    layers = []
    in_fmt, (in_lo, in_hi) = qi, bounds["xq"]
    for L in q.layers:
        if L.kind != "dense" or not isinstance(L, DenseLayer):
            raise _Unsupported(f"layer {L.name} is a {L.kind} layer (the native kernel runs dense layers only)")
        ab = L.accum_bounds(in_lo, in_hi, in_fmt)
        if not _holds(L.accum_format, ab["part_lo"], ab["part_hi"], ab["frac"]):
            raise _Unsupported(f"layer {L.name}: accumulator {L.accum_format} is not exact (hls4ml-order sums run on NumPy)")
        w = np.array([[int(v) for v in row] for row in L.weights.tolist()], dtype=object)
        amax = [max(abs(int(a)), abs(int(b))) for a, b in zip(in_lo, in_hi)]
        wabs = [[abs(int(v)) for v in row] for row in w.tolist()]
        dot = max((sum(amax[r] * wabs[r][j] for r in range(L.n_in)) for j in range(L.n_out)), default=0)
        part = max(max(abs(v) for v in ab["part_lo"]), max(abs(v) for v in ab["part_hi"]), dot)
        wmax = max((max(r) for r in wabs), default=0)
        paired = max(amax, default=0) <= 32767 and wmax <= 32767 and part < (1 << 31)
        acc = _lane(part.bit_length())
        if acc is None or wmax >= 1 << 62:
            raise _Unsupported(f"layer {L.name}: partial sums need {part.bit_length()} bits (the native kernel handles up to 62)")
        if paired:
            acc = "int32_t"
        fa = ab["frac"]
        shift = fa - L.output_format.frac
        layers.append(_Layer(
            name=L.name, n_in=L.n_in, n_out=L.n_out, paired=paired, acc=acc,
            work=_rq_type(part.bit_length(), shift, L.output_format, f"layer {L.name} output"),
            h_in=_store_type(min(in_lo), max(in_hi)), shift_p=fa - (in_fmt.frac + L.weight_format.frac), shift=shift,
            relu=L.activation == "relu", out=L.output_format, weights=w.astype(np.int64),
            bias=[int(b) << (fa - L.bias_format.frac) for b in L.bias.tolist()],
            sides=_fits(bounds[f"{L.name}.accum"], fa, L.output_format, L.activation == "relu")))
        in_fmt, (in_lo, in_hi) = L.output_format, bounds[f"{L.name}.out"]
    of = q.output_format
    if of.width > 62:
        raise _Unsupported(f"output format {of}: wider than 62 bits")
    lay["out_t"] = "int32_t" if of.width <= 31 else "int64_t"
    lay["layers"] = layers
    lay["score"] = _score_layout(q) if q.score is not None else None
    q.__dict__[_CACHE_KEY + "_layout"] = lay
    return lay


def _score_layout(q: QModel) -> dict[str, Any]:
    sc, sa = q.score, q.score_analysis()
    of, xf = q.output_format, q.input_quantizer
    rng = lambda f: ([f.min_code], [f.max_code])  # noqa: E731  (a format's whole code range, as bounds)
    if sc.kind == "out":
        return {"kind": "out", "shift": of.frac - sc.format.frac, "fmt": sc.format,
                "t": _rq_type(of.width, of.frac - sc.format.frac, sc.format, "score"),
                "sides": _fits(q.tensor_bounds()[f"{q.layers[-1].name}.out"], of.frac, sc.format, False)}
    if not sa["accum_ok"]:
        raise _Unsupported(f"score accumulator {sc.accum_format} is not exact (hls4ml-order sums run on NumPy)")
    d: dict[str, Any] = {"kind": sc.kind, "gate": None if sc.gate is None else [int(g) for g in sc.gate]}
    if sc.kind == "mse":
        ed = sa["exact_diff"]
        d["a1"], d["a2"] = ed.frac - xf.frac, ed.frac - of.frac
        d["diff_t"] = _rq_type(ed.width, ed.frac - sc.diff_format.frac, sc.diff_format, "score difference")
        d["diff_shift"], d["diff"] = ed.frac - sc.diff_format.frac, sc.diff_format
        d["diff_sides"] = _fits(rng(ed), ed.frac, sc.diff_format, False)
        base = sc.diff_format
    else:
        base = of
    if base.width > 31:
        raise _Unsupported(f"score: squares of {base} exceed 62 bits")
    es, sqf, acc_f = sa["exact_square"], sc.square_format, sc.accum_format
    d["sq_t"] = _rq_type(es.width, es.frac - sqf.frac, sqf, "score square")
    d["sq_shift"], d["sq"], d["sq_sides"] = es.frac - sqf.frac, sqf, _fits(rng(es), es.frac, sqf, False)
    d["acc_sh"] = acc_f.frac - sqf.frac
    d["acc_t"] = _rq_type(max(sa["exact_accum"].width + d["acc_sh"], acc_f.width), acc_f.frac - sc.format.frac, sc.format, "score")
    d["shift"], d["fmt"] = acc_f.frac - sc.format.frac, sc.format
    d["sides"] = _fits(rng(sa["exact_accum"]), sa["exact_accum"].frac, sc.format, False)
    return d


def stat_names(q: QModel) -> tuple[str, ...]:
    """The statistics the kernel counts, in its order (the emulator's names)."""
    names = ["input", "xq"] + [f"{L.name}.{k}" for L in q.layers for k in ("accum", "out")]
    if q.score is not None:
        names += {"mse": ["score.diff", "score.square", "score.accum", "score"], "mu2": ["score.square", "score.accum", "score"],
                  "out": ["score"]}[q.score.kind]
    return tuple(names)


# ---------------------------------------------------------------------- source generation
def generate_source(q: QModel) -> str:
    """The C++ source of q's kernel (raises ValueError naming what is unsupported)."""
    try:
        lay = _layout(q)
    except _Unsupported as e:
        raise ValueError(str(e)) from None
    names = stat_names(q)
    st = {n: 2 * i for i, n in enumerate(names)}  # counter row of a stat's inexact count (overflow: the next row)
    layers: list[_Layer] = lay["layers"]
    xq_t = "int16_t" if layers[0].paired else layers[0].h_in
    src = [f"// l1ad native kernel of QModel {q.name!r} (generated by l1ad.firmware.native: do not edit)", _PRELUDE,
           "namespace {",
           f"constexpr int B = {TILE}, NI = {q.n_inputs}, NIP = {q.n_inputs + (q.n_inputs & 1)}, NO = {q.n_outputs}, "
           f"NC = {2 * len(names)};",
           _input_source(lay, xq_t)]
    for k, L in enumerate(layers):
        src.append(_layer_source(k, L, layers[k + 1] if k + 1 < len(layers) else None, lay["out_t"], st))
    if lay["score"] is not None:
        src.append(_score_source(q, lay["score"], xq_t, lay["code"], lay["out_t"]))
    src.append(_tile_source(q, lay, xq_t, st))
    src.append(f"""}}  // namespace

extern "C" {{
int l1ad_native_f32(long n, const float* x, void* out, int64_t* score, int64_t* counts) {{
  return run(n, x, ({lay['out_t']}*)out, score, counts);
}}
int l1ad_native_f64(long n, const double* x, void* out, int64_t* score, int64_t* counts) {{
  return run(n, x, ({lay['out_t']}*)out, score, counts);
}}
void l1ad_native_shape(long* shape) {{
  shape[0] = NI;
  shape[1] = NO;
  shape[2] = NC;
}}
}}
""")
    return "\n".join(src)


def _input_source(lay: dict[str, Any], xq_t: str) -> str:
    """in_row(row, code, xq, counters): one event's raw values -> input codes -> scaled -> xq (row layout)."""
    fin = lay["fin"]
    lo_fast = fin.min_code + (1 if (fin.overflow == "SAT_SYM" and fin.signed) else 0)
    scale = float(2.0 ** fin.frac).hex()
    qin = f"{fin.frac}, {ROUND[fin.rounding]}, {OVERFLOW[fin.overflow]}, {fin.width}, {'true' if fin.signed else 'false'}"
    w_t, code_t = lay["scale_t"], lay["code"]
    if all(v == 0 for v in lay["sub"]) and len(set(lay["lsh"])) == 1:
        scaled = f"shl(({w_t})c, {lay['lsh'][0]})"
    else:
        scaled = f"shl(({w_t})(({w_t})c - ({w_t})SUB[j]), LSH[j])"
    xq_rq = f"({xq_t})requant<{_rq_args(lay['s_xq'], lay['qi'], lay['xq_sides'])}>({scaled}, ni, nv)"
    out = [_arr("SUB", "int64_t", lay["sub"]), _arr("LSH", "int32_t", lay["lsh"])]
    for xt in ("float", "double"):
        ft = "float" if (xt == "float" and fin.frac == 0 and fin.width <= 24) else "double"
        out.append(f"""
// one event: one vectorised pass assumes every raw value on the input grid and inside its range; if one is not
// (or is NaN/inf) the row is redone value by value (ap_fixed's conversion of a double)
L1AD_INLINE int in_row(const {xt}* __restrict row, {code_t}* __restrict code, {xq_t}* __restrict xq, int32_t& in_inx,
                       int32_t& in_ov, int32_t& xq_inx, int32_t& xq_ov) {{
  int32_t bad = 0, ni = 0, nv = 0;
  for (int j = 0; j < NI; j++) {{
    const {ft} t = ({ft})row[j] * ({ft}){scale};
    const bool good = (t == {"__builtin_floorf" if ft == "float" else "__builtin_floor"}(t)) & (t >= ({ft}){lo_fast}) & (t <= ({ft}){fin.max_code});
    bad |= (int32_t)!good;
    const {code_t} c = ({code_t})(good ? t : ({ft})0);
    code[j] = c;
    xq[j] = {xq_rq};
  }}
  int status = 0;
  if (bad) {{
    ni = nv = 0;
    for (int j = 0; j < NI; j++) {{
      const {code_t} c = ({code_t})quant_in<{qin}>((double)row[j], in_inx, in_ov, status);
      code[j] = c;
      xq[j] = {xq_rq};
    }}
  }}
  for (int j = NI; j < NIP; j++) xq[j] = 0;
  xq_inx += ni;
  xq_ov += nv;
  return status;
}}""")
    return "\n".join(out)


def _block_rows(L: _Layer, nxt: _Layer | None, out_t: str) -> bool:
    """Whether the last layer stores blocks of 4 neurons into the output rows by a transpose in registers."""
    return nxt is None and L.paired and _vector_epilogue(L) and out_t == "int32_t" and BLOCK == 4


def _vector_epilogue(L: _Layer) -> bool:
    """Whether neuron outputs are computed on 8-lane vectors (32-bit accumulator and requantization)."""
    return L.acc == "int32_t" and L.work == "int32_t"


def _neuron(k: int, L: _Layer, nxt: _Layer | None, out_t: str, st: dict[str, int], acc: str) -> str:
    """Neuron j of layer k over the tile (`acc`: its accumulator, lanes or vectors): relu, the output codes, their
    counts, and the store into the next tensor (event rows for the last layer, plain lanes, or 16-bit pairs at odd
    j with neuron j - 1 kept in yprev). Padding neurons (j >= n_out) give zeros and no counts."""
    o = st[f"{L.name}.out"]
    rq = f"requant<{_rq_args(L.shift, L.out, L.sides)}>"
    npair = (L.n_out + 1) // 2
    if _vector_epilogue(L):
        a = f"{acc}[v]"
        if L.shift_p:
            a = f"shl({a}, {L.shift_p}) + BIAS{k}[j]"
        relu = "      a = a < 0 ? v8i{} : a;\n" if L.relu else ""
        code = (f"    v8i y[NV];\n    for (int v = 0; v < NV; v++) {{\n      v8i a = {a};\n{relu}"
                f"      y[v] = j < {L.n_out} ? {rq}(a, ci[v], co[v]) : v8i{{}};\n    }}\n")
        if nxt is None and _block_rows(L, nxt, out_t):
            code += "    for (int v = 0; v < NV; v++) yb[jj][v] = y[v];\n"
        elif nxt is None:
            code += (f"    if (j < {L.n_out})\n      for (int v = 0; v < NV; v++)\n"
                     f"        for (int l = 0; l < 8; l++) out[8 * v + l][j] = ({out_t})y[v][l];\n")
        elif nxt.paired:
            code += (f"    if (j & 1) {{\n      if ((j >> 1) < {npair})\n        for (int v = 0; v < NV; v++) {{\n"
                     f"          const v8i p = (yprev[v] & 0xFFFF) | shl(y[v], 16);\n"
                     f"          __builtin_memcpy(&out[j >> 1][8 * v], &p, 32);\n        }}\n"
                     f"    }} else {{\n      for (int v = 0; v < NV; v++) yprev[v] = y[v];\n    }}\n")
        else:
            code += (f"    if (j < {L.n_out})\n      for (int v = 0; v < NV; v++)\n"
                     f"        for (int l = 0; l < 8; l++) out[j][8 * v + l] = ({nxt.h_in})y[v][l];\n")
        return code
    a = f"({L.work}){acc}[e]"
    if L.shift_p:
        a = f"shl({a}, {L.shift_p}) + ({L.work})BIAS{k}[j]"
    relu = "        v = v < 0 ? 0 : v;\n" if L.relu else ""
    code = (f"    alignas(32) {L.work} y[B];\n    if (j < {L.n_out}) {{\n      L1AD_LANES(e) {{\n        {L.work} v = {a};\n{relu}"
            f"        y[e] = {rq}(v, cnt[{o}][e], cnt[{o + 1}][e]);\n      }}\n"
            f"    }} else {{\n      L1AD_LANES(e) y[e] = 0;\n    }}\n")
    if nxt is None:
        code += f"    if (j < {L.n_out}) {{\n      L1AD_LANES(e) out[e][j] = ({out_t})y[e];\n    }}\n"
    elif nxt.paired:
        code += (f"    if (j & 1) {{\n      if ((j >> 1) < {npair}) {{\n        L1AD_LANES(e)\n"
                 "          out[j >> 1][e] = (int32_t)(((uint32_t)yprev_s[e] & 0xFFFFu) | ((uint32_t)y[e] << 16));\n"
                 "      }\n    } else {\n      L1AD_LANES(e) yprev_s[e] = y[e];\n    }\n")
    else:
        code += f"    if (j < {L.n_out}) {{\n      L1AD_LANES(e) out[j][e] = ({nxt.h_in})y[e];\n    }}\n"
    return code


def _layer_source(k: int, L: _Layer, nxt: _Layer | None, out_t: str, st: dict[str, int]) -> str:
    """layer<k>(h, out, cnt): 16-bit input pairs (vpmaddwd, blocks of BLOCK neurons kept in registers) or plain
    lanes; the output goes into the next layer's layout or, for the last layer, into event rows."""
    ni, no = L.n_in, L.n_out
    o = st[f"{L.name}.out"]
    init = [0 if L.shift_p else b for b in L.bias]
    if nxt is None:
        out_decl = f"{out_t} (*__restrict out)[NO]"
    elif nxt.paired:
        out_decl = "int32_t (*__restrict out)[B]"
    else:
        out_decl = f"{nxt.h_in} (*__restrict out)[B]"
    vec = _vector_epilogue(L)
    parts = [f"\n// layer {k}: {L.name}, {ni} -> {no}, {'16-bit input pairs' if L.paired else L.acc + ' lanes'}"]
    if L.shift_p:
        # padded with zeros over the padding neurons (every j the loops reach indexes it; their codes are dropped)
        parts.append(_arr(f"BIAS{k}", L.work, L.bias + [0] * (-(-no // BLOCK) * BLOCK + 1 - no)))
    head = (f"  constexpr int NV = B / 8;\n  v8i ci[NV] = {{}}, co[NV] = {{}}, yprev[NV] = {{}};\n"
            f"  alignas(32) {L.work} yprev_s[B];\n  (void)ci; (void)co; (void)yprev; (void)yprev_s;\n")
    tail = "" if not vec else (
        f"  for (int v = 0; v < NV; v++)\n    for (int l = 0; l < 8; l++) {{\n"
        f"      cnt[{o}][8 * v + l] += ci[v][l];\n      cnt[{o + 1}][8 * v + l] += co[v][l];\n    }}\n")
    if L.paired:
        k2 = (ni + 1) // 2
        nop = -(-no // BLOCK) * BLOCK
        w = np.zeros((nop, 2 * k2), dtype=np.int64)
        w[:no, :ni] = L.weights.T
        packed = (w[:, 0::2] & 0xFFFF) | ((w[:, 1::2] & 0xFFFF) << 16)
        packed = np.where(packed >= 1 << 31, packed - (1 << 32), packed)
        parts.append(_arr(f"W{k}", "int32_t", packed.ravel()))
        parts.append(_arr(f"INIT{k}", "int32_t", init + [0] * (nop - no)))
        acc = "acc[jj]" if vec else "a[jj]"
        yb, store = "", ""
        if _block_rows(L, nxt, out_t):
            yb = "    v8i yb[JB][NV];\n"
            store = (f"    if (j0 + JB <= {no}) {{\n      for (int v = 0; v < NV; v++)\n"
                     f"        store_rows4<NO>(&out[8 * v][j0], yb[0][v], yb[1][v], yb[2][v], yb[3][v]);\n"
                     f"    }} else {{\n      for (int jj = 0; jj < JB && j0 + jj < {no}; jj++)\n"
                     f"        for (int v = 0; v < NV; v++)\n"
                     f"          for (int l = 0; l < 8; l++) out[8 * v + l][j0 + jj] = yb[jj][v][l];\n    }}\n")
        spill = "" if vec else "    alignas(32) int32_t a[JB][B];\n    __builtin_memcpy(a, acc, sizeof a);\n"
        parts.append(f"""L1AD_INLINE void layer{k}(const int32_t (*__restrict h)[B], {out_decl}, int32_t (*__restrict cnt)[B]) {{
{head}  constexpr int K2 = {k2}, JB = {BLOCK};
  for (int j0 = 0; j0 < {nop}; j0 += JB) {{
    v8i acc[JB][NV];
    for (int jj = 0; jj < JB; jj++)
      for (int v = 0; v < NV; v++) acc[jj][v] = v8i{{}} + INIT{k}[j0 + jj];
    for (int i = 0; i < K2; i++) {{
      v8i hv[NV];
      for (int v = 0; v < NV; v++) __builtin_memcpy(&hv[v], &h[i][8 * v], 32);
      for (int jj = 0; jj < JB; jj++) {{
        const v8i w = v8i{{}} + W{k}[(j0 + jj) * K2 + i];
        for (int v = 0; v < NV; v++) acc[jj][v] += madd(hv[v], w);
      }}
    }}
{spill}{yb}    for (int jj = 0; jj < JB; jj++) {{
      const int j = j0 + jj;
{_indent(_neuron(k, L, nxt, out_t, st, acc), 2)}    }}
{store}  }}
{tail}}}""")
    else:
        nj = no + (no & 1) if (nxt is not None and nxt.paired) else no
        parts.append(_arr(f"W{k}", L.acc, L.weights.ravel()))
        parts.append(_arr(f"INIT{k}", L.acc, init))
        load = "    v8i av[NV];\n    __builtin_memcpy(av, a, sizeof av);\n" if vec else ""
        parts.append(f"""L1AD_INLINE void layer{k}(const {L.h_in} (*__restrict h)[B], {out_decl}, int32_t (*__restrict cnt)[B]) {{
{head}  for (int j = 0; j < {nj}; j++) {{
    alignas(32) {L.acc} a[B];
    L1AD_LANES(e) a[e] = j < {no} ? INIT{k}[j] : 0;
    if (j < {no}) {{
      for (int i = 0; i < {ni}; i++) {{
        const {L.acc} w = W{k}[i * {no} + j];
        L1AD_LANES(e) a[e] += ({L.acc})h[i][e] * w;
      }}
    }}
{load}{_neuron(k, L, nxt, out_t, st, "av" if vec else "a")}  }}
{tail}}}""")
    return "\n".join(parts)


def _score_source(q: QModel, sc: dict[str, Any], xq_t: str, code_t: str, out_t: str) -> str:
    """score_row(xq, out, code, counters...): one event's score code (and its statistics)."""
    if sc["kind"] == "out":
        return f"""
L1AD_INLINE int64_t score_row(const {xq_t}*, const {out_t}* o, const {code_t}*, int32_t& s_inx, int32_t& s_ov) {{
  return requant<{_rq_args(sc['shift'], sc['fmt'], sc['sides'])}>(({sc['t']})o[0], s_inx, s_ov);
}}"""
    n = q.n_inputs if sc["kind"] == "mse" else q.n_outputs
    sq_t, acc_t = sc["sq_t"], sc["acc_t"]
    lines = []
    if sc["gate"] is not None:
        lines.append(_arr("GATE", "int32_t", sc["gate"]))
    args = "int32_t& d_inx, int32_t& d_ov, " if sc["kind"] == "mse" else ""
    lines.append(f"""L1AD_INLINE int64_t score_row(const {xq_t}* __restrict xq, const {out_t}* __restrict o, const {code_t}* __restrict code,
                           {args}int32_t& q_inx, int32_t& q_ov, int32_t& s_inx, int32_t& s_ov) {{
  (void)xq; (void)code;
  {acc_t} acc = 0;
  int32_t di = 0, dv = 0, qn = 0, qv = 0;
  (void)di; (void)dv;
  for (int j = 0; j < {n}; j++) {{""")
    if sc["kind"] == "mse":
        dt = sc["diff_t"]
        lines.append(f"    const {dt} d = requant<{_rq_args(sc['diff_shift'], sc['diff'], sc['diff_sides'])}>("
                     f"shl(({dt})xq[j], {sc['a1']}) - shl(({dt})o[j], {sc['a2']}), di, dv);")
    else:
        lines.append(f"    const {sq_t} d = ({sq_t})o[j];")
    lines.append(f"    {sq_t} s = requant<{_rq_args(sc['sq_shift'], sc['sq'], sc['sq_sides'])}>(({sq_t})d * ({sq_t})d, qn, qv);")
    if sc["gate"] is not None:
        lines.append("    s = code[GATE[j]] > 0 ? s : 0;")
    lines.append(f"    acc += ({acc_t})s;\n  }}")
    if sc["kind"] == "mse":
        lines.append("  d_inx += di;\n  d_ov += dv;")
    lines.append(f"""  q_inx += qn;
  q_ov += qv;
  return requant<{_rq_args(sc['shift'], sc['fmt'], sc['sides'])}>(shl(acc, {sc['acc_sh']}), s_inx, s_ov);
}}""")
    return "\n".join(lines)


def _tile_source(q: QModel, lay: dict[str, Any], xq_t: str, st: dict[str, int]) -> str:
    """tile(x, out, score, cnt): B events (rows of x) -> output rows, score codes; per-lane counts added to cnt.
    run(n, ...): the tiles of n events (the last one padded with zero rows, counted apart); counts as totals."""
    layers: list[_Layer] = lay["layers"]
    code_t, out_t = lay["code"], lay["out_t"]
    L0 = layers[0]
    body = [f"""
template <typename X>
int tile(const X* __restrict x, {out_t}* __restrict out, int64_t* __restrict score, int32_t (*__restrict cnt)[B]) {{
  alignas(32) {code_t} code[B][NI];
  alignas(32) {xq_t} xq[B][NIP];
  int status = 0;
  for (int e = 0; e < B; e++)
    status |= in_row(x + e * NI, code[e], xq[e], cnt[{st['input']}][e], cnt[{st['input'] + 1}][e], cnt[{st['xq']}][e],
                     cnt[{st['xq'] + 1}][e]);"""]
    if L0.paired:
        body.append(f"""  alignas(32) int32_t h0[{(L0.n_in + 1) // 2}][B];
  for (int k = 0; k < {(L0.n_in + 1) // 2}; k++)
    for (int e = 0; e < B; e++) __builtin_memcpy(&h0[k][e], &xq[e][2 * k], 4);""")
    else:
        body.append(f"""  alignas(32) {L0.h_in} h0[{L0.n_in}][B];
  for (int i = 0; i < {L0.n_in}; i++)
    for (int e = 0; e < B; e++) h0[i][e] = xq[e][i];""")
    for k, L in enumerate(layers):
        nxt = layers[k + 1] if k + 1 < len(layers) else None
        if nxt is None:
            body.append(f"  layer{k}(h{k}, ({out_t} (*)[NO])out, cnt);")
        elif nxt.paired:
            body.append(f"  alignas(32) int32_t h{k + 1}[{(L.n_out + 1) // 2}][B];\n  layer{k}(h{k}, h{k + 1}, cnt);")
        else:
            body.append(f"  alignas(32) {nxt.h_in} h{k + 1}[{L.n_out}][B];\n  layer{k}(h{k}, h{k + 1}, cnt);")
    if lay["score"] is not None:
        ctr = ", ".join(f"cnt[{st[n]}][e], cnt[{st[n] + 1}][e]" for n in stat_names(q) if n.startswith("score") and n != "score.accum")
        body.append(f"  for (int e = 0; e < B; e++) score[e] = score_row(xq[e], out + e * NO, code[e], {ctr});")
    body.append(f"""  return status;
}}

// per-lane counts grow by at most the widest tensor per tile: flush them into 64-bit totals well before 2**31
constexpr long FLUSH = (1L << 30) / {max([q.n_inputs, q.n_outputs] + [L.n_out for L in layers]) + 1};

void flush(int32_t (*cnt)[B], int64_t* tot, int m) {{
  for (int c = 0; c < NC; c++) {{
    int64_t s = 0;
    for (int e = 0; e < m; e++) s += cnt[c][e];
    tot[c] += s;
  }}
  __builtin_memset(cnt, 0, sizeof(int32_t) * NC * B);
}}

template <typename X>
int run(long n, const X* x, {out_t}* out, int64_t* score, int64_t* counts) {{
  int64_t tot[NC] = {{0}};
  alignas(32) int32_t cnt[NC][B];
  __builtin_memset(cnt, 0, sizeof cnt);
  alignas(32) int64_t spad[B];
  int status = 0;
  long t0 = 0, tiles = 0;
  for (; t0 + B <= n && !(status & {STATUS_NONFINITE}); t0 += B) {{
    status |= tile(x + t0 * NI, out + t0 * NO, score ? score + t0 : spad, cnt);
    if (++tiles == FLUSH) {{
      flush(cnt, tot, B);
      tiles = 0;
    }}
  }}
  flush(cnt, tot, B);
  if (t0 < n && !(status & {STATUS_NONFINITE})) {{  // the last events, in a zero-padded tile
    const int m = (int)(n - t0);
    alignas(32) X pad[B * NI];
    alignas(32) {out_t} opad[B * NO];
    __builtin_memset(pad, 0, sizeof pad);
    __builtin_memcpy(pad, x + t0 * NI, sizeof(X) * NI * m);
    status |= tile(pad, opad, spad, cnt);
    __builtin_memcpy(out + t0 * NO, opad, sizeof({out_t}) * NO * m);
    if (score) __builtin_memcpy(score + t0, spad, sizeof(int64_t) * m);
    flush(cnt, tot, m);
  }}
  for (int c = 0; c < NC; c++) counts[c] = tot[c];
  return status;
}}""")
    return "\n".join(body)


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "".join(pad + ln if ln.strip() else ln for ln in text.splitlines(True))


# ---------------------------------------------------------------------- compile, cache, load
def cache_dir() -> Path:
    """Where compiled kernels are kept: $XDG_CACHE_HOME/l1ad/native, else ~/.cache/l1ad/native."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "l1ad" / "native"


def compiler() -> str | None:
    """The C++ compiler's path (g++ on PATH), or None."""
    return shutil.which("g++")


def _machine_tag(cxx: str) -> str:
    """What a compiled library depends on besides its source: the compiler binary and the CPU (-march=native)."""
    real = os.path.realpath(cxx)
    try:
        stt = os.stat(real)
        tag = f"{real}:{stt.st_size}:{stt.st_mtime_ns}"
    except OSError:
        tag = real
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            info = [ln for ln in f.read(1 << 16).splitlines() if ln.startswith(("model name", "flags"))]
        cpu += "|" + "|".join(sorted(set(info)))
    except OSError:
        pass
    return f"{tag}|{cpu}|{' '.join(FLAGS)}"


def _compile(source: str, cxx: str, *, timeout: float = 300) -> Path:
    """The cached library of `source`, compiled first when absent (written atomically: temp file, then rename)."""
    from l1ad.trigger.atomic import atomic_path

    key = hashlib.sha256((_machine_tag(cxx) + "\n" + source).encode()).hexdigest()[:24]
    so = cache_dir() / f"kernel-{key}.so"
    if so.is_file():
        return so
    try:
        so.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(so.parent, os.W_OK):
            raise PermissionError(so.parent)
    except OSError:  # no writable cache (a read-only home): this user's folder under the temp directory
        so = Path(tempfile.gettempdir()) / f"l1ad-native-{os.getuid() if hasattr(os, 'getuid') else 0}" / so.name
        if so.is_file():
            return so
        so.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="l1ad-native-") as d:
        cpp = Path(d) / f"kernel-{key}.cpp"
        cpp.write_text(source)
        with atomic_path(so, suffix=".so") as tmp:
            proc = subprocess.run([cxx, *FLAGS, "-o", str(tmp), str(cpp)], capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
                raise RuntimeError(f"compiling the native emulator kernel failed ({cxx} exit {proc.returncode}):\n{tail}")
    return so


@dataclass
class NativeKernel:
    """A loaded kernel: ``run(x, out, score, threads)`` fills the output codes (``out_dtype``) and score codes."""

    lib: Any
    path: Path
    names: tuple[str, ...]
    n_in: int
    n_out: int
    out_dtype: Any

    def _call(self, x: np.ndarray, out: np.ndarray, score: np.ndarray | None, counts: np.ndarray) -> int:
        fn = self.lib.l1ad_native_f32 if x.dtype == np.float32 else self.lib.l1ad_native_f64
        return int(fn(len(x), x.ctypes.data, out.ctypes.data, None if score is None else score.ctypes.data, counts.ctypes.data))

    def run(self, x: np.ndarray, out: np.ndarray, score: np.ndarray | None, threads: int = 1) -> tuple[int, dict[str, dict[str, int]]]:
        """x: C-contiguous (N, n_in) float32 or float64; out: (N, n_out) of out_dtype; score: (N,) int64 or None.
        Returns (status, stats): status bit STATUS_NONFINITE (NaN/inf seen), STATUS_FALLBACK (a value the NumPy path
        must handle; the outputs are then incomplete)."""
        n = len(x)
        k = max(1, min(int(threads), n // (4 * TILE) or 1))
        bounds = [round(n * i / k / TILE) * TILE for i in range(k)] + [n]
        counts = np.zeros((k, 2 * len(self.names)), dtype=np.int64)
        pieces = [(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

        def work(i: int) -> int:
            a, b = pieces[i]
            return self._call(x[a:b], out[a:b], None if score is None else score[a:b], counts[i])

        if k == 1:
            status = work(0)
        else:  # ctypes releases the GIL during each call
            with ThreadPoolExecutor(k) as ex:
                status = 0
                for s in ex.map(work, range(k)):
                    status |= s
        tot = counts.sum(axis=0)
        stats = {name: {"inexact": int(tot[2 * i]), "overflow": int(tot[2 * i + 1])} for i, name in enumerate(self.names)}
        return status, stats


def compiler_reason() -> str | None:
    """Why no kernel can be compiled here (no g++ on PATH), or None."""
    return None if compiler() else "g++ not found on PATH (the native kernel is compiled on first use)"


def kernel(q: QModel) -> NativeKernel | str:
    """q's loaded kernel (generated, compiled or found in the cache, loaded; then kept on q), or a reason string
    saying why there is none (an unsupported construct, no compiler, a failed build)."""
    cached = q.__dict__.get(_CACHE_KEY)
    if cached is not None:
        return cached
    reason = unsupported(q)
    cxx = compiler()
    if reason is None and cxx is None:
        return compiler_reason()  # (not kept: a compiler may appear later)
    if reason is None:
        try:
            so = _compile(generate_source(q), cxx)
            lib = ctypes.CDLL(str(so))
            for fn in (lib.l1ad_native_f32, lib.l1ad_native_f64):
                fn.restype = ctypes.c_int
                fn.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
            names = stat_names(q)
            shape = (ctypes.c_long * 3)()
            lib.l1ad_native_shape.restype = None
            lib.l1ad_native_shape(shape)
            if tuple(shape) != (q.n_inputs, q.n_outputs, 2 * len(names)):
                raise RuntimeError(f"{so}: the cached library does not match the model (delete it)")
            lay = _layout(q)
            cached = NativeKernel(lib, so, names, q.n_inputs, q.n_outputs, np.int32 if lay["out_t"] == "int32_t" else np.int64)
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            cached = f"the native kernel could not be built: {e}"
    else:
        cached = reason
    q.__dict__[_CACHE_KEY] = cached
    return cached


def loaded(q: QModel) -> bool:
    """Whether q's kernel is already loaded in this process (then it costs nothing to use it)."""
    return isinstance(q.__dict__.get(_CACHE_KEY), NativeKernel)
