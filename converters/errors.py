"""The errors weightkit raises. Each also derives from the built-in type a caller would expect."""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

_URL_SECRETS = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)(?:[^/@?#]*@)?([^?#]*)[?#].*$|"
                          r"^([A-Za-z][A-Za-z0-9+.\-]*://)[^/@?#]*@")


def shown_path(path: str) -> str:
    """A path as messages show it: a URL without user information or query string (a signed
    URL's signature, a password)."""
    if "://" not in path:
        return path
    return _URL_SECRETS.sub(lambda m: (m.group(1) + m.group(2)) if m.group(1) else m.group(3),
                            path)


class WeightsError(Exception):
    """Base class: a problem with a weights file or a request, reported in one line."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.message = message
        self.path = shown_path(os.fspath(path)) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path else message)

    def __reduce__(self) -> tuple:  # pickled as made (a worker process's error reaches the CLI)
        return type(self), (self.message, self.path)


class UnknownFormatError(WeightsError, ValueError):
    """The file is not in any supported format (or not in the one asked for)."""


class CorruptFileError(WeightsError, ValueError):
    """The file claims a format but its content is inconsistent, truncated or fails a checksum."""


class UnsafeFileError(WeightsError, ValueError):
    """The file would make us read outside it, execute code, or allocate far more than it holds."""


class LossyConversionError(WeightsError, ValueError):
    """The target format cannot hold everything in the source; `allow_lossy=True` accepts the loss."""


class MissingDependencyError(WeightsError, ImportError):
    """An optional package is needed for this format or operation."""


class UsageError(WeightsError, ValueError):
    """The request itself is wrong (bad option, name not found, output equals input)."""


class WeightsNote(UserWarning):
    """Something a reader decided for the user and says so: a file read anyway, in a way the user
    may not expect (the CLI prints it as one `note:` line on stderr)."""


@contextlib.contextmanager
def naming(path: str | os.PathLike | None) -> Iterator[None]:
    """Name the file in weightkit errors raised inside the block without one (codecs that
    parse bytes do not know the file they came from)."""
    try:
        yield
    except WeightsError as exc:
        if exc.path is None and path is not None:
            raise type(exc)(exc.message, path) from None
        raise
