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

from trigger.atomic import write_json_atomic

from .config import L1adConfig
from .stages import Stage, StageContext

ZERO_BIAS = "zero_bias"
SCORE_FILE = "scores.npz"


# ---------------------------------------------------------------------------------------------- helpers
def _read(path: Path):
    from trigger.io import read_events

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
    from trigger.generation import ADC_SIGNALS

    return [s for s in ADC_SIGNALS if s in _sample_files(ctx)]


# ---------------------------------------------------------------------------------------------- stages
def stage_data(ctx: StageContext, work: Path) -> dict:
    """Generate (or take from the generator's cache) every sample."""
    from trigger.generation import generate

    cfg: L1adConfig = ctx.config
    manifest = generate(cfg.data, work, scheduler=cfg.dask.scheduler, workers=cfg.dask.n_workers, log=ctx.log)
    out = {}
    for name, f in manifest["files"].items():
        from trigger.io import describe

        d = describe(work / f)
        out[name] = {"events": d["n_events"], "weight_sum": d["weight_sum"]}
    return {"samples": out, "config_hash": manifest.get("key")}


def stage_train(ctx: StageContext, work: Path) -> dict:
    """Train every configured front-end (and the float reference) on the even zero-bias events."""
    from trigger.train import train_model

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
    import firmware
    from firmware.hls.frontends import qmodel_from_trained
    from trigger.modeldir import load_model

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
    import firmware
    from trigger.rate_plots import write_plots
    from trigger.rate_report import evaluate
    from trigger.rates import RateStatisticsWarning

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
        write_plots(rep, work / fe)
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
    """Export the deployed front-end (thresholds included) as an hls4ml project and check its C simulation
    against the emulator bit for bit on zero-bias, signal and edge vectors."""
    import contextlib
    import io

    import firmware
    from firmware.hls import export_hls, verify_project
    from firmware.hls.frontends import framework_agreement, qmodel_from_trained
    from firmware.hls.vectors import make_vectors
    from trigger.modeldir import load_model

    cfg: L1adConfig = ctx.config
    fe = cfg.models.deploy
    tm = load_model(ctx.path("train") / fe)
    q = firmware.QModel.load(ctx.path("rates") / fe / "qmodel.json")
    _, source = qmodel_from_trained(tm, work / "source", input_format=cfg.firmware.input_format)
    with contextlib.redirect_stdout(io.StringIO()):  # hls4ml prints its topology walk
        project = export_hls(q, source, work / "project", cfg.firmware.hls)
    n = cfg.firmware.hls_verify_events
    sets = make_vectors(q, n, seed=cfg.seed)
    rep = verify_project(project, n, seed=cfg.seed, sets=sets, report_path=work / "verification.json")
    rep["framework_vs_emulator"] = {k: framework_agreement(tm, q, v) for k, v in sets.items()}
    write_json_atomic(work / "verification.json", rep)
    if not rep["passed"]:
        raise RuntimeError(f"HLS C simulation differs from the emulator: {rep['mismatches']} (see {work / 'verification.json'})")
    return {"frontend": fe, "vectors": rep["n_events"], "mismatches": rep["mismatches"], "timing": rep["timing"],
            "framework_vs_emulator": {k: v["output_mismatches"] for k, v in rep["framework_vs_emulator"].items()}}


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
    ]


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

    console = Console(stderr=True)
    log = log or (lambda s: console.log(s))
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    records = run_stages(build_stages(), cfg, out_dir, from_stage=from_stage, only=only, log=log)
    summary = build_summary(cfg, records, out_dir, versions())
    summary["timings"]["total_wall_s"] = time.perf_counter() - t0
    write_json_atomic(out_dir / "summary.json", summary)
    report = build_report(cfg, summary, out_dir)
    return {"summary": out_dir / "summary.json", "report": report}
