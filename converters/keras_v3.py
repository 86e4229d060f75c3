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
import os
import re
import tempfile
import zipfile
from collections.abc import Mapping
from typing import Any

from . import hdf5
from . import source as seam
from .atomic import atomic_output
from .errors import CorruptFileError, UnsafeFileError, UsageError, WeightsError
from .foreign import structure_losses
from .keras_v3_weights import (group_ranks, keras3_names, load_json, number_key, tensors_from,
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
MAX_MODEL_DEPTH = 64             # models nested in models, as far as the config is followed
_OPERATIONS = "keras.src.ops."   # config entries of a Functional's non-layer operations


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
                info = member.info
                members.append({"name": info.filename, "compress_type": info.compress_type,
                                "date_time": list(info.date_time),
                                "external_attr": info.external_attr})
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
        with hdf5.h5_errors(path):
            order, layer_names = config_layout(config, tree)
            names = keras3_names(tree, layer_names)
            tensors = tensors_from(tree, datasets, path, names, ranks=group_ranks(order))
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
    return Store(tensors, format=NAME, path=path, meta=meta, on_close=close)


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


def to_snake_case(name: str) -> str:
    """Keras' `naming.to_snake_case`: the group name of a layer class."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class _Doubt(Exception):
    """The config does not describe the weights tree as Keras would have saved it."""


def config_layout(config: Any, tree: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """From config.json (plain data, never deserialized): the layer groups of the weights tree
    in the model's order (`layers/dense`, `layers/sequential`, `layers/sequential/layers/dense`,
    ...), for `keras_v3_weights.group_ranks`; and {group: layer name} for groups whose `vars`
    lack the `name` attr. ([], {}) when the config and the tree disagree anywhere.

    Keras 3 `saving_lib` saves a Sequential or Functional model's `layers` first, each under
    `layers/` + `naming.to_snake_case(class name)`, made unique per container by `_1`, `_2`, ...
    in `model.layers` order (`_save_container_state`); a nested model's layers below its group
    the same way. `model.layers` is the config's `layers` less its non-layer operations (a
    Functional's `keras.ops` calls) and, in a Sequential, its leading InputLayer; each `vars`
    group's `name` attr is the layer's name (`_save_state` metadata). A group is placed by the
    config entry of that name (`_by_name`), or without names by class (`_by_class`)."""
    model = config.get("config") if isinstance(config, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("layers"), list):
        return [], {}
    order: list[str] = []
    names: dict[str, str] = {}
    try:
        _layout(model["layers"], tree, "", order, names, 0)
    except _Doubt:
        return [], {}
    return order, names


def _children(node: Mapping[str, Any]) -> dict[str, Any]:
    return dict(node.get("children", [])) if isinstance(node, Mapping) else {}


def _layout(entries: list, model: Mapping[str, Any], prefix: str, order: list[str],
            names: dict[str, str], depth: int) -> None:
    """Place the groups below the `layers` group of `model` (a tree node at `prefix`) by the
    config `entries` of that model."""
    container = _children(model).get("layers")
    if not isinstance(container, Mapping) or "children" not in container:
        return
    if depth > MAX_MODEL_DEPTH or not all(isinstance(e, dict) for e in entries):
        raise _Doubt
    children = _children(container)
    attrs = {child: hdf5.attrs_dict(_children(node).get("vars") or {}).get("name")
             for child, node in children.items()}
    attrs = {child: name for child, name in attrs.items() if isinstance(name, str) and name}
    placed = _by_name(entries, attrs) if attrs else _by_class(entries, list(children))
    for child, entry in placed:
        group = f"{prefix}layers/{child}"
        order.append(group)
        if not attrs and isinstance(_entry_name(entry), str):
            names[group] = _entry_name(entry)
        inner = entry.get("config")
        if isinstance(inner, dict) and isinstance(inner.get("layers"), list):
            _layout(inner["layers"], children[child], f"{group}/", order, names, depth + 1)


def _entry_name(entry: Mapping[str, Any]) -> Any:
    inner = entry.get("config")
    return inner.get("name") if isinstance(inner, dict) and "name" in inner else entry.get("name")


def _group_names(entries: list) -> list[str]:
    """The group name Keras gives each entry's layer in one container (`_get_unique_name`)."""
    used: dict[str, int] = {}
    out = []
    for entry in entries:
        base = entry.get("class_name")
        if not isinstance(base, str) or not base:
            raise _Doubt
        base = to_snake_case(base)
        used[base] = used.get(base, -1) + 1
        out.append(base if not used[base] else f"{base}_{used[base]}")
    return out


def _by_name(entries: list, attrs: Mapping[str, str]) -> list[tuple[str, dict]]:
    """(group, entry) for the groups whose layer name (`vars` attr) a config entry has, in
    config order. Keras numbers the groups of one base name (`dense`, `dense_1`, ...) in
    `model.layers` order, so the entries must come in that order too. The base is not checked
    against the entry's class: exported aliases differ (`GroupQueryAttention` is saved as
    `grouped_query_attention`)."""
    index: dict[str, int] = {}
    for i, entry in enumerate(entries):
        name = _entry_name(entry)
        if isinstance(name, str):
            if name in index:
                raise _Doubt
            index[name] = i
    if len(set(attrs.values())) != len(attrs):
        raise _Doubt
    placed = sorted((index[name], child) for child, name in attrs.items() if name in index)
    last: dict[str, tuple[int, str]] = {}
    for _, child in placed:
        match = re.fullmatch(r"(.*)_(\d+)", child)
        base, number = (match[1], number_key(match[2])) if match else (child, (0, ""))
        if base in last and last[base] >= number:
            raise _Doubt
        last[base] = number
    return [(child, entries[i]) for i, child in placed]


def _by_class(entries: list, children: list[str]) -> list[tuple[str, dict]]:
    """(group, entry) in config order for a tree without `name` attrs (older Keras 3): the
    config's layers, named as Keras names their groups, must give exactly the tree's groups."""
    layers = [e for e in entries if not str(e.get("module", "")).startswith(_OPERATIONS)]
    starts_with_input = bool(layers) and layers[0].get("class_name") == "InputLayer"
    for candidate in [layers, layers[1:]] if starts_with_input else [layers]:
        groups = _group_names(candidate)
        if sorted(groups) == sorted(children):
            return list(zip(groups, candidate))
    raise _Doubt


def losses(store: Store, like: Store | None = None) -> list[str]:
    """As for every HDF5 format (`hdf5.dtype_losses`), and another origin's file structure;
    a store without a `.keras` origin or template is refused by `write` (no config.json to
    write), not counted as a loss."""
    return hdf5.dtype_losses(store) + structure_losses(store, (NAMESPACE,), like)


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
    if like is None or NAMESPACE in store.meta:
        recorded = without_dropped(recorded, lookup)
        hdf5.check_covered(store, [p for p, n in hdf5.walk(recorded["tree"]) if "dataset" in n],
                           lookup)
    return recorded, lookup


FORMAT = Format(
    name=NAME, description="Keras 3 .keras archive", sniff=sniff, read=read, plan=plan,
    write=write, suffixes=(".keras",), git_patterns=("*.keras",), namespace=NAMESPACE,
    structure="the .keras archive (config.json, metadata.json, layer paths)",
    templates=("keras",),
)
