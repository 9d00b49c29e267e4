"""Configuration of the built-in generator: sample sizes per process, pile-up, detector response, stitching.

`GenerationConfig()` is the default (whole pipeline in about ten minutes on two cores); `GenerationConfig.quick()`
is the small variant (a few thousand events per sample). The content hash of the model (together with
`GENERATOR_VERSION`) keys the generation cache, so any change here regenerates exactly what it affects.
"""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: bump when generator code changes what a given configuration produces (invalidates every cache entry)
GENERATOR_VERSION = "2"  # 2: calorimeter-region images (trigger.calo) stored with every process


class DetectorConfig(BaseModel):
    """L1-like detector response: calorimeter towers, resolutions, object thresholds, isolation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: calorimeter tower size in eta and the number of towers in phi (CMS trigger towers: 0.087 x 2pi/72)
    tower_deta: float = 0.087
    tower_nphi: int = 72
    #: calorimeter acceptance
    calo_eta_max: float = 5.0
    #: a tower enters jets and MET only with E_T above this (the L1 tower LSB) [GeV]
    tower_et_min: float = 0.5
    #: stochastic (a / sqrt(E)) and constant (c) terms of the tower energy resolution: EM, hadronic, forward
    em_resolution: tuple[float, float] = (0.10, 0.02)
    had_resolution: tuple[float, float] = (1.00, 0.05)
    hf_resolution: tuple[float, float] = (1.80, 0.10)
    #: towers beyond this |eta| use the forward (HF) resolution
    hf_eta_min: float = 3.0
    #: MET sums towers within this |eta| (like the L1 ETM sum, without the forward calorimeter)
    met_eta_max: float = 3.0
    #: patch size (towers in eta, towers in phi) for the median pile-up density rho
    rho_patch: tuple[int, int] = (10, 8)
    #: L1 jets: anti-kt radius, pT threshold after pile-up subtraction, |eta| acceptance
    jet_r: float = 0.4
    jet_pt_min: float = 20.0
    jet_eta_max: float = 4.7
    #: e/gamma candidates (final-state electrons and photons)
    egamma_pt_min: float = 5.0
    egamma_eta_max: float = 3.0
    egamma_rel_iso: float = 0.3
    #: muon candidates: relative pT resolution, threshold, acceptance, isolation
    muon_pt_resolution: float = 0.12
    muon_pt_min: float = 3.0
    muon_eta_max: float = 2.4
    muon_rel_iso: float = 0.3
    #: isolation cone and the particles it sums: charged hadrons from the primary vertex inside the tracker,
    #: all other particles (neutral, or outside the tracker) above `iso_particle_pt_min`
    iso_cone: float = 0.3
    iso_particle_pt_min: float = 1.0
    tracker_eta_max: float = 2.5
    #: offline pile-up mitigation: charged pile-up inside the tracker is removed (CHS); other pile-up
    #: particles are kept only above this pT (a crude PUPPI) [GeV]
    offline_pu_pt_min: float = 1.0
    #: offline jets: small-R for m_jj, large-R for substructure (pT thresholds [GeV], |eta| acceptance)
    offline_jet_pt_min: float = 20.0
    offline_jet_eta_max: float = 4.7
    large_r: float = 1.0
    large_r_pt_min: float = 100.0
    large_r_eta_max: float = 2.5


#: the default number of generated events per process (before stitching cuts and filters)
DEFAULT_SIZES: dict[str, int] = {
    "pileup_pool": 4000,
    "minbias_closure": 4000,
    "minbias": 14000,
    "qcd_pt15_30": 10000,
    "qcd_pt30_50": 2000,
    "qcd_pt50_80": 2000,
    "qcd_pt80_120": 2000,
    "qcd_pt120_170": 2000,
    "qcd_pt170_250": 2000,
    "qcd_pt250_400": 2000,
    "qcd_pt400_600": 2000,
    "qcd_pt600_inf": 2000,
    "wlnu": 2000,
    "zll": 2000,
    "ttbar": 2000,
    "Ato4l": 2500,
    "leptoquark": 2500,
    "hToTauTau": 2500,
    "hChToTauNu": 2500,
    "dijet_resonance": 3000,
    "qcd_dijet": 7000,
}
#: the `quick` variant's sizes (processes not listed: a tenth of the default, at least 300)
QUICK_SIZES: dict[str, int] = {
    "pileup_pool": 1000,
    "minbias_closure": 1500,
    "minbias": 2500,
    "qcd_pt15_30": 2000,
    "Ato4l": 800,
    "leptoquark": 800,
    "hToTauTau": 800,
    "hChToTauNu": 800,
    "dijet_resonance": 800,
    "qcd_dijet": 1500,
}


class GenerationConfig(BaseModel):
    """Everything that decides the generated events (and therefore the cache key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(1, ge=0, description="master seed; per-chunk seeds derive from it")
    sqrt_s: float = Field(13600.0, gt=0, description="centre-of-mass energy [GeV]")
    pileup_mean: float = Field(20.0, ge=0, description="mean of the Poisson pile-up overlay")
    #: pT-hat bin edges [GeV] of the HardQCD samples; the first edge is the minimum-bias cut (see stitching)
    pthat_edges: tuple[float, ...] = (15.0, 30.0, 50.0, 80.0, 120.0, 170.0, 250.0, 400.0, 600.0)
    #: dijet background for the offline searches: generator cut and the leading large-R jet pT selection [GeV]
    #: (pT-hat 900 GeV loses ~4 % of the events passing 1.2 TeV, pile-up and ISR included; 1000 GeV would lose 13 %)
    dijet_pthat_min: float = 900.0
    dijet_ptj1_min: float = 1200.0
    #: events per Pythia task (each task initialises Pythia once, ~1 s)
    chunk_size: int = Field(1000, ge=1)
    #: per-process generated event counts; processes missing here use DEFAULT_SIZES
    sizes: dict[str, int] = Field(default_factory=dict)
    #: which signal samples to produce (None: all known signals)
    signals: Optional[tuple[str, ...]] = None
    detector: DetectorConfig = Field(default_factory=DetectorConfig)

    @field_validator("pthat_edges")
    @classmethod
    def _edges_increase(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if len(v) < 1 or any(b <= a for a, b in zip(v, v[1:])) or v[0] <= 0:
            raise ValueError(f"pthat_edges must be positive and strictly increasing, got {v}")
        return v

    @field_validator("sizes")
    @classmethod
    def _sizes_non_negative(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {k: n for k, n in v.items() if n < 0}
        if bad:
            raise ValueError(f"sample sizes must be >= 0, got {bad}")
        return v

    @model_validator(mode="after")
    def _known_names(self) -> "GenerationConfig":
        from .processes import SIGNALS, all_process_names

        known = all_process_names(self)
        unknown = sorted(set(self.sizes) - set(known))
        if unknown:
            raise ValueError(f"sizes: unknown process name(s) {unknown}; known: {known}")
        if self.signals is not None:
            bad = [s for s in self.signals if s not in SIGNALS]
            if bad:
                raise ValueError(f"unknown signal(s) {bad}; known signals: {sorted(SIGNALS)}")
        return self

    def size(self, process: str) -> int:
        """Events to generate for `process`."""
        if process in self.sizes:
            return self.sizes[process]
        if process in DEFAULT_SIZES:
            return DEFAULT_SIZES[process]
        if process.startswith("qcd_pt"):
            return 2000
        raise KeyError(f"no size for process {process!r}")

    @classmethod
    def quick(cls, **overrides) -> "GenerationConfig":
        """The small variant: a few thousand events per sample (about two minutes on two cores)."""
        sizes = {name: max(300, n // 10) for name, n in DEFAULT_SIZES.items()}
        sizes.update(QUICK_SIZES)
        sizes.update(overrides.pop("sizes", {}))
        return cls(sizes=sizes, chunk_size=overrides.pop("chunk_size", 500), **overrides)

    def cache_dict(self) -> dict:
        """The JSON form that the cache key hashes."""
        return {"generator_version": GENERATOR_VERSION, **self.model_dump(mode="json")}
