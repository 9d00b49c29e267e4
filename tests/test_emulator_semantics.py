"""Emulator: input checking, the score block (masked squared error, mu**2), comparators, hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

import l1ad.firmware as fw
from l1ad.firmware import FixedFormat


def tiny_ae(gate=(0, 0, 2), thresholds=(0, 5, 100)):
    """3 -> 3 identity-like layer: out = round(0.5 * x) on ap_fixed<8,4>; easy to compute by hand."""
    W = np.diag([4, 4, 4])  # 0.5 in ap_fixed<4,1> (frac 3)
    L = fw.DenseLayer("d", W, "ap_fixed<4,1>", [0, 0, 0], "ap_fixed<4,1>", "linear", "ap_fixed<8,4,RND_CONV,SAT>")
    return fw.QModel(input=fw.InputSpec.identity(3, "ap_fixed<8,4>"), input_quantizer="ap_fixed<8,4,RND_CONV,SAT>",
                     layers=[L], score=fw.ScoreSpec("mse", gate=gate), thresholds=thresholds)


def test_hand_computed_mse_and_mask():
    q = tiny_ae()
    x = np.array([[1.0, 2.0, 3.0],     # out 0.5, 1, 1.5; diffs 0.5, 1, 1.5 -> 0.25 + 1 + 2.25 = 3.5
                  [0.0, 2.0, 3.0],     # gate 0 (x0 = 0) masks features 0 and 1: only 2.25
                  [1.0, 2.0, -3.0]])   # gate of feature 2 is x2 = -3 <= 0: masked -> 0.25 + 1
    r = fw.emulate(q, x)
    np.testing.assert_array_equal(r.outputs, [[0.5, 1, 1.5], [0, 1, 1.5], [0.5, 1, -1.5]])
    np.testing.assert_array_equal(r.score, [3.5, 2.25, 1.25])
    lsb = float(q.score.format.lsb)
    np.testing.assert_array_equal(r.score_int, np.array([3.5, 2.25, 1.25]) / lsb)
    # trigger = score > threshold (strict), thresholds as codes
    assert lsb == 2.0**-8  # diff frac 4 -> square frac 8
    np.testing.assert_array_equal(r.trigger, np.ones((3, 3), bool))  # codes 896, 576, 320 > 0, 5, 100
    q2 = q.with_thresholds([q.threshold_code(3.5), q.threshold_code(3.49), q.threshold_code(0)])
    np.testing.assert_array_equal(fw.emulate(q2, x).trigger, [[False, True, True], [False, False, True], [False, False, True]])


def test_no_division_in_score():
    q = tiny_ae(gate=None)
    r = fw.emulate(q, np.array([[2.0, 2.0, 2.0]]))
    assert float(r.score[0]) == 3.0  # sum of three 1.0 squared differences, not their mean


def test_mu2_score():
    W = np.array([[8, 0], [0, -8], [8, 8]])  # 1.0 / -1.0 in ap_fixed<5,2> (frac 3)
    L = fw.DenseLayer("mu", W, "ap_fixed<5,2>", [8, 0], "ap_fixed<5,2>", "linear", "ap_fixed<10,5,RND_CONV,SAT>")
    q = fw.QModel(input=fw.InputSpec.identity(3, "ap_fixed<8,4>"), input_quantizer="ap_fixed<8,4>", layers=[L],
                  score=fw.ScoreSpec("mu2"), thresholds=(0,))
    r = fw.emulate(q, np.array([[1.0, 2.0, 0.5]]))
    # mu = (1 + 0.5 + 1, -2 + 0.5) = (2.5, -1.5); score = 6.25 + 2.25
    np.testing.assert_array_equal(r.outputs, [[2.5, -1.5]])
    assert float(r.score[0]) == 8.5 and r.trigger.tolist() == [[True]]


def test_integer_scaling_exact():
    W = np.eye(3, dtype=int) * 8
    L = fw.DenseLayer("d", W, "ap_fixed<5,2>", [0, 0, 0], "ap_fixed<5,2>", "linear", None)
    q = fw.QModel(input=fw.InputSpec(FixedFormat.parse("ap_int<18>"), [0, 10, -4], [6, 8, -1]),
                  input_quantizer="ap_fixed<16,8,RND_CONV,SAT>", layers=[L])
    x = np.array([[640.0, 266.0, 3.0], [65535.0, -460.0, -288.0]])
    r = fw.emulate(q, x, keep=True)
    expect = (x - np.array([0, 10, -4])) * 2.0 ** -np.array([6, 8, -1])
    np.testing.assert_array_equal(q.scaled_format.to_float(r.tensors["scaled"]), expect)
    xq = FixedFormat.parse("ap_fixed<16,8,RND_CONV,SAT>")
    np.testing.assert_array_equal(r.tensors["xq"], xq.quantize(expect))


def test_input_errors():
    q = tiny_ae()
    with pytest.raises(fw.EmulatorInputError, match=r"shape \(N, 3\)"):
        fw.emulate(q, np.zeros((4, 5)))
    with pytest.raises(fw.EmulatorInputError, match=r"shape"):
        fw.emulate(q, np.zeros(3))
    x = np.zeros((4, 3))
    x[2, 1] = np.nan
    with pytest.raises(fw.EmulatorInputError, match="NaN/inf in 1 event.*row 2, column 1"):
        fw.emulate(q, x)
    x[2, 1] = np.inf
    with pytest.raises(fw.EmulatorInputError, match="NaN/inf"):
        fw.emulate(q, x)
    with pytest.raises(fw.EmulatorInputError, match="numeric"):
        fw.emulate(q, np.array([["a", "b", "c"]]))
    with pytest.raises(TypeError):
        fw.emulate("not a model", np.zeros((1, 3)))
    with pytest.raises(ValueError, match="backend"):
        fw.emulate(q, np.zeros((1, 3)), backend="gpu")
    assert issubclass(fw.EmulatorInputError, ValueError)


def test_off_grid_inputs_counted_or_rejected():
    q = tiny_ae()
    x = np.array([[1.01, 2.0, 3.0], [100.0, 0.0, 0.0]])  # off grid (1/16 LSB) and out of range (max 7.9375)
    r = fw.emulate(q, x)
    assert r.stats["input"] == {"inexact": 1, "overflow": 1}
    with pytest.raises(fw.EmulatorInputError, match="strict"):
        fw.emulate(q, x, strict=True)
    fw.emulate(q, x[:, :] * 0 + 1.0, strict=True)


def test_shapes_empty_and_3d():
    q = tiny_ae()
    r = fw.emulate(q, np.zeros((0, 3)))
    assert r.outputs_int.shape == (0, 3) and r.score_int.shape == (0,) and r.trigger.shape == (0, 3) and len(r) == 0
    q57 = fw.QModel(input=fw.InputSpec.identity(57, "ap_fixed<8,4>"), input_quantizer="ap_fixed<8,4>",
                    layers=[fw.DenseLayer("d", np.eye(57, dtype=int), "ap_fixed<4,1>", np.zeros(57, int), "ap_fixed<4,1>")])
    x = np.random.default_rng(0).integers(-8, 8, (5, 19, 3)).astype(np.float32)
    np.testing.assert_array_equal(fw.emulate(q57, x).outputs_int, fw.emulate(q57, x.reshape(5, 57)).outputs_int)
    assert fw.emulate(q57, x).score_int is None and fw.emulate(q57, x).score is None


def test_saturation_counted():
    q = tiny_ae()
    r = fw.emulate(q, np.array([[7.9375, -8.0, 7.9375]]))
    assert r.stats["xq"]["overflow"] == 0
    # a narrow score format saturates and says so
    q2 = q.with_thresholds([]).replace_formats(score={"format": "ap_ufixed<4,2,TRN,SAT>"})  # its thresholds do not fit
    r2 = fw.emulate(q2, np.array([[7.9375, 7.0, 7.0]]))
    assert r2.score_int[0] == 15 and r2.stats["score"]["overflow"] == 1 and r2.n_overflow >= 1
