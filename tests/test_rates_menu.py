"""The reference L1 menu on hand-built events, its rates, and pure rates."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from l1ad.trigger.events import EventBatch
from l1ad.trigger.menu import MenuConfig, ht, menu_fires, menu_rates, pure_fraction, seed_decisions
from l1ad.trigger.rates import ZERO_BIAS_RATE_HZ

MET, EG, MU, JET = 0, 1, 5, 9  # first rows of each object type


def _events(*rows_per_event):
    """Events from lists of (row, pT, eta) entries; phi = 0.1."""
    o = np.zeros((len(rows_per_event), 19, 3), dtype=np.float32)
    for i, rows in enumerate(rows_per_event):
        for row, pt, eta in rows:
            o[i, row] = (pt, eta, 0.1)
    return EventBatch.build(o)


def test_each_seed_on_hand_built_events():
    b = _events(
        [],                                          # 0: empty
        [(JET, 180.0, 4.5)],                         # 1: SingleJet at threshold (>=), forward jet allowed
        [(JET, 179.5, 0.0)],                         # 2: just below
        [(JET + i, 60.0, 0.5) for i in range(6)],    # 3: HT = 360 exactly -> HT fires
        [(JET + i, 60.0, 2.6) for i in range(6)],    # 4: jets outside |eta| <= 2.5: HT = 0
        [(JET + i, 29.5, 0.0) for i in range(10)],  # 5: jets below 30 GeV: HT = 0
        [(MU + 1, 22.0, -2.4)],                      # 6: SingleMu at both edges
        [(MU, 22.0, 2.45)],                          # 7: muon outside |eta| <= 2.4
        [(EG + 3, 36.0, 2.5)],                       # 8: SingleEG, 4th slot
        [(EG, 35.5, 0.0)],                           # 9: below
        [(MET, 100.0, 0.0)],                         # 10: MET
        [(MET, 99.5, 0.0), (MU, 21.5, 0.0), (EG, 35.5, 0.0), (JET, 179.5, 0.0)],  # 11: all just below
    )
    d = seed_decisions(b)
    assert list(d) == ["SingleJet", "HT", "SingleMu", "SingleEG", "MET"]
    fired = {k: np.flatnonzero(v).tolist() for k, v in d.items()}
    assert fired == {"SingleJet": [1], "HT": [3], "SingleMu": [6], "SingleEG": [8], "MET": [10]}
    np.testing.assert_array_equal(np.flatnonzero(menu_fires(b)), [1, 3, 6, 8, 10])
    np.testing.assert_allclose(ht(b)[[0, 1, 2, 3, 4, 5, 11]], [0, 0, 179.5, 360, 0, 0, 179.5])


def test_configurable_and_disabled_seeds():
    b = _events([(JET, 100.0, 0.0)], [(MU, 10.0, 0.0)], [(JET, 40.0, 1.0), (JET + 1, 35.0, -1.0)])
    m = MenuConfig(single_jet_pt=90, single_mu_pt=None, ht=70, ht_jet_pt=35)
    d = seed_decisions(b, m)
    assert "SingleMu" not in d and m.enabled() == ("SingleJet", "HT", "SingleEG", "MET")
    assert d["SingleJet"].tolist() == [True, False, False]
    assert d["HT"].tolist() == [True, False, True]  # 100 and 40 + 35 >= 70
    none = MenuConfig(single_jet_pt=None, ht=None, single_mu_pt=None, single_eg_pt=None, met=None)
    assert not menu_fires(b, none).any()
    with pytest.raises(ValidationError):
        MenuConfig(single_jet_pt=-1)
    with pytest.raises(ValidationError):
        MenuConfig(singlejet=100)


def test_menu_rates_and_pure_rate():
    b = _events([(JET, 200.0, 0.0)], [(MU, 30.0, 0.0)], [], [], [(MET, 150.0, 0.0), (MU, 25.0, 1.0)])
    b = b.with_weight(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    mr = menu_rates(b)
    zb = ZERO_BIAS_RATE_HZ
    assert mr.seeds["SingleJet"].value == pytest.approx(1 / 15)
    assert mr.seeds["SingleMu"].value == pytest.approx(7 / 15)
    assert mr.seeds["MET"].value == pytest.approx(5 / 15)
    assert mr.seeds["HT"].value == 0.0 and mr.seeds["HT"].hi > 0
    assert mr.total.value == pytest.approx(8 / 15)  # events 0, 1, 4
    d = mr.to_dict()
    assert d["total"]["rate_hz"] == pytest.approx(zb * 8 / 15)
    assert d["seeds"]["MET"]["rate_lo_hz"] <= d["seeds"]["MET"]["rate_hz"] <= d["seeds"]["MET"]["rate_hi_hz"]
    # the anomaly trigger fires on events 1, 2, 3: pure = events 2 and 3 (weights 3 + 4)
    ad = np.array([False, True, True, True, False])
    p = pure_fraction(ad, menu_fires(b), b.weight)
    assert p.value == pytest.approx(7 / 15) and p.n_events == 2
    with pytest.raises(ValueError, match="shape"):
        pure_fraction(ad, menu_fires(b)[:3])
