"""`l1ad offline cwola / nplm` end to end on small toys."""
import json

from l1ad.cli import main


def test_cli_nplm_toy(tmp_path):
    rc = main(["offline", "nplm", "--scheduler", "sync", "--n-toys", "4", "--n-bkg", "20000", "--s-over-b", "0.05",
               "--out", str(tmp_path)])
    assert rc == 0
    s = json.loads((tmp_path / "nplm.json").read_text())
    assert len(s["t_toys"]) == 4 and s["t_obs"] > 0
    assert (tmp_path / "nplm_null.png").exists()


def test_cli_cwola_small(tmp_path):
    rc = main(["offline", "cwola", "--small", "--n-bkg", "40000", "--s-over-b", "0.05", "--out", str(tmp_path)])
    assert rc == 0
    s = json.loads((tmp_path / "cwola.json").read_text())
    assert s["n_sr"] > 0 and s["n_sb"] > 0


def test_cli_nplm_needs_both_files(tmp_path, capsys):
    f = tmp_path / "x.h5"
    f.write_text("not hdf5")
    rc = main(["offline", "nplm", "--reference", str(f), "--out", str(tmp_path)])
    assert rc != 0
