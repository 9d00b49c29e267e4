"""l1ad.firmware: the quantized-model IR (an op list), bit-exact emulator, HLS project (on hls4ml's nnet_utils) and Verilog export, reports.

Public API (stable names):
  FixedFormat                 ap_fixed / ap_ufixed / ap_int formats; parse("ap_fixed<16,6,RND_CONV,SAT>"), str(fmt),
                              .quantize(floats) / .requantize(codes, src) with exact ap_fixed semantics (firmware.fixed)
  QModel, InputSpec, DenseLayer, AffineLayer, ScoreSpec, default_gate, SCHEMA, QModelError   the IR (firmware.ir)
      QModel.save(path) / QModel.load(path) (JSON), .with_thresholds(codes), .threshold_code(value),
      .tensor_formats(), .tensor_bounds(), .layer_exact(i), .score_analysis(), .replace_formats(...)
  emulate(qmodel, x, *, strict=False, keep=False, chunk=4096, backend="auto", threads=None) -> EmulationResult
      .outputs_int .outputs .score_int .score .trigger .stats .tensors .backends      (firmware.emulator)
      backend: "auto" (the compiled integer kernel of firmware.native for dense-only models once loaded or for
      >= 2**17 events, else NumPy), "native" (the kernel, or an error saying why not), "numpy"
  import_qkeras(model, input_format="ap_fixed<16,6>", *, scaler=None, score="mse"|"mu2"|None, thresholds=(),
                gate="auto", output_layer=None, accum_formats=None, score_formats=None, name=None) -> QModel
  import_qonnx(path, input_format=..., ...) -> QModel                   (firmware/import_qonnx.py)
Both importer modules stay light at import time (TensorFlow / QONNX load inside the functions): this package
binds them when it is imported.
"""
from __future__ import annotations

import importlib
import types
from typing import Any

from .fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedFormat, FixedFormatError
from .ir import LAYER_KINDS, SCHEMA, AffineLayer, DenseLayer, InputSpec, QModel, QModelError, ScoreSpec, default_gate

__all__ = [
    "FixedFormat", "FixedFormatError", "ROUNDING_MODES", "OVERFLOW_MODES",
    "QModel", "QModelError", "InputSpec", "DenseLayer", "AffineLayer", "LAYER_KINDS", "ScoreSpec", "SCHEMA", "default_gate",
    "emulate", "EmulationResult", "EmulatorInputError", "import_qkeras", "import_qonnx", "QKerasImportError",
    "export_verilog", "VerilogConfig",
]

_LAZY = {
    "emulate": ("emulator", "emulate"),
    "EmulationResult": ("emulator", "EmulationResult"),
    "EmulatorInputError": ("emulator", "EmulatorInputError"),
    "QKerasImportError": ("import_qkeras", "QKerasImportError"),
    "export_verilog": ("verilog", "export_verilog"),
    "VerilogConfig": ("verilog", "VerilogConfig"),
}


class _CallableModule(types.ModuleType):
    """A submodule named like the function it defines (``firmware/import_qkeras.py`` defines ``import_qkeras``).
    Python binds the package attribute to the *module* whenever the submodule is imported
    (``from firmware.import_qkeras import X``), which would shadow the function; calling the module therefore
    calls the function, so ``firmware.import_qkeras(...)`` works either way."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rsplit(".", 1)[1])(*args, **kwargs)


def _bind(name: str) -> Any:
    mod = importlib.import_module(f".{name}", __name__)
    if not isinstance(mod, _CallableModule):
        mod.__class__ = _CallableModule
    fn = getattr(mod, name)
    globals()[name] = fn
    return fn


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{mod}", __name__), attr)
        globals()[name] = value
        return value
    if name in ("import_qkeras", "import_qonnx"):
        return _bind(name)
    raise AttributeError(f"module 'firmware' has no attribute {name!r}")


# both importers are light at import time (TensorFlow / QONNX load inside the functions)
_bind("import_qkeras")
try:
    _bind("import_qonnx")
except ModuleNotFoundError as _e:  # pragma: no cover - the QONNX importer is optional in a partial checkout
    if _e.name != f"{__name__}.import_qonnx":
        raise
