"""Framework start-up shared by the front-ends: thread limits, seeds, the epoch monitor (early stopping and
progress bar), and package versions for model metadata."""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any TensorFlow import: no start-up banner


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def import_tf(threads: int | None = None):
    """Import TensorFlow; with `threads`, limit its intra-op pool to that many threads. TensorFlow fixes its pools
    when its runtime starts (first op or variable), so only the first limit set in a process takes effect; without
    any, the pools default to the cores this process may use (never to the host's core count)."""
    n = str(available_cores())
    for var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, n)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    import tensorflow as tf

    if threads is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # runtime already started in this process
            pass
    return tf


def import_torch(threads: int | None = None):
    """Import torch; with `threads`, set its intra-op thread count (changeable at any time)."""
    import torch

    if threads is not None:
        torch.set_num_threads(int(threads))
    return torch


def seed_tf(seed: int) -> None:
    tf = import_tf()
    tf.keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # pragma: no cover - older TF
        pass


def package_versions() -> dict[str, str]:
    """Versions of the packages a trained model depends on (those importable without side effects)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("l1ad", "numpy", "tensorflow", "keras", "qkeras", "torch", "brevitas", "qonnx", "pydantic"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


@dataclass
class EpochMonitor:
    """Early stopping on val_loss, per-epoch history and a tqdm progress bar over epochs."""

    epochs: int
    patience: int
    min_delta: float = 0.0
    progress: bool = True
    desc: str = "training"
    history: list[dict[str, float]] = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int = -1
    _bar: Any = None
    _t0: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        if self.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.epochs, desc=self.desc, unit="epoch", file=sys.stderr, leave=False, mininterval=0.5)

    def update(self, epoch: int, logs: dict[str, float]) -> tuple[bool, bool]:
        """Record one epoch; returns (improved, stop)."""
        row = {"epoch": epoch, **{k: float(v) for k, v in logs.items()}, "elapsed_s": time.perf_counter() - self._t0}
        self.history.append(row)
        val = row["val_loss"]
        if not math.isfinite(val):
            raise FloatingPointError(f"validation loss is {val} at epoch {epoch}; lower the learning rate")
        improved = val < self.best_val - self.min_delta
        if improved:
            self.best_val, self.best_epoch = val, epoch
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{row['loss']:.4g}", val=f"{val:.4g}", best=self.best_epoch + 1, refresh=False)
            self._bar.update(1)
        stop = epoch - self.best_epoch >= self.patience
        return improved, stop

    def close(self) -> dict[str, Any]:
        if self._bar is not None:
            self._bar.close()
        return {
            "epochs_run": len(self.history),
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val,
            "train_seconds": time.perf_counter() - self._t0,
            "history": self.history,
        }
