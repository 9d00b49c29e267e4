"""The peers venv `.venv-peers`: peer tools that cannot share the main venv (the `nplm` package needs Keras 3,
QKeras pins Keras 2; da4ml needs numpy >= 2, the main stack pins 1.26). Created by the bench scripts on first
use, never by the tests; one package list for every bench, so the venv is built once."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_VENV = ROOT / ".venv-peers"
PEER_PACKAGES = ["tensorflow-cpu==2.21.0", "nplm==0.0.6", "da4ml==0.6.0", "matplotlib", "scipy"]


def ensure_peer_venv(log=print) -> Path:
    """The peers venv's python, creating the venv or installing missing packages when the stamp is stale."""
    py = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".peers-ok"
    wanted = " ".join(PEER_PACKAGES) + "\n"
    if py.exists() and stamp.exists() and stamp.read_text() == wanted:
        return py
    log(f"preparing {PEER_VENV} ({' '.join(PEER_PACKAGES)}) ...")
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "-U", "pip"], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    stamp.write_text(wanted)
    return py
