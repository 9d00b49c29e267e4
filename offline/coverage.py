"""Coverage of global p-values on background-only pseudo-experiments: P(p <= level) with binomial errors.

A p-value covers when P(p <= a) <= a under H0 (= a: nominal; < a: conservative). For each level the table
gives the fraction, its binomial error sqrt(f (1 - f) / n) and the 95 % Clopper-Pearson interval; the verdict
is "anti-conservative" when the interval lies above the level, "conservative" when below, else "nominal".

Campaigns (each returns rows for `format_table`; the >= 200-toy runs are `bench/coverage_offline.py`):

* `bumphunt_campaign`: Poisson spectra of a known dijet function; the scan's global p from its own toys
  (Poisson fluctuations of the *fitted* background, so not exact by construction) and the Euler-characteristic
  estimate, with and without the fit uncertainty in t;
* `nplm_campaign`: kernel NPLM, data drawn from the background generator against one fixed reference; p from
  the null toys (empirical) and from the chi2 fitted to them;
* `nplm_nn_campaign`: the NPLM NN on the 1-D benchmark: weight clip tuned on null toys, then fresh null toys:
  fitted dof vs the parameter count, KS p against chi2(dof = parameters) and that chi2 p's coverage;
* `nplm_syst_campaign`: the NN with a normalisation and a scale nuisance, toys at nominal and shifted nuisances;
* `cwola_campaign` / `cathode_campaign`: whole retrained CWoLa hunts (`offline.hunt_toys`) / CATHODE scans
  (`offline.cathode_scan`) at several efficiency cuts (`scan_summary`): the Sidak quick estimates, the local p
  of every window, and the toy global p of the largest t over windows and cuts, each toy against the others
  (leave-one-out). That row is exchangeable, so nominal by construction as long as the toys are the same
  procedure on the same background model; it shows the procedure is complete (every window, cut and
  classifier retrained), not that the background model is right.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["LEVELS", "bumphunt_campaign", "coverage_row", "cwola_campaign", "format_table", "leave_one_out_p",
           "nplm_campaign", "nplm_nn_campaign", "nplm_syst_campaign", "cathode_campaign", "scan_summary"]

LEVELS = (0.05, 0.1, 0.2)


def coverage_row(name: str, pvalues, levels=LEVELS) -> dict:
    """Coverage of one set of background-only p-values at each level."""
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1 or p.size == 0 or np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"{name}: p-values must be a non-empty 1-D array in [0, 1]")
    n = p.size
    cells = []
    for a in levels:
        k = int(np.sum(p <= a))
        f = k / n
        lo = stats.beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
        hi = stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
        verdict = "anti-conservative" if lo > a else ("conservative" if hi < a else "nominal")
        cells.append({"level": a, "fraction": f, "error": float(np.sqrt(f * (1 - f) / n)), "cp95": [float(lo), float(hi)],
                      "verdict": verdict})
    return {"name": name, "n": n, "cells": cells}


def format_table(rows: list[dict]) -> str:
    """Markdown table: one row per p-value, P(p <= level) +- binomial error per level."""
    levels = [c["level"] for c in rows[0]["cells"]]
    head = "| p-value | n | " + " | ".join(f"P(p <= {a:g})" for a in levels) + " |"
    lines = [head, "|---|---|" + "---|" * len(levels)]
    for r in rows:
        cells = " | ".join(f"{c['fraction']:.3f} +- {c['error']:.3f}" + ("" if c["verdict"] == "nominal" else f" ({c['verdict']})")
                           for c in r["cells"])
        lines.append(f"| {r['name']} | {r['n']} | {cells} |")
    return "\n".join(lines)


def leave_one_out_p(t: np.ndarray) -> np.ndarray:
    """Toy p of each toy against the others: (1 + #{j != i: t_j >= t_i}) / n."""
    t = np.asarray(t, dtype=float)
    ge = (t[None, :] >= t[:, None]).sum(axis=1) - 1
    return (1 + ge) / t.size


# ---------------------------------------------------------------------------------------------- bump hunt
def bumphunt_task(seed: int, edges: np.ndarray, mu: np.ndarray, inner_toys: int, widths: tuple[int, ...]) -> dict:
    """One background-only spectrum scanned with and without the fit uncertainty (module level for Dask)."""
    from l1ad.offline.bumphunt import scan

    n = np.random.default_rng(seed).poisson(mu).astype(float)
    out = {"seed": seed}
    for tag, fu in (("plain", False), ("fit_unc", True)):
        r = scan(n, edges, n_toys=inner_toys, widths=widths, fit_uncertainty=fu, seed=seed + 1, n_lee_toys=min(inner_toys, 300))
        out[tag] = {"toys": r.global_p_toys, "ec": r.global_p_ec, "t_max": r.t_max}
    return out


def bumphunt_campaign(n_toys: int, *, n_events: float = 1e5, edges=None, inner_toys: int = 300,
                      widths: tuple[int, ...] = (3, 5, 7), seed: int = 0, scheduler: str | None = "sync") -> dict:
    from l1ad.offline.bumphunt import falling_spectrum
    from l1ad.offline.toys_dask import map_toys

    e = np.arange(1500.0, 6001.0, 100.0) if edges is None else np.asarray(edges, dtype=float)
    mu = falling_spectrum(e, n_events)
    res = map_toys(bumphunt_task, [seed + 7919 * i for i in range(n_toys)], shared={"edges": e, "mu": mu},
                   scheduler=scheduler, inner_toys=inner_toys, widths=tuple(widths))
    rows = []
    for tag, label in (("plain", "t"), ("fit_unc", "t with fit uncertainty")):
        rows.append(coverage_row(f"dijet bump hunt, {label}: toys ({inner_toys})", [r[tag]["toys"] for r in res]))
        rows.append(coverage_row(f"dijet bump hunt, {label}: Euler characteristic",
                                 np.clip([r[tag]["ec"] for r in res], 0, 1)))
    return {"rows": rows, "raw": res, "setup": {"n_events": n_events, "edges": [float(e[0]), float(e[-1]), len(e) - 1],
                                                "inner_toys": inner_toys, "widths": list(widths)}}


# ---------------------------------------------------------------------------------------------- NPLM kernel
def nplm_data_task(seed: int, X_ref: np.ndarray, n_expected: float, cfg_json: str, shape: bool = False) -> dict:
    """t of one background-only data set drawn from the generator against the fixed reference (extended:
    N(SM) = n_expected; shape: N(SM) = the data set's own count)."""
    from l1ad.offline import lhco_toy, nplm
    from l1ad.offline.reach import _nplm_inputs

    rng = np.random.default_rng(seed)
    cfg = nplm.NPLMConfig.model_validate_json(cfg_json)
    n = int(rng.poisson(n_expected))
    X = _nplm_inputs(lhco_toy.sample_background(n, rng, lhco_toy.ToyConfig(), (3300.0, 3700.0)))
    return {"seed": seed, "t": nplm.fit(X_ref, X, cfg, n_expected=None if shape else n_expected, seed=seed).t}


def nplm_campaign(n_toys: int, *, n_null: int = 300, n_expected: float = 2000.0, ref_factor: float = 5.0,
                  seed: int = 0, scheduler: str | None = None, n_workers: int | None = None,
                  modes: tuple[str, ...] = ("extended",)) -> dict:
    """Kernel NPLM on the LHCO-like SR features. `modes`: "extended" (N(SM) = n_expected, Poisson toys) and/or
    "shape" (N(SM) = N_D of each data set, toys with exactly n_expected events)."""
    from l1ad.offline import lhco_toy, nplm
    from l1ad.offline.reach import _nplm_inputs
    from l1ad.offline.toys_dask import dask_client, map_toys

    cfg = nplm.NPLMConfig()
    rng = np.random.default_rng(seed)
    X_ref = _nplm_inputs(lhco_toy.sample_background(int(ref_factor * n_expected), rng, lhco_toy.ToyConfig(), (3300.0, 3700.0)))
    rows, out = [], {}
    with dask_client(None if scheduler == "sync" else scheduler, n_workers=n_workers) as client:
        kw = {"client": client} if scheduler != "sync" else {"scheduler": "sync"}
        for mode in modes:
            shape = mode == "shape"
            t_null = nplm.null_toys(X_ref, cfg, n_expected=n_expected, n_toys=n_null, seed=seed + 1_000_000, extended=not shape, **kw)
            data = map_toys(nplm_data_task, [seed + 2_000_000 + i for i in range(n_toys)], shared={"X_ref": X_ref},
                            n_expected=n_expected, cfg_json=cfg.model_dump_json(), shape=shape, **kw)
            t = np.array([d["t"] for d in data])
            c2 = nplm.fit_chi2(t_null)
            p_emp = np.array([nplm.empirical_p(x, t_null) for x in t])
            p_c2 = np.array([c2.sf(x) for x in t])
            p_q = np.array([nplm.quoted_p(x, t_null, c2)[0] for x in t])
            label = "extended" if not shape else "shape only"
            rows += [coverage_row(f"NPLM kernel, {label}: empirical p ({n_null} null toys)", p_emp),
                     coverage_row(f"NPLM kernel, {label}: quoted p (toys; chi2 only beyond them)", p_q),
                     coverage_row(f"NPLM kernel, {label}: chi2 fit (dof {c2.dof:.1f}, KS p {c2.ks_p:.2g})", p_c2)]
            out[mode] = {"t_null": t_null.tolist(), "t_data": t.tolist(), "chi2_dof": c2.dof, "chi2_ks_p": c2.ks_p}
    first = out[modes[0]]
    return {"rows": rows, **first, "modes": out,
            "setup": {"n_expected": n_expected, "n_reference": len(X_ref), "n_null": n_null, "modes": list(modes)}}


# ---------------------------------------------------------------------------------------------- NPLM NN
def nplm_nn_campaign(n_toys: int, *, n_ref: int = 10_000, n_expected: float = 1000.0, hidden: tuple[int, ...] = (4,),
                     clips: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0), n_tune: int = 40, clip: float | None = None,
                     seed: int = 0, scheduler: str | None = None, n_workers: int | None = None, tuned: dict | None = None) -> dict:
    """The NPLM NN on the papers' 1-D benchmark (reference ~ Exp(1), N_R events, N(SM) = n_expected, extended):
    weight clip tuned on `n_tune` null toys per scanned clip (`nplm.tune_weight_clip`, skipped when `clip` is
    given), then `n_toys` fresh null toys at the chosen clip: fitted dof vs the parameter count, KS p against
    chi2(dof = parameters), and the coverage of that chi2 p and of the toy p (leave-one-out)."""
    from l1ad.offline import nplm
    from l1ad.offline.toys_dask import dask_client

    cfg = nplm.NPLMConfig(model="nn", hidden=tuple(hidden))
    X_ref = np.random.default_rng(seed).exponential(size=(n_ref, 1))
    sync = scheduler == "sync"
    with dask_client(None if sync else scheduler, n_workers=n_workers) as client:
        kw = {"scheduler": "sync"} if sync else {"client": client}
        if clip is None:
            tuned = nplm.tune_weight_clip(X_ref, cfg, n_expected=n_expected, clips=clips, n_toys=n_tune,
                                          seed=seed + 50_000, **kw)
            clip = tuned["clip"]
        cfg = cfg.model_copy(update={"weight_clip": float(clip)})
        toys = nplm.null_toys(X_ref, cfg, n_expected=n_expected, n_toys=n_toys, seed=seed + 3_000_000, details=True, **kw)
    t = np.array([d["t"] for d in toys])
    n_par = nplm.NumpyNet([1, *hidden, 1]).n_params
    chk = nplm.chi2_check(t, n_par)
    rows = [coverage_row(f"NPLM NN (1,{','.join(map(str, hidden))},1), clip {clip:.2f}: chi2(dof = {n_par} parameters) p",
                         stats.chi2.sf(t, n_par)),
            coverage_row(f"NPLM NN: chi2 p with the fitted dof {chk['dof_fitted']:.1f}", stats.chi2.sf(t, chk["dof_fitted"])),
            coverage_row(f"NPLM NN: toy p, leave-one-out ({t.size} toys; nominal by construction)", leave_one_out_p(t))]
    return {"rows": rows, "null": chk, "clip": float(clip), "tuning": tuned, "t_null": t.tolist(),
            "iterations": [d.get("iterations") for d in toys], "converged": float(np.mean([d.get("converged", True) for d in toys])),
            "seconds_per_toy": float(np.mean([d["seconds"] for d in toys])),
            "setup": {"n_reference": n_ref, "n_expected": n_expected, "extended": True, "hidden": list(hidden),
                      "optimizer": "L-BFGS-B to convergence, weights bounded by the clip", "n_params": n_par}}


def nplm_syst_campaign(n_toys: int, *, clip: float, n_ref: int = 10_000, n_expected: float = 1000.0,
                       sigmas: tuple[float, float] = (0.05, 0.05), nu_true: tuple[float, float] = (1.5, 1.5),
                       seed: int = 0, scheduler: str | None = None, n_workers: int | None = None) -> dict:
    """NPLM NN with a normalisation and a scale nuisance (`offline.nplm_syst`) on the 1-D benchmark: toys at
    the nominal nuisances and at `nu_true` (in sigmas; data reweighted, aux A ~ N(nu_true, 1)); for each, the
    chi2(dof = parameters) p of t = tau - Delta and of the plain extended NPLM t on the same data."""
    from l1ad.offline import nplm, nplm_syst
    from l1ad.offline.toys_dask import dask_client

    cfg = nplm.NPLMConfig(model="nn", weight_clip=float(clip))
    X_ref = np.random.default_rng(seed).exponential(size=(n_ref, 1))
    nus = [nplm_syst.normalization(sigmas[0]), nplm_syst.scale(sigmas[1], lambda X: -X[:, 0])]
    sync = scheduler == "sync"
    rows, raw = [], {}
    with dask_client(None if sync else scheduler, n_workers=n_workers) as client:
        kw = {"scheduler": "sync"} if sync else {"client": client}
        for tag, nu in (("nominal", (0.0, 0.0)), ("shifted", tuple(nu_true))):
            toys = nplm_syst.null_toys(X_ref, nus, cfg, n_expected=n_expected, n_toys=n_toys, nu_true=nu, plain=True,
                                       seed=seed + (4_000_000 if tag == "nominal" else 5_000_000), **kw)
            n_par = toys[0]["n_params"]
            t = np.array([d["t"] for d in toys])
            tp = np.array([d["t_plain"] for d in toys])
            where = f"nu = ({nu[0]:g}, {nu[1]:g}) sigma"
            rows += [coverage_row(f"NPLM NN + nuisances, data at {where}: chi2({n_par}) p of tau - Delta", stats.chi2.sf(t, n_par)),
                     coverage_row(f"NPLM NN without nuisances, data at {where}: chi2({n_par}) p", stats.chi2.sf(tp, n_par))]
            raw[tag] = {"t": t.tolist(), "t_plain": tp.tolist(), "nu_null": [d["nu_null"] for d in toys],
                        "null_check": nplm.chi2_check(t, n_par)}
    return {"rows": rows, "raw": raw, "setup": {"n_reference": n_ref, "n_expected": n_expected, "clip": clip,
                                                 "sigmas": {"normalization": sigmas[0], "scale": sigmas[1]},
                                                 "nu_true": list(nu_true)}}


# ---------------------------------------------------------------------------------------------- CWoLa hunting
def cwola_campaign(n_toys: int, *, n_bkg: int = 20_000, efficiencies: tuple[float, ...] = (0.2, 0.05), max_iter: int = 40,
                   seed: int = 100_000, scheduler: str | None = None, n_workers: int | None = None, batch: int = 10,
                   on_batch=None) -> dict:
    """Retrained background-only hunts in batches of `batch` on one Dask cluster; `on_batch(results so far)`
    after each batch (e.g. to save partial tables when the campaign may be cut by a time limit)."""
    from l1ad.offline import hunt_toys
    from l1ad.offline.cwola_hunting import small_config
    from l1ad.offline.toys_dask import dask_client

    cfg = small_config()
    cfg = cfg.model_copy(update={"classifier": cfg.classifier.model_copy(update={"max_iter": max_iter})})
    res: list[dict] = []
    sync = scheduler == "sync"
    with dask_client(None if sync else scheduler, n_workers=n_workers) as client:
        for lo in range(0, n_toys, batch):
            m = min(batch, n_toys - lo)
            res += hunt_toys.null_toys(cfg, m, efficiencies=efficiencies, n_bkg=n_bkg, seed=seed + lo,
                                       scheduler="sync" if sync else None, client=None if sync else client)
            if on_batch is not None:
                on_batch(_cwola_summary(res, efficiencies, n_bkg, max_iter, cfg))
    return _cwola_summary(res, efficiencies, n_bkg, max_iter, cfg)


def _cwola_summary(res: list[dict], efficiencies, n_bkg: int, max_iter: int, cfg) -> dict:
    return scan_summary(res, "CWoLa hunt", {"n_bkg": n_bkg, "efficiencies": list(efficiencies), "max_iter": max_iter,
                                            "config": cfg.model_dump(mode="json")})


# ---------------------------------------------------------------------------------------------- CATHODE scan
def cathode_campaign(n_toys: int, *, n_bkg: int = 20_000, seed: int = 300_000, scheduler: str | None = None,
                     n_workers: int | None = None, batch: int = 10, on_batch=None, cfg=None) -> dict:
    """Retrained background-only CATHODE scans (`offline.cathode_scan`, default `small_scan_config`) in
    batches of `batch` on one Dask cluster; `on_batch(summary so far)` after each batch."""
    from l1ad.offline import cathode_scan
    from l1ad.offline.toys_dask import dask_client

    cfg = cathode_scan.small_scan_config() if cfg is None else cfg
    res: list[dict] = []
    sync = scheduler == "sync"
    with dask_client(None if sync else scheduler, n_workers=n_workers) as client:
        for lo in range(0, n_toys, batch):
            m = min(batch, n_toys - lo)
            res += cathode_scan.null_toys(cfg, m, n_bkg=n_bkg, seed=seed + lo, scheduler="sync" if sync else None,
                                          client=None if sync else client)
            if on_batch is not None:
                on_batch(scan_summary(res, "CATHODE scan", {"n_bkg": n_bkg, "config": cfg.model_dump(mode="json")}))
    return scan_summary(res, "CATHODE scan", {"n_bkg": n_bkg, "config": cfg.model_dump(mode="json")})


def scan_summary(res: list[dict], label: str, setup: dict) -> dict:
    """Coverage rows of retrained background-only scans (CWoLa hunts or CATHODE scans, `toy_task` dicts):
    the toy global p of t_max over windows x cuts (leave-one-out), the Sidak quick estimates and the local p."""
    n_toys = len(res)
    t = np.array([r["t_max"] for r in res])
    effs = list(res[0]["per_efficiency"])
    rows = [coverage_row(f"{label}: toy global p over windows x cuts, leave-one-out ({n_toys} toys)", leave_one_out_p(t))]
    n_win = len(res[0]["per_efficiency"][effs[0]]["p_local"])
    for x in effs:
        per = [r["per_efficiency"][x] for r in res]
        pmin = [min(d["p_local"]) for d in per]
        rows.append(coverage_row(f"{label} eff {float(x):g}: Sidak over {n_win} windows (quick estimate)",
                                 [-np.expm1(n_win * np.log1p(-min(p, 1 - 1e-16))) for p in pmin]))
        rows.append(coverage_row(f"{label} eff {float(x):g}: local p, all windows", np.concatenate([d["p_local"] for d in per])))
    if len(effs) > 1:
        n_tests = n_win * len(effs)
        p_all = [min(min(r["per_efficiency"][x]["p_local"]) for x in effs) for r in res]
        rows.append(coverage_row(f"{label}, all cuts: Sidak over {n_tests} tests (quick estimate)",
                                 [-np.expm1(n_tests * np.log1p(-min(p, 1 - 1e-16))) for p in p_all]))
    return {"rows": rows, "raw": res, "seconds_per_toy": float(np.mean([r["seconds"] for r in res])), "setup": setup}
