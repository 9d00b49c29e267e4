"""The HLS project built from the QModel IR alone (firmware.hls.network handler table: dense via hls4ml's
nnet::dense_latency, affine by its own loop): C simulation == emulator, bit for bit, on random-weight networks
covering exact and narrow (hls4ml-order) accumulators, relu / linear, every rounding and overflow mode,
signed / unsigned tensors, no score / mse (gated) / mu2 score, thresholds, and affine layers."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

pytestmark = pytest.mark.hls

if shutil.which("g++") is None:  # pragma: no cover
    pytest.skip("the C simulation needs g++", allow_module_level=True)

from l1ad.firmware import emulate  # noqa: E402
from l1ad.firmware.fixed import FixedFormat  # noqa: E402
from l1ad.firmware.ir import AffineLayer, ConvLayer, DenseLayer, InputSpec, QModel, ScoreSpec  # noqa: E402
from l1ad.firmware.hls import HLSConfig, HLSExportError, export_hls, verify_project  # noqa: E402
from l1ad.firmware.hls.vectors import make_vectors  # noqa: E402

N_EVENTS = 30_000
N_UNIFORM = 10_000


def _codes(rng, fmt, shape):
    f = FixedFormat.parse(fmt)
    return rng.integers(f.min_code, f.max_code + 1, size=shape)


def _dense(rng, name, n_in, n_out, wf, bf, act, out, accum=None):
    return DenseLayer(name, _codes(rng, wf, (n_in, n_out)), wf, _codes(rng, bf, n_out), bf, act, out, accum)


def _affine(rng, name, n, sf, of, act, out):
    return AffineLayer(name, _codes(rng, sf, n), sf, _codes(rng, of, n), of, act, out)


def _with_thresholds(q, seed):
    """Thresholds at score quantiles, one equal to an attained score (ties must not fire), one that always fires."""
    x = make_vectors(q, 3000, seed=seed)
    xs = np.concatenate(list(x.values()))
    s = np.sort(np.asarray(emulate(q, q.input.format.to_float(xs)).score_int, dtype=np.int64))
    return q.with_thresholds([int(s[len(s) // 2]), int(s[int(0.9 * len(s))]), q.score.format.min_code - 1])


def net_exact_mse():
    """Exact accumulators, relu, unsigned and SAT_SYM outputs, input scaling, gated mse score, thresholds."""
    rng = np.random.default_rng(101)
    n = 12
    inp = InputSpec("ap_int<14>", rng.integers(-40, 40, n), rng.integers(-1, 5, n))
    layers = [
        _dense(rng, "enc1", n, 8, "ap_fixed<6,1>", "ap_fixed<8,3>", "relu", "ap_ufixed<9,4,RND,SAT>"),
        _dense(rng, "enc2", 8, 5, "ap_fixed<5,0>", "ap_fixed<6,2>", "relu", "ap_fixed<8,3,RND_ZERO,SAT_SYM>"),
        _dense(rng, "dec", 5, n, "ap_fixed<7,2>", "ap_fixed<7,3>", "linear", "ap_fixed<10,4,RND_INF,SAT>"),
    ]
    gate = [3 * (j // 3) for j in range(n)]
    q = QModel(inp, "ap_fixed<10,4,RND_CONV,SAT>", layers, ScoreSpec("mse", gate=gate), name="exact_mse")
    return _with_thresholds(q, 1)


def net_narrow_mu2():
    """Accumulators narrower than exact (hls4ml order: rounding of each product, saturation / wrap of partial
    sums), unsigned input, every rounding mode somewhere, mu2 score with narrow formats, thresholds."""
    rng = np.random.default_rng(202)
    n = 10
    inp = InputSpec("ap_uint<10>", rng.integers(0, 64, n), rng.integers(0, 4, n))
    layers = [
        _dense(rng, "h1", n, 8, "ap_fixed<6,1>", "ap_fixed<6,2>", "relu", "ap_ufixed<6,3,TRN_ZERO,SAT>",
               "ap_fixed<12,4,RND,SAT>"),
        _dense(rng, "h2", 8, 6, "ap_fixed<6,1>", "ap_fixed<6,1>", "linear", "ap_fixed<8,2,RND_MIN_INF,SAT_ZERO>",
               "ap_fixed<10,3,RND_CONV,WRAP>"),
        _dense(rng, "mu", 6, 4, "ap_fixed<7,2>", "ap_fixed<6,2>", "relu", "ap_fixed<8,4,RND_INF,WRAP>",
               "ap_fixed<9,5,TRN,SAT_SYM>"),
    ]
    score = ScoreSpec("mu2", square_format="ap_ufixed<12,6,RND,SAT>", accum_format="ap_ufixed<11,7,RND_CONV,SAT>",
                      format="ap_ufixed<8,6,RND_ZERO,SAT>")
    q = QModel(inp, "ap_ufixed<8,6,RND_MIN_INF,SAT_ZERO>", layers, score, name="narrow_mu2")
    return _with_thresholds(q, 2)


def net_plain():
    """No score; unsigned weights, a narrow truncating / wrapping accumulator, an integer (TRN, WRAP) output."""
    rng = np.random.default_rng(303)
    n = 9
    inp = InputSpec("ap_fixed<16,8>", rng.integers(-3, 3, n), rng.integers(-2, 2, n))
    layers = [
        _dense(rng, "a", n, 7, "ap_ufixed<4,0>", "ap_fixed<8,4>", "relu", "ap_fixed<10,5,RND,SAT>"),
        _dense(rng, "b", 7, 3, "ap_fixed<8,2>", "ap_fixed<8,2>", "linear", "ap_fixed<12,12>", "ap_fixed<14,9>"),
    ]
    return QModel(inp, "ap_fixed<12,6,RND,SAT>", layers, None, name="plain")


def net_affine():
    """Dense -> affine (relu) -> dense -> affine (linear), gated mse score, thresholds."""
    rng = np.random.default_rng(404)
    n = 10
    inp = InputSpec("ap_int<12>", rng.integers(-20, 20, n), rng.integers(0, 4, n))
    layers = [
        _dense(rng, "d1", n, 6, "ap_fixed<6,1>", "ap_fixed<6,2>", "linear", "ap_fixed<10,4,RND,SAT>"),
        _affine(rng, "bn1", 6, "ap_fixed<8,2>", "ap_fixed<8,3>", "relu", "ap_ufixed<8,3,RND_CONV,SAT>"),
        _dense(rng, "d2", 6, n, "ap_fixed<6,1>", "ap_fixed<6,2>", "linear", "ap_fixed<10,5,RND,SAT>"),
        _affine(rng, "bn2", n, "ap_ufixed<6,3>", "ap_fixed<7,2>", "linear", "ap_fixed<10,4,RND_ZERO,SAT_SYM>"),
    ]
    q = QModel(inp, "ap_fixed<10,5,RND_CONV,SAT>", layers, ScoreSpec("mse"), name="affine")
    return _with_thresholds(q, 4)


def net_conv():
    """Conv1D (stride 2, valid, relu) -> Conv2D (same padding, linear) -> dense, mu2 score, thresholds."""
    rng = np.random.default_rng(505)
    n = 24  # (12, 2)
    inp = InputSpec("ap_int<10>", rng.integers(-8, 8, n), rng.integers(0, 3, n))
    layers = [
        ConvLayer("c1", _codes(rng, "ap_fixed<6,1>", (3, 2, 4)), "ap_fixed<6,1>", _codes(rng, "ap_fixed<6,2>", 4),
                  "ap_fixed<6,2>", (12, 2), (2,), "valid", "relu", "ap_ufixed<8,3,RND,SAT>"),  # -> (5, 4)
        ConvLayer("c2", _codes(rng, "ap_fixed<6,1>", (2, 2, 1, 3)), "ap_fixed<6,1>", _codes(rng, "ap_fixed<6,2>", 3),
                  "ap_fixed<6,2>", (5, 4, 1), (1, 1), "same", "linear", "ap_fixed<9,4,RND_CONV,SAT>"),  # -> (5, 4, 3)
        _dense(rng, "out", 60, 5, "ap_fixed<6,1>", "ap_fixed<6,2>", "linear", "ap_fixed<8,4,RND,SAT>"),
    ]
    q = QModel(inp, "ap_fixed<10,5,RND_CONV,SAT>", layers, ScoreSpec("mu2"), name="conv")
    return _with_thresholds(q, 5)


NETS = {"exact_mse": net_exact_mse, "narrow_mu2": net_narrow_mu2, "plain": net_plain, "affine": net_affine,
        "conv": net_conv}
_BUILT: dict = {}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """name -> (exported project, compiled C simulation); each built once per module."""
    from l1ad.firmware.hls import CSim

    def get(name):
        if name not in _BUILT:
            q = NETS[name]()
            prj = export_hls(q, None, tmp_path_factory.mktemp("hls_ir") / name, HLSConfig(tb_vectors=200))
            _BUILT[name] = (prj, CSim(prj.path, prj.name))
        return _BUILT[name]

    return get


def _uniform(q, n, seed):
    f = q.input.format
    return np.random.default_rng(seed).integers(f.min_code, f.max_code + 1, size=(n, q.n_inputs))


@pytest.mark.parametrize("name", list(NETS))
def test_csim_equals_emulator(project, name):
    prj, sim = project(name)
    q = prj.qmodel
    sets = make_vectors(q, N_EVENTS, seed=7)
    sets["uniform"] = _uniform(q, N_UNIFORM, 8)
    from l1ad.firmware.hls.csim import verify

    rep = verify(q, sim, sets, with_coverage=True)
    n_thr = len(q.thresholds)
    print(f"\n{name}: {rep['n_events']} events, compared {rep['compared_values']}, mismatches {rep['mismatches']}, "
          f"compile {sim.compile_seconds:.1f} s")
    assert rep["n_events"] == N_EVENTS + N_UNIFORM
    assert rep["mismatches"] == {"outputs": 0, "score": 0, "trigger": 0}, rep["examples"]
    assert rep["passed"]
    cov = rep["coverage"]
    # the vectors reach rounding and saturation inside the network
    assert sum(v["inexact"] for k, v in cov.items() if k.endswith(".out")) > 0
    assert sum(v["overflow"] for k, v in cov.items() if k.endswith(".out")) > 0
    if n_thr:
        rates = np.array([r["trigger_rate"] for r in rep["per_set"].values()])
        assert (rates > 0).any(axis=0).all() and (rates[:, :2] < 1).any(axis=0).all()


def test_narrow_accumulators_change_the_result(project):
    """The narrow accumulators of narrow_mu2 do act (vs exact ones), so the C-sim test above covers hls4ml's order."""
    prj, _ = project("narrow_mu2")
    q = prj.qmodel
    assert [q.layer_exact(i) for i in range(len(q.layers))] == [False, False, False]
    exact = q.replace_formats(**{L.name: {"accum_format": None} for L in q.layers})
    assert all(exact.layer_exact(i) for i in range(len(q.layers)))
    x = q.input.format.to_float(_uniform(q, 5000, 9))
    assert np.count_nonzero(emulate(q, x).outputs_int != emulate(exact, x).outputs_int) > 100


def test_testbench_reproduces_tb_data(project):
    """The Vitis testbench compiled with g++ reads tb_data/ and reproduces the emulator's codes exactly."""
    prj, _ = project("affine")
    exe = prj.path / "tb.exe"
    subprocess.run(["g++", "-O0", "-std=c++14", "-w", "-Ifirmware/ap_types", "-Ifirmware", f"{prj.name}_test.cpp",
                    f"firmware/{prj.name}.cpp", "-o", str(exe)], cwd=prj.path, check=True)
    r = subprocess.run([str(exe)], cwd=prj.path, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "200 events, 0 mismatching" in r.stdout
    assert (prj.path / "tb_data" / "csim_results.log").read_text() == \
        (prj.path / "tb_data" / "tb_output_predictions.dat").read_text()


def test_project_layout_and_precisions(project):
    prj, _ = project("exact_mse")
    q, d = prj.qmodel, prj.path
    for f in ("README.md", "build.sh", "build_lib.sh", "build_prj.tcl", "project.tcl", "qmodel.json", "l1ad_project.json",
              "l1ad_trigger_bridge.cpp", "l1ad_trigger_test.cpp", "tb_data/tb_input_features.dat",
              "tb_data/tb_output_predictions.dat", "firmware/l1ad_trigger.cpp", "firmware/l1ad_trigger.h",
              "firmware/defines.h", "firmware/parameters.h", "firmware/l1ad_types.h", "firmware/l1ad_blocks.h",
              "firmware/l1ad_io.h", "firmware/ap_types/ap_fixed.h", "firmware/nnet_utils/nnet_dense_latency.h",
              "firmware/nnet_utils/nnet_mult.h", "firmware/weights/enc1.h", "firmware/weights/dec.h"):
        assert (d / f).is_file(), f
    assert QModel.load(d / "qmodel.json") == q
    top = (d / "firmware" / "l1ad_trigger.cpp").read_text()
    assert "nnet::dense_latency<input_t, enc1_accum_t, config_enc1>(xq, enc1_acc, w_enc1, b_enc1);" in top
    assert "#pragma HLS PIPELINE II=1" in top and top.count("#pragma HLS INTERFACE") == 1
    assert "l1ad_score_block(x_hw, xq, y, score);" in top and "l1ad_compare(score, trigger);" in top
    assert "nnet::product::mult" in (d / "firmware" / "parameters.h").read_text()
    tcl = (d / "project.tcl").read_text()
    assert 'set part "xcvu13p-flga2577-2-e"' in tcl and "set clock_period 4.167" in tcl
    prj_tcl = (d / "build_prj.tcl").read_text()
    for cmd in ("set_top $project_name", "csim_design", "csynth_design", "cosim_design", "create_clock -period"):
        assert cmd in prj_tcl, cmd
    # every IR tensor in the precision table (README and the project marker), with its C++ typedef
    rows = {r["tensor"]: r for r in prj.precisions}
    assert set(q.tensor_formats()) <= set(rows)
    assert rows["xq"]["typedef"] == "input_t" and rows["dec.out"]["typedef"] == "dec_result_t"
    assert rows["enc1.weight"]["format"] == str(q.layers[0].weight_format)
    defines = (d / "firmware" / "defines.h").read_text()
    for r in prj.precisions:
        if r["typedef"].endswith("_t") and not r["typedef"].startswith("l1ad"):
            assert f"typedef {r['cpp']} {r['typedef']};" in defines, r
    readme = (d / "README.md").read_text()
    for t, f in q.tensor_formats().items():
        assert f"| {t} | `{f}` |" in readme, t
    meta = json.loads((d / "l1ad_project.json").read_text())
    assert meta["source_kind"] == "qmodel" and meta["precisions"] == prj.precisions


def test_a_layer_kind_without_handler_is_refused(tmp_path, monkeypatch):
    import l1ad.firmware.hls.network as net

    q = net_exact_mse()
    monkeypatch.setattr(net, "HANDLERS", {k: v for k, v in net.HANDLERS.items() if k != "dense"})
    with pytest.raises(HLSExportError, match="layer enc1: the HLS writer has no handler for layer kind 'dense'"):
        export_hls(q, None, tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_constants_wider_than_a_double_are_exact(tmp_path):
    """A 60-bit weight (beyond a double's 53) is written from its hex digits: the C simulation stays exact."""
    rng = np.random.default_rng(5)
    w = np.zeros((4, 4), dtype=object)
    w[1, 2] = (1 << 58) + 1
    w[3, 0] = -(1 << 57) - 3
    L = DenseLayer("wide", w, "ap_fixed<60,2>", rng.integers(-3, 3, 4), "ap_fixed<4,2>", "linear", "ap_fixed<16,8,RND,SAT>")
    q = QModel(InputSpec.identity(4, "ap_int<8>"), "ap_fixed<8,8>", [L], None)
    prj = export_hls(q, None, tmp_path / "p", HLSConfig(tb_vectors=20))
    assert "l1ad_from_hex" in (tmp_path / "p" / "firmware" / "weights" / "wide.h").read_text()
    rep = verify_project(prj, 2000, with_coverage=False)
    assert rep["passed"] and rep["mismatches"]["outputs"] == 0


def test_cli_export_hls_from_a_qmodel_json(tmp_path, capsys):
    """`l1ad export hls qmodel.json --verify N`: no framework model needed; C-sim vs emulator only."""
    from l1ad.cli import main

    q = net_affine()
    path = q.save(tmp_path / "qmodel.json")
    out = tmp_path / "prj"
    assert main(["export", "hls", str(path), "--out", str(out), "--verify", "3000", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert "no source framework model (a qmodel.json)" in text
    rep = json.loads((out / "verification.json").read_text())
    assert rep["passed"] and rep["n_events"] == 3000 and rep["mismatches"] == {"outputs": 0, "score": 0, "trigger": 0}
    assert set(rep["framework_vs_emulator"].values()) == {None}
    assert QModel.load(out / "qmodel.json") == q
