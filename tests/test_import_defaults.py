"""Importer defaults that fit any network (score block only for an autoencoder, L1 gate only when asked),
threshold codes checked against the score format, and an HLS export that never replaces a user's folder."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qkeras")

from l1ad.firmware import import_qkeras  # noqa: E402
from l1ad.firmware.import_qkeras import QKerasImportError  # noqa: E402
from l1ad.firmware.ir import QModelError, default_gate  # noqa: E402


def _net(n_in: int, n_out: int):
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu
    from tensorflow import keras

    q = dict(kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1))
    inp = keras.Input((n_in,))
    h = QActivation(quantized_bits(10, 3, alpha=1))(inp)
    h = QActivation(quantized_relu(8, 3))(QDense(8, **q)(h))
    return keras.Model(inp, QActivation(quantized_bits(10, 4, alpha=1))(QDense(n_out, **q)(h)))


def test_classifier_imports_with_defaults_and_no_score():
    q = import_qkeras(_net(16, 5))
    assert q.score is None and q.n_outputs == 5
    with pytest.raises(QKerasImportError, match="needs an autoencoder.*16 inputs to 5 outputs"):
        import_qkeras(_net(16, 5), score="mse")


def test_autoencoder_gets_mse_and_no_l1_gate_unless_asked():
    m = _net(57, 57)
    q = import_qkeras(m)
    assert q.score.kind == "mse" and q.score.gate is None
    assert import_qkeras(m, gate="l1").score.gate == default_gate()
    with pytest.raises(QKerasImportError, match="gate='l1'.*57 inputs; this network has 16"):
        import_qkeras(_net(16, 16), gate="l1")


def test_threshold_codes_outside_the_score_format_are_refused():
    q = import_qkeras(_net(16, 16))
    f = q.score.format
    assert q.with_thresholds([f.max_code]).thresholds == (f.max_code,)
    with pytest.raises(QModelError, match=rf"\[{f.max_code + 1}\].*\[{f.min_code - 1}, {f.max_code}\]"):
        q.with_thresholds([3, f.max_code + 1])
    assert import_qkeras(_net(16, 16), thresholds=[f.min_code - 1]).thresholds == (f.min_code - 1,)  # always fires
    with pytest.raises(QModelError, match="outside the score format"):
        import_qkeras(_net(16, 16), thresholds=[f.min_code - 2])


def test_hls_export_refuses_a_users_folder(tmp_path):
    from l1ad.firmware.hls import HLSExportError, export_hls

    m = _net(16, 16)
    q = import_qkeras(m)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(HLSExportError, match="non-empty folder that is not an l1ad HLS project"):
        export_hls(q, None, out)
    assert (out / "notes.txt").read_text() == "keep me" and len(list(out.iterdir())) == 1


def test_hls_export_replaces_only_an_earlier_l1ad_project(tmp_path):
    from l1ad.firmware.hls import HLSExportError, export_hls
    from l1ad.firmware.hls.project import PROJECT_FILE, hls4ml_templates

    try:
        hls4ml_templates()
    except HLSExportError:  # pragma: no cover
        pytest.skip("the HLS project copies hls4ml's installed ap_types / nnet_utils headers")

    m = _net(16, 16)
    q = import_qkeras(m)
    f = tmp_path / "a_file"
    f.write_text("keep me")
    with pytest.raises(HLSExportError, match="is a file, not a folder"):
        export_hls(q, None, f)
    assert f.read_text() == "keep me"
    out = tmp_path / "proj"
    export_hls(q, None, out)
    assert (out / PROJECT_FILE).is_file()
    (out / "stale.txt").write_text("old run")
    export_hls(q, m, out)  # an earlier l1ad project is replaced as a whole (the framework model is ignored)
    assert (out / PROJECT_FILE).is_file() and not (out / "stale.txt").exists()
