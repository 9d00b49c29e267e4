"""Calorimeter-region images: the CICADA-style input, 18 x 14 regions of E_T per event in hardware units.

Image layout (N, 18, 14) uint16, axis 1 = phi, axis 2 = eta (CICADA's 18 x 14):
* phi: 18 regions of 20 degrees, region k covering [-pi + k * 2pi/18, -pi + (k + 1) * 2pi/18);
* eta: 14 regions covering |eta| < 3.0 with the CMS calorimeter-trigger region boundaries (4 trigger towers each)
  at |eta| = 0, 0.348, 0.696, 1.044, 1.392, 1.740, 2.172, 3.0 (0.348 wide in the barrel, coarser in the endcaps),
  index 0 at eta = -3.0, index 13 at eta = +3.0 (`ETA_EDGES`);
* value: region E_T in units of 0.5 GeV (`ET_LSB`), saturated at 1023 (10 bits, `ET_MAX`: 511.5 GeV).

In the Pythia path a region sums the calorimeter towers of `generation.l1objects.make_towers` (the smeared towers
the L1 jets and MET come from: visible final-state particles, pile-up included, muons and neutrinos excluded,
towers below one LSB zeroed) whose centres lie in it: each tower contributes floor(E_T / 0.5 GeV) codes, the sum
saturates at 1023. Towers beyond |eta| = 3 (the forward calorimeter) are not part of the image.
The toy generator (`toy_images`) draws pile-up-like diffuse energy and spreads each toy jet / e-gamma over 2-4
regions around its direction (`trigger.toy`).
"""
from __future__ import annotations

import numpy as np

N_PHI = 18
N_ETA = 14
SHAPE = (N_PHI, N_ETA)
N_REGIONS = N_PHI * N_ETA  # 252
#: region E_T LSB [GeV] and the largest code (10 bits)
ET_LSB = 0.5
ET_MAX = 1023
#: the hardware format of one region code, as firmware.import_qkeras takes it
HW_FORMAT = "ap_ufixed<10,10>"
_HALF = (0.0, 0.348, 0.696, 1.044, 1.392, 1.740, 2.172, 3.0)
#: the 15 region boundaries in eta (CMS calorimeter-trigger regions: 4 towers each)
ETA_EDGES = np.array([-e for e in reversed(_HALF[1:])] + list(_HALF))
PHI_EDGES = -np.pi + np.arange(N_PHI + 1) * (2 * np.pi / N_PHI)
ETA_MAX = float(ETA_EDGES[-1])
ETA_CENTRES = 0.5 * (ETA_EDGES[1:] + ETA_EDGES[:-1])
PHI_CENTRES = 0.5 * (PHI_EDGES[1:] + PHI_EDGES[:-1])
#: what the files record next to the dataset
ATTRS = {"axes": "event, phi, eta", "et_lsb_gev": ET_LSB, "et_max_code": ET_MAX,
         "eta_edges": ETA_EDGES.tolist(), "phi_edges": PHI_EDGES.tolist()}


def eta_index(eta: np.ndarray) -> np.ndarray:
    """Region index in eta (0 .. 13) of each |eta| < 3 value; -1 outside."""
    eta = np.asarray(eta, dtype=np.float64)
    i = np.searchsorted(ETA_EDGES, eta, side="right") - 1
    return np.where((eta >= -ETA_MAX) & (eta < ETA_MAX), np.clip(i, 0, N_ETA - 1), -1)


def phi_index(phi: np.ndarray) -> np.ndarray:
    """Region index in phi (0 .. 17); phi is wrapped into [-pi, pi) first."""
    phi = (np.asarray(phi, dtype=np.float64) + np.pi) % (2 * np.pi)
    return np.minimum((phi / (2 * np.pi / N_PHI)).astype(np.int64), N_PHI - 1)


def to_codes(et_gev: np.ndarray) -> np.ndarray:
    """Region E_T [GeV] -> uint16 codes: floor(E_T / 0.5 GeV), saturated at 1023 (negative -> 0)."""
    c = np.floor(np.maximum(np.asarray(et_gev, dtype=np.float64), 0.0) / ET_LSB)
    return np.minimum(c, ET_MAX).astype(np.uint16)


def regions_from_towers(event: np.ndarray, et: np.ndarray, eta: np.ndarray, phi: np.ndarray, n: int) -> np.ndarray:
    """(n, 18, 14) uint16 images from sparse towers (event index, E_T [GeV], centre eta and phi): each tower adds
    floor(E_T / ET_LSB) codes to the region holding its centre; the sums saturate at ET_MAX."""
    ie, ip = eta_index(eta), phi_index(phi)
    inside = ie >= 0
    codes = np.floor(np.asarray(et, dtype=np.float64)[inside] / ET_LSB)
    cell = (np.asarray(event)[inside] * N_PHI + ip[inside]) * N_ETA + ie[inside]
    dense = np.bincount(cell, weights=codes, minlength=n * N_REGIONS)[: n * N_REGIONS]
    return np.minimum(dense, ET_MAX).reshape(n, N_PHI, N_ETA).astype(np.uint16)


def total_et(images: np.ndarray) -> np.ndarray:
    """Scalar sum of the region E_T per event [GeV]."""
    return np.asarray(images, dtype=np.float64).reshape(len(images), -1).sum(axis=1) * ET_LSB


# ---------------------------------------------------------------------------------------------- toy model
#: toy pile-up: mean E_T per region [GeV] at eta = 0 per pile-up interaction, and its growth with |eta|
_PU_ET_PER_VERTEX = 0.09
_PU_ETA_SLOPE = 0.35


def toy_images(objects: np.ndarray, rng: np.random.Generator, *, npu: np.ndarray | None = None,
               pileup_mean: float = 20.0) -> np.ndarray:
    """Images for toy L1 objects (N, 19, 3) [GeV, eta, phi]: diffuse pile-up energy plus a 2-4 region cluster per
    jet and e/gamma (muons and MET leave nothing).

    Pile-up: per region Gamma-distributed E_T (shape 1.5) with mean npu * 0.09 GeV * (1 + 0.35 |eta|), npu per event
    Poisson(`pileup_mean`) unless given. A cluster puts 55-85 % of the object's pT in the region of its direction and
    spreads the rest over 1-3 neighbours (towards the side of the region its axis is nearer to), with 10 % stochastic
    smearing. Everything is then quantized like the hardware (`to_codes`)."""
    from .events import slot_rows

    o = np.asarray(objects, dtype=np.float64)
    n = len(o)
    if npu is None:
        npu = rng.poisson(pileup_mean, n)
    npu = np.asarray(npu, dtype=np.float64)
    mean = _PU_ET_PER_VERTEX * npu[:, None, None] * (1 + _PU_ETA_SLOPE * np.abs(ETA_CENTRES))[None, None, :]
    et = rng.gamma(1.5, 1.0, (n, N_PHI, N_ETA)) * mean / 1.5
    flat = et.reshape(-1)  # a view: adding into it fills et
    rows = np.r_[slot_rows("EGamma"), slot_rows("Jet")]
    pt, eta, phi = o[:, rows, 0], o[:, rows, 1], o[:, rows, 2]
    ev, k = np.nonzero((pt > 0) & (np.abs(eta) < ETA_MAX))
    if len(ev):
        pt, eta, phi = pt[ev, k] * np.maximum(1 + 0.1 * rng.standard_normal(len(ev)), 0.0), eta[ev, k], phi[ev, k]
        ie, ip = eta_index(eta), phi_index(phi)
        # the neighbour in eta / phi on the side nearer to the axis
        de = np.where(eta >= ETA_CENTRES[ie], 1, -1)
        dp = np.where(phi >= PHI_CENTRES[ip], 1, -1)
        core = rng.uniform(0.55, 0.85, len(ev))
        n_extra = rng.integers(1, 4, len(ev))  # 1-3 neighbours: clusters of 2-4 regions
        share = rng.dirichlet(np.ones(3), len(ev)) * (n_extra[:, None] > np.arange(3)[None, :])
        share = share / share.sum(axis=1, keepdims=True) * (1 - core)[:, None]
        cells = [(ie, ip), (np.clip(ie + de, 0, N_ETA - 1), ip), (ie, (ip + dp) % N_PHI),
                 (np.clip(ie + de, 0, N_ETA - 1), (ip + dp) % N_PHI)]
        for (a, b), frac in zip(cells, [core, share[:, 0], share[:, 1], share[:, 2]]):
            np.add.at(flat, ev * N_REGIONS + b * N_ETA + a, pt * frac)
    return to_codes(et)
