"""TensorFlow SavedModel directories: the variables are read from `variables/` (an ordinary
TensorBundle); writing copies every other file as it is and rewrites only `variables/`.

weightkit never loads the graph. The non-variable files (`saved_model.pb`, `fingerprint.pb`,
`keras_metadata.pb`, `assets/`, ...) are carried in `store.meta["saved_model"]` when they total
at most 32 MiB, so that a SavedModel survives a trip through safetensors; larger ones are copied
from the source directory or from a template given with `like=`.

A SavedModel whose weights are constants of its graphs (no `variables/variables.index`, or one
holding no variable while the object graph declares none: a TF1 `saved_model.Builder` export of
a constant graph, as TF Serving's test models are, or `tf.saved_model.save` of a module of
`tf.constant`s) is read through the
`Const` nodes of the graphs in `saved_model.pb` (`graphdef_codec.py`; a node inside a function
of the graph's library is `function:node`). The constants of the checkpoint functions TF adds
to every TF2 SavedModel (`__inference__traced_save_N`, `__inference__traced_restore_N`:
tensorflow/tensorflow `tensorflow/python/checkpoint/functional_saver.py`, `_traced_save`,
`_traced_restore`) are tensor names, not weights, and are left out. A constant that several
meta graphs hold (a TF1 export with `serve` and `train` graphs) is one variable when its copies
are byte for byte the same, and writing replaces every copy; a copy that differs from the first
one is the variable `NAME@I` (I: its meta graph's index; `@` is in no TensorFlow node name).
Writing such a store replaces the constants in `saved_model.pb` in place (each in the encoding
it had) and copies every other file, `variables/` too: unchanged, the directory comes back byte
for byte. `saved_model.pb` travels in the metadata without its constants' values.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from . import graphdef_codec as codec
from .atomic import atomic_output, open_streaming
from .bundle_store import META as BUNDLE_META, plan_bundle, read_bundle, write_bundle
from .carry import b64, unb64
from .errors import CorruptFileError, UsageError, naming
from .foreign import structure_losses
from .format import Format, WritePlan
from . import source as seam
from .paths import check_tree, inside
from .store import Store

NAME = "saved-model"
META = "saved_model"
VARIABLES = "variables"
CARRY_LIMIT = 32 << 20
GRAPH = "saved_model.pb"
# the checkpoint functions of a TF2 SavedModel (see the module docstring)
SAVER_FUNCTION = re.compile(r"__inference__traced_(save|restore)_\d+")


def sniff(path: str, head: bytes) -> bool:
    return seam.isdir(path) and seam.isfile(seam.join(path, "saved_model.pb"))


def _contents(directory: str, variables: bool = False) -> tuple[list[str], list[str]]:
    """(files, directories) of a SavedModel outside `variables/` (or all), relative, sorted."""
    files, dirs = [], []
    if seam.is_url(directory):  # objects under a prefix: directories are their parents
        for name in seam.walk_files(directory):
            if not variables and name.split("/")[0] == VARIABLES:
                continue
            files.append(name)
            parts = name.split("/")[:-1]
            dirs += ["/".join(parts[:i + 1]) for i in range(len(parts))]
        return files, sorted(set(dirs))
    for parent, subdirs, names in os.walk(directory):
        rel = os.path.relpath(parent, directory)
        if not variables and (rel == VARIABLES or rel.startswith(VARIABLES + os.sep)):
            continue
        subdirs.sort()
        dirs += [os.path.normpath(os.path.join(rel, d)) for d in subdirs if variables or
                 os.path.normpath(os.path.join(rel, d)) != VARIABLES]
        files += [os.path.normpath(os.path.join(rel, n)) for n in sorted(names)]
    return files, dirs


def read(path: str) -> Store:
    """Open the variables of the SavedModel directory `path` lazily (or its graphs' constants:
    see the module docstring)."""
    seam.check_input(path)
    if not seam.is_url(path):
        check_tree(path)
    prefix = seam.join(path, VARIABLES, VARIABLES)
    if not seam.isfile(prefix + ".index"):
        return read_constants(path)
    files, dirs = _contents(path)
    total = sum(seam.getsize(seam.inside(path, f)) for f in files)
    carried = None
    if total <= CARRY_LIMIT:
        carried = {}
        for name in files:
            carried[name.replace(os.sep, "/")] = b64(seam.read_bytes(seam.inside(path, name)))
    meta = {META: {"files": carried, "names": [f.replace(os.sep, "/") for f in files],
                   "dirs": [d.replace(os.sep, "/") for d in dirs]}}
    store = read_bundle(prefix, path, format=NAME, path=path, meta=meta)
    if len(store) or _declares_variables(path):
        return store
    store.close()
    return read_constants(path)


def plan(store: Store, like: Store | None = None) -> WritePlan:
    """As for a checkpoint (`bundle_store.plan_bundle`), which also holds the graph; refused
    without the graph's files (in the store's metadata or a template's). A SavedModel of
    constants (the template's, else the store's own) is planned by `plan_constants`."""
    info = (like if like is not None else store).meta.get(META)
    if isinstance(info, dict) and info.get("constants"):
        return plan_constants(store, like)
    plan = plan_bundle(store, like, (META, BUNDLE_META))
    if plan.refusal is None and not isinstance(info, dict):
        plan.refusal = UsageError("writing a SavedModel needs the graph of the original one: "
                                  "give --like SAVED_MODEL_DIR")
    return plan


def _copy_template(template: Store, target: str, skip: str | None = None) -> None:
    info = template.meta.get(META)
    if not isinstance(info, dict):
        raise UsageError("writing a SavedModel needs the graph of the original one: give "
                         "--like SAVED_MODEL_DIR")
    for name in info.get("dirs", []):
        os.makedirs(inside(target, name), exist_ok=True)
    carried = info.get("files")
    source = template.path if template.format == NAME else None
    if carried is None and not (source and seam.isdir(source)):
        raise UsageError("the SavedModel's graph was too large to carry in metadata: give "
                         "--like SAVED_MODEL_DIR")
    for name in info.get("names", []):
        if name == skip:
            continue
        dest = inside(target, name)
        if name.split("/")[0] == VARIABLES and not info.get("constants"):
            raise CorruptFileError(f"{META} metadata lists {name!r} among non-variable files")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if carried is not None:
            if not isinstance(carried.get(name), str):
                raise CorruptFileError(f"{META} metadata: no content for {name!r}")
            with open(dest, "wb") as f:
                f.write(unb64(carried[name], META))
        else:
            seam.copy_file(seam.inside(source, name), dest)


def write(plan: WritePlan, path: str) -> None:
    """Write a SavedModel directory: the template's files (`like`, else the store's own) with
    `variables/` rewritten from the store, atomically."""
    template = plan.like if plan.like is not None else plan.store
    with atomic_output() as out:
        target = out.path(path, directory=True)
        if isinstance(plan.detail, ConstantsPlan):
            _copy_template(template, target, skip=GRAPH)
            with open(inside(target, GRAPH), "wb") as f:
                plan.detail.write(f)
            return
        _copy_template(template, target)
        os.makedirs(os.path.join(target, VARIABLES), exist_ok=True)
        write_bundle(plan, os.path.join(target, VARIABLES, VARIABLES), open_streaming)


# ---------------------------------------------------------------------------------------------
# weights as constants of the graphs

def _each_constant(buf: Any, path: str | None, size: int | None
                   ) -> Iterator[tuple[int, codec.Constant]]:
    """(meta graph index, constant) of every weight constant of a `saved_model.pb`."""
    graphs = 0
    for index, (meta, graph) in enumerate(codec.iter_saved_model_graphs(buf, path)):
        graphs += 1
        seen: set[str] = set()
        for c in codec.graph_constants(buf, graph.value_start, graph.end, (meta, graph), path,
                                       size):
            if c.function is not None and SAVER_FUNCTION.fullmatch(c.function):
                continue
            if c.name in seen:
                raise CorruptFileError(f"meta graph {index}: two Const nodes are named "
                                       f"{c.name!r}", path)
            if "@" in c.name:  # TensorFlow's node names have none: NAME@I names a copy
                raise CorruptFileError(f"meta graph {index}: a Const node named {c.name!r} "
                                       "(TensorFlow node names have no '@')", path)
            seen.add(c.name)
            yield index, c
    if not graphs:
        raise CorruptFileError(f"{GRAPH} holds no meta graph", path)


def _declares_variables(path: str) -> bool:
    """Whether the object graph of the SavedModel `path` holds variables (then its weights are
    those, even when `variables/` holds none)."""
    mapped = codec.GraphFile(seam.inside(path, GRAPH))
    try:
        with naming(seam.inside(path, GRAPH)):
            return codec.saved_model_declares_variables(mapped.view, None)
    finally:
        mapped.close()


def read_constants(path: str) -> Store:
    """Open the constants of the graphs of the SavedModel directory `path` lazily."""
    pb = seam.inside(path, GRAPH)
    if not seam.isfile(pb):
        raise CorruptFileError(f"no {GRAPH} in the SavedModel", path)
    mapped = codec.GraphFile(pb)
    try:
        with naming(pb):
            buf = mapped.view
            groups: dict[str, list[codec.Constant]] = {}
            for index, c in _each_constant(buf, pb, mapped.size):
                copies = groups.get(c.name)
                if copies is None:
                    groups[c.name] = [c]
                elif codec.same_value(buf, copies[0], c):
                    copies.append(c)
                else:  # unique: node names are, within a meta graph, and have no '@'
                    groups[f"{c.name}@{index}"] = [c]
            tensors = {name: codec.tensor(mapped.file, buf, copies[0], META, name)
                       for name, copies in groups.items()}
            skeleton = codec.strip(buf, [c for copies in groups.values() for c in copies])
        files, dirs = _contents(path, variables=True)
        files = [f.replace(os.sep, "/") for f in files]
        others = [f for f in files if f != GRAPH]
        carried = None
        if len(skeleton) + sum(seam.getsize(seam.inside(path, f)) for f in others) \
                <= CARRY_LIMIT:
            carried = {GRAPH: b64(skeleton)}
            for name in others:
                carried[name] = b64(seam.read_bytes(seam.inside(path, name)))
        meta = {META: {"files": carried, "names": files, "constants": True,
                       "dirs": [d.replace(os.sep, "/") for d in dirs]}}
    except BaseException:
        mapped.close()
        raise
    return Store(tensors, format=NAME, meta=meta, path=path, on_close=mapped.close)


@dataclass
class ConstantsPlan:
    write: Callable[[BinaryIO], None]    # writes saved_model.pb with the new values


def plan_constants(store: Store, like: Store | None) -> WritePlan:
    """The plan of a SavedModel of constants: `saved_model.pb` with each constant replaced by
    the store's variable of its name (a later meta graph's copy by `NAME@I` when the store has
    it). As for a frozen graph, a constant keeps its dtype and shape, and none is added or
    dropped; another format's structure is lost."""
    return WritePlan.of(store, like, structure_losses(store, (META,), like),
                        lambda: _plan_constants(store, like))


def _plan_constants(store: Store, like: Store | None) -> ConstantsPlan:
    template = like if like is not None else store
    info = template.meta[META]
    carried = info.get("files")
    if isinstance(carried, dict) and isinstance(carried.get(GRAPH), str):
        graph = unb64(carried[GRAPH], META)
    elif template.format == NAME and template.path and seam.isfile(
            seam.join(template.path, GRAPH)):
        graph = seam.read_bytes(seam.inside(template.path, GRAPH))
    else:
        raise UsageError("the SavedModel's graph was too large to carry in metadata: give "
                         "--like SAVED_MODEL_DIR")
    found = [(_name(index, c, store), c) for index, c in _each_constant(graph, None, None)]
    pairs = codec.replacements(found, store, META)
    return ConstantsPlan(codec.replacer(graph, pairs))


def _name(index: int, constant: codec.Constant, names: Container[str]) -> str:
    own = f"{constant.name}@{index}"
    return own if own in names else constant.name


FORMAT = Format(
    name=NAME, description="TensorFlow SavedModel directory",
    sniff=sniff, read=read, plan=plan, write=write,
    aliases=("savedmodel",), namespace=META,
    structure="the saved-model graph (saved_model.pb, assets)",
    templates=("saved-model",), output_is_directory=True,
)
