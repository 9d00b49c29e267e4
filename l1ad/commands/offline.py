"""`l1ad offline`: offline model-independent searches (bump hunt, conformal, two-sample, CWoLa, CATHODE, NPLM)."""
from __future__ import annotations

import json

import click


@click.group("offline")
def command() -> None:
    """Offline searches on the events the trigger keeps."""


# ---------------------------------------------------------------------- weak supervision / NPLM / reach
def _dijet_sample(events: str | None, n_bkg: int, s_over_b: float, seed: int, signal_process: str):
    """Events from a file (dijet offline fields) or the synthetic LHCO-like toy."""
    from l1ad.offline import lhco_toy
    from l1ad.offline.dijet import DijetSample

    if events:
        from l1ad.trigger.io import read_events, require_events

        require_events(events, what="this analysis")
        return DijetSample.from_batch(read_events(events), signal_processes=(signal_process,), source=events)
    return lhco_toy.make_dataset(n_bkg, s_over_b, seed=seed)


def _echo_json(obj) -> None:
    from l1ad.trigger.atomic import _json_default

    click.echo(json.dumps(obj, indent=2, default=_json_default))


@command.command("cwola")
@click.option("--events", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Event file with dijet offline fields (default: the synthetic LHCO-like toy).")
@click.option("--n-bkg", default=300_000, show_default=True, help="Toy background events.")
@click.option("--s-over-b", default=0.006, show_default=True, help="Toy injected S/B in the signal region.")
@click.option("--signal-process", default="signal", show_default=True, help="Process name of the truth signal in --events.")
@click.option("--hunt/--no-hunt", default=False, help="Scan m_JJ windows (CWoLa hunting) instead of one SR vs sidebands.")
@click.option("--classifier", type=click.Choice(["bdt", "nn"]), default="bdt", show_default=True)
@click.option("--efficiency", default=0.1, show_default=True, help="Hunting: fraction of events kept by the cut.")
@click.option("--efficiencies", default=None,
              help="Hunting: several cuts, comma separated (e.g. 0.2,0.05), searched together; with --n-toys the global p "
                   "counts every window and cut.")
@click.option("--n-toys", type=click.IntRange(min=0), default=0, show_default=True,
              help="Hunting: retrained background-only searches for the global p (0: the Sidak quick estimate, which "
                   "can be anti-conservative). Toy data: fresh toys; an event file: its m_JJ-permuted copies.")
@click.option("--small", is_flag=True, help="CI-sized settings (3 folds, 1 model per fold).")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/offline/cwola", show_default=True)
def cwola_cmd(events, n_bkg, s_over_b, signal_process, hunt, classifier, efficiency, efficiencies, n_toys, small, seed,
              out_dir) -> None:
    """CWoLa: signal region vs sidebands (or the full CWoLa hunt); writes scores summary / scan plot."""
    from pathlib import Path

    import numpy as np

    from l1ad.offline.classify import ClassifierConfig
    from l1ad.trigger.atomic import write_json_atomic

    sample = _dijet_sample(events, n_bkg, s_over_b, seed, signal_process)
    clf = ClassifierConfig(kind=classifier, seed=seed)
    if small:
        clf = clf.model_copy(update={"n_folds": 3, "n_ensemble": 1, "max_iter": 60, "epochs": 10})
    out = Path(out_dir)
    if hunt and (efficiencies or n_toys):
        from l1ad.offline.cwola_hunting import HuntConfig
        from l1ad.offline.hunt_toys import cwola_search

        try:
            effs = [float(v) for v in (efficiencies or str(efficiency)).split(",")]
        except ValueError:
            raise click.BadParameter(f"{efficiencies!r}: expected comma-separated fractions", param_hint="--efficiencies") from None
        if not all(0 < e < 1 for e in effs):
            raise click.BadParameter(f"{effs}: each cut keeps a fraction in (0, 1)", param_hint="--efficiencies")
        res = cwola_search(sample, HuntConfig(classifier=clf, efficiency=effs[0], seed=seed), effs, n_toys=n_toys,
                           source="permute" if events else "toy", n_bkg=len(sample.mjj) if not events else 0)
        s = res.summary()
        write_json_atomic(out / "search.json", s)
        _echo_json({k: s[k] for k in ("t_max", "p_min", "n_tests", "global_p", "global_z", "global_p_method", "n_toys",
                                      "global_p_sidak", "global_p_sidak_note")})
        return
    if hunt:
        from l1ad.offline.cwola_hunting import HuntConfig, cwola_hunt, plot_hunt

        res = cwola_hunt(sample, HuntConfig(classifier=clf, efficiency=efficiency, seed=seed), log=click.echo)
        s = res.summary()
        write_json_atomic(out / "hunt.json", s)
        plot_hunt(res, out / "hunt.png")
        _echo_json({k: s[k] for k in ("best", "p_min", "global_p_sidak", "global_z_sidak")})
        return
    from l1ad.offline.cwola import CWoLaConfig, train_cwola
    from l1ad.offline.sic import sic_curve

    res = train_cwola(sample, CWoLaConfig(classifier=clf))
    summary = {"n_sr": int(res.sr_index.size), "n_sb": int(res.sb_index.size),
               "mean_score_sr": float(np.mean(res.score_sr)), "mean_score_sb": float(np.mean(res.score_sb))}
    sig = sample.is_signal[res.sr_index]
    if sig.any() and (~sig).any():
        c = sic_curve(res.score_sr[sig], res.score_sr[~sig])
        summary["truth_max_sic_sr_out_of_fold"] = c.max_sic(min_bkg_events=20)
    write_json_atomic(out / "cwola.json", summary)
    _echo_json(summary)


@command.command("cathode")
@click.option("--n-bkg", default=300_000, show_default=True, help="Toy background events.")
@click.option("--s-over-b", "s_over_b", multiple=True, type=float, default=(0.003, 0.006, 0.01), show_default=True,
              help="Injected S/B values (repeatable).")
@click.option("--methods", default="supervised,idealised,cathode,cwola_bdt,cwola_nn,tnt", show_default=True,
              help="Comma-separated methods of the SIC benchmark.")
@click.option("--background", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Background event file with the dijet offline fields (e.g. the generator's qcd_dijet.h5) "
                   "instead of the toy; needs --signal.")
@click.option("--signal", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Signal event file (e.g. dijet_resonance.h5): split into injection, supervised and test events.")
@click.option("--small", is_flag=True, help="CI-sized settings (tens of seconds).")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/offline/sic", show_default=True)
def cathode_cmd(n_bkg, s_over_b, methods, background, signal, small, seed, out_dir) -> None:
    """CATHODE and the weak-supervision SIC benchmark (all methods, several S/B): sic.png, sic_table.md/json.
    On the LHCO-like toy by default, or on event files (--background and --signal, every event of each file
    taken as background resp. signal)."""
    from l1ad.offline.dijet import DijetSample
    from l1ad.offline.weak_study import SICStudyConfig, run_sic_study, small_config

    if (background is None) != (signal is None):
        raise click.UsageError("--background and --signal go together")
    over = {"s_over_b": tuple(s_over_b), "methods": tuple(m.strip() for m in methods.split(",") if m.strip()), "seed": seed}
    cfg = small_config(**over) if small else SICStudyConfig(n_bkg=n_bkg, **over)
    samples = {}
    if background is not None:
        from l1ad.trigger.io import read_events, require_events

        for path in (background, signal):
            require_events(path, what="the SIC study")
        for key, path in (("background", background), ("signal", signal)):
            batch = read_events(path)
            labels = tuple(batch.process_names) if key == "signal" else ()  # every event of the file is one class
            samples[key] = DijetSample.from_batch(batch, signal_processes=labels, source=path)
        click.echo(f"background {background}: {len(samples['background'])} events; signal {signal}: "
                   f"{len(samples['signal'])} events")
    r = run_sic_study(cfg, out_dir, log=click.echo, **samples)
    click.echo(r["table"])
    for f in r.get("files", []):
        click.echo(f)


@command.command("nplm")
@click.option("--reference", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Reference event file (e.g. zero-bias); with --data. Default: the dijet toy.")
@click.option("--data", type=click.Path(dir_okay=False, exists=True), default=None, help="Data event file.")
@click.option("--fields", default="mJ1,mJ2,tau21_J1,tau21_J2", show_default=True,
              help="Offline fields used as features when reading files.")
@click.option("--n-expected", type=float, default=None, help="Events expected in data under the reference (default: N_data).")
@click.option("--model", type=click.Choice(["kernel", "nn"]), default="kernel", show_default=True)
@click.option("--n-toys", type=click.IntRange(min=1), default=100, show_default=True, help="Null toys for p(t|H0).")
@click.option("--scheduler", default=None, help="Dask scheduler address (tcp://host:8786); default a local cluster; 'sync' = no Dask.")
@click.option("--workers", type=int, default=None, help="Local cluster workers.")
@click.option("--n-bkg", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Toy: background events (the SR of it is the data).")
@click.option("--s-over-b", default=0.0, show_default=True, help="Toy: injected S/B in the signal region.")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/offline/nplm", show_default=True)
def nplm_cmd(reference, data, fields, n_expected, model, n_toys, scheduler, workers, n_bkg, s_over_b, seed, out_dir) -> None:
    """NPLM goodness-of-fit test of data against a reference; null toys on Dask."""
    from pathlib import Path

    import numpy as np

    from l1ad.offline import nplm
    from l1ad.trigger.atomic import write_json_atomic

    cfg = nplm.NPLMConfig(model=model, n_toys=n_toys, seed=seed)
    if reference or data:
        if not (reference and data):
            raise click.UsageError("give both --reference and --data (or neither, for the toy)")
        from l1ad.trigger.io import read_events, require_events

        names = [f.strip() for f in fields.split(",") if f.strip()]
        if not names:
            raise click.BadParameter("no field given", param_hint="--fields")
        for path in (reference, data):
            require_events(path, what="NPLM")
        rb, db = read_events(reference), read_events(data)
        for b, src in ((rb, reference), (db, data)):
            missing = [f for f in names if f not in b.offline]
            if missing:
                from l1ad.trigger.events import EventDataError

                raise EventDataError(f"offline fields {missing} missing (have {sorted(b.offline)})", source=src, field=missing[0])
        X_ref = np.column_stack([rb.offline[f] for f in names])
        X_data = np.column_stack([db.offline[f] for f in names])
        w_ref, w_data = rb.weight, db.weight
    else:
        from l1ad.offline import lhco_toy
        from l1ad.offline.reach import _nplm_inputs

        sr = lhco_toy.DEFAULT.signal_region
        rng = np.random.default_rng(seed)
        d = lhco_toy.make_dataset(n_bkg, s_over_b, seed=seed)
        d = d.select(d.in_window(*sr))
        X_data = _nplm_inputs(d)
        X_ref = _nplm_inputs(lhco_toy.sample_background(5 * len(d), rng, mjj_range=sr))
        w_ref = w_data = None
    res = nplm.nplm_test(X_ref, X_data, cfg, w_ref=w_ref, w_data=w_data, n_expected=n_expected, scheduler=scheduler,
                         n_workers=workers)
    out = Path(out_dir)
    s = res.summary()
    write_json_atomic(out / "nplm.json", {**s, "t_toys": res.t_toys})
    from l1ad.offline.plots_stats import plot_nplm_null

    plot_nplm_null(res, out / "nplm_null.png")
    _echo_json(s)


@command.command("lhco-convert")
@click.argument("lhco_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--start", default=0, show_default=True, help="First event row.")
@click.option("--stop", type=int, default=None, help="Row after the last (default: all).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/offline/lhco", show_default=True)
def lhco_convert_cmd(lhco_file, start, stop, out_dir) -> None:
    """LHCO R&D file (events_anomalydetection.h5) -> FastJet dijet features in background.h5 / signal.h5."""
    from pathlib import Path

    from l1ad.offline.lhco_rd import read_lhco
    from l1ad.trigger.atomic import write_json_atomic
    from l1ad.trigger.io import write_events

    try:
        sample, info = read_lhco(lhco_file, start=start, stop=stop)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_events(out / "background.h5", sample.select(~sample.is_signal).to_batch())
    if sample.n_signal:
        write_events(out / "signal.h5", sample.select(sample.is_signal).to_batch())
    write_json_atomic(out / "lhco_convert.json", info)
    _echo_json(info)


@command.command("reach")
@click.option("--methods", default="bumphunt,cwola_hunt,cathode,nplm", show_default=True)
@click.option("--small", is_flag=True, help="CI-sized settings.")
@click.option("--n-toys", type=int, default=None, help="Pseudo-experiments per S/B point.")
@click.option("--scheduler", default=None, help="Dask scheduler for the NPLM null toys ('sync' = none).")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/offline/reach", show_default=True)
def reach_cmd(methods, small, n_toys, scheduler, seed, out_dir) -> None:
    """Discovery reach: injected S/B for median 3 and 5 sigma per method (table + plot)."""
    from l1ad.offline.reach import ReachConfig, run_reach, small_config

    over = {"methods": tuple(m.strip() for m in methods.split(",") if m.strip()), "seed": seed}
    if n_toys:
        over["n_toys"] = n_toys
    if scheduler:
        over["scheduler"] = scheduler
    cfg = small_config(**over) if small else ReachConfig(**over)
    r = run_reach(cfg, out_dir, log=click.echo)
    click.echo(r["table"])
    for f in r.get("files", []):
        click.echo(f)


# ---------------------------------------------------------------------- statistics: bumphunt, conformal, twosample
from l1ad.commands.offline_stats import register as _register_stats  # noqa: E402

_register_stats(command)
