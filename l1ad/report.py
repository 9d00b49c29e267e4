"""One self-contained HTML page (plots embedded) from the pipeline's summary: rates, efficiencies, firmware
resources and latency, bit-exact checks, offline results and discovery reach."""
from __future__ import annotations

import base64
import html
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from l1ad.trigger.atomic import write_text_atomic

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em;border-bottom:2px solid #444;padding-bottom:.2em}
h2{font-size:1.25em;margin-top:1.6em;color:#1f4e79}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #bbb;padding:.25em .6em;text-align:right}
th{background:#eef2f7} td:first-child,th:first-child{text-align:left}
.ok{color:#0a7d28;font-weight:600}.bad{color:#b00020;font-weight:600}
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs figure{margin:0;width:370px}
.figs img{width:100%;border:1px solid #ddd}.figs figcaption{font-size:.8em;color:#555}
.note{color:#555;font-size:.9em}
"""


@dataclass
class Section:
    """A report section: a title, free paragraphs, tables (header + rows) and figures (PNG files)."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, Sequence[str], Sequence[Sequence[Any]]]] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(caption: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<tr>{head}</tr>{body}</table>"


def _figure(caption: str, png: Path) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render(title: str, sections: Sequence[Section], *, subtitle: str = "") -> str:
    """The whole page as one string; figures are embedded, nothing is linked."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if subtitle:
        parts.append(f"<p class='note'>{html.escape(subtitle)}</p>")
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts.extend(f"<p>{p}</p>" for p in s.paragraphs)
        parts.extend(_table(*t) for t in s.tables)
        figs = [(c, p) for c, p in s.figures if Path(p).is_file()]
        if figs:
            parts.append("<div class='figs'>" + "".join(_figure(c, p) for c, p in figs) + "</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: Path, title: str, sections: Sequence[Section], *, subtitle: str = "") -> Path:
    """Write the report atomically."""
    return write_text_atomic(path, render(title, sections, subtitle=subtitle))


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
