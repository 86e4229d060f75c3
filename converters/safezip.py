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

The central directory is parsed here (`directory`, as zipfile parses it: a property test holds
the two to the same answers), in one pass without a ZipInfo per member. Stored members are read
through the byte seam (`source.py`: zero-copy views of a local file; the CRC-32 checked once,
over the mapped bytes, on first use); deflated ones by zipfile, opened when the first one is
read, which checks the CRC-32 when a member is read to its end. Zip format: PKWARE APPNOTE.TXT
6.3.x (4.3.7 local header, 4.3.12 central directory header, 4.4.4 general purpose flags).

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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import CorruptFileError, UnsafeFileError, UsageError, WeightsError
from . import source as seam

DEFLATE_MAX_RATIO = 1032  # deflate cannot expand data more than this
EXTRA_ALLOWANCE = 96  # bytes read past a local header's name for its extra field (zip64: 20)
SMALL_BYTES = 1024  # declared bytes any member may have beyond the ratio (headers of tiny ones)
CRC_BLOCK = 16 << 20
LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # signature, version, flags, method, time, date,
#                                            crc, compressed, uncompressed, name and extra length
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
              ValueError, NotImplementedError, struct.error)


END = struct.Struct("<4s4H2LH")  # end of central directory record (APPNOTE 4.3.16)
END64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record (4.3.14)
LOCATOR64 = struct.Struct("<4sLQL")  # zip64 end of central directory locator (4.3.15)
CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # central directory file header (4.3.12)
MAX_COMMENT = 0xFFFF
NEWEST_VERSION = zipfile.MAX_EXTRACT_VERSION  # 6.3: the newest zip version zipfile reads


class ZipFormatError(ValueError):
    """The central directory cannot be parsed (`directory`); SafeZip reports it as a
    CorruptFileError naming the file."""


def directory(data: seam.Source) -> tuple[list[Member], int]:
    """The members the central directory lists, in its order, parsed, not checked (SafeZip
    checks them), and where the directory begins. The end records are found as zipfile finds
    them (the end of central directory record in the last 22 bytes, else its last signature in
    the last 64 KiB; the zip64 records just before it), and data prepended to the archive is
    allowed for as zipfile does. Raises
    ZipFormatError. One pass over the directory's bytes, no ZipInfo objects: at 100,000 members
    zipfile's parse took 0.43 s, and an archive was parsed twice (format sniffing, then
    reading). Format: APPNOTE.TXT 6.3.x 4.3.12-4.3.16, 4.5.3; CPython Lib/zipfile.py
    (_EndRecData, _EndRecData64, ZipFile._RealGetContents, ZipInfo._decodeExtra)."""
    size = data.size
    if size < END.size:
        raise ZipFormatError("too short for a zip archive")
    tail = data.pread(size - END.size, END.size)
    if tail[:4] == b"PK\x05\x06" and tail[-2:] == b"\x00\x00":
        location = size - END.size
    else:
        start = max(size - MAX_COMMENT - 1 - END.size, 0)
        tail = data.pread(start, size - start)
        found = tail.rfind(b"PK\x05\x06")
        if found < 0 or found + END.size > len(tail):
            raise ZipFormatError("no end of central directory record")
        location = start + found
        tail = tail[found:found + END.size]
    _, _, _, _, count, cd_size, cd_offset, _ = END.unpack(tail)
    concat = location - cd_size - cd_offset
    if location >= LOCATOR64.size:
        sig, disk, _, disks = LOCATOR64.unpack(data.pread(location - LOCATOR64.size,
                                                          LOCATOR64.size))
        if sig == b"PK\x06\x07":
            if disk != 0 or disks > 1:
                raise ZipFormatError("an archive spanning several disks")
            at = location - LOCATOR64.size - END64.size
            record = data.pread(at, END64.size) if at >= 0 else b""
            if len(record) == END64.size and record[:4] == b"PK\x06\x06":
                _, _, _, _, _, _, _, count, cd_size, cd_offset = END64.unpack(record)
                concat = location - cd_size - cd_offset - LOCATOR64.size - END64.size
    start_dir = cd_offset + concat
    if start_dir < 0 or cd_offset < 0 or start_dir + cd_size > location:
        raise ZipFormatError("the central directory lies outside the file")
    raw = data.pread(start_dir, cd_size)
    if len(raw) != cd_size:
        raise ZipFormatError("truncated central directory")
    members: list[Member] = []
    pos, unpack = 0, CENTRAL.unpack_from
    while pos < cd_size:
        if pos + CENTRAL.size > cd_size:
            raise ZipFormatError("truncated central directory")
        (sig, _, _, version, _, flags, method, dostime, dosdate, crc, compressed, stored_size,
         name_len, extra_len, comment_len, _, _, external, offset) = unpack(raw, pos)
        if sig != b"PK\x01\x02":
            raise ZipFormatError("bad magic number for central directory")
        pos += CENTRAL.size
        raw_name = raw[pos:pos + name_len]
        extra = raw[pos + name_len:pos + name_len + extra_len]
        pos += name_len + extra_len + comment_len
        if pos > cd_size:
            raise ZipFormatError("truncated central directory")
        if extra:
            stored_size, compressed, offset = _zip64_fields(extra, stored_size, compressed,
                                                            offset)
        try:
            name = raw_name.decode("utf-8" if flags & 0x800 else "cp437")
        except UnicodeDecodeError:
            raise ZipFormatError(f"member name {raw_name[:60]!r} is not UTF-8") from None
        members.append(Member(name, raw_name, method, flags, crc, compressed, stored_size,
                              offset + concat, version, dostime, dosdate, external))
    return members, start_dir  # (the end record's count is unused, as in zipfile)


def _zip64_fields(extra: bytes, size: int, compressed: int, offset: int
                  ) -> tuple[int, int, int]:
    """The sizes and offset a zip64 extended information field (header id 1) gives for those
    the central record marks 0xFFFFFFFF, in the order APPNOTE 4.5.3 lists them; an extra field
    whose records run past it is refused (as zipfile refuses it)."""
    records, pos = [], 0
    while len(extra) - pos >= 4:
        kind, length = struct.unpack_from("<HH", extra, pos)
        if pos + 4 + length > len(extra):
            raise ZipFormatError(f"corrupt extra field {kind:04x} (size={length})")
        records.append((kind, extra[pos + 4:pos + 4 + length]))
        pos += 4 + length
    for kind, field in records:
        if kind == 1:
            values = []
            for wanted, value in (("file size", size), ("compressed size", compressed),
                                  ("header offset", offset)):
                if value == 0xFFFFFFFF:
                    if len(field) < 8:
                        raise ZipFormatError(f"corrupt zip64 extra field: {wanted} not found")
                    value = int.from_bytes(field[:8], "little")
                    field = field[8:]
                values.append(value)
            size, compressed, offset = values
    return size, compressed, offset


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
    with _CACHE_LOCK:
        if key in _NAMES:
            return _NAMES[key]
    names, parsed, identity = None, None, None
    try:
        with seam.open_source(path) as data:
            parsed = directory(data)
            names = [m.name for m in parsed[0]]
            identity = getattr(data, "identity", None)
    except (OSError, ZipFormatError, WeightsError):  # ZipFormatError: a bad name's bytes too
        pass
    with _CACHE_LOCK:
        _NAMES[key] = names
        while len(_NAMES) > 8:
            del _NAMES[next(iter(_NAMES))]
        if parsed is not None and identity is not None:  # for the SafeZip that opens it next
            _PARSED[identity] = parsed
            while len(_PARSED) > 2:
                del _PARSED[next(iter(_PARSED))]
    return names


# Directories `member_names` parsed, by the identity of the local file (`MappedFile.identity`):
# the next SafeZip of that very file takes its list (once: no two archives share a Member), and
# checks it against the bytes it opened like any other.
_PARSED: dict[tuple, tuple[list[Member], int]] = {}
_CACHE_LOCK = threading.Lock()


def check_member_name(name: str, path: str | None) -> None:
    """Refuse member names that could mean a path outside the archive (UnsafeFileError)."""
    if name and name[0] not in "/." and name[1:2] != ":" and "//" not in name \
            and "/." not in name and "\\" not in name and "\x00" not in name:
        return  # no empty, '.' or '..' part can hide in it: the common name, decided at once
    parts = name.split("/")
    if (not name or name.startswith("/") or "\\" in name or "\x00" in name
            or (len(name) > 1 and name[0].isalpha() and name[1] == ":")
            or any(p in ("", ".", "..") for p in parts[:-1] + [parts[-1] or "x"])):
        raise UnsafeFileError(f"refusing zip member name {name!r}: expected a relative path "
                              "inside the archive", path)


@dataclass(slots=True)
class Member:
    """A member as the central directory lists it (`directory`), then where its data lies in
    the archive (-1 until its local header is read and checked), and where the next member
    begins."""
    name: str
    raw_name: bytes  # as stored (the local header must repeat it)
    method: int  # 0 stored, 8 deflated
    flags: int  # general purpose bit flags (APPNOTE 4.4.4)
    crc: int
    compressed: int  # bytes in the archive
    size: int  # bytes of content
    header_offset: int
    extract_version: int  # version needed to extract, times 10
    dostime: int
    dosdate: int
    external_attr: int
    data_start: int = -1
    limit: int = -1

    @property
    def stored(self) -> bool:
        return self.method == zipfile.ZIP_STORED

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")

    @property
    def date_time(self) -> tuple[int, int, int, int, int, int]:
        d, t = self.dosdate, self.dostime
        return ((d >> 9) + 1980, (d >> 5) & 0xF, d & 0x1F, t >> 11, (t >> 5) & 0x3F,
                (t & 0x1F) * 2)

    @property
    def info(self) -> zipfile.ZipInfo:
        """The member as a zipfile.ZipInfo (for zipfile to inflate it, or to copy it)."""
        info = zipfile.ZipInfo(self.name, self.date_time)
        info.orig_filename = self.name
        info.flag_bits, info.compress_type, info.CRC = self.flags, self.method, self.crc
        info.compress_size, info.file_size = self.compressed, self.size
        info.header_offset, info.extract_version = self.header_offset, self.extract_version
        info.external_attr = self.external_attr
        return info


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
        self.closed = False
        self.data = seam.open_source(path)
        self.remote = self.data.local is None  # local headers checked on first use
        self.file = None
        self.zip: zipfile.ZipFile | None = None  # opened for the first deflated member read
        try:
            if self.data.size == 0:
                raise CorruptFileError("empty file; expected a zip archive", path)
            try:
                identity = getattr(self.data, "identity", None)
                with _CACHE_LOCK:
                    parsed = _PARSED.pop(identity, None) if identity is not None else None
                listed, start_dir = parsed if parsed is not None else directory(self.data)
            except ZipFormatError as exc:
                raise CorruptFileError(f"not a valid zip archive ({exc})", path) from None
            self.members = self._check(listed, start_dir)
            self.by_name = {m.name: m for m in self.members}
        except OSError as exc:
            self.close()
            raise CorruptFileError(f"unreadable zip archive ({exc.strerror or exc})",
                                   path) from None
        except BaseException:
            self.close()
            raise

    def _check(self, members: list[Member], directory_start: int) -> list[Member]:
        path, size = self.path, self.data.size
        seen: set[str] = set()
        spans, declared = [], 0
        starts = sorted(m.header_offset for m in members)
        for member in members:
            name = member.name
            check_member_name(name, path)
            if name in seen:
                raise UnsafeFileError(f"zip member {name!r} appears twice", path)
            seen.add(name)
            if member.flags & 0x41:
                raise UnsafeFileError(f"zip member {name!r} is encrypted", path)
            if member.method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise UnsafeFileError(f"zip member {name!r}: compression method "
                                      f"{member.method}; only stored and deflated members "
                                      "are read (their expansion is bounded)", path)
            if member.extract_version > NEWEST_VERSION:
                raise CorruptFileError(f"zip member {name!r} needs zip version "
                                       f"{member.extract_version / 10:.1f} to extract", path)
            if member.stored and member.size != member.compressed:
                raise CorruptFileError(f"stored zip member {name!r} declares {member.size} "
                                       f"bytes but stores {member.compressed}", path)
            if member.size > member.compressed * DEFLATE_MAX_RATIO + SMALL_BYTES:
                raise UnsafeFileError(f"zip member {name!r} declares {member.size} bytes "
                                      f"from {member.compressed} compressed (a decompression "
                                      "bomb)", path)
            if member.header_offset < 0 or \
                    member.header_offset + LOCAL_HEADER.size + len(member.raw_name) > size:
                raise CorruptFileError(f"zip member {name!r}: local header outside the file",
                                       path)
            if self.remote:  # the local header later: the least it can take now
                start = member.header_offset + LOCAL_HEADER.size + len(member.raw_name)
            else:
                start = member.data_start = self._data_start(member)
            end = start + member.compressed
            if end > size:
                raise CorruptFileError(f"zip member {name!r} runs past the end of the file",
                                       path)
            spans.append((member.header_offset, end, name))
            declared += member.size
            at = bisect.bisect_right(starts, member.header_offset)
            member.limit = starts[at] if at < len(starts) else max(directory_start, end)
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
            self.data.plan((m.header_offset, m.limit - m.header_offset)
                           for m in members if m.limit > m.header_offset)

    def heads(self, members: list[Member], n: int) -> dict[str, bytes]:
        """The first `n` bytes (or fewer) of each stored member's content, read together (for a
        URL in merged requests, each local header checked on the way)."""
        stored = [m for m in members if m.stored]
        if not self.remote or self.data.size <= seam.io_budget() // 4:  # (read whole: cached)
            return {m.name: self.range(m, 0, min(m.size, n)) for m in stored}
        spans = [(m.header_offset, min(m.limit, m.header_offset + LOCAL_HEADER.size
                                        + len(m.raw_name) + EXTRA_ALLOWANCE + n)
                  - m.header_offset) for m in stored]
        out = {}
        for member, raw in zip(stored, self.data.preads(spans)):
            self._resolve(member, raw)
            at, k = member.data_start - member.header_offset, min(member.size, n)
            # a local extra field longer than the allowance: the head read on its own
            out[member.name] = raw[at:at + k] if at + k <= len(raw) else self.range(member, 0, k)
        return out

    def _start(self, member: Member) -> int:
        """Where the member's data begins (its local header read and checked first, once)."""
        if member.data_start < 0:
            self._resolve(member, None)
        return member.data_start

    def _resolve(self, member: Member, raw: bytes | None) -> None:
        if member.data_start >= 0:
            return
        start = self._data_start(member, raw)
        if start + member.compressed > member.limit:
            raise UnsafeFileError(f"zip member {member.name!r} runs into the next member "
                                  "(overlapping members: a zip bomb)", self.path)
        member.data_start = start

    def _data_start(self, member: Member, raw: bytes | None = None) -> int:
        """Where a member's data begins: after its local header, which must agree with the
        central directory entry (signature, method, the name's very bytes). `raw`: bytes from
        the header on, if already read."""
        offset, name, path = member.header_offset, member.name, self.path
        need = LOCAL_HEADER.size + len(member.raw_name)
        if raw is None or len(raw) < need:
            raw = self.data.pread(offset, need) if offset >= 0 else b""
        if len(raw) < LOCAL_HEADER.size:
            raise CorruptFileError(f"zip member {name!r}: local header outside the file", path)
        fields = LOCAL_HEADER.unpack_from(raw)
        if fields[0] != b"PK\x03\x04":
            raise CorruptFileError(f"zip member {name!r}: bad local header", path)
        if fields[3] != member.method:
            raise CorruptFileError(f"zip member {name!r}: the local header says compression "
                                   f"method {fields[3]}, the directory {member.method}",
                                   path)
        name_len, extra_len = fields[-2], fields[-1]
        raw_name = raw[LOCAL_HEADER.size:LOCAL_HEADER.size + name_len]
        if name_len != len(member.raw_name) or raw_name != member.raw_name:
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
                return self._zipfile().read(member.info)
            except ZIP_ERRORS as exc:
                raise self._error(member, exc) from None

    def verify(self, member: Member) -> None:
        """Check a stored member's CRC-32 once, over its mapped bytes (deflated members are
        checked by zipfile when read to the end)."""
        if member.name in self._verified or not member.stored:
            return
        self.verify_parts(member, (self.array(member, start, np.dtype(np.uint8),
                                              (min(CRC_BLOCK, member.size - start),))
                                   for start in range(0, member.size, CRC_BLOCK)))

    def verify_parts(self, member: Member, parts: Iterable[Any]) -> None:
        """Check a stored member's CRC-32 over its content given in consecutive parts (bytes
        already read, e.g. by `store.read_many`, or blocks read as they are asked for), once."""
        if member.name in self._verified:
            return
        crc = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
        if crc != member.crc:
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
                    if isinstance(exc, ValueError) and self.closed:
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
                archive = self._zipfile()
                with archive.open(member.info) as stream:
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
            archive = self._zipfile()
            self._stream = (member.name, archive.open(member.info))
        return self._stream[1]

    def _zipfile(self) -> zipfile.ZipFile:
        """zipfile over the archive, to inflate deflated members (opened when the first one is
        read; zipfile reads and checks its local header again, and its CRC-32 at the end)."""
        if self.closed:
            raise ValueError("I/O operation on a closed archive")
        if self.zip is None:
            if self.file is not None:  # an earlier open failed: fail as it did, not again
                raise zipfile.BadZipFile("zipfile could not read the central directory")
            self.file = self.data.fileobj()
            self.zip = zipfile.ZipFile(self.file)
        return self.zip

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
        self.closed = True
        for thing in (self.zip, self.file, self.data):
            if thing is not None:
                thing.close()

    def __enter__(self) -> "SafeZip":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

