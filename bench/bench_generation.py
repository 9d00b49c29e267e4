"""Generation speed: events per CPU-second on one core for minimum bias, each signal and the dijet samples,
split into Pythia generation and reconstruction (pile-up overlay, towers, L1 objects, offline jets and
N-subjettiness); then the quick (and with --default, the default) configuration end to end on all cores,
which also writes the stitching closure figure (weighted vs unweighted single-jet rate).

    python bench/bench_generation.py [--events 300] [--default] [--skip-speed | --speed-only] [--out out/bench/generation]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from l1ad.trigger.generation import GenerationConfig, generate  # noqa: E402
from l1ad.trigger.generation.processes import (  # noqa: E402
    SIGNALS,
    closure_process,
    pileup_pool_process,
    signal_process,
    zero_bias_processes,
)
from l1ad.trigger.generation.runner import Chunk, _pool_arrays, run_chunk  # noqa: E402


def speed_table(n_events: int) -> list[dict]:
    cfg = GenerationConfig()
    cj = cfg.model_dump(mode="json")
    pool = _pool_arrays(run_chunk(Chunk(pileup_pool_process(), 0, 1000, 11), cj, None))
    zb = {p.name: p for p in zero_bias_processes(cfg)}
    procs = [closure_process(), zb["qcd_pt15_30"], zb["qcd_pt120_170"], zb["ttbar"],
             *[signal_process(s, cfg) for s in SIGNALS], signal_process("qcd_dijet", cfg)]
    rows = []
    for p in procs:
        r = run_chunk(Chunk(p, 0, n_events, 12345), cj, pool)
        n = r["n"]
        rows.append({
            "process": p.name if p.name != "minbias_closure" else "minbias (SoftQCD:nonDiffractive)",
            "events": int(n),
            "gen_ev_per_cpu_s": n / r["cpu_gen"],
            "reco_ev_per_cpu_s": n / r["cpu_reco"],
            "total_ev_per_cpu_s": n / (r["cpu_gen"] + r["cpu_reco"]),
            "mean_npu": float(np.mean(r["npu"])),
        })
        row = rows[-1]
        print(f"{row['process']:34s} {row['events']:6d} {row['gen_ev_per_cpu_s']:10.1f} {row['reco_ev_per_cpu_s']:10.1f} "
              f"{row['total_ev_per_cpu_s']:10.1f}", flush=True)
    return rows


def end_to_end(cfg: GenerationConfig, out: Path, label: str) -> dict:
    t0 = time.perf_counter()
    manifest = generate(cfg, out / label, cache_dir=out / "cache", progress=True)
    wall = time.perf_counter() - t0
    cpu = sum(p["cpu_seconds"] for p in manifest["processes"].values())
    print(f"\n{label}: wall {wall:.0f} s on all cores (this run; 0 if cached), CPU {cpu:.0f} s in workers")
    for name, s in manifest["samples"].items():
        print(f"  {name:18s} {s['events']:7d} events")
    print(f"  closure figure: {out / label / manifest['closure_figure']}")
    return {"wall_seconds": wall, "cpu_seconds": cpu, "samples": manifest["samples"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300, help="events per process for the speed table")
    ap.add_argument("--default", action="store_true", help="also time the default configuration")
    ap.add_argument("--skip-speed", action="store_true", help="no per-process speed table")
    ap.add_argument("--speed-only", action="store_true", help="only the per-process speed table")
    ap.add_argument("--out", default="out/bench/generation")
    args = ap.parse_args()
    out = Path(args.out)
    result = {}
    if not args.skip_speed:
        print(f"{'process':34s} {'events':>6s} {'gen ev/s':>10s} {'reco ev/s':>10s} {'total ev/s':>10s}   (per CPU core)")
        result["speed"] = speed_table(args.events)
    if not args.speed_only:
        result["quick"] = end_to_end(GenerationConfig.quick(), out, "quick")
    if args.default:
        result["default"] = end_to_end(GenerationConfig(), out, "default")
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_generation.json").write_text(json.dumps(result, indent=2))
    print(f"\nresults: {out / 'bench_generation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
