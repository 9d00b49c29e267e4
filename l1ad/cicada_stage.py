"""The CICADA-style calorimeter trigger in the pipeline: teacher and student trained on the even zero-bias
images, the student imported into the IR (its single output is the score), emulated bit-exactly on the odd
zero-bias half and the signals, thresholds by rate, the RTL co-simulated, and the OR with the deployed
AXOL1TL-style trigger at the same target rates (rate of the OR, overlap, efficiencies of each and of the OR)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from l1ad.trigger.atomic import write_json_atomic
from l1ad.trigger.errors import UserInputError

from .config import CicadaStageConfig
from .stages import StageContext


def _weighted_fraction(mask: np.ndarray, w: np.ndarray) -> float:
    tot = float(np.sum(w))
    return float(np.sum(w[mask]) / tot) if tot > 0 else float("nan")


def stage_cicada(ctx: StageContext, work: Path) -> dict:
    from .pipeline import SCORE_FILE, ZERO_BIAS, _read, _sample_files, signal_names, split_zero_bias

    cfg = ctx.config
    cc: CicadaStageConfig = cfg.cicada
    if not cc.enabled:
        return {"enabled": False}
    import l1ad.firmware as firmware
    from l1ad.firmware.ir import QModel, ScoreSpec
    from l1ad.trigger.cicada import save_cicada, train_cicada
    from l1ad.trigger.rate_plots import write_plots
    from l1ad.trigger.rate_report import evaluate
    from l1ad.trigger.rates import RateStatisticsWarning

    files = _sample_files(ctx)
    train, ev = split_zero_bias(_read(files[ZERO_BIAS]))
    if train.calo is None:
        raise UserInputError(f"{files[ZERO_BIAS]}: no calorimeter-region images (CaloRegions); regenerate the data "
                             f"with this l1ad version (l1ad run --from data)")
    sigs = {s: _read(files[s]) for s in signal_names(ctx)}
    sigs = {s: b for s, b in sigs.items() if b.calo is not None}
    model = train_cicada(train.calo, cc.model, weights=train.weight)
    save_cicada(model, work / "model")
    q0 = model.to_qmodel()
    q = QModel(input=q0.input, input_quantizer=q0.input_quantizer, layers=q0.layers, score=ScoreSpec("out"),
               name="cicada_student", warnings=q0.warnings, meta={**q0.meta, "trigger": "cicada"})

    def codes(b) -> np.ndarray:
        return np.asarray(b.calo, dtype=np.int64).reshape(len(b), -1)

    samples = {ZERO_BIAS: ev, **sigs}
    scores, agree = {}, {}
    for name, b in samples.items():
        e = firmware.emulate(q, q.input.format.to_float(codes(b)))
        scores[name] = np.asarray(e.score_int, dtype=np.int64)
        fw = model.student_score(b.calo)
        emu = q.output_format.to_float(e.outputs_int[:, 0])
        agree[name] = {"events": len(b), "output_mismatches": int(np.count_nonzero(fw != emu))}
    np.savez(work / SCORE_FILE, **{f"{k}_int": v for k, v in scores.items()})
    from scipy.stats import pearsonr, spearmanr

    t_ev = model.teacher_score(ev.calo)
    s_ev = model.student_score(ev.calo)
    corr = {"pearson_log_teacher": float(pearsonr(np.log(np.maximum(t_ev, 1e-12)), s_ev)[0]),
            "spearman": float(spearmanr(t_ev, s_ev)[0]), "events": int(len(ev))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RateStatisticsWarning)
        rep = evaluate(ev, scores[ZERO_BIAS], {s: (b, scores[s]) for s, b in sigs.items()}, cfg.rates)
    d = rep.to_dict()
    write_json_atomic(work / "rates.json", d)
    write_plots(rep, work, score_lsb=2.0 ** -q.score_format.frac)
    thr = [int(t["threshold"]) for t in d["thresholds"]]
    q = q.with_thresholds(thr)
    q.save(work / "qmodel.json")
    out: dict[str, Any] = {
        "enabled": True, "frontend": cc.model.frontend, "correlation": corr, "framework_vs_emulator": agree,
        "thresholds": [{"target_hz": t["target_hz"], "rate_hz": t["rate_hz"], "code": c,
                        "value": float(c * 2.0 ** -q.score_format.frac)} for t, c in zip(d["thresholds"], thr)],
        "efficiency_at_rate": {s: v["efficiency_at_rate"] for s, v in d["signals"].items()},
        "auc": {s: v["auc"] for s, v in d["signals"].items()},
        "training": {k: v for k, v in model.metadata.items() if isinstance(v, (int, float, str))},
    }
    out["or_with_axol1tl"] = _or_table(ctx, q, scores, ev, sigs, cfg)
    out["hls"] = _hls(q, ev, sigs, cc, cfg, work)
    out["rtl"] = _rtl(q, ev, sigs, cc, cfg, work)
    return out


def _or_table(ctx: StageContext, q, scores: dict, ev, sigs: dict, cfg) -> list[dict]:
    """Per target rate: each trigger at its own threshold for that rate; the OR's rate, the overlap, and every
    signal's efficiency for AXOL1TL-style, CICADA-style and their OR (weighted fractions)."""
    from .pipeline import SCORE_FILE, ZERO_BIAS

    fe = cfg.models.deploy
    from l1ad.firmware.ir import QModel

    axo_q = QModel.load(ctx.path("rates") / fe / "qmodel.json")
    axo = np.load(ctx.path("firmware") / fe / SCORE_FILE)
    zb_rate = cfg.rates.zb_rate_hz
    rows = []
    for k, (ta, tc) in enumerate(zip(axo_q.thresholds, q.thresholds)):
        a = np.asarray(axo[f"{ZERO_BIAS}_int"]) > ta
        c = scores[ZERO_BIAS] > tc
        w = ev.weight
        row = {"target_hz": cfg.rates.targets_hz[k], "axol1tl_hz": zb_rate * _weighted_fraction(a, w),
               "cicada_hz": zb_rate * _weighted_fraction(c, w), "or_hz": zb_rate * _weighted_fraction(a | c, w),
               "overlap_hz": zb_rate * _weighted_fraction(a & c, w), "signals": {}}
        for s, b in sigs.items():
            key = f"{s}_int"
            if key not in axo:
                continue
            sa, sc_ = np.asarray(axo[key]) > ta, scores[s] > tc
            row["signals"][s] = {"axol1tl": _weighted_fraction(sa, b.weight), "cicada": _weighted_fraction(sc_, b.weight),
                                 "or": _weighted_fraction(sa | sc_, b.weight)}
        rows.append(row)
    return rows


def _images(ev, sigs: dict) -> np.ndarray:
    """Every held-out zero-bias and signal image as flat input codes (N, 252)."""
    return np.concatenate([np.asarray(b.calo, dtype=np.int64).reshape(len(b), -1) for b in [ev, *sigs.values()]])


def _hls(q, ev, sigs: dict, cc: CicadaStageConfig, cfg, work: Path) -> dict:
    """The student's HLS project (written from the IR), its C simulation checked bit for bit against the emulator
    on real images and on edge / random codes."""
    if cc.hls_verify_events == 0:
        return {"skipped": "cicada.hls_verify_events: 0"}
    from l1ad.firmware.hls import export_hls, verify_project
    from l1ad.firmware.hls.vectors import make_vectors

    n = cc.hls_verify_events
    mv = make_vectors(q, n, seed=cfg.seed)  # not the L1 layout: Gaussian codes instead of toy events, and edge codes
    sets = {"images": _images(ev, sigs)[:n], "edge": mv["edge"],
            "random": np.concatenate([mv[k] for k in ("zero_bias", "signal") if k in mv])}
    project = export_hls(q, None, work / "hls", cfg.firmware.hls)
    rep = verify_project(project, n, seed=cfg.seed, sets=sets, report_path=work / "hls_verification.json")
    if not rep["passed"]:
        raise RuntimeError(f"CICADA HLS C simulation differs from the emulator: {rep['mismatches']} "
                           f"(see {work / 'hls_verification.json'})")
    return {"vectors": rep["n_events"], "mismatches": rep["mismatches"]}


def _rtl(q, ev, sigs: dict, cc: CicadaStageConfig, cfg, work: Path) -> dict:
    """The student's Verilog: generated, co-simulated against the emulator, optionally synthesized."""
    if cc.cosim_vectors == 0:
        return {"skipped": "cicada.cosim_vectors: 0"}
    from l1ad.firmware.verilog import export_verilog
    from l1ad.sim.cosim import cosim, default_vectors

    vcfg = cfg.firmware.verilog.model_copy(update={"top": "l1ad_cicada"})
    design = export_verilog(q, work / "rtl", vcfg, report=cc.yosys)
    data = _images(ev, sigs)
    n = cc.cosim_vectors
    x = default_vectors(q, max(0, n - min(n, len(data))), seed=cfg.seed, data=data[:n])
    rep = cosim(work / "rtl", x)
    write_json_atomic(work / "cosim.json", rep)
    if not rep["ok"]:
        raise RuntimeError(f"CICADA RTL differs from the emulator: {rep['mismatches']} mismatches (see {work / 'cosim.json'})")
    out = {"vectors": rep["vectors"], "mismatches": rep["mismatches"], "latency_cycles": design.latency_cycles,
           "latency_ns": rep["latency_ns"], "clock_mhz": vcfg.clock_mhz}
    rj = work / "rtl" / "report.json"
    if rj.is_file():
        import json

        res = json.loads(rj.read_text()).get("resources", {})
        out.update({"lut": res.get("LUT"), "ff": res.get("FF"), "dsp": res.get("DSP")})
    return out
