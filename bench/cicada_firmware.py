"""The CICADA-style student and a random-weight QConv2D network through every stage, on >= 10k calorimeter
images: framework prediction = emulator = HLS C simulation = Verilator, with Yosys LUT/FF/DSP and the latency.

    .venv/bin/python bench/cicada_firmware.py [--model DIR] [-n 10000] [--train 30000] [--no-yosys] [--out out/bench/cicada]

The student is the one a pipeline run saved (``--model out/<run>/cicada/model``) or, without one, a model trained
here on toy zero-bias images (``--train`` events; the defaults of trigger.cicada.CicadaConfig). Images: held-out
toy zero-bias and signal images, plus the edge and random full-range codes of sim.cosim.default_vectors. Writes
``<out>/cicada_firmware.json`` and prints one table.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def random_qconv2d(seed: int = 0):
    """A random-weight QConv2D network on the 18 x 14 image, as a firmware engineer would write one."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((18, 14, 1))
    x = QActivation(quantized_bits(11, 6, alpha=1), name="qin")(inp)
    x = QConv2D(4, (3, 3), strides=(2, 2), padding="same", kernel_quantizer=quantized_bits(6, 0, alpha=1),
                bias_quantizer=quantized_bits(6, 2, alpha=1), name="conv1")(x)
    x = QActivation(quantized_relu(8, 5), name="relu1")(x)
    x = QConv2D(4, (3, 3), kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1),
                activation=quantized_relu(8, 5), name="conv2")(x)
    x = tf.keras.layers.Flatten()(x)
    x = QDense(1, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1), name="out")(x)
    return tf.keras.Model(inp, QActivation(quantized_bits(12, 6, alpha=1), name="qout")(x), name="random_qconv2d")


def check(name: str, q, predict, codes: np.ndarray, work: Path, yosys: bool) -> dict:
    """Framework vs emulator, C-sim vs emulator, Verilator vs emulator, Yosys."""
    import l1ad.firmware as fw
    from l1ad.firmware.hls import HLSConfig, export_hls, verify_project
    from l1ad.firmware.verilog import VerilogConfig, export_verilog
    from l1ad.sim.cosim import cosim

    row: dict = {"network": name, "images": int(len(codes)), "ops": [L.describe() for L in q.layers]}
    xv = q.input.format.to_float(codes)
    e = fw.emulate(q, xv)
    y = predict(xv)
    row["framework_vs_emulator"] = int(np.count_nonzero(q.output_format.to_float(e.outputs_int[:, 0]) != y.reshape(-1)))
    t0 = time.perf_counter()
    prj = export_hls(q, None, work / f"{name}_hls", HLSConfig(tb_vectors=10))
    rep = verify_project(prj, len(codes), sets={"images": codes}, with_coverage=False)
    row["csim_vs_emulator"] = {k: int(v) for k, v in rep["mismatches"].items()}
    row["csim_seconds"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    des = export_verilog(q, work / f"{name}_rtl", VerilogConfig(top=name, expose_outputs=True), report=yosys)
    r = cosim(work / f"{name}_rtl", codes, build_root=work / "build")
    row["verilator_vs_emulator"] = int(r["mismatches"])
    row["verilator_vectors"] = int(r["vectors"])
    row["latency_cycles"], row["latency_ns"] = int(des.meta["latency_cycles"]), float(des.meta["latency_ns"])
    row["clock_mhz"] = float(des.meta["clock_mhz"])
    rj = work / f"{name}_rtl" / "report.json"
    if rj.is_file():
        row["resources"] = json.loads(rj.read_text()).get("resources")
    row["rtl_seconds"] = round(time.perf_counter() - t0, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--train", type=int, default=30_000)
    ap.add_argument("--no-yosys", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "out" / "bench" / "cicada"))
    ap.add_argument("--student-pool", type=int, default=1, help="CicadaConfig.student_pool of the trained student")
    ap.add_argument("--no-random", action="store_true", help="only the student (skip the random-weight QConv2D)")
    a = ap.parse_args(argv)
    from l1ad.firmware.ir import QModel, ScoreSpec
    from l1ad.sim.cosim import default_vectors
    from l1ad.trigger.cicada import CicadaConfig, load_cicada, train_cicada
    from l1ad.trigger.toy import toy_events

    if a.model:
        model = load_cicada(a.model)
    else:
        zb = toy_events(a.train, seed=11)
        model = train_cicada(zb.calo, CicadaConfig(student_pool=a.student_pool), weights=zb.weight)
    print(f"student {model.config.student_out_shape} after the conv; held-out teacher/student correlation "
          f"{model.metadata.get('val_correlation')}")
    q0 = model.to_qmodel()
    student = QModel(input=q0.input, input_quantizer=q0.input_quantizer, layers=q0.layers, score=ScoreSpec("out"),
                     name="cicada_student", meta=q0.meta)
    held = np.concatenate([toy_events(a.n // 2, seed=12).calo, toy_events(a.n // 4, signal=True, seed=13).calo])
    held = held.reshape(len(held), -1).astype(np.int64)
    codes = default_vectors(student, max(0, a.n - len(held)), seed=3, data=held)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        rows.append(check("cicada_student", student, lambda xv: _direct(model, xv), codes, Path(d), not a.no_yosys))
        rows[-1]["val_correlation"] = model.metadata.get("val_correlation")
        rows[-1]["student_pool"] = model.config.student_pool
        import l1ad.firmware as fw

        if not a.no_random:
            m = random_qconv2d()
            qc = fw.import_qkeras(m, "ap_ufixed<10,10>", score="out")
            rows.append(check("random_qconv2d", qc, lambda xv: m.predict(xv.reshape(len(xv), 18, 14, 1), verbose=0,
                                                                         batch_size=4096),
                              default_vectors(qc, max(0, a.n - len(held)), seed=4, data=held), Path(d), not a.no_yosys))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cicada_firmware.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"{'network':16s} {'images':>7s} {'fw=emu':>7s} {'csim':>14s} {'verilator':>10s} {'latency':>18s} resources")
    for r in rows:
        res = r.get("resources") or {}
        print(f"{r['network']:16s} {r['images']:7d} {r['framework_vs_emulator']:7d} {str(r['csim_vs_emulator']):>14s} "
              f"{r['verilator_vs_emulator']:10d} {r['latency_cycles']:3d} cy = {r['latency_ns']:5.1f} ns "
              f"LUT {res.get('LUT')} FF {res.get('FF')} DSP {res.get('DSP')}")
    bad = [r["network"] for r in rows if r["framework_vs_emulator"] or any(r["csim_vs_emulator"].values())
           or r["verilator_vs_emulator"]]
    return 1 if bad else 0


def _direct(model, xv: np.ndarray) -> np.ndarray:
    """The student's framework forward on raw region codes (the front-end's own predict, its input layout)."""
    x = np.asarray(xv, dtype=np.float64).reshape(len(xv), 18, 14) * 2.0 ** -model.config.input_shift
    return model.module.predict(model.student, model.module.image_layout(x)).reshape(-1)


if __name__ == "__main__":
    raise SystemExit(main())
