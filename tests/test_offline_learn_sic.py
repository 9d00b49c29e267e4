"""SIC curves and tables."""
import numpy as np
import pytest

from l1ad.offline.sic import format_sic_table, sic_curve, sic_table


def test_sic_curve_exact_small_example():
    # signal scores 3, 2 ; background 2.5, 1, 0 -> thresholds 3, 2.5, 2, 1, 0
    c = sic_curve(np.array([3.0, 2.0]), np.array([2.5, 1.0, 0.0]))
    assert c.eff_s.tolist() == [0.5, 0.5, 1.0, 1.0, 1.0]
    assert c.eff_b.tolist() == pytest.approx([0.0, 1 / 3, 1 / 3, 2 / 3, 1.0])
    assert c.n_bkg_pass.tolist() == [0, 1, 1, 2, 3]
    assert c.sic[2] == pytest.approx(1.0 / np.sqrt(1 / 3))
    assert c.max_sic(min_bkg_events=1) == pytest.approx(np.sqrt(3))
    assert c.max_sic(min_bkg_events=3) == pytest.approx(1.0)
    assert np.isnan(c.max_sic(min_bkg_events=4))


def test_random_score_has_sic_sqrt_eff_and_separable_is_large():
    rng = np.random.default_rng(0)
    c = sic_curve(rng.random(20000), rng.random(200000))
    assert c.sic_at(0.25) == pytest.approx(np.sqrt(0.25), rel=0.05)  # SIC = eff_S/sqrt(eff_S) for a random cut
    good = sic_curve(rng.normal(3, 1, 20000), rng.normal(0, 1, 200000))
    assert good.max_sic() > 10
    rows = sic_table({"good": {0.01: good}, "random": {0.01: c}})
    t = format_sic_table(rows)
    assert "| good |" in t and "S/B=1%" in t
