"""A small stage runner: each stage is cached by a content hash of its config and of its inputs' keys,
writes into a temporary folder renamed into place when it finishes (so an interrupted run resumes
without losing finished stages), and records its summary and timing in `stage.json`."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from l1ad.trigger.atomic import atomic_path, content_hash, write_json_atomic
from l1ad.trigger.errors import OutputLockedError, UserInputError

STAGE_FILE = "stage.json"
#: in the output folder while a run writes there: {"pid", "host", "started"} of the owner
LOCK_FILE = ".l1ad.lock"


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


def check_selection(names: list[str], from_stage: str | None = None, only: set[str] | None = None) -> None:
    """Refuse an unknown --from / --only stage name (listing the valid ones) before any work starts."""
    if from_stage is not None and from_stage not in names:
        raise UserInputError(f"--from: unknown stage {from_stage!r}; stages are {', '.join(names)}")
    if only is not None:
        bad = sorted(set(only) - set(names))
        if bad or not only:
            raise UserInputError(f"--only: unknown stage(s) {bad or ['(none given)']}; stages are {', '.join(names)}")


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
    (their inputs must already be finished). The output folder is locked for the run (`output_lock`), and
    temporary folders left by a killed run are removed first.
    """
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate stage names in {names}")
    check_selection(names, from_stage, only)
    for stage in stages:
        missing = [n for n in stage.needs if n not in names[: names.index(stage.name)]]
        if missing:
            raise ValueError(f"stage {stage.name!r} needs {missing}, which come later or are absent")
    with output_lock(out_dir):
        for p in clean_stale_temps(out_dir, names):
            log(f"removed {p.name}, left by an interrupted run")
        if only is not None:
            absent = [n for n in names if n not in only and not (out_dir / n / STAGE_FILE).is_file()]
            if absent:
                raise UserInputError(f"--only {','.join(sorted(only))}: stage(s) {absent} have not finished in "
                                     f"{out_dir}; run them first (or run without --only)")
        return _run_locked(stages, config, out_dir, from_stage, only, log)


def _run_locked(stages: list[Stage], config: Any, out_dir: Path, from_stage: str | None, only: set[str] | None,
                log: Callable[[str], None]) -> list[StageRecord]:
    ctx = StageContext(config=config, out_dir=out_dir, log=log)
    keys: dict[str, str] = {}
    records: list[StageRecord] = []
    forced = False
    for stage in stages:
        forced = forced or stage.name == from_stage
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
                raise UserInputError(f"stage {stage.name!r} is needed but has not finished; run without --only")
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


# ---------------------------------------------------------------------------------------------- output folder
@contextlib.contextmanager
def output_lock(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold `out_dir/.l1ad.lock` (created atomically, holding this process's pid) while the block runs.

    A lock of another live process is an OutputLockedError naming it; a lock left by a dead process (killed
    run) is taken over. Re-entrant within one process (the nested holder does not release it).
    """
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = out_dir / LOCK_FILE
    owned = False
    for _ in range(5):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None and owner.get("host") == socket.gethostname() and owner.get("pid") == os.getpid():
                break  # this process holds it already
            if owner is not None and _owner_alive(owner):
                raise OutputLockedError(
                    f"{out_dir} is in use by another l1ad run (pid {owner.get('pid')} on {owner.get('host')}, since "
                    f"{owner.get('started')}); wait for it, use another --out, or delete {lock} if that run is gone"
                ) from None
            with contextlib.suppress(FileNotFoundError):  # stale: its owner is dead
                lock.unlink()
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, f)
        owned = True
        break
    else:
        raise OutputLockedError(f"{out_dir}: cannot take the lock {lock} (another run keeps taking it)")
    try:
        yield lock
    finally:
        if owned:
            owner = _lock_owner(lock)
            if owner is not None and owner.get("pid") == os.getpid():
                lock.unlink(missing_ok=True)
            if created:  # a run that failed before writing anything leaves no empty folder behind
                with contextlib.suppress(OSError):
                    out_dir.rmdir()


def _lock_owner(lock: Path) -> dict | None:
    """The lock's content, or None when it is gone or unreadable (a half-written lock counts as stale)."""
    try:
        d = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and isinstance(d.get("pid"), int) else None


def _owner_alive(owner: dict) -> bool:
    """Whether the lock's owner still runs (a lock from another host is assumed alive)."""
    if owner.get("host") != socket.gethostname():
        return True
    pid = owner["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed but not yet reaped process is a zombie: dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def clean_stale_temps(out_dir: Path, names: list[str]) -> list[Path]:
    """Remove the temporary folders/files a killed run left in `out_dir` (`.STAGE.*.tmp`, `.STAGE.old-PID`,
    `.summary.json.*.tmp`); call only while holding the output lock. Returns what was removed."""
    removed = []
    prefixes = tuple(f".{n}." for n in (*names, "summary.json", "report.html"))
    for p in sorted(out_dir.iterdir()) if out_dir.is_dir() else []:
        if p.name.startswith(prefixes) and (p.name.endswith(".tmp") or ".old-" in p.name):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


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
