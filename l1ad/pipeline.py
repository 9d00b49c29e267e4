"""The end-to-end pipeline: data -> training -> firmware IR + bit-exact emulation -> thresholds by rate -> HLS
C-sim check -> Verilog co-simulation + Yosys -> triggered samples -> offline searches -> discovery reach -> report.

Each stage is a function `(ctx, workdir) -> summary` registered in `STAGES`; `l1ad.stages.run_stages` caches
them by content hash of their configuration slice and their inputs' keys. Zero-bias events are split by
event index: even events train the models, odd events set thresholds and measure rates (never the same events).
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from l1ad.trigger.atomic import write_json_atomic
from l1ad.trigger.errors import UserInputError

from .config import L1adConfig
from .stages import Stage, StageContext

ZERO_BIAS = "zero_bias"
SCORE_FILE = "scores.npz"


# ---------------------------------------------------------------------------------------------- helpers
def _read(path: Path):
    from l1ad.trigger.io import read_events

    return read_events(path)


def _manifest(ctx: StageContext) -> dict:
    return json.loads((ctx.path("data") / "manifest.json").read_text())


def _sample_files(ctx: StageContext) -> dict[str, Path]:
    files = _manifest(ctx)["files"]
    return {name: ctx.path("data") / f for name, f in files.items()}


def split_zero_bias(batch):
    """(train, evaluation) halves of the zero-bias sample: even and odd event indices."""
    idx = np.arange(len(batch))
    return batch.select(idx % 2 == 0), batch.select(idx % 2 == 1)


def signal_names(ctx: StageContext) -> list[str]:
    """The ADC2021-style trigger signals present in the data stage."""
    from l1ad.trigger.generation import ADC_SIGNALS

    return [s for s in ADC_SIGNALS if s in _sample_files(ctx)]


# ---------------------------------------------------------------------------------------------- stages
def stage_data(ctx: StageContext, work: Path) -> dict:
    """Generate (or take from the generator's cache) every sample."""
    from l1ad.trigger.generation import generate

    cfg: L1adConfig = ctx.config
    manifest = generate(cfg.data, work, scheduler=cfg.dask.scheduler, workers=cfg.dask.n_workers, log=ctx.log)
    out = {}
    for name, f in manifest["files"].items():
        from l1ad.trigger.io import describe

        d = describe(work / f)
        out[name] = {"events": d["n_events"], "weight_sum": d["weight_sum"]}
    return {"samples": out, "config_hash": manifest.get("key")}


def stage_train(ctx: StageContext, work: Path) -> dict:
    """Train every configured front-end (and the float reference) on the even zero-bias events."""
    from l1ad.trigger.train import train_model

    cfg: L1adConfig = ctx.config
    train, _ = split_zero_bias(_read(_sample_files(ctx)[ZERO_BIAS]))
    frontends = list(cfg.models.frontends) + (["float"] if cfg.models.float_reference else [])
    out = {}
    for fe in frontends:
        t0 = time.perf_counter()
        model = train_model(fe, cfg.models.arch, train, cfg.models.training, out_dir=work / fe)
        out[fe] = {"seconds": time.perf_counter() - t0, "train_events": len(train),
                   **{k: v for k, v in model.metadata.get("training", {}).items() if isinstance(v, (int, float, str))}}
    return {"frontends": out}


def stage_firmware(ctx: StageContext, work: Path) -> dict:
    """Import each quantized front-end into the IR, emulate it bit-exactly on every sample, and compare
    the emulator's score with the framework's own (float-simulated) score."""
    import l1ad.firmware as firmware
    from l1ad.firmware.hls.frontends import qmodel_from_trained
    from l1ad.trigger.modeldir import load_model

    cfg: L1adConfig = ctx.config
    files = _sample_files(ctx)
    _, zb_eval = split_zero_bias(_read(files[ZERO_BIAS]))
    samples = {ZERO_BIAS: zb_eval, **{s: _read(files[s]) for s in signal_names(ctx)}}
    out: dict[str, Any] = {}
    for fe in cfg.models.frontends:
        model = load_model(ctx.path("train") / fe)
        (work / fe).mkdir()
        q, _ = qmodel_from_trained(model, work / fe, input_format=cfg.firmware.input_format)
        q.save(work / fe / "qmodel.json")
        scores: dict[str, np.ndarray] = {}
        agree = {}
        for name, b in samples.items():
            x = model.hw_inputs(b)
            r = firmware.emulate(q, x)
            scores[f"{name}_int"] = r.score_int
            scores[f"{name}_real"] = r.score
            fw = model.score(x)
            agree[name] = {"events": len(b), "score_mismatches": int((fw != r.score).sum()),
                           "max_abs_diff": float(np.max(np.abs(fw - r.score))) if len(b) else 0.0}
        np.savez(work / fe / SCORE_FILE, **scores)
        out[fe] = {"score_format": str(q.score_format) if q.score_format else None,
                   "framework_vs_emulator": agree, "warnings": list(q.warnings)}
    if cfg.models.float_reference:
        model = load_model(ctx.path("train") / "float")
        (work / "float").mkdir()
        np.savez(work / "float" / SCORE_FILE, **{f"{n}_real": model.score(b) for n, b in samples.items()})
    return out


def stage_rates(ctx: StageContext, work: Path) -> dict:
    """Thresholds for each target rate on the emulator's integer scores of the held-out zero-bias half,
    the menu's pure rates, and each signal's efficiency, ROC and TPR at FPR 1e-5 (for every front-end)."""
    import l1ad.firmware as firmware
    from l1ad.trigger.rate_plots import write_plots
    from l1ad.trigger.rate_report import evaluate
    from l1ad.trigger.rates import RateStatisticsWarning

    cfg: L1adConfig = ctx.config
    files = _sample_files(ctx)
    _, zb_eval = split_zero_bias(_read(files[ZERO_BIAS]))
    sigs = {s: _read(files[s]) for s in signal_names(ctx)}
    out: dict[str, Any] = {}
    kinds = [(fe, "int") for fe in cfg.models.frontends] + ([("float", "real")] if cfg.models.float_reference else [])
    for fe, kind in kinds:
        sc = np.load(ctx.path("firmware") / fe / SCORE_FILE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RateStatisticsWarning)
            rep = evaluate(zb_eval, sc[f"{ZERO_BIAS}_{kind}"], {s: (b, sc[f"{s}_{kind}"]) for s, b in sigs.items()}, cfg.rates)
        d = rep.to_dict()
        (work / fe).mkdir()
        write_json_atomic(work / fe / "rates.json", d)
        lsb = 2.0 ** -firmware.QModel.load(ctx.path("firmware") / fe / "qmodel.json").score_format.frac if kind == "int" else None
        write_plots(rep, work / fe, score_lsb=lsb)  # thresholds in score units, codes beside them
        entry = {
            "auc": {s: v["auc"] for s, v in d["signals"].items()},
            "tpr_at_1e-5": {s: v["tpr_at_fpr"][0]["tpr"] for s, v in d["signals"].items()},
            "thresholds": d["thresholds"],
            "pure_rates": d["pure_rates"],
            "efficiency_at_rate": {s: v["efficiency_at_rate"] for s, v in d["signals"].items()},
            "warnings": d["warnings"],
        }
        if kind == "int":
            q = firmware.QModel.load(ctx.path("firmware") / fe / "qmodel.json")
            codes = [int(t["threshold"]) for t in d["thresholds"]]
            q = q.with_thresholds(codes)
            q.save(work / fe / "qmodel.json")
            entry["threshold_codes"] = codes
            entry["threshold_real"] = q.thresholds_real()
        out[fe] = entry
    return out


def stage_hls(ctx: StageContext, work: Path) -> dict:
    """Export the deployed front-end (thresholds included) as an HLS project and check its C simulation
    against the emulator bit for bit on zero-bias, signal and edge vectors (with a progress bar of its steps)."""
    from .runlog import steps

    with steps("hls", 3) as step:
        return _stage_hls(ctx, work, step)


def _stage_hls(ctx: StageContext, work: Path, step) -> dict:
    import l1ad.firmware as firmware
    from l1ad.firmware.hls import export_hls, verify_project
    from l1ad.firmware.hls.frontends import framework_agreement
    from l1ad.firmware.hls.vectors import make_vectors
    from l1ad.trigger.modeldir import load_model

    cfg: L1adConfig = ctx.config
    fe = cfg.models.deploy
    tm = load_model(ctx.path("train") / fe)
    q = firmware.QModel.load(ctx.path("rates") / fe / "qmodel.json")
    step("write the HLS project from the IR")
    project = export_hls(q, None, work / "project", cfg.firmware.hls)
    n = cfg.firmware.hls_verify_events
    step(f"compile the C simulation and run {n:,} vectors per set")
    sets = make_vectors(q, n, seed=cfg.seed)
    rep = verify_project(project, n, seed=cfg.seed, sets=sets, report_path=work / "verification.json")
    step("framework vs emulator on the same vectors")
    rep["framework_vs_emulator"] = {k: framework_agreement(tm, q, v) for k, v in sets.items()}
    write_json_atomic(work / "verification.json", rep)
    if not rep["passed"]:
        raise RuntimeError(f"HLS C simulation differs from the emulator: {rep['mismatches']} (see {work / 'verification.json'})")
    return {"frontend": fe, "vectors": rep["n_events"], "mismatches": rep["mismatches"], "timing": rep["timing"],
            "framework_vs_emulator": {k: v["output_mismatches"] for k, v in rep["framework_vs_emulator"].items()}}


def stage_rtl(ctx: StageContext, work: Path) -> dict:
    """Generate the Verilog of the deployed QModel, lint it (verilator -Wall), co-simulate zero-bias, signal,
    edge and random vectors against the emulator bit for bit, and synthesize it with Yosys for the resources
    (with a progress bar of its steps)."""
    from .runlog import steps

    with steps("rtl", 3) as step:
        return _stage_rtl(ctx, work, step)


def _stage_rtl(ctx: StageContext, work: Path, step) -> dict:
    import json as _json

    import l1ad.firmware as firmware
    from l1ad.firmware.fixed import quantize_float
    from l1ad.firmware.verilog import export_verilog
    from l1ad.sim.cosim import cosim, default_vectors
    from l1ad.sim.verilator import lint
    from l1ad.trigger.l1units import hw_inputs

    cfg: L1adConfig = ctx.config
    fe = cfg.models.deploy
    q = firmware.QModel.load(ctx.path("rates") / fe / "qmodel.json")
    rtl_dir = work / "rtl"
    step("generate the Verilog" + (" and synthesize it with Yosys" if cfg.firmware.yosys else ""))
    design = export_verilog(q, rtl_dir, cfg.firmware.verilog, report=cfg.firmware.yosys)
    sources = sorted(str(p) for p in rtl_dir.glob("*.v"))
    step("verilator --lint-only -Wall")
    warnings_ = lint(sources, cfg.firmware.verilog.top)
    if warnings_:
        raise RuntimeError(f"verilator --lint-only -Wall is not clean: {warnings_[:5]}")
    files = _sample_files(ctx)
    n = cfg.firmware.cosim_vectors
    _, zb_eval = split_zero_bias(_read(files[ZERO_BIAS]))
    data = [hw_inputs(zb_eval.objects)] + [hw_inputs(_read(files[s]).objects) for s in signal_names(ctx)]
    codes = np.concatenate([quantize_float(x, q.input.format)[0] for x in data]).astype(np.int64)[:n]
    x = default_vectors(q, max(0, n - len(codes)), seed=cfg.seed, data=codes)
    step(f"co-simulate {len(x):,} vectors (Verilator build + run) vs the emulator")
    rep = cosim(rtl_dir, x)
    write_json_atomic(work / "cosim.json", rep)
    if not rep["ok"]:
        raise RuntimeError(f"RTL co-simulation differs from the emulator: {rep['mismatches']} mismatches "
                           f"(see {work / 'cosim.json'})")
    out = {"frontend": fe, "vectors": rep["vectors"], "mismatches": rep["mismatches"],
           "valid_errors": rep["valid_errors"], "latency_cycles": design.latency_cycles,
           "clock_mhz": cfg.firmware.verilog.clock_mhz, "latency_ns": rep["latency_ns"],
           "vectors_per_s": rep["vectors_per_s"], "lint_warnings": 0}
    report_json = rtl_dir / "report.json"
    if report_json.is_file():
        res = _json.loads(report_json.read_text()).get("resources", {})
        out.update({"lut": res.get("LUT"), "ff": res.get("FF"), "dsp": res.get("DSP"), "carry": res.get("CARRY")})
    return out


def stage_offline(ctx: StageContext, work: Path) -> dict:
    """Per target rate: the triggered samples (emulator trigger bits), the m_jj bump hunt and the NPLM
    data-quality test of the triggered zero-bias stream, and the discovery reach per signal."""
    import l1ad.firmware as firmware
    from l1ad.trigger.l1units import hw_inputs

    from .analysis import as_dict, dijet_bumphunt, event_features, nplm_quality, reach_table, triggered_bumphunt
    from .scoring import score_file

    cfg: L1adConfig = ctx.config
    ocfg = cfg.offline
    fe = cfg.models.deploy
    q = firmware.QModel.load(ctx.path("rates") / fe / "qmodel.json")
    files = _sample_files(ctx)
    _, zb = split_zero_bias(_read(files[ZERO_BIAS]))
    zb_rate = cfg.rates.zb_rate_hz
    # the firmware's trigger bits for the whole zero-bias file, chunk by chunk on Dask (a large file is never
    # emulated in one piece); the evaluation half is the odd events (split_zero_bias)
    scored = score_file(q, files[ZERO_BIAS], chunk_size=cfg.dask.chunk_size, scheduler=cfg.dask.scheduler,
                        n_workers=cfg.dask.n_workers, progress=False)
    bits_zb = scored.trigger[1::2]
    trig_sigs = {s: _read(files[s]) for s in signal_names(ctx)}
    res_name = "dijet_resonance"
    if res_name in files:
        trig_sigs[res_name] = _read(files[res_name])
    bits_sig = {s: firmware.emulate(q, hw_inputs(b.objects)).trigger for s, b in trig_sigs.items()}
    qcd = _read(files["qcd_dijet"]) if "qcd_dijet" in files else None
    bits_qcd = firmware.emulate(q, hw_inputs(qcd.objects)).trigger if qcd is not None else None
    if ocfg.trigger != "axol1tl":  # the CICADA-style trigger's bits, alone or ORed with the AXOL1TL-style ones
        cq = firmware.QModel.load(ctx.path("cicada") / "qmodel.json")
        bits_zb = _with_cicada(cq, ocfg.trigger, bits_zb, zb)
        bits_sig = {s: _with_cicada(cq, ocfg.trigger, v, trig_sigs[s]) for s, v in bits_sig.items()}
        bits_qcd = _with_cicada(cq, ocfg.trigger, bits_qcd, qcd) if qcd is not None else None
    lo, hi = ocfg.resonance_window_gev
    in_window = (zb.offline.get("mJJ", np.zeros(len(zb))) >= lo) & (zb.offline.get("mJJ", np.zeros(len(zb))) < hi)
    per_rate, rates_rows = [], []
    sig_eff: dict[str, dict] = {s: {"eff": [], "window_eff": [] if s == res_name else None} for s in trig_sigs}
    wsum = zb.weight.sum()
    from tqdm.auto import tqdm

    for k, target in enumerate(tqdm(cfg.rates.targets_hz, desc="offline: analyses per target rate", unit="rate",
                                    leave=False)):
        fired = bits_zb[:, k]
        kept_hz = zb_rate * zb.weight[fired].sum() / wsum
        window_hz = zb_rate * zb.weight[fired & in_window].sum() / wsum
        rates_rows.append({"target_hz": target, "kept_hz": kept_hz, "window_hz": window_hz})
        tag = f"{target / 1e3:g}kHz"
        trig = zb.select(fired)
        entry = {"target_hz": target, "kept_hz": kept_hz, "triggered_events": int(fired.sum()),
                 "bumphunt": triggered_bumphunt(trig.offline.get("mjj", np.zeros(len(trig))), trig.weight, kept_hz, ocfg,
                                                work / f"bumphunt_{tag}.png"),
                 "nplm": nplm_quality(event_features(trig), trig.weight, ocfg, cfg.dask.scheduler, work / f"nplm_{tag}.png")}
        if qcd is not None and res_name in trig_sigs:
            fq, fs = bits_qcd[:, k], bits_sig[res_name][:, k]
            sig_b = trig_sigs[res_name]
            entry["dijet_bumphunt"] = dijet_bumphunt(
                qcd.offline.get("mJJ", np.zeros(len(qcd)))[fq], qcd.weight[fq],
                sig_b.offline.get("mJJ", np.zeros(len(sig_b)))[fs], sig_b.weight[fs], ocfg, work / f"dijet_bumphunt_{tag}.png")
        for s, b in trig_sigs.items():
            f = bits_sig[s][:, k]
            eff = float(b.weight[f].sum() / b.weight.sum()) if b.weight.sum() > 0 else 0.0
            sig_eff[s]["eff"].append(eff)
            if s == res_name:
                m = b.offline.get("mJJ", np.zeros(len(b)))
                w_in = f & (m >= lo) & (m < hi)
                sig_eff[s]["window_eff"].append(float(b.weight[w_in].sum() / b.weight.sum()))
        entry["signal_efficiency"] = {s: v["eff"][-1] for s, v in sig_eff.items()}
        per_rate.append(entry)
    reach = reach_table(rates_rows, sig_eff, ocfg)
    write_json_atomic(work / "offline.json", as_dict({"per_rate": per_rate, "reach": reach}))
    _plot_reach(reach, ocfg.z_levels, work / "reach_vs_rate.png")
    return as_dict({"per_rate": per_rate, "reach": reach, "luminosity_fb": ocfg.luminosity_fb, "trigger": ocfg.trigger,
                    "zero_bias_scoring": {"events": len(scored), "chunks": scored.chunks, "seconds": scored.seconds,
                                          "chunk_size": cfg.dask.chunk_size}})


def _with_cicada(cq, how: str, bits: np.ndarray, batch) -> np.ndarray:
    """The trigger bits (N, n_targets) of the CICADA-style student `cq` on `batch`'s calorimeter images ("cicada"),
    or ORed with `bits` ("or"); each trigger at its own threshold for the same target rate."""
    import l1ad.firmware as firmware

    if batch.calo is None:
        raise UserInputError("offline.trigger uses the CICADA-style trigger, but the event files have no "
                             "calorimeter-region images (CaloRegions); regenerate the data (l1ad run --from data)")
    codes = np.asarray(batch.calo, dtype=np.int64).reshape(len(batch), -1)
    cb = firmware.emulate(cq, cq.input.format.to_float(codes)).trigger
    if cb.shape != bits.shape:
        raise RuntimeError(f"CICADA trigger bits {cb.shape} and AXOL1TL bits {bits.shape} differ in shape")
    return cb if how == "cicada" else (cb | bits)


def _plot_reach(rows: list[dict], z_levels, path: Path) -> None:
    """Cross-section for 5 sigma (solid) and 3 sigma (dashed) vs trigger rate, one line per signal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    from l1ad.trigger.atomic import atomic_path

    plt.style.use(hep.style.CMS)
    fig, ax = plt.subplots()
    for i, sig in enumerate(sorted({r["signal"] for r in rows})):
        rr = [r for r in rows if r["signal"] == sig]
        for z, ls in zip(sorted(z_levels, reverse=True), ("-", "--")):
            pts = [(r["target_hz"] / 1e3, r[f"xsec_pb_{z:g}sigma"]) for r in rr if r[f"xsec_pb_{z:g}sigma"]]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, ls, marker="o", color=f"C{i}", label=f"{sig} ({z:g}$\\sigma$)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Anomaly-trigger rate [kHz]")
    ax.set_ylabel(r"$\sigma$ for median significance [pb]")
    ax.legend(fontsize="x-small", ncol=2)
    from l1ad.trigger.rate_plots import experiment_label

    experiment_label(ax)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)


def build_stages() -> list[Stage]:
    """The pipeline's stages in order, each with the configuration slice that keys its cache."""
    return [
        Stage("data", stage_data, lambda c: c.data),
        Stage("train", stage_train, lambda c: c.models, needs=("data",)),
        Stage("firmware", stage_firmware, lambda c: {"fe": c.models.frontends, "in": c.firmware.input_format},
              needs=("train",)),
        Stage("rates", stage_rates, lambda c: c.rates, needs=("firmware",)),
        Stage("hls", stage_hls, lambda c: {"deploy": c.models.deploy, "hls": c.firmware.hls,
                                           "n": c.firmware.hls_verify_events, "seed": c.seed}, needs=("rates",)),
        Stage("rtl", stage_rtl, lambda c: {"deploy": c.models.deploy, "verilog": c.firmware.verilog,
                                           "n": c.firmware.cosim_vectors, "yosys": c.firmware.yosys, "seed": c.seed},
              needs=("rates",)),
        Stage("cicada", _stage_cicada, lambda c: {"cicada": c.cicada, "rates": c.rates, "deploy": c.models.deploy,
                                                  "verilog": c.firmware.verilog, "hls": c.firmware.hls, "seed": c.seed},
              needs=("rates",)),
        # the CICADA-style trigger's bits select events when offline.trigger is "cicada" or "or"
        Stage("offline", stage_offline, lambda c: {"offline": c.offline, "deploy": c.models.deploy,
                                                   "rates": c.rates.target_rates_khz},
              needs=("rates", "cicada")),
    ]


def _stage_cicada(ctx: StageContext, work: Path) -> dict:
    """The CICADA-style calorimeter trigger (l1ad.cicada_stage), and its OR with the deployed trigger."""
    from .cicada_stage import stage_cicada

    return stage_cicada(ctx, work)


# ---------------------------------------------------------------------------------------------- run + summary
def versions() -> dict[str, str]:
    """Versions of l1ad and the stack it ran on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("l1ad", "numpy", "tensorflow", "qkeras", "torch", "brevitas", "qonnx", "hls4ml", "pythia8mc", "fastjet",
                "cocotb", "scikit-learn", "zuko", "dask"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def run_pipeline(cfg: L1adConfig, out_dir: Path, *, from_stage: str | None = None, only: set[str] | None = None,
                 log=None) -> dict:
    """Run every stage into `out_dir`, then write `summary.json` and `report.html` there."""
    from rich.console import Console

    from .stages import run_stages
    from .summary import build_report, build_summary

    from .runlog import tee, third_party_to_file

    console = Console(stderr=True, log_path=False)  # time-stamped lines, no source location
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    with third_party_to_file(out_dir / "l1ad.log") as file_log:  # library warnings go to the file only
        log = log or tee(console.log, file_log)
        records = run_stages(build_stages(), cfg, out_dir, from_stage=from_stage, only=only, log=log)
    summary = build_summary(cfg, records, out_dir, versions())
    summary["timings"]["total_wall_s"] = time.perf_counter() - t0
    write_json_atomic(out_dir / "summary.json", summary)
    report = build_report(cfg, summary, out_dir)
    return {"summary": out_dir / "summary.json", "report": report}
