"""Bit-exact co-simulation of the generated RTL against firmware.emulate: the cocotb testbench through cocotb's
Verilator runner, the batch C++ harness on >= 100k vectors (a 57-input autoencoder with the L1 object mask), the
`l1ad cosim` command on an event file, and proof that the checker fails on a wrong design or a wrong latency."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from l1ad.firmware.verilog import VerilogConfig, export_verilog
from l1ad.sim.models import l1_autoencoder, random_qmodel

pytestmark = [pytest.mark.verilator,
              pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator not installed")]


def _toy_codes(q, n, seed):
    """Zero-bias-like and signal-like toy events as raw input codes of the model."""
    from l1ad.firmware.fixed import quantize_float
    from l1ad.trigger.l1units import hw_inputs
    from l1ad.trigger.toy import toy_events

    parts = [toy_events(n // 2, seed=seed), toy_events(n - n // 2, signal=True, seed=seed + 1)]
    return np.concatenate([quantize_float(hw_inputs(b.objects), q.input.format)[0] for b in parts]).astype(np.int64)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small random network with the object mask, narrow accumulators somewhere, network outputs exposed."""
    q = random_qmodel(np.random.default_rng(11), n_in=6, hidden=[4, 3], score="mse", objects=True, narrow_acc=0.5)
    d = tmp_path_factory.mktemp("small")
    export_verilog(q, d, VerilogConfig(expose_outputs=True, levels_per_stage=2))
    return d, q


@pytest.fixture(scope="module")
def ae8(tmp_path_factory):
    """A 57-8-57 autoencoder in the L1 layout (the real input width, object mask and score formats)."""
    q = l1_autoencoder((8,), seed=3)
    d = tmp_path_factory.mktemp("ae8")
    export_verilog(q, d, VerilogConfig(expose_outputs=True))
    return d, q


def test_cocotb_testbench(small):
    from l1ad.sim.cosim import cosim, default_vectors

    d, q = small
    x = default_vectors(q, 4000, seed=1)
    r = cosim(d, x, engine="cocotb", bubble=0.3, thr_writes=4)
    assert r["mismatches"] == 0 and r["valid_errors"] == 0, r["details"]
    assert r["vectors"] == r["vectors_checked"] == len(x)
    assert r["latency_measured"] == r["latency_cycles"] == json.loads((d / "design.json").read_text())["latency_cycles"]
    assert r["threshold_writes"] == 4 and r["mismatch_fields"]["trigger_when_invalid"] == 0
    assert set(r["mismatch_fields"]) >= {"score", "trigger", "y_out"}
    assert r["cocotb_failed"] == 0  # the self-checking cocotb test passed too
    assert r["ok"] and r["vectors_per_s"] > 0
    again = cosim(d, x[:300], engine="cocotb", seed=5)  # the cached build is reused
    assert again["ok"] and again["build_seconds"] == 0


def test_batch_100k_vectors_l1_autoencoder(ae8):
    """The default CI check: >= 100k vectors (edge cases, toy zero-bias and signal events, random full-range
    codes), one per clock with bubbles, every output bit compared."""
    from l1ad.sim.cosim import cosim, default_vectors

    d, q = ae8
    x = default_vectors(q, 60_000, seed=2, data=_toy_codes(q, 40_000, seed=5))
    assert len(x) >= 100_000
    r = cosim(d, x, engine="batch", bubble=0.2, thr_writes=5)
    assert r["mismatches"] == 0 and r["valid_errors"] == 0, r["details"]
    assert r["vectors_checked"] == len(x) and r["latency_measured"] == r["latency_cycles"]
    assert r["ok"]
    # the stream really exercised the triggers and the mask
    from l1ad.firmware.emulator import emulate

    e = emulate(q, q.input.format.to_float(x))
    assert 0 < e.trigger[:, 0].mean() < 1


def test_cli_cosim_on_event_file(ae8, tmp_path, monkeypatch):
    from l1ad.cli import main
    from l1ad.trigger.io import write_events
    from l1ad.trigger.toy import toy_events

    d, q = ae8
    f = write_events(tmp_path / "zb.h5", toy_events(3000, seed=9))
    monkeypatch.chdir(d.parent)  # a relative RTL folder (Verilator's make runs elsewhere)
    rc = main(["cosim", d.name, "--data", str(f), "-n", "2500", "--random", "500", "--out", str(tmp_path / "c.json")])
    assert rc == 0
    rep = json.loads((tmp_path / "c.json").read_text())
    assert rep["ok"] and rep["mismatches"] == 0 and rep["data_events"] == 2500
    assert rep["vectors"] >= 3000 and rep["engine"] == "batch"


def test_qkeras_model_directory_to_rtl(tmp_path):
    """A QKeras model directory -> `l1ad export verilog` (through firmware.import_qkeras) -> bit-exact RTL."""
    pytest.importorskip("qkeras")
    from l1ad.cli import main
    from l1ad.sim.cosim import cosim, default_vectors
    from l1ad.trigger.l1units import hw_inputs
    from l1ad.trigger.modeldir import TrainedModel, save_model
    from l1ad.trigger.models import keras_nets as kn
    from l1ad.trigger.models.arch import ArchitectureConfig
    from l1ad.trigger.scaler import InputScaler
    from l1ad.trigger.toy import toy_events

    scaler = InputScaler.fit(hw_inputs(toy_events(2000, seed=11).objects))
    arch = ArchitectureConfig(name="small_ae", kind="ae", encoder=[8], latent=4, decoder=[8])
    mdir = save_model(TrainedModel("qkeras", arch, scaler, kn.deployed(kn.build(arch, 2))), tmp_path / "model")
    rtl = tmp_path / "rtl"
    assert main(["export", "verilog", str(mdir), "--out", str(rtl), "--outputs"]) == 0
    from l1ad.firmware.ir import QModel

    q = QModel.load(rtl / "qmodel.json")
    assert [L.n_out for L in q.layers] == [8, 4, 8, 57] and q.score.kind == "mse"
    r = cosim(rtl, default_vectors(q, 10_000, seed=6, data=_toy_codes(q, 10_000, seed=7)), engine="batch")
    assert r["ok"] and r["mismatches"] == 0, r["details"]


def test_checker_detects_wrong_rtl_and_wrong_latency(small, tmp_path):
    from l1ad.sim.cosim import cosim, default_vectors

    d, q = small
    bad = tmp_path / "bad"
    shutil.copytree(d, bad, ignore=shutil.ignore_patterns(".sim"))
    meta = json.loads((bad / "design.json").read_text())
    score_v = bad / f"{meta['top']}_score.v"
    text = score_v.read_text()
    # flip the first subtraction of the score block (xq - y becomes xq + y)
    i = text.index(" - ", text.index("_e = "))
    score_v.write_text(text[:i] + " + " + text[i + 3:])
    x = default_vectors(q, 500, seed=3)
    r = cosim(bad, x, engine="batch", build_root=tmp_path / "b")
    assert not r["ok"] and r["mismatches"] > 0 and r["mismatch_fields"]["score"] > 0
    r = cosim(bad, x[:200], engine="cocotb", build_root=tmp_path / "b")  # the cocotb test itself fails
    assert not r["ok"] and r["cocotb_failed"] == 1 and r["mismatches"] > 0
    # a design that claims one cycle less than it has
    score_v.write_text(text)
    meta["latency_cycles"] -= 1
    (bad / "design.json").write_text(json.dumps(meta))
    r = cosim(bad, x, engine="batch", build_root=tmp_path / "b")
    assert not r["ok"] and r["valid_errors"] > 0


@pytest.mark.slow
def test_full_size_autoencoder_1m_vectors(tmp_path):
    """57-32-16-8-16-32-57 with the masked MSE score: 1M vectors through the batch harness (Verilator builds the
    ~5k-adder netlist in minutes: slow)."""
    from l1ad.sim.cosim import cosim, default_vectors

    q = l1_autoencoder()
    export_verilog(q, tmp_path, VerilogConfig(expose_outputs=True))
    x = default_vectors(q, 1_000_000, seed=4)
    r = cosim(tmp_path, x, engine="batch")
    assert r["ok"] and r["mismatches"] == 0 and r["vectors"] >= 1_000_000, r["details"]
