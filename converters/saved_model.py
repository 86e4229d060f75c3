"""TensorFlow SavedModel directories: the variables are read from `variables/` (an ordinary
TensorBundle); writing copies every other file as it is and rewrites only `variables/`.

weightkit never loads the graph. The non-variable files (`saved_model.pb`, `fingerprint.pb`,
`keras_metadata.pb`, `assets/`, ...) are carried in `store.meta["saved_model"]` when they total
at most 32 MiB, so that a SavedModel survives a trip through safetensors; larger ones are copied
from the source directory or from a template given with `like=`.
"""
from __future__ import annotations

import os
import shutil

from .atomic import atomic_output, open_streaming
from .bundle_store import META as BUNDLE_META, plan_bundle, read_bundle, write_bundle
from .carry import b64, unb64
from .errors import CorruptFileError, UsageError
from .format import Format, WritePlan
from .paths import check_input, check_tree, inside
from .store import Store

NAME = "saved-model"
META = "saved_model"
VARIABLES = "variables"
CARRY_LIMIT = 32 << 20


def sniff(path: str, head: bytes) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb"))


def _contents(directory: str) -> tuple[list[str], list[str]]:
    """(files, directories) of a SavedModel outside `variables/`, relative, sorted."""
    files, dirs = [], []
    for parent, subdirs, names in os.walk(directory):
        rel = os.path.relpath(parent, directory)
        if rel == VARIABLES or rel.startswith(VARIABLES + os.sep):
            continue
        subdirs.sort()
        dirs += [os.path.normpath(os.path.join(rel, d)) for d in subdirs if
                 os.path.normpath(os.path.join(rel, d)) != VARIABLES]
        files += [os.path.normpath(os.path.join(rel, n)) for n in sorted(names)]
    return files, dirs


def read(path: str) -> Store:
    """Open the variables of the SavedModel directory `path` lazily."""
    check_input(path)
    check_tree(path)
    files, dirs = _contents(path)
    total = sum(os.path.getsize(inside(path, f)) for f in files)
    carried = None
    if total <= CARRY_LIMIT:
        carried = {}
        for name in files:
            with open(inside(path, name), "rb") as f:
                carried[name.replace(os.sep, "/")] = b64(f.read())
    meta = {META: {"files": carried, "names": [f.replace(os.sep, "/") for f in files],
                   "dirs": [d.replace(os.sep, "/") for d in dirs]}}
    prefix = os.path.join(path, VARIABLES, VARIABLES)
    if not os.path.isfile(prefix + ".index"):
        raise CorruptFileError("expected variables/variables.index in the SavedModel", path)
    return read_bundle(prefix, path, format=NAME, path=path, meta=meta)


def plan(store: Store, like: Store | None = None) -> WritePlan:
    """As for a checkpoint (`bundle_store.plan_bundle`), which also holds the graph; refused
    without the graph's files (in the store's metadata or a template's)."""
    plan = plan_bundle(store, like, (META, BUNDLE_META))
    info = (like if like is not None else store).meta.get(META)
    if plan.refusal is None and not isinstance(info, dict):
        plan.refusal = UsageError("writing a SavedModel needs the graph of the original one: "
                                  "give --like SAVED_MODEL_DIR")
    return plan


def _copy_template(template: Store, target: str) -> None:
    info = template.meta.get(META)
    if not isinstance(info, dict):
        raise UsageError("writing a SavedModel needs the graph of the original one: give "
                         "--like SAVED_MODEL_DIR")
    for name in info.get("dirs", []):
        os.makedirs(inside(target, name), exist_ok=True)
    carried = info.get("files")
    source = template.path if template.format == NAME else None
    if carried is None and not (source and os.path.isdir(source)):
        raise UsageError("the SavedModel's graph was too large to carry in metadata: give "
                         "--like SAVED_MODEL_DIR")
    for name in info.get("names", []):
        dest = inside(target, name)
        if name.split("/")[0] == VARIABLES:
            raise CorruptFileError(f"{META} metadata lists {name!r} among non-variable files")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if carried is not None:
            if not isinstance(carried.get(name), str):
                raise CorruptFileError(f"{META} metadata: no content for {name!r}")
            with open(dest, "wb") as f:
                f.write(unb64(carried[name], META))
        else:
            shutil.copyfile(inside(source, name), dest)


def write(plan: WritePlan, path: str) -> None:
    """Write a SavedModel directory: the template's files (`like`, else the store's own) with
    `variables/` rewritten from the store, atomically."""
    template = plan.like if plan.like is not None else plan.store
    with atomic_output() as out:
        target = out.path(path, directory=True)
        _copy_template(template, target)
        os.makedirs(os.path.join(target, VARIABLES), exist_ok=True)
        write_bundle(plan, os.path.join(target, VARIABLES, VARIABLES), open_streaming)


FORMAT = Format(
    name=NAME, description="TensorFlow SavedModel directory",
    sniff=sniff, read=read, plan=plan, write=write,
    aliases=("savedmodel",), namespace=META,
    structure="the saved_model graph (saved_model.pb, assets)",
    templates=("saved-model",), output_is_directory=True,
)
