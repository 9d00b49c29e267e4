"""Models written the way users write them, through every stage: import -> emulator vs the framework's own
prediction -> HLS C simulation -> Verilator co-simulation, each with its mismatch count on the same input codes,
or the error that names the unsupported construct.

    .venv/bin/python bench/model_zoo.py [-n 10000] [--only NAME ...] [--no-hls] [--no-rtl] [--out out/zoo]

Each model is saved to a file first (.h5 for QKeras, .onnx for Brevitas) and read back through
``firmware.hls.frontends.load_source``, as `l1ad export` / `l1ad cosim` read a user's file. Input codes: the edge
and random full-range vectors of ``sim.cosim.default_vectors`` (half) and Gaussian values on the input grid (half).
The framework comparison is exact equality of values: QKeras ``predict`` (the logits when a softmax is dropped),
and for QONNX the exported graph run by onnxruntime (float64 when the model has float scales, with its float32
constants unchanged; the float32 Brevitas forward is reported beside it). Writes ``<out>/table.md`` and
``<out>/table.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.zoo_models import MODELS  # noqa: E402


def _codes(q, n: int, scale: float, seed: int) -> np.ndarray:
    from l1ad.firmware.fixed import quantize_float
    from l1ad.sim.cosim import default_vectors

    half = default_vectors(q, n // 2, seed=seed)
    rng = np.random.default_rng(seed + 1)
    g = rng.normal(0, scale, (n - len(half), q.n_inputs))
    g[rng.random(g.shape) < 0.2] = 0
    codes, _, _ = quantize_float(g, q.input.format)
    return np.concatenate([half, np.asarray(codes, dtype=np.int64)])[:n]


def _keras_agreement(q, model, xv: np.ndarray) -> dict:
    from tensorflow import keras

    from l1ad.firmware import emulate

    m = model
    if any("softmax dropped" in w for w in q.warnings):
        m = keras.Model(model.inputs, model.layers[-1].input)
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])  # an image model takes its image shape
    y = m.predict(xv.reshape((len(xv), *shape)), verbose=0, batch_size=4096).reshape(len(xv), -1)
    e = emulate(q, xv)
    codes = np.ldexp(y.astype(np.float64), q.output_format.frac)
    bad = (codes != np.round(codes)) | (np.round(codes).astype(np.int64) != e.outputs_int)
    return {"compared": "qkeras_predict", "n_values": int(bad.size), "output_mismatches": int(bad.sum())}


def run_model(name: str, spec: dict, work: Path, n: int, hls: bool, rtl: bool) -> dict:
    from l1ad.firmware.hls.frontends import load_source

    row: dict = {"model": name, "what": spec["what"], "file": None}
    t0 = time.perf_counter()
    try:
        path = spec["build"](work)
        row["file"] = path.name
        q, source, _ = load_source(path, work / "w", input_format=spec.get("input_format"),
                                   softmax="drop" if spec.get("drop_softmax") else "refuse")
    except Exception as e:  # noqa: BLE001 - a refusal is a result of this table
        row["import"] = f"refused: {e}"
        row["refused"] = True
        return row
    row["import"] = "ok"
    row["ops"] = " -> ".join(f"{L.kind}" for L in q.layers)
    codes = _codes(q, n, spec.get("scale", 1.0), seed=7)
    xv = q.input.format.to_float(codes)
    if path.suffix == ".onnx":
        from l1ad.firmware.import_qonnx import compare_qonnx

        floaty = any(L.kind == "affine" for L in q.layers)
        fa = compare_qonnx(q, path, xv, dtype="float64" if floaty else "float32")
        row["framework"] = fa
        if floaty:
            row["framework_float32"] = compare_qonnx(q, path, xv, dtype="float32")
    else:
        row["framework"] = _keras_agreement(q, source, xv)
    if hls:
        from l1ad.firmware.hls import HLSConfig, export_hls, verify_project

        try:
            prj = export_hls(q, None, work / "hls", HLSConfig(tb_vectors=10))
            rep = verify_project(prj, len(codes), sets={"zoo": codes}, with_coverage=False)
            row["hls"] = {"n_values": int(rep["compared_values"]["outputs"]), "output_mismatches": int(rep["mismatches"]["outputs"]),
                          "compile_s": rep["timing"]["compile_s"]}
        except Exception as e:  # noqa: BLE001
            row["hls"] = {"error": f"{type(e).__name__}: {e}"}
    if rtl:
        from l1ad.firmware.verilog import VerilogConfig, export_verilog
        from l1ad.sim.cosim import cosim

        try:
            des = export_verilog(q, work / "rtl", VerilogConfig(top="zoo", expose_outputs=True))
            r = cosim(work / "rtl", codes, build_root=work / "build")
            row["rtl"] = {"vectors": int(r["vectors"]), "mismatches": int(r["mismatches"]), "ok": bool(r["ok"]),
                          "latency_cycles": int(des.meta["latency_cycles"])}
        except Exception as e:  # noqa: BLE001
            row["rtl"] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-600:]}
    row["seconds"] = round(time.perf_counter() - t0, 1)
    row["n"] = int(len(codes))
    return row


def _cell(d: dict | None, key_n: str, key_bad: str) -> str:
    if d is None:
        return "-"
    if "error" in d:
        return f"error: {d['error'][:80]}"
    return f"{d[key_bad]} / {d[key_n]:,}"


def table_md(rows: list[dict]) -> str:
    out = ["| model | what | import | IR ops | emulator vs framework | HLS C-sim vs emulator | Verilator vs emulator |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("refused"):
            out.append(f"| {r['model']} | {r['what']} | {r['import']} | | | | |")
            continue
        fw = _cell(r.get("framework"), "n_values", "output_mismatches") + f" ({r['framework']['compared']})"
        if "framework_float32" in r:
            fw += f"; float32 graph: {r['framework_float32']['output_mismatches']}"
        rtl = r.get("rtl")
        rtl_s = "-" if rtl is None else (f"error: {rtl['error'][:80]}" if "error" in rtl else f"{rtl['mismatches']} / {rtl['vectors']:,} vectors")
        out.append(f"| {r['model']} | {r['what']} | ok | {r['ops']} | {fw} | "
                   f"{_cell(r.get('hls'), 'n_values', 'output_mismatches')} | {rtl_s} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--no-hls", action="store_true")
    ap.add_argument("--no-rtl", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "out" / "zoo"))
    ap.add_argument("--reuse-log", default=None, help="keep the rows of an earlier run's output for the other models")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    if a.reuse_log:  # rows of an earlier run's log (one JSON object per line), for models not rerun here
        for line in Path(a.reuse_log).read_text().splitlines():
            if line.startswith('{"model"'):
                r = json.loads(line)
                if not a.only or r["model"] not in a.only:
                    rows.append(r)
    for name, spec in MODELS.items():
        if a.only and name not in a.only:
            continue
        with tempfile.TemporaryDirectory() as d:
            r = run_model(name, spec, Path(d), a.n, not a.no_hls, not a.no_rtl)
        rows.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "trace"}), flush=True)
    from l1ad.trigger.atomic import write_json_atomic, write_text_atomic

    write_json_atomic(out / "table.json", rows)
    md = table_md(rows)
    write_text_atomic(out / "table.md", md)
    print(md)
    bad = [r["model"] for r in rows if not r.get("refused") and (
        r["framework"]["output_mismatches"] or (r.get("hls") or {}).get("output_mismatches", 0)
        or "error" in (r.get("hls") or {}) or "error" in (r.get("rtl") or {}) or (r.get("rtl") or {}).get("mismatches", 0))]
    print(f"{len(rows)} models, {sum(1 for r in rows if r.get('refused'))} refused with a named construct, "
          f"{len(bad)} with a mismatch or error: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
