"""The registry of formats: each format's record (`converters/format.py`), detection by
content, and load/plan/save through the records.

Built-in formats are listed below by name and module (fsspec's `known_implementations` habit), in
the order detection tries them (a SavedModel before a checkpoint directory, a `.keras` zip before
npz, Keras 3 HDF5 before tf.keras HDF5). A module is imported when its format is first needed:
detection imports them in that order and stops at the first that recognises the file, so
`weightkit show model.safetensors` does not import the HDF5, TFLite or TF.js readers; their
modules also keep heavy imports (h5py, crc32c, flatbuffers) inside functions.
Third-party formats register under the entry-point group `weightkit.formats`: each entry point
names a `Format` object or a module defining `FORMAT`. They are looked up only when needed (a
name that is not built in, a file no built-in format recognises, a listing of every format),
so that `weightkit show` on a built-in format does not scan installed packages, and they are
tried after the built-in ones. `register()` adds one at run time.
"""
from __future__ import annotations

import importlib
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

from . import source as seam
from .errors import LossyConversionError, UnknownFormatError, UsageError, WeightsError
from .format import Format, WritePlan
from .store import Store

ENTRY_POINT_GROUP = "weightkit.formats"
HEAD_BYTES = 4096

# Built-in formats: name -> module, in the order detection tries them. Unambiguous and common
# first; then the ones that must precede another (a SavedModel directory may hold a
# `checkpoint` file; a `.keras` archive is a zip, as npz is; a Keras 3 `.weights.h5` is HDF5, as
# tf.keras files are).
BUILTIN = {
    "safetensors": "safetensors", "saved-model": "saved_model", "tf-checkpoint": "checkpoint",
    "keras": "keras_v3", "npz": "npz", "keras-weights-h5": "keras_v3_weights",
    "keras-h5": "keras_h5", "tflite": "tflite", "tfjs": "tfjs", "tf-graphdef": "graphdef",
}

_formats: dict[str, Format] = {}  # name -> record, built-ins first
_aliases: dict[str, str] = {}
_builtins_loaded = False
_plugins_loaded = False


def _record(obj: Any, where: str) -> Format:
    """The `Format` an entry point or module provides."""
    record = getattr(obj, "FORMAT", obj) if isinstance(obj, ModuleType) else obj
    if not isinstance(record, Format):
        raise UsageError(f"format plug-in {where}: expected a weightkit Format record (or a module "
                         f"defining FORMAT), received {type(record).__name__}")
    return record


def register(record: Format | ModuleType, *, clobber: bool = False) -> Format:
    """Add a format (a `Format`, or a module defining `FORMAT`); refuses a name or alias that is
    taken unless `clobber`. Returns the record."""
    record = _record(record, repr(record))
    _load_builtins()
    for name in (record.name, *record.aliases):
        owner = _aliases.get(name, name if name in _formats else None)
        if owner is not None and owner != record.name and not clobber:
            raise UsageError(f"format name {name!r} is already taken by {owner!r}")
    if record.name in _formats and not clobber:
        raise UsageError(f"format {record.name!r} is already registered")
    _formats[record.name] = record
    _aliases.update({alias: record.name for alias in record.aliases})
    return record


def unregister(name: str) -> None:
    """Remove format `name` (a plug-in registered at run time) and its aliases."""
    record = _formats.pop(name, None)
    if record is not None:
        for alias in record.aliases:
            _aliases.pop(alias, None)


def _builtin(name: str) -> Format:
    """The record of built-in format `name`, its module imported on first use."""
    record = _formats.get(name)
    if record is None:
        module = BUILTIN[name]
        record = _record(importlib.import_module(f"{__package__}.{module}"), module)
        if record.name != name:
            raise UsageError(f"built-in module {module} declares format {record.name!r}, "
                             f"listed as {name!r}")
        _formats[name] = record
        _aliases.update({alias: name for alias in record.aliases})
    return record


def _load_builtins() -> None:
    """Import every built-in format, and keep them first in listings, in detection order."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for name in BUILTIN:
        _builtin(name)
    others = {n: r for n, r in _formats.items() if n not in BUILTIN}
    _formats.clear()
    _formats.update({n: _builtin(n) for n in BUILTIN}, **others)


def _load_plugins() -> None:
    """Register the formats installed packages declare (entry-point group `weightkit.formats`).
    A plug-in that fails to import is skipped with a warning naming it."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    _load_builtins()
    from importlib.metadata import entry_points
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            record = _record(point.load(), f"{point.name} ({point.value})")
            if record.name not in _formats:
                register(record)
        except Exception as exc:  # a broken plug-in must not break the built-in formats
            warnings.warn(f"weightkit format plug-in {point.name!r} ({point.value}) is not "
                          f"usable: {type(exc).__name__}: {exc}", stacklevel=2)


class _Formats(Mapping[str, Format]):
    """The read-only view of every format: name -> record (built-ins, then plug-ins)."""

    def __getitem__(self, name: str) -> Format:
        return get(name)

    def __iter__(self) -> Iterator[str]:
        _load_plugins()
        return iter(list(_formats))

    def __len__(self) -> int:
        _load_plugins()
        return len(_formats)

    def __contains__(self, name: object) -> bool:
        try:
            get(name)  # type: ignore[arg-type]
        except (UsageError, TypeError):
            return False
        return True

    def __repr__(self) -> str:
        return f"<formats {', '.join(self)}>"


FORMATS: Mapping[str, Format] = _Formats()


def get(name: str) -> Format:
    """The record of format `name` (or an alias); UsageError naming the formats otherwise."""
    if name in BUILTIN:
        return _builtin(name)
    if name not in _formats and name not in _aliases:
        _load_builtins()  # aliases are known from the records
    if name not in _formats and name not in _aliases:
        _load_plugins()
    record = _formats.get(_aliases.get(name, name))
    if record is None:
        import difflib
        close = difflib.get_close_matches(name, [*_formats, *_aliases], n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(f"unknown format {name!r}{hint}; supported: {', '.join(_formats)}")
    return record


def names() -> list[str]:
    """Every format's name, built-ins first (loads plug-ins)."""
    return list(FORMATS)


def by_namespace(namespace: str) -> Format | None:
    """The format keeping its file structure under `Store.meta[namespace]`, if any."""
    _load_builtins()
    found = [f for f in _formats.values() if f.namespace == namespace]
    if not found:
        _load_plugins()
        found = [f for f in _formats.values() if f.namespace == namespace]
    return found[0] if found else None


def _head(path: str) -> bytes:
    return seam.head(path, HEAD_BYTES)


def detect(path: str | os.PathLike) -> str:
    """The name of the format of `path` (a local path or a URL), judged by content (suffixes
    only break ties)."""
    path = seam.local_path(path)
    with seam.session():
        return _detect(path)


def _detect(path: str) -> str:
    if not seam.exists(path) and seam.exists(path + ".index"):
        return "tf-checkpoint"  # a checkpoint prefix
    seam.check_input(path)
    head = _head(path)
    sniffed = _sniffed(path, head)
    if sniffed is not None:
        return sniffed
    if head and seam.isfile(path):
        claimed = _format_by_suffix(path)
        if claimed is not None:
            return claimed  # its reader says precisely what is wrong with the file
    what = "directory" if seam.isdir(path) and not seam.isfile(path) else "file"
    raise UnknownFormatError(
        f"unrecognised {what}; supported formats: {', '.join(_formats)}", seam.display(path))


def _sniffed(path: str, head: bytes) -> str | None:
    """The first format, built-ins in order then plug-ins, that recognises `path` by content."""
    for name in BUILTIN:  # imported one by one, in order, until one recognises the file
        if _builtin(name).sniff(path, head):
            return name
    _load_plugins()
    for record in [f for f in _formats.values() if f.name not in BUILTIN]:
        if record.sniff(path, head):
            return record.name
    return None


def _format_by_suffix(path: str) -> str | None:
    lowered = path.lower()
    matches = [(len(s), f.name) for f in FORMATS.values() for s in f.suffixes
               if lowered.endswith(s)]
    return max(matches)[1] if matches else None


def format_for_output(path: str | os.PathLike, source: str | os.PathLike | None = None,
                      source_format: str | None = None) -> str:
    """The format a destination path asks for by its suffix. A name without one, or ending
    in `.ckpt-N`, is a TF checkpoint prefix (`ckpt/after`, `model.ckpt-100`: TensorFlow's own
    names) when the input `source` is a TF checkpoint, as `source_format` names it or else
    its content says; otherwise a UsageError asks for --to."""
    path = os.fspath(path)
    claimed = _format_by_suffix(path)
    if claimed is not None:
        return claimed
    if seam.isfile(seam.join(path, "saved_model.pb")):
        return "saved-model"
    if source is not None and _PREFIX_SUFFIX.fullmatch(os.path.splitext(path)[1]):
        try:
            given = get(source_format).name if source_format else detect(source)
        except WeightsError:
            given = None  # (reading the input says why)
        if given == "tf-checkpoint" and seam.isdir(path):
            raise UsageError("a directory; a checkpoint is written to a prefix in one: give "
                             f"{os.path.join(path, 'ckpt')} (or --to FORMAT for another format)",
                             path)
        if given == "tf-checkpoint":
            return given
    raise UsageError(f"cannot tell the output format from the name{_meant_suffix(path)}; give "
                     f"--to FORMAT ({', '.join(FORMATS)})", path)


def _meant_suffix(path: str) -> str:
    """` (did you mean .safetensors?)` for a name ending close to a format's suffix (each
    compared with every ending of the name from a dot: `.weights.h` is `.weights.h5`)."""
    import difflib
    name = os.path.basename(path.rstrip("/")).lower()
    endings = [name[i:] for i, c in enumerate(name) if c == "."]
    scores = [(difflib.SequenceMatcher(None, ending, s).ratio(), s) for ending in endings
              for f in FORMATS.values() for s in f.suffixes if s.startswith(".")]
    score, best = max(scores, default=(0.0, ""))
    return f" (did you mean {best}?)" if score >= 0.8 else ""


_PREFIX_SUFFIX = re.compile(r"(\.ckpt-\d+)?")  # what a checkpoint prefix may end in


def load(path: str | os.PathLike, format: str | None = None) -> Store:
    """Open a weights file (a local path or a URL) lazily. Use the store as a context manager
    to close it."""
    path = seam.local_path(path)
    with seam.session():  # detection and reading share one listing and one open object
        record = get(format) if format else get(detect(path))
        if format is not None and seam.exists(path):
            seam.check_input(path)
            head = _head(path)
            if not record.sniff(path, head):
                raise UnknownFormatError(_not_in(record, path, head), seam.display(path))
        return record.read(path)


def _not_in(record: Format, path: str, head: bytes) -> str:
    """Why `path` was refused as `record`'s format: it is not, and the format that does read
    it, if one does (`--from keras` on a tf.keras `.h5`)."""
    other = _sniffed(path, head)
    if other is None:
        return f"not a {record.name} file"
    return (f"not a {record.name} file; it reads as {other} ({get(other).description}): use "
            f"--from {other}, or no --from")


def plan(store: Store, format: str, like: Store | None = None) -> WritePlan:
    """What writing `store` in `format` would do: losses, refusal, the format's plan."""
    record = get(format)
    if not record.writable:
        return WritePlan(store, like, refusal=UsageError(
            f"weightkit reads {record.name} files but does not write them"))
    refusal = template_refusal(record.name, like)
    if refusal is not None:
        return WritePlan(store, like, refusal=refusal)
    return record.plan(store, like)


def template_refusal(format: str, like: Store | None) -> UsageError | None:
    """The error for a `like` template the writer of `format` would take nothing from: one
    without that format's file structure (`Store.meta[namespace]`), as a `.keras` archive is
    for a `.weights.h5`. Ignored, it would still silence what the write loses (the structure
    written is the template's, `format.py`'s rule), so it is refused, naming the formats."""
    record = get(format)
    if like is None or record.namespace is None or record.namespace in like.meta:
        return None
    fitting = record.templates or (record.name,)
    if like.format in fitting:
        return UsageError(f"writing {record.name} takes nothing from a template: leave --like "
                          "out", like.path)
    return UsageError(f"writing {record.name} takes nothing from a {like.format} template: "
                      f"give --like this model in {' or '.join(fitting)} format, or leave "
                      "--like out", like.path)


def losses(store: Store, format: str, like: Store | None = None) -> list[str]:
    """What writing `store` in `format` would lose (empty if nothing)."""
    return list(plan(store, format, like).losses)


def check(store: Store, format: str, like: Store | None = None, *, allow_lossy: bool = False,
          path: str | None = None, planned: WritePlan | None = None) -> WritePlan:
    """The plan of writing `store` in `format`, or the error `save` would refuse it with (a
    loss without `allow_lossy`, or the format's refusal), without writing anything."""
    planned = planned or plan(store, format, like)
    if planned.refusal is not None:
        exc = planned.refusal
        if path is not None and exc.path is None:
            raise type(exc)(exc.message, path) from None
        raise exc
    if planned.losses and not allow_lossy:
        hint = "" if like is not None else \
            f", or --like this model in {format} format to write into its structure"
        raise LossyConversionError(f"writing {format} would lose: {'; '.join(planned.losses)} "
                                   f"(use --allow-lossy to accept{hint})", path)
    return planned


def save(store: Store, path: str | os.PathLike, format: str | None = None, *,
         allow_lossy: bool = False, like: Store | None = None,
         planned: WritePlan | None = None) -> None:
    """Write `store` to `path` atomically; refuse a lossy conversion unless `allow_lossy`.
    `planned`: a plan already made for this store, format and template (not made again)."""
    path = seam.local_path(path)
    name = format or format_for_output(path)
    planned = check(store, name, like, allow_lossy=allow_lossy, path=path, planned=planned)
    if not seam.is_url(path):
        _check_replaced_directory(os.fspath(path), name)
    if seam.is_url(path):
        from .atomic import remote_output
        with remote_output(path) as local:  # written here, then uploaded, the index last
            get(name).write(planned, local)
        return
    get(name).write(planned, path)


def _check_replaced_directory(path: str, name: str) -> None:
    """A directory output (a SavedModel, a TF.js model) replaces what is at `path` whole: refuse
    an existing directory that holds anything but a `name` model (the current directory, a
    project folder), which the replacement would delete."""
    if not os.path.isdir(path) or os.path.islink(path):
        return
    with os.scandir(path) as entries:
        if next(entries, None) is None:
            return  # empty: nothing to lose
    try:
        held = detect(path)
    except WeightsError:
        held = None
    if held == name:
        return  # an earlier output: replaced, as a file output is
    what = f"a {held} model" if held else "files that are not a model"
    raise UsageError(f"the output is an existing directory holding {what}; refusing to replace "
                     f"it (it would be deleted): name a new directory, or remove this one first",
                     path)


def git_patterns() -> list[str]:
    """The `.gitattributes` patterns of every format (for `weightkit git-config`)."""
    return [p for f in FORMATS.values() for p in f.git_patterns]


def index_format(path: str) -> Format | None:
    """The format whose index-only reading applies to `path` (a checkpoint `.index`), if any."""
    for record in FORMATS.values():
        if record.index is not None and record.index.is_index(path):
            return record
    return None
