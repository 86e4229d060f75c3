"""Atomic output: every file or directory is written under a temporary name in its destination
directory, fsynced, and renamed into place only when the whole write succeeded.

    with atomic_output() as out:
        write_data(out.path("model.data-00000-of-00001"))
        write_index(out.path("model.index"))

On any exception (including KeyboardInterrupt and the SIGTERM the CLI turns into one) every
temporary is removed and existing destinations stay untouched. Renames run in registration order.

A destination that is a URL (`remote_output`) is written to a local scratch directory the same
way, then uploaded object by object (each object appears whole or not at all): data first, the
file a reader opens first last — the destination itself when it is a file (a `.safetensors`, a
TF.js `model.json`, a sharded `.weights.json`), a checkpoint prefix's `.index`, a directory's
entry file (ENTRY_FILES: a SavedModel's `saved_model.pb`, a TF.js model's `model.json`); other
files deeper first, then in the order they were written.
The destination's existing index object is deleted before anything is uploaded, so that no
reader ever pairs an old index with new data; a failed upload removes what it had uploaded and
leaves no index.
"""
from __future__ import annotations

import errno
import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, BinaryIO

from .mapped import FileChangedError, check_changed, opened, shrunk


class AtomicOutput:
    def __init__(self) -> None:
        self._pending: list[tuple[str, str]] = []  # (temporary, final)

    def path(self, final: str | os.PathLike, directory: bool = False) -> str:
        """A temporary path next to `final` (an empty directory if `directory`)."""
        final = os.path.abspath(os.fspath(final))
        parent, base = os.path.split(final)
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"output directory does not exist: {parent}")
        if not directory and os.path.isdir(final):  # else the rename fails, naming the temporary
            raise IsADirectoryError(errno.EISDIR, "is a directory; name a file for this output",
                                    final)
        prefix = f".{base[:100]}.wk-tmp-"
        temp = _create(os.path.join(parent, prefix), directory)
        self._pending.append((temp, final))
        return temp

    def adopt(self, temp: str | os.PathLike, final: str | os.PathLike) -> None:
        """Take the finished file `temp`, written elsewhere (a Dask worker's shard, in a scratch
        directory beside `final` on the same filesystem), as one of the outputs: made durable
        and renamed to `final` at the commit, in registration order; removed on failure."""
        self._pending.append((os.path.abspath(os.fspath(temp)),
                              os.path.abspath(os.fspath(final))))

    def open(self, final: str | os.PathLike) -> BinaryIO:
        """A temporary file next to `final`, opened for streaming binary writes that reach the
        disk as they go (see `WritebackFile`)."""
        return open_streaming(self.path(final))

    def _commit(self) -> None:
        for _, final in self._pending:  # (a model's shard beside its manifest, say)
            reading = None if os.path.isdir(final) else opened(final)
            if reading is not None:
                from .errors import UsageError
                raise UsageError(f"refusing to overwrite the input {reading!r}", final)
        durable = _DURABLE.get()
        for temp, _ in self._pending:
            if durable:
                _fsync_tree(temp)
        for temp, final in self._pending:
            if os.path.isdir(temp):
                _replace_dir(temp, final)
            else:
                os.replace(temp, final)
        for parent in {os.path.dirname(final) for _, final in self._pending} if durable else ():
            _fsync_dir(parent)
        self._pending.clear()

    def _abort(self) -> None:
        for temp, _ in self._pending:
            _remove(temp)
        self._pending.clear()


@contextmanager
def atomic_output() -> Iterator[AtomicOutput]:
    """Collect temporary outputs; rename them into place on success, remove them on failure."""
    out = AtomicOutput()
    try:
        yield out
        check_changed()  # an input shrank while it was read: what was written is not it
        out._commit()
    except BaseException as exc:
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_SPACE and not exc.filename \
                and out._pending:
            exc.filename = out._pending[0][1]  # name the destination that did not fit
        out._abort()
        changed = shrunk() if isinstance(exc, Exception) else None
        if changed is not None and not isinstance(exc, FileChangedError):
            raise FileChangedError(path=changed) from exc  # EFAULT writing from its pages...
        raise


_OUT_OF_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
WRITEBACK_BYTES = 32 << 20
_DURABLE: ContextVar[bool] = ContextVar("weightkit_durable", default=True)


@contextmanager
def scratch() -> Iterator[None]:
    """Within it, outputs are still atomic but not made durable (no fsync, no early writeback):
    for files in a temporary directory that is read back and deleted (verify's round trips)."""
    token = _DURABLE.set(False)
    try:
        yield
    finally:
        _DURABLE.reset(token)


def open_streaming(path: str) -> BinaryIO:
    """`path` opened for buffered binary writes that reach the disk as they go."""
    return io.BufferedWriter(WritebackFile(path, "w"), 1 << 20)


class WritebackFile(io.FileIO):
    """A file that starts writing its pages to disk every WRITEBACK_BYTES, without waiting.

    The commit fsyncs every output; without this, a 1 GiB file sat in the page cache until then
    and the fsync waited for all of it (1.3 s of a 2.6 s conversion here). POSIX_FADV_DONTNEED
    starts writeback of the dirty range (Linux: WB_SYNC_NONE) and drops its clean pages, which
    also keeps a large output from crowding the inputs out of the page cache."""

    _done = 0

    def write(self, data: Any) -> int:
        n = super().write(data)
        end = self.tell()
        if end - self._done >= WRITEBACK_BYTES and hasattr(os, "posix_fadvise") \
                and _DURABLE.get():
            os.posix_fadvise(self.fileno(), self._done, end - self._done,
                             os.POSIX_FADV_DONTNEED)
            self._done = end
        return n


def _create(prefix: str, directory: bool) -> str:
    """A new file or directory `prefix<random>` with the permissions an ordinary creation gets
    (0666 / 0777 less the umask; tempfile's 0600 / 0700 would carry over to the output)."""
    while True:
        temp = prefix + uuid.uuid4().hex[:12]
        try:
            if directory:
                os.mkdir(temp, 0o777)
            else:
                os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return temp
        except FileExistsError:
            continue


def _replace_dir(temp: str, final: str) -> None:
    if not os.path.lexists(final):
        os.rename(temp, final)
        return
    aside = f"{final}.wk-old-{uuid.uuid4().hex[:8]}"
    os.rename(final, aside)
    try:
        os.rename(temp, final)
    except BaseException:
        os.rename(aside, final)
        raise
    _remove(aside)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _fsync_tree(path: str) -> None:
    if os.path.isdir(path):
        for root, _, files in os.walk(path):
            for name in files:
                _fsync_file(os.path.join(root, name))
            _fsync_dir(root)
    else:
        _fsync_file(path)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def remote_output(url: str) -> Iterator[str]:
    """A local path standing for the URL `url`: write there (with `atomic_output`, as for any
    destination); when the block ends, the files written are uploaded (see the module
    docstring). The scratch directory is removed in every case."""
    from . import source as seam
    work = tempfile.mkdtemp(prefix="weightkit-upload-")
    try:
        with scratch():  # local durability is not the point: the upload is
            yield os.path.join(work, seam.basename(url) or "output")
        check_changed()
        uploads_local = _upload_order(work, os.path.join(work, seam.basename(url) or "output"))
        base = seam.parent(url)
        uploads = [(full, seam.join(base, rel)) for rel, full in uploads_local]
        if not uploads:
            return
        seam.forget(base)
        if seam.isfile(uploads[-1][1]):
            seam.remove(uploads[-1][1])  # no reader pairs the old index with new data
        done: list[str] = []
        try:
            for full, target in uploads:
                seam.upload(full, target)
                done.append(target)
        except BaseException:
            for target in done:
                try:
                    seam.remove(target)
                except Exception:  # noqa: BLE001 - the upload's error is the one to report
                    pass
            raise
        finally:
            seam.forget(base)
    finally:
        shutil.rmtree(work, ignore_errors=True)


ENTRY_FILES = ("saved_model.pb", "model.json")  # what a reader of a directory looks for first


def _upload_order(work: str, local: str) -> list[tuple[str, str]]:
    """(relative path, full path) of every file under `work`, in upload order (see the module
    docstring); `local` is the path the writer was given."""
    made = []
    for parent, _, names in os.walk(work):
        for name in names:
            full = os.path.join(parent, name)
            rel = os.path.relpath(full, work).replace(os.sep, "/")
            last = full in (local, local + ".index") or (
                os.path.dirname(full) == local and name in ENTRY_FILES)
            made.append(((last, -rel.count("/"), os.stat(full).st_mtime_ns, rel), rel, full))
    return [(rel, full) for _, rel, full in sorted(made)]

