"""Discovery reach: the injected S/B (in the signal region) needed for a median 3 sigma and 5 sigma result.

For each method and each injected S/B of a small grid, `n_toys` pseudo-data sets are generated (toy
background + Poisson-fluctuated signal) and the method's significance Z is computed; the median Z versus S/B is
interpolated (linearly in log S/B) to Z = 3 and Z = 5 (CMS-PAS-EXO-22-026 asks the same question: "what
cross section do I need for 3/5 sigma?"). All Z are *local* at the signal window (the window is known when
the reach is quoted); the look-elsewhere effect is reported separately by the scans.

Methods (same window, same m_JJ binning, same dijet-fit background estimate for the three bump-based ones):

============  =====================================================================================
bumphunt      the plain m_JJ spectrum: profile-likelihood bump statistic in the window, alpha from a
              dijet fit with the window blinded (`offline.cwola_hunting.window_test`, `offline.bumphunt`)
cwola_hunt    CWoLa hunting at the signal window: classifier window vs sidebands, keep the top
              `efficiency` of events, the same bump test on the selected spectrum
cathode       CATHODE classifier (SR data vs flow samples); scores for events outside the SR come from one
              fold model each; keep the top `efficiency`, the same bump test
nplm          NPLM on the SR features against a background reference sample (NPLM is a goodness-of-fit
              test and needs one: here the ideal reference, as the integrator's zero-bias reference);
              Z from the chi2 fitted to null toys computed once
============  =====================================================================================
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from l1ad.offline import lhco_toy, nplm
from l1ad.offline.nplm import NPLMConfig
from l1ad.offline.cathode import CathodeConfig, run_cathode
from l1ad.offline.classify import ClassifierConfig
from l1ad.offline.cwola_hunting import HuntConfig, hunt_window, score_all, selected_window_test, window_index, window_test
from l1ad.offline.dijet import DijetSample

ALL_METHODS = ("bumphunt", "cwola_hunt", "cathode", "nplm")


class ReachConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    methods: tuple[str, ...] = ALL_METHODS
    n_bkg: int = Field(300_000, ge=1000)
    s_over_b: tuple[float, ...] = (0.002, 0.005, 0.01, 0.02, 0.04)
    n_toys: int = Field(5, ge=1, description="pseudo-experiments per S/B point and method")
    window_lo: float = Field(3300.0, description="low edge of the tested window (GeV); the SR of CATHODE/NPLM")
    hunt: HuntConfig = HuntConfig()
    cathode: CathodeConfig = CathodeConfig()
    nplm: NPLMConfig = NPLMConfig()
    nplm_reference_factor: float = Field(5.0, gt=1, description="reference size / expected SR data size")
    nplm_null_toys: int = Field(100, ge=5)
    scheduler: str | None = Field(None, description="Dask scheduler for the NPLM null toys (None: local cluster, 'sync')")
    toy: lhco_toy.ToyConfig = lhco_toy.ToyConfig()
    seed: int = 0



def small_config(**over) -> ReachConfig:
    """CI-sized: 60k background, two S/B points, one toy, tiny classifiers and flow."""
    from l1ad.offline.flows import FlowConfig

    clf = ClassifierConfig(n_folds=3, n_ensemble=1, max_iter=50)
    base = dict(
        n_bkg=60_000, s_over_b=(0.01, 0.05), n_toys=1, hunt=HuntConfig(classifier=clf, efficiency=0.2),
        cathode=CathodeConfig(classifier=clf, oversampling=2.0, flow=FlowConfig(transforms=3, hidden=(32, 32), epochs=5,
                                                                                  batch_size=1024, keep_best=2)),
        nplm=NPLMConfig(max_centers=100), nplm_null_toys=20, scheduler="sync",
    )
    base.update(over)
    return ReachConfig(**base)


def _nplm_inputs(s: DijetSample) -> np.ndarray:
    """NPLM inputs: log jet masses and tau21 (logs make the heavy mass tails kernel-friendly)."""
    X = s.features
    return np.column_stack([np.log(X[:, 0] + 1e-3), np.log(X[:, 1] + 1e-3), X[:, 2], X[:, 3]])


class _NPLMState:
    def __init__(self, cfg: ReachConfig, n_sr_expected: float):
        rng = np.random.default_rng(cfg.seed + 4242)
        sr = (cfg.window_lo, cfg.window_lo + (cfg.hunt.edges[1] - cfg.hunt.edges[0]) * cfg.hunt.window_bins)
        n_ref = int(cfg.nplm_reference_factor * n_sr_expected)
        self.sr = sr
        self.X_ref = _nplm_inputs(lhco_toy.sample_background(n_ref, rng, cfg.toy, sr))
        self.n_expected = n_sr_expected
        self.t_null = nplm.null_toys(self.X_ref, cfg.nplm, n_expected=n_sr_expected, n_toys=cfg.nplm_null_toys,
                                     scheduler=cfg.scheduler)
        self.chi2 = nplm.fit_chi2(self.t_null)


def method_z(method: str, data: DijetSample, cfg: ReachConfig, state: dict) -> float:
    """Local significance of one method on one pseudo-data set."""
    hc = cfg.hunt
    k = window_index(hc, cfg.window_lo)
    e = np.asarray(hc.edges)
    if method == "bumphunt":
        counts, _ = np.histogram(data.mjj, bins=e, weights=data.weight)
        return window_test(counts, k, hc).z
    if method == "cwola_hunt":
        return hunt_window(data, k, hc)[0].z
    if method == "cathode":
        lo, hi = e[k], e[k + hc.window_bins]
        cc = cfg.cathode.model_copy(update={"signal_region": (float(lo), float(hi))})
        res = run_cathode(data, cc)
        X = data.features
        sr = np.zeros(len(data), bool)
        sr[res.sr_index] = True
        in_range = (data.mjj >= e[0]) & (data.mjj < e[-1])

        class _KF:  # SR data are label 1 of CATHODE's k-fold; nothing else of the data was trained on
            score1, score0, folds = res.kfold.score1, np.empty(0), res.kfold.folds

        score = score_all(_KF, X, sr, np.zeros(len(data), bool), in_range, cfg.seed + 3)
        return selected_window_test(data.mjj, data.weight, score, k, hc)[0].z
    if method == "nplm":
        st: _NPLMState = state["nplm"]
        sr = data.in_window(*st.sr)
        f = nplm.fit(st.X_ref, _nplm_inputs(data.select(sr)), cfg.nplm, n_expected=st.n_expected)
        p = st.chi2.sf(f.t)
        return float(nplm.z_from_p(max(p, 1e-300)))
    raise ValueError(f"unknown method {method!r}; known: {ALL_METHODS}")


def crossing(s_over_b: np.ndarray, z: np.ndarray, level: float) -> float | None:
    """S/B where the median Z first reaches `level`, linear in log S/B between grid points.

    None if the grid never reaches it; the smallest grid point if already the first one does (then the
    value is an upper bound: extend the grid downwards)."""
    x = np.log(np.asarray(s_over_b, dtype=float))
    z = np.asarray(z, dtype=float)
    for i in range(len(x)):
        if z[i] >= level:
            if i == 0:
                return float(np.exp(x[0]))
            f = (level - z[i - 1]) / (z[i] - z[i - 1])
            return float(np.exp(x[i - 1] + f * (x[i] - x[i - 1])))
    return None


def run_reach(cfg: ReachConfig = ReachConfig(), out_dir: str | Path | None = None, log: Callable[[str], None] = lambda s: None) -> dict:
    unknown = set(cfg.methods) - set(ALL_METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; known: {ALL_METHODS}")
    toy = cfg.toy
    width = (cfg.hunt.edges[1] - cfg.hunt.edges[0]) * cfg.hunt.window_bins
    n_sr = cfg.n_bkg * lhco_toy.background_mjj_fraction(cfg.window_lo, cfg.window_lo + width, toy)
    state: dict = {}
    if "nplm" in cfg.methods:
        t0 = time.perf_counter()
        state["nplm"] = _NPLMState(cfg, n_sr)
        log(f"NPLM null: {cfg.nplm_null_toys} toys, chi2 dof {state['nplm'].chi2.dof:.1f}, KS p {state['nplm'].chi2.ks_p:.2f} "
            f"({time.perf_counter() - t0:.0f} s)")
    z = {m: np.zeros((len(cfg.s_over_b), cfg.n_toys)) for m in cfg.methods}
    secs = {m: 0.0 for m in cfg.methods}
    for i, sb in enumerate(cfg.s_over_b):
        for j in range(cfg.n_toys):
            rng = np.random.default_rng([cfg.seed, i, j])
            n_sig = int(rng.poisson(lhco_toy.n_signal_for(sb, cfg.n_bkg, toy)))
            data = lhco_toy.make_dataset(cfg.n_bkg, seed=int(rng.integers(2**31)), cfg=toy, n_signal=n_sig)
            for m in cfg.methods:
                t0 = time.perf_counter()
                z[m][i, j] = method_z(m, data, cfg, state)
                secs[m] += time.perf_counter() - t0
            log(f"S/B={sb:.4f} toy {j}: " + "  ".join(f"{m}={z[m][i, j]:.2f}" for m in cfg.methods))
    sbs = np.asarray(cfg.s_over_b)
    rows = []
    for m in cfg.methods:
        med = np.median(z[m], axis=1)
        rows.append({"method": m, "median_z": med.tolist(), "s_over_b_3sigma": crossing(sbs, med, 3.0),
                     "s_over_b_5sigma": crossing(sbs, med, 5.0), "seconds": secs[m]})
    result = {"s_over_b": sbs.tolist(), "rows": rows, "z": {m: v.tolist() for m, v in z.items()},
              "n_bkg": cfg.n_bkg, "n_bkg_window": n_sr, "table": format_reach(rows)}
    if "nplm" in state:
        result["nplm_null"] = {"dof": state["nplm"].chi2.dof, "ks_p": state["nplm"].chi2.ks_p,
                               "t": state["nplm"].t_null.tolist()}
    if out_dir is not None:
        from l1ad.trigger.atomic import write_json_atomic, write_text_atomic

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "reach.json", {**result, "config": json.loads(cfg.model_dump_json())})
        write_text_atomic(out / "reach.md", result["table"] + "\n")
        plot_reach(result, out / "reach.png")
        result["files"] = [str(out / "reach.json"), str(out / "reach.md"), str(out / "reach.png")]
    return result


def format_reach(rows: list[dict]) -> str:
    def f(x):
        return "not reached" if x is None else f"{100 * x:.2f}%"

    lines = ["| method | S/B for 3 sigma | S/B for 5 sigma |", "|---|---|---|"]
    lines += [f"| {r['method']} | {f(r['s_over_b_3sigma'])} | {f(r['s_over_b_5sigma'])} |" for r in rows]
    return "\n".join(lines)


def plot_reach(result: dict, path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sbs = np.asarray(result["s_over_b"])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in result["rows"]:
        ax.plot(100 * sbs, r["median_z"], "o-", label=r["method"])
    for lvl in (3, 5):
        ax.axhline(lvl, color="grey", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("injected S/B in the signal region [%]")
    ax.set_ylabel("median local Z")
    ax.set_title(f"discovery reach ({result['n_bkg']:,} background events)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    from l1ad.trigger.atomic import save_figure

    return save_figure(fig, path)
