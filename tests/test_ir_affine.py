"""The affine op (per-channel multiply-and-shift with an offset: folded batch normalisation, non-power-of-two
requantization): IR analysis and schema, the emulator against the independent Fraction reference, and the
Verilog block through Verilator, bit for bit."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import l1ad.firmware as fw
from l1ad.firmware import FixedFormat

from test_emulator_reference import ref_emulate


def _affine_model(seed: int, *, relu: bool = True, wide_scale: bool = False, score: str | None = "mu2") -> fw.QModel:
    rng = np.random.default_rng(seed)
    n_in, n = 4, int(rng.integers(2, 7))
    d1 = fw.DenseLayer("d1", rng.integers(-8, 8, (n_in, n)), "ap_fixed<4,1>", rng.integers(-8, 8, n), "ap_fixed<4,1>",
                       "linear", None)
    sf = FixedFormat.parse("ap_fixed<24,3>" if wide_scale else ["ap_fixed<8,2>", "ap_ufixed<12,-1>", "ap_fixed<10,4>"][seed % 3])
    scale = rng.integers(max(sf.min_code, -(1 << 22)), min(sf.max_code, 1 << 22) + 1, n)
    outs = ["ap_ufixed<8,3,RND,SAT>", "ap_fixed<9,3,RND_CONV,WRAP>", "ap_fixed<7,5,TRN,SAT_SYM>", "ap_fixed<6,2,RND_INF,SAT_ZERO>"]
    bn = fw.AffineLayer("bn", scale, sf, rng.integers(-30, 30, n), "ap_fixed<8,4>", "relu" if relu else "linear",
                        outs[seed % len(outs)])
    d2 = fw.DenseLayer("d2", rng.integers(-8, 8, (n, 3)), "ap_fixed<4,1>", rng.integers(-8, 8, 3), "ap_fixed<4,1>",
                       "linear", "ap_fixed<10,6,RND_CONV,SAT>")
    q = fw.QModel(input=fw.InputSpec.identity(n_in, "ap_int<8>"), input_quantizer="ap_fixed<10,8>", layers=[d1, bn, d2],
                  score=None if score is None else fw.ScoreSpec(score), name=f"aff{seed}")
    return q.with_thresholds((int(q.score.format.max_code) // 3,)) if score else q


@pytest.mark.parametrize("seed", range(6))
def test_affine_emulator_matches_reference(seed):
    q = _affine_model(seed, relu=seed % 2 == 0, wide_scale=seed >= 4)
    rng = np.random.default_rng(100 + seed)
    x = rng.integers(-128, 128, (400, 4)).astype(float)
    ro, rs, rt = ref_emulate(q, x)
    for backend in ("auto", "int", "object"):
        e = fw.emulate(q, x, backend=backend)
        assert e.outputs_int.tolist() == ro, backend
        assert [int(v) for v in e.score_int] == rs, backend
        assert e.trigger.tolist() == rt, backend


def test_affine_schema_roundtrip_and_v1(tmp_path):
    q = _affine_model(1)
    d = q.to_dict()
    assert d["schema"] == "l1ad.qmodel/2" and [L["kind"] for L in d["layers"]] == ["dense", "affine", "dense"]
    assert fw.QModel.load(q.save(tmp_path / "q.json")) == q
    # a version-1 document (dense layers, no "kind") still loads and gives the same model
    v1 = _affine_model(2)
    d1 = v1.to_dict()
    d1["layers"] = [L for L in d1["layers"] if L["kind"] == "dense"][:1]
    d1["layers"][0]["output_format"] = None
    d1["schema"] = "l1ad.qmodel/1"
    for L in d1["layers"]:
        del L["kind"]
    d1["score"] = None
    d1["thresholds"] = []
    (tmp_path / "v1.json").write_text(json.dumps(d1))
    q1 = fw.QModel.load(tmp_path / "v1.json")
    assert q1.layers[0].kind == "dense" and q1.to_dict()["schema"] == "l1ad.qmodel/2"
    # an affine layer in a /1 document, and an unknown kind, are named
    d1["layers"].append(dict(d["layers"][1]))
    with pytest.raises(fw.QModelError, match="qmodel/1 document holds dense layers only"):
        fw.QModel.from_dict(d1)
    d2 = q.to_dict()
    d2["layers"][1]["kind"] = "conv9d"
    with pytest.raises(fw.QModelError, match="kind 'conv9d' not supported"):
        fw.QModel.from_dict(d2)


def test_affine_accumulator_must_be_exact():
    q = _affine_model(0)
    with pytest.raises(fw.QModelError, match="bn .affine.: accumulator .* does not hold the exact values"):
        q.replace_formats(bn={"accum_format": "ap_fixed<6,3>"})
    with pytest.raises(fw.QModelError, match="scale codes out of the range"):
        fw.AffineLayer("a", [300], "ap_fixed<8,2>", [0], "ap_fixed<4,2>")


def test_affine_intervals_are_tight():
    """The analysis' bounds are reached: the exact accumulator is no wider than the extreme inputs need."""
    A = fw.AffineLayer("a", [3, -5], "ap_fixed<4,2>", [1, -2], "ap_fixed<4,2>", "linear", None)
    q = fw.QModel(input=fw.InputSpec.identity(2, "ap_int<4>"), input_quantizer="ap_int<4>", layers=[A])
    x = np.array([[-8, -8], [7, 7], [-8, 7], [7, -8]], dtype=float)
    e = fw.emulate(q, x, keep=True)
    lo, hi = q.tensor_bounds()["a.accum"]
    acc = e.tensors["a.accum"]
    assert acc.min(axis=0).tolist() == lo and acc.max(axis=0).tolist() == hi


@pytest.mark.verilator
@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator not installed")
def test_affine_verilog_bit_exact(tmp_path):
    """Affine layers through Verilator: shift-add and multiplier builds, pipelined and not, 0 mismatches."""
    from l1ad.firmware.verilog import VerilogConfig, export_verilog
    from l1ad.sim.cosim import cosim_many, default_vectors

    models = [(_affine_model(s, relu=s % 2 == 0, wide_scale=s == 4), cfg) for s, cfg in
              [(0, dict(levels_per_stage=2)), (1, dict(levels_per_stage=0, multiplier="mult")),
               (3, dict(levels_per_stage=3, expose_outputs=True)), (4, dict(levels_per_stage=1, multiplier="mult"))]]
    dirs, xs = [], []
    for k, (q, cfg) in enumerate(models):
        d = tmp_path / f"a{k}"
        export_verilog(q, d, VerilogConfig(top=f"af{k}", **cfg))
        dirs.append(d)
        xs.append(default_vectors(q, 3000, seed=k))
    reps = cosim_many(dirs, xs, build_root=tmp_path / "build")
    for (q, cfg), r, x in zip(models, reps, xs):
        assert r["ok"] and r["vectors"] == len(x), (q.name, cfg, r["mismatch_fields"], r["details"][:2])


def _out_model(seed: int) -> fw.QModel:
    rng = np.random.default_rng(seed)
    d1 = fw.DenseLayer("d1", rng.integers(-8, 8, (5, 6)), "ap_fixed<4,1>", rng.integers(-8, 8, 6), "ap_fixed<4,1>", "relu",
                       "ap_ufixed<8,4,RND_CONV,SAT>")
    d2 = fw.DenseLayer("d2", rng.integers(-8, 8, (6, 1)), "ap_fixed<4,1>", rng.integers(-8, 8, 1), "ap_fixed<4,1>", "linear",
                       "ap_fixed<10,5,RND_CONV,SAT>")
    q = fw.QModel(input=fw.InputSpec.identity(5, "ap_int<8>"), input_quantizer="ap_fixed<8,6>", layers=[d1, d2],
                  score=fw.ScoreSpec("out", format="ap_fixed<7,4,RND,SAT>"), name=f"out{seed}")
    return q.with_thresholds((-20, 0, 17))


def test_out_score_emulator_and_refusals():
    """Score kind "out": the single output (a CICADA-style student's regression of the teacher loss) is the score."""
    q = _out_model(0)
    assert list(q.tensor_formats())[-1] == "score" and "score.square" not in q.tensor_formats()
    x = np.random.default_rng(1).integers(-128, 128, (3000, 5)).astype(float)
    from l1ad.firmware.fixed import quantize_float

    e = fw.emulate(q, x)
    o = q.output_format.to_float(e.outputs_int[:, 0])
    expect = quantize_float(np.asarray(o, dtype=np.float64), q.score.format)[0]  # the score format's rounding/saturation
    assert np.array_equal(e.score_int, expect)
    assert np.array_equal(e.trigger, e.score_int[:, None] > np.array(q.thresholds)[None, :])
    for b in ("int", "object"):
        assert np.array_equal(fw.emulate(q, x, backend=b).score_int, e.score_int)
    with pytest.raises(fw.QModelError, match="single network output"):
        fw.QModel(input=q.input, input_quantizer=q.input_quantizer, layers=q.layers[:1], score=fw.ScoreSpec("out"))


@pytest.mark.verilator
@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator not installed")
def test_out_score_verilog_bit_exact(tmp_path):
    from l1ad.firmware.verilog import VerilogConfig, export_verilog
    from l1ad.sim.cosim import cosim, default_vectors

    q = _out_model(2)
    export_verilog(q, tmp_path / "rtl", VerilogConfig(top="outsc", levels_per_stage=2))
    x = default_vectors(q, 3000, seed=1)
    r = cosim(tmp_path / "rtl", x, build_root=tmp_path / "build")
    assert r["ok"] and r["vectors"] == len(x), (r["mismatch_fields"], r["details"][:2])


@pytest.mark.hls
def test_out_score_hls_csim_bit_exact(tmp_path):
    if shutil.which("g++") is None:  # pragma: no cover
        pytest.skip("the C simulation needs g++")
    from l1ad.firmware.hls import HLSConfig, export_hls, verify_project

    q = _out_model(3)
    prj = export_hls(q, None, tmp_path / "p", HLSConfig(tb_vectors=20))
    rep = verify_project(prj, 4000, with_coverage=False)
    assert rep["passed"] and rep["mismatches"]["outputs"] == 0 and rep["mismatches"]["score"] == 0
    assert rep["mismatches"]["trigger"] == 0
