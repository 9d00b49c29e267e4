"""Bit-exact co-simulation of generated RTL against ``firmware.emulate``.

One stream of input rows (one per clock) is built for N input vectors: reset rows first, then the vectors with
random bubbles (``in_valid = 0`` rows carrying garbage on ``x_in``), runtime threshold writes in the middle, and
idle rows to drain the pipeline. Either simulator runs it -- the batch C++ harness (``engine="batch"``, no Python
per clock, for >= 1M vectors) or cocotb through its Verilator runner (``engine="cocotb"``) -- and the same checker
compares every output bit:

* ``out_valid`` in every row equals ``in_valid`` delayed by exactly the design's reported latency;
* in valid rows: ``score``, every ``trigger`` bit (against the thresholds in force at that moment) and, when the
  design exposes them, the network outputs ``y_out``, each against the emulator;
* in rows without a valid output every trigger bit is 0.

``cosim(...)`` returns a JSON-ready report: vectors, mismatches (must be 0), latency, simulation speed.
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l1ad.firmware.fixed import FixedFormat

from .packing import from_ints, pack, to_ints, unpack
from .verilator import RTL, SimError, build_batch, build_cocotb

RESET_ROWS = 2


@dataclass
class Stream:
    """The input rows of one co-simulation run and what each row means."""

    inputs: dict[str, np.ndarray]  # port -> (rows, words) uint32
    in_valid: np.ndarray  # (rows,) bool
    vec_at_row: np.ndarray  # (rows,) vector index or -1
    thr_eff: np.ndarray  # (N, T) threshold codes in force when vector i reaches the comparators
    n_thr_writes: int

    @property
    def rows(self) -> int:
        return int(self.in_valid.shape[0])


def load_design(rtl_dir: str | Path) -> tuple[RTL, Any]:
    """The RTL description and the QModel it was generated from (qmodel.json next to the Verilog)."""
    from l1ad.firmware.ir import QModel

    rtl = RTL.load(rtl_dir)
    qp = Path(rtl_dir) / "qmodel.json"
    if not qp.is_file():
        raise FileNotFoundError(f"{qp}: missing (export_verilog writes it next to the RTL)")
    qm = QModel.load(qp)
    return rtl, qm


def make_stream(rtl: RTL, qm: Any, x_codes: np.ndarray, *, bubble: float = 0.25, thr_writes: int = 3,
                seed: int = 0) -> Stream:
    """Rows for N vectors of raw input codes (N, n_inputs): reset rows, the vectors with random bubbles
    (probability `bubble` of 1-3 idle rows before a vector), `thr_writes` random threshold writes spread over the
    stream, and idle rows to drain the pipeline."""
    rng = np.random.default_rng(seed)
    N = int(x_codes.shape[0])
    L = int(rtl.meta["latency_cycles"])
    fin = qm.input.format
    gaps = np.zeros(N, dtype=np.int64)
    if bubble > 0 and N:
        has = rng.random(N) < bubble
        gaps[has] = rng.integers(1, 4, size=int(has.sum()))
    rows_of_vec = RESET_ROWS + np.arange(N) + np.cumsum(gaps)
    rows = int(rows_of_vec[-1] + 1 if N else RESET_ROWS) + L + 2
    vec_at_row = np.full(rows, -1, dtype=np.int64)
    vec_at_row[rows_of_vec] = np.arange(N)
    in_valid = vec_at_row >= 0
    # x_in: the vectors; garbage (random codes) in bubble and reset rows
    x = rng.integers(fin.min_code, fin.max_code + 1, size=(rows, qm.n_inputs), dtype=np.int64)
    x[rows_of_vec] = x_codes
    inputs = {"rst": (np.arange(rows) < RESET_ROWS).astype(np.uint32), "in_valid": in_valid.astype(np.uint32)}
    T = len(rtl.meta.get("thresholds", [])) if "thr_we" in rtl.meta["ports"] else 0
    thr_eff = np.zeros((N, T), dtype=np.int64)
    n_w = 0
    port_names = {p.name for p in rtl.inputs}
    if T:
        sf = FixedFormat.parse(rtl.meta["score_format"])
        tw = sf.width + 1
        we = np.zeros(rows, dtype=np.uint32)
        addr = np.zeros(rows, dtype=np.uint32)
        data = np.zeros(rows, dtype=np.int64)
        reset = np.clip([int(t) for t in rtl.meta["thresholds"]], sf.min_code - 1, sf.max_code)  # as the RTL clamps
        state = np.tile(np.asarray(reset, dtype=np.int64), (rows, 1))  # register contents during each row
        if thr_writes and rows > RESET_ROWS + L + 4:
            for r in sorted(set(int(r) for r in rng.integers(RESET_ROWS, rows - L - 2, size=thr_writes))):
                k = int(rng.integers(0, T))
                v = int(rng.integers(sf.min_code - 1, sf.max_code + 1))
                we[r], addr[r], data[r] = 1, k, v
                state[r + 1:, k] = v  # written at the edge ending row r
                n_w += 1
        # vector i (row c_i) is compared at the edge ending row c_i + L - 1, with the register value during it
        thr_eff = state[rows_of_vec + L - 1] if N else thr_eff
        inputs["thr_we"] = we
        inputs["thr_addr"] = addr
        inputs["thr_data"] = pack(data[:, None], tw)
    inputs["x_in"] = pack(x, fin.width)
    for k in list(inputs):
        a = inputs[k]
        inputs[k] = a[:, None] if a.ndim == 1 else a
    missing = port_names - set(inputs)
    if missing:
        raise SimError(f"no stimulus for ports {sorted(missing)}")
    return Stream({p.name: inputs[p.name] for p in rtl.inputs}, in_valid, vec_at_row, thr_eff, n_w)


def check(rtl: RTL, qm: Any, stream: Stream, outputs: dict[str, np.ndarray], expected: Any) -> dict[str, Any]:
    """Compare the simulated rows with the emulator; returns counts and the first few differences."""
    L = int(rtl.meta["latency_cycles"])
    rows = stream.rows
    ov = outputs["out_valid"][:, 0].astype(bool)
    exp_valid = np.zeros(rows, dtype=bool)
    exp_valid[L:] = stream.in_valid[:rows - L]
    valid_err = int(np.count_nonzero(ov[1:] != exp_valid[1:]))
    vrows = np.flatnonzero(exp_valid)
    vrows = vrows[vrows >= 1]
    vec = stream.vec_at_row[vrows - L]
    N = int(stream.vec_at_row.max() + 1) if stream.in_valid.any() else 0
    bad = np.zeros(N, dtype=bool)
    fields: dict[str, int] = {}
    details: list[dict] = []

    def cmp(name: str, got: np.ndarray, want: np.ndarray) -> None:
        diff = (got != want).reshape(len(vec), -1).any(axis=1)
        fields[name] = int(diff.sum())
        bad[vec[diff]] = True
        for r in np.flatnonzero(diff)[:3]:
            details.append({"field": name, "vector": int(vec[r]), "got": np.asarray(got[r]).tolist(),
                            "expected": np.asarray(want[r]).tolist()})

    if "score" in outputs:
        sf = FixedFormat.parse(rtl.meta["score_format"])
        got = unpack(outputs["score"][vrows], 1, sf.width, sf.signed)[:, 0]
        cmp("score", got, np.asarray(expected.score_int, dtype=np.int64)[vec])
        if "trigger" in outputs:
            T = stream.thr_eff.shape[1]
            tg = unpack(outputs["trigger"][vrows], T, 1, False)
            want = (np.asarray(expected.score_int, dtype=np.int64)[vec][:, None] > stream.thr_eff[vec]).astype(np.int64)
            cmp("trigger", tg, want)
            idle = np.flatnonzero(~exp_valid)
            idle = idle[idle >= 1]
            fields["trigger_when_invalid"] = int(np.count_nonzero(unpack(outputs["trigger"][idle], T, 1, False)))
    if "y_out" in outputs:
        of = qm.output_format
        got = unpack(outputs["y_out"][vrows], qm.n_outputs, of.width, of.signed)
        cmp("y_out", got, np.asarray(expected.outputs_int, dtype=np.int64)[vec])
    seen = np.zeros(N, dtype=bool)
    seen[vec] = True
    first_in = int(np.flatnonzero(stream.in_valid)[0]) if stream.in_valid.any() else -1
    first_out = int(np.flatnonzero(ov[1:])[0] + 1) if ov[1:].any() else -1
    return {
        "vectors": N,
        "vectors_checked": int(seen.sum()),
        "mismatches": int(bad.sum()) + int((~seen).sum()),
        "mismatch_fields": fields,
        "valid_errors": valid_err,
        "latency_measured": first_out - first_in if first_in >= 0 and first_out >= 0 else None,
        "details": details[:10],
    }


def _expected(qm: Any, x_codes: np.ndarray) -> Any:
    from l1ad.firmware.emulator import emulate

    fin = qm.input.format
    return emulate(qm, fin.to_float(np.asarray(x_codes, dtype=np.int64)), strict=True)


def simulate(rtl: RTL, stream: Stream, *, engine: str = "batch", build_root: str | Path | None = None,
             workdir: str | Path | None = None, expected: Any = None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Run the stream through one simulator; returns outputs per port and timing
    {build_seconds, sim_seconds, cached}. With `expected` (the emulator's result) the cocotb testbench checks
    itself and the number of failed cocotb tests is returned as "cocotb_failed"."""
    if engine == "batch":
        sim = build_batch(rtl, build_root=build_root)
        outs, t = sim.run(stream.inputs, workdir=workdir)
        return outs, {"build_seconds": sim.build_seconds, "sim_seconds": float(t["seconds"]), "cached_build": sim.cached}
    if engine == "cocotb":
        runner, bdir, bsec, cached = build_cocotb(rtl, build_root=build_root)
        with tempfile.TemporaryDirectory(dir=workdir) as td:
            sp, rp = Path(td) / "stim.npz", Path(td) / "resp.npz"
            np.savez(sp, **{k: np.array(to_ints(v), dtype=object) for k, v in stream.inputs.items()})
            env = {"L1AD_COSIM_STIM": str(sp), "L1AD_COSIM_RESP": str(rp),
                   "L1AD_COSIM_OUTPUTS": ",".join(p.name for p in rtl.outputs)}
            if expected is not None:
                import pickle

                ep = Path(td) / "expect.pkl"
                ep.write_bytes(pickle.dumps({"rtl_dir": str(rtl.root), "stream": stream, "expected": expected}))
                env["L1AD_COSIM_EXPECT"] = str(ep)
            t0 = time.perf_counter()
            log = Path(td) / "sim.log"
            try:
                from cocotb.runner import get_results

                xml = runner.test(hdl_toplevel=rtl.top, hdl_toplevel_lang="verilog",  # (a cached build has no sources)
                                  test_module="l1ad.sim.tb_trigger", build_dir=str(bdir), test_dir=td, extra_env=env,
                                  log_file=str(log))
                failed = get_results(Path(xml))[1]
            except SystemExit as e:  # cocotb's runner exits when a test fails (inside pytest)
                m = re.search(r"Failed (\d+) of \d+ tests", str(e))
                if not m:
                    raise SimError(f"cocotb simulation failed: {e}\n{log.read_text()[-3000:] if log.is_file() else ''}") from None
                failed = int(m.group(1))
            except Exception as e:  # the simulator itself failed
                raise SimError(f"cocotb simulation failed: {e}\n{log.read_text()[-3000:] if log.is_file() else ''}") from None
            wall = time.perf_counter() - t0
            if not rp.is_file():
                raise SimError(f"cocotb test did not finish:\n{log.read_text()[-3000:] if log.is_file() else ''}")
            resp = np.load(rp, allow_pickle=True)
            outs = {p.name: from_ints(resp[p.name].tolist(), p.width) for p in rtl.outputs}
            return outs, {"build_seconds": bsec, "sim_seconds": float(resp["seconds"]), "wall_seconds": wall,
                          "cached_build": cached, "cocotb_failed": failed}
    raise ValueError(f"unknown engine {engine!r}; use 'batch' or 'cocotb'")


def cosim(rtl_dir: str | Path, x_codes: np.ndarray, *, engine: str = "batch", bubble: float = 0.25,
          thr_writes: int = 3, seed: int = 0, build_root: str | Path | None = None,
          chunk: int = 1_000_000) -> dict[str, Any]:
    """Co-simulate the RTL in rtl_dir on raw input codes (N, n_inputs) and compare with the emulator.
    Returns the report (``report["mismatches"] == 0`` and ``report["ok"]`` when bit-exact)."""
    rtl, qm = load_design(rtl_dir)
    x = np.asarray(x_codes)
    if x.ndim != 2 or x.shape[1] != qm.n_inputs:
        raise ValueError(f"input vectors must have shape (N, {qm.n_inputs}), got {x.shape}")
    fin = qm.input.format
    xi = np.asarray(x, dtype=np.int64)
    if not np.array_equal(xi, x) or xi.min(initial=0) < fin.min_code or xi.max(initial=0) > fin.max_code:
        raise ValueError(f"input vectors must be integer codes of {fin} (use firmware.emulate(...).input_int)")
    total: dict[str, Any] = {"engine": engine, "rtl": str(rtl_dir), "top": rtl.top,
                             "latency_cycles": int(rtl.meta["latency_cycles"]), "latency_ns": rtl.meta["latency_ns"],
                             "clock_mhz": rtl.meta["clock_mhz"], "vectors": 0, "vectors_checked": 0, "mismatches": 0,
                             "mismatch_fields": {}, "valid_errors": 0, "cycles": 0, "threshold_writes": 0,
                             "sim_seconds": 0.0, "build_seconds": 0.0, "emulate_seconds": 0.0, "details": [],
                             "latency_measured": None}
    for c0 in range(0, max(len(xi), 1), chunk):
        part = xi[c0:c0 + chunk]
        t0 = time.perf_counter()
        exp = _expected(qm, part)
        total["emulate_seconds"] += time.perf_counter() - t0
        stream = make_stream(rtl, qm, part, bubble=bubble, thr_writes=thr_writes, seed=seed + c0)
        outs, t = simulate(rtl, stream, engine=engine, build_root=build_root, expected=exp)
        r = check(rtl, qm, stream, outs, exp)
        if "cocotb_failed" in t:
            total["cocotb_failed"] = total.get("cocotb_failed", 0) + int(t["cocotb_failed"])
        total["vectors"] += r["vectors"]
        total["vectors_checked"] += r["vectors_checked"]
        total["mismatches"] += r["mismatches"]
        total["valid_errors"] += r["valid_errors"]
        for k, v in r["mismatch_fields"].items():
            total["mismatch_fields"][k] = total["mismatch_fields"].get(k, 0) + v
        total["details"] += [dict(d, vector=d["vector"] + c0) for d in r["details"]][: max(0, 10 - len(total["details"]))]
        if total["latency_measured"] is None:
            total["latency_measured"] = r["latency_measured"]
        elif r["latency_measured"] is not None and r["latency_measured"] != total["latency_measured"]:
            total["latency_measured"] = -1
        total["cycles"] += stream.rows
        total["threshold_writes"] += stream.n_thr_writes
        total["sim_seconds"] += t["sim_seconds"]
        total["build_seconds"] += t["build_seconds"]
    s = total["sim_seconds"]
    total["vectors_per_s"] = total["vectors"] / s if s > 0 else None
    total["cycles_per_s"] = total["cycles"] / s if s > 0 else None
    total["ok"] = _ok(total)
    return total


def _ok(r: dict[str, Any]) -> bool:
    """Bit-exact: no mismatching vector, out_valid exactly in_valid delayed by the reported latency, no trigger bit
    outside valid cycles, every vector seen."""
    return (r["mismatches"] == 0 and r["valid_errors"] == 0 and r["mismatch_fields"].get("trigger_when_invalid", 0) == 0
            and r["latency_measured"] == r["latency_cycles"] and r["vectors_checked"] == r["vectors"]
            and r.get("cocotb_failed", 0) == 0)


def _pad(stream: Stream, rows: int) -> Stream:
    """The stream extended with idle rows (no reset, no valid, zero inputs) to `rows` rows."""
    extra = rows - stream.rows
    if extra <= 0:
        return stream
    ins = {k: np.concatenate([v, np.zeros((extra, v.shape[1]), dtype=v.dtype)]) for k, v in stream.inputs.items()}
    return Stream(ins, np.concatenate([stream.in_valid, np.zeros(extra, dtype=bool)]),
                  np.concatenate([stream.vec_at_row, np.full(extra, -1, dtype=np.int64)]), stream.thr_eff,
                  stream.n_thr_writes)


def cosim_many(rtl_dirs: list[str | Path], xs: list[np.ndarray], *, bubble: float = 0.25, thr_writes: int = 3,
               seed: int = 0, build_root: str | Path | None = None) -> list[dict[str, Any]]:
    """Co-simulate several designs (distinct top names) in ONE batch-harness build, each on its own vectors;
    returns one report per design (the same checks as `cosim`). Used by the fuzzer: compile time dominates."""
    from .verilator import bundle

    designs = [load_design(d) for d in rtl_dirs]
    streams, exps = [], []
    for k, ((rtl, qm), x) in enumerate(zip(designs, xs)):
        exps.append(_expected(qm, x))
        streams.append(make_stream(rtl, qm, np.asarray(x, dtype=np.int64), bubble=bubble, thr_writes=thr_writes,
                                   seed=seed + k))
    rows = max(s.rows for s in streams)
    streams = [_pad(s, rows) for s in streams]
    root = Path(build_root) if build_root else Path(tempfile.gettempdir()) / "l1ad-bundles"
    brtl = bundle([r for r, _ in designs], root / f"bundle-{os.getpid()}-{seed}")
    stim = {f"d{i}_{k}": v for i, s in enumerate(streams) for k, v in s.inputs.items()}
    sim = build_batch(brtl, build_root=root)
    outs, t = sim.run(stim)
    reports = []
    for i, ((rtl, qm), s, e) in enumerate(zip(designs, streams, exps)):
        o = {p.name: outs[f"d{i}_{p.name}"] for p in rtl.outputs}
        r = check(rtl, qm, s, o, e)
        r["latency_cycles"] = int(rtl.meta["latency_cycles"])
        r["threshold_writes"] = s.n_thr_writes
        r["ok"] = _ok(r)
        r["build_seconds"] = sim.build_seconds
        r["sim_seconds"] = float(t["seconds"])
        reports.append(r)
    return reports


def default_vectors(qm: Any, n_random: int, *, seed: int = 0, data: np.ndarray | None = None,
                    edge: bool = True) -> np.ndarray:
    """Edge vectors (unless edge=False), then `data` (raw codes), then `n_random` random codes (half over the
    full input range, exercising every overflow path, half small), as one (N, n_inputs) array of input codes."""
    from .models import edge_vectors

    rng = np.random.default_rng(seed)
    fin = qm.input.format
    parts = [edge_vectors(qm, rng)] if edge else [np.zeros((0, qm.n_inputs), dtype=np.int64)]
    if data is not None:
        parts.append(np.asarray(data, dtype=np.int64))
    if n_random:
        # half uniform over the full range, half small magnitudes (the physically common region)
        a = rng.integers(fin.min_code, fin.max_code + 1, size=(n_random // 2, qm.n_inputs))
        small = rng.integers(-64, 65, size=(n_random - n_random // 2, qm.n_inputs))
        parts += [a, np.clip(small, fin.min_code, fin.max_code)]
    return np.concatenate(parts).astype(np.int64)


def events_to_codes(qm: Any, path: str | Path, n: int | None = None) -> np.ndarray:
    """Raw input codes of the first n events of an event file: trigger.l1units.hw_inputs, then the QModel's input
    format (exactly as the emulator converts them)."""
    from l1ad.trigger.io import read_events
    from l1ad.trigger.l1units import hw_inputs

    batch = read_events(path, stop=n)
    x = hw_inputs(batch.objects)
    from l1ad.firmware.fixed import quantize_float

    codes, _, _ = quantize_float(x, qm.input.format)
    return np.asarray(codes, dtype=np.int64)
