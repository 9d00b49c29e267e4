"""The hostile-input campaign as tests: every CLI command that reads files or configurations, fed bad input.

Each case runs `l1ad.cli.main([...])` in this process and must give exit code 2 and one line on stderr that names
the offending file, key or value; no traceback (an escaping exception fails the case), no result printed as if
all were well, no output left behind, and the user's input files untouched. The lock and killed-run cases run a
second process. The module's finaliser prints the campaign totals (visible with `pytest -s`).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from l1ad.cli import main
from l1ad.firmware import emulate
from l1ad.sim.models import l1_autoencoder
from l1ad.trigger.events import EventBatch
from l1ad.trigger.io import write_events
from l1ad.trigger.l1units import hw_inputs
from l1ad.trigger.models.arch import ArchitectureConfig
from l1ad.trigger.scaler import InputScaler
from l1ad.trigger.toy import toy_events

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- input files
def _particles(batch: EventBatch) -> np.ndarray:
    p = np.zeros((len(batch), 19, 4), dtype=np.float32)
    p[:, :, :3] = batch.objects
    return p


def _raw_h5(path: Path, **datasets) -> None:
    """An HDF5 file written field by field, bypassing the library's own validation."""
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            if isinstance(value, str) and value == "GROUP":
                f.create_group(name)
            else:
                f.create_dataset(name, data=value)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Every input file of the campaign, written once (tiny: a few hundred events at most)."""
    d = tmp_path_factory.mktemp("inputs")
    good = toy_events(300, seed=1)
    write_events(d / "zb.h5", good)
    write_events(d / "signal.h5", toy_events(100, signal=True, seed=2))
    write_events(d / "empty.h5", toy_events(0))
    p = _particles(good.select(slice(0, 20)))
    _raw_h5(d / "particles_group.h5", Particles="GROUP")
    _raw_h5(d / "complex.h5", Particles=p.astype(np.complex64))
    _raw_h5(d / "npu_wrap.h5", Particles=p, NPU=np.full(20, 70_000, dtype=np.int32))
    _raw_h5(d / "negative_weights.h5", Particles=p, Weight=np.where(np.arange(20) % 3 == 0, -0.5, 1.0))
    _raw_h5(d / "wrong_shape.h5", Particles=np.zeros((20, 7, 4), dtype=np.float32))
    bad = p.copy()
    bad[3, 9, 0] = np.nan
    _raw_h5(d / "nan.h5", Particles=bad)
    _raw_h5(d / "weight_group.h5", Particles=p, Weight="GROUP")
    _raw_h5(d / "offline_dataset.h5", Particles=p, Offline=np.zeros(20))
    with h5py.File(d / "process_names.h5", "w") as f:
        f.create_dataset("Particles", data=p)
        f.create_dataset("Process", data=np.zeros(20, dtype=np.int16)).attrs["names"] = "not json"
    whole = (d / "zb.h5").read_bytes()
    (d / "truncated.h5").write_bytes(whole[: len(whole) // 3])
    (d / "text.h5").write_text("Pt,Eta,Phi\n1,2,3\n")
    # configurations
    (d / "list.yaml").write_text("- 1\n- 5\n")
    (d / "rates_typo.yaml").write_text("target_rate_khz: [1, 5]\n")
    (d / "rates_negative.yaml").write_text("target_rates_khz: [-1]\n")
    (d / "frontends_empty.yaml").write_text("models:\n  frontends: []\n")
    (d / "deploy_untrained.yaml").write_text("models:\n  frontends: [brevitas]\n  deploy: qkeras\n")
    (d / "bad_edges.yaml").write_text("offline:\n  mjj_edges_gev: [4000, 200, 38]\n")
    (d / "unknown_key.yaml").write_text("modles:\n  frontends: [qkeras]\n")
    (d / "bad_yaml.yaml").write_text("rates: [unclosed\n")
    (d / "gen_bad.yaml").write_text("seed: -1\n")
    (d / "arch60.yaml").write_text("kind: ae\nn_inputs: 60\n")
    (d / "bumphunt_list.yaml").write_text("bumphunt: [1, 2]\n")
    # firmware documents
    q = l1_autoencoder((8, 4, 8), seed=2)
    q = q.with_thresholds([int(np.median(emulate(q, hw_inputs(good.objects)).score_int))])
    q.save(d / "qmodel.json")
    (d / "qmodel_list.json").write_text(json.dumps([1, 2, 3]))
    (d / "qmodel_broken.json").write_text('{"schema": "l1ad.qmodel/1", "layers": [')
    (d / "qmodel_schema.json").write_text(json.dumps({"schema": "something/else"}))
    np.save(d / "scores.npy", np.linspace(0, 1, 50))
    (d / "scores_text.npy").write_text("0.1 0.2 0.3\n")
    np.save(d / "scores_complex.npy", np.ones(50, dtype=np.complex128))
    # model directories: complete but for one bad file each (no network is ever trained here)
    arch = ArchitectureConfig.default("ae")
    scaler = InputScaler().fit(hw_inputs(good.objects))
    for name, meta, net in (("model_truncated", {"frontend": "qkeras"}, whole[:1000]),
                            ("model_meta_list", [1, 2], b""),
                            ("model_pt_truncated", {"frontend": "brevitas"}, b"PK\x03\x04 truncated")):
        m = d / name
        m.mkdir()
        (m / "arch.yaml").write_text(arch.to_yaml())
        (m / "scaler.json").write_text(json.dumps(scaler.to_dict()))
        (m / "metadata.json").write_text(json.dumps(meta))
        (m / ("model.pt" if name == "model_pt_truncated" else "model.h5")).write_bytes(net)
    m = d / "model_arch_list"
    m.mkdir()
    (m / "arch.yaml").write_text("- 57\n- 32\n")
    (m / "scaler.json").write_text(json.dumps(scaler.to_dict()))
    (m / "metadata.json").write_text(json.dumps({"frontend": "qkeras"}))
    (m / "model.h5").write_bytes(whole)
    (d / "rtl_empty").mkdir()
    return d


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def campaign():
    """Outcome counts of the module's cases; printed at the end."""
    tally = {"cases": 0, "clean errors": 0, "tracebacks": 0, "silent results": 0, "partial outputs": 0}
    yield tally
    print("\nbad-input campaign: " + ", ".join(f"{k} {v}" for k, v in tally.items()))


# ---------------------------------------------------------------------------------------------- the cases
#: (id, argv with {d} = input folder and {out} = an output path that must not appear, needles in the message)
CASES = [
    # l1ad data info / plot / generate
    ("info-missing-file", ["data", "info", "{d}/absent.h5"], ["absent.h5", "no such file"]),
    ("info-particles-group", ["data", "info", "{d}/particles_group.h5"], ["particles_group.h5", "Particles", "group", "ADC2021-layout"]),
    ("info-complex-dtype", ["data", "info", "{d}/complex.h5"], ["complex.h5", "complex64", "real numbers"]),
    ("info-npu-int16-wrap", ["data", "info", "{d}/npu_wrap.h5"], ["npu_wrap.h5", "70000", "[-32768, 32767]"]),
    ("info-negative-weights", ["data", "info", "{d}/negative_weights.h5"], ["negative_weights.h5", "7 negative weight", "--allow-negative-weights"]),
    ("info-wrong-shape", ["data", "info", "{d}/wrong_shape.h5"], ["wrong_shape.h5", "(N, 19, 4)", "(20, 7, 4)"]),
    ("info-nan", ["data", "info", "{d}/nan.h5"], ["nan.h5", "NaN"]),
    ("info-weight-group", ["data", "info", "{d}/weight_group.h5"], ["weight_group.h5", "Weight", "not a dataset"]),
    ("info-offline-dataset", ["data", "info", "{d}/offline_dataset.h5"], ["offline_dataset.h5", "Offline", "group"]),
    ("info-process-names", ["data", "info", "{d}/process_names.h5"], ["process_names.h5", "names", "JSON list"]),
    ("info-truncated", ["data", "info", "{d}/truncated.h5"], ["truncated.h5"]),
    ("info-not-hdf5", ["data", "info", "{d}/text.h5"], ["text.h5", "not an event file"]),
    ("plot-zero-events", ["data", "plot", "{d}/empty.h5", "--out", "{out}"], ["empty.h5", "0 events"]),
    ("plot-negative-weights", ["data", "plot", "{d}/negative_weights.h5", "--out", "{out}"], ["negative_weights.h5", "--allow-negative-weights"]),
    ("plot-complex", ["data", "plot", "{d}/complex.h5", "--out", "{out}"], ["complex.h5", "complex64"]),
    ("generate-yaml-list", ["data", "generate", "--config", "{d}/list.yaml", "--out", "{out}"], ["list.yaml", "mapping", "list"]),
    ("generate-bad-value", ["data", "generate", "--quick", "--config", "{d}/gen_bad.yaml", "--out", "{out}"], ["gen_bad.yaml", "seed", "-1"]),
    # l1ad train
    ("train-zero-events", ["train", "{d}/empty.h5", "--out", "{out}"], ["empty.h5", "0 events"]),
    ("train-npu-wrap", ["train", "{d}/npu_wrap.h5", "--out", "{out}"], ["npu_wrap.h5", "70000"]),
    ("train-arch-bogus", ["train", "{d}/zb.h5", "--arch", "transformer", "--out", "{out}"], ["--arch", "transformer", "'ae', 'vae'"]),
    ("train-arch-list", ["train", "{d}/zb.h5", "--arch", "{d}/list.yaml", "--out", "{out}"], ["list.yaml", "mapping"]),
    ("train-arch-n-inputs", ["train", "{d}/zb.h5", "--arch", "{d}/arch60.yaml", "--out", "{out}"], ["n_inputs=60", "zb.h5"]),
    ("train-epochs-negative", ["train", "{d}/zb.h5", "--epochs", "-3", "--out", "{out}"], ["epochs", "-3"]),
    ("train-max-events-zero", ["train", "{d}/zb.h5", "--max-events", "0", "--out", "{out}"], ["--max-events", "0"]),
    # l1ad rates
    ("rates-yaml-list", ["rates", "{d}/model_truncated", "{d}/zb.h5", "--config", "{d}/list.yaml", "--out", "{out}"], ["list.yaml", "mapping", "list"]),
    ("rates-config-typo", ["rates", "{d}/model_truncated", "{d}/zb.h5", "--config", "{d}/rates_typo.yaml", "--out", "{out}"], ["rates_typo.yaml", "target_rate_khz", "unknown key"]),
    ("rates-config-negative", ["rates", "{d}/model_truncated", "{d}/zb.h5", "--config", "{d}/rates_negative.yaml", "--out", "{out}"], ["rates_negative.yaml", "target_rates_khz", "positive"]),
    ("rates-bad-rates-option", ["rates", "{d}/model_truncated", "{d}/zb.h5", "--rates", "1,fast", "--out", "{out}"], ["'1,fast'", "kHz"]),
    ("rates-truncated-model-h5", ["rates", "{d}/model_truncated", "{d}/zb.h5", "--out", "{out}"], ["model_truncated/model.h5", "truncated"]),
    ("rates-truncated-model-pt", ["rates", "{d}/model_pt_truncated", "{d}/zb.h5", "--out", "{out}"], ["model_pt_truncated/model.pt", "truncated"]),
    ("rates-metadata-list", ["rates", "{d}/model_meta_list", "{d}/zb.h5", "--out", "{out}"], ["model_meta_list/metadata.json", "JSON object", "list"]),
    ("rates-arch-list", ["rates", "{d}/model_arch_list", "{d}/zb.h5", "--out", "{out}"], ["model_arch_list/arch.yaml"]),
    ("rates-zero-event-zb", ["rates", "{d}/model_truncated", "{d}/empty.h5", "--out", "{out}"], ["empty.h5", "0 events"]),
    ("rates-missing-signal", ["rates", "{d}/model_truncated", "{d}/zb.h5", "--signal", "{d}/absent.h5", "--out", "{out}"], ["absent.h5", "--signal"]),
    ("rates-complex-signal", ["rates", "{d}/model_truncated", "{d}/zb.h5", "--signal", "{d}/complex.h5", "--out", "{out}"], ["complex.h5", "complex64"]),
    # l1ad score
    ("score-qmodel-json-list", ["score", "{d}/qmodel_list.json", "{d}/zb.h5", "--out", "{out}"], ["qmodel_list.json", "JSON list"]),
    ("score-qmodel-broken-json", ["score", "{d}/qmodel_broken.json", "{d}/zb.h5", "--out", "{out}"], ["qmodel_broken.json", "not valid JSON"]),
    ("score-qmodel-schema", ["score", "{d}/qmodel_schema.json", "{d}/zb.h5", "--out", "{out}"], ["qmodel_schema.json", "schema", "something/else"]),
    ("score-zero-events", ["score", "{d}/qmodel.json", "{d}/zb.h5", "{d}/empty.h5", "--out", "{out}"], ["empty.h5", "0 events"]),
    ("score-complex", ["score", "{d}/qmodel.json", "{d}/complex.h5", "--out", "{out}"], ["complex.h5", "complex64"]),
    ("score-npu-wrap", ["score", "{d}/qmodel.json", "{d}/npu_wrap.h5", "--out", "{out}", "--scheduler", "sync"], ["npu_wrap.h5", "70000"]),
    ("score-chunk-size-zero", ["score", "{d}/qmodel.json", "{d}/zb.h5", "--chunk-size", "0", "--out", "{out}"], ["--chunk-size", "0"]),
    # l1ad export / cosim
    ("export-verilog-qmodel-list", ["export", "verilog", "{d}/qmodel_list.json", "--out", "{out}"], ["qmodel_list.json", "JSON list"]),
    ("export-verilog-rates-list", ["export", "verilog", "{d}/qmodel.json", "--rates", "{d}/qmodel_list.json", "--out", "{out}"], ["qmodel_list.json", "not an l1ad rates report"]),
    ("export-hls-config-list", ["export", "hls", "{d}/model_truncated", "--config", "{d}/list.yaml", "--out", "{out}"], ["list.yaml", "mapping"]),
    ("export-hls-truncated-model", ["export", "hls", "{d}/model_truncated", "--out", "{out}"], ["model_truncated/model.h5"]),
    ("cosim-no-design", ["cosim", "{d}/rtl_empty", "--out", "{out}"], ["rtl_empty", "design.json"]),
    ("cosim-zero-event-data", ["cosim", "{d}/rtl_empty", "--data", "{d}/empty.h5", "--out", "{out}"], ["empty.h5", "0 events"]),
    # l1ad offline
    ("twosample-n-perm-zero", ["offline", "twosample", "{d}/zb.h5", "{d}/signal.h5", "--n-perm", "0", "--out", "{out}"], ["--n-perm", "0", ">=1"]),
    ("twosample-zero-events", ["offline", "twosample", "{d}/empty.h5", "{d}/zb.h5", "--out", "{out}"], ["empty.h5", "0 events"]),
    ("twosample-unknown-test", ["offline", "twosample", "{d}/zb.h5", "{d}/signal.h5", "--tests", "ks,t-test", "--out", "{out}"], ["t-test", "known"]),
    ("twosample-missing-field", ["offline", "twosample", "{d}/zb.h5", "{d}/signal.h5", "--features", "mJJ", "--out", "{out}"], ["zb.h5", "mJJ"]),
    ("bumphunt-config-list", ["offline", "bumphunt", "{d}/zb.h5", "--config", "{d}/bumphunt_list.yaml", "--out", "{out}"], ["bumphunt_list.yaml", "bumphunt", "mapping"]),
    ("bumphunt-zero-events", ["offline", "bumphunt", "{d}/empty.h5", "--out", "{out}"], ["empty.h5", "0 events"]),
    ("bumphunt-negative-weights", ["offline", "bumphunt", "{d}/negative_weights.h5", "--out", "{out}"], ["negative_weights.h5", "negative weight"]),
    ("conformal-scores-not-npy", ["offline", "conformal", "--cal-scores", "{d}/scores_text.npy", "--test-scores", "{d}/scores.npy", "--covariate", "none", "--out", "{out}"], ["scores_text.npy", ".npy"]),
    ("conformal-scores-complex", ["offline", "conformal", "--cal-scores", "{d}/scores_complex.npy", "--test-scores", "{d}/scores.npy", "--covariate", "none", "--out", "{out}"], ["scores_complex.npy", "complex128"]),
    ("nplm-zero-events", ["offline", "nplm", "--reference", "{d}/empty.h5", "--data", "{d}/zb.h5", "--out", "{out}"], ["empty.h5", "0 events"]),
    ("cwola-zero-events", ["offline", "cwola", "--events", "{d}/empty.h5", "--out", "{out}"], ["empty.h5", "0 events"]),
    ("cathode-zero-events", ["offline", "cathode", "--background", "{d}/empty.h5", "--signal", "{d}/signal.h5", "--out", "{out}"], ["empty.h5", "0 events"]),
    # l1ad run: every configuration problem before any work
    ("run-only-bogus", ["run", "--quick", "--only", "bogus", "--out", "{out}"], ["--only", "bogus", "data, train, firmware", "offline"]),
    ("run-from-bogus", ["run", "--quick", "--from", "trainn", "--out", "{out}"], ["--from", "trainn", "train"]),
    ("run-frontends-empty", ["run", "--config", "{d}/frontends_empty.yaml", "--out", "{out}"], ["frontends_empty.yaml", "frontends is empty"]),
    ("run-deploy-untrained", ["run", "--config", "{d}/deploy_untrained.yaml", "--out", "{out}"], ["deploy_untrained.yaml", "deploy", "brevitas"]),
    ("run-bad-edges", ["run", "--config", "{d}/bad_edges.yaml", "--out", "{out}"], ["bad_edges.yaml", "mjj_edges_gev", "lo < hi"]),
    ("run-yaml-list", ["run", "--config", "{d}/list.yaml", "--out", "{out}"], ["list.yaml", "mapping", "list"]),
    ("run-unknown-key", ["run", "--config", "{d}/unknown_key.yaml", "--out", "{out}"], ["unknown_key.yaml", "modles", "unknown key"]),
    ("run-bad-yaml", ["run", "--config", "{d}/bad_yaml.yaml", "--out", "{out}"], ["bad_yaml.yaml", "not valid YAML"]),
]


def _invoke(argv: list[str], capsys) -> tuple[int | None, str, str, BaseException | None]:
    try:
        rc = main(argv)
        exc = None
    except BaseException as e:  # noqa: BLE001 - an escaping exception is what the campaign looks for
        rc, exc = None, e
    cap = capsys.readouterr()
    return rc, cap.out, cap.err, exc


@pytest.mark.parametrize("argv,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clean_line(argv, needles, inputs, tmp_path, capsys, campaign):
    out = tmp_path / "out"
    args = [a.format(d=inputs, out=out) for a in argv]
    before = _snapshot(inputs)
    rc, stdout, stderr, exc = _invoke(args, capsys)
    if os.environ.get("L1AD_SHOW_ERRORS"):
        print(f"\n{' '.join(argv)}\n  -> {stderr.strip()}")
    campaign["cases"] += 1
    if exc is not None:
        campaign["tracebacks"] += 1
        raise AssertionError(f"traceback instead of a clean error: {type(exc).__name__}: {exc}") from exc
    if rc == 0:
        campaign["silent results"] += 1
    leftovers = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    if out.exists():
        campaign["partial outputs"] += 1
    assert rc == 2, (rc, stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for n in needles:
        assert n.replace("{d}", str(inputs)) in lines[0], (n, lines[0])
    assert "Traceback" not in stderr + stdout
    assert not out.exists(), f"partial output left: {out} {leftovers}"
    assert _snapshot(inputs) == before, "a user input file changed"
    campaign["clean errors"] += 1


# ---------------------------------------------------------------------------------------------- full disk
def test_full_disk_during_hdf5_write_is_one_named_error(inputs, tmp_path, capsys, monkeypatch, campaign):
    """ENOSPC half-way through writing the scores file: one line naming it, no partial or temporary file."""
    import l1ad.trigger.io as io_mod

    real_open = open

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(io_mod, "open", lambda p, mode="r", *a, **k: FullDisk(real_open(p, mode, *a, **k)), raising=False)
    out = tmp_path / "scores"
    rc, _, stderr, exc = _invoke(["score", str(inputs / "qmodel.json"), str(inputs / "zb.h5"), "--out", str(out),
                                  "--scheduler", "sync"], capsys)
    campaign["cases"] += 1
    assert exc is None, exc
    assert rc == 2 and stderr.count("\n") == 1
    assert f"{out / 'zb_scores.h5'}: cannot write (No space left on device); nothing was written" in stderr
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert left == [], left  # neither the HDF5 file nor its temporary sibling
    campaign["clean errors"] += 1


def test_full_disk_event_file_write(tmp_path, monkeypatch):
    import l1ad.trigger.io as io_mod
    from l1ad.trigger.errors import UserFileError

    def full(p, mode="r", *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io_mod, "open", full, raising=False)
    with pytest.raises(UserFileError, match="x.h5: cannot write .No space left on device"):
        write_events(tmp_path / "x.h5", toy_events(50, seed=1))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- what is allowed
def test_negative_weights_are_accepted_on_request(inputs, capsys):
    rc = main(["data", "info", str(inputs / "negative_weights.h5"), "--json", "--allow-negative-weights"])
    d = json.loads(capsys.readouterr().out)
    w = np.where(np.arange(20) % 3 == 0, -0.5, 1.0)
    assert rc == 0 and d["n_events"] == 20
    assert d["negative_weight_events"] == 7 and d["negative_weight_sum"] == pytest.approx(-3.5)
    assert d["weight_sum"] == pytest.approx(w.sum())


def test_negative_weight_plots_on_request(inputs, tmp_path, capsys):
    rc = main(["data", "plot", str(inputs / "negative_weights.h5"), "--out", str(tmp_path / "p"),
               "--allow-negative-weights"])
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["eta.png", "mjj.png", "multiplicity.png", "pt.png", "weights.png"]


def test_bug_keeps_its_traceback(monkeypatch):
    """A bare ValueError from our own code is a bug, not a user error: main re-raises it."""
    import l1ad.trigger.io as io_mod

    def broken(*a, **k):
        raise ValueError("internal inconsistency")

    monkeypatch.setattr(io_mod, "describe", broken)
    with pytest.raises(ValueError, match="internal inconsistency"):
        main(["data", "info", "whatever.h5"])


# ---------------------------------------------------------------------------------------------- lock, killed runs
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from l1ad.stages import Stage, run_stages

    def slow(ctx, work):
        (work / "half.txt").write_text("started")
        print("in-stage", flush=True)
        time.sleep(120)
        return {}

    run_stages([Stage("data", slow, lambda c: 0)], {}, Path(sys.argv[1]), log=lambda s: None)
""")


def _start_holder(out: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert p.stdout.readline().strip() == "in-stage"  # the lock is held and the stage's temp folder exists
    return p


def test_second_run_into_the_same_folder_is_refused_then_a_dead_lock_is_taken_over(tmp_path, capsys, campaign):
    out = tmp_path / "out"
    holder = _start_holder(out)
    try:
        rc, _, stderr, exc = _invoke(["run", "--quick", "--only", "offline", "--out", str(out)], capsys)
        campaign["cases"] += 1
        assert exc is None, exc
        assert rc == 2 and stderr.count("\n") == 1
        assert f"{out} is in use by another l1ad run (pid {holder.pid}" in stderr
        campaign["clean errors"] += 1
        assert (out / ".l1ad.lock").is_file() and [p for p in out.iterdir() if p.name.startswith(".data.")]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the killed run left its lock and its temporary stage folder: the next run takes both over
    stale = [p for p in out.iterdir() if p.name.startswith(".data.") and p.name.endswith(".tmp")]
    assert stale and json.loads((out / ".l1ad.lock").read_text())["pid"] == holder.pid
    from l1ad.stages import Stage, run_stages

    logs: list[str] = []
    run_stages([Stage("data", lambda ctx, w: (w / "x.txt").write_text("ok") and {}, lambda c: 0)], {}, out, log=logs.append)
    assert sorted(p.name for p in out.iterdir()) == ["data"]  # stale temp folder and lock gone, the stage done
    assert (out / "data" / "x.txt").read_text() == "ok"
    assert any("left by an interrupted run" in s for s in logs)


def test_lock_names_its_holder_and_is_released(tmp_path):
    from l1ad.errors import OutputLockedError
    from l1ad.stages import output_lock

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".l1ad.lock").write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                         "started": "earlier"}))
        with pytest.raises(OutputLockedError, match=f"pid {sleeper.pid}"):
            with output_lock(tmp_path):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with output_lock(tmp_path) as lock:  # its owner is dead now: taken over
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with output_lock(tmp_path):  # re-entrant in one process
            pass
        assert lock.is_file()
    assert not lock.exists()
