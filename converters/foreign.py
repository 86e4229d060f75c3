"""What a writer loses of a store read from another format: the other format's file structure.

Each format keeps what it needs to write its own file back in a `store.meta` namespace (its
record's `namespace`). A writer of another format cannot hold that namespace, so writing such a
store loses it (and with it the original keys, which are paths in that structure); `losses()`
of every writer names it with the phrase the owning format's record gives (`structure`).
"""
from __future__ import annotations

from collections.abc import Iterable

from . import registry
from .store import Store

KEPT_BY_ALL = ("source_format",)  # recorded again by every reader that carries it


def structure_losses(store: Store, carried: Iterable[str], like: Store | None = None) -> list[str]:
    """One phrase for each metadata namespace of `store` that a writer carrying only the
    namespaces `carried` loses. With a template (`like`) nothing is: the structure written is
    the template's, as asked."""
    if like is not None:
        return []
    kept = set(carried) | set(KEPT_BY_ALL)
    lost = []
    for key in store.meta:
        if key not in kept:
            owner = registry.by_namespace(key)
            lost.append(owner.structure if owner is not None and owner.structure
                        else f"store metadata {key!r}")
    return lost
