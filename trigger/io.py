"""Event files: HDF5 in the ADC2021 layout (read in chunks, written atomically) and CMS NanoAOD L1 branches.

HDF5 layout (compatible with the ADC2021 challenge files, which load unchanged):
  Particles          (N, 19, 4) float  [Pt, Eta, Phi, Class]
  Particles_Names    (4,)  bytes       b"Pt", b"Eta", b"Phi", b"Class"
  Particles_Classes  (4,)  bytes       b"MET_class_1", b"Four_Ele_class_2", b"Four_Mu_class_3", b"Ten_Jet_class_4"
l1ad's extra fields (all optional when reading): Weight (N,), Process (N,) int16 with attribute `names` (JSON list),
NPU (N,) int16, a group Offline holding one (N,) dataset per offline field, and CaloRegions (N, 18, 14) uint16:
the calorimeter-region images (phi x eta regions, E_T in 0.5 GeV codes saturated at 1023, see trigger.calo; its
attributes record the axes, the LSB and the region edges). A file without CaloRegions loads with `calo` None.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from . import calo as calo_regions
from .atomic import atomic_path
from .errors import WRITE_ERRNOS, write_failed
from .events import (
    N_FEATURES,
    N_OBJECTS,
    OBJECT_SLOTS,
    OFFLINE_FIELDS,
    PARTICLE_NAMES,
    ROW_CLASS,
    EventBatch,
    EventDataError,
    calo_codes,
    slot_rows,
)

ADC_CLASS_NAMES = ("MET_class_1", "Four_Ele_class_2", "Four_Mu_class_3", "Ten_Jet_class_4")
DEFAULT_CHUNK = 200_000
HDF5_SUFFIXES = (".h5", ".hdf5")
ROOT_SUFFIXES = (".root",)
#: the dataset holding the calorimeter-region images
CALO_DATASET = "CaloRegions"


# ---------------------------------------------------------------------------------------------- HDF5
def write_h5_atomic(path: str | os.PathLike, fill: Callable[[Any], None]) -> Path:
    """Write an HDF5 file atomically: `fill(h5file)` builds it in memory, then its bytes go to a temporary
    sibling renamed onto `path`. A full disk (or quota, read-only folder) is a UserFileError naming `path` and
    leaves nothing behind; HDF5 itself never sees the failed write (it crashes the interpreter when it does)."""
    import io

    import h5py

    path = Path(path)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        fill(f)
    data = buf.getbuffer()
    try:
        with atomic_path(path, suffix=path.suffix or ".h5") as tmp:
            with open(tmp, "wb") as out:
                out.write(data)
    except OSError as e:
        if e.errno in WRITE_ERRNOS:
            raise write_failed(path, e) from None
        raise
    return path


def write_events(path: str | os.PathLike, batch: EventBatch, *, compression: str | None = "gzip") -> Path:
    """Write a batch to HDF5 (ADC2021 layout + l1ad fields), atomically."""
    batch.validate(source=str(path), allow_negative_weights=True)
    n = len(batch)
    particles = np.zeros((n, N_OBJECTS, 4), dtype=np.float32)
    particles[:, :, :3] = batch.objects
    particles[:, :, 3] = np.where(batch.present(), ROW_CLASS[None, :], 0)
    kw = {"compression": compression} if compression and n else {}

    def fill(f) -> None:
        f.create_dataset("Particles", data=particles, chunks=(min(max(n, 1), 4096), N_OBJECTS, 4) if n else None, **kw)
        f.create_dataset("Particles_Names", data=np.array([s.encode() for s in PARTICLE_NAMES]))
        f.create_dataset("Particles_Classes", data=np.array([s.encode() for s in ADC_CLASS_NAMES]))
        f.create_dataset("Weight", data=batch.weight, **kw)
        d = f.create_dataset("Process", data=batch.process, **kw)
        d.attrs["names"] = json.dumps(list(batch.process_names))
        f.create_dataset("NPU", data=batch.npu, **kw)
        g = f.create_group("Offline")
        for k, v in batch.offline.items():
            g.create_dataset(k, data=v, **kw)
        if batch.calo is not None:
            shape = (n, calo_regions.N_PHI, calo_regions.N_ETA)
            d = f.create_dataset(CALO_DATASET, data=batch.calo.astype(np.uint16), shape=shape,
                                 chunks=(min(max(n, 1), 4096), *shape[1:]) if n else None, **kw)
            for k, v in calo_regions.ATTRS.items():
                d.attrs[k] = v
        f.attrs["l1ad_format"] = 1

    return write_h5_atomic(path, fill)


def count_events(path: str | os.PathLike) -> int:
    """Number of events in a supported file, without loading it."""
    path = Path(path)
    if path.suffix in ROOT_SUFFIXES:
        return _nanoaod_tree(path).num_entries
    with _open_h5(path) as f:
        return int(_particles(f, path).shape[0])


def read_events(path: str | os.PathLike, *, start: int = 0, stop: int | None = None,
                allow_negative_weights: bool = False) -> EventBatch:
    """Read events [start, stop) from an HDF5 (ADC2021 layout) or NanoAOD ROOT file."""
    path = Path(path)
    if path.suffix in ROOT_SUFFIXES:
        return read_nanoaod(path, entry_start=start, entry_stop=stop)
    if path.suffix not in HDF5_SUFFIXES:
        raise EventDataError(f"unsupported file type; expected one of {HDF5_SUFFIXES + ROOT_SUFFIXES}", source=str(path))
    with _open_h5(path) as f:
        return _read_h5(f, path, start, stop, allow_negative_weights)


def require_events(path: str | os.PathLike, n: int | None = None, *, what: str = "this command") -> int:
    """The event count of `path` (or `n`, when already known); an EventDataError naming the file when it holds no
    events, so that nothing downstream runs (or writes) on an empty sample."""
    n = count_events(path) if n is None else n
    if n == 0:
        raise EventDataError(f"holds 0 events; {what} needs at least one", source=str(path))
    return n


def iter_events(path: str | os.PathLike, chunk_size: int = DEFAULT_CHUNK, **kw) -> Iterator[EventBatch]:
    """Yield the file's events in chunks of at most `chunk_size` (no whole-file load)."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    n = count_events(path)
    for start in range(0, n, chunk_size):
        yield read_events(path, start=start, stop=min(start + chunk_size, n), **kw)


def _open_h5(path: Path):
    import h5py

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        if not h5py.is_hdf5(str(path)):  # e.g. a log or text file: say what it is not, not that it is broken
            raise EventDataError("not an event file (HDF5 signature missing)", source=str(path)) from None
        raise EventDataError(f"not a readable HDF5 file (truncated or corrupt?): {e}", source=str(path)) from None


#: what a reader expects, for the messages: the ADC2021 layout and l1ad's optional fields
LAYOUT = ("an ADC2021-layout file: dataset 'Particles' (N, 19, 4) of real numbers [Pt, Eta, Phi, Class]; "
          "optional datasets Weight (N,), Process (N,) integers, NPU (N,) integers, CaloRegions (N, 18, 14) integers, "
          "and a group Offline of (N,) datasets")


def _dataset(f, name: str, path: Path):
    """f[name] checked to be a dataset of a real numeric dtype."""
    import h5py

    d = f[name]
    if not isinstance(d, h5py.Dataset):
        raise EventDataError(f"is an HDF5 {type(d).__name__.lower()}, not a dataset; expected {LAYOUT}",
                             source=str(path), field=name)
    if d.dtype.kind not in "fiu":
        raise EventDataError(f"dtype {d.dtype} is not allowed; expected real numbers (float or integer)",
                             source=str(path), field=name)
    return d


def _particles(f, path: Path):
    if "Particles" not in f:
        raise EventDataError(f"missing dataset 'Particles'; expected {LAYOUT}", source=str(path), field="Particles")
    d = _dataset(f, "Particles", path)
    if d.ndim != 3 or d.shape[1] != N_OBJECTS or d.shape[2] < N_FEATURES:
        raise EventDataError(f"expected shape (N, {N_OBJECTS}, 4), got {d.shape}", source=str(path), field="Particles")
    return d


def _read_dataset(f, name: str, path: Path, sl: slice, n: int):
    d = _dataset(f, name, path)
    if d.shape != (n,):
        raise EventDataError(f"expected {n} entries to match Particles, got shape {d.shape}", source=str(path), field=name)
    try:
        return d[sl]
    except OSError as e:
        raise EventDataError(f"cannot read (corrupt file?): {e}", source=str(path), field=name) from None


def _read_calo(f, path: Path, sl: slice, n: int) -> np.ndarray:
    """The calorimeter-region images of events `sl`: shape (n, 18, 14), integer codes (range checked by build)."""
    d = _dataset(f, CALO_DATASET, path)
    shape = (n, calo_regions.N_PHI, calo_regions.N_ETA)
    if d.shape != shape:
        raise EventDataError(f"expected shape {shape} (events x phi x eta regions, matching Particles), got {d.shape}",
                             source=str(path), field=CALO_DATASET)
    try:
        raw = d[sl]
    except OSError as e:
        raise EventDataError(f"cannot read (corrupt file?): {e}", source=str(path), field=CALO_DATASET) from None
    return calo_codes(raw, str(path), CALO_DATASET)


def _read_h5(f, path: Path, start: int, stop: int | None, allow_negative_weights: bool) -> EventBatch:
    parts = _particles(f, path)
    n = parts.shape[0]
    stop = n if stop is None else min(stop, n)
    if not 0 <= start <= stop:
        raise ValueError(f"{path}: bad event range [{start}, {stop}) for a file of {n} events")
    sl = slice(start, stop)
    try:
        p = np.asarray(parts[sl], dtype=np.float32)
    except OSError as e:
        raise EventDataError(f"cannot read (truncated or corrupt file?): {e}", source=str(path), field="Particles") from None
    names = ("unknown",)
    process = None
    if "Process" in f:
        process = _read_dataset(f, "Process", path, sl, n)
        raw = f["Process"].attrs.get("names")
        if raw is None:
            raise EventDataError("dataset has no 'names' attribute", source=str(path), field="Process")
        try:
            names = json.loads(raw)
        except (TypeError, ValueError):
            names = None
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
            raise EventDataError("attribute 'names' must be a JSON list of process names", source=str(path), field="Process")
        names = tuple(names)
    else:
        names = (path.stem,)
    offline = {}
    if "Offline" in f:
        import h5py

        if not isinstance(f["Offline"], h5py.Group):
            raise EventDataError(f"must be a group of (N,) datasets; expected {LAYOUT}", source=str(path), field="Offline")
        for k in f["Offline"]:
            if k not in OFFLINE_FIELDS:
                raise EventDataError(f"unknown offline field; allowed: {OFFLINE_FIELDS}", source=str(path), field=f"Offline/{k}")
            offline[k] = _read_dataset(f, f"Offline/{k}", path, sl, n)
    return EventBatch.build(
        p[:, :, :N_FEATURES],
        calo=_read_calo(f, path, sl, n) if CALO_DATASET in f else None,
        weight=_read_dataset(f, "Weight", path, sl, n) if "Weight" in f else None,
        process=process,
        process_names=names,
        npu=_read_dataset(f, "NPU", path, sl, n) if "NPU" in f else None,
        offline=offline,
        source=str(path),
        allow_negative_weights=allow_negative_weights,
    )


# ---------------------------------------------------------------------------------------------- NanoAOD
#: NanoAOD collection -> (l1ad object type, max objects). L1EtSum is handled separately (etSumType 2 = ETM, i.e. MET).
NANOAOD_COLLECTIONS = {"L1EG": "EGamma", "L1Mu": "Muon", "L1Jet": "Jet"}
NANOAOD_MET_TYPE = 2


def _nanoaod_tree(path: Path, tree: str = "Events"):
    import uproot

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        f = uproot.open(path)
    except Exception as e:  # uproot raises several types for corrupt files
        raise EventDataError(f"not a readable ROOT file: {e}", source=str(path)) from None
    if tree not in f:
        raise EventDataError(f"no TTree named {tree!r}", source=str(path))
    return f[tree]


def read_nanoaod(path: str | os.PathLike, *, entry_start: int = 0, entry_stop: int | None = None,
                 tree: str = "Events", process: str | None = None) -> EventBatch:
    """Read CMS NanoAOD L1 branches (L1EG, L1Mu, L1Jet, L1EtSum; bunch crossing 0 only) into an EventBatch.

    Objects are sorted by decreasing pT and truncated to the slot counts (4 e/gamma, 4 muons, 10 jets);
    MET is the L1EtSum entry with etSumType == 2. Weights are `genWeight` when present, else 1.
    """
    import awkward as ak

    path = Path(path)
    t = _nanoaod_tree(path, tree)
    needed = [f"{c}_{v}" for c in (*NANOAOD_COLLECTIONS, "L1EtSum") for v in ("pt", "eta", "phi")] + ["L1EtSum_etSumType"]
    missing = [b for b in needed if b not in t.keys() and not b.startswith("L1EtSum_eta")]
    if missing:
        raise EventDataError(f"missing NanoAOD branches {missing}", source=str(path))
    branches = [b for b in needed if b in t.keys()] + [b for b in t.keys() if b.endswith("_bx") or b == "genWeight"]
    arr = t.arrays(branches, entry_start=entry_start, entry_stop=entry_stop)
    n = len(arr)
    objects = np.zeros((n, N_OBJECTS, N_FEATURES), dtype=np.float32)
    for coll, name in NANOAOD_COLLECTIONS.items():
        rows = slot_rows(name)
        pt, eta, phi = arr[f"{coll}_pt"], arr[f"{coll}_eta"], arr[f"{coll}_phi"]
        if f"{coll}_bx" in arr.fields:
            keep = arr[f"{coll}_bx"] == 0
            pt, eta, phi = pt[keep], eta[keep], phi[keep]
        order = ak.argsort(pt, ascending=False)
        width = rows.stop - rows.start
        for j, comp in enumerate((pt, eta, phi)):
            padded = ak.fill_none(ak.pad_none(comp[order], width, clip=True), 0.0)
            objects[:, rows, j] = ak.to_numpy(padded).astype(np.float32)
    met = arr["L1EtSum_etSumType"] == NANOAOD_MET_TYPE
    if "L1EtSum_bx" in arr.fields:
        met = met & (arr["L1EtSum_bx"] == 0)
    objects[:, 0, 0] = ak.to_numpy(ak.fill_none(ak.firsts(arr["L1EtSum_pt"][met]), 0.0))
    objects[:, 0, 2] = ak.to_numpy(ak.fill_none(ak.firsts(arr["L1EtSum_phi"][met]), 0.0))
    weight = ak.to_numpy(arr["genWeight"]).astype(np.float64) if "genWeight" in arr.fields else None
    return EventBatch.build(objects, weight=weight, process=process or path.stem, source=str(path),
                            allow_negative_weights=True)


def describe(path: str | os.PathLike, chunk_size: int = DEFAULT_CHUNK, *, allow_negative_weights: bool = False) -> dict:
    """Event count, weight sum, per-process counts and object multiplicities of a file, read in chunks.
    With `allow_negative_weights`, the events with negative weights and their weight sum are counted too."""
    total = {"file": str(path), "n_events": 0, "weight_sum": 0.0, "processes": {}, "multiplicity": {}}
    if allow_negative_weights:
        total.update(negative_weight_events=0, negative_weight_sum=0.0)
    mult_sum = {name: 0 for name, *_ in OBJECT_SLOTS}
    for b in iter_events(path, chunk_size, allow_negative_weights=allow_negative_weights):
        total["n_events"] += len(b)
        total["weight_sum"] += float(b.weight.sum())
        if allow_negative_weights:
            neg = b.weight < 0
            total["negative_weight_events"] += int(neg.sum())
            total["negative_weight_sum"] += float(b.weight[neg].sum())
        for p, c in b.summary()["processes"].items():
            total["processes"][p] = total["processes"].get(p, 0) + c
        for name in mult_sum:
            mult_sum[name] += int(b.multiplicity(name).sum())
    n = max(total["n_events"], 1)
    total["multiplicity"] = {k: v / n for k, v in mult_sum.items()}
    return total
