"""The Keras 3 weights tree, shared by the `.weights.h5` (and sharded `.weights.json`) and
`.keras` formats: a `.keras` archive holds the same tree as its `model.weights.h5`
(FORMATS.md §3c; keras-team/keras `keras/src/saving/saving_lib.py`).

Lazy tensors of a described tree named by `keras_names.name_tree`, a sub-model's part of a tree,
what a drop (an edit's --drop or --keep) may take out of a tree that Keras still loads, the
layer renames a tree can take, and writing one tree as an HDF5 file. Format quirks of the two
files (shards, zip members) stay in their modules.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from . import hdf5
from .errors import CorruptFileError, UsageError
from .keras_names import (Naming, config_layout, group_ranks, listing_key, name_tree, relabel,
                          with_layer_names)
from .store import Store, Tensor

_VAR = re.compile(r"^(?:(.*)/)?vars/(\d+)$")


def tensors_from(tree: Mapping[str, Any], datasets: list[tuple[str, Any]], path: str,
                 naming: Naming, prefix: str = "", ranks: Mapping[str, int] | None = None,
                 aliases: dict[str, str] | None = None) -> dict[str, Tensor]:
    """Lazy tensors for `datasets`, keyed by canonical name (meta key: `prefix` + path), in
    `listing_key(tree, ranks)` order; the naming's aliases are added to `aliases` (alias ->
    canonical name)."""
    out = {}
    key = listing_key(tree, ranks)
    canonical = {where: name for where, (name, _) in naming.names.items()}
    with hdf5.h5_errors(path):
        for where, ds in sorted(datasets, key=lambda item: key(item[0])):
            name, role = naming.names[where]
            if name in out:
                raise CorruptFileError(f"two variables would both be named {name!r}", path)
            dtype = hdf5.tensor_dtype(ds, hdf5.attrs_dict(hdf5.find(tree, where)), where)
            out[name] = hdf5.lazy_tensor(ds, dtype, {"key": prefix + where, "role": role}, path)
    if aliases is not None:
        aliases.update({alias: canonical[where] for alias, where in naming.aliases.items()
                        if where in canonical})
    return out


def substore(store: Store, group: str, tree: dict, meta: Callable[[dict], dict], fmt: str,
             config: Any = None) -> Store:
    """A store of the tensors of `store` under tree group `group`, keyed by their paths in
    `tree` (that group's subtree) and named as a file of it would be."""
    naming = name_tree(tree, config)
    prefix = group + "/"
    tensors = {}
    for tensor in store.values():
        key = tensor.meta.get("key")
        if isinstance(key, str) and key.startswith(prefix):
            where = key[len(prefix):]
            name, role = naming.names[where]
            tensors[where] = (name, tensor.with_meta(key=where, role=role))
    order = listing_key(tree, group_ranks(config_layout(config, tree)[0]) if config else None)
    ordered = {name: t for where, (name, t) in sorted(tensors.items(), key=lambda i: order(i[0]))}
    return Store(ordered, format=fmt, path=store.path, meta=meta(tree))


def _strict_json(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise CorruptFileError(f"duplicate keys in JSON: "
                               f"{sorted(k for k, n in Counter(keys).items() if n > 1)}")
    return dict(pairs)


def load_json(raw: bytes, path: str, what: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_strict_json)
    except CorruptFileError as exc:
        raise CorruptFileError(f"{what}: {exc.message}", path) from None
    except (ValueError, RecursionError) as exc:  # also an integer of over 4300 digits
        raise CorruptFileError(f"{what} is not valid JSON: {str(exc).splitlines()[0]}",
                               path) from None


def merged_tree(trees: list[Mapping[str, Any]], path: str) -> dict:
    """The shards' trees as one (groups merged, the first attributes kept): the tree the model
    was saved from. A dataset in two shards is a CorruptFileError."""
    def merge(nodes: list[Mapping[str, Any]], where: str) -> dict:
        datasets = [n for n in nodes if "dataset" in n]
        if datasets:
            if len(nodes) > 1:
                raise CorruptFileError(f"{where!r} appears in two shards", path)
            return dict(datasets[0])
        children: dict[str, list] = {}
        for node in nodes:
            for name, child in node.get("children", []):
                children.setdefault(name, []).append(child)
        attrs = next((n["attrs"] for n in nodes if n.get("attrs")), [])
        return {"attrs": attrs, "children": [[name, merge(group, f"{where}/{name}".lstrip("/"))]
                                             for name, group in children.items()]}
    return merge(trees, "")


def rename_losses(problems: list[str]) -> list[str]:
    """The loss a rename that cannot be written is (`with_renames`)."""
    if not problems:
        return []
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    return [f"renames: {'; '.join(problems[:3])}{more}"]


def with_renames(recorded: Mapping[str, Any], store: Store, config: Any = None
                 ) -> tuple[dict, list[str]]:
    """`recorded` (a tree, or shards) with its layers renamed as the store's names ask
    (`keras_names.relabel`: a variable's name changes only with its layers' names), and the
    renames that cannot be written, which leave it unchanged."""
    sharded = "shards" in recorded
    wanted: dict[str, str] = {}
    for name, tensor in store.items():
        key = tensor.meta.get("key")
        if not isinstance(key, str):
            continue
        if sharded:
            shard = next((x["file"] for x in recorded["shards"]
                          if key.startswith(f"{x['file']}:")), None)
            if shard is None:
                continue
            key = key[len(shard) + 1:]
        wanted[key] = name
    trees = [x["tree"] for x in recorded["shards"]] if sharded else [recorded["tree"]]
    tree = merged_tree(trees, store.path or "") if sharded else trees[0]
    renames, problems = relabel(tree, config, wanted)
    if problems or not renames:
        return dict(recorded), problems
    if sharded:
        return {**recorded, "shards": [{**x, "tree": with_layer_names(x["tree"], renames)}
                                       for x in recorded["shards"]]}, []
    return {**recorded, "tree": with_layer_names(recorded["tree"], renames)}, []


def without_dropped(recorded: Mapping[str, Any], lookup: hdf5.Placement) -> dict:
    """`recorded` (its "tree", or its "shards" and "index") less the datasets of tensors the
    store no longer has (an edit's --drop or --keep). What Keras 3.15 loads decides what may
    go (tests/test_edit.py checks each case with the framework):

    - All of an optimizer's variables: its `vars` group goes, and the groups that leaves
      empty, as in a file saved without an optimizer. `load_weights` and `load_model` warn
      that they skip the optimizer ("has 10 variables whereas the saved optimizer has 0") and
      start from a fresh one. Part of them is refused: Keras loads an optimizer's variables
      all or none, by count and position, and would skip the rest with that warning.
    - A layer's variable is refused: Keras loads a layer's variables by count and position,
      and `load_weights` and `load_model` fail ("Layer 'd1' expected 2 variables, but
      received 1"); only `skip_mismatch=True` gets past it, leaving the layer unloaded.

    Sharded: shards left without datasets go (the rest are renumbered on writing), and the
    index's weight_map and total_size follow."""
    sharded = "shards" in recorded
    shards = recorded["shards"] if sharded else [{"file": "", "tree": recorded["tree"]}]
    gone = [set(hdf5.absent(s["tree"], lookup, f"{s['file']}:" if sharded else ""))
            for s in shards]
    if not any(gone):
        return dict(recorded)
    _check_drops([s["tree"] for s in shards], gone)
    edited = [{**s, "tree": hdf5.edited(s["tree"], lost)} for s, lost in zip(shards, gone)]
    if not sharded:
        return {**recorded, "tree": edited[0]["tree"]}
    kept = [new for old, new in zip(shards, edited)
            if _holds_data(new["tree"]) or not _holds_data(old["tree"])]
    dropped_bytes = sum(hdf5.stored_nbytes(hdf5.find(s["tree"], p)["dataset"])
                        for s, lost in zip(shards, gone) for p in lost)
    index = _index_without(json.loads(recorded["index"]), shards, kept, dropped_bytes)
    return {**recorded, "shards": kept, "index": index}


def _check_drops(trees: list[dict], gone: list[set[str]]) -> None:
    """Refuse dropping part of an optimizer's variables or any layer variable (see
    `without_dropped`); `trees` may be the shards of one file."""
    groups: dict[str, list[tuple[str, bool]]] = {}
    names: dict[str, str] = {}
    for tree, lost in zip(trees, gone):
        names.update({p: name for p, (name, _) in name_tree(tree).names.items()})
        for path, node in hdf5.walk(tree):
            match = _VAR.match(path) if "dataset" in node else None
            if match is not None:
                groups.setdefault(path.rsplit("/", 1)[0], []).append((path, path in lost))
    for group, members in groups.items():
        lost = [path for path, dropped in members if dropped]
        if not lost:
            continue
        example = names.get(lost[0], lost[0])
        owner = next((hdf5.attrs_dict(node).get("name") for tree in trees
                      if (node := hdf5.find(tree, group)) is not None), None) or group
        if group.split("/")[0] == "optimizer":
            if len(lost) < len(members):
                raise UsageError(
                    f"dropping {len(lost)} of the {len(members)} variables of optimizer "
                    f"{owner!r} (e.g. {example!r}) leaves part of its state, which Keras 3 "
                    "loads all or none: it would skip the rest; drop all of them (roles "
                    "optimizer and counter) or none")
            continue
        raise UsageError(
            f"cannot drop {example!r}: Keras 3 loads the variables of layer {owner!r} by count "
            "and position, and load_weights and load_model fail on a layer that lacks one "
            f"(expected {len(members)} variables, received {len(members) - len(lost)}); "
            "drop only optimizer state, or write safetensors or npz")


def _holds_data(node: Mapping[str, Any] | None) -> bool:
    return node is not None and any("dataset" in n for _, n in hdf5.walk(node))


def _index_without(index: dict, shards: list[dict], kept: list[dict], dropped_bytes: int) -> str:
    """The sharded index after a drop: weight_map lists a shard for a group only while it
    still holds that group's data; total_size (the bytes of every variable) shrinks."""
    before = {s["file"]: s["tree"] for s in shards}
    after = {s["file"]: s["tree"] for s in kept}
    weight_map = {}
    for group, files in index.get("weight_map", {}).items():
        listed = [files] if isinstance(files, str) else files
        left = [f for f in listed if f in after and (
            _holds_data(hdf5.find(after[f], group))
            or not _holds_data(hdf5.find(before[f], group)))]
        if left:
            weight_map[group] = left if isinstance(files, list) else left[0]
    index["weight_map"] = weight_map
    metadata = index.get("metadata")
    total = metadata.get("total_size") if isinstance(metadata, dict) else None
    if isinstance(total, (int, float)) and not isinstance(total, bool):
        metadata["total_size"] = type(total)(total - dropped_bytes)
    return json.dumps(index, indent=4)


def write_h5(target: str | Any, tree: Mapping[str, Any], get: Callable[[str], Tensor],
             path: str) -> None:
    with hdf5.create_file(target) as f:
        hdf5.write_tree(f, tree, get)

