"""The diff engine: compare two stores and return plain data (never prints).

`diff_stores(a, b)` matches the variables of both stores (see `match.py`), compares every
matched pair in one chunked pass with bounded memory, and returns a `DiffResult`: one `Entry`
per variable and a summary.

Semantics (shared by every statistic):
- Tolerance as numpy's `isclose(a, b)`: a pair is close when |a−b| ≤ atol + rtol·|b|, evaluated
  in float64 (complex128 for complex). Exact (atol = rtol = 0) by default. Tolerances apply to
  floating and complex tensors; integers, booleans and strings are always compared exactly.
- NaN equals NaN unless `nan_equal=False`; -0.0 equals 0.0; an infinity equals only itself.
- Value statistics (max/mean/RMS of |a−b|, max relative diff, relative L2, cosine) are taken
  over the pairs where both values are finite; NaN/Inf are counted on each side and pairs that
  disagree in them count as mismatched.
- max_rel_diff is max |a−b|/|b| as numpy reports it: 0 where both are 0, inf where only b is 0.
- rel_l2 is ‖a−b‖/‖a‖ (inf if ‖a‖ = 0 < ‖a−b‖, 0 if both are 0); cosine is a·b/(‖a‖‖b‖)
  (None when a norm is 0). max_abs_index is the C-order first index of the largest |a−b|
  (None when that is 0).
- Integers: |a−b| is exact (no overflow, no wraparound) and reported as an int.
"""
from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple

import ml_dtypes
import numpy as np

from ..converters.dtypes import is_string
from ..converters.names import nothing_left, roles_option, select as select_names
from ..converters.store import Progress, Store, Tensor
from .match import Matching, Var, match
from . import numeric
from .numeric import dot
from .workers import run_all

CHUNK_BYTES = 8 << 20  # read from each side at a time (a view of the mapped file, not a copy)
STATUSES = ("same", "changed", "added", "removed", "renamed", "shape_changed", "dtype_changed")
NOT_DIFFERENT = ("same", "folded")  # folded: export diffs only (a BatchNorm folded by a converter)
MATCH_MODES = ("auto", "name", "structure")
_INT4 = (np.dtype(ml_dtypes.int4), np.dtype(ml_dtypes.uint4))


@dataclass
class Options:
    """What counts as a difference and how variables are paired."""
    atol: float = 0.0
    rtol: float = 0.0
    nan_equal: bool = True
    match: str = "auto"
    include: tuple[str, ...] = ()  # globs on canonical names or original keys; empty: everything
    exclude: tuple[str, ...] = ()
    no_optimizer: bool = False  # leave out optimizer slots and counters
    weights_only: bool = False  # model weights only: also leave out metric state
    max_bytes: int = CHUNK_BYTES
    workers: int = 0  # 0: one thread per core, at most 4
    norms: bool = False  # also sum Σa² of identical variables (rollups combine every sum)
    progress: Progress | None = None  # called with the bytes of each compared piece

    def __post_init__(self) -> None:
        if not (self.atol >= 0 and self.rtol >= 0):  # also refuses NaN
            raise ValueError(f"tolerances must be >= 0; received atol={self.atol}, rtol={self.rtol}")
        if self.match not in MATCH_MODES:
            raise ValueError(f"match must be one of {', '.join(MATCH_MODES)}; received {self.match!r}")


@dataclass
class Sums:
    """The exact float64 sums behind a pair's statistics, over the pairs where both values are
    finite: what rollups add up (statistics are combined from sums, never averaged). Σa², Σb²
    and Σab are 0 for a pair found identical unless `Options.norms` asked for them."""
    finite: int = 0
    sum_abs: float = 0.0  # Σ|a−b|
    sum_sq: float = 0.0  # Σ(a−b)²
    aa: float = 0.0
    bb: float = 0.0
    ab: float = 0.0


class Delta(NamedTuple):
    """What one piece added to a pair's running sums and counts (`_Accumulator.take_delta`):
    a distributed task's partial result, plain numbers."""
    compared: bool  # compared in full (else its two sides had identical bytes)
    nonzero: bool
    finite: int
    mismatched: int
    max_abs: float | int
    max_at: int  # flat index of max_abs in the variable
    max_rel: float
    sum_abs: float
    sum_sq: float
    aa: float
    bb: float
    ab: float
    nan_a: int
    nan_b: int
    inf_a: int
    inf_b: int
    skipped: int  # identical and not summed (its Σa² is read again if a later piece differs)


@dataclass
class PairStats:
    """Statistics of one compared pair of equally shaped tensors."""
    size: int = 0
    mismatched: int = 0
    max_abs_diff: float | int | None = None
    max_abs_index: list[int] | None = None
    max_rel_diff: float | None = None
    mean_abs_diff: float | None = None
    rms_diff: float | None = None
    rel_l2: float | None = None
    cosine: float | None = None
    nan_a: int = 0
    nan_b: int = 0
    inf_a: int = 0
    inf_b: int = 0
    sums: Sums | None = None


@dataclass
class Entry:
    """One variable of the diff. `name` is the name in A (in B for added entries)."""
    name: str
    status: str
    name_a: str | None
    name_b: str | None
    role: str
    shape_a: list[int] | None
    shape_b: list[int] | None
    dtype_a: str | None
    dtype_b: str | None
    size: int
    matched_by: str | None
    mismatched: int | None = None
    mismatch_fraction: float | None = None
    max_abs_diff: float | int | None = None
    max_abs_index: list[int] | None = None
    max_rel_diff: float | None = None
    mean_abs_diff: float | None = None
    rms_diff: float | None = None
    rel_l2: float | None = None
    cosine: float | None = None
    nan_a: int | None = None
    nan_b: int | None = None
    inf_a: int | None = None
    inf_b: int | None = None
    transform: str | None = None  # export diffs: the layout change or fold undone (export.py)
    worst_channel: dict | None = None  # export diffs: the quantized axis' worst channel
    sums: Sums | None = field(default=None, repr=False)  # for rollups; not part of the JSON

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sums"}


@dataclass
class DiffResult:
    entries: list[Entry]
    summary: dict[str, Any]
    options: Options = field(default_factory=Options)

    @property
    def identical(self) -> bool:
        """True when nothing differs beyond the tolerance (exit status 0)."""
        return all(e.status in NOT_DIFFERENT for e in self.entries)

    def as_dict(self) -> dict[str, Any]:
        opts = {f.name: getattr(self.options, f.name) for f in fields(Options)
                if f.name not in ("max_bytes", "workers", "progress", "norms")}  # what is not the result
        opts = {k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()}
        return {"options": opts, "summary": self.summary,
                "variables": [e.as_dict() for e in self.entries]}


# --- one pair -------------------------------------------------------------------------------

class _Accumulator:
    """Running sums over chunks; `stats()` turns them into a PairStats."""

    def __init__(self, shape: tuple[int, ...], integer: bool):
        self.shape = shape
        self.integer = integer
        self.size = 0
        self.mismatched = 0
        self.finite = 0  # pairs where both values are finite
        self.chunk_offset = 0  # flat index of the current chunk's first element
        self.max_abs: float | int = 0
        self.max_at = -1  # flat index
        self.max_rel = 0.0
        self.sum_abs = 0.0
        self.sum_sq = 0.0
        self.aa = 0.0
        self.bb = 0.0
        self.ab = 0.0
        self.nan_a = self.nan_b = self.inf_a = self.inf_b = 0
        # Pieces with identical bytes need no arithmetic unless another piece differs: then
        # cosine needs Σa² over every piece. `summing` turns on at the first piece compared in
        # full; the Σa² of the identical pieces before it (`skipped` leading elements) is taken
        # at the end, and only if it is needed.
        self.summing = False
        self.compared = False  # a piece was compared in full (not identical bytes)
        self.skipped = 0
        self.nonzero = False  # a nonzero value seen in an identical piece
        self._buffers: dict[tuple[str, np.dtype], np.ndarray] = {}

    def buffer(self, slot: str, n: int, dtype: Any) -> np.ndarray:
        """A reusable working array of `n` elements (no allocation, no page faults per chunk)."""
        dtype = np.dtype(dtype)
        buf = self._buffers.get((slot, dtype))
        if buf is None or buf.size < n:
            buf = self._buffers[slot, dtype] = np.empty(n, dtype)
        return buf[:n]

    def take_max(self, value: float | int, flat_index: int) -> None:
        if value > self.max_abs:
            self.max_abs, self.max_at = value, flat_index

    # A distributed run (`distributed.py`) compares the pieces of a range of a variable on a
    # worker and adds them up on the driver. Floating-point sums depend on their order, so the
    # worker hands back what each piece added (`take_delta` after every piece) and the driver
    # adds those in the local order (`apply_delta`): each field gets at most one addition per
    # piece, so the sums are the local ones bit for bit.

    def take_delta(self) -> Delta:
        """What the pieces since the last call added to the sums and counts; those are zero
        again after it (the run's `summing` and its position `chunk_offset` stay)."""
        delta = Delta(self.compared, self.nonzero, self.finite, self.mismatched, self.max_abs,
                      self.max_at, self.max_rel, self.sum_abs, self.sum_sq, self.aa, self.bb,
                      self.ab, self.nan_a, self.nan_b, self.inf_a, self.inf_b, self.skipped)
        self.compared = self.nonzero = False
        self.finite = self.mismatched = self.skipped = 0
        self.nan_a = self.nan_b = self.inf_a = self.inf_b = 0
        self.max_abs, self.max_at, self.max_rel = 0, -1, 0.0
        self.sum_abs = self.sum_sq = self.aa = self.bb = self.ab = 0.0
        return delta

    def apply_delta(self, d: Delta, squares: float | None = None) -> None:
        """Add one piece's `take_delta` as `compare_piece` adds the piece. A piece of
        identical bytes reached while this run sums Σa² needs its Σa²: the delta's own (the
        worker was summing too), else `squares` (read again, as `_sum_skipped` reads them)."""
        if d.compared:
            self.summing = self.compared = True
            self.finite += d.finite
            self.mismatched += d.mismatched
            self.take_max(d.max_abs, d.max_at)
            self.max_rel = max(self.max_rel, d.max_rel)
            self.sum_abs += d.sum_abs
            self.sum_sq += d.sum_sq
            self.aa += d.aa
            self.bb += d.bb
            self.ab += d.ab
            self.nan_a += d.nan_a
            self.nan_b += d.nan_b
            self.inf_a += d.inf_a
            self.inf_b += d.inf_b
            return
        self.finite += d.finite  # identical bytes
        self.nonzero = self.nonzero or d.nonzero
        if not self.summing:
            self.skipped += d.finite
            return
        if d.skipped and squares is None:
            raise ValueError("an identical piece after a difference needs its Σa²")
        self.add_squares(squares if d.skipped else d.aa)

    def add_squares(self, square: float) -> None:
        """Add the Σa² of an identical piece (to Σa², Σb² and Σab, as `_add_squares` does)."""
        self.aa += square
        self.bb += square
        self.ab += square

    def stats(self) -> PairStats:
        out = PairStats(size=self.size, mismatched=self.mismatched, nan_a=self.nan_a,
                        nan_b=self.nan_b, inf_a=self.inf_a, inf_b=self.inf_b,
                        sums=Sums(self.finite, self.sum_abs, self.sum_sq, self.aa, self.bb,
                                  self.ab))
        if self.finite == 0:
            return out
        out.max_abs_diff = int(self.max_abs) if self.integer else float(self.max_abs)
        if not self.compared:  # every piece had identical bytes, all finite
            out.max_rel_diff = out.mean_abs_diff = out.rms_diff = out.rel_l2 = 0.0
            out.cosine = 1.0 if self.nonzero else None
            return out
        if self.max_abs > 0:
            out.max_abs_index = [int(i) for i in np.unravel_index(self.max_at, self.shape)]
        out.max_rel_diff = float(self.max_rel)
        out.mean_abs_diff = self.sum_abs / self.finite
        out.rms_diff = math.sqrt(self.sum_sq / self.finite)
        norm_a, norm_b = math.sqrt(self.aa), math.sqrt(self.bb)
        norm_d = math.sqrt(self.sum_sq)
        out.rel_l2 = norm_d / norm_a if norm_a else (0.0 if norm_d == 0 else math.inf)
        if norm_a and norm_b:
            out.cosine = self.ab / (norm_a * norm_b)
        return out


def _wide(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.complex128) if dtype.kind == "c" else np.dtype(np.float64)


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two pieces hold the same bytes (a short prefix first: most changed pieces
    differ at once)."""
    if a.dtype != b.dtype:
        return False
    ra, rb = raw_bytes(a), raw_bytes(b)
    return bool(np.array_equal(ra[:16], rb[:16]) and np.array_equal(ra, rb))


def _identical(acc: _Accumulator, a: np.ndarray) -> bool:
    """Account for a piece whose two sides have the same bytes. False (nothing accounted) when
    it may hold NaN or Inf, which the full comparison counts."""
    if acc.integer:
        nonzero = bool(a.any())
    else:
        total = _plain_sum(acc, a)
        if not math.isfinite(total):  # NaN, Inf, or only an overflowing sum
            return False
        nonzero = total != 0 or bool(np.count_nonzero(a))
        if nonzero and abs(total) < 1e-150:  # tiny values: cosine is None if Σa² underflows
            wide = _widen(acc, "a", a, _wide(a.dtype))
            nonzero = dot(wide, wide) > 0
    acc.finite += a.size
    acc.nonzero = acc.nonzero or nonzero
    if acc.summing:
        _add_squares(acc, a)
    else:
        acc.skipped += a.size
    return True


def _plain_sum(acc: _Accumulator, a: np.ndarray) -> float:
    """Σa in the array's own precision (float32 at least), only to learn whether every value
    is finite and whether one is nonzero."""
    if a.dtype.kind == "c":
        a = a.view(a.real.dtype)
    if a.dtype not in (np.float32, np.float64):
        a = _widen(acc, "w", a, np.dtype(np.float32))
    return float(np.einsum("i->", a))


def _add_squares(acc: _Accumulator, a: np.ndarray) -> None:
    """Σa² of an identical, finite piece: its aa, bb and ab."""
    acc.add_squares(piece_squares(acc, a))


def piece_squares(acc: _Accumulator, a: np.ndarray) -> float:
    """Σa² of an identical, finite piece, in float64 (complex: Σ|a|²)."""
    wide = _widen(acc, "a", a, np.dtype(np.float64) if acc.integer else _wide(a.dtype))
    return dot(wide, wide)


def _sum_skipped(acc: _Accumulator, tensor: Tensor, max_bytes: int) -> None:
    """Σa² of the identical leading pieces, read again now that a later piece differed (the
    same pieces: the skipped ones are whole pieces of the grid)."""
    left = acc.skipped
    for (a,) in aligned(tensor.iter_chunks(max_bytes)):
        _add_squares(acc, a)
        left -= a.size
        if left <= 0:
            break


def _float_chunk(acc: _Accumulator, a: np.ndarray, b: np.ndarray, opts: Options) -> None:
    """Float/complex piece: everything from one float64 (complex128) difference."""
    wide = np.result_type(_wide(a.dtype), _wide(b.dtype))
    a = _widen(acc, "a", a, wide)
    aa = dot(a, a)
    b = _widen(acc, "b", b, wide)
    bb = dot(b, b)
    if math.isfinite(aa) and math.isfinite(bb):
        _finite_pairs(acc, a, b, None, aa, bb, opts)
        return
    fa, fb = np.isfinite(a), np.isfinite(b)
    na, nb = np.isnan(a), np.isnan(b)
    acc.nan_a += int(np.count_nonzero(na))
    acc.nan_b += int(np.count_nonzero(nb))
    acc.inf_a += int(a.size - np.count_nonzero(fa) - np.count_nonzero(na))
    acc.inf_b += int(b.size - np.count_nonzero(fb) - np.count_nonzero(nb))
    both = fa & fb
    equal_nonfinite = ~both & ~(na | nb) & (a == b)  # the same infinity
    if opts.nan_equal:
        equal_nonfinite |= na & nb
    acc.mismatched += int(np.count_nonzero(~both & ~equal_nonfinite))
    where = np.flatnonzero(both)
    a, b = a[where], b[where]
    _finite_pairs(acc, a, b, where, dot(a, a), dot(b, b), opts)


def _widen(acc: _Accumulator, slot: str, x: np.ndarray, wide: np.dtype) -> np.ndarray:
    if x.dtype == wide:
        return x
    out = acc.buffer(slot, x.size, wide)
    np.copyto(out, x, casting="unsafe")
    return out


def raw_bytes(x: np.ndarray) -> np.ndarray:
    """The bytes of an array, contiguous, as unsigned integers one per element where the
    itemsize allows (1, 2, 4, 8), else as uint8: for bitwise comparison."""
    x = np.ascontiguousarray(x)
    return x.view(f"u{x.dtype.itemsize}") if x.dtype.itemsize in (1, 2, 4, 8) else x.view(np.uint8)


def _finite_pairs(acc: _Accumulator, a: np.ndarray, b: np.ndarray, where: np.ndarray | None,
                  aa: float, bb: float, opts: Options) -> None:
    """Accumulate statistics of pairs that are all finite; `where` maps them to chunk indices."""
    acc.finite += a.size
    acc.aa += aa
    acc.bb += bb
    if a.size == 0:
        return
    acc.ab += dot(a, b)
    ad = acc.buffer("d", a.size, np.float64)
    if a.dtype.kind == "c":
        np.abs(a - b, out=ad)
    else:
        np.subtract(a, b, out=ad)
        np.abs(ad, out=ad)
    acc.sum_sq += dot(ad, ad)
    acc.sum_abs += float(ad.sum())
    i = int(ad.argmax())
    peak = float(ad[i])
    acc.take_max(peak, acc.chunk_offset + (i if where is None else int(where[i])))
    if peak == 0:
        return
    absb = np.abs(b, out=acc.buffer("r", b.size, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        if opts.atol or opts.rtol:
            tol = np.multiply(absb, opts.rtol, out=acc.buffer("t", b.size, np.float64))
            tol += opts.atol
        else:
            tol = 0.0
        far = np.greater(ad, tol, out=acc.buffer("m", b.size, np.bool_))
        acc.mismatched += int(np.count_nonzero(far))  # a bool count: twice as fast as floats
        # 0/0 gives NaN where both are 0: fmax skips it; x/0 gives inf as numpy reports
        np.divide(ad, absb, out=absb)
        acc.max_rel = max(acc.max_rel, float(np.fmax.reduce(absb)))


def _int_chunk(acc: _Accumulator, a: np.ndarray, b: np.ndarray, opts: Options) -> None:
    """Integers and booleans: exact |a−b| through unsigned 64-bit arithmetic."""
    signed = any(x.dtype.kind == "i" or x.dtype == ml_dtypes.int4 for x in (a, b))
    work = np.int64 if signed else np.uint64
    a = a.astype(work, copy=False)
    b = b.astype(work, copy=False)
    ge = a >= b
    au, bu = a.view(np.uint64), b.view(np.uint64)
    ad = np.where(ge, au - bu, bu - au)  # modulo 2**64: exact since the true value is < 2**64
    del ge, au, bu
    af, bf = a.astype(np.float64), b.astype(np.float64)
    acc.finite += a.size
    acc.aa += dot(af, af)
    acc.bb += dot(bf, bf)
    acc.ab += dot(af, bf)
    del af
    adf = ad.astype(np.float64)
    acc.sum_abs += float(adf.sum())
    acc.sum_sq += dot(adf, adf)
    if a.size == 0:
        return
    i = int(ad.argmax())
    peak = int(ad[i])
    acc.take_max(peak, acc.chunk_offset + i)
    if peak == 0:
        return
    acc.mismatched += int(np.count_nonzero(ad))
    np.abs(bf, out=bf)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(adf, bf, out=bf)
    acc.max_rel = max(acc.max_rel, float(np.fmax.reduce(bf)))


def _string_chunk(acc: _Accumulator, a: np.ndarray, b: np.ndarray, opts: Options) -> None:
    acc.mismatched += sum(1 for x, y in zip(a.tolist(), b.tolist()) if x != y)


def compare_tensors(ta: Tensor, tb: Tensor, opts: Options | None = None) -> PairStats:
    """Compare two tensors of the same shape chunk by chunk; every statistic in one pass."""
    with np.errstate(all="ignore"):  # sums of values near the float64 limit overflow: the
        return _compare_tensors(ta, tb, opts or Options())  # statistics say so, not a warning


def pair_kind(ta: Tensor, tb: Tensor) -> tuple[bool, bool, bool]:
    """(strings, integer, mixed) of a pair: compared as strings, as integers (and booleans),
    or as floating/complex values; `mixed`: strings against numbers, where nothing is equal."""
    strings = is_string(ta.dtype) or is_string(tb.dtype)
    integer = not strings and all(t.dtype.kind in "biu" or t.dtype in _INT4 for t in (ta, tb))
    return strings, integer, strings and not (is_string(ta.dtype) and is_string(tb.dtype))


def _compare_tensors(ta: Tensor, tb: Tensor, opts: Options) -> PairStats:
    if ta.shape != tb.shape:
        raise ValueError(f"shapes differ: {ta.shape} and {tb.shape}")
    strings, integer, mixed = pair_kind(ta, tb)
    acc = _Accumulator(ta.shape, integer)
    acc.summing = opts.norms
    if mixed:
        acc.size = acc.mismatched = ta.size  # strings against numbers: nothing is equal
        return acc.stats()
    kernel = kernel_for(strings, integer)
    for a, b in pieces(ta.iter_chunks(opts.max_bytes), tb.iter_chunks(opts.max_bytes)):
        compare_piece(acc, kernel, a, b, opts)
        if opts.progress is not None:
            opts.progress(a.nbytes + b.nbytes)
    if acc.summing and acc.skipped:
        _sum_skipped(acc, ta, opts.max_bytes)
    acc.size = ta.size
    return acc.stats()


Kernel = Callable[[_Accumulator, np.ndarray, np.ndarray, Options], None]


def kernel_for(strings: bool, integer: bool) -> Kernel:
    """The piece comparison for strings, integers (and booleans), or floating/complex values."""
    return _string_chunk if strings else _int_chunk if integer else _float_chunk


def compare_piece(acc: _Accumulator, kernel: Kernel, a: np.ndarray, b: np.ndarray,
                  opts: Options) -> None:
    """Add one pair of equally long pieces to `acc`: identical bytes cheaply, else `kernel`."""
    if kernel is _string_chunk or not (_same_bytes(a, b) and _identical(acc, a)):
        acc.summing = acc.compared = True
        kernel(acc, a, b, opts)
    acc.chunk_offset += a.size


def pieces(xs: Iterable[np.ndarray], ys: Iterable[np.ndarray]
           ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Two flat streams of equal total length (chunked differently where the formats or dtypes
    differ) as pairs of equally long pieces of the grid (see `aligned`)."""
    return aligned(xs, ys)  # type: ignore[return-value]


def aligned(*streams: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, ...]]:
    """Flat streams of equal total length, however each is chunked, as tuples of equally long
    pieces (one from each stream): the pieces of one grid, elements [k·PIECE, (k+1)·PIECE),
    the last one shorter.

    The pieces, and so every sum taken piece by piece, depend on the number of elements alone,
    never on how a reader chunks or on the read budget: a range that starts on the grid has
    the same pieces wherever it is read (`distributed.py` relies on it). A piece across two
    chunks is copied together; where chunks are multiples of PIECE elements (most are) every
    piece is a view."""
    cuts = [_Cutter(s) for s in streams]
    while True:
        # every stream is asked before stopping, so that each runs to its end (where a reader
        # checks the crc of what it read)
        got = [c.take(numeric.PIECE) for c in cuts]
        if any(g is None for g in got):
            return
        n = min(g.size for g in got)  # type: ignore[union-attr]
        yield tuple(g[:n] for g in got)  # type: ignore[index]


class _Cutter:
    """One flat stream, cut into pieces of a given length whatever its chunks."""

    def __init__(self, stream: Iterable[np.ndarray]):
        self._it = iter(stream)
        self._head: np.ndarray | None = None

    def take(self, n: int) -> np.ndarray | None:
        """The next `n` elements (fewer at the end of the stream; None when none are left)."""
        parts, got = [], 0
        while got < n:
            head = self._head
            if head is None or not head.size:
                self._head = next(self._it, None)
                if self._head is None:
                    break
                continue
            part = head[:n - got]
            self._head = head[part.size:]
            parts.append(part)
            got += part.size
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


# --- two stores -----------------------------------------------------------------------------

def select(a: Store, b: Store, opts: Options) -> tuple[list[str], list[str]]:
    """The names of `a` and `b` that the include/exclude globs (on canonical names or original
    keys), --no-optimizer and --weights-only let through. A glob matching nothing on either
    side, or a selection leaving nothing to compare, is a UsageError naming the closest names
    (`names.select`)."""
    kept_a, kept_b = select_names([a, b], opts.include, opts.exclude,
                                  roles_option(opts.no_optimizer, opts.weights_only))
    return kept_a, kept_b


def fingerprint(tensor: Tensor, max_bytes: int = CHUNK_BYTES) -> bytes:
    """A content hash of the tensor's values (strings hashed element by element)."""
    h = hashlib.blake2b(digest_size=16)
    for chunk in tensor.iter_chunks(max_bytes):
        if is_string(tensor.dtype):
            for item in chunk.tolist():
                data = item if isinstance(item, bytes) else str(item).encode()
                h.update(len(data).to_bytes(8, "little"))
                h.update(data)
        else:
            h.update(np.ascontiguousarray(chunk).view(np.uint8))
    return h.digest()


def _var(store: Store, name: str) -> Var:
    t = store[name]
    return Var(name, t.role, t.shape, t.dtype_name)


def _entry(name_a: str | None, name_b: str | None, ta: Tensor | None, tb: Tensor | None,
           matched_by: str | None) -> Entry:
    status = ("added" if ta is None else "removed" if tb is None
              else "shape_changed" if ta.shape != tb.shape
              else "dtype_changed" if ta.dtype != tb.dtype else "same")
    return Entry(
        name=name_a if name_a is not None else name_b, status=status, name_a=name_a,
        name_b=name_b, role=(ta or tb).role,
        shape_a=None if ta is None else list(ta.shape), shape_b=None if tb is None else list(tb.shape),
        dtype_a=None if ta is None else ta.dtype_name, dtype_b=None if tb is None else tb.dtype_name,
        size=(ta or tb).size, matched_by=matched_by)


def _fill(entry: Entry, stats: PairStats, renames: bool) -> None:
    for f in fields(stats):
        setattr(entry, f.name, getattr(stats, f.name))
    entry.mismatch_fraction = stats.mismatched / stats.size if stats.size else None
    if entry.status == "same" and stats.mismatched:
        entry.status = "changed"
    elif renames and entry.matched_by == "values" and not stats.mismatched:
        entry.status = "renamed"


def diff_stores(a: Store, b: Store, opts: Options | None = None) -> DiffResult:
    """Compare store A with store B: one entry per variable, and a summary.

    A pair found by equal values under different names is `renamed` when both stores have the
    same format; across formats different names are the formats' naming schemes (a Keras 3
    `.keras` says `dense/0` where its checkpoint says `dense/kernel`), so the pair is `same`,
    matched by values."""
    opts = opts or Options()
    from . import export
    if opts.match == "auto" and export.applies(a, b):  # an export against its source
        return export.diff_export(a, b, opts)
    hashes: dict[tuple[str, str], bytes] = {}

    def content(side: str, name: str) -> bytes:
        if (side, name) not in hashes:
            hashes[side, name] = fingerprint((a if side == "a" else b)[name], opts.max_bytes)
        return hashes[side, name]

    def settle(paired: list[Entry]) -> None:
        compared = [e for e in paired if e.status != "shape_changed"]
        results = compare_pairs([(a[e.name_a], b[e.name_b]) for e in compared], opts)
        for entry, stats in zip(compared, results):
            _fill(entry, stats, renames=a.format == b.format)

    entries, summary = diff_entries(a, b, opts, content, settle)
    read_unpaired(a, b, entries, opts)
    return DiffResult(entries, summary, opts)


def read_unpaired(a: Store, b: Store, entries: list[Entry], opts: Options) -> None:
    """Read every selected tensor the comparison did not (added, removed, shape changed), so
    that a damaged variable fails the diff as it fails `show`, whatever its status: a bad input
    is an error (exit 2), never a difference."""
    unread = [a[e.name_a] for e in entries
              if e.name_a is not None and (e.name_b is None or e.status == "shape_changed")]
    unread += [b[e.name_b] for e in entries
               if e.name_b is not None and (e.name_a is None or e.status == "shape_changed")]
    run_all(_read_job, [(t,) for t in unread], [t.nbytes for t in unread],
            workers=opts.workers, progress=opts.progress)


def _read_job(tensor: Tensor, progress: Progress | None) -> None:
    for chunk in tensor.iter_chunks():
        if progress is not None:
            progress(chunk.nbytes)


def diff_entries(a: Store, b: Store, opts: Options, content: Callable[[str, str], Hashable],
                 settle: Callable[[list[Entry]], None]) -> tuple[list[Entry], dict]:
    """What every diff shares: the variables `opts` selects, paired (`content(side, name)` keys
    the pairing by equal values), an entry per pair that `settle` then compares in place, the
    variables only one side has; in A's order, B's additions last. Entries and summary."""
    matching, vars_a, vars_b = pairing(a, b, opts, content)
    entries = [_entry(p.a, p.b, a[p.a], b[p.b], p.matched_by) for p in matching.pairs]
    settle(entries)
    order = {n: i for i, n in enumerate(v.name for v in vars_a)}
    entries += [_entry(n, None, a[n], None, None) for n in matching.only_a]
    entries.sort(key=lambda e: order[e.name_a])
    entries += [_entry(None, n, None, b[n], None) for n in matching.only_b]
    return entries, _summary(entries, vars_a, vars_b, matching)


BATCH_PAIRS = 4 << 20  # bytes of small pairs compared in one job


def compare_pairs(pairs: list[tuple[Tensor, Tensor]], opts: Options) -> list[PairStats]:
    """`compare_tensors` of every pair, on every core (see `workers.py`). Pairs of a few MiB
    go many to a job (up to BATCH_PAIRS bytes): a job per pair of 100,000 small variables
    spent 10 s handing jobs to the pool."""
    jobs: list[tuple[list[tuple[Tensor, Tensor]], Options]] = []
    sizes: list[int] = []
    order: list[int] = []  # the pair behind each result, in job order
    batch: list[int] = []
    nbytes = 0
    for i, (ta, tb) in enumerate(pairs):
        size = ta.nbytes + tb.nbytes
        if size >= BATCH_PAIRS:
            jobs.append(([pairs[i]], opts))
            sizes.append(size)
            order.append(i)
            continue
        batch.append(i)
        nbytes += size
        if nbytes >= BATCH_PAIRS:
            jobs.append(([pairs[k] for k in batch], opts))
            sizes.append(nbytes)
            order += batch
            batch, nbytes = [], 0
    if batch:
        jobs.append(([pairs[k] for k in batch], opts))
        sizes.append(nbytes)
        order += batch
    done = run_all(_compare_job, jobs, sizes, workers=opts.workers, progress=opts.progress)
    out: list[Any] = [None] * len(pairs)
    for i, stats in zip(order, (stats for results in done for stats in results)):
        out[i] = stats
    return out


def _compare_job(pairs: list[tuple[Tensor, Tensor]], opts: Options,
                 progress: Progress | None) -> list[PairStats]:
    job = replace(opts, progress=progress)
    return [compare_tensors(ta, tb, job) for ta, tb in pairs]


def pairing(a: Store, b: Store, opts: Options, content: Callable[[str, str], Hashable]
            ) -> tuple[Matching, list[Var], list[Var]]:
    """The variables `opts` selects, paired (`match`; `content(side, name)` keys pairing by
    equal values), and each side's variables in the diff, in store order.

    With --include/--exclude every variable the role options leave is paired first, as a
    diff without them pairs it, and the selection is made of the pairs: the two sides may
    name a variable otherwise (a rename, another format's naming), and `--include 'encoder/*'`
    still compares `encoder/w` with its counterpart `enc/w`. A pair is one variable under two
    names, kept or left out whole: kept when either side's name is included and neither
    side's is excluded (`--exclude 'adam/*'` leaves out tf_keras' `Adam/m/d1/kernel` with the
    Keras 3 slot it pairs with). An unpaired variable is kept when its own name is selected.
    A selection keeping none of them is a UsageError, never an empty "identical"."""
    names_a, names_b = select(a, b, opts)
    if not (opts.include or opts.exclude):
        vars_a, vars_b = [_var(a, n) for n in names_a], [_var(b, n) for n in names_b]
        return match(vars_a, vars_b, opts.match, content), vars_a, vars_b
    roles = roles_option(opts.no_optimizer, opts.weights_only)
    every_a, every_b = select_names([a, b], (), (), roles)
    all_a, all_b = [_var(a, n) for n in every_a], [_var(b, n) for n in every_b]
    whole = match(all_a, all_b, opts.match, content)
    inc_a, inc_b = (set(names) for names in select_names([a, b], opts.include, (), roles)) \
        if opts.include else (None, None)
    ok_a, ok_b = (set(names) for names in select_names([a, b], (), opts.exclude, roles)) \
        if opts.exclude else (None, None)
    pairs = [p for p in whole.pairs
             if (inc_a is None or p.a in inc_a or p.b in inc_b)
             and (ok_a is None or (p.a in ok_a and p.b in ok_b))]
    chosen_a, chosen_b = set(names_a), set(names_b)
    only_a = [n for n in whole.only_a if n in chosen_a]
    only_b = [n for n in whole.only_b if n in chosen_b]
    if not (pairs or only_a or only_b):  # (each side kept some, but not one pair of them)
        raise nothing_left(opts.include, opts.exclude, roles,
                           len(set(every_a).union(every_b)), stores=(a, b))
    used_a = {p.a for p in pairs}.union(only_a)
    used_b = {p.b for p in pairs}.union(only_b)
    return (Matching(pairs, only_a, only_b, whole.note),
            [v for v in all_a if v.name in used_a], [v for v in all_b if v.name in used_b])


def _summary(entries: list[Entry], vars_a: list[Var], vars_b: list[Var], matching: Any) -> dict:
    counts = {s: 0 for s in STATUSES}
    for e in entries:
        counts[e.status] += 1
    peaks = [e.max_abs_diff for e in entries if e.max_abs_diff is not None]
    return {
        "identical": all(e.status == "same" for e in entries),
        "variables_a": len(vars_a), "variables_b": len(vars_b),
        "counts": counts,
        "matched_by": dict(Counter(p.matched_by for p in matching.pairs)),
        "elements_a": sum(math.prod(v.shape) for v in vars_a),
        "elements_b": sum(math.prod(v.shape) for v in vars_b),
        "compared_elements": sum(e.size for e in entries if e.mismatched is not None),
        "mismatched_elements": sum(e.mismatched or 0 for e in entries),
        "max_abs_diff": max(peaks) if peaks else None,
        "unmatched_a": list(matching.only_a), "unmatched_b": list(matching.only_b),
        "notes": [matching.note] if getattr(matching, "note", None) else [],
    }
