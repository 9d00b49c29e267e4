"""Vitis HLS export of a QModel (built from the IR alone) and its bit-exact C-simulation check.

    export_hls(qmodel, source=None, out_dir, HLSConfig()) -> HLSProject
        Writes a Vitis HLS project (io_parallel-style ports, pipelined II=1): the network written per IR layer
        (firmware.hls.network: one handler per layer kind; dense layers call hls4ml's nnet::dense_latency, whose
        headers are copied from the installed hls4ml), with the input scaling, score block and threshold
        comparators in the top level (firmware.hls.codegen). `source` (the framework model) is not needed.
    verify_project(project, n) -> report dict (emulator vs C simulation, mismatches per output, timing)
    CSim(project_dir, name).run(x_codes) -> outputs / score / trigger codes of the compiled C simulation
    make_vectors(qmodel, n) -> zero-bias-like, signal-like and edge input codes
Heavy imports happen inside the functions that need them (hls4ml itself is never imported: only its
installed headers are copied).
"""
from __future__ import annotations

from .config import HLSConfig
from .errors import HLSExportError
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
