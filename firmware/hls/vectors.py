"""Verification vectors (raw hardware-unit input codes) for the C simulation and the testbench.

Three sets:
  zero_bias  toy background events (trigger.toy) in L1 hardware units, the bulk of what the trigger sees
  signal     toy signal events (harder, more objects): the high-score tail, where the trigger bits flip
  edge       vectors built to reach the corners of the arithmetic: uniformly random codes over the whole input
             format (input-quantizer and hidden-layer saturation), extreme pT codes with random objects present
             or absent (gate on/off, saturation deep in the network), all-min / all-max / all-zero events, single
             features at the extremes, and, where the input quantizer drops fraction bits, exact rounding ties
For models whose input is not the 57-feature L1 layout, zero_bias / signal fall back to Gaussian random codes.
Everything is deterministic in `seed`.
"""
from __future__ import annotations

import numpy as np

from l1ad.firmware.ir import QModel

SET_FRACTIONS = (("zero_bias", 0.4), ("signal", 0.3), ("edge", 0.3))


def split_counts(n: int) -> dict[str, int]:
    counts = {k: int(n * f) for k, f in SET_FRACTIONS}
    counts["zero_bias"] += n - sum(counts.values())
    return counts


def _physics(q: QModel, n: int, signal: bool, seed: int) -> np.ndarray:
    if q.n_inputs == 57 and q.input.format.contains(np.array([65535, -460])).all():
        from l1ad.trigger.l1units import hw_inputs
        from l1ad.trigger.toy import toy_events

        return hw_inputs(toy_events(n, signal=signal, seed=seed).objects).astype(np.int64)
    rng = np.random.default_rng(seed)
    f = q.input.format
    scale = max(1.0, (f.max_code - max(f.min_code, -f.max_code)) / (8.0 if signal else 32.0))
    return np.clip(np.round(rng.normal(0, scale, (n, q.n_inputs))), f.min_code, f.max_code).astype(np.int64)


def _ties(q: QModel, n: int, rng: np.random.Generator) -> np.ndarray:
    """Inputs whose scaled value lies exactly half-way between two codes of the input quantizer (where the
    quantizer drops fraction bits for a feature); other features random."""
    f = q.input.format
    sub, lsh = q.input.scaled_code_params()
    drop = q.scaled_format.frac - q.input_quantizer.frac
    x = rng.integers(max(f.min_code, -4096), min(f.max_code, 4096) + 1, size=(n, q.n_inputs))
    if drop <= 0:
        return x
    for j in range(q.n_inputs):
        # scaled code = (x - sub) << lsh; a tie needs its low `drop` bits == 100..0
        k = drop - int(lsh[j])  # bits of (x - sub) below the quantizer's LSB
        if k <= 0:
            continue  # this feature lands on the quantizer grid: no rounding possible
        base = rng.integers(-64, 64, size=n) << k
        x[:, j] = np.clip(int(sub[j]) + base + (1 << (k - 1)), f.min_code, f.max_code)
    return x


def _edge(q: QModel, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 7919)
    f = q.input.format
    lo, hi = f.min_code, f.max_code
    parts = []
    m = max(1, n // 4)
    parts.append(rng.integers(lo, hi + 1, size=(m, q.n_inputs)))  # anything the port can carry
    big = rng.integers(lo, hi + 1, size=(m, q.n_inputs))
    if q.n_inputs == 57:  # L1 layout: extreme pT with random presence, eta/phi within their hardware ranges
        pt = np.where(rng.random((m, 19)) < 0.5, 0, np.exp(rng.uniform(0, np.log(max(2, hi)), (m, 19))).astype(np.int64))
        big[:, 0::3] = np.clip(pt, lo, hi)
        big[:, 1::3] = rng.integers(-460, 461, size=(m, 19))
        big[:, 2::3] = rng.integers(-288, 288, size=(m, 19))
    parts.append(big)
    special = [np.full(q.n_inputs, lo), np.full(q.n_inputs, hi), np.zeros(q.n_inputs, dtype=np.int64),
               np.full(q.n_inputs, -1), np.ones(q.n_inputs, dtype=np.int64)]
    for j in range(q.n_inputs):
        for v in (lo, hi):
            e = np.zeros(q.n_inputs, dtype=np.int64)
            e[j] = v
            if q.n_inputs == 57 and j % 3:
                e[3 * (j // 3)] = 1  # the feature's object present: it counts in the score
            special.append(e)
    parts.append(np.array(special, dtype=np.int64))
    parts.append(_ties(q, m, rng))
    x = np.concatenate(parts)
    rest = n - len(x)
    if rest > 0:
        x = np.concatenate([x, rng.integers(lo, hi + 1, size=(rest, q.n_inputs))])
    return np.clip(x[:n], lo, hi).astype(np.int64)  # e.g. the all -1 event of an unsigned input format


def make_vectors(q: QModel, n: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """{set name: (n_set, n_inputs) int64 raw input codes}, n events in total (see module doc)."""
    counts = split_counts(int(n))
    out = {
        "zero_bias": _physics(q, counts["zero_bias"], False, seed),
        "signal": _physics(q, counts["signal"], True, seed + 1),
        "edge": _edge(q, counts["edge"], seed + 2),
    }
    return {k: v for k, v in out.items() if len(v)}
