"""The constants of a TensorFlow GraphDef, read and replaced in place: shared by the frozen
GraphDef format (`graphdef.py`) and SavedModels whose weights are graph constants
(`saved_model.py`).

Messages (tensorflow/tensorflow `tensorflow/core/framework/graph.proto`, `node_def.proto`,
`attr_value.proto`, `tensor.proto`, `tensor_shape.proto`, `function.proto`;
`tensorflow/core/protobuf/saved_model.proto`, `meta_graph.proto`):

    GraphDef      1 node (NodeDef), 2 library (FunctionDefLibrary), 4 versions, ...
    NodeDef       1 name, 2 op, 3 input, 4 device, 5 attr (map<string, AttrValue>)
    AttrValue     6 type (DataType), 8 tensor (TensorProto), ...
    FunctionDefLibrary  1 function (FunctionDef: 1 signature (OpDef: 1 name), 3 node_def)
    TensorProto   1 dtype, 2 tensor_shape, 3 version_number, 4 tensor_content, 5 float_val,
                  6 double_val, 7 int_val, 8 string_val, 9 scomplex_val, 10 int64_val,
                  11 bool_val, 12 dcomplex_val, 13 half_val, 14 resource_handle_val,
                  15 variant_val, 16 uint32_val, 17 uint64_val, 18 float8_val
    SavedModel    1 saved_model_schema_version, 2 meta_graphs (MetaGraphDef: 2 graph_def,
                  7 object_graph_def (SavedObjectGraph: 1 nodes (SavedObject: 7 variable)))

Every `Const` node's `value` is a constant, named by the node (by `function:node` inside a
function of the library). Its value (tensorflow/tensorflow `tensorflow/core/framework/tensor.cc`,
`Tensor::FromProto`): a non-empty `tensor_content` holds the raw little-endian bytes and must be
complete; otherwise the dtype's typed field holds the values, where fewer values than elements
repeat the last one and none means zeros (float16 and bfloat16 as their bits in `half_val`).
A typed constant is refused when it would expand beyond `MAX_EXPANSION` times the file (a shape
bomb). Constants of dtype resource or variant are not weights and are skipped.

Nothing is copied while the file is scanned (field offsets into a map of it), every length is
checked against its enclosing message, and only the fixed path from a GraphDef to a tensor is
descended, so a crafted file can make the reader neither allocate nor recurse without bound.

Writing replaces each constant's TensorProto in place, in the encoding it had (tensor_content,
or the typed field with as many values as before when the new value is still that broadcast),
and copies every other byte: with unchanged values the file comes back byte for byte.
"""
from __future__ import annotations

import array
import base64
import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from .dtypes import STRING, dtype_from_name
from .errors import CorruptFileError, UnsafeFileError, UsageError, naming
from . import source as seam
from .mapped import MappedFile, rows
from .protowire import FIXED32, FIXED64, LENGTH, VARINT, Span, length_field, spans
from .sstable import put_varint
from .store import Extent, Index, Store, Tensor, check_shape
from .tf_dtypes import DTYPES as TF_DTYPES, HANDLES, QUANTIZED

NAMESPACE_KEY = "tf_graphdef"
MAX_EXPANSION = 1024          # a typed constant may expand to this many times the file ...
SMALL_BYTES = 1 << 20         # ... plus this much

CONTENT = 4
# TensorProto typed field per canonical dtype: (number, element kind)
#   kinds: "varint" (int64 two's complement), "f32", "f64", "bytes" (one per element),
#   "half" (varint of the 16 bits), "byte" (float8_val: one byte per element in one field)
_TYPED: dict[str, tuple[int, str]] = {
    "float32": (5, "f32"), "float64": (6, "f64"), "int32": (7, "varint"), "uint8": (7, "varint"),
    "int16": (7, "varint"), "int8": (7, "varint"), "uint16": (7, "varint"),
    "int4": (7, "varint"), "uint4": (7, "varint"), "string": (8, "bytes"),
    "complex64": (9, "f32"), "int64": (10, "varint"), "bool": (11, "varint"),
    "complex128": (12, "f64"), "float16": (13, "half"), "bfloat16": (13, "half"),
    "uint32": (16, "varint"), "uint64": (17, "varint"), "float8_e5m2": (18, "byte"),
    "float8_e4m3fn": (18, "byte"), "float8_e4m3fnuz": (18, "byte"),
    "float8_e5m2fnuz": (18, "byte"), "float4_e2m1fn": (18, "byte"),
}
FIELD_NAMES = {4: "tensor_content", 5: "float_val", 6: "double_val", 7: "int_val",
               8: "string_val", 9: "scomplex_val", 10: "int64_val", 11: "bool_val",
               12: "dcomplex_val", 13: "half_val", 16: "uint32_val", 17: "uint64_val",
               18: "float8_val"}
VALUE_FIELDS = frozenset(range(4, 19))


@dataclass(slots=True)
class Constant:
    """A Const node's tensor, located in the file."""
    name: str                    # the variable name: node, or `function:node`
    node: str
    function: str | None
    enum: int                    # TensorFlow DataType
    dtype: np.dtype
    shape: tuple[int, ...]
    chain: tuple[Span, ...]      # enclosing fields, outermost first, ending at the TensorProto
    field: int                   # where the value is: CONTENT or the typed field number
    values: list[Span]           # [tensor_content]; [] for a typed field (read again on use)
    count: int                   # typed: how many values the file gives
    packed: bool                 # typed: packed (one LENGTH field) rather than one per value


def tf_dtype(enum: int, where: str, path: str | None) -> np.dtype:
    if enum not in TF_DTYPES:
        raise CorruptFileError(f"{where}: unknown TensorFlow dtype {enum}", path)
    return dtype_from_name(TF_DTYPES[enum])


def _text(buf: Any, span: Span) -> str:
    return bytes(buf[span.value_start:span.end]).decode("utf-8", "surrogateescape")


def _message(span: Span, what: str, path: str | None) -> Span:
    if span.wire != LENGTH:
        raise CorruptFileError(f"{what}: expected a message (wire type 2), received wire type "
                               f"{span.wire}", path)
    return span


def graph_constants(buf: Any, start: int, end: int, chain: tuple[Span, ...],
                    path: str | None, file_size: int | None) -> list[Constant]:
    """The constants of the GraphDef message at `buf[start:end]` (main graph, then the
    functions of its library), `chain` being the fields that enclose it. `file_size` sets the
    budget of typed constants (`MAX_EXPANSION`); None for a graph whose values were stripped
    (`strip`), which is never expanded."""
    out: list[Constant] = []
    for field in spans(buf, start, end):
        if field.number == 1:
            constant = _node(buf, _message(field, "GraphDef.node", path), chain + (field,),
                             None, path, file_size)
            if constant is not None:
                out.append(constant)
        elif field.number == 2:
            library = _message(field, "GraphDef.library", path)
            for function in spans(buf, library.value_start, library.end):
                if function.number == 1:
                    out += _function(buf, _message(function, "FunctionDefLibrary.function", path),
                                     chain + (library, function), path, file_size)
    return out


def _function(buf: Any, field: Span, chain: tuple[Span, ...], path: str | None,
              file_size: int | None) -> list[Constant]:
    name, nodes = None, []
    for inner in spans(buf, field.value_start, field.end):
        if inner.number == 1:  # signature (OpDef): its field 1 is the name
            for sig in spans(buf, _message(inner, "FunctionDef.signature", path).value_start,
                             inner.end):
                if sig.number == 1 and sig.wire == LENGTH:
                    name = _text(buf, sig)
        elif inner.number == 3:
            nodes.append(_message(inner, "FunctionDef.node_def", path))
    out = []
    for node in nodes:
        constant = _node(buf, node, chain + (node,), name or "", path, file_size)
        if constant is not None:
            out.append(constant)
    return out


def _node(buf: Any, field: Span, chain: tuple[Span, ...], function: str | None,
          path: str | None, file_size: int | None) -> Constant | None:
    name = op = None
    values: list[tuple[Span, list[Span]]] = []  # the `value` attr entries: (entry, AttrValues)
    dtypes: list[Span] = []  # the `dtype` attr's AttrValues
    for inner in spans(buf, field.value_start, field.end):
        if inner.number == 1 and inner.wire == LENGTH:
            name = _text(buf, inner)
        elif inner.number == 2 and inner.wire == LENGTH:
            op = _text(buf, inner)
        elif inner.number == 5:
            entry = _message(inner, "NodeDef.attr", path)
            key, attrs = None, []
            for part in spans(buf, entry.value_start, entry.end):
                if part.number == 1 and part.wire == LENGTH:
                    key = _text(buf, part)
                elif part.number == 2:
                    attrs.append(_message(part, "NodeDef.attr value", path))
            if key == "value":
                values.append((entry, attrs))
            elif key == "dtype":
                dtypes = attrs
    if op != "Const" or not values:
        return None
    if not name:
        raise CorruptFileError("a Const node without a name", path)
    full = name if function is None else f"{function}:{name}"
    entry, attrs = _one_value(buf, values, full, path)
    attr = attrs[0]
    tensors = [p for p in spans(buf, attr.value_start, attr.end) if p.number in _ATTR_VALUE]
    if [p.number for p in tensors] != [8]:
        raise CorruptFileError(f"Const {full!r}: its value attr holds "
                               f"{', '.join(_ATTR_VALUE[p.number] for p in tensors) or 'nothing'}"
                               ", not one tensor", path)
    value = (entry, attr, _message(tensors[0], "AttrValue.tensor", path))
    constant = _tensor(buf, full, name, function, chain + value, path, file_size)
    declared = [p.value for a in dtypes for p in spans(buf, a.value_start, a.end)
                if p.number == 6 and p.wire == VARINT]
    if constant is not None and declared and declared[-1] != constant.enum:
        raise CorruptFileError(f"Const {full!r}: attr dtype {declared[-1]} but a tensor of dtype "
                               f"{constant.enum} (TensorFlow refuses the node)", path)
    return constant


# AttrValue's oneof `value` (tensorflow/core/framework/attr_value.proto)
_ATTR_VALUE = {1: "list", 2: "s", 3: "i", 4: "f", 5: "b", 6: "type", 7: "shape", 8: "tensor",
               9: "placeholder", 10: "func"}


def _one_value(buf: Any, values: list[tuple[Span, list[Span]]], full: str, path: str | None
               ) -> tuple[Span, list[Span]]:
    """The one `value` attr of a Const node. Protobuf gives a map key given twice its last
    entry, a message field given twice the merge of both, and a oneof its last member: rather
    than follow those rules (which TensorFlow's own writer never needs), a node whose value
    they would decide is refused, so that weightkit never reads another tensor than TensorFlow
    does."""
    if len(values) > 1:
        raise CorruptFileError(f"Const {full!r}: the attr 'value' is given {len(values)} times",
                               path)
    entry, attrs = values[0]
    if len(attrs) != 1:
        raise CorruptFileError(f"Const {full!r}: the attr 'value' has {len(attrs)} values "
                               "(protobuf would merge them)", path)
    return entry, attrs


def _tensor(buf: Any, full: str, node: str, function: str | None, chain: tuple[Span, ...],
            path: str | None, file_size: int | None) -> Constant | None:
    proto = chain[-1]
    enum, shape, content, shapes = 0, (), None, 0  # an absent dtype is DT_INVALID (0)
    tallies: dict[int, _Tally] = {}  # the typed fields, counted (never kept: see _Tally)
    unknown_rank = False
    for part in spans(buf, proto.value_start, proto.end):
        if part.number == 1 and part.wire == VARINT:
            enum = part.value
        elif part.number == 2:
            shapes += 1
            shape, unknown_rank = _shape(buf, _message(part, "TensorProto.tensor_shape", path),
                                         full, path)
        elif part.number == CONTENT and part.wire == LENGTH:
            content = part
        elif part.number in VALUE_FIELDS:
            tally = tallies.get(part.number)
            if tally is None:
                tally = tallies[part.number] = _Tally()
            tally.add(buf, part)
    if enum in HANDLES:
        return None
    where = f"constant {full!r}"
    if shapes > 1:
        raise CorruptFileError(f"{where}: tensor_shape is given {shapes} times (protobuf would "
                               "merge their dimensions)", path)
    dtype = tf_dtype(enum, where, path)
    if unknown_rank:
        raise CorruptFileError(f"{where}: a constant of unknown rank", path)
    kind = TF_DTYPES[enum]
    shape = check_shape(shape, where, path, 8 if kind == "string" else dtype.itemsize)
    count = math.prod(shape)
    if content is not None and content.end > content.value_start:
        if kind == "string":
            raise CorruptFileError(f"{where}: a string constant in tensor_content", path)
        nbytes = content.end - content.value_start
        if nbytes != count * dtype.itemsize:
            raise CorruptFileError(f"{where}: shape {list(shape)} of {kind} needs "
                                   f"{count * dtype.itemsize} bytes, tensor_content holds "
                                   f"{nbytes}", path)
        return Constant(full, node, function, enum, dtype, shape, chain, CONTENT, [content],
                        count, False)
    number, element = _TYPED[kind]
    given, packed = tallies.get(number, _Tally()).count(number, element, where, path)
    if kind.startswith("complex"):
        if given % 2:
            raise CorruptFileError(f"{where}: an odd number of complex parts", path)
        given //= 2
    expanded = count * (8 if kind == "string" else dtype.itemsize)
    if file_size is not None and given < count \
            and expanded > MAX_EXPANSION * file_size + SMALL_BYTES:
        raise UnsafeFileError(f"{where}: {given} value(s) expand to shape {list(shape)} "
                              f"({expanded} bytes), more than {MAX_EXPANSION} times the file; "
                              "refused", path)
    return Constant(full, node, function, enum, dtype, shape, chain, number, [],
                    min(given, count) if count else given, packed)


def _shape(buf: Any, field: Span, where: str, path: str | None) -> tuple[tuple[int, ...], bool]:
    dims, unknown = [], False
    for part in spans(buf, field.value_start, field.end):
        if part.number == 2:
            size = 0
            for dim in spans(buf, _message(part, "TensorShapeProto.dim", path).value_start,
                             part.end):
                if dim.number == 1 and dim.wire == VARINT:
                    size = dim.value - (1 << 64) if dim.value >= 1 << 63 else dim.value
            if size < 0:
                raise CorruptFileError(f"constant {where!r}: dimension {size}", path)
            dims.append(size)
        elif part.number == 3 and part.wire == VARINT:
            unknown = bool(part.value)
    return tuple(dims), unknown


_WIDTH = {"f32": 4, "f64": 8}


_HIGH = bytes(range(0x80, 0x100))


class _Tally:
    """One typed field of a TensorProto, counted as its occurrences are scanned, without
    keeping them (a constant may give millions of values one field each): occurrences by wire
    type, and for LENGTH ones (packed runs, strings, float8 bytes) their bytes, the varints
    they end and whether their sizes fit 4- and 8-byte numbers."""

    __slots__ = ("fields", "wires", "length_bytes", "varint_ends", "truncated", "odd4", "odd8")

    def __init__(self) -> None:
        self.fields = self.length_bytes = self.varint_ends = 0
        self.wires: dict[int, int] = {}
        self.truncated = self.odd4 = self.odd8 = False

    def add(self, buf: Any, f: Span) -> None:
        self.fields += 1
        self.wires[f.wire] = self.wires.get(f.wire, 0) + 1
        if f.wire == LENGTH:
            size = f.end - f.value_start
            self.length_bytes += size
            self.odd4 |= bool(size % 4)
            self.odd8 |= bool(size % 8)
            if size:
                data = bytes(buf[f.value_start:f.end])
                self.truncated |= data[-1] >= 0x80
                self.varint_ends += len(data.translate(None, _HIGH))  # bytes ending a varint

    def count(self, number: int, element: str, where: str, path: str | None
              ) -> tuple[int, bool]:
        """How many values the field gives (bytes for float8_val) and whether they are packed
        (one LENGTH field). A field of another wire type than the element's (protobuf would
        skip it as unknown) is refused."""
        scalar = {"f32": FIXED32, "f64": FIXED64, "bytes": LENGTH, "byte": LENGTH}.get(
            element, VARINT)
        other = set(self.wires) - {scalar, LENGTH}
        if other:
            raise CorruptFileError(f"{where}: {FIELD_NAMES.get(number, number)} of wire type "
                                   f"{min(other)}", path)
        lengths = self.wires.get(LENGTH, 0)
        if element == "bytes":
            return lengths, False
        if element == "byte":
            return self.length_bytes, True
        if element in _WIDTH:
            if self.odd4 if element == "f32" else self.odd8:
                raise CorruptFileError(f"{where}: packed values of a size not a multiple of "
                                       f"{_WIDTH[element]} bytes", path)
            given = self.length_bytes // _WIDTH[element]
        else:
            if self.truncated:
                raise CorruptFileError(f"{where}: truncated packed varints", path)
            given = self.varint_ends
        return given + self.wires.get(scalar, 0), bool(lengths) and self.fields == 1


# ---------------------------------------------------------------------------------------------
# values

def varints(data: bytes) -> np.ndarray:
    """Decode concatenated varints (as uint64, two's complement for negatives), vectorized."""
    raw = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(raw < 0x80)
    if raw.size and (not ends.size or ends[-1] != raw.size - 1):
        raise CorruptFileError("truncated packed varints")
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
    lengths = ends - starts + 1
    if lengths.size and lengths.max() > 10:
        raise CorruptFileError("a varint longer than 10 bytes")
    values = np.zeros(ends.size, np.uint64)
    for k in range(int(lengths.max()) if lengths.size else 0):
        mask = lengths > k
        values[mask] |= (raw[starts[mask] + k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
    return values


def typed_values(buf: Any, constant: Constant) -> np.ndarray:
    """The values a typed field gives, flat, in the constant's dtype (before broadcasting), in
    file order (packed runs and single values as they come)."""
    kind = TF_DTYPES[constant.enum]
    number, element = _TYPED[kind]
    proto = constant.chain[-1]
    parts = (p for p in spans(buf, proto.value_start, proto.end) if p.number == number)
    if element == "bytes":
        return np.array([bytes(buf[p.value_start:p.end]) for p in parts] or [], dtype=object)
    if element in ("byte", "f32", "f64"):  # the raw bytes of packed runs and fixed values alike
        data = bytearray()
        for p in parts:
            data += buf[p.value_start:p.end]
        if element == "byte":
            return np.frombuffer(bytes(data), np.uint8).view(constant.dtype)
        numbers = np.frombuffer(bytes(data), "<f4" if element == "f32" else "<f8")
        if kind in ("complex64", "complex128"):
            return numbers.view(constant.dtype.newbyteorder("<")).astype(constant.dtype)
        return numbers.astype(constant.dtype)
    chunks, single = [], array.array("Q")
    for p in parts:
        if p.wire == LENGTH:
            if single:
                chunks.append(np.frombuffer(single, np.uint64).copy())
                single = array.array("Q")
            chunks.append(varints(bytes(buf[p.value_start:p.end])))
        else:
            single.append(p.value & 0xFFFFFFFFFFFFFFFF)
    if single:
        chunks.append(np.frombuffer(single, np.uint64).copy())
    words = np.concatenate(chunks) if chunks else np.zeros(0, np.uint64)
    if element == "half":
        return words.astype(np.uint16).view(constant.dtype)
    if kind == "bool":
        return words != 0
    if kind in ("uint64", "uint32"):
        return words.astype(constant.dtype)
    return words.view(np.int64).astype(constant.dtype)


def broadcast(values: np.ndarray, constant: Constant, lo: int = 0, hi: int | None = None
              ) -> np.ndarray:
    """TensorFlow's reading of typed values: the last repeats, none means zeros. With `lo`
    and `hi`: only elements [lo, hi) of the flat tensor (a block of rows), flat."""
    count = math.prod(constant.shape)
    dtype = constant.dtype
    whole = hi is None
    hi = count if hi is None else hi
    if values.size == 0:
        flat = np.full(hi - lo, b"", dtype=object) if dtype == STRING else np.zeros(hi - lo, dtype)
    else:
        flat = np.empty(hi - lo, dtype=dtype)
        head = values[lo:min(hi, values.size)]
        flat[:head.size] = head
        flat[head.size:] = values[-1]
    flat = np.asarray(flat, dtype=dtype)
    return flat.reshape(constant.shape) if whole else flat


# ---------------------------------------------------------------------------------------------
# writing

def encode_tensor(buf: Any, constant: Constant, array: np.ndarray) -> bytes:
    """The TensorProto body for `constant` holding `array` (same dtype and shape): its other
    fields as they are, the value in the encoding it had when that still describes `array`."""
    kind = TF_DTYPES[constant.enum]
    array = np.asarray(array, dtype=constant.dtype).reshape(constant.shape)
    proto = constant.chain[-1]
    value = _value_fields(constant, array, kind)
    out, placed = bytearray(), False
    for part in spans(buf, proto.value_start, proto.end):
        if part.number in VALUE_FIELDS:
            continue
        if part.number > CONTENT and not placed:
            out += value
            placed = True
        out += bytes(buf[part.start:part.end])
    if not placed:
        out += value
    return bytes(out)


def _value_fields(constant: Constant, array: np.ndarray, kind: str) -> bytes:
    flat = array.reshape(-1)
    if constant.field != CONTENT:
        given = constant.count
        head = flat[:given]
        if given <= flat.size and _repeats(flat, given):
            return _typed(constant, head, kind)
    if kind == "string":
        return _typed(constant, flat, kind)
    if flat.size == 0:
        return b""
    data = np.ascontiguousarray(flat).astype(constant.dtype.newbyteorder("<")).tobytes()
    return length_field(CONTENT, data)


def _repeats(flat: np.ndarray, given: int) -> bool:
    """Whether `flat` is what `given` typed values broadcast to (bit for bit)."""
    if flat.size == 0:
        return given == 0
    if flat.dtype == STRING:
        tail = flat[given - 1:] if given else flat
        first = tail[0] if given else b""
        return all(x == first for x in tail.tolist())
    bits = np.ascontiguousarray(flat).view(np.uint8).reshape(flat.size, -1)
    if given == 0:
        return not bits.any()
    return bool((bits[given - 1:] == bits[given - 1]).all())


def _typed(constant: Constant, values: np.ndarray, kind: str) -> bytes:
    number, element = _TYPED[kind]
    if values.size == 0:
        return b""
    if element == "bytes":
        return b"".join(length_field(number, v if isinstance(v, bytes) else str(v).encode())
                        for v in values.tolist())
    if element == "byte":
        return length_field(number, np.ascontiguousarray(values).view(np.uint8).tobytes())
    if element in _WIDTH:
        little = "<f4" if element == "f32" else "<f8"
        numbers = (values.view(values.dtype.newbyteorder("<")).view(little)
                   if kind.startswith("complex") else values.astype(little))
        if constant.packed:
            return length_field(number, numbers.tobytes())
        tag = put_varint(number << 3 | (FIXED32 if element == "f32" else FIXED64))
        fields = np.empty(numbers.size, [("tag", np.uint8, (len(tag),)), ("value", little)])
        fields["tag"] = np.frombuffer(tag, np.uint8)
        fields["value"] = numbers.reshape(-1)
        return fields.tobytes()
    if element == "half":
        words = values.view(np.uint16).astype(np.uint64)
    elif kind == "bool":
        words = values.astype(np.uint64)
    elif kind in ("uint64", "uint32"):
        words = values.astype(np.uint64)
    else:
        words = values.astype(np.int64).view(np.uint64)
    encoded = [put_varint(int(w)) for w in words.tolist()]
    if constant.packed:
        return length_field(number, b"".join(encoded))
    tag = put_varint(number << 3 | VARINT)
    return b"".join(tag + e for e in encoded)


def splice(buf: Any, start: int, end: int, edits: Mapping[Span, Any], out: BinaryIO) -> None:
    """Write the message `buf[start:end]` to `out` with some fields replaced: `edits` maps a
    field (its Span, as found in `buf`) to its new body (bytes) or to a nested `edits` mapping
    for it. Only the edited fields are visited (their spans say where they are): the bytes
    between them are copied as they are, so the cost follows the edits, not the message."""
    position = start
    for field in sorted(edits, key=lambda f: f.start):
        if not start <= field.start < field.end <= end or field.start < position:
            raise AssertionError("an edit outside its message")  # pragma: no cover
        out.write(bytes(buf[position:field.start]))
        edit = edits[field]
        if isinstance(edit, (bytes, bytearray)):
            body = bytes(edit)
        else:
            inner = _Buffer()
            splice(buf, field.value_start, field.end, edit, inner)
            body = inner.getvalue()
        out.write(length_field(field.number, body))
        position = field.end
    out.write(bytes(buf[position:end]))


class _Buffer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


def edits_for(replacements: list[tuple[Constant, bytes]], depth: int) -> dict[Span, Any]:
    """The nested `splice` edits that put each new TensorProto body in place; `depth` is the
    number of leading chain fields that lie outside the message being spliced."""
    root: dict[Span, Any] = {}
    for constant, body in replacements:
        node = root
        chain = constant.chain[depth:]
        for field in chain[:-1]:
            node = node.setdefault(field, {})
        node[chain[-1]] = body
    return root


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeError):
        raise CorruptFileError(f"{NAMESPACE_KEY} metadata: bad base64") from None


def iter_saved_model_graphs(buf: Any, path: str | None) -> Iterator[tuple[Span, Span]]:
    """(MetaGraphDef field, GraphDef field) of each meta graph of a `saved_model.pb`."""
    for field in spans(buf, 0, len(buf)):
        if field.number == 2:
            meta = _message(field, "SavedModel.meta_graphs", path)
            for part in spans(buf, meta.value_start, meta.end):
                if part.number == 2:
                    yield meta, _message(part, "MetaGraphDef.graph_def", path)


# ---------------------------------------------------------------------------------------------
# the constants of a file as tensors, and the plan that writes new values back

class GraphFile:
    """A read-only map of a whole protobuf file (`view`), closed with the store reading it;
    `file` reads a constant's `tensor_content` in bounded pieces. The protobuf is parsed whole,
    so a URL is fetched once (in merged concurrent requests) and mapped locally."""

    def __init__(self, path: str):
        self.source = seam.open_source(path)
        self.size = self.source.size
        self.view: Any = b""
        self._map = None
        try:
            self.file = self.source.mapped()
            if self.size:
                self._map = self.view = self.file.whole()
        except BaseException:
            self.source.close()
            raise

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # a tensor still refers to it; it goes with that tensor
        self.source.close()


def describe(constant: Constant) -> dict[str, Any]:
    """How the file stores a constant (its tensor meta in the reading format's namespace):
    `field`, and for a typed field how many `values` it gives and whether they are `packed`;
    `dtype` names a quantized type (qint8, ...) read as its storage type."""
    field = FIELD_NAMES.get(constant.field, str(constant.field))
    out: dict[str, Any] = {"field": field}
    if constant.field != CONTENT:
        out.update(values=constant.count, packed=constant.packed)
    if constant.enum in QUANTIZED:
        out["dtype"] = QUANTIZED[constant.enum]
    return out


def tensor(file: MappedFile, buf: Any, constant: Constant, namespace: str,
           name: str | None = None) -> Tensor:
    """A constant as a lazy tensor: mapped from `tensor_content` (only the rows an index
    needs), decoded from a typed list. `name` is its variable name (default: the constant's);
    its meta says how the file stores it under `namespace` (`describe`)."""
    meta = {"key": name or constant.name, "role": "weight", namespace: describe(constant)}
    shape, dtype = constant.shape, constant.dtype
    if constant.field == CONTENT:
        reader = Extent(file, constant.values[0].value_start, dtype.newbyteorder("<"), shape)
        return Tensor(shape, dtype, reader, meta)

    decoded: list[np.ndarray] = []  # the values the file gives, decoded on first read

    def get_typed(index: Index) -> np.ndarray:
        # A block of rows at a time: a few values may broadcast to 1024 times the file.
        if not decoded:
            with naming(file.path):
                decoded.append(typed_values(buf, constant))
        run = rows(index, shape)
        if run is None:
            return broadcast(decoded[0], constant)[index]
        r0, r1, local = run
        row = math.prod(shape[1:])
        block = broadcast(decoded[0], constant, r0 * row, r1 * row)
        return block.reshape((r1 - r0, *shape[1:]))[local]
    return Tensor(shape, dtype, get_typed, meta)


def strip(buf: Any, found: list[Constant]) -> bytes:
    """The message `buf` without its constants' values (the *skeleton* to write new values
    into: every other byte as it was); `found` are constants located in `buf` from its start."""
    out = _Buffer()
    splice_constants(buf, found, lambda c: _bare(buf, c), out)
    return out.getvalue()


def splice_constants(buf: Any, found: list[Constant], body: Callable[[Constant], bytes],
                     out: Any) -> None:
    """Write the message `buf` (a whole file) to `out` with each constant's TensorProto body
    replaced by `body(constant)`, one top-level field (a node, the library) at a time in file
    order: what is held at once is one field's edits, not the whole graph's."""
    groups: dict[Span, list[Constant]] = {}
    for constant in found:
        groups.setdefault(constant.chain[0], []).append(constant)
    position = 0
    for top in sorted(groups, key=lambda f: f.start):
        members = groups.pop(top)
        out.write(bytes(buf[position:top.start]))
        if len(members[0].chain) == 1:  # pragma: no cover - a TensorProto is never top-level
            new = body(members[0])
        elif len(members) == 1:  # one constant in this field (a node): one path to rebuild
            new = _rebuilt(buf, members[0].chain, body(members[0]))
        else:
            inner = _Buffer()
            splice(buf, top.value_start, top.end, edits_for([(c, body(c)) for c in members], 1),
                   inner)
            new = inner.getvalue()
        out.write(length_field(top.number, new))
        position = top.end
    out.write(bytes(buf[position:len(buf)]))


def _rebuilt(buf: Any, chain: tuple[Span, ...], body: bytes) -> bytes:
    """The body of field `chain[0]` with the body of the field `chain[-1]` inside it replaced
    by `body`: what `splice` makes of the edits of a single constant, without sorting and
    buffering at each level."""
    outer = chain[0]
    if len(chain) == 1:
        return body
    inner = chain[1]
    if not outer.value_start <= inner.start < inner.end <= outer.end:
        raise AssertionError("an edit outside its message")  # pragma: no cover
    return b"".join((bytes(buf[outer.value_start:inner.start]),
                     length_field(inner.number, _rebuilt(buf, chain[1:], body)),
                     bytes(buf[inner.end:outer.end])))


def _bare(buf: Any, constant: Constant) -> bytes:
    proto = constant.chain[-1]
    return b"".join(bytes(buf[p.start:p.end]) for p in spans(buf, proto.value_start, proto.end)
                    if p.number not in VALUE_FIELDS)


def same_value(buf: Any, a: Constant, b: Constant) -> bool:
    """Whether two constants of `buf` are the same TensorProto, byte for byte."""
    pa, pb = a.chain[-1], b.chain[-1]
    if pa.end - pa.value_start != pb.end - pb.value_start:
        return False
    with memoryview(buf) as view:
        return view[pa.value_start:pa.end] == view[pb.value_start:pb.end]


def with_encoding(constant: Constant, t: Tensor, namespace: str) -> Constant:
    """The constant of a skeleton with the encoding the store's tensor meta records under
    `namespace` (the skeleton has no values to tell); `tensor_content` without a record."""
    own = t.meta.get(namespace)
    if not isinstance(own, dict):
        return dataclasses.replace(constant, field=CONTENT)
    by_name = {v: k for k, v in FIELD_NAMES.items()}
    field = by_name.get(own.get("field"), CONTENT)
    count = own.get("values", 0)
    if field != CONTENT and not (type(count) is int and 0 <= count):
        field, count = CONTENT, 0
    return dataclasses.replace(constant, field=field, count=count,
                               packed=bool(own.get("packed", True)))


def replacements(found: list[tuple[str, Constant]], store: Store, namespace: str
                 ) -> list[tuple[Constant, Tensor]]:
    """Each constant of a skeleton (`found`: (variable name, constant); several constants may
    share a name, copies of one variable) with the store's tensor that replaces it. Refused
    (UsageError): a store variable with no constant, a constant with no variable (the graph's
    nodes use every constant), a changed dtype or shape (the graph's other nodes depend on
    them)."""
    names = {name for name, _ in found}
    extra = [n for n in store if n not in names]
    if extra:
        raise UsageError(f"the graph has no Const node for {len(extra)} variable(s) (e.g. "
                         f"{extra[0]!r}); a graph's constants cannot take new weights")
    out = []
    for name, constant in found:
        if name not in store:
            raise UsageError(f"cannot drop {name!r}: the graph's nodes use every constant")
        t = store[name]
        if t.dtype != constant.dtype or t.shape != constant.shape:
            raise UsageError(f"{name!r} is a {TF_DTYPES[constant.enum]} constant of shape "
                             f"{list(constant.shape)} in the graph; the store has "
                             f"{t.dtype_name} {list(t.shape)} (the graph's other nodes depend "
                             "on them)")
        out.append((with_encoding(constant, t, namespace), t))
    return out


def replacer(graph: bytes, pairs: list[tuple[Constant, Tensor]]) -> Callable[[BinaryIO], None]:
    """write(out): the message `graph` (a skeleton, or the original file) with each constant's
    value replaced by its tensor's, in place; each tensor is read once."""
    tensors = {id(c): t for c, t in pairs}

    def write(out: BinaryIO) -> None:
        left = Counter(id(t) for _, t in pairs)
        values: dict[int, np.ndarray] = {}

        def body(constant: Constant) -> bytes:
            t = tensors[id(constant)]
            array = values.pop(id(t), None)
            if array is None:
                array = t.read()
            left[id(t)] -= 1
            if left[id(t)]:
                values[id(t)] = array
            return encode_tensor(graph, constant, array)
        splice_constants(graph, [c for c, _ in pairs], body, out)
    return write


def saved_model_declares_variables(buf: Any, path: str | None) -> bool:
    """Whether an object graph of a `saved_model.pb` holds a variable (a SavedObject of kind
    `variable`; tensorflow/tensorflow `tensorflow/core/protobuf/saved_object_graph.proto`)."""
    for field in spans(buf, 0, len(buf)):
        if field.number != 2:
            continue
        meta = _message(field, "SavedModel.meta_graphs", path)
        for part in spans(buf, meta.value_start, meta.end):
            if part.number != 7:
                continue
            graph = _message(part, "MetaGraphDef.object_graph_def", path)
            for node in spans(buf, graph.value_start, graph.end):
                if node.number == 1 and any(
                        kind.number == 7 for kind in spans(
                            buf, _message(node, "SavedObjectGraph.nodes", path).value_start,
                            node.end)):
                    return True
    return False
