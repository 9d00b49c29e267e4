"""PyTorch / Brevitas front-end of the CICADA-style trigger: the same teacher and student as cicada_keras, channels
first (N, 1, 18, 14).

Teacher: plain torch (float, training only), the layers of cicada_keras.build_teacher.
Student: Brevitas with fixed-point (constant power-of-two scale) quantizers, the grids of the QKeras student
(trigger.models.brevitas_nets.fixed_point_quant):
    input_quant (QuantIdentity) -> [conv (QuantConv2d, valid) -> conv_relu (QuantReLU)] -> flatten (channels first)
    -> dense_<i> (QuantLinear) -> QuantReLU ... -> output (QuantLinear) -> output_quant (QuantIdentity)
Export: brevitas.export.export_qonnx(student, args=torch.zeros(1, 1, 18, 14), ..., dynamo=False).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from l1ad.trigger.atomic import atomic_path

from .runtime import EpochMonitor, import_torch

PREDICT_BATCH = 8192
MODEL_SUFFIX = ".pt"

import torch  # noqa: E402

nn = torch.nn


class Teacher(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        f = list(cfg.teacher_filters)
        self.f1 = f[0]
        mods: list[nn.Module] = [nn.Conv2d(1, f[0], 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)]
        for a, b in zip(f, f[1:]):
            mods += [nn.Conv2d(a, b, 3, padding=1), nn.ReLU()]
        mods += [nn.Flatten(), nn.Linear(9 * 7 * f[-1], cfg.teacher_latent), nn.ReLU(),
                 nn.Linear(cfg.teacher_latent, 9 * 7 * f[0]), nn.ReLU()]
        self.enc = nn.Sequential(*mods)
        self.dec = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(f[0], 1, 3, padding=1))

    def forward(self, x):
        return self.dec(self.enc(x).view(-1, self.f1, 9, 7))


class Student(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU

        from .brevitas_nets import fixed_point_quant

        wq = fixed_point_quant(cfg.weight_quant.fmt(True), "weight")
        bq = fixed_point_quant(cfg.bias_quant.fmt(True), "bias")
        aq = fixed_point_quant(cfg.activation_quant.fmt(False), "act")
        self.input_quant = QuantIdentity(act_quant=fixed_point_quant(cfg.input_quant.fmt(True), "act"))
        self.conv = self.conv_relu = self.pool = None
        n = 18 * 14
        if cfg.student == "conv":
            self.conv = QuantConv2d(1, cfg.student_filters, cfg.student_kernel, stride=cfg.student_stride, padding=0,
                                    bias=True, weight_quant=wq, bias_quant=bq)
            self.conv_relu = QuantReLU(act_quant=aq, return_quant_tensor=cfg.student_pool > 1)
            self.pool = nn.MaxPool2d(cfg.student_pool) if cfg.student_pool > 1 else None
            n = cfg.student_flat_size
        self.dense = nn.ModuleList()
        self.relus = nn.ModuleList()
        for h in cfg.student_hidden:
            self.dense.append(QuantLinear(n, h, bias=True, weight_quant=wq, bias_quant=bq))
            self.relus.append(QuantReLU(act_quant=aq))
            n = h
        self.output = QuantLinear(n, 1, bias=True, weight_quant=wq, bias_quant=bq)
        self.output_quant = QuantIdentity(act_quant=fixed_point_quant(cfg.output_quant.fmt(True), "act"))
        for m in [*self.dense, self.output, *([self.conv] if self.conv is not None else [])]:
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x):
        h = self.input_quant(x)
        if self.conv is not None:
            h = self.conv_relu(self.conv(h))
            if self.pool is not None:
                h = self.pool(h)
        h = torch.flatten(h, 1)
        for d, r in zip(self.dense, self.relus):
            h = r(d(h))
        return self.output_quant(self.output(h))


def build_teacher(cfg, seed: int) -> Teacher:
    torch.manual_seed(seed)
    return Teacher(cfg)


def build_student(cfg, seed: int) -> Student:
    torch.manual_seed(seed + 1)
    return Student(cfg)


def n_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


# ---------------------------------------------------------------------------------------------- training
def fit(model, x, y, w, x_val, y_val, w_val, *, epochs: int, cfg, learning_rate: float, desc: str) -> dict:
    threads_before = torch.get_num_threads()
    import_torch(cfg.threads)
    try:
        return _fit(model, x, y, w, x_val, y_val, w_val, epochs, cfg, learning_rate, desc)
    finally:
        torch.set_num_threads(threads_before)


def _per_sample(pred, y):
    return ((pred - y) ** 2).flatten(1).mean(dim=1)


def _fit(model, x, y, w, x_val, y_val, w_val, epochs, cfg, learning_rate, desc) -> dict:
    t = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
         for k, v in dict(x=x, y=y, w=w, x_val=x_val, y_val=y_val, w_val=w_val).items()}
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=cfg.lr_patience) if cfg.lr_patience else None
    rng = np.random.default_rng(cfg.seed)
    monitor = EpochMonitor(epochs, cfg.patience, 0.0, cfg.progress, desc)
    best = None
    n = len(x)
    try:
        for epoch in range(epochs):
            model.train()
            perm = torch.from_numpy(rng.permutation(n))
            tot = 0.0
            for i in range(0, n, cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                loss = t["w"][idx] * _per_sample(model(t["x"][idx]), t["y"][idx])
                opt.zero_grad(set_to_none=True)
                loss.mean().backward()
                opt.step()
                tot += float(loss.detach().sum())
            model.eval()
            with torch.no_grad():
                val = sum(float((t["w_val"][s] * _per_sample(model(t["x_val"][s]), t["y_val"][s])).sum())
                          for s in (slice(i, i + PREDICT_BATCH) for i in range(0, len(x_val), PREDICT_BATCH)))
            logs = {"loss": tot / float(t["w"].sum()), "val_loss": val / float(t["w_val"].sum()), "lr": opt.param_groups[0]["lr"]}
            improved, stop = monitor.update(epoch, logs)
            if sched is not None:
                sched.step(logs["val_loss"])
            if improved:
                best = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if stop:
                break
    finally:
        summary = monitor.close()
    if best is not None:
        model.load_state_dict(best)
    model.eval()
    return summary


def predict(model, x: np.ndarray) -> np.ndarray:
    model.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    with torch.no_grad():
        out = [model(xt[i:i + PREDICT_BATCH]) for i in range(0, len(xt), PREDICT_BATCH)]
    if not out:
        return np.zeros((0, 1))
    return torch.cat(out).numpy().astype(np.float64)


def image_layout(x: np.ndarray) -> np.ndarray:
    """(N, 18, 14) -> the network's (N, 1, 18, 14) channels-first input."""
    return np.ascontiguousarray(x[:, None], dtype=np.float32)


# ---------------------------------------------------------------------------------------------- IO
def save(model, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)


def load(path: Path, cfg, role: str):
    model = (Student if role == "student" else Teacher)(cfg)
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: does not match the CICADA configuration ({role}): {e}") from None
    model.eval()
    return model


def export_qonnx(model: Student, path: Path) -> Path:
    """QONNX export of the student (TorchScript exporter, as brevitas_nets.export_qonnx)."""
    from brevitas.export import export_qonnx as _export

    model.eval()
    with atomic_path(path, suffix=".onnx") as tmp:
        _export(model, args=torch.zeros(1, 1, 18, 14), export_path=str(tmp), dynamo=False)
    return Path(path)
