"""A trained model and its directory on disk.

Layout of a model directory (every file written atomically, metadata.json last):
    arch.yaml       the ArchitectureConfig
    scaler.json     the InputScaler (integer offsets and shifts)
    model.h5        QKeras / float Keras deployed network (frontend "qkeras" | "float"), or
    model.pt        Brevitas deployed network state_dict (frontend "brevitas"; rebuilt from arch.yaml)
    metadata.json   frontend, package versions, config hashes, training figures
    training.png    loss curves (optional), checkpoints/ (optional, written during training)
Loading gives the same scores bit for bit.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from l1ad.trigger.atomic import write_json_atomic, write_text_atomic
from l1ad.trigger.errors import L1adError, UserInputError
from l1ad.trigger.events import EventBatch
from l1ad.trigger.l1units import hw_inputs
from l1ad.trigger.models.arch import ArchitectureConfig
from l1ad.trigger.models.backend import FRONTENDS, MODEL_FILES, get_backend
from l1ad.trigger.models.quant import QuantFormat
from l1ad.trigger.scaler import InputScaler
from l1ad.trigger.scores import input_mask_hw, masked_sq_error, mu_squared, score_format

ARCH_FILE = "arch.yaml"
SCALER_FILE = "scaler.json"
METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1


class ModelDirError(L1adError, FileNotFoundError):
    """A model directory is missing or incomplete; the message names the missing file."""


class ModelFileError(UserInputError):
    """A file of a model directory is present but unreadable or invalid; the message names it."""


@dataclass
class TrainedModel:
    """A deployed network with its scaler and architecture. `score` is the trigger's anomaly score."""

    frontend: str
    arch: ArchitectureConfig
    scaler: InputScaler
    network: Any  # the deployed Keras model / torch module
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frontend not in FRONTENDS:
            raise ValueError(f"unknown front-end {self.frontend!r}; expected one of {', '.join(FRONTENDS)}")

    @cached_property
    def _backend(self):
        return get_backend(self.frontend)

    @property
    def quantized(self) -> bool:
        return self.frontend != "float"

    def deployed(self):
        """The on-chip network: scaled input -> reconstruction (AE) / mu (VAE), input quantizer included."""
        return self.network

    @property
    def input_quantizer(self) -> QuantFormat | None:
        """Format of the network's input quantizer (None for the float reference)."""
        return self.arch.input_format if self.quantized else None

    @property
    def output_quantizer(self) -> QuantFormat | None:
        """Format of the reconstruction (AE) / mu (VAE) quantizer (None for the float reference)."""
        return self.arch.output_format if self.quantized else None

    @property
    def score_format(self) -> QuantFormat | None:
        """Unsigned fixed-point format that holds every score exactly (None for the float reference)."""
        if not self.quantized:
            return None
        n = self.arch.n_inputs if self.arch.kind == "ae" else self.arch.latent
        return score_format(self.arch.kind, self.arch.input_format, self.arch.output_format, n)

    # ------------------------------------------------------------------ evaluation
    def hw_inputs(self, batch_or_x_hw: EventBatch | np.ndarray) -> np.ndarray:
        """(N, 57) hardware-unit inputs of an EventBatch, or the array itself (checked)."""
        if isinstance(batch_or_x_hw, EventBatch):
            x = hw_inputs(batch_or_x_hw.objects)
        else:
            x = np.asarray(batch_or_x_hw)
            if x.ndim != 2:
                raise ValueError(f"expected an EventBatch or hardware inputs of shape (N, {self.arch.n_inputs}), got shape {x.shape}")
        self.arch.check_n_inputs(x.shape[1])
        return x

    def network_input(self, batch_or_x_hw) -> np.ndarray:
        """The scaled input fed to the deployed network (before its input quantizer), float64."""
        return self.scaler.transform(self.hw_inputs(batch_or_x_hw))

    def quantized_input(self, batch_or_x_hw) -> np.ndarray:
        """x of the score contract: the scaled input on the input quantizer's grid (float reference: unquantized)."""
        xs = self.network_input(batch_or_x_hw)
        return self.arch.input_format.quantize(xs) if self.quantized else xs

    def forward(self, batch_or_x_hw) -> np.ndarray:
        """Deployed network output (reconstruction or mu), float64 (N, F)."""
        return self._backend.predict(self.network, self.network_input(batch_or_x_hw))

    def score(self, batch_or_x_hw) -> np.ndarray:
        """Anomaly score per event, float64 (N,) (see trigger.scores for the exact definition)."""
        x_hw = self.hw_inputs(batch_or_x_hw)
        xs = self.scaler.transform(x_hw)
        out = self._backend.predict(self.network, xs)
        if self.arch.kind == "vae":
            return mu_squared(out)
        x = self.arch.input_format.quantize(xs) if self.quantized else xs
        return masked_sq_error(x, out, input_mask_hw(x_hw))

    def __repr__(self) -> str:
        return f"TrainedModel(frontend={self.frontend!r}, arch={self.arch.name!r}, kind={self.arch.kind!r})"


# ---------------------------------------------------------------------------------------------- save / load
def save_model(model: TrainedModel, path: str | Path) -> Path:
    """Write `model` into directory `path` (created if needed; an older model there is replaced)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    backend = model._backend
    write_text_atomic(path / ARCH_FILE, model.arch.to_yaml())
    write_json_atomic(path / SCALER_FILE, model.scaler.to_dict())
    backend.save(model.network, path / backend.MODEL_FILE)
    for stale in set(MODEL_FILES.values()) - {backend.MODEL_FILE}:  # another front-end's network would only confuse
        (path / stale).unlink(missing_ok=True)
    meta = {**model.metadata, "format_version": FORMAT_VERSION, "frontend": model.frontend, "kind": model.arch.kind,
            "arch_hash": model.arch.config_hash(), "files": [ARCH_FILE, SCALER_FILE, backend.MODEL_FILE]}
    write_json_atomic(path / METADATA_FILE, meta)
    model.metadata = meta
    return path


def load_model(path: str | Path) -> TrainedModel:
    """Load a model directory written by save_model (or trigger.train.train_model). Every file is checked (and a
    bad one named) before a framework starts up; an unreadable network file is a ModelFileError naming it."""
    path = Path(path)
    if not path.is_dir():
        raise ModelDirError(f"model directory not found: {path}")
    meta_file = path / METADATA_FILE
    if not meta_file.is_file():
        raise ModelDirError(f"model directory {path} is missing {METADATA_FILE} (written last by save_model: "
                            f"the directory is incomplete or not a model directory)")
    meta = _read_json(meta_file, "model metadata")
    frontend = meta.get("frontend")
    if frontend not in FRONTENDS:
        raise ModelFileError(f"{meta_file}: unknown front-end {frontend!r}; expected one of {', '.join(FRONTENDS)}")
    backend = get_backend(frontend)  # imports nothing yet: missing files are reported before any framework start-up
    for name in (ARCH_FILE, SCALER_FILE, backend.MODEL_FILE):
        if not (path / name).is_file():
            raise ModelDirError(f"model directory {path} is missing {name} (needed by the {frontend} front-end)")
    try:
        arch = ArchitectureConfig.from_yaml(path / ARCH_FILE)
    except (ValueError, OSError) as e:  # pydantic / YAML / a list instead of a mapping: all name the file
        msg = str(e) if str(path / ARCH_FILE) in str(e) else f"{path / ARCH_FILE}: {e}"
        raise ModelFileError(f"invalid architecture: {msg}") from None
    try:
        scaler = InputScaler.from_dict(_read_json(path / SCALER_FILE, "input scaler"))
    except (ValueError, TypeError, KeyError) as e:
        raise ModelFileError(f"{path / SCALER_FILE}: invalid scaler: {e}") from None
    net_file = path / backend.MODEL_FILE
    _check_network_file(net_file, frontend)
    try:
        network = backend.load(net_file, arch)
    except (OSError, ValueError, RuntimeError, EOFError, KeyError, pickle.UnpicklingError) as e:
        raise ModelFileError(f"{net_file}: cannot load the {frontend} network (truncated, corrupt, or not written "
                             f"for {path / ARCH_FILE}): {type(e).__name__}: {e}") from None
    return TrainedModel(frontend=frontend, arch=arch, scaler=scaler, network=network, metadata=meta)


def _read_json(file: Path, what: str) -> dict:
    """A JSON object from `file`; a ModelFileError naming the file when it is not one."""
    try:
        d = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{file}: not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise ModelFileError(f"{file}: expected a JSON object ({what}), got a JSON {type(d).__name__}")
    return d


def _check_network_file(file: Path, frontend: str) -> None:
    """A cheap integrity check before TensorFlow / torch start: an HDF5 file that h5py cannot open, or a torch
    archive that is not a complete zip, is reported by name."""
    if file.suffix == ".h5":
        import h5py

        try:
            with h5py.File(file, "r"):
                pass
        except OSError as e:
            raise ModelFileError(f"{file}: not a readable HDF5 file (truncated or corrupt?): {e}") from None
    elif file.suffix == ".pt":
        import zipfile

        if not zipfile.is_zipfile(file):
            raise ModelFileError(f"{file}: not a complete torch archive (truncated or corrupt?)")
