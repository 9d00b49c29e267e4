"""L1-like trigger objects from particles (with pile-up): calorimeter towers, jets, MET, e/gamma, muons.

* **Towers.** Visible particles except muons deposit E_T in 0.087 x 2pi/72 towers over |eta| < 5, split into
  EM (electrons, photons) and hadronic parts, each smeared with sigma/E = a/sqrt(E) (+) c (forward
  calorimeter beyond |eta| = 3 coarser). Towers below 0.5 GeV (one L1 LSB) are zeroed.
* **Jets.** Anti-kt R = 0.4 on the towers (massless, at the tower centres: L1 granularity), corrected for
  pile-up by the area-median method: pT -= rho * pi R^2, with rho the median E_T density of coarse tower
  patches in the event (robust against the hard jets). pT > 20 GeV, |eta| < 4.7, at most 10.
* **MET.** Minus the vector sum of the towers above threshold within |eta| < 3 (the L1 ETM sum, calorimeter
  only: muons and neutrinos unseen).
* **e/gamma and muons.** Final-state electrons/photons (|eta| < 3) and muons (|eta| < 2.4), smeared
  (EM resolution; 12 % for muons), isolated: the scalar pT sum of other particles within dR < 0.3 must be
  below 0.3 pT. The sum takes charged particles from the primary vertex inside the tracker and all other
  particles above 1 GeV (charged pile-up is removed by vertexing; this is the usual track + calorimeter
  isolation). At most 4 of each, by decreasing pT.
Everything ends on the L1 grid (`trigger.l1units.to_grid`).
* **Calorimeter regions** (`l1_objects_and_regions`): the same towers summed into the 18 x 14 (phi x eta, |eta| < 3)
  region image of trigger.calo, floor(E_T / 0.5 GeV) per tower, saturated at 1023 per region: the CICADA input.
"""
from __future__ import annotations

import numpy as np

from ..calo import regions_from_towers
from ..events import N_FEATURES, N_OBJECTS, slot_rows
from ..l1units import to_grid
from .config import DetectorConfig
from .jets import cluster, rank_in_event
from .particles import Particles, _segments

_EM_IDS = (11, 22)
_MUON = 13


def l1_objects(parts: Particles, det: DetectorConfig, rng: np.random.Generator) -> np.ndarray:
    """The (N, 19, 3) L1 object array (pT, eta, phi) of every event, on the L1 grid."""
    return l1_objects_and_regions(parts, det, rng)[0]


def l1_objects_and_regions(parts: Particles, det: DetectorConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The L1 objects (as `l1_objects`, the same random draws) and the (N, 18, 14) uint16 calorimeter-region images
    (trigger.calo) summed from the same towers."""
    n = parts.n_events
    objects = np.zeros((n, N_OBJECTS, N_FEATURES))
    towers = make_towers(parts, det, rng)
    regions = regions_from_towers(towers["event"], towers["et"], towers["eta"], towers["phi"], n)
    # MET
    central = np.abs(towers["eta"]) < det.met_eta_max
    met_w = np.where(central, towers["et"], 0.0)
    mex = -np.bincount(towers["event"], weights=met_w * np.cos(towers["phi"]), minlength=n)
    mey = -np.bincount(towers["event"], weights=met_w * np.sin(towers["phi"]), minlength=n)
    objects[:, 0, 0] = np.hypot(mex, mey)
    objects[:, 0, 2] = np.arctan2(mey, mex)
    # jets
    et, eta, phi = towers["et"], towers["eta"], towers["phi"]
    counts = np.bincount(towers["event"], minlength=n)
    j = cluster(et * np.cos(phi), et * np.sin(phi), et * np.sinh(eta), et * np.cosh(eta), counts,
                r=det.jet_r, min_pt=det.jet_pt_min)
    pt = j.pt - towers["rho"][j.event] * np.pi * det.jet_r**2
    keep = (pt > det.jet_pt_min) & (np.abs(j.eta) < det.jet_eta_max)
    _fill(objects, "Jet", j.event[keep], pt[keep], j.eta[keep], j.phi[keep], n)
    # e/gamma and muons
    pt_all, eta_all, phi_all = parts.pt, parts.eta, parts.phi
    apid = np.abs(parts.pid)
    for name, ids, eta_max, pt_min, iso_max in (
        ("EGamma", _EM_IDS, det.egamma_eta_max, det.egamma_pt_min, det.egamma_rel_iso),
        ("Muon", (_MUON,), det.muon_eta_max, det.muon_pt_min, det.muon_rel_iso),
    ):
        cand = np.flatnonzero(np.isin(apid, ids) & (np.abs(eta_all) < eta_max) & (pt_all > 0.5 * pt_min))
        if name == "EGamma":
            e = pt_all[cand] * np.cosh(eta_all[cand])
            a, c = det.em_resolution
            sigma = np.sqrt(a**2 / e + c**2)
        else:
            sigma = np.full(len(cand), det.muon_pt_resolution)
        pt_meas = np.maximum(pt_all[cand] * (1 + sigma * rng.standard_normal(len(cand))), 0.0)
        iso = isolation(parts, cand, det)
        ok = (pt_meas > pt_min) & (iso < iso_max * pt_meas)
        sel = cand[ok]
        _fill(objects, name, parts.event[sel], pt_meas[ok], eta_all[sel], phi_all[sel], n)
    return to_grid(objects), regions


def _fill(objects: np.ndarray, name: str, event: np.ndarray, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, n: int) -> None:
    """Write the leading objects of each event (by decreasing pT) into the rows of type `name`."""
    rows = slot_rows(name)
    width = rows.stop - rows.start
    order, rank = rank_in_event(event, pt, n)
    keep = rank < width
    o = order[keep]
    objects[event[o], rows.start + rank[keep]] = np.stack([pt[o], eta[o], phi[o]], axis=-1)


def make_towers(parts: Particles, det: DetectorConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Sparse calorimeter towers above threshold: event, et, eta, phi (tower centres), and per-event rho."""
    n = parts.n_events
    n_eta = int(np.ceil(2 * det.calo_eta_max / det.tower_deta))
    n_phi = det.tower_nphi
    dphi = 2 * np.pi / n_phi
    ncell = n_eta * n_phi
    calo = np.abs(parts.pid) != _MUON
    pt, eta, phi = parts.pt[calo], parts.eta[calo], parts.phi[calo]
    ieta = np.clip(((eta + det.calo_eta_max) / det.tower_deta).astype(np.int64), 0, n_eta - 1)
    iphi = np.clip(((phi + np.pi) / dphi).astype(np.int64), 0, n_phi - 1)
    cell = parts.event[calo] * ncell + ieta * n_phi + iphi
    em = np.isin(np.abs(parts.pid[calo]), _EM_IDS)
    # sum per cell on the dense (event, eta, phi) grid, EM and hadronic parts separately
    dense_em = np.bincount(cell, weights=np.where(em, pt, 0.0), minlength=n * ncell)
    dense_had = np.bincount(cell, weights=np.where(em, 0.0, pt), minlength=n * ncell)
    occupied = np.flatnonzero((dense_em > 0) | (dense_had > 0))
    et_em, et_had = dense_em[occupied], dense_had[occupied]
    ev = occupied // ncell
    ic = occupied % ncell
    t_ieta, t_iphi = ic // n_phi, ic % n_phi
    t_eta = -det.calo_eta_max + (t_ieta + 0.5) * det.tower_deta
    t_phi = -np.pi + (t_iphi + 0.5) * dphi
    cosh = np.cosh(t_eta)
    forward = np.abs(t_eta) > det.hf_eta_min
    et = np.zeros(len(occupied))
    for part, res in ((et_em, det.em_resolution), (et_had, det.had_resolution)):
        a = np.where(forward, det.hf_resolution[0], res[0])
        c = np.where(forward, det.hf_resolution[1], res[1])
        e = np.maximum(part * cosh, 1e-9)
        sigma = np.sqrt(a**2 / e + c**2)
        et += np.where(part > 0, np.maximum(part * (1 + sigma * rng.standard_normal(len(part))), 0.0), 0.0)
    keep = et > det.tower_et_min
    ev, et, t_ieta, t_iphi, t_eta, t_phi = ev[keep], et[keep], t_ieta[keep], t_iphi[keep], t_eta[keep], t_phi[keep]
    # rho: median over coarse patches (a centred block of whole patches in eta, all of phi)
    pe, pp = det.rho_patch
    n_pe, n_pp = n_eta // pe, n_phi // pp
    first = (n_eta - n_pe * pe) // 2
    in_block = (t_ieta >= first) & (t_ieta < first + n_pe * pe)
    patch = (t_ieta[in_block] - first) // pe * n_pp + t_iphi[in_block] // pp
    grid = np.bincount(ev[in_block] * (n_pe * n_pp) + patch, weights=et[in_block], minlength=n * n_pe * n_pp)
    area = pe * det.tower_deta * pp * dphi
    rho = np.median(grid.reshape(n, n_pe * n_pp), axis=1) / area
    return {"event": ev, "et": et, "eta": t_eta, "phi": t_phi, "rho": rho}


def isolation(parts: Particles, cand: np.ndarray, det: DetectorConfig) -> np.ndarray:
    """Scalar pT sum around each candidate (indices into `parts`) within det.iso_cone, excluding itself.

    Summed: charged particles of the primary interaction inside the tracker (any pT), and every other
    particle (neutral, or outside the tracker) above det.iso_particle_pt_min; charged pile-up inside the
    tracker never counts. Pairs are built per event with index arithmetic (no Python loop)."""
    if len(cand) == 0:
        return np.zeros(0)
    pt, eta, phi = parts.pt, parts.eta, parts.phi
    tracked = (parts.charge != 0) & (np.abs(eta) < det.tracker_eta_max)
    use = np.where(tracked, ~parts.pu, pt > det.iso_particle_pt_min)
    idx = np.flatnonzero(use)
    counts = np.bincount(parts.event[idx], minlength=parts.n_events)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ev = parts.event[cand]
    lens = counts[ev]
    other = idx[_segments(starts[ev], lens)]
    owner = np.repeat(np.arange(len(cand)), lens)
    me = cand[owner]
    dphi = (phi[other] - phi[me] + np.pi) % (2 * np.pi) - np.pi
    near = ((eta[other] - eta[me]) ** 2 + dphi**2 < det.iso_cone**2) & (other != me)
    return np.bincount(owner[near], weights=pt[other][near], minlength=len(cand))
