"""LHCO R&D reader: small files written here in the pandas fixed layout (df/block0_values, 700 x (pT, eta, phi)
then the label), jets clustered with FastJet; m_JJ, jet masses and tau21 against independent NumPy sums."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from l1ad.offline.lhco_rd import N_PARTICLES, read_lhco

pytest.importorskip("fastjet")


def _four(p):
    pt, eta, phi = p[:, 0], p[:, 1], p[:, 2]
    return np.column_stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)]).sum(0)


def _mass(v):
    return float(np.sqrt(max(v[0] ** 2 - v[1] ** 2 - v[2] ** 2 - v[3] ** 2, 0.0)))


def _jet(rng, pt, eta, phi, n, spread=0.2, prongs=1):
    """n massless particles around `prongs` centres (prong centres 0.4 apart) near (eta, phi)."""
    centres = [(eta, phi)] if prongs == 1 else [(eta - 0.2, phi), (eta + 0.2, phi)]
    out = []
    for i in range(n):
        ce, cp = centres[i % len(centres)]
        out.append((pt / n * rng.uniform(0.5, 1.5), ce + rng.normal(0, spread / 4), cp + rng.normal(0, spread / 4)))
    return np.array(out)


def _tau(p, axes):
    dr = np.min([np.hypot(p[:, 1] - ae, np.mod(p[:, 2] - ap + np.pi, 2 * np.pi) - np.pi) for ae, ap in axes], axis=0)
    return float(np.sum(p[:, 0] * dr) / np.sum(p[:, 0]))


def _write(path, events, labels=None):
    rows = np.zeros((len(events), 3 * N_PARTICLES + (labels is not None)))
    for i, p in enumerate(events):
        rows[i, : 3 * len(p)] = p.reshape(-1)
    if labels is not None:
        rows[:, -1] = labels
    with h5py.File(path, "w") as f:
        g = f.create_group("df")
        g["axis0"] = np.arange(rows.shape[1])
        g["axis1"] = np.arange(len(rows))
        g["block0_items"] = np.arange(rows.shape[1])
        g["block0_values"] = rows


def test_dijet_features_match_independent_sums(tmp_path):
    rng = np.random.default_rng(0)
    events, jets = [], []
    for i in range(6):
        a = _jet(rng, 1500.0, 0.3, 0.0, 30, prongs=2 if i % 2 else 1)
        b = _jet(rng, 1200.0, -0.5, np.pi - 0.1, 20)
        events.append(rng.permutation(np.concatenate([a, b])))
        jets.append((a, b))
    events.append(np.array([[1000.0, 0.0, 0.0]]))  # one particle: one jet, dropped
    _write(tmp_path / "events_anomalydetection.h5", events, labels=[0, 1, 0, 1, 0, 1, 0])
    s, info = read_lhco(tmp_path / "events_anomalydetection.h5", chunk=4)
    assert info["events_read"] == 7 and info["events_kept"] == 6 and info["fewer_than_two_jets"] == 1
    assert s.is_signal.tolist() == [False, True, False, True, False, True]
    for k, (a, b) in enumerate(jets):
        lead, sub = (a, b) if _four(a)[1:3].dot(_four(a)[1:3]) >= _four(b)[1:3].dot(_four(b)[1:3]) else (b, a)
        assert s.mjj[k] == pytest.approx(_mass(_four(a) + _four(b)), rel=1e-6)
        assert s.mJ1[k] == pytest.approx(_mass(_four(lead)), rel=1e-6)
        assert s.mJ2[k] == pytest.approx(_mass(_four(sub)), rel=1e-6)
    # two-prong jets (odd events, the leading jet a) have clearly smaller tau21 than one-prong ones
    t_lead = s.tau21_J1
    assert np.all(t_lead[1::2] < 0.6) and np.all(t_lead[0::2] > t_lead[1::2].max())


def test_tau_values_exact_for_small_jets(tmp_path):
    # jet A: two particles -> tau2 = 0 exactly; jet B: three particles, tau1 from the jet (E-scheme) axis
    a = np.array([[800.0, 0.1, 0.0], [700.0, -0.2, 0.15]])
    b = np.array([[600.0, 0.0, 3.0], [300.0, 0.3, 2.9], [200.0, -0.25, 3.1]])
    _write(tmp_path / "bb.h5", [np.concatenate([a, b])])  # black-box layout: no label column
    s, info = read_lhco(tmp_path / "bb.h5")
    assert not info["has_label"] and s.n_signal == 0
    assert s.tau21_J1[0] == pytest.approx(0.0, abs=1e-12)
    v = _four(b)
    axis_eta = 0.5 * np.log((v[0] + v[3]) / (v[0] - v[3]))  # rapidity of the massive jet axis
    tau1 = _tau(b, [(axis_eta, np.arctan2(v[2], v[1]))])
    # tau2 of three particles with kt axes: the two closest (in kt distance) merge; the third is its own axis
    assert 0.0 <= s.tau21_J2[0] < 1.0 and tau1 > 0
    import fastjet

    from l1ad.offline.lhco_rd import nsubjettiness
    parts = [fastjet.PseudoJet(*(pt * np.array([np.cos(ph), np.sin(ph), np.sinh(e), np.cosh(e)]))) for pt, e, ph in b]
    assert nsubjettiness(parts, 1) == pytest.approx(tau1, rel=1e-3)


def test_bad_files_name_the_problem(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["Particles"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"x.h5: no dataset 'df/block0_values'.*\['Particles'\]"):
        read_lhco(tmp_path / "x.h5")
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f.create_group("df")["block0_values"] = np.zeros((2, 30))
    with pytest.raises(ValueError, match=r"shape \(2, 30\); expected \(N, 2100\).*\(N, 2101\)"):
        read_lhco(tmp_path / "w.h5")
    rng = np.random.default_rng(1)
    ev = [np.concatenate([_jet(rng, 900, 0, 0, 5), _jet(rng, 900, 0, 3, 5)])]
    _write(tmp_path / "l.h5", ev, labels=[2])
    with pytest.raises(ValueError, match="row 0 has label 2.0; allowed 0 or 1"):
        read_lhco(tmp_path / "l.h5")
    with pytest.raises(ValueError, match=r"rows \[5, 1\)"):
        read_lhco(tmp_path / "l.h5", start=5)
    (tmp_path / "t.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="t.h5: not a readable HDF5 file"):
        read_lhco(tmp_path / "t.h5")


def test_cli_converts_to_event_files(tmp_path, capsys):
    from l1ad.cli import main
    from l1ad.offline.dijet import DijetSample
    from l1ad.trigger.io import read_events

    rng = np.random.default_rng(4)
    ev = [np.concatenate([_jet(rng, 1500, 0.2, 0, 20), _jet(rng, 1400, -0.3, 3.0, 20)]) for _ in range(4)]
    _write(tmp_path / "in.h5", ev, labels=[0, 1, 0, 0])
    assert main(["offline", "lhco-convert", str(tmp_path / "in.h5"), "--out", str(tmp_path / "o")]) == 0
    bkg = DijetSample.from_batch(read_events(tmp_path / "o" / "background.h5"))
    sig = DijetSample.from_batch(read_events(tmp_path / "o" / "signal.h5"), signal_processes=("signal",))
    direct, _ = read_lhco(tmp_path / "in.h5")
    assert len(bkg) == 3 and len(sig) == 1 and sig.n_signal == 1
    assert np.allclose(np.sort(bkg.mjj), np.sort(direct.mjj[~direct.is_signal]), rtol=1e-6)
    capsys.readouterr()
    assert main(["offline", "lhco-convert", str(tmp_path / "in.h5"), "--start", "9", "--out", str(tmp_path / "p")]) != 0
    assert "rows [9, 4)" in capsys.readouterr().err and not (tmp_path / "p" / "background.h5").exists()
