"""The offline end of the pipeline: what each trigger threshold keeps, and what can be discovered with it.

For every target rate the triggered samples are the events whose bit-exact emulator trigger bit fires. On the
triggered zero-bias stream the pipeline runs (a) the sliding-window bump hunt of m_jj with look-elsewhere
correction, on pseudo-data drawn from the weighted stream for the configured luminosity, and (b) an NPLM
data-quality test of one half of the triggered stream against the other (a null test: it should not fire).
The discovery reach per rate and signal is the cross-section that gives a median 3 or 5 sigma excess (Asimov)
over the triggered background for the configured luminosity: inclusively for the ADC2021-style signals,
and in the m_JJ window around the resonance for the LHCO-style dijet signal.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import optimize

from l1ad.offline.bumphunt import BumpHuntConfig
from l1ad.offline.nplm import NPLMConfig


class OfflineStageConfig(BaseModel):
    """Offline analyses of the triggered samples and the discovery-reach settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trigger: Literal["axol1tl", "cicada", "or"] = Field(
        "axol1tl", description="which deployed trigger's bits select the offline samples: the AXOL1TL-style one, the "
        "CICADA-style one, or their OR (each at its own threshold for the target rate; the OR keeps more)")
    luminosity_fb: float = Field(10.0, gt=0, description="integrated luminosity of the pseudo-data [fb^-1]")
    inst_luminosity: float = Field(2.0e34, gt=0, description="instantaneous luminosity [cm^-2 s^-1] (time = L / L_inst)")
    mjj_edges_gev: tuple[float, float, int] = Field((200.0, 4000.0, 38), description="m_jj histogram: lo, hi, bins")
    bumphunt: BumpHuntConfig = BumpHuntConfig(n_toys=200, n_lee_toys=100, widths=(3, 5, 7), sqrt_s=13600.0)
    nplm: NPLMConfig = NPLMConfig(n_toys=20, max_centers=200)
    nplm_max_events: int = Field(3000, ge=50, description="events per side of the NPLM data-quality test")
    resonance_window_gev: tuple[float, float] = (3000.0, 4000.0)
    mjj_dijet_edges_gev: tuple[float, float, int] = Field((2800.0, 6000.0, 20), description="m_JJ histogram of the dijet stream, starting above the pT_J1 > 1.2 TeV turn-on")
    inject_s_over_b: float = Field(0.05, ge=0, description="injected resonance events / background events in the window")
    z_levels: tuple[float, ...] = (3.0, 5.0)
    seed: int = 0


def seconds_of_running(cfg: OfflineStageConfig) -> float:
    """Live time that collects `luminosity_fb` at `inst_luminosity`."""
    return cfg.luminosity_fb * 1e39 / cfg.inst_luminosity


def asimov_z(s: float, b: float) -> float:
    """Median discovery significance of s signal over b background events (Cowan et al., Asimov)."""
    if s <= 0:
        return 0.0
    if b <= 0:
        return math.inf
    return math.sqrt(2.0 * ((s + b) * math.log1p(s / b) - s))


def signal_for_z(z: float, b: float) -> float:
    """Signal events for a median significance z over b background events (inverse of asimov_z)."""
    if b <= 0:
        return 0.0
    hi = max(10.0, 2 * z * math.sqrt(b) + z * z)
    while asimov_z(hi, b) < z:
        hi *= 2
    return float(optimize.brentq(lambda s: asimov_z(s, b) - z, 0.0, hi, xtol=1e-9 * hi))


def reach_table(rates: list[dict], signals: dict[str, dict], cfg: OfflineStageConfig) -> list[dict]:
    """Cross-section [pb] for each z level, per target rate and signal.

    rates: [{"target_hz", "kept_hz", "window_hz"}]; signals: {name: {"eff": [per rate], "window_eff": [...] or None}}.
    b = kept rate x live time (inclusive), or the rate inside the resonance window for windowed signals;
    s = sigma x L x efficiency.
    """
    live = seconds_of_running(cfg)
    lumi_pb = cfg.luminosity_fb * 1e3
    rows = []
    for i, r in enumerate(rates):
        for name, sig in signals.items():
            windowed = sig.get("window_eff") is not None
            eff = sig["window_eff"][i] if windowed else sig["eff"][i]
            b = (r["window_hz"] if windowed else r["kept_hz"]) * live
            row = {"target_hz": r["target_hz"], "signal": name, "search": "m_JJ window" if windowed else "inclusive",
                   "efficiency": eff, "background_events": b}
            for z in cfg.z_levels:
                s = signal_for_z(z, b)
                row[f"xsec_pb_{z:g}sigma"] = s / (lumi_pb * eff) if eff > 0 and b > 0 else None
            if b <= 0:
                row["note"] = "no simulated background passes: the reach is not determined by this sample"
            rows.append(row)
    return rows


def triggered_bumphunt(m: np.ndarray, w: np.ndarray, kept_hz: float, cfg: OfflineStageConfig, out_png: Path) -> dict:
    """Bump hunt of the triggered m_jj on pseudo-data.

    The luminosity predicts kept_hz x live time events, but the simulated stream supports only its effective
    count n_eff = (sum w)^2 / sum w^2: more pseudo-events than that would turn the simulation's own fluctuations
    into bumps. So the pseudo-data are Poisson(min(expected, n_eff)) events drawn from the triggered m_jj with
    probability proportional to the weights, and the summary says which limit applied.
    """
    from l1ad.offline.bumphunt import scan
    from l1ad.offline.plots_stats import plot_bumphunt_scan

    lo, hi, nb = cfg.mjj_edges_gev
    edges = np.geomspace(lo, hi, int(nb) + 1)
    keep = (m >= lo) & (m < hi) & (w > 0)
    if keep.sum() < 2:
        return {"skipped": f"fewer than two triggered events with m_jj in [{lo:g}, {hi:g}] GeV"}
    mk, wk = m[keep], w[keep]
    frac_in = float(wk.sum() / w.sum())
    expected = kept_hz * frac_in * seconds_of_running(cfg)
    n_eff = float(wk.sum() ** 2 / (wk ** 2).sum())
    n_mean = min(expected, n_eff)
    if n_mean < 200:
        return {"skipped": f"the simulated triggered stream supports only {n_eff:.0f} effective events in "
                           f"[{lo:g}, {hi:g}] GeV (200 needed for a bump hunt)", "expected_events": expected, "n_eff": n_eff}
    rng = np.random.default_rng(cfg.seed)
    n = rng.poisson(n_mean)
    pseudo = rng.choice(mk, size=n, replace=True, p=wk / wk.sum())
    observed, _ = np.histogram(pseudo, bins=edges)
    res = scan(observed.astype(float), edges, config=cfg.bumphunt)
    plot_bumphunt_scan(res, out_png)
    return {"expected_events": expected, "n_eff": n_eff, "pseudo_events": int(n),
            "limited_by": "simulation statistics" if n_eff < expected else "luminosity",
            "t_max": float(res.t_max), "best_window_gev": [res.best["m_lo"], res.best["m_hi"]],
            "local_z": float(math.sqrt(max(res.t_max, 0.0))), "global_p_toys": res.global_p_toys,
            "global_p_asymptotic": res.global_p_asymptotic, "plot": out_png.name}


def dijet_bumphunt(bkg_m: np.ndarray, bkg_w: np.ndarray, sig_m: np.ndarray, sig_w: np.ndarray,
                   cfg: OfflineStageConfig, out_png: Path) -> dict:
    """Bump hunt of the triggered dijet stream (QCD dijet background, LHCO-style resonance injected at
    `inject_s_over_b` in the resonance window): background-only and with-signal pseudo-data of the size the
    simulation supports (its effective count), drawn by weighted resampling."""
    from l1ad.offline.bumphunt import scan
    from l1ad.offline.plots_stats import plot_bumphunt_scan

    lo, hi, nb = cfg.mjj_dijet_edges_gev
    edges = np.geomspace(lo, hi, int(nb) + 1)
    keep = (bkg_m >= lo) & (bkg_m < hi) & (bkg_w > 0)
    if keep.sum() < 2:
        return {"skipped": "no triggered QCD dijet events in the m_JJ range"}
    m, w = bkg_m[keep], bkg_w[keep]
    n_eff = float(w.sum() ** 2 / (w ** 2).sum())
    if n_eff < 200:
        return {"skipped": f"the triggered QCD dijet sample supports only {n_eff:.0f} effective events (200 needed)"}
    rng = np.random.default_rng(cfg.seed + 2)
    n_b = rng.poisson(n_eff)
    bkg = rng.choice(m, size=n_b, replace=True, p=w / w.sum())
    wlo, whi = cfg.resonance_window_gev
    b_window = float(((bkg >= wlo) & (bkg < whi)).sum())
    out = {"n_eff": n_eff, "background_events": int(n_b), "background_in_window": b_window}
    res0 = scan(np.histogram(bkg, bins=edges)[0].astype(float), edges, config=cfg.bumphunt)
    out["background_only"] = {"local_z": float(math.sqrt(max(res0.t_max, 0.0))), "global_p_toys": res0.global_p_toys,
                              "best_window_gev": [res0.best["m_lo"], res0.best["m_hi"]]}
    sk = (sig_m >= lo) & (sig_m < hi) & (sig_w > 0)
    if sk.sum() >= 1 and cfg.inject_s_over_b > 0:
        n_s = rng.poisson(cfg.inject_s_over_b * b_window)
        sig = rng.choice(sig_m[sk], size=n_s, replace=True, p=sig_w[sk] / sig_w[sk].sum())
        res1 = scan(np.histogram(np.concatenate([bkg, sig]), bins=edges)[0].astype(float), edges, config=cfg.bumphunt)
        plot_bumphunt_scan(res1, out_png)
        out["with_signal"] = {"injected": int(n_s), "local_z": float(math.sqrt(max(res1.t_max, 0.0))),
                              "global_p_toys": res1.global_p_toys, "global_p_asymptotic": res1.global_p_asymptotic,
                              "best_window_gev": [res1.best["m_lo"], res1.best["m_hi"]], "plot": out_png.name}
    return out


def _halves(x: np.ndarray, w: np.ndarray, seed: int, max_events: int) -> tuple:
    """One random split into (reference, data) halves of at most max_events each, each half's weights normalised
    to the data size: (x_ref, x_data, w_ref, w_data)."""
    idx = np.random.default_rng(seed).permutation(len(x))
    ref, dat = idx[::2][:max_events], idx[1::2][:max_events]
    return x[ref], x[dat], w[ref] / w[ref].sum() * len(dat), w[dat] / w[dat].sum() * len(dat)


def half_split_t(seed: int, x: np.ndarray, w: np.ndarray, cfg_json: str, max_events: int) -> float:
    """NPLM t of one random half-vs-half split (`_halves`) of a weighted sample: a permutation null toy
    (module level, so Dask can ship it to the workers)."""
    from l1ad.offline.nplm import NPLMConfig, fit

    xr, xd, wr, wd = _halves(x, w, seed, max_events)
    return float(fit(xr, xd, NPLMConfig.model_validate_json(cfg_json), w_ref=wr, w_data=wd,
                     n_expected=float(len(xd)), seed=seed).t)


def nplm_quality(x: np.ndarray, w: np.ndarray, cfg: OfflineStageConfig, scheduler: str | None, out_png: Path) -> dict:
    """NPLM of one half of the triggered stream (data) against the other (reference): a null test.

    The null distribution comes from re-splitting the same events at random (a permutation test): the triggered
    stream is a weighted, stitched sample, and toys drawn as unweighted events from a weighted reference would
    not be distributed like the observed weighted split (their t sat an order of magnitude above it)."""
    from l1ad.offline.nplm import nplm_test
    from l1ad.offline.plots_stats import plot_nplm_null
    from l1ad.offline.toys_dask import map_toys

    if min(len(x) // 2, cfg.nplm_max_events) < 50:
        return {"skipped": f"too few triggered events ({len(x)})"}
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    seeds = [cfg.seed + 1000 + i for i in range(cfg.nplm.n_toys)]
    t_toys = np.array(map_toys(half_split_t, seeds, shared={"x": x, "w": w}, scheduler=scheduler,
                               cfg_json=cfg.nplm.model_dump_json(), max_events=cfg.nplm_max_events))
    xr, xd, wr, wd = _halves(x, w, cfg.seed + 1, cfg.nplm_max_events)
    res = nplm_test(xr, xd, cfg.nplm, w_ref=wr, w_data=wd, n_expected=float(len(xd)), t_toys=t_toys)
    plot_nplm_null(res, out_png, title="triggered stream: half vs half (permutation null)")
    return {**{k: v for k, v in res.summary().items() if isinstance(v, (int, float, str))}, "plot": out_png.name,
            "null": "permutation"}


def event_features(batch) -> np.ndarray:
    """Per-event L1 features for the data-quality test: log leading-jet pT, log HT, log MET, object counts."""
    from l1ad.trigger.events import slot_rows

    jets = batch.objects[:, slot_rows("Jet"), 0]
    ht = jets.sum(axis=1)
    return np.column_stack([np.log1p(jets[:, 0]), np.log1p(ht), np.log1p(batch.objects[:, 0, 0]),
                            batch.multiplicity("Jet"), batch.multiplicity("EGamma") + batch.multiplicity("Muon")])


def as_dict(obj: Any) -> Any:
    """JSON-safe copy (NaN / inf become None)."""
    if isinstance(obj, dict):
        return {k: as_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [as_dict(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
