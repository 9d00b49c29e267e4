"""The pooling block of the Verilog generator (IR ``PoolLayer``, kind "pool"), fully unrolled, one event per clock.

max   per output one balanced tree of compare-and-select nodes over the window's distinct valid inputs
      (``y = a > b ? a : b``, signed when either side can be negative); each tree level is counted as
      ``MAX_LEVELS`` logic levels (the comparison's carry chain, as an adder, and the 2:1 select) through the
      block's Pipe, so registers land where ``levels_per_stage`` says; every output's tree steps in lock-step.
      Then relu and the output format (ap_fixed rounding, then overflow) as any layer's conversion.
avg   the IR's dense view (weights 2**-k, no bias): the dense block's adder trees, the sum at k more fraction
      bits (the shift is wiring), then the output conversion.

The arithmetic is the IR's: a max is one of its inputs (exact), so the tree equals ``PoolLayer.apply_codes``.
"""
from __future__ import annotations

from typing import Any

from l1ad.firmware.fixed import FixedFormat

from .config import VerilogConfig
from .rtl import Module, Pipe, Planner, Sig, bits_for, ext

#: logic levels of one compare-and-select node: the comparison (a carry chain) and the 2:1 select
MAX_LEVELS = 2


def max2(m: Module, name: str, a: Sig, b: Sig) -> Sig:
    """max(a, b) of two signals at the same LSB: one comparator and one select (none when the intervals
    already decide it). The result's interval is [max(a.lo, b.lo), max(a.hi, b.hi)]."""
    if a.frac != b.frac:
        raise ValueError(f"max2: {a.name} and {b.name} have different LSBs (2^-{a.frac}, 2^-{b.frac})")
    if a.lo >= b.hi:
        return a
    if b.lo >= a.hi:
        return b
    w, signed = bits_for(min(a.lo, b.lo), max(a.hi, b.hi))
    ea, eb = ext(m, a, w), ext(m, b, w)
    cmp = f"$signed({ea}) > $signed({eb})" if signed else f"{ea} > {eb}"
    m.wire(name, w, f"({cmp}) ? {ea} : {eb}", "max")
    return Sig(name, w, signed, max(a.lo, b.lo), max(a.hi, b.hi), a.frac)


def max_trees(m: Module, prefix: str, leaves: list[list[Sig]], pipe: Pipe) -> list[Sig]:
    """One balanced max tree per leaf list, all stepping in lock-step (one register stage cuts every tree at the
    same level). Returns the roots."""
    lists = [list(v) for v in leaves]
    level = 0
    while any(len(v) > 1 for v in lists):
        level += 1
        flat = pipe.before([s for v in lists for s in v], MAX_LEVELS)
        it = iter(flat)
        lists = [[next(it) for _ in v] for v in lists]
        new = []
        for j, v in enumerate(lists):
            nxt = [max2(m, f"{prefix}{j}_m{level}_{q}", v[2 * q], v[2 * q + 1]) for q in range(len(v) // 2)]
            if len(v) % 2:
                nxt.append(v[-1])
            new.append(nxt)
        lists = new
        pipe.after()
    return [v[0] for v in lists]


def pool_block(qm: Any, li: int, in_fmt: FixedFormat, in_lo: list[int], in_hi: list[int], cfg: VerilogConfig,
               name: str, depth0: int = 0, planner: Planner | None = None) -> Any:
    """The block of pooling layer ``qm.layers[li]`` (see the module doc); a ``generator.Block``."""
    from .generator import Block, _bus_in, _bus_out, _convert, _dense_block, _finish, _header

    L = qm.layers[li]
    if L.mode == "avg":
        return _dense_block(qm, li, in_fmt, in_lo, in_hi, cfg, name, depth0, planner)
    of = L.output_format
    m = Module(name, _header(qm, f"Max pooling {L.name!r}: {L.in_shape} -> {L.out_shape}, window {L.pool_size}, "
                                 f"strides {L.strides}, padding {L.padding}, activation {L.activation}.", cfg)
               + [f"input {in_fmt}; output {of}. One compare-and-select tree per output ({MAX_LEVELS} levels per node)."])
    xs = _bus_in(m, "x", L.n_in, in_fmt, in_lo, in_hi, "layer input")
    pipe = Pipe(m, cfg.levels_per_stage, depth0, planner)
    leaves = [[xs[i] for i in dict.fromkeys(row)] for row in L.gather_index().tolist()]  # repeats dropped
    roots = max_trees(m, "n", leaves, pipe)
    outs = _convert(m, "y", roots, of, L.activation == "relu", pipe)
    outs = _finish(m, pipe, outs, cfg)
    _bus_out(m, "y", outs, of, "layer output")
    return Block(name, m, pipe.stages, [s.lo for s in outs], [s.hi for s in outs],
                 {"accumulation": "max tree", "max_levels_per_stage": pipe.max_depth, "depth_out": pipe.depth})
