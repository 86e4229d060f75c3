"""Keras 3 `.weights.h5` (format "keras-weights-h5") and its sharded form, `x.weights.json`
(a `weight_map` from `/path/vars` groups to shard files) plus `x_00000.weights.h5`, ...

Layout (FORMATS.md §3c): `layers/<snake_case class>[_N]/vars/<i>` in `layer.weights` order,
nested saveables below their layer (`layers/lstm/cell/vars/1`), `optimizer/vars/<i>`, and a
root `vars` group. Each `vars` group has an informational attr `name` (the layer's name);
bfloat16 is opaque 2-byte data with the dataset attr `dtype='bfloat16'`.

Canonical names put the layer names (from the `name` attrs) in place of the class-based groups
and drop the `layers`/`vars` containers: `layers/dense/vars/0` of layer `c1` -> `c1/0`,
`layers/lstm/cell/vars/1` -> `lstm1/lstm_cell/1`. Without a `name` attr the group name stays
(`dense/0`). `optimizer/vars/<i>` -> `optimizer/<i>`, role "optimizer"; `optimizer/vars/0`, the
iteration counter, has role "counter". On a collision the class-path name is used.

Order (`listing_key`): HDF5 lists groups by name (`batch_normalization` before `conv2d`,
`dense_10` before `dense_2`), which is not the model's order. A sharded index lists the `vars`
groups in the order Keras saved them, which is; a bare `.weights.h5` records no order, so its
groups are listed in natural order (numbers by value), each layer's own `vars` before its
sublayers, `optimizer` last. The order is presentation only: names and the tensors read do
not depend on it, and the writers write the recorded tree whatever the store's order.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from . import hdf5
from . import source as seam
from .keras3_tree import (load_json, merged_tree, rename_losses, substore, tensors_from,
                          with_renames, without_dropped, write_h5)
from .keras_names import group_ranks, listing_key, name_tree, submodel, variable_order
from .atomic import atomic_output
from .errors import CorruptFileError, UnsafeFileError, UsageError, WeightsError, WeightsNote
from .foreign import structure_losses
from .format import Format, ShardedWrite, WritePlan
from .store import Store, Tensor

NAME = "keras-weights-h5"
NAMESPACE = "keras_weights_h5"
MAX_INDEX_BYTES = 16 << 20
_VAR = re.compile(r"^(?:(.*)/)?vars/(\d+)$")

def sniff(path: str, head: bytes) -> bool:
    lowered = path.lower()
    if lowered.endswith(".weights.json") and seam.isfile(path):
        return head.lstrip().startswith(b"{") and b"weight_map" in head
    if not (hdf5.is_hdf5(head) and seam.isfile(path)):
        return False
    # By content: Keras 3 link names (`vars`) in the root heap, no tf.keras attributes.
    return lowered.endswith(".weights.h5") or (
        b"vars\0" in head and b"layer_names" not in head and b"model_weights" not in head)


# -- names: converters/keras_names.py ----------------------------------------------------------

# -- a nested model on its own ------------------------------------------------------------------

def extract(store: Store, name: str) -> Store:
    """The variables of the model nested under `name` (`encoder`) as a Keras 3 weights file of
    that model alone (its group's subtree at the root, no optimizer): what the standalone model
    saves and `load_weights` loads (`keras_names.submodel`)."""
    # A .keras archive holds the same tree as its model.weights.h5 (FORMATS.md §3c).
    recorded = store.meta.get(NAMESPACE) or store.meta.get("keras")
    if recorded is None or "tree" not in recorded:
        raise UsageError("extract needs a Keras 3 .weights.h5 or .keras; a sharded file: "
                         "convert it to one .weights.h5 first")
    group, tree, _ = submodel(recorded["tree"], None, name)
    return substore(store, group, tree, lambda t: {NAMESPACE: {"tree": t}}, NAME)


# -- reading ----------------------------------------------------------------------------------

def read(path: str) -> Store:
    if path.lower().endswith(".json"):
        return _read_sharded(path)
    index = _index_of_shard(path)
    if index is not None:
        warnings.warn(WeightsNote(
            f"{path}: named as a shard of {index}; read alone it is part of the model (the "
            "optimizer's variables by position): read the .weights.json for the whole model"),
            stacklevel=2)
    f = hdf5.open_file(path)
    try:
        tree, datasets = hdf5.describe(f, path, seam.getsize(path))
        aliases: dict[str, str] = {}
        with hdf5.h5_errors(path):
            tensors = tensors_from(tree, datasets, path, name_tree(tree), aliases=aliases)
        return Store(tensors, format=NAME, path=path, meta={NAMESPACE: {"tree": tree}},
                     on_close=f.close, aliases=aliases)
    except BaseException:
        f.close()
        raise


_SHARD = re.compile(r"(.+)_\d{5}\.weights\.h5", re.IGNORECASE)  # keras/src/saving/saving_lib.py


def _index_of_shard(path: str) -> str | None:
    """The `.weights.json` beside `path` when `path` is named as Keras names its shards
    (`model_00001.weights.h5` of `model.weights.json`). Only its existence is asked: a file
    the user did not name is not read."""
    match = _SHARD.fullmatch(os.path.basename(path))
    if match is None:
        return None
    index = os.path.join(os.path.dirname(path), match.group(1) + ".weights.json")
    try:
        return index if seam.isfile(index) else None
    except (OSError, WeightsError):
        return None


def stored_as(path: str) -> tuple[str, ...]:
    """The sharded model a shard's name names (`model.weights.json` for
    `model_00001.weights.h5`), whether or not it exists."""
    match = _SHARD.fullmatch(os.path.basename(path))
    return (os.path.join(os.path.dirname(path), match.group(1) + ".weights.json"),) \
        if match else ()


def _shard_files(index: Any, path: str) -> list[str]:
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise CorruptFileError("expected a JSON object with a 'weight_map' object", path)
    shards: list[str] = []
    for group, files in weight_map.items():
        files = [files] if isinstance(files, str) else files
        if not isinstance(files, list) or not all(isinstance(x, str) for x in files):
            raise CorruptFileError(f"weight_map[{group!r}]: expected a list of shard file names",
                                   path)
        for name in files:
            if "/" in name or "\\" in name or name in ("", ".", ".."):
                raise UnsafeFileError(f"shard name {name!r} must be a plain file name", path)
            if name not in shards:
                shards.append(name)
    return shards


def _read_sharded(path: str) -> Store:
    with hdf5.h5_errors(path):
        return _read_shards(path)


def _read_shards(path: str) -> Store:
    if seam.getsize(path) > MAX_INDEX_BYTES:
        raise UnsafeFileError(f"index larger than {MAX_INDEX_BYTES} bytes; refused", path)
    raw = seam.read_bytes(path, MAX_INDEX_BYTES + 1)
    index = load_json(raw, path, "sharded weights index")
    directory = seam.parent(path)
    seam.scan(directory.rstrip("/") + "/")  # a URL: the shards' folder, listed once
    # One order across the shards: the weight_map's, which Keras writes as it saves the
    # model's `vars` groups, then natural order (`listing_key`); a group split across shards
    # in shard order.
    ranks = group_ranks(index["weight_map"])
    files, shards, described, tensors, position = [], [], [], {}, {}
    aliases: dict[str, str] = {}
    try:
        for name in _shard_files(index, path):
            shard_path = seam.inside(directory, name)
            if not seam.exists(shard_path):
                raise CorruptFileError(f"missing shard {name!r}", path)
            size = seam.check_input(shard_path)
            f = hdf5.open_file(shard_path)
            files.append(f)
            tree, datasets = hdf5.describe(f, shard_path, size)
            shards.append({"file": name, "tree": tree})
            described.append((name, shard_path, tree, datasets))
        # Names come from the whole model: a layer's or the optimizer's `vars` may be split
        # across shards.
        naming = name_tree(merged_tree([tree for _, _, tree, _ in described], path))
        for number, (name, shard_path, tree, datasets) in enumerate(described):
            order = listing_key(tree, ranks)
            for key, tensor in tensors_from(tree, datasets, shard_path, naming,
                                            f"{name}:", aliases=aliases).items():
                if key in tensors:
                    raise CorruptFileError(f"{key!r} appears in two shards", path)
                tensors[key] = tensor
                position[key] = order(tensor.meta["key"][len(name) + 1:]), number
    except BaseException:
        for f in files:
            f.close()
        raise
    meta = {NAMESPACE: {"index": raw.decode("utf-8"), "shards": shards}}
    return Store({key: tensors[key] for key in sorted(tensors, key=position.__getitem__)},
                 format=NAME, path=path, meta=meta, on_close=lambda: [f.close() for f in files],
                 aliases={a: n for a, n in aliases.items() if a not in tensors})


# -- writing ----------------------------------------------------------------------------------

def losses(store: Store, like: Store | None = None) -> list[str]:
    """As for every HDF5 format (`hdf5.dtype_losses`): 4-bit dtypes, foreign strings with
    NULs; for a store not read from a `.weights.h5` (with or without a structure of its own)
    its file structure and the names, roles and order that the layout built from names
    (`build_tree`) does not give back when read."""
    foreign = structure_losses(store, (NAMESPACE,), like)
    lost = hdf5.dtype_losses(store) + foreign
    if like is not None and NAMESPACE in like.meta:
        return lost  # the template's layout and names are written
    if NAMESPACE in store.meta:
        return lost + rename_losses(with_renames(store.meta[NAMESPACE], store)[1])
    tree, placed = build_tree(store)
    read_as = name_tree(tree).names
    read_as = {p: read_as[p] for p in sorted(read_as, key=listing_key(tree))}
    name_of = {id(placed[path]): name for path, (name, _) in read_as.items()}
    role_of = {id(placed[path]): role for path, (_, role) in read_as.items()}
    renamed = sum(1 for name, t in store.items() if name_of[id(t)] != name)
    if renamed:
        lost.append(f"names of {renamed} variable(s) (Keras 3 .weights.h5 is positional)")
    unread = Counter(t.role for t in store.values() if role_of[id(t)] != t.role)
    lost += [f"roles of {n} {role} variable(s)" for role, n in sorted(unread.items())]
    if [id(placed[p]) for p in read_as] != [id(t) for t in store.values()]:
        lost.append("the order of variables (.weights.h5 lists them by layer)")
    return lost


def plan(store: Store, like: Store | None = None) -> WritePlan:
    """The recorded meta to write (tree, or shards and index) and the tensor of each path;
    refused when it holds a drop Keras 3 could not load."""
    return WritePlan.of(store, like, losses(store, like), lambda: _plan(store, like))


def write(plan: WritePlan, path: str) -> None:
    """Write the recorded tree(s) back exactly (less what an edit dropped), or build
    `layers/<layer>/vars/<i>` from names; 4-bit tensors (a declared loss) widened."""
    recorded, lookup = plan.detail
    get = lambda p: hdf5.widen(lookup(p))  # noqa: E731
    with atomic_output() as out:
        if "shards" in recorded:
            _write_sharded(recorded, path, get, out)
        else:
            if path.lower().endswith(".json"):
                raise UsageError("a sharded .weights.json needs a store read from one; "
                                 "write a .weights.h5")
            write_h5(out.path(path), recorded["tree"], get, path)


def _plan(store: Store, like: Store | None) -> tuple[dict, Callable[[str], Tensor]]:
    """The recorded meta to write (tree, or shards and index) and the tensor of each path."""
    recorded, lookup = hdf5.template(store, like, NAMESPACE)
    if recorded is None:
        tree, tensors = build_tree(store)
        return {"tree": tree}, tensors.__getitem__
    if like is None or NAMESPACE not in like.meta:
        recorded = without_dropped(recorded, lookup)
    hdf5.check_covered(store, _recorded_paths(recorded), lookup)
    if like is None or NAMESPACE not in like.meta:
        recorded = with_renames(recorded, store)[0]
    return recorded, lookup


def current(store: Store) -> dict:
    """The store's .weights.h5 record as `_plan` would write it for the store alone: less
    what an edit dropped, renames applied (`Format.current`)."""
    recorded, lookup = hdf5.template(store, None, NAMESPACE)
    if recorded is None:
        raise UsageError("no .weights.h5 record")
    return with_renames(without_dropped(recorded, lookup), store)[0]


def _recorded_paths(recorded: Mapping[str, Any]) -> list[str]:
    if "shards" in recorded:
        return [f"{s['file']}:{p}" for s in recorded["shards"]
                for p, node in hdf5.walk(s["tree"]) if "dataset" in node]
    return [p for p, node in hdf5.walk(recorded["tree"]) if "dataset" in node]


def _write_sharded(recorded: Mapping[str, Any], path: str, get: Callable[[str], Tensor],
                   out) -> None:
    """Shards are renamed after the output (`y.weights.json` -> `y_00000.weights.h5`, as Keras
    names them) and the index's weight_map follows; the index is kept verbatim otherwise."""
    files, index_text = _shard_layout(recorded, path)
    for shard, final in zip(recorded["shards"], files):
        _write_shard(out.path(final), shard, get, path)
    with open(out.path(path), "w", encoding="utf-8") as f:
        f.write(index_text)


def _shard_layout(recorded: Mapping[str, Any], path: str) -> tuple[list[str], str]:
    """The path of each shard written for `path`, and the index text naming them."""
    if not path.lower().endswith(".weights.json"):
        raise UsageError("a sharded Keras 3 store is written as NAME.weights.json", path)
    stem = os.path.basename(path)[:-len(".weights.json")]
    renames = {s["file"]: f"{stem}_{i:05d}.weights.h5" for i, s in enumerate(recorded["shards"])}
    index_text = recorded["index"]
    if any(old != new for old, new in renames.items()):
        index = json.loads(index_text)
        index["weight_map"] = {g: [renames.get(f, f) for f in ([fs] if isinstance(fs, str)
                                                                 else fs)]
                               for g, fs in index["weight_map"].items()}
        index_text = json.dumps(index, indent=4)
    directory = os.path.dirname(os.path.abspath(path))
    return [os.path.join(directory, renames[s["file"]]) for s in recorded["shards"]], index_text


def _write_shard(target: str, shard: Mapping[str, Any], get: Callable[[str], Tensor],
                 path: str) -> None:
    write_h5(target, shard["tree"], lambda p, s=shard["file"]: get(f"{s}:{p}"), path)


def sharded(plan: WritePlan, path: str) -> ShardedWrite | None:
    """A sharded `.weights.json` as its `.weights.h5` shards, each on its own, and the index
    last (one task per shard with `convert --scheduler`): the files `write` writes. None for a
    single `.weights.h5`."""
    recorded, lookup = plan.detail
    if "shards" not in recorded:
        return None
    files, index_text = _shard_layout(recorded, path)
    get = lambda p: hdf5.widen(lookup(p))  # noqa: E731
    return ShardedWrite(
        files, lambda k, target: _write_shard(target, recorded["shards"][k], get, path),
        path, lambda facts, f: f.write(index_text.encode("utf-8")))


def build_tree(store: Store) -> tuple[dict, dict[str, Tensor]]:
    """A Keras 3 layout from canonical names: a `.../vars/<i>` key or a positional name
    `<layer>/<i>` keeps its place; variables named as Keras names them (`d1/kernel`,
    `d1/bias`) go to `layers/d1/vars/<i>` in the order Keras creates them
    (`keras_names.variable_order`), others in store order."""
    root: dict = {"attrs": [], "children": []}
    tensors: dict[str, Tensor] = {}
    counters: dict[str, int] = {}
    placed: list[tuple[str, str | None, str, Tensor]] = []  # group, index, last part, tensor
    for name, tensor in store.items():
        key = tensor.meta.get("key", "")
        key = key.split(":", 1)[1] if re.match(r"^[^/:]+\.weights\.h5:", key or "") else key
        match = _VAR.match(key) if isinstance(key, str) else None
        if match is not None and match.group(1):
            placed.append((match.group(1), match.group(2), "", tensor))
            continue
        parts = name.rsplit("/", 1)
        has_index = len(parts) == 2 and parts[1].isdigit()
        layer = parts[0] if has_index else (name.split("/")[0] if "/" in name else name)
        group = "optimizer" if tensor.role != "weight" else f"layers/{layer}"
        placed.append((group, parts[1] if has_index else None, parts[-1], tensor))
    by_group: dict[str, list[str]] = {}
    for group, index, last, _ in placed:
        if index is None:
            by_group.setdefault(group, []).append(last)
    orders = {group: variable_order(lasts) for group, lasts in by_group.items()
              if group != "optimizer" and len(set(lasts)) == len(lasts)}
    for group, index, last, tensor in placed:
        order = orders.get(group)
        if index is None and order is not None:
            index = str(order.index(last))
        elif index is None:
            index = str(counters.get(group, 0))
        counters[group] = max(counters.get(group, 0), int(index) + 1)
        hdf5.place(root, f"{group}/vars/{index}", tensor, tensors, "")
    return root, tensors


FORMAT = Format(
    name=NAME, description="Keras 3 .weights.h5 (or sharded .weights.json)",
    sniff=sniff, read=read, plan=plan, write=write,
    suffixes=(".weights.h5", ".weights.json"), aliases=("weights-h5",),
    namespace=NAMESPACE,
    structure="the keras-weights-h5 file structure (layer groups, attributes)",
    templates=("keras-weights-h5",),
    extract=extract,
    sharded=sharded,
    stored_as=stored_as,
    current=current,
)
