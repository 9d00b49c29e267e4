"""Verilog generation from the quantized-model IR, and Yosys resource reports.

``export_verilog(qmodel, out_dir, config)`` writes synthesizable, fully unrolled, pipelined RTL (one event per
clock) with runtime-loadable thresholds; ``generate`` returns it in memory; ``VerilogConfig`` sets pipelining and
arithmetic style; ``synth_report`` runs Yosys ``synth_xilinx -family xcup`` and counts LUT / FF / DSP / CARRY.
"""
from .config import VerilogConfig
from .generator import Design, export_verilog, generate

__all__ = ["Design", "VerilogConfig", "export_verilog", "generate", "synth_report"]


def synth_report(*args, **kwargs):  # lazy: keeps the import light
    from .yosys import synth_report as _f

    return _f(*args, **kwargs)
