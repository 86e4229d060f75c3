"""safetensors: read by decoding the format, write by streaming. Tensors are zero-copy views of
memory maps of their bytes, mapped per read so that memory stays bounded (see `mapped.py`).

File layout: 8-byte little-endian header length N, N bytes of JSON header
`{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}`
padded with spaces to a multiple of 8, then the data: every tensor's C-order little-endian bytes,
back to back, with no holes. Like the reference writer, tensors are laid out by descending dtype
alignment, then by name, so that every mmap view is aligned; the header lists them in that order.
Writing a store in that order with no metadata gives the bytes `safetensors.numpy.save_file` gives.

What safetensors lacks travels in `__metadata__["weightkit"]`, one JSON string (the *carry*,
see `carry.py`): the source format, `store.meta`, every tensor's `meta`, the store's order when it
differs from the layout order, and the encoding of each tensor whose dtype safetensors lacks:

    string        U8 of the elements' bytes concatenated, shape [total]; the carry holds the
                  original shape and the byte length of every element
    complex128    F64 with a trailing axis of 2 (real, imaginary)
    int4 / uint4  I8 / U8, one element per byte, by value
    float4_e2m1fn U8, one element per byte, its 4-bit code in the low bits

The reader restores dtype, shape, names, order, `tensor.meta` and `store.meta` (with the source
format in `store.meta["source_format"]`; `store.format` stays "safetensors"). Other tools'
`__metadata__` entries are kept in `store.meta["safetensors"]["metadata"]` and written back.
So X -> safetensors -> X loses nothing, and `losses()` is empty for JSON-able metadata.

Files are validated before any data is touched: header size (at most 100 MB, inside the file),
UTF-8 JSON without duplicate keys, known dtypes, offsets that tile the data section exactly,
shape x itemsize == byte length. F4 and F6 (packed sub-byte floats) are refused: safetensors does
not define how two values share a byte.
"""
from __future__ import annotations

import math
import operator
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np
import orjson

from . import carry
from . import source as seam
from .atomic import atomic_output
from .dtypes import dtype_name, is_string
from .format import Format, WritePlan
from .errors import CorruptFileError, UnsafeFileError, UnknownFormatError, UsageError, \
    WeightsError
from .mapped import rows
from .source import Source
from .store import (CHUNK_BYTES, MAX_RANK, SMALL_TENSOR, Extent, Index, Store, Tensor,
                    check_shape, gc_paused, raw_parts, read_many, shown)

NAME = "safetensors"
METADATA = "__metadata__"
CARRY_KEY = "weightkit"
MAX_HEADER = 100_000_000  # the reference's limit

# Every safetensors dtype, in the reference's alignment order (its `Dtype` enum order).
_RANK = ("BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
         "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
         "C64", "F64", "I64", "U64")
_TYPES: dict[str, np.dtype] = {code: np.dtype(t).newbyteorder("<") for code, t in {
    "BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16, "I16": np.int16,
    "U32": np.uint32, "I32": np.int32, "U64": np.uint64, "I64": np.int64,
    "F16": np.float16, "F32": np.float32, "F64": np.float64, "C64": np.complex64,
    "BF16": ml_dtypes.bfloat16, "F8_E4M3": ml_dtypes.float8_e4m3fn,
    "F8_E5M2": ml_dtypes.float8_e5m2, "F8_E4M3FNUZ": ml_dtypes.float8_e4m3fnuz,
    "F8_E5M2FNUZ": ml_dtypes.float8_e5m2fnuz, "F8_E8M0": ml_dtypes.float8_e8m0fnu,
}.items()}
_NATIVE = {code: dt.newbyteorder("=") for code, dt in _TYPES.items()}
_UNREADABLE = {code: "packed sub-byte floats, whose order inside a byte safetensors does not define"
               for code in ("F4", "F6_E2M3", "F6_E3M2")}
_CODES: dict[str, str] = {dtype_name(dt.newbyteorder("=")): code for code, dt in _TYPES.items()}


@dataclass(frozen=True)
class _Encoding:
    """How a dtype safetensors lacks is stored: as `code`, with `trailing` axes appended."""
    code: str
    trailing: tuple[int, ...]
    to_file: Callable[[np.ndarray], np.ndarray]
    from_file: Callable[[np.ndarray], np.ndarray]


_ENCODINGS: dict[str, _Encoding] = {
    "complex128": _Encoding("F64", (2,), lambda a: a.view(np.float64),
                            lambda a: a.view(np.complex128).reshape(a.shape[:-1])),
    "int4": _Encoding("I8", (), lambda a: a.astype(np.int8), lambda a: a.astype(ml_dtypes.int4)),
    "uint4": _Encoding("U8", (), lambda a: a.astype(np.uint8),
                       lambda a: a.astype(ml_dtypes.uint4)),
    "float4_e2m1fn": _Encoding("U8", (), lambda a: a.view(np.uint8),
                               lambda a: a.view(ml_dtypes.float4_e2m1fn)),
}


# ---------------------------------------------------------------------------------------------
# detection and reading

def sniff(path: str, head: bytes) -> bool:
    """A plausible header length followed by `{`."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (n,) = struct.unpack("<Q", head[:8])
    try:
        size = seam.getsize(path)
    except (OSError, WeightsError):
        return False
    return 2 <= n <= MAX_HEADER and 8 + n <= size


def _header(file: Source, path: str) -> tuple[int, dict]:
    size = file.size
    if size < 8:
        raise CorruptFileError(f"expected at least 8 bytes (the header length), got {size}", path)
    (n,) = struct.unpack("<Q", file.pread(0, 8))
    if 8 + n > size:
        raise CorruptFileError(f"header of {n} bytes runs past the end of the file "
                               f"({size} bytes)", path)
    if n > MAX_HEADER:
        raise UnsafeFileError(f"header of {n} bytes; at most {MAX_HEADER} accepted", path)
    raw = file.pread(8, n)
    if len(raw) != n:
        raise CorruptFileError("the file became shorter while it was read", path)
    if not raw.isascii():  # (a name may be any Unicode, in UTF-8)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptFileError("header is not UTF-8", path) from None
    if not raw.startswith(b"{"):
        raise CorruptFileError("header does not start with '{'", path)
    header = carry.parse_json(raw, path, "header")
    if not isinstance(header, dict):
        raise CorruptFileError("header is not a JSON object", path)
    return n, header


_Entry = tuple[str, str, tuple[int, ...], int, int]  # (name, dtype code, shape, begin, end)
_FIELDS = frozenset(("dtype", "shape", "data_offsets"))


def _entries(header: dict, data_size: int, path: str) -> list[_Entry]:
    """Validated entries in header order; their offsets tile [0, data_size) exactly."""
    entries: list[_Entry] = []
    append = entries.append
    checked: dict[tuple, tuple[tuple[int, ...], int]] = {}  # (code, shape) -> (shape, nbytes)
    position = 0  # where the next entry's data starts if they lie in header order
    for name, info in header.items():
        if not (type(info) is dict and info.keys() == _FIELDS):
            raise CorruptFileError(f"entry {name!r}: expected an object with dtype, shape and "
                                   f"data_offsets, got {shown(info)}", path)
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if type(shape) is not list or (tuple(map(type, shape)) != _INTS[:len(shape)]
                                        and not all(type(d) is int for d in shape)):
            raise CorruptFileError(f"tensor {name!r}: bad shape {shown(shape)}", path)
        known = checked.get((code, *shape)) if type(code) is str else None
        if known is None:  # (a code that is not a string: _checked_shape refuses it)
            known = checked[(code, *shape)] = _checked_shape(name, code, shape, path)
        if not (type(offsets) is list and len(offsets) == 2):
            raise CorruptFileError(f"tensor {name!r}: bad data_offsets {shown(offsets)}", path)
        begin, end = offsets
        if not (type(begin) is int and type(end) is int and 0 <= begin <= end):
            raise CorruptFileError(f"tensor {name!r}: bad data_offsets {shown(offsets)}", path)
        if end > data_size:
            raise CorruptFileError(f"tensor {name!r}: data_offsets run past the end of the "
                                   f"data ({data_size} bytes)", path)
        if known[1] != end - begin:
            raise CorruptFileError(f"tensor {name!r}: shape {shape} of {code} needs "
                                   f"{known[1]} bytes, data_offsets give {end - begin}", path)
        append((name, code, known[0], begin, end))
        position = end if begin == position else -1  # (once -1, always: begin >= 0)
    if position == data_size:  # in header order, one after another (the common file)
        return entries
    position = 0
    for name, _, _, begin, end in sorted(entries, key=operator.itemgetter(3, 4)):
        if begin != position:
            what = "overlaps another" if begin < position else "leaves a hole before it"
            raise CorruptFileError(f"tensor {name!r}: data at {begin} {what} "
                                   f"(expected offset {position})", path)
        position = end
    if position != data_size:
        raise CorruptFileError(f"tensors cover {position} bytes of data, the file has "
                               f"{data_size}", path)
    return entries


_INTS = (int,) * MAX_RANK  # a valid shape's element types (a longer one: check_shape's error)


def _checked_shape(name: str, code: Any, shape: list, path: str) -> tuple[tuple[int, ...], int]:
    """A tensor's dtype code and shape checked once: (the shape as a tuple, its bytes)."""
    if type(code) is str and code in _UNREADABLE:
        raise UnknownFormatError(f"tensor {name!r} has dtype {code} ({_UNREADABLE[code]}); "
                                 "weightkit does not read it", path)
    if type(code) is not str or code not in _TYPES:
        raise CorruptFileError(f"tensor {name!r}: unknown dtype {shown(code)}; expected one "
                               f"of {', '.join(c for c in _RANK if c in _TYPES)}", path)
    if not carry.valid_shape(shape):
        raise CorruptFileError(f"tensor {name!r}: bad shape {shown(shape)}", path)
    itemsize = _TYPES[code].itemsize
    shape = check_shape(shape, f"tensor {name!r}", path, itemsize)
    return shape, math.prod(shape) * itemsize


def _getter(file: Source, offset: int, code: str, shape: tuple[int, ...],
            decode: Callable[[np.ndarray], np.ndarray] | None = None
            ) -> Callable[[Index], np.ndarray]:
    """get(index) mapping only the rows the index needs (the whole tensor otherwise)."""
    dtype = _TYPES[code]
    row_bytes = dtype.itemsize * math.prod(shape[1:])

    def get(index: Index) -> np.ndarray:
        run = rows(index, shape)
        if run is None:
            array = file.array(offset, dtype, shape)
        else:
            r0, r1, index = run
            array = file.array(offset + r0 * row_bytes, dtype, (r1 - r0, *shape[1:]))
        return (array if decode is None else decode(array))[index]
    return get


def _string_getter(file: Source, offset: int, size: int, lengths: list[int],
                   shape: tuple[int, ...]) -> Callable[[Index], np.ndarray]:
    def get(index: Index) -> np.ndarray:
        data = file.array(offset, np.dtype(np.uint8), (size,))
        return carry.decode_strings(data, lengths, shape)[index]
    return get


def read(path: str) -> Store:
    """Open a safetensors file lazily: tensors are read-only views of maps of their bytes."""
    path = os.fspath(path)
    file = seam.open_source(path)
    try:
        with gc_paused():
            return _read(file, path)
    except BaseException:
        file.close()
        raise


def _read(file: Source, path: str) -> Store:
    n, header = _header(file, path)
    metadata = header.pop(METADATA, None)
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(v, str) for v in metadata.values())):
        raise CorruptFileError("__metadata__ must map strings to strings", path)
    entries = _entries(header, file.size - 8 - n, path)
    del header  # (its 100,000 dicts and lists freed: the tensors below reuse their memory)
    native = dict(metadata or {})
    doc = native.pop(CARRY_KEY, None)
    names = [e[0] for e in entries]
    carried = carry.Carry(None if doc is None else carry.parse_json(doc, path, "weightkit metadata"),
                          names, path)
    base = 8 + n
    if carried.order is not names:  # the store lists them in another order than the header
        by_name = {e[0]: e for e in entries}
        entries = [by_name[name] for name in carried.order]
    file.plan((base + begin, end - begin) for _, _, _, begin, end in entries)
    if carried.tensors:
        tensors = {e[0]: _tensor(file, base, e, carried, path) for e in entries}
    else:  # nothing carried: every tensor is its bytes (the common file, made fast)
        tensors = {name: Tensor.of_extent(Extent(file, base + begin, _TYPES[code], shape),
                                          _NATIVE[code])
                   for name, code, shape, begin, _ in entries}
    namespace = ({NAME: {"metadata": native}}
                 if native or (metadata is not None and doc is None) else {})
    return Store(tensors, format=NAME, meta=carried.store_meta(namespace), path=path,
                 on_close=file.close)


def _tensor(file: Source, base: int, entry: _Entry, carried: carry.Carry,
            path: str) -> Tensor:
    """The tensor of an entry (its data at `base + begin`), as the carried metadata says."""
    name, code, stored, begin, end = entry
    offset = base + begin
    meta = carried.tensor_meta(name)
    encoding = carried.encoding(name, stored)
    if encoding is None:
        return Tensor(stored, _NATIVE[code], Extent(file, offset, _TYPES[code], stored), meta)
    dtype = encoding["dtype"]
    what = f"weightkit metadata for {name!r} does not match the stored tensor"
    if is_string(dtype):
        if encoding["lengths"] is None or code != "U8" or stored != (sum(encoding["lengths"]),):
            raise CorruptFileError(what, path)
        return Tensor(encoding["shape"], dtype, _string_getter(
            file, offset, end - begin, encoding["lengths"], encoding["shape"]), meta)
    spec = _ENCODINGS.get(dtype_name(dtype))
    shape = encoding["shape"]
    if spec is None or spec.code != code or stored != shape + spec.trailing:
        raise CorruptFileError(what, path)
    return Tensor(shape, dtype, _getter(file, offset, code, stored, spec.from_file), meta)


# ---------------------------------------------------------------------------------------------
# writing

def losses(store: Store, like: Store | None = None) -> list[str]:
    """Nothing is lost unless metadata is not JSON: every dtype has an encoding."""
    return carry.json_losses(store)


@dataclass
class _Planned:
    name: str
    code: str
    shape: tuple[int, ...]
    nbytes: int
    chunks: Callable[[], Iterator[np.ndarray]]
    tensor: Tensor | None = None  # stored as it is (what `read_many` may read in a batch)


def _plan(name: str, tensor: Tensor) -> tuple[_Planned, dict]:
    """How `tensor` is stored, and its encoding record for the carry ({} if native)."""
    kind = dtype_name(tensor.dtype)
    if is_string(tensor.dtype):
        data, lengths = carry.encode_strings(tensor)
        return (_Planned(name, "U8", (data.size,), data.size, lambda: iter([data])),
                {"dtype": "string", "shape": list(tensor.shape), "lengths": lengths})
    if kind in _CODES:
        code = _CODES[kind]
        return _Planned(name, code, tensor.shape, tensor.nbytes, tensor.iter_chunks, tensor), {}
    spec = _ENCODINGS[kind]
    code = spec.code
    shape = tensor.shape + spec.trailing
    nbytes = math.prod(shape) * _TYPES[code].itemsize
    record: dict[str, Any] = {"dtype": kind}
    if spec.trailing:
        record["shape"] = list(tensor.shape)
    return (_Planned(name, code, shape, nbytes,
                     lambda: (spec.to_file(c) for c in tensor.iter_chunks())), record)


def plan(store: Store, like: Store | None = None) -> WritePlan:
    """The header and the tensors in file order (safetensors needs nothing from a template;
    `like` is accepted for the common interface)."""
    return WritePlan.of(store, like, losses(store, like), lambda: _layout(store))


def _layout(store: Store) -> tuple[bytes, list[_Planned]]:
    if METADATA in store:
        raise UsageError(f"a tensor cannot be named {METADATA!r} in safetensors")
    carry.check_names(store, None, NAME)
    planned, encodings = carry.plan_tensors(store, _plan)
    rank = {code: i for i, code in enumerate(_RANK)}
    planned.sort(key=lambda p: (-rank[p.code], p.name))
    doc = carry.build(store, NAME, native_namespace=NAME, encodings=encodings,
                      file_order=[p.name for p in planned])
    return _header_bytes(store, planned, doc), planned


def write(plan: WritePlan, path: str) -> None:
    """Write the planned safetensors file, atomically, streaming tensor by tensor."""
    path = os.fspath(path)
    header_bytes, planned = plan.detail
    with atomic_output() as out:
        with out.open(path) as f:
            f.write(struct.pack("<Q", len(header_bytes)))
            f.write(header_bytes)
            batch: list[_Planned] = []  # small tensors stored as they are, written together
            batch_bytes = 0
            for item in planned:
                small = item.tensor is not None and item.nbytes <= SMALL_TENSOR
                if small:
                    batch.append(item)
                    batch_bytes += item.nbytes
                if not small or batch_bytes >= CHUNK_BYTES:
                    _write_batch(f, batch, path)
                    batch, batch_bytes = [], 0
                if not small:
                    _write_data(f, item, path)
            _write_batch(f, batch, path)


def _header_bytes(store: Store, planned: list[_Planned], doc: dict | None) -> bytes:
    namespace = store.meta.get(NAME)
    native = namespace.get("metadata") if isinstance(namespace, dict) else None
    metadata = None if not isinstance(native, dict) else {str(k): str(v) for k, v in native.items()}
    if doc is not None:
        metadata = {**(metadata or {}), CARRY_KEY: carry.dumps(doc)}
    header: dict[str, Any] = {} if metadata is None else {METADATA: metadata}
    offset = 0
    for plan in planned:
        header[plan.name] = {"dtype": plan.code, "shape": list(plan.shape),
                             "data_offsets": [offset, offset + plan.nbytes]}
        offset += plan.nbytes
    try:  # strings and ints only (no float to be NaN): orjson's text is json's
        text = orjson.dumps(header)
    except orjson.JSONEncodeError:  # (what else it refuses, ints past 64 bits, none holds)
        raise UsageError("safetensors metadata must be valid Unicode (it holds a lone "
                         "surrogate)") from None
    return text + b" " * (-len(text) % 8)


def _write_batch(f: Any, batch: list[_Planned], path: str) -> None:
    """Small tensors stored as they are, in file order: read together (`read_many`, one read
    per run of neighbours when they come from a file) and written in one call."""
    if not batch:
        return
    tensors = [p.tensor for p in batch]
    if all(p.tensor.dtype == _TYPES[p.code] for p in batch):  # type: ignore[union-attr]
        parts = raw_parts(tensors)  # type: ignore[arg-type]
        if parts is not None and all(len(m) == p.nbytes for m, p in zip(parts, batch)):
            f.write(b"".join(parts))  # close together in their file: one read, no array each
            return
    parts = []
    for plan, array in zip(batch, read_many(tensors)):  # type: ignore[arg-type]
        array = np.ascontiguousarray(array, dtype=_TYPES[plan.code]).reshape(-1)
        if array.nbytes != plan.nbytes:
            raise UsageError(f"tensor {plan.name!r} gave {array.nbytes} bytes of data, its "
                             f"shape {list(plan.shape)} needs {plan.nbytes}", path)
        parts.append(array.view(np.uint8).data)
    f.write(b"".join(parts))


def _write_data(f: Any, plan: _Planned, path: str) -> None:
    stored = _TYPES[plan.code]
    written = 0
    for chunk in plan.chunks():
        chunk = np.ascontiguousarray(chunk, dtype=stored).reshape(-1)
        f.write(chunk.view(np.uint8).data)
        written += chunk.nbytes
    if written != plan.nbytes:
        raise UsageError(f"tensor {plan.name!r} gave {written} bytes of data, its shape "
                         f"{list(plan.shape)} needs {plan.nbytes}", path)


FORMAT = Format(
    name=NAME, description="safetensors", sniff=sniff, read=read, plan=plan, write=write,
    suffixes=(".safetensors",), git_patterns=("*.safetensors",), namespace=NAME,
    structure="the safetensors header metadata",
)
