"""`l1ad export verilog MODEL_DIR --out DIR [--report]`: synthesizable Verilog from a trained model (or a QModel)."""
from __future__ import annotations

from pathlib import Path

import click


def load_qmodel(source: str | Path, work_dir: str | Path, *, input_format: str | None = None,
                rates: str | Path | None = None, softmax: str = "refuse"):
    """A QModel from: a qmodel.json file, a folder holding qmodel.json (an HLS or Verilog export), a Keras
    .h5/.keras file, a QONNX .onnx file, or a trained model directory (one loader for every command:
    firmware.hls.frontends.load_source). With `rates` (an `l1ad rates` report) the thresholds are set from its
    score thresholds."""
    from l1ad.firmware.hls.frontends import load_source

    q, _, _ = load_source(source, work_dir, input_format=input_format, softmax=softmax)
    if rates is not None:
        from l1ad.firmware.hls.frontends import thresholds_from_rates

        q = q.with_thresholds(thresholds_from_rates(q, rates))
    return q


@click.command("verilog")
@click.argument("model_dir", type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder for the RTL.")
@click.option("--report", is_flag=True, help="Also synthesize with Yosys (synth_xilinx -family xcup): report.json/.txt.")
@click.option("--rates", "rates_json", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Reset threshold values from an `l1ad rates` report (rates.json).")
@click.option("--input-format", default=None, help="Raw input format when importing a trained model [ap_int<18>].")
@click.option("--top", default=None, help="Top module name [l1ad_trigger].")
@click.option("--clock-mhz", type=float, default=None, help="Target clock for the latency report [240].")
@click.option("--levels-per-stage", type=int, default=None,
              help="Logic levels between pipeline registers inside a block (0: registers only between blocks) [3].")
@click.option("--budget-ns", type=float, default=None,
              help="Latency budget: choose the register placement (the deepest stages --clock-mhz allows under the "
                   "logic-level model), or fail naming the best reachable latency. Excludes --levels-per-stage.")
@click.option("--multiplier", type=click.Choice(["shiftadd", "mult"]), default=None,
              help="Constant products: CSD shift-add trees (no DSP) or '*' (DSP inference) [shiftadd].")
@click.option("--square", type=click.Choice(["mult", "lut"]), default=None,
              help="Score squares: '*' (DSP inference) or LUT partial products [mult].")
@click.option("--outputs/--no-outputs", "expose_outputs", default=None,
              help="Also put the network outputs on a port (y_out) [no].")
@click.option("--cse-slack", type=click.IntRange(0, 4), default=None,
              help="Adder-tree levels per layer beyond the minimum that shared subexpressions may use (fewer LUTs, "
                   "deeper layers) [1].")
@click.option("--yosys-timeout", type=float, default=None, help="Give up synthesis after this many seconds.")
def verilog(model_dir: str, out_dir: str, report: bool, rates_json: str | None, input_format: str | None,
            top: str | None, clock_mhz: float | None, levels_per_stage: int | None, budget_ns: float | None,
            multiplier: str | None, square: str | None, expose_outputs: bool | None, cse_slack: int | None,
            yosys_timeout: float | None) -> None:
    """Fully unrolled, pipelined Verilog (one event per clock) of MODEL_DIR: a trained model directory, a
    qmodel.json, or a folder holding one. Writes one module per block, design.json (ports, latency) and
    qmodel.json; prints the latency and whether it fits one / two bunch crossings."""
    from l1ad.firmware.verilog import VerilogConfig, export_verilog
    from l1ad.firmware.verilog.yosys import format_table, write_report

    if budget_ns is not None and levels_per_stage is not None:
        raise click.UsageError("--budget-ns chooses the levels per stage itself: give it or --levels-per-stage, not both")
    over = {k: v for k, v in dict(top=top, clock_mhz=clock_mhz, levels_per_stage=levels_per_stage,
                                  multiplier=multiplier, square=square, expose_outputs=expose_outputs, cse_slack=cse_slack,
                                  budget_ns=budget_ns, meet_budget=True if budget_ns is not None else None).items()
            if v is not None}
    cfg = VerilogConfig(**over)
    out = Path(out_dir)
    q = load_qmodel(model_dir, out / "work", input_format=input_format, rates=rates_json)
    design = export_verilog(q, out, cfg)
    m = design.meta
    click.echo(f"wrote {len(m['files'])} Verilog files to {out} (top {m['top']})")
    if report:
        rep = write_report(out, design, timeout=yosys_timeout)
        click.echo(format_table(rep), nl=False)
        if rep.get("synthesis_error"):
            raise click.ClickException(f"Yosys: {rep['synthesis_error']}")
    else:
        click.echo(f"latency {m['latency_cycles']} cycles = {m['latency_ns']:.2f} ns at {m['clock_mhz']:g} MHz; "
                   f"one BX (25 ns): {'fits' if m['fits_one_bx'] else 'no'}; two BX (50 ns): "
                   f"{'fits' if m['fits_two_bx'] else 'no'}; deepest stage {m['max_levels_per_stage']} levels "
                   f"(rough f_max {m['est_fmax_mhz']:.0f} MHz{'' if m['clock_plausible'] else ': target clock unlikely'})")
