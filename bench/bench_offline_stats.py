"""Validation numbers and figures of the offline statistics (KDE, conformal, two-sample tests, nuisance
orthogonalisation). Prints the measured checks and writes figures to out/bench/offline_stats/:

* kde_loocv.png      LOOCV loss curve on 1e5 points, with the timing;
* conformal_rates.png  P(p <= 0.05) per pile-up bin, plain vs conditional conformal (quantile regression);
* conformal_null_pvalues.png  split-conformal p-values under H0 (super-uniform);
* twosample_null_pvalues.png  permutation p-values of every two-sample test under H0, KS p-value of each;
* nuisance_fpr.png   false-positive rate versus the jet energy scale, raw vs orthogonalised -ln p0 score.

    .venv/bin/python bench/bench_offline_stats.py [--out out/bench/offline_stats] [--reps 200]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from l1ad.offline import conformal, kde, nuisance, twosample  # noqa: E402
from l1ad.offline.plots_stats import (plot_conditional_rates, plot_loocv, plot_nuisance_fpr,  # noqa: E402
                                 plot_pvalue_hist)
from l1ad.trigger.atomic import write_json_atomic  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "out" / "bench" / "offline_stats"))
    ap.add_argument("--reps", type=int, default=200, help="null repetitions per two-sample test")
    args = ap.parse_args()
    out = Path(args.out)
    rng = np.random.default_rng(0)
    report: dict = {}

    # ------------------------------------------------------------------ KDE
    x = rng.normal(size=100_000)
    t0 = time.perf_counter()
    r = kde.loocv_bandwidth(x)
    t_loocv = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = kde.anomaly_score(x, rng.normal(size=100_000) * 1.5, r.bandwidth)
    t_score = time.perf_counter() - t0
    plot_loocv(r, out / "kde_loocv.png")
    print(f"KDE 1-D, n = 1e5: LOOCV over {r.bandwidths.size} bandwidths {t_loocv:.2f} s -> h* = {r.bandwidth:.4f} "
          f"(Silverman {1.06 * x.std() * x.size ** -0.2:.4f}); 1e5 anomaly scores {t_score:.2f} s")
    report["kde"] = {"n": 100_000, "loocv_s": t_loocv, "h_star": r.bandwidth, "score_s": t_score, "finite": bool(np.isfinite(s).all())}

    # ------------------------------------------------------------------ conformal
    def pileup(n):
        z = rng.uniform(0, 80, n)
        return rng.normal(0.04 * z, 1 + 0.02 * z), z

    s_cal, z_cal = pileup(8000)
    s_te, z_te = pileup(40_000)
    edges = np.array([0, 10, 20, 30, 40, 50, 60, 70, 80])
    centres = 0.5 * (edges[1:] + edges[:-1])
    b = np.clip(np.digitize(z_te, edges[1:-1]), 0, len(centres) - 1)
    rates, errs = {}, {}
    p_plain = conformal.split_pvalues(s_cal, s_te)
    for name, p in [("plain split conformal", p_plain)] + [
        (f"conditional ({m})", conformal.conditional_pvalues(s_cal, z_cal, s_te, z_te, model=m)) for m in ("binned", "hgb")
    ]:
        rr = np.array([np.mean(p[b == i] <= 0.05) for i in range(len(centres))])
        nn = np.array([np.sum(b == i) for i in range(len(centres))])
        rates[name], errs[name] = rr, np.sqrt(0.05 * 0.95 / nn)
        print(f"conformal {name:<26} P(p<=0.05) per pile-up bin: " + " ".join(f"{v:.3f}" for v in rr)
              + f"   overall {np.mean(p <= 0.05):.4f}")
    plot_conditional_rates(centres, rates, 0.05, out / "conformal_rates.png", xlabel="pile-up (covariate)", errors=errs)
    report["conformal_rates"] = {k: v.tolist() for k, v in rates.items()}
    # super-uniformity: n_cal = 19, many repetitions
    sc = rng.standard_exponential((50_000, 20))
    p_null = (1 + (sc[:, :-1] >= sc[:, -1:]).sum(axis=1)) / 20
    sup = {a: float(np.mean(p_null <= a)) for a in (0.05, 0.1, 0.2, 0.5)}
    print("conformal null, n_cal = 19: " + ", ".join(f"P(p<={a}) = {v:.4f} (exact {np.floor(a * 20) / 20:.4f})" for a, v in sup.items()))
    pr = np.array([conformal.split_pvalues(rng.normal(size=99), rng.normal(size=1), randomize=True, rng=rng)[0] for _ in range(5000)])
    print(f"conformal randomised null p-values: KS p-value vs U(0,1) = {stats.kstest(pr, 'uniform').pvalue:.3f}")
    plot_pvalue_hist({"split conformal (n_cal=19)": p_null, "randomised (n_cal=99)": pr}, out / "conformal_null_pvalues.png")
    report["conformal_null"] = {"p_le_a": sup, "ks_randomised": float(stats.kstest(pr, "uniform").pvalue)}

    # ------------------------------------------------------------------ two-sample tests under H0
    from sklearn.linear_model import LogisticRegression

    pv, ks = {}, {}
    for name, d in (("ks", 1), ("chi2", 1), ("mmd", 2), ("wasserstein", 1), ("wasserstein", 3), ("classifier", 2)):
        label = f"{name} ({d}-D)"
        kw = {"classifier": LogisticRegression()} if name == "classifier" else {}
        if name == "wasserstein" and d > 1:
            kw["n_projections"] = 10
        t0 = time.perf_counter()
        ps = np.array([twosample.test(name, rng.normal(size=(200, d)), rng.normal(size=(200, d)), n_perm=199, seed=i, **kw).pvalue
                       for i in range(args.reps)])
        pv[label] = ps
        ks[label] = float(stats.kstest(ps, "uniform").pvalue)
        print(f"two-sample {label:<18} null p-values: KS p = {ks[label]:.3f}, P(p<=0.05) = {np.mean(ps <= 0.05):.3f} "
              f"({args.reps} reps x 199 perms, {time.perf_counter() - t0:.1f} s)")
    plot_pvalue_hist(pv, out / "twosample_null_pvalues.png", title="H0: x, y ~ N(0, 1)")
    report["twosample_null_ks"] = ks

    # ------------------------------------------------------------------ nuisance orthogonalisation
    K = 3.0

    def sample(theta, n):
        return np.column_stack([theta * rng.gamma(K, 1.0, n), rng.normal(size=n)])

    def log_p(xx, theta):
        return stats.gamma.logpdf(xx[:, 0] / theta, K) - np.log(theta) + stats.norm.logpdf(xx[:, 1])

    x0 = sample(1.0, 400_000)
    proj = nuisance.orthogonalize(-log_p(x0, 1.0), nuisance.score_vector(log_p, x0, 1.0))
    thetas = np.array([0.9, 0.95, 1.0, 1.05, 1.1])
    raw = nuisance.false_positive_rates(lambda xx: -log_p(xx, 1.0), sample, thetas, fpr=0.01, n=400_000)
    orth = nuisance.false_positive_rates(lambda xx: proj.transform(-log_p(xx, 1.0), nuisance.score_vector(log_p, xx, 1.0)),
                                         sample, thetas, fpr=0.01, n=400_000)
    print(f"nuisance (JES theta {thetas.tolist()}), FPR at the theta=1 1% threshold:\n"
          f"  raw -ln p0       {np.round(raw, 4).tolist()}\n  orthogonalised   {np.round(orth, 4).tolist()}  (c = {proj.c[0]:.4f}, 1/K = {1 / K:.4f})")
    plot_nuisance_fpr(thetas, {r"raw $-\ln p_0$": raw, "orthogonalised": orth}, 0.01, out / "nuisance_fpr.png")
    report["nuisance"] = {"thetas": thetas.tolist(), "fpr_raw": raw.tolist(), "fpr_orth": orth.tolist(), "c": proj.c.tolist()}
    write_json_atomic(out / "bench_offline_stats.json", report)
    print(f"written: {out}/bench_offline_stats.json and figures")


if __name__ == "__main__":
    main()
