"""`l1ad rates`: thresholds for target rates, rate curve, reference-menu pure rates, signal efficiencies, ROC."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import click


def parse_rates_khz(text: str) -> tuple[float, ...]:
    """'1,5,10,100' -> (1.0, 5.0, 10.0, 100.0); a clear error for anything else."""
    try:
        vals = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated rates in kHz like 1,5,10,100, got {text!r}") from None
    if not vals:
        raise click.BadParameter("no target rate given")
    return vals


def parse_signal(spec: str) -> tuple[str, Path]:
    """'NAME=FILE' or 'FILE' (named by the file's stem)."""
    name, sep, file = spec.partition("=")
    if sep and name and not Path(spec).exists():
        return name, Path(file)
    return Path(spec).stem, Path(spec)


def rates_for_model(model, zb, signals: Mapping, config, out_dir: str | Path) -> Path:
    """Score the zero-bias batch and each signal batch with `model.score(batch)`, evaluate, and write
    out_dir/rates.json (atomically) and the PNG plots. Returns the JSON path."""
    from l1ad.trigger.atomic import write_json_atomic
    from l1ad.trigger.rate_plots import write_plots
    from l1ad.trigger.rate_report import evaluate

    report = evaluate(zb, model.score(zb), {k: (b, model.score(b)) for k, b in signals.items()}, config)
    out = Path(out_dir)
    path = write_json_atomic(out / "rates.json", report.to_dict())
    write_plots(report, out)
    return path


@click.command("rates")
@click.argument("model_dir", type=click.Path(exists=True))
@click.argument("zb_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--signal", "signals", multiple=True, metavar="[NAME=]FILE",
              help="Signal event file (repeatable); named by the file stem unless NAME= is given.")
@click.option("--rates", "rates_khz", default=None, metavar="R1,R2,..",
              help="Target rates in kHz [default 1,5,10,100, or the config's].")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="YAML/JSON file with RatesConfig fields (target_rates_khz, menu, stat_method, cl, ...).")
@click.option("--stat-method", type=click.Choice(["clopper-pearson", "jeffreys", "normal"]), default=None,
              help="Interval method for rates and efficiencies [clopper-pearson].")
@click.option("--cl", type=float, default=None, help="Confidence level of the intervals [0.6827].")
@click.option("--max-events", type=click.IntRange(min=1), default=None, help="Read at most this many events per file.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
def command(model_dir, zb_file, signals, rates_khz, config_file, stat_method, cl, max_events, out_dir) -> None:
    """Thresholds on MODEL_DIR's anomaly score for target L1 rates on the zero-bias ZB_FILE, with uncertainties;
    the rate curve; pure rates against a reference L1 menu; per-signal efficiency at each rate, ROC, AUC and
    TPR at FPR 1e-5. The trigger fires when score > threshold. Writes OUT/rates.json and PNG plots."""
    import warnings

    from l1ad.config import read_mapping, validate_section
    from l1ad.trigger.io import read_events, require_events
    from l1ad.trigger.modeldir import load_model
    from l1ad.trigger.rate_report import RatesConfig
    from l1ad.trigger.rates import RateStatisticsWarning

    fields = read_mapping(config_file, "RatesConfig fields") if config_file else {}
    if "rates" in fields and isinstance(fields["rates"], dict):  # a whole l1ad config: its rates section
        fields = fields["rates"]
    if rates_khz is not None:
        fields["target_rates_khz"] = parse_rates_khz(rates_khz)
    if stat_method is not None:
        fields["stat_method"] = stat_method
    if cl is not None:
        fields["cl"] = cl
    cfg = validate_section(RatesConfig, fields, config_file or "options")

    specs: dict[str, Path] = {}
    for spec in signals:  # every input checked (names, files, event counts) before the model is loaded
        name, path = parse_signal(spec)
        if name in specs:
            raise click.BadParameter(f"two signals named {name!r}; use NAME=FILE", param_hint="--signal")
        if not path.is_file():
            raise click.BadParameter(f"{path}: no such file", param_hint="--signal")
        specs[name] = path
    for path in (Path(zb_file), *specs.values()):
        require_events(path, what="`l1ad rates`")
    model = load_model(model_dir)
    zb = read_events(zb_file, stop=max_events)
    sig = {name: read_events(path, stop=max_events) for name, path in specs.items()}

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RateStatisticsWarning)
        path = rates_for_model(model, zb, sig, cfg, out_dir)
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    _summary(path)


def _summary(path: Path) -> None:
    import json

    d = json.loads(path.read_text())
    click.echo(f"zero-bias rate {d['conventions']['zero_bias_rate_hz'] / 1e3:.1f} kHz; fires when score > threshold")
    for t, p in zip(d["thresholds"], d["pure_rates"]):
        click.echo(f"  target {t['target_hz'] / 1e3:8.3f} kHz: threshold {t['threshold']:<12.6g} rate "
                   f"{t['rate_hz'] / 1e3:.3f} [{t['rate_lo_hz'] / 1e3:.3f}, {t['rate_hi_hz'] / 1e3:.3f}] kHz, "
                   f"pure {p['pure_rate_hz'] / 1e3:.3f} kHz")
    click.echo(f"  menu total {d['menu']['total']['rate_hz'] / 1e3:.1f} kHz")
    for name, s in d["signals"].items():
        effs = ", ".join(f"{e['efficiency']:.3g}" for e in s["efficiency_at_rate"])
        tprs = ", ".join(f"TPR@{t['fpr']:g} {t['tpr']:.3g}" for t in s["tpr_at_fpr"])
        click.echo(f"  {name}: AUC {s['auc']:.4f}, {tprs}, efficiency at targets [{effs}]")
    click.echo(str(path))
