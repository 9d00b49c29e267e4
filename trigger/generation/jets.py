"""Jet clustering of flat per-event particle arrays through FastJet's awkward (multi-event) interface,
and per-event ranking helpers. No Python loop over events or particles."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .particles import silence_fastjet_banner


def to_awkward(px, py, pz, e, counts):
    """Flat columns + per-event counts -> the jagged record array FastJet's multi-event interface reads."""
    import awkward as ak

    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    content = ak.contents.RecordArray(
        [ak.contents.NumpyArray(np.ascontiguousarray(a, dtype=np.float64)) for a in (px, py, pz, e)],
        ["px", "py", "pz", "E"],
    )
    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), content))


@dataclass(frozen=True)
class Jets:
    """Flat jet kinematics with per-event counts; `constituents` (optional) holds, per jet, the indices of
    its constituents in the flat input arrays (CSR: `constituent_counts`)."""

    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    counts: np.ndarray
    constituents: np.ndarray | None = None
    constituent_counts: np.ndarray | None = None

    @cached_property
    def event(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.counts)), self.counts)

    @cached_property
    def pt(self) -> np.ndarray:
        return np.hypot(self.px, self.py)

    @cached_property
    def eta(self) -> np.ndarray:
        pt = self.pt
        return np.arcsinh(self.pz / np.where(pt > 0, pt, 1e-9))

    @cached_property
    def phi(self) -> np.ndarray:
        return np.arctan2(self.py, self.px)

    @cached_property
    def mass(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.e**2 - self.px**2 - self.py**2 - self.pz**2, 0.0))


def cluster(px, py, pz, e, counts, *, r: float, min_pt: float, algorithm: str = "antikt",
            with_constituents: bool = False) -> Jets:
    """Cluster every event's particles into inclusive jets with pT > min_pt (E-scheme)."""
    import awkward as ak
    import fastjet

    silence_fastjet_banner()
    counts = np.asarray(counts, dtype=np.int64)
    n_ev = len(counts)
    if n_ev == 0 or counts.sum() == 0:
        z = np.zeros(0)
        return Jets(z, z, z, z, np.zeros(n_ev, np.int64), np.zeros(0, np.int64) if with_constituents else None,
                    np.zeros(0, np.int64) if with_constituents else None)
    algo = {"antikt": fastjet.antikt_algorithm, "kt": fastjet.kt_algorithm, "cambridge": fastjet.cambridge_algorithm}[algorithm]
    cs = fastjet.ClusterSequence(to_awkward(px, py, pz, e, counts), fastjet.JetDefinition(algo, r))
    jets = cs.inclusive_jets(min_pt=min_pt)
    out = {c: ak.to_numpy(ak.flatten(getattr(jets, c))) for c in ("px", "py", "pz", "E")}
    njet = ak.to_numpy(ak.num(jets)).astype(np.int64)
    cons = cons_counts = None
    if with_constituents:
        idx = cs.constituent_index(min_pt=min_pt)  # [event][jet][index into that event's particles]
        cons_counts = ak.to_numpy(ak.flatten(ak.num(idx, axis=2))).astype(np.int64)
        local = ak.to_numpy(ak.flatten(idx, axis=None)).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        jet_event = np.repeat(np.arange(n_ev), njet)
        cons = local + np.repeat(offsets[jet_event], cons_counts)
    return Jets(out["px"], out["py"], out["pz"], out["E"], njet, cons, cons_counts)


def rank_in_event(event: np.ndarray, key: np.ndarray, n_events: int) -> tuple[np.ndarray, np.ndarray]:
    """Order items by event, then by decreasing `key`; return (order, rank of each ordered item in its event)."""
    order = np.lexsort((-key, event))
    ev = event[order]
    first = np.searchsorted(ev, np.arange(n_events))
    rank = np.arange(len(order)) - first[ev]
    return order, rank


def tau_n(px, py, pz, e, counts, *, r0: float, n_max: int = 3) -> np.ndarray:
    """N-subjettiness tau_1..tau_n_max of each "event" (here: each jet's constituents), with exclusive-kt
    axes, beta = 1 and the normalised measure: tau_N = sum_k pT_k min_a dR(k, a) / (sum_k pT_k R0).

    Uses FastJet-contrib's Nsubjettiness through the awkward interface (`njettiness`, KT_Axes), which the
    fastjet 3.5.2.0 wheel ships. Jets with fewer than N constituents get tau_N = 0. Returns (n_jets, n_max)."""
    import awkward as ak
    import fastjet

    silence_fastjet_banner()
    counts = np.asarray(counts, dtype=np.int64)
    if len(counts) == 0:
        return np.zeros((0, n_max))
    cs = fastjet.ClusterSequence(to_awkward(px, py, pz, e, counts), fastjet.JetDefinition(fastjet.antikt_algorithm, r0))
    taus = cs.njettiness(measure_definition="NormalizedMeasure", axes_definition="KT_Axes",
                         njets=list(range(1, n_max + 1)), beta=1.0, R0=r0)
    out = np.asarray(ak.to_numpy(taus), dtype=np.float64).reshape(len(counts), n_max)
    return np.where(np.isfinite(out), out, 0.0)
