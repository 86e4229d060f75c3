"""Numeric helpers the diff engine and `show`'s statistics share."""
from __future__ import annotations

import numpy as np

# Elements processed at a time by the engine, show's statistics and trend: the float64 working
# buffers of a piece (a few of 512 KiB) stay in the CPU cache. Read as `numeric.PIECE` at call
# time, so tests can make it small.
PIECE = 1 << 16


def dot(x: np.ndarray, y: np.ndarray) -> float:
    """Re(Σ conj(x)·y) of float64 (complex128) arrays, by BLAS (`workers.run_all` keeps BLAS to
    one thread while the engine's own workers run)."""
    if x.dtype.kind == "c":
        return dot(x.real, y.real) + dot(x.imag, y.imag)
    return float(np.dot(x, y))
