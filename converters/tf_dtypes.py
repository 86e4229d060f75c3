"""TensorFlow's DataType enum and weightkit's canonical dtypes: the one table of the TensorFlow
codecs (TensorBundle in `bundle.py`, GraphDef constants in `graphdef_codec.py`).

Source: tensorflow/tensorflow `tensorflow/core/framework/types.proto` (`enum DataType`; the
`*_REF` values, 101 and up, never appear in a file weightkit reads). Quantized types read as
their storage type (`QUANTIZED` names them); resource and variant are handles, not values
(`HANDLES`): each codec says what it does with them.
"""
from __future__ import annotations

DT_STRING, DT_RESOURCE, DT_VARIANT = 7, 20, 21

# DataType -> canonical dtype name (converters/dtypes.py) of the values as stored.
DTYPES: dict[int, str] = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
    8: "complex64", 9: "int64", 10: "bool", 11: "int8", 12: "uint8", 13: "int32",
    14: "bfloat16", 15: "int16", 16: "uint16", 17: "uint16", 18: "complex128", 19: "float16",
    22: "uint32", 23: "uint64", 24: "float8_e5m2", 25: "float8_e4m3fn", 26: "float8_e4m3fnuz",
    28: "float8_e5m2fnuz", 29: "int4", 30: "uint4", 33: "float4_e2m1fn",
}
# The quantized types: their values are stored as the integer type above.
QUANTIZED: dict[int, str] = {11: "qint8", 12: "quint8", 13: "qint32", 15: "qint16",
                             16: "quint16"}
HANDLES: dict[int, str] = {DT_RESOURCE: "resource", DT_VARIANT: "variant"}
# Canonical dtype name -> the DataType that stores it (the quantized types are never implied).
ENUMS: dict[str, int] = {name: enum for enum, name in DTYPES.items() if enum not in QUANTIZED}
