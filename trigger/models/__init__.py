"""Quantization-aware autoencoder models: one architecture config, three front-ends.

- `ArchitectureConfig` (arch.py): layer sizes and fixed-point quantizers, from YAML or the built-in defaults.
- QKeras front-end (keras_nets.py, frontend "qkeras") and its float reference (same module, frontend "float").
- Brevitas front-end (brevitas_nets.py, frontend "brevitas").
- `QuantFormat` (quant.py): a fixed-point grid and its exact numpy quantizer, shared with the firmware.
- CICADA-style calorimeter trigger (trigger.cicada): conv autoencoder teacher + quantized student, QKeras
  (cicada_keras.py) and Brevitas (cicada_torch.py) front-ends.
TensorFlow and torch are imported only when a front-end is used.
"""
from .arch import ArchitectureConfig, DenseLayer, QuantSpec
from .backend import FRONTENDS, TrainData, get_backend
from .quant import QuantFormat

__all__ = ["ArchitectureConfig", "DenseLayer", "FRONTENDS", "QuantFormat", "QuantSpec", "TrainData", "get_backend"]
