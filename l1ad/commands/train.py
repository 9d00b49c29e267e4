"""`l1ad train`: train a quantization-aware autoencoder (QKeras, Brevitas) or its float reference on an event file."""
from __future__ import annotations

from pathlib import Path

import click

from l1ad.trigger.models.backend import FRONTENDS


def _read(data_file: Path, max_events: int | None):
    from l1ad.trigger.io import read_events, require_events

    require_events(data_file, what="training")
    return read_events(data_file, stop=max_events)


def _arch(spec: str):
    """'ae' / 'vae', or a user's architecture YAML: a ConfigError naming the file, key and value when it is bad."""
    from l1ad.config import read_mapping, validate_section
    from l1ad.trigger.models.arch import ArchitectureConfig

    if spec in ("ae", "vae"):
        return ArchitectureConfig.resolve(spec)
    if not Path(spec).is_file():
        raise click.BadParameter(f"expected 'ae', 'vae' or an architecture YAML file; {spec!r} is neither",
                                 param_hint="--arch")
    return validate_section(ArchitectureConfig, read_mapping(spec, "ArchitectureConfig fields"), spec)


@click.command(name="train")
@click.argument("data_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--frontend", type=click.Choice(FRONTENDS), default="qkeras", show_default=True,
              help="QKeras or Brevitas quantization-aware model, or the float (unquantized) Keras reference.")
@click.option("--arch", "arch_spec", default="vae", show_default=True,
              help="'vae' (AXOL1TL-style, score sum mu^2; the default of l1ad run), 'ae' (dense autoencoder, "
                   "masked squared error), or an architecture YAML file.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Model directory to write (for --latent-scan: the scan directory).")
@click.option("--epochs", type=int, default=None, help="Maximum epochs (early stopping usually ends sooner).")
@click.option("--batch-size", type=int, default=None)
@click.option("--learning-rate", type=float, default=None)
@click.option("--patience", type=int, default=None, help="Early-stopping patience in epochs.")
@click.option("--val-fraction", type=float, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--threads", type=int, default=None, help="CPU threads for TensorFlow/torch (default: available cores).")
@click.option("--max-events", type=click.IntRange(min=1), default=None, help="Use only the first N events of the file.")
@click.option("--latent-scan", default=None, metavar="K1,K2,...",
              help="Train one model per latent size and plot validation loss against it (the elbow).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def command(data_file: Path, frontend: str, arch_spec: str, out_dir: Path, epochs, batch_size, learning_rate, patience,
            val_fraction, seed, threads, max_events, latent_scan, no_progress) -> None:
    """Train on DATA_FILE (weighted zero-bias events) and write a model directory."""
    from l1ad.config import validate_section
    from l1ad.trigger.errors import UserInputError
    from l1ad.trigger.train import TrainingConfig, train_model
    from l1ad.trigger.train import latent_scan as run_scan

    arch = _arch(arch_spec)
    overrides = dict(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, patience=patience,
                     val_fraction=val_fraction, seed=seed, threads=threads)
    cfg = validate_section(TrainingConfig, {**{k: v for k, v in overrides.items() if v is not None},
                                            "progress": not no_progress}, "command-line options")
    latents: list[int] = []
    if latent_scan:
        try:
            latents = [int(v) for v in latent_scan.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"expected comma-separated integers, got {latent_scan!r}", param_hint="--latent-scan") from None
        if not latents or min(latents) < 1:
            raise click.BadParameter(f"latent sizes must be integers >= 1, got {latent_scan!r}", param_hint="--latent-scan")
    batch = _read(data_file, max_events)
    try:  # a configured input size that does not match the file is the user's, before any training starts
        arch.check_n_inputs(batch.l1_inputs().shape[1], source=str(data_file))
    except ValueError as e:
        raise UserInputError(str(e)) from None
    if latent_scan:
        result = run_scan(frontend, arch, batch, cfg, latents, out_dir)
        for p in result["points"]:
            click.echo(f"latent {p['latent']:3d}: best {result['metric']} {p[result['metric']]:.5g} ({p['epochs_run']} epochs)")
        click.echo(f"elbow at latent {result['elbow']}; plot: {out_dir / 'latent_scan.png'}")
        return
    model = train_model(frontend, arch, batch, cfg, out_dir)
    tr = model.metadata["training"]
    click.echo(f"{frontend} {arch.kind} '{arch.name}': {len(batch)} events, {tr['epochs_run']} epochs in "
               f"{tr['train_seconds']:.1f} s, best validation loss {tr['best_val_loss']:.5g} (epoch {tr['best_epoch'] + 1})")
    click.echo(f"model directory: {out_dir}")
