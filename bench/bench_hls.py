"""Throughput of the bit-exact emulator vs the hls4ml C simulation (and QKeras predict), with ratios.

For the default 57-32-16-8-16-32-57 QKeras autoencoder (random weights; speed does not depend on them) on N toy
events in L1 hardware units:
  emulator            firmware.emulate (NumPy, exact integer arithmetic)
  csim_batch          the exported project's C simulation through l1ad's batch bridge (ctypes, all cores)
  csim_batch_1thread  the same on one thread
  hls4ml_predict      hls4ml's own C simulation of the (unpatched) network: hls_model.compile() + predict(),
                      one Python->C call per event (also checked bit for bit against the emulator's outputs)
  qkeras_predict      the framework's float32 forward pass
Writes out/bench/bench_hls.json; `python bench/bench_hls.py [N]`.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rate(n: int, fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return n / (time.perf_counter() - t0), out


def main(n: int = 20_000) -> dict:
    from l1ad.firmware import emulate, import_qkeras
    from l1ad.firmware.hls import HLSConfig, export_hls
    from l1ad.firmware.hls.convert import apply_ir_precisions, convert
    from l1ad.firmware.hls.csim import CSim
    from l1ad.trigger.l1units import hw_inputs
    from l1ad.trigger.models import keras_nets as kn
    from l1ad.trigger.models.arch import ArchitectureConfig
    from l1ad.trigger.scaler import InputScaler
    from l1ad.trigger.toy import toy_events

    x = hw_inputs(toy_events(n, seed=1).objects)
    scaler = InputScaler.fit(x)
    model = kn.deployed(kn.build(ArchitectureConfig.default("ae"), 1))
    q = import_qkeras(model, "ap_int<18>", scaler=scaler, score="mse", gate="l1")
    e_rate, e = _rate(n, lambda: emulate(q, x))
    res: dict = {"n_events": n, "model": "ae 57-32-16-8-16-32-57 (QKeras)", "events_per_s": {}}
    with tempfile.TemporaryDirectory() as d:
        with contextlib.redirect_stdout(io.StringIO()):
            prj = export_hls(q, model, Path(d) / "prj", HLSConfig(tb_vectors=10))
        t0 = time.perf_counter()
        sim = CSim(prj.path, prj.name)
        res["csim_compile_s"] = round(time.perf_counter() - t0, 2)
        codes = x.astype(np.int64)
        c_rate, c = _rate(n, lambda: sim.run(codes))
        c1_rate, _ = _rate(n, lambda: sim.run(codes, threads=1))
        res["csim_batch_mismatches"] = int((c.outputs_int != e.outputs_int).sum() + (c.score_int != e.score_int).sum())
        # hls4ml's own path: the network alone, compiled by hls_model.compile(), one predict call per event
        with contextlib.redirect_stdout(io.StringIO()):
            hm, _ = convert(model, Path(d) / "plain", HLSConfig(project_name="plain"))
            apply_ir_precisions(hm, q)
            t0 = time.perf_counter()
            hm.compile()
        res["hls4ml_compile_s"] = round(time.perf_counter() - t0, 2)
        xs = scaler.transform(x)  # exact scaled inputs (float64), the network's input type holds them exactly
        m = min(n, 5000)
        h_rate, h = _rate(m, lambda: np.asarray(hm.predict(np.ascontiguousarray(xs[:m], dtype=np.float64))))
        codes_h = np.ldexp(h.reshape(m, -1), q.output_format.frac)
        res["hls4ml_predict_mismatches"] = int((codes_h != e.outputs_int[:m]).sum())
    k_rate, _ = _rate(n, lambda: model.predict(xs.astype(np.float32), batch_size=4096, verbose=0))
    res["events_per_s"] = {"emulator": round(e_rate), "csim_batch": round(c_rate), "csim_batch_1thread": round(c1_rate),
                           "hls4ml_predict": round(h_rate), "qkeras_predict": round(k_rate)}
    res["ratio_to_emulator"] = {k: round(v / e_rate, 4) for k, v in res["events_per_s"].items()}
    out = ROOT / "out" / "bench" / "bench_hls.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
