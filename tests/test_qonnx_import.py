"""Brevitas -> QONNX -> QModel: formats from the Quant nodes, exact agreement of Brevitas / QONNX with the
emulator, and clear errors for what fixed point cannot represent."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")
pytest.importorskip("qonnx")

from l1ad.firmware import FixedFormat, QModel, emulate  # noqa: E402
from l1ad.firmware.import_qonnx import (QonnxImportError, compare_brevitas, compare_qonnx,  # noqa: E402
                                   import_qonnx)
from l1ad.trigger.l1units import hw_inputs  # noqa: E402
from l1ad.trigger.models import brevitas_nets as bn  # noqa: E402
from l1ad.trigger.models.arch import ArchitectureConfig  # noqa: E402
from l1ad.trigger.scaler import InputScaler  # noqa: E402
from l1ad.trigger.toy import toy_events  # noqa: E402


def _net(kind: str, seed: int = 1):
    arch = ArchitectureConfig.default(kind)
    net = bn.deployed(bn.build(arch, seed))
    rng = np.random.default_rng(seed)
    with torch.no_grad():  # non-zero biases: the bias path is exercised
        for layer in net.layers.values():
            layer.bias.copy_(torch.from_numpy(rng.normal(0, 0.5, layer.bias.shape).astype(np.float32)))
    net.eval()
    return arch, net


@pytest.fixture(scope="module")
def data():
    x = hw_inputs(toy_events(3000, seed=5).objects)
    xs = hw_inputs(toy_events(1000, signal=True, seed=6).objects)
    return InputScaler.fit(x), np.concatenate([x, xs])


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_brevitas_qonnx_matches_emulator(tmp_path, data, kind):
    scaler, x = data
    arch, net = _net(kind)
    path = bn.export_qonnx(net, tmp_path / f"{kind}.onnx", arch.n_inputs)
    q = import_qonnx(path, "ap_int<18>", scaler=scaler, score="mse" if kind == "ae" else "mu2")
    assert isinstance(q, QModel)
    assert [L.name for L in q.layers] == [L.name for L in arch.deployed_layers()]
    assert q.input_quantizer == FixedFormat(12, 4, True, "RND_CONV", "SAT")
    assert q.layers[0].weight_format == FixedFormat(8, 1, True, "RND_CONV", "SAT")
    assert q.layers[0].bias_format == FixedFormat(8, 4, True, "RND_CONV", "SAT")
    assert q.layers[0].output_format == FixedFormat(8, 3, False, "RND_CONV", "SAT")
    assert q.output_format == FixedFormat(12, 4, True, "RND_CONV", "SAT")
    assert [L.activation for L in q.layers] == [L.activation for L in arch.deployed_layers()]
    # integer weights equal Brevitas' own quantized weights
    w = net.layers["enc_1"].quant_weight().value.detach().numpy().T
    assert np.array_equal(np.ldexp(w.astype(np.float64), 7), q.layers[0].weights.astype(np.float64))
    # edge inputs on top of the physics ones: saturation everywhere, still float32-exact
    rng = np.random.default_rng(0)
    xe = rng.integers(-3000, 3000, size=(2000, 57))
    xall = np.concatenate([x, xe]).astype(np.float64)
    rb = compare_brevitas(q, net, xall, scaler)
    assert rb["n_values"] == len(xall) * q.n_outputs
    assert rb["output_mismatches"] == 0 and rb["off_grid_outputs"] == 0
    rq = compare_qonnx(q, path, xall, scaler)
    assert rq["output_mismatches"] == 0
    # the emulator really saturates on these inputs (the comparison covers overflow)
    assert emulate(q, xall).n_overflow > 0


def test_qonnx_roundtrip_json(tmp_path, data):
    scaler, _ = data
    arch, net = _net("ae", seed=3)
    path = bn.export_qonnx(net, tmp_path / "m.onnx", arch.n_inputs)
    q = import_qonnx(path, "ap_int<18>", scaler=scaler, thresholds=[5, 500], gate="l1")
    q.save(tmp_path / "q.json")
    assert QModel.load(tmp_path / "q.json") == q
    assert q.thresholds == (5, 500)
    assert q.score.gate is not None and q.score.kind == "mse"


def _export(module, tmp_path, n_in=8):
    from brevitas.export import export_qonnx

    module.eval()
    p = tmp_path / "x.onnx"
    export_qonnx(module, args=torch.zeros(1, n_in), export_path=str(p), dynamo=False)
    return p


def test_float_scale_and_float_bias_imported(tmp_path):
    """A float weight scale (Brevitas' default) and a float bias (no bias quantizer) are imported (dense op on the
    codes + an affine op with the real factors), no longer refused; an unsupported operator still is."""
    import brevitas.nn as qnn
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int8WeightPerTensorFloat

    m = torch.nn.Sequential(qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint),
                            qnn.QuantLinear(8, 4, bias=False, weight_quant=Int8WeightPerTensorFloat))
    with torch.no_grad():
        m[1].weight.copy_(torch.linspace(-0.7, 0.9, 32).reshape(4, 8))
    path = _export(m, tmp_path)
    q = import_qonnx(path, "ap_int<18>", score=None)
    assert [L.kind for L in q.layers] == ["dense", "affine"]
    x = np.random.default_rng(1).integers(-300, 300, (3000, 8)).astype(np.float64)
    assert compare_qonnx(q, path, x, dtype="float64")["output_mismatches"] == 0
    m1 = torch.nn.Sequential(qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint),
                             qnn.QuantLinear(8, 4, bias=True, weight_quant=Int8WeightPerTensorFixedPoint, bias_quant=None),
                             qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint))
    with torch.no_grad():
        m1[1].bias.copy_(torch.tensor([0.3, -1.17, 0.0625, 2.01]))
    path1 = _export(m1, tmp_path)
    q1 = import_qonnx(path1, "ap_int<18>", score=None)
    assert compare_qonnx(q1, path1, x, dtype="float64")["output_mismatches"] == 0
    assert compare_brevitas(q1, m1, x)["output_mismatches"] == 0  # fixed-point scales: float32 is exact too


def test_unsupported_op_rejected(tmp_path):
    import brevitas.nn as qnn
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint

    m2 = torch.nn.Sequential(qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint),
                             qnn.QuantLinear(8, 4, bias=False, weight_quant=Int8WeightPerTensorFixedPoint),
                             torch.nn.Sigmoid())
    with pytest.raises(QonnxImportError, match="Sigmoid"):
        import_qonnx(_export(m2, tmp_path), "ap_int<18>", score=None)


def test_float32_inexactness_is_reported(tmp_path):
    """A 16-bit input quantizer with 16-bit activations: accumulators beyond 24 bits -> a warning, not silence."""
    import brevitas.nn as qnn

    from l1ad.trigger.models.quant import QuantFormat as ArchFormat

    a16 = bn.fixed_point_quant(ArchFormat(16, 7, True), "act")
    w12 = bn.fixed_point_quant(ArchFormat(12, 0, True), "weight")
    m = torch.nn.Sequential(qnn.QuantIdentity(act_quant=a16), qnn.QuantLinear(57, 4, bias=False, weight_quant=w12),
                            qnn.QuantIdentity(act_quant=a16))
    q = import_qonnx(_export(m, tmp_path, 57), "ap_int<18>", score=None)
    assert any("float32" in w and "layer" in w for w in q.warnings)
