"""A minimal protobuf wire-format codec for the few messages a TensorFlow checkpoint holds.

Messages decode to dicts by a small schema (`{number: (name, kind, repeated)}`, where kind is
`int`, `uint`, `bool`, `fixed32`, `bytes`, `string` or a nested schema; `oint` is an int with
explicit presence, such as a oneof member, written even when zero). Fields the schema does
not name are kept as raw bytes under `_unknown`, so that decoding and encoding again gives the
same bytes for anything serialized the way protobuf's C++ library does (fields in number order,
proto3 defaults left out, unknown fields last).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple, Union

from .errors import CorruptFileError
from .sstable import get_varint, put_varint

Schema = dict  # {number: (name, kind, repeated)}
Kind = Union[str, Schema]

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
_WIRE = {"int": VARINT, "oint": VARINT, "uint": VARINT, "bool": VARINT, "fixed32": FIXED32}
_MAX_DEPTH = 32


def parse(buf: bytes) -> list[tuple[int, int, Any, bytes]]:
    """Split a message into (number, wire type, value, raw field bytes) in file order."""
    fields = []
    pos, n = 0, len(buf)
    while pos < n:
        start = pos
        tag, pos = get_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise CorruptFileError("protobuf field number 0")
        if wire == VARINT:
            value, pos = get_varint(buf, pos)
        elif wire in (FIXED64, FIXED32):
            width = 8 if wire == FIXED64 else 4
            if pos + width > n:
                raise CorruptFileError("truncated protobuf fixed-width field")
            value = int.from_bytes(buf[pos:pos + width], "little")
            pos += width
        elif wire == LENGTH:
            size, pos = get_varint(buf, pos)
            if pos + size > n:
                raise CorruptFileError(f"protobuf field {number} claims {size} bytes, "
                                       f"{n - pos} remain")
            value = bytes(buf[pos:pos + size])
            pos += size
        else:
            raise CorruptFileError(f"unsupported protobuf wire type {wire} (field {number})")
        fields.append((number, wire, value, bytes(buf[start:pos])))
    return fields


class Span(NamedTuple):
    """A field located in a buffer without copying it: `start` of its tag, `value_start` and
    `end` of its value (for VARINT and fixed-width fields `value` holds the number)."""
    number: int
    wire: int
    start: int
    value_start: int
    end: int
    value: int | None


_new_span = tuple.__new__  # a Span without the namedtuple's Python-level __new__ (3x faster)


def spans(buf: Any, start: int = 0, end: int | None = None) -> Iterator[Span]:
    """The fields of the message in `buf[start:end]` (bytes, a memoryview or an mmap) in file
    order, as offsets: nothing is copied, and every length is checked against `end`, so that a
    crafted size can make nothing allocate or run past the message."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        field_start = pos
        tag = buf[pos]
        if tag < 0x80:  # a one-byte tag (fields 1-15): most of them, decoded inline
            pos += 1
        else:
            tag, pos = get_varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise CorruptFileError("protobuf field number 0")
        value = None
        if wire == VARINT:
            value, pos = get_varint(buf, pos, end)
            value_start = field_start
        elif wire in (FIXED64, FIXED32):
            width = 8 if wire == FIXED64 else 4
            if pos + width > end:
                raise CorruptFileError("truncated protobuf fixed-width field")
            value = int.from_bytes(buf[pos:pos + width], "little")
            value_start, pos = pos, pos + width
        elif wire == LENGTH:
            size = buf[pos] if pos < end else 0x80
            if size < 0x80:
                value_start = pos + 1
            else:
                size, value_start = get_varint(buf, pos, end)
            if size > end - value_start:
                raise CorruptFileError(f"protobuf field {number} claims {size} bytes, "
                                       f"{end - value_start} remain")
            pos = value_start + size
        else:
            raise CorruptFileError(f"unsupported protobuf wire type {wire} (field {number})")
        yield _new_span(Span, (number, wire, field_start, value_start, pos, value))


def length_field(number: int, body: bytes) -> bytes:
    """A LENGTH-delimited field: tag, size, body."""
    return put_varint(number << 3 | LENGTH) + put_varint(len(body)) + body


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def decode(buf: bytes, schema: Schema, depth: int = 0) -> dict[str, Any]:
    """Decode `buf` by `schema`; repeated fields become lists, unknown fields `_unknown`."""
    if depth > _MAX_DEPTH:
        raise CorruptFileError("protobuf messages nested too deeply")
    message: dict[str, Any] = {}
    unknown = []
    for number, wire, value, raw in parse(buf):
        spec = schema.get(number)
        if spec is None:
            unknown.append(raw)
            continue
        name, kind, repeated = spec
        expected = LENGTH if isinstance(kind, dict) or kind in ("bytes", "string") else _WIRE[kind]
        if wire != expected:
            raise CorruptFileError(f"protobuf field {name!r}: expected wire type {expected}, "
                                   f"received {wire}")
        if isinstance(kind, dict):
            value = decode(value, kind, depth + 1)
        elif kind in ("int", "oint"):
            value = _signed(value)
        elif kind == "bool":
            value = bool(value)
        elif kind == "string":
            value = value.decode("utf-8", "surrogateescape")
        if repeated:
            message.setdefault(name, []).append(value)
        else:
            message[name] = value
    if unknown:
        message["_unknown"] = b"".join(unknown)
    return message


def _field(number: int, kind: Kind, value: Any) -> bytes:
    if isinstance(kind, dict):
        body = encode(value, kind)
        return put_varint(number << 3 | LENGTH) + put_varint(len(body)) + body
    if kind in ("bytes", "string"):
        body = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        return put_varint(number << 3 | LENGTH) + put_varint(len(body)) + body
    if kind == "fixed32":
        return put_varint(number << 3 | FIXED32) + int(value).to_bytes(4, "little")
    return put_varint(number << 3 | VARINT) + put_varint(int(value) & ((1 << 64) - 1))


def encode(message: dict[str, Any], schema: Schema) -> bytes:
    """Encode a dict as `decode` returns it. Scalars equal to their default are left out
    (except `oint`); a nested message is written whenever its key is present."""
    out = bytearray()
    for number in sorted(schema):
        name, kind, repeated = schema[number]
        if name not in message:
            continue
        values = message[name] if repeated else [message[name]]
        for value in values:
            if isinstance(kind, dict) or repeated or kind == "oint" or value:
                out += _field(number, kind, value)
    out += message.get("_unknown", b"")
    return bytes(out)


# --- the messages of a TensorFlow checkpoint -------------------------------------------------

VERSION_DEF: Schema = {1: ("producer", "int", False), 2: ("min_consumer", "int", False)}
BUNDLE_HEADER: Schema = {1: ("num_shards", "int", False), 2: ("endianness", "uint", False),
                         3: ("version", VERSION_DEF, False)}
TENSOR_SHAPE: Schema = {2: ("dim", {1: ("size", "int", False), 2: ("name", "string", False)}, True),
                        3: ("unknown_rank", "bool", False)}
EXTENT: Schema = {1: ("start", "int", False), 2: ("length", "oint", False)}
TENSOR_SLICE: Schema = {1: ("extent", EXTENT, True)}
BUNDLE_ENTRY: Schema = {1: ("dtype", "uint", False), 2: ("shape", TENSOR_SHAPE, False),
                        3: ("shard_id", "int", False), 4: ("offset", "int", False),
                        5: ("size", "int", False), 6: ("crc32c", "fixed32", False),
                        7: ("slices", TENSOR_SLICE, True)}
OBJECT_GRAPH: Schema = {1: ("nodes", {
    1: ("children", {1: ("node_id", "int", False), 2: ("local_name", "string", False)}, True),
    2: ("attributes", {1: ("name", "string", False), 2: ("full_name", "string", False),
                       3: ("checkpoint_key", "string", False)}, True),
    3: ("slot_variables", {1: ("original_variable_node_id", "int", False),
                           2: ("slot_name", "string", False),
                           3: ("slot_variable_node_id", "int", False)}, True),
}, True)}
