"""Generator pieces without Pythia: configuration, seeds, pile-up overlay, towers and L1 objects, isolation,
offline fields, N-subjettiness against a numpy reference, and the crossing weights of the stitching."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from l1ad.trigger.events import EventBatch, slot_rows
from l1ad.trigger.generation import GenerationConfig, UnknownSignalError, chunk_seed, signal_process
from l1ad.trigger.generation.config import DEFAULT_SIZES
from l1ad.trigger.generation.jets import cluster, tau_n
from l1ad.trigger.generation.l1objects import isolation, l1_objects
from l1ad.trigger.generation.offline import offline_fields
from l1ad.trigger.generation.particles import Particles, overlay_pileup
from l1ad.trigger.generation.processes import SIGNALS, selected_processes, zero_bias_processes
from l1ad.trigger.generation.stitching import zero_bias_weights
from l1ad.trigger.l1units import to_grid


def _particles(events: list[list[tuple]], pu: list[list[bool]] | None = None) -> Particles:
    """Events given as lists of (pt, eta, phi, pid, charge)."""
    rows = [r for ev in events for r in ev]
    pt, eta, phi, pid, charge = (np.array([r[i] for r in rows], dtype=float) for i in range(5))
    m = np.where(np.abs(pid) == 13, 0.1057, 0.0)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + m**2)
    flags = np.array([f for ev in pu for f in ev], bool) if pu else np.zeros(len(rows), bool)
    return Particles(px, py, pz, e, pid.astype(np.int32), charge.astype(np.int8), flags,
                     np.array([len(ev) for ev in events], dtype=np.int64))


# ---------------------------------------------------------------------------------------------- config
def test_default_and_quick_configs():
    cfg, quick = GenerationConfig(), GenerationConfig.quick()
    for p in selected_processes(cfg):
        assert cfg.size(p.name) > 0
        assert 0 < quick.size(p.name) <= cfg.size(p.name)
    assert quick.size("minbias") >= 2000 and quick.size("hToTauTau") >= 500
    assert cfg.cache_dict() != quick.cache_dict()
    assert GenerationConfig.quick(seed=5).seed == 5


def test_config_rejects_unknown_names_and_bad_values():
    with pytest.raises(ValidationError, match="unknown process"):
        GenerationConfig(sizes={"qcd_pt15_31": 10})
    with pytest.raises(ValidationError, match="known signals"):
        GenerationConfig(signals=("Zprime",))
    with pytest.raises(ValidationError):
        GenerationConfig(pthat_edges=(30.0, 15.0))
    with pytest.raises(ValidationError):
        GenerationConfig(sizes={"minbias": -1})


def test_unknown_signal_lists_known_names():
    with pytest.raises(UnknownSignalError) as e:
        signal_process("Zprime", GenerationConfig())
    msg = str(e.value)
    assert "Zprime" in msg and all(name in msg for name in SIGNALS)


def test_qcd_bins_follow_edges_and_sizes_cover_them():
    cfg = GenerationConfig()
    names = [p.name for p in zero_bias_processes(cfg)]
    assert names[0] == "minbias" and names[1] == "qcd_pt15_30" and "qcd_pt600_inf" in names
    assert all(n in DEFAULT_SIZES for n in names)
    mb = zero_bias_processes(cfg)[0]
    assert mb.pthat_max == cfg.pthat_edges[0] and mb.pileup == "soft"


def test_chunk_seeds_are_deterministic_distinct_and_in_pythia_range():
    seeds = {chunk_seed(1, p, i) for p in ("minbias", "qcd_pt15_30", "Ato4l") for i in range(200)}
    assert len(seeds) == 600
    assert all(1 <= s <= 900_000_000 for s in seeds)
    assert chunk_seed(1, "minbias", 3) == chunk_seed(1, "minbias", 3) != chunk_seed(2, "minbias", 3)


# ---------------------------------------------------------------------------------------------- pile-up
def _pool(n: int, rng) -> tuple[Particles, np.ndarray]:
    ev = [[(rng.uniform(0.5, 3), rng.uniform(-4, 4), rng.uniform(-3, 3), 211, 1) for _ in range(k % 5 + 1)] for k in range(n)]
    pthat = np.sort(rng.uniform(1, 30, n))
    return _particles(ev), pthat


def test_overlay_layout_counts_and_flags():
    rng = np.random.default_rng(1)
    pool, pthat = _pool(50, rng)
    prim = _particles([[(50.0, 0.0, 0.0, 22, 0)], [(30.0, 1.0, 1.0, 11, -1), (5.0, 1.0, 2.0, 211, 1)], []])
    merged, npu = overlay_pileup(prim, pool, 20.0, np.random.default_rng(2))
    assert merged.n_events == 3 and len(npu) == 3
    off = merged.offsets
    for i in range(3):  # primary particles first, unflagged, unchanged
        k = prim.counts[i]
        np.testing.assert_array_equal(merged.px[off[i]:off[i] + k], prim.px[prim.offsets[i]:prim.offsets[i] + k])
        assert not merged.pu[off[i]:off[i] + k].any()
        assert merged.pu[off[i] + k:off[i + 1]].all()
    # rotations and z flips keep |p| and pT of each pool particle
    assert set(np.round(np.hypot(merged.px, merged.py)[merged.pu], 9)) <= set(np.round(np.hypot(pool.px, pool.py), 9))


def test_overlay_poisson_mean_cap_and_counted_primary():
    rng = np.random.default_rng(3)
    pool, pthat = _pool(400, rng)
    prim = _particles([[(10.0, 0.0, 0.0, 22, 0)]] * 1500)
    _, npu = overlay_pileup(prim, pool, 20.0, np.random.default_rng(4))
    assert abs(npu.mean() - 20.0) < 0.5 and abs(npu.var() - 20.0) < 3.0
    _, npu_c = overlay_pileup(prim, pool, 20.0, np.random.default_rng(4), primary_counted=True)
    assert abs(npu_c.mean() - 19.0) < 0.5
    # a cap admits only pool events below it, and scales the mean by the admitted fraction
    cap = 10.0
    frac = np.searchsorted(pthat, cap) / len(pthat)
    merged, npu_cap = overlay_pileup(prim, pool, 20.0, np.random.default_rng(5), pool_pthat=pthat, cap=cap)
    assert abs(npu_cap.mean() - 20.0 * frac) < 0.5
    allowed = set(np.round(np.hypot(pool.px, pool.py)[: pool.offsets[np.searchsorted(pthat, cap)]], 9))
    assert set(np.round(np.hypot(merged.px, merged.py)[merged.pu], 9)) <= allowed
    _, none = overlay_pileup(prim, pool, 20.0, np.random.default_rng(5), pool_pthat=pthat, cap=0.5)
    assert (none == 0).all()


# ---------------------------------------------------------------------------------------------- L1 objects
def test_l1_objects_isolated_photon_muon_and_met():
    det = GenerationConfig().detector
    parts = _particles([
        [(80.0, 0.5, 1.0, 22, 0), (40.0, -1.0, -2.0, 13, -1)],  # isolated photon + isolated muon
        [(100.0, 0.0, 0.0, 211, 1), (60.0, 0.02, 0.02, 22, 0)],  # photon inside a hadron: not isolated
    ])
    obj = l1_objects(parts, det, np.random.default_rng(0))
    np.testing.assert_array_equal(obj, to_grid(obj))  # on the L1 grid
    eg, mu, jet = obj[:, slot_rows("EGamma")], obj[:, slot_rows("Muon")], obj[:, slot_rows("Jet")]
    assert (eg[0, :, 0] > 0).sum() == 1 and abs(eg[0, 0, 0] - 80) < 8 and abs(eg[0, 0, 1] - 0.5) < 0.01
    assert (mu[0, :, 0] > 0).sum() == 1 and abs(mu[0, 0, 2] + 2.0) < 0.02
    assert (eg[1, :, 0] > 0).sum() == 0  # non-isolated
    assert abs(jet[0, 0, 0] - 80) < 10 and abs(jet[0, 0, 1] - 0.5) < 0.1  # the photon's calorimeter jet; muon unseen
    # calorimeter MET balances the calorimeter deposits (muon invisible): ~80 GeV opposite the photon
    assert abs(obj[0, 0, 0] - 80) < 10
    assert abs(np.angle(np.exp(1j * (obj[0, 0, 2] - (1.0 - np.pi))))) < 0.1


def test_isolation_ignores_charged_pileup_only():
    det = GenerationConfig().detector
    parts = _particles(
        [[(30.0, 0.0, 0.0, 11, -1), (5.0, 0.1, 0.1, 211, 1), (5.0, -0.1, 0.1, 130, 0), (5.0, 0.1, -0.1, 211, 1)]],
        pu=[[False, True, True, False]],
    )
    iso = isolation(parts, np.array([0]), det)
    assert iso[0] == pytest.approx(10.0)  # the neutral pile-up hadron and the primary pion; not the charged PU pion


# ---------------------------------------------------------------------------------------------- offline
def test_offline_fields_of_two_back_to_back_jets():
    det = GenerationConfig().detector
    rng = np.random.default_rng(1)
    ev = []
    for eta0, phi0 in ((0.3, 0.0), (-0.4, np.pi - 0.01)):
        for _ in range(30):
            ev.append((rng.uniform(10, 30), eta0 + rng.normal(0, 0.1), phi0 + rng.normal(0, 0.1), 211, 1))
    f = offline_fields(_particles([ev, [(5.0, 0.0, 0.0, 211, 1)]]), det)
    assert f["mjj"][0] > 500 and f["mJJ"][0] > f["mjj"][0] * 0.9
    assert f["ptJ1"][0] > 300 and f["mJ1"][0] > 0 and f["mJ2"][0] > 0
    for k in ("tau21_J1", "tau21_J2", "tau32_J1", "tau32_J2"):
        assert 0 < f[k][0] <= 1
    assert all(f[k][1] == 0 for k in f)  # nothing defined for a lone soft pion
    EventBatch.build(np.zeros((2, 19, 3)), offline=f)  # valid offline fields


def _tau_reference(pt, eta, phi, axes_eta, axes_phi, r0=1.0):
    dphi = (phi[:, None] - axes_phi[None, :] + np.pi) % (2 * np.pi) - np.pi
    dr = np.sqrt((eta[:, None] - axes_eta[None, :]) ** 2 + dphi**2).min(axis=1)
    return float((pt * dr).sum() / (pt.sum() * r0))


@pytest.mark.filterwarnings("ignore:dcut and exclusive jets")
def test_tau_n_matches_numpy_reference_with_exclusive_kt_axes():
    import fastjet

    from l1ad.trigger.generation.jets import to_awkward

    rng = np.random.default_rng(7)
    counts = np.array([40, 3, 25])
    pt = rng.exponential(10, counts.sum()) + 0.5
    eta = rng.normal(0, 0.3, counts.sum())
    phi = rng.normal(0, 0.3, counts.sum())
    px, py, pz, e = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)
    taus = tau_n(px, py, pz, e, counts, r0=1.0, n_max=3)
    off = np.concatenate([[0], np.cumsum(counts)])
    for j in range(len(counts)):
        s = slice(off[j], off[j + 1])
        cs = fastjet.ClusterSequence(to_awkward(px[s], py[s], pz[s], e[s], [counts[j]]),
                                     fastjet.JetDefinition(fastjet.kt_algorithm, 1000.0))
        for n in (1, 2, 3):
            ax = cs.exclusive_jets(n_jets=n)[0]
            ax_e, ax_pz = np.asarray(ax.E), np.asarray(ax.pz)
            ax_rap = 0.5 * np.log((ax_e + ax_pz) / (ax_e - ax_pz))  # massive axes: rapidity, as Nsubjettiness
            ref = _tau_reference(pt[s], eta[s], phi[s], ax_rap, np.arctan2(np.asarray(ax.py), np.asarray(ax.px)))
            assert taus[j, n - 1] == pytest.approx(ref, rel=1e-6, abs=1e-12)


def test_cluster_constituents_sum_to_jets():
    rng = np.random.default_rng(2)
    counts = np.array([50, 0, 20])
    n = counts.sum()
    pt, eta, phi = rng.exponential(20, n), rng.normal(0, 1, n), rng.uniform(-np.pi, np.pi, n)
    px, py, pz, e = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)
    j = cluster(px, py, pz, e, counts, r=1.0, min_pt=20.0, with_constituents=True)
    start = np.concatenate([[0], np.cumsum(j.constituent_counts)[:-1]])
    for k in range(len(j.px)):
        idx = j.constituents[start[k]:start[k] + j.constituent_counts[k]]
        assert px[idx].sum() == pytest.approx(j.px[k]) and e[idx].sum() == pytest.approx(j.e[k])
    assert j.counts[1] == 0


# ---------------------------------------------------------------------------------------------- weights
def _fake_component(name_sigma_mb: float, pthat: np.ndarray, reg=None) -> dict:
    return {"sigma_mb": np.array([name_sigma_mb]), "n": np.array([len(pthat)]), "pthat": pthat,
            "reg": np.ones(len(pthat)) if reg is None else reg}


@pytest.mark.parametrize("mu", [0.0, 20.0])
def test_crossing_weights_sum_to_one_and_match_the_poisson_partition(mu):
    cfg = GenerationConfig(pileup_mean=mu)
    procs = {p.name: p for p in zero_bias_processes(cfg)}
    rng = np.random.default_rng(0)
    comps = [(procs["minbias"], _fake_component(57.0, rng.exponential(4.0, 20000)))]
    sigma_hard = {"qcd_pt15_30": 1.9, "qcd_pt30_50": 0.15}
    for name, lo, hi in (("qcd_pt15_30", 15, 30), ("qcd_pt30_50", 30, 50)):
        comps.append((procs[name], _fake_component(sigma_hard[name], rng.uniform(lo, hi, 2000))))
    w = zero_bias_weights(cfg, comps)
    total = sum(v.sum() for v in w.values())
    p0 = sum(sigma_hard.values()) / 57.0
    assert (w["minbias"][comps[0][1]["pthat"] >= 15] == 0).all()
    if mu == 0:
        # per interaction: minimum bias below q0 plus the HardQCD cross sections
        assert total == pytest.approx((comps[0][1]["pthat"] < 15).mean() + p0, rel=1e-12)
    else:
        assert w["minbias"].sum() == pytest.approx(np.exp(-mu * p0))
        assert total == pytest.approx(1.0, abs=2e-3)  # exact up to the discreteness of S(x)
        # a crossing's hardest interaction is above 30 GeV with probability 1 - exp(-mu S(30))
        assert w["qcd_pt30_50"].sum() == pytest.approx(1 - np.exp(-mu * 0.15 / 57.0), rel=2e-3)
