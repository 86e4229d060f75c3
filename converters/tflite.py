"""TensorFlow Lite models (`.tflite`): the constant tensors of a FlatBuffer model, read lazily,
written back into the same model.

Format facts (google-ai-edge/LiteRT `tflite/converter/schema/schema.fbs`, pinned in
`tflite_schema/`; observations in DEPLOY-FORMATS.md §1): a FlatBuffer with identifier `TFL3`,
root table `Model` {operator_codes, subgraphs, buffers, metadata, ...}; a `SubGraph` has
`tensors` and `operators`; a `Tensor` names a `Buffer` by index (0 is the empty sentinel).
A buffer's bytes are its `data` vector, or, in models over 2 GB, `offset`/`size` bytes after the
FlatBuffer (`offset > 1`; metadata `buffer_location` says so). Little-endian, row-major.

The file is verified before anything is read from it (`flatbuffer.py`: every offset, vtable,
vector and string inside the file, nesting and table count bounded), and every buffer a tensor
uses must lie inside the file, outside the FlatBuffer structure, and not partly overlap another.
A tensor whose data lives in an external file (`Tensor.external_buffer`) is refused: nothing
outside the input is read.

**Variables.** Every tensor whose buffer holds bytes, in every subgraph, is a variable (role
`weight`); activations, inputs and outputs (empty buffers) are not. In a model without
operators (a weights container, as weightkit writes from other formats) every tensor with a
buffer is a variable, zero-size ones included.

**Names.** A variable of subgraph 0 is named by its tensor name; one of another subgraph (the
body of a WHILE, say) by `<subgraph name>/<tensor name>`, with `subgraph<i>` for an unnamed or
repeated subgraph name; an empty tensor name becomes `tensor<j>` (j: its index in the
subgraph); a name given twice gets `#<j>` appended. `Tensor.meta["key"]` is the tensor name as
stored; `meta["tflite"]` has `subgraph`, `tensor`, `buffer`, `type` (TFLite's type name) and
`name` (the canonical name it was read under).

**Values.** Dtypes as stored: FLOAT32, FLOAT16, BFLOAT16, FLOAT64, INT8/16/32/64, UINT8/16/32/64,
BOOL, COMPLEX64/128, FLOAT8_E4M3FN/E5M2, STRING (TFLite's buffer layout: int32 count, count + 1
int32 offsets from the buffer start, bytes); INT4 and UINT4 (two per byte, element 2i in the low
nibble) read as `int4`/`uint4`, INT2 (four per byte, lowest bits first) as `int8` with
`meta["tflite"]["type"] == "INT2"` (LiteRT `tflite/converter/utils/low_bit_utils.cc`).
A sparse tensor (`Tensor.sparsity`, feeding DENSIFY) is read densified, in its dense shape, as
TFLite's DENSIFY computes it (LiteRT `tflite/kernels/internal/utils/sparsity_format_converter.cc`),
its sparsity parameters in `meta["tflite"]["sparsity"]`; it is written back in the same sparse
structure, which fails if a nonzero value falls outside it. A dense tensor larger than 1024 times
its stored bytes (plus 1 MiB) is refused as a bomb.

**Metadata** (plain JSON on each tensor):
- `quantization`: `{"scheme": "affine", "scale": [...], "zero_point": [...], "axis": d}`
  (real = scale · (q − zero_point), per channel along `axis` when there is more than one scale);
  `{"scheme": "cast", "dtype": "float32"}` for float16 weights that feed a DEQUANTIZE;
  `{"scheme": "blockwise", ...}` for BlockwiseQuantization. `quant.py` dequantizes these.
  `meta["tflite"]["quantization"]` keeps `min`, `max` and `details` when present.
- `layout`: for the weight operand of a known operator (followed through DEQUANTIZE/DENSIFY):
  `{"op", "operand", "stored", "source", "to_source", "operator"}`, e.g. FULLY_CONNECTED
  weights stored `OI` ([out, in]), source (Keras) `IO`, `to_source` `[["transpose", [1, 0]]]`;
  CONV_2D `OHWI` → `HWIO`; DEPTHWISE_CONV_2D `1HW(C*M)` → `HWCM` by a reshape; TRANSPOSE_CONV
  `OHWI` → `HWOI`. `diff/export.py` uses it to pair an export with its source.
- `meta["tflite"]["consumers"]`: `[[op, operator index, input position], ...]`;
  `meta["tflite"]["shared_with"]`: the other variables whose tensors use the same buffer (the
  converter deduplicates equal constants, also across subgraphs and between tensors of other
  shapes or dtypes).

**Writing.** A store read from a `.tflite` (directly, or carried through safetensors/npz) is
written into the same model: the file is kept byte for byte and only the variables' bytes are
replaced, in place, when every variable keeps its dtype, shape and byte length (an unchanged
round trip is byte-identical, and `edit` of values gives a file the interpreter runs). Anything
else is rebuilt through the generated object API (the FlatBuffer re-packed, buffer data aligned
to 16 bytes): a rename, a string of another length, and an edit that makes variables sharing a
buffer differ (the buffer is un-shared: the edited tensor gets its own, siblings keep theirs).
Refused, with the reason: a dtype or shape change of a tensor an operator uses, a variable
dropped from or added to a model with operators, a rebuild of a model holding fields or union
members the pinned schema does not know (a re-pack would drop them). With `like=` the
template's model is written with the store's values, paired by name.

The model (the file without the variables' bytes) is carried in `store.meta["tflite"]`
(`skeleton`, base64) when it is at most 32 MiB, so that a trip through safetensors or npz comes
back byte-identical; a larger one is taken from the source file or a `like=` template.

A store from another format is written as a model of constant tensors only, one per variable,
in subgraph 0, named as in the store, no operators (a container for weights, not a runnable
model; `--like MODEL.tflite` writes them into a real model). Dtypes TFLite lacks (float8
variants other than E4M3FN/E5M2, float4) are stored as their bits in UINT8 and tagged; the
store and tensor metadata travel in a model metadata entry `weightkit` (JSON, see `carry.py`).
Reading such a container gives that store back (its metadata, order and tensor metadata, plus
`meta["tflite"]` on each tensor), and writing it again gives the same bytes.

A FlatBuffer cannot exceed 2 GiB: a rebuilt or new model larger than that stores its buffers
after the FlatBuffer (`offset`/`size`, metadata `buffer_location`), as the TFLite converter does
(LiteRT `tflite/converter/flatbuffer_export.cc`). Rebuilds hold the new FlatBuffer in memory
(the FlatBuffers builder works back to front); in-place writes stream.
"""
from __future__ import annotations

import base64
import hashlib
import math
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import carry
from .atomic import atomic_output
from .dtypes import STRING, dtype_from_name, dtype_name
from .errors import CorruptFileError, UnknownFormatError, UnsafeFileError, UsageError, WeightsError
from .flatbuffer import VerifyError, verify
from .foreign import structure_losses
from .format import Format, WritePlan
from . import source as seam
from .mapped import rows
from .store import Extent, Index, Store, Tensor, check_shape

NAME = "tflite"
NAMESPACE = "tflite"
SUFFIXES = (".tflite",)
IDENTIFIER = b"TFL3"
CARRY_ENTRY = "weightkit"  # Model.metadata entry of a weights container written by weightkit
BUFFER_LOCATION = "buffer_location"
SKELETON_LIMIT = 32 << 20
FLATBUFFER_LIMIT = (1 << 31) - (64 << 20)  # keep a margin below 2 GiB for the structure
BOMB_RATIO = 1024
ALIGN = 16
PAYLOAD = frozenset({("Buffer", "data")})  # the bytes written in place: never structure

# TensorType code -> (TFLite name, weightkit dtype name, bits per element if packed)
TYPES: dict[int, tuple[str, str, int]] = {
    0: ("FLOAT32", "float32", 0), 1: ("FLOAT16", "float16", 0), 2: ("INT32", "int32", 0),
    3: ("UINT8", "uint8", 0), 4: ("INT64", "int64", 0), 5: ("STRING", "string", 0),
    6: ("BOOL", "bool", 0), 7: ("INT16", "int16", 0), 8: ("COMPLEX64", "complex64", 0),
    9: ("INT8", "int8", 0), 10: ("FLOAT64", "float64", 0), 11: ("COMPLEX128", "complex128", 0),
    12: ("UINT64", "uint64", 0), 15: ("UINT32", "uint32", 0), 16: ("UINT16", "uint16", 0),
    17: ("INT4", "int4", 4), 18: ("BFLOAT16", "bfloat16", 0), 19: ("INT2", "int8", 2),
    20: ("UINT4", "uint4", 4), 21: ("FLOAT8_E4M3FN", "float8_e4m3fn", 0),
    22: ("FLOAT8_E5M2", "float8_e5m2", 0),
}
TYPE_NAMES = {name: code for code, (name, _, _) in TYPES.items()}
_BY_DTYPE = {dtype: code for code, (_, dtype, bits) in TYPES.items() if code != 19}
_SIGNED_PACKED = {"INT4", "INT2"}
# dtypes TFLite has no type for: stored as their bits, tagged in the weightkit entry
_TAGGED = ("float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn")

# (operator, input position) -> (operand, stored layout, source layout, steps to the source)
_LAYOUTS: dict[tuple[str, int], tuple[str, str, str, tuple]] = {
    ("CONV_2D", 1): ("filter", "OHWI", "HWIO", (("transpose", (1, 2, 3, 0)),)),
    ("CONV_2D", 2): ("bias", "O", "O", ()),
    ("DEPTHWISE_CONV_2D", 1): ("filter", "1HW(C*M)", "HWCM", (("depthwise", None),)),
    ("DEPTHWISE_CONV_2D", 2): ("bias", "C*M", "C*M", ()),
    ("FULLY_CONNECTED", 1): ("weights", "OI", "IO", (("transpose", (1, 0)),)),
    ("FULLY_CONNECTED", 2): ("bias", "O", "O", ()),
    ("TRANSPOSE_CONV", 1): ("filter", "OHWI", "HWOI", (("transpose", (1, 2, 0, 3)),)),
    ("TRANSPOSE_CONV", 3): ("bias", "O", "O", ()),
    ("CONV_3D", 1): ("filter", "DHWIO", "DHWIO", ()),
    ("CONV_3D", 2): ("bias", "O", "O", ()),
    ("CONV_3D_TRANSPOSE", 1): ("filter", "DHWOI", "DHWOI", ()),
    ("CONV_3D_TRANSPOSE", 3): ("bias", "O", "O", ()),
    ("GATHER", 0): ("params", "VD", "VD", ()),
    ("EMBEDDING_LOOKUP", 1): ("params", "VD", "VD", ()),
    ("PRELU", 1): ("alpha", "", "", ()),
}
_LSTM_GATES = ("input", "forget", "cell", "output")  # Keras' order of the gates in a kernel
for _op in ("UNIDIRECTIONAL_SEQUENCE_LSTM", "LSTM"):
    for _g, _gate in enumerate(_LSTM_GATES):
        _LAYOUTS[_op, 1 + _g] = (f"input_to_{_gate}_weights", "UI", "IU", (("transpose", (1, 0)),))
        _LAYOUTS[_op, 5 + _g] = (f"recurrent_to_{_gate}_weights", "UU", "UU",
                                 (("transpose", (1, 0)),))
        _LAYOUTS[_op, 12 + _g] = (f"{_gate}_gate_bias", "U", "U", ())
_PASS_THROUGH = ("DEQUANTIZE", "DENSIFY")


# ---------------------------------------------------------------------------------------------
# detection

def sniff(path: str, head: bytes) -> bool:
    """A FlatBuffer with the TFLite identifier `TFL3` at bytes 4-8."""
    return len(head) >= 8 and head[4:8] == IDENTIFIER


# ---------------------------------------------------------------------------------------------
# parsing

def _schema() -> Any:
    from .tflite_schema import schema_generated
    return schema_generated


def _layout() -> Any:
    from .tflite_schema import layout
    return layout


@dataclass
class _TensorInfo:
    subgraph: int
    index: int
    raw_name: str
    shape: tuple[int, ...]
    type: int
    buffer: int
    signature: list[int] | None = None
    quant: dict | None = None
    sparsity: dict | None = None
    is_variable: bool = False
    external: int = 0


@dataclass
class _Op:
    code: str
    inputs: list[int]
    outputs: list[int]
    options: dict


@dataclass
class _Buffer:
    start: int  # file offset of the bytes
    length: int
    outside: bool  # stored after the FlatBuffer (Buffer.offset/size)


@dataclass
class _Model:
    """What weightkit needs of a verified model, as plain data."""
    size: int
    end: int  # one past the FlatBuffer structure
    unknown: list[str]
    description: str | None
    subgraph_names: list[str]
    tensors: list[list[_TensorInfo]]
    ops: list[list[_Op]]
    buffers: list[_Buffer]
    metadata: list[tuple[str, int]]
    regions: list[tuple[int, int]]  # other bytes outside the FlatBuffer (large custom options)


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", "backslashreplace")


class _Table:
    """A table of a verified buffer, its fields read by name through the generated layout
    (`tflite_schema/layout.py`), as the FlatBuffers runtime's `Table` reads them (offsets
    relative to where they are stored, vtable entries of 0 for absent fields). Reading needs
    only this: flatc's generated classes (a 600 KB module, 0.15-0.25 s to import) are imported
    for re-packs alone."""

    __slots__ = ("buf", "pos", "name", "_vt")
    _slots: dict[str, dict[str, tuple[int, str, Any]]] = {}

    def __init__(self, buf: Any, pos: int, name: str):
        self.buf, self.pos, self.name, self._vt = buf, pos, name, None

    @classmethod
    def _field(cls, table: str, field_name: str) -> tuple[int, str, Any]:
        slots = cls._slots.get(table)
        if slots is None:
            slots = cls._slots[table] = {
                f[0]: (i, f[1], f[2]) for i, f in enumerate(_layout().TABLES[table])}
        return slots[field_name]

    def _offset(self, field_name: str) -> tuple[int, Any]:
        """(the field's offset in the table or 0, the layout's argument). The vtable is read
        once per table, whole (the FlatBuffers runtime's `Table.Offset` reads it again for
        every field: ~10 reads a tensor, 100,000 tensors)."""
        fid, _, arg = self._field(self.name, field_name)
        vt = self._vt
        if vt is None:
            vtable = self.pos - _I32.unpack_from(self.buf, self.pos)[0]
            count = (_U16.unpack_from(self.buf, vtable)[0] - 4) // 2
            vt = self._vt = struct.unpack_from(f"<{max(count, 0)}H", self.buf, vtable + 4)
        return (vt[fid] if fid < len(vt) else 0), arg

    def _uoffset(self, at: int) -> int:
        """The position the unsigned offset stored at `at` points to."""
        return at + _U32.unpack_from(self.buf, at)[0]

    def scalar(self, field_name: str, fmt: str, default: int = 0) -> int:
        o, _ = self._offset(field_name)
        return _SCALARS[fmt].unpack_from(self.buf, self.pos + o)[0] if o else default

    def string(self, field_name: str) -> bytes | None:
        o, _ = self._offset(field_name)
        if not o:
            return None
        at = self._uoffset(self.pos + o)
        length = _U32.unpack_from(self.buf, at)[0]
        return bytes(self.buf[at + 4:at + 4 + length])

    def table(self, field_name: str) -> "_Table | None":
        o, arg = self._offset(field_name)
        return _Table(self.buf, self._uoffset(self.pos + o), arg) if o else None

    def vector(self, field_name: str) -> tuple[int, int]:
        """(position of the first element, count) of a vector field; (0, 0) when absent."""
        o, _ = self._offset(field_name)
        if not o:
            return 0, 0
        at = self._uoffset(self.pos + o)
        return at + 4, _U32.unpack_from(self.buf, at)[0]

    def ints(self, field_name: str, fmt: str = "i") -> list[int]:
        start, n = self.vector(field_name)
        return list(struct.unpack_from(f"<{n}{fmt}", self.buf, start)) if n else []

    def tables(self, field_name: str) -> list["_Table"]:
        start, n = self.vector(field_name)
        _, arg = self._offset(field_name)
        if not n:
            return []
        buf = self.buf
        return [_Table(buf, start + 4 * i + rel, arg)
                for i, rel in enumerate(struct.unpack_from(f"<{n}I", buf, start))]

    def union(self, field_name: str) -> tuple[int, "_Table | None"]:
        """(type code, the member table or None if absent or of an unknown type)."""
        o, (type_id, members) = self._offset(field_name)
        code = self.scalar(_layout().TABLES[self.name][type_id][0], "B")
        if not o or code not in members:
            return code, None
        return code, _Table(self.buf, self._uoffset(self.pos + o), members[code])


_SCALARS = {fmt: struct.Struct("<" + fmt) for fmt in "bBHiIqQf"}
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U16 = struct.Struct("<H")


def _index_vector(code: int, table: _Table | None) -> list[int]:
    fmt = {1: "i", 2: "H", 3: "B"}.get(code)
    return table.ints("values", fmt) if table is not None and fmt else []


def _sparsity(sp: _Table) -> dict:
    dims = []
    for dm in sp.tables("dim_metadata"):
        dims.append({
            "format": "SPARSE_CSR" if dm.scalar("format", "b") == 1 else "DENSE",
            "dense_size": dm.scalar("dense_size", "i"),
            "segments": _index_vector(*dm.union("array_segments")),
            "indices": _index_vector(*dm.union("array_indices")),
        })
    return {"traversal_order": sp.ints("traversal_order"), "block_map": sp.ints("block_map"),
            "dim_metadata": dims}


def _quantization(q: _Table | None, shape: tuple[int, ...], where: str,
                  path: str) -> dict | None:
    """A tensor's quantization parameters, checked as the TFLite interpreter checks them when it
    loads a model (LiteRT `tflite/core/interpreter_builder.cc`, `ParseQuantization`: one zero
    point per scale, `quantized_dimension` inside the shape, one scale or one per index of that
    dimension) before any list is read; a zero point must fit the int32 the interpreter keeps."""
    if q is None:
        return None
    code, detail = q.union("details")
    scales, zeros = q.vector("scale")[1], q.vector("zero_point")[1]
    axis = q.scalar("quantized_dimension", "i")
    if scales and not code:
        def bad(problem: str) -> CorruptFileError:
            return CorruptFileError(f"{where}: quantization {problem} (the TFLite interpreter "
                                    "refuses the model)", path)
        if zeros != scales:
            raise bad(f"has {zeros} zero point(s) for {scales} scale(s)")
        if shape and not 0 <= axis < len(shape):
            raise bad(f"quantized_dimension {axis} is outside shape {list(shape)}")
        if scales != 1 and (not shape or scales != shape[axis]):
            raise bad(f"has {scales} scales for "
                      + (f"dimension {axis} of size {shape[axis]}" if shape else "a scalar"))
    out: dict[str, Any] = {}
    for key, fmt in (("scale", "f"), ("zero_point", "q"), ("min", "f"), ("max", "f")):
        values = q.ints(key, fmt)
        if values:
            out[key] = [float(v) for v in values] if fmt == "f" else [int(v) for v in values]
    if any(not -(1 << 31) <= z < 1 << 31 for z in out.get("zero_point", ())):
        raise CorruptFileError(f"{where}: a quantization zero point does not fit int32 (the "
                               "TFLite interpreter would cut it)", path)
    out["quantized_dimension"] = axis
    if code:
        if detail is None:
            out["details"] = {"type": f"union type {code}"}
        elif detail.name == "CustomQuantization":
            out["details"] = {"type": detail.name, "bytes": detail.vector("custom")[1]}
        else:
            out["details"] = {"type": detail.name, "scales": detail.scalar("scales", "i"),
                              "zero_points": detail.scalar("zero_points", "i"),
                              "block_size": detail.scalar("block_size", "i")}
            if detail.name == "MultiAxisQuantization":
                out["details"]["quantized_dimensions"] = detail.ints("quantized_dimensions")
    if set(out) == {"quantized_dimension"}:
        return None
    return out


def _options(code: str, op: _Table) -> dict:
    _, table = op.union("builtin_options")
    if table is None:
        return {}
    if code == "DEPTHWISE_CONV_2D" and table.name == "DepthwiseConv2DOptions":
        return {"depth_multiplier": table.scalar("depth_multiplier", "i")}
    if code == "FULLY_CONNECTED" and table.name == "FullyConnectedOptions":
        return {"weights_format": table.scalar("weights_format", "b")}
    return {}


def parse(buf: Any, size: int, path: str) -> _Model:
    """Verify `buf` (the whole file) and read what weightkit needs of the model in it."""
    layout = _layout()
    try:
        report = verify(buf, layout.TABLES, layout.ROOT, layout.FILE_IDENTIFIER, size=size,
                        payload=PAYLOAD)
    except VerifyError as exc:
        raise CorruptFileError(f"not a valid TFLite FlatBuffer: {exc}", path) from None
    try:
        return _read_model(buf, size, report, path)
    except WeightsError:
        raise
    except (ValueError, IndexError, TypeError, KeyError, struct.error,
            OverflowError) as exc:  # pragma: no cover - the verifier checked every offset
        raise CorruptFileError(f"unreadable TFLite model ({exc})", path) from None


def _read_model(buf: Any, size: int, report: Any, path: str) -> _Model:
    model = _Table(buf, _U32.unpack_from(buf, 0)[0], "Model")
    version = model.scalar("version", "I")
    if version != 3:
        raise UnknownFormatError(f"TFLite schema version {version}; weightkit reads version 3",
                                 path)
    names = _layout().ENUMS["BuiltinOperator"]
    codes = []
    for oc in model.tables("operator_codes"):
        code = max(oc.scalar("builtin_code", "i"), oc.scalar("deprecated_builtin_code", "b"))
        codes.append(f"CUSTOM:{_text(oc.string('custom_code'))}" if code == 32
                     else names.get(code, f"BUILTIN_{code}"))
    buffers = []
    for i, b in enumerate(model.tables("buffers")):
        start, length = b.vector("data")
        offset, extent = b.scalar("offset", "Q"), b.scalar("size", "Q")
        if offset > 1:
            if length:
                raise CorruptFileError(f"buffer {i} has both data and an offset", path)
            if offset < report.end or offset + extent > size:
                raise CorruptFileError(f"buffer {i} (offset {offset}, {extent} bytes) is not "
                                       f"between the FlatBuffer's end ({report.end}) and the "
                                       f"end of the file ({size})", path)
            buffers.append(_Buffer(offset, extent, True))
        else:
            buffers.append(_Buffer(start, length, False))
    metadata = [(_text(m.string("name")), m.scalar("buffer", "I"))
                for m in model.tables("metadata")]
    subgraph_names, tensors, ops, regions = [], [], [], []
    for s, sg in enumerate(model.tables("subgraphs")):
        subgraph_names.append(_text(sg.string("name")))
        infos = []
        for j, t in enumerate(sg.tables("tensors")):
            signature = t.ints("shape_signature") if t.vector("shape_signature")[1] else None
            sparsity = t.table("sparsity")
            shape = tuple(t.ints("shape"))
            where = f"subgraph {s} tensor {j} ({_text(t.string('name'))!r})"
            infos.append(_TensorInfo(
                s, j, _text(t.string("name")), shape, t.scalar("type", "b"),
                t.scalar("buffer", "I"), signature,
                _quantization(t.table("quantization"), shape, where, path),
                None if sparsity is None else _sparsity(sparsity),
                bool(t.scalar("is_variable", "B")), t.scalar("external_buffer", "I")))
        tensors.append(infos)
        sg_ops = []
        for k, op in enumerate(sg.tables("operators")):
            index = op.scalar("opcode_index", "I")
            if index >= len(codes):
                raise CorruptFileError(f"subgraph {s} operator {k} has opcode {index} of "
                                       f"{len(codes)}", path)
            inputs, outputs = op.ints("inputs"), op.ints("outputs")
            for x in inputs + outputs:
                if not -1 <= x < len(infos):
                    raise CorruptFileError(f"subgraph {s} operator {k} names tensor {x} of "
                                           f"{len(infos)}", path)
            offset = op.scalar("large_custom_options_offset", "Q")
            extent = op.scalar("large_custom_options_size", "Q")
            if offset > 1:
                if offset < report.end or offset + extent > size:
                    raise CorruptFileError(f"subgraph {s} operator {k}: custom options outside "
                                           "the file", path)
                regions.append((offset, extent))
            sg_ops.append(_Op(codes[index], inputs, outputs, _options(codes[index], op)))
        ops.append(sg_ops)
    return _Model(size, report.end, list(report.unknown), _text(model.string("description")) or None,
                  subgraph_names, tensors, ops, buffers, metadata, regions)


# ---------------------------------------------------------------------------------------------
# the variables of a model

@dataclass
class _Var:
    """A variable: a tensor holding bytes, with its canonical name."""
    name: str
    info: _TensorInfo
    buffer: _Buffer
    consumers: list[tuple[str, int, int]] = field(default_factory=list)
    layout: dict | None = None
    shared_with: list[str] = field(default_factory=list)

    @property
    def type_name(self) -> str:
        return TYPES[self.info.type][0]


def _prefixes(model: _Model) -> list[str]:
    """The name prefix of each subgraph: "" for subgraph 0, else its name (or `subgraph<i>`)."""
    names = model.subgraph_names
    counts = {n: names.count(n) for n in names}
    return ["" if i == 0 else (f"{n}/" if n and counts[n] == 1 and n != "." else f"subgraph{i}/")
            for i, n in enumerate(names)]


def _container(model: _Model) -> bool:
    """A model without operators: a weights container."""
    return not any(model.ops)


def _holds_data(model: _Model, info: _TensorInfo) -> bool:
    if info.buffer == 0 or info.buffer >= len(model.buffers):
        return False
    if model.buffers[info.buffer].length:
        return True
    return _container(model)


def variables(model: _Model, path: str) -> list[_Var]:
    """Every variable of the model in subgraph and tensor order, named, with its consumers,
    layout and buffer siblings."""
    prefixes = _prefixes(model)
    out: list[_Var] = []
    taken: set[str] = set()
    for s, infos in enumerate(model.tensors):
        for info in infos:
            if info.buffer >= len(model.buffers):
                raise CorruptFileError(f"tensor {info.raw_name!r} refers to buffer {info.buffer} "
                                       f"of {len(model.buffers)}", path)
            if info.external:
                raise UnsafeFileError(f"tensor {info.raw_name!r} keeps its data in an external "
                                      "file (Tensor.external_buffer); weightkit reads nothing "
                                      "outside the input", path)
            if not _holds_data(model, info):
                continue
            if info.type not in TYPES:
                raise UnknownFormatError(f"tensor {info.raw_name!r} has TFLite type "
                                         f"{info.type}, which weightkit cannot read", path)
            if any(d < 0 for d in info.shape):
                raise CorruptFileError(f"constant tensor {info.raw_name!r} has shape "
                                       f"{list(info.shape)}", path)
            check_shape(info.shape, f"constant tensor {info.raw_name!r}", path,
                        dtype_from_name(TYPES[info.type][1]).itemsize
                        if TYPES[info.type][1] != "string" else 8)
            base = prefixes[s] + (info.raw_name or f"tensor{info.index}")
            name = base
            if name in taken:
                name = f"{base}#{info.index}"
                k = 1
                while name in taken:
                    name, k = f"{base}#{info.index}.{k}", k + 1
            taken.add(name)
            out.append(_Var(name, info, model.buffers[info.buffer]))
    _check_regions(model, out, path)
    _link(model, out)
    return out


def _check_regions(model: _Model, variables_: list[_Var], path: str) -> None:
    """Buffers must not partly overlap one another (identical ranges are one buffer shared)."""
    spans = sorted({(v.buffer.start, v.buffer.length) for v in variables_ if v.buffer.length}
                   | {r for r in model.regions if r[1]})
    for (a, na), (b, nb) in zip(spans, spans[1:]):
        if b < a + na:
            raise CorruptFileError(f"buffer bytes {a}..{a + na} and {b}..{b + nb} overlap", path)


def _link(model: _Model, vars_: list[_Var]) -> None:
    """Consumers, layouts and buffer siblings of each variable."""
    by_buffer: dict[int, list[_Var]] = {}
    for v in vars_:
        by_buffer.setdefault(v.info.buffer, []).append(v)
    by_position = {(v.info.subgraph, v.info.index): v for v in vars_}
    for s, ops in enumerate(model.ops):
        readers: dict[int, list[tuple[int, int]]] = {}
        for k, op in enumerate(ops):
            for p, t in enumerate(op.inputs):
                if t >= 0:
                    readers.setdefault(t, []).append((k, p))
        for (sg, t), v in by_position.items():
            if sg != s:
                continue
            for k, p in readers.get(t, []):
                v.consumers.append((ops[k].code, k, p))
            v.layout = _layout_of(model, s, t, readers, ops)
    for group in by_buffer.values():
        if len(group) > 1:
            for v in group:
                v.shared_with = [w.name for w in group if w is not v]


def _layout_of(model: _Model, s: int, t: int, readers: dict, ops: list[_Op]) -> dict | None:
    """The layout a weight operand has for the operator that finally reads it."""
    seen = 0
    while seen < 4:  # DEQUANTIZE -> DENSIFY -> op at most
        seen += 1
        uses = readers.get(t, [])
        if len(uses) != 1:
            uses = [u for u in uses if ops[u[0]].code not in _PASS_THROUGH] or uses[:1]
            if not uses:
                return None
        k, p = uses[0]
        op = ops[k]
        if op.code in _PASS_THROUGH and op.outputs:
            t = op.outputs[0]
            continue
        spec = _LAYOUTS.get((op.code, p))
        if spec is None:
            return None
        operand, stored, source, steps = spec
        if op.code == "FULLY_CONNECTED" and op.options.get("weights_format", 0) and p == 1:
            return {"op": op.code, "operand": operand, "stored": "SHUFFLED4x16INT8",
                    "source": None, "to_source": None, "operator": [s, k]}
        to_source = []
        for step, arg in steps:
            if step == "depthwise":
                arg = _depthwise_shape(model, s, op, t)
                if arg is None:
                    to_source = None
                    break
                step = "reshape"
            to_source.append([step, list(arg)])
        axes = stored.replace("(C*M)", "X").replace("C*M", "X")  # one axis each
        if stored and len(model.tensors[s][t].shape) != len(axes):
            return None  # not the operand's rank: no layout to undo (a crafted model)
        out = {"op": op.code, "operand": operand, "stored": stored, "source": source,
               "to_source": to_source, "operator": [s, k]}
        if op.code in ("UNIDIRECTIONAL_SEQUENCE_LSTM", "LSTM") and "_" in operand:
            gate = next((g for g, name in enumerate(_LSTM_GATES)
                         if f"_{name}_" in f"_{operand}_"), None)
            out["gate"] = [gate, len(_LSTM_GATES)]
        return out
    return None


def _depthwise_shape(model: _Model, s: int, op: _Op, t: int) -> tuple[int, ...] | None:
    """[1, kh, kw, C*M] -> (kh, kw, C, M), with C the input's channels (or the multiplier)."""
    shape = model.tensors[s][t].shape
    if len(shape) != 4 or shape[0] != 1:
        return None
    cm = shape[3]
    channels = None
    if op.inputs and op.inputs[0] >= 0:
        inp = model.tensors[s][op.inputs[0]].shape
        if inp and inp[-1] > 0:
            channels = inp[-1]
    if channels is None and op.options.get("depth_multiplier", 0) > 0:
        channels = cm // op.options["depth_multiplier"]
    if not channels or cm % channels:
        return None
    return (shape[1], shape[2], channels, cm // channels)


# ---------------------------------------------------------------------------------------------
# values

def _packed_count(elements: int, bits: int) -> int:
    per = 8 // bits
    return -(-elements // per)


def unpack_bits(raw: np.ndarray, bits: int, signed: bool, start: int, count: int) -> np.ndarray:
    """Elements [start, start + count) of a packed low-bit buffer (`raw`: uint8, beginning at
    the byte holding element `start`), lowest bits first, sign-extended if `signed`: int8."""
    per = 8 // bits
    first = start % per
    shifts = np.arange(per, dtype=np.uint8) * bits
    values = ((raw[:, None] >> shifts) & ((1 << bits) - 1)).reshape(-1)[first:first + count]
    values = values.astype(np.int8)
    if signed:
        values = (values << (8 - bits)).astype(np.int8) >> (8 - bits)
    return values


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """The inverse of `unpack_bits` for a whole tensor: uint8 bytes, odd counts zero-padded."""
    per = 8 // bits
    flat = np.asarray(values).reshape(-1).astype(np.int16) & ((1 << bits) - 1)
    padded = np.zeros(_packed_count(flat.size, bits) * per, np.uint8)
    padded[:flat.size] = flat
    shifts = np.arange(per, dtype=np.uint8) * bits
    return np.bitwise_or.reduce(padded.reshape(-1, per) << shifts, axis=1).astype(np.uint8)


def parse_strings(raw: bytes, count: int | None, where: str, path: str) -> np.ndarray:
    """A TFLite string buffer (int32 count, count + 1 int32 offsets, bytes) as bytes objects."""
    n = len(raw)
    if n < 4:
        raise CorruptFileError(f"{where}: string buffer of {n} bytes", path)
    (num,) = struct.unpack_from("<i", raw, 0)
    if num < 0 or 4 * (num + 2) > n or (count is not None and num != count):
        raise CorruptFileError(f"{where}: string buffer declares {num} strings"
                               + ("" if count is None else f", the shape holds {count}"), path)
    offsets = np.frombuffer(raw, "<i4", num + 1, 4).astype(np.int64)
    if (offsets[0] < 4 * (num + 2) or np.any(np.diff(offsets) < 0) or offsets[-1] > n):
        raise CorruptFileError(f"{where}: string offsets outside the buffer", path)
    out = np.empty(num, dtype=object)
    for i in range(num):
        out[i] = bytes(raw[offsets[i]:offsets[i + 1]])
    return out


def encode_strings(values: np.ndarray) -> bytes:
    items = [v if isinstance(v, bytes) else str(v).encode("utf-8")
             for v in np.asarray(values, dtype=object).reshape(-1)]
    header = 4 * (len(items) + 2)
    offsets = np.cumsum([header] + [len(b) for b in items], dtype=np.int64)
    if offsets[-1] >= 1 << 31:
        raise UsageError("a string tensor of 2 GiB or more does not fit TFLite's int32 offsets")
    return (struct.pack("<i", len(items)) + offsets.astype("<i4").tobytes() + b"".join(items))


def sparse_positions(shape: tuple[int, ...], sparsity: dict, values: int, where: str,
                     path: str) -> np.ndarray:
    """The flat index in the dense tensor of each stored value, in stored order, as TFLite's
    FormatConverter::Populate visits them (vectorized level by level)."""
    order = list(sparsity.get("traversal_order") or [])
    block_map = list(sparsity.get("block_map") or [])
    dims = list(sparsity.get("dim_metadata") or [])
    rank = len(shape)

    def bad(message: str) -> CorruptFileError:
        return CorruptFileError(f"{where}: sparsity {message}", path)

    if len(order) != len(dims) or len(order) != rank + len(block_map) or \
            sorted(order) != list(range(len(order))) or \
            any(not 0 <= b < rank for b in block_map):
        raise bad("parameters are inconsistent with the shape")
    dense_size = [int(d.get("dense_size", 0)) for d in dims]
    block_size = []
    for b in range(len(block_map)):
        size = dense_size[order[rank + b]]
        if size <= 0 or shape[block_map[b]] % size:
            raise bad("block size does not divide the shape")
        block_size.append(size)
    total = math.prod(shape)
    prev = np.zeros(1, np.int64)
    coords: list[np.ndarray] = []
    for level, dm in enumerate(dims):
        if dm.get("format") == "DENSE":
            s = dense_size[level]
            if s < 0 or prev.size * max(s, 1) > max(total, 1) * 4:
                raise bad("dense dimension sizes exceed the shape")
            coords = [np.repeat(c, s) for c in coords]
            coords.append(np.tile(np.arange(s, dtype=np.int64), prev.size))
            prev = (prev[:, None] * s + np.arange(s, dtype=np.int64)).reshape(-1)
        else:
            seg = np.asarray(dm.get("segments") or [], np.int64)
            idx = np.asarray(dm.get("indices") or [], np.int64)
            if prev.size and (prev.max() + 1 >= seg.size):
                raise bad("segments are too short")
            lo, hi = seg[prev], seg[prev + 1]
            counts = hi - lo
            if np.any(counts < 0) or np.any(hi > idx.size):
                raise bad("segments are not increasing or run past the indices")
            n = int(counts.sum())
            if n > max(total, 1):
                raise bad("holds more entries than the dense tensor")
            starts = np.repeat(lo - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
            child = starts + np.arange(n, dtype=np.int64)
            coords = [np.repeat(c, counts) for c in coords]
            coords.append(idx[child])
            prev = child
    if prev.size != values:
        raise bad(f"visits {prev.size} values, the buffer holds {values}")
    orig = [None] * rank
    for level in range(rank):
        orig[order[level]] = coords[level]
    for level in range(rank, len(order)):
        b = order[level] - rank
        d = block_map[b]
        orig[d] = orig[d] * block_size[b] + coords[level]
    flat = np.zeros(values, np.int64)
    for d in range(rank):
        c = orig[d] if orig[d] is not None else np.zeros(values, np.int64)
        if values and (c.min() < 0 or c.max() >= shape[d]):
            raise bad("indices fall outside the shape")
        flat = flat * shape[d] + c
    return flat


class _File:
    """The open model file: ranges read as arrays (`MappedFile`; a URL is fetched once)."""

    def __init__(self, path: str):
        self.source = seam.open_source(path)
        try:
            self.data = self.source.mapped()
        except BaseException:
            self.source.close()
            raise
        self.path = path

    def close(self) -> None:
        self.source.close()


def _expected_bytes(var: _Var, path: str) -> None:
    """Refuse a buffer whose length does not fit the tensor's shape and type."""
    info = var.info
    _, kind, bits = TYPES[info.type]
    count = math.prod(info.shape)
    have = var.buffer.length
    where = f"tensor {var.name!r}"
    if info.sparsity is not None:
        if kind == "string" or bits:
            raise UnknownFormatError(f"{where}: sparse {TYPES[info.type][0]} tensors are not "
                                     "supported", path)
        itemsize = dtype_from_name(kind).itemsize
        if have % itemsize:
            raise CorruptFileError(f"{where}: sparse buffer of {have} bytes is not a whole "
                                   f"number of {TYPES[info.type][0]} values", path)
        if count * itemsize > BOMB_RATIO * have + (1 << 20):
            raise UnsafeFileError(f"{where}: {have} stored bytes would densify to shape "
                                  f"{list(info.shape)} ({count * itemsize} bytes)", path)
        return
    if kind == "string":
        return
    need = _packed_count(count, bits) if bits else count * dtype_from_name(kind).itemsize
    if need != have:
        raise CorruptFileError(f"{where}: shape {list(info.shape)} of {TYPES[info.type][0]} "
                               f"needs {need} bytes, buffer {info.buffer} holds {have}", path)


def _getter(f: _File, var: _Var, tag: np.dtype | None) -> tuple[np.dtype, Callable[[Index], Any]]:
    """The dtype and `get(index)` of a variable's values."""
    info, buf = var.info, var.buffer
    tname, kind, bits = TYPES[info.type]
    shape = info.shape
    path = f.path
    where = f"tensor {var.name!r}"
    if kind == "string":
        count = math.prod(shape)

        def strings(index: Index) -> np.ndarray:
            raw = f.data.pread(buf.start, buf.length)
            return parse_strings(raw, count, where, path).reshape(shape)[index]
        return STRING, strings
    dtype = dtype_from_name(kind)
    if info.sparsity is not None:
        sparsity = info.sparsity
        n = buf.length // dtype.itemsize
        found: list[np.ndarray] = []  # the values' dense positions, computed on first read

        def dense(index: Index) -> np.ndarray:
            # Only the rows asked for are made dense (a chunk at a time: a sparse tensor may be
            # 1024 times larger dense than stored), from positions computed once.
            if not found:
                found.append(sparse_positions(shape, sparsity, n, where, path))
            positions = found[0]
            run = rows(index, shape) or (0, shape[0] if shape else 1, index)
            r0, r1, local = run
            row = math.prod(shape[1:])
            lo, hi = (r0 * row, r1 * row) if shape else (0, 1)
            pick = np.flatnonzero((positions >= lo) & (positions < hi))
            out = np.zeros(hi - lo, dtype)
            out[positions[pick] - lo] = f.data.array(buf.start, dtype, (n,))[pick]
            return out.reshape((r1 - r0, *shape[1:]) if shape else ())[local]
        return dtype, dense
    if bits:
        signed = tname in _SIGNED_PACKED
        row = math.prod(shape[1:])

        def packed(index: Index) -> np.ndarray:
            run = rows(index, shape) or (0, shape[0] if shape else 1, index)
            r0, r1, local = run
            e0, count = r0 * row if shape else 0, (r1 - r0) * row if shape else 1
            per = 8 // bits
            b0, b1 = e0 // per, (e0 + count + per - 1) // per
            raw = f.data.array(buf.start + b0, np.dtype(np.uint8), (b1 - b0,))
            values = unpack_bits(raw, bits, signed, e0, count).astype(dtype)
            sub = (r1 - r0, *shape[1:]) if shape else ()
            return values.reshape(sub)[local if shape else index]
        return dtype, packed
    if tag is None:
        return dtype, Extent(f.data, buf.start, dtype, shape)
    stored = tag if tag is not None else dtype
    read_as = np.dtype(np.uint8) if tag is not None else dtype
    row_bytes = read_as.itemsize * math.prod(shape[1:])

    def plain(index: Index) -> np.ndarray:
        run = rows(index, shape)
        if run is None:
            array = f.data.array(buf.start, read_as, shape)
            return array.view(stored)[index] if tag is not None else array[index]
        r0, r1, local = run
        array = f.data.array(buf.start + r0 * row_bytes, read_as, (r1 - r0, *shape[1:]))
        return (array.view(stored) if tag is not None else array)[local]
    return stored, plain


def _quant_meta(var: _Var, names: dict[tuple[int, int], str]) -> tuple[dict | None, dict | None]:
    """(neutral `quantization` meta, the rest of TFLite's parameters) of a variable."""
    q = var.info.quant
    kind = TYPES[var.info.type][1]
    neutral = None
    if var.info.type == 1 and any(c[0] == "DEQUANTIZE" for c in var.consumers):
        neutral = {"scheme": "cast", "dtype": "float32"}
    if q is None:
        return neutral, None
    rest = {k: q[k] for k in ("min", "max", "details") if k in q}
    details = q.get("details")
    if details and details.get("type") in ("BlockwiseQuantization", "MultiAxisQuantization"):
        s = var.info.subgraph
        neutral = {"scheme": "blockwise" if details["type"] == "BlockwiseQuantization"
                   else "multi_axis",
                   "scales": names.get((s, details["scales"])),
                   "zero_points": names.get((s, details["zero_points"])),
                   "block_size": details["block_size"]}
    elif "scale" in q and kind not in ("string", "bool") and not kind.startswith(("float", "bf")):
        scale = q["scale"]
        zero = q.get("zero_point") or [0] * len(scale)
        axis = q.get("quantized_dimension", 0) if len(scale) > 1 else None
        neutral = {"scheme": "affine", "scale": scale, "zero_point": zero, "axis": axis}
    return neutral, rest or None


def _tensor_meta(var: _Var, names: dict[tuple[int, int], str]) -> dict:
    info = var.info
    ns: dict[str, Any] = {"name": var.name, "subgraph": info.subgraph, "tensor": info.index,
                          "buffer": info.buffer, "type": var.type_name}
    if info.signature is not None and tuple(info.signature) != info.shape:
        ns["shape_signature"] = info.signature
    if info.is_variable:
        ns["is_variable"] = True
    if var.buffer.outside:
        ns["outside"] = True
    if info.sparsity is not None:
        ns["sparsity"] = info.sparsity
    if var.consumers:
        ns["consumers"] = [list(c) for c in var.consumers]
    if var.shared_with:
        ns["shared_with"] = var.shared_with
    neutral, rest = _quant_meta(var, names)
    if rest:
        ns["quantization"] = rest
    meta: dict[str, Any] = {"key": info.raw_name, "role": "weight", NAMESPACE: ns}
    if neutral is not None:
        meta["quantization"] = neutral
    if var.layout is not None:
        meta["layout"] = var.layout
    return meta


# ---------------------------------------------------------------------------------------------
# reading

def _map_file(path: str) -> tuple[Any, Any, int]:
    """(the open file, a map of all of it, its size): the verifier walks the whole FlatBuffer,
    so a URL is fetched once (in merged concurrent requests) and mapped locally."""
    fh = seam.open_source(path)
    try:
        data = fh.mapped()
        if data.size < 8:
            raise CorruptFileError(f"{data.size} bytes is too short for a TFLite model", path)
        return fh, data.whole(), data.size
    except BaseException:
        fh.close()
        raise


def _cuts(vars_: list[_Var]) -> list[list[int]]:
    """The byte ranges of the variables' buffers, sorted, each once."""
    return [list(r) for r in sorted({(v.buffer.start, v.buffer.length) for v in vars_
                                     if v.buffer.length})]


def skeleton_of(raw: Any, size: int, cuts: list[list[int]]) -> bytes:
    """The file without the cut ranges."""
    pieces, at = [], 0
    for start, length in cuts:
        pieces.append(bytes(raw[at:start]))
        at = start + length
    pieces.append(bytes(raw[at:size]))
    return b"".join(pieces)


def _carried_entry(model: _Model, raw: Any, path: str) -> dict | None:
    """The JSON of the `weightkit` metadata entry, if the model has one."""
    for name, index in model.metadata:
        if name == CARRY_ENTRY:
            if index >= len(model.buffers) or model.buffers[index].outside:
                raise CorruptFileError(f"metadata {CARRY_ENTRY!r} has no buffer", path)
            b = model.buffers[index]
            return carry.parse_json(bytes(raw[b.start:b.start + b.length]), path,
                                    f"metadata {CARRY_ENTRY!r}")
    return None


def read(path: str) -> Store:
    """Open a `.tflite` model lazily: the model is verified and parsed, values are read (by
    memory-mapped ranges) only when asked for."""
    path = os.fspath(path)
    seam.check_input(path)
    fh, mm, size = _map_file(path)
    try:
        model = parse(mm, size, path)
        vars_ = variables(model, path)
        doc = _carried_entry(model, mm, path)
        container = _container(model)
        cuts = _cuts(vars_)
        kept = size - sum(n for _, n in cuts)
        skeleton = skeleton_of(mm, size, cuts) if kept <= SKELETON_LIMIT and not container \
            else None
        digest = hashlib.sha256(skeleton).hexdigest() if skeleton is not None else None
    finally:
        mm.close()
        fh.close()
    for var in vars_:
        _expected_bytes(var, path)
    names = {(v.info.subgraph, v.info.index): v.name for v in vars_}
    carried = carry.Carry(doc, [v.name for v in vars_], path)
    f = _File(path)
    tensors: dict[str, Tensor] = {}
    try:
        for var in vars_:
            encoding = carried.encoding(var.name, var.info.shape)
            tag = None
            if encoding is not None:
                if dtype_name(encoding["dtype"]) not in _TAGGED or var.info.type != 3 \
                        or encoding["shape"] != var.info.shape:
                    raise CorruptFileError(f"metadata {CARRY_ENTRY!r} does not match tensor "
                                           f"{var.name!r}", path)
                tag = encoding["dtype"]
            dtype, get = _getter(f, var, tag)
            ours = _tensor_meta(var, names)
            derived = (NAMESPACE,) if container else (NAMESPACE, "layout")  # (from operators)
            theirs = {k: v for k, v in carried.tensor_meta(var.name).items()
                      if k not in derived and not (k == "quantization" and k in ours)}
            if container:  # what the weightkit entry carries, as it was (see below)
                meta = {**theirs, NAMESPACE: ours[NAMESPACE]}
            else:
                meta = {**ours, **theirs}
            tensors[var.name] = Tensor(var.info.shape, dtype, get, meta)
    except BaseException:
        f.close()
        raise
    ns = {"description": model.description, "subgraphs": model.subgraph_names,
          "metadata": [n for n, _ in model.metadata],
          "outside": any(b.outside for b in model.buffers),
          "size": size, "cuts": cuts,
          "skeleton": None if skeleton is None else base64.b64encode(skeleton).decode("ascii"),
          "skeleton_sha256": digest}
    order = [n for n in carried.order if n in tensors]
    # A weights container (no operators) holds nothing but the store it was written from: its
    # store is that store again (no model in Store.meta, so no other format "loses" one), and
    # writing it as .tflite makes the same container (the same bytes).
    store_meta = carried.store_meta({} if container else {NAMESPACE: ns})
    return Store({n: tensors[n] for n in order}, format=NAME, meta=store_meta, path=path,
                 on_close=f.close)


# ---------------------------------------------------------------------------------------------
# writing: what a write needs to know of the model it writes into

@dataclass
class _Template:
    """The model a write goes into, and where its bytes come from."""
    buf: Any  # the whole file (cut ranges zero-filled when rebuilt from the skeleton)
    size: int
    model: _Model
    vars: list[_Var]
    cuts: list[tuple[int, int]]
    skeleton: bytes | None  # the file without the cuts, or None: read `source` instead
    source: str | None
    close: Callable[[], None] = lambda: None


def _template_meta(store: Store, what: str) -> dict:
    ns = store.meta.get(NAMESPACE)
    if not isinstance(ns, dict):
        raise UsageError(f"{what} has no TFLite model; give --like MODEL.tflite")
    return ns


def _open_template(store: Store, what: str) -> _Template:
    """The model `store` was read from, rebuilt from its carried skeleton or its source file."""
    ns = _template_meta(store, what)
    where = store.path or what
    size, cuts = ns.get("size"), ns.get("cuts")
    if not (type(size) is int and size >= 8 and isinstance(cuts, list) and all(
            isinstance(c, list) and len(c) == 2 and all(type(x) is int and x >= 0 for x in c)
            for c in cuts)):
        raise CorruptFileError(f"{NAMESPACE} metadata: malformed size or cuts", where)
    spans = [tuple(c) for c in cuts]
    if spans != sorted(spans) or any(a + n > b for (a, n), (b, _) in zip(spans, spans[1:])) \
            or (spans and spans[-1][0] + spans[-1][1] > size):
        raise CorruptFileError(f"{NAMESPACE} metadata: cuts overlap or leave the file", where)
    kept = size - sum(n for _, n in spans)
    encoded = ns.get("skeleton")
    if encoded is not None:
        if not isinstance(encoded, str):
            raise CorruptFileError(f"{NAMESPACE} metadata: skeleton is not text", where)
        try:
            skeleton = base64.b64decode(encoded.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise CorruptFileError(f"{NAMESPACE} metadata: skeleton is not base64", where) from None
        if len(skeleton) != kept:
            raise CorruptFileError(f"{NAMESPACE} metadata: skeleton of {len(skeleton)} bytes, "
                                   f"the cuts leave {kept}", where)
        buf = bytearray(size)
        at = pos = 0
        for start, length in spans:
            buf[pos:start] = skeleton[at:at + start - pos]
            at += start - pos
            pos = start + length
        buf[pos:size] = skeleton[at:]
        model = parse(buf, size, where)
        return _Template(buf, size, model, variables(model, where), spans, skeleton, None)
    source = store.path if store.format == NAME else None
    if not source or not seam.isfile(source):
        raise UsageError("the TFLite model was too large to carry in metadata: give --like "
                         "MODEL.tflite", where)
    fh, mm, real = _map_file(source)
    try:
        if real != size:
            raise UsageError("the source .tflite changed since it was read", source)
        model = parse(mm, size, source)
        template = _Template(mm, size, model, variables(model, source), spans, None, source)
    except BaseException:
        mm.close()
        fh.close()
        raise

    def close() -> None:
        mm.close()
        fh.close()
    template.close = close
    return template


def _type_dtype(var: _Var) -> np.dtype:
    return dtype_from_name(TYPES[var.info.type][1])


def _uses(var: _Var) -> str:
    if not var.consumers:
        return "a tensor of the model"
    op, k, p = var.consumers[0]
    return f"input {p} of {op} (operator {k} of subgraph {var.info.subgraph})"


def _raw_name(var: _Var, name: str, prefixes: list[str]) -> str:
    """The tensor name to store for canonical name `name` (the subgraph prefix removed)."""
    prefix = prefixes[var.info.subgraph]
    return name[len(prefix):] if prefix and name.startswith(prefix) else name


@dataclass
class _Assigned:
    var: _Var  # the template's variable
    name: str  # its name in the store
    tensor: Tensor
    dtype: np.dtype  # the dtype the template stores it as (a tag for bits kept in UINT8)
    encoded: bytes | None = None  # computed bytes (strings, packed, sparse); None: stream chunks


@dataclass
class Detail:
    """The format's own plan, handed to `write`."""
    mode: str  # "inplace", "rebuild" or "bare"
    store: Store
    like: Store | None
    reasons: list[str] = field(default_factory=list)  # why a rebuild
    assigned: list[_Assigned] = field(default_factory=list)
    groups: list[list[list[_Assigned]]] = field(default_factory=list)  # per cut: contents
    renames: dict[tuple[int, int], str] = field(default_factory=dict)
    kept: tuple[str, ...] = ()  # store metadata namespaces the model's weightkit entry holds


def _encode(a: _Assigned, where: str) -> int:
    """Compute the stored bytes of a variable that needs them whole; its byte length."""
    var, tensor = a.var, a.tensor
    tname, kind, bits = TYPES[var.info.type]
    if kind == "string":
        a.encoded = encode_strings(tensor.read())
    elif bits:
        try:
            a.encoded = _packed(tensor, var.info.type, a.name)
        except UsageError as exc:
            raise UsageError(exc.message, where) from None
    elif var.info.sparsity is not None:
        a.encoded = _encode_sparse(a, where)
    else:
        return tensor.nbytes
    return len(a.encoded)


def _encode_sparse(a: _Assigned, where: str) -> bytes:
    """The stored values of a sparse tensor in its model's sparsity structure, read from the
    dense tensor a block of rows at a time (never the whole dense tensor at once)."""
    var, tensor = a.var, a.tensor
    dtype = _type_dtype(var)
    shape = var.info.shape
    n = var.buffer.length // dtype.itemsize
    positions = sparse_positions(shape, var.info.sparsity, n, f"tensor {a.name!r}", where)
    values = np.zeros(n, dtype)
    row = math.prod(shape[1:])
    step = max(1, (16 << 20) // max(row * dtype.itemsize, 1)) if shape else 1
    for r0 in range(0, shape[0] if shape else 1, step):
        r1 = min(r0 + step, shape[0]) if shape else 1
        block = np.ascontiguousarray(tensor[r0:r1] if shape else tensor[()],
                                     dtype=dtype).reshape(-1)
        lo = r0 * row if shape else 0
        pick = np.flatnonzero((positions >= lo) & (positions < lo + block.size))
        inside = np.zeros(block.size, bool)
        inside[positions[pick] - lo] = True
        if np.any(block[~inside] != 0):
            raise UsageError(f"{a.name!r} is stored sparse: its nonzero values must stay where "
                             "the model's sparsity structure has entries", where)
        values[pick] = block[positions[pick] - lo]
    return values.tobytes()


def _chunks(a: _Assigned) -> Iterator[memoryview]:
    if a.encoded is not None:
        yield memoryview(a.encoded)
        return
    for chunk in a.tensor.iter_chunks():
        yield _bytes_of(np.asarray(chunk, dtype=a.dtype))


def _bytes_of(array: np.ndarray) -> memoryview:
    """The bytes of an array, C order (ml_dtypes types have no buffer format of their own)."""
    return memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def _digest(a: _Assigned) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for piece in _chunks(a):
        h.update(piece)
    return h.digest()


def _plan_template(store: Store, like: Store | None, where: str) -> Detail:
    """The write of `store` into its own model (or `like`'s); raises what it refuses."""
    template = _open_template(like if like is not None else store,
                              "the template" if like is not None else "the store")
    try:
        return _assign(store, like, template, where)
    finally:
        template.close()


def _assign(store: Store, like: Store | None, template: _Template, where: str) -> Detail:
    model = template.model
    doc = _carried_entry(model, template.buf, where)
    carried = carry.Carry(doc, [v.name for v in template.vars], where)
    tags = {v.name: carried.encoding(v.name, v.info.shape) for v in template.vars}
    if _container(model) and like is None:
        skip = (NAMESPACE, carry.SOURCE_FORMAT)
        mine = {k: v for k, v in store.meta.items() if k not in skip}
        theirs = {k: v for k, v in carried.store_meta({}).items() if k not in skip}
        if mine != theirs or list(store) != list(carried.order):
            return Detail("bare", store, like, ["the store's metadata or order changed"])
    by_position = {(v.info.subgraph, v.info.index): v for v in template.vars}
    by_name = {v.name: v for v in template.vars}
    prefixes = _prefixes(model)
    detail = Detail("inplace", store, like)
    held = carried.store_meta({})
    detail.kept = tuple(k for k, v in store.meta.items() if k in held and held[k] == v)
    taken: dict[tuple[int, int], str] = {}
    for name, tensor in store.items():
        var = None
        ns = tensor.meta.get(NAMESPACE)
        if like is None and isinstance(ns, dict):
            var = by_position.get((ns.get("subgraph"), ns.get("tensor")))
        if like is not None or var is None:
            var = by_name.get(name) if var is None else var
        if var is None:
            if _container(model):
                return Detail("bare", store, like, ["variables added to a weights container"])
            close = ", ".join(sorted(by_name)[:5])
            raise UsageError(f"{name!r} is not a tensor of the TFLite model (a .tflite holds "
                             f"only its graph's tensors; the model has e.g. {close})", where)
        key = (var.info.subgraph, var.info.index)
        if key in taken:
            raise UsageError(f"{taken[key]!r} and {name!r} both claim tensor {var.name!r}", where)
        taken[key] = name
        tag = tags.get(var.name)
        detail.assigned.append(_Assigned(var, name, tensor,
                                         tag["dtype"] if tag else _type_dtype(var)))
    missing = [v for v in template.vars if (v.info.subgraph, v.info.index) not in taken]
    if missing and _container(model):
        return Detail("bare", store, like, ["variables dropped from a weights container"])
    if missing:
        v = missing[0]
        raise UsageError(f"the model needs {v.name!r} ({_uses(v)}); a .tflite keeps every "
                         f"tensor of its graph (dropped: {len(missing)})", where)
    for a in detail.assigned:
        var, tensor = a.var, a.tensor
        want = a.dtype
        if (tensor.dtype != want or tensor.shape != var.info.shape):
            if _container(model):
                return Detail("bare", store, like, ["a dtype or shape changed"])
            have = f"{dtype_name(tensor.dtype)} {list(tensor.shape)}"
            quantized = " quantized" if var.info.quant and "scale" in var.info.quant else ""
            raise UsageError(
                f"{a.name!r} is{quantized} {var.type_name} {list(var.info.shape)} in the model "
                f"({_uses(var)}); writing {have} would need another model (reconvert it)", where)
        if a.name != var.name:
            detail.renames[(var.info.subgraph, var.info.index)] = _raw_name(var, a.name, prefixes)
            detail.reasons.append(f"{var.name!r} renamed to {a.name!r}")
    _group(detail, template, where)
    if detail.reasons:
        detail.mode = "rebuild"
        _check_rebuild(template, where)
    return detail


def _group(detail: Detail, template: _Template, where: str) -> None:
    """Per cut, the distinct contents of the variables sharing it (first: the one that keeps
    the buffer); a cut whose variables now differ is un-shared."""
    by_cut: dict[tuple[int, int], list[_Assigned]] = {}
    for a in detail.assigned:
        length = _encode(a, where)
        if a.var.buffer.length and length != a.var.buffer.length:
            detail.reasons.append(f"{a.name!r} takes {length} bytes instead of "
                                  f"{a.var.buffer.length}")
        by_cut.setdefault((a.var.buffer.start, a.var.buffer.length), []).append(a)
    pinned = {b for _, b in template.model.metadata}
    for cut, members in by_cut.items():
        buffers = {a.var.info.buffer for a in members}
        if len(members) == 1 and not buffers & pinned:
            detail.groups.append([members])
            continue
        contents: dict[bytes, list[_Assigned]] = {}
        for a in members:
            contents.setdefault(_digest(a), []).append(a)
        if buffers & pinned:
            original = hashlib.blake2b(bytes(template.buf[cut[0]:cut[0] + cut[1]]),
                                       digest_size=16).digest()
            contents.setdefault(original, [])
        groups = sorted(contents.values(), key=lambda g: -len(g))
        detail.groups.append(groups)
        if len(groups) > 1:
            names = ", ".join(repr(a.name) for g in groups[1:] for a in g)
            detail.reasons.append(f"buffer {min(buffers)} is shared and {names} now differ: "
                                  "un-shared")


def _check_rebuild(template: _Template, where: str) -> None:
    if template.model.unknown:
        lost = ", ".join(template.model.unknown[:5])
        raise UsageError("this change needs the model re-packed, and the model has fields "
                         f"weightkit's TFLite schema ({_schema_commit()[:12]}) does not know "
                         f"({lost}); a re-pack would drop them", where)


def _schema_commit() -> str:
    from .tflite_schema.regenerate import COMMIT
    return COMMIT


def plan(store: Store, like: Store | None = None) -> WritePlan:
    """How `store` would be written as a .tflite (see the module docstring): into its own
    model (or `like`'s) in place or re-packed, or as a weights container."""
    where = None  # the registry names the destination in a refusal
    result = WritePlan(store, like)
    try:
        if like is not None:
            _template_meta(like, "the --like template")
            detail = _plan_template(store, like, where)
        elif isinstance(store.meta.get(NAMESPACE), dict):
            detail = _plan_template(store, None, where)
        else:
            detail = Detail("bare", store, None)
        if detail.mode == "bare":
            for name, tensor in store.items():  # what the write could still refuse
                code, _ = _bare_type(tensor)
                if TYPES[code][0] == "INT2":
                    _packed(tensor, code, name)
    except WeightsError as exc:
        result.refusal = exc
        return result
    if detail.mode == "bare":  # the weightkit entry carries every metadata namespace
        result.losses = carry.json_losses(store)
        result.notes.append("a weights container: a constant tensor per variable and no "
                            "operators; the TFLite interpreter loads it, but it computes nothing "
                            "(a runnable model comes from tf.lite.TFLiteConverter)")
    else:
        result.losses = structure_losses(store, (NAMESPACE, *detail.kept), like)
    result.detail = detail
    return result


def write(plan: WritePlan, path: str) -> None:
    """Carry out a plan (see `plan`), atomically."""
    path = os.fspath(path)
    detail = plan.detail
    if detail.mode == "bare":
        _write_bare(detail.store, path)
        return
    template = _open_template(detail.like if detail.like is not None else detail.store,
                              "the template")
    try:
        if detail.mode == "inplace":
            _write_inplace(template, detail, path)
        else:
            _write_rebuilt(template, detail, path)
    finally:
        template.close()


# ---------------------------------------------------------------------------------------------
# writing: in place

def _template_pieces(template: _Template) -> Iterator[tuple[int, Any]]:
    """(cut index or -1, bytes) of the file in order: kept bytes, then each cut's slot."""
    pos = at = 0
    for i, (start, length) in enumerate(template.cuts):
        if template.skeleton is not None:
            yield -1, memoryview(template.skeleton)[at:at + start - pos]
        else:
            yield -1, memoryview(template.buf)[pos:start]
        at += start - pos
        pos = start + length
        yield i, None
    if template.skeleton is not None:
        yield -1, memoryview(template.skeleton)[at:]
    else:
        yield -1, memoryview(template.buf)[pos:template.size]


def _write_inplace(template: _Template, detail: Detail, path: str) -> None:
    by_cut = {}
    for groups in detail.groups:
        first = groups[0][0]
        by_cut[(first.var.buffer.start, first.var.buffer.length)] = first
    with atomic_output() as out, out.open(path) as f:
        for i, piece in _template_pieces(template):
            if i < 0:
                f.write(piece)
                continue
            a = by_cut.get(template.cuts[i])
            if a is None:  # a cut no assigned variable covers cannot happen (all assigned)
                raise UsageError("internal: a buffer without a variable", path)
            written = 0
            for chunk in _chunks(a):
                f.write(chunk)
                written += len(chunk)
            if written != template.cuts[i][1]:
                raise UsageError(f"{a.name!r} gave {written} bytes, its buffer holds "
                                 f"{template.cuts[i][1]}", path)


# ---------------------------------------------------------------------------------------------
# writing: re-packed through the object API

def _aligned_buffer_type(schema: Any) -> type:
    """`BufferT` whose data vector is aligned to 16 bytes (the schema's `force_align: 16`,
    which the generated Python packer ignores)."""

    class AlignedBufferT(schema.BufferT):
        def Pack(self, builder: Any) -> int:
            data = None
            if self.data is not None:
                payload = _bytes_of(np.asarray(self.data))
                n = len(payload)
                builder.StartVector(1, n, ALIGN)
                builder.head -= n
                builder.Bytes[builder.head:builder.head + n] = payload
                builder.vectorNumElems = n
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)
    return AlignedBufferT


def _as_aligned(schema: Any, buffer: Any) -> Any:
    out = _aligned_buffer_type(schema)()
    out.data, out.offset, out.size = buffer.data, buffer.offset, buffer.size
    return out


@dataclass
class _Blob:
    """Bytes stored after the FlatBuffer: a buffer's or an operator's large custom options."""
    fill: Callable[[], Iterator[Any]]
    length: int
    buffer: int | None = None  # Model.buffers index
    operator: tuple[int, int] | None = None  # (subgraph, operator)


def _pack(model_t: Any, blobs: list[_Blob], path: str, size_hint: int) -> memoryview:
    """The finished FlatBuffer of `model_t`; with `blobs`, their offsets patched in (they go
    after the FlatBuffer, 16-byte aligned, in order)."""
    import flatbuffers
    schema = _schema()
    builder = flatbuffers.Builder(min(max(size_hint, 1024), flatbuffers.Builder.MAX_BUFFER_SIZE))
    try:
        builder.Finish(model_t.Pack(builder), file_identifier=IDENTIFIER)
    except (flatbuffers.builder.BuilderSizeError, OverflowError, MemoryError) as exc:
        raise UsageError(f"the model does not fit a FlatBuffer ({exc})", path) from None
    fb = memoryview(builder.Bytes)[builder.Head():]
    if not blobs:
        return fb
    model = schema.Model.GetRootAsModel(fb, 0)
    at = _align(len(fb))
    for blob in blobs:
        if blob.buffer is not None:
            tab = model.Buffers(blob.buffer)._tab
            slots = (6, 8)  # Buffer.offset, Buffer.size
        else:
            s, k = blob.operator
            tab = model.Subgraphs(s).Operators(k)._tab
            slots = (22, 24)  # Operator.large_custom_options_offset / _size
        for slot, value in zip(slots, (at, blob.length)):
            o = tab.Offset(slot)
            if not o:  # placeholders are non-zero, so the fields exist
                raise UsageError("internal: a buffer offset was not written", path)
            struct.pack_into("<Q", fb, tab.Pos + o, value)
        at = _align(at + blob.length)
    return fb


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _write_model(fb: Any, blobs: list[_Blob], path: str) -> None:
    with atomic_output() as out, out.open(path) as f:
        f.write(fb)
        at = len(fb)
        for blob in blobs:
            f.write(bytes(_align(at) - at))
            at = _align(at)
            written = 0
            for piece in blob.fill():
                f.write(piece)
                written += len(piece)
            if written != blob.length:
                raise UsageError(f"internal: {written} bytes written for a buffer of "
                                 f"{blob.length}", path)
            at += written
        if blobs:
            f.write(bytes(_align(at) - at))


def _data_array(a: _Assigned) -> np.ndarray:
    if a.encoded is not None:
        return np.frombuffer(a.encoded, np.uint8)
    parts = [np.frombuffer(bytes(c), np.uint8) for c in _chunks(a)]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint8)


def _write_rebuilt(template: _Template, detail: Detail, path: str) -> None:
    import flatbuffers
    schema = _schema()
    root = flatbuffers.encode.Get(flatbuffers.packer.uoffset, template.buf, 0)
    model_t = schema.ModelT.InitFromBuf(template.buf, root)
    for (s, j), raw in detail.renames.items():
        model_t.subgraphs[s].tensors[j].name = raw.encode("utf-8", "surrogateescape")
    model_t.buffers = [_as_aligned(schema, b) for b in (model_t.buffers or [])]
    pinned = {b for _, b in template.model.metadata}
    sources: dict[int, _Assigned] = {}  # buffer index -> the variable whose bytes it holds
    for groups in detail.groups:
        buffers = {a.var.info.buffer for g in groups for a in g}
        if buffers & pinned:  # the original content keeps the buffer
            groups = sorted(groups, key=lambda g: bool(g))
        for i, group in enumerate(groups):
            if not group:
                continue
            if i == 0:
                for a in group:
                    sources[a.var.info.buffer] = group[0]
                continue
            new = _aligned_buffer_type(schema)()
            index = len(model_t.buffers)
            model_t.buffers.append(new)
            sources[index] = group[0]
            for a in group:
                model_t.subgraphs[a.var.info.subgraph].tensors[a.var.info.index].buffer = index
    outside = template.model.buffers and any(b.outside for b in template.model.buffers)
    total = sum(a.var.buffer.length if a.encoded is None else len(a.encoded)
                for a in sources.values()) + template.model.end
    outside = bool(outside) or total > FLATBUFFER_LIMIT
    blobs: list[_Blob] = []
    for index, a in sources.items():
        b = model_t.buffers[index]
        if outside:
            length = a.var.buffer.length if a.encoded is None else len(a.encoded)
            b.data, b.offset, b.size = None, 1, 1
            blobs.append(_Blob(lambda a=a: _chunks(a), length, buffer=index))
        else:
            b.data, b.offset, b.size = _data_array(a), 0, 0
    if outside:
        blobs += _outside_rest(template, model_t, sources)
        _ensure_buffer_location(schema, model_t)
    fb = _pack(model_t, blobs, path, total if not outside else template.model.end + (1 << 20))
    _write_model(fb, blobs, path)


def _outside_rest(template: _Template, model_t: Any, sources: dict) -> list[_Blob]:
    """The other bytes after the FlatBuffer: buffers no variable holds, large custom options."""
    blobs = []
    for index, b in enumerate(template.model.buffers):
        if b.outside and index not in sources and index < len(model_t.buffers):
            model_t.buffers[index].data = None
            model_t.buffers[index].offset, model_t.buffers[index].size = 1, 1
            blobs.append(_Blob(lambda b=b: iter([memoryview(template.buf)[b.start:b.start + b.length]]),
                               b.length, buffer=index))
    for s, sg in enumerate(model_t.subgraphs or []):
        for k, op in enumerate(sg.operators or []):
            if op.largeCustomOptionsOffset > 1:
                start, length = op.largeCustomOptionsOffset, op.largeCustomOptionsSize
                op.largeCustomOptionsOffset, op.largeCustomOptionsSize = 1, 1
                blobs.append(_Blob(lambda s0=start, n=length: iter(
                    [memoryview(template.buf)[s0:s0 + n]]), length, operator=(s, k)))
    return blobs


def _ensure_buffer_location(schema: Any, model_t: Any) -> None:
    """The metadata entry TFLite's loader looks for when buffers follow the FlatBuffer."""
    for m in model_t.metadata or []:
        name = m.name.decode("utf-8", "replace") if isinstance(m.name, bytes) else m.name
        if name == BUFFER_LOCATION:
            return
    entry = schema.MetadataT()
    entry.name = BUFFER_LOCATION
    entry.buffer = len(model_t.buffers)
    holder = _aligned_buffer_type(schema)()
    holder.data = np.frombuffer(b"outside flatbuffers", np.uint8)
    model_t.buffers.append(holder)
    model_t.metadata = [*(model_t.metadata or []), entry]


# ---------------------------------------------------------------------------------------------
# writing: a weights container from any store

def _bare_type(tensor: Tensor) -> tuple[int, str | None]:
    """The TFLite type code of a dtype, and the tag when stored as bits. An int8 tensor read
    as INT2 (`meta["tflite"]["type"]`) is INT2 again."""
    name = dtype_name(tensor.dtype)
    if name in _TAGGED:
        return TYPE_NAMES["UINT8"], name
    ns = tensor.meta.get(NAMESPACE)
    if name == "int8" and isinstance(ns, dict) and ns.get("type") == "INT2":
        return TYPE_NAMES["INT2"], None
    return _BY_DTYPE[name], None


def _packed(tensor: Tensor, code: int, where: str) -> bytes:
    tname, _, bits = TYPES[code]
    values = np.asarray(tensor.read()).astype(np.int16)
    lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if tname in _SIGNED_PACKED
              else (0, (1 << bits) - 1))
    if values.size and (values.min() < lo or values.max() > hi):
        raise UsageError(f"{where!r} is {tname}: values must lie in [{lo}, {hi}]")
    return pack_bits(values, bits).tobytes()


def _bare_chunks(name: str, tensor: Tensor, code: int) -> Callable[[], Iterator[Any]]:
    tname, kind, bits = TYPES[code]
    if kind == "string":
        return lambda: iter([encode_strings(tensor.read())])
    if bits:
        return lambda: iter([_packed(tensor, code, name)])
    return lambda: (_bytes_of(c) for c in tensor.iter_chunks())


def _bare_length(tensor: Tensor, code: int) -> int | None:
    tname, kind, bits = TYPES[code]
    if kind == "string":
        return None
    if bits:
        return _packed_count(tensor.size, bits)
    return tensor.size * tensor.dtype.itemsize


def _write_bare(store: Store, path: str) -> None:
    carry.check_names(store, path, NAME)
    schema = _schema()
    model_t = schema.ModelT()
    model_t.version = 3
    model_t.description = "weightkit: constant tensors only (no operators)"
    sg = schema.SubGraphT()
    sg.name, sg.tensors, sg.inputs, sg.outputs, sg.operators = "weights", [], [], [], []
    buffer_t = _aligned_buffer_type(schema)
    model_t.buffers = [buffer_t()]
    encodings: dict[str, dict] = {}
    planned = []
    for name, tensor in store.items():
        code, tag = _bare_type(tensor)
        if tag is not None:
            encodings[name] = {"dtype": tag}
        t = schema.TensorT()
        t.name = name
        t.shape = list(tensor.shape)
        t.type = code
        t.buffer = len(model_t.buffers)
        t.hasRank = True
        sg.tensors.append(t)
        model_t.buffers.append(buffer_t())
        planned.append((t.buffer, _bare_chunks(name, tensor, code), _bare_length(tensor, code)))
    model_t.subgraphs = [sg]
    doc = carry.build(_strip_own(store), NAME, native_namespace=NAMESPACE, encodings=encodings,
                      file_order=list(store))
    if doc is not None:
        entry = schema.MetadataT()
        entry.name = CARRY_ENTRY
        entry.buffer = len(model_t.buffers)
        holder = buffer_t()
        holder.data = np.frombuffer(carry.dumps(doc).encode("utf-8"), np.uint8)
        model_t.buffers.append(holder)
        model_t.metadata = [entry]
    total = sum(n or 0 for _, _, n in planned)
    outside = total > FLATBUFFER_LIMIT
    blobs = []
    for index, fill, length in planned:
        b = model_t.buffers[index]
        if outside and length:
            b.data, b.offset, b.size = None, 1, 1
            blobs.append(_Blob(fill, length, buffer=index))
        else:
            parts = [np.frombuffer(bytes(p), np.uint8) for p in fill()]
            b.data = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
    if outside:
        _ensure_buffer_location(schema, model_t)
    fb = _pack(model_t, blobs, path, (1 << 20) if outside else total + (1 << 20))
    _write_model(fb, blobs, path)


def _strip_own(store: Store) -> Store:
    """The store with the meta a TFLite reader derives anew taken out of what is carried. A
    weights container has no operators to derive a layout from: a variable's `layout` (a TF.js
    graph's, a model's) is carried as it is."""
    tensors = {n: t.with_meta() for n, t in store.items()}
    for t in tensors.values():
        t.meta.pop(NAMESPACE, None)
    meta = {k: v for k, v in store.meta.items() if k != NAMESPACE}
    return store.replace(tensors, meta=meta)


FORMAT = Format(
    name=NAME, description="TensorFlow Lite model (.tflite FlatBuffer)", sniff=sniff, read=read,
    plan=plan, write=write, suffixes=SUFFIXES, aliases=("litert",), git_patterns=("*.tflite",),
    namespace=NAMESPACE,
    structure="the .tflite model (operators, subgraphs, quantization, buffer layout)",
)
