"""NumPy .npz archives: read with zipfile and a safe .npy header parser (never pickle), lazily;
write a zip of .npy members, streamed.

Reading: a member stored without compression (`np.savez`) is a zero-copy view of a memory map
of its bytes (at the data offset its local header gives; see `mapped.py`); a deflated member
(`np.savez_compressed`) is decompressed on demand, only as far as the rows asked for. Before any
data is read every member is checked: names (no `..`, absolute, backslash or duplicate names),
no encryption, stored or deflated only, sizes inside the file and a declared size no larger than
deflate can produce from the stored bytes (a bomb is refused before anything is allocated),
a .npy header that parses as a literal, and shape x itemsize == data size. Object arrays
(which need pickle) are refused. Fortran-order arrays are read correctly. A stored member's CRC-32
is checked on its first read (one pass over its bytes); a deflated member's is checked by zipfile
when it is read to the end.

Writing: one `NAME.npy` member per tensor (canonical names, `/` allowed), ZIP_STORED, with fixed
timestamps so that equal stores give equal bytes; `np.load` reads every member. Dtypes .npy lacks
are stored as plain integers and recorded in a JSON member `__weightkit__.json` (the *carry*,
see `carry.py`, which `np.load` users can ignore), along with the source format, `store.meta`
and every tensor's `meta`:

    bfloat16, float8_*, float4_e2m1fn   their bits as uint16 / uint8
    int4 / uint4                        int8 / uint8, by value
    string                              fixed-width bytes `S<w>`; numpy drops trailing NUL bytes,
                                        so when an element ends with NUL the byte length of every
                                        element is recorded and the reader restores them exactly

Foreign `S` and `U` arrays read as strings (UTF-8 for `U`); their descr is kept in
`tensor.meta["npz"]["descr"]` and used again when writing.
"""
from __future__ import annotations

import ast
import io
import itertools
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from . import carry
from .atomic import atomic_output
from .dtypes import STRING, dtype_name, is_string
from .format import Format, WritePlan
from .errors import CorruptFileError, UnsafeFileError, UnknownFormatError, UsageError, WeightsError
from .mapped import rows
from .safezip import ZIP_ERRORS, Member, SafeZip, check_member_name, member_names
from .store import (CHUNK_BYTES, SMALL_TENSOR, Extent, Index, Store, Tensor, check_shape,
                    read_many, shown)
from .zipwrite import StoredZipWriter

NAME = "npz"
CARRY_MEMBER = "__weightkit__.json"
NPY = ".npy"
MAX_NPY_HEADER = 1 << 20
KNOWN_HEADERS = 4096  # distinct .npy headers remembered while reading one archive
MAX_CARRY = 100_000_000  # as the safetensors header limit
SMALL_MEMBER = 1 << 20  # members written in one piece
HEAD_BYTES = 256  # read of each member's start for its .npy header (numpy's: 64 or 128)
KERAS_MEMBERS = frozenset({"config.json", "metadata.json", "model.weights.h5"})
DATE = (1980, 1, 1, 0, 0, 0)

_NATIVE_KINDS = "biufc"

# Dtypes .npy cannot hold: (stored dtype, to file, from file)
_ENCODINGS: dict[str, tuple[np.dtype, Callable[[np.ndarray], np.ndarray],
                            Callable[[np.ndarray], np.ndarray]]] = {}
for _name, _bits in (("bfloat16", np.uint16), ("float8_e4m3fn", np.uint8),
                     ("float8_e5m2", np.uint8), ("float8_e4m3fnuz", np.uint8),
                     ("float8_e5m2fnuz", np.uint8), ("float8_e8m0fnu", np.uint8),
                     ("float4_e2m1fn", np.uint8)):
    _dtype = np.dtype(getattr(ml_dtypes, _name))
    _ENCODINGS[_name] = (np.dtype(_bits), lambda a, b=_bits: a.view(b),
                         lambda a, d=_dtype: a.view(d))
for _name, _int in (("int4", np.int8), ("uint4", np.uint8)):
    _dtype = np.dtype(getattr(ml_dtypes, _name))
    _ENCODINGS[_name] = (np.dtype(_int), lambda a, i=_int: a.astype(i),
                         lambda a, d=_dtype: a.astype(d))


# ---------------------------------------------------------------------------------------------
# detection

def sniff(path: str, head: bytes) -> bool:
    """A zip whose members are .npy arrays (and not a Keras archive)."""
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return False
    listed = member_names(path)
    if listed is None:
        return False
    names = [n for n in listed if not n.endswith("/")]
    if KERAS_MEMBERS & set(names):
        return False
    if not names:
        return path.lower().endswith(".npz")
    return all(n.endswith(NPY) or n == CARRY_MEMBER for n in names)


# ---------------------------------------------------------------------------------------------
# reading

def _members(archive: SafeZip, path: str) -> list[Member]:
    """The archive's members that hold data: each a .npy array or the carry."""
    out = []
    for member in archive.members:
        if member.is_dir:
            continue
        if not (member.name.endswith(NPY) or member.name == CARRY_MEMBER):
            raise UnknownFormatError(f"zip member {member.name!r} is not a .npy array", path)
        out.append(member)
    return out


_PLAIN_HEADER = re.compile(  # numpy's own header (numpy/lib/format.py, _wrap_header)
    rb"\{'descr': '([<>|=][a-zA-Z]\d{0,9})', 'fortran_order': (True|False), "
    rb"'shape': \((|N,|N(?:, N)+,?)\), \} *\n?".replace(b"N", rb"(?:0|[1-9]\d{0,18})"))


def _literal(text: bytes, major: int, where: str, path: str) -> Any:
    """The header dict of an .npy: numpy's own layout by a regular expression (100,000 members
    parse in a blink), anything else by `ast.literal_eval` (literals only, never code)."""
    plain = _PLAIN_HEADER.fullmatch(text)
    if plain is not None:
        dims = plain.group(3).decode().replace(",", " ").split()
        return {"descr": plain.group(1).decode(), "fortran_order": plain.group(2) == b"True",
                "shape": tuple(int(d) for d in dims)}
    try:
        return ast.literal_eval(text.decode("utf-8" if major == 3 else "latin1"))
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        raise CorruptFileError(f"{where}: .npy header is not a Python literal", path) from None


@dataclass
class _Npy:
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype  # as stored (may be big-endian, S or U)
    header_len: int


def parse_npy_header(head: bytes, more: Callable[[int], bytes], data_size: int, where: str,
                     path: str, known: dict | None = None) -> _Npy:
    """The .npy header at the start of a member of `data_size` bytes, checked against that size.

    `head`: the member's first bytes (all of them when it is shorter; numpy's headers are 64 or
    128 bytes, so one read of a few hundred bytes holds most); `more(n)`: its first n bytes
    when the header runs past `head`. `known`: headers already parsed and found valid in this
    archive (their text -> (shape, fortran order, dtype)): many members share a header, whose
    parse and dtype checks are the same each time; the size check is made for every member.
    Format: numpy/lib/format.py (magic, version, little-endian header length, header text)."""
    if len(head) < 8 or head[:6] != b"\x93NUMPY" or head[6] not in (1, 2, 3):
        raise CorruptFileError(f"{where} is not a .npy array (bad magic)", path)
    major = head[6]
    width = 2 if major == 1 else 4
    if len(head) < 8 + width:
        raise CorruptFileError(f"{where}: truncated .npy header", path)
    hlen = int.from_bytes(head[8:8 + width], "little")
    if hlen > MAX_NPY_HEADER:
        raise UnsafeFileError(f"{where}: .npy header of {hlen} bytes", path)
    header_len = 8 + width + hlen
    if header_len > len(head):
        head = more(min(header_len, data_size))
    text = head[8 + width:header_len]
    if len(text) != hlen:
        raise CorruptFileError(f"{where}: truncated .npy header", path)
    hit = known.get((major, text)) if known is not None else None
    if hit is not None:
        shape, fortran, dtype = hit
        _fits(shape, dtype, data_size - header_len, where, path)
        return _Npy(shape, fortran, dtype, header_len)
    header = _literal(text, major, where, path)
    if not (isinstance(header, dict) and set(header) == {"descr", "fortran_order", "shape"}
            and isinstance(header["fortran_order"], bool) and isinstance(header["shape"], tuple)
            and carry.valid_shape(list(header["shape"]))):
        raise CorruptFileError(f"{where}: malformed .npy header {shown(header)}", path)
    try:
        dtype = np.lib.format.descr_to_dtype(header["descr"])
    except (TypeError, ValueError, KeyError, IndexError, SyntaxError):  # numpy's comma-string
        # parser hands repeat counts to ast.literal_eval: ',f4' raises SyntaxError
        raise CorruptFileError(f"{where}: unknown dtype {shown(header['descr'])}", path) from None
    if dtype.hasobject:
        raise UnsafeFileError(f"{where} is an object array (it needs pickle; refused)", path)
    if dtype.kind not in _NATIVE_KINDS + "SU" or dtype.fields is not None or dtype.subdtype:
        raise UnknownFormatError(f"{where}: unsupported dtype {dtype.str}", path)
    if dtype.kind in _NATIVE_KINDS:
        try:
            dtype_name(dtype)
        except UsageError:
            raise UnknownFormatError(f"{where}: unsupported dtype {dtype.str}", path) from None
    if dtype.itemsize == 0:  # numpy writes S1/U1 at least: S0 would make any count fit 0 bytes
        raise CorruptFileError(f"{where}: zero-width dtype {dtype.str} (numpy never writes "
                               "one)", path)
    shape = check_shape(header["shape"], where, path, dtype.itemsize)
    _fits(shape, dtype, data_size - header_len, where, path)
    if known is not None and len(known) < KNOWN_HEADERS:
        known[major, text] = (shape, header["fortran_order"], dtype)
    return _Npy(shape, header["fortran_order"], dtype, header_len)


def _fits(shape: tuple[int, ...], dtype: np.dtype, held: int, where: str, path: str) -> None:
    """Refuse a member whose data is not the size its header declares."""
    need = math.prod(shape) * dtype.itemsize
    if need != held:
        raise CorruptFileError(f"{where}: shape {list(shape)} of {dtype.str} needs {need} bytes, "
                               f"the member holds {held}", path)


def read(path: str) -> Store:
    """Open an .npz lazily: stored members are mmap views, deflated ones decompress on demand."""
    path = os.fspath(path)
    archive = SafeZip(path)
    try:
        return _read(archive, path)
    except WeightsError:
        archive.close()
        raise
    except ZIP_ERRORS as exc:
        archive.close()
        raise CorruptFileError(f"unreadable zip archive ({exc})", path) from None
    except BaseException:
        archive.close()
        raise


def _read(archive: SafeZip, path: str) -> Store:
    arrays: dict[str, tuple[Member, _Npy]] = {}
    doc = None
    members = _members(archive, path)
    archive.plan(members)  # a URL: every member's header and data in merged requests
    heads = archive.heads(members, HEAD_BYTES)
    known: dict = {}
    for member in members:
        name = member.name
        if name == CARRY_MEMBER:
            if member.size > MAX_CARRY:
                raise UnsafeFileError(f"{CARRY_MEMBER} of {member.size} bytes", path)
            doc = carry.parse_json(archive.read(member), path, CARRY_MEMBER)
            continue
        head = heads.get(name)
        if head is None:
            head = archive.range(member, 0, min(member.size, HEAD_BYTES))
        arrays[name[:-len(NPY)]] = (member, parse_npy_header(
            head, lambda n, member=member: archive.range(member, 0, n), member.size,
            f"member {name!r}", path, known))
    carried = carry.Carry(doc, list(arrays), path)
    tensors = {name: _tensor(archive, name, *arrays[name], carried, path) for name in carried.order}
    return Store(tensors, format=NAME, meta=carried.store_meta({}), path=path,
                 on_close=archive.close)


def _tensor(archive: SafeZip, name: str, member: Member, npy: _Npy, carried: carry.Carry,
            path: str) -> Tensor:
    meta = carried.tensor_meta(name)
    encoding = carried.encoding(name, npy.shape)
    raw = _raw_getter(archive, member, npy)
    stored = npy.dtype
    what = f"weightkit metadata for {name!r} does not match the stored array"
    if encoding is None:
        if stored.kind in "SU":
            meta.setdefault("npz", {"descr": stored.str})
            return Tensor(npy.shape, STRING, lambda i: _strings(raw(i), None), meta)
        return Tensor(npy.shape, stored.newbyteorder("="), raw, meta)
    dtype = encoding["dtype"]
    if encoding["shape"] != npy.shape:
        raise CorruptFileError(what, path)
    if is_string(dtype):
        lengths = encoding["lengths"]
        if stored.kind == "U" and lengths is None:  # as weightkit 0.x wrote a U array
            return Tensor(npy.shape, dtype, lambda i: _strings(raw(i), None), meta)
        if stored.kind != "S" or any(n > stored.itemsize for n in lengths or ()):
            raise CorruptFileError(what, path)
        if lengths is None:
            return Tensor(npy.shape, dtype, lambda i: _strings(raw(i), None), meta)
        positions = np.arange(len(lengths)).reshape(npy.shape)
        return Tensor(npy.shape, dtype, lambda i: _strings(
            raw(i), [lengths[k] for k in positions[i].reshape(-1)]), meta)
    kind = dtype_name(dtype)
    if kind not in _ENCODINGS or _ENCODINGS[kind][0] != stored.newbyteorder("="):
        raise CorruptFileError(what, path)
    decode = _ENCODINGS[kind][2]
    return Tensor(npy.shape, dtype, lambda i: decode(np.asarray(raw(i), dtype=_ENCODINGS[kind][0])),
                  meta)


def _strings(array: np.ndarray, lengths: list[int] | None) -> np.ndarray:
    """An S or U array as an object array of bytes (exact lengths when given)."""
    out = np.empty(array.shape, dtype=object)
    flat = out.reshape(-1)
    values = array.reshape(-1)
    if array.dtype.kind == "U":
        for i, v in enumerate(values):
            flat[i] = str(v).encode("utf-8")
    elif lengths is None:
        for i, v in enumerate(values):
            flat[i] = bytes(v)
    else:
        raw = np.ascontiguousarray(values).view(np.uint8).reshape(len(values), -1) \
            if values.size else np.zeros((0, 0), np.uint8)
        for i, length in enumerate(lengths):
            flat[i] = raw[i, :length].tobytes()
    return out


def _raw_getter(archive: SafeZip, member: Member, npy: _Npy) -> Callable[[Index], np.ndarray]:
    """get(index) for the array as stored (its own dtype and order), reading only the rows of
    a C-order array that the index needs: a stored C-order member is an Extent (`read_many`
    reads many small ones at once), anything else a `_RawGetter`."""
    if member.stored and not npy.fortran and member.data_start >= 0:
        return _NpyExtent(archive, member, npy)
    return _RawGetter(archive, member, npy)


class _NpyExtent(Extent):
    """The data of a stored, C-order .npy member, where it lies in the archive; its zip CRC-32
    (over the .npy header and the data) checked before any of it is used."""

    __slots__ = ("archive", "member", "header_len")

    def __init__(self, archive: SafeZip, member: Member, npy: _Npy):
        super().__init__(archive.data, member.data_start + npy.header_len, npy.dtype, npy.shape)
        self.archive, self.member, self.header_len = archive, member, npy.header_len

    def read(self, index: Index) -> np.ndarray:
        self.archive.verify(self.member)
        return super().read(index)

    def verify(self, data: memoryview) -> None:
        archive, member = self.archive, self.member
        archive.verify_parts(member, (archive.range(member, 0, self.header_len), data))


class _RawGetter:
    """get(index) of `_raw_getter`: one small object per member (a closure kept a function and
    seven cells, for each of 100,000 members)."""

    __slots__ = ("archive", "member", "npy", "row_bytes")

    def __init__(self, archive: SafeZip, member: Member, npy: _Npy):
        self.archive, self.member, self.npy = archive, member, npy
        self.row_bytes = npy.dtype.itemsize * math.prod(npy.shape[1:])

    def block(self, start: int, shape: tuple[int, ...]) -> np.ndarray:
        """The elements from byte `start` of the data, in `shape` (the array's order)."""
        npy, archive, member = self.npy, self.archive, self.member
        n = math.prod(shape)
        if n == 0:
            return np.empty(shape, npy.dtype)
        offset = npy.header_len + start
        if member.stored:
            archive.verify(member)
            flat = archive.array(member, offset, npy.dtype, (n,))
        else:
            flat = np.frombuffer(archive.range(member, offset, offset + n * npy.dtype.itemsize),
                                 npy.dtype)
        return flat.reshape(shape[::-1]).T if npy.fortran else flat.reshape(shape)

    def __call__(self, index: Index) -> np.ndarray:
        npy = self.npy
        run = None if npy.fortran else rows(index, npy.shape)
        if run is None:
            return np.asarray(self.block(0, npy.shape)[index])
        r0, r1, local = run
        return np.asarray(self.block(r0 * self.row_bytes, (r1 - r0, *npy.shape[1:]))[local])


# ---------------------------------------------------------------------------------------------
# writing

def losses(store: Store, like: Store | None = None) -> list[str]:
    """Nothing is lost unless metadata is not JSON: every dtype has an encoding."""
    return carry.json_losses(store)


def check_tensor_name(name: str, path: str) -> None:
    """Refuse names that would make unsafe or ambiguous zip members."""
    try:
        if not name or name.endswith("/"):
            raise UnsafeFileError("empty", path)
        check_member_name(name + NPY, path)
    except UnsafeFileError:
        raise UsageError(f"the name {name!r} cannot be an npz member: {_unfit(name)}",
                         path) from None


def _unfit(name: str) -> str:
    """Why `name` + .npy is no safe member name (`check_member_name`'s rules, in words)."""
    if not name or name.endswith("/"):
        return "it is empty or ends with '/'"
    if "\x00" in name:
        return "it holds a NUL character"
    if "\\" in name:
        return "it holds a backslash"
    if name.startswith("/") or (len(name) > 1 and name[0].isalpha() and name[1] == ":"):
        return "it is an absolute path or starts with a drive letter"
    return "it has an empty, '.' or '..' path component"


@dataclass
class _Planned:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    chunks: Callable[[], Iterator[np.ndarray]]
    tensor: Tensor | None = None  # stored as it is (what `read_many` may read in a batch)


def _plan(name: str, tensor: Tensor) -> tuple[_Planned, dict]:
    """How `tensor` is stored, and its carry record ({} when .npy holds it as it is)."""
    if is_string(tensor.dtype):
        return _plan_strings(name, tensor)
    kind = dtype_name(tensor.dtype)
    if kind in _ENCODINGS:
        stored, to_file, _ = _ENCODINGS[kind]
        return (_Planned(name, stored, tensor.shape,
                         lambda: (to_file(c) for c in tensor.iter_chunks())), {"dtype": kind})
    return _Planned(name, tensor.dtype, tensor.shape, tensor.iter_chunks, tensor), {}


def _plan_strings(name: str, tensor: Tensor) -> tuple[_Planned, dict]:
    data, lengths = carry.encode_strings(tensor)
    items = np.empty(len(lengths), dtype=object)
    start = 0
    for i, n in enumerate(lengths):
        items[i] = data[start:start + n].tobytes()
        start += n
    width = max([1, *lengths])
    descr = tensor.meta.get("npz", {}).get("descr") if isinstance(tensor.meta.get("npz"), dict) \
        else None
    record: dict[str, Any] = {"dtype": "string"}
    array = None
    if isinstance(descr, str) and descr[1:2] == "U" and not any(b.endswith(b"\x00") for b in items):
        try:
            text = [b.decode("utf-8") for b in items]
            if int(descr[2:] or 0) >= max([0, *map(len, text)]):
                array = np.array(text, dtype=descr).reshape(tensor.shape)
        except (UnicodeDecodeError, TypeError, ValueError):
            array = None
    if array is not None:
        record = {}  # a U array reads back as these strings: nothing to carry
    else:
        if isinstance(descr, str) and descr[1:2] == "S" and descr[2:].isdigit():
            width = max(width, int(descr[2:]))
        array = np.array(list(items), dtype=f"S{width}").reshape(tensor.shape)
        if any(b.endswith(b"\x00") for b in items):
            record["lengths"] = lengths
    return _Planned(name, array.dtype, tensor.shape, lambda: iter([array.reshape(-1)])), record


def plan(store: Store, like: Store | None = None) -> WritePlan:
    """The members to write and the carried metadata (npz needs nothing from a template;
    `like` is accepted for the common interface)."""
    return WritePlan.of(store, like, losses(store, like), lambda: _layout(store))


def _layout(store: Store) -> tuple[list[_Planned], dict | None]:
    carry.check_names(store, None, NAME)
    for name in store:
        check_tensor_name(name, None)
    planned, encodings = carry.plan_tensors(store, _plan)
    doc = carry.build(store, NAME, native_namespace=None, encodings=encodings,
                      file_order=list(store))
    return planned, doc


def write(plan: WritePlan, path: str) -> None:
    """Write the planned .npz of .npy members, atomically, streaming tensor by tensor (the zip
    container by `zipwrite`: zipfile's per-member cost was most of a 100,000-tensor write)."""
    path = os.fspath(path)
    planned, doc = plan.detail
    headers: dict = {}
    with atomic_output() as out:
        with out.open(path) as f:
            archive = StoredZipWriter(f, DATE)
            for batch in _batches(planned):
                for item in batch:
                    _write_member(archive, item, path, headers)
            if doc is not None:
                archive.add(CARRY_MEMBER, carry.dumps(doc).encode("utf-8"))
            archive.close()


def _batches(planned: list[_Planned]) -> Iterator[list[_Planned]]:
    """The plans in order, in runs of at most CHUNK_BYTES of data; the small tensors stored as
    they are in a run read together (`read_many`: one read per run of neighbours when they
    come from one file) and planned from those arrays."""
    run: list[_Planned] = []
    nbytes = 0
    for item in planned:
        run.append(item)
        nbytes += math.prod(item.shape) * item.dtype.itemsize
        if nbytes >= CHUNK_BYTES:
            yield _read_small(run)
            run, nbytes = [], 0
    if run:
        yield _read_small(run)


def _read_small(run: list[_Planned]) -> list[_Planned]:
    small = [i for i, p in enumerate(run)
             if p.tensor is not None and p.tensor.nbytes <= SMALL_TENSOR]
    for i, array in zip(small, read_many([run[i].tensor for i in small])):  # type: ignore
        flat = array.reshape(-1)
        run[i] = _Planned(run[i].name, run[i].dtype, run[i].shape,
                          lambda flat=flat: iter([flat]))
    return run


def _write_member(archive: StoredZipWriter, plan: _Planned, path: str, headers: dict
                  ) -> None:
    header = _npy_header(plan, headers)
    nbytes = math.prod(plan.shape) * plan.dtype.itemsize
    chunks = (np.ascontiguousarray(chunk, dtype=plan.dtype).reshape(-1).view(np.uint8)
              for chunk in plan.chunks())
    if nbytes <= SMALL_MEMBER:  # in one piece: one write, its CRC known before its header
        data = b"".join([header, *chunks])
        written = len(data) - len(header)
        if written == nbytes:
            archive.add(plan.name + NPY, data)
    else:
        written = archive.add_stream(plan.name + NPY, len(header) + nbytes,
                                     itertools.chain([header], chunks)) - len(header)
    if written != nbytes:
        raise UsageError(f"tensor {plan.name!r} gave {written} bytes of data, its shape "
                         f"{list(plan.shape)} needs {nbytes}", path)


def _npy_header(plan: _Planned, headers: dict) -> bytes:
    """The .npy header (numpy's format 1.0, or 2.0 when it does not fit). `headers`: those
    already made in this write, by descr and shape (numpy's take ~15 us each)."""
    descr = np.lib.format.dtype_to_descr(plan.dtype)
    key = (descr, repr(plan.shape)) if isinstance(descr, str) else None
    made = headers.get(key) if key is not None else None
    if made is None:
        out = io.BytesIO()
        header = {"descr": descr, "fortran_order": False, "shape": plan.shape}
        try:
            np.lib.format.write_array_header_1_0(out, header)
        except ValueError:
            np.lib.format.write_array_header_2_0(out, header)
        made = out.getvalue()
        if key is not None and len(headers) < KNOWN_HEADERS:
            headers[key] = made
    return made


FORMAT = Format(
    name=NAME, description="NumPy .npz archive", sniff=sniff, read=read, plan=plan, write=write,
    suffixes=(".npz",), git_patterns=("*.npz",), namespace=NAME,
    structure="the npz member layout",
)
