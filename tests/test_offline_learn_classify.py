"""k-fold classifiers, CWoLa on mixed samples, Tag N' Train, CATHODE pieces."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from l1ad.offline import lhco_toy
from l1ad.offline.classify import ClassifierConfig, kfold_classify
from l1ad.offline.cwola import CWoLaConfig, train_cwola
from l1ad.offline.sic import sic_curve

FAST = ClassifierConfig(n_folds=3, n_ensemble=1, max_iter=40)


def test_out_of_fold_scores_do_not_memorise():
    # identical distributions and a flexible model: in-sample scores would separate, out-of-fold must not
    rng = np.random.default_rng(1)
    X0, X1 = rng.normal(size=(1000, 3)), rng.normal(size=(1000, 3))
    cfg = FAST.model_copy(update={"max_iter": 60, "min_samples_leaf": 2, "max_leaf_nodes": 64, "n_iter_no_change": 60})
    res = kfold_classify(X0, X1, cfg)
    y = np.r_[np.zeros(1000), np.ones(1000)]
    oof = roc_auc_score(y, np.r_[res.score0, res.score1])
    fold0 = res.folds[0]
    train = np.r_[res.fold0 != 0, res.fold1 != 0]
    insample = roc_auc_score(y[train], fold0.predict(np.r_[X0, X1][train]))
    assert abs(oof - 0.5) < 0.05
    assert insample > 0.6  # the same models do memorise their own training events
    assert set(np.unique(res.fold0)) == {0, 1, 2}


@pytest.mark.parametrize("kind", ["bdt", "nn"])
def test_cwola_mixed_samples_learn_the_supervised_ranking(kind):
    # CWoLa theorem: mixtures with signal fractions 0.7 vs 0.3 -> a classifier that ranks signal over background
    rng = np.random.default_rng(2)

    def mix(n, f):
        s = rng.random(n) < f
        return np.where(s[:, None], rng.normal(1.5, 1, (n, 2)), rng.normal(0, 1, (n, 2))), s

    M1, s1 = mix(4000, 0.7)
    M2, s2 = mix(4000, 0.3)
    cfg = FAST.model_copy(update={"kind": kind, "epochs": 8, "hidden": (16, 16)})
    res = kfold_classify(M2, M1, cfg)
    scores = np.r_[res.score0, res.score1]
    truth = np.r_[s2, s1]
    assert roc_auc_score(truth, scores) > 0.8  # optimum (Bayes) is ~0.86


def test_cwola_sr_vs_sidebands_finds_signal_on_the_toy():
    d = lhco_toy.make_dataset(60_000, 0.05, seed=4)
    res = train_cwola(d, CWoLaConfig(classifier=FAST))
    test = lhco_toy.make_sr_test_set(20_000, 2_000, seed=9)
    s = res.predict(test.features)
    assert sic_curve(s[test.is_signal], s[~test.is_signal]).max_sic(20) > 3.0
    assert res.sr_index.size + res.sb_index.size < len(d)  # 200 GeV sidebands only
    assert np.isnan(res.scores_for(len(d))).sum() == len(d) - res.sr_index.size - res.sb_index.size


def test_kfold_rejects_bad_shapes():
    with pytest.raises(ValueError, match="feature counts"):
        kfold_classify(np.zeros((10, 2)), np.zeros((10, 3)), FAST)
    with pytest.raises(ValueError, match="n_folds"):
        kfold_classify(np.zeros((2, 2)), np.zeros((10, 2)), FAST)


def test_flow_samples_respect_ranges_and_follow_the_condition():
    from l1ad.offline.flows import ConditionalFlow, FlowConfig

    d = lhco_toy.make_dataset(15_000, 0.0, seed=5)
    flow = ConditionalFlow(FlowConfig(transforms=2, hidden=(16, 16), epochs=3, batch_size=1024, keep_best=2)).fit(d.features, d.mjj_tev)
    assert len(flow.states) == 2 and len(flow.history) == 3
    x = flow.sample(np.full(4000, 3.5), seed=1)
    assert x.shape == (4000, 4) and np.isfinite(x).all()
    lo, hi = d.features.min(0), d.features.max(0)
    span = hi - lo
    assert np.all(x >= lo - 0.03 * span) and np.all(x <= hi + 0.03 * span)
    # marginal of tau21 of the light jet close to the data's
    assert np.median(x[:, 2]) == pytest.approx(np.median(d.features[:, 2]), abs=0.08)


def test_tnt_runs_and_scores_all_events():
    from l1ad.offline.tnt import AEConfig, TNTConfig, train_tnt

    d = lhco_toy.make_dataset(20_000, 0.05, seed=6)
    r = train_tnt(d, TNTConfig(classifier=FAST, autoencoder=AEConfig(epochs=2)))
    assert r.score_sr.shape == r.sr_index.shape and np.isfinite(r.score_sr).all()
    assert r.predict(d.features[:10]).shape == (10,)
