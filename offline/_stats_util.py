"""Small helpers shared by the offline statistics modules."""
from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Limit OpenMP/BLAS to one thread inside the block (scikit-learn's k-means, GBDT, ...).

    Import the estimator classes *before* entering: threadpoolctl limits only the runtimes already loaded.
    On the small, loaded machines this runs on, two spin-waiting OpenMP threads were measured ~30x slower than
    one (a 4000-event quantile HistGradientBoosting fit: 76 s vs 2.5 s).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield
