"""Thread limits for the offline learners: torch and the OpenMP/BLAS pools stay at a small number of threads
(the machines this runs on have few cores, and Dask workers run several tasks side by side).

The default is one thread (override with L1AD_OFFLINE_THREADS, at most 2 is sensible here): the models are
small, and on a loaded 2-core machine two OpenMP threads were measured 13-18x *slower* than one (a 4-feature
MAF step 5.5 ms vs 73 ms; a 100k-event HistGradientBoosting fit 0.8 s vs 14.6 s) because of spin-waiting.
Parallelism comes from running independent fits side by side (Dask workers), not from threads inside a fit."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

DEFAULT_THREADS = int(os.environ.get("L1AD_OFFLINE_THREADS", "1"))


def set_torch_threads(n: int = DEFAULT_THREADS) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        if torch.get_num_interop_threads() != n:
            torch.set_num_interop_threads(n)
    except RuntimeError:  # interop threads can be set only before the first parallel work
        pass


@contextlib.contextmanager
def limited_threads(n: int = DEFAULT_THREADS) -> Iterator[None]:
    """Limit torch, OpenMP (scikit-learn's histogram GBDT) and BLAS to `n` threads inside the block."""
    from threadpoolctl import threadpool_limits

    try:
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover
        torch, old = None, None
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(old)
