"""Offline-level quantities (trigger.events.OFFLINE_FIELDS) from particles: m_jj and large-R substructure.

Offline particles: every visible particle of the primary interaction; of the pile-up, charged particles
inside the tracker are removed (charged-hadron subtraction) and the rest are kept above 1 GeV (a crude
PUPPI). Small-R jets: anti-kt R = 0.4, pT > 20 GeV, |eta| < 4.7; m_jj uses the two leading. Large-R jets:
anti-kt R = 1.0, pT > 100 GeV, |eta| < 2.5; the two leading give mJ1, mJ2, ptJ1, mJJ and the
N-subjettiness ratios tau21 = tau2/tau1, tau32 = tau3/tau2 (exclusive-kt axes, beta = 1, R0 = 1.0).
Undefined values are 0.0 (fewer jets than needed; a ratio with a zero denominator).
"""
from __future__ import annotations

import numpy as np

from ..events import OFFLINE_FIELDS
from .config import DetectorConfig
from .jets import Jets, cluster, rank_in_event, tau_n
from .particles import Particles, _segments


def offline_particles(parts: Particles, det: DetectorConfig) -> Particles:
    """The particles offline reconstruction sees after pile-up mitigation (see module docstring)."""
    pt, eta = parts.pt, parts.eta
    charged_tracked = (parts.charge != 0) & (np.abs(eta) < det.tracker_eta_max)
    keep = ~parts.pu | (~charged_tracked & (pt > det.offline_pu_pt_min))
    return parts.mask(keep)


def offline_fields(parts: Particles, det: DetectorConfig) -> dict[str, np.ndarray]:
    """All OFFLINE_FIELDS for every event, float32 (0.0 where undefined)."""
    n = parts.n_events
    p = offline_particles(parts, det)
    out = {k: np.zeros(n, dtype=np.float32) for k in OFFLINE_FIELDS}
    small = cluster(p.px, p.py, p.pz, p.e, p.counts, r=det.jet_r, min_pt=det.offline_jet_pt_min)
    j1, j2 = _leading_two(small, np.abs(small.eta) < det.offline_jet_eta_max, n)
    both = (j1 >= 0) & (j2 >= 0)
    out["mjj"][both] = _pair_mass(small, j1[both], j2[both])
    large = cluster(p.px, p.py, p.pz, p.e, p.counts, r=det.large_r, min_pt=det.large_r_pt_min, with_constituents=True)
    J1, J2 = _leading_two(large, np.abs(large.eta) < det.large_r_eta_max, n)
    mass, pt = large.mass, large.pt
    has1, has2 = J1 >= 0, J2 >= 0
    out["ptJ1"][has1] = pt[J1[has1]]
    out["mJ1"][has1] = mass[J1[has1]]
    out["mJ2"][has2] = mass[J2[has2]]
    out["mJJ"][has2] = _pair_mass(large, J1[has2], J2[has2])
    # substructure of the (at most two) leading large-R jets: their constituents as one "event" each
    chosen = np.concatenate([J1[has1], J2[has2]])
    if len(chosen):
        starts = np.concatenate([[0], np.cumsum(large.constituent_counts)[:-1]])
        lens = large.constituent_counts[chosen]
        ci = large.constituents[_segments(starts[chosen], lens)]
        taus = tau_n(p.px[ci], p.py[ci], p.pz[ci], p.e[ci], lens, r0=det.large_r, n_max=3)
        t21 = _ratio(taus[:, 1], taus[:, 0])
        t32 = _ratio(taus[:, 2], taus[:, 1])
        k1 = int(has1.sum())
        out["tau21_J1"][has1], out["tau32_J1"][has1] = t21[:k1], t32[:k1]
        out["tau21_J2"][has2], out["tau32_J2"][has2] = t21[k1:], t32[k1:]
    return out


def _leading_two(j: Jets, ok: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of each event's leading and sub-leading accepted jet (-1 where absent)."""
    idx = np.flatnonzero(ok)
    order, rank = rank_in_event(j.event[idx], j.pt[idx], n)
    first = np.full(n, -1)
    second = np.full(n, -1)
    ordered = idx[order]
    ev = j.event[ordered]
    first[ev[rank == 0]] = ordered[rank == 0]
    second[ev[rank == 1]] = ordered[rank == 1]
    return first, second


def _pair_mass(j: Jets, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    e = j.e[a] + j.e[b]
    px, py, pz = j.px[a] + j.px[b], j.py[a] + j.py[b], j.pz[a] + j.pz[b]
    return np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    r = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return np.clip(r, 0.0, 1.0)
