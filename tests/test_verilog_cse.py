"""Shared shift-add subexpressions (firmware.verilog.cse): the plan computes the exact sums with fewer adders and
no deeper trees, and the generated RTL stays bit-exact against the emulator in Verilator co-simulation (random
small networks with CSE on, edge and random vectors, several pipelining depths)."""
from __future__ import annotations

import random
import shutil

import numpy as np
import pytest

from l1ad.firmware.verilog import VerilogConfig, export_verilog, generate
from l1ad.firmware.verilog import cse
from l1ad.firmware.verilog.rtl import csd
from l1ad.sim.models import l1_autoencoder, random_qmodel


def _digits(W: np.ndarray) -> list[list[tuple[int, int, int]]]:
    return [[(i, k, d) for i in range(W.shape[0]) for k, d in csd(int(W[i, j]))] for j in range(W.shape[1])]


def _evaluate(p: cse.SumPlan, leaves: list[int]) -> list[int]:
    v = list(leaves)
    for (xs, xk, xg), (ys, yk, yg) in p.nodes:
        v.append(xg * (v[xs] << xk) + yg * (v[ys] << yk))
    return [0 if r is None else r[2] * (v[r[0]] << r[1]) for r in p.roots]


@pytest.mark.parametrize("shape,bits,seed", [((6, 4), 6, 0), ((24, 12), 8, 1), ((12, 20), 4, 2), ((9, 9), 8, 3)])
def test_plan_is_exact_shares_and_keeps_depth(shape, bits, seed):
    rng = np.random.default_rng(seed)
    W = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=shape)
    W[rng.random(shape) < 0.2] = 0
    W[:, 0] = W[:, 1]  # two identical neurons: everything of one is shared
    outs = _digits(W)
    p = cse.plan(outs, shape[0])
    flat = cse.plan(outs, shape[0], cse=False)
    r = random.Random(seed)
    for _ in range(20):
        x = [r.randint(-5000, 5000) for _ in range(shape[0])]
        want = [int(sum(int(W[i, j]) * x[i] for i in range(shape[0]))) for j in range(shape[1])]
        assert _evaluate(p, x) == want == _evaluate(flat, x)
    assert p.adders < flat.adders and p.shared > 0
    assert p.levels <= flat.levels == max(0, (max(len(o) for o in outs) - 1).bit_length())


def test_width_estimates_bound_every_partial_sum():
    """plan(widths=...) tracks each signal's bits (the trees pair by them): every node's value, for inputs at the
    ends of their ranges, fits its estimated two's complement width."""
    rng = np.random.default_rng(7)
    W = rng.integers(-128, 128, size=(14, 6))
    widths = [int(w) for w in rng.integers(3, 13, size=14)]
    p = cse.plan(_digits(W), 14, widths=widths)
    r = random.Random(7)
    for _ in range(30):
        x = [r.choice((-(1 << (w - 1)), (1 << (w - 1)) - 1, r.randint(-(1 << (w - 1)), (1 << (w - 1)) - 1)))
             for w in widths]
        v = list(x)
        for (xs, xk, xg), (ys, yk, yg) in p.nodes:
            v.append(xg * (v[xs] << xk) + yg * (v[ys] << yk))
        assert all(-(1 << (p.width[i] - 1)) <= v[i] < (1 << (p.width[i] - 1)) for i in range(len(v)))
        assert _evaluate(p, x) == [int(sum(int(W[i, j]) * x[i] for i in range(14))) for j in range(6)]


def test_equal_digits_merge_without_adders():
    # x0 + x0 = x0 << 1 and x1 - x1 = 0 need no adder
    p = cse.plan([[(0, 0, 1), (0, 0, 1)], [(1, 2, 1), (1, 2, -1)], [(0, 0, 1), (1, 0, 1)]], 2)
    assert p.roots[0] == (0, 1, 1) and p.roots[1] is None and p.adders == 1
    assert _evaluate(p, [3, 5]) == [6, 0, 8]


def test_cse_saves_adders_in_the_rtl_and_keeps_latency():
    """Sharing at the minimum tree depth (cse_slack=0) keeps the latency; the default one more level per layer
    (cse_slack=1) shares more, for at most one more level per dense layer."""
    q = l1_autoencoder((16, 8, 16), seed=5)
    on = generate(q, VerilogConfig(cse_slack=0, levels_per_stage=0))
    off = generate(q, VerilogConfig(cse=False, levels_per_stage=0))
    deeper = generate(q, VerilogConfig(levels_per_stage=0))
    assert on.meta["max_levels_per_stage"] <= off.meta["max_levels_per_stage"]
    assert deeper.meta["max_levels_per_stage"] <= on.meta["max_levels_per_stage"] + len(q.layers)

    def adders(d):
        return sum(t.count(" + ") + t.count(" - ") + t.count("_uadd #(") for n, t in d.files.items() if "dense" in n)

    assert adders(on) < 0.85 * adders(off)
    assert adders(deeper) <= adders(on)


def test_one_more_level_shares_more():
    """A 57 x 32 layer of 8-bit weights: one more tree level (slack=1) lets the greedy share more (fewer adders)
    and the trees use at most that one level more."""
    rng = np.random.default_rng(7)
    W = np.clip(np.round(rng.normal(0, 128 / np.sqrt(57), size=(57, 32))), -128, 127).astype(int)
    outs = _digits(W)
    p0, p1 = cse.plan(outs, 57, widths=[12] * 57), cse.plan(outs, 57, widths=[12] * 57, slack=1)
    assert p1.adders < 0.97 * p0.adders
    assert p1.levels <= p0.levels + 1
    leaves = [int(v) for v in rng.integers(-2048, 2048, 57)]
    assert _evaluate(p1, leaves) == [int(v) for v in np.asarray(leaves) @ W]


@pytest.mark.verilator
@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator not installed")
def test_cse_random_networks_bit_exact(tmp_path):
    """Random small networks (random formats, rounding / overflow modes, narrow accumulators, 4..8-bit weights)
    with CSE on, at three pipelining depths, both multiplier modes, two's complement and offset-binary trees:
    Verilator == emulator on every output."""
    from l1ad.sim.cosim import cosim_many, default_vectors

    dirs, xs = [], []
    for k in range(4):
        q = random_qmodel(np.random.default_rng(100 + k), n_in=6 + 3 * (k % 2), hidden=[7, 5] if k % 3 else [9],
                          score="mse" if k % 2 else "random", narrow_acc=0.2, name=f"cse{k}")
        lv = (1, 2, 3)[k % 3]
        cfg = VerilogConfig(top=f"cse{k}", levels_per_stage=lv, expose_outputs=True,
                            multiplier="mult" if k == 3 else "shiftadd", offset_binary=k != 1)
        d = tmp_path / f"cse{k}"
        export_verilog(q, d, cfg)
        dirs.append(d)
        xs.append(default_vectors(q, 1500, seed=k))
    for r in cosim_many(dirs, xs, build_root=tmp_path / "build"):
        assert r["ok"] and r["mismatches"] == 0, r["details"]


def test_unreachable_budget_reports_the_logic_depth_and_the_best_clock():
    from l1ad.trigger.errors import L1adError

    q = l1_autoencoder((8,), seed=3)
    # the error names the minimum-depth design (meet_budget drops the default extra sharing level first)
    depth = generate(q, VerilogConfig(levels_per_stage=0, cse_slack=0)).meta["max_levels_per_stage"]
    with pytest.raises(L1adError, match=rf"{depth} logic levels in series .*at any clock the best is about"):
        generate(q, VerilogConfig(clock_mhz=240.0, budget_ns=5.0, meet_budget=True))


def _recount(bank: cse._Bank) -> dict[int, int]:
    counts: dict[int, int] = {}
    for dig in bank.dig:
        items = list(dig.values())
        for u in range(len(items)):
            for v in range(u + 1, len(items)):
                k = cse._key(items[u], items[v])
                counts[k] = counts.get(k, 0) + 1
    return counts


@pytest.mark.parametrize("seed", [0, 1])
def test_pattern_counts_match_a_recount(seed):
    """The incrementally kept pattern counts equal a recount of the digits, before and after sharing (a pattern
    is keyed the same whichever of its two digits comes first, signs included)."""
    rng = np.random.default_rng(seed)
    W = rng.integers(-90, 91, size=(12, 6))
    outs = [ds for ds in _digits(W)]
    bank = cse._Bank(cse.SumPlan(12, depth=[0] * 12, width=[10] * 12), outs, 8)
    assert {k: c for k, c in bank.count.items() if c} == _recount(bank)
    bank.run()
    assert bank.plan.shared > 0
    assert {k: c for k, c in bank.count.items() if c} == _recount(bank)


def test_mixed_sign_pattern_with_a_shared_sum_is_shared():
    """y0 = y1 = x0 + x1 - x2: after x0 + x1 is shared, its sum pairs with -x2 (the new signal's digit comes
    first, so the key orders the two digits the other way round): two adders in all (a pattern keyed with the
    wrong sign relation would find no occurrence and leave each output its own last adder: three)."""
    outs = [[(0, 0, 1), (1, 0, 1), (2, 0, -1)], [(0, 0, 1), (1, 0, 1), (2, 0, -1)]]
    p = cse.plan(outs, 3)
    assert p.adders == 2
    assert _evaluate(p, [5, 7, 11]) == [5 + 7 - 11] * 2


def test_lower_shift_bits_pass_through_the_adder():
    """x + (y << 3): the adder spans x's bits from 3 up; x[2:0] are wired straight into the sum. A subtracted
    lower-shift operand goes first with the sign outside when the caller carries it (flip=True)."""
    from l1ad.firmware.verilog.rtl import Module, Sig, Term, add_terms

    m = Module("t")
    x, y = Sig(m.input("x", 12), 12, True, -2048, 2047), Sig(m.input("y", 8), 8, True, -128, 127)
    t = add_terms(m, "s", Term(x), Term(y, 3), 0)
    line = m.body[-1]
    assert "x[2:0]}" in line and t.sign == 1 and t.sig.lo == -2048 - 1024 and t.sig.hi == 2047 + 1016
    z = Sig(m.input("z", 12), 12, True, -2048, 2047)  # named after y: y comes first in the canonical order
    t2 = add_terms(m, "e", Term(y, 3), Term(z, 0, -1), 0)  # (y << 3) - z, full width: z's low bits need a borrow
    assert "z[2:0]}" not in m.body[-1] and t2.sign == 1
    t3 = add_terms(m, "d", Term(y, 3), Term(z, 0, -1), 0, flip=True)  # = -(z - (y << 3))
    assert "z[2:0]}" in m.body[-1] and " - " in m.body[-1] and t3.sign == -1
    assert (t3.sig.lo, t3.sig.hi) == (-t2.sig.hi, -t2.sig.lo)
