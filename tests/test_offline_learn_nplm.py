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
    r = nplm.fit(ref, data, nplm.NPLMConfig(model="nn", epochs=400, lr=0.02))
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
