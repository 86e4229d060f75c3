"""TensorBundle, the file format of TensorFlow checkpoints and of a SavedModel's `variables/`:
`PREFIX.index` (an SSTable of BundleEntryProto, `sstable.py` and `protowire.py`) and the data
shards `PREFIX.data-NNNNN-of-MMMMM`, read and written without TensorFlow.

This module is the codec alone: entries, dtypes, partitioned slices (OrderedCode keys), the
string and variant encodings, an index checked against itself (`Index`), memory-mapped data with
crc32c verification (`Bundle`, `BundleTensor`). What the entries mean (names, roles, order, the
object graph) is `bundle_store.py` and `object_graph.py`.

Sources: tensorflow/tensorflow `tensorflow/core/util/tensor_bundle/tensor_bundle.cc` (entries,
crcs, string and variant layouts), `tensorflow/core/protobuf/tensor_bundle.proto`,
`tensorflow/core/util/saved_tensor_slice_util.cc` and `tensorflow/core/lib/strings/ordered_code.cc`
(slice keys), measured in ../shared/docs/FORMATS.md section 1.
"""
from __future__ import annotations

import functools
import math
import os
import struct
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from . import protowire as pw
from . import source as seam
from .dtypes import dtype_from_name
from .errors import CorruptFileError, UnknownFormatError, UsageError, WeightsError
from .mapped import check_changed, rows
from .paths import inside
from .source import Source
from .sstable import FOOTER_SIZE, crc32c, get_varint, mask_crc, put_varint, read_table
from .store import CHUNK_BYTES, Extent, Tensor, block_indices, check_shape
from .tf_dtypes import DT_STRING, DT_VARIANT, DTYPES as TF_DTYPES, QUANTIZED

BUNDLE_VERSION = 1
_CRC_STEP = 8 << 20
_BYTE = np.dtype(np.uint8)

# TensorFlow DataType enum -> canonical dtype name (tf_dtypes.py). Quantized types read as their
# storage type (the enum is kept in tensor meta); a variant's bytes (its own encoding) are kept
# as opaque uint8.
DTYPES: dict[int, str] = {**TF_DTYPES, DT_VARIANT: "uint8"}
SPECIAL = {*QUANTIZED, DT_VARIANT}  # enums not implied by the numpy dtype alone


def data_path(prefix: str, shard: int, num_shards: int) -> str:
    return f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"


def key_text(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def key_bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


# --- reading ---------------------------------------------------------------------------------

class Entry(NamedTuple):
    key: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc: int
    slices: tuple  # ((start, length | None), ...) per slice; () when not partitioned


def _shape(key: str, entry: dict, dtype: int) -> tuple[int, ...]:
    shape = entry.get("shape", {})
    if shape.get("unknown_rank"):
        raise CorruptFileError(f"tensor {key!r} has unknown rank")
    itemsize = 8 if dtype in (DT_STRING, DT_VARIANT) else dtype_from_name(DTYPES[dtype]).itemsize
    return check_shape([d.get("size", 0) for d in shape.get("dim", [])], f"tensor {key!r}",
                       itemsize=itemsize)


_FIELDS = {0x08: "dtype", 0x18: "shard_id", 0x20: "offset", 0x28: "size"}
_SIGN = 1 << 63


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    return get_varint(buf, pos)


def _common_entry(buf: bytes) -> dict | None:
    """A BundleEntryProto as TensorFlow writes nearly all of them (dtype, shape of plain dims,
    shard, offset, size, crc32c) decoded in one pass, as `protowire.decode` would; None for
    anything else (slices, dim names, unknown fields), which the generic decoder takes. A file
    with 100,000 entries spends most of its reading time here."""
    out: dict[str, Any] = {}
    pos, n = 0, len(buf)
    try:
        while pos < n:
            tag = buf[pos]
            pos += 1
            if tag in _FIELDS:
                value, pos = _varint(buf, pos)
                out[_FIELDS[tag]] = value - (value >= _SIGN) * (1 << 64) if tag != 0x08 else value
            elif tag == 0x35:  # crc32c, fixed32
                if pos + 4 > n:
                    return None
                out["crc32c"] = int.from_bytes(buf[pos:pos + 4], "little")
                pos += 4
            elif tag == 0x12:  # shape
                length, pos = _varint(buf, pos)
                end = pos + length
                if end > n:
                    return None
                dims = []
                while pos < end:
                    if buf[pos] != 0x12:  # only `dim` fields
                        return None
                    dim_len, pos = _varint(buf, pos + 1)
                    dim_end = pos + dim_len
                    dim = {}
                    while pos < dim_end:
                        if buf[pos] != 0x08:  # only `size`
                            return None
                        size, pos = _varint(buf, pos + 1)
                        dim["size"] = size - (size >= _SIGN) * (1 << 64)
                    if pos != dim_end:
                        return None
                    dims.append(dim)
                if pos != end:
                    return None
                out["shape"] = {"dim": dims} if dims else {}
            else:
                return None
    except (IndexError, CorruptFileError):
        return None
    return out


def _known_entry(key: str, value: bytes, known: dict[bytes, tuple[int, tuple[int, ...]]]
                 ) -> Entry | None:
    """The entry when its dtype and shape fields (as TensorFlow writes them first: field 1,
    then field 2 of at most 127 bytes) are bytes already parsed and checked in this index, and
    the rest is shard, offset, size and crc32c (decoded as `_common_entry` decodes them); None
    for anything else. A checkpoint of 100,000 variables has a few hundred distinct shapes."""
    prefix = _dtype_and_shape(value)
    hit = known.get(prefix) if prefix is not None else None
    if hit is None:
        return None
    pos = len(prefix)
    fields = [0, 0, 0, 0]  # shard_id, offset, size, crc32c
    n = len(value)
    while pos < n:
        tag = value[pos]
        if tag == 0x35:
            if pos + 5 > n:
                return None
            fields[3] = int.from_bytes(value[pos + 1:pos + 5], "little")
            pos += 5
        elif tag == 0x18 or tag == 0x20 or tag == 0x28:
            try:
                number, pos = _varint(value, pos + 1)
            except (IndexError, CorruptFileError):
                return None
            if pos > n:
                return None
            fields[(tag >> 3) - 3] = number - (number >= _SIGN) * (1 << 64)
        else:
            return None
    dtype, shape = hit
    return Entry(key, dtype, shape, fields[0], fields[1], fields[2], fields[3], ())


def _parse_entry(key: str, value: bytes,
                 known: dict[bytes, tuple[int, tuple[int, ...]]] | None = None) -> Entry:
    """A BundleEntryProto (tensor_bundle.proto). `known`: the dtype and shape field bytes of
    entries parsed before in this index (`_known_entry`), added to here."""
    if known is not None:
        found = _known_entry(key, value, known)
        if found is not None:
            return found
    e = _common_entry(value)
    if e is None:
        e = pw.decode(value, pw.BUNDLE_ENTRY)
    dtype = e.get("dtype", 0)
    if dtype not in DTYPES:
        raise UnknownFormatError(f"tensor {key!r}: unsupported TensorFlow dtype enum {dtype}")
    slices = tuple(
        tuple((x.get("start", 0), x.get("length")) for x in s.get("extent", []))
        for s in e.get("slices", []))
    entry = Entry(key, dtype, _shape(key, e, dtype), e.get("shard_id", 0),
                  e.get("offset", 0), e.get("size", 0), e.get("crc32c", 0), slices)
    if known is not None and not slices and len(known) < KNOWN_SHAPES:
        prefix = _dtype_and_shape(value)
        # remembered only when the rest holds no field but shard, offset, size and crc32c (as
        # the fast path reads it): a repeated dtype or shape later in the entry would make its
        # dtype and shape another than the prefix's alone, and protobuf's last value wins
        if prefix is not None and \
                _known_entry(key, value, {prefix: (entry.dtype, entry.shape)}) == entry:
            known[prefix] = (entry.dtype, entry.shape)
    return entry


def _dtype_and_shape(value: bytes) -> bytes | None:
    """The leading dtype and shape fields of an entry as TensorFlow writes them (field 1 as one
    byte, then field 2 of at most 127 bytes), or None when the entry does not start so."""
    if len(value) < 4 or value[0] != 0x08 or value[1] >= 0x80 or value[2] != 0x12 \
            or value[3] >= 0x80:
        return None
    return value[:4 + value[3]]


KNOWN_SHAPES = 4096  # distinct dtype-and-shape field bytes remembered while reading an index


def region(extents: tuple, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The index of a slice (TensorSliceProto extents) within a tensor of `shape`."""
    if len(extents) != len(shape):
        raise CorruptFileError(f"a slice of rank {len(extents)} in a tensor of rank {len(shape)}")
    region = []
    for (start, length), dim in zip(extents, shape):
        stop = dim if length is None or length < 0 else start + length
        if not 0 <= start <= stop <= dim:
            raise CorruptFileError(f"slice [{start}, {stop}) outside a dimension of {dim}")
        region.append(slice(start, stop))
    return tuple(region)


def region_shape(region: tuple[slice, ...]) -> tuple[int, ...]:
    return tuple(r.stop - r.start for r in region)


MAX_SLICES = 1 << 16  # slices of one partitioned tensor (TF1 partitioners make a few dozen)


def tiling_problem(regions: list[tuple[slice, ...]], shape: tuple[int, ...]) -> str | None:
    """Why `regions` do not tile an array of `shape` exactly (None if they do): their element
    counts must add up to the array's and no two non-empty regions may overlap. Pairs are
    compared in blocks with numpy, so a crafted file cannot make this quadratic in Python."""
    if len(regions) > MAX_SLICES:
        return f"number {len(regions)}, more than {MAX_SLICES}"
    total = sum(math.prod(region_shape(r)) for r in regions)
    if total != math.prod(shape):
        return f"hold {total} elements, shape {list(shape)} needs {math.prod(shape)}"
    boxes = [r for r in regions if math.prod(region_shape(r)) > 0]
    if len(boxes) < 2 or not shape:
        return None
    starts = np.array([[s.start for s in r] for r in boxes], dtype=np.int64)
    stops = np.array([[s.stop for s in r] for r in boxes], dtype=np.int64)
    step = max(1, (1 << 22) // (len(boxes) * len(shape)))
    for i in range(0, len(boxes), step):
        overlap = np.all((starts[i:i + step, None, :] < stops[None, :, :])
                         & (starts[None, :, :] < stops[i:i + step, None, :]), axis=2)
        overlap[np.arange(overlap.shape[0]), np.arange(i, i + overlap.shape[0])] = False
        if overlap.any():
            a, b = np.argwhere(overlap)[0]
            return (f"overlap ({_extent_text(boxes[i + a])} and {_extent_text(boxes[b])}), "
                    "so some elements would be read twice and others never")
    return None


def _extent_text(where: tuple[slice, ...]) -> str:
    return "[" + ", ".join(f"{s.start}:{s.stop}" for s in where) + "]"


# OrderedCode (tensorflow/core/lib/strings/ordered_code.cc), for the keys of tensor slices.
_SIGNED_HEADER = {1: (0x80, 0), 2: (0xC0, 0), 3: (0xE0, 0), 4: (0xF0, 0), 5: (0xF8, 0),
                  6: (0xFC, 0), 7: (0xFE, 0), 8: (0xFF, 0), 9: (0xFF, 0x80), 10: (0xFF, 0xC0)}


def _num_increasing(value: int) -> bytes:
    body = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return bytes([len(body)]) + body


def _signed_increasing(value: int) -> bytes:
    magnitude = ~value if value < 0 else value
    n = min(magnitude.bit_length() // 7 + 1, 10)
    out = bytearray((value & ((1 << (8 * n)) - 1)).to_bytes(n, "big"))
    first, second = _SIGNED_HEADER[n]
    out[0] ^= first
    if n > 1:
        out[1] ^= second
    return bytes(out)


def slice_key(name: str, extents: tuple) -> bytes:
    """The index key of one slice of a partitioned tensor (EncodeTensorNameSlice)."""
    escaped = key_bytes(name).replace(b"\xff", b"\xff\x00").replace(b"\x00", b"\x00\xff")
    out = _num_increasing(0) + escaped + b"\x00\x01" + _num_increasing(len(extents))
    for start, length in extents:
        out += _signed_increasing(start) + _signed_increasing(-1 if length is None else length)
    return out


def _element_count(size: int, shape: tuple[int, ...]) -> int:
    count = math.prod(shape)
    if count > size:
        raise CorruptFileError(f"{count} elements declared in {size} bytes")
    return count


def string_values(buf: bytes, count: int, expected_crc: int) -> np.ndarray:
    """Decode a string tensor: varint64 lengths, masked crc of the lengths, the bytes."""
    crc, pos, lengths = 0, 0, []
    for _ in range(count):
        length, pos = get_varint(buf, pos)
        lengths.append(length)
        crc = crc32c(struct.pack("<I" if length <= 0xFFFFFFFF else "<Q", length), crc)
    stored = buf[pos:pos + 4]
    if len(stored) != 4 or struct.unpack("<I", stored)[0] != mask_crc(crc):
        raise CorruptFileError("string tensor: the checksum of the lengths does not match")
    crc = crc32c(stored, crc)
    pos += 4
    if pos + sum(lengths) != len(buf):
        raise CorruptFileError(f"string tensor: lengths add up to {sum(lengths)} bytes, "
                               f"{len(buf) - pos} stored")
    crc = crc32c(buf[pos:], crc)
    if mask_crc(crc) != expected_crc:
        raise CorruptFileError("string tensor: checksum does not match")
    out = np.empty(count, dtype=object)
    for i, length in enumerate(lengths):
        out[i] = buf[pos:pos + length]
        pos += length
    return out


def string_bytes(values: np.ndarray) -> tuple[bytes, int]:
    """Encode a string tensor as TensorFlow does; returns (bytes, masked entry crc)."""
    items = [_as_bytes(v) for v in values.reshape(-1)]
    crc = 0
    lengths = bytearray()
    for item in items:
        lengths += put_varint(len(item))
        crc = crc32c(struct.pack("<I" if len(item) <= 0xFFFFFFFF else "<Q", len(item)), crc)
    checksum = struct.pack("<I", mask_crc(crc))
    crc = crc32c(checksum, crc)
    body = b"".join(items)
    return bytes(lengths) + checksum + body, mask_crc(crc32c(body, crc))


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, np.bytes_):
        return bytes(value)
    raise UsageError(f"a string tensor element must be bytes or str, received {type(value).__name__}")


def variant_crc(buf: bytes, count: int) -> int:
    """The masked entry crc of a variant tensor's bytes (per element: varint64 length, the
    serialized VariantTensorDataProto, a fixed32 masked running crc), checking each element."""
    crc, pos = 0, 0
    for _ in range(count):
        length, pos = get_varint(buf, pos)
        crc = crc32c(struct.pack("<Q", length), crc)
        if pos + length + 4 > len(buf):
            raise CorruptFileError("variant tensor: an element runs past its entry")
        crc = crc32c(buf[pos:pos + length], crc)
        pos += length
        stored = buf[pos:pos + 4]
        if struct.unpack("<I", stored)[0] != mask_crc(crc):
            raise CorruptFileError("variant tensor: checksum does not match")
        crc = crc32c(stored, crc)
        pos += 4
    if pos != len(buf):
        raise CorruptFileError(f"variant tensor: {len(buf) - pos} bytes left after {count} elements")
    return mask_crc(crc)


class Index:
    """A checkpoint's `.index`: the header and every entry, checked against each other but not
    against the data files (which need not exist)."""

    def __init__(self, prefix: str, root: str | None):
        """Read `prefix.index`; every file must resolve inside `root` (by default the prefix's
        directory), so no symlink leads the reader elsewhere."""
        self.prefix = prefix
        root = root or seam.parent(prefix)
        if seam.is_url(prefix):  # `prefix` lies under `root` (it was made from it)
            seam.scan(prefix)  # the index and every data shard: one listing
            self.index_path = prefix + ".index"
        else:
            self.index_path = inside(root, os.path.relpath(prefix + ".index", root))
        seam.check_input(self.index_path)
        try:
            self._open(root)
        except WeightsError as exc:
            if exc.path is not None:
                raise
            raise type(exc)(exc.message, self.index_path) from None

    def _open(self, root: str) -> None:
        index_path = self.index_path
        self.items = self._read_index(index_path)
        # the empty key sorts first, and read_table refuses keys out of order or repeated
        header_bytes = self.items[0][1] if self.items and self.items[0][0] == b"" else None
        if header_bytes is None:
            raise CorruptFileError("expected a bundle header under the empty key; none found",
                                   index_path)
        self.header_bytes = header_bytes
        header = pw.decode(header_bytes, pw.BUNDLE_HEADER)
        self.num_shards = header.get("num_shards", 0)
        if header.get("endianness", 0) != 0:
            raise UnknownFormatError("big-endian checkpoints are not supported", index_path)
        if not 1 <= self.num_shards <= 100000:
            raise CorruptFileError(f"expected 1 to 100000 shards, received {self.num_shards}",
                                   index_path)
        self.entries: dict[str, Entry] = {}
        self.slice_entries: dict[bytes, Entry] = {}
        known: dict[bytes, tuple[int, tuple[int, ...]]] = {}
        entries, slice_entries = self.entries, self.slice_entries
        for key, value in self.items[1:]:
            entry = _parse_entry(key_text(key), value, known)
            if key[0]:
                entries[entry.key] = entry
            else:  # a slice of a partitioned tensor: keys start with a zero byte
                slice_entries[key] = entry
        for entry in [*self.entries.values(), *self.slice_entries.values()]:
            self._check(entry)
        for entry in self.entries.values():
            if entry.slices:
                self._check_slices(entry)

    @staticmethod
    def _read_index(path: str) -> list[tuple[bytes, bytes]]:
        with seam.open_source(path) as f:  # a URL: fetched whole, in one request
            if f.size < FOOTER_SIZE:
                raise CorruptFileError(f"expected an index of at least {FOOTER_SIZE} bytes, "
                                       f"received {f.size}")
            with f.mapped().whole() as data:
                return read_table(data)

    def _check(self, e: Entry) -> None:
        if e.slices:
            return
        if not 0 <= e.shard < self.num_shards:
            raise CorruptFileError(f"tensor {e.key!r} is in shard {e.shard} of {self.num_shards}",
                                   self.prefix)
        if e.offset < 0 or e.size < 0:
            raise CorruptFileError(f"tensor {e.key!r}: negative offset or size "
                                   f"({e.offset}+{e.size})", self.prefix)
        if e.dtype == DT_STRING or e.dtype == DT_VARIANT:
            _element_count(e.size, e.shape)
            return
        expected = math.prod(e.shape) * _dtype_of(e.dtype).itemsize
        if e.size != expected:
            raise CorruptFileError(f"tensor {e.key!r}: shape {list(e.shape)} of "
                                   f"{DTYPES[e.dtype]} needs {expected} bytes, entry has {e.size}",
                                   self.prefix)

    def _check_slices(self, e: Entry) -> None:
        """The slices of a partitioned tensor exist, match it, and tile it exactly: disjoint and
        together covering every element (checked before anything is allocated)."""
        regions = []
        for extents in e.slices:
            part = self.slice_entries.get(slice_key(e.key, extents))
            where = region(extents, e.shape)
            if part is None or part.dtype != e.dtype or part.shape != region_shape(where):
                raise CorruptFileError(f"partitioned tensor {e.key!r}: slice {list(extents)} is "
                                       "missing or does not match", self.prefix)
            regions.append(where)
        problem = tiling_problem(regions, e.shape)
        if problem:
            raise CorruptFileError(f"partitioned tensor {e.key!r}: its slices {problem}",
                                   self.prefix)


class Bundle(Index):
    """An open checkpoint: its index, and lazily memory-mapped data shards."""

    def __init__(self, prefix: str, root: str | None):
        self.files: dict[int, Source] = {}
        self.verified: set[str] = set()
        super().__init__(prefix, root)

    def _open(self, root: str) -> None:
        super()._open(root)
        self.sizes = []
        self.pins: dict[int, seam.Stat] = {}  # a URL's shards, pinned when the index is read
        seam.stat_all([data_path(self.prefix, s, self.num_shards) for s in
                       range(self.num_shards)] if seam.is_url(self.prefix) else [])
        for shard in range(self.num_shards):
            path = data_path(self.prefix, shard, self.num_shards)
            if not seam.is_url(path):
                path = inside(root, os.path.relpath(path, root))
            try:
                self.sizes.append(seam.check_input(path))
            except UsageError:
                raise CorruptFileError(f"missing data shard {seam.basename(path)}",
                                       self.index_path) from None
            if seam.is_url(path):
                self.pins[shard] = seam.stat(path)
        for e in [*self.entries.values(), *self.slice_entries.values()]:
            if not e.slices and e.offset + e.size > self.sizes[e.shard]:
                raise CorruptFileError(f"tensor {e.key!r} at {e.offset}+{e.size} runs past its "
                                       f"data file ({self.sizes[e.shard]} bytes)", self.prefix)

    # data access

    def expect(self, keys: list[str]) -> None:
        """The order in which the tensors of `keys` will be read (a store's order): a URL's
        shards are planned in it (entries not named come after, in offset order) and opened
        now, so that forked readers share their caches."""
        self.order = keys
        for shard in self.pins:
            self._file(shard)

    def shard(self, shard: int) -> Source:
        """The open data shard `shard` (opened now, planned for a URL: call `expect` first)."""
        return self._file(shard)

    def _file(self, shard: int) -> Source:
        if shard not in self.files:
            file = seam.open_source(data_path(self.prefix, shard, self.num_shards),
                                    self.pins.get(shard))
            if file.local is None:  # a URL: the shard's entries in reading order, merged
                file.plan(self._ranges(shard))
            self.files[shard] = file
        return self.files[shard]

    def _ranges(self, shard: int) -> list[tuple[int, int]]:
        ordered: list[Entry] = []
        for key in getattr(self, "order", ()):
            e = self.entries.get(key)
            if e is not None:
                ordered += [self.slice_entries[slice_key(e.key, x)] for x in e.slices] \
                    if e.slices else [e]
        rest = sorted([*self.entries.values(), *self.slice_entries.values()],
                      key=lambda e: e.offset)
        return [(e.offset, e.size) for e in ordered + rest if e.shard == shard and not e.slices]

    def _bytes(self, e: Entry) -> bytes:
        data = self._file(e.shard).pread(e.offset, e.size)
        if len(data) != e.size:
            raise CorruptFileError("the file became shorter while it was open", self.prefix)
        return data

    def crc_range(self, e: Entry, start: int, stop: int, crc: int) -> int:
        """Extend `crc` over bytes [start, stop) of the entry, mapped in bounded pieces (a copy
        through pread cost as much as the crc itself)."""
        for pos in range(start, stop, _CRC_STEP):
            crc = crc32c(self.raw(e, _BYTE, pos, min(_CRC_STEP, stop - pos)), crc)
        return crc

    def fail_crc(self, e: Entry) -> None:
        raise CorruptFileError(f"tensor {e.key!r}: checksum does not match (data loss)",
                               data_path(self.prefix, e.shard, self.num_shards))

    def raw(self, e: Entry, dtype: np.dtype, start: int = 0, count: int | None = None) -> np.ndarray:
        """`count` items of `dtype` from item `start` of the entry, unverified: a read-only view
        of a mapping of just that range."""
        count = e.size // dtype.itemsize - start if count is None else count
        return self._file(e.shard).array(e.offset + start * dtype.itemsize, dtype, (count,))

    def verify(self, e: Entry) -> None:
        if e.key not in self.verified:
            if mask_crc(self.crc_range(e, 0, e.size, 0)) != e.crc:
                self.fail_crc(e)
            self.verified.add(e.key)

    def get(self, e: Entry, index: tuple) -> np.ndarray:
        """`index` of the tensor, crc verified; for a run of rows only those rows are mapped."""
        if e.slices or e.dtype in (DT_STRING, DT_VARIANT):
            return self.array(e)[index]
        self.verify(e)
        dtype = dtype_from_name(DTYPES[e.dtype])
        run = rows(index, e.shape)
        if run is None:
            return self.raw(e, dtype).reshape(e.shape)[index]
        r0, r1, rest = run
        row = math.prod(e.shape[1:])
        return self.raw(e, dtype, r0 * row, (r1 - r0) * row).reshape(r1 - r0, *e.shape[1:])[rest]

    def array(self, e: Entry) -> np.ndarray:
        """The whole tensor, crc verified (a read-only view of the mapped file when possible)."""
        try:
            if e.slices:
                return self._assemble(e)
            if e.dtype == DT_STRING:
                return string_values(self._bytes(e), math.prod(e.shape), e.crc).reshape(e.shape)
            if e.dtype == DT_VARIANT:
                data = self._bytes(e)
                if variant_crc(data, math.prod(e.shape)) != e.crc:
                    self.fail_crc(e)
                return np.frombuffer(data, dtype=np.uint8)
        except CorruptFileError as exc:
            if exc.path:
                raise
            raise CorruptFileError(f"tensor {e.key!r}: {exc.message}", self.prefix) from None
        self.verify(e)
        return self.raw(e, dtype_from_name(DTYPES[e.dtype])).reshape(e.shape)

    def _assemble(self, e: Entry) -> np.ndarray:
        out = np.empty(e.shape, dtype=dtype_from_name(DTYPES[e.dtype]))
        for extents in e.slices:
            part = self.slice_entries[slice_key(e.key, extents)]
            out[region(extents, e.shape)] = self.array(part)
        return out

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.files.clear()


@functools.cache
def _dtype_of(enum: int) -> np.dtype:
    """The numpy dtype of a TensorFlow dtype enum the index checked (`DTYPES`)."""
    return dtype_from_name(DTYPES[enum])


class _EntryExtent(Extent):
    """The bytes of an entry that is not partitioned, in its data shard, crc verified: reads go
    through `Bundle.get`; bytes `read_many` read are checked against the entry's crc32c."""

    __slots__ = ("bundle", "entry")

    def __init__(self, bundle: Bundle, entry: Entry, dtype: np.dtype):
        super().__init__(bundle.shard(entry.shard), entry.offset, dtype, entry.shape)
        self.bundle, self.entry = bundle, entry

    def read(self, index: tuple) -> np.ndarray:
        return self.bundle.get(self.entry, index)

    def verify(self, data: memoryview) -> None:
        e = self.entry
        if e.key not in self.bundle.verified:
            if mask_crc(crc32c(np.frombuffer(data, _BYTE))) != e.crc:
                self.bundle.fail_crc(e)
            self.bundle.verified.add(e.key)


class BundleTensor(Tensor):
    """A checkpoint tensor: whole reads verify the crc first; `iter_chunks` streams views of the
    mapped file, verifies the crc as it goes and raises CorruptFileError at the end. A
    partitioned tensor is assembled in memory from its slices."""

    __slots__ = ("_bundle", "_entry")

    def __init__(self, bundle: Bundle, entry: Entry, meta: dict):
        dtype = np.dtype(np.uint8) if entry.dtype == DT_VARIANT else _dtype_of(entry.dtype)
        shape = (entry.size,) if entry.dtype == DT_VARIANT else entry.shape
        if entry.slices or entry.dtype in (DT_STRING, DT_VARIANT):
            super().__init__(shape, dtype, lambda index: bundle.get(entry, index), meta)
        else:  # its bytes lie raw in a shard: `read_many` may read it with its neighbours
            extent = _EntryExtent(bundle, entry, dtype)  # (the shape the index checked)
            self.shape, self.size, self.dtype, self._get = extent.shape, extent.size, dtype, extent
            self.meta = dict(meta) if meta else {}
        self._bundle = bundle
        self._entry = entry

    def iter_chunks(self, max_bytes: int = CHUNK_BYTES) -> Iterator[np.ndarray]:
        e, bundle = self._entry, self._bundle
        if e.slices:  # assembled once, not once per chunk
            flat = bundle.array(e).reshape(-1)
            for (block,) in block_indices(flat.shape, self.dtype.itemsize, max_bytes):
                yield flat[block]
            return
        if e.dtype in (DT_STRING, DT_VARIANT) or e.key in bundle.verified:
            yield from super().iter_chunks(max_bytes)
            return
        itemsize = self.dtype.itemsize
        crc = 0
        for (block,) in block_indices((e.size // itemsize,), itemsize, max_bytes):
            data = bundle.raw(e, self.dtype, block.start, block.stop - block.start)
            crc = crc32c(data.view(_BYTE), crc)  # the bytes about to be used, not a second read
            check_changed()  # the file shrank under the block: its pages read as zeros
            yield data
        if mask_crc(crc) != e.crc:
            bundle.fail_crc(e)
        bundle.verified.add(e.key)