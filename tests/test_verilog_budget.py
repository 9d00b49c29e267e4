"""Latency target: the generator picks the deepest stages the clock allows and meets budget_ns or says why."""
from __future__ import annotations

import pytest

from l1ad.firmware.verilog import VerilogConfig, generate
from l1ad.firmware.verilog.generator import T_LEVEL_NS, T_STAGE_NS, max_levels_at
from l1ad.sim.models import l1_autoencoder
from l1ad.trigger.errors import L1adError


def test_max_levels_follow_the_model():
    for mhz in (200.0, 240.0, 300.0, 360.0, 500.0):
        k = max_levels_at(mhz)
        assert T_STAGE_NS + k * T_LEVEL_NS <= 1000.0 / mhz < T_STAGE_NS + (k + 1) * T_LEVEL_NS
    assert (max_levels_at(240.0), max_levels_at(360.0)) == (3, 2)


def test_meet_budget_is_the_cheapest_fitting_design():
    qm = l1_autoencoder((16, 8, 4, 8, 16), seed=3)
    cfg = VerilogConfig(clock_mhz=360.0, budget_ns=200.0, meet_budget=True)
    d = generate(qm, cfg)
    assert d.meta["max_levels_per_stage"] <= 2 and d.meta["latency_ns"] <= 200.0
    # one level deeper per stage would miss the clock; shallower stages never cost fewer cycles
    for k in (1, 2):
        other = generate(qm, cfg.model_copy(update={"meet_budget": False, "levels_per_stage": k}))
        assert other.latency_cycles >= d.latency_cycles


def test_unreachable_budget_names_the_best_latency():
    qm = l1_autoencoder((16, 8, 4, 8, 16), seed=3)
    best = generate(qm, VerilogConfig(clock_mhz=240.0, levels_per_stage=3, cse_slack=0)).meta["latency_ns"]
    with pytest.raises(L1adError, match=rf"budget_ns = 1 .*best reachable latency .*= {best:g} ns"):
        generate(qm, VerilogConfig(clock_mhz=240.0, budget_ns=1.0, meet_budget=True))
    with pytest.raises(L1adError, match="clock_mhz = 2000"):
        generate(qm, VerilogConfig(clock_mhz=2000.0, meet_budget=True))


def test_cli_budget_picks_the_placement_or_names_the_best(tmp_path, capsys):
    """`l1ad export verilog --budget-ns`: the design meets the budget at the clock, or exit 2 with the best latency
    and nothing written."""
    import json

    from l1ad.cli import main

    qm = l1_autoencoder((16, 8, 4, 8, 16), seed=3)
    qm.save(tmp_path / "qmodel.json")
    ok = tmp_path / "ok"
    assert main(["export", "verilog", str(tmp_path / "qmodel.json"), "--out", str(ok), "--clock-mhz", "240",
                 "--budget-ns", "200"]) == 0
    meta = json.loads((ok / "design.json").read_text())
    assert meta["latency_ns"] <= 200.0 and meta["max_levels_per_stage"] <= max_levels_at(240.0)
    bad = tmp_path / "bad"
    assert main(["export", "verilog", str(tmp_path / "qmodel.json"), "--out", str(bad), "--budget-ns", "10"]) == 2
    err = capsys.readouterr().err
    assert "budget_ns = 10" in err and "best reachable latency" in err and not bad.exists()
    assert main(["export", "verilog", str(tmp_path / "qmodel.json"), "--out", str(bad), "--budget-ns", "100",
                 "--levels-per-stage", "2"]) == 2
    assert "not both" in capsys.readouterr().err


def test_default_sharing_level_yields_to_the_budget():
    """cse_slack left at its default: kept while the latency is within budget_ns, dropped (minimum-depth trees)
    when it is not; given explicitly: always kept."""
    qm = l1_autoencoder((16, 8, 16), seed=5)
    deep = generate(qm, VerilogConfig(cse_slack=1)).meta
    flat = generate(qm, VerilogConfig(cse_slack=0)).meta
    assert deep["latency_ns"] > flat["latency_ns"]  # this network: one more cycle for the extra level
    loose = generate(qm, VerilogConfig(budget_ns=deep["latency_ns"])).meta
    assert loose["config"]["cse_slack"] == 1 and loose["latency_ns"] == deep["latency_ns"]
    tight = generate(qm, VerilogConfig(budget_ns=flat["latency_ns"])).meta
    assert tight["config"]["cse_slack"] == 0 and tight["latency_ns"] == flat["latency_ns"]
    forced = generate(qm, VerilogConfig(budget_ns=flat["latency_ns"], cse_slack=1)).meta
    assert forced["latency_ns"] == deep["latency_ns"] and not forced["within_budget"]
