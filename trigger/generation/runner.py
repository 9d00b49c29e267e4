"""Running the generator: chunked Pythia tasks on Dask, reproducible seeds, a progress bar, a content-hash cache.

Work is split into chunks of `chunk_size` events per process. Chunk i of process P gets the Pythia seed
derived from (master seed, P, i) by `chunk_seed`, and its pile-up/smearing random stream from the same
seed, so the output depends only on the configuration: the same seed gives identical files whatever the
number of workers (results are put back in chunk order). Chunks run on a `dask.distributed` cluster: a
`LocalCluster` of single-threaded worker processes (one per core) by default, or the scheduler at
`scheduler=` (an address such as tcp://host:8786); `scheduler="sync"` runs them in this process.

Caching has two levels, both keyed by `trigger.atomic.content_hash` of what decides the result:
* every process's events (all generated events, before the stitching cut and filters) are stored under
  `cache_dir/processes/<name>-<hash>.npz` as soon as its last chunk finishes, so an interrupted run resumes;
* the published samples in `out_dir` carry the hash of the whole configuration in `manifest.json`; a second
  run with the same configuration returns at once.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..atomic import atomic_path, content_hash, write_json_atomic
from ..events import OFFLINE_FIELDS, EventBatch
from .config import GENERATOR_VERSION, GenerationConfig
from .processes import (
    MINBIAS_CLOSURE,
    PILEUP_POOL,
    ZERO_BIAS_SAMPLE,
    Process,
    closure_process,
    known_samples,
    pileup_pool_process,
    selected_processes,
    signal_process,
    zero_bias_processes,
)

MANIFEST = "manifest.json"
CLOSURE_FIGURE = "stitching_closure.png"
#: events reconstructed at once (bounds the memory of the tower and isolation arrays)
RECO_BATCH = 250


def default_cache_dir() -> Path:
    return Path(os.environ.get("L1AD_CACHE_DIR", ".l1ad-cache")) / "generation"


def chunk_seed(master_seed: int, process: str, index: int) -> int:
    """Pythia seed (1 .. 900,000,000) of chunk `index` of `process`, derived from the master seed."""
    return int(content_hash(["l1ad-generation", master_seed, process, index]), 16) % 900_000_000 + 1


@dataclass(frozen=True)
class Chunk:
    process: Process
    index: int
    n_events: int
    seed: int


def plan_chunks(cfg: GenerationConfig, process: Process) -> list[Chunk]:
    n = cfg.size(process.name)
    sizes = [min(cfg.chunk_size, n - s) for s in range(0, n, cfg.chunk_size)]
    return [Chunk(process, i, k, chunk_seed(cfg.seed, process.name, i)) for i, k in enumerate(sizes)]


# ------------------------------------------------------------------------------------------ one chunk
def run_chunk(chunk: Chunk, cfg_json: dict, pool: dict | None) -> dict:
    """Generate and reconstruct one chunk (runs on a worker). Returns plain numpy arrays and scalars."""
    from .config import GenerationConfig
    from .l1objects import l1_objects_and_regions
    from .offline import offline_fields
    from .particles import Particles, generate, make_pythia, overlay_pileup
    from .stitching import mpi_pt0, mpi_regularisation

    cfg = GenerationConfig.model_validate(cfg_json)
    det = cfg.detector
    p = chunk.process
    t0 = time.process_time()
    pythia = make_pythia(p.settings, seed=chunk.seed, sqrt_s=cfg.sqrt_s)
    parts, info = generate(pythia, chunk.n_events, eta_max=det.calo_eta_max)
    sigma_mb = float(pythia.infoPython().sigmaGen())
    if p.mpi_regularised:
        reg = mpi_regularisation(info["pthat"], info["alpha_s"], info["q2_ren"], pt0=mpi_pt0(pythia, cfg.sqrt_s),
                                 alpha_s_mz_mpi=pythia.settings.parm("MultipartonInteractions:alphaSvalue"))
    else:
        reg = np.ones(chunk.n_events)
    t_gen = time.process_time() - t0
    out = {"pthat": info["pthat"], "reg": reg, "sigma_mb": sigma_mb, "n": chunk.n_events, "cpu_gen": t_gen}
    if p.pileup is None:  # the pile-up pool keeps its particles
        out.update({f"particles_{k}": v for k, v in parts.arrays().items()})
        out["cpu_reco"] = 0.0
        return out
    rng = np.random.default_rng(np.random.SeedSequence([chunk.seed, 7]))
    pool_parts = Particles.from_arrays(pool) if pool is not None and cfg.pileup_mean > 0 else None
    objects, regions, npu, offline = [], [], [], {k: [] for k in OFFLINE_FIELDS}
    for lo in range(0, chunk.n_events, RECO_BATCH):
        hi = min(lo + RECO_BATCH, chunk.n_events)
        sub = parts.events(lo, hi)
        if pool_parts is not None:
            cap = {"soft": cfg.pthat_edges[0], "below": info["pthat"][lo:hi]}.get(p.pileup)
            sub, k = overlay_pileup(sub, pool_parts, cfg.pileup_mean, rng, pool_pthat=pool["pthat"], cap=cap,
                                    primary_counted=p.pileup in ("soft", "crossing"))
        else:
            k = np.zeros(hi - lo, dtype=np.int64)
        obj, reg = l1_objects_and_regions(sub, det, rng)
        objects.append(obj)
        regions.append(reg)
        npu.append(k)
        for key, v in offline_fields(sub, det).items():
            offline[key].append(v)
    out.update({
        "objects": np.concatenate(objects).astype(np.float32),
        "npu": np.concatenate(npu).astype(np.int16),
        "calo": np.concatenate(regions).astype(np.uint16),
        **{f"offline_{k}": np.concatenate(v).astype(np.float32) for k, v in offline.items()},
        "cpu_reco": time.process_time() - t0 - t_gen,
    })
    return out


# ------------------------------------------------------------------------------------------ cache
def process_key(cfg: GenerationConfig, process: Process, pool_key: str | None) -> str:
    return content_hash({
        "version": GENERATOR_VERSION, "name": process.name, "settings": list(process.settings),
        "n": cfg.size(process.name), "chunk_size": cfg.chunk_size, "seed": cfg.seed, "sqrt_s": cfg.sqrt_s,
        "pileup": process.pileup, "pileup_mean": cfg.pileup_mean if process.pileup else None,
        "pileup_cap": cfg.pthat_edges[0] if process.pileup == "soft" else None,
        "pool": pool_key if process.pileup else None,
        "detector": cfg.detector.model_dump(mode="json") if process.pileup else {"eta_max": cfg.detector.calo_eta_max},
    })


def _cache_file(cache_dir: Path, process: Process, key: str) -> Path:
    return cache_dir / "processes" / f"{process.name}-{key}.npz"


def _merge_chunks(results: list[dict]) -> dict:
    """Concatenate chunk results (in chunk order); per-chunk scalars become arrays."""
    merged = {}
    for k in results[0]:
        vals = [r[k] for r in results]
        merged[k] = np.concatenate(vals) if isinstance(vals[0], np.ndarray) else np.asarray(vals)
    return merged


def _save(path: Path, data: dict) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **data)


def _load(path: Path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def process_data(cfg: GenerationConfig, name: str, cache_dir: Path | None = None) -> dict:
    """The cached arrays of one generated process (raises FileNotFoundError if it was not generated)."""
    cache_dir = Path(cache_dir or default_cache_dir())
    procs = {p.name: p for p in [pileup_pool_process(), closure_process(), *zero_bias_processes(cfg)]}
    proc = procs.get(name) or signal_process(name, cfg)
    pool_key = process_key(cfg, pileup_pool_process(), None)
    path = _cache_file(cache_dir, proc, process_key(cfg, proc, pool_key))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: process {name!r} has not been generated with this configuration")
    return _load(path)


def process_batch(cfg: GenerationConfig, data: dict, name: str, weight: np.ndarray | None = None,
                  keep: np.ndarray | None = None) -> EventBatch:
    """An EventBatch of one process's cached events (optionally weighted and cut)."""
    keep = slice(None) if keep is None else keep
    return EventBatch.build(
        data["objects"][keep],
        weight=None if weight is None else weight[keep],
        process=name,
        npu=data["npu"][keep],
        offline={k: data[f"offline_{k}"][keep] for k in OFFLINE_FIELDS},
        calo=data["calo"][keep] if "calo" in data else None,
    )


# ------------------------------------------------------------------------------------------ executors
class _Executor:
    """Runs chunk tasks either on a Dask cluster or in this process; yields (chunk, result) as they finish."""

    def __init__(self, scheduler: str | None, workers: int | None):
        self.client = self.cluster = None
        self.sync = scheduler == "sync"
        if self.sync:
            return
        import logging

        from distributed import Client, LocalCluster

        if scheduler:
            self.client = Client(scheduler)
        else:
            n = workers or os.cpu_count() or 1
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                        silence_logs=logging.ERROR)
            self.client = Client(self.cluster)

    def share(self, obj):
        if self.sync or obj is None:
            return obj
        return self.client.scatter(obj, broadcast=True)

    def run(self, chunks: list[Chunk], cfg_json: dict, pool) -> Iterable[tuple[Chunk, dict]]:
        if self.sync:
            for c in chunks:
                yield c, run_chunk(c, cfg_json, pool)
            return
        from distributed import as_completed

        futures = {self.client.submit(run_chunk, c, cfg_json, pool, pure=False, key=f"{c.process.name}-{c.index}-{c.seed}"): c
                   for c in chunks}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _run_processes(procs: list[Process], cfg: GenerationConfig, ex: _Executor, pool, cache_dir: Path,
                   pool_key: str | None, bar) -> dict[str, dict]:
    """Run every chunk of `procs`, saving each process to the cache when its last chunk is in."""
    chunks = [c for p in procs for c in plan_chunks(cfg, p)]
    pending = {p.name: len(plan_chunks(cfg, p)) for p in procs}
    results: dict[str, dict[int, dict]] = {p.name: {} for p in procs}
    done: dict[str, dict] = {}
    by_name = {p.name: p for p in procs}
    cfg_json = cfg.model_dump(mode="json")
    for chunk, res in ex.run(chunks, cfg_json, pool):
        name = chunk.process.name
        results[name][chunk.index] = res
        bar.update(chunk.n_events)
        if len(results[name]) == pending[name]:
            merged = _merge_chunks([results[name][i] for i in range(pending[name])])
            _save(_cache_file(cache_dir, by_name[name], process_key(cfg, by_name[name], pool_key)), merged)
            done[name] = merged
            del results[name]
    for p in procs:  # a process with zero events has no chunks
        if p.name not in done:
            done[p.name] = {}
    return done


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="ev", unit_scale=True, desc=desc, disable=not enabled or total == 0,
                file=sys.stderr, dynamic_ncols=True, smoothing=0.05)


# ------------------------------------------------------------------------------------------ generate
def generate(
    cfg: GenerationConfig,
    out_dir: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    samples: Iterable[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Generate the samples (default: zero bias, the signals, the QCD dijet background) into `out_dir`.

    Writes `<sample>.h5` (trigger.io ADC2021 layout) per sample, `stitching_closure.png` when the zero-bias
    stream is made, and `manifest.json` (configuration hash, files, events, cross sections, CPU times,
    closure table). Returns the manifest. A finished `out_dir` with the same hash is returned untouched."""
    from ..io import write_events
    from .processes import SIGNALS

    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    wanted = tuple(samples) if samples is not None else (ZERO_BIAS_SAMPLE, *(cfg.signals or tuple(SIGNALS)), "qcd_dijet")
    bad = [s for s in wanted if s not in known_samples()]
    if bad:
        from .processes import UnknownSignalError

        raise UnknownSignalError(f"unknown sample(s) {bad}; known samples: {', '.join(known_samples())}")
    key = content_hash({"config": cfg.cache_dict(), "samples": sorted(wanted)})
    manifest_path = out_dir / MANIFEST
    old = _read_manifest(manifest_path)
    if old is not None and old.get("key") == key and all((out_dir / f).is_file() for f in old.get("files", {}).values()):
        log(f"generation cached ({key}): {out_dir}")
        return old

    procs = selected_processes(cfg, wanted)
    pool_proc = pileup_pool_process()
    pool_key = process_key(cfg, pool_proc, None)
    data: dict[str, dict] = {}
    missing = []
    for p in procs:
        f = _cache_file(cache_dir, p, process_key(cfg, p, pool_key))
        if f.is_file():
            data[p.name] = _load(f)
        elif cfg.size(p.name) > 0:
            missing.append(p)
        else:
            data[p.name] = {}
    t_start = time.perf_counter()
    if missing:
        total = sum(cfg.size(p.name) for p in missing)
        pool = None
        need_pool = cfg.pileup_mean > 0 and any(p.pileup for p in missing)
        pool_file = _cache_file(cache_dir, pool_proc, pool_key)
        if need_pool and pool_file.is_file():
            pool = _pool_arrays(_load(pool_file))
        elif need_pool:
            total += cfg.size(PILEUP_POOL)
        ex = _Executor(scheduler, workers)
        try:
            with _progress(total, progress, "generating") as bar:
                if need_pool and pool is None:
                    if cfg.size(PILEUP_POOL) == 0:
                        raise ValueError("pileup_mean > 0 needs a pile-up pool: sizes['pileup_pool'] must be > 0")
                    raw = _run_processes([pool_proc], cfg, ex, None, cache_dir, None, bar)[PILEUP_POOL]
                    pool = _pool_arrays(raw)
                data.update(_run_processes(missing, cfg, ex, ex.share(pool), cache_dir, pool_key, bar))
        finally:
            ex.close()
    wall = time.perf_counter() - t_start
    log(f"generated {len(missing)} process(es) in {wall:.1f} s" if missing else "all processes cached")

    manifest = {"key": key, "generator_version": GENERATOR_VERSION, "config": cfg.model_dump(mode="json"),
                "files": {}, "samples": {}, "processes": {}, "wall_seconds": wall}
    for p in procs:
        d = data[p.name]
        n = int(d["n"].sum()) if d else 0
        cpu = float(d["cpu_gen"].sum() + d["cpu_reco"].sum()) if d else 0.0
        manifest["processes"][p.name] = {
            "generated": n, "sigma_pb": _sigma_pb(d) if d else 0.0, "cpu_seconds": cpu,
            "events_per_cpu_second": n / cpu if cpu > 0 else None,
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    for sample in wanted:
        batch = assemble(cfg, sample, data)
        path = write_events(out_dir / f"{sample}.h5", batch)
        manifest["files"][sample] = path.name
        manifest["samples"][sample] = {"events": len(batch), "weight_sum": float(batch.weight.sum()),
                                       "processes": batch.summary()["processes"], "mean_npu": float(batch.npu.mean()) if len(batch) else 0.0}
        if sample == ZERO_BIAS_SAMPLE and data.get(MINBIAS_CLOSURE):
            from .stitching import plot_rate_closure

            ref = process_batch(cfg, data[MINBIAS_CLOSURE], MINBIAS_CLOSURE)
            manifest["reference_files"] = {MINBIAS_CLOSURE: write_events(out_dir / f"{MINBIAS_CLOSURE}.h5", ref).name}
            note = None
            if cfg.pileup_mean > 0:
                note = (f"minimum-bias pile-up drawn from a pool of {cfg.size(PILEUP_POOL):,} events: the unweighted\n"
                        "reference's tail rests on the pool's few hard events (see trigger.generation.stitching)")
            manifest["closure"] = plot_rate_closure(batch, ref, out_dir / CLOSURE_FIGURE, note=note)
            manifest["closure_figure"] = CLOSURE_FIGURE
    write_json_atomic(manifest_path, manifest)
    return manifest


def _pool_arrays(raw: dict) -> dict:
    """The pile-up pool for the workers: particle columns with its events sorted by pT-hat, and "pthat"."""
    from .particles import Particles

    parts = Particles.from_arrays({k[len("particles_"):]: v for k, v in raw.items() if k.startswith("particles_")})
    order = np.argsort(raw["pthat"], kind="stable")
    return {**parts.reorder(order).arrays(), "pthat": raw["pthat"][order]}


def _sigma_pb(d: dict) -> float:
    from .stitching import _sigma_pb as sigma_pb

    return sigma_pb(d)


def assemble(cfg: GenerationConfig, sample: str, data: dict[str, dict]) -> EventBatch:
    """One published sample from cached process arrays, cuts applied. Zero bias: crossing-fraction weights
    (`stitching.zero_bias_weights`); every other sample: sigma / N_generated in pb."""
    from .stitching import zero_bias_weights

    procs = zero_bias_processes(cfg) if sample == ZERO_BIAS_SAMPLE else [signal_process(sample, cfg)]
    present = [p for p in procs if data.get(p.name)]
    if sample == ZERO_BIAS_SAMPLE:
        weights = zero_bias_weights(cfg, [(p, data[p.name]) for p in present])
    else:
        weights = {p.name: np.full(int(data[p.name]["n"].sum()), _sigma_pb(data[p.name]) / int(data[p.name]["n"].sum()))
                   for p in present}
    parts = []
    for p in present:
        d = data[p.name]
        keep = np.ones(len(d["pthat"]), bool)
        if p.pthat_max is not None:
            keep &= d["pthat"] < p.pthat_max
        if p.ptj1_min is not None:
            keep &= d["offline_ptJ1"] > p.ptj1_min
        parts.append(process_batch(cfg, d, p.name, weights[p.name], keep))
    if not parts:
        return EventBatch.build(np.zeros((0, 19, 3)), process=sample)
    batch = EventBatch.concat(parts)
    if sample == ZERO_BIAS_SAMPLE:  # keep every component in the name table, in catalogue order
        names = tuple(p.name for p in procs)
        remap = np.array([names.index(x) for x in batch.process_names], dtype=np.int16)
        batch = EventBatch.build(batch.objects, weight=batch.weight, process=remap[batch.process], process_names=names,
                                 npu=batch.npu, offline=batch.offline, calo=batch.calo)
    return batch


def _read_manifest(path: Path) -> dict | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
