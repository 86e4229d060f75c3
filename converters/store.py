"""The canonical store: a read-only mapping from canonical names to lazily read tensors.

Every format module reads a file into a `Store` and writes a `Store` back. A `Tensor` knows its
shape and dtype from metadata and reads bytes only when asked: whole (`read()`), by basic
indexing (`tensor[i:j]`), or as bounded C-order blocks (`iter_chunks()`).

Metadata is plain JSON-able data, so that any format able to carry text (safetensors
`__metadata__`, for one) can carry what another format needs to be written back exactly:
- `Store.meta` holds store-level facts in one namespace per format (`meta["keras_h5"]`, ...);
- `Tensor.meta` holds per-variable facts: `key` (the name in the source file), `role`
  (`weight`, `optimizer`, `counter` or `metric`), and format namespaces of its own.

A store is keyed by canonical names; `store[name]` also accepts an original key or an alias
a reader recorded (`Store.resolve`), while iteration, `len` and `in` see canonical names only.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import math
import reprlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .dtypes import dtype_name, is_string
from .errors import CorruptFileError
from .mapped import FileChangedError, check_changed, rows

CHUNK_BYTES = 16 << 20
ROLES = ("weight", "optimizer", "counter", "metric")
MAX_RANK = 64  # numpy's NPY_MAXDIMS (numpy 2: numpy/_core/include/numpy/ndarraytypes.h)
MAX_NBYTES = (1 << 63) - 1  # numpy's limit: the largest npy_intp

Index = tuple  # a tuple of ints and slices: numpy basic indexing
Progress = Callable[[int], None]  # told the bytes just read or compared; may be called from threads


def check_shape(shape: Any, what: str = "a tensor", path: str | None = None,
                itemsize: int = 1) -> tuple[int, ...]:
    """`shape` as a tuple of ints if numpy can hold an array of it with elements of `itemsize`
    bytes, else CorruptFileError (naming `path`). Readers call it on every shape a file
    declares, before using it.

    numpy refuses (numpy/_core/src/multiarray/ctors.c, `PyArray_NewFromDescr_int`) more than
    MAX_RANK dimensions, and shapes whose product of dimensions (zeros counted as 1, so a
    zero-size array with one huge dimension is refused too) times the item size exceeds the
    largest npy_intp. Messages never print a huge dimension (Python refuses to turn an int of
    more than 4300 digits into text, and a crafted file can declare one).
    """
    if not isinstance(shape, (list, tuple)) or not all(
            type(d) is int or (isinstance(d, np.integer) and not isinstance(d, np.bool_))
            for d in shape):
        raise CorruptFileError(f"{what} has a shape that is not a list of integers "
                               f"({shown(shape)})", path)
    if len(shape) > MAX_RANK:
        raise CorruptFileError(f"{what} has rank {len(shape)}; numpy holds at most {MAX_RANK}",
                               path)
    total = max(int(itemsize), 1)
    for i, d in enumerate(shape):
        d = int(d)
        if d < 0:
            raise CorruptFileError(f"{what} has a negative dimension", path)
        total *= max(d, 1)
        if total > MAX_NBYTES:
            raise CorruptFileError(f"{what} declares 2**63 bytes or more (dimension {i} is "
                                   f"{_magnitude(d)}); numpy cannot hold it", path)
    return tuple(int(d) for d in shape)


FREEZE_AFTER_BULK = False  # the command line sets it: its stores live until it exits


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No automatic garbage collection inside (restored after): building the objects of
    100,000 variables otherwise triggers ever longer full collections, which took more time
    than the building (CPython's collector scans every tracked object a collection reaches).
    With FREEZE_AFTER_BULK, what was built is moved out of the collector's sight
    (`gc.freeze`) before it is enabled again, so that no later collection scans it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if FREEZE_AFTER_BULK:
                gc.freeze()
            gc.enable()


def _magnitude(n: int) -> str:
    return str(n) if n.bit_length() <= 64 else f"about 2**{n.bit_length() - 1}"


def shown(value: Any, limit: int = 60) -> str:
    """A short repr of untrusted data for a message: huge ints are described, never converted
    to digits (Python refuses ints of more than 4300 digits, sys.get_int_max_str_digits)."""
    text = _repr.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _Repr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        return _magnitude(x) if x.bit_length() > 64 else repr(x)


_repr = _Repr()
_repr.maxstring = _repr.maxother = 60


class Tensor:
    """A lazily read array: `shape`, `dtype` and `meta` are free; data is read on demand.

    `get(index)` must return the numpy array for a basic-indexing tuple (the empty tuple means
    the whole array) in `dtype`.
    """

    __slots__ = ("shape", "dtype", "meta", "_get", "size")

    def __init__(self, shape: Iterable[int], dtype: np.dtype, get: Callable[[Index], Any],
                 meta: Mapping[str, Any] | None = None):
        self.shape = tuple(map(int, shape))
        self.size = math.prod(self.shape)  # elements
        self.dtype = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
        self.meta = dict(meta) if meta else {}
        self._get = get

    @classmethod
    def of_extent(cls, extent: "Extent", dtype: np.dtype) -> "Tensor":
        """The tensor whose bytes are `extent`, read as `dtype` (the extent's in native byte
        order): `Tensor(extent.shape, dtype, extent)` without converting the shape again (the
        reader checked it), for readers of files of 100,000 variables."""
        tensor = object.__new__(cls)
        tensor.shape, tensor.size, tensor.dtype = extent.shape, extent.size, dtype
        tensor.meta, tensor._get = {}, extent
        return tensor

    @classmethod
    def from_array(cls, array: Any, meta: Mapping[str, Any] | None = None) -> "Tensor":
        """Wrap an in-memory (or memory-mapped) array."""
        array = np.asarray(array)
        return cls(array.shape, array.dtype, array.__getitem__, meta)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def extent(self) -> "Extent | None":
        """Where the bytes lie, when the tensor reads them raw from a file (`Extent`)."""
        return self._get if isinstance(self._get, Extent) else None

    @property
    def nbytes(self) -> int:
        """Bytes of the data (for strings: of the pointers; see `read()` for lengths)."""
        return self.size * self.dtype.itemsize

    @property
    def role(self) -> str:
        return self.meta.get("role", "weight")

    @property
    def dtype_name(self) -> str:
        return dtype_name(self.dtype)

    def read(self) -> np.ndarray:
        """The whole array."""
        return self[()]

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        out = np.asarray(self._get(index), dtype=self.dtype)
        check_changed()  # the file shrank while this was read: its pages read as zeros
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.read()
        return array if dtype is None else array.astype(dtype)

    def iter_chunks(self, max_bytes: int = CHUNK_BYTES) -> Iterator[np.ndarray]:
        """Flat blocks that together are the array in C order, each of at most about `max_bytes`.

        A zero-size tensor yields nothing; a scalar yields one block of one element.
        """
        itemsize = 8 if is_string(self.dtype) else self.dtype.itemsize
        for index in block_indices(self.shape, itemsize, max_bytes):
            yield self[index].reshape(-1)
            check_changed()  # the block was used: did the file shrink under it?

    def with_meta(self, **updates: Any) -> "Tensor":
        """The same data with some meta entries replaced."""
        return Tensor(self.shape, self.dtype, self._get, {**self.meta, **updates})

    def map(self, fn: Callable[[np.ndarray], np.ndarray], dtype: np.dtype | None = None,
            meta: Mapping[str, Any] | None = None) -> "Tensor":
        """A lazy elementwise transform: `fn` is applied to whatever part is read."""
        return Tensor(self.shape, self.dtype if dtype is None else dtype,
                      lambda index: fn(self[index]), self.meta if meta is None else meta)

    def __repr__(self) -> str:
        return f"<Tensor shape={self.shape} dtype={self.dtype_name} role={self.role}>"


class Extent:
    """A tensor's bytes that lie raw in a file: the C-order elements of `shape` in `dtype` (the
    file's byte order) at `offset` of an open `source` (the byte seam, `source.py`). As a
    tensor's getter it reads what an index selects, mapping only the rows the index needs
    (`mapped.rows`); `read_many` reads many small ones with one read per run of neighbours.
    One slotted object rather than a closure: a file of 100,000 variables holds 100,000."""

    __slots__ = ("source", "offset", "dtype", "shape", "size", "row_bytes", "nbytes", "progress")

    def __init__(self, source: Any, offset: int, dtype: np.dtype, shape: tuple[int, ...],
                 progress: Progress | None = None):
        self.source, self.offset, self.dtype, self.shape = source, offset, dtype, shape
        self.size = math.prod(shape)  # elements
        self.row_bytes = dtype.itemsize * (self.size // shape[0] if shape and shape[0]
                                           else math.prod(shape[1:]))
        self.nbytes = self.size * dtype.itemsize
        self.progress = progress  # told the bytes of every read, when set

    def counted(self, progress: Progress) -> "Extent":
        """The same extent, telling `progress` the bytes of every read."""
        twin = copy.copy(self)
        twin.progress = progress
        return twin

    def __call__(self, index: Index) -> np.ndarray:
        out = self.read(index)
        if self.progress is not None:
            self.progress(out.nbytes)
        return out

    def read(self, index: Index) -> np.ndarray:
        """What `index` selects (a format whose data carries a checksum overrides it)."""
        run = rows(index, self.shape)
        if run is None:
            return self.source.array(self.offset, self.dtype, self.shape)[index]
        r0, r1, index = run
        return self.source.array(self.offset + r0 * self.row_bytes, self.dtype,
                                 (r1 - r0, *self.shape[1:]))[index]

    def verify(self, data: memoryview) -> None:
        """Check the whole tensor's bytes, which `read_many` read, before they are used (a
        format whose data carries a checksum overrides it; errors as a read would raise)."""


SMALL_TENSOR = 64 << 10  # bytes up to which `read_many` reads a tensor with its neighbours
READ_MANY_GAP = 4 << 10  # bytes between two small extents read through rather than skipped
READ_MANY_RUN = 4 << 20  # bytes of one read of neighbouring extents, at most


def read_many(tensors: Sequence[Tensor], small: int = SMALL_TENSOR) -> list[np.ndarray]:
    """Every tensor's whole array, as `Tensor.read()` gives it. Tensors of at most `small`
    bytes whose getter is an `Extent` are read together (`_read_extents`: a read per run of
    neighbours in their file) and cut into arrays there; a file of 100,000 small variables
    costs a read per few MiB instead of a call chain per variable. Errors are those of
    `Tensor.read()`."""
    out: list[Any] = [None] * len(tensors)
    which, gets = [], []
    for i, tensor in enumerate(tensors):
        get = tensor._get
        if isinstance(get, Extent) and get.nbytes <= small:
            which.append(i)
            gets.append(get)
        else:
            out[i] = tensor.read()
    for i, get, part in zip(which, gets, _read_extents(gets)):
        if part is None:  # a damaged file: the read raises its format's own error
            out[i] = tensors[i].read()
            continue
        dtype, shape = tensors[i].dtype, get.shape
        array = np.frombuffer(part, get.dtype)
        if not (get.dtype is dtype or get.dtype == dtype):
            array = array.astype(dtype)
        out[i] = array if len(shape) == 1 else array.reshape(shape)
    return out


def raw_parts(tensors: Sequence[Tensor]) -> list[memoryview] | None:
    """Each tensor's bytes (C order, its own dtype) as `read_many` reads them, without an array
    each: None unless every getter is an `Extent` in its tensor's own dtype and the file holds
    them all (then `read_many` says what is wrong). A batch of 100,000 small variables costs a
    read per run of neighbours and a slice each."""
    gets = []
    for tensor in tensors:
        get = tensor._get
        if not (isinstance(get, Extent)
                and (get.dtype is tensor.dtype or get.dtype == tensor.dtype)):
            return None
        gets.append(get)
    parts = _read_extents(gets)
    return None if any(part is None for part in parts) else parts  # type: ignore[return-value]


def joined_bytes(tensors: Sequence[Tensor]) -> bytes | None:
    """The tensors' bytes one after another (C order, each in its own dtype) from one read,
    when they lie back to back in one file in this order: None unless each getter is a plain
    `Extent` (no checksum of its own to check, no progress to tell) in its tensor's dtype that
    starts where the one before ends, and the file holds them all. A batch of 100,000 small
    variables written in order (safetensors, a checkpoint's data file) costs one read and a
    comparison each; `raw_parts` serves batches in any order."""
    if not tensors:
        return None
    first = tensors[0]._get
    if type(first) is not Extent:
        return None
    source = first.source
    start = end = first.offset
    for tensor in tensors:
        get = tensor._get
        if not (type(get) is Extent and get.offset == end and get.source is source
                and get.progress is None and (get.dtype is tensor.dtype
                                              or get.dtype == tensor.dtype)):
            return None
        end += get.nbytes
    if end > source.size:
        return None
    data = source.pread(start, end - start)
    if len(data) != end - start:
        raise FileChangedError(path=source.name)
    check_changed()
    return data


def _read_extents(gets: Sequence[Extent]) -> list[memoryview | None]:
    """The bytes of each extent, read sorted by file and offset, with one read per run of
    neighbours (gaps under READ_MANY_GAP, at most READ_MANY_RUN bytes) and sliced there;
    checksums checked (`Extent.verify`) and progress told as each is cut. None for the extents
    of a run that ends past the end of its file (damaged: each read raises its own error)."""
    out: list[memoryview | None] = [None] * len(gets)
    for i, get in enumerate(gets):
        if not get.nbytes:  # nothing to read (it may claim any offset)
            out[i] = memoryview(b"")
            get.verify(out[i])  # type: ignore[arg-type]
    order = sorted((i for i, get in enumerate(gets) if get.nbytes),
                   key=lambda i: (id(gets[i].source), gets[i].offset))
    k = 0
    while k < len(order):
        first = gets[order[k]]
        source, start = first.source, first.offset
        end, j = start, k
        while j < len(order):  # the run: neighbours in the same source
            get = gets[order[j]]
            if get.source is not source or get.offset - end > READ_MANY_GAP \
                    or get.offset + get.nbytes - start > READ_MANY_RUN and j > k:
                break
            end = max(end, get.offset + get.nbytes)
            j += 1
        run, k = order[k:j], j
        if end > source.size:
            continue
        data = source.pread(start, end - start)
        if len(data) != end - start:
            raise FileChangedError(path=source.name)
        view = memoryview(data)
        for i in run:
            get = gets[i]
            part = view[get.offset - start:get.offset - start + get.nbytes]
            get.verify(part)
            if get.progress is not None:
                get.progress(get.nbytes)
            out[i] = part
    check_changed()
    return out


def block_indices(shape: tuple[int, ...], itemsize: int, max_bytes: int) -> Iterator[Index]:
    """Index tuples that cover `shape` in C order, each selecting a contiguous block of at
    most about `max_bytes` (at least one element)."""
    if not shape:
        yield ()
        return
    if math.prod(shape) == 0:
        return
    row_bytes = itemsize * math.prod(shape[1:])
    if len(shape) == 1 or row_bytes <= max_bytes:
        step = max(1, max_bytes // max(row_bytes, 1))
        for start in range(0, shape[0], step):
            yield (slice(start, min(start + step, shape[0])),)
        return
    for i in range(shape[0]):
        for rest in block_indices(shape[1:], itemsize, max_bytes):
            yield (i, *rest)


class Store(Mapping[str, Tensor]):
    """A read-only mapping of canonical names to tensors, in file order, with metadata.

    Use as a context manager (or call `close()`) to release files a reader keeps open.
    """

    def __init__(self, tensors: Mapping[str, Tensor] | None = None, *, format: str = "memory",
                 meta: Mapping[str, Any] | None = None, path: str | None = None,
                 on_close: Callable[[], None] | None = None,
                 aliases: Mapping[str, str] | None = None):
        self._tensors = dict(tensors or {})
        self.format = format
        self.meta = dict(meta or {})
        self.path = path
        self._on_close = on_close
        self.aliases: dict[str, str] = dict(aliases or {})
        self._by_key: dict[str, str] | None = None

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any], **kwargs: Any) -> "Store":
        """An in-memory store from a mapping of names to arrays."""
        return cls({name: Tensor.from_array(a) for name, a in arrays.items()}, **kwargs)

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self._tensors[name]
        except KeyError:
            pass
        found = self.resolve(name)
        if found is None:
            from .names import suggestion
            raise KeyError(f"no variable named {name!r}; {suggestion(name, list(self))}")
        return self._tensors[found]

    def tensors(self, names: Sequence[str]) -> list[Tensor]:
        """`[store[name] for name in names]`, without a call per canonical name."""
        try:
            return list(map(self._tensors.__getitem__, names))
        except KeyError:
            return [self[name] for name in names]

    def __contains__(self, name: object) -> bool:
        return name in self._tensors

    def resolve(self, name: str) -> str | None:
        """The canonical name `name` refers to: itself, else the variable whose original key
        (`meta["key"]`) it is, else the one a reader's alias (a positional Keras 3 name such as
        `conv1/0`) points to; None if none. A key or alias shared by two variables refers to
        neither."""
        if name in self._tensors:
            return name
        if self._by_key is None:
            by_key: dict[str, str | None] = {}
            for canonical, tensor in self._tensors.items():
                key = tensor.meta.get("key")
                if isinstance(key, str) and key != canonical:
                    by_key[key] = None if key in by_key else canonical
            self._by_key = {k: v for k, v in by_key.items() if v is not None}
        found = self._by_key.get(name)
        if found is None:
            found = self.aliases.get(name)
        return found if found in self._tensors else None

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def replace(self, tensors: Mapping[str, Tensor] | None = None, **kwargs: Any) -> "Store":
        """A new store sharing this one's files, with other tensors or attributes."""
        fields = {"format": self.format, "meta": self.meta, "path": self.path,
                  "on_close": self._on_close, "aliases": self.aliases}
        fields.update(kwargs)
        return Store(self._tensors if tensors is None else tensors, **fields)

    def close(self) -> None:
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f" path={self.path!r}" if self.path else ""
        return f"<Store format={self.format!r}{where} tensors={len(self)}>"
