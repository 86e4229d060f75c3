"""Edits on stores: values against numpy, laziness, chain order, and the errors of issue 5."""
from __future__ import annotations

import json
import os
from collections import Counter

import h5py
import ml_dtypes
import numpy as np
import pytest

import weightkit
from weightkit import Store, Tensor, UsageError
from weightkit.cli.main import main
from weightkit.converters.edit import edit, flat_positions


def counting_store(arrays: dict[str, np.ndarray]) -> tuple[Store, Counter]:
    """A store whose tensors count how often their data is read."""
    reads: Counter = Counter()

    def tensor(name: str, array: np.ndarray) -> Tensor:
        def get(index: tuple) -> np.ndarray:
            reads[name] += 1
            return array[index]
        return Tensor(array.shape, array.dtype, get, {"key": f"orig/{name}:0", "role": "weight"})

    return Store({n: tensor(n, a) for n, a in arrays.items()}, format="memory",
                 meta={"fmt": {"x": 1}}), reads


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "dense/kernel": rng.normal(size=(64, 32)).astype(np.float32),
        "dense/bias": rng.normal(size=(32,)).astype(np.float32),
        "conv/kernel": rng.normal(size=(3, 3, 4, 8)).astype(np.float32),
        "iteration": np.array(7, dtype=np.int64),
    }


def test_chaining_reads_nothing(arrays):
    store, reads = counting_store(arrays)
    edited = (edit(store).rename("^dense/", "fc/").drop("conv/*").cast("fc/*", "float16")
              .scale("fc/bias", 2.0).prune("fc/kernel", 0.25))
    assert list(edited) == ["fc/kernel", "fc/bias", "iteration"]
    assert edited["fc/kernel"].dtype == np.float16 and edited["fc/kernel"].shape == (64, 32)
    assert reads == Counter()


def test_editing_one_tensor_reads_no_other(arrays):
    store, reads = counting_store(arrays)
    edited = edit(store).scale("dense/bias", 3.0).cast("dense/bias", "bfloat16")
    edited["dense/bias"].read()
    assert set(reads) == {"dense/bias"}


def test_meta_and_store_metadata_are_kept(arrays):
    store, _ = counting_store(arrays)
    edited = edit(store).cast("*", "float16").prune("dense/kernel", 0.5).scale("conv/*", 0.5)
    for name in arrays:
        assert edited[name].meta == store[name].meta
    assert edited.format == store.format and edited.meta == store.meta


def test_cast_values_and_rounding_error(arrays):
    store, _ = counting_store(arrays)
    edited = edit(store).cast("dense/*", "float16").cast("conv/kernel", "bfloat16")
    for name, dtype in [("dense/kernel", np.float16), ("conv/kernel", ml_dtypes.bfloat16)]:
        got = edited[name].read()
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, arrays[name].astype(dtype))
        expected = np.max(np.abs(arrays[name].astype(dtype).astype(np.float64)
                                 - arrays[name].astype(np.float64)))
        (record,) = [e for e in edited.edits if e.name == name]
        assert record.measure() == {"max_abs_error": expected, "overflow": 0}
        assert expected > 0
    assert "iteration" not in {e.name for e in edited.edits}  # integers are left alone
    assert edited["iteration"].dtype == np.int64


def test_cast_counts_overflow_and_upcast_is_exact():
    store = Store.from_arrays({"w": np.array([1.0, 70000.0, -1e6, np.inf, np.nan], np.float32)})
    (record,) = edit(store).cast("w", "float16").edits
    assert record.measure() == {"max_abs_error": 0.0, "overflow": 2}
    back = edit(edit(store).cast("w", "float16")).cast("w", "float32")
    assert back.edits[-1].measure() == {"max_abs_error": 0.0, "overflow": 0}
    with np.errstate(over="ignore"):
        expected = store["w"].read().astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(back["w"].read(), expected)


def test_scale_matches_numpy(arrays):
    store, _ = counting_store(arrays)
    edited = edit(store).scale("dense/*", 0.1)
    np.testing.assert_array_equal(edited["dense/kernel"].read(),
                                  (arrays["dense/kernel"].astype(np.float64) * 0.1)
                                  .astype(np.float32))
    np.testing.assert_array_equal(edited["conv/kernel"].read(), arrays["conv/kernel"])


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.999, 1.0])
def test_prune_zeroes_exactly_the_smallest_fraction(arrays, fraction):
    store, _ = counting_store(arrays)
    original = arrays["dense/kernel"]
    got = edit(store).prune("dense/kernel", fraction)["dense/kernel"].read()
    count = round(fraction * original.size)
    order = np.argsort(np.abs(original), axis=None, kind="stable")
    expected = original.copy().reshape(-1)
    expected[order[:count]] = 0
    np.testing.assert_array_equal(got, expected.reshape(original.shape))
    assert np.count_nonzero(got == 0) == count


def test_prune_ties_are_broken_by_position_even_when_read_in_parts():
    values = np.array([[3, -1, 1, 2], [1, -1, 5, 1], [0, 1, -2, 4]], dtype=np.float32)
    store = Store.from_arrays({"w": values})
    pruned = edit(store).prune("w", 0.5)["w"]  # 6 of 12: the 0, then five of the six ±1
    expected = values.copy()
    expected[expected == 0] = 0
    for position in [1, 2, 4, 5, 7]:
        expected.reshape(-1)[position] = 0
    np.testing.assert_array_equal(pruned.read(), expected)
    rows = np.concatenate([pruned[i] for i in range(3)])
    np.testing.assert_array_equal(rows, expected.reshape(-1))
    np.testing.assert_array_equal(pruned[:, 1:3], expected[:, 1:3])
    np.testing.assert_array_equal(np.concatenate(list(pruned.iter_chunks(8))),
                                  expected.reshape(-1))


def test_prune_treats_nan_as_largest_and_keeps_dtype():
    values = np.array([np.nan, 0.5, -0.25, 2.0], dtype=ml_dtypes.bfloat16)
    got = edit(Store.from_arrays({"w": values})).prune("w", 0.75)["w"].read()
    assert got.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got.astype(np.float32), [np.nan, 0, 0, 0])


def test_flat_positions_match_numpy_indexing():
    grid = np.arange(60).reshape(3, 4, 5)
    for index in [(), (1,), (slice(None), 2), (2, slice(1, 3), -1), (Ellipsis, 4),
                  (slice(None, None, -1),), (0, 0, 0)]:
        np.testing.assert_array_equal(flat_positions(grid.shape, index), grid[index])


def test_chain_order_matters(arrays):
    store, _ = counting_store(arrays)
    renamed_then_dropped = edit(store).rename("^dense/", "fc/").drop("fc/*")
    assert list(renamed_then_dropped) == ["conv/kernel", "iteration"]
    with pytest.raises(UsageError, match="matched none"):
        edit(store).drop("fc/*").rename("^dense/", "fc/")
    kept_then_dropped = edit(store).keep("*kernel").drop("conv/*")
    assert list(kept_then_dropped) == ["dense/kernel"]


def test_rename_keeps_the_original_key():
    """The key is where the variable is in the file: a writer of that format finds it there
    and writes the new name (tests/test_names.py)."""
    store = Store({"a": Tensor.from_array(np.zeros(2), {"key": "a"}),
                   "b": Tensor.from_array(np.ones(2), {"key": "model_weights/b/b:0"})})
    edited = edit(store).rename("^", "layer_")
    assert edited["layer_a"].meta["key"] == "a"
    assert edited["layer_b"].meta["key"] == "model_weights/b/b:0"
    assert list(edited.add("a", np.ones(1))) == ["layer_a", "layer_b", "a"]


@pytest.mark.parametrize("pattern, repl, message", [
    ("/(kernel|bias)$", "/w", "would both be named 'dense/w'"),
    ("^conv/", "dense/", "would both be named 'dense/kernel'"),
    ("^iteration$", "", "empty name"),
    ("(", "x", "invalid regular expression"),
    ("dense", r"\2", "invalid replacement"),
    ("^nothing", "x", "changed none"),
])
def test_rename_errors(arrays, pattern, repl, message):
    store, _ = counting_store(arrays)
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        edit(store).rename(pattern, repl)


def test_set_and_add(arrays):
    store, reads = counting_store(arrays)
    new = np.full((32,), 0.5, np.float32)
    edited = edit(store).set("dense/bias", new).add("extra/scale", np.arange(4, dtype=np.int8))
    np.testing.assert_array_equal(edited["dense/bias"].read(), new)
    assert edited["dense/bias"].meta == store["dense/bias"].meta
    assert list(edited)[-1] == "extra/scale"
    assert edited["extra/scale"].meta == {"role": "weight"}
    np.testing.assert_array_equal(edited["extra/scale"].read(), np.arange(4))
    assert reads == Counter()
    big_endian = edit(store).set("dense/bias", new.astype(">f4"))
    assert big_endian["dense/bias"].dtype == np.float32
    np.testing.assert_array_equal(big_endian["dense/bias"].read(), new)


@pytest.mark.parametrize("op, name, array, message", [
    ("set", "dense/bias", np.zeros((31,), np.float32),
     r"expected shape \(32,\) float32, received shape \(31,\) float32"),
    ("set", "dense/bias", np.zeros((32,), np.float64),
     r"expected shape \(32,\) float32, received shape \(32,\) float64"),
    ("set", "nope", np.zeros(3), "no such variable"),
    ("add", "dense/bias", np.zeros(3), "exists"),
    ("add", "x", np.array(["text"]), "dtype weightkit knows"),
])
def test_set_add_errors(arrays, op, name, array, message):
    store, _ = counting_store(arrays)
    with pytest.raises(UsageError, match=message):
        getattr(edit(store), op)(name, array)


@pytest.mark.parametrize("call, message", [
    (lambda e: e.cast("dense/*", "int8"), "expected a floating-point dtype"),
    (lambda e: e.cast("dense/*", "float13"), "unknown dtype"),
    (lambda e: e.cast("dense/*", "flaot16"),
     r"cast 'dense/\*=flaot16': unknown dtype 'flaot16'; did you mean float16"),
    (lambda e: e.cast("iteration", "float16"), "matched only int64"),
    (lambda e: e.scale("dense/*", float("inf")), "finite factor"),
    (lambda e: e.prune("dense/*", 1.5), "between 0 and 1"),
    (lambda e: e.keep("nothing*"), "matched none"),
])
def test_operation_errors(arrays, call, message):
    store, _ = counting_store(arrays)
    with pytest.raises(UsageError, match=message):
        call(edit(store))


def test_edit_log_accumulates_and_originals_stay(arrays):
    store, _ = counting_store(arrays)
    first = edit(store).drop("conv/*")
    second = first.scale("dense/*", 2.0)
    assert [e.op for e in first.edits] == ["drop"]
    assert [e.op for e in second.edits] == ["drop", "scale", "scale"]
    assert "conv/kernel" in store and "conv/kernel" in edit(store)
    np.testing.assert_array_equal(first["dense/bias"].read(), arrays["dense/bias"])


# --- the command line -------------------------------------------------------------------------

@pytest.fixture
def source(tmp_path, arrays):
    path = tmp_path / "in.safetensors"
    weightkit.save(Store.from_arrays(arrays), path, "safetensors")
    return path


def edit_cli(source, dst, *ops: str) -> int:
    return main(["edit", str(source), str(dst), "--from", "safetensors", *ops])


def test_cli_applies_operations_in_order(source, tmp_path, arrays, capsys):
    bias = np.linspace(-1, 1, 32).astype(np.float32)
    np.save(tmp_path / "bias.npy", bias)
    np.save(tmp_path / "extra.npy", np.arange(3, dtype=np.int32))
    dst = tmp_path / "out.safetensors"
    assert edit_cli(source, dst, "--rename", "^dense/=fc/", "--drop", "conv/*",
                    "--set", f"fc/bias={tmp_path / 'bias.npy'}", "--scale", "fc/bias=0.5",
                    "--cast", "fc/*=bfloat16", "--prune", "fc/kernel=0.75",
                    "--add", f"extra={tmp_path / 'extra.npy'}") == 0
    out = capsys.readouterr().out
    assert "max rounding error" in out and "--prune fc/kernel=0.75" in out
    with weightkit.load(dst, "safetensors") as result:
        assert list(result) == ["fc/kernel", "fc/bias", "iteration", "extra"]
        np.testing.assert_array_equal(
            result["fc/bias"].read(),
            (bias.astype(np.float64) * 0.5).astype(np.float32).astype(ml_dtypes.bfloat16))
        kernel = result["fc/kernel"].read()
        assert kernel.dtype == ml_dtypes.bfloat16
        assert np.count_nonzero(kernel == 0) == round(0.75 * kernel.size)
        np.testing.assert_array_equal(result["extra"].read(), [0, 1, 2])


@pytest.mark.parametrize("ops, message", [
    (["--drop", "fc/*", "--rename", "^dense/=fc/"], "drop 'fc/*' matched none of 4"),
    (["--rename", "/(kernel|bias)$=/w"], "would both be named 'dense/w'"),
    (["--set", "dense/bias=SHAPE"], r"expected shape (32,) float32, received shape (31,) float32"),
    (["--set", "dense/bias=DTYPE"], r"expected shape (32,) float32, received shape (32,) float64"),
    (["--set", "dense/bias=PICKLE"], "without pickled objects"),
    (["--scale", "dense/*=big"], "expected FACTOR as a number"),
    (["--cast", "dense/kernel"], "expected GLOB=DTYPE"),
    ([], "expected at least one operation"),
])
def test_cli_errors_exit_2_and_write_nothing(source, tmp_path, ops, message, capsys):
    np.save(tmp_path / "SHAPE.npy", np.zeros(31, np.float32))
    np.save(tmp_path / "DTYPE.npy", np.zeros(32, np.float64))
    np.save(tmp_path / "PICKLE.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    ops = [op.replace("=SHAPE", f"={tmp_path}/SHAPE.npy").replace(
        "=DTYPE", f"={tmp_path}/DTYPE.npy").replace("=PICKLE", f"={tmp_path}/PICKLE.npy")
        for op in ops]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert edit_cli(source, tmp_path / "out.safetensors", *ops) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("ops, message", [
    (["--scale", "dense/*=inf"], "--scale 'dense/*': expected a finite factor, received inf"),
    (["--scale", "nothing*=2"], "--scale 'nothing*' matched none of 4 variable(s)"),
    (["--prune", "dense/*=1.5"], "--prune 'dense/*': expected a fraction between 0 and 1"),
    (["--cast", "dense/*=int8"], "--cast 'dense/*=int8': expected a floating-point dtype"),
    (["--cast", "iteration=float16"], "--cast 'iteration': expected floating-point variables"),
    (["--drop", "nothing*"], "--drop 'nothing*' matched none"),
    (["--keep", "nothing"], "--keep: no variable named 'nothing'"),
    (["--rename", "(=x"], "--rename: invalid regular expression '('"),
    (["--rename", "^zz=y"], "--rename '^zz' changed none of 4 variable(s)"),
    (["--drop", "iteration", "--no-optimizer"], "--no-optimizer: expected optimizer state"),
    (["--weights-only", "--weights-only"], "--weights-only: expected optimizer or metric state"),
    (["--set", "nope=ZEROS"], "--set 'nope': no such variable (use --add for a new one)"),
    (["--add", "dense/bias=ZEROS"], "--add 'dense/bias': a variable of that name exists "
                                    "(shape (32,) float32); use --set to replace it"),
])
def test_cli_errors_name_the_flag_as_typed(source, tmp_path, ops, message, capsys):
    """The library's errors name its methods (`scale`); the command line's name the flags the
    user typed (`--scale`), hints included (`use --add`)."""
    np.save(tmp_path / "ZEROS.npy", np.zeros(3, np.float32))
    ops = [op.replace("=ZEROS", f"={tmp_path}/ZEROS.npy") for op in ops]
    assert edit_cli(source, tmp_path / "out.safetensors", *ops) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {message}" in err, err
    with pytest.raises(UsageError, match=r"^scale 'dense/\*': expected a finite factor"):
        edit(Store.from_arrays({"dense/w": np.zeros(2, np.float32)})).scale("dense/*", np.inf)


def test_cli_dry_run_prints_a_diff_and_writes_nothing(source, tmp_path, capsys):
    before = sorted(p.name for p in tmp_path.iterdir())
    assert edit_cli(source, tmp_path / "out.safetensors", "--scale", "dense/bias=2",
                    "--drop", "conv/*", "--dry-run") == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert "dry run: nothing written" in out
    lines = {line.split()[1]: line.split()[0] for line in out.splitlines()
             if line.split()[:1] in (["changed"], ["removed"], ["same"])}
    assert lines == {"dense/bias": "changed", "conv/kernel": "removed"}


def test_dry_run_exits_as_the_write_would_on_a_loss(source, tmp_path, capsys, monkeypatch):
    """A loss without --allow-lossy: the dry run shows it and the diff, then exits 2 like the
    write; with --allow-lossy both exit 0."""
    from weightkit.converters import safetensors
    monkeypatch.setattr(safetensors, "losses", lambda store, like=None: ["the colour of 'x'"])
    out = tmp_path / "out.safetensors"
    assert edit_cli(source, out, "--scale", "dense/bias=2", "--dry-run") == 2
    printed = capsys.readouterr()
    assert "dense/bias" in printed.out and "would lose: the colour of 'x'" in printed.err
    assert edit_cli(source, out, "--scale", "dense/bias=2") == 2 and not out.exists()
    assert edit_cli(source, out, "--scale", "dense/bias=2", "--dry-run", "--allow-lossy") == 0
    assert not out.exists()


def test_cli_never_writes_over_its_input(source, capsys):
    assert edit_cli(source, source, "--drop", "conv/*") == 2
    assert "refusing to overwrite the input" in capsys.readouterr().err


# --- framework oracle: edited fixtures load with the edited weights ---------------------------

EDIT_CASES = ["mlp--keras3.weights.h5", "conv--keras3-before.weights.h5", "bf16--keras3.weights.h5",
              "mlp--keras3.keras", "mha--keras3.keras", "mlp--keras3-legacy.h5",
              "mlp--tfkeras-full.h5", "lstm--tfkeras-full.h5", "mlp--tfkeras-weights.h5",
              "mlp--tfkeras.ckpt", "mlp--keras3.ckpt"]


def _restored(jobs: list[tuple[str, str, str]], framework: str) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("edit_oracle.py")
    done = subprocess.run([sys.executable, str(script), json.dumps(jobs)], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def _weights(path) -> list[tuple[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as f:
        return [(str(n), f[f"w{i}"]) for i, n in enumerate(f["names"])]


@pytest.mark.tensorflow
@pytest.mark.parametrize("framework", ["keras3", "tf_keras"])
def test_edited_fixtures_load_with_the_edited_weights(framework, tmp_path, capsys):
    """Scale one kernel by 2 and prune half of another in each fixture with `weightkit edit`,
    written back in the fixture's own format: the framework loads the edited file (load_model,
    load_weights or a checkpoint restore) and gets exactly the edited values for those two
    variables and bit-identical values for every other weight and optimizer variable."""
    from fixtures_lib import fixture, manifest

    cases = [name for name in EDIT_CASES if manifest()[name]["framework"] == framework]
    jobs, expected = [], {}
    for i, name in enumerate(cases):
        entry = manifest()[name]
        source = fixture(entry)
        with weightkit.load(source) as store:
            kernels = [n for n, t in store.items()
                       if t.role == "weight" and t.ndim >= 2 and t.dtype.kind in "fV"]
            scaled, pruned_name = kernels[0], kernels[1]
            edited = edit(store).scale(scaled, 2.0).prune(pruned_name, 0.5)
            expected[name] = [(store[n].read(), edited[n].read()) for n in (scaled, pruned_name)]
        out_dir = tmp_path / str(i)
        out_dir.mkdir()
        target = out_dir / os.path.basename(str(source))
        assert main(["edit", str(source), str(target), "--to", entry["format"],
                     "--scale", f"{scaled}=2", "--prune", f"{pruned_name}=0.5"]) == 0
        jobs += [(name, str(source), str(tmp_path / f"{i}-original.npz")),
                 (name, str(target), str(tmp_path / f"{i}-edited.npz"))]
    _restored(jobs, framework)
    for i, name in enumerate(cases):
        original = _weights(tmp_path / f"{i}-original.npz")
        edited = _weights(tmp_path / f"{i}-edited.npz")
        assert [n for n, _ in original] == [n for n, _ in edited], name
        changed = {}
        for (var, before), (_, after) in zip(original, edited):
            for k, (source_value, edited_value) in enumerate(expected[name]):
                if (before.shape == source_value.shape  # npz keeps bfloat16 as opaque V2: compare bits
                        and before.tobytes() == source_value.tobytes()):
                    changed[k] = var
                    assert after.tobytes() == edited_value.tobytes(), (name, var)
                    break
            else:
                assert after.tobytes() == before.tobytes(), (name, var)
        assert sorted(changed) == [0, 1], (name, changed)  # both edited variables were found


def test_a_template_that_does_not_fit_is_refused_and_nothing_written(tmp_path, capsys):
    """--like passes the template to the writer; weights of one model with the .keras config
    of another: exit 2, one line, nothing written."""
    from fixtures_lib import fixture, manifest

    weights = tmp_path / "mlp.safetensors"
    assert main(["convert", str(fixture(manifest()["mlp--keras3.weights.h5"])), str(weights)]) == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    template = fixture(manifest()["conv--keras3-before.keras"])
    assert main(["edit", str(weights), str(tmp_path / "out.keras"), "--scale", "d1/*=0.5",
                 "--like", str(template)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err
    assert "the template has no place for" in err and "--match structure" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_like_passes_the_template_to_the_writer(tmp_path):
    """A .keras cannot be written from bare weights; with a fitting template it can, and the
    written archive holds the edited values."""
    from fixtures_lib import fixture, manifest

    weights = tmp_path / "mlp.safetensors"
    assert main(["convert", str(fixture(manifest()["mlp--keras3.weights.h5"])), str(weights)]) == 0
    out = tmp_path / "out.keras"
    assert main(["edit", str(weights), str(out), "--scale", "d1/kernel=0.5"]) == 2
    assert not out.exists()
    assert main(["edit", str(weights), str(out), "--scale", "d1/kernel=0.5",
                 "--like", str(fixture(manifest()["mlp--keras3.keras"]))]) == 0
    with weightkit.load(weights) as source, weightkit.load(out) as result:
        np.testing.assert_array_equal(result["d1/kernel"].read(),
                                      source["d1/kernel"].read() * 0.5)


def test_set_takes_bfloat16_from_npy_opaque_bytes(tmp_path):
    values = np.linspace(-2, 2, 6).astype(ml_dtypes.bfloat16)
    np.save(tmp_path / "bf.npy", values)  # numpy writes '<V2'
    assert np.load(tmp_path / "bf.npy").dtype.kind == "V"
    store = Store.from_arrays({"w": np.zeros(6, ml_dtypes.bfloat16), "f": np.zeros(6, np.float32)})
    opaque = np.load(tmp_path / "bf.npy", allow_pickle=False)
    got = edit(store).set("w", opaque)["w"].read()
    assert got.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got, values)
    with pytest.raises(UsageError, match="opaque bytes"):
        edit(store).add("x", opaque)
    with pytest.raises(UsageError, match="expected an array of a dtype weightkit knows"):
        edit(store).set("f", np.zeros(6, "V4"))


@pytest.mark.tensorflow
@pytest.mark.parametrize("name, kernel", [("mlp--keras3.keras", "d1/kernel"),
                                          ("mlp--tfkeras-full.h5", "d1/kernel")])
def test_edit_through_safetensors_and_back_like_the_original_continues_training(
        name, kernel, tmp_path):
    """Issue 5 item 3 on a trained Keras 3 .keras and a tf_keras full .h5: convert to
    safetensors, edit a layer there, come back with --like ORIGINAL; the framework loads the
    result with the edited kernel, every other weight and the optimizer state as they were,
    and fits one more epoch from there."""
    from fixtures_lib import fixture, manifest, models

    entry = manifest()[name]
    original = fixture(entry)
    weights = tmp_path / "w.safetensors"
    result = tmp_path / os.path.basename(str(original))
    assert main(["convert", str(original), str(weights)]) == 0
    assert main(["edit", str(weights), str(result), "--scale", f"{kernel}=-0.5",
                 "--like", str(original)]) == 0
    with weightkit.load(original) as store:
        expected = (store[kernel].read().astype(np.float64) * -0.5).astype(np.float32)
    framework = models.framework_module(entry["framework"])
    load = (framework.saving.load_model if entry["framework"] == "keras3"
            else framework.models.load_model)
    before, after = load(str(original)), load(str(result))
    values = [(a.numpy(), b.numpy()) for a, b in zip(before.weights, after.weights)]
    assert len(values) == len(before.weights) == len(after.weights)
    edited = [i for i, (a, b) in enumerate(values) if a.tobytes() != b.tobytes()]
    assert len(edited) == 1 and values[edited[0]][1].tobytes() == expected.tobytes()
    slots = [(a.numpy(), b.numpy()) for a, b in zip(models.optimizer_variables(before),
                                                     models.optimizer_variables(after))]
    assert slots and all(a.tobytes() == b.tobytes() for a, b in slots)
    iterations = int(after.optimizer.iterations.numpy())
    x, y = models.sample_data(entry["case"])
    history = after.fit(x, y, epochs=1, batch_size=len(x), verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert int(after.optimizer.iterations.numpy()) == iterations + 1 > 1


# --- dropping variables from Keras files ------------------------------------------------------

def _h5_entries(path) -> list[tuple]:
    """`keras_lib.h5_tree` of an HDF5 file, or of the weights inside a .keras archive."""
    from keras_lib import h5_tree, keras_member_tree

    return keras_member_tree(path) if str(path).endswith(".keras") else h5_tree(path)


def _outside(entries: list[tuple], groups: tuple[str, ...]) -> list[tuple]:
    return [e for e in entries if not any(e[1] == g or e[1].startswith(g + "/") for g in groups)]


# fixture, operations, the groups that go with the optimizer state
OPTIMIZER_DROPS = [
    ("mlp--tfkeras-full.h5", ["--no-optimizer"], ("optimizer_weights",)),
    ("lstm--tfkeras-full.h5", ["--drop", "Adam/*", "--drop", "iteration"], ("optimizer_weights",)),
    ("mlp--tfkeras-legacyopt-full.h5", ["--drop", "Adam/*"], ("optimizer_weights",)),
    ("deep--tfkeras-full.h5", ["--keep", "l*"], ("optimizer_weights",)),
    ("mlp--keras3-legacy.h5", ["--drop", "adam/*"], ("optimizer_weights",)),
    ("mlp--keras3.weights.h5", ["--no-optimizer"], ("optimizer",)),
    ("bf16--keras3.weights.h5", ["--drop", "optimizer/*"], ("optimizer",)),
    ("mlp--keras3.keras", ["--keep", "d*"], ("optimizer",)),
    ("mha--keras3.keras", ["--no-optimizer"], ("optimizer",)),
]


@pytest.mark.parametrize("name, ops, groups", OPTIMIZER_DROPS)
def test_dropped_optimizer_state_leaves_the_file(name, ops, groups, tmp_path, capsys):
    """The optimizer's group is gone from the written file; every other group, dataset and
    attribute (model_config, training_config, layer_names, weight_names) is as it was."""
    from fixtures_lib import fixture

    source = fixture(name)
    target = tmp_path / os.path.basename(str(source))
    assert main(["edit", str(source), str(target), *ops]) == 0
    before, after = _h5_entries(source), _h5_entries(target)
    assert len(_outside(before, groups)) < len(before)  # the source had optimizer state
    assert _outside(after, groups) == after  # none of it is left
    assert after == _outside(before, groups)
    with weightkit.load(source) as original, weightkit.load(target) as written:
        assert list(written) == [n for n, t in original.items() if t.role == "weight"]
        assert all(written[n].read().tobytes() == original[n].read().tobytes() for n in written)


def test_sharded_weights_lose_the_optimizer_shards_and_index_entries(tmp_path):
    from fixtures_lib import copy

    source = copy("mlp--keras3-sharded.weights.json", tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["edit", str(source), str(out / "small.weights.json"), "--no-optimizer"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["small.weights.json",
                                                     "small_00000.weights.h5"]
    index = json.loads((out / "small.weights.json").read_text())
    assert index["weight_map"] == {"/layers/dense/vars": ["small_00000.weights.h5"],
                                   "/layers/dense_1/vars": ["small_00000.weights.h5"]}
    with weightkit.load(source) as original, weightkit.load(out / "small.weights.json") as new:
        weights = [n for n, t in original.items() if t.role == "weight"]
        assert list(new) == weights
        assert index["metadata"]["total_size"] == sum(original[n].nbytes for n in weights)
    assert _outside(_h5_entries(out / "small_00000.weights.h5"), ("optimizer",)) == \
        _h5_entries(out / "small_00000.weights.h5")


def test_a_whole_layer_leaves_a_save_weights_h5(tmp_path):
    """tf_keras save_weights layout: dropping every weight of a layer removes its group and
    its entry in layer_names (so load_weights(by_name=True) skips it)."""
    from fixtures_lib import fixture

    source = fixture("mlp--tfkeras-weights.h5")
    target = tmp_path / "w.h5"
    assert main(["edit", str(source), str(target), "--drop", "d2/*"]) == 0
    with h5py.File(target, "r") as f:
        assert list(f) == ["d1", "top_level_model_weights", "x"]
        assert list(f.attrs["layer_names"]) == ["x", "d1"]
        assert f.attrs.get_id("layer_names").dtype == f.attrs.get_id("keras_version").dtype

    def rest(path) -> list[tuple]:
        return [e for e in _outside(_h5_entries(path), ("d2",))
                if e[:3] != ("attr", "/", "layer_names")]
    assert len(rest(source)) < len(_h5_entries(source)) and rest(target) == rest(source)


def test_name_lists_are_chunked_as_tf_keras_chunks_them():
    """`list_attrs` rewrites a name list as tf_keras' save_attributes_to_hdf5_group: on the
    tf_keras-written deep fixture it gives back exactly the recorded chunks (fixed-width
    strings split in two under 64512 bytes); fewer names fit in one vlen attribute."""
    from fixtures_lib import fixture
    from weightkit.converters import hdf5
    from weightkit.converters.keras_h5 import list_attrs

    with weightkit.load(fixture("deep--tfkeras-full.h5")) as store:
        tree = store.meta["keras_h5"]["tree"]
    for path, name in [("model_weights", "layer_names"), ("optimizer_weights", "weight_names")]:
        node = hdf5.find(tree, path)
        names = hdf5.chunked_attr(node, name)
        assert {a for a, _ in node["attrs"]} >= {f"{name}0", f"{name}1"}
        assert sorted(map(str, list_attrs(node["attrs"], name, names))) == \
            sorted(map(str, node["attrs"]))
        shorter = [n for n in names if len(n) < 100]
        rewritten = dict(list_attrs(node["attrs"], name, shorter))
        assert rewritten[name]["type"] == {"str": "vlen", "cset": "ascii"}
        assert not any(a.startswith(f"{name}0") for a in rewritten)
        assert hdf5.chunked_attr({"attrs": list(rewritten.items())}, name) == shorter
        assert dict(list_attrs(node["attrs"], name, []))[name] == hdf5.empty_list_attr()


@pytest.mark.parametrize("name, ops, message", [
    ("mlp--tfkeras-full.h5", ["--drop", "Adam/*"],
     "dropping 8 of the 9 optimizer variables (e.g. 'Adam/m/d1/kernel')"),
    ("mlp--tfkeras-full.h5", ["--drop", "d1/kernel"],
     "cannot drop 'd1/kernel' (layer 'd1') from a full-model .h5"),
    ("mlp--tfkeras-full.h5", ["--keep", "d1/*"], "(layer 'd2') from a full-model .h5"),
    ("mlp--keras3-legacy.h5", ["--drop", "adam/iteration"],
     "dropping 1 of the 10 optimizer variables"),
    ("mlp--tfkeras-weights.h5", ["--drop", "d1/bias"],
     "cannot drop 'd1/bias' without the rest of layer 'd1'"),
    ("mlp--keras3.weights.h5", ["--drop", "optimizer/0"],
     "dropping 1 of the 10 variables of optimizer 'adam' (e.g. 'adam/iteration')"),
    ("mlp--keras3.weights.h5", ["--keep", "optimizer/*"],
     "cannot drop 'd1/kernel': Keras 3 loads"),
    ("mlp--keras3.keras", ["--drop", "d2/*"],
     "Keras 3 loads the variables of layer 'd2' by count and position"),
    ("mlp--keras3-sharded.weights.json", ["--drop", "optimizer/[2-5]"],
     "dropping 4 of the 10 variables of optimizer 'adam'"),
])
@pytest.mark.parametrize("dry_run", [False, True])
def test_drops_the_framework_cannot_load_are_refused(name, ops, message, dry_run, tmp_path,
                                                     capsys):
    """Exit 2, one line that says why, nothing written; a dry run shows the diff, then stops
    with the same line."""
    from fixtures_lib import copy

    source = copy(name, tmp_path)
    target = tmp_path / "out" / f"out.{source.name.split('.', 1)[1]}"
    target.parent.mkdir()
    assert main(["edit", str(source), str(target), *ops] + (["--dry-run"] if dry_run else [])) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and message in err, err
    assert list(target.parent.iterdir()) == []
    assert ("removed" in out) == dry_run


def test_dry_run_of_an_optimizer_drop_lists_it_and_writes_nothing(tmp_path, capsys):
    from fixtures_lib import fixture

    assert main(["edit", str(fixture("mlp--keras3.keras")), str(tmp_path / "out.keras"),
                 "--no-optimizer", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    status = {line.split()[1]: line.split()[0] for line in out.splitlines()
              if line.split()[:1] in (["removed"], ["same"], ["changed"])}
    with weightkit.load(fixture("mlp--keras3.keras")) as store:
        optimizer = [n for n, t in store.items() if t.role != "weight"]
    assert status == {name: "removed" for name in optimizer}
    assert "--no-optimizer" in out and "refused" not in out


def test_drop_optimizer_drops_roles_optimizer_and_counter(arrays):
    store, reads = counting_store(arrays)
    store = Store({n: t.with_meta(role="counter") if n == "iteration" else t
                   for n, t in store.items()})
    edited = edit(store).drop_optimizer()
    assert list(edited) == ["dense/kernel", "dense/bias", "conv/kernel"]
    assert [(e.op, e.name, e.detail) for e in edited.edits] == [
        ("no-optimizer", "iteration", "dropped (counter)")]
    with pytest.raises(UsageError, match="found no variable of role optimizer or counter"):
        edited.drop_optimizer()
    assert reads == Counter()


# fixture, operations, edit_oracle options for loading the result
LOADED_DROPS = {
    "tf_keras": OPTIMIZER_DROPS[:4] + [("mlp--tfkeras-weights.h5", ["--drop", "d2/*"], ())],
    "keras3": OPTIMIZER_DROPS[4:] + [("mlp--keras3-sharded.weights.json", ["--no-optimizer"],
                                      ())],
}


@pytest.mark.tensorflow
@pytest.mark.parametrize("framework", ["tf_keras", "keras3"])
def test_frameworks_load_files_with_dropped_variables(framework, tmp_path):
    """Each drop the writers allow, loaded the way users load it: load_model (full .h5,
    .keras; tf_keras compiles a fresh optimizer from training_config), load_weights into a
    compiled model (Keras 3 .weights.h5, sharded too: it warns that it skips the optimizer),
    load_weights(by_name=True) for a save_weights .h5 without a layer. Model weights are
    bit-identical to the original's, and the optimizer starts fresh (0 iterations, where the
    original restores 2); the layer dropped keeps its initial values."""
    from fixtures_lib import copy, manifest

    jobs, cases = [], LOADED_DROPS[framework]
    for i, (name, ops, _) in enumerate(cases):
        entry = manifest()[name]
        source = copy(entry, tmp_path / f"src{i}")
        target = tmp_path / f"out{i}" / source.name
        target.parent.mkdir()
        assert main(["edit", str(source), str(target), *ops]) == 0
        by_name = entry["layout"] == "tfkeras-weights-h5"
        legacy = {"optimizer": False} if entry["layout"] == "keras3-legacy-h5" else {}
        options = {"by_name": True} if by_name else {"weights_only": True, **legacy}
        jobs += [(name, str(source), str(tmp_path / f"{i}-original.npz"), options),
                 (name, str(target), str(tmp_path / f"{i}-edited.npz"), options)]
    _restored(jobs, framework)
    for i, (name, ops, _) in enumerate(cases):
        original = _weights(tmp_path / f"{i}-original.npz")
        edited = _weights(tmp_path / f"{i}-edited.npz")
        assert [n for n, _ in original] == [n for n, _ in edited], name
        if "--drop" in ops and "d2/*" in ops:
            for (var, a), (_, b) in zip(original, edited):
                assert (a.tobytes() == b.tobytes()) == var.startswith("d1/"), (name, var)
            continue
        assert all(a.tobytes() == b.tobytes() for (_, a), (_, b) in zip(original, edited)), name
        before, after = (int(np.load(tmp_path / f"{i}-{side}.npz")["iterations"])
                         for side in ("original", "edited"))
        if manifest()[name]["layout"] != "keras3-legacy-h5":  # Keras 3 restores no slots there
            assert (before, after) == (manifest()[name]["train_steps"], 0), name


def test_plain_hdf5_loses_dropped_datasets_and_the_groups_they_empty(tmp_path):
    """A plain HDF5 file (no Keras attributes): dropped datasets go, with the groups left
    empty by that; a group that was empty already stays, and so do attributes."""
    source, target = tmp_path / "plain.h5", tmp_path / "out.h5"
    with h5py.File(source, "w") as f:
        f.create_dataset("a/inner/x", data=np.arange(3.0))
        f["a"].attrs["note"] = "kept with a/y"
        f.create_dataset("a/y", data=np.ones(2, np.int8))
        f.create_dataset("b/z", data=np.zeros(4, np.float32))
        f.create_group("c")
    assert main(["edit", str(source), str(target), "--drop", "a/inner/*", "--drop", "b/*"]) == 0
    with h5py.File(target, "r") as f:
        assert sorted(f) == ["a", "c"] and list(f["a"]) == ["y"]
        assert f["a"].attrs["note"] == "kept with a/y"


def test_python_api_drops_and_refuses_like_the_command(tmp_path):
    from fixtures_lib import fixture

    with weightkit.load(fixture("mlp--keras3.keras")) as store:
        weightkit.save(weightkit.edit(store).keep("d*"), tmp_path / "small.keras")
        with pytest.raises(UsageError, match="variables of optimizer 'adam'"):
            weightkit.save(weightkit.edit(store).drop("optimizer/1"), tmp_path / "bad.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.keras"]
    with weightkit.load(tmp_path / "small.keras") as small:
        assert list(small) == ["d1/kernel", "d1/bias", "d2/kernel", "d2/bias"]


@pytest.mark.parametrize("name, out", [("mlp--tfkeras-full.h5", "out.h5"),
                                       ("mlp--keras3.weights.h5", "out.weights.h5"),
                                       ("mlp--keras3.keras", "out.keras")])
def test_adding_to_a_keras_file_says_which_formats_take_new_variables(tmp_path, capsys, name,
                                                                      out):
    # It said "write without the recorded layout or a template", which no option does.
    from fixtures_lib import fixture

    np.save(tmp_path / "extra.npy", np.ones(3, np.float32))
    assert main(["edit", str(fixture(name)), str(tmp_path / out),
                 "--add", f"extra={tmp_path / 'extra.npy'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no place for 1 variable(s) (e.g. 'extra')" in err
    assert "write safetensors or npz to add variables" in err
    assert not (tmp_path / out).exists()
    assert main(["edit", str(fixture(name)), str(tmp_path / "out.npz"),
                 "--add", f"extra={tmp_path / 'extra.npy'}"]) == 0  # as the message says
