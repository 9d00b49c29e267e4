"""Background-only CWoLa hunts with every classifier retrained, on Dask: the global p-value of a hunt.

`hunt_efficiencies` runs one hunt at several efficiency cuts (as the CWoLa-hunting paper does: the classifiers
are trained once per window, each cut selects and bump-tests separately); the statistic of the whole search
is the largest t over windows *and* cuts, so the toys carry the look-elsewhere effect of both.

`null_toys` maps `toy_task` over seeds with `offline.toys_dask.map_toys`. Each toy is a background-only sample:

* ``source="toy"``: `offline.lhco_toy` background (n_bkg events), i.e. the simulation the method is studied on;
* ``source="permute"``: the data's own events with m_JJ permuted among them (data-driven; keeps the feature
  and m_JJ marginals, removes any localised feature excess, and also the background's feature-m_JJ
  correlation, so it does not probe sculpting).

Cost: one toy is a full hunt (windows x folds classifiers); measured ~10-30 s for 12 windows, 3 folds, 60
boosting iterations and 20-60k events on one core of the 2-core development machine.
"""
from __future__ import annotations

import math
import time
from dataclasses import fields
from typing import Sequence

import numpy as np

from l1ad.offline import lhco_toy
from l1ad.offline.cwola_hunting import (SIDAK_LABEL, HuntConfig, HuntResult, selected_window_test, window_scores,
                                        window_starts)
from l1ad.offline.dijet import DijetSample

__all__ = ["SearchResult", "cwola_search", "global_p", "hunt_efficiencies", "null_toys", "toy_task", "t_max_over"]



class SearchResult:
    """A search over windows x efficiency cuts (CWoLa hunting, the CATHODE scan): per cut a `HuntResult`, the
    largest t over windows and cuts, and its global p: from retrained background-only toys when they were run
    (``(1 + #{toys with t_max >= t_obs}) / (1 + n_toys)``), else the Sidak quick estimate, labelled so."""

    def __init__(self, per_efficiency: dict[float, HuntResult], t_max_toys: np.ndarray | None = None):
        self.per_efficiency = per_efficiency
        self.t_max_toys = None if t_max_toys is None else np.asarray(t_max_toys, dtype=float)

    @property
    def t_max(self) -> float:
        return float(max(r.t_max for r in self.per_efficiency.values()))

    @property
    def p_min(self) -> float:
        return float(min(r.p_min for r in self.per_efficiency.values()))

    @property
    def n_tests(self) -> int:
        return sum(len(r.windows) for r in self.per_efficiency.values())

    @property
    def global_p_sidak(self) -> float:
        """1 - (1 - p_min)^n_tests: ignores correlations and the local p's own miscalibration."""
        return float(-math.expm1(self.n_tests * math.log1p(-min(self.p_min, 1 - 1e-16))))

    @property
    def global_p_toys(self) -> float | None:
        if self.t_max_toys is None or self.t_max_toys.size == 0:
            return None
        return global_p(self.t_max, self.t_max_toys)

    @property
    def global_p(self) -> float:
        p = self.global_p_toys
        return self.global_p_sidak if p is None else p

    @property
    def global_p_method(self) -> str:
        if self.global_p_toys is None:
            return SIDAK_LABEL
        return f"toys ({self.t_max_toys.size} retrained background-only searches)"

    def with_toys(self, toys) -> "SearchResult":
        """A copy carrying the t_max of background-only toys (`null_toys` dicts or their t_max values)."""
        t = np.array([d["t_max"] for d in toys] if len(toys) and isinstance(toys[0], dict) else toys, dtype=float)
        if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
            raise ValueError("toys must be a non-empty list of finite t_max values (or null_toys results)")
        return SearchResult(self.per_efficiency, t)

    def summary(self) -> dict:
        from scipy import stats

        return {"t_max": self.t_max, "p_min": self.p_min, "n_tests": self.n_tests,
                "global_p": self.global_p, "global_z": float(stats.norm.isf(self.global_p)),
                "global_p_method": self.global_p_method, "global_p_toys": self.global_p_toys,
                "n_toys": 0 if self.t_max_toys is None else int(self.t_max_toys.size),
                "global_p_sidak": self.global_p_sidak, "global_p_sidak_note": SIDAK_LABEL,
                "per_efficiency": {str(x): {"t_max": r.t_max, "p_min": r.p_min,
                                            "windows": [w.as_dict() for w in r.windows]}
                                   for x, r in self.per_efficiency.items()}}


def hunt_efficiencies(sample: DijetSample, cfg: HuntConfig, efficiencies: Sequence[float]) -> dict[float, HuntResult]:
    """One hunt, classifiers trained once per window, bump-tested at every efficiency cut."""
    effs = tuple(float(x) for x in efficiencies)
    if not effs or any(not 0 < x <= 1 for x in effs):
        raise ValueError(f"efficiencies must be a non-empty list in (0, 1], got {list(efficiencies)}")
    X = sample.features
    e = np.asarray(cfg.edges)
    all_counts, _ = np.histogram(sample.mjj, bins=e, weights=sample.weight)
    starts = window_starts(cfg)
    if not starts:
        raise ValueError("no window fits the histogram with its sidebands; check edges / first_window_lo / last_window_hi")
    per = {x: ([], []) for x in effs}
    for k in starts:
        score = window_scores(sample, k, cfg, X)
        for x in effs:
            w, c = selected_window_test(sample.mjj, sample.weight, score, k, cfg.model_copy(update={"efficiency": x}))
            per[x][0].append(w)
            per[x][1].append(c)
    return {x: HuntResult(ws, e, cs, all_counts, cfg.model_copy(update={"efficiency": x})) for x, (ws, cs) in per.items()}


def t_max_over(results: dict[float, HuntResult]) -> float:
    """The search statistic: the largest window t over all efficiency cuts."""
    return float(max(r.t_max for r in results.values()))


def _permuted(seed: int, arrays: dict) -> DijetSample:
    rng = np.random.default_rng(seed)
    d = dict(arrays)
    d["mjj"] = d["mjj"][rng.permutation(len(d["mjj"]))]
    return DijetSample(**d)


def toy_source(source: str, n_bkg: int, data: DijetSample | None) -> dict:
    """The data every background-only toy task shares: nothing for fresh toys (source "toy", n_bkg events each),
    the sample's columns for m_JJ-permuted copies (source "permute")."""
    if source == "toy":
        if n_bkg < 1000:
            raise ValueError(f"source='toy' needs n_bkg >= 1000 background events, got {n_bkg}")
        return {}
    if source == "permute":
        if data is None:
            raise ValueError("source='permute' needs the data sample (data=...)")
        return {"data": {f.name: getattr(data, f.name) for f in fields(DijetSample)}}
    raise ValueError(f"source must be 'toy' or 'permute', got {source!r}")


def toy_task(seed: int, cfg_json: str, efficiencies: tuple[float, ...], n_bkg: int = 0, toy_json: str | None = None,
             data: dict | None = None) -> dict:
    """One background-only hunt (module level, so Dask can ship it); returns t_max and per-cut details."""
    from l1ad.offline._threads import limited_threads

    t0 = time.perf_counter()
    cfg = HuntConfig.model_validate_json(cfg_json).model_copy(update={"seed": int(seed)})
    if data is not None:
        sample = _permuted(seed, data)
    else:
        toy = lhco_toy.ToyConfig() if toy_json is None else lhco_toy.ToyConfig.model_validate_json(toy_json)
        sample = lhco_toy.make_dataset(n_bkg, 0.0, seed=int(seed), cfg=toy)
    with limited_threads(1):
        res = hunt_efficiencies(sample, cfg, efficiencies)
    return {"seed": int(seed), "t_max": t_max_over(res), "seconds": time.perf_counter() - t0,
            "per_efficiency": {str(x): {"t_max": r.t_max, "p_min": r.p_min, "p_sidak": r.global_p_sidak,
                                        "p_local": [w.p_local for w in r.windows], "fit_p": [w.fit_p for w in r.windows]}
                               for x, r in res.items()}}


def null_toys(cfg: HuntConfig, n_toys: int, *, efficiencies: Sequence[float] | None = None, source: str = "toy",
              n_bkg: int = 0, toy: lhco_toy.ToyConfig | None = None, data: DijetSample | None = None,
              seed: int = 100_000, scheduler: str | None = None, n_workers: int | None = None, client=None) -> list[dict]:
    """`n_toys` background-only hunts on Dask (see the module docstring); results in seed order."""
    from l1ad.offline.toys_dask import map_toys

    if n_toys < 1:
        raise ValueError(f"n_toys must be >= 1, got {n_toys}")
    effs = (cfg.efficiency,) if efficiencies is None else tuple(float(x) for x in efficiencies)
    shared = toy_source(source, n_bkg, data)
    return map_toys(toy_task, [seed + i for i in range(n_toys)], shared=shared, scheduler=scheduler, n_workers=n_workers,
                    client=client,
                    cfg_json=cfg.model_dump_json(), efficiencies=effs, n_bkg=int(n_bkg),
                    toy_json=None if toy is None else toy.model_dump_json())


def global_p(t_obs: float, toys: Sequence[dict] | np.ndarray) -> float:
    """(1 + #{t_max_toy >= t_obs}) / (1 + n_toys) from `null_toys` results (or their t_max values)."""
    t = np.array([d["t_max"] for d in toys] if len(toys) and isinstance(toys[0], dict) else toys, dtype=float)
    if t.size == 0:
        raise ValueError("no toys: the toy global p-value needs at least one background-only hunt")
    return float((1 + np.sum(t >= t_obs)) / (1 + t.size))


def cwola_search(sample: DijetSample, cfg: HuntConfig, efficiencies: Sequence[float] = (0.2, 0.05), *, n_toys: int = 0,
                 source: str = "toy", n_bkg: int = 0, toy: lhco_toy.ToyConfig | None = None,
                 toys: Sequence[dict] | None = None, seed: int = 100_000, scheduler: str | None = None,
                 n_workers: int | None = None) -> SearchResult:
    """CWoLa hunting at several efficiency cuts with its global p from `n_toys` retrained background-only hunts
    (or saved `toys`); without toys the Sidak quick estimate, labelled so."""
    res = SearchResult(hunt_efficiencies(sample, cfg, efficiencies))
    if toys is None and n_toys > 0:
        toys = null_toys(cfg, n_toys, efficiencies=efficiencies, source=source, n_bkg=n_bkg, toy=toy,
                         data=sample if source == "permute" else None, seed=seed, scheduler=scheduler, n_workers=n_workers)
    return res.with_toys(toys) if toys else res
