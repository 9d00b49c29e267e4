"""The per-layer table of the generated firmware: each block's fixed-point formats, its pipeline cycles, a
resource estimate and, when Yosys ran, Yosys' own per-module counts (parsed from its log).

The estimate: a dense layer with shift-add constant multipliers is an adder tree per output, one term per
non-zero canonical-signed-digit of each weight code (plus the bias); an output of t terms needs t - 1 adders, each
about as wide as the layer's input (the low bits of shifted terms pass through). On the 57-32-16-8-16-32-57
autoencoder of `l1ad run --quick`, Yosys (synth_xilinx -family xcup) gave 82,376 LUTs for the six dense layers
against 100,128 estimated (1.22x; per layer 1.03x-1.28x). The score's squares are one DSP each with `square: mult`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

def short(fmt: object) -> str:
    """A format without the ap_ prefix, its modes lower-case after a space: 'fixed<8,1> rnd_conv,sat'."""
    m = re.fullmatch(r"ap_(u?fixed|u?int)<([^>]*)>", str(fmt))
    if not m:
        return str(fmt)
    parts = m.group(2).split(",")
    nums = [p for p in parts if p.strip().isdigit()]
    modes = [p.lower() for p in parts if not p.strip().isdigit()]
    return f"{m.group(1)}<{','.join(nums)}>" + (f" {','.join(modes)}" if modes else "")


HEADER = ["block", "shape", "weights", "bias", "accumulator", "output", "activation", "cycles", "adder terms",
          "≈ LUT (est.)", "≈ DSP (est.)"]
YOSYS_HEADER = ["Yosys LUT", "Yosys FF", "Yosys DSP"]


def dense_estimate(weights: np.ndarray, bias: np.ndarray, in_bits: int, multiplier: str) -> tuple[int, int, int]:
    """(adder terms, LUT estimate, DSP estimate) of one dense layer: every non-zero canonical-signed-digit of a
    weight code is one shifted copy of its input to add; an output of t terms needs t - 1 adders of about
    `in_bits` LUTs each. With multiplier 'mult' every non-zero weight is one DSP instead."""
    from l1ad.firmware.verilog.rtl import csd

    w = np.asarray(weights, dtype=np.int64)
    digits = {int(v): len(csd(int(v))) for v in np.unique(w)}
    nz = np.vectorize(lambda v: digits[int(v)])(w) if w.size else w
    if multiplier == "mult":
        terms = (w != 0).sum(axis=0) + (np.asarray(bias) != 0)
        return int(terms.sum()), int(np.maximum(terms - 1, 0).sum() * in_bits), int((w != 0).sum())
    terms = nz.sum(axis=0) + (np.asarray(bias) != 0)
    return int(terms.sum()), int(np.maximum(terms - 1, 0).sum() * in_bits), 0


def yosys_per_module(log: Path) -> dict[str, dict[str, int]]:
    """{module: {LUT, FF, DSP, CARRY, ...}} from the `stat` section of a Yosys log (empty if there is none)."""
    from l1ad.firmware.verilog.yosys import summarize

    if not Path(log).is_file():
        return {}
    text = Path(log).read_text(errors="replace")
    blocks = re.split(r"^=== (.+) ===\s*$", text, flags=re.M)
    out = {}
    for name, body in zip(blocks[1::2], blocks[2::2]):
        m = re.search(r"Number of cells:\s+(\d+)\s*\n((?:\s+\S+\s+\d+\s*\n)*)", body)
        if m:
            cells = {p[0]: int(p[1]) for p in (ln.split() for ln in m.group(2).splitlines()) if len(p) == 2 and p[1].isdigit()}
            out[name.strip()] = summarize(cells)
    return out


def layer_rows(rtl_dir: Path) -> tuple[list[str], list[list[Any]], bool]:
    """(header, rows, yosys_ran) for the generated design in `rtl_dir` (its qmodel.json, design.json and, when
    Yosys ran, yosys.log)."""
    from l1ad.firmware.ir import QModel

    rtl_dir = Path(rtl_dir)
    q = QModel.load(rtl_dir / "qmodel.json")
    design = json.loads((rtl_dir / "design.json").read_text())
    cfg = design.get("config", {})
    top = design.get("top", "")
    ys = yosys_per_module(rtl_dir / "yosys.log")
    cycles = {b["block"]: b["cycles"] for b in design.get("latency_breakdown", [])}

    def yosys(module: str) -> list[Any]:
        r = ys.get(module)
        return [] if not ys else ["—"] * 3 if r is None else [r["LUT"], r["FF"], r["DSP"]]

    rows: list[list[Any]] = [["input scaling", f"{q.n_inputs}", "—", "—", "—", short(q.scaled_format or q.input.format),
                              f"(x−offset)·2^−shift, in {short(q.input.format)}",
                              cycles.get(f"{top}_input", 0) + cycles.get("input register", 0), "—", "—", "—",
                              *yosys(f"{top}_input")]]
    total_lut = total_dsp = 0
    in_fmt = q.input_quantizer
    for layer in q.layers:
        acc = layer.accum_format
        terms, lut, dsp = dense_estimate(layer.weights, layer.bias, in_fmt.width, cfg.get("multiplier", "shiftadd"))
        total_lut, total_dsp = total_lut + lut, total_dsp + dsp
        rows.append([layer.name, f"{layer.n_in}×{layer.n_out}", short(layer.weight_format), short(layer.bias_format),
                     short(acc), short(layer.output_format or acc), layer.activation, cycles.get(f"{top}_{layer.name}", "—"),
                     terms, lut, dsp, *yosys(f"{top}_{layer.name}")])
        in_fmt = layer.output_format or acc
    if q.score is not None:
        sc = q.score
        n_sq = 0 if sc.kind == "out" else (len(sc.gate) if sc.gate else q.n_outputs)
        dsp = n_sq if cfg.get("square", "mult") == "mult" and sc.kind == "mse" else 0
        total_dsp += dsp
        if sc.kind == "out":
            rows.append([f"score ({sc.kind})", "output 0", "—", "—", "—", short(sc.format), "requantize",
                         cycles.get(f"{top}_score", "—"), 0, "—", 0, *yosys(f"{top}_score")])
        else:
            rows.append([f"score ({sc.kind})", f"{n_sq} squares", "—", "—", short(sc.accum_format), short(sc.format),
                         f"squares {short(sc.square_format)}", cycles.get(f"{top}_score", "—"), n_sq, "—", dsp,
                         *yosys(f"{top}_score")])
        rows.append(["comparators, delays, I/O", f"{len(q.thresholds)} thresholds", "—", "—", "—", "trigger bits",
                     "score > threshold", cycles.get("comparators + output register", "—"), "—", "—", "—", *yosys(top)])
    whole = ys.get("design hierarchy")
    rows.append(["total", "", "", "", "", "", "", design.get("latency_cycles"), "", total_lut, total_dsp,
                 *([whole["LUT"], whole["FF"], whole["DSP"]] if whole else ["—"] * 3 if ys else [])])
    return HEADER + (YOSYS_HEADER if ys else []), rows, bool(ys)
