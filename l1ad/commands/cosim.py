"""`l1ad cosim SOURCE --data FILE -n N`: bit-exact co-simulation of RTL against the emulator, and of the emulator
against the source framework. SOURCE is generated RTL (a folder with design.json) or a model (a Keras .h5/.keras
file, a QONNX .onnx file, a trained model directory, a qmodel.json): then the RTL is generated first."""
from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("cosim")
@click.argument("rtl_dir", metavar="SOURCE", type=click.Path(exists=True))
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Event file (HDF5 / NanoAOD); its L1 objects in hardware units are the input vectors.")
@click.option("-n", "n_events", type=click.IntRange(min=1), default=100_000, show_default=True, help="Events to take from --data.")
@click.option("--random", "n_random", type=click.IntRange(min=0), default=None,
              help="Random full-range vectors added [0 with --data, else -n].")
@click.option("--edge/--no-edge", default=True, show_default=True, help="Add the edge vectors (extremes, rounding ties).")
@click.option("--engine", type=click.Choice(["batch", "cocotb"]), default="batch", show_default=True,
              help="batch: compiled C++ harness (fast); cocotb: cocotb testbench through its Verilator runner.")
@click.option("--bubble", type=float, default=0.25, show_default=True, help="Probability of idle cycles before a vector.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None,
              help="JSON report [RTL folder/cosim-<engine>.json].")
@click.option("--rtl-out", "rtl_out", type=click.Path(file_okay=False), default=None,
              help="When SOURCE is a model: where to write its RTL [<SOURCE name>_rtl].")
@click.option("--input-format", default=None, help="Raw input format when SOURCE is a model file [ap_fixed<16,6>].")
@click.option("--drop-softmax", is_flag=True, help="Import a trailing softmax as its logits (the argmax is unchanged).")
def command(rtl_dir: str, data_file: str | None, n_events: int, n_random: int | None, edge: bool, engine: str,
            bubble: float, seed: int, out_file: str | None, rtl_out: str | None, input_format: str | None,
            drop_softmax: bool) -> None:
    """Stream input vectors through the RTL (one per clock, with bubbles and runtime threshold writes) and compare
    every output bit with firmware.emulate; when SOURCE is a framework model, also compare the emulator with the
    framework's own prediction on the same vectors. Fails (exit 1) on any mismatch."""
    from l1ad.sim.cosim import cosim, default_vectors, events_to_codes, load_design
    from l1ad.trigger.atomic import write_json_atomic

    if data_file:
        from l1ad.trigger.io import require_events

        require_events(data_file, what="co-simulation with --data")
    src = Path(rtl_dir)
    framework = None
    if not (src.is_dir() and (src / "design.json").is_file()):
        rtl_dir, framework = _rtl_from_model(src, rtl_out, input_format, drop_softmax)
    _, qm = load_design(rtl_dir)
    data = events_to_codes(qm, data_file, n_events) if data_file else None
    nr = n_random if n_random is not None else (0 if data_file else n_events)
    x = default_vectors(qm, nr, seed=seed, data=data, edge=edge)
    rep = cosim(rtl_dir, x, engine=engine, bubble=bubble, seed=seed)
    rep["data"] = str(data_file) if data_file else None
    rep["data_events"] = 0 if data is None else int(len(data))
    agree = None
    if framework is not None:
        from l1ad.firmware.hls.frontends import source_agreement

        agree = source_agreement(qm, framework[0], framework[1], x)
    rep["framework_agreement"] = agree
    path = Path(out_file) if out_file else Path(rtl_dir) / f"cosim-{engine}.json"
    write_json_atomic(path, rep)
    vps = rep["vectors_per_s"]
    click.echo(json.dumps({k: rep[k] for k in ("engine", "vectors", "mismatches", "valid_errors", "latency_cycles",
                                               "latency_measured", "threshold_writes", "ok")}))
    click.echo(f"simulated {rep['vectors']:,} vectors in {rep['sim_seconds']:.2f} s"
               + (f" ({vps:,.0f} vectors/s)" if vps else "") + f"; report: {path}")
    if agree is not None:
        click.echo(f"emulator vs {agree['compared']}: {agree['output_mismatches']} / {agree['n_values']:,} output values differ")
    elif framework is None:
        click.echo("emulator vs source framework: not compared (SOURCE is RTL or a qmodel.json: no framework model)")
    if not rep["ok"]:
        raise click.ClickException(f"RTL differs from the emulator: {rep['mismatches']} vector(s), "
                                   f"{rep['valid_errors']} valid error(s); details in {path}")
    if agree is not None and agree["output_mismatches"]:
        raise click.ClickException(f"the emulator differs from {agree['compared']} in {agree['output_mismatches']} output "
                                   f"value(s): the import does not reproduce the source model; details in {path}")


def _rtl_from_model(src: Path, rtl_out: str | None, input_format: str | None, drop_softmax: bool):
    """Generate the RTL of a model SOURCE; returns (rtl folder, (framework source, trained model) or None)."""
    from l1ad.firmware.hls.frontends import load_source
    from l1ad.firmware.verilog import VerilogConfig, export_verilog
    from l1ad.trigger.errors import UserInputError

    if src.is_dir() and not any(src.iterdir()):
        raise UserInputError(f"{src}: empty folder: neither generated RTL (design.json) nor a model")
    out = Path(rtl_out) if rtl_out else Path(f"{src.stem}_rtl")
    try:
        q, fsrc, tm = load_source(src, out / "work", input_format=input_format,
                                  softmax="drop" if drop_softmax else "refuse")
    except FileNotFoundError as e:
        raise UserInputError(f"{src}: no design.json (not generated RTL) and not a model ({e})") from None
    export_verilog(q, out, VerilogConfig())
    click.echo(f"generated the RTL of {src} in {out}")
    return out, (None if (fsrc is None and tm is None) else (fsrc, tm))
