"""The event batch: L1 trigger objects, weights, process labels and offline-level quantities.

Layout of the 19 L1 objects (the CMS Global Trigger anomaly-detection input, as in ADC2021):
row 0 MET, rows 1-4 e/gamma, rows 5-8 muons, rows 9-18 jets. Each row holds (pT [GeV], eta, phi [rad]);
absent objects are zero rows. Objects of one type are sorted by decreasing pT.

Optionally every event also carries a calorimeter-region image (`EventBatch.calo`, (N, 18, 14) uint16: phi x eta
regions, E_T in 0.5 GeV codes saturated at 1023; see trigger.calo), the CICADA-style trigger's input; None when the
source has none.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Iterable, Mapping

import numpy as np

from . import calo as _calo
from .errors import UserInputError

N_OBJECTS = 19
N_FEATURES = 3  # pT, eta, phi
N_INPUTS = N_OBJECTS * N_FEATURES  # 57

#: (type name, ADC2021 class code, first row, number of rows)
OBJECT_SLOTS: tuple[tuple[str, int, int, int], ...] = (
    ("MET", 1, 0, 1),
    ("EGamma", 2, 1, 4),
    ("Muon", 3, 5, 4),
    ("Jet", 4, 9, 10),
)
#: ADC2021 class code per row (0 marks an empty slot in the files; the row position defines the type here)
ROW_CLASS = np.array([c for _, c, _, n in OBJECT_SLOTS for _ in range(n)], dtype=np.int32)
PARTICLE_NAMES = ("Pt", "Eta", "Phi", "Class")
CLASS_NAMES = ("None", "MET", "EGamma", "Muon", "Jet")

#: offline-level quantities carried next to the L1 objects. 0.0 means "not defined for this event"
#: (e.g. m_jj with fewer than two jets); every defined value is > 0 except tau ratios, which lie in [0, 1].
OFFLINE_FIELDS = (
    "mjj",  # invariant mass of the two leading anti-kt R=0.4 jets [GeV]
    "mJ1",  # mass of the leading large-R (R=1.0) jet [GeV]
    "mJ2",  # mass of the sub-leading large-R jet [GeV]
    "tau21_J1",
    "tau21_J2",
    "tau32_J1",
    "tau32_J2",
    "ptJ1",  # pT of the leading large-R jet [GeV]
    "mJJ",  # invariant mass of the two leading large-R jets [GeV] (the LHCO resonance variable)
)


class EventDataError(UserInputError):
    """Bad event data: names the source (file) and the field that is wrong."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        where = " ".join(p for p in (f"{source}:" if source else "", f"field '{field}':" if field else "") if p)
        super().__init__(f"{where} {message}".strip())
        self.source = source
        self.field = field


INT16_RANGE = (int(np.iinfo(np.int16).min), int(np.iinfo(np.int16).max))


def _real(values, field: str, source: str | None, dtype=np.float64) -> np.ndarray:
    """`values` as a real array of `dtype`; complex, string or object input is refused (it would be cast silently)."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiub":
        raise EventDataError(f"dtype {arr.dtype} is not allowed; expected real numbers", source=source, field=field)
    return arr.astype(dtype, copy=False)


def _int16(values, field: str, source: str | None) -> np.ndarray:
    """Integer codes stored as int16: values that are not integers or lie outside int16 are refused (a plain cast
    would wrap 70000 to 4464)."""
    arr = _real(values, field, source)
    if arr.size:
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise EventDataError("values must be integers", source=source, field=field)
        lo, hi = arr.min(), arr.max()
        if lo < INT16_RANGE[0] or hi > INT16_RANGE[1]:
            bad = hi if hi > INT16_RANGE[1] else lo
            raise EventDataError(f"value {bad:.0f} is outside the representable range [{INT16_RANGE[0]}, "
                                 f"{INT16_RANGE[1]}] (stored as int16)", source=source, field=field)
    return arr.astype(np.int16)


def calo_codes(values, source: str | None = None, field: str = "calo") -> np.ndarray:
    """Calorimeter-region images as uint16 codes: shape (N, 18, 14), integers in [0, ET_MAX], else an
    EventDataError naming `source` and `field`."""
    arr = _real(values, field, source)
    shape = (_calo.N_PHI, _calo.N_ETA)
    if arr.ndim != 3 or arr.shape[1:] != shape:
        raise EventDataError(f"expected shape (N, {shape[0]}, {shape[1]}) (phi x eta regions), got {arr.shape}",
                             source=source, field=field)
    if arr.size:
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise EventDataError("region E_T codes must be integers (units of 0.5 GeV)", source=source, field=field)
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi > _calo.ET_MAX:
            raise EventDataError(f"region E_T code {lo if lo < 0 else hi:.0f} is outside [0, {_calo.ET_MAX}] (10 bits, "
                                 f"{_calo.ET_LSB} GeV per code)", source=source, field=field)
    return arr.astype(np.uint16)


def slot_rows(name: str) -> slice:
    """Rows of the (19, 3) object array that hold objects of type `name` (MET, EGamma, Muon, Jet)."""
    for n, _, first, count in OBJECT_SLOTS:
        if n == name:
            return slice(first, first + count)
    raise KeyError(f"unknown L1 object type {name!r}; known: {[s[0] for s in OBJECT_SLOTS]}")


@dataclass(frozen=True)
class EventBatch:
    """N events: L1 objects (N, 19, 3) float32, weights (N,), integer process codes (N,) with their names,
    pile-up multiplicity (N,), offline quantities (dict of (N,) float32 arrays, keys OFFLINE_FIELDS) and
    optionally calorimeter-region images `calo` (N, 18, 14) uint16 (trigger.calo; None when absent)."""

    objects: np.ndarray
    weight: np.ndarray
    process: np.ndarray
    process_names: tuple[str, ...]
    npu: np.ndarray
    offline: Mapping[str, np.ndarray] = field(default_factory=dict)
    calo: np.ndarray | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        objects: np.ndarray,
        *,
        weight: np.ndarray | None = None,
        process: np.ndarray | str | None = None,
        process_names: Iterable[str] = ("unknown",),
        npu: np.ndarray | None = None,
        offline: Mapping[str, np.ndarray] | None = None,
        calo: np.ndarray | None = None,
        source: str | None = None,
        allow_negative_weights: bool = False,
    ) -> "EventBatch":
        """Validated construction; missing weights default to 1, a string `process` labels every event;
        `calo`: optional (N, 18, 14) region-E_T codes (integers in [0, 1023]), stored as uint16."""
        objects = _real(objects, "objects", source, np.float32)
        n = objects.shape[0] if objects.ndim >= 1 else 0
        names = tuple(process_names)
        if isinstance(process, str):
            names = (process,)
            process = np.zeros(n, dtype=np.int16)
        batch = cls(
            objects=objects,
            weight=np.ones(n) if weight is None else _real(weight, "weight", source),
            process=np.zeros(n, dtype=np.int16) if process is None else _int16(process, "process", source),
            process_names=names,
            npu=np.zeros(n, dtype=np.int16) if npu is None else _int16(npu, "npu", source),
            offline={k: _real(v, k, source, np.float32) for k, v in (offline or {}).items()},
            calo=None if calo is None else calo_codes(calo, source),
        )
        batch.validate(source=source, allow_negative_weights=allow_negative_weights)
        return batch

    def validate(self, *, source: str | None = None, allow_negative_weights: bool = False) -> None:
        """Raise EventDataError naming the field on wrong shapes, NaN/inf, or negative weights/pT."""
        o = self.objects
        if o.ndim != 3 or o.shape[1:] != (N_OBJECTS, N_FEATURES):
            raise EventDataError(f"expected shape (N, {N_OBJECTS}, {N_FEATURES}), got {o.shape}", source=source, field="objects")
        n = o.shape[0]
        if not np.isfinite(o).all():
            bad = int((~np.isfinite(o)).any(axis=(1, 2)).sum())
            raise EventDataError(f"{bad} event(s) contain NaN or inf", source=source, field="objects")
        if (o[:, :, 0] < 0).any():
            raise EventDataError("negative pT", source=source, field="objects")
        for name, arr in (("weight", self.weight), ("process", self.process), ("npu", self.npu)):
            if arr.shape != (n,):
                raise EventDataError(f"expected shape ({n},), got {arr.shape}", source=source, field=name)
        if n and self.npu.min() < 0:
            raise EventDataError(f"pile-up multiplicity must be >= 0, got {int(self.npu.min())}", source=source, field="npu")
        if not np.isfinite(self.weight).all():
            raise EventDataError("NaN or inf weight", source=source, field="weight")
        if not allow_negative_weights and (self.weight < 0).any():
            raise EventDataError(
                f"{int((self.weight < 0).sum())} negative weight(s), not allowed here (NLO generator weights can be "
                "negative: `l1ad data info` and `data plot` accept them with --allow-negative-weights)",
                source=source, field="weight",
            )
        if n and (self.process.min() < 0 or self.process.max() >= len(self.process_names)):
            raise EventDataError(
                f"process codes must lie in [0, {len(self.process_names)}), got [{self.process.min()}, {self.process.max()}]",
                source=source, field="process",
            )
        for k, v in self.offline.items():
            if k not in OFFLINE_FIELDS:
                raise EventDataError(f"unknown offline field; allowed: {OFFLINE_FIELDS}", source=source, field=k)
            if v.shape != (n,):
                raise EventDataError(f"expected shape ({n},), got {v.shape}", source=source, field=k)
            if not np.isfinite(v).all():
                raise EventDataError("NaN or inf values", source=source, field=k)
        if self.calo is not None:
            c = self.calo
            shape = (n, _calo.N_PHI, _calo.N_ETA)
            if not isinstance(c, np.ndarray) or c.dtype != np.uint16:
                raise EventDataError(f"must be a uint16 array, got {getattr(c, 'dtype', type(c).__name__)} (EventBatch.build "
                                     "converts integer codes)", source=source, field="calo")
            if c.shape != shape:
                raise EventDataError(f"expected shape {shape} (events x phi x eta regions), got {c.shape}",
                                     source=source, field="calo")
            if c.size and int(c.max()) > _calo.ET_MAX:
                raise EventDataError(f"region E_T code {int(c.max())} exceeds the 10-bit maximum {_calo.ET_MAX}",
                                     source=source, field="calo")

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return int(self.objects.shape[0])

    @property
    def n(self) -> int:
        return len(self)

    def l1_inputs(self) -> np.ndarray:
        """The (N, 57) float32 model input: objects flattened row-major as (pT, eta, phi) per object."""
        return self.objects.reshape(len(self), N_INPUTS)

    def present(self) -> np.ndarray:
        """(N, 19) bool: which object slots are filled (pT > 0)."""
        return self.objects[:, :, 0] > 0

    def input_mask(self) -> np.ndarray:
        """(N, 57) bool: features of filled slots; zero-padded objects are excluded from reconstruction losses."""
        return np.repeat(self.present(), N_FEATURES, axis=1)

    def multiplicity(self, name: str) -> np.ndarray:
        """Number of objects of a type per event."""
        return self.present()[:, slot_rows(name)].sum(axis=1)

    def process_mask(self, name: str) -> np.ndarray:
        """Events of the named process."""
        if name not in self.process_names:
            raise KeyError(f"unknown process {name!r}; present: {self.process_names}")
        return self.process == self.process_names.index(name)

    def select(self, mask_or_index: np.ndarray | slice) -> "EventBatch":
        """A sub-batch (boolean mask, index array or slice)."""
        s = mask_or_index
        return replace(
            self,
            objects=self.objects[s], weight=self.weight[s], process=self.process[s], npu=self.npu[s],
            offline={k: v[s] for k, v in self.offline.items()},
            calo=None if self.calo is None else self.calo[s],
        )

    @property
    def has_calo(self) -> bool:
        """True when the batch carries calorimeter-region images."""
        return self.calo is not None

    def with_calo(self, calo: np.ndarray | None) -> "EventBatch":
        """A copy with these calorimeter-region images (validated; None removes them)."""
        out = replace(self, calo=None if calo is None else calo_codes(calo, None))
        out.validate(allow_negative_weights=True)
        return out

    def with_weight(self, weight: np.ndarray) -> "EventBatch":
        """A copy with new weights (validated)."""
        out = replace(self, weight=np.asarray(weight, dtype=np.float64))
        out.validate()
        return out

    @staticmethod
    def concat(batches: Iterable["EventBatch"]) -> "EventBatch":
        """Concatenate batches, merging their process name tables. Offline fields and calorimeter images are kept
        if all batches have them."""
        batches = list(batches)
        if not batches:
            raise ValueError("concat of no batches")
        names: list[str] = []
        codes = []
        for b in batches:
            remap = np.array([names.index(p) if p in names else (names.append(p) or len(names) - 1) for p in b.process_names], dtype=np.int16)
            codes.append(remap[b.process] if len(b) else b.process)
        keys = set.intersection(*(set(b.offline) for b in batches))
        return EventBatch(
            objects=np.concatenate([b.objects for b in batches]),
            weight=np.concatenate([b.weight for b in batches]),
            process=np.concatenate(codes).astype(np.int16),
            process_names=tuple(names),
            npu=np.concatenate([b.npu for b in batches]),
            offline={k: np.concatenate([b.offline[k] for b in batches]) for k in sorted(keys)},
            calo=np.concatenate([b.calo for b in batches]) if all(b.calo is not None for b in batches) else None,
        )

    def summary(self) -> dict:
        """Event count, weight sum, per-process counts and mean object multiplicities."""
        out = {
            "n_events": len(self),
            "weight_sum": float(self.weight.sum()),
            "processes": {p: int((self.process == i).sum()) for i, p in enumerate(self.process_names)},
            "mean_multiplicity": {s[0]: float(self.multiplicity(s[0]).mean()) if len(self) else 0.0 for s in OBJECT_SLOTS},
        }
        return out

    def __eq__(self, other: object) -> bool:  # arrays make the dataclass default unusable
        if not isinstance(other, EventBatch):
            return NotImplemented
        return (
            self.process_names == other.process_names
            and all(np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)
                    if f.name not in ("process_names", "offline", "calo"))
            and (self.calo is None) == (other.calo is None)
            and (self.calo is None or np.array_equal(self.calo, other.calo))
            and set(self.offline) == set(other.offline)
            and all(np.array_equal(self.offline[k], other.offline[k]) for k in self.offline)
        )

    __hash__ = None  # type: ignore[assignment]
