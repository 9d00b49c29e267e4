"""What trigger.train and trigger.modeldir need from a front-end, and how to pick one by name.

A front-end module provides (its model file name is MODEL_FILES[name]):
    build(arch, seed, quantized, threads) -> net   the training network (threads: framework CPU threads) (for the VAE: encoder + log-variance head + decoder)
    deployed(net) -> model              the on-chip network: scaled input -> reconstruction (AE) / mu (VAE)
    fit(net, arch, data, cfg, ckpt_dir, desc) -> dict    train in place; returns the EpochMonitor summary
    predict(model, xs) -> (N, F) float64                  forward pass of the deployed network
    save(model, path) / load(path, arch) -> model         the deployed network alone
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cached_property
from types import ModuleType

import numpy as np

FRONTENDS = ("qkeras", "brevitas", "float")
_MODULES = {"qkeras": "keras_nets", "float": "keras_nets", "brevitas": "brevitas_nets"}
#: file of the saved deployed network inside a model directory, per front-end
MODEL_FILES = {"qkeras": "model.h5", "float": "model.h5", "brevitas": "model.pt"}


@dataclass(frozen=True)
class TrainData:
    """Network inputs x (scaled, not yet quantized), reconstruction targets t (the quantized input for the
    quantized front-ends), masks m (1.0 where the feature's object is present) and mean-1 weights w,
    for the training and validation splits. All float32."""

    x: np.ndarray
    t: np.ndarray
    m: np.ndarray
    w: np.ndarray
    x_val: np.ndarray
    t_val: np.ndarray
    m_val: np.ndarray
    w_val: np.ndarray


class Backend:
    """A front-end bound to its name (the Keras module serves both 'qkeras' and 'float'). The framework is
    imported on first use of a module function, not on construction."""

    def __init__(self, name: str):
        if name not in FRONTENDS:
            raise ValueError(f"unknown front-end {name!r}; expected one of {', '.join(FRONTENDS)}")
        self.name = name
        self.quantized = name != "float"
        self.MODEL_FILE = MODEL_FILES[name]

    @cached_property
    def module(self) -> ModuleType:
        return importlib.import_module(f"l1ad.trigger.models.{_MODULES[self.name]}")

    def build(self, arch, seed: int, threads: int | None = None):
        return self.module.build(arch, seed, quantized=self.quantized, threads=threads)

    def __getattr__(self, item: str):
        if item.startswith("__"):
            raise AttributeError(item)
        return getattr(self.module, item)


def get_backend(name: str) -> Backend:
    return Backend(name)
