"""`summary.json` and `report.html` of a pipeline run, assembled from the stages' own summaries and files.

Every number in the report is checked against its target (l1ad.checks) and flagged; thresholds are given in
score units with the integer code beside them; efficiencies and TPRs carry their intervals; every front-end's
plots are embedded."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from . import checks
from .checks import khz
from .config import L1adConfig
from .layers import layer_rows
from .report import Cell, Flag, Section, git_commit, write_report
from .stages import StageRecord

#: the keys summary.json always has (tests check the schema)
SUMMARY_KEYS = ("versions", "config_hash", "data", "models", "thresholds", "hls", "rtl", "offline", "timings")


def build_summary(cfg: L1adConfig, records: Sequence[StageRecord], out_dir: Path, versions: dict) -> dict:
    """The machine-readable summary of a run."""
    s = {r.name: r.summary for r in records}
    deploy = cfg.models.deploy
    rates = s.get("rates", {})
    models = {}
    for fe, r in rates.items():
        models[fe] = {"auc": r.get("auc", {}), "tpr_at_fpr_1e-5": r.get("tpr_at_1e-5", {})}
        fw = s.get("firmware", {}).get(fe)
        if fw:
            models[fe]["framework_vs_emulator"] = fw.get("framework_vs_emulator")
            models[fe]["score_format"] = fw.get("score_format")
    thresholds = []
    dep = rates.get(deploy, {})
    pure = {round(p.get("target_hz", 0.0), 6): p for p in dep.get("pure_rates", [])}
    for i, t in enumerate(dep.get("thresholds", [])):
        thresholds.append({
            "target_rate_hz": t.get("target_hz"),
            "threshold_float": (dep.get("threshold_real") or [None] * (i + 1))[i],
            "threshold_int": (dep.get("threshold_codes") or [None] * (i + 1))[i],
            "rate_hz": t.get("rate_hz"),
            "rate_interval_hz": [t.get("rate_lo_hz"), t.get("rate_hi_hz")],
            "pure_rate_hz": pure.get(round(t.get("target_hz", 0.0), 6), {}).get("pure_rate_hz"),
        })
    rtl = s.get("rtl", {})
    return {
        "versions": versions,
        "config_hash": cfg.hash(),
        "data": s.get("data", {}).get("samples", {}),
        "models": models,
        "deployed_frontend": deploy,
        "thresholds": thresholds,
        "hls": {k: s["hls"][k] for k in ("vectors", "mismatches", "frontend") if k in s.get("hls", {})},
        "rtl": {k: rtl.get(k) for k in ("vectors", "mismatches", "latency_cycles", "clock_mhz", "lut", "ff", "dsp", "carry")},
        "offline": s.get("offline", {}),
        "cicada": s.get("cicada", {}),
        "timings": {r.name: {"seconds": r.seconds, "cached": r.cached} for r in records},
        "out_dir": str(out_dir),
    }


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _p(v: Any) -> str:
    return "—" if v is None else f"{v:.3g}"


def _interval(v: float | None, lo: float | None, hi: float | None) -> str:
    return "—" if v is None else f"{v:.3g} [{lo:.3g}, {hi:.3g}]"


# ---------------------------------------------------------------------------------------------- sections
def _data_section(cfg: L1adConfig, summary: dict, out_dir: Path) -> Section:
    manifest = _json(out_dir / "data" / "manifest.json")
    flags, closure_txt = checks.closure(manifest.get("closure"), cfg.data.sizes.get("pileup_pool")
                                        if isinstance(cfg.data.sizes, dict) else None)
    rows = []
    for k, v in summary["data"].items():
        zb = k == "zero_bias"
        rows.append([k, v.get("events"), v.get("weight_sum"),
                     "fraction of bunch crossings (sums to 1)" if zb else "pb (σ × acceptance: pb per event)"])
    return Section(
        "Data",
        [f"Pythia 8 + FastJet at {cfg.data.sqrt_s / 1e3:.1f} TeV, pile-up ⟨μ⟩ = {cfg.data.pileup_mean:g}. Zero-bias "
         "weights are fractions of bunch crossings (their sum is 1 for the whole stream); signal and dijet weights are "
         "cross-sections per event in pb (their sum is the sample's σ × acceptance in pb)."]
        + ([closure_txt] if closure_txt and not flags else []),
        [("", ["sample", "events", "weight sum", "unit of the weight sum"], rows)],
        [("Stitched vs minimum-bias single-jet rate (ratio below)", out_dir / "data" / "stitching_closure.png")],
        flags,
    )


def _rates_files(cfg: L1adConfig, out_dir: Path) -> dict[str, dict]:
    kinds = list(cfg.models.frontends) + (["float"] if cfg.models.float_reference else [])
    return {fe: d for fe in kinds if (d := _json(out_dir / "rates" / fe / "rates.json"))}


def _threshold_section(cfg: L1adConfig, summary: dict, rates: dict[str, dict], out_dir: Path) -> Section:
    deploy = summary["deployed_frontend"]
    reach = {c["target_hz"]: c for c in rates.get(deploy, {}).get("threshold_checks", [])}
    rows = []
    for t in summary["thresholds"]:
        c = reach.get(t["target_rate_hz"], {})
        ok = c.get("reachable", True)
        status = Cell("reached", "ok") if ok else Cell(
            f"not reached: {t['target_rate_hz'] / max(t['rate_hz'], 1e-300):.3g}x below", "bad", c.get("message", ""))
        lo, hi = t["rate_interval_hz"]
        rows.append([khz(t["target_rate_hz"]), f"{t['threshold_float']:.6g} (code {t['threshold_int']})",
                     Cell(f"{khz(t['rate_hz'])} [{lo / 1e3:.3g}, {hi / 1e3:.3g}]", None if ok else "bad"), status,
                     khz(c.get("rate_if_lower_hz")), khz(t["pure_rate_hz"])])
    flags = [f for fe, d in rates.items() if fe != "float" for f in checks.unreachable_rates(d.get("threshold_checks", []), fe)]
    figs = [(f"Rate vs threshold ({fe}{', float scores' if fe == 'float' else ''})", out_dir / "rates" / fe / "rate_curve.png")
            for fe in rates]
    return Section(
        f"Thresholds by rate ({deploy}, bit-exact emulator scores)",
        ["The trigger fires when score > threshold. Rates are the zero-bias rate × the weighted fraction of held-out "
         "zero-bias events above the threshold; intervals are weighted Clopper-Pearson (68.3 %). Thresholds are in "
         "score units with the integer code the comparator uses beside them. A target is reached when the rate lies "
         f"within a factor {1 / cfg.rates.min_rate_fraction:g} below it; the next lower code overshoots the target."],
        [("", ["target", "threshold (code)", "rate [68 % interval, kHz]", "target reached?", "next lower code gives",
               "pure rate (no menu seed)"], rows)],
        figs, flags,
    )


def _efficiency_section(rates: dict[str, dict], out_dir: Path) -> Section:
    rows = []
    for fe, d in rates.items():
        unreached = {c["target_hz"] for c in d.get("threshold_checks", []) if not c["reachable"]}
        for sig, s in d.get("signals", {}).items():
            cells = []
            for e in s.get("efficiency_at_rate", []):
                txt = _interval(e["efficiency"], e["efficiency_lo"], e["efficiency_hi"])
                cells.append(Cell(txt, "warn", "the threshold does not give the target rate: this is the efficiency at "
                                               f"{khz(e['rate_hz'])}") if e["target_hz"] in unreached else txt)
            rows.append([fe, sig, *cells])
    targets = [khz(e["target_hz"]) for d in list(rates.values())[:1] for s in list(d.get("signals", {}).values())[:1]
               for e in s.get("efficiency_at_rate", [])]
    return Section(
        "Signal efficiency at each target rate",
        ["Weighted signal fraction above each rate's threshold, with its Clopper-Pearson interval (68.3 %). Amber: the "
         "threshold misses its target rate, so the efficiency belongs to the rate actually reached."],
        [("", ["front-end", "signal", *targets], rows)],
        [(f"Efficiency vs rate ({fe})", out_dir / "rates" / fe / "efficiency_vs_rate.png") for fe in rates],
    )


def _models_section(rates: dict[str, dict], out_dir: Path) -> Section:
    sigs = sorted({s for d in rates.values() for s in d.get("signals", {})})
    rows = []
    for fe, d in rates.items():
        ss = d.get("signals", {})
        tprs = []
        for s in sigs:
            t = (ss.get(s, {}).get("tpr_at_fpr") or [None])[0]
            if t is None:
                tprs.append("—")
            elif "tpr_step_lo" in t:
                txt = _interval(t["tpr_step"], t["tpr_step_lo"], t["tpr_step_hi"])
                tprs.append(Cell(txt, None if t.get("reliable") else "warn",
                                 "" if t.get("reliable") else f"needs {t['zb_events_needed']:,} effective zero-bias events"))
            else:
                tprs.append(f"{t['tpr']:.3g}")
        rows.append([fe, *[ss.get(s, {}).get("auc") for s in sigs], *tprs])
    return Section(
        "Models: AUC and TPR at FPR = 1e-5",
        ["TPR is the signal efficiency of the threshold whose zero-bias FPR is at most 1e-5, with its signal-statistics "
         "interval (Clopper-Pearson, 68.3 %); amber where the zero-bias sample cannot resolve that FPR."],
        [("", ["front-end", *[f"AUC {s}" for s in sigs], *[f"TPR@1e-5 {s}" for s in sigs]], rows)],
        [(f"ROC ({fe})", out_dir / "rates" / fe / "roc.png") for fe in rates],
        checks.low_statistics_tpr(rates),
    )


def _firmware_section(cfg: L1adConfig, summary: dict, out_dir: Path) -> Section:
    hls, rtl = summary["hls"], summary["rtl"]
    rows = []
    if hls:
        mm = hls.get("mismatches", {})
        bad = sum(mm.values()) if isinstance(mm, dict) else mm
        rows.append(["hls4ml C simulation", hls.get("vectors"),
                     Cell(", ".join(f"{k}={v}" for k, v in mm.items()), "bad" if bad else "ok")])
    if rtl.get("vectors") is not None:
        rows.append(["Verilog (Verilator)", rtl.get("vectors"), Cell(str(rtl.get("mismatches")), "bad" if rtl["mismatches"] else "ok")])
    flags = checks.bit_exact(summary) + checks.latency(rtl, cfg.firmware.verilog.budget_ns)
    rtl_dir = out_dir / "rtl" / "rtl"
    yosys = _json(rtl_dir / "report.json").get("resources")
    paras = []
    if rtl.get("latency_cycles"):
        paras.append(f"Latency {rtl['latency_cycles']} cycles at {rtl['clock_mhz']:g} MHz = "
                     f"{rtl['latency_cycles'] * 1e3 / rtl['clock_mhz']:.1f} ns (budget {cfg.firmware.verilog.budget_ns:g} ns, "
                     "firmware.verilog.budget_ns; AXOL1TL: two bunch crossings); one event per clock (II = 1).")
    if yosys:
        paras.append(f"Yosys synth_xilinx (UltraScale+), whole design: LUT {yosys.get('LUT')}, FF {yosys.get('FF')}, "
                     f"DSP {yosys.get('DSP')}, CARRY {yosys.get('CARRY')}.")
    else:
        flags.append(Flag("warn", "Yosys off (firmware.yosys: false): resources are estimates (CSD adders × layer-input "
                                  "bits), not a synthesis result"))
    tables = [("Bit-exact checks", ["check", "vectors", "mismatches"], rows)]
    if (rtl_dir / "qmodel.json").is_file():
        header, lrows, per_module = layer_rows(rtl_dir)
        tables.append(("Per-layer formats, latency and resources" + (" (Yosys per module, and the estimate)" if per_module
                       else " (Yosys off: estimate)"), header, lrows))
        paras.append("Resource estimate: one adder per extra canonical-signed-digit term of each output's sum, about as "
                     "wide as the layer's input; on the quick-run model it was 1.22x Yosys' LUT count for the dense "
                     "layers (1.03x-1.28x per layer). Formats: fixed<W,I> counts the sign in I (ap_fixed); rnd_conv,sat "
                     "= round half to even, saturate.")
    return Section("Firmware: bit-exact checks, latency and resources", paras, tables, [], flags)


#: offline.trigger -> which bits selected the offline samples, in words
_SELECTING = {"axol1tl": "the AXOL1TL-style trigger", "cicada": "the CICADA-style trigger",
              "or": "the OR of the AXOL1TL-style and CICADA-style triggers, each at its own threshold for the target"}


def _offline_section(off: dict, out_dir: Path) -> Section:
    """Triggered-stream analyses per rate, and the discovery reach table and plot."""
    per_rate = off.get("per_rate", [])
    flags, labels = checks.offline_statistics(per_rate)
    rows = []
    figs = [("Cross-section for 3σ / 5σ vs trigger rate", out_dir / "offline" / "reach_vs_rate.png")]
    shown_dijet: list[dict] = []  # the dijet-stream hunt is often the same at every rate: draw each result once
    for r in per_rate:
        bh, dj, nq = r.get("bumphunt", {}), r.get("dijet_bumphunt", {}), r.get("nplm", {})
        dj_sig = dj.get("with_signal", {})
        rows.append([khz(r["target_hz"]), khz(r["kept_hz"]), r["triggered_events"],
                     labels.get(bh.get("skipped"), f"global p {_p(bh.get('global_p_toys'))}"),
                     labels.get(dj.get("skipped"), f"bkg-only p {_p(dj.get('background_only', {}).get('global_p_toys'))}; "
                                                   f"+{dj_sig.get('injected', 0)} signal: local Z {_p(dj_sig.get('local_z'))}, "
                                                   f"global p {_p(dj_sig.get('global_p_toys'))}"),
                     labels.get(nq.get("skipped"), f"p {_p(nq.get('p', nq.get('p_empirical')))} "
                                                   f"({nq.get('p_method', 'toys')}; {nq.get('n_toys')} toys)")])
        plot = dj_sig.get("plot")
        if plot and _without_plots(dj) not in shown_dijet:
            shown_dijet.append(_without_plots(dj))
            figs.append((f"dijet bump hunt (spectrum, fit, pulls, local Z), {khz(r['target_hz'])}", out_dir / "offline" / plot))
        if nq.get("plot"):
            figs.append((f"NPLM null test, {khz(r['target_hz'])}", out_dir / "offline" / nq["plot"]))
    reach = off.get("reach", [])
    targets = list(dict.fromkeys(r["target_hz"] for r in reach))
    zs = sorted({k for r in reach for k in r if k.startswith("xsec_pb_")}, key=lambda z: float(z[8:-5]))
    reach_rows = []
    for sig in dict.fromkeys((r["signal"], r["search"]) for r in reach):
        by = {r["target_hz"]: r for r in reach if (r["signal"], r["search"]) == sig}
        reach_rows.append([sig[0], sig[1], *[" / ".join(_p(by[t].get(z)) if by.get(t, {}).get(z) is not None else "n/d"
                                                         for z in zs) for t in targets]])
    z_names = " / ".join(z.replace("xsec_pb_", "").replace("sigma", "σ") for z in zs)
    return Section(
        "Offline searches and discovery reach",
        [f"Triggered samples are the events whose emulator trigger bit fires ({_SELECTING.get(off.get('trigger', 'axol1tl'))}). "
         f"Reach: the cross-section [pb] giving a "
         f"median (Asimov) significance of {z_names} over the triggered background for {off.get('luminosity_fb')} fb⁻¹; "
         "n/d where no simulated background passes. Skipped analyses are labelled (a), (b), ... and explained once in "
         "the flags above."],
        [("Per trigger rate", ["target", "kept rate", "triggered ZB events", "ZB m_jj bump hunt", "dijet stream bump hunt",
                               "NPLM (half vs half)"], rows),
         (f"Discovery reach: σ [pb] for {z_names}", ["signal", "search", *[khz(t) for t in targets]], reach_rows)],
        figs, flags,
    )


def _cicada_section(c: dict, out_dir: Path) -> Section:
    """The CICADA-style calorimeter trigger: teacher/student agreement, thresholds, efficiencies with the
    AXOL1TL-style trigger and their OR, and the student's bit-exact checks."""
    flags: list[Flag] = []
    paras = [f"Teacher: float conv autoencoder on the 18 x 14 calorimeter-region images; student ({c.get('frontend')}, "
             "quantized) regresses ln(teacher MSE); its single output is the trigger score (IR score kind 'out')."]
    corr = c.get("correlation", {})
    if corr:
        sp = corr.get("spearman", float("nan"))
        level = "ok" if sp >= 0.7 else ("warn" if sp >= 0.4 else "bad")
        paras.append(f"Teacher vs student on {corr.get('events'):,} held-out zero-bias images: Spearman {sp:.3f}, "
                     f"Pearson (ln teacher MSE) {corr.get('pearson_log_teacher', float('nan')):.3f}.")
        if level != "ok":
            flags.append(Flag("warn" if level == "warn" else "bad",
                              f"the student follows the teacher poorly (Spearman {sp:.2f} < 0.7): train longer or widen it"))
    agree = c.get("framework_vs_emulator", {})
    bad = sum(v.get("output_mismatches", 0) for v in agree.values())
    n_ev = sum(v.get("events", 0) for v in agree.values())
    rtl = c.get("rtl", {})
    rows = [["student framework forward vs emulator", f"{n_ev:,} images", Cell(str(bad), "bad" if bad else "ok")]]
    hls = c.get("hls", {})
    hls_bad = sum(hls.get("mismatches", {}).values())  # none when the check was skipped
    if hls.get("vectors") is not None:
        rows.append(["student HLS C simulation vs emulator", f"{hls['vectors']:,} vectors",
                     Cell(str(hls_bad), "bad" if hls_bad else "ok")])
    if rtl.get("vectors") is not None:
        rows.append(["student RTL (Verilator) vs emulator", f"{rtl['vectors']:,} vectors",
                     Cell(str(rtl["mismatches"]), "bad" if rtl["mismatches"] else "ok")])
        paras.append(f"Student RTL latency {rtl.get('latency_cycles')} cycles = {rtl.get('latency_ns', 0):.1f} ns at "
                     f"{rtl.get('clock_mhz')} MHz" + (f"; Yosys LUT {rtl.get('lut')}, FF {rtl.get('ff')}, DSP {rtl.get('dsp')}."
                                                      if rtl.get("lut") is not None else " (Yosys off)."))
    if bad or hls_bad or rtl.get("mismatches"):
        flags.append(Flag("bad", "the CICADA-style student is not bit-exact: see the checks table"))
    thr_rows = [[khz(t["target_hz"]), khz(t["rate_hz"]), f"{t['value']:.6g} (code {t['code']})"] for t in c.get("thresholds", [])]
    or_rows = []
    for r in c.get("or_with_axol1tl", []):
        or_rows.append([khz(r["target_hz"]), khz(r["axol1tl_hz"]), khz(r["cicada_hz"]), khz(r["or_hz"]), khz(r["overlap_hz"])])
    eff_rows = []
    for r in c.get("or_with_axol1tl", []):
        for sname, e in r.get("signals", {}).items():
            eff_rows.append([khz(r["target_hz"]), sname, f"{e['axol1tl']:.4f}", f"{e['cicada']:.4f}", f"{e['or']:.4f}"])
    tables = [("Bit-exact checks", ["check", "inputs", "mismatches"], rows),
              ("Thresholds by rate (student score)", ["target", "rate", "threshold"], thr_rows),
              ("OR with the AXOL1TL-style trigger, each at its own threshold for the target", ["target", "AXOL1TL-style",
               "CICADA-style", "OR", "overlap"], or_rows),
              ("Signal efficiencies", ["target", "signal", "AXOL1TL-style", "CICADA-style", "OR"], eff_rows)]
    return Section("CICADA-style calorimeter trigger", paras, tables, [], flags)


def _without_plots(d: Any) -> Any:
    """A result dict with its plot file names removed (to compare results across rates)."""
    if isinstance(d, dict):
        return {k: _without_plots(v) for k, v in d.items() if k != "plot"}
    return d


def build_report(cfg: L1adConfig, summary: dict, out_dir: Path) -> Path:
    """report.html: one self-contained page for the physicist and the firmware engineer."""
    out_dir = Path(out_dir)
    rates = _rates_files(cfg, out_dir)
    sections = [_data_section(cfg, summary, out_dir), _threshold_section(cfg, summary, rates, out_dir),
                _efficiency_section(rates, out_dir), _models_section(rates, out_dir),
                _firmware_section(cfg, summary, out_dir)]
    off = summary.get("offline") or {}
    if off:
        sections.append(_offline_section(off, out_dir))
    cic = summary.get("cicada") or {}
    if cic.get("enabled"):
        sections.append(_cicada_section(cic, out_dir))
    t = summary["timings"]
    sections.append(Section("Timings", [], [("", ["stage", "seconds", "cached"],
                                             [[k, v["seconds"], v["cached"]] for k, v in t.items() if isinstance(v, dict)])]))
    v = summary["versions"]
    meta = {"generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "git commit": git_commit(),
            "config hash": summary["config_hash"], "deployed front-end": summary["deployed_frontend"],
            "versions": ", ".join(f"{k} {v[k]}" for k in ("l1ad", "qkeras", "brevitas", "hls4ml", "cocotb") if k in v),
            "output folder": str(out_dir)}
    if (out_dir / "summary.json").is_file():  # the verdicts, for machines too: summary.json["flags"]
        from l1ad.trigger.atomic import write_json_atomic

        flags = [{"level": f.level, "section": sec.title, "text": f.text} for sec in sections for f in sec.flags]
        write_json_atomic(out_dir / "summary.json", {**_json(out_dir / "summary.json"), "flags": flags})
    return write_report(out_dir / "report.html", "l1ad: anomaly-detection trigger, end to end", sections, meta=meta)
