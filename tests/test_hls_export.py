"""HLS export from the IR alone (the framework model is not needed): every type from the IR, score block and
comparators in the top level, and the C simulation equal to the emulator bit for bit (outputs, score, trigger
bits) on >= 100k events, for QModels imported from QKeras and Brevitas models."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

pytest.importorskip("qkeras")
pytestmark = pytest.mark.hls

if shutil.which("g++") is None:  # pragma: no cover
    pytest.skip("the C simulation needs g++", allow_module_level=True)

from l1ad.firmware import emulate, import_qkeras  # noqa: E402
from l1ad.firmware.hls import HLSConfig, HLSExportError, export_hls, verify_project  # noqa: E402
from l1ad.firmware.hls.network import cpp_type  # noqa: E402
from l1ad.firmware.hls.project import hls4ml_templates  # noqa: E402

try:
    hls4ml_templates()
except HLSExportError:  # pragma: no cover
    pytest.skip("the HLS project copies hls4ml's installed ap_types / nnet_utils headers", allow_module_level=True)
from l1ad.firmware.hls.vectors import make_vectors  # noqa: E402
from l1ad.trigger.l1units import hw_inputs  # noqa: E402
from l1ad.trigger.models.arch import ArchitectureConfig  # noqa: E402
from l1ad.trigger.scaler import InputScaler  # noqa: E402
from l1ad.trigger.toy import toy_events  # noqa: E402

N_EVENTS = 100_000


def _thresholds(q, x):
    """Codes at score quantiles, and one equal to an actual score (events tied with it must not fire)."""
    s = np.asarray(emulate(q, x).score_int, dtype=np.int64)
    return [int(np.quantile(s, 0.5)), int(np.sort(s)[int(0.9 * len(s))]), int(np.quantile(s, 0.99))]


@pytest.fixture(scope="module")
def toy():
    x = hw_inputs(toy_events(4000, seed=11).objects)
    return InputScaler.fit(x), x


def _keras(kind, seed=2):
    from l1ad.trigger.models import keras_nets as kn

    m = kn.deployed(kn.build(ArchitectureConfig.default(kind), seed))
    rng = np.random.default_rng(seed)
    for layer in m.layers:  # non-zero biases
        w = layer.get_weights()
        if len(w) == 2:
            layer.set_weights([w[0], rng.normal(0, 0.5, w[1].shape).astype(np.float32)])
    return m


@pytest.fixture(scope="module")
def qkeras_ae(tmp_path_factory, toy):
    scaler, x = toy
    m = _keras("ae")
    q = import_qkeras(m, "ap_int<18>", scaler=scaler, score="mse")
    q = q.with_thresholds(_thresholds(q, x))
    out = tmp_path_factory.mktemp("hls") / "qkeras_ae"
    return export_hls(q, None, out, HLSConfig(tb_vectors=300)), m


def _typedefs(path):
    return dict((name, t) for t, name in re.findall(r"typedef (.+?) (\w+);", path.read_text()))


def test_precisions_come_from_the_ir(qkeras_ae):
    prj, _ = qkeras_ae
    q = prj.qmodel
    defs = _typedefs(prj.path / "firmware" / "defines.h")
    # the network input is the IR's input quantizer (the exact scaled input before it: l1ad_scaled_t)
    assert defs["input_t"] == cpp_type(q.input_quantizer)
    assert _typedefs(prj.path / "firmware" / "l1ad_types.h")["l1ad_scaled_t"] == cpp_type(q.scaled_format)
    # the output keeps the IR's output format (the trailing quantized_bits QActivation's)
    assert defs[f"{q.layers[-1].name}_result_t"] == cpp_type(q.output_format)
    for L in q.layers:
        assert defs[f"{L.name}_weight_t"] == cpp_type(L.weight_format)
        assert defs[f"{L.name}_bias_t"] == cpp_type(L.bias_format)
        assert defs[f"{L.name}_accum_t"] == cpp_type(L.accum_format)
    rows = {r["tensor"]: r for r in prj.precisions}
    assert set(q.tensor_formats()) <= set(rows)
    for r in prj.precisions:
        assert r["format"] == str(q.tensor_formats().get(r["tensor"], r["format"]))
    top = (prj.path / "firmware" / "l1ad_trigger.cpp").read_text()
    assert "static void l1ad_trigger_network(" in top and "l1ad_score_block(x_hw, xq, y, score);" in top
    assert "l1ad_compare(score, trigger);" in top
    assert top.count("#pragma HLS INTERFACE") == 1 and "#pragma HLS PIPELINE II=1" in top
    assert top.count("nnet::dense_latency<") == len(q.layers)
    tcl = (prj.path / "project.tcl").read_text()
    assert 'set part "xcvu13p-flga2577-2-e"' in tcl and "set clock_period 4.167" in tcl
    readme = (prj.path / "README.md").read_text()
    for port in ("x_hw", "y", "score", "trigger"):
        assert f"`{port}`" in readme
    assert str(q.score.format) in readme and str(q.input.format) in readme


def test_qkeras_csim_bit_exact_100k(qkeras_ae):
    prj, _ = qkeras_ae
    rep = verify_project(prj, N_EVENTS, seed=1, report_path=prj.path / "verification.json")
    assert rep["n_events"] == N_EVENTS
    assert rep["compared_values"] == {"outputs": N_EVENTS * 57, "score": N_EVENTS, "trigger": 3 * N_EVENTS}
    assert rep["mismatches"] == {"outputs": 0, "score": 0, "trigger": 0}, rep["examples"]
    assert rep["passed"]
    cov = rep["coverage"]
    # the vectors reach saturation and exact rounding ties inside the network
    assert cov["xq"]["overflow"] > 0
    assert sum(v["ties"] for k, v in cov.items() if k.endswith(".out")) > 0
    assert sum(v["overflow"] for k, v in cov.items() if k.endswith(".out")) > 0
    # every trigger bit both fires and stays quiet somewhere
    rates = np.array([r["trigger_rate"] for r in rep["per_set"].values()])
    assert (rates > 0).any(axis=0).all() and (rates < 1).any(axis=0).all()
    assert json.loads((prj.path / "verification.json").read_text())["passed"] is True


def test_the_framework_model_is_not_needed(tmp_path, toy):
    """The project depends on the QModel only: exported with the Keras model (the old signature), with another
    model, or from the QModel saved and loaded again with no model at all, the generated sources are the same."""
    scaler, _ = toy
    q = import_qkeras(_keras("ae"), "ap_int<18>", scaler=scaler, score="mse")
    a = export_hls(q, _keras("ae"), tmp_path / "a", HLSConfig(tb_vectors=20))
    b = export_hls(q, _keras("vae"), tmp_path / "b", HLSConfig(tb_vectors=20))  # ignored: not what the IR came from
    q.save(tmp_path / "qmodel.json")
    c = export_hls(type(q).load(tmp_path / "qmodel.json"), None, tmp_path / "c", HLSConfig(tb_vectors=20))
    files = sorted(p.relative_to(a.path) for p in (a.path / "firmware").rglob("*") if p.is_file())
    assert len(files) > 10
    for rel in files:
        assert (a.path / rel).read_bytes() == (b.path / rel).read_bytes() == (c.path / rel).read_bytes(), rel
    assert a.source_kind == b.source_kind == c.source_kind == "qkeras"  # from the QModel's meta


def test_cli_export_brevitas_verify_100k(tmp_path, toy):
    """`l1ad export hls MODEL_DIR --out DIR --verify N` on a Brevitas model directory."""
    torch = pytest.importorskip("torch")
    from l1ad.firmware.hls.frontends import qmodel_from_trained
    from l1ad.cli import main
    from l1ad.trigger.modeldir import TrainedModel, save_model
    from l1ad.trigger.models import brevitas_nets as bn

    scaler, x = toy
    arch = ArchitectureConfig.default("ae")
    net = bn.deployed(bn.build(arch, 4))
    rng = np.random.default_rng(4)
    with torch.no_grad():
        for layer in net.layers.values():
            layer.bias.copy_(torch.from_numpy(rng.normal(0, 0.5, layer.bias.shape).astype(np.float32)))
    net.eval()
    mdir = save_model(TrainedModel("brevitas", arch, scaler, net), tmp_path / "model")
    q, _ = qmodel_from_trained(TrainedModel("brevitas", arch, scaler, net), tmp_path / "work", input_format="ap_int<18>")
    thr = ",".join(str(c) for c in _thresholds(q, x))
    out = tmp_path / "prj"
    rc = main(["export", "hls", str(mdir), "--out", str(out), "--verify", str(N_EVENTS), "--thresholds", thr])
    assert rc == 0
    rep = json.loads((out / "verification.json").read_text())
    assert rep["source_kind"] == "qonnx" and rep["n_events"] == N_EVENTS
    assert rep["mismatches"] == {"outputs": 0, "score": 0, "trigger": 0}
    for name, fw in rep["framework_vs_emulator"].items():  # Brevitas forward vs emulator
        assert fw["output_mismatches"] == 0, (name, fw)
    for f in ("README.md", "build.sh", "build_prj.tcl", "qmodel.json", "model.qonnx.onnx",
              "tb_data/tb_input_features.dat", "firmware/l1ad_types.h", "firmware/l1ad_blocks.h"):
        assert (out / f).is_file(), f


@pytest.mark.slow
def test_testbench_passes_with_gpp(qkeras_ae):
    """The Vitis testbench (l1ad_trigger_test.cpp) compiled with g++ reproduces tb_data/ (the emulator) exactly."""
    prj, _ = qkeras_ae
    exe = prj.path / "tb.exe"
    subprocess.run(["g++", "-O1", "-std=c++14", "-w", "-Ifirmware/ap_types", "-Ifirmware", "l1ad_trigger_test.cpp",
                    "firmware/l1ad_trigger.cpp", "-o", str(exe)], cwd=prj.path, check=True)
    r = subprocess.run([str(exe)], cwd=prj.path, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "300 events, 0 mismatching" in r.stdout
    assert (prj.path / "tb_data" / "csim_results.log").read_text() == \
        (prj.path / "tb_data" / "tb_output_predictions.dat").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("frontend", ["qkeras", "brevitas"])
def test_vae_csim_bit_exact(tmp_path, toy, frontend):
    scaler, x = toy
    if frontend == "qkeras":
        src = _keras("vae", seed=7)
        q = import_qkeras(src, "ap_int<18>", scaler=scaler, score="mu2")
    else:
        import torch

        from l1ad.firmware import import_qonnx
        from l1ad.trigger.models import brevitas_nets as bn

        arch = ArchitectureConfig.default("vae")
        net = bn.deployed(bn.build(arch, 7))
        with torch.no_grad():
            for layer in net.layers.values():
                layer.bias.normal_(0, 0.5)
        src = bn.export_qonnx(net, tmp_path / "vae.onnx", 57)
        q = import_qonnx(src, "ap_int<18>", scaler=scaler, score="mu2")
    q = q.with_thresholds(_thresholds(q, x))
    prj = export_hls(q, None, tmp_path / "prj", HLSConfig(project_name="vae_trigger", tb_vectors=100))
    rep = verify_project(prj, N_EVENTS, seed=3, sets=make_vectors(q, N_EVENTS, seed=3))
    assert rep["mismatches"] == {"outputs": 0, "score": 0, "trigger": 0}
