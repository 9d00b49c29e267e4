"""Classification Without Labels (CWoLa): a classifier between two mixed samples learns the signal/background
likelihood ratio up to a monotonic map (Metodiev, Nachman, Thaler 2017; the proof is in the seed slides).

Two ways to form the mixed samples are provided:

* `train_cwola`: signal region vs sidebands in m_JJ (the CWoLa-hunting construction for one window);
* `train_two_samples`: any "data" array vs a background template (e.g. a simulated or generated background),
  which is also what CATHODE and the idealised anomaly detector do.

The classifier is an ensemble of boosted decision trees or a small neural network (`ClassifierConfig.kind`),
trained with k-fold cross-fitting (`offline.classify.kfold_classify`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from l1ad.offline.classify import ClassifierConfig, KFoldResult, kfold_classify
from l1ad.offline.dijet import SIGNAL_REGION, DijetSample


class CWoLaConfig(BaseModel):
    """CWoLa for one m_JJ window: signal region vs sidebands `sideband_width` GeV wide on each side."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signal_region: tuple[float, float] = SIGNAL_REGION
    sideband_width: float | None = Field(200.0, gt=0, description="GeV on each side; None = everything outside the SR")
    classifier: ClassifierConfig = ClassifierConfig()


@dataclass
class CWoLaResult:
    """Out-of-fold scores of the signal-region and sideband events and the fold ensembles."""

    kfold: KFoldResult
    sr_index: np.ndarray  # indices into the input sample
    sb_index: np.ndarray

    @property
    def score_sr(self) -> np.ndarray:
        return self.kfold.score1

    @property
    def score_sb(self) -> np.ndarray:
        return self.kfold.score0

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.kfold.predict(X)

    def scores_for(self, n: int) -> np.ndarray:
        """Scores of all `n` events of the input sample (NaN outside SR and sidebands)."""
        out = np.full(n, np.nan)
        out[self.sr_index] = self.score_sr
        out[self.sb_index] = self.score_sb
        return out


def window_masks(mjj: np.ndarray, signal_region: tuple[float, float], sideband_width: float | None) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = signal_region
    sr = (mjj >= lo) & (mjj < hi)
    sb = ~sr
    if sideband_width is not None:
        sb &= (mjj >= lo - sideband_width) & (mjj < hi + sideband_width)
    return sr, sb


def train_cwola(sample: DijetSample, cfg: CWoLaConfig = CWoLaConfig()) -> CWoLaResult:
    """Train signal region (label 1) vs sidebands (label 0) on the dijet features."""
    sr, sb = window_masks(sample.mjj, cfg.signal_region, cfg.sideband_width)
    X = sample.features
    res = kfold_classify(X[sb], X[sr], cfg.classifier, w0=sample.weight[sb], w1=sample.weight[sr])
    return CWoLaResult(res, np.flatnonzero(sr), np.flatnonzero(sb))


def train_two_samples(X_data: np.ndarray, X_template: np.ndarray, cfg: ClassifierConfig = ClassifierConfig(), *,
                      w_data: np.ndarray | None = None, w_template: np.ndarray | None = None) -> KFoldResult:
    """Data (label 1) vs a background template (label 0): score1 are the data's out-of-fold scores."""
    return kfold_classify(X_template, X_data, cfg, w0=w_template, w1=w_data)
