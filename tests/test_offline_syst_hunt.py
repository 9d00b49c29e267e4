"""CWoLa hunting with the blinded fit's uncertainty, retrained background-only toys and the coverage tools."""
from __future__ import annotations

import numpy as np
import pytest

from l1ad.offline import coverage, hunt_toys, lhco_toy
from l1ad.offline.bkgsyst import profile_t_syst
from l1ad.offline.bumphunt import falling_spectrum, profile_t
from l1ad.offline.classify import ClassifierConfig
from l1ad.offline.cwola_hunting import HuntConfig, small_config, window_index, window_test

TINY = small_config(classifier=ClassifierConfig(n_folds=3, n_ensemble=1, max_iter=10), last_window_hi=3900.0)


def test_window_test_uses_the_blinded_fit_uncertainty():
    cfg = HuntConfig()
    e = np.asarray(cfg.edges)
    k = window_index(cfg, 3300.0)
    n = np.random.default_rng(1).poisson(falling_spectrum(e, 20_000, params=(1.0, 6.0, 4.0, 0.0), bump=(3500, 120, 150))).astype(float)
    w = window_test(n, k, cfg)
    plain = window_test(n, k, cfg.model_copy(update={"fit_uncertainty": False}))
    assert w.sigma_ln_alpha > 0 and plain.sigma_ln_alpha == 0.0
    assert plain.t == pytest.approx(profile_t(plain.n_window, plain.n_sideband, plain.alpha))
    assert w.t == pytest.approx(profile_t_syst(w.n_window, w.n_sideband, w.alpha, w.sigma_ln_alpha))
    assert 0 < w.t < plain.t


def test_toy_hunts_reproducible_and_global_p_counts_them():
    a = hunt_toys.toy_task(3, TINY.model_dump_json(), (0.3, 0.1), n_bkg=8000)
    b = hunt_toys.toy_task(3, TINY.model_dump_json(), (0.3, 0.1), n_bkg=8000)
    assert a["t_max"] == b["t_max"]
    assert a["t_max"] == max(v["t_max"] for v in a["per_efficiency"].values())
    assert set(a["per_efficiency"]) == {"0.3", "0.1"}
    toys = [{"t_max": x} for x in (0.5, 2.0, 3.0, 9.0)]
    assert hunt_toys.global_p(2.5, toys) == pytest.approx(3 / 5)
    assert hunt_toys.global_p(10.0, np.array([1.0, 2.0])) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="at least one"):
        hunt_toys.global_p(1.0, [])


def test_permutation_toys_on_dask_sync_and_result_with_toys():
    data = lhco_toy.make_dataset(8000, 0.0, seed=5)
    res = hunt_toys.null_toys(TINY, 2, source="permute", data=data, scheduler="sync")
    assert len(res) == 2 and res[0]["t_max"] != res[1]["t_max"]
    hunt = hunt_toys.hunt_efficiencies(data, TINY, (TINY.efficiency,))[TINY.efficiency]
    assert hunt.global_p_method == "quick estimate (Sidak, can be anti-conservative)" and hunt.global_p == hunt.global_p_sidak
    with_toys = hunt.with_toys(np.array([r["t_max"] for r in res]))
    assert with_toys.global_p == hunt_toys.global_p(hunt.t_max, res) and "toys (2" in with_toys.global_p_method
    s = with_toys.summary()
    assert s["global_p_sidak_note"] == "quick estimate (Sidak, can be anti-conservative)" and s["n_toys"] == 2
    with pytest.raises(ValueError, match="source must be 'toy' or 'permute'"):
        hunt_toys.null_toys(TINY, 1, source="bootstrap")
    with pytest.raises(ValueError, match="needs n_bkg >= 1000"):
        hunt_toys.null_toys(TINY, 1, n_bkg=10)
    with pytest.raises(ValueError, match="efficiencies"):
        hunt_toys.hunt_efficiencies(data, TINY, (0.0,))


def test_cwola_search_global_p_from_toys_over_windows_and_cuts():
    data = lhco_toy.make_dataset(8000, 0.0, seed=6)
    quick = hunt_toys.cwola_search(data, TINY, (0.3, 0.1))
    assert quick.global_p_toys is None and quick.global_p == quick.global_p_sidak
    assert quick.global_p_method == hunt_toys.SIDAK_LABEL and quick.n_tests == 2 * len(quick.per_efficiency[0.3].windows)
    assert quick.t_max == max(r.t_max for r in quick.per_efficiency.values())
    # saved toys: t_max values of background-only searches; the observed search is the 3rd largest of 5
    toys = [{"t_max": x} for x in (quick.t_max - 1, quick.t_max + 1, quick.t_max + 2, quick.t_max - 2)]
    res = hunt_toys.cwola_search(data, TINY, (0.3, 0.1), toys=toys)
    assert res.global_p == pytest.approx(3 / 5) and res.global_p_method.startswith("toys (4 retrained")
    s = res.summary()
    assert s["n_toys"] == 4 and s["global_p_sidak_note"] == hunt_toys.SIDAK_LABEL and set(s["per_efficiency"]) == {"0.3", "0.1"}
    with pytest.raises(ValueError, match="non-empty"):
        quick.with_toys([float("nan")])


def test_scan_summary_rows_from_saved_toys():
    rng = np.random.default_rng(3)
    raw = [{"seed": i, "t_max": float(rng.chisquare(2)), "seconds": 1.0,
            "per_efficiency": {"0.2": {"p_local": rng.uniform(size=4).tolist()},
                               "0.05": {"p_local": rng.uniform(size=4).tolist()}}} for i in range(50)]
    res = coverage.scan_summary(raw, "X", {"n": 1})
    names = [r["name"] for r in res["rows"]]
    assert names[0].startswith("X: toy global p over windows x cuts, leave-one-out (50 toys)")
    assert any("Sidak over 8 tests (quick estimate)" in n for n in names)
    assert res["rows"][0]["n"] == 50 and res["rows"][2]["n"] == 200  # local p: 50 toys x 4 windows


def test_coverage_row_verdicts_and_leave_one_out():
    rng = np.random.default_rng(0)
    u = coverage.coverage_row("uniform", rng.uniform(size=2000))
    assert all(c["verdict"] == "nominal" for c in u["cells"])
    assert u["cells"][1]["fraction"] == pytest.approx(0.1, abs=0.025)
    anti = coverage.coverage_row("anti", rng.uniform(size=2000) ** 2)
    cons = coverage.coverage_row("cons", np.sqrt(rng.uniform(size=2000)))
    assert all(c["verdict"] == "anti-conservative" for c in anti["cells"])
    assert all(c["verdict"] == "conservative" for c in cons["cells"])
    loo = coverage.leave_one_out_p(np.array([1.0, 3.0, 2.0, 3.0]))
    assert np.allclose(loo, [1.0, 0.5, 0.75, 0.5])
    assert "P(p <= 0.05)" in coverage.format_table([u])
    with pytest.raises(ValueError, match="bad: p-values"):
        coverage.coverage_row("bad", [0.5, 1.5])


def test_bumphunt_campaign_runs_small():
    res = coverage.bumphunt_campaign(3, n_events=2e4, inner_toys=40, widths=(3,))
    assert len(res["rows"]) == 4 and all(r["n"] == 3 for r in res["rows"])
    assert all(0 <= r["plain"]["toys"] <= 1 and r["fit_unc"]["t_max"] <= r["plain"]["t_max"] + 1e-9 for r in res["raw"])


def _sum_task(seed: int, X: np.ndarray) -> float:
    return float(X.sum()) + seed


def test_two_maps_over_the_same_shared_array_on_one_client():
    from l1ad.offline.toys_dask import dask_client, map_toys

    X = np.arange(1000.0)
    with dask_client(n_workers=1) as client:
        runs = [map_toys(_sum_task, [0, 1, 2], shared={"X": X}, client=client) for _ in range(3)]
    assert all(r == [X.sum(), X.sum() + 1, X.sum() + 2] for r in runs)
