"""The TFLite format without TensorFlow: the conformance suite, the committed exports read and
written back, names, shared buffers, sparse tensors, edits in place and re-packed, refusals,
the verifier against hostile structures, and the export diff against the Keras sources.

The framework oracles (the TFLite interpreter loading what weightkit writes, numpy on the
interpreter's tensors) are in test_tflite_oracle.py."""
from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import weightkit
from conformance import FormatConformance
from conftest import run_cli
from fixtures_lib import fixture, manifest, select
from weightkit.converters import tflite
from weightkit.converters.errors import CorruptFileError, UnsafeFileError, UsageError, WeightsError
from weightkit.converters.quant import dequantize
from weightkit.converters.store import Store, Tensor

EXPORTS = select(format="tflite")
IDS = [e["path"] for e in EXPORTS]


class TestTfliteConformance(FormatConformance):
    format = "tflite"
    suffix = ".tflite"
    extra_dtypes = ("uint8", "int16", "uint16", "int32", "uint32", "uint64", "float64",
                    "complex64", "complex128", "float8_e4m3fn", "float8_e5m2", "string", "int4",
                    "uint4", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu",
                    "float4_e2m1fn")
