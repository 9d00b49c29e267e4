"""l1ad.firmware: the quantized-model IR, bit-exact emulator, HLS (hls4ml) and Verilog export, reports.

Public API (stable names):
  FixedFormat, QModel, InputSpec, DenseLayer, ScoreSpec, QModelError   - formats and the IR
  emulate(qmodel, x) -> EmulationResult                                  - bit-exact integer emulator
  import_qkeras(model, input_format=..., *, scaler=None, score=..., thresholds=()) -> QModel
  import_qonnx(path, input_format=...) -> QModel                        - (firmware/import_qonnx.py, lazy)
Heavy imports (TensorFlow, QKeras, QONNX) happen only when the importers are called.
"""
from __future__ import annotations

from typing import Any

from .fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedFormat, FixedFormatError
from .ir import SCHEMA, DenseLayer, InputSpec, QModel, QModelError, ScoreSpec, default_gate

__all__ = [
    "FixedFormat", "FixedFormatError", "ROUNDING_MODES", "OVERFLOW_MODES",
    "QModel", "QModelError", "InputSpec", "DenseLayer", "ScoreSpec", "SCHEMA", "default_gate",
    "emulate", "EmulationResult", "EmulatorInputError", "import_qkeras", "import_qonnx", "QKerasImportError",
]

_LAZY = {
    "emulate": ("emulator", "emulate"),
    "EmulationResult": ("emulator", "EmulationResult"),
    "EmulatorInputError": ("emulator", "EmulatorInputError"),
    "import_qkeras": ("import_qkeras", "import_qkeras"),
    "QKerasImportError": ("import_qkeras", "QKerasImportError"),
    "import_qonnx": ("import_qonnx", "import_qonnx"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{mod}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'firmware' has no attribute {name!r}")
