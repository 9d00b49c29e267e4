"""Figures of the offline statistics (mplhep CMS style, PNG written atomically):

* `plot_bumphunt_fit`: the spectrum, the fitted background and the (n - mu)/sqrt(mu) residuals, with the most
  significant window and its sidebands marked;
* `plot_bumphunt_scan`: local significance sqrt(t) versus window centre for each width;
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

    target = Path(path)
    with atomic_path(target, suffix=target.suffix or ".png") as tmp:
        fig.savefig(tmp, format=(target.suffix.lstrip(".") or "png"), dpi=90, bbox_inches="tight")
    plt.close(fig)
    return target


def plot_bumphunt_fit(result, path: str | os.PathLike, *, xlabel: str = r"$m_{jj}$ [GeV]") -> Path:
    """Spectrum with fitted background and residual panel (a `offline.bumphunt.BumpHuntResult`)."""
    plt, hep = _plt()
    e, n = result.edges, result.counts
    mu = result.background
    fig, (ax, rx) = plt.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}, figsize=(10, 9))
    mids = 0.5 * (e[:-1] + e[1:])
    ax.errorbar(mids, n, yerr=np.sqrt(np.maximum(n, 1)) * (n > 0), fmt="o", ms=3, color="k", label="data")
    if mu is not None:
        label = f"dijet fit ({result.fit.n_params} par.)" if result.fit is not None else "background"
        hep.histplot(mu, e, ax=ax, color="C0", label=label)
        res = (n - mu) / np.sqrt(np.maximum(mu, 1e-12))
        rx.bar(mids, res, width=np.diff(e), color="C0", alpha=0.6)
    rx.axhline(0, color="k", lw=0.8)
    b = result.best
    for a in (ax, rx):
        a.axvspan(b["m_lo"], b["m_hi"], color="C3", alpha=0.15, label="best window" if a is ax else None)
        a.axvspan(b["sideband_lo"], b["m_lo"], color="C2", alpha=0.08, label="sidebands" if a is ax else None)
        a.axvspan(b["m_hi"], b["sideband_hi"], color="C2", alpha=0.08)
    ax.set_yscale("log")
    ax.set_ylabel("Events / bin")
    txt = f"$Z_{{local}}$ = {b['z_local']:.2f}"
    if result.fit is not None:
        txt += f"\nfit: dev/ndf = {result.fit.deviance:.1f}/{result.fit.ndof}"
    ax.legend(title=txt, fontsize="small")
    rx.set_ylabel(r"$(n-\mu)/\mu^{1/2}$")
    rx.set_xlabel(xlabel)
    return _save(fig, path)


def plot_bumphunt_scan(result, path: str | os.PathLike, *, xlabel: str = r"window centre $m_0$ [GeV]") -> Path:
    """Local significance sqrt(t(m0)) per window width."""
    plt, _ = _plt()
    fig, ax = plt.subplots(figsize=(10, 7))
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
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"local $Z = t^{1/2}$")
    ax.set_ylim(0, max(3.0, 1.6 * b["z_local"]))
    ax.legend(title="\n".join(["global:"] + lines) if lines else None, fontsize="x-small", title_fontsize="x-small",
              ncols=3, loc="upper center")
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
