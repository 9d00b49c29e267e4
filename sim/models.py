"""Small QModels for RTL tests, fuzzing and benchmarks (random integer weights, chosen formats).

``random_qmodel`` draws a whole network description from a NumPy Generator: layer widths, bit widths, rounding and
overflow modes, activations, input scaling, score kind and thresholds. It is the generator the hypothesis fuzzer
(tests/test_cosim_fuzz.py) samples from, and ``l1_autoencoder`` builds the full-size 57-in AE / VAE encoder.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from l1ad.firmware.fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedFormat
from l1ad.firmware.ir import DenseLayer, InputSpec, QModel, ScoreSpec, default_gate


def _fit_fmt(rng: np.random.Generator, lo: int, hi: int, frac: int, *, signed: bool | None = None, slack=(-3, 1),
             fbits=(0, 5), max_width: int = 16, modes: bool = True) -> FixedFormat:
    """A format sized around the values [lo, hi] (codes at `frac`): integer bits from the magnitude plus a random
    slack (negative slack: overflow happens), random fraction bits (fewer than `frac`: rounding happens)."""
    mag = max(abs(lo), abs(hi), 1)
    ibits = max(1, int(np.ceil(np.log2(mag + 1))) - frac)  # integer bits of the magnitude
    s = (lo < 0 or bool(rng.integers(0, 2))) if signed is None else signed
    i = ibits + (1 if s else 0) + int(rng.integers(slack[0], slack[1] + 1))
    f = int(rng.integers(min(fbits), max(fbits) + 1))
    w = max(2, min(max_width, i + f))
    i = min(i, w + 2)
    r = str(rng.choice(ROUNDING_MODES)) if modes else "TRN"
    o = str(rng.choice(OVERFLOW_MODES)) if modes else "WRAP"
    return FixedFormat(w, i, s, r, o)


def random_qmodel(rng: np.random.Generator, *, n_in: int | None = None, hidden: Sequence[int] | None = None,
                  score: str | None = "random", narrow_acc: float = 0.3, objects: bool = False,
                  n_thresholds: int | None = None, name: str = "fuzz") -> QModel:
    """A random small QModel. n_in defaults to a multiple of 3 (objects of pT, eta, phi) in [3, 9]; hidden widths
    in [1, 6]; formats sized around each tensor's actual range with a random slack (so that some values overflow
    and most do not) and random rounding / overflow modes; with probability `narrow_acc` a layer or the score gets
    a narrow (rounding and saturating / wrapping) accumulator, exercising the hls4ml sequential order."""
    if n_in is None:
        n_in = 3 * int(rng.integers(1, 4))
    if hidden is None:
        hidden = [int(rng.integers(1, 7)) for _ in range(int(rng.integers(1, 3)))]
    kind = str(rng.choice(["mse", "mu2", "none"])) if score == "random" else (score or "none")
    sizes = list(hidden) + ([n_in] if kind == "mse" else [])
    in_signed = bool(rng.integers(0, 2))
    w_in = int(rng.integers(4, 11))
    fin = FixedFormat(w_in, w_in + int(rng.integers(-2, 3)), in_signed)  # fraction bits -2..2
    offset = rng.integers(-3, 4, size=n_in) << max(0, -fin.frac) if rng.random() < 0.6 else np.zeros(n_in, dtype=np.int64)
    shift = rng.integers(-1, 4, size=n_in) if rng.random() < 0.7 else np.zeros(n_in, dtype=np.int64)
    inp = InputSpec(fin, offset, shift)
    sf = inp.scaled_format()
    slo, shi = inp.scaled_bounds()
    xq = _fit_fmt(rng, min(slo), max(shi), sf.frac, slack=(-2, 1), fbits=(0, 4), max_width=12)
    layers: list[DenseLayer] = []
    prev = n_in
    for li, n in enumerate(sizes):
        ww, wb = int(rng.integers(2, 8)), int(rng.integers(2, 10))
        wf = FixedFormat(ww, int(rng.integers(0, 3)) if rng.random() < 0.85 else ww + 1, True)  # some with F < 0
        bf = FixedFormat(wb, int(rng.integers(0, 6)) if rng.random() < 0.85 else wb + 2, True)
        W = rng.integers(wf.min_code, wf.max_code + 1, size=(prev, n))
        W[rng.random(W.shape) < 0.2] = 0
        b = rng.integers(bf.min_code, bf.max_code + 1, size=n)
        act = str(rng.choice(["linear", "relu"]))
        probe = QModel(input=inp, input_quantizer=xq,
                       layers=layers + [DenseLayer(f"dense{li + 1}", W, wf, b, bf, act, None, None)], name="probe")
        L = probe.layers[-1]
        ab = probe.tensor_bounds()[f"{L.name}.accum"]
        lo, hi = min(ab[0]), max(ab[1])
        fa = L.accum_format.frac
        if act == "relu":
            lo = max(lo, 0)
        of = _fit_fmt(rng, lo, max(hi, lo + 1), fa, signed=None if act == "linear" else bool(rng.integers(0, 2)))
        acc = None
        if rng.random() < narrow_acc:
            acc = _fit_fmt(rng, min(ab[0]), max(ab[1]), fa, signed=True, slack=(-2, 1), fbits=(max(0, fa - 3), fa),
                           max_width=20)
        layers.append(DenseLayer(f"dense{li + 1}", W, wf, b, bf, act, of, acc))
        prev = n
    sc = None
    if kind in ("mse", "mu2"):
        gate = None
        if kind == "mse" and (objects or rng.random() < 0.7):
            gate = tuple(3 * (j // 3) for j in range(n_in))
        base = QModel(input=inp, input_quantizer=xq, layers=layers, score=ScoreSpec(kind, gate=gate), name="probe")
        an = base.score_analysis()
        bnd = base.tensor_bounds()
        diff = None
        if kind == "mse" and rng.random() < 0.5:
            ed = an["exact_diff"]
            diff = _fit_fmt(rng, ed.min_code, ed.max_code, ed.frac, signed=True, slack=(-2, 0), max_width=12)
        sq = acc = out = None
        probe = QModel(input=inp, input_quantizer=xq, layers=layers, score=ScoreSpec(kind, gate=gate, diff_format=diff),
                       name="probe")
        es = probe.score_analysis()["exact_square"]
        if rng.random() < 0.5:
            sq = _fit_fmt(rng, 0, es.max_code // 2 + 1, es.frac, signed=False, slack=(-1, 1), fbits=(0, 4), max_width=18)
        probe = QModel(input=inp, input_quantizer=xq, layers=layers,
                       score=ScoreSpec(kind, gate=gate, diff_format=diff, square_format=sq), name="probe")
        ea = probe.score_analysis()["exact_accum"]
        if rng.random() < narrow_acc:
            acc = _fit_fmt(rng, 0, ea.max_code // 2 + 1, ea.frac, slack=(-2, 0), fbits=(max(0, ea.frac - 2), ea.frac),
                           max_width=20)
        if rng.random() < 0.6:
            out = _fit_fmt(rng, 0, ea.max_code // 2 + 1, ea.frac, slack=(-2, 1), fbits=(0, 3), max_width=18)
        del bnd
        sc = ScoreSpec(kind, gate=gate, diff_format=diff, square_format=sq, accum_format=acc, format=out)
    q = QModel(input=inp, input_quantizer=xq, layers=layers, score=sc, name=name)
    if sc is not None:
        f = q.score.format
        k = int(rng.integers(1, 4)) if n_thresholds is None else n_thresholds
        thr = tuple(int(t) for t in rng.integers(f.min_code - 1, max(f.min_code, f.max_code // 4) + 1, size=k))
        q = q.with_thresholds(thr)
    return q


def l1_autoencoder(sizes: Sequence[int] = (32, 16, 8, 16, 32), *, seed: int = 0, kind: str = "mse",
                   weight_bits: int = 6, act_bits: int = 10, input_format: str = "ap_int<18>",
                   thresholds: Sequence[int] | None = None, name: str | None = None) -> QModel:
    """A full-size L1 anomaly-detection network with random (sparse-ish) integer weights: 57 inputs (19 objects x
    pT, eta, phi in hardware units), hidden `sizes`, then 57 outputs and the masked MSE score (kind "mse"), or
    the encoder only with the sum of squared latent means (kind "mu2"). QKeras-like formats: weights
    ap_fixed<weight_bits,1>, activations ap_ufixed/ap_fixed<act_bits,6,RND_CONV,SAT>."""
    rng = np.random.default_rng(seed)
    n = 57
    fin = FixedFormat.parse(input_format)
    # pT codes up to 2^16, eta/phi up to ~2^9: scale every feature down to O(1..64)
    shift = np.array([10 if j % 3 == 0 else 4 for j in range(n)])
    inp = InputSpec(fin, np.zeros(n, dtype=np.int64), shift)
    xq = FixedFormat(act_bits + 2, 8, True, "RND_CONV", "SAT")
    wf = FixedFormat(weight_bits, 1, True)
    bf = FixedFormat(weight_bits + 4, 4, True)
    layers = []
    prev = n
    all_sizes = list(sizes) + ([n] if kind == "mse" else [])
    for li, m in enumerate(all_sizes):
        W = rng.integers(wf.min_code, wf.max_code + 1, size=(prev, m))
        W[rng.random(W.shape) < 0.25] = 0
        b = rng.integers(-8, 9, size=m)
        last = li == len(all_sizes) - 1
        act = "linear" if last else "relu"
        of = FixedFormat(act_bits + (2 if last else 0), 6 + (2 if last else 0), not (act == "relu"), "RND_CONV", "SAT")
        layers.append(DenseLayer(f"dense{li + 1}", W, wf, b, bf, act, of))
        prev = m
    if kind == "mse":
        sc = ScoreSpec("mse", gate=default_gate(), square_format=None, format=FixedFormat(18, 14, False, "TRN", "SAT"))
    else:
        sc = ScoreSpec("mu2", format=FixedFormat(18, 12, False, "TRN", "SAT"))
    q = QModel(input=inp, input_quantizer=xq, layers=layers, score=sc, name=name or f"l1_{kind}_{'-'.join(map(str, sizes))}")
    sf = q.score.format
    thr = thresholds if thresholds is not None else (sf.max_code // 64, sf.max_code // 16)
    return q.with_thresholds(thr)


def edge_vectors(qm: QModel, rng: np.random.Generator | None = None) -> np.ndarray:
    """Raw input codes that exercise the corners: all zero, every feature at its min / max code, alternating
    extremes, single hot features, and rounding ties of the input scaling (x - offset an odd multiple of half an
    LSB of the quantizer). Returns (N, n_inputs) int64 codes of the input format."""
    rng = rng or np.random.default_rng(0)
    f = qm.input.format
    n = qm.n_inputs
    lo, hi = f.min_code, f.max_code
    rows: list[Any] = [np.zeros(n), np.full(n, lo), np.full(n, hi), np.full(n, -1 if f.signed else 1), np.ones(n)]
    alt = np.where(np.arange(n) % 2 == 0, lo, hi)
    rows += [alt, np.where(np.arange(n) % 2 == 0, hi, lo)]
    for j in range(n):
        for v in (lo, hi, 1):
            r = np.zeros(n)
            r[j] = v
            rows.append(r)
    # ties of the input quantizer: (x - sub) << lsh lands on k + 1/2 quantizer LSBs
    sub, lsh = qm.input.scaled_code_params()
    drop = qm.scaled_format.frac - qm.input_quantizer.frac
    for _ in range(16):
        r = np.zeros(n, dtype=object)
        for j in range(n):
            s = drop - int(lsh[j])  # fraction bits dropped from (x - sub) itself
            k = int(rng.integers(-8, 9))
            if s >= 1:
                v = int(sub[j]) + (k << s) + (1 << (s - 1))
            else:
                v = int(sub[j]) + k
            r[j] = min(max(v, lo), hi)
        rows.append(r)
    # random full-range vectors (overflow / saturation everywhere)
    rows += list(rng.integers(lo, hi + 1, size=(32, n)))
    out = np.array([[int(v) for v in r] for r in rows], dtype=np.int64)
    return np.clip(out, lo, hi)
