"""LevelDB-style tables (the `.index` file of a TensorFlow checkpoint), read and written.

Layout (TensorFlow `tsl/lib/io/table_builder.cc`, `block_builder.cc`, `format.cc`):
data blocks of prefix-compressed entries (`varint32 shared, varint32 non_shared, varint32
value_len, key suffix, value`) with a restart point every 16 keys, each block followed by a
compression byte and a masked crc32c; an empty metaindex block; an index block (restart interval
1) mapping a separator key to each data block's handle; a 48-byte footer ending in the magic.

`write_table` reproduces TensorFlow's builder byte for byte (block size, separators, restarts),
so rewriting a TensorFlow-written index gives the same bytes. Snappy-compressed blocks (which
TensorFlow never writes but accepts) are decompressed by a small pure-Python decoder.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

from .deps import require
from .errors import CorruptFileError

MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_SIZE = 256 * 1024
RESTART_INTERVAL = 16
_TRAILER = 5  # compression type byte + fixed32 crc
_MAX_BLOCK = 1 << 30


def mask_crc(crc: int) -> int:
    """LevelDB's masked crc32c, as stored next to blocks and tensors."""
    return ((crc >> 15 | crc << 17) + 0xA282EAD8) & 0xFFFFFFFF


def crc32c(data: bytes, crc: int = 0) -> int:
    """crc32c (Castagnoli) of `data`, extending `crc`."""
    global _extend
    if _extend is None:  # imported once, when first needed (a checkpoint has one per tensor)
        _extend = require("google_crc32c").extend
    return _extend(crc, data)


_extend: Callable[[int, Any], int] | None = None
_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def put_varint(value: int) -> bytes:
    """An unsigned LEB128 varint."""
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]  # (most lengths and shared-prefix counts of a table)
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def get_varint(buf: bytes, pos: int, limit: int | None = None, bits: int = 64) -> tuple[int, int]:
    """Decode an unsigned varint of at most `bits` bits at `pos`; returns (value, new pos)."""
    end = len(buf) if limit is None else limit
    value = shift = 0
    while pos < end and shift < bits:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise CorruptFileError("truncated or overlong varint")


# --- reading -------------------------------------------------------------------------------

def _block(data: bytes, offset: int, size: int, what: str) -> bytes:
    if offset < 0 or size < 0 or offset + size + _TRAILER > len(data):
        raise CorruptFileError(f"{what} block at {offset}+{size} runs past the end of the table "
                               f"({len(data)} bytes)")
    contents = data[offset:offset + size]
    kind = data[offset + size]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    if mask_crc(crc32c(bytes([kind]), crc32c(contents))) != stored:
        raise CorruptFileError(f"{what} block at offset {offset}: checksum does not match")
    if kind == 0:
        return contents
    if kind == 1:
        return snappy_decompress(contents)
    raise CorruptFileError(f"{what} block at offset {offset}: expected compression 0 (none) or "
                           f"1 (snappy), received {kind}")


def _entries(block: bytes, what: str) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise CorruptFileError(f"{what} block of {len(block)} bytes is too short")
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * restarts
    if restarts == 0 or limit < 0:
        raise CorruptFileError(f"{what} block claims {restarts} restart points in "
                               f"{len(block)} bytes")
    pos, key = 0, b""
    while pos < limit:
        if pos + 3 <= limit and block[pos] | block[pos + 1] | block[pos + 2] < 0x80:
            shared, unshared, size = block[pos], block[pos + 1], block[pos + 2]  # (the usual
            pos += 3  # entry: three one-byte varints, read without a call each)
        else:
            shared, pos = get_varint(block, pos, limit, 32)
            unshared, pos = get_varint(block, pos, limit, 32)
            size, pos = get_varint(block, pos, limit, 32)
        if shared > len(key) or pos + unshared + size > limit:
            raise CorruptFileError(f"{what} block: an entry runs past the block")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + size]
        pos += size


def _handle(value: bytes) -> tuple[int, int]:
    offset, pos = get_varint(value, 0)
    size, _ = get_varint(value, pos)
    return offset, size


def read_table(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of a table held in `data` (bytes or an mmap), in key order.

    Block checksums are verified; raises CorruptFileError on any inconsistency.
    """
    if len(data) < FOOTER_SIZE:
        raise CorruptFileError(f"expected a table of at least {FOOTER_SIZE} bytes, "
                               f"received {len(data)}")
    footer = bytes(data[len(data) - FOOTER_SIZE:])
    (magic,) = struct.unpack_from("<Q", footer, 40)
    if magic != MAGIC:
        raise CorruptFileError(f"expected the table magic {MAGIC:#x} at the end, "
                               f"received {magic:#x}")
    _, pos = get_varint(footer, 0, 40)  # metaindex offset
    _, pos = get_varint(footer, pos, 40)  # metaindex size
    index_offset, pos = get_varint(footer, pos, 40)
    index_size, _ = get_varint(footer, pos, 40)
    items: list[tuple[bytes, bytes]] = []
    for _, handle in _entries(_block(data, index_offset, index_size, "index"), "index"):
        offset, size = _handle(handle)
        for key, value in _entries(_block(data, offset, size, "data"), "data"):
            if items and key <= items[-1][0]:
                raise CorruptFileError(f"table keys out of order at {key[:60]!r}")
            items.append((key, value))
    return items


def snappy_decompress(src: bytes) -> bytes:
    """Decode one raw snappy block (the format LevelDB uses for compression type 1)."""
    length, pos = get_varint(src, 0, bits=32)
    if length > 24 * len(src) + 64 or length > _MAX_BLOCK:
        raise CorruptFileError(f"snappy block claims {length} bytes from {len(src)} compressed")
    out = bytearray()
    n = len(src)
    while pos < n:
        tag = src[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:
            size = tag >> 2
            if size >= 60:
                extra = size - 59
                size = int.from_bytes(src[pos:pos + extra], "little")
                pos += extra
            size += 1
            if pos + size > n:
                raise CorruptFileError("snappy literal runs past the block")
            out += src[pos:pos + size]
            pos += size
            continue
        if kind == 1:
            size = 4 + (tag >> 2 & 7)
            offset = (tag >> 5) << 8 | (src[pos] if pos < n else 0)
            pos += 1
        else:
            width = 2 if kind == 2 else 4
            size = (tag >> 2) + 1
            offset = int.from_bytes(src[pos:pos + width], "little")
            pos += width
        if pos > n or offset == 0 or offset > len(out) or len(out) + size > length:
            raise CorruptFileError("snappy copy refers outside the decoded data")
        start = len(out) - offset
        for i in range(size):  # copies may overlap their own output
            out.append(out[start + i])
    if len(out) != length:
        raise CorruptFileError(f"snappy block decoded to {len(out)} bytes, expected {length}")
    return bytes(out)


# --- writing -------------------------------------------------------------------------------

class _BlockBuilder:
    def __init__(self, restart_interval: int):
        self.restart_interval = restart_interval
        self.reset()

    def reset(self) -> None:
        self.buffer = bytearray()
        self.restarts = [0]
        self.counter = 0
        self.last_key = b""

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.counter < self.restart_interval:
            limit = min(len(self.last_key), len(key))
            while shared < limit and self.last_key[shared] == key[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buffer))
            self.counter = 0
        self.buffer += put_varint(shared) + put_varint(len(key) - shared) + put_varint(len(value))
        self.buffer += key[shared:] + value
        self.last_key = key
        self.counter += 1

    def size_estimate(self) -> int:
        return len(self.buffer) + 4 * len(self.restarts) + 4

    def empty(self) -> bool:
        return not self.buffer

    def finish(self) -> bytes:
        return bytes(self.buffer) + b"".join(struct.pack("<I", r) for r in self.restarts) + \
            struct.pack("<I", len(self.restarts))


def _separator(start: bytes, limit: bytes) -> bytes:
    """LevelDB's bytewise FindShortestSeparator."""
    n = min(len(start), len(limit))
    i = 0
    while i < n and start[i] == limit[i]:
        i += 1
    if i < n and start[i] < 0xFF and start[i] + 1 < limit[i]:
        return start[:i] + bytes([start[i] + 1])
    return start


def _successor(key: bytes) -> bytes:
    """LevelDB's bytewise FindShortSuccessor."""
    for i, byte in enumerate(key):
        if byte != 0xFF:
            return key[:i] + bytes([byte + 1])
    return key


def write_table(out: BinaryIO, items: Iterable[tuple[bytes, bytes]]) -> None:
    """Write sorted (key, value) pairs as an uncompressed table, exactly as TensorFlow does."""
    offset = 0

    def write_block(block: _BlockBuilder) -> bytes:
        nonlocal offset
        contents = block.finish()
        block.reset()
        trailer = b"\x00" + struct.pack("<I", mask_crc(crc32c(b"\x00", crc32c(contents))))
        out.write(contents)
        out.write(trailer)
        handle = put_varint(offset) + put_varint(len(contents))
        offset += len(contents) + len(trailer)
        return handle

    data, index = _BlockBuilder(RESTART_INTERVAL), _BlockBuilder(1)
    pending: bytes | None = None
    last = b""
    for key, value in items:
        if pending is not None:
            index.add(_separator(last, key), pending)
            pending = None
        last = key
        data.add(key, value)
        if data.size_estimate() >= BLOCK_SIZE:
            pending = write_block(data)
    if not data.empty():
        pending = write_block(data)
    metaindex = write_block(_BlockBuilder(RESTART_INTERVAL))
    if pending is not None:
        index.add(_successor(last), pending)
    index_handle = write_block(index)
    footer = (metaindex + index_handle).ljust(40, b"\x00") + struct.pack("<Q", MAGIC)
    out.write(footer)
