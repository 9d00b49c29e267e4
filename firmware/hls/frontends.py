"""What `l1ad export` takes -> QModel (+ the framework model, for the framework-vs-emulator agreement).

QKeras:   firmware.import_qkeras(deployed Keras model)
Brevitas: export QONNX (TorchScript exporter) -> firmware.import_qonnx
The HLS project is built from the QModel alone; the framework model only serves the agreement check
(its own prediction vs the emulator).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from l1ad.firmware.ir import QModel

from .errors import HLSExportError

#: raw L1 hardware-unit codes: pT up to 65535 (16-bit unsigned field), eta +-460, phi [-288, 288)
DEFAULT_INPUT_FORMAT = "ap_int<18>"
QONNX_FILE = "model.qonnx.onnx"


def qmodel_from_trained(tm: Any, work_dir: str | Path, *, input_format: str = DEFAULT_INPUT_FORMAT,
                        thresholds: Iterable[int] = ()) -> tuple[QModel, Any]:
    """(QModel, framework source) of a trigger.modeldir.TrainedModel. Brevitas models are exported to
    ``work_dir/model.qonnx.onnx`` first (the QONNX file the IR is imported from)."""
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


def _output_agreement(compared: str, q: QModel, xv: np.ndarray, out: np.ndarray) -> dict:
    """A framework's float outputs `out` on real inputs `xv` vs the emulator's output codes: every value must
    lie on the output grid and equal the emulator's code (mismatches are reported, never hidden)."""
    from l1ad.firmware.emulator import emulate

    e = emulate(q, xv)
    codes = np.ldexp(np.asarray(out, dtype=np.float64), q.output_format.frac)
    on_grid = codes == np.round(codes)
    bad = ~on_grid | (np.where(on_grid, codes, 0).astype(np.int64) != e.outputs_int)
    return {"compared": compared, "n_events": int(len(xv)), "n_values": int(bad.size),
            "output_mismatches": int(bad.sum()), "events_with_mismatch": int(bad.any(axis=1).sum()) if bad.size else 0,
            "off_grid_outputs": int((~on_grid).sum())}


def framework_agreement(tm: Any, q: QModel, x_codes: np.ndarray) -> dict:
    """The framework's own forward pass (QKeras predict / Brevitas torch, float32) vs the emulator's outputs
    on raw input codes."""
    xv = q.input.format.to_float(np.asarray(x_codes, dtype=np.int64))
    return _output_agreement(f"{tm.frontend}_forward", q, xv, tm.forward(xv))


KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


def load_source(path: str | Path, work_dir: str | Path, *, input_format: str | None = None,
                softmax: str = "refuse") -> tuple[QModel, Any, Any]:
    """(QModel, framework source or None, trained model or None) of what a user passes on the command line:
    a Keras .h5/.keras file (QKeras layers), a QONNX .onnx file, a trained model directory, or a qmodel.json (or a
    folder holding one: an earlier export). The framework source is what the framework agreement runs; a
    qmodel.json has none."""
    from l1ad.firmware import import_qkeras, import_qonnx

    p = Path(path)
    fmt = input_format or "ap_fixed<16,6>"
    if p.is_file() and p.suffix in KERAS_SUFFIXES:
        from qkeras.utils import _add_supported_quantized_objects
        from tensorflow import keras

        objs: dict = {}
        _add_supported_quantized_objects(objs)
        try:
            model = keras.models.load_model(p, custom_objects=objs, compile=False)
        except (OSError, ValueError, TypeError) as e:
            raise HLSExportError(f"{p}: not a loadable Keras model file ({type(e).__name__}: {e})") from None
        return import_qkeras(model, fmt, softmax=softmax, name=p.stem), model, None
    if p.is_file() and p.suffix == ".onnx":
        return import_qonnx(p, fmt, name=p.stem), p, None
    if p.is_file() and p.suffix == ".json":
        return QModel.load(p), None, None
    if p.is_dir() and (p / "qmodel.json").is_file():
        return QModel.load(p / "qmodel.json"), None, None
    if p.is_dir():
        from l1ad.trigger.modeldir import load_model

        tm = load_model(p)
        q, src = qmodel_from_trained(tm, work_dir, input_format=input_format or DEFAULT_INPUT_FORMAT)
        return q, src, tm
    raise HLSExportError(f"{p}: expected a Keras .h5/.keras file, a QONNX .onnx file, a trained model directory or "
                         f"a qmodel.json")


def source_agreement(q: QModel, source: Any, trained: Any, x_codes: np.ndarray) -> dict | None:
    """The source framework's own prediction vs the emulator on the same raw input codes (None without a
    source): QKeras predict (logits when the IR dropped a softmax), QONNX via onnxruntime, or the trained
    model's forward pass."""
    if trained is not None:
        return framework_agreement(trained, q, x_codes)
    if source is None:
        return None
    xv = q.input.format.to_float(np.asarray(x_codes, dtype=np.int64))
    if isinstance(source, Path):
        from l1ad.firmware.import_qonnx import compare_qonnx

        # float scales (affine requantization): the exported graph in float64, where float32 would round; no
        # float64 Conv in onnxruntime, so a float-scale conv network is compared in float32 (rare differences shown)
        has_conv = any(L.kind == "conv" for L in q.layers)
        wide = any(L.kind == "affine" for L in q.layers) and not has_conv
        return compare_qonnx(q, source, xv, dtype="float64" if wide else "float32")
    if not q.input.is_identity:
        raise HLSExportError("a Keras source with input scaling: compare through the trained model directory")
    return _output_agreement("qkeras_predict", q, xv, keras_logits(source).predict(xv, verbose=0, batch_size=4096))


def keras_logits(model: Any):
    """The Keras model without a trailing softmax activation (the IR holds the logits when it was imported with
    softmax="drop"); otherwise the model itself."""
    from tensorflow import keras

    out_layer, node_index, _ = model.outputs[0]._keras_history
    if len(model.outputs) == 1 and getattr(getattr(out_layer, "activation", None), "__name__", "") == "softmax" \
            and type(out_layer).__name__ in ("Activation", "QActivation"):
        return keras.Model(model.inputs, out_layer._inbound_nodes[node_index].input_tensors, name=model.name)
    return model
