"""`l1ad run`: the end-to-end pipeline from data to discovery reach, cached stage by stage."""
from __future__ import annotations

from pathlib import Path

import click


def _stage_names() -> list[str]:
    """The pipeline's stage names, in order (the choices of --from)."""
    from l1ad.pipeline import build_stages

    return [s.name for s in build_stages()]


@click.command("run")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="YAML configuration on top of the built-in default (configs/default.yaml).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: the config's out_dir, 'out'; --quick: 'out/quick').")
@click.option("--quick", is_flag=True, help="CI-sized run (configs/quick.yaml on top): minutes, not tens of minutes.")
@click.option("--from", "from_stage", default=None, type=click.Choice(_stage_names()),
              help="Re-run this stage and every later one.")
@click.option("--only", default=None, help="Comma-separated stages to run; earlier ones must be finished.")
@click.option("--scheduler", default=None, help="Dask scheduler address (tcp://host:port); default: a local cluster.")
def command(config_path: Path | None, out_dir: Path | None, quick: bool, from_stage: str | None, only: str | None,
            scheduler: str | None) -> None:
    """Data -> training (QKeras, Brevitas) -> thresholds at each target rate -> HLS C-sim check -> Verilog
    co-simulation + Yosys -> triggered samples -> offline searches -> discovery reach -> summary.json, report.html."""
    from l1ad.config import load_config
    from l1ad.pipeline import build_stages, run_pipeline
    from l1ad.stages import check_selection, output_lock

    overrides = {"dask": {"scheduler": scheduler}} if scheduler else None
    cfg = load_config(config_path, quick=quick, overrides=overrides)  # every key checked before any work
    stages = set(s.strip() for s in only.split(",") if s.strip()) if only is not None else None
    check_selection([s.name for s in build_stages()], from_stage, stages)
    out = out_dir or (Path(cfg.out_dir) / "quick" if quick else Path(cfg.out_dir))
    if out.exists() and not out.is_dir():
        raise click.BadParameter(f"{out} exists and is not a folder", param_hint="--out")
    with output_lock(out):  # a second run into the same folder is refused while this one lives
        result = run_pipeline(cfg, out, from_stage=from_stage, only=stages)
    click.echo(f"summary: {result['summary']}")
    click.echo(f"report:  {result['report']}")
    _echo_flags(Path(result["summary"]))


def _echo_flags(summary: Path) -> None:
    """The report's verdicts in one line, then every failed check on its own line."""
    import json

    flags = json.loads(summary.read_text()).get("flags", [])
    n = {lv: sum(f["level"] == lv for f in flags) for lv in ("bad", "warn", "ok")}
    click.echo(f"checks:  {n['bad']} failed, {n['warn']} to read with care, {n['ok']} passed (see the report)")
    for f in flags:
        if f["level"] == "bad":
            click.secho(f"  FAILED {f['text']}", fg="red", err=True)
