"""The synthetic LHCO-like dijet sample, the dijet features and the EventBatch bridge."""
import numpy as np
import pytest

from l1ad.offline import lhco_toy
from l1ad.offline.dijet import FEATURE_NAMES, DijetSample, dijet_features, signal_region_mask
from l1ad.trigger.events import EventDataError


def test_features_are_mass_ordered():
    X = dijet_features([500.0, 100.0], [100.0, 300.0], [0.2, 0.9], [0.7, 0.1])
    assert X.shape == (2, len(FEATURE_NAMES))
    # event 0: lighter jet is J2 (100 GeV, tau 0.7), heavier J1 (500 GeV, tau 0.2)
    assert X[0].tolist() == pytest.approx([0.1, 0.4, 0.7, 0.2])
    assert X[1].tolist() == pytest.approx([0.1, 0.2, 0.9, 0.1])


def test_toy_shapes_fractions_and_injection():
    d = lhco_toy.make_dataset(100_000, 0.01, seed=3)
    n_sig_expected = lhco_toy.n_signal_for(0.01, 100_000)
    assert d.n_signal == n_sig_expected
    sr = signal_region_mask(d.mjj)
    frac = (sr & ~d.is_signal).sum() / 100_000
    assert frac == pytest.approx(lhco_toy.background_mjj_fraction(*lhco_toy.DEFAULT.signal_region), abs=0.003)
    assert 0.09 < frac < 0.13  # LHCO R&D: ~12 % of the background in 3.3-3.7 TeV
    s_over_b = (sr & d.is_signal).sum() / (sr & ~d.is_signal).sum()
    assert s_over_b == pytest.approx(0.01, rel=0.25)
    X = d.features
    assert np.all(X[:, 1] >= 0) and np.all(X[:, 0] > 0)
    assert np.all((X[:, 2:] >= 0) & (X[:, 2:] <= 1))
    # the signal is two-pronged and heavy: tau21 lower, mass gap near 400 GeV
    assert np.median(X[d.is_signal, 2]) < np.median(X[~d.is_signal, 2]) - 0.15
    assert np.median(X[d.is_signal, 1]) == pytest.approx(0.4, abs=0.05)


def test_toy_is_reproducible_and_seed_dependent():
    a, b, c = (lhco_toy.make_dataset(2000, 0.05, seed=s) for s in (1, 1, 2))
    assert np.array_equal(a.mjj, b.mjj) and np.array_equal(a.features, b.features)
    assert not np.array_equal(a.mjj, c.mjj)


def test_restricted_range_sampling():
    s = lhco_toy.sample_background(5000, 0, mjj_range=(3300, 3700))
    assert s.mjj.min() >= 3300 and s.mjj.max() < 3700
    g = lhco_toy.sample_signal(500, 0, mjj_range=(3300, 3700))
    assert g.is_signal.all() and g.mjj.min() >= 3300


def test_batch_round_trip_and_errors():
    d = lhco_toy.make_dataset(3000, 0.05, seed=0)
    back = DijetSample.from_batch(d.to_batch())
    assert np.array_equal(back.is_signal, d.is_signal)
    assert np.allclose(back.features, d.features, atol=1e-3)  # float32 storage in EventBatch
    b = d.to_batch()
    del_off = {k: v for k, v in b.offline.items() if k != "tau21_J2"}
    from dataclasses import replace

    with pytest.raises(EventDataError, match="tau21_J2"):
        DijetSample.from_batch(replace(b, offline=del_off), source="x.h5")
    with pytest.raises(ValueError, match="s_over_b"):
        lhco_toy.n_signal_for(-0.1, 100)
