"""Every figure of a run checked against its target, as report flags (l1ad.report.Flag): bit-exact checks,
unreachable trigger rates, the latency budget, low-statistics TPR, the stitching closure, the offline analyses'
statistics. Each function reads the summary or a stage's JSON and says why, with the number needed."""
from __future__ import annotations

import math
from typing import Any, Sequence

from .report import Flag

#: |pull| above which a stitching-closure point is said to depart from 1
CLOSURE_PULL = 2.0


def khz(hz: float | None) -> str:
    """A rate in kHz, three significant figures."""
    return "—" if hz is None else f"{hz / 1e3:.3g} kHz"


def bit_exact(summary: dict) -> list[Flag]:
    """Framework vs emulator per front-end, HLS C simulation and RTL co-simulation: any mismatch is a failure."""
    flags = []
    for fe, m in summary.get("models", {}).items():
        agree = m.get("framework_vs_emulator")
        if not agree:
            continue
        bad = sum(v["score_mismatches"] for v in agree.values())
        n = sum(v["events"] for v in agree.values())
        flags.append(Flag("bad" if bad else "ok", f"{fe} framework score vs bit-exact emulator: {bad} mismatches in "
                                                  f"{n:,} events ({len(agree)} samples)"))
    hls = summary.get("hls") or {}
    if hls.get("mismatches") is not None:
        mm = hls["mismatches"]
        bad = sum(mm.values()) if isinstance(mm, dict) else int(mm)
        detail = ", ".join(f"{k} {v}" for k, v in mm.items()) if isinstance(mm, dict) else str(mm)
        flags.append(Flag("bad" if bad else "ok", f"hls4ml C simulation vs emulator: {bad} mismatches in "
                                                  f"{hls.get('vectors', 0):,} vectors per set ({detail})"))
    rtl = summary.get("rtl") or {}
    if rtl.get("mismatches") is not None:
        bad = int(rtl["mismatches"])
        flags.append(Flag("bad" if bad else "ok", f"Verilog (Verilator) co-simulation vs emulator: {bad} mismatches "
                                                  f"in {rtl.get('vectors', 0):,} vectors, every output bit"))
    return flags


def latency(rtl: dict, budget_ns: float) -> list[Flag]:
    """The RTL latency against the budget, with the cycles (at this clock) or the clock (at these cycles) needed."""
    cycles, mhz = rtl.get("latency_cycles"), rtl.get("clock_mhz")
    if not cycles or not mhz:
        return []
    ns = cycles * 1e3 / mhz
    if ns <= budget_ns:
        return [Flag("ok", f"latency {cycles} cycles at {mhz:g} MHz = {ns:.1f} ns, within the {budget_ns:g} ns budget")]
    max_cycles = math.floor(budget_ns * mhz / 1e3 + 1e-9)
    return [Flag("bad", f"latency {cycles} cycles at {mhz:g} MHz = {ns:.1f} ns exceeds the {budget_ns:g} ns budget "
                        f"(firmware.verilog.budget_ns): needs at most {max_cycles} cycles at {mhz:g} MHz, or a "
                        f"{cycles * 1e3 / budget_ns:.0f} MHz clock for {cycles} cycles")]


def unreachable_rates(checks: Sequence[dict], frontend: str) -> list[Flag]:
    """One flag per group of unreached targets sharing a threshold (rates.json `threshold_checks`)."""
    groups: dict[Any, list[dict]] = {}
    for c in checks:
        if not c["reachable"]:
            groups.setdefault(c["threshold"], []).append(c)
    flags = []
    for thr, cs in groups.items():
        targets = ", ".join(f"{c['target_hz'] / 1e3:g}" for c in cs)
        ratios = [c["target_hz"] / c["rate_hz"] for c in cs if c["rate_hz"] > 0]
        below = (f"{min(ratios):.0f}–{max(ratios):.0f}x" if len(ratios) > 1 else f"{ratios[0]:.0f}x") if ratios else "far"
        share = f"all share threshold code {thr}" if len(cs) > 1 else f"threshold code {thr}"
        flags.append(Flag("bad", f"{frontend}: target(s) {targets} kHz not reached: {share}, rate {khz(cs[0]['rate_hz'])} "
                                 f"({below} below target); the next lower code gives {khz(cs[0]['rate_if_lower_hz'])}. "
                                 f"The zero-bias sample (n_eff {cs[0]['zb_n_eff']:,.0f}) is too coarse: about "
                                 f"{max(c['zb_events_needed'] for c in cs):,} effective events are needed"))
    if checks and not groups:
        flags.append(Flag("ok", f"{frontend}: every target rate reached within a factor 2 "
                                f"({', '.join(khz(c['target_hz']) for c in checks)})"))
    return flags


def low_statistics_tpr(rates: dict[str, dict]) -> list[Flag]:
    """One flag for every TPR at an FPR target that the zero-bias sample does not resolve (all front-ends)."""
    bad = {}
    for fe, d in rates.items():
        for sig, s in d.get("signals", {}).items():
            for t in s.get("tpr_at_fpr", []):
                if t.get("reliable") is False:
                    bad.setdefault(t["fpr"], []).append((fe, sig, t))
    flags = []
    for fpr, items in bad.items():
        t = items[0][2]
        flags.append(Flag("warn", f"TPR at FPR {fpr:g} is not measured ({len(items)} values, every front-end): the "
                                  f"zero-bias sample (n_eff {t['bkg_n_eff']:,.0f}) holds {t['bkg_n_eff'] * fpr:.2g} "
                                  f"effective events at that FPR; {t['zb_events_needed']:,} effective zero-bias events "
                                  f"are needed. Shown with the signal-statistics interval, in amber"))
    return flags


def closure(table: dict | None, pool_events: int | None) -> tuple[list[Flag], str]:
    """The stitched / minimum-bias single-jet rate ratio where it departs from 1 (|pull| > CLOSURE_PULL):
    (flags, a sentence for the data section)."""
    if not table:
        return [], ""
    pts = [(t, a / b, p, n) for t, a, b, p, n, ok in zip(table["thresholds_gev"], table["stitched_fraction"],
                                                         table["minbias_fraction"], table["pull"],
                                                         table["minbias_events"], table["compared"]) if ok and b > 0]
    off = [p for p in pts if abs(p[2]) > CLOSURE_PULL]
    if not pts:
        return [], ""
    if not off:
        txt = (f"Stitching closure: stitched / minimum-bias single-jet rate within {CLOSURE_PULL:g}σ of 1 at all "
               f"{len(pts)} compared thresholds ({pts[0][0]:g}–{pts[-1][0]:g} GeV).")
        return [Flag("ok", txt)], txt
    worst = min(off, key=lambda p: p[1]) if any(p[1] < 1 for p in off) else max(off, key=lambda p: p[1])
    pool = f" a {pool_events:,}-event pile-up pool," if pool_events else ""
    txt = (f"Stitching closure departs from 1 at {len(off)} of {len(pts)} compared thresholds "
           f"({', '.join(f'{p[0]:g}' for p in off)} GeV): the ratio reaches {worst[1]:.2f} at {worst[0]:g} GeV "
           f"(pull {worst[2]:+.1f}, {worst[3]} unweighted minimum-bias events there). The unweighted reference has few "
           f"events in its tail and, with{pool} its hard tail rests on a few pool events; treat rates set where the "
           f"ratio departs from 1 with that uncertainty, or generate a larger minbias_closure / pileup_pool.")
    return [Flag("warn", txt)], txt


def offline_statistics(per_rate: Sequence[dict]) -> tuple[list[Flag], dict[str, str]]:
    """The offline analyses skipped for lack of events, said once per reason: (flags, {reason: short label})."""
    reasons: dict[str, list[str]] = {}
    for r in per_rate:
        for key in ("bumphunt", "dijet_bumphunt", "nplm"):
            why = (r.get(key) or {}).get("skipped")
            if why:
                reasons.setdefault(why, []).append(khz(r["target_hz"]))
    labels = {why: f"skipped ({chr(ord('a') + i)})" for i, why in enumerate(reasons)}
    flags = [Flag("warn", f"{labels[why]} at {', '.join(dict.fromkeys(rates))}: {why}") for why, rates in reasons.items()]
    for r in per_rate:
        nq = r.get("nplm") or {}
        p = nq.get("p", nq.get("p_empirical"))  # the quoted p (toys; chi2 only beyond every toy, when KS accepts it)
        if p is not None and nq.get("n_toys") and p < 0.01:
            flags.append(Flag("bad", f"NPLM half-vs-half null test fires at {khz(r['target_hz'])}: p = {p:.2g} "
                                     f"({nq['n_toys']} toys); the two halves of one stream should agree"))
    return flags, labels
