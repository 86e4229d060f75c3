"""The tfjs format: conformance, and hostile manifests read without leaving the model."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from conformance import FormatConformance
from weightkit.converters.errors import WeightsError
from weightkit.converters import registry


class TestTfjsConformance(FormatConformance):
    format = "tfjs"
    suffix = ""
    extra_dtypes = ("string", "complex64", "int32", "uint8", "uint16", "int16", "float64",
                    "complex128", "uint32", "uint64", "int4", "uint4", "float8_e4m3fn",
                    "float8_e5m2", "float4_e2m1fn")

    def names(self, n: int) -> list[str]:
        return [f"dense_{i:03d}/kernel" for i in range(n)]

    def path(self, directory: Path, stem: str) -> Path:
        """Each model in a directory of its own (created by the write, atomically), since
        weight file names do not depend on the model's name."""
        return directory / stem / "model.json"

    def test_truncated_and_flipped_files_raise_weightkit_errors(self, tmp_path: Path) -> None:
        """As the suite's, for a model of two files: model.json and its weight file are each
        truncated and bit-flipped in the model's own directory (the suite's version writes the
        damaged JSON into a directory without the weight file)."""
        path = self.path(tmp_path, "fuzz")
        self.write(self.matrix_store(with_meta=True), path)
        rng = np.random.default_rng(0)
        for target in sorted(path.parent.iterdir()):
            data = target.read_bytes()
            cuts = sorted({0, 1, 7, len(data) // 2, len(data) - 1,
                           *range(0, len(data), max(1, len(data) // 16))})
            damaged = [data[:cut] for cut in cuts if cut < len(data)]
            for position in rng.integers(0, len(data), 48):
                flipped = bytearray(data)
                flipped[position] ^= 1 << int(rng.integers(8))
                damaged.append(bytes(flipped))
            for content in damaged:
                target.write_bytes(content)
                try:
                    with registry.get(self.format).read(str(path)) as store:
                        for tensor in store.values():
                            tensor.read()
                except WeightsError:
                    pass
            target.write_bytes(data)


def test_int32_weights_dequantize_as_tfjs_rounds_them() -> None:
    """TF.js stores `Math.round(q·scale + min)` for an int32 weight (halves toward +inf, then
    modulo 2^32; infinity is 0): the node test compares with TF.js itself, this one without it."""
    from weightkit.converters.quant import dequantize
    from weightkit.converters.store import Store, Tensor
    q = np.array([0, 1, 2, 3, 4, 5], np.uint8)
    meta = {"quantization": {"scheme": "min_scale", "scale": 0.5, "min": -1.5, "dtype": "int32"}}
    big = {"quantization": {"scheme": "min_scale", "scale": 2.0 ** 31, "min": 0.0,
                            "dtype": "int32"}}
    out = dequantize(Store({"halves": Tensor.from_array(q, meta),
                            "wraps": Tensor.from_array(q, big)}))
    assert out["halves"].dtype == np.int32
    assert out["halves"].read().tolist() == [-1, -1, 0, 0, 1, 1]  # -1.5 -> -1, 0.5 -> 1
    assert out["wraps"].read().tolist() == [0, -2**31, 0, -2**31, 0, -2**31]
