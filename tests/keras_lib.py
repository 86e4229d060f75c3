"""Helpers for the Keras format tests: an HDF5 tree comparison, the framework oracle run in a
subprocess, and crafted hostile HDF5 files. Imports no framework."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent


def h5_tree(source: Any) -> list[tuple]:
    """Every group, dataset (shape, dtype, storage options, bytes) and attribute (name, HDF5
    type, shape, value) of an HDF5 file, in listing order: equal lists mean equal files."""
    out: list[tuple] = []
    with h5py.File(source, "r") as f:
        def attrs(obj, where: str) -> None:
            for name in obj.attrs:
                aid = obj.attrs.get_id(name)
                tid = aid.get_type()
                string = h5py.check_string_dtype(aid.dtype)
                kind = (tid.get_class(), tid.get_size() if not string or string.length else None,
                        tid.get_cset() if string else None, str(aid.dtype))
                out.append(("attr", where, name, kind, aid.shape, repr(obj.attrs[name])))

        def visit(group, prefix: str) -> None:
            for name in group:
                obj = group[name]
                where = prefix + name
                if isinstance(obj, h5py.Dataset):
                    data = obj[()]
                    raw = repr(data.tolist()) if obj.dtype.kind == "O" else \
                        np.ascontiguousarray(data).tobytes()
                    out.append(("dataset", where, obj.shape, str(obj.dtype),
                                obj.id.get_type().get_class(), obj.chunks, obj.compression,
                                obj.shuffle, obj.fletcher32, raw))
                else:
                    out.append(("group", where))
                attrs(obj, where)
                if isinstance(obj, h5py.Group):
                    visit(obj, where + "/")
        attrs(f, "/")
        visit(f, "")
    return out


def keras_member_tree(path: str | os.PathLike, member: str = "model.weights.h5") -> list[tuple]:
    """`h5_tree` of the weights inside a `.keras` archive."""
    import io
    with zipfile.ZipFile(path) as zf:
        return h5_tree(io.BytesIO(zf.read(member)))


def oracle(framework: str, pairs: list[tuple]) -> dict[str, str]:
    """Run `keras_oracle.py` for `framework` on (fixture name, converted path[, how to load
    it]) pairs:
    {converted path: "same" or what differs}, each as the framework loaded it."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
               CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(HERE / "keras_oracle.py"), framework,
                           json.dumps(pairs)], capture_output=True, text=True, timeout=900,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
