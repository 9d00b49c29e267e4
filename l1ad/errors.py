"""Which exceptions are the user's (bad input, bad config, an unusable file) and get one line instead of a traceback.

The hierarchy lives in the lowest package, `l1ad.trigger.errors` (trigger, firmware, sim and offline raise it
without importing l1ad); it is re-exported here. Anything else that escapes a command is a bug and keeps its
traceback: a bare ValueError or KeyError from our own code is not treated as the user's fault.
"""
from __future__ import annotations

import errno

from l1ad.trigger.errors import (WRITE_ERRNOS, L1adError, OutputLockedError, UserFileError, UserInputError,
                                 write_failed)

__all__ = ["L1adError", "UserInputError", "UserFileError", "OutputLockedError", "write_failed", "user_message"]

#: OSErrors that describe the user's files or environment (missing file, permissions, a full disk), not a bug
_USER_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)
_USER_ERRNOS = WRITE_ERRNOS | {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG}


def one_line(text: str) -> str:
    """A message on one line: its lines joined with '; ' (a configuration error lists one problem per line)."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    out = parts[0] if parts else ""
    for p in parts[1:]:
        out += ("; " if not out.endswith(":") else " ") + p
    return out


def user_message(e: BaseException) -> str | None:
    """The one-line message of a user error, or None when `e` is a bug (it then keeps its traceback)."""
    if isinstance(e, L1adError):
        return one_line(str(e))
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover
        ValidationError = ()  # type: ignore[assignment]
    if ValidationError and isinstance(e, ValidationError):
        return one_line(format_validation(e))
    if isinstance(e, OSError) and (isinstance(e, _USER_OS_ERRORS) or e.errno in _USER_ERRNOS):
        reason = e.strerror or str(e)
        where = e.filename if e.filename is not None else None
        if where is None:
            return one_line(reason)
        extra = f" -> {e.filename2}" if e.filename2 else ""
        return one_line(f"{where}{extra}: {reason}")
    return None


def format_validation(e, source: str | None = None, *, title: str | None = None, unknown_hint: str = "") -> str:
    """A pydantic ValidationError as 'key = value: what is allowed', one problem per line (a check across keys
    gives its own message, which names them)."""
    title = title or getattr(e, "title", None) or "settings"
    lines = [f"{source + ': ' if source else ''}invalid {title}"]
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = f"unknown key (not allowed here{unknown_hint})" if err["type"] == "extra_forbidden" else err["msg"]
        value = err.get("input")
        if err["type"] == "value_error" and isinstance(value, dict):
            msg = msg.removeprefix("Value error, ")
            lines.append(f"  {key}: {msg}" if key else f"  {msg}")
            continue
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        lines.append(f"  {key or '(top level)'} = {shown[:80]}: {msg}")
    return "\n".join(lines)
