"""NPLM with nuisance parameters (normalisation, scale): t = tau - Delta (offline.nplm_syst)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from l1ad.offline import nplm
from l1ad.offline import nplm_syst as ns

CFG = nplm.NPLMConfig(model="nn", weight_clip=2.0, max_iter=800)


def test_expansions_normalisation_exact_scale_quadratic():
    X = np.linspace(0.0, 5.0, 11)[:, None]
    a1, a2 = ns.expansion(X, [ns.normalization(0.1)])
    assert np.allclose(a1, math.log1p(0.1)) and np.allclose(a2, 0.0)
    sc = ns.scale(0.05, lambda Z: -Z[:, 0])  # Exp(1): x -> 1.05^nu x
    a1, a2 = ns.expansion(X, [sc])
    for nu in (-1.0, 0.5, 1.0):
        exact = sc.log_ratio(X, nu)[:, 0] if np.ndim(sc.log_ratio(X, nu)) == 2 else sc.log_ratio(X, nu)
        assert np.allclose(a1[:, 0] * nu + a2[:, 0] * nu**2, exact, atol=2e-3)
    # d/dnu at 0 of -ln s - x/s + x with s = 1.05^nu: ln 1.05 (x - 1)
    assert np.allclose(a1[:, 0], math.log(1.05) * (X[:, 0] - 1.0), rtol=2e-3, atol=1e-4)
    with pytest.raises(ValueError):
        ns.normalization(0.0)


def test_a_nuisance_shift_is_absorbed_new_physics_is_not():
    rng = np.random.default_rng(1)
    ref = rng.exponential(size=(6000, 1))
    nus = [ns.normalization(0.1), ns.scale(0.1, lambda Z: -Z[:, 0])]
    # background-only data with 1.25x the events and x scaled by 1.2 (about +2 sigma each), aux at nominal
    shifted = 1.2 * rng.exponential(size=(rng.poisson(750), 1))
    plain = nplm.fit(ref, shifted, CFG, n_expected=600.0).t
    syst = ns.fit_syst(ref, shifted, nus, CFG, n_expected=600.0)
    assert syst["n_params"] == 13
    assert plain > 60 and syst["t"] < 25 and syst["delta"] > 40
    assert syst["nu_null"][0] > 1.0 and syst["nu_null"][1] > 1.0  # both pulled up
    assert syst["tau"] >= syst["delta"] - 1e-6
    # a narrow bump on nominal background is not a nuisance: it stays
    bump = np.concatenate([rng.exponential(size=(600, 1)), rng.normal(3.0, 0.15, (40, 1))])
    assert ns.fit_syst(ref, bump, nus, CFG, n_expected=600.0)["t"] > 25


def test_toys_reweighted_to_the_true_nuisance_and_aux_drawn():
    rng = np.random.default_rng(2)
    ref = rng.exponential(size=(2000, 1))
    nus = [ns.normalization(0.2)]
    a1, a2 = ns.expansion(ref, nus)
    cfg = CFG.model_copy(update={"hidden": (2,), "max_iter": 300})
    r0 = ns.toy_task(5, ref, a1, a2, 150.0, cfg.model_dump_json())
    r1 = ns.toy_task(5, ref, a1, a2, 150.0, cfg.model_dump_json(), nu_true=[2.0], plain=True)
    assert len(r0["aux"]) == 1 and r0["aux"] != r1["aux"]
    assert r1["nu_null"][0] > 0.8 and "t_plain" in r1  # data drawn with 1.2^2 the rate pull nu up
    toys = ns.null_toys(ref, nus, cfg, n_expected=150.0, n_toys=1, seed=5, scheduler="sync")
    assert toys[0]["t"] == pytest.approx(r0["t"])


def test_syst_campaign_rows_small():
    from l1ad.offline import coverage

    r = coverage.nplm_syst_campaign(2, clip=2.0, n_ref=1500, n_expected=150, scheduler="sync")
    assert [row["n"] for row in r["rows"]] == [2, 2, 2, 2]
    assert "chi2(13) p of tau - Delta" in r["rows"][0]["name"] and set(r["raw"]) == {"nominal", "shifted"}
    assert all(len(v["t"]) == 2 for v in r["raw"].values())
