"""The anomaly-score contract. The firmware reproduces these bit for bit.

AE score   = sum_{j=0}^{56} m_j * (x_j - xhat_j)**2          (no division; training may divide by 57)
    x     the quantized scaled input the network sees: input_format.quantize(scaler.transform(x_hw))
    xhat  the quantized decoder output (on the output quantizer's grid)
    m_j   1 iff the object that feature j belongs to has hardware pT code > 0 in x_hw (MET row included)
VAE score  = sum_{i} mu_i**2 over the latent means mu (the quantized encoder output; decoder not on chip)

Both are computed here in float64, which is exact: every term is a product of two fixed-point numbers of at most
~24 significant bits and the sums have at most 57 terms, far inside float64's 53-bit significand, so summation
order does not matter. `score_format` gives the fixed-point type that holds any score without rounding or
overflow, for thresholds expressed on the hardware grid.
"""
from __future__ import annotations

import math

import numpy as np

from l1ad.trigger.events import N_FEATURES, N_INPUTS
from l1ad.trigger.models.quant import QuantFormat


def input_mask_hw(x_hw: np.ndarray) -> np.ndarray:
    """(N, 57) bool: feature j is counted iff the pT code of its object (column 3*(j//3)) is > 0."""
    x = np.asarray(x_hw)
    if x.ndim != 2 or x.shape[1] != N_INPUTS:
        raise ValueError(f"expected hardware inputs of shape (N, {N_INPUTS}), got {x.shape}")
    return np.repeat(x[:, 0::N_FEATURES] > 0, N_FEATURES, axis=1)


def masked_sq_error(x: np.ndarray, xhat: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sum_j mask_j * (x_j - xhat_j)**2 per event, float64 (N,)."""
    x = np.asarray(x, dtype=np.float64)
    xhat = np.asarray(xhat, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if not (x.shape == xhat.shape == mask.shape) or x.ndim != 2:
        raise ValueError(f"x, xhat and mask must share one (N, F) shape; got {x.shape}, {xhat.shape}, {mask.shape}")
    d = x - xhat
    return np.where(mask, d * d, 0.0).sum(axis=1)


def mu_squared(mu: np.ndarray) -> np.ndarray:
    """sum_i mu_i**2 per event, float64 (N,)."""
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 2:
        raise ValueError(f"mu must have shape (N, latent), got {mu.shape}")
    return (mu * mu).sum(axis=1)


def score_format(kind: str, input_format: QuantFormat, output_format: QuantFormat, n_terms: int) -> QuantFormat:
    """Unsigned fixed-point format holding every possible score exactly.

    AE: x on `input_format`, xhat on `output_format`, n_terms = number of input features.
    VAE: mu on `output_format` (input_format unused), n_terms = latent size.
    """
    if kind == "ae":
        frac = max(input_format.frac, output_format.frac)
        largest_diff = max(input_format.max - output_format.min, output_format.max - input_format.min)
    elif kind == "vae":
        frac = output_format.frac
        largest_diff = max(-output_format.min, output_format.max)
    else:
        raise ValueError(f"unknown score kind {kind!r}")
    largest = n_terms * largest_diff**2
    integer = max(1, math.ceil(math.log2(largest + 2.0 ** (-2 * frac))))
    return QuantFormat(bits=integer + 2 * frac, integer=integer, signed=False)
