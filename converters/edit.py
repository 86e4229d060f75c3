"""Edits of a store: lazy, chainable operations that each return a new store.

    import weightkit
    with weightkit.load("model.h5") as store:
        edited = (weightkit.edit(store)
                  .rename(r"^dense/", "fc/")
                  .drop("*/bias")
                  .cast("fc/*", "float16")
                  .prune("fc/kernel", 0.5))
        weightkit.save(edited, "model.safetensors")
        for e in edited.edits:
            print(e.op, e.name, e.detail, e.measure())

Nothing is read when an operation is chained: a transformed tensor reads its source only when
its own data is read (a prune reads its tensor once more to find the threshold), so editing one
variable of a large file never reads the others. Every tensor keeps its `meta` (original key,
role, format namespaces) and the store keeps its format and metadata, so a writer of the source
format puts each variable back where it came from. A rename changes the canonical name (what
safetensors, npz, `diff` and `--like` templates see); the original key stays, so that a writer of
the source format finds the variable and writes the new name into the file (or refuses it as a
loss, where the file cannot hold it).

Names are matched with shell globs (`fnmatch`, case-sensitive) against the canonical name or the
original key (`names.match`), or, for `rename`, a Python regular expression applied with
`re.sub` to canonical names. `set` takes a canonical name, an original key or an alias. An
operation that matches nothing is an error naming the closest names, so that a typo never
passes silently. Numeric operations (`cast`, `scale`, `prune`) change floating-point
tensors and leave the other matches (integer counters, strings) as they are.
"""
from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dtypes import dtype_from_name, dtype_name, is_floating
from .errors import UsageError
from .names import OPTIMIZER_ROLES, lookup, match
from .store import Store, Tensor

Measure = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Edit:
    """What one operation did to one variable.

    `op` is the operation, `arg` its argument as given (`"dense/*=float16"`), `name` the
    variable (its new name after a rename), `detail` a short description of the change.
    `measure()` returns numbers that need the data (a cast's rounding error); it reads the
    source tensor on first call and caches the result.
    """

    op: str
    arg: str
    name: str
    detail: str
    measure: Measure = field(default=lambda: {}, compare=False, repr=False)


class EditedStore(Store):
    """A store with the log of edits that made it; every operation returns a new one.
    `flags`: errors name the operations as the command line's flags (`--scale`), not as the
    methods (`scale`)."""

    def __init__(self, tensors: Mapping[str, Tensor], *, edits: Iterable[Edit] = (),
                 flags: bool = False, **kwargs: Any):
        super().__init__(tensors, **kwargs)
        self.edits: tuple[Edit, ...] = tuple(edits)
        self.flags = flags

    def _then(self, tensors: Mapping[str, Tensor], edits: Iterable[Edit]) -> "EditedStore":
        return EditedStore(tensors, edits=(*self.edits, *edits), flags=self.flags,
                           format=self.format, meta=self.meta, path=self.path,
                           on_close=self._on_close, aliases=self.aliases)

    def _op(self, op: str) -> str:
        """Operation `op` as errors name it: the method, or the flag (`flags`)."""
        return f"--{op}" if self.flags else op

    def _match(self, op: str, pattern: str) -> list[str]:
        return match(self, pattern, self._op(op))

    def _floating(self, op: str, pattern: str) -> list[str]:
        names = self._match(op, pattern)
        chosen = [name for name in names if is_floating(self[name].dtype)]
        if not chosen:
            found = sorted({self[name].dtype_name for name in names})
            raise UsageError(f"{self._op(op)} {pattern!r}: expected floating-point variables, "
                             f"matched only {', '.join(found)}")
        return chosen

    def rename(self, pattern: str, repl: str) -> "EditedStore":
        """Rename with `re.sub(pattern, repl, name)`; refuses names that would collide."""
        arg, op = f"{pattern}={repl}", self._op("rename")
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise UsageError(f"{op}: invalid regular expression {pattern!r}: {exc}") from None
        tensors: dict[str, Tensor] = {}
        origin: dict[str, str] = {}
        edits = []
        for name, tensor in self.items():
            try:
                new = regex.sub(repl, name)
            except (re.error, IndexError) as exc:
                raise UsageError(f"{op}: invalid replacement {repl!r}: {exc}") from None
            if not new:
                raise UsageError(f"{op} {arg!r}: {name!r} would get an empty name")
            if new in origin:
                raise UsageError(f"{op} {arg!r}: {origin[new]!r} and {name!r} would both be "
                                 f"named {new!r}")
            origin[new] = name
            if new != name:
                edits.append(Edit("rename", arg, new, f"renamed from {name}"))
                if "key" not in tensor.meta:  # its key was its name (`names.py`): keep it
                    tensor = tensor.with_meta(key=name)
            tensors[new] = tensor
        if not edits:
            raise UsageError(f"{op} {pattern!r} changed none of {len(self)} variable(s); "
                             f"{_near(pattern, self)}")
        return self._then(tensors, edits)

    def drop(self, pattern: str) -> "EditedStore":
        """Remove the variables matching `pattern`."""
        gone = set(self._match("drop", pattern))
        return self._then({n: t for n, t in self.items() if n not in gone},
                          [Edit("drop", pattern, n, "dropped") for n in self if n in gone])

    def drop_optimizer(self) -> "EditedStore":
        """Remove the optimizer state: every variable of role `optimizer` or `counter`."""
        gone = [n for n, t in self.items() if t.role in OPTIMIZER_ROLES]
        if not gone:
            raise UsageError(f"{self._op('no-optimizer')}: expected optimizer state, found no variable of "
                             f"role optimizer or counter among {len(self)}")
        return self._then({n: t for n, t in self.items() if t.role not in OPTIMIZER_ROLES},
                          [Edit("no-optimizer", "", n, f"dropped ({self[n].role})")
                           for n in gone])

    def weights_only(self) -> "EditedStore":
        """Keep the model weights only: drop every variable of role `optimizer`, `counter` or
        `metric`."""
        gone = [n for n, t in self.items() if t.role != "weight"]
        if not gone:
            raise UsageError(f"{self._op('weights-only')}: expected optimizer or metric state, found only "
                             f"model weights among {len(self)}")
        return self._then({n: t for n, t in self.items() if t.role == "weight"},
                          [Edit("weights-only", "", n, f"dropped ({self[n].role})")
                           for n in gone])

    def keep(self, pattern: str) -> "EditedStore":
        """Keep only the variables matching `pattern`."""
        kept = set(self._match("keep", pattern))
        return self._then({n: t for n, t in self.items() if n in kept},
                          [Edit("keep", pattern, n, "dropped (not kept)")
                           for n in self if n not in kept])

    def cast(self, pattern: str, dtype: str | np.dtype) -> "EditedStore":
        """Cast floating-point variables to another floating dtype (rounding to nearest)."""
        try:
            target = dtype_from_name(dtype) if isinstance(dtype, str) else np.dtype(dtype)
        except UsageError as exc:
            raise UsageError(f"{self._op('cast')} {f'{pattern}={dtype}'!r}: {exc}") from None
        name_of_target = dtype_name(target)
        arg = f"{pattern}={name_of_target}"
        if not is_floating(target):
            raise UsageError(f"{self._op('cast')} {arg!r}: expected a floating-point dtype, "
                             f"received {name_of_target}")
        tensors = dict(self)
        edits = []
        for name in self._floating("cast", pattern):
            source = self[name]
            if source.dtype == target:
                continue
            tensors[name] = source.map(functools.partial(_cast, dtype=target), dtype=target)
            edits.append(Edit("cast", arg, name, f"{source.dtype_name} -> {name_of_target}",
                              functools.cache(functools.partial(cast_error, source, target))))
        return self._then(tensors, edits)

    def scale(self, pattern: str, factor: float) -> "EditedStore":
        """Multiply floating-point variables by `factor` (computed in float64, rounded once)."""
        factor = float(factor)
        if not math.isfinite(factor):
            raise UsageError(f"{self._op('scale')} {pattern!r}: expected a finite factor, received {factor}")
        tensors = dict(self)
        names = self._floating("scale", pattern)
        for name in names:
            dtype = self[name].dtype
            tensors[name] = self[name].map(
                lambda a, d=dtype: (a.astype(np.float64) * factor).astype(d))
        return self._then(tensors, [Edit("scale", f"{pattern}={factor:g}", n,
                                         f"multiplied by {factor:g}") for n in names])

    def prune(self, pattern: str, fraction: float) -> "EditedStore":
        """Zero the `round(fraction * size)` smallest-magnitude values of each matching
        floating-point tensor (ties broken by position: earlier elements first; NaN counts
        as the largest magnitude)."""
        fraction = float(fraction)
        if not 0.0 <= fraction <= 1.0:
            raise UsageError(f"{self._op('prune')} {pattern!r}: expected a fraction between 0 and 1, "
                             f"received {fraction:g}")
        tensors = dict(self)
        edits = []
        for name in self._floating("prune", pattern):
            tensor = self[name]
            count = round(fraction * tensor.size)
            if count == 0:
                continue
            tensors[name] = pruned(tensor, count)
            edits.append(Edit("prune", f"{pattern}={fraction:g}", name,
                              f"zeroed the {count:,} smallest of {tensor.size:,} values "
                              f"({100 * count / tensor.size:.1f}%)"))
        return self._then(tensors, edits)

    def set(self, name: str, array: Any) -> "EditedStore":
        """Replace the data of variable `name`; the shape and dtype must be the same (opaque
        bytes of the same item size count as the variable's bfloat16/float8 dtype)."""
        if self.resolve(name) is None:
            raise UsageError(f"{self._op('set')} {name!r}: no such variable (use "
                             f"{self._op('add')} for a new one); "
                             f"{_near(name, self)}")
        name = lookup(self, name)
        old = self[name]
        array = np.asarray(array.read() if isinstance(array, Tensor) else array)
        if (array.dtype.kind == "V" and array.dtype.names is None and old.dtype.kind == "V"
                and array.dtype.itemsize == old.dtype.itemsize):
            array = array.view(old.dtype)  # .npy holds bfloat16/float8 as opaque V2/V1 bytes
        array = _as_array(self._op("set"), name, array)
        if array.shape != old.shape or dtype_name(array.dtype) != old.dtype_name:
            raise UsageError(f"{self._op('set')} {name!r}: expected shape {old.shape} {old.dtype_name}, "
                             f"received shape {array.shape} {dtype_name(array.dtype)}")
        tensors = dict(self)
        tensors[name] = Tensor(old.shape, old.dtype, array.__getitem__, old.meta)
        return self._then(tensors, [Edit("set", name, name,
                                         f"replaced {_describe(old)}")])

    def add(self, name: str, array: Any) -> "EditedStore":
        """Add a new variable (role `weight`, no original key) at the end."""
        if name in self:
            raise UsageError(f"{self._op('add')} {name!r}: a variable of that name exists "
                             f"({_describe(self[name])}); use {self._op('set')} to replace it")
        if not name:
            raise UsageError(f"{self._op('add')}: expected a variable name, received an empty one")
        array = _as_array(self._op("add"), name, array)
        tensors = dict(self)
        tensors[name] = Tensor(array.shape, dtype_from_name(dtype_name(array.dtype)),
                               array.__getitem__, {"role": "weight"})
        return self._then(tensors, [Edit("add", name, name,
                                         f"added {_describe(tensors[name])}")])


def edit(store: Store, *, flags: bool = False) -> EditedStore:
    """Start a chain of edits on `store` (nothing is read or copied). `flags`: errors name the
    operations as `weightkit edit`'s flags (`--scale 'dense/*': ...`)."""
    if isinstance(store, EditedStore) and store.flags == flags:
        return store
    return EditedStore(dict(store.items()), edits=getattr(store, "edits", ()), flags=flags,
                       format=store.format, meta=store.meta,
                       path=store.path, on_close=store.close,
                       aliases=getattr(store, "aliases", None))


def cast_error(source: Tensor, target: np.dtype) -> dict[str, Any]:
    """Largest absolute rounding error of casting `source` to `target`, over values that stay
    finite, and how many finite values overflowed (to ±inf, or NaN in formats without inf)."""
    worst, overflow = 0.0, 0
    if np.can_cast(source.dtype, target, "safe"):
        return {"max_abs_error": worst, "overflow": overflow}
    for chunk in source.iter_chunks():
        before = chunk.astype(np.float64)
        after = _cast(chunk, target).astype(np.float64)
        finite = np.isfinite(before)
        lost = finite & ~np.isfinite(after)
        overflow += int(np.count_nonzero(lost))
        kept = finite & ~lost
        if kept.any():
            worst = max(worst, float(np.max(np.abs(after[kept] - before[kept]))))
    return {"max_abs_error": worst, "overflow": overflow}


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(dtype)


def pruned(tensor: Tensor, count: int) -> Tensor:
    """`tensor` with its `count` smallest-magnitude values set to zero, computed lazily.

    On first read the whole tensor is read once to find the threshold magnitude (np.partition)
    and, among values equal to it, the position of the last one to zero; every later read
    zeroes by comparison alone, part by part.
    """
    plan: dict[str, Any] = {}

    def threshold() -> dict[str, Any]:
        if not plan:
            magnitudes = _magnitude(tensor.read().reshape(-1))
            limit = np.partition(magnitudes, count - 1)[count - 1]
            below = int(np.count_nonzero(magnitudes < limit))
            ties = np.flatnonzero(magnitudes == limit)
            plan.update(limit=limit, last=int(ties[count - below - 1]),
                        all_ties=count - below == ties.size)
        return plan

    def get(index: tuple) -> np.ndarray:
        values = np.array(tensor[index], copy=True)
        p = threshold()
        magnitudes = _magnitude(values)
        zero = magnitudes < p["limit"]
        tie = magnitudes == p["limit"]
        if p["all_ties"]:
            zero |= tie
        elif tie.any():
            zero |= tie & (flat_positions(tensor.shape, index) <= p["last"])
        values[zero] = 0
        return values

    return Tensor(tensor.shape, tensor.dtype, get, tensor.meta)


def _magnitude(values: np.ndarray) -> np.ndarray:
    work = np.float64 if values.dtype.itemsize > 4 else np.float32
    magnitudes = np.abs(np.asarray(values).astype(work))
    magnitudes[np.isnan(magnitudes)] = np.inf
    return magnitudes


def flat_positions(shape: tuple[int, ...], index: tuple) -> np.ndarray:
    """C-order positions, in an array of `shape`, of the elements `array[index]` selects
    (basic indexing), allocated only at the size of the selection."""
    positions: Any = np.int64(0)
    step = 1
    for axis in reversed(range(len(shape))):
        coords = np.lib.stride_tricks.as_strided(
            np.arange(shape[axis], dtype=np.int64), shape=shape,
            strides=tuple(8 if a == axis else 0 for a in range(len(shape))), writeable=False)
        positions = positions + coords[index] * step
        step *= shape[axis]
    return np.asarray(positions)


def _as_array(op: str, name: str, array: Any) -> np.ndarray:
    if isinstance(array, Tensor):
        array = array.read()
    array = np.asarray(array)
    try:
        dtype_name(array.dtype)
    except UsageError:
        hint = (" (numpy writes bfloat16 and float8 to .npy as opaque bytes; set them on an "
                "existing variable of that dtype)" if array.dtype.kind == "V" else "")
        raise UsageError(f"{op} {name!r}: expected an array of a dtype weightkit knows, "
                         f"received {array.dtype}{hint}") from None
    return array


def _describe(tensor: Tensor) -> str:
    return f"shape {tensor.shape} {tensor.dtype_name}"


def _near(word: str, store: Mapping[str, Tensor]) -> str:
    from .names import suggestion
    return suggestion(word, list(store))
