"""The one seam through which every reader gets its bytes, from a local file or a URL.

    src = open_source(path)        # a local path, or a URL: s3://, gs://, https://, any fsspec
    src.name, src.size, src.local  # what errors name; bytes; the local path (None for a URL)
    src.pread(offset, n)           # up to n bytes at offset (fewer only past the end)
    src.array(offset, dtype, shape)  # a read-only C-order array (a view of a map locally)
    src.preads([(offset, n), ...])   # several ranges at once, fetched in merged requests
    src.plan([(offset, n), ...])     # the ranges the reader will read next: merged into pieces
    src.fileobj()                  # a seekable binary file over a block cache (h5py, zipfile)
    src.mapped()                   # a MappedFile of the whole content (a URL: fetched once)
    src.close()

A local file is a `MappedFile` (`mapped.py`): memory-mapped ranges, as fast as before this seam
existed; `plan` costs nothing there. A URL is a `RemoteFile`, read through fsspec and the
protocol's package (s3fs, gcsfs, aiohttp: the extra `weightkit[remote]`):

- Requests are few. An object of at most a quarter of the I/O budget is read whole on first
  use (one request per piece). For larger ones a format *plans* the ranges it will read, in
  the order it will read them (every tensor of a safetensors file, a checkpoint shard's entries,
  an archive's members...): they are merged in file order into pieces (gaps of at most
  MERGE_GAP, pieces of at most PIECE bytes, as measured on an S3 emulator: 192 tensors in 9
  requests instead of 192); a read fetches the whole piece it falls in, and when reads follow
  the plan the pieces read next are fetched ahead. Reads outside any plan (headers, HDF5 and
  zip metadata) go through the cache in BLOCK-sized blocks.
- Bytes in flight are bounded by the I/O budget (`--io-budget`, `set_io_budget`,
  WEIGHTKIT_IO_BUDGET; default 256 MiB): concurrent requests times the piece size stay under it,
  and each open file caches at most four times that. The cache lives in an unlinked temporary
  file (the page cache, not the heap) whose block table is shared memory, so that forked
  workers (the diff engine's, the HDF5 vetting child) share what any of them fetched.
- The object is pinned when it is first seen: its ETag (S3, HTTP: `If-Match`) or generation
  (GCS), checked on every response. An object replaced while it is read raises
  `FileChangedError` naming it; bytes of two versions are never mixed.

Paths: `is_url`, `join`, `parent`, `basename`, `isfile`, `isdir`, `exists`, `getsize`,
`listdir`, `walk_files`, `inside`, `check_input`, `read_bytes`, `scan` take local paths and URLs
alike. A directory-shaped input on object storage (a checkpoint prefix and its shards, a
SavedModel, a TF.js model) is the set of objects under a prefix: it is listed once per
`session()` (the command line runs each command in one; `registry.load` opens one) and every
question about the objects under it is answered from that listing. HTTP has no listings: each
file is asked for (HEAD) once per session.

Credentials come from each fsspec backend's usual places (AWS_* variables and ~/.aws for s3fs,
Application Default Credentials or GOOGLE_APPLICATION_CREDENTIALS for gcsfs, ...) and options
from fsspec's configuration (FSSPEC_<PROTOCOL>_<OPTION> variables, e.g.
FSSPEC_S3_ENDPOINT_URL): `weightkit.load(url)` works in a fresh process (a Dask worker) given
only the URL and the environment. Messages name the URL without user information or query
string (where signed URLs keep their signature).
"""
from __future__ import annotations

import bisect
import contextlib
import ctypes
import io
import math
import mmap
import os
import posixpath
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import numpy as np

from . import paths
from .errors import CorruptFileError, MissingDependencyError, UnsafeFileError, UsageError, \
    WeightsError, shown_path
from .mapped import FileChangedError, MappedFile

if TYPE_CHECKING:  # asyncio costs 50 ms to import: only when a URL is read
    import asyncio
    import concurrent.futures

MERGE_GAP = 64 << 10  # planned ranges closer than this are fetched in one request
PIECE = 32 << 20  # a request fetches at most this much
BLOCK = 1 << 20  # the unit of the cache (and of reads outside a plan)
DEFAULT_BUDGET = 256 << 20
MAX_REQUESTS = 8  # concurrent requests per file, at most
SCAN_LIMIT = 10_000  # objects a scan lists at most (10 pages of S3, 2 of GCS)
STREAM_CHUNK = 1 << 20  # a response is written to the cache as it comes, in these
CACHE_BUDGETS = 4  # an open file caches at most this many budgets (on local disk)
EXTRA = "weightkit[remote]"
_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "http": "aiohttp",
             "https": "aiohttp"}
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


class Source(Protocol):
    """What a reader may ask of an open file (see the module docstring)."""
    name: str
    size: int
    local: str | None

    def pread(self, offset: int, n: int) -> bytes: ...
    def array(self, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray: ...
    def preads(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]: ...
    def plan(self, ranges: Iterable[tuple[int, int]]) -> None: ...
    def fileobj(self) -> BinaryIO: ...
    def mapped(self) -> MappedFile: ...
    def close(self) -> None: ...


# -- the I/O budget ------------------------------------------------------------------------------

_budget: int | None = None


def io_budget() -> int:
    """Bytes a remote file may have in flight and in its cache (`set_io_budget`, else the
    WEIGHTKIT_IO_BUDGET variable, else 256 MiB)."""
    if _budget is not None:
        return _budget
    text = os.environ.get("WEIGHTKIT_IO_BUDGET")
    return parse_size(text) if text else DEFAULT_BUDGET


def set_io_budget(nbytes: int | None) -> None:
    """Set the I/O budget in bytes (None: back to the default); at least one block."""
    global _budget
    _budget = None if nbytes is None else max(BLOCK, int(nbytes))


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 10 ** 3, "kib": 1 << 10, "m": 1 << 20,
          "mb": 10 ** 6, "mib": 1 << 20, "g": 1 << 30, "gb": 10 ** 9, "gib": 1 << 30}


def parse_size(text: str) -> int:
    """Bytes of a size such as `256M`, `1GiB`, `64MB`, `1048576` (K, M, G: powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise UsageError(f"expected a size such as 256M or 1G, received {text!r}")
    return int(float(match.group(1)) * _UNITS[unit])


def _piece() -> int:
    return max(BLOCK, min(PIECE, io_budget()) // BLOCK * BLOCK)


# -- URLs ----------------------------------------------------------------------------------------

def protocol(path: str | os.PathLike) -> str | None:
    match = _URL.match(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else None
    return match.group(1).lower() if match else None


def is_url(path: str | os.PathLike) -> bool:
    """Whether `path` is a URL weightkit reads through fsspec (`file://` is a local path)."""
    return protocol(path) not in (None, "file")


def local_path(path: str | os.PathLike) -> str:
    """`path` as a local path (a `file://` URL without its scheme)."""
    path = os.fspath(path)
    return path[len("file://"):] if protocol(path) == "file" else path


def display(url: str) -> str:
    """The URL as messages show it: without user information or query string."""
    return shown_path(url) if is_url(url) else url


def _clean(text: str) -> str:
    """A library's error text without credentials in URLs or signed query strings."""
    text = re.sub(r"(://)[^/@\s]*@", r"\1", text)
    return re.sub(r"\?[^\s'\"]*", "", text).strip()


def join(base: str, *names: str) -> str:
    if not is_url(base):
        return os.path.join(base, *names)
    out = base
    for name in names:
        out = out.rstrip("/") + "/" + name.lstrip("/")
    return out


def parent(path: str) -> str:
    """The directory holding `path` (absolute for a local path)."""
    if not is_url(path):
        return os.path.dirname(os.path.abspath(path))
    head = path.rstrip("/")
    cut = head.rfind("/")
    return head[:cut] if cut > head.find("://") + 2 else head


def basename(path: str) -> str:
    return posixpath.basename(path.rstrip("/")) if is_url(path) else os.path.basename(path)


def inside(root: str, name: str) -> str:
    """`root/name`, refusing a name that leads outside `root` (UnsafeFileError): absolute
    paths, `..` above the root, backslashes, NUL, another URL, and (locally) symlinks out.
    Under a URL the name is checked as written and percent-decoded (`%2e%2e/x`: an HTTP client
    decodes the dots and the server goes up), and an http(s) name may not carry a query or a
    fragment (`?`, `#`: the part after them would not name a path)."""
    if not is_url(root):
        if is_url(name):
            raise UnsafeFileError(f"refusing path {name!r}: it must be relative", root)
        return paths.inside(root, name)
    decoded = urllib.parse.unquote(name)
    for form in (name, decoded):
        if is_url(form) or form.startswith("/") or "\\" in form or "\x00" in form:
            raise UnsafeFileError(f"refusing path {name!r}: it must be relative", display(root))
        normal = posixpath.normpath(form)
        if normal == ".." or normal.startswith("../"):
            raise UnsafeFileError(f"refusing path {name!r}: it leads outside the directory",
                                  display(root))
    if protocol(root) in ("http", "https") and ("?" in name or "#" in name):
        raise UnsafeFileError(f"refusing path {name!r}: a query or fragment names no file",
                              display(root))
    normal = posixpath.normpath(name)
    return root if normal == "." else join(root, normal)


def within(root: str, name: str) -> str | None:
    """`root/name` if `name` stays inside `root`, else None (no error)."""
    try:
        return inside(root, name)
    except UnsafeFileError:
        return None


# -- sessions: listings taken once ---------------------------------------------------------------

@dataclass(frozen=True)
class Stat:
    """An object as listed: its size and what pins its content (("etag", value),
    ("generation", value), or () where the backend reports neither)."""
    size: int
    pin: tuple = ()


class _Listings:
    def __init__(self) -> None:
        self.prefixes: dict[str, dict[str, Stat]] = {}  # prefix URL -> every object under it
        self.single: dict[str, Stat | None] = {}  # URL -> stat (unlistable protocols)
        self.files: dict[str, RemoteFile] = {}  # URL -> the file opened in this session

    def covering(self, url: str) -> dict[str, Stat] | None:
        for prefix, entries in self.prefixes.items():
            if url.startswith(prefix):
                return entries
        return None


_sessions = threading.local()
_lock = threading.Lock()
_shared: list[Any] = [0, None]  # open sessions, their listings (shared by the process's threads)


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Within it, a prefix is listed once, an object keeps the pin it was first seen with, and
    a URL opened twice is the same open file (with its cache)."""
    with _lock:
        _shared[0] += 1
        if _shared[1] is None:
            _shared[1] = _Listings()
    try:
        yield
    finally:
        ended = None
        with _lock:
            _shared[0] -= 1
            if _shared[0] == 0:
                ended, _shared[1] = _shared[1], None
        for opened in (ended.files.values() if ended is not None else ()):
            opened.close()


def _listings() -> _Listings:
    """The session's listings (a throwaway set outside any session)."""
    current = _shared[1]
    return current if current is not None else _Listings()


# -- backends ------------------------------------------------------------------------------------

class _Changed(Exception):
    """The object is not the one pinned."""


class _BadAnswer(Exception):
    """The server answered a range request with other bytes than those asked for."""


class _NoRanges(Exception):
    """The server answered a range request with the whole object."""


def _filesystem(proto: str) -> Any:
    package = _PACKAGES.get(proto, "fsspec")
    try:
        import fsspec
    except ImportError:
        raise MissingDependencyError(f"reading {proto}:// URLs needs fsspec and {package}: "
                                     f"pip install '{EXTRA}'") from None
    try:
        return fsspec.filesystem(proto)
    except ImportError:
        raise MissingDependencyError(f"reading {proto}:// URLs needs {package}: "
                                     f"pip install '{EXTRA}'") from None
    except ValueError as exc:
        raise UsageError(f"unknown URL protocol {proto}://: {_clean(str(exc))}") from None


class _Backend:
    """One protocol's filesystem (made again in a forked process: fsspec's event loop and
    sessions do not survive a fork) and what weightkit asks of it. Object stores (S3, GCS)
    are `listable`: one listing of a prefix answers every question about the objects under
    it; other protocols are asked about each path."""

    listable = False

    def __init__(self, proto: str):
        self.protocol = proto
        self._fs: Any = None
        self._pid = 0

    @property
    def fs(self) -> Any:
        if self._fs is None or self._pid != os.getpid():
            self._fs = _filesystem(self.protocol)
            self._pid = os.getpid()
        return self._fs

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        fs = self.fs
        if getattr(fs, "async_impl", False):
            return fs.loop
        from fsspec.asyn import get_loop
        return get_loop()

    def key(self, url: str) -> str:
        return self.fs._strip_protocol(url)

    def isdir(self, url: str) -> bool:
        return bool(self.fs.isdir(url))

    def ls(self, url: str) -> list[str]:
        return sorted(posixpath.basename(n.rstrip("/")) for n in self.fs.ls(url, detail=False))

    def walk(self, url: str) -> list[str]:
        top = self.key(url).rstrip("/") + "/"
        return sorted(n[len(top):] for n in self.fs.find(url) if n.startswith(top))

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the filesystem's loop and wait for it."""
        import asyncio
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stat(self, url: str) -> Stat | None:
        try:
            info = self.fs.info(url)
        except FileNotFoundError as exc:
            if _status(exc.__cause__) in (401, 403):
                raise  # fsspec's HTTP backend calls a refusal "not found"
            return None
        if info.get("type") == "directory":
            return None
        return Stat(int(info.get("size") or 0), self._pin(info))

    def listing(self, url: str, limit: int | None = None) -> dict[str, Stat]:
        """Every object whose URL starts with `url` (listable backends); with `limit`, at most
        `limit` + 1 of them (more than `limit`: the listing is cut)."""
        raise NotImplementedError

    def _pin(self, info: dict) -> tuple:
        etag = info.get("ETag") or info.get("etag")
        return ("etag", etag) if etag else ()

    async def fetch(self, url: str, stat: Stat, start: int, end: int, fd: int) -> int:
        """Bytes [start, end) of the object written to `fd` at `start`: how many came.
        Raises _Changed when the object is no longer the one pinned by `stat`."""
        import asyncio
        fs = self.fs
        if getattr(fs, "async_impl", False):
            data = await fs._cat_file(self.key(url), start=start, end=end)
        else:
            data = await asyncio.get_running_loop().run_in_executor(
                None, lambda: fs.cat_file(self.key(url), start=start, end=end))
        return _write(fd, data, start)

    def put(self, local: str, url: str) -> None:
        self.fs.put_file(local, url)

    def rm(self, url: str) -> None:
        try:
            self.fs.rm_file(url)
        except FileNotFoundError:
            pass


class _ObjectStore(_Backend):
    listable = True

    def key(self, url: str) -> str:
        return url.split("://", 1)[1].lstrip("/")

    def url(self, key: str) -> str:
        return f"{self.protocol}://{key}"

    @staticmethod
    def split(key: str) -> tuple[str, str]:
        """(the folder to list, the name prefix inside it) for a key prefix."""
        bucket, _, rest = key.partition("/")
        if rest.endswith("/") or not rest:
            folder, name = rest.rstrip("/"), ""
        else:
            folder, name = posixpath.dirname(rest), posixpath.basename(rest)
        return (f"{bucket}/{folder}" if folder else bucket), name


class _S3(_ObjectStore):
    def listing(self, url: str, limit: int | None = None) -> dict[str, Stat]:
        key = self.key(url)
        base, name = self.split(key)
        if limit is not None:
            bucket, _, rest = key.partition("/")

            async def first() -> dict[str, dict]:
                return {i["name"]: i async for i in self.fs._iterdir(
                    bucket, max_items=limit + 1, delimiter="", prefix=rest)}
            found = self.run(first())
        else:
            found = self.fs.find(base, prefix=name, detail=True) if name else \
                self.fs.find(base, detail=True)
        return {self.url(n): Stat(int(i.get("size") or 0), self._pin(i))
                for n, i in found.items()
                if n.startswith(key) and i.get("type", "file") != "directory"}

    async def fetch(self, url: str, stat: Stat, start: int, end: int, fd: int) -> int:
        fs = self.fs
        bucket, key, _ = fs.split_path(url)
        extra = {"IfMatch": stat.pin[1]} if stat.pin[:1] == ("etag",) else {}
        try:
            resp = await fs._call_s3("get_object", Bucket=bucket, Key=key,
                                     Range=f"bytes={start}-{end - 1}", **extra)
        except FileNotFoundError:
            raise _Changed("the object is gone") from None
        except OSError as exc:
            if _error_code(exc) in ("PreconditionFailed", "412"):
                raise _Changed("its ETag changed") from None
            raise
        body = resp["Body"]
        try:
            etag = resp.get("ETag")
            if etag and stat.pin[:1] == ("etag",) and etag != stat.pin[1]:
                raise _Changed("its ETag changed")
            _check_range(resp.get("ContentRange"), stat, start, end)
            at = start
            while chunk := await body.read(STREAM_CHUNK):  # written as it comes
                at += _write_within(fd, chunk, at, end)
        finally:
            body.close()
        return at - start


class _GCS(_ObjectStore):
    def listing(self, url: str, limit: int | None = None) -> dict[str, Stat]:
        key = self.key(url)
        base, name = self.split(key)
        objects, _ = self.run(self.fs._do_list_objects(
            base, delimiter="", prefix=name, max_results=None if limit is None else limit + 1))
        return {self.url(o["name"]): Stat(int(o.get("size") or 0), self._pin(o))
                for o in objects
                if o["name"].startswith(key) and o.get("type", "file") != "directory"}

    def _pin(self, info: dict) -> tuple:
        generation = info.get("generation")
        return ("generation", str(generation)) if generation else super()._pin(info)

    async def fetch(self, url: str, stat: Stat, start: int, end: int, fd: int) -> int:
        fs = self.fs
        generation = stat.pin[1] if stat.pin[:1] == ("generation",) else None
        try:
            headers, data = await fs._call("GET", fs.url(self.key(url), generation=generation),
                                           headers={"Range": f"bytes={start}-{end - 1}"})
        except FileNotFoundError:  # the pinned generation is gone
            raise _Changed("the object's generation is gone") from None
        served = headers.get("x-goog-generation") or headers.get("X-Goog-Generation")
        if generation and served and served != generation:
            raise _Changed("its generation changed")
        _check_range(headers.get("Content-Range") or headers.get("content-range"), stat,
                     start, end)
        return _write_within(fd, data, start, end)


class _HTTP(_Backend):
    listable = False

    def stat(self, url: str) -> Stat | None:
        return self.run(self.astat(url))

    async def astat(self, url: str) -> Stat | None:
        try:
            info = await self.fs._info(url)
        except FileNotFoundError as exc:
            if _status(exc.__cause__) in (401, 403):
                raise  # fsspec's HTTP backend calls a refusal "not found"
            return None
        if info.get("size") is None:
            raise UsageError("the server does not say how large the file is (no "
                             "Content-Length); ranges cannot be read", display(url))
        return Stat(int(info["size"]), self._pin(info))

    def key(self, url: str) -> str:
        return url

    def isdir(self, url: str) -> bool:
        return url.endswith("/")

    def ls(self, url: str) -> list[str]:
        raise UsageError(f"{protocol(url)}:// URLs cannot be listed; name the file",
                         display(url))

    walk = ls

    async def fetch(self, url: str, stat: Stat, start: int, end: int, fd: int) -> int:
        fs = self.fs
        session = await fs.set_session()
        kwargs = dict(fs.kwargs)
        headers = dict(kwargs.pop("headers", None) or {})
        headers["Range"] = f"bytes={start}-{end - 1}"
        etag = stat.pin[1] if stat.pin[:1] == ("etag",) else None
        if etag and not etag.startswith("W/"):
            headers["If-Match"] = etag
        async with session.get(fs.encode_url(url), headers=headers, **kwargs) as response:
            if response.status in (404, 410, 412):
                raise _Changed("the server answers " + str(response.status))
            response.raise_for_status()
            served = response.headers.get("ETag")
            if etag and served and served != etag:
                raise _Changed("its ETag changed")
            if response.status == 200 and (start > 0 or end < stat.size):
                raise _NoRanges()
            _check_range(response.headers.get("Content-Range"), stat, start, end)
            at = start
            async for chunk in response.content.iter_chunked(STREAM_CHUNK):
                at += _write_within(fd, chunk, at, end)  # written as it comes
            return at - start

    async def download(self, url: str, stat: Stat, fd: int) -> None:
        """The whole object into `fd` at offset 0 (for a server without range requests)."""
        fs = self.fs
        session = await fs.set_session()
        kwargs = dict(fs.kwargs)
        async with session.get(fs.encode_url(url), **kwargs) as response:
            if response.status in (404, 410):
                raise _Changed("the server answers " + str(response.status))
            response.raise_for_status()
            served = response.headers.get("ETag")
            if stat.pin[:1] == ("etag",) and served and served != stat.pin[1]:
                raise _Changed("its ETag changed")
            at = 0
            async for chunk in response.content.iter_chunked(1 << 20):
                at += _write_within(fd, chunk, at, stat.size)
            if at != stat.size:
                raise _Changed(f"it has {at} bytes, not {stat.size}")

    def put(self, local: str, url: str) -> None:
        raise UsageError("weightkit writes to object storage (s3://, gs://, ...), not to "
                         "http(s):// URLs", display(url))


def _error_code(exc: BaseException | None) -> str | None:
    """The service's error code (botocore's `response["Error"]["Code"]`) of an exception or
    of the one it was translated from."""
    seen = 0
    while exc is not None and seen < 8:
        response = getattr(exc, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code"):
            return str(response["Error"]["Code"])
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _write(fd: int, data: Any, at: int) -> int:
    """`data` written to `fd` at `at`; its length."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], at + done)
    return len(view)


def _write_within(fd: int, data: Any, at: int, end: int) -> int:
    """`data` written to `fd` at `at`, refused (nothing written) if it would pass `end`: an
    answer longer than the range asked for would overwrite cached bytes of other ranges, or
    fill the disk (a server streaming without end)."""
    if at + len(data) > end:
        raise _BadAnswer(f"bytes past byte {end - 1}, the last asked for, came")
    return _write(fd, data, at)


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _check_range(text: str | None, stat: Stat, start: int, end: int) -> None:
    """The answer to a request for bytes [start, end) must say it holds those bytes
    (`Content-Range`, RFC 9110 §14.4; absent only for the whole object), of an object of the
    size pinned: bytes of another range are never taken for the ones asked for."""
    if not text:
        if start == 0 and end == stat.size:
            return
        raise _BadAnswer(f"a partial answer that does not say which bytes it holds (bytes "
                         f"{start}-{end - 1} were asked for)")
    match = _CONTENT_RANGE.fullmatch(text.strip())
    if match is None:
        raise _BadAnswer(f"an answer with the Content-Range {text.strip()[:60]!r}")
    total = match.group(3)
    if total != "*" and int(total) != stat.size:
        raise _Changed(f"it now has {total} bytes, not {stat.size}")
    first, last = int(match.group(1)), int(match.group(2))
    if (first, last + 1) != (start, end):
        raise _BadAnswer(f"bytes {first}-{last} came for a request of bytes {start}-{end - 1}")


_BACKENDS: dict[str, type[_Backend]] = {"s3": _S3, "s3a": _S3, "gs": _GCS, "gcs": _GCS,
                                        "http": _HTTP, "https": _HTTP}
_backends: dict[str, _Backend] = {}


def _backend(url: str) -> _Backend:
    proto = protocol(url) or "file"
    with _lock:
        backend = _backends.get(proto)
        if backend is None:
            backend = _backends[proto] = _BACKENDS.get(proto, _Backend)(proto)
    backend.fs  # noqa: B018 - the missing package is named here, once
    return backend


def _status(exc: BaseException | None) -> int | None:
    """The HTTP status behind an exception, or behind the one it was raised from (fsspec's
    HTTP backend turns a 403 into FileNotFoundError)."""
    for _ in range(8):
        if exc is None:
            return None
        for attr in ("status", "code"):
            value = getattr(exc, attr, None)
            if isinstance(value, int) and 100 <= value < 600:
                return value
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(status, int):
                return status
        exc = exc.__cause__ or exc.__context__
    return None


def remote_error(exc: BaseException, url: str, doing: str = "read") -> WeightsError:
    """One line naming the URL for what a backend raised (never its credentials)."""
    import asyncio
    where = display(url)
    if isinstance(exc, WeightsError):
        return exc
    if isinstance(exc, _Changed):
        return FileChangedError(f"the object changed while it was being read ({exc}); read "
                                "it again once nothing writes to it", where)
    if isinstance(exc, _BadAnswer):
        return UsageError(f"cannot read: the server answered a range request wrongly ({exc})",
                          where)
    status = _status(exc)
    text = _clean(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if isinstance(exc, PermissionError) or status in (401, 403) or \
            re.search(r"AccessDenied|Forbidden|Unauthorized|InvalidAccessKeyId|"
                      r"SignatureDoesNotMatch", text):
        return UsageError(f"access denied ({text}); check the credentials for "
                          f"{protocol(url)}://", where)
    if isinstance(exc, FileNotFoundError) or status == 404:
        return UsageError("no such file or object", where)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return UsageError(f"cannot {doing}: the server did not answer in time", where)
    return UsageError(f"cannot {doing}: {type(exc).__name__}: {text}", where)


# -- paths on URLs -------------------------------------------------------------------------------

def _call(url: str, fn: Any, doing: str = "read") -> Any:
    try:
        return fn()
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every backend error becomes one line
        raise remote_error(exc, url, doing) from None


def _entries(url: str, limit: int | None = None) -> dict[str, Stat] | None:
    """The objects under the prefix `url` (from the session's listing covering it, or one new
    listing); with `limit`, None when there are more than that (nothing kept)."""
    cache = _listings()
    found = cache.covering(url)
    if found is None:
        backend = _backend(url)
        found = _call(url, lambda: backend.listing(url, limit), "list")
        if limit is not None and len(found) > limit:
            return None
        cache.prefixes[url] = found
    return found


def forget(prefix: str) -> None:
    """Drop what the session knows about objects under `prefix` (after writing there)."""
    cache = _shared[1]
    if cache is None or not is_url(prefix):
        return
    with _lock:
        for known in [p for p in cache.prefixes if p.startswith(prefix) or prefix.startswith(p)]:
            del cache.prefixes[known]
        for known in [u for u in cache.single if u.split(":", 1)[-1].startswith(
                prefix.split(":", 1)[-1])]:
            del cache.single[known]


def scan(prefix: str) -> None:
    """List the objects under `prefix` once now (nothing for a local path or an HTTP URL):
    later questions about the objects under it are answered from this listing. A prefix of
    more than SCAN_LIMIT objects (a model.json at the top of a bucket of millions) is not
    listed whole: each object is then asked for on its own (a listing of its name)."""
    if is_url(prefix) and _backend(prefix).listable:
        _entries(prefix, SCAN_LIMIT)


def stat(url: str) -> Stat | None:
    """The object at `url`, or None when there is none."""
    cache = _listings()
    backend = _backend(url)
    if backend.listable:
        return _entries(url).get(url)
    if url not in cache.single:
        cache.single[url] = _call(url, lambda: backend.stat(url))
    return cache.single[url]


def stat_all(urls: Sequence[str]) -> None:
    """Ask about many objects at once, for the `stat` calls that follow: over HTTP, which has
    no listings, the HEAD requests go out together (a TF.js model's 64 shards: one round trip,
    not 64). Errors are left for `stat` to raise."""
    if not any(is_url(u) for u in urls):
        return
    import asyncio
    cache = _listings()
    todo = [u for u in dict.fromkeys(urls) if is_url(u) and u not in cache.single]
    todo = [u for u in todo if isinstance(_backend(u), _HTTP)]
    if not todo:
        return
    backend = _backend(todo[0])
    same = [u for u in todo if _backend(u) is backend]

    async def all_of() -> list:
        limit = asyncio.Semaphore(MAX_REQUESTS)

        async def one(url: str) -> Any:
            async with limit:
                return await backend.astat(url)
        return await asyncio.gather(*(one(u) for u in same), return_exceptions=True)
    for url, found in zip(same, backend.run(all_of())):
        if not isinstance(found, BaseException):
            cache.single[url] = found
    stat_all([u for u in todo if u not in same])


def isfile(path: str) -> bool:
    if not is_url(path):
        return os.path.isfile(path)
    return stat(path) is not None


def isdir(path: str) -> bool:
    if not is_url(path):
        return os.path.isdir(path)
    backend = _backend(path)
    if not backend.listable:
        cache = _listings()
        key = "dir:" + path
        if key not in cache.single:
            cache.single[key] = _call(path, lambda: backend.isdir(path), "list")
        return bool(cache.single[key])
    folder = path.rstrip("/") + "/"
    return any(u.startswith(folder) for u in _entries(folder))


def exists(path: str) -> bool:
    return isfile(path) or isdir(path) if is_url(path) else os.path.exists(path)


def getsize(path: str) -> int:
    if not is_url(path):
        return os.path.getsize(path)
    found = stat(path)
    if found is None:
        raise UsageError("no such file or object", display(path))
    return found.size


def listdir(path: str) -> list[str]:
    """The names directly inside a directory (objects and sub-prefixes)."""
    if not is_url(path):
        return os.listdir(path)
    backend = _backend(path)
    if not backend.listable:
        return _call(path, lambda: backend.ls(path), "list")
    folder = path.rstrip("/") + "/"
    return sorted({u[len(folder):].split("/", 1)[0] for u in _entries(folder)
                   if len(u) > len(folder)})


def walk_files(directory: str) -> list[str]:
    """Every file under `directory`, as sorted relative paths (`/`-separated for URLs);
    locally, a symlink leading outside or a special file is refused first (`paths.check_tree`)."""
    if not is_url(directory):
        paths.check_tree(directory)
        out = []
        for parent_dir, _, names in os.walk(directory):
            rel = os.path.relpath(parent_dir, directory)
            out += [os.path.normpath(os.path.join(rel, n)) for n in names]
        return sorted(out)
    backend = _backend(directory)
    if not backend.listable:
        return _call(directory, lambda: backend.walk(directory), "list")
    folder = directory.rstrip("/") + "/"
    return sorted(u[len(folder):] for u in _entries(folder) if len(u) > len(folder))


def check_input(path: str) -> int:
    """The size of an input file (0 for a directory), refusing what is missing and (locally) a
    FIFO, socket or device."""
    if not is_url(path):
        st = paths.check_input(path)
        return 0 if os.path.isdir(path) else st.st_size
    found = stat(path)
    if found is not None:
        return found.size
    if isdir(path):
        return 0
    raise UsageError("no such file or object", display(path))


def read_bytes(path: str, limit: int | None = None) -> bytes:
    """A small file's content, at most `limit` bytes (a file larger is cut there: the caller
    compares the length with its limit). One request for a URL."""
    with open_source(path) as src:
        n = src.size if limit is None else min(src.size, limit)
        return src.pread(0, n)


def head(path: str, n: int = 4096) -> bytes:
    """The first `n` bytes of a file (b"" for a directory)."""
    if isdir(path) and not isfile(path):
        return b""
    return read_bytes(path, n)


# -- opening -------------------------------------------------------------------------------------

def open_source(path: str | os.PathLike, pinned: Stat | None = None) -> Any:
    """The open file at `path` (a `MappedFile` locally, a `RemoteFile` for a URL), which
    must exist. `pinned`: the stat the object was listed with (a reader that listed a
    checkpoint's shards at open pins them then, however late it reads them)."""
    path = os.fspath(path)
    if not is_url(path):
        return MappedFile(local_path(path))
    cache = _listings()
    opened = cache.files.get(path)
    if opened is not None and not opened.closed and (pinned is None or pinned == opened.stat):
        return opened.share()
    found = pinned or stat(path)
    if found is None:
        raise UsageError("no such file or object", display(path))
    opened = RemoteFile(path, found)
    if _shared[1] is cache:
        cache.files[path] = opened.share()  # kept open for the session (closed at its end)
    return opened


class _Shared:
    """A block table in shared anonymous memory (kept across fork): per block 0 = absent,
    > 0 = present (the fetch's sequence number), < 0 = being fetched or evicted by process
    -value. Slot 0 is the sequence counter."""

    def __init__(self, blocks: int):
        self.memory = mmap.mmap(-1, 8 * (blocks + 1))
        self.table = np.frombuffer(self.memory, dtype=np.int64)

    def next_seq(self) -> int:
        self.table[0] += 1
        return int(self.table[0])


_PUNCH = None


def _punch(fd: int, offset: int, length: int) -> None:
    """Give the disk space of a cached range back (Linux fallocate PUNCH_HOLE; elsewhere the
    space stays used until the file closes)."""
    global _PUNCH
    if _PUNCH is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
            _PUNCH = libc.fallocate
        except (OSError, AttributeError):
            _PUNCH = False
    if _PUNCH:
        _PUNCH(fd, 3, offset, length)  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE


class RemoteFile:
    """An object read by ranges through fsspec (see the module docstring). Thread-safe; a
    forked child reads through its own connections and shares the parent's cache."""

    def __init__(self, url: str, pinned: Stat):
        self.url = url
        self.name = self.path = display(url)
        self.local = None
        self.stat = pinned
        self.size = pinned.size
        self.closed = False
        self._users = 1
        self._backend = _backend(url)
        self._blocks = max(1, -(-self.size // BLOCK))
        self._shared = _Shared(self._blocks)
        fd, name = tempfile.mkstemp(prefix="weightkit-remote-")
        if sys.platform.startswith("linux"):
            os.unlink(name)
            name = f"/proc/self/fd/{fd}"
        self._fd, self._cache_path = fd, name
        os.ftruncate(fd, self.size)
        self._pending: list[tuple[int, int, int]] = []  # planned: (start, end, read position)
        self._ranges: list[tuple[int, int, int]] = []  # ... already made into pieces
        self._index: list[tuple[int, int]] = []  # the pieces, in file order
        self._starts: list[int] = []
        self._order: list[int] = []  # the pieces in reading order
        self._rank: dict[int, int] = {}
        self._whole = False  # every block fetched and kept (mapped(), a server without ranges)
        self._mapped: MappedFile | None = None
        self._after_fork()
        if self.size <= io_budget() // 4:  # small: the whole object in a request or two
            self.plan([(0, self.size)])

    def _after_fork(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._inflight: dict[tuple[int, int], concurrent.futures.Future] = {}
        self._last_rank = -2

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            self._after_fork()
        if self.closed:
            raise UsageError("the store is closed", self.name)

    def share(self) -> "RemoteFile":
        self._users += 1
        return self

    # -- planning --------------------------------------------------------------------------------

    def plan(self, ranges: Iterable[tuple[int, int]]) -> None:
        """Add ranges (offset, length) the reader will read, in the order it will read them
        (a store's order, which need not be the file's). Cheap: the pieces are made when a
        read first needs them (see `_flush`)."""
        self._check_fork()
        with self._lock:
            at = len(self._ranges) + len(self._pending)
            self._pending += [(o, min(o + n, self.size), at + k)
                              for k, (o, n) in enumerate(ranges) if n > 0 and 0 <= o < self.size]

    def _flush(self) -> None:
        """Make the planned ranges into pieces (call with the lock): merged in file order
        where at most MERGE_GAP apart, at most a piece each; each piece ranked by the first
        read of a range in it, which is the order pieces are read ahead in."""
        if not self._pending:
            return
        self._ranges += self._pending
        self._pending = []
        pieces: list[list[int]] = []  # [start, end, rank]
        for start, end, at in sorted(self._ranges):
            last = pieces[-1] if pieces else None
            if last is not None and start - last[1] <= MERGE_GAP and \
                    max(end, last[1]) - last[0] <= _piece():
                last[1], last[2] = max(end, last[1]), min(at, last[2])
                continue
            if last is not None and start < last[1]:  # overlaps, but too long to merge
                start = last[1]
                if end <= start:
                    continue
            while end - start > _piece():
                pieces.append([start, start + _piece(), at])
                start += _piece()
            pieces.append([start, end, at])
        self._index = [(s, e) for s, e, _ in pieces]
        self._starts = [s for s, _ in self._index]
        order = sorted(range(len(pieces)), key=lambda i: (pieces[i][2], i))
        self._order = order  # piece positions in reading order
        self._rank = {piece: k for k, piece in enumerate(order)}

    def _piece_at(self, offset: int) -> int | None:
        """The piece holding byte `offset` (its position in file order), or None."""
        i = bisect.bisect_right(self._starts, offset) - 1
        return i if i >= 0 and offset < self._index[i][1] else None

    def _piece_for_block(self, b: int) -> int | None:
        """A planned piece overlapping block `b`, or None."""
        i = bisect.bisect_right(self._starts, (b + 1) * BLOCK - 1) - 1
        return i if i >= 0 and self._index[i][1] > b * BLOCK else None

    # -- reading ---------------------------------------------------------------------------------

    def pread(self, offset: int, n: int) -> bytes:
        """Up to `n` bytes at `offset` (fewer only past the end of the object)."""
        self._check_fork()
        if offset < 0 or n < 0:
            raise UsageError(f"negative read ({offset}, {n})", self.name)
        n = max(0, min(n, self.size - offset))
        if n == 0:
            return b""
        out = bytearray(n)
        step = _piece()
        for at in range(0, n, step):  # the cache holds at most a budget, however large the read
            m = min(step, n - at)
            self._read_into(memoryview(out)[at:at + m], offset + at)
        return bytes(out)

    def array(self, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """The read-only C-order array of `shape` whose bytes start at `offset` (a copy)."""
        self._check_fork()
        dtype = np.dtype(dtype)
        count = math.prod(shape)
        if count == 0:
            return np.empty(shape, dtype)
        nbytes = count * dtype.itemsize
        if offset < 0 or offset + nbytes > self.size:
            raise CorruptFileError(f"{nbytes} bytes at {offset} run past the end of the file "
                                   f"({self.size} bytes)", self.name)
        out = np.empty(count, dtype)
        raw = memoryview(out.view(np.uint8))
        step = _piece()
        for at in range(0, nbytes, step):  # copied once, from the cache into the array
            self._read_into(raw[at:at + step], offset + at)
        out.flags.writeable = False
        return out.reshape(shape)

    def preads(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The bytes of several ranges, fetched together in merged requests."""
        self._check_fork()
        wanted = merge(sorted((o, min(o + n, self.size)) for o, n in ranges if n > 0),
                       MERGE_GAP, _piece())
        budget = io_budget()
        batch: list[tuple[int, int]] = []
        for start, end in wanted + [(0, 0)]:  # fetch up to a budget at a time
            if (end <= start or sum(e - s for s, e in batch) + end - start > budget) and batch:
                self._ensure([(s // BLOCK, -(-e // BLOCK)) for s, e in batch], keep=True,
                             exact=True)
                batch = []
            if end > start:
                batch.append((start, end))
        return [self.pread(o, n) for o, n in ranges]

    def _read_into(self, out: memoryview, offset: int) -> None:
        first, last = offset // BLOCK, -(-(offset + len(out)) // BLOCK)
        table = self._shared.table
        for _ in range(64):
            self._ensure([(first, last)])
            before = table[first + 1:last + 1].copy()
            if (before <= 0).any():
                continue  # evicted by another process meanwhile
            got = os.preadv(self._fd, [out], offset)
            if got == len(out) and np.array_equal(before, table[first + 1:last + 1]):
                return
        raise UsageError("the remote read cache is thrashing; raise --io-budget", self.name)

    def _ensure(self, spans: list[tuple[int, int]], keep: bool = False,
                exact: bool = False) -> None:
        """Make the blocks [first, last) of each span present, fetching what is missing: the
        whole planned piece a missing block lies in (or the block alone; `exact`: only the
        spans' own blocks), and the pieces read next when the reads follow the plan."""
        import concurrent.futures
        table = self._shared.table
        me = os.getpid()
        while True:
            waiting: set[concurrent.futures.Future] = set()
            others = False
            with self._lock:
                self._flush()
                for first, last in spans:
                    for b in range(first, last):
                        state = int(table[b + 1])
                        if state > 0:
                            continue
                        if state < 0:
                            mine = [f for (s, e), f in self._inflight.items() if s <= b < e]
                            if mine:
                                waiting.update(mine)
                                continue
                            if -state != me and _alive(-state):
                                others = True  # another process fetches (or evicts) it
                                continue
                            table[b + 1] = 0  # left behind by a process that ended
                        piece = None if exact else self._piece_for_block(b)
                        runs = self._piece_runs(piece) if piece is not None \
                            else self._missing(b, last)
                        runs = [r for r in runs if r[0] <= b < r[1]] + \
                            [r for r in runs if not r[0] <= b < r[1]]
                        for run in runs:
                            future = self._submit(run)
                            if future is not None and run[0] <= b < run[1]:
                                waiting.add(future)
                        if table[b + 1] == 0:  # not started: too many requests in flight
                            if self._inflight:
                                waiting.update(self._inflight.values())
                            else:
                                others = True
                if not waiting and not others:
                    self._evict(spans, keep)
                    if not exact:
                        self._read_ahead(spans)
                    return
                if not exact:
                    self._read_ahead(spans)
            if waiting:
                done, _ = concurrent.futures.wait(
                    waiting, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    future.result()  # raises the fetch's error
            else:
                time.sleep(0.005)

    def _blocks_of(self, piece: int) -> tuple[int, int]:
        start, end = self._index[piece]
        return start // BLOCK, min(self._blocks, -(-end // BLOCK))

    def _piece_runs(self, piece: int) -> list[tuple[int, int]]:
        """The request(s) that complete a piece: one, from its first missing block to its
        last (blocks cached in between are fetched again rather than splitting the request),
        unless some are in flight."""
        first, last = self._blocks_of(piece)
        states = self._shared.table[first + 1:last + 1]
        absent = np.flatnonzero(states == 0)
        if absent.size == 0:
            return []
        lo, hi = first + int(absent[0]), first + int(absent[-1]) + 1
        if (self._shared.table[lo + 1:hi + 1] < 0).any():
            return self._missing(first, last)
        return [(lo, hi)]

    def _missing(self, first: int, last: int) -> list[tuple[int, int]]:
        """The runs of absent blocks in [first, last), each at most a piece."""
        table = self._shared.table
        runs: list[tuple[int, int]] = []
        step = _piece() // BLOCK
        b = first
        while b < last:
            if table[b + 1] != 0:
                b += 1
                continue
            end = b + 1
            while end < last and end - b < step and table[end + 1] == 0:
                end += 1
            runs.append((b, end))
            b = end
        return runs

    def _read_ahead(self, spans: list[tuple[int, int]]) -> None:
        """When reads go forward through the plan (into the piece after the last one read, in
        reading order), fetch the pieces read next: half a budget ahead of the reads."""
        piece = self._piece_for_block(spans[0][0]) if self._index else None
        if piece is None:
            return
        rank = self._rank[piece]
        if rank == self._last_rank:
            pass  # still in the same piece: keep the read-ahead going
        elif rank != self._last_rank + 1:
            self._last_rank = rank
            return
        self._last_rank = rank
        ahead = 0
        for nxt in self._order[rank + 1:]:
            if ahead >= io_budget() // 2:
                return
            first, last = self._blocks_of(nxt)
            ahead += (last - first) * BLOCK
            for run in self._piece_runs(nxt):
                if self._submit(run) is None:
                    return

    def _inflight_bytes(self) -> int:
        return sum((e - s) * BLOCK for s, e in self._inflight)

    def _limit(self) -> int:
        return max(1, min(MAX_REQUESTS, io_budget() // _piece()))

    def _submit(self, run: tuple[int, int]) -> concurrent.futures.Future | None:
        """Claim the blocks of `run` and start fetching them (None when too many requests are
        in flight already, or the run is no longer missing)."""
        import asyncio
        table = self._shared.table
        first, last = run
        states = table[first + 1:last + 1]
        if (states < 0).any() or not (states == 0).any():
            return None
        if len(self._inflight) >= self._limit():
            return None
        states[states == 0] = -os.getpid()  # blocks cached already are fetched again, unclaimed
        start, end = first * BLOCK, min(last * BLOCK, self.size)
        future = asyncio.run_coroutine_threadsafe(self._fetch(first, last, start, end),
                                                  self._backend.loop)
        self._inflight[run] = future
        future.add_done_callback(lambda _f, run=run: self._inflight.pop(run, None))
        return future

    async def _fetch(self, first: int, last: int, start: int, end: int) -> None:
        import asyncio
        table = self._shared.table
        try:
            try:
                got = await self._backend.fetch(self.url, self.stat, start, end, self._fd)
            except _NoRanges:
                await self._download()
                return
            if got != end - start:
                raise _Changed(f"{got} bytes came for a range of {end - start}")
            seq = self._shared.next_seq()
            table[first + 1:last + 1] = seq
        except BaseException as exc:
            table[first + 1:last + 1] = np.where(table[first + 1:last + 1] < 0, 0,
                                                 table[first + 1:last + 1])
            if isinstance(exc, (WeightsError, asyncio.CancelledError)):
                raise
            raise remote_error(exc, self.url) from None

    async def _download(self) -> None:
        download = getattr(self._backend, "download", None)
        if download is None:
            raise UsageError("the server ignores range requests", self.name)
        await download(self.url, self.stat, self._fd)
        self._whole = True
        self._shared.table[1:] = self._shared.next_seq()

    def _evict(self, spans: list[tuple[int, int]], keep: bool) -> None:
        """Drop the oldest cached blocks (outside `spans`) while the cache holds more than
        CACHE_BUDGETS times the budget."""
        if self._whole or keep:
            return
        table = self._shared.table[1:]
        cap = max(CACHE_BUDGETS * io_budget(), 2 * _piece())
        present = np.flatnonzero(table > 0)
        excess = present.size * BLOCK - cap
        if excess <= 0:
            return
        protected = np.zeros(self._blocks, dtype=bool)
        for first, last in spans:
            protected[first:last] = True
        candidates = present[~protected[present]]
        order = candidates[np.argsort(table[candidates], kind="stable")]
        me = -os.getpid()
        for b in order[:-(-excess // BLOCK)]:
            table[b] = me
            _punch(self._fd, int(b) * BLOCK, BLOCK)
            table[b] = 0

    # -- whole-file access -----------------------------------------------------------------------

    def fetch_all(self) -> None:
        """Every byte into the local cache, kept (in merged concurrent requests)."""
        self._check_fork()
        if not self._whole:
            step = _piece() // BLOCK
            self._ensure([(b, min(b + step, self._blocks))
                          for b in range(0, self._blocks, step)], keep=True)
            self._whole = True

    def mapped(self) -> MappedFile:
        """The whole object as a local `MappedFile` (fetched once, then read locally)."""
        self._check_fork()
        if self._mapped is None:
            self.fetch_all()  # kept: nothing is evicted from here on
            self._mapped = MappedFile(self._cache_path, name=self.name)
        return self._mapped

    def fileobj(self) -> BinaryIO:
        """A seekable read-only binary file over the object (reads go through the cache)."""
        return io.BufferedReader(_Window(self, 0, self.size), 1 << 16)

    def close(self) -> None:
        self._users -= 1
        if self._users > 0 or self.closed:
            return
        self.closed = True
        if self._mapped is not None:
            self._mapped.close()
        if self._pid == os.getpid():
            for future in list(self._inflight.values()):
                future.cancel()
        try:
            os.close(self._fd)
        except OSError:
            pass
        if not self._cache_path.startswith("/proc/"):
            with contextlib.suppress(OSError):
                os.unlink(self._cache_path)

    def __enter__(self) -> "RemoteFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if not self.closed:
                self._users = 1
                self.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def merge(ranges: Sequence[tuple[int, int]], gap: int, limit: int) -> list[tuple[int, int]]:
    """Sorted (start, end) ranges merged where at most `gap` bytes apart, into pieces of at
    most `limit` bytes (a longer range is split)."""
    out: list[tuple[int, int]] = []
    for start, end in ranges:
        if out and start - out[-1][1] <= gap and max(end, out[-1][1]) - out[-1][0] <= limit:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
            continue
        if out and start < out[-1][1]:
            start = out[-1][1]
            if end <= start:
                continue
        while end - start > limit:
            out.append((start, start + limit))
            start += limit
        out.append((start, end))
    return out


class _Window(io.RawIOBase):
    """A read-only, seekable view of `size` bytes at `offset` of an open source."""

    def __init__(self, data: Any, offset: int, size: int):
        self._data, self._offset, self._size, self._pos = data, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        if n == 0:
            return 0
        data = self._data.pread(self._offset + self._pos, n)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)


def window(data: Any, offset: int, size: int) -> io.BufferedReader:
    """A seekable binary file over `size` bytes at `offset` of an open source."""
    return io.BufferedReader(_Window(data, offset, size), 1 << 16)


# -- writing -------------------------------------------------------------------------------------

def copy_file(path: str, dest: str) -> None:
    """Copy the file `path` (local or a URL) to the local file `dest`, a piece at a time."""
    if not is_url(path):
        shutil.copyfile(path, dest)
        return
    with open_source(path) as src, open(dest, "wb") as out:
        step = _piece()
        for at in range(0, src.size, step):
            out.write(src.pread(at, min(step, src.size - at)))

def upload(local: str, url: str) -> None:
    """Copy a local file to the object `url` (one object, whole or not at all)."""
    backend = _backend(url)
    _call(url, lambda: backend.put(local, url), "write")


def remove(url: str) -> None:
    backend = _backend(url)
    _call(url, lambda: backend.rm(url), "remove")
