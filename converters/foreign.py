"""What a writer loses of a store read from another format: the other format's file structure.

Each format keeps what it needs to write its own file back in a `store.meta` namespace (its
record's `namespace`). A writer of another format cannot hold that namespace, so writing such a
store loses it (and with it the original keys, which are paths in that structure); `losses()`
of every writer names it with the phrase the owning format's record gives (`structure`).
"""
from __future__ import annotations

from collections.abc import Iterable

from . import registry
from .errors import UsageError
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
    # The origin's namespace in its variables' meta (npz: the string dtype each array had). Only
    # the origin's: what a reader on the way added (a round trip through npz or .tflite) was
    # never in the file, so writing it elsewhere loses nothing of it.
    origin = store.meta.get("source_format", store.format)
    try:
        namespace = registry.get(origin).namespace if isinstance(origin, str) else None
    except UsageError:  # an origin no format here knows: nothing of its to lose
        namespace = None
    if namespace and namespace not in kept and namespace not in store.meta and any(
            namespace in tensor.meta for tensor in store.values()):  # (else said just above)
        owner = registry.by_namespace(namespace)
        if owner is not None and owner.structure:
            lost.append(f"{owner.structure} of its variables")
    return lost


def reader_added(store: Store) -> set[str]:
    """The variables' metadata namespaces that only the store's own reader added: for a store
    read from a file that carries another format's variables (a TF.js model round-tripped
    through a `.tflite` weights container), the container's own per-variable facts (its tensor
    table). They were never in the origin's file: writing the variables elsewhere may leave
    them out, and a writer that records its variables' metadata in its file should, or a round
    trip through the container would change that file."""
    origin = store.meta.get("source_format")
    if not isinstance(origin, str) or origin == store.format:
        return set()
    try:
        namespace = registry.get(store.format).namespace
    except UsageError:
        return set()
    return {namespace} if namespace else set()
