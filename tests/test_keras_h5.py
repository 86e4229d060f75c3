"""keras-h5: tf.keras full-model and save_weights .h5, Keras 3 legacy .h5, plain HDF5.

Exact write-back is checked on every committed fixture of the format (the whole HDF5 tree:
groups, attributes with their HDF5 types, datasets), directly and through safetensors; the
frameworks load what we write with bit-identical weights and optimizer state; hostile HDF5 is
refused before any data is read."""
from __future__ import annotations

from pathlib import Path

import h5py
import ml_dtypes
import numpy as np
import pytest

import weightkit
from conformance import FormatConformance
from fixtures_lib import canonical_names, fixture, select
from keras_lib import h5_tree, oracle
from weightkit.converters import keras_h5
from weightkit.converters.errors import CorruptFileError, UnsafeFileError, WeightsError
from weightkit.converters.store import Store

ENTRIES = select(format="keras-h5")
IDS = [e["path"] for e in ENTRIES]


class TestKerasH5Conformance(FormatConformance):
    format = "keras-h5"
    suffix = ".h5"
    extra_dtypes = ("float64", "complex64", "complex128", "uint8", "int16", "uint16", "int32",
                    "uint32", "uint64", "float8_e4m3fn", "float8_e5m2")
    lossy_dtypes = ("int4", "string")
    carries_metadata = False

    def names(self, n: int) -> list[str]:
        return [f"dense_{i}/kernel" for i in range(n)]


def test_fixtures_cover_every_layout() -> None:
    assert {e["layout"] for e in ENTRIES} == {"tfkeras-full-h5", "tfkeras-weights-h5",
                                             "keras3-legacy-h5"}


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_canonical_names_roles_and_values(entry: dict) -> None:
    path = fixture(entry)
    with weightkit.load(path) as store, h5py.File(path, "r") as f:
        assert store.format == "keras-h5"
        weights = [n for n, t in store.items() if t.role == "weight"]
        expected = canonical_names(entry)
        assert sorted(weights) == sorted(expected)
        optimizer = {n: t.role for n, t in store.items() if t.role != "weight"}
        assert len(optimizer) == len(entry.get("optimizer_variables", []))
        if optimizer:
            counters = [n for n, r in optimizer.items() if r == "counter"]
            assert counters in (["iteration"], ["adam/iteration"], ["Adam/iter"]), counters
        for tensor in store.values():
            ds = f[tensor.meta["key"]]
            assert ds.shape == tensor.shape
            np.testing.assert_array_equal(ds[()], tensor.read())


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_exact_write_back_direct_and_through_safetensors(entry: dict, tmp_path: Path) -> None:
    path = fixture(entry)
    want = h5_tree(path)
    direct, via, back = tmp_path / "direct.h5", tmp_path / "via.safetensors", tmp_path / "back.h5"
    with weightkit.load(path) as store:
        weightkit.save(store, direct)
        weightkit.save(store, via)
    with weightkit.load(via) as carried:
        weightkit.save(carried, back, "keras-h5")
    assert h5_tree(direct) == want
    assert h5_tree(back) == want


def test_chunked_attributes_are_read_and_kept(tmp_path: Path) -> None:
    """The `deep` fixture splits layer_names (and a weight_names) into numbered chunks."""
    path = fixture("deep--tfkeras-full.h5")
    with h5py.File(path, "r") as f:
        assert "layer_names" not in f["model_weights"].attrs
        assert "layer_names0" in f["model_weights"].attrs
    out = tmp_path / "deep.h5"
    with weightkit.load(path) as store:
        assert len([t for t in store.values() if t.role == "weight"]) == \
            len(select(path="deep--tfkeras-full.h5")[0]["variables"])
        weightkit.save(store, out)
    assert h5_tree(out) == h5_tree(path)


def test_crafted_chunked_fixed_length_attributes(tmp_path: Path) -> None:
    """tf_keras writes chunks as fixed-length byte strings, unchunked lists as vlen: both kept."""
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        f.attrs["backend"] = "tensorflow"
        f.attrs["keras_version"] = "2.21.0"
        f.attrs["layer_names0"] = np.array([b"a"], dtype="S1")
        f.attrs["layer_names1"] = np.array([b"bb"], dtype="S2")
        for layer in ("a", "bb"):
            g = f.create_group(layer)
            g.attrs["weight_names"] = [f"{layer}/kernel:0".encode()]
            g.create_dataset(f"{layer}/kernel:0", data=np.full((2, 2), len(layer), np.float32))
    out = tmp_path / "out.h5"
    with weightkit.load(path) as store:
        assert list(store) == ["a/kernel", "bb/kernel"]
        weightkit.save(store, out)
    assert h5_tree(out) == h5_tree(path)


def test_plain_hdf5_is_read_generically_with_bf16_tags(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    bf = np.arange(6, dtype=np.float32).astype(ml_dtypes.bfloat16).reshape(2, 3)
    with h5py.File(path, "w") as f:
        f.create_group("empty")
        ds = f.create_dataset("g/bf", data=bf.view("V2"))
        ds.attrs["dtype"] = "bfloat16"
        f.create_dataset("g/z", data=np.zeros((4, 5), np.int16), chunks=(2, 5),
                         compression="gzip", shuffle=True)
        f.create_dataset("flags", data=np.array([True, False]))
    out = tmp_path / "out.h5"
    with weightkit.load(path) as store:
        assert list(store) == ["flags", "g/bf", "g/z"]
        assert store["g/bf"].dtype == np.dtype(ml_dtypes.bfloat16)
        assert store["g/bf"].read().tobytes() == bf.tobytes()
        assert store["flags"].dtype == np.bool_
        weightkit.save(store, out)
    assert h5_tree(out) == h5_tree(path)


def test_foreign_store_builds_tf_keras_layouts(tmp_path: Path) -> None:
    kernel, bias = np.ones((3, 2), np.float32), np.zeros(2, np.float32)
    out = tmp_path / "w.h5"
    weightkit.save(Store.from_arrays({"d1/kernel": kernel, "d1/bias": bias}), out)
    with h5py.File(out, "r") as f:
        assert list(f.attrs["layer_names"]) == ["d1"]
        assert list(f["d1"].attrs["weight_names"]) == ["d1/kernel:0", "d1/bias:0"]
        assert f.attrs["keras_version"] and f.attrs["backend"] == "tensorflow"
        np.testing.assert_array_equal(f["d1/d1/kernel:0"][()], kernel)
    nested = Store.from_arrays({"sequential/d1/kernel": kernel, "sequential/d2/kernel": kernel})
    weightkit.save(nested, tmp_path / "n.h5")
    with h5py.File(tmp_path / "n.h5", "r") as f:
        assert list(f.attrs["layer_names"]) == ["d1", "d2"]
    with_opt = Store({"d1/kernel": Store.from_arrays({"x": kernel})["x"],
                      "iteration": Store.from_arrays({"x": np.int64(3)})["x"].with_meta(
                          role="counter")})
    weightkit.save(with_opt, tmp_path / "o.h5")
    with weightkit.load(tmp_path / "o.h5") as back:
        assert {n: t.role for n, t in back.items()} == {"d1/kernel": "weight",
                                                        "iteration": "counter"}


# -- hostile files -------------------------------------------------------------------------------

def _craft(tmp_path: Path, build) -> Path:
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        build(f, tmp_path)
    return path


def _external_link(f, d):
    f["x"] = h5py.ExternalLink(str(d / "other.h5"), "/data")


def _soft_link(f, d):
    f.create_dataset("a", data=np.ones(2))
    f["x"] = h5py.SoftLink("/a")


def _external_storage(f, d):
    (d / "raw.bin").write_bytes(b"\0" * 64)
    f.create_dataset("x", shape=(16,), dtype="f4", external=[(str(d / "raw.bin"), 0, 64)])


def _virtual(f, d):
    with h5py.File(d / "src.h5", "w") as src:
        src.create_dataset("data", data=np.ones(4))
    layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
    layout[:] = h5py.VirtualSource(str(d / "src.h5"), "data", shape=(4,))
    f.create_virtual_dataset("x", layout)


def _bomb(f, d):
    f.create_dataset("x", shape=(1 << 16, 1 << 16), dtype="f4")  # 16 GiB declared, none stored


def _compressed_bomb(f, d):
    ds = f.create_dataset("x", shape=(1 << 14, 1 << 14), dtype="f4", chunks=(1024, 1024),
                          compression="gzip")
    ds[:1024, :1024] = 0  # 4 MiB of zeros stored in a few KiB; 1 GiB declared


def _cycle(f, d):
    g = f.create_group("g")
    g["again"] = g


def _opaque_untagged(f, d):
    f.create_dataset("x", data=np.zeros(4, "V2"))


HOSTILE = {"external link": (_external_link, UnsafeFileError),
           "soft link": (_soft_link, UnsafeFileError),
           "external storage": (_external_storage, UnsafeFileError),
           "virtual dataset": (_virtual, UnsafeFileError),
           "declared far beyond stored": (_bomb, CorruptFileError),
           "decompression bomb": (_compressed_bomb, UnsafeFileError),
           "hard-link cycle": (_cycle, UnsafeFileError),
           "untagged opaque data": (_opaque_untagged, CorruptFileError)}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_hdf5_refused_before_reading(case: str, tmp_path: Path) -> None:
    build, error = HOSTILE[case]
    path = _craft(tmp_path, build)
    with pytest.raises(error):
        weightkit.load(path).close()


def test_unknown_filter_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        space = h5py.h5s.create_simple((8,))
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((8,))
        dcpl.set_filter(32001, h5py.h5z.FLAG_OPTIONAL)  # blosc: a plugin, not built in
        h5py.h5d.create(f.id, b"x", h5py.h5t.NATIVE_FLOAT, space, dcpl=dcpl)
    with pytest.raises(UnsafeFileError, match="plugin"):
        weightkit.load(path).close()


@pytest.mark.parametrize("content", [b"", b"\x89HDF\r\n\x1a\n" + b"\0" * 100, b"garbage" * 50])
def test_garbage_raises_weightkit_errors(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    path.write_bytes(content)
    with pytest.raises(WeightsError):
        keras_h5.read(str(path)).close()


# -- the frameworks as oracle --------------------------------------------------------------------

@pytest.mark.tensorflow
@pytest.mark.parametrize("framework", ["tf_keras", "keras3"])
def test_frameworks_load_our_files_bit_identically(framework: str, tmp_path: Path) -> None:
    """X -> safetensors -> X loads in the framework that wrote X with the same weights and
    optimizer state; a file with one value changed is caught (the oracle can fail)."""
    pairs, tampered = [], None
    for entry in [e for e in ENTRIES if e["framework"] == framework]:
        via = tmp_path / f"{entry['path']}.safetensors"
        out = tmp_path / entry["path"]
        with weightkit.load(fixture(entry)) as store:
            weightkit.save(store, via)
        with weightkit.load(via) as carried:
            weightkit.save(carried, out, "keras-h5")
            if tampered is None:
                name = next(n for n, t in carried.items() if t.role == "weight")
                changed = carried[name].map(lambda a: a + np.asarray(1, a.dtype))
                edited = carried.replace({**dict(carried), name: changed})
                tampered = (entry["path"], str(tmp_path / f"tampered-{entry['path']}"))
                weightkit.save(edited, tampered[1], "keras-h5")
        pairs.append((entry["path"], str(out)))
    result = oracle(framework, pairs + [tampered])
    assert result.pop(tampered[1]) != "same"
    assert result == {p: "same" for _, p in pairs}


@pytest.mark.tensorflow
def test_tf_keras_loads_a_file_built_from_canonical_names(tmp_path: Path) -> None:
    """A store with no HDF5 metadata (names only) becomes a save_weights file tf_keras loads."""
    source = "mlp--tfkeras-weights.h5"
    out = tmp_path / "from-names.h5"
    with weightkit.load(fixture(source)) as store:
        plain = Store.from_arrays({n: t.read() for n, t in store.items()})
    weightkit.save(plain, out)
    assert oracle("tf_keras", [(source, str(out))]) == {str(out): "same"}


@pytest.mark.tensorflow
def test_tf_keras_loads_h5_converted_from_its_checkpoints(tmp_path: Path) -> None:
    """A tf_keras checkpoint (another origin: no HDF5 meta, weights listed by key) -> keras-h5,
    directly and through safetensors: tf_keras `load_weights` gets every weight bit for bit, in
    each layer's creation order (kernel before bias; gamma, beta, moving mean, variance).
    The checkpoint's object graph has no place in HDF5: the conversion says so and needs
    allow_lossy."""
    how = {"layout": "tfkeras-weights-h5", "optimizer": False}
    pairs = []
    for entry in select(framework="tf_keras", format="tf-checkpoint"):
        if entry["builder"] is None:
            continue  # a training run (trend's fixture), not a models.py model to rebuild
        direct, via = tmp_path / f"{entry['path']}.h5", tmp_path / f"{entry['path']}.st"
        with weightkit.load(fixture(entry)) as store:
            assert "the tf-checkpoint object graph and its keys" in weightkit.losses(store, "keras-h5")
            weightkit.save(store, direct, "keras-h5", allow_lossy=True)
            weightkit.save(store, via, "safetensors")
        back = tmp_path / f"{entry['path']}-via.h5"
        with weightkit.load(via, "safetensors") as carried:
            weightkit.save(carried, back, "keras-h5", allow_lossy=True)
        pairs += [(entry["path"], str(direct), how), (entry["path"], str(back), how)]
    assert pairs
    assert oracle("tf_keras", pairs) == {p: "same" for _, p, _ in pairs}


def test_a_template_of_the_same_format_is_written_not_ignored(tmp_path: Path) -> None:
    """`--like` with a store of the template's own format: the template's structure is
    written (format.py's rule), a template of another model is refused; it was ignored (the
    store's own layout won, exit 0)."""
    out = tmp_path / "full.h5"
    weightkit.save(weightkit.load(fixture("mlp--tfkeras-weights.h5")), out,
                   like=weightkit.load(fixture("mlp--tfkeras-full.h5")))
    with h5py.File(out, "r") as f:
        assert "model_config" in f.attrs and "optimizer_weights" in f
    with pytest.raises(WeightsError, match="template has no place"):
        weightkit.save(weightkit.load(fixture("mlp--tfkeras-weights.h5")), tmp_path / "x.h5",
                       like=weightkit.load(fixture("conv--tfkeras-before-full.h5")))
    with pytest.raises(WeightsError, match="template has no place"):
        weightkit.save(weightkit.load(fixture("mlp--keras3.keras")), tmp_path / "x.keras",
                       like=weightkit.load(fixture("conv--keras3-before.keras")))
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "x.keras").exists()


def test_names_outside_a_layer_scope_are_a_declared_loss(tmp_path) -> None:
    """A weight named without a layer scope (an npz's `v0`) reads back from a tf.keras .h5 under
    its layer's name (`v0/v0`): writing it is a declared loss, so convert refuses without
    --allow-lossy and verify does not try the format by default (it said "different")."""
    from weightkit.converters.registry import losses
    from weightkit.diffing.verify import candidates
    store = weightkit.Store.from_arrays({"v0": np.ones(3, np.float32),
                                         "dense/kernel": np.ones((2, 2), np.float32)})
    lost = losses(store, "keras-h5")
    assert any("v0 -> v0/v0" in text and "dense/kernel" not in text for text in lost), lost
    with pytest.raises(weightkit.LossyConversionError, match="outside a layer's scope"):
        weightkit.save(store, tmp_path / "w.h5")
    assert "keras-h5" not in candidates(store)
    weightkit.save(store, tmp_path / "w.h5", allow_lossy=True)
    with weightkit.load(tmp_path / "w.h5") as back:
        assert list(back) == ["v0/v0", "dense/kernel"]
