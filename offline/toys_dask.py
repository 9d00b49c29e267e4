"""Pseudo-experiments (toys) on Dask: a local cluster by default, any running scheduler by address.

    results = map_toys(task, seeds, shared={"X_ref": X_ref}, scheduler=None)        # local cluster
    results = map_toys(task, seeds, shared=..., scheduler="tcp://10.0.0.5:8786")     # existing cluster
    results = map_toys(task, seeds, shared=..., scheduler="sync")                    # in-process, no Dask

`task(seed, **shared, **kwargs)` must be a module-level function (it is pickled to the workers). Large
arrays in `shared` are scattered once to every worker, not shipped with each toy. Each toy is seeded by its
own integer, so the results do not depend on the scheduler, the number of workers or the order of execution.

The local cluster starts worker *processes* (spawn): a script that calls this at import time must guard its
entry point with ``if __name__ == "__main__":``, as for any multiprocessing code.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterator, Mapping, Sequence

from l1ad.offline._threads import DEFAULT_THREADS


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, *, n_workers: int | None = None, threads_per_worker: int = 1,
                processes: bool = True) -> Iterator[Any]:
    """A distributed.Client: connected to `scheduler` (an address) or to a fresh LocalCluster that is closed
    on exit. Workers run single-threaded tasks (torch / OpenMP pinned to one thread each)."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    n = n_workers or min(os.cpu_count() or 1, 4)
    env = {"OMP_NUM_THREADS": str(DEFAULT_THREADS), "MKL_NUM_THREADS": str(DEFAULT_THREADS),
           "OPENBLAS_NUM_THREADS": str(DEFAULT_THREADS)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # inherited by the worker processes
    try:
        cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=processes,
                               host="127.0.0.1", dashboard_address=":0", silence_logs=40)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def map_toys(task: Callable[..., Any], seeds: Sequence[int], *, shared: Mapping[str, Any] | None = None,
             scheduler: str | None = None, n_workers: int | None = None, client: Any = None, **kwargs: Any) -> list:
    """Run task(seed, **shared, **kwargs) for every seed; results in the order of `seeds`.

    scheduler: None = a local Dask cluster, "sync" = a plain loop in this process, otherwise a scheduler
    address such as tcp://host:8786. An existing `client` may be passed instead.
    """
    shared = dict(shared or {})
    seeds = [int(s) for s in seeds]
    if scheduler == "sync" and client is None:
        return [task(s, **shared, **kwargs) for s in seeds]
    if client is not None:
        return _run(client, task, seeds, shared, kwargs)
    with dask_client(scheduler, n_workers=n_workers) as c:
        return _run(c, task, seeds, shared, kwargs)


def _run(client: Any, task: Callable[..., Any], seeds: list[int], shared: dict, kwargs: dict) -> list:
    # hash=False: a fresh key per call; with content hashing, a second map over the same array on one client
    # reuses the key and loses the data when the first call's futures are released ("lost dependencies")
    scattered = {k: client.scatter(v, broadcast=True, hash=False) for k, v in shared.items()}
    futures = client.map(task, seeds, pure=False, **scattered, **kwargs)
    return client.gather(futures)
