"""One table of dtypes: weightkit's canonical dtype names and their numpy types.

Names follow numpy / ml_dtypes (`float32`, `bfloat16`, `float8_e4m3fn`, `int4`) plus `string`
(numpy object arrays of `bytes`). Formats map their own codes to these names in their own module.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from .errors import UsageError

STRING = np.dtype(object)

_BY_NAME: dict[str, np.dtype] = {
    "bool": np.dtype(np.bool_),
    "int4": np.dtype(ml_dtypes.int4),
    "uint4": np.dtype(ml_dtypes.uint4),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "int16": np.dtype(np.int16),
    "uint16": np.dtype(np.uint16),
    "int32": np.dtype(np.int32),
    "uint32": np.dtype(np.uint32),
    "int64": np.dtype(np.int64),
    "uint64": np.dtype(np.uint64),
    "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "float8_e4m3fnuz": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "float8_e5m2fnuz": np.dtype(ml_dtypes.float8_e5m2fnuz),
    "float8_e8m0fnu": np.dtype(ml_dtypes.float8_e8m0fnu),
    "float4_e2m1fn": np.dtype(ml_dtypes.float4_e2m1fn),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float16": np.dtype(np.float16),
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "complex64": np.dtype(np.complex64),
    "complex128": np.dtype(np.complex128),
    "string": STRING,
}
_BY_DTYPE: dict[np.dtype, str] = {dt: name for name, dt in _BY_NAME.items()}

FLOATING = frozenset(name for name in _BY_NAME if name.startswith(("float", "bfloat")))


def dtype_name(dtype: np.dtype) -> str:
    """The canonical name of a numpy dtype (`bfloat16`, `string`, ...)."""
    if isinstance(dtype, np.dtype):  # the usual call: one lookup
        name = _BY_DTYPE.get(dtype)
        if name is not None:
            return name
    dtype = np.dtype(dtype)
    try:
        return _BY_DTYPE[dtype.newbyteorder("=") if dtype.byteorder not in "=|" else dtype]
    except KeyError:
        raise UsageError(f"unsupported dtype {dtype!r}") from None


def dtype_from_name(name: str) -> np.dtype:
    """The numpy dtype for a canonical name; raises UsageError naming the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        import difflib
        close = difflib.get_close_matches(str(name), list(_BY_NAME), n=2, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(f"unknown dtype {name!r}; {hint}known: {', '.join(_BY_NAME)}") from None


def is_floating(dtype: np.dtype) -> bool:
    """True for every floating dtype, including bfloat16 and the float8/float4 types."""
    return np.dtype(dtype) != STRING and dtype_name(dtype) in FLOATING


def is_string(dtype: np.dtype) -> bool:
    return np.dtype(dtype) == STRING
