"""Per-tensor statistics for `show`, computed in one chunked pass with bounded memory."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..converters.dtypes import is_string
from ..converters.store import CHUNK_BYTES, Tensor


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

    @property
    def zero_fraction(self) -> float | None:
        return self.zeros / self.size if self.size else None

    def as_dict(self) -> dict:
        return {**asdict(self), "zero_fraction": self.zero_fraction}


def tensor_stats(tensor: Tensor, max_bytes: int = CHUNK_BYTES) -> TensorStats:
    """min/max/mean/std over finite values, and counts of zeros, NaN and Inf.

    Means and variances are merged chunk by chunk (Chan et al.) in float64; complex tensors
    are summarised by magnitude; strings only by count.
    """
    stats = TensorStats(size=tensor.size)
    if is_string(tensor.dtype) or tensor.size == 0:
        return stats
    count, mean, m2 = 0, 0.0, 0.0
    lo, hi = math.inf, -math.inf
    for chunk in tensor.iter_chunks(max_bytes):
        stats.zeros += int(chunk.size - np.count_nonzero(chunk))
        values = (np.abs(chunk) if np.iscomplexobj(chunk) else chunk).astype(np.float64, copy=False)
        finite = np.isfinite(values)
        if not finite.all():
            nan = np.isnan(values)
            stats.nan += int(nan.sum())
            stats.inf += int(values.size - finite.sum() - nan.sum())
            values = values[finite]
        if values.size == 0:
            continue
        lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
        n = values.size
        chunk_mean = float(values.mean())
        chunk_m2 = float(np.square(values - chunk_mean).sum())
        delta = chunk_mean - mean
        total = count + n
        mean += delta * n / total
        m2 += chunk_m2 + delta * delta * count * n / total
        count = total
    if count:
        stats.min, stats.max, stats.mean = lo, hi, mean
        stats.std = math.sqrt(m2 / count)
    return stats
