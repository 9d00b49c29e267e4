"""A fast Gaussian toy event generator (the seeds' tutorial data, dressed as L1 objects) for unit tests.

Background: Poisson object multiplicities, log-normal pT, Gaussian eta, uniform phi, on the L1 grid.
Signal: the same with extra, harder muons and jets (a shifted Gaussian in log pT), so an autoencoder
trained on background scores it higher. Not physics: use `trigger.generation` for the real default data.

With `calo=True` (the default) every event also gets a calorimeter-region image (trigger.calo.toy_images): Poisson
pile-up (mean 20, recorded in `npu`) as diffuse region energy, and every e/gamma and jet as a 2-4 region cluster at
its eta/phi; signal images therefore hold more and harder clusters. The image draws come from their own random
stream, so the L1 objects are the same with or without images.
"""
from __future__ import annotations

import numpy as np

from .calo import toy_images
from .events import N_FEATURES, N_OBJECTS, EventBatch, slot_rows
from .l1units import to_grid

#: object type -> (mean multiplicity, log-pT mean, log-pT sigma, eta sigma)
_BACKGROUND = {"EGamma": (0.6, 2.8, 0.5, 1.2), "Muon": (0.2, 2.5, 0.5, 1.2), "Jet": (3.0, 3.5, 0.45, 1.8)}
_SIGNAL_SHIFT = {"EGamma": (0.5, 0.6), "Muon": (1.5, 0.8), "Jet": (0.5, 0.7)}


#: mean pile-up of the toy images
TOY_PILEUP_MEAN = 20.0


def toy_events(n: int, *, signal: bool = False, seed: int = 0, process: str | None = None, calo: bool = True) -> EventBatch:
    """`n` toy events (background, or signal with harder and more frequent objects), unit weights; with `calo`,
    calorimeter-region images and their pile-up multiplicity."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    objects = np.zeros((n, N_OBJECTS, N_FEATURES))
    px = np.zeros(n)
    py = np.zeros(n)
    for name, (mult, mu, sigma, eta_sigma) in _BACKGROUND.items():
        rows = slot_rows(name)
        width = rows.stop - rows.start
        dmult, dmu = _SIGNAL_SHIFT[name] if signal else (0.0, 0.0)
        k = np.minimum(rng.poisson(mult + dmult, n), width)
        pt = np.exp(rng.normal(mu + dmu, sigma, (n, width)))
        pt = -np.sort(-pt, axis=1)
        filled = np.arange(width)[None, :] < k[:, None]
        pt = np.where(filled, pt, 0.0)
        eta = np.where(filled, np.clip(rng.normal(0, eta_sigma, (n, width)), -4.5, 4.5), 0.0)
        phi = np.where(filled, rng.uniform(-np.pi, np.pi, (n, width)), 0.0)
        objects[:, rows] = np.stack([pt, eta, phi], axis=-1)
        px -= (pt * np.cos(phi)).sum(axis=1)
        py -= (pt * np.sin(phi)).sum(axis=1)
    px += rng.normal(0, 8, n)
    py += rng.normal(0, 8, n)
    objects[:, 0, 0] = np.hypot(px, py)
    objects[:, 0, 2] = np.arctan2(py, px)
    objects = to_grid(objects)
    jets = objects[:, slot_rows("Jet")]
    images = npu = None
    if calo:
        rng_calo = np.random.default_rng(np.random.SeedSequence([seed, 0xCA10]))
        npu = rng_calo.poisson(TOY_PILEUP_MEAN, n)
        images = toy_images(objects, rng_calo, npu=npu)
    return EventBatch.build(
        objects,
        process=process or ("toy_signal" if signal else "toy_background"),
        npu=npu,
        offline={"mjj": _mjj(jets)},
        calo=images,
    )


def _mjj(jets: np.ndarray) -> np.ndarray:
    """Invariant mass of the two leading (massless) jets; 0 with fewer than two."""
    pt1, eta1, phi1 = jets[:, 0, 0], jets[:, 0, 1], jets[:, 0, 2]
    pt2, eta2, phi2 = jets[:, 1, 0], jets[:, 1, 1], jets[:, 1, 2]
    m2 = 2 * pt1 * pt2 * (np.cosh(eta1 - eta2) - np.cos(phi1 - phi2))
    return np.where(pt2 > 0, np.sqrt(np.maximum(m2, 0)), 0.0).astype(np.float32)
