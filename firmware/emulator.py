"""Bit-exact emulator of a QModel: pure integer ap_fixed semantics, vectorised with NumPy.

``emulate(qmodel, x)`` runs the IR's data flow (see firmware.ir) on integer codes. Matrix products use BLAS in
float32 or float64 only when a bound proves every product and every partial sum is an integer below 2**24 /
2**53 (so the float result is exact in any summation order); otherwise int64 (when every partial sum is below
2**62) and otherwise Python integers (object arrays). Accumulators narrower than exact follow the hls4ml order
(bias first, then inputs in index order, each product and partial sum converted to the accumulator format).

When the interval bounds prove every step exact in floats, "auto" runs the fused float path: per layer one GEMM
whose weights and bias carry the power-of-two rescaling to the output LSB, relu as v + |v| on the halved sum,
one rounding pass, one inexact count, a max/min check (skipped on a side the bounds prove safe) and a scatter
for the few values that overflow; the input's range follows from the scaled codes' max/min (the general check
only runs when that bound is not inside the format, or on NaN/inf); the last layer rounds straight into the
result, whose float codes become int64 when ``outputs_int`` is first read. Scratch buffers are reused per
worker thread (the layers rotate three). ``stage_profile`` times its stages.

Large inputs of dense models run instead on a compiled integer kernel (firmware.native: the same codes and
statistics, from C++ generated per model), when g++ is there; ``backend="numpy"`` keeps the NumPy paths.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .fixed import FixedFormat, apply_overflow, quantize_float, requantize
from .ir import QModel, _holds
from l1ad.trigger.errors import UserInputError

F32_EXACT = 1 << 24
F64_EXACT = 1 << 53
I64_SAFE = 1 << 62
DEFAULT_CHUNK = 1 << 12  # small chunks stay in cache: measured fastest (2-4k events)


class EmulatorInputError(UserInputError):
    """The emulator input is malformed (shape, NaN/inf, or off-grid / out of range with strict=True)."""


@dataclass
class EmulationResult:
    """Emulator output for N events.

    outputs_int: (N, n_out) int64 codes of the network output (``output_format``); ``outputs``: their real values.
    ``codes``: the same codes as the emulator wrote them (float32/float64 holding integers on the float path).
    score_int: (N,) score codes (``score_format``); ``score``: real values (both None without a score block).
    trigger: (N, n_thresholds) bool, bit k = score_int > thresholds[k].
    stats: per tensor {"inexact": values that lost fraction bits, "overflow": values the overflow mode changed};
    ``stats["input"]`` counts raw inputs off the input format's grid / out of its range.
    tensors: every intermediate's codes when ``emulate(..., keep=True)`` (names as in ``QModel.tensor_formats``:
    input, scaled, xq, <layer>.accum, <layer>.out, score.diff, score.square, score.accum), else empty.
    backends: the arithmetic used per layer ("native" compiled kernel, "float32"/"float64" float path, "f32"/"f64"
    exact BLAS, "i64", "object", "sequential").
    """

    codes: np.ndarray = field(repr=False)  # the output codes as computed (float or int32 codes, int64, object)
    score_int: np.ndarray | None
    trigger: np.ndarray
    output_format: FixedFormat
    score_format: FixedFormat | None
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    backends: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @property
    def outputs_int(self) -> np.ndarray:
        """(N, n_out) int64 codes of the network output (object beyond 62 bits). The float path stores them as
        float codes (exact integers), the native kernel as int32 when they fit; they are converted on first read
        (only a reader pays that copy), then kept."""
        if self.codes.dtype.kind == "f" or self.codes.dtype in (np.int8, np.int16, np.int32):
            self.codes = self.codes.astype(np.int64)
        return self.codes

    @property
    def outputs(self) -> np.ndarray:
        """Real values of the network output (float64; exact for formats up to 53 bits)."""
        return self.output_format.to_float(self.codes)

    @property
    def score(self) -> np.ndarray | None:
        """Real values of the score (float64; exact for formats up to 53 bits)."""
        return None if self.score_int is None else self.score_format.to_float(self.score_int)

    @property
    def xq_int(self) -> np.ndarray:
        """Codes of the quantized network input (needs keep=True)."""
        return self._kept("xq")

    @property
    def input_int(self) -> np.ndarray:
        """Codes of the raw input in the input format (needs keep=True)."""
        return self._kept("input")

    def _kept(self, name: str) -> np.ndarray:
        if name not in self.tensors:
            raise KeyError(f"tensor {name!r} was not kept: call emulate(..., keep=True)")
        return self.tensors[name]

    @property
    def n_overflow(self) -> int:
        """Total number of values changed by an overflow mode anywhere after the raw input."""
        return sum(v["overflow"] for k, v in self.stats.items() if k != "input")


# ---------------------------------------------------------------------- compiled plan
@dataclass
class _LayerPlan:
    name: str
    in_fmt: FixedFormat
    w_fmt: FixedFormat
    acc_fmt: FixedFormat
    out_fmt: FixedFormat
    prod_fmt: FixedFormat
    exact: bool
    backend: str
    w_num: Any  # weights in the matmul dtype
    w_int: np.ndarray  # integer weights (int64 or object)
    shift_p: int  # product codes -> exact accumulator frac
    bias_exact: Any  # bias codes at the exact accumulator frac (int64 or object)
    bias_code: np.ndarray  # raw bias codes
    bias_fmt: FixedFormat
    frac_exact: int
    relu: bool
    dot_bound: int = 0  # bound on any partial sum of the integer dot product (product LSB)
    part_bound: int = 0  # bound on any partial sum incl. bias (exact accumulator LSB)
    max_w: int = 0
    diag: bool = False  # an affine layer: the product is elementwise (w_* hold the diagonal), not a matrix product
    gather: Any = None  # a max pooling layer: (n_out, N) input indices of each window (no products; integer path)


def _mul(p: _LayerPlan, a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The layer's product stage: a matrix product (dense) or an elementwise one (affine: w is the diagonal)."""
    return a * w[None, :] if p.diag else a @ w


# per layer kind: how its integer weights enter the plan (the dense view, or the diagonal of an affine layer)
_PLAN_WEIGHTS = {
    "dense": lambda L: (L, L.weights, False),
    "affine": lambda L: (L, L.scale, True),
    "conv": lambda L: (L.dense_view(), L.dense_view().weights, False),  # the lowered matrix: one GEMM per layer
    # average pooling: its dense view (weights 2**-k); max pooling: no weights, the window's max (see _dense)
    "pool": lambda L: (L.dense_view(), L.dense_view().weights, False) if L.mode == "avg" else (L, None, False),
}


BACKENDS = ("auto", "native", "numpy", "int", "i64", "object")


def _plan(q: QModel, force: str = "auto") -> dict[str, Any]:
    key = f"_emu_plan_{force}"
    cached = q.__dict__.get(key)
    if cached is not None:
        return cached
    bounds = q.tensor_bounds()
    layers = []
    in_fmt = q.input_quantizer
    in_b = bounds["xq"]
    for i, L in enumerate(q.layers):
        if L.kind not in _PLAN_WEIGHTS:
            raise EmulatorInputError(f"layer {L.name}: the emulator has no handler for layer kind {L.kind!r}")
        L, W, diag = _PLAN_WEIGHTS[L.kind](L)
        if W is None:  # max pooling: exact at the input LSB (the accumulator holds it); the float path skips the model
            layers.append(_LayerPlan(L.name, in_fmt, L.weight_format, L.accum_format, L.output_format, L.product_format,
                                     True, "max", None, np.zeros((0, 0), dtype=np.int64), 0, None, L.bias, L.bias_format,
                                     in_fmt.frac, L.activation == "relu", gather=L.gather_index()))
            in_b, in_fmt = bounds[f"{L.name}.out"], L.output_format
            continue
        ab = L.accum_bounds(in_b[0], in_b[1], in_fmt)
        amax = [max(abs(a), abs(b)) for a, b in zip(*in_b)]
        wl = [[abs(int(v)) for v in row] for row in L.weights.tolist()]
        # bound on any partial sum of the integer dot product (at the product frac), any order
        m = max((sum(amax[i2] * wl[i2][j] for i2 in range(L.n_in)) for j in range(L.n_out)), default=0)
        max_w = max((max(r) for r in wl), default=0)
        if max(amax, default=0) < F32_EXACT and max_w < F32_EXACT and m < F32_EXACT:
            backend = "f32"
        elif max(amax, default=0) < F64_EXACT and max_w < F64_EXACT and m < F64_EXACT:
            backend = "f64"
        elif m < I64_SAFE:
            backend = "i64"
        else:
            backend = "object"
        if force == "object" or (force == "i64" and backend in ("f32", "f64")):
            backend = force
        fp = in_fmt.frac + L.weight_format.frac
        fa = ab["frac"]
        exact = _holds(L.accum_format, ab["part_lo"], ab["part_hi"], fa)
        big = (max(max(abs(v) for v in ab["part_lo"]), max(abs(v) for v in ab["part_hi"])) >= I64_SAFE)
        w_int = W.astype(object) if (backend == "object" or big) else W.astype(np.int64)
        w_num = {"f32": np.float32, "f64": np.float64}.get(backend)
        w_num = W.astype(np.float64).astype(w_num) if w_num else w_int
        b_ex = [int(v) << (fa - L.bias_format.frac) for v in L.bias.tolist()]
        bias_exact = np.array(b_ex, dtype=object if (big or backend == "object") else np.int64)
        part_bound = max(max(abs(v) for v in ab["part_lo"]), max(abs(v) for v in ab["part_hi"]))
        layers.append(_LayerPlan(
            name=L.name, in_fmt=in_fmt, w_fmt=L.weight_format, acc_fmt=L.accum_format, out_fmt=L.output_format,
            prod_fmt=L.product_format, exact=exact, backend=backend if exact else "sequential", w_num=w_num, w_int=w_int,
            shift_p=fa - fp, bias_exact=bias_exact, bias_code=L.bias, bias_fmt=L.bias_format, frac_exact=fa,
            relu=L.activation == "relu", dot_bound=m, part_bound=part_bound, max_w=max_w, diag=diag,
        ))
        in_b = bounds[f"{L.name}.out"]
        in_fmt = L.output_format
    sub, lsh = q.input.scaled_code_params()
    plan = {
        "layers": layers,
        "score": q.score_analysis() if q.score is not None else None,
        "identity_scaling": q.input.is_identity and q.scaled_format == q.input.format,
        "sub": sub, "lsh": lsh,
        "gate": None if (q.score is None or q.score.gate is None) else np.asarray(q.score.gate, dtype=np.int64),
        "thresholds": np.array(q.thresholds, dtype=object if any(abs(t) >= I64_SAFE for t in q.thresholds) else np.int64),
    }
    if plan["gate"] is not None:  # gather each distinct gate feature once, then expand
        src, idx = np.unique(plan["gate"], return_inverse=True)
        plan["gate_src"], plan["gate_idx"] = src, idx
    plan["zero_offset"] = all(int(v) == 0 for v in sub)
    g = plan["gate"]
    plan["gate_block"] = None
    if g is not None:
        for k in (3, 2, 4, 1):
            if len(g) % k == 0 and all(int(g[j]) == k * (j // k) for j in range(len(g))):
                plan["gate_block"] = k
                break
    n_sc = q.n_outputs if (q.score is not None and q.score.kind == "mu2") else q.n_inputs
    plan["ones_in"] = np.ones(n_sc)
    plan["ones_obj"] = np.ones(n_sc // plan["gate_block"]) if plan["gate_block"] else None
    plan["sub_f"] = np.array([float(v) for v in sub], dtype=np.float64) if all(abs(int(v)) < F64_LIM for v in sub) else None
    plan["float"] = _float_plan(q, plan) if (force == "auto" and plan["sub_f"] is not None) else None
    q.__dict__[key] = plan
    return plan


def _rq(codes: np.ndarray, src: FixedFormat, dst: FixedFormat, stats: dict, name: str) -> np.ndarray:
    """requantize with statistics; a no-op when dst holds src exactly at the same LSB."""
    if src.frac == dst.frac and dst.contains_format(src):
        st = stats.setdefault(name, {"inexact": 0, "overflow": 0})
        out = codes
        if dst.int64_ok and codes.dtype == object:
            out = codes.astype(np.int64)
        return out
    out, n_in, n_ov = requantize(codes, src, dst)
    st = stats.setdefault(name, {"inexact": 0, "overflow": 0})
    st["inexact"] += n_in
    st["overflow"] += n_ov
    return out


def _dense(p: _LayerPlan, a: np.ndarray, stats: dict) -> np.ndarray:
    """Accumulator codes of one dense layer (exact path or hls4ml-sequential path), or of a max pooling layer."""
    if p.gather is not None:
        acc = a[:, p.gather].max(axis=2) << (p.acc_fmt.frac - p.frac_exact)
        stats.setdefault(f"{p.name}.accum", {"inexact": 0, "overflow": 0})
        return acc
    if p.backend in ("f32", "f64"):
        dt = np.float32 if p.backend == "f32" else np.float64
        acc = _mul(p, a.astype(dt), p.w_num)
        acc = acc.astype(np.int64)
    elif p.backend == "i64" and a.dtype != object:
        acc = _mul(p, a.astype(np.int64), p.w_int)
    elif p.backend == "sequential":
        return _dense_sequential(p, a, stats)
    else:
        acc = _mul(p, a.astype(object), p.w_int.astype(object))
    if p.bias_exact.dtype == object and acc.dtype != object:
        acc = acc.astype(object)
    if p.shift_p:
        acc = acc << p.shift_p
    acc = acc + p.bias_exact
    # exact accumulator at frac_exact -> the configured accumulator (holds it exactly: only the LSB may differ)
    shift = p.frac_exact - p.acc_fmt.frac
    if shift:
        acc = acc << (-shift) if shift < 0 else acc >> shift  # shift > 0 cannot happen when exact
    stats.setdefault(f"{p.name}.accum", {"inexact": 0, "overflow": 0})
    if p.acc_fmt.int64_ok and acc.dtype == object:
        acc = acc.astype(np.int64)
    return acc


def _dense_sequential(p: _LayerPlan, a: np.ndarray, stats: dict) -> np.ndarray:
    """hls4ml order: acc = (accum_t) bias; for i: acc = (accum_t)(acc + (accum_t)(in_i * w_ij))."""
    name = f"{p.name}.accum"
    st = stats.setdefault(name, {"inexact": 0, "overflow": 0})
    n = a.shape[0]
    bq, b_inexact, b_ovf = requantize(np.asarray(p.bias_code), p.bias_fmt, p.acc_fmt)
    st["inexact"] += b_inexact * n  # the bias conversion happens once per event
    st["overflow"] += b_ovf * n
    acc = np.array(np.broadcast_to(bq, (n, p.bias_code.shape[0])))
    wide = FixedFormat(p.acc_fmt.width + 2, p.acc_fmt.integer + 2, True)  # holds any sum of two accumulator values
    use_obj = (a.dtype == object or p.w_int.dtype == object or not p.acc_fmt.int64_ok
               or p.prod_fmt.width > 62 or wide.width > 62)
    ai = a.astype(object) if use_obj else a.astype(np.int64)
    wi = p.w_int.astype(object) if use_obj else p.w_int.astype(np.int64)
    if use_obj:
        acc = acc.astype(object)
    for i in range(wi.shape[0]):
        prod = ai[:, i:i + 1] * wi[i][None, :]
        pq = _rq(prod, p.prod_fmt, p.acc_fmt, stats, name)
        s = acc + pq
        before = st["overflow"]
        acc = apply_overflow(s, p.acc_fmt)
        st["overflow"] = before + int(np.count_nonzero((s < p.acc_fmt.min_code) | (s > p.acc_fmt.max_code)))
    return acc


def _out_score(q: QModel, h: np.ndarray, stats: dict) -> np.ndarray:
    """Score kind "out": the single output's codes requantized to the score format."""
    col = np.asarray(h[:, 0])
    if col.dtype.kind == "f":
        col = col.astype(np.int64)
    return _rq(col, q.output_format, q.score.format, stats, "score")


def _square_sum(q: QModel, plan: dict, xq: np.ndarray, out: np.ndarray, xin: np.ndarray, stats: dict, keep: dict | None) -> np.ndarray:
    sc = q.score
    if sc.kind == "out":
        return _out_score(q, out, stats)
    an = plan["score"]
    if sc.kind == "mse":
        xf, of, ed = q.input_quantizer, q.output_format, an["exact_diff"]
        fd = ed.frac
        if ed.width > 62:
            xq, out = xq.astype(object), out.astype(object)
        d = (xq << (fd - xf.frac)) - (out << (fd - of.frac))
        d = _rq(d, ed, sc.diff_format, stats, "score.diff")
        if keep is not None:
            keep.setdefault("score.diff", []).append(d)
    else:
        d = out
    es = an["exact_square"]
    if es.width > 62 and d.dtype != object:
        d = d.astype(object)
    sq = _rq(d * d, es, sc.square_format, stats, "score.square")
    if plan["gate"] is not None:
        sq = np.where(xin[:, plan["gate"]] > 0, sq, 0)
        if sq.dtype == object and sc.square_format.int64_ok:
            sq = sq.astype(np.int64)
    if keep is not None:
        keep.setdefault("score.square", []).append(sq)
    acc_f, sqf = sc.accum_format, sc.square_format
    if an["accum_ok"]:
        if not an["exact_accum"].int64_ok and sq.dtype != object:
            sq = sq.astype(object)
        s = sq.sum(axis=1)
        if acc_f.frac != sqf.frac:
            s = s << (acc_f.frac - sqf.frac)
        if acc_f.int64_ok and s.dtype == object:
            s = s.astype(np.int64)
        stats.setdefault("score.accum", {"inexact": 0, "overflow": 0})
    else:  # hls4ml order with a narrow accumulator: acc = 0; for j: acc = (accum_t)(acc + (accum_t) sq_j)
        name = "score.accum"
        st = stats.setdefault(name, {"inexact": 0, "overflow": 0})
        s = np.zeros(sq.shape[0], dtype=object if acc_f.width + 2 > 62 else np.int64)
        for j in range(sq.shape[1]):
            t = _rq(sq[:, j], sqf, acc_f, stats, name)
            u = s + t
            st["overflow"] += int(np.count_nonzero((u < acc_f.min_code) | (u > acc_f.max_code)))
            s = apply_overflow(u, acc_f)
    if keep is not None:
        keep.setdefault("score.accum", []).append(s)
    return _rq(s, acc_f, sc.format, stats, "score")


class _NonFinite(Exception):
    """Raised by a chunk that holds NaN/inf; emulate() then scans the whole input for the user's message."""


def _raise_nonfinite(a: np.ndarray) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise EmulatorInputError(f"emulator input has NaN/inf in {len(rows)} event(s) (first: row {rows[0]}, "
                                 f"column {int(np.flatnonzero(bad[rows[0]])[0])})")


def _check_x(q: QModel, x: Any, *, scan: bool = True) -> np.ndarray:
    """Shape and dtype checks; NaN/inf too unless ``scan=False`` (the float path checks each chunk instead:
    one pass over the input fewer)."""
    try:
        a = np.asarray(x)
    except Exception as e:  # pragma: no cover
        raise EmulatorInputError(f"emulator input is not array-like: {e}") from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        raise EmulatorInputError(f"emulator input must be a numeric array, got dtype {a.dtype}")
    n_in = q.n_inputs
    if a.ndim == 3 and a.shape[1] * a.shape[2] == n_in:
        a = a.reshape(a.shape[0], n_in)
    if a.ndim != 2 or a.shape[1] != n_in:
        raise EmulatorInputError(f"emulator input must have shape (N, {n_in}), got {a.shape}")
    if scan and np.issubdtype(a.dtype, np.floating) and a.size and not (np.isfinite(a.min()) and np.isfinite(a.max())):
        _raise_nonfinite(a)  # min/max propagate NaN and show inf: the full mask only when one is there
    return a


# ---------------------------------------------------------------------- float fast path (fused passes)
F64_LIM = 1 << 52  # codes below this (and shifts <= 50) keep every float64 step below exact (incl. t +- 0.5)
F32_LIM = 1 << 23
MAX_SHIFT64, MAX_SHIFT32 = 50, 22


@dataclass
class _FLayer:
    """One dense layer of the float path. ``w``/``b`` are the integer weights and bias codes times 2**e, chosen
    so that ``h @ w + b`` is directly the pre-rounding value in units of the output LSB (halved for relu, which
    is then v + |v|): the power-of-two factor changes no significand, so the integer bound still proves it exact."""

    p: _LayerPlan
    dt: Any
    w: np.ndarray
    b: np.ndarray
    s: int  # accumulator -> output fraction bits dropped (> 0: round)
    acc_mul: float  # GEMM result -> accumulator codes (for keep=True)
    check_lo: bool  # the output can fall below its minimum (else that check is skipped)
    check_hi: bool = True  # the output can exceed its maximum (the interval bounds may prove it cannot)
    requant: bool = True  # False: the output format holds the accumulator exactly (no rounding, no overflow pass)


def _float_plan(q: QModel, plan: dict) -> dict | None:
    """Decide whether the whole model can run on float arrays holding integer codes, exactly: every tensor
    format, every partial sum and every rounding step below 2**52 (float32 layers: below 2**23), every
    accumulator exact. Returns the compiled float layers and input stage, or None (then the integer path runs)."""
    fmts = [q.input.format, q.scaled_format, q.input_quantizer] + [f for L in q.layers for f in (L.accum_format, L.output_format)]
    if any(f.width > 52 for f in fmts):
        return None
    s_xq = q.scaled_format.frac - q.input_quantizer.frac
    if s_xq > MAX_SHIFT64 or any(abs(int(k) - s_xq) > 1000 for k in plan["lsh"]):
        return None
    layers = []
    in_w = q.input_quantizer.width
    bounds = q.tensor_bounds()
    for p in plan["layers"]:
        if p.backend not in ("f32", "f64", "i64") or not p.exact:
            return None
        m = max(p.dot_bound, p.part_bound)
        s_out = p.acc_fmt.frac - p.out_fmt.frac
        k = p.acc_fmt.frac - p.frac_exact
        if m >= F64_LIM or k > 50 or k < 0 or s_out > MAX_SHIFT64 or s_out < -MAX_SHIFT64:
            return None
        f32 = (m < F32_LIM and p.part_bound << k < F32_LIM and in_w <= 23 and p.acc_fmt.width <= 23
               and p.out_fmt.width <= 23 and s_out <= MAX_SHIFT32 and p.max_w < F32_LIM)
        dt = np.float32 if f32 else np.float64
        e = k - s_out - (1 if p.relu else 0)  # accumulator LSB -> output LSB (relu: half of it)
        w = np.array([float(v) for v in p.w_int.ravel().tolist()], dtype=np.float64).reshape(p.w_int.shape) * 2.0 ** (p.shift_p + e)
        b = np.array([float(v) for v in p.bias_exact.tolist()], dtype=np.float64) * 2.0 ** e
        of = p.out_fmt
        lo_ok, hi_ok = _fits(bounds[f"{p.name}.accum"], p.frac_exact, of, p.relu)
        layers.append(_FLayer(p, dt, w.astype(dt), b.astype(dt), s_out, 2.0 ** (s_out + (1 if p.relu else 0)),
                              (not p.relu or of.min_code > 0) and not lo_ok, not hi_ok,
                              not (s_out <= 0 and of.contains_format(p.acc_fmt))))
        in_w = of.width
    sa = plan["score"]
    if sa is not None and q.score.kind == "out":
        sa = None  # the output column is requantized on the integer path (one column: no float plan needed)
    if sa is not None:
        sc = q.score
        steps = [sa["exact_square"], sc.square_format, sa["exact_accum"], sc.accum_format, sc.format]
        if sc.kind == "mse":
            steps += [sa["exact_diff"], sc.diff_format]
            if sa["exact_diff"].frac - sc.diff_format.frac > MAX_SHIFT64:
                return None
        if any(f.width > 52 for f in steps) or not sa["accum_ok"]:
            return None
        if sa["exact_square"].frac - sc.square_format.frac > MAX_SHIFT64 or sc.accum_format.frac - sc.format.frac > MAX_SHIFT64:
            return None
    qi, sfm = q.input_quantizer, q.scaled_format
    in32 = (q.input.format.width <= 23 and sfm.width <= 23 and qi.width <= 23 and abs(s_xq) <= MAX_SHIFT32
            and all(abs(int(v)) < F32_LIM for v in plan["sub"]) and all(-100 < int(k) - s_xq < 100 for k in plan["lsh"]))
    in_dt = np.float32 if in32 else np.float64
    score_f32 = False
    if sa is not None and in_dt == np.float32 and layers[-1].dt == np.float32:
        sc, es = q.score, sa["exact_square"]
        sq_noop = es.frac == sc.square_format.frac and sc.square_format.contains_format(es)
        if sc.kind == "mse":
            ed = sa["exact_diff"]
            d_ok = ed.width <= 23 and 0 <= ed.frac - sc.diff_format.frac <= MAX_SHIFT32
        else:
            d_ok = q.output_format.width <= 23
        score_f32 = d_ok and sq_noop and es.width <= 24  # squares below 2**24: exact float32 products
    xq_mul = np.array([2.0 ** (int(k) - s_xq) for k in plan["lsh"]], dtype=np.float64).astype(in_dt)
    score_mul = None
    if sa is not None:  # ones vector that sums the squares and rescales them to the score LSB (before rounding)
        sc = q.score
        score_mul = 2.0 ** (sc.accum_format.frac - sc.square_format.frac - (sc.accum_format.frac - sc.format.frac))
    xq_lo_ok, xq_hi_ok = _fits(bounds["scaled"], sfm.frac, qi, False)
    lsh = np.array([float(int(k) - s_xq) for k in plan["lsh"]])
    return {"layers": layers, "in_dt": in_dt, "layer_dt": [L.dt for L in layers], "s_xq": s_xq, "xq_mul": xq_mul,
            **_score_requant(q, sa),
            "stat_names": ("input", "xq", *(f"{L.p.name}.{k}" for L in layers for k in ("accum", "out"))),
            "xq_requant": not (s_xq <= 0 and qi.contains_format(sfm)), "xq_check_lo": not xq_lo_ok, "xq_check_hi": not xq_hi_ok,
            # raw input from the scaled input's extremes: x = xs * 2**-lsh + sub per column (bounds, see _input_stage)
            "inv_mul": (2.0 ** -lsh.max(), 2.0 ** -lsh.min()) if len(lsh) else (1.0, 1.0),
            "sub_lo_hi": (float(min(plan["sub_f"], default=0.0)), float(max(plan["sub_f"], default=0.0))),
            "sub": plan["sub_f"].astype(in_dt), "score_f32": score_f32, "ones_in": None if score_mul is None else plan["ones_in"] * score_mul,
            "ones_obj": None if (score_mul is None or plan["ones_obj"] is None) else plan["ones_obj"] * score_mul}


def _score_requant(q: QModel, sa: dict | None) -> dict[str, bool]:
    """Which score stages change their values (else the float path skips them): exact -> configured formats."""
    if sa is None:
        return {"diff_requant": False, "square_requant": False, "score_requant": False}
    sc = q.score
    ed, es = sa.get("exact_diff"), sa["exact_square"]
    return {"diff_requant": sc.kind == "mse" and not (ed.frac == sc.diff_format.frac and sc.diff_format.contains_format(ed)),
            "square_requant": not (es.frac == sc.square_format.frac and sc.square_format.contains_format(es)),
            "score_requant": not (sc.accum_format.frac == sc.format.frac and sc.format.contains_format(sc.accum_format))}


def _fits(b: tuple[list[int], list[int]], frac: int, fmt: FixedFormat, relu: bool) -> tuple[bool, bool]:
    """Whether values within the per-feature code bounds b (at frac), after relu and any rounding to fmt's LSB,
    provably stay >= fmt's minimum (SAT_SYM: above it) and <= its maximum: then that overflow check is skipped."""
    lo, hi = min(b[0], default=0), max(b[1], default=0)
    if relu:
        lo, hi = max(lo, 0), max(hi, 0)
    sh = frac - fmt.frac
    if sh > 0:  # any rounding mode lands between floor and ceil
        lo, hi = lo >> sh, -((-hi) >> sh)
    else:
        lo, hi = lo << -sh, hi << -sh
    sym = fmt.overflow == "SAT_SYM" and fmt.signed
    return (lo > fmt.min_code if sym else lo >= fmt.min_code), hi <= fmt.max_code


def _fround_into(t: np.ndarray, mode: str, out: np.ndarray) -> np.ndarray:
    """Round float codes t (exact integers / 2**s, |t| * 2**s < 2**52, s <= 50; float32: 2**23, s <= 22) to
    integers with an ap_fixed mode, into out (t is left unchanged). Every intermediate (|t| +- 0.5) is exact."""
    if mode == "RND_CONV":
        return np.rint(t, out=out)
    if mode == "TRN":
        return np.floor(t, out=out)
    if mode == "TRN_ZERO":
        return np.trunc(t, out=out)
    if mode == "RND":
        np.add(t, 0.5, out=out)
        return np.floor(out, out=out)
    if mode == "RND_MIN_INF":
        np.subtract(t, 0.5, out=out)
        return np.ceil(out, out=out)
    if mode in ("RND_INF", "RND_ZERO"):  # half away from / toward zero on |t|, then the sign back
        np.abs(t, out=out)
        if mode == "RND_INF":
            np.add(out, 0.5, out=out)
            np.floor(out, out=out)
        else:
            np.subtract(out, 0.5, out=out)
            np.ceil(out, out=out)
        return np.copysign(out, t, out=out)
    raise ValueError(mode)


def _fsat(r: np.ndarray, fmt: FixedFormat, st: dict, mask: np.ndarray, *, check_lo: bool = True, check_hi: bool = True,
          extremes: tuple[float, float] | None = None) -> np.ndarray:
    """Apply fmt's overflow mode in place to float codes r at fmt's LSB; counts the values it changes. A side
    the caller proved safe is not checked (check_lo/check_hi False); ``extremes``: r's (min, max) if known."""
    if r.size == 0 or not (check_lo or check_hi):
        return r
    lo, hi = float(fmt.min_code), float(fmt.max_code)
    sym = fmt.overflow == "SAT_SYM" and fmt.signed
    mn, mx = extremes if extremes is not None else (r.min() if check_lo else 0.0, r.max() if check_hi else 0.0)
    over = check_hi and mx > hi
    under = check_lo and (mn <= lo if sym else mn < lo)
    if not (over or under):
        return r
    ov = fmt.overflow
    if not r.flags.c_contiguous:  # (never in the float path's own buffers) whole-array passes
        bad = (r <= lo if sym else r < lo) if under else np.zeros(r.shape, dtype=bool)
        if over:
            bad |= r > hi
        st["overflow"] += int(np.count_nonzero(bad))
        if ov in ("SAT", "SAT_SYM"):
            np.minimum(r, hi, out=r)
            np.maximum(r, -hi if sym else lo, out=r)
        elif ov == "SAT_ZERO":
            np.copyto(r, 0.0, where=bad)
        else:
            r[bad] = _fwrap(r[bad], fmt)
        return r
    # few values overflow: fix only those, side by side (a gather/scatter instead of full minimum/maximum passes;
    # a value fixed on one side lands in range, so the other side's mask does not count it again)
    flat = r.reshape(-1)
    if over:
        _fix(flat, np.flatnonzero(np.greater(r, hi, out=mask)), hi, fmt, st)
    if under:
        _fix(flat, np.flatnonzero(np.less_equal(r, lo, out=mask) if sym else np.less(r, lo, out=mask)), -hi if sym else lo, fmt, st)
    return r


def _fix(flat: np.ndarray, idx: np.ndarray, edge: float, fmt: FixedFormat, st: dict) -> None:
    """The overflow mode on the values at idx (all beyond one edge of fmt); counts them."""
    st["overflow"] += len(idx)
    if fmt.overflow == "SAT_ZERO":
        flat[idx] = 0.0
    elif fmt.overflow == "WRAP":
        flat[idx] = _fwrap(flat[idx], fmt)
    else:
        flat[idx] = edge


def _fwrap(v: np.ndarray, fmt: FixedFormat) -> np.ndarray:
    """Two's complement wrap of float codes: exact, every term is an integer below 2**52 (float32: 2**24)."""
    lo, m = float(fmt.min_code), 2.0 ** fmt.width
    return v - m * np.floor((v - lo) / m)


def _fq(t: np.ndarray, s: int, fmt: FixedFormat, st: dict, out: np.ndarray, mask: np.ndarray, *, check_lo: bool = True,
        check_hi: bool = True, ws: _Work | None = None) -> np.ndarray:
    """Float codes t, already in units of fmt's LSB, with s fraction bits to drop (s <= 0: t is integer) ->
    fmt's codes (its rounding, then its overflow mode), into out when rounding; counts inexact and overflowed values."""
    if s > 0:
        r = _fround_into(t, fmt.rounding, out)
        if ws is not None:
            ws.tick("layers: rounding")
        st["inexact"] += int(np.count_nonzero(np.not_equal(t, r, out=mask)))
        if ws is not None:
            ws.tick("layers: inexact count")
    else:
        r = t
    r = _fsat(r, fmt, st, mask, check_lo=check_lo, check_hi=check_hi)
    if ws is not None:
        ws.tick("layers: overflow check and saturation")
    return r


class _Work:
    """Per-thread scratch buffers for chunks of up to `n` events (allocated once, reused for every chunk). The
    layers share three rotating buffers (the working set stays small: it lives in cache between passes)."""

    def __init__(self, q: QModel, plan: dict, fplan: dict, n: int, profile: dict | None = None):
        in_dt = fplan["in_dt"]
        self.n = n
        self.profile = profile  # stage -> seconds, when profiling (see stage_profile)
        self.t0 = 0.0
        self.x = np.empty((n, q.n_inputs), dtype=in_dt)
        self.xq = np.empty((n, q.n_inputs), dtype=in_dt)
        self.xmask = np.empty((n, q.n_inputs), dtype=bool)
        self.grid = np.empty((n, q.n_inputs), dtype=np.float32)
        widths = [L.p.w_int.shape[-1] for L in fplan["layers"]]
        big = np.float64 if any(L.dt == np.float64 for L in fplan["layers"]) else np.float32
        self.rot = [np.empty(n * max(widths), dtype=big) for _ in range(3)]  # flat: viewed per layer shape/dtype
        self.flat_mask = np.empty(n * max(widths), dtype=bool)
        self.bias = [np.tile(L.b, (n, 1)) for L in fplan["layers"]]  # a contiguous add is 2x a broadcast one
        self._views: dict[int, list] = {}
        n_sc = q.n_outputs if (q.score is not None and q.score.kind == "mu2") else q.n_inputs
        self.d = np.empty((n, n_sc), dtype=np.float64)
        self.d2 = np.empty((n, n_sc), dtype=np.float64)
        self.f = np.empty((n, n_sc), dtype=np.float32)
        self.f2 = np.empty((n, n_sc), dtype=np.float32)
        self.dmask = np.empty((n, n_sc), dtype=bool)
        self.s = np.empty(n, dtype=np.float64)
        self.s2 = np.empty(n, dtype=np.float64)
        self.smask = np.empty(n, dtype=bool)
        nobj = n_sc // plan["gate_block"] if plan["gate_block"] else 1
        self.obj = np.empty((n, nobj), dtype=np.float64)
        self.omask = np.empty((n, nobj), dtype=bool)
        self._layers = fplan["layers"]

    def views(self, m: int) -> list:
        """Per layer (t, u, mask, bias) for a chunk of m events: t and u are the two rotating buffers that do not
        hold the layer's input (computed once per chunk length)."""
        v = self._views.get(m)
        if v is None:
            v, held = [], -1  # index of the rotating buffer holding the current input (-1: the input stage's)
            for i, L in enumerate(self._layers):
                k = L.p.w_int.shape[-1]
                ti, ui = [j for j in range(3) if j != held][:2]
                t, u = _typed(self.rot[ti], L.dt, m, k), _typed(self.rot[ui], L.dt, m, k)
                v.append((t, u, self.flat_mask[:m * k].reshape(m, k), self.bias[i][:m]))
                held = ui if (L.requant and L.s > 0) else ti  # where _fq leaves the layer's output
            self._views[m] = v
        return v

    def tick(self, stage: str) -> None:
        """Charge the thread's CPU time since the previous tick to `stage` (profiling only; otherwise nothing)."""
        if self.profile is not None:
            t = time.thread_time()
            self.profile[stage] = self.profile.get(stage, 0.0) + t - self.t0
            self.t0 = t


def _typed(flat: np.ndarray, dt: Any, m: int, k: int) -> np.ndarray:
    """A (m, k) array of dtype dt over the storage of the flat float64 buffer (float32 views use its first half)."""
    return flat.view(dt)[:m * k].reshape(m, k)


def _input_codes(q: QModel, xa: np.ndarray, st: dict, strict: bool, ws: _Work) -> np.ndarray:
    """Raw inputs -> float codes of the input format (fast check: already on the grid and in range)."""
    fin = q.input.format
    xs = xa if fin.frac == 0 else np.asarray(xa, dtype=np.float64) * (2.0 ** fin.frac)
    on_grid = xs.size > 0 and xs.dtype.kind == "f"
    if on_grid:
        mn, mx = xs.min(), xs.max()  # NaN propagates; both finite and in range, then the grid check
        if not (np.isfinite(mn) and np.isfinite(mx)) and not (np.isfinite(xa.min()) and np.isfinite(xa.max())):
            raise _NonFinite  # (the scaling alone may overflow a finite input to inf: that one is only off range)
        on_grid = bool((xs.dtype != np.float32 or fin.width <= 24) and np.isfinite(mn) and np.isfinite(mx)
                       and mn >= fin.min_code and mx <= fin.max_code)
    if on_grid:
        fl = ws.grid[:len(xs)] if (xs.dtype == ws.grid.dtype and xs.flags.c_contiguous) else np.empty_like(xs)
        np.floor(xs, out=fl)
        on_grid = not np.not_equal(fl, xs, out=ws.xmask[:len(xs)]).any()
    if on_grid:
        return xs
    codes, n_inexact, n_ovf = quantize_float(xa, fin)
    st["inexact"] += n_inexact
    st["overflow"] += n_ovf
    if strict and (n_inexact or n_ovf):
        raise EmulatorInputError(f"{n_inexact} input value(s) off the grid of {fin} and {n_ovf} out of its range (strict=True)")
    return codes.astype(np.float64)


def _scale_input(plan: dict, fplan: dict, xin: np.ndarray, x: np.ndarray) -> None:
    """Input codes -> scaled codes in units of the quantizer's LSB (offsets and shifts), into x."""
    in_dt = fplan["in_dt"]
    if plan["identity_scaling"] and fplan["s_xq"] == 0:
        np.copyto(x, xin, casting="unsafe")
    elif plan["zero_offset"]:
        np.multiply(xin, fplan["xq_mul"], out=x, dtype=in_dt, casting="unsafe")
    else:
        np.subtract(xin, fplan["sub"], out=x, dtype=in_dt, casting="unsafe")
        x *= fplan["xq_mul"]


def _input_stage(q: QModel, plan: dict, fplan: dict, xa: np.ndarray, stats: dict, strict: bool, ws: _Work,
                 kept: dict | None):
    """Raw inputs -> (input codes, quantized input codes), both float. Fast case (float input of the path's dtype
    on an integer grid, no rounding to the quantizer): the grid check, the scaling, then one max and one min of
    the scaled codes, which bound the raw input too (x = xs * 2**-lsh + sub per column); only when that bound
    is not inside the input format does the general check run (NaN/inf, range, rounding) and the scaling again."""
    m = len(xa)
    x = ws.x[:m]
    fin, qi = q.input.format, q.input_quantizer
    if (m and fin.frac == 0 and xa.dtype == fplan["in_dt"] and xa.flags.c_contiguous and fplan["s_xq"] <= 0
            and (xa.dtype != np.float32 or fin.width <= 24)):
        fl = ws.grid[:m] if xa.dtype == np.float32 else np.empty_like(xa)
        np.floor(xa, out=fl)
        on_grid = not np.not_equal(fl, xa, out=ws.xmask[:m]).any()  # NaN is off the grid: the general path sees it
        ws.tick("input: grid check")
        if on_grid:
            _scale_input(plan, fplan, xa, x)  # (a huge value may scale to inf, unflagged: see emulate; then the general path)
            mx, mn = float(x.max()), float(x.min())
            i_lo, i_hi = fplan["inv_mul"]
            s_lo, s_hi = fplan["sub_lo_hi"]
            raw_hi = max(mx * i_lo, mx * i_hi) + s_hi
            raw_lo = min(mn * i_lo, mn * i_hi) + s_lo
            if raw_lo >= fin.min_code and raw_hi <= fin.max_code:  # False for NaN: then the general path
                _keep_input(kept, fplan, xa, x)
                xq = x
                if fplan["xq_requant"]:
                    xq = _fsat(x, qi, stats["xq"], ws.xmask[:m], check_lo=fplan["xq_check_lo"],
                               check_hi=fplan["xq_check_hi"], extremes=(mn, mx))
                ws.tick("input: scale and requantise")
                return xa, xq
    xin = _input_codes(q, xa, stats["input"], strict, ws)
    ws.tick("input: grid check")
    _scale_input(plan, fplan, xin, x)
    _keep_input(kept, fplan, xin, x)
    sxq = fplan["s_xq"]
    xq = x
    if fplan["xq_requant"]:
        xq = _fq(x, sxq, qi, stats["xq"], ws.xq[:m], ws.xmask[:m], check_lo=fplan["xq_check_lo"], check_hi=fplan["xq_check_hi"])
    ws.tick("input: scale and requantise")
    return xin, xq


def _keep_input(kept: dict | None, fplan: dict, xin: np.ndarray, x: np.ndarray) -> None:
    if kept is not None:
        _keep(kept, "input", xin)
        _keep(kept, "scaled", x, 2.0 ** fplan["s_xq"])


def _keep(kept: dict | None, name: str, v: np.ndarray, mul: float = 1.0) -> None:
    if kept is not None:
        kept.setdefault(name, []).append((v * mul if mul != 1.0 else v).astype(np.int64))


def _chunk_float(q: QModel, plan: dict, fplan: dict, xa: np.ndarray, stats: dict, kept: dict | None, strict: bool,
                 ws: _Work, out: np.ndarray | None = None):
    """One chunk on float codes: per layer one GEMM (scaling and bias folded in), relu as v + |v|, one rounding
    pass, one inexact count and a max/min check (each skipped where the interval bounds prove it idle); the
    overflow mode runs only on chunks that overflow. The last layer writes into `out` (float codes) when given."""
    m = len(xa)
    for name in fplan["stat_names"]:
        stats.setdefault(name, {"inexact": 0, "overflow": 0})
    ws.tick("other")
    xin, xq = _input_stage(q, plan, fplan, xa, stats, strict, ws, kept)
    _keep(kept, "xq", xq)
    present = None
    if plan["gate_block"] and kept is None and q.score is not None and q.score.kind != "out":
        # the gate's objects present (gate[j] = k * (j // k)): read now, while the raw input is still in cache
        present = np.greater(xin[:, 0::plan["gate_block"]], 0, out=ws.omask[:m])
        ws.tick("score: gate and sum")
    h = xq
    layers = fplan["layers"]
    last = len(layers) - 1
    for i, (L, (t, u, mask, bias)) in enumerate(zip(layers, ws.views(m))):
        # NumPy's matmul releases the GIL (SciPy's gemm wrapper does not: 1.6x faster alone, serial in threads)
        hh = h if h.dtype == L.dt else h.astype(L.dt)
        if L.p.diag:
            np.multiply(hh, L.w, out=t)
        else:
            np.matmul(hh, L.w, out=t)
        t += bias
        ws.tick("layers: GEMM and bias")
        if kept is not None:
            _keep(kept, f"{L.p.name}.accum", t, L.acc_mul)
        if L.p.relu:
            np.abs(t, out=u)
            t += u
            ws.tick("layers: relu")
        if i == last and out is not None and out.dtype == L.dt:
            u = out  # the last layer rounds straight into the result
        if L.requant:
            h = _fq(t, L.s, L.p.out_fmt, stats[L.p.name + ".out"], u, mask, check_lo=L.check_lo, check_hi=L.check_hi, ws=ws)
        else:
            h = t
        if kept is not None:
            _keep(kept, f"{L.p.name}.out", h)
    if out is not None and h is not out:
        np.copyto(out, h, casting="unsafe")
        h = out
    ws.tick("output: codes into the result")
    if q.score is not None and q.score.kind == "out":
        score = _out_score(q, h, stats)
    else:
        score = _score_float(q, plan, fplan, xq, h, xin, stats, kept, ws, present) if q.score is not None else None
    ws.tick("score: requantise")
    return h, score


def _score_float(q: QModel, plan: dict, fplan: dict, xq: np.ndarray, h: np.ndarray, xin: np.ndarray, stats: dict,
                 kept: dict | None, ws: _Work, present: np.ndarray | None = None) -> np.ndarray:
    """Masked sum of squares on float codes: differences and squares in float32 when the plan proves them below
    2**24, sums in float64 (every partial sum below 2**52: exact in any order, so BLAS may add them)."""
    sc, sa = q.score, plan["score"]
    m = len(h)
    f32 = fplan["score_f32"]
    dt = np.float32 if f32 else np.float64
    bufs, dmask = ((ws.f[:m], ws.f2[:m]) if f32 else (ws.d[:m], ws.d2[:m])), ws.dmask[:m]
    spare = lambda a: bufs[1] if a is bufs[0] else bufs[0]  # noqa: E731  (the scratch buffer not holding a)
    for name in ("score.diff", "score.square", "score.accum", "score") if sc.kind == "mse" else ("score.square", "score.accum", "score"):
        stats.setdefault(name, {"inexact": 0, "overflow": 0})
    d = bufs[0]
    if sc.kind == "mse":
        ed = sa["exact_diff"]
        a1, a2 = ed.frac - q.input_quantizer.frac, ed.frac - q.output_format.frac
        if a1 == a2 == 0:
            np.subtract(xq, h, out=d, dtype=dt)
        else:
            np.multiply(h, 2.0 ** a2, out=bufs[1], dtype=dt)
            np.multiply(xq, 2.0 ** a1, out=d, dtype=dt)
            d -= bufs[1]
        s = ed.frac - sc.diff_format.frac
        if fplan["diff_requant"]:
            if s:
                d *= 2.0 ** -s
            d = _fq(d, s, sc.diff_format, stats["score.diff"], spare(d), dmask)
        _keep(kept, "score.diff", d)
    else:
        d = h
    sq = np.multiply(d, d, out=bufs[0], dtype=dt)
    es, sqf = sa["exact_square"], sc.square_format
    s = es.frac - sqf.frac
    if fplan["square_requant"]:
        if s:
            sq *= 2.0 ** -s
        sq = _fq(sq, s, sqf, stats["score.square"], spare(sq), dmask, check_lo=False)
    ws.tick("score: difference and square")
    block = plan["gate_block"]
    blocked = bool(block) and block > 1 and present is not None
    if sq.dtype != np.float64 and not blocked:  # exact widening; sums need float64
        np.copyto(ws.d[:m], sq)
        sq = ws.d[:m]
    if plan["gate"] is None:
        acc = np.matmul(sq, fplan["ones_in"], out=ws.s[:m])
    elif block and present is not None:  # gate[j] = k * (j // k): add each object's k terms, zero absent objects
        k = block
        obj = ws.obj[:m]
        if k == 1:
            np.copyto(obj, sq)
        else:  # float32 squares added into float64 (exact); no widened copy of all squares: less memory traffic
            np.add(sq[:, 0::k], sq[:, 1::k], out=obj, dtype=np.float64)
            for i in range(2, k):
                obj += sq[:, i::k]
        np.multiply(obj, present, out=obj)  # 3x faster than copyto(where=) on mixed masks
        acc = np.matmul(obj, fplan["ones_obj"], out=ws.s[:m])
    else:
        mask = xin[:, plan["gate_src"]] > 0
        sq = np.multiply(sq, mask[:, plan["gate_idx"]], out=sq)
        acc = np.matmul(sq, fplan["ones_in"], out=ws.s[:m])
    _keep(kept, "score.square", sq)
    ws.tick("score: gate and sum")
    s_sc = sc.accum_format.frac - sc.format.frac
    _keep(kept, "score.accum", acc, 2.0 ** s_sc)
    if not fplan["score_requant"]:
        return acc
    return _fq(acc, s_sc, sc.format, stats["score"], ws.s2[:m], ws.smask[:m])


# ---------------------------------------------------------------------- integer path (any width)
def _chunk_int(q: QModel, plan: dict, xa: np.ndarray, stats: dict, kept: dict | None, strict: bool):
    xin, n_inexact, n_ovf = quantize_float(xa, q.input.format)
    st = stats.setdefault("input", {"inexact": 0, "overflow": 0})
    st["inexact"] += n_inexact
    st["overflow"] += n_ovf
    if strict and (n_inexact or n_ovf):
        raise EmulatorInputError(f"{n_inexact} input value(s) off the grid of {q.input.format} and {n_ovf} out of its "
                                 f"range (strict=True)")
    if plan["identity_scaling"]:
        scaled = xin
    else:
        need_obj = q.scaled_format.width > 62 or xin.dtype == object
        xs = xin.astype(object) if need_obj else xin
        sub = plan["sub"] if need_obj else plan["sub"].astype(np.int64)
        scaled = (xs - sub[None, :]) << plan["lsh"][None, :]
    xq = _rq(scaled, q.scaled_format, q.input_quantizer, stats, "xq")
    if kept is not None:
        kept.setdefault("input", []).append(xin)
        kept.setdefault("scaled", []).append(scaled)
        kept.setdefault("xq", []).append(xq)
    h = xq
    for p in plan["layers"]:
        acc = _dense(p, h, stats)
        if kept is not None:
            kept.setdefault(f"{p.name}.accum", []).append(acc)
        if p.relu:
            acc = np.maximum(acc, 0) if acc.dtype != object else np.where(acc > 0, acc, 0)
        h = _rq(acc, p.acc_fmt, p.out_fmt, stats, f"{p.name}.out")
        if kept is not None:
            kept.setdefault(f"{p.name}.out", []).append(h)
    score = _square_sum(q, plan, xq, h, xin, stats, kept) if q.score is not None else None
    return h, score


def stage_profile(qmodel: QModel, x: Any, *, chunk: int = DEFAULT_CHUNK) -> dict[str, float]:
    """CPU seconds spent per stage of the float fast path on x, on one thread with single-threaded BLAS (for
    benchmarks: where the time goes; the thread's CPU time, so other processes' load inflates it less than wall
    time). Raises ValueError when the model does not take the float path."""
    a = _check_x(qmodel, x)
    plan = _plan(qmodel)
    fplan = plan["float"]
    if fplan is None:
        raise ValueError(f"model {qmodel.name!r} does not take the float fast path: nothing to profile")
    prof: dict[str, float] = {}
    chunk = max(1, int(chunk))
    ws = _Work(qmodel, plan, fplan, min(chunk, max(len(a), 1)), prof)
    stats: dict[str, dict[str, int]] = {}
    out = np.empty((len(a), qmodel.n_outputs), dtype=fplan["layer_dt"][-1])
    with _blas_single_thread(), np.errstate(over="ignore"):
        ws.t0 = time.thread_time()
        for s0 in range(0, len(a), chunk):
            _chunk_float(qmodel, plan, fplan, a[s0:s0 + chunk], stats, None, False, ws, out[s0:s0 + chunk])
    return prof


def _n_threads(threads: int | None, n_chunks: int) -> int:
    if threads is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        threads = min(cores, 8)
    return max(1, min(int(threads), n_chunks))


def _ignore_float_overflow() -> None:
    np.seterr(over="ignore")  # (NumPy's error state is per thread: this worker's only)


@contextlib.contextmanager
def _blas_single_thread():
    """Our threads each run small matrix products: keep BLAS itself single-threaded meanwhile (no oversubscription)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def _native_input(a: np.ndarray) -> np.ndarray | None:
    """The input as the C-contiguous float32 / float64 array the kernel reads (values unchanged), or None when a
    conversion could round (int64 beyond 2**53)."""
    if a.dtype in (np.float32, np.float64):
        return np.ascontiguousarray(a)
    if a.dtype == np.float16:
        return np.ascontiguousarray(a, dtype=np.float32)
    if a.dtype.itemsize >= 8 and a.size and max(abs(int(a.min())), abs(int(a.max()))) >= 1 << 53:
        return None
    return np.ascontiguousarray(a, dtype=np.float64)


def _emulate_native(q: QModel, a: np.ndarray, *, strict: bool, keep: bool, threads: int | None,
                    forced: bool) -> EmulationResult | None:
    """emulate() on the compiled kernel (``a``: the input after _check_x), or None when the NumPy path must run
    instead (``forced``: raise naming why, unless only the input needs it: a value the kernel leaves to NumPy
    gives the same codes there)."""
    from . import native

    if keep:
        if forced:
            raise EmulatorInputError("backend='native' keeps no intermediate tensors: keep=True needs backend='numpy'")
        return None
    n = a.shape[0]
    if not forced and n < native.NATIVE_MIN_EVENTS and not native.loaded(q):
        return None
    k = native.kernel(q)  # the kernel, or why there is none (an unsupported construct first)
    if isinstance(k, str):
        if forced:
            raise EmulatorInputError(f"backend='native' cannot run model {q.name!r}: {k}")
        return None
    xa = _native_input(a)
    if xa is None:
        return None
    out = np.empty((n, q.n_outputs), dtype=k.out_dtype)
    score = None if q.score is None else np.empty(n, dtype=np.int64)
    status, stats = k.run(xa, out, score, _n_threads(threads, max(1, -(-n // DEFAULT_CHUNK))))
    if status & native.STATUS_NONFINITE:
        _raise_nonfinite(a)
        raise AssertionError("the native kernel saw NaN/inf that the input does not hold")
    if status & native.STATUS_FALLBACK:
        return None
    st = stats["input"]
    if strict and (st["inexact"] or st["overflow"]):
        raise EmulatorInputError(f"{st['inexact']} input value(s) off the grid of {q.input.format} and {st['overflow']} out of "
                                 f"its range (strict=True)")
    if score is not None and q.thresholds:
        trig = score[:, None] > np.array(q.thresholds, dtype=np.int64)[None, :]
    else:
        trig = np.zeros((n, len(q.thresholds)), dtype=bool)
    return EmulationResult(codes=out, score_int=score, trigger=trig, output_format=q.output_format,
                           score_format=q.score_format, stats=stats, backends={L.name: "native" for L in q.layers})


def emulate(qmodel: QModel, x: Any, *, strict: bool = False, keep: bool = False, chunk: int = DEFAULT_CHUNK,
            backend: str = "auto", threads: int | None = None) -> EmulationResult:
    """Run the QModel bit-exactly on x, the (N, n_inputs) raw hardware-unit input (floats holding the input
    format's values; (N, 19, 3) is flattened row-major). Inputs off the input format's grid are rounded with its
    rounding mode (counted in ``result.stats["input"]``); ``strict=True`` raises instead. ``keep=True`` also
    returns every intermediate tensor's codes (NumPy path only). Processes ``chunk`` events at a time (NumPy path).

    ``backend``: "native" runs the compiled integer kernel of firmware.native (dense layers with exact
    accumulators; compiled with g++ on first use, then cached), and raises naming why when it cannot; "numpy"
    runs on float arrays holding integer codes when a bound proves every step exact (formats and partial sums
    below 2**52, float32 BLAS/elementwise below 2**23), else on int64 with exact float BLAS for the matrix
    products where the bound allows, else on Python integers; "auto" (default) takes the native kernel when it is
    already loaded for this QModel or when x holds at least ``native.NATIVE_MIN_EVENTS`` events (a first build
    then pays off) and the model and machine allow it, else "numpy"; "int" forces the NumPy integer path, "i64"
    also integer matrix products, "object" Python integers throughout (cross-checks: the results, statistics
    included, are identical by construction). ``threads``: worker threads over chunks (default: the usable
    cores, at most 8; NumPy, BLAS and the kernel release the GIL); results do not depend on it."""
    if not isinstance(qmodel, QModel):
        raise TypeError(f"emulate() needs a firmware.QModel, got {type(qmodel).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    x = _check_x(qmodel, x, scan=False)  # shape and dtype once; the NaN/inf scan is each path's own
    if backend in ("auto", "native"):
        res = _emulate_native(qmodel, x, strict=strict, keep=keep, threads=threads, forced=backend == "native")
        if res is not None:
            return res
        backend = "auto"
    elif backend == "numpy":
        backend = "auto"
    plan = _plan(qmodel, backend)
    fplan = plan["float"] if backend == "auto" else None
    a = _check_x(qmodel, x, scan=fplan is None)
    n = a.shape[0]
    stats: dict[str, dict[str, int]] = {}
    kept: dict[str, list] | None = {} if keep else None
    of, sf = qmodel.output_format, qmodel.score_format
    # the float path's last layer rounds straight into the result: its float codes, widened when read
    out_buf = np.empty((n, qmodel.n_outputs), dtype=fplan["layer_dt"][-1] if fplan is not None else of.code_dtype)
    score_buf = None if sf is None else np.empty(n, dtype=sf.code_dtype)
    chunk = max(1, int(chunk))
    starts = list(range(0, max(n, 1), chunk))

    local = threading.local()  # one scratch workspace per worker thread, for this call only

    def work(s0: int) -> tuple[dict, dict | None]:
        st: dict[str, dict[str, int]] = {}
        kp: dict[str, list] | None = {} if keep else None
        xa = a[s0:s0 + chunk]
        if fplan is not None:
            ws = getattr(local, "ws", None)
            if ws is None:
                ws = local.ws = _Work(qmodel, plan, fplan, min(chunk, max(n, 1)))
            _, score = _chunk_float(qmodel, plan, fplan, xa, st, kp, strict, ws, out_buf[s0:s0 + chunk])
        else:
            h, score = _chunk_int(qmodel, plan, xa, st, kp, strict)
            out_buf[s0:s0 + len(xa)] = h
        if score_buf is not None:
            score_buf[s0:s0 + len(xa)] = score
        return st, kp

    n_threads = _n_threads(threads, len(starts))
    try:
        if n_threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            # the workers ignore float overflow: the input shortcut may scale a huge raw value to inf, then the
            # general input check takes over (every other float step is proven exact, so nothing else can overflow)
            with _blas_single_thread(), ThreadPoolExecutor(n_threads, initializer=_ignore_float_overflow) as ex:
                parts = list(ex.map(work, starts))
        else:
            with np.errstate(over="ignore"):
                parts = [work(s0) for s0 in starts]
    except _NonFinite:
        _raise_nonfinite(a)
        raise AssertionError("a chunk saw NaN/inf that the whole input does not hold") from None
    for st, kp in parts:  # merge in event order
        for k, v in st.items():
            tot = stats.setdefault(k, {"inexact": 0, "overflow": 0})
            tot["inexact"] += v["inexact"]
            tot["overflow"] += v["overflow"]
        if kept is not None:
            for k, v in kp.items():
                kept.setdefault(k, []).extend(v)
    if score_buf is not None and qmodel.thresholds:
        trig = np.asarray(score_buf[:, None] > plan["thresholds"][None, :], dtype=bool)
    else:
        trig = np.zeros((n, len(qmodel.thresholds)), dtype=bool)
    backends = {p.name: p.backend for p in plan["layers"]}
    if fplan is not None:
        backends = {p.name: ("float32" if dt == np.float32 else "float64") for p, dt in zip(plan["layers"], fplan["layer_dt"])}
    return EmulationResult(
        codes=out_buf,
        score_int=score_buf,
        trigger=trig,
        output_format=of,
        score_format=sf,
        stats=stats,
        tensors={k: np.concatenate(v)[:n] for k, v in kept.items()} if kept is not None else {},
        backends=backends,
    )
