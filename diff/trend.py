"""A training run's checkpoints over time: per variable and checkpoint, how far it moved since the
previous checkpoint and since the first, its norm, and its NaN and Inf counts.

    result = trend_stores([store_0, store_1, ...], TrendOptions())

Every checkpoint is streamed once: a variable's checkpoints are read in lockstep, piece by piece
(the engine's `aligned` pieces), and each piece of checkpoint t is compared with the same piece
of t−1 and of the first checkpoint while it is in memory, through the engine's own comparison
(`compare_piece`: the exact float64 sums, identical bytes skipped cheaply). Memory is bounded by
one piece per checkpoint and a read budget shared by the checkpoints; variables run in parallel
(`workers.run_all`).

Definitions (x_t: the variable at checkpoint t; statistics over the pairs where both values are
finite, as in the engine):
- `rel_l2_prev` ‖x_t − x_{t−1}‖ / ‖x_{t−1}‖, `rel_l2_first` ‖x_t − x_0‖ / ‖x_0‖ (inf when only
  the reference norm is 0), `max_abs_diff_prev` max |x_t − x_{t−1}|, `changed` the elements not
  equal to the previous checkpoint's (NaN equals NaN);
- `l2_norm` ‖x_t‖ over its finite values (null when it has none), `nan` and `inf` its counts;
- `frozen`: present in two checkpoints or more and never changed (bit for bit, up to -0.0 = 0.0);
- `first_nan_step`, `first_inf_step`: the step of the first checkpoint holding one;
- `norm_growth`: the largest ‖x_t‖ / ‖x_{t−1}‖ over the run (previous norm nonzero);
  `exploding` when it exceeds `TrendOptions.explode` or a norm overflows to inf.
A variable absent from a checkpoint (optimizer slots before the first training step) or whose
shape changed has null values there; its series continues from its next checkpoint of the first
shape, and `first` means its first checkpoint.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..converters.dtypes import is_string
from ..converters.errors import UsageError
from ..converters.names import roles_option, select as select_names
from ..converters.store import CHUNK_BYTES, Progress, Store, Tensor
from .engine import (_INT4, Options, Sums, _Accumulator, aligned, compare_piece,
                     kernel_for)
from . import numeric
from .numeric import dot
from .rollup import groups, relative
from .workers import run_all

STEP_FIELDS = ("rel_l2_prev", "rel_l2_first", "l2_norm", "nan", "inf", "max_abs_diff_prev",
               "changed")
VARIABLE_NUMBERS = ("norm_growth", "first_nan_step", "first_inf_step")
READ_BUDGET = 64 << 20  # bytes of read-ahead shared by the checkpoints of one variable


@dataclass
class TrendOptions:
    """Which variables, and what counts as exploding."""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    no_optimizer: bool = False
    explode: float = 10.0  # norm_growth above this is flagged
    weights_only: bool = False  # model weights only: also no metric state
    workers: int = 0
    max_bytes: int = CHUNK_BYTES
    progress: Progress | None = None

    def __post_init__(self) -> None:
        if not self.explode > 1:
            raise ValueError(f"explode must be a factor > 1; received {self.explode}")


@dataclass
class StepSums:
    """What a series' statistics at one checkpoint are made of (rollups add these up)."""
    norm_sq: float = 0.0  # Σx² over finite x
    prev: Sums | None = None  # against the previous checkpoint
    first: Sums | None = None  # against the first


@dataclass
class Series:
    """One variable over the run; lists have one value per checkpoint (None where absent)."""
    name: str
    role: str
    shape: list[int]
    dtype: str
    size: int
    rel_l2_prev: list[float | None]
    rel_l2_first: list[float | None]
    l2_norm: list[float | None]
    nan: list[int | None]
    inf: list[int | None]
    max_abs_diff_prev: list[float | int | None]
    changed: list[int | None]
    frozen: bool = False
    first_nan_step: int | None = None
    first_inf_step: int | None = None
    norm_growth: float | None = None
    exploding: bool = False
    sums: list[StepSums | None] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sums"}


@dataclass
class TrendResult:
    checkpoints: list[dict[str, Any]]  # {"path", "format", "step"}
    series: list[Series]
    options: TrendOptions

    @property
    def steps(self) -> list[int]:
        return [c["step"] for c in self.checkpoints]

    def summary(self) -> dict[str, Any]:
        s = self.series
        return {
            "checkpoints": len(self.checkpoints), "variables": len(s),
            "frozen": sum(x.frozen for x in s), "exploding": sum(x.exploding for x in s),
            "with_nan": sum(x.first_nan_step is not None for x in s),
            "with_inf": sum(x.first_inf_step is not None for x in s),
            "first_nan_step": _first(x.first_nan_step for x in s),
            "first_inf_step": _first(x.first_inf_step for x in s),
        }

    def as_dict(self) -> dict[str, Any]:
        o = self.options
        return {"checkpoints": self.checkpoints,
                "options": {"include": list(o.include), "exclude": list(o.exclude),
                            "no_optimizer": o.no_optimizer, "weights_only": o.weights_only,
                            "explode": o.explode},
                "summary": self.summary(), "variables": [x.as_dict() for x in self.series]}


def _first(values: Any) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def step_numbers(paths: Sequence[str]) -> list[int]:
    """The training step of each checkpoint: the last number in each file name (`ckpt-40`,
    `model.0012.weights.h5`) when these are distinct and increasing, else 0, 1, 2, ..."""
    numbers = []
    for path in paths:
        base = os.path.basename(os.path.normpath(path))
        found = re.findall(r"\d+", base.split(".")[0]) or re.findall(r"\d+", base)
        numbers.append(int(found[-1]) if found else None)
    if all(n is not None for n in numbers) and all(a < b for a, b in zip(numbers, numbers[1:])):
        return numbers  # type: ignore[return-value]
    return list(range(len(paths)))


def run_paths(runs: Sequence[str | os.PathLike], format: str | None = None) -> list[str]:
    """The checkpoints RUN... names, oldest first: a path whose format has a `run` (a directory
    with a TF `checkpoint` state file) stands for every checkpoint it lists
    (`all_model_checkpoint_paths`); anything else (a file, a checkpoint prefix, a SavedModel
    directory) for itself. Raises UsageError for fewer than two."""
    from ..converters import registry, source
    paths: list[str] = []
    for run in map(os.fspath, runs):
        record = registry.get(format or registry.detect(run)) \
            if source.isdir(run) and not source.isfile(run) else None
        if record is not None and record.run is not None:
            paths += [p if os.path.isabs(run) or source.is_url(p) else os.path.relpath(p)
                      for p in record.run(run)]
        else:
            paths.append(run)
    if len(paths) < 2:
        raise UsageError(f"trend: expected two checkpoints or more (a directory whose "
                         f"`checkpoint` state file lists them, or the files in order); "
                         f"received {len(paths)}")
    return paths


def trend(runs: str | os.PathLike | Store | Sequence[str | os.PathLike | Store], *,
          from_format: str | None = None, include: Sequence[str] = (),
          exclude: Sequence[str] = (), no_optimizer: bool = False, weights_only: bool = False,
          explode: float = 10.0, scheduler: str | None = None,
          format: str | None = None) -> dict[str, Any]:
    """The trend of a training run as the JSON document `weightkit trend --format json` prints
    (`diff/schema-trend.json`; non-finite numbers as "inf"/"-inf"/"nan").

    `runs`: a checkpoint directory with a `checkpoint` state file, or the checkpoints (files or
    prefixes, any format weightkit reads, or open `Store`s) oldest first. `from_format`: the
    input format, as `--from` (`format` is its old spelling); `include`, `exclude`,
    `no_optimizer`, `weights_only` select as the command's flags do. `scheduler`: run on a Dask
    cluster (`--scheduler`: an address, or `local:N`; the same document; paths only). Raises
    UsageError (fewer than two checkpoints, a bad option) and the readers' WeightsError
    subclasses."""
    from ..converters.registry import load
    from .render import trend_json
    if format is not None and from_format is not None and format != from_format:
        raise UsageError(f"trend: format={format!r} and from_format={from_format!r} disagree "
                         "(format is the old spelling of from_format)")
    from_format = from_format or format
    runs = [runs] if isinstance(runs, (str, os.PathLike, Store)) else list(runs)
    try:
        opts = TrendOptions(tuple(include), tuple(exclude), no_optimizer, explode,
                            weights_only=weights_only)
    except ValueError as exc:
        raise UsageError(f"trend: {exc}") from None
    if any(isinstance(r, Store) for r in runs):
        if not all(isinstance(r, Store) for r in runs) or scheduler is not None:
            raise UsageError("trend: expected paths or open stores, not both (and paths with "
                             "a scheduler: its workers open the files themselves)")
        if len(runs) < 2:
            raise UsageError(f"trend: expected two checkpoints or more; received {len(runs)}")
        return trend_json(trend_stores(runs, opts, [s.path or f"#{i}"
                                                    for i, s in enumerate(runs)]))
    paths = run_paths(runs, from_format)
    with contextlib.ExitStack() as stack:
        stores = [stack.enter_context(load(p, from_format)) for p in paths]
        if scheduler is None:
            return trend_json(trend_stores(stores, opts, paths))
        from . import distributed
        cluster = stack.enter_context(distributed.Cluster(scheduler))
        sources = [distributed.Source.of(p, from_format) for p in paths]
        return trend_json(distributed.trend_stores(stores, sources, opts, paths, cluster))


def trend_stores(stores: Sequence[Store], opts: TrendOptions | None = None,
                 paths: Sequence[str] | None = None) -> TrendResult:
    """The trend of every selected variable over `stores` (oldest first, at least two)."""
    opts = opts or TrendOptions()
    checkpoints, variables = trend_plan(stores, opts, paths)
    jobs = [(name, tensors, opts.max_bytes) for name, tensors in variables]
    sizes = [sum(t.nbytes for t in tensors if t is not None) for _, tensors in variables]
    results = run_all(_series_job, jobs, sizes, workers=opts.workers, progress=opts.progress)
    return trend_result(checkpoints, results, opts)


def trend_plan(stores: Sequence[Store], opts: TrendOptions, paths: Sequence[str] | None
               ) -> tuple[list[dict[str, Any]], list[tuple[str, list[Tensor | None]]]]:
    """The checkpoints ({"path", "format", "step"}) and the selected variables, each with its
    tensor in every checkpoint (None where absent or of another shape than its first): what
    a trend reads, from the stores' metadata alone."""
    if len(stores) < 2:
        raise ValueError(f"a trend needs two checkpoints or more; received {len(stores)}")
    paths = list(paths) if paths is not None else [f"#{i}" for i in range(len(stores))]
    steps = step_numbers(paths)
    checkpoints = [{"path": p, "format": s.format, "step": n}
                   for p, s, n in zip(paths, stores, steps)]
    names: dict[str, None] = {}
    for chosen in select_names(list(stores), opts.include, opts.exclude,
                               roles_option(opts.no_optimizer, opts.weights_only)):
        names.update(dict.fromkeys(chosen))
    variables = []
    for name in names:
        first = next(s[name] for s in stores if name in s)
        variables.append((name, [s[name] if name in s and s[name].shape == first.shape
                                 else None for s in stores]))
    weights = [ts for _, ts in variables if next(t for t in ts if t is not None).role
               == "weight"] or [ts for _, ts in variables]
    if weights and all(sum(t is not None for t in ts) < 2 for ts in weights):
        raise UsageError("no model weight is in two of the checkpoints (with its shape): these "
                         "are not checkpoints of one run; `wdiff` compares different models")
    return checkpoints, variables


def trend_result(checkpoints: list[dict[str, Any]], series: list[Series],
                 opts: TrendOptions) -> TrendResult:
    """The result from every variable's series: frozen, NaN/Inf steps, exploding flagged."""
    steps = [c["step"] for c in checkpoints]
    for one in series:
        _flag(one, steps, opts.explode)
    return TrendResult(checkpoints, series, opts)


# --- one variable over the run ---------------------------------------------------------------

def _series_job(name: str, tensors: list[Tensor | None], max_bytes: int,
                progress: Progress | None) -> Series:
    present = [t for t, x in enumerate(tensors) if x is not None]
    xs = [tensors[t] for t in present]
    series = new_series(name, tensors)
    run = SeriesRun(xs)
    per_stream = max(min(max_bytes, READ_BUDGET // len(xs)), 1 << 16)
    pending = 0
    if run.reads:
        for piece in aligned(*(x.iter_chunks(per_stream) for x in xs)):
            run.add(piece)
            pending += sum(raw.nbytes for raw in piece)
            if progress is not None and pending >= (8 << 20):
                progress(pending)
                pending = 0
    if progress is not None and pending:
        progress(pending)
    run.fill(series, present)
    return series


def new_series(name: str, tensors: Sequence[Tensor | None]) -> Series:
    """The empty series of variable `name` (`tensors`: one per checkpoint, None where absent;
    only their metadata is used)."""
    first = next(t for t in tensors if t is not None)
    n = len(tensors)
    return Series(name, first.role, list(first.shape), first.dtype_name, first.size,
                  *([None] * n for _ in range(7)), sums=[None] * n)  # type: ignore[arg-type]


class SeriesRun:
    """The running sums of one variable over the checkpoints where it is present (`xs`, oldest
    first), fed piece by piece (`add`: one piece of the engine's grid per checkpoint): each
    checkpoint's Σx², NaN and Inf counts, and its comparison with the previous and with the
    first checkpoint (`compare_piece`, exact: NaN equals NaN, no tolerance).

    The local trend feeds every piece of the variable. A distributed task feeds the pieces of
    a range and hands back what each piece added (`take_delta`); the driver adds those in order
    (`apply_delta`), which gives the local sums bit for bit (see `engine.Delta`)."""

    def __init__(self, xs: Sequence[Tensor]):
        first = xs[0]
        self.strings, self.integer, self.mixed = self.kind(xs)
        self.size = first.size
        self.kernel = kernel_for(self.strings, self.integer)
        self.opts = Options()
        shared: dict = {}
        self.prev = {j: _shared(_Accumulator(first.shape, self.integer), shared)
                     for j in range(1, len(xs))}
        self.first = {j: _shared(_Accumulator(first.shape, self.integer), shared)
                      for j in range(2, len(xs))}
        self.norm = [0.0] * len(xs)
        self.nan = [0] * len(xs)
        self.inf = [0] * len(xs)
        self.wide = None if self.strings else _wide_type(list(xs))
        self._slots: list[np.ndarray] = []

    @staticmethod
    def kind(xs: Sequence[Tensor]) -> tuple[bool, bool, bool]:
        """(strings, integer, mixed): compared as strings, as integers (and booleans), or as
        floating/complex values; `mixed`: strings against numbers, all unequal, never read."""
        strings = any(is_string(x.dtype) for x in xs)
        integer = not strings and all(x.dtype.kind in "biu" or x.dtype in _INT4 for x in xs)
        mixed = strings and not all(is_string(x.dtype) for x in xs)
        return strings and not mixed, integer, mixed

    @property
    def reads(self) -> bool:
        """Whether the values are read at all (not for strings against numbers)."""
        return not self.mixed and self.size > 0

    def at(self, offset: int) -> None:
        """Start at element `offset` (a distributed range): where `max_abs_index` counts from."""
        for acc in [*self.prev.values(), *self.first.values()]:
            acc.chunk_offset = offset

    def add(self, piece: Sequence[np.ndarray]) -> None:
        """One piece of every checkpoint (equally long, the same elements)."""
        if self.wide is None:
            for j in range(1, len(piece)):
                _compare(self.prev, self.first, j, self.kernel, piece, self.opts)
            return
        k = piece[0].size
        if not self._slots:
            self._slots = [np.empty(min(numeric.PIECE, self.size), self.wide)
                           for _ in range(3)]
        views = []  # each checkpoint's piece widened once: slot 0 the first, slots 1 and 2
        for j, raw in enumerate(piece):  # the current and the previous in turn
            w = self._slots[0 if j == 0 else 1 + j % 2][:k]
            np.copyto(w, raw, casting="unsafe")
            total, bad_nan, bad_inf = _norm_sq(w)
            self.norm[j] += total
            self.nan[j] += bad_nan
            self.inf[j] += bad_inf
            views.append(w)
            if j >= 1:
                _compare(self.prev, self.first, j, self.kernel,
                         piece if self.integer else views, self.opts)

    def take_delta(self) -> tuple:
        """What the pieces since the last call added, as plain numbers; zero again after it."""
        delta = (tuple(self.norm), tuple(self.nan), tuple(self.inf),
                 tuple(a.take_delta() for a in self.prev.values()),
                 tuple(a.take_delta() for a in self.first.values()))
        self.norm = [0.0] * len(self.norm)
        self.nan = [0] * len(self.nan)
        self.inf = [0] * len(self.inf)
        return delta

    def apply_delta(self, delta: tuple) -> None:
        """Add one piece's `take_delta`, as `add` adds the piece."""
        norm, nan, inf, prev, first = delta
        for j in range(len(self.norm)):
            self.norm[j] += norm[j]
            self.nan[j] += nan[j]
            self.inf[j] += inf[j]
        for acc, d in zip(self.prev.values(), prev):
            acc.apply_delta(d)  # always summing: an identical piece's Σa² is in its delta
        for acc, d in zip(self.first.values(), first):
            acc.apply_delta(d)

    def fill(self, series: Series, present: Sequence[int]) -> None:
        """Write the statistics into `series` (`present`: the checkpoints of `xs`)."""
        size = self.size
        for j, t in enumerate(present):
            if self.mixed:
                series.changed[t] = size if j else None
                continue
            if not self.strings:
                if self.nan[j] + self.inf[j] < size:  # else no finite value to take a norm of
                    series.l2_norm[t] = math.sqrt(self.norm[j])
                series.nan[t], series.inf[t] = self.nan[j], self.inf[j]
            sums = StepSums(self.norm[j])
            if j >= 1:
                stats = _finish(self.prev[j], size)
                series.changed[t] = stats.mismatched
                series.max_abs_diff_prev[t] = stats.max_abs_diff
                series.rel_l2_prev[t] = stats.rel_l2
                sums.prev = stats.sums
                if j == 1:
                    series.rel_l2_first[t], sums.first = stats.rel_l2, stats.sums
                else:
                    fstats = _finish(self.first[j], size)
                    series.rel_l2_first[t], sums.first = fstats.rel_l2, fstats.sums
            elif not self.strings:
                series.rel_l2_first[t] = 0.0
            series.sums[t] = sums


def _shared(acc: _Accumulator, buffers: dict) -> _Accumulator:
    """Accumulators of one variable work one after another: one set of scratch buffers."""
    acc.summing = True  # Σa² of identical pieces too: relative L2 needs the reference's norm
    acc._buffers = buffers
    return acc


def _finish(acc: _Accumulator, size: int) -> Any:
    acc.size = size
    return acc.stats()


def _wide_type(xs: list[Tensor]) -> np.dtype:
    return np.dtype(np.complex128 if any(x.dtype.kind == "c" for x in xs) else np.float64)


def _compare(prev_acc: dict, first_acc: dict, j: int, kernel: Any, views: Sequence,
             opts: Options) -> None:
    """Checkpoint j's piece against the previous and the first checkpoint's."""
    compare_piece(prev_acc[j], kernel, views[j - 1], views[j], opts)
    if j >= 2:
        compare_piece(first_acc[j], kernel, views[0], views[j], opts)


def _norm_sq(w: np.ndarray) -> tuple[float, int, int]:
    """Σ|x|² over the finite values of `w`, and its NaN and Inf counts."""
    total = dot(w, w)
    if math.isfinite(total):
        return total, 0, 0
    finite = np.isfinite(w)
    nan = int(np.count_nonzero(np.isnan(w)))
    inf = w.size - int(np.count_nonzero(finite)) - nan
    if not nan and not inf:
        return total, 0, 0  # every value finite, their squares overflow: an inf norm
    kept = w[finite]
    return dot(kept, kept), nan, inf


def _flag(series: Series, steps: list[int], explode: float) -> None:
    """frozen, first NaN/Inf step, norm growth and exploding, from the per-step values."""
    present = [t for t, s in enumerate(series.sums) if s is not None]
    series.frozen = len(present) >= 2 and all(series.changed[t] == 0 for t in present[1:])
    series.first_nan_step = next((steps[t] for t in present if series.nan[t]), None)
    series.first_inf_step = next((steps[t] for t in present if series.inf[t]), None)
    growth = None
    norms = [series.l2_norm[t] for t in present]
    for before, after in zip(norms, norms[1:]):
        if before and after is not None and math.isfinite(before):
            ratio = after / before
            growth = ratio if growth is None else max(growth, ratio)
    series.norm_growth = growth
    series.exploding = bool((growth is not None and growth > explode)
                            or any(n == math.inf for n in norms))


# --- rollups ---------------------------------------------------------------------------------

@dataclass
class TrendGroup:
    """The variables of one layer or module over the run, combined from their sums."""
    name: str
    variables: int
    size: int
    members: list[str]
    rel_l2_prev: list[float | None]
    rel_l2_first: list[float | None]
    l2_norm: list[float | None]
    nan: list[int | None]
    inf: list[int | None]
    changed: list[int | None]
    frozen: bool
    first_nan_step: int | None
    first_inf_step: int | None
    exploding: bool

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def rollup_trend(series: Sequence[Series], by: str) -> list[TrendGroup]:
    """Series grouped by layer or module: at each checkpoint, relative L2 from the members'
    summed squares (√ΣΣ(x_t−x_{t−1})² / √ΣΣx_{t−1}²), the norm from Σx², counts added."""
    out = []
    for name, members in groups((s.name for s in series), by).items():
        ms = [series[i] for i in members]
        n = len(ms[0].sums)
        cols: dict[str, list] = {k: [None] * n for k in
                                 ("rel_l2_prev", "rel_l2_first", "l2_norm", "nan", "inf",
                                  "changed")}
        for t in range(n):
            here = [(m, m.sums[t]) for m in ms if m.sums[t] is not None]
            if not here:
                continue
            numeric = [(m, s) for m, s in here if m.nan[t] is not None]
            if any(m.l2_norm[t] is not None for m, _ in numeric):
                cols["l2_norm"][t] = math.sqrt(math.fsum(s.norm_sq for _, s in numeric))
            if numeric:
                cols["nan"][t] = sum(m.nan[t] for m, _ in numeric)
                cols["inf"][t] = sum(m.inf[t] for m, _ in numeric)
            for key, attr in (("rel_l2_prev", "prev"), ("rel_l2_first", "first")):
                sums = [getattr(s, attr) for _, s in numeric
                        if getattr(s, attr) is not None and getattr(s, attr).finite]
                if sums:  # else no finite pair: no relative change to tell
                    cols[key][t] = relative(math.fsum(x.sum_sq for x in sums),
                                            math.fsum(x.aa for x in sums))
            changed = [m.changed[t] for m, _ in here if m.changed[t] is not None]
            cols["changed"][t] = sum(changed) if changed else None
        out.append(TrendGroup(
            name, len(ms), sum(m.size for m in ms), [m.name for m in ms], **cols,
            frozen=all(m.frozen for m in ms),
            first_nan_step=_first(m.first_nan_step for m in ms),
            first_inf_step=_first(m.first_inf_step for m in ms),
            exploding=any(m.exploding for m in ms)))
    return out
