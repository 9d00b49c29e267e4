"""The rates report (library) and the `l1ad rates` command with a stand-in model."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from pydantic import ValidationError

from l1ad.trigger.events import EventBatch
from l1ad.trigger.rate_report import RatesConfig, evaluate
from l1ad.trigger.rates import ZERO_BIAS_RATE_HZ, RateStatisticsWarning


def _batch(n, scale, seed, weight=None):
    rng = np.random.default_rng(seed)
    o = np.zeros((n, 19, 3), dtype=np.float32)
    o[:, :, 0] = np.round(rng.exponential(scale, (n, 19)) * (rng.random((n, 19)) < 0.4) * 2) / 2  # 0.5 GeV grid
    o[:, :, 1] = rng.uniform(-3, 3, (n, 19))
    o[:, :, 2] = rng.uniform(-3, 3, (n, 19))
    o[o[:, :, 0] == 0] = 0
    return EventBatch.build(o, weight=weight)


class ToyModel:
    """Score = scalar sum of all object pT (float32, like a network output)."""

    def score(self, batch: EventBatch) -> np.ndarray:
        return batch.objects[:, :, 0].sum(axis=1)


def test_config_validation():
    c = RatesConfig()
    assert c.target_rates_khz == (1.0, 5.0, 10.0, 100.0) and c.zb_rate_hz == ZERO_BIAS_RATE_HZ
    assert RatesConfig(target_rates_khz=(10, 1)).targets_hz == [1e3, 1e4]
    assert RatesConfig(colliding_bunches=3564).zb_rate_hz == 40.079e6
    for bad in ({"target_rates_khz": (0,)}, {"target_rates_khz": (30_000,)}, {"target_rates_khz": ()},
                {"cl": 1.5}, {"stat_method": "wald"}, {"fpr_targets": (0,)}, {"menu": {"ht": -1}}, {"nope": 1}):
        with pytest.raises(ValidationError):
            RatesConfig(**bad)


def test_evaluate_report_is_consistent():
    zb = _batch(20_000, 6.0, 0, weight=np.random.default_rng(1).uniform(0.5, 1.5, 20_000))
    sig = _batch(2000, 25.0, 2)
    m = ToyModel()
    cfg = RatesConfig(target_rates_khz=(10, 100, 1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RateStatisticsWarning)
        rep = evaluate(zb, m.score(zb), {"hard": (sig, m.score(sig))}, cfg)
    d = json.loads(json.dumps(rep.to_dict()))  # JSON-serialisable, no NaN
    assert "NaN" not in json.dumps(rep.to_dict())
    s_zb, s_sig = m.score(zb), m.score(sig)
    for t, p in zip(d["thresholds"], d["pure_rates"]):
        ad = s_zb > t["threshold"]
        assert t["rate_hz"] <= t["target_hz"]
        assert t["rate_hz"] == pytest.approx(ZERO_BIAS_RATE_HZ * zb.weight[ad].sum() / zb.weight.sum(), rel=1e-12)
        assert p["pure_rate_hz"] <= p["rate_hz"] == t["rate_hz"]
    menu = d["menu"]
    assert set(menu["seeds"]) == {"SingleJet", "HT", "SingleMu", "SingleEG", "MET"}
    assert max(v["rate_hz"] for v in menu["seeds"].values()) <= menu["total"]["rate_hz"] <= sum(
        v["rate_hz"] for v in menu["seeds"].values()) + 1e-6
    h = d["signals"]["hard"]
    y = np.r_[np.zeros(len(zb)), np.ones(len(sig))]
    from sklearn.metrics import roc_auc_score

    assert h["auc"] == pytest.approx(roc_auc_score(y, np.r_[s_zb, s_sig], sample_weight=np.r_[zb.weight, sig.weight]), abs=1e-12)
    effs = [e["efficiency"] for e in h["efficiency_at_rate"]]
    assert effs == sorted(effs) and 0 < effs[0]
    assert len(h["efficiency_curve"]) == len(d["rate_curve"]["thresholds"])
    assert h["tpr_at_fpr"][0]["fpr"] == 1e-5 and h["tpr_at_fpr"][0]["warnings"]  # 20k events cannot reach 1e-5
    assert any("effective events at this FPR" in w for w in d["warnings"])
    assert d["conventions"]["trigger_fires"] == "score > threshold"


def test_evaluate_on_integer_codes():
    zb, sig = _batch(5000, 6.0, 7), _batch(500, 25.0, 8)
    codes = {k: (ToyModel().score(b) * 2).astype(np.int32) for k, b in (("zb", zb), ("sig", sig))}  # 0.5 GeV LSB
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RateStatisticsWarning)
        d = evaluate(zb, codes["zb"], {"sig": (sig, codes["sig"])}, RatesConfig(target_rates_khz=(100, 1000))).to_dict()
    for t in d["thresholds"]:
        assert isinstance(t["threshold"], int) and t["rate_hz"] <= t["target_hz"]
    assert all(isinstance(x, int) for x in d["rate_curve"]["thresholds"])
    assert isinstance(d["signals"]["sig"]["tpr_at_fpr"][0]["threshold"], int)


def test_rates_command(tmp_path, monkeypatch):
    from l1ad.cli import main
    from l1ad.trigger.io import write_events

    zb_file, sig_file = tmp_path / "zb.h5", tmp_path / "sig.h5"
    write_events(zb_file, _batch(5000, 6.0, 3))
    write_events(sig_file, _batch(500, 25.0, 4))
    (tmp_path / "model").mkdir()
    import l1ad.trigger.modeldir as modeldir  # the real module (others import from it), with a stand-in loader

    monkeypatch.setattr(modeldir, "load_model", lambda path: ToyModel())
    cfg = tmp_path / "rates.yaml"
    cfg.write_text("menu:\n  single_jet_pt: 150\ncl: 0.9\n")
    out = tmp_path / "out"
    rc = main(["rates", str(tmp_path / "model"), str(zb_file), "--signal", f"toy={sig_file}", "--rates", "50,500",
               "--config", str(cfg), "--out", str(out)])
    assert rc == 0
    d = json.loads((out / "rates.json").read_text())
    assert [t["target_hz"] for t in d["thresholds"]] == [50e3, 500e3]
    assert d["config"]["cl"] == 0.9 and d["config"]["menu"]["single_jet_pt"] == 150
    assert list(d["signals"]) == ["toy"]
    for png in ("rate_curve.png", "roc.png", "efficiency_vs_rate.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    # a target above the zero-bias rate is a one-line user error
    assert main(["rates", str(tmp_path / "model"), str(zb_file), "--rates", "40000", "--out", str(out)]) == 2


def test_unreachable_targets_are_flagged():
    """Every event of a 1000-event sample carries 1/1000 of the zero-bias rate (~28.6 kHz): 1, 5 and 10 kHz all
    land on the top score (nothing above), which rates.json must say, with the events needed."""
    zb = _batch(1000, 6.0, 11)
    scores = np.arange(1000, dtype=np.int64)
    cfg = RatesConfig(target_rates_khz=(1, 5, 10, 100))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RateStatisticsWarning)
        d = json.loads(json.dumps(evaluate(zb, scores, None, cfg).to_dict()))
    checks = {c["target_hz"]: c for c in d["threshold_checks"]}
    for t in (1e3, 5e3, 1e4):
        c = checks[t]
        assert not c["reachable"] and c["threshold"] == 999 and c["rate_hz"] == 0.0
        assert sorted(c["shared_with_hz"] + [t]) == [1e3, 5e3, 1e4]
        assert c["zb_events_needed"] == int(np.ceil(10 * cfg.zb_rate_hz / t))
        assert c["rate_if_lower_hz"] == pytest.approx(cfg.zb_rate_hz / 1000)
        assert any(w.startswith(f"target {t / 1e3:g} kHz not reached") for w in d["warnings"])
    c = checks[1e5]  # 3 events above: 85.8 kHz, within a factor 2 of the target
    assert c["reachable"] and c["rate_hz"] == pytest.approx(3 * cfg.zb_rate_hz / 1000) and c["message"] == ""


def test_tpr_carries_interval_and_statistics_flag():
    zb, sig = _batch(4000, 6.0, 12), _batch(400, 25.0, 13)
    m = ToyModel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RateStatisticsWarning)
        d = evaluate(zb, m.score(zb), {"s": (sig, m.score(sig))}, RatesConfig(fpr_targets=(1e-5, 0.01))).to_dict()
    low, high = d["signals"]["s"]["tpr_at_fpr"]
    for t in (low, high):
        assert t["tpr_step_lo"] <= t["tpr_step"] <= t["tpr_step_hi"]
        eff = (m.score(sig) > t["threshold"]).mean()
        assert t["tpr_step"] == pytest.approx(eff, abs=1e-12)
    assert not low["reliable"] and low["zb_events_needed"] == 1_000_000  # 10 events at FPR 1e-5
    assert high["reliable"] and high["zb_events_needed"] == 1000
    assert 0 < high["tpr_step_hi"] - high["tpr_step_lo"] < 0.2
