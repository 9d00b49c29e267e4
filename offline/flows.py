"""Conditional normalising flows p(x | m) with zuko on PyTorch (CPU), for CATHODE-style background modelling.

Preprocessing follows CATHODE (2109.00546): each feature is scaled to (0, 1) with the training sample's
range (padded by a margin), mapped through a logit so the flow works on an unbounded space, and standardised.
Generated samples are mapped back through the inverse, so they respect the physical range of the features
(masses >= 0, 0 <= tau21 <= 1). The conditioning variable is standardised.

Training keeps the `keep_best` model states with the lowest validation loss; sampling draws equally from
them (the CATHODE "ensemble of the best epochs"), which smooths out epoch-to-epoch fluctuations.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from offline._threads import DEFAULT_THREADS, limited_threads


class FlowConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["maf", "nsf"] = "maf"
    transforms: int = Field(6, ge=1)
    hidden: tuple[int, ...] = (64, 64)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(512, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-6, ge=0)
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    keep_best: int = Field(5, ge=1)
    patience: int = Field(8, ge=1)
    margin: float = Field(0.02, ge=0, description="relative padding of the (0, 1) scaling range")
    seed: int = 0
    n_threads: int = Field(DEFAULT_THREADS, ge=1)


@dataclass
class _Prep:
    lo: np.ndarray
    hi: np.ndarray
    mu: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sd: np.ndarray = field(default_factory=lambda: np.ones(0))
    c_mu: np.ndarray = field(default_factory=lambda: np.zeros(0))
    c_sd: np.ndarray = field(default_factory=lambda: np.ones(0))

    def _logit(self, x: np.ndarray) -> np.ndarray:
        u = np.clip((x - self.lo) / (self.hi - self.lo), 1e-6, 1 - 1e-6)
        return np.log(u) - np.log1p(-u)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return (self._logit(x) - self.mu) / self.sd

    def inverse(self, z: np.ndarray) -> np.ndarray:
        y = z * self.sd + self.mu
        return self.lo + (self.hi - self.lo) / (1.0 + np.exp(-y))

    def cond(self, c: np.ndarray) -> np.ndarray:
        return (c - self.c_mu) / self.c_sd


def _as2d(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    return c[:, None] if c.ndim == 1 else c


class ConditionalFlow:
    """p(x | c): fit on (x, c) pairs, sample x for given c, log_prob of (x, c)."""

    def __init__(self, cfg: FlowConfig = FlowConfig()):
        self.cfg = cfg
        self.states: list[dict] = []
        self.history: list[tuple[float, float]] = []  # (train, validation) loss per epoch

    def _build(self, d: int, dc: int):
        import zuko

        cfg = self.cfg
        if cfg.kind == "maf":
            return zuko.flows.MAF(d, dc, transforms=cfg.transforms, hidden_features=cfg.hidden, randperm=False)
        return zuko.flows.NSF(d, dc, transforms=cfg.transforms, hidden_features=cfg.hidden)

    def fit(self, x: np.ndarray, c: np.ndarray) -> "ConditionalFlow":
        import torch

        cfg = self.cfg
        x = np.asarray(x, dtype=np.float64)
        c = _as2d(c)
        rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        lo, hi = x.min(axis=0), x.max(axis=0)
        pad = cfg.margin * (hi - lo) + 1e-9
        self.prep = _Prep(lo - pad, hi + pad)
        z = self.prep._logit(x)
        self.prep.mu, self.prep.sd = z.mean(axis=0), z.std(axis=0) + 1e-12
        self.prep.c_mu, self.prep.c_sd = c.mean(axis=0), c.std(axis=0) + 1e-12
        Z = torch.from_numpy(self.prep.forward(x).astype(np.float32))
        C = torch.from_numpy(self.prep.cond(c).astype(np.float32))
        idx = rng.permutation(len(Z))
        n_val = max(1, int(round(cfg.validation_fraction * len(Z))))
        va, tr = torch.from_numpy(idx[:n_val]), idx[n_val:]
        with limited_threads(cfg.n_threads):
            self.flow = self._build(Z.shape[1], C.shape[1])
            opt = torch.optim.AdamW(self.flow.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
            best: list[tuple[float, int, dict]] = []
            bad, best_val = 0, np.inf
            for epoch in range(cfg.epochs):
                self.flow.train()
                perm = rng.permutation(tr)
                tot, nb = 0.0, 0
                for s in range(0, len(perm), cfg.batch_size):
                    b = torch.from_numpy(perm[s : s + cfg.batch_size])
                    loss = -self.flow(C[b]).log_prob(Z[b]).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    tot += float(loss.detach()) * len(b)
                    nb += len(b)
                sched.step()
                self.flow.eval()
                with torch.no_grad():
                    v = float(-self.flow(C[va]).log_prob(Z[va]).mean())
                self.history.append((tot / max(nb, 1), v))
                if np.isfinite(v):
                    best.append((v, epoch, copy.deepcopy(self.flow.state_dict())))
                    best.sort(key=lambda t: t[0])
                    del best[cfg.keep_best :]
                if v < best_val - 1e-4:
                    best_val, bad = v, 0
                else:
                    bad += 1
                    if bad >= cfg.patience:
                        break
        if not best:
            raise RuntimeError("flow training diverged: no finite validation loss")
        self.states = [s for _, _, s in best]
        self.best_epochs = [e for _, e, _ in best]
        return self

    def sample(self, c: np.ndarray, seed: int | None = None) -> np.ndarray:
        """One x per row of c, drawn from the kept model states in equal shares."""
        import torch

        c = _as2d(c)
        C = torch.from_numpy(self.prep.cond(c).astype(np.float32))
        torch.manual_seed(self.cfg.seed + 1 if seed is None else seed)
        parts = np.array_split(np.arange(len(C)), len(self.states))
        out = np.empty((len(C), len(self.prep.lo)))
        with limited_threads(self.cfg.n_threads), torch.no_grad():
            for state, part in zip(self.states, parts):
                if part.size == 0:
                    continue
                self.flow.load_state_dict(state)
                z = self.flow(C[torch.from_numpy(part)]).sample().numpy().astype(np.float64)
                out[part] = self.prep.inverse(z)
        return out

    def log_prob(self, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Mean over the kept states of log p(z | c) in the preprocessed space (for monitoring, not a density in x)."""
        import torch

        Z = torch.from_numpy(self.prep.forward(np.asarray(x, dtype=np.float64)).astype(np.float32))
        C = torch.from_numpy(self.prep.cond(_as2d(c)).astype(np.float32))
        out = []
        with limited_threads(self.cfg.n_threads), torch.no_grad():
            for state in self.states:
                self.flow.load_state_dict(state)
                out.append(self.flow(C).log_prob(Z).numpy())
        return np.mean(out, axis=0)
