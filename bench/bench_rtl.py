"""Co-simulation speed of the generated RTL: cocotb testbench (Python per clock) vs the batch C++ harness.

    python bench/bench_rtl.py [--full] [--yosys] [--cocotb N] [--batch N] [--out out/bench/rtl.json]

Default network: a 57-8-57 autoencoder in the L1 layout (the real input width, mask and score); --full adds the
full-size 57-32-16-8-16-32-57 autoencoder (Verilator needs minutes to build it). Both paths check every output bit
against the emulator; the numbers are simulation time only (build and emulator time reported separately).
--yosys also synthesizes each network (synth_xilinx -family xcup) and records LUT / FF / DSP / CARRY.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bench_one(name: str, q, out: Path, n_cocotb: int, n_batch: int, yosys: bool) -> dict:
    from l1ad.firmware.verilog import VerilogConfig, export_verilog
    from l1ad.firmware.verilog.yosys import write_report
    from l1ad.sim.cosim import cosim, default_vectors

    rtl = out / name
    t0 = time.perf_counter()
    design = export_verilog(q, rtl, VerilogConfig(expose_outputs=True))
    row = {"network": name, "sizes": [q.n_inputs] + [L.n_out for L in q.layers], "generate_s": round(time.perf_counter() - t0, 2),
           "latency_cycles": design.latency_cycles, "latency_ns": design.meta["latency_ns"]}
    for engine, n in (("batch", n_batch), ("cocotb", n_cocotb)):
        if n <= 0:
            continue
        x = default_vectors(q, n, seed=1)
        t0 = time.perf_counter()
        r = cosim(rtl, x, engine=engine)
        row[engine] = {"vectors": r["vectors"], "mismatches": r["mismatches"], "ok": r["ok"],
                       "sim_s": round(r["sim_seconds"], 3), "vectors_per_s": round(r["vectors_per_s"] or 0),
                       "build_s": round(r["build_seconds"], 1), "emulate_s": round(r["emulate_seconds"], 2),
                       "wall_s": round(time.perf_counter() - t0, 1)}
        print(f"  {name:<12s} {engine:<7s} {r['vectors']:>9,d} vectors  mismatches {r['mismatches']}  "
              f"{row[engine]['vectors_per_s']:>10,d} vectors/s  (build {row[engine]['build_s']} s)", flush=True)
    if "batch" in row and "cocotb" in row and row["cocotb"]["vectors_per_s"]:
        row["batch_over_cocotb"] = round(row["batch"]["vectors_per_s"] / row["cocotb"]["vectors_per_s"], 1)
    if yosys:
        rep = write_report(rtl, design)
        row["yosys"] = {"resources": rep.get("resources"), "seconds": rep.get("seconds"),
                        "error": rep.get("synthesis_error")}
        print(f"  {name:<12s} yosys   {rep.get('resources')}  ({rep.get('seconds')} s)", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="also the full-size 57-32-16-8-16-32-57 autoencoder")
    ap.add_argument("--yosys", action="store_true", help="also synthesize with Yosys")
    ap.add_argument("--cocotb", type=int, default=20_000, help="vectors through the cocotb testbench")
    ap.add_argument("--batch", type=int, default=1_000_000, help="vectors through the batch harness")
    ap.add_argument("--out", default="out/bench/rtl.json")
    a = ap.parse_args(argv)

    from l1ad.sim.models import l1_autoencoder

    out = Path(a.out)
    work = out.parent / "rtl"
    nets = [("ae_57-8-57", l1_autoencoder((8,), seed=3))]
    if a.full:
        nets.append(("ae_full", l1_autoencoder()))
    rows = []
    for name, q in nets:
        rows.append(bench_one(name, q, work, a.cocotb, a.batch, a.yosys))
    res = {"bench": "rtl cosim", "host": platform.node(), "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
           "networks": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")
    bad = [r["network"] for r in rows for e in ("batch", "cocotb") if e in r and not r[e]["ok"]]
    if bad:
        print(f"MISMATCH in {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
