"""CICADA-style calorimeter anomaly trigger: a convolutional autoencoder teacher distilled into a quantized student.

Input: the (N, 18, 14) calorimeter-region images of trigger.calo (phi x eta, E_T codes of 0.5 GeV, 10 bits).

* Teacher (float, not deployed): a small convolutional autoencoder on t = log1p(code) / log(1024) (in [0, 1]);
  its anomaly score is the reconstruction mean squared error over the 252 regions (`teacher_score`).
* Student (quantized, deployed): sees the raw region codes scaled by a power of two, code * 2**-input_shift (a wire
  shift on the chip: `CaloInputScale`), and regresses the teacher's score on a log scale,
      target = (ln(teacher MSE) - target_mean) / target_std
  with the mean and standard deviation of the (weighted) zero-bias training split. Its single output, after the
  output quantizer, *is* the trigger score (`student_score`); a cut on it is a cut on the predicted teacher loss
  (`predicted_teacher_mse` maps it back). Architecture: QConv2D(F, k x k, stride s) + QDense layers, or dense-only
  (trigger.models.cicada_keras / cicada_torch for the layer-by-layer description).
* Both are trained on zero bias (weights honoured, normalised to mean 1), teacher first, then the student on the
  teacher's scores of the same training split; early stopping on a seeded validation split.

Front-ends: "qkeras" (Keras teacher, QKeras student) and "brevitas" (torch teacher, Brevitas student, QONNX export
with `export_student_qonnx`); `to_qmodel` imports either student into the firmware IR.

Measured on the toy (trigger.toy, 50k zero-bias training images, defaults; 300k held-out zero bias, 50k toy signal):
held-out Pearson / Spearman of ln(teacher MSE) vs the student score 0.83 / 0.81 (both front-ends); toy-signal
efficiency at 1 / 5 / 10 kHz: student 8 / 13 / 18 %, teacher 4 / 7 / 9 %, total region E_T 0.7 / 2.5 / 3.4 %.
Teacher 16,801 parameters, student 4,085; the IR emulator equals the framework on 50k images (0 mismatches).

    model = train_cicada(zero_bias.calo, CicadaConfig(), weights=zero_bias.weight)
    s = model.student_score(images)            # the trigger score, (N,) float64 on the output grid
    q = model.to_qmodel()                      # firmware IR: input = raw region codes (ap_ufixed<10,10>), 252 wide
    save_cicada(model, "cicada/"); model = load_cicada("cicada/")
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from l1ad.trigger import calo
from l1ad.trigger.atomic import content_hash, write_json_atomic
from l1ad.trigger.events import EventBatch, EventDataError, calo_codes
from l1ad.trigger.models.arch import QuantSpec
from l1ad.trigger.models.runtime import available_cores, package_versions

log = logging.getLogger(__name__)

FRONTENDS = ("qkeras", "brevitas")
_MODULES = {"qkeras": "l1ad.trigger.models.cicada_keras", "brevitas": "l1ad.trigger.models.cicada_torch"}
#: teacher input scale: log1p(code) / TEACHER_LOG_SCALE lies in [0, 1]
TEACHER_LOG_SCALE = math.log(calo.ET_MAX + 1)
#: floor on the teacher MSE before the log (a perfect reconstruction would give -inf)
MSE_FLOOR = 1e-8
META_FILE = "cicada.json"
SCHEMA = "l1ad.cicada/1"


class CicadaConfig(BaseModel):
    """Architecture, quantizers and training of the teacher and the student. The defaults train on 50k images in
    about a minute per network on 2 CPU cores."""

    model_config = ConfigDict(extra="forbid")

    frontend: Literal["qkeras", "brevitas"] = "qkeras"
    # teacher (float conv autoencoder)
    #: conv filters of the encoder: the first at 18 x 14 (then 2 x 2 average pooling), the others at 9 x 7
    teacher_filters: tuple[int, ...] = (8,)
    teacher_latent: int = Field(default=16, ge=1)
    # student
    student: Literal["conv", "dense"] = "conv"
    student_filters: int = Field(default=4, ge=1)
    student_kernel: int = Field(default=2, ge=1, le=7)
    student_stride: int = Field(default=2, ge=1, le=7)
    student_hidden: list[int] = Field(default_factory=lambda: [16])
    #: max pooling (window = stride = student_pool, valid) after the student's conv: 1 = none; 2 quarters the
    #: dense layer's inputs (and most of its LUTs)
    student_pool: int = Field(default=1, ge=1, le=4)
    #: the student's input is region code * 2**-input_shift (power-of-two scaling: a wire shift on the chip)
    input_shift: int = Field(default=4, ge=0, le=10)
    input_quant: QuantSpec = QuantSpec(bits=11, integer=6)
    weight_quant: QuantSpec = QuantSpec(bits=8, integer=0)
    bias_quant: QuantSpec = QuantSpec(bits=8, integer=3)
    activation_quant: QuantSpec = QuantSpec(bits=10, integer=6)
    output_quant: QuantSpec = QuantSpec(bits=12, integer=4)
    # training
    #: the teacher's loss flattens after a handful of epochs on zero bias (50k toy images: 0.0151 after 1, 0.0145 after
    #: 6, 0.0144 after 20)
    teacher_epochs: int = Field(default=10, ge=1)
    student_epochs: int = Field(default=40, ge=1)
    batch_size: int = Field(default=512, ge=1)
    teacher_learning_rate: float = Field(default=3e-3, gt=0)
    student_learning_rate: float = Field(default=3e-3, gt=0)
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    patience: int = Field(default=5, ge=1)
    lr_patience: int = Field(default=3, ge=0)
    seed: int = 0
    #: framework CPU threads (capped at the usable cores); 1 is fastest on a shared machine for these small nets
    threads: int = Field(default=1, ge=1)
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> "CicadaConfig":
        if not self.teacher_filters or any(f < 1 for f in self.teacher_filters):
            raise ValueError(f"teacher_filters must be positive, got {self.teacher_filters}")
        if any(h < 1 for h in self.student_hidden):
            raise ValueError(f"student_hidden sizes must be positive, got {self.student_hidden}")
        if self.student == "conv" and min(self.student_out_shape[:2]) < 1:
            raise ValueError(f"student_kernel {self.student_kernel}, student_stride {self.student_stride} and "
                             f"student_pool {self.student_pool} leave no output pixel on the {calo.N_PHI} x {calo.N_ETA} image")
        if self.student == "dense" and self.student_pool != 1:
            raise ValueError("student_pool applies to the conv student only (student: conv)")
        fmt = self.input_quant.fmt(True)
        top = calo.ET_MAX * 2.0**-self.input_shift
        if fmt.frac < self.input_shift or fmt.max < top:
            need_int = max(0, math.ceil(math.log2(top + 2.0**-self.input_shift)))
            raise ValueError(
                f"input_quant ({self.input_quant.bits} bits, {self.input_quant.integer} integer) cannot hold every region "
                f"code * 2**-{self.input_shift} (0 .. {top:g} in steps of 2**-{self.input_shift}) exactly; use integer >= "
                f"{need_int} and bits >= {need_int + self.input_shift + 1}")
        return self

    @property
    def student_out_shape(self) -> tuple[int, int, int]:
        """Shape of the student's conv output (valid padding), after its max pooling."""
        k, s, p = self.student_kernel, self.student_stride, self.student_pool
        h, w = (calo.N_PHI - k) // s + 1, (calo.N_ETA - k) // s + 1
        return (h // p, w // p, self.student_filters)

    @property
    def student_flat_size(self) -> int:
        return int(np.prod(self.student_out_shape)) if self.student == "conv" else calo.N_REGIONS


class CaloInputScale:
    """The student's input scaling as firmware.import_qkeras takes it (`scaler=`): per region an integer offset (0)
    and a power-of-two shift, scaled = (code - 0) * 2**-shift_bits."""

    def __init__(self, shift_bits: int, n: int = calo.N_REGIONS):
        self.shift_bits = int(shift_bits)
        self.n = int(n)

    @property
    def offset(self) -> np.ndarray:
        return np.zeros(self.n, dtype=np.int64)

    @property
    def shift(self) -> np.ndarray:
        return np.full(self.n, self.shift_bits, dtype=np.int64)

    def transform(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(codes, dtype=np.float64).reshape(len(codes), -1) * 2.0**-self.shift_bits

    def __repr__(self) -> str:
        return f"CaloInputScale(shift_bits={self.shift_bits}, n={self.n})"


@dataclass
class CicadaModel:
    """A trained teacher and student with everything needed to score images and deploy the student."""

    config: CicadaConfig
    teacher: Any
    student: Any
    target_mean: float
    target_std: float
    history: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def module(self):
        return import_module(_MODULES[self.config.frontend])

    # ------------------------------------------------------------------ inputs
    def teacher_inputs(self, images) -> np.ndarray:
        """The teacher's input log1p(code) / log(1024) in the front-end's layout."""
        c = _images(images)
        return self.module.image_layout(np.log1p(c.astype(np.float64)) / TEACHER_LOG_SCALE)

    def student_inputs(self, images) -> np.ndarray:
        """The student's input code * 2**-input_shift (exact in float32) in the front-end's layout."""
        c = _images(images)
        return self.module.image_layout(c.astype(np.float64) * 2.0**-self.config.input_shift)

    @property
    def input_scale(self) -> CaloInputScale:
        return CaloInputScale(self.config.input_shift)

    # ------------------------------------------------------------------ scores
    def teacher_score(self, images, *, chunk: int = 65536) -> np.ndarray:
        """Teacher reconstruction MSE per image (float64), in the teacher's input units."""
        c = _images(images)
        out = np.empty(len(c))
        for s in range(0, len(c), chunk):
            x = self.teacher_inputs(c[s:s + chunk])
            r = self.module.predict(self.teacher, x)
            out[s:s + chunk] = ((r - x) ** 2).reshape(len(x), -1).mean(axis=1)
        return out

    def teacher_target(self, images) -> np.ndarray:
        """What the student regresses: the standardised ln(teacher MSE)."""
        return self.target_from_mse(self.teacher_score(images))

    def target_from_mse(self, mse: np.ndarray) -> np.ndarray:
        return (np.log(np.maximum(mse, MSE_FLOOR)) - self.target_mean) / self.target_std

    def student_score(self, images, *, chunk: int = 65536) -> np.ndarray:
        """The student's output (the trigger score), (N,) float64 values on the output quantizer's grid."""
        c = _images(images)
        out = np.empty(len(c))
        for s in range(0, len(c), chunk):
            out[s:s + chunk] = self.module.predict(self.student, self.student_inputs(c[s:s + chunk])).reshape(-1)
        return out

    def predicted_teacher_mse(self, score: np.ndarray) -> np.ndarray:
        """The teacher MSE a student score stands for: exp(score * target_std + target_mean)."""
        return np.exp(np.asarray(score, dtype=np.float64) * self.target_std + self.target_mean)

    # ------------------------------------------------------------------ firmware
    @property
    def output_format(self):
        """The student's output grid (QuantFormat; ap_fixed<12,5> for the default quantized_bits(12, 4))."""
        return self.config.output_quant.fmt(True)

    def score_codes(self, images) -> np.ndarray:
        """The student scores as integer codes of `output_format` (what the firmware compares), int64."""
        return self.output_format.to_int(self.student_score(images))

    def threshold_code(self, threshold: float) -> int:
        """The integer code T with `code > T` <=> `score > threshold` on every student score
        (trigger.thresholds.float_threshold_to_code on the output grid)."""
        from l1ad.trigger.thresholds import float_threshold_to_code

        return float_threshold_to_code(threshold, self.output_format)

    def to_qmodel(self, *, thresholds=(), name: str = "cicada_student", **kw):
        """The student in the firmware IR: raw region codes in (`calo.HW_FORMAT`, 252 inputs, row-major (phi, eta)),
        the power-of-two input scaling (`input_scale`), no score block (score=None): the single network output is
        the trigger score. QKeras: firmware.import_qkeras; Brevitas: QONNX export, then firmware.import_qonnx."""
        common = dict(scaler=self.input_scale, score=None, thresholds=thresholds, name=name, **kw)
        if self.config.frontend == "qkeras":
            from l1ad.firmware import import_qkeras

            return import_qkeras(self.student, calo.HW_FORMAT, **common)
        import tempfile

        from l1ad.firmware import import_qonnx

        with tempfile.TemporaryDirectory(prefix="l1ad-cicada-") as tmp:
            path = self.export_student_qonnx(Path(tmp) / "student.onnx")
            return import_qonnx(str(path), calo.HW_FORMAT, **common)

    def export_student_qonnx(self, path: str | Path) -> Path:
        if self.config.frontend != "brevitas":
            raise ValueError("QONNX export is for the Brevitas student; the QKeras student imports with to_qmodel")
        return self.module.export_qonnx(self.student, Path(path))


def _images(images) -> np.ndarray:
    """(N, 18, 14) uint16 codes from an array or an EventBatch (whose images must be present)."""
    if isinstance(images, EventBatch):
        if images.calo is None:
            raise EventDataError("the events carry no calorimeter-region images (dataset CaloRegions); regenerate them "
                                 "with this l1ad version", field="calo")
        return images.calo
    arr = np.asarray(images)
    if arr.dtype == np.uint16 and arr.ndim == 3 and arr.shape[1:] == calo.SHAPE and (not arr.size or arr.max() <= calo.ET_MAX):
        return arr
    return calo_codes(arr)


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n < 8:
        raise ValueError(f"need at least 8 images to train the CICADA teacher and student, got {n}")
    n_val = min(n - 4, max(4, int(round(val_fraction * n))))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _correlations(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"pearson": float("nan"), "spearman": float("nan")}
    return {"pearson": float(pearsonr(a, b)[0]), "spearman": float(spearmanr(a, b)[0])}


def train_cicada(images, config: CicadaConfig | None = None, *, weights: np.ndarray | None = None) -> CicadaModel:
    """Train the teacher on zero-bias images, then the student on the teacher's scores (same seeded split).

    images: (N, 18, 14) region codes or an EventBatch with images (its weights are used unless `weights` is given).
    Returns a CicadaModel; `history` holds both training summaries, `metadata` parameter counts, timings and the
    teacher-student correlations (Pearson, Spearman) on the validation split."""
    cfg = config or CicadaConfig()
    if weights is None and isinstance(images, EventBatch):
        weights = images.weight
    c = _images(images)
    n = len(c)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {w.shape}")
    if (w < 0).any() or not np.isfinite(w).all() or not w.sum() > 0:
        raise ValueError("training weights must be finite and non-negative with a positive sum")
    threads = min(cfg.threads, available_cores())
    cfg_run = cfg.model_copy(update={"threads": threads})
    mod = import_module(_MODULES[cfg.frontend])
    tr, va = _split(n, cfg.val_fraction, cfg.seed)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    wt, wv = f32(w[tr] / w[tr].mean()), f32(w[va] / max(w[va].mean(), 1e-300))
    t0 = time.perf_counter()
    teacher = mod.build_teacher(cfg_run, cfg.seed)
    model = CicadaModel(cfg, teacher, None, 0.0, 1.0)
    xt = model.teacher_inputs(c)
    hist_t = mod.fit(teacher, xt[tr], xt[tr], wt, xt[va], xt[va], wv, epochs=cfg.teacher_epochs, cfg=cfg_run,
                     learning_rate=cfg.teacher_learning_rate, desc=f"{cfg.frontend} CICADA teacher")
    t1 = time.perf_counter()
    log_mse = np.log(np.maximum(model.teacher_score(c), MSE_FLOOR))
    mean = float(np.average(log_mse[tr], weights=w[tr]))
    std = float(np.sqrt(np.average((log_mse[tr] - mean) ** 2, weights=w[tr]))) or 1.0
    model.target_mean, model.target_std = mean, std
    y = f32((log_mse - mean) / std)[:, None]
    student = mod.build_student(cfg_run, cfg.seed)
    model.student = student
    xs = model.student_inputs(c)
    hist_s = mod.fit(student, xs[tr], y[tr], wt, xs[va], y[va], wv, epochs=cfg.student_epochs, cfg=cfg_run,
                     learning_rate=cfg.student_learning_rate, desc=f"{cfg.frontend} CICADA student")
    t2 = time.perf_counter()
    s_val = model.student_score(c[va])
    model.history = {"teacher": hist_t, "student": hist_s}
    model.metadata = {
        "created_unix": time.time(),
        "versions": package_versions(),
        "config_hash": content_hash(cfg.model_dump(mode="json", exclude={"progress", "threads"})),
        "threads": threads,
        "n_params": {"teacher": mod.n_params(teacher), "student": mod.n_params(student)},
        "data": {"n_images": n, "n_train": int(len(tr)), "n_val": int(len(va))},
        "train_seconds": {"teacher": t1 - t0, "student": t2 - t1},
        "val_correlation": _correlations(log_mse[va], s_val),
        "val_student_rms_error": float(np.sqrt(np.mean((s_val - y[va, 0]) ** 2))),
    }
    log.info("CICADA %s: teacher %d epochs, student %d epochs, validation Spearman %.3f", cfg.frontend,
             hist_t["epochs_run"], hist_s["epochs_run"], model.metadata["val_correlation"]["spearman"])
    return model


def teacher_score(model: CicadaModel, images) -> np.ndarray:
    """Teacher reconstruction MSE per image (module-level form of CicadaModel.teacher_score)."""
    return model.teacher_score(images)


def student_score(model: CicadaModel, images) -> np.ndarray:
    """The student's output, the trigger score (module-level form of CicadaModel.student_score)."""
    return model.student_score(images)


# ---------------------------------------------------------------------------------------------- save / load
def save_cicada(model: CicadaModel, out_dir: str | Path) -> Path:
    """Write teacher.<h5|pt>, student.<h5|pt> and cicada.json (config, target scaling, history, metadata)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mod = model.module
    mod.save(model.teacher, out / f"teacher{mod.MODEL_SUFFIX}")
    mod.save(model.student, out / f"student{mod.MODEL_SUFFIX}")
    write_json_atomic(out / META_FILE, {
        "schema": SCHEMA, "config": model.config.model_dump(mode="json"), "target_mean": model.target_mean,
        "target_std": model.target_std, "history": model.history, "metadata": model.metadata,
        "image": {"shape": list(calo.SHAPE), **calo.ATTRS}, "hw_input_format": calo.HW_FORMAT,
        "input_shift": model.config.input_shift,
    })
    return out


def load_cicada(path: str | Path) -> CicadaModel:
    """A CicadaModel saved by save_cicada."""
    d = Path(path)
    meta_path = d / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{d}: not a CICADA model directory (no {META_FILE})")
    meta = json.loads(meta_path.read_text())
    if meta.get("schema") != SCHEMA:
        raise ValueError(f"{meta_path}: schema {meta.get('schema')!r}, expected {SCHEMA!r}")
    cfg = CicadaConfig.model_validate(meta["config"])
    mod = import_module(_MODULES[cfg.frontend])
    teacher = mod.load(d / f"teacher{mod.MODEL_SUFFIX}", cfg, "teacher")
    student = mod.load(d / f"student{mod.MODEL_SUFFIX}", cfg, "student")
    return CicadaModel(cfg, teacher, student, float(meta["target_mean"]), float(meta["target_std"]),
                       meta.get("history", {}), meta.get("metadata", {}))
