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
from .engine import DiffResult, Entry, Options, diff_entries


class ChecksumDiffResult(DiffResult):
    """A `DiffResult` whose pairs were compared by recorded checksums, not by values."""


def _checksum(tensor: Tensor) -> str | None:
    checksum = tensor.meta.get("checksum")
    return checksum if isinstance(checksum, str) else None


def diff_checksums(a: Store, b: Store, opts: Options | None = None) -> ChecksumDiffResult:
    """Compare store A with store B by the checksums their tensors carry: one entry per
    variable, in A's order, then what only B has; and a summary as the engine gives."""
    opts = opts or Options()
    renames = a.format == b.format

    def content(side: str, name: str) -> Hashable:
        checksum = _checksum((a if side == "a" else b)[name])
        return checksum if checksum is not None else (side, name)  # never equal across sides

    def settle(paired: list[Entry]) -> None:
        for entry in paired:
            if entry.status != "same":  # shape or dtype changed
                continue
            checksum = _checksum(a[entry.name_a])
            if checksum is None or checksum != _checksum(b[entry.name_b]):
                entry.status = "changed"
            elif renames and entry.matched_by == "values":
                entry.status = "renamed"

    # With every statistic null, no element counts as compared.
    entries, summary = diff_entries(a, b, opts, content, settle)
    return ChecksumDiffResult(entries, summary, opts)
