"""`l1ad offline bumphunt | conformal | twosample` end to end on small event files; bad input gives one line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from l1ad.cli import main
from l1ad.offline.bumphunt import falling_spectrum
from l1ad.trigger.events import EventBatch
from l1ad.trigger.io import write_events
from l1ad.trigger.toy import toy_events


def _dijet_file(path, n=60_000, bump=300, seed=0):
    rng = np.random.default_rng(seed)
    edges = np.linspace(1500, 5000, 2001)
    mu = falling_spectrum(edges, n)
    cdf = np.r_[0, np.cumsum(mu)] / mu.sum()
    m = np.interp(rng.uniform(size=n), cdf, edges)
    m = np.r_[m, rng.normal(3000, 50, bump)]
    b = EventBatch.build(np.zeros((m.size, 19, 3)), offline={"mjj": m, "mJJ": m}, npu=rng.integers(20, 80, m.size))
    write_events(path, b)
    return path


def _toy_file(path, n, seed, signal=False):
    t = toy_events(n, signal=signal, seed=seed)
    b = EventBatch.build(t.objects, offline=t.offline, npu=np.random.default_rng(seed).integers(10, 80, n),
                         process=t.process_names[0])
    write_events(path, b)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("stats_cli")
    return {
        "dijet": _dijet_file(d / "dijet.h5"),
        "train": _toy_file(d / "train.h5", 3000, 1),
        "cal": _toy_file(d / "cal.h5", 3000, 2),
        "test": _toy_file(d / "test.h5", 1000, 3),
        "sig": _toy_file(d / "sig.h5", 1000, 4, signal=True),
    }


def test_cli_bumphunt(files, tmp_path, capsys):
    out = tmp_path / "bh"
    rc = main(["offline", "bumphunt", str(files["dijet"]), "--bins", "50", "--range", "1500", "5000",
               "--widths", "3,5", "--n-toys", "200", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "bumphunt.json").read_text())
    assert 2800 < s["best_window"]["m0"] < 3200 and s["best_window"]["z_local"] > 3
    assert s["global"]["toys"]["n_toys"] == 200 and s["global"]["euler_characteristic"]["p"] is not None
    assert s["fit"]["params"] and len(s["scan"]["t"]) == 2
    for f in ("scan.png", "fit.png", "global_pvalue.png"):
        assert (out / f).stat().st_size > 1000
    printed = json.loads(capsys.readouterr().out)
    assert printed["best_window"]["width_bins"] in (3, 5)


def test_cli_bumphunt_missing_field_is_one_line(files, tmp_path, capsys):
    rc = main(["offline", "bumphunt", str(files["train"]), "--field", "mJJ", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "mJJ" in err


def test_cli_conformal_plain_and_conditional(files, tmp_path):
    out = tmp_path / "cf"
    rc = main(["offline", "conformal", "--train", str(files["train"]), "--cal", str(files["cal"]),
               "--test", str(files["sig"]), "--score", "gmm", "--covariate", "npu", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "conformal.json").read_text())
    assert s["n_cal"] == 3000 and s["n_test"] == 1000
    assert s["plain"]["frac_p_le_0.05"] > 0.2  # the harder toy signal is flagged
    assert "conditional" in s
    p = np.load(out / "pvalues.npz")
    assert p["plain"].shape == (1000,) and p["conditional"].shape == (1000,)
    assert (out / "pvalues.png").exists()
    # background test events: valid (about uniform) p-values
    rc = main(["offline", "conformal", "--train", str(files["train"]), "--cal", str(files["cal"]),
               "--test", str(files["test"]), "--covariate", "none", "--out", str(tmp_path / "cf0")])
    s0 = json.loads((tmp_path / "cf0" / "conformal.json").read_text())
    assert rc == 0 and abs(s0["plain"]["frac_p_le_0.05"] - 0.05) < 0.025


def test_cli_conformal_precomputed_scores(files, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "cal.npy", rng.normal(size=3000))
    np.save(tmp_path / "test.npy", rng.normal(size=1000) + 3)
    rc = main(["offline", "conformal", "--cal-scores", str(tmp_path / "cal.npy"), "--test-scores", str(tmp_path / "test.npy"),
               "--covariate", "none", "--out", str(tmp_path / "o")])
    assert rc == 0
    s = json.loads((tmp_path / "o" / "conformal.json").read_text())
    assert s["score"] == "precomputed" and s["plain"]["median_p"] < 0.01


def test_cli_twosample(files, tmp_path):
    out = tmp_path / "ts"
    rc = main(["offline", "twosample", str(files["sig"]), str(files["test"]), "--features", "summary",
               "--tests", "ks,mmd,wasserstein", "--n-perm", "99", "--max-events", "500", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "twosample.json").read_text())
    names = [r["name"] for r in s["results"]]
    assert "mmd" in names and "wasserstein" in names and any(n.startswith("ks[") for n in names)
    mmd = next(r for r in s["results"] if r["name"] == "mmd")
    assert mmd["pvalue"] == pytest.approx(0.01)  # signal vs background: no permutation reaches it
    rc = main(["offline", "twosample", str(files["sig"]), str(files["test"]), "--tests", "anderson", "--out", str(out)])
    assert rc != 0
