"""L1 hardware units: the integer grid the Global Trigger sees, and the exact firmware input.

pT in steps of 0.5 GeV, eta in steps of 0.087/8 (an eighth of a calorimeter tower), phi in steps of 2*pi/576,
phi folded into [-pi, pi). The model input vector (N, 57) in hardware units holds these integers (as float32,
exactly representable); the firmware IR takes it as its input format `ap_int<16>`-like codes.
"""
from __future__ import annotations

import numpy as np

PT_LSB = 0.5
ETA_LSB = 0.087 / 8
PHI_LSB = 2 * np.pi / 576
LSB = np.array([PT_LSB, ETA_LSB, PHI_LSB])
#: largest hardware pT code (16-bit unsigned field in the uGT; 32767.5 GeV)
PT_HW_MAX = 65535
ETA_HW_MAX = 460  # |eta| <= 5.0
PHI_HW_HALF = 288  # phi codes lie in [-288, 288)


def to_hw(objects: np.ndarray) -> np.ndarray:
    """Physical (…, 3) pT/eta/phi -> integer hardware codes (int32), rounding half away from zero,
    pT saturated to the 16-bit field, phi wrapped into [-288, 288). Empty slots (pT == 0) stay all zero."""
    o = np.asarray(objects, dtype=np.float64)
    codes = np.empty(o.shape, dtype=np.int64)
    codes[..., 0] = np.minimum(_round_half_away(o[..., 0] / PT_LSB), PT_HW_MAX)
    codes[..., 1] = np.clip(_round_half_away(o[..., 1] / ETA_LSB), -ETA_HW_MAX, ETA_HW_MAX)
    phi = _round_half_away(o[..., 2] / PHI_LSB)
    codes[..., 2] = (phi + PHI_HW_HALF) % (2 * PHI_HW_HALF) - PHI_HW_HALF
    codes[codes[..., 0] == 0] = 0
    return codes.astype(np.int32)


def from_hw(codes: np.ndarray) -> np.ndarray:
    """Integer hardware codes -> physical values on the L1 grid (float32)."""
    return (np.asarray(codes, dtype=np.float64) * LSB).astype(np.float32)


def to_grid(objects: np.ndarray) -> np.ndarray:
    """Snap physical values onto the L1 grid (what the trigger hardware can represent)."""
    return from_hw(to_hw(objects))


def hw_inputs(objects: np.ndarray) -> np.ndarray:
    """The (N, 57) model input in hardware units (float32 holding exact integers)."""
    o = np.asarray(objects)
    return to_hw(o).reshape(o.shape[0], -1).astype(np.float32)


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)
