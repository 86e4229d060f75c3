"""A TensorBundle as a store, and a store as a TensorBundle: what TF checkpoints and SavedModel
`variables/` share above the codec (`bundle.py`).

Reading: one variable per tensor, named by the `full_name` the object graph gives it (TF2), else
by its key without `/.ATTRIBUTES/VARIABLE_VALUE`. No two variables ever become one, except the
copies Keras 3's `export()` makes: it tracks every variable twice, in the lists `variables/N`
and `_all_variables/N` of the root (two graph nodes with the same full_name and bytes; serving
reads the first, ../shared/docs/FORMATS.md section 2). Keys whose full_name and bytes are equal
and which sit in different top-level lists, each full_name once per list, are one variable that
is written back to every key. Everything else keeps its own name: when a full_name is shared
(tf_keras metric variables are all `total` and `count`), each variable falls back to its key
name, then to its whole key; two variables never get the same name. Where a key runs through an
optimizer (a Keras 3 optimizer's `optimizer/_trainable_variables/N` holds the model's trainable
weights), the variable's object path through the model stands for the key name, and selects it
as an alias (`object_graph.py`). Variables are listed in the
order a depth-first walk of the object graph reaches them; what it does not reach, and every
tensor of a name-based checkpoint, follows in natural key order.

Writing: the recorded keys, shards, data order, slices, header and object graph, so an unchanged
store gives byte-identical files; a renamed variable gets its new name written as its full_name
in the object graph (TF2; restoring goes by the graph, so the framework still loads it) or as its
key (a name-based checkpoint, restored by name). With `like=TEMPLATE`, the template's layout and
graph filled with this store's values by canonical name (`converters/format.py` states the rule).
"""
from __future__ import annotations

import functools
import math
import operator
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from . import object_graph as og
from . import protowire as pw
from .bundle import (BUNDLE_VERSION, DT_STRING, DT_VARIANT, DTYPES, SPECIAL, Bundle,
                     BundleTensor, Entry, data_path, key_bytes, key_text, region, region_shape,
                     slice_key, string_bytes, tiling_problem, variant_crc)
from .carry import b64, unb64
from .errors import CorruptFileError, UsageError
from .foreign import structure_losses
from .atomic import open_streaming
from .format import ShardedWrite, WritePlan
from .names import natural_key
from .sstable import crc32c, mask_crc, put_varint, write_table
from .store import (CHUNK_BYTES, SMALL_TENSOR, Store, Tensor, gc_paused, raw_parts,
                    read_many)
from .tf_dtypes import ENUMS

META = "tf_checkpoint"


# --- reading ---------------------------------------------------------------------------------

def read_bundle(prefix: str, root: str | None = None, *, format: str, path: str | None = None,
                meta: dict | None = None) -> Store:
    """Open the TensorBundle at `prefix` as a lazy store (`root`: stay inside this directory)."""
    with gc_paused():
        return _read_bundle(prefix, root, format, path, meta)


def _read_bundle(prefix: str, root: str | None, format: str, path: str | None,
                 meta: dict | None) -> Store:
    bundle = Bundle(prefix, root)
    try:
        graph = _graph(bundle)
        variables = _variables(bundle, graph)
        names = distinct_names([e[0].key for e in variables], graph.full_names, graph.paths)
        end = len(graph.rank)

        def position(item: tuple[str, list[Entry]]) -> tuple:
            rank = min(graph.rank.get(e.key, end) for e in item[1])
            return rank, natural_key(item[1][0].key) if rank == end else ()
        if graph.rank:
            order = sorted(zip(names, variables), key=position)
        else:  # no object graph (a name-based checkpoint): in the natural order of keys
            keys = [natural_key(entries[0].key) for entries in variables]
            order = [(names[i], variables[i]) for i in sorted(range(len(keys)),
                                                              key=keys.__getitem__)]
        bundle.expect([e.key for _, entries in order for e in entries])  # a URL's plan
        tensors: dict[str, Tensor] = {}
        aliases: dict[str, str] = {}
        for name, entries in order:
            first = entries[0]
            full_name = graph.full_names.get(first.key, "")
            info: dict[str, Any] = {}
            if len(entries) > 1 or first.key != name:
                info["keys"] = [e.key for e in entries]
            if full_name:
                info["full_name"] = full_name
            model_path = graph.paths.get(first.key)
            if model_path is not None:
                info["path"] = model_path
                if model_path != name:
                    aliases[model_path] = name
            if first.dtype in SPECIAL:
                info["dtype"] = first.dtype
            if first.dtype == DT_VARIANT:
                info["shape"] = list(first.shape)
            role = og.role(first.key, full_name, first.key in graph.slots,
                           first.key in graph.in_optimizer)
            tensors[name] = BundleTensor(bundle, first, _meta(name, first.key, role, info))
        layout = {"header": b64(bundle.header_bytes),
                  "object_graph": b64(graph.data) if graph.data is not None else None,
                  "shards": _data_order(bundle),
                  "slices": {e.key: {"shard": e.shard,
                                     "extents": [[[s, n] for s, n in x] for x in e.slices]}
                             for e in bundle.entries.values() if e.slices}}
    except BaseException:
        bundle.close()
        raise
    return Store(tensors, format=format, meta={**(meta or {}), META: layout},
                 path=path or prefix, on_close=bundle.close, aliases=aliases)


def _meta(name: str, key: str, role: str, info: dict[str, Any]) -> dict[str, Any]:
    """A variable's meta, without what its absence says (`Tensor.role`, `names.py`,
    `_keys_of`): no key when the key is the name, no role when it is a weight, no `META`
    entry when it would say only that (a name-based checkpoint of 100,000 variables carries
    no metadata per variable into the files it is converted to)."""
    meta: dict[str, Any] = {}
    if key != name:
        meta["key"] = key
    if role != "weight":
        meta["role"] = role
    if info:
        meta[META] = info
    return meta


def _graph(bundle: Bundle) -> og.Graph:
    entry = bundle.entries.get(og.GRAPH_KEY)
    if entry is None or entry.dtype != DT_STRING or entry.shape != ():
        return og.EMPTY
    return og.parse(bundle.array(entry).reshape(())[()], bundle.prefix)


def _variables(bundle: Bundle, graph: og.Graph) -> list[list[Entry]]:
    """The entries of each variable, in key order: one entry each, except the copies of one
    variable Keras 3's export keeps in parallel top-level lists (see the module docstring)."""
    entries = [e for key, e in bundle.entries.items()  # in key order (`read_table` checks it)
               if key != og.GRAPH_KEY or graph.data is None]
    by_name: dict[str, list[Entry]] = {}
    for e in entries:
        if graph.full_names.get(e.key):
            by_name.setdefault(graph.full_names[e.key], []).append(e)
    merged: dict[str, list[Entry]] = {}
    for group in by_name.values():
        if len(group) < 2:
            continue
        lists = [e.key.split("/", 1)[0] for e in group]
        if ("/" in group[0].key and all("/" in e.key for e in group)
                and len(set(lists)) == len(lists)
                and len({_fingerprint(bundle, e) for e in group}) == 1):
            for e in group:
                merged[e.key] = group
    variables, seen = [], set()
    for e in entries:
        group = merged.get(e.key, [e])
        if group[0].key not in seen:
            seen.add(group[0].key)
            variables.append(group)
    return variables


def distinct_names(keys: list[str], full_names: Mapping[str, str],
                   paths: Mapping[str, str] | None = None) -> list[str]:
    """A distinct name per variable (given by its first key): its full_name when no other
    variable has that full_name or key name, else its key name (its object path through the
    model where the graph gives one, `og.Graph.paths`), else (when those collide) its whole
    key. CorruptFileError if whole keys still collide with other names."""
    paths = paths or {}
    key_names = [paths.get(key) or og.key_name(key) for key in keys]
    if not full_names and len(set(key_names)) == len(keys) and "" not in key_names:
        return key_names  # (a name-based checkpoint: its keys, each once)
    fulls = Counter(full_names.get(key, "") for key in keys)
    others = Counter(key_names)
    names = []
    for key, key_name in zip(keys, key_names):
        full = full_names.get(key, "")
        unique = full and fulls[full] == 1 and others[full] <= (key_name == full)
        names.append(full if unique else key_name or key)
    counts = Counter(names)
    names = [key if counts[name] > 1 else name for name, key in zip(names, keys)]
    counts = Counter(names)
    clash = next((name for name in names if counts[name] > 1), None)
    if clash is not None:
        raise CorruptFileError(f"two variables would both be named {clash!r} (a key and another "
                               "variable's full name)")
    return names


def _data_order(bundle: Bundle) -> list[list[Any]]:
    """Per shard, the entries in the order their bytes were written: a key, or
    [full key, slice number] for a slice of a partitioned tensor."""
    refs: dict[bytes, Any] = {}
    for e in bundle.entries.values():
        for i, extents in enumerate(e.slices):
            refs[slice_key(e.key, extents)] = [e.key, i]
    placed = [(e.shard, e.offset, e.size, e.key) for e in bundle.entries.values() if not e.slices]
    placed += [(e.shard, e.offset, e.size, refs[k]) for k, e in bundle.slice_entries.items()
               if k in refs]
    shards: list[list[Any]] = [[] for _ in range(bundle.num_shards)]
    for shard, _, _, ref in sorted(placed, key=operator.itemgetter(0, 1, 2)):
        shards[shard].append(ref)
    return shards


def _fingerprint(bundle: Bundle, e: Entry) -> tuple:
    parts = tuple(bundle.slice_entries[slice_key(e.key, x)].crc for x in e.slices)
    return e.dtype, e.shape, e.crc, e.size, parts


# --- what a bundle cannot hold ---------------------------------------------------------------

def bundle_losses(store: Store, carried: tuple[str, ...], like: Store | None = None) -> list[str]:
    """Tensors whose dtype a checkpoint cannot hold (written as float32 if allowed); for a store
    read from a file of another format (a plain safetensors too), its file structure, the roles
    a reader cannot tell from the keys (there is no object graph to say so), and the store's
    order (keys are listed in `natural_key` order)."""
    lost = [f"{name}: dtype {t.dtype_name} (TensorFlow has no such type; written as float32)"
            for name, t in store.items() if t.dtype_name not in ENUMS]
    foreign = structure_losses(store, carried, like)
    if META in store.meta or like is not None or (not foreign and store.format == "memory"):
        return lost + foreign  # a checkpoint's own, a template's graph, or order is incidental
    lost += foreign
    keys = [(_keys_of(name, t)[0], t.role) for name, t in store.items()]
    unread = Counter(role for key, role in keys if og.role(key, "", False) != role)
    lost += [f"roles of {n} {role} variable(s) (a checkpoint written without an object graph "
             f"tells them by key)" for role, n in sorted(unread.items())]
    if [k for k, _ in keys] != sorted((k for k, _ in keys), key=natural_key):
        lost.append("the order of variables (a checkpoint without an object graph lists its "
                    "keys by name, numbers by value)")
    return lost


def cast_unsupported(store: Store) -> Store:
    """`store` with every tensor of a dtype TensorFlow lacks cast to float32 (exact for the
    small float types that are the only such dtypes)."""
    cast = {name: t.map(lambda a: a.astype(np.float32), np.dtype(np.float32))
            if t.dtype_name not in ENUMS else t for name, t in store.items()}
    return store.replace(cast)


# --- writing ---------------------------------------------------------------------------------

class _Item(NamedTuple):
    key: bytes
    tensor: Tensor | None  # None for the object graph
    region: tuple | None  # the slice of `tensor` stored under this key
    dtype: int
    shape: tuple[int, ...]


class BundlePlan(NamedTuple):
    header: bytes
    shards: list[list[_Item]]
    full: list[tuple]  # (key, dtype enum, shape, extents, shard) of each partitioned tensor
    graph: bytes | None


def plan_bundle(store: Store, like: Store | None, carried: tuple[str, ...],
                allow_cast: bool = True) -> WritePlan:
    """The write plan of `store` as a TensorBundle (`carried`: the metadata namespaces the
    format keeps). Dtypes TensorFlow lacks are a loss; the plan writes them as float32."""
    return WritePlan.of(store, like, bundle_losses(store, carried, like),
                        lambda: _plan(cast_unsupported(store) if allow_cast else store, like),
                        refused=(UsageError, CorruptFileError))


def _keys_of(name: str, tensor: Tensor) -> list[str]:
    info = tensor.meta.get(META) or {}
    keys = info.get("keys") or [name]
    if type(keys) is list and len(keys) == 1 and type(keys[0]) is str and keys[0]:
        return keys  # (the usual variable: one entry)
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise CorruptFileError(f"{META} metadata of {name!r}: expected a list of keys")
    return keys


def _renamed(name: str, tensor: Tensor) -> bool:
    """Whether `name` is none of the names a reader gives this tensor (an edit renamed it)."""
    info = tensor.meta.get(META) or {}
    keys = _keys_of(name, tensor)
    return name not in (info.get("full_name"), info.get("path"), og.key_name(keys[0]), keys[0])


def _misfit(store: Store, missing: list[str], extra: list[str]) -> str:
    """Why a template does not fit the weights: the model weights it has and they lack, the
    variables it has no place for (optimizer state, for an export template: say how to leave
    it out)."""
    def listed(names: list[str]) -> str:
        return ", ".join(names[:5]) + (f" and {len(names) - 5:,} more" if len(names) > 5 else "")
    parts = []
    if missing:
        parts.append(f"the weights lack {len(missing):,} of its variable(s): {listed(missing)}")
    if extra:
        roles = {store[name].role for name in extra}
        hint = (" (optimizer state: --no-optimizer leaves it out)"
                if roles <= {"optimizer", "counter"} else
                " (optimizer and metric state: --weights-only leaves it out)"
                if "weight" not in roles else "")
        parts.append(f"it has no place for {len(extra):,} variable(s) of the weights: "
                     f"{listed(extra)}{hint}")
    return "the template does not fit the weights: " + "; ".join(parts)


def _dtype_enum(tensor: Tensor, info: dict) -> int:
    enum = info.get("dtype")
    if enum in SPECIAL and DTYPES[enum] == tensor.dtype_name:
        return enum
    try:
        return ENUMS[tensor.dtype_name]
    except KeyError:
        raise UsageError(f"a TensorFlow checkpoint cannot hold dtype {tensor.dtype_name}") from None


def _sources(store: Store, like: Store | None,
             graph: bytes | None) -> tuple[dict[str, tuple[Tensor, dict]], dict[str, str]]:
    """(checkpoint key -> (tensor with the values, tf_checkpoint meta for the entry),
    checkpoint key -> new full name of a renamed variable). With a template, its keys are
    filled by canonical name; optimizer state and counters the store lacks keep the template's
    values."""
    if like is None:
        sources, renamed = {}, {}
        for name, t in store.items():
            info = t.meta.get(META) or {}
            keys = _keys_of(name, t)
            if keys == [name]:  # stored under its name: nothing renamed
                sources[name] = (t, info)
                continue
            if graph is not None and _renamed(name, t) and info.get("full_name"):
                renamed.update({key: name for key in keys})
            elif graph is None and _renamed(name, t) and len(keys) == 1:
                keys = [name]  # a name-based checkpoint is restored by key: the key is the name
            for key in keys:
                sources[key] = (t, info)
        return sources, renamed
    missing = [name for name in like if name not in store and like[name].role not in
               ("optimizer", "counter")]
    extra = [name for name in store if name not in like]
    if missing or extra:
        raise UsageError(_misfit(store, missing, extra))
    out = {}
    for name, template in like.items():
        tensor = store.get(name, template)
        if tensor.shape != template.shape or tensor.dtype != template.dtype:
            raise UsageError(f"{name!r}: the template has {list(template.shape)} "
                             f"{template.dtype_name}, the weights have {list(tensor.shape)} "
                             f"{tensor.dtype_name}")
        for key in _keys_of(name, template):
            out[key] = (tensor, template.meta.get(META) or {})
    return out, {}


def _had(layout: dict) -> set[str]:
    """The keys the layout's file had (a partitioned tensor's once)."""
    return {ref if isinstance(ref, str) else ref[0] for refs in layout["shards"] for ref in refs}


def _dropped(layout: dict, sources: Mapping[str, Any]) -> set[str]:
    """The keys the layout's file had that are not written: variables an edit dropped."""
    return _had(layout) - set(sources) - {og.GRAPH_KEY}


def current_layout(store: Store) -> dict:
    """The store's layout as `_plan` writes it for the store alone (`Format.current`): the keys
    an edit dropped out of its shards, slices and object graph, renamed variables' new full
    names in the graph, a variable that gets a new key (a name-based one renamed) at the end
    of the first shard, where the writer puts it."""
    layout = _checked_layout(store.meta.get(META))
    graph = unb64(layout["object_graph"], META) if layout.get("object_graph") else None
    sources, renamed = _sources(store, None, graph)
    dropped = _dropped(layout, sources)
    if graph is not None:
        graph = _without_keys(graph, dropped)
        if renamed:
            graph = _with_full_names(graph, renamed)
    had = _had(layout)
    shards = [[ref for ref in refs if (ref if isinstance(ref, str) else ref[0]) not in dropped]
              for refs in layout["shards"]]
    shards[0] += [key for key in sources if key not in had]
    return {**layout, "shards": shards,
            "object_graph": b64(graph) if graph is not None else layout.get("object_graph"),
            "slices": {k: v for k, v in (layout.get("slices") or {}).items() if k not in dropped}}


def _without_keys(graph: bytes, dropped: set[str]) -> bytes:
    """The object graph without the attributes whose checkpoint keys are `dropped`: the
    variables an edit dropped (`--no-optimizer`). TensorFlow's restore looks up the key of
    every attribute of an object it restores and raises NotFoundError for a missing one (an
    optimizer restored fresh from a checkpoint whose optimizer state was dropped); without the
    attribute the object keeps its own value (tensorflow/python/checkpoint/restore.py)."""
    if not dropped:
        return graph
    decoded = pw.decode(graph, pw.OBJECT_GRAPH)
    changed = False
    for node in decoded.get("nodes", []):
        attributes = node.get("attributes", [])
        kept = [a for a in attributes if a.get("checkpoint_key", "") not in dropped]
        if len(kept) != len(attributes):
            node["attributes"], changed = kept, True
    return pw.encode(decoded, pw.OBJECT_GRAPH) if changed else graph


def _with_full_names(graph: bytes, renamed: dict[str, str]) -> bytes:
    """The object graph with the full_name of the variables under `renamed`'s keys replaced."""
    decoded = pw.decode(graph, pw.OBJECT_GRAPH)
    for node in decoded.get("nodes", []):
        for attribute in node.get("attributes", []):
            new = renamed.get(attribute.get("checkpoint_key", ""))
            if new is not None:
                attribute["full_name"] = new
    return pw.encode(decoded, pw.OBJECT_GRAPH)


def _extents(slices: dict, key: str) -> list[tuple]:
    """The slices of partitioned tensor `key` recorded in the layout, as extent tuples."""
    try:
        return [tuple((int(s), None if n is None else int(n)) for s, n in spec)
                for spec in slices[key]["extents"]]
    except (KeyError, TypeError, ValueError):
        raise CorruptFileError(f"{META} metadata: malformed slices of {key!r}") from None


def _slice_regions(tensor: Tensor, extents_list: list[tuple]) -> list[tuple] | None:
    """Regions of `tensor` for the stored slices, or None if they no longer tile it."""
    try:
        regions = [region(extents, tensor.shape) for extents in extents_list]
    except CorruptFileError:
        return None
    return None if tiling_problem(regions, tensor.shape) else regions


def _checked_layout(layout: Any) -> dict:
    """The layout metadata, refused unless shaped as `read_bundle` makes it (it may come from
    an untrusted file's metadata)."""
    def ref_ok(ref: Any) -> bool:
        return isinstance(ref, str) or (isinstance(ref, list) and len(ref) == 2 and
                                        isinstance(ref[0], str) and type(ref[1]) is int)
    ok = (isinstance(layout, dict)
          and isinstance(layout.get("shards"), list) and 1 <= len(layout["shards"]) <= 100000
          and all(isinstance(s, list) and all(map(ref_ok, s)) for s in layout["shards"])
          and isinstance(layout.get("slices", {}), dict)
          and all(isinstance(v, dict) and type(v.get("shard", 0)) is int
                  for v in layout.get("slices", {}).values())
          and isinstance(layout.get("header") or "", str)
          and isinstance(layout.get("object_graph") or "", str))
    if not ok:
        raise CorruptFileError(f"malformed {META} metadata")
    return layout


def _plan(store: Store, like: Store | None) -> BundlePlan:
    layout = (like if like is not None else store).meta.get(META)
    if like is not None and layout is None:
        raise UsageError(f"the template is a {like.format} store, not a TensorFlow checkpoint "
                         "or SavedModel")
    layout = _checked_layout(layout or {"shards": [[]], "slices": {}})
    graph = unb64(layout["object_graph"], META) if layout.get("object_graph") else None
    sources, renamed = _sources(store, like, graph)
    if graph is not None:
        graph = _without_keys(graph, _dropped(layout, sources))
    if renamed:
        graph = _with_full_names(graph, renamed)
    slices = layout.get("slices") or {}
    shards: list[list[_Item]] = []
    full: list[tuple] = []
    done: set[str] = set()
    regions_of: dict[str, list | None] = {}

    def item(key: str, where: tuple | None = None) -> _Item:
        tensor, info = sources[key]
        if info.get("dtype") == DT_VARIANT and tensor.dtype == np.uint8 and tensor.ndim == 1:
            return _Item(key_bytes(key), tensor, None, DT_VARIANT, tuple(info.get("shape", ())))
        shape = tensor.shape if where is None else region_shape(where)
        return _Item(key_bytes(key), tensor, where, _dtype_enum(tensor, info), shape)

    for refs in layout["shards"]:
        items: list[_Item] = []
        for ref in refs:
            if ref == og.GRAPH_KEY and graph is not None:
                items.append(_Item(key_bytes(og.GRAPH_KEY), None, None, DT_STRING, ()))
            elif isinstance(ref, str) and ref in sources and ref not in done:
                done.add(ref)
                items.append(item(ref))
            elif isinstance(ref, list) and len(ref) == 2 and ref[0] in sources:
                key, number = ref
                if key not in regions_of:
                    regions_of[key] = _slice_regions(sources[key][0], _extents(slices, key))
                regions = regions_of[key]
                if regions is None or not 0 <= number < len(regions):
                    continue
                done.add(key)
                extents = _extents(slices, key)[number]
                part = item(key, regions[number])
                items.append(part._replace(key=slice_key(key, extents)))
        shards.append(items)
    for key, regions in regions_of.items():
        if regions is not None:
            tensor, info = sources[key]
            full.append((key, _dtype_enum(tensor, info), tensor.shape, _extents(slices, key),
                         slices[key].get("shard", 0)))
    shards[0] += [item(key) for key in sources if key not in done]
    for key in {*sources} - done:
        if not key or key == og.GRAPH_KEY or key.startswith("\x00"):
            raise UsageError(f"{key!r} cannot be a checkpoint key")
    header = unb64(layout["header"], META) if layout.get("header") else b""
    if not header or pw.decode(header, pw.BUNDLE_HEADER).get("num_shards") != len(shards):
        header = pw.encode({"num_shards": len(shards), "version": {"producer": BUNDLE_VERSION}},
                           pw.BUNDLE_HEADER)
    return BundlePlan(header, shards, full, graph)


def _shape_proto(shape: tuple[int, ...]) -> dict:
    return {"dim": [{"size": d} for d in shape]}


def _chunks(item: _Item) -> Iterator[np.ndarray]:
    if item.region is None:
        yield from item.tensor.iter_chunks()
        return
    part = np.ascontiguousarray(item.tensor[item.region]).reshape(-1)
    step = max(1, CHUNK_BYTES // max(part.dtype.itemsize, 1))
    for start in range(0, part.size, step):
        yield part[start:start + step]


def _write_item(f: Any, item: _Item, graph: bytes | None) -> tuple[int, int]:
    """Write one entry's bytes; returns (size, masked crc)."""
    if item.tensor is None:
        data, crc = string_bytes(np.array([graph], dtype=object))
    elif item.dtype == DT_STRING:
        data, crc = string_bytes(np.asarray(item.tensor[item.region or ()], dtype=object))
    elif item.dtype == DT_VARIANT:
        data = item.tensor.read().tobytes()
        crc = variant_crc(data, math.prod(item.shape))
    else:
        size, crc = 0, 0
        for chunk in _chunks(item):
            data = np.ascontiguousarray(chunk).tobytes()
            f.write(data)
            crc = crc32c(data, crc)
            size += len(data)
        return size, mask_crc(crc)
    f.write(data)
    return len(data), crc


def write_bundle(plan: WritePlan, prefix: str, open_output: Callable[[str], BinaryIO]) -> None:
    """Carry out a `plan_bundle` plan at `prefix`; `open_output(final)` opens each file."""
    shards = plan.detail.shards
    facts = []
    for shard in range(len(shards)):
        with open_output(data_path(prefix, shard, len(shards))) as f:
            facts.append(_write_shard(f, plan, shard))
    with open_output(prefix + ".index") as f:
        _write_index(f, plan, facts)


def sharded_bundle(plan: WritePlan, prefix: str) -> ShardedWrite:
    """The write of a `plan_bundle` plan as its data shards, each on its own, and the `.index`
    from their entries (`format.ShardedWrite`): the bytes `write_bundle` writes."""
    shards = plan.detail.shards

    def write_shard(shard: int, target: str) -> list[tuple[bytes, bytes]]:
        with open_streaming(target) as f:
            return _write_shard(f, plan, shard)

    return ShardedWrite([data_path(prefix, k, len(shards)) for k in range(len(shards))],
                        write_shard, prefix + ".index",
                        lambda facts, f: _write_index(f, plan, facts))


def _write_shard(f: BinaryIO, plan: WritePlan, shard: int) -> list[tuple[bytes, bytes]]:
    """Write data shard `shard`; its index entries (key, encoded BundleEntryProto)."""
    _, shards, _, graph = plan.detail
    entries = []
    offset = 0
    batch: list[_Item] = []  # small plain tensors, read together and written in one call
    batch_bytes = 0

    def flush() -> None:
        nonlocal offset
        tensors = [i.tensor for i in batch]
        parts: list[Any] | None = raw_parts(tensors)  # type: ignore[arg-type]
        if parts is None:
            parts = [np.ascontiguousarray(a).tobytes() for a in read_many(tensors)]  # type: ignore
        for item, data in zip(batch, parts):
            entries.append(_entry_of(item, shard, offset, len(data),
                                     mask_crc(crc32c(np.frombuffer(data, np.uint8)))))
            offset += len(data)
        f.write(b"".join(parts))
        batch.clear()

    for item in shards[shard]:
        if item.tensor is not None and item.region is None and item.tensor.nbytes <= SMALL_TENSOR \
                and item.dtype not in (DT_STRING, DT_VARIANT):
            batch.append(item)
            batch_bytes += item.tensor.nbytes
            if batch_bytes >= CHUNK_BYTES:
                flush()
                batch_bytes = 0
            continue
        flush()
        batch_bytes = 0
        size, crc = _write_item(f, item, graph)
        entries.append(_entry_of(item, shard, offset, size, crc))
        offset += size
    flush()
    return entries


def _entry_of(item: _Item, shard: int, offset: int, size: int, crc: int) -> tuple[bytes, bytes]:
    """(key, BundleEntryProto) of an item written at `offset`; CorruptFileError when a numeric
    tensor gave other than its shape's bytes."""
    if item.tensor is not None and item.dtype not in (DT_STRING, DT_VARIANT) \
            and size != math.prod(item.shape) * item.tensor.dtype.itemsize:
        raise CorruptFileError(f"tensor {key_text(item.key)!r} yielded {size} bytes")
    return item.key, entry_bytes(item.dtype, item.shape, shard, offset, size, crc)


def entry_bytes(dtype: int, shape: tuple[int, ...], shard: int, offset: int, size: int,
                crc: int) -> bytes:
    """The BundleEntryProto of a tensor that is not partitioned: the bytes of
    `pw.encode({dtype, shape, shard_id, offset, size, crc32c}, pw.BUNDLE_ENTRY)` (fields in
    number order, zero scalars left out, the shape always present), without the generic
    encoder's per-field dispatch: a checkpoint of 100,000 variables writes 100,000 of them."""
    dims = _dims(shape)
    return b"".join((
        b"\x08" + put_varint(dtype) if dtype else b"",
        b"\x12" + put_varint(len(dims)) + dims,
        b"\x18" + put_varint(shard & _MASK64) if shard else b"",
        b"\x20" + put_varint(offset & _MASK64) if offset else b"",
        b"\x28" + put_varint(size & _MASK64) if size else b"",
        b"\x35" + crc.to_bytes(4, "little") if crc else b""))


_MASK64 = (1 << 64) - 1


@functools.lru_cache(maxsize=4096)
def _dims(shape: tuple[int, ...]) -> bytes:
    """The TensorShapeProto dims of `shape` (most variables share a few shapes)."""
    return b"".join(b"\x12\x00" if not d else b"\x12" + put_varint(len(v) + 1) + b"\x08" + v
                    for d in shape for v in (put_varint(d & _MASK64),))


def _write_index(f: BinaryIO, plan: WritePlan, facts: list[list[tuple[bytes, bytes]]]) -> None:
    """The `.index`: the header, every shard's entries and the partitioned tensors' own."""
    header, _, full, _ = plan.detail
    entries: list[tuple[bytes, bytes]] = [(b"", header)]
    for shard_entries in facts:
        entries += shard_entries
    for key, dtype, shape, slices, shard in full:
        extents = [{"extent": [{"start": s} if n is None else {"start": s, "length": n}
                               for s, n in spec]} for spec in slices]
        entry = {"dtype": dtype, "shape": _shape_proto(shape), "shard_id": shard,
                 "slices": extents}
        entries.append((key_bytes(key), pw.encode(entry, pw.BUNDLE_ENTRY)))
    entries.sort()
    write_table(f, entries)
