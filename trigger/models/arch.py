"""The architecture description shared by every front-end (QKeras, Brevitas, float Keras).

One YAML file (or the built-in defaults) fixes layer sizes and every quantizer; each front-end builds the same
network from it. Deployed layers are named identically in all front-ends (see `deployed_layers`), so the
firmware IR can walk any of them the same way.

Roles of the quantizers (all fixed point with power-of-two scales, see trigger.models.quant.QuantFormat):
    input_quant       signed, first thing in the network: the scaled input is snapped to this grid
    weight_quant      signed, every deployed dense kernel
    bias_quant        signed, every deployed dense bias
    activation_quant  unsigned, quantized ReLU after every hidden deployed layer
    output_quant      signed: the AE reconstruction (after the last dense) / the VAE latent means mu
The VAE's log-variance head and decoder are used in training only (the chip computes sum mu_i**2) and are
float layers.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from l1ad.trigger.events import N_FEATURES, N_INPUTS, N_OBJECTS

from .quant import QuantFormat

#: float32 has a 24-bit significand: integers up to 2**24 (times any power of two) are exact, so a dense layer
#: evaluated by TensorFlow/torch in float32 is bit-exact whenever its accumulator fits in 24 bits.
FLOAT32_EXACT_BITS = 24


class QuantSpec(BaseModel):
    """A fixed-point quantizer: `bits` in total, `integer` bits left of the binary point (sign excluded)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    bits: int = Field(ge=2, le=24)
    integer: int = Field(ge=-16, le=20)

    def fmt(self, signed: bool) -> QuantFormat:
        return QuantFormat(self.bits, self.integer, signed)


class DenseLayer(BaseModel):
    """One deployed dense layer as the front-ends build it (derived from the config, not written in YAML)."""

    model_config = ConfigDict(frozen=True)
    name: str
    n_in: int
    n_out: int
    activation: Literal["relu", "linear"]


class ArchitectureConfig(BaseModel):
    """Autoencoder architecture and quantizers. `kind`: "ae" (dense autoencoder, masked squared-error score)
    or "vae" (AXOL1TL-style: encoder-only score sum mu_i**2)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "default"
    kind: Literal["ae", "vae"] = "ae"
    n_inputs: int = Field(default=N_INPUTS, ge=1)
    encoder: list[int] = Field(default_factory=lambda: [32, 16])
    latent: int = Field(default=8, ge=1)
    #: hidden decoder sizes; None mirrors the encoder
    decoder: list[int] | None = None
    input_quant: QuantSpec = QuantSpec(bits=12, integer=3)
    weight_quant: QuantSpec = QuantSpec(bits=8, integer=0)
    bias_quant: QuantSpec = QuantSpec(bits=8, integer=3)
    activation_quant: QuantSpec = QuantSpec(bits=8, integer=3)
    output_quant: QuantSpec = QuantSpec(bits=12, integer=3)
    #: VAE loss = (1 - beta) * sum_j m_j (x_j - xhat_j)**2 + beta * KL   (ignored for the AE). 0.5 would be the ELBO
    #: with a Gaussian likelihood of variance 1/2 per scaled feature, but collapses the posterior (mu = 0 for every
    #: event, a useless score) on toy zero-bias data; 0.2 keeps an informative latent space.
    vae_beta: float = Field(default=0.2, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> "ArchitectureConfig":
        if any(n < 1 for n in self.encoder) or (self.decoder is not None and any(n < 1 for n in self.decoder)):
            raise ValueError("layer sizes must be positive integers")
        for layer, need in self.accumulator_bits().items():
            if need > FLOAT32_EXACT_BITS:
                raise ValueError(
                    f"layer '{layer}' needs a {need}-bit accumulator for these quantizers; the float32 forward pass of "
                    f"QKeras/Brevitas is only bit-exact up to {FLOAT32_EXACT_BITS} bits. Use fewer input/activation/"
                    f"weight bits or fewer integer bits."
                )
        return self

    # ------------------------------------------------------------------ derived structure
    @property
    def decoder_sizes(self) -> list[int]:
        return list(reversed(self.encoder)) if self.decoder is None else list(self.decoder)

    def deployed_layers(self) -> list[DenseLayer]:
        """The dense layers on the chip, in order. AE: enc_1..enc_k, latent, dec_1..dec_m, output (the last one
        linear, followed by the output quantizer). VAE: enc_1..enc_k, mu (linear, followed by the output quantizer)."""
        sizes_in = [self.n_inputs, *self.encoder]
        layers = [DenseLayer(name=f"enc_{i + 1}", n_in=a, n_out=b, activation="relu") for i, (a, b) in enumerate(zip(sizes_in, self.encoder))]
        last = sizes_in[-1]
        if self.kind == "vae":
            return [*layers, DenseLayer(name="mu", n_in=last, n_out=self.latent, activation="linear")]
        layers.append(DenseLayer(name="latent", n_in=last, n_out=self.latent, activation="relu"))
        dec = self.decoder_sizes
        for i, (a, b) in enumerate(zip([self.latent, *dec], dec)):
            layers.append(DenseLayer(name=f"dec_{i + 1}", n_in=a, n_out=b, activation="relu"))
        layers.append(DenseLayer(name="output", n_in=([self.latent, *dec])[-1], n_out=self.n_inputs, activation="linear"))
        return layers

    # ------------------------------------------------------------------ fixed-point formats
    @property
    def input_format(self) -> QuantFormat:
        return self.input_quant.fmt(signed=True)

    @property
    def weight_format(self) -> QuantFormat:
        return self.weight_quant.fmt(signed=True)

    @property
    def bias_format(self) -> QuantFormat:
        return self.bias_quant.fmt(signed=True)

    @property
    def activation_format(self) -> QuantFormat:
        return self.activation_quant.fmt(signed=False)

    @property
    def output_format(self) -> QuantFormat:
        return self.output_quant.fmt(signed=True)

    def accumulator_bits(self) -> dict[str, int]:
        """Per deployed layer: bits (from the accumulator's LSB to its largest magnitude) of sum_k x_k w_k + b,
        with x on the layer's input grid, w and b on theirs."""
        out = {}
        w, b = self.weight_format, self.bias_format
        for i, layer in enumerate(self.deployed_layers()):
            x = self.input_format if i == 0 else self.activation_format
            lsb = min(x.lsb * w.lsb, b.lsb)
            largest = layer.n_in * max(abs(x.min), x.max) * max(abs(w.min), w.max) + max(abs(b.min), b.max)
            out[layer.name] = math.ceil(math.log2(largest / lsb + 1))
        return out

    # ------------------------------------------------------------------ checks and I/O
    def check_n_inputs(self, n_features: int, *, source: str = "the data") -> None:
        """Clear error when the configured input size does not match the data."""
        if n_features != self.n_inputs:
            raise ValueError(
                f"architecture '{self.name}' expects n_inputs={self.n_inputs} features but {source} has {n_features} "
                f"({N_OBJECTS} L1 objects x {N_FEATURES} = {N_INPUTS} for the standard input); fix n_inputs in the config"
            )

    @classmethod
    def default(cls, kind: str = "ae") -> "ArchitectureConfig":
        """The built-in default: 57 -> 32 -> 16 -> 8 (-> 16 -> 32 -> 57 for the AE)."""
        if kind not in ("ae", "vae"):
            raise ValueError(f"unknown architecture kind {kind!r}; expected 'ae' or 'vae'")
        return cls(name=f"{kind}_default", kind=kind)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ArchitectureConfig":
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"architecture config not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of architecture fields, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValueError as e:
            raise ValueError(f"{path}: invalid architecture config: {e}") from e

    @classmethod
    def resolve(cls, spec: "str | Path | ArchitectureConfig") -> "ArchitectureConfig":
        """'ae' / 'vae' (built-in defaults), a YAML path, or a config object."""
        if isinstance(spec, ArchitectureConfig):
            return spec
        if str(spec) in ("ae", "vae"):
            return cls.default(str(spec))
        return cls.from_yaml(spec)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def config_hash(self) -> str:
        from l1ad.trigger.atomic import content_hash

        return content_hash(self.model_dump(mode="json"))
