"""Zero-copy reads that keep memory bounded: each read maps only the byte range it needs.

A view over one mmap of a whole file keeps every page it ever touched counted in the process's
resident memory until the file is closed: reading a 4 GiB file chunk by chunk would end at 4 GiB
RSS. Here each read maps its own range (page-aligned) and returns a read-only numpy view over it;
the mapping goes away with the last view, so a chunked pass stays at about one chunk.
"""
from __future__ import annotations

import math
import mmap
import os
from typing import Any

import numpy as np

from .errors import CorruptFileError, UsageError
from .store import Index

GRANULARITY = mmap.ALLOCATIONGRANULARITY


class MappedFile:
    """An open file from which byte ranges are read as read-only arrays."""

    def __init__(self, path: str):
        self.path = path
        try:
            self._file = open(path, "rb")
            self.size = os.fstat(self._file.fileno()).st_size
        except OSError as exc:
            raise UsageError(f"cannot read: {exc.strerror or exc}", path) from None

    def pread(self, offset: int, n: int) -> bytes:
        """Up to `n` bytes at `offset` (fewer at the end of the file)."""
        try:
            return os.pread(self._fileno(), n, offset)
        except OSError as exc:
            raise CorruptFileError(f"cannot read: {exc.strerror or exc}", self.path) from None

    def array(self, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """The C-order array of `shape` whose bytes start at `offset`, as a view of a map."""
        count = math.prod(shape)
        if count == 0:
            return np.empty(shape, dtype)
        nbytes = count * np.dtype(dtype).itemsize
        fileno = self._fileno()
        if offset + nbytes > os.fstat(fileno).st_size:
            raise CorruptFileError("the file became shorter while it was open", self.path)
        start = offset - offset % GRANULARITY
        try:
            mapped = mmap.mmap(fileno, offset - start + nbytes, offset=start,
                               access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise CorruptFileError(f"cannot map data: {exc}", self.path) from None
        return np.frombuffer(mapped, dtype, count, offset - start).reshape(shape)

    def _fileno(self) -> int:
        if self._file.closed:
            raise UsageError("the store is closed", self.path)
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()


def rows(index: Index, shape: tuple[int, ...]) -> tuple[int, int, tuple[Any, ...]] | None:
    """If the first item of a basic `index` selects a contiguous run of rows (an int or a slice
    of step 1), that run `[r0, r1)` and the index relative to it; otherwise None."""
    if not shape or not index:
        return None
    first, rest = index[0], tuple(index[1:])
    n = shape[0]
    if isinstance(first, (int, np.integer)) and not isinstance(first, bool) and -n <= first < n:
        r0 = int(first) % n
        return r0, r0 + 1, (0, *rest)
    if isinstance(first, slice) and first.step in (None, 1):
        r0, r1, _ = first.indices(n)
        r1 = max(r0, r1)
        return r0, r1, (slice(0, r1 - r0), *rest)
    return None
