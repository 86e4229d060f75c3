"""What container formats without weightkit's metadata (safetensors, npz) store so that a store
written through them comes back exactly: one JSON document, the *carry*.

    {"version": 1,
     "source_format": "keras-h5",          # store.meta["source_format"], else the source's format
     "meta": {...},                         # store.meta (minus what the container holds natively)
     "order": ["b", "a"],                   # store order, only when it differs from the file's
     "tensors": {"a": {"meta": {...},       # tensor.meta, when not empty
                       "dtype": "string",   # the original dtype, when the file holds an encoding
                       "shape": [2],        # the original shape, when the encoding changes it
                       "lengths": [3, 0]}}} # byte length of each string, if the encoding needs it

The reader puts `source_format` back into `store.meta["source_format"]`; `store.format` stays
the container's own format. Every field is validated: the carry comes from an untrusted file.
"""
from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import orjson

from .dtypes import dtype_from_name, is_string
from .errors import CorruptFileError, UsageError, WeightsError
from .store import Store, Tensor, check_shape, gc_paused

VERSION = 1
SOURCE_FORMAT = "source_format"
PLAIN_SOURCES = ("memory",)  # sources not worth recording


def b64(data: bytes) -> str:
    """`data` as base64 text, for metadata."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, namespace: str) -> bytes:
    """The bytes of base64 `text` from the metadata namespace `namespace` (CorruptFileError if
    it is not base64: metadata may come from an untrusted file)."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError, AttributeError):
        raise CorruptFileError(f"expected base64 data in {namespace} metadata") from None


def source_format(store: Store, container: str) -> str | None:
    """The format the data originally came from, if it is worth recording."""
    source = store.meta.get(SOURCE_FORMAT, store.format)
    return None if source in (container, *PLAIN_SOURCES) else source


def json_losses(store: Store) -> list[str]:
    """Metadata that cannot be written as JSON (the carry would lose it)."""
    lost = []
    try:
        json.dumps(store.meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        lost.append(f"store metadata that is not JSON ({exc})")
    metas = [tensor.meta for tensor in store.values()]
    if _orjson(metas) is not None:
        return lost
    try:  # one call for every tensor (100,000 calls took seconds); each only on failure
        json.dumps(metas, allow_nan=False)
    except (TypeError, ValueError):
        for name, tensor in store.items():
            try:
                json.dumps(tensor.meta, allow_nan=False)
            except (TypeError, ValueError):
                lost.append(f"metadata of {name!r} that is not JSON")
    return lost


def _jsonable(value: Any) -> Any:
    """`value` if JSON can hold it, else None (dropped: only reached with allow_lossy)."""
    if _orjson(value) is not None:
        return value
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return None


def build(store: Store, container: str, *, native_namespace: str | None,
          encodings: dict[str, dict], file_order: list[str]) -> dict | None:
    """The carry document for writing `store` into `container`, or None if nothing needs it.

    `encodings` maps names of encoded tensors to their record (`dtype`, `shape`, `lengths`);
    `file_order` is the order the container will list the tensors in.
    """
    doc: dict[str, Any] = {"version": VERSION}
    source = source_format(store, container)
    if source is not None:
        doc[SOURCE_FORMAT] = source
    meta = {k: v for k, v in store.meta.items() if k not in (SOURCE_FORMAT, native_namespace)}
    if getattr(store, "edits", ()):  # an edited store: each format's structure as it now is
        meta = {k: current(store, k, v) for k, v in meta.items()}
    meta = {k: v for k, v in meta.items() if _jsonable({k: v}) is not None}
    if meta:
        doc["meta"] = meta
    if list(store) != file_order:
        doc["order"] = list(store)
    tensors = {}
    every = _jsonable([tensor.meta for tensor in store.values()]) is not None  # one check
    for name, tensor in store.items():
        record = dict(encodings.get(name, {}))
        tensor_meta = tensor.meta if every else _jsonable(tensor.meta)
        if tensor_meta:
            record["meta"] = tensor_meta
        if record:
            tensors[name] = record
    if tensors:
        doc["tensors"] = tensors
    return doc if len(doc) > 1 else None


def current(store: Store, namespace: str, record: Any) -> Any:
    """`record`, the store's metadata under `namespace`, as the format owning it would write it
    for the store (`Format.current`: less what an edit dropped, renames applied); as it is when
    the format says nothing of it or would refuse the store."""
    from . import registry  # (the registry imports the formats, which import this module)
    owner = registry.by_namespace(namespace)
    if owner is None or owner.current is None:
        return record
    try:
        return owner.current(store)
    except WeightsError:
        return record


def dumps(doc: dict, ascii: bool = True) -> str:
    """Compact JSON; ASCII by default, so that any Python string (even a lone surrogate)
    survives a trip through a UTF-8 container exactly. Non-finite floats raise ValueError.

    orjson writes it when its text can be taken as it is (`_orjson`; 0.04 s for the header of
    100,000 safetensors entries, `json` 0.36 s), and not when ASCII is asked for and it holds
    another byte; `json` writes the rest. Floats may be spelled otherwise (1e-7, not 1e-07)."""
    data = _orjson(doc)
    if data is not None and (not ascii or data.isascii()):
        return data.decode("utf-8")
    return json.dumps(doc, ensure_ascii=ascii, separators=(",", ":"), allow_nan=False)


# orjson refuses dataclasses and datetimes with these, as `json` does, and subclasses of str,
# int, float, dict and list (numpy's float64), which `json` writes as their base: it decides
_STRICT = (orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
           | orjson.OPT_PASSTHROUGH_SUBCLASS)


def _orjson(value: Any) -> bytes | None:
    """The compact JSON of `value` by orjson (UTF-8, not escaped), when it is what `json`
    writes with allow_nan=False up to the spelling of floats; None when `json` must decide:
    orjson refuses the value (ints past 64 bits, lone surrogates), or its text does not read
    back equal to `value` (orjson writes NaN and Inf as null, enums, UUIDs and tuples as what
    reads back otherwise)."""
    try:
        data = orjson.dumps(value, option=_STRICT)
        if orjson.loads(data) != value:
            return None
    except (orjson.JSONEncodeError, orjson.JSONDecodeError):
        return None
    return data


def plan_tensors(store: Store, plan: Callable[[str, Tensor], tuple[Any, dict | None]]
                 ) -> tuple[list[Any], dict[str, dict]]:
    """Each tensor's write plan from `plan(name, tensor) -> (plan, encoding record or None)`,
    and the records of the tensors stored in another dtype, by name."""
    planned, encodings = [], {}
    for name, tensor in store.items():
        step, record = plan(name, tensor)
        planned.append(step)
        if record:
            encodings[name] = record
    return planned, encodings


def check_names(names: Iterable[str], path: str, container: str) -> None:
    """Refuse names a UTF-8 container cannot store (lone surrogates)."""
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"the name {name!r} is not valid Unicode; {container} stores names "
                             "as UTF-8", path) from None


class Carry:
    """A parsed and validated carry document."""

    def __init__(self, doc: dict | None, names: Iterable[str], path: str):
        self.path = path
        # `order` is this very list unless the document gives another: readers test
        # `carried.order is names` to skip reordering 100,000 entries
        names = names if isinstance(names, list) else list(names)
        doc = {} if doc is None else doc
        self._check(isinstance(doc, dict), "the weightkit metadata is not a JSON object")
        self._check(doc.get("version", VERSION) == VERSION,
                    f"weightkit metadata version {VERSION} expected, got {doc.get('version')!r}")
        unknown = set(doc) - {"version", SOURCE_FORMAT, "meta", "order", "tensors"}
        self._check(not unknown, f"unknown weightkit metadata fields {sorted(unknown)}")
        self.source = doc.get(SOURCE_FORMAT)
        self._check(self.source is None or isinstance(self.source, str),
                    "weightkit metadata source_format is not a string")
        self.meta = doc.get("meta", {})
        self._check(isinstance(self.meta, dict), "weightkit metadata 'meta' is not an object")
        self.order = doc.get("order", names)
        self._check(self.order is names or (
            isinstance(self.order, list) and all(isinstance(n, str) for n in self.order)
            and len(self.order) == len(names) and set(self.order) == set(names)),
            "weightkit metadata 'order' does not list the file's tensors")
        self.tensors = doc.get("tensors", {})
        self._check(isinstance(self.tensors, dict)
                    and (not self.tensors or set(self.tensors) <= set(names)),
                    "weightkit metadata 'tensors' names tensors that are not in the file")
        for name, record in self.tensors.items():
            self._check(isinstance(record, dict)
                        and set(record) <= {"meta", "dtype", "shape", "lengths"}
                        and isinstance(record.get("meta", {}), dict),
                        f"weightkit metadata for {name!r} is malformed")

    def _check(self, ok: bool, message: str) -> None:
        if not ok:
            raise CorruptFileError(message, self.path)

    def store_meta(self, native: dict[str, Any]) -> dict[str, Any]:
        """store.meta for the reader: carried meta, native namespace(s), source format."""
        meta = {**self.meta, **native}
        if self.source is not None:
            meta[SOURCE_FORMAT] = self.source
        return meta

    def tensor_meta(self, name: str) -> dict:
        record = self.tensors.get(name)
        return dict(record.get("meta", {})) if record else {}

    def encoding(self, name: str, stored_shape: tuple[int, ...]) -> dict | None:
        """The encoding record of `name`: {dtype, shape (default `stored_shape`), lengths}."""
        record = self.tensors.get(name)
        if not record:
            return None
        if "dtype" not in record:
            self._check("shape" not in record and "lengths" not in record,
                        f"weightkit metadata for {name!r} has a shape but no dtype")
            return None
        try:
            dtype = dtype_from_name(record["dtype"]) if isinstance(record["dtype"], str) else None
        except UsageError:
            dtype = None
        self._check(dtype is not None, f"weightkit metadata for {name!r} names an unknown dtype")
        shape = record.get("shape", list(stored_shape))
        self._check(valid_shape(shape), f"weightkit metadata for {name!r} has a bad shape")
        shape = check_shape(shape, f"weightkit metadata for {name!r}", self.path)
        lengths = record.get("lengths")
        if is_string(dtype):
            self._check(lengths is None or (valid_shape(lengths)
                                            and len(lengths) == math.prod(shape)),
                        f"weightkit metadata for {name!r} has bad string lengths")
        else:
            self._check(lengths is None, f"weightkit metadata for {name!r} has stray lengths")
        return {"dtype": dtype, "shape": tuple(shape), "lengths": lengths}


def valid_shape(shape: Any) -> bool:
    """A list of non-negative ints (not bools)."""
    return isinstance(shape, list) and all(
        type(d) is int and d >= 0 for d in shape)


def parse_json(text: str | bytes, path: str, what: str) -> Any:
    """JSON from an untrusted file: duplicate keys and non-finite numbers are refused.

    A text that is its own compact serialization (as the safetensors library and weightkit
    write headers: no spaces, keys once) is parsed by orjson: 0.08 s for a header of 100,000
    entries where `json` with a hook per object takes 0.22 s. The text orjson writes back from
    its parse equals the input only if no key was repeated (a repeated key's first value would
    be missing) and nothing was read loosely; any other text takes the strict `json` parse,
    which gives the messages below. Bytes must be UTF-8 (`json` would guess UTF-16 or 32)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    try:
        with gc_paused():
            doc = orjson.loads(data)
        if orjson.dumps(doc) == data.rstrip(b" \t\r\n"):
            return doc
    except orjson.JSONDecodeError:  # (the strict parse says what is wrong)
        pass
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (254 levels)
        pass
    if not isinstance(text, str):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptFileError(f"{what} is not UTF-8", path) from None
    return _strict_json(text, path, what)


def _strict_json(text: str, path: str, what: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict:
        result = dict(items)
        if len(result) != len(items):  # find the key for the message (the rare path)
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    raise CorruptFileError(f"{what} has the key {key!r} twice", path)
                seen.add(key)
        return result

    def constant(value: str) -> Any:
        raise CorruptFileError(f"{what} contains {value}, which is not JSON", path)

    try:
        with gc_paused():  # a header of 100,000 entries is a million young objects
            return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except WeightsError:
        raise
    except (ValueError, RecursionError) as exc:
        raise CorruptFileError(f"{what} is not valid JSON ({exc})", path) from None


def encode_strings(tensor: Tensor) -> tuple[np.ndarray, list[int]]:
    """A string tensor as its concatenated bytes (uint8) and the byte length of each element."""
    values = tensor.read().reshape(-1)
    items = [_as_bytes(v) for v in values]
    data = np.frombuffer(b"".join(items), dtype=np.uint8)
    return data, [len(b) for b in items]


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise UsageError(f"string tensors hold bytes; got {type(value).__name__}")


def decode_strings(data: np.ndarray, lengths: list[int], shape: tuple[int, ...]) -> np.ndarray:
    """The object array of bytes that `encode_strings` encoded."""
    raw = bytes(np.asarray(data, dtype=np.uint8))
    out = np.empty(len(lengths), dtype=object)
    start = 0
    for i, length in enumerate(lengths):
        out[i] = raw[start:start + length]
        start += length
    return out.reshape(shape)
