"""The object graph of a TF2 checkpoint (`_CHECKPOINTABLE_OBJECT_GRAPH`, a TrackableObjectGraph)
and what TensorFlow's keys say about variables without one.

A TF2 checkpoint stores, next to the tensors, a scalar string tensor holding the serialized
`TrackableObjectGraph` (tensorflow/tensorflow `tensorflow/core/protobuf/trackable_object_graph.proto`):
nodes with children (node id, local name), attributes (name, full_name, checkpoint_key) and slot
variables (original variable node id, slot name, slot variable node id). TensorFlow restores
through it; weightkit reads the full names (the variables' own names), which keys are
optimizer slots, and the order objects were tracked in, and keeps the bytes to write back.

A variable's checkpoint key is its shortest object path from the root, ties broken by child
order (`_breadth_first_traversal`, tensorflow/tensorflow `tensorflow/python/checkpoint/
graph_view.py`). A Keras 3 optimizer lists the variables it trains (`_trainable_variables/N`), so
in `tf.train.Checkpoint(model=model, optimizer=opt)` the model's trainable weights are keyed
`optimizer/_trainable_variables/N` (and under a compiled model, `model/optimizer/...`); the
path through the model (`model/_operations/1/_kernel`) is what names and selects them here.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from . import protowire as pw
from .errors import CorruptFileError

GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"

# Roles of variables that are not model weights, by the last component of their name.
_COUNTERS = frozenset({"save_counter", "iter", "iteration", "iterations", "_iterations",
                       "global_step"})
_TF1_SLOTS = re.compile(r"(^|/)(beta1_power|beta2_power)$|/(Adam|Adam_1|Momentum|RMSProp|RMSProp_1|"
                        r"Adagrad|Adadelta|Adadelta_1|Ftrl|Ftrl_1|Nadam|Nadam_1|Adamax|Adamax_1)$")
_TF1_SLOT_NAMES = frozenset(re.findall(r"\w+", _TF1_SLOTS.pattern))  # (the search only for these)
# Keras metric state: tf_keras SavedModels keep it under `keras_api/metrics/N/`.
_METRICS = re.compile(r"(^|/)keras_api/metrics/\d+/")


def key_name(key: str) -> str:
    """A checkpoint key without TF2's `/.ATTRIBUTES/VARIABLE_VALUE` suffix."""
    return key[:-len(VALUE_SUFFIX)] if key.endswith(VALUE_SUFFIX) else key


def role(key: str, full_name: str, slot: bool, in_optimizer: bool = False) -> str:
    """The role of the variable under `key`: `optimizer` (a slot, by the graph or by TF1's
    slot names; a variable the graph reaches only through an optimizer, `Graph.in_optimizer`;
    without a graph, a key under `optimizer/`), `counter` (iterations, save_counter,
    global_step), `metric` (Keras metric state), else `weight`."""
    name = key_name(key)
    parts = name.split("/")
    if slot or "/.OPTIMIZER_SLOT/" in key or (
            parts[-1] in _TF1_SLOT_NAMES and _TF1_SLOTS.search(name)):
        return "optimizer"
    if parts[-1] in _COUNTERS or full_name.rpartition("/")[2] in _COUNTERS:
        return "counter"
    if in_optimizer or (parts[0] == "optimizer" and parts[1:2] != ["_trainable_variables"]):
        return "optimizer"
    if "keras_api/metrics/" in name and _METRICS.search(name):
        return "metric"
    return "weight"


def _optimizer(name: str, node: dict) -> bool:
    """Whether the edge `name` leads to an optimizer: one named `optimizer` (Checkpoint's usual
    argument, the attribute Keras models track it as), one listing slot variables (TF and
    tf_keras OptimizerV2, trackable_object_graph.proto), or one tracking `_iterations` (Keras 3
    `BaseOptimizer`, tf_keras `Optimizer`: keras/src/optimizers/base_optimizer.py)."""
    return (name == "optimizer" or bool(node.get("slot_variables"))
            or any(c.get("local_name") == "_iterations" for c in node.get("children", [])))


def _object_paths(nodes: list[dict], defer: bool) -> tuple[dict[int, str], set[int]]:
    """({node id: its object path}, {ids of nodes reached only through an optimizer}) by
    TensorFlow's breadth-first walk (children in order, the first path wins); with `defer`,
    an edge into an optimizer is followed only after everything reachable without one."""
    paths: dict[int, str] = {}
    in_optimizer: set[int] = set()
    level: list[tuple[int, str]] = [(0, "")] if nodes else []
    deferred: list[tuple[int, str]] = []
    through_optimizer = False
    while level:
        following: list[tuple[int, str]] = []
        for node_id, path in level:
            if node_id in paths:
                continue
            paths[node_id] = path
            if through_optimizer:
                in_optimizer.add(node_id)
            for child in nodes[node_id].get("children", []):
                child_id, name = child.get("node_id", 0), child.get("local_name", "")
                if not 0 <= child_id < len(nodes) or child_id in paths:
                    continue
                step = (child_id, f"{path}/{name}".lstrip("/"))
                later = defer and not through_optimizer and _optimizer(name, nodes[child_id])
                (deferred if later else following).append(step)
        level = following
        if not level and deferred:
            level, deferred, through_optimizer = deferred, [], True
    return paths, in_optimizer


def _model_paths(nodes: list[dict]) -> tuple[dict[str, str], set[str]]:
    """({checkpoint key: its object path avoiding optimizers}, where TensorFlow's path went
    through one; {keys of variables reached only through an optimizer})."""
    ours, in_optimizer = _object_paths(nodes, defer=True)
    theirs, _ = _object_paths(nodes, defer=False)
    paths: dict[str, str] = {}
    keys: set[str] = set()
    for node_id, node in enumerate(nodes):
        for attribute in node.get("attributes", []):
            key = attribute.get("checkpoint_key", "")
            if node_id in in_optimizer:
                keys.add(key)
            elif ours.get(node_id, "") != theirs.get(node_id, ""):
                paths[key] = key_name(f"{ours[node_id]}/.ATTRIBUTES/{attribute.get('name', '')}")
    return paths, keys


class Graph(NamedTuple):
    """What the object graph tells about the keys of a TF2 checkpoint."""
    data: bytes | None  # the serialized graph, kept to write back
    full_names: dict[str, str]  # checkpoint key -> full_name
    slots: set[str]  # keys of optimizer slot variables
    rank: dict[str, int]  # checkpoint key -> position in a depth-first walk of the graph
    node_of: dict[str, int]  # checkpoint key -> id of the node holding it
    paths: dict[str, str]  # checkpoint key -> object path through the model, where not the key
    in_optimizer: set[str]  # keys of variables reached only through an optimizer


EMPTY = Graph(None, {}, set(), {}, {}, {}, set())


def parse(data: bytes, where: str | None = None) -> Graph:
    """The graph serialized in `data`; CorruptFileError (naming `where`) if it is not one."""
    try:
        graph = pw.decode(data, pw.OBJECT_GRAPH)
    except CorruptFileError as exc:
        raise CorruptFileError(f"object graph: {exc.message}", where) from None
    nodes = graph.get("nodes", [])
    full_names: dict[str, str] = {}
    slots: set[str] = set()
    node_of: dict[str, int] = {}
    slot_ids = {ref.get("slot_variable_node_id", 0)
                for node in nodes for ref in node.get("slot_variables", [])}
    for node_id, node in enumerate(nodes):
        for attribute in node.get("attributes", []):
            key = attribute.get("checkpoint_key", "")
            full_names[key] = attribute.get("full_name", "")
            node_of[key] = node_id
            if node_id in slot_ids:
                slots.add(key)
    return Graph(data, full_names, slots, _walk(nodes), node_of, *_model_paths(nodes))


def _walk(nodes: list[dict]) -> dict[str, int]:
    """Checkpoint key -> rank in a depth-first walk from the root: a node's attributes, then
    its children in declared order, then the slot variables it lists (an optimizer's), each
    node once. That is the order the objects were created and tracked in."""
    rank: dict[str, int] = {}
    seen: set[int] = set()
    stack = [0] if nodes else []
    while stack:
        node_id = stack.pop()
        if node_id in seen or not 0 <= node_id < len(nodes):
            continue
        seen.add(node_id)
        node = nodes[node_id]
        for attribute in node.get("attributes", []):
            rank.setdefault(attribute.get("checkpoint_key", ""), len(rank))
        after = [c.get("node_id", 0) for c in node.get("children", [])]
        after += [s.get("slot_variable_node_id", 0) for s in node.get("slot_variables", [])]
        stack += reversed(after)
    return rank
