"""ROC, AUC (weighted, with ties), TPR at fixed FPR, efficiency at a rate."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from l1ad.trigger.performance import efficiencies_at_rates, efficiency, efficiency_curve, roc_auc, roc_curve, tpr_at_fpr
from l1ad.trigger.rates import RateStatisticsWarning
from l1ad.trigger.thresholds import thresholds_for_rates


def _sk_auc(b, s, wb, ws):
    y = np.r_[np.zeros(b.size), np.ones(s.size)]
    return roc_auc_score(y, np.r_[b, s], sample_weight=np.r_[wb, ws])


@pytest.mark.parametrize("integer", [False, True])
def test_auc_matches_sklearn_with_weights_and_ties(integer):
    rng = np.random.default_rng(1)
    b = rng.normal(0, 1, 3000)
    s = rng.normal(0.7, 1.2, 800)
    if integer:  # coarse integer codes: heavy ties within and across the samples
        b, s = np.round(b * 3).astype(np.int32), np.round(s * 3).astype(np.int32)
    wb, ws = rng.uniform(0.1, 3, b.size), rng.uniform(0.5, 1.5, s.size)
    assert roc_auc(b, s, wb, ws) == pytest.approx(_sk_auc(b, s, wb, ws), abs=1e-12)
    assert roc_auc(b, s) == pytest.approx(_sk_auc(b, s, np.ones(b.size), np.ones(s.size)), abs=1e-12)


def test_auc_tie_semantics():
    # every signal score ties with every background score: AUC 1/2; identical ordering: 1; reversed: 0
    assert roc_auc(np.ones(5), np.ones(3)) == 0.5
    assert roc_auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    # P(s > b) + P(s = b) / 2 by brute force
    b, s = np.array([0, 1, 1, 2]), np.array([1, 2, 3])
    wb, ws = np.array([1.0, 2.0, 1.0, 1.0]), np.array([1.0, 3.0, 1.0])
    W = np.outer(ws, wb)
    gt, eq = s[:, None] > b[None, :], s[:, None] == b[None, :]
    assert roc_auc(b, s, wb, ws) == pytest.approx(((gt + 0.5 * eq) * W).sum() / W.sum(), abs=1e-15)


def test_roc_vertices_use_strict_threshold():
    b = np.array([0.0, 1.0, 2.0, 3.0])
    s = np.array([2.0, 3.0, 4.0])
    roc = roc_curve(b, s)
    for f, t, thr in zip(roc.fpr, roc.tpr, roc.thresholds):
        assert f == pytest.approx((b > thr).mean()) and t == pytest.approx((s > thr).mean())
    assert roc.fpr[0] == roc.tpr[0] == 0 and roc.fpr[-1] == roc.tpr[-1] == 1 and roc.thresholds[-1] == -np.inf
    assert np.all(np.diff(roc.fpr) >= 0) and np.all(np.diff(roc.tpr) >= 0)


def test_tpr_at_fpr_interpolation_and_step():
    # background 0..9 (unit weights): FPR steps of 0.1; signal 5..14
    b = np.arange(10.0)
    s = np.arange(5.0, 15.0)
    roc = roc_curve(b, s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RateStatisticsWarning)
        r = tpr_at_fpr(roc, 0.15)
    # vertex at threshold 8 (FPR 0.1, TPR 0.6), next at threshold 7 (FPR 0.2, TPR 0.7)
    assert r.threshold == 8.0 and r.fpr_step == pytest.approx(0.1) and r.tpr_step == pytest.approx(0.6)
    assert r.tpr == pytest.approx(0.65)
    assert (b > r.threshold).mean() <= 0.15 and (s > r.threshold).mean() == pytest.approx(r.tpr_step)
    # exactly on a vertex: no interpolation; signal-only vertical segment at FPR 0 takes its top
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RateStatisticsWarning)
        assert tpr_at_fpr(roc, 0.1 + 1e-15).tpr == pytest.approx(0.6)
        r0 = tpr_at_fpr(roc, 1e-5)
    assert r0.tpr_step == pytest.approx(0.5) and r0.threshold == 9.0  # signal 10..14 above every background
    assert r0.tpr == pytest.approx(0.5 + 0.1 * 1e-5 / 0.1)
    with pytest.raises(ValueError, match="FPR"):
        tpr_at_fpr(roc, 0.0)


def test_tpr_at_fpr_warns_on_small_background():
    rng = np.random.default_rng(2)
    b, s = rng.normal(size=20_000), rng.normal(2, 1, 2000)
    roc = roc_curve(b, s)
    with pytest.warns(RateStatisticsWarning) as rec:
        r = tpr_at_fpr(roc, 1e-5)
    assert [str(w.message) for w in rec] == list(r.warnings) and len(r.warnings) == 2
    assert "0.2 effective events at this FPR" in r.warnings[0]
    assert "below the smallest non-zero FPR of the sample (5e-05)" in r.warnings[1]
    assert np.isfinite(r.tpr) and 0 <= r.tpr <= 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", RateStatisticsWarning)
        r = tpr_at_fpr(roc, 1e-2)  # 200 background events at this FPR
    assert r.warnings == ()


def test_efficiency_at_rates():
    rng = np.random.default_rng(3)
    zb = rng.exponential(size=50_000)
    sig = rng.exponential(3, size=5000)
    ws = rng.uniform(0.5, 1.5, sig.size)
    ths = thresholds_for_rates(zb, [1e5, 1e6])
    effs = efficiencies_at_rates(sig, ths, ws)
    for th, e in zip(ths, effs):
        want = ws[sig > th.threshold].sum() / ws.sum()
        assert e["efficiency"] == pytest.approx(want, rel=1e-12)
        assert e["efficiency_lo"] <= e["efficiency"] <= e["efficiency_hi"]
        assert e["threshold"] == th.threshold
    assert effs[0]["efficiency"] < effs[1]["efficiency"]
    assert efficiency(sig, ths[0].threshold, ws).value == pytest.approx(effs[0]["efficiency"])
    np.testing.assert_allclose(efficiency_curve(sig, [0.0, 1e9], ws), [1.0, 0.0])
