"""Background systematics of the bump hunt: function families and the F-test, the fit uncertainty of ln alpha
against the spread over toys, the constrained window statistic against a direct numerical profile, the
envelope, the spurious signal, and the CLs limits against toys and the Gaussian limit."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, special

from l1ad.offline import bkgsyst, limits
from l1ad.offline.bumphunt import BumpHuntConfig, falling_spectrum, profile_t, scan, window_grid
from l1ad.offline.fit import dijet_log_bin_integrals, fit_dijet

EDGES = np.arange(1500.0, 6001.0, 100.0)


def _spectrum(n, params=(1.0, 10.0, 5.0, 0.0), family="dijet"):
    lg = dijet_log_bin_integrals(EDGES, np.asarray(params[1:], float), family=family)
    return n * np.exp(lg - special.logsumexp(lg))


# ---------------------------------------------------------------------------------------------- families
def test_ua2_family_recovers_its_parameters_and_unknown_family_is_rejected():
    mu = _spectrum(2e5, (1.0, 5.0, 12.0, 4.0), family="ua2")
    n = np.random.default_rng(3).poisson(mu)
    f = fit_dijet(n, EDGES, n_params=4, family="ua2")
    pulls = (f.params[1:] - np.array([5.0, 12.0, 4.0])) / f.errors[1:]
    assert f.valid and np.all(np.abs(pulls) < 4), pulls
    assert f.to_dict()["function"] == "ua2-4p"
    assert np.allclose(f.expected_counts(), f.expected)
    with pytest.raises(ValueError, match="unknown function family 'poly'.*dijet.*ua2"):
        fit_dijet(n, EDGES, family="poly")
    with pytest.raises(ValueError, match="family 'poly'"):
        BumpHuntConfig(family="poly")


def test_f_test_extends_only_when_the_data_ask_for_it():
    rng = np.random.default_rng(5)
    flat = rng.poisson(_spectrum(1e5))  # a 3-parameter truth
    curved = rng.poisson(_spectrum(2e6, (1.0, 10.0, 5.0, 0.6)))  # p3 = 0.6: 4 parameters needed
    c_flat = bkgsyst.select_function(flat, EDGES, families=("dijet",), n_params=(3, 4))
    c_curved = bkgsyst.select_function(curved, EDGES, families=("dijet",), n_params=(3, 4))
    assert c_flat.per_family["dijet"] == 3 and c_flat.f_tests["dijet"][0] > 0.05
    assert c_curved.per_family["dijet"] == 4 and c_curved.f_tests["dijet"][0] < 1e-3
    # the F statistic itself: nested fits, deviance drop over the larger fit's deviance per dof
    f3, f4 = c_curved.fits[("dijet", 3)], c_curved.fits[("dijet", 4)]
    assert f3.deviance >= f4.deviance - 1e-6
    with pytest.raises(ValueError, match="families.*allowed"):
        bkgsyst.select_function(flat, EDGES, families=("expo",))
    with pytest.raises(ValueError, match="n_params.*allowed 3, 4, 5"):
        bkgsyst.select_function(flat, EDGES, n_params=(2, 3))


def test_discrete_profiling_prefers_the_true_family():
    n = np.random.default_rng(9).poisson(_spectrum(1e6, (1.0, 5.0, 12.0, 4.0), family="ua2"))
    ch = bkgsyst.select_function(n, EDGES, n_params=(3, 4))
    assert ch.best[0] == "ua2"
    assert ch.corrected(ch.best) <= min(ch.corrected(k) for k in ch.envelope)
    assert set(ch.summary()["fits"]) == {"dijet-3p", "dijet-4p", "ua2-3p", "ua2-4p"}


# ---------------------------------------------------------------------------------------------- fit uncertainty
def test_ln_alpha_sigma_matches_the_spread_over_toys():
    mu = _spectrum(3e4)
    grid = window_grid(mu.size, (3, 7), 1.0)
    rng = np.random.default_rng(11)
    ln_a, sig = [], []
    for _ in range(40):
        f = fit_dijet(rng.poisson(mu), EDGES, n_params=3)
        mw, ms = grid.sums(f.expected)
        ln_a.append(np.log(np.where(grid.valid, mw / np.where(ms > 0, ms, 1), 1.0)))
        sig.append(bkgsyst.ln_alpha_sigma(f, grid))
    spread = np.std(ln_a, axis=0, ddof=1)[grid.valid]
    pred = np.mean([x[grid.valid] for x in sig], axis=0)
    ratio = spread / pred
    # 40 toys: the sample std has ~11 % relative error
    assert 0.75 < np.median(ratio) < 1.3 and np.all((ratio > 0.5) & (ratio < 1.6)), ratio


def _t_direct(n_w, n_s, alpha0, sigma):
    """2 [min over (b, theta) of -ln L(s=0) - min over (b, theta, s>=0)] by numerical optimisation."""
    th0 = math.log(alpha0)

    def nll(p, s):
        b, th = math.exp(p[0]), p[1]
        mw = math.exp(th) * b + s
        return -(special.xlogy(n_w, mw) - mw + special.xlogy(n_s, b) - b) + 0.5 * (th - th0) ** 2 / sigma**2

    x0 = [math.log(max(n_s, 1.0)), th0]
    h0 = min((optimize.minimize(lambda p: nll(p, 0.0), x0 if i == 0 else [x0[0], th0 + sigma], method="Nelder-Mead",
                                options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 40000}).fun for i in range(2)))
    h1 = nll([math.log(max(n_s, 1e-9)), th0], max(n_w - alpha0 * n_s, 0.0)) if n_s > 0 else -special.xlogy(n_w, n_w) + n_w
    return max(0.0, 2 * (h0 - h1))


@pytest.mark.parametrize("n_w,n_s,alpha,sigma", [(130, 100, 1.0, 0.1), (60, 400, 0.1, 0.3), (25, 30, 0.5, 0.05), (9, 2, 1.0, 0.5)])
def test_profile_t_syst_matches_direct_profile_likelihood(n_w, n_s, alpha, sigma):
    got = bkgsyst.profile_t_syst(n_w, n_s, alpha, sigma)
    assert got == pytest.approx(_t_direct(n_w, n_s, alpha, sigma), rel=1e-4, abs=1e-6)
    assert got < profile_t(n_w, n_s, alpha)


def test_profile_t_syst_limits_and_errors():
    assert bkgsyst.profile_t_syst(130, 100, 1.0, 0.0) == pytest.approx(profile_t(130, 100, 1.0))
    ts = bkgsyst.profile_t_syst(130, 100, 1.0, np.array([0.0, 0.01, 0.1, 1.0, 10.0]))
    assert np.all(np.diff(ts) < 0) and ts[-1] < 1e-3
    assert bkgsyst.profile_t_syst(80, 100, 1.0, 0.2) == 0.0  # deficit
    assert np.isfinite(bkgsyst.profile_t_syst(5, 0, 0.5, 0.2))  # empty sidebands
    with pytest.raises(ValueError, match="sigma.*>= 0"):
        bkgsyst.profile_t_syst(10, 5, 1.0, -0.1)


def test_scan_with_fit_uncertainty_never_raises_t():
    n = np.random.default_rng(4).poisson(falling_spectrum(EDGES, 5e4, bump=(3500.0, 120.0, 250.0)))
    plain = scan(n, EDGES, n_toys=0, widths=(3, 5))
    syst = scan(n, EDGES, n_toys=0, widths=(3, 5), fit_uncertainty=True)
    v = plain.valid
    assert np.all(syst.t[v] <= plain.t[v] + 1e-9) and np.any(syst.t[v] < plain.t[v] - 1e-3)
    assert np.all(syst.sigma_ln_alpha[v] > 0)
    lim = syst.summary()["limits_best_window"]
    assert lim["observed"] > lim["expected"] and lim["sigma_ln_alpha"] > 0  # the best window holds the bump
    with pytest.raises(ValueError, match="fit_uncertainty needs the dijet fit"):
        scan(n, EDGES, n_toys=0, background=falling_spectrum(EDGES, 5e4), fit_uncertainty=True)


def test_envelope_takes_the_penalised_minimum():
    n = np.random.default_rng(9).poisson(_spectrum(2e5))
    ch = bkgsyst.select_function(n, EDGES, n_params=(3, 4))
    keys = ch.envelope
    ts = {k: np.array([4.0, 1.0]) + i for i, k in enumerate(keys)}
    env = bkgsyst.envelope_t(ts, ch)
    c = {k: ch.corrected(k) for k in keys}
    want = np.min([ts[k] + c[k] - min(c.values()) for k in keys], axis=0)
    assert np.allclose(env, want) and np.all(env <= ts[min(c, key=c.get)] + 1e-12)
    with pytest.raises(ValueError, match="no fit for functions"):
        bkgsyst.envelope_t({("ua2", 5): np.zeros(2)}, ch)


# ---------------------------------------------------------------------------------------------- spurious signal
def test_spurious_signal_zero_for_the_true_function_and_found_for_a_wrong_one():
    tmpl = _spectrum(1e6, (1.0, 10.0, 5.0, 0.6))
    windows = [(10, 14), (20, 24), (30, 34)]
    right = bkgsyst.spurious_signal(tmpl, EDGES, windows, family="dijet", n_params=4, scale_to=1e5)
    wrong = bkgsyst.spurious_signal(tmpl, EDGES, windows, family="dijet", n_params=3, scale_to=1e5)
    assert all(abs(d["s_over_error"]) < 0.02 for d in right)
    assert max(abs(d["s_over_error"]) for d in wrong) > 0.3
    # scaling: a 10x smaller data set has 10x smaller spurious signal and sqrt(10)x smaller error
    w10 = bkgsyst.spurious_signal(tmpl, EDGES, windows, family="dijet", n_params=3, scale_to=1e6)
    assert w10[1]["spurious_signal"] == pytest.approx(10 * wrong[1]["spurious_signal"], rel=1e-6)
    assert w10[1]["stat_error"] == pytest.approx(math.sqrt(10) * wrong[1]["stat_error"], rel=1e-6)
    with pytest.raises(ValueError, match=r"window \[40, 50\) is outside the 45 bins"):
        bkgsyst.spurious_signal(tmpl, EDGES, [(40, 50)])


def test_signal_plus_background_fit_recovers_an_injected_box():
    mu = _spectrum(1e5)
    box = np.zeros(mu.size)
    box[18:22] = 1.0
    r = bkgsyst.fit_signal_plus_background(mu + 300.0 * box / 4, EDGES, box, n_params=3)
    assert r["s"] == pytest.approx(300.0, rel=0.02) and r["valid"]


# ---------------------------------------------------------------------------------------------- limits
def test_cls_limit_gaussian_regime():
    # b = n_S alpha known to sqrt(n_S): sigma_s = sqrt(n_W + alpha^2 n_S); the median CLs limit is 1.96 sigma_s
    lim = limits.upper_limits(1e6, 1e6, 1.0)
    assert lim["expected"] == pytest.approx(1.96 * math.sqrt(2e6), rel=2e-3)
    assert lim["observed"] == pytest.approx(lim["expected"], rel=1e-4)
    assert lim["expected_m1"] < lim["expected"] < lim["expected_p1"] < lim["expected_p2"]
    with pytest.raises(ValueError, match="alpha must be finite and > 0, got -1"):
        limits.upper_limits(10, 10, -1.0)


@pytest.mark.parametrize("sigma,n_toys", [(0.0, 300), (0.15, 80)])
def test_cls_limits_cover_and_expected_median_matches_toys(sigma, n_toys):
    alpha, b, s_true = 0.1, 400.0, 20.0
    rng = np.random.default_rng(21)
    exp = limits.upper_limits(alpha * b, b, alpha, sigma)["expected"]
    obs_bkg, obs_sig = [], []
    for _ in range(n_toys):
        ln_a0 = math.log(alpha) + sigma * rng.normal()
        n_s = rng.poisson(b)
        obs_bkg.append(limits.upper_limits(rng.poisson(alpha * b), n_s, math.exp(ln_a0), sigma)["observed"])
        obs_sig.append(limits.upper_limits(rng.poisson(alpha * b + s_true), n_s, math.exp(ln_a0), sigma)["observed"])
    # CLs is conservative: a true signal is excluded in at most 5 % of experiments (binomial margin)
    excl = np.mean(np.array(obs_sig) < s_true)
    assert excl <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / n_toys), excl
    assert np.median(obs_bkg) == pytest.approx(exp, rel=0.15)


def test_asimov_discovery_reach():
    assert limits.asimov_z(100.0, 1e4) == pytest.approx(math.sqrt(2 * ((1e4 + 100) * math.log1p(0.01) - 100)))
    assert limits.asimov_z(100.0, 1e4, 1e-6) == pytest.approx(limits.asimov_z(100.0, 1e4), rel=1e-6)
    assert limits.asimov_z(100.0, 1e4, 100.0) < limits.asimov_z(100.0, 1e4)
    # large b: Z ~ s / sqrt(b + sigma_b^2)
    assert limits.asimov_z(300.0, 1e6, 1000.0) == pytest.approx(300 / math.sqrt(1e6 + 1e6), rel=0.01)
    s5 = limits.discovery_signal(5.0, 50.0, 5.0)
    assert limits.asimov_z(s5, 50.0, 5.0) == pytest.approx(5.0, rel=1e-6)
    w = limits.window_limits(120.0, 1000.0, 0.1, 0.05)
    assert w["asimov_3sigma"] < w["asimov_5sigma"] and w["background"] == pytest.approx(100.0)


def test_envelope_scan_finds_a_bump_and_is_bounded_by_each_function():
    n = np.random.default_rng(8).poisson(falling_spectrum(EDGES, 1e5, bump=(3500.0, 100.0, 400.0)))
    r = bkgsyst.envelope_scan(n, EDGES, widths=(3, 5), n_params=(3, 4))
    best = r["choice"].best
    t_best = r["t"][f"{best[0]}-{best[1]}p"]
    v = r["grid"].valid
    assert np.all(r["t_envelope"][v] <= t_best[v] + 1e-9)  # the best function has zero penalty offset
    j, k = np.unravel_index(np.nanargmax(r["t_envelope"]), r["t_envelope"].shape)
    assert abs(0.5 * (EDGES[r["grid"].lo[j, k]] + EDGES[r["grid"].hi[j, k]]) - 3500.0) <= 200.0
    assert r["t_max_envelope"] > 9.0
