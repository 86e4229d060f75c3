"""Keras 3 `.keras` archives (format "keras"): a zip of `metadata.json`, `config.json`,
`model.weights.h5` (the `.weights.h5` layout) and optional `assets/`.

`config.json` and `metadata.json` are parsed as JSON only (never deserialized into a model) and,
with `assets/` and any other member, kept verbatim in `meta["keras"]` for writing back. The
weights are read inside the zip, never extracted: a stored member is read through a window on
the archive file; a deflated one is decompressed into memory only below `MAX_INFLATE_BYTES`.
Canonical names are those of `keras_v3_weights` (layer names from the `vars` `name` attrs, or
from `config.json` for files that lack them). Variables are listed in the model's order, which
`config.json` gives (`config_layout`); a config that is missing, too large, not JSON or does
not match the weights leaves natural order, and never changes which variables are read.
"""
from __future__ import annotations

import base64
import json
import os
import tempfile
import zipfile
from typing import Any

from . import hdf5
from . import source as seam
from .atomic import atomic_output
from .errors import CorruptFileError, UnsafeFileError, UsageError, WeightsError
from .foreign import structure_losses
from .keras_names import config_layout, group_ranks, name_tree, standalone_config, submodel
from .keras3_tree import (load_json, rename_losses, substore, tensors_from, with_renames,
                          without_dropped, write_h5)
from .format import Format, WritePlan
from .safezip import ZIP_ERRORS, Member, SafeZip, member_names
from .store import Store

NAME = "keras"
NAMESPACE = "keras"
WEIGHTS = "model.weights.h5"
MAX_MEMBER_BYTES = 64 << 20      # config, metadata, each asset (kept in memory and in meta)
MAX_KEPT_BYTES = 256 << 20       # all kept members together
MAX_INFLATE_BYTES = 512 << 20    # a deflated model.weights.h5 is decompressed in memory
MAX_CONFIG_BYTES = 8 << 20       # config.json parsed for the order of layers (~8000 layers)


def sniff(path: str, head: bytes) -> bool:
    if not (head.startswith(b"PK\x03\x04") and seam.isfile(path)):
        return False
    names = member_names(path)
    if names is None:
        return path.lower().endswith(".keras")
    return WEIGHTS in names or "config.json" in names


def _open_weights(archive: SafeZip, member: Member, path: str):
    """A seekable file of the weights member: a window on a stored one; a compressed one is
    inflated once into a temporary file (CRC-32 checked at its end)."""
    if member.stored:
        return archive.window(member)
    if member.size > MAX_INFLATE_BYTES:
        raise UnsafeFileError(f"{member.name!r} is compressed and larger than "
                              f"{MAX_INFLATE_BYTES} bytes; store it uncompressed", path)
    archive.plan([member])  # a URL: its compressed bytes in merged requests
    copy = tempfile.TemporaryFile(prefix="weightkit-keras-")
    try:
        archive.copy_to(member, copy)
        copy.seek(0)
    except BaseException:
        copy.close()
        raise
    return copy


def read(path: str) -> Store:
    archive = SafeZip(path)
    h5file = None
    try:
        try:
            archive.plan([m for m in archive.members if m.name != WEIGHTS and not m.is_dir])
            kept, members, total = {}, [], 0
            weights = None
            for member in archive.members:
                members.append({"name": member.name, "compress_type": member.method,
                                "date_time": list(member.date_time),
                                "external_attr": member.external_attr})
                if member.name == WEIGHTS:
                    weights = member
                    continue
                if member.is_dir:
                    continue
                total += member.size
                if member.size > MAX_MEMBER_BYTES or total > MAX_KEPT_BYTES:
                    raise UnsafeFileError(f"zip member {member.name!r} is too large to keep "
                                          f"(over {MAX_MEMBER_BYTES >> 20} MiB each, "
                                          f"{MAX_KEPT_BYTES >> 20} MiB in all)", path)
                kept[member.name] = _keep(archive.read(member))
            if weights is None:
                raise CorruptFileError(f"expected a {WEIGHTS} member in the archive", path)
            config = _config(kept, path)
            h5file = _open_weights(archive, weights, path)
        except ZIP_ERRORS as exc:
            if isinstance(exc, WeightsError):
                raise
            raise CorruptFileError(f"unreadable zip archive: {exc}", path) from None
        f = hdf5.open_file(h5file, f"{path}:{WEIGHTS}", data=archive.data if weights.stored
                           else None, base=archive.offset(weights) if weights.stored else 0)
    except BaseException:
        if h5file is not None:
            h5file.close()
        archive.close()
        raise
    try:
        tree, datasets = hdf5.describe(f, f"{path}:{WEIGHTS}", weights.size)
        aliases: dict[str, str] = {}
        with hdf5.h5_errors(path):
            order, _ = config_layout(config, tree)
            tensors = tensors_from(tree, datasets, path, name_tree(tree, config),
                                   ranks=group_ranks(order), aliases=aliases)
    except BaseException:
        f.close()
        h5file.close()
        archive.close()
        raise

    def close() -> None:
        f.close()
        h5file.close()
        archive.close()
    meta = {NAMESPACE: {"members": members, "files": kept, "tree": tree}}
    return Store(tensors, format=NAME, path=path, meta=meta, on_close=close, aliases=aliases)


def _keep(data: bytes) -> dict:
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(data).decode("ascii")}


def _unkeep(entry: dict) -> bytes:
    return entry["text"].encode("utf-8") if "text" in entry else base64.b64decode(entry["b64"])


def _config(kept: dict, path: str) -> Any:
    """config.json as plain JSON data, or None when it is missing, larger than
    MAX_CONFIG_BYTES or not JSON: the weights are read without it (metadata.json must be JSON)."""
    if "metadata.json" in kept:
        load_json(_unkeep(kept["metadata.json"]), path, "metadata.json")
    raw = _unkeep(kept["config.json"]) if "config.json" in kept else b""
    if not raw or len(raw) > MAX_CONFIG_BYTES:
        return None
    try:
        return load_json(raw, path, "config.json")
    except CorruptFileError:
        return None


def extract(store: Store, name: str) -> Store:
    """The model nested under `name` (`encoder`) as a `.keras` archive of its own: its
    config.json entry from the parent's config (as data), the parent's metadata.json, and its
    weights (`keras_names.submodel`), without optimizer. `load_model` loads it standalone."""
    recorded = store.meta.get(NAMESPACE)
    if recorded is None:
        raise UsageError("extract needs a .keras archive")
    config = _config(recorded["files"], store.path or "")
    group, tree, entry = submodel(recorded["tree"], config, name)
    if entry is None:
        raise UsageError(f"config.json does not describe the nested model {name!r}; extract "
                         "its weights to a .weights.h5 instead", store.path)
    sub = standalone_config(entry, config)
    files = {k: v for k, v in recorded["files"].items() if k == "metadata.json"}
    files["config.json"] = {"text": json.dumps(sub, indent=4)}
    members = [m for m in recorded["members"] if m["name"] in (*files, WEIGHTS)]
    if not any(m["name"] == "config.json" for m in members):
        members.insert(0, {"name": "config.json", "compress_type": zipfile.ZIP_STORED,
                           "date_time": [1980, 1, 1, 0, 0, 0], "external_attr": 0o600 << 16})
    return substore(store, group, tree,
                    lambda t: {NAMESPACE: {"members": members, "files": files, "tree": t}},
                    NAME, sub)


def losses(store: Store, like: Store | None = None) -> list[str]:
    """As for every HDF5 format (`hdf5.dtype_losses`), and another origin's file structure;
    a store without a `.keras` origin or template is refused by `write` (no config.json to
    write), not counted as a loss."""
    lost = hdf5.dtype_losses(store) + structure_losses(store, (NAMESPACE,), like)
    if NAMESPACE in store.meta and (like is None or NAMESPACE not in like.meta):
        recorded = store.meta[NAMESPACE]
        lost += rename_losses(with_renames(recorded, store,
                                           _config(recorded["files"], store.path or ""))[1])
    return lost


def plan(store: Store, like: Store | None = None) -> WritePlan:
    """The recorded archive to write and the tensor of each dataset path; refused without a
    config.json (a `.keras` origin or template) or with a drop Keras 3 could not load."""
    return WritePlan.of(store, like, losses(store, like), lambda: _plan(store, like, None))


def write(plan: WritePlan, path: str) -> None:
    """Write the archive back: kept members verbatim, in order, and the weights rebuilt (less
    the optimizer state an edit dropped; `keras_v3_weights.without_dropped` says what may go);
    4-bit tensors (a declared loss) widened."""
    recorded, lookup = plan.detail
    get = lambda p: hdf5.widen(lookup(p))  # noqa: E731
    directory = os.path.dirname(os.path.abspath(path))
    with atomic_output() as out, tempfile.TemporaryDirectory(dir=directory,
                                                              prefix=".wk-keras-") as scratch:
        weights_path = os.path.join(scratch, WEIGHTS)
        write_h5(weights_path, recorded["tree"], get, path)
        with zipfile.ZipFile(out.path(path), "w") as zf:
            for member in recorded["members"]:
                info = zipfile.ZipInfo(member["name"], tuple(member["date_time"]))
                info.compress_type = member["compress_type"]
                info.external_attr = member["external_attr"]
                if member["name"] == WEIGHTS:
                    info.file_size = os.path.getsize(weights_path)
                    big = info.file_size > zipfile.ZIP64_LIMIT
                    with open(weights_path, "rb") as src, zf.open(info, "w",
                                                                  force_zip64=big) as dst:
                        while chunk := src.read(1 << 20):
                            dst.write(chunk)
                elif member["name"] in recorded["files"]:
                    zf.writestr(info, _unkeep(recorded["files"][member["name"]]))
                else:
                    zf.writestr(info, b"")


def _plan(store: Store, like: Store | None, path: str | None) -> tuple[dict, hdf5.Placement]:
    """The recorded archive to write (its weights tree less dropped tensors) and the tensor of
    each dataset path."""
    recorded, lookup = hdf5.template(store, like, NAMESPACE)
    if recorded is None:
        raise UsageError("a .keras archive needs the model's config.json, which this store "
                         "lacks; give a .keras template (--like) or write a .weights.h5", path)
    if like is None or NAMESPACE not in like.meta:
        recorded = without_dropped(recorded, lookup)
    hdf5.check_covered(store, [p for p, n in hdf5.walk(recorded["tree"]) if "dataset" in n],
                       lookup)
    if like is None or NAMESPACE not in like.meta:
        recorded = with_renames(recorded, store, _config(recorded["files"], path or ""))[0]
    return recorded, lookup


def current(store: Store) -> dict:
    """The store's .keras record as `_plan` would write it for the store alone: its weights
    tree less what an edit dropped, renames applied (`Format.current`)."""
    recorded, lookup = hdf5.template(store, None, NAMESPACE)
    if recorded is None:
        raise UsageError("no .keras record")
    recorded = without_dropped(recorded, lookup)
    return with_renames(recorded, store, _config(recorded["files"], ""))[0]


FORMAT = Format(
    name=NAME, description="Keras 3 .keras archive", sniff=sniff, read=read, plan=plan,
    write=write, suffixes=(".keras",), git_patterns=("*.keras",), namespace=NAMESPACE,
    current=current,
    structure="the .keras archive (config.json, metadata.json, layer paths)",
    templates=("keras",),
    extract=extract,
)
