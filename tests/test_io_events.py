"""Event model and file I/O: ADC2021 HDF5 layout, NanoAOD L1 branches, chunked reads, bad input, atomic writes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from l1ad.trigger.events import EventBatch, EventDataError
from l1ad.trigger.io import count_events, describe, iter_events, read_events, read_nanoaod, write_events
from l1ad.trigger.l1units import PHI_LSB, PT_LSB, from_hw, hw_inputs, to_hw
from l1ad.trigger.toy import toy_events


def _adc2021_file(path: Path, n: int, seed: int = 3) -> np.ndarray:
    """Write a file exactly as the ADC2021 challenge ships them: three datasets, Class column, no extras."""
    rng = np.random.default_rng(seed)
    p = np.zeros((n, 19, 4), dtype=np.float32)
    p[:, 0, 0] = rng.exponential(30, n)
    p[:, 0, 2] = rng.uniform(-np.pi, np.pi, n)
    p[:, 0, 3] = 1
    njet = rng.integers(0, 11, n)
    for i in range(n):
        p[i, 9 : 9 + njet[i], 0] = np.sort(rng.exponential(40, njet[i]) + 20)[::-1]
        p[i, 9 : 9 + njet[i], 1] = rng.normal(0, 2, njet[i])
        p[i, 9 : 9 + njet[i], 3] = 4
    with h5py.File(path, "w") as f:
        f.create_dataset("Particles", data=p)
        f.create_dataset("Particles_Names", data=np.array([b"Pt", b"Eta", b"Phi", b"Class"]))
        f.create_dataset("Particles_Classes", data=np.array([b"MET_class_1", b"Four_Ele_class_2", b"Four_Mu_class_3", b"Ten_Jet_class_4"]))
    return p


def test_adc2021_file_loads_unchanged(tmp_path):
    p = _adc2021_file(tmp_path / "background_for_training.h5", 200)
    b = read_events(tmp_path / "background_for_training.h5")
    assert len(b) == 200
    np.testing.assert_array_equal(b.objects, p[:, :, :3])
    assert b.process_names == ("background_for_training",)
    assert (b.weight == 1).all()
    np.testing.assert_array_equal(b.multiplicity("Jet"), (p[:, 9:, 0] > 0).sum(axis=1))
    # the model input is the (pT, eta, phi) flattening, object by object
    np.testing.assert_array_equal(b.l1_inputs()[:, 27:30], p[:, 9, :3])


def test_roundtrip_keeps_every_field(tmp_path):
    b = EventBatch.concat([toy_events(300, seed=1), toy_events(100, signal=True, seed=2)])
    b = b.with_weight(np.linspace(0.1, 2, len(b)))
    write_events(tmp_path / "x.h5", b)
    c = read_events(tmp_path / "x.h5")
    assert c == b
    # the written Class column follows the ADC2021 convention (0 for empty slots)
    with h5py.File(tmp_path / "x.h5") as f:
        cls = f["Particles"][:, :, 3]
    assert set(np.unique(cls[:, 9:])) <= {0.0, 4.0}
    assert ((cls > 0) == b.present()).all()


def test_chunked_iteration_equals_whole_read(tmp_path):
    b = toy_events(1037, seed=5)
    write_events(tmp_path / "x.h5", b)
    chunks = list(iter_events(tmp_path / "x.h5", chunk_size=250))
    assert [len(c) for c in chunks] == [250, 250, 250, 250, 37]
    assert EventBatch.concat(chunks) == b
    assert count_events(tmp_path / "x.h5") == 1037
    assert describe(tmp_path / "x.h5", chunk_size=100)["n_events"] == 1037


def test_nanoaod_l1_branches(tmp_path):
    uproot = pytest.importorskip("uproot")
    ak = pytest.importorskip("awkward")
    eg = ak.Array([[{"pt": 10.0, "eta": 0.5, "phi": 1.0, "bx": 0}, {"pt": 30.0, "eta": -1.0, "phi": 0.2, "bx": 0}],
                   [{"pt": 50.0, "eta": 0.1, "phi": -2.0, "bx": -1}]])
    mu = ak.Array([[], [{"pt": 25.0, "eta": 2.0, "phi": 3.0, "bx": 0}]])
    jets = ak.Array([[{"pt": 40.0 + i, "eta": 0.1 * i, "phi": 0.0, "bx": 0} for i in range(12)], []])
    sums = ak.Array([[{"pt": 500.0, "eta": 0.0, "phi": 0.0, "etSumType": 0, "bx": 0}, {"pt": 45.0, "eta": 0.0, "phi": 1.5, "etSumType": 2, "bx": 0}],
                     [{"pt": 12.0, "eta": 0.0, "phi": -1.0, "etSumType": 2, "bx": 0}]])
    data = {"L1EG": eg, "L1Mu": mu, "L1Jet": jets, "L1EtSum": sums, "genWeight": np.array([1.0, 2.0])}
    with uproot.recreate(tmp_path / "nano.root") as f:  # NanoAOD naming: nL1EG counter, L1EG_pt branches
        f.mktree("Events", {k: (v.type if k != "genWeight" else np.float64) for k, v in data.items()},
                 counter_name=lambda c: f"n{c}", field_name=lambda outer, inner: f"{outer}_{inner}")
        f["Events"].extend(data)
    assert "L1EG_pt" in uproot.open(tmp_path / "nano.root")["Events"].keys()
    b = read_events(tmp_path / "nano.root")
    assert len(b) == 2
    assert b.objects[0, 1, 0] == 30.0 and b.objects[0, 2, 0] == 10.0  # sorted by pT
    assert b.objects[1, 1, 0] == 0.0  # bx = -1 dropped
    assert b.objects[1, 5].tolist() == [25.0, 2.0, 3.0]
    assert b.multiplicity("Jet").tolist() == [10, 0]  # truncated to 10, leading kept
    assert b.objects[0, 9, 0] == 51.0
    assert b.objects[0, 0, 0] == 45.0 and b.objects[0, 0, 2] == 1.5  # MET = etSumType 2
    assert b.weight.tolist() == [1.0, 2.0]
    assert count_events(tmp_path / "nano.root") == 2


def test_hardware_units_roundtrip_on_grid():
    b = toy_events(500, seed=7)
    codes = to_hw(b.objects)
    assert codes.dtype == np.int32
    np.testing.assert_allclose(from_hw(codes)[..., 0], b.objects[..., 0], atol=PT_LSB / 2 + 1e-4)
    np.testing.assert_array_equal(to_hw(from_hw(codes)), codes)  # the grid is a fixed point
    x = hw_inputs(b.objects)
    assert x.shape == (500, 57) and (x == np.round(x)).all()
    assert (np.abs(codes[..., 2]) <= 288).all()
    assert to_hw(np.array([[[10.0, 0.0, np.pi]]]))[0, 0, 2] == -288  # phi wraps into [-pi, pi)
    assert abs(from_hw(np.array([[[0, 0, 1]]]))[0, 0, 2] - PHI_LSB) < 1e-7


@pytest.mark.parametrize("bad,field", [
    (lambda o: o.__setitem__((3, 2, 1), np.nan), "objects"),
    (lambda o: o.__setitem__((0, 9, 0), -5.0), "objects"),
])
def test_bad_objects_are_named(bad, field):
    o = toy_events(10).objects.copy()
    bad(o)
    with pytest.raises(EventDataError, match=field):
        EventBatch.build(o, source="x.h5")


def test_bad_shapes_and_weights():
    with pytest.raises(EventDataError, match=r"objects.*\(N, 19, 3\)"):
        EventBatch.build(np.zeros((5, 18, 3)))
    with pytest.raises(EventDataError, match="weight.*negative"):
        EventBatch.build(np.zeros((2, 19, 3)), weight=[1.0, -1.0])
    assert EventBatch.build(np.zeros((2, 19, 3)), weight=[1.0, -1.0], allow_negative_weights=True).weight[1] == -1
    with pytest.raises(EventDataError, match="weight"):
        EventBatch.build(np.zeros((2, 19, 3)), weight=[1.0])
    with pytest.raises(EventDataError, match="mjj"):
        EventBatch.build(np.zeros((2, 19, 3)), offline={"mjj": [1.0, np.inf]})
    with pytest.raises(EventDataError, match="bogus"):
        EventBatch.build(np.zeros((2, 19, 3)), offline={"bogus": [1.0, 2.0]})


def test_missing_dataset_and_wrong_shape(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("Other", data=np.zeros(3))
    with pytest.raises(EventDataError, match=r"a\.h5.*Particles"):
        read_events(tmp_path / "a.h5")
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f.create_dataset("Particles", data=np.zeros((4, 19, 4)))
        f.create_dataset("Weight", data=np.ones(3))
    with pytest.raises(EventDataError, match=r"b\.h5.*Weight"):
        read_events(tmp_path / "b.h5")
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("Particles", data=np.zeros((4, 20, 4)))
    with pytest.raises(EventDataError, match=r"c\.h5.*Particles.*\(4, 20, 4\)"):
        read_events(tmp_path / "c.h5")


def test_truncated_and_corrupt_files(tmp_path):
    write_events(tmp_path / "ok.h5", toy_events(5000, seed=1), compression=None)
    raw = (tmp_path / "ok.h5").read_bytes()
    (tmp_path / "trunc.h5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(EventDataError, match=r"trunc\.h5"):
        read_events(tmp_path / "trunc.h5")
    (tmp_path / "junk.h5").write_bytes(b"not an hdf5 file" * 10)
    with pytest.raises(EventDataError, match=r"junk\.h5.*HDF5"):
        read_events(tmp_path / "junk.h5")
    with pytest.raises(FileNotFoundError):
        read_events(tmp_path / "absent.h5")
    with pytest.raises(EventDataError, match="unsupported"):
        read_events(tmp_path / "x.csv")


def test_negative_weight_in_file_rejected_unless_allowed(tmp_path):
    b = toy_events(10)
    b = EventBatch.build(b.objects, weight=np.r_[-1.0, np.ones(9)], allow_negative_weights=True)
    write_events(tmp_path / "w.h5", b)
    with pytest.raises(EventDataError, match=r"w\.h5.*weight"):
        read_events(tmp_path / "w.h5")
    assert read_events(tmp_path / "w.h5", allow_negative_weights=True).weight[0] == -1


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import l1ad.trigger.io as io

    b = toy_events(50)
    (tmp_path / "keep.h5").write_bytes(b"old")

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(io.np, "zeros", boom)
    with pytest.raises(RuntimeError):
        write_events(tmp_path / "keep.h5", b)
    with pytest.raises(RuntimeError):
        write_events(tmp_path / "new.h5", b)
    assert sorted(os.listdir(tmp_path)) == ["keep.h5"]
    assert (tmp_path / "keep.h5").read_bytes() == b"old"


def test_cli_info_and_errors(tmp_path):
    write_events(tmp_path / "x.h5", toy_events(123))
    exe = [sys.executable, "-m", "l1ad.cli"]
    r = subprocess.run([*exe, "data", "info", str(tmp_path / "x.h5"), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert '"n_events": 123' in r.stdout
    (tmp_path / "bad.h5").write_bytes(b"\x00" * 100)
    r = subprocess.run([*exe, "data", "info", str(tmp_path / "bad.h5")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "bad.h5" in r.stderr and "Traceback" not in r.stderr


def test_data_plots_written(tmp_path):
    from l1ad.trigger.data_plots import plot_file

    write_events(tmp_path / "x.h5", toy_events(400))
    files = plot_file(tmp_path / "x.h5", tmp_path / "plots", chunk_size=150)
    assert {f.name for f in files} == {"multiplicity.png", "pt.png", "eta.png", "mjj.png", "weights.png"}
    assert all(f.stat().st_size > 5000 and f.read_bytes()[:4] == b"\x89PNG" for f in files)
    assert not [p for p in (tmp_path / "plots").iterdir() if p.name.startswith(".")]


def test_int16_fields_are_range_checked_not_wrapped():
    """NPU and process codes are stored as int16: 70000 would wrap to 4464 if cast; it is refused instead."""
    objects = toy_events(3, seed=1).objects
    with pytest.raises(EventDataError, match=r"field 'npu': value 70000 is outside the representable range \[-32768, 32767\]"):
        EventBatch.build(objects, npu=[1, 70000, 3])
    with pytest.raises(EventDataError, match="field 'npu': values must be integers"):
        EventBatch.build(objects, npu=[1.5, 2, 3])
    with pytest.raises(EventDataError, match="pile-up multiplicity must be >= 0"):
        EventBatch.build(objects, npu=[-1, 2, 3])
    assert EventBatch.build(objects, npu=[0, 32767, 3.0]).npu.tolist() == [0, 32767, 3]


def test_complex_input_is_refused_not_cast(tmp_path):
    objects = toy_events(3, seed=1).objects
    with pytest.raises(EventDataError, match="field 'objects': dtype complex128 is not allowed"):
        EventBatch.build(objects.astype(np.complex128))
    with pytest.raises(EventDataError, match="field 'weight': dtype complex128"):
        EventBatch.build(objects, weight=np.ones(3, dtype=np.complex128))


def test_negative_weights_counted_apart_when_allowed(tmp_path):
    b = EventBatch.build(toy_events(10, seed=4).objects, weight=np.where(np.arange(10) < 4, -2.0, 1.0),
                         allow_negative_weights=True)
    write_events(tmp_path / "nlo.h5", b)
    with pytest.raises(EventDataError, match="4 negative weight"):
        describe(tmp_path / "nlo.h5")
    d = describe(tmp_path / "nlo.h5", allow_negative_weights=True)
    assert d["n_events"] == 10 and d["weight_sum"] == pytest.approx(-2.0)
    assert d["negative_weight_events"] == 4 and d["negative_weight_sum"] == pytest.approx(-8.0)
