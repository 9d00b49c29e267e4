"""Building blocks of the generated RTL: a small Verilog module builder that tracks the exact integer range of
every signal, and the fixed-point operations the network needs (requantisation with every ap_fixed rounding and
overflow mode, constant-coefficient products as canonical-signed-digit shift-adds or multiplier inference,
pipelined adder trees).

Every signal is a Verilog vector that holds an integer *code*; its real value is ``code * 2**-frac``. The
generator knows each signal's exact code interval [lo, hi] (from the formats and the constant weights) and gives
the wire the fewest bits that hold it: two's complement when lo < 0, plain binary otherwise. Operands are
extended (sign- or zero-) to the width of the operation explicitly, so the output is width-clean under
``verilator --lint-only -Wall``. Bits that the arithmetic drops on purpose (the fraction bits removed by
rounding, the high bits removed by a wrap) are collected per module into one ``unused_*`` sink wire, the
Verilator idiom for intentionally unused bits; nothing else is waived.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from l1ad.firmware.fixed import FixedFormat
from l1ad.firmware.fixed import requantize as _requantize

# ---------------------------------------------------------------------------------------------- integers


def bits_for(lo: int, hi: int) -> tuple[int, bool]:
    """(width, signed): the narrowest two's complement (lo < 0) or binary (lo >= 0) vector holding [lo, hi]."""
    if lo > hi:
        raise ValueError(f"empty interval [{lo}, {hi}]")
    if lo < 0:
        w = max(_sbits(lo), _sbits(hi))
        return w, True
    return max(1, hi.bit_length()), False


def _sbits(v: int) -> int:
    return (v.bit_length() if v >= 0 else (-v - 1).bit_length()) + 1


def width_in(lo: int, hi: int, signed: bool) -> int:
    """Bits needed to hold [lo, hi] in a vector of the given signedness (signed may hold nonnegative ranges)."""
    if signed:
        return max(_sbits(lo), _sbits(hi))
    if lo < 0:
        raise ValueError("negative values need a signed vector")
    return max(1, hi.bit_length())


def csd(value: int) -> list[tuple[int, int]]:
    """Canonical signed digit form of an integer: [(shift, +1/-1), ...], sum of sign * 2**shift == value,
    no two adjacent non-zero digits (the minimum number of non-zero digits)."""
    out = []
    k = 0
    v = value
    while v != 0:
        if v & 1:
            d = 2 - (v & 3)  # +1 if v % 4 == 1, -1 if v % 4 == 3
            out.append((k, d))
            v -= d
        v >>= 1
        k += 1
    return out


# ---------------------------------------------------------------------------------------------- signals


@dataclass(frozen=True)
class Sig:
    """A named vector holding integer codes in [lo, hi]; value = code * 2**-frac."""

    name: str
    width: int
    signed: bool
    lo: int
    hi: int
    frac: int = 0
    #: the value as a linear form of leaf signals, ((leaf, coefficient, leaf_lo, leaf_hi), ...); empty: the
    #: signal is its own leaf. Sums of CSD digits of one weight then get the exact interval of w * x, not the
    #: looser sum of the digits' intervals.
    form: tuple = ()

    @property
    def const(self) -> bool:
        return self.lo == self.hi

    def linear(self) -> dict[str, tuple[int, int, int]]:
        if self.form:
            return {n: (c, lo, hi) for n, c, lo, hi in self.form}
        return {self.name: (1, self.lo, self.hi)}


def combine(parts: Iterable[tuple[Sig, int]], const: int = 0) -> tuple[tuple, int, int]:
    """The linear form of sum(mult * sig) + const and its exact interval (const as the leaf '1')."""
    acc: dict[str, list[int]] = {}
    for sig, mult in parts:
        for n, (c, lo, hi) in sig.linear().items():
            e = acc.setdefault(n, [0, lo, hi])
            e[0] += c * mult
    if const:
        e = acc.setdefault("1'b1", [0, 1, 1])
        e[0] += const
    lo = sum(min(c * a, c * b) for c, a, b in acc.values())
    hi = sum(max(c * a, c * b) for c, a, b in acc.values())
    form = tuple(sorted((n, c, a, b) for n, (c, a, b) in acc.items() if c))
    return form, lo, hi


@dataclass(frozen=True)
class Term:
    """sign * (sig << shift): a leaf or a partial sum in an adder tree."""

    sig: Sig
    shift: int = 0
    sign: int = 1

    @property
    def lo(self) -> int:
        return (self.sig.lo if self.sign > 0 else -self.sig.hi) << self.shift

    @property
    def hi(self) -> int:
        return (self.sig.hi if self.sign > 0 else -self.sig.lo) << self.shift


class Module:
    """Builds one Verilog module. Records which bits of each signal are read so that every bit that is
    dropped on purpose ends up in the module's ``unused_bits`` sink (no lint waivers needed)."""

    def __init__(self, name: str, doc: Sequence[str] = ()):
        self.name = name
        self.doc = list(doc)
        self.ports: list[tuple[str, str, int, str]] = []  # (dir, name, width, comment)
        self.body: list[str] = []
        self.seq: list[str] = []  # nonblocking assignments in the clocked block
        self.reset_seq: list[tuple[str, str]] = []  # (lhs, reset value) for registers with a synchronous reset
        self.reset_rhs: list[tuple[str, str]] = []  # (lhs, rhs) of those registers
        self.instances: list[str] = []
        self._used: dict[str, set[int]] = {}
        self._width: dict[str, int] = {}
        self._names: set[str] = set()
        self._exprs: dict[tuple[int, str], str] = {}
        self.has_clk = False
        self.has_rst = False

    # -------------------------------------------------------------- names and usage
    def _new(self, name: str, width: int) -> str:
        if name in self._names:
            raise ValueError(f"duplicate signal {name!r} in module {self.name}")
        self._names.add(name)
        self._width[name] = width
        self._used[name] = set()
        return name

    def use(self, sig: Sig | str, hi: int | None = None, lo: int = 0) -> None:
        name = sig if isinstance(sig, str) else sig.name
        if name not in self._used:
            return
        w = self._width[name]
        hi = w - 1 if hi is None else hi
        self._used[name].update(range(lo, hi + 1))

    def ref(self, sig: Sig) -> str:
        self.use(sig)
        return sig.name

    def bit(self, sig: Sig, i: int) -> str:
        self.use(sig, i, i)
        return f"{sig.name}[{i}]" if sig.width > 1 else sig.name

    def bits(self, sig: Sig | str, hi: int, lo: int) -> str:
        name = sig if isinstance(sig, str) else sig.name
        width = self._width.get(name, hi + 1)
        self.use(name, hi, lo)
        if lo == 0 and hi == width - 1:
            return name
        return f"{name}[{hi}:{lo}]" if hi != lo else f"{name}[{hi}]"

    # -------------------------------------------------------------- declarations
    def clk(self) -> None:
        if not self.has_clk:
            self.ports.insert(0, ("input", "clk", 1, "clock"))
            self._new("clk", 1)
            self.use("clk")
            self.has_clk = True

    def rst(self) -> None:
        if not self.has_rst:
            self.clk()
            self.ports.insert(1, ("input", "rst", 1, "synchronous reset, active high"))
            self._new("rst", 1)
            self.use("rst")
            self.has_rst = True

    def input(self, name: str, width: int, comment: str = "") -> str:
        self.ports.append(("input", name, width, comment))
        return self._new(name, width)

    def output(self, name: str, width: int, expr: str, comment: str = "") -> str:
        self.ports.append(("output", name, width, comment))
        self._names.add(name)
        self.body.append(f"assign {name} = {expr};")
        return name

    def comment(self, text: str) -> None:
        self.body.append(f"// {text}")

    def wire(self, name: str, width: int, expr: str, comment: str = "") -> str:
        self._new(name, width)
        c = f"  // {comment}" if comment else ""
        self.body.append(f"wire {_rng(width)}{name} = {expr};{c}")
        return name

    def net(self, name: str, width: int, comment: str = "") -> str:
        """A wire driven by a module instance (declared here, connected in the instance text)."""
        self._new(name, width)
        c = f"  // {comment}" if comment else ""
        self.body.append(f"wire {_rng(width)}{name};{c}")
        return name

    def shared_wire(self, name: str, width: int, expr: str, comment: str = "") -> str:
        """Like wire, but an identical expression of the same width declared before is reused (common
        subexpression elimination: e.g. the same pair of inputs summed for several neurons). Returns the name."""
        key = (width, expr)
        if key in self._exprs:
            return self._exprs[key]
        self._exprs[key] = self.wire(name, width, expr, comment)
        return name

    def reg(self, name: str, width: int, src: str, comment: str = "", reset: str | None = None) -> str:
        """A register `name <= src` on every rising clock edge (no reset unless `reset` gives its value)."""
        self.clk()
        self._new(name, width)
        c = f"  // {comment}" if comment else ""
        self.body.append(f"reg  {_rng(width)}{name};{c}")
        if reset is None:
            self.seq.append(f"{name} <= {src};")
        else:
            self.rst()
            self.reset_seq.append((name, reset))
            self.reset_rhs.append((name, src))
        return name

    def instance(self, text: str) -> None:
        self.instances.append(text)

    # -------------------------------------------------------------- rendering
    def render(self) -> str:
        lines = [f"// {d}" if d else "//" for d in self.doc]
        lines.append("`default_nettype none")
        lines.append(f"module {self.name} (")
        plines = []
        for i, (d, n, w, c) in enumerate(self.ports):
            sep = "," if i < len(self.ports) - 1 else ""
            kind = "wire"
            decl = f"  {d:<6} {kind} {_rng(w)}{n}{sep}"
            plines.append(f"{decl:<48} // {c}" if c else decl)
        lines += plines
        lines.append(");")
        body = list(self.body)
        for inst in self.instances:
            body.append(inst)
        sink = self._unused_sink()
        if sink:
            body.append(sink)
        if self.seq or self.reset_seq:
            body.append("always @(posedge clk) begin")
            if self.reset_seq:
                body.append("  if (rst) begin")
                body += [f"    {n} <= {v};" for n, v in self.reset_seq]
                body.append("  end else begin")
                body += [f"    {n} <= {v};" for n, v in self.reset_rhs]
                body.append("  end")
            body += [f"  {s}" for s in self.seq]
            body.append("end")
        lines += ["  " + b if b else "" for b in body]
        lines.append("endmodule")
        lines.append("`default_nettype wire")
        return "\n".join(lines) + "\n"

    def _unused_sink(self) -> str:
        parts = []
        for name, w in self._width.items():
            used = self._used[name]
            missing = [i for i in range(w) if i not in used]
            for a, b in _runs(missing):
                parts.append(name if (a == 0 and b == w - 1) else (f"{name}[{b}:{a}]" if a != b else f"{name}[{a}]"))
        if not parts:
            return ""
        return "wire unused_bits = &{1'b0, " + ", ".join(parts) + "};  // bits dropped on purpose (rounding, wrap)"


def _runs(idx: list[int]) -> Iterable[tuple[int, int]]:
    if not idx:
        return
    start = prev = idx[0]
    for i in idx[1:]:
        if i != prev + 1:
            yield start, prev
            start = i
        prev = i
    yield start, prev


def _rng(width: int) -> str:
    return f"[{width - 1}:0] " if width > 1 else ""


# ---------------------------------------------------------------------------------------------- operations


def const_literal(value: int, width: int) -> str:
    """A width-bit literal with the two's complement bits of value."""
    return f"{width}'d{value & ((1 << width) - 1)}"


def ext(m: Module, sig: Sig, width: int, shift: int = 0) -> str:
    """`sig << shift` as a `width`-bit expression: sign- or zero-extended (or, when the value's interval
    proves it fits, truncated)."""
    w = sig.width + shift
    if width == w:
        return f"{{{m.ref(sig)}, {shift}'b0}}" if shift else m.ref(sig)
    if width > w:
        pad = width - w
        if sig.signed:
            msb = m.bit(sig, sig.width - 1)
            fill = f"{{{pad}{{{msb}}}}}" if pad > 1 else msb
        else:
            fill = f"{pad}'b0"
        inner = m.ref(sig) + (f", {shift}'b0" if shift else "")
        return f"{{{fill}, {inner}}}"
    # narrower: modular arithmetic downstream, but the value itself must still fit
    lo, hi = sig.lo << shift, sig.hi << shift
    if min(width_in(lo, hi, True), width_in(lo, hi, False) if lo >= 0 else 10**9) > width:
        raise AssertionError(f"truncating {sig.name} [{lo},{hi}] to {width} bits loses information")
    keep = width - shift
    if keep <= 0:
        return f"{width}'b0"
    inner = m.bits(sig, keep - 1, 0)
    return f"{{{inner}, {shift}'b0}}" if shift else inner


def as_const(m: Module, name: str, value: int, frac: int, comment: str = "") -> Sig:
    w, s = bits_for(value, value)
    m.wire(name, w, const_literal(value, w), comment)
    return Sig(name, w, s, value, value, frac)


def _canon(a: Term, b: Term) -> tuple[Term, Term]:
    return (a, b) if (a.sig.name, a.shift) <= (b.sig.name, b.shift) else (b, a)


def add_terms(m: Module, name: str, a: Term, b: Term, frac: int, comment: str = "", *, positive: bool = False,
              flip: bool = False) -> Term:
    """One adder of a tree: a + b, both terms holding codes at `frac` fraction bits. Common trailing zeros
    (the smaller shift) stay implicit, so the adder is only as wide as the bits that can change. The operands
    are put in a canonical order with the sign carried outside (so `x - y` serves both +x-y and -x+y and equal
    pairs in different sums share one wire); positive=True instead keeps the result's sign positive when the
    signs differ (used for the last adder of a tree, which would otherwise need a negation). When the shifts
    differ, the operand with the lower shift is written first and its low bits pass straight through (the adder
    spans only the bits above); flip=True (a caller that carries the sign, as adder trees do) also puts a
    subtracted lower-shift operand first, as -(y - x)."""
    k = min(a.shift, b.shift)
    negsum = positive and a.sign < 0 and b.sign < 0  # -x - y in one (three-operand) adder
    if positive and a.sign != b.sign:
        x, y = (a, b) if a.sign > 0 else (b, a)
        sign, op = 1, "-"
    else:
        x, y = _canon(a, b)
        sign, op = x.sign, ("+" if x.sign == y.sign else "-")
    sx, sy = x.shift - k, y.shift - k
    if negsum:
        xlo, xhi = x.sig.lo << sx, x.sig.hi << sx
        ylo, yhi = y.sig.lo << sy, y.sig.hi << sy
        form, flo, fhi = combine([(x.sig, -(1 << sx)), (y.sig, -(1 << sy))])
        lo, hi = max(-(xhi + yhi), flo), min(-(xlo + ylo), fhi)
        w, signed = bits_for(lo, hi)
        wc = max(w, x.sig.width + sx, y.sig.width + sy)
        expr = f"{wc}'d0 - {ext(m, x.sig, wc, sx)} - {ext(m, y.sig, wc, sy)}"
        name = m.shared_wire(name, wc, expr, comment)
        return Term(Sig(name, wc, signed, lo, hi, frac - k, form), k, 1)
    if sy < sx and (op == "+" or flip) and not positive:
        # the operand with the lower shift first, added (its low bits then pass straight through): for a
        # subtracted one, -(y - x) with the sign carried outside
        x, y, sx, sy, sign = y, x, sy, sx, (sign if op == "+" else -sign)
    xlo, xhi = x.sig.lo << sx, x.sig.hi << sx
    ylo, yhi = y.sig.lo << sy, y.sig.hi << sy
    if op == "+":
        lo, hi = xlo + ylo, xhi + yhi
    else:
        lo, hi = xlo - yhi, xhi - ylo
    form, flo, fhi = combine([(x.sig, 1 << sx), (y.sig, (1 if op == "+" else -1) << sy)])
    lo, hi = max(lo, flo), min(hi, fhi)
    w, signed = bits_for(lo, hi)
    d = sy - sx
    if sx == 0 and 0 < d < x.sig.width:
        # x + (y << d) = ((x >> d) +- y) << d | x[d-1:0]: the low d bits are x's own, the adder covers the rest
        # (floor(value / 2^d) has the interval [lo >> d, hi >> d], whatever the signs)
        xh = Sig(m.shared_wire(f"{name}_xh", x.sig.width - d, m.bits(x.sig, x.sig.width - 1, d)), x.sig.width - d,
                 x.sig.signed, x.sig.lo >> d, x.sig.hi >> d)
        wh = max(bits_for(lo >> d, hi >> d)[0], xh.width, y.sig.width)
        expr = f"{{{ext(m, xh, wh)} {op} {ext(m, y.sig, wh)}, {m.bits(x.sig, d - 1, 0)}}}"
        name = m.shared_wire(name, wh + d, expr, comment)
        return Term(Sig(name, wh + d, signed, lo, hi, frac - k, form), k, sign)
    wc = max(w, x.sig.width + sx, y.sig.width + sy)
    expr = f"{ext(m, x.sig, wc, sx)} {op} {ext(m, y.sig, wc, sy)}"
    name = m.shared_wire(name, wc, expr, comment)
    return Term(Sig(name, wc, signed, lo, hi, frac - k, form), k, sign)


def uadd_module(name: str) -> str:
    """The two-input adder of the offset-binary trees (cse.sum_terms_offset): y = ((a ^ XA) << SA) + ((b ^ XB) <<
    SB), both operands non-negative and zero-extended to W bits (W > WA, W > WB). One module, instantiated per
    adder, so that synthesis keeps each adder a carry chain of its overlapping bits only."""
    return f"""// Adder of non-negative (offset-binary) operands: y = ((a ^ XA) << SA) + ((b ^ XB) << SB), zero-extended.
// Generated by l1ad (firmware.verilog).
`default_nettype none
module {name} #(
  parameter integer W = 2,
  parameter integer WA = 1,
  parameter integer SA = 0,
  parameter [WA-1:0] XA = 0,
  parameter integer WB = 1,
  parameter integer SB = 0,
  parameter [WB-1:0] XB = 0
) (
  input  wire [WA-1:0] a,
  input  wire [WB-1:0] b,
  output wire [W-1:0] y
);
  wire [W-1:0] ea = {{{{(W - WA){{1'b0}}}}, a ^ XA}} << SA;
  wire [W-1:0] eb = {{{{(W - WB){{1'b0}}}}, b ^ XB}} << SB;
  assign y = ea + eb;
endmodule
`default_nettype wire
"""


def add_const(m: Module, name: str, root: Term | None, c: int, frac: int, comment: str = "") -> tuple[Sig, int]:
    """sign * (root.sig << root.shift) + c as a plain signal at `frac` (c: a code at frac). Returns (sig, levels)."""
    if root is None:
        return as_const(m, name, c, frac, comment), 0
    s, k, sg = root.sig, root.shift, root.sign
    if c == 0 and sg > 0 and k == 0:
        return s, 0
    form, lo, hi = combine([(s, sg << k)], c)
    if c == 0 and sg > 0:  # a shift: wiring only
        m.wire(name, s.width + k, ext(m, s, s.width + k, k), comment)
        return Sig(name, s.width + k, s.signed, lo, hi, frac, form), 0
    w, signed = bits_for(lo, hi)
    wc = max(w, s.width + k + (1 if signed and not s.signed else 0))
    xs = ext(m, s, wc, k)
    if sg > 0:
        expr = f"{xs} + {const_literal(c, wc)}"
    else:
        expr = f"{const_literal(c, wc)} - {xs}"
    m.wire(name, wc, expr, comment)
    return Sig(name, wc, signed, lo, hi, frac, form), 1


class Pipe:
    """Pipeline bookkeeping for one block: counts logic levels since the last register and inserts a
    register stage before a step that would make the stage longer than `levels_per_stage` (0: never). A block may
    start with levels left over from the block before it (stages are packed across module boundaries)."""

    def __init__(self, m: Module, levels_per_stage: int, depth: int = 0, planner: "Planner | None" = None):
        self.m = m
        self.k = levels_per_stage
        self.depth = depth  # levels already on the path into this block (pipelining packed across blocks)
        self.stages = 0
        self.max_depth = depth  # the deepest stage so far (logic levels between registers)
        self.planner = planner
        self._n = 0

    def before(self, sigs: list, n: int = 1) -> list:
        """Call before emitting a step of n logic levels that reads `sigs` (every live signal of the block):
        registers them first if the step would not fit in the current stage (or where the planner put a
        register). Then call after(n)."""
        self._n = n
        pl = self.planner
        if pl is not None:
            i = pl.next()
            if pl.cuts is None:
                pl.steps.append((n, live_bits(sigs)))
            else:
                return self.register(sigs) if i in pl.cuts else sigs
        if self.k > 0 and self.depth > 0 and self.depth + n > self.k:
            return self.register(sigs)
        return sigs

    def after(self) -> None:
        """The step announced by before() was emitted: its (planned, conservative) levels join the stage. Using the
        announced count, not the emitted one, keeps the greedy pass and the planned pass identical."""
        self.depth += self._n
        self.max_depth = max(self.max_depth, self.depth)

    def register(self, sigs: list) -> list:
        """A register stage on every live signal (constants pass unregistered)."""
        if self.depth == 0:
            return sigs
        self.stages += 1
        self.depth = 0
        out = []
        done: dict[str, Sig] = {}
        for it in sigs:
            s = it.sig if isinstance(it, Term) else it
            if s.const:
                r = s
            elif s.name in done:
                r = done[s.name]
            else:
                # register only the bits that carry the value's range
                w, signed = bits_for(s.lo, s.hi)
                if w >= s.width:
                    w, signed = s.width, s.signed
                name = f"{_PSUF.sub('', s.name)}_p{self.stages}"
                self.m.reg(name, w, ext(self.m, s, w))
                r = done[s.name] = Sig(name, w, signed, s.lo, s.hi, s.frac, tuple(sorted(
                    (n, c, lo, hi) for n, (c, lo, hi) in s.linear().items())))
            out.append(Term(r, it.shift, it.sign) if isinstance(it, Term) else r)
        return out


def live_bits(sigs: list) -> int:
    """Flip-flops a register stage on these signals costs (distinct, non-constant, range-narrowed)."""
    seen: dict[str, int] = {}
    for it in sigs:
        s = it.sig if isinstance(it, Term) else it
        if not s.const:
            seen[s.name] = min(s.width, bits_for(s.lo, s.hi)[0])
    return sum(seen.values())


class Planner:
    """Where the pipeline registers go. A first generation pass (greedy: a register as late as each stage allows)
    records every step -- its logic levels and the bits live in front of it; `plan` then finds, by dynamic
    programming, the placement with the same (minimum) number of stages, each at most `levels_per_stage` levels,
    that registers the fewest bits; a second pass puts the registers there. Latency is unchanged; flip-flops drop
    (e.g. registering a layer's 57 inputs instead of 43 partial sums per neuron)."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, int]] = []
        self.cuts: set[int] | None = None
        self._i = 0

    def next(self) -> int:
        self._i += 1
        return self._i - 1

    def plan(self, k: int) -> set[int]:
        """The cut positions (a register before step i); resets the step counter for the second pass."""
        S = len(self.steps)
        levels = [n for n, _ in self.steps]
        bits = [b for _, b in self.steps]
        INF = (1 << 62, 0)
        best: list[tuple[int, int]] = [INF] * (S + 1)
        prev = [-1] * (S + 1)
        best[0] = (0, 0)
        for p in range(1, S + 1):
            lv, nz = 0, 0
            for q in range(p - 1, -1, -1):
                lv += levels[q]
                nz += levels[q] > 0
                if lv > k and nz > 1:
                    break
                if best[q] == INF:
                    continue
                cost = (best[q][0] + (1 if p < S else 0), best[q][1] + (bits[p] if p < S else 0))
                if cost < best[p]:
                    best[p], prev[p] = cost, q
        cuts, p = set(), prev[S]
        while p > 0:
            cuts.add(p)
            p = prev[p]
        self.cuts = cuts
        self._i = 0
        return cuts


_PSUF = re.compile(r"_p\d+$")


def adder_tree(m: Module, prefix: str, terms: list[list[Term]], frac: int, pipe: Pipe) -> list[Term | None]:
    """Sum several independent term lists (one per output, codes at `frac`) in lock-step levels, so that
    one register stage cuts all of them at the same depth. Returns one root Term per list (None if empty)."""
    lists = [sorted(t, key=lambda x: (x.shift, x.sig.width, x.sig.name)) for t in terms]
    level = 0
    while any(len(t) > 1 for t in lists):
        level += 1
        flat = pipe.before([x for t in lists for x in t], 1)
        it = iter(flat)
        lists = [[next(it) for _ in t] for t in lists]
        new_lists = []
        for j, (t, pairs) in enumerate(zip(lists, _pairing(lists))):
            last = len(t) == 2
            nxt = [add_terms(m, f"{prefix}{j}_a{level}_{q}", t[i1], t[i2], frac, positive=last)
                   for q, (i1, i2) in enumerate(pairs)]
            used = {i for p in pairs for i in p}
            nxt += [t[i] for i in range(len(t)) if i not in used]
            new_lists.append(nxt)
        lists = new_lists
        pipe.after()
    return [t[0] if t else None for t in lists]


def _pairing(lists: list[list[Term]]) -> list[list[tuple[int, int]]]:
    """Which terms each list adds at this level: floor(n/2) disjoint pairs per list (so every tree keeps the
    minimum depth). Pairs whose sum also occurs in other lists go first, most widely shared first (greedy common
    subexpression sharing across the neurons of a layer); the rest pair up in the lists' order."""
    from collections import Counter

    seen: Counter = Counter()
    for t in lists:
        seen.update({x.sig.name for x in t})
    cand: list[dict[tuple, list[tuple[int, int]]]] = []
    count: Counter = Counter()
    for t in lists:
        d: dict[tuple, list[tuple[int, int]]] = {}
        if len(t) > 2:  # the last adder of a tree is never shared in a useful way
            # only signals that occur in other lists too can form a shared pair
            idx = [i for i, x in enumerate(t) if seen[x.sig.name] > 1]
            ks = [(t[i].sig.name, t[i].shift, t[i].sign) for i in idx]
            for p, i in enumerate(idx):
                na, sa, ga = ks[p]
                for q in range(p + 1, len(idx)):
                    nb, sb, gb = ks[q]
                    key = (na, nb, sb - sa, ga * gb) if (na, sa) <= (nb, sb) else (nb, na, sa - sb, ga * gb)
                    d.setdefault(key, []).append((i, idx[q]))
        cand.append(d)
        count.update(d.keys())
    out = []
    for t, d in zip(lists, cand):
        want = len(t) // 2
        used: set[int] = set()
        pairs: list[tuple[int, int]] = []
        for key in sorted((k for k in d if count[k] > 1), key=lambda k: (-count[k], k)):
            if len(pairs) == want:
                break
            for i, j in d[key]:
                if i not in used and j not in used:
                    pairs.append((i, j))
                    used.update((i, j))
        rest = [i for i in range(len(t)) if i not in used]
        pairs += [(rest[q], rest[q + 1]) for q in range(0, 2 * (want - len(pairs)), 2)]
        out.append(pairs)
    return out


# ---------------------------------------------------------------------------------------------- requantisation


def round_offset(mode: str, s: int, lo: int, hi: int) -> tuple[int, bool] | None:
    """(c, tie_even) with round_mode(v / 2^s) == floor((v + c) / 2^s) for every v in [lo, hi] -- for RND_CONV
    (tie_even) with the result's LSB cleared when the dropped bits of v + c are all zero (a tie). None when the
    offset would depend on the sign of v inside the interval (TRN_ZERO, RND_ZERO, RND_INF on mixed signs)."""
    half = 1 << (s - 1)
    if mode == "TRN":
        return 0, False
    if mode == "RND":
        return half, False
    if mode == "RND_MIN_INF":
        return half - 1, False
    if mode == "RND_CONV":
        return half, True
    nonneg, neg = lo >= 0, hi < 0
    table = {"TRN_ZERO": (0, (1 << s) - 1), "RND_ZERO": (half - 1, half), "RND_INF": (half, half - 1)}
    if mode not in table:
        raise ValueError(f"unknown rounding mode {mode}")
    if nonneg:
        return table[mode][0], False
    if neg:
        return table[mode][1], False
    return None


def requant(m: Module, name: str, a: Sig, dst: FixedFormat, comment: str = "", *, relu: bool = False,
            plus: int = 0) -> tuple[Sig, int]:
    """Emit `dst_t y = a + plus;` (ap_fixed semantics; `plus` a constant code at a's LSB) -- or of relu(a + plus)
    with relu=True: drop fraction bits with dst's rounding mode, then fit to dst.width bits with its overflow mode.
    `a` holds codes with `a.frac` fraction bits. The constant and a sign-independent rounding offset share one
    adder. Returns the result (dst.width bits, dst's signedness, tight interval) and the logic levels used."""
    s = a.frac - dst.frac
    lo, hi = a.lo + plus, a.hi + plus
    if a.const:
        v = max(lo, 0) if relu else lo
        src = FixedFormat.covering(v, v, a.frac)
        code = int(_requantize(np.array([v], dtype=object), src, dst)[0][0])
        return as_const(m, name, code, dst.frac, f"{dst} (constant)"), 0
    ro = (round_offset(dst.rounding, s, max(lo, 0) if relu else lo, hi) if s > 0 else (0, False))
    if ro is None:  # the offset depends on the sign: a mux picks it (never with relu: relu makes it nonnegative)
        a, lv = add_const(m, f"{name}_p", Term(a), plus, a.frac)
        c0, c1 = _sign_offsets(dst.rounding, s)
        lo, hi = a.lo + min(c0, c1), a.hi + max(c0, c1)
        w, signed = bits_for(lo, hi)
        wc = max(w, a.width + (1 if signed and not a.signed else 0))
        m.wire(f"{name}_rs", wc, f"{ext(m, a, wc)} + ({m.bit(a, a.width - 1)} ? {const_literal(c1, wc)} : "
               f"{const_literal(c0, wc)})", f"{dst.rounding}: + rounding offset (sign dependent)")
        v, tie, lv = Sig(f"{name}_rs", wc, signed, lo, hi, a.frac), False, lv + 1
    else:
        c, tie = ro
        v, lv = add_const(m, f"{name}_rs", Term(a), c + plus, a.frac,
                          f"{'+ ' + str(plus) + ' ' if plus else ''}{'+ rounding offset ' + dst.rounding if c else ''}".strip())
    y, lv2 = finish(m, name, v, s, dst, tie, relu, comment)
    return y, lv + lv2


def _sign_offsets(mode: str, s: int) -> tuple[int, int]:
    """Rounding offsets (for v >= 0, for v < 0) of the sign-dependent modes."""
    half = 1 << (s - 1)
    return {"TRN_ZERO": (0, (1 << s) - 1), "RND_ZERO": (half - 1, half), "RND_INF": (half, half - 1)}[mode]


def requant_levels(a: Sig, dst: FixedFormat, *, relu: bool = False, plus: int = 0) -> int:
    """The logic levels `requant(m, name, a, dst, relu=relu, plus=plus)` uses (for pipeline planning)."""
    if a.const:
        return 0
    s = a.frac - dst.frac
    lo, hi = a.lo + plus, a.hi + plus
    ro = round_offset(dst.rounding, s, max(lo, 0) if relu else lo, hi) if s > 0 else (0, False)
    if ro is None:
        c0, c1 = _sign_offsets(dst.rounding, s)
        return (1 if plus else 0) + 1 + finish_levels(lo + min(c0, c1), hi + max(c0, c1), s, dst, relu, False)
    return (1 if (ro[0] + plus) else 0) + finish_levels(lo + ro[0], hi + ro[0], s, dst, relu, ro[1])


def finish_levels(lo: int, hi: int, s: int, dst: FixedFormat, relu: bool, tie: bool) -> int:
    """Logic levels of `finish` for a value in [lo, hi] (rounding offset included): 1 if a relu or saturation
    mux is needed, else 0."""
    if relu and hi < 0:
        return 0
    neg = relu and lo < 0
    if s > 0:
        lo, hi = lo >> s, hi >> s
        lo -= (lo & 1) if tie else 0
    else:
        lo, hi = lo << -s, hi << -s
    if neg:
        lo, hi = max(lo, 0), max(hi, 0)
    mn, mx = dst.min_code, dst.max_code
    if dst.overflow == "SAT_SYM" and dst.signed:
        mn = -mx
    sat = not (mn <= lo and hi <= mx) and dst.overflow != "WRAP"
    return 1 if (sat or neg) else 0


def finish(m: Module, name: str, v: Sig, s: int, dst: FixedFormat, tie: bool, relu: bool, comment: str = "") -> tuple[Sig, int]:
    """The rest of a conversion once the rounding offset is in `v` (see round_offset): drop s fraction bits (a
    slice; s <= 0 appends zeros), clear the LSB on ties (RND_CONV), relu (v < 0 -> 0; valid because the offset
    is below 2^s), then dst's overflow mode. Returns (result, logic levels: 1 if any mux, else 0)."""
    if relu and v.hi < 0:
        return as_const(m, name, 0, dst.frac, "relu of a negative value"), 0
    neg = relu and v.lo < 0
    if s > 0:
        frac = v.frac - s
        if v.width <= s:  # every bit is dropped: floor is 0 or -1 (the sign); a tie is only v == 0 (even already)
            if v.signed:
                r = Sig(m.wire(f"{name}_r", 1, m.bit(v, v.width - 1), f"floor(x / 2^{s})"), 1, True, v.lo >> s, v.hi >> s, frac)
            else:
                r = as_const(m, f"{name}_r", 0, frac)
        else:
            w_r = v.width - s
            r_lo, r_hi = v.lo >> s, v.hi >> s
            if tie:
                tz = m.wire(f"{name}_t", 1, f"~|{m.bits(v, s - 1, 0)}", "tie: the dropped bits are all zero")
                m.use(tz)
                lsb = f"{m.bit(v, s)} & ~{tz}"
                expr = f"{{{m.bits(v, v.width - 1, s + 1)}, {lsb}}}" if w_r > 1 else lsb
                m.wire(f"{name}_r", w_r, expr, f"RND_CONV: >> {s}, ties to even")
                r = Sig(f"{name}_r", w_r, v.signed, r_lo - (r_lo & 1), r_hi, frac)
            elif r_lo == r_hi:
                r = as_const(m, f"{name}_r", r_lo, frac)
            else:
                m.wire(f"{name}_r", w_r, m.bits(v, v.width - 1, s), f"{dst.rounding}: >> {s}")
                r = Sig(f"{name}_r", w_r, v.signed, r_lo, r_hi, frac)
        shift = 0
    else:
        r, shift = v, -s
    view = Sig(r.name, r.width, r.signed, max(r.lo, 0) if neg else r.lo, max(r.hi, 0) if neg else r.hi, r.frac) if neg else r
    if neg and view.lo > view.hi:
        view = Sig(r.name, r.width, r.signed, 0, 0, r.frac)
    y, lv = _overflow(m, f"{name}_o" if neg else name, view, shift, dst, comment)
    if not neg:
        return y, lv
    m.wire(name, dst.width, f"{m.bit(v, v.width - 1)} ? {dst.width}'d0 : {m.ref(y)}", f"relu; {comment}" if comment else "relu")
    return Sig(name, dst.width, dst.signed, min(y.lo, 0), max(y.hi, 0), dst.frac), 1


def _overflow(m: Module, name: str, a: Sig, shift: int, dst: FixedFormat, comment: str) -> tuple[Sig, int]:
    """Fit `a << shift` (a's codes shifted onto dst's LSB) into dst.width bits with dst's overflow mode."""
    W = dst.width
    mn, mx = dst.min_code, dst.max_code
    lo, hi = a.lo << shift, a.hi << shift
    mode = dst.overflow
    if mode == "SAT_SYM":
        if dst.signed:
            mn = -mx
        mode = "SAT"
    c = f"; {comment}" if comment else ""
    if mn <= lo and hi <= mx:
        m.wire(name, W, ext(m, a, W, shift), f"{dst}: in range{c}")
        return Sig(name, W, dst.signed, lo, hi, dst.frac), 0
    if mode == "WRAP":
        if a.width + shift <= W:
            expr = ext(m, a, W, shift)
        elif W - shift <= 0:
            expr = f"{W}'d0"
        else:
            keep = W - shift
            expr = f"{{{m.bits(a, keep - 1, 0)}, {shift}'b0}}" if shift else m.bits(a, keep - 1, 0)
        m.wire(name, W, expr, f"{dst}: wrap{c}")
        if a.const:
            v = ((lo - mn) % (1 << W)) + mn if dst.signed else lo % (1 << W)
            return Sig(name, W, dst.signed, v, v, dst.frac), 0
        return Sig(name, W, dst.signed, mn, mx, dst.frac), 0
    # saturating modes compare the full value (signed view, one spare bit)
    wc = max(a.width + shift + (0 if a.signed else 1), W + 1)
    sv = f"{name}_x"
    m.wire(sv, wc, ext(m, a, wc, shift), "full value before the overflow mode")
    svs = Sig(sv, wc, True, lo, hi, dst.frac)
    conds = []
    if hi > mx:
        conds.append(("hi", f"($signed({m.ref(svs)}) > $signed({const_literal(mx, wc)}))"))
    if lo < mn:
        conds.append(("lo", f"($signed({m.ref(svs)}) < $signed({const_literal(mn, wc)}))"))
    inner = m.bits(sv, W - 1, 0)
    if mode == "SAT":
        expr = inner
        for which, cond in reversed(conds):
            expr = f"{cond} ? {const_literal(mx if which == 'hi' else mn, W)} : {expr}"
        m.wire(name, W, expr, f"{dst}: saturate{c}")
        return Sig(name, W, dst.signed, min(max(lo, mn), mx), max(min(hi, mx), mn), dst.frac), 1
    if mode == "SAT_ZERO":
        cond = " | ".join(x for _, x in conds)
        m.wire(name, W, f"({cond}) ? {W}'d0 : {inner}", f"{dst}: zero on overflow{c}")
        rlo = 0 if lo > mx else min(max(lo, mn), 0)
        rhi = 0 if hi < mn else max(min(hi, mx), 0)
        return Sig(name, W, dst.signed, rlo, rhi, dst.frac), 1
    raise ValueError(f"unknown overflow mode {mode}")
