"""Writing zip archives of stored (uncompressed) members: the npz container, by hand.

zipfile's writer costs about 20 us a member: a ZipInfo, a local header written and then
rewritten with the CRC-32 and sizes, a central record rebuilt from the ZipInfo at close. At
100,000 small tensors that was 1.5 s of a 2.1 s npz write. Here a member whose bytes are in
memory is its local header and data, written once; a streamed one has its CRC-32 patched in
place afterwards (its size is known before it is written); the central directory is made from
plain tuples.

The bytes are the ones zipfile writes for `ZipInfo(name, date_time)` members, stored, on a POSIX
system, zip64 records included (zipfile's own choice of when, as of
CPython 3.11.7: a member's sizes go to a zip64 extra field of its local header when its size
times 1.05 exceeds 2**31 - 1, and its records then say version 4.5; the zip64 end records come
past 65,535 members or a central directory beyond 2**31 - 1 bytes), so archives read the same by numpy, zipfile and every other
reader. Sources: PKWARE APPNOTE.TXT 6.3.x (4.3.7 local file header, 4.3.12 central directory
header, 4.3.14-16 zip64 end of central directory record and locator, 4.5.3 zip64 extended
information extra field); CPython Lib/zipfile.py (ZipInfo.FileHeader, ZipFile._write_end_record).
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from typing import Any, BinaryIO

LOCAL = struct.Struct("<4s2B4HL2L2H")  # zipfile.structFileHeader
CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # zipfile.structCentralDir
END = struct.Struct("<4s4H2LH")  # zipfile.structEndArchive
END64 = struct.Struct("<4sQ2H2L4Q")  # zipfile.structEndArchive64
LOCATOR64 = struct.Struct("<4sLQL")  # zipfile.structEndArchive64Locator
ZIP64_EXTRA = struct.Struct("<HHQQ")  # header id 1, its size, original and compressed size
ZIP64_LIMIT = (1 << 31) - 1  # zipfile.ZIP64_LIMIT: beyond it a size or offset goes to zip64
FILECOUNT_LIMIT = (1 << 16) - 1
VERSION, ZIP64_VERSION = 20, 45  # "version needed to extract": 2.0, 4.5 with zip64 fields
POSIX = 3  # "version made by", upper byte: UNIX (zipfile's create_system off Windows)
FILE_MODE = 0o600 << 16  # external attributes: a regular file, rw for its owner (as zipfile)
UTF8_NAME = 0x800  # general purpose flag bit 11: the name is UTF-8
CRC_OFFSET = 14  # of the CRC-32 field in the local header


class StoredZipWriter:
    """Append stored members to `f` (a binary file opened for writing, positioned at the
    archive's start), then `close()` writes the central directory. Names are taken as given:
    the caller checks them (`safezip.check_member_name`). `date_time` is every member's
    modification time, (year >= 1980, month, day, hour, minute, second)."""

    def __init__(self, f: BinaryIO, date_time: tuple[int, int, int, int, int, int]):
        self.f = f
        self.pos = f.tell()
        year, month, day, hour, minute, second = date_time
        self.date = (year - 1980) << 9 | month << 5 | day
        self.time = hour << 11 | minute << 5 | second // 2
        self.records: list[tuple[bytes, int, int, int, int]] = []  # name, flags, crc, size, at

    def add(self, name: str, data: Any) -> None:
        """A member holding the bytes of `data` (a bytes-like object)."""
        size = memoryview(data).nbytes
        raw, flags = _encoded(name)
        crc = zlib.crc32(data)
        self.f.write(self._local(raw, flags, crc, size))
        self.f.write(data)
        self.records.append((raw, flags, crc, size, self.pos))
        self.pos += LOCAL.size + len(raw) + (ZIP64_EXTRA.size if _zip64(size) else 0) + size

    def add_stream(self, name: str, size: int, parts: Iterable[Any]) -> int:
        """A member of `size` bytes written from `parts` (bytes-like) as they come; its CRC-32 is
        patched into the local header at the end. Returns the bytes `parts` gave: when that is
        not `size` the archive is unusable and the caller must discard it."""
        raw, flags = _encoded(name)
        header = self._local(raw, flags, 0, size)
        at = self.pos
        self.f.write(header)
        crc = written = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
            written += self.f.write(part)
        self.pos += len(header) + written
        if written == size:
            self.f.seek(at + CRC_OFFSET)
            self.f.write(struct.pack("<L", crc))
            self.f.seek(self.pos)
            self.records.append((raw, flags, crc, size, at))
        return written

    def _local(self, raw: bytes, flags: int, crc: int, size: int) -> bytes:
        if _zip64(size):  # the sizes in the extra field only
            return LOCAL.pack(b"PK\x03\x04", ZIP64_VERSION, 0, flags, 0, self.time, self.date,
                              crc, 0xFFFFFFFF, 0xFFFFFFFF, len(raw), ZIP64_EXTRA.size) \
                + raw + ZIP64_EXTRA.pack(1, 16, size, size)
        return LOCAL.pack(b"PK\x03\x04", VERSION, 0, flags, 0, self.time, self.date, crc, size,
                          size, len(raw), 0) + raw

    def close(self) -> None:
        """Write the central directory and the end records (zip64 ones when needed)."""
        start, parts = self.pos, []
        for raw, flags, crc, size, at in self.records:
            wide = [size, size] if size > ZIP64_LIMIT else []
            if at > ZIP64_LIMIT:
                wide.append(at)
            extra = struct.pack(f"<HH{len(wide)}Q", 1, 8 * len(wide), *wide) if wide else b""
            version = ZIP64_VERSION if wide or _zip64(size) else VERSION  # (as zipfile)
            shown = 0xFFFFFFFF if size > ZIP64_LIMIT else size
            parts.append(CENTRAL.pack(b"PK\x01\x02", version, POSIX, version, 0, flags, 0,
                                      self.time, self.date, crc, shown, shown, len(raw),
                                      len(extra), 0, 0, 0, FILE_MODE,
                                      0xFFFFFFFF if at > ZIP64_LIMIT else at))
            parts.append(raw)
            parts.append(extra)
        directory = b"".join(parts)
        self.f.write(directory)
        end = start + len(directory)
        count, size = len(self.records), len(directory)
        if count > FILECOUNT_LIMIT or start > ZIP64_LIMIT or size > ZIP64_LIMIT:
            self.f.write(END64.pack(b"PK\x06\x06", 44, ZIP64_VERSION, ZIP64_VERSION, 0, 0,
                                    count, count, size, start))
            self.f.write(LOCATOR64.pack(b"PK\x06\x07", 0, end, 1))
            count, size, start = min(count, 0xFFFF), min(size, 0xFFFFFFFF), \
                min(start, 0xFFFFFFFF)
        self.f.write(END.pack(b"PK\x05\x06", 0, 0, count, count, size, start, 0))


def _zip64(size: int) -> bool:
    """Whether a member of `size` bytes gets a zip64 extra field in its local header (zipfile's
    rule for a member whose size is known when it is opened)."""
    return size * 1.05 > ZIP64_LIMIT


def _encoded(name: str) -> tuple[bytes, int]:
    """The name's bytes and flag bits: ASCII as it is, anything else UTF-8 with bit 11 set."""
    try:
        return name.encode("ascii"), 0
    except UnicodeEncodeError:
        return name.encode("utf-8"), UTF8_NAME
