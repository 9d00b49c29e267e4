"""Plots of a RatesReport (mplhep style with the "l1ad Simulation" label, PNG, written atomically): the rate curve
with its band and the target rates, ROC curves on a log-FPR axis, and signal efficiency versus trigger rate.

Integer score codes are drawn in score units when the score's LSB is given (the code on a second axis), and
targets that the zero-bias sample cannot resolve (rates.json `threshold_checks`) are marked as not reached."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .rate_report import RatesReport


#: the experiment-style label on every plot: neutral (no experiment's name is claimed for this simulation)
LABEL_EXP, LABEL_TEXT = "l1ad", "Simulation"


def experiment_label(ax, rlabel: str = "", loc: int = 0) -> None:
    """The mplhep experiment-style label ("l1ad Simulation") on an axis (loc 0: above it; 1, 2: inside, top
    left), `rlabel` on the right above it."""
    import mplhep

    mplhep.label.exp_label(exp=LABEL_EXP, llabel=LABEL_TEXT, rlabel=rlabel, loc=loc, ax=ax)


@contextmanager
def _figure(path: Path, figsize=(8, 6), rlabel: str = "", label_loc: int = 0, legend_below: bool = False):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    with plt.style.context(mplhep.style.CMS):
        fig, ax = plt.subplots(figsize=figsize)
        try:
            yield fig, ax
            experiment_label(ax, rlabel, label_loc)
            if legend_below:  # the axes keep the top of the figure, the legend its bottom
                fig.legend(*ax.get_legend_handles_labels(), loc="lower center", fontsize="x-small", frameon=False)
                fig.tight_layout(rect=(0, 0.3, 1, 1))
            else:
                fig.tight_layout()
            with atomic_path(path, suffix=".png") as tmp:
                fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")  # legends may sit outside the axes
        finally:
            plt.close(fig)


def threshold_label(threshold: int | float, score_lsb: float | None) -> str:
    """A threshold in score units with its integer code beside it (codes with a known LSB), else as it is."""
    if score_lsb is not None and float(threshold).is_integer():
        return f"{threshold * score_lsb:.6g} (code {int(threshold)})"
    return f"{threshold:.6g}"


def plot_rate_curve(report: RatesReport, path: str | Path, *, score_lsb: float | None = None) -> Path:
    """Rate [kHz] versus threshold with the interval band; target rates and chosen thresholds marked, targets the
    sample cannot resolve drawn as crosses. With `score_lsb`, integer codes are shown in score units (code x LSB)
    with the code on the top axis."""
    path = Path(path)
    c = report.curve
    scale = score_lsb if score_lsb is not None else 1.0
    checks = {ck["target_hz"]: ck for ck in report.threshold_checks}
    with _figure(path, figsize=(8, 8.5), legend_below=True) as (fig, ax):
        x = np.asarray(c.thresholds, dtype=np.float64) * scale
        pos = c.rate_hz > 0
        ax.fill_between(x, c.rate_lo_hz / 1e3, c.rate_hi_hz / 1e3, step="post", alpha=0.3, color="C0",
                        label=f"{c.method}, CL {c.cl:.3g}")
        ax.step(x[pos], c.rate_hz[pos] / 1e3, where="post", color="C0", label="rate (score > threshold)")
        for i, th in enumerate(report.thresholds):
            color = f"C{(i + 1) % 10}"
            ok = checks.get(th.target_hz, {}).get("reachable", True)
            ax.axhline(th.target_hz / 1e3, ls="--", lw=1, color=color)
            what = threshold_label(th.threshold, score_lsb)
            if ok:
                ax.plot([th.threshold * scale], [th.target_hz / 1e3], "o", color=color,
                        label=f"{th.target_hz / 1e3:g} kHz: threshold {what}")
            else:
                ax.plot([th.threshold * scale], [th.target_hz / 1e3], "x", ms=10, mew=2, color=color,
                        label=f"{th.target_hz / 1e3:g} kHz NOT REACHED: {th.rate_hz / 1e3:.3g} kHz at {what}")
        ax.set_yscale("log")
        positive = np.r_[c.rate_hi_hz[c.rate_hi_hz > 0], [t.target_hz for t in report.thresholds]]
        ax.set_ylim(bottom=positive.min() / 1e3 / 3)
        ax.ticklabel_format(axis="x", useOffset=False)
        ax.set_xlabel("anomaly-score threshold" + (" [score units]" if score_lsb is not None else ""))
        ax.set_ylabel("L1 rate [kHz]")
    return path


def plot_roc(report: RatesReport, path: str | Path) -> Path:
    """ROC curves of every signal against zero bias, log FPR axis, with the FPR targets marked."""
    path = Path(path)
    with _figure(path, label_loc=2) as (fig, ax):  # the top axis carries the rate: label inside
        for i, (name, s) in enumerate(report.signals.items()):
            d = s.roc.downsampled(400)
            f, t = np.asarray(d["fpr"]), np.asarray(d["tpr"])
            keep = f > 0
            ax.plot(f[keep], t[keep], color=f"C{i % 10}", label=f"{name} (AUC {s.roc.auc:.3f})")
        for f in report.config.fpr_targets:
            ax.axvline(f, ls=":", color="grey")
        n_eff = report.zero_bias.get("n_eff")
        low = report.config.min_effective_events / n_eff if n_eff else 0.0
        lo_x = min(report.config.fpr_targets) / 10
        if low > lo_x:  # FPRs the zero-bias sample cannot resolve
            ax.axvspan(lo_x, min(low, 1.0), color="grey", alpha=0.15,
                       label=f"< {report.config.min_effective_events:g} effective zero-bias events")
        ax.set_xscale("log")
        ax.set_xlim(left=min(report.config.fpr_targets) / 10, right=1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("false-positive rate (zero bias)")
        ax.set_ylabel("signal efficiency (TPR)")
        zb = report.config.zb_rate_hz
        top = ax.secondary_xaxis("top", functions=(lambda f: f * zb / 1e3, lambda r: r * 1e3 / zb))
        top.set_xlabel("L1 rate [kHz]")
        ax.legend(fontsize="x-small", loc="lower right")
    return path


def plot_efficiency_vs_rate(report: RatesReport, path: str | Path) -> Path:
    """Signal efficiency versus L1 rate [kHz] (log), with the efficiencies at the target rates and their intervals."""
    path = Path(path)
    c = report.curve
    with _figure(path) as (fig, ax):
        pos = c.rate_hz > 0
        for i, (name, s) in enumerate(report.signals.items()):
            color = f"C{i % 10}"
            ax.plot(c.rate_hz[pos] / 1e3, s.efficiency_curve[pos], color=color, label=name)
            r = np.array([e["rate_hz"] for e in s.efficiency_at_rate]) / 1e3
            e = np.array([e["efficiency"] for e in s.efficiency_at_rate])
            lo = np.array([x["efficiency_lo"] for x in s.efficiency_at_rate])
            hi = np.array([x["efficiency_hi"] for x in s.efficiency_at_rate])
            ok = r > 0
            ax.errorbar(r[ok], e[ok], yerr=[e[ok] - lo[ok], hi[ok] - e[ok]], fmt="o", color=color, ms=4)
        for th in report.thresholds:
            ax.axvline(th.target_hz / 1e3, ls="--", lw=1, color="grey")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("L1 rate [kHz]")
        ax.set_ylabel("signal efficiency")
        if report.signals:
            ax.legend(fontsize="x-small", loc="upper left")
    return path


def write_plots(report: RatesReport, out_dir: str | Path, *, score_lsb: float | None = None) -> list[Path]:
    """All plots of the report into out_dir (ROC and efficiency only when there are signals); `score_lsb`: the
    value of one integer score code, to draw thresholds in score units."""
    out = Path(out_dir)
    paths = [plot_rate_curve(report, out / "rate_curve.png", score_lsb=score_lsb)]
    if report.signals:
        paths += [plot_roc(report, out / "roc.png"), plot_efficiency_vs_rate(report, out / "efficiency_vs_rate.png")]
    return paths
