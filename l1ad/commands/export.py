"""`l1ad export`: export a trained model to firmware. Subcommands: `hls` (Vitis HLS project, C-simulation check)."""
from __future__ import annotations

from pathlib import Path

import click


@click.group("export")
def command() -> None:
    """Export a trained model: the IR, HLS project, Verilog RTL."""


@command.command("hls")
@click.argument("model_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Project directory to write (replaced atomically).")
@click.option("--verify", "n_verify", type=click.IntRange(min=0), default=0, show_default=True,
              help="C-simulate N events (zero-bias-like, signal-like, edge vectors) against the bit-exact emulator; "
                   "writes OUT/verification.json and fails on any mismatch.")
@click.option("--thresholds", "threshold_codes", default=None,
              help="Comma-separated integer threshold codes of the score format (trigger bit k = score > code k).")
@click.option("--rates-json", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Take the thresholds from an `l1ad rates` report (rates.json).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="YAML with HLSConfig fields (project_name, part, clock_period_ns, clock_uncertainty, reuse_factor, "
                   "tb_vectors).")
@click.option("--input-format", default=None, help="Format of the raw hardware-unit input (default ap_int<18>).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the verification vectors.")
@click.option("--drop-softmax", is_flag=True, help="Import a trailing softmax as its logits (argmax unchanged).")
def hls(model_dir: Path, out_dir: Path, n_verify: int, threshold_codes: str | None, rates_json: Path | None,
        config_path: Path | None, input_format: str | None, seed: int, drop_softmax: bool) -> None:
    """Write a Vitis HLS project (io_parallel, Latency) for MODEL_DIR (a trained model directory, a Keras
    .h5/.keras file, a QONNX .onnx file or a qmodel.json), built from the quantized-model IR: the network layer by
    layer (hls4ml's nnet_utils for dense layers), with the input scaling, anomaly score and threshold
    comparators in the top level."""
    import shutil
    import tempfile

    from l1ad.firmware.hls import HLSConfig, export_hls, verify_project
    from l1ad.firmware.hls.frontends import QONNX_FILE, load_source, source_agreement, thresholds_from_rates
    from l1ad.firmware.hls.vectors import make_vectors
    from l1ad.trigger.atomic import write_json_atomic

    cfg = HLSConfig()
    if config_path is not None:
        from l1ad.config import read_mapping

        data = read_mapping(config_path, "HLSConfig fields")
        sect = data.get("firmware", data)  # a full l1ad config, a firmware section, or HLSConfig fields
        cfg = HLSConfig.model_validate(sect.get("hls", sect) if isinstance(sect, dict) else sect)
    if threshold_codes and rates_json:
        raise click.UsageError("give --thresholds or --rates-json, not both")
    codes: list[int] = []
    if threshold_codes:
        try:
            codes = [int(c) for c in threshold_codes.split(",") if c.strip()]
        except ValueError:
            raise click.BadParameter(f"expected comma-separated integers, got {threshold_codes!r}",
                                     param_hint="--thresholds") from None
    with tempfile.TemporaryDirectory(prefix="l1ad-export-") as work:
        q, source, tm = load_source(model_dir, work, input_format=input_format,
                                    softmax="drop" if drop_softmax else "refuse")
        if codes:
            q = q.with_thresholds(codes)
        if rates_json is not None:
            q = q.with_thresholds(thresholds_from_rates(q, rates_json))
        project = export_hls(q, None, out_dir, cfg)
        if isinstance(source, Path) and source.resolve() != (out_dir / QONNX_FILE).resolve():
            shutil.copyfile(source, out_dir / QONNX_FILE)
    click.echo(f"wrote {out_dir} ({project.source_kind} IR -> {cfg.backend} HLS, top '{cfg.project_name}', "
               f"part {cfg.part}, {cfg.clock_period_ns} ns)")
    for w in q.warnings:
        click.echo(f"  IR warning: {w}")
    if n_verify:
        sets = make_vectors(q, n_verify, seed=seed)
        rep = verify_project(project, n_verify, seed=seed, sets=sets)
        rep["framework_vs_emulator"] = {k: source_agreement(q, source, tm, v) for k, v in sets.items()}
        write_json_atomic(out_dir / "verification.json", rep)
        t = rep["timing"]
        click.echo(f"C simulation vs emulator: {rep['n_events']} events, mismatches outputs={rep['mismatches']['outputs']} "
                   f"score={rep['mismatches']['score']} trigger={rep['mismatches']['trigger']} "
                   f"(compile {t['compile_s']:.1f} s, {t['csim_events_per_s']} events/s)")
        fw = {k: v for k, v in rep["framework_vs_emulator"].items() if v is not None}
        if fw:
            click.echo(f"{next(iter(fw.values()))['compared']} vs emulator: output mismatches "
                       + ", ".join(f"{k}={v['output_mismatches']}/{v['n_values']}" for k, v in fw.items()))
        else:
            click.echo("no source framework model (a qmodel.json): compared with the emulator only")
        click.echo(f"report: {out_dir / 'verification.json'}")
        if not rep["passed"]:
            raise click.ClickException("the C simulation does not match the emulator bit for bit")
        fw_bad = {k: v["output_mismatches"] for k, v in fw.items() if v["output_mismatches"]}
        if fw_bad:  # emulator == C-sim can both be wrong if the import read the wrong graph
            why = "; IR warnings: " + " | ".join(q.warnings) if q.warnings else ""
            raise click.ClickException(f"the source framework's prediction differs from the emulator (output "
                                       f"mismatches per vector set: {fw_bad}){why}")


# `l1ad export verilog` lives in its own module (firmware.verilog front end).
from .export_verilog import verilog as _verilog  # noqa: E402

command.add_command(_verilog)
