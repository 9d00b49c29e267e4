"""Fixed-point formats and their exact numpy reference quantizers.

One `QuantFormat` names the grid of a framework quantizer: `bits` in total, `integer` bits left of the binary
point *excluding* the sign bit (the QKeras convention; firmware.fixed.FixedFormat, the general ap_fixed
arithmetic of the firmware, counts the sign in I: `hls_type` gives the equivalent there), so
    signed:   values k * 2**-frac for k in [-2**(bits-1), 2**(bits-1) - 1],  frac = bits - 1 - integer
    unsigned: values k * 2**-frac for k in [0, 2**bits - 1],                  frac = bits - integer
Quantization rounds half to even (QKeras tf.round, Brevitas torch.round, HLS AP_RND_CONV) and saturates
(AP_SAT). These are exactly
    QKeras  quantized_bits(bits, integer, alpha=1)   (signed)  /  quantized_relu(bits, integer)  (unsigned)
    Brevitas Int/Uint quant with a constant power-of-two scale 2**-frac (see trigger.models.brevitas_nets)
    HLS     ap_fixed<bits, integer+1, AP_RND_CONV, AP_SAT>  /  ap_ufixed<bits, integer, AP_RND_CONV, AP_SAT>
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QuantFormat:
    bits: int
    integer: int
    signed: bool = True

    def __post_init__(self) -> None:
        if self.bits < 2:
            raise ValueError(f"fixed-point format needs at least 2 bits, got {self.bits}")

    @property
    def frac(self) -> int:
        """Fractional bits (may be negative: a grid coarser than 1)."""
        return self.bits - self.integer - int(self.signed)

    @property
    def lsb(self) -> float:
        return 2.0 ** (-self.frac)

    @property
    def int_min(self) -> int:
        return -(2 ** (self.bits - 1)) if self.signed else 0

    @property
    def int_max(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def min(self) -> float:
        return self.int_min * self.lsb

    @property
    def max(self) -> float:
        return self.int_max * self.lsb

    def to_int(self, x: np.ndarray) -> np.ndarray:
        """Integer codes (int64) of x on this grid: round half to even, saturate."""
        q = np.round(np.asarray(x, dtype=np.float64) * 2.0**self.frac)  # numpy rounds half to even
        return np.clip(q, self.int_min, self.int_max).astype(np.int64)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """x snapped to the grid (float64, exact): the framework quantizer's forward value."""
        return self.to_int(x) * self.lsb

    def on_grid(self, x: np.ndarray) -> bool:
        """True if every value already lies on the grid and inside the range."""
        x = np.asarray(x, dtype=np.float64)
        return bool(np.array_equal(self.quantize(x), x))

    @property
    def hls_type(self) -> str:
        """The HLS type with the same grid, rounding and saturation."""
        if self.signed:
            return f"ap_fixed<{self.bits},{self.integer + 1},AP_RND_CONV,AP_SAT>"
        return f"ap_ufixed<{self.bits},{self.integer},AP_RND_CONV,AP_SAT>"

    def to_dict(self) -> dict:
        return {"bits": self.bits, "integer": self.integer, "signed": self.signed}

    def __str__(self) -> str:
        return self.hls_type
