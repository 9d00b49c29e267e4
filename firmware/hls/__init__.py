"""hls4ml export of a QModel and its bit-exact C-simulation check.

    export_hls(qmodel, source, out_dir, HLSConfig()) -> HLSProject
        source: the QKeras model, or the QONNX model (Brevitas export) the QModel was imported from.
        Writes an hls4ml Vitis project (io_parallel, Latency) whose precisions are the IR's, with the input
        scaling, score block and threshold comparators in the top level (firmware.hls.codegen).
    verify_project(project, n) -> report dict (emulator vs C simulation, mismatches per output, timing)
    CSim(project_dir, name).run(x_codes) -> outputs / score / trigger codes of the compiled C simulation
    make_vectors(qmodel, n) -> zero-bias-like, signal-like and edge input codes
Heavy imports (hls4ml, TensorFlow, qonnx) happen inside the functions that need them.
"""
from __future__ import annotations

from .config import HLSConfig
from .convert import HLSExportError
from .project import HLSProject, export_hls, verify_project

__all__ = ["HLSConfig", "HLSExportError", "HLSProject", "export_hls", "verify_project", "CSim", "make_vectors"]


def __getattr__(name: str):
    if name == "CSim":
        from .csim import CSim

        return CSim
    if name == "make_vectors":
        from .vectors import make_vectors

        return make_vectors
    raise AttributeError(f"module 'l1ad.firmware.hls' has no attribute {name!r}")
