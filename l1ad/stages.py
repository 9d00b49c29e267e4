"""A small stage runner: each stage is cached by a content hash of its config and of its inputs' keys,
writes into a temporary folder renamed into place when it finishes (so an interrupted run resumes
without losing finished stages), and records its summary and timing in `stage.json`."""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from l1ad.trigger.atomic import atomic_path, content_hash, write_json_atomic

STAGE_FILE = "stage.json"


@dataclass(frozen=True)
class Stage:
    """One pipeline step. `run(ctx, workdir)` writes files into `workdir` and returns a JSON-able summary.

    `config` picks the slice of the configuration this stage depends on; `needs` names earlier stages.
    """

    name: str
    run: Callable[["StageContext", Path], dict]
    config: Callable[[Any], Any]
    needs: tuple[str, ...] = ()
    version: str = "1"


@dataclass
class StageContext:
    """What a running stage sees: the configuration, the output root, and earlier stages' folders/summaries."""

    config: Any
    out_dir: Path
    dirs: dict[str, Path] = field(default_factory=dict)
    summaries: dict[str, dict] = field(default_factory=dict)
    log: Callable[[str], None] = print

    def path(self, stage: str) -> Path:
        """The finished folder of an earlier stage."""
        if stage not in self.dirs:
            raise KeyError(f"stage {stage!r} has not run (available: {sorted(self.dirs)})")
        return self.dirs[stage]


@dataclass(frozen=True)
class StageRecord:
    name: str
    key: str
    cached: bool
    seconds: float
    summary: dict


def stage_key(stage: Stage, config: Any, input_keys: Mapping[str, str]) -> str:
    """The content hash that decides whether a finished stage can be reused."""
    cfg = stage.config(config)
    if hasattr(cfg, "model_dump"):
        cfg = cfg.model_dump(mode="json")
    return content_hash({"stage": stage.name, "version": stage.version, "config": cfg, "inputs": dict(input_keys)})


def run_stages(
    stages: list[Stage],
    config: Any,
    out_dir: Path,
    *,
    from_stage: str | None = None,
    only: set[str] | None = None,
    log: Callable[[str], None] = print,
) -> list[StageRecord]:
    """Run `stages` in order into `out_dir/<name>/`, reusing finished stages whose key is unchanged.

    `from_stage` forces that stage and every later one to re-run. `only` restricts the run to those stages
    (their inputs must already be finished).
    """
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate stage names in {names}")
    if from_stage is not None and from_stage not in names:
        raise ValueError(f"--from: unknown stage {from_stage!r}; stages are {names}")
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(config=config, out_dir=out_dir, log=log)
    keys: dict[str, str] = {}
    records: list[StageRecord] = []
    forced = False
    for stage in stages:
        forced = forced or stage.name == from_stage
        missing = [n for n in stage.needs if n not in keys]
        if missing:
            raise ValueError(f"stage {stage.name!r} needs {missing}, which come later or are absent")
        key = stage_key(stage, config, {n: keys[n] for n in stage.needs})
        keys[stage.name] = key
        final = out_dir / stage.name
        done = _read_done(final)
        if done is not None and done.get("key") == key and not forced:
            ctx.dirs[stage.name] = final
            ctx.summaries[stage.name] = done["summary"]
            records.append(StageRecord(stage.name, key, True, float(done.get("seconds", 0.0)), done["summary"]))
            log(f"stage {stage.name}: cached ({key})")
            continue
        if only is not None and stage.name not in only:
            if done is None:
                raise ValueError(f"stage {stage.name!r} is needed but has not finished; run without --only")
            ctx.dirs[stage.name] = final
            ctx.summaries[stage.name] = done["summary"]
            records.append(StageRecord(stage.name, done["key"], True, float(done.get("seconds", 0.0)), done["summary"]))
            continue
        log(f"stage {stage.name}: running")
        t0 = time.perf_counter()
        with atomic_path(final) as tmp:
            tmp.mkdir()
            summary = stage.run(ctx, tmp)
            seconds = time.perf_counter() - t0
            write_json_atomic(tmp / STAGE_FILE, {"stage": stage.name, "key": key, "seconds": seconds, "summary": summary})
        ctx.dirs[stage.name] = final
        ctx.summaries[stage.name] = summary
        records.append(StageRecord(stage.name, key, False, seconds, summary))
        log(f"stage {stage.name}: done in {seconds:.1f} s")
    return records


def _read_done(folder: Path) -> dict | None:
    f = folder / STAGE_FILE
    if not f.is_file():
        if folder.exists():  # a folder without its record is not a finished stage
            shutil.rmtree(folder, ignore_errors=True)
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError:
        return None
