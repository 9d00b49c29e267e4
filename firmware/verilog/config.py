"""Configuration of the Verilog generator (pydantic)."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

BX_NS = 25.0  # LHC bunch-crossing period (40 MHz)


class VerilogConfig(BaseModel):
    """How the RTL is generated.

    Pipelining: every block (input scaling, each dense layer, the score, the comparators) is fully unrolled
    and accepts a new event every clock (II=1). Inside a block a register stage is inserted after every
    ``levels_per_stage`` logic levels (one adder-tree level, one rounding adder, one saturation mux, one relu mux
    each count as a level; a variable multiplier counts ``mult_levels``); ``0`` puts no registers inside blocks.
    ``register_blocks`` adds a register at each block's output ("registers per layer"); without it the stages are
    packed across block boundaries (a stage may end inside the next module), which gives the lowest latency for
    the same depth per stage. The latency in clock cycles follows from these choices and is reported (and checked
    by co-simulation).
    """

    model_config = ConfigDict(extra="forbid")

    top: str = Field("l1ad_trigger", description="Name of the top module (prefix of every generated module).")
    clock_mhz: float = Field(240.0, gt=0, description="Target clock for the latency report.")
    levels_per_stage: int = Field(3, ge=0, description="Logic levels between pipeline registers inside a block (0: none).")
    register_blocks: bool = Field(False, description="Register every block's output (else pack stages across blocks).")
    register_input: bool = Field(True, description="Register the raw input bus at the top before any logic.")
    multiplier: Literal["shiftadd", "mult"] = Field(
        "shiftadd",
        description="Constant-coefficient products: canonical-signed-digit shift-adds flattened into the adder "
        "trees ('shiftadd', no DSPs), or '*' by a constant (synthesis infers DSPs or LUT multipliers).")
    cse: bool = Field(
        True, description="Share shift-add subexpressions across the neurons of a layer (firmware.verilog.cse); "
        "the adder trees keep their minimum depth either way.")
    cse_slack: int = Field(
        1, ge=0, le=4, description="Adder-tree levels per layer beyond the minimum that sharing may use: more "
        "shared subexpressions, fewer adders and LUTs, each layer that many levels deeper (bench encoder: 5% fewer "
        "adders for 1 level). Left at its default, 0 is used instead when 1 misses budget_ns.")
    offset_binary: bool = Field(
        False, description="Adder trees on non-negative (offset-binary) operands (firmware.verilog.cse."
        "sum_terms_offset): signed inputs enter with the MSB inverted, negative digits as inverted bits, the "
        "constants tracked exactly and added once per neuron with the bias; no operand is sign-extended and no adder "
        "subtracts, each adder an instance of one more module (<top>_uadd.v). Yosys: about 4% fewer LUTs, but an "
        "inverter cell per inverted operand bit that it does not fold into the adder's LUT (LUT+INV about 25% more on "
        "the bench's encoder); one more logic level per layer.")
    square: Literal["mult", "lut"] = Field(
        "mult", description="Score squares: '*' (DSP inference) or AND-array partial products in the score adder tree.")
    mult_levels: int = Field(2, ge=1, description="Logic levels a variable multiplier is counted as.")
    expose_outputs: bool = Field(
        False, description="Also output the network outputs (y_out), delayed to line up with the score.")
    budget_ns: float = Field(50.0, gt=0, description="Latency budget to report against (AXOL1TL: 2 bunch crossings).")
    meet_budget: bool = Field(
        False, description="Choose levels_per_stage: the deepest stages the clock allows under the logic-level model "
        "(generator.max_levels_at); error with the best reachable latency if that misses budget_ns.")

    @field_validator("top")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,40}", v):
            raise ValueError(f"top module name {v!r} is not a simple Verilog identifier")
        return v

    @property
    def period_ns(self) -> float:
        return 1000.0 / self.clock_mhz
