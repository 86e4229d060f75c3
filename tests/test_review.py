"""Review at scale on wdiff and show: rollups combined from sums (checked against numpy on
framework-written files), --sort/--top, CI gates and their exit codes, folded markdown, colour,
`wdiff`'s own name, `show --values` with indexes and exports, and the one vocabulary
(`--from`, `--format`, `--json`, `schema_version`, JSON schemas)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import weightkit
import weightkit.diffing
from weightkit.converters.store import Store
from weightkit.diffing.engine import Options, diff_stores
from weightkit.diffing.gates import Gate, evaluate, parse
from weightkit.diffing.rollup import group_name, order, rollup_diff, rollup_stats
from weightkit.diffing.summary import stats_of

from conftest import run_cli

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PKG = Path(weightkit.diffing.__file__).parent  # the folder diff/, installed as weightkit.diffing
DIFF_SCHEMA = json.loads((PKG / "schema.json").read_text())
SHOW_SCHEMA = json.loads((PKG / "schema-show.json").read_text())
BEFORE = FIXTURES / "conv--tfkeras-before-full.h5"  # tf_keras, trained 2 and 3 steps
AFTER = FIXTURES / "conv--tfkeras-after-full.h5"


def _values(path: Path) -> dict[str, np.ndarray]:
    with weightkit.load(path) as store:
        return {name: t.read() for name, t in store.items()}


# --- rollups ---------------------------------------------------------------------------------

def test_layer_and_module_names():
    assert group_name("model/dense/kernel", "layer") == "model/dense"
    assert group_name("model/dense/kernel", "module") == "model"
    assert group_name("iterations", "layer") == group_name("iterations", "module") == "iterations"


def test_diff_rollup_is_numpy_over_the_concatenated_layer():
    a, b = _values(BEFORE), _values(AFTER)
    with weightkit.load(BEFORE) as sa, weightkit.load(AFTER) as sb:
        result = diff_stores(sa, sb, Options(norms=True))
    groups = {g.name: g for g in rollup_diff(result.entries, "layer")}
    layers: dict[str, list[str]] = {}
    for name in a:
        layers.setdefault(group_name(name, "layer"), []).append(name)
    assert set(groups) == set(layers)
    for layer, names in layers.items():
        x = np.concatenate([a[n].astype(np.float64).ravel() for n in names])
        y = np.concatenate([b[n].astype(np.float64).ravel() for n in names])
        g = groups[layer]
        assert g.variables == len(names) and g.size == x.size
        assert g.mismatched == int((x != y).sum())
        if np.linalg.norm(x):
            assert g.rel_l2 == pytest.approx(np.linalg.norm(x - y) / np.linalg.norm(x), rel=1e-12)
            assert g.cosine == pytest.approx(x @ y / np.linalg.norm(x) / np.linalg.norm(y),
                                             rel=1e-12)
        assert g.max_abs_diff == pytest.approx(np.abs(x - y).max())
        assert g.rms_diff == pytest.approx(np.sqrt(np.mean((x - y) ** 2)), rel=1e-12)


def test_a_group_with_identical_variables_counts_their_norm(tmp_path):
    """Σa² of an identical member enters the group's relative L2 (compared with norms=True)."""
    same = np.full(100, 3.0, np.float32)
    a = Store.from_arrays({"l/same": same, "l/moved": np.ones(4, np.float32)})
    b = Store.from_arrays({"l/same": same, "l/moved": np.full(4, 2, np.float32)})
    (g,) = rollup_diff(diff_stores(a, b, Options(norms=True)).entries, "layer")
    assert g.rel_l2 == pytest.approx(math.sqrt(4) / math.sqrt(900 + 4), rel=1e-12)
    assert g.counts["same"] == 1 and g.counts["changed"] == 1 and g.status == "changed"


def test_show_rollup_merges_moments():
    arrays = _values(BEFORE)
    store = Store.from_arrays(arrays)
    names = list(store)
    stats = stats_of([store[n] for n in names])
    groups = {g.name: g for g in rollup_stats(names, [store[n].size for n in names],
                                              [store[n].nbytes for n in names], stats, "module")}
    for module, g in groups.items():
        x = np.concatenate([arrays[n].astype(np.float64).ravel() for n in g.members])
        assert g.parameters == x.size
        assert (g.min, g.max) == (x.min(), x.max())
        assert g.mean == pytest.approx(x.mean(), rel=1e-12, abs=1e-15)
        assert g.std == pytest.approx(x.std(), rel=1e-10, abs=1e-15)


def test_order_sorts_magnitudes_and_cuts():
    rows = [{"name": "a", "v": -3.0}, {"name": "b", "v": None}, {"name": "c", "v": float("nan")},
            {"name": "d", "v": 5}, {"name": "e", "v": float("inf")}]
    got = order(rows, "v", None, get=lambda r, k: r[k])
    assert [r["name"] for r in got] == ["e", "d", "a", "b", "c"]
    assert [r["name"] for r in order(rows, "v", 2, get=lambda r, k: r[k])] == ["e", "d"]
    assert [r["name"] for r in order(rows[::-1], "name", None, get=lambda r, k: r[k])][:2] == ["a", "b"]


# --- gates -----------------------------------------------------------------------------------

def test_gate_parsing_and_semantics():
    g = parse(" rel_l2 >= 0.05 ", ["rel_l2", "nan"])
    assert g == Gate("rel_l2", ">=", 0.05)
    assert g.trips(0.05) and not g.trips(0.01) and not g.trips(None) and g.trips(math.inf)
    assert not g.trips(math.nan) and Gate("x", "!=", 1).trips(math.nan)
    assert Gate("nan", ">", 0).trips([None, 0, 2])
    with pytest.raises(weightkit.UsageError, match="did you mean rel_l2"):
        parse("rel_l3>1", ["rel_l2", "nan"])
    with pytest.raises(weightkit.UsageError, match="expected 'FIELD OP NUMBER'"):
        parse("rel_l2 ~ 1", ["rel_l2"])
    (tripped,) = evaluate([g], [("a", {"rel_l2": 0.1}), ("b", {"rel_l2": 0.0})])
    assert tripped.rows == [("a", 0.1)]


def test_wdiff_gates_exit_codes(tmp_path):
    # every variable changed a little: different (1) without gates, 0 under a loose gate
    assert run_cli("diff", BEFORE, AFTER).returncode == 1
    done = run_cli("diff", BEFORE, AFTER, "--fail-if", "rel_l2>1e9", "--fail-if", "nan_b>0")
    assert done.returncode == 0, done.stdout + done.stderr
    done = run_cli("diff", BEFORE, AFTER, "--no-optimizer", "--fail-if", "max_abs_diff>1e-3")
    assert done.returncode == 1
    gate_line = done.stdout.splitlines()[-1]
    assert gate_line.startswith("gate max_abs_diff>0.001 tripped by ")
    # per layer with --by: the gate tests groups
    done = run_cli("diff", BEFORE, AFTER, "--by", "layer", "--fail-if", "rel_l2>0.5",
                   "--format", "json")
    doc = json.loads(done.stdout)
    jsonschema.validate(doc, DIFF_SCHEMA)
    tripped = {t["name"] for t in doc["gates"][0]["tripped"]}
    assert done.returncode == (1 if tripped else 0)
    assert tripped == {g["name"] for g in doc["groups"] if _number(g["rel_l2"]) > 0.5}
    assert "gate rel_l2>0.5" in done.stderr or not tripped
    done = run_cli("diff", BEFORE, AFTER, "--fail-if", "relative>1")
    assert done.returncode == 2 and "no per-variable number 'relative'" in done.stderr


def _number(value) -> float:
    return float(value)  # "inf" and "nan" too


def test_show_nan_gate(tmp_path):
    path = tmp_path / "w.safetensors"
    weightkit.save(Store.from_arrays({"ok": np.ones(3, np.float32),
                                      "bad": np.array([1, np.nan, np.inf], np.float32)}), path)
    done = run_cli("show", path, "--fail-if", "nan>0")
    assert done.returncode == 1 and done.stdout.splitlines()[-1] == "gate nan>0 tripped by 1: bad (1)"
    assert run_cli("show", path, "--fail-if", "nan>0", "--exclude", "bad").returncode == 0
    done = run_cli("show", path, "--fail-if", "nan>0", "--quiet")
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "")


def test_every_gate_example_is_a_field_of_its_command(capsys):
    # show's and trend's help offered wdiff's 'rel_l2>0.05', which both refuse.
    from weightkit.cli.main import build_parser
    from weightkit.cli.show import NUMBERS as SHOW
    from weightkit.cli.trend import NUMBERS as TREND
    from weightkit.diffing.render import DIFF_NUMBERS as DIFF
    for command, fields in (("show", SHOW), ("diff", DIFF), ("trend", TREND)):
        with pytest.raises(SystemExit):
            build_parser("weightkit", only=command).parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        gate_help = text.split("--fail-if 'FIELD OP NUMBER'")[-1]
        examples = gate_help.split("e.g. ", 1)[1].split(";", 1)[0].split(", ")
        for one in examples:
            parse(one.strip("'"), fields)  # each example is a gate the command takes
        with pytest.raises(weightkit.UsageError) as error:
            parse("rel_l2", fields)
        parse(str(error.value).split("(e.g. ", 1)[1].split(")")[0].strip("'"), fields)


# --- views and formats -----------------------------------------------------------------------

def test_sort_top_and_json_views():
    done = run_cli("diff", BEFORE, AFTER, "--sort", "rel_l2", "--top", "3", "--format", "json")
    doc = json.loads(done.stdout)
    jsonschema.validate(doc, DIFF_SCHEMA)
    assert doc["schema_version"] == 2 and doc["view"] == {"by": "variable", "sort": "rel_l2", "top": 3}
    rel = [_number(v["rel_l2"]) for v in doc["variables"]]
    assert len(rel) == 3 and rel == sorted(rel, reverse=True)
    assert doc["summary"]["variables_a"] > 3  # the summary is about everything
    text = run_cli("diff", BEFORE, AFTER, "--sort", "rel_l2", "--top", "3").stdout.splitlines()
    assert len(text) == 2 + 2 + 3 + 1 + 1  # ---/+++, header and rule, 3 rows, cut, summary
    assert text[-2].startswith("3 of ") and text[-2].endswith(" rows shown (--top 3)")


def test_markdown_folds_long_tables(tmp_path):
    many = {f"layer_{i}/kernel": np.full(3, i, np.float32) for i in range(30)}
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    weightkit.save(Store.from_arrays(many), a)
    weightkit.save(Store.from_arrays({k: v + 1 for k, v in many.items()}), b)
    md = run_cli("diff", a, b, "--format", "markdown").stdout
    assert "<details><summary>30 variables (click to expand)</summary>" in md and "</details>" in md
    md = run_cli("diff", a, b, "--format", "markdown", "--top", "5").stdout
    assert "<details>" not in md and md.count("\n| changed ") == 5
    md = run_cli("show", a, "--format", "markdown").stdout
    assert "<details><summary>30 variables" in md


def test_colour_flag_and_environment(tmp_path):
    plain = run_cli("diff", BEFORE, AFTER).stdout
    assert "\x1b[" not in plain
    forced = run_cli("diff", BEFORE, AFTER, "--color", "always").stdout
    assert "\x1b[33mchanged\x1b[0m" in forced
    assert "\x1b[" in run_cli("--color", "always", "diff", BEFORE, AFTER).stdout
    import os
    import subprocess
    code = ("import sys; from weightkit.cli.main import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "FORCE_COLOR": "1"}
    env.pop("NO_COLOR", None)
    out = subprocess.run([sys.executable, "-c", code, "diff", str(BEFORE), str(AFTER)],
                         capture_output=True, text=True, env=env).stdout
    assert "\x1b[33m" in out
    env["NO_COLOR"] = "1"
    out = subprocess.run([sys.executable, "-c", code, "diff", str(BEFORE), str(AFTER)],
                         capture_output=True, text=True, env=env).stdout
    assert "\x1b[" not in out
    out = subprocess.run([sys.executable, "-c", code, "diff", str(BEFORE), str(AFTER), "--color",
                          "always"], capture_output=True, text=True, env=env).stdout
    assert "\x1b[33m" in out  # the flag wins over the environment


def test_wdiff_is_named_wdiff(capsys):
    from weightkit.cli.main import wdiff
    with pytest.raises(SystemExit):
        wdiff(["--help"])
    assert capsys.readouterr().out.startswith("usage: wdiff [-h]")
    with pytest.raises(SystemExit) as exit_info:
        wdiff(["only-one"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "wdiff: error: the following arguments are required: b" in err and "wdiff diff" not in err


def test_html_without_plotly_names_the_extra(tmp_path, monkeypatch, capsys):
    from weightkit.cli.main import main
    monkeypatch.setitem(sys.modules, "plotly", None)
    code = main(["diff", str(BEFORE), str(AFTER), "--format", "html", "-o",
                 str(tmp_path / "r.html")])
    assert code == 2 and "pip install 'weightkit[report]'" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
    assert main(["show", str(BEFORE), "--format", "html"]) == 2
    assert "expected -o FILE" in capsys.readouterr().err


# --- one vocabulary --------------------------------------------------------------------------

def test_show_json_schema_aliases_and_the_old_format_flag():
    done = run_cli("show", BEFORE, "--json", "--by", "layer")
    doc = json.loads(done.stdout)
    jsonschema.validate(doc, SHOW_SCHEMA)
    assert doc["schema_version"] == 1 and doc["totals"]["variables"] == len(doc["variables"])
    assert {g["name"] for g in doc["groups"]} == {group_name(v["name"], "layer")
                                                  for v in doc["variables"]}
    assert json.loads(run_cli("show", BEFORE, "--format", "json").stdout) == json.loads(
        run_cli("show", BEFORE, "--json").stdout)
    # --filter is the old spelling of --include; --exclude is new on show
    a = json.loads(run_cli("show", BEFORE, "--json", "--filter", "*kernel*").stdout)
    b = json.loads(run_cli("show", BEFORE, "--json", "--include", "*kernel*",
                           "--exclude", "*/bias*").stdout)
    assert [v["name"] for v in a["variables"]] == [v["name"] for v in b["variables"]]
    # the input format: --from; `--format keras-h5` still reads, and says what changed
    done = run_cli("show", BEFORE, "--format", "keras-h5", "--no-stats")
    assert done.returncode == 0 and "now spelled --from keras-h5" in done.stderr
    assert run_cli("show", BEFORE, "--from", "keras-h5", "--no-stats").stdout == done.stdout
    verify = json.loads(run_cli("verify", BEFORE, "--via", "npz", "--json").stdout)
    assert verify["schema_version"] == 1


def test_convert_selection_and_edit_quiet(tmp_path):
    out = tmp_path / "w.safetensors"
    done = run_cli("convert", BEFORE, out, "--no-optimizer", "--drop", "*/bias*")
    assert done.returncode == 0, done.stderr
    with weightkit.load(out) as store:
        assert all(t.role == "weight" for t in store.values())
        assert not any("bias" in n for n in store)
    done = run_cli("edit", BEFORE, tmp_path / "e.h5", "--scale", "*kernel*=2", "--quiet")
    assert (done.returncode, done.stdout) == (0, "")
    done = run_cli("convert", BEFORE, tmp_path / "n.npz", "--keep", "nothing*")
    assert done.returncode == 2 and "matched none" in done.stderr


# --- show --values -----------------------------------------------------------------------------

@pytest.fixture
def kernel_file(tmp_path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(3)
    kernel = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
    path = tmp_path / "k.safetensors"
    weightkit.save(Store.from_arrays({"conv1/kernel": kernel, "conv1/bias": np.arange(5.0),
                                      "conv2/kernel": kernel[..., :2].copy()}), path)
    return path, kernel


@pytest.mark.parametrize("index", ["[0, :, :, 3]", "[-1]", "[1:, ::2, 1]", "[..., 4]",
                                   "[2, 1, 0, -1]", "[::-1, 0]", "[5:]"])
def test_values_indexes_are_numpy_basic_indexing(kernel_file, index):
    path, kernel = kernel_file
    done = run_cli("show", path, "--values", f"conv1/kernel{index}", "--json")
    doc = json.loads(done.stdout)
    jsonschema.validate(doc, SHOW_SCHEMA)
    (value,) = doc["values"]
    want = eval(f"kernel{index}")  # the oracle: numpy itself, on a literal the test wrote
    assert value["shape"] == list(np.shape(want))
    assert np.array_equal(np.array(value["values"], np.float32).reshape(np.shape(want)), want)


def test_values_globs_exports_and_errors(kernel_file, tmp_path):
    path, kernel = kernel_file
    done = run_cli("show", path, "--values", "conv*/kernel[0, 0]", "conv1/bias",
                   "--npz", tmp_path / "x.npz", "--npy", tmp_path / "arrays")
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "x.npz", allow_pickle=False) as z:
        assert sorted(z) == ["conv1/bias", "conv1/kernel[0, 0]", "conv2/kernel[0, 0]"]
        assert np.array_equal(z["conv1/kernel[0, 0]"], kernel[0, 0])
    files = sorted(p.name for p in (tmp_path / "arrays").iterdir())
    assert files == ["conv1_bias.npy", "conv1_kernel[0,0].npy", "conv2_kernel[0,0].npy"]
    assert np.array_equal(np.load(tmp_path / "arrays" / "conv2_kernel[0,0].npy"), kernel[0, 0, :, :2])
    text = run_cli("show", path, "--values", "conv1/bias").stdout
    assert text.splitlines()[0] == "conv1/bias: shape (5,) float64"
    text = run_cli("show", path, "--values", "conv1/kernel[1:, ::2, 1]").stdout  # not [:\x3a2]
    assert text.splitlines()[0] == "conv1/kernel[1:, ::2, 1]: shape (2, 2, 5) float32"
    done = run_cli("show", path, "--values", "conv1/kernal")
    assert done.returncode == 2 and "did you mean 'conv1/kernel'" in done.stderr
    done = run_cli("show", path, "--values", "conv1/kernel[0, 9]")
    assert done.returncode == 2 and "does not fit shape (3, 3, 4, 5)" in done.stderr
    done = run_cli("show", path, "--values", f"conv1/kernel[{10**23}]")
    assert done.returncode == 2 and f"index {10**23} is out of bounds" in done.stderr
    done = run_cli("show", path, "--values", "conv1/kernel[__import__('os')]")
    assert done.returncode == 2 and "expected an index of integers" in done.stderr
    done = run_cli("show", path, "--values", "conv*/kernel[0, :")  # not a typo of a name
    assert done.returncode == 2 and done.stderr.endswith(
        "the index after 'conv*/kernel' is not closed; expected NAME[INDEX]\n")
    assert run_cli("show", path, "--npz", tmp_path / "y.npz").returncode == 2
