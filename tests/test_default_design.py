"""The default trigger of `l1ad run` (AXOL1TL-style encoder + sum mu^2) fits in 2 bunch crossings with the default
RTL settings; the full autoencoder does not (which is why it is not the default)."""
from __future__ import annotations

import numpy as np
import pytest

from l1ad.config import L1adConfig
from l1ad.firmware import import_qkeras
from l1ad.firmware.verilog import generate
from l1ad.firmware.verilog.generator import T_LEVEL_NS, T_STAGE_NS
from l1ad.trigger.models import keras_nets
from l1ad.trigger.models.arch import ArchitectureConfig
from l1ad.trigger.scaler import InputScaler


def _events(n: int, seed: int) -> np.ndarray:
    """L1 hardware-unit events: exponential pT codes, uniform eta/phi, about half the slots empty."""
    rng = np.random.default_rng(seed)
    pt = np.minimum(rng.exponential(60.0, (n, 19)), 4000).astype(np.int64) * (rng.random((n, 19)) < 0.5)
    eta = rng.integers(-460, 461, (n, 19)) * (pt > 0)
    phi = rng.integers(-288, 288, (n, 19)) * (pt > 0)
    return np.stack([pt, eta, phi], axis=2).reshape(n, 57)


def _default_qmodel(arch: ArchitectureConfig, seed: int = 0):
    """The default architecture with its initial (Glorot, 8-bit quantized: dense digit patterns) weights, imported
    the way the pipeline imports the trained model."""
    net = keras_nets.build(arch, seed)
    scaler = InputScaler().fit(_events(3000, seed))
    score = "mse" if arch.kind == "ae" else "mu2"
    q = import_qkeras(net.deployed, "ap_int<18>", scaler=scaler, score=score, gate="auto", name=arch.name)
    return q.with_thresholds((q.score.format.max_code // 64,))


def test_default_is_the_axol1tl_style_encoder():
    arch = L1adConfig().models.arch
    assert arch.kind == "vae" and [L.name for L in arch.deployed_layers()] == ["enc_1", "enc_2", "mu"]


@pytest.mark.slow
def test_default_design_meets_two_bunch_crossings():
    cfg = L1adConfig()
    v = cfg.firmware.verilog
    d = generate(_default_qmodel(cfg.models.arch), v)
    assert d.meta["latency_ns"] <= v.budget_ns == 50.0, d.meta
    assert T_STAGE_NS + d.meta["max_levels_per_stage"] * T_LEVEL_NS <= 1000.0 / v.clock_mhz  # the logic-level model's clock
    ae = generate(_default_qmodel(ArchitectureConfig(kind="ae")), v)
    assert ae.meta["latency_ns"] > v.budget_ns  # the reason the autoencoder is not the default
