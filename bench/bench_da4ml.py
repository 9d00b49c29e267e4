"""Benchmark: l1ad's Verilog generator against da4ml 0.6.0 (distributed arithmetic, the AXOL1TL v5 flow) on the
same quantized network, both synthesized with the same Yosys script.

da4ml needs numpy >= 2 (the main venv pins numpy 1.26 for QKeras), so it runs in the separate peers venv
`.venv-peers` (created here on first use, never by the tests) in a subprocess that reads the network from a
JSON file written here. The comparison is like for like:

* The network is the deployed QModel of a run (default: `out/default/rates/qkeras/qmodel.json`; `--qmodel`
  picks another; without any, a random-weight AE of the default sizes), or with `--net` one of the stand-in
  networks of `bench_network`: 'default' the AXOL1TL-style encoder 57-32-16-8, 'wide' the encoder twice as
  wide 57-64-32-16, 'ae' the autoencoder 57-32-16-8-16-32-57, 'w4' the encoder with 4-bit weights.
  da4ml rounds only TRN or half-up (RND); QKeras' quantized_relu rounds half-to-even (RND_CONV). Both sides
  therefore get the same variant of the network with every RND_CONV replaced by RND, and the network only
  (57 outputs, no score or comparators: da4ml's part of the design).
* da4ml's traced function (`comb.predict`) is checked bit for bit against `firmware.emulate` of that variant
  on the co-simulation vectors (edge, large and small codes); a mismatch is an error, not a footnote.
* Both RTLs are synthesized with `firmware.verilog.synth_report` (Yosys `synth_xilinx -family xcup`, `stat`);
  LUT counts LUT1..LUT6 as everywhere in the project; Yosys' INV cells are printed beside them and in LUT+INV
  (an upper bound: Vivado folds many inverters into the LUT next to them). `--offset-binary` builds ours with
  offset-binary adder trees (VerilogConfig.offset_binary): fewer LUTs, many more INV cells (measured: 'default'
  LUT 0.978 of da4ml's but LUT+INV 1.25; two's complement trees: LUT 1.03, LUT+INV 1.00).
* Latency: da4ml's from its pipeliner (`latency_cutoff`), ours from the generator's logic levels per stage;
  `--levels auto` (the default) takes the most pipelined of our designs (fewest levels per stage) whose latency
  is at most da4ml's, so the LUT ratio is at equal or lower latency; both in cycles and ns at the same clock.

    .venv/bin/python bench/bench_da4ml.py [--net default|wide|ae|w4 | --qmodel PATH] [--levels auto|N ...]
        [--latency-cutoff 5] [--no-yosys] [--no-verilator] [--out out/bench/da4ml]

Prints the LUT / FF / DSP / CARRY / latency table and the ratios l1ad : da4ml; writes `<out>/da4ml.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._peers import ensure_peer_venv  # noqa: E402

DEFAULT_QMODEL = ROOT / "out" / "default" / "rates" / "qkeras" / "qmodel.json"

# Runs inside .venv-peers: trace the network with da4ml, check it, write its Verilog.
PEER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace
    from da4ml.trace.ops import quantize
    from da4ml.codegen import RTLModel

    spec = json.load(open(sys.argv[1]))
    vec = np.load(sys.argv[2])
    out_dir, cutoff, period = sys.argv[3], float(sys.argv[4]), float(sys.argv[5])

    def q(x, f):
        return quantize(x, f["k"], f["i"], f["f"], overflow_mode=f["overflow"], round_mode=f["rounding"])

    t0 = time.perf_counter()
    inp = FixedVariableArrayInput((spec["n_in"],), hwconf=HWConfig(1, -1, -1))
    x = q(inp, spec["input"])
    s = (x - np.array(spec["offset"], dtype=np.float64)) * np.array([2.0 ** -s for s in spec["shift"]])
    h = q(s, spec["xq"])
    for L in spec["layers"]:
        W = np.array(L["W"], dtype=np.float64)
        h = h @ W + np.array(L["b"], dtype=np.float64)
        h = q(h, L["out"])  # unsigned SAT output = relu, round, saturate (the IR's order)
    comb = comb_trace(inp, h)
    t_trace = time.perf_counter() - t0
    y = comb.predict(vec["x"].astype(np.float64))
    mism = int(np.sum(y != vec["y"]))
    t0 = time.perf_counter()
    model = RTLModel(comb, "da4ml_net", out_dir, flavor="verilog", latency_cutoff=cutoff, clock_period=period,
                     print_latency=False)
    model.write()
    t_write = time.perf_counter() - t0
    pipe = model._pipe
    stages = len(pipe.solutions) if pipe is not None else 0
    print(json.dumps({"mismatches": mism, "values": int(y.size), "trace_s": t_trace, "write_s": t_write,
                      "stages": stages, "cost": float(getattr(comb, "cost", float("nan")))}))
    """
)


def bench_network(kind: str, seed: int = 0):
    """The bench's stand-in networks (random Gaussian weights, std 1/sqrt(n_in) like a trained layer, quantized to
    the formats of the default architecture, trigger.models.arch.ArchitectureConfig): activations ap_ufixed<8,3>
    (relu), input / output ap_fixed<12,4>, bias ap_fixed<8,4>.

    * 'default': the deployed AXOL1TL-style encoder (ArchitectureConfig(kind="vae")) 57-32-16-8, 8-bit weights
      ap_fixed<8,1>, the linear mu layer into ap_fixed<12,4>, score sum(mu_i^2);
    * 'wide': the encoder twice as wide, 57-64-32-16, 8-bit weights, score sum(mu_i^2);
    * 'ae': the deeper autoencoder 57-32-16-8-16-32-57, 8-bit weights, masked MSE score;
    * 'w4': the encoder with 4-bit weights ap_fixed<4,1>.

    The score and two thresholds are included (the bench compares the network only)."""
    from l1ad.firmware.fixed import FixedFormat
    from l1ad.firmware.ir import DenseLayer, InputSpec, QModel, ScoreSpec, default_gate

    if kind not in BENCH_NETS:
        raise SystemExit(f"unknown bench network {kind!r}; choose one of {', '.join(BENCH_NETS)}")
    encoder = kind != "ae"
    sizes = {"ae": (32, 16, 8, 16, 32, 57), "wide": (64, 32, 16)}.get(kind, (32, 16, 8))
    wbits = 4 if kind == "w4" else 8
    rng = np.random.default_rng(seed)
    n = 57
    shift = np.array([6 if j % 3 == 0 else 8 for j in range(n)])  # pT 0.25 GeV * 2^6, eta / phi 2^8 codes per unit
    inp = InputSpec(FixedFormat.parse("ap_int<18>"), np.zeros(n, dtype=np.int64), shift)
    xq = FixedFormat(12, 4, True, "RND_CONV", "SAT")
    wf, bf = FixedFormat(wbits, 1, True), FixedFormat(8, 4, True)
    layers, prev = [], n
    for li, m in enumerate(sizes):
        W = np.clip(np.round(rng.normal(0, 1 / np.sqrt(prev), size=(prev, m)) * 2 ** wf.frac), wf.min_code, wf.max_code)
        b = np.clip(np.round(rng.normal(0, 0.1, size=m) * 2 ** bf.frac), bf.min_code, bf.max_code)
        last = li == len(sizes) - 1
        of = FixedFormat(12, 4, True, "RND_CONV", "SAT") if last else FixedFormat(8, 3, False, "RND_CONV", "SAT")
        name = "mu" if (last and encoder) else f"dense{li + 1}"
        layers.append(DenseLayer(name, W.astype(np.int64), wf, b.astype(np.int64), bf,
                                 "linear" if last else "relu", of))
        prev = m
    if encoder:
        sc = ScoreSpec("mu2", format=FixedFormat(18, 14, False, "TRN", "SAT"))
    else:
        sc = ScoreSpec("mse", gate=default_gate(), format=FixedFormat(18, 14, False, "TRN", "SAT"))
    q = QModel(input=inp, input_quantizer=xq, layers=layers, score=sc, name=f"bench_{kind}")
    return q.with_thresholds((q.score.format.max_code // 64, q.score.format.max_code // 16))


BENCH_NETS = ("default", "wide", "ae", "w4")


def _kif(fmt) -> dict:
    """FixedFormat -> da4ml's (keep_negative, integer bits without sign, fraction bits) plus modes."""
    k = int(fmt.signed)
    return {"k": k, "i": fmt.integer - k, "f": fmt.width - fmt.integer, "rounding": fmt.rounding,
            "overflow": fmt.overflow}


def network_variant(qm):
    """The network-only QModel with half-up rounding (RND) wherever the original rounds half-to-even."""
    from l1ad.firmware import QModel

    def rnd(f):
        return str(f.with_modes(rounding="RND") if f.rounding == "RND_CONV" else f)

    fields = ("weight_format", "bias_format", "accum_format", "output_format")
    v = qm.replace_formats(input_quantizer=rnd(qm.input_quantizer),
                           **{L.name: {k: rnd(getattr(L, k)) for k in fields} for L in qm.layers})
    d = v.to_dict()
    d["score"], d["thresholds"], d["name"] = None, [], f"{qm.name}_net_rnd"
    return QModel.from_dict(d)


def peer_spec(net) -> dict:
    """The network as plain numbers for the peer script (real-valued weights: exact binary fractions)."""
    for i in range(len(net.layers)):
        if not net.layer_exact(i):
            raise SystemExit(f"layer {net.layers[i].name}: non-exact accumulator; the bench compares exact ones only")
    for L in net.layers:
        if L.activation not in ("relu", "linear"):
            raise SystemExit(f"layer {L.name}: activation {L.activation} not mapped to da4ml here")
        if L.activation == "relu" and L.output_format.signed:
            raise SystemExit(f"layer {L.name}: relu into a signed format is not mapped to da4ml here")
    return {
        "n_in": net.n_inputs,
        "input": _kif(net.input.format),
        "offset": [int(v) for v in net.input.offset],
        "shift": [int(v) for v in net.input.shift],
        "xq": _kif(net.input_quantizer),
        "layers": [{"name": L.name,
                    "W": (np.asarray(L.weights, dtype=np.float64) * 2.0 ** -L.weight_format.frac).tolist(),
                    "b": (np.asarray(L.bias, dtype=np.float64) * 2.0 ** -L.bias_format.frac).tolist(),
                    "out": _kif(L.output_format)} for L in net.layers],
    }


def verilate_peer(peer_dir: Path, net, x: np.ndarray, latency: int) -> dict:
    """da4ml's RTL through Verilator (the batch harness of l1ad.sim on its wrapper, which pads every output to the
    network's output format): the outputs `latency` clocks after each input row against firmware.emulate."""
    from l1ad.firmware import emulate
    from l1ad.sim.packing import pack, unpack
    from l1ad.sim.verilator import RTL, Port, build_batch

    src = peer_dir / "src"
    top = "da4ml_net_wrapper"
    text = (src / f"{top}.v").read_text()
    import re

    w_in = int(re.search(r"input \[(\d+):0\] model_inp", text).group(1)) + 1
    w_out = int(re.search(r"output \[(\d+):0\] model_out", text).group(1)) + 1
    fin, of = net.input.format, net.output_format
    if w_in != net.n_inputs * fin.width or w_out != net.n_outputs * of.width:
        raise SystemExit(f"da4ml wrapper ports ({w_in}, {w_out}) do not match the network's buses")
    # Verilator 5.006 predates the WIDTHTRUNC / WIDTHEXPAND lint codes in da4ml's waivers: a copy of the sources
    # with those comments spelled WIDTH (comments only; the logic is untouched)
    vsrc = peer_dir / "verilator_src"
    sources = []
    for f in sorted(src.rglob("*.v")):
        t = re.sub(r"lint_(off|on) WIDTH(TRUNC|EXPAND)", r"lint_\1 WIDTH", f.read_text())
        dst = vsrc / f.relative_to(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(t)
        sources.append(dst.resolve())
    rtl = RTL(vsrc.resolve(), top, tuple(sources),
              (Port("model_inp", w_in, "input"), Port("model_out", w_out, "output")), {})
    sim = build_batch(rtl, build_root=peer_dir / ".sim")
    rows = np.concatenate([x, np.zeros((latency, x.shape[1]), dtype=np.int64)])
    outs, t = sim.run({"model_inp": pack(rows, fin.width)})
    got = unpack(outs["model_out"], net.n_outputs, of.width, of.signed)[latency:]
    want = emulate(net, x).outputs_int
    return {"vectors": int(len(x)), "values": int(want.size), "mismatches": int(np.sum(got != want)),
            "build_s": round(sim.build_seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qmodel", type=Path, default=None, help=f"QModel JSON (default {DEFAULT_QMODEL.relative_to(ROOT)})")
    ap.add_argument("--net", choices=list(BENCH_NETS), default=None,
                    help="a stand-in network instead of a QModel file (see bench_network)")
    ap.add_argument("--latency-cutoff", type=float, default=5.0, help="da4ml pipeliner cutoff (its delay units)")
    ap.add_argument("--levels", nargs="+", default=["auto"],
                    help="our logic levels per pipeline stage, one design each; 'auto' (default): the fewest levels per "
                         "stage whose latency is at most da4ml's")
    ap.add_argument("--clock-mhz", type=float, default=240.0)
    ap.add_argument("--offset-binary", action="store_true",
                    help="our adder trees in offset binary (VerilogConfig.offset_binary) instead of two's complement")
    ap.add_argument("--vectors", type=int, default=20_000)
    ap.add_argument("--no-yosys", action="store_true")
    ap.add_argument("--no-verilator", action="store_true", help="skip the Verilator runs of both designs")
    ap.add_argument("--yosys-timeout", type=float, default=3600.0)
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "da4ml")
    args = ap.parse_args()

    from l1ad.firmware import QModel, emulate
    from l1ad.firmware.verilog import VerilogConfig, export_verilog, generate, synth_report
    from l1ad.sim.cosim import default_vectors
    from l1ad.sim.models import l1_autoencoder
    from l1ad.sim.verilator import lint

    path = None if args.net else (args.qmodel or (DEFAULT_QMODEL if DEFAULT_QMODEL.is_file() else None))
    if args.net:
        qm, source = bench_network(args.net), f"bench_network({args.net!r})"
    else:
        qm = QModel.load(path) if path else l1_autoencoder()
        source = str(path.relative_to(ROOT) if path and path.is_relative_to(ROOT) else path) if path else "random-weight l1_autoencoder()"
    net = network_variant(qm)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"network: {source} -> {net.name}: {net.n_inputs}-" + "-".join(str(L.n_out) for L in net.layers))

    # the peer, on the co-simulation vectors, checked against our emulator
    x = default_vectors(net, args.vectors, seed=0)
    em = emulate(net, x)
    y = em.outputs_int.astype(np.float64) * 2.0 ** -net.output_format.frac
    spec_path, vec_path = args.out / "net_spec.json", args.out / "vectors.npz"
    spec_path.write_text(json.dumps(peer_spec(net)))
    np.savez(vec_path, x=x.astype(np.float64), y=y)
    peer_py = ensure_peer_venv()
    script = args.out / "peer_da4ml.py"
    script.write_text(PEER_SCRIPT)
    peer_dir = args.out / "da4ml"
    t0 = time.perf_counter()
    r = subprocess.run([str(peer_py), str(script), str(spec_path), str(vec_path), str(peer_dir),
                        str(args.latency_cutoff), str(1000.0 / args.clock_mhz)], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    if r.returncode != 0:
        raise SystemExit(f"da4ml failed:\n{r.stderr[-3000:]}")
    peer = json.loads(r.stdout.strip().splitlines()[-1])
    peer["wall_s"] = time.perf_counter() - t0
    if peer["mismatches"]:
        raise SystemExit(f"da4ml's traced network differs from firmware.emulate on {peer['mismatches']} of "
                         f"{peer['values']} output values: the two designs would not compute the same function")
    print(f"da4ml trace + RTL: {peer['wall_s']:.1f} s; traced function vs firmware.emulate: 0 / {peer['values']} "
          f"output values differ ({len(x)} vectors)")
    peer_sources = sorted(str(p) for p in (peer_dir / "src").rglob("*.v"))
    if not peer_sources:
        raise SystemExit(f"no Verilog found under {peer_dir / 'src'}")
    # da4ml's top registers its input, then every stage's output: stages + 1 clock edges from input to output
    # (ours also registers the input: both count port to port)
    peer_latency = peer["stages"] + 1

    # ours: each requested depth per stage, or ('auto') the most pipelined design (fewest levels per stage) whose
    # latency is at most da4ml's
    ours = {}
    levels = [] if args.levels == ["auto"] else [int(v) for v in args.levels]
    if not levels:
        for lv in range(1, 17):
            cfg = VerilogConfig(top="l1ad_net", clock_mhz=args.clock_mhz, levels_per_stage=lv, offset_binary=args.offset_binary)
            if generate(net, cfg).latency_cycles <= peer_latency:
                levels = [lv]
                break
        else:
            raise SystemExit(f"no levels_per_stage up to 16 reaches da4ml's latency of {peer_latency} cycles")
        print(f"levels per stage: {levels[0]} (the most pipelined design within da4ml's {peer_latency} cycles)")
    for lv in levels:
        ours_dir = args.out / f"l1ad_L{lv}"
        cfg = VerilogConfig(top="l1ad_net", clock_mhz=args.clock_mhz, levels_per_stage=lv, offset_binary=args.offset_binary)
        design = export_verilog(net, ours_dir, cfg)
        sources = sorted(str(p) for p in ours_dir.glob("*.v"))
        warn = lint(sources, cfg.top)
        if warn:
            raise SystemExit(f"our RTL is not lint-clean: {warn[:3]}")
        ours[f"l1ad L{lv}"] = (sources, design.latency_cycles)
    period = 1000.0 / args.clock_mhz
    rows = {name: {"latency_cycles": lat, "top": "l1ad_net", "sources": srcs} for name, (srcs, lat) in ours.items()}
    rows["da4ml"] = {"latency_cycles": peer_latency, "top": "da4ml_net", "sources": peer_sources}
    for row in rows.values():
        row["latency_ns"] = row["latency_cycles"] * period
    if not args.no_verilator:  # both RTLs through Verilator on the same vectors, against firmware.emulate
        from l1ad.sim.cosim import cosim

        for name, (srcs, lat) in ours.items():
            r = cosim(Path(srcs[0]).parent, x, engine="batch")
            rows[name]["verilator"] = {"vectors": r["vectors"], "mismatches": r["mismatches"], "ok": r["ok"]}
            print(f"Verilator {name}: {r['mismatches']} mismatches on {r['vectors']} vectors", flush=True)
        r = verilate_peer(peer_dir, net, x, rows["da4ml"]["latency_cycles"])
        rows["da4ml"]["verilator"] = r
        print(f"Verilator da4ml: {r['mismatches']} mismatches on {r['values']} output values ({r['vectors']} vectors)",
              flush=True)
        bad = [n for n, row in rows.items() if row["verilator"]["mismatches"]]
        if bad:
            raise SystemExit(f"Verilator output differs from firmware.emulate for {bad}")
    if not args.no_yosys:
        for name in rows:
            srcs = rows[name]["sources"]
            print(f"Yosys synth_xilinx -family xcup on {name} ({len(srcs)} files) ...", flush=True)
            rep = synth_report(srcs, rows[name]["top"], log=args.out / f"yosys_{name.replace(' ', '_')}.log", timeout=args.yosys_timeout)
            rows[name].update({k: rep["resources"].get(k) for k in ("LUT", "FF", "DSP", "CARRY", "SRL")})
            rows[name]["INV"] = rep["cells"].get("INV", 0)  # Yosys' inverter cells (not in LUT)
            rows[name]["LUT+INV"] = rows[name]["LUT"] + rows[name]["INV"]  # each INV a LUT1 if nothing absorbs it
            rows[name]["yosys_s"] = rep["seconds"]
    keys = ["LUT", "INV", "LUT+INV", "FF", "DSP", "CARRY", "latency_cycles", "latency_ns"] if not args.no_yosys else ["latency_cycles", "latency_ns"]
    ratios = {name: {k: (rows[name][k] / rows["da4ml"][k] if rows["da4ml"].get(k) else None) for k in keys} for name in ours}
    print(f"\n| {'':16} | " + " | ".join(f"{k:>14}" for k in keys) + " |")
    for name, row in rows.items():
        print(f"| {name:16} | " + " | ".join(f"{row.get(k, float('nan')):>14.6g}" for k in keys) + " |")
    for name, rt in ratios.items():
        print(f"| {name + ' / da4ml':16} | " + " | ".join(f"{rt[k]:>14.3f}" if rt[k] is not None else f"{'-':>14}" for k in keys) + " |")
    for row in rows.values():
        row["sources"] = len(row["sources"])
    result = {"network": source, "variant": net.name, "vectors": int(len(x)), "bit_exact_values": peer["values"],
              "da4ml_mismatches": peer["mismatches"], "clock_mhz": args.clock_mhz, "levels_per_stage": levels,
              "latency_cutoff": args.latency_cutoff, "offset_binary": args.offset_binary, "rows": rows, "ratios_l1ad_over_da4ml": ratios,
              "peer_seconds": peer["wall_s"]}
    (args.out / "da4ml.json").write_text(json.dumps(result, indent=2))
    print(f"\nwritten: {args.out / 'da4ml.json'}")


if __name__ == "__main__":
    main()
