"""The two hls4ml example QKeras models (fastmachinelearning/example-models, keras/qkeras_3layer and
keras/qkeras_mnist_dense), rebuilt layer for layer (that repository states no licence, so its files are not
copied here), with seeded weights: import (softmax dropped), emulator vs QKeras predict, HLS C simulation (the
project built from the IR; the power-of-two kernel of qkeras_mnist_dense included)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("qkeras")

from bench.zoo_models import qkeras_3layer_model as qkeras_3layer  # noqa: E402  (built once, for the zoo and here)
from bench.zoo_models import qkeras_mnist_dense_model as qkeras_mnist_dense  # noqa: E402
from l1ad.firmware import emulate, import_qkeras  # noqa: E402
from l1ad.firmware.fixed import quantize_float  # noqa: E402

N = 10_000


def _logits_model(m):
    from tensorflow import keras

    return keras.Model(m.inputs, m.layers[-1].input)


def _inputs(q, n, scale, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, scale, (n, q.n_inputs))
    x[rng.random(x.shape) < 0.3] = 0
    codes, _, _ = quantize_float(x, q.input.format)  # on the input grid (the chip's input)
    return q.input.format.to_float(codes)


MODELS = {"qkeras_3layer": (qkeras_3layer, 1.0), "qkeras_mnist_dense": (qkeras_mnist_dense, 1.5)}


@pytest.mark.parametrize("name", MODELS)
def test_example_model_emulator_equals_qkeras_predict(name):
    build, scale = MODELS[name]
    m = build()
    with pytest.raises(Exception, match="softmax.*softmax='drop'"):
        import_qkeras(m)
    q = import_qkeras(m, softmax="drop")
    assert q.score is None and any("softmax dropped" in w for w in q.warnings)
    x = _inputs(q, N, scale)
    y = _logits_model(m).predict(x, verbose=0, batch_size=4096)
    e = emulate(q, x)
    assert int(np.count_nonzero(q.output_format.to_float(e.outputs_int) != y)) == 0
    # argmax of the logits is the softmax model's argmax
    assert np.array_equal(np.argmax(y, axis=1), np.argmax(m.predict(x, verbose=0, batch_size=4096), axis=1))


@pytest.mark.hls
@pytest.mark.parametrize("name", MODELS)
def test_example_model_hls_csim_bit_exact(tmp_path, name):
    pytest.importorskip("hls4ml")
    if shutil.which("g++") is None:  # pragma: no cover
        pytest.skip("the C simulation needs g++")
    from l1ad.firmware.hls import HLSConfig, export_hls, verify_project

    build, scale = MODELS[name]
    m = build()
    q = import_qkeras(m, softmax="drop")
    # qkeras_mnist_dense: its quantized_po2 kernel is integer codes in the IR like any other (hls4ml's own conversion
    # made exponent weights of it, which the exporter refused)
    prj = export_hls(q, None, tmp_path / name, HLSConfig(tb_vectors=50))
    codes = np.asarray(q.input.format.from_values(_inputs(q, N, scale, seed=2)), dtype=np.int64)
    rep = verify_project(prj, N, sets={"gauss": codes}, with_coverage=False)
    assert rep["n_events"] == N and rep["mismatches"]["outputs"] == 0 and rep["passed"]
    print(f"\n{name}: {rep['n_events']} events, {rep['compared_values']['outputs']} outputs, mismatches "
          f"{rep['mismatches']}, compile {rep['timing']['compile_s']} s")


@pytest.mark.hls
def test_cli_export_hls_from_a_keras_file_reports_qkeras_agreement(tmp_path):
    pytest.importorskip("hls4ml")
    if shutil.which("g++") is None:  # pragma: no cover
        pytest.skip("the C simulation needs g++")
    import json

    from click.testing import CliRunner

    from l1ad.cli import cli as main

    path = tmp_path / "qkeras_3layer.h5"
    qkeras_3layer().save(path)
    r = CliRunner().invoke(main, ["export", "hls", str(path), "--out", str(tmp_path / "refused")])
    assert r.exit_code != 0 and "softmax='drop'" in str(r.output) + str(r.exception)
    out = tmp_path / "prj"
    r = CliRunner().invoke(main, ["export", "hls", str(path), "--out", str(out), "--verify", str(N), "--drop-softmax"])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "verification.json").read_text())
    assert rep["n_events"] == N and rep["passed"]
    fw = rep["framework_vs_emulator"]
    assert sum(v["n_events"] for v in fw.values()) == N
    assert all(v["compared"] == "qkeras_predict" and v["output_mismatches"] == 0 for v in fw.values())
    assert "qkeras_predict vs emulator" in r.output


@pytest.mark.hls
def test_cli_export_hls_fails_when_the_framework_disagrees(tmp_path, monkeypatch):
    """emulator == C-sim is not enough: a framework mismatch (an import that read the wrong graph) fails --verify."""
    pytest.importorskip("hls4ml")
    if shutil.which("g++") is None:  # pragma: no cover
        pytest.skip("the C simulation needs g++")
    from click.testing import CliRunner

    import l1ad.firmware.hls.frontends as fe
    from l1ad.cli import cli as main

    real = fe.source_agreement

    def off_by_one(q, source, trained, x_codes):  # the framework's prediction, one output value moved
        rep = dict(real(q, source, trained, x_codes))
        rep["output_mismatches"] += 1
        return rep

    monkeypatch.setattr(fe, "source_agreement", off_by_one)
    path = tmp_path / "qkeras_3layer.h5"
    qkeras_3layer().save(path)
    r = CliRunner().invoke(main, ["export", "hls", str(path), "--out", str(tmp_path / "prj"), "--verify", "500",
                                  "--drop-softmax"])
    assert r.exit_code != 0
    assert "source framework's prediction differs from the emulator" in r.output
