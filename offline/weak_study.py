"""The weak-supervision benchmark: SIC curves of every method at several injected S/B on one dijet sample.

For each injected S/B a data set is formed (the same background events, signal added), every method is
trained on it, and its score is evaluated on an independent labelled signal-region test set. Methods:

=============  ===============================================================================
supervised     labelled signal vs background in the SR (upper reference)
idealised      SR data vs a perfect background template (upper reference for template methods)
cathode        SR data vs flow samples interpolated from the sidebands
cwola_bdt      SR vs sidebands, BDT ensemble (= the CWoLa-hunting classifier at the true window)
cwola_nn       the same with a neural network
tnt            Tag N' Train: SR vs sidebands purified by an autoencoder tag on the other jet
=============  ===============================================================================

The data can be the synthetic LHCO-like toy (`offline.lhco_toy`) or any `DijetSample` (e.g. read from the
Pythia files with `DijetSample.from_batch`) via `run_sic_study(..., background=..., signal=...)`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from l1ad.offline import lhco_toy
from l1ad.offline.cathode import CathodeConfig, run_cathode
from l1ad.offline.classify import ClassifierConfig
from l1ad.offline.cwola import CWoLaConfig, train_cwola
from l1ad.offline.dijet import DijetSample, signal_region_mask
from l1ad.offline.sic import SICCurve, format_sic_table, plot_sic, sic_curve, sic_table
from l1ad.offline.supervised import idealised, supervised
from l1ad.offline.tnt import TNTConfig, train_tnt

ALL_METHODS = ("supervised", "idealised", "cathode", "cwola_bdt", "cwola_nn", "tnt")


class SICStudyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    n_bkg: int = Field(1_000_000, ge=1000, description="background events over all m_JJ (LHCO R&D: 1M)")
    s_over_b: tuple[float, ...] = (0.003, 0.006, 0.01)
    methods: tuple[str, ...] = ALL_METHODS
    n_test_bkg: int = Field(200_000, ge=100)
    n_test_sig: int = Field(20_000, ge=10)
    n_signal_train: int = Field(20_000, ge=10, description="labelled signal events for the supervised reference")
    template_oversampling: float = Field(4.0, gt=0, description="idealised template size / SR data size")
    classifier: ClassifierConfig = ClassifierConfig()
    nn_classifier: ClassifierConfig = ClassifierConfig(kind="nn")
    cwola: CWoLaConfig = CWoLaConfig()
    cathode: CathodeConfig = CathodeConfig()
    tnt: TNTConfig = TNTConfig()
    toy: lhco_toy.ToyConfig = lhco_toy.ToyConfig()
    min_bkg_events: int = Field(50, ge=1)
    share_flow: bool = Field(False, description="train CATHODE's flow once (on the first S/B's sidebands) and reuse it; "
                             "the sidebands differ between S/B points only by a few signal events")
    seed: int = 0


def small_config(**over) -> SICStudyConfig:
    """A CI-sized study (tens of seconds): few events, small ensembles, short flow training."""
    from l1ad.offline.flows import FlowConfig

    clf = ClassifierConfig(n_folds=3, n_ensemble=1, max_iter=60)
    base = dict(
        n_bkg=60_000, s_over_b=(0.01,), n_test_bkg=20_000, n_test_sig=2_000, n_signal_train=2_000,
        min_bkg_events=20, classifier=clf,
        nn_classifier=clf.model_copy(update={"kind": "nn", "epochs": 8, "hidden": (32, 32)}),
        cwola=CWoLaConfig(classifier=clf),
        cathode=CathodeConfig(classifier=clf, oversampling=2.0,
                              flow=FlowConfig(transforms=3, hidden=(32, 32), epochs=6, batch_size=1024, keep_best=2)),
        tnt=TNTConfig(classifier=clf),
    )
    base.update(over)
    return SICStudyConfig(**base)


def _method_scores(method: str, data: DijetSample, cfg: SICStudyConfig, X_test: np.ndarray, rng: np.random.Generator,
                   background_pool: Callable[[int], DijetSample], signal_pool: Callable[[int], DijetSample],
                   flow_cache: dict) -> np.ndarray:
    sr = signal_region_mask(data.mjj, cfg.cathode.signal_region)
    if method == "supervised":
        n_b = int(sr.sum())
        model = supervised(signal_pool(cfg.n_signal_train).features, background_pool(n_b).features, cfg.classifier)
        return model.predict(X_test)
    if method == "idealised":
        template = background_pool(int(round(cfg.template_oversampling * sr.sum()))).features
        return idealised(data.features[sr], template, cfg.classifier).predict(X_test)
    if method == "cathode":
        cc = cfg.cathode.model_copy(update={"classifier": cfg.classifier})
        res = run_cathode(data, cc, flow=flow_cache.get("flow") if cfg.share_flow else None)
        flow_cache["flow"] = res.flow
        return res.predict(X_test)
    if method == "cwola_bdt":
        return train_cwola(data, cfg.cwola.model_copy(update={"classifier": cfg.classifier})).predict(X_test)
    if method == "cwola_nn":
        return train_cwola(data, cfg.cwola.model_copy(update={"classifier": cfg.nn_classifier})).predict(X_test)
    if method == "tnt":
        return train_tnt(data, cfg.tnt.model_copy(update={"classifier": cfg.classifier})).predict(X_test)
    raise ValueError(f"unknown method {method!r}; known: {ALL_METHODS}")


def run_sic_study(cfg: SICStudyConfig = SICStudyConfig(), out_dir: str | Path | None = None, *,
                  background: DijetSample | None = None, signal: DijetSample | None = None,
                  log: Callable[[str], None] = lambda s: None) -> dict:
    """Train every method at every S/B; return {'curves', 'rows', 'timings', 'table'} and write plots/tables.

    With `background` and `signal` given (e.g. Pythia samples), those events are split into data, templates and
    test sets instead of generating toys; they must be large enough for the requested sizes.
    """
    unknown = set(cfg.methods) - set(ALL_METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; known: {ALL_METHODS}")
    rng = np.random.default_rng(cfg.seed)
    sr_window = cfg.cathode.signal_region
    if background is None:
        toy = cfg.toy
        base_bkg = lhco_toy.sample_background(cfg.n_bkg, rng, toy)
        sig_all = lhco_toy.sample_signal(max(lhco_toy.n_signal_for(max(cfg.s_over_b), cfg.n_bkg, toy), 1), rng, toy)
        test = lhco_toy.make_sr_test_set(cfg.n_test_bkg, cfg.n_test_sig, seed=cfg.seed + 999, cfg=toy)
        pool_rng = np.random.default_rng(cfg.seed + 31)

        def background_pool(n: int) -> DijetSample:
            return lhco_toy.sample_background(n, pool_rng, toy, sr_window)

        def signal_pool(n: int) -> DijetSample:
            return lhco_toy.sample_signal(n, pool_rng, toy, sr_window)

        def n_sig_for(sb: float) -> int:
            return lhco_toy.n_signal_for(sb, cfg.n_bkg, toy)
    else:
        if signal is None:
            raise ValueError("give `signal` events together with `background`")
        bkg = background.shuffled(rng)
        sig = signal.shuffled(rng)
        bsr = signal_region_mask(bkg.mjj, sr_window)
        ssr = signal_region_mask(sig.mjj, sr_window)
        eff_s = ssr.mean()
        # background: test (SR) | templates (SR) | data (all m_JJ); signal: test (SR) | supervised training (SR) | injection
        b_sr_idx, b_out_idx = np.flatnonzero(bsr), np.flatnonzero(~bsr)
        n_test_b = min(cfg.n_test_bkg, len(b_sr_idx) // 4)
        test_b = bkg.select(b_sr_idx[:n_test_b])
        rest_sr = b_sr_idx[n_test_b:]
        n_tmpl = len(rest_sr) // 2
        tmpl_idx = rest_sr[:n_tmpl]
        data_bkg = bkg.select(np.sort(np.concatenate([rest_sr[n_tmpl:], b_out_idx])))
        s_sr_idx, s_out_idx = np.flatnonzero(ssr), np.flatnonzero(~ssr)
        n_test_s = min(cfg.n_test_sig, len(s_sr_idx) // 3)
        test = DijetSample.concat([test_b, sig.select(s_sr_idx[:n_test_s])])
        sup_idx = s_sr_idx[n_test_s : n_test_s + len(s_sr_idx) // 3]
        # the injected events keep the signal's own SR fraction eff_s in every prefix of the pool (test and
        # supervised events came from the SR only, so a plain shuffle of the rest would under-fill the SR)
        inj_sr, inj_out = s_sr_idx[n_test_s + len(s_sr_idx) // 3 :], s_out_idx
        key = np.concatenate([(np.arange(len(inj_sr)) + 0.5) / max(eff_s, 1e-12),
                              (np.arange(len(inj_out)) + 0.5) / max(1.0 - eff_s, 1e-12)])
        inj_pool = sig.select(np.concatenate([inj_sr, inj_out])[np.argsort(key, kind="stable")])
        base_bkg = data_bkg
        sig_all = inj_pool
        cursor = {"b": 0, "s": 0}

        def background_pool(n: int) -> DijetSample:
            idx = tmpl_idx[cursor["b"] : cursor["b"] + n] if n <= len(tmpl_idx) else tmpl_idx[rng.integers(0, len(tmpl_idx), n)]
            return bkg.select(idx)

        def signal_pool(n: int) -> DijetSample:
            return sig.select(sup_idx[: min(n, len(sup_idx))])

        n_b_sr = signal_region_mask(data_bkg.mjj, sr_window).sum()

        def n_sig_for(sb: float) -> int:
            return int(round(sb * n_b_sr / max(eff_s, 1e-12)))

    X_test = test.features
    curves: dict[str, dict[float, SICCurve]] = {m: {} for m in cfg.methods}
    timings: dict[str, list[float]] = {m: [] for m in cfg.methods}
    flow_cache: dict = {}
    for sb in cfg.s_over_b:
        n_sig = n_sig_for(sb)
        if n_sig > len(sig_all):
            raise ValueError(f"S/B={sb} needs {n_sig} signal events, only {len(sig_all)} available")
        data = DijetSample.concat([base_bkg, sig_all.select(slice(0, n_sig))]).shuffled(np.random.default_rng(cfg.seed + 5))
        n_s_sr = int((signal_region_mask(data.mjj, sr_window) & data.is_signal).sum())
        log(f"S/B={sb:.4f}: {len(data)} events, {n_sig} signal ({n_s_sr} in SR)")
        for m in cfg.methods:
            t0 = time.perf_counter()
            s = _method_scores(m, data, cfg, X_test, rng, background_pool, signal_pool, flow_cache)
            timings[m].append(time.perf_counter() - t0)
            curves[m][sb] = sic_curve(s[test.is_signal], s[~test.is_signal])
            log(f"  {m:<11s} max SIC {curves[m][sb].max_sic(cfg.min_bkg_events):6.2f}   ({timings[m][-1]:.1f} s)")
    rows = sic_table(curves, cfg.min_bkg_events)
    table = format_sic_table(rows)
    result = {"curves": curves, "rows": rows, "timings": timings, "table": table}
    if out_dir is not None:
        from l1ad.trigger.atomic import write_json_atomic, write_text_atomic

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        plot_sic(curves, out / "sic.png", min_bkg_events=cfg.min_bkg_events)
        write_json_atomic(out / "sic_table.json", {"rows": rows, "timings_s": timings, "config": json.loads(cfg.model_dump_json())})
        write_text_atomic(out / "sic_table.md", table + "\n")
        result["files"] = [str(out / "sic.png"), str(out / "sic_table.json"), str(out / "sic_table.md")]
    return result
