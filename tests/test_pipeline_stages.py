"""The stage runner: content-hash caching, --from, resuming after a crash, atomic stage folders."""
from __future__ import annotations

import json

import pytest

from l1ad.stages import Stage, run_stages


def _stages(calls: list[str], fail_in: str | None = None):
    def make(name):
        def run(ctx, work):
            calls.append(name)
            if name == fail_in:
                (work / "partial.txt").write_text("half")
                raise RuntimeError("interrupted")
            prev = [ctx.summaries[n]["value"] for n in ("a", "b") if n in ctx.summaries and n != name]
            value = sum(prev) + len(name) + ctx.config[name]
            (work / "out.txt").write_text(str(value))
            return {"value": value}
        return run

    return [
        Stage("a", make("a"), lambda c: c["a"]),
        Stage("b", make("b"), lambda c: c["b"], needs=("a",)),
        Stage("c", make("c"), lambda c: c["c"], needs=("b",)),
    ]


def test_cache_and_invalidation(tmp_path):
    calls: list[str] = []
    cfg = {"a": 1, "b": 2, "c": 3}
    r1 = run_stages(_stages(calls), cfg, tmp_path, log=lambda s: None)
    assert calls == ["a", "b", "c"] and not any(r.cached for r in r1)
    run_stages(_stages(calls), cfg, tmp_path, log=lambda s: None)
    assert calls == ["a", "b", "c"]  # all cached
    run_stages(_stages(calls), {**cfg, "c": 4}, tmp_path, log=lambda s: None)
    assert calls[3:] == ["c"]  # only the stage whose config changed
    run_stages(_stages(calls), {**cfg, "a": 9, "c": 4}, tmp_path, log=lambda s: None)
    assert calls[4:] == ["a", "b", "c"]  # a change upstream propagates through the keys
    run_stages(_stages(calls), {**cfg, "a": 9, "c": 4}, tmp_path, from_stage="b", log=lambda s: None)
    assert calls[7:] == ["b", "c"]
    rec = json.loads((tmp_path / "c" / "stage.json").read_text())
    assert rec["summary"]["value"] == 28  # a = 1 + 9; b = 10 + 1 + 2; c = 10 + 13 + 1 + 4


def test_interrupted_run_resumes_without_partial_output(tmp_path):
    calls: list[str] = []
    cfg = {"a": 1, "b": 2, "c": 3}
    with pytest.raises(RuntimeError):
        run_stages(_stages(calls, fail_in="b"), cfg, tmp_path, log=lambda s: None)
    assert (tmp_path / "a" / "stage.json").exists()
    assert not (tmp_path / "b").exists()  # no half-written stage folder
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    run_stages(_stages(calls), cfg, tmp_path, log=lambda s: None)
    assert calls == ["a", "b", "b", "c"]  # a was not redone


def test_bad_from_stage(tmp_path):
    with pytest.raises(ValueError, match="unknown stage 'zz'"):
        run_stages(_stages([]), {"a": 1, "b": 2, "c": 3}, tmp_path, from_stage="zz")
