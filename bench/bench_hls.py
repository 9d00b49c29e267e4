"""Throughput of the bit-exact emulator vs the HLS C simulation (and QKeras predict), with ratios.

For the default 57-32-16-8-16-32-57 QKeras autoencoder (random weights; speed does not depend on them) on N toy
events in L1 hardware units:
  emulator            firmware.emulate (NumPy, exact integer arithmetic)
  csim_batch          the exported project's C simulation through l1ad's batch bridge (ctypes, all cores)
  csim_batch_1thread  the same on one thread
  qkeras_predict      the framework's float32 forward pass
Writes out/bench/bench_hls.json; `python bench/bench_hls.py [N]`.
"""
from __future__ import annotations

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
        prj = export_hls(q, None, Path(d) / "prj", HLSConfig(tb_vectors=10))
        t0 = time.perf_counter()
        sim = CSim(prj.path, prj.name)
        res["csim_compile_s"] = round(time.perf_counter() - t0, 2)
        codes = x.astype(np.int64)
        c_rate, c = _rate(n, lambda: sim.run(codes))
        c1_rate, _ = _rate(n, lambda: sim.run(codes, threads=1))
        res["csim_batch_mismatches"] = int((c.outputs_int != e.outputs_int).sum() + (c.score_int != e.score_int).sum())
    xs = scaler.transform(x)  # exact scaled inputs (float64)
    k_rate, _ = _rate(n, lambda: model.predict(xs.astype(np.float32), batch_size=4096, verbose=0))
    res["events_per_s"] = {"emulator": round(e_rate), "csim_batch": round(c_rate), "csim_batch_1thread": round(c1_rate),
                           "qkeras_predict": round(k_rate)}
    res["ratio_to_emulator"] = {k: round(v / e_rate, 4) for k, v in res["events_per_s"].items()}
    out = ROOT / "out" / "bench" / "bench_hls.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
