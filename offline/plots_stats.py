"""Figures of the offline statistics (mplhep CMS style with the "l1ad Simulation" label, PNG written atomically):

* `plot_bumphunt_fit`: the spectrum, the fitted background and the (n - mu)/sqrt(mu) pulls, with the most
  significant window and its sidebands marked;
* `plot_bumphunt_scan`: the same spectrum, fit and pulls with, below them, the local significance sqrt(t)
  versus window centre for each width and the global p-values;
* `plot_nplm_null`: the NPLM null distribution as analysts draw it: histogram of the toy t's, the chi2 pdf with
  the fitted dof, the observed t (an arrow at the edge when it lies far off the toys' range);
* `plot_global_pvalue`: the global p-value versus the level u from toys (with a binomial band), Gross-Vitells
  and/or the Euler-characteristic formula, and the observed maximum;
* `plot_pvalue_hist`: histograms of p-values against the uniform expectation;
* `plot_conditional_rates`: false-positive rate per covariate bin, plain vs conditional conformal;
* `plot_nuisance_fpr`: false-positive rate versus a nuisance parameter, raw vs orthogonalised score;
* `plot_loocv`: the KDE leave-one-out loss curve.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from l1ad.trigger.atomic import atomic_path

__all__ = [
    "plot_bumphunt_fit",
    "plot_bumphunt_scan",
    "plot_conditional_rates",
    "plot_global_pvalue",
    "plot_loocv",
    "plot_nplm_null",
    "plot_nuisance_fpr",
    "plot_pvalue_hist",
]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    plt.style.use(hep.style.CMS)
    return plt, hep


def _save(fig, path: str | os.PathLike) -> Path:
    import matplotlib.pyplot as plt

    from l1ad.trigger.rate_plots import experiment_label

    experiment_label(fig.axes[0])
    target = Path(path)
    with atomic_path(target, suffix=target.suffix or ".png") as tmp:
        fig.savefig(tmp, format=(target.suffix.lstrip(".") or "png"), dpi=90, bbox_inches="tight")
    plt.close(fig)
    return target


def _spectrum(ax, rx, result, xlabel: str) -> None:
    """Spectrum (points), fitted background, pulls (n - mu)/sqrt(mu), the excess window and its sidebands."""
    _, hep = _plt()
    e, n = result.edges, result.counts
    mu = result.background
    mids = 0.5 * (e[:-1] + e[1:])
    ax.errorbar(mids, n, yerr=np.sqrt(np.maximum(n, 1)) * (n > 0), fmt="o", ms=3, color="k", label="pseudo-data")
    if mu is not None:
        label = f"dijet fit ({result.fit.n_params} par.)" if result.fit is not None else "background"
        hep.histplot(mu, e, ax=ax, color="C0", label=label)
        res = (n - mu) / np.sqrt(np.maximum(mu, 1e-12))
        rx.bar(mids, res, width=np.diff(e), color="C0", alpha=0.6)
        lim = max(3.0, float(np.nanmax(np.abs(res))) * 1.15) if res.size else 3.0
        rx.set_ylim(-lim, lim)
    rx.axhline(0, color="k", lw=0.8)
    b = result.best
    for a in (ax, rx):
        a.axvspan(b["m_lo"], b["m_hi"], color="C3", alpha=0.18, label="excess window" if a is ax else None)
        a.axvspan(b["sideband_lo"], b["m_lo"], color="C2", alpha=0.08, label="sidebands" if a is ax else None)
        a.axvspan(b["m_hi"], b["sideband_hi"], color="C2", alpha=0.08)
    ax.set_yscale("log")
    if e[0] > 0 and e[-1] / e[0] > 5:  # a falling spectrum over a decade or more: log mass axis, plain ticks
        from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

        ax.set_xscale("log")
        nice = [m * 10.0**k for k in range(0, 6) for m in (1, 2, 3, 5)]
        ticks = [v for v in nice if e[0] <= v <= e[-1]]
        for a in (ax, rx):
            a.xaxis.set_major_locator(FixedLocator(ticks))
            a.xaxis.set_major_formatter(ScalarFormatter())
            a.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("Events / bin")
    txt = f"window {b['m_lo']:.0f}-{b['m_hi']:.0f} GeV: $Z_{{local}}$ = {b['z_local']:.2f}"
    if result.fit is not None:
        txt += f"\nfit: dev/ndf = {result.fit.deviance:.1f}/{result.fit.ndof}"
    ax.legend(title=txt, fontsize="x-small", title_fontsize="x-small", loc="upper right")
    rx.set_ylabel(r"$(n-\mu)/\mu^{1/2}$", fontsize="small")
    rx.set_xlabel(xlabel)


def plot_bumphunt_fit(result, path: str | os.PathLike, *, xlabel: str = r"$m_{jj}$ [GeV]") -> Path:
    """Spectrum with fitted background and pull panel (a `offline.bumphunt.BumpHuntResult`)."""
    plt, _ = _plt()
    fig, (ax, rx) = plt.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}, figsize=(10, 9))
    _spectrum(ax, rx, result, xlabel)
    return _save(fig, path)


def plot_bumphunt_scan(result, path: str | os.PathLike, *, xlabel: str = r"$m_{jj}$ [GeV]") -> Path:
    """Spectrum, fit and pulls (as `plot_bumphunt_fit`) above the local significance sqrt(t(m0)) per window
    width versus the window centre, with the global p-values."""
    plt, _ = _plt()
    fig, (sx, rx, ax) = plt.subplots(3, 1, sharex=True, figsize=(10, 12),
                                     gridspec_kw={"height_ratios": [3, 1, 2], "hspace": 0.06})
    _spectrum(sx, rx, result, "")
    z = result.local_z
    for j, w in enumerate(result.widths):
        ok = np.isfinite(z[j])
        if ok.any():
            ax.plot(result.centres[j][ok], z[j][ok], drawstyle="steps-mid", lw=1.2, label=f"width {w} bins")
    b = result.best
    ax.plot([b["m0"]], [b["z_local"]], "r*", ms=14, label="maximum")
    lines = []
    if result.global_p_toys is not None:
        bound = not np.any(result.t_max_toys >= result.t_max)
        rel = "<" if bound else "="
        lines.append(f"toys: $p$ {rel} {result.global_p_toys:.3g} ($Z$ {'>' if bound else '='} {result.global_z_toys:.2f})")
    if result.global_p_gv is not None:
        lines.append(f"Gross-Vitells: $p$ = {result.global_p_gv:.3g} ($Z$ = {result.global_z_gv:.2f})")
    if result.global_p_ec is not None:
        lines.append(f"Euler char.: $p$ = {result.global_p_ec:.3g} ($Z$ = {result.global_z_ec:.2f})")
    ax.set_xlabel(f"{xlabel} (window centre in the bottom panel)")
    ax.set_ylabel(r"local $Z = t^{1/2}$")
    ax.set_ylim(0, max(3.0, 1.8 * b["z_local"]))
    ax.legend(title="\n".join(["global:"] + lines) if lines else None, fontsize="x-small", title_fontsize="x-small",
              loc="upper right")
    return _save(fig, path)


def plot_nplm_null(result, path: str | os.PathLike, *, title: str = "", nominal_dof: float | None = None) -> Path:
    """NPLM null distribution (`offline.nplm.NPLMResult`): histogram of the toy t's, the chi2 pdf with the
    fitted dof (dotted when a KS test rejects it) and with `nominal_dof` if given, and the observed t. The x
    range follows the toys; an observed t far outside it is shown as an arrow at the edge with its value."""
    from scipy import stats

    plt, _ = _plt()
    t = np.asarray(result.t_toys, dtype=float)
    med = float(np.median(t)) if t.size else 0.0
    mad = 1.4826 * float(np.median(np.abs(t - med))) if t.size else 1.0
    core = t[np.abs(t - med) <= 8 * mad] if mad > 0 else t  # the toys' bulk; far outliers are counted, not drawn
    q_lo, q_hi = (float(core.min()), float(core.max())) if core.size else (0.0, 1.0)
    span = max(q_hi - q_lo, 1e-9)
    lo, hi = min(0.0, q_lo - 0.1 * span), q_hi + 0.4 * span
    t_obs = float(result.t_obs)
    inside = lo - span <= t_obs <= hi + 2 * span
    if inside:
        lo, hi = min(lo, t_obs - 0.1 * span), max(hi, t_obs + 0.1 * span)
    fig, ax = plt.subplots(figsize=(10, 7))
    bins = np.linspace(lo, hi, 30)
    h, _, _ = ax.hist(t, bins=bins, density=True, histtype="stepfilled", color="C0", alpha=0.35,
                      label=f"null toys ({t.size})")
    top = 1.6 * float(h.max()) if h.size and h.max() > 0 else None  # the y range follows the toys, not the pdf
    xs = np.linspace(max(lo, 1e-6), hi, 400)
    ok = result.chi2.ks_p >= 0.01
    ax.plot(xs, stats.chi2.pdf(xs, result.chi2.dof), "k-" if ok else "k:", lw=2,
            label=rf"$\chi^2$ fit: dof = {result.chi2.dof:.1f} (KS p = {result.chi2.ks_p:.2g}" + (")" if ok else ", rejected)"))
    if nominal_dof is not None:
        ax.plot(xs, stats.chi2.pdf(xs, nominal_dof), "C1--", lw=1.5, label=rf"$\chi^2$ nominal: dof = {nominal_dof:g}")
    p_txt = f"Z = {result.z_chi2:.2f} from $\\chi^2$" if ok else f"p = {result.p_empirical:.2g} from toys"
    label = f"$t_{{obs}}$ = {t_obs:.4g} ({p_txt})"
    if top:
        ax.set_ylim(0, top)
    if inside:
        ax.axvline(t_obs, color="C3", lw=2, label=label)
    else:
        edge = lo if t_obs < lo else hi
        ymax = ax.get_ylim()[1]
        ax.annotate("", xy=(edge, 0.5 * ymax), xytext=(edge + (0.12 if edge == lo else -0.12) * (hi - lo), 0.5 * ymax),
                    arrowprops={"arrowstyle": "->", "color": "C3", "lw": 2})
        ax.plot([], [], color="C3", lw=2, label=label + ", off scale")
    off = int(((t < lo) | (t > hi)).sum())
    if off:
        ax.plot([], [], " ", label=f"{off} toy(s) off scale (from {t.min():.3g} to {t.max():.3g})")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("test statistic $t$")
    ax.set_ylabel("density")
    ax.legend(title=title or None, fontsize="x-small", title_fontsize="x-small", loc="upper right")
    return _save(fig, path)


def plot_global_pvalue(result, path: str | os.PathLike, *, u_max: float | None = None) -> Path:
    """Global p-value versus level u: toys (binomial band) against Gross-Vitells / Euler characteristic."""
    plt, _ = _plt()
    tt = result.t_max_toys
    hi = u_max or max(4.0, 1.3 * result.t_max, float(np.max(tt)) if tt is not None and tt.size else 0.0)
    u = np.linspace(0.5, hi, 200)
    curves = result.global_p_curve(u)
    fig, ax = plt.subplots(figsize=(10, 7))
    if "toys" in curves:
        p = curves["toys"]
        err = np.sqrt(np.maximum(p * (1 - p), 1e-12) / tt.size)
        ax.fill_between(u, np.maximum(p - err, 1e-6), p + err, color="k", alpha=0.2, step="mid")
        ax.step(u, np.maximum(p, 1e-6), where="mid", color="k", label=f"toys ({tt.size})")
    if "gross_vitells" in curves:
        ax.plot(u, curves["gross_vitells"], "C0--", lw=2,
                label=f"Gross-Vitells ($u_0$={result.gv['u0']:g}, $N$={result.gv['n_u0']:.2f}, {result.gv['n_lee_toys']} toys)")
    if "euler_characteristic" in curves:
        ax.plot(u, curves["euler_characteristic"], "C1-.", lw=2,
                label=f"Euler characteristic ({result.ec['dim']}-D, {result.ec['n_lee_toys']} toys)")
    ax.axvline(result.t_max, color="C3", lw=1, label=f"observed $t_{{max}}$ = {result.t_max:.2f}")
    ax.set_yscale("log")
    ax.set_ylim(max(1e-4, 0.3 / max(1, tt.size if tt is not None else 1)), 1.5)
    ax.set_xlabel("level $u$")
    ax.set_ylabel(r"$P(\max t \geq u)$")
    ax.legend(fontsize="x-small")
    return _save(fig, path)


def plot_pvalue_hist(pvalues: Mapping[str, np.ndarray], path: str | os.PathLike, *, bins: int = 20,
                     title: str | None = None) -> Path:
    """Histograms of p-values (density) with the uniform expectation."""
    plt, _ = _plt()
    fig, ax = plt.subplots(figsize=(10, 7))
    edges = np.linspace(0, 1, bins + 1)
    for name, p in pvalues.items():
        p = np.asarray(p, dtype=float)
        ax.hist(p, bins=edges, density=True, histtype="step", lw=2, label=f"{name} (n={p.size})")
    ax.axhline(1.0, color="k", ls="--", lw=1, label="uniform")
    ax.set_xlabel("p-value")
    ax.set_ylabel("density")
    ax.set_xlim(0, 1)
    ax.legend(title=title, fontsize="x-small", title_fontsize="x-small")
    return _save(fig, path)


def plot_conditional_rates(centres: np.ndarray, rates: Mapping[str, np.ndarray], alpha: float, path: str | os.PathLike,
                           *, xlabel: str = "covariate", errors: Mapping[str, np.ndarray] | None = None) -> Path:
    """False-positive rate P(p <= alpha) per covariate bin for each method."""
    plt, _ = _plt()
    fig, ax = plt.subplots(figsize=(10, 7))
    for i, (name, r) in enumerate(rates.items()):
        yerr = None if errors is None else errors.get(name)
        ax.errorbar(centres, r, yerr=yerr, fmt="o-", color=f"C{i}", label=name)
    ax.axhline(alpha, color="k", ls="--", lw=1, label=rf"nominal $\alpha$ = {alpha:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"$P(p \leq \alpha)$")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_nuisance_fpr(thetas: Sequence[float], fprs: Mapping[str, np.ndarray], target: float, path: str | os.PathLike,
                      *, xlabel: str = r"nuisance $\theta$ (jet energy scale)") -> Path:
    """False-positive rate at a fixed threshold versus the nuisance parameter."""
    plt, _ = _plt()
    fig, ax = plt.subplots(figsize=(10, 7))
    for i, (name, f) in enumerate(fprs.items()):
        ax.plot(thetas, f, "o-", color=f"C{i}", label=name)
    ax.axhline(target, color="k", ls="--", lw=1, label=f"nominal FPR {target:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("false-positive rate")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_loocv(result, path: str | os.PathLike) -> Path:
    """KDE leave-one-out loss L(h) versus the bandwidth (`offline.kde.LOOCVResult`)."""
    plt, _ = _plt()
    fig, ax = plt.subplots(figsize=(10, 7))
    ax.plot(result.bandwidths, result.losses, "o-")
    ax.axvline(result.bandwidth, color="C3", label=f"$h^*$ = {result.bandwidth:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("bandwidth $h$")
    ax.set_ylabel(r"$\mathcal{L}(h) = -\frac{1}{n}\sum_i \ln \hat p_{-i}(x_i)$")
    ax.legend(fontsize="small")
    return _save(fig, path)
