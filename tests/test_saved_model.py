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
