"""`l1ad data`: generate, inspect and plot event files."""
from __future__ import annotations

import json

import click


@click.group("data")
def command() -> None:
    """Generate, inspect and plot event files (HDF5 ADC2021 layout or NanoAOD ROOT)."""


NEGATIVE_WEIGHTS_HELP = ("Accept negative event weights (NLO generators produce them): sums are signed; the "
                         "negative-weight events are counted apart.")


@command.command("info")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--allow-negative-weights", is_flag=True, help=NEGATIVE_WEIGHTS_HELP)
def info(file: str, as_json: bool, allow_negative_weights: bool) -> None:
    """Event count, object multiplicities per type and the weight sum of FILE."""
    from l1ad.trigger.io import describe

    d = describe(file, allow_negative_weights=allow_negative_weights)
    if d["n_events"] == 0:
        click.echo(f"note: {file} holds 0 events", err=True)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=str(file))
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_row("events", f"{d['n_events']:,}")
    t.add_row("weight sum", f"{d['weight_sum']:.6g}")
    if allow_negative_weights:
        t.add_row("  events with w < 0", f"{d['negative_weight_events']:,}")
        t.add_row("  sum of w < 0", f"{d['negative_weight_sum']:.6g}")
    for p, c in d["processes"].items():
        t.add_row(f"  process {p}", f"{c:,}")
    for k, v in d["multiplicity"].items():
        t.add_row(f"  <n {k}>", f"{v:.3f}")
    Console().print(t)


@command.command("plot")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", default=None, help="Output folder (default: FILE's stem + '_plots').")
@click.option("--allow-negative-weights", is_flag=True, help=NEGATIVE_WEIGHTS_HELP)
def plot(file: str, out_dir: str | None, allow_negative_weights: bool) -> None:
    """Validation plots of FILE: multiplicities, pT / eta spectra, m_jj, weights."""
    from pathlib import Path

    from l1ad.trigger.data_plots import plot_file

    out = Path(out_dir) if out_dir else Path(file).with_name(Path(file).stem + "_plots")
    for p in plot_file(file, out, allow_negative_weights=allow_negative_weights):
        click.echo(str(p))


@command.command("generate")
@click.option("--out", "out_dir", default="out/data", show_default=True, help="Output folder for the HDF5 samples.")
@click.option("--quick", is_flag=True, help="The small variant (a few thousand events per sample).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML with GenerationConfig fields (or an l1ad config: its `data:` section is used).")
@click.option("--seed", type=int, default=None, help="Master seed (overrides the configuration).")
@click.option("--pileup", type=float, default=None, help="Mean pile-up (overrides the configuration).")
@click.option("--sample", "samples", multiple=True,
              help="Produce only this sample (repeatable): zero_bias, a signal name, or qcd_dijet.")
@click.option("--scheduler", default=None,
              help="Dask scheduler address (tcp://host:8786); 'sync' runs in this process; default: a local cluster.")
@click.option("--workers", type=int, default=None, help="Local cluster workers (default: one per core).")
@click.option("--cache-dir", default=None, help="Generation cache (default: $L1AD_CACHE_DIR or .l1ad-cache, /generation).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def generate(out_dir: str, quick: bool, config_file: str | None, seed: int | None, pileup: float | None,
             samples: tuple[str, ...], scheduler: str | None, workers: int | None, cache_dir: str | None,
             no_progress: bool) -> None:
    """Generate the default data with Pythia 8 + FastJet: a stitched zero-bias-equivalent stream with pile-up,
    the ADC2021 benchmark signals, and an LHC-Olympics-style dijet resonance with its QCD background."""
    from pathlib import Path

    from pydantic import ValidationError

    from l1ad.config import ConfigError, format_validation_error, read_mapping
    from l1ad.trigger.generation import GenerationConfig, generate as run_generation

    fields: dict = {}
    if config_file:
        loaded = read_mapping(config_file, "GenerationConfig fields, or an l1ad config with a data: section")
        fields = loaded.get("data", loaded)
        if not isinstance(fields, dict):
            raise ConfigError(f"{config_file}: data must be a mapping of GenerationConfig fields, got {type(fields).__name__}")
    if seed is not None:
        fields["seed"] = seed
    if pileup is not None:
        fields["pileup_mean"] = pileup
    if workers is not None and workers < 1:
        raise click.BadParameter(f"must be >= 1, got {workers}", param_hint="--workers")
    source = config_file or "options"
    if not isinstance(fields.get("sizes", {}), dict):
        raise ConfigError(f"{source}: sizes must be a mapping of process name -> events, got {fields['sizes']!r}")
    try:
        cfg = GenerationConfig.quick(**fields) if quick else GenerationConfig(**fields)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
    manifest = run_generation(cfg, out_dir, cache_dir=cache_dir, scheduler=scheduler, workers=workers,
                              samples=samples or None, progress=not no_progress, log=lambda s: click.echo(s, err=True))
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{out_dir}  (config {manifest['key']})")
    for col, just in (("sample", "left"), ("events", "right"), ("weight sum", "right"), ("<PU>", "right"), ("file", "left")):
        t.add_column(col, justify=just)
    for name, s in manifest["samples"].items():
        t.add_row(name, f"{s['events']:,}", f"{s['weight_sum']:.4g}", f"{s['mean_npu']:.1f}", manifest["files"][name])
    Console().print(t)
    click.echo("weights: zero_bias = fraction of bunch crossings (sum 1); other samples = pb per event")
    if "closure_figure" in manifest:
        click.echo(f"stitching closure figure: {Path(out_dir) / manifest['closure_figure']}")
