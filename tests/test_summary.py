"""`show`'s statistics against numpy on whole arrays, whatever the chunks and pieces."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from weightkit.converters.store import Tensor
from weightkit.diffing import numeric, summary
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
    monkeypatch.setattr(numeric, "PIECE", 7)
    rng = np.random.default_rng(1)
    array = (rng.standard_normal((13, 11)) * 5).astype(dtype)
    if np.dtype(dtype).kind == "c":
        array = array + 1j * array[::-1]
    array.reshape(-1)[::9] = 0
    for max_bytes in (1, 40, 1 << 20):
        check(array, max_bytes)


def test_nan_inf_and_all_nonfinite_pieces(monkeypatch):
    monkeypatch.setattr(numeric, "PIECE", 3)
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
    original = numeric.PIECE
    numeric.PIECE = piece
    try:
        check(np.array(values, np.float32), max_bytes)
    finally:
        numeric.PIECE = original


def test_batched_small_tensors_match_one_by_one():
    """show summarises small tensors many at a time: the same statistics as one by one."""
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(n).astype(np.float32) * 3 for n in (1, 5, 17, 64)]
    arrays += [np.zeros((0, 4), np.float32), np.array([np.nan, 1.0, np.inf, 0.0], np.float32),
               np.full(3, np.nan), np.array([-np.inf]), np.arange(9, dtype=np.int8).reshape(3, 3),
               np.array([True, False, False]), (np.arange(4) + 1j).astype(np.complex64),
               np.array([1.5, -2.25], ml_dtypes.bfloat16), 1e8 + np.arange(50.0) % 3]
    tensors = [Tensor.from_array(a) for a in arrays]
    batched = summary.batch_stats(tensors)
    for tensor, got in zip(tensors, batched):
        want = tensor_stats(tensor)
        assert (got.size, got.zeros, got.nan, got.inf) == (want.size, want.zeros, want.nan,
                                                            want.inf)
        for key in ("min", "max", "mean", "std"):
            if getattr(want, key) is None:
                assert getattr(got, key) is None, key
            else:
                assert getattr(got, key) == pytest.approx(getattr(want, key), rel=1e-9,
                                                          abs=1e-12), key
    assert [s.size for s in summary.stats_of(tensors)] == [t.size for t in tensors]


@pytest.mark.parametrize("values", [np.full(1000, 1.7e308), np.array([1.7e308, -1.7e308, 1e300, 3.0]),
                                    np.array([-1e250, 1e250] * 50)])
def test_huge_values_give_finite_statistics(values):
    """Sums of values near the float64 limit would overflow: a hostile file must not turn
    `show --json` into an error (JSON has no Infinity) or print numpy warnings."""
    import warnings
    tensor = Tensor.from_array(values)
    mean, std = (values / 1e300).mean() * 1e300, (values / 1e300).std() * 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for got in (tensor_stats(tensor), summary.batch_stats([tensor])[0]):
            assert got.mean == pytest.approx(mean, rel=1e-9, abs=1e290)
            assert got.std == pytest.approx(std, rel=1e-6, abs=1e293)
            assert np.isfinite([got.min, got.max, got.mean, got.std]).all()


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=6), _JSON_VALUES, max_size=5), min_size=1,
                max_size=4), st.dictionaries(st.text(max_size=4), _JSON_VALUES, max_size=3))
@example([{"min": float("nan"), "max": float("inf"), "name": "w"}], {})
@example([{"name": "caf\u00e9/kernel", "n": 2**70}, {"name": "a::b", "s": None}], {"top": None})
@example([{"std": np.float64(0.5), "mean": np.float64("nan")}], {})
def test_json_document_reads_back_as_jsonable_says(rows, rest):
    """dump_json (rows by orjson, refused rows by the stdlib) reads back as the stdlib would
    write `jsonable(doc)`: NaN and Inf as strings, non-ASCII escaped, ints past 64 bits kept,
    no '::' anywhere; each row on a line of its own."""
    import io
    import json

    from weightkit.diffing.render import dump_json, jsonable
    doc = {**rest, "variables": rows}
    out = io.StringIO()
    dump_json(doc, out)
    text = out.getvalue()
    assert text.isascii() and "::" not in text
    assert json.loads(text) == json.loads(json.dumps(jsonable(doc)))
    lines = text.splitlines()
    start = lines.index(' "variables": [')
    assert len([line for line in lines[start + 1:start + 1 + len(rows)]
                if line.startswith("  {")]) == len(rows)


def test_batched_statistics_of_a_file_from_one_read(tmp_path, monkeypatch):
    """Small tensors lying back to back in a file, in one dtype, are summarised from one read
    (no array per tensor) with the statistics each gives alone; other batches as before."""
    import weightkit
    from weightkit import Store
    rng = np.random.default_rng(1)
    arrays = {f"l{i}/w": rng.normal(size=i % 7).astype(np.float32) for i in range(60)}
    arrays["l3/w"][1] = np.nan
    arrays["l4/w"][:] = [np.inf, 0, -np.inf, 2]
    arrays["h/w"] = np.arange(5, dtype=np.float16)
    weightkit.save(Store.from_arrays(arrays), tmp_path / "m.safetensors")
    with weightkit.load(tmp_path / "m.safetensors") as store:
        floats = sorted((t for t in store.values() if t.dtype == np.float32),
                        key=lambda t: t.extent.offset)  # as stats_of orders a batch
        monkeypatch.setattr(summary, "read_many", None)  # one read, or this fails
        batched = summary.batch_stats(floats)
        monkeypatch.undo()
        for tensor, got in zip(floats, batched):
            want = tensor_stats(tensor)
            assert (got.size, got.zeros, got.nan, got.inf) == (want.size, want.zeros, want.nan,
                                                                want.inf)
            for key in ("min", "max", "mean", "std"):
                assert getattr(got, key) == (None if getattr(want, key) is None else
                                             pytest.approx(getattr(want, key), rel=1e-12)), key
        every = list(store.values())
        assert summary.stats_of(every) == summary.batch_stats(every)  # mixed: read_many


def test_stats_of_summarises_each_small_tensor_once(monkeypatch):
    """Batches of small tensors are disjoint: a file of many small variables costs linear
    time (a batch that restarted at the first tensor summarised 100,000 variables 1.75 times
    over, and N/BATCH_ELEMENTS times for more)."""
    rng = np.random.default_rng(5)
    tensors = [Tensor.from_array(rng.normal(size=n)) for n in [3, 0, 5, 1, 7, 2] * 20]
    seen: list[int] = []
    batch_stats = summary.batch_stats

    def counted(batch):
        seen.extend(map(id, batch))
        return batch_stats(batch)
    monkeypatch.setattr(summary, "batch_stats", counted)
    monkeypatch.setattr(summary, "BATCH_ELEMENTS", 16)
    got = summary.stats_of(tensors)
    assert sorted(seen) == sorted(id(t) for t in tensors if t.size)
    for stats, tensor in zip(got, tensors):
        want = tensor_stats(tensor)
        assert stats.size == want.size
        assert stats.mean == (None if want.mean is None else pytest.approx(want.mean, rel=1e-12))


def test_a_rollup_of_values_near_the_float64_limit_keeps_a_finite_std() -> None:
    """A variable whose squared deviations overflow float64 (its m2 is inf) has a finite std;
    the group it rolls up into gets one too, merged in scaled units, not 'inf'."""
    from weightkit.diffing.rollup import rollup_stats
    values = np.array([1e308, -1e308, 1e308])
    tensors = [Tensor.from_array(values), Tensor.from_array(np.array([1.0, 2.0]))]
    stats = [tensor_stats(t) for t in tensors]
    assert np.isinf(stats[0].m2) and np.isfinite(stats[0].std)
    (group,) = rollup_stats(["m/w", "m/b"], [3, 2], [24, 16], stats, "module")
    together = np.concatenate([values, [1.0, 2.0]])
    assert group.std == pytest.approx((together / 1e300).std() * 1e300, rel=1e-9)
    assert group.mean == pytest.approx((together / 1e300).mean() * 1e300, rel=1e-9)
