"""NPLM: the statistic, the kernel and NN learners, null toys on Dask, p-values and the chi2 fit."""
import numpy as np
import pytest
from scipy import stats

from l1ad.offline import nplm
from l1ad.offline.toys_dask import map_toys


def test_statistic_formula_by_hand():
    f_ref = np.array([0.0, np.log(2.0)])
    f_data = np.array([1.0, -0.5])
    # t = -2 [ w * sum(e^f - 1) - sum f ] = -2 [ 0.5 * (0 + 1) - 0.5 ] = 0
    assert nplm.test_statistic(f_ref, f_data, 0.5) == pytest.approx(0.0)
    assert nplm.test_statistic(f_ref, f_data, 0.25) == pytest.approx(-2 * (0.25 - 0.5))
    # per-event reference weights and data weights
    assert nplm.test_statistic(f_ref, f_data, np.array([1.0, 2.0]), np.array([2.0, 1.0])) == pytest.approx(-2 * (2.0 - 1.5))
    assert nplm.test_statistic(np.zeros(5), np.zeros(3), 0.6) == 0.0


def test_kernel_nplm_null_small_signal_large_and_consistent():
    rng = np.random.default_rng(0)
    ref = rng.exponential(size=(10_000, 1))
    cfg = nplm.NPLMConfig(max_centers=80)
    h0 = nplm.fit(ref, rng.exponential(size=(1000, 1)), cfg)
    sig = nplm.fit(ref, np.concatenate([rng.exponential(size=(1000, 1)), rng.normal(4, 0.2, (40, 1))]), cfg)
    assert h0.t < 15 and sig.t > 20 and sig.t > 4 * h0.t
    # t is exactly the NPLM formula on the learned f with weight N_D / N_R
    assert sig.t == pytest.approx(nplm.test_statistic(sig.f_ref, sig.f_data, 1040 / 10_000))
    # the learned f approximates log(n_data / n_ref): positive at the bump
    assert sig.predict(np.array([[4.0]]))[0] > 0.5 > sig.predict(np.array([[1.0]]))[0]


def test_nn_nplm_matches_its_loss():
    rng = np.random.default_rng(1)
    ref = rng.exponential(size=(4000, 1))
    data = np.concatenate([rng.exponential(size=(400, 1)), rng.normal(4, 0.2, (30, 1))])
    r = nplm.fit(ref, data, nplm.NPLMConfig(model="nn", optimizer="adam", epochs=400, lr=0.02))
    assert r.info["n_params"] == 4 * 1 + 4 + 4 + 1
    assert r.t == pytest.approx(r.info["t_from_loss"], rel=0.05, abs=0.5)
    assert r.t > 10


def test_toy_split_disjoint_and_poisson():
    rng = np.random.default_rng(2)
    d, r = nplm.toy_split(1000, 100.0, rng)
    assert len(np.intersect1d(d, r)) == 0 and len(d) + len(r) == 1000
    sizes = [len(nplm.toy_split(1000, 100.0, np.random.default_rng(s))[0]) for s in range(200)]
    assert np.mean(sizes) == pytest.approx(100, abs=3) and np.var(sizes) == pytest.approx(100, rel=0.3)


def test_pvalues_and_chi2_fit():
    assert nplm.empirical_p(5.0, np.array([1.0, 6.0, 5.0, 2.0])) == pytest.approx(3 / 5)
    assert nplm.empirical_p(100.0, np.zeros(99)) == pytest.approx(0.01)
    t = stats.chi2(7).rvs(2000, random_state=3)
    c = nplm.fit_chi2(t)
    assert c.dof == pytest.approx(7, rel=0.05) and c.ks_p > 0.01
    assert nplm.z_from_p(stats.norm.sf(5.0)) == pytest.approx(5.0)


def _square(seed, offset):
    return seed * seed + offset


def test_dask_local_cluster_equals_sync():
    from l1ad.offline.toys_dask import dask_client

    seeds = [3, 1, 2]
    assert map_toys(_square, seeds, shared={"offset": 1}, scheduler="sync") == [10, 2, 5]
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(2000, 2))
    cfg = nplm.NPLMConfig(max_centers=30)
    a = nplm.null_toys(ref, cfg, n_expected=200, n_toys=3, scheduler="sync")
    with dask_client(n_workers=2) as client:
        assert map_toys(_square, seeds, shared={"offset": 1}, client=client) == [10, 2, 5]
        b = nplm.null_toys(ref, cfg, n_expected=200, n_toys=3, client=client)
    assert np.array_equal(a, b)  # toys are seeded per toy: same t's whatever the scheduler
    res = nplm.nplm_test(ref, rng.normal(size=(200, 2)), cfg, t_toys=a)
    assert 1 / 4 <= res.p_empirical <= 1 and np.isfinite(res.z_chi2)


def test_nplm_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="equal d"):
        nplm.fit(np.zeros((10, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="one entry per event"):
        nplm.fit(np.zeros((10, 1)), np.zeros((5, 1)), w_ref=np.ones(3))


@pytest.mark.slow
def test_kernel_null_distribution_is_chi2_like():
    rng = np.random.default_rng(5)
    ref = rng.exponential(size=(20_000, 1))
    t = nplm.null_toys(ref, nplm.NPLMConfig(max_centers=100), n_expected=1000, n_toys=60, n_workers=2)
    c = nplm.fit_chi2(t)
    assert c.ks_p > 0.01 and 1 < c.dof < 60


# ---------------------------------------------------------------------- NN by L-BFGS-B, extended/shape, quoted p
def test_numpy_net_gradient_and_lbfgs_fit_respects_the_clip():
    from scipy.optimize import check_grad

    rng = np.random.default_rng(6)
    net = nplm.NumpyNet([2, 4, 3, 1])
    X, is_ref, w = rng.normal(size=(60, 2)), rng.random(60) < 0.7, rng.random(60)

    def fun(th):
        f, acts = net.forward(X, th)
        loss, g = nplm.nplm_loss(f, is_ref, w)
        return loss, net.backward(th, acts, g)

    th = net.init(rng)
    assert net.n_params == 2 * 4 + 4 + 4 * 3 + 3 + 3 + 1
    assert check_grad(lambda t: fun(t)[0], lambda t: fun(t)[1], th) < 1e-5
    ref = rng.exponential(size=(3000, 1))
    data = np.concatenate([rng.exponential(size=(300, 1)), rng.normal(4, 0.2, (25, 1))])
    r = nplm.fit(ref, data, nplm.NPLMConfig(model="nn", weight_clip=0.7), n_expected=300.0)
    weights = r.model.theta[nplm._weight_mask(r.model)]
    assert np.max(np.abs(weights)) <= 0.7 + 1e-12 and r.info["converged"]
    assert r.t == pytest.approx(r.info["t_from_loss"], rel=1e-9)  # converged: t is -2 x the minimised loss
    wide = nplm.fit(ref, data, nplm.NPLMConfig(model="nn", weight_clip=5.0), n_expected=300.0)
    assert wide.t > r.t > 5  # a looser clip can only fit better (same data), the bump is seen either way


def test_toys_extended_poisson_or_shape_fixed():
    sizes = [len(nplm.toy_split(1000, 100.0, np.random.default_rng(s), extended=False)[0]) for s in range(20)]
    assert set(sizes) == {100}
    rng = np.random.default_rng(7)
    ref = rng.exponential(size=(2000, 1))
    cfg = nplm.NPLMConfig(max_centers=30)
    shape = nplm.toy_task(3, ref, 200.0, cfg.model_dump_json(), extended=False)
    ext = nplm.toy_task(3, ref, 200.0, cfg.model_dump_json())
    assert shape["n_data"] == 200 and ext["n_data"] != 200


def test_nplm_test_extended_when_the_count_is_given_and_quotes_toy_p():
    rng = np.random.default_rng(8)
    ref, data = rng.exponential(size=(3000, 1)), rng.exponential(size=(260, 1))
    cfg = nplm.NPLMConfig(max_centers=30)
    toys = stats.chi2(5).rvs(50, random_state=1)
    ext = nplm.nplm_test(ref, data, cfg, n_expected=200.0, t_toys=toys)
    shape = nplm.nplm_test(ref, data, cfg, t_toys=toys)
    assert ext.extended and not shape.extended
    # 260 events where 200 are expected: the extended t counts the excess, the shape-only t does not
    assert ext.t_obs > shape.t_obs + 5 and ext.fit.info["n_expected"] == pytest.approx(200.0) and shape.fit.info["n_expected"] == pytest.approx(260.0)
    s = ext.summary()
    assert s["extended"] and s["p"] == ext.p and s["p_method"].startswith(("toys", "chi2"))
    with pytest.raises(ValueError, match="needs n_expected"):
        nplm.nplm_test(ref, data, cfg, extended=True, t_toys=toys)


def test_quoted_p_toys_first_chi2_only_beyond_them_and_only_if_it_describes_them():
    t = stats.chi2(4).rvs(400, random_state=2)
    good = nplm.fit_chi2(t)
    p, how = nplm.quoted_p(5.0, t, good)
    assert p == nplm.empirical_p(5.0, t) and how == "toys (400)"
    p, how = nplm.quoted_p(60.0, t, good)  # beyond every toy, chi2 fits: extrapolate
    assert p == pytest.approx(stats.chi2(good.dof).sf(60.0)) and how.startswith("chi2 extrapolation")
    bad = nplm.Chi2Fit(dof=4.0, ks_p=1e-6, ks_stat=0.3)
    p, how = nplm.quoted_p(60.0, t, bad)
    assert p == pytest.approx(1 / 401) and "upper bound" in how


def test_chi2_check_against_the_parameter_count():
    t = stats.chi2(13).rvs(300, random_state=4)
    c = nplm.chi2_check(t, 13)
    assert c["ks_p"] > 0.01 and c["dof_fitted"] == pytest.approx(13, rel=0.1)
    assert nplm.chi2_check(t * 0.6, 13)["ks_p"] < 1e-4


@pytest.mark.slow
def test_tune_weight_clip_dof_grows_with_the_clip():
    rng = np.random.default_rng(9)
    ref = rng.exponential(size=(2000, 1))
    cfg = nplm.NPLMConfig(model="nn", hidden=(2,))
    r = nplm.tune_weight_clip(ref, cfg, n_expected=200.0, clips=(0.3, 10.0), n_toys=12, scheduler="sync")
    assert r["n_params"] == 7 and len(r["scan"]) == 2
    lo, hi = r["scan"]
    assert lo["mean"] < hi["mean"]
    assert 0.3 <= r["clip"] <= 10.0


def test_coverage_campaigns_nn_and_kernel_modes_small():
    from l1ad.offline import coverage

    r = coverage.nplm_nn_campaign(5, n_ref=1500, n_expected=150, clips=(0.5, 4.0), n_tune=3, scheduler="sync")
    assert r["null"]["n_toys"] == 5 and r["null"]["dof"] == 13 and 0.5 <= r["clip"] <= 4.0
    assert len(r["tuning"]["scan"]) == 2 and r["rows"][0]["n"] == 5
    k = coverage.nplm_campaign(2, n_null=3, n_expected=150, scheduler="sync", modes=("extended", "shape"))
    assert len(k["rows"]) == 6 and set(k["modes"]) == {"extended", "shape"}
    assert "shape only" in k["rows"][3]["name"]
