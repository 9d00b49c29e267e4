"""A simple reference L1 menu, emulated on the same L1 objects the anomaly trigger sees, and pure rates.

Seeds (defaults modelled on unprescaled CMS Run-2/3 L1 seeds; all configurable in MenuConfig):

=========  ===============================================================  ===================
seed       fires when                                                        CMS analogue
=========  ===============================================================  ===================
SingleJet  a jet with pT >= 180 GeV, |eta| <= 5.0 (any jet slot)              L1_SingleJet180
HT         HT >= 360 GeV; HT = scalar sum of jet pT over jets with            L1_HTT360er
           pT >= 30 GeV and |eta| <= 2.5
SingleMu   a muon with pT >= 22 GeV, |eta| <= 2.4                             L1_SingleMu22
SingleEG   an e/gamma with pT >= 36 GeV, |eta| <= 2.5                         L1_SingleEG36er2p5
MET        MET >= 100 GeV                                                     L1_ETMHF100
=========  ===============================================================  ===================

Menu seeds compare with ``>=`` (the uGT convention: "SingleJet180" means ET >= 180 GeV), and |eta| <= eta_max;
the anomaly trigger compares with ``>`` (trigger.rates). Only the objects in the event batch exist for the
menu: the 10 leading jets, 4 e/gammas, 4 muons, so HT is summed over at most 10 jets (slightly below a full
HT when more jets pass). A seed threshold set to None removes the seed.

Pure rate of the anomaly trigger = rate of events it accepts that no menu seed accepts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .events import EventBatch, slot_rows
from .rates import ONE_SIGMA_CL, ZERO_BIAS_RATE_HZ, Fraction, StatMethod, weighted_fraction

SEEDS = ("SingleJet", "HT", "SingleMu", "SingleEG", "MET")


class MenuConfig(BaseModel):
    """Thresholds [GeV] and |eta| ranges of the reference menu; None disables a seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    single_jet_pt: float | None = Field(180.0, gt=0)
    single_jet_eta_max: float = Field(5.0, gt=0)
    ht: float | None = Field(360.0, gt=0)
    ht_jet_pt: float = Field(30.0, ge=0)
    ht_jet_eta_max: float = Field(2.5, gt=0)
    single_mu_pt: float | None = Field(22.0, gt=0)
    single_mu_eta_max: float = Field(2.4, gt=0)
    single_eg_pt: float | None = Field(36.0, gt=0)
    single_eg_eta_max: float = Field(2.5, gt=0)
    met: float | None = Field(100.0, gt=0)

    def enabled(self) -> tuple[str, ...]:
        thr = {"SingleJet": self.single_jet_pt, "HT": self.ht, "SingleMu": self.single_mu_pt,
               "SingleEG": self.single_eg_pt, "MET": self.met}
        return tuple(s for s in SEEDS if thr[s] is not None)


def _single(objects: np.ndarray, name: str, pt_min: float, eta_max: float) -> np.ndarray:
    o = objects[:, slot_rows(name)]
    pt = o[..., 0]
    return ((pt > 0) & (pt >= pt_min) & (np.abs(o[..., 1]) <= eta_max)).any(axis=1)


def ht(batch: EventBatch, menu: MenuConfig | None = None) -> np.ndarray:
    """HT [GeV] per event: sum of jet pT over jets with pT >= ht_jet_pt and |eta| <= ht_jet_eta_max."""
    m = menu or MenuConfig()
    jets = batch.objects[:, slot_rows("Jet")].astype(np.float64)
    pt = jets[..., 0]
    use = (pt > 0) & (pt >= m.ht_jet_pt) & (np.abs(jets[..., 1]) <= m.ht_jet_eta_max)
    return np.where(use, pt, 0.0).sum(axis=1)


def seed_decisions(batch: EventBatch, menu: MenuConfig | None = None) -> dict[str, np.ndarray]:
    """{seed name: (N,) bool} for every enabled seed."""
    m = menu or MenuConfig()
    o = batch.objects
    out: dict[str, np.ndarray] = {}
    if m.single_jet_pt is not None:
        out["SingleJet"] = _single(o, "Jet", m.single_jet_pt, m.single_jet_eta_max)
    if m.ht is not None:
        out["HT"] = ht(batch, m) >= m.ht
    if m.single_mu_pt is not None:
        out["SingleMu"] = _single(o, "Muon", m.single_mu_pt, m.single_mu_eta_max)
    if m.single_eg_pt is not None:
        out["SingleEG"] = _single(o, "EGamma", m.single_eg_pt, m.single_eg_eta_max)
    if m.met is not None:
        met = o[:, slot_rows("MET"), 0][:, 0]
        out["MET"] = (met > 0) & (met >= m.met)
    return out


def menu_fires(batch: EventBatch, menu: MenuConfig | None = None, decisions: dict | None = None) -> np.ndarray:
    """(N,) bool: the OR of all enabled seeds (all False when every seed is disabled)."""
    d = seed_decisions(batch, menu) if decisions is None else decisions
    out = np.zeros(len(batch), dtype=bool)
    for v in d.values():
        out |= v
    return out


@dataclass(frozen=True)
class MenuRates:
    """Each seed's rate and the menu's total (OR) rate on a zero-bias sample, as Fractions of the ZB rate."""

    seeds: dict[str, Fraction]
    total: Fraction
    zb_rate_hz: float

    def to_dict(self) -> dict:
        return {
            "seeds": {k: v.to_dict("rate_hz", self.zb_rate_hz) for k, v in self.seeds.items()},
            "total": self.total.to_dict("rate_hz", self.zb_rate_hz),
        }


def menu_rates(batch: EventBatch, menu: MenuConfig | None = None, *, cl: float = ONE_SIGMA_CL,
               method: StatMethod = "clopper-pearson", zb_rate_hz: float = ZERO_BIAS_RATE_HZ,
               decisions: dict | None = None) -> MenuRates:
    """Rates of the menu seeds and of the whole menu on the zero-bias `batch` (its weights)."""
    d = seed_decisions(batch, menu) if decisions is None else decisions
    w = batch.weight
    seeds = {k: weighted_fraction(v, w, cl, method) for k, v in d.items()}
    total = weighted_fraction(menu_fires(batch, decisions=d), w, cl, method)
    return MenuRates(seeds=seeds, total=total, zb_rate_hz=zb_rate_hz)


def pure_fraction(ad_fires: np.ndarray, menu_fired: np.ndarray, weights=None, *, cl: float = ONE_SIGMA_CL,
                  method: StatMethod = "clopper-pearson") -> Fraction:
    """Weighted fraction of events the anomaly trigger accepts and no menu seed accepts (times the zero-bias
    rate: the pure rate; on a signal sample: the pure efficiency)."""
    ad, mf = np.asarray(ad_fires, dtype=bool), np.asarray(menu_fired, dtype=bool)
    if ad.shape != mf.shape:
        raise ValueError(f"decision arrays differ in shape: {ad.shape} vs {mf.shape}")
    return weighted_fraction(ad & ~mf, weights, cl, method)
