"""Chunked scoring of event files with the bit-exact emulator (l1ad.scoring, `l1ad score`): chunk order, every
scheduler and the CLI give exactly the whole-file emulation; bad input is a named error."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from l1ad.firmware import emulate
from l1ad.cli import main
from l1ad.scoring import chunk_ranges, score_file
from l1ad.sim.models import l1_autoencoder
from l1ad.trigger.events import EventDataError
from l1ad.trigger.io import write_events
from l1ad.trigger.l1units import hw_inputs
from l1ad.trigger.toy import toy_events


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("score")
    batch = toy_events(1_037, seed=5)
    path = write_events(d / "zb.h5", batch)
    q = l1_autoencoder((8, 4, 8), seed=2)
    ref = emulate(q, hw_inputs(batch.objects))
    # thresholds at score quantiles, so that every bit fires on some events and not on others
    thr = [int(np.quantile(ref.score_int, p)) for p in (0.5, 0.9, 0.99)]
    q = q.with_thresholds(thr)
    return q, path, batch, emulate(q, hw_inputs(batch.objects))


def test_chunk_ranges_cover_the_file_once():
    r = chunk_ranges(10, 3)
    assert r == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert chunk_ranges(0, 5) == []
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_ranges(10, 0)


@pytest.mark.parametrize("chunk", [1_037, 100, 7])
def test_sync_chunks_equal_whole_file_emulation(setup, chunk):
    q, path, batch, ref = setup
    res = score_file(q, path, chunk_size=chunk, scheduler="sync", progress=False)
    assert res.chunks == -(-len(batch) // chunk)
    np.testing.assert_array_equal(res.score_int, ref.score_int)
    np.testing.assert_array_equal(res.trigger, ref.trigger)
    np.testing.assert_array_equal(res.weight, batch.weight)
    assert 0 < res.trigger[:, 0].mean() < 1 and res.trigger[:, 2].sum() < res.trigger[:, 0].sum()


def test_dask_local_cluster_equals_sync(setup):
    from l1ad.offline.toys_dask import dask_client

    q, path, batch, ref = setup
    with dask_client(None, n_workers=2) as client:
        res = score_file(q, path, chunk_size=150, client=client, progress=False)
    assert res.chunks == 7
    np.testing.assert_array_equal(res.score_int, ref.score_int)
    np.testing.assert_array_equal(res.trigger, ref.trigger)
    w = batch.weight
    np.testing.assert_allclose(res.fired_fraction(), (w[:, None] * ref.trigger).sum(0) / w.sum(), rtol=1e-12)


def test_bad_inputs_are_named(setup, tmp_path):
    q, path, _, _ = setup
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(EventDataError, match="broken.h5"):
        score_file(q, bad, scheduler="sync")
    d = q.to_dict()
    d["score"], d["thresholds"] = None, []
    from l1ad.firmware import QModel

    with pytest.raises(ValueError, match="no score block"):
        score_file(QModel.from_dict(d), path, scheduler="sync")
    with pytest.raises(TypeError, match="QModel"):
        score_file({"not": "a model"}, path)


def test_cli_writes_scores_atomically(setup, tmp_path):
    q, path, batch, ref = setup
    qpath = tmp_path / "qmodel.json"
    q.save(qpath)
    out = tmp_path / "out"
    assert main(["score", str(qpath), str(path), "--out", str(out), "--chunk-size", "300", "--scheduler", "sync"]) == 0
    with h5py.File(out / "zb_scores.h5") as f:
        np.testing.assert_array_equal(f["score_int"][:], ref.score_int)
        np.testing.assert_array_equal(f["trigger"][:], ref.trigger)
        assert list(f.attrs["thresholds"]) == list(q.thresholds)
    summary = json.loads((out / "scores.json").read_text())
    assert summary["files"][0]["events"] == len(batch) and summary["files"][0]["chunks"] == 4
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left behind
    assert main(["score", str(qpath), str(path), "--out", str(out), "--chunk-size", "0"]) != 0
