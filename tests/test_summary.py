"""`show`'s statistics against numpy on whole arrays, whatever the chunks and pieces."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from weightkit.converters.store import Tensor
from weightkit.diffing import summary
from weightkit.diffing.summary import tensor_stats


def expected(array: np.ndarray) -> dict:
    values = np.abs(array) if np.iscomplexobj(array) else array
    values = values.astype(np.float64).ravel()
    finite = values[np.isfinite(values)]
    out = {"zeros": int(np.count_nonzero(values == 0)), "nan": int(np.isnan(values).sum()),
           "inf": int(np.isinf(values).sum())}
    if finite.size:
        out.update(min=finite.min(), max=finite.max(), mean=finite.mean(), std=finite.std())
    return out


def check(array: np.ndarray, max_bytes: int) -> None:
    got = tensor_stats(Tensor.from_array(array), max_bytes)
    want = expected(array)
    assert (got.zeros, got.nan, got.inf) == (want["zeros"], want["nan"], want["inf"])
    for key in ("min", "max", "mean", "std"):
        if key in want:
            assert getattr(got, key) == pytest.approx(want[key], rel=1e-9, abs=1e-12), key
        else:
            assert getattr(got, key) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, ml_dtypes.bfloat16,
                                   np.int8, np.uint64, np.bool_, np.complex64])
def test_dtypes_in_pieces_and_chunks(dtype, monkeypatch):
    monkeypatch.setattr(summary, "PIECE", 7)
    rng = np.random.default_rng(1)
    array = (rng.standard_normal((13, 11)) * 5).astype(dtype)
    if np.dtype(dtype).kind == "c":
        array = array + 1j * array[::-1]
    array.reshape(-1)[::9] = 0
    for max_bytes in (1, 40, 1 << 20):
        check(array, max_bytes)


def test_nan_inf_and_all_nonfinite_pieces(monkeypatch):
    monkeypatch.setattr(summary, "PIECE", 3)
    a = np.array([np.nan, np.inf, -np.inf, 1.0, 0.0, -2.0, np.nan, np.nan, np.nan, 5.0], np.float32)
    check(a, 1 << 20)
    check(np.full(5, np.nan), 16)


def test_large_offset_keeps_std_accurate():
    """Variance from deviations, not from Σx² − (Σx)²/n, which cancels for a large mean."""
    a = 1e8 + np.arange(200_000, dtype=np.float64) % 3
    check(a, 1 << 16)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1,
                max_size=60), st.integers(1, 9), st.integers(4, 64))
def test_any_values_any_pieces(values, piece, max_bytes):
    original = summary.PIECE
    summary.PIECE = piece
    try:
        check(np.array(values, np.float32), max_bytes)
    finally:
        summary.PIECE = original
