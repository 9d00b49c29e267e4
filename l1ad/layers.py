"""The per-layer table of the generated firmware: each block's fixed-point formats, its pipeline cycles and a
resource estimate (CSD shift-add adders x accumulator bits for the dense layers, one DSP per square of the
score when the squares use `*`). The estimate is what the report shows when Yosys is off, and next to Yosys'
whole-design figures when it ran (Yosys reports the flattened design, not per layer)."""
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
          "≈ LUT", "≈ DSP"]


def dense_estimate(weights: np.ndarray, bias: np.ndarray, acc_bits: int, multiplier: str) -> tuple[int, int, int]:
    """(adder terms, LUT estimate, DSP estimate) of one dense layer: every non-zero canonical-signed-digit of a
    weight code is one shifted copy of its input to add; an output of t terms needs t - 1 adders of about
    `acc_bits` LUTs each. With multiplier 'mult' every non-zero weight is one DSP instead."""
    from l1ad.firmware.verilog.rtl import csd

    w = np.asarray(weights, dtype=np.int64)
    digits = {int(v): len(csd(int(v))) for v in np.unique(w)}
    nz = np.vectorize(lambda v: digits[int(v)])(w) if w.size else w
    if multiplier == "mult":
        terms = (w != 0).sum(axis=0) + (np.asarray(bias) != 0)
        return int(terms.sum()), int(np.maximum(terms - 1, 0).sum() * acc_bits), int((w != 0).sum())
    terms = nz.sum(axis=0) + (np.asarray(bias) != 0)
    return int(terms.sum()), int(np.maximum(terms - 1, 0).sum() * acc_bits), 0


def layer_rows(rtl_dir: Path, *, yosys_ran: bool) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) for the generated design in `rtl_dir` (its qmodel.json and design.json)."""
    from l1ad.firmware.ir import QModel

    q = QModel.load(Path(rtl_dir) / "qmodel.json")
    design = json.loads((Path(rtl_dir) / "design.json").read_text())
    cfg = design.get("config", {})
    top = design.get("top", "")
    cycles = {b["block"]: b["cycles"] for b in design.get("latency_breakdown", [])}
    rows: list[list[Any]] = [["input scaling", f"{q.n_inputs}", "—", "—", "—", short(q.scaled_format or q.input.format),
                              f"(x−offset)·2^−shift, in {short(q.input.format)}",
                              cycles.get(f"{top}_input", 0) + cycles.get("input register", 0), "—", "—", "—"]]
    total_lut = total_dsp = 0
    for layer in q.layers:
        acc = layer.accum_format
        terms, lut, dsp = dense_estimate(layer.weights, layer.bias, acc.width if acc else 0, cfg.get("multiplier", "shiftadd"))
        total_lut, total_dsp = total_lut + lut, total_dsp + dsp
        rows.append([layer.name, f"{layer.n_in}×{layer.n_out}", short(layer.weight_format), short(layer.bias_format),
                     short(acc), short(layer.output_format or acc), layer.activation, cycles.get(f"{top}_{layer.name}", "—"),
                     terms, lut, dsp])
    if q.score is not None:
        sc = q.score
        n_sq = len(sc.gate) if sc.gate else q.n_outputs
        dsp = n_sq if cfg.get("square", "mult") == "mult" and sc.kind == "mse" else 0
        total_dsp += dsp
        rows.append([f"score ({sc.kind})", f"{n_sq} squares", "—", "—", short(sc.accum_format), short(sc.format),
                     f"squares {short(sc.square_format)}", cycles.get(f"{top}_score", "—"), n_sq, "—", dsp])
        rows.append(["comparators", f"{len(q.thresholds)} thresholds", "—", "—", "—", "trigger bits", "score > threshold",
                     cycles.get("comparators + output register", "—"), "—", "—", "—"])
    rows.append(["total" + ("" if not yosys_ran else " (estimate; Yosys: see above)"), "", "", "", "", "", "",
                 design.get("latency_cycles"), "", total_lut, total_dsp])
    return HEADER, rows
