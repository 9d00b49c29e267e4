"""The quantized-model IR (``QModel``): one plain, serialisable description of a trained, quantized network and of
everything after it on the chip. The emulator, the hls4ml export and the Verilog generator all read this.

Data flow (every tensor has one FixedFormat; codes are integers, value = code * 2**-frac)::

    x        raw hardware-unit input, N x n_inputs, format ``input.format``      (e.g. ap_int<18>)
    scaled   s_j = (x_j - offset_j) * 2**(-shift_j), EXACT (no rounding), format ``scaled_format`` (derived)
    xq       network input quantizer: requantize(scaled -> ``input_quantizer``) (its rounding / overflow)
    for each DenseLayer L (in order):
      product  p_ij = in_i * w_ij, exact, format ``L.product_format`` (derived, informational)
      accum    acc_j = b_j + sum_i p_ij  in ``L.accum_format``.  If accum_format holds the exact range
               (``L.accum_exact``), this is the exact sum.  Otherwise hls4ml order and semantics apply:
               acc = (accum_t) b; for i in 0..n_in-1: acc = (accum_t)(acc + (accum_t) p_ij).
      out      out_j = requantize(act(acc_j) -> ``L.output_format``), act = identity ("linear") or max(.,0) ("relu")
    for each AffineLayer A (per channel, n -> n; in the same ordered list as the dense layers):
      acc      acc_j = in_j * scale_j + offset_j, exact (``A.accum_format`` always holds it)
      out      out_j = requantize(act(acc_j) -> ``A.output_format``)  (multiply-and-shift requantization,
               folded batch normalisation that cannot go into the previous layer, or a standalone activation)
    for each PoolLayer P (max or average pooling, 1-D/2-D, channels last):
      acc      max over the window's valid inputs (exact, the input's LSB), or the average sum/2**k (exact: the
               sum at k more fraction bits; P's dense view); non-power-of-two divisors are refused
      out      out_j = requantize(act(acc_j) -> ``P.output_format``)
    score (optional, ``ScoreSpec``):
      "mse": d_j = xq_j - out_j (diff_format); q_j = d_j**2 (square_format);
             score = sum_j m_j q_j (accum_format, hls4ml order as above if not exact) -> ``format``;
             m_j = 1 iff raw input code x[gate[j]] > 0 (gate[j] = the pT feature of feature j's object),
             all ones if gate is None.  NO division (no mean).
      "mu2": q_i = mu_i**2 with mu the network output; score = sum_i q_i; same formats / order.
      "out": score = requantize(out_0 -> ``format``) of a single-output network (no diff, square or accumulator).
    trigger  bit k = score_code > thresholds[k] (thresholds are integer codes of ``score.format``)

Every intermediate conversion "-> F" is ``F.requantize`` with F's rounding then overflow mode; a format that holds
its exact range never changes a value. Formats left as None at construction are filled with the narrowest EXACT
format from a per-feature interval analysis, so nothing is truncated unless the config says so.

The layers form one ordered op list; each op class (``LAYER_KINDS``: DenseLayer "dense", AffineLayer "affine",
ConvLayer "conv", PoolLayer "pool")
owns its interval analysis (``accum_bounds``), exactness rule, and serialisation; every back-end dispatches on
``layer.kind``. Adding an op = one class here + one handler in the emulator, the Verilog generator and the HLS
writer (each back-end refuses a kind it has no handler for, naming it).

JSON schema ``l1ad.qmodel/2`` (``QModel.save`` / ``QModel.load``; all formats as ap_fixed strings, all numbers
integers; ``l1ad.qmodel/1`` documents, which hold dense layers without "kind", still load)::

    {"schema": "l1ad.qmodel/2", "name": str,
     "input": {"format": str, "offset": [int]*n, "shift": [int]*n},
     "scaled_format": str,                      # derived, stored for readers (checked on load)
     "input_quantizer": str,
     "layers": [{"name": str, "kind": "dense", "n_in": int, "n_out": int,
                 "weight_format": str, "weights": [[int]*n_out]*n_in,   # weights[i][j]: input i -> output j
                 "bias_format": str, "bias": [int]*n_out,
                 "product_format": str, "accum_format": str,
                 "activation": "linear"|"relu", "output_format": str}
                | {"name": str, "kind": "affine", "n": int, "scale_format": str, "scale": [int]*n,
                   "offset_format": str, "offset": [int]*n, "product_format": str, "accum_format": str,
                   "activation": "linear"|"relu", "output_format": str}
                | {"name": str, "kind": "pool", "mode": "max"|"avg", "in_shape": [int], "pool_size": [int],
                   "strides": [int], "padding": "valid"|"same"|[[int, int]], "count_pad": bool, "product_format": str,
                   "accum_format": str, "activation": "linear"|"relu", "output_format": str}, ...],
     "score": null | {"kind": "mse"|"mu2", "gate": null|[int]*n,
                      "diff_format": str|null, "square_format": str, "accum_format": str, "format": str},
     "thresholds": [int], "warnings": [str], "meta": {...}}

Public names (stable): ``QModel``, ``InputSpec``, ``DenseLayer``, ``AffineLayer``, ``ConvLayer``, ``PoolLayer``, ``LAYER_KINDS``, ``ScoreSpec``,
``SCHEMA``, ``default_gate``,
``QModelError``. Useful QModel methods for back-ends: ``tensor_formats()`` (every tensor's format in data-flow
order), ``tensor_bounds()`` (per-feature code bounds from the interval analysis), ``layer_exact(i)`` (the
accumulator holds every partial sum in any order, so an adder tree equals the exact sum), ``score_analysis()``
(exact vs configured score formats, ``accum_ok``), ``input.scaled_code_params()`` ((sub, lshift) per feature with
scaled_code = (x_code - sub) << lshift), ``threshold_code(value)``, ``with_thresholds``, ``replace_formats``.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .fixed import FixedFormat, requantize
from l1ad.trigger.errors import UserInputError

SCHEMA = "l1ad.qmodel/2"
SCHEMAS_READ = ("l1ad.qmodel/1", "l1ad.qmodel/2")  # /1: dense layers only (no "kind" needed)
ACTIVATIONS = ("linear", "relu")
SCORE_KINDS = ("mse", "mu2", "out")


class QModelError(UserInputError):
    """An inconsistent or malformed QModel."""


def default_gate(n_objects: int = 19, n_features: int = 3) -> tuple[int, ...]:
    """The AE mask gate for the L1 layout: feature j is counted iff the pT code of its object (feature
    ``3 * (j // 3)``) is > 0. Rows: 0 MET, 1-4 e/gamma, 5-8 muons, 9-18 jets; features (pT, eta, phi)."""
    return tuple(n_features * (j // n_features) for j in range(n_objects * n_features))


def _fmt(f: Any) -> FixedFormat | None:
    return None if f is None else FixedFormat.parse(f)


def _int_array(a: Any, name: str, ndim: int) -> np.ndarray:
    """A read-only integer array (int64, or object when a value needs more than 62 bits); floats must be integral."""
    arr = a if isinstance(a, np.ndarray) else np.asarray(a, dtype=object)
    if arr.ndim != ndim:
        raise QModelError(f"{name}: expected a {ndim}-d integer array, got shape {arr.shape}")
    vals = []
    for v in arr.ravel().tolist():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise QModelError(f"{name}: values must be integers (codes), got {type(v).__name__}")
        if isinstance(v, (float, np.floating)):
            if not math.isfinite(v) or v != int(v):
                raise QModelError(f"{name}: values must be integers (codes), got {v!r}")
        vals.append(int(v))
    big = any(abs(v) >= 1 << 62 for v in vals)
    out = np.array(vals, dtype=object if big else np.int64).reshape(arr.shape)
    out.setflags(write=False)
    return out


# ---------------------------------------------------------------------- interval analysis (per feature)
def _rq_bounds(lo: Sequence[int], hi: Sequence[int], src: FixedFormat, dst: FixedFormat) -> tuple[list[int], list[int]]:
    """Per-feature code bounds after converting [lo, hi] (codes of src) to dst. Monotone for every rounding and
    for saturating overflow; WRAP (when it can happen) or SAT_ZERO widen the range to what is reachable."""
    los, his = [], []
    for a, b in zip(lo, hi):
        qa = int(requantize(np.array([a], dtype=object), src, dst.with_modes(overflow="SAT"))[0][0])
        qb = int(requantize(np.array([b], dtype=object), src, dst.with_modes(overflow="SAT"))[0][0])
        # unsaturated rounded values, to know if overflow can happen at all
        wide = FixedFormat(max(src.width, 2) + abs(src.frac - dst.frac) + 4, max(src.width, 2) + abs(src.frac - dst.frac) + 4 - dst.frac, True, dst.rounding, "WRAP")
        ra = int(requantize(np.array([a], dtype=object), src, wide)[0][0])
        rb = int(requantize(np.array([b], dtype=object), src, wide)[0][0])
        can_ovf = ra < dst.min_code or rb > dst.max_code or (dst.overflow == "SAT_SYM" and dst.signed and ra <= dst.min_code)
        if not can_ovf:
            los.append(ra), his.append(rb)
        elif dst.overflow == "WRAP":
            los.append(dst.min_code), his.append(dst.max_code)
        elif dst.overflow == "SAT_ZERO":
            los.append(min(0, max(ra, dst.min_code))), his.append(max(0, min(rb, dst.max_code)))
        else:
            lo_sat = -dst.max_code if (dst.overflow == "SAT_SYM" and dst.signed) else dst.min_code
            los.append(max(qa, lo_sat)), his.append(qb)
    return los, his


def _align(v: int, from_frac: int, to_frac: int) -> int:
    assert to_frac >= from_frac
    return v << (to_frac - from_frac)


# ---------------------------------------------------------------------- components
@dataclass(frozen=True)
class InputSpec:
    """The raw input: its format (hardware units), and the integer scaling applied before the network input
    quantizer: ``scaled_j = (x_j - offset_j) * 2**(-shift_j)`` with integer offsets (in the input's real units)
    and integer shifts (negative shift multiplies). Identity scaling: offset 0, shift 0."""

    format: FixedFormat
    offset: np.ndarray
    shift: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", FixedFormat.parse(self.format))
        off = _int_array(np.atleast_1d(self.offset), "input.offset", 1)
        sh = _int_array(np.atleast_1d(self.shift), "input.shift", 1)
        if off.shape != sh.shape:
            raise QModelError(f"input.offset {off.shape} and input.shift {sh.shape} differ in length")
        if sh.dtype == object or (sh.size and np.abs(sh).max() > 256):
            raise QModelError("input.shift values must lie in [-256, 256]")
        object.__setattr__(self, "offset", off)
        object.__setattr__(self, "shift", sh)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InputSpec):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def identity(cls, n: int, fmt: FixedFormat | str) -> "InputSpec":
        return cls(FixedFormat.parse(fmt), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64))

    @classmethod
    def from_scaler(cls, scaler: Any, n: int, fmt: FixedFormat | str) -> "InputSpec":
        """From None (identity) or an object with integer ``offset`` and ``shift`` arrays (or scalars)."""
        if scaler is None:
            return cls.identity(n, fmt)
        try:
            off, sh = getattr(scaler, "offset"), getattr(scaler, "shift")
        except AttributeError:
            raise QModelError("scaler must have integer 'offset' and 'shift' attributes (or be None)") from None
        off = np.broadcast_to(np.asarray(off), (n,))
        sh = np.broadcast_to(np.asarray(sh), (n,))
        return cls(FixedFormat.parse(fmt), off, sh)

    @property
    def n(self) -> int:
        return int(self.offset.shape[0])

    @property
    def is_identity(self) -> bool:
        return not np.any(self.offset != 0) and not np.any(self.shift != 0)

    @property
    def scaled_frac(self) -> int:
        return self.format.frac + max(0, int(max(self.shift.tolist(), default=0)))

    def scaled_code_params(self) -> tuple[np.ndarray, np.ndarray]:
        """(sub, lshift) per feature such that scaled_code = (x_code - sub) << lshift, exactly."""
        f_in, f_s = self.format.frac, self.scaled_frac
        subs, lsh = [], []
        for o, s in zip(self.offset.tolist(), self.shift.tolist()):
            sub = Fraction(int(o)) / self.format.lsb
            if sub.denominator != 1:  # an input format with negative fraction bits: offsets must be on its grid
                raise QModelError(f"input offset {o} is not on the input grid {self.format} (a multiple of {self.format.lsb})")
            subs.append(int(sub))
            lsh.append(f_s - (f_in + int(s)))
        return np.array(subs, dtype=object), np.array(lsh, dtype=np.int64)

    def scaled_bounds(self) -> tuple[list[int], list[int]]:
        sub, lsh = self.scaled_code_params()
        lo = [(self.format.min_code - int(s)) << int(k) for s, k in zip(sub, lsh)]
        hi = [(self.format.max_code - int(s)) << int(k) for s, k in zip(sub, lsh)]
        return lo, hi

    def scaled_format(self) -> FixedFormat:
        """The exact format of the scaled input (no rounding anywhere)."""
        lo, hi = self.scaled_bounds()
        return FixedFormat.covering(min(lo), max(hi), self.scaled_frac)

    def to_dict(self) -> dict:
        return {"format": str(self.format), "offset": [int(v) for v in self.offset], "shift": [int(v) for v in self.shift]}


@dataclass(frozen=True)
class DenseLayer:
    """A fully connected layer on integer codes. ``weights[i, j]`` connects input i to output j (Keras
    kernel layout), codes of ``weight_format``; ``bias[j]`` codes of ``bias_format``. ``accum_format`` None
    means: the narrowest exact accumulator (filled in by QModel). ``output_format`` None means: the accumulator
    is the output (no requantization). ``activation`` is "linear" or "relu"."""

    name: str
    weights: np.ndarray
    weight_format: FixedFormat
    bias: np.ndarray
    bias_format: FixedFormat
    activation: str = "linear"
    output_format: FixedFormat | None = None
    accum_format: FixedFormat | None = None
    product_format: FixedFormat | None = None

    kind = "dense"
    requires_exact_accum = False  # a narrower accumulator follows hls4ml's order (see the module doc)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight_format", FixedFormat.parse(self.weight_format))
        object.__setattr__(self, "bias_format", FixedFormat.parse(self.bias_format))
        object.__setattr__(self, "output_format", _fmt(self.output_format))
        object.__setattr__(self, "accum_format", _fmt(self.accum_format))
        object.__setattr__(self, "product_format", _fmt(self.product_format))
        w = _int_array(self.weights, f"layer {self.name}: weights", 2)
        b = _int_array(self.bias if self.bias is not None else np.zeros(w.shape[1], dtype=np.int64), f"layer {self.name}: bias", 1)
        if b.shape != (w.shape[1],):
            raise QModelError(f"layer {self.name}: bias has shape {b.shape}, expected ({w.shape[1]},)")
        for arr, f, what in ((w, self.weight_format, "weights"), (b, self.bias_format, "bias")):
            if arr.size and (min(int(v) for v in arr.ravel()) < f.min_code or max(int(v) for v in arr.ravel()) > f.max_code):
                raise QModelError(f"layer {self.name}: {what} codes out of the range of {f}")
        if self.activation not in ACTIVATIONS:
            raise QModelError(f"layer {self.name}: activation {self.activation!r} not supported; use one of {ACTIVATIONS}")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "bias", b)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DenseLayer):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @property
    def n_in(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.weights.shape[1])

    def exact_frac(self, in_fmt: FixedFormat) -> int:
        """Fraction bits of the exact accumulator: max(f_in + f_w, f_b)."""
        return max(in_fmt.frac + self.weight_format.frac, self.bias_format.frac)

    def accum_bounds(self, in_lo: Sequence[int], in_hi: Sequence[int], in_fmt: FixedFormat) -> dict[str, Any]:
        """Interval analysis given per-input code bounds [in_lo, in_hi] of format in_fmt. Returns a dict:
        ``frac`` (exact accumulator fraction bits), ``lo``/``hi`` (per-output bounds of the final sum),
        ``part_lo``/``part_hi`` (bounds of ANY partial sum, bias included, in any summation order),
        ``pmin``/``pmax`` (product code bounds at f_in + f_w)."""
        fa = self.exact_frac(in_fmt)
        fp = in_fmt.frac + self.weight_format.frac
        wl = [[int(v) for v in row] for row in self.weights.tolist()]
        lo_out, hi_out, plo_out, phi_out = [], [], [], []
        pmin, pmax = 0, 0
        for j in range(self.n_out):
            b = _align(int(self.bias[j]), self.bias_format.frac, fa)
            lo = hi = b
            plo, phi = min(b, 0), max(b, 0)
            for i in range(self.n_in):
                w = wl[i][j]
                a, c = w * int(in_lo[i]), w * int(in_hi[i])
                pl, ph = min(a, c), max(a, c)
                pmin, pmax = min(pmin, pl), max(pmax, ph)
                lo += _align(pl, fp, fa)
                hi += _align(ph, fp, fa)
                plo += _align(min(pl, 0), fp, fa)
                phi += _align(max(ph, 0), fp, fa)
            lo_out.append(lo), hi_out.append(hi), plo_out.append(plo), phi_out.append(phi)
        return {"frac": fa, "lo": lo_out, "hi": hi_out, "part_lo": plo_out, "part_hi": phi_out, "pmin": pmin, "pmax": pmax}

    def to_dict(self) -> dict:
        return {
            "name": self.name, "kind": "dense", "n_in": self.n_in, "n_out": self.n_out,
            "weight_format": str(self.weight_format), "weights": [[int(v) for v in row] for row in self.weights.tolist()],
            "bias_format": str(self.bias_format), "bias": [int(v) for v in self.bias.tolist()],
            "product_format": None if self.product_format is None else str(self.product_format),
            "accum_format": None if self.accum_format is None else str(self.accum_format),
            "activation": self.activation,
            "output_format": None if self.output_format is None else str(self.output_format),
        }

    def replace(self, **kw: Any) -> "DenseLayer":
        d = dict(name=self.name, weights=self.weights, weight_format=self.weight_format, bias=self.bias,
                 bias_format=self.bias_format, activation=self.activation, output_format=self.output_format,
                 accum_format=self.accum_format, product_format=self.product_format)
        d.update(kw)
        return DenseLayer(**d)

    def describe(self) -> str:
        return f"dense {self.n_in} -> {self.n_out}, {self.activation}"

    def dense_view(self) -> "DenseLayer":
        return self

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DenseLayer":
        return cls(
            name=d["name"], weights=np.array(d["weights"], dtype=object).reshape(int(d["n_in"]), int(d["n_out"])) if "n_in" in d else d["weights"],
            weight_format=d["weight_format"], bias=np.array(d["bias"], dtype=object), bias_format=d["bias_format"],
            activation=d.get("activation", "linear"), output_format=d.get("output_format"),
            accum_format=d.get("accum_format"), product_format=d.get("product_format"),
        )


@dataclass(frozen=True)
class AffineLayer:
    """A per-channel affine map on integer codes (n inputs -> the same n outputs): ``acc_j = in_j * scale_j +
    offset_j``, exact, then relu if ``activation`` is "relu", then requantization to ``output_format``.

    It is what a folded batch normalisation that cannot go into the previous layer becomes, a requantization by
    a non-power-of-two scale (Brevitas' float scales: an integer multiplier ``scale_j`` with
    ``scale_format.frac`` bits of shift, i.e. multiply-and-shift), or a standalone activation (scale 1, offset 0).
    ``scale_format``/``offset_format`` hold the constants; the accumulator is always the exact format (filled in
    by QModel; a narrower one is refused). Back-ends may treat it as a dense layer with a diagonal weight matrix
    (``weights``, ``weight_format``, ``bias``, ``bias_format`` give that view), which is exact by construction."""

    name: str
    scale: np.ndarray
    scale_format: FixedFormat
    offset: np.ndarray
    offset_format: FixedFormat
    activation: str = "linear"
    output_format: FixedFormat | None = None
    accum_format: FixedFormat | None = None
    product_format: FixedFormat | None = None

    kind = "affine"
    requires_exact_accum = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale_format", FixedFormat.parse(self.scale_format))
        object.__setattr__(self, "offset_format", FixedFormat.parse(self.offset_format))
        object.__setattr__(self, "output_format", _fmt(self.output_format))
        object.__setattr__(self, "accum_format", _fmt(self.accum_format))
        object.__setattr__(self, "product_format", _fmt(self.product_format))
        sc = _int_array(np.atleast_1d(self.scale), f"layer {self.name}: scale", 1)
        off = _int_array(np.atleast_1d(self.offset) if self.offset is not None else np.zeros(sc.shape[0], dtype=np.int64),
                         f"layer {self.name}: offset", 1)
        if off.shape != sc.shape:
            raise QModelError(f"layer {self.name}: offset has shape {off.shape}, expected {sc.shape}")
        for arr, f, what in ((sc, self.scale_format, "scale"), (off, self.offset_format, "offset")):
            if arr.size and (min(int(v) for v in arr.ravel()) < f.min_code or max(int(v) for v in arr.ravel()) > f.max_code):
                raise QModelError(f"layer {self.name}: {what} codes out of the range of {f}")
        if self.activation not in ACTIVATIONS:
            raise QModelError(f"layer {self.name}: activation {self.activation!r} not supported; use one of {ACTIVATIONS}")
        object.__setattr__(self, "scale", sc)
        object.__setattr__(self, "offset", off)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AffineLayer):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @property
    def n_in(self) -> int:
        return int(self.scale.shape[0])

    n_out = n_in

    # the dense view (a diagonal weight matrix): what back-ends without an affine handler of their own read
    @property
    def weights(self) -> np.ndarray:
        w = self.__dict__.get("_diag")
        if w is None:
            w = np.zeros((self.n_in, self.n_in), dtype=self.scale.dtype)
            w[np.arange(self.n_in), np.arange(self.n_in)] = self.scale
            w.setflags(write=False)
            self.__dict__["_diag"] = w
        return w

    @property
    def weight_format(self) -> FixedFormat:
        return self.scale_format

    @property
    def bias(self) -> np.ndarray:
        return self.offset

    @property
    def bias_format(self) -> FixedFormat:
        return self.offset_format

    def exact_frac(self, in_fmt: FixedFormat) -> int:
        return max(in_fmt.frac + self.scale_format.frac, self.offset_format.frac)

    def accum_bounds(self, in_lo: Sequence[int], in_hi: Sequence[int], in_fmt: FixedFormat) -> dict[str, Any]:
        """As DenseLayer.accum_bounds, for the diagonal map (one product and the offset per output)."""
        fa = self.exact_frac(in_fmt)
        fp = in_fmt.frac + self.scale_format.frac
        lo_out, hi_out, plo_out, phi_out = [], [], [], []
        pmin = pmax = 0
        for j, (s, o) in enumerate(zip(self.scale.tolist(), self.offset.tolist())):
            a, c = int(s) * int(in_lo[j]), int(s) * int(in_hi[j])
            pl, ph = min(a, c), max(a, c)
            pmin, pmax = min(pmin, pl), max(pmax, ph)
            b = _align(int(o), self.offset_format.frac, fa)
            lo_out.append(b + _align(pl, fp, fa)), hi_out.append(b + _align(ph, fp, fa))
            plo_out.append(min(b, 0) + _align(min(pl, 0), fp, fa)), phi_out.append(max(b, 0) + _align(max(ph, 0), fp, fa))
        return {"frac": fa, "lo": lo_out, "hi": hi_out, "part_lo": plo_out, "part_hi": phi_out, "pmin": pmin, "pmax": pmax}

    def replace(self, **kw: Any) -> "AffineLayer":
        d = dict(name=self.name, scale=self.scale, scale_format=self.scale_format, offset=self.offset,
                 offset_format=self.offset_format, activation=self.activation, output_format=self.output_format,
                 accum_format=self.accum_format, product_format=self.product_format)
        d.update(kw)
        return AffineLayer(**d)

    def describe(self) -> str:
        return f"affine x{self.n_in} (per-channel scale and offset), {self.activation}"

    def dense_view(self) -> DenseLayer:
        """The same layer as a DenseLayer with a diagonal weight matrix."""
        v = self.__dict__.get("_view")
        if v is None:
            v = DenseLayer(self.name, self.weights, self.scale_format, self.offset, self.offset_format, self.activation,
                           self.output_format, self.accum_format, self.product_format)
            self.__dict__["_view"] = v
        return v

    def to_dict(self) -> dict:
        s = lambda f: None if f is None else str(f)  # noqa: E731
        return {"name": self.name, "kind": "affine", "n": self.n_in,
                "scale_format": str(self.scale_format), "scale": [int(v) for v in self.scale.tolist()],
                "offset_format": str(self.offset_format), "offset": [int(v) for v in self.offset.tolist()],
                "product_format": s(self.product_format), "accum_format": s(self.accum_format),
                "activation": self.activation, "output_format": s(self.output_format)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AffineLayer":
        return cls(name=d["name"], scale=np.array(d["scale"], dtype=object), scale_format=d["scale_format"],
                   offset=np.array(d["offset"], dtype=object), offset_format=d["offset_format"],
                   activation=d.get("activation", "linear"), output_format=d.get("output_format"),
                   accum_format=d.get("accum_format"), product_format=d.get("product_format"))


def _conv_out_len(n: int, k: int, s: int, padding: Any, axis: int = 0) -> tuple[int, int]:
    """(output length, padding before) of one spatial axis: "valid"; "same" (Keras' rule: pad so that
    out = ceil(n/s), the odd pixel after); or explicit ((before, after), ...) per axis (ONNX / PyTorch)."""
    if not isinstance(padding, str):
        pb, pa = padding[axis]
        return (n + pb + pa - k) // s + 1, pb
    if padding == "valid":
        return (n - k) // s + 1, 0
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2


def _check_in_shape(name: str, in_shape: Any) -> tuple[int, ...]:
    """A spatial op's input shape: (length, channels) or (height, width, channels), all positive."""
    shp = tuple(int(v) for v in in_shape)
    if len(shp) not in (2, 3) or min(shp) < 1:
        raise QModelError(f"layer {name}: in_shape {shp} must be (length, channels) or (height, width, channels)")
    return shp


def _check_padding(name: str, padding: Any, nd: int) -> str | tuple[tuple[int, int], ...]:
    """"valid", "same", or `nd` explicit non-negative (before, after) pairs (normalised to int tuples)."""
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise QModelError(f"layer {name}: padding {padding!r} must be 'valid', 'same' or explicit (before, after) pairs")
        return padding
    try:
        pads = tuple((int(a), int(b)) for a, b in padding)
    except (TypeError, ValueError):
        raise QModelError(f"layer {name}: padding {padding!r} must be 'valid', 'same' or explicit "
                          f"(before, after) pairs") from None
    if len(pads) != nd or min(min(p) for p in pads) < 0:
        raise QModelError(f"layer {name}: padding {pads} must give {nd} non-negative (before, after) pairs")
    return pads


@dataclass(frozen=True)
class ConvLayer:
    """A 1-D or 2-D convolution (Keras semantics, channels last, no dilation) on integer codes: input shape
    ``in_shape`` = (L, C) or (H, W, C), flattened row-major (channels fastest, as Keras' Flatten); ``kernel``
    codes of shape (k, C, F) or (kh, kw, C, F); ``strides``; ``padding`` "valid" or "same" (zeros). Output
    (L', F) or (H', W', F), flattened the same way. Each output is an exact sum (``accum_format`` must hold it:
    the unrolled design adds in a tree); then relu and requantization as for a dense layer. Back-ends read the
    dense view (``weights``: the (n_in, n_out) matrix with the kernel at every position, zeros elsewhere;
    ``bias`` repeated per position), which is the same arithmetic."""

    name: str
    kernel: np.ndarray
    kernel_format: FixedFormat
    bias: np.ndarray
    bias_format: FixedFormat
    in_shape: tuple[int, ...]
    strides: tuple[int, ...] = (1, 1)
    padding: Any = "valid"
    activation: str = "linear"
    output_format: FixedFormat | None = None
    accum_format: FixedFormat | None = None
    product_format: FixedFormat | None = None

    kind = "conv"
    requires_exact_accum = True

    def __post_init__(self) -> None:
        for k in ("kernel_format", "bias_format"):
            object.__setattr__(self, k, FixedFormat.parse(getattr(self, k)))
        for k in ("output_format", "accum_format", "product_format"):
            object.__setattr__(self, k, _fmt(getattr(self, k)))
        shp = _check_in_shape(self.name, self.in_shape)
        nd = len(shp) - 1
        kr = _int_array(np.asarray(self.kernel, dtype=object) if not isinstance(self.kernel, np.ndarray) else self.kernel,
                        f"layer {self.name}: kernel", nd + 2)
        if kr.shape[nd] != shp[-1]:
            raise QModelError(f"layer {self.name}: kernel has {kr.shape[nd]} input channels, the input {shp[-1]}")
        st = tuple(int(v) for v in (self.strides if len(tuple(self.strides)) == nd else tuple(self.strides)[:nd]))
        if len(st) != nd or min(st) < 1:
            raise QModelError(f"layer {self.name}: strides {self.strides} must be {nd} positive integers")
        object.__setattr__(self, "padding", _check_padding(self.name, self.padding, nd))
        for ax in range(nd):
            if _conv_out_len(shp[ax], kr.shape[ax], 1, self.padding, ax)[0] < 1:
                raise QModelError(f"layer {self.name}: kernel {kr.shape[:nd]} larger than the (padded) input {shp[:nd]}")
        b = _int_array(self.bias if self.bias is not None else np.zeros(kr.shape[-1], dtype=np.int64), f"layer {self.name}: bias", 1)
        if b.shape != (kr.shape[-1],):
            raise QModelError(f"layer {self.name}: bias has shape {b.shape}, expected ({kr.shape[-1]},)")
        for arr, f, what in ((kr, self.kernel_format, "kernel"), (b, self.bias_format, "bias")):
            if arr.size and (min(int(v) for v in arr.ravel()) < f.min_code or max(int(v) for v in arr.ravel()) > f.max_code):
                raise QModelError(f"layer {self.name}: {what} codes out of the range of {f}")
        if self.activation not in ACTIVATIONS:
            raise QModelError(f"layer {self.name}: activation {self.activation!r} not supported; use one of {ACTIVATIONS}")
        object.__setattr__(self, "kernel", kr)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "in_shape", shp)
        object.__setattr__(self, "strides", st)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConvLayer):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @property
    def out_shape(self) -> tuple[int, ...]:
        nd = len(self.in_shape) - 1
        return tuple(_conv_out_len(self.in_shape[a], self.kernel.shape[a], self.strides[a], self.padding, a)[0]
                     for a in range(nd)) + (int(self.kernel.shape[-1]),)

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def weight_format(self) -> FixedFormat:
        return self.kernel_format

    @property
    def weights(self) -> np.ndarray:
        """The dense view: (n_in, n_out) integer matrix, input/output flattened channels-last."""
        w = self.__dict__.get("_dense")
        if w is None:
            shp, nd = self.in_shape, len(self.in_shape) - 1
            ish = shp if nd == 2 else (1,) + shp
            osh = self.out_shape if nd == 2 else (1,) + self.out_shape
            ker = self.kernel if nd == 2 else self.kernel[None]
            st = self.strides if nd == 2 else (1,) + self.strides
            pads = [(_conv_out_len(shp[a], self.kernel.shape[a], self.strides[a], self.padding, a)[1]) for a in range(nd)]
            pads = pads if nd == 2 else [0] + pads
            H, W, C = ish
            Ho, Wo, F = osh
            kh, kw = ker.shape[0], ker.shape[1]
            w = np.zeros((H * W * C, Ho * Wo * F), dtype=ker.dtype)
            for oy in range(Ho):
                for ox in range(Wo):
                    ocol = (oy * Wo + ox) * F
                    for dy in range(kh):
                        iy = oy * st[0] - pads[0] + dy
                        if not 0 <= iy < H:
                            continue
                        for dx in range(kw):
                            ix = ox * st[1] - pads[1] + dx
                            if not 0 <= ix < W:
                                continue
                            r = (iy * W + ix) * C
                            w[r:r + C, ocol:ocol + F] = ker[dy, dx]
            w.setflags(write=False)
            self.__dict__["_dense"] = w
        return w

    @property
    def bias_dense(self) -> np.ndarray:
        return np.tile(self.bias, self.n_out // self.bias.shape[0])

    def exact_frac(self, in_fmt: FixedFormat) -> int:
        return max(in_fmt.frac + self.kernel_format.frac, self.bias_format.frac)

    def dense_view(self) -> DenseLayer:
        """The same layer as a DenseLayer (lowered weights, repeated bias, same formats): what back-ends without
        a convolution handler of their own implement."""
        v = self.__dict__.get("_view")
        if v is None:
            v = DenseLayer(self.name, self.weights, self.kernel_format, self.bias_dense, self.bias_format, self.activation,
                           self.output_format, self.accum_format, self.product_format)
            self.__dict__["_view"] = v
        return v

    def accum_bounds(self, in_lo: Sequence[int], in_hi: Sequence[int], in_fmt: FixedFormat) -> dict[str, Any]:
        return self.dense_view().accum_bounds(in_lo, in_hi, in_fmt)

    def replace(self, **kw: Any) -> "ConvLayer":
        d = dict(name=self.name, kernel=self.kernel, kernel_format=self.kernel_format, bias=self.bias,
                 bias_format=self.bias_format, in_shape=self.in_shape, strides=self.strides, padding=self.padding,
                 activation=self.activation, output_format=self.output_format, accum_format=self.accum_format,
                 product_format=self.product_format)
        d.update(kw)
        return ConvLayer(**d)

    def describe(self) -> str:
        return (f"conv{len(self.in_shape) - 1}d {self.in_shape} -> {self.out_shape}, kernel {self.kernel.shape[:-2]}, "
                f"strides {self.strides}, {self.padding}, {self.activation}")

    def to_dict(self) -> dict:
        s = lambda f: None if f is None else str(f)  # noqa: E731
        return {"name": self.name, "kind": "conv", "in_shape": list(self.in_shape), "strides": list(self.strides),
                "padding": self.padding if isinstance(self.padding, str) else [list(p) for p in self.padding],
                "kernel_shape": list(self.kernel.shape),
                "kernel_format": str(self.kernel_format), "kernel": [int(v) for v in self.kernel.ravel().tolist()],
                "bias_format": str(self.bias_format), "bias": [int(v) for v in self.bias.tolist()],
                "product_format": s(self.product_format), "accum_format": s(self.accum_format),
                "activation": self.activation, "output_format": s(self.output_format)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ConvLayer":
        k = np.array(d["kernel"], dtype=object).reshape(tuple(int(v) for v in d["kernel_shape"]))
        return cls(name=d["name"], kernel=k, kernel_format=d["kernel_format"], bias=np.array(d["bias"], dtype=object),
                   bias_format=d["bias_format"], in_shape=tuple(d["in_shape"]), strides=tuple(d["strides"]),
                   padding=d.get("padding", "valid") if isinstance(d.get("padding", "valid"), str)
                   else tuple(tuple(p) for p in d["padding"]), activation=d.get("activation", "linear"),
                   output_format=d.get("output_format"), accum_format=d.get("accum_format"),
                   product_format=d.get("product_format"))


POOL_MODES = ("max", "avg")


@dataclass(frozen=True)
class PoolLayer:
    """Max or average pooling, 1-D or 2-D, channels last (Keras semantics): input ``in_shape`` = (L, C) or
    (H, W, C) flattened row-major; window ``pool_size``; ``strides`` (default: the pool size); ``padding``
    "valid", "same" (Keras' rule, as for ConvLayer) or explicit (before, after) pairs (ONNX). Padded positions
    never enter a result: max is over the window's valid inputs (Keras and ONNX pad with -inf); an average
    divides by the count of valid inputs (Keras; ONNX count_include_pad=0), or by the full window when
    ``count_pad`` (ONNX count_include_pad=1: the padded zeros are in the sum). Global pooling is a window as
    large as the input. Then ``activation`` (relu) and requantization to ``output_format``, as for a dense layer.

    Exactness: a max is one of its inputs, so its exact accumulator is the input's LSB. An average is exact in
    fixed point only when every divisor is a power of two 2**k (the mean is the sum with the binary point moved
    k places); any other divisor is refused here, naming the layer, the divisor and the window. The average
    then IS a dense layer with weights 2**-k_j (zeros off the window, no bias): ``dense_view()`` gives it, and
    back-ends without a pooling handler of their own run it as that (exact accumulator, any summation order)."""

    name: str
    mode: str
    in_shape: tuple[int, ...]
    pool_size: tuple[int, ...]
    strides: tuple[int, ...] | None = None
    padding: Any = "valid"
    count_pad: bool = False
    activation: str = "linear"
    output_format: FixedFormat | None = None
    accum_format: FixedFormat | None = None
    product_format: FixedFormat | None = None

    kind = "pool"
    requires_exact_accum = True

    def __post_init__(self) -> None:
        for k in ("output_format", "accum_format", "product_format"):
            object.__setattr__(self, k, _fmt(getattr(self, k)))
        if self.mode not in POOL_MODES:
            raise QModelError(f"layer {self.name}: pooling mode {self.mode!r} not supported; use one of {POOL_MODES}")
        if self.activation not in ACTIVATIONS:
            raise QModelError(f"layer {self.name}: activation {self.activation!r} not supported; use one of {ACTIVATIONS}")
        shp = _check_in_shape(self.name, self.in_shape)
        nd = len(shp) - 1
        ps = tuple(int(v) for v in np.atleast_1d(self.pool_size))
        if len(ps) == 1 and nd == 2:
            ps = ps * 2
        if len(ps) != nd or min(ps) < 1:
            raise QModelError(f"layer {self.name}: pool_size {self.pool_size} must be {nd} positive integers")
        st = ps if self.strides is None else tuple(int(v) for v in np.atleast_1d(self.strides))
        if len(st) == 1 and nd == 2:
            st = st * 2
        if len(st) != nd or min(st) < 1:
            raise QModelError(f"layer {self.name}: strides {self.strides} must be {nd} positive integers")
        pads = _check_padding(self.name, self.padding, nd)
        if not isinstance(pads, str) and any(a >= k or b >= k for (a, b), k in zip(pads, ps)):
            raise QModelError(f"layer {self.name}: padding {pads} as large as the window {ps}: a window could "
                              f"hold padding only")
        object.__setattr__(self, "padding", pads)
        if self.count_pad and self.mode != "avg":
            raise QModelError(f"layer {self.name}: count_pad applies to average pooling only")
        object.__setattr__(self, "in_shape", shp)
        object.__setattr__(self, "pool_size", ps)
        object.__setattr__(self, "strides", st)
        object.__setattr__(self, "count_pad", bool(self.count_pad))
        for ax in range(nd):
            if _conv_out_len(shp[ax], ps[ax], st[ax], self.padding, ax)[0] < 1:
                raise QModelError(f"layer {self.name}: window {ps} larger than the (padded) input {shp[:nd]}")
        if self.mode == "avg":
            bad = sorted({d for d in self._divisors() if d & (d - 1)})
            if bad:
                raise QModelError(
                    f"layer {self.name}: average pooling over a {'x'.join(map(str, ps))} window divides by {bad[0]}"
                    + (f" (and {bad[1:]})" if len(bad) > 1 else "") + ", not a power of two: the mean sum/N has no exact "
                    "fixed-point value (only N = 2**k is a shift of the binary point); use a power-of-two window"
                    + (" or 'valid' padding (with 'same', edge windows hold fewer inputs)" if self.padding != "valid" else ""))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PoolLayer):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ geometry
    @property
    def out_shape(self) -> tuple[int, ...]:
        nd = len(self.in_shape) - 1
        return tuple(_conv_out_len(self.in_shape[a], self.pool_size[a], self.strides[a], self.padding, a)[0]
                     for a in range(nd)) + (self.in_shape[-1],)

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def window(self) -> int:
        """N: the number of positions of a full window."""
        return int(np.prod(self.pool_size))

    def windows(self) -> list[list[int]]:
        """Per output position (row-major over the output's spatial axes), the flat spatial indices of the valid
        (unpadded) inputs of its window, in window order."""
        w = self.__dict__.get("_windows")
        if w is None:
            nd = len(self.in_shape) - 1
            sp = self.in_shape[:nd] if nd == 2 else (1,) + self.in_shape[:1]
            osp = self.out_shape[:nd] if nd == 2 else (1,) + self.out_shape[:1]
            ps = self.pool_size if nd == 2 else (1,) + self.pool_size
            st = self.strides if nd == 2 else (1,) + self.strides
            pads = [_conv_out_len(self.in_shape[a], self.pool_size[a], self.strides[a], self.padding, a)[1]
                    for a in range(nd)]
            pads = pads if nd == 2 else [0] + pads
            w = []
            for oy in range(osp[0]):
                for ox in range(osp[1]):
                    idx = []
                    for dy in range(ps[0]):
                        iy = oy * st[0] - pads[0] + dy
                        for dx in range(ps[1]):
                            ix = ox * st[1] - pads[1] + dx
                            if 0 <= iy < sp[0] and 0 <= ix < sp[1]:
                                idx.append(iy * sp[1] + ix)
                    w.append(idx)
            self.__dict__["_windows"] = w
        return [list(v) for v in w]

    def gather_index(self) -> np.ndarray:
        """(n_out, N) flat input indices (channel included) of every output's window; a window cut by padding
        repeats its first valid input (a max is unchanged by repeats; averages use ``dense_view``)."""
        C = self.in_shape[-1]
        N = self.window
        rows = []
        for idx in self.windows():
            full = idx + [idx[0]] * (N - len(idx))
            for c in range(C):
                rows.append([i * C + c for i in full])
        return np.array(rows, dtype=np.int64).reshape(self.n_out, N)

    def _divisors(self) -> list[int]:
        return [self.window if self.count_pad else len(idx) for idx in self.windows()]

    def shifts(self) -> list[int]:
        """Average pooling: k per output position, the divisor being 2**k."""
        return [d.bit_length() - 1 for d in self._divisors()]

    # ------------------------------------------------------------------ the dense-layer face (what QModel reads)
    @property
    def weight_format(self) -> FixedFormat:
        """max: the unit weight (each input passes unchanged); avg: the format of the weights 2**-k_j."""
        if self.mode == "max":
            return FixedFormat(1, 1, False)
        ks = self.shifts()
        kmax = max(ks)
        return FixedFormat.covering(0, 1 << (kmax - min(ks)), kmax, signed=False)

    @property
    def bias(self) -> np.ndarray:
        return np.zeros(self.n_out, dtype=np.int64)

    @property
    def bias_format(self) -> FixedFormat:
        return FixedFormat(2, 2, True)

    @property
    def weights(self) -> np.ndarray:
        """Average pooling: the dense view's (n_in, n_out) matrix of codes 2**(kmax - k_j) of ``weight_format``."""
        if self.mode != "avg":
            raise QModelError(f"layer {self.name}: max pooling is not linear; it has no weight matrix")
        w = self.__dict__.get("_dense")
        if w is None:
            C = self.in_shape[-1]
            ks = self.shifts()
            kmax = max(ks)
            w = np.zeros((self.n_in, self.n_out), dtype=np.int64)
            for p, (idx, k) in enumerate(zip(self.windows(), ks)):
                for i in idx:
                    for c in range(C):
                        w[i * C + c, p * C + c] = 1 << (kmax - k)
            w.setflags(write=False)
            self.__dict__["_dense"] = w
        return w

    def dense_view(self) -> DenseLayer:
        """Average pooling as the DenseLayer it is (weights 2**-k_j, zero bias, same formats); max pooling has none."""
        v = self.__dict__.get("_view")
        if v is None:
            v = DenseLayer(self.name, self.weights, self.weight_format, self.bias, self.bias_format, self.activation,
                           self.output_format, self.accum_format, self.product_format)
            self.__dict__["_view"] = v
        return v

    def exact_frac(self, in_fmt: FixedFormat) -> int:
        return in_fmt.frac + self.weight_format.frac

    def accum_bounds(self, in_lo: Sequence[int], in_hi: Sequence[int], in_fmt: FixedFormat) -> dict[str, Any]:
        """Interval analysis (see DenseLayer.accum_bounds). max: out_j in [max lo_i, max hi_i] over the window;
        a partial max (any subset of the window, any order) lies in [min lo_i, max hi_i]."""
        if self.mode == "avg":
            return self.dense_view().accum_bounds(in_lo, in_hi, in_fmt)
        lo_out, hi_out, plo = [], [], []
        for row in self.gather_index().tolist():
            lo_out.append(max(int(in_lo[i]) for i in row))
            hi_out.append(max(int(in_hi[i]) for i in row))
            plo.append(min(int(in_lo[i]) for i in row))
        used = sorted({i for row in self.gather_index().tolist() for i in row})
        return {"frac": in_fmt.frac, "lo": lo_out, "hi": hi_out, "part_lo": plo, "part_hi": list(hi_out),
                "pmin": min(int(in_lo[i]) for i in used), "pmax": max(int(in_hi[i]) for i in used)}

    # ------------------------------------------------------------------ arithmetic
    def apply_codes(self, codes: np.ndarray, in_fmt: FixedFormat | str) -> np.ndarray:
        """The layer on integer codes: (N, n_in) codes of ``in_fmt`` -> (N, n_out) codes of ``output_format``
        (max or exact sum at the exact LSB, relu, requantization). Needs the formats QModel fills in."""
        in_fmt = FixedFormat.parse(in_fmt)
        if self.accum_format is None or self.output_format is None:
            raise QModelError(f"layer {self.name}: formats not filled in; take the layer from a QModel")
        a = np.asarray(codes)
        if a.ndim != 2 or a.shape[1] != self.n_in:
            raise QModelError(f"layer {self.name}: expected codes of shape (N, {self.n_in}), got {a.shape}")
        if a.dtype != object:
            a = a.astype(np.int64)
        fa = self.exact_frac(in_fmt)
        if self.mode == "max":
            acc = a[:, self.gather_index()].max(axis=2)
        else:
            amax = max(abs(in_fmt.min_code), abs(in_fmt.max_code))
            big = a.dtype == object or amax * self.window * (1 << self.weight_format.frac) >= 1 << 62
            w = self.weights.astype(object) if big else self.weights
            acc = (a.astype(object) if big else a) @ w
        acc = acc << (self.accum_format.frac - fa) if self.accum_format.frac > fa else acc
        if self.activation == "relu":
            acc = np.where(acc < 0, 0, acc)
        return requantize(acc, self.accum_format, self.output_format)[0]

    # ------------------------------------------------------------------ (de)serialisation
    def replace(self, **kw: Any) -> "PoolLayer":
        d = dict(name=self.name, mode=self.mode, in_shape=self.in_shape, pool_size=self.pool_size, strides=self.strides,
                 padding=self.padding, count_pad=self.count_pad, activation=self.activation,
                 output_format=self.output_format, accum_format=self.accum_format, product_format=self.product_format)
        d.update(kw)
        return PoolLayer(**d)

    def describe(self) -> str:
        glob = "global " if tuple(self.pool_size) == tuple(self.in_shape[:-1]) and self.padding == "valid" else ""
        return (f"{glob}{self.mode} pool{len(self.in_shape) - 1}d {self.in_shape} -> {self.out_shape}, window "
                f"{self.pool_size}, strides {self.strides}, {self.padding}" + (", count_pad" if self.count_pad else "")
                + f", {self.activation}")

    def to_dict(self) -> dict:
        s = lambda f: None if f is None else str(f)  # noqa: E731
        return {"name": self.name, "kind": "pool", "mode": self.mode, "in_shape": list(self.in_shape),
                "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding if isinstance(self.padding, str) else [list(p) for p in self.padding],
                "count_pad": self.count_pad, "product_format": s(self.product_format),
                "accum_format": s(self.accum_format), "activation": self.activation,
                "output_format": s(self.output_format)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PoolLayer":
        pad = d.get("padding", "valid")
        return cls(name=d["name"], mode=d["mode"], in_shape=tuple(d["in_shape"]), pool_size=tuple(d["pool_size"]),
                   strides=None if d.get("strides") is None else tuple(d["strides"]),
                   padding=pad if isinstance(pad, str) else tuple(tuple(p) for p in pad),
                   count_pad=bool(d.get("count_pad", False)), activation=d.get("activation", "linear"),
                   output_format=d.get("output_format"), accum_format=d.get("accum_format"),
                   product_format=d.get("product_format"))


Layer = DenseLayer | AffineLayer | ConvLayer | PoolLayer
# the layer kinds a QModel document may hold: adding an op is one class here plus one handler per back-end
LAYER_KINDS: Mapping[str, type] = MappingProxyType({"dense": DenseLayer, "affine": AffineLayer, "conv": ConvLayer,
                                                    "pool": PoolLayer})


def layer_from_dict(d: Mapping[str, Any]) -> Layer:
    kind = d.get("kind", "dense")
    cls = LAYER_KINDS.get(kind)
    if cls is None:
        raise QModelError(f"layer {d.get('name')!r}: kind {kind!r} not supported (known: {', '.join(LAYER_KINDS)})")
    return cls.from_dict(d)


@dataclass(frozen=True)
class ScoreSpec:
    """The anomaly-score block. kind "mse": sum_j m_j (xq_j - out_j)**2 (masked by ``gate``, see module doc);
    kind "mu2": sum_i out_i**2; kind "out": the single network output itself (a student network that regresses an
    anomaly score, CICADA-style), requantized to ``format`` (default: the output format). Formats left None are filled with exact ones by QModel; ``format`` is the
    score's output format, in which thresholds are given."""

    kind: str
    gate: tuple[int, ...] | None = None
    diff_format: FixedFormat | None = None
    square_format: FixedFormat | None = None
    accum_format: FixedFormat | None = None
    format: FixedFormat | None = None

    def __post_init__(self) -> None:
        if self.kind not in SCORE_KINDS:
            raise QModelError(f"score kind {self.kind!r} not supported; use one of {SCORE_KINDS}")
        if self.gate is not None:
            object.__setattr__(self, "gate", tuple(int(g) for g in self.gate))
            if self.kind != "mse":
                raise QModelError("a gate (object mask) applies only to the 'mse' score")
        for k in ("diff_format", "square_format", "accum_format", "format"):
            object.__setattr__(self, k, _fmt(getattr(self, k)))

    def to_dict(self) -> dict:
        s = lambda f: None if f is None else str(f)  # noqa: E731
        return {"kind": self.kind, "gate": None if self.gate is None else list(self.gate),
                "diff_format": s(self.diff_format), "square_format": s(self.square_format),
                "accum_format": s(self.accum_format), "format": s(self.format)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ScoreSpec":
        return cls(kind=d["kind"], gate=d.get("gate"), diff_format=d.get("diff_format"), square_format=d.get("square_format"),
                   accum_format=d.get("accum_format"), format=d.get("format"))


# ---------------------------------------------------------------------- the model
@dataclass(frozen=True)
class QModel:
    """A quantized model plus its input scaling, score block and threshold comparators (see module doc).

    Construct with ``QModel(input=InputSpec(...), input_quantizer=..., layers=[DenseLayer(...)], score=ScoreSpec(...)
    or None, thresholds=(...), name=..., warnings=[...], meta={...})``; unspecified (None) accumulator, product
    and score formats are filled with exact ones, and everything is validated. Immutable: use
    ``with_thresholds`` / ``replace_formats`` for variants.
    """

    input: InputSpec
    input_quantizer: FixedFormat
    layers: tuple[Layer, ...]
    score: ScoreSpec | None = None
    thresholds: tuple[int, ...] = ()
    name: str = "qmodel"
    warnings: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    scaled_format: FixedFormat | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_quantizer", FixedFormat.parse(self.input_quantizer))
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "warnings", tuple(str(w) for w in self.warnings))
        object.__setattr__(self, "thresholds", tuple(_check_int(t, "threshold") for t in self.thresholds))
        object.__setattr__(self, "meta", dict(self.meta))
        if not self.layers:
            raise QModelError("a QModel needs at least one layer")
        n = self.input.n
        sf = self.input.scaled_format()
        if self.scaled_format is not None and FixedFormat.parse(self.scaled_format) != sf:
            raise QModelError(f"stored scaled_format {self.scaled_format} differs from the derived exact format {sf}")
        object.__setattr__(self, "scaled_format", sf)
        # network input quantizer
        lo, hi = self.input.scaled_bounds()
        lo, hi = _rq_bounds(lo, hi, sf, self.input_quantizer)
        fmt = self.input_quantizer
        xq_bounds = (lo, hi)
        new_layers = []
        names: set[str] = set()
        for L in self.layers:
            if not isinstance(L, tuple(LAYER_KINDS.values())):
                raise QModelError(f"layers must be layer ops ({', '.join(c.__name__ for c in LAYER_KINDS.values())}), "
                                  f"got {type(L).__name__}")
            if L.name in names or L.name.startswith("score") or L.name in ("input", "scaled", "xq"):
                raise QModelError(f"layer name {L.name!r} is duplicated or reserved")
            names.add(L.name)
            if L.n_in != len(lo):
                raise QModelError(f"layer {L.name}: expects {L.n_in} inputs, previous tensor has {len(lo)}")
            ab = L.accum_bounds(lo, hi, fmt)
            exact_acc = FixedFormat.covering(min(ab["part_lo"]), max(ab["part_hi"]), ab["frac"])
            prod = FixedFormat.covering(ab["pmin"], ab["pmax"], fmt.frac + L.weight_format.frac,
                                        signed=(ab["pmin"] < 0) or fmt.signed or L.weight_format.signed)
            if L.product_format is not None and L.product_format != prod:
                raise QModelError(f"layer {L.name}: stored product_format {L.product_format} differs from derived {prod}")
            acc = L.accum_format or exact_acc
            if L.requires_exact_accum and not _holds(acc, ab["part_lo"], ab["part_hi"], ab["frac"]):
                raise QModelError(f"layer {L.name} ({L.kind}): accumulator {acc} does not hold the exact values; "
                                  f"it needs {exact_acc} (or leave accum_format unset)")
            out = L.output_format or acc
            lo, hi = _layer_out_bounds(L, ab, acc, out)
            new_layers.append(L.replace(accum_format=acc, product_format=prod, output_format=out))
            fmt = out
        object.__setattr__(self, "layers", tuple(new_layers))
        if self.score is not None:
            object.__setattr__(self, "score", self._finish_score(self.score, xq_bounds, (lo, hi)))
        _check_threshold_range(self.thresholds, self.score)
        meta_bad = [k for k in self.meta if not isinstance(k, str)]
        if meta_bad:
            raise QModelError("meta keys must be strings")
        try:
            json.dumps(self.meta)
        except TypeError as e:
            raise QModelError(f"meta must be JSON-serialisable: {e}") from None

    # ------------------------------------------------------------------ score formats
    def _finish_score(self, sc: ScoreSpec, xq_b: tuple[list[int], list[int]], out_b: tuple[list[int], list[int]]) -> ScoreSpec:
        an = self._score_analysis(sc, xq_b, out_b)
        return ScoreSpec(kind=sc.kind, gate=sc.gate, diff_format=an["diff"], square_format=an["square"],
                         accum_format=an["accum"], format=an["format"])

    def score_analysis(self) -> dict[str, Any]:
        """Interval analysis of the score block: the configured formats (``diff``, ``square``, ``accum``,
        ``format``), the exact formats of each step given the configured previous step (``exact_diff``,
        ``exact_square``, ``exact_accum``), and whether each configured format is lossless (``diff_ok``,
        ``square_ok``, ``accum_ok``: holds every value / partial sum)."""
        if self.score is None:
            raise QModelError("this QModel has no score block")
        b = self.tensor_bounds()
        return self._score_analysis(self.score, b["xq"], b[f"{self.layers[-1].name}.out"])

    def _score_analysis(self, sc: ScoreSpec, xq_b: tuple[list[int], list[int]], out_b: tuple[list[int], list[int]]) -> dict[str, Any]:
        xf, of = self.input_quantizer, self.output_format
        if sc.kind == "out":  # the single network output is the score (a regression of an anomaly score)
            if self.n_outputs != 1:
                raise QModelError(f"'out' score needs a single network output, got {self.n_outputs}")
            if sc.diff_format is not None or sc.square_format is not None or sc.accum_format is not None:
                raise QModelError("'out' score has only a format (no diff, square or accumulator)")
            out = sc.format or of
            return {"diff": None, "exact_diff": None, "diff_ok": True, "square": None, "exact_square": None,
                    "square_ok": True, "accum": None, "exact_accum": None, "accum_ok": True, "format": out,
                    "part_lo": out_b[0][0], "part_hi": out_b[1][0], "exact_format": of,
                    "format_ok": _holds(out, out_b[0], out_b[1], of.frac)}
        if sc.kind == "mse":
            if self.n_outputs != self.n_inputs:
                raise QModelError(f"'mse' score needs n_outputs == n_inputs, got {self.n_outputs} != {self.n_inputs}")
            if sc.gate is not None:
                if len(sc.gate) != self.n_inputs or not all(0 <= g < self.n_inputs for g in sc.gate):
                    raise QModelError(f"score gate must list {self.n_inputs} feature indices in [0, {self.n_inputs})")
            fd = max(xf.frac, of.frac)
            dlo = [(_align(a, xf.frac, fd) - _align(d, of.frac, fd)) for a, d in zip(xq_b[0], out_b[1])]
            dhi = [(_align(b, xf.frac, fd) - _align(c, of.frac, fd)) for b, c in zip(xq_b[1], out_b[0])]
            exact_d = FixedFormat.covering(min(dlo), max(dhi), fd)
            diff = sc.diff_format or exact_d
            diff_ok = _holds(diff, dlo, dhi, fd)
            dlo, dhi = _rq_bounds(dlo, dhi, exact_d, diff)
            base, blo, bhi = diff, dlo, dhi
        else:
            if sc.diff_format is not None:
                raise QModelError("'mu2' score has no diff_format")
            diff = exact_d = None
            diff_ok = True
            base, blo, bhi = of, out_b[0], out_b[1]
        fs = 2 * base.frac
        slo = [0 if a <= 0 <= b else min(a * a, b * b) for a, b in zip(blo, bhi)]
        shi = [max(a * a, b * b) for a, b in zip(blo, bhi)]
        exact_sq = FixedFormat.covering(min(slo), max(shi), fs, signed=False)
        sq = sc.square_format or exact_sq
        square_ok = _holds(sq, slo, shi, fs)
        slo, shi = _rq_bounds(slo, shi, exact_sq, sq)
        # bounds of any partial sum (masked terms are 0), any order
        tlo = sum(min(0, v) for v in slo)
        thi = sum(max(0, v) for v in shi)
        exact_acc = FixedFormat.covering(tlo, max(thi, 0), sq.frac, signed=tlo < 0)
        acc = sc.accum_format or exact_acc
        out = sc.format or acc
        return {"diff": diff, "exact_diff": exact_d, "diff_ok": diff_ok, "square": sq, "exact_square": exact_sq,
                "square_ok": square_ok, "accum": acc, "exact_accum": exact_acc, "accum_ok": _holds(acc, [tlo], [thi], sq.frac),
                "format": out, "part_lo": tlo, "part_hi": thi}

    # ------------------------------------------------------------------ properties
    @property
    def n_inputs(self) -> int:
        return self.input.n

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].n_out

    @property
    def output_format(self) -> FixedFormat:
        return self.layers[-1].output_format  # type: ignore[return-value]

    @property
    def score_format(self) -> FixedFormat | None:
        return None if self.score is None else self.score.format

    @property
    def n_thresholds(self) -> int:
        return len(self.thresholds)

    def tensor_bounds(self) -> dict[str, tuple[list[int], list[int]]]:
        """Per-feature code bounds (lo, hi) from the interval analysis: ``scaled``, ``xq``, and per layer
        ``<name>.accum`` (final sums, at the exact accumulator's frac), ``<name>.part`` (any partial sum, same
        frac), ``<name>.out`` (codes of the output format). Computed once per QModel (it is immutable)."""
        cached = self.__dict__.get("_tensor_bounds")
        if cached is None:
            cached = self._tensor_bounds()
            self.__dict__["_tensor_bounds"] = cached
        return {k: (list(v[0]), list(v[1])) for k, v in cached.items()}

    def _tensor_bounds(self) -> dict[str, tuple[list[int], list[int]]]:
        lo, hi = self.input.scaled_bounds()
        out: dict[str, tuple[list[int], list[int]]] = {"scaled": (lo, hi)}
        lo, hi = _rq_bounds(lo, hi, self.scaled_format, self.input_quantizer)
        out["xq"] = (lo, hi)
        fmt = self.input_quantizer
        for L in self.layers:
            ab = L.accum_bounds(lo, hi, fmt)
            out[f"{L.name}.accum"] = (ab["lo"], ab["hi"])
            out[f"{L.name}.part"] = (ab["part_lo"], ab["part_hi"])
            lo, hi = _layer_out_bounds(L, ab, L.accum_format, L.output_format)
            out[f"{L.name}.out"] = (lo, hi)
            fmt = L.output_format
        return out

    def layer_exact(self, i: int) -> bool:
        """True if layer i's accumulator holds every partial sum exactly (no rounding or overflow possible inside
        it, in any summation order): then the emulator and any adder tree give the plain exact sum."""
        L = self.layers[i]
        in_fmt = self.input_quantizer if i == 0 else self.layers[i - 1].output_format
        lo, hi = self.tensor_bounds()["xq" if i == 0 else f"{self.layers[i - 1].name}.out"]
        ab = L.accum_bounds(lo, hi, in_fmt)
        return _holds(L.accum_format, ab["part_lo"], ab["part_hi"], ab["frac"])

    def tensor_formats(self) -> dict[str, FixedFormat]:
        """Every tensor's format, in data-flow order: ``input``, ``scaled``, ``xq``, then per layer
        ``<name>.product``, ``<name>.accum``, ``<name>.out``, then ``score.diff`` (mse), ``score.square``,
        ``score.accum``, ``score``."""
        t: dict[str, FixedFormat] = {"input": self.input.format, "scaled": self.scaled_format, "xq": self.input_quantizer}
        for L in self.layers:
            t[f"{L.name}.product"] = L.product_format
            t[f"{L.name}.accum"] = L.accum_format
            t[f"{L.name}.out"] = L.output_format
        if self.score is not None:
            if self.score.diff_format is not None:
                t["score.diff"] = self.score.diff_format
            if self.score.square_format is not None:
                t["score.square"] = self.score.square_format
                t["score.accum"] = self.score.accum_format
            t["score"] = self.score.format
        return t  # type: ignore[return-value]

    # ------------------------------------------------------------------ thresholds
    def with_thresholds(self, codes: Iterable[int]) -> "QModel":
        """A copy with new threshold codes (integers in the score format); trigger bit k = score > codes[k]."""
        if self.score is None:
            raise QModelError("this QModel has no score block; thresholds need one")
        return self._copy(thresholds=tuple(_check_int(c, "threshold") for c in np.atleast_1d(np.asarray(codes, dtype=object)).tolist()))

    def threshold_code(self, value: float | Fraction) -> int:
        """The code c with (score > value) <=> (score_code > c) for every representable score: floor(value / lsb)."""
        if self.score is None:
            raise QModelError("this QModel has no score block")
        return math.floor(Fraction(value) / self.score.format.lsb)

    def thresholds_real(self) -> list[float]:
        """Threshold codes as real values of the score format."""
        if self.score is None:
            return []
        return [float(Fraction(c) * self.score.format.lsb) for c in self.thresholds]

    def with_warnings(self, extra: Iterable[str]) -> "QModel":
        return self._copy(warnings=tuple(self.warnings) + tuple(extra))

    def replace_formats(self, **layer_formats: Mapping[str, Any]) -> "QModel":
        """A copy with some formats changed: ``replace_formats(dense1={"accum_format": "ap_fixed<20,8,RND,SAT>"},
        score={"format": "ap_ufixed<16,8,TRN,SAT>"}, input_quantizer="ap_fixed<...>")``. Derived formats of
        later tensors are recomputed; thresholds are kept as codes."""
        d = self.to_dict()
        for k, v in layer_formats.items():
            if k == "input_quantizer":
                d["input_quantizer"] = str(FixedFormat.parse(v))  # type: ignore[arg-type]
                continue
            target = d["score"] if k == "score" else next((L for L in d["layers"] if L["name"] == k), None)
            if target is None:
                raise KeyError(f"no layer named {k!r} (layers: {[L.name for L in self.layers]}, or 'score')")
            for fk, fv in dict(v).items():
                if fk not in target or not fk.endswith("format"):
                    raise KeyError(f"{k}: unknown format field {fk!r}")
                target[fk] = None if fv is None else str(FixedFormat.parse(fv))
        # let exact formats downstream be recomputed: drop derived product formats
        for L in d["layers"]:
            L["product_format"] = None
        return QModel.from_dict(d)

    def _copy(self, **changes: Any) -> "QModel":
        d = {"input": self.input, "input_quantizer": self.input_quantizer, "layers": self.layers, "score": self.score,
             "thresholds": self.thresholds, "name": self.name, "warnings": self.warnings, "meta": copy.deepcopy(dict(self.meta)),
             "scaled_format": self.scaled_format}
        d.update(changes)
        return QModel(**d)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "name": self.name,
            "input": self.input.to_dict(),
            "scaled_format": str(self.scaled_format),
            "input_quantizer": str(self.input_quantizer),
            "layers": [L.to_dict() for L in self.layers],
            "score": None if self.score is None else self.score.to_dict(),
            "thresholds": [int(t) for t in self.thresholds],
            "warnings": list(self.warnings),
            "meta": copy.deepcopy(dict(self.meta)),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "QModel":
        if not isinstance(d, Mapping):
            raise QModelError(f"not a QModel document: expected a mapping, got {type(d).__name__}")
        if d.get("schema") not in SCHEMAS_READ:
            raise QModelError(f"not a QModel document: schema {d.get('schema')!r}, expected one of {list(SCHEMAS_READ)}")
        if d.get("schema") == "l1ad.qmodel/1" and any(L.get("kind", "dense") != "dense" for L in d.get("layers", ())):
            raise QModelError("a l1ad.qmodel/1 document holds dense layers only")
        try:
            inp = d["input"]
            return cls(
                input=InputSpec(inp["format"], np.array(inp["offset"], dtype=object), np.array(inp["shift"], dtype=object)),
                input_quantizer=d["input_quantizer"],
                layers=[layer_from_dict(L) for L in d["layers"]],
                score=None if d.get("score") is None else ScoreSpec.from_dict(d["score"]),
                thresholds=tuple(d.get("thresholds", ())),
                name=d.get("name", "qmodel"),
                warnings=tuple(d.get("warnings", ())),
                meta=d.get("meta", {}),
                scaled_format=d.get("scaled_format"),
            )
        except KeyError as e:
            raise QModelError(f"QModel document lacks field {e}") from None

    def to_json(self) -> str:
        """Human-readable JSON: one weight row per line."""
        d = self.to_dict()
        text = json.dumps(d, indent=1)
        # compact the integer lists (weights rows, bias, offsets) onto single lines
        import re

        return re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]", lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)

    def save(self, path: str | Path) -> Path:
        """Write the JSON document atomically; returns the path."""
        from l1ad.trigger.atomic import write_text_atomic

        return write_text_atomic(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "QModel":
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise QModelError(f"{p}: not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise QModelError(f"{p}: expected a QModel document (a JSON object with schema {SCHEMA!r}), "
                              f"got a JSON {type(d).__name__}")
        try:
            return cls.from_dict(d)
        except QModelError as e:
            raise QModelError(f"{p}: {e}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QModel):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def summary(self) -> str:
        """A short human-readable description of every tensor's format."""
        lines = [f"QModel {self.name!r}: {self.n_inputs} -> " + " -> ".join(str(L.n_out) for L in self.layers)]
        for k, f in self.tensor_formats().items():
            lines.append(f"  {k:<20s} {f}")
        if self.thresholds:
            lines.append(f"  thresholds (codes)   {list(self.thresholds)}")
        for w in self.warnings:
            lines.append(f"  WARNING: {w}")
        return "\n".join(lines)


# ---------------------------------------------------------------------- small helpers
def _check_threshold_range(codes: Sequence[int], score: "ScoreSpec | None") -> None:
    """Threshold codes must lie in [min_code - 1, max_code] of the score format: score > code then compares two
    values of that format, except min_code - 1, the one meaningful code below it (the bit always fires)."""
    if not codes:
        return
    if score is None:
        raise QModelError(f"thresholds {list(codes)} need a score block; this QModel has none")
    f = score.format
    bad = [c for c in codes if not f.min_code - 1 <= c <= f.max_code]
    if bad:
        raise QModelError(f"threshold code(s) {bad} lie outside the score format {f}: codes must be in "
                          f"[{f.min_code - 1}, {f.max_code}] (real values [{float(f.min_value):g}, {float(f.max_value):g}]; "
                          f"{f.min_code - 1} always fires)")


def _check_int(v: Any, what: str) -> int:
    if isinstance(v, (bool, np.bool_)):
        raise QModelError(f"{what} must be an integer code, got {v!r}")
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return int(v)
    raise QModelError(f"{what} must be an integer code, got {v!r}")


def _holds(fmt: FixedFormat, lo: Sequence[int], hi: Sequence[int], frac: int) -> bool:
    """True if codes in [lo, hi] at `frac` fraction bits are represented in fmt without any loss."""
    if fmt.frac < frac:  # fraction bits would be dropped
        return False
    s = fmt.frac - frac
    fmin = fmt.min_code + (1 if (fmt.overflow == "SAT_SYM" and fmt.signed) else 0)  # SAT_SYM maps min -> -max
    return fmin <= (min(lo) << s) and (max(hi) << s) <= fmt.max_code


def _layer_out_bounds(L: DenseLayer, ab: Mapping[str, Any], acc: FixedFormat, out: FixedFormat) -> tuple[list[int], list[int]]:
    """Per-output code bounds of a layer's output given its accumulator analysis `ab`."""
    fa = ab["frac"]
    if _holds(acc, ab["part_lo"], ab["part_hi"], fa):
        exact = FixedFormat.covering(min(ab["part_lo"]), max(ab["part_hi"]), fa)
        a_lo, a_hi = _rq_bounds(ab["lo"], ab["hi"], exact, acc)
    else:
        a_lo, a_hi = [acc.min_code] * L.n_out, [acc.max_code] * L.n_out
    if L.activation == "relu":
        a_lo, a_hi = [max(0, v) for v in a_lo], [max(0, v) for v in a_hi]
    return _rq_bounds(a_lo, a_hi, acc, out)
