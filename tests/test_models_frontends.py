"""QKeras, Brevitas and float front-ends: true fixed point (checked against a float64 numpy reference of the
deployed network), the score contract, model directories (bit-exact reload, clear errors), reproducibility.
Tiny synthetic data and two epochs keep this fast."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from l1ad.trigger.l1units import hw_inputs
from l1ad.trigger.modeldir import ModelDirError, load_model
from l1ad.trigger.models import ArchitectureConfig
from l1ad.trigger.scores import input_mask_hw, masked_sq_error, mu_squared
from l1ad.trigger.toy import toy_events
from l1ad.trigger.train import TrainingConfig, train_model

CFG = TrainingConfig(epochs=2, batch_size=256, progress=False, plot=False, seed=3)
CASES = [("qkeras", "ae"), ("qkeras", "vae"), ("brevitas", "ae"), ("brevitas", "vae"), ("float", "ae")]


@pytest.fixture(scope="module")
def data():
    b = toy_events(1500, seed=11)
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(b))
    return b.with_weight(w), toy_events(300, seed=12, signal=True)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """(frontend, kind) -> (model, directory), trained once per module."""
    cache = {}

    def get(frontend, kind):
        if (frontend, kind) not in cache:
            d = tmp_path_factory.mktemp(f"{frontend}_{kind}")
            cache[frontend, kind] = (train_model(frontend, kind, data[0], CFG, d), d)
        return cache[frontend, kind]

    return get


def _params(model):
    """{layer: (W (n_in, n_out), b)} of the deployed network, float64, unquantized."""
    net = model.deployed()
    out = {}
    for layer in model.arch.deployed_layers():
        if model.frontend == "brevitas":
            lin = net.layers[layer.name]
            out[layer.name] = (lin.weight.detach().numpy().T.astype(np.float64), lin.bias.detach().numpy().astype(np.float64))
        else:
            k, b = net.get_layer(layer.name).get_weights()
            out[layer.name] = (k.astype(np.float64), b.astype(np.float64))
    return out


def _reference_forward(model, xs):
    """The deployed network in exact float64 fixed-point arithmetic (independent of TF/torch)."""
    a = model.arch
    h = a.input_format.quantize(xs)
    params = _params(model)
    for layer in a.deployed_layers():
        w, b = params[layer.name]
        acc = h @ a.weight_format.quantize(w) + a.bias_format.quantize(b)  # exact in float64
        h = a.activation_format.quantize(np.maximum(acc, 0)) if layer.activation == "relu" else a.output_format.quantize(acc)
    return h


@pytest.mark.parametrize("frontend, kind", [c for c in CASES if c[0] != "float"])
def test_deployed_network_is_true_fixed_point(trained, data, frontend, kind):
    model, _ = trained(frontend, kind)
    x_hw = hw_inputs(data[0].objects)
    xs = model.network_input(x_hw)
    out = model.forward(x_hw)
    assert model.output_quantizer.on_grid(out)
    assert np.array_equal(out, _reference_forward(model, xs))  # bit for bit
    # also on inputs far outside the training range (saturating every quantizer). The frameworks compute in
    # float32, so inputs must be float32 values (the scaled hardware codes always are); a float64 value between
    # two float32 ones could be rounded twice.
    wild = np.random.default_rng(5).normal(0, 20, (500, 57)).astype(np.float32).astype(np.float64)
    assert np.array_equal(model._backend.predict(model.deployed(), wild), _reference_forward(model, wild))


@pytest.mark.parametrize("frontend, kind", CASES)
def test_score_contract(trained, data, frontend, kind):
    model, _ = trained(frontend, kind)
    batch = data[0]
    x_hw = hw_inputs(batch.objects)
    s = model.score(batch)
    assert s.shape == (len(batch),) and s.dtype == np.float64 and np.isfinite(s).all()
    assert np.array_equal(s, model.score(x_hw))
    out = model.forward(x_hw)
    if kind == "vae":
        assert out.shape == (len(batch), model.arch.latent)
        assert np.array_equal(s, mu_squared(out))
    else:
        x = model.quantized_input(x_hw)
        if model.quantized:
            assert np.array_equal(x, model.input_quantizer.quantize(model.scaler.transform(x_hw)))
        assert np.array_equal(s, masked_sq_error(x, out, input_mask_hw(x_hw)))
    if model.quantized:
        fmt = model.score_format
        assert np.array_equal(fmt.quantize(s), s)  # every score lies on the score grid


@pytest.mark.parametrize("frontend, kind", CASES)
def test_model_directory_reload_is_bit_exact(trained, data, frontend, kind):
    model, d = trained(frontend, kind)
    names = {p.name for p in d.iterdir()}
    assert {"arch.yaml", "scaler.json", "metadata.json", model._backend.MODEL_FILE} <= names
    assert (d / "checkpoints").is_dir()
    loaded = load_model(d)
    assert loaded.frontend == frontend and loaded.arch == model.arch and loaded.scaler == model.scaler
    batch, sig = data
    assert np.array_equal(loaded.score(batch), model.score(batch))
    assert np.array_equal(loaded.score(sig), model.score(sig))
    meta = loaded.metadata
    assert meta["frontend"] == frontend and meta["arch_hash"] == model.arch.config_hash()
    assert {"numpy", "python"} <= set(meta["versions"])
    assert meta["training"]["epochs_run"] == 2 and len(meta["training"]["history"]) == 2
    assert meta["data"]["n_train"] + meta["data"]["n_val"] == len(batch)
    if model.quantized:
        assert loaded.input_quantizer == model.arch.input_format
    else:
        assert loaded.input_quantizer is None


def test_deployed_networks_have_explicit_quantizers_and_no_decoder(trained):
    qk_ae, _ = trained("qkeras", "ae")
    qk_vae, _ = trained("qkeras", "vae")
    names = [l.name for l in qk_ae.deployed().layers]
    assert names[:2] == ["input", "input_quant"] and names[-2:] == ["output", "output_quant"]
    q = qk_ae.deployed().get_layer("input_quant").quantizer
    assert (q.bits, q.integer, q.alpha) == (12, 3, 1)
    vnames = [l.name for l in qk_vae.deployed().layers]
    assert vnames[-1] == "mu_quant" and not any("dec" in n or "logvar" in n for n in vnames)
    br_vae, _ = trained("brevitas", "vae")
    assert list(br_vae.deployed().layers) == ["enc_1", "enc_2", "mu"]


def test_training_is_reproducible_by_seed(trained, data):
    for frontend in ("qkeras", "brevitas"):
        model, _ = trained(frontend, "ae")
        again = train_model(frontend, "ae", data[0], CFG, None)
        assert np.array_equal(again.score(data[0]), model.score(data[0])), frontend
        assert again.metadata["training"]["history"][-1]["val_loss"] == model.metadata["training"]["history"][-1]["val_loss"]


def test_missing_files_and_mismatched_config_are_clear_errors(trained, tmp_path):
    for frontend in ("qkeras", "brevitas"):
        _, d = trained(frontend, "ae")
        model_file = "model.pt" if frontend == "brevitas" else "model.h5"
        for missing in ("scaler.json", "arch.yaml", model_file, "metadata.json"):
            copy = tmp_path / f"{frontend}_{missing}"
            shutil.copytree(d, copy)
            (copy / missing).unlink()
            with pytest.raises(ModelDirError, match=missing.replace(".", r"\.")):
                load_model(copy)
        copy = tmp_path / f"{frontend}_edited"
        shutil.copytree(d, copy)
        text = (copy / "arch.yaml").read_text()
        (copy / "arch.yaml").write_text(text.replace("latent: 8", "latent: 6"))
        with pytest.raises(ValueError, match="layer 'latent' has shape"):
            load_model(copy)
    with pytest.raises(ModelDirError, match="not found"):
        load_model(tmp_path / "nowhere")


def test_bad_training_inputs(data):
    batch = data[0]
    with pytest.raises(ValueError, match="n_inputs=56"):
        train_model("brevitas", ArchitectureConfig(n_inputs=56), batch, CFG, None)
    with pytest.raises(ValueError, match="unknown front-end"):
        train_model("onnx", "ae", batch, CFG, None)
    with pytest.raises(ValueError, match="sum to zero"):
        train_model("brevitas", "ae", batch.with_weight(np.zeros(len(batch))), CFG, None)


def test_brevitas_qonnx_export_runs_bit_exact(trained, data, tmp_path):
    """The exporter the firmware uses (TorchScript, dynamo=False) works on the deployed module, and the QONNX
    graph computes exactly what Brevitas computes."""
    pytest.importorskip("qonnx")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    from l1ad.trigger.models.brevitas_nets import export_qonnx

    model, _ = trained("brevitas", "ae")
    path = export_qonnx(model.deployed(), tmp_path / "ae.onnx", model.arch.n_inputs)
    mw = cleanup_model(ModelWrapper(str(path)))
    ops = [n.op_type for n in mw.graph.node]
    assert ops.count("Quant") >= 2 + 2 * len(model.arch.deployed_layers())
    xs = model.network_input(data[0])[:20].astype(np.float32)
    iname, oname = mw.graph.input[0].name, mw.graph.output[0].name
    got = np.stack([execute_onnx(mw, {iname: xs[i:i + 1]})[oname][0] for i in range(len(xs))]).astype(np.float64)
    assert np.array_equal(got, model.forward(data[0])[:20])
