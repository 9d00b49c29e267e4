"""Resource estimates with Yosys: ``synth_xilinx -family xcup`` (UltraScale+) on the generated RTL, then ``stat``.

Counts LUTs (LUT1..LUT6), flip-flops (FDRE/FDSE/FDCE/FDPE), DSP48E2, CARRY8, shift-register LUTs (SRL16E/SRLC32E),
wide muxes (MUXF7/8/9) and block / distributed RAM cells. These are Yosys' mapping, not Vivado's: expect Vivado to
pack somewhat better (LUT6_2 sharing, retiming), but the counts rank designs reliably.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

CATEGORIES = {
    "LUT": re.compile(r"^LUT[1-6](_2)?$"),
    "FF": re.compile(r"^FD[A-Z]{2}(_1)?$"),
    "DSP": re.compile(r"^DSP48E2$|^DSP48E1$|^DSP"),
    "CARRY": re.compile(r"^CARRY(4|8)$"),
    "SRL": re.compile(r"^SRL(C)?(16|32)E?$"),
    "MUXF": re.compile(r"^MUXF[789]$"),
    "BRAM": re.compile(r"^RAMB"),
    "LUTRAM": re.compile(r"^RAM(16|32|64|128|256)"),
}


class YosysError(RuntimeError):
    """Yosys is missing or synthesis failed."""


def yosys_bin() -> str:
    exe = shutil.which("yosys")
    if exe is None:
        raise YosysError("yosys not found on PATH (Debian: apt-get install yosys; `make setup` installs it)")
    return exe


def parse_stat(text: str) -> dict[str, int]:
    """Cell counts of the last (top-level, flattened) design in Yosys ``stat`` output."""
    blocks = re.split(r"^=== (.+) ===\s*$", text, flags=re.M)
    # blocks: [pre, name1, body1, name2, body2, ...]; the flattened top is the last module printed
    cells: dict[str, int] = {}
    if len(blocks) < 3:
        raise YosysError("no `stat` output found in the Yosys log")
    body = blocks[-1]
    m = re.search(r"Number of cells:\s+(\d+)\s*\n((?:\s+\S+\s+\d+\s*\n)*)", body)
    if not m:
        raise YosysError("cannot parse the cell list of Yosys `stat`")
    for line in m.group(2).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            cells[parts[0]] = int(parts[1])
    return cells


def summarize(cells: dict[str, int]) -> dict[str, int]:
    out = {k: 0 for k in CATEGORIES}
    other = 0
    for name, n in cells.items():
        for cat, rx in CATEGORIES.items():
            if rx.match(name):
                out[cat] += n
                break
        else:
            if name not in ("BUFG", "IBUF", "OBUF", "INV", "GND", "VCC"):
                other += n
    out["other"] = other
    return out


def synth_report(sources: Sequence[str | Path], top: str, *, family: str = "xcup", log: str | Path | None = None,
                 timeout: float | None = None, extra: str = "") -> dict[str, Any]:
    """Synthesize with Yosys and return {"resources": {LUT, FF, DSP, CARRY, SRL, ...}, "cells": {...},
    "seconds": wall time, "yosys": version, "script": the commands}. ``extra`` adds synth_xilinx options
    (e.g. "-nodsp")."""
    exe = yosys_bin()
    files = " ".join(str(Path(s)) for s in sources)
    script = (f"read_verilog -defer {files}; hierarchy -top {top}; "
              f"synth_xilinx -family {family} -top {top} {extra}; stat")
    cmd = [exe, "-q", "-p", script]
    logp = Path(log) if log else None
    if logp:
        cmd += ["-l", str(logp)]
    else:
        cmd = [exe, "-p", script]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise YosysError(f"Yosys did not finish within {timeout:.0f} s") from None
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise YosysError(f"Yosys failed ({r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
    text = logp.read_text() if logp else r.stdout
    cells = parse_stat(text)
    ver = subprocess.run([exe, "-V"], capture_output=True, text=True).stdout.strip()
    return {"resources": summarize(cells), "cells": cells, "seconds": round(dt, 2), "yosys": ver,
            "script": script, "family": family}


def format_table(rep: dict[str, Any]) -> str:
    """A readable table of the latency and resource report."""
    lat = rep.get("latency", {})
    res = rep.get("resources", {})
    lines = [f"Design {rep.get('top', '?')} (model {rep.get('model', '?')})", ""]
    if lat:
        lines += [
            f"  latency            {lat['cycles']} cycles at {lat['clock_mhz']:g} MHz = {lat['ns']:.2f} ns"
            f" (II = 1: one event per clock)",
            f"  one bunch crossing (25 ns):   {'fits' if lat['fits_one_bx'] else 'does not fit'}",
            f"  two bunch crossings (50 ns):  {'fits' if lat['fits_two_bx'] else 'does not fit'}",
        ]
        lines.append(f"  deepest stage      {lat['max_levels_per_stage']} logic levels "
                     f"(rough f_max estimate {lat['est_fmax_mhz']:.0f} MHz: {lat['clock_mhz']:g} MHz "
                     f"{'plausible' if lat['clock_plausible'] else 'unlikely'}; no vendor timing)")
        for b in lat.get("breakdown", []):
            lines.append(f"      {b['block']:<40s} {b['cycles']:>3d} cycles")
        lines.append("")
    if rep.get("latency_sweep"):
        lines.append(f"  pipelining sweep at {lat['clock_mhz']:g} MHz (levels per stage -> latency; est. f_max):")
        lines.append("      levels  cycles       ns   1 BX  2 BX   est f_max   ns at est f_max   (levels 0: registers only"
                     " at the input and output)")
        for r in rep["latency_sweep"]:
            lines.append(f"      {r['levels_per_stage']:>6d}  {r['cycles']:>6d}  {r['ns']:>7.1f}   {'yes' if r['fits_one_bx'] else ' no'}"
                         f"   {'yes' if r['fits_two_bx'] else ' no'}   {r['est_fmax_mhz']:>6.0f} MHz   {r['ns_at_est_fmax']:>8.1f}"
                         + ("" if r["clock_plausible"] else "   (target clock unlikely)"))
        lines.append("")
    if res:
        lines.append(f"  Yosys {rep.get('family', 'xcup')} synth_xilinx ({rep.get('seconds', 0):.0f} s):")
        for k in ("LUT", "FF", "DSP", "CARRY", "SRL", "MUXF", "BRAM", "LUTRAM", "other"):
            if k in res:
                lines.append(f"      {k:<8s} {res[k]:>8d}")
    elif rep.get("synthesis_error"):
        lines.append(f"  synthesis: {rep['synthesis_error']}")
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, design: Any, *, timeout: float | None = None, synth: bool = True,
                 sweep: list[dict] | None = None) -> dict[str, Any]:
    """Synthesize the design written in out_dir and write report.json and report.txt (latency, the pipelining
    sweep if given, resources)."""
    from l1ad.trigger.atomic import write_json_atomic, write_text_atomic

    out = Path(out_dir)
    meta = design.meta
    rep: dict[str, Any] = {
        "top": meta["top"], "model": meta["model"],
        "latency": {"cycles": meta["latency_cycles"], "clock_mhz": meta["clock_mhz"], "ns": meta["latency_ns"],
                    "fits_one_bx": meta["fits_one_bx"], "fits_two_bx": meta["fits_two_bx"],
                    "max_levels_per_stage": meta["max_levels_per_stage"], "est_fmax_mhz": meta["est_fmax_mhz"],
                    "clock_plausible": meta["clock_plausible"],
                    "breakdown": meta["latency_breakdown"]},
        "config": meta["config"],
    }
    if sweep:
        rep["latency_sweep"] = sweep
    if synth:
        try:
            rep.update(synth_report([out / f for f in meta["files"]], meta["top"], log=out / "yosys.log", timeout=timeout))
        except YosysError as e:
            rep["synthesis_error"] = str(e)
    write_json_atomic(out / "report.json", rep)
    write_text_atomic(out / "report.txt", format_table(rep))
    return rep
