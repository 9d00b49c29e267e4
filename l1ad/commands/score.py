"""`l1ad score`: the firmware's trigger decisions for event files of any size, chunked on Dask."""
from __future__ import annotations

import contextlib
from pathlib import Path

import click


@click.command("score")
@click.argument("qmodel_path", type=click.Path(exists=True))
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder: <file stem>_scores.h5 per input file, and scores.json.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=200_000, show_default=True, help="Events per Dask task.")
@click.option("--scheduler", default=None, metavar="ADDRESS|sync",
              help="Dask scheduler address (tcp://host:8786); 'sync' runs in this process [default: local cluster].")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Local cluster workers [one per core, at most 4].")
def command(qmodel_path, files, out_dir, chunk_size, scheduler, workers) -> None:
    """Score FILES (HDF5 / NanoAOD) with the bit-exact emulator of QMODEL_PATH (a qmodel.json with thresholds,
    e.g. OUT/rates/<front-end>/qmodel.json of `l1ad run`, or a Verilog export's qmodel.json): score codes and one
    trigger bit per threshold for every event, chunk by chunk on Dask, never loading a file whole."""
    from l1ad.firmware import QModel
    from l1ad.trigger.atomic import write_json_atomic
    from l1ad.trigger.io import require_events

    p = Path(qmodel_path)
    if p.is_dir() and not (p / "qmodel.json").is_file():
        raise click.BadParameter(f"{p} holds no qmodel.json", param_hint="QMODEL_PATH")
    q = QModel.load(p / "qmodel.json" if p.is_dir() else p)
    if q.score is None:
        raise click.BadParameter(f"{p}: the QModel {q.name!r} has no score block, nothing to trigger on",
                                 param_hint="QMODEL_PATH")
    sizes = {f: require_events(f, what="scoring") for f in files}  # every file checked before any work
    out = Path(out_dir)
    summary = []
    with contextlib.ExitStack() as stack:
        client = None
        if scheduler != "sync" and any(n > chunk_size for n in sizes.values()):
            from l1ad.offline.toys_dask import dask_client

            client = stack.enter_context(dask_client(scheduler, n_workers=workers))  # one cluster for all files
        for f in files:
            summary.append(_one(q, f, out, chunk_size, scheduler, client))
    write_json_atomic(out / "scores.json", {"qmodel": str(p), "files": summary})


def _one(q, f: str, out: Path, chunk_size: int, scheduler, client) -> dict:
    from l1ad.scoring import score_file, write_scores

    res = score_file(q, f, chunk_size=chunk_size, scheduler=scheduler, client=client)
    dest = write_scores(res, out / f"{Path(f).stem}_scores.h5")
    frac = res.fired_fraction()
    rate = len(res) / max(res.seconds, 1e-9)
    click.echo(f"{f}: {len(res)} events in {res.chunks} chunks, {res.seconds:.1f} s ({rate:,.0f} events/s); "
               "fired fraction per threshold " + ", ".join(f"{x:.3g}" for x in frac) + f" -> {dest}")
    return {"file": str(f), "scores": str(dest), "events": len(res), "chunks": res.chunks, "seconds": res.seconds,
            "events_per_s": rate, "thresholds": list(res.thresholds), "fired_weight_fraction": frac.tolist()}
