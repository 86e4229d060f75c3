"""Frozen TensorFlow graphs (format "tf-graphdef"): a serialized `GraphDef` (`.pb`) whose weights
are `Const` nodes, as `convert_variables_to_constants_v2(...).graph.as_graph_def()` writes it
(tensorflow/tensorflow `tensorflow/python/framework/convert_to_constants.py`).

Each Const node's tensor is a variable named by the node (`function:node` for a Const inside a
function of the graph's library), in graph order; how the file stores it (`tensor_content`, or
a typed list such as `float_val` with how many values, which TensorFlow broadcasts) is kept in
`tensor.meta["tf_graphdef"]`. See `graphdef_codec.py` for the encoding and the untrusted-input
budget. A SavedModel's `saved_model.pb` is refused with a pointer to the SavedModel format.

Writing back replaces each constant's tensor in place and copies every other byte, so an
unchanged store gives the same file. The graph travels in `store.meta["tf_graphdef"]` without
its constants' values (the *skeleton*, up to 32 MiB); larger graphs need the original (`--like`).
A constant keeps its dtype and shape (the graph's other nodes depend on them): changing them,
dropping or adding a variable is refused. A store from elsewhere becomes a graph of Const nodes,
one per variable (names must be valid TensorFlow node names), which TensorFlow imports.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import mmap
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import graphdef_codec as codec
from .atomic import atomic_output
from .dtypes import STRING
from .errors import CorruptFileError, UnknownFormatError, UsageError, WeightsError
from .foreign import structure_losses
from .format import Format, WritePlan
from .mapped import MappedFile, rows
from .paths import check_input
from .protowire import LENGTH, VARINT, length_field, spans
from .sstable import get_varint, put_varint
from .store import Index, Store, Tensor
from .tf_dtypes import DTYPES as TF_DTYPES, ENUMS, QUANTIZED

NAME = "tf-graphdef"
NAMESPACE = codec.NAMESPACE_KEY
CARRY_LIMIT = 32 << 20
NODE_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_>./]*")   # tensorflow/core/graph/graph.cc


# ---------------------------------------------------------------------------------------------
# detection

def _first_field(head: bytes) -> tuple[int, int, int] | None:
    """(number, wire, value or length) of the first field of `head`, or None."""
    try:
        tag, pos = get_varint(head, 0, min(len(head), 10))
        value, _ = get_varint(head, pos, min(len(head), pos + 10))
    except CorruptFileError:
        return None
    return tag >> 3, tag & 7, value


def is_saved_model(head: bytes) -> bool:
    """A `saved_model.pb` starts with its schema version (field 1, a varint): a GraphDef's
    field 1 is a node, a message."""
    first = _first_field(head)
    return first is not None and first[:2] == (1, VARINT)


def _looks_like_node(head: bytes) -> bool:
    """The first field is a NodeDef (field 1) that starts with its name and op (strings)."""
    first = _first_field(head)
    if first is None or first[:2] != (1, LENGTH):
        return False
    _, pos = get_varint(head, 0)
    length, pos = get_varint(head, pos)
    found: list[tuple[int, int]] = []
    try:
        for span in spans(head, pos, min(len(head), pos + length)):
            found.append((span.number, span.wire))
            if len(found) == 2:
                break
    except CorruptFileError:
        pass  # the node goes on past the head
    return found == [(1, LENGTH), (2, LENGTH)]


def sniff(path: str, head: bytes) -> bool:
    """A file whose first field is a node; or any `.pb` that is a GraphDef or a SavedModel's
    `saved_model.pb` (so that reading it says which format it is)."""
    if not os.path.isfile(path):
        return False
    if not head:  # an empty message is an empty GraphDef
        return path.lower().endswith(".pb") and os.path.getsize(path) == 0
    if _looks_like_node(head):
        return True
    return path.lower().endswith(".pb") and is_saved_model(head) \
        and os.path.basename(path) == "saved_model.pb"


# ---------------------------------------------------------------------------------------------
# reading

@contextlib.contextmanager
def named(path: str | None) -> Iterator[None]:
    """Name the file in weightkit errors raised without one (the wire codec does not know it)."""
    try:
        yield
    except WeightsError as exc:
        if exc.path is None and path is not None:
            raise type(exc)(exc.message, path) from None
        raise


class _Map:
    """A read-only map of a whole file (closed with the store)."""

    def __init__(self, path: str):
        self.file = MappedFile(path)
        self.size = self.file.size
        self.view: Any = b""
        self._map = None
        if self.size:
            try:
                self._map = mmap.mmap(self.file._file.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:
                self.file.close()
                raise CorruptFileError(f"cannot map the file: {exc}", path) from None
            self.view = self._map

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # a tensor still refers to it; it goes with that tensor
        self.file.close()


def constants(buf: Any, path: str | None, file_size: int) -> list[codec.Constant]:
    """The constants of a GraphDef file, unique by name."""
    found = codec.graph_constants(buf, 0, len(buf), (), path, file_size)
    seen: set[str] = set()
    for constant in found:
        if constant.name in seen:
            raise CorruptFileError(f"two Const nodes are named {constant.name!r}", path)
        seen.add(constant.name)
    return found


def read(path: str) -> Store:
    """Open a frozen GraphDef: its constants, lazily."""
    path = os.fspath(path)
    check_input(path)
    if os.path.isdir(path):
        raise UnknownFormatError("a directory is not a frozen GraphDef", path)
    with open(path, "rb") as f:
        head = f.read(16)
    if is_saved_model(head):
        raise UnknownFormatError("this is a SavedModel's saved_model.pb, not a frozen GraphDef: "
                                 "open the SavedModel directory (format saved-model)", path)
    mapped = _Map(path)
    try:
        with named(path):
            store = _read(mapped, path)
    except BaseException:
        mapped.close()
        raise
    return store


def _read(mapped: _Map, path: str) -> Store:
    buf = mapped.view
    found = constants(buf, path, mapped.size)
    tensors = {c.name: tensor(mapped.file, buf, c) for c in found}
    skeleton = strip(buf, found)
    meta = {NAMESPACE: {"skeleton": codec.b64(skeleton) if len(skeleton) <= CARRY_LIMIT
                        else None, "size": mapped.size}}
    return Store(tensors, format=NAME, meta=meta, path=path, on_close=mapped.close)


def describe(constant: codec.Constant) -> dict[str, Any]:
    """How the file stores a constant (tensor meta)."""
    field = codec.FIELD_NAMES.get(constant.field, str(constant.field))
    out: dict[str, Any] = {"field": field}
    if constant.field != codec.CONTENT:
        out.update(values=constant.count, packed=constant.packed)
    if constant.enum in QUANTIZED:
        out["dtype"] = QUANTIZED[constant.enum]
    return out


def tensor(file: MappedFile, buf: Any, constant: codec.Constant,
           namespace: str = NAMESPACE) -> Tensor:
    """A constant as a lazy tensor: mapped from `tensor_content`, decoded from a typed list."""
    meta = {"key": constant.name, "role": "weight", namespace: describe(constant)}
    shape, dtype = constant.shape, constant.dtype
    if constant.field == codec.CONTENT:
        offset = constant.values[0].value_start
        little = dtype.newbyteorder("<")
        row_bytes = dtype.itemsize * math.prod(shape[1:])

        def get(index: Index) -> np.ndarray:
            run = rows(index, shape)
            if run is None:
                return file.array(offset, little, shape)[index]
            r0, r1, rel = run
            return file.array(offset + r0 * row_bytes, little, (r1 - r0, *shape[1:]))[rel]
        return Tensor(shape, dtype, get, meta)

    def get_typed(index: Index) -> np.ndarray:
        with named(file.path):
            return codec.broadcast(codec.typed_values(buf, constant), constant)[index]
    return Tensor(shape, dtype, get_typed, meta)


def strip(buf: Any, found: list[codec.Constant], depth: int = 0) -> bytes:
    """The file without its constants' values (the graph to write them back into)."""
    out = codec._Buffer()
    bodies = [(c, _bare(buf, c)) for c in found]
    codec.splice(buf, 0, len(buf), codec.edits_for(bodies, depth), out)
    return out.getvalue()


def _bare(buf: Any, constant: codec.Constant) -> bytes:
    proto = constant.chain[-1]
    return b"".join(bytes(buf[p.start:p.end]) for p in spans(buf, proto.value_start, proto.end)
                    if p.number not in codec.VALUE_FIELDS)


# ---------------------------------------------------------------------------------------------
# writing

@dataclass
class Plan:
    graph: bytes | None                      # the skeleton to splice into (None: a new graph)
    write: Callable[[Any], None]             # writes the file to an open binary file


def _template(store: Store, like: Store | None) -> dict | None:
    for source in (store, like):
        if source is not None and isinstance(source.meta.get(NAMESPACE), dict):
            return source.meta[NAMESPACE]
    return None


def _skeleton(template: dict, store: Store, like: Store | None) -> bytes:
    text = template.get("skeleton")
    if isinstance(text, str):
        return codec.unb64(text)
    for source in (store, like):
        if source is not None and source.format == NAME and source.path \
                and os.path.isfile(source.path):
            with open(source.path, "rb") as f:
                data = f.read()
            return strip(data, constants(data, source.path, len(data)))
    raise UsageError("the graph was too large to carry in metadata: give the original frozen "
                     "graph with --like")


def plan(store: Store, like: Store | None = None) -> WritePlan:
    """A frozen graph holds values only: another format's file structure and metadata are
    lost (with a template nothing is: its graph is written). Refused: a changed dtype or shape,
    a dropped or added variable, names TensorFlow does not accept."""
    return WritePlan.of(store, like, structure_losses(store, (NAMESPACE,), like),
                        lambda: _plan(store, like))


def _plan(store: Store, like: Store | None) -> Plan:
    template = _template(store, like)
    if template is None:
        return _plan_new(store)
    graph = _skeleton(template, store, like)
    found = constants(graph, None, len(graph))
    names = {c.name for c in found}
    extra = [n for n in store if n not in names]
    if extra:
        raise UsageError(f"the graph has no Const node for {len(extra)} variable(s) (e.g. "
                         f"{extra[0]!r}); a frozen graph cannot take new weights")
    replacements = []
    for constant in found:
        if constant.name not in store:
            raise UsageError(f"cannot drop {constant.name!r}: the graph's nodes use every "
                             "constant")
        t = store[constant.name]
        if t.dtype != constant.dtype or t.shape != constant.shape:
            raise UsageError(f"{constant.name!r} is a {TF_DTYPES[constant.enum]} "
                             f"constant of shape {list(constant.shape)} in the graph; the store "
                             f"has {t.dtype_name} {list(t.shape)} (the graph's other nodes "
                             "depend on them)")
        replacements.append((_with_encoding(constant, t), t))

    def write(out: Any) -> None:
        bodies = [(c, codec.encode_tensor(graph, c, t.read())) for c, t in replacements]
        codec.splice(graph, 0, len(graph), codec.edits_for(bodies, 0), out)
    return Plan(graph, write)


def _with_encoding(constant: codec.Constant, t: Tensor) -> codec.Constant:
    """The constant with the encoding the store's tensor meta records (the skeleton has no
    values to tell)."""
    own = t.meta.get(NAMESPACE)
    if not isinstance(own, dict):
        return dataclasses.replace(constant, field=codec.CONTENT)
    by_name = {v: k for k, v in codec.FIELD_NAMES.items()}
    field = by_name.get(own.get("field"), codec.CONTENT)
    count = own.get("values", 0)
    if field != codec.CONTENT and not (type(count) is int and 0 <= count):
        field, count = codec.CONTENT, 0
    return dataclasses.replace(constant, field=field, count=count,
                               packed=bool(own.get("packed", True)))


def _plan_new(store: Store) -> Plan:
    for name, t in store.items():
        if not NODE_NAME.fullmatch(name):
            raise UsageError(f"{name!r} is not a valid TensorFlow node name "
                             f"({NODE_NAME.pattern}); rename it (weightkit edit --rename)")
        if t.dtype_name not in ENUMS:
            raise UsageError(f"a GraphDef cannot hold {name!r} ({t.dtype_name})")

    def write(out: Any) -> None:
        for name, t in store.items():
            out.write(length_field(1, node_bytes(name, t)))
    return Plan(None, write)


def node_bytes(name: str, t: Tensor) -> bytes:
    """A Const NodeDef holding `t`, as TensorFlow serializes one (attrs by key)."""
    enum = ENUMS[t.dtype_name]
    shape = b"".join(length_field(2, b"" if d == 0 else b"\x08" + put_varint(d))
                     for d in t.shape)
    proto = b"\x08" + put_varint(enum) + length_field(2, shape)
    array = t.read()
    if t.dtype == STRING:
        proto += b"".join(length_field(8, v if isinstance(v, bytes) else str(v).encode())
                          for v in array.reshape(-1).tolist())
    elif array.size:
        proto += length_field(codec.CONTENT, np.ascontiguousarray(array).astype(
            t.dtype.newbyteorder("<")).tobytes())
    attrs = (length_field(5, length_field(1, b"dtype") + length_field(2, b"\x30" + put_varint(enum)))
             + length_field(5, length_field(1, b"value") + length_field(2, length_field(8, proto))))
    return length_field(1, name.encode()) + length_field(2, b"Const") + attrs


def write(plan: WritePlan, path: str) -> None:
    """Write a frozen GraphDef atomically (see the module docstring)."""
    with atomic_output() as out:
        with out.open(path) as f:
            plan.detail.write(f)


FORMAT = Format(
    name=NAME, description="frozen TensorFlow GraphDef (.pb): its Const nodes",
    sniff=sniff, read=read, plan=plan, write=write, suffixes=(".pb",), namespace=NAMESPACE,
    structure="the frozen GraphDef (its nodes and every attribute but the constants' values)",
)
