"""What a writer loses of a store read from another format: the other format's file structure.

Each format keeps what it needs to write its own file back in a `store.meta` namespace. A writer
of another format cannot hold that namespace, so writing such a store loses it (and with it the
original keys, which are paths in that structure); `losses()` of every writer names it.
"""
from __future__ import annotations

from collections.abc import Iterable

from .store import Store

STRUCTURES = {
    "keras_h5": "the keras_h5 file structure (model_config, training_config, attributes)",
    "keras_weights_h5": "the keras_weights_h5 file structure (layer groups, attributes)",
    "keras": "the .keras archive (config.json, metadata.json, layer paths)",
    "tf_checkpoint": "the tf_checkpoint object graph and its keys",
    "saved_model": "the saved_model graph (saved_model.pb, assets)",
}
# Per-tensor namespaces (in `tensor.meta`) that only their own format writes back.
TENSOR_STRUCTURES = {"npz": "the npz string dtypes (U or S, their width)"}
KEPT_BY_ALL = ("source_format",)  # recorded again by every reader that carries it


def structure_losses(store: Store, carried: Iterable[str], like: Store | None = None) -> list[str]:
    """One phrase for each metadata namespace of `store` that a writer carrying only the
    namespaces `carried` loses. With a template (`like`) nothing is: the structure written is
    the template's, as asked."""
    if like is not None:
        return []
    kept = set(carried) | set(KEPT_BY_ALL)
    lost = [STRUCTURES.get(key, f"store metadata {key!r}") for key in store.meta if key not in kept]
    in_tensors = {key for tensor in store.values() for key in tensor.meta
                  if key in TENSOR_STRUCTURES and key not in kept}
    return lost + [TENSOR_STRUCTURES[key] for key in sorted(in_tensors)]
