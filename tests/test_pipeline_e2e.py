"""`l1ad run` end to end on a tiny configuration: summary.json schema, bit-exact checks, caching, report."""
from __future__ import annotations

import json

import pytest

from l1ad.config import load_config
from l1ad.pipeline import build_stages, run_pipeline
from l1ad.report import chromium, screenshot
from l1ad.summary import SUMMARY_KEYS

TINY = {
    "data": {"chunk_size": 300, "sizes": {
        "pileup_pool": 300, "minbias_closure": 300, "minbias": 900, "qcd_pt15_30": 300,
        **{f"qcd_pt{a}_{b}": 100 for a, b in ((30, 50), (50, 80), (80, 120), (120, 170), (170, 250), (250, 400), (400, 600))},
        "qcd_pt600_inf": 100, "wlnu": 100, "zll": 100, "ttbar": 100, "Ato4l": 150, "leptoquark": 150,
        "hToTauTau": 150, "hChToTauNu": 150, "dijet_resonance": 150, "qcd_dijet": 200}},
    "models": {"training": {"epochs": 3, "patience": 2, "progress": False, "plot": False}},
    "rates": {"target_rates_khz": [10, 100]},
    "firmware": {"hls_verify_events": 3000, "cosim_vectors": 3000, "yosys": False},
    "offline": {"trigger": "or", "nplm": {"n_toys": 3, "max_centers": 40}, "nplm_max_events": 300,
                "bumphunt": {"n_toys": 20, "n_lee_toys": 10, "widths": [3]}},
    "cicada": {"model": {"teacher_epochs": 2, "student_epochs": 3, "progress": False, "student_filters": 2,
                         "student_hidden": [4]}, "cosim_vectors": 1000, "hls_verify_events": 1000},
}


@pytest.mark.slow
@pytest.mark.pythia
@pytest.mark.hls
@pytest.mark.verilator
def test_run_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("L1AD_CACHE_DIR", str(tmp_path / "cache"))
    cfg = load_config(overrides=TINY)
    out = tmp_path / "run"
    res = run_pipeline(cfg, out, log=lambda s: None)
    s = json.loads(res["summary"].read_text())
    assert set(SUMMARY_KEYS) <= set(s)
    assert s["config_hash"] == cfg.hash()
    assert s["data"]["zero_bias"]["events"] > 0 and s["data"]["zero_bias"]["weight_sum"] > 0
    for fe in ("qkeras", "brevitas", "float"):
        assert set(s["models"][fe]["auc"]) == {"Ato4l", "leptoquark", "hToTauTau", "hChToTauNu"}
        assert all(0.0 <= a <= 1.0 for a in s["models"][fe]["auc"].values())
    for fe in ("qkeras", "brevitas"):  # the framework's own score equals the emulator's, event for event
        assert all(v["score_mismatches"] == 0 for v in s["models"][fe]["framework_vs_emulator"].values())
    assert [t["target_rate_hz"] for t in s["thresholds"]] == [1e4, 1e5]
    for t in s["thresholds"]:
        assert isinstance(t["threshold_int"], int) and t["rate_hz"] <= t["target_rate_hz"]
    assert s["hls"]["vectors"] == 3000 and s["hls"]["mismatches"] == {"outputs": 0, "score": 0, "trigger": 0}
    assert s["rtl"]["vectors"] >= 3000 and s["rtl"]["mismatches"] == 0 and s["rtl"]["latency_cycles"] > 0
    c = s["cicada"]  # the CICADA-style trigger: bit-exact student, thresholds, OR with the deployed trigger
    assert c["enabled"] and all(v["output_mismatches"] == 0 for v in c["framework_vs_emulator"].values())
    assert c["rtl"]["mismatches"] == 0 and c["rtl"]["vectors"] >= 1000
    assert c["hls"]["vectors"] >= 1000 and not any(c["hls"]["mismatches"].values())
    assert [t["target_hz"] for t in c["thresholds"]] == [1e4, 1e5]
    assert all(r["or_hz"] >= max(r["axol1tl_hz"], r["cicada_hz"]) and r["overlap_hz"] <= min(r["axol1tl_hz"], r["cicada_hz"])
               for r in c["or_with_axol1tl"])
    assert -1.0 <= c["correlation"]["spearman"] <= 1.0
    # the offline samples are the OR's: at every target rate it keeps at least the AXOL1TL-style trigger's rate
    assert s["offline"]["trigger"] == "or"
    for p, r in zip(s["offline"]["per_rate"], c["or_with_axol1tl"]):
        assert p["kept_hz"] >= r["axol1tl_hz"] * (1 - 1e-9) and p["kept_hz"] == pytest.approx(r["or_hz"], rel=1e-9)
    reach = s["offline"]["reach"]
    assert {r["signal"] for r in reach} >= {"Ato4l", "leptoquark"}
    assert all(set(s["timings"][st.name]) == {"seconds", "cached"} for st in build_stages())
    # a second run reuses every stage; changing only the offline settings reruns only that stage
    again = run_pipeline(cfg, out, log=lambda s: None)
    t2 = json.loads(again["summary"].read_text())["timings"]
    assert all(t2[st.name]["cached"] for st in build_stages())
    cfg2 = load_config(overrides={**TINY, "offline": {**TINY["offline"], "luminosity_fb": 100.0}})
    t3 = json.loads(run_pipeline(cfg2, out, log=lambda s: None)["summary"].read_text())["timings"]
    assert [n for n, v in t3.items() if isinstance(v, dict) and not v["cached"]] == ["offline"]
    page = res["report"].read_text()
    assert "data:image/png;base64," in page and "Thresholds by rate" in page
    if chromium() is not None:
        shot = screenshot(res["report"], tmp_path / "report.png", width=1200, height=1600)
        assert shot.stat().st_size > 20_000
