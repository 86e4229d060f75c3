"""The diff engine against numpy computed independently on whole arrays, and matching rules."""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

import weightkit
from weightkit.converters.errors import UsageError
from weightkit.converters.store import Store, Tensor
from weightkit.diffing import engine, numeric, workers
from weightkit.diffing.engine import Options, compare_tensors, diff_stores, fingerprint
from weightkit.diffing.match import Var, match, normalize

TINY = 24  # bytes per chunk: every tensor below spans many chunks


def reference(a: np.ndarray, b: np.ndarray, atol=0.0, rtol=0.0, nan_equal=True) -> dict:
    """Every statistic from whole arrays, the obvious way."""
    if a.dtype.kind in "biu" or a.dtype == ml_dtypes.int4:
        ai = np.array([int(x) for x in a.ravel()], dtype=object)
        bi = np.array([int(x) for x in b.ravel()], dtype=object)
        ad = np.array([abs(x - y) for x, y in zip(ai, bi)], dtype=object)
        mism = int(np.count_nonzero(a != b))
        peak = int(ad.max()) if ad.size else None
        af, bf, adf = a.astype(np.float64).ravel(), b.astype(np.float64).ravel(), ad.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(adf == 0, 0.0, adf / np.abs(bf))
        out = dict(mismatched=mism, max_abs_diff=peak, finite=a.size, abs_d=adf, a=af, b=bf, rel=rel,
                   nan_a=0, nan_b=0, inf_a=0, inf_b=0)
        flat_abs = ad  # exact: two differences past 2**53 may round to one float
    else:
        wide = np.complex128 if np.iscomplexobj(a) or np.iscomplexobj(b) else np.float64
        a64, b64 = a.astype(wide).ravel(), b.astype(wide).ravel()
        close = np.isclose(a64, b64, rtol=rtol, atol=atol, equal_nan=nan_equal)
        m = np.isfinite(a64) & np.isfinite(b64)
        d = a64[m] - b64[m]
        adf = np.abs(d)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(adf == 0, 0.0, adf / np.abs(b64[m]))
        with np.errstate(invalid="ignore"):
            flat_abs = np.where(m, np.abs(a64 - b64), -1.0)
        out = dict(mismatched=int((~close).sum()),
                   max_abs_diff=float(adf.max()) if adf.size else None, finite=int(m.sum()),
                   abs_d=adf, a=a64[m], b=b64[m], rel=rel,
                   nan_a=int(np.isnan(a64).sum()), nan_b=int(np.isnan(b64).sum()),
                   inf_a=int(np.isinf(a64).sum()), inf_b=int(np.isinf(b64).sum()))
    if out["finite"]:
        na, nb = np.linalg.norm(out["a"]), np.linalg.norm(out["b"])
        nd = np.linalg.norm(out["abs_d"])
        out.update(
            max_rel_diff=float(out["rel"].max()),
            mean_abs_diff=float(out["abs_d"].mean()),
            rms_diff=float(np.sqrt(np.mean(out["abs_d"] ** 2))),
            rel_l2=float(nd / na) if na else (0.0 if nd == 0 else math.inf),
            cosine=float(np.vdot(out["a"], out["b"]).real / (na * nb)) if na and nb else None,
            max_abs_index=(list(np.unravel_index(int(np.argmax(flat_abs)), a.shape))
                           if out["max_abs_diff"] else None))
    else:
        out.update(max_rel_diff=None, mean_abs_diff=None, rms_diff=None, rel_l2=None,
                   cosine=None, max_abs_index=None)
    return out


def check(a: np.ndarray, b: np.ndarray, max_bytes: int = TINY, **tol) -> None:
    opts = Options(max_bytes=max_bytes, nan_equal=tol.pop("nan_equal", True), **tol)
    got = compare_tensors(Tensor.from_array(a), Tensor.from_array(b), opts)
    want = reference(a, b, opts.atol, opts.rtol, opts.nan_equal)
    assert got.size == a.size
    for key in ("mismatched", "nan_a", "nan_b", "inf_a", "inf_b", "max_abs_index"):
        assert getattr(got, key) == want[key], key
    if isinstance(want["max_abs_diff"], int):
        assert got.max_abs_diff == want["max_abs_diff"] and isinstance(got.max_abs_diff, int)
    for key in ("max_abs_diff", "max_rel_diff", "mean_abs_diff", "rms_diff", "rel_l2", "cosine"):
        g, w = getattr(got, key), want[key]
        if w is None or g is None:
            assert g is None and w is None, key
        else:
            assert g == pytest.approx(w, rel=1e-9, abs=1e-300), key


def perturbed(dtype, shape=(5, 7, 3), seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape).astype(dtype)
    b = a.copy()
    flat = b.reshape(-1)
    flat[rng.choice(flat.size, size=flat.size // 4, replace=False)] += np.asarray(
        rng.standard_normal(flat.size // 4) * 0.01, dtype=dtype)
    flat[-1] = np.asarray(3.0, dtype=dtype)  # a peak in the last chunk
    flat[4] = np.asarray(0.0, dtype=dtype)  # a zero in b: relative diff inf
    return a, b


FLOATS = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn]


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("tol", [{}, {"atol": 1e-3}, {"rtol": 1e-2}, {"atol": 1e-4, "rtol": 1e-3}])
def test_float_statistics_match_numpy(dtype, tol):
    a, b = perturbed(dtype)
    check(a, b, **tol)


@pytest.mark.parametrize("max_bytes", [1, 7, TINY, 100, 1 << 20])
def test_chunk_size_changes_nothing(max_bytes):
    a, b = perturbed(np.float32, shape=(3, 4, 5, 6), seed=1)
    check(a, b, max_bytes=max_bytes)


def test_reads_stay_within_the_chunk_size():
    a, b = perturbed(np.float32, shape=(6, 50), seed=2)
    biggest = []

    def spy(array):
        def get(index):
            block = array[index]
            biggest.append(block.nbytes)
            return block
        return Tensor(array.shape, array.dtype, get)

    compare_tensors(spy(a), spy(b), Options(max_bytes=64))
    assert max(biggest) <= 64 and len(biggest) >= 2 * (a.nbytes // 64)


def test_nan_inf_and_signed_zero():
    nan, inf = np.nan, np.inf
    a = np.array([nan, nan, 1.0, inf, inf, -inf, 0.0, -0.0, 2.0, inf, 5.0], np.float32)
    b = np.array([nan, 1.0, nan, inf, -inf, 3.0, -0.0, 0.0, 2.5, nan, 5.0], np.float32)
    check(a, b)
    check(a, b, nan_equal=False)
    check(a, b, atol=1.0)
    got = compare_tensors(Tensor.from_array(a), Tensor.from_array(b), Options(max_bytes=8))
    # mismatched: NaN/1, 1/NaN, inf/-inf, -inf/3, 2/2.5, inf/NaN
    assert got.mismatched == 6 and got.nan_a == 2 and got.nan_b == 3 and got.inf_a == 4
    assert got.max_abs_diff == 0.5 and got.max_abs_index == [8]
    unequal = compare_tensors(Tensor.from_array(a), Tensor.from_array(b), Options(nan_equal=False))
    assert unequal.mismatched == 7


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16, np.int16, np.complex64],
                         ids=lambda d: np.dtype(d).name)
def test_identical_tensors_need_no_arithmetic(dtype):
    """Bytewise identical pieces skip the float64 work; the statistics are still exact."""
    a = (np.arange(40) % 7 - 3).astype(dtype).reshape(5, 8)
    got = compare_tensors(Tensor.from_array(a), Tensor.from_array(a.copy()), Options(max_bytes=TINY))
    assert (got.mismatched, got.max_abs_diff, got.max_abs_index) == (0, 0, None)
    assert (got.rel_l2, got.cosine, got.max_rel_diff, got.rms_diff) == (0.0, 1.0, 0.0, 0.0)
    zeros = compare_tensors(Tensor.from_array(np.zeros(9, dtype)), Tensor.from_array(np.zeros(9, dtype)))
    assert zeros.mismatched == 0 and zeros.rel_l2 == 0.0 and zeros.cosine is None


def test_identical_denormals_whose_squares_underflow():
    tiny = np.array([5e-324, -5e-324, 0.0])
    check(tiny, tiny.copy())  # cosine None, as where the squares are summed


@pytest.mark.parametrize("where", [0, 50, 99])
def test_a_late_difference_after_identical_pieces(where, monkeypatch):
    """Σa² of the identical pieces before the first difference is read again when needed."""
    monkeypatch.setattr(numeric, "PIECE", 4)
    rng = np.random.default_rng(9)
    a = rng.standard_normal((10, 10)).astype(np.float32)
    b = a.copy()
    b.reshape(-1)[where] += 1
    for max_bytes in (TINY, 1 << 20):
        check(a, b, max_bytes=max_bytes)


def test_identical_bytes_with_nan():
    a = np.array([1.0, np.nan, 2.0, np.inf, 0.0], np.float32)
    for nan_equal in (True, False):
        check(a, a.copy(), nan_equal=nan_equal)
    got = compare_tensors(Tensor.from_array(a), Tensor.from_array(a.copy()), Options(nan_equal=False))
    assert got.mismatched == 1 and got.nan_a == got.nan_b == 1 and got.inf_a == 1


def test_progress_counts_every_byte(monkeypatch):
    monkeypatch.setattr(numeric, "PIECE", 16)  # progress is reported piece by piece
    a, b = perturbed(np.float32, shape=(30, 20))
    seen = []
    compare_tensors(Tensor.from_array(a), Tensor.from_array(b.astype(np.float64)),
                    Options(max_bytes=100, progress=seen.append))
    assert sum(seen) == a.nbytes + a.size * 8 and len(seen) > 10


def test_signed_zero_and_nan_are_same():
    a = Store.from_arrays({"w": np.array([0.0, np.nan, 1.0])})
    b = Store.from_arrays({"w": np.array([-0.0, np.nan, 1.0])})
    assert diff_stores(a, b).identical
    assert not diff_stores(a, b, Options(nan_equal=False)).identical


@pytest.mark.parametrize("a,b", [
    (np.array([np.iinfo(np.int64).max, np.iinfo(np.int64).min, 0, -5]),
     np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max, 0, 7])),
    (np.array([0, 255, 3, 200], np.uint8), np.array([255, 0, 3, 100], np.uint8)),
    (np.array([np.iinfo(np.uint64).max, 0], np.uint64), np.array([0, 1], np.uint64)),
    (np.array([-128, 127, 1], np.int8), np.array([127, -128, 1], np.int8)),
    (np.arange(60, dtype=np.int32).reshape(3, 4, 5), np.arange(60, dtype=np.int32).reshape(3, 4, 5) % 7),
    (np.array([True, False, True, True]), np.array([True, True, False, True])),
    (np.array([1, -8, 7, 0], ml_dtypes.int4), np.array([1, 7, -8, 0], ml_dtypes.int4)),
], ids=["int64-extremes", "uint8-wrap", "uint64", "int8", "int32", "bool", "int4"])
def test_integers_are_exact(a, b):
    check(a, b, max_bytes=8)


def test_integer_tolerance_is_ignored():
    a, b = np.array([100, 5], np.int64), np.array([101, 5], np.int64)
    assert compare_tensors(Tensor.from_array(a), Tensor.from_array(b), Options(atol=10)).mismatched == 1


def test_uint8_difference_is_not_wrapped():
    got = compare_tensors(Tensor.from_array(np.array([0], np.uint8)),
                          Tensor.from_array(np.array([255], np.uint8)))
    assert got.max_abs_diff == 255


def test_int64_extremes_do_not_overflow():
    big, small = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    got = compare_tensors(Tensor.from_array(np.array([big])), Tensor.from_array(np.array([small])))
    assert got.max_abs_diff == 2**64 - 1


def test_complex():
    rng = np.random.default_rng(3)
    a = (rng.standard_normal(40) + 1j * rng.standard_normal(40)).astype(np.complex64)
    b = a.copy()
    b[::3] += 0.5j
    check(a, b, max_bytes=16)
    check(a, b, atol=0.1, rtol=0.5)


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2)])
def test_scalars_and_zero_size(shape):
    a = np.full(shape, 1.5, np.float32)
    b = np.full(shape, 2.0, np.float32)
    check(a, b)
    check(a, a.copy())
    got = compare_tensors(Tensor.from_array(a), Tensor.from_array(b))
    assert got.size == a.size and got.mismatched == a.size


def test_scalar_index_is_empty():
    got = compare_tensors(Tensor.from_array(np.float32(1)), Tensor.from_array(np.float32(3)))
    assert got.max_abs_index == [] and got.max_abs_diff == 2.0 and got.max_rel_diff == pytest.approx(2 / 3)


def test_strings_compared_exactly():
    a = np.array([b"x", b"y", b"z"], dtype=object)
    b = np.array([b"x", b"Y", b"z"], dtype=object)
    got = compare_tensors(Tensor.from_array(a), Tensor.from_array(b), Options(max_bytes=8, atol=1))
    assert got.mismatched == 1 and got.max_abs_diff is None
    result = diff_stores(Store.from_arrays({"s": a}), Store.from_arrays({"s": b}))
    assert [e.status for e in result.entries] == ["changed"]


def test_statuses_and_summary():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    moved = rng.standard_normal(6).astype(np.float32)
    a = Store.from_arrays({"same": w, "changed": w, "gone": np.zeros(2), "shape": np.zeros((2, 3)),
                           "dtype": w, "old_name": moved})
    b = Store.from_arrays({"same": w, "changed": w * 2, "shape": np.zeros((3, 2)),
                           "dtype": w.astype(np.float16), "new_name": moved, "new": np.ones(5)})
    result = diff_stores(a, b, Options(match="name", max_bytes=TINY))
    status = {e.name: e.status for e in result.entries}
    assert status == {"same": "same", "changed": "changed", "gone": "removed",
                      "shape": "shape_changed", "dtype": "dtype_changed", "old_name": "renamed",
                      "new": "added"}
    by_name = {e.name: e for e in result.entries}
    assert by_name["old_name"].name_b == "new_name" and by_name["old_name"].matched_by == "values"
    assert by_name["dtype"].max_abs_diff == pytest.approx(
        float(np.abs(w.astype(np.float64) - w.astype(np.float16).astype(np.float64)).max()))
    assert by_name["shape"].mismatched is None
    s = result.summary
    assert s["counts"] == {"same": 1, "changed": 1, "added": 1, "removed": 1, "renamed": 1,
                           "shape_changed": 1, "dtype_changed": 1}
    assert s["variables_a"] == 6 and s["variables_b"] == 6 and not s["identical"]
    assert s["unmatched_a"] == ["gone"] and s["unmatched_b"] == ["new"]
    assert s["elements_a"] == 12 + 12 + 2 + 6 + 12 + 6
    assert s["mismatched_elements"] == sum(e.mismatched or 0 for e in result.entries)
    assert s["max_abs_diff"] == pytest.approx(float(np.abs(w).max()))
    assert not result.identical


def test_renamed_requires_equal_values():
    a = Store.from_arrays({"old": np.arange(4.0)})
    b = Store.from_arrays({"new": np.arange(4.0) + 1})
    assert {e.status for e in diff_stores(a, b, Options(match="name")).entries} == {"added", "removed"}


def test_identical_stores():
    arrays = {"a": np.arange(6.0).reshape(2, 3), "b": np.int8([1, 2]), "s": np.float32(3)}
    result = diff_stores(Store.from_arrays(arrays), Store.from_arrays(dict(arrays)))
    assert result.identical and result.summary["counts"]["same"] == 3
    assert all(e.matched_by == "name" and e.mismatched == 0 for e in result.entries)


def test_selection():
    meta_opt = {"role": "optimizer", "key": "opt"}
    a = Store({"dense/kernel": Tensor.from_array(np.zeros(3)),
               "dense/bias": Tensor.from_array(np.zeros(3)),
               "adam/m": Tensor.from_array(np.zeros(3), meta_opt)})
    b = Store({"dense/kernel": Tensor.from_array(np.ones(3)),
               "dense/bias": Tensor.from_array(np.ones(3)),
               "adam/m": Tensor.from_array(np.ones(3), meta_opt)})
    names = lambda **kw: [e.name for e in diff_stores(a, b, Options(**kw)).entries]  # noqa: E731
    assert names() == ["dense/kernel", "dense/bias", "adam/m"]
    assert names(no_optimizer=True) == ["dense/kernel", "dense/bias"]
    assert names(include=("dense/*",), exclude=("*/bias",)) == ["dense/kernel"]
    assert names(include=("opt",)) == ["adam/m"]  # the original key selects too


def test_a_selection_is_made_of_the_pairs_the_whole_diff_makes():
    """--include/--exclude select after pairing: the two sides may name a variable otherwise
    (another format's naming, a rename), and a pair (one variable under two names) is kept
    when either side's name is included and neither side's is excluded, so that a selection
    never reports a variable removed whose counterpart it did not look at, and pairs nothing
    the whole diff does not."""
    w, v = np.arange(6.0).reshape(2, 3), np.ones(4)
    a = Store.from_arrays({"encoder/w": w, "encoder/b": v, "head/w": w * 2}, format="keras")
    other = {"enc/w": w, "encoder/b": v, "head/w": w * 2, "encoder/gone_in_b": v}
    entries = lambda a, b, **kw: [(e.status, e.name_a, e.name_b, e.matched_by)  # noqa: E731
                                  for e in diff_stores(a, b, Options(**kw)).entries]
    b = Store.from_arrays({k: x for k, x in other.items() if k != "encoder/gone_in_b"},
                          format="safetensors")
    assert entries(a, b, include=("encoder/*",)) == [("same", "encoder/w", "enc/w", "values"),
                                                    ("same", "encoder/b", "encoder/b", "name")]
    b = Store.from_arrays(other, format="keras")  # one format: a rename
    assert entries(b, a, include=("enc/*", "encoder/b", "encoder/gone_in_b")) == [
        ("renamed", "enc/w", "encoder/w", "values"), ("same", "encoder/b", "encoder/b", "name"),
        ("removed", "encoder/gone_in_b", None, None)]
    # a pair is one variable under two names: excluding either name leaves it out whole
    assert entries(a, b, include=("encoder/*",), exclude=("enc/*",)) == [
        ("same", "encoder/b", "encoder/b", "name"), ("added", None, "encoder/gone_in_b", None)]
    assert entries(a, b, exclude=("enc/w",)) == [  # --exclude alone likewise
        ("same", "encoder/b", "encoder/b", "name"), ("same", "head/w", "head/w", "name"),
        ("added", None, "encoder/gone_in_b", None)]
    result = diff_stores(a, b, Options(include=("encoder/*",)))
    assert result.summary["variables_a"] == 2 and result.summary["variables_b"] == 3
    result = diff_stores(a, b, Options(include=("encoder/*",), exclude=("enc/*",)))
    assert result.summary["variables_a"] == 1 and result.summary["variables_b"] == 2
    with pytest.raises(UsageError, match="leaves none of 2"):  # x kept, but its pair is not
        diff_stores(Store.from_arrays({"x": w}), Store.from_arrays({"y": w}),
                    Options(include=("x",), exclude=("y",)))


def test_a_selection_pairs_no_differently_than_the_whole_diff():
    """A selection's pairs are the whole diff's: no scope stripped from the selected names
    alone (`encoder/dense/kernel` is not `dense/kernel`), no unselected variable taken as a
    counterpart that has its own (a zero bias equal to another's), structure pairs kept."""
    rng = np.random.default_rng(0)
    k1, b1, k2, b2 = (rng.normal(size=s) for s in ((3, 2), (2,), (3, 2), (2,)))
    a = Store.from_arrays({"encoder/dense/kernel": k1, "encoder/dense/bias": b1,
                           "dense/kernel": k2, "dense/bias": b2})
    b = Store.from_arrays({"enc/dense/kernel": k1, "enc/dense/bias": b1,
                           "dense/kernel": k2, "dense/bias": b2})
    whole = {(e.name_a, e.name_b) for e in diff_stores(a, b).entries}
    part = diff_stores(a, b, Options(include=("encoder/*",))).entries
    assert {(e.name_a, e.name_b) for e in part} <= whole and len(part) == 2
    zeros = np.zeros(4)
    a = Store.from_arrays({"dense/kernel": k1, "dense/bias": zeros, "extra/kernel": k2,
                           "extra/bias": zeros})
    b = Store.from_arrays({"dense/kernel": k1, "dense/bias": zeros})
    assert [(e.status, e.name_a, e.name_b) for e in
            diff_stores(a, b, Options(include=("extra/*",))).entries] == [
        ("removed", "extra/kernel", None), ("removed", "extra/bias", None)]
    a = Store.from_arrays({"x": k1, "dense_3/kernel": k2, "y": b1})
    b = Store.from_arrays({"x": k1, "dense_4/kernel": k2 * 1.5, "y": b1})
    whole = [(e.status, e.name_a, e.name_b) for e in diff_stores(a, b).entries
             if e.name_a == "dense_3/kernel"]
    assert [(e.status, e.name_a, e.name_b) for e in
            diff_stores(a, b, Options(include=("dense_3/*",))).entries] == whole


@pytest.mark.parametrize("kw, message", [
    ({"exclude": ("head/*", "adam/*")}, "leaves none of 3 variable(s)"),
    ({"exclude": ("*",)}, "leaves none of 3"),
    ({"include": ("haed/*",)}, "--include 'haed/*' matched none of 3 variable(s); did you mean "
                               "'head/*'"),
    ({"exclude": ("head/kernal",)}, "did you mean 'head/kernel'"),
    ({"include": ("adam/*",), "no_optimizer": True}, "leaves none"),
])
def test_a_selection_that_selects_nothing_is_an_error(kw, message):
    """A typo in --include/--exclude, or a selection leaving nothing to compare, is exit 2 with
    the closest names, never "identical: no variables"."""
    a = Store({"head/kernel": Tensor.from_array(np.zeros(3)),
               "head/bias": Tensor.from_array(np.zeros(3)),
               "adam/m": Tensor.from_array(np.zeros(3), {"role": "optimizer"})})
    with pytest.raises(UsageError) as caught:
        diff_stores(a, a, Options(**kw))
    assert message in str(caught.value)


def test_a_renamed_layers_other_variables_follow_its_kernel():
    """Kernels found by values under new layer names take their layers' biases along: equal
    zero biases are no evidence by values, and aligning them by order paired block_3's bias
    with stage_1's (a change credited to the wrong layer; an identical one reported removed
    and added when the names sort otherwise)."""
    rng = np.random.default_rng(0)
    k3, k4, zeros = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), np.zeros(3)
    moved = zeros.copy()
    moved[0] = 1e-3
    a = Store.from_arrays({"block_3/dense/kernel": k3, "block_3/dense/bias": zeros,
                           "block_4/dense/kernel": k4, "block_4/dense/bias": zeros})
    b = Store.from_arrays({"stage_1/dense/kernel": k4, "stage_1/dense/bias": zeros,
                           "stage_9/dense/kernel": k3, "stage_9/dense/bias": moved})
    pairs = {(e.name_a, e.name_b): e.status for e in diff_stores(a, b).entries}
    assert pairs == {("block_3/dense/kernel", "stage_9/dense/kernel"): "renamed",
                     ("block_3/dense/bias", "stage_9/dense/bias"): "changed",
                     ("block_4/dense/kernel", "stage_1/dense/kernel"): "renamed",
                     ("block_4/dense/bias", "stage_1/dense/bias"): "same"}
    result = diff_stores(a, b, Options(include=("block_3/*",)))
    assert not result.identical and [e.name_b for e in result.entries] == [
        "stage_9/dense/kernel", "stage_9/dense/bias"]


def test_a_selection_emptied_through_original_keys_says_so():
    """A Keras 3 TF checkpoint keys its model weights `optimizer/_trainable_variables/N`:
    `--exclude 'optimizer/*'` takes them by key, and the error says that."""
    key = {"key": "optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE"}
    a = Store({"d1/kernel": Tensor.from_array(np.zeros(3), key)})
    with pytest.raises(UsageError, match=r"leaves none of 1 variable\(s\); --exclude "
                       r"'optimizer/\*' matches 'd1/kernel' by its key 'optimizer/_train"):
        diff_stores(a, a, Options(exclude=("optimizer/*",)))


def test_workers_give_the_same_result():
    rng = np.random.default_rng(5)
    arrays = {f"v{i}": rng.standard_normal((i + 1, 9)) for i in range(12)}
    other = {k: v + (0.1 if i % 3 == 0 else 0) for i, (k, v) in enumerate(arrays.items())}
    one = diff_stores(Store.from_arrays(arrays), Store.from_arrays(other), Options(workers=1))
    two = diff_stores(Store.from_arrays(arrays), Store.from_arrays(other), Options(workers=3))
    assert one.as_dict() == two.as_dict()


def test_worker_processes_give_the_same_result(monkeypatch):
    monkeypatch.setattr(workers, "PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(engine, "BATCH_PAIRS", 1)  # a job per pair, as for large tensors
    monkeypatch.setattr(workers, "_in_processes", spy := _Spy(workers._in_processes))
    rng = np.random.default_rng(6)
    arrays = {f"v{i}": rng.standard_normal((i + 1, 9)).astype(dtype)
              for i, dtype in enumerate([np.float32, np.float64, np.int8, np.float16] * 3)}
    other = {k: v + (1 if i % 3 == 0 else 0) for i, (k, v) in enumerate(arrays.items())}
    seen = []
    one = diff_stores(Store.from_arrays(arrays), Store.from_arrays(other), Options(workers=1))
    two = diff_stores(Store.from_arrays(arrays), Store.from_arrays(other),
                      Options(workers=2, progress=seen.append))
    assert spy.calls == 1 and one.as_dict() == two.as_dict()
    assert sum(seen) == 2 * sum(a.nbytes for a in arrays.values())


def test_an_error_in_a_worker_process_is_the_same_error(monkeypatch):
    monkeypatch.setattr(workers, "PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(engine, "BATCH_PAIRS", 1)

    def broken(index):
        raise weightkit.CorruptFileError("checksum does not match", "/x/ckpt.data-00000-of-00001")
    bad = Tensor((3,), np.float32, broken)
    a = Store({"w": Tensor.from_array(np.zeros(3, np.float32)), "v": bad})
    with pytest.raises(weightkit.CorruptFileError) as caught:
        diff_stores(a, a, Options(workers=2))
    assert str(caught.value) == "/x/ckpt.data-00000-of-00001: checksum does not match"
    assert caught.value.path == "/x/ckpt.data-00000-of-00001"


class _Spy:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_bad_options():
    with pytest.raises(ValueError):
        Options(atol=-1)
    with pytest.raises(ValueError):
        Options(rtol=float("nan"))
    with pytest.raises(ValueError):
        Options(match="fuzzy")


def test_fingerprint_is_content():
    t = Tensor.from_array(np.arange(10.0))
    assert fingerprint(t, 8) == fingerprint(Tensor.from_array(np.arange(10.0)), 1 << 20)
    assert fingerprint(t) != fingerprint(Tensor.from_array(np.arange(10.0) + 1))


# --- matching -------------------------------------------------------------------------------

@pytest.mark.parametrize("name,normal", [
    ("dense/kernel:0", "dense/kernel"),
    ("model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE", "dense/kernel"),
    ("sequential/conv/bias", "conv/bias"),
    ("sequential_3/conv/bias", "conv/bias"),
    ("layers/dense/vars/0", "dense/0"),
    ("dense/0", "dense/0"),
    ("Adam/m/dense/kernel:0", "adam/m/dense/kernel"),
    ("vars", "vars"),
])
def test_normalize(name, normal):
    assert normalize(name) == normal


def _vars(names, shapes=None):
    shapes = shapes or [(2,)] * len(names)
    return [Var(n, "weight", s, "float32") for n, s in zip(names, shapes)]


def test_match_stages():
    a = _vars(["x", "model/d/kernel:0", "l/vars/0", "other"])
    b = _vars(["x", "d/kernel", "l/0", "renamed"])
    got = match(a, b, "name")
    assert [(p.a, p.b, p.matched_by) for p in got.pairs] == [
        ("x", "x", "name"), ("model/d/kernel:0", "d/kernel", "normalized"),
        ("l/vars/0", "l/0", "normalized")]
    assert got.only_a == ["other"] and got.only_b == ["renamed"]
    auto = match(a, b, "auto")
    assert auto.pairs[-1].matched_by == "structure" and not auto.only_a and not auto.only_b


def test_ambiguous_normalized_names_are_not_paired():
    got = match(_vars(["a/w:0", "b/w"]), _vars(["w", "model/w"]), "name")
    assert [p.matched_by for p in got.pairs] == []


def test_common_scope_of_one_side_is_dropped():
    a = _vars(["my_net/conv/kernel", "my_net/conv/bias"])
    b = _vars(["conv/kernel", "conv/bias"])
    got = match(a, b, "name")
    assert [(p.a, p.b) for p in got.pairs] == [("my_net/conv/kernel", "conv/kernel"),
                                              ("my_net/conv/bias", "conv/bias")]


def test_structure_alignment_skips_an_inserted_variable():
    a = _vars(["k0", "b0", "k1", "b1"], [(3, 4), (4,), (4, 2), (2,)])
    b = _vars(["w0", "w1", "extra", "w2", "w3"], [(3, 4), (4,), (7, 7), (4, 2), (2,)])
    got = match(a, b, "structure")
    assert [(p.a, p.b) for p in got.pairs] == [("k0", "w0"), ("b0", "w1"), ("k1", "w2"), ("b1", "w3")]
    assert got.only_b == ["extra"] and all(p.matched_by == "structure" for p in got.pairs)


def test_auto_skips_the_structure_alignment_when_names_pair_everything(monkeypatch):
    from weightkit.diffing import match as matching
    a = _vars([f"l{i}/w" for i in range(50)], [(4,)] * 50)
    b = _vars([f"l{i}/w" for i in range(50)] + ["extra"], [(4,)] * 51)
    expected = match(a, b, "auto")
    aligned, align = [], matching._align
    monkeypatch.setattr(matching, "_align",
                        lambda left_a, left_b: aligned.append(len(left_a)) or align(left_a, left_b))
    got = match(a, b, "auto")
    assert got == expected and len(got.pairs) == 50 and got.only_b == ["extra"]
    assert aligned == [0]  # only the leftovers of the names: "extra" against nothing


def test_structure_mode_reports_changes():
    a = Store.from_arrays({"dense/kernel": np.ones((3, 2)), "dense/bias": np.zeros(2)})
    b = Store.from_arrays({"layers/dense/vars/0": np.ones((3, 2)) * 2, "layers/dense/vars/1": np.zeros(2)})
    result = diff_stores(a, b, Options(match="structure"))
    assert [(e.name_a, e.name_b, e.status) for e in result.entries] == [
        ("dense/kernel", "layers/dense/vars/0", "changed"), ("dense/bias", "layers/dense/vars/1", "same")]


# --- properties -----------------------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402


@st.composite
def array_pairs(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, np.int8, np.uint8, np.int64]))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
    width = np.dtype(dtype).itemsize * 8
    # float64 beyond 1e150 would overflow the sums of squares (norms): out of scope
    elements = (None if np.dtype(dtype).kind != "f"
                else st.floats(width=width) if width < 64
                else st.one_of(st.floats(-1e150, 1e150), st.sampled_from([np.nan, np.inf, -np.inf])))
    a = draw(hnp.arrays(dtype, shape, elements=elements))
    mask = draw(hnp.arrays(np.bool_, shape))
    b = np.where(mask, draw(hnp.arrays(dtype, shape, elements=elements)), a).astype(dtype)
    return a, b


@settings(max_examples=150, deadline=None)
@given(pair=array_pairs(), max_bytes=st.integers(1, 64), atol=st.sampled_from([0.0, 1e-3, 1.0]),
       nan_equal=st.booleans())
def test_any_arrays_any_chunking(pair, max_bytes, atol, nan_equal):
    a, b = pair
    with np.errstate(all="ignore"):
        check(a, b, max_bytes=max_bytes, atol=atol, nan_equal=nan_equal)


def test_keras3_positional_names_pair_with_named_ones():
    a = _vars(["bn/0", "bn/1", "bn/2", "bn/3", "dense/vars/0", "dense/vars/1"],
              [(4,), (4,), (4,), (4,), (4, 2), (2,)])
    b = _vars(["model/bn/moving_mean", "model/bn/moving_variance", "model/bn/gamma",
               "model/bn/beta", "dense/bias", "dense/kernel"],
              [(4,), (4,), (4,), (4,), (2,), (4, 2)])
    got = match(a, b, "auto")
    assert {p.a: p.b for p in got.pairs} == {
        "bn/0": "model/bn/gamma", "bn/1": "model/bn/beta", "bn/2": "model/bn/moving_mean",
        "bn/3": "model/bn/moving_variance", "dense/vars/0": "dense/kernel",
        "dense/vars/1": "dense/bias"}
    swapped = match(b, a, "auto")
    assert {p.b: p.a for p in swapped.pairs} == {p.a: p.b for p in got.pairs}
    assert not got.only_a and not got.only_b


def test_renamed_only_within_one_format():
    a = Store.from_arrays({"d/0": np.arange(3.0)}, format="keras")
    b = Store.from_arrays({"d/kernel": np.arange(3.0)}, format="tf-checkpoint")
    entry, = diff_stores(a, b).entries
    assert (entry.status, entry.matched_by) == ("same", "values")
    same_format = diff_stores(a, b.replace(format="keras")).entries[0]
    assert same_format.status == "renamed"


def test_small_pairs_are_compared_many_to_a_job(monkeypatch):
    """Pairs of small tensors go many to a job (a job per pair of 100,000 variables spent
    seconds handing them to the pool); results stay in pair order, large pairs alone."""
    calls = []
    real = engine.run_all
    monkeypatch.setattr(engine, "run_all", lambda fn, jobs, sizes, **kw: calls.append(
        [len(job[0]) for job in jobs]) or real(fn, jobs, sizes, **kw))
    monkeypatch.setattr(engine, "BATCH_PAIRS", 1000)
    arrays = {f"v{i}": np.full(10 if i != 5 else 400, i, np.float32) for i in range(40)}
    other = {k: v + (i % 2) for i, (k, v) in enumerate(arrays.items())}
    result = diff_stores(Store.from_arrays(arrays), Store.from_arrays(other), Options())
    assert calls and len(calls[0]) < 40 and 1 in calls[0] and sum(calls[0]) == 40
    assert [e.status for e in result.entries] == ["same", "changed"] * 20


def test_the_summary_line_groups_digits_as_show_does():
    from weightkit.diffing.render import summary_line
    a = Store.from_arrays({f"v{i}": np.zeros(1) for i in range(1200)})
    assert summary_line(diff_stores(a, a)).startswith("identical: 1,200 same; 0 of 1,200 ")
