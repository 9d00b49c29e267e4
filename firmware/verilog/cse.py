"""Shared shift-add sums for a bank of constant-coefficient dot products (the neurons of a layer).

Every output j of a layer is a signed sum of *digits* ``sign * (signal << shift)`` -- the canonical-signed-digit
expansion of its weights times the layer inputs (plus the constant leaf). ``plan`` decides which adders compute
them; ``emit`` writes those adders level by level through a ``Pipe``.

Plan, in two phases (our own greedy algorithm; it keeps the layer's adder-tree depth, plus ``slack`` levels):

1. *Common subexpressions.* A pattern is a pair of digits up to a common shift and sign,
   ``key = (a, b, d, r)``: ``a << s  +  r * (b << (s + d))`` for some s. Every pattern is counted over all
   outputs (a count per pattern, updated incrementally as digits are replaced). The pattern with the largest
   count x overlap (the bits both operands cover: the carry-chain bits sharing saves; ties: the pattern of the
   most recently created signals) becomes one new signal and replaces its occurrences, which may then pair
   again (multi-level sharing). Two equal digits of one output merge for free (``x + x = x << 1``; ``x - x = 0``).
   Depth guard: a digit at depth t costs 2^t in the output's Kraft sum; an occurrence is replaced only while that
   sum stays <= 2^D, D the layer's minimum tree depth (ceil(log2) of its largest output's term count) plus
   ``slack``, so every output can still be summed in D levels.
2. *Trees.* Each output sums its remaining digits Huffman-style on depth (the two shallowest first: the minimum
   depth for those arrival levels) and, among equal depths, in order of top bit (equal tops: by shift), so that
   each adder's operands end at about the same bit and the lower operand's low bits pass straight through.

Signals are abstract integers here: leaves ``0 .. n_leaves - 1`` (depth 0), then one id per shared sum.
Emission: ``sum_terms`` (two's complement adders, ``x - y`` for mixed signs) or ``sum_terms_offset`` (offset
binary: non-negative operands only, zero-extended, the constants folded into each output's bias).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

Digit = tuple[int, int, int]  # (signal id, shift, sign +1/-1)


@dataclass
class SumPlan:
    """Adders of a bank of sums. ``nodes[k]`` defines signal ``n_leaves + k`` as ``x + y`` of two digits, at
    ``depth[n_leaves + k]``; ``roots[j]`` is output j's final digit (None: the output is 0)."""

    n_leaves: int
    nodes: list[tuple[Digit, Digit]] = field(default_factory=list)
    depth: list[int] = field(default_factory=list)
    width: list[int] = field(default_factory=list)  # estimated bits of each signal (leaves: given)
    roots: list[Digit | None] = field(default_factory=list)
    shared: int = 0  # adders created by phase 1 (shared sums)
    tree: int = 0  # adders created by phase 2 (per-output trees)

    @property
    def adders(self) -> int:
        return len(self.nodes)

    @property
    def levels(self) -> int:
        return max(self.depth, default=0)

    def new(self, x: Digit, y: Digit) -> int:
        self.nodes.append((x, y))
        self.depth.append(max(self.depth[x[0]], self.depth[y[0]]) + 1)
        self.width.append(max(self.width[x[0]] + x[1], self.width[y[0]] + y[1]) + 1)
        return len(self.depth) - 1


def _key(p: Digit, q: Digit) -> int:
    """The pattern of the pair p + q, packed in one int (a, b, d, r: see _unkey)."""
    (a, sa, ga), (b, sb, gb) = p, q
    same = ga == gb  # the sign relation does not depend on the order
    if b < a or (b == a and sb < sa):
        a, sa, b, sb = b, sb, a, sa
    return (((a << 20) | b) << 9 | (sb - sa + 256)) << 1 | same


def _unkey(k: int) -> tuple[int, int, int, int]:
    """(a, b, d, r): the pattern a << s  +  r * (b << (s + d))."""
    r = 1 if k & 1 else -1
    k >>= 1
    d = (k & 511) - 256
    k >>= 9
    return k >> 20, k & ((1 << 20) - 1), d, r


def _pattern_digits(a: int, b: int, d: int, r: int) -> tuple[Digit, Digit, int]:
    """The two digits of a pattern's shared signal (shifts >= 0) and the shift its occurrences add back."""
    lo = min(0, d)
    return (a, -lo, 1), (b, d - lo, r), lo


class _Bank:
    """Phase 1 state: each output's digits (id -> digit), the pattern index and the Kraft sums."""

    def __init__(self, plan: SumPlan, outputs: list[list[Digit]], D: int):
        self.plan = plan
        self.cap = 1 << D
        self.dig: list[dict[int, Digit]] = []
        self.by_sig: list[dict[int, set[int]]] = []
        self.kraft: list[int] = []
        self.count: dict[int, int] = {}
        self.heap: list = []
        self.dead: set[int] = set()
        self._next = 0
        for j, ds in enumerate(outputs):
            self.dig.append({})
            self.by_sig.append({})
            self.kraft.append(0)
            for d in ds:
                self._add(j, d, index=False)
        for j in range(len(outputs)):
            items = list(self.dig[j].values())
            for u in range(len(items)):
                for v in range(u + 1, len(items)):
                    self._inc(_key(items[u], items[v]), 1)

    def _prio(self, k: int, c: int) -> tuple[int, int, int]:
        """Heap entry of pattern k seen c times: the largest count x overlap first (the bits where the two operands
        both have bits: the adder's carry-chain bits that sharing saves, as da4ml weighs its patterns); ties: the
        largest key, the pattern of the most recently created signals. Measured on the bench encoder (Yosys LUTs):
        1.5% fewer than the count alone, 2% fewer than the count with the smallest shift distance first."""
        a, b, d, _ = _unkey(k)
        wa, wb = self.plan.width[a], self.plan.width[b]
        overlap = max(1, min(wa, wb + d) - max(0, d))
        return (-c * overlap, -k, c)

    def _inc(self, k: int, n: int) -> None:
        """Count pattern k n (+1 / -1) more times. Counts move one at a time, so every count a pattern can drop back
        to was pushed when it was first reached: only rises are pushed (entries whose count moved on are stale)."""
        c = self.count.get(k, 0) + n
        self.count[k] = c
        if n > 0 and c > 1 and k not in self.dead:
            heapq.heappush(self.heap, self._prio(k, c))

    def _add(self, j: int, d: Digit, index: bool = True) -> None:
        """Add digit d to output j, merging it with an equal (x + x = x << 1) or opposite (x - x = 0) digit."""
        dig = self.dig[j]
        s, sh, g = d
        same = self.by_sig[j].setdefault(s, set())
        for i in same:
            e = dig[i]
            if e[1] == sh:
                self._remove(j, i, index)
                if e[2] == g:
                    self._add(j, (s, sh + 1, g), index)
                return
        if index:
            for e in dig.values():
                self._inc(_key(d, e), 1)
        dig[self._next] = d
        same.add(self._next)
        self._next += 1
        self.kraft[j] += 1 << self.plan.depth[s]

    def _remove(self, j: int, i: int, index: bool = True) -> None:
        d = self.dig[j].pop(i)
        self.by_sig[j][d[0]].discard(i)
        self.kraft[j] -= 1 << self.plan.depth[d[0]]
        if index:
            for e in self.dig[j].values():
                self._inc(_key(d, e), -1)

    def run(self) -> None:
        plan = self.plan
        while self.heap:
            _, k, c = heapq.heappop(self.heap)
            k = -k
            if self.count.get(k, 0) != c or k in self.dead:
                continue
            a, b, d, r = _unkey(k)
            x, y, lo = _pattern_digits(a, b, d, r)
            dn = max(plan.depth[a], plan.depth[b]) + 1
            grow = (1 << dn) - (1 << plan.depth[a]) - (1 << plan.depth[b])
            # the occurrences that keep their output summable in D levels
            occ: list[tuple[int, int, int, int, int]] = []
            for j in range(len(self.dig)):
                dig, bs = self.dig[j], self.by_sig[j]
                if not bs.get(a) or not bs.get(b):
                    continue
                used: set[int] = set()
                kr = self.kraft[j]
                want = {}
                for i2 in sorted(bs.get(b, ())):
                    want.setdefault((dig[i2][1], dig[i2][2]), []).append(i2)
                for i1 in sorted(bs.get(a, ())):
                    if i1 in used or kr + grow > self.cap:
                        continue
                    _, sa, ga = dig[i1]
                    for i2 in want.get((sa + d, ga * r), ()):
                        if i2 != i1 and i2 not in used:
                            occ.append((j, i1, i2, sa, ga))
                            used.update((i1, i2))
                            kr += grow
                            break
            if len(occ) < 2:  # nothing to share any more (depth guard): never try this pattern again
                self._kill(k)
                continue
            nid = plan.new(x, y)
            plan.shared += 1
            for j, i1, i2, base, sg in occ:
                self._remove(j, i1)
                self._remove(j, i2)
                self._add(j, (nid, base + lo, sg))
            self._kill(k)

    def _kill(self, k: int) -> None:
        self.dead.add(k)


def plan(outputs: list[list[Digit]], n_leaves: int, *, cse: bool = True, depth: int | None = None,
         widths: list[int] | None = None, slack: int = 0) -> SumPlan:
    """Adders for out_j = sum(sign * (leaf << shift) for (leaf, shift, sign) in outputs[j]). ``depth``: the tree
    depth to keep (default: the minimum, ceil(log2(largest term count)) levels) plus ``slack`` levels that sharing
    may use (more sharing, fewer adders, a deeper tree); cse=False: trees only."""
    p = SumPlan(n_leaves, depth=[0] * n_leaves, width=list(widths) if widths is not None else [16] * n_leaves)
    # equal digits of one output merge before anything else (also without sharing)
    merged = []
    for ds in outputs:
        acc: dict[tuple[int, int], int] = {}
        for s, sh, g in ds:
            acc[(s, sh)] = acc.get((s, sh), 0) + g
        out: list[Digit] = []
        for (s, sh), c in sorted(acc.items()):
            for k in range(max(1, abs(c).bit_length())):  # c in {-2..2} usually; general: its binary digits
                if (abs(c) >> k) & 1:
                    out.append((s, sh + k, 1 if c > 0 else -1))
        merged.append(out)
    n_max = max((len(ds) for ds in merged), default=0)
    D = (depth if depth is not None else max(0, (n_max - 1).bit_length())) + slack
    if cse and n_max > 1:
        bank = _Bank(p, merged, D)
        bank.run()
        finals = [list(d.values()) for d in bank.dig]
    else:
        finals = merged
    for ds in finals:
        p.roots.append(_tree(p, ds))
    return p


def _tree(p: SumPlan, ds: list[Digit]) -> Digit | None:
    """Sum one output's digits: level by level, the shallowest first, neighbours in shift order paired."""
    if not ds:
        return None
    pend: dict[int, list[Digit]] = {}
    for d in ds:
        pend.setdefault(p.depth[d[0]], []).append(d)
    while True:
        lv = min(pend)
        cur = pend.pop(lv)
        if not pend and len(cur) == 1:
            return cur[0]
        # neighbours in top-bit order (equal tops: by shift), so each adder's operands end at about the same bit
        # (few sign-extension bits) and the lower one's bits below the other's shift pass through (rtl.add_terms)
        cur.sort(key=lambda d: (p.width[d[0]] + d[1], d[1], d[0], d[2]))
        nxt = pend.setdefault(lv + 1, [])
        if len(cur) % 2:
            nxt.append(cur.pop())  # the odd one (the highest shift) waits a level
        for i in range(0, len(cur), 2):
            x, y = cur[i], cur[i + 1]
            k = min(x[1], y[1])
            g = -1 if x[2] < 0 and y[2] < 0 else 1  # -x - y = -(x + y): the sign stays outside the adder
            nid = p.new((x[0], x[1] - k, x[2] * g), (y[0], y[1] - k, y[2] * g))
            p.tree += 1
            nxt.append((nid, k, g))


# ---------------------------------------------------------------------------------------------- emission

_CACHE: dict[tuple, SumPlan] = {}


def cached_plan(outputs: list[list[Digit]], n_leaves: int, *, cse: bool = True,
                widths: list[int] | None = None, slack: int = 0) -> SumPlan:
    """plan() memoised on its arguments (the generator runs twice when it plans register placement)."""
    key = (tuple(tuple(ds) for ds in outputs), n_leaves, cse, tuple(widths or ()), slack)
    p = _CACHE.get(key)
    if p is None:
        if len(_CACHE) > 64:
            _CACHE.clear()
        p = _CACHE[key] = plan(outputs, n_leaves, cse=cse, widths=widths, slack=slack)
    return p


def _leaf_plan(terms: list, cse: bool, *, consts: list[int] | None = None, slack: int = 0) -> tuple[SumPlan, list, dict[int, int]]:
    """The plan of `terms` (lists of rtl.Term) over their distinct leaf signals, the leaves, and the last tree level
    at which each signal is read (roots: one level after the tree). With `consts` (one int per list), constant
    leaves are added into it instead of entering the plan."""
    from .rtl import bits_for

    leaves: list = []
    lid: dict[str, int] = {}
    outs: list[list[Digit]] = []
    for j, t in enumerate(terms):
        ds = []
        for x in t:
            if consts is not None and x.sig.const:
                consts[j] += x.sign * (x.sig.lo << x.shift)
                continue
            if x.sig.name not in lid:
                lid[x.sig.name] = len(leaves)
                leaves.append(x.sig)
            ds.append((lid[x.sig.name], x.shift, x.sign))
        outs.append(ds)
    p = cached_plan(outs, len(leaves), cse=cse, widths=[bits_for(s.lo, s.hi)[0] for s in leaves], slack=slack)
    last: dict[int, int] = {}
    for k, (x, y) in enumerate(p.nodes):
        lv = p.depth[p.n_leaves + k]
        for sig in (x[0], y[0]):
            last[sig] = max(last.get(sig, 0), lv)
    for r in p.roots:
        if r is not None:
            last[r[0]] = p.levels + 1
    return p, leaves, last


def sum_terms(m, prefix: str, terms: list, frac: int, pipe, *, cse: bool = True, slack: int = 0) -> list:
    """Sum several term lists (one per output; rtl.Term on signals holding codes at `frac`) with shared
    subexpressions and depth-minimal trees (``plan``); the adders are written level by level, each level one
    pipeline step (``pipe.before`` on every value still needed, then ``pipe.after``), so one register stage cuts
    every output at the same depth. Returns one root rtl.Term per list (None if empty)."""
    from .rtl import Term, add_terms

    p, leaves, last = _leaf_plan(terms, cse, slack=slack)
    nl, end = p.n_leaves, p.levels + 1
    is_root = {r[0] for r in p.roots if r is not None}
    read = {s for x, y in p.nodes for s in (x[0], y[0])}
    by_level: dict[int, list[int]] = {}
    for k in range(len(p.nodes)):
        by_level.setdefault(p.depth[nl + k], []).append(k)
    val: dict[int, Term] = {i: Term(s) for i, s in enumerate(leaves)}
    for lv in range(1, p.levels + 1):
        live = [s for s in sorted(val) if last.get(s, 0) >= lv]
        regs = pipe.before([val[s] for s in live], 1)
        val = dict(zip(live, regs))
        for k in by_level.get(lv, []):
            (xs, xk, xg), (ys, yk, yg) = p.nodes[k]
            tx, ty = val[xs], val[ys]
            nid = nl + k
            only_root = nid in is_root and nid not in read  # an output's last adder: keep its sign positive
            val[nid] = add_terms(m, f"{prefix}_a{k}", Term(tx.sig, tx.shift + xk, tx.sign * xg),
                                 Term(ty.sig, ty.shift + yk, ty.sign * yg), frac, positive=only_root, flip=True)
        pipe.after()
    out = []
    for r in p.roots:
        if r is None:
            out.append(None)
            continue
        t = val[r[0]]
        out.append(Term(t.sig, t.shift + r[1], t.sign * r[2]))
    return out


def sum_terms_offset(m, prefix: str, terms: list, frac: int, pipe, adder: str, *, cse: bool = True,
                     slack: int = 0) -> list:
    """Like sum_terms, but every adder adds two *non-negative* vectors (offset binary), so no operand is ever
    sign-extended and no adder subtracts: a signed vector x (w bits) enters with its MSB inverted (x + 2^(w-1)),
    a negative digit -v with all its bits inverted (-v = ~v - (2^w - 1)); those constants are tracked exactly and
    left to the caller, which adds them once per output with the bias. A narrow operand then costs carry-chain
    bits only where it overlaps the other. Each adder is an instance of the module ``adder`` (rtl.uadd_module:
    the inversions inside, zero extension; its own module so that synthesis keeps every adder a two-input carry
    chain instead of merging chains of additions into multi-operand logic). Returns one (rtl.Term or None,
    constant) per list: the sum is ``(term.sig << term.shift) + constant`` (codes at `frac`); constant leaves go
    straight into the constant."""
    from .rtl import Sig, Term, bits_for, combine

    const = [0] * len(terms)
    p, leaves, last = _leaf_plan(terms, cse, consts=const, slack=slack)
    nl, end = p.n_leaves, p.levels + 1
    by_level: dict[int, list[int]] = {}
    for k in range(len(p.nodes)):
        by_level.setdefault(p.depth[nl + k], []).append(k)

    # value of signal s = t.sign * (t.sig << t.shift) + off[s], t = val[s], every t.sig non-negative: a signed
    # leaf enters with its MSB inverted (x + 2^(w-1), one inverter per leaf, before the adders and registers)
    val: dict[int, Term] = {}
    off: dict[int, int] = {}
    for i, x in enumerate(leaves):
        if x.lo >= 0:
            val[i], off[i] = Term(Sig(x.name, x.width, False, x.lo, x.hi, x.frac, x.form)), 0
            continue
        w, h = x.width, 1 << (x.width - 1)
        msb = f"~{m.bit(x, w - 1)}"
        name = m.wire(f"{x.name}_ob", w, f"{{{msb}, {m.bits(x, w - 2, 0)}}}" if w > 1 else msb, "offset binary")
        form, lo, hi = combine([(x, 1)], h)
        val[i], off[i] = Term(Sig(name, w, False, lo, hi, x.frac, form)), -h

    def digit(s: int, k: int, g: int) -> tuple[Sig, int, int, int]:
        """g * (value_s << k) = e * (base << sh) + c as (vector, sh, e, c)."""
        t = val[s]
        return t.sig, t.shift + k, g * t.sign, g * (off[s] << k)

    def operand(x: Sig, d: int, inv: bool) -> tuple[int, tuple[Sig, int], int]:
        """The adder input x (all bits inverted when inv), shifted by d: (mask, (sig, coefficient), constant) of
        its non-negative value."""
        if not inv:
            return 0, (x, 1 << d), 0
        full = (1 << x.width) - 1
        return full, (x, -(1 << d)), full << d

    for lv in range(1, p.levels + 1):
        live = [s for s in sorted(val) if last.get(s, 0) >= lv]
        regs = pipe.before([val[s] for s in live], 1)
        val.update(zip(live, regs))
        for k in by_level.get(lv, []):
            (xs, xk, xg), (ys, yk, yg) = p.nodes[k]
            xa, sa, ea, ca = digit(xs, xk, xg)
            xb, sb, eb, cb = digit(ys, yk, yg)
            if ea == eb or ea < 0:  # port a: the inverted operand, if any (the carry chain reads b directly)
                pass
            else:
                xa, sa, ea, ca, xb, sb, eb, cb = xb, sb, eb, cb, xa, sa, ea, ca
            sign = eb  # same signs: sign * (A + B); mixed: +(B - A) = ~A + B - (2^w - 1)
            inv = ea != eb
            lo_sh = min(sa, sb)
            ma, pa, ka = operand(xa, sa - lo_sh, inv)
            mb, pb, kb = operand(xb, sb - lo_sh, False)
            form, lo, hi = combine([pa, pb], ka + kb)
            w = max(bits_for(lo, hi)[0], xa.width + sa - lo_sh, xb.width + sb - lo_sh, xa.width + 1, xb.width + 1)
            name = f"{prefix}_u{k}"
            m.net(name, w)
            m.use(xa)
            m.use(xb)
            m.instance(f"{adder} #(.W({w}), .WA({xa.width}), .SA({sa - lo_sh}), .XA({xa.width}'d{ma}), "
                       f".WB({xb.width}), .SB({sb - lo_sh}), .XB({xb.width}'d{mb})) "
                       f"i_{name} (.a({xa.name}), .b({xb.name}), .y({name}));")
            nid = nl + k
            # same signs: value = sign * (y << lo_sh) + ca + cb; mixed: -a = ~a - (2^w - 1), so - (2^w - 1) << sa more
            c = ca + cb - ((((1 << xa.width) - 1) << sa) if inv else 0)
            val[nid] = Term(Sig(name, w, False, lo, hi, frac - lo_sh, form), lo_sh, sign)
            off[nid] = c
        pipe.after()
    out = []
    for j, r in enumerate(p.roots):
        if r is None:
            out.append((None, const[j]))
            continue
        x, sh, e, c = digit(*r)
        out.append((Term(x, sh, e), c + const[j]))
    return out
