"""`l1ad cosim RTL_DIR --data FILE -n N`: bit-exact co-simulation of generated RTL against the emulator."""
from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("cosim")
@click.argument("rtl_dir", type=click.Path(exists=True, file_okay=False))
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
              help="JSON report [RTL_DIR/cosim-<engine>.json].")
def command(rtl_dir: str, data_file: str | None, n_events: int, n_random: int | None, edge: bool, engine: str,
            bubble: float, seed: int, out_file: str | None) -> None:
    """Stream input vectors through the RTL in RTL_DIR (one per clock, with bubbles and runtime threshold
    writes) and compare every output bit with firmware.emulate. Fails (exit 1) on any mismatch."""
    from l1ad.sim.cosim import cosim, default_vectors, events_to_codes, load_design
    from l1ad.trigger.atomic import write_json_atomic

    if data_file:
        from l1ad.trigger.io import require_events

        require_events(data_file, what="co-simulation with --data")
    _, qm = load_design(rtl_dir)
    data = events_to_codes(qm, data_file, n_events) if data_file else None
    nr = n_random if n_random is not None else (0 if data_file else n_events)
    x = default_vectors(qm, nr, seed=seed, data=data, edge=edge)
    rep = cosim(rtl_dir, x, engine=engine, bubble=bubble, seed=seed)
    rep["data"] = str(data_file) if data_file else None
    rep["data_events"] = 0 if data is None else int(len(data))
    path = Path(out_file) if out_file else Path(rtl_dir) / f"cosim-{engine}.json"
    write_json_atomic(path, rep)
    vps = rep["vectors_per_s"]
    click.echo(json.dumps({k: rep[k] for k in ("engine", "vectors", "mismatches", "valid_errors", "latency_cycles",
                                               "latency_measured", "threshold_writes", "ok")}))
    click.echo(f"simulated {rep['vectors']:,} vectors in {rep['sim_seconds']:.2f} s"
               + (f" ({vps:,.0f} vectors/s)" if vps else "") + f"; report: {path}")
    if not rep["ok"]:
        raise click.ClickException(f"RTL differs from the emulator: {rep['mismatches']} vector(s), "
                                   f"{rep['valid_errors']} valid error(s); details in {path}")
