"""Discovery-reach arithmetic and the triggered bump hunt's statistics guard."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from l1ad.analysis import OfflineStageConfig, asimov_z, reach_table, seconds_of_running, signal_for_z, triggered_bumphunt


def test_asimov_limits_and_inverse():
    # large b: Z -> s / sqrt(b); small s/b expansion checked against the exact formula
    assert asimov_z(1000.0, 1e8) == pytest.approx(1000 / math.sqrt(1e8), rel=1e-4)
    for b in (0.5, 3.0, 40.0, 1e6):
        for z in (3.0, 5.0):
            s = signal_for_z(z, b)
            assert asimov_z(s, b) == pytest.approx(z, rel=1e-9)
    assert asimov_z(0.0, 5.0) == 0.0


def test_asimov_matches_toys():
    # the median of the likelihood-ratio Z over Poisson toys of s + b equals the Asimov Z (Cowan et al.)
    rng = np.random.default_rng(0)
    b, s = 50.0, signal_for_z(3.0, 50.0)
    n = rng.poisson(s + b, 20000)
    q0 = np.where(n > b, 2 * (n * np.log(np.maximum(n, 1) / b) - (n - b)), 0.0)
    assert np.median(np.sqrt(q0)) == pytest.approx(3.0, abs=0.15)


def test_reach_table_scales_with_efficiency_and_rate():
    cfg = OfflineStageConfig(luminosity_fb=1.0)
    assert seconds_of_running(cfg) == pytest.approx(1e39 / 2e34)
    rates = [{"target_hz": 1e3, "kept_hz": 1e3, "window_hz": 0.0}, {"target_hz": 1e4, "kept_hz": 1e4, "window_hz": 2.0}]
    sigs = {"a": {"eff": [0.5, 0.5], "window_eff": None}, "r": {"eff": [0.4, 0.6], "window_eff": [0.2, 0.3]}}
    rows = {(r["target_hz"], r["signal"]): r for r in reach_table(rates, sigs, cfg)}
    a1, a2 = rows[(1e3, "a")], rows[(1e4, "a")]
    assert a1["background_events"] == pytest.approx(1e3 * 5e4)
    # same efficiency, ten times the background: the needed cross-section grows by ~sqrt(10)
    assert a2["xsec_pb_5sigma"] / a1["xsec_pb_5sigma"] == pytest.approx(math.sqrt(10), rel=1e-3)
    assert rows[(1e3, "r")]["xsec_pb_5sigma"] is None and "not determined" in rows[(1e3, "r")]["note"]
    s5 = signal_for_z(5.0, 2.0 * 5e4)
    assert rows[(1e4, "r")]["xsec_pb_5sigma"] == pytest.approx(s5 / (1e3 * 0.3))


def test_triggered_bumphunt_guards_simulation_statistics(tmp_path):
    cfg = OfflineStageConfig(bumphunt={"n_toys": 20, "n_lee_toys": 10, "widths": [3]})
    rng = np.random.default_rng(1)
    m = 300 + rng.exponential(400, 5000)
    w = np.where(rng.random(5000) < 0.01, 1e4, 1.0)  # a few heavy events: small effective count
    out = triggered_bumphunt(m, w, 1e3, cfg, tmp_path / "a.png")
    n_eff = (w[(m < 4000)].sum()) ** 2 / (w[(m < 4000)] ** 2).sum()
    assert "skipped" in out and out["n_eff"] == pytest.approx(n_eff)
    out = triggered_bumphunt(m, np.ones_like(m), 1e3, cfg, tmp_path / "b.png")
    assert out["limited_by"] == "simulation statistics" and out["pseudo_events"] > 4000
    assert 0 <= out["global_p_toys"] <= 1 and (tmp_path / "b.png").is_file()


def test_nplm_quality_null_matches_the_observed_weighted_split(tmp_path):
    """Half-vs-half NPLM on one weighted (stitched-like) stream: the permutation toys are drawn like the observed
    split, so the observed t sits inside their distribution (toys of unweighted events drawn from the weighted
    reference sat an order of magnitude above it, p = 1 at every rate)."""
    from l1ad.offline.nplm import NPLMConfig

    from l1ad.analysis import OfflineStageConfig, nplm_quality

    rng = np.random.default_rng(3)
    n = 2400
    x = rng.normal(size=(n, 2))
    w = np.exp(rng.normal(0, 1.5, n))  # dispersed weights, as a pT-hat-stitched sample has
    cfg = OfflineStageConfig(nplm=NPLMConfig(n_toys=12, max_centers=60), nplm_max_events=1000)
    r = nplm_quality(x, w, cfg, "sync", tmp_path / "nplm.png")
    assert r["null"] == "permutation" and r["n_toys"] == 12
    assert 0.5 < r["t_obs"] / r["toy_median"] < 2.0
    assert r["p_empirical"] > 0.05
    assert (tmp_path / "nplm.png").stat().st_size > 0
    assert nplm_quality(x[:60], w[:60], cfg, "sync", tmp_path / "x.png")["skipped"].startswith("too few")
