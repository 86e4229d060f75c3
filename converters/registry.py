"""The registry of formats: detection by content, lazy import of the module that handles each.

A format module provides:

    NAME: str
    def sniff(path: str, head: bytes) -> bool     # cheap test of content (head: first 4 KiB or b"")
    def read(path: str) -> Store
    def losses(store: Store, like: Store | None = None) -> list[str]  # what writing loses; [] = nothing
    def write(store: Store, path: str, *, allow_lossy: bool = False, like: Store | None = None)
    def check(store: Store, like: Store | None = None)  # optional: raise what write would refuse

Modules keep heavy imports (h5py, crc32c) inside functions so that `show` on one format does not
pay for the others.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import MappingProxyType, ModuleType

from .errors import LossyConversionError, UnknownFormatError, UsageError
from .paths import check_input
from .store import Store


@dataclass(frozen=True)
class Format:
    name: str
    module: str
    suffixes: tuple[str, ...]
    description: str


# Order matters for detection: the first module whose sniff() accepts a path reads it.
_FORMATS = (
    Format("saved-model", "saved_model", (), "TensorFlow SavedModel directory"),
    Format("tf-checkpoint", "checkpoint", (".index", ".ckpt"),
           "TensorFlow checkpoint (prefix, .index, or a directory with a `checkpoint` file)"),
    Format("keras", "keras_v3", (".keras",), "Keras 3 .keras archive"),
    Format("keras-weights-h5", "keras_v3_weights", (".weights.h5", ".weights.json"),
           "Keras 3 .weights.h5 (or sharded .weights.json)"),
    Format("keras-h5", "keras_h5", (".h5", ".hdf5"),
           "Keras HDF5: tf.keras model.save / save_weights, Keras 3 legacy .h5"),
    Format("npz", "npz", (".npz",), "NumPy .npz archive"),
    Format("safetensors", "safetensors", (".safetensors",), "safetensors"),
    Format("tfjs", "tfjs", ("model.json",),
           "TensorFlow.js model: model.json (or its directory) and weight files"),
    Format("tf-graphdef", "graphdef", (".pb",), "frozen TensorFlow GraphDef (.pb)"),
)
FORMATS = MappingProxyType({f.name: f for f in _FORMATS})

HEAD_BYTES = 4096


def format_module(name: str) -> ModuleType:
    """The module that handles format `name`, imported on first use."""
    try:
        fmt = FORMATS[name]
    except KeyError:
        raise UsageError(f"unknown format {name!r}; supported: {', '.join(FORMATS)}") from None
    return importlib.import_module(f"{__package__}.{fmt.module}")


def _head(path: str) -> bytes:
    if os.path.isdir(path):
        return b""
    with open(path, "rb") as f:
        return f.read(HEAD_BYTES)


def detect(path: str | os.PathLike) -> str:
    """The name of the format of `path`, judged by content (suffixes only break ties)."""
    path = os.fspath(path)
    if not os.path.exists(path) and os.path.exists(path + ".index"):
        return "tf-checkpoint"  # a checkpoint prefix
    check_input(path)
    head = _head(path)
    for fmt in _FORMATS:
        if format_module(fmt.name).sniff(path, head):
            return fmt.name
    if os.path.isfile(path) and head:
        claimed = _format_by_suffix(path)
        if claimed is not None:
            return claimed  # its reader says precisely what is wrong with the file
    what = "directory" if os.path.isdir(path) else "file"
    raise UnknownFormatError(
        f"unrecognised {what}; supported formats: {', '.join(FORMATS)}", path)


def _format_by_suffix(path: str) -> str | None:
    lowered = path.lower()
    matches = [(len(s), f.name) for f in _FORMATS for s in f.suffixes if lowered.endswith(s)]
    return max(matches)[1] if matches else None


def format_for_output(path: str | os.PathLike) -> str:
    """The format a destination path asks for by its suffix."""
    path = os.fspath(path)
    claimed = _format_by_suffix(path)
    if claimed is not None:
        return claimed
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return "saved-model"
    raise UsageError("cannot tell the output format from the name; give --to FORMAT "
                     f"({', '.join(FORMATS)})", path)


def load(path: str | os.PathLike, format: str | None = None) -> Store:
    """Open a weights file lazily. Use the store as a context manager to close it."""
    path = os.fspath(path)
    name = format or detect(path)
    module = format_module(name)
    if format is not None and os.path.exists(path):
        check_input(path)
        if not module.sniff(path, _head(path)):
            raise UnknownFormatError(f"not a {name} file", path)
    return module.read(path)


def losses(store: Store, format: str, like: Store | None = None) -> list[str]:
    """What writing `store` in `format` would lose (empty if nothing)."""
    return list(format_module(format).losses(store, like=like))


def check(store: Store, format: str, like: Store | None = None, *, allow_lossy: bool = False,
          path: str | None = None) -> None:
    """Raise the error `save` would refuse writing `store` in `format` with (a loss without
    `allow_lossy`, or what the format's own `check` refuses), without writing anything."""
    module = format_module(format)
    lost = module.losses(store, like=like)
    if lost and not allow_lossy:
        raise LossyConversionError(
            f"writing {format} would lose: {'; '.join(lost)} (use --allow-lossy to accept)", path)
    if hasattr(module, "check"):
        module.check(store, like=like)


def save(store: Store, path: str | os.PathLike, format: str | None = None, *,
         allow_lossy: bool = False, like: Store | None = None) -> None:
    """Write `store` to `path` atomically; refuse a lossy conversion unless `allow_lossy`."""
    path = os.fspath(path)
    name = format or format_for_output(path)
    check(store, name, like, allow_lossy=allow_lossy, path=path)
    format_module(name).write(store, path, allow_lossy=allow_lossy, like=like)
