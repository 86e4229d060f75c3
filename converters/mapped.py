"""Zero-copy reads that keep memory bounded, and files that change while they are read.

Bounded memory: a view over one mmap of a whole file keeps every page it ever touched counted in
the process's resident memory until the file is closed: reading a 4 GiB file chunk by chunk
would end at 4 GiB RSS. Here each read maps its own range (page-aligned) and returns a read-only
numpy view over it; the mapping goes away with the last view, so a chunked pass stays at about
one chunk. Reads smaller than SMALL_READ are copied with pread instead (cheaper than a map and an
unmap, which matters for files of many small variables).

A file that shrinks while it is read (another process truncates or rewrites it) would end the
process: touching a mapped page beyond the new end raises SIGBUS, whose default action kills
without a word, and the kernel refuses a write(2) from such a page with EFAULT ("Bad address").
So every file read here is *watched*: on Linux a SIGBUS handler (installed on the first map, via
ctypes) finds the watched files' mappings that now extend past their file's end in
/proc/self/maps, replaces those pages with zero pages (so the faulting instruction completes) and
records the file; any SIGBUS it cannot explain goes to the previous handler. The next read from
any watched file, each step of `Tensor.iter_chunks`, and every atomic output before it is
renamed into place (`check_changed`) then raise `FileChangedError` naming the file; an output
that failed while a watched input shrank (EFAULT, a short read) raises it too (`shrunk`). A
program that keeps an array it read and touches it after the file shrank sees zeros, and the
next weightkit read raises.
"""
from __future__ import annotations

import ctypes
import math
import mmap
import os
import signal
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import CorruptFileError, UsageError

GRANULARITY = mmap.ALLOCATIONGRANULARITY
PAGE = mmap.PAGESIZE
SMALL_READ = 64 << 10  # bytes below which a read is a pread copy, not a map
READ_AHEAD = 256 << 10  # bytes a small read fetches for the small reads after it
Index = tuple  # a tuple of ints and slices: numpy basic indexing


class FileChangedError(CorruptFileError):
    """The file became shorter (was truncated or rewritten) while weightkit read it."""

    def __init__(self, message: str = "", path: str | os.PathLike | None = None):
        super().__init__(message or "the file changed (it became shorter) while it was being "
                         "read; read it again once nothing writes to it", path)


# -- watched files -------------------------------------------------------------------------------

@dataclass
class _Watched:
    path: str
    real: bytes  # the absolute path /proc/self/maps shows (overlay file systems may show
    size: int  # at opening                                another device and inode)
    users: int = 0  # open MappedFiles and live mappings


_watched: dict[tuple[int, int], _Watched] = {}  # (st_dev, st_ino) -> the file
_changed: list[str] = []  # files the SIGBUS handler found shorter than their mappings
_lock = threading.Lock()


def watch(path: str, stat: os.stat_result) -> tuple[int, int]:
    """Count a user of the file `path` (its fstat `stat`); returns the key to `unwatch` with."""
    key = (stat.st_dev, stat.st_ino)
    with _lock:
        entry = _watched.get(key)
        if entry is None:
            entry = _watched[key] = _Watched(path, os.fsencode(os.path.realpath(path)),
                                             stat.st_size)
        entry.users += 1
    return key


def unwatch(key: tuple[int, int]) -> None:
    with _lock:
        entry = _watched.get(key)
        if entry is not None:
            entry.users -= 1
            if entry.users <= 0:  # closed and unmapped: nothing more to say about it
                del _watched[key]
                while entry.path in _changed:
                    _changed.remove(entry.path)


def opened(path: str) -> str | None:
    """The path of the open input file (a watched one) that `path` is, if it is one: a
    writer about to replace `path` would replace a file it may still be reading."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    with _lock:
        entry = _watched.get((stat.st_dev, stat.st_ino))
    return None if entry is None else entry.path


def check_changed() -> None:
    """Raise FileChangedError if the SIGBUS handler found a watched file shorter than its
    mappings (the error is raised once)."""
    if _changed:
        raise FileChangedError(path=_changed.pop())


def shrunk() -> str | None:
    """The path of a watched file that is now shorter than when it was opened, if any, the
    latest opened first (an output that failed with EFAULT or a short read names the input
    that changed)."""
    if _changed:
        return _changed[-1]
    for (dev, ino), entry in reversed(list(_watched.items())):  # the latest opened first
        try:
            st = os.stat(entry.path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (dev, ino) and st.st_size < entry.size:
            return entry.path
    return None


# -- the SIGBUS handler --------------------------------------------------------------------------

_handler: Any = None  # the ctypes callback, kept alive
_previous: Any = None  # the handler it replaced
_libc: Any = None


def _install() -> None:
    """Install the SIGBUS handler once (Linux; elsewhere SIGBUS keeps its default)."""
    global _handler, _previous, _libc
    if _handler is not None or not sys.platform.startswith("linux"):
        return
    with _lock:
        if _handler is not None:
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.signal.restype = ctypes.c_void_p
            libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_int, ctypes.c_long]
            handler = ctypes.CFUNCTYPE(None, ctypes.c_int)(_on_sigbus)
            _libc, _handler = libc, handler
            _previous = libc.signal(signal.SIGBUS, ctypes.cast(handler, ctypes.c_void_p))
        except (OSError, AttributeError, ValueError):  # no libc to call: the default stays
            _handler = False


def _on_sigbus(signum: int) -> None:
    """Zero-fill the pages of watched files' mappings that lie past their file's end, and
    record the files; a SIGBUS from elsewhere goes to the previous handler."""
    try:
        fixed = _zero_pages_past_end()
    except Exception:  # noqa: BLE001 - never raise inside a signal handler
        fixed = False
    if not fixed:
        _libc.signal(signal.SIGBUS, _previous)  # the faulting access repeats: theirs now


def _zero_pages_past_end() -> bool:
    sizes: dict[tuple[int, int], int] = {}
    by_path = {entry.real: key for key, entry in _watched.items()}
    fixed = False
    with open("/proc/self/maps", "rb") as f:
        lines = f.read().splitlines()
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue
        major, minor = (int(x, 16) for x in parts[3].split(b":"))
        key = (os.makedev(major, minor), int(parts[4]))
        if key not in _watched:
            key = by_path.get(parts[5].strip(), key)
        entry = _watched.get(key)
        if entry is None:
            continue
        if key not in sizes:
            sizes[key] = _size_now(entry, key)
        start, end = (int(x, 16) for x in parts[0].split(b"-"))
        valid = max(0, sizes[key] - int(parts[2], 16))  # bytes of this mapping still in the file
        first = start + -(-valid // PAGE) * PAGE
        if first < end:
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x10  # MAP_FIXED
            if _libc.mmap(first, end - first, mmap.PROT_READ, flags, -1, 0) == first:
                fixed = True
                if entry.path not in _changed:
                    _changed.append(entry.path)
    return fixed


def _size_now(entry: _Watched, key: tuple[int, int]) -> int:
    try:
        st = os.stat(entry.path)
    except OSError:
        return 0
    return st.st_size if (st.st_dev, st.st_ino) == key else 0


def map_range(fd: int, offset: int, nbytes: int, path: str, opened: os.stat_result
              ) -> tuple[mmap.mmap, int]:
    """A read-only map of `nbytes` at `offset` of `fd`, the file `path` whose fstat at opening
    was `opened`: (the map, where the range starts in it). The file is watched while the map
    lives."""
    _install()
    start = offset - offset % GRANULARITY
    try:
        mapped = mmap.mmap(fd, offset - start + nbytes, offset=start, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"cannot map data: {exc}", path) from None
    weakref.finalize(mapped, unwatch, watch(path, opened))
    return mapped, offset - start


# -- files ---------------------------------------------------------------------------------------

class MappedFile:
    """An open, watched file from which byte ranges are read as read-only arrays: the local
    implementation of the byte seam (`source.py`). `name`: what messages name (default the
    path; a remote object's URL when this is its local copy)."""

    def __init__(self, path: str, name: str | None = None):
        self.path = name or path
        self.name = self.path
        self.local = path if name is None else None
        try:
            self._file = open(path, "rb")
            stat = os.fstat(self._file.fileno())
        except OSError as exc:
            raise UsageError(f"cannot read: {exc.strerror or exc}", self.path) from None
        self.size = stat.st_size
        self._stat = stat
        self._block: tuple[int, bytes] = (0, b"")  # read ahead for small reads
        self._key = watch(self.path, stat)

    @property
    def identity(self) -> tuple[int, int, int, int, int]:
        """The open file as it was when opened: device, inode, size, modification and change
        times (ns). Equal identities mean the same bytes, unless the file was written again
        within one tick of the filesystem's clock (which can be milliseconds) at the same
        size: use it to skip work, never instead of a check."""
        st = self._stat
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def plan(self, ranges: Any) -> None:
        """Nothing to plan: a local file is mapped by range when read."""

    def preads(self, ranges: Any) -> list[bytes]:
        """The bytes of several (offset, length) ranges."""
        return [self.pread(offset, n) for offset, n in ranges]

    def fileobj(self) -> Any:
        """A seekable read-only binary file over the whole file."""
        from .source import window
        return window(self, 0, self.size)

    def mapped(self) -> "MappedFile":
        return self

    def whole(self) -> mmap.mmap:
        """A read-only map of the whole file (for parsers that need random access to all of it;
        the caller closes it)."""
        check_changed()
        try:
            return mmap.mmap(self._fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise CorruptFileError(f"cannot map the file: {exc}", self.path) from None

    def __enter__(self) -> "MappedFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pread(self, offset: int, n: int) -> bytes:
        """Up to `n` bytes at `offset` (fewer only where the range passes the end of the file
        as it was opened; FileChangedError if it has since become shorter)."""
        check_changed()
        if 0 <= n < SMALL_READ and 0 <= offset and offset + n <= self.size:
            return self._small(offset, n)
        try:
            data = os.pread(self._fileno(), n, offset)
        except OSError as exc:
            raise CorruptFileError(f"cannot read: {exc.strerror or exc}", self.path) from None
        if len(data) < n and offset + len(data) < self.size:
            raise FileChangedError(path=self.path)
        return data

    def array(self, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """The read-only C-order array of `shape` whose bytes start at `offset`: a view of a map,
        or a copy when small."""
        check_changed()
        dtype = np.dtype(dtype)
        count = math.prod(shape)
        if count == 0:
            return np.empty(shape, dtype)
        nbytes = count * dtype.itemsize
        fileno = self._fileno()
        if offset + nbytes > self.size:
            raise CorruptFileError(f"{nbytes} bytes at {offset} run past the end of the file "
                                   f"({self.size} bytes)", self.path)
        if nbytes < SMALL_READ:
            return np.frombuffer(self._small(offset, nbytes), dtype, count).reshape(shape)
        if offset + nbytes > os.fstat(fileno).st_size:
            raise FileChangedError(path=self.path)
        mapped, at = map_range(fileno, offset, nbytes, self.path, self._stat)
        return np.frombuffer(mapped, dtype, count, at).reshape(shape)

    def _small(self, offset: int, nbytes: int) -> bytes:
        """`nbytes` at `offset` (< SMALL_READ) from the block last read ahead, or a new block
        of up to READ_AHEAD bytes from there: files of many small variables, which lie one after
        another, cost a read per block rather than per variable."""
        start, block = self._block
        if not (start <= offset and offset + nbytes <= start + len(block)):
            size = max(nbytes, min(READ_AHEAD, self.size - offset))
            try:
                block = os.pread(self._fileno(), size, offset)
            except OSError as exc:
                raise CorruptFileError(f"cannot read: {exc.strerror or exc}", self.path) from None
            if len(block) < nbytes:
                raise FileChangedError(path=self.path)
            start, self._block = offset, (offset, block)
        return block[offset - start:offset - start + nbytes]

    def _fileno(self) -> int:
        if self._file.closed:
            raise UsageError("the store is closed", self.path)
        return self._file.fileno()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
            unwatch(self._key)


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
