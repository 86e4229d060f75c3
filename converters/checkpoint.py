"""TensorFlow checkpoints (TensorBundle: `PREFIX.index` + `PREFIX.data-NNNNN-of-MMMMM`), read and
written without TensorFlow.

Reading: the index table (block crcs verified), the header and every entry; data shards are
memory-mapped and every tensor's crc32c is verified before its data is used (`iter_chunks`
verifies while streaming and raises at the end). Partitioned tensors are assembled from their
slices. In a TF2 object-based checkpoint the `_CHECKPOINTABLE_OBJECT_GRAPH` gives each key its
`full_name` (the canonical name), marks optimizer slots, and is kept verbatim for writing back.
Keys sharing a full_name with identical bytes (Keras 3 `export()` stores `variables/N` and
`_all_variables/N`) become one tensor that is written to all of them. Tensors are listed in the
order a depth-first walk of the object graph reaches them (the order the framework created
them: `_variables/2` before `_variables/10`); what it does not reach, and every tensor of a
name-based checkpoint, follows in natural key order (numbers by value).

Writing: from a store that came from a checkpoint (directly or through safetensors metadata),
the same keys, shards, data order, slices, header and object graph, so an unchanged store gives
byte-identical files; with `like=TEMPLATE`, the template's layout and object graph filled with
this store's values by canonical name; otherwise a name-based checkpoint keyed by the names.
"""
from __future__ import annotations

import base64
import math
import mmap
import os
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from . import protowire as pw
from .atomic import atomic_output
from .dtypes import dtype_from_name
from .errors import CorruptFileError, UnknownFormatError, UnsafeFileError, UsageError, \
    WeightsError
from .foreign import structure_losses
from .mapped import MappedFile, rows
from .paths import check_input, inside
from .sstable import FOOTER_SIZE, MAGIC, crc32c, get_varint, mask_crc, put_varint, read_table, \
    write_table
from .store import CHUNK_BYTES, Store, Tensor, block_indices

NAME = "tf-checkpoint"
META = "tf_checkpoint"
GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
DT_STRING, DT_VARIANT = 7, 21
BUNDLE_VERSION = 1
_CRC_STEP = 8 << 20
_BYTE = np.dtype(np.uint8)
_STATE_LIMIT = 1 << 20

# TensorFlow DataType enum -> canonical dtype name. Quantized types read as their storage type
# (the enum is kept in tensor meta); variants are kept as opaque bytes.
_DTYPES: dict[int, str] = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
    8: "complex64", 9: "int64", 10: "bool", 11: "int8", 12: "uint8", 13: "int32",
    14: "bfloat16", 15: "int16", 16: "uint16", 17: "uint16", 18: "complex128", 19: "float16",
    21: "uint8", 22: "uint32", 23: "uint64", 24: "float8_e5m2", 25: "float8_e4m3fn",
    26: "float8_e4m3fnuz", 28: "float8_e5m2fnuz", 29: "int4", 30: "uint4", 33: "float4_e2m1fn",
}
_SPECIAL = {11, 12, 13, 15, 16, DT_VARIANT}  # enums not implied by the numpy dtype alone
_ENUMS: dict[str, int] = {name: enum for enum, name in _DTYPES.items() if enum not in _SPECIAL}

# Roles of variables that are not model weights, by the last component of their name.
_COUNTERS = frozenset({"save_counter", "iter", "iteration", "iterations", "_iterations",
                       "global_step"})
_TF1_SLOTS = re.compile(r"(^|/)(beta1_power|beta2_power)$|/(Adam|Adam_1|Momentum|RMSProp|RMSProp_1|"
                        r"Adagrad|Adadelta|Adadelta_1|Ftrl|Ftrl_1|Nadam|Nadam_1|Adamax|Adamax_1)$")


def data_path(prefix: str, shard: int, num_shards: int) -> str:
    return f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise CorruptFileError(f"expected base64 data in {META} metadata") from None


def _key_text(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def _key_bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


# --- paths -----------------------------------------------------------------------------------

_DATA_NAME = re.compile(r"(.+)\.data-\d{5}-of-\d{5}")


def resolve_prefix(path: str) -> tuple[str, str | None]:
    """(checkpoint prefix, directory everything must stay inside or None) for a prefix, an
    `.index` or data file, or a directory holding a `checkpoint` state file."""
    if os.path.isdir(path):
        return _from_state_file(path), path
    if path.endswith(".index") and os.path.isfile(path):
        return path[:-len(".index")], None
    if os.path.isfile(path + ".index"):
        return path, None
    match = _DATA_NAME.fullmatch(path)
    if match and os.path.isfile(match.group(1) + ".index"):
        return match.group(1), None
    raise UnknownFormatError("expected a checkpoint prefix, its .index file, or a directory "
                             "with a `checkpoint` state file", path)


def _from_state_file(directory: str) -> str:
    return _state_prefixes(directory, "model_checkpoint_path")[0]


def run_prefixes(directory: str) -> list[str]:
    """Every checkpoint prefix a directory's `checkpoint` state file lists, oldest first: its
    `all_model_checkpoint_paths` (the latest alone when it lists none). The state file is the
    text protobuf `CheckpointState` that `tf.train.CheckpointManager` keeps (tensorflow,
    tensorflow/python/training/checkpoint_state.proto, written by
    tensorflow/python/checkpoint/checkpoint_management.py). Every path must stay inside the
    directory."""
    return (_state_prefixes(directory, "all_model_checkpoint_paths", many=True)
            or [_from_state_file(directory)])


def _state_prefixes(directory: str, field: str, many: bool = False) -> list[str]:
    state = os.path.join(directory, "checkpoint")
    if not os.path.isfile(state):
        raise UnknownFormatError("expected a directory with a `checkpoint` state file; "
                                 "received one without it", directory)
    with open(state, "rb") as f:
        text = f.read(_STATE_LIMIT).decode("utf-8", "replace")
    found = re.findall(rf'^\s*{field}:\s*"((?:[^"\\]|\\.)*)"', text, re.M)
    if not found and not many:
        raise CorruptFileError(f"expected `{field}: \"...\"` in the state file", state)
    prefixes = []
    for raw in found:
        name = re.sub(r"\\(.)", r"\1", raw)
        if os.path.isabs(name):
            root = os.path.realpath(directory)
            target = os.path.realpath(name)
            if not target.startswith(root + os.sep):
                raise UnsafeFileError(f"the state file points outside its directory: {name!r}",
                                      state)
            name = os.path.relpath(target, root)
        prefix = inside(directory, name)
        if not os.path.isfile(prefix + ".index"):
            raise CorruptFileError(f"the state file names {name!r}, which has no .index file",
                                   state)
        prefixes.append(prefix)
    return prefixes


def sniff(path: str, head: bytes) -> bool:
    """A directory with a `checkpoint` state file, a file ending in the table magic, or a data
    shard next to its index."""
    if os.path.isdir(path):
        return (os.path.isfile(os.path.join(path, "checkpoint"))
                and not os.path.exists(os.path.join(path, "saved_model.pb")))
    match = _DATA_NAME.fullmatch(path)
    if match and os.path.isfile(match.group(1) + ".index"):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < FOOTER_SIZE:
                return False
            f.seek(-8, os.SEEK_END)
            return struct.unpack("<Q", f.read(8))[0] == MAGIC
    except OSError:
        return False


# --- reading ---------------------------------------------------------------------------------

class _Entry(NamedTuple):
    key: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc: int
    slices: tuple  # ((start, length | None), ...) per slice; () when not partitioned


def _shape(entry: dict) -> tuple[int, ...]:
    shape = entry.get("shape", {})
    if shape.get("unknown_rank"):
        raise CorruptFileError("a tensor of unknown rank")
    dims = tuple(d.get("size", 0) for d in shape.get("dim", []))
    if any(d < 0 for d in dims) or len(dims) > 64:
        raise CorruptFileError(f"invalid shape {list(dims)}")
    return dims


def _parse_entry(key: str, value: bytes) -> _Entry:
    e = pw.decode(value, pw.BUNDLE_ENTRY)
    dtype = e.get("dtype", 0)
    if dtype not in _DTYPES:
        raise UnknownFormatError(f"tensor {key!r}: unsupported TensorFlow dtype enum {dtype}")
    slices = tuple(
        tuple((x.get("start", 0), x.get("length")) for x in s.get("extent", []))
        for s in e.get("slices", []))
    return _Entry(key, dtype, _shape(e), e.get("shard_id", 0), e.get("offset", 0),
                  e.get("size", 0), e.get("crc32c", 0), slices)


def _region(extents: tuple, shape: tuple[int, ...]) -> tuple[slice, ...]:
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


def _region_shape(region: tuple[slice, ...]) -> tuple[int, ...]:
    return tuple(r.stop - r.start for r in region)


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
    escaped = _key_bytes(name).replace(b"\xff", b"\xff\x00").replace(b"\x00", b"\x00\xff")
    out = _num_increasing(0) + escaped + b"\x00\x01" + _num_increasing(len(extents))
    for start, length in extents:
        out += _signed_increasing(start) + _signed_increasing(-1 if length is None else length)
    return out


def _element_count(size: int, shape: tuple[int, ...]) -> int:
    count = math.prod(shape)
    if count > size:
        raise CorruptFileError(f"{count} elements declared in {size} bytes")
    return count


def _string_values(buf: bytes, count: int, expected_crc: int) -> np.ndarray:
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


def _string_bytes(values: np.ndarray) -> tuple[bytes, int]:
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


class _Index:
    """A checkpoint's `.index`: the header and every entry, checked against each other but not
    against the data files (which need not exist)."""

    def __init__(self, prefix: str, root: str | None):
        """Read `prefix.index`; every file must resolve inside `root` (by default the prefix's
        directory), so no symlink leads the reader elsewhere."""
        self.prefix = prefix
        root = root or os.path.dirname(os.path.abspath(prefix))
        self.index_path = inside(root, os.path.relpath(prefix + ".index", root))
        check_input(self.index_path)
        try:
            self._open(root)
        except WeightsError as exc:
            if exc.path is not None:
                raise
            raise type(exc)(exc.message, self.index_path) from None

    def _open(self, root: str) -> None:
        index_path = self.index_path
        self.items = self._read_index(index_path)
        header_bytes = dict(self.items).get(b"")
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
        self.entries: dict[str, _Entry] = {}
        self.slice_entries: dict[bytes, _Entry] = {}
        for key, value in self.items[1:]:
            entry = _parse_entry(_key_text(key), value)
            if key.startswith(b"\x00"):
                self.slice_entries[key] = entry
            else:
                self.entries[entry.key] = entry
        for entry in [*self.entries.values(), *self.slice_entries.values()]:
            self._check(entry)
        for entry in self.entries.values():
            if entry.slices:
                self._check_slices(entry)

    @staticmethod
    def _read_index(path: str) -> list[tuple[bytes, bytes]]:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < FOOTER_SIZE:
                raise CorruptFileError(f"expected an index of at least {FOOTER_SIZE} bytes, "
                                       f"received {size}")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return read_table(data)

    def _check(self, e: _Entry) -> None:
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
        expected = math.prod(e.shape) * dtype_from_name(_DTYPES[e.dtype]).itemsize
        if e.size != expected:
            raise CorruptFileError(f"tensor {e.key!r}: shape {list(e.shape)} of "
                                   f"{_DTYPES[e.dtype]} needs {expected} bytes, entry has {e.size}",
                                   self.prefix)

    def _check_slices(self, e: _Entry) -> None:
        total = 0
        for extents in e.slices:
            part = self.slice_entries.get(slice_key(e.key, extents))
            region = _region(extents, e.shape)
            if part is None or part.dtype != e.dtype or part.shape != _region_shape(region):
                raise CorruptFileError(f"partitioned tensor {e.key!r}: slice {list(extents)} is "
                                       "missing or does not match", self.prefix)
            total += math.prod(part.shape)
        if total != math.prod(e.shape):
            raise CorruptFileError(f"partitioned tensor {e.key!r}: slices hold {total} elements, "
                                   f"shape {list(e.shape)} needs {math.prod(e.shape)}", self.prefix)


class _Bundle(_Index):
    """An open checkpoint: its index, and lazily memory-mapped data shards."""

    def __init__(self, prefix: str, root: str | None):
        self.files: dict[int, MappedFile] = {}
        self.verified: set[str] = set()
        super().__init__(prefix, root)

    def _open(self, root: str) -> None:
        super()._open(root)
        self.sizes = []
        for shard in range(self.num_shards):
            path = inside(root, os.path.relpath(data_path(self.prefix, shard, self.num_shards),
                                                root))
            try:
                self.sizes.append(check_input(path).st_size)
            except UsageError:
                raise CorruptFileError(f"missing data shard {os.path.basename(path)}",
                                       self.index_path) from None
        for e in [*self.entries.values(), *self.slice_entries.values()]:
            if not e.slices and e.offset + e.size > self.sizes[e.shard]:
                raise CorruptFileError(f"tensor {e.key!r} at {e.offset}+{e.size} runs past its "
                                       f"data file ({self.sizes[e.shard]} bytes)", self.prefix)

    # data access

    def _file(self, shard: int) -> MappedFile:
        if shard not in self.files:
            self.files[shard] = MappedFile(data_path(self.prefix, shard, self.num_shards))
        return self.files[shard]

    def _bytes(self, e: _Entry) -> bytes:
        data = self._file(e.shard).pread(e.offset, e.size)
        if len(data) != e.size:
            raise CorruptFileError("the file became shorter while it was open", self.prefix)
        return data

    def crc_range(self, e: _Entry, start: int, stop: int, crc: int) -> int:
        """Extend `crc` over bytes [start, stop) of the entry, mapped in bounded pieces (a copy
        through pread cost as much as the crc itself)."""
        for pos in range(start, stop, _CRC_STEP):
            crc = crc32c(self.raw(e, _BYTE, pos, min(_CRC_STEP, stop - pos)), crc)
        return crc

    def fail_crc(self, e: _Entry) -> None:
        raise CorruptFileError(f"tensor {e.key!r}: checksum does not match (data loss)",
                               data_path(self.prefix, e.shard, self.num_shards))

    def raw(self, e: _Entry, dtype: np.dtype, start: int = 0, count: int | None = None) -> np.ndarray:
        """`count` items of `dtype` from item `start` of the entry, unverified: a read-only view
        of a mapping of just that range."""
        count = e.size // dtype.itemsize - start if count is None else count
        return self._file(e.shard).array(e.offset + start * dtype.itemsize, dtype, (count,))

    def verify(self, e: _Entry) -> None:
        if e.key not in self.verified:
            if mask_crc(self.crc_range(e, 0, e.size, 0)) != e.crc:
                self.fail_crc(e)
            self.verified.add(e.key)

    def get(self, e: _Entry, index: tuple) -> np.ndarray:
        """`index` of the tensor, crc verified; for a run of rows only those rows are mapped."""
        if e.slices or e.dtype in (DT_STRING, DT_VARIANT):
            return self.array(e)[index]
        self.verify(e)
        dtype = dtype_from_name(_DTYPES[e.dtype])
        run = rows(index, e.shape)
        if run is None:
            return self.raw(e, dtype).reshape(e.shape)[index]
        r0, r1, rest = run
        row = math.prod(e.shape[1:])
        return self.raw(e, dtype, r0 * row, (r1 - r0) * row).reshape(r1 - r0, *e.shape[1:])[rest]

    def array(self, e: _Entry) -> np.ndarray:
        """The whole tensor, crc verified (a read-only view of the mapped file when possible)."""
        try:
            if e.slices:
                return self._assemble(e)
            if e.dtype == DT_STRING:
                return _string_values(self._bytes(e), math.prod(e.shape), e.crc).reshape(e.shape)
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
        return self.raw(e, dtype_from_name(_DTYPES[e.dtype])).reshape(e.shape)

    def _assemble(self, e: _Entry) -> np.ndarray:
        out = np.empty(e.shape, dtype=dtype_from_name(_DTYPES[e.dtype]))
        for extents in e.slices:
            part = self.slice_entries[slice_key(e.key, extents)]
            out[_region(extents, e.shape)] = self.array(part)
        return out

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.files.clear()


class BundleTensor(Tensor):
    """A checkpoint tensor: whole reads verify the crc first; `iter_chunks` streams views of the
    mapped file, verifies the crc as it goes and raises CorruptFileError at the end. A
    partitioned tensor is assembled in memory from its slices."""

    __slots__ = ("_bundle", "_entry")

    def __init__(self, bundle: _Bundle, entry: _Entry, meta: dict):
        dtype = np.dtype(np.uint8) if entry.dtype == DT_VARIANT else \
            dtype_from_name(_DTYPES[entry.dtype])
        shape = (entry.size,) if entry.dtype == DT_VARIANT else entry.shape
        super().__init__(shape, dtype, lambda index: bundle.get(entry, index), meta)
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
            yield data
        if mask_crc(crc) != e.crc:
            bundle.fail_crc(e)
        bundle.verified.add(e.key)


def _key_name(key: str) -> str:
    return key[:-len(VALUE_SUFFIX)] if key.endswith(VALUE_SUFFIX) else key


def _role(key: str, full_name: str, slot: bool) -> str:
    name = _key_name(key)
    parts = name.split("/")
    if slot or "/.OPTIMIZER_SLOT/" in key or _TF1_SLOTS.search(name):
        return "optimizer"
    if parts[-1] in _COUNTERS or full_name.split("/")[-1] in _COUNTERS:
        return "counter"
    if parts[0] == "optimizer" and parts[1:2] != ["_trainable_variables"]:
        return "optimizer"
    return "weight"


class _Graph(NamedTuple):
    """What the object graph tells about the keys of a TF2 checkpoint."""
    data: bytes | None  # the serialized graph, kept to write back
    full_names: dict[str, str]  # checkpoint key -> full_name
    slots: set[str]  # keys of optimizer slot variables
    rank: dict[str, int]  # checkpoint key -> position in a depth-first walk of the graph


def _object_graph(bundle: _Bundle) -> _Graph:
    """The parsed `_CHECKPOINTABLE_OBJECT_GRAPH` (empty without a valid one)."""
    entry = bundle.entries.get(GRAPH_KEY)
    if entry is None or entry.dtype != DT_STRING or entry.shape != ():
        return _Graph(None, {}, set(), {})
    data = bundle.array(entry).reshape(())[()]
    try:
        graph = pw.decode(data, pw.OBJECT_GRAPH)
    except CorruptFileError as exc:
        raise CorruptFileError(f"object graph: {exc.message}", bundle.prefix) from None
    nodes = graph.get("nodes", [])
    full_names, slots = {}, set()
    slot_ids = {ref.get("slot_variable_node_id", 0)
                for node in nodes for ref in node.get("slot_variables", [])}
    for node_id, node in enumerate(nodes):
        for attribute in node.get("attributes", []):
            key = attribute.get("checkpoint_key", "")
            full_names[key] = attribute.get("full_name", "")
            if node_id in slot_ids:
                slots.add(key)
    return _Graph(data, full_names, slots, _walk(nodes))


def _walk(nodes: list[dict]) -> dict[str, int]:
    """Checkpoint key -> rank in a depth-first walk from the root: a node's attributes, then
    its children in declared order, then the slot variables it lists (an optimizer's), each
    node once. That is the order the objects were created and tracked in."""
    rank: dict[str, int] = {}
    seen: set[int] = set()
    stack = [0] if nodes else []
    while stack:
        node_id = stack.pop()
        if node_id in seen or not 0 <= node_id < len(nodes):
            continue
        seen.add(node_id)
        node = nodes[node_id]
        for attribute in node.get("attributes", []):
            rank.setdefault(attribute.get("checkpoint_key", ""), len(rank))
        after = [c.get("node_id", 0) for c in node.get("children", [])]
        after += [s.get("slot_variable_node_id", 0) for s in node.get("slot_variables", [])]
        stack += reversed(after)
    return rank


def natural_key(key: str) -> tuple:
    """Sort key for checkpoint keys by path, numbers by value (`layer-2` before `layer-10`),
    then bytewise: the order of a checkpoint without an object graph."""
    parts = tuple(tuple(int(run) if i % 2 else run for i, run in enumerate(re.split(r"(\d+)", p)))
                  for p in key.split("/"))
    return parts, _key_bytes(key)


def _store_order(named: list[tuple[str, list[_Entry]]], graph: _Graph) -> list[str]:
    """The names of a checkpoint's tensors in object-graph order; tensors the graph does not
    reach (all of them in a name-based checkpoint) after, in natural key order."""
    end = len(graph.rank)

    def position(item: tuple[str, list[_Entry]]) -> tuple:
        keys = [e.key for e in item[1]]
        return min(graph.rank.get(k, end) for k in keys), natural_key(min(keys, key=_key_bytes))
    return [name for name, _ in sorted(named, key=position)]


def _data_order(bundle: _Bundle) -> list[list[Any]]:
    """Per shard, the entries in the order their bytes were written: a key, or
    [full key, slice number] for a slice of a partitioned tensor."""
    refs: dict[bytes, Any] = {}
    for e in bundle.entries.values():
        for i, extents in enumerate(e.slices):
            refs[slice_key(e.key, extents)] = [e.key, i]
    placed = [(e.shard, e.offset, e.size, e.key) for e in bundle.entries.values() if not e.slices]
    placed += [(e.shard, e.offset, e.size, refs[k]) for k, e in bundle.slice_entries.items()
               if k in refs]
    shards: list[list[Any]] = [[] for _ in range(bundle.num_shards)]
    for shard, _, _, ref in sorted(placed, key=lambda p: p[:3]):
        shards[shard].append(ref)
    return shards


def read_bundle(prefix: str, root: str | None = None, *, format: str = NAME,
                path: str | None = None, meta: dict | None = None) -> Store:
    """Open the TensorBundle at `prefix` as a lazy store (`root`: stay inside this directory)."""
    bundle = _Bundle(prefix, root)
    try:
        object_graph = _object_graph(bundle)
        graph, full_names, slots = object_graph.data, object_graph.full_names, object_graph.slots
        groups: dict[str, list[_Entry]] = {}
        for e in bundle.entries.values():
            if e.key != GRAPH_KEY or graph is None:
                groups.setdefault(full_names.get(e.key) or _key_name(e.key), []).append(e)
        named: list[tuple[str, list[_Entry]]] = []
        for name, entries in groups.items():
            if len({_fingerprint(bundle, e) for e in entries}) == 1:
                named.append((name, entries))
            else:
                named += [(_key_name(e.key), [e]) for e in entries]
        named.sort(key=lambda item: _key_bytes(item[1][0].key))  # names stay as in key order
        tensors: dict[str, Tensor] = {}
        placed: list[tuple[str, list[_Entry]]] = []
        for name, entries in named:
            if name in tensors or not name:
                name = _key_name(entries[0].key) if _key_name(entries[0].key) not in tensors \
                    else entries[0].key
            first = entries[0]
            full_name = full_names.get(first.key, "")
            info: dict[str, Any] = {"keys": [e.key for e in entries]}
            if full_name:
                info["full_name"] = full_name
            if first.dtype in _SPECIAL:
                info["dtype"] = first.dtype
            if first.dtype == DT_VARIANT:
                info["shape"] = list(first.shape)
            role = _role(first.key, full_name, first.key in slots)
            tensors[name] = BundleTensor(bundle, first, {"key": first.key, "role": role,
                                                         META: info})
            placed.append((name, entries))
        tensors = {name: tensors[name] for name in _store_order(placed, object_graph)}
        layout = {"header": b64(bundle.header_bytes),
                  "object_graph": b64(graph) if graph is not None else None,
                  "shards": _data_order(bundle),
                  "slices": {e.key: {"shard": e.shard,
                                     "extents": [[[s, n] for s, n in x] for x in e.slices]}
                             for e in bundle.entries.values() if e.slices}}
    except BaseException:
        bundle.close()
        raise
    return Store(tensors, format=format, meta={**(meta or {}), META: layout},
                 path=path or prefix, on_close=bundle.close)


def _fingerprint(bundle: _Bundle, e: _Entry) -> tuple:
    parts = tuple(bundle.slice_entries[slice_key(e.key, x)].crc for x in e.slices)
    return e.dtype, e.shape, e.crc, e.size, parts


def read(path: str) -> Store:
    """Open a checkpoint given as prefix, `.index`, data file or directory with a state file."""
    prefix, root = resolve_prefix(path)
    return read_bundle(prefix, root, path=path)


# --- the index alone -------------------------------------------------------------------------

INDEX_ONLY = "tf-checkpoint-index"  # the format of a store read by `read_index`


def _checksum(index: _Index, e: _Entry) -> str:
    """`crc32c:` and the entry's masked crc32c in hex (one per slice of a partitioned tensor)."""
    crcs = [index.slice_entries[slice_key(e.key, x)].crc for x in e.slices] if e.slices else [e.crc]
    return "crc32c:" + ",".join(f"{crc:08x}" for crc in crcs)


def is_index(path: str) -> bool:
    """Whether `path` is a file named `*.index` that ends in the table magic."""
    return path.endswith(".index") and os.path.isfile(path) and sniff(path, b"")


def index_without_data(path: str) -> bool:
    """Whether `path` is a readable checkpoint `.index` whose data files are not all beside it
    (as git hands one to a diff driver)."""
    if not is_index(path):
        return False
    try:
        index = _Index(path[:-len(".index")], None)
    except WeightsError:
        return False  # reading it as a checkpoint reports what is wrong
    prefix = index.prefix
    return not all(os.path.isfile(data_path(prefix, shard, index.num_shards))
                   for shard in range(index.num_shards))


def read_index(path: str) -> Store:
    """The variables an `.index` lists, without opening its data files: one tensor per key
    (named by the key; no object graph, which is itself data), in natural key order, with its
    role, dtype, shape and `meta["checksum"]`, the crc32c recorded for its bytes. Reading a
    value raises UsageError. Store meta `tf_checkpoint_index` holds the object graph's
    checksum and the shard count."""
    prefix, root = resolve_prefix(path)
    index = _Index(prefix, root)
    tensors: dict[str, Tensor] = {}
    for e in sorted(index.entries.values(), key=lambda e: natural_key(e.key)):
        if e.key == GRAPH_KEY and e.dtype == DT_STRING and e.shape == ():
            continue
        name = _key_name(e.key) if _key_name(e.key) not in tensors else e.key

        def unavailable(_index: tuple, key: str = e.key) -> np.ndarray:
            raise UsageError(f"tensor {key!r}: only the index was read, not the data files",
                             index.index_path)
        variant = e.dtype == DT_VARIANT
        tensors[name] = Tensor((e.size,) if variant else e.shape,
                               np.dtype(np.uint8) if variant else dtype_from_name(_DTYPES[e.dtype]),
                               unavailable, {"key": e.key, "role": _role(e.key, "", False),
                                             "checksum": _checksum(index, e)})
    graph = index.entries.get(GRAPH_KEY)
    meta = {"object_graph_checksum": _checksum(index, graph) if graph is not None else None,
            "num_shards": index.num_shards}
    return Store(tensors, format=INDEX_ONLY, meta={"tf_checkpoint_index": meta}, path=path)


# --- writing ---------------------------------------------------------------------------------

class _Item(NamedTuple):
    key: bytes
    tensor: Tensor | None  # None for the object graph
    region: tuple | None  # the slice of `tensor` stored under this key
    dtype: int
    shape: tuple[int, ...]


def losses(store: Store, like: Store | None = None) -> list[str]:
    """What a checkpoint cannot hold of `store` (`bundle_losses`)."""
    return bundle_losses(store, (META,), like)


def bundle_losses(store: Store, carried: tuple[str, ...], like: Store | None = None) -> list[str]:
    """Tensors whose dtype a checkpoint cannot hold (written as float32 if allowed); for a store
    read from a file of another format (a plain safetensors too), its file structure, the roles
    a reader cannot tell from the keys (there is no object graph to say so), and the store's
    order (keys are listed in `natural_key` order)."""
    lost = [f"{name}: dtype {t.dtype_name} (TensorFlow has no such type; written as float32)"
            for name, t in store.items() if t.dtype_name not in _ENUMS]
    foreign = structure_losses(store, carried, like)
    if META in store.meta or like is not None or (not foreign and store.format == "memory"):
        return lost + foreign  # a checkpoint's own, a template's graph, or order is incidental
    lost += foreign
    keys = [(_keys_of(name, t)[0], t.role) for name, t in store.items()]
    unread = Counter(role for key, role in keys if _role(key, "", False) != role)
    lost += [f"roles of {n} {role} variable(s) (a checkpoint written without an object graph "
             f"tells them by key)" for role, n in sorted(unread.items())]
    if [k for k, _ in keys] != sorted((k for k, _ in keys), key=natural_key):
        lost.append("the order of variables (a checkpoint without an object graph lists its "
                    "keys by name, numbers by value)")
    return lost


def cast_unsupported(store: Store) -> Store:
    """`store` with every tensor of a dtype TensorFlow lacks cast to float32 (exact for the
    small float types that are the only such dtypes)."""
    cast = {name: t.map(lambda a: a.astype(np.float32), np.dtype(np.float32))
            if t.dtype_name not in _ENUMS else t for name, t in store.items()}
    return store.replace(cast)


def _keys_of(name: str, tensor: Tensor) -> list[str]:
    info = tensor.meta.get(META) or {}
    keys = info.get("keys") or [name]
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise CorruptFileError(f"{META} metadata of {name!r}: expected a list of keys")
    return keys


def _dtype_enum(tensor: Tensor, info: dict) -> int:
    enum = info.get("dtype")
    if enum in _SPECIAL and _DTYPES[enum] == tensor.dtype_name:
        return enum
    try:
        return _ENUMS[tensor.dtype_name]
    except KeyError:
        raise UsageError(f"a TensorFlow checkpoint cannot hold dtype {tensor.dtype_name}") from None


def _sources(store: Store, like: Store | None) -> dict[str, tuple[Tensor, dict]]:
    """Checkpoint key -> (tensor with the values, tf_checkpoint meta for the entry). With a
    template, its keys filled by canonical name; optimizer and counter variables the store
    lacks keep the template's values."""
    if like is None:
        return {key: (t, t.meta.get(META) or {}) for name, t in store.items()
                for key in _keys_of(name, t)}
    # Optimizer state and counters the weights lack (a learning rate, say) keep the template's.
    missing = [name for name in like if name not in store and like[name].role == "weight"]
    extra = [name for name in store if name not in like]
    if missing or extra:
        raise UsageError("the template does not fit the weights: "
                         f"missing {', '.join(missing[:5]) or 'none'}"
                         f"{' ...' if len(missing) > 5 else ''}; not in the template "
                         f"{', '.join(extra[:5]) or 'none'}{' ...' if len(extra) > 5 else ''}")
    out = {}
    for name, template in like.items():
        tensor = store.get(name, template)
        if tensor.shape != template.shape or tensor.dtype != template.dtype:
            raise UsageError(f"{name!r}: the template has {list(template.shape)} "
                             f"{template.dtype_name}, the weights have {list(tensor.shape)} "
                             f"{tensor.dtype_name}")
        for key in _keys_of(name, template):
            out[key] = (tensor, template.meta.get(META) or {})
    return out


def _extents(slices: dict, key: str) -> list[tuple]:
    """The slices of partitioned tensor `key` recorded in the layout, as extent tuples."""
    try:
        return [tuple((int(s), None if n is None else int(n)) for s, n in spec)
                for spec in slices[key]["extents"]]
    except (KeyError, TypeError, ValueError):
        raise CorruptFileError(f"{META} metadata: malformed slices of {key!r}") from None


def _slice_regions(tensor: Tensor, extents_list: list[tuple]) -> list[tuple] | None:
    """Regions of `tensor` for the stored slices, or None if they no longer fit it."""
    try:
        regions = [_region(extents, tensor.shape) for extents in extents_list]
    except CorruptFileError:
        return None
    if sum(math.prod(_region_shape(r)) for r in regions) != tensor.size:
        return None
    return regions


def _checked_layout(layout: Any) -> dict:
    """The layout metadata, refused unless shaped as `read_bundle` makes it (it may come from
    an untrusted file's metadata)."""
    def ref_ok(ref: Any) -> bool:
        return isinstance(ref, str) or (isinstance(ref, list) and len(ref) == 2 and
                                        isinstance(ref[0], str) and type(ref[1]) is int)
    ok = (isinstance(layout, dict)
          and isinstance(layout.get("shards"), list) and 1 <= len(layout["shards"]) <= 100000
          and all(isinstance(s, list) and all(map(ref_ok, s)) for s in layout["shards"])
          and isinstance(layout.get("slices", {}), dict)
          and all(isinstance(v, dict) and type(v.get("shard", 0)) is int
                  for v in layout.get("slices", {}).values())
          and isinstance(layout.get("header") or "", str)
          and isinstance(layout.get("object_graph") or "", str))
    if not ok:
        raise CorruptFileError(f"malformed {META} metadata")
    return layout


def _plan(store: Store, like: Store | None) -> tuple[bytes, list[list[_Item]], list[tuple], bytes | None]:
    """(header, items per shard, full entries of partitioned tensors, object graph)."""
    layout = (like if like is not None else store).meta.get(META)
    if like is not None and layout is None:
        raise UsageError(f"the template is a {like.format} store, not a TensorFlow checkpoint "
                         "or SavedModel")
    layout = _checked_layout(layout or {"shards": [[]], "slices": {}})
    sources = _sources(store, like)
    graph = unb64(layout["object_graph"]) if layout.get("object_graph") else None
    slices = layout.get("slices") or {}
    shards: list[list[_Item]] = []
    full: list[tuple] = []
    done: set[str] = set()
    regions_of: dict[str, list | None] = {}

    def item(key: str, region: tuple | None = None) -> _Item:
        tensor, info = sources[key]
        if info.get("dtype") == DT_VARIANT and tensor.dtype == np.uint8 and tensor.ndim == 1:
            return _Item(_key_bytes(key), tensor, None, DT_VARIANT, tuple(info.get("shape", ())))
        shape = tensor.shape if region is None else _region_shape(region)
        return _Item(_key_bytes(key), tensor, region, _dtype_enum(tensor, info), shape)

    for refs in layout["shards"]:
        items: list[_Item] = []
        for ref in refs:
            if ref == GRAPH_KEY and graph is not None:
                items.append(_Item(_key_bytes(GRAPH_KEY), None, None, DT_STRING, ()))
            elif isinstance(ref, str) and ref in sources and ref not in done:
                done.add(ref)
                items.append(item(ref))
            elif isinstance(ref, list) and len(ref) == 2 and ref[0] in sources:
                key, number = ref
                if key not in regions_of:
                    regions_of[key] = _slice_regions(sources[key][0], _extents(slices, key))
                regions = regions_of[key]
                if regions is None or not 0 <= number < len(regions):
                    continue
                done.add(key)
                extents = _extents(slices, key)[number]
                part = item(key, regions[number])
                items.append(part._replace(key=slice_key(key, extents)))
        shards.append(items)
    for key, regions in regions_of.items():
        if regions is not None:
            tensor, info = sources[key]
            full.append((key, _dtype_enum(tensor, info), tensor.shape, _extents(slices, key),
                         slices[key].get("shard", 0)))
    shards[0] += [item(key) for key in sources if key not in done]
    for key in {*sources} - done:
        if not key or key == GRAPH_KEY or key.startswith("\x00"):
            raise UsageError(f"{key!r} cannot be a checkpoint key")
    header = unb64(layout["header"]) if layout.get("header") else b""
    if not header or pw.decode(header, pw.BUNDLE_HEADER).get("num_shards") != len(shards):
        header = pw.encode({"num_shards": len(shards), "version": {"producer": BUNDLE_VERSION}},
                           pw.BUNDLE_HEADER)
    return header, shards, full, graph


def _shape_proto(shape: tuple[int, ...]) -> dict:
    return {"dim": [{"size": d} for d in shape]}


def _chunks(item: _Item) -> Iterator[np.ndarray]:
    if item.region is None:
        yield from item.tensor.iter_chunks()
        return
    part = np.ascontiguousarray(item.tensor[item.region]).reshape(-1)
    step = max(1, CHUNK_BYTES // max(part.dtype.itemsize, 1))
    for start in range(0, part.size, step):
        yield part[start:start + step]


def _write_item(f: Any, item: _Item, graph: bytes | None) -> tuple[int, int]:
    """Write one entry's bytes; returns (size, masked crc)."""
    if item.tensor is None:
        data, crc = _string_bytes(np.array([graph], dtype=object))
    elif item.dtype == DT_STRING:
        data, crc = _string_bytes(np.asarray(item.tensor[item.region or ()], dtype=object))
    elif item.dtype == DT_VARIANT:
        data = item.tensor.read().tobytes()
        crc = variant_crc(data, math.prod(item.shape))
    else:
        size, crc = 0, 0
        for chunk in _chunks(item):
            data = np.ascontiguousarray(chunk).tobytes()
            f.write(data)
            crc = crc32c(data, crc)
            size += len(data)
        return size, mask_crc(crc)
    f.write(data)
    return len(data), crc


def write_bundle(store: Store, prefix: str, like: Store | None,
                 open_output: Callable[[str], BinaryIO]) -> None:
    """Write `store` as a TensorBundle at `prefix`; `open_output(final)` opens each file."""
    header, shards, full, graph = _plan(store, like)
    entries: list[tuple[bytes, bytes]] = [(b"", header)]
    for shard, items in enumerate(shards):
        with open_output(data_path(prefix, shard, len(shards))) as f:
            offset = 0
            for item in items:
                size, crc = _write_item(f, item, graph)
                if item.tensor is not None and item.dtype not in (DT_STRING, DT_VARIANT) \
                        and size != math.prod(item.shape) * item.tensor.dtype.itemsize:
                    raise CorruptFileError(f"tensor {_key_text(item.key)!r} yielded {size} bytes")
                entry = {"dtype": item.dtype, "shape": _shape_proto(item.shape), "shard_id": shard,
                         "offset": offset, "size": size, "crc32c": crc}
                entries.append((item.key, pw.encode(entry, pw.BUNDLE_ENTRY)))
                offset += size
    for key, dtype, shape, slices, shard in full:
        extents = [{"extent": [{"start": s} if n is None else {"start": s, "length": n}
                               for s, n in spec]} for spec in slices]
        entry = {"dtype": dtype, "shape": _shape_proto(shape), "shard_id": shard,
                 "slices": extents}
        entries.append((_key_bytes(key), pw.encode(entry, pw.BUNDLE_ENTRY)))
    entries.sort()
    with open_output(prefix + ".index") as f:
        write_table(f, entries)


def write(store: Store, path: str, *, allow_lossy: bool = False, like: Store | None = None) -> None:
    """Write a checkpoint at prefix `path` (or `path` ending in `.index`), atomically."""
    prefix = path[:-len(".index")] if path.endswith(".index") else path
    if os.path.isdir(prefix):
        raise UsageError("expected a checkpoint prefix for the output, received a directory", path)
    if allow_lossy:
        store = cast_unsupported(store)
    with atomic_output() as out:
        write_bundle(store, prefix, like, out.open)
