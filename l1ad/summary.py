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
        [f"Latency {rtl.get('latency_cycles')} cycles at {rtl.get('clock_mhz')} MHz; Yosys synth_xilinx (UltraScale+): "
         f"LUT {rtl.get('lut')}, FF {rtl.get('ff')}, DSP {rtl.get('dsp')}, CARRY {rtl.get('carry')}."] if rtl.get("latency_cycles") else [],
        [("", ["check", "vectors", "mismatches"], rows)],
    ))
    off = summary.get("offline") or {}
    if off:
        sections.append(Section("Offline searches and discovery reach", off.get("paragraphs", []),
                                [tuple(t) for t in off.get("tables", [])],
                                [(c, out_dir / p) for c, p in off.get("figures", [])]))
    t = summary["timings"]
    sections.append(Section("Timings", [], [("", ["stage", "seconds", "cached"],
                                             [[k, v["seconds"], v["cached"]] for k, v in t.items() if isinstance(v, dict)])]))
    return write_report(out_dir / "report.html", "l1ad: anomaly-detection trigger, end to end", sections,
                        subtitle=f"config {summary['config_hash']} · l1ad {summary['versions'].get('l1ad')}")
