"""Benchmark: our sliding-window bump hunt (offline.bumphunt) against pyBumpHunter 0.5.1 (BumpHunter1D).

Same histograms for both: a dijet-function spectrum (1500-5000 GeV, 60 bins, 1e5 background events) with and
without a Gaussian bump at 3000 GeV. The methods differ by design:

* pyBumpHunter compares the data with a *reference background histogram* window by window (Poisson local
  p-values, no sidebands); it is given the dijet fit of the data as reference (our fit), so both are data-driven;
* ours profiles the normalisation with sidebands, the transfer factor alpha from the same fit, and gives the
  global p-value from toys plus the Euler-characteristic (2-D) random-field estimate.

Both scan widths 3, 5, 7, 9 bins with step 1 and use the same number of toys. Printed: local and global
significances side by side, wall times and their ratio, and the uniformity (KS p-value) of each method's global
p-values over background-only spectra (pyBumpHunter given the true background as reference there, ours
both with the true template and with the dijet fit). Also writes the look-elsewhere validation figures
(toys vs Gross-Vitells in a 1-D scan, toys vs Euler characteristic in a 2-D scan).

    .venv/bin/python bench/bench_bumphunt.py [--n-toys 1000] [--n-uniform 60] [--out out/bench/bumphunt]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from l1ad.offline.bumphunt import falling_spectrum, scan  # noqa: E402
from l1ad.offline.fit import fit_dijet  # noqa: E402
from l1ad.offline.plots_stats import plot_bumphunt_fit, plot_bumphunt_scan, plot_global_pvalue  # noqa: E402
from l1ad.trigger.atomic import write_json_atomic  # noqa: E402

WIDTHS = (3, 5, 7, 9)


def pybumphunter(data: np.ndarray, bkg: np.ndarray, edges: np.ndarray, npe: int, seed: int):
    from pyBumpHunter import BumpHunter1D

    bh = BumpHunter1D(rang=(edges[0], edges[-1]), bins=edges, width_min=WIDTHS[0], width_max=WIDTHS[-1],
                      width_step=2, scan_step=1, npe=npe, nworker=1, seed=seed)
    with contextlib.redirect_stdout(io.StringIO()):
        bh.bump_scan(data, bkg, is_hist=True)
    p_loc = float(bh.min_Pval_ar[0])
    lo = float(edges[bh.min_loc_ar[0]])
    hi = float(edges[bh.min_loc_ar[0] + bh.min_width_ar[0]])
    return {"z_local": float(stats.norm.isf(p_loc)), "p_local": p_loc, "p_global": float(bh.global_Pval),
            "z_global": float(bh.significance), "window": (lo, hi)}


def ours(data: np.ndarray, edges: np.ndarray, n_toys: int, seed: int, background=None):
    r = scan(data, edges, widths=WIDTHS, n_toys=n_toys, background=background, seed=seed)
    return r, {"z_local": r.z_local_max, "p_local": float(r.best["p_local"]), "p_global": r.global_p_toys,
               "z_global": r.global_z_toys, "p_global_ec": r.global_p_ec, "z_global_ec": r.global_z_ec,
               "window": (r.best["m_lo"], r.best["m_hi"]), "p_global_is_bound": r.summary()["global"]["toys"]["is_bound"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-toys", type=int, default=1000)
    ap.add_argument("--n-uniform", type=int, default=60, help="background-only spectra for the uniformity check")
    ap.add_argument("--n-toys-uniform", type=int, default=200)
    ap.add_argument("--signal", type=float, default=400.0, help="injected signal events")
    ap.add_argument("--out", default=str(ROOT / "out" / "bench" / "bumphunt"))
    args = ap.parse_args()
    out = Path(args.out)
    edges = np.linspace(1500, 5000, 61)
    mu_b = falling_spectrum(edges, 1e5)
    rng = np.random.default_rng(1)
    rows = {}
    report: dict = {"widths": WIDTHS, "n_toys": args.n_toys, "cases": {}}
    for case, ns in (("bump", args.signal), ("no bump", 0.0)):
        mu = falling_spectrum(edges, 1e5, bump=(3000.0, 60.0, ns) if ns else None)
        data = rng.poisson(mu).astype(float)
        t0 = time.perf_counter()
        fit = fit_dijet(data, edges)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        res, o = ours(data, edges, args.n_toys, seed=11, background=None)  # fits the dijet function itself
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours(data, edges, args.n_toys, seed=11, background=fit.expected)  # scan + toys only, like the peer
        t_scan = time.perf_counter() - t0
        t0 = time.perf_counter()
        p = pybumphunter(data, fit.expected, edges, args.n_toys, seed=11)
        t_peer = time.perf_counter() - t0
        rows[case] = (o, p, t_ours, t_peer, t_fit, t_scan)
        report["cases"][case] = {"ours": o, "pybumphunter": p, "time_ours_s": t_ours, "time_ours_scan_only_s": t_scan,
                                 "time_pybumphunter_s": t_peer, "time_fit_s": t_fit, "injected_signal": ns}
        tag = case.replace(" ", "_")
        plot_bumphunt_scan(res, out / f"scan_{tag}.png")
        plot_bumphunt_fit(res, out / f"fit_{tag}.png")
        plot_global_pvalue(res, out / f"global_pvalue_{tag}.png")

    print(f"\nBump hunt on the same histograms (60 bins, widths {WIDTHS} bins, {args.n_toys} toys each)\n")
    hdr = f"{'case':<9} {'method':<14} {'window [GeV]':<15} {'Z local':>8} {'p global':>10} {'Z global':>9} {'time [s]':>9}"
    print(hdr)
    print("-" * len(hdr))
    for case, (o, p, t_o, t_p, t_fit, t_s) in rows.items():
        og = ("<" if o["p_global_is_bound"] else "") + f"{o['p_global']:.4g}"
        oz = (">" if o["p_global_is_bound"] else "") + f"{o['z_global']:.2f}"
        print(f"{case:<9} {'ours (toys)':<14} {o['window'][0]:>6.0f}-{o['window'][1]:<8.0f} {o['z_local']:>8.2f} "
              f"{og:>10} {oz:>9} {t_o:>9.2f}")
        print(f"{'':<9} {'ours (EC)':<14} {'':<15} {'':>8} {o['p_global_ec']:>10.4g} {o['z_global_ec']:>9.2f}")
        pg = f"<{1 / args.n_toys:.0e}" if p["p_global"] == 0 else f"{p['p_global']:.4g}"
        zg = f">{p['z_global']:.2f}" if p["p_global"] == 0 else f"{p['z_global']:.2f}"
        print(f"{'':<9} {'pyBumpHunter':<14} {p['window'][0]:>6.0f}-{p['window'][1]:<8.0f} {p['z_local']:>8.2f} "
              f"{pg:>10} {zg:>9} {t_p:>9.2f}")
        print(f"{'':<9} time pyBumpHunter / ours: {t_p / t_s:.1f}x for scan + toys ({t_s:.2f} s ours), "
              f"{t_p / t_o:.1f}x counting our dijet fit (one fit {t_fit:.2f} s)")

    # ------------------------------------------------------------------ uniformity under H0
    pg_peer, pg_tmpl, pg_fit = [], [], []
    t0 = time.perf_counter()
    for i in range(args.n_uniform):
        d = rng.poisson(mu_b).astype(float)
        pg_peer.append(pybumphunter(d, mu_b, edges, args.n_toys_uniform, seed=100 + i)["p_global"])
        pg_tmpl.append(scan(d, edges, widths=WIDTHS, background=mu_b, n_toys=args.n_toys_uniform, seed=100 + i).global_p_toys)
        pg_fit.append(scan(d, edges, widths=WIDTHS, n_toys=args.n_toys_uniform, seed=100 + i).global_p_toys)
    dt = time.perf_counter() - t0
    ks = {name: float(stats.kstest(v, "uniform").pvalue) for name, v in
          (("pybumphunter_true_reference", pg_peer), ("ours_true_template", pg_tmpl), ("ours_dijet_fit", pg_fit))}
    frac = {name: float(np.mean(np.asarray(v) <= 0.1)) for name, v in
            (("pybumphunter_true_reference", pg_peer), ("ours_true_template", pg_tmpl), ("ours_dijet_fit", pg_fit))}
    print(f"\nGlobal p-values of {args.n_uniform} background-only spectra ({args.n_toys_uniform} toys each, {dt:.0f} s):")
    for name in ks:
        print(f"  {name:<30} KS p-value vs U(0,1) = {ks[name]:.3f}   P(p_global <= 0.1) = {frac[name]:.3f}")
    report["uniformity"] = {"n_spectra": args.n_uniform, "n_toys": args.n_toys_uniform, "ks_pvalue": ks,
                            "frac_p_le_0.1": frac, "pvalues": {"pybumphunter_true_reference": pg_peer,
                                                               "ours_true_template": pg_tmpl, "ours_dijet_fit": pg_fit}}

    # ------------------------------------------------------------------ look-elsewhere validation figures
    edges_f = np.linspace(1500, 4000, 201)
    mu_f = falling_spectrum(edges_f, 5e6)
    d = np.random.default_rng(3).poisson(mu_f).astype(float)
    lee = {}
    for name, widths in (("1d_gross_vitells", (7,)), ("2d_euler_characteristic", WIDTHS)):
        r = scan(d, edges_f, widths=widths, background=mu_f, n_toys=10_000, n_lee_toys=300, seed=5)
        u = np.array([8.0, 10.0, 12.0, 14.0, 16.0])
        c = r.global_p_curve(u)
        approx = c.get("gross_vitells", c["euler_characteristic"])
        lee[name] = {"u": u.tolist(), "toys": c["toys"].tolist(), "approx": approx.tolist(),
                     "ratio": (approx / np.maximum(c["toys"], 1e-12)).tolist()}
        plot_global_pvalue(r, out / f"lee_{name}.png", u_max=18.0)
        print(f"\nLEE check {name} (10000 toys; GV/EC from 300):")
        print("  u        " + " ".join(f"{x:>8.1f}" for x in u))
        print("  toys     " + " ".join(f"{x:>8.4f}" for x in c["toys"]))
        print("  approx   " + " ".join(f"{x:>8.4f}" for x in approx))
    report["lee_validation"] = lee
    write_json_atomic(out / "bench_bumphunt.json", report)
    print(f"\nwritten: {out}/bench_bumphunt.json and figures in {out}/")


if __name__ == "__main__":
    main()
