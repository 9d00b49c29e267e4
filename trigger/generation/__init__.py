"""The built-in default data generator: Pythia 8 + FastJet, L1-like objects with pile-up, stitched weights.

`generate(GenerationConfig(), out_dir)` writes a zero-bias-equivalent stream (minimum bias stitched with
pT-hat-binned HardQCD, W, Z and ttbar by cross section; see `stitching`), the four ADC2021 benchmark signals,
an LHC-Olympics-style dijet resonance and its QCD dijet background, as HDF5 files in the ADC2021 layout.
Modules: `config` (sizes and detector settings), `processes` (the Pythia catalogue), `particles` (Pythia
batches as flat arrays, pile-up overlay), `l1objects` (towers, jets, MET, e/gamma, muons), `offline`
(m_jj, large-R jets and N-subjettiness), `jets` (FastJet wrappers), `stitching` (weights and the closure
check), `runner` (Dask, seeds, progress, cache).
"""
from .config import DEFAULT_SIZES, GENERATOR_VERSION, DetectorConfig, GenerationConfig
from .processes import ADC_SIGNALS, SIGNALS, UnknownSignalError, known_samples, signal_process
from .runner import chunk_seed, default_cache_dir, generate, process_data

__all__ = [
    "ADC_SIGNALS", "DEFAULT_SIZES", "GENERATOR_VERSION", "SIGNALS", "DetectorConfig", "GenerationConfig",
    "UnknownSignalError", "chunk_seed", "default_cache_dir", "generate", "known_samples", "process_data",
    "signal_process",
]
