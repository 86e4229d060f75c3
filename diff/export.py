"""Comparing a deployment export with the model it came from: `wdiff model.keras model.tflite`,
`wdiff model.h5 tfjs_graph_model/`.

The engine hands a pair of stores here when exactly one side declares a deployment layout
(`Tensor.meta["layout"]`, see `converters/tflite.py` and, for a TF.js graph model,
`converters/tfjs.py` `graph_layouts`) and the pairing is automatic (`--match
name|structure` asks for the ordinary pairing instead): that side is the *export*. The other side is the
*source* (a Keras file, a checkpoint, a SavedModel). The converter renamed, transposed,
reshaped, folded and quantized the source's variables; this module undoes what the export
declares and pairs each exported weight with the variable(s) it came from:

1. Every export weight is viewed in the source's layout (`layout.to_source`: a FULLY_CONNECTED
   `[out, in]` transposed to Keras' `(in, out)`, an `OHWI` filter to `HWIO`, a depthwise
   `[1, kh, kw, C·M]` reshaped to `(kh, kw, C, M)`).
2. Weights of one operator are paired together: the kernel with a source kernel of that shape,
   preferring a layer the export's tensor names mention (`tiny_1/c1_1/convolution` names layer
   `c1`), then the closest values; the operator's bias with that layer's bias.
3. A BatchNormalization folded into the operator (a layer of four equal vectors the names
   mention, or the one after the kernel's layer) is recognised by comparing the export with
   the folded source, kernel·s and (bias − mean)·s + beta, s = gamma / √(variance + ε) per
   output channel (ε: Keras' 1e-3 or TensorFlow's 1e-5, or one estimated from the values when
   it alone explains the export to float32 rounding): the kernel and bias entries say
   `folded with <layer>`, the BatchNormalization's variables get status `folded`. A source
   bias of zeros whose operator has none is `folded` too (the converter drops it).
4. A BatchNormalization kept as two constants of its width that its name mentions (TensorFlow's
   y = x·scale + offset, a TF.js graph model's `bn/batchnorm/mul` and `bn/batchnorm/sub`; by
   values within 1e-3 when no name mentions it) pairs gamma with the scale, gamma / √(variance
   + ε), and beta with the offset, beta − mean·scale; the moving mean and variance are
   `folded` into them. Such a layer is never folded into a kernel.
5. Other float constants are paired by name and shape; integer constants without quantization
   (shapes, axes, permutations) are listed in the summary as structural, not compared.

Each pair is compared as the engine compares any pair (the statistics of `engine.py`), in the
source's layout (so indices are the source's). A weight that the export quantized, compared
with `--dequantize`, gets `worst_channel`: along its quantized axis (the export's layout), the
channel with the largest |a − b|, with that maximum and the channel's relative L2. A folded
kernel or bias is `same` when it is equal up to the float32 rounding of the fold (8 ulp of
its largest value), unless the tolerance asked for is larger.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..converters.errors import WeightsError
from ..converters.store import Store, Tensor
from .match import normalize

KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel", "embeddings")
BN = ("gamma", "beta", "moving_mean", "moving_variance")
EPSILON = 1e-3  # Keras' BatchNormalization default
FOLD_ULPS = 8
_SUFFIX = re.compile(r"_\d+$")
# the source layout's output-channel axis, for folding
_OUT_AXIS = {"HWIO": 3, "IO": 1, "HWOI": 2, "DHWIO": 4, "DHWOI": 3}


def applies(a: Store, b: Store) -> bool:
    """Whether exactly one side declares a deployment layout (an export against its source)."""
    return _is_export(a) != _is_export(b)


def _is_export(store: Store) -> bool:
    return any(isinstance(t.meta.get("layout"), dict) for t in store.values())


# ---------------------------------------------------------------------------------------------
# the two sides

@dataclass
class _Src:
    name: str
    layer: str
    kind: str
    tensor: Tensor
    order: int


@dataclass
class _Exp:
    name: str
    tensor: Tensor
    layout: dict | None
    view: Tensor  # in the source's layout
    op: tuple
    kind: str  # "kernel", "bias" or "const"
    order: int
    words: set[str] = field(default_factory=set)


def _cached(shape: tuple[int, ...], dtype: Any, compute: Callable[[], np.ndarray]) -> Tensor:
    """A tensor computed whole on first read and kept (views in another layout, folds)."""
    box: list[np.ndarray] = []

    def get(index: Any) -> np.ndarray:
        if not box:
            box.append(np.ascontiguousarray(compute()))
        return box[0][index]
    return Tensor(shape, dtype, get)


def _view(tensor: Tensor, steps: list | None) -> Tensor:
    if not steps:
        return tensor
    shape = tensor.shape
    for step, arg in steps:
        if step == "transpose":
            shape = tuple(shape[i] for i in arg)
        elif step == "reshape":
            shape = tuple(arg)

    def compute() -> np.ndarray:
        array = tensor.read()
        for step, arg in steps:
            array = np.transpose(array, arg) if step == "transpose" else array.reshape(arg)
        return array
    return _cached(shape, tensor.dtype, compute)


def _fits(steps: Any, shape: tuple[int, ...]) -> bool:
    """Whether layout steps (`[["transpose", axes] | ["reshape", shape], ...]`, or none) apply
    to a tensor of `shape`: each transpose a permutation of its axes, each reshape of its
    size."""
    if steps is None:
        return True
    if not isinstance(steps, list):
        return False
    for item in steps:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], list)
                and all(type(a) is int and a >= 0 for a in item[1])):
            return False
        step, arg = item
        if step == "transpose" and sorted(arg) == list(range(len(shape))):
            shape = tuple(shape[i] for i in arg)
        elif step == "reshape" and len(arg) <= 64 and \
                int(np.prod(arg, dtype=object)) == int(np.prod(shape, dtype=object)):
            shape = tuple(arg)
        else:
            return False
    return True


def _to_stored(array: np.ndarray, steps: list | None, stored: tuple[int, ...]) -> np.ndarray:
    """A source-layout array in the export's stored layout (the inverse of `steps`)."""
    for step, arg in reversed(steps or []):
        array = np.transpose(array, np.argsort(arg)) if step == "transpose" else array
    return array.reshape(stored)


def _words(name: str) -> set[str]:
    """The scope names in an export tensor's name (`tiny_1/c1_1/convolution` -> c1, ...)."""
    return {_SUFFIX.sub("", part).lower() for loc in name.split(";") for part in loc.split("/")}


def _layer_kinds(group: list[tuple[str, str, Tensor]]) -> list[str]:
    """The role of each variable of one layer: named (`kernel`) or by Keras 3's position."""
    leaves = [leaf for _, leaf, _ in group]
    if not all(leaf.isdigit() for leaf in leaves):
        return leaves
    tensors = [t for _, _, t in group]
    if len(tensors) == 4 and all(t.ndim == 1 and t.shape == tensors[0].shape for t in tensors):
        return list(BN)
    kinds, kernels = [], 0
    for t in tensors:
        if t.ndim >= 2:
            kinds.append("kernel" if kernels == 0 else "recurrent_kernel")
            kernels += 1
        else:
            kinds.append("bias" if "bias" not in kinds else "other")
    return kinds


def _sources(store: Store, names: list[str]) -> list[_Src]:
    layers: dict[str, list[tuple[str, str, Tensor]]] = {}
    for name in names:
        layer, _, leaf = normalize(name).rpartition("/")
        layers.setdefault(layer, []).append((name, leaf, store[name]))
    out: dict[str, _Src] = {}
    for layer, group in layers.items():
        for (name, _, tensor), kind in zip(group, _layer_kinds(group)):
            out[name] = _Src(name, layer, kind, tensor, 0)
    result = [out[n] for n in names]
    for i, s in enumerate(result):
        s.order = i
    return result


def _exports(store: Store, names: list[str]) -> tuple[list[_Exp], list[str]]:
    """The comparable export weights, and the structural constants (not compared)."""
    out, structural = [], []
    for i, name in enumerate(names):
        t = store[name]
        layout = t.meta.get("layout") if isinstance(t.meta.get("layout"), dict) else None
        if layout is not None and not _fits(layout.get("to_source"), t.shape):
            layout = None  # steps another rank needs (a crafted file, carried metadata)
        quantized = "quantization" in t.meta or "dequantized" in t.meta
        if layout is None and t.dtype.kind in "biu" and not quantized:
            structural.append(name)
            continue
        operand = str(layout.get("operand", "")) if layout else ""
        kind = ("bias" if operand.endswith("bias") else "kernel" if operand and operand != "alpha"
                else "const")
        steps = layout.get("to_source") if layout else None
        op = tuple(layout["operator"]) if layout and isinstance(layout.get("operator"), list) \
            else ("const", name)
        key = t.meta.get("key", name)
        out.append(_Exp(name, t, layout, _view(t, steps), op, kind, i, _words(str(key))))
    return out, structural


# ---------------------------------------------------------------------------------------------
# pairing

@dataclass
class _Pair:
    src: _Src
    exp: _Exp
    expected: Tensor  # the source's value as the export should hold it, in the source layout
    transform: str
    folded: bool = False
    magnitude: float | None = None  # of the fold's terms (its float32 rounding), if not |expected|


def _score(src: _Src, exp_words: set[str]) -> int:
    parts = [p for p in src.layer.split("/") if p]
    if not parts or parts[-1] not in exp_words:
        return 0
    return sum(p in exp_words for p in parts)


def _distance(x: Tensor, y: Tensor) -> float:
    a = np.asarray(x.read(), dtype=np.float64)
    b = np.asarray(y.read(), dtype=np.float64)
    norm = float(np.linalg.norm(a)) or 1.0
    return float(np.linalg.norm(a - b)) / norm


def _pick(candidates: list[_Src], exp: _Exp, words: set[str]) -> _Src | None:
    if not candidates:
        return None
    scores = [_score(c, words) for c in candidates]
    best = max(scores)
    top = [c for c, s in zip(candidates, scores) if s == best]
    if len(top) == 1:
        return top[0]
    return min(top, key=lambda c: _distance(c.tensor, exp.view))


def _transform(exp: _Exp) -> str:
    layout = exp.layout or {}
    stored, source = layout.get("stored"), layout.get("source")
    if stored and source and stored != source:
        return f"{stored}→{source}"
    return ""


def _bn_layers(srcs: list[_Src]) -> dict[str, dict[str, _Src]]:
    layers: dict[str, dict[str, _Src]] = {}
    for s in srcs:
        if s.kind in BN:
            layers.setdefault(s.layer, {})[s.kind] = s
    return {k: v for k, v in layers.items() if set(v) == set(BN)
            and len({s.tensor.shape for s in v.values()}) == 1  # one width (a crafted file)
            and len(v["gamma"].tensor.shape) == 1}


def _fold_scale(bn: dict[str, _Src], kernel: np.ndarray, exported: np.ndarray,
                axis: Any) -> tuple[np.ndarray, float]:
    """s = gamma / sqrt(variance + eps) per output channel. The epsilon is Keras' default
    (1e-3), TensorFlow's fused default (1e-5) or an estimate from the values (`_epsilon`)."""
    gamma = np.asarray(bn["gamma"].tensor.read(), np.float64)
    var = np.asarray(bn["moving_variance"].tensor.read(), np.float64)
    candidates = [EPSILON, 1e-5]
    k = _per_channel(kernel, axis)
    e = _per_channel(exported, axis)
    kk = np.einsum("ij,ij->i", k, k)
    ok = kk > 0
    if ok.any():
        s = np.einsum("ij,ij->i", k, e)[ok] / kk[ok]
        with np.errstate(divide="ignore", invalid="ignore"):
            guess = (gamma[ok] / s) ** 2 - var[ok]
        guess = guess[np.isfinite(guess)]
        if guess.size and 0 <= float(np.median(guess)) < 1:
            candidates.append(float(np.median(guess)))

    def error(eps: float) -> float:
        return _rel(_scale_kernel(kernel, gamma / np.sqrt(var + eps), axis), exported)
    _, eps = _epsilon([(error(eps), eps) for eps in candidates])
    return gamma / np.sqrt(var + eps), eps


def _epsilon(fits: list[tuple[float, float]]) -> tuple[float, float]:
    """The (error, ε) to fold with, of fits for Keras' default, TensorFlow's fused default and
    maybe an estimate from the values, in that order: the estimate only when it alone explains
    the export to float32 rounding (a model built with another ε; never to absorb an edit or a
    quantization error), else the default that fits best (the first unless the other is clearly
    closer)."""
    rounding = FOLD_ULPS * float(np.finfo(np.float32).eps)
    defaults, estimate = fits[:2], fits[2:]
    best = min(error for error, _ in defaults)
    if estimate and estimate[0][0] <= rounding < best:
        return estimate[0]
    return next((fit for fit in defaults if fit[0] <= max(best * 2, rounding)), defaults[0])


def _per_channel(array: np.ndarray, axis: Any) -> np.ndarray:
    """Rows = output channels of a source-layout kernel."""
    if axis == "HWCM":
        return array.reshape(-1, array.shape[2] * array.shape[3]).T
    return np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)


def _scale_kernel(kernel: np.ndarray, s: np.ndarray, axis: Any) -> np.ndarray:
    if axis == "HWCM":
        return kernel * s.reshape(kernel.shape[2], kernel.shape[3])
    shape = [1] * kernel.ndim
    shape[axis] = -1
    return kernel * s.reshape(shape)


def _fold(pair: _Pair, bias_pair: _Pair | None, bias_exp: _Exp | None, bn: dict[str, _Src],
          bn_name: str) -> tuple[_Pair, _Pair | None] | None:
    """The folded expectations of a kernel (and its operator's bias) with a BatchNormalization,
    if they fit the export better than the plain ones."""
    source = (pair.exp.layout or {}).get("source")
    axis = "HWCM" if source == "HWCM" else _OUT_AXIS.get(source)
    if axis is None:
        return None
    kernel = np.asarray(pair.src.tensor.read(), np.float64)
    channels = _per_channel(kernel, axis).shape[0]
    if bn["gamma"].tensor.shape != (channels,):
        return None
    exported = np.asarray(_real_view(pair.exp).read(), np.float64)
    s, eps = _fold_scale(bn, kernel, exported, axis)
    folded = _scale_kernel(kernel, s, axis)
    if not _rel(folded, exported) < _rel(kernel, exported):  # (NaN: not a better fit)
        return None
    beta = np.asarray(bn["beta"].tensor.read(), np.float64)
    mean = np.asarray(bn["moving_mean"].tensor.read(), np.float64)
    conv_bias = (np.asarray(bias_pair.src.tensor.read(), np.float64)
                 if bias_pair is not None else np.zeros(channels))
    dtype = np.dtype(np.float64)  # the fold as exactly as the source values allow
    note = f"folded with {bn_name} (ε={eps:g})"
    kernel_pair = replace(pair, expected=_cached(kernel.shape, dtype, lambda: folded),
                          transform=", ".join(filter(None, [pair.transform, note])), folded=True)
    new_bias = None
    if bias_exp is not None and bias_exp.view.shape == (channels,) == conv_bias.shape:
        value = (conv_bias - mean) * s + beta
        owner = bias_pair.src if bias_pair is not None else bn["beta"]
        new_bias = _Pair(owner, bias_exp, _cached(value.shape, dtype, lambda: value), note,
                         folded=True)
    return kernel_pair, new_bias


def _real_view(exp: _Exp) -> Tensor:
    """The export weight's real values in the source's layout: its view, dequantized when it
    is stored quantized (an int8 kernel folded with a batch norm is recognised by its real
    values even when the diff compares the stored integers)."""
    if "quantization" not in exp.tensor.meta:
        return exp.view
    from ..converters.quant import dequantize_tensor
    try:
        real = dequantize_tensor(exp.tensor, exp.name)
    except WeightsError:
        return exp.view
    return _view(real, exp.layout.get("to_source") if exp.layout else None)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(b)) or 1.0
    return float(np.linalg.norm(a - b)) / norm


@dataclass
class _Result:
    pairs: list[_Pair] = field(default_factory=list)
    folded: list[tuple[_Src, str, str]] = field(default_factory=list)  # (src, export name, why)
    only_src: list[_Src] = field(default_factory=list)
    only_exp: list[_Exp] = field(default_factory=list)
    structural: list[str] = field(default_factory=list)


def pair(srcs: list[_Src], exps: list[_Exp]) -> _Result:
    """Pair export weights with source variables (see the module docstring)."""
    result = _Result()
    used_src: set[str] = set()
    used_exp: set[str] = set()
    groups: dict[tuple, list[_Exp]] = {}
    for e in exps:
        groups.setdefault(e.op, []).append(e)
    bns = _bn_layers(srcs)
    kept = {name: found for name, bn in bns.items()
            if (found := _bn_constants(name, bn, [e for e in exps if e.kind == "const"]))}
    layer_order = {s.layer: s.order for s in reversed(srcs)}
    paired_layers: dict[str, tuple] = {}
    for op, members in groups.items():
        words = set().union(*(m.words for m in members))
        kernels = [m for m in members if m.kind == "kernel"]
        biases = [m for m in members if m.kind == "bias"]
        kernel_pairs = []
        for k in kernels:
            candidates = [s for s in srcs if s.kind in KERNELS and s.name not in used_src
                          and s.tensor.shape == k.view.shape]
            chosen = _pick(candidates, k, words)
            if chosen is None:
                continue
            used_src.add(chosen.name)
            used_exp.add(k.name)
            kernel_pairs.append(_Pair(chosen, k, chosen.tensor, _transform(k)))
            paired_layers.setdefault(chosen.layer, op)
        bias_pair = None
        bias_exp = biases[0] if biases else None
        if kernel_pairs and bias_exp is not None:
            layer = kernel_pairs[0].src.layer
            own = [s for s in srcs if s.layer == layer and s.kind == "bias"
                   and s.name not in used_src and s.tensor.shape == bias_exp.view.shape]
            if own:
                bias_pair = _Pair(own[0], bias_exp, own[0].tensor, _transform(bias_exp))
        if len(kernel_pairs) == 1:
            k = kernel_pairs[0]
            bn_name = _bn_for(k, {n: v for n, v in bns.items() if n not in kept}, words,
                              layer_order, used_src)
            folded = None
            if bn_name is not None:
                folded = _fold(k, bias_pair, bias_exp, bns[bn_name], bn_name)
            if folded is not None:
                kernel_pairs = [folded[0]]
                if folded[1] is not None:
                    bias_pair = folded[1]
                    used_exp.add(bias_exp.name)
                for s in bns[bn_name].values():
                    if s is not bias_pair_src(bias_pair):
                        result.folded.append((s, k.exp.name, f"folded into {k.exp.name}"))
                    used_src.add(s.name)
        result.pairs += kernel_pairs
        if bias_pair is not None:
            used_src.add(bias_pair.src.name)
            used_exp.add(bias_pair.exp.name)
            result.pairs.append(bias_pair)
    for bn_name, bn in bns.items():  # BatchNormalization kept as its scale and offset
        if not any(s.name in used_src for s in bn.values()):
            named = [e for e in kept.get(bn_name, []) if e.name not in used_exp]
            free = named if len(named) >= 2 else _bn_constants(
                "", bn, [e for e in exps if e.name not in used_exp and e.kind == "const"])
            _pair_batchnorm(bn, free, len(named) < 2, result, used_src, used_exp)
    for e in exps:  # constants: by name and shape
        if e.name in used_exp:
            continue
        candidates = [s for s in srcs if s.name not in used_src and s.tensor.shape == e.view.shape]
        chosen = _pick([c for c in candidates if _score(c, e.words)] or
                       (candidates if len(candidates) == 1 else []), e, e.words)
        if chosen is not None:
            used_src.add(chosen.name)
            used_exp.add(e.name)
            result.pairs.append(_Pair(chosen, e, chosen.tensor, _transform(e)))
        elif e.kind == "const" and _uniform(e.tensor):  # a fill (initial state, padding)
            used_exp.add(e.name)
            result.structural.append(e.name)
    by_layer_bias = {s.layer: s for s in srcs if s.kind == "bias" and s.name not in used_src}
    for layer, op in paired_layers.items():  # zero biases the converter dropped
        s = by_layer_bias.get(layer)
        has_bias = any(m.kind == "bias" for m in groups.get(op, []))
        if s is not None and not has_bias and not np.any(s.tensor.read()):
            used_src.add(s.name)
            result.folded.append((s, "", "all zeros: dropped by the converter (the operator has "
                                         "no bias)"))
    for p in [p for p in result.pairs if p.expected.shape != p.exp.view.shape]:
        result.pairs.remove(p)  # a crafted pair of shapes no fold explains: both stay unpaired
        used_src.discard(p.src.name)
        used_exp.discard(p.exp.name)
    result.only_src = [s for s in srcs if s.name not in used_src]
    result.only_exp = [e for e in exps if e.name not in used_exp]
    result.pairs.sort(key=lambda p: p.src.order)
    return result


def _bn_constants(bn_name: str, bn: dict[str, _Src], consts: list[_Exp]) -> list[_Exp]:
    """The export's float constants of the BatchNormalization's width whose names mention
    layer `bn_name` (any, for ""), if there are two or more: then it may have been kept as its
    scale and offset rather than folded into a kernel."""
    leaf = bn_name.split("/")[-1]
    found = [e for e in consts if e.view.shape == bn["gamma"].tensor.shape
             and e.view.dtype.kind == "f" and (not leaf or leaf in e.words)]
    return found if len(found) >= 2 else []


def _pair_batchnorm(bn: dict[str, _Src], candidates: list[_Exp], strict: bool, result: _Result,
                    used_src: set[str], used_exp: set[str]) -> None:
    """A BatchNormalization the converter reduced to two constants, y = x·scale + offset
    (TensorFlow's `batch_normalization`: scale = gamma / √(variance + ε), offset = beta −
    mean·scale; a TF.js graph model's `bn/batchnorm/mul` and `bn/batchnorm/sub`), among
    `candidates` (of its width; whose names mention the layer, else, `strict`, any whose values
    fit within 1e-3): the scale is the one closest to gamma / √(variance + ε) for the ε that
    fits it best, the offset the one closest to beta − mean·scale among the others."""
    if len(candidates) < 2:
        return
    gamma, beta, mean, var = (np.asarray(bn[k].tensor.read(), np.float64) for k in BN)
    fits = [(_bn_scale(gamma, var, np.asarray(e.view.read(), np.float64)), e) for e in candidates]
    (error, eps, scale), scale_exp = min(fits, key=lambda fit: fit[0][0])
    offset = beta - mean * scale
    rest = [e for e in candidates if e is not scale_exp]
    offset_exp = min(rest, key=lambda e: _rel(np.asarray(e.view.read(), np.float64), offset))
    if strict and (error > 1e-3 or _rel(np.asarray(offset_exp.view.read(), np.float64),
                                        offset) > 1e-3):
        return
    dtype = np.dtype(np.float64)
    note = f"ε={eps:g}"
    result.pairs.append(_Pair(bn["gamma"], scale_exp, _cached(scale.shape, dtype, lambda: scale),
                              f"folded: gamma / √(moving_variance + ε), {note}", folded=True))
    magnitude = float(np.max(np.maximum(np.abs(beta), np.abs(mean * scale)), initial=0.0))
    result.pairs.append(_Pair(bn["beta"], offset_exp,
                              _cached(offset.shape, dtype, lambda: offset),
                              f"folded: beta − moving_mean · scale, {note}", folded=True,
                              magnitude=magnitude))
    result.folded.append((bn["moving_variance"], scale_exp.name,
                          f"folded into {scale_exp.name}"))
    result.folded.append((bn["moving_mean"], offset_exp.name, f"folded into {offset_exp.name}"))
    used_src.update(s.name for s in bn.values())
    used_exp.update((scale_exp.name, offset_exp.name))


def _bn_scale(gamma: np.ndarray, var: np.ndarray, value: np.ndarray
              ) -> tuple[float, float, np.ndarray]:
    """(relative error, ε, gamma / √(var + ε)) for the ε that fits `value` (`_epsilon`)."""
    candidates = [EPSILON, 1e-5]
    with np.errstate(divide="ignore", invalid="ignore"):
        guess = (gamma / value) ** 2 - var
    guess = guess[np.isfinite(guess)]
    if guess.size and 0 <= float(np.median(guess)) < 1:
        candidates.append(float(np.median(guess)))
    error, eps = _epsilon([(_rel(gamma / np.sqrt(var + eps), value), eps) for eps in candidates])
    return error, eps, gamma / np.sqrt(var + eps)


def _uniform(tensor: Tensor) -> bool:
    """Every element equal (zeros, ones): a fill, not a trained weight."""
    values = np.asarray(tensor.read())
    return values.size == 0 or bool(np.all(values == values.reshape(-1)[0]))


def bias_pair_src(p: _Pair | None) -> _Src | None:
    return p.src if p is not None else None


def _bn_for(k: _Pair, bns: dict[str, dict[str, _Src]], words: set[str],
            layer_order: dict[str, int], used: set[str]) -> str | None:
    """The BatchNormalization that may be folded into kernel pair `k`: one the export's names
    mention, else the first after the kernel's layer."""
    free = {n: v for n, v in bns.items() if not any(s.name in used for s in v.values())}
    named = [n for n in free if n.split("/")[-1] in words]
    if named:
        return named[0]
    after = sorted((layer_order[n], n) for n in free if layer_order[n] > layer_order[k.src.layer])
    return after[0][1] if after else None


# ---------------------------------------------------------------------------------------------
# comparison

def _worst_channel(p: _Pair) -> dict | None:
    meta = p.exp.tensor.meta.get("dequantized")
    axis = meta.get("axis") if isinstance(meta, dict) else None
    if axis is None:
        return None
    stored = p.exp.tensor.shape
    steps = (p.exp.layout or {}).get("to_source")
    want = _to_stored(np.asarray(p.expected.read(), np.float64), steps, stored)
    have = np.asarray(p.exp.tensor.read(), np.float64)
    if not 0 <= axis < len(stored) or want.shape != have.shape:
        return None
    w = np.moveaxis(want, axis, 0).reshape(stored[axis], -1)
    h = np.moveaxis(have, axis, 0).reshape(stored[axis], -1)
    diff = np.abs(w - h)
    peak = diff.max(axis=1) if diff.size else np.zeros(stored[axis])
    c = int(np.argmax(peak)) if peak.size else 0
    norm = float(np.linalg.norm(w[c])) if peak.size else 0.0
    rel = float(np.linalg.norm(w[c] - h[c])) / norm if norm else None
    return {"axis": int(axis), "index": c, "max_abs_diff": float(peak[c]) if peak.size else 0.0,
            "rel_l2": rel}


def diff_export(a: Store, b: Store, opts: Any) -> Any:
    """The diff of an export and its source (either side may be the export)."""
    from .engine import DiffResult, Entry, _fill, compare_pairs, select
    export_is_a = _is_export(a)
    src_store, exp_store = (b, a) if export_is_a else (a, b)
    chosen_a, chosen_b = select(a, b, opts)  # both sides at once (names.select)
    src_chosen, exp_chosen = (chosen_b, chosen_a) if export_is_a else (chosen_a, chosen_b)
    skipped = [n for n in src_chosen if src_store[n].role != "weight"]
    sides = (lambda x, y: (y, x)) if export_is_a else (lambda x, y: (x, y))  # (source, export)
    src_all, exp_all = src_chosen, exp_chosen
    if opts.include or opts.exclude:  # paired first, then selected: the sides' names differ
        src_all, exp_all = sides(*select(a, b, replace(opts, include=(), exclude=())))
        included = sides(*select(a, b, replace(opts, exclude=()))) if opts.include else None
        kept = sides(*select(a, b, replace(opts, include=()))) if opts.exclude else None
    srcs = _sources(src_store, [n for n in src_all if src_store[n].role == "weight"])
    exps, structural = _exports(exp_store, exp_all)
    result = pair(srcs, exps)
    result.structural = structural + result.structural
    if opts.include or opts.exclude:
        result = _selected(result, included, kept)
        if not (result.pairs or result.folded or result.only_src or result.only_exp):
            from ..converters.names import nothing_left, roles_option
            raise nothing_left(opts.include, opts.exclude,
                               roles_option(opts.no_optimizer, opts.weights_only),
                               len(set(src_all).union(exp_all)))

    def entry(src: _Src | None, exp: _Exp | None, status: str, matched: str | None,
              transform: str | None) -> Any:
        sa, ea = (exp, src) if export_is_a else (src, exp)
        ta = None if sa is None else sa.tensor
        tb = None if ea is None else ea.tensor
        name_a = None if sa is None else sa.name
        name_b = None if ea is None else ea.name
        return Entry(name=name_a if name_a is not None else name_b, status=status,
                     name_a=name_a, name_b=name_b, role="weight",
                     shape_a=None if ta is None else list(ta.shape),
                     shape_b=None if tb is None else list(tb.shape),
                     dtype_a=None if ta is None else ta.dtype_name,
                     dtype_b=None if tb is None else tb.dtype_name,
                     size=(ta or tb).size, matched_by=matched, transform=transform or None)

    entries = []
    jobs = []
    for p in result.pairs:
        e = entry(p.src, p.exp, "same" if p.src.tensor.dtype == p.exp.view.dtype
                  else "dtype_changed", "export", p.transform)
        first, second = (p.exp.view, p.expected) if export_is_a else (p.expected, p.exp.view)
        o = opts
        if p.folded:
            peak = p.magnitude if p.magnitude is not None else \
                float(np.max(np.abs(np.asarray(p.expected.read(), np.float64)), initial=0.0))
            o = replace(opts, atol=max(opts.atol, FOLD_ULPS * float(np.finfo(np.float32).eps)
                                       * peak))
        jobs.append((e, first, second, o, p))
        entries.append(e)
    for (e, first, second, o, p), stats in zip(jobs, compare_pairs_each(jobs, compare_pairs)):
        _fill(e, stats, renames=False)
        e.worst_channel = _worst_channel(p)
    for s, exp_name, why in result.folded:
        e = entry(s, None, "folded", "export", why)
        if exp_name:
            if export_is_a:
                e.name_a = exp_name
            else:
                e.name_b = exp_name
        entries.append(e)
    order = {s.name: s.order for s in srcs}
    entries.sort(key=lambda e: order.get(e.name_b if export_is_a else e.name_a, len(order)))
    entries += [entry(s, None, "added" if export_is_a else "removed", None, None)
                for s in result.only_src]
    entries += [entry(None, x, "removed" if export_is_a else "added", None, None)
                for x in result.only_exp]
    return DiffResult(entries, _summary(entries, a, b, result, skipped, export_is_a), opts)


def _selected(result: _Result, included: tuple[list[str], list[str]] | None,
              kept: tuple[list[str], list[str]] | None) -> _Result:
    """What of the pairing of every weight the selection asks for. `included`: the (source,
    export) names --include matches, `kept`: those --exclude leaves (None: no such option). A
    pair is one weight under two names: kept when either side's name is included (`--include
    'c1/*'` names the source's `c1/kernel`, not the export's `model/c1/convolution`) and
    neither side's is excluded. A folded variable likewise, and with it the pairs of the layer
    it was folded into, which are what check its values (a batch norm's gamma scales the
    kernel, its beta and mean shift the bias); one of those excluded is a UsageError, as the
    folded variable could not be compared. An unpaired variable or a structural constant is
    kept by its own name."""
    inc_src, inc_exp = (set(names) for names in included) if included else (None, None)
    ok_src, ok_exp = (set(names) for names in kept) if kept else (None, None)

    def selected(src: str | None, exp: str | None) -> bool:
        return ((src is not None and (inc_src is None or src in inc_src))
                or (exp is not None and (inc_exp is None or exp in inc_exp))) \
            and not excluded(src, exp)

    def excluded(src: str | None, exp: str | None) -> bool:
        return (src is not None and ok_src is not None and src not in ok_src) \
            or (exp is not None and ok_exp is not None and exp not in ok_exp)
    layer_of = {p.exp.name: p.src.layer for p in result.pairs}
    keep = {id(p) for p in result.pairs if selected(p.src.name, p.exp.name)}
    folded = []
    for f in result.folded:
        source, into, _ = f
        if not selected(source.name, into or None):
            continue
        hosts = [p for p in result.pairs if into and p.src.layer == layer_of.get(into)]
        left_out = [p.src.name for p in hosts if excluded(p.src.name, p.exp.name)]
        if left_out:
            from ..converters.errors import UsageError
            raise UsageError(f"{source.name!r} is folded into {', '.join(map(repr, left_out))} "
                             "in the export, which the selection leaves out: it is compared "
                             "only through them (exclude it too, or keep them)")
        folded.append(f)
        keep.update(map(id, hosts))
    return _Result([p for p in result.pairs if id(p) in keep], folded,
                   [s for s in result.only_src if selected(s.name, None)],
                   [x for x in result.only_exp if selected(None, x.name)],
                   [n for n in result.structural if selected(None, n)])


def compare_pairs_each(jobs: list, compare_pairs: Callable) -> list:
    """compare_pairs per tolerance group (a folded pair has its own atol), in job order."""
    out: list = [None] * len(jobs)
    groups: dict[tuple, list[int]] = {}
    for i, (_, _, _, o, _) in enumerate(jobs):
        groups.setdefault((o.atol, o.rtol), []).append(i)
    for indices in groups.values():
        o = jobs[indices[0]][3]
        stats = compare_pairs([(jobs[i][1], jobs[i][2]) for i in indices], o)
        for i, s in zip(indices, stats):
            out[i] = s
    return out


def _summary(entries: list, a: Store, b: Store, result: _Result, skipped: list[str],
             export_is_a: bool) -> dict:
    from .engine import STATUSES
    counts = {s: 0 for s in STATUSES}
    for e in entries:
        counts[e.status] = counts.get(e.status, 0) + 1
    peaks = [e.max_abs_diff for e in entries if e.max_abs_diff is not None]
    compared = [e for e in entries if e.mismatched is not None]
    stored = [p.exp.name for p in result.pairs if "quantization" in p.exp.tensor.meta]
    dequantized = [p.exp.name for p in result.pairs if "dequantized" in p.exp.tensor.meta]
    return {
        "identical": all(e.status in ("same", "folded") for e in entries),
        "variables_a": len(a), "variables_b": len(b),
        "counts": counts,
        "matched_by": {"export": len(result.pairs) + len(result.folded)} if result.pairs or
        result.folded else {},
        "elements_a": sum(t.size for t in a.values()),
        "elements_b": sum(t.size for t in b.values()),
        "compared_elements": sum(e.size for e in compared),
        "mismatched_elements": sum(e.mismatched or 0 for e in entries),
        "max_abs_diff": max(peaks) if peaks else None,
        "unmatched_a": [e.name_a for e in entries if e.status == "removed"],
        "unmatched_b": [e.name_b for e in entries if e.status == "added"],
        "export": {"side": "a" if export_is_a else "b", "paired": len(result.pairs),
                   "folded": len(result.folded), "structural": result.structural,
                   "not_exported": skipped, "dequantized": len(dequantized),
                   "quantized_as_stored": len(stored)},
    }
