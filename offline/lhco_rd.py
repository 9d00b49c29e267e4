"""Reader for the LHC Olympics 2020 R&D file (events_anomalydetection*.h5) into a `DijetSample`.

Layout (pandas ``DataFrame.to_hdf(key="df")``, fixed format, read here with h5py, no pandas needed):
``/df/block0_values`` is an (N, 2101) float array, one row per event: 700 particles x (pT [GeV], eta, phi),
zero-padded, then the truth label (1 signal, 0 background). The black-box files have 2100 columns (no label).

Per event the particles (massless) are clustered with FastJet, anti-kt R = 1.0; the two leading jets in pT give
m_JJ (their invariant mass), the jet masses m_J1, m_J2 (J1 = leading) and tau21 = tau2 / tau1 of each jet, the
N-subjettiness with beta = 1 and R0 = 1.0:

    tau_N = sum_k pT_k min_j Delta R(k, a_j) / (sum_k pT_k R0)

with axes a_j the exclusive-kt subjets of the jet's constituents (reclustered with kt, ``exclusive_jets(N)``;
not the minimised one-pass axes of fjcontrib, so tau21 differs slightly from the published LHCO values).
tau21 = 1 where tau1 = 0 (a one-particle jet). Events with fewer than two jets above `min_jet_pt` are dropped
(counted in the returned info). Pure Python over events: ~1-3 ms per event, so the 1.1M-event file takes
roughly an hour on one core; `read_lhco` reads rows [start, stop) so that slices can run in parallel.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from l1ad.offline.dijet import DijetSample

__all__ = ["N_PARTICLES", "jet_features", "nsubjettiness", "read_lhco"]

N_PARTICLES = 700
R_JET = 1.0


def _pseudojets(row: np.ndarray):
    import fastjet

    p = row[: 3 * N_PARTICLES].reshape(N_PARTICLES, 3)
    p = p[p[:, 0] > 0]
    pt, eta, phi = p[:, 0], p[:, 1], p[:, 2]
    px, py, pz, e = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)
    return [fastjet.PseudoJet(float(a), float(b), float(c), float(d)) for a, b, c, d in zip(px, py, pz, e)]


def _delta_r(eta1, phi1, eta2, phi2):
    dphi = np.mod(np.asarray(phi1) - phi2 + np.pi, 2 * np.pi) - np.pi
    return np.hypot(np.asarray(eta1) - eta2, dphi)


def nsubjettiness(constituents: list, n: int, r0: float = R_JET) -> float:
    """tau_N (beta = 1) of a jet's constituents with exclusive-kt axes; 0 when the jet has <= N constituents."""
    import fastjet

    if len(constituents) <= n:
        return 0.0
    cs = fastjet.ClusterSequence(constituents, fastjet.JetDefinition(fastjet.kt_algorithm, 1.5))
    axes = cs.exclusive_jets(n)
    pt = np.array([c.pt() for c in constituents])
    eta = np.array([c.rap() for c in constituents])  # massless: rapidity = pseudorapidity
    phi = np.array([c.phi() for c in constituents])
    dr = np.min([_delta_r(eta, phi, a.rap(), a.phi()) for a in axes], axis=0)
    return float(np.sum(pt * dr) / (np.sum(pt) * r0))


def jet_features(row: np.ndarray, min_jet_pt: float = 20.0) -> tuple[float, float, float, float, float] | None:
    """(m_JJ, m_J1, m_J2, tau21_J1, tau21_J2) of one event row, or None with fewer than two jets."""
    import fastjet

    parts = _pseudojets(row)
    if len(parts) < 2:
        return None
    cs = fastjet.ClusterSequence(parts, fastjet.JetDefinition(fastjet.antikt_algorithm, R_JET))
    jets = fastjet.sorted_by_pt(cs.inclusive_jets(min_jet_pt))
    if len(jets) < 2:
        return None
    j1, j2 = jets[0], jets[1]
    dijet = j1 + j2
    taus = []
    for j in (j1, j2):
        c = list(j.constituents())
        t1 = nsubjettiness(c, 1)
        taus.append(nsubjettiness(c, 2) / t1 if t1 > 0 else 1.0)
    return (float(dijet.m()), float(max(j1.m(), 0.0)), float(max(j2.m(), 0.0)), taus[0], taus[1])


def _values(path: Path, key: str):
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from None
    try:
        ds = f[key]["block0_values"]
    except KeyError:
        have = sorted(f.keys())
        f.close()
        raise ValueError(f"{path}: no dataset '{key}/block0_values' (the pandas fixed layout of the LHCO R&D file); "
                         f"top-level keys: {have}") from None
    if ds.ndim != 2 or ds.shape[1] not in (3 * N_PARTICLES, 3 * N_PARTICLES + 1):
        shape = ds.shape
        f.close()
        raise ValueError(f"{path}: '{key}/block0_values' has shape {shape}; expected (N, {3 * N_PARTICLES}) "
                         f"(black box) or (N, {3 * N_PARTICLES + 1}) (with the label column)")
    return f, ds


def read_lhco(path: str | Path, *, start: int = 0, stop: int | None = None, key: str = "df", chunk: int = 5000,
              min_jet_pt: float = 20.0) -> tuple[DijetSample, dict]:
    """Events [start, stop) of an LHCO R&D file as a `DijetSample` (labels from the last column if present)
    and an info dict (events read, events kept, events with fewer than two jets)."""
    path = Path(path)
    f, ds = _values(path, key)
    with f:
        n = ds.shape[0]
        stop = n if stop is None else min(int(stop), n)
        if not 0 <= start <= stop:
            raise ValueError(f"{path}: rows [{start}, {stop}) are not a range inside its {n} events")
        has_label = ds.shape[1] == 3 * N_PARTICLES + 1
        rows, labels = [], []
        for lo in range(start, stop, chunk):
            block = np.asarray(ds[lo : min(lo + chunk, stop)], dtype=np.float64)
            if has_label:
                bad = np.flatnonzero((block[:, -1] != 0.0) & (block[:, -1] != 1.0))
                if bad.size:
                    raise ValueError(f"{path}: row {lo + int(bad[0])} has label {block[bad[0], -1]!r}; allowed 0 or 1")
            for r in block:
                feat = jet_features(r, min_jet_pt)
                if feat is not None:
                    rows.append(feat)
                    labels.append(bool(r[-1] > 0.5) if has_label else False)
    a = np.array(rows, dtype=np.float64).reshape(-1, 5)
    sample = DijetSample.build(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4], is_signal=np.array(labels, bool))
    info = {"file": str(path), "rows": [int(start), int(stop)], "events_read": int(stop - start),
            "events_kept": len(sample), "fewer_than_two_jets": int(stop - start - len(sample)),
            "has_label": has_label, "n_signal": sample.n_signal}
    return sample, info
