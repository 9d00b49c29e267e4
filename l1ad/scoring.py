"""Trigger decisions for event files of any size: the bit-exact emulator over chunks, on Dask.

    res = score_file(qmodel, "zb.h5", chunk_size=200_000)                 # local Dask cluster
    res = score_file(qmodel, "zb.h5", scheduler="tcp://10.0.0.5:8786")    # an existing cluster
    res = score_file(qmodel, "zb.h5", scheduler="sync")                    # in this process, no Dask
    write_scores(res, "zb_scores.h5")

Each chunk [start, stop) is a task that reads only its own events from the file (HDF5 slices or NanoAOD entry
ranges), converts them to hardware units and runs ``firmware.emulate``: the score codes and the trigger bits are
those of the firmware, not of a float model. The file is never loaded whole, in this process or any worker;
results come back in file order and do not depend on the chunk size, the scheduler or the number of workers.
The workers must see the file at the same path (a shared file system on a real cluster).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CHUNK = 200_000


@dataclass
class FileScores:
    """The firmware's view of every event of a file, in file order."""

    path: str
    score_int: np.ndarray  # (N,) score codes (score_format)
    trigger: np.ndarray  # (N, n_thresholds) bool: score_int > thresholds[k]
    weight: np.ndarray  # (N,) event weights from the file
    thresholds: tuple[int, ...]
    score_format: str
    chunks: int
    seconds: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.score_int.shape[0])

    @property
    def score(self) -> np.ndarray:
        """Real score values."""
        from l1ad.firmware.fixed import FixedFormat

        return self.score_int.astype(np.float64) * 2.0 ** -FixedFormat.parse(self.score_format).frac

    def fired_fraction(self) -> np.ndarray:
        """Weighted fraction of events that fire each trigger bit."""
        w = self.weight.sum()
        return (self.weight[:, None] * self.trigger).sum(axis=0) / w if w > 0 else np.zeros(self.trigger.shape[1])


def score_chunk(qmodel_dict: dict, path: str, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One task: (score codes, trigger bits, weights) of events [start, stop) of `path` (module-level: pickled
    to the Dask workers with the QModel as a plain dict)."""
    from l1ad.firmware import QModel, emulate
    from l1ad.trigger.io import read_events
    from l1ad.trigger.l1units import hw_inputs

    q = QModel.from_dict(qmodel_dict)
    batch = read_events(path, start=start, stop=stop)
    res = emulate(q, hw_inputs(batch.objects), threads=1)
    return res.score_int.copy(), res.trigger.copy(), np.asarray(batch.weight, dtype=np.float64)


def chunk_ranges(n: int, chunk_size: int) -> list[tuple[int, int]]:
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]


def score_file(qmodel: Any, path: str | Path, *, chunk_size: int = DEFAULT_CHUNK, scheduler: str | None = None,
               n_workers: int | None = None, client: Any = None, progress: bool = True) -> FileScores:
    """Score every event of `path` with the bit-exact emulator of `qmodel` (a QModel with a score block), chunk
    by chunk. scheduler: None = a local Dask cluster (only started when there is more than one chunk),
    "sync" = in this process, otherwise a scheduler address; or pass an existing `client`."""
    from l1ad.firmware import QModel
    from l1ad.trigger.io import count_events

    if not isinstance(qmodel, QModel):
        raise TypeError(f"score_file needs a firmware.QModel, got {type(qmodel).__name__}")
    if qmodel.score is None:
        raise ValueError(f"QModel {qmodel.name!r} has no score block: nothing to trigger on")
    path = Path(path)
    n = count_events(path)  # raises a named EventDataError for missing / corrupt files
    ranges = chunk_ranges(n, chunk_size)
    qd = qmodel.to_dict()
    t0 = time.perf_counter()
    if client is None and (scheduler == "sync" or len(ranges) <= 1):
        parts = [score_chunk(qd, str(path), a, b) for a, b in _progress(ranges, len(ranges), progress, path)]
    elif client is not None:
        parts = _run(client, qd, path, ranges, progress)
    else:
        from l1ad.offline.toys_dask import dask_client

        with dask_client(scheduler, n_workers=n_workers) as c:
            parts = _run(c, qd, path, ranges, progress)
    k = len(qmodel.thresholds)
    cat = (lambda i, empty: np.concatenate([p[i] for p in parts]) if parts else empty)
    return FileScores(path=str(path), score_int=cat(0, np.zeros(0, dtype=np.int64)),
                      trigger=cat(1, np.zeros((0, k), dtype=bool)), weight=cat(2, np.zeros(0)),
                      thresholds=tuple(qmodel.thresholds), score_format=str(qmodel.score_format),
                      chunks=len(ranges), seconds=time.perf_counter() - t0,
                      meta={"qmodel": qmodel.name, "chunk_size": chunk_size, "scheduler": scheduler or "local"})


def _progress(items, total: int, show: bool, path: Path):
    """`items`, with a tqdm bar in chunks when there is more than one."""
    if not show or total <= 1:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=f"scoring {path.name}", unit="chunk")


def _run(client: Any, qd: dict, path: Path, ranges: list[tuple[int, int]], progress: bool) -> list:
    from distributed import as_completed

    q_future = client.scatter(qd, broadcast=True)
    futures = [client.submit(score_chunk, q_future, str(path), a, b, pure=False) for a, b in ranges]
    order = {f.key: i for i, f in enumerate(futures)}
    out: list = [None] * len(futures)
    for fut in _progress(as_completed(futures), len(futures), progress, path):
        out[order[fut.key]] = fut.result()
    return out


def write_scores(res: FileScores, out_path: str | Path) -> Path:
    """Write the scores and trigger bits to HDF5 atomically (datasets score_int, score, trigger, weight)."""
    from l1ad.trigger.io import write_h5_atomic

    def fill(f) -> None:
        f.create_dataset("score_int", data=res.score_int, compression="gzip")
        f.create_dataset("score", data=res.score, compression="gzip")
        f.create_dataset("trigger", data=res.trigger, compression="gzip")
        f.create_dataset("weight", data=res.weight, compression="gzip")
        f.attrs["source"] = res.path
        f.attrs["thresholds"] = np.asarray(res.thresholds, dtype=np.int64)
        f.attrs["score_format"] = res.score_format
        f.attrs["qmodel"] = str(res.meta.get("qmodel", ""))

    return write_h5_atomic(out_path, fill)  # a full disk: one named error, no partial file
