"""`--scheduler ADDRESS`: `trend`, `wdiff` and `convert` on a Dask `distributed` cluster.

    with Cluster("tcp://10.0.0.5:8786") as cluster:      # or "local:4": a LocalCluster here
        result = diff_stores(a, b, (Source.of(path_a), Source.of(path_b)), Options(), cluster)

What runs where, and what crosses the network:
- The driver (the command) opens every input lazily, reading headers and indexes only (a
  checkpoint's `.index`, a safetensors header, HDF5 metadata), pairs the variables and plans
  tasks. It never reads a tensor's values.
- A task names its files (`Source`: a path, absolute, or a URL, the format and whether values
  are dequantized) and its work: whole variables, small ones batched together, or a range of
  a large variable, each task about TASK_BYTES of reading or more (Dask costs ~1.5 ms per task
  and ~0.4 s to start a LocalCluster: smaller tasks do not pay). A worker opens the files
  itself (`weightkit.load`, cached per worker process) and sends back only numbers: a whole
  variable's statistics (the `PairStats` or trend `Series` the local engine makes), or a range's
  per-piece partial sums (`engine.Delta`, `trend.SeriesRun.take_delta`), never values.
- The driver adds the partial sums of every range in the order the local engine adds them.

Results are the local run's, bit for bit: the engine cuts every variable into one fixed grid of
PIECE elements whatever the chunking (`engine.aligned`), a range starts on the grid, each piece's
sums are computed by the local engine's own code, and the driver adds them in order. This holds
for workers with the same numpy and BLAS on the same kind of CPU (BLAS picks its kernels by CPU);
a worker runs BLAS on one thread, as the local engine does.

A diff of two variables that are identical at first and differ later needs Σa² of the identical
pieces before the first difference, which the local engine reads again at the end
(`_sum_skipped`); here a second round of tasks reads those pieces (only for such variables).

Every input must be visible to every worker at the same path (a shared filesystem, or URLs);
`convert` writes its shards there too (see `convert_store`).
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..converters.deps import require
from ..converters.dtypes import is_string
from ..converters.errors import MissingDependencyError, UsageError, WeightsError
from ..converters.store import Index, Store, Tensor, block_indices
from . import engine, numeric
from .engine import (Delta, DiffResult, Options, PairStats, _Accumulator, _fill,
                     compare_piece, compare_tensors, diff_entries, fingerprint, kernel_for,
                     pair_kind, pairing, pieces, piece_squares)
from .trend import (READ_BUDGET, Series, SeriesRun, TrendOptions, TrendResult, _series_job,
                    new_series, trend_plan, trend_result)

TASK_BYTES = 64 << 20  # bytes read per task, at least (what is smaller is batched)
MAX_OPEN = 256  # stores a worker process keeps open (least recently used closed first)
CONNECT_TIMEOUT = "10s"
EXTRA = "pip install 'weightkit[dask]'"


# --- the cluster -----------------------------------------------------------------------------

class Cluster:
    """A Dask client for one command: `local:N` starts a LocalCluster of N worker processes (one
    thread each) for the command's lifetime; anything else is a scheduler address
    (`tcp://host:8786`, `host:8786`, `tls://...`). Use as a context manager.

    Raises MissingDependencyError without the `dask` extra, UsageError for a malformed
    `local:N`, WeightsError when the scheduler cannot be reached."""

    def __init__(self, address: str):
        try:
            distributed = require("distributed")
        except MissingDependencyError:
            raise MissingDependencyError(f"--scheduler needs Dask: {EXTRA}") from None
        self.address = address
        self.run_id = uuid.uuid4().hex  # the workers' stores of this command (`Source.run`)
        self._local = None
        if address.startswith("local:"):
            count = address[len("local:"):]
            if not count.isdigit() or not 1 <= int(count) <= 256:
                raise UsageError(f"--scheduler local:N takes a number of workers from 1 to 256; "
                                 f"received {address!r}")
            self._local = distributed.LocalCluster(
                n_workers=int(count), threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=logging.ERROR,
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})  # no port 8787 taken
            target: Any = self._local
        else:
            target = address
        try:
            self.client = distributed.Client(target, timeout=CONNECT_TIMEOUT,
                                             set_as_default=False)
        except (OSError, TimeoutError) as exc:
            self._close_local()
            raise WeightsError(f"cannot reach the Dask scheduler at {address!r}: {exc}") from None

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close this command's stores on every worker, then the client (and a local cluster)."""
        try:
            if self._local is None:
                self.client.run(_forget, self.run_id)
        except Exception:  # noqa: BLE001 (best effort: the scheduler may be gone)
            pass
        self.client.close()
        self._close_local()

    def _close_local(self) -> None:
        if self._local is not None:
            self._local.close()
            self._local = None

    @property
    def workers(self) -> int:
        """The number of workers the scheduler has now."""
        return len(self.client.scheduler_info().get("workers", {}))

    def run(self, fn: Callable[..., Any], tasks: Sequence[tuple], sizes: Sequence[int],
            progress: Callable[[int], None] | None = None) -> list[Any]:
        """`[fn(*task) for task in tasks]` on the workers, results in order. `sizes` (bytes
        of each task) go to `progress` as tasks end. The first task to fail cancels the rest
        and its error is raised here: a weightkit error as the worker raised it (one line
        naming the file), a worker that died as a WeightsError."""
        distributed = require("distributed")
        futures = [self.client.submit(fn, *task, pure=False) for task in tasks]
        where = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        try:
            for future in distributed.as_completed(futures, loop=self.client.loop):
                i = where[future.key]
                try:
                    results[i] = future.result()
                except distributed.client.FutureCancelledError as exc:
                    raise WeightsError(f"a Dask task was cancelled ({exc}); the scheduler "
                                       f"at {self.address!r} may have been restarted") from None
                except Exception as exc:
                    if type(exc).__name__ == "KilledWorker":
                        raise WeightsError(f"a Dask worker died while it ran a task (out of "
                                           f"memory?): {exc}") from None
                    raise
                if progress is not None:
                    progress(sizes[i])
        except BaseException:
            self.client.cancel(futures)
            raise
        return results


# --- inputs as the workers open them ---------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """An input as a worker opens it: `path` (absolute, or a URL), `format` (None: detected),
    whether quantized values are read as real values (`--dequantize`), and `run`, the command
    it belongs to (its stores are closed when the command ends)."""
    path: str
    format: str | None = None
    dequantize: bool = False
    run: str = ""

    @classmethod
    def of(cls, path: str | os.PathLike, format: str | None = None, dequantize: bool = False,
           run: str = "") -> "Source":
        path = os.fspath(path)
        return cls(path if "://" in path else os.path.abspath(path), format, dequantize, run)


    def open(self) -> Store:
        """The store, opened as the driver and every worker open it."""
        from ..converters.registry import load
        store = load(self.path, self.format)
        if self.dequantize:
            from ..converters.quant import dequantize
            store = dequantize(store)
        return store


_STORES: OrderedDict[Source, Store] = OrderedDict()
_LOCK = threading.Lock()
_READY = False


def _worker_setup() -> None:
    """Once per worker process: BLAS on one thread, kept (the local engine's dot products run
    on one BLAS thread, `workers.run_all`; two threads sum them in another order)."""
    global _READY
    with _LOCK:
        if not _READY:
            from threadpoolctl import threadpool_limits
            threadpool_limits(limits=1, user_api="blas")
            _READY = True


def open_source(source: Source) -> Store:
    """The store of `source` in this worker process, opened once and cached."""
    _worker_setup()
    with _LOCK:
        store = _STORES.get(source)
        if store is not None:
            _STORES.move_to_end(source)
            return store
    if "://" not in source.path and not os.path.exists(source.path) \
            and not os.path.exists(source.path + ".index"):
        raise UsageError(f"not found on the Dask worker on {socket.gethostname()}: the workers "
                         "must see every input at the same path (a shared filesystem, or URLs)",
                         source.path)
    store = source.open()
    with _LOCK:
        if source in _STORES:  # opened meanwhile by another thread
            store.close()
            return _STORES[source]
        _STORES[source] = store
        while len(_STORES) > MAX_OPEN:
            _STORES.popitem(last=False)[1].close()
    return store


def _forget(run: str) -> int:
    """Close the stores of command `run` in this worker process (run on every worker)."""
    with _LOCK:
        for key in [k for k in _PLANS if k[1].src.run == run]:
            del _PLANS[key]
        gone = [s for s in _STORES if s.run == run]
        for source in gone:
            _STORES.pop(source).close()
    return len(gone)


# --- ranges of a variable --------------------------------------------------------------------

def range_indices(shape: tuple[int, ...], start: int, stop: int, itemsize: int,
                  max_bytes: int) -> Iterator[Index]:
    """Basic-indexing tuples that together select the flat elements [start, stop) of an array
    of `shape`, in C order, each a contiguous block of at most about `max_bytes` (at least one
    element): a range of a variable read through any format's `Tensor.__getitem__`."""
    if start >= stop:
        return
    if not shape:
        yield ()
        return
    inner = 1
    for d in shape[1:]:
        inner *= d
    r0, o0 = divmod(start, inner)
    r1, o1 = divmod(stop, inner)
    if r0 == r1:
        for rest in range_indices(shape[1:], o0, o1, itemsize, max_bytes):
            yield (r0, *rest)
        return
    if o0:
        for rest in range_indices(shape[1:], o0, inner, itemsize, max_bytes):
            yield (r0, *rest)
        r0 += 1
    row_bytes = itemsize * inner
    if len(shape) == 1 or row_bytes <= max_bytes:
        step = max(1, max_bytes // max(row_bytes, 1))
        for s in range(r0, r1, step):
            yield (slice(s, min(s + step, r1)),)
    else:
        for r in range(r0, r1):
            for rest in block_indices(shape[1:], itemsize, max_bytes):
                yield (r, *rest)
    if o1:
        for rest in range_indices(shape[1:], 0, o1, itemsize, max_bytes):
            yield (r1, *rest)


def range_chunks(tensor: Tensor, start: int, stop: int, max_bytes: int) -> Iterator[np.ndarray]:
    """Flat blocks that together are elements [start, stop) of `tensor` in C order."""
    itemsize = 8 if is_string(tensor.dtype) else tensor.dtype.itemsize
    for index in range_indices(tensor.shape, start, stop, itemsize, max_bytes):
        yield tensor[index].reshape(-1)


def piece_count(size: int) -> int:
    """Pieces of the grid in a variable of `size` elements."""
    return -(-size // numeric.PIECE)


@dataclass
class _Work:
    """One unit of the plan: an item (a pair, a variable) or a range of its pieces."""
    item: int
    nbytes: int
    pieces: tuple[int, int] | None = None


def plan_tasks(sizes: Sequence[int], splittable: Sequence[int],
               task_bytes: int | None = None) -> list[list[_Work]]:
    """Tasks of at least `task_bytes` each (TASK_BYTES by default), but the last: an item of
    2·task_bytes or more whose `splittable` (its pieces, 0 if it cannot be split) allows it is
    cut into ranges of whole pieces of about task_bytes each, a task each; smaller items are
    batched in order."""
    task_bytes = task_bytes or TASK_BYTES
    tasks: list[list[_Work]] = []
    batch: list[_Work] = []
    batched = 0
    for item, (size, count) in enumerate(zip(sizes, splittable)):
        parts = min(size // task_bytes, count)
        if parts >= 2:
            bounds = [count * k // parts for k in range(parts + 1)]
            tasks += [[_Work(item, size * (p1 - p0) // count, (p0, p1))]
                      for p0, p1 in zip(bounds, bounds[1:])]
            continue
        batch.append(_Work(item, size))
        batched += size
        if batched >= task_bytes:
            tasks.append(batch)
            batch, batched = [], 0
    if batch:
        tasks.append(batch)
    return tasks


# --- wdiff -----------------------------------------------------------------------------------

def diff_stores(a: Store, b: Store, sources: tuple[Source, Source], opts: Options,
                cluster: Cluster) -> DiffResult:
    """`engine.diff_stores(a, b, opts)` with every value read and compared on `cluster`
    (`sources`: how the workers open A and B); the same result, bit for bit."""
    from . import export
    if opts.match == "auto" and export.applies(a, b):
        raise UsageError("--scheduler does not compare an export with its source (a TFLite or "
                         "TF.js model against a model): run that comparison without --scheduler")
    sources = tuple(replace(s, run=cluster.run_id) for s in sources)  # type: ignore[assignment]
    progress = opts.progress
    opts = replace(opts, progress=None, workers=1)
    # 1. The content hashes the pairing asks for (renames), computed by the workers: a first
    # pairing with stand-ins that never pair tells which (it asks for every candidate at once).
    asked: dict[tuple[str, str], None] = {}

    def record(side: str, name: str) -> tuple[str, str]:
        asked[side, name] = None
        return side, name
    pairing(a, b, opts, record)
    hashes = dict(zip(asked, _hashes(list(asked), sources, (a, b), opts, cluster, progress)))

    def content(side: str, name: str) -> bytes:
        return hashes[side, name]

    # 2. Every compared pair, and every variable only one side has (read, so that a damaged
    # one fails the diff as it fails `show`), in one set of tasks: the pairing `diff_entries`
    # makes again (with --include/--exclude, of the whole files; see `engine.pairing`).
    matching, _, _ = pairing(a, b, opts, content)
    pairs = [(p.a, p.b) for p in matching.pairs if a[p.a].shape == b[p.b].shape]
    unread = [("a", n) for n in matching.only_a] + [("b", n) for n in matching.only_b]
    unread += [side for p in matching.pairs if a[p.a].shape != b[p.b].shape
               for side in (("a", p.a), ("b", p.b))]
    stats = _compare(pairs, unread, sources, (a, b), opts, cluster, progress)

    def settle(paired: list[engine.Entry]) -> None:
        for entry in paired:
            if entry.status != "shape_changed":
                _fill(entry, stats[entry.name_a, entry.name_b], renames=a.format == b.format)

    entries, summary = diff_entries(a, b, opts, content, settle)
    return DiffResult(entries, summary, replace(opts, progress=progress))


def _hashes(asked: list[tuple[str, str]], sources: tuple[Source, Source],
            stores: tuple[Store, Store], opts: Options, cluster: Cluster,
            progress: Callable[[int], None] | None) -> list[bytes]:
    if not asked:
        return []
    tensors = [stores[side == "b"][name] for side, name in asked]
    tasks = plan_tasks([t.nbytes for t in tensors], [0] * len(tensors))
    jobs = [(sources, opts, [("hash", *asked[w.item]) for w in task]) for task in tasks]
    done = cluster.run(_diff_task, jobs, [sum(w.nbytes for w in t) for t in tasks], progress)
    return [r for results in done for r in results]


def _compare(pairs: list[tuple[str, str]], unread: list[tuple[str, str]],
             sources: tuple[Source, Source], stores: tuple[Store, Store], opts: Options,
             cluster: Cluster, progress: Callable[[int], None] | None
             ) -> dict[tuple[str, str], PairStats]:
    a, b = stores
    sizes, splittable, work = [], [], []
    for na, nb in pairs:
        ta, tb = a[na], b[nb]
        strings, _, _ = pair_kind(ta, tb)
        sizes.append(ta.nbytes + tb.nbytes)
        splittable.append(0 if strings else piece_count(ta.size))
        work.append(("pair", na, nb))
    for side, name in unread:
        sizes.append(stores[side == "b"][name].nbytes)
        splittable.append(0)
        work.append(("read", side, name))
    tasks = plan_tasks(sizes, splittable)
    jobs = [(sources, opts, [(*work[w.item], w.pieces) for w in task]) for task in tasks]
    done = cluster.run(_diff_task, jobs, [sum(w.nbytes for w in t) for t in tasks], progress)

    # whole pairs as the workers computed them; ranges' per-piece deltas in piece order
    whole: dict[int, PairStats] = {}
    deltas: dict[int, list[tuple[int, Delta]]] = {}
    for task, results in zip(tasks, done):
        for w, result in zip(task, results):
            if w.item >= len(pairs):
                continue
            if w.pieces is None:
                whole[w.item] = result
            else:
                deltas.setdefault(w.item, []).extend(enumerate(result, start=w.pieces[0]))
    squares = _squares(pairs, deltas, sources, stores, opts, cluster)
    out = {}
    for i, (na, nb) in enumerate(pairs):
        if i in whole:
            out[na, nb] = whole[i]
            continue
        ta, tb = a[na], b[nb]
        _, integer, _ = pair_kind(ta, tb)
        acc = _Accumulator(ta.shape, integer)
        acc.summing = opts.norms
        own = squares.get(i, {})
        for k, d in sorted(deltas[i], key=lambda kd: kd[0]):
            acc.apply_delta(d, own.get(k))
        if acc.summing and acc.skipped:  # the leading identical pieces, as `_sum_skipped`
            for k in range(acc.skipped // numeric.PIECE):
                acc.add_squares(own[k])
        acc.size = ta.size
        out[na, nb] = acc.stats()
    return out


def _squares(pairs: list[tuple[str, str]], deltas: dict[int, list[tuple[int, Delta]]],
             sources: tuple[Source, Source], stores: tuple[Store, Store], opts: Options,
             cluster: Cluster) -> dict[int, dict[int, float]]:
    """Σa² of the identical pieces that a worker did not sum (it had seen no difference yet)
    in the split pairs that differ somewhere: a second round of tasks, by piece."""
    wanted: dict[int, list[int]] = {}
    for i, ds in deltas.items():
        if any(d.compared for _, d in ds):
            need = sorted(k for k, d in ds if not d.compared and d.skipped)
            if need:
                wanted[i] = need
    if not wanted:
        return {}
    a = stores[0]
    items = list(wanted)
    itemsize = [a[pairs[i][0]].dtype.itemsize for i in items]
    sizes = [len(wanted[i]) * numeric.PIECE * n for i, n in zip(items, itemsize)]
    tasks = plan_tasks(sizes, [len(wanted[i]) for i in items])
    jobs = []
    for task in tasks:
        work = []
        for w in task:
            i = items[w.item]
            chosen = wanted[i] if w.pieces is None else wanted[i][w.pieces[0]:w.pieces[1]]
            work.append(("squares", *pairs[i], tuple(chosen)))
        jobs.append((sources, opts, work))
    done = cluster.run(_diff_task, jobs, [sum(w.nbytes for w in t) for t in tasks])
    out: dict[int, dict[int, float]] = {}
    for task, job, results in zip(tasks, jobs, done):
        for w, unit, values in zip(task, job[2], results):
            out.setdefault(items[w.item], {}).update(zip(unit[3], values))
    return out


def _diff_task(sources: tuple[Source, Source], opts: Any, work: list[tuple]) -> list[Any]:
    """On a worker: each unit of `work` on the stores of `sources`; numbers only come back.

    ("pair", a, b, None): the PairStats of a whole pair (`compare_tensors`);
    ("pair", a, b, (p0, p1)): the Delta of each piece p0 <= k < p1;
    ("read", side, name, None): None, once the variable was read whole (a damaged one raises);
    ("hash", side, name): the content hash (`engine.fingerprint`);
    ("squares", a, b, pieces): Σa² of each of those pieces of A."""
    a, b = open_source(sources[0]), open_source(sources[1])
    out: list[Any] = []
    for unit in work:
        kind = unit[0]
        if kind == "hash":
            out.append(fingerprint((a if unit[1] == "a" else b)[unit[2]], opts.max_bytes))
        elif kind == "read":
            for _ in (a if unit[1] == "a" else b)[unit[2]].iter_chunks(opts.max_bytes):
                pass
            out.append(None)
        elif kind == "squares":
            out.append(_piece_squares(a[unit[1]], b[unit[2]], unit[3], opts))
        elif unit[3] is None:
            out.append(compare_tensors(a[unit[1]], b[unit[2]], opts))
        else:
            out.append(_pair_range(a[unit[1]], b[unit[2]], opts, *unit[3]))
    return out


def _pair_range(ta: Tensor, tb: Tensor, opts: Options, p0: int, p1: int) -> list[Delta]:
    """What each piece p0 <= k < p1 of a pair adds to its sums (`compare_piece`)."""
    strings, integer, _ = pair_kind(ta, tb)
    kernel = kernel_for(strings, integer)
    acc = _Accumulator(ta.shape, integer)
    acc.summing = opts.norms
    acc.chunk_offset = p0 * numeric.PIECE
    start, stop = p0 * numeric.PIECE, min(p1 * numeric.PIECE, ta.size)
    out = []
    with np.errstate(all="ignore"):
        for x, y in pieces(range_chunks(ta, start, stop, opts.max_bytes),
                           range_chunks(tb, start, stop, opts.max_bytes)):
            compare_piece(acc, kernel, x, y, opts)
            out.append(acc.take_delta())
    return out


def _piece_squares(ta: Tensor, tb: Tensor, chosen: Sequence[int], opts: Options) -> list[float]:
    """Σa² of each chosen piece of A (runs of consecutive pieces read together)."""
    _, integer, _ = pair_kind(ta, tb)
    acc = _Accumulator(ta.shape, integer)
    out: list[float] = []
    k = 0
    while k < len(chosen):
        end = k + 1
        while end < len(chosen) and chosen[end] == chosen[end - 1] + 1:
            end += 1
        piece = numeric.PIECE
        start, stop = chosen[k] * piece, min((chosen[end - 1] + 1) * piece, ta.size)
        for (x,) in engine.aligned(range_chunks(ta, start, stop, opts.max_bytes)):
            out.append(piece_squares(acc, x))
        k = end
    return out


# --- trend -----------------------------------------------------------------------------------

def trend_stores(stores: Sequence[Store], sources: Sequence[Source], opts: TrendOptions,
                 paths: Sequence[str] | None, cluster: Cluster) -> TrendResult:
    """`trend.trend_stores(stores, opts, paths)` with every value read on `cluster`
    (`sources`: how the workers open each checkpoint); the same result, bit for bit."""
    sources = [replace(s, run=cluster.run_id) for s in sources]
    checkpoints, variables = trend_plan(stores, opts, paths)
    sizes, splittable = [], []
    for name, tensors in variables:
        xs = [t for t in tensors if t is not None]
        strings, _, mixed = SeriesRun.kind(xs)
        reads = not mixed and xs[0].size > 0
        sizes.append(sum(t.nbytes for t in xs) if reads else 0)
        splittable.append(piece_count(xs[0].size) if reads and not strings else 0)
    tasks = plan_tasks(sizes, splittable)
    masks = [tuple(t is not None for t in tensors) for _, tensors in variables]
    jobs = [(sources, opts.max_bytes, [(variables[w.item][0], masks[w.item], w.pieces)
                                       for w in task]) for task in tasks]
    done = cluster.run(_trend_task, jobs, [sum(w.nbytes for w in t) for t in tasks],
                       opts.progress)
    series: dict[int, Series] = {}
    deltas: dict[int, list[tuple[int, tuple]]] = {}
    for task, results in zip(tasks, done):
        for w, result in zip(task, results):
            if w.pieces is None:
                series[w.item] = result
            else:
                deltas.setdefault(w.item, []).extend(enumerate(result, start=w.pieces[0]))
    for i, ds in deltas.items():
        name, tensors = variables[i]
        present = [t for t, x in enumerate(tensors) if x is not None]
        one = new_series(name, tensors)
        run = SeriesRun([tensors[t] for t in present])
        for _, d in sorted(ds, key=lambda kd: kd[0]):
            run.apply_delta(d)
        run.fill(one, present)
        series[i] = one
    return trend_result(checkpoints, [series[i] for i in range(len(variables))], opts)


def _trend_task(sources: Sequence[Source], max_bytes: int,
                work: list[tuple[str, tuple[bool, ...], tuple[int, int] | None]]) -> list[Any]:
    """On a worker: for each (variable, presence per checkpoint, range) the whole variable's
    Series, or the per-piece deltas of the range (`SeriesRun.take_delta`)."""
    stores = [open_source(s) if any(mask[t] for _, mask, _ in work) else None
              for t, s in enumerate(sources)]
    out: list[Any] = []
    for name, mask, span in work:
        tensors = [s[name] if present else None  # type: ignore[index]
                   for s, present in zip(stores, mask)]
        if span is None:
            out.append(_series_job(name, tensors, max_bytes, None))
            continue
        xs = [t for t in tensors if t is not None]
        run = SeriesRun(xs)
        p0, p1 = span
        run.at(p0 * numeric.PIECE)
        start, stop = p0 * numeric.PIECE, min(p1 * numeric.PIECE, xs[0].size)
        per_stream = max(min(max_bytes, READ_BUDGET // len(xs)), 1 << 16)
        deltas = []
        for piece in engine.aligned(*(range_chunks(x, start, stop, per_stream) for x in xs)):
            run.add(piece)
            deltas.append(run.take_delta())
        out.append(deltas)
    return out


# --- convert ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Conversion:
    """A conversion as the driver and every worker make it: the input, the output (`dst`,
    `format`), the template (`like`), whether losses are allowed, and `edits`, what the
    command's `build` applies to the input before writing (plain data)."""
    src: Source
    dst: str
    format: str
    allow_lossy: bool = False
    like: Source | None = None
    edits: tuple = ()


Build = Callable[[Conversion, Callable[[Source], Store]], tuple[Store, Store | None]]


def convert_store(store: Store, like: Store | None, conversion: Conversion, build: Build,
                  cluster: Cluster, progress: Callable[[int], None] | None = None
                  ) -> list[str]:
    """Write `store` (what `build(conversion, open)` made on the driver, template `like`) as
    `conversion` asks, on `cluster`; the same files as `registry.save`. Returns the losses
    accepted (`allow_lossy`; empty when nothing is lost).

    A format with a sharded form (`Format.sharded`: a TF checkpoint's data shards, a sharded
    Keras 3 `.weights.json`) is written one shard per task, each worker opening the input and
    writing its shard into a scratch directory beside the output; the driver then moves the
    shards into place and writes the index last (`atomic_output`: nothing is visible before,
    and a failed task leaves nothing). Any other output is written whole by one worker,
    atomically by the format's own `write`. `build` is a module-level function (the workers
    import it) that opens the inputs with the opener it is given and applies the edits; the
    plan is made again on each worker from the same data, so it is the same plan."""
    from ..converters.atomic import atomic_output
    from ..converters.registry import check, get
    conversion = replace(conversion, src=replace(conversion.src, run=cluster.run_id),
                         like=None if conversion.like is None
                         else replace(conversion.like, run=cluster.run_id))
    planned = check(store, conversion.format, like, allow_lossy=conversion.allow_lossy,
                    path=conversion.dst)
    record = get(conversion.format)
    total = sum(t.nbytes for t in store.values())
    split = None
    if record.sharded is not None and "://" not in conversion.dst:
        split = record.sharded(planned, conversion.dst)
    if split is None:
        cluster.run(_convert_task, [(build, conversion, None, None)], [total], progress)
        return list(planned.losses)
    parent = os.path.dirname(os.path.abspath(split.index))
    scratch = tempfile.mkdtemp(prefix=f".{os.path.basename(split.index)[:100]}.wk-tmp-",
                               dir=parent)
    try:
        targets = [os.path.join(scratch, os.path.basename(f)) for f in split.files]
        tasks = [(build, conversion, k, target) for k, target in enumerate(targets)]
        facts = cluster.run(_convert_task, tasks, [total // len(tasks)] * len(tasks), progress)
        with atomic_output() as out:
            for target, final in zip(targets, split.files):
                out.adopt(target, final)
            with out.open(split.index) as f:
                split.write_index(facts, f)
        return list(planned.losses)
    finally:
        # renamed first: a task still running (cancelled after another failed) can no longer
        # create a file in it, so that the removal leaves nothing behind
        gone = f"{scratch}.gone"
        try:
            os.rename(scratch, gone)
        except OSError:
            gone = scratch
        shutil.rmtree(gone, ignore_errors=True)


_PLANS: OrderedDict[tuple, tuple] = OrderedDict()


def _convert_task(build: Build, conversion: Conversion, shard: int | None,
                  target: str | None) -> Any:
    """On a worker: write shard `shard` of the conversion into `target` (its facts for the
    index come back), or with shard None the whole output (None comes back)."""
    from ..converters.registry import check, get, save
    key = (build, conversion)
    with _LOCK:
        made = _PLANS.get(key)
    if made is None:
        store, like = build(conversion, open_source)
        made = store, like, check(store, conversion.format, like,
                                  allow_lossy=conversion.allow_lossy, path=conversion.dst)
        with _LOCK:
            _PLANS[key] = made
            while len(_PLANS) > 4:
                _PLANS.popitem(last=False)
    store, like, planned = made
    if shard is None:
        save(store, conversion.dst, conversion.format, allow_lossy=conversion.allow_lossy,
             like=like, planned=planned)
        return None
    assert target is not None
    if not os.path.isdir(os.path.dirname(target)):
        raise UsageError(f"the output directory is not visible on the Dask worker on "
                         f"{socket.gethostname()}: the workers must see the output at the same "
                         "path (a shared filesystem)", conversion.dst)
    split = get(conversion.format).sharded(planned, conversion.dst)  # type: ignore[misc]
    return split.write_shard(shard, target)
