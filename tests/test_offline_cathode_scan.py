"""CATHODE scan: a flow and a classifier per window, several efficiency cuts, toy global p (offline.cathode_scan)."""
from __future__ import annotations

import numpy as np
import pytest

from l1ad.offline import cathode_scan as cs
from l1ad.offline import lhco_toy
from l1ad.offline.classify import ClassifierConfig
from l1ad.offline.cwola_hunting import window_edges, window_starts
from l1ad.offline.flows import FlowConfig

# two windows, a 1-transform flow trained 2 epochs, 2 folds x 10 boosting iterations: seconds, not minutes
TINY = cs.small_scan_config(
    hunt=cs.small_scan_config().hunt.model_copy(update={
        "last_window_hi": 3900.0, "classifier": ClassifierConfig(n_folds=2, n_ensemble=1, max_iter=10)}),
    flow=FlowConfig(transforms=1, hidden=(8,), epochs=2, keep_best=1, n_quantiles=50))


def test_window_scores_cover_the_fit_range_and_the_window_is_out_of_fold():
    data = lhco_toy.make_dataset(6000, 0.0, seed=2)
    k = window_starts(TINY.hunt)[0]
    score = cs.window_scores(data, k, TINY, seed=5)
    e = np.asarray(TINY.hunt.edges)
    in_range = (data.mjj >= e[0]) & (data.mjj < e[-1])
    assert np.all(np.isfinite(score[in_range])) and np.all(np.isnan(score[~in_range]))
    assert np.all((score[in_range] >= 0) & (score[in_range] <= 1))
    # deterministic per seed
    assert np.array_equal(score, cs.window_scores(data, k, TINY, seed=5), equal_nan=True)
    _, lo, hi, _ = window_edges(TINY.hunt, k)
    assert lo == 3100.0 and hi == 3500.0


def test_background_only_scan_toys_and_global_p():
    cfg_json = TINY.model_dump_json()
    a = cs.toy_task(11, cfg_json, n_bkg=6000)
    assert a == {**cs.toy_task(11, cfg_json, n_bkg=6000), "seconds": a["seconds"]}
    assert set(a["per_efficiency"]) == {"0.2", "0.05"} and all(len(v["p_local"]) == 2 for v in a["per_efficiency"].values())
    assert a["t_max"] == max(v["t_max"] for v in a["per_efficiency"].values())
    data = lhco_toy.make_dataset(6000, 0.0, seed=12)
    res = cs.cathode_search(data, TINY, toys=[a, {"t_max": 1e9}])
    s = res.summary()
    assert s["n_tests"] == 4 and s["n_toys"] == 2
    assert res.global_p == pytest.approx((1 + (a["t_max"] >= res.t_max) + 1) / 3)
    assert "toys (2 retrained" in res.global_p_method
    assert "Sidak" in cs.cathode_search.__doc__ and "Sidak" in s["global_p_sidak_note"]
    with pytest.raises(ValueError, match="n_bkg >= 1000"):
        cs.null_toys(TINY, 1, n_bkg=10)


@pytest.mark.slow
def test_cathode_scan_sees_an_injected_signal():
    # 30k background + signal at S/B 10 % in the SR (resonance at 3.5 TeV), windows 3.3-3.7 and 3.7-4.1 TeV,
    # the CPU-sized flow: the signal window stands out at both cuts (measured Z 6.4 and 9.1), the other does not
    data = lhco_toy.make_dataset(30_000, 0.1, seed=3)
    base = cs.small_scan_config()
    cfg = cs.small_scan_config(hunt=base.hunt.model_copy(update={"first_window_lo": 3300.0, "last_window_hi": 4100.0}))
    res = cs.cathode_scan(data, cfg)
    for x in (0.2, 0.05):
        sig, other = res.per_efficiency[x].windows
        assert sig.lo == 3300.0 and sig.z > 4 and other.z < 2
