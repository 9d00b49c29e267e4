"""The `l1ad` command line: one subcommand per stage, thin over the library (imports happen lazily)."""
from __future__ import annotations

import importlib
import os
import sys

# TensorFlow's C++ start-up chatter (CUDA factories, CPU features) is noise on a CPU-only machine.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import click

#: subcommand -> (module under l1ad.commands, one-line help). Modules are imported only when used,
#: so `l1ad --help` does not pay for TensorFlow / torch start-up.
STAGES: dict[str, tuple[str, str]] = {
    "data": ("data", "Generate, inspect and plot event files."),
    "train": ("train", "Train the quantization-aware autoencoders (QKeras, Brevitas)."),
    "rates": ("rates", "Thresholds for target rates, efficiencies, ROC curves."),
    "export": ("export", "Export a trained model: the IR, hls4ml project, Verilog RTL."),
    "score": ("score", "Trigger decisions of large event files with the bit-exact emulator, chunked on Dask."),
    "cosim": ("cosim", "Bit-exact RTL co-simulation with cocotb + Verilator."),
    "offline": ("offline", "Offline searches: bump hunt, conformal, two-sample, CWoLa, CATHODE, NPLM."),
    "run": ("run", "The end-to-end pipeline, from data to discovery reach."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands live in l1ad.commands.<module>.command, imported on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(STAGES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in STAGES:
            return None
        module = importlib.import_module(f"l1ad.commands.{STAGES[name][0]}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in STAGES.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="l1ad")
def cli() -> None:
    """l1ad: FPGA anomaly-detection trigger co-design, from events to bits to discovery reach."""


def main(argv: list[str] | None = None) -> int:
    """Entry point. A user error (l1ad.errors: bad file, key, value or option; an unusable output folder) is one
    line on stderr and exit code 2; any other exception is a bug and keeps its traceback."""
    from l1ad.errors import one_line, user_message

    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as e:
        return int(e.exit_code or 0)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.UsageError as e:
        click.echo(f"error: {_command_path(e.ctx)}{one_line(e.format_message())}", err=True)
        return 2
    except click.ClickException as e:
        click.echo(f"error: {one_line(e.format_message())}", err=True)
        return e.exit_code
    except Exception as e:
        msg = user_message(e)
        if msg is None:
            raise
        click.echo(f"error: {msg}", err=True)
        return 2
    return 0


def _command_path(ctx: click.Context | None) -> str:
    """'l1ad data plot: ' for the context of a usage error (the program name as the user knows it)."""
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return f"l1ad {' '.join(reversed(names))}: " if names else "l1ad: "


if __name__ == "__main__":
    sys.exit(main())
