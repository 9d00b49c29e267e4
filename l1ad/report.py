"""One self-contained HTML page (plots embedded) from the pipeline's summary: a header (date, commit, config
hash), every check's flag at a glance, a table of contents, then rates, efficiencies, firmware resources and
latency, bit-exact checks, offline results and discovery reach.

Flags and table cells carry a level: ``ok`` (green), ``warn`` (amber: an estimate to read with care, with the
number needed to do better) or ``bad`` (red: a target missed, a budget exceeded, a check failed)."""
from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

from l1ad.trigger.atomic import write_text_atomic

Level = Literal["ok", "warn", "bad"]
_ORDER = {"bad": 0, "warn": 1, "ok": 2}
_MARK = {"ok": "✔", "warn": "⚠", "bad": "✘"}

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em;border-bottom:2px solid #444;padding-bottom:.2em;margin-bottom:.3em}
h2{font-size:1.25em;margin-top:1.6em;color:#1f4e79}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
caption{text-align:left;font-weight:600;padding:.2em 0}
th,td{border:1px solid #bbb;padding:.25em .6em;text-align:right}
th{background:#eef2f7} td:first-child,th:first-child{text-align:left}
td.ok{color:#0a7d28;font-weight:600;background:#eef9f1}td.bad{color:#b00020;font-weight:600;background:#fdecee}
td.warn{color:#8a5300;background:#fff4e0}
.flag{border-left:5px solid;padding:.35em .7em;margin:.35em 0;font-size:.92em}
.flag.ok{border-color:#0a7d28;background:#eef9f1}.flag.bad{border-color:#b00020;background:#fdecee}
.flag.warn{border-color:#c77700;background:#fff4e0}
.flag .lvl{font-weight:700;margin-right:.4em}.flag.ok .lvl{color:#0a7d28}.flag.bad .lvl{color:#b00020}
.flag.warn .lvl{color:#8a5300}
.meta td,.meta th{border:none;padding:.05em .8em .05em 0;font-size:.9em;text-align:left;background:none}
.toc{columns:2;font-size:.95em}.toc a,.glance a{color:#1f4e79}
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs figure{margin:0;width:570px}
.figs img{width:100%;border:1px solid #ddd}.figs figcaption{font-size:.8em;color:#555}
.note{color:#555;font-size:.9em}
"""


@dataclass(frozen=True)
class Flag:
    """One verdict: its level and a sentence giving the reason and, where it helps, the number needed."""

    level: Level
    text: str


@dataclass(frozen=True)
class Cell:
    """A table cell drawn in its level's colour (with the reason as a tooltip)."""

    value: Any
    level: Level | None = None
    reason: str = ""


@dataclass
class Section:
    """A report section: a title, flags, free paragraphs (HTML), tables (caption, header, rows) and figures."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, Sequence[str], Sequence[Sequence[Any]]]] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "section"


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _cell(v: Any) -> str:
    if isinstance(v, Cell):
        cls = f" class='{v.level}'" if v.level else ""
        tip = f" title='{html.escape(v.reason, quote=True)}'" if v.reason else ""
        mark = f"{_MARK[v.level]} " if v.level in ("bad", "warn") else ""
        return f"<td{cls}{tip}>{mark}{html.escape(_text(v.value))}</td>"
    return f"<td>{html.escape(_text(v))}</td>"


def _table(caption: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<tr>{head}</tr>{body}</table>"


def _figure(caption: str, png: Path) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _flag(f: Flag, anchor: str | None = None) -> str:
    where = f" <a href='#{anchor}'>(details)</a>" if anchor else ""
    return f"<div class='flag {f.level}'><span class='lvl'>{_MARK[f.level]}</span>{html.escape(f.text)}{where}</div>"


def render(title: str, sections: Sequence[Section], *, subtitle: str = "", meta: Mapping[str, str] | None = None) -> str:
    """The whole page as one string; figures are embedded, nothing is linked. With flags in the sections the
    page opens with all of them ("at a glance", worst first), then a table of contents."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if subtitle:
        parts.append(f"<p class='note'>{html.escape(subtitle)}</p>")
    if meta:
        parts.append("<table class='meta'>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                                                     for k, v in meta.items()) + "</table>")
    flags = sorted(((f, s.anchor) for s in sections for f in s.flags), key=lambda fa: _ORDER[fa[0].level])
    if flags:
        counts = ", ".join(f"{sum(f.level == lv for f, _ in flags)} {name}" for lv, name in
                           (("bad", "failed"), ("warn", "to read with care"), ("ok", "passed")))
        parts.append(f"<h2 id='at-a-glance'>At a glance</h2><p class='note'>{counts}</p><div class='glance'>"
                     + "".join(_flag(f, a) for f, a in flags) + "</div>")
    if len(sections) > 1:
        parts.append("<h2>Contents</h2><ol class='toc'>"
                     + "".join(f"<li><a href='#{s.anchor}'>{html.escape(s.title)}</a></li>" for s in sections) + "</ol>")
    for s in sections:
        parts.append(f"<h2 id='{s.anchor}'>{html.escape(s.title)}</h2>")
        parts.extend(_flag(f) for f in sorted(s.flags, key=lambda f: _ORDER[f.level]))
        parts.extend(f"<p>{p}</p>" for p in s.paragraphs)
        parts.extend(_table(*t) for t in s.tables)
        figs = [(c, p) for c, p in s.figures if Path(p).is_file()]
        if figs:
            parts.append("<div class='figs'>" + "".join(_figure(c, p) for c, p in figs) + "</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: Path, title: str, sections: Sequence[Section], *, subtitle: str = "",
                 meta: Mapping[str, str] | None = None) -> Path:
    """Write the report atomically."""
    return write_text_atomic(path, render(title, sections, subtitle=subtitle, meta=meta))


def git_commit(where: Path | None = None) -> str:
    """The commit of the source tree this package runs from ('+ uncommitted changes' when the tracked files
    differ from it), or a sentence saying why there is none."""
    cwd = Path(where or Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              timeout=20)
        if head.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git not available)"
    return head.stdout.strip() + (" + uncommitted changes" if dirty else "")


def chromium() -> str | None:
    """The headless Chromium executable, if installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    return None


def screenshot(html_file: Path, png: Path, *, width: int = 1280, height: int = 2400, timeout: float = 120) -> Path:
    """Render a page in headless Chromium and save a PNG screenshot (raises if Chromium is absent or fails)."""
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (Debian package 'chromium'; `make test` installs it)")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={width},{height}",
           f"--screenshot={png}", Path(html_file).resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0 or not Path(png).is_file():
        raise RuntimeError(f"chromium failed ({r.returncode}): {r.stderr[-500:]}")
    return Path(png)
