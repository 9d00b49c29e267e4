"""Configuration of the HLS export (pydantic): target part and clock, I/O type and strategy."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class HLSConfig(BaseModel):
    """What the exported HLS project targets. Only io_parallel + Latency is supported (and verified): the
    score block and comparators are generated for fully partitioned arrays, and the bit-exactness checks cover
    exactly this configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: top-level function and project name (a C identifier)
    project_name: str = "l1ad_trigger"
    part: str = "xcvu13p-flga2577-2-e"
    #: clock period in ns (4.167 ns = 240 MHz, the CMS L1 Global Trigger clock)
    clock_period_ns: float = Field(4.167, gt=0)
    clock_uncertainty: str = "27%"  # the hls4ml Vitis default
    backend: Literal["Vitis"] = "Vitis"
    io_type: Literal["io_parallel"] = "io_parallel"
    strategy: Literal["Latency"] = "Latency"
    #: the top level is pipelined with II=1 and every multiplication unrolled: reuse factor 1 only
    reuse_factor: Literal[1] = 1
    #: test vectors (inputs and expected outputs from the emulator) written to tb_data/ for Vitis csim / cosim
    tb_vectors: int = Field(1000, ge=1)

    @field_validator("project_name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError(f"project_name must be a C identifier, got {v!r}")
        return v

    @property
    def clock_mhz(self) -> float:
        return 1000.0 / self.clock_period_ns
