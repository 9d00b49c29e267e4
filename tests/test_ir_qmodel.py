"""QModel: construction, validation, exact format derivation (interval analysis), JSON round trip, thresholds."""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

import l1ad.firmware as fw
from l1ad.firmware import FixedFormat, QModelError


def l1_model(seed: int = 0, *, score: str | None = "mse", **kw) -> fw.QModel:
    rng = np.random.default_rng(seed)
    sizes = [57, 32, 16, 8, 16, 32, 57] if score != "mu2" else [57, 32, 16, 8]
    layers = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = k == len(sizes) - 2
        layers.append(fw.DenseLayer(f"d{k}", rng.integers(-128, 128, (a, b)), "ap_fixed<8,1>", rng.integers(-128, 128, b),
                                    "ap_fixed<8,4>", "linear" if last else "relu",
                                    "ap_fixed<12,4,RND_CONV,SAT>" if last else "ap_ufixed<8,3,RND_CONV,SAT>"))
    sc = None if score is None else fw.ScoreSpec(score, fw.default_gate() if score == "mse" else None)
    return fw.QModel(input=fw.InputSpec(FixedFormat.parse("ap_int<18>"), np.tile([0, 3, -2], 19), np.tile([6, 8, 8], 19)),
                     input_quantizer="ap_fixed<12,4,RND_CONV,SAT>", layers=layers, score=sc, **kw)


def test_default_gate_layout():
    g = fw.default_gate()
    assert len(g) == 57 and g[:6] == (0, 0, 0, 3, 3, 3) and g[-1] == 54


def test_exact_formats_are_derived():
    q = l1_model()
    t = q.tensor_formats()
    assert list(t)[:3] == ["input", "scaled", "xq"]
    # scaled = (x - offset) * 2**-shift of 18-bit integers: 8 fraction bits, exact
    assert q.scaled_format.frac == 8 and q.scaled_format.width >= 18 + 8 - 6
    for L in q.layers:
        assert L.accum_format.overflow == "WRAP" and L.accum_format.rounding == "TRN"
        assert L.accum_format.frac == q.input_quantizer.frac + 7 if L is q.layers[0] else L.accum_format.frac == 5 + 7
    assert all(q.layer_exact(i) for i in range(len(q.layers)))
    sa = q.score_analysis()
    assert sa["diff_ok"] and sa["square_ok"] and sa["accum_ok"]
    assert q.score.format == q.score.accum_format and not q.score.format.signed


def test_accumulator_is_narrowest_exact():
    """Hand-checkable: 2 inputs in [-2, 1.75] (ap_fixed<4,2>), weights 0.5 and -0.5 (ap_fixed<4,1>), bias 0."""
    L = fw.DenseLayer("d", [[4], [-4]], "ap_fixed<4,1>", [0], "ap_fixed<4,1>", "linear", None)
    q = fw.QModel(input=fw.InputSpec.identity(2, "ap_fixed<4,2>"), input_quantizer="ap_fixed<4,2>", layers=[L])
    # products at frac 2+3=5: in codes [-8, 7] * 4 -> [-32, 28], * -4 -> [-28, 32]; partial sums in [-60, 60]
    acc = q.layers[0].accum_format
    assert (acc.frac, acc.min_code <= -60, acc.max_code >= 60, acc.width) == (5, True, True, 7)
    assert q.layers[0].output_format == acc  # no output quantizer: the accumulator is the output


def test_validation_errors():
    good = dict(input=fw.InputSpec.identity(3, "ap_fixed<8,4>"), input_quantizer="ap_fixed<8,4>")
    with pytest.raises(QModelError, match="at least one layer"):
        fw.QModel(layers=[], **good)
    with pytest.raises(QModelError, match="expects 4 inputs"):
        fw.QModel(layers=[fw.DenseLayer("a", np.zeros((4, 3), int), "ap_fixed<4,1>", [0, 0, 0], "ap_fixed<4,1>")], **good)
    with pytest.raises(QModelError, match="out of the range"):
        fw.DenseLayer("a", [[100]], "ap_fixed<4,1>", [0], "ap_fixed<4,1>")
    with pytest.raises(QModelError, match="activation"):
        fw.DenseLayer("a", [[1]], "ap_fixed<4,1>", [0], "ap_fixed<4,1>", "tanh")
    with pytest.raises(QModelError, match="integers"):
        fw.DenseLayer("a", [[0.5]], "ap_fixed<4,1>", [0], "ap_fixed<4,1>")
    with pytest.raises(QModelError, match="n_outputs == n_inputs"):
        fw.QModel(layers=[fw.DenseLayer("a", np.zeros((3, 2), int), "ap_fixed<4,1>", [0, 0], "ap_fixed<4,1>")],
                  score=fw.ScoreSpec("mse"), **good)
    with pytest.raises(QModelError, match="gate"):
        fw.QModel(layers=[fw.DenseLayer("a", np.zeros((3, 3), int), "ap_fixed<4,1>", [0, 0, 0], "ap_fixed<4,1>")],
                  score=fw.ScoreSpec("mse", gate=(0, 1, 7)), **good)
    with pytest.raises(QModelError, match="reserved"):
        fw.QModel(layers=[fw.DenseLayer("xq", np.zeros((3, 3), int), "ap_fixed<4,1>", [0, 0, 0], "ap_fixed<4,1>")], **good)
    with pytest.raises(QModelError, match="score kind"):
        fw.ScoreSpec("mae")
    with pytest.raises(QModelError, match="threshold"):
        l1_model(thresholds=(1.5,))
    with pytest.raises(QModelError, match="offset"):
        fw.InputSpec(FixedFormat.parse("ap_fixed<6,9>"), [3], [0]).scaled_format()


def test_json_round_trip(tmp_path):
    q = l1_model(thresholds=(10, 2000, 2**30 - 1), name="rt", warnings=("a note",), meta={"seed": 0})
    p = q.save(tmp_path / "m" / "q.json")
    text = p.read_text()
    d = json.loads(text)
    assert d["schema"] == fw.SCHEMA and d["layers"][0]["weights"][0][:3] == [int(v) for v in q.layers[0].weights[0, :3]]
    assert '"weights": [\n' in text and text.count("\n") < 400  # one weight row per line: readable
    q2 = fw.QModel.load(p)
    assert q2 == q and q2.thresholds == (10, 2000, 2**30 - 1) and q2.warnings == ("a note",)
    assert q2.tensor_formats() == q.tensor_formats()


def test_load_rejects_foreign_documents(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"schema": "something/9"}')
    with pytest.raises(QModelError, match="schema"):
        fw.QModel.load(p)
    p.write_text("{not json")
    with pytest.raises(QModelError, match="JSON"):
        fw.QModel.load(p)
    d = l1_model().to_dict()
    d["scaled_format"] = "ap_fixed<8,8>"
    with pytest.raises(QModelError, match="scaled_format"):
        fw.QModel.from_dict(d)
    del d["layers"]
    with pytest.raises(QModelError, match="lacks field"):
        fw.QModel.from_dict(d)


def test_with_thresholds_and_threshold_code():
    q = l1_model()
    q2 = q.with_thresholds([5, 7])
    assert q2.thresholds == (5, 7) and q.thresholds == () and q2.layers == q.layers
    lsb = q.score.format.lsb
    rng = np.random.default_rng(0)
    for value in [0, 0.3, 1.0, 2.5, float(lsb) * 7, float(lsb) * 7.5, 123.456]:
        c = q.threshold_code(value)
        for code in [c - 1, c, c + 1] + list(rng.integers(0, 10**6, 5)):
            assert (Fraction(int(code)) * lsb > Fraction(value)) == (int(code) > c)
    assert q2.thresholds_real() == [5 * float(lsb), 7 * float(lsb)]
    with pytest.raises(QModelError):
        l1_model(score=None).with_thresholds([1])


def test_threshold_codes_outside_the_score_format_are_refused_everywhere():
    q = l1_model()
    f = q.score.format
    ok = (f.min_code - 1, f.min_code, f.max_code)  # min_code - 1: the bit always fires
    assert q.with_thresholds(ok).thresholds == ok
    for bad in (f.min_code - 2, f.max_code + 1):
        with pytest.raises(QModelError, match=rf"\[{bad}\].*\[{f.min_code - 1}, {f.max_code}\]"):
            q.with_thresholds([bad])
    # the constructor (here through from_dict) checks too
    d = q.with_thresholds([3]).to_dict()
    d["thresholds"] = [f.max_code + 1]
    with pytest.raises(QModelError, match="outside the score format"):
        fw.QModel.from_dict(d)
    # narrowing the score format below a threshold already set is refused, naming the new range
    with pytest.raises(QModelError, match=r"\[-1, 255\]"):
        q.with_thresholds([1000]).replace_formats(score={"format": "ap_ufixed<8,8,TRN,SAT>"})


def test_replace_formats_narrows_accumulator():
    q = l1_model()
    q2 = q.replace_formats(d0={"accum_format": "ap_fixed<14,6,RND,SAT>"}, score={"format": "ap_ufixed<16,10,TRN,SAT>"})
    assert q2.layers[0].accum_format == FixedFormat.parse("ap_fixed<14,6,RND,SAT>")
    assert not q2.layer_exact(0) and q2.layer_exact(1)
    assert q2.score.format == FixedFormat.parse("ap_ufixed<16,10,TRN,SAT>")
    with pytest.raises(KeyError):
        q.replace_formats(nope={"accum_format": "ap_fixed<8,8>"})


def test_interval_analysis_is_sound():
    """Extreme and random inputs never leave the derived exact formats (no overflow counted anywhere)."""
    q = l1_model(3)
    f = q.input.format
    rng = np.random.default_rng(1)
    x = rng.integers(f.min_code, f.max_code + 1, (4000, 57)).astype(np.float64)
    x[:1000] = np.where(rng.random((1000, 57)) < 0.5, f.min_code, f.max_code)
    r = fw.emulate(q, x, keep=True)
    for name in ("scaled",) + tuple(f"{L.name}.accum" for L in q.layers) + ("score.diff", "score.square", "score.accum"):
        assert r.stats.get(name, {"overflow": 0})["overflow"] == 0, name
    b = q.tensor_bounds()
    for L in q.layers:
        lo, hi = b[f"{L.name}.out"]
        out = r.tensors[f"{L.name}.out"]
        assert (out >= np.array(lo)).all() and (out <= np.array(hi)).all()


def test_mu2_model_and_summary():
    q = l1_model(score="mu2", thresholds=(100,))
    assert q.score.diff_format is None and q.n_outputs == 8
    s = q.summary()
    assert "score.square" in s and "thresholds" in s
