"""Per-tensor statistics for `show`, computed in one chunked pass with bounded memory."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np

from ..converters.dtypes import is_string
from ..converters.store import CHUNK_BYTES, Tensor
from .numeric import dot
from .workers import run_all


@dataclass
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


PIECE = 1 << 16  # elements at a time: the float64 working copy stays in the CPU cache


def stats_of(tensors: list[Tensor], progress: Callable[[int], None] | None = None
             ) -> list[TensorStats]:
    """`tensor_stats` of each tensor, on every core (see `workers.py`); `progress` gets the
    bytes of each tensor done."""
    return run_all(_stats_job, [(t,) for t in tensors], [t.nbytes for t in tensors],
                   progress=progress)


def _stats_job(tensor: Tensor, progress: Callable[[int], None] | None) -> TensorStats:
    stats = tensor_stats(tensor)
    if progress is not None:
        progress(tensor.nbytes)
    return stats


def tensor_stats(tensor: Tensor, max_bytes: int = CHUNK_BYTES) -> TensorStats:
    """min/max/mean/std over finite values, and counts of zeros, NaN and Inf.

    Means and variances are merged piece by piece (Chan et al.) in float64; complex tensors
    are summarised by magnitude; strings only by count.
    """
    stats = TensorStats(size=tensor.size)
    if is_string(tensor.dtype) or tensor.size == 0:
        return stats
    moments = Moments()
    wide = np.empty(min(PIECE, tensor.size))
    flags = np.empty(wide.size, np.bool_)
    for chunk in tensor.iter_chunks(max_bytes):
        for start in range(0, chunk.size, PIECE):
            piece = chunk[start:start + PIECE]
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
        stats.std = math.sqrt(moments.m2 / moments.count)
        stats.finite, stats.m2 = moments.count, moments.m2
    return stats


class Moments:
    """Count, min, max, mean and the sum of squared deviations, merged piece by piece."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0
        self.lo, self.hi = math.inf, -math.inf

    def add(self, w: np.ndarray, lo: float, hi: float) -> None:
        """Merge the finite float64 values `w` (a working copy: it is overwritten)."""
        n = w.size
        mean = float(w.sum()) / n
        np.subtract(w, mean, out=w)
        self.merge(n, mean, dot(w, w), lo, hi)

    def merge(self, n: int, mean: float, m2: float, lo: float, hi: float) -> None:
        """Merge the moments of `n` more values (Chan et al.'s pairwise update)."""
        if not n:
            return
        delta = mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
