"""A trained model directory (trigger.modeldir) -> QModel + the framework model hls4ml converts.

QKeras:   firmware.import_qkeras(deployed Keras model)            -> hls4ml from the Keras model
Brevitas: export QONNX (TorchScript exporter) -> firmware.import_qonnx -> hls4ml from the same QONNX file
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from l1ad.firmware.ir import QModel

from .convert import HLSExportError

#: raw L1 hardware-unit codes: pT up to 65535 (16-bit unsigned field), eta +-460, phi [-288, 288)
DEFAULT_INPUT_FORMAT = "ap_int<18>"
QONNX_FILE = "model.qonnx.onnx"


def qmodel_from_trained(tm: Any, work_dir: str | Path, *, input_format: str = DEFAULT_INPUT_FORMAT,
                        thresholds: Iterable[int] = ()) -> tuple[QModel, Any]:
    """(QModel, source for export_hls) of a trigger.modeldir.TrainedModel. Brevitas models are exported to
    ``work_dir/model.qonnx.onnx`` first."""
    from l1ad.firmware import import_qkeras, import_qonnx

    score = "mse" if tm.arch.kind == "ae" else "mu2"
    gate = "auto"  # the project's trained models take the L1 layout: the object mask when there are 57 inputs
    thr = tuple(int(t) for t in thresholds)
    if tm.frontend == "qkeras":
        net = tm.deployed()
        return import_qkeras(net, input_format, scaler=tm.scaler, score=score, thresholds=thr, gate=gate,
                             name=tm.arch.name), net
    if tm.frontend == "brevitas":
        from l1ad.trigger.models.brevitas_nets import export_qonnx

        path = Path(work_dir) / QONNX_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        export_qonnx(tm.deployed(), path, tm.arch.n_inputs)
        return import_qonnx(path, input_format, scaler=tm.scaler, score=score, thresholds=thr, gate=gate,
                            name=tm.arch.name), path
    raise HLSExportError(f"front-end {tm.frontend!r} is not quantized: only 'qkeras' and 'brevitas' models can be "
                         f"exported to firmware")


def thresholds_from_rates(q: QModel, rates_json: str | Path) -> list[int]:
    """Threshold codes from an `l1ad rates` report (rates.json: thresholds[*].threshold are score values; the
    code c = floor(value / lsb) gives score > value <=> score_code > c)."""
    p = Path(rates_json)
    try:
        d = json.loads(p.read_text())
        vals = [t["threshold"] for t in d["thresholds"]]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise HLSExportError(f"{p}: not an l1ad rates report with thresholds[*].threshold ({e})") from None
    return [q.threshold_code(float(v)) for v in vals]


def framework_agreement(tm: Any, q: QModel, x_codes: np.ndarray) -> dict:
    """The framework's own forward pass (QKeras predict / Brevitas torch, float32) vs the emulator's outputs
    on raw input codes: value mismatches (reported, never hidden)."""
    from l1ad.firmware.emulator import emulate

    xv = q.input.format.to_float(np.asarray(x_codes, dtype=np.int64))
    out = np.asarray(tm.forward(xv), dtype=np.float64)
    e = emulate(q, xv)
    codes = np.ldexp(out, q.output_format.frac)
    on_grid = codes == np.round(codes)
    bad = ~on_grid | (np.where(on_grid, codes, 0).astype(np.int64) != e.outputs_int)
    return {"compared": f"{tm.frontend}_forward", "n_events": int(len(xv)), "n_values": int(bad.size),
            "output_mismatches": int(bad.sum()), "events_with_mismatch": int(bad.any(axis=1).sum()) if bad.size else 0,
            "off_grid_outputs": int((~on_grid).sum())}
