"""Typed configuration: defaults, YAML overrides, --quick merge, and errors that name key, value and what is allowed."""
from __future__ import annotations

import subprocess
import sys

import pytest

from l1ad.config import ConfigError, L1adConfig, deep_merge, load_config


def test_default_and_quick():
    d = load_config()
    q = load_config(quick=True)
    assert d == L1adConfig()  # configs/default.yaml agrees with the typed defaults
    assert q.data.sizes["minbias"] < d.data.size("minbias")
    assert q.models.arch == d.models.arch  # quick shrinks samples and epochs, never the architecture
    assert q.hash() != d.hash()
    assert d.rates.target_rates_khz == (1.0, 5.0, 10.0, 100.0)


def test_user_yaml_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("rates:\n  target_rates_khz: [2, 20]\nmodels:\n  frontends: [brevitas]\n  deploy: brevitas\n")
    c = load_config(f)
    assert c.rates.target_rates_khz == (2.0, 20.0)
    assert c.models.frontends == ("brevitas",)
    assert c.data == L1adConfig().data  # untouched sections keep their defaults


@pytest.mark.parametrize("yaml_text,needles", [
    ("modles:\n  frontends: [qkeras]\n", ["modles", "unknown key"]),
    ("models:\n  frontends: [qkeras, tflite]\n", ["models.frontends.1", "'tflite'", "'qkeras' or 'brevitas'"]),
    ("rates:\n  target_rates_khz: [0]\n", ["rates.target_rates_khz", "positive"]),
    ("rates:\n  target_rates_khz: [50000]\n", ["zero-bias rate"]),
    ("data:\n  signals: [Zprime]\n", ["unknown signal", "Zprime"]),
    ("firmware:\n  cosim_vectors: -5\n", ["firmware.cosim_vectors", "-5", "greater than or equal to 0"]),
])
def test_bad_values_are_named(tmp_path, yaml_text, needles):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    assert str(f) in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_bad_yaml_files(tmp_path):
    (tmp_path / "a.yaml").write_text("rates: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "b.yaml")
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "absent.yaml")


def test_deep_merge_does_not_mutate():
    a = {"x": {"y": 1, "z": [1]}, "k": 0}
    b = {"x": {"y": 2}}
    m = deep_merge(a, b)
    assert m == {"x": {"y": 2, "z": [1]}, "k": 0} and a["x"]["y"] == 1


def test_cli_reports_bad_config_without_traceback(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("seed: -3\n")
    r = subprocess.run([sys.executable, "-m", "l1ad.cli", "run", "--config", str(f), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "seed" in r.stderr and "-3" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()  # nothing written


def test_cli_help_lists_every_stage():
    r = subprocess.run([sys.executable, "-m", "l1ad.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for stage in ("data", "train", "rates", "export", "cosim", "offline", "run"):
        assert f"  {stage} " in r.stdout


@pytest.mark.parametrize("yaml_text,needles", [
    ("models:\n  frontends: []\n", ["models", "frontends is empty"]),
    ("models:\n  frontends: [qkeras, qkeras]\n", ["twice"]),
    ("models:\n  frontends: [brevitas]\n", ["deploy = 'qkeras' is not trained", "['brevitas']"]),
    ("offline:\n  resonance_window_gev: [4000, 3000]\n", ["offline.resonance_window_gev", "lo < hi"]),
    ("offline:\n  mjj_dijet_edges_gev: [2800, 6000, 0]\n", ["offline.mjj_dijet_edges_gev", "bins >= 1"]),
    ("offline:\n  trigger: or\ncicada:\n  enabled: false\n", ["offline.trigger = 'or'", "cicada.enabled is false"]),
])
def test_inconsistent_sections_fail_at_load(tmp_path, yaml_text, needles):
    """Problems that used to surface minutes into a run are refused when the file is loaded."""
    f = tmp_path / "c.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        load_config(f)
    for n in needles:
        assert n in str(e.value), (n, str(e.value))


def test_read_mapping_names_the_file_and_what_it_holds(tmp_path):
    from l1ad.config import read_mapping

    (tmp_path / "r.yaml").write_text("- 1\n- 5\n")
    with pytest.raises(ConfigError, match=r"r.yaml \(RatesConfig fields\): the top level must be a mapping.*got a list"):
        read_mapping(tmp_path / "r.yaml", "RatesConfig fields")
    (tmp_path / "ok.yaml").write_text("cl: 0.9\n")
    assert read_mapping(tmp_path / "ok.yaml", "RatesConfig fields") == {"cl": 0.9}
