"""CWoLa hunting (window scan, selection, bump test, sculpting guard) and the discovery reach."""
import numpy as np
import pytest

from l1ad.offline import lhco_toy
from l1ad.offline.bumphunt import falling_spectrum
from l1ad.offline.classify import ClassifierConfig
from l1ad.offline.cwola_hunting import (HuntConfig, cwola_hunt, hunt_window, sculpting_check, small_config, window_index,
                                   window_starts, window_test)
from l1ad.offline.reach import crossing

FAST = ClassifierConfig(n_folds=3, n_ensemble=1, max_iter=40)


def test_window_geometry():
    cfg = HuntConfig()
    ks = window_starts(cfg)
    e = np.asarray(cfg.edges)
    assert e[ks[0]] == 3100 and all(b - a == cfg.step_bins for a, b in zip(ks, ks[1:]))
    assert all(k >= cfg.sideband_bins and k + cfg.window_bins + cfg.sideband_bins <= len(e) - 1 for k in ks)
    assert e[window_index(cfg, 3300.0)] == 3300
    with pytest.raises(ValueError, match="3350"):
        window_index(cfg, 3350.0)


def test_window_test_on_smooth_spectrum_with_and_without_bump():
    cfg = HuntConfig()
    e = np.asarray(cfg.edges)
    k = window_index(cfg, 3300.0)
    rng = np.random.default_rng(0)
    mu = falling_spectrum(e, 50_000, params=(1.0, 6.0, 4.0, 0.0))
    flat = window_test(rng.poisson(mu).astype(float), k, cfg)
    bump = window_test(rng.poisson(falling_spectrum(e, 50_000, params=(1.0, 6.0, 4.0, 0.0), bump=(3500, 120, 800))).astype(float), k, cfg)
    assert flat.z < 3 and flat.fit_p > 1e-3
    assert bump.z > 4 and bump.n_window - bump.background_window == pytest.approx(800, rel=0.35)


def test_hunt_window_background_only_is_not_sculpted():
    d = lhco_toy.make_dataset(60_000, 0.0, seed=11)
    cfg = small_config(classifier=FAST, efficiency=0.2)
    w, counts = hunt_window(d, window_index(cfg, 3300.0), cfg)
    assert w.z < 3.0
    assert w.fit_p > 1e-3  # the selected spectrum stays smooth
    assert counts.sum() == pytest.approx(0.2 * np.sum((d.mjj >= cfg.edges[0]) & (d.mjj < cfg.edges[-1])), rel=0.02)


def test_reach_crossing_interpolation():
    sb = np.array([0.001, 0.01, 0.1])
    assert crossing(sb, np.array([1.0, 3.0, 7.0]), 3.0) == pytest.approx(0.01)
    assert crossing(sb, np.array([1.0, 2.0, 4.0]), 3.0) == pytest.approx(10 ** -1.5)
    assert crossing(sb, np.array([1.0, 2.0, 2.5]), 3.0) is None


@pytest.mark.slow
def test_cwola_hunt_finds_injected_signal():
    d = lhco_toy.make_dataset(150_000, 0.03, seed=12)
    r = cwola_hunt(d, small_config(efficiency=0.1))
    assert r.best.lo <= 3500 <= r.best.hi and r.best.z > 3


@pytest.mark.slow
def test_sculpting_check_background_only_uniform():
    cfg = small_config(classifier=FAST, efficiency=0.2, last_window_hi=4500.0)
    out = sculpting_check(lambda s: lhco_toy.make_dataset(40_000, 0.0, seed=100 + s), cfg, n_runs=8)
    assert out["ks_global_uniform_p"] > 0.01
    assert out["fraction_fit_p_below_0.01"] < 0.2
    assert out["min_global_p"] > 0.001


@pytest.mark.slow
def test_small_reach_runs(tmp_path):
    from l1ad.offline.reach import run_reach, small_config as reach_small

    r = run_reach(reach_small(methods=("bumphunt", "nplm")), tmp_path)
    assert {row["method"] for row in r["rows"]} == {"bumphunt", "nplm"}
    assert (tmp_path / "reach.png").exists() and (tmp_path / "reach.md").exists()


@pytest.mark.slow
def test_small_sic_study(tmp_path):
    from l1ad.offline.weak_study import run_sic_study, small_config as sic_small

    r = run_sic_study(sic_small(), tmp_path)
    best = {row["method"]: row["max_sic"] for row in r["rows"]}
    assert best["supervised"] > 5 and best["idealised"] > 2
    assert (tmp_path / "sic.png").exists()
