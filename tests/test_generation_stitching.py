"""Closure of the stitched zero-bias stream against unweighted minimum bias.

Without pile-up the two are independent samples, and the weighted single-jet rate must agree with the plain
minimum-bias fraction wherever minimum bias has events, up to thresholds where the HardQCD bins carry most of
the stitched rate (so the pT-hat stitching is what is tested). With pile-up (mu = 20) the same must hold in
the bulk (20-30 GeV), which tests the split into soft and hard crossings; the unweighted reference's tail
beyond that rests on the few hard events of the finite pile-up pool (see trigger.generation.stitching).
"""
from __future__ import annotations

import numpy as np
import pytest

from l1ad.trigger.generation import GenerationConfig, generate, process_data
from l1ad.trigger.generation.processes import zero_bias_processes
from l1ad.trigger.generation.stitching import closure_table, single_jet_rates
from l1ad.trigger.io import read_events

pytestmark = [pytest.mark.pythia, pytest.mark.slow]


def _config(mu: float, sizes: dict[str, int]) -> GenerationConfig:
    all_sizes = {p.name: 100 for p in zero_bias_processes(GenerationConfig())}
    all_sizes.update(sizes)
    return GenerationConfig(pileup_mean=mu, sizes=all_sizes, chunk_size=500, seed=3)


def _run(tmp_path, cfg):
    generate(cfg, tmp_path, cache_dir=tmp_path / "cache", samples=("zero_bias",), progress=False)
    return read_events(tmp_path / "zero_bias.h5"), read_events(tmp_path / "minbias_closure.h5")


def _hard_share(zb, thresholds):
    hard = np.isin(zb.process, [i for i, n in enumerate(zb.process_names) if n.startswith("qcd_pt")])
    lead = zb.objects[:, 9, 0]
    return ((lead[hard][None, :] > thresholds[:, None]) * zb.weight[hard]).sum(axis=1) / (
        (lead[None, :] > thresholds[:, None]) * zb.weight).sum(axis=1)


def test_stitching_closes_without_pileup(tmp_path):
    cfg = _config(0.0, {"minbias_closure": 8000, "minbias": 2000, "qcd_pt15_30": 1000, "qcd_pt30_50": 400})
    zb, mb = _run(tmp_path, cfg)
    assert zb.weight.sum() == pytest.approx(1.0, abs=0.02)  # per interaction: minimum bias + HardQCD above q0
    # the cross section above q0: minimum bias's own pT-hat tail against the (MPI-regularised) HardQCD bins
    pthat = np.concatenate([process_data(cfg, n, tmp_path / "cache")["pthat"] for n in ("minbias", "minbias_closure")])
    above = (pthat > cfg.pthat_edges[0]).sum()
    p_hard = zb.weight[np.isin(zb.process, [i for i, n in enumerate(zb.process_names) if n.startswith("qcd_pt")])].sum()
    assert abs(above / len(pthat) - p_hard) < 3 * np.sqrt(above) / len(pthat), (above / len(pthat), p_hard)
    # single-jet rates: weighted stitched stream against plain minimum bias
    thresholds = np.arange(20.0, 45.0, 2.5)
    table = closure_table(zb, mb, thresholds, min_events=25)
    compared = np.array(table["compared"])
    pull = np.array(table["pull"])[compared]
    assert compared.sum() >= 4
    assert np.all(np.abs(pull) < 3.5) and np.mean(pull**2) < 3.0, dict(zip(thresholds[compared], pull))
    # where minimum bias runs out, the HardQCD bins carry (nearly) all of the stitched rate ...
    assert _hard_share(zb, thresholds)[np.flatnonzero(compared)[-1]] > 0.5
    # ... and the stitched stream goes on far beyond
    assert single_jet_rates(zb, [200.0]).events[0] >= 50


def test_stitching_closes_in_the_bulk_with_pileup(tmp_path):
    cfg = _config(20.0, {"pileup_pool": 600, "minbias_closure": 1500, "minbias": 1200, "qcd_pt15_30": 800})
    zb, mb = _run(tmp_path, cfg)
    assert zb.weight.sum() == pytest.approx(1.0, abs=0.03)  # fractions of crossings
    assert abs(zb.npu.mean() - 19.5) < 1.0 and abs(mb.npu.mean() - 19.0) < 1.0
    thresholds = np.array([20.0, 25.0, 30.0])
    table = closure_table(zb, mb, thresholds)
    pull = np.array(table["pull"])
    assert all(table["compared"]) and np.all(np.abs(pull) < 3.5), pull
    # half the crossings hold an interaction above q0 = 15 GeV: the HardQCD part is not a detail here
    assert 0.3 < zb.weight[zb.process_mask("qcd_pt15_30")].sum() < 0.7
