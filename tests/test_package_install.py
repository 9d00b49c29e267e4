"""The package as a user gets it: a wheel built from this tree, installed with its declared dependencies into a
fresh virtual environment, then smoke-tested from a folder outside the repository (so the source tree cannot be
imported by accident). Slow: the dependency install takes minutes (torch first, alone: see README)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"  # first and alone: the CPU build (a looser pin pulls CUDA wheels)


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.mark.slow
def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path):
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)], tmp_path, 600)
    (wheel,) = wheels.glob("l1ad-*.whl")
    times["wheel"] = time.perf_counter() - t0

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, 300)
    py, l1ad = venv / "bin" / "python", venv / "bin" / "l1ad"
    t1 = time.perf_counter()
    _run([str(py), "-m", "pip", "install", "-q", TORCH], tmp_path, 900)
    _run([str(py), "-m", "pip", "install", "-q", str(wheel)], tmp_path, 1800)
    times["install"] = time.perf_counter() - t1

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    t2 = time.perf_counter()
    r = _run([str(l1ad), "--help"], outside, 300)
    for stage in ("data", "train", "rates", "export", "score", "cosim", "offline", "run"):
        assert stage in r.stdout
    code = ("import l1ad, l1ad.firmware, l1ad.trigger, l1ad.sim, l1ad.offline, l1ad.cli\n"
            "from l1ad.config import load_config\n"
            "c = load_config(quick=True)\n"
            "assert c.data.sizes['minbias'] < load_config().data.size('minbias')\n"
            "import importlib.util as u\n"
            "assert all(u.find_spec(n) is None for n in ('trigger', 'firmware', 'sim', 'offline'))\n"
            "print(l1ad.__file__)")
    r = _run([str(py), "-c", code], outside, 600)
    assert Path(r.stdout.strip()).is_relative_to(venv), r.stdout  # the installed copy, not the source tree
    bad = subprocess.run([str(l1ad), "run", "--quick", "--only", "bogus", "--out", str(outside / "o")], cwd=outside,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--only: unknown stage(s) ['bogus']" in bad.stderr and "Traceback" not in bad.stderr
    times["smoke"] = time.perf_counter() - t2
    print("\npackage install test: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
