"""SavedModel variables read and rewritten without TensorFlow; TensorFlow serves the result."""
from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import weightkit
from conformance import FIXTURES, FormatConformance
from tf_cases import make_cases, run as tf_run
from weightkit.converters.errors import UnsafeFileError, UsageError
from weightkit.converters.store import Store, Tensor

SM = "saved-model"
GROUPS = {"tf": ["tf-savedmodel"], "keras3": ["keras3-export"], "tf_keras": ["tfkeras-savedmodel"]}
BIAS = {"tf-savedmodel": "b", "keras3-export": "d2/bias", "tfkeras-savedmodel": "d2/bias"}
OUTPUT = {"tf-savedmodel": "y"}


@pytest.fixture(scope="session")
def made(tmp_path_factory) -> dict[str, str]:
    return make_cases(tmp_path_factory.mktemp("sm_made"), GROUPS)


def same_tree(a: str, b: str) -> bool:
    compare = filecmp.dircmp(a, b)
    if compare.left_only or compare.right_only or compare.funny_files:
        return False
    if filecmp.cmpfiles(a, b, compare.common_files, shallow=False)[1:] != ([], []):
        return False
    return all(same_tree(os.path.join(a, d), os.path.join(b, d)) for d in compare.common_dirs)


@pytest.mark.tensorflow
def test_edited_bias_is_served(made, tmp_path):
    """Adding 1 to the last bias adds 1 to every output served by serving_default; in a Keras 3
    export every key sharing the full_name (variables/N and _all_variables/N) is updated."""
    jobs = {}
    for case, path in made.items():
        with weightkit.load(path) as store:
            assert store.format == SM
            bias = store[BIAS[case]]
            edited = store.replace({**store, BIAS[case]: Tensor.from_array(bias.read() + 1,
                                                                          bias.meta)})
            out = tmp_path / case
            weightkit.save(edited, out, SM)
            if case == "keras3-export":
                assert len(bias.meta["tf_checkpoint"]["keys"]) == 2
        jobs[case] = [["serve", path], ["serve", str(out)]]
    for case in made:
        before, after = tf_run(jobs[case])
        for name in before:
            assert np.allclose(np.asarray(after[name]), np.asarray(before[name]) + 1), case
        assert same_tree(os.path.join(made[case], "assets"), str(tmp_path / case / "assets"))
        for name in os.listdir(made[case]):
            if name != "variables" and os.path.isfile(os.path.join(made[case], name)):
                assert filecmp.cmp(os.path.join(made[case], name), tmp_path / case / name, False)
    dumped = tf_run([["dump", str(tmp_path / "keras3-export" / "variables" / "variables")]])[0]
    values = {key: v[2] for key, v in dumped.items()}
    with weightkit.load(tmp_path / "keras3-export") as store:
        keys = store["d2/bias"].meta["tf_checkpoint"]["keys"]
        assert len({values[k] for k in keys}) == 1


@pytest.mark.tensorflow
def test_unchanged_and_through_safetensors_are_identical(made, tmp_path):
    for case, path in made.items():
        with weightkit.load(path) as store:
            weightkit.save(store, tmp_path / f"{case}-same", SM)
            weightkit.save(store, tmp_path / f"{case}.safetensors")
        with weightkit.load(tmp_path / f"{case}.safetensors", "safetensors") as carried:
            weightkit.save(carried, tmp_path / f"{case}-back", SM)
        assert same_tree(path, str(tmp_path / f"{case}-same")), case
        assert same_tree(path, str(tmp_path / f"{case}-back")), case


@pytest.mark.tensorflow
def test_a_store_without_the_graph_needs_a_template(made, tmp_path):
    path = made["tf-savedmodel"]
    with weightkit.load(path) as template:
        plain = Store.from_arrays({n: t.read() * 3 for n, t in template.items()})
        with pytest.raises(UsageError, match="--like"):
            weightkit.save(plain, tmp_path / "nope", SM)
        assert not (tmp_path / "nope").exists()
        weightkit.save(plain, tmp_path / "out", SM, like=template)
    before, after = tf_run([["serve", path], ["serve", str(tmp_path / "out")]])
    assert np.allclose(np.asarray(after["y"]), np.asarray(before["y"]) * 3)


def _tiny_saved_model(directory: Path) -> Path:
    """A SavedModel-shaped directory (weightkit never parses saved_model.pb)."""
    directory.mkdir()
    (directory / "saved_model.pb").write_bytes(b"\x08\x01graph")
    (directory / "variables").mkdir()
    (directory / "assets").mkdir()
    weightkit.save(Store.from_arrays({"w": np.arange(4, dtype=np.float32)}),
                   directory / "variables" / "variables", "tf-checkpoint")
    return directory


def test_read_and_rewrite_without_tensorflow(tmp_path):
    sm = _tiny_saved_model(tmp_path / "sm")
    with weightkit.load(sm) as store:
        assert store.format == SM and list(store) == ["w"]
        weightkit.save(store.replace({"w": Tensor.from_array(store["w"].read() + 1,
                                                             store["w"].meta)}), tmp_path / "out",
                       SM)
    assert (tmp_path / "out" / "saved_model.pb").read_bytes() == b"\x08\x01graph"
    assert (tmp_path / "out" / "assets").is_dir()
    with weightkit.load(tmp_path / "out") as back:
        assert back["w"].read().tolist() == [1, 2, 3, 4]


def test_symlink_leaving_the_directory_is_refused(tmp_path):
    sm = _tiny_saved_model(tmp_path / "sm")
    outside = tmp_path / "secret"
    outside.write_bytes(b"x")
    os.symlink(outside, sm / "assets" / "link")
    with pytest.raises(UnsafeFileError):
        weightkit.load(sm)


def test_show_does_not_import_tensorflow(tmp_path):
    sm = _tiny_saved_model(tmp_path / "sm")
    code = ("import sys; from weightkit.cli.main import main; rc = main(['show', sys.argv[1]]); "
            "assert not [m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'tf_keras')], 'framework imported'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, str(sm)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "w" in done.stdout


class TestSavedModelConformance(FormatConformance):
    """SavedModel `variables/` under the graph files of a TF-written fixture (a store needs them
    to be written as a SavedModel; the variables are an ordinary TensorBundle)."""
    format = SM
    suffix = ""
    extra_dtypes = ("string", "complex64", "complex128", "float8_e4m3fn", "int4", "float64")
    lossy_dtypes = ("float8_e8m0fnu",)
    carries_metadata = False

    def adapt(self, store: Store) -> Store:
        if "saved_model" in store.meta:
            return store
        with weightkit.load(FIXTURES / "dense--tf-savedmodel") as fixture:
            graph = fixture.meta["saved_model"]
        return store.replace(meta={**store.meta, "saved_model": graph})

    def listing(self, directory: Path) -> dict[str, bytes]:
        return {str(p.relative_to(directory)): p.read_bytes()
                for p in sorted(directory.rglob("*")) if p.is_file()}

    def test_truncated_and_flipped_files_raise_weightkit_errors(self, tmp_path: Path) -> None:
        path = self.path(tmp_path, "fuzz")
        self.write(self.matrix_store(), path)
        rng = np.random.default_rng(0)
        for member in ("variables/variables.index", "variables/variables.data-00000-of-00001"):
            target = path / member
            data = target.read_bytes()
            damaged = [data[:cut] for cut in (0, 1, 8, len(data) // 2, len(data) - 1)]
            for position in rng.integers(0, len(data), 24):
                flipped = bytearray(data)
                flipped[position] ^= 1 << int(rng.integers(8))
                damaged.append(bytes(flipped))
            for content in damaged:
                target.write_bytes(content)
                try:
                    with weightkit.load(path, SM) as store:
                        for tensor in store.values():
                            tensor.read()
                except weightkit.WeightsError:
                    pass
            target.write_bytes(data)


# --- weights as constants of the graphs (no variables/) -------------------------------------------

from fixtures_lib import copy as copy_fixture, fixture, manifest, models  # noqa: E402
from weightkit.converters.carry import unb64  # noqa: E402

CONSTANTS = "dense--tf1-constants-savedmodel"


def _as_written_by_tensorflow(tmp_path: Path) -> Path:
    """The fixture as TensorFlow left it: with the empty `variables/` git does not keep."""
    path = copy_fixture(CONSTANTS, tmp_path)
    (path / "variables").mkdir()
    return path


def test_constants_read_as_tensorflow_reads_them(tmp_path: Path) -> None:
    """A TF1 export of a constant graph (two meta graphs, `serve` and `train`, holding the same
    constants) reads as the constants tf.make_ndarray gave when the fixture was made, without
    `variables/` (a fresh clone) and with an empty one (as TensorFlow wrote it)."""
    entry = manifest()[CONSTANTS]
    assert not (fixture(entry) / "variables").exists()
    want = [(c["name"], c["shape"], c["dtype"], c["sha256"]) for c in entry["graph_constants"]]
    for path in (fixture(entry), _as_written_by_tensorflow(tmp_path)):
        with weightkit.load(path) as store:
            assert store.format == SM
            got = [(n, list(t.shape), t.dtype_name, models.value_digest(t.read()))
                   for n, t in store.items()]
            assert got == want
            assert store["scale"].meta["saved_model"] == {"field": "float_val", "values": 1,
                                                          "packed": True}
            assert store["w"].meta["saved_model"] == {"field": "tensor_content"}


def test_constants_write_back_gives_the_same_directory(tmp_path: Path) -> None:
    for i, path in enumerate((fixture(CONSTANTS), _as_written_by_tensorflow(tmp_path))):
        with weightkit.load(path) as store:
            weightkit.save(store, tmp_path / f"same{i}", SM)
            weightkit.save(store, tmp_path / f"via{i}.safetensors")
        with weightkit.load(tmp_path / f"via{i}.safetensors") as carried:
            assert "saved_model.pb" in carried.meta["saved_model"]["files"]
            weightkit.save(carried, tmp_path / f"back{i}", SM)
        assert same_tree(str(path), str(tmp_path / f"same{i}"))
        assert same_tree(str(path), str(tmp_path / f"back{i}"))


def test_constants_metadata_holds_the_graph_without_its_values(tmp_path: Path) -> None:
    """saved_model.pb travels in the metadata without the constants' values (the weights are
    not carried twice)."""
    values = {"w": np.full((3, 2), 1234.5, np.float32)}
    with weightkit.load(fixture(CONSTANTS)) as store:
        edited = weightkit.edit(store).set("w", values["w"])
        weightkit.save(edited, tmp_path / "out", SM)
        skeleton = unb64(store.meta["saved_model"]["files"]["saved_model.pb"], "saved_model")
    pb = (tmp_path / "out" / "saved_model.pb").read_bytes()
    assert values["w"].tobytes() in pb and values["w"].tobytes() not in skeleton
    assert len(skeleton) < len(pb)


def test_constants_keep_their_dtype_shape_and_count(tmp_path: Path) -> None:
    with weightkit.load(fixture(CONSTANTS)) as store:
        with pytest.raises(UsageError, match="float32 constant of shape"):
            weightkit.save(weightkit.edit(store).cast("w", "float16"), tmp_path / "x", SM)
        with pytest.raises(UsageError, match="cannot drop"):
            weightkit.save(weightkit.edit(store).drop("b"), tmp_path / "x", SM)
        extra = store.replace({**store, "new": Tensor.from_array(np.zeros(2, np.float32))})
        with pytest.raises(UsageError, match="no Const node"):
            weightkit.save(extra, tmp_path / "x", SM)
    assert not (tmp_path / "x").exists()


def _with(store: Store, **values: np.ndarray) -> Store:
    """The store with some variables set (meta kept, as `edit --set` does) or added."""
    tensors = dict(store)
    for name, value in values.items():
        meta = store[name].meta if name in store else store[name.split("@")[0]].meta
        tensors[name] = Tensor.from_array(value, meta)
    return store.replace(tensors)


def test_a_copy_that_differs_between_meta_graphs_is_its_own_variable(tmp_path: Path) -> None:
    """`w@1` (meta graph 1's copy of `w`) given: that copy gets its own value, and the file
    then reads as `w` and `w@1`; without it every copy takes `w`."""
    with weightkit.load(fixture(CONSTANTS)) as store:
        w = store["w"].read()
        weightkit.save(_with(store, **{"w@1": w * 3}), tmp_path / "split", SM)
    with weightkit.load(tmp_path / "split") as split:
        assert list(split) == ["w", "b", "scale", "w@1"]
        assert split["w"].read().tobytes() == w.tobytes()
        assert split["w@1"].read().tobytes() == (w * 3).tobytes()
        weightkit.save(split, tmp_path / "same", SM)
    assert same_tree(str(tmp_path / "split"), str(tmp_path / "same"))


@pytest.mark.tensorflow
def test_tensorflow_serves_the_edited_constants(tmp_path: Path) -> None:
    """TensorFlow loads and serves SavedModels of constants weightkit edited: the TF1 fixture
    (with `scale` doubled every output doubles exactly, in both meta graphs; its own `w@1`
    serves only under `train`) and a TF2 `tf.saved_model.save` of tf.constants (its bias + 1)."""
    made = make_cases(tmp_path / "made", {"tf": ["tf-constants-savedmodel"]})
    with weightkit.load(fixture(CONSTANTS)) as store:
        assert len(store) == 3  # the `train` graph's copies are the same variables
        weightkit.save(weightkit.edit(store).scale("scale", 2.0), tmp_path / "doubled", SM)
        weightkit.save(_with(store, **{"w@1": store["w"].read() * 0}), tmp_path / "split", SM)
    tf2 = made["tf-constants-savedmodel"]
    with weightkit.load(tf2) as store:
        assert store.format == SM
        assert not [n for n in store if "traced_save" in n or "traced_restore" in n]
        (bias,) = [n for n, t in store.items() if t.shape == (3,)]
        weightkit.save(_with(store, **{bias: store[bias].read() + 1}), tmp_path / "tf2", SM)
    plain = str(fixture(CONSTANTS))
    jobs = [["serve", plain, ["serve"]], ["serve", str(tmp_path / "doubled"), ["serve"]],
            ["serve", str(tmp_path / "doubled"), ["train"]],
            ["serve", plain, ["train"]], ["serve", str(tmp_path / "split"), ["serve"]],
            ["serve", str(tmp_path / "split"), ["train"]],
            ["serve", tf2], ["serve", str(tmp_path / "tf2")]]
    base, doubled, doubled_train, base_train, split, split_train, before, after = tf_run(jobs)
    y = np.asarray(base["y"], np.float32)
    assert np.asarray(base_train["y"], np.float32).tobytes() == y.tobytes()
    for served in (doubled, doubled_train):
        assert np.asarray(served["y"], np.float32).tobytes() == (y * np.float32(2)).tobytes()
    assert np.asarray(split["y"], np.float32).tobytes() == y.tobytes()
    with weightkit.load(fixture(CONSTANTS)) as store:  # x @ 0 + b, times scale
        b, scale = store["b"].read(), store["scale"].read()
    expected = np.broadcast_to((b * scale).astype(np.float32), y.shape)
    assert np.asarray(split_train["y"], np.float32).tobytes() == expected.tobytes()
    assert np.allclose(np.asarray(after["y"]), np.asarray(before["y"]) + 1)
