#!/usr/bin/env python
"""Emulator speed and agreement against QKeras predict and the HLS C simulation, in one run, interleaved.

Models (--net), QKeras models with the quantizers of the project's default architecture
(trigger.models.arch.ArchitectureConfig: input quantized_bits(12,3), weights (8,0), biases (8,3), quantized_relu(8,3),
output quantized_bits(12,3); alpha=1), imported with the integer input scaler of the L1 hardware units:
  * default  the deployed AXOL1TL-style encoder 57-32-16-8 (ArchitectureConfig.default("vae")), score sum mu_i^2
  * ae       the 57-32-16-8-16-32-57 autoencoder, masked-MSE score
with two comparators. Events: N synthetic L1 events in hardware units.

Runners (each returns the network output for the same events; mismatches are counted bit for bit against the
emulator):
  * "emulator"        l1ad.firmware.emulate on all N events: the compiled integer kernel (firmware.native, built
                      during the warm-up; worker threads over chunks) where g++ is there, else the NumPy path; it
                      returns the output codes as computed (int32 from the kernel, float32 integers from the float
                      path, as predict returns float32); the int64 copy is made when ``outputs_int`` is first read,
                      outside the timing like predict's conversion to codes
  * "emulator.numpy"  the same with backend="numpy" (the NumPy float path: the emulator before the kernel)
  * "emulator.int64"  the first call followed by reading ``outputs_int`` (the int64 copy inside the timing)
  * "qkeras.predict"  model.predict(scaled inputs, batch_size=16384) in float32, all N events
  * "csim.batch"      the exported project's C simulation (the HLS project built from the IR) through l1ad's
                      ctypes batch bridge (all cores), on the first --csim-events events
  * "baseline"        (--baseline REV) the emulator module of git revision REV, for a before/after in one run
  * peers             any ``bench/peers_*.py`` defining ``RUNNERS`` (dicts: name, setup(ctx), run(state, x_hw),
                      max_events)
The machine is shared: every round runs the emulator and each peer back to back in this process, and the
ratio per round is emulator events/s divided by the peer's events/s (C simulations: their rate on their subset;
their speed does not depend on N). Reported: the best and the median round, the CPU-time ratio to QKeras (less
sensitive to other processes on a shared machine), the issue-18 targets, the load average, and the profile:
the NumPy path's time per stage (``stage_profile``, before) next to the kernel's CPU time (after), both on one
thread; with --baseline also the baseline's, from its own stage_profile, or its cProfile when it has none.
Results go to out/bench/emulator.json (out/bench/emulator_ae.json for --net ae).

    python bench/bench_emulator.py [--net default|ae] [--events N] [--rounds R] [--csim-events M] [--no-csim]
                                   [--baseline REV]
"""
from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

NETS = {"default": (57, 32, 16, 8), "ae": (57, 32, 16, 8, 16, 32, 57)}


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


def build_model(net: str = "ae", seed: int = 0):
    """The QKeras model of --net: layer sizes NETS[net], the default architecture's quantizers, random biases."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    from l1ad.trigger.models.arch import ArchitectureConfig

    arch = ArchitectureConfig.default("vae" if net == "default" else "ae")
    iq, wq, bq, aq, oq = arch.input_quant, arch.weight_quant, arch.bias_quant, arch.activation_quant, arch.output_quant
    sizes = NETS[net]
    assert [L.n_out for L in arch.deployed_layers()] == list(sizes[1:]), "bench sizes differ from the architecture's"
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((sizes[0],), name="input")
    h = QActivation(quantized_bits(iq.bits, iq.integer, alpha=1), name="input_quant")(inp)
    for k, s in enumerate(sizes[1:]):
        last = k == len(sizes) - 2
        h = QDense(s, name=f"d{k}", kernel_quantizer=quantized_bits(wq.bits, wq.integer, alpha=1),
                   bias_quantizer=quantized_bits(bq.bits, bq.integer, alpha=1),
                   bias_initializer=tf.keras.initializers.RandomUniform(-0.5, 0.5, seed=seed))(h)
        if not last:
            h = QActivation(quantized_relu(aq.bits, aq.integer), name=f"d{k}_relu")(h)
    h = QActivation(quantized_bits(oq.bits, oq.integer, alpha=1), name="output_quant")(h)
    return tf.keras.Model(inp, h, name=f"bench_{net}")


def import_model(model, net: str):
    """The QModel of the bench's QKeras model: L1 scaler, masked-MSE (ae) or mu^2 (default: thresholds sum mu_i^2 > 8
    and > 32) score, two thresholds."""
    import l1ad.firmware as fw

    if net == "ae":
        return fw.import_qkeras(model, "ap_int<18>", scaler=Scaler, score="mse", gate="l1", thresholds=(1000, 10000))
    q = fw.import_qkeras(model, "ap_int<18>", scaler=Scaler, score="mu2")
    return q.with_thresholds((q.threshold_code(8.0), q.threshold_code(32.0)))


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


def timed(fn) -> tuple[float, float, object]:
    """Wall seconds, CPU seconds (all threads) and the output of one call."""
    c0, t0 = _cpu(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, _cpu() - c0, out


def load_baseline(rev: str):
    """The emulator module of git revision `rev` (its relative imports pointed at the installed package). Its
    stage_profile clock (time.perf_counter, used for nothing else there) becomes the thread CPU time that the
    current stage_profile uses, so both profiles count the same thing on a shared machine."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:firmware/emulator.py"], check=True,
                         capture_output=True, text=True).stdout
    src = src.replace("from .fixed import", "from l1ad.firmware.fixed import").replace("from .ir import", "from l1ad.firmware.ir import")
    src = src.replace("time.perf_counter()", "time.thread_time()")
    path = Path(tempfile.mkdtemp(prefix="l1ad-baseline-")) / "baseline_emulator.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("baseline_emulator", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def csim_runners(model, qmodel, workdir: Path) -> list[dict]:
    """The exported project's batch C simulation (the project is built from the IR; `model` is not needed)."""
    from l1ad.firmware.hls import CSim, HLSConfig, export_hls

    prj = export_hls(qmodel, None, workdir / "prj", HLSConfig(tb_vectors=10))
    sim = CSim(prj.path, prj.name)
    return [{"name": "csim.batch", "run": lambda x_hw: sim.run(x_hw.astype(np.int64)).outputs_int}]


def print_profile(title: str, prof: dict[str, float], n: int) -> None:
    tot = sum(prof.values())
    print(f"\n{title}: {tot:.3f} CPU s for {n} events on one thread ({n / tot:,.0f} events per CPU second)")
    for k, v in sorted(prof.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<42}{v * 1e3:9.1f} ms {100 * v / tot:6.1f} %{v / n * 1e9:8.0f} ns/event")


def native_profile(fw, qmodel, x) -> float | None:
    """CPU seconds of the native kernel on x in this thread (threads=1: the kernel runs in the calling thread), or
    None without a kernel. The best of three (the thread's CPU time: other processes inflate it little)."""
    best = None
    for _ in range(3):
        t0 = time.thread_time()
        try:
            fw.emulate(qmodel, x, backend="native", threads=1)
        except fw.EmulatorInputError:
            return None
        t = time.thread_time() - t0
        best = t if best is None else min(best, t)
    return best


def baseline_profile(mod, qmodel, x) -> list[str]:
    """cProfile of the baseline emulator on one thread (NumPy work shows under the Python function calling it)."""
    pr = cProfile.Profile()
    pr.enable()
    mod.emulate(qmodel, x, threads=1)
    pr.disable()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(8)
    return [ln for ln in buf.getvalue().splitlines() if ln.strip()][-10:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", choices=tuple(NETS), default="default",
                    help="default: the AXOL1TL-style encoder 57-32-16-8 (mu^2 score); ae: the 57-32-16-8-16-32-57 autoencoder")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (emulator, then each peer)")
    ap.add_argument("--csim-events", type=int, default=20_000, help="events for the C simulations (~8k events/s)")
    ap.add_argument("--no-csim", action="store_true", help="skip the C simulation (no g++ build)")
    ap.add_argument("--baseline", default=None, help="git revision whose emulator is timed alongside (before/after)")
    ap.add_argument("--profile-events", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0: TF default)")
    ap.add_argument("--out", type=Path, default=None, help="default: out/bench/emulator.json (emulator_ae.json for --net ae)")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = ROOT / "out" / "bench" / ("emulator.json" if args.net == "default" else f"emulator_{args.net}.json")
    if args.events < 1 or args.rounds < 1 or args.csim_events < 1:
        ap.error("--events, --rounds and --csim-events must be positive")

    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    import l1ad.firmware as fw
    from l1ad.firmware.emulator import stage_profile

    model = build_model(args.net)
    qmodel = import_model(model, args.net)
    x_hw = make_events(args.events)
    scaled = ((x_hw.astype(np.float64) - Scaler.offset) * 2.0 ** -Scaler.shift).astype(np.float32)
    n, m = len(x_hw), min(args.csim_events, len(x_hw))
    sizes = NETS[args.net]
    print(f"bench_emulator: {n} events, --net {args.net}: model {'-'.join(map(str, sizes))} ({qmodel.score.kind} score), "
          f"{platform.machine()} {os.cpu_count()} cpu(s), "
          f"numpy {np.__version__}, tensorflow {tf.__version__}, load average {os.getloadavg()[0]:.2f}")
    if qmodel.warnings:
        print("import warnings:", *qmodel.warnings, sep="\n  ")
    base = load_baseline(args.baseline) if args.baseline else None
    frac = qmodel.output_format.frac
    # (name, timed call, conversion to output codes done after the timing)
    full = [("emulator", lambda: fw.emulate(qmodel, x_hw), lambda r: r.outputs_int),
            ("emulator.numpy", lambda: fw.emulate(qmodel, x_hw, backend="numpy"), lambda r: r.outputs_int),
            ("emulator.int64", lambda: fw.emulate(qmodel, x_hw).outputs_int, lambda r: r),
            ("qkeras.predict", lambda: model.predict(scaled, batch_size=16384, verbose=0),
             lambda y: np.ldexp(np.asarray(y, np.float64), frac))]
    if base is not None:
        qbase = fw.QModel.from_dict(qmodel.to_dict())  # its own object: both modules cache a plan on the QModel
        full.append(("baseline", lambda: base.emulate(qbase, x_hw), lambda r: r.outputs_int))
    sub: list[tuple[str, object]] = []
    ctx = {"model": model, "qmodel": qmodel, "scaler": Scaler, "x_hw": x_hw, "scaled": scaled}
    with tempfile.TemporaryDirectory() as d:
        if not args.no_csim:
            t0 = time.perf_counter()
            sub += [(r["name"], (lambda r=r: r["run"](x_hw[:m]))) for r in csim_runners(model, qmodel, Path(d))]
            print(f"C simulations built in {time.perf_counter() - t0:.1f} s")
        for peer in load_peers():
            k = min(n, peer.get("max_events") or n)
            state = peer["setup"](ctx)
            sub.append((peer["name"], (lambda p=peer, s=state, k=k: p["run"](s, x_hw[:k]))))
        # warm-up outside the timed rounds: the kernel's build (or its cache), plan compilation, graph tracing
        try:
            t0 = time.perf_counter()
            fw.emulate(qmodel, x_hw[:1000], backend="native")
            print(f"native kernel ready in {time.perf_counter() - t0:.1f} s (built, or loaded from the cache)")
        except fw.EmulatorInputError as e:
            print(f"no native kernel ({e}): the emulator runs on the NumPy path")
        ref = fw.emulate(qmodel, x_hw[:1000]).outputs_int
        fw.emulate(qmodel, x_hw[:1000], backend="numpy")
        print(f"emulator backends: {sorted(set(fw.emulate(qmodel, x_hw[:1000]).backends.values()))}")
        if base is not None:
            base.emulate(qbase, x_hw[:1000])
        model.predict(scaled[:1000], batch_size=16384, verbose=0)
        rows: dict[str, dict] = {}
        with_int64 = []  # per round: qkeras.predict time / emulator.int64 time
        for r in range(args.rounds):
            t_emu = None
            walls = {}
            for name, fn, post in full:
                wall, cpu, out = timed(fn)
                walls[name] = wall
                out = post(out)
                row = rows.setdefault(name, {"name": name, "events": n, "wall": [], "cpu": [], "ratio": [], "mismatches": 0})
                row["wall"].append(wall)
                row["cpu"].append(cpu)
                if name == "emulator":
                    t_emu, ref = wall, out
                else:
                    row["ratio"].append(wall / t_emu)
                    row["mismatches"] = max(row["mismatches"], int(np.count_nonzero(np.asarray(out) != ref)))
                del out
            with_int64.append(walls["qkeras.predict"] / walls["emulator.int64"])
            if r < max(1, args.rounds - 1):  # the slow C simulations: one round fewer (at least one)
                for name, fn in sub:
                    w_e, _, e_out = timed(lambda: fw.emulate(qmodel, x_hw[:m]).outputs_int)
                    wall, cpu, out = timed(fn)
                    k = len(out)
                    row = rows.setdefault(name, {"name": name, "events": k, "wall": [], "cpu": [], "ratio": [], "mismatches": 0,
                                                 "ratio_same_events": []})
                    row["wall"].append(wall)
                    row["cpu"].append(cpu)
                    row["ratio"].append((wall / k) / (t_emu / n))  # emulator rate on N events / peer rate
                    row["ratio_same_events"].append(wall / (w_e * k / m))
                    row["mismatches"] = max(row["mismatches"], int(np.count_nonzero(np.asarray(out) != e_out[:k])))
            print(f"round {r + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.2f}", flush=True)
    load = os.getloadavg()
    print(f"\n{'runner':<16}{'events':>9}{'best s':>9}{'events/s':>13}{'emulator is x faster':>22}{'(median)':>10}{'mismatches':>16}")
    results = []
    for row in rows.values():
        best = min(row["wall"])
        row["events_per_s"] = row["events"] / best
        row["emulator_speedup_best"] = max(row["ratio"]) if row["ratio"] else None
        row["emulator_speedup_median"] = statistics.median(row["ratio"]) if row["ratio"] else None
        sp = "" if row["emulator_speedup_best"] is None else f"{row['emulator_speedup_best']:.2f}x"
        md = "" if row["emulator_speedup_median"] is None else f"{row['emulator_speedup_median']:.2f}x"
        mm = "" if row["name"] == "emulator" else f"{row['mismatches']}/{row['events'] * qmodel.n_outputs}"
        print(f"{row['name']:<16}{row['events']:>9}{best:>9.3f}{row['events_per_s']:>13,.0f}{sp:>22}{md:>10}{mm:>16}")
        results.append(row)
    print(f"(emulator is x faster = emulator events/s on {n} events / runner events/s, per interleaved round; "
          f"load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on {os.cpu_count()} cpus)")
    print(f"  emulator with the int64 copy of the outputs timed: {max(with_int64):.2f}x faster than qkeras.predict "
          f"(best round), {statistics.median(with_int64):.2f}x (median)")
    if "emulator" in rows and "qkeras.predict" in rows:  # CPU seconds (all threads): less sensitive to other load
        cpu_ratio = [q / e for q, e in zip(rows["qkeras.predict"]["cpu"], rows["emulator"]["cpu"])]
        print(f"  CPU time (all threads) qkeras.predict / emulator: {max(cpu_ratio):.2f}x (best round), "
              f"{statistics.median(cpu_ratio):.2f}x (median)")
    targets = {"qkeras.predict": 5.0, "csim.batch": 50.0}  # issue 18: emulator / runner, events per second
    for name, goal in targets.items():
        if name in rows:
            best, med = rows[name]["emulator_speedup_best"], rows[name]["emulator_speedup_median"]
            print(f"  target emulator / {name} >= {goal:g}: {'met' if med >= goal else 'met on the best round only' if best >= goal else 'NOT met'} "
                  f"(best {best:.2f}x, median {med:.2f}x)")
    for name in ("csim.batch",):
        if name in rows:
            print(f"  {name}: emulator on the same {rows[name]['events']} events is "
                  f"{statistics.median(rows[name]['ratio_same_events']):.1f}x faster (median)")
    pe = min(args.profile_events, n)
    base_prof = None
    if base is not None and hasattr(base, "stage_profile"):
        base_prof = base.stage_profile(qbase, x_hw[:pe])
        print_profile(f"baseline {args.baseline} stages (before)", base_prof, pe)
    prof = stage_profile(qmodel, x_hw[:pe])
    print_profile("NumPy path stages (before: emulate(backend='numpy'))", prof, pe)
    native_cpu = native_profile(fw, qmodel, x_hw[:pe])
    if native_cpu is not None:
        print(f"native kernel (after): {native_cpu:.3f} CPU s for {pe} events on one thread ({pe / native_cpu:,.0f} events per "
              f"CPU second, {native_cpu / pe * 1e9:.0f} ns/event): {sum(prof.values()) / native_cpu:.2f}x less CPU than the NumPy path")
    if base is not None and base_prof is None:
        base_prof = baseline_profile(base, qbase, x_hw[:pe])
        print(f"\nbaseline {args.baseline} cProfile on {pe} events, one thread (top by own time):")
        print(*base_prof, sep="\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from l1ad.trigger.atomic import write_json_atomic

    write_json_atomic(args.out, {"events": n, "net": args.net, "model": list(sizes), "results": results,
                                 "stage_profile_s": prof, "native_cpu_s": native_cpu, "profile_events": pe,
                                 "qkeras_over_emulator_int64": with_int64,
                                 "baseline": args.baseline, "baseline_profile": base_prof,
                                 "load_average_end": list(load),
                                 "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}})
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    bad = [r["name"] for r in results if r["name"] != "emulator" and r["mismatches"]]
    if bad:
        print(f"WARNING: output values differ from the emulator for {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
