"""`l1ad data`: generate, inspect and plot event files."""
from __future__ import annotations

import json

import click


@click.group("data")
def command() -> None:
    """Generate, inspect and plot event files (HDF5 ADC2021 layout or NanoAOD ROOT)."""


@command.command("info")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(file: str, as_json: bool) -> None:
    """Event count, object multiplicities per type and the weight sum of FILE."""
    from trigger.io import describe

    d = describe(file)
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
    for p, c in d["processes"].items():
        t.add_row(f"  process {p}", f"{c:,}")
    for k, v in d["multiplicity"].items():
        t.add_row(f"  <n {k}>", f"{v:.3f}")
    Console().print(t)


@command.command("plot")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", default=None, help="Output folder (default: FILE's stem + '_plots').")
def plot(file: str, out_dir: str | None) -> None:
    """Validation plots of FILE: multiplicities, pT / eta spectra, m_jj, weights."""
    from pathlib import Path

    from trigger.data_plots import plot_file

    out = Path(out_dir) if out_dir else Path(file).with_name(Path(file).stem + "_plots")
    for p in plot_file(file, out):
        click.echo(str(p))
