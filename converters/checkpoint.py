"""TensorFlow checkpoints: `PREFIX.index` + `PREFIX.data-NNNNN-of-MMMMM` (TF1 name-based and TF2
object-based, sharded, partitioned), read and written without TensorFlow.

A checkpoint is given as its prefix, its `.index` or a data file, or as a directory holding a
`checkpoint` state file (`model_checkpoint_path: "..."`, tensorflow/tensorflow
`tensorflow/python/checkpoint/checkpoint_management.py`), whose newest checkpoint is read, or
holding one checkpoint and no state file (as `tf.train.Checkpoint.write()` leaves it). The
bytes are a TensorBundle (`bundle.py`); names, roles, order and writing back are
`bundle_store.py`, shared with SavedModel `variables/`. Git hands a diff driver an `.index` alone:
`read_index` lists what it records (dtypes, shapes, crc32c) without the data files.
"""
from __future__ import annotations

import os
import posixpath
import re
import struct
import warnings

import numpy as np

from . import object_graph as og
from . import source as seam
from .atomic import atomic_output
from .bundle import DT_STRING, DT_VARIANT, DTYPES, Entry, Index, data_path, slice_key
from .bundle_store import (META, current_layout, distinct_names, plan_bundle, read_bundle,
                           sharded_bundle, write_bundle)
from .dtypes import dtype_from_name
from .errors import CorruptFileError, UnknownFormatError, UsageError, WeightsError, WeightsNote
from .format import Format, IndexReading, ShardedWrite, WritePlan
from .names import natural_key
from .paths import inside
from .sstable import FOOTER_SIZE, MAGIC
from .store import Store, Tensor

NAME = "tf-checkpoint"
INDEX_ONLY = "tf-checkpoint-index"  # the format of a store read by `read_index`
STATE_FILE = "checkpoint"
_STATE_LIMIT = 1 << 20
_DATA_NAME = re.compile(r"(.+)\.data-\d{5}-of-\d{5}")
_STATE_ENTRY = re.compile(r'^\s*(model_checkpoint_path|all_model_checkpoint_paths):\s*'
                          r'"((?:[^"\\]|\\.)*)"', re.M)


# --- paths -----------------------------------------------------------------------------------

def resolve_prefix(path: str) -> tuple[str, str | None]:
    """(checkpoint prefix, directory everything must stay inside or None) for a prefix, an
    `.index` or data file, or a directory (`directory_prefix`)."""
    if seam.isdir(path) and not seam.isfile(path):
        return directory_prefix(path), path
    if path.endswith(".index") and seam.isfile(path):
        return path[:-len(".index")], None
    if seam.isfile(path + ".index"):
        return path, None
    match = _DATA_NAME.fullmatch(path)
    if match and seam.isfile(match.group(1) + ".index"):
        return match.group(1), None
    raise UnknownFormatError("expected a checkpoint prefix, its .index file, or a directory "
                             "with a `checkpoint` state file", path)


def held_prefixes(directory: str) -> list[str]:
    """The names of the checkpoints directly in `directory` (`X` for each file `X.index`), in
    natural order."""
    return sorted((f[:-len(".index")] for f in seam.listdir(directory)
                   if f.endswith(".index") and seam.isfile(seam.join(directory, f))),
                  key=natural_key)


def directory_prefix(directory: str) -> str:
    """The checkpoint a directory given as input stands for: the newest its `checkpoint` state
    file lists (`state_prefixes`), else the only checkpoint it holds.

    TensorFlow reads a directory only through its state file (`tf.train.latest_checkpoint` is
    None without one, and `tf.train.load_checkpoint` refuses the directory); one checkpoint and
    no state file (what `Checkpoint.write()` leaves) is unambiguous, several are a UsageError
    naming them rather than a guess. Everything read stays inside the directory (`Bundle`)."""
    if seam.isfile(seam.inside(directory, STATE_FILE)):  # a symlink leading out is refused here
        return state_prefixes(directory)[-1]
    names = held_prefixes(directory)
    if len(names) == 1:
        return seam.inside(directory, names[0])
    if not names:
        raise UnknownFormatError("expected a directory with a `checkpoint` state file or a "
                                 "checkpoint's .index file; received one with neither", directory)
    shown = ", ".join(names if len(names) <= 6 else [*names[:5], "...", names[-1]])
    raise UsageError(f"{seam.display(directory)} holds checkpoint prefixes {shown} but no "
                     f"'{STATE_FILE}' state file: pass one prefix, e.g. "
                     f"{seam.display(seam.join(directory, names[-1]))}")


def run_prefixes(directory: str) -> list[str]:
    """A training run's checkpoints in `directory`, oldest first: those its `checkpoint` state
    file lists (`state_prefixes`), else every checkpoint it holds in natural order (`ckpt-2`
    before `ckpt-10`, as `Checkpoint.save` numbers them)."""
    if seam.isfile(seam.inside(directory, STATE_FILE)):  # a symlink leading out is refused here
        return state_prefixes(directory)
    names = held_prefixes(directory)
    if not names:
        raise UnknownFormatError("expected a directory with a `checkpoint` state file or "
                                 "checkpoints' .index files; received one with neither",
                                 directory)
    return [seam.inside(directory, name) for name in names]


def state_prefixes(directory: str) -> list[str]:
    """The checkpoints a `checkpoint` state file lists, oldest first, ending with the newest
    (`model_checkpoint_path`), as prefixes inside `directory`.

    A path the state file names outside the directory (an absolute path from the machine that
    trained, or `../`) is never followed: the checkpoint of the same name inside the directory is
    read instead, or, for the newest, the directory's only checkpoint, each with a
    `WeightsNote`. Raises UnknownFormatError without a state file, UnsafeFileError when the
    state file itself leads outside the directory, CorruptFileError when it names nothing
    readable.
    """
    state = seam.inside(directory, STATE_FILE)  # a symlink leading out is refused here
    if not seam.isfile(state):
        raise UnknownFormatError("expected a directory with a `checkpoint` state file; "
                                 "received one without it", directory)
    seam.check_input(state)
    text = seam.read_bytes(state, _STATE_LIMIT).decode("utf-8", "replace")
    entries = [(field, re.sub(r"\\(.)", r"\1", value)) for field, value in
               _STATE_ENTRY.findall(text)]
    newest = [value for field, value in entries if field == "model_checkpoint_path"]
    if not newest:
        raise CorruptFileError("expected `model_checkpoint_path: \"...\"` in the state file",
                               state)
    listed = [value for field, value in entries if field == "all_model_checkpoint_paths"]
    names = [n for n in listed if n != newest[-1]] + [newest[-1]]
    prefixes = []
    for i, name in enumerate(names):
        prefix = _inside_or_local(directory, name, state, only=i == len(names) - 1)
        if prefix is not None and prefix not in prefixes:
            prefixes.append(prefix)
    return prefixes


def _inside_or_local(directory: str, name: str, state: str, only: bool) -> str | None:
    """The prefix `name` names inside `directory`; for a name leading elsewhere, the prefix of
    its basename here, else (`only`: the newest) the directory's only checkpoint."""
    if seam.is_url(directory):
        return _inside_or_local_url(directory, name, state, only)
    root = os.path.realpath(directory)
    target = os.path.realpath(os.path.join(root, name))
    if target.startswith(root + os.sep) and os.path.isfile(target + ".index"):
        return inside(directory, os.path.relpath(target, root))
    outside = not target.startswith(root + os.sep)
    local = os.path.basename(name)
    if local and os.path.isfile(os.path.join(directory, local + ".index")):
        candidates = [local]
    elif only:
        candidates = held_prefixes(directory)
    else:
        return None  # an older checkpoint since deleted
    if len(candidates) == 1:
        warnings.warn(WeightsNote(
            f"{state}: names {name!r}{' outside the directory' if outside else ''}; reading "
            f"{os.path.join(directory, candidates[0])!r} instead"), stacklevel=2)
        return inside(directory, candidates[0])
    where = "outside the directory, " if outside else ""
    found = f"the directory holds {len(candidates)} checkpoints" if candidates else \
        "the directory holds no checkpoint"
    raise CorruptFileError(f"the state file names {name!r} ({where}no .index file there) and "
                           f"{found}: give the checkpoint prefix", state)


def _inside_or_local_url(directory: str, name: str, state: str, only: bool) -> str | None:
    """`_inside_or_local` for a directory that is a URL prefix: a name is inside when it is a
    relative path staying under the prefix, or a URL under it (TF1 savers wrote full URLs);
    another bucket, another scheme or `../` is outside."""
    folder = directory.rstrip("/") + "/"
    if seam.is_url(name):
        parts = name[len(folder):].split("/") if name.startswith(folder) else [".."]
        target = name if ".." not in parts and "." not in parts else None
    else:
        target = seam.within(directory, name)
    if target is not None and seam.isfile(target + ".index"):
        return target
    local = posixpath.basename(name.rstrip("/"))
    if local and local not in (".", "..") and seam.isfile(seam.join(directory, local + ".index")):
        candidates = [local]
    elif only:
        candidates = held_prefixes(directory)
    else:
        return None  # an older checkpoint since deleted
    outside = target is None
    if len(candidates) == 1:
        warnings.warn(WeightsNote(
            f"{seam.display(state)}: names {name!r}{' outside the directory' if outside else ''}"
            f"; reading {seam.display(seam.join(directory, candidates[0]))!r} instead"),
            stacklevel=3)
        return seam.join(directory, candidates[0])
    where = "outside the directory, " if outside else ""
    found = f"the directory holds {len(candidates)} checkpoints" if candidates else \
        "the directory holds no checkpoint"
    raise CorruptFileError(f"the state file names {name!r} ({where}no .index file there) and "
                           f"{found}: give the checkpoint prefix", state)


def sniff(path: str, head: bytes) -> bool:
    """A directory (not a SavedModel) with a `checkpoint` state file or a checkpoint's `.index`,
    a file ending in the table magic, or a data shard next to its index."""
    if seam.isdir(path) and not seam.isfile(path):
        return ((seam.isfile(seam.join(path, STATE_FILE)) or bool(held_prefixes(path)))
                and not seam.exists(seam.join(path, "saved_model.pb")))
    match = _DATA_NAME.fullmatch(path)
    if match and seam.isfile(match.group(1) + ".index"):
        return True
    if seam.is_url(path) and not path.endswith(".index"):
        return False  # TF names index files so; a URL's tail costs a request
    try:
        with seam.open_source(path) as f:
            if f.size < FOOTER_SIZE:
                return False
            return struct.unpack("<Q", f.pread(f.size - 8, 8))[0] == MAGIC
    except (OSError, WeightsError):
        return False


def read(path: str) -> Store:
    """Open a checkpoint given as prefix, `.index`, data file or directory with a state file."""
    prefix, root = resolve_prefix(path)
    return read_bundle(prefix, root, format=NAME, path=path)


# --- the index alone -------------------------------------------------------------------------

def _checksum(index: Index, e: Entry) -> str:
    """`crc32c:` and the entry's masked crc32c in hex (one per slice of a partitioned tensor)."""
    crcs = [index.slice_entries[slice_key(e.key, x)].crc for x in e.slices] if e.slices else [e.crc]
    return "crc32c:" + ",".join(f"{crc:08x}" for crc in crcs)


def is_index(path: str) -> bool:
    """Whether `path` is a file named `*.index` that ends in the table magic."""
    return path.endswith(".index") and seam.isfile(path) and sniff(path, b"")


def named_prefix(path: str) -> str | None:
    """The checkpoint prefix a file name names, `X` for `X.index` or `X.data-00000-of-00001`,
    whether or not it exists (None for other names)."""
    if path.endswith(".index"):
        return path[:-len(".index")]
    match = _DATA_NAME.fullmatch(path)
    return match.group(1) if match else None


def stored_as(path: str) -> tuple[str, ...]:
    """The checkpoint prefix `path` names: by the name of its `.index` or a data file (an
    output need not exist yet), or as an existing prefix, file or directory (`index_of`)."""
    found = index_of(path)
    return tuple(p for p in dict.fromkeys((named_prefix(path), found and named_prefix(found)))
                 if p)


def index_of(path: str) -> str | None:
    """The `.index` file of the checkpoint `path` names (a prefix, a directory, the file)."""
    try:
        prefix, _ = resolve_prefix(path)
    except WeightsError:
        return None
    return prefix + ".index" if is_index(prefix + ".index") else None


def index_without_data(path: str) -> bool:
    """Whether `path` is a readable checkpoint `.index` whose data files are not all beside it
    (as git hands one to a diff driver)."""
    if not is_index(path):
        return False
    try:
        index = Index(path[:-len(".index")], None)
    except WeightsError:
        return False  # reading it as a checkpoint reports what is wrong
    prefix = index.prefix
    return not all(seam.isfile(data_path(prefix, shard, index.num_shards))
                   for shard in range(index.num_shards))


def read_index(path: str) -> Store:
    """The variables an `.index` lists, without opening its data files: one tensor per key
    (named by the key; no object graph, which is itself data), in natural key order, with its
    role, dtype, shape and `meta["checksum"]`, the crc32c recorded for its bytes. Reading a
    value raises UsageError. Store meta `index_checksums` holds the object graph's checksum."""
    prefix, root = resolve_prefix(path)
    index = Index(prefix, root)
    entries = [e for e in sorted(index.entries.values(), key=lambda e: natural_key(e.key))
               if not (e.key == og.GRAPH_KEY and e.dtype == DT_STRING and e.shape == ())]
    tensors: dict[str, Tensor] = {}
    for name, e in zip(distinct_names([e.key for e in entries], {}), entries):
        def unavailable(_index: tuple, key: str = e.key) -> np.ndarray:
            raise UsageError(f"tensor {key!r}: only the index was read, not the data files",
                             index.index_path)
        variant = e.dtype == DT_VARIANT
        tensors[name] = Tensor((e.size,) if variant else e.shape,
                               np.dtype(np.uint8) if variant else dtype_from_name(DTYPES[e.dtype]),
                               unavailable, {"key": e.key, "role": og.role(e.key, "", False),
                                             "checksum": _checksum(index, e)})
    graph = index.entries.get(og.GRAPH_KEY)
    checksums = {"object graph": _checksum(index, graph)} if graph is not None else {}
    return Store(tensors, format=INDEX_ONLY, meta={"index_checksums": checksums}, path=path)


# --- writing ---------------------------------------------------------------------------------

def plan(store: Store, like: Store | None = None) -> WritePlan:
    """What writing `store` as a checkpoint does (`bundle_store.plan_bundle`)."""
    return plan_bundle(store, like, (META,))


def output_prefix(path: str) -> str:
    """The prefix a checkpoint written to `path` (a prefix, or its `.index`) gets."""
    return path[:-len(".index")] if path.endswith(".index") else path


def write(plan: WritePlan, path: str) -> None:
    """Write a checkpoint at prefix `path` (or `path` ending in `.index`), atomically. A prefix
    may be a directory and a slash (`DIR/`: the files `DIR/.index`, `DIR/.data-*`, as some
    packages ship TF1 checkpoints)."""
    with atomic_output() as out:
        write_bundle(plan, _prefix(path), out.open)


def _prefix(path: str) -> str:
    prefix = output_prefix(path)
    if os.path.isdir(prefix) and not prefix.endswith(os.sep):
        raise UsageError("expected a checkpoint prefix for the output, received a directory", path)
    return prefix


def sharded(plan: WritePlan, path: str) -> ShardedWrite:
    """The write of `plan` at `path` as its data shards and the `.index` last (one task per
    shard with `convert --scheduler`): the bytes `write` writes."""
    return sharded_bundle(plan, _prefix(path))


FORMAT = Format(
    name=NAME,
    description="TensorFlow checkpoint (prefix, .index, or a directory with a `checkpoint` "
    "file or one checkpoint)",
    sniff=sniff, read=read, plan=plan, write=write,
    suffixes=(".index", ".ckpt"), aliases=("checkpoint", "ckpt"), git_patterns=("*.index",),
    namespace=META, structure="the tf-checkpoint object graph and its keys",
    index=IndexReading(is_index=is_index, lacks_data=index_without_data, read=read_index,
                       index_of=index_of),
    stored_as=stored_as,
    templates=("tf-checkpoint", "saved-model"),
    run=lambda path: run_prefixes(path) if seam.isdir(path) and not seam.isfile(path)
    else [path],
    sharded=sharded,
    current=current_layout,
)
