"""cocotb testbench for a generated trigger (run by sim.cosim through cocotb's Verilator runner).

It replays a stimulus file cycle by cycle with the same convention as the batch harness (inputs applied while the
clock is low, outputs read before the rising edge) and writes every output back.

Environment: L1AD_COSIM_STIM (an .npz of per-port Python-int object arrays), L1AD_COSIM_RESP (where to write the
responses), L1AD_COSIM_OUTPUTS (comma-separated output port names), and optionally L1AD_COSIM_EXPECT (a pickle of
the RTL folder, the stream and the emulator's result): then the test checks every output bit itself (the same
checker as sim.cosim) and fails in cocotb's results on any difference.
"""
from __future__ import annotations

import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer


@cocotb.test()
async def replay(dut):
    stim = np.load(os.environ["L1AD_COSIM_STIM"], allow_pickle=True)
    outs = [p for p in os.environ["L1AD_COSIM_OUTPUTS"].split(",") if p]
    ins = [k for k in stim.files]
    cols = [stim[k].tolist() for k in ins]
    handles_in = [getattr(dut, k) for k in ins]
    handles_out = [getattr(dut, k) for k in outs]
    n = len(cols[0]) if cols else 0
    got: list[list[int]] = [[0] * n for _ in outs]
    # row 0 is a reset row (sim.cosim starts every stream with reset rows): apply it before the first edge too,
    # then clock; each falling edge reads the state after the previous rising edge and applies the next row
    for h, c in zip(handles_in, cols):
        h.value = c[0] if n else 0
    dut.clk.value = 0
    await Timer(1, "ns")
    cocotb.start_soon(Clock(dut.clk, 2, "ns").start(start_high=True))
    t0 = time.perf_counter()
    for c in range(n):
        await FallingEdge(dut.clk)
        for k, h in enumerate(handles_out):
            got[k][c] = h.value.integer
        for h, col in zip(handles_in, cols):
            h.value = col[c]
    dt = time.perf_counter() - t0
    np.savez(os.environ["L1AD_COSIM_RESP"], seconds=np.array(dt),
             **{p: np.array(v, dtype=object) for p, v in zip(outs, got)})
    check_file = os.environ.get("L1AD_COSIM_EXPECT")
    if check_file:  # self-checking: the same checker as the batch path, failing this cocotb test on any difference
        import pickle

        from l1ad.sim.cosim import check, load_design
        from l1ad.sim.packing import from_ints

        with open(check_file, "rb") as f:
            job = pickle.load(f)
        rtl, qm = load_design(job["rtl_dir"])
        widths = {p.name: p.width for p in rtl.outputs}
        r = check(rtl, qm, job["stream"], {p: from_ints(v, widths[p]) for p, v in zip(outs, got)}, job["expected"])
        assert r["valid_errors"] == 0, f"out_valid is not in_valid delayed by {rtl.meta['latency_cycles']} cycles"
        assert r["mismatches"] == 0, f"{r['mismatches']} vectors differ from the emulator: {r['details'][:3]}"
        assert r["mismatch_fields"].get("trigger_when_invalid", 0) == 0, "trigger bits set without out_valid"
        dut._log.info(f"bit-exact: {r['vectors']} vectors, latency {r['latency_measured']} cycles")
