"""`l1ad train` end to end on a small event file, and the latent-dimension scan."""
from __future__ import annotations

import json

import numpy as np

from l1ad.cli import main
from l1ad.trigger.io import write_events
from l1ad.trigger.modeldir import load_model
from l1ad.trigger.toy import toy_events
from l1ad.trigger.train import TrainingConfig, find_elbow, latent_scan


def test_l1ad_train_writes_a_loadable_model(tmp_path, capsys):
    data = write_events(tmp_path / "zb.h5", toy_events(1200, seed=4))
    out = tmp_path / "model"
    rc = main(["train", str(data), "--frontend", "brevitas", "--arch", "ae", "--out", str(out), "--epochs", "2",
               "--seed", "1", "--no-progress"])
    assert rc == 0
    assert "model directory" in capsys.readouterr().out
    model = load_model(out)
    assert model.frontend == "brevitas" and model.metadata["training_config"]["epochs"] == 2
    assert (out / "training.png").stat().st_size > 0
    s = model.score(toy_events(50, seed=5))
    assert s.shape == (50,) and np.isfinite(s).all()


def test_l1ad_train_reports_a_mismatched_config_in_one_line(tmp_path, capsys):
    data = write_events(tmp_path / "zb.h5", toy_events(200, seed=4))
    arch = tmp_path / "a.yaml"
    arch.write_text("kind: ae\nn_inputs: 60\n")
    rc = main(["train", str(data), "--frontend", "brevitas", "--arch", str(arch), "--out", str(tmp_path / "m"), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "n_inputs=60" in err and "Traceback" not in err


def test_latent_scan_plots_validation_loss_against_latent_size(tmp_path):
    cfg = TrainingConfig(epochs=2, batch_size=256, progress=False, plot=False)
    result = latent_scan("brevitas", "ae", toy_events(1000, seed=6), cfg, latents=[2, 4, 8], out_dir=tmp_path)
    assert [p["latent"] for p in result["points"]] == [2, 4, 8]
    assert result["elbow"] in (2, 4, 8)
    assert json.loads((tmp_path / "latent_scan.json").read_text())["points"] == result["points"]
    assert (tmp_path / "latent_scan.png").stat().st_size > 0
    assert load_model(tmp_path / "latent_4").arch.latent == 4


def test_find_elbow():
    assert find_elbow([2, 4, 8, 16, 32], [1.0, 0.4, 0.15, 0.12, 0.11]) == 8
    assert find_elbow([4, 8], [0.3, 0.2]) == 8
