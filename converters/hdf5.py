"""Safe HDF5 access shared by the Keras formats: checks before any data read, lazy tensors, and
an exact JSON description of the file (groups, attributes, dataset properties) for writing back.

Every object is visited through its link first: external and soft links, external raw storage,
virtual datasets, filters that are not built into HDF5, objects linked twice (cycles) and
datasets declaring more bytes than they store are refused before a byte of data is read. Dynamic
filter plugins are never loaded (the plugin search path is emptied on first use).

The description (`describe()`) is a tree of plain data:

    group   = {"attrs": [[name, attr], ...], "children": [[name, node], ...]}
    dataset = {"attrs": [...], "dataset": {"type": type, "shape": [...], ...creation options}}
    attr    = {"type": type, "shape": [...] | None, "value": [...] | "b64": "..."}
    type    = numpy dtype string ("<f4") | "bool" | {"str": "vlen" | n, "cset": "utf-8" | "ascii"}
              | {"opaque": n}

Attribute values are exact: strings as text (or base64 when not UTF-8), numbers as base64 of
their raw bytes. `write_tree()` recreates the same tree, taking dataset contents from tensors.
"""
from __future__ import annotations

import base64
import contextlib
import errno
import json
import math
import os
import re
import select
import signal
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import ml_dtypes
import numpy as np

from . import source as seam
from .deps import require
from .dtypes import STRING, dtype_from_name
from .errors import CorruptFileError, UnsafeFileError, UsageError, WeightsError, naming
from .mapped import SMALL_READ, FileChangedError, map_range, rows
from .store import Store, Tensor, block_indices, check_shape

# HDF5 built-in filters (deflate, shuffle, fletcher32, szip, nbit, scaleoffset) and h5py's lzf.
SAFE_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit", 6: "scaleoffset",
                32000: "lzf"}
# A compressed dataset may expand at most this much (plus a small allowance): bombs are refused.
MAX_EXPANSION = 1024
SMALL_BYTES = 1 << 20
# Opaque types tagged by Keras with a `dtype` attribute (bfloat16) and their float8 siblings.
OPAQUE_TAGS = {name: np.dtype(getattr(ml_dtypes, name)) for name in (
    "bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
    "float8_e8m0fnu")}
# How long metadata parsing may go without progress in the vetting child before the file counts
# as damaged (libhdf5 looping).
VET_SECONDS = 2.0
VLEN_READ_BYTES = 64 << 20  # variable-length strings read at a time, at most
MAX_CHUNKS_PER_READ = 1024
H5_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, IndexError, AttributeError,
             UnicodeError, OverflowError, MemoryError)


def h5py_module():
    """h5py, with the filter-plugin search path emptied so that no plugin is ever loaded."""
    h5py = require("h5py")
    if not getattr(h5py_module, "_done", False):
        while h5py.h5pl.size():
            h5py.h5pl.remove(0)
        h5py_module._done = True
    return h5py


@contextlib.contextmanager
def h5_errors(path: str | None, what: str = "HDF5 file") -> Iterator[None]:
    """Turn h5py/numpy failures inside the block into a one-line CorruptFileError, and name
    the file in weightkit errors raised without one."""
    try:
        with naming(path):
            yield
    except WeightsError:
        raise
    except H5_ERRORS as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptFileError(f"unreadable {what}: {text}", path) from None


def open_file(source: str | Any, path: str | None = None, *, data: Any = None,
              base: int = 0):
    """Open an HDF5 file read-only: a local path or a URL (through the byte seam), or a
    seekable binary file object. `data`, `base`: the open source a file object reads from and
    where the HDF5 file begins in it (a `.keras` member), so that contiguous datasets are read
    from it by offset rather than through the HDF5 library.

    A local file is opened by path (libhdf5's own I/O; datasets mapped from its descriptor); a
    URL through a file object over the seam's block cache: the metadata walk costs a request
    per block it touches, and `describe` plans the contiguous datasets' ranges."""
    h5py = h5py_module()
    where = path if path is not None else source
    with h5_errors(where):
        if isinstance(source, (str, os.PathLike)):
            src = seam.open_source(source)
            try:
                if src.pread(0, 8) != b"\x89HDF\r\n\x1a\n":
                    raise CorruptFileError("expected an HDF5 file (signature 89 48 44 46); "
                                           "received other bytes", where)
                if src.local is not None:
                    return h5py.File(src.local, "r")
                f = h5py.File(src.fileobj(), "r")
            except BaseException:
                src.close()
                raise
            finally:
                if src.local is not None:
                    src.close()
            weakref.finalize(f, src.close)
            data, base = src, 0
        else:
            f = h5py.File(source, "r")
        if data is not None and data.local is None:
            _SOURCES[f.id] = (data, base)
        return f


# Files opened on a file object whose bytes come from a remote source: (source, base).
_SOURCES: "weakref.WeakKeyDictionary[Any, tuple[Any, int]]" = weakref.WeakKeyDictionary()


def _source_of(ds) -> tuple[Any, int] | None:
    try:
        return _SOURCES.get(ds.file.id)
    except TypeError:
        return None


def is_hdf5(head: bytes) -> bool:
    return head.startswith(b"\x89HDF\r\n\x1a\n")


# -- attributes ----------------------------------------------------------------------------------

def _type_spec(dtype: np.dtype, h5py) -> Any:
    info = h5py.check_string_dtype(dtype)
    if info is not None:
        return {"str": "vlen" if info.length is None else info.length, "cset": info.encoding}
    if dtype == np.bool_:
        return "bool"
    if dtype.kind == "V" and dtype.fields is None and dtype.subdtype is None:
        return {"opaque": dtype.itemsize}
    if dtype.kind in "iufc" and dtype.fields is None:
        return dtype.str
    raise CorruptFileError(f"unsupported HDF5 type {dtype!r}: expected numbers, bool, "
                           "strings or opaque")


def _numpy_type(spec: Any, h5py) -> np.dtype:
    if isinstance(spec, dict) and "str" in spec:
        length = None if spec["str"] == "vlen" else int(spec["str"])
        return h5py.string_dtype(spec["cset"], length)
    if isinstance(spec, dict) and "opaque" in spec:
        return np.dtype(f"V{int(spec['opaque'])}")
    return np.dtype(np.bool_) if spec == "bool" else np.dtype(spec)


def _decoded(name: bytes) -> str | bytes:
    """A link name as h5py gives it (h5py/_hl/base.py `_d`): UTF-8 text, else the bytes."""
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return name


def _to_bytes(item: Any) -> bytes:
    return item.encode("utf-8", "surrogateescape") if isinstance(item, str) else bytes(item)


def encode_attr(attrs, name: str) -> dict:
    """The exact JSON-able description of attribute `name`."""
    h5py = h5py_module()
    aid = attrs.get_id(name)
    spec = _type_spec(aid.dtype, h5py)
    value = attrs[name]
    if isinstance(value, h5py.Empty):
        return {"type": spec, "shape": None}
    array = np.asarray(value)
    out: dict[str, Any] = {"type": spec, "shape": list(array.shape)}
    if isinstance(spec, dict) and "str" in spec:
        items = [_to_bytes(x) for x in array.reshape(-1).tolist()]
        try:
            out["value"] = [x.decode("utf-8") for x in items]
        except UnicodeDecodeError:
            out["b64"] = [base64.b64encode(x).decode("ascii") for x in items]
        return out
    out["b64"] = base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")
    return out


def decode_attr(attr: Mapping[str, Any]) -> tuple[Any, np.dtype, tuple | None]:
    """(data, dtype, shape) to recreate an attribute described by `encode_attr`."""
    h5py = h5py_module()
    dtype = _numpy_type(attr["type"], h5py)
    if attr.get("shape") is None:
        return h5py.Empty(dtype), dtype, None
    shape = tuple(attr["shape"])
    if "value" in attr or isinstance(attr["type"], dict) and "str" in attr["type"]:
        items = ([x.encode("utf-8") for x in attr["value"]] if "value" in attr
                 else [base64.b64decode(x) for x in attr["b64"]])
        if h5py.check_string_dtype(dtype).length is None:
            # Bytes, written as they are whatever the declared character set: Keras stores
            # UTF-8 names in attributes declared ASCII.
            data = np.empty(len(items), dtype=object)
            data[:] = items
        else:
            data = np.array(items, dtype=f"S{max(1, dtype.itemsize)}")
        return data.reshape(shape), dtype, shape
    raw = base64.b64decode(attr["b64"])
    store_dtype = np.dtype(np.bool_) if attr["type"] == "bool" else dtype
    return np.frombuffer(raw, dtype=store_dtype).reshape(shape).copy(), dtype, shape


def attr_value(attr: Mapping[str, Any]) -> Any:
    """A described attribute as Python data: str or list of str for strings (UTF-8, whatever
    the declared character set), else lists."""
    if attr.get("shape") is None:
        return None
    if isinstance(attr["type"], dict) and "str" in attr["type"]:
        flat = list(attr["value"]) if "value" in attr else [
            base64.b64decode(x).decode("utf-8", "replace") for x in attr["b64"]]
        return flat[0] if attr["shape"] == [] else flat
    data, _, _ = decode_attr(attr)
    return np.asarray(data).tolist()


def _by_name(items: list) -> list:
    """HDF5 lists links and attributes by name bytes: create them in that order, so a file is
    the same whether its tree was read from a file or built."""
    return sorted(items, key=lambda item: item[0].encode("utf-8", "surrogateescape"))


def write_attrs(obj, attrs: list) -> None:
    for name, attr in _by_name(attrs):
        data, dtype, shape = decode_attr(attr)
        if shape is None:
            obj.attrs.create(name, data)
        else:
            obj.attrs.create(name, data, shape=shape, dtype=dtype)


def attrs_dict(node: Mapping[str, Any]) -> dict[str, Any]:
    """A node's attributes as plain values, by name."""
    return {name: attr_value(attr) for name, attr in node.get("attrs", [])}


def chunked_attr(node: Mapping[str, Any], name: str) -> list[str] | None:
    """A Keras list attribute that may be split into `name0`, `name1`, ... chunks."""
    values = attrs_dict(node)
    if name in values:
        value = values[name]
        return [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)]
    chunks, i = [], 0
    while f"{name}{i}" in values:
        value = values[f"{name}{i}"]
        chunks.extend([value] if isinstance(value, str) else value)
        i += 1
    return chunks if i else None


# -- the tree ------------------------------------------------------------------------------------

def _check_dataset(did, where: str, file_size: int | None, h5py, descriptor: int = 16) -> dict:
    """Refuse unsafe storage; return the dataset's creation description.

    `did` is the library's low-level dataset (`h5py.h5d.DatasetID`): its properties are read
    once each, as h5py's `Dataset` properties read them (h5py/_hl/dataset.py), at a fraction
    of their cost. The bytes a dataset declares (its element count times the size of an
    element as stored: for variable-length strings the `descriptor` each element keeps in the
    dataset's own storage, its length and a global heap ID) must be there: a dataset declaring
    more than it stores (more than deflate can expand to, when filtered) is refused before any
    read.
    """
    dcpl = did.get_create_plist()
    layout = dcpl.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        raise UnsafeFileError(f"dataset {where!r} is virtual (refers to other files); refused")
    if dcpl.get_external_count():
        raise UnsafeFileError(f"dataset {where!r} keeps its data in external files; refused")
    filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
    unknown = [f for f in filters if f not in SAFE_FILTERS]
    if unknown:
        raise UnsafeFileError(f"dataset {where!r} needs filter plugin(s) {unknown}; only the "
                              f"built-in filters ({', '.join(SAFE_FILTERS.values())}) are read")
    tid = did.get_type()  # once: `did.dtype` and `did.get_type()` each open the type
    dtype = tid.dtype
    spec = _type_spec(dtype, h5py)
    space = did.get_space()
    shape = space.get_simple_extent_dims()  # as `did.shape`
    if shape is None:
        raise CorruptFileError(f"dataset {where!r} has an empty (null) dataspace")
    vlen = isinstance(spec, dict) and spec.get("str") == "vlen"
    element = descriptor if vlen else tid.get_size()
    if element <= 0:
        raise CorruptFileError(f"dataset {where!r} has a zero-width type")
    shape = check_shape(shape, f"dataset {where!r}", None, dtype.itemsize)
    desc: dict[str, Any] = {"type": spec, "shape": list(shape)}
    declared = math.prod(shape) * element
    stored = did.get_storage_size()
    if filters:
        if declared > stored * MAX_EXPANSION + SMALL_BYTES:
            raise UnsafeFileError(f"dataset {where!r} declares {declared} bytes but stores "
                                  f"{stored} compressed (a decompression bomb); refused")
    elif declared > stored + SMALL_BYTES or (file_size is not None and stored > file_size):
        raise CorruptFileError(f"dataset {where!r} declares {declared} bytes but the file "
                               f"stores {stored}")
    if layout == h5py.h5d.CHUNKED:
        desc["chunks"] = list(dcpl.get_chunk())
        dims = space.get_simple_extent_dims(True)
        maxshape = None if dims is None else tuple(
            None if d == h5py.h5s.UNLIMITED else d for d in dims)
        if maxshape != shape:
            desc["maxshape"] = list(maxshape) if maxshape is not None else None
    if filters:
        named = h5py.filters.get_filters(dcpl)
        compression = next((x for x in ("gzip", "lzf", "szip") if x in named), None)
        if compression is not None:
            desc["compression"] = compression
            if named.get(compression) is not None:
                desc["compression_opts"] = named[compression]
        for key in ("shuffle", "fletcher32"):
            if key in named:
                desc[key] = True
        if "scaleoffset" in named and named["scaleoffset"][1] is not None:
            desc["scaleoffset"] = named["scaleoffset"][1]
    return desc


def describe(f, path: str | None = None, file_size: int | None = None
             ) -> tuple[dict, list[tuple[str, Any]]]:
    """Walk an open file: (tree, [(dataset path, dataset), ...] in file order), each dataset a
    `Described` (its shape, dtype and data offset known from the walk; the library's object is
    opened only when a read needs it).

    Raises UnsafeFileError / CorruptFileError before any dataset data is read.
    """
    h5py = h5py_module()
    seen: set = set()
    datasets: list[tuple[str, Any]] = []
    offsets: dict[str, int] = {}
    descriptor = 8 + f.id.get_create_plist().get_sizes()[0]  # length, heap address, index
    # a file opened by path (contiguous data mapped) or read from a remote source (by offset)
    local = f.driver == "sec2"
    mapped = local or _SOURCES.get(f.id) is not None

    def node_attrs(oid, wrap, count: int | None = None) -> list:
        if not (h5py.h5a.get_num_attrs(oid) if count is None else count):
            return []
        obj = wrap(oid)
        return [[name, encode_attr(obj.attrs, name)] for name in obj.attrs]

    def visit(gid, prefix: str) -> dict:
        """The low-level API throughout (h5py's `Group` and `Dataset` objects cost ~0.3 ms
        each to open and query: seconds for a file of 10,000 datasets); links in the order
        h5py's `Group.__iter__` gives, by creation order where the group tracks it."""
        tracked = gid.get_create_plist().get_link_creation_order() & h5py.h5p.CRT_ORDER_TRACKED
        links: list[tuple[bytes, int]] = []
        gid.links.iterate(lambda name, info: links.append((name, info.type)), info=True,
                          idx_type=h5py.h5.INDEX_CRT_ORDER if tracked else h5py.h5.INDEX_NAME)
        children = []
        for raw, kind in links:
            alive()
            name = _decoded(raw)
            where = f"{prefix}{name}"
            if kind == h5py.h5l.TYPE_EXTERNAL:
                filename = _decoded(gid.links.get_val(raw)[0])
                raise UnsafeFileError(f"{where!r} is an external link to {filename!r}; refused")
            if kind == h5py.h5l.TYPE_SOFT:
                target = _decoded(gid.links.get_val(raw))
                raise UnsafeFileError(f"{where!r} is a soft link to {target!r}; refused")
            if kind != h5py.h5l.TYPE_HARD:
                raise UnsafeFileError(f"{where!r} is a user-defined link; refused")
            oid = h5py.h5o.open(gid, raw)
            info = h5py.h5o.get_info(oid)
            token = info.addr
            if token in seen:
                raise UnsafeFileError(f"{where!r} links an object already seen (a cycle or "
                                      "shared object); refused")
            seen.add(token)
            if isinstance(oid, h5py.h5d.DatasetID):
                node = {"attrs": node_attrs(oid, h5py.Dataset, info.num_attrs),
                        "dataset": _check_dataset(oid, where, file_size, h5py, descriptor)}
                offset = _contiguous_offset(oid, node["dataset"]) if mapped else None
                if offset is not None:
                    offsets[where] = offset
                if _is_vlen(node["dataset"]["type"]):  # read in the child: libhdf5 may
                    read_strings(h5py.Dataset(oid), (), where)  # loop on a damaged heap
                datasets.append((where, node["dataset"]))
            elif isinstance(oid, h5py.h5g.GroupID):
                node = visit(oid, where + "/")
                node["attrs"] = node_attrs(oid, h5py.Group)
            else:
                raise CorruptFileError(f"{where!r} is a committed datatype; expected groups "
                                       "and datasets only")
            children.append([name, node])
        return {"attrs": [], "children": children}

    def walk_all() -> dict:
        seen.clear()
        datasets.clear()
        offsets.clear()
        root = h5py.h5g.open(f.id, b"/")
        seen.add(h5py.h5o.get_info(root).addr)
        tree = visit(root, "")
        tree["attrs"] = node_attrs(root, lambda oid: f)
        return {"tree": tree, "offsets": offsets}

    with h5_errors(path):
        identity = _identity(f)
        data = _VETTED.get(identity) if identity is not None else None
        if data is None:
            data = in_child(walk_all, path, _walk_json)
            if data is None:  # the child failed with an error: the same walk raises it here
                walked = walk_all()
                return walked["tree"], [(w, Described(f, w, ds, offsets.get(w), local))
                                        for w, ds in datasets]
            if identity is not None:
                _VETTED[identity] = data
                while len(_VETTED) > VETTED_FILES:
                    del _VETTED[next(iter(_VETTED))]
        walked = json.loads(data)
        tree, offsets = walked["tree"], walked["offsets"]
        return tree, [(w, Described(f, w, node["dataset"], offsets.get(w), local))
                      for w, node in walk(tree) if "dataset" in node]


def _walk_json(walked: Mapping[str, Any]) -> Iterator[str]:
    """`json.dumps(walked)` (a vetting walk: tree and offsets) in pieces of one dataset or
    group header each; the same document, keys in another order."""
    yield '{"offsets": ' + json.dumps(walked["offsets"]) + ', "tree": '
    yield from _node_json(walked["tree"])
    yield "}"


def _node_json(node: Mapping[str, Any]) -> Iterator[str]:
    if "children" not in node:
        yield json.dumps(node)
        return
    yield '{"attrs": ' + json.dumps(node["attrs"]) + ', "children": ['
    for i, (name, child) in enumerate(node["children"]):
        yield ("," if i else "") + "[" + json.dumps(name) + ", "
        yield from _node_json(child)
        yield "]"
    yield "]}"


class Described:
    """A dataset of an open file as the vetting walk described it: `shape`, `dtype`, `chunks`
    and the byte `offset` of contiguous data come from the description, and the library's
    dataset object is opened only when something else is asked of it (a chunked, filtered or
    string read). Opening 10,000 h5py datasets costs seconds; these cost nothing."""

    __slots__ = ("file", "name", "shape", "dtype", "chunks", "offset", "local", "_dataset")

    def __init__(self, f, name: str, description: Mapping[str, Any], offset: int | None,
                 local: bool):
        self.file, self.name, self.offset, self._dataset = f, name, offset, None
        self.local = local  # the file is opened by path (libhdf5's sec2 driver)
        self.shape = tuple(description["shape"])
        self.dtype = _numpy_type(description["type"], h5py_module())
        self.chunks = tuple(description["chunks"]) if "chunks" in description else None

    @property
    def dataset(self):
        if self._dataset is None:
            self._dataset = self.file[self.name]
        return self._dataset

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.dataset, attr)

    def __getitem__(self, index: Any) -> Any:
        return self.dataset[index]

    def __len__(self) -> int:
        return len(self.dataset)


VETTED_FILES = 64  # trees of files vetted in this process, by identity
_VETTED: dict[tuple, bytes] = {}


def _identity(f) -> tuple | None:
    """What identifies the content of a file opened by path: device, inode, size, and the
    modification and change times (ctime cannot be set back). None for a file object."""
    if f.driver != "sec2":
        return None
    st = os.fstat(f.id.get_vfd_handle())
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


_beat: Callable[[], None] | None = None  # set in a vetting child


def alive() -> None:
    """In a vetting child: tell the parent the walk progresses (at most every 0.2 s)."""
    if _beat is not None:
        _beat()


def in_child(work: Callable[[], Any], path: str | None,
             encode: Callable[[Any], Iterable[str]] = lambda result: (json.dumps(result),)
             ) -> bytes | None:
    """Run `work` in a forked child and return its result as JSON text: a corrupt file that
    makes the HDF5 library hang or crash while parsing metadata (seen in fuzzing: a damaged
    global heap loops for minutes) is refused as corrupt instead of taking the process down.
    The child reports progress (`alive()`, a NUL byte on the pipe); VET_SECONDS without any is
    a loop, however large the file. None when the child ended with an error (or without fork):
    the caller runs `work` itself, which meets the same error on the same bytes. The result
    comes back as JSON, never pickled, in the pieces `encode` gives (sent as they come: one
    `json.dumps` of a tree of 100,000 datasets would be seconds without progress)."""
    if not hasattr(os, "fork"):
        return None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        code = 0
        try:
            os.close(read_end)
            _start_beating(write_end)
            result = work()
            with os.fdopen(write_end, "wb") as out:
                parts: list[str] = []
                size = 0
                for part in encode(result):
                    parts.append(part)
                    size += len(part)
                    if size >= 1 << 16:
                        out.write("".join(parts).encode())
                        out.flush()
                        parts, size = [], 0
                out.write("".join(parts).encode())
        except WeightsError:
            pass
        except BaseException:  # noqa: BLE001 - reported by exit code; the parent re-raises
            code = 3
        os._exit(code)
    os.close(write_end)
    try:
        data = _read_until(read_end, VET_SECONDS, path)
        _, status = os.waitpid(pid, 0)
    except BaseException:
        _kill(pid)
        raise
    finally:
        os.close(read_end)
    if os.WIFSIGNALED(status):
        raise CorruptFileError(f"the HDF5 library crashed (signal {os.WTERMSIG(status)}) "
                               "parsing this file's metadata; refused", path)
    if os.WEXITSTATUS(status) != 0 or not data:
        return None
    return data


def _start_beating(fd: int) -> None:
    global _beat
    last = [time.monotonic()]

    def beat() -> None:
        now = time.monotonic()
        if now - last[0] >= 0.2:
            os.write(fd, b"\0")
            last[0] = now
    _beat = beat


def _read_until(fd: int, seconds: float, path: str | None) -> bytes:
    """Everything written to the pipe `fd` until it closes (less the NUL bytes of progress),
    as long as something arrives every `seconds`."""
    parts = []
    while True:
        if not select.select([fd], [], [], seconds)[0]:
            raise CorruptFileError(f"HDF5 metadata made no progress for {seconds:.0f} s "
                                   "(a damaged file makes the HDF5 library loop); refused", path)
        part = os.read(fd, 1 << 16)
        if not part:
            return b"".join(parts).replace(b"\0", b"")
        parts.append(part)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def tensor_dtype(ds, attrs: Mapping[str, Any], where: str) -> np.dtype:
    """The canonical dtype of a dataset: opaque types need a known `dtype` tag."""
    dt = ds.dtype
    h5py = h5py_module()
    if h5py.check_string_dtype(dt) is not None:
        return STRING
    if dt.kind == "V":
        tag = attrs.get("dtype")
        if tag in OPAQUE_TAGS and OPAQUE_TAGS[tag].itemsize == dt.itemsize:
            return OPAQUE_TAGS[tag]
        raise CorruptFileError(f"dataset {where!r} is opaque {dt.itemsize}-byte data without a "
                               f"known dtype tag (received {tag!r})")
    return dt.newbyteorder("=") if dt.byteorder not in "=|" else dt


def _contiguous_offset(did, description: Mapping[str, Any]) -> int | None:
    """Where a dataset's numbers lie in one unfiltered run of bytes of the file, or None:
    chunked, not yet written, or not a plain number type. `did`: the low-level dataset."""
    if "chunks" in description or _numpy_type(description["type"], h5py_module()).kind \
            not in "biufc":
        return None
    return did.get_offset()


def _source_getter(ds, offset: int, path: str | None) -> Callable[[tuple], np.ndarray]:
    """get(index) reading the rows it needs by offset from the remote source the file is
    read from; its bytes are planned now (tensors are made in store order: few requests)."""
    data, base = _source_of(ds)
    fid, dtype, shape = ds.file.id, ds.dtype, ds.shape
    row_bytes = dtype.itemsize * math.prod(shape[1:])
    data.plan([(base + offset, dtype.itemsize * math.prod(shape))])

    def get(index: tuple) -> np.ndarray:
        if not fid.valid:
            raise UsageError("the store is closed", path)
        run = rows(index, shape)
        r0, r1, index = (0, shape[0] if shape else 1, index) if run is None else run
        count = (r1 - r0) * math.prod(shape[1:]) if shape else 1
        block = data.array(base + offset + r0 * row_bytes, dtype, (count,))
        return block.reshape((r1 - r0, *shape[1:]) if shape else ())[index]
    return get


class _OpenFile:
    """What every mapped read of one open file shares: the library's file id (to tell a closed
    store), its descriptor, name and size at opening."""

    __slots__ = ("fid", "fd", "filename", "opened", "size", "__weakref__")

    def __init__(self, f):
        self.fid, self.fd, self.filename = f.id, f.id.get_vfd_handle(), f.filename
        self.opened = os.fstat(self.fd)
        self.size = self.opened.st_size


_OPEN_FILES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # h5py File -> _OpenFile
_LAST_OPEN: list = [lambda: None, lambda: None]  # weak references: an h5py File, its _OpenFile


def _open_file(f) -> _OpenFile:
    """The `_OpenFile` of h5py File `f`. The file last asked for is checked first, by identity:
    hashing an h5py object asks the library for the object's address (~14 us, 10,000 times
    over for a file of 10,000 datasets)."""
    opened = _LAST_OPEN[1]()
    if opened is not None and _LAST_OPEN[0]() is f:
        return opened
    opened = _OPEN_FILES.get(f) or _OPEN_FILES.setdefault(f, _OpenFile(f))
    _LAST_OPEN[:] = [weakref.ref(f), weakref.ref(opened)]
    return opened


class _MappedGetter:
    """get(index) as a zero-copy view of a map of the rows it needs (the HDF5 library would
    copy every block into a new array first). One small object per dataset (a closure kept
    ten cells and an fstat result each: ~1 KB for a file of 100,000 datasets)."""

    __slots__ = ("file", "offset", "dtype", "shape", "row_bytes", "path")

    def __init__(self, ds, offset: int, path: str | None):
        f = ds.file
        self.file = _open_file(f)
        self.offset, self.dtype, self.shape, self.path = offset, ds.dtype, ds.shape, path
        self.row_bytes = self.dtype.itemsize * math.prod(self.shape[1:])

    def __call__(self, index: tuple) -> np.ndarray:
        file, dtype, shape, path = self.file, self.dtype, self.shape, self.path
        if not file.fid.valid:  # closed: the descriptor may already name another file
            raise UsageError("the store is closed", path)
        run = rows(index, shape)
        r0, r1, index = (0, shape[0] if shape else 1, index) if run is None else run
        start = self.offset + r0 * self.row_bytes
        nbytes = (r1 - r0) * self.row_bytes if shape else dtype.itemsize
        if start + nbytes > file.size:
            raise CorruptFileError(f"dataset data at {start}+{nbytes} runs past the end of the "
                                   f"file ({file.size} bytes)", path)
        if nbytes == 0:
            return np.empty(shape, dtype)[index]
        if nbytes < SMALL_READ:
            block = np.empty(nbytes // dtype.itemsize, dtype)
            if os.preadv(file.fd, [block.view(np.uint8)], start) != nbytes:
                raise FileChangedError(path=path)
        else:
            if start + nbytes > os.fstat(file.fd).st_size:
                raise FileChangedError(path=path)
            mapped, at = map_range(file.fd, start, nbytes, path or file.filename, file.opened)
            block = np.frombuffer(mapped, dtype, nbytes // dtype.itemsize, at)
        return block.reshape((r1 - r0, *shape[1:]) if shape else ())[index]


def _is_vlen(spec: Any) -> bool:
    return isinstance(spec, dict) and spec.get("str") == "vlen"


def read_strings(ds, index: tuple, where: str) -> np.ndarray:
    """`ds[index]` of a variable-length string dataset as an object array of bytes, read in
    blocks whose strings cannot together exceed VLEN_READ_BYTES.

    Each element of such a dataset is a descriptor (length, global heap ID) in the dataset's
    storage, which the declared-vs-stored check bounds; the strings themselves lie in global
    heap collections, and nothing stops many descriptors from naming the same large heap object:
    a few KB could read as terabytes. So a block holds at most VLEN_READ_BYTES // (file size)
    elements (each string is at most the file), and a read producing more than the file holds
    twice over is refused: libhdf5 writes every element as a heap object of its own.
    """
    shape = ds.shape
    file_size = max(ds.file.id.get_filesize(), 1)
    run = rows(index, shape) if index else None
    if not shape:
        r0, r1, local = 0, 0, index
    elif run is None:
        r0, r1, local = 0, shape[0], index
    else:
        r0, r1, local = run
    sub = (r1 - r0, *shape[1:]) if shape else ()
    out = np.empty(sub, dtype=object)
    flat = out.reshape(-1)
    budget, done, at = 2 * file_size + SMALL_BYTES, 0, 0
    for block in block_indices(sub, file_size, VLEN_READ_BYTES):
        alive()
        if block and isinstance(block[0], slice):
            block = (slice(block[0].start + r0, block[0].stop + r0), *block[1:])
        elif block:
            block = (block[0] + r0, *block[1:])
        data = np.asarray(ds[block] if block else ds[()], dtype=object).reshape(-1)
        for item in data:
            done += len(item)
        if done > budget:
            raise UnsafeFileError(f"the strings of dataset {where!r} add up to more than twice "
                                  "the file (elements share heap data: a bomb); refused")
        flat[at:at + data.size] = [_to_bytes(x) for x in data]
        at += data.size
    return out[local] if local else out


def _chunk_band(ds) -> int | None:
    """Rows of a chunked dataset that span at most MAX_CHUNKS_PER_READ chunks (None: read as
    asked). libhdf5 keeps some KiB of bookkeeping per chunk a read selects, and its time per
    chunk grows with their number: a dataset of 100,000 one-element chunks read at once took
    700 MB and seconds, in bands of 1024 chunks 60 MB."""
    chunks, shape = ds.chunks, ds.shape
    if not chunks or not shape:
        return None
    across = math.prod(-(-n // c) for n, c in zip(shape[1:], chunks[1:]) if c)
    return chunks[0] * max(1, MAX_CHUNKS_PER_READ // max(across, 1))


def _read_banded(ds, index: tuple, band: int | None) -> np.ndarray:
    """`ds[index]`, read in bands of whole chunks when the selection spans many."""
    run = rows(index, ds.shape) if band is not None else None
    if run is None or run[1] - run[0] <= band:
        if band is not None and run is None and ds.shape[0] > band:  # not a run of rows
            return _read_banded(ds, (slice(None),), band)[index]
        return np.asarray(ds[index] if index else ds[()])
    r0, r1, local = run
    out = np.empty((r1 - r0, *ds.shape[1:]), ds.dtype)
    start = r0
    while start < r1:
        stop = min(r1, (start // band + 1) * band)
        ds.read_direct(out, np.s_[start:stop], np.s_[start - r0:stop - r0])
        start = stop
    return out[local]


def lazy_tensor(ds, dtype: np.dtype, meta: Mapping[str, Any], path: str | None) -> Tensor:
    """A Tensor reading `ds` on demand, with errors turned into CorruptFileError."""
    offset = ds.offset if isinstance(ds, Described) and dtype != STRING else None
    if offset is not None:
        getter = _MappedGetter if ds.local else _source_getter
        return Tensor(ds.shape, dtype, getter(ds, offset, path), meta)
    if isinstance(ds, Described) and ds.local and dtype != STRING and ds.chunks is None \
            and ds.dtype.kind in "biufc" and 0 in ds.shape:  # no storage allocated, nothing to
        return Tensor(ds.shape, dtype, _MappedGetter(ds, 0, path), meta)  # read: no file query
    vlen = dtype == STRING and h5py_module().check_string_dtype(ds.dtype).length is None
    where = meta.get("key")
    fd = ds.file.id.get_vfd_handle() if ds.file.driver == "sec2" else None
    size = os.fstat(fd).st_size if fd is not None else None

    def shrank() -> bool:  # libhdf5's sec2 driver reads zeros past the end of a file
        return fd is not None and ds.id.valid and os.fstat(fd).st_size < size

    band = _chunk_band(ds)

    def get(index: tuple) -> np.ndarray:
        try:
            with h5_errors(path, f"dataset {where!r}"):
                data = read_strings(ds, index, where) if vlen else _read_banded(ds, index, band)
        except CorruptFileError:
            if shrank():
                raise FileChangedError(path=path) from None
            raise
        if shrank():
            raise FileChangedError(path=path)
        if dtype == STRING and not vlen:
            return data.astype(object)
        if data.dtype.kind == "V":
            return data.view(dtype)
        return data
    return Tensor(ds.shape, dtype, get, meta)


def walk(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, dict]]:
    """(path, node) for every node under `tree` (depth first, file order)."""
    for name, node in tree.get("children", []):
        where = f"{prefix}{name}"
        yield where, node
        if "children" in node:
            yield from walk(node, where + "/")


_INDEXES: dict[int, tuple[list, int, dict]] = {}  # id(children) -> (children, len, name -> node)


def child(node: Mapping[str, Any], name: str) -> dict | None:
    """The child `name` of a described group (the last of that name), or None. Groups with many
    children are indexed once (trees only ever grow by appending), so finding each of 10,000
    datasets is not quadratic."""
    children = node.get("children")
    if not children:
        return None
    if len(children) < 16:
        return next((c for n, c in reversed(children) if n == name), None)
    hit = _INDEXES.get(id(children))
    if hit is None or hit[0] is not children or hit[1] > len(children):
        if len(_INDEXES) > 64:
            _INDEXES.clear()  # bounded: the cache keeps the lists it indexes alive
        hit = _INDEXES[id(children)] = (children, len(children), dict(children))
    elif hit[1] < len(children):  # appended since: index the new ones (rebuilding it on every
        hit[2].update(children[hit[1]:])  # append made placing n datasets in a group O(n^2))
        hit = _INDEXES[id(children)] = (children, len(children), hit[2])
    return hit[2].get(name)


def find(tree: Mapping[str, Any], path: str) -> dict | None:
    node: Any = tree
    for part in [p for p in path.split("/") if p]:
        node = child(node, part)
        if node is None:
            return None
    return node


# -- writing -------------------------------------------------------------------------------------

def dataset_type(tensor: Tensor, recorded: Any = None) -> tuple[np.dtype, list]:
    """The HDF5 dtype for a tensor and the attrs that tag it (Keras' bfloat16 convention)."""
    h5py = h5py_module()
    if recorded is not None:
        return _numpy_type(recorded, h5py), []
    if tensor.dtype == STRING:
        return h5py.string_dtype("ascii"), []  # vlen bytes, written as they are
    for name, dt in OPAQUE_TAGS.items():
        if tensor.dtype == dt:
            return np.dtype(f"V{dt.itemsize}"), [["dtype", {"type": {"str": "vlen", "cset": "utf-8"},
                                                             "shape": [], "value": [name]}]]
    if tensor.dtype.kind in "biufc":
        return tensor.dtype, []
    raise UsageError(f"HDF5 cannot hold dtype {tensor.dtype_name}")


def write_dataset(group, name: str, tensor: Tensor, spec: Mapping[str, Any] | None,
                  attrs: list) -> None:
    """Create dataset `name` holding `tensor`, with the creation options of `spec` if given."""
    spec = dict(spec or {})
    recorded = spec.get("type") if spec and _same_kind(spec.get("type"), tensor) else None
    dtype, tags = dataset_type(tensor, recorded)
    options = {k: spec[k] for k in ("compression", "compression_opts", "shuffle", "fletcher32",
                                    "scaleoffset") if k in spec}
    if "chunks" in spec and len(spec["chunks"]) == tensor.ndim:
        options["chunks"] = tuple(spec["chunks"])
        if "maxshape" in spec:
            options["maxshape"] = tuple(spec["maxshape"])
    h5py = h5py_module()
    if recorded is None:  # converted since read: the old dtype tag no longer applies
        attrs = [a for a in attrs if a[0] != "dtype"] + tags
    if not options and dtype.kind in "biufc" and "/" not in name:
        dsid = _create_plain(group, name, tensor.shape, dtype, h5py)
        if not attrs and dsid is not None:
            _write_plain(dsid, tensor, dtype, h5py)
            return
        ds = h5py.Dataset(dsid)
    else:
        ds = group.create_dataset(name, shape=tensor.shape, dtype=dtype, **options)
    write_attrs(ds, attrs)
    itemsize = 8 if tensor.dtype == STRING else tensor.dtype.itemsize
    band = _chunk_band(ds)  # as in reading: libhdf5's cost per chunk grows with their number
    max_bytes = 16 << 20 if band is None else max(1, min(
        16 << 20, band * itemsize * math.prod(tensor.shape[1:])))
    for index in block_indices(tensor.shape, itemsize, max_bytes):
        block = np.asarray(tensor[index])
        if dtype.kind == "V":
            block = np.ascontiguousarray(block).view(dtype)
        elif tensor.dtype == STRING:
            block = _string_block(block, dtype)
        if block.shape == tensor.shape and block.dtype == dtype and dtype.kind in "biufc":
            if block.size:  # the whole dataset at once: h5py's __setitem__ costs 0.1 ms
                ds.id.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(block))
        else:
            ds[index if index else ()] = block


class _PlainCreate:
    """What `Group.create_dataset(name, shape=..., dtype=...)` hands the library for a
    contiguous number dataset without options (h5py/_hl/dataset.py `make_new_dset`), made once:
    the creation property list (times not tracked; attribute creation order as h5py's config
    says) and the library type of each dtype. h5py's own path costs ~50 us a dataset in Python
    (property list, type translation, the `Dataset` object); the library's part is the same."""

    def __init__(self, h5py) -> None:
        self.track_order = h5py.get_config().track_order
        self.dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        self.dcpl.set_obj_track_times(False)
        if self.track_order is True:
            self.dcpl.set_attr_creation_order(h5py.h5p.CRT_ORDER_TRACKED |
                                              h5py.h5p.CRT_ORDER_INDEXED)
        elif self.track_order is False:
            self.dcpl.set_attr_creation_order(0)
        self.types: dict[str, Any] = {}  # dtype.str -> TypeID (plain numbers: no metadata)


_PLAIN: list[_PlainCreate] = []


def _create_plain(group, name: str, shape: tuple[int, ...], dtype: np.dtype, h5py) -> Any:
    """The low-level id of a new dataset, created as `group.create_dataset(name, shape=shape,
    dtype=dtype)` creates it (the same bytes in the file), or None where h5py's path is
    needed (its config changed: track_order set to something else)."""
    if not _PLAIN or _PLAIN[0].track_order is not h5py.get_config().track_order:
        _PLAIN[:] = [_PlainCreate(h5py)]
    plain = _PLAIN[0]
    if plain.track_order not in (True, False, None) or dtype.metadata:
        return None
    tid = plain.types.get(dtype.str)
    if tid is None:
        tid = plain.types[dtype.str] = h5py.h5t.py_create(dtype, logical=1)
    with h5py._hl.base.phil:
        raw = group._e(name)
        sid = h5py.h5s.create_simple(shape, None)
        return h5py.h5d.create(group.id, raw, tid, sid, dcpl=plain.dcpl, dapl=None)


def _write_plain(dsid, tensor: Tensor, dtype: np.dtype, h5py) -> None:
    """Write a contiguous number dataset made by `_create_plain` (no attributes to add)."""
    for index in block_indices(tensor.shape, tensor.dtype.itemsize, 16 << 20):
        block = np.asarray(tensor[index])
        if block.shape == tensor.shape and block.dtype == dtype:
            if block.size:  # the whole dataset at once: h5py's __setitem__ costs 0.1 ms
                dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(block))
        else:
            h5py.Dataset(dsid)[index if index else ()] = block


def _string_block(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Bytes elements as h5py writes them: str for a vlen UTF-8 type, bytes otherwise; cut at
    a NUL byte, where an HDF5 string ends (`losses()` names that for foreign strings)."""
    info = h5py_module().check_string_dtype(dtype)
    items = [_to_bytes(x).split(b"\0", 1)[0] for x in block.reshape(-1).tolist()]
    if info.length is None and info.encoding == "utf-8":
        out = np.empty(len(items), dtype=object)
        out[:] = [x.decode("utf-8", "surrogateescape") for x in items]
    elif info.length is None:
        out = np.empty(len(items), dtype=object)
        out[:] = items
    else:
        out = np.array(items, dtype=f"S{max(1, info.length)}")
    return out.reshape(block.shape)


def _same_kind(spec: Any, tensor: Tensor) -> bool:
    """Whether a recorded HDF5 type still fits the tensor (it may have been converted)."""
    if spec is None:
        return False
    if isinstance(spec, dict) and "str" in spec:
        return tensor.dtype == STRING
    if isinstance(spec, dict) and "opaque" in spec:
        return (tensor.dtype.kind == "V" or tensor.dtype in OPAQUE_TAGS.values()) \
            and tensor.dtype.itemsize == spec["opaque"]
    if spec == "bool":
        return tensor.dtype == np.bool_
    return np.dtype(spec).newbyteorder("=") == tensor.dtype.newbyteorder("=")


def write_tree(f, tree: Mapping[str, Any], tensor_for: Callable[[str], Tensor]) -> None:
    """Recreate `tree` in the open file `f`; dataset contents come from `tensor_for(path)`."""
    write_attrs(f, tree.get("attrs", []))

    def build(group, node: Mapping[str, Any], prefix: str) -> None:
        for name, child in _by_name(node.get("children", [])):
            where = f"{prefix}{name}"
            if "dataset" in child:
                write_dataset(group, name, tensor_for(where), child["dataset"], child["attrs"])
            else:
                sub = group.create_group(name)
                write_attrs(sub, child.get("attrs", []))
                build(sub, child, where + "/")
    build(f, tree, "")


@contextlib.contextmanager
def create_file(path: str) -> Iterator[Any]:
    """A new HDF5 file. libhdf5 reports a full disk or a file size limit as RuntimeError
    ("... errno = 27 ...", often when the file is closed): that becomes OSError(errno), which
    the atomic writer names after its destination and the CLI reports in one line."""
    try:
        with h5py_module().File(path, "w") as f:
            yield f
    except (OSError, RuntimeError) as exc:
        found = re.search(r"errno = (\d+)", str(exc))
        code = int(found.group(1)) if found else getattr(exc, "errno", None)
        if code not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise
        raise OSError(code, os.strerror(code)) from exc


def str_attr(value: str | list[str]) -> dict:
    """An attribute description for a vlen UTF-8 string (scalar) or list of strings."""
    if isinstance(value, str):
        return {"type": {"str": "vlen", "cset": "utf-8"}, "shape": [], "value": [value]}
    return {"type": {"str": "vlen", "cset": "utf-8"}, "shape": [len(value)], "value": list(value)}


def empty_list_attr() -> dict:
    """Keras' attribute for an empty name list: a float64 array of shape (0,)."""
    return {"type": "<f8", "shape": [0], "b64": ""}


# -- choosing what to write ----------------------------------------------------------------------

def template(store, like, namespace: str) -> tuple[dict | None, Placement | None]:
    """The recorded meta of `namespace` to write back, and the placement of tensors in it.

    A `like` template's meta wins (`format.py`'s template rule), with tensors matched by the
    template's canonical names, and the template's own optimizer state and counters where the
    store has none of that name; else the store's own meta (tensors matched by their `key`).
    (None, None) if neither has it.
    """
    if like is not None and namespace in like.meta:
        key_to_name = {t.meta.get("key"): n for n, t in like.items()}
        by_key = {k: store[n] if n in store else like[n] for k, n in key_to_name.items()
                  if n in store or like[n].role in ("optimizer", "counter")}
        return like.meta[namespace], Placement(by_key, key_to_name, "name")
    if namespace in store.meta:
        by_key = {t.meta.get("key"): t for t in store.values()}
        names = {t.meta.get("key"): n for n, t in store.items()}
        return store.meta[namespace], Placement(by_key, names, "key")
    return None, None


class Placement:
    """Dataset path -> tensor of a recorded tree: call it for the tensor of a path (a path
    without one is a UsageError); `path in placement` says whether the store has one."""

    def __init__(self, by_key: Mapping[str, Tensor], names: Mapping[str, str], how: str):
        self._by_key, self._names, self._how = by_key, names, how

    def __contains__(self, path: str) -> bool:
        return path in self._by_key

    @property
    def from_template(self) -> bool:
        """Whether the tree is a `like` template's (tensors placed by name), not the store's."""
        return self._how == "name"

    def __call__(self, path: str) -> Tensor:
        try:
            return self._by_key[path]
        except KeyError:
            wanted = f" (tensor {self._names[path]!r})" if path in self._names else ""
            raise UsageError(f"the store has no tensor for dataset {path!r}{wanted} "
                             f"(matched by {self._how})") from None


def check_covered(store, tree_paths: list[str], lookup: Placement) -> None:
    """Refuse a write-back that would silently drop tensors the template does not place."""
    placed = {id(lookup(p)) for p in tree_paths if p in lookup}
    extra = [n for n, t in store.items() if id(t) not in placed]
    if extra and lookup.from_template:
        raise UsageError(f"the template has no place for {len(extra)} variable(s) (e.g. "
                         f"{extra[0]!r}): its model has no variable of that name (another "
                         "model? --match structure pairs by order and shape instead)")
    if extra:
        raise UsageError(f"the file layout written back has no place for {len(extra)} "
                         f"variable(s) (e.g. {extra[0]!r}): write safetensors or npz to add "
                         "variables")


def absent(tree: Mapping[str, Any], lookup: Placement, prefix: str = "") -> list[str]:
    """The dataset paths of `tree` whose tensors (at `prefix` + path in `lookup`) the store no
    longer has: dropped by an edit."""
    return [p for p, node in walk(tree) if "dataset" in node and prefix + p not in lookup]


def stored_nbytes(dataset: Mapping[str, Any]) -> int:
    """The bytes of a described dataset's data (vlen strings: of their pointers)."""
    return math.prod(dataset["shape"]) * _numpy_type(dataset["type"], h5py_module()).itemsize


def edited(tree: Mapping[str, Any], remove: Iterable[str],
           attrs: Mapping[str, list] | None = None) -> dict:
    """A copy of `tree` without the nodes at paths `remove` (datasets or groups) and without
    the groups their removal leaves empty (groups already empty in `tree` stay), and with the
    attributes of the groups at the paths of `attrs` ("" is the root) replaced."""
    gone, attrs = set(remove), attrs or {}

    def rebuild(node: Mapping[str, Any], where: str) -> dict | None:
        if "children" not in node:
            return dict(node)
        children, removed = [], False
        for name, child in node["children"]:
            path = f"{where}/{name}" if where else name
            kept = None if path in gone else rebuild(child, path)
            removed |= kept is None
            if kept is not None:
                children.append([name, kept])
        if removed and not children and where:
            return None
        return {**node, "attrs": list(attrs.get(where, node.get("attrs", []))),
                "children": children}
    return rebuild(tree, "")  # the root is never removed


# -- what HDF5 holds ------------------------------------------------------------------------------

HDF5_NAMESPACES = ("keras_h5", "keras_weights_h5", "keras")  # stores read from HDF5 files


def dtype_losses(store: Store) -> list[str]:
    """What HDF5 cannot hold: 4-bit dtypes (widened to 8 bits when allowed) and, for strings not
    read from HDF5 in the first place, bytes after a NUL (HDF5 strings end there)."""
    from_hdf5 = any(ns in store.meta for ns in HDF5_NAMESPACES)
    lost = [f"{name!r} ({t.dtype_name}: HDF5 has no 4-bit type)" for name, t in store.items()
            if t.dtype_name in ("int4", "uint4", "float4_e2m1fn")]
    lost += [f"{name!r} (string: HDF5 strings end at a NUL byte)" for name, t in store.items()
             if t.dtype_name == "string" and not from_hdf5]
    return [f"{len(lost)} tensor(s) HDF5 cannot hold exactly: {', '.join(lost[:3])}"] \
        if lost else []


def widen(t: Tensor) -> Tensor:
    """A 4-bit tensor as its 8-bit (int) or float32 (float4) equivalent; others unchanged."""
    wide = {"int4": "int8", "uint4": "uint8", "float4_e2m1fn": "float32"}.get(t.dtype_name)
    return t if wide is None else t.map(lambda a: a.astype(dtype_from_name(wide)),
                                        dtype_from_name(wide))


def place(node: dict, relpath: str, tensor: Tensor, tensors: dict, prefix: str) -> None:
    """Add a dataset node for `tensor` at `relpath` under a tree node, creating groups."""
    parts = relpath.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UsageError(f"cannot store {relpath!r} in HDF5: empty or dot path component")
    for i, part in enumerate(parts):
        children = node["children"]
        existing = child(node, part)
        last = i == len(parts) - 1
        if existing is None:
            existing = {"attrs": [], "dataset": {}} if last else {"attrs": [], "children": []}
            children.append([part, existing])
        elif last or "dataset" in existing:
            raise UsageError(f"cannot store {prefix}{relpath!r} in HDF5: the path is taken by "
                             "another tensor or group")
        node = existing
    tensors[prefix + relpath] = tensor
