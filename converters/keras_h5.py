"""Keras HDF5 files (format "keras-h5"): tf.keras `model.save('m.h5')`, tf.keras
`save_weights('w.h5')`, Keras 3 legacy `model.save('m.h5')`, and any other HDF5 file of datasets.

Layouts (FORMATS.md §3):
- "model": root attrs `backend`, `keras_version`, `model_config`, `training_config`; groups
  `model_weights/` (attr `layer_names`; a group per layer with attr `weight_names`) and
  `optimizer_weights/` (attr `weight_names`).
- "weights": the content of `model_weights/` at the root (tf.keras `save_weights`).
- "hdf5": anything else; every dataset is a tensor named by its path.

Canonical names are the Keras weight names without `:0` (`c1/kernel`, `lstm1/lstm_cell/bias`;
Keras 3 legacy: `sequential/c1/kernel`), in layer order. Optimizer weights keep their names
(`Adam/m/c1/kernel`, `adam/sequential_c1_kernel_momentum`) with role "optimizer"; the iteration
counter has role "counter". A name that would collide gets the layer (or `optimizer`) prefix.
`meta["keras_h5"]` holds the layout and the whole group/attribute tree for an exact write-back.
"""
from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from . import hdf5, keras_config
from . import source as seam
from .atomic import atomic_output
from .errors import CorruptFileError, UsageError
from .foreign import structure_losses
from .format import Format, WritePlan
from .names import unique_names
from .store import Store, Tensor

NAME = "keras-h5"
NAMESPACE = "keras_h5"
# What tf_keras itself writes; a loader needs keras_version (without it: Keras 1 conversions).
DEFAULT_ROOT_ATTRS = {"backend": "tensorflow", "keras_version": "2.21.0"}
_COUNTERS = re.compile(r"(^|/)iter(ation)?s?(:0)?$")


def sniff(path: str, head: bytes) -> bool:
    """Any HDF5 file (Keras 3 weights files are claimed first, by the registry's order)."""
    return hdf5.is_hdf5(head) and seam.isfile(path)


def canonical(weight_name: str) -> str:
    """A Keras weight name without the TensorFlow output suffix `:0`."""
    return weight_name[:-2] if weight_name.endswith(":0") else weight_name


def layout_of(tree: dict) -> str:
    if hdf5.chunked_attr(tree, "layer_names") is not None:
        return "weights"
    model = hdf5.find(tree, "model_weights")
    if model is not None and "children" in model and \
            hdf5.chunked_attr(model, "layer_names") is not None:
        return "model"
    return "hdf5"


def scoped(layer: str, weight_name: str) -> str:
    """The canonical name of weight `weight_name` of the layer group `layer`: the weight name
    without `:0`, under the layer's name when the weight name does not already pass through
    it. tf_keras names a nested model's weights without the model (`d1/kernel:0` in group
    `inner`), Keras 3 a nested Functional's (`enc_dense/kernel` in group `encoder`); the group
    keeps them apart and gives `inner/d1/kernel`, as Keras 3 files name them."""
    name = canonical(weight_name)
    return name if layer in name.split("/")[:-1] else f"{layer}/{name}"


def named_datasets(tree: dict) -> list[tuple[str, str, str]]:
    """(dataset path, canonical name, role) for every weight named by the Keras attributes, in
    layer order, then optimizer weights, then any other dataset under its path."""
    layout = layout_of(tree)
    out: list[tuple[str, str, str]] = []
    if layout != "hdf5":
        prefix = "model_weights/" if layout == "model" else ""
        weights_node = hdf5.find(tree, prefix) if prefix else tree
        for layer in hdf5.chunked_attr(weights_node, "layer_names") or []:
            node = hdf5.find(weights_node, layer)
            if node is None or "children" not in node:
                raise CorruptFileError(f"layer_names lists {layer!r} but there is no such group")
            for weight in hdf5.chunked_attr(node, "weight_names") or []:
                out.append((f"{prefix}{layer}/{weight}", scoped(layer, weight), "weight"))
        optimizer = hdf5.find(tree, "optimizer_weights") if layout == "model" else None
        if optimizer is not None and "children" in optimizer:
            for weight in hdf5.chunked_attr(optimizer, "weight_names") or []:
                role = "counter" if _COUNTERS.search(weight) else "optimizer"
                out.append((f"optimizer_weights/{weight}", canonical(weight), role))
    return out


def read(path: str) -> Store:
    f = hdf5.open_file(path)
    try:
        tree, datasets = hdf5.describe(f, path, seam.getsize(path))
        with hdf5.h5_errors(path):
            tensors, aliases = _tensors(tree, datasets, path)
        store = Store(tensors, format=NAME, path=path,
                      meta={NAMESPACE: {"layout": layout_of(tree), "tree": tree}},
                      on_close=f.close, aliases=aliases)
    except BaseException:
        f.close()
        raise
    return store


def _tensors(tree: dict, datasets: list[tuple[str, Any]], path: str
             ) -> tuple[dict[str, Tensor], dict[str, str]]:
    """{canonical name: tensor} in layer order, and {alias: canonical name}: the weight name
    as the file gives it (`d1/kernel` of `inner/d1/kernel`) where it names one variable.

    No two datasets become one name: a name two weights share goes to neither, each then takes
    its dataset path (`model_weights/a/head/kernel:0`), and a fallback never takes a name
    another weight has (`names.unique_names`)."""
    by_path = dict(datasets)
    candidates: dict[str, list[str]] = {}
    roles: dict[str, str] = {}
    plain: dict[str, str] = {}
    for where, name, role in named_datasets(tree):
        if where not in by_path:
            raise CorruptFileError(f"weight {where!r} is named in the attributes but missing")
        if where in candidates:
            raise CorruptFileError(f"weight {where!r} is named twice in the attributes")
        candidates[where] = [name, where]
        roles[where] = role
        if role == "weight":  # the weight name the file gives (`d1/kernel` of inner/d1/kernel)
            layer_group = where.split("/")[1 if where.startswith("model_weights/") else 0]
            plain[where] = canonical(where.split(f"{layer_group}/", 1)[1])
    for where, _ in datasets:
        if where not in candidates:
            candidates[where] = [where]
            roles[where] = "optimizer" if where.startswith("optimizer_weights/") else "weight"
    try:
        chosen = unique_names(candidates)
    except ValueError as exc:
        raise CorruptFileError(str(exc)) from None
    names: dict[str, Tensor] = {}
    for where, name in chosen.items():
        node = hdf5.find(tree, where)
        with hdf5.h5_errors(path):
            dtype = hdf5.tensor_dtype(by_path[where], hdf5.attrs_dict(node), where)
        names[name] = hdf5.lazy_tensor(by_path[where], dtype,
                                       {"key": where, "role": roles[where]}, path)
    counts: dict[str, int] = {}
    for where, alias in plain.items():
        counts[alias] = counts.get(alias, 0) + 1
    aliases = {alias: chosen[where] for where, alias in plain.items()
               if counts[alias] == 1 and alias not in names and alias != chosen[where]}
    return names, aliases


def extract(store: Store, name: str) -> Store:
    """The model nested as layer `name` (`encoder`) of a Keras .h5, as an .h5 of that model
    alone: a full-model file (its `model_config` from the parent's, as data; no optimizer)
    when the parent is one, else a `save_weights` file; `load_model`, or `load_weights` into
    the standalone model, loads it. Its layers are those of the parent's model_config entry,
    else the layers its weight names pass through, in their order; each layer's weights in
    the parent's order (tf_keras `hdf5_format.save_weights_to_hdf5_group`)."""
    recorded = store.meta.get(NAMESPACE)
    if recorded is None or recorded["layout"] == "hdf5":
        raise UsageError("extract needs a Keras .h5 written by model.save or save_weights")
    tree, layout = recorded["tree"], recorded["layout"]
    prefix = "model_weights/" if layout == "model" else ""
    weights_node = hdf5.find(tree, prefix) if prefix else tree
    layers = hdf5.chunked_attr(weights_node, "layer_names") or []
    nested = [n for n in layers if any("/" in canonical(w) and not canonical(w).startswith(
        f"{n}/") for w in hdf5.chunked_attr(hdf5.find(weights_node, n) or {}, "weight_names")
        or [])]
    if name not in layers or name not in nested:
        from .names import suggestion
        raise UsageError(f"no nested model named {name!r}; "
                         f"{suggestion(name, nested) if nested else 'the model nests none'}")
    group = hdf5.find(weights_node, name)
    weights = hdf5.chunked_attr(group, "weight_names") or []
    inner = {w: canonical(w)[len(name) + 1:] if canonical(w).startswith(f"{name}/")
             else canonical(w) for w in weights}
    members: dict[str, list[str]] = {}
    for weight in weights:
        members.setdefault(inner[weight].split("/")[0], []).append(weight)
    attrs = {k: v for k, v in hdf5.attrs_dict(tree).items()}
    entry = _nested_entry(attrs.get("model_config"), name) if layout == "model" else None
    order = [layer for layer in (entry_layers(entry) if entry else []) if layer in members]
    order += [layer for layer in members if layer not in order]
    top = {"attrs": [[k, a] for k, a in (tree if layout == "model" else weights_node)["attrs"]
                     if k in ("backend", "keras_version")], "children": []}
    body = top
    if entry is not None:
        top["attrs"].append(["model_config", hdf5.str_attr(json.dumps(entry))])
        body = {"attrs": [[k, a] for k, a in weights_node["attrs"]
                          if k in ("backend", "keras_version")], "children": []}
        top["children"].append(["model_weights", body])
    body["attrs"] = list_attrs(body["attrs"], "layer_names", order)
    key_of: dict[str, str] = {}
    where = "model_weights/" if entry is not None else ""
    for layer in order:
        node = {"attrs": list_attrs([], "weight_names", members[layer]), "children": []}
        for weight in members[layer]:
            _attach(node, weight, copy.deepcopy(hdf5.find(group, weight)))
            key_of[f"{prefix}{name}/{weight}"] = f"{where}{layer}/{weight}"
        body["children"].append([layer, node])
    out = {}
    by_key = {t.meta.get("key"): t for t in store.values()}
    named = {w: n for w, n, _ in named_datasets(top)}
    for old, new in key_of.items():
        out[named[new]] = by_key[old].with_meta(key=new)
    return Store(out, format=NAME, path=store.path,
                 meta={NAMESPACE: {"layout": layout_of(top), "tree": top}})


def _nested_entry(model_config: Any, name: str) -> dict | None:
    """The parent's model_config entry of layer `name`, as a model_config of its own."""
    try:
        config = json.loads(model_config) if isinstance(model_config, str) else None
    except ValueError:
        return None
    layers = config.get("config", {}).get("layers") if isinstance(config, dict) else None
    for entry in layers if isinstance(layers, list) else []:
        inner = entry.get("config") if isinstance(entry, dict) else None
        if isinstance(inner, dict) and inner.get("name") == name and "layers" in inner:
            keep = ("module", "class_name", "config", "registered_name", "build_config")
            return {k: entry[k] for k in keep if k in entry}
    return None


def entry_layers(entry: dict) -> list[str]:
    """The layer names of a model_config entry, in its order."""
    layers = entry.get("config", {}).get("layers", [])
    return [e["config"]["name"] for e in layers
            if isinstance(e, dict) and isinstance(e.get("config"), dict)
            and isinstance(e["config"].get("name"), str)]


def losses(store: Store, like: Store | None = None) -> list[str]:
    """What HDF5 cannot hold (`hdf5.dtype_losses`), for a store of another origin its file
    structure (names, roles and values are kept), and renames the recorded file cannot take
    (`with_renames`)."""
    lost = hdf5.dtype_losses(store) + structure_losses(store, (NAMESPACE,), like)
    if NAMESPACE not in store.meta and like is None and _written_order(store) != list(store):
        lost.append("the order of variables (a tf.keras .h5 holds each layer's weights "
                    "together, in the order Keras creates them: kernel before bias)")
    if NAMESPACE not in store.meta and like is None and keras_config.model_of(store) is None:
        weights = [n for n, t in store.items() if t.role == "weight"]
        layers = layer_of(weights)
        moved = [f"{n} -> {scoped(layers[n], n + ':0')}" for n in weights
                 if scoped(layers[n], n + ":0") != n]
        if moved:
            more = f" and {len(moved) - 3} more" if len(moved) > 3 else ""
            lost.append(f"names outside a layer's scope ({', '.join(moved[:3])}{more}: a "
                        "tf.keras .h5 reads each weight under its layer's name)")
    if NAMESPACE in store.meta and (like is None or NAMESPACE not in like.meta):
        recorded = store.meta[NAMESPACE]
        problems = with_renames(recorded["tree"], recorded["layout"], store)[2]
        if problems:
            more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
            lost.append(f"renames: {'; '.join(problems[:3])}{more}")
    return lost


def plan(store: Store, like: Store | None = None) -> WritePlan:
    """The tree to write and the tensor of each dataset path; refused when it holds a drop
    tf_keras could not load."""
    return WritePlan.of(store, like, losses(store, like), lambda: _plan(store, like))


def write(plan: WritePlan, path: str) -> None:
    """Write the recorded tree back exactly (less what an edit dropped), or build the tf.keras
    weights layout from names; 4-bit tensors (a declared loss) widened."""
    tree, lookup = plan.detail
    with atomic_output() as out:
        temp = out.path(path)
        with hdf5.create_file(temp) as f:
            hdf5.write_tree(f, tree, lambda p: hdf5.widen(lookup(p)))


def _plan(store: Store, like: Store | None) -> tuple[dict, Callable[[str], Tensor]]:
    """The tree to write and the tensor of each of its dataset paths."""
    recorded, lookup = hdf5.template(store, like, NAMESPACE)
    if recorded is None:
        model = keras_config.model_of(store)  # a Keras model another format recorded (TF.js)
        tree, tensors = build_tree(store) if model is None else \
            keras_config.full_model_tree(model, store)
        return tree, tensors.__getitem__
    tree = recorded["tree"]
    if like is None or NAMESPACE not in like.meta:
        tree = without_dropped(tree, recorded["layout"], lookup)
    hdf5.check_covered(store, [p for p, node in hdf5.walk(tree) if "dataset" in node], lookup)
    if like is None or NAMESPACE not in like.meta:
        renamed, moved, problems = with_renames(tree, recorded["layout"], store)
        if not problems and moved:
            return renamed, lambda p, get=lookup: get(moved.get(p, p))
    return tree, lookup


def with_renames(tree: dict, layout: str, store: Store
                 ) -> tuple[dict, dict[str, str], list[str]]:
    """`tree` with the store's renames written into it, {new dataset path: old}, and the
    renames it cannot take (then the tree is unchanged).

    A weight keeps its layer group and its place in `weight_names`; its name there and its
    dataset follow the new name (`d1/kernel:0` -> `d1/w:0`). A layer's weights all renamed into
    another layer (`^d1/` -> `fc/`) rename the layer: its group and its `layer_names` entry,
    which `load_weights(by_name=True)` matches against the model's layers. In a full-model
    file (`model.save`) `model_config` names the layers and `load_model` builds them so: a
    layer rename is refused there. Optimizer weights are renamed in `weight_names` too; plain
    HDF5 datasets move to the path their new name is."""
    wanted = {t.meta["key"]: n for n, t in store.items() if isinstance(t.meta.get("key"), str)}
    current = {where: (name, role) for where, name, role in named_datasets(tree)}
    current.update({where: (where, "plain") for where, node in hdf5.walk(tree)
                    if "dataset" in node and where not in current})
    renamed = {w: n for w, n in wanted.items() if w in current and current[w][0] != n}
    if not renamed:
        return tree, {}, []
    prefix = "model_weights/" if layout == "model" else ""
    problems: list[str] = []
    moves: dict[str, str] = {}
    layers: dict[str, str] = {}
    lists: dict[str, dict[str, str]] = {}
    for where, new in renamed.items():
        old, role = current[where]
        parts = new.split("/")
        if role == "plain":
            moves[where] = new
            continue
        if role != "weight":
            weight = where[len("optimizer_weights/"):]
            suffix = ":0" if weight.endswith(":0") else ""
            lists.setdefault("optimizer_weights", {})[weight] = new + suffix
            continue
        layer, weight = where[len(prefix):].split("/", 1)
        suffix = ":0" if weight.endswith(":0") else ""
        inside = canonical(weight).split("/")
        if layer in inside[:-1]:  # the weight name passes through its layer (`d1/kernel`)
            if len(parts) != len(inside):
                problems.append(f"{old!r} -> {new!r} (a weight stays at its depth in its layer)")
                continue
            new_layer, new_weight = parts[inside.index(layer)], new
        else:  # a nested model's weight (`d1/kernel:0` in group `inner`)
            new_layer, new_weight = parts[0], "/".join(parts[1:])
        if not new_weight or any(p in ("", ".", "..") for p in parts):
            problems.append(f"{old!r} -> {new!r} (not a weight name inside a layer)")
            continue
        if layers.setdefault(layer, new_layer) != new_layer:
            problems.append(f"layer {layer!r} renamed both {layers[layer]!r} and {new_layer!r}")
        lists.setdefault(prefix + layer, {})[weight] = new_weight + suffix
    layer_renames = {a: b for a, b in layers.items() if a != b}
    weights_node = hdf5.find(tree, prefix) if prefix else tree
    existing = set(hdf5.chunked_attr(weights_node, "layer_names") or []) if layout != "hdf5" \
        else set()
    for layer, new_layer in layer_renames.items():
        node = hdf5.find(weights_node, layer) or {}
        every = [f"{prefix}{layer}/{w}" for w in hdf5.chunked_attr(node, "weight_names") or []]
        if any(w not in renamed for w in every):
            problems.append(f"layer {layer!r} -> {new_layer!r} for some of its weights only "
                            "(a layer's weights stay together)")
        if new_layer in existing and new_layer not in layer_renames:
            problems.append(f"layer {layer!r} -> {new_layer!r}, a layer that exists")
        if layout == "model":
            problems.append(f"layer {layer!r} -> {new_layer!r} (a full-model .h5 names its "
                            "layers in model_config, and load_model builds them so; rename "
                            "weights within a layer, or write a save_weights .h5 or safetensors)")
    if problems:
        return tree, {}, problems
    edited, moved = _renamed_tree(tree, prefix, layer_renames, lists, moves)
    after = {where: name for where, name, _ in named_datasets(edited)}
    after.update({where: where for where, node in hdf5.walk(edited)
                  if "dataset" in node and where not in after})
    old_of = {new: old for new, old in moved.items()}
    wrong = [(wanted[old_of.get(w, w)], n) for w, n in after.items()
             if old_of.get(w, w) in wanted and wanted[old_of.get(w, w)] != n]
    if wrong:
        return tree, {}, [f"{want!r} would read back as {got!r}" for want, got in wrong[:3]]
    return edited, moved, []


def _renamed_tree(tree: dict, prefix: str, layer_renames: dict[str, str],
                  lists: dict[str, dict[str, str]], moves: dict[str, str]
                  ) -> tuple[dict, dict[str, str]]:
    """A copy of `tree` with layer groups renamed (and `layer_names`), weights renamed in
    their group's `weight_names` (and their datasets moved), plain datasets moved; and
    {new dataset path: old}."""
    edited = copy.deepcopy(tree)
    weights_node = hdf5.find(edited, prefix) if prefix else edited
    moved: dict[str, str] = {}
    if layer_renames:
        names = hdf5.chunked_attr(weights_node, "layer_names") or []
        weights_node["attrs"] = list_attrs(weights_node.get("attrs", []), "layer_names",
                                           [layer_renames.get(n, n) for n in names])
        weights_node["children"] = [[layer_renames.get(n, n), c]
                                    for n, c in weights_node["children"]]
    for group, renames in lists.items():
        layer = group[len(prefix):] if group != "optimizer_weights" else None
        new_group = prefix + layer_renames.get(layer, layer) if layer is not None else group
        node = hdf5.find(edited, new_group)
        weights = hdf5.chunked_attr(node, "weight_names") or []
        node["attrs"] = list_attrs(node.get("attrs", []), "weight_names",
                                   [renames.get(w, w) for w in weights])
        taken = [(w, _detach(node, w)) for w in weights if w in renames]
        for old, dataset in taken:
            _attach(node, renames[old], dataset)
            moved[f"{new_group}/{renames[old]}"] = f"{group}/{old}"
        for w in weights:
            if w not in renames and group != new_group:
                moved[f"{new_group}/{w}"] = f"{group}/{w}"
    for old, new in moves.items():
        _attach(edited, new, _detach(edited, old))
        moved[new] = old
    return edited, moved


def _detach(node: dict, path: str) -> dict:
    """Remove and return the node at `path` below `node`, and the groups below `node` that
    this leaves empty."""
    parts = path.split("/")
    chain = [node]
    for part in parts[:-1]:
        chain.append(dict(chain[-1]["children"])[part])
    found = dict(chain[-1]["children"])[parts[-1]]
    chain[-1]["children"] = [[n, c] for n, c in chain[-1]["children"] if n != parts[-1]]
    for depth in range(len(parts) - 1, 0, -1):
        if chain[depth]["children"]:
            break
        chain[depth - 1]["children"] = [[n, c] for n, c in chain[depth - 1]["children"]
                                        if n != parts[depth - 1]]
    return found


def _attach(node: dict, path: str, dataset: dict) -> None:
    """Put `dataset` at `path` below `node`, creating groups; refuse a taken path."""
    parts = path.split("/")
    for part in parts[:-1]:
        child = dict(node["children"]).get(part)
        if child is None:
            child = {"attrs": [], "children": []}
            node["children"].append([part, child])
        elif "children" not in child:
            raise UsageError(f"cannot rename to {path!r}: {part!r} is a dataset")
        node = child
    if parts[-1] in dict(node["children"]):
        raise UsageError(f"cannot rename to {path!r}: the path is taken")
    node["children"].append([parts[-1], dataset])


# tf_keras' HDF5_OBJECT_HEADER_LIMIT: a longer name list attribute is split into chunks.
ATTR_LIMIT = 64512
VLEN_DESCRIPTOR = 16  # a vlen string in an attribute: length, global heap address, index


def without_dropped(tree: dict, layout: str, lookup: hdf5.Placement) -> dict:
    """The recorded tree less the datasets of tensors the store no longer has (an edit's
    --drop or --keep), with the Keras name lists rewritten to match. What tf_keras 2.21 loads
    decides what may go (tests/test_edit.py checks each case with the framework):

    - All optimizer state: `optimizer_weights` goes, as `model.save(include_optimizer=False)`
      leaves it out; `load_model` compiles a fresh optimizer from `training_config`. Part of
      it is refused: `load_model` sets the optimizer's weights all or none, by position, and
      would discard the rest with only a logged warning.
    - A weight of a full model (`model.save`) is refused: `load_model` sets every layer's
      weights by position and fails ("Weight count mismatch", "Layer count mismatch").
    - All weights of a layer of a `save_weights` file: the layer leaves `layer_names` and its
      group goes, so `load_weights(by_name=True)` loads every other layer (the default, by
      position, fails with "Layer count mismatch"; an emptied group left in `layer_names`
      would fail both ways). Part of a layer's weights is refused.

    Datasets no Keras attribute names (plain HDF5) simply go, and the groups they empty."""
    gone = set(hdf5.absent(tree, lookup))
    if not gone:
        return tree
    if layout == "hdf5":
        return hdf5.edited(tree, gone)
    root = "model_weights" if layout == "model" else ""
    weights_node = hdf5.find(tree, root) if root else tree
    lists = {f"{root}/{name}" if root else name: hdf5.chunked_attr(node, "weight_names") or []
             for name, node in weights_node["children"] if "children" in node}
    if layout == "model" and "children" in (hdf5.find(tree, "optimizer_weights") or {}):
        lists["optimizer_weights"] = hdf5.chunked_attr(hdf5.find(tree, "optimizer_weights"),
                                                       "weight_names") or []
    names = {where: name for where, name, _ in named_datasets(tree)}
    remove, layers_gone = set(gone), []
    for group, weights in lists.items():
        paths = [f"{group}/{weight}" for weight in weights]
        lost = [p for p in paths if p in gone]
        if not lost:
            continue
        example, layer = names.get(lost[0], lost[0]), group.rsplit("/", 1)[-1]
        if group == "optimizer_weights" and len(lost) < len(paths):
            raise UsageError(f"dropping {len(lost)} of the {len(paths)} optimizer variables "
                             f"(e.g. {example!r}) leaves part of the optimizer state, which "
                             "Keras load_model sets all or none, by position: it would "
                             "discard the rest; drop all of them (roles optimizer and counter) "
                             "or none")
        if group != "optimizer_weights" and layout == "model":
            raise UsageError(f"cannot drop {example!r} (layer {layer!r}) from a full-model "
                             ".h5: Keras load_model sets every layer's weights by position "
                             "and would fail (weight count mismatch); drop only optimizer "
                             "state, or write safetensors or npz")
        if len(lost) < len(paths):
            raise UsageError(f"cannot drop {example!r} without the rest of layer {layer!r}: "
                             "Keras loads a layer's weights by position, all or none; drop "
                             f"all {len(paths)} of them or none")
        remove.add(group)
        if group != "optimizer_weights":
            layers_gone.append(layer)
    attrs = {}
    if layers_gone:
        layer_names = hdf5.chunked_attr(weights_node, "layer_names") or []
        attrs[root] = list_attrs(weights_node.get("attrs", []), "layer_names",
                                 [n for n in layer_names if n not in layers_gone])
    return hdf5.edited(tree, remove, attrs)


def list_attrs(attrs: list, name: str, values: list[str], cset: str = "ascii") -> list:
    """`attrs` with the Keras name list `name` (one attribute, or chunks `name0`, `name1`, ...)
    set to `values` as tf_keras' `save_attributes_to_hdf5_group` writes it: one vlen string
    attribute while it fits ATTR_LIMIT bytes of object header (a VLEN_DESCRIPTOR per string),
    else one fixed-width attribute, or, when the fixed-width array exceeds ATTR_LIMIT bytes, the
    fewest `numpy.array_split` chunks of fixed-width strings that fit; an empty list as an
    empty float64 array. A name longer than ATTR_LIMIT bytes (tf_keras refuses to save one; it
    reads one) goes in vlen chunks. The character set is the replaced attribute's, else
    `cset`."""
    chunk = re.compile(re.escape(name) + r"\d+")
    old = [attr for key, attr in attrs if key == name or chunk.fullmatch(key)]
    kept = [[key, attr] for key, attr in attrs if key != name and not chunk.fullmatch(key)]
    if not values:
        return kept + [[name, hdf5.empty_list_attr()]]
    cset = next((a["type"]["cset"] for a in old if isinstance(a["type"], dict)
                 and "cset" in a["type"]), cset)
    width = max(1, *(len(v.encode("utf-8")) for v in values))
    vlen = {"str": "vlen", "cset": cset}
    if len(values) * max(width, VLEN_DESCRIPTOR) <= ATTR_LIMIT:
        return kept + [[name, {"type": vlen, "shape": [len(values)], "value": list(values)}]]
    per_fixed = ATTR_LIMIT // width
    per = per_fixed or ATTR_LIMIT // VLEN_DESCRIPTOR
    parts = -(-len(values) // per)
    kind = {"str": width, "cset": cset} if per_fixed else vlen
    if parts == 1:
        return kept + [[name, {"type": kind, "shape": [len(values)], "value": list(values)}]]
    return kept + [[f"{name}{i}", {"type": kind, "shape": [len(part)],
                                   "value": [values[j] for j in part]}]
                   for i, part in enumerate(np.array_split(np.arange(len(values)), parts))]


def layer_of(names: list[str]) -> dict[str, str]:
    """The layer group for each canonical weight name: its first component, or the second when
    every name shares one model prefix (Keras 3 paths: `sequential/c1/kernel`)."""
    parts = {n: n.split("/") for n in names}
    firsts = {p[0] for p in parts.values()}
    nested = len(firsts) == 1 and all(len(p) >= 3 for p in parts.values())
    return {n: (p[1] if nested else p[0]) if len(p) > 1 else n for n, p in parts.items()}


# tf.keras loads a layer's weights by position, in creation order; a store from a checkpoint
# lists them by key. The order Keras layers create their variables and sublayers in:
_VARIABLE_RANK = {"kernel": 0, "depthwise_kernel": 0, "pointwise_kernel": 1, "embeddings": 0,
                  "recurrent_kernel": 1, "bias": 2, "depthwise_bias": 2, "gamma": 0, "beta": 1,
                  "moving_mean": 2, "moving_variance": 3}
_SUBLAYER_RANK = {"query": 0, "key": 1, "value": 2, "attention_output": 3}


def keras_order(members: list[tuple[str, Tensor]]) -> list[tuple[str, Tensor]]:
    """A layer's weights in the order Keras creates them (unknown names keep their order)."""
    first: dict[str, int] = {}
    for name, _ in members:
        first.setdefault(name.rsplit("/", 1)[0], len(first))

    def key(item: tuple[str, Tensor]) -> tuple:
        prefix, _, last = item[0].rpartition("/")
        return (_SUBLAYER_RANK.get(prefix.rsplit("/", 1)[-1], 0), first.get(prefix, 0),
                _VARIABLE_RANK.get(last, 0))
    return sorted(members, key=key)


def _layer_groups(store: Store) -> tuple[dict[str, list[tuple[str, Tensor]]],
                                          list[tuple[str, Tensor]]]:
    """The weights by layer group, each in Keras' creation order; the other variables."""
    weights = [(n, t) for n, t in store.items() if t.role == "weight"]
    optimizer = [(n, t) for n, t in store.items() if t.role != "weight"]
    layers = layer_of([n for n, _ in weights])
    groups: dict[str, list[tuple[str, Tensor]]] = {}
    for name, tensor in weights:
        groups.setdefault(layers[name], []).append((name, tensor))
    return {layer: keras_order(members) for layer, members in groups.items()}, optimizer


def _written_order(store: Store) -> list[str]:
    """The order `build_tree` lays the variables out in, which a read gives back."""
    groups, optimizer = _layer_groups(store)
    return [n for members in groups.values() for n, _ in members] + [n for n, _ in optimizer]


def build_tree(store: Store) -> tuple[dict, dict[str, Tensor]]:
    """A tf.keras layout from canonical names: `save_weights` when there are only weights, the
    `model.save` weight groups (no model_config) when optimizer weights come along. Name lists
    longer than an HDF5 attribute holds are split as tf_keras splits them (`list_attrs`)."""
    groups, optimizer = _layer_groups(store)
    tensors: dict[str, Tensor] = {}
    prefix = "model_weights/" if optimizer else ""
    weights_root = {"attrs": list_attrs([[k, hdf5.str_attr(v)]
                                         for k, v in DEFAULT_ROOT_ATTRS.items()],
                                        "layer_names", list(groups), "utf-8"), "children": []}
    for layer, members in groups.items():
        node = {"attrs": list_attrs([], "weight_names", [f"{n}:0" for n, _ in members],
                                    "utf-8"), "children": []}
        for name, tensor in members:
            hdf5.place(node, f"{name}:0", tensor, tensors, f"{prefix}{layer}/")
        weights_root["children"].append([layer, node])
    if not optimizer:
        return weights_root, tensors
    opt = {"attrs": list_attrs([], "weight_names", [f"{n}:0" for n, _ in optimizer], "utf-8"),
           "children": []}
    for name, tensor in optimizer:
        hdf5.place(opt, f"{name}:0", tensor, tensors, "optimizer_weights/")
    root = {"attrs": [[k, hdf5.str_attr(v)] for k, v in DEFAULT_ROOT_ATTRS.items()],
            "children": [["model_weights", weights_root], ["optimizer_weights", opt]]}
    return root, tensors


FORMAT = Format(
    name=NAME, description="Keras HDF5: tf.keras model.save / save_weights, Keras 3 legacy .h5",
    sniff=sniff, read=read, plan=plan, write=write,
    suffixes=(".h5", ".hdf5"), aliases=("h5", "hdf5"), git_patterns=("*.h5",),
    namespace=NAMESPACE,
    structure="the keras-h5 file structure (model_config, training_config, attributes)",
    templates=("keras-h5",),
    extract=extract,
)
