"""Access to the committed fixtures for tests: the manifest, paths, and `fixtures/models.py`.

    from fixtures_lib import models, manifest, fixture, select

    entry = manifest()["mlp--keras3.weights.h5"]
    path = fixture(entry)                       # the path to hand to weightkit
    mine = copy(entry, tmp_path)                # a copy to modify
    model = models.build(entry["case"], entry["framework"], optimizer=entry["optimizer"])

Importing this module imports no framework (models.py imports one only when a builder runs).
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MANIFEST = FIXTURES / "manifest.json"


def _load_models() -> Any:
    spec = importlib.util.spec_from_file_location("weightkit_fixture_models", FIXTURES / "models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


models = _load_models()


@cache
def _manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text())


def manifest() -> dict[str, dict[str, Any]]:
    """{fixture name: entry} from fixtures/manifest.json."""
    return _manifest()["fixtures"]


def fixture(entry_or_name: dict[str, Any] | str) -> Path:
    """The path of a fixture (a file, a checkpoint prefix or a directory) by entry or name."""
    name = entry_or_name if isinstance(entry_or_name, str) else entry_or_name["path"]
    return FIXTURES / name


def copy(entry_or_name: dict[str, Any] | str, dest: Path) -> Path:
    """Copy every file of a fixture into directory `dest` (tests never write into fixtures/);
    returns the copy's path, to use like `fixture()`."""
    entry = manifest()[entry_or_name] if isinstance(entry_or_name, str) else entry_or_name
    for name in entry["files"]:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURES / name, target)
    return dest / entry["path"]


def select(**fields: Any) -> list[dict[str, Any]]:
    """The entries whose fields equal every given value, e.g. `select(format="keras-h5")`."""
    return [e for e in manifest().values() if all(e.get(k) == v for k, v in fields.items())]


# The nested models of a case: the layers of each, which the framework's names leave out of the
# path (Keras 3 `enc_dense/kernel`, tf_keras `enc_dense/kernel:0`) and weightkit keeps.
NESTED_MODELS = {"nested": {"encoder": ("enc_dense", "enc_bn")}}


def canonical_name(entry: dict[str, Any], name: str) -> str:
    """The name weightkit gives the variable the manifest lists as `name`: the framework's
    name without `:0`, inside its nested model's scope (`encoder/enc_dense/kernel`)."""
    name = name.removesuffix(":0")
    for model, layers in NESTED_MODELS.get(entry["case"], {}).items():
        if name.split("/")[0] in layers:
            return f"{model}/{name}"
    return name


def canonical_names(entry: dict[str, Any], optimizer: bool = False) -> list[str]:
    """`canonical_name` of every model variable of a manifest entry (and of the optimizer's,
    which keep Keras' own names)."""
    names = [canonical_name(entry, v["name"]) for v in entry["variables"]]
    if optimizer:
        names += [v["name"].removesuffix(":0") for v in entry.get("optimizer_variables") or []]
    return names


def diff_pairs() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(before, after) entries of the same format: real pairs for wdiff tests."""
    pairs = []
    for before in select(side="before"):
        for after in select(side="after", diff_pair=before["diff_pair"], layout=before["layout"]):
            pairs.append((before, after))
    return pairs


def same_weights() -> dict[str, list[dict[str, Any]]]:
    """{weights_id: entries} for groups of two or more fixtures holding the same model weights
    (e.g. a tf_keras model as .h5 and as a checkpoint): cross-format identity cases."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest().values():
        groups.setdefault(entry["weights_id"], []).append(entry)
    return {k: v for k, v in groups.items() if len(v) > 1}
