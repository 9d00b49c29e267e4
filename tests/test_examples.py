"""The notebooks under examples/ run from top to bottom (nbclient), and are committed without outputs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def _stream_text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


def test_both_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} >= {"byo_model_to_rtl.ipynb", "offline_on_your_arrays.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cells"
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs; clear them before committing"


def _execute(path: Path, cwd: Path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


@pytest.mark.slow
def test_offline_notebook_runs(tmp_path):
    nb = _execute(EXAMPLES / "offline_on_your_arrays.ipynb", tmp_path)
    text = _stream_text(nb)
    assert "most significant window" in text and "permutation p" in text and "t_obs" in text
    assert not list(tmp_path.iterdir())  # figures go to a temporary folder, not next to the notebook


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator not installed (make test installs it)")
def test_byo_notebook_runs_bit_exact(tmp_path):
    pytest.importorskip("qkeras")
    nb = _execute(EXAMPLES / "byo_model_to_rtl.ipynb", tmp_path)
    text = _stream_text(nb)
    assert "emulator vs model.predict: 0 mismatches" in text
    assert ", 0 mismatches, measured latency" in text  # the Verilator co-simulation, every output bit
