"""`summary.json` and `report.html` of a pipeline run, assembled from the stages' own summaries and files."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .config import L1adConfig
from .report import Section, write_report
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
        "timings": {r.name: {"seconds": r.seconds, "cached": r.cached} for r in records},
        "out_dir": str(out_dir),
    }


def _p(v: Any) -> str:
    return "—" if v is None else f"{v:.3g}"


def _offline_section(off: dict, out_dir: Path) -> Section:
    """Triggered-stream analyses per rate, and the discovery reach table and plot."""
    per_rate = off.get("per_rate", [])
    rows = []
    figs = [("Cross-section for 3σ / 5σ vs trigger rate", out_dir / "offline" / "reach_vs_rate.png")]
    shown_dijet: list[dict] = []  # the dijet-stream hunt is often the same at every rate: draw each result once
    for r in per_rate:
        bh, dj, nq = r.get("bumphunt", {}), r.get("dijet_bumphunt", {}), r.get("nplm", {})
        dj_sig = dj.get("with_signal", {})
        rows.append([_fmt_rate(r["target_hz"]), _fmt_rate(r["kept_hz"]), r["triggered_events"],
                     bh.get("skipped") or f"global p {_p(bh.get('global_p_toys'))}",
                     dj.get("skipped") or f"bkg-only p {_p(dj.get('background_only', {}).get('global_p_toys'))}; "
                                          f"+{dj_sig.get('injected', 0)} signal: local Z {_p(dj_sig.get('local_z'))}, "
                                          f"global p {_p(dj_sig.get('global_p_toys'))}",
                     nq.get("skipped") or f"p {_p(nq.get('p_empirical'))} ({nq.get('n_toys')} toys)"])
        for key, cap in (("dijet_bumphunt", "dijet bump hunt"), ("nplm", "NPLM null test")):
            plot = (r.get(key) or {}).get("with_signal", {}).get("plot") if key == "dijet_bumphunt" else (r.get(key) or {}).get("plot")
            if key == "dijet_bumphunt" and plot:
                same = _without_plots(dj)
                if same in shown_dijet:
                    continue
                shown_dijet.append(same)
            if plot:
                figs.append((f"{cap}, {_fmt_rate(r['target_hz'])}", out_dir / "offline" / plot))
    reach = off.get("reach", [])
    zs = sorted({k for r in reach for k in r if k.startswith("xsec_pb_")})
    reach_rows = [[_fmt_rate(r["target_hz"]), r["signal"], r["search"], r["efficiency"], r["background_events"],
                   *[r.get(z) if r.get(z) is not None else "n/d" for z in zs]] for r in reach]
    return Section(
        "Offline searches and discovery reach",
        [f"Triggered samples are the events whose emulator trigger bit fires. Reach: the cross-section giving a median "
         f"(Asimov) significance over the triggered background for {off.get('luminosity_fb')} fb⁻¹; n/d where no simulated "
         "background passes."],
        [("Per trigger rate", ["target", "kept rate", "triggered ZB events", "ZB m_jj bump hunt", "dijet stream bump hunt",
                               "NPLM (half vs half)"], rows),
         ("Discovery reach", ["target", "signal", "search", "efficiency", "background events",
                              *[z.replace("xsec_pb_", "σ [pb] ") for z in zs]], reach_rows)],
        figs,
    )


def _without_plots(d: Any) -> Any:
    """A result dict with its plot file names removed (to compare results across rates)."""
    if isinstance(d, dict):
        return {k: _without_plots(v) for k, v in d.items() if k != "plot"}
    return d


def _fmt_rate(hz: Any) -> str:
    return "—" if hz is None else f"{hz / 1e3:.3g} kHz"


def build_report(cfg: L1adConfig, summary: dict, out_dir: Path) -> Path:
    """report.html: one self-contained page for the physicist and the firmware engineer."""
    deploy = summary["deployed_frontend"]
    sections = []
    data = summary["data"]
    sections.append(Section(
        "Data",
        [f"Pythia 8 + FastJet at {cfg.data.sqrt_s / 1e3:.1f} TeV, pile-up ⟨μ⟩ = {cfg.data.pileup_mean:g}; zero-bias weights are "
         "fractions of bunch crossings, signal weights are pb per event."],
        [("", ["sample", "events", "weight sum"], [[k, v.get("events"), v.get("weight_sum")] for k, v in data.items()])],
        [("Stitched vs minimum-bias single-jet rate", out_dir / "data" / "stitching_closure.png")],
    ))
    thr = summary["thresholds"]
    sections.append(Section(
        f"Thresholds by rate ({deploy}, bit-exact emulator scores)",
        ["Rates are zero-bias rate × weighted fraction of held-out zero-bias events with score > threshold; "
         "intervals are weighted Clopper-Pearson (68.3 %)."],
        [("", ["target", "threshold (real)", "threshold (code)", "rate", "interval", "pure rate"],
          [[_fmt_rate(t["target_rate_hz"]), t["threshold_float"], t["threshold_int"], _fmt_rate(t["rate_hz"]),
            f"{_fmt_rate(t['rate_interval_hz'][0])} – {_fmt_rate(t['rate_interval_hz'][1])}", _fmt_rate(t["pure_rate_hz"])]
           for t in thr])],
        [(f"Rate vs threshold ({deploy})", out_dir / "rates" / deploy / "rate_curve.png"),
         (f"ROC ({deploy})", out_dir / "rates" / deploy / "roc.png"),
         (f"Efficiency vs rate ({deploy})", out_dir / "rates" / deploy / "efficiency_vs_rate.png")],
    ))
    models = summary["models"]
    sigs = sorted({s for m in models.values() for s in m.get("auc", {})})
    sections.append(Section(
        "Models: AUC and TPR at FPR = 1e-5",
        [],
        [("", ["front-end", *[f"AUC {s}" for s in sigs], *[f"TPR@1e-5 {s}" for s in sigs]],
          [[fe, *[m["auc"].get(s) for s in sigs], *[m["tpr_at_fpr_1e-5"].get(s) for s in sigs]] for fe, m in models.items()])],
        [(f"ROC ({fe})", out_dir / "rates" / fe / "roc.png") for fe in models if fe != deploy],
    ))
    hls, rtl = summary["hls"], summary["rtl"]
    rows = []
    if hls:
        mm = hls.get("mismatches", {})
        rows.append(["hls4ml C simulation", hls.get("vectors"), ", ".join(f"{k}={v}" for k, v in mm.items())])
    if rtl.get("vectors") is not None:
        rows.append(["Verilog (Verilator)", rtl.get("vectors"), str(rtl.get("mismatches"))])
    sections.append(Section(
        "Firmware: bit-exact checks, latency and resources",
        ([f"Latency {rtl.get('latency_cycles')} cycles at {rtl.get('clock_mhz')} MHz "
          f"({rtl['latency_cycles'] * 1e3 / rtl['clock_mhz']:.1f} ns; the AXOL1TL budget is 50 ns = two bunch crossings)."]
         + ([f"Yosys synth_xilinx (UltraScale+): LUT {rtl.get('lut')}, FF {rtl.get('ff')}, DSP {rtl.get('dsp')}, "
             f"CARRY {rtl.get('carry')}."] if rtl.get("lut") is not None else
            ["Yosys was not run in this configuration (firmware.yosys: false)."])) if rtl.get("latency_cycles") else [],
        [("", ["check", "vectors", "mismatches"], rows)],
    ))
    off = summary.get("offline") or {}
    if off:
        sections.append(_offline_section(off, out_dir))
    t = summary["timings"]
    sections.append(Section("Timings", [], [("", ["stage", "seconds", "cached"],
                                             [[k, v["seconds"], v["cached"]] for k, v in t.items() if isinstance(v, dict)])]))
    return write_report(out_dir / "report.html", "l1ad: anomaly-detection trigger, end to end", sections,
                        subtitle=f"config {summary['config_hash']} · l1ad {summary['versions'].get('l1ad')}")
