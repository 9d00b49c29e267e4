"""CATHODE (Hallin et al., 2109.00546): Classifying Anomalies THrough Outer Density Estimation.

1. Train a conditional normalising flow p(x | m_JJ) on the sidebands (outside the signal region), where the
   signal is negligible.
2. Interpolate it into the signal region: draw m_JJ values from a kernel density estimate of the SR data's
   m_JJ and sample x | m_JJ, `oversampling` times as many as there are SR data events.
3. Train a classifier SR data (label 1) vs those samples (label 0) with k-fold cross-fitting: in the absence of
   signal the two are indistinguishable; with signal the classifier learns the signal/background likelihood
   ratio, as in CWoLa, but with a background template that has no m_JJ mismatch.

The idealised anomaly detector (`offline.supervised.idealised`) replaces step 1-2 with a perfect background
template; CATHODE's gap to it measures the flow's interpolation error.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from l1ad.offline.classify import ClassifierConfig, KFoldResult
from l1ad.offline.cwola import train_two_samples, window_masks
from l1ad.offline.dijet import SIGNAL_REGION, DijetSample
from l1ad.offline.flows import ConditionalFlow, FlowConfig


class CathodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    signal_region: tuple[float, float] = SIGNAL_REGION
    sideband_width: float | None = Field(None, gt=0, description="GeV on each side used to train the flow; None = all")
    oversampling: float = Field(4.0, gt=0)
    flow: FlowConfig = FlowConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    seed: int = 0


@dataclass
class CathodeResult:
    kfold: KFoldResult
    flow: ConditionalFlow
    samples: np.ndarray  # generated background features in the SR
    samples_mjj: np.ndarray
    sr_index: np.ndarray  # indices of the SR data events in the input sample

    @property
    def score_sr(self) -> np.ndarray:
        """Out-of-fold scores of the SR data events."""
        return self.kfold.score1

    @property
    def score_samples(self) -> np.ndarray:
        return self.kfold.score0

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.kfold.predict(X)


def sample_sr_mjj(mjj_sr: np.ndarray, n: int, signal_region: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """m_JJ values for the generated background: a Gaussian KDE of the SR data, reflected at the SR edges.

    Plain truncation would leave a deficit of about half the density within a bandwidth of each edge (no data
    beyond it); reflecting the kernel mass that leaks out removes that boundary bias to first order."""
    from scipy.stats import gaussian_kde

    lo, hi = signal_region
    kde = gaussian_kde(mjj_sr, bw_method="scott")
    out = np.empty(0)
    while out.size < n:
        m = kde.resample(2 * (n - out.size) + 16, seed=rng).ravel()
        m = np.where(m < lo, 2 * lo - m, m)
        m = np.where(m >= hi, 2 * hi - m, m)
        out = np.concatenate([out, m[(m >= lo) & (m < hi)]])
    return out[:n]


def fit_background_flow(sample: DijetSample, cfg: CathodeConfig = CathodeConfig()) -> ConditionalFlow:
    """Step 1: the conditional flow p(x | m_JJ [TeV]) on the sideband events."""
    sr, sb = window_masks(sample.mjj, cfg.signal_region, cfg.sideband_width)
    return ConditionalFlow(cfg.flow).fit(sample.features[sb], sample.mjj_tev[sb])


def run_cathode(sample: DijetSample, cfg: CathodeConfig = CathodeConfig(), flow: ConditionalFlow | None = None) -> CathodeResult:
    """Full CATHODE on a data sample; pass a trained `flow` to skip step 1."""
    rng = np.random.default_rng(cfg.seed)
    sr, _ = window_masks(sample.mjj, cfg.signal_region, cfg.sideband_width)
    if flow is None:
        flow = fit_background_flow(sample, cfg)
    n_gen = int(round(cfg.oversampling * sr.sum()))
    m_gen = sample_sr_mjj(sample.mjj[sr], n_gen, cfg.signal_region, rng)
    x_gen = flow.sample(m_gen / 1000.0, seed=cfg.seed + 17)
    kf = train_two_samples(sample.features[sr], x_gen, cfg.classifier, w_data=sample.weight[sr])
    return CathodeResult(kf, flow, x_gen, m_gen, np.flatnonzero(sr))
