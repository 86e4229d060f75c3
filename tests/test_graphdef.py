"""The tf-graphdef format (frozen GraphDef constants): conformance, TensorFlow's own reading of
every Const encoding, write-back TensorFlow imports and runs, hostile protobufs."""
from __future__ import annotations

from conformance import FormatConformance


class TestGraphDefConformance(FormatConformance):
    format = "tf-graphdef"
    suffix = ".pb"
    extra_dtypes = ("string", "complex64", "complex128", "float64", "int32", "uint8", "int16",
                    "uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2", "int4", "uint4")
    carries_metadata = False
