"""Validation plots of an event file: object multiplicities, pT / eta spectra, m_jj and weights (mplhep style)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .events import OBJECT_SLOTS, EventBatch, slot_rows
from .io import DEFAULT_CHUNK, iter_events, require_events


def _hists(path: str | os.PathLike, chunk_size: int, allow_negative_weights: bool):
    import hist

    types = [s[0] for s in OBJECT_SLOTS]
    h = {
        "mult": {t: hist.Hist(hist.axis.Integer(0, 11, name="n"), storage=hist.storage.Weight()) for t in types},
        "pt": {t: hist.Hist(hist.axis.Regular(60, 1, 3000, transform=hist.axis.transform.log, name="pt"), storage=hist.storage.Weight()) for t in types},
        "eta": {t: hist.Hist(hist.axis.Regular(50, -5, 5, name="eta"), storage=hist.storage.Weight()) for t in types[1:]},
        "mjj": hist.Hist(hist.axis.Regular(60, 10, 8000, transform=hist.axis.transform.log, name="mjj"), storage=hist.storage.Weight()),
        "weight": hist.Hist(hist.axis.Regular(60, -12, 4, name="log10w")),
        "weight_neg": hist.Hist(hist.axis.Regular(60, -12, 4, name="log10w")),
    }
    for b in iter_events(path, chunk_size, allow_negative_weights=allow_negative_weights):
        _fill(h, b)
    return h


def _fill(h: dict, b: EventBatch) -> None:
    w = b.weight
    for name, *_ in OBJECT_SLOTS:
        rows = slot_rows(name)
        obj = b.objects[:, rows]
        filled = obj[:, :, 0] > 0
        h["mult"][name].fill(filled.sum(axis=1), weight=w)
        ww = np.broadcast_to(w[:, None], filled.shape)[filled]
        h["pt"][name].fill(obj[:, :, 0][filled], weight=ww)
        if name in h["eta"]:
            h["eta"][name].fill(obj[:, :, 1][filled], weight=ww)
    if "mjj" in b.offline:
        m = b.offline["mjj"]
        h["mjj"].fill(m[m > 0], weight=w[m > 0])
    h["weight"].fill(np.log10(np.clip(w[w > 0], 1e-300, None)))
    h["weight_neg"].fill(np.log10(np.clip(-w[w < 0], 1e-300, None)))


def plot_file(path: str | os.PathLike, out_dir: str | os.PathLike, *, chunk_size: int = DEFAULT_CHUNK,
              allow_negative_weights: bool = False) -> list[Path]:
    """Draw the validation plots of `path` into `out_dir` (PNG, written atomically); returns the files.
    A file without events is refused before anything is drawn. Negative weights (NLO generators) are refused
    unless allowed; histograms then hold the signed weight sums and the weight plot shows |w| of w < 0 apart."""
    require_events(path, what="plotting")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    plt.style.use(hep.style.CMS)
    h = _hists(path, chunk_size, allow_negative_weights)
    out_dir = Path(out_dir)
    label = Path(path).name
    written = []

    def save(fig, name: str) -> None:
        target = out_dir / f"{name}.png"
        with atomic_path(target, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        written.append(target)

    panels = [("multiplicity", "mult", "Objects per event", False), ("pt", "pt", r"$p_T$ [GeV]", True)]
    for fname, key, xlabel, logx in panels:
        fig, ax = plt.subplots()
        for name, hh in h[key].items():
            if hh.sum().value > 0:
                hep.histplot(hh, ax=ax, label=name, yerr=np.sqrt(hh.variances()))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Weighted events")
        ax.set_yscale("log")
        if logx:
            ax.set_xscale("log")
        ax.legend(title=label, fontsize="small")
        save(fig, fname)
    fig, ax = plt.subplots()
    for name, hh in h["eta"].items():
        if hh.sum().value > 0:
            hep.histplot(hh, ax=ax, label=name, density=True)
    ax.set_xlabel(r"$\eta$")
    ax.set_ylabel("Normalised")
    ax.legend(title=label, fontsize="small")
    save(fig, "eta")
    fig, ax = plt.subplots()
    hep.histplot(h["mjj"], ax=ax, yerr=np.sqrt(h["mjj"].variances()), label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$m_{jj}$ [GeV]")
    ax.set_ylabel("Weighted events")
    ax.legend(fontsize="small")
    save(fig, "mjj")
    fig, ax = plt.subplots()
    hep.histplot(h["weight"], ax=ax, label=f"{label}: w > 0")
    if h["weight_neg"].sum() > 0:
        hep.histplot(h["weight_neg"], ax=ax, label="w < 0 (|w|)")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\log_{10}$ |weight|")
    ax.set_ylabel("Events")
    ax.legend(fontsize="small")
    save(fig, "weights")
    return written
