"""Particle-level events as flat arrays (no per-particle Python): Pythia batches in, pile-up overlaid.

A `Particles` holds N events' visible final-state particles in CSR form: flat columns px, py, pz, e [GeV],
pid, charge (in units of e), `pu` (True for pile-up particles) and per-event `counts`. Neutrinos are dropped
(invisible) and so is everything outside the calorimeter acceptance |eta| < eta_max.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from functools import cached_property

import numpy as np

_FIELDS = ("px", "py", "pz", "e", "pid", "charge", "pu")
_NEUTRINOS = (12, 14, 16)


@dataclass(frozen=True)
class Particles:
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    pid: np.ndarray
    charge: np.ndarray
    pu: np.ndarray
    counts: np.ndarray

    @property
    def n_events(self) -> int:
        return len(self.counts)

    @cached_property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)])

    @cached_property
    def event(self) -> np.ndarray:
        """Event index of every particle."""
        return np.repeat(np.arange(self.n_events), self.counts)

    @cached_property
    def pt(self) -> np.ndarray:
        return np.hypot(self.px, self.py)

    @cached_property
    def eta(self) -> np.ndarray:
        return np.arcsinh(self.pz / self.pt)

    @cached_property
    def phi(self) -> np.ndarray:
        return np.arctan2(self.py, self.px)

    def mask(self, keep: np.ndarray) -> "Particles":
        """Keep the particles where `keep` is True (events are kept, possibly empty)."""
        counts = np.bincount(self.event[keep], minlength=self.n_events)
        return Particles(*(getattr(self, f)[keep] for f in _FIELDS), counts=counts)

    def arrays(self) -> dict[str, np.ndarray]:
        return {f: getattr(self, f) for f in (*_FIELDS, "counts")}

    @classmethod
    def from_arrays(cls, d) -> "Particles":
        return cls(**{f: np.asarray(d[f]) for f in (*_FIELDS, "counts")})

    def reorder(self, order: np.ndarray) -> "Particles":
        """The events in the given order."""
        idx = _segments(self.offsets[:-1][order], self.counts[order])
        return Particles(*(getattr(self, f)[idx] for f in _FIELDS), counts=self.counts[order])

    def events(self, lo: int, hi: int) -> "Particles":
        """Events [lo, hi) (views, no copy)."""
        a, b = self.offsets[lo], self.offsets[hi]
        return Particles(*(getattr(self, f)[a:b] for f in _FIELDS), counts=self.counts[lo:hi])


# ------------------------------------------------------------------------------------------------ Pythia
def make_pythia(settings: tuple[str, ...] | list[str], *, seed: int, sqrt_s: float):
    """An initialised, silenced Pythia instance (Print:quiet, no banner, no event listing)."""
    import pythia8mc

    with _quiet_stdout():
        p = pythia8mc.Pythia("", False)
        base = ("Print:quiet = on", "Next:numberCount = 0", f"Beams:eCM = {sqrt_s:g}",
                "Random:setSeed = on", f"Random:seed = {seed}")
        for s in (*base, *settings):
            if not p.readString(s):
                raise ValueError(f"Pythia rejected the setting {s!r}")
        if not p.init():
            raise RuntimeError(f"Pythia initialisation failed for settings {list(settings)}")
    return p


def generate(pythia, n: int, *, eta_max: float) -> tuple[Particles, dict[str, np.ndarray]]:
    """Generate `n` events with `pythia.nextBatch` and keep the visible final state within |eta| < eta_max.

    Returns the particles and per-event info: pthat (the hardest interaction's pT-hat [GeV]), alpha_s and
    q2_ren of the hard process (used by the MPI regularisation weight)."""
    import awkward as ak

    with _quiet_stdout():
        batch = pythia.nextBatch(n)
    if len(batch) != n:
        raise RuntimeError(f"Pythia returned {len(batch)} of {n} events")
    prt = batch.prt
    final = prt[prt.status > 0]
    counts = ak.to_numpy(ak.num(final))
    flat = ak.flatten(final)
    pid = ak.to_numpy(flat.id).astype(np.int32)
    p = flat.p
    px, py, pz, e = (ak.to_numpy(getattr(p, c)).astype(np.float64) for c in ("px", "py", "pz", "e"))
    charge = _charges(pythia, pid)
    parts = Particles(px, py, pz, e, pid, charge, np.zeros(len(pid), bool), counts)
    pt = parts.pt
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.where(pt > 0, pz / np.where(pt > 0, pt, 1.0), np.inf))
    keep = (pt > 1e-3) & (np.abs(eta) < eta_max) & ~np.isin(np.abs(pid), _NEUTRINOS)
    info = batch.info
    return parts.mask(keep), {
        "pthat": np.sqrt(ak.to_numpy(info.pT2Hat)),
        "alpha_s": ak.to_numpy(info.alphaS),
        "q2_ren": ak.to_numpy(info.Q2Ren),
    }


def _charges(pythia, pid: np.ndarray) -> np.ndarray:
    """Electric charge per particle from Pythia's particle table (looked up once per distinct id)."""
    ids, inv = np.unique(pid, return_inverse=True)
    table = np.array([pythia.particleData.charge(int(i)) for i in ids], dtype=np.float64)
    return np.rint(table[inv]).astype(np.int8)


@contextlib.contextmanager
def _quiet_stdout():
    """Silence C++ writes to stdout (FastJet's banner, stray Pythia lines) for the duration."""
    try:
        fd = os.dup(1)
    except OSError:  # no stdout to redirect
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            sys.stdout.flush()
            os.dup2(devnull.fileno(), 1)
            try:
                yield
            finally:
                sys.stdout.flush()
                os.dup2(fd, 1)
    finally:
        os.close(fd)


_BANNER_DONE = False


def silence_fastjet_banner() -> None:
    """FastJet prints its banner once per process, on first use: print it into the void now."""
    global _BANNER_DONE
    if not _BANNER_DONE:
        import fastjet._swig

        with _quiet_stdout():
            fastjet._swig.ClusterSequence.print_banner()
        _BANNER_DONE = True


# ------------------------------------------------------------------------------------------------ pile-up
def overlay_pileup(primary: Particles, pool: Particles, mean: float, rng: np.random.Generator, *,
                   pool_pthat: np.ndarray | None = None, cap: np.ndarray | float | None = None,
                   primary_counted: bool = False) -> tuple[Particles, np.ndarray]:
    """Overlay Poisson pile-up on every event, drawn with replacement from `pool`.

    Without `cap`: Poisson(`mean`) pool events per event. With `cap` (per event, or one value) only pool
    events whose pT-hat is below it may be drawn (`pool_pthat` must then be sorted ascending, the pool in
    that order), and their number is Poisson(mean x F), F the pool fraction below the cap: the other
    interactions of a crossing whose hardest interaction has pT-hat = cap. `primary_counted`: the primary is
    itself one of the Poisson(mean x F) interactions, so one fewer is overlaid (see stitching).
    Each drawn pool event is rotated by a random azimuth and mirrored in z with probability 1/2 (both are
    symmetries of minimum bias), which multiplies the pool's effective size. Returns the merged particles
    (each event: its own particles first, then its pile-up, flagged `pu`) and the pile-up count per event."""
    n = primary.n_events
    if cap is None:
        below = np.full(n, pool.n_events)
    else:
        if pool_pthat is None:
            raise ValueError("a pile-up cap needs the pool's sorted pT-hat values")
        below = np.searchsorted(pool_pthat, np.broadcast_to(np.asarray(cap, dtype=np.float64), (n,)), side="left")
    lam = mean * below / max(pool.n_events, 1)
    npu = rng.poisson(lam) if mean > 0 else np.zeros(n, dtype=np.int64)
    if primary_counted:
        npu = np.maximum(npu - 1, 0)
    npu = np.where(below > 0, npu, 0)
    n_inst = int(npu.sum())
    if n_inst == 0:
        return primary, np.zeros(n, dtype=np.int64)
    inst_event = np.repeat(np.arange(n), npu)
    pick = np.minimum((rng.random(n_inst) * below[inst_event]).astype(np.int64), below[inst_event] - 1)
    rot = rng.uniform(-np.pi, np.pi, n_inst)
    flip = np.where(rng.random(n_inst) < 0.5, -1.0, 1.0)
    lens = pool.counts[pick]
    src = _segments(pool.offsets[pick], lens)
    inst = np.repeat(np.arange(n_inst), lens)
    c, s = np.cos(rot)[inst], np.sin(rot)[inst]
    px0, py0 = pool.px[src], pool.py[src]
    pu_px, pu_py, pu_pz = c * px0 - s * py0, s * px0 + c * py0, pool.pz[src] * flip[inst]
    # merged layout: event e holds its primary particles, then its pile-up particles
    pu_counts = np.bincount(inst_event, weights=lens, minlength=n).astype(np.int64)
    counts = primary.counts + pu_counts
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    dst_primary = start[primary.event] + (np.arange(len(primary.px)) - primary.offsets[:-1][primary.event])
    pu_event = np.repeat(inst_event, lens)
    pu_start = np.concatenate([[0], np.cumsum(pu_counts)[:-1]])
    dst_pu = start[pu_event] + primary.counts[pu_event] + (np.arange(len(src)) - pu_start[pu_event])
    total = int(counts.sum())
    out = {}
    for f, a, b in (
        ("px", primary.px, pu_px), ("py", primary.py, pu_py), ("pz", primary.pz, pu_pz), ("e", primary.e, pool.e[src]),
        ("pid", primary.pid, pool.pid[src]), ("charge", primary.charge, pool.charge[src]),
        ("pu", np.zeros(len(primary.px), bool), np.ones(len(src), bool)),
    ):
        arr = np.empty(total, dtype=a.dtype)
        arr[dst_primary] = a
        arr[dst_pu] = b
        out[f] = arr
    return Particles(**out, counts=counts), npu


def _segments(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenated index ranges [starts[i], starts[i] + lens[i]) without a Python loop."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    return np.arange(total) + shift
