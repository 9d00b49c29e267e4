"""Binary classifiers for weak supervision: BDT ensembles (scikit-learn HistGradientBoosting) and small
neural networks (torch), trained with k-fold cross-fitting so that no event is scored by a model that saw it.

Every weakly supervised method here (CWoLa, CWoLa hunting, CATHODE, Tag N' Train, the idealised detector)
reduces to "label-0 sample vs label-1 sample"; `kfold_classify` does that and returns

* out-of-fold scores for every training event (each event scored by the ensemble trained on the other folds),
* a `predict` that averages all fold models, for events that were never in any training set.

Classes are reweighted to equal total weight by default: mixed samples in CWoLa differ in size by factors of
a few and the optimal classifier between two mixtures is monotonic in the likelihood ratio whatever the
class prior (the CWoLa theorem, see the seed slides), so balancing changes calibration, not ranking.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from l1ad.offline._threads import DEFAULT_THREADS, limited_threads


class ClassifierConfig(BaseModel):
    """A classifier ensemble: `kind` bdt (HistGradientBoosting) or nn (torch MLP)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["bdt", "nn"] = "bdt"
    n_folds: int = Field(5, ge=2)
    n_ensemble: int = Field(3, ge=1, description="models per fold, differing in seed (and validation split)")
    balance: bool = True
    seed: int = 0
    n_threads: int = Field(DEFAULT_THREADS, ge=1)
    # BDT
    max_iter: int = Field(200, ge=1)
    learning_rate: float = Field(0.1, gt=0)
    max_leaf_nodes: int = Field(31, ge=2)
    min_samples_leaf: int = Field(20, ge=1)
    l2_regularization: float = Field(0.0, ge=0)
    max_bins: int = Field(255, ge=2, le=255)
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    n_iter_no_change: int = Field(10, ge=1)
    # NN
    hidden: tuple[int, ...] = (64, 64, 64)
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(512, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    patience: int = Field(6, ge=1)


# ---------------------------------------------------------------------- single models
class _BDT:
    def __init__(self, cfg: ClassifierConfig, seed: int):
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.model = HistGradientBoostingClassifier(
            max_iter=cfg.max_iter, learning_rate=cfg.learning_rate, max_leaf_nodes=cfg.max_leaf_nodes,
            min_samples_leaf=cfg.min_samples_leaf, l2_regularization=cfg.l2_regularization, max_bins=cfg.max_bins,
            early_stopping=True, validation_fraction=cfg.validation_fraction, n_iter_no_change=cfg.n_iter_no_change,
            random_state=seed,
        )

    def fit(self, X: np.ndarray, y: np.ndarray, w: np.ndarray) -> "_BDT":
        # bin the features here (weighted quantiles, vectorised) and hand the BDT the bin codes: scikit-learn
        # >= 1.6 bins weighted samples with a Python loop of weighted percentiles (~1 s of a 1.2 s fit on 20k
        # events); with at most max_bins distinct codes it takes them as they are, so the trees are the same
        self.thresholds = _bin_thresholds(X, w, self.model.max_bins)
        self.model.fit(_bin_codes(X, self.thresholds), y, sample_weight=w)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(_bin_codes(X, self.thresholds))[:, 1]


def _bin_thresholds(X: np.ndarray, w: np.ndarray, max_bins: int) -> list[np.ndarray]:
    """Per feature: midpoints of the distinct values if there are at most max_bins, else the weighted
    quantiles at 1/max_bins ... (max_bins - 1)/max_bins (at most max_bins - 1 thresholds)."""
    out = []
    w = np.asarray(w, dtype=np.float64)
    for j in range(X.shape[1]):
        o = np.argsort(X[:, j], kind="stable")
        x, ww = X[o, j], w[o]
        u = np.unique(x)
        if len(u) <= max_bins:
            out.append(0.5 * (u[:-1] + u[1:]))
            continue
        cw = np.cumsum(ww)
        q = np.linspace(0.0, 1.0, max_bins + 1)[1:-1] * cw[-1]
        thr = x[np.minimum(np.searchsorted(cw, q), len(x) - 1)]
        out.append(np.unique(thr[thr < u[-1]]))
    return out


def _bin_codes(X: np.ndarray, thresholds: list[np.ndarray]) -> np.ndarray:
    """Bin index of every value: i iff thr[i-1] < x <= thr[i] (scikit-learn's convention)."""
    X = np.asarray(X, dtype=np.float64)
    return np.column_stack([np.searchsorted(t, X[:, j], side="left") for j, t in enumerate(thresholds)]).astype(np.float64)


class _MLP:
    """Fully connected ReLU network, weighted BCE, Adam, early stopping on a held-out split."""

    def __init__(self, cfg: ClassifierConfig, seed: int):
        self.cfg = cfg
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray, w: np.ndarray) -> "_MLP":
        import torch

        cfg = self.cfg
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        self.mu = X.mean(axis=0)
        self.sd = X.std(axis=0) + 1e-12
        Z = ((X - self.mu) / self.sd).astype(np.float32)
        idx = rng.permutation(len(Z))
        n_val = max(1, int(round(cfg.validation_fraction * len(Z))))
        va, tr = idx[:n_val], idx[n_val:]
        layers: list[torch.nn.Module] = []
        width = Z.shape[1]
        for h in cfg.hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
            width = h
        layers.append(torch.nn.Linear(width, 1))
        net = torch.nn.Sequential(*layers)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        Xt, yt, wt = torch.from_numpy(Z), torch.from_numpy(y.astype(np.float32)), torch.from_numpy((w / w.mean()).astype(np.float32))
        lossf = torch.nn.BCEWithLogitsLoss(reduction="none")

        def val_loss() -> float:
            with torch.no_grad():
                return float((lossf(net(Xt[va]).squeeze(1), yt[va]) * wt[va]).sum() / wt[va].sum())

        best, best_state, bad = np.inf, None, 0
        for _ in range(cfg.epochs):
            net.train()
            perm = torch.from_numpy(rng.permutation(tr))
            for s in range(0, len(perm), cfg.batch_size):
                b = perm[s : s + cfg.batch_size]
                loss = (lossf(net(Xt[b]).squeeze(1), yt[b]) * wt[b]).sum() / wt[b].sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            net.eval()
            v = val_loss()
            if v < best - 1e-6:
                best, bad = v, 0
                best_state = {k: t.clone() for k, t in net.state_dict().items()}
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        self.net = net.eval()
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        import torch

        Z = torch.from_numpy(((X - self.mu) / self.sd).astype(np.float32))
        with torch.no_grad():
            return torch.sigmoid(self.net(Z).squeeze(1)).numpy().astype(np.float64)


def _make(cfg: ClassifierConfig, seed: int):
    return _BDT(cfg, seed) if cfg.kind == "bdt" else _MLP(cfg, seed)


def _balanced_weights(y: np.ndarray, w: np.ndarray, balance: bool) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64).copy()
    if balance:
        for c in (0, 1):
            m = y == c
            s = w[m].sum()
            if s > 0:
                w[m] *= 0.5 * len(w) / s
    return w


@dataclass
class Ensemble:
    """Models whose predicted probabilities are averaged."""

    models: list = field(default_factory=list)

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return np.mean([m.predict(X) for m in self.models], axis=0)


def fit_ensemble(X: np.ndarray, y: np.ndarray, cfg: ClassifierConfig, w: np.ndarray | None = None, seed: int | None = None) -> Ensemble:
    """Train cfg.n_ensemble models on all of (X, y) (no cross-fitting; for a separate test set)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    wb = _balanced_weights(y, np.ones(len(y)) if w is None else w, cfg.balance)
    base = cfg.seed if seed is None else seed
    with limited_threads(cfg.n_threads):
        return Ensemble([_make(cfg, base + 7919 * e).fit(X, y, wb) for e in range(cfg.n_ensemble)])


@dataclass
class KFoldResult:
    """Out-of-fold scores of both training samples and the fold ensembles."""

    score0: np.ndarray
    score1: np.ndarray
    folds: list[Ensemble]
    fold0: np.ndarray  # fold index of each label-0 event
    fold1: np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Score events that were in no training set: the mean over all fold ensembles."""
        return np.mean([f.predict(X) for f in self.folds], axis=0)


def fold_indices(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A balanced random fold assignment 0..k-1 for n events."""
    f = np.arange(n) % k
    rng.shuffle(f)
    return f


def kfold_classify(X0: np.ndarray, X1: np.ndarray, cfg: ClassifierConfig = ClassifierConfig(), *,
                   w0: np.ndarray | None = None, w1: np.ndarray | None = None,
                   train_mask0: np.ndarray | None = None, train_mask1: np.ndarray | None = None) -> KFoldResult:
    """Train `cfg.n_folds` ensembles of label-0 (`X0`) vs label-1 (`X1`) with k-fold cross-fitting.

    Event i of fold k is scored by the ensemble trained on the other k-1 folds. `train_mask0/1` exclude
    events from training (they are still scored out of fold); e.g. CWoLa hunting trains on a window but scores
    the wider range with the same fold models.
    """
    X0 = np.asarray(X0, dtype=np.float64)
    X1 = np.asarray(X1, dtype=np.float64)
    if X0.ndim != 2 or X1.ndim != 2 or X0.shape[1] != X1.shape[1]:
        raise ValueError(f"X0 and X1 must be 2-D with equal feature counts, got {X0.shape} and {X1.shape}")
    if len(X0) < cfg.n_folds or len(X1) < cfg.n_folds:
        raise ValueError(f"need at least n_folds={cfg.n_folds} events per class, got {len(X0)} and {len(X1)}")
    rng = np.random.default_rng(cfg.seed)
    f0, f1 = fold_indices(len(X0), cfg.n_folds, rng), fold_indices(len(X1), cfg.n_folds, rng)
    t0 = np.ones(len(X0), bool) if train_mask0 is None else np.asarray(train_mask0, bool)
    t1 = np.ones(len(X1), bool) if train_mask1 is None else np.asarray(train_mask1, bool)
    w0 = np.ones(len(X0)) if w0 is None else np.asarray(w0, dtype=np.float64)
    w1 = np.ones(len(X1)) if w1 is None else np.asarray(w1, dtype=np.float64)
    s0, s1 = np.empty(len(X0)), np.empty(len(X1))
    folds = []
    for k in range(cfg.n_folds):
        a, b = (f0 != k) & t0, (f1 != k) & t1
        X = np.concatenate([X0[a], X1[b]])
        y = np.concatenate([np.zeros(a.sum(), np.int64), np.ones(b.sum(), np.int64)])
        w = np.concatenate([w0[a], w1[b]])
        ens = fit_ensemble(X, y, cfg, w, seed=cfg.seed + 1000 * (k + 1))
        folds.append(ens)
        s0[f0 == k] = ens.predict(X0[f0 == k])
        s1[f1 == k] = ens.predict(X1[f1 == k])
    return KFoldResult(s0, s1, folds, f0, f1)


def configs_for(kinds: Sequence[str], base: ClassifierConfig) -> dict[str, ClassifierConfig]:
    """The same settings with `kind` swapped, e.g. for a BDT-vs-NN comparison."""
    return {k: base.model_copy(update={"kind": k}) for k in kinds}
