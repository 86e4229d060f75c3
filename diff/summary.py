"""Per-tensor statistics for `show`, computed in one chunked pass with bounded memory."""
from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..converters.dtypes import is_string
from ..converters.store import (CHUNK_BYTES, Extent, Progress, Store, Tensor, gc_paused,
                                joined_bytes, raw_parts, read_many)
from . import numeric
from .numeric import dot
from .workers import run_all


@dataclass(slots=True)
class TensorStats:
    size: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    zeros: int = 0
    nan: int = 0
    inf: int = 0
    finite: int = field(default=0, repr=False)  # the count behind mean and std
    m2: float = field(default=0.0, repr=False)  # Σ(x − mean)²: rollups merge these, not stds

    @property
    def zero_fraction(self) -> float | None:
        return self.zeros / self.size if self.size else None

    def as_dict(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in fields(self)
                   if f.name not in ("finite", "m2")}, "zero_fraction": self.zero_fraction}


SMALL_BYTES = 64 << 10  # tensors up to this size are summarised many at a time
BATCH_ELEMENTS = 1 << 18  # elements of small tensors summarised together


def stats_of(tensors: list[Tensor], progress: Progress | None = None
             ) -> list[TensorStats]:
    """`tensor_stats` of each tensor, on every core (see `workers.py`); `progress` gets the
    bytes of each tensor done. Small numeric tensors go in batches (`batch_stats`): a file of
    100,000 variables costs per element, not per variable."""
    out: list[TensorStats | None] = [None] * len(tensors)
    jobs: list[tuple[list[Tensor]]] = []
    where: list[list[int]] = []  # the indices of each job's tensors
    sizes: list[int] = []  # each job's bytes
    whole: dict[np.dtype, bool] = {}  # dtype -> summarised alone when small (strings)
    small: list[int] = []
    places: list[tuple[int, int]] = []
    for i, tensor in enumerate(tensors):
        dtype = tensor.dtype
        alone = whole.get(dtype)
        if alone is None:
            alone = whole[dtype] = is_string(dtype)
        nbytes = tensor.size * dtype.itemsize
        if alone or nbytes > SMALL_BYTES:
            jobs.append(([tensor],))
            where.append([i])
            sizes.append(nbytes)
        elif not nbytes:
            out[i] = TensorStats(tensor.size)
        else:
            small.append(i)
            get = tensor._get
            places.append((id(get.source), get.offset) if isinstance(get, Extent) else (0, -1))
    if any(map(operator.gt, places, places[1:])):  # neighbours in their file batched together
        small = [small[k] for k in sorted(range(len(small)), key=places.__getitem__)]
    start = elements = nbytes = 0
    for end, i in enumerate(small, 1):
        tensor = tensors[i]
        elements += tensor.size
        nbytes += tensor.size * tensor.dtype.itemsize
        if elements >= BATCH_ELEMENTS or end == len(small):
            where.append(small[start:end])
            jobs.append(([tensors[k] for k in where[-1]],))
            sizes.append(nbytes)
            start, elements, nbytes = end, 0, 0
    done = run_all(_stats_job, jobs, sizes, progress=progress)
    for indices, results in zip(where, done):
        for i, stats in zip(indices, results):
            out[i] = stats
    return out  # type: ignore[return-value]


def _stats_job(tensors: list[Tensor], progress: Progress | None
               ) -> list[TensorStats]:
    if len(tensors) == 1 and (tensors[0].nbytes > SMALL_BYTES or is_string(tensors[0].dtype)):
        stats = [tensor_stats(tensors[0])]
    else:
        stats = batch_stats(tensors)
    if progress is not None:
        progress(sum(t.size * t.dtype.itemsize for t in tensors))
    return stats


def batch_stats(tensors: list[Tensor]) -> list[TensorStats]:
    """`tensor_stats` of many small numeric tensors at once: each read whole, all widened
    into one float64 array, and every statistic taken per tensor by segment reductions
    (`ufunc.reduceat`), with the same definitions as `tensor_stats`."""
    sizes = [t.size for t in tensors]
    if 0 not in sizes:  # (stats_of sends none empty)
        with gc_paused():  # 100,000 objects (see gc_paused)
            return _segment_stats(_values(tensors), np.array(sizes, np.int64))
    which = [i for i, size in enumerate(sizes) if size]
    out: list[TensorStats | None] = [None] * len(tensors)
    if which:
        nonempty = [tensors[i] for i in which]
        lengths = np.fromiter((sizes[i] for i in which), np.int64, len(which))
        with gc_paused():  # 100,000 objects (see gc_paused)
            for i, stats in zip(which, _segment_stats(_values(nonempty), lengths)):
                out[i] = stats
    return [TensorStats(size) if s is None else s for s, size in zip(out, sizes)]


def _values(tensors: list[Tensor]) -> np.ndarray:
    """The tensors' elements (complex ones: magnitudes) one after another, as float64: one
    read when they lie back to back in a file in one dtype (`joined_bytes`), cut from one read
    per run when they lie close together (`raw_parts`), else an array per tensor
    (`read_many`)."""
    dtype = tensors[0].dtype
    data = None
    if all(t.dtype == dtype for t in tensors):
        data = joined_bytes(tensors)
        if data is None:
            parts = raw_parts(tensors)
            data = None if parts is None else b"".join(parts)
    if data is not None:
        arrays = [np.frombuffer(data, dtype)]
    else:
        arrays = [a.reshape(-1) for a in read_many(tensors)]
    arrays = [np.abs(a) if a.dtype.kind == "c" else a for a in arrays]
    return np.concatenate(arrays, dtype=np.float64, casting="unsafe")


def _segment_stats(w: np.ndarray, lengths: np.ndarray) -> list[TensorStats]:
    """`batch_stats` of non-empty flat segments of `lengths` elements of `w` (float64), by
    segment reductions."""
    starts = np.zeros(len(lengths), np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    zeros = np.add.reduceat(w == 0.0, starts)
    finite = np.isfinite(w)
    if finite.all():
        counts, nan, inf = lengths, np.zeros_like(lengths), np.zeros_like(lengths)
        lo, hi = np.minimum.reduceat(w, starts), np.maximum.reduceat(w, starts)
    else:
        counts = np.add.reduceat(finite, starts)
        nan = np.add.reduceat(np.isnan(w), starts)
        inf = lengths - counts - nan
        lo = np.minimum.reduceat(np.where(finite, w, np.inf), starts)
        hi = np.maximum.reduceat(np.where(finite, w, -np.inf), starts)
        w = np.where(finite, w, 0.0)
    peak = np.maximum(np.abs(lo), np.abs(hi))
    huge = peak > 2.0 ** HUGE_EXP  # summed in units of 2**exp (see Moments)
    exp = np.where(huge, np.frexp(np.where(huge, peak, 1.0))[1] + 32, 0)
    if huge.any():
        w = w * np.repeat(np.ldexp(1.0, -exp), lengths)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = np.add.reduceat(w, starts) / counts
        deviation = w - np.repeat(mean, lengths)
        if not finite.all():
            deviation[~finite] = 0.0
        m2 = np.add.reduceat(deviation * deviation, starts)
        std = np.ldexp(np.sqrt(m2 / counts), exp)
        mean, m2 = np.ldexp(mean, exp), np.ldexp(m2, 2 * exp)  # m2 may overflow to inf
    columns = [c.tolist() for c in (lengths, lo, hi, mean, std, zeros, nan, inf, counts, m2)]
    if counts.all():  # every segment has a finite value (the common batch): made in C's loop
        return list(map(TensorStats, *columns))
    return [TensorStats(n, lo_, hi_, mean_, std_, z, nan_, inf_, c, m2_) if c else
            TensorStats(n, zeros=z, nan=nan_, inf=inf_)
            for n, lo_, hi_, mean_, std_, z, nan_, inf_, c, m2_
            in zip(*columns)]


def tensor_stats(tensor: Tensor, max_bytes: int = CHUNK_BYTES) -> TensorStats:
    """min/max/mean/std over finite values, and counts of zeros, NaN and Inf.

    Means and variances are merged piece by piece (Chan et al.) in float64; complex tensors
    are summarised by magnitude; strings only by count.
    """
    stats = TensorStats(size=tensor.size)
    if is_string(tensor.dtype):
        for _ in tensor.iter_chunks(max_bytes):  # read, so that damaged strings are an error
            pass
        return stats
    if tensor.size == 0:
        return stats
    moments = Moments()
    wide = np.empty(min(numeric.PIECE, tensor.size))
    flags = np.empty(wide.size, np.bool_)
    for chunk in tensor.iter_chunks(max_bytes):
        for start in range(0, chunk.size, numeric.PIECE):
            piece = chunk[start:start + numeric.PIECE]
            n = piece.size
            w = wide[:n]
            np.copyto(w, np.abs(piece) if piece.dtype.kind == "c" else piece, casting="unsafe")
            stats.zeros += int(np.count_nonzero(np.equal(w, 0.0, out=flags[:n])))
            lo, hi = float(w.min()), float(w.max())
            if not (math.isfinite(lo) and math.isfinite(hi)):  # NaN propagates to min and max
                finite = np.isfinite(w)
                nan = int(np.count_nonzero(np.isnan(w)))
                stats.nan += nan
                stats.inf += n - int(np.count_nonzero(finite)) - nan
                w = w[finite]
                if not w.size:
                    continue
                lo, hi = float(w.min()), float(w.max())
            moments.add(w, lo, hi)
    if moments.count:
        stats.min, stats.max, stats.mean = moments.lo, moments.hi, moments.mean
        stats.std = moments.std
        stats.finite, stats.m2 = moments.count, moments.m2
    return stats


HUGE_EXP = 400  # values beyond 2**400 are summed scaled down: their squares would overflow


class Moments:
    """Count, min, max, mean and the sum of squared deviations, merged piece by piece (`add`
    values, `merge` the moments of other values). Values as large as 2**400 and beyond are
    summed in units of 2**exp, so that no sum overflows: the mean and standard deviation of
    finite values are finite (`m2` itself, in true units, may be inf)."""

    def __init__(self) -> None:
        self.count, self._mean, self._m2, self.exp = 0, 0.0, 0.0, 0
        self.lo, self.hi = math.inf, -math.inf

    @property
    def mean(self) -> float:
        return _ldexp(self._mean, self.exp)

    @property
    def m2(self) -> float:
        return _ldexp(self._m2, 2 * self.exp)

    @property
    def std(self) -> float:
        return _ldexp(math.sqrt(self._m2 / self.count), self.exp) if self.count else 0.0

    def add(self, w: np.ndarray, lo: float, hi: float) -> None:
        """Merge the finite float64 values `w` (a working copy: it is overwritten)."""
        self._units(lo, hi)
        if self.exp:
            np.multiply(w, math.ldexp(1.0, -self.exp), out=w)
        n = w.size
        mean = float(w.sum()) / n
        np.subtract(w, mean, out=w)
        self._merge(n, mean, dot(w, w), lo, hi)

    def merge(self, n: int, mean: float, m2: float, lo: float, hi: float,
              std: float | None = None) -> None:
        """Merge the moments of `n` more values (Chan et al.'s pairwise update). `std`: theirs,
        when known; it stands for an `m2` that overflowed (values near the float64 limit)."""
        if not n:
            return
        self._units(lo, hi)
        scaled = _ldexp(m2, -2 * self.exp)
        if math.isinf(scaled) and std is not None and math.isfinite(std):
            scaled = _ldexp(std, -self.exp) ** 2 * n
        self._merge(n, _ldexp(mean, -self.exp), scaled, lo, hi)

    def _units(self, lo: float, hi: float) -> None:
        peak = math.frexp(max(abs(lo), abs(hi)))[1]  # the binary exponent of the largest
        if peak > HUGE_EXP + self.exp:
            exp = peak + 32  # the units in which n values up to 2**peak sum finite
            self._mean = _ldexp(self._mean, self.exp - exp)
            self._m2 = _ldexp(self._m2, 2 * (self.exp - exp))
            self.exp = exp

    def _merge(self, n: int, mean: float, m2: float, lo: float, hi: float) -> None:
        delta = mean - self._mean
        total = self.count + n
        self._mean += delta * n / total
        self._m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)


def _ldexp(x: float, exp: int) -> float:
    try:
        return math.ldexp(x, exp)
    except OverflowError:
        return math.copysign(math.inf, x)


# --- the show document ------------------------------------------------------------------------

SHOW_SCHEMA_VERSION = 1


def show_document(store: Store, names: Sequence[str], stats: Sequence[TensorStats | None],
                  path: str, tensors: Sequence[Tensor] | None = None) -> dict[str, Any]:
    """The JSON document of `weightkit show --format json` and `weightkit.stats` (see
    `diff/schema-show.json`); `tensors`: the store's of `names`, when looked up already."""
    dtype_names: dict[np.dtype, str] = {}
    tensors = store.tensors(names) if tensors is None else tensors
    with gc_paused():  # a row per variable: 100,000 dicts (see gc_paused)
        rows = [_row(name, tensor, s, dtype_names)
                for name, tensor, s in zip(names, tensors, stats)]
    return {"schema_version": SHOW_SCHEMA_VERSION, "file": path, "format": store.format,
            "variables": rows, "totals": _totals(rows)}


def _row(name: str, tensor: Tensor, stats: TensorStats | None,
         dtype_names: dict[np.dtype, str]) -> dict:
    dtype, meta, size = tensor.dtype, tensor.meta, tensor.size
    dtype_name = dtype_names.get(dtype)
    if dtype_name is None:
        dtype_name = dtype_names[dtype] = tensor.dtype_name
    if not meta and stats is not None:  # one literal: a row per variable, 100,000 of them
        return {"name": name, "shape": list(tensor.shape), "dtype": dtype_name,
                "parameters": size, "bytes": size * dtype.itemsize, "role": "weight",
                "key": name,
                "min": stats.min, "max": stats.max, "mean": stats.mean, "std": stats.std,
                "zero_fraction": stats.zeros / size if size else None,
                "nan": stats.nan, "inf": stats.inf}
    extra = {k: v for k, v in meta.items() if k not in ("key", "role")} if meta else None
    if stats is not None and not extra:
        return {"name": name, "shape": list(tensor.shape), "dtype": dtype_name,
                "parameters": size, "bytes": size * dtype.itemsize,
                "role": meta.get("role", "weight"), "key": meta.get("key", name),
                "min": stats.min, "max": stats.max, "mean": stats.mean, "std": stats.std,
                "zero_fraction": stats.zeros / size if size else None,
                "nan": stats.nan, "inf": stats.inf}
    row = {"name": name, "shape": list(tensor.shape), "dtype": dtype_name,
           "parameters": size, "bytes": size * dtype.itemsize,
           "role": meta.get("role", "weight"), "key": meta.get("key", name)}
    if extra:
        row["meta"] = extra  # format facts: quantization, layout, shared buffers, ...
    if stats is not None:
        row.update(min=stats.min, max=stats.max, mean=stats.mean, std=stats.std,
                   zero_fraction=stats.zeros / size if size else None,
                   nan=stats.nan, inf=stats.inf)
    return row


def _totals(rows: list[dict]) -> dict:
    column = operator.itemgetter
    return {"variables": len(rows), "parameters": sum(map(column("parameters"), rows)),
            "bytes": sum(map(column("bytes"), rows))}
