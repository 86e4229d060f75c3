"""Comparing two stores by the checksums their files record, without reading any value.

A TF checkpoint's `.index` lists, for every variable, its dtype, shape and the crc32c of its
bytes, while the values sit in `.data-*` files that git does not hand a diff driver.
`converters.checkpoint.read_index` reads such an index into a store whose tensors carry
`meta["checksum"]` and cannot be read; `diff_checksums` compares two of them.

The result is the engine's plain data (`Entry`, `DiffResult`, see `schema.json`): statuses
`added`, `removed`, `shape_changed`, `dtype_changed`, `changed` (checksums differ), `same`
(checksums equal) and `renamed` (a pair found by equal checksum under another name); every
value statistic is null and no element counts as compared. Variables are paired as the engine
pairs them (`match.py`), with the checksum standing in for the content hash.
"""
from __future__ import annotations

from collections.abc import Hashable

from ..converters.store import Store, Tensor
from .engine import DiffResult, Entry, Options, _summary, select
from .match import Var, match


class ChecksumDiffResult(DiffResult):
    """A `DiffResult` whose pairs were compared by recorded checksums, not by values."""


def _checksum(tensor: Tensor) -> str | None:
    checksum = tensor.meta.get("checksum")
    return checksum if isinstance(checksum, str) else None


def _entry(name_a: str | None, name_b: str | None, ta: Tensor | None, tb: Tensor | None,
           matched_by: str | None, renames: bool) -> Entry:
    if ta is None or tb is None:
        status = "added" if ta is None else "removed"
    elif ta.shape != tb.shape:
        status = "shape_changed"
    elif ta.dtype != tb.dtype:
        status = "dtype_changed"
    elif _checksum(ta) is None or _checksum(ta) != _checksum(tb):
        status = "changed"
    else:
        status = "renamed" if renames and matched_by == "values" else "same"
    either = ta if ta is not None else tb
    return Entry(
        name=name_a if name_a is not None else name_b, status=status, name_a=name_a,
        name_b=name_b, role=either.role,
        shape_a=None if ta is None else list(ta.shape), shape_b=None if tb is None else list(tb.shape),
        dtype_a=None if ta is None else ta.dtype_name, dtype_b=None if tb is None else tb.dtype_name,
        size=either.size, matched_by=matched_by)


def diff_checksums(a: Store, b: Store, opts: Options | None = None) -> ChecksumDiffResult:
    """Compare store A with store B by the checksums their tensors carry: one entry per
    variable, in A's order, then what only B has; and a summary as the engine gives."""
    opts = opts or Options()
    stores = {"a": a, "b": b}
    vars_a = [Var(n, a[n].role, a[n].shape, a[n].dtype_name) for n in select(a, opts)]
    vars_b = [Var(n, b[n].role, b[n].shape, b[n].dtype_name) for n in select(b, opts)]

    def fingerprint(side: str, name: str) -> Hashable:
        checksum = _checksum(stores[side][name])
        return checksum if checksum is not None else (side, name)  # never equal across sides

    matching = match(vars_a, vars_b, opts.match, fingerprint)
    renames = a.format == b.format
    entries = [_entry(p.a, p.b, a[p.a], b[p.b], p.matched_by, renames) for p in matching.pairs]
    entries += [_entry(n, None, a[n], None, None, renames) for n in matching.only_a]
    order = {v.name: i for i, v in enumerate(vars_a)}
    entries.sort(key=lambda e: order[e.name_a])
    entries += [_entry(None, n, None, b[n], None, renames) for n in matching.only_b]
    # The engine's summary: with every statistic null, no element counts as compared.
    summary = _summary(entries, vars_a, vars_b, matching)
    return ChecksumDiffResult(entries, summary, opts)
