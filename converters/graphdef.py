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

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import graphdef_codec as codec
from .atomic import atomic_output
from .dtypes import STRING
from .errors import CorruptFileError, UnknownFormatError, UsageError, naming
from .foreign import structure_losses
from .format import Format, WritePlan
from . import source as seam
from .protowire import LENGTH, VARINT, length_field, spans
from .sstable import get_varint, put_varint
from .store import Store, Tensor
from .tf_dtypes import ENUMS

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
    if not seam.isfile(path):
        return False
    if not head:  # an empty message is an empty GraphDef
        return path.lower().endswith(".pb") and seam.getsize(path) == 0
    if _looks_like_node(head):
        return True
    return path.lower().endswith(".pb") and is_saved_model(head) \
        and seam.basename(path) == "saved_model.pb"


# ---------------------------------------------------------------------------------------------
# reading

def constants(buf: Any, path: str | None, file_size: int | None) -> list[codec.Constant]:
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
    seam.check_input(path)
    if seam.isdir(path) and not seam.isfile(path):
        raise UnknownFormatError("a directory is not a frozen GraphDef", path)
    head = seam.head(path, 16)
    if is_saved_model(head):
        raise UnknownFormatError("this is a SavedModel's saved_model.pb, not a frozen GraphDef: "
                                 "open the SavedModel directory (format saved-model)", path)
    mapped = codec.GraphFile(path)
    try:
        with naming(path):
            store = _read(mapped, path)
    except BaseException:
        mapped.close()
        raise
    return store


def _read(mapped: codec.GraphFile, path: str) -> Store:
    buf = mapped.view
    found = constants(buf, path, mapped.size)
    tensors = {c.name: codec.tensor(mapped.file, buf, c, NAMESPACE) for c in found}
    skeleton = codec.strip(buf, found)
    meta = {NAMESPACE: {"skeleton": codec.b64(skeleton) if len(skeleton) <= CARRY_LIMIT
                        else None, "size": mapped.size}}
    return Store(tensors, format=NAME, meta=meta, path=path, on_close=mapped.close)


# ---------------------------------------------------------------------------------------------
# writing

@dataclass
class Plan:
    graph: bytes | None                      # the skeleton to splice into (None: a new graph)
    write: Callable[[Any], None]             # writes the file to an open binary file


def _sources(store: Store, like: Store | None) -> tuple[Store, ...]:
    """Where the graph comes from: the template when one is given (format.py's rule), else the
    store's own."""
    return (like,) if like is not None else (store,)


def _template(store: Store, like: Store | None) -> dict | None:
    for source in _sources(store, like):
        if isinstance(source.meta.get(NAMESPACE), dict):
            return source.meta[NAMESPACE]
    return None


def _skeleton(template: dict, store: Store, like: Store | None) -> bytes:
    text = template.get("skeleton")
    if isinstance(text, str):
        return codec.unb64(text)
    for source in _sources(store, like):
        if source.format == NAME and source.path and seam.isfile(source.path):
            data = seam.read_bytes(source.path)
            return codec.strip(data, constants(data, source.path, len(data)))
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
    found = constants(graph, None, None)
    pairs = codec.replacements([(c.name, c) for c in found], store, NAMESPACE)
    return Plan(graph, codec.replacer(graph, pairs))


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
