"""The typed, validated configuration of an l1ad run, loaded from YAML.

Each package defines the configuration of its own stage (trigger.generation.GenerationConfig,
trigger.models.arch.ArchitectureConfig, firmware.hls.config.HLSConfig, ...); this module composes them.
`configs/default.yaml` is the built-in default; `--quick` deep-merges `configs/quick.yaml` on top.
"""
from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from l1ad.firmware.hls.config import HLSConfig
from l1ad.firmware.verilog.config import VerilogConfig
from l1ad.analysis import OfflineStageConfig
from l1ad.errors import format_validation
from l1ad.trigger.atomic import content_hash
from l1ad.trigger.cicada import CicadaConfig
from l1ad.trigger.errors import UserInputError
from l1ad.trigger.generation.config import GenerationConfig
from l1ad.trigger.models.arch import ArchitectureConfig
from l1ad.trigger.rate_report import RatesConfig
from l1ad.trigger.train import TrainingConfig

#: the YAML files shipped with the package (the repository's configs/ folder, installed as ``l1ad.configs``)
CONFIG_PACKAGE = "l1ad.configs"


def builtin_config(name: str) -> str:
    """The text of a built-in YAML file (``default.yaml``, ``quick.yaml``, ``arch_ae.yaml``...), read with
    importlib.resources so it works from a wheel as from the source tree."""
    res = resources.files(CONFIG_PACKAGE) / name
    if not res.is_file():
        raise ConfigError(f"built-in configuration {name!r} is missing from the installed package ({CONFIG_PACKAGE})")
    return res.read_text()


class ConfigError(UserInputError):
    """A bad configuration: names the key, the value and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DaskConfig(_Strict):
    """Where the embarrassingly parallel work runs: a local cluster by default, or a scheduler address."""

    scheduler: Optional[str] = Field(None, description="e.g. tcp://host:8786; None starts a local cluster")
    n_workers: Optional[int] = Field(None, ge=1, description="local cluster workers (None: one per core)")
    chunk_size: int = Field(200_000, ge=1, description="events per task when a file is scored with the emulator")


class ModelsConfig(_Strict):
    """Which front-ends to train, on what architecture and with which training settings."""

    frontends: tuple[Literal["qkeras", "brevitas"], ...] = ("qkeras", "brevitas")
    float_reference: bool = True
    #: the AXOL1TL-style default: encoder 57-32-16 -> mu(8), score sum mu_i^2 on chip (the decoder only trains).
    #: Its RTL meets 2 bunch crossings (50 ns) at 240 MHz; the full autoencoder (`kind: ae`) does not.
    arch: ArchitectureConfig = ArchitectureConfig.default("vae")
    training: TrainingConfig = TrainingConfig()
    #: the front-end whose firmware is exported to HLS/Verilog and whose trigger bits select events
    deploy: Literal["qkeras", "brevitas"] = "qkeras"

    @model_validator(mode="after")
    def _deployable(self) -> "ModelsConfig":
        if not self.frontends:
            raise ValueError("frontends is empty: list at least one of 'qkeras', 'brevitas'")
        if len(set(self.frontends)) != len(self.frontends):
            raise ValueError(f"frontends lists a front-end twice: {list(self.frontends)}")
        if self.deploy not in self.frontends:
            raise ValueError(f"deploy = {self.deploy!r} is not trained: it must be one of frontends {list(self.frontends)}")
        return self


class FirmwareConfig(_Strict):
    """The firmware stages: the IR input format, HLS export and C-sim check, Verilog, co-simulation, Yosys."""

    input_format: str = "ap_int<18>"
    hls: HLSConfig = HLSConfig()
    hls_verify_events: int = Field(100_000, ge=0)
    verilog: VerilogConfig = VerilogConfig()
    cosim_vectors: int = Field(100_000, ge=0)
    yosys: bool = True


class CicadaStageConfig(_Strict):
    """`cicada:` the CICADA-style calorimeter trigger (teacher + quantized student on the region images)."""

    enabled: bool = Field(True, description="train and deploy the CICADA-style trigger beside the AXOL1TL-style one")
    model: CicadaConfig = CicadaConfig()
    cosim_vectors: int = Field(20_000, ge=0, description="RTL co-simulation vectors (images and random/edge codes)")
    hls_verify_events: int = Field(10_000, ge=0, description="HLS C-simulation vectors per set (images; edge and random codes)")
    yosys: bool = Field(False, description="synthesize the student's RTL with Yosys for its LUT/FF/DSP")


class L1adConfig(_Strict):
    """One whole run: data -> models -> thresholds -> firmware -> offline -> report."""

    seed: int = Field(1, ge=0)
    out_dir: str = "out"
    data: GenerationConfig = GenerationConfig()
    models: ModelsConfig = ModelsConfig()
    rates: RatesConfig = RatesConfig()
    firmware: FirmwareConfig = FirmwareConfig()
    offline: OfflineStageConfig = OfflineStageConfig()
    cicada: CicadaStageConfig = CicadaStageConfig()
    dask: DaskConfig = DaskConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "L1adConfig":
        """Cross-section checks that would otherwise fail many minutes into a run."""
        o = self.offline
        for key, (lo, hi, bins) in (("mjj_edges_gev", o.mjj_edges_gev), ("mjj_dijet_edges_gev", o.mjj_dijet_edges_gev)):
            if not (0 <= lo < hi and bins >= 1):
                raise ValueError(f"offline.{key} = {[lo, hi, bins]}: need [lo, hi, bins] with 0 <= lo < hi and bins >= 1")
        if o.trigger != "axol1tl" and not self.cicada.enabled:
            raise ValueError(f"offline.trigger = {o.trigger!r} needs the CICADA-style trigger, but cicada.enabled is false")
        lo, hi = o.resonance_window_gev
        if not 0 <= lo < hi:
            raise ValueError(f"offline.resonance_window_gev = {[lo, hi]}: need [lo, hi] with 0 <= lo < hi")
        return self

    def hash(self) -> str:
        """Content hash of the whole configuration."""
        return content_hash(self.model_dump(mode="json"))


def deep_merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`, recursively for nested mappings."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _read_yaml(path: Path | None, text: str | None = None, label: str | None = None) -> dict:
    label = label or str(path)
    if text is None:
        assert path is not None
        if not path.is_file():
            raise ConfigError(f"{path}: no such configuration file")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read the configuration ({e})") from None
    path = label  # type: ignore[assignment]
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (key: value lines), got a {type(data).__name__}")
    return data


def read_mapping(path: str | Path, what: str) -> dict:
    """A user's YAML (or JSON) file whose top level must be a mapping of `what` fields; a ConfigError naming the
    file otherwise (missing, unreadable, not YAML, a list or a scalar)."""
    return _read_yaml(Path(path), label=f"{path} ({what})")


def validate_section(model: type[BaseModel], data: dict, source: str):
    """`model.model_validate(data)`, a ConfigError naming `source`, each key, value and what is allowed."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def format_validation_error(e: ValidationError, source: str) -> str:
    """One line per problem: the dotted key, the offending value and what is allowed."""
    return format_validation(e, source, title="configuration",
                             unknown_hint="; check the spelling against configs/default.yaml")


def load_config(path: str | Path | None = None, *, quick: bool = False, overrides: dict | None = None) -> L1adConfig:
    """The built-in default, then the quick overrides (``--quick``), then the user's YAML file (what the user
    sets always wins), then `overrides`."""
    data = _read_yaml(None, builtin_config("default.yaml"), "built-in configs/default.yaml")
    source = "built-in configs/default.yaml"
    if quick:
        data = deep_merge(data, _read_yaml(None, builtin_config("quick.yaml"), "built-in configs/quick.yaml"))
    if path is not None:
        data = deep_merge(data, _read_yaml(Path(path)))
        source = str(path)
    if overrides:
        data = deep_merge(data, overrides)
    try:
        return L1adConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
