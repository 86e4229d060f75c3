"""Round-trip verification: FILE -> each target format -> back, compared bit for bit.

For every target format ("via"), the source store is written in that format in a temporary
directory, read back, written again in the source format, read back, and compared with the
original at the store level: names and their order, dtypes, shapes, every byte of every tensor
(NaN payloads and -0.0 included), each tensor's role, and every metadata entry of the original
(tensor and store metadata: the original key, format namespaces; entries a reader adds are not
differences).
When the target is the source format itself there is one hop instead of two.

Each pair ends as one of:
    identical  nothing differs
    lossy      the registry declared a loss (`losses()`); what was lost is listed
    different  something differs that no format declared: a bug in a reader or writer
    failed     a conversion raised; the error is kept
    skipped    a format chosen by default refused the store as a request it cannot take
               (a SavedModel needs a graph to write into): not a finding, the reason is kept

By default every format that holds the store without loss is tried. A store of more than
LARGE_STORE variables is tried through its own format and the portable archives (safetensors,
npz) only, and the report says so (`default_vias`): at 100,000 small variables merely asking
every format whether it holds the store took 15 s, and an HDF5 round trip tens of seconds (h5py
creates and reads each dataset for about 0.1 ms). `--via FORMAT` or `--via all` runs the others.

A writer that refuses the way back without a template (`like`) is given the original store as
its template, as a user would give `--like ORIGINAL`; the trip notes it. If it refuses even then
after a declared loss (a `.keras` template cannot take the positional names of a `.weights.h5`),
the trip is lossy: the way back needs what was lost.
"""
from __future__ import annotations

import functools
import json
import os
import selectors
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..converters.atomic import scratch
from ..converters.dtypes import is_string
from ..converters.errors import UsageError, WeightsError
from ..converters.mapped import FileChangedError
from ..converters.foreign import KEPT_BY_ALL, structure_losses
from ..converters.registry import FORMATS, get, load, losses, plan, save
from ..converters.source import is_url
from ..converters.store import (CHUNK_BYTES, Progress, Store, Tensor, gc_paused,
                                raw_parts, read_many)
from .engine import pieces, raw_bytes

STATUSES = ("identical", "lossy", "different", "failed", "skipped")
LARGE_STORE = 10_000  # variables above which the default trips are the cheap ones
CHEAP = ("safetensors", "npz")  # the portable archives: tried at any size
SMALL_BYTES = 64 << 10  # tensors compared whole
MAX_LISTED = 20


@dataclass
class Trip:
    """One round trip through format `via`."""
    via: str
    status: str = "identical"
    lost: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # intermediate and final paths (temporary)
    load: dict[str, Any] | None = None  # the framework check, when asked for

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "files"}


def candidates(store: Store) -> list[str]:
    """Formats that declare they can hold `store` without loss (the source format first)."""
    ordered = [store.format] if store.format in FORMATS else []
    ordered += [name for name in FORMATS if name != store.format]
    return [name for name in ordered if _holds(store, name)]


def _holds(store: Store, name: str) -> bool:
    try:
        return FORMATS[name].writable and not losses(store, name)
    except Exception:  # a writer that cannot even judge the store cannot hold it
        return False


def _file_name(name: str, original: str | None) -> str:
    """The name to write format `name` under: the original's own name for its own format (so a
    sharded `.weights.json` names its shards the same), else its stem with the format's suffix."""
    base = os.path.basename(os.path.normpath(original)) if original else "weights"
    own = max((s for f in FORMATS.values() for s in f.suffixes if base.lower().endswith(s)),
              key=len, default="")
    suffixes = FORMATS[name].suffixes
    if own and own in suffixes:
        return base
    return base[: len(base) - len(own)] + (suffixes[0] if suffixes else "")


def _place(workdir: str, step: str, name: str, original: str | None) -> str:
    os.mkdir(os.path.join(workdir, step))
    return os.path.join(workdir, step, _file_name(name, original))


def round_trip(store: Store, via: str, workdir: str, optional: bool = False,
               like: Store | None = None) -> Iterator[Trip]:
    """Run one round trip; yields the Trip while its files still exist, then cleans up.

    `optional`: the format was chosen by default, so its refusing the store is a skip.
    `like`: the template for writing `via` (a SavedModel's graph, a .tflite model), as
    `convert --like` takes one. Errors are kept without the temporary paths they name."""
    trip = Trip(via)
    source = store.format
    with ExitStack() as stack:
        try:
            planned = plan(store, via, like)
            trip.lost = [f"{via}: {text}" for text in planned.losses]
            replaced: set[str] = set()  # store metadata the template's structure replaces
            if like is not None:  # the file written has the template's structure, as asked:
                own = get(via).namespace
                kept = {key for key, value in store.meta.items() if like.meta.get(key) == value}
                replaced = set(store.meta) - kept - set(KEPT_BY_ALL)
                trip.lost += [f"{via}: {text} (the template's is written)" for text in
                              structure_losses(store, kept | {own} if own else kept)]
                if own in replaced:  # the store's own structure in the format: another one
                    trip.lost.append(f"{via}: {get(via).structure or repr(own)} (the "
                                     "template's is written)")
            middle = _place(workdir, "via", via, store.path)
            try:
                save(store, middle, via, allow_lossy=True, like=like, planned=planned)
            except UsageError as exc:
                if not optional:
                    raise
                trip.status, trip.error = "skipped", exc.message  # the path is our temporary
                yield trip
                return
            trip.files.append(middle)
            result = stack.enter_context(load(middle, via))
            if via != source:
                planned = plan(result, source)
                if optional and planned.losses and not trip.lost:  # chosen by default: the
                    trip.status = "skipped"  # way there holds the store, the way back does not
                    trip.error = (f"the way back to {source} would lose: "
                                  f"{'; '.join(planned.losses)}")
                    yield trip
                    return
                trip.lost += [f"back to {source}: {text}" for text in planned.losses]
                back = _place(workdir, "back", source, store.path)
                try:
                    save(result, back, source, allow_lossy=True, planned=planned)
                except UsageError:
                    try:
                        save(result, back, source, allow_lossy=True, like=store)
                    except UsageError as exc:
                        if not trip.lost:
                            raise
                        trip.status, trip.error = "lossy", _error_text(exc, workdir)
                        trip.notes.append(f"not written back to {source}: the way back needs "
                                          "what was lost")
                        yield trip
                        return
                    trip.notes.append(f"written back to {source} with the original as template")
                trip.files.append(back)
                result = stack.enter_context(load(back, source))
            trip.differences = compare(store, result, replaced)
        except FileChangedError:  # the input changed: not a finding about a format
            raise
        except Exception as exc:  # every failure is reported, not raised: it is the finding
            trip.status = "failed"
            trip.error = _error_text(exc, workdir)
        else:
            trip.status = ("lossy" if trip.lost else
                           "different" if trip.differences else "identical")
        yield trip


def _error_text(exc: Exception, workdir: str) -> str:
    """A trip's error in one line, as the command line prints errors: the message of a
    weightkit or system error, an unexpected one's kind too; without the paths of the temporary
    files it names (gone when the report is read): a weightkit error's message names none, and
    any other's has the trip's directory taken out of its paths."""
    message = exc.message if isinstance(exc, WeightsError) else str(exc)
    message = message.replace(workdir + os.sep, "")
    if isinstance(exc, (WeightsError, OSError)):
        return message
    return f"unexpected {type(exc).__name__}: {message}"


def default_vias(store: Store, every: bool = False) -> tuple[list[str], str | None]:
    """The formats `verify` tries when none are named, and a note when the store's size cut
    them to its own format and CHEAP (more than LARGE_STORE variables, unless `every`)."""
    large = LARGE_STORE
    if every or len(store) <= large:
        return candidates(store), None
    vias = [name for name in dict.fromkeys((store.format, *CHEAP))
            if name in FORMATS and _holds(store, name)]
    return vias, (f"a file of {len(store):,} variables (more than {large:,}) is tried through "
                  f"{', '.join(vias) or 'no format'} only; --via all tries every format "
                  "that holds it")


def verify(store: Store, vias: Sequence[str] | None = None,
           check: Callable[[Store, list[Trip]], None] | None = None, *,
           optional: bool | None = None, workers: int = 1,
           progress: Progress | None = None, like: Store | None = None) -> list[Trip]:
    """Round-trip `store` through each of `vias` (default: `default_vias(store)`), in order.

    `check(store, trips)` runs while the round-tripped files exist (the framework check).
    `optional`: the formats were chosen by default, so one refusing the store is skipped, not
    failed (default: when `vias` is empty). `workers` > 1: the trips run at once in up to that
    many forked processes (`_trips_in_children`: Linux, a local file, no `check`), and
    `progress` is told twice the store's bytes as each one ends (a child's reads are its own).
    `like`: a template for the trip through its own format (`round_trip`).
    """
    optional = not vias if optional is None else optional
    vias = list(vias) if vias else default_vias(store)[0]
    trips: list[Trip] = []
    with tempfile.TemporaryDirectory(prefix="weightkit-verify-") as workdir, scratch(), \
            ExitStack() as stack:
        if check is None and min(workers, len(vias)) > 1 and _forkable(store):
            return _trips_in_children(store, vias, workdir, optional, workers, progress, like)
        for via in vias:
            if check is None:  # nothing needs its files and stores later: release them now
                trips.append(_run_trip(store, via, workdir, optional, like))
            else:
                path = os.path.join(workdir, via)
                os.mkdir(path)
                trips.append(stack.enter_context(_entered(_trip(store, via, path, optional,
                                                                like))))
        if check is not None:
            check(store, trips)
    return trips


def _forkable(store: Store) -> bool:
    """Whether trips may run in forked children: Linux, and a local file (a URL is read by an
    event-loop thread, which a forked child would not have)."""
    return sys.platform.startswith("linux") and not is_url(store.path or "")


_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _trips_in_children(store: Store, vias: list[str], workdir: str, optional: bool,
                       workers: int, progress: Progress | None, like: Store | None
                       ) -> list[Trip]:
    """The trips, each in a process forked from this one (it inherits the open store; only the
    finished Trip comes back, as JSON over a pipe), at most `workers` at once.

    Interrupts stay the parent's: children ignore SIGINT and die of SIGTERM. On any exception
    here (Ctrl-C, SIGTERM as KeyboardInterrupt) every child is killed and waited for, with
    SIGINT and SIGTERM blocked, before the exception leaves: no child writes into the scratch
    directory as it is removed, and a second interrupt cannot cut the teardown short (it is
    delivered after). Forks happen with both signals blocked too, so no child exists that the
    parent has not recorded. No pools: multiprocessing.Pool hung when a second Ctrl-C landed
    inside its terminate(). A child that ends without a Trip (it raised, or was killed) has its
    trip run again here, so that the error is raised exactly as when trips run in turn."""
    nbytes = 2 * sum(t.nbytes for t in store.values())
    trips: list[Trip | None] = [None] * len(vias)
    running: dict[int, tuple[int, int, bytearray]] = {}  # pipe fd -> (pid, trip index, bytes)
    again: list[int] = []
    try:
        with selectors.DefaultSelector() as ready:
            # the trips through other formats first: they write twice, the one through the
            # file's own format once, so it fills in behind them (at 100k checkpoint entries
            # on 2 cores, the other order left one core idle for seconds)
            queue = sorted(range(len(vias)), key=lambda i: vias[i] == store.format)
            while queue or running:
                while queue and len(running) < workers:
                    index = queue.pop(0)
                    fd = _fork_trip(functools.partial(_run_trip, store, vias[index], workdir,
                                                      optional, like), index, running)
                    if fd is None:
                        again.append(index)
                    else:
                        ready.register(fd, selectors.EVENT_READ)
                if not running:  # every fork of this round failed: those run here, later
                    continue
                for key, _ in ready.select():
                    pid, index, received = running[key.fd]
                    chunk = os.read(key.fd, 1 << 16)
                    if chunk:
                        received += chunk
                        continue
                    ready.unregister(key.fd)
                    os.close(key.fd)
                    del running[key.fd]
                    trip = _finished(pid, received)
                    if trip is None:
                        again.append(index)
                    else:
                        trips[index] = trip
                        if progress is not None:
                            progress(nbytes)
    finally:
        _reap(running)
    for index in again:
        trips[index] = _run_trip(store, vias[index], workdir, optional, like)
    return [trip for trip in trips if trip is not None]


def _fork_trip(run: Callable[[], Trip], index: int,
               running: dict[int, tuple[int, int, bytearray]]) -> int | None:
    """Fork a child that runs one trip (`run`) and writes it to a pipe; recorded in `running`
    before any signal can arrive. Returns the pipe's reading end (None: fork failed)."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except OSError:  # no process to be had: the trip runs here, in turn
            os.close(read_end)
            os.close(write_end)
            return None
        if pid == 0:
            _child(run, read_end, write_end, blocked)
        os.close(write_end)
        running[read_end] = (pid, index, bytearray())
        return read_end
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _child(run: Callable[[], Trip], read_end: int, write_end: int, mask: set) -> None:
    """A trip's process: never returns into the parent's code (os._exit, no clean-ups of the
    parent's run twice); exit 0 only once the whole Trip is written."""
    code = 1
    try:
        os.close(read_end)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        payload = json.dumps(asdict(run())).encode()
        with open(write_end, "wb", closefd=True) as out:
            out.write(payload)
        code = 0
    finally:
        os._exit(code)


def _finished(pid: int, received: bytes) -> Trip | None:
    """The Trip a child sent, or None when it did not end well (waited for here)."""
    _, status = os.waitpid(pid, 0)
    if status != 0:
        return None
    try:
        return Trip(**json.loads(received))
    except (ValueError, TypeError):
        return None


def _reap(running: dict[int, tuple[int, int, bytearray]]) -> None:
    """Kill and wait for every child still running (interrupts held until they are gone)."""
    if not running:
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        for fd, (pid, _, _) in running.items():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            os.close(fd)
        running.clear()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _run_trip(store: Store, via: str, workdir: str, optional: bool, like: Store | None
              ) -> Trip:
    """One trip in a directory of its own under `workdir`, removed when the trip has ended
    (and first, should a child that died have left one)."""
    path = os.path.join(workdir, via)
    shutil.rmtree(path, ignore_errors=True)
    os.mkdir(path)
    try:
        with _entered(_trip(store, via, path, optional, like)) as trip:
            return trip
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _trip(store: Store, via: str, path: str, optional: bool, like: Store | None
          ) -> Iterator[Trip]:
    """`round_trip`, given the template when it is of the format `via`. That trip is asked
    for by the template, so never optional: a template the store does not fit fails it."""
    template = like if like is not None and like.format == via else None
    return round_trip(store, via, path, optional and template is None, template)


class _entered:
    """Keep a one-item generator suspended (its files alive) until the context exits."""

    def __init__(self, generator: Iterator[Trip]):
        self._generator = generator

    def __enter__(self) -> Trip:
        return next(self._generator)

    def __exit__(self, *exc: object) -> None:
        self._generator.close()


def compare(a: Store, b: Store, replaced: Iterable[str] = ()) -> list[str]:
    """Every store-level difference between `a` and `b` (empty when identical).
    `replaced`: namespaces of `a`'s store metadata that a template's structure replaced in
    `b`'s file (a loss the trip declares): they are not compared, and then neither is what a
    file calls each variable (`meta["key"]`), nor the origin (`source_format`)."""
    replaced = set(replaced)
    found: list[str] = []
    names_a, names_b = list(a), list(b)
    in_a, in_b = set(names_a), set(names_b)
    missing = [n for n in names_a if n not in in_b]
    extra = [n for n in names_b if n not in in_a]
    if missing:
        found.append(f"missing: {_listed(missing)}")
    if extra:
        found.append(f"unexpected: {_listed(extra)}")
    common = [n for n in names_a if n in in_b]
    if [n for n in names_b if n in in_a] != common:
        found.append("order differs")
    by_name: dict[str, list[str]] = {}  # the names with differences
    small: list[tuple[str, Tensor, Tensor]] = []  # compared in batches (`_unequal_small`)
    with gc_paused():  # 100,000 tuples (see gc_paused)
        for name in common:
            x, y = a[name], b[name]
            found_here = _described_differences(x, y, name, bool(replaced))
            if found_here:
                by_name[name] = found_here
            elif not is_string(x.dtype) and x.nbytes <= SMALL_BYTES:
                small.append((name, x, y))
            else:
                _note_unequal(by_name.setdefault(name, []), unequal_elements(x, y), x.size)
        small.sort(key=_place_of)  # batches of neighbours in the first file (`raw_parts`)
        for (name, x, _), unequal in _unequal_small(small):
            _note_unequal(by_name.setdefault(name, []), unequal, x.size)
    for name in common:
        found += [f"{name}: {text}" for text in by_name.get(name, ())]
    changed = _changed_meta({k: v for k, v in a.meta.items() if k not in replaced and not (
        replaced and k in KEPT_BY_ALL)}, b.meta)
    if changed:
        found.append(f"store metadata differs: {_listed(changed)}")
    return found


def _described_differences(a: Tensor, b: Tensor, name: str, keys_written: bool = False
                           ) -> list[str]:
    """Differences of dtype, shape, role and original meta entries (not of values)."""
    if a.meta == b.meta and a.shape == b.shape and a.dtype == b.dtype:
        return []  # (the usual case, decided by one comparison of the dicts)
    found = []
    if a.dtype != b.dtype:
        found.append(f"dtype {a.dtype_name} became {b.dtype_name}")
    if a.shape != b.shape:
        found.append(f"shape {a.shape} became {b.shape}")
    if a.role != b.role:
        found.append(f"role {a.role} became {b.role}")
    if any(k != "role" and b.meta.get(k, _ABSENT) != v for k, v in a.meta.items()):
        changed = _changed_meta({k: v for k, v in a.meta.items() if k != "role" and not (
            k not in b.meta and _implied(name, k, v)) and not (keys_written and k == "key")},
            b.meta)
        if changed:
            found.append(f"meta differs: {', '.join(changed)}")
    return found


def _implied(name: str, key: str, value: Any) -> bool:
    """Whether a meta entry says only what its absence says, so that a reader may leave it
    out: the key is the name (`names.py`), or a format namespace says only that the variable
    is stored under its name (`{"keys": [name]}`: a checkpoint's, as files converted by
    weightkit before this reader left such entries out carry it)."""
    return (key == "key" and value == name) or value == {"keys": [name]}


_ABSENT = object()


def _note_unequal(found: list[str], unequal: int, size: int) -> None:
    if unequal:
        found.append(f"{unequal:,} of {size:,} elements differ in their bytes")


def _unequal_small(pairs: list[tuple[str, Tensor, Tensor]]
                   ) -> Iterator[tuple[tuple[str, Tensor, Tensor], int]]:
    """(pair, unequal elements) of the pairs of small numeric tensors whose bytes differ, read
    many at a time (a batch of at most CHUNK_BYTES a side; `compare` orders the pairs by their
    place in the first file): a batch whose sides are each cut from one read (`raw_parts`; a
    trip writes the original's format, so its layout, again) is decided by one comparison,
    other batches with a read per run of neighbours (`read_many`)."""
    start, nbytes = 0, 0
    for end, (_, x, _) in enumerate(pairs, 1):
        nbytes += x.nbytes
        if nbytes < CHUNK_BYTES and end < len(pairs):
            continue
        batch = pairs[start:end]
        start, nbytes = end, 0
        xs, ys = [x for _, x, _ in batch], [y for _, _, y in batch]
        x_parts = raw_parts(xs)  # each side cut from one read where it can be (`raw_parts`)
        y_parts = raw_parts(ys) if x_parts is not None else None
        if y_parts is not None and b"".join(x_parts) == b"".join(y_parts):  # type: ignore
            continue  # the usual batch: equal, told by one comparison
        for pair, x, y in zip(batch, _arrays(xs, x_parts), _arrays(ys, y_parts)):
            if x.tobytes() != y.tobytes():
                yield pair, _unequal_bytes(x.reshape(-1), y.reshape(-1))


def _place_of(pair: tuple[str, Tensor, Tensor]) -> tuple[int, int]:
    extent = pair[1].extent
    return (0, -1) if extent is None else (id(extent.source), extent.offset)


def _arrays(tensors: list[Tensor], parts: list[memoryview] | None) -> list[np.ndarray]:
    """The tensors' arrays: from their `raw_parts` when read so (not read again), else from
    `read_many`."""
    if parts is None:
        return read_many(tensors)
    return [np.frombuffer(part, t.dtype).reshape(t.shape) for t, part in zip(tensors, parts)]


def unequal_elements(a: Tensor, b: Tensor, max_bytes: int = CHUNK_BYTES) -> int:
    """How many elements of two same-shape, same-dtype tensors differ in their bytes (each read
    once, through its format's own streaming read)."""
    if not is_string(a.dtype) and a.nbytes <= SMALL_BYTES:  # whole: one comparison, not a stream
        x, y = a.read().reshape(-1), b.read().reshape(-1)
        return 0 if x.tobytes() == y.tobytes() else _unequal_bytes(x, y)
    unequal = 0
    for x, y in pieces(a.iter_chunks(max_bytes), b.iter_chunks(max_bytes)):
        if is_string(a.dtype):
            unequal += sum(1 for p, q in zip(x.tolist(), y.tolist()) if bytes(p) != bytes(q))
        else:
            unequal += _unequal_bytes(x, y)
    return unequal


def _unequal_bytes(x: np.ndarray, y: np.ndarray) -> int:
    """Elements of two equally long flat arrays whose bytes differ."""
    xb, yb = raw_bytes(x), raw_bytes(y)
    if np.array_equal(xb, yb):
        return 0
    if xb.size == x.size:  # one unsigned integer per element
        return int(np.count_nonzero(xb != yb))
    return int(np.count_nonzero((xb != yb).reshape(x.size, -1).any(axis=1)))


def _changed_meta(original: dict, result: dict) -> list[str]:
    """Entries of `original` metadata that `result` lost or changed (a reader adding entries of
    its own, such as its format namespace, changes nothing that was there)."""
    return [str(k) for k in original if _plain(original[k]) != _plain(result.get(k))]


def _plain(value: Any) -> str:
    """A canonical JSON text of metadata, so that tuples and lists compare equal."""
    return json.dumps(value, sort_keys=True, default=repr)


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(map(str, items[:MAX_LISTED]))
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


# --- the verify document and the framework check ----------------------------------------------

SCHEMA_VERSION = 1
LOAD_TIMEOUT = 1800


def check_readable(store: Store) -> None:
    """Read every tensor once, so that a damaged input fails with its own one-line error
    instead of as every round trip in the table. Small numeric tensors are read many at a time
    (batches of at most CHUNK_BYTES, `_read_whole`)."""
    batch: list[Tensor] = []
    nbytes = 0
    for tensor in store.values():
        if is_string(tensor.dtype) or tensor.nbytes > SMALL_BYTES:
            for _ in tensor.iter_chunks():
                pass
            continue
        batch.append(tensor)
        nbytes += tensor.nbytes
        if nbytes >= CHUNK_BYTES:
            _read_whole(batch)
            batch, nbytes = [], 0
    _read_whole(batch)


def _read_whole(tensors: list[Tensor]) -> None:
    """Read the tensors, checksums checked: without an array each where their bytes can be
    cut from their file (`raw_parts`), else as `read_many` does (its errors when damaged)."""
    if raw_parts(tensors) is None:
        read_many(tensors)


def status(trips: Sequence[Trip]) -> str:
    """"error" if any conversion failed, "different" if anything was lost or differs (a
    framework load included), else "ok" (every pair identical or skipped)."""
    if any(t.status == "failed" for t in trips):
        return "error"
    if any(t.status not in ("identical", "skipped")
           or (t.load or {}).get("status") in ("different", "failed")
           for t in trips):
        return "different"
    return "ok"


def document(path: str, store: Store, trips: Sequence[Trip], note: str | None = None
             ) -> dict[str, Any]:
    """The JSON document of `weightkit verify --format json` (and `weightkit.verify`); `note`:
    what `default_vias` said, when it cut the formats tried."""
    doc = {"schema_version": SCHEMA_VERSION, "file": path, "format": store.format,
           "status": status(trips), "trips": [t.as_dict() for t in trips]}
    if note:
        doc["note"] = note
    return doc


def framework_check(original: str, store: Store) -> Callable[[Store, list[Trip]], None]:
    """The `check` of `verify` for `--load`: the framework loads the original and every
    round-tripped file in a child process (this process never imports TensorFlow) and compares
    their weights bit for bit. UsageError for a store no framework loads; MissingDependencyError
    without the `tensorflow` extra."""
    import importlib.util
    from ..converters.deps import require
    from .oracle import FRAMEWORK_FORMATS
    if store.format not in FRAMEWORK_FORMATS:
        raise UsageError(f"--load: expected a framework format ({', '.join(FRAMEWORK_FORMATS)}), "
                         f"received {store.format}")
    if importlib.util.find_spec("tensorflow") is None:
        require("tensorflow")  # raises MissingDependencyError with the install command
    return lambda checked, trips: _framework_check(original, checked, trips)


def _framework_check(original: str, store: Store, trips: list[Trip]) -> None:
    import subprocess
    import sys
    checked = [t for t in trips if t.files and t.status not in ("failed", "skipped")]
    if not checked:
        return
    jobs = [{"format": store.format, "original": os.path.abspath(original),
             "copy": t.files[-1]} for t in checked]
    with tempfile.TemporaryDirectory(prefix="weightkit-load-") as work:
        jobs_path, results_path = os.path.join(work, "jobs.json"), os.path.join(work, "results.json")
        with open(jobs_path, "w", encoding="utf-8") as f:
            json.dump(jobs, f)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        env.setdefault("KERAS_BACKEND", "tensorflow")
        done = subprocess.run([sys.executable, "-m", "weightkit.diffing.oracle", jobs_path,
                               results_path], env=env, capture_output=True, text=True,
                              timeout=LOAD_TIMEOUT)
        if done.returncode != 0 or not os.path.exists(results_path):
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise UsageError(f"--load: the framework check failed: {tail[0]}")
        with open(results_path, encoding="utf-8") as f:
            results = json.load(f)
    for trip, result in zip(checked, results):
        trip.load = result
