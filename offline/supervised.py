"""Upper references for weakly supervised anomaly detection in the signal region.

* `idealised`: the idealised anomaly detector: SR data vs a perfect background template (independent
  background events from the same distribution, as many as CATHODE would generate). It is CWoLa with
  background purity 1 in the reference sample, i.e. the best a background-template method can reach.
* `supervised`: the fully supervised classifier, labelled signal vs labelled background; it knows the signal
  and bounds every model-agnostic method from above.
"""
from __future__ import annotations

import numpy as np

from l1ad.offline.classify import ClassifierConfig, Ensemble, KFoldResult, fit_ensemble
from l1ad.offline.cwola import train_two_samples


def idealised(X_data_sr: np.ndarray, X_template: np.ndarray, cfg: ClassifierConfig = ClassifierConfig()) -> KFoldResult:
    """SR data (label 1) vs a perfect background template (label 0), k-fold; `predict` scores new events."""
    return train_two_samples(X_data_sr, X_template, cfg)


def supervised(X_sig: np.ndarray, X_bkg: np.ndarray, cfg: ClassifierConfig = ClassifierConfig()) -> Ensemble:
    """Labelled signal (1) vs background (0); evaluate on an independent test set with `.predict`."""
    X = np.concatenate([X_bkg, X_sig])
    y = np.concatenate([np.zeros(len(X_bkg), np.int64), np.ones(len(X_sig), np.int64)])
    return fit_ensemble(X, y, cfg)
