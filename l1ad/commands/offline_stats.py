"""`l1ad offline bumphunt | conformal | twosample`: the offline statistics on event files.

Registered on the `l1ad offline` group by `l1ad.commands.offline` (``register(command)``). Each command reads
event files with `trigger.io.read_events`, writes a JSON result atomically and its figures into --out, and
prints the summary as JSON.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import click
import numpy as np


def _read(paths: Sequence[str]):
    """Read and concatenate event files (a hook the tests replace)."""
    from l1ad.trigger.events import EventBatch
    from l1ad.trigger.io import read_events, require_events

    for p in paths:  # every file checked before any is read whole
        require_events(p, what="this analysis")
    batches = [read_events(p) for p in paths]
    return batches[0] if len(batches) == 1 else EventBatch.concat(batches)


def _echo(obj) -> None:
    from l1ad.trigger.atomic import _json_default

    click.echo(json.dumps(obj, indent=2, default=_json_default))


def _load_yaml_section(path: str | None, section: str) -> dict:
    """The `section` fields of a YAML file (top level, under `section`, or under `offline.section`)."""
    if not path:
        return {}
    from l1ad.config import ConfigError, read_mapping

    d = read_mapping(path, f"{section} fields")
    key = section
    if section in d:
        d = d[section]
    elif "offline" in d and isinstance(d["offline"], dict) and section in d["offline"]:
        d, key = d["offline"][section], f"offline.{section}"
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: {key} must be a mapping of fields, got a {type(d).__name__}")
    return dict(d)


def _load_scores(path: str) -> np.ndarray:
    """A 1-d array of real scores from a .npy file; a named error for anything else (pickles never load)."""
    from l1ad.trigger.errors import UserInputError

    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserInputError(f"{path}: not a NumPy .npy array of scores ({e})") from None
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "fiu":
        raise UserInputError(f"{path}: scores must be real numbers, got {getattr(a, 'dtype', type(a).__name__)}")
    a = a.astype(np.float64).ravel()
    if a.size == 0:
        raise UserInputError(f"{path}: holds 0 scores")
    if not np.isfinite(a).all():
        raise UserInputError(f"{path}: {int((~np.isfinite(a)).sum())} score(s) are NaN or inf")
    return a


def _ints(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None


def _features(batch, spec: str, source: str) -> tuple[np.ndarray, list[str]]:
    """'summary' | 'l1' | comma-separated offline fields -> (N, d) array and feature names."""
    from l1ad.offline.baselines import SUMMARY_FEATURES, event_features
    from l1ad.trigger.events import EventDataError

    if spec in ("summary", "l1"):
        x = event_features(batch, spec)
        names = list(SUMMARY_FEATURES) if spec == "summary" else [f"l1_{i}" for i in range(x.shape[1])]
        return x, names
    names = [f.strip() for f in spec.split(",") if f.strip()]
    missing = [f for f in names if f not in batch.offline]
    if missing:
        raise EventDataError(f"offline field(s) {missing} not in the file (have {sorted(batch.offline)}); "
                             "or use --features summary|l1", source=source, field=missing[0])
    return np.column_stack([np.asarray(batch.offline[f], dtype=np.float64) for f in names]), names


# ---------------------------------------------------------------------------------------------- bumphunt
@click.command("bumphunt")
@click.argument("events", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--field", "field_", type=click.Choice(["mjj", "mJJ"]), default="mjj", show_default=True,
              help="Offline mass field to scan (EventBatch.offline).")
@click.option("--bins", type=click.IntRange(min=1), default=60, show_default=True, help="Number of bins.")
@click.option("--range", "mrange", nargs=2, type=float, default=None, help="Mass range LO HI [GeV] (default: the data's).")
@click.option("--log-bins", is_flag=True, help="Log-spaced bins (default equal width).")
@click.option("--widths", default=None, help="Window widths in bins, e.g. 3,5,7,9.")
@click.option("--sideband-factor", type=float, default=None, help="Sideband bins per side / window width.")
@click.option("--n-toys", type=int, default=None, help="Background-only toys for the global p-value.")
@click.option("--n-params", type=click.IntRange(3, 5), default=None, help="Dijet-function parameters.")
@click.option("--sqrt-s", type=float, default=None, help="sqrt(s) in GeV for x = m/sqrt(s).")
@click.option("--alpha", type=float, default=None, help="Fixed transfer factor for every window (default: from the fit).")
@click.option("--background", "background_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Background event file used as the template for alpha and the toys (scaled to the data).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="YAML with BumpHuntConfig fields (top level, or under 'bumphunt' / 'offline.bumphunt').")
@click.option("--seed", type=int, default=None)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/offline/bumphunt", show_default=True)
def bumphunt_cmd(events, field_, bins, mrange, log_bins, widths, sideband_factor, n_toys, n_params, sqrt_s, alpha,
                 background_file, config_file, seed, out_dir) -> None:
    """Sliding-window bump hunt of EVENTS' m_jj (or m_JJ) spectrum: fit, scan, toy / Gross-Vitells / EC global p."""
    from l1ad.offline.bumphunt import BumpHuntConfig, scan
    from l1ad.offline.plots_stats import plot_bumphunt_fit, plot_bumphunt_scan, plot_global_pvalue
    from l1ad.trigger.atomic import write_json_atomic
    from l1ad.trigger.events import EventDataError

    cfg_d = _load_yaml_section(config_file, "bumphunt")
    for key, val in (("widths", _ints(widths)), ("sideband_factor", sideband_factor), ("n_toys", n_toys),
                     ("n_params", n_params), ("sqrt_s", sqrt_s), ("seed", seed)):
        if val is not None:
            cfg_d[key] = val
    from l1ad.config import validate_section

    cfg = validate_section(BumpHuntConfig, cfg_d, config_file or "options")
    batch = _read(events)
    src = ",".join(events)
    if field_ not in batch.offline:
        raise EventDataError(f"no offline field '{field_}' (have {sorted(batch.offline)})", source=src, field=field_)
    m = np.asarray(batch.offline[field_], dtype=np.float64)
    w = batch.weight
    keep = m > 0
    if keep.sum() < 10:
        raise EventDataError(f"only {int(keep.sum())} events with {field_} > 0", source=src, field=field_)
    lo, hi = mrange if mrange else (float(m[keep].min()), float(m[keep].max()) * (1 + 1e-9))
    if not 0 < lo < hi:
        raise click.BadParameter(f"need 0 < LO < HI, got {lo}, {hi}", param_hint="--range")
    edges = np.geomspace(lo, hi, bins + 1) if log_bins else np.linspace(lo, hi, bins + 1)
    counts, _ = np.histogram(m[keep], bins=edges, weights=w[keep])
    background = None
    if background_file:
        bb = _read([background_file])
        if field_ not in bb.offline:
            raise EventDataError(f"no offline field '{field_}'", source=background_file, field=field_)
        mb = np.asarray(bb.offline[field_], dtype=np.float64)
        kb = mb > 0
        background, _ = np.histogram(mb[kb], bins=edges, weights=bb.weight[kb])
        if background.sum() <= 0:
            raise EventDataError("background template is empty in the scanned range", source=background_file, field=field_)
        background = background * counts.sum() / background.sum()
    res = scan(counts, edges, config=cfg, alpha=alpha, background=background)
    out = Path(out_dir)
    d = res.to_dict()
    d["input"] = {"events": list(events), "field": field_, "n_events_in_range": float(counts.sum()),
                  "background_file": background_file}
    write_json_atomic(out / "bumphunt.json", d)
    files = [plot_bumphunt_scan(res, out / "scan.png", xlabel=f"window centre {field_} [GeV]")]
    if res.background is not None:
        files.append(plot_bumphunt_fit(res, out / "fit.png", xlabel=f"{field_} [GeV]"))
    if res.t_max_toys is not None:
        files.append(plot_global_pvalue(res, out / "global_pvalue.png"))
    s = res.summary()
    _echo({"best_window": s["best_window"], "global": s["global"], "files": [str(out / "bumphunt.json")] + [str(f) for f in files]})


# ---------------------------------------------------------------------------------------------- conformal
def _score_model(name: str, seed: int):
    from l1ad.offline.baselines import make_baseline
    from l1ad.offline.kde import KDE

    if name == "kde":
        return KDE(standardize=True)
    kw = {"seed": seed} if name in ("kmeans", "gmm") else {}
    return make_baseline(name, **kw)


@click.command("conformal")
@click.option("--train", "train_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Background events to fit the anomaly score on.")
@click.option("--cal", "cal_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Background calibration events (disjoint from --train).")
@click.option("--test", "test_files", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Events to compute p-values for (repeatable).")
@click.option("--score", type=click.Choice(["gmm", "kmeans", "dbscan", "kde"]), default="gmm", show_default=True,
              help="Anomaly score fitted on --train.")
@click.option("--features", default="summary", show_default=True,
              help="'summary', 'l1', or comma-separated offline fields.")
@click.option("--cal-scores", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Precomputed calibration scores (.npy) instead of --train/--score (e.g. autoencoder scores).")
@click.option("--test-scores", type=click.Path(dir_okay=False, exists=True), default=None, help="Precomputed test scores (.npy).")
@click.option("--covariate", default="npu", show_default=True,
              help="Conditioning covariate: 'npu' (pile-up), an offline field, or 'none' for plain conformal only.")
@click.option("--model", type=click.Choice(["binned", "hgb", "gbr", "linear"]), default="binned", show_default=True,
              help="Quantile-regression model of the conditional p-values.")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/offline/conformal", show_default=True)
def conformal_cmd(train_file, cal_file, test_files, score, features, cal_scores, test_scores, covariate, model, seed,
                  out_dir) -> None:
    """Split and conditional conformal p-values of test events against a background calibration set."""
    from l1ad.offline.conformal import ConformalConfig, conditional_pvalues, split_pvalues
    from l1ad.offline.plots_stats import plot_pvalue_hist
    from l1ad.trigger.atomic import atomic_path, write_json_atomic
    from l1ad.trigger.events import EventDataError

    out = Path(out_dir)
    cal_b = _read([cal_file]) if cal_file else None
    test_b = _read(list(test_files)) if test_files else None
    if cal_scores or test_scores:
        if not (cal_scores and test_scores):
            raise click.UsageError("give both --cal-scores and --test-scores")
        s_cal = _load_scores(cal_scores)
        s_test = _load_scores(test_scores)
        score_name = "precomputed"
    else:
        if not (train_file and cal_file and test_files):
            raise click.UsageError("give --train, --cal and --test (or --cal-scores and --test-scores)")
        tr_b = _read([train_file])
        x_tr, names = _features(tr_b, features, train_file)
        x_cal, _ = _features(cal_b, features, cal_file)
        x_te, _ = _features(test_b, features, ",".join(test_files))
        mdl = _score_model(score, seed).fit(x_tr)
        s_cal, s_test = mdl.score(x_cal), mdl.score(x_te)
        score_name = score
    p = split_pvalues(s_cal, s_test)
    result = {"score": score_name, "features": features, "n_cal": int(s_cal.size), "n_test": int(s_test.size),
              "plain": _pv_summary(p)}
    pv = {"plain": p}
    if covariate != "none":
        if cal_b is None or test_b is None:
            raise click.UsageError("a covariate needs --cal and --test event files (or use --covariate none)")

        def cov(b, src):
            if covariate == "npu":
                return b.npu.astype(np.float64)
            if covariate not in b.offline:
                raise EventDataError(f"covariate '{covariate}' not found (npu or {sorted(b.offline)})", source=src, field=covariate)
            return np.asarray(b.offline[covariate], dtype=np.float64)

        z_cal, z_test = cov(cal_b, cal_file), cov(test_b, ",".join(test_files))
        if z_cal.size != s_cal.size or z_test.size != s_test.size:
            raise click.UsageError("score files and event files differ in event count")
        if np.ptp(z_cal) == 0:
            click.echo(f"note: covariate '{covariate}' is constant in the calibration set; conditional = plain", err=True)
        else:
            pc = conditional_pvalues(s_cal, z_cal, s_test, z_test, ConformalConfig(model=model, seed=seed))
            result["conditional"] = {"covariate": covariate, "model": model, **_pv_summary(pc)}
            pv["conditional"] = pc
    write_json_atomic(out / "conformal.json", result)
    with atomic_path(out / "pvalues.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **pv)
    fig = plot_pvalue_hist(pv, out / "pvalues.png", title=f"score: {score_name}")
    result["files"] = [str(out / "conformal.json"), str(out / "pvalues.npz"), str(fig)]
    _echo(result)


def _pv_summary(p: np.ndarray) -> dict:
    return {"min_p": float(p.min()), "frac_p_le_0.05": float(np.mean(p <= 0.05)), "frac_p_le_0.01": float(np.mean(p <= 0.01)),
            "median_p": float(np.median(p))}


# ---------------------------------------------------------------------------------------------- twosample
@click.command("twosample")
@click.argument("data", type=click.Path(dir_okay=False, exists=True))
@click.argument("reference", type=click.Path(dir_okay=False, exists=True))
@click.option("--features", default="mjj", show_default=True, help="'summary', 'l1', or comma-separated offline fields.")
@click.option("--tests", default="ks,chi2,mmd,wasserstein,classifier", show_default=True,
              help="Comma-separated: ks, chi2, mmd, wasserstein, classifier (or 'all').")
@click.option("--n-perm", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Permutations per test (>= 1: the p-value is (1 + #{t_perm >= t}) / (1 + n_perm)).")
@click.option("--max-events", type=click.IntRange(min=2), default=2500, show_default=True,
              help="Random subsample per file (MMD holds an N x N matrix).")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/offline/twosample", show_default=True)
def twosample_cmd(data, reference, features, tests, n_perm, max_events, seed, out_dir) -> None:
    """Two-sample tests of DATA against REFERENCE with permutation p-values.

    With several features, ks and chi2 run on each feature separately; wasserstein is sliced; mmd and the
    classifier test use all features together.
    """
    from l1ad.offline.twosample import TESTS, TwoSampleConfig, test
    from l1ad.trigger.atomic import write_json_atomic

    names = TESTS if tests.strip() == "all" else tuple(t.strip() for t in tests.split(",") if t.strip())
    bad = [t for t in names if t not in TESTS] or ([] if names else ["(none given)"])
    if bad:
        raise click.BadParameter(f"unknown test(s) {bad}; known: {', '.join(TESTS)}", param_hint="--tests")
    xb, yb = _read([data]), _read([reference])
    x, fnames = _features(xb, features, data)
    y, _ = _features(yb, features, reference)
    rng = np.random.default_rng(seed)
    if x.shape[0] > max_events:
        x = x[rng.choice(x.shape[0], max_events, replace=False)]
    if y.shape[0] > max_events:
        y = y[rng.choice(y.shape[0], max_events, replace=False)]
    cfg = TwoSampleConfig(n_perm=n_perm, seed=seed, tests=tuple(names))
    results = []
    for name in names:
        if name in ("ks", "chi2") and x.shape[1] > 1:
            for j, fn in enumerate(fnames):
                r = test(name, x[:, j], y[:, j], config=cfg)
                results.append({**r.to_dict(), "name": f"{name}[{fn}]"})
        else:
            results.append(test(name, x, y, config=cfg).to_dict())
    out = Path(out_dir)
    summary = {"data": data, "reference": reference, "features": fnames, "n_data": int(x.shape[0]),
               "n_reference": int(y.shape[0]), "n_perm": n_perm, "seed": seed, "results": results}
    write_json_atomic(out / "twosample.json", summary)
    _echo(summary)


def register(group: click.Group) -> None:
    """Add bumphunt, conformal and twosample to the `l1ad offline` group."""
    for cmd in (bumphunt_cmd, conformal_cmd, twosample_cmd):
        group.add_command(cmd)
