"""Verilog building blocks: CSD constants, interval widths, and every ap_fixed rounding x overflow conversion,
simulated exhaustively (every input code) with Verilator and compared with firmware.fixed bit for bit."""
from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l1ad.firmware.fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedFormat, requantize
from l1ad.firmware.verilog.rtl import Module, Sig, bits_for, csd, ext, requant, requant_levels

needs_verilator = pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator not installed")


@given(st.integers(-(1 << 40), 1 << 40))
def test_csd_is_exact_and_canonical(v):
    digits = csd(v)
    assert sum(d << k for k, d in digits) == v
    ks = [k for k, _ in digits]
    assert all(b - a >= 2 for a, b in zip(ks, ks[1:]))  # no two adjacent non-zero digits
    assert len(digits) <= (abs(v).bit_length() + 2) // 2 + 1


@given(st.integers(-(1 << 70), 1 << 70), st.integers(0, 1 << 70))
def test_bits_for_is_minimal(a, d):
    lo, hi = a, a + d
    w, signed = bits_for(lo, hi)
    assert signed == (lo < 0)
    if signed:
        assert -(1 << (w - 1)) <= lo and hi < (1 << (w - 1))
        assert w == 1 or not (-(1 << (w - 2)) <= lo and hi < (1 << (w - 2)))
    else:
        assert hi < (1 << w) and (w == 1 or hi >= (1 << (w - 1)))


# source formats x destination grid: shifts < 0, = 0, > 0 and > source width; every mode; narrow and signed
# and unsigned targets (so every overflow and rounding corner appears among all source codes)
SOURCES = [FixedFormat(7, 3, True), FixedFormat(6, 2, False)]
DESTS = [FixedFormat(w, i, sg, r, o)
         for (w, i, sg) in [(4, 2, True), (3, 3, False), (5, 1, True), (4, 5, True), (2, -3, True)]
         for r, o in itertools.product(ROUNDING_MODES, OVERFLOW_MODES)]


def _requant_design(tmp_path):
    """One module: input a (per source format), outputs = every conversion (plain, relu, with +constant)."""
    from l1ad.sim.verilator import RTL, Port

    cases = []
    m = Module("blocks", ["requant test bench"])
    m.clk()
    outs = []
    for si, src in enumerate(SOURCES):
        a = Sig(m.input(f"a{si}", src.width, str(src)), src.width, src.signed, src.min_code, src.max_code, src.frac)
        for di, dst in enumerate(DESTS):
            for variant, kw in (("plain", {}), ("relu", {"relu": True}), ("plus", {"plus": 5})):
                name = f"y{si}_{di}_{variant}"
                y, lv = requant(m, name, a, dst, **kw)
                assert lv == requant_levels(a, dst, **kw)
                m.reg(f"{name}_q", dst.width, ext(m, y, dst.width))
                m.use(f"{name}_q")
                outs.append((f"{name}_q", dst.width))
                cases.append((si, src, dst, variant, f"{name}_q"))
    for n, w in outs:
        m.output(f"o_{n}", w, n)
    (tmp_path / "blocks.v").write_text(m.render())
    ports = tuple(Port(f"a{si}", s.width, "input") for si, s in enumerate(SOURCES)) + \
        tuple(Port(f"o_{n}", w, "output") for n, w in outs)
    return RTL(tmp_path, "blocks", (tmp_path / "blocks.v",), ports, {}), cases


@needs_verilator
@pytest.mark.verilator
def test_requant_every_mode_exhaustive(tmp_path):
    from l1ad.sim.packing import pack, unpack
    from l1ad.sim.verilator import build_batch, lint

    rtl, cases = _requant_design(tmp_path)
    assert lint(rtl.sources, rtl.top) == []
    codes = {si: np.arange(s.min_code, s.max_code + 1) for si, s in enumerate(SOURCES)}
    n = max(len(c) for c in codes.values())
    stim = {f"a{si}": pack(np.resize(c, n)[:, None], SOURCES[si].width) for si, c in codes.items()}
    outs, _ = build_batch(rtl, build_root=tmp_path / "b").run(stim)
    bad = []
    for si, src, dst, variant, name in cases:
        a = np.resize(codes[si], n)
        got = unpack(outs[f"o_{name}"][1:], 1, dst.width, dst.signed)[:, 0]  # row c+1 holds the result of row c
        x = a[:-1]
        if variant == "relu":
            x = np.maximum(x, 0)
        wide = FixedFormat(src.width + 4, src.integer + 4, True)  # holds a + 5 exactly
        if variant == "plus":
            x = x + 5
        want = requantize(x, wide, dst)[0]
        if not np.array_equal(got, want):
            i = int(np.flatnonzero(got != want)[0])
            bad.append(f"{variant} {src} -> {dst}: code {a[i]} gives {got[i]}, expected {want[i]}")
    assert not bad, f"{len(bad)} conversions differ, e.g. {bad[:5]}"
    assert len(cases) == len(SOURCES) * len(DESTS) * 3
