"""A toy third-party weights format, to prove formats plug into weightkit without touching it.

File: the line `WKTOY1`, one line of JSON `[[name, dtype, shape, offset], ...]`, then the raw
little-endian bytes of each tensor at its offset (relative to the end of the JSON line). It is
registered through the entry-point group `weightkit.formats` (`wk_toy:FORMAT`) by the
`wk_toy-1.0.dist-info` that tests/test_architecture.py writes next to this file.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from weightkit.converters.atomic import atomic_output
from weightkit.converters.dtypes import dtype_from_name, dtype_name, is_string
from weightkit.converters.errors import CorruptFileError, UsageError
from weightkit.converters.format import Format, WritePlan
from weightkit.converters.mapped import MappedFile
from weightkit.converters.store import Store, Tensor, check_shape

MAGIC = b"WKTOY1\n"
MAX_HEADER = 1 << 20


def sniff(path: str, head: bytes) -> bool:
    return head.startswith(MAGIC)


def read(path: str) -> Store:
    file = MappedFile(path)
    try:
        with open(path, "rb") as f:
            f.seek(len(MAGIC))
            line = f.readline(MAX_HEADER)
        base = len(MAGIC) + len(line)
        try:
            entries = json.loads(line)
        except ValueError:
            raise CorruptFileError("the toy header is not JSON", path) from None
        tensors = {}
        for entry in entries if isinstance(entries, list) else [None]:
            if not (isinstance(entry, list) and len(entry) == 4 and isinstance(entry[0], str)
                    and isinstance(entry[1], str) and isinstance(entry[3], int)):
                raise CorruptFileError("malformed toy header entry", path)
            name, kind, shape, offset = entry
            try:
                dtype = dtype_from_name(kind)
            except UsageError:
                raise CorruptFileError(f"unknown dtype {kind!r}", path) from None
            shape = check_shape(shape, repr(name))
            if is_string(dtype) or offset < 0 or \
                    base + offset + math.prod(shape) * dtype.itemsize > file.size:
                raise CorruptFileError(f"tensor {name!r} runs past the end of the file", path)

            def get(index: tuple, at=base + offset, dtype=dtype, shape=shape) -> np.ndarray:
                return file.array(at, dtype.newbyteorder("<"), shape)[index]
            tensors[name] = Tensor(shape, dtype, get)
    except BaseException:
        file.close()
        raise
    return Store(tensors, format="toy", path=path, on_close=file.close)


def plan(store: Store, like: Store | None = None) -> WritePlan:
    """float64 is written as float32 (a loss); strings are refused."""
    lost = [f"{name}: float64 written as float32" for name, t in store.items()
            if t.dtype == np.float64]
    lost += [f"store metadata {key!r}" for key in store.meta if key != "source_format"]
    strings = [name for name, t in store.items() if is_string(t.dtype)]
    refusal = UsageError(f"the toy format holds no strings ({strings[0]!r})") if strings else None
    return WritePlan(store, like, losses=lost, refusal=refusal)


def write(plan: WritePlan, path: str) -> None:
    entries, offset = [], 0
    tensors = {n: t.map(lambda a: _narrow(a), np.dtype(np.float32))
               if t.dtype == np.float64 else t for n, t in plan.store.items()}
    for name, tensor in tensors.items():
        entries.append([name, dtype_name(tensor.dtype), list(tensor.shape), offset])
        offset += tensor.nbytes
    with atomic_output() as out, out.open(os.fspath(path)) as f:
        f.write(MAGIC + json.dumps(entries).encode() + b"\n")
        for tensor in tensors.values():
            for chunk in tensor.iter_chunks():
                f.write(np.ascontiguousarray(chunk, tensor.dtype.newbyteorder("<")).tobytes())


FORMAT = Format(name="toy", description="toy weights (a test plug-in)", sniff=sniff, read=read,
                plan=plan, write=write, suffixes=(".toy",), git_patterns=("*.toy",))


def _narrow(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return values.astype(np.float32)
