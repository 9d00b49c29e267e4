"""Packing integer codes into the 32-bit words of a Verilog bus (Verilator's layout) and back, vectorised.

A bus of F features of w bits holds feature i at bits [i*w +: w] (two's complement for signed codes); bit k of the
bus is bit k % 32 of word k // 32, so word 0 is the least significant (Verilator's ``VlWide`` / ``IData`` /
``QData`` layout, little-endian words). Features up to 62 bits wide.
"""
from __future__ import annotations

import numpy as np

_M32 = np.uint64(0xFFFFFFFF)


def n_words(width: int) -> int:
    """32-bit words Verilator uses for a port of `width` bits (1 up to 32, 2 up to 64, then ceil(width/32))."""
    return max(1, -(-width // 32))


def pack(codes: np.ndarray, width: int, *, total: int | None = None) -> np.ndarray:
    """(n, F) integer codes -> (n, words) uint32 with feature i at bits [i*width +: width]."""
    c = np.asarray(codes)
    if c.ndim == 1:
        c = c[:, None]
    if width > 62:
        raise ValueError(f"features wider than 62 bits are not supported (got {width})")
    n, F = c.shape
    bits = total if total is not None else F * width
    out = np.zeros((n, n_words(bits)), dtype=np.uint64)
    mask = np.uint64((1 << width) - 1)
    cu = (c.astype(np.int64).view(np.uint64)) & mask
    for i in range(F):
        o = i * width
        k, b = divmod(o, 32)
        v = cu[:, i]
        out[:, k] |= (v << np.uint64(b)) & _M32
        done = 32 - b
        j = k + 1
        while done < width:
            out[:, j] |= (v >> np.uint64(done)) & _M32
            done += 32
            j += 1
    return out.astype(np.uint32)


def unpack(words: np.ndarray, F: int, width: int, signed: bool) -> np.ndarray:
    """(n, words) uint32 -> (n, F) int64 codes (sign-extended when `signed`)."""
    w = np.asarray(words).astype(np.uint64)
    if w.ndim == 1:
        w = w[:, None]
    if width > 62:
        raise ValueError(f"features wider than 62 bits are not supported (got {width})")
    n = w.shape[0]
    out = np.zeros((n, F), dtype=np.uint64)
    mask = np.uint64((1 << width) - 1)
    for i in range(F):
        o = i * width
        k, b = divmod(o, 32)
        v = w[:, k] >> np.uint64(b)
        got = 32 - b
        j = k + 1
        while got < width:
            v |= w[:, j] << np.uint64(got)
            got += 32
            j += 1
        out[:, i] = v & mask
    res = out.astype(np.int64)
    if signed:
        half = 1 << (width - 1)
        res = np.where(res >= half, res - (1 << width), res)
    return res


def to_ints(words: np.ndarray) -> list[int]:
    """(n, words) uint32 -> Python ints (for cocotb, which writes whole buses as integers)."""
    w = np.ascontiguousarray(np.asarray(words, dtype="<u4"))
    nb = w.shape[1] * 4
    raw = w.tobytes()
    return [int.from_bytes(raw[r * nb:(r + 1) * nb], "little") for r in range(w.shape[0])]


def from_ints(values: list[int], width: int) -> np.ndarray:
    """Python ints -> (n, words) uint32."""
    nw = n_words(width)
    raw = b"".join(int(v).to_bytes(nw * 4, "little") for v in values)
    return np.frombuffer(raw, dtype="<u4").reshape(len(values), nw).astype(np.uint32)
