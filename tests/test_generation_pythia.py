"""The generator end to end with Pythia 8 + FastJet on tiny samples: file layout, pile-up, weights, the
cache (a second run generates nothing), reproducibility across worker counts, and the signals' physics."""
from __future__ import annotations

import numpy as np
import pytest

from l1ad.trigger.events import OFFLINE_FIELDS, slot_rows
from l1ad.trigger.generation import GenerationConfig, UnknownSignalError, generate, runner
from l1ad.trigger.generation.processes import zero_bias_processes
from l1ad.trigger.io import read_events

pytestmark = [pytest.mark.pythia, pytest.mark.slow]

TINY = {"pileup_pool": 300, "minbias_closure": 150, "minbias": 300, "qcd_dijet": 300, "dijet_resonance": 150,
        **{s: 150 for s in ("Ato4l", "leptoquark", "hToTauTau", "hChToTauNu")}}


def _tiny(**kw) -> GenerationConfig:
    sizes = {p.name: 40 for p in zero_bias_processes(GenerationConfig())}
    sizes.update(TINY)
    return GenerationConfig(sizes=sizes, chunk_size=kw.pop("chunk_size", 150), **kw)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    cfg = _tiny()
    out = tmp_path_factory.mktemp("gen-out")
    cache = tmp_path_factory.mktemp("gen-cache")
    manifest = generate(cfg, out, cache_dir=cache, workers=2, progress=False)
    return cfg, out, cache, manifest


def test_files_layout_pileup_and_weights(tiny_run):
    cfg, out, _, manifest = tiny_run
    assert set(manifest["files"]) == {"zero_bias", "Ato4l", "leptoquark", "hToTauTau", "hChToTauNu",
                                      "dijet_resonance", "qcd_dijet"}
    assert (out / manifest["closure_figure"]).is_file()
    zb = read_events(out / "zero_bias.h5")
    assert zb.process_names == tuple(p.name for p in zero_bias_processes(cfg))
    assert set(zb.offline) == set(OFFLINE_FIELDS)
    assert (zb.weight > 0).all() and zb.weight.sum() == pytest.approx(1.0, abs=0.05)
    # minimum bias below the first pT-hat edge only (hard scatters come from the HardQCD bins)
    assert zb.process_mask("minbias").sum() < cfg.size("minbias")
    assert abs(zb.npu.mean() - cfg.pileup_mean) < 1.5
    for name in ("hToTauTau", "qcd_dijet"):
        b = read_events(out / f"{name}.h5")
        assert abs(b.npu.mean() - cfg.pileup_mean) < 1.5 and (b.npu.std() > 2)
        assert np.allclose(b.weight, b.weight[0]) and b.weight[0] > 0
    dj = read_events(out / "qcd_dijet.h5")
    assert (dj.offline["ptJ1"] > cfg.dijet_ptj1_min).all() and len(dj) < cfg.size("qcd_dijet")
    # objects sorted by decreasing pT within each type, |eta| within acceptance
    for name in ("EGamma", "Muon", "Jet"):
        pt = zb.objects[:, slot_rows(name), 0]
        assert (np.diff(pt, axis=1) <= 0).all()
    assert (np.abs(zb.objects[:, slot_rows("Jet"), 1]) <= 4.7).all()


def test_second_run_is_cached(tiny_run, tmp_path, monkeypatch):
    cfg, out, cache, manifest = tiny_run

    def forbidden(*a, **k):
        raise AssertionError("a cached configuration must not generate events again")

    monkeypatch.setattr(runner, "run_chunk", forbidden)
    assert generate(cfg, out, cache_dir=cache, scheduler="sync", progress=False)["key"] == manifest["key"]
    # a fresh output folder is rebuilt from the process cache, identically
    again = generate(cfg, tmp_path / "copy", cache_dir=cache, scheduler="sync", progress=False)
    assert again["key"] == manifest["key"]
    for f in manifest["files"].values():
        assert read_events(tmp_path / "copy" / f) == read_events(out / f)


def test_unknown_sample_is_a_clear_error(tmp_path):
    with pytest.raises(UnknownSignalError, match="known samples: zero_bias"):
        generate(_tiny(), tmp_path, samples=("Zprime",), scheduler="sync", progress=False)


def test_same_seed_same_events_for_any_worker_count(tmp_path):
    cfg = _tiny(chunk_size=50)
    kw = {"samples": ("hChToTauNu",), "progress": False}
    a = generate(cfg, tmp_path / "a", cache_dir=tmp_path / "ca", scheduler="sync", **kw)
    b = generate(cfg, tmp_path / "b", cache_dir=tmp_path / "cb", workers=2, **kw)
    assert a["key"] == b["key"]
    ea, eb = read_events(tmp_path / "a" / "hChToTauNu.h5"), read_events(tmp_path / "b" / "hChToTauNu.h5")
    assert len(ea) == 150 and ea == eb
    c = generate(cfg.model_copy(update={"seed": 2}), tmp_path / "c", cache_dir=tmp_path / "cc", scheduler="sync", **kw)
    assert c["key"] != a["key"]
    assert not np.array_equal(read_events(tmp_path / "c" / "hChToTauNu.h5").objects, ea.objects)


def test_signals_look_like_their_physics(tiny_run):
    _, out, _, _ = tiny_run

    def mean_count(name, obj):
        return read_events(out / f"{name}.h5").multiplicity(obj).mean()

    zb = read_events(out / "zero_bias.h5")
    zb_leptons = np.average(zb.multiplicity("EGamma") + zb.multiplicity("Muon"), weights=zb.weight)
    assert mean_count("Ato4l", "EGamma") + mean_count("Ato4l", "Muon") > 1.5 > 10 * zb_leptons
    res, qcd = read_events(out / "dijet_resonance.h5"), read_events(out / "qcd_dijet.h5")
    assert abs(np.median(res.offline["mJJ"]) - 3500) < 400  # the 3.5 TeV resonance
    assert np.median(res.offline["tau21_J1"]) < np.median(qcd.offline["tau21_J1"])  # two-prong jets
    hch = read_events(out / "hChToTauNu.h5")
    assert np.median(hch.objects[:, 0, 0]) > np.median(zb.objects[:, 0, 0])  # neutrinos: more MET
