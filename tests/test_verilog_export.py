"""Verilog export: files, ports, latency bookkeeping, runtime thresholds, `verilator --lint-only -Wall` cleanliness
(small random networks in every configuration and the full-size 57-in autoencoder / VAE encoder), the Yosys
report parser and the `l1ad export verilog` command."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from pydantic import ValidationError

from l1ad.firmware.verilog import VerilogConfig, export_verilog, generate
from l1ad.sim.models import l1_autoencoder, random_qmodel

needs_verilator = pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator not installed")
needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed")


@pytest.fixture(scope="module")
def ae():
    return l1_autoencoder()


def test_files_ports_and_latency(tmp_path, ae):
    d = export_verilog(ae, tmp_path / "rtl")
    meta = json.loads((tmp_path / "rtl" / "design.json").read_text())
    assert meta == json.loads(json.dumps(d.meta))
    names = [f[:-2] for f in meta["files"]]
    top = meta["top"]
    # a module per block: input, every layer, score, delay line, top; one module per file, named as the file
    assert names == [f"{top}_input"] + [f"{top}_{L.name}" for L in ae.layers] + [f"{top}_score", f"{top}_delay", top]
    for f in meta["files"]:
        text = (tmp_path / "rtl" / f).read_text()
        assert re.findall(r"^module (\w+)", text, re.M) == [f[:-2]]
    assert (tmp_path / "rtl" / "qmodel.json").is_file()
    assert (tmp_path / "rtl" / "filelist.f").read_text().split() == meta["files"]
    assert meta["latency_cycles"] == sum(b["cycles"] for b in meta["latency_breakdown"])
    assert meta["latency_ns"] == pytest.approx(meta["latency_cycles"] * 1000 / 240, abs=1e-3)
    assert meta["fits_two_bx"] == (meta["latency_ns"] <= 50) and meta["fits_one_bx"] == (meta["latency_ns"] <= 25)
    sf = ae.score.format
    assert meta["ports"]["score"] == sf.width and meta["ports"]["trigger"] == len(ae.thresholds)
    assert meta["ports"]["thr_data"] == sf.width + 1 and meta["ports"]["x_in"]["width"] == 57 * ae.input.format.width
    topv = (tmp_path / "rtl" / f"{top}.v").read_text()
    for k, t in enumerate(ae.thresholds):  # runtime-loadable thresholds with the IR's reset values
        assert re.search(rf"thr{k} <= {sf.width + 1}'d{t};", topv)
    for p in ("thr_we", "thr_addr", "thr_data", "in_valid", "out_valid", "rst"):
        assert re.search(rf"\b{p}\b", topv)
    # formats are stated in the comments of every layer module
    for L in ae.layers:
        assert str(L.output_format) in (tmp_path / "rtl" / f"{top}_{L.name}.v").read_text()


def test_pipelining_is_configurable(ae):
    lat = {k: generate(ae, VerilogConfig(levels_per_stage=k)) for k in (0, 2, 3, 6)}
    assert lat[2].latency_cycles > lat[3].latency_cycles > lat[6].latency_cycles > lat[0].latency_cycles
    for k in (2, 3, 6):  # no stage deeper than asked (stages are packed across block boundaries)
        assert lat[k].meta["max_levels_per_stage"] <= k
    # registers per layer: input reg + input block + 6 layers + score + output register
    per_block = generate(ae, VerilogConfig(levels_per_stage=0, register_blocks=True))
    assert per_block.latency_cycles == 1 + 1 + len(ae.layers) + 1 + 1
    assert all(b["cycles"] == 1 for b in per_block.meta["latency_breakdown"])
    # packing never costs latency against registering every block
    assert lat[3].latency_cycles <= generate(ae, VerilogConfig(levels_per_stage=3, register_blocks=True)).latency_cycles
    no_reg = generate(ae, VerilogConfig(levels_per_stage=0, register_input=False))
    assert no_reg.latency_cycles == 1  # fully combinational up to the output register
    slow = generate(ae, VerilogConfig(clock_mhz=120))
    assert slow.meta["latency_ns"] == pytest.approx(2 * generate(ae, VerilogConfig()).meta["latency_ns"], rel=1e-6)


def _register_bits(design) -> int:
    return sum(int(w) + 1 for t in design.files.values() for w in re.findall(r"^\s*reg\s+\[(\d+):0\]", t, re.M)) + \
        sum(len(re.findall(r"^\s*reg\s+[A-Za-z_]", t, re.M)) for t in design.files.values())


def test_register_planning_keeps_latency_and_saves_flipflops():
    from l1ad.firmware.verilog.generator import _generate

    q = l1_autoencoder((8,), seed=3)
    # minimum-depth trees: with the default extra sharing level this network's levels fill every stage, which
    # leaves the planner no other placement with the same latency
    cfg = VerilogConfig(levels_per_stage=3, cse_slack=0)
    greedy, planned = _generate(q, cfg, None), generate(q, cfg)
    assert planned.latency_cycles == greedy.latency_cycles
    assert planned.meta["max_levels_per_stage"] <= 3
    assert _register_bits(planned) < _register_bits(greedy)


def test_config_validation():
    with pytest.raises(ValidationError):
        VerilogConfig(top="9bad name")
    with pytest.raises(ValidationError):
        VerilogConfig(levels_per_stage=-1)
    with pytest.raises(ValidationError):
        VerilogConfig(multiplier="booth")
    with pytest.raises(ValidationError):
        VerilogConfig(unknown_field=1)


@needs_verilator
@pytest.mark.verilator
@pytest.mark.parametrize("cfg", [
    dict(), dict(levels_per_stage=0, register_blocks=True), dict(levels_per_stage=1, multiplier="mult", square="lut"),
    dict(levels_per_stage=2, register_input=False, expose_outputs=True, square="lut"),
])
def test_lint_clean_random_networks(tmp_path, cfg):
    from l1ad.sim.verilator import lint

    for seed in range(6):
        q = random_qmodel(np.random.default_rng(1000 + seed))
        d = export_verilog(q, tmp_path / f"s{seed}", VerilogConfig(**cfg))
        warnings = lint([tmp_path / f"s{seed}" / f for f in d.meta["files"]], d.top)
        assert warnings == [], f"seed {1000 + seed}, {cfg}: {warnings[:3]}"


@needs_verilator
@pytest.mark.verilator
@pytest.mark.parametrize("kind,sizes", [("mse", (32, 16, 8, 16, 32)), ("mu2", (32, 16, 8))])
def test_lint_clean_full_size(tmp_path, kind, sizes):
    from l1ad.sim.verilator import lint

    q = l1_autoencoder(sizes, kind=kind)
    d = export_verilog(q, tmp_path, VerilogConfig(expose_outputs=True))
    assert lint([tmp_path / f for f in d.meta["files"]], d.top) == []


STAT = """
=== l1ad_trigger ===

   Number of wires:               1234
   Number of wire bits:           5678
   Number of cells:               1000
     CARRY8                         40
     DSP48E2                         3
     FDRE                          300
     FDSE                            2
     IBUF                           20
     LUT2                          200
     LUT6                          100
     MUXF7                           5
     SRL16E                         10
     SRLC32E                         4

"""


def test_yosys_stat_parser():
    from l1ad.firmware.verilog.yosys import parse_stat, summarize

    cells = parse_stat("noise\n" + STAT)
    assert cells["FDRE"] == 300 and cells["CARRY8"] == 40
    r = summarize(cells)
    assert (r["LUT"], r["FF"], r["DSP"], r["CARRY"], r["SRL"], r["MUXF"]) == (300, 302, 3, 40, 14, 5)


@needs_yosys
@pytest.mark.slow
def test_yosys_report_small_network(tmp_path):
    q = random_qmodel(np.random.default_rng(7), n_in=3, hidden=[3], score="mu2")
    export_verilog(q, tmp_path, report=True)
    rep = json.loads((tmp_path / "report.json").read_text())
    assert "synthesis_error" not in rep
    assert rep["resources"]["LUT"] > 0 and rep["resources"]["FF"] > 0
    assert {"LUT", "FF", "DSP", "CARRY"} <= set(rep["resources"])
    assert rep["latency"]["cycles"] == json.loads((tmp_path / "design.json").read_text())["latency_cycles"]
    assert "LUT" in (tmp_path / "report.txt").read_text()


def test_cli_export_verilog(tmp_path, ae, capsys):
    from l1ad.cli import main

    ae.save(tmp_path / "qmodel.json")
    rc = main(["export", "verilog", str(tmp_path / "qmodel.json"), "--out", str(tmp_path / "rtl"),
               "--levels-per-stage", "4", "--top", "ad_top"])
    assert rc == 0
    out = capsys.readouterr().out
    meta = json.loads((tmp_path / "rtl" / "design.json").read_text())
    assert meta["top"] == "ad_top" and meta["config"]["levels_per_stage"] == 4
    assert f"latency {meta['latency_cycles']} cycles" in out
    # a folder holding qmodel.json works too (e.g. a previous export)
    assert main(["export", "verilog", str(tmp_path / "rtl"), "--out", str(tmp_path / "rtl2")]) == 0
    assert main(["export", "verilog", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x")]) != 0
