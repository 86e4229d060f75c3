"""Reading untrusted zip archives (npz, `.keras`) without extracting anything: one set of rules.

`SafeZip(path)` opens an archive and checks every member before any member data is read;
anything that could mean a path outside the archive, a bomb or a lie is refused:

- names: relative paths of non-empty parts, no `.` or `..` part, no backslash, NUL, leading `/`
  or drive letter (`C:`), each name once (UnsafeFileError);
- no encryption (traditional or strong, general-purpose flag bits 0 and 6), stored or deflated
  members only (UnsafeFileError); no member needing a zip version newer than zipfile reads
  (CorruptFileError);
- sizes: a stored member's sizes agree; no member declares more than deflate can produce from
  its compressed bytes (1032:1, RFC 1951's longest match over a 1-bit code; UnsafeFileError);
  the whole archive declares at most that ratio of its own size;
- layout: every local header is a local header naming the member its central entry names, with
  the same method; each member's local header and data lie inside the file, and no two members
  share bytes (overlapping members are how a small zip is made to inflate into terabytes
  within the per-member ratio; UnsafeFileError).

Stored members are read through the byte seam (`source.py`: zero-copy views of a local file; the
CRC-32 checked once, over the mapped bytes, on first use); deflated ones by zipfile, which checks
the CRC-32 when a member is read to its end. Zip format: PKWARE APPNOTE.TXT 6.3.x (4.3.7 local
header, 4.3.12 central directory header, 4.4.4 general purpose flags).

An archive at a URL is opened from its central directory alone (the end of the file, through the
block cache): each member's local header is checked when the member is first used, against the
same rules (members sorted by header offset share no bytes exactly when each one ends before the
next begins, so the check is per member). `plan(members)` tells the seam which members will be
read (their header and data are then fetched in merged requests) and `heads(members, n)` reads
the first bytes of many members in merged requests.
"""
from __future__ import annotations

import bisect
import os
import struct
import threading
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import CorruptFileError, UnsafeFileError, UsageError, WeightsError
from . import source as seam

DEFLATE_MAX_RATIO = 1032  # deflate cannot expand data more than this
SMALL_BYTES = 1024  # declared bytes any member may have beyond the ratio (headers of tiny ones)
CRC_BLOCK = 16 << 20
LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # signature, version, flags, method, time, date,
#                                            crc, compressed, uncompressed, name and extra length
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
              ValueError, NotImplementedError, struct.error)


_NAMES: dict[tuple, list[str] | None] = {}  # the last few archives' member names, by identity


def member_names(path: str) -> list[str] | None:
    """The member names of the zip archive at `path` (unchecked; for sniffing), or None when it
    is not a readable zip. Remembered for the file as it is (device, inode, size, mtime; a
    URL's pin), so that every format's sniff of an archive of 100,000 members reads its
    directory once."""
    try:
        if seam.is_url(path):
            found = seam.stat(path)
            if found is None:
                return None
            key: tuple = (path, found.size, found.pin)
        else:
            st = os.stat(path)
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    except (OSError, WeightsError):
        return None
    if key not in _NAMES:
        try:
            with seam.open_source(path) as data, data.fileobj() as f, zipfile.ZipFile(f) as zf:
                _NAMES[key] = zf.namelist()
        except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError,
                NotImplementedError, WeightsError):  # zipfile: a member needs a newer version
            _NAMES[key] = None
        while len(_NAMES) > 8:
            del _NAMES[next(iter(_NAMES))]
    return _NAMES[key]


def check_member_name(name: str, path: str | None) -> None:
    """Refuse member names that could mean a path outside the archive (UnsafeFileError)."""
    parts = name.split("/")
    if (not name or name.startswith("/") or "\\" in name or "\x00" in name
            or (len(name) > 1 and name[0].isalpha() and name[1] == ":")
            or any(p in ("", ".", "..") for p in parts[:-1] + [parts[-1] or "x"])):
        raise UnsafeFileError(f"refusing zip member name {name!r}: expected a relative path "
                              "inside the archive", path)


@dataclass
class Member:
    """A checked member: its zipfile entry and where its data lies in the archive (-1 until
    its local header is read, for an archive at a URL), and where the next member begins."""
    info: zipfile.ZipInfo
    data_start: int
    limit: int = -1

    @property
    def name(self) -> str:
        return self.info.filename

    @property
    def size(self) -> int:
        return self.info.file_size

    @property
    def stored(self) -> bool:
        return self.info.compress_type == zipfile.ZIP_STORED

    @property
    def is_dir(self) -> bool:
        return self.info.filename.endswith("/")


class SafeZip:
    """An untrusted zip archive, checked as a whole on opening (see the module docstring).

    `members` lists the checked members in archive order (directories included). Reading:
    `read(m)` the whole content (CRC checked), `range(m, start, stop)` a part, `array(m, ...)`
    a zero-copy view of a stored member, `window(m)` a seekable file over a stored member.
    Close it (or use it as a context manager) to release the file.
    """

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.Lock()  # the cached decompressing stream is shared
        self._stream: tuple[str, Any] | None = None
        self._verified: set[str] = set()
        self.data = seam.open_source(path)
        self.remote = self.data.local is None  # local headers checked on first use
        self.file = None
        self.zip = None
        try:
            if self.data.size == 0:
                raise CorruptFileError("empty file; expected a zip archive", path)
            self.file = self.data.fileobj()
            try:
                self.zip = zipfile.ZipFile(self.file)
            except ZIP_ERRORS as exc:
                raise CorruptFileError(f"not a valid zip archive ({exc})", path) from None
            self.members = self._check()
            self.by_name = {m.name: m for m in self.members}
        except OSError as exc:
            self.close()
            raise CorruptFileError(f"unreadable zip archive ({exc.strerror or exc})",
                                   path) from None
        except BaseException:
            self.close()
            raise

    def _check(self) -> list[Member]:
        path, size = self.path, self.data.size
        members, seen, spans, declared = [], set(), [], 0
        starts = sorted(info.header_offset for info in self.zip.infolist())
        directory = getattr(self.zip, "start_dir", size)
        for info in self.zip.infolist():
            name = info.filename
            check_member_name(name, path)
            if name in seen:
                raise UnsafeFileError(f"zip member {name!r} appears twice", path)
            seen.add(name)
            if info.flag_bits & 0x41:
                raise UnsafeFileError(f"zip member {name!r} is encrypted", path)
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise UnsafeFileError(f"zip member {name!r}: compression method "
                                      f"{info.compress_type}; only stored and deflated members "
                                      "are read (their expansion is bounded)", path)
            if info.extract_version > zipfile.MAX_EXTRACT_VERSION:
                raise CorruptFileError(f"zip member {name!r} needs zip version "
                                       f"{info.extract_version / 10:.1f} to extract", path)
            if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
                raise CorruptFileError(f"stored zip member {name!r} declares {info.file_size} "
                                       f"bytes but stores {info.compress_size}", path)
            if info.file_size > info.compress_size * DEFLATE_MAX_RATIO + SMALL_BYTES:
                raise UnsafeFileError(f"zip member {name!r} declares {info.file_size} bytes "
                                      f"from {info.compress_size} compressed (a decompression "
                                      "bomb)", path)
            if self.remote:  # the local header later: the least it can take now
                start = info.header_offset + LOCAL_HEADER.size + len(_raw_name(info))
            else:
                start = self._data_start(info)
            end = start + info.compress_size
            if end > size or info.header_offset < 0:
                raise CorruptFileError(f"zip member {name!r} runs past the end of the file",
                                       path)
            spans.append((info.header_offset, end, name))
            declared += info.file_size
            at = bisect.bisect_right(starts, info.header_offset)
            limit = starts[at] if at < len(starts) else max(directory, end)
            members.append(Member(info, -1 if self.remote else start, limit))
        if declared > size * DEFLATE_MAX_RATIO + SMALL_BYTES * max(len(members), 1):
            raise UnsafeFileError(f"the members declare {declared} bytes from a "
                                  f"{size}-byte archive (a decompression bomb)", path)
        spans.sort()
        for (_, end, name), (begin, _, other) in zip(spans, spans[1:]):
            if begin < end:
                raise UnsafeFileError(f"zip members {name!r} and {other!r} share bytes "
                                      "(overlapping members: a zip bomb)", path)
        return members

    def plan(self, members: list[Member]) -> None:
        """Tell the seam these members will be read: each one's local header and data (for a
        URL, fetched in merged requests when first used; nothing to do locally)."""
        if self.remote:
            self.data.plan((m.info.header_offset, m.limit - m.info.header_offset)
                           for m in members if m.limit > m.info.header_offset)

    def heads(self, members: list[Member], n: int) -> dict[str, bytes]:
        """The first `n` bytes (or fewer) of each stored member's content, read together (for a
        URL in merged requests, each local header checked on the way)."""
        stored = [m for m in members if m.stored]
        if not self.remote or self.data.size <= seam.io_budget() // 4:  # (read whole: cached)
            return {m.name: self.range(m, 0, min(m.size, n)) for m in stored}
        spans = [(m.info.header_offset, min(m.limit, m.info.header_offset + LOCAL_HEADER.size
                                             + len(_raw_name(m.info)) + len(m.info.extra)
                                             + 64 + n) - m.info.header_offset)
                 for m in stored]
        out = {}
        for member, raw in zip(stored, self.data.preads(spans)):
            self._resolve(member, raw)
            at = member.data_start - member.info.header_offset
            out[member.name] = raw[at:at + min(member.size, n)]
        return out

    def _start(self, member: Member) -> int:
        """Where the member's data begins (its local header read and checked first, once)."""
        if member.data_start < 0:
            self._resolve(member, None)
        return member.data_start

    def _resolve(self, member: Member, raw: bytes | None) -> None:
        if member.data_start >= 0:
            return
        start = self._data_start(member.info, raw)
        if start + member.info.compress_size > member.limit:
            raise UnsafeFileError(f"zip member {member.name!r} runs into the next member "
                                  "(overlapping members: a zip bomb)", self.path)
        member.data_start = start

    def _data_start(self, info: zipfile.ZipInfo, raw: bytes | None = None) -> int:
        """Where a member's data begins: after its local header, which must agree with the
        central directory entry. `raw`: bytes from the header on, if already read."""
        offset, name, path = info.header_offset, info.filename, self.path
        head = raw
        if raw is None or len(raw) < LOCAL_HEADER.size:
            raw = self.data.pread(offset, LOCAL_HEADER.size) if offset >= 0 else b""
        raw = raw[:LOCAL_HEADER.size]
        if len(raw) != LOCAL_HEADER.size:
            raise CorruptFileError(f"zip member {name!r}: local header outside the file", path)
        fields = LOCAL_HEADER.unpack(raw)
        if fields[0] != b"PK\x03\x04":
            raise CorruptFileError(f"zip member {name!r}: bad local header", path)
        if fields[3] != info.compress_type:
            raise CorruptFileError(f"zip member {name!r}: the local header says compression "
                                   f"method {fields[3]}, the directory {info.compress_type}",
                                   path)
        name_len, extra_len = fields[-2], fields[-1]
        if head is not None and len(head) >= LOCAL_HEADER.size + name_len:
            raw_name = head[LOCAL_HEADER.size:LOCAL_HEADER.size + name_len]
        else:
            raw_name = self.data.pread(offset + LOCAL_HEADER.size, name_len)
        encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
        if raw_name.decode(encoding, "replace") != name:
            raise UnsafeFileError(f"zip member {name!r}: its local header names "
                                  f"{raw_name[:60]!r}", path)
        return offset + LOCAL_HEADER.size + name_len + extra_len

    # -- reading ---------------------------------------------------------------------------------

    def read(self, member: Member) -> bytes:
        """The whole content of a member, its CRC-32 checked."""
        if member.stored:
            self.verify(member)
            return self.range(member, 0, member.size)
        with self.lock:
            try:
                return self.zip.read(member.info)
            except ZIP_ERRORS as exc:
                raise self._error(member, exc) from None

    def verify(self, member: Member) -> None:
        """Check a stored member's CRC-32 once, over its mapped bytes (deflated members are
        checked by zipfile when read to the end)."""
        if member.name in self._verified or not member.stored:
            return
        crc = 0
        for start in range(0, member.size, CRC_BLOCK):
            n = min(CRC_BLOCK, member.size - start)
            crc = zlib.crc32(self.array(member, start, np.dtype(np.uint8), (n,)), crc)
        if crc != member.info.CRC:
            raise CorruptFileError(f"zip member {member.name!r}: CRC-32 mismatch (the data is "
                                   "damaged)", self.path)
        self._verified.add(member.name)

    def array(self, member: Member, offset: int, dtype: np.dtype, shape: tuple[int, ...]
              ) -> np.ndarray:
        """A read-only view of the stored member's bytes from `offset` as an array."""
        return self.data.array(self._start(member) + offset, dtype, shape)

    def range(self, member: Member, start: int, stop: int) -> bytes:
        """Bytes [start, stop) of a member's uncompressed content."""
        if member.stored:
            data = self.data.pread(self._start(member) + start, stop - start)
        else:
            with self.lock:
                try:
                    stream = self._open(member)
                    stream.seek(start)
                    data = stream.read(stop - start)
                except ZIP_ERRORS as exc:
                    self._close_stream()
                    if isinstance(exc, ValueError) and self.zip.fp is None:
                        raise UsageError("the store is closed", self.path) from None
                    raise self._error(member, exc) from None
        if len(data) != stop - start:
            raise CorruptFileError(f"zip member {member.name!r} is truncated", self.path)
        return data

    def offset(self, member: Member) -> int:
        """Where the member's data begins in the archive."""
        return self._start(member)

    def copy_to(self, member: Member, out: Any) -> None:
        """Write a member's uncompressed content to the binary file `out`, in blocks (the
        CRC-32 checked at its end)."""
        with self.lock:
            self._close_stream()
            self._start(member)
            try:
                with self.zip.open(member.info) as stream:
                    while chunk := stream.read(CRC_BLOCK):
                        out.write(chunk)
            except ZIP_ERRORS as exc:
                raise self._error(member, exc) from None

    def window(self, member: Member) -> Any:
        """A seekable, read-only file over a stored member's bytes (for libraries that take a
        file object, such as h5py)."""
        if not member.stored:
            raise UsageError(f"zip member {member.name!r} is compressed", self.path)
        return seam.window(self.data, self._start(member), member.size)

    def _open(self, member: Member) -> Any:
        """The (cached) decompressing stream of a member; call with `lock` held."""
        if self._stream is None or self._stream[0] != member.name:
            self._close_stream()
            self._start(member)  # its local header checked (zipfile reads it again)
            self._stream = (member.name, self.zip.open(member.info))
        return self._stream[1]

    def _error(self, member: Member, exc: BaseException) -> WeightsError:
        if isinstance(exc, WeightsError):
            return exc
        text = getattr(exc, "strerror", None) or exc
        return CorruptFileError(f"zip member {member.name!r}: {text}", self.path)

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream[1].close()
            self._stream = None

    def close(self) -> None:
        self._close_stream()
        for thing in (self.zip, self.file, self.data):
            if thing is not None:
                thing.close()

    def __enter__(self) -> "SafeZip":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    """A member's name as its headers store it."""
    return info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace")
