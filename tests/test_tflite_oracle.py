"""TFLite's own interpreter as the oracle (in a subprocess, see tflite_oracle.py): it reads the
values weightkit reads, loads and runs every file weightkit writes (in place, re-packed,
un-shared, containers), computes what numpy predicts of an edit, and agrees with `wdiff` on the
quantization error of each layer of an int8 export."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import weightkit
from conftest import run_cli
from fixtures_lib import fixture, manifest, select
from tflite_oracle import run
from weightkit.converters.store import Store

pytestmark = pytest.mark.tensorflow
EXPORTS = select(format="tflite")


def test_the_interpreter_holds_the_values_weightkit_reads() -> None:
    """Every constant of the primary subgraph, for every export: same dtype, shape and bits."""
    results = run([["tensors", str(fixture(e))] for e in EXPORTS])
    for entry, theirs in zip(EXPORTS, results):
        with weightkit.load(fixture(entry)) as store:
            ours = {n: t for n, t in store.items() if t.meta["tflite"]["subgraph"] == 0
                    and "sparsity" not in t.meta["tflite"]}
            assert set(ours) <= set(theirs), entry["path"]
            for name, tensor in ours.items():
                want = theirs[name]
                assert (tensor.dtype_name, list(tensor.shape)) == (want["dtype"], want["shape"])
                assert np.array_equal(tensor.read(), np.asarray(want["values"], tensor.dtype)), name
                q = tensor.meta.get("quantization")
                if q and q["scheme"] == "affine":
                    assert np.allclose(q["scale"], want["quantization"]["scales"], rtol=1e-7)
                    assert q["zero_point"] == want["quantization"]["zero_points"]


def test_edits_run_as_numpy_predicts(tmp_path: Path) -> None:
    """In place: the last Dense layer's kernel doubled and its bias raised by 1 change the
    output to 2·(y − b) + b + 1. Re-packed (a rename) and un-shared (the LSTM's initial state,
    shared with another constant, set to 0.5 while its sibling keeps zeros): the interpreter
    runs them and computes what Keras computes from the same start."""
    dense = fixture("tldense--keras3-f32.tflite")
    with weightkit.load(dense) as store:
        bias = store["tldense_1/d3_1/BiasAdd"].read()
        edited = (weightkit.edit(store).scale("tldense_1/d3_1/MatMul", 2.0)
                  .set("tldense_1/d3_1/BiasAdd", bias + np.float32(1)))
        weightkit.save(edited, tmp_path / "dense.tflite")
        renamed = weightkit.edit(store).rename("^tldense_1/d1_1/MatMul$", "d1/kernel")
        weightkit.save(renamed, tmp_path / "renamed.tflite")
    offset = fixture("tldense--keras3-offset.tflite")
    with weightkit.load(offset) as store:
        weightkit.save(weightkit.edit(store).rename("^tldense_1/d2_1/MatMul$", "d2/kernel"),
                       tmp_path / "offset-renamed.tflite")
    lstm = fixture("tllstm--keras3-f32.tflite")
    with weightkit.load(lstm) as store:
        state = store["arith.constant"]
        assert store["arith.constant"].meta["tflite"]["shared_with"]
        weightkit.save(weightkit.edit(store).set("arith.constant",
                                                 np.full(state.shape, 0.5, np.float32)),
                       tmp_path / "lstm.tflite")
    original, doubled, renamed_out, offset_out, lstm_out, want_lstm, lstm_zero = run([
        ["invoke", str(dense), "tldense"], ["invoke", str(tmp_path / "dense.tflite"), "tldense"],
        ["invoke", str(tmp_path / "renamed.tflite"), "tldense"],
        ["invoke", str(tmp_path / "offset-renamed.tflite"), "tldense"],
        ["invoke", str(tmp_path / "lstm.tflite"), "tllstm"],
        ["lstm_state", str(fixture("tllstm--keras3.keras")), "tllstm", 0.5],
        ["invoke", str(lstm), "tllstm"]])
    y = np.asarray(original, np.float64)
    assert np.allclose(doubled, 2 * (y - bias) + bias + 1, rtol=1e-5, atol=1e-6)
    assert renamed_out == original and offset_out == original
    assert np.allclose(lstm_out, want_lstm, rtol=1e-5, atol=1e-6)
    assert not np.allclose(lstm_out, lstm_zero, rtol=1e-3)


def test_a_weights_container_loads_in_the_interpreter(tmp_path: Path) -> None:
    arrays = {"dense/kernel": np.arange(12, dtype=np.float32).reshape(4, 3),
              "dense/bias": np.array([1, -2, 3], np.int8),
              "vocab": np.array([b"alpha", b"", b"\xc3\xa9"], dtype=object)}
    weightkit.save(Store.from_arrays(arrays), tmp_path / "w.tflite")
    (theirs,) = run([["tensors", str(tmp_path / "w.tflite")]])
    assert theirs["dense/kernel"]["values"] == arrays["dense/kernel"].tolist()
    assert theirs["dense/bias"]["values"] == [1, -2, 3]
    assert theirs["vocab"]["values"] == [v.hex() for v in arrays["vocab"]]


@pytest.mark.parametrize("name", ["tlconv--keras3-int8.tflite", "tldense--keras3-int8.tflite"])
def test_wdiff_quantization_error_matches_numpy_on_the_interpreters_tensors(name: str) -> None:
    entry = manifest()[name]
    (oracle,) = run([["quant_error", str(fixture(entry)), str(fixture(entry["source"]))]])
    result = run_cli("diff", fixture(entry["source"]), fixture(entry), "--dequantize",
                     "--format", "json", "--all")
    assert result.returncode == 1, result.stderr
    by_b = {e["name_b"]: e for e in json.loads(result.stdout)["variables"]
            if e["name_b"] and e["status"] != "folded"}
    assert oracle and set(oracle) <= set(by_b)
    for tensor, want in oracle.items():
        got = by_b[tensor]
        assert got["status"] == "changed" and got["matched_by"] == "export", tensor
        assert got["max_abs_diff"] == pytest.approx(want["max_abs"], rel=1e-6), tensor
        assert got["rel_l2"] == pytest.approx(want["rel_l2"], rel=1e-6), tensor
        if "worst" in want:
            w = got["worst_channel"]
            assert [w["axis"], w["index"]] == want["worst"][:2], tensor
            assert w["max_abs_diff"] == pytest.approx(want["worst"][2], rel=1e-6), tensor


def test_wdiff_float32_exports_are_identical_to_their_sources() -> None:
    for entry in select(format="tflite", export="f32"):
        result = run_cli("diff", fixture(entry["source"]), fixture(entry))
        assert result.returncode == 0, result.stdout + result.stderr
