"""The user-error hierarchy: every error caused by the user's input (a file, a key, a value, an option) derives
from `L1adError`. The command line prints these as one line and exits 2; any other exception is a bug and keeps
its traceback. This module is the lowest of the packages, so trigger, firmware, sim and offline can all use it."""
from __future__ import annotations

import errno
import os


class L1adError(Exception):
    """Base class of errors caused by the user's input; the message names the file, key or value."""


class UserInputError(L1adError, ValueError):
    """A bad value in the user's input (a file's content, a configuration key, an option)."""


class UserFileError(L1adError, OSError):
    """A user's file or folder cannot be read or written (missing, no permission, disk full...)."""


class OutputLockedError(L1adError, RuntimeError):
    """Another live process is writing into the same output folder."""


#: errno values of a failed write that are the user's environment, not a bug (disk full, quota, read-only)
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM})


def write_failed(path: str | os.PathLike, err: OSError) -> UserFileError:
    """A UserFileError naming `path` for an OSError raised while writing it (nothing was left behind)."""
    reason = os.strerror(err.errno) if err.errno else str(err)
    out = UserFileError(f"{path}: cannot write ({reason}); nothing was written")
    out.errno = err.errno
    return out
