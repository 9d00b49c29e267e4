#!/usr/bin/env python
"""Emulator speed and agreement, measured in one run on the same model and the same events.

Model: the 57-32-16-8-16-32-57 QKeras autoencoder (input quantized_bits(12,3), weights (8,0), biases (8,3),
quantized_relu(8,3), output quantized_bits(12,3); alpha=1), imported with the integer input scaler of the L1
hardware units. Events: N synthetic L1 events in hardware units (default 1,000,000).

Runners (each returns the network output as float64 for the same events):
  * "emulator"        firmware.emulate (the reference for ratios and agreement)
  * "qkeras.predict"  model.predict(scaled inputs, batch_size=16384) in float32
  * peers             any module ``bench/peers_*.py`` that defines ``RUNNERS``: a list of dicts
                      ``{"name": str, "setup": callable(ctx) -> state, "run": callable(state, x_hw) -> outputs,
                      "max_events": int | None}``; ``ctx`` holds ``model`` (QKeras), ``qmodel``, ``scaler``,
                      ``x_hw`` (all events) and ``scaled``. A peer slower than the others runs on its
                      ``max_events`` first events; its rate and agreement are measured on those.
For every runner: wall time, events/s, ratio to the emulator (emulator time / runner time), and the number of
output values that differ from the emulator (bit for bit). Results are printed and written to
out/bench/emulator.json.

    python bench/bench_emulator.py [--events N] [--repeat R] [--threads T]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SIZES = (57, 32, 16, 8, 16, 32, 57)


class Scaler:
    """L1 hardware units -> network input: pT >> 6, eta and phi >> 7 (offsets 0)."""

    offset = np.zeros(57, dtype=np.int64)
    shift = np.tile([6, 7, 7], 19).astype(np.int64)


def make_events(n: int, seed: int = 0) -> np.ndarray:
    """Synthetic L1 events in hardware units (N, 57): exponential pT codes, uniform eta/phi, empty slots zero."""
    rng = np.random.default_rng(seed)
    pt = np.minimum(rng.exponential(40.0, (n, 19)), 4000).astype(np.int64)
    eta = rng.integers(-460, 461, (n, 19))
    phi = rng.integers(-288, 288, (n, 19))
    present = rng.random((n, 19)) < np.r_[1.0, [0.3] * 4, [0.1] * 4, np.linspace(0.9, 0.1, 10)]
    x = np.stack([pt, eta, phi], axis=2) * present[:, :, None]
    x[:, :, 1:] *= (x[:, :, :1] > 0)
    return x.reshape(n, 57).astype(np.float32)


def build_model(seed: int = 0, train_events: int = 0):
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((SIZES[0],), name="input")
    h = QActivation(quantized_bits(12, 3, alpha=1), name="input_quant")(inp)
    for k, s in enumerate(SIZES[1:]):
        last = k == len(SIZES) - 2
        h = QDense(s, name=f"d{k}", kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1),
                   bias_initializer=tf.keras.initializers.RandomUniform(-0.5, 0.5, seed=seed))(h)
        if not last:
            h = QActivation(quantized_relu(8, 3), name=f"d{k}_relu")(h)
    h = QActivation(quantized_bits(12, 3, alpha=1), name="output_quant")(h)
    return tf.keras.Model(inp, h, name="bench_ae")


def load_peers() -> list[dict]:
    peers = []
    for p in sorted((ROOT / "bench").glob("peers_*.py")):
        spec = importlib.util.spec_from_file_location(p.stem, p)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception as e:  # a broken peer is reported, not fatal
            print(f"peer module {p.name} failed to load: {type(e).__name__}: {e}")
            continue
        peers.extend(getattr(mod, "RUNNERS", []))
    return peers


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return r.ru_utime + r.ru_stime


def timed(fn, repeat: int):
    """Best wall time of `repeat` runs, the CPU time (user + system, all threads) of that run, and the output."""
    best, cpu, out = None, None, None
    for _ in range(repeat):
        c0, t0 = _cpu(), time.perf_counter()
        out = fn()
        dt, dc = time.perf_counter() - t0, _cpu() - c0
        if best is None or dt < best:
            best, cpu = dt, dc
    return best, cpu, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1, help="best of R runs per runner")
    ap.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0: TF default)")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "emulator.json")
    args = ap.parse_args(argv)

    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    import l1ad.firmware as fw

    model = build_model()
    qmodel = fw.import_qkeras(model, "ap_int<18>", scaler=Scaler, score="mse", thresholds=(1000, 10000))
    x_hw = make_events(args.events)
    scaled = ((x_hw.astype(np.float64) - Scaler.offset) * 2.0 ** -Scaler.shift).astype(np.float32)
    n = len(x_hw)
    print(f"bench_emulator: {n} events, model {'-'.join(map(str, SIZES))}, "
          f"{platform.machine()} {os.cpu_count()} cpu(s), numpy {np.__version__}, tensorflow {tf.__version__}")
    if qmodel.warnings:
        print("import warnings:", *qmodel.warnings, sep="\n  ")

    # warm-up (graph tracing, plan compilation) outside the timed region
    fw.emulate(qmodel, x_hw[:1000])
    model.predict(scaled[:1000], batch_size=16384, verbose=0)

    results = []
    t_emu, c_emu, res = timed(lambda: fw.emulate(qmodel, x_hw), args.repeat)
    ref = res.outputs
    results.append({"name": "emulator", "events": n, "seconds": t_emu, "cpu_seconds": c_emu, "backends": res.backends})
    t_qk, c_qk, y = timed(lambda: model.predict(scaled, batch_size=16384, verbose=0), args.repeat)
    results.append({"name": "qkeras.predict", "events": n, "seconds": t_qk, "cpu_seconds": c_qk,
                    "mismatches": int(np.count_nonzero(np.asarray(y, np.float64) != ref)), "values": int(ref.size)})
    ctx = {"model": model, "qmodel": qmodel, "scaler": Scaler, "x_hw": x_hw, "scaled": scaled}
    for peer in load_peers():
        m = min(n, peer.get("max_events") or n)
        try:
            state = peer["setup"](ctx)
            t_emu_m, c_emu_m, r_m = timed(lambda: fw.emulate(qmodel, x_hw[:m]), 1)
            t_p, c_p, out = timed(lambda: peer["run"](state, x_hw[:m]), 1)
        except Exception as e:
            print(f"peer {peer.get('name')} failed: {type(e).__name__}: {e}")
            results.append({"name": peer.get("name"), "error": f"{type(e).__name__}: {e}"})
            continue
        results.append({"name": peer["name"], "events": m, "seconds": t_p, "cpu_seconds": c_p,
                        "emulator_seconds_same_events": t_emu_m, "emulator_cpu_seconds_same_events": c_emu_m,
                        "mismatches": int(np.count_nonzero(np.asarray(out, np.float64) != r_m.outputs)),
                        "values": int(r_m.outputs.size)})

    print(f"\n{'runner':<22}{'events':>10}{'wall s':>9}{'cpu s':>9}{'events/s':>12}{'speed-up wall':>15}{'speed-up cpu':>14}{'mismatches':>16}")
    for r in results:
        if "error" in r:
            print(f"{r['name']:<22}  error: {r['error']}")
            continue
        rate = r["events"] / r["seconds"]
        emu_t = r.get("emulator_seconds_same_events", t_emu * r["events"] / n)
        emu_c = r.get("emulator_cpu_seconds_same_events", c_emu * r["events"] / n)
        r["events_per_s"] = rate
        r["emulator_speedup"] = r["seconds"] / emu_t
        r["emulator_speedup_cpu"] = r["cpu_seconds"] / emu_c if emu_c > 0 else None
        mm = "" if "mismatches" not in r else f"{r['mismatches']}/{r['values']}"
        sc = "n/a" if r["emulator_speedup_cpu"] is None else f"{r['emulator_speedup_cpu']:.2f}x"
        print(f"{r['name']:<22}{r['events']:>10}{r['seconds']:>9.2f}{r['cpu_seconds']:>9.2f}{rate:>12,.0f}"
              f"{r['emulator_speedup']:>14.2f}x{sc:>14}{mm:>16}")
    print("(speed-up = runner time / emulator time on the same events, wall clock and CPU time of all threads;\n"
          " > 1 means the emulator is faster; mismatches = output values differing from the emulator bit for bit)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from l1ad.trigger.atomic import write_json_atomic

    write_json_atomic(args.out, {"events": n, "model": list(SIZES), "results": results,
                                 "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}})
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    qk = next(r for r in results if r["name"] == "qkeras.predict")
    if qk["mismatches"]:
        print(f"WARNING: QKeras and the emulator differ in {qk['mismatches']} output values")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
