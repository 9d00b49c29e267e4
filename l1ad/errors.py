"""Which exceptions are the user's (bad input, bad config) and get a one-line message instead of a traceback."""
from __future__ import annotations

from l1ad.trigger.events import EventDataError

try:
    from pydantic import ValidationError
except ImportError:  # pragma: no cover
    ValidationError = ValueError  # type: ignore[misc,assignment]

USER_ERRORS: tuple[type[BaseException], ...] = (EventDataError, ValidationError, FileNotFoundError, ValueError, KeyError, OSError)
