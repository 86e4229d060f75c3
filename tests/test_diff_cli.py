"""`weightkit diff` / `wdiff`: exit codes, report formats, escaping, options."""
from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import weightkit
from weightkit.cli.main import main, wdiff
from weightkit.converters.store import Store, Tensor
from weightkit.diffing.engine import Options, diff_stores
from weightkit.diffing.render import Target, render_markdown, render_table

from conftest import run_cli

SCHEMA = json.loads((Path(weightkit.__file__).parent / "diff" / "schema.json").read_text())
HOSTILE = "evil\n::error::pwned\x1b[31m|\u202e`x`"


def save(path: Path, arrays: dict, roles: dict | None = None) -> str:
    roles = roles or {}
    store = Store({n: Tensor.from_array(a, {"key": n, "role": roles.get(n, "weight")})
                   for n, a in arrays.items()})
    weightkit.save(store, path)
    return str(path)


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((4, 3)).astype(np.float32)
    a = {"dense/kernel": kernel, "dense/bias": np.zeros(3, np.float32),
         "adam/m": np.ones(3, np.float32), HOSTILE: np.zeros(3)}
    b = {"dense/kernel": kernel + np.float32(1e-4), "dense/bias": np.zeros(3, np.float32),
         "adam/m": np.full(3, 2, np.float32), HOSTILE: np.ones(3)}
    roles = {"adam/m": "optimizer"}
    return save(tmp_path / "a.safetensors", a, roles), save(tmp_path / "b.safetensors", b, roles)


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["diff", *map(str, args)], prog="weightkit")
    out, err = capsys.readouterr()
    return code, out, err


def test_exit_codes(capsys, pair, tmp_path):
    a, b = pair
    assert cli(capsys, a, a)[0] == 0
    code, out, _ = cli(capsys, a, b)
    assert code == 1 and "different" in out.splitlines()[-1]
    code, out, _ = cli(capsys, a, b, "--exclude", "adam/*", "--exclude", "evil*", "--atol", "1e-3")
    assert code == 0 and out.splitlines()[-1].startswith("identical (atol 0.001, rtol 0)")
    assert cli(capsys, a, b, "--include", "dense/bias")[0] == 0
    assert cli(capsys, a, b, "--include", "dense/*", "--rtol", "1e-6")[0] == 1


@pytest.mark.parametrize("make_bad", [
    lambda p: p.write_bytes(b"garbage, not weights"),
    lambda p: p.write_bytes(b""),
    lambda p: p.write_bytes(b"\xff" * 8 + b"{}"),
    lambda p: p.mkdir(),
    lambda p: None,  # missing
], ids=["garbage", "empty", "bad-header", "directory", "missing"])
def test_trouble_is_exit_2_with_one_line(tmp_path, pair, make_bad):
    bad = tmp_path / "bad.safetensors"
    make_bad(bad)
    result = run_cli("diff", pair[0], bad)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert "bad.safetensors" in result.stderr


def test_bad_option_is_exit_2(capsys, pair):
    code, out, err = cli(capsys, *pair, "--atol", "-1")
    assert code == 2 and out == "" and "tolerance" in err


def test_wdiff_is_diff(capsys, pair):
    assert wdiff([*pair, "--quiet"]) == 1
    assert wdiff([pair[0], pair[0]]) == 0


def test_quiet(capsys, pair):
    code, out, err = cli(capsys, *pair, "--quiet")
    assert (code, out, err) == (1, "", "")


def test_table_lists_changes_and_all(capsys, pair):
    _, out, _ = cli(capsys, *pair)
    assert "dense/kernel" in out and "dense/bias" not in out
    assert "adam/m [optimizer]" in out
    _, out, _ = cli(capsys, *pair, "--all")
    assert "dense/bias" in out
    _, out, _ = cli(capsys, *pair, "--no-optimizer")
    assert "adam/m" not in out
    assert out.splitlines()[-1] == ("different: 1 same, 2 changed; 15 of 18 elements differ; "
                                    "max abs diff 1")


def _assert_inert(text: str) -> None:
    assert "\x1b" not in text and "\u202e" not in text
    assert not any(line.lstrip().startswith("::") for line in text.splitlines())
    assert "::" not in text


@pytest.mark.parametrize("fmt", ["table", "markdown", "json"])
def test_names_are_escaped_everywhere(capsys, pair, fmt):
    _, out, _ = cli(capsys, *pair, "--format", fmt, "--all")
    _assert_inert(out)
    if fmt == "json":
        names = [e["name"] for e in json.loads(out)["variables"]]
        assert HOSTILE in names  # exact in the data, inert in the text
    else:
        line = next(line for line in out.splitlines() if "evil" in line)
        assert "pwned" in line  # the newline did not split the row


def test_markdown_table_cells(capsys, pair):
    _, out, _ = cli(capsys, *pair, "--format", "markdown", "--all")
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    header_cells = rows[0].count(" | ")
    for row in rows:
        unescaped = row.replace("\\|", "")
        assert unescaped.count(" | ") == header_cells, row
    assert any("``" in row and "evil" in row for row in rows)  # a name with backticks gets a longer fence


def test_json_validates_against_schema(capsys, pair, tmp_path):
    code, out, _ = cli(capsys, *pair, "--format", "json")
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA)
    assert code == 1 and doc["summary"]["identical"] is False
    entries = {e["name"]: e for e in doc["variables"]}
    required = {"name", "status", "shape_a", "shape_b", "dtype_a", "dtype_b", "size", "mismatched",
                "max_abs_diff", "max_abs_index", "max_rel_diff", "mean_abs_diff", "rms_diff",
                "rel_l2", "cosine", "matched_by"}
    assert all(required <= set(e) for e in entries.values())
    bias = entries["dense/bias"]
    assert bias["status"] == "same" and bias["rel_l2"] == 0 and bias["cosine"] is None
    assert entries[HOSTILE]["rel_l2"] == "inf"  # non-finite numbers are strings
    assert entries["dense/kernel"]["shape_a"] == [4, 3] and entries["dense/kernel"]["matched_by"] == "name"
    assert doc["a"] == {"path": pair[0], "format": "safetensors"}


def test_json_schema_covers_every_status(tmp_path):
    from weightkit.diffing.render import to_json
    a = Store.from_arrays({"s": np.zeros(2), "c": np.zeros(2), "r": np.zeros((2, 2)),
                           "d": np.zeros(2), "old": np.arange(5.0), "gone": np.zeros(3)})
    b = Store.from_arrays({"s": np.zeros(2), "c": np.ones(2), "n": np.zeros(1),
                           "d": np.zeros(2, np.float32), "new": np.arange(5.0),
                           "r": np.zeros((4,))})
    result = diff_stores(a, b, Options(match="name"))
    doc = to_json(result, {"path": "a", "format": "memory"}, {"path": "b", "format": "memory"})
    jsonschema.validate(doc, SCHEMA)
    assert {e["status"] for e in doc["variables"]} == {
        "same", "changed", "removed", "added", "renamed", "shape_changed", "dtype_changed"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**doc, "variables": [{**doc["variables"][0], "status": "moved"}]}, SCHEMA)


def test_colour_only_on_a_tty(monkeypatch):
    result = diff_stores(Store.from_arrays({"w": np.zeros(2)}), Store.from_arrays({"w": np.ones(2)}))

    class Tty(io.StringIO):
        def isatty(self):
            return True

    from weightkit.diffing.render import colour
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty, pipe = Tty(), io.StringIO()
    assert colour(tty) and not colour(pipe)
    render_table(result, Target(tty, colour=colour(tty)))
    render_table(result, Target(pipe, colour=colour(pipe)))
    assert "\x1b[33mchanged\x1b[0m" in tty.getvalue() and "\x1b" not in pipe.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour(tty)


def test_nan_unequal(capsys, tmp_path):
    a = save(tmp_path / "a.npz", {"w": np.array([np.nan, 1.0])})
    b = save(tmp_path / "b.npz", {"w": np.array([np.nan, 1.0])})
    assert cli(capsys, a, b)[0] == 0
    assert cli(capsys, a, b, "--nan-unequal")[0] == 1


def test_rename_and_match_modes(capsys, tmp_path):
    a = save(tmp_path / "a.npz", {"old/kernel": np.arange(6.0), "bias": np.ones(2)})
    b = save(tmp_path / "b.npz", {"new/kernel": np.arange(6.0), "bias": np.ones(2)})
    code, out, _ = cli(capsys, a, b)
    assert code == 1 and "renamed" in out and "old/kernel -> new/kernel" in out
    _, out, _ = cli(capsys, a, b, "--match", "structure", "--format", "json")
    doc = json.loads(out)
    assert [(e["status"], e["matched_by"]) for e in doc["variables"]] == [
        ("same", "structure"), ("same", "structure")]


def test_cross_format_identical(capsys, tmp_path):
    arrays = {"dense/kernel": np.arange(12, dtype=np.float32).reshape(3, 4),
              "dense/bias": np.zeros(4, np.float32), "step": np.int64(7)}
    a = save(tmp_path / "m.npz", arrays)
    b = save(tmp_path / "m.safetensors", arrays)
    code, out, _ = cli(capsys, a, b, "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["summary"]["counts"]["same"] == 3
    assert doc["a"]["format"] == "npz" and doc["b"]["format"] == "safetensors"


def test_markdown_render_direct():
    result = diff_stores(Store.from_arrays({"a|b": np.zeros(2)}), Store.from_arrays({"a|b": np.ones(2)}))
    out = io.StringIO()
    render_markdown(result, Target(out), "x.h5", "y.h5")
    assert "`a\\|b`" in out.getvalue() and "**different: 1 changed" in out.getvalue()


# --- the same model in two formats, and before/after pairs (framework-written fixtures) -----

KERAS3_SAME = [("mlp--keras3.weights.h5", "mlp--keras3.keras"),
               ("conv--keras3-before.weights.h5", "conv--keras3-before.keras"),
               ("mha--keras3.weights.h5", "mha--keras3.keras"),
               ("bf16--keras3.weights.h5", "bf16--keras3.keras"),
               ("bf16mixed--keras3.weights.h5", "bf16mixed--keras3.keras"),
               ("mlp--keras3-legacy.h5", "mlp--keras3.keras"),
               ("mlp--keras3-sharded.weights.json", "mlp--keras3.weights.h5"),
               ("mlp--keras3.keras", "mlp--keras3.ckpt"),
               ("conv--keras3-before.keras", "conv--keras3-before.ckpt"),
               ("bf16--keras3.weights.h5", "bf16--keras3.ckpt")]
TFKERAS_H5_CKPT = [("mlp--tfkeras-full.h5", "mlp--tfkeras.ckpt"),
                   ("mlp--tfkeras-full.h5", "mlp--tfkeras-tf2.ckpt"),
                   ("conv--tfkeras-before-full.h5", "conv--tfkeras-before.ckpt")]


def _json_diff(capsys, fixtures_dir, a, b, *options):
    code, out, err = cli(capsys, fixtures_dir / a, fixtures_dir / b, "--format", "json", *options)
    assert err == ""
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA)
    return code, doc


@pytest.mark.parametrize("a,b", KERAS3_SAME, ids=lambda p: p.split("--")[0] + ":" + p.split(".", 1)[1])
def test_same_keras3_model_in_two_formats_is_identical(capsys, fixtures_dir, a, b):
    code, doc = _json_diff(capsys, fixtures_dir, a, b)
    assert code == 0 and doc["summary"]["identical"]
    assert not doc["summary"]["unmatched_a"] and not doc["summary"]["unmatched_b"]
    assert doc["summary"]["variables_a"] == doc["summary"]["variables_b"] == len(doc["variables"])
    assert all(e["status"] == "same" and e["matched_by"] for e in doc["variables"])
    assert {e["role"] for e in doc["variables"]} >= {"weight", "optimizer", "counter"}


@pytest.mark.parametrize("a,b", TFKERAS_H5_CKPT, ids=lambda p: p)
def test_tf_keras_h5_and_its_checkpoint(capsys, fixtures_dir, a, b):
    code, doc = _json_diff(capsys, fixtures_dir, a, b)
    # every variable of the .h5 is matched, by name, to an equal one in the checkpoint; the
    # checkpoint also holds the optimizer's learning_rate, which a tf.keras .h5 does not store
    assert not doc["summary"]["unmatched_a"]
    assert doc["summary"]["unmatched_b"] == ["learning_rate"]
    matched = [e for e in doc["variables"] if e["status"] != "added"]
    assert len(matched) == doc["summary"]["variables_a"]
    assert all(e["status"] == "same" and e["matched_by"] == "name" for e in matched)
    assert code == 1
    code, doc = _json_diff(capsys, fixtures_dir, a, b, "--no-optimizer")
    assert code == 0 and doc["summary"]["identical"]
    assert doc["summary"]["counts"]["same"] == doc["summary"]["variables_a"] == doc["summary"]["variables_b"]


@pytest.mark.parametrize("before,after", [
    ("conv--keras3-before.weights.h5", "conv--keras3-after.weights.h5"),
    ("conv--tfkeras-before-full.h5", "conv--tfkeras-after-full.h5"),
    ("conv--tfkeras-before.ckpt", "conv--tfkeras-after.ckpt"),
    ("conv--keras3-before.ckpt", "conv--keras3-after.ckpt"),
    ("conv--keras3-before.keras", "conv--keras3-after.weights.h5"),
], ids=lambda p: p)
def test_one_training_step_changes_every_trained_variable(capsys, fixtures_dir, before, after):
    code, doc = _json_diff(capsys, fixtures_dir, before, after)
    assert code == 1
    assert not doc["summary"]["unmatched_a"] and not doc["summary"]["unmatched_b"]
    entries = {e["name"]: e for e in doc["variables"]}
    changed = [e for e in entries.values() if e["status"] == "changed"]
    assert all(e["matched_by"] == "name" for e in entries.values())
    assert len(changed) >= len(entries) - 1  # all but the learning rate moved
    assert all(e["mismatched"] > 0 and e["max_abs_diff"] > 0 for e in changed)
    counters = [e for e in entries.values() if e["role"] == "counter"]
    assert [(e["status"], e["max_abs_diff"]) for e in counters] == [("changed", 1)]
    _, out, _ = cli(capsys, fixtures_dir / before, fixtures_dir / after)
    assert out.splitlines()[-1].startswith("different:")


def test_diff_imports_no_framework(fixtures_dir):
    code = ("import sys; from weightkit.cli.main import main; "
            f"status = main(['diff', '--all', {str(fixtures_dir / 'mlp--keras3.keras')!r}, "
            f"{str(fixtures_dir / 'mlp--tfkeras.ckpt')!r}], prog='wdiff'); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'tf_keras')); print(status, bad, file=sys.stderr)")
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    status, modules = result.stderr.strip().splitlines()[-1].split(" ", 1)
    assert status in ("0", "1") and modules == "[]"


def test_usage_errors_take_the_colour_option(monkeypatch, capsys):
    """--color never (or --colour=never) keeps a usage error plain where FORCE_COLOR would
    colour it; without the option it is coloured as any error is."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    for argv, coloured in ((["--color", "never", "show", "x", "--by", "bad"], False),
                           (["show", "x", "--colour=never", "--by", "bad"], False),
                           (["show", "x", "--by", "bad"], True)):
        with pytest.raises(SystemExit) as exit_:
            main(argv, prog="weightkit")
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and ("\x1b[" in err) == coloured, (argv, err)


def test_every_note_is_shown_each_time_whatever_the_warning_filters(tmp_path, capsys):
    """A note (convert --allow-lossy says what it accepted) is printed on every run in one
    process, and neither -W error nor -W ignore turns it into an error or silence."""
    import warnings
    src = str(Path(__file__).resolve().parents[1] / "fixtures" / "mlp--keras3.ckpt")
    for action in ("default", "error", "ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter(action)
            for _ in range(2):
                code = main(["convert", src, str(tmp_path / "b.weights.h5"), "--allow-lossy"],
                            prog="weightkit")  # a checkpoint's object graph is lost
                err = capsys.readouterr().err
                assert code == 0 and "weightkit: note: " in err and "(--allow-lossy)" in err, (
                    action, err)


@pytest.mark.parametrize("before,after,status", [
    (["d1/kernel", "d1/bias", "bn/gamma", "head/kernel"],
     ["fc/kernel", "fc/bias", "bn/gamma", "head/kernel"], "renamed"),  # a layer renamed
    (["d1/kernel", "d1/bias"], ["fc/kernel", "fc/bias"], "renamed"),  # the only layer
    (["model/d1/kernel", "model/head/kernel"], ["net/d1/kernel", "net/head/kernel"], "same")])
def test_a_renamed_layer_is_a_rename_and_a_model_scope_is_not(tmp_path, capsys, before, after,
                                                              status):
    """Leftovers of the name stage that share a first component (the layer an edit renamed)
    are not paired as a model scope: that is only a component above the layers that every
    weight of a side shares."""
    rng = np.random.default_rng(3)
    values = [rng.normal(size=3 + i) for i in range(len(before))]
    a = save(tmp_path / "a.npz", dict(zip(before, values)))
    b = save(tmp_path / "b.npz", dict(zip(after, values)))
    code, out, _ = cli(capsys, a, b, "--format", "json")
    moved = [e for e in json.loads(out)["variables"] if e["name_a"] != e["name_b"]]
    assert moved and {e["status"] for e in moved} == {status}
    assert code == (1 if status == "renamed" else 0)
