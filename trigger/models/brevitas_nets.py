"""Brevitas (PyTorch) front-end: the same architecture as QKeras, true fixed point.

Every quantizer has a *constant* power-of-two scale fixed by the architecture config (ScalingImplType.CONST with
RestrictValueType.POWER_OF_TWO; Brevitas then divides by 2**(bits-1) signed / 2**bits unsigned), so
    signed   (input, weights, biases, output): scale 2**(integer - bits + 1), integers [-2**(bits-1), 2**(bits-1)-1]
    unsigned (ReLU activations):               scale 2**(integer - bits),     integers [0, 2**bits - 1]
exactly the grids of QKeras quantized_bits(bits, integer, alpha=1) / quantized_relu(bits, integer); rounding is
half to even (torch.round). Weights use the full range (narrow_range=False, like QKeras).

Deployed module (`BrevitasNet`), attribute names as in ArchitectureConfig.deployed_layers():
    input_quant (QuantIdentity) -> layers[<name>] (QuantLinear) -> acts[<name>] (QuantReLU) ... -> output_quant
Export: brevitas.export.export_qonnx(net, args=torch.zeros(1, 57), export_path=..., dynamo=False).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from l1ad.trigger.atomic import atomic_path

from .arch import ArchitectureConfig
from .quant import QuantFormat
from .runtime import EpochMonitor, import_torch

PREDICT_BATCH = 65536

import torch  # noqa: E402  (thread limits are set by fit(), not at import)

nn = torch.nn


def fixed_point_quant(fmt: QuantFormat, role: str):
    """A Brevitas quantizer injector for `fmt`. role: 'act' (QuantIdentity/QuantReLU), 'weight' or 'bias'."""
    from brevitas.core.function_wrapper import CeilSte
    from brevitas.inject.enum import RestrictValueType, ScalingImplType, ScalingPerOutputType
    from brevitas.quant.base import IntQuant, UintQuant
    from brevitas.quant.solver import ActQuantSolver, BiasQuantSolver, WeightQuantSolver

    solver = {"act": ActQuantSolver, "weight": WeightQuantSolver, "bias": BiasQuantSolver}[role]
    threshold = 2.0**fmt.integer
    attrs = dict(
        bit_width=fmt.bits,
        scaling_impl_type=ScalingImplType.CONST,
        scaling_const=threshold,  # weights/biases
        max_val=threshold,  # activations (ConstScaling initialised from max(|min_val|, |max_val|))
        min_val=-threshold if fmt.signed else 0.0,
        restrict_scaling_type=RestrictValueType.POWER_OF_TWO,
        restrict_value_float_to_int_impl=CeilSte,
        scaling_per_output_type=ScalingPerOutputType.TENSOR,
    )
    if role == "bias":
        attrs["requires_input_scale"] = False
    return type(f"Fixed{'' if fmt.signed else 'U'}{fmt.bits}_{fmt.integer}_{role}", (IntQuant if fmt.signed else UintQuant, solver), attrs)


class BrevitasNet(nn.Module):
    """The on-chip network: scaled input -> reconstruction (AE) or mu (VAE)."""

    def __init__(self, arch: ArchitectureConfig):
        super().__init__()
        from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU

        self.kind = arch.kind
        wq, bq = fixed_point_quant(arch.weight_format, "weight"), fixed_point_quant(arch.bias_format, "bias")
        aq = fixed_point_quant(arch.activation_format, "act")
        self.input_quant = QuantIdentity(act_quant=fixed_point_quant(arch.input_format, "act"))
        spec = arch.deployed_layers()
        self.names = [l.name for l in spec]
        self.layers = nn.ModuleDict({l.name: QuantLinear(l.n_in, l.n_out, bias=True, weight_quant=wq, bias_quant=bq) for l in spec})
        self.acts = nn.ModuleDict({l.name: QuantReLU(act_quant=aq) for l in spec if l.activation == "relu"})
        self.output_quant = QuantIdentity(act_quant=fixed_point_quant(arch.output_format, "act"))
        for layer in self.layers.values():
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def features(self, x):
        """Everything before the last dense layer (for the VAE: the trunk the mu and logvar heads share)."""
        h = self.input_quant(x)
        for name in self.names[:-1]:
            h = self.acts[name](self.layers[name](h))
        return h

    def head(self, h):
        return self.output_quant(self.layers[self.names[-1]](h))

    def forward(self, x):
        return self.head(self.features(x))


class VAETrainer(nn.Module):
    """Training graph of the VAE: deployed encoder (mu) + float logvar head + float decoder."""

    def __init__(self, arch: ArchitectureConfig, encoder: BrevitasNet):
        super().__init__()
        self.encoder = encoder
        trunk = arch.deployed_layers()[-1].n_in
        self.logvar = nn.Linear(trunk, arch.latent)
        nn.init.zeros_(self.logvar.weight)
        nn.init.zeros_(self.logvar.bias)
        sizes = [arch.latent, *arch.decoder_sizes]
        mods: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:]):
            mods += [nn.Linear(a, b), nn.ReLU()]
        mods.append(nn.Linear(sizes[-1], arch.n_inputs))
        self.decoder = nn.Sequential(*mods)

    def forward(self, x):
        h = self.encoder.features(x)
        mu = self.encoder.head(h)
        logvar = self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu
        return self.decoder(z), mu, logvar


def build(arch: ArchitectureConfig, seed: int, quantized: bool = True, threads: int | None = None):
    if not quantized:
        raise ValueError("the Brevitas front-end is always quantized; use frontend 'float' for the float reference")
    torch.manual_seed(seed)
    net = BrevitasNet(arch)
    return VAETrainer(arch, net) if arch.kind == "vae" else net


def deployed(net) -> BrevitasNet:
    return net.encoder if isinstance(net, VAETrainer) else net


def _event_losses(net, arch: ArchitectureConfig, x, t, m):
    """(total, reco, kl) per event."""
    n = arch.n_inputs
    if arch.kind == "ae":
        reco = (m * (t - net(x)) ** 2).sum(dim=1) / n
        return reco, reco, None
    xhat, mu, logvar = net(x)
    reco = (m * (t - xhat) ** 2).sum(dim=1)
    lv = logvar.clamp(-16.0, 16.0)
    kl = -0.5 * (1.0 + lv - mu**2 - lv.exp()).sum(dim=1)
    return (1.0 - arch.vae_beta) * reco + arch.vae_beta * kl, reco, kl


def fit(net, arch: ArchitectureConfig, data, cfg, ckpt_dir: Path | None, desc: str = "training") -> dict:
    threads_before = torch.get_num_threads()
    import_torch(cfg.threads)
    try:
        return _fit(net, arch, data, cfg, ckpt_dir, desc)
    finally:
        torch.set_num_threads(threads_before)  # leave the process as it was (other torch users)


def _fit(net, arch: ArchitectureConfig, data, cfg, ckpt_dir: Path | None, desc: str) -> dict:
    tensors = {k: torch.from_numpy(np.ascontiguousarray(getattr(data, k), dtype=np.float32))
               for k in ("x", "t", "m", "w", "x_val", "t_val", "m_val", "w_val")}
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=cfg.lr_patience) if cfg.lr_patience else None
    rng = np.random.default_rng(cfg.seed)
    monitor = EpochMonitor(cfg.epochs, cfg.patience, cfg.min_delta, cfg.progress, desc)
    best = None
    n = len(data.x)
    try:
        for epoch in range(cfg.epochs):
            net.train()
            perm = torch.from_numpy(rng.permutation(n))
            tot = {"loss": 0.0, "reco": 0.0, "kl": 0.0}
            for i in range(0, n, cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                w = tensors["w"][idx]
                loss, reco, kl = _event_losses(net, arch, tensors["x"][idx], tensors["t"][idx], tensors["m"][idx])
                batch_loss = (w * loss).mean()
                opt.zero_grad(set_to_none=True)
                batch_loss.backward()
                opt.step()
                with torch.no_grad():
                    tot["loss"] += float((w * loss).sum())
                    if kl is not None:
                        tot["reco"] += float((w * reco).sum())
                        tot["kl"] += float((w * kl).sum())
            wsum = float(tensors["w"].sum())
            logs = {"loss": tot["loss"] / wsum}
            val = evaluate(net, arch, tensors["x_val"], tensors["t_val"], tensors["m_val"], tensors["w_val"])
            logs["val_loss"] = val["loss"]
            if arch.kind == "vae":
                logs.update(reco=tot["reco"] / wsum, kl=tot["kl"] / wsum, val_reco=val["reco"], val_kl=val["kl"])
            logs["lr"] = opt.param_groups[0]["lr"]
            improved, stop = monitor.update(epoch, logs)
            if sched is not None:
                sched.step(logs["val_loss"])
            if improved:
                best = {k: v.detach().clone() for k, v in net.state_dict().items()}
                if ckpt_dir is not None:
                    ckpt_dir.mkdir(parents=True, exist_ok=True)
                    with atomic_path(ckpt_dir / "best.pt") as tmp:
                        torch.save(best, tmp)
            if stop:
                break
    finally:
        summary = monitor.close()
    if best is not None:
        net.load_state_dict(best)
    net.eval()
    return summary


def evaluate(net, arch: ArchitectureConfig, x, t, m, w) -> dict[str, float]:
    """Weighted mean losses over a split (eval mode: z = mu for the VAE)."""
    net.eval()
    sums = {"loss": 0.0, "reco": 0.0, "kl": 0.0}
    with torch.no_grad():
        for i in range(0, len(x), PREDICT_BATCH):
            s = slice(i, i + PREDICT_BATCH)
            loss, reco, kl = _event_losses(net, arch, x[s], t[s], m[s])
            sums["loss"] += float((w[s] * loss).sum())
            sums["reco"] += float((w[s] * reco).sum())
            if kl is not None:
                sums["kl"] += float((w[s] * kl).sum())
    wsum = float(w.sum())
    return {k: v / wsum for k, v in sums.items()}


def predict(model: BrevitasNet, xs: np.ndarray) -> np.ndarray:
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(xs, dtype=np.float32))
    with torch.no_grad():
        out = [model(x[i:i + PREDICT_BATCH]) for i in range(0, len(x), PREDICT_BATCH)]
    if not out:
        return np.zeros((0, model.layers[model.names[-1]].out_features))
    return torch.cat(out).numpy().astype(np.float64)


def save(model: BrevitasNet, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)


def load(path: Path, arch: ArchitectureConfig) -> BrevitasNet:
    model = BrevitasNet(arch)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for name in model.names:
        key = f"layers.{name}.weight"
        if key not in state:
            raise ValueError(f"{path}: has no layer '{name}' that the architecture config describes")
        expect = tuple(model.layers[name].weight.shape)
        if tuple(state[key].shape) != expect:
            raise ValueError(f"{path}: layer '{name}' has shape {tuple(state[key].shape[::-1])}, the architecture "
                             f"config says {expect[::-1]}")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: does not match the architecture config: {e}") from None
    model.eval()
    return model


def export_qonnx(model: BrevitasNet, path: Path, n_inputs: int) -> Path:
    """QONNX export with the TorchScript exporter (the dynamo one fails next to TF 2.14, see STACK.md)."""
    from brevitas.export import export_qonnx as _export

    model.eval()
    with atomic_path(path, suffix=".onnx") as tmp:
        _export(model, args=torch.zeros(1, n_inputs), export_path=str(tmp), dynamo=False)
    return Path(path)
