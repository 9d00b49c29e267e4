"""Weights and stitching of the zero-bias-equivalent stream, and its closure check.

**Units.** In `zero_bias.h5` a weight is the fraction of bunch crossings the event stands for (they sum to
~1), so trigger.rates' rate = ZERO_BIAS_RATE_HZ x sum(w | pass) / sum(w) holds as it stands. In every other
sample (signals, dijet samples) a weight is the cross section per event in pb: sigma_gen / N_generated.

**Which pp interactions.** Minimum bias (SoftQCD:nonDiffractive, cross section sigma_ND) already contains
hard QCD scatters: the hardest of its multiparton interactions has a pT-hat spectrum that for pT-hat >> pT0
(~2.6 GeV) is the QCD 2 -> 2 spectrum. Interactions are therefore partitioned by that pT-hat x:
x < q0 (the first bin edge, 15 GeV) comes only from minimum bias, x >= q0 only from HardQCD:all in bins
[q_i, q_i+1), each HardQCD event weighted by its bin's cross section x r / N_bin, where
r = [x^2 / (x^2 + pT0^2)]^2 [alpha_s(x^2 + pT0^2) / alpha_s(Q^2_ren)]^2 is the factor by which Pythia's MPI
regularises the same 2 -> 2 cross section (pT0 from the MPI settings at this sqrt(s); r ~ 0.93 at 15 GeV,
-> 1 at high pT). Measured at 13.6 TeV: sigma_ND x P_MB(x > 15 GeV) = 2.02 +- 0.08 mb against 2.02 mb
(2.10 without r) from HardQCD. W, Z and ttbar are added with their own cross sections: minimum bias (MPI)
holds only QCD 2 -> 2 (and a negligible prompt-photon/onium part), never W, Z or top. So no interaction
is counted twice and none is missed.

**Which crossings (pile-up without double counting).** A crossing holds K ~ Poisson(mu) independent
interactions (mu = `pileup_mean`). Every crossing has exactly one hardest interaction, which gives an exact
partition of all crossings with no reuse of rare pile-up tails:
* *soft crossings*, all K interactions below q0, probability exp(-mu p0) with p0 = S(q0) the probability
  that one interaction is above q0: a minimum-bias event below q0 plus Poisson(mu F(q0)) - 1 pile-up
  events drawn from the pool below q0 (the primary is one of the K); together they weigh exp(-mu p0);
* *hard crossings* whose hardest interaction is a HardQCD event at x >= q0: it is the primary, the other
  interactions are Poisson(mu F(x)) pool events below x, and the event weighs
  (sigma_bin r / N_bin / sigma_ND) x mu exp(-mu S(x)): the density of "one interaction at x, all others
  below" among Poisson(mu) crossings;
* W, Z, ttbar: (sigma / N / sigma_ND) x mu with Poisson(mu) unrestricted pile-up (taken as the hardest).
Here S(x) = P(interaction pT-hat > x) is built from the weighted HardQCD events and F = 1 - S is read
from the pool. The weights add up to exp(-mu p0) + (1 - exp(-mu p0)) = 1. This makes the tail right by
construction: a crossing with mu interactions is ~mu times as likely as one interaction to hold a hard
scatter, and the pile-up pool (finite, unbiased) never has to supply it. With mu = 0 the weights reduce
to plain per-interaction cross-section fractions.

**Closure.** `minbias_closure` is unrestricted minimum bias, unweighted, in plain Poisson(mu) crossings
(primary + Poisson(mu) - 1 unrestricted pool events). Its single-jet rate must agree with the weighted
stitched stream wherever it has the statistics (`closure_table`, `plot_rate_closure`,
tests/test_generation_stitching.py). With pile-up its statistics end early: beyond ~30 GeV its rate
rests on the handful of hard events in the finite pool, each reused in many crossings (the binomial error
bars understate that), which is exactly the problem the crossing partition removes from the stitched
stream. Without pile-up (mu = 0) the comparison is between independent samples at every threshold where
minimum bias has events, and tests the pT-hat stitching alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..events import EventBatch, slot_rows

MB_TO_PB = 1e9
_B0_NF5 = 23.0 / (12.0 * np.pi)  # one-loop beta-function coefficient, five flavours


def mpi_pt0(pythia, sqrt_s: float) -> float:
    """Pythia's MPI regularisation scale pT0 at `sqrt_s` (pT0Ref x (sqrt_s / ecmRef)^ecmPow)."""
    s = pythia.settings
    return s.parm("MultipartonInteractions:pT0Ref") * (sqrt_s / s.parm("MultipartonInteractions:ecmRef")) ** s.parm(
        "MultipartonInteractions:ecmPow")


def mpi_regularisation(pthat: np.ndarray, alpha_s: np.ndarray, q2_ren: np.ndarray, *, pt0: float,
                       alpha_s_mz_mpi: float, mz: float = 91.1876) -> np.ndarray:
    """The factor r (module docstring) per HardQCD event: MPI's damping and alpha_s scale relative to HardQCD."""
    pt2 = pthat**2
    damp = (pt2 / (pt2 + pt0**2)) ** 2
    alpha_mpi = 1.0 / (1.0 / alpha_s_mz_mpi + _B0_NF5 * np.log((pt2 + pt0**2) / mz**2))
    return damp * (alpha_mpi / alpha_s) ** 2


def zero_bias_weights(cfg, components: list[tuple]) -> dict[str, np.ndarray]:
    """Crossing-fraction weights (module docstring) per zero-bias component, for every generated event
    (the minimum-bias cut at q0 is applied afterwards; dropped events get weight 0 here).

    `components`: (Process, cached arrays) of the zero-bias processes; one must be minimum bias."""
    mu = float(cfg.pileup_mean)
    q0 = float(cfg.pthat_edges[0])
    data = {p.name: (p, d) for p, d in components}
    if "minbias" not in data:
        raise ValueError("the zero-bias stream needs its minimum-bias component (sizes['minbias'] > 0)")
    sigma_nd = _sigma_pb(data["minbias"][1])
    per_interaction = {}
    for name, (p, d) in data.items():
        if name != "minbias":
            per_interaction[name] = _sigma_pb(d) * d["reg"] / len(d["pthat"]) / sigma_nd
    hard = [name for name, (p, _) in data.items() if p.mpi_regularised]
    x = np.concatenate([data[n][1]["pthat"] for n in hard]) if hard else np.zeros(0)
    w = np.concatenate([per_interaction[n] for n in hard]) if hard else np.zeros(0)
    order = np.argsort(x)
    x_sorted, cum = x[order], np.concatenate([[0.0], np.cumsum(w[order])])
    p0 = float(cum[-1])

    def survival(v: np.ndarray) -> np.ndarray:  # S(v) = sum of hard weight strictly above v
        return p0 - cum[np.searchsorted(x_sorted, v, side="right")]

    out = {}
    mb = data["minbias"][1]
    soft = mb["pthat"] < q0
    if mu > 0:
        out["minbias"] = np.where(soft, np.exp(-mu * p0) / max(int(soft.sum()), 1), 0.0)
    else:
        out["minbias"] = np.where(soft, 1.0 / len(soft), 0.0)
    for name, wi in per_interaction.items():
        p, d = data[name]
        if mu == 0:
            out[name] = wi
        elif p.mpi_regularised:
            out[name] = wi * mu * np.exp(-mu * survival(d["pthat"]))
        else:
            out[name] = wi * mu
    return out


def _sigma_pb(d: dict) -> float:
    return combine_sigma(d["sigma_mb"], d["n"]) * MB_TO_PB


def combine_sigma(sigmas: np.ndarray, counts: np.ndarray) -> float:
    """One cross section from per-chunk Pythia estimates (each averaged over its own events)."""
    counts = np.asarray(counts, dtype=np.float64)
    return float(np.sum(np.asarray(sigmas) * counts) / counts.sum())


# ------------------------------------------------------------------------------------------ closure
@dataclass(frozen=True)
class RateCurve:
    thresholds: np.ndarray
    fraction: np.ndarray
    error: np.ndarray  # one standard deviation (sqrt(sum w^2) / sum w)
    events: np.ndarray  # passing events (unweighted count)


def leading_jet_pt(batch: EventBatch) -> np.ndarray:
    return batch.objects[:, slot_rows("Jet").start, 0]


def single_jet_rates(batch: EventBatch, thresholds: np.ndarray) -> RateCurve:
    """Weighted fraction of events whose leading L1 jet has pT > threshold, with its statistical error."""
    pt = leading_jet_pt(batch)
    w = batch.weight
    t = np.asarray(thresholds, dtype=np.float64)
    passing = pt[None, :] > t[:, None]
    wsum = w.sum()
    return RateCurve(
        thresholds=t,
        fraction=(passing * w).sum(axis=1) / wsum,
        error=np.sqrt((passing * w**2).sum(axis=1)) / wsum,
        events=passing.sum(axis=1),
    )


def closure_table(stitched: EventBatch, minbias: EventBatch, thresholds: np.ndarray, *, min_events: int = 20) -> dict:
    """Stitched vs unweighted minimum-bias single-jet fractions, with pulls where minimum bias has
    at least `min_events` passing events (and the stitched sample some)."""
    a = single_jet_rates(stitched, thresholds)
    b = single_jet_rates(minbias.with_weight(np.ones(len(minbias))), thresholds)
    both = (b.events >= min_events) & (a.events > 0)
    pull = np.where(both, (a.fraction - b.fraction) / np.sqrt(a.error**2 + b.error**2 + 1e-300), 0.0)
    return {
        "thresholds_gev": a.thresholds.tolist(),
        "stitched_fraction": a.fraction.tolist(),
        "stitched_error": a.error.tolist(),
        "minbias_fraction": b.fraction.tolist(),
        "minbias_error": b.error.tolist(),
        "minbias_events": b.events.tolist(),
        "compared": both.tolist(),
        "pull": pull.tolist(),
    }


def plot_rate_closure(stitched: EventBatch, minbias: EventBatch, path, *, thresholds: np.ndarray | None = None,
                      note: str | None = None) -> dict:
    """Figure: single-jet rate vs threshold, stitched (weighted) against unweighted minimum bias, with the
    ratio. Written atomically (PNG) to `path`; returns the closure table. `note` is printed on the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_path
    from ..rate_plots import experiment_label
    from ..rates import ZERO_BIAS_RATE_HZ

    t = np.arange(20.0, 401.0, 5.0) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    table = closure_table(stitched, minbias, t)
    a_f, a_e = np.array(table["stitched_fraction"]), np.array(table["stitched_error"])
    b_f, b_e = np.array(table["minbias_fraction"]), np.array(table["minbias_error"])
    fig, (ax, rx) = plt.subplots(2, 1, figsize=(7, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    r = ZERO_BIAS_RATE_HZ
    ax.errorbar(t, a_f * r, yerr=a_e * r, fmt="o", ms=3, label=f"stitched, weighted ({len(stitched):,} events)")
    show = b_f > 0
    ax.errorbar(t[show], b_f[show] * r, yerr=b_e[show] * r, fmt="s", ms=3, mfc="none",
                label=f"minimum bias, unweighted ({len(minbias):,} events)")
    ax.set_yscale("log")
    ax.set_ylabel("single-jet rate [Hz]")
    experiment_label(ax, rlabel="13.6 TeV")
    ax.legend(title=f"L1 jet, leading pT > threshold; <PU> = {float(stitched.npu.mean()):.1f}", fontsize="small")
    if note:
        ax.text(0.98, 0.02, note, transform=ax.transAxes, ha="right", va="bottom", fontsize="x-small", wrap=True)
    ax.grid(alpha=0.3)
    cmp_ = np.array(table["compared"])
    ratio = np.divide(a_f, b_f, out=np.ones_like(a_f), where=b_f > 0)
    err = ratio * np.sqrt(np.divide(a_e, a_f, out=np.zeros_like(a_f), where=a_f > 0) ** 2
                          + np.divide(b_e, b_f, out=np.zeros_like(b_f), where=b_f > 0) ** 2)
    rx.errorbar(t[cmp_], ratio[cmp_], yerr=err[cmp_], fmt="o", ms=3)
    rx.axhline(1.0, color="k", lw=0.8)
    rx.set_ylim(0.5, 1.5)
    rx.set_ylabel("stitched / MB")
    rx.set_xlabel("leading L1 jet pT threshold [GeV]")
    rx.grid(alpha=0.3)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return table
