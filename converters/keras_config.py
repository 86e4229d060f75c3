"""A Keras model as plain data, shared by the formats that hold one: its config (never
deserialized), and which variables belong to which of its top-level layers, in the order Keras
loads them. Formats never import each other; this module reads the Keras model another format
recorded in `store.meta` and builds what a writer needs from it:

- `model_of(store)`: the model a tf.keras full-model `.h5` (`meta["keras_h5"]`) or a TF.js
  layers model (`meta["tfjs"]`) records, or None.
- `tfjs_layers_model(model, store)`: the `model.json` the TF.js converter writes for it
  (tensorflow/tfjs `tfjs-converter/python/tensorflowjs/converters/keras_h5_conversion.py`,
  `h5_merged_saved_model_to_tfjs_format` and `write_artifacts`).
- `tfjs_unloadable(store)`: why TF.js cannot load the Keras model `store` records as a layers
  model (a Keras 3 model, a `.keras` archive), or None.
- `full_model_tree(model, store)`: the HDF5 tree of a tf.keras `model.save('m.h5')` holding it,
  as `tf_keras.models.load_model` reads it (tf_keras `src/saving/legacy/hdf5_format.py`,
  `load_model_from_hdf5`, `load_weights_from_hdf5_group`): root attributes `model_config`
  (JSON text), `training_config`, `keras_version`, `backend`; a group `model_weights` with
  attribute `layer_names` (the model's layers in `model.layers` order) and per layer a group
  with attribute `weight_names` and the datasets, matched by position to `layer.weights`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import carry, hdf5
from .errors import CorruptFileError, UsageError
from .store import Store, Tensor

TFJS_FORMAT = "layers-model"
# tensorflowjs keras_h5_conversion._CLASS_NAME_MAP: class names TF.js knows by another name.
CLASS_NAMES = {"BatchNormalizationV1": "BatchNormalization", "UnifiedGRU": "GRU",
               "UnifiedLSTM": "LSTM"}
MAX_DEPTH = 64


@dataclass
class KerasModel:
    """A Keras model: `model_config` is `{"class_name", "config"}` as Keras serializes it;
    `layers` the top-level layer groups with their weights as (Keras weight name without
    `:0`, store name), in the order Keras sets them."""
    source: str                              # the format that recorded it
    namespaces: tuple[str, ...]              # the store.meta namespaces it was read from
    model_config: dict
    training_config: Any = None
    keras_version: str | None = None
    backend: str | None = None
    layers: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)


def model_of(store: Store) -> KerasModel | None:
    """The Keras model recorded in `store.meta`, or None (also when what is recorded does not
    account for the store's weights)."""
    if "keras_h5" in store.meta:
        return _from_keras_h5(store)
    if "tfjs" in store.meta:
        return _from_tfjs(store)
    return None


def _attr_json(attrs: dict, name: str) -> Any:
    value = attrs.get(name)
    if not isinstance(value, str):
        return None
    try:
        return carry.parse_json(value, None, name)
    except CorruptFileError:
        return None


def _from_keras_h5(store: Store) -> KerasModel | None:
    recorded = store.meta["keras_h5"]
    if not isinstance(recorded, dict) or recorded.get("layout") != "model":
        return None
    tree = recorded.get("tree")
    attrs = hdf5.attrs_dict(tree) if isinstance(tree, dict) else {}
    config = _attr_json(attrs, "model_config")
    weights_node = hdf5.find(tree, "model_weights") if isinstance(tree, dict) else None
    if not isinstance(config, dict) or weights_node is None:
        return None
    by_key = {t.meta.get("key"): n for n, t in store.items()}
    layers = []
    for layer, node in weights_node.get("children", []):
        names = hdf5.chunked_attr(node, "weight_names") or []
        found = [(_without_slot(w), by_key.get(f"model_weights/{layer}/{w}")) for w in names]
        if any(n is None for _, n in found):
            return None  # a weight an edit dropped: the model no longer holds together
        layers.append((layer, found))
    return KerasModel("keras-h5", ("keras_h5",), config, _attr_json(attrs, "training_config"),
                      _text(attrs.get("keras_version")), _text(attrs.get("backend")), layers)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _without_slot(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


def _from_tfjs(store: Store) -> KerasModel | None:
    recorded = store.meta["tfjs"]
    text = recorded.get("model_json") if isinstance(recorded, dict) else None
    if not isinstance(text, str):
        return None
    doc = carry.parse_json(text, None, "the recorded model.json")
    topology = doc.get("modelTopology") if isinstance(doc, dict) else None
    if doc.get("format", TFJS_FORMAT) != TFJS_FORMAT or not isinstance(topology, dict):
        return None
    if "model_config" in topology:  # the converter: {keras_version, backend, model_config, ...}
        config, training = topology["model_config"], topology.get("training_config")
    else:                            # TF.js's own save: {class_name, config, keras_version, ...}
        config, training = {k: topology[k] for k in ("class_name", "config")
                            if k in topology}, None
    if not (isinstance(config, dict) and isinstance(config.get("class_name"), str)):
        return None
    layers = assign(config, list(store))
    if layers is None:
        return None
    return KerasModel("tfjs", ("tfjs",), config, training, _text(topology.get("keras_version")),
                      _text(topology.get("backend")), layers)


# ---------------------------------------------------------------------------------------------
# layers of a config

def top_layers(config: dict) -> list[tuple[str, dict]] | None:
    """(name, entry) of each layer in `model.layers` order: a Sequential's config layers
    without a leading InputLayer, a Functional's config layers. None if the config is not a
    model Keras 2 (or TF.js) describes this way."""
    inner = config.get("config")
    entries = inner.get("layers") if isinstance(inner, dict) else inner
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return None
    if config.get("class_name") == "Sequential" and entries \
            and entries[0].get("class_name") == "InputLayer":
        entries = entries[1:]
    out = []
    for entry in entries:
        name = _layer_name(entry)
        if not isinstance(name, str) or not name:
            return None
        out.append((name, entry))
    return out


def _layer_name(entry: dict) -> Any:
    inner = entry.get("config")
    return inner.get("name") if isinstance(inner, dict) and "name" in inner \
        else entry.get("name")


def _leaves(entry: dict, depth: int = 0) -> list[str] | None:
    """The names a layer's weights start with: its own, or a nested model's layers'."""
    if depth > MAX_DEPTH:
        return None
    inner = entry.get("config")
    if isinstance(inner, dict) and isinstance(inner.get("layers"), list):
        nested = top_layers(entry)
        if nested is None:
            return None
        out = [_layer_name(entry)]
        for _, sub in nested:
            more = _leaves(sub, depth + 1)
            if more is None:
                return None
            out += more
        return out
    return [_layer_name(entry)]


def assign(config: dict, names: list[str]) -> list[tuple[str, list[tuple[str, str]]]] | None:
    """The top-level layers of `config` with the weights `names` (Keras names without `:0`,
    e.g. `lstm/lstm_cell/kernel`) that belong to each, in the order of `names` (a layer's
    trainable weights come before its non-trainable ones in both the converter's and TF.js's
    manifests, as in `layer.weights`). A weight belongs to the layer whose name (or, for a
    nested model, one of whose layers' names) is the longest leading part of its name. None if
    a weight belongs to no layer."""
    layers = top_layers(config)
    if layers is None:
        return None
    owner: dict[str, str] = {}
    for name, entry in layers:
        leaves = _leaves(entry)
        if leaves is None:
            return None
        for leaf in leaves:
            if isinstance(leaf, str):
                owner.setdefault(leaf, name)
    members: dict[str, list[tuple[str, str]]] = {name: [] for name, _ in layers}
    for weight in names:
        parts = weight.split("/")
        for cut in range(len(parts) - 1, 0, -1):
            prefix = "/".join(parts[:cut])
            if prefix in owner:
                members[owner[prefix]].append((weight, weight))
                break
        else:
            return None
    return [(name, members[name]) for name, _ in layers]


def translate_class_names(value: Any, depth: int = 0) -> Any:
    """A copy of a config with the class names TF.js knows by another name replaced
    (`keras_h5_conversion.translate_class_names`)."""
    if depth > 4 * MAX_DEPTH:
        raise UsageError("the Keras config is nested too deeply")
    if isinstance(value, dict):
        return {k: (CLASS_NAMES.get(v, v) if k == "class_name" and isinstance(v, str)
                    else translate_class_names(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list):
        return [translate_class_names(v, depth + 1) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# TF.js layers model

def tfjs_layers_model(model: KerasModel, store: Store
                      ) -> tuple[dict, list[tuple[str, str]], list[str]]:
    """(model.json without its manifest, [(TF.js weight name, store name)] in the converter's
    order, store names it leaves out). The converter writes the layer groups of the `.h5` in
    HDF5's order (by name), each layer's weights in `weight_names` order, named without `:0`;
    optimizer state stays behind."""
    from .. import __version__
    topology: dict[str, Any] = {"keras_version": model.keras_version, "backend": model.backend,
                                "model_config": translate_class_names(model.model_config)}
    if model.training_config is not None:
        topology["training_config"] = model.training_config
    doc = {"format": TFJS_FORMAT,
           "generatedBy": f"keras v{model.keras_version}" if model.keras_version else None,
           "convertedBy": f"weightkit {__version__}",
           "modelTopology": topology}
    weights = [(keras_name, name) for _, members in model.layers
               for keras_name, name in members]
    used = {name for _, name in weights}
    return doc, weights, [n for n in store if n not in used]


def _archive_version(store: Store) -> tuple[bool, str | None]:
    """(whether `store` records a `.keras` archive with a config.json, the Keras version its
    metadata.json names), from `meta["keras"]` as the keras format keeps it."""
    archive = store.meta.get("keras")
    files = archive.get("files") if isinstance(archive, dict) else None
    if not (isinstance(files, dict) and "config.json" in files):
        return False, None
    kept = files.get("metadata.json")
    text = kept.get("text") if isinstance(kept, dict) else None
    try:
        doc = carry.parse_json(text, None, "metadata.json") if isinstance(text, str) else None
    except CorruptFileError:
        doc = None
    version = doc.get("keras_version") if isinstance(doc, dict) else None
    return True, version if isinstance(version, str) else None


def _major(version: str | None) -> int | None:
    head = version.split(".", 1)[0] if version else ""
    return int(head) if head.isdigit() else None


def tfjs_unloadable(store: Store) -> tuple[str, str] | None:
    """(the model, why) when TF.js cannot load the Keras model `store` records as a layers
    model, or None (no model, or one TF.js loads: a tf.keras full-model `.h5`).

    TF.js layers (@tensorflow/tfjs-layers 4.22, the last release) reads Keras 2 configs and
    matches weights to layers by name (`d1/kernel`). A Keras 3 config is not one: its
    InputLayer has `batch_shape`, not `batch_input_shape` ("An InputLayer should be passed
    either a `batchInputShape` or an `inputShape`"), and its `inbound_nodes` are
    `{"args": [{"class_name": "__keras_tensor__", ...}]}` ("Corrupted configuration, expected
    array for nodeData"). The TF.js converter (tensorflowjs 4.22) copies that config as it is:
    for a `.keras` archive (`--input_format keras_keras`), `keras_h5_conversion.py`
    `h5_v3_merged_saved_model_to_tfjs_format` (lines 253-292) only drops the keys `module`,
    `registered_name` and `date_saved`; for a Keras 3 legacy `.h5` (`--input_format keras`),
    `h5_merged_saved_model_to_tfjs_format` copies `model_config` (`_check_version`, line 226,
    only prints that the version is not 2). For any `.keras` archive, Keras 2 or 3, it names
    the weights by their HDF5 path (`layers/dense/vars/0`,
    `_convert_v3_group_structure_to_weights`, lines 294-307), which no TF.js layer owns
    ("Provided weight data has no target variable"). tests/test_tfjs_keras3.py runs the
    converter and TF.js to show it."""
    archive, version = _archive_version(store)
    if not archive:
        model = model_of(store) if "keras_h5" in store.meta else None
        version = model.keras_version if model is not None else None
    major = _major(version)
    if archive and major is not None and major < 3:
        return (f"a .keras archive (keras {version})", "the TF.js converter names its weights "
                "by position ('layers/dense/vars/0'), which TF.js cannot match to its layers")
    if archive or (major is not None and major >= 3):
        return (f"a Keras 3 model (keras {version})" if version else "a Keras 3 model",
                "TF.js 4.22 reads tf.keras (Keras 2) configs only, and fails on what the TF.js "
                "converter writes for Keras 3 too")
    return None


# ---------------------------------------------------------------------------------------------
# tf.keras full-model .h5

def full_model_tree(model: KerasModel, store: Store) -> tuple[dict, dict[str, Tensor]]:
    """The tree of a tf.keras full-model `.h5` holding `model` with the store's tensors, and
    the tensor of each dataset path. Quantized tensors are refused (Keras would load the
    stored integers as weights): dequantize them first."""
    keras_version = model.keras_version or "2.21.0"
    backend = model.backend or "tensorflow"
    root_attrs = [["backend", hdf5.str_attr(backend)],
                  ["keras_version", hdf5.str_attr(keras_version)],
                  ["model_config", hdf5.str_attr(json.dumps(model.model_config))]]
    if model.training_config is not None:
        root_attrs.append(["training_config", hdf5.str_attr(json.dumps(model.training_config))])
    weights_node: dict[str, Any] = {"attrs": [
        ["backend", hdf5.str_attr(backend)], ["keras_version", hdf5.str_attr(keras_version)],
        ["layer_names", hdf5.str_attr([name for name, _ in model.layers])
         if model.layers else hdf5.empty_list_attr()]], "children": []}
    tensors: dict[str, Tensor] = {}
    for layer, members in model.layers:
        names = [f"{keras_name}:0" for keras_name, _ in members]
        node: dict[str, Any] = {"attrs": [["weight_names", hdf5.str_attr(names) if names
                                           else hdf5.empty_list_attr()]], "children": []}
        for weight_name, (_, name) in zip(names, members):
            tensor = store[name]
            quantization = (tensor.meta.get("tfjs") or {}).get("quantization") \
                if isinstance(tensor.meta.get("tfjs"), dict) else None
            if quantization is not None and tensor.dtype_name in ("uint8", "uint16"):
                raise UsageError(f"{name!r} is quantized ({tensor.dtype_name}); Keras would "
                                 "load the stored integers: convert with --dequantize")
            hdf5.place(node, weight_name, tensor, tensors, f"model_weights/{layer}/")
        weights_node["children"].append([layer, node])
    return {"attrs": root_attrs, "children": [["model_weights", weights_node]]}, tensors
