"""Bump hunt: the profile-likelihood statistic t(m0) against a direct numerical profile likelihood, its edge
cases, the dijet fit against an independent optimiser, the window sums against a slow loop, the look-elsewhere
tools (Euler characteristic against connected components, upcrossings against a loop) and the agreement of
toy and Gross-Vitells / Euler-characteristic global p-values, and the uniformity of global p-values."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, optimize, special, stats

from l1ad.offline import lee
from l1ad.offline.bumphunt import BumpHuntConfig, falling_spectrum, local_pvalue, profile_t, scan, scan_events, window_grid
from l1ad.offline.fit import dijet_log_bin_integrals, fit_dijet, poisson_deviance


# ---------------------------------------------------------------------------------------------- t(m0)
def _t_direct(n_w: float, n_s: float, alpha: float) -> float:
    """2 [max_{b, s>=0} ln L - max_b ln L(s=0)] by numerical optimisation (Poisson n_W ~ alpha b + s, n_S ~ b)."""

    def nll(par, free_s):
        b = np.exp(par[0])
        s = par[1] if free_s else 0.0
        mu_w = alpha * b + s
        if mu_w <= 0:
            return 1e300
        return -(special.xlogy(n_w, mu_w) - mu_w + special.xlogy(n_s, b) - b)

    b0 = max(n_w + n_s, 1.0) / (alpha + 1)
    h0 = optimize.minimize(lambda p: nll([p[0], 0.0], False), [np.log(b0)], method="Nelder-Mead",
                           options={"xatol": 1e-12, "fatol": 1e-13, "maxiter": 20000})
    best = np.inf
    for s0 in (0.0, max(n_w - alpha * n_s, 0.0), 0.5 * n_w):
        b1 = max(n_s, 1e-3)
        h1 = optimize.minimize(lambda p: nll(p, True), [np.log(b1), s0], method="L-BFGS-B",
                               bounds=[(-30, 30), (0, None)], options={"ftol": 1e-15, "gtol": 1e-12})
        best = min(best, h1.fun)
    return max(0.0, 2 * (h0.fun - best))


@pytest.mark.parametrize("n_w,n_s,alpha", [(30, 40, 0.5), (120, 100, 1.0), (7, 0, 0.3), (55, 300, 0.15), (3, 1, 2.0)])
def test_profile_t_matches_direct_profile_likelihood(n_w, n_s, alpha):
    assert profile_t(n_w, n_s, alpha) == pytest.approx(_t_direct(n_w, n_s, alpha), rel=1e-5, abs=1e-6)


def test_profile_t_edge_cases():
    # zero exactly when n_W <= alpha n_S, including equality
    assert profile_t(10, 20, 0.5) == 0.0
    assert profile_t(9, 20, 0.5) == 0.0
    assert profile_t(0, 0, 1.0) == 0.0
    assert profile_t(0, 5, 1.0) == 0.0
    # n_S = 0: 0 ln 0 = 0, t = 2 n_W ln((alpha+1)/alpha), finite
    assert profile_t(4, 0, 0.25) == pytest.approx(2 * 4 * np.log(1.25 / 0.25))
    assert np.isfinite(profile_t(1e6, 0, 1e-3))
    # vectorised with broadcasting, same values as scalars
    nw = np.array([[10, 30], [0, 50]])
    got = profile_t(nw, np.array([20, 25]), np.array([[0.5], [1.0]]))
    want = np.array([[profile_t(a, b, c) for a, b in zip(r, (20, 25))] for r, c in zip(nw, (0.5, 1.0))])
    assert got.shape == (2, 2) and np.allclose(got, want)
    # weighted (non-integer) counts are accepted
    assert profile_t(10.5, 3.25, 1.0) > 0
    for bad in ((-1, 2, 1.0), (1, -2, 1.0), (1, 2, 0.0), (1, 2, np.inf), (1, 2, -1.0)):
        with pytest.raises(ValueError):
            profile_t(*bad)


def test_local_pvalue_asymptotics_from_toys():
    rng = np.random.default_rng(11)
    alpha, b = 0.4, 2500.0
    n_w = rng.poisson(alpha * b, 200_000)
    n_s = rng.poisson(b, 200_000)
    t = profile_t(n_w, n_s, alpha)
    for u in (1.0, 4.0, 9.0):
        emp = np.mean(t >= u)
        want = float(local_pvalue(u))
        assert abs(emp - want) < 4 * np.sqrt(want * (1 - want) / t.size) + 2e-4
    assert np.mean(t == 0) == pytest.approx(0.5, abs=0.01)
    assert local_pvalue(0.0) == 1.0 and local_pvalue(9.0) == pytest.approx(stats.norm.sf(3.0))


# ---------------------------------------------------------------------------------------------- dijet fit
def test_dijet_fit_recovers_truth_and_matches_an_independent_optimiser():
    edges = np.linspace(1500, 6000, 61)
    true = np.array([1.0, 9.0, 4.5, 0.0])
    mu = falling_spectrum(edges, 1e5, params=true)
    n = np.random.default_rng(2).poisson(mu)
    f = fit_dijet(n, edges)
    assert f.valid
    # profiled normalisation: the fitted total equals the observed total exactly
    assert f.expected.sum() == pytest.approx(n.sum(), rel=1e-9)
    assert f.deviance == pytest.approx(poisson_deviance(n, f.expected))
    assert f.pvalue > 1e-3
    pulls = (f.params[1:] - true[1:]) / f.errors[1:]
    assert np.all(np.abs(pulls) < 4)

    # independent: scipy on the full 4-parameter Poisson NLL (ln p0, p1, p2, p3)
    def nll(p):
        lg = dijet_log_bin_integrals(edges, p[1:])
        m = np.exp(p[0] + lg)
        return float(np.sum(m) - np.sum(n * (p[0] + lg)))

    start = np.r_[np.log(f.params[0]) + 0.05, f.params[1:] * [1.05, 0.95, 1.0] + [0, 0, 0.01]]
    ref = optimize.minimize(nll, start, method="Powell", options={"maxiter": 20000, "xtol": 1e-8, "ftol": 1e-12})
    ours = nll(np.r_[np.log(f.params[0]), f.params[1:]])
    assert ours <= ref.fun + 1e-3
    assert ref.fun <= ours + 0.05, (ours, ref.fun)  # the independent optimiser reaches the same minimum


def test_dijet_fit_bad_input():
    e = np.linspace(1000, 3000, 11)
    with pytest.raises(ValueError):
        fit_dijet(np.ones(9), e)
    with pytest.raises(ValueError):
        fit_dijet(-np.ones(10), e)
    with pytest.raises(ValueError):
        fit_dijet(np.ones(10), np.linspace(1000, 14000, 11))  # beyond sqrt(s)
    with pytest.raises(ValueError):
        fit_dijet(np.zeros(10), e)


# ---------------------------------------------------------------------------------------------- scan
def test_window_sums_match_a_slow_loop():
    rng = np.random.default_rng(0)
    c = rng.poisson(20, 37).astype(float)
    for full in (True, False):
        g = window_grid(37, (1, 2, 5, 8), 0.5, full)
        n_w, n_s = g.sums(c)
        for j in range(4):
            for k in range(37):
                if not g.valid[j, k]:
                    continue
                lo, hi, slo, shi = g.lo[j, k], g.hi[j, k], g.slo[j, k], g.shi[j, k]
                assert n_w[j, k] == c[lo:hi].sum()
                assert n_s[j, k] == c[slo:lo].sum() + c[hi:shi].sum()
                assert shi - hi >= 1 or lo - slo >= 1
                if full:  # both sidebands complete: max(1, ceil(0.5 w)) bins each
                    w = int(g.widths[j])
                    assert lo - slo == shi - hi == max(1, int(np.ceil(0.5 * w)))
                    assert slo >= 0 and shi <= 37


def test_scan_finds_an_injected_bump_and_reports_consistent_numbers():
    edges = np.linspace(1500, 5000, 71)
    mu = falling_spectrum(edges, 2e5, bump=(3000.0, 60.0, 600.0))
    n = np.random.default_rng(4).poisson(mu)
    r = scan(n, edges, n_toys=200, widths=(3, 5, 7))
    b = r.best
    assert 2850 <= b["m0"] <= 3150
    assert b["z_local"] > 5
    assert b["t"] == pytest.approx(float(profile_t(b["n_window"], b["n_sideband"], b["alpha"])))
    assert r.t_max == pytest.approx(np.nanmax(r.t))
    assert r.global_p_toys == pytest.approx(1 / 201)  # no toy reaches t_max: the bound 1/(1+n)
    assert r.summary()["global"]["toys"]["is_bound"]
    assert r.global_p_ec is not None and r.global_p_ec < 1e-4
    d = r.to_dict()
    assert d["best_window"]["width_bins"] in (3, 5, 7) and len(d["scan"]["t"]) == 3


def test_scan_with_template_or_fixed_alpha_and_bad_input():
    edges = np.linspace(0.0, 100.0, 41)
    flat = np.full(40, 500.0)
    n = np.random.default_rng(1).poisson(flat)
    r1 = scan(n, edges, background=flat, n_toys=50, widths=(4,))
    r2 = scan(n, edges, alpha=0.5, background=flat, n_toys=0, widths=(4,), sideband_factor=1.0)
    # flat template: alpha = w / (2 w) = 0.5 everywhere, so both agree
    assert np.allclose(r1.t, r2.t, equal_nan=True)
    assert r2.global_p_toys is None and r1.global_p_gv is not None
    with pytest.raises(ValueError, match="fits"):
        scan(n, edges, background=flat, widths=(30,), n_toys=0)
    with pytest.raises(ValueError):
        scan(n[:-1], edges, background=flat, n_toys=0)
    with pytest.raises(ValueError):
        scan(n, edges, alpha=-1.0, background=flat, n_toys=0)
    with pytest.raises(ValueError):
        BumpHuntConfig(widths=())
    r3 = scan_events(np.r_[np.random.default_rng(0).uniform(0.1, 100, 5000), np.zeros(10)], edges, background=None,
                     alpha=1.0, n_toys=0, widths=(3,), sideband_factor=0.5)
    assert r3.counts.sum() == 5000  # the zeros ('undefined') are dropped


# ---------------------------------------------------------------------------------------------- LEE
def test_euler_characteristic_equals_components_minus_holes():
    rng = np.random.default_rng(5)
    four = ndimage.generate_binary_structure(2, 1)
    eight = ndimage.generate_binary_structure(2, 2)
    for _ in range(200):
        m = rng.uniform(size=(rng.integers(3, 15), rng.integers(3, 15))) < rng.uniform(0.2, 0.8)
        n_comp = ndimage.label(m, structure=four)[1]
        padded = np.pad(~m, 1, constant_values=True)
        lab, n_bg = ndimage.label(padded, structure=eight)
        holes = n_bg - 1 if n_bg else 0  # all background components except the outer one
        assert lee.euler_characteristic(m) == n_comp - holes
    # 1-D: the number of runs; batched
    m1 = np.array([[0, 1, 1, 0, 1, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1]], dtype=bool)
    assert lee.euler_characteristic(m1, ndim=1).tolist() == [3, 1]


def test_upcrossings_and_gross_vitells_formula():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(50, 40))
    f[3, 7] = np.nan
    got = lee.count_upcrossings(f, 0.3)
    for i in range(50):
        row = np.nan_to_num(f[i], nan=-np.inf)
        assert got[i] == sum(1 for k in range(39) if row[k] <= 0.3 < row[k + 1])
    u, u0, n0 = 9.0, 1.0, 5.0
    assert lee.gross_vitells(u, u0, n0) == pytest.approx(stats.chi2.sf(u, 1) + n0 * np.exp(-(u - u0) / 2))
    assert lee.gross_vitells(u, u0, n0, dof=2) == pytest.approx(stats.chi2.sf(u, 2) + n0 * (u / u0) ** 0.5 * np.exp(-(u - u0) / 2))
    assert lee.gross_vitells(u, u0, n0, one_sided=True) == pytest.approx(0.5 * stats.chi2.sf(u, 1) + n0 * np.exp(-(u - u0) / 2))
    assert lee.gross_vitells(0.1, 1.0, 50.0) == 1.0  # clipped
    with pytest.raises(ValueError):
        lee.gross_vitells(u, u0, n0, dof=2, one_sided=True)
    # EC coefficients are recovered from exact synthetic mean ECs
    thr = np.array([1.0, 2.0, 3.0, 4.0])
    coef = np.array([12.0, 3.0])
    ec = lee.chi2_tail(thr, 1, True) + coef @ lee.ec_basis(thr, 1, 2)
    assert np.allclose(lee.fit_ec_coefficients(thr, ec, dim=2, one_sided=True), coef)
    assert lee.toy_global_pvalue(5.0, np.array([1.0, 6.0, 5.0, 2.0])) == pytest.approx(3 / 5)


def _lee_agreement(widths, n_toys, seed, u, figure=None):
    edges = np.linspace(1500, 4000, 201)
    mu = falling_spectrum(edges, 5e6)
    n = np.random.default_rng(seed).poisson(mu)
    r = scan(n, edges, widths=widths, background=mu, n_toys=n_toys, n_lee_toys=500, seed=seed)
    if figure is not None:
        from l1ad.offline.plots_stats import plot_global_pvalue

        assert plot_global_pvalue(r, figure, u_max=18.0).stat().st_size > 1000
    return r.global_p_curve(np.asarray(u, dtype=float))


def test_gross_vitells_agrees_with_toys_in_a_1d_scan(tmp_path):
    # levels where the global p-value is small (the regime of the approximation): p_toys ~ 0.15 ... 0.02
    c = _lee_agreement((7,), 6000, 3, (10.0, 12.0, 14.0), figure=tmp_path / "lee_gv.png")
    toys, gv = c["toys"], c["gross_vitells"]
    # GV is conservative on a binned (rough) scan; measured ratios 1.0-1.4 (see offline/lee.py)
    assert np.all(gv / toys > 0.8) and np.all(gv / toys < 1.7), (toys, gv)
    assert np.all(np.abs(stats.norm.isf(gv) - stats.norm.isf(toys)) < 0.25)


def test_euler_characteristic_agrees_with_toys_in_a_2d_scan():
    c = _lee_agreement((3, 5, 7, 9), 6000, 4, (12.0, 14.0, 16.0))
    toys, ec = c["toys"], c["euler_characteristic"]
    # measured over 30 sets of 300 LEE toys: EC / toys = 1.25 +- 0.15 (lattice roughness makes EC conservative)
    assert np.all(ec / toys > 0.8) and np.all(ec / toys < 2.0), (toys, ec)
    assert abs(stats.norm.isf(ec[-1]) - stats.norm.isf(toys[-1])) < 0.3


@pytest.mark.slow
def test_global_pvalues_of_background_only_spectra_are_uniform():
    edges = np.linspace(1500, 4000, 61)
    mu = falling_spectrum(edges, 2e5)
    rng = np.random.default_rng(8)
    ps, ps_fit = [], []
    for i in range(150):
        n = rng.poisson(mu)
        ps.append(scan(n, edges, widths=(3, 5), background=mu, n_toys=300, seed=1000 + i).global_p_toys)
        if i < 40:
            ps_fit.append(scan(n, edges, widths=(3, 5), n_toys=200, seed=2000 + i).global_p_toys)
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    # with alpha from a fit of the data itself, the global p-values are at least not anti-conservative
    assert np.mean(np.array(ps_fit) <= 0.1) <= 0.1 + 3 * np.sqrt(0.09 / len(ps_fit))
