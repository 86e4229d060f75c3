"""Names are the user's handle (issue 14): what a name or glob selects in every command, that
no two variables become one, that renames reach the file (or are refused as a loss), and that
non-ASCII and very long names come back byte for byte. Framework-written fixtures throughout;
`tensorflow` tests have the framework load what weightkit wrote."""
from __future__ import annotations

import difflib
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import weightkit
from fixtures_lib import fixture
from keras_lib import h5_tree, oracle
from weightkit.cli.main import main
from weightkit.converters.names import closest, natural_key, select, suggestion, unique_names
from weightkit.converters.store import Store, Tensor


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv], prog="weightkit")
    out, err = capsys.readouterr()
    return code, out, err


# -- one name, many spellings --------------------------------------------------------------------

def test_a_keras3_variable_answers_to_its_name_key_and_old_position() -> None:
    with weightkit.load(fixture("conv--keras3-before.keras")) as store:
        kernel = store["c1/kernel"]
        assert store["c1/0"] is kernel                               # weightkit's old name
        assert store["layers/conv2d/vars/0"] is kernel               # the key in the file
        assert store["bn/3"] is store["bn/moving_variance"]
        assert store["optimizer/2"] is store["adam/c1_kernel_momentum"]
        assert "c1/0" not in store and list(store)[0] == "c1/kernel"  # iteration: canonical
        with pytest.raises(KeyError, match=r"no variable named 'c1/kernal'; did you mean "
                                           r"'c1/kernel'"):
            store["c1/kernal"]


def test_names_and_keys_select_in_show(capsys) -> None:
    path = fixture("conv--keras3-before.keras")
    code, out, _ = run(capsys, "show", path, "--json", "--no-stats", "--filter", "*kernel*")
    assert code == 0
    assert [r["name"] for r in json.loads(out)["variables"]] == [
        "c1/kernel", "out/kernel", "adam/c1_kernel_momentum", "adam/c1_kernel_velocity",
        "adam/out_kernel_momentum", "adam/out_kernel_velocity"]
    code, out, _ = run(capsys, "show", path, "--json", "--no-stats", "--weights-only",
                       "--filter", "layers/batch_normalization/*")  # the file's own keys
    assert [r["name"] for r in json.loads(out)["variables"]] == [
        "bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance"]
    code, out, err = run(capsys, "show", path, "--filter", "bn/moving_varaince")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "did you mean 'bn/moving_variance'" in err
    code, out, _ = run(capsys, "show", path, "--values", "bn/3")
    assert code == 0 and out.startswith("bn/moving_variance: shape (4,) float32")


def test_nested_tf_keras_model_keeps_its_scope(capsys) -> None:
    """The issue's case: `show --filter 'encoder/*'` on a tf_keras model with a nested
    `encoder` printed 0 tensors and exited 0; now the six encoder variables, as in Keras 3."""
    for name in ("nested--tfkeras-full.h5", "nested--tfkeras-weights.h5",
                 "nested--keras3.keras", "nested--keras3-legacy.h5"):
        code, out, _ = run(capsys, "show", fixture(name), "--json", "--no-stats",
                           "--filter", "encoder/*")
        assert code == 0
        assert [r["name"] for r in json.loads(out)["variables"]] == [
            "encoder/enc_dense/kernel", "encoder/enc_dense/bias", "encoder/enc_bn/gamma",
            "encoder/enc_bn/beta", "encoder/enc_bn/moving_mean",
            "encoder/enc_bn/moving_variance"], name
    with weightkit.load(fixture("nested--tfkeras-full.h5")) as store:
        assert store["enc_dense/kernel"] is store["encoder/enc_dense/kernel"]  # its own name


@pytest.mark.parametrize("argv, message", [
    (["--include", "haed/*"], "--include 'haed/*' matched none of 36 variable(s); did you mean "
                              "'head/*'"),
    (["--exclude", "*"], "leaves none of 36"),
    (["--include", "adam/*", "--weights-only"], "leaves none"),
])
def test_diff_selections_that_select_nothing_exit_2(capsys, argv, message) -> None:
    code, out, err = run(capsys, "diff", fixture("nested--keras3.keras"),
                         fixture("nested--keras3-bnchanged.keras"), *argv)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1


def test_weights_only_leaves_out_optimizer_and_metric_state(capsys) -> None:
    def store(metric: float) -> Store:
        return Store({"d/kernel": Tensor.from_array(np.ones(2)),
                      "adam/m": Tensor.from_array(np.zeros(2), {"role": "optimizer"}),
                      "iteration": Tensor.from_array(np.int64(3), {"role": "counter"}),
                      "mae/total": Tensor.from_array(np.float32(metric), {"role": "metric"})})
    assert select(store(1), roles="no-optimizer") == ["d/kernel", "mae/total"]
    assert select(store(1), roles="weights") == ["d/kernel"]
    from weightkit.diffing.engine import Options, diff_stores
    assert diff_stores(store(1), store(2), Options(weights_only=True)).identical
    assert not diff_stores(store(1), store(2), Options(no_optimizer=True)).identical
    assert list(weightkit.edit(store(1)).weights_only()) == ["d/kernel"]
    assert list(weightkit.edit(store(1)).drop_optimizer()) == ["d/kernel", "mae/total"]


def test_edit_globs_reach_kernels_by_name(tmp_path, capsys) -> None:
    """The issue's case: `--scale '*kernel*=2'` on a .keras matched none of 47; now it scales
    the kernels (and their optimizer slots) and nothing else, and `--set` takes an old name."""
    source, out = fixture("conv--keras3-before.keras"), tmp_path / "out.keras"
    np.save(tmp_path / "g.npy", np.full(4, 2.0, np.float32))
    code, _, err = run(capsys, "edit", source, out, "--scale", "*/kernel=2",
                       "--set", f"bn/0={tmp_path / 'g.npy'}")
    assert code == 0, err
    with weightkit.load(source) as before, weightkit.load(out) as after:
        for name, tensor in before.items():
            want = tensor.read() * 2 if name in ("c1/kernel", "out/kernel") else tensor.read()
            if name == "bn/gamma":
                want = np.full(4, 2.0, np.float32)
            np.testing.assert_array_equal(after[name].read(), want, err_msg=name)
    code, _, err = run(capsys, "edit", source, tmp_path / "x.keras", "--set",
                       f"bn/gama={tmp_path / 'g.npy'}")
    assert code == 2 and "did you mean 'bn/gamma'" in err


# -- nothing merged, nothing overwritten ---------------------------------------------------------

def test_unique_names_never_merge_and_fallbacks_never_take_a_name() -> None:
    assert unique_names({"p": ["x", "p"], "q": ["x", "q"], "r": ["y"]}) == \
        {"p": "p", "q": "q", "r": "y"}                      # a shared name goes to neither
    assert unique_names({"p": ["x", "y"], "q": ["y"]}) == {"p": "x", "q": "y"}
    assert unique_names({"p": ["x", "y", "p"], "q": ["x", "q"], "r": ["y"]}) == \
        {"p": "p", "q": "q", "r": "y"}                      # `y` is r's own name: p skips it
    assert unique_names({"d": ["a/k"], "w": ["a/k", "model_weights/a/k"]}) == \
        {"d": "a/k", "w": "model_weights/a/k"}              # a dataset's path is its own
    with pytest.raises(ValueError, match="cannot give variable 'p' a unique name"):
        unique_names({"p": ["x", "z"], "q": ["x", "z"], "r": ["z"]})


def test_keras_h5_weights_with_one_name_stay_two(tmp_path) -> None:
    """Two layers whose weights Keras names alike (`a/b/k` as weight `b/k` of layer `a`, and
    as weight `a/b/k` of layer `b`): both keep their values, under their dataset paths."""
    path = tmp_path / "twin.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"a", b"b"]
        f.create_group("a").attrs["weight_names"] = [b"b/k:0"]
        f["a"].create_dataset("b/k:0", data=np.ones(2, np.float32))
        f.create_group("b").attrs["weight_names"] = [b"a/b/k:0"]
        f["b"].create_dataset("a/b/k:0", data=np.zeros(2, np.float32))
        f.create_dataset("plain", data=np.arange(3))
    with weightkit.load(path) as store:
        assert list(store) == ["a/b/k:0", "b/a/b/k:0", "plain"]
        assert store["a/b/k:0"].read().tolist() == [1, 1]
        assert store["b/a/b/k:0"].read().tolist() == [0, 0]


def test_keras3_layers_with_one_name_stay_two(tmp_path) -> None:
    """Two layers of a bare .weights.h5 both named `x` (as two nested models' `head` are in
    Keras' own paths): their variables keep the groups' paths, never one name for two."""
    path = tmp_path / "twin.weights.h5"
    with h5py.File(path, "w") as f:
        for group, value in (("layers/dense", 1.0), ("layers/dense_1", 2.0)):
            f.create_group(f"{group}/vars").attrs["name"] = "x"
            f[f"{group}/vars"].create_dataset("0", data=np.full((2, 2), value, np.float32))
        f.create_group("vars").attrs["name"] = "m"
    with weightkit.load(path) as store:
        assert sorted(store) == ["m/dense/kernel", "m/dense_1/kernel"]
        assert {float(t.read()[0, 0]) for t in store.values()} == {1.0, 2.0}


# -- natural order, suggestions ------------------------------------------------------------------

def test_natural_key_orders_numbers_by_value_without_int() -> None:
    names = ["dense_10/kernel", "dense_2/kernel", "dense/kernel", "vars/10", "vars/9",
             "x" + "9" * 5000]
    assert sorted(names, key=natural_key) == [
        "dense/kernel", "dense_2/kernel", "dense_10/kernel", "vars/9", "vars/10",
        "x" + "9" * 5000]
    assert closest("haed/*", ["head/kernel", "head/bias", "dense/kernel"])[0] == "head/*"


def test_a_misspelt_glob_is_put_right_keeping_its_numbers_and_wildcards() -> None:
    """`layr_5*` selects `layer_5/...` and `layer_50/...`: the suggestion is that glob
    spelt right, not the group `layer_5/*`, which would select less."""
    layers = [f"layer_{i}/w{j}" for i in range(60) for j in range(2)]
    assert suggestion("layr_5*", layers) == "did you mean 'layer_5*'?"
    assert suggestion("layr_5/w1", layers) == "did you mean 'layer_5/w1'?"
    assert suggestion("*/kernal", ["dense/kernel", "dense/bias"]) == "did you mean '*/kernel'?"
    assert suggestion("Adam/*", ["d/kernel", "adam/iteration"]) == "did you mean 'adam/*'?"


def test_suggestions_among_100000_names_compare_few(monkeypatch) -> None:
    """difflib compared a typo with every name and group (112,500 here: 3 s at 100,000
    variables); now with at most a few thousand, and still finds the name meant."""
    compared: list[int] = []
    real = difflib.get_close_matches

    def counting(word, possibilities, *args, **kwargs):
        possibilities = list(possibilities)
        compared.append(len(possibilities))
        return real(word, possibilities, *args, **kwargs)
    monkeypatch.setattr(difflib, "get_close_matches", counting)
    blocks = [f"block_{i}/w{j}" for i in range(12500) for j in range(8)]
    assert suggestion("blok_5*", blocks) == "did you mean 'block_5*'?"
    assert suggestion("layr_5*", blocks).startswith("did you mean 'block_5/*'")
    assert suggestion("block_12345/w0x", blocks).startswith("did you mean 'block_12345/w0'")
    assert suggestion("layer_77/w3", blocks) == "did you mean 'block_77/w3'?"
    assert compared and max(compared) < 3000, compared


# -- names written back exactly ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["unicode--keras3-legacy.h5", "unicode--keras3.keras",
                                  "unicode--keras3.weights.h5", "deep--tfkeras-full.h5"])
def test_non_ascii_and_long_names_round_trip_byte_for_byte(name, tmp_path) -> None:
    """Keras 3 stores `é` as UTF-8 bytes in attributes declared ASCII; tf_keras splits a long
    name list into `layer_names0`, `layer_names1`: every HDF5 writer gives the same bytes back,
    directly and through safetensors."""
    from keras_lib import keras_member_tree
    source = fixture(name)
    suffix = "".join(Path(name).suffixes[-1:]) if not name.endswith(".weights.h5") \
        else ".weights.h5"
    tree = keras_member_tree if name.endswith(".keras") else h5_tree
    via, direct, back = tmp_path / "via.safetensors", tmp_path / f"d{suffix}", tmp_path / f"b{suffix}"
    with weightkit.load(source) as store:
        names = list(store)
        weightkit.save(store, direct)
        weightkit.save(store, via)
    with weightkit.load(via) as carried:
        assert list(carried) == names
        weightkit.save(carried, back, weightkit.detect(source))
    assert tree(direct) == tree(source) == tree(back)


def test_names_written_from_scratch_keep_every_byte(tmp_path) -> None:
    """A store of foreign names (non-ASCII, 70 kB long: more than one HDF5 object header)
    written to a tf_keras weights .h5 reads back with the same names."""
    long = "é" * 35_000
    store = Store({f"{long}/kernel": Tensor.from_array(np.ones((2, 2), np.float32)),
                   "ü/bias": Tensor.from_array(np.zeros(2, np.float32))})
    out = tmp_path / "w.h5"
    weightkit.save(store, out, "keras-h5", allow_lossy=True)
    with weightkit.load(out) as back:
        assert list(back) == list(store)


def test_names_a_positional_writer_cannot_give_back_are_a_declared_loss(tmp_path) -> None:
    """A store of Keras names in file order (safetensors sorts `bias` before `kernel`) written
    to a Keras 3 `.weights.h5`: refused, naming the loss, unless allowed; allowed, the kernel
    goes where Keras creates it (`vars/0`), not where the store listed it. Into a tf.keras
    `.h5` the names survive but the order does not (Keras loads a layer by position)."""
    store = Store({"a/bias": Tensor.from_array(np.zeros(2, np.float32)),
                   "a/kernel": Tensor.from_array(np.ones((3, 2), np.float32))})
    with pytest.raises(weightkit.WeightsError, match=r"names of 2 variable\(s\).*order"):
        weightkit.save(store, tmp_path / "w.weights.h5")
    assert not (tmp_path / "w.weights.h5").exists()
    weightkit.save(store, tmp_path / "w.weights.h5", allow_lossy=True)
    with h5py.File(tmp_path / "w.weights.h5", "r") as f:
        assert f["layers/a/vars/0"].shape == (3, 2) and f["layers/a/vars/1"].shape == (2,)
    with pytest.raises(weightkit.WeightsError, match="order of variables"):
        weightkit.save(store, tmp_path / "w.h5", "keras-h5")
    weightkit.save(store, tmp_path / "w.h5", "keras-h5", allow_lossy=True)
    with weightkit.load(tmp_path / "w.h5") as back:
        assert list(back) == ["a/kernel", "a/bias"]


@pytest.mark.parametrize("layers, prefix, stored", [
    (4100, "l", "layer_names"),             # 4,100 vlen strings: 65.6 kB of heap descriptors
    (2000, "a_long_layer_name_" * 2, "layer_names1"),  # 80 kB of fixed-width names: chunks
])
def test_name_lists_longer_than_an_hdf5_attribute_are_split_as_tf_keras_splits_them(
        tmp_path, layers: int, prefix: str, stored: str) -> None:
    """`layer_names` that no longer fits one 64 kB object header message (HDF5 refused the
    write: "object header message is too large") is stored fixed-width, in chunks when that
    too is over 64 kB, as tf_keras stores it; the file reads back whole."""
    store = Store({f"{prefix}{i:04d}/kernel": Tensor.from_array(np.full((1, 1), i, np.float32))
                   for i in range(layers)})
    weightkit.save(store, tmp_path / "many.h5", "keras-h5")
    with h5py.File(tmp_path / "many.h5", "r") as f:
        assert stored in f.attrs
    with weightkit.load(tmp_path / "many.h5") as back:
        last = f"{prefix}{layers - 1:04d}/kernel"
        assert list(back) == list(store) and back[last].read()[0, 0] == layers - 1


# -- renames reach the file ----------------------------------------------------------------------

def test_renames_into_keras_files_take_effect_or_are_refused(tmp_path, capsys) -> None:
    def edit(source: str, out: str, *ops: str) -> tuple[int, str]:
        code, _, err = run(capsys, "edit", fixture(source), tmp_path / out, *ops)
        return code, err

    # a layer renamed in a save_weights .h5: group and layer_names follow
    assert edit("mlp--tfkeras-weights.h5", "a.h5", "--rename", "^d1/=fc/")[0] == 0
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]] == \
            ["x", "fc", "d2"] and "fc/kernel:0" in f["fc"]
    # a weight renamed inside its layer of a full-model .h5
    assert edit("mlp--tfkeras-full.h5", "b.h5", "--rename", "kernel$=w")[0] == 0
    with weightkit.load(tmp_path / "b.h5") as store:
        assert "d1/w" in store and "Adam/m/d1/w" in store
    # a layer of a full-model .h5 is named by model_config: refused, nothing written
    code, err = edit("mlp--tfkeras-full.h5", "c.h5", "--rename", "^d1/=fc/")
    assert code == 2 and "model_config" in err and not (tmp_path / "c.h5").exists()
    # Keras 3 .weights.h5: the layer's name attribute; its optimizer slots follow it
    assert edit("mlp--keras3.weights.h5", "d.weights.h5", "--rename", "^d1/=fc/")[0] == 0
    with weightkit.load(tmp_path / "d.weights.h5") as store:
        assert list(store)[:2] == ["fc/kernel", "fc/bias"]
        assert "adam/fc_kernel_momentum" in store
    # ... renamed with it, as the layer's rename implies (`d1=fc` matches the slots too)
    assert edit("mlp--keras3.weights.h5", "d2.weights.h5", "--rename", "d1=fc")[0] == 0
    with weightkit.load(tmp_path / "d2.weights.h5") as store:
        assert "fc/kernel" in store and "adam/fc_kernel_momentum" in store
    # ... and a slot renamed on its own cannot be written
    code, err = edit("mlp--keras3.weights.h5", "d3.weights.h5", "--rename", "momentum$=m")
    assert code == 2 and "names the optimizer's variables after the layers'" in err
    # ... but a variable is named by its place in the layer
    code, err = edit("mlp--keras3.weights.h5", "e.weights.h5", "--rename", "kernel$=w")
    assert code == 2 and "only a layer's name can change" in err
    # ... and a .keras names its layers in config.json
    code, err = edit("mlp--keras3.keras", "f.keras", "--rename", "^d1/=fc/")
    assert code == 2 and "config.json names the layers" in err
    assert not (tmp_path / "e.weights.h5").exists() and not (tmp_path / "f.keras").exists()
    # with --allow-lossy the refused rename is the loss: the old names are written
    code, err = edit("mlp--keras3.keras", "g.keras", "--rename", "^d1/=fc/", "--allow-lossy")
    assert code == 0 and "note: " in err and "written without renames: layers 'd1' -> " \
        "'fc'" in err  # what --allow-lossy accepted, said as convert says it
    with weightkit.load(tmp_path / "g.keras") as store:
        assert "d1/kernel" in store


def test_renames_of_plain_hdf5_datasets_move_them(tmp_path) -> None:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a/x", data=np.arange(3))
        f["a"].attrs["note"] = "kept"
    with weightkit.load(path) as store:
        weightkit.save(weightkit.edit(store).rename("^a/x$", "b/y"), tmp_path / "out.h5")
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert list(f) == ["b"] and f["b/y"][()].tolist() == [0, 1, 2]


@pytest.mark.tensorflow
def test_the_frameworks_load_renamed_files(tmp_path, capsys) -> None:
    """tf_keras `load_weights(by_name=True)` finds a renamed layer under its new name (and no
    longer under the old); Keras 3 and tf_keras load every renamed file with the values of
    the original."""
    jobs = {"tfkeras-by-name": tmp_path / "fc.h5", "keras3-weights": tmp_path / "fc.weights.h5",
            "tfkeras-full": tmp_path / "w.h5", "keras3-legacy": tmp_path / "w-legacy.h5"}
    for source, key, rename in (("mlp--tfkeras-weights.h5", "tfkeras-by-name", "^d1/=fc/"),
                                ("mlp--keras3.weights.h5", "keras3-weights", "^d1/=fc/"),
                                ("mlp--tfkeras-full.h5", "tfkeras-full", "kernel$=w"),
                                ("mlp--keras3-legacy.h5", "keras3-legacy",
                                 "^d2/kernel$=d2/w")):
        code, _, err = run(capsys, "edit", fixture(source), jobs[key], "--rename", rename)
        assert code == 0, err
    assert oracle("keras3", [("mlp--keras3.weights.h5", str(jobs["keras3-weights"])),
                             ("mlp--keras3-legacy.h5", str(jobs["keras3-legacy"]))]) == \
        {str(jobs["keras3-weights"]): "same", str(jobs["keras3-legacy"]): "same"}
    assert oracle("tf_keras", [("mlp--tfkeras-full.h5", str(jobs["tfkeras-full"]))]) == \
        {str(jobs["tfkeras-full"]): "same"}
    code = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from fixtures_lib import manifest, models
entry = manifest()["mlp--tfkeras-weights.h5"]
want = {{v["name"]: v["sha256"] for v in entry["variables"]}}
renamed = models.build("mlp", "tf_keras")
renamed.get_layer("d1")._name = "fc"
renamed.load_weights({str(jobs["tfkeras-by-name"])!r}, by_name=True)
old = models.build("mlp", "tf_keras")
before = models.value_digest(old.get_layer("d1").kernel.numpy())
old.load_weights({str(jobs["tfkeras-by-name"])!r}, by_name=True)
print(json.dumps({{
    "fc": models.value_digest(renamed.get_layer("fc").kernel.numpy()) == want["d1/kernel:0"],
    "d2": models.value_digest(renamed.get_layer("d2").kernel.numpy()) == want["d2/kernel:0"],
    "old_untouched": models.value_digest(old.get_layer("d1").kernel.numpy()) == before}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                               "TF_USE_LEGACY_KERAS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == \
        {"fc": True, "d2": True, "old_untouched": True}


# -- pairing that survives real changes ----------------------------------------------------------

def test_same_nested_model_across_frameworks_pairs_by_name(capsys) -> None:
    """The issue's swapped pairs: the nested model as a tf_keras full .h5 and, with two
    BatchNormalization variables of different blocks changed, as a Keras 3 .keras: exactly those
    two differ, each paired with itself by name."""
    code, out, _ = run(capsys, "diff", fixture("nested--tfkeras-full.h5"),
                       fixture("nested--keras3-bnchanged.keras"), "--weights-only", "--format",
                       "json")
    report = json.loads(out)
    assert code == 1
    changed = {e["name_a"]: (e["name_b"], e["matched_by"]) for e in report["variables"]
               if e["status"] != "same"}
    assert changed == {"encoder/enc_bn/gamma": ("encoder/enc_bn/gamma", "name"),
                       "bn/moving_mean": ("bn/moving_mean", "name")}
    assert report["summary"]["counts"]["same"] == 12 and not report["summary"]["notes"]


def test_renumbered_layers_pair_by_structure_and_say_so(capsys) -> None:
    """Auto-numbered layers one apart (`dense_3` is `dense_4`): by name they would be shape
    changes, additions and removals; wdiff pairs them by order and shape, says so, and finds
    the four BatchNormalization variables that changed."""
    entry = json.loads((fixture("manifest.json")).read_text())["fixtures"][
        "renumbered--keras3-shifted.keras"]
    code, out, _ = run(capsys, "diff", fixture("renumbered--keras3.keras"),
                       fixture(entry["path"]), "--format", "json")
    report = json.loads(out)
    assert code == 1
    assert {e["matched_by"] for e in report["variables"]} == {"structure"}
    assert sorted(e["name_b"] for e in report["variables"] if e["status"] != "same") == \
        sorted(entry["changed"])
    assert report["summary"]["counts"]["same"] == 16
    assert "paired by structure" in report["summary"]["notes"][0]
    code, out, _ = run(capsys, "diff", fixture("renumbered--keras3.keras"),
                       fixture(entry["path"]), "--match", "name")
    assert "shape changed" in out and "note:" not in out
    code, out, _ = run(capsys, "diff", fixture("renumbered--keras3.keras"),
                       fixture(entry["path"]))
    assert out.splitlines()[-1].startswith("note: by name")


@pytest.mark.tensorflow
def test_a_tf_keras_h5_fills_a_keras3_template_by_structure(tmp_path, capsys) -> None:
    out = tmp_path / "nested.keras"
    code, _, err = run(capsys, "edit", fixture("nested--tfkeras-full.h5"), out, "--no-optimizer",
                       "--like", fixture("nested--keras3.keras"), "--match", "structure")
    assert code == 0, err
    # with the optimizer: tf_keras' slots pair Keras 3's by order and shape; the learning rate,
    # which a tf_keras .h5 does not keep, comes from the template
    code, _, err = run(capsys, "convert", fixture("nested--tfkeras-full.h5"), tmp_path / "x.keras",
                       "--like", fixture("nested--keras3.keras"), "--match", "structure")
    assert code == 0, err
    with weightkit.load(tmp_path / "x.keras") as got, \
            weightkit.load(fixture("nested--keras3.keras")) as template, \
            weightkit.load(fixture("nested--tfkeras-full.h5")) as source:
        assert list(got) == list(template)
        assert got["adam/learning_rate"].read() == template["adam/learning_rate"].read()
        np.testing.assert_array_equal(got["adam/enc_dense_kernel_velocity"].read(),
                                      source["Adam/v/enc_dense/kernel"].read())
    code, _, err = run(capsys, "convert", fixture("mlp--tfkeras-full.h5"), tmp_path / "y.keras",
                       "--like", fixture("nested--keras3.keras"), "--match", "structure")
    assert code == 2 and "found no weights of their shape and role" in err
    script = f"""
import json, os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
sys.path.insert(0, {str(Path(__file__).parent)!r})
import keras
from fixtures_lib import manifest, models
model = keras.models.load_model({str(out)!r})
entry = manifest()["nested--tfkeras-full.h5"]
want = {{v["name"].removesuffix(":0"): v["sha256"] for v in entry["variables"]}}
got = {{v.path: models.value_digest(v.numpy()) for v in model.weights}}
print(json.dumps({{"same": got == want, "optimizer": len(model.optimizer.variables)
                   if model.optimizer else 0}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["same"] is True


# -- verify --load feeds what fits ---------------------------------------------------------------

@pytest.mark.tensorflow
def test_verify_load_feeds_indices_and_skips_a_forward_pass_it_cannot_feed(tmp_path,
                                                                           capsys) -> None:
    """The issue's case: a tf_keras full .h5 whose float input feeds an Embedding failed every
    route (`indices[0,0] = -1 is not in [0, 60)`); a model the seeded input cannot run is a
    skipped forward pass, never a failed round trip."""
    script = f"""
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tf_keras as k
inp = k.Input((5,))
h = k.layers.GRU(3)(k.layers.LSTM(3, return_sequences=True)(k.layers.Embedding(60, 4)(inp)))
k.Model(inp, k.layers.Dense(2)(h)).save({str(tmp_path / "emb.h5")!r})
os.environ["KERAS_BACKEND"] = "tensorflow"
import keras
x = keras.Input((None,))
h = keras.layers.Flatten()(keras.layers.Reshape((2, 2))(x))
keras.Model(x, keras.layers.Dense(1)(h)).save({str(tmp_path / "odd.keras")!r})
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    code, out, err = run(capsys, "verify", tmp_path / "emb.h5", "--load", "--via", "npz",
                         "--json")
    assert code == 0, err
    load = json.loads(out)["trips"][0]["load"]
    assert load["status"] == "identical" and "forward pass skipped" not in load["detail"]
    code, out, err = run(capsys, "verify", tmp_path / "odd.keras", "--load", "--via", "npz",
                         "--json")
    assert code == 0, err
    load = json.loads(out)["trips"][0]["load"]
    assert load["status"] == "identical"
    assert "weights bit-identical; forward pass skipped, the original cannot run" in \
        load["detail"] and "\n" not in load["detail"]


def test_verify_table_shows_the_first_line_of_a_message() -> None:
    from weightkit.cli.verify import _detail
    from weightkit.diffing.verify import Trip
    trip = Trip(via="npz")
    trip.error = "ValueError: first line\nArguments received:\n  x=1"
    assert _detail(trip) == "ValueError: first line"


# -- a nested model on its own -------------------------------------------------------------------

def test_extract_names_and_refusals(tmp_path, capsys) -> None:
    code, out, _ = run(capsys, "extract", fixture("nested--keras3.keras"), "encoder",
                       tmp_path / "e.safetensors")
    assert code == 0
    with weightkit.load(tmp_path / "e.safetensors") as store:
        assert list(store) == ["enc_dense/kernel", "enc_dense/bias", "enc_bn/gamma",
                               "enc_bn/beta", "enc_bn/moving_mean", "enc_bn/moving_variance"]
    code, _, err = run(capsys, "extract", fixture("nested--tfkeras-full.h5"), "encodr",
                       tmp_path / "x.h5")
    assert code == 2 and "did you mean 'encoder'" in err
    code, _, err = run(capsys, "extract", fixture("nested--keras3.weights.h5"), "encoder",
                       tmp_path / "x.keras")
    assert code == 2 and "extracted from keras, not keras-weights-h5" in err
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "x.keras").exists()


@pytest.mark.tensorflow
def test_extracted_submodels_load_on_their_own(tmp_path, capsys) -> None:
    """`weightkit extract` of the nested `encoder`: Keras 3 loads the .keras alone
    (load_model) and the .weights.h5 into the standalone encoder; tf_keras loads the .h5 of a
    full model (load_model) and of save_weights (load_weights); Keras 3 its legacy .h5. Each
    holds exactly the parent's encoder weights and computes what the encoder computes."""
    jobs = {"k3.keras": "nested--keras3.keras", "k3.weights.h5": "nested--keras3.keras",
            "k3w.weights.h5": "nested--keras3.weights.h5", "k3legacy.h5": "nested--keras3-legacy.h5",
            "tf.h5": "nested--tfkeras-full.h5", "tfw.h5": "nested--tfkeras-weights.h5"}
    for out, source in jobs.items():
        code, _, err = run(capsys, "extract", fixture(source), "encoder", tmp_path / out)
        assert code == 0, err
    base = f"""
import json, os, sys
import numpy as np
sys.path.insert(0, {str(Path(__file__).parent)!r})
from fixtures_lib import fixture, models
d = {str(tmp_path)!r}
def digests(model):
    return [models.value_digest(v.numpy()) for v in model.weights]
def same(a, b):
    x = np.random.default_rng(0).standard_normal((3, 6)).astype("float32")
    return digests(a) == digests(b) and np.array_equal(np.asarray(a(x)), np.asarray(b(x)))
"""
    keras3 = base + """
os.environ["KERAS_BACKEND"] = "tensorflow"
import keras
enc = keras.models.load_model(str(fixture("nested--keras3.keras"))).get_layer("encoder")
alone = keras.models.load_model(os.path.join(d, "k3.keras"))
into = keras.models.clone_model(enc); into.load_weights(os.path.join(d, "k3.weights.h5"))
bare = keras.models.clone_model(enc); bare.load_weights(os.path.join(d, "k3w.weights.h5"))
legacy = keras.models.load_model(os.path.join(d, "k3legacy.h5"), compile=False)
print(json.dumps([same(enc, m) for m in (alone, into, bare, legacy)]))
"""
    tf_keras = base + """
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tf_keras
enc = tf_keras.models.load_model(str(fixture("nested--tfkeras-full.h5"))).get_layer("encoder")
alone = tf_keras.models.load_model(os.path.join(d, "tf.h5"), compile=False)
into = tf_keras.models.clone_model(enc); into.load_weights(os.path.join(d, "tfw.h5"))
print(json.dumps([same(enc, m) for m in (alone, into)]))
"""
    env = {**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for script, want in ((keras3, [True] * 4), (tf_keras, [True] * 2)):
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == want
