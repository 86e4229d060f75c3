"""A bounds-checking verifier for FlatBuffers, driven by a layout table generated from a schema.

The FlatBuffers Python runtime checks nothing: an offset past the end raises whatever Python
raises (or, negative, silently reads from the end of the buffer), and a vector of a million
offsets to one table is a million tables to its object API. Before the runtime (or its object
API) touches an untrusted buffer, `verify()` walks it as the C++ `flatbuffers::Verifier` does
(google/flatbuffers `include/flatbuffers/verifier.h`): every table's vtable and fields, every
offset, string and vector inside the buffer, nesting at most `max_depth` deep and at most
`max_tables` tables visited (the C++ defaults, 64 and 1,000,000, which TFLite's own
`VerifyModelBuffer` uses), so that the walk is bounded whatever the file says. A table reached
again (FlatBuffers may share one: a DAG) counts as a visit but is not walked again, and visits
are also bounded by the size: no table takes fewer than 8 bytes with its fields, so a buffer of
n bytes whose walk visits more than n / 8 + 1024 tables is amplifying shared tables (a bomb
for whoever reads it table by table, as the object API does) and is refused. Sharing also
multiplies vectors: a tensor whose 1 MB quantization vector is reached through 20,000 offsets
to the same table is 20 GB to a reader that reads each tensor it is given. So the walk also
totals the bytes of every table, vector and string as a reader reaching each through every
path would read them (a shared table's total is counted at every offset to it, without walking
it again), and refuses a buffer whose total exceeds `max_expansion` times its size plus 1 MiB:
a FlatBuffer written without sharing totals its own size at most.

A layout (see `tflite_schema/layout.py`, written by its `regenerate.py` from the binary schema
`flatc -b --schema` writes) maps each table name to its fields by id:
`(name, kind, argument, deprecated)`, kinds `scalar` (byte size), `struct` (byte size),
`string`, `table` (table name), `vector` (element byte size), `vector_string`,
`vector_table` (table name), `union` ((id of the type field, {type code: table name})).

Besides yes or no, the walk reports what a re-pack through the generated object API would
drop: fields the schema does not know (a newer writer), deprecated fields that hold a value
(the generated code has no accessor for them), and union members of unknown type.
"""
from __future__ import annotations

import array
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_DEPTH = 64
MAX_TABLES = 1_000_000
MAX_EXPANSION = 4  # bytes a reader following every offset may read, per byte of the buffer

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_UNSIGNED = {1: struct.Struct("<B"), 2: _U16, 4: _U32, 8: struct.Struct("<Q")}


class VerifyError(ValueError):
    """The buffer is not a valid FlatBuffer of the layout; the message says where."""


@dataclass
class Report:
    """What the walk found besides validity."""
    end: int = 0  # one past the last byte any table, vtable, string or vector uses
    tables: int = 0
    expanded: int = 0  # bytes of tables, vectors and strings reached through every offset
    unknown: list[str] = field(default_factory=list)  # "Table.field" a re-pack would drop


class _Walker:
    def __init__(self, buf: Any, size: int, layout: Mapping[str, tuple], max_depth: int,
                 max_tables: int, payload: frozenset = frozenset()):
        self.buf, self.size, self.layout = buf, size, layout
        self.payload = payload
        self.structure = array.array("q")  # (start, end) of every byte range read as structure
        self.payloads: set[tuple[int, int]] = set()
        self.max_depth = max_depth
        self.max_tables = min(max_tables, size // 8 + 1024)
        self.report = Report()
        self.seen: dict[tuple[int, str], int] = {}  # table -> its expanded bytes

    def _need(self, pos: int, n: int, what: str) -> None:
        if pos < 0 or n < 0 or pos + n > self.size:
            raise VerifyError(f"{what} at byte {pos} ({n} bytes) runs past the end "
                              f"({self.size} bytes)")
        if pos + n > self.report.end:
            self.report.end = pos + n
        self.structure.append(pos)
        self.structure.append(pos + n)

    def _u32(self, pos: int, what: str) -> int:
        self._need(pos, 4, what)
        return _U32.unpack_from(self.buf, pos)[0]

    def _target(self, pos: int, what: str) -> int:
        """The position an unsigned offset stored at `pos` points to."""
        return pos + self._u32(pos, f"offset to {what}")

    def table(self, pos: int, name: str, depth: int, path: str) -> int:
        """Walk the table at `pos`; the bytes it and everything it reaches take, counted
        through every offset (see the module docstring)."""
        if depth > self.max_depth:
            raise VerifyError(f"{path}: tables nested more than {self.max_depth} deep")
        self.report.tables += 1
        if self.report.tables > self.max_tables:
            raise VerifyError(f"more than {self.max_tables} tables visited (shared tables "
                              "repeated)" if len(self.seen) < self.report.tables else
                              f"more than {self.max_tables} tables")
        known = self.seen.get((pos, name))
        if known is not None:
            return known
        self.seen[(pos, name)] = 0
        self._need(pos, 4, f"{path} table")
        vtable = pos - _I32.unpack_from(self.buf, pos)[0]
        self._need(vtable, 4, f"{path} vtable")
        vsize, tsize = _U16.unpack_from(self.buf, vtable)[0], _U16.unpack_from(self.buf, vtable + 2)[0]
        if vsize < 4 or vsize % 2:
            raise VerifyError(f"{path}: vtable of {vsize} bytes")
        self._need(vtable, vsize, f"{path} vtable")
        self._need(pos, max(tsize, 4), f"{path} table")
        fields = self.layout[name]
        count = (vsize - 4) // 2
        own = total = max(tsize, 4)
        for fid in range(count):
            offset = _U16.unpack_from(self.buf, vtable + 4 + 2 * fid)[0]
            if not offset:
                continue
            if fid >= len(fields):
                self.report.unknown.append(f"{name}.field{fid}")
                continue
            fname, kind, arg, deprecated = fields[fid]
            if deprecated:
                self.report.unknown.append(f"{name}.{fname} (deprecated)")
            if (kind == "scalar" or kind == "struct") and offset + arg <= own:
                continue  # inside the table's own bytes, checked and recorded above
            where = f"{path}.{fname}"
            if (name, fname) in self.payload:  # bytes a writer replaces: not structure
                start, n = self.vector(self._target(pos + offset, where), arg, where, True)
                total += 4 + arg * n
                continue
            total += self.field(pos, pos + offset, kind, arg, depth, where, vtable, fields)
        self.seen[(pos, name)] = total
        return total

    def field(self, table: int, pos: int, kind: str, arg: Any, depth: int, path: str,
              vtable: int, fields: tuple) -> int:
        """Check a field; the bytes it reaches outside its table (see `table`)."""
        if kind in ("scalar", "struct"):
            self._need(pos, arg, path)
            return 0
        if kind == "string":
            return self.string(self._target(pos, path), path)
        if kind == "table":
            return self.table(self._target(pos, path), arg, depth + 1, path)
        if kind == "vector":
            return 4 + arg * self.vector(self._target(pos, path), arg, path)[1]
        if kind == "vector_string":
            start, n = self.vector(self._target(pos, path), 4, path)
            return 4 + 4 * n + sum(
                self.string(self._target(start + 4 * i, f"{path}[{i}]"), f"{path}[{i}]")
                for i in range(n))
        if kind == "vector_table":
            start, n = self.vector(self._target(pos, path), 4, path)
            return 4 + 4 * n + sum(
                self.table(self._target(start + 4 * i, f"{path}[{i}]"), arg, depth + 1,
                           f"{path}[{i}]") for i in range(n))
        if kind == "union":
            type_id, members = arg
            code = 0
            vsize = _U16.unpack_from(self.buf, vtable)[0]
            if 4 + 2 * type_id < vsize:
                offset = _U16.unpack_from(self.buf, vtable + 4 + 2 * type_id)[0]
                if offset:
                    self._need(table + offset, 1, f"{path} type")
                    code = self.buf[table + offset]
            if not code:
                return 0
            target = self._target(pos, path)
            if code not in members:
                self.report.unknown.append(f"{path} (union type {code})")
                self._need(target, 4, path)
                return 4
            return self.table(target, members[code], depth + 1, path)
        raise AssertionError(kind)  # pragma: no cover - the layout is generated

    def string(self, pos: int, path: str) -> int:
        n = self._u32(pos, f"{path} length")
        self._need(pos + 4, n + 1, path)
        if self.buf[pos + 4 + n] != 0:
            raise VerifyError(f"{path}: string not terminated")
        return n + 5

    def vector(self, pos: int, elem: int, path: str, payload: bool = False
               ) -> tuple[int, int]:
        n = self._u32(pos, f"{path} length")
        if not payload:
            self._need(pos + 4, n * elem, path)
        elif n:
            if pos + 4 + n * elem > self.size:
                raise VerifyError(f"{path} at byte {pos + 4} ({n * elem} bytes) runs past the "
                                  f"end ({self.size} bytes)")
            self.report.end = max(self.report.end, pos + 4 + n * elem)
            self.payloads.add((pos + 4, pos + 4 + n * elem))
        return pos + 4, n

    def check_payloads(self) -> None:
        """Payload vectors overlap neither one another (unless they are the same bytes) nor
        any byte read as structure: replacing them changes nothing else."""
        if not self.payloads:
            return
        spans = np.array(sorted(self.payloads), dtype=np.int64)
        if np.any(spans[1:, 0] < spans[:-1, 1]):
            k = int(np.flatnonzero(spans[1:, 0] < spans[:-1, 1])[0])
            raise VerifyError(f"payload bytes {spans[k, 0]}..{spans[k, 1]} and "
                              f"{spans[k + 1, 0]}..{spans[k + 1, 1]} overlap")
        structure = np.frombuffer(self.structure, dtype=np.int64).reshape(-1, 2)
        structure = structure[structure[:, 1] > structure[:, 0]]
        last = np.searchsorted(spans[:, 0], structure[:, 1], side="left") - 1
        hit = (last >= 0) & (spans[np.maximum(last, 0), 1] > structure[:, 0])
        if hit.any():
            k = int(np.flatnonzero(hit)[0])
            start, end = spans[last[k]]
            raise VerifyError(f"payload bytes {start}..{end} overlap the structure at bytes "
                              f"{structure[k, 0]}..{structure[k, 1]}")


def verify(buf: Any, layout: Mapping[str, tuple], root: str, identifier: bytes | None = None,
           *, size: int | None = None, max_depth: int = MAX_DEPTH,
           max_tables: int = MAX_TABLES, max_expansion: int = MAX_EXPANSION,
           payload: frozenset = frozenset()) -> Report:
    """Check that `buf` (bytes, bytearray, mmap: anything `struct.unpack_from` reads) holds a
    FlatBuffer whose root table is `root`, its first `size` bytes at most (default: all), and
    that a reader following every offset reads at most `max_expansion` times `size` plus 1 MiB.
    `payload`: (table, field) names of byte vectors a writer replaces in place (TFLite's
    `Buffer.data`), which must overlap no other byte the walk reads (nor one another, unless
    they are the same bytes).

    Raises VerifyError naming the first problem; returns a `Report`."""
    size = len(buf) if size is None else size
    walker = _Walker(buf, size, layout, max_depth, max_tables, payload)
    if size < 8:
        raise VerifyError(f"{size} bytes is too short for a FlatBuffer")
    if identifier is not None and bytes(buf[4:8]) != identifier:
        raise VerifyError(f"file identifier {bytes(buf[4:8])!r}, expected {identifier!r}")
    expanded = walker.table(walker._target(0, "the root table"), root, 0, root)
    walker.report.expanded = expanded
    walker.check_payloads()
    if expanded > max_expansion * size + (1 << 20):
        raise VerifyError(f"tables shared through many offsets amount to {expanded} bytes read "
                          f"from {size} (more than {max_expansion} times the buffer)")
    return walker.report
