"""The committed fixtures match their manifest, stay small, and cover what the other tests need.
No TensorFlow here: only the files, the manifest and h5py."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from fixtures_lib import FIXTURES, copy, diff_pairs, fixture, manifest, models, same_weights, select

SOURCES = {"make_fixtures.py", "models.py", "tflite_fixtures.py", "demo.sh", "manifest.json"}
BUDGET = 5 * 1024 * 1024 // 2  # 2.5 MiB: the names cases (nested, renumbered, unicode, metric) add 0.5 MiB
NAME = re.compile(r"^(?P<case>[a-z0-9]+)--(?P<variant>[a-z0-9-]+?)(?P<ext>\.[a-z0-9.]+)?$")
FIELDS = {"path", "files", "case", "builder", "framework", "framework_version", "layout", "format",
          "optimizer", "optimizer_kind", "weights_id"}
FORMATS = {"saved-model", "tf-checkpoint", "keras", "keras-weights-h5", "keras-h5", "tflite",
           "tfjs", "tf-graphdef"}


def _on_disk() -> set[str]:
    return {str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_every_listed_file_exists_and_every_file_is_listed_once():
    listed = [f for e in manifest().values() for f in e["files"]]
    assert len(listed) == len(set(listed)), "a file belongs to two fixtures"
    assert set(listed) <= _on_disk(), sorted(set(listed) - _on_disk())
    assert _on_disk() - set(listed) <= SOURCES, sorted(_on_disk() - set(listed) - SOURCES)


@pytest.mark.parametrize("name", ["mlp--tfkeras.ckpt", "mlp--keras3-export", "mlp--keras3-sharded.weights.json"])
def test_copy_brings_every_file(tmp_path, name):
    path = copy(name, tmp_path)
    assert path == tmp_path / name
    copied = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert copied == set(manifest()[name]["files"])
    assert all((tmp_path / f).read_bytes() == (FIXTURES / f).read_bytes() for f in copied)


def test_total_size_under_budget():
    total = sum((FIXTURES / f).stat().st_size for f in _on_disk())
    assert total < BUDGET, f"fixtures take {total} bytes, budget {BUDGET}"


@pytest.mark.parametrize("name", sorted(manifest()))
def test_entry_is_complete_and_named_by_case(name):
    entry = manifest()[name]
    assert FIELDS <= set(entry), FIELDS - set(entry)
    assert entry["path"] == name
    match = NAME.match(Path(name).name)
    assert match and match["case"] == entry["case"], name
    assert entry["format"] in FORMATS
    path = fixture(entry)
    assert path.exists() or Path(f"{path}.index").exists()
    if entry["builder"] is not None:
        assert models.BUILDERS[entry["case"]].__name__ == entry["builder"]
        assert entry["variables"], "a Keras fixture lists its model variables"
        assert bool(entry["optimizer_variables"]) == entry["optimizer"]
        assert (entry["optimizer_kind"] in models.OPTIMIZERS) == entry["optimizer"]
    if entry["format"] in {"tf-checkpoint", "saved-model"}:
        assert entry.get("checkpoint_keys") or entry.get("graph_constants")


def test_models_and_lib_import_no_framework():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import fixtures_lib; "
            "fixtures_lib.models.sample_data('lstm'); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_diff_pairs_cover_both_frameworks_in_hdf5_and_checkpoint():
    kinds = {(b["framework"], b["format"]) for b, a in diff_pairs()}
    assert {("keras3", "keras-weights-h5"), ("keras3", "tf-checkpoint"),
            ("tf_keras", "keras-h5"), ("tf_keras", "tf-checkpoint")} <= kinds
    for before, after in diff_pairs():
        assert after["train_steps"] == before["train_steps"] + 1


def test_cross_format_identity_groups():
    formats = {wid: {e["format"] for e in group} for wid, group in same_weights().items()}
    assert {"keras-h5", "tf-checkpoint"} <= formats["mlp-tf_keras-2"]
    assert {"keras-weights-h5", "keras"} <= formats["mlp-keras3-2"]


def test_tf_keras_chunked_attributes():
    with h5py.File(fixture("deep--tfkeras-full.h5"), "r") as f:
        assert {"layer_names0", "layer_names1"} <= set(f["model_weights"].attrs)
        assert "layer_names" not in f["model_weights"].attrs
        assert {"weight_names0", "weight_names1"} <= set(f["optimizer_weights"].attrs)


def test_bfloat16_stored_as_bfloat16():
    with h5py.File(fixture("bf16--keras3.weights.h5"), "r") as f:
        ds = f["layers/dense/vars/0"]
        assert ds.attrs["dtype"] == "bfloat16" and ds.dtype.itemsize == 2
    assert {v["dtype"] for v in manifest()["bf16--keras3.ckpt"]["variables"]} == {"bfloat16"}
    assert {v["dtype"] for v in manifest()["bf16mixed--keras3.weights.h5"]["variables"]} == {"float32"}


def test_sharded_layouts_have_several_shards():
    assert len(manifest()["mlp--keras3-sharded.weights.json"]["files"]) > 2
    data = [f for f in manifest()["sharded--tf2.ckpt"]["files"] if ".data-" in f]
    assert len(data) > 1


def test_checkpoint_dtypes_cover_the_matrix():
    dtypes = {k["dtype"] for k in select(case="dtypes")[0]["checkpoint_keys"]}
    assert {"float32", "float64", "float16", "bfloat16", "int8", "int64", "bool", "complex64",
            "string"} <= dtypes
    shapes = [k["shape"] for k in select(case="dtypes")[0]["checkpoint_keys"]]
    assert [] in shapes and [0, 3] in shapes


def _framework_entries(*frameworks: str) -> list[str]:
    return sorted(n for n, e in manifest().items() if e["framework"] in frameworks)


@pytest.mark.tensorflow
@pytest.mark.parametrize("name", [n for n in _framework_entries("keras3", "tf_keras")
                                  if manifest()[n]["layout"] in models.LOADABLE_LAYOUTS])
def test_framework_restores_the_recorded_values(name):
    """The framework loads each Keras fixture (through models.restore, as tests of converted files
    will) and gets exactly the values the manifest recorded when the file was written."""
    entry = manifest()[name]
    restored = models.restored_weights(entry)
    recorded = entry["variables"]
    if entry["layout"] not in models.SLOTS_NOT_RESTORED:
        recorded = recorded + entry["optimizer_variables"]
    # By position: tf_keras load_model names slots differently from training (see restored_weights).
    got = [(list(a.shape), str(a.dtype), models.value_digest(a)) for a in restored.values()]
    assert got == [(v["shape"], v["dtype"], v["sha256"]) for v in recorded]


@pytest.mark.tensorflow
@pytest.mark.parametrize("name", sorted(n for n, e in manifest().items() if "checkpoint_keys" in e))
def test_checkpoint_keys_match_tensorflow(name):
    import tensorflow as tf
    entry = manifest()[name]
    path = fixture(entry)
    if entry["format"] == "saved-model":
        path = path / "variables" / "variables"
    elif path.is_dir():
        path = tf.train.latest_checkpoint(str(path))
    reader = tf.train.load_checkpoint(str(path))
    dtypes = reader.get_variable_to_dtype_map()
    got = [(k, list(shape), dtypes[k].name, models.value_digest(reader.get_tensor(k)))
           for k, shape in tf.train.list_variables(str(path))]
    assert got == [(v["name"], v["shape"], v["dtype"], v["sha256"]) for v in entry["checkpoint_keys"]]
