"""The LHCO-style dijet sample as the offline learning modules see it.

A `DijetSample` holds, per event, the resonance variable m_JJ (the invariant mass of the two leading large-R
jets, GeV), the two large-R jet masses and their N-subjettiness ratios tau21, a truth label (signal or not,
for evaluation only: no method reads it except the supervised reference) and a weight.

The classifier features are those of the LHCO R&D studies (CWoLa hunting, CATHODE):
``(m_J1, Delta m_J, tau21_J1, tau21_J2)`` with the jets ordered by mass, J1 the lighter one, masses in TeV,
``Delta m_J = m_J2 - m_J1 >= 0``. Ordering by mass (not pT) makes the features independent of which jet
happened to be harder.

`DijetSample.from_batch` reads a `trigger.events.EventBatch` (offline fields mJJ, mJ1, mJ2, tau21_J1,
tau21_J2); `to_batch` writes one (empty L1 object rows), so that the synthetic sample can flow through the
same files as the Pythia one.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Iterable, Sequence

import numpy as np

from l1ad.trigger.events import EventBatch, EventDataError, N_FEATURES, N_OBJECTS

FEATURE_NAMES = ("mJ1", "dmJ", "tau21_J1", "tau21_J2")
#: default LHCO R&D signal region in m_JJ (GeV)
SIGNAL_REGION = (3300.0, 3700.0)
#: offline fields a dijet EventBatch must carry
REQUIRED_FIELDS = ("mJJ", "mJ1", "mJ2", "tau21_J1", "tau21_J2")


def dijet_features(mJ1: np.ndarray, mJ2: np.ndarray, tau21_J1: np.ndarray, tau21_J2: np.ndarray) -> np.ndarray:
    """(N, 4) float64 features (m_J,light [TeV], m_J,heavy - m_J,light [TeV], tau21 light, tau21 heavy)."""
    mJ1 = np.asarray(mJ1, dtype=np.float64)
    mJ2 = np.asarray(mJ2, dtype=np.float64)
    t1 = np.asarray(tau21_J1, dtype=np.float64)
    t2 = np.asarray(tau21_J2, dtype=np.float64)
    swap = mJ2 < mJ1
    m_lo = np.where(swap, mJ2, mJ1)
    m_hi = np.where(swap, mJ1, mJ2)
    t_lo = np.where(swap, t2, t1)
    t_hi = np.where(swap, t1, t2)
    return np.column_stack([m_lo / 1000.0, (m_hi - m_lo) / 1000.0, t_lo, t_hi])


@dataclass(frozen=True)
class DijetSample:
    """N dijet events: m_JJ [GeV], jet masses [GeV] (J1 = leading in pT), tau21, truth label, weight."""

    mjj: np.ndarray
    mJ1: np.ndarray
    mJ2: np.ndarray
    tau21_J1: np.ndarray
    tau21_J2: np.ndarray
    is_signal: np.ndarray
    weight: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.mjj)
        for f in fields(self):
            a = getattr(self, f.name)
            if a.shape != (n,):
                raise EventDataError(f"expected shape ({n},), got {a.shape}", field=f.name)

    @classmethod
    def build(cls, mjj, mJ1, mJ2, tau21_J1, tau21_J2, is_signal=None, weight=None) -> "DijetSample":
        mjj = np.asarray(mjj, dtype=np.float64)
        n = len(mjj)
        s = cls(
            mjj=mjj,
            mJ1=np.asarray(mJ1, dtype=np.float64),
            mJ2=np.asarray(mJ2, dtype=np.float64),
            tau21_J1=np.asarray(tau21_J1, dtype=np.float64),
            tau21_J2=np.asarray(tau21_J2, dtype=np.float64),
            is_signal=np.zeros(n, bool) if is_signal is None else np.asarray(is_signal, dtype=bool),
            weight=np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64),
        )
        for f in fields(s):
            if f.name != "is_signal" and not np.isfinite(getattr(s, f.name)).all():
                raise EventDataError("NaN or inf values", field=f.name)
        return s

    def __len__(self) -> int:
        return int(self.mjj.shape[0])

    @property
    def features(self) -> np.ndarray:
        """(N, 4) classifier features, see `dijet_features`."""
        return dijet_features(self.mJ1, self.mJ2, self.tau21_J1, self.tau21_J2)

    @property
    def mjj_tev(self) -> np.ndarray:
        return self.mjj / 1000.0

    def select(self, mask_or_index) -> "DijetSample":
        return replace(self, **{f.name: getattr(self, f.name)[mask_or_index] for f in fields(self)})

    def in_window(self, lo: float, hi: float) -> np.ndarray:
        """Boolean mask lo <= m_JJ < hi (GeV)."""
        return (self.mjj >= lo) & (self.mjj < hi)

    def shuffled(self, rng: np.random.Generator) -> "DijetSample":
        return self.select(rng.permutation(len(self)))

    @property
    def n_signal(self) -> int:
        return int(self.is_signal.sum())

    @staticmethod
    def concat(samples: Iterable["DijetSample"]) -> "DijetSample":
        samples = list(samples)
        return DijetSample(**{f.name: np.concatenate([getattr(s, f.name) for s in samples]) for f in fields(DijetSample)})

    # ------------------------------------------------------------------ EventBatch bridge
    @classmethod
    def from_batch(cls, batch: EventBatch, *, signal_processes: Sequence[str] = ("signal",), source: str | None = None) -> "DijetSample":
        """Read the offline dijet fields of an EventBatch; events with m_JJ == 0 (undefined) are dropped.

        The truth label is `process in signal_processes` (names absent from the batch are ignored).
        """
        missing = [k for k in REQUIRED_FIELDS if k not in batch.offline]
        if missing:
            raise EventDataError(
                f"dijet offline fields missing: {missing}; have {sorted(batch.offline)}", source=source, field=missing[0]
            )
        sig_codes = [batch.process_names.index(p) for p in signal_processes if p in batch.process_names]
        ok = batch.offline["mJJ"] > 0
        o = {k: np.asarray(batch.offline[k], dtype=np.float64)[ok] for k in REQUIRED_FIELDS}
        return cls.build(
            o["mJJ"], o["mJ1"], o["mJ2"], o["tau21_J1"], o["tau21_J2"],
            is_signal=np.isin(batch.process[ok], sig_codes), weight=batch.weight[ok],
        )

    def to_batch(self) -> EventBatch:
        """An EventBatch with empty L1 objects, processes ('qcd', 'signal') and the dijet offline fields."""
        n = len(self)
        return EventBatch.build(
            np.zeros((n, N_OBJECTS, N_FEATURES), np.float32),
            weight=self.weight,
            process=self.is_signal.astype(np.int16),
            process_names=("qcd", "signal"),
            offline={"mJJ": self.mjj, "mJ1": self.mJ1, "mJ2": self.mJ2, "tau21_J1": self.tau21_J1, "tau21_J2": self.tau21_J2},
        )


def signal_region_mask(mjj: np.ndarray, sr: tuple[float, float] = SIGNAL_REGION) -> np.ndarray:
    return (mjj >= sr[0]) & (mjj < sr[1])


def sideband_mask(mjj: np.ndarray, sr: tuple[float, float] = SIGNAL_REGION, width: float | None = None) -> np.ndarray:
    """Events outside the signal region; with `width` only those within `width` GeV of it."""
    out = ~signal_region_mask(mjj, sr)
    if width is not None:
        out &= (mjj >= sr[0] - width) & (mjj < sr[1] + width)
    return out
