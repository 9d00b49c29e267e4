"""Brevitas with its default quantizers (float, non-power-of-two scales learned from statistics; float biases;
per-tensor and per-channel weight scales) -> QONNX -> the IR's dense + multiply-and-shift affine ops: equal to
the exported graph evaluated in float64 (its float32 constants unchanged) on 10k inputs, and through Verilator."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")

import l1ad.firmware as fw  # noqa: E402
from l1ad.firmware.import_qonnx import compare_brevitas, compare_qonnx, import_qonnx  # noqa: E402


def brevitas_default(per_channel: bool, seed: int = 0, n_in: int = 8, hidden: int = 16, n_out: int = 3):
    """The Brevitas tutorial shape with default quantizers, scales calibrated on data (train-mode passes)."""
    import brevitas.nn as qnn
    from brevitas.quant import Int8WeightPerChannelFloat

    torch.manual_seed(seed)
    kw = dict(weight_quant=Int8WeightPerChannelFloat) if per_channel else {}
    net = torch.nn.Sequential(qnn.QuantIdentity(return_quant_tensor=True), qnn.QuantLinear(n_in, hidden, bias=True, **kw),
                              qnn.QuantReLU(), qnn.QuantLinear(hidden, n_out, bias=True, **kw), qnn.QuantIdentity())
    net.train()
    with torch.no_grad():
        for _ in range(20):
            net(torch.randn(256, n_in) * 2)
    return net.eval()


def _export(net, path, n_in=8):
    from brevitas.export import export_qonnx

    export_qonnx(net, args=torch.zeros(1, n_in), export_path=str(path), dynamo=False)
    return path


def _x(n: int, seed: int = 0) -> np.ndarray:
    return np.round(np.random.default_rng(seed).normal(0, 2, (n, 8)) * 1024) / 1024


@pytest.mark.parametrize("per_channel", [False, True])
def test_default_quantizers_exact(tmp_path, per_channel):
    net = brevitas_default(per_channel)
    path = _export(net, tmp_path / "m.onnx")
    q = import_qonnx(path, "ap_fixed<16,6>")
    assert [L.kind for L in q.layers] == ["affine", "dense", "affine", "dense", "affine"]
    assert q.score is None and "output_scale" in q.meta
    x = _x(10_000)
    r64 = compare_qonnx(q, path, x, dtype="float64")
    assert r64["n_values"] == 30_000 and r64["output_mismatches"] == 0
    # the float32 framework forward rounds next to the boundaries: reported, a handful at most
    r32 = compare_brevitas(q, net, x)
    assert r32["output_mismatches"] <= 10
    assert fw.QModel.from_dict(q.to_dict()) == q


@pytest.mark.verilator
@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator not installed")
def test_default_quantizers_through_verilator(tmp_path):
    from l1ad.firmware.verilog import VerilogConfig, export_verilog
    from l1ad.sim.cosim import cosim, default_vectors

    q = import_qonnx(_export(brevitas_default(True, seed=2), tmp_path / "m.onnx"), "ap_fixed<16,6>")
    export_verilog(q, tmp_path / "rtl", VerilogConfig(top="brev", levels_per_stage=3, expose_outputs=True))
    x = default_vectors(q, 3000, seed=3)
    r = cosim(tmp_path / "rtl", x, build_root=tmp_path / "build")
    assert r["ok"] and r["vectors"] == len(x), (r["mismatch_fields"], r["details"][:2])


@pytest.mark.hls
def test_default_quantizers_hls_csim(tmp_path):
    """The multiply-and-shift constants are wider than a double (60-70 bits): written from hex, C-sim exact."""
    if shutil.which("g++") is None:  # pragma: no cover
        pytest.skip("the C simulation needs g++")
    from l1ad.firmware.hls import HLSConfig, export_hls, verify_project

    q = import_qonnx(_export(brevitas_default(True, seed=4), tmp_path / "m.onnx"), "ap_fixed<16,6>")
    assert max(L.scale_format.width for L in q.layers if L.kind == "affine") > 53
    prj = export_hls(q, None, tmp_path / "p", HLSConfig(tb_vectors=20))
    rep = verify_project(prj, 4000, with_coverage=False)
    assert rep["passed"] and rep["mismatches"]["outputs"] == 0
