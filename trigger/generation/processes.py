"""The process catalogue: Pythia 8 settings for every sample the generator knows, and which file each lands in.

Zero-bias-equivalent stream (file ``zero_bias.h5``), stitched by cross section (see `stitching`):
  ``minbias``          SoftQCD:nonDiffractive, kept only when its hardest interaction has pT-hat < first edge
  ``qcd_pt<a>_<b>``    HardQCD:all with a <= pT-hat < b (edges from GenerationConfig.pthat_edges)
  ``wlnu``, ``zll``, ``ttbar``   W -> l nu, gamma*/Z -> l l (m > 50 GeV), t tbar (not part of minimum bias)
ADC2021 benchmark signals (one file each):
  ``Ato4l``       neutral scalar (H2 in Pythia) at 50 GeV -> Z* Z* -> 4 leptons (e, mu)
  ``leptoquark``  LQ pair, m = 80 GeV, LQ -> b tau
  ``hToTauTau``   neutral scalar at 60 GeV (gg -> h) -> tau tau
  ``hChToTauNu``  charged scalar at 60 GeV (f fbar' -> H+-) -> tau nu
LHC-Olympics-style offline samples:
  ``dijet_resonance``  A3 (3.5 TeV) -> Z h with h at 500 GeV, Z and h -> quarks: two boosted two-prong jets
  ``qcd_dijet``        HardQCD:all, pT-hat > dijet_pthat_min, leading large-R jet pT > dijet_ptj1_min
(STACK.md: a literal W' -> X Y with custom channels gets zero cross section in Pythia; the A3 -> Z h chain works.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from l1ad.trigger.errors import L1adError

if TYPE_CHECKING:
    from .config import GenerationConfig

#: the stitched stream's electroweak and top components (their processes are absent from minimum bias)
EWK_TOP: dict[str, tuple[str, ...]] = {
    "wlnu": ("WeakSingleBoson:ffbar2W = on", "24:onMode = off", "24:onIfAny = 11 13 15"),
    "zll": ("WeakSingleBoson:ffbar2gmZ = on", "PhaseSpace:mHatMin = 50.", "23:onMode = off", "23:onIfAny = 11 13 15"),
    "ttbar": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on"),
}

#: signal name -> Pythia settings
SIGNALS: dict[str, tuple[str, ...]] = {
    "Ato4l": (
        "Higgs:useBSM = on", "HiggsBSM:gg2H2 = on", "35:m0 = 50.", "35:onMode = off", "35:onIfMatch = 23 23",
        "23:onMode = off", "23:onIfAny = 11 13",
    ),
    "leptoquark": (
        "LeptoQuark:gg2LQLQbar = on", "LeptoQuark:qqbar2LQLQbar = on", "42:m0 = 80.", "42:0:products = 5 -15",
    ),
    "hToTauTau": ("HiggsSM:gg2H = on", "25:m0 = 60.", "25:onMode = off", "25:onIfMatch = 15 -15"),
    "hChToTauNu": (
        "Higgs:useBSM = on", "HiggsBSM:ffbar2H+- = on", "37:m0 = 60.", "37:onMode = off", "37:onIfAny = 15",
    ),
    "dijet_resonance": (
        "Higgs:useBSM = on", "HiggsBSM:gg2A3 = on", "36:m0 = 3500.", "36:doForceWidth = on", "36:onMode = off",
        "36:onIfMatch = 23 25", "25:m0 = 500.", "25:onMode = off", "25:onIfAny = 1 2 3 4 5",
        "23:onMode = off", "23:onIfAny = 1 2 3 4 5",
    ),
}
#: the four ADC2021 benchmark signals (each its own file)
ADC_SIGNALS = ("Ato4l", "leptoquark", "hToTauTau", "hChToTauNu")
#: signals that pass the dijet selection (leading large-R jet pT cut) like their QCD background
DIJET_SELECTED = ("dijet_resonance", "qcd_dijet")

MINBIAS = ("SoftQCD:nonDiffractive = on",)
ZERO_BIAS_SAMPLE = "zero_bias"
PILEUP_POOL = "pileup_pool"
MINBIAS_CLOSURE = "minbias_closure"


class UnknownSignalError(L1adError, KeyError):
    """A signal name the generator does not know; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


#: pile-up modes (see stitching): which pool events may be overlaid and how many
#:   "soft"      the primary is one of the crossing's soft interactions: pool pT-hat < first edge,
#:               Poisson(mu F(q0)) - 1 others (the zero-bias minimum-bias component)
#:   "below"     the primary is the crossing's hardest interaction: pool pT-hat < the primary's, Poisson(mu F(pT-hat))
#:   "unbiased"  Poisson(mu) unrestricted pool events on top of the primary (signals, W/Z/ttbar, dijet samples)
#:   "crossing"  Poisson(mu) - 1 unrestricted pool events besides the primary (the minimum-bias closure sample)
#:   None        no overlay (the pool itself)
PILEUP_MODES = ("soft", "below", "unbiased", "crossing", None)


@dataclass(frozen=True)
class Process:
    """One generated process: its Pythia settings, the sample file it belongs to, and its selection.

    `pthat_max`: keep only events whose hardest-interaction pT-hat is below this (the minimum-bias cut).
    `ptj1_min`: keep only events whose leading large-R jet has pT above this (the dijet selection).
    `mpi_regularised`: reweight by the MPI regularisation so HardQCD matches minimum bias (see stitching).
    `pileup`: the pile-up mode (PILEUP_MODES)."""

    name: str
    settings: tuple[str, ...]
    sample: str
    pthat_max: float | None = None
    ptj1_min: float | None = None
    mpi_regularised: bool = False
    pileup: str | None = "unbiased"

    def __post_init__(self) -> None:
        if self.pileup not in PILEUP_MODES:
            raise ValueError(f"pile-up mode {self.pileup!r} not in {PILEUP_MODES}")


def qcd_bin_name(lo: float, hi: float | None) -> str:
    return f"qcd_pt{lo:g}_{'inf' if hi is None else f'{hi:g}'}"


def zero_bias_processes(cfg: "GenerationConfig") -> list[Process]:
    """The stitched zero-bias components: minimum bias below the first edge, HardQCD bins, W, Z, ttbar."""
    edges = list(cfg.pthat_edges)
    out = [Process("minbias", MINBIAS, ZERO_BIAS_SAMPLE, pthat_max=edges[0], pileup="soft")]
    for lo, hi in zip(edges, edges[1:] + [None]):
        s = ("HardQCD:all = on", f"PhaseSpace:pTHatMin = {lo:g}") + ((f"PhaseSpace:pTHatMax = {hi:g}",) if hi else ())
        out.append(Process(qcd_bin_name(lo, hi), s, ZERO_BIAS_SAMPLE, mpi_regularised=True, pileup="below"))
    out += [Process(name, s, ZERO_BIAS_SAMPLE) for name, s in EWK_TOP.items()]
    return out


def signal_process(name: str, cfg: "GenerationConfig") -> Process:
    """The process of a named signal; unknown names raise UnknownSignalError listing the known ones."""
    if name == "qcd_dijet":
        return Process("qcd_dijet", ("HardQCD:all = on", f"PhaseSpace:pTHatMin = {cfg.dijet_pthat_min:g}"),
                       "qcd_dijet", ptj1_min=cfg.dijet_ptj1_min)
    if name not in SIGNALS:
        raise UnknownSignalError(f"unknown signal {name!r}; known signals: {', '.join(sorted(SIGNALS))}")
    return Process(name, SIGNALS[name], name, ptj1_min=cfg.dijet_ptj1_min if name in DIJET_SELECTED else None)


def pileup_pool_process() -> Process:
    """Unbiased minimum bias for the pile-up pool (no pT-hat cut, no overlay of its own)."""
    return Process(PILEUP_POOL, MINBIAS, PILEUP_POOL, pileup=None)


def closure_process() -> Process:
    """Unrestricted minimum bias in plain Poisson(mu) crossings: the unweighted reference of the closure check."""
    return Process(MINBIAS_CLOSURE, MINBIAS, MINBIAS_CLOSURE, pileup="crossing")


def selected_processes(cfg: "GenerationConfig", samples: tuple[str, ...] | None = None) -> list[Process]:
    """Every process needed for `samples` (default: zero bias, the selected signals, the dijet background)."""
    signals = tuple(SIGNALS) if cfg.signals is None else cfg.signals
    wanted = samples if samples is not None else (ZERO_BIAS_SAMPLE, *signals, "qcd_dijet")
    out = []
    for s in wanted:
        out += [*zero_bias_processes(cfg), closure_process()] if s == ZERO_BIAS_SAMPLE else [signal_process(s, cfg)]
    return out


def all_process_names(cfg: "GenerationConfig") -> list[str]:
    """All process names a configuration can size."""
    return [PILEUP_POOL, MINBIAS_CLOSURE] + [p.name for p in zero_bias_processes(cfg)] + [*SIGNALS, "qcd_dijet"]


def known_samples() -> list[str]:
    """Sample (file) names the generator can produce."""
    return [ZERO_BIAS_SAMPLE, *SIGNALS, "qcd_dijet"]
