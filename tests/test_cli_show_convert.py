"""`weightkit show` and `weightkit convert` on safetensors and npz files: the table, JSON and
statistics (checked against numpy), values, filters, roles; atomic conversions that never
overwrite an input; exit 2 with one line on stderr for bad input; and no TensorFlow or Keras
imported along the way."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from conftest import run_cli

import weightkit
from weightkit.cli.main import main
from weightkit.converters import npz
from weightkit.converters.store import Store, Tensor

FORMAT_OF = {".safetensors": "safetensors", ".npz": "npz"}
SUFFIXES = tuple(FORMAT_OF)
DETECT = True  # every format is registered: detection by content works for all


def fmt_args(path: Path, option: str = "--from") -> list[str]:
    return [] if DETECT else [option, FORMAT_OF[path.suffix]]


def model_store() -> Store:
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(4, 3)).astype(np.float32)
    kernel[0, 0] = 0.0
    bias = np.array([0.0, np.nan, np.inf], np.float32)
    tensors = {
        "dense/kernel": Tensor.from_array(kernel, {"role": "weight", "key": "dense/kernel:0"}),
        "dense/bias": Tensor.from_array(bias),
        "dense/embedding": Tensor.from_array(np.arange(2000, dtype=np.float16).reshape(40, 50)),
        "adam/dense_kernel_momentum": Tensor.from_array(np.ones((4, 3), ml_dtypes.bfloat16),
                                                        {"role": "optimizer"}),
        "adam/iteration": Tensor.from_array(np.array(7, np.int64), {"role": "counter"}),
    }
    return Store(tensors)


@pytest.fixture(params=SUFFIXES)
def model(request, tmp_path: Path) -> Path:
    path = tmp_path / f"model{request.param}"
    weightkit.save(model_store(), path, FORMAT_OF[request.param])
    return path


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args], prog="weightkit")
    out, err = capsys.readouterr()
    return code, out, err


# -- show -------------------------------------------------------------------------------------

def test_show_table_lists_every_tensor_with_roles_and_totals(capsys, model: Path) -> None:
    code, out, err = cli(capsys, "show", model, *fmt_args(model))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"{model}: {FORMAT_OF[model.suffix]}"
    assert lines[1].split() == ["name", "shape", "dtype", "params", "min", "max", "mean", "std",
                                "zeros", "%", "nan/inf"]
    rows = {line.split()[0]: line for line in lines[3:-1]}
    assert list(rows) == list(model_store())
    assert rows["dense/kernel"].split()[1:4] == ["(4,", "3)", "float32"]
    assert "[optimizer]" in rows["adam/dense_kernel_momentum"]
    assert "bfloat16" in rows["adam/dense_kernel_momentum"]
    assert "[counter]" in rows["adam/iteration"] and "()" in rows["adam/iteration"]
    assert rows["dense/bias"].split()[-1] == "1/1"
    assert lines[-1].startswith("5 variables, 2,028 parameters,")


def test_show_json_statistics_match_numpy(capsys, model: Path) -> None:
    code, out, _ = cli(capsys, "show", model, "--json", *fmt_args(model))
    assert code == 0
    report = json.loads(out)
    assert report["format"] == FORMAT_OF[model.suffix]
    rows = {r["name"]: r for r in report["variables"]}
    store = model_store()
    assert list(rows) == list(store)
    for name, tensor in store.items():
        row, values = rows[name], tensor.read().astype(np.float64)
        finite = values[np.isfinite(values)]
        assert row["shape"] == list(tensor.shape) and row["dtype"] == tensor.dtype_name
        assert row["role"] == tensor.role and row["parameters"] == tensor.size
        assert row["min"] == pytest.approx(finite.min()) and row["max"] == pytest.approx(finite.max())
        assert row["mean"] == pytest.approx(finite.mean(), rel=1e-9, abs=1e-12)
        assert row["std"] == pytest.approx(finite.std(), rel=1e-9, abs=1e-12)
        assert row["zero_fraction"] == pytest.approx(np.mean(values == 0))
        assert (row["nan"], row["inf"]) == (int(np.isnan(values).sum()), int(np.isinf(values).sum()))
    assert rows["dense/kernel"]["key"] == "dense/kernel:0"
    assert report["totals"] == {"variables": 5, "parameters": 2028,
                                "bytes": sum(t.nbytes for t in store.values())}


def test_show_filter_and_no_optimizer(capsys, model: Path) -> None:
    _, out, _ = cli(capsys, "show", model, "--json", "--no-optimizer", *fmt_args(model))
    assert [r["name"] for r in json.loads(out)["variables"]] == [
        "dense/kernel", "dense/bias", "dense/embedding"]
    _, out, _ = cli(capsys, "show", model, "--json", "--filter", "*/bias", "--filter", "adam/*",
                    *fmt_args(model))
    assert [r["name"] for r in json.loads(out)["variables"]] == [
        "dense/bias", "adam/dense_kernel_momentum", "adam/iteration"]
    code, out, err = cli(capsys, "show", model, "--filter", "dense/bais", *fmt_args(model))
    assert code == 2 and out == ""
    assert "--include: no variable named 'dense/bais' among 5; did you mean 'dense/bias'" in err
    code, out, err = cli(capsys, "show", model, "--filter", "adam/*", "--no-optimizer",
                         *fmt_args(model))
    assert code == 2 and "leaves none of 5" in err


def numbers_in(text: str) -> list[float]:
    body = text.split("\n", 1)[1]
    return [float(x) for x in body.translate(str.maketrans("[],", "   ")).split() if x != "..."]


def test_show_values_summarises_unless_full(capsys, model: Path) -> None:
    code, out, _ = cli(capsys, "show", model, "--values", "dense/embedding", *fmt_args(model))
    assert code == 0
    assert out.splitlines()[0] == "dense/embedding: shape (40, 50) float16"
    assert "..." in out and len(numbers_in(out)) < 2000
    _, full, _ = cli(capsys, "show", model, "--values", "dense/embedding", "--full",
                     *fmt_args(model))
    assert "..." not in full and numbers_in(full) == list(range(2000))
    code, _, err = cli(capsys, "show", model, "--values", "no/such", *fmt_args(model))
    assert code == 2 and "no variable named 'no/such'" in err


def test_one_variable_is_counted_in_the_singular(capsys, tmp_path: Path) -> None:
    path = tmp_path / "one.safetensors"
    weightkit.save(Store.from_arrays({"w": np.zeros((), np.float32)}), path)
    assert cli(capsys, "show", path)[1].splitlines()[-1] == "1 variable, 1 parameter, 4 B"
    assert cli(capsys, "verify", path, "--via", "npz")[1].splitlines()[0] == \
        f"{path}: safetensors, 1 variable"


def test_show_escapes_hostile_names(capsys, tmp_path: Path) -> None:
    path = tmp_path / "evil.safetensors"
    name = "a\nb\x1b[31m::error::x"
    weightkit.save(Store.from_arrays({name: np.zeros(2, np.float32)}), path)
    _, out, _ = cli(capsys, "show", path, *fmt_args(path))
    assert "\x1b" not in out and "::error::" not in out and "a\nb" not in out
    assert "a\\x0ab\\x1b[31m" in out


# -- convert ----------------------------------------------------------------------------------

@pytest.mark.parametrize("target", SUFFIXES)
def test_convert_round_trips_exactly(capsys, model: Path, target: str) -> None:
    out = model.parent / f"converted{target}"
    code, stdout, err = cli(capsys, "convert", model, out, *fmt_args(model, "--from"))
    assert (code, err) == (0, "")
    back = model.parent / f"back{model.suffix}"
    assert cli(capsys, "convert", out, back, *fmt_args(out, "--from"))[0] == 0
    assert back.read_bytes() == model.read_bytes()
    with weightkit.load(out, FORMAT_OF[target]) as store:
        want = model_store()
        assert list(store) == list(want)
        for name in want:
            assert store[name].read().tobytes() == want[name].read().tobytes()
            assert store[name].meta == want[name].meta


def test_convert_to_names_the_format(capsys, model: Path) -> None:
    out = model.parent / "weights.bin"
    code, _, err = cli(capsys, "convert", model, out, *fmt_args(model, "--from"))
    assert code == 2 and "--to FORMAT" in err and not out.exists()
    assert cli(capsys, "convert", model, out, "--to", "npz", *fmt_args(model, "--from"))[0] == 0
    assert npz.sniff(str(out), out.read_bytes()[:4096])


def test_convert_refuses_to_overwrite_its_input(capsys, model: Path) -> None:
    before = model.read_bytes()
    link = model.parent / f"link{model.suffix}"
    os.link(model, link)
    for target in (model, link, model.parent / "." / model.name):
        code, _, err = cli(capsys, "convert", model, target, "--to", FORMAT_OF[model.suffix],
                           *fmt_args(model, "--from"))
        assert code == 2 and "refusing to overwrite the input" in err
    assert model.read_bytes() == before


def test_a_checkpoint_prefix_and_its_index_are_one_input(capsys, tmp_path: Path) -> None:
    """`convert ck/after.index ck/after` would rewrite the checkpoint it reads (a name without
    a suffix is a checkpoint prefix when the input is a checkpoint): refused, whichever of
    its files or its directory names it, through a symlink or a file:// URL."""
    import shutil
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    for part in ("index", "data-00000-of-00001"):
        shutil.copy(fixtures / f"mlp--keras3.ckpt.{part}", tmp_path / f"after.{part}")
    before = (tmp_path / "after.index").read_bytes()
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "after"\n')
    (tmp_path / "link").symlink_to(tmp_path)
    data = "after.data-00000-of-00001"
    for command in ("convert", "edit"):
        for src, dst in (("after.index", "after"), ("after", "after.index"), (data, "after"),
                         ("after", data), (".", "after"),  # (a directory: its newest)
                         ("link/after.index", "after"), ("after", "link/after")):
            code, _, err = cli(capsys, command, tmp_path / src, tmp_path / dst, "--drop", "d1/*")
            assert code == 2 and "refusing to overwrite the input" in err, (src, dst, err)
        code, _, err = cli(capsys, command, tmp_path / "after", f"file://{tmp_path}/after.index",
                           "--drop", "d1/*")
        assert code == 2 and "refusing to overwrite the input" in err, err
    assert (tmp_path / "after.index").read_bytes() == before


def test_a_report_is_never_written_over_an_input(capsys, tmp_path: Path, model: Path) -> None:
    """`-o FILE` naming an input (directly, through a symlinked directory) is refused before
    any work; the input is untouched."""
    before = model.read_bytes()
    (tmp_path / "link").symlink_to(model.parent)
    for argv in (["show", model, "-o", model], ["diff", model, model, "-o", model],
                 ["diff", model, model, "-o", tmp_path / "link" / model.name]):
        code, _, err = cli(capsys, *argv)
        assert code == 2 and "refusing to overwrite the input" in err, (argv, err)
    assert model.read_bytes() == before
    assert cli(capsys, "show", model, "-o", tmp_path / "report.txt", "-q") == (0, "", "")
    assert (tmp_path / "report.txt").read_text().startswith(f"{model}: ")  # -q prints nothing;
    assert cli(capsys, "diff", model, model, "-q", "-o", tmp_path / "d.md",  # -o is written
               "--format", "markdown") == (0, "", "") and (tmp_path / "d.md").stat().st_size


def test_top_says_how_many_rows_it_left_out(capsys, model: Path) -> None:
    out = cli(capsys, "show", model, "--top", "2", *fmt_args(model))[1].splitlines()
    assert out[-1] == "2 of 5 rows shown (--top 2)"
    out = cli(capsys, "show", model, "--top", "9", *fmt_args(model))[1]
    assert "rows shown" not in out  # nothing left out: nothing said


def test_a_reports_format_follows_the_output_suffix(capsys, tmp_path: Path, model: Path) -> None:
    """`-o r.json` writes JSON, `-o r.md` markdown (text elsewhere); --format decides when
    given; `show --values` writes to -o too."""
    assert cli(capsys, "show", model, "-o", tmp_path / "r.json")[0] == 0
    assert json.loads((tmp_path / "r.json").read_text())["variables"]
    assert cli(capsys, "diff", model, model, "-o", tmp_path / "r.md")[0] == 0
    assert (tmp_path / "r.md").read_text().startswith("#### wdiff")
    assert cli(capsys, "show", model, "-o", tmp_path / "t.json", "--format", "text")[0] == 0
    assert (tmp_path / "t.json").read_text().startswith(f"{model}: ")
    assert cli(capsys, "verify", model, "--via", "npz", "-o", tmp_path / "verify.json",
               *fmt_args(model)) == (0, "", "")
    assert json.loads((tmp_path / "verify.json").read_text())["status"] == "ok"
    assert cli(capsys, "show", model, "--values", "dense/bias", "-o", tmp_path / "v.json") == \
        (0, "", "")
    assert json.loads((tmp_path / "v.json").read_text())["values"][0]["name"] == "dense/bias"


def test_no_output_replaces_a_file_of_an_input(capsys, tmp_path: Path) -> None:
    """A file inside an input directory (a SavedModel's graph, a TF.js manifest or shard, a
    checkpoint directory's state file) or a shard of a sharded `.weights.json` is part of the
    input: no report, conversion or edit replaces it. A new file beside them is fine."""
    import shutil
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    for name in ("mlp--tfkeras-savedmodel", "conv--tfjs-layers", "mlp--keras3-ckptdir"):
        shutil.copytree(fixtures / name, tmp_path / name)
    for part in ("", "_00000", "_00001", "_00002"):
        suffix = ".weights.json" if not part else ".weights.h5"
        shutil.copy(fixtures / f"mlp--keras3-sharded{part}{suffix}", tmp_path)
    keras = fixtures / "mlp--keras3.keras"
    sm, tj, ck = (tmp_path / n for n in ("mlp--tfkeras-savedmodel", "conv--tfjs-layers",
                                         "mlp--keras3-ckptdir"))
    sharded = tmp_path / "mlp--keras3-sharded.weights.json"
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for argv in (["diff", sm, keras, "-o", sm / "saved_model.pb"],
                 ["diff", ck, keras, "-o", ck / "checkpoint"],
                 ["diff", sharded, keras, "-o", tmp_path / "mlp--keras3-sharded_00001.weights.h5"],
                 ["convert", tj, tj / "group1-shard1of3.bin", "--to", "npz"],
                 ["convert", tj / "model.json", tj / "group1-shard2of3.bin", "--to", "npz"],
                 ["edit", sm, sm / "variables" / "variables", "--to", "tf-checkpoint",
                  "--allow-lossy", "--scale", "d1/bias=2"]):
        code, _, err = cli(capsys, *argv)
        assert code == 2 and "refusing to overwrite the input" in err, (argv, err)
    assert {p: p.read_bytes() for p in before} == before
    assert cli(capsys, "edit", ck, ck / "ckpt-2", "--scale", "d1/bias=2", "-q")[0] == 0


def test_convert_refuses_lossy_output_unless_allowed(capsys, monkeypatch, model: Path) -> None:
    monkeypatch.setattr(npz, "losses", lambda store, like=None: ["the colour of 'dense/kernel'"])
    out = model.parent / "lossy.npz"
    code, _, err = cli(capsys, "convert", model, out, *fmt_args(model, "--from"))
    assert code == 2 and "would lose: the colour of 'dense/kernel'" in err
    assert "--allow-lossy" in err and not out.exists()
    code, _, err = cli(capsys, "convert", model, out, "--allow-lossy", *fmt_args(model, "--from"))
    assert code == 0 and out.exists()  # the accepted losses said once, on stderr
    assert err == (f"weightkit: note: {out}: written without the colour of 'dense/kernel' "
                   "(--allow-lossy)\n")
    out.unlink()
    code, _, err = cli(capsys, "convert", model, out, "--allow-lossy", "-q",
                       *fmt_args(model, "--from"))
    assert (code, err) == (0, "") and out.exists()


def test_failed_convert_leaves_the_destination_untouched(capsys, model: Path) -> None:
    broken = model.parent / f"broken{model.suffix}"
    broken.write_bytes(model.read_bytes()[:len(model.read_bytes()) // 2])
    dest = model.parent / "dest.safetensors"
    dest.write_bytes(b"precious")
    code, _, err = cli(capsys, "convert", broken, dest, *fmt_args(model, "--from"))
    assert code == 2 and err.count("\n") == 1 and str(broken) in err
    assert dest.read_bytes() == b"precious"
    assert sorted(p.name for p in model.parent.iterdir()) == sorted(
        [model.name, broken.name, dest.name])


def test_a_file_output_onto_a_directory_names_the_directory(capsys, model: Path) -> None:
    # The rename of the finished temporary used to fail, and the error named the temporary
    # (`/tmp/.out.wk-tmp-1dd2b8575cda: Is a directory`), a file the user never asked for.
    out = model.parent / "out"
    out.mkdir()
    for args in (["convert", model, out, "--to", "safetensors"],
                 ["show", model, "--values", "dense/bias", "--npz", out]):
        code, _, err = cli(capsys, *args, *fmt_args(model, "--from"))
        assert code == 2 and err.count("\n") == 1, err
        assert f"{out}: is a directory" in err and "wk-tmp" not in err
        (out / "keep.txt").write_text("mine")  # the second time, not empty
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in model.parent.iterdir() if "wk-tmp" in p.name]


def test_a_directory_output_never_replaces_a_directory_of_other_files(capsys, model: Path
                                                                       ) -> None:
    # A TF.js model or SavedModel is written as a whole directory that replaces the one at its
    # path: `convert model.h5 . --to tfjs` deleted everything in the current directory.
    folder = model.parent / "project"
    folder.mkdir()
    (folder / "thesis.txt").write_text("mine")
    for target, cwd in ((folder, None), (".", folder)):
        result = run_cli("convert", model, target, "--to", "tfjs", cwd=cwd)
        assert result.returncode == 2, result.stderr
        assert "existing directory holding files that are not a model" in result.stderr
    assert [p.name for p in folder.iterdir()] == ["thesis.txt"]
    web = model.parent / "web"
    assert cli(capsys, "convert", model, web, "--to", "tfjs")[0] == 0  # a new directory
    assert cli(capsys, "convert", model, web, "--to", "tfjs")[0] == 0  # an earlier output
    assert sorted(p.name for p in web.iterdir()) == ["group1-shard1of1.bin", "model.json"]
    saved_model = Path(__file__).resolve().parent.parent / "fixtures" / "mlp--tfkeras-savedmodel"
    code, _, err = cli(capsys, "convert", saved_model, web, "--to", "saved-model")
    assert code == 2 and "holding a tfjs model" in err  # another format's model stays too
    assert (web / "model.json").exists()


# -- bad input, in a real process -------------------------------------------------------------

BAD_INPUTS = {
    "empty": b"",
    "garbage": b"\x00garbage" * 50,
    "truncated safetensors": b"\x40\x00\x00\x00\x00\x00\x00\x00{\"a\":",
    "lying header": b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":{}}        ",
    "truncated zip": b"PK\x03\x04" + b"\x00" * 40,
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, case: str, suffix: str) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(BAD_INPUTS[case])
    for args in (["show", path], ["convert", path, tmp_path / "out.safetensors"]):
        result = run_cli(*args, *([] if DETECT else
                                  ["--format" if args[0] == "show" else "--from", FORMAT_OF[suffix]]))
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith("weightkit: error: ") and str(path) in result.stderr
        assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_from_a_format_the_file_is_not_in_names_the_one_it_is_in(capsys) -> None:
    legacy = Path(__file__).resolve().parent.parent / "fixtures" / "mlp--tfkeras-full.h5"
    code, out, err = cli(capsys, "show", "--from", "keras", legacy)
    assert (code, out) == (2, "")
    assert err == (f"weightkit: error: {legacy}: not a keras file; it reads as keras-h5 (Keras "
                   "HDF5: tf.keras model.save / save_weights, Keras 3 legacy .h5): use --from "
                   "keras-h5, or no --from\n")


def test_a_template_of_another_format_than_the_output_is_refused(capsys, tmp_path) -> None:
    """`--like X.keras` for a .weights.h5 output was ignored, and silenced what the write
    loses; a template the output's writer takes nothing from is an error naming both formats
    and the template to give. A template carried through safetensors still serves."""
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    keras, weights = fixtures / "mlp--keras3.keras", fixtures / "mlp--keras3.weights.h5"
    out = tmp_path / "out.weights.h5"
    for command in (["convert", weights, out, "--to", "weights-h5"],
                    ["edit", weights, out, "--scale", "d1/kernel=2"]):
        code, _, err = cli(capsys, *command, "--like", keras)
        assert code == 2 and not out.exists()
        assert err == (f"weightkit: error: {keras}: writing keras-weights-h5 takes nothing from "
                       "a keras template: give --like this model in keras-weights-h5 format, "
                       "or leave --like out\n")
    carried = tmp_path / "carried.safetensors"
    assert cli(capsys, "convert", keras, carried)[0] == 0
    assert cli(capsys, "convert", weights, tmp_path / "out.keras", "--like", carried)[0] == 0
    code, _, err = cli(capsys, "verify", weights, "--like", carried)
    assert code == 2 and err == (f"weightkit: error: {carried}: writing safetensors takes "
                                 "nothing from a template: leave --like out\n")


USAGE_ERRORS = [  # (arguments after the file, the one line expected after "PROG: error: ")
    (["show", "--sort", "foo"], "--sort: expected one of name, parameters, bytes, min, max, "
                                "mean, std, zero_fraction, nan, inf; received 'foo'"),
    (["show", "--by", "row"], "--by: expected one of variable, layer, module; received 'row'"),
    (["show", "--format", "yaml"], "--format: expected one of text, json, markdown, html; "
                                   "received 'yaml'"),
    (["show", "--color", "red"], "--color/--colour: expected one of auto, always, never; "
                                 "received 'red'"),
    (["verify", "--format", "markdown"], "--format: expected one of text, json; received "
                                         "'markdown'"),
    (["convert", "out.npz", "--match", "shape"], "--match: expected one of name, structure; "
                                                 "received 'shape'"),
    (["show", "--top", "x"], "--top: expected a whole number, received 'x'"),
    (["show", "--bogus"], "unrecognized arguments: --bogus"),
    (["show", "--by", "layr"], "--by: expected one of variable, layer, module; received 'layr'; "
                               "did you mean layer?"),
    (["show", "--inclde", "d1/*"], "unrecognized arguments: --inclde d1/*; did you mean "
                                   "--include?"),
    (["show", "--no-optimiser", "--exlcude=x"], "unrecognized arguments: --no-optimiser "
                                                "--exlcude=x; did you mean --no-optimizer (for "
                                                "--no-optimiser), --exclude (for --exlcude)?"),
    (["diff", "other.h5", "--atoll", "1"], "unrecognized arguments: --atoll 1; did you mean "
                                           "--atol?"),
    (["convert", "out.npz", "--weight-only"], "unrecognized arguments: --weight-only; did you "
                                              "mean --weights-only?"),
]


@pytest.mark.parametrize("args, message", USAGE_ERRORS)
def test_a_usage_error_is_one_line_without_the_usage(capsys, args, message) -> None:
    """argparse printed its whole usage block before the error; every usage error is one line,
    as every other error is (`weightkit: error:`, whichever command), and invalid choices list
    the choices as other errors do."""
    command, *rest = args
    with pytest.raises(SystemExit) as exit_info:
        main([command, "model.safetensors", *rest], prog="weightkit")
    assert exit_info.value.code == 2
    assert capsys.readouterr() == ("", f"weightkit: error: {message}\n")


def test_wdiff_names_the_option_meant(capsys) -> None:
    from weightkit.cli.main import wdiff
    with pytest.raises(SystemExit) as exit_info:
        wdiff(["a.h5", "b.h5", "--rtoll", "0.1", "--nothing-like-it"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("wdiff: error: unrecognized arguments: --rtoll 0.1 "
                                       "--nothing-like-it; did you mean --rtol?\n")


def test_an_unknown_command_is_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["shwo", "model.h5"], prog="weightkit")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("weightkit: error: COMMAND: expected one of "
                                                   "show, convert, verify,")
    assert err.endswith("; received 'shwo'; did you mean show?\n")


@pytest.mark.parametrize("target", ["missing.safetensors", "."])
def test_missing_files_and_directories_are_one_line(tmp_path: Path, target: str) -> None:
    result = run_cli("show", tmp_path / target, "--from", "safetensors")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_a_mistyped_file_name_names_the_closest_files(capsys, model: Path) -> None:
    typo = model.with_name(model.stem + "l" + model.suffix)  # model -> modell
    (model.parent / "run.ckpt.index").write_bytes(b"")
    for args, want in ((["show", typo], repr(str(model))),
                       (["diff", model, model.parent / "run.ckp"],
                        repr(str(model.parent / "run.ckpt")))):  # a prefix, by its .index
        code, _, err = cli(capsys, *args)
        assert code == 2 and err.count("\n") == 1
        assert "no such file or directory; did you mean " + want in err, err
    code, _, err = cli(capsys, "show", model.parent / "zzzzzzzz.bin")
    assert code == 2 and err.endswith("no such file or directory\n")  # nothing close: no guess


@pytest.mark.skipif(not DETECT, reason="detection needs every format module of the registry")
def test_detection_by_content_not_suffix(capsys, model: Path) -> None:
    disguised = model.parent / "weights.bin"
    disguised.write_bytes(model.read_bytes())
    code, out, _ = cli(capsys, "show", disguised)
    assert code == 0 and out.splitlines()[0].endswith(FORMAT_OF[model.suffix])


FRAMEWORKS = ("tensorflow", "keras", "tf_keras", "jax", "torch")
PROBE = """
import sys
from weightkit.cli.main import main
code = main(sys.argv[1:], prog="weightkit")
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
print("IMPORTED:" + ",".join(loaded))
sys.exit(code)
""" % (FRAMEWORKS,)


def test_show_and_convert_never_import_a_framework(model: Path) -> None:
    out = model.parent / "out.npz"
    for args in (["show", model, *fmt_args(model)],
                 ["show", model, "--json", "--values", "dense/kernel", *fmt_args(model)],
                 ["convert", model, out, *fmt_args(model, "--from")],
                 ["convert", out, model.parent / "again.safetensors", *fmt_args(out, "--from")]):
        result = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == "IMPORTED:", (args, result.stdout[-200:])
