"""Significance-improvement curves: SIC = eff_S / sqrt(eff_B) as a function of the signal efficiency.

A cut that keeps a fraction eff_S of the signal and eff_B of the background multiplies S/sqrt(B) by the SIC.
The maximum is taken only where the background efficiency is measured with at least `min_bkg_events`
test events (default 50, i.e. <= 14 % relative uncertainty), as in the LHCO / CATHODE studies; otherwise the
tail of the curve is dominated by a handful of background events.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class SICCurve:
    eff_s: np.ndarray
    eff_b: np.ndarray
    n_bkg_pass: np.ndarray  # unweighted background test events passing each cut

    @property
    def sic(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.eff_b > 0, self.eff_s / np.sqrt(self.eff_b), 0.0)

    def valid(self, min_bkg_events: int = 50) -> np.ndarray:
        return self.n_bkg_pass >= min_bkg_events

    def max_sic(self, min_bkg_events: int = 50) -> float:
        ok = self.valid(min_bkg_events)
        return float(self.sic[ok].max()) if ok.any() else float("nan")

    def at_max(self, min_bkg_events: int = 50) -> dict[str, float]:
        ok = np.flatnonzero(self.valid(min_bkg_events))
        if ok.size == 0:
            return {"max_sic": float("nan"), "eff_s": float("nan"), "eff_b": float("nan")}
        i = ok[np.argmax(self.sic[ok])]
        return {"max_sic": float(self.sic[i]), "eff_s": float(self.eff_s[i]), "eff_b": float(self.eff_b[i])}

    def sic_at(self, eff_s: float, min_bkg_events: int = 50) -> float:
        """SIC at a given signal efficiency (linear interpolation over the valid part of the curve)."""
        ok = self.valid(min_bkg_events)
        if not ok.any():
            return float("nan")
        return float(np.interp(eff_s, self.eff_s[ok], self.sic[ok], left=np.nan, right=np.nan))


def sic_curve(score_sig: np.ndarray, score_bkg: np.ndarray, w_sig: np.ndarray | None = None, w_bkg: np.ndarray | None = None) -> SICCurve:
    """SIC curve of a score (higher = more signal-like) from labelled test events."""
    s = np.asarray(score_sig, dtype=np.float64)
    b = np.asarray(score_bkg, dtype=np.float64)
    if s.size == 0 or b.size == 0:
        raise ValueError("need signal and background test events")
    ws = np.ones_like(s) if w_sig is None else np.asarray(w_sig, dtype=np.float64)
    wb = np.ones_like(b) if w_bkg is None else np.asarray(w_bkg, dtype=np.float64)
    x = np.concatenate([s, b])
    is_s = np.concatenate([np.ones(s.size, bool), np.zeros(b.size, bool)])
    w = np.concatenate([ws, wb])
    order = np.argsort(-x, kind="stable")
    x, is_s, w = x[order], is_s[order], w[order]
    cs = np.cumsum(np.where(is_s, w, 0.0))
    cb = np.cumsum(np.where(is_s, 0.0, w))
    nb = np.cumsum(~is_s)
    last = np.r_[x[1:] != x[:-1], True]  # one point per distinct threshold
    return SICCurve(cs[last] / ws.sum(), cb[last] / wb.sum(), nb[last])


def sic_table(curves: Mapping[str, Mapping[float, SICCurve]], min_bkg_events: int = 50) -> list[dict]:
    """Rows {method, s_over_b, max_sic, eff_s, eff_b} from curves[method][s_over_b]."""
    rows = []
    for method, by_sb in curves.items():
        for sb, c in sorted(by_sb.items()):
            rows.append({"method": method, "s_over_b": float(sb), **c.at_max(min_bkg_events)})
    return rows


def format_sic_table(rows: list[dict]) -> str:
    """Markdown table: methods as rows, injected S/B as columns, max SIC in the cells."""
    sbs = sorted({r["s_over_b"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["method"], r["s_over_b"]): r["max_sic"] for r in rows}
    head = "| method | " + " | ".join(f"S/B={100 * sb:.2g}%" for sb in sbs) + " |"
    lines = [head, "|" + "---|" * (len(sbs) + 1)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(f"{cell.get((m, sb), float('nan')):.1f}" for sb in sbs) + " |")
    return "\n".join(lines)


def plot_sic(curves: Mapping[str, Mapping[float, SICCurve]], path: str | Path, *, min_bkg_events: int = 50,
             title: str = "") -> Path:
    """SIC vs signal efficiency, one panel per injected S/B, one line per method; writes PNG (and PDF)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sbs = sorted({sb for by_sb in curves.values() for sb in by_sb})
    fig, axes = plt.subplots(1, len(sbs), figsize=(4.6 * len(sbs), 4.0), squeeze=False)
    for ax, sb in zip(axes[0], sbs):
        for method, by_sb in curves.items():
            if sb not in by_sb:
                continue
            c = by_sb[sb]
            ok = c.valid(min_bkg_events)
            ax.plot(c.eff_s[ok], c.sic[ok], label=f"{method} (max {c.max_sic(min_bkg_events):.1f})")
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_xlabel(r"signal efficiency $\epsilon_S$")
        ax.set_ylabel(r"SIC $=\epsilon_S/\sqrt{\epsilon_B}$")
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.set_title(f"S/B = {100 * sb:.2g}% in SR" + (f" — {title}" if title else ""), fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    from l1ad.trigger.atomic import save_figure

    return save_figure(fig, path)
