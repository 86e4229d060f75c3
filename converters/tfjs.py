"""TensorFlow.js models (format "tfjs"): a `model.json` (or a directory holding one) and the
binary weight files its `weightsManifest` names.

`model.json` (tensorflow/tfjs `tfjs-core/src/io/types.ts`, `ModelJSON`): `format`
("layers-model" or "graph-model"), `generatedBy`, `convertedBy`, `modelTopology` (a Keras
config for a layers model, a GraphDef as JSON for a graph model), `weightsManifest`, and optional
`trainingConfig`, `userDefinedMetadata`, `signature`, `modelInitializer`, `initializerSignature`.
`weightsManifest` is a list of groups `{"paths": [file, ...], "weights": [entry, ...]}`; a
group's bytes are its weights' bytes concatenated in manifest order with no padding, cut into the
files of `paths` at any byte (a weight may span files). An entry is `{"name", "shape", "dtype",
"quantization"?, "group"?}` (`group` "optimizer" marks optimizer state). Dtypes and their bytes
(tfjs-core `io_utils.ts`, `decodeWeight`): float32 (4), int32 (4), bool (1), complex64 (8, real
and imaginary interleaved), string (per element a uint32 byte length, then UTF-8 bytes), all
little-endian. A quantized entry keeps its `dtype` (float32 or int32) and stores
`quantization.dtype` values instead: uint8 / uint16 with `scale` and `min` (value = q·scale +
min, in float64, then rounded to the entry's dtype; `Math.round` for int32), or float16.

Reading: the canonical names are the manifest names, in manifest order. A quantized weight is
read as stored (uint8, uint16 or float16) with its parameters in
`tensor.meta["tfjs"]["quantization"]` and the manifest dtype in `tensor.meta["tfjs"]["dtype"]`;
`converters/quant.py` presents it as float32 (`--dequantize`). In a graph model, a weight read
by an operator whose weight layout is known (MatMul, Conv2D, DepthwiseConv2dNative, their fused
forms, Conv2DBackpropInput, Conv3D, GatherV2, the bias of a fused op or of the BiasAdd/Add after
one) declares it in `tensor.meta["layout"]` (`graph_layouts`), for comparing the model with its
Keras source (`diff/export.py`); derived from the topology, it is never written. Data is mapped
lazily from the
weight files, a piece at a time (see `mapped.py`), and read across file boundaries when a weight
spans them. Untrusted input: manifest paths must stay inside the model's directory (no absolute
paths, `..`, backslashes or symlinks leading out), every file must be a regular file, and the
files of a group must hold exactly the bytes the manifest describes (string lengths are checked
against the end of the group) before anything is read.

Writing back: the recorded `model.json` with the manifest's shapes, dtypes and quantization
taken from the store; when nothing changed, its bytes are written verbatim, and the weight files
keep their names and sizes, so a read and write gives the same files. A store from elsewhere is
written as a TF.js layers model when it carries a Keras model (a tf.keras full-model `.h5`: what
the TF.js converter writes, see `keras_config.tfjs_layers_model`), else as a weights-only
`model.json` (loadable with `tf.io.loadWeights`); both in converter-style shards of 4 MiB
(`group1-shard1of2.bin`, tensorflow/tfjs `tfjs-converter/python/tensorflowjs/write_weights.py`).
A Keras 3 model (a `.keras` archive, a Keras 3 legacy `.h5`) is refused (`UsageError`): TF.js
cannot load it as a layers model, not even as the converter writes it
(`keras_config.tfjs_unloadable`); its weights go into a TF.js layers model of the same
architecture given as the template (`like`), paired by name.
Dtypes TF.js lacks are stored in a form it loads, with the original dtype in
`userDefinedMetadata["weightkit"]` (the carry, see `carry.py`): float16 as float16 quantization;
uint8 / uint16 as such quantization with scale 1, min 0 (TF.js loads the exact values as int32);
int8, int16, int4, uint4 as int32; bfloat16, float8 and float4 as float32 (exact values);
int64, uint64, uint32, float64 and complex128 as their raw bits in int32 words (a trailing axis
of 2 or 4; TF.js sees the words, weightkit the values).
"""
from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import carry, keras_config
from .atomic import atomic_output
from .dtypes import STRING, dtype_name
from .errors import CorruptFileError, UnsafeFileError, UsageError, WeightsError
from .foreign import reader_added, structure_losses
from .format import Format, WritePlan
from . import source as seam
from .names import role_allows
from .paths import inside
from .store import Extent, Index, Store, Tensor, check_shape

NAME = "tfjs"
NAMESPACE = "tfjs"
MODEL_JSON = "model.json"
CARRY_KEY = "weightkit"
QUANTIZATION = "quantization"   # the format-neutral entry converters/quant.py reads
MAX_JSON_BYTES = 256 << 20     # model.json is parsed in memory (graph topologies can be large)
MAX_FILES = 1 << 16            # weight files in one model
SHARD_BYTES = 4 << 20          # the TF.js converter's default shard size
STRING_LENGTH = 4              # uint32 byte length before each string element
SCAN_BLOCK = 1 << 16

DTYPES: dict[str, np.dtype] = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"),
                               "bool": np.dtype(np.bool_), "complex64": np.dtype("<c8"),
                               "string": STRING}
QUANTIZED: dict[str, np.dtype] = {"uint8": np.dtype(np.uint8), "uint16": np.dtype("<u2"),
                                  "float16": np.dtype("<f2")}
FORMATS = ("layers-model", "graph-model")
_WORDS = np.dtype("<i4")
# Dtypes TF.js lacks, stored as values it loads exactly ...
_WIDENED = {"int8": "int32", "int16": "int32", "int4": "int32", "uint4": "int32",
            "bfloat16": "float32", "float8_e4m3fn": "float32", "float8_e5m2": "float32",
            "float8_e4m3fnuz": "float32", "float8_e5m2fnuz": "float32",
            "float8_e8m0fnu": "float32", "float4_e2m1fn": "float32"}
# ... or as their bits in int32 words (a trailing axis of that many words; 0: none).
_BITS = {"int64": 2, "uint64": 2, "float64": 2, "complex128": 4, "uint32": 0}
_SHARD_NAME = re.compile(r"group(\d+)-shard\d+of\d+(\.bin)?")
# A graph model's ops that read a weight: op -> (input, operand, layout as stored). TensorFlow
# keeps Keras' layouts (tensorflow/tensorflow `tensorflow/core/ops/nn_ops.cc`, `math_ops.cc`):
# [in, out] matrices (transposed for MatMul's transpose_b), HWIO filters, HWCM depthwise
# filters, HWOI transposed-convolution filters, [V, D] embeddings. The fused forms
# (`tensorflow/core/grappler/optimizers/remapper.cc`, the TF.js converter's
# `fuse_depthwise_conv2d.py`) take a bias as their first extra input when `fused_ops` starts
# with BiasAdd.
_WEIGHT_OPS: dict[str, tuple[int, str, str]] = {
    "MatMul": (1, "weights", "IO"), "_FusedMatMul": (1, "weights", "IO"),
    "Conv2D": (1, "filter", "HWIO"), "_FusedConv2D": (1, "filter", "HWIO"),
    "DepthwiseConv2dNative": (1, "filter", "HWCM"),
    "FusedDepthwiseConv2dNative": (1, "filter", "HWCM"),
    "Conv2DBackpropInput": (1, "filter", "HWOI"), "Conv3D": (1, "filter", "DHWIO"),
    "Conv3DBackpropInputV2": (1, "filter", "DHWOI"), "GatherV2": (0, "params", "VD"),
}
_FUSED = ("_FusedMatMul", "_FusedConv2D", "FusedDepthwiseConv2dNative")
_BIAS_OPS = ("BiasAdd", "Add", "AddV2")


# ---------------------------------------------------------------------------------------------
# detection

def sniff(path: str, head: bytes) -> bool:
    """A `model.json` (or a directory with one) whose first bytes name TF.js's keys."""
    if seam.isdir(path) and not seam.isfile(path):
        candidate = seam.join(path, MODEL_JSON)
        if not seam.isfile(candidate):
            return False
        if seam.within(path, MODEL_JSON) is None:
            return True  # a model.json leading elsewhere: never read; `read` says why
        try:
            head = seam.head(candidate, 4096)
        except (OSError, WeightsError):
            return False
    elif not seam.isfile(path):
        return False
    text = head.lstrip()
    return text.startswith(b"{") and any(key in text for key in (
        b'"weightsManifest"', b'"modelTopology"', b'"layers-model"', b'"graph-model"'))


def locate(path: str) -> tuple[str, str]:
    """(model.json path, model directory) for a directory or a JSON file. A directory's
    model.json may not be a symlink leading out of it (UnsafeFileError)."""
    path = os.fspath(path)
    if seam.isdir(path) and not seam.isfile(path):
        return seam.inside(path, MODEL_JSON), path
    return path, seam.parent(path)


# ---------------------------------------------------------------------------------------------
# the manifest

@dataclass
class Weight:
    """One manifest entry, validated: where its bytes lie in its group."""
    name: str
    shape: tuple[int, ...]
    dtype: str                   # the manifest dtype
    stored: np.dtype             # the dtype of the bytes (a quantized dtype, or the dtype's)
    quantization: dict | None
    group: int
    tag: str | None = None       # the entry's `group` ("model" / "optimizer")
    offset: int = 0              # in the group's bytes
    nbytes: int = 0


@dataclass
class Group:
    paths: list[str]
    weights: list[Weight]
    files: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    pins: list[Any] = field(default_factory=list)  # a URL's stats, taken at open

    @property
    def total(self) -> int:
        return sum(self.sizes)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def parse_manifest(manifest: Any, path: str) -> list[Group]:
    """The validated groups of a `weightsManifest` (byte offsets not yet known)."""
    if manifest is None:
        return []
    if not isinstance(manifest, list):
        raise CorruptFileError("weightsManifest is not a list", path)
    groups, names = [], set()
    for g, group in enumerate(manifest):
        if not (isinstance(group, dict) and isinstance(group.get("paths"), list)
                and isinstance(group.get("weights"), list)):
            raise CorruptFileError(f"weightsManifest group {g}: expected an object with "
                                   "'paths' and 'weights' lists", path)
        paths = group["paths"]
        if not all(isinstance(p, str) and p for p in paths):
            raise CorruptFileError(f"weightsManifest group {g}: paths must be non-empty "
                                   "strings", path)
        weights = []
        for entry in group["weights"]:
            weight = _parse_entry(entry, g, path)
            if weight.name in names:
                raise CorruptFileError(f"weight {weight.name!r} appears twice in the "
                                       "manifest", path)
            names.add(weight.name)
            weights.append(weight)
        groups.append(Group(list(paths), weights))
    if sum(len(g.paths) for g in groups) > MAX_FILES:
        raise UnsafeFileError(f"the manifest names more than {MAX_FILES} weight files", path)
    return groups


def _parse_entry(entry: Any, g: int, path: str) -> Weight:
    if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)):
        raise CorruptFileError(f"weightsManifest group {g}: an entry without a name: "
                               f"{_short(entry)}", path)
    name = entry["name"]
    shape, dtype = entry.get("shape"), entry.get("dtype")
    if not carry.valid_shape(shape):
        raise CorruptFileError(f"weight {name!r}: bad shape {_short(shape)}", path)
    if dtype not in DTYPES:
        raise CorruptFileError(f"weight {name!r}: dtype {_short(dtype)}; TF.js weights are "
                               f"{', '.join(DTYPES)}", path)
    check_shape(shape, f"weight {name!r}", path,
                8 if dtype == "string" else DTYPES[dtype].itemsize)
    tag = entry.get("group")
    if tag is not None and not isinstance(tag, str):
        raise CorruptFileError(f"weight {name!r}: group {_short(tag)} is not a string", path)
    quantization = entry.get("quantization")
    stored = DTYPES[dtype]
    if quantization is not None:
        q = quantization.get("dtype") if isinstance(quantization, dict) else None
        if q not in QUANTIZED:
            raise CorruptFileError(f"weight {name!r}: quantization {_short(quantization)}; "
                                   "expected dtype uint8, uint16 or float16", path)
        allowed = ("float32",) if q == "float16" else ("float32", "int32")
        if dtype not in allowed:
            raise CorruptFileError(f"weight {name!r}: {q} quantization of a {dtype} weight "
                                   f"(TF.js dequantizes only to {' or '.join(allowed)})", path)
        if q != "float16" and not (_number(quantization.get("scale"))
                                   and _number(quantization.get("min"))):
            raise CorruptFileError(f"weight {name!r}: {q} quantization needs finite numbers "
                                   "'scale' and 'min'", path)
        stored = QUANTIZED[q]
        quantization = dict(quantization)
    return Weight(name, tuple(shape), dtype, stored, quantization, g, tag)


# ---------------------------------------------------------------------------------------------
# the bytes of a group, across its files

class GroupData:
    """The concatenated bytes of one group's files, read by offset through the byte seam
    (each file opened on first use; a URL's ranges planned: few requests)."""

    def __init__(self, group: Group):
        self.files, self.sizes = group.files, group.sizes
        self.pins = group.pins
        self.starts = [0]
        for size in self.sizes:
            self.starts.append(self.starts[-1] + size)
        self.sources: dict[int, Any] = {}
        self.ranges: list[tuple[int, int]] = []  # (offset, bytes) the weights occupy

    @property
    def total(self) -> int:
        return self.starts[-1]

    @property
    def size(self) -> int:  # the byte seam's `Source.size`: tensors are `Extent`s of a group
        return self.starts[-1]

    @property
    def name(self) -> str | None:
        return self.files[0] if self.files else None

    def pread(self, offset: int, n: int) -> bytes:
        """`read`, as the byte seam's `Source.pread` (what `store.read_many` calls)."""
        return self.read(offset, n)

    def _source(self, i: int) -> Any:
        source = self.sources.get(i)
        if source is None:
            source = seam.open_source(self.files[i], self.pins[i] if self.pins else None)
            if source.size != self.sizes[i]:
                source.close()
                raise CorruptFileError("the file changed size while the model was open",
                                       self.files[i])
            if source.local is None:
                lo, hi = self.starts[i], self.starts[i + 1]
                source.plan((max(o, lo) - lo, min(o + n, hi) - max(o, lo))
                            for o, n in self.ranges if o < hi and o + n > lo)
            self.sources[i] = source
        return source

    def close(self) -> None:
        for source in self.sources.values():
            source.close()
        self.sources.clear()

    def _file_at(self, offset: int) -> int:
        lo, hi = 0, len(self.sizes) - 1
        while lo < hi:  # the last file whose start is <= offset (skipping empty files)
            mid = (lo + hi + 1) // 2
            if self.starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        while lo < len(self.sizes) - 1 and offset >= self.starts[lo + 1]:
            lo += 1
        return lo

    def read(self, offset: int, n: int) -> bytes:
        """Exactly `n` bytes at `offset` (CorruptFileError past the end)."""
        if offset < 0 or offset + n > self.total:
            raise CorruptFileError(f"weight data at byte {offset + n} runs past the end of "
                                   f"its group ({self.total} bytes)", self.files[0]
                                   if self.files else None)
        out, i = bytearray(), self._file_at(offset) if n else 0
        while len(out) < n:
            local = offset + len(out) - self.starts[i]
            take = min(n - len(out), self.sizes[i] - local)
            if take > 0:
                chunk = self._source(i).pread(local, take)
                if len(chunk) != take:
                    raise CorruptFileError("the file became shorter while it was read",
                                           self.files[i])
                out += chunk
            i += 1
        return bytes(out)

    def array(self, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """The C-order array of `shape` whose bytes start at `offset`: a view of a map when
        they lie in one file, else a copy assembled from the files they span."""
        count = math.prod(shape)
        if count == 0:
            return np.empty(shape, dtype)
        nbytes = count * dtype.itemsize
        i = self._file_at(offset)
        local = offset - self.starts[i]
        if local + nbytes <= self.sizes[i]:
            return self._source(i).array(local, dtype, (count,)).reshape(shape)
        return np.frombuffer(self.read(offset, nbytes), dtype, count).reshape(shape)


class _Scanner:
    """Sequential reads of a group's bytes in blocks, for the string length prefixes."""

    def __init__(self, data: GroupData):
        self.data, self.start, self.buffer = data, 0, b""

    def uint32(self, offset: int) -> int:
        if not (self.start <= offset and offset + 4 <= self.start + len(self.buffer)):
            n = min(SCAN_BLOCK, self.data.total - offset)
            if n < 4:
                raise CorruptFileError(f"a string length at byte {offset} of its group runs "
                                       f"past the end ({self.data.total} bytes)",
                                       self.data.files[0] if self.data.files else None)
            self.start, self.buffer = offset, self.data.read(offset, n)
        at = offset - self.start
        return int.from_bytes(self.buffer[at:at + 4], "little")


def _string_extent(data: GroupData, scanner: _Scanner, weight: Weight, path: str) -> int:
    """The bytes of a string weight at `weight.offset`, every length checked against the end
    of the group before the next is read."""
    count = math.prod(weight.shape)
    if count * STRING_LENGTH > data.total - weight.offset:
        raise CorruptFileError(f"string weight {weight.name!r} has {count} elements; its group "
                               f"has {data.total - weight.offset} bytes left", path)
    position = weight.offset
    for _ in range(count):
        length = scanner.uint32(position)
        position += STRING_LENGTH + length
        if position > data.total:
            raise CorruptFileError(f"string weight {weight.name!r}: an element of {length} "
                                   "bytes runs past the end of its group", path)
    return position - weight.offset


def decode_strings(raw: bytes, count: int) -> list[bytes]:
    """The elements of a string weight's bytes (uint32 length, then the bytes, per element)."""
    out, position = [], 0
    for _ in range(count):
        length = int.from_bytes(raw[position:position + 4], "little")
        position += STRING_LENGTH
        out.append(raw[position:position + length])
        position += length
    return out


def layout(groups: list[Group], root: str, path: str) -> list[GroupData]:
    """Resolve every group's files inside `root`, check their sizes against the manifest and
    place each weight at its byte offset. Nothing outside `root` is touched."""
    out = []
    remote = seam.is_url(root)
    if remote:
        seam.scan(root.rstrip("/") + "/")  # every weight file: one listing (HTTP: HEADs at once)
        seam.stat_all([seam.inside(root, n) for g in groups for n in g.paths])
    for g, group in enumerate(groups):
        group.files, group.sizes, group.pins = [], [], []
        for name in group.paths:
            file = seam.inside(root, name)
            if remote:
                found = seam.stat(file)
                if found is None:
                    raise CorruptFileError(f"weight file {name!r} (group {g}) is missing", path)
                group.files.append(file)
                group.sizes.append(found.size)
                group.pins.append(found)
                continue
            try:
                st = os.stat(file)
            except FileNotFoundError:
                raise CorruptFileError(f"weight file {name!r} (group {g}) is missing", path) \
                    from None
            except OSError as exc:
                raise CorruptFileError(f"weight file {name!r}: {exc.strerror}", path) from None
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeFileError(f"weight file {name!r} is not a regular file", path)
            group.files.append(file)
            group.sizes.append(st.st_size)
        data = GroupData(group)
        scanner = _Scanner(data)
        offset = 0
        for weight in group.weights:
            weight.offset = offset
            if weight.dtype == "string" and weight.quantization is None:
                weight.nbytes = _string_extent(data, scanner, weight, path)
            else:
                weight.nbytes = math.prod(weight.shape) * weight.stored.itemsize
            offset += weight.nbytes
            data.ranges.append((weight.offset, weight.nbytes))
            if offset > data.total:
                break
        if offset != data.total:
            raise CorruptFileError(f"weightsManifest group {g}: its weights need {offset} "
                                   f"bytes, its {len(group.files)} file(s) hold {data.total}",
                                   path)
        out.append(data)
    return out


# ---------------------------------------------------------------------------------------------
# reading

def read_json(json_path: str, path: str) -> tuple[str, dict]:
    """(text, document) of a model.json, validated as untrusted JSON."""
    size = seam.check_input(json_path)
    if size > MAX_JSON_BYTES:
        raise UnsafeFileError(f"model.json of {size} bytes; at most {MAX_JSON_BYTES} "
                              "are read", path)
    raw = seam.read_bytes(json_path, size + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise UnsafeFileError(f"model.json grew past {MAX_JSON_BYTES} bytes while read", path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptFileError("model.json is not UTF-8", path) from None
    doc = carry.parse_json(text, path, "model.json")
    if not isinstance(doc, dict):
        raise CorruptFileError("model.json is not a JSON object", path)
    fmt = doc.get("format")
    if fmt is not None and not isinstance(fmt, str):
        raise CorruptFileError(f"model.json format {_short(fmt)} is not a string", path)
    return text, doc


def _carried(doc: dict, path: str) -> Any:
    udm = doc.get("userDefinedMetadata")
    return udm.get(CARRY_KEY) if isinstance(udm, dict) else None


def read(path: str) -> Store:
    """Open a TF.js model (its directory or its model.json) lazily."""
    path = os.fspath(path)
    json_path, root = locate(path)
    if seam.isdir(path) and not seam.exists(json_path):
        raise CorruptFileError(f"expected {MODEL_JSON} in the directory", path)
    text, doc = read_json(json_path, path)
    groups = parse_manifest(doc.get("weightsManifest"), path)
    datas = layout(groups, root, path)
    for data in datas:  # a URL's files opened now: forked readers share their caches
        for i, pinned in enumerate(data.pins):
            if pinned is not None:
                data._source(i)
    weights = [(w, datas[w.group]) for group in groups for w in group.weights]
    names = [w.name for w, _ in weights]
    carried = carry.Carry(_carried(doc, path), names, path)
    layouts = graph_layouts(doc.get("modelTopology")) if doc.get("format") == "graph-model" \
        else {}
    tensors: dict[str, Tensor] = {}
    by_name = {w.name: (w, d) for w, d in weights}
    for name in carried.order:
        weight, data = by_name[name]
        tensors[name] = _tensor(weight, data, carried, path, layouts.get(name))
    meta = {} if generated(text, doc, groups) else \
        {NAMESPACE: {"model_json": text, "sizes": [g.sizes for g in groups]}}
    return Store(tensors, format=NAME, meta=carried.store_meta(meta), path=path,
                 on_close=lambda: [data.close() for data in datas])


def generated(text: str, doc: dict, groups: list[Group]) -> bool:
    """Whether model.json is the weights-only document weightkit writes for a store from
    elsewhere (its text, one group in converter-named 4 MiB files, at most a carry besides):
    then it records nothing a writer would not write again, and the store keeps no tfjs
    structure (a round trip through tfjs loses nothing of another format's store)."""
    if set(doc) - {"weightsManifest", "userDefinedMetadata"} or "weightsManifest" not in doc:
        return False
    udm = doc.get("userDefinedMetadata", {CARRY_KEY: None})
    if not isinstance(udm, dict) or set(udm) != {CARRY_KEY} or len(groups) > 1:
        return False
    for group, raw in zip(groups, doc["weightsManifest"]):
        cut = _shards(group.total, SHARD_BYTES)
        if set(raw) != {"paths", "weights"} or group.sizes != cut \
                or group.paths != _paths(0, len(cut), []):
            return False
        for entry in raw["weights"]:
            if set(entry) - {"name", "shape", "dtype", "quantization", "group"} \
                    or entry.get("group", "optimizer") != "optimizer":
                return False
    return text == dumps(doc, None)


def graph_layouts(topology: Any) -> dict[str, dict]:
    """The layout each weight of a graph model (a Const node of `topology`, the GraphDef as
    JSON) has for the operator that reads it: {"op", "operand", "stored", "source" (Keras'
    layout), "to_source" (steps from stored to source), "operator" ([node name]: the weights of
    one operator share it)}. Malformed nodes are skipped: the layouts only guide a diff."""
    nodes = topology.get("node") if isinstance(topology, dict) else None
    if not isinstance(nodes, list):
        return {}
    graph: dict[str, tuple[str, list[str], dict]] = {}
    for node in nodes:
        if isinstance(node, dict) and isinstance(node.get("name"), str) \
                and isinstance(node.get("op"), str):
            inputs = node.get("input") if isinstance(node.get("input"), list) else []
            attrs = node.get("attr") if isinstance(node.get("attr"), dict) else {}
            graph[node["name"]] = (node["op"], [_source_node(i) for i in inputs
                                                if isinstance(i, str) and not i.startswith("^")],
                                   attrs)
    out: dict[str, dict] = {}

    def declare(name: str, op: str, operand: str, stored: str, operator: str,
                steps: list | None = None) -> None:
        if name in graph and graph[name][0] == "Const" and name not in out:
            out[name] = {"op": op, "operand": operand, "stored": stored,
                         "source": "IO" if stored == "OI" else stored,
                         "to_source": steps or [], "operator": [operator]}

    for name, (op, inputs, attrs) in graph.items():
        if op in _WEIGHT_OPS and len(inputs) > _WEIGHT_OPS[op][0]:
            at, operand, stored = _WEIGHT_OPS[op]
            transposed = "MatMul" in op and _attr(attrs, "transpose_b", "b") is True
            declare(inputs[at], op, operand, "OI" if transposed else stored, name,
                    [["transpose", [1, 0]]] if transposed else [])
            fused = _attr(attrs, "fused_ops", "list")
            first = fused.get("s", [None])[0] if isinstance(fused, dict) \
                and isinstance(fused.get("s"), list) and fused["s"] else None
            if op in _FUSED and len(inputs) > 2 and first == "Qmlhc0FkZA==":  # "BiasAdd"
                declare(inputs[2], op, "bias", "O", name)
        elif op in _BIAS_OPS and len(inputs) == 2:
            for const, other in ((inputs[1], inputs[0]), (inputs[0], inputs[1])):
                producer = graph.get(other)
                if producer is not None and producer[0] in _WEIGHT_OPS \
                        and producer[0] != "GatherV2":
                    declare(const, op, "bias", "O", other)
    return out


def _source_node(tensor: str) -> str:
    """The node of an input (`node`, `node:1`)."""
    node, _, index = tensor.rpartition(":")
    return node if node and index.isdigit() else tensor


def _attr(attrs: dict, key: str, kind: str) -> Any:
    value = attrs.get(key)
    return value.get(kind) if isinstance(value, dict) else None


def role_of(weight: Weight) -> str:
    return "optimizer" if weight.tag == "optimizer" else "weight"


def _tensor(weight: Weight, data: GroupData, carried: carry.Carry, path: str,
            layout: dict | None = None) -> Tensor:
    meta: dict[str, Any] = {"key": weight.name, "role": role_of(weight)}
    if layout is not None:
        meta["layout"] = layout
    if weight.quantization is not None:
        meta[NAMESPACE] = {"dtype": weight.dtype, "quantization": weight.quantization}
        meta[QUANTIZATION] = neutral_quantization(weight)
    meta.update(carried.tensor_meta(weight.name))
    if weight.dtype == "string" and weight.quantization is None:
        get = _string_getter(weight, data)
    else:
        get = _getter(weight, data)
    tensor = Tensor(weight.shape, weight.stored.newbyteorder("="), get, meta)
    encoding = carried.encoding(weight.name, weight.shape)
    return tensor if encoding is None else _decoded(tensor, weight, encoding, path)


def neutral_quantization(weight: Weight) -> dict:
    """The format-neutral `meta["quantization"]` of `converters/quant.py` (`--dequantize`):
    uint8/uint16 as `min_scale` (q·scale + min, in float64, rounded to float32, or with
    `Math.round` to int32 for an int32 weight), float16 as `cast` to float32."""
    q = weight.quantization or {}
    if q.get("dtype") == "float16":
        return {"scheme": "cast", "dtype": "float32"}
    return {"scheme": "min_scale", "scale": q["scale"], "min": q["min"], "dtype": weight.dtype}


def _getter(weight: Weight, data: GroupData) -> Callable[[Index], np.ndarray]:
    """get(index) reading only the rows the index needs."""
    return Extent(data, weight.offset, weight.stored, weight.shape)


def _string_getter(weight: Weight, data: GroupData) -> Callable[[Index], np.ndarray]:
    def get(index: Index) -> np.ndarray:
        count = math.prod(weight.shape)
        values = np.empty(count, dtype=object)
        values[:] = decode_strings(data.read(weight.offset, weight.nbytes), count)
        return values.reshape(weight.shape)[index]
    return get


def _decoded(tensor: Tensor, weight: Weight, encoding: dict, path: str) -> Tensor:
    """A weight stored in a form TF.js loads, as the dtype the carry records."""
    dtype = encoding["dtype"]
    kind = dtype_name(dtype)
    shape = encoding["shape"]
    what = f"weightkit metadata for {weight.name!r} does not match the stored weight"
    if weight.quantization is not None or kind not in _WIDENED and kind not in _BITS:
        raise CorruptFileError(what, path)
    if kind in _WIDENED:
        if weight.dtype != _WIDENED[kind] or shape != weight.shape:
            raise CorruptFileError(what, path)
        return tensor.map(lambda a: a.astype(dtype), dtype).with_meta()
    words = _BITS[kind]
    if weight.dtype != "int32" or weight.shape != shape + ((words,) if words else ()):
        raise CorruptFileError(what, path)
    little = dtype.newbyteorder("<")

    def get(index: Index) -> np.ndarray:
        return np.ascontiguousarray(tensor.read()).view(little).reshape(shape)[index]
    return Tensor(shape, dtype, get, tensor.meta)


# ---------------------------------------------------------------------------------------------
# writing: what each tensor becomes

@dataclass
class Part:
    """One weight to write: its manifest entry and its bytes."""
    entry: dict
    nbytes: int
    chunks: Callable[[], Iterator[bytes]]


def _numeric(tensor: Tensor, stored: np.dtype, convert: Callable[[np.ndarray], np.ndarray]
             ) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        for chunk in tensor.iter_chunks():
            yield np.ascontiguousarray(convert(chunk), dtype=stored).reshape(-1).view(np.uint8) \
                .tobytes()
    return chunks


def _string_part(tensor: Tensor) -> tuple[int, Callable[[], Iterator[bytes]]]:
    data, lengths = carry.encode_strings(tensor)
    raw = bytes(data)
    pieces, position = [], 0
    for length in lengths:
        pieces.append(length.to_bytes(4, "little"))
        pieces.append(raw[position:position + length])
        position += length
        if length >= 1 << 32:
            raise UsageError(f"a string element of {length} bytes; TF.js stores lengths in "
                             "32 bits")
    blob = b"".join(pieces)
    return len(blob), lambda: iter([blob])


def encode(name: str, tensor: Tensor, entry: dict | None = None) -> tuple[Part, dict]:
    """The part for `tensor` (its manifest entry updated from `entry`, the recorded one, if
    any) and its carry record ({} when TF.js holds it as it is)."""
    kind = tensor.dtype_name
    recorded = dict(entry or {})
    own = tensor.meta.get(NAMESPACE) if isinstance(tensor.meta.get(NAMESPACE), dict) else {}
    quantization = own.get("quantization")
    record: dict[str, Any] = {}
    if isinstance(quantization, dict) and quantization.get("dtype") in QUANTIZED \
            and QUANTIZED[quantization["dtype"]].newbyteorder("=") == tensor.dtype:
        dtype, stored = own.get("dtype", "float32"), QUANTIZED[quantization["dtype"]]
        quantization, convert = dict(quantization), (lambda a: a)
    elif kind == "float16":
        dtype, stored, quantization, convert = "float32", QUANTIZED["float16"], \
            {"dtype": "float16"}, (lambda a: a)
    elif kind in ("uint8", "uint16"):
        dtype, stored, convert = "int32", QUANTIZED[kind], (lambda a: a)
        quantization = {"dtype": kind, "scale": 1, "min": 0}
    elif kind in DTYPES:
        dtype, stored, quantization, convert = kind, DTYPES[kind], None, (lambda a: a)
    elif kind in _WIDENED:
        dtype = _WIDENED[kind]
        stored, quantization = DTYPES[dtype], None
        convert = (lambda a, target=stored: a.astype(target))
        record = {"dtype": kind}
    elif kind in _BITS:
        dtype, stored, quantization = "int32", _WORDS, None
        convert = (lambda a: np.ascontiguousarray(a).view(_WORDS))
        record = {"dtype": kind}
        if _BITS[kind]:
            record["shape"] = list(tensor.shape)
    else:
        raise UsageError(f"TF.js cannot hold {name!r} ({kind})")
    shape = list(tensor.shape) + ([_BITS[kind]] if _BITS.get(kind) else [])
    out = {"name": name, "shape": shape, "dtype": dtype}
    new = {**{k: v for k, v in recorded.items() if k != "quantization"}, **out}
    if quantization is not None:
        new["quantization"] = quantization
    if not recorded and tensor.role != "weight":
        new["group"] = "optimizer"
    entry_out = {k: new[k] for k in [*recorded, *new] if k in new}  # recorded key order first
    if dtype == "string":
        nbytes, chunks = _string_part(tensor)
    else:
        nbytes = math.prod(shape) * stored.itemsize
        chunks = _numeric(tensor, stored, convert)
    return Part(entry_out, nbytes, chunks), record


# ---------------------------------------------------------------------------------------------
# writing: the plan

@dataclass
class PlannedGroup:
    parts: list[Part]
    paths: list[str]
    sizes: list[int]
    extra: dict                  # the group's other keys, as recorded


@dataclass
class Plan:
    doc: dict                    # model.json to write
    text: str | None             # its recorded bytes, if the document is unchanged
    groups: list[PlannedGroup]
    losses: list[str]


def _template(store: Store, like: Store | None) -> dict | None:
    if NAMESPACE in store.meta:
        return store.meta[NAMESPACE]
    if like is not None and NAMESPACE in like.meta:
        return like.meta[NAMESPACE]
    return None


def _carry_doc(store: Store, encodings: dict[str, dict], order: list[str],
               keep_out: Iterable[str], graph: bool = False) -> dict | None:
    """What TF.js cannot hold of `store` (see `carry.py`); None when nothing. `graph`: a
    graph model is written, whose operators give each variable its `layout` when read (any
    other model.json carries the layout a variable has)."""
    gone = set(keep_out) | {NAMESPACE}
    meta = {k: v for k, v in store.meta.items() if k not in gone}
    added = (*reader_added(store), *(("layout",) if graph else ()))
    tensors = {}
    for name, tensor in store.items():
        derived = (NAMESPACE, QUANTIZATION, *added) if isinstance(
            tensor.meta.get(NAMESPACE), dict) and "quantization" in tensor.meta[NAMESPACE] \
            else (NAMESPACE, *added)
        own = {k: v for k, v in tensor.meta.items() if k not in derived
               and not (k == "key" and v == name)
               and not (k == "role" and v in ("weight", "optimizer"))}  # the manifest says
        tensors[name] = Tensor(tensor.shape, tensor.dtype, tensor._get, own)
    doc = carry.build(Store(tensors, meta=meta, format=NAME), NAME, native_namespace=None,
                      encodings=encodings, file_order=order)
    return doc if doc is not None and len(doc) > 1 else None


def _shards(total: int, shard_bytes: int | None) -> list[int]:
    if total == 0:
        return []
    if shard_bytes is None:
        return [total]
    return [min(shard_bytes, total - start) for start in range(0, total, shard_bytes)]


def _paths(g: int, count: int, recorded: list[str]) -> list[str]:
    """File names for group `g` cut into `count` files: the recorded ones when the count is
    the same, else the converter's `group{g}-shard{i}of{n}.bin`."""
    if len(recorded) == count:
        return list(recorded)
    number = g + 1
    if recorded and (match := _SHARD_NAME.fullmatch(os.path.basename(recorded[0]))):
        number = int(match.group(1)) if len(match.group(1)) < 9 else number
    return [f"group{number}-shard{i + 1}of{count}.bin" for i in range(count)]


def plan(store: Store, like: Store | None = None) -> WritePlan:
    """What writing `store` as TF.js gives (`Plan`: the document, the weight files) and loses:
    metadata that is not JSON, another format's file structure, and for a Keras model the
    variables a layers model leaves out (optimizer state). Every dtype has a form TF.js loads
    (see the module docstring). Refused: a drop or an addition the topology cannot take."""
    planned = WritePlan(store, like)
    try:
        planned.detail = _plan(store, like)
    except WeightsError as exc:
        planned.refusal = exc
        return planned
    planned.losses = planned.detail.losses
    return planned


def _plan(store: Store, like: Store | None) -> Plan:
    template = _template(store, like)
    if template is not None:
        return _plan_template(store, template)
    unloadable = keras_config.tfjs_unloadable(store)
    if unloadable is not None:
        what, why = unloadable
        raise UsageError(f"TF.js cannot load {what} as a layers model: {why}; write the "
                         "weights into a TF.js layers model of the same architecture (one "
                         "TF.js saved, or one converted from a tf_keras .h5) instead: --like "
                         "WEB_MODEL --weights-only", store.path)
    model = keras_config.model_of(store)
    if model is not None and model.source != NAME:
        return _plan_keras(store, model)
    return _plan_weights(store)


def _recorded(template: Any) -> tuple[str, dict, list[Group], list[list[int]]]:
    if not (isinstance(template, dict) and isinstance(template.get("model_json"), str)):
        raise CorruptFileError(f"{NAMESPACE} metadata: no model.json recorded")
    text = template["model_json"]
    doc = carry.parse_json(text, None, "the recorded model.json")
    if not isinstance(doc, dict):
        raise CorruptFileError("the recorded model.json is not a JSON object")
    groups = parse_manifest(doc.get("weightsManifest"), None)
    sizes = template.get("sizes")
    if not (isinstance(sizes, list) and len(sizes) == len(groups)
            and all(carry.valid_shape(s) and len(s) == len(g.paths)
                    for s, g in zip(sizes, groups))):
        raise CorruptFileError(f"{NAMESPACE} metadata: file sizes do not match the manifest")
    return text, doc, groups, sizes


def _plan_template(store: Store, template: Any) -> Plan:
    text, doc, groups, sizes = _recorded(template)
    manifest = doc.get("weightsManifest") or []
    topology = doc.get("modelTopology") is not None
    placed, encodings, planned, dropped = set(), {}, [], []
    for g, (group, recorded_sizes) in enumerate(zip(groups, sizes)):
        entries = manifest[g]["weights"]
        parts = []
        for weight, entry in zip(group.weights, entries):
            if weight.name not in store:
                dropped.append(weight)
                continue
            part, record = encode(weight.name, store[weight.name], entry)
            parts.append(part)
            placed.add(weight.name)
            if record:
                encodings[weight.name] = record
        extra = {k: v for k, v in manifest[g].items() if k not in ("paths", "weights")}
        total = sum(p.nbytes for p in parts)
        if not parts and group.weights:
            continue  # every weight of the group was dropped: its files go too
        if total == sum(recorded_sizes):
            cut = list(recorded_sizes)
        else:
            cut = _shards(total, max(recorded_sizes) if len(recorded_sizes) > 1 else None)
        planned.append(PlannedGroup(parts, _paths(g, len(cut), group.paths), cut, extra))
    added = [n for n in store if n not in placed]
    if topology and [w for w in dropped if role_of(w) == "weight"]:
        example = next(w.name for w in dropped if role_of(w) == "weight")
        raise UsageError(f"cannot drop {example!r} from a TF.js {doc.get('format', 'model')}: "
                         "TF.js loads every weight its topology names (strict loading fails); "
                         "drop only optimizer weights, or write safetensors or npz")
    if topology and added:
        if not any(role_allows(store[n].role, "weights") for n in added):
            raise UsageError(f"the TF.js {doc.get('format', 'model')} has no place for "
                             f"{len(added)} optimizer or metric variable(s) (e.g. "
                             f"{added[0]!r}): its topology names the model's weights only; "
                             "leave them out with --weights-only")
        raise UsageError(f"the TF.js model has no place for {len(added)} tensor(s) "
                         f"(e.g. {added[0]!r}): its topology names its weights; write "
                         "safetensors or npz, or a weights-only TF.js file without --like")
    if added:
        parts = []
        for name in added:
            part, record = encode(name, store[name])
            parts.append(part)
            if record:
                encodings[name] = record
        if planned:
            last = planned[-1]
            last.parts += parts
            total = sum(p.nbytes for p in last.parts)
            cut = _shards(total, max(last.sizes) if len(last.sizes) > 1 else None)
            last.sizes, last.paths = cut, _paths(len(planned) - 1, len(cut), last.paths)
        else:
            cut = _shards(sum(p.nbytes for p in parts), SHARD_BYTES)
            planned.append(PlannedGroup(parts, _paths(0, len(cut), []), cut, {}))
    order = [p.entry["name"] for g in planned for p in g.parts]
    new = _document(doc, planned, _carry_doc(store, encodings, order, (),
                                             graph=doc.get("format") == "graph-model"))
    same = new == doc
    return Plan(new, text if same else None, planned, carry.json_losses(store))


def _document(doc: dict, planned: list[PlannedGroup], carried: dict | None) -> dict:
    """`doc` with the planned manifest and carry (keys in their recorded order)."""
    new = dict(doc)
    manifest = [{"paths": g.paths, "weights": [p.entry for p in g.parts], **g.extra}
                for g in planned]
    if "weightsManifest" in doc or manifest:
        new["weightsManifest"] = manifest
    recorded = doc.get("userDefinedMetadata")
    if isinstance(recorded, dict):
        udm = {k: v for k, v in recorded.items() if k != CARRY_KEY}
        if carried is not None:
            udm[CARRY_KEY] = carried
        if udm or CARRY_KEY not in recorded:
            new["userDefinedMetadata"] = udm
        else:
            del new["userDefinedMetadata"]  # it held only an old carry
    elif carried is not None:
        new["userDefinedMetadata"] = {CARRY_KEY: carried}
    return new


def _plan_weights(store: Store) -> Plan:
    """A weights-only model.json for a store from elsewhere."""
    parts, encodings = [], {}
    for name, tensor in store.items():
        part, record = encode(name, tensor)
        parts.append(part)
        if record:
            encodings[name] = record
    cut = _shards(sum(p.nbytes for p in parts), SHARD_BYTES)
    groups = [PlannedGroup(parts, _paths(0, len(cut), []), cut, {})] if parts else []
    doc = _document({"weightsManifest": []}, groups,
                    _carry_doc(store, encodings, list(store), ()))
    return Plan(doc, None, groups, carry.json_losses(store))  # the carry holds the rest


def _plan_keras(store: Store, model: keras_config.KerasModel) -> Plan:
    """The TF.js layers model the TF.js converter writes for a Keras model."""
    doc, weights, left_out = keras_config.tfjs_layers_model(model, store)
    parts, encodings = [], {}
    for tfjs_name, name in weights:
        part, record = encode(tfjs_name, store[name])
        part.entry = {k: v for k, v in part.entry.items() if k != "group"}
        parts.append(part)
        if record:
            encodings[tfjs_name] = record
    cut = _shards(sum(p.nbytes for p in parts), SHARD_BYTES)
    groups = [PlannedGroup(parts, _paths(0, len(cut), []), cut, {})]
    kept = Store({t: store[n] for t, n in weights}, meta=store.meta, format=store.format)
    carried = _carry_doc(kept, encodings, [t for t, _ in weights], model.namespaces)
    doc = _document(doc, groups, carried)
    lost = carry.json_losses(store) + structure_losses(
        store, [k for k in store.meta if k not in model.namespaces])
    if left_out:
        lost.append(f"{len(left_out)} variable(s) outside the model's layers, which a TF.js "
                    f"layers model does not hold (optimizer state; e.g. {left_out[0]!r}), as "
                    "the TF.js converter leaves them")
    return Plan(doc, None, groups, lost)


# ---------------------------------------------------------------------------------------------
# writing: the files

def dumps(doc: dict, style: str | None) -> str:
    """model.json text: in the style of the recorded text where it shows one (the converter's
    `json.dump`, or TF.js's compact `JSON.stringify`)."""
    if style == "compact":
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return json.dumps(doc, allow_nan=False)


def _style(text: str | None) -> str | None:
    if text is None:
        return None
    head = text[:4096]
    return "compact" if '":' in head and '": ' not in head else None


def write(plan: WritePlan, path: str) -> None:
    """Write a TF.js model atomically: `path` is a directory (created whole, holding
    model.json) or a `.json` file (the weight files go beside it; its directory is created
    whole if missing). Existing files the new model.json does not own are never replaced."""
    path = os.fspath(path)
    planned: Plan = plan.detail
    template = _template(plan.store, plan.like)
    recorded = template.get("model_json") if isinstance(template, dict) else None
    text = planned.text if planned.text is not None else dumps(planned.doc, _style(recorded))
    names = [p for g in planned.groups for p in g.paths]
    for name in names:
        _check_name(name)
    if len(set(map(os.path.normpath, names))) != len(names):
        raise UsageError("the manifest names a weight file twice", path)
    with atomic_output() as out:
        if path.lower().endswith(".json"):
            parent = os.path.dirname(os.path.abspath(path))
            if os.path.isdir(parent):
                _guard(path, names)
                json_out, directory = out.path(path), None
            else:
                directory = out.path(parent, directory=True)
                json_out = os.path.join(directory, os.path.basename(path))
        else:
            directory = out.path(path, directory=True)
            json_out = os.path.join(directory, MODEL_JSON)
        for group in planned.groups:
            _write_group(group, [_target(out, directory, path, n) for n in group.paths], path)
        with open(json_out, "w", encoding="utf-8") as f:
            f.write(text)


def _check_name(name: str) -> None:
    """A weight file name from a manifest must be a plain relative path."""
    normal = os.path.normpath(name) if isinstance(name, str) else ""
    if not normal or os.path.isabs(name) or "\\" in name or "\x00" in name \
            or normal == ".." or normal.startswith("../") or normal in (".", MODEL_JSON):
        raise UsageError(f"refusing weight file name {name!r}: expected a relative path "
                         "inside the model directory")


def _target(out: Any, directory: str | None, path: str, name: str) -> str:
    """Where weight file `name` is written: inside the new directory, or (a temporary next to)
    its place beside the model.json, never through a symlink leading out."""
    if directory is not None:
        target = os.path.join(directory, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        return target
    parent = os.path.dirname(os.path.abspath(path))
    final = inside(parent, name)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    return out.path(final)


def _guard(json_path: str, names: list[str]) -> None:
    """Refuse to replace weight files beside `json_path` that belong to another model: only
    those the existing `json_path` itself names may be replaced."""
    parent = os.path.dirname(os.path.abspath(json_path))
    owned: set[str] = set()
    if os.path.isfile(json_path):
        try:
            _, doc = read_json(json_path, json_path)
            owned = {os.path.normpath(p) for g in parse_manifest(doc.get("weightsManifest"),
                                                                 json_path) for p in g.paths}
        except (CorruptFileError, UnsafeFileError):
            owned = set()
    for name in names:
        if os.path.lexists(os.path.join(parent, name)) and os.path.normpath(name) not in owned:
            raise UsageError(f"writing {os.path.basename(json_path)!r} would replace "
                             f"{name!r}, which it does not own (another model's weights?); "
                             "write into another directory", json_path)


def _write_group(group: PlannedGroup, targets: list[str], path: str) -> None:
    """Stream the group's weights into its files, cut at the planned sizes."""
    files = iter(zip(targets, group.sizes))
    current, room, handle = None, 0, None
    written = 0
    try:
        for part in group.parts:
            produced = 0
            for chunk in part.chunks():
                produced += len(chunk)
                view = memoryview(chunk)
                while view:
                    if room == 0:
                        if handle is not None:
                            handle.close()
                        try:
                            current, room = next(files)
                        except StopIteration:
                            raise UsageError("the weights gave more bytes than planned", path) \
                                from None
                        handle = open(current, "wb")
                    take = min(room, len(view))
                    handle.write(view[:take])
                    view, room, written = view[take:], room - take, written + take
            if produced != part.nbytes:
                raise UsageError(f"tensor {part.entry['name']!r} gave {produced} bytes, its "
                                 f"shape needs {part.nbytes}", path)
    finally:
        if handle is not None:
            handle.close()
    if room or next(files, None) is not None:
        raise UsageError("the weights gave fewer bytes than planned", path)


FORMAT = Format(
    name=NAME, description="TensorFlow.js model: model.json (or its directory) and weight files",
    sniff=sniff, read=read, plan=plan, write=write, suffixes=("model.json",),
    namespace=NAMESPACE,
    structure="the TF.js model.json (topology, manifest groups, weight files)",
)
