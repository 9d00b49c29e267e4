"""Tag N' Train (Amram & Suarez, 2002.12376): purify the CWoLa mixed samples with an autoencoder tag.

A dijet event has two jets. An autoencoder trained on jets of one kind (here: the lighter and the heavier
jet, each described by (log m_J, tau21)) gives every jet an outlier score, its reconstruction error. For the
classifier of jet j, the *other* jet k tags the event:

* signal-rich sample: signal-region events whose jet k is among the `tag_fraction` most anomalous;
* background-rich sample: sideband events whose jet k is not (or all sideband events, `purify_background=False`).

Because the two jets of a QCD event are nearly independent given m_JJ, the tag raises the signal fraction of
the first sample without biasing jet j's background distribution, so the CWoLa classifier on jet j's
features trains at a higher effective S/B. The event score combines both jets' classifiers (sum of log-odds).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from l1ad.offline._threads import DEFAULT_THREADS, limited_threads
from l1ad.offline.classify import ClassifierConfig, KFoldResult, kfold_classify
from l1ad.offline.cwola import window_masks
from l1ad.offline.dijet import SIGNAL_REGION, DijetSample


class AEConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: tuple[int, ...] = (16, 16)
    latent: int = Field(1, ge=1)
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(1024, ge=1)
    lr: float = Field(3e-3, gt=0)
    seed: int = 0
    n_threads: int = Field(DEFAULT_THREADS, ge=1)


class TNTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    signal_region: tuple[float, float] = SIGNAL_REGION
    sideband_width: float | None = Field(200.0, gt=0)
    tag_fraction: float = Field(0.2, gt=0, lt=1, description="fraction of jets called anomalous by the AE tag")
    purify_background: bool = True
    autoencoder: AEConfig = AEConfig()
    classifier: ClassifierConfig = ClassifierConfig()


def jet_inputs(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-jet inputs (log m_J [TeV], tau21) of the lighter and the heavier jet from the dijet features."""
    X = np.asarray(X, dtype=np.float64)
    m_lo = np.clip(X[:, 0], 1e-4, None)
    m_hi = np.clip(X[:, 0] + X[:, 1], 1e-4, None)
    return np.column_stack([np.log(m_lo), X[:, 2]]), np.column_stack([np.log(m_hi), X[:, 3]])


class Autoencoder:
    """Dense autoencoder on standardised inputs; `score` is the per-event mean squared reconstruction error."""

    def __init__(self, cfg: AEConfig = AEConfig()):
        self.cfg = cfg

    def fit(self, X: np.ndarray) -> "Autoencoder":
        import torch

        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        self.mu, self.sd = X.mean(axis=0), X.std(axis=0) + 1e-12
        Z = torch.from_numpy(((X - self.mu) / self.sd).astype(np.float32))
        dims = [Z.shape[1], *cfg.hidden, cfg.latent, *reversed(cfg.hidden), Z.shape[1]]
        layers: list[torch.nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(torch.nn.ELU())
        self.net = torch.nn.Sequential(*layers)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        with limited_threads(cfg.n_threads):
            for _ in range(cfg.epochs):
                perm = torch.from_numpy(rng.permutation(len(Z)))
                for s in range(0, len(Z), cfg.batch_size):
                    b = Z[perm[s : s + cfg.batch_size]]
                    loss = ((self.net(b) - b) ** 2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        self.net.eval()
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        import torch

        Z = torch.from_numpy(((X - self.mu) / self.sd).astype(np.float32))
        with limited_threads(self.cfg.n_threads), torch.no_grad():
            return ((self.net(Z) - Z) ** 2).mean(dim=1).numpy().astype(np.float64)


@dataclass
class TNTResult:
    ae: tuple[Autoencoder, Autoencoder]  # (light jet, heavy jet)
    kfold: tuple[KFoldResult, KFoldResult]  # classifier of the light jet (tagged by the heavy one), and vice versa
    sr_index: np.ndarray
    sb_index: np.ndarray

    @staticmethod
    def _combine(p_lo: np.ndarray, p_hi: np.ndarray) -> np.ndarray:
        eps = 1e-7
        p_lo, p_hi = np.clip(p_lo, eps, 1 - eps), np.clip(p_hi, eps, 1 - eps)
        return np.log(p_lo / (1 - p_lo)) + np.log(p_hi / (1 - p_hi))

    @property
    def score_sr(self) -> np.ndarray:
        """Out-of-fold event scores of the SR events (sum of the two jets' log-odds)."""
        return self._combine(self.kfold[0].score1, self.kfold[1].score1)

    @property
    def score_sb(self) -> np.ndarray:
        return self._combine(self.kfold[0].score0, self.kfold[1].score0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        j_lo, j_hi = jet_inputs(X)
        return self._combine(self.kfold[0].predict(j_lo), self.kfold[1].predict(j_hi))


def train_tnt(sample: DijetSample, cfg: TNTConfig = TNTConfig()) -> TNTResult:
    sr, sb = window_masks(sample.mjj, cfg.signal_region, cfg.sideband_width)
    j_lo, j_hi = jet_inputs(sample.features)
    use = sr | sb
    ae_lo = Autoencoder(cfg.autoencoder).fit(j_lo[use])
    ae_hi = Autoencoder(cfg.autoencoder.model_copy(update={"seed": cfg.autoencoder.seed + 1})).fit(j_hi[use])
    a_lo, a_hi = ae_lo.score(j_lo), ae_hi.score(j_hi)
    results = []
    for jet, tag in ((j_lo, a_hi), (j_hi, a_lo)):
        cut = np.quantile(tag[use], 1.0 - cfg.tag_fraction)
        anomalous = tag >= cut
        train1 = anomalous[sr]
        train0 = ~anomalous[sb] if cfg.purify_background else np.ones(sb.sum(), bool)
        results.append(kfold_classify(jet[sb], jet[sr], cfg.classifier, w0=sample.weight[sb], w1=sample.weight[sr],
                                      train_mask0=train0, train_mask1=train1))
    return TNTResult((ae_lo, ae_hi), (results[0], results[1]), np.flatnonzero(sr), np.flatnonzero(sb))
