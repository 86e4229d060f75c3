"""Quantized tensors as the real numbers they stand for: the `--dequantize` store transform of
`show`, `diff` and `convert`, shared by the deployment formats.

A reader of a format that stores quantized weights puts one format-neutral entry in the
tensor's metadata, `meta["quantization"]`, with a `scheme`:

    affine     {"scale": [s, ...], "zero_point": [z, ...], "axis": d | None}
               real = scale · (q − zero_point), computed as TFLite's DEQUANTIZE kernel does
               (`static_cast<float>(q − zero_point) * scale` in float32; tensorflow/tensorflow
               `tensorflow/lite/kernels/internal/reference/dequantize.h`); per channel along
               `axis` when there are several scales (one per index of that axis).
    min_scale  {"scale": s, "min": m, "dtype": "float32" | "int32"}: q · scale + min (TF.js
               uint8/uint16 weights; tfjs-core `dist/io/io_utils.js` `decodeWeight`), in
               float64 (JavaScript's numbers), then as TF.js stores it: a float32 weight
               rounded to float32 (`Float32Array`), an int32 weight by `Math.round` (the
               nearest integer, halves toward +∞) then ToInt32 (NaN and ±∞ to 0, else modulo
               2^32: `Int32Array`), so an int32 weight dequantizes to int32.
    cast       {"dtype": "float32"}: a float16 weight the model widens (TFLite DEQUANTIZE).
    blockwise  {"scales": NAME, "zero_points": NAME | None, "block_size": n}: the scales (and
               zero points) are other tensors of the same store, one per block of `n` along
               the last axis: real = scale[..., i // n] · (q[..., i] − zero_point[..., i // n]).

`dequantize(store)` replaces every such tensor by a lazy float32 one (int32 for a TF.js int32
weight, the dtype TF.js loads; read in the same pieces
as the stored one) whose meta keeps everything else (the layout an export diff uses) and says
`"dequantized": {"from": <dtype>, "scheme": <scheme>, "axis": <per-channel axis or None>}`. Parameters come from untrusted files:
they are checked against the tensor's shape before anything is read.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .dtypes import dtype_name
from .errors import CorruptFileError, UsageError
from .store import Index, Store, Tensor

KEY = "quantization"
SCHEMES = ("affine", "min_scale", "cast", "blockwise")
FLOAT32 = np.dtype(np.float32)
INT32 = np.dtype(np.int32)


def scheme(tensor: Tensor) -> str | None:
    """The quantization scheme of a tensor, or None for a plain one."""
    params = tensor.meta.get(KEY)
    return params.get("scheme") if isinstance(params, dict) else None


def is_quantized(tensor: Tensor) -> bool:
    """Whether the tensor's meta declares a quantization (a scheme weightkit may not know)."""
    return scheme(tensor) is not None


def _numbers(value: Any, what: str, name: str, path: str | None) -> np.ndarray:
    if not isinstance(value, list) or not value or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise CorruptFileError(f"{name!r}: quantization {what} is not a list of numbers", path)
    return np.asarray(value, dtype=np.float64)


def _channel_shape(shape: tuple[int, ...], axis: int | None, n: int, name: str,
                   path: str | None) -> tuple[int, ...]:
    """The shape the per-channel parameters broadcast from."""
    if n == 1:
        return (1,) * len(shape)
    if not isinstance(axis, int) or isinstance(axis, bool) or not 0 <= axis < len(shape) \
            or shape[axis] != n:
        raise CorruptFileError(f"{name!r}: {n} quantization scales do not match axis {axis} "
                               f"of shape {list(shape)}", path)
    return tuple(n if d == axis else 1 for d in range(len(shape)))


def _affine(tensor: Tensor, params: dict, name: str, path: str | None) -> Tensor:
    scale = _numbers(params.get("scale"), "scale", name, path).astype(np.float32)
    zero = _numbers(params.get("zero_point", [0]), "zero_point", name, path)
    if zero.size not in (1, scale.size) or np.any(zero != np.round(zero)):
        raise CorruptFileError(f"{name!r}: zero points do not match the scales", path)
    n = max(scale.size, zero.size)
    bshape = _channel_shape(tensor.shape, params.get("axis"), n, name, path)
    scale = np.broadcast_to(scale, (n,)).reshape(bshape)
    zero = np.broadcast_to(zero.astype(np.int64), (n,)).reshape(bshape)

    def get(index: Index) -> np.ndarray:
        q = np.asarray(tensor[index]).astype(np.int64)
        s = np.broadcast_to(scale, tensor.shape)[index]
        z = np.broadcast_to(zero, tensor.shape)[index]
        with np.errstate(over="ignore", invalid="ignore"):  # a scale of ±∞ or NaN: as TFLite
            return (q - z).astype(np.float32) * s
    return Tensor(tensor.shape, FLOAT32, get)


def _min_scale(tensor: Tensor, params: dict, name: str, path: str | None) -> Tensor:
    values = [params.get("scale"), params.get("min")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in values):
        raise CorruptFileError(f"{name!r}: quantization scale and min must be numbers", path)
    scale, low = (float(v) for v in values)
    target = params.get("dtype", "float32")
    if target not in ("float32", "int32"):
        raise CorruptFileError(f"{name!r}: min/scale quantization of a {target!r} weight (TF.js "
                               "dequantizes to float32 or int32)", path)

    def get(index: Index) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):  # JavaScript's ±∞ (then 0) too
            real = np.asarray(tensor[index]).astype(np.float64) * scale + low
        return js_int32(js_round(real)) if target == "int32" else real.astype(np.float32)
    return Tensor(tensor.shape, INT32 if target == "int32" else FLOAT32, get)


def js_round(x: np.ndarray) -> np.ndarray:
    """JavaScript's `Math.round` on float64: the integer nearest to x, halves toward +∞ (so
    -2.5 -> -2, 0.49999999999999994 -> 0). ECMAScript `Math.round`; `x - floor(x)` is exact
    near 0.5, so the comparison is too."""
    floor = np.floor(x)
    with np.errstate(invalid="ignore"):  # ±∞ - ±∞: NaN, which ToInt32 makes 0 anyway
        return floor + (x - floor >= 0.5)


def js_int32(x: np.ndarray) -> np.ndarray:
    """JavaScript's ToInt32 of integral float64 values (an `Int32Array` store): NaN and ±∞ are 0,
    anything else is taken modulo 2^32 into [-2^31, 2^31)."""
    x = np.where(np.isfinite(x), x, 0.0)
    wrapped = np.fmod(x, 2.0 ** 32)
    wrapped = np.where(wrapped < 0, wrapped + 2.0 ** 32, wrapped)
    return np.where(wrapped >= 2.0 ** 31, wrapped - 2.0 ** 32, wrapped).astype(np.int32)


def _blockwise(tensor: Tensor, params: dict, name: str, store: Store) -> Tensor:
    path = store.path
    size = params.get("block_size")
    scales_name, zeros_name = params.get("scales"), params.get("zero_points")
    if not (type(size) is int and size > 0 and tensor.shape and isinstance(scales_name, str)
            and scales_name in store and (zeros_name is None or zeros_name in store)):
        raise UsageError(f"{name!r}: blockwise quantization whose scales are not a variable of "
                         "the store cannot be dequantized", path)
    blocks = (*tensor.shape[:-1], -(-tensor.shape[-1] // size))
    scales = store[scales_name]
    zeros = store[zeros_name] if zeros_name is not None else None
    for other in (scales, zeros):
        if other is not None and math.prod(other.shape) != math.prod(blocks):
            raise CorruptFileError(f"{name!r}: block scales of shape {list(other.shape)} do not "
                                   f"fit shape {list(tensor.shape)} in blocks of {size}", path)

    def get(index: Index) -> np.ndarray:
        s = np.asarray(scales.read(), dtype=np.float32).reshape(blocks)
        z = (np.zeros(1, np.int64) if zeros is None
             else np.asarray(zeros.read()).astype(np.int64).reshape(blocks))
        expand = lambda a: np.repeat(a, size, axis=-1)[..., :tensor.shape[-1]]  # noqa: E731
        q = np.asarray(tensor.read()).astype(np.int64)
        full = (q - (expand(z) if zeros is not None else 0)).astype(np.float32) * expand(s)
        return full[index]
    return Tensor(tensor.shape, FLOAT32, get)


def dequantize_tensor(tensor: Tensor, name: str = "", store: Store | None = None) -> Tensor:
    """The float32 values of a quantized tensor (the tensor itself if it is not quantized)."""
    params = tensor.meta.get(KEY)
    kind = scheme(tensor)
    if kind is None:
        return tensor
    path = store.path if store is not None else None
    if tensor.dtype.kind not in "iuf" and dtype_name(tensor.dtype) not in ("int4", "uint4"):
        raise CorruptFileError(f"{name!r}: quantization parameters on a "
                               f"{dtype_name(tensor.dtype)} tensor", path)
    if kind == "affine":
        out = _affine(tensor, params, name, path)
    elif kind == "min_scale":
        out = _min_scale(tensor, params, name, path)
    elif kind == "cast":
        out = Tensor(tensor.shape, FLOAT32,
                     lambda index: np.asarray(tensor[index]).astype(np.float32))
    elif kind == "blockwise" and store is not None:
        out = _blockwise(tensor, params, name, store)
    else:
        raise UsageError(f"{name!r}: cannot dequantize quantization scheme {kind!r}", path)
    meta = {k: v for k, v in tensor.meta.items() if k != KEY}
    meta["dequantized"] = {"from": tensor.dtype_name, "scheme": kind,
                           "axis": params.get("axis") if kind == "affine" else None}
    return Tensor(out.shape, out.dtype, out._get, meta)


def dequantize(store: Store) -> Store:
    """The store with every quantized tensor replaced by its float32 values (lazily)."""
    tensors = {name: dequantize_tensor(t, name, store) if is_quantized(t) else t
               for name, t in store.items()}
    return store.replace(tensors)
