"""Calorimeter-region images (trigger.calo): the region grid and quantization, images in the event files (round trip,
absent dataset, refusals naming file and field), the toy model (zero bias vs signal) and the Pythia path's regions
from the same towers as the L1 objects."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from l1ad.trigger import calo
from l1ad.trigger.events import EventBatch, EventDataError
from l1ad.trigger.generation import GenerationConfig
from l1ad.trigger.generation.l1objects import l1_objects, l1_objects_and_regions, make_towers
from l1ad.trigger.generation.particles import Particles
from l1ad.trigger.io import iter_events, read_events, write_events
from l1ad.trigger.toy import toy_events


# ---------------------------------------------------------------------------------------------- the grid
def test_region_grid_cms_edges_and_indices():
    assert calo.SHAPE == (18, 14) and len(calo.ETA_EDGES) == 15 and calo.ETA_EDGES[0] == -3.0
    assert np.allclose(np.diff(calo.ETA_EDGES[4:11]), 0.348)  # barrel regions: 4 towers of 0.087
    np.testing.assert_array_equal(calo.eta_index([-3.5, -3.0, -2.9, -0.01, 0.0, 0.35, 2.99, 3.0]), [-1, 0, 0, 6, 7, 8, 13, -1])
    np.testing.assert_array_equal(calo.phi_index([-np.pi, -np.pi + 0.35, 0.0, np.pi - 1e-9, np.pi]), [0, 1, 9, 17, 0])
    np.testing.assert_array_equal(calo.to_codes([0.0, 0.49, 0.5, 1.2, -3.0, 511.5, 600.0]), [0, 0, 1, 2, 0, 1023, 1023])


def test_regions_sum_tower_codes_and_saturate():
    # event 0: two towers in one region (codes 3 + 4), one beyond |eta| = 3; event 1: 700 GeV -> saturated
    ev = np.array([0, 0, 0, 1, 1])
    et = np.array([1.6, 2.3, 50.0, 400.0, 300.0])
    eta = np.array([0.1, 0.2, 3.2, -1.0, -1.0])
    phi = np.array([0.1, 0.2, 0.0, 2.0, 2.0])
    img = calo.regions_from_towers(ev, et, eta, phi, 3)
    assert img.shape == (3, 18, 14) and img.dtype == np.uint16
    assert img[0, 9, 7] == 7 and img[0].sum() == 7
    assert img[1, calo.phi_index(2.0), calo.eta_index(-1.0)] == calo.ET_MAX and img[1].sum() == calo.ET_MAX
    assert img[2].sum() == 0


# ---------------------------------------------------------------------------------------------- files
def test_images_roundtrip_and_chunks(tmp_path):
    b = toy_events(700, seed=4)
    assert b.calo.shape == (700, 18, 14) and b.calo.dtype == np.uint16 and b.has_calo
    write_events(tmp_path / "e.h5", b)
    r = read_events(tmp_path / "e.h5")
    assert r == b and np.array_equal(r.calo, b.calo)
    with h5py.File(tmp_path / "e.h5") as f:
        assert f["CaloRegions"].dtype == np.uint16 and f["CaloRegions"].attrs["et_lsb_gev"] == 0.5
        assert list(f["CaloRegions"].attrs["eta_edges"]) == pytest.approx(calo.ETA_EDGES)
    parts = list(iter_events(tmp_path / "e.h5", chunk_size=300))
    assert np.array_equal(np.concatenate([p.calo for p in parts]), b.calo)
    sub = read_events(tmp_path / "e.h5", start=100, stop=150)
    assert np.array_equal(sub.calo, b.calo[100:150])
    # select / concat keep the images; concat with a batch without images drops them
    assert np.array_equal(b.select(np.arange(5)).calo, b.calo[:5])
    assert EventBatch.concat([b, b]).calo.shape == (1400, 18, 14)
    assert EventBatch.concat([b, toy_events(3, calo=False)]).calo is None


def test_file_without_images_loads_with_none(tmp_path):
    b = toy_events(50, calo=False)
    assert b.calo is None
    write_events(tmp_path / "n.h5", b)
    with h5py.File(tmp_path / "n.h5") as f:
        assert "CaloRegions" not in f
    assert read_events(tmp_path / "n.h5").calo is None
    # the objects do not depend on whether images were drawn
    assert np.array_equal(toy_events(50).objects, b.objects)


def _with_calo(path, data, n=4):
    with h5py.File(path, "w") as f:
        f.create_dataset("Particles", data=np.zeros((n, 19, 4), dtype=np.float32))
        f.create_dataset("CaloRegions", data=data)


@pytest.mark.parametrize("data, match", [
    (np.zeros((4, 14, 18), np.uint16), r"CaloRegions.*\(4, 18, 14\).*got \(4, 14, 18\)"),
    (np.zeros((3, 18, 14), np.uint16), r"CaloRegions.*\(4, 18, 14\)"),
    (np.full((4, 18, 14), 1024, np.uint16), r"CaloRegions.*1024 is outside \[0, 1023\]"),
    (np.full((4, 18, 14), -2, np.int32), r"CaloRegions.*-2 is outside"),
    (np.full((4, 18, 14), 1.5, np.float32), r"CaloRegions.*must be integers"),
    (np.array([b"x"] * 4), r"CaloRegions.*dtype"),
])
def test_bad_images_in_a_file_are_named(tmp_path, data, match):
    _with_calo(tmp_path / "bad.h5", data)
    with pytest.raises(EventDataError, match=r"bad\.h5.*" + match):
        read_events(tmp_path / "bad.h5")


def test_bad_images_refused_by_build_and_validate():
    o = np.zeros((2, 19, 3))
    with pytest.raises(EventDataError, match=r"field 'calo'.*\(N, 18, 14\)"):
        EventBatch.build(o, calo=np.zeros((2, 18, 13)))
    with pytest.raises(EventDataError, match=r"field 'calo'.*\(2, 18, 14\)"):
        EventBatch.build(o, calo=np.zeros((3, 18, 14)))
    with pytest.raises(EventDataError, match="field 'calo'.*outside"):
        EventBatch.build(o, calo=np.full((2, 18, 14), 5000))
    with pytest.raises(EventDataError, match="field 'calo'.*real numbers"):
        EventBatch.build(o, calo=np.full((2, 18, 14), 1 + 1j))
    good = EventBatch.build(o, calo=np.ones((2, 18, 14)))
    assert good.calo.dtype == np.uint16 and good.with_calo(None).calo is None
    from dataclasses import replace

    with pytest.raises(EventDataError, match="field 'calo'.*uint16"):
        replace(good, calo=good.calo.astype(np.int64)).validate()


# ---------------------------------------------------------------------------------------------- toy model
def test_toy_images_zero_bias_vs_signal():
    zb, sig = toy_events(4000, seed=1), toy_events(4000, signal=True, seed=2)
    for b in (zb, sig):
        assert b.calo.shape == (4000, 18, 14) and abs(b.npu.mean() - 20) < 0.5
    hot = lambda b: (b.calo >= 40).sum(axis=(1, 2))  # noqa: E731  regions above 20 GeV
    assert hot(sig).mean() > 1.3 * hot(zb).mean()
    assert np.median(sig.calo.max(axis=(1, 2))) > 1.4 * np.median(zb.calo.max(axis=(1, 2)))
    # diffuse pile-up everywhere; a jet's energy lands near its direction
    assert (zb.calo > 0).mean() > 0.7
    j = zb.objects[:, 9]  # leading jet
    ok = (j[:, 0] > 60) & (np.abs(j[:, 1]) < 2.5)
    ip, ie = calo.phi_index(j[ok, 2]), calo.eta_index(j[ok, 1])
    assert (zb.calo[ok, ip, ie] * calo.ET_LSB > 0.4 * j[ok, 0]).mean() > 0.9
    # same seed, same images
    assert np.array_equal(toy_events(100, seed=9).calo, toy_events(100, seed=9).calo)


# ---------------------------------------------------------------------------------------------- Pythia path
def _particles(rows) -> Particles:
    pt, eta, phi, pid = (np.array([r[i] for r in rows], dtype=float) for i in range(4))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return Particles(px, py, pz, np.sqrt(px**2 + py**2 + pz**2), pid.astype(np.int32), np.zeros(len(rows), np.int8),
                     np.zeros(len(rows), bool), np.array([len(rows)]))


def test_pythia_path_regions_from_the_object_towers():
    det = GenerationConfig().detector
    parts = _particles([(120.0, 0.5, 1.0, 211), (50.0, -2.0, -2.5, 22), (80.0, 1.0, 0.0, 13), (30.0, 4.0, 0.3, 211)])
    obj, img = l1_objects_and_regions(parts, det, np.random.default_rng(5))
    np.testing.assert_array_equal(obj, l1_objects(parts, det, np.random.default_rng(5)))  # same draws
    towers = make_towers(parts, det, np.random.default_rng(5))
    inside = np.abs(towers["eta"]) < 3
    # every tower inside |eta| < 3 is counted (floor per tower); the muon and the forward hadron are not
    assert img[0].sum() == int(np.floor(towers["et"][inside] / 0.5).sum())
    assert img[0, calo.phi_index(1.0), calo.eta_index(0.5)] > 0.7 * 120 / 0.5
    assert img[0, calo.phi_index(-2.5), calo.eta_index(-2.0)] > 0.7 * 50 / 0.5
    assert img[0, calo.phi_index(0.0), calo.eta_index(1.0)] == 0


@pytest.mark.pythia
def test_pythia_chunk_carries_images():
    pytest.importorskip("pythia8mc")
    from l1ad.trigger.generation import signal_process
    from l1ad.trigger.generation.runner import Chunk, process_batch, run_chunk

    cfg = GenerationConfig(pileup_mean=0.0)
    out = run_chunk(Chunk(signal_process("hToTauTau", cfg), 0, 40, 11), cfg.model_dump(mode="json"), None)
    assert out["calo"].shape == (40, 18, 14) and out["calo"].dtype == np.uint16
    b = process_batch(cfg, out, "hToTauTau")
    assert b.calo is not None and len(b) == 40
    jet = b.objects[:, 9]
    central = (jet[:, 0] > 30) & (np.abs(jet[:, 1]) < 2.5)
    # the leading L1 jet's region holds a good part of its energy
    ip, ie = calo.phi_index(jet[central, 2]), calo.eta_index(jet[central, 1])
    assert central.sum() >= 5 and np.median(b.calo[central, ip, ie] * calo.ET_LSB / jet[central, 0]) > 0.3
