"""`weightkit trend`: a training run's checkpoints over time, checked against numpy on the values
TensorFlow itself reads from the run that tf.train.CheckpointManager wrote
(fixtures/run--tfkeras-ckptdir: a tf_keras model trained 5 steps with Adam, layer `frozen`
not trainable, a NaN written into `out/kernel` before step 4's checkpoint)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import weightkit
import weightkit.diffing
from weightkit.converters.store import Store
from weightkit.diffing.render import sparkline
from weightkit.diffing.trend import TrendOptions, rollup_trend, step_numbers, trend_stores

from conftest import run_cli

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RUN = FIXTURES / "run--tfkeras-ckptdir"
SCHEMA = json.loads((Path(weightkit.diffing.__file__).parent / "schema-trend.json").read_text())

_DUMP = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
for i, prefix in enumerate(sys.argv[2:]):
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    values = {k: reader.get_tensor(k) for k in dtypes if dtypes[k] != tf.string}
    np.savez(os.path.join(sys.argv[1], f"{i}.npz"), **values)
"""


@pytest.fixture(scope="module")
def tf_values(tmp_path_factory) -> list[dict[str, np.ndarray]]:
    """Every checkpoint of the run as TensorFlow reads it: {checkpoint key: value}."""
    out = tmp_path_factory.mktemp("tfdump")
    prefixes = [str(RUN / f"ckpt-{i}") for i in range(6)]
    subprocess.run([sys.executable, "-c", _DUMP, str(out), *prefixes], check=True, timeout=300)
    return [dict(np.load(out / f"{i}.npz")) for i in range(6)]


@pytest.fixture(scope="module")
def doc() -> dict:
    return weightkit.trend(RUN)


def _expected(series: list[np.ndarray | None]) -> dict[str, list]:
    """What trend reports for one variable's values over the run, computed with numpy."""
    present = [t for t, v in enumerate(series) if v is not None]
    out: dict[str, list] = {k: [None] * len(series) for k in
                            ("rel_l2_prev", "rel_l2_first", "l2_norm", "nan", "inf", "changed")}

    def rel(ref: np.ndarray, cur: np.ndarray) -> float | None:
        both = np.isfinite(ref) & np.isfinite(cur)
        if not both.any():
            return None
        d, r = np.linalg.norm((cur - ref)[both]), np.linalg.norm(ref[both])
        return d / r if r else (0.0 if d == 0 else math.inf)

    for j, t in enumerate(present):
        x = series[t].astype(np.float64)
        finite = x[np.isfinite(x)]
        out["l2_norm"][t] = float(np.linalg.norm(finite)) if finite.size else None
        out["nan"][t], out["inf"][t] = int(np.isnan(x).sum()), int(np.isinf(x).sum())
        first = series[present[0]].astype(np.float64)
        out["rel_l2_first"][t] = 0.0 if j == 0 else rel(first, x)
        if j:
            prev = series[present[j - 1]].astype(np.float64)
            out["rel_l2_prev"][t] = rel(prev, x)
            out["changed"][t] = int((~((prev == x) | (np.isnan(prev) & np.isnan(x)))).sum())
    return out


def _close(got, want) -> bool:
    if want is None or got is None:
        return got is want
    if isinstance(got, str):  # "inf" / "nan" in JSON
        return math.isinf(want) if got == "inf" else math.isnan(want)
    return math.isclose(got, want, rel_tol=1e-10, abs_tol=1e-300)


@pytest.mark.tensorflow
def test_every_number_matches_numpy_on_what_tensorflow_reads(doc, tf_values):
    with weightkit.load(RUN / "ckpt-5") as last:
        keys = {name: t.meta["key"] for name, t in last.items()}
    assert [c["step"] for c in doc["checkpoints"]] == [0, 1, 2, 3, 4, 5]
    checked = 0
    for var in doc["variables"]:
        key = keys[var["name"]]
        series = [values.get(key) for values in tf_values]
        want = _expected(series)
        for field, values in want.items():
            assert all(_close(g, w) for g, w in zip(var[field], values)), (var["name"], field,
                                                                           var[field], values)
        checked += 1
    assert checked == len(keys) == 17


def test_frozen_nan_and_the_first_step_they_appear(doc):
    by_name = {v["name"]: v for v in doc["variables"]}
    frozen = {n for n, v in by_name.items() if v["frozen"]}
    # the non-trainable layer, and Adam's constant learning rate
    assert frozen == {"frozen/kernel", "frozen/bias", "learning_rate"}
    assert by_name["out/kernel"]["first_nan_step"] == 4 and by_name["out/kernel"]["nan"][4] == 1
    # the next training step spreads it through the gradients of every trainable variable
    assert by_name["hidden/kernel"]["first_nan_step"] == 5
    assert by_name["frozen/kernel"]["first_nan_step"] is None
    # Adam's slots appear with the first training step: nothing at checkpoint 0
    assert by_name["Adam/m/out/kernel"]["l2_norm"][0] is None
    assert by_name["Adam/m/out/kernel"]["rel_l2_first"][1] == 0.0
    assert doc["summary"]["first_nan_step"] == 4 and doc["summary"]["frozen"] == 3
    jsonschema.validate(doc, SCHEMA)


def test_layer_rollup_combines_sums_not_averages(tf_values):
    with weightkit.load(RUN / "ckpt-5") as last:
        keys = {name: t.meta["key"] for name, t in last.items()}
    doc = weightkit.trend(RUN, include=["hidden/*"])
    assert [v["name"] for v in doc["variables"]] == ["hidden/kernel", "hidden/bias"]
    with_sums = [weightkit.load(RUN / f"ckpt-{i}") for i in range(6)]
    try:
        result = trend_stores(with_sums, TrendOptions(include=("hidden/*",)))
    finally:
        for s in with_sums:
            s.close()
    (group,) = rollup_trend(result.series, "layer")
    assert group.name == "hidden" and group.variables == 2
    for t in range(1, 4):  # before the NaN: the numpy oracle over both variables as one vector
        cur = np.concatenate([tf_values[t][keys[n]].ravel() for n in ("hidden/kernel", "hidden/bias")])
        prev = np.concatenate([tf_values[t - 1][keys[n]].ravel()
                               for n in ("hidden/kernel", "hidden/bias")]).astype(np.float64)
        want = np.linalg.norm(cur - prev) / np.linalg.norm(prev)
        assert group.rel_l2_prev[t] == pytest.approx(want, rel=1e-12)
        averaged = np.mean([v["rel_l2_prev"][t] for v in doc["variables"]
                            if isinstance(v["rel_l2_prev"][t], float)])
        assert abs(averaged - want) > 1e-6  # the average would be a different number


def test_cli_text_json_markdown_and_gates(tmp_path):
    done = run_cli("trend", RUN, "--color", "never")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    row = next(line for line in lines if line.startswith("out/kernel "))
    assert "NaN@4" in row
    assert "frozen" in next(line for line in lines if line.startswith("frozen/kernel "))
    assert lines[-1].startswith("6 checkpoints (steps 0, 1, 2, 3, 4, 5), 17 variables: 3 frozen")
    # the pipeline's NaN check: exit 1 and the variables named
    done = run_cli("trend", RUN, "--fail-if", "nan>0", "--format", "json", "-o", tmp_path / "t.json")
    assert done.returncode == 1 and done.stdout == ""
    assert "gate nan>0 tripped by 12: hidden/kernel" in done.stderr
    report = json.loads((tmp_path / "t.json").read_text())
    jsonschema.validate(report, SCHEMA)
    assert report["gates"][0]["gate"] == "nan>0" and len(report["gates"][0]["tripped"]) == 12
    # under every gate: exit 0
    done = run_cli("trend", RUN, "--include", "frozen/*", "--fail-if", "rel_l2_prev>0",
                   "--fail-if", "nan>0")
    assert done.returncode == 0, done.stdout + done.stderr
    done = run_cli("trend", RUN, "--by", "layer", "--sort", "rel_l2_first", "--top", "2",
                   "--format", "markdown")
    assert done.returncode == 0
    assert done.stdout.count("\n| `") == 2 + 2  # two layers, in the table and the per-step table
    assert "<details><summary>relative L2 change" in done.stdout
    done = run_cli("trend", RUN, "--fail-if", "rel_l2>0")
    assert done.returncode == 2 and "no per-variable number 'rel_l2'" in done.stderr
    assert "rel_l2_prev" in done.stderr  # the closest names
    done = run_cli("trend", RUN / "ckpt-1")
    assert done.returncode == 2 and "expected two checkpoints or more" in done.stderr


def _save(path: Path, arrays: dict) -> str:
    weightkit.save(Store.from_arrays(arrays), path)
    return str(path)


def test_files_in_any_format_exploding_and_variables_that_appear(tmp_path):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 33)).astype(np.float32)
    steps = [{"w": w, "grow": np.ones(5, np.float32), "i": np.arange(4, dtype=np.int64)},
             {"w": w * np.float32(1.01), "grow": np.full(5, 2, np.float32),
              "i": np.arange(4, dtype=np.int64) + 1, "late": np.ones(3, np.float16)},
             {"w": w * np.float32(1.02), "grow": np.full(5, 500, np.float32),
              "i": np.arange(4, dtype=np.int64) + 3, "late": np.full(3, 2, np.float16)}]
    paths = [_save(tmp_path / "model-10.safetensors", steps[0]),
             _save(tmp_path / "model-20.npz", steps[1]),
             _save(tmp_path / "model-30.safetensors", steps[2])]
    doc = weightkit.trend(paths)
    assert [c["step"] for c in doc["checkpoints"]] == [10, 20, 30]
    v = {x["name"]: x for x in doc["variables"]}
    assert v["grow"]["exploding"] and v["grow"]["norm_growth"] == pytest.approx(250)
    assert not v["w"]["exploding"]
    assert v["w"]["rel_l2_prev"][1] == pytest.approx(0.01, rel=1e-5)
    assert v["i"]["max_abs_diff_prev"] == [None, 1, 2] and v["i"]["changed"] == [None, 4, 4]
    assert v["late"]["l2_norm"] == [None, pytest.approx(math.sqrt(3)), pytest.approx(math.sqrt(12))]
    assert v["late"]["rel_l2_first"] == [None, 0.0, 1.0]
    done = run_cli("trend", *paths, "--explode", "1000")
    assert done.returncode == 0 and done.stdout.splitlines()[-1].endswith(" 0 exploding")


def test_the_api_takes_what_the_other_api_functions_and_the_command_take(tmp_path):
    # weightkit.trend lacked weights_only (the command has --weights-only), named the input
    # format `format` where diff/stats say from_format, and refused open stores with a
    # TypeError, though the README says every API function takes paths or open stores.
    rng = np.random.default_rng(2)
    w = rng.standard_normal(8).astype(np.float32)
    steps = [{"w": w * np.float32(k), "opt": w + k, "total": np.float32([k])} for k in (1, 2)]
    paths = []
    for k, arrays in enumerate(steps):
        store = Store({n: weightkit.Tensor.from_array(
            a, {"role": {"w": "weight", "opt": "optimizer", "total": "metric"}[n]})
            for n, a in arrays.items()})
        paths.append(tmp_path / f"ckpt-{k}.safetensors")
        weightkit.save(store, paths[-1])
    names = lambda doc: [v["name"] for v in doc["variables"]]  # noqa: E731
    assert names(weightkit.trend(paths)) == ["w", "opt", "total"]
    assert names(weightkit.trend(paths, no_optimizer=True)) == ["w", "total"]
    assert names(weightkit.trend(paths, weights_only=True)) == ["w"]
    doc = weightkit.trend(paths, from_format="safetensors", weights_only=True)
    assert doc == weightkit.trend(paths, format="safetensors", weights_only=True)  # old name
    cli = json.loads(run_cli("trend", *paths, "--weights-only", "--json").stdout)
    assert doc["variables"] == cli["variables"]
    with weightkit.load(paths[0]) as a, weightkit.load(paths[1]) as b:
        opened = weightkit.trend([a, b], weights_only=True)
    assert opened["variables"] == doc["variables"]
    assert [c["step"] for c in opened["checkpoints"]] == [0, 1]
    with pytest.raises(weightkit.UsageError, match="explode"):
        weightkit.trend(paths, explode=1)


def test_pieces_cross_chunk_boundaries_the_same(tmp_path):
    """A variable larger than one read (and than one piece) gives the same numbers in
    lockstep as numpy on the whole arrays."""
    rng = np.random.default_rng(2)
    base = rng.standard_normal(300_001).astype(np.float32)
    arrays = [base + np.float32(0.001 * t) * rng.standard_normal(base.size).astype(np.float32)
              for t in range(4)]
    arrays[2][123_456] = np.inf
    stores = [Store.from_arrays({"x": a}) for a in arrays]
    result = trend_stores(stores, TrendOptions(max_bytes=100_000, workers=1))
    (s,) = result.series
    want = _expected(arrays)
    for field in want:
        assert all(_close(g, w) for g, w in zip(getattr(s, field), want[field])), field
    assert s.first_inf_step == 2 and s.inf == [0, 0, 1, 0]


def test_step_numbers_and_sparkline():
    assert step_numbers(["a/ckpt-5", "a/ckpt-10"]) == [5, 10]
    assert step_numbers(["x.h5", "y.h5"]) == [0, 1]
    assert step_numbers(["m-2.npz", "m-1.npz"]) == [0, 1]  # not increasing: positions
    assert sparkline([None, 0.0, 1.0, 0.5, math.inf]) == " ·█▅!"


def test_a_damaged_checkpoint_in_the_run_is_one_line_and_exit_2(tmp_path):
    """A flipped bit in one checkpoint's data: the reader's crc check fails while trend streams
    it (every stream is read to its end), one line naming the file, no report."""
    import shutil
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    data = run / "ckpt-3.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[20] ^= 0x10
    data.write_bytes(bytes(raw))
    done = run_cli("trend", run, "--format", "json")
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "ckpt-3" in done.stderr, done.stderr


def test_checkpoints_of_different_models_are_refused(capsys):
    """Two unrelated models share no model weight (only the optimizer's `iteration`): not a
    run; exit 2 saying so, instead of a table of one-step series and exit 0."""
    from weightkit.cli.main import main
    code = main(["trend", str(FIXTURES / "conv--tfkeras-before-full.h5"),
                 str(FIXTURES / "mlp--tfkeras-full.h5")], prog="weightkit")
    assert code == 2 and "not checkpoints of one run" in capsys.readouterr().err


def test_a_run_directory_without_a_state_file_is_its_checkpoints_in_natural_order(tmp_path):
    """A directory of checkpoints and no `checkpoint` state file (`Checkpoint.write()` leaves
    none) is a run of the checkpoints it holds, ckpt-2 before ckpt-10; an empty one is
    unrecognised (exit 2)."""
    run = tmp_path / "run"
    run.mkdir()
    for step in (10, 2):
        weightkit.save(Store.from_arrays({"w": np.full(3, step, np.float32)}),
                       run / f"ckpt-{step}", "tf-checkpoint")
    doc = weightkit.trend([run])
    assert [c["step"] for c in doc["checkpoints"]] == [2, 10]
    assert doc["variables"][0]["max_abs_diff_prev"] == [None, 8]
    (tmp_path / "empty").mkdir()
    done = run_cli("trend", tmp_path / "empty")
    assert done.returncode == 2 and "unrecognised directory" in done.stderr
