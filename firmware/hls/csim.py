"""C simulation of an exported project and its bit-for-bit check against the emulator.

The project's ``build_lib.sh`` (g++ with the bundled ap_types; no Vivado/Vitis needed) compiles
``firmware/<P>.cpp`` (network and top level) and the l1ad bridge into a shared library; ``CSim`` calls its batch function
``l1ad_batch`` on integer codes through ctypes (no per-event Python, no float conversions), split over threads.
``verify`` runs the emulator and the C simulation on the same raw input codes and counts mismatches per output
(network output values, score codes, trigger bits); zero is the only passing result.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l1ad.firmware.ir import QModel

from .errors import HLSExportError

_I64P = ctypes.POINTER(ctypes.c_longlong)
#: the coverage counts (rounding, ties, saturation per tensor) are taken on this many of the verified events
COVERAGE_EVENTS = 40_000
_U8P = ctypes.POINTER(ctypes.c_ubyte)


def build_library(project_dir: str | Path, project_name: str, *, timeout: float = 600) -> Path:
    """Compile the C-simulation library with the project's build_lib.sh; returns the .so path."""
    d = Path(project_dir)
    script = d / "build_lib.sh"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: not an exported l1ad HLS project")
    if shutil.which("g++") is None:
        raise RuntimeError("g++ not found: the C simulation needs a C++ compiler (apt-get install g++)")
    proc = subprocess.run(["bash", "build_lib.sh"], cwd=d, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise HLSExportError(f"C-simulation build failed in {d} (build_lib.sh exit {proc.returncode}):\n{tail}")
    m = re.search(r"^LIB_STAMP=(\S+)", script.read_text(), re.M)
    so = d / "firmware" / (f"{project_name}-{m.group(1)}.so" if m else f"{project_name}.so")
    if not so.is_file():
        cands = sorted((d / "firmware").glob(f"{project_name}-*.so"), key=lambda p: p.stat().st_mtime)
        if not cands:
            raise HLSExportError(f"build_lib.sh in {d} produced no library")
        so = cands[-1]
    return so


@dataclass
class CSimResult:
    outputs_int: np.ndarray  # (N, n_out) int64
    score_int: np.ndarray | None  # (N,) int64
    trigger: np.ndarray  # (N, n_thresholds) bool
    seconds: float


class CSim:
    """The compiled C simulation of one project. ``CSim(project_dir, name)`` builds and loads it."""

    def __init__(self, project_dir: str | Path, project_name: str, *, build: bool = True):
        t0 = time.perf_counter()
        self.project_dir = Path(project_dir)
        so = build_library(self.project_dir, project_name) if build else next((self.project_dir / "firmware").glob(f"{project_name}-*.so"))
        self.compile_seconds = time.perf_counter() - t0
        # a private copy: dlopen caches by path, so a rebuilt library at the same path would not reload
        fd, tmp = tempfile.mkstemp(prefix=f"{project_name}-", suffix=".so")
        os.close(fd)
        shutil.copyfile(so, tmp)
        try:
            self._lib = ctypes.CDLL(tmp)
        finally:
            os.unlink(tmp)  # the mapping stays valid
        self._lib.l1ad_batch.restype = ctypes.c_long
        self._lib.l1ad_batch.argtypes = [ctypes.c_long, _I64P, _I64P, _I64P, _U8P]
        dims = [ctypes.c_int() for _ in range(4)]
        self._lib.l1ad_shape(*[ctypes.byref(v) for v in dims])
        self.n_in, self.n_out, has_score, self.n_thresholds = (v.value for v in dims)
        self.has_score = bool(has_score)
        self._warm = False

    def _call(self, x: np.ndarray, y: np.ndarray, s: np.ndarray, t: np.ndarray) -> None:
        n = self._lib.l1ad_batch(len(x), x.ctypes.data_as(_I64P), y.ctypes.data_as(_I64P), s.ctypes.data_as(_I64P),
                                 t.ctypes.data_as(_U8P))
        if n != len(x):  # pragma: no cover
            raise RuntimeError(f"C simulation processed {n} of {len(x)} events")

    def run(self, x_codes: Any, *, threads: int | None = None) -> CSimResult:
        """Raw input codes (N, n_in) -> outputs, score and trigger codes from the C simulation."""
        x = np.ascontiguousarray(np.asarray(x_codes, dtype=np.int64))
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"C simulation input must have shape (N, {self.n_in}), got {x.shape}")
        n = len(x)
        y = np.zeros((n, self.n_out), dtype=np.int64)
        s = np.zeros(max(n, 1), dtype=np.int64)
        t = np.zeros((max(n, 1), max(self.n_thresholds, 1)), dtype=np.uint8)
        t0 = time.perf_counter()
        if n and not self._warm:  # the first call loads the weights (static state): do it single-threaded
            self._call(x[:1], y[:1], s[:1], t[:1])
            self._warm = True
        k = max(1, min(threads or _cores(), n // 2048 or 1))
        bounds = np.linspace(0, n, k + 1).astype(int)
        if k == 1:
            self._call(x, y, s, t)
        else:
            def work(a: int, b: int) -> None:
                self._call(x[a:b], y[a:b], s[a:b], t[a:b])

            ths = [threading.Thread(target=work, args=(int(a), int(b))) for a, b in zip(bounds[:-1], bounds[1:])]
            for th in ths:
                th.start()
            for th in ths:
                th.join()
        dt = time.perf_counter() - t0
        return CSimResult(outputs_int=y, score_int=s[:n] if self.has_score else None,
                          trigger=t[:n, :self.n_thresholds].astype(bool), seconds=dt)


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------- coverage
def _ties(codes: np.ndarray, drop: int) -> int:
    if drop <= 0:
        return 0
    c = np.asarray(codes)
    if c.dtype == object:
        c = c.astype(np.int64)
    return int(np.count_nonzero((c & ((1 << drop) - 1)) == (1 << (drop - 1))))


def coverage(q: QModel, x_values: np.ndarray, *, chunk: int = 16384) -> dict[str, dict[str, int]]:
    """What the vectors exercise, per requantization in the network: values that were rounded ('inexact'),
    that hit an exact rounding tie ('ties'), and that the overflow mode changed ('overflow')."""
    from l1ad.firmware.emulator import emulate

    cov: dict[str, dict[str, int]] = {}
    for a in range(0, len(x_values), chunk):
        r = emulate(q, x_values[a:a + chunk], keep=True)
        for k, v in r.stats.items():
            c = cov.setdefault(k, {"inexact": 0, "ties": 0, "overflow": 0})
            c["inexact"] += int(v.get("inexact", 0))
            c["overflow"] += int(v.get("overflow", 0))
        tens = r.tensors
        cov.setdefault("xq", {"inexact": 0, "ties": 0, "overflow": 0})["ties"] += _ties(
            tens["scaled"], q.scaled_format.frac - q.input_quantizer.frac)
        for L in q.layers:
            acc = tens[f"{L.name}.accum"]
            if L.activation == "relu":
                acc = np.where(np.asarray(acc) > 0, acc, 0)
            cov.setdefault(f"{L.name}.out", {"inexact": 0, "ties": 0, "overflow": 0})["ties"] += _ties(
                acc, L.accum_format.frac - L.output_format.frac)
    return cov


# ---------------------------------------------------------------------------------------------- verification
def verify(q: QModel, sim: CSim, sets: dict[str, np.ndarray], *, with_coverage: bool = True,
           max_examples: int = 10) -> dict:
    """Emulator vs C simulation on raw input codes, per set; returns the report (module doc)."""
    from l1ad.firmware.emulator import emulate

    if (sim.n_in, sim.n_out, sim.has_score, sim.n_thresholds) != (q.n_inputs, q.n_outputs, q.score is not None,
                                                                  len(q.thresholds) if q.score is not None else 0):
        raise HLSExportError("the compiled project does not match the QModel (ports differ): re-export it")
    fin = q.input.format
    rep: dict[str, Any] = {"n_events": 0, "sets": {}, "per_set": {}, "examples": []}
    tot = {"outputs": 0, "score": 0, "trigger": 0}
    t_emu = t_sim = 0.0
    for name, x in sets.items():
        x = np.asarray(x, dtype=np.int64)
        xv = fin.to_float(x)
        t0 = time.perf_counter()
        e = emulate(q, xv, strict=True)
        t_emu += time.perf_counter() - t0
        c = sim.run(x)
        t_sim += c.seconds
        bad_out = c.outputs_int != e.outputs_int
        mm = {"outputs": int(bad_out.sum()), "score": 0, "trigger": 0}
        bad_ev = bad_out.any(axis=1)
        if e.score_int is not None:
            bad_s = c.score_int != np.asarray(e.score_int, dtype=np.int64)
            mm["score"] = int(bad_s.sum())
            bad_ev |= bad_s
            bad_t = c.trigger != e.trigger
            mm["trigger"] = int(bad_t.sum())
            bad_ev |= bad_t.any(axis=1)
        for i in np.flatnonzero(bad_ev)[: max(0, max_examples - len(rep["examples"]))]:
            rep["examples"].append({
                "set": name, "event": int(i), "input": x[i].tolist(),
                "outputs_emulator": e.outputs_int[i].tolist(), "outputs_csim": c.outputs_int[i].tolist(),
                **({"score_emulator": int(e.score_int[i]), "score_csim": int(c.score_int[i]),
                    "trigger_emulator": e.trigger[i].astype(int).tolist(), "trigger_csim": c.trigger[i].astype(int).tolist()}
                   if e.score_int is not None else {}),
            })
        rep["per_set"][name] = {"n_events": len(x), "mismatches": mm, "events_with_mismatch": int(bad_ev.sum()),
                                "trigger_rate": e.trigger.mean(axis=0).tolist() if e.trigger.size else []}
        rep["sets"][name] = len(x)
        rep["n_events"] += len(x)
        for k in tot:
            tot[k] += mm[k]
    n = rep["n_events"]
    rep["mismatches"] = tot
    rep["mismatches_total"] = sum(tot.values())
    rep["events_with_mismatch"] = sum(v["events_with_mismatch"] for v in rep["per_set"].values())
    rep["compared_values"] = {"outputs": n * q.n_outputs, "score": n if q.score is not None else 0,
                              "trigger": n * (len(q.thresholds) if q.score is not None else 0)}
    rep["timing"] = {
        "compile_s": round(sim.compile_seconds, 3),
        "csim_s": round(t_sim, 3), "csim_events_per_s": round(n / t_sim) if t_sim > 0 else None,
        "emulator_s": round(t_emu, 3), "emulator_events_per_s": round(n / t_emu) if t_emu > 0 else None,
        "threads": _cores(),
    }
    if with_coverage:  # on at most COVERAGE_EVENTS events, spread over the sets in proportion
        frac = min(1.0, COVERAGE_EVENTS / max(n, 1))
        sub = [np.asarray(v, dtype=np.int64)[: max(1, int(len(v) * frac))] for v in sets.values()]
        rep["coverage_events"] = int(sum(len(v) for v in sub))
        rep["coverage"] = coverage(q, fin.to_float(np.concatenate(sub)))
    rep["passed"] = rep["mismatches_total"] == 0 and n > 0
    return rep
