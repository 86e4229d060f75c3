"""Numeric helpers the diff engine and `show`'s statistics share."""
from __future__ import annotations

import numpy as np

from .. import BLAS_PINNED


def dot(x: np.ndarray, y: np.ndarray) -> float:
    """Re(Σ conj(x)·y) of float64 (complex128) arrays: BLAS when its threads are pinned to one
    (`weightkit` pins them when imported before numpy), else einsum, whose loop runs no threads
    of its own to oversubscribe the cores under the engine's workers."""
    if x.dtype.kind == "c":
        return dot(x.real, y.real) + dot(x.imag, y.imag)
    return float(np.dot(x, y) if BLAS_PINNED else np.einsum("i,i->", x, y))
