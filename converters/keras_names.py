"""Keras' own names for the variables of a Keras 3 weights tree, derived as plain data.

Shared by the Keras 3 formats (`.weights.h5`, its sharded form, `.keras`); nothing here imports
Keras, and a `config.json` is read as JSON, never deserialized.

A Keras 3 weights tree (keras-team/keras `keras/src/saving/saving_lib.py`, `_save_state`)
stores each layer's own variables as `<group>/vars/<i>` (the layer's `name` as an attribute of
`vars`), a model's layers under `layers/<snake_case class>[_N]`, sublayers under the attribute
that holds them (`layers/lstm/cell`, `layers/multi_head_attention/query_dense`), and the
optimizer's variables under `optimizer/vars/<i>`. Keras itself calls these variables by their
`variable.path` (`d1/kernel`, `lstm/lstm_cell/recurrent_kernel`, `mha/query/kernel`,
`adam/d1_kernel_momentum`; `../shared/docs/KERAS-NAMES.md` §1-§4).

Canonical names (`name_tree`):
- a layer's variable: the scope of the layer, then the variable's name from `LAYERS` (the
  table of built-in layers: for each class, its variables in `vars/<i>` order under the flags
  of its config, `use_bias`, `center`, `scale`, quantization). The scope is the chain of layer
  names from the model down (`encoder/enc_dense/kernel`, `bi/forward_gru/gru_cell/kernel`).
  As in Keras, a top-level Functional model's name is left out and a Sequential or subclassed
  model's name is kept (`sequential/dense/kernel`, `net/body/kernel`); unlike Keras, a nested
  Functional model's name is kept too (Keras builds its layers before the model exists, so
  `variable.path` says `enc_dense/kernel`, and two nested models holding a layer `head` give
  the same path twice);
- a layer the table does not know, or whose variables the file does not tell apart (a bare
  `.weights.h5` with a 3-variable BatchNormalization: gamma or beta?), keeps the positional
  name `<scope>/<i>`;
- the optimizer's variables: `<optimizer>/iteration`, `<optimizer>/learning_rate`, then the
  slots Keras names `<optimizer>/<variable.path with / as _>_<slot>` (`OPTIMIZERS`; the slots
  follow `model.trainable_variables`), when the optimizer's class (config.json, or its default
  name `adam`, `rm_sprop`, ...) and the shapes of its variables agree with exactly one plan;
  else `optimizer/<i>`. Without a config, `use_ema` and gradient accumulation are assumed off
  when a plan without them fits (their slots are shaped like a momentum's).
The names weightkit gave before (`d1/0`, `optimizer/3`) are kept as aliases.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import hdf5
from .names import natural_key, number_key

MAX_MODEL_DEPTH = 64             # models nested in models, as far as the config is followed
MAX_SEARCH_STEPS = 20_000        # layer orders tried to place a bare file's optimizer slots
_OPERATIONS = "keras.src.ops."   # config entries of a Functional's non-layer operations
_VAR = re.compile(r"^(?:(.*)/)?vars/(\d+)$")
_FLOAT = ("float16", "float32", "float64", "bfloat16", "float8_e4m3fn", "float8_e5m2")
_INT8 = ("int8", "uint8")


def to_snake_case(name: str) -> str:
    """Keras' `naming.to_snake_case`: the group name of a layer class (`PReLU` -> `p_re_lu`)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


# -- the table of built-in layers -----------------------------------------------------------------
# A variable: (name, trainable, kind). Kinds check what the file holds, so that a bare file
# without config picks a variant only when exactly one fits: "w" a float kernel (2+ dims),
# "b" a float of 1+ dims, "f" any float, "q" an int8 quantized kernel, "i" integers, "*" any.
Var = tuple[str, bool, str]
Variant = tuple[Var, ...]


def _flag(config: Mapping[str, Any] | None, name: str, default: bool = True) -> bool | None:
    """A boolean flag of a layer config: None without a config (every value possible)."""
    if config is None:
        return None
    value = config.get(name, default)
    return value if isinstance(value, bool) else bool(value) if value is not None else default


def _choices(flag: bool | None) -> tuple[bool, ...]:
    return (True, False) if flag is None else (flag,)


def quantization_mode(config: Mapping[str, Any] | None) -> str | None:
    """The quantization mode of a layer config (`int8`, `int4`, `float8`, ...), from its dtype
    policy (`QuantizedDTypePolicy` `{"mode": "int8"}`, or a name `int8_from_float32`)."""
    policy = config.get("dtype") if isinstance(config, Mapping) else None
    if isinstance(policy, Mapping) and "Quantized" in str(policy.get("class_name", "")):
        inner = policy.get("config")
        if isinstance(inner, Mapping):
            if isinstance(inner.get("mode"), str):
                return inner["mode"]
            if isinstance(inner.get("name"), str) and "_from_" in inner["name"]:
                return inner["name"].split("_from_")[0]
        return "unknown"
    if isinstance(policy, str) and "_from_" in policy:
        return policy.split("_from_")[0]
    return None


def _kernel_layer(kernel: str, bias_flag: str = "use_bias", *, quantized: bool = True,
                  scale: str = "kernel_scale") -> Callable[[Mapping | None], list[Variant]]:
    """Dense, EinsumDense, Embedding: `variable_serialization_spec` of
    keras/src/layers/core/dense.py (einsum_dense.py, embedding.py): the kernel, the bias,
    then what each quantization mode adds."""
    def variants(config: Mapping | None) -> list[Variant]:
        if bias_flag == "bias_axes":
            has_bias = None if config is None else bool(config.get("bias_axes"))
        elif bias_flag:
            has_bias = _flag(config, bias_flag)
        else:
            has_bias = False
        mode = quantization_mode(config) if config is not None else None
        modes = [None, "int8", "int4", "float8"] if config is None else [mode]
        out = []
        for m in modes:
            for bias in _choices(has_bias):
                b: Variant = (("bias", True, "b"),) if bias else ()
                if m is None:
                    out.append(((kernel, True, "w"),) + b)
                elif not quantized:
                    continue
                elif m == "int8":
                    out.append(((kernel, False, "q"),) + b + ((scale, False, "f"),))
                elif m == "int4":
                    base = ((kernel, False, "q"),) + b + ((scale, False, "f"),)
                    out.append(base)
                    out.append(base + ((f"{kernel}_zero", False, "*"), ("g_idx", False, "*")))
                elif m == "float8" and kernel == "kernel":
                    out.append(((kernel, True, "w"),) + b + tuple(
                        (n, False, "*") for n in (
                            "inputs_scale", "inputs_amax_history", "kernel_scale",
                            "kernel_amax_history", "outputs_grad_scale",
                            "outputs_grad_amax_history")))
        return out
    return variants


def _fixed(*names: str, bias: str | None = "use_bias", trainable: bool = True
           ) -> Callable[[Mapping | None], list[Variant]]:
    """Variables `names` (kernels first), then `bias` unless the flag says no."""
    def variants(config: Mapping | None) -> list[Variant]:
        head = tuple((n, trainable, "w" if "kernel" in n else "f") for n in names)
        if bias is None:
            return [head]
        return [head + ((("bias", trainable, "b"),) if b else ())
                for b in _choices(_flag(config, bias))]
    return variants


def _normalization(*, gamma: str = "gamma", beta: str = "beta", stats: bool = False,
                   rms: bool = False) -> Callable[[Mapping | None], list[Variant]]:
    """BatchNormalization, LayerNormalization, GroupNormalization: gamma unless scale=False,
    beta unless center=False (LayerNormalization rms_scaling: gamma only), then the moving
    statistics (non-trainable)."""
    def variants(config: Mapping | None) -> list[Variant]:
        out = []
        rms_only = _flag(config, "rms_scaling", False) if rms else False
        for scale in _choices(_flag(config, "scale")):
            for center in _choices(_flag(config, "center")):
                v: Variant = ()
                if scale:
                    v += ((gamma, True, "f"),)
                if center and not rms_only:
                    v += ((beta, True, "f"),)
                if stats:
                    v += (("moving_mean", False, "f"), ("moving_variance", False, "f"))
                out.append(v)
        return out
    return variants


def _normalization_layer(config: Mapping | None) -> list[Variant]:
    """keras.layers.Normalization: mean, variance, count, unless mean and variance are given."""
    stats = (("mean", False, "f"), ("variance", False, "f"), ("count", False, "*"))
    if config is None:
        return [stats, ()]
    given = config.get("mean") is not None and config.get("variance") is not None
    return [()] if given else [stats]


_NONE: Callable[[Mapping | None], list[Variant]] = lambda config: [()]

LAYERS: dict[str, Callable[[Mapping | None], list[Variant]]] = {
    "Dense": _kernel_layer("kernel"),
    "EinsumDense": _kernel_layer("kernel", "bias_axes"),
    "Embedding": _kernel_layer("embeddings", "", scale="embeddings_scale"),
    **{f"Conv{d}D": _fixed("kernel") for d in (1, 2, 3)},
    **{f"Conv{d}DTranspose": _fixed("kernel") for d in (1, 2, 3)},
    **{f"DepthwiseConv{d}D": _fixed("kernel") for d in (1, 2)},
    **{f"SeparableConv{d}D": _fixed("depthwise_kernel", "pointwise_kernel") for d in (1, 2)},
    "BatchNormalization": _normalization(stats=True),
    "LayerNormalization": _normalization(rms=True),
    "GroupNormalization": _normalization(),
    "RMSNormalization": _fixed("scale", bias=None),
    "PReLU": _fixed("alpha", bias=None),
    "Normalization": _normalization_layer,
    "LSTMCell": _fixed("kernel", "recurrent_kernel"),
    "GRUCell": _fixed("kernel", "recurrent_kernel"),
    "SimpleRNNCell": _fixed("kernel", "recurrent_kernel"),
    "ConvLSTMCell": _fixed("kernel", "recurrent_kernel"),
    # Layers whose variables live in sublayers (SUBLAYERS); their own `vars` are empty.
    **{name: _NONE for name in (
        "LSTM", "GRU", "SimpleRNN", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
        "Bidirectional", "TimeDistributed", "MultiHeadAttention", "GroupedQueryAttention",
        "InputLayer", "Functional", "Sequential")},
}
# Weightless layers: any variable in their group makes them unknown, not misnamed.
_CELLS = {"LSTM": "LSTMCell", "GRU": "GRUCell", "SimpleRNN": "SimpleRNNCell",
          "ConvLSTM1D": "ConvLSTMCell", "ConvLSTM2D": "ConvLSTMCell", "ConvLSTM3D": "ConvLSTMCell"}
_PROJECTIONS = {"query_dense": "query", "key_dense": "key", "value_dense": "value",
                "output_dense": "attention_output"}
# Exported aliases whose group is named after the class (`GroupQueryAttention`).
CLASS_ALIASES = {"GroupQueryAttention": "GroupedQueryAttention"}
_BY_GROUP = {to_snake_case(c): c for c in [*LAYERS, "LSTMCell", "GRUCell", "SimpleRNNCell"]}
# Keras 3 `SUBLAYER_ORDER`: sublayers saved by attribute name, in the order they are created.
SUBLAYER_ORDER = (
    ("query_dense", "key_dense", "_gate_dense", "value_dense", "output_dense"),
    ("_query_dense", "_key_dense", "_gate_dense", "_value_dense", "_output_dense"),
    ("forward_layer", "backward_layer"),
)
_OPTIONAL_SUBLAYERS = {"_gate_dense"}  # only with use_gate=True


@dataclass
class Child:
    """What a parent layer says about a sublayer saved under one of its attributes."""
    cls: str | None
    config: Mapping[str, Any] | None
    name: str | None


def sublayer(parent_cls: str | None, parent: Mapping[str, Any] | None, parent_name: str,
             attribute: str) -> Child | None:
    """The class, config and default name of the sublayer a built-in layer keeps under
    `attribute` (keras/src/layers/rnn/*.py, rnn/bidirectional.py, rnn/time_distributed.py,
    attention/multi_head_attention.py, grouped_query_attention.py)."""
    cls = CLASS_ALIASES.get(parent_cls or "", parent_cls)
    if cls in _CELLS and attribute == "cell":
        return Child(_CELLS[cls], parent, to_snake_case(_CELLS[cls]))
    if cls == "RNN" and attribute == "cell":
        inner = parent.get("cell") if parent else None
        return _entry_child(inner, None)
    if cls in ("MultiHeadAttention", "GroupedQueryAttention"):
        base = attribute.lstrip("_")
        if base in _PROJECTIONS:
            use_bias = None if parent is None else bool(parent.get("use_bias", True))
            config = None if use_bias is None else {"bias_axes": "x" if use_bias else None}
            return Child("EinsumDense", config, _PROJECTIONS[base])
        if base == "gate_dense":
            use_bias = None if parent is None else bool(parent.get("use_bias", True))
            return Child("EinsumDense", None if use_bias is None
                         else {"bias_axes": "x" if use_bias else None}, "gate")
    if cls == "Bidirectional" and attribute in ("forward_layer", "backward_layer"):
        inner = parent.get("layer") if parent else None
        if attribute == "backward_layer" and parent and isinstance(parent.get("backward_layer"),
                                                                  Mapping):
            inner = parent["backward_layer"]
        child = _entry_child(inner, None)
        direction = attribute.split("_")[0]
        if child.name:
            child.name = f"{direction}_{child.name}"
        return child
    if cls == "TimeDistributed" and attribute == "layer":
        return _entry_child(parent.get("layer") if parent else None, None)
    return None


def _entry_child(entry: Any, name: str | None) -> Child:
    if not isinstance(entry, Mapping):
        return Child(None, None, name)
    inner = entry.get("config")
    inner = inner if isinstance(inner, Mapping) else None
    found = inner.get("name") if inner else entry.get("name")
    cls = entry.get("class_name")
    return Child(cls if isinstance(cls, str) else None, inner,
                 found if isinstance(found, str) else name)


def layer_variables(cls: str | None, config: Mapping[str, Any] | None,
                    held: list[tuple[tuple[int, ...], str]]) -> Variant | None:
    """The variables (name, trainable, kind) of a layer of class `cls` holding `held` (shape,
    dtype name of `vars/0`, `vars/1`, ...), or None when the table does not know the class or
    several variants fit (a config narrows them down to the one its flags give)."""
    table = LAYERS.get(CLASS_ALIASES.get(cls or "", cls or ""))
    if table is None:
        return None
    fitting = {tuple(v) for v in table(config) if _fits(v, held)}
    names = {tuple(n for n, _, _ in v) for v in fitting}
    if len(names) != 1:
        return None
    return sorted(fitting)[0]  # variants of one naming (int8, int4 without sub-channels)


def variable_order(names: Iterable[str]) -> tuple[str, ...] | None:
    """The order Keras creates a layer's variables in, given their names (`{"bias",
    "kernel"}` -> `("kernel", "bias")`): the one order of every variant in `LAYERS` holding
    exactly these names, or None when none does or variants disagree."""
    return _order_of(frozenset(names))


@functools.lru_cache(maxsize=256)
def _order_of(wanted: frozenset[str]) -> tuple[str, ...] | None:
    orders = {tuple(n for n, _, _ in v) for table in LAYERS.values() for v in table(None)
              if {n for n, _, _ in v} == wanted and len(v) == len(wanted)}
    return orders.pop() if len(orders) == 1 else None


def _fits(variant: Variant, held: list[tuple[tuple[int, ...], str]]) -> bool:
    if len(variant) != len(held):
        return False
    for (_, _, kind), (shape, dtype) in zip(variant, held):
        floating = dtype in _FLOAT
        if kind == "w" and not (floating and len(shape) >= 2):
            return False
        if kind == "b" and not (floating and len(shape) >= 1):
            return False
        if kind == "f" and not floating:
            return False
        if kind == "q" and dtype not in _INT8:
            return False
        if kind == "i" and not dtype.startswith(("int", "uint")):
            return False
    return True


# -- optimizers ----------------------------------------------------------------------------------
# Per class (keras/src/optimizers/*.py `build`): slot phases after `iteration` and
# `learning_rate`; a phase is a tuple of slots created per trainable variable, interleaved.
# A function of the config (None: every flag value possible) returns candidate plans:
# (phases, trailing variables named without the optimizer scope).
Plan = tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]  # the type of OPTIMIZERS' plans


OPTIMIZERS: dict[str, Callable[[Mapping | None], list[Plan]]] = {
    "Adam": lambda c: [((("momentum", "velocity"),) + ((("velocity_hat",),) if ams else ()), ())
                       for ams in _choices(_flag(c, "amsgrad", False))],
    "AdamW": lambda c: OPTIMIZERS["Adam"](c),
    "Nadam": lambda c: [((("momentum", "velocity"),), ("variable",))],
    "Adamax": lambda c: [((("momentum", "norm"),), ())],
    "SGD": lambda c: [(((("momentum",),) if m else ()), ())
                      for m in ((True, False) if c is None else (bool(c.get("momentum")),))],
    "RMSprop": lambda c: [((("velocity",),) + ((("momentum",),) if m else ())
                           + ((("average_gradient",),) if centered else ()), ())
                          for m in ((True, False) if c is None else (bool(c.get("momentum")),))
                          for centered in _choices(_flag(c, "centered", False))],
    "Adagrad": lambda c: [((("accumulator",),), ())],
    "Adadelta": lambda c: [((("accumulated_grad", "accumulated_delta_var"),), ())],
    "Ftrl": lambda c: [((("accumulator", "linear"),), ())],
    "Lion": lambda c: [((("momentum",),), ())],
}
_OPTIMIZER_BY_NAME = {to_snake_case(c): c for c in OPTIMIZERS}


def optimizer_class(name: str | None, compile_config: Any) -> tuple[str | None, Mapping | None]:
    """(class, config) of a saved optimizer: from config.json's `compile_config` when it has
    one, else from the optimizer's name when it is a default name (`adam`, `adam_1`,
    `rm_sprop`)."""
    entry = compile_config.get("optimizer") if isinstance(compile_config, Mapping) else None
    if isinstance(entry, Mapping) and isinstance(entry.get("class_name"), str):
        config = entry.get("config")
        return entry["class_name"], config if isinstance(config, Mapping) else {}
    if isinstance(name, str):
        base = re.sub(r"_\d+$", "", name)
        return _OPTIMIZER_BY_NAME.get(base), None
    return None, None


def optimizer_names(name: str, cls: str | None, config: Mapping | None,
                    held: list[tuple[tuple[int, ...], str]],
                    trainable: list[list[tuple[str, tuple[int, ...]]]]) -> list[str] | None:
    """Keras' names for an optimizer's variables (`held`: shape and dtype of `vars/0`, ...):
    `<name>/iteration`, `<name>/learning_rate` (unless a schedule), then `<name>/<path>_<slot>`
    per trainable variable (`trainable`: candidate lists of (Keras path, shape) in
    `model.trainable_variables` order). None unless exactly one naming fits every shape.
    `use_ema` adds `_average` slots first, `gradient_accumulation_steps`
    `_gradient_accumulator` slots first (keras/src/optimizers/base_optimizer.py `build`)."""
    table = OPTIMIZERS.get(cls or "")
    if table is None:
        return None
    if config is None:
        # Without a config, `use_ema` and gradient accumulation (rare, and shaped like a
        # momentum) are considered only when no plan without them fits.
        lrs, extras = (True, False), ((False, False), (True, False), (False, True))
    else:
        lrs = (not isinstance(config.get("learning_rate"), Mapping),)
        extras = ((bool(config.get("use_ema")), bool(config.get("gradient_accumulation_steps"))),)
    for ema, acc in extras:
        if ema and acc:
            return None  # their relative order is not pinned down here
        found: set[tuple[str, ...]] = set()
        pre = ((("average",),) if ema else ()) + ((("gradient_accumulator",),) if acc else ())
        for phases, trailing in table(config):
            for lr in lrs:
                for refs in trainable:
                    names = _plan_names(name, pre + phases, trailing, lr, refs, held)
                    if names is not None:
                        found.add(tuple(names))
        if len(found) > 1:
            return None
        if found:
            return list(found.pop())
    return None


def _plan_names(name: str, phases: tuple[tuple[str, ...], ...], trailing: tuple[str, ...],
                lr: bool, refs: list[tuple[str, tuple[int, ...]]],
                held: list[tuple[tuple[int, ...], str]]) -> list[str] | None:
    want: list[tuple[str, tuple[int, ...] | None, str]] = [(f"{name}/iteration", (), "int")]
    if lr:
        want.append((f"{name}/learning_rate", (), "float"))
    for phase in phases:
        for path, shape in refs:
            flat = path.replace("/", "_")
            want += [(f"{name}/{flat}_{slot}", shape, "float") for slot in phase]
    want += [(t, (), "float") for t in trailing]
    if len(want) != len(held):
        return None
    for (_, shape, kind), (got, dtype) in zip(want, held):
        if shape is not None and tuple(shape) != tuple(got):
            return None
        if kind == "int" and not dtype.startswith("int"):
            return None
        if kind == "float" and dtype not in _FLOAT:
            return None
    return [n for n, _, _ in want]


# -- the model's order -----------------------------------------------------------------------------

def group_ranks(groups: Iterable[str]) -> dict[str, int]:
    """{group path: position} for groups listed in the model's order (`layers/dense`, or a
    sharded index's `/layers/dense/vars`); a group's ancestors take the position of the first
    group listed below them."""
    ranks: dict[str, int] = {}
    for position, group in enumerate(groups):
        parts = group.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            ranks.setdefault("/".join(parts[:depth]), position)
    return ranks


def _sublayer_ranks(tree: Mapping[str, Any]) -> dict[str, int]:
    """{group path: position} for the sublayers of the layers in `SUBLAYER_ORDER`."""
    ranks: dict[str, int] = {}
    for path, node in [("", tree), *hdf5.walk(tree)]:
        children = {name for name, child in node.get("children", []) if "children" in child}
        for sublayers in SUBLAYER_ORDER:
            if set(sublayers) - _OPTIONAL_SUBLAYERS <= children:
                ranks.update({f"{path}/{name}".lstrip("/"): position
                              for position, name in enumerate(sublayers) if name in children})
    return ranks


def listing_key(tree: Mapping[str, Any], ranks: Mapping[str, int] | None = None
                ) -> Callable[[str], tuple]:
    """Sort key for the dataset paths of a Keras 3 weights tree, in the order Keras lists the
    variables (`model.weights`, then `optimizer.variables`) as far as `ranks` (`group_ranks`
    of the layer groups in the model's order) and the tree tell it. At every level a group's
    own `vars` come first (a layer's own variables precede its sublayers'), then the sublayers
    `SUBLAYER_ORDER` places (a sharded index lists them in saving order, which is not theirs),
    then the groups `ranks` places, then the rest in natural order (`dense_2` before
    `dense_10`); at the root `optimizer` comes last. `vars/N` by N."""
    ranks = ranks or {}
    sublayers = _sublayer_ranks(tree)

    def key(path: str) -> tuple:
        parts = path.split("/")
        out = []
        for depth, part in enumerate(parts):
            where = "/".join(parts[:depth + 1])
            if part == "vars" and depth < len(parts) - 1:
                out.append((0,))
            elif depth == 0 and part == "optimizer" and len(parts) > 1:
                out.append((4, natural_key(part)))
            elif where in sublayers:
                out.append((1, sublayers[where]))
            elif where in ranks:
                out.append((2, ranks[where], natural_key(part)))
            else:
                out.append((3, natural_key(part)))
        return tuple(out)
    return key


# -- config.json as data ---------------------------------------------------------------------------

class _Doubt(Exception):
    """The config does not describe the weights tree as Keras would have saved it."""


def config_layout(config: Any, tree: Mapping[str, Any]
                  ) -> tuple[list[str], dict[str, Mapping[str, Any]]]:
    """From config.json (plain data, never deserialized): the layer groups of the weights tree
    in the model's order (`layers/dense`, `layers/sequential`, `layers/sequential/layers/dense`,
    ...), for `group_ranks`; and {group: config entry} of each (the root model's entry at "").
    ([], {}) when the config and the tree disagree anywhere.

    Keras 3 `saving_lib` saves a Sequential or Functional model's `layers` first, each under
    `layers/` + `naming.to_snake_case(class name)`, made unique per container by `_1`, `_2`, ...
    in `model.layers` order (`_save_container_state`); a nested model's layers below its group
    the same way. `model.layers` is the config's `layers` less its non-layer operations (a
    Functional's `keras.ops` calls) and, in a Sequential, its leading InputLayer; each `vars`
    group's `name` attr is the layer's name (`_save_state` metadata). A group is placed by the
    config entry of that name (`_by_name`), or without names by class (`_by_class`)."""
    model = config.get("config") if isinstance(config, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("layers"), list):
        return [], ({"": config} if isinstance(config, dict) else {})
    order: list[str] = []
    entries: dict[str, Mapping[str, Any]] = {"": config}
    try:
        _layout(model["layers"], tree, "", order, entries, 0)
    except _Doubt:
        return [], {}
    return order, entries


def _children(node: Mapping[str, Any]) -> dict[str, Any]:
    return dict(node.get("children", [])) if isinstance(node, Mapping) else {}


def _layout(layers: list, model: Mapping[str, Any], prefix: str, order: list[str],
            entries: dict[str, Mapping[str, Any]], depth: int) -> None:
    """Place the groups below the `layers` group of `model` (a tree node at `prefix`) by the
    config `layers` of that model."""
    container = _children(model).get("layers")
    if not isinstance(container, Mapping) or "children" not in container:
        return
    if depth > MAX_MODEL_DEPTH or not all(isinstance(e, dict) for e in layers):
        raise _Doubt
    children = _children(container)
    attrs = {child: hdf5.attrs_dict(_children(node).get("vars") or {}).get("name")
             for child, node in children.items()}
    attrs = {child: name for child, name in attrs.items() if isinstance(name, str) and name}
    placed = _by_name(layers, attrs) if attrs else _by_class(layers, list(children))
    for child, entry in placed:
        group = f"{prefix}layers/{child}"
        order.append(group)
        entries[group] = entry
        inner = entry.get("config")
        if isinstance(inner, dict) and isinstance(inner.get("layers"), list):
            _layout(inner["layers"], children[child], f"{group}/", order, entries, depth + 1)


def entry_name(entry: Mapping[str, Any]) -> Any:
    """The layer name of a config entry (its config's `name`, else the entry's)."""
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
        name = entry_name(entry)
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


# -- naming a tree ---------------------------------------------------------------------------------

@dataclass
class _Layer:
    group: str                   # tree path of the layer's group ("" for the model itself)
    name: str
    cls: str | None
    config: Mapping[str, Any] | None
    scope: tuple[str, ...]       # canonical path of the layer
    keras: tuple[str, ...]       # Keras' variable.path of the layer
    trainable: bool
    parent: "_Layer | None" = None
    held: list[str] = field(default_factory=list)   # dataset paths of its vars, by index


@dataclass
class Naming:
    """What `name_tree` found: {dataset path: (canonical name, role)} in natural order of the
    paths, {alias: dataset path} for the names weightkit used before (positional), and for
    each layer variable the layer groups whose names make its scope, one per component."""
    names: dict[str, tuple[str, str]]
    aliases: dict[str, str]
    chains: dict[str, list[str]] = field(default_factory=dict)


def _attr_name(nodes: Mapping[str, Any], group: str, tree: Mapping[str, Any]) -> str | None:
    node = nodes.get(f"{group}/vars") if group else hdf5.find(tree, "vars")
    name = hdf5.attrs_dict(node).get("name") if node else None
    return name if isinstance(name, str) and name else None


def _class_of_group(base: str) -> str | None:
    """A layer class from a class-derived group or default layer name (`dense_1` -> Dense)."""
    stripped = re.sub(r"_\d+$", "", base)
    return _BY_GROUP.get(stripped) or _BY_GROUP.get(base)


def _entry_config(entry: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    inner = entry.get("config") if isinstance(entry, Mapping) else None
    return inner if isinstance(inner, Mapping) else None


def name_tree(tree: Mapping[str, Any], config: Any = None) -> Naming:
    """Canonical names and roles of every dataset of a Keras 3 weights tree (see the module
    docstring); `config` is the `.keras` archive's config.json as plain data, or None."""
    nodes = dict(hdf5.walk(tree))
    paths = sorted((p for p, node in nodes.items() if "dataset" in node), key=natural_key)
    positional = _positional_names(tree, nodes, paths, config)
    entries = config_layout(config, tree)[1] if config is not None else {}
    layers = _layers(tree, nodes, entries, config)

    names: dict[str, tuple[list[str], str]] = {}
    chains: dict[str, list[str]] = {}
    by_vars = {layer.group: layer for layer in layers}
    for path in paths:
        match = _VAR.match(path)
        if match is None or (match.group(1) or "").split("/")[0] == "optimizer":
            continue
        owner = by_vars.get(match.group(1) or "")
        if owner is not None:
            owner.held.append(path)
    for layer in layers:
        layer.held.sort(key=lambda p: number_key(p.rsplit("/", 1)[1]))
        held = [(tuple(nodes[p]["dataset"].get("shape", [])), _dtype(nodes[p])) for p in layer.held]
        indices = [int(p.rsplit("/", 1)[1]) if len(p.rsplit("/", 1)[1]) < 6 else -1
                   for p in layer.held]
        variables = layer_variables(layer.cls, layer.config, held) \
            if indices == list(range(len(indices))) else None
        base = "/".join(layer.scope)
        chain, node = [], layer
        while node is not None:
            chain.append(node.group)
            node = node.parent
        chain = list(reversed(chain))[len(chain) - len(layer.scope):]
        for i, path in enumerate(layer.held):
            chains[path] = chain
            index = path.rsplit("/", 1)[1]
            fallback = positional[path][0]
            # Where two layers share a name (Keras' own paths are not unique), the layer's
            # group in the tree tells them apart (`m/dense_1/kernel`), then the tree path.
            by_group = "/".join((*layer.scope[:-1], layer.group.rsplit("/", 1)[-1])) \
                if layer.group else base
            if variables is not None:
                var = variables[i][0]
                names[path] = ([_join(base, var), _join(by_group, var), _join(base, index),
                                fallback, path], "weight")
            else:
                names[path] = ([_join(base, index), _join(by_group, index), fallback, path],
                               "weight")

    optimizer = _optimizer_names(tree, nodes, layers, config)
    for path in paths:
        if path in names:
            continue
        if path in optimizer:
            names[path] = ([optimizer[path], positional[path][0], path], positional[path][1])
        else:
            names[path] = ([positional[path][0], path], positional[path][1])
    from .names import unique_names
    chosen = unique_names({p: c for p, (c, _) in names.items()})
    result = {p: (chosen[p], names[p][1]) for p in paths}
    aliases: dict[str, str] = {}
    taken = {name for name, _ in result.values()}
    for path in paths:
        old = positional[path][0]
        if old != result[path][0] and old not in taken:
            aliases[old] = path
    return Naming(result, aliases, chains)


def relabel(tree: Mapping[str, Any], config: Any, wanted: Mapping[str, str]
            ) -> tuple[dict[str, str], list[str]]:
    """The layer renames ({layer group: new name}, for `with_layer_names`) that make the
    variables of `tree` read back as `wanted` ({dataset path: name}), and what cannot be
    expressed.

    A Keras 3 weights file names a variable by the names of the layers that hold it and by its
    class and position (`d1/kernel`): only the layer names can change, a layer's everywhere.
    The optimizer's slots follow their layers (`adam/fc_kernel_momentum`): a slot renamed as
    its layer's rename implies is written, any other slot rename is not. With a config.json
    no layer may be renamed: Keras builds the layers the config names. Returns no renames and
    the problems when any rename cannot be written."""
    naming = name_tree(tree, config)
    renamed = {p: new for p, new in wanted.items()
               if p in naming.names and naming.names[p][0] != new}
    if not renamed:
        return {}, []
    problems: list[str] = []
    proposals: dict[str, str] = {}
    for path, new in renamed.items():
        old, role = naming.names[path]
        chain = naming.chains.get(path)
        old_parts, new_parts = old.split("/"), new.split("/")
        if role != "weight" or chain is None:
            continue  # a slot follows its layer: checked below, once the layers are renamed
        if len(new_parts) != len(old_parts) or new_parts[-1] != old_parts[-1] \
                or len(chain) != len(old_parts) - 1:
            problems.append(f"{old!r} -> {new!r} (Keras 3 names a variable by its layers and "
                            "its place in the layer; only a layer's name can change)")
            continue
        for group, before, after in zip(chain, old_parts, new_parts):
            if before != after:
                if proposals.setdefault(group, after) != after:
                    problems.append(f"layer {before!r} renamed both {proposals[group]!r} and "
                                    f"{after!r}")
    if config is not None and proposals and not problems:
        layers = ", ".join(f"{_attr_name(dict(hdf5.walk(tree)), g, tree) or g!r} -> {n!r}"
                           for g, n in list(proposals.items())[:3])
        problems.append(f"layers {layers}: config.json names the layers and Keras builds them "
                        "under those names (rename them in the model, or write a .weights.h5)")
    if problems:
        return {}, problems
    after = name_tree(with_layer_names(tree, proposals), config).names if proposals \
        else naming.names
    wrong = [p for p in wanted if p in after and after[p][0] != wanted[p]
             and not (naming.names[p][1] != "weight" and wanted[p] == naming.names[p][0])]
    # (a slot the edit left alone follows its layer's new name, as Keras names it)
    if wrong:
        return {}, [f"{naming.names[p][0]!r} -> {wanted[p]!r} (Keras 3 names the optimizer's "
                    "variables after the layers'; rename layers instead)"
                    if naming.names[p][1] != "weight" or naming.chains.get(p) is None
                    else f"{wanted[p]!r} would read back as {after[p][0]!r}" for p in wrong[:3]]
    return proposals, []


def with_layer_names(tree: Mapping[str, Any], names: Mapping[str, str]) -> dict:
    """A copy of `tree` with the `name` attribute of `<group>/vars` set for each group."""
    def rebuild(node: Mapping[str, Any], where: str) -> dict:
        if "children" not in node:
            return dict(node)
        out = {**node, "children": [[n, rebuild(c, f"{where}/{n}".lstrip("/"))]
                                    for n, c in node["children"]]}
        group = where[:-len("vars")].rstrip("/") if where.split("/")[-1] == "vars" else None
        if group is not None and group in names:
            attrs = [a for a in node.get("attrs", []) if a[0] != "name"]
            old = next((a for n, a in node.get("attrs", []) if n == "name"), None)
            kind = old["type"] if old and isinstance(old.get("type"), dict) \
                and old["type"].get("str") == "vlen" else {"str": "vlen", "cset": "utf-8"}
            out["attrs"] = attrs + [["name", {"type": kind, "shape": [],
                                              "value": [names[group]]}]]
        return out
    return rebuild(tree, "")


def _join(scope: str, name: str) -> str:
    return f"{scope}/{name}" if scope else name


def _dtype(node: Mapping[str, Any]) -> str:
    """The dtype name of a described dataset, as far as the naming checks need it."""
    attrs = hdf5.attrs_dict(node)
    tag = attrs.get("dtype")
    if isinstance(tag, str) and tag in hdf5.OPAQUE_TAGS:
        return tag
    spec = node["dataset"].get("type")
    if isinstance(spec, str):
        import numpy as np
        try:
            return np.dtype(spec).name
        except TypeError:
            return "unknown"
    return "bool" if spec == "bool" else "unknown"


def _layers(tree: Mapping[str, Any], nodes: Mapping[str, Any],
            entries: Mapping[str, Mapping[str, Any]], config: Any) -> list[_Layer]:
    """Every layer of the tree (a group holding a `vars` group), parents before children,
    with its class, config, name and scope."""
    groups = [""]
    groups += [p[:-len("/vars")] for p, node in nodes.items()
               if p.endswith("/vars") and "children" in node and p.split("/")[0] != "optimizer"]
    groups = sorted(set(groups), key=lambda g: (g.count("/"), g))
    out: dict[str, _Layer] = {}
    root_entry = entries.get("") if isinstance(entries.get(""), Mapping) else (
        config if isinstance(config, Mapping) else None)
    for group in groups:
        parent = None
        if group:
            parts = group.split("/")
            parent = next(out[g] for g in ("/".join(parts[:d]) for d in range(len(parts) - 1, -1, -1))
                          if g in out)
        attr = _attr_name(nodes, group, tree)
        if not group:
            # A model with a `layers` group is a Functional (whose `layers` include its
            # inputs) or a Sequential (whose do not); the config may say which. Anything else
            # is a subclassed model.
            said = root_entry.get("class_name") if root_entry else None
            children = _children(tree)
            cls = None
            if "layers" in children:
                inputs = any(c.startswith("input_layer") for c in _children(children["layers"]))
                cls = said if said in ("Functional", "Sequential") else \
                    "Functional" if inputs else "Sequential"
            known = attr or (entry_name(root_entry) if root_entry else None)
            name = known if isinstance(known, str) and known else "model"
            # Keras 3 keeps a Sequential or subclassed model's name in its variables' paths;
            # a file that does not record it (no root `vars`, no config) cannot say it.
            scope = () if cls == "Functional" or name != known else (name,)
            layer = _Layer("", name, cls, _entry_config(root_entry), scope, scope,
                           _trainable(_entry_config(root_entry)))
            out[""] = layer
            continue
        assert parent is not None
        rest = group[len(parent.group) + 1:] if parent.group else group
        base = group.rsplit("/", 1)[-1]
        child: Child | None = None
        if group in entries:
            entry = entries[group]
            cls = entry.get("class_name")
            child = Child(cls if isinstance(cls, str) else None, _entry_config(entry),
                          entry_name(entry) if isinstance(entry_name(entry), str) else None)
        elif "/" not in rest:
            child = sublayer(parent.cls, parent.config, parent.name, rest)
        if child is None:
            child = Child(None, None, None)
        if child.cls is None:
            child.cls = _class_of_group(base) if rest.startswith("layers/") or "/" in rest \
                else (_class_of_group(attr) if attr else None)
            if child.cls is None and attr:
                child.cls = _class_of_group(attr)
        name = attr or child.name or base
        scope = parent.scope + (name,)
        keras = parent.keras + (() if child.cls == "Functional" else (name,))
        trainable = parent.trainable and _trainable(child.config)
        out[group] = _Layer(group, name, child.cls, child.config, scope, keras, trainable,
                            parent)
    return list(out.values())


def _trainable(config: Mapping[str, Any] | None) -> bool:
    return not (isinstance(config, Mapping) and config.get("trainable") is False)


def _positional_names(tree: Mapping[str, Any], nodes: Mapping[str, Any], paths: list[str],
                      config: Any) -> dict[str, tuple[str, str]]:
    """{dataset path: (name, role)} as weightkit named Keras 3 variables before Keras names:
    layer names (from `vars` attrs, or the config) and `vars` indices (`lstm/lstm_cell/1`),
    `optimizer/<i>`; the aliases of the canonical names."""
    entries = config_layout(config, tree)[1] if config is not None else {}
    layer_names = {g: entry_name(e) for g, e in entries.items()
                   if g and isinstance(entry_name(e), str)}

    def group_name(group: str) -> str | None:
        return _attr_name(nodes, group, tree) or layer_names.get(group)

    def pretty(group: str) -> str:
        parts, out = group.split("/") if group else [], []
        for i, part in enumerate(parts):
            if part == "layers":
                continue
            out.append(group_name("/".join(parts[:i + 1])) or part)
        return "/".join(out)

    def plain(group: str) -> str:
        return "/".join(p for p in group.split("/") if p and p != "layers")

    result: dict[str, tuple[str, str]] = {}
    candidates: dict[str, list[str]] = {}
    for path in paths:
        match = _VAR.match(path)
        if match is None:
            candidates[path] = [path]
            result[path] = (path, "weight")
            continue
        group, index = match.group(1) or "", match.group(2)
        top = group.split("/")[0]
        role = "optimizer" if top == "optimizer" else "weight"
        if role == "optimizer" and group == "optimizer" and index == "0":
            role = "counter"
        if top == "optimizer":
            names = [f"{plain(group)}/{index}"]
        else:
            root = group_name("") or "model"
            names = [f"{pretty(group) or root}/{index}", f"{plain(group) or root}/{index}"]
        candidates[path] = names + [path]
        result[path] = (names[0], role)
    used: dict[str, str] = {}
    for path in paths:
        for name in candidates[path]:
            if name not in used:
                used[name] = path
                result[path] = (name, result[path][1])
                break
        else:
            result[path] = (path, result[path][1])
    return result


def _optimizer_names(tree: Mapping[str, Any], nodes: Mapping[str, Any], layers: list[_Layer],
                     config: Any) -> dict[str, str]:
    """{dataset path: Keras name} of the optimizer's variables (`optimizer/vars/<i>`), when
    one plan names them all (`optimizer_names`); {} otherwise."""
    held_paths = sorted((p for p in nodes if _VAR.match(p) and p.startswith("optimizer/vars/")
                         and "dataset" in nodes[p]),
                        key=lambda p: number_key(p.rsplit("/", 1)[1]))
    if not held_paths or [p.rsplit("/", 1)[1] for p in held_paths] != \
            [str(i) for i in range(len(held_paths))]:
        return {}
    name = _attr_name(nodes, "optimizer", tree)
    compile_config = config.get("compile_config") if isinstance(config, Mapping) else None
    cls, opt_config = optimizer_class(name, compile_config)
    if cls is None:
        return {}
    if name is None:
        name = opt_config.get("name") if isinstance(opt_config, Mapping) else None
        if not isinstance(name, str):
            return {}
    held = [(tuple(nodes[p]["dataset"].get("shape", [])), _dtype(nodes[p])) for p in held_paths]
    for bare in (False, True):  # the config's order first, then what the file allows
        candidates = _trainable_orders(layers, nodes, tree, None if bare else config, held)
        # No order fits any slots: still an optimizer without slots (SGD) can be named.
        found = optimizer_names(name, cls, opt_config, held, candidates or [[]])
        if found:
            return dict(zip(held_paths, found))
        if config is None:
            break
    return {}


def _layer_trainables(layer: _Layer, nodes: Mapping[str, Any]) -> list[tuple[str, tuple]] | None:
    """(Keras path, shape) of a layer's trainable variables, or None when it is not named."""
    held = [(tuple(nodes[p]["dataset"].get("shape", [])), _dtype(nodes[p])) for p in layer.held]
    if not held:
        return []
    variables = layer_variables(layer.cls, layer.config, held)
    if variables is None:
        return None
    base = "/".join(layer.keras)
    return [(f"{base}/{n}" if base else n, shape)
            for (n, trainable, _), (shape, _) in zip(variables, held)
            if trainable and layer.trainable]


def _trainable_orders(layers: list[_Layer], nodes: Mapping[str, Any], tree: Mapping[str, Any],
                      config: Any, held: list[tuple[tuple[int, ...], str]]
                      ) -> list[list[tuple[str, tuple]]]:
    """Candidate `model.trainable_variables` lists: the model's order when config.json gives
    it; for a bare file, the orders of the layers that Keras' group numbering allows (`dense`
    before `dense_1` in one container) whose shapes the optimizer's variables repeat, up to
    two (one is an answer, two are a doubt)."""
    per_layer: dict[str, list[tuple[str, tuple]]] = {}
    for layer in layers:
        found = _layer_trainables(layer, nodes)
        if found is None:
            return []
        per_layer[layer.group] = found
    key = listing_key(tree, group_ranks(config_layout(config, tree)[0]) if config else None)
    ordered = sorted(per_layer, key=lambda g: key(f"{g}/vars/0" if g else "vars/0"))
    if config is not None and config_layout(config, tree)[0]:
        return [[v for g in ordered for v in per_layer[g]]]
    unit = _unit(tree, "", per_layer, ordered)
    shapes = [tuple(s) for s, _ in held]
    found: list[list[tuple[str, tuple]]] = []
    steps = [0]
    for start in (1, 2):
        for repeat in (1, 2):
            target = shapes[start::repeat]
            for _, order in _match(unit, 0, target, steps):
                if order not in found:
                    found.append(order)
                if len(found) > 1 or steps[0] > MAX_SEARCH_STEPS:
                    return found if len(found) > 1 else []
    return found


# A unit of the search: a layer's variables with its sublayers' (a list), or a model:
# (its own variables, chains of units, one per class-derived group base, in Keras' numbering).
Unit = Any


def _unit(tree: Mapping[str, Any], group: str, per_layer: Mapping[str, list],
          ordered: list[str], nodes: Mapping[str, Any] | None = None,
          inside: Mapping[str, list[str]] | None = None) -> Unit:
    if nodes is None or inside is None:
        nodes = dict(hdf5.walk(tree))
        below: dict[str, list[str]] = {}
        for g in ordered:  # each layer group under every group on its path, in order
            parts = g.split("/") if g else []
            for depth in range(len(parts) + 1):
                below.setdefault("/".join(parts[:depth]), []).append(g)
        inside = below
    node = nodes.get(group) if group else tree
    container = _children(node).get("layers")
    members = inside.get(group, [])
    if not isinstance(container, Mapping):
        if group:
            return [v for g in members for v in per_layer[g]]
        # A subclassed model: its attribute sublayers in any order.
        tops: dict[str, list[str]] = {}
        for g in members:
            if g:
                tops.setdefault(g.split("/")[0], []).append(g)
        own = per_layer.get("", [])
        return (own, [[[v for g in grouped for v in per_layer[g]]] for grouped in tops.values()])
    own = [v for g in members if g == group or not g[len(group):].lstrip("/").startswith("layers/")
           for v in per_layer[g]]
    chains: dict[str, list[tuple[tuple, Unit]]] = {}
    for child in _children(container):
        match = re.fullmatch(r"(.*)_(\d+)", child)
        base, number = (match[1], number_key(match[2])) if match else (child, (0, ""))
        path = f"{group}/layers/{child}" if group else f"layers/{child}"
        unit = _unit(tree, path, per_layer, ordered, nodes, inside)
        if unit == [] or unit == ([], []):
            continue  # no trainable variables: anywhere in the order, nowhere in the slots
        chains.setdefault(base, []).append((number, unit))
    return (own, [[u for _, u in sorted(c, key=lambda x: x[0])] for c in chains.values()])


def _match(unit: Unit, pos: int, target: list[tuple], steps: list[int]
           ) -> Iterable[tuple[int, list]]:
    """(end, order) for every way `unit`'s variables can lie at `target[pos:]`."""
    steps[0] += 1
    if steps[0] > MAX_SEARCH_STEPS:
        return
    if isinstance(unit, list):
        end = pos + len(unit)
        if [tuple(s) for _, s in unit] == target[pos:end]:
            yield end, list(unit)
        return
    own, chains = unit
    for start, head in _match(own, pos, target, steps):
        for end, rest in _chains(chains, start, target, steps):
            yield end, head + rest


def _chains(chains: list[list[Unit]], pos: int, target: list[tuple], steps: list[int]
            ) -> Iterable[tuple[int, list]]:
    """(end, order) for every interleaving of `chains` (each kept in its order) that lies at
    `target[pos:]`: a depth-first search with its own stack (a model may have thousands of
    layers), pruned at the first shape that does not fit."""
    stack: list[tuple[int, tuple[int, ...], Any]] = [(pos, (0,) * len(chains), None)]
    while stack:
        steps[0] += 1
        if steps[0] > MAX_SEARCH_STEPS:
            return
        at, progress, done = stack.pop()
        if all(p == len(c) for p, c in zip(progress, chains)):
            order: list = []
            while done is not None:
                done, part = done
                order[:0] = part
            yield at, order
            continue
        for i in reversed(range(len(chains))):
            if progress[i] < len(chains[i]):
                for middle, first in _match(chains[i][progress[i]], at, target, steps):
                    stack.append((middle, progress[:i] + (progress[i] + 1,) + progress[i + 1:],
                                  (done, first)))


# -- sub-models ------------------------------------------------------------------------------------

def submodel(tree: Mapping[str, Any], config: Any, name: str
             ) -> tuple[str, dict, Mapping[str, Any] | None]:
    """The group of the model nested in a Keras 3 weights tree under the scope `name`
    (`encoder`, `outer/inner`), its subtree as a weights tree of its own (its `layers` and
    `vars` at the root: what the model saves standalone, `saving_lib._save_state`), and its
    config.json entry when `config` has one. A UsageError names the nested models there are."""
    from .errors import UsageError
    from .names import suggestion
    entries = config_layout(config, tree)[1] if config is not None else {}
    models = {}
    for layer in _layers(tree, dict(hdf5.walk(tree)), entries, config):
        node = hdf5.find(tree, layer.group) if layer.group else None
        if layer.group and isinstance(_children(node).get("layers"), Mapping):
            models["/".join(layer.scope)] = layer
    if name not in models:
        raise UsageError(f"no nested model named {name!r}; "
                         f"{suggestion(name, list(models)) if models else 'the model nests none'}")
    found = models[name]
    return found.group, dict(hdf5.find(tree, found.group)), entries.get(found.group)


def standalone_config(entry: Mapping[str, Any], parent: Mapping[str, Any]) -> dict:
    """A config.json for a nested model on its own, from its entry in the parent's layers:
    the entry's class and config, without where it sat in the parent (`name`,
    `inbound_nodes`) and without a compile config (its file holds no optimizer)."""
    keep = ("module", "class_name", "config", "registered_name", "build_config")
    return {key: entry[key] for key in keep if key in entry}
