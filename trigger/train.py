"""Training of the autoencoders on weighted zero-bias data, for every front-end, and the latent-size scan.

train_model(frontend, arch, batch, cfg, out_dir) does, reproducibly from cfg.seed:
  1. hardware inputs x_hw = hw_inputs(batch.objects); a seeded train/validation split;
  2. InputScaler fitted (weighted) on the training split; network input xs = scaler.transform(x_hw);
  3. reconstruction target = the quantized input (input_format.quantize(xs); the float reference uses xs),
     mask = trigger.scores.input_mask_hw(x_hw), weights normalised to mean 1 per split;
  4. front-end training: weighted loss (AE: sum_j m_j (x_j - xhat_j)**2 / n_inputs; VAE:
     (1 - beta) * sum_j m_j (x_j - xhat_j)**2 + beta * KL), Adam, early stopping on validation loss with the best weights restored,
     a best-weights checkpoint in out_dir/checkpoints, ReduceLROnPlateau, a progress bar over epochs;
  5. the model directory (trigger.modeldir) with metadata: versions, config hashes, data and training figures.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from l1ad.trigger.atomic import content_hash, write_json_atomic
from l1ad.trigger.events import EventBatch
from l1ad.trigger.l1units import hw_inputs
from l1ad.trigger.modeldir import TrainedModel, save_model
from l1ad.trigger.models.arch import ArchitectureConfig
from l1ad.trigger.models.backend import TrainData, get_backend
from l1ad.trigger.models.runtime import available_cores, package_versions
from l1ad.trigger.scaler import InputScaler
from l1ad.trigger.scores import input_mask_hw

log = logging.getLogger(__name__)


class TrainingConfig(BaseModel):
    """Optimisation settings. The defaults train the default architecture on 50k events in about a minute
    per front-end on 2 CPU cores."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(default=60, ge=1)
    batch_size: int = Field(default=512, ge=1)
    learning_rate: float = Field(default=3e-3, gt=0)
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    #: early stopping: epochs without a validation improvement larger than min_delta
    patience: int = Field(default=8, ge=1)
    min_delta: float = Field(default=0.0, ge=0)
    #: halve the learning rate after this many epochs without improvement (0: constant rate)
    lr_patience: int = Field(default=4, ge=0)
    seed: int = 0
    #: CPU threads for TensorFlow / torch, capped at the cores this process may use. 1 is fastest for these tiny
    #: networks: intra-op parallelism on 512x57x32 products costs more than it gains, and much more (OpenMP
    #: spin-waits) on a busy machine: measured 11 ms vs 206 ms CPU per Brevitas step, 1 vs 2 threads, loaded host.
    #: TensorFlow fixes its pools at first use in a process: a later, different value has no effect there.
    threads: int = Field(default=1, ge=1)
    progress: bool = True
    #: write the loss-curve figure training.png into the model directory
    plot: bool = True


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train / validation split (sorted index arrays)."""
    if n < 4:
        raise ValueError(f"need at least 4 events to train (training and validation split), got {n}")
    n_val = min(n - 2, max(2, int(round(val_fraction * n))))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _check_weights(w: np.ndarray, what: str) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    if (w < 0).any():
        raise ValueError(f"{what}: {int((w < 0).sum())} negative event weight(s); training needs non-negative weights")
    if not w.sum() > 0:
        raise ValueError(f"{what}: the event weights sum to zero")
    return w


def prepare(arch: ArchitectureConfig, batch: EventBatch, cfg: TrainingConfig, *, quantized: bool):
    """(scaler, TrainData, (train index, val index), x_hw) for a batch."""
    x_hw = hw_inputs(batch.objects).astype(np.float64)
    arch.check_n_inputs(x_hw.shape[1])
    w = _check_weights(batch.weight, "training data")
    tr, va = split_indices(len(batch), cfg.val_fraction, cfg.seed)
    _check_weights(w[tr], "training split")
    _check_weights(w[va], "validation split")
    scaler = InputScaler.fit(x_hw[tr], w[tr])
    xs = scaler.transform(x_hw)
    t = arch.input_format.quantize(xs) if quantized else xs
    m = input_mask_hw(x_hw).astype(np.float32)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    data = TrainData(
        x=f32(xs[tr]), t=f32(t[tr]), m=m[tr], w=f32(w[tr] / w[tr].mean()),
        x_val=f32(xs[va]), t_val=f32(t[va]), m_val=m[va], w_val=f32(w[va] / w[va].mean()),
    )
    return scaler, data, (tr, va), x_hw


def train_model(
    frontend: str,
    arch: ArchitectureConfig | str | Path,
    batch: EventBatch,
    cfg: TrainingConfig | None = None,
    out_dir: str | Path | None = None,
) -> TrainedModel:
    """Train one front-end ("qkeras" | "brevitas" | "float") and, with out_dir, save its model directory."""
    cfg = cfg or TrainingConfig()
    arch = ArchitectureConfig.resolve(arch)
    backend = get_backend(frontend)
    out = Path(out_dir) if out_dir is not None else None
    threads = min(cfg.threads, available_cores())
    t0 = time.perf_counter()
    scaler, data, (tr, va), x_hw = prepare(arch, batch, cfg, quantized=backend.quantized)
    net = backend.build(arch, cfg.seed, threads)
    summary = backend.fit(net, arch, data, cfg.model_copy(update={"threads": threads}),
                          ckpt_dir=out / "checkpoints" if out else None, desc=f"{frontend} {arch.kind} {arch.name}")
    model = TrainedModel(frontend=frontend, arch=arch, scaler=scaler, network=backend.deployed(net))
    t_val = time.perf_counter()
    val_scores = model.score(x_hw[va])
    score_seconds = time.perf_counter() - t_val
    fmt = arch.input_format
    xs_tr = scaler.transform(x_hw[tr])
    present = input_mask_hw(x_hw[tr])
    saturated = present & ((xs_tr < fmt.min) | (xs_tr > fmt.max)) if backend.quantized else np.zeros_like(present)
    wv = batch.weight[va]
    model.metadata = {
        "created_unix": time.time(),
        "versions": package_versions(),
        "arch_hash": arch.config_hash(),
        "training_config": cfg.model_dump(mode="json"),
        "training_config_hash": content_hash(cfg.model_dump(mode="json", exclude={"progress", "plot", "threads"})),
        "threads": threads,
        "data": {
            "n_events": len(batch), "n_train": int(len(tr)), "n_val": int(len(va)),
            "weight_sum_train": float(batch.weight[tr].sum()), "weight_sum_val": float(wv.sum()),
            "processes": batch.summary()["processes"],
        },
        "training": summary,
        "setup_seconds": t_val - t0 - summary["train_seconds"],
        "events_per_second_train": summary["epochs_run"] * len(tr) / max(summary["train_seconds"], 1e-9),
        "score_events_per_second": len(va) / max(score_seconds, 1e-9),
        "input_saturation_fraction": float(saturated.sum() / max(present.sum(), 1)),
        "val_score": {
            "weighted_mean": float(np.average(val_scores, weights=wv)) if wv.sum() > 0 else float("nan"),
            "quantiles": {str(q): float(np.quantile(val_scores, q)) for q in (0.5, 0.9, 0.99, 0.999)},
        },
    }
    log.info("%s %s: %d epochs in %.1f s, best val loss %.5g (epoch %d)", frontend, arch.name, summary["epochs_run"],
             summary["train_seconds"], summary["best_val_loss"], summary["best_epoch"] + 1)
    if out is not None:
        save_model(model, out)
        if cfg.plot:
            plot_history(summary["history"], out / "training.png", title=f"{frontend} {arch.kind} '{arch.name}'")
    return model


def plot_history(history: list[dict], path: Path, *, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from l1ad.trigger.atomic import atomic_path

    ep = [h["epoch"] + 1 for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ep, [h["loss"] for h in history], label="training")
    ax.plot(ep, [h["val_loss"] for h in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("weighted loss")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- latent scan
def find_elbow(latents: Sequence[int], losses: Sequence[float]) -> int:
    """The elbow of a decreasing loss-vs-latent curve: the point farthest below the chord from the first to the
    last point, in (log2 latent, normalised loss) coordinates."""
    if len(latents) < 3:
        return int(latents[int(np.argmin(losses))])
    x = np.log2(np.asarray(latents, dtype=float))
    y = np.asarray(losses, dtype=float)
    x = (x - x[0]) / (x[-1] - x[0])
    span = y.max() - y.min()
    y = (y - y.min()) / span if span > 0 else np.zeros_like(y)
    chord = y[0] + (y[-1] - y[0]) * x
    return int(latents[int(np.argmax(chord - y))])


def latent_scan(
    frontend: str,
    arch: ArchitectureConfig | str | Path,
    batch: EventBatch,
    cfg: TrainingConfig | None = None,
    latents: Sequence[int] = (2, 4, 6, 8, 12, 16),
    out_dir: str | Path = "latent_scan",
) -> dict:
    """Train one model per latent size (everything else fixed) and plot the best validation loss against it.

    Writes out_dir/latent_<k>/ (model directories), out_dir/latent_scan.json and out_dir/latent_scan.png.
    For the VAE the curve uses the validation reconstruction term (the KL term grows with the latent size)."""
    cfg = cfg or TrainingConfig()
    base = ArchitectureConfig.resolve(arch)
    out = Path(out_dir)
    latents = sorted({int(k) for k in latents})
    rows = []
    for k in latents:
        arch_k = ArchitectureConfig.model_validate({**base.model_dump(), "latent": k, "name": f"{base.name}_latent{k}"})
        model = train_model(frontend, arch_k, batch, cfg, out / f"latent_{k}")
        tr = model.metadata["training"]
        best = tr["history"][tr["best_epoch"]]
        rows.append({"latent": k, "val_loss": tr["best_val_loss"], "val_reco": best.get("val_reco", best["val_loss"]),
                     "epochs_run": tr["epochs_run"], "train_seconds": tr["train_seconds"]})
    key = "val_reco" if base.kind == "vae" else "val_loss"
    elbow = find_elbow(latents, [r[key] for r in rows])
    result = {"frontend": frontend, "arch": base.name, "kind": base.kind, "metric": key, "elbow": elbow, "points": rows}
    write_json_atomic(out / "latent_scan.json", result)
    _plot_scan(result, out / "latent_scan.png")
    return result


def _plot_scan(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from l1ad.trigger.atomic import atomic_path

    k = [p["latent"] for p in result["points"]]
    y = [p[result["metric"]] for p in result["points"]]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(k, y, "o-")
    e = result["elbow"]
    ax.plot([e], [y[k.index(e)]], "r*", ms=14, label=f"elbow: latent {e}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(k, [str(v) for v in k])
    ax.set_xlabel("latent dimension")
    ax.set_ylabel(f"best {result['metric'].replace('_', ' ')}")
    ax.set_title(f"{result['frontend']} {result['kind']} '{result['arch']}'", fontsize=9)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
