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


def test_cli_cathode_sic_on_event_files(tmp_path, capsys):
    """The SIC benchmark on event files (as the generator writes them), not the built-in toy; the injected signal
    keeps its own signal-region fraction (so the nominal S/B is the S/B in the SR)."""
    import json
    import re

    from l1ad.offline.dijet import signal_region_mask

    import numpy as np

    from l1ad.offline import lhco_toy
    from l1ad.trigger.io import write_events

    rng = np.random.default_rng(4)
    bkg = lhco_toy.sample_background(40_000, rng)
    sig = lhco_toy.sample_signal(3_000, rng)
    fb = write_events(tmp_path / "qcd_dijet.h5", bkg.to_batch())
    fs = write_events(tmp_path / "dijet_resonance.h5", sig.to_batch())
    out = tmp_path / "sic"
    rc = main(["offline", "cathode", "--background", str(fb), "--signal", str(fs), "--small", "--s-over-b", "0.02",
               "--methods", "supervised,cwola_bdt", "--out", str(out)])
    assert rc == 0
    n_sig, n_sr = map(int, re.search(r"(\d+) signal \((\d+) in SR\)", capsys.readouterr().out).groups())
    eff_s = signal_region_mask(sig.mjj).mean()
    assert n_sig > 20 and abs(n_sr - eff_s * n_sig) <= 1.5
    rows = {r["method"]: r for r in json.loads((out / "sic_table.json").read_text())["rows"]}
    assert set(rows) == {"supervised", "cwola_bdt"}
    assert rows["supervised"]["max_sic"] > 2.0  # a labelled classifier separates the toy signal well
    assert (out / "sic.png").stat().st_size > 0
    assert main(["offline", "cathode", "--background", str(fb), "--out", str(out)]) != 0  # --signal missing


def test_cwola_hunt_cli_global_p_from_toys(tmp_path):
    """--n-toys: the global p comes from retrained background-only searches over every window and cut; Sidak is
    printed beside it with its label."""
    import json

    from l1ad.cli import main

    rc = main(["offline", "cwola", "--hunt", "--small", "--n-bkg", "20000", "--efficiencies", "0.2,0.05", "--n-toys", "2",
               "--out", str(tmp_path)])
    assert rc in (0, None)
    s = json.loads((tmp_path / "search.json").read_text())
    assert s["n_toys"] == 2 and s["global_p_method"].startswith("toys") and s["n_tests"] > 2
    assert s["global_p"] in (1 / 3, 2 / 3, 1.0) and "Sidak" in s["global_p_sidak_note"]
