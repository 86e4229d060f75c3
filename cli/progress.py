"""A progress line on stderr for long jobs: shown only on a terminal, and only once a job has run
for a moment, so short commands, pipes and CI logs never see it.

    with Progress("diff", total_bytes) as bar:
        store = tracked(store, bar)   # every byte the store's tensors read is counted
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

from ..converters import store as stores
from ..converters.store import CHUNK_BYTES, Store, Tensor
from .text import byte_unit, human_bytes, in_unit

DELAY = 0.5  # seconds before the line first appears
INTERVAL = 0.1  # seconds between redraws
WIDTH = 24  # characters of the bar


class Progress:
    """Bytes done out of `total`, drawn as `label [#####-----] 41%  1.2/2.9 GiB  1.4 GiB/s`
    (done and total in the unit that fits the total, as `show` gives sizes).

    `advance` may be called from several threads. Nothing is drawn unless `enabled` and `stream`
    is a terminal; the line is erased on exit."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None, *,
                 enabled: bool = True):
        self.label = label
        self.total = max(total, 1)
        self.stream = sys.stderr if stream is None else stream
        self.done = 0
        self._enabled = enabled and _is_terminal(self.stream)
        self._pid = os.getpid()  # a forked child's copy never draws (verify's trips)
        self._start = time.monotonic()
        self._next = self._start + DELAY
        self._drawn = False
        self._lock = threading.Lock()

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.done += nbytes
            if not self._enabled or os.getpid() != self._pid:
                return
            now = time.monotonic()
            if now >= self._next:
                self._next = now + INTERVAL
                self._draw(now)

    @property
    def drawing(self) -> bool:
        """Whether the line may be drawn (enabled, on a terminal, not closed)."""
        return self._enabled

    def _draw(self, now: float) -> None:
        share = min(self.done / self.total, 1.0)
        filled = int(share * WIDTH)
        rate = self.done / max(now - self._start, 1e-9)
        unit = byte_unit(self.total)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'-' * (WIDTH - filled)}] "
                          f"{share:4.0%}  {in_unit(self.done, unit)}/{in_unit(self.total, unit)} "
                          f"{unit[0]}  {human_bytes(rate)}/s\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Erase the line, if one was drawn."""
        with self._lock:
            if self._drawn:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._drawn = False
            self._enabled = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def data_bytes(store: Store) -> int:
    """The bytes a full read of `store` goes through."""
    return sum(t.nbytes for t in store.values())


class _Counted(Tensor):
    """A tensor that reports the bytes of every read to `progress`."""

    __slots__ = ("_inner", "_progress")

    def __init__(self, inner: Tensor, progress: stores.Progress):
        def get(index: Any) -> Any:
            out = inner[index]
            progress(out.nbytes)
            return out
        super().__init__(inner.shape, inner.dtype, get, inner.meta)
        self._inner = inner
        self._progress = progress

    def iter_chunks(self, max_bytes: int = CHUNK_BYTES) -> Iterator[Any]:
        for chunk in self._inner.iter_chunks(max_bytes):  # the format's own streaming read
            self._progress(chunk.nbytes)
            yield chunk


def tracked(store: Store, progress: "Progress | stores.Progress") -> Store:
    """The same store (files, format, metadata), its tensors counting what they read (a tensor
    read raw from a file stays an `Extent`, so that `read_many` still reads it in a run) to
    `progress`: a callable, or a `Progress` line (the store itself when the line is never
    drawn: not a terminal, or --quiet)."""
    if isinstance(progress, Progress):
        if not progress.drawing:
            return store
        progress = progress.advance
    return store.replace({  # a Tensor subclass keeps its own streaming read (checksummed)
        name: _Counted(t, progress) if t.extent is None or type(t) is not Tensor else
        Tensor(t.shape, t.dtype, t.extent.counted(progress), t.meta)
        for name, t in store.items()})
