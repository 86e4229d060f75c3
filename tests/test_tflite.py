"""The TFLite format without TensorFlow: the conformance suite, the committed exports read and
written back, names, shared buffers, sparse tensors, edits in place and re-packed, refusals,
the verifier against hostile structures, and the export diff against the Keras sources.

The framework oracles (the TFLite interpreter loading what weightkit writes, numpy on the
interpreter's tensors) are in test_tflite_oracle.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import weightkit
from conformance import FormatConformance
from conftest import run_cli
from fixtures_lib import fixture, manifest, select
from weightkit.converters.errors import CorruptFileError, UsageError
from weightkit.converters.quant import dequantize
from weightkit.converters.store import Store, Tensor

EXPORTS = select(format="tflite")
IDS = [e["path"] for e in EXPORTS]


class TestTfliteConformance(FormatConformance):
    format = "tflite"
    suffix = ".tflite"
    extra_dtypes = ("uint8", "int16", "uint16", "int32", "uint32", "uint64", "float64",
                    "complex64", "complex128", "float8_e4m3fn", "float8_e5m2", "string", "int4",
                    "uint4", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu",
                    "float4_e2m1fn")


def _bytes(path) -> bytes:
    return Path(path).read_bytes()


def _source(entry: dict) -> Path:
    return fixture(entry["source"])


# --- the committed exports ----------------------------------------------------------------------

def test_fixtures_cover_every_export_kind() -> None:
    assert {e["export"] for e in EXPORTS} == {"f32", "f16", "dyn", "int8", "offset", "sparse"}
    assert {e["case"] for e in EXPORTS} == {"tlconv", "tldense", "tllstm"}


@pytest.mark.parametrize("entry", EXPORTS, ids=IDS)
@pytest.mark.parametrize("via", ["direct", "safetensors", "npz"])
def test_exports_read_and_write_back_byte_identical(entry: dict, via: str, tmp_path: Path) -> None:
    """Every tensor of every export reads (verified, bounds-checked), and the file written back
    directly or through a carrier (which carries the model without its weights) is the same."""
    path = fixture(entry)
    out = tmp_path / "back.tflite"
    with weightkit.load(path) as store:
        assert store.format == "tflite"
        for tensor in store.values():
            assert tensor.read().shape == tensor.shape
        if via == "direct":
            weightkit.save(store, out)
        else:
            carried = tmp_path / f"via.{via}"
            weightkit.save(store, carried)
            with weightkit.load(carried) as middle:
                weightkit.save(middle, out)
    assert _bytes(out) == _bytes(path)


def test_keras_kernels_are_found_in_their_tflite_layout() -> None:
    """float32 exports hold the Keras values in TFLite's layouts (DEPLOY-FORMATS.md §1)."""
    with weightkit.load(fixture("tldense--keras3.keras")) as keras, \
            weightkit.load(fixture("tldense--keras3-f32.tflite")) as lite:
        assert np.array_equal(lite["tldense_1/d2_1/MatMul"].read(), keras["d2/0"].read().T)
        layout = lite["tldense_1/d2_1/MatMul"].meta["layout"]
        assert (layout["op"], layout["operand"], layout["stored"], layout["source"]) == \
            ("FULLY_CONNECTED", "weights", "OI", "IO")
    with weightkit.load(fixture("tlconv--keras3.keras")) as keras, \
            weightkit.load(fixture("tlconv--keras3-f32.tflite")) as lite:
        dw = lite["tlconv_1/dw_1/depthwise"]
        assert np.array_equal(dw.read(), keras["dw/0"].read().reshape(1, 3, 3, 16))
        assert dw.meta["layout"]["to_source"] == [["reshape", [3, 3, 8, 2]]]
        tc = lite["tlconv_1/tc_1/conv_transpose"]
        assert np.array_equal(tc.read(), keras["tc/0"].read().transpose(2, 0, 1, 3))


def test_subgraph_weights_are_named_by_their_subgraph() -> None:
    """The LSTM's kernels sit in the WHILE body (subgraph 2): named `<subgraph>/<tensor>`."""
    with weightkit.load(fixture("tllstm--keras3-f32.tflite")) as store, \
            weightkit.load(fixture("tllstm--keras3.keras")) as keras:
        body = "tllstm_1/lstm_1/while_body/"
        kernels = [n for n in store if n.startswith(body) and "MatMul" in n]
        assert len(kernels) == 2
        for name in kernels:
            t = store[name]
            assert t.meta["tflite"]["subgraph"] == 2 and t.meta["key"] == name[len(body):]
            assert t.meta["layout"]["op"] == "FULLY_CONNECTED"
        found = {keras_name for keras_name in ("lstm/lstm_cell/0", "lstm/lstm_cell/1")
                 for n in kernels if np.array_equal(store[n].read().T, keras[keras_name].read())}
        assert found == {"lstm/lstm_cell/0", "lstm/lstm_cell/1"}
        assert store.meta["tflite"]["subgraphs"][2] == "tllstm_1/lstm_1/while_body"


def test_shared_buffers_are_shown() -> None:
    """The converter shares buffers across subgraphs and between shapes; show --json says so."""
    result = run_cli("show", fixture("tllstm--keras3-f32.tflite"), "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)["variables"]}
    shared = {n: r["meta"]["tflite"]["shared_with"] for n, r in rows.items()
              if "shared_with" in r["meta"]["tflite"]}
    assert shared["arith.constant"] == ["tllstm_1/lstm_1/TensorArrayV2_1"]
    assert rows["arith.constant"]["shape"] != rows["tllstm_1/lstm_1/TensorArrayV2_1"]["shape"]
    assert any(n.startswith("tllstm_1/lstm_1/while_cond/") for n in shared)
    for name, others in shared.items():
        buffer = rows[name]["meta"]["tflite"]["buffer"]
        assert all(rows[o]["meta"]["tflite"]["buffer"] == buffer for o in others)


def test_quantization_and_consumers_in_meta() -> None:
    with weightkit.load(fixture("tlconv--keras3-int8.tflite")) as store:
        dw = store["tlconv_1/dw_1/depthwise"]
        q = dw.meta["quantization"]
        assert dw.dtype == np.int8 and q["scheme"] == "affine" and q["axis"] == 3
        assert len(q["scale"]) == 16 and set(q["zero_point"]) == {0}
        assert dw.meta["tflite"]["consumers"] == [["DEPTHWISE_CONV_2D", 2, 1]]
        biases = [t for t in store.values() if t.dtype == np.int32 and "quantization" in t.meta]
        assert biases and all(t.meta["layout"]["operand"] == "bias" for t in biases)
    with weightkit.load(fixture("tlconv--keras3-f16.tflite")) as store:
        fc = store["tlconv_1/fc_1/MatMul"]
        assert fc.dtype == np.float16 and fc.meta["quantization"] == {"scheme": "cast",
                                                                      "dtype": "float32"}
        assert fc.meta["tflite"]["consumers"][0][0] == "DEQUANTIZE"
        assert fc.meta["layout"]["op"] == "FULLY_CONNECTED"  # followed through the DEQUANTIZE


def test_sparse_tensor_is_read_densified_and_written_back_in_its_structure(tmp_path: Path) -> None:
    with weightkit.load(fixture("tldense--keras3-sparse.tflite")) as sparse, \
            weightkit.load(fixture("tldense--keras3-f32.tflite")) as dense:
        name = next(n for n in sparse if "sparsity" in sparse[n].meta["tflite"])
        t = sparse[name]
        kept = t.read()
        full = dense["tldense_1/d1_1/MatMul"].read()
        assert t.shape == (64, 32) and t.meta["layout"]["op"] == "FULLY_CONNECTED"
        assert np.array_equal(kept[kept != 0], full[kept != 0])
        assert 0.3 < np.mean(kept == 0) < 0.7  # half the 4x1 blocks were zeroed
        out = tmp_path / "scaled.tflite"
        weightkit.save(weightkit.edit(sparse).scale(name, 2.0), out)
        assert len(_bytes(out)) == len(_bytes(fixture("tldense--keras3-sparse.tflite")))
        with weightkit.load(out) as back:
            assert np.array_equal(back[name].read(), kept * np.float32(2.0))
        filled = np.where(kept == 0, np.float32(1), kept)
        with pytest.raises(UsageError, match="sparsity structure"):
            weightkit.save(weightkit.edit(sparse).set(name, filled), tmp_path / "no.tflite")
    assert not (tmp_path / "no.tflite").exists()


def test_a_sparse_tensor_is_made_dense_a_block_at_a_time(tmp_path: Path) -> None:
    """2 MB of sparse values that are 1 GiB dense (inside the 1024:1 budget): show, convert and
    edit read and write it a block of rows at a time (before: the whole dense tensor for every
    block, 2.1 GiB and 22 s for show)."""
    from hostile_runner import ForkServer, cli_request
    from make_crafted import tflite_bytes
    rows, cols, per = 16384, 16384, 16
    segments = np.arange(0, rows * per + 1, per)
    indices = np.tile(np.arange(per) * 1000, rows)
    path = tmp_path / "sparse.tflite"
    path.write_bytes(tflite_bytes([
        {"name": "w", "shape": [rows, cols], "type": "float32",
         "data": np.ones(rows * per, np.float32).tobytes(),
         "sparsity": {"traversal_order": [0, 1], "dims": [rows, (segments, indices)]}},
        {"name": "out", "shape": [rows, cols], "type": "float32", "buffer": 0}],
        operators=[(124, [0], [1], 1)]))
    runs = {"show": ["show", "--json", str(path)],
            "convert": ["convert", str(path), str(tmp_path / "w.safetensors")],
            "edit": ["edit", str(path), str(tmp_path / "e.tflite"), "--scale", "w=2"]}
    with ForkServer() as server:
        results = server.batch([cli_request(argv, tmp_path, timeout=60)
                                for argv in runs.values()])
    for name, result in zip(runs, results):
        assert result.code == 0, (name, result.stderr)
        assert result.maxrss_mib < 600, (name, result.maxrss_mib)
    row = json.loads(results[0].stdout)["variables"][0]
    assert row["mean"] == per / cols and row["max"] == 1.0
    with weightkit.load(tmp_path / "e.tflite") as edited:
        assert edited["w"][5:7].sum() == 2 * 2 * per


@pytest.mark.parametrize("op, shape", [(9, [4]), (9, [4, 3, 2]), (9, []), (3, [4, 3]),
                                       (67, [4]), (4, [2, 3, 3, 4])])
def test_an_operand_of_another_rank_is_compared_as_stored(op, shape, tmp_path: Path) -> None:
    """A weight whose rank is not its operator's (FULLY_CONNECTED weights of rank 1, a CONV_2D
    filter of rank 2, ...) has no layout to undo: wdiff against the source compares it as
    stored (before: an IndexError escaped)."""
    from make_crafted import tflite_bytes
    path = tmp_path / "odd.tflite"
    path.write_bytes(tflite_bytes([
        {"name": "in", "shape": [1, 3], "type": "float32", "buffer": 0},
        {"name": "d1/kernel", "shape": shape, "type": "float32",
         "data": np.ones(int(np.prod(shape)), np.float32).tobytes()},
        {"name": "out", "shape": [1, 4], "type": "float32", "buffer": 0}],
        operators=[(op, [0, 1, -1], [2], 1)]))
    for argv in (["diff", "--dequantize", str(fixture("tldense--keras3.keras")), str(path)],
                 ["diff", str(path), str(fixture("tldense--keras3.keras"))]):
        result = run_cli(*argv)
        assert result.returncode in (0, 1), result.stderr
        assert "Traceback" not in result.stderr and "unexpected" not in result.stderr


def test_buffers_after_the_flatbuffer(tmp_path: Path) -> None:
    """The >2 GB layout (Buffer.offset/size) reads as the inline one; edits go in place, and a
    re-pack keeps the layout with fresh offsets."""
    with weightkit.load(fixture("tldense--keras3-offset.tflite")) as outside, \
            weightkit.load(fixture("tldense--keras3-f32.tflite")) as inline:
        assert outside.meta["tflite"]["outside"] and not inline.meta["tflite"]["outside"]
        assert {n: outside[n].read().tobytes() for n in outside} == \
            {n: inline[n].read().tobytes() for n in inline}
        renamed = weightkit.edit(outside).rename(r"^tldense_1/d3_1/MatMul$", "d3/kernel")
        weightkit.save(renamed, tmp_path / "renamed.tflite")
    with weightkit.load(tmp_path / "renamed.tflite") as back:
        assert back.meta["tflite"]["outside"]
        assert "buffer_location" in back.meta["tflite"]["metadata"]
        assert np.array_equal(back["d3/kernel"].read(), inline_value("tldense_1/d3_1/MatMul"))


def inline_value(name: str) -> np.ndarray:
    with weightkit.load(fixture("tldense--keras3-f32.tflite")) as store:
        return store[name].read()


# --- edits ------------------------------------------------------------------------------------

def test_value_edit_is_written_in_place(tmp_path: Path) -> None:
    src = fixture("tldense--keras3-f32.tflite")
    out = tmp_path / "edited.tflite"
    result = run_cli("edit", src, out, "--scale", "tldense_1/d3_1/MatMul=2")
    assert result.returncode == 0, result.stderr
    a, b = _bytes(src), _bytes(out)
    assert len(a) == len(b)
    with weightkit.load(src) as store:
        t = store["tldense_1/d3_1/MatMul"]
        start, length = next(c for c in store.meta["tflite"]["cuts"]
                             if _bytes(src)[c[0]:c[0] + c[1]] == t.read().tobytes())
        changed = [i for i in range(len(a)) if a[i] != b[i]]
        assert changed and start <= min(changed) and max(changed) < start + length
        with weightkit.load(out) as back:
            assert np.array_equal(back["tldense_1/d3_1/MatMul"].read(), t.read() * np.float32(2))
            for name in store:
                if name != "tldense_1/d3_1/MatMul":
                    assert back[name].read().tobytes() == store[name].read().tobytes()


def test_editing_a_shared_buffer_unshares_it(tmp_path: Path) -> None:
    src = fixture("tllstm--keras3-f32.tflite")
    with weightkit.load(src) as store:
        edited = weightkit.edit(store).set("arith.constant", np.ones((1, 16), np.float32))
        weightkit.save(edited, tmp_path / "out.tflite")
        with weightkit.load(tmp_path / "out.tflite") as back:
            assert np.array_equal(back["arith.constant"].read(), np.ones((1, 16), np.float32))
            sibling = "tllstm_1/lstm_1/TensorArrayV2_1"
            assert np.array_equal(back[sibling].read(), store[sibling].read())
            assert "shared_with" not in back["arith.constant"].meta["tflite"]
            assert back["arith.constant"].meta["tflite"]["buffer"] != \
                back[sibling].meta["tflite"]["buffer"]
            for name in store:  # every other tensor as it was, names and order kept
                if name != "arith.constant":
                    assert back[name].read().tobytes() == store[name].read().tobytes()
            assert list(back) == list(store)


def test_rename_is_written_by_a_repack(tmp_path: Path) -> None:
    src = fixture("tllstm--keras3-f32.tflite")
    body = "tllstm_1/lstm_1/while_body/"
    old = body + "tllstm_1/lstm_1/while/lstm_cell_1/MatMul"
    with weightkit.load(src) as store:
        edited = weightkit.edit(store).rename(r"lstm_cell_1/MatMul$", "lstm_cell_1/kernel")
        weightkit.save(edited, tmp_path / "renamed.tflite")
        with weightkit.load(tmp_path / "renamed.tflite") as back:
            new = body + "tllstm_1/lstm_1/while/lstm_cell_1/kernel"
            assert new in back and old not in back
            assert back[new].meta["key"] == "tllstm_1/lstm_1/while/lstm_cell_1/kernel"
            assert np.array_equal(back[new].read(), store[old].read())


@pytest.mark.parametrize("edit, message", [
    (lambda e: e.cast("tldense_1/d1_1/MatMul", "float16"), "would need another model"),
    (lambda e: e.drop("tldense_1/d3_1/BiasAdd"), "the model needs"),
])
def test_changes_the_model_cannot_take_are_refused(edit, message, tmp_path: Path) -> None:
    with weightkit.load(fixture("tldense--keras3-f32.tflite")) as store:
        with pytest.raises(UsageError, match=message):
            weightkit.save(edit(weightkit.edit(store)), tmp_path / "out.tflite")
    assert list(tmp_path.iterdir()) == []


def test_an_added_variable_is_refused_with_the_reason(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros(3, np.float32))
    result = run_cli("edit", fixture("tldense--keras3-f32.tflite"), tmp_path / "out.tflite",
                     "--add", f"extra={tmp_path / 'x.npy'}")
    assert result.returncode == 2 and "not a tensor of the TFLite model" in result.stderr
    assert not (tmp_path / "out.tflite").exists()


def test_dequantized_store_is_not_written_into_the_int8_model(tmp_path: Path) -> None:
    result = run_cli("convert", fixture("tldense--keras3-int8.tflite"), tmp_path / "out.tflite",
                     "--dequantize")
    assert result.returncode == 2, result.stderr
    assert "out.tflite: " in result.stderr and "is quantized INT" in result.stderr
    assert "writing float32" in result.stderr


def test_a_repack_refuses_fields_the_schema_does_not_know(tmp_path: Path) -> None:
    """A newer writer's field would be dropped by a re-pack: in-place edits still work."""
    from make_crafted import TFL_BASE, tflite_bytes
    path = tmp_path / "newer.tflite"
    path.write_bytes(tflite_bytes(TFL_BASE, extra_tensor_field=True))
    with weightkit.load(path) as store:
        assert np.array_equal(store["dense/bias"].read(), np.array([0.5, -0.5, 1.0], np.float32))
        weightkit.save(weightkit.edit(store).scale("dense/bias", 2.0), tmp_path / "scaled.tflite")
        renamed = weightkit.edit(store).rename("^dense/bias$", "b")
        plan = weightkit.converters.registry.plan(renamed, "tflite")
        assert plan.detail is None or plan.detail.mode != "inplace"
    with weightkit.load(tmp_path / "scaled.tflite") as back:
        assert np.array_equal(back["dense/bias"].read(), np.array([1.0, -1.0, 2.0], np.float32))


# --- the verifier -----------------------------------------------------------------------------

def test_verifier_bounds_every_walk() -> None:
    """Depth, table count and size bounds of the verifier (converters/flatbuffer.py)."""
    from make_crafted import TFL_BASE, tflite_bytes
    from weightkit.converters.flatbuffer import VerifyError, verify
    from weightkit.converters.tflite_schema import layout
    good = tflite_bytes(TFL_BASE)
    report = verify(good, layout.TABLES, "Model", b"TFL3")
    assert report.end <= len(good) and report.tables >= 6 and report.unknown == []
    with pytest.raises(VerifyError, match="more than"):
        verify(good, layout.TABLES, "Model", b"TFL3", max_tables=3)
    with pytest.raises(VerifyError, match="deep"):
        verify(good, layout.TABLES, "Model", b"TFL3", max_depth=1)
    for cut in range(0, len(good), 7):
        with pytest.raises(VerifyError):
            verify(good[:cut], layout.TABLES, "Model", b"TFL3")
    newer = verify(tflite_bytes(TFL_BASE, extra_tensor_field=True), layout.TABLES, "Model")
    assert newer.unknown == ["Tensor.field11", "Tensor.field11"]


def test_every_field_of_the_schema_is_in_the_layout() -> None:
    """layout.py and schema_generated.py come from the same schema (regenerate.py)."""
    import re
    from weightkit.converters.tflite_schema import layout, regenerate
    source = (Path(regenerate.__file__).parent / "schema_generated.py").read_text()
    assert regenerate.COMMIT in source and regenerate.COMMIT in \
        (Path(regenerate.__file__).parent / "layout.py").read_text()
    for table, fields in layout.TABLES.items():
        found = re.search(rf"^def {table}Start\(builder\):\s*builder\.StartObject\((\d+)\)",
                          source, flags=re.M)
        assert found and int(found.group(1)) == len(fields), table
    assert [f[0] for f in layout.TABLES["Buffer"]] == ["data", "offset", "size"]


# --- dequantize -------------------------------------------------------------------------------

def test_dequantize_affine_per_channel_matches_numpy() -> None:
    with weightkit.load(fixture("tlconv--keras3-int8.tflite")) as store:
        plain = dequantize(store)
        for name, t in store.items():
            q = t.meta.get("quantization")
            if not q:
                continue
            got = plain[name].read()
            assert got.dtype == np.float32 and plain[name].meta["dequantized"]["from"] == t.dtype_name
            scale = np.asarray(q["scale"], np.float32)
            zero = np.asarray(q["zero_point"], np.int64)
            shape = [1] * t.ndim
            if q["axis"] is not None:
                shape[q["axis"]] = -1
            want = (t.read().astype(np.int64) - zero.reshape(shape)).astype(np.float32) \
                * scale.reshape(shape)
            assert np.array_equal(got, want), name
            chunks = np.concatenate(list(plain[name].iter_chunks(7)))
            assert np.array_equal(chunks, want.reshape(-1))


def test_dequantize_other_schemes() -> None:
    q = np.array([[0, 255], [128, 7]], np.uint8)
    store = Store({
        "tfjs": Tensor.from_array(q, {"quantization": {"scheme": "min_scale", "scale": 0.5,
                                                       "min": -1.0}}),
        "half": Tensor.from_array(q.astype(np.float16), {"quantization": {"scheme": "cast",
                                                                          "dtype": "float32"}}),
        "w": Tensor.from_array(np.array([[1, -2, 3, 4]], np.int8), {"quantization": {
            "scheme": "blockwise", "scales": "s", "zero_points": None, "block_size": 2}}),
        "s": Tensor.from_array(np.array([[0.5, 2.0]], np.float16)),
        "plain": Tensor.from_array(q),
    })
    out = dequantize(store)
    assert np.array_equal(out["tfjs"].read(), (q * 0.5 - 1.0).astype(np.float32))
    assert out["half"].dtype == np.float32 and out["plain"].dtype == np.uint8
    assert np.array_equal(out["w"].read(), np.array([[0.5, -1.0, 6.0, 8.0]], np.float32))
    bad = Store({"x": Tensor.from_array(q, {"quantization": {"scheme": "affine",
                                                             "scale": [1.0, 2.0, 3.0],
                                                             "zero_point": [0], "axis": 1}})})
    with pytest.raises(CorruptFileError, match="do not match axis"):
        dequantize(bad)
    unknown = Store({"x": Tensor.from_array(q, {"quantization": {"scheme": "lut"}})})
    with pytest.raises(UsageError, match="cannot dequantize"):
        dequantize(unknown)


def test_show_and_convert_dequantize(tmp_path: Path) -> None:
    src = fixture("tldense--keras3-dyn.tflite")
    shown = json.loads(run_cli("show", src, "--json", "--dequantize").stdout)
    rows = {r["name"]: r for r in shown["variables"]}
    assert rows["tldense_1/d1_1/MatMul"]["dtype"] == "float32"
    assert rows["tldense_1/d1_1/MatMul"]["meta"]["dequantized"]["from"] == "int8"
    result = run_cli("convert", src, tmp_path / "w.safetensors", "--dequantize")
    assert result.returncode == 0, result.stderr
    with weightkit.load(tmp_path / "w.safetensors") as out, weightkit.load(src) as lite:
        assert out["tldense_1/d1_1/MatMul"].dtype == np.float32
        assert np.array_equal(out["tldense_1/d1_1/MatMul"].read(),
                              dequantize(lite)["tldense_1/d1_1/MatMul"].read())


# --- the export diff --------------------------------------------------------------------------

def _wdiff(a, b, *extra: str) -> tuple[int, dict]:
    result = run_cli("diff", a, b, "--format", "json", "--all", *extra)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize("name", ["tlconv--keras3-f32.tflite", "tldense--keras3-f32.tflite",
                                  "tldense--keras3-offset.tflite", "tllstm--keras3-f32.tflite"])
def test_float32_export_diffs_identical_with_its_source(name: str) -> None:
    entry = manifest()[name]
    code, report = _wdiff(_source(entry), fixture(entry))
    assert code == 0, [e for e in report["variables"] if e["status"] not in ("same", "folded")]
    paired = [e for e in report["variables"] if e["status"] == "same"]
    sources = [v["name"] for v in entry["variables"]]
    assert len(paired) + report["summary"]["counts"].get("folded", 0) == len(sources)
    assert all(e["matched_by"] == "export" for e in report["variables"])
    validate(report)


def validate(report: dict) -> None:
    import jsonschema
    schema = json.loads((Path(weightkit.__file__).parent / "diff" / "schema.json").read_text())
    jsonschema.validate(report, schema)


def test_batchnorm_folded_into_the_convolution_is_shown_as_folded() -> None:
    code, report = _wdiff(fixture("tlconv--keras3.keras"), fixture("tlconv--keras3-f32.tflite"))
    by_a = {e["name_a"]: e for e in report["variables"]}
    bn = ("gamma", "beta", "moving_mean", "moving_variance")  # Keras' names (issue 14)
    assert {by_a[f"bn1/{v}"]["status"] for v in bn} == {"folded"}
    assert all(by_a[f"bn1/{v}"]["name_b"] == "tlconv_1/c1_1/convolution" for v in bn)
    kernel = by_a["c1/kernel"]
    assert kernel["name_b"] == "tlconv_1/c1_1/convolution" and kernel["status"] == "same"
    assert "folded with bn1" in kernel["transform"] and "OHWI→HWIO" in kernel["transform"]
    assert "folded with bn1" in by_a["c1/bias"]["transform"]
    assert by_a["fc/bias"]["status"] == "folded" and "all zeros" in by_a["fc/bias"]["transform"]
    assert by_a["dw/kernel"]["transform"] == "1HW(C*M)→HWCM"
    assert by_a["dw/kernel"]["max_abs_diff"] == 0
    assert report["summary"]["export"]["side"] == "b"
    assert sorted(report["summary"]["export"]["structural"]) == [
        "tlconv_1/gap_1/Mean/reduction_indices", "tlconv_1/tc_1/conv_transpose/input_sizes"]


def test_an_export_of_nan_or_renamed_weights_diffs_without_error(tmp_path: Path) -> None:
    """Export weights no fold explains (a NaN kernel, a bias of another width under the name
    the fold expects) are compared or left unpaired, never an escaping error (before: a
    StopIteration choosing the fold's epsilon; a ValueError comparing shapes (4,) and (3,))."""
    out = tmp_path / "nan.tflite"
    with weightkit.load(fixture("tlconv--keras3-f32.tflite")) as store:
        name = "tlconv_1/c1_1/convolution"
        nan = np.full(store[name].shape, np.nan, store[name].dtype)
        weightkit.save(weightkit.edit(store).set(name, nan), out)
    code, report = _wdiff(fixture("tlconv--keras3.keras"), out)
    assert code == 1 and report["variables"]
    web = tmp_path / "web"
    shutil.copytree(fixture("conv--tfjs-graph"), web)
    doc = json.loads((web / "model.json").read_text())
    weights = doc["weightsManifest"][0]["weights"]
    bias = next(w for w in weights if w["name"].endswith("Conv2D_bn_offset"))
    other = next(w for w in weights if w["name"].endswith("out/BiasAdd/ReadVariableOp"))
    bias["name"], other["name"] = other["name"], bias["name"]
    (web / "model.json").write_text(json.dumps(doc))
    for argv in (["diff", "--dequantize", str(fixture("conv--tfkeras-before-full.h5")), str(web)],
                 ["diff", str(web), str(fixture("conv--tfkeras-before-full.h5"))]):
        result = run_cli(*argv)
        assert result.returncode in (0, 1), result.stderr
        assert "unexpected" not in result.stderr


def test_int8_export_reports_the_quantization_error_per_layer() -> None:
    """Per weight: the error numpy finds between the Keras kernel (folded where BN was) in
    TFLite's layout and scale·(q − zero_point) of the stored int8 values."""
    code, report = _wdiff(fixture("tlconv--keras3.keras"), fixture("tlconv--keras3-int8.tflite"),
                          "--dequantize")
    assert code == 1
    by_a = {e["name_a"]: e for e in report["variables"]}
    with weightkit.load(fixture("tlconv--keras3.keras")) as keras, \
            weightkit.load(fixture("tlconv--keras3-int8.tflite")) as lite:
        real = dequantize(lite)
        for source, exported, to_stored in (
                ("dw/kernel", "tlconv_1/dw_1/depthwise", lambda k: k.reshape(1, 3, 3, 16)),
                ("tc/kernel", "tlconv_1/tc_1/conv_transpose", lambda k: k.transpose(2, 0, 1, 3)),
                ("fc/kernel", "tlconv_1/fc_1/MatMul", lambda k: k.T)):
            want = to_stored(keras[source].read()).astype(np.float64)
            have = real[exported].read().astype(np.float64)
            e = by_a[source]
            assert e["name_b"] == exported and e["status"] == "changed"
            assert e["max_abs_diff"] == pytest.approx(np.abs(want - have).max(), rel=1e-12)
            assert e["rel_l2"] == pytest.approx(np.linalg.norm(want - have) / np.linalg.norm(want),
                                                rel=1e-9)
            axis = lite[exported].meta["quantization"]["axis"]
            per = np.abs(np.moveaxis(want - have, axis, 0)).reshape(want.shape[axis], -1).max(1)
            assert e["worst_channel"]["axis"] == axis
            assert e["worst_channel"]["index"] == int(per.argmax())
            assert e["worst_channel"]["max_abs_diff"] == pytest.approx(per.max(), rel=1e-12)
        assert "folded with bn1 (ε=0.001)" in by_a["c1/kernel"]["transform"]
        assert {by_a[f"bn1/{v}"]["status"]
                for v in ("gamma", "beta", "moving_mean", "moving_variance")} == {"folded"}
    validate(report)


def test_export_diff_without_dequantize_says_how_to_compare_values() -> None:
    result = run_cli("diff", fixture("tldense--keras3.keras"), fixture("tldense--keras3-int8.tflite"))
    assert result.returncode == 1
    assert "quantized weights compared as stored integers (--dequantize" in result.stdout


def test_export_diff_either_way_round() -> None:
    _, forward = _wdiff(fixture("tldense--keras3.keras"), fixture("tldense--keras3-dyn.tflite"),
                        "--dequantize")
    _, backward = _wdiff(fixture("tldense--keras3-dyn.tflite"), fixture("tldense--keras3.keras"),
                         "--dequantize")
    pairs = {(e["name_a"], e["name_b"]): e["status"] for e in forward["variables"]}
    assert {(e["name_b"], e["name_a"]): e["status"] for e in backward["variables"]} == pairs
    assert backward["summary"]["export"]["side"] == "a"
    changed = {a for (a, _), s in pairs.items() if s == "changed"}
    assert changed == {"d1/kernel", "d2/kernel"}  # the two kernels of >= 1024 elements: int8


def test_a_batch_norm_folded_into_an_int8_kernel_is_folded_without_dequantize() -> None:
    """The fold is recognised by the kernel's real values, also when the diff compares the
    stored integers: the batch norm reads `folded`, never `removed` (the export did not lose
    it)."""
    code, report = _wdiff(fixture("tlconv--keras3.keras"), fixture("tlconv--keras3-int8.tflite"))
    by_a = {e["name_a"]: e for e in report["variables"]}
    assert {by_a[f"bn1/{v}"]["status"] for v in ("gamma", "beta", "moving_mean",
                                                  "moving_variance")} == {"folded"}
    assert report["summary"]["counts"]["removed"] == 0


def test_a_weights_container_says_it_computes_nothing(tmp_path: Path) -> None:
    """A store from another format becomes a weights container: convert says so (a user
    expects a runnable model from a .tflite), not with --quiet, and not for a TFLite model
    written back into itself."""
    done = run_cli("convert", fixture("tldense--keras3.keras"), tmp_path / "c.tflite")
    assert done.returncode == 0 and done.stderr.count("\n") == 1
    assert "note: " in done.stderr and "a weights container" in done.stderr
    assert run_cli("convert", fixture("tldense--keras3.keras"), tmp_path / "q.tflite",
                   "-q").stderr == ""
    done = run_cli("convert", fixture("tldense--keras3-f32.tflite"), tmp_path / "m.tflite")
    assert done.returncode == 0 and done.stderr == ""


def test_an_export_diff_selects_by_either_sides_names(tmp_path: Path) -> None:
    """The export names its weights otherwise (`tlconv_1/c1_1/convolution` for `c1/kernel`):
    a selection picks a pair by either side's name, after pairing; a structural constant by
    its own; a folded batch norm with the pairs that check it."""
    source, export = fixture("tlconv--keras3.keras"), fixture("tlconv--keras3-f32.tflite")
    code, report = _wdiff(source, export, "--include", "c1/*")
    assert code == 0 and [(e["name_a"], e["status"]) for e in report["variables"]] == [
        ("c1/kernel", "same"), ("c1/bias", "same")]
    assert report["variables"][0]["name_b"] == "tlconv_1/c1_1/convolution"
    assert report["summary"]["export"]["structural"] == []
    code, report = _wdiff(export, source, "--include", "*/c1_1/*", "--include", "bn1/*")
    assert code == 0 and {e["name_b"] for e in report["variables"]} == {
        "c1/kernel", "c1/bias", "bn1/gamma", "bn1/beta", "bn1/moving_mean", "bn1/moving_variance"}
    code, report = _wdiff(source, export, "--exclude", "*/convolution*")  # either side's name
    assert code == 0 and {e["name_a"] for e in report["variables"]} == {
        "dw/kernel", "dw/bias", "tc/kernel", "tc/bias", "fc/kernel", "fc/bias"}
    assert len(report["summary"]["export"]["structural"]) == 2
    refused = run_cli("diff", source, export, "--include", "c1/kernel", "--exclude", "*/c1_1/*")
    assert refused.returncode == 2 and "leaves none of" in refused.stderr  # never "identical"
    # a folded variable brings the pairs of the layer it was folded into, which check its
    # values (gamma scales the kernel and the bias, beta shifts the bias); excluding one of
    # them without it is an error: it could not be compared
    for change, changed in (("bn1/gamma=1.1", {"c1/kernel", "c1/bias"}),
                            ("bn1/beta=3", {"c1/bias"})):
        edited = tmp_path / "x.keras"
        assert run_cli("edit", source, edited, "--scale", change).returncode == 0
        code, report = _wdiff(edited, export, "--include", "bn1/*")
        rows = {e["name_a"]: e["status"] for e in report["variables"]}
        assert code == 1 and {n for n, s in rows.items() if s == "changed"} == changed
        assert set(rows) == {"c1/kernel", "c1/bias", "bn1/gamma", "bn1/beta", "bn1/moving_mean",
                             "bn1/moving_variance"}
        for exclude in ("c1/*", "*Relu*"):  # (the fused bias' export name)
            refused = run_cli("diff", edited, export, "--exclude", exclude)
            assert refused.returncode == 2 and "'bn1/gamma' is folded into" in refused.stderr
        code, report = _wdiff(edited, export, "--exclude", "c1/*", "--exclude", "bn1/*")
        assert code == 0 and not {e["name_a"] for e in report["variables"]} & set(rows)


def test_pruned_export_differs_exactly_where_it_was_pruned() -> None:
    _, report = _wdiff(fixture("tldense--keras3.keras"), fixture("tldense--keras3-sparse.tflite"))
    with weightkit.load(fixture("tldense--keras3-sparse.tflite")) as lite, \
            weightkit.load(fixture("tldense--keras3.keras")) as keras:
        name = next(n for n in lite if "sparsity" in lite[n].meta["tflite"])
        zeroed = int(np.sum((lite[name].read().T == 0) & (keras["d1/0"].read() != 0)))
    by_a = {e["name_a"]: e for e in report["variables"]}
    assert by_a["d1/kernel"]["name_b"] == name and by_a["d1/kernel"]["mismatched"] == zeroed > 0
    assert all(e["status"] == "same" for a, e in by_a.items() if a != "d1/kernel")


def test_low_bit_types_unpack_lowest_bits_first(tmp_path: Path) -> None:
    """INT4 two per byte and INT2 four per byte, element 0 in the lowest bits, sign-extended
    (LiteRT tflite/converter/utils/low_bit_utils.cc); written back packed the same way."""
    from make_crafted import tflite_bytes
    int4 = [-8, 7, -1, 0, 3]  # 0x78, 0x0F, 0x03
    int2 = [-2, 1, -1, 0, 1]  # 0b00_11_01_10, 0b01
    path = tmp_path / "low.tflite"
    path.write_bytes(tflite_bytes([
        {"name": "w4", "shape": [5], "type": 17, "data": bytes([0x78, 0x0F, 0x03])},
        {"name": "w2", "shape": [5], "type": 19, "data": bytes([0b00110110, 0b01])}]))
    with weightkit.load(path) as store:
        assert store["w4"].dtype_name == "int4" and store["w4"].read().tolist() == int4
        assert store["w2"].dtype == np.int8 and store["w2"].meta["tflite"]["type"] == "INT2"
        assert store["w2"].read().tolist() == int2 and store["w4"][1:3].tolist() == int4[1:3]
        weightkit.save(weightkit.edit(store).set("w2", np.array([1, 1, -2, -2, 0], np.int8)),
                       tmp_path / "edited.tflite")
        with pytest.raises(UsageError, match=r"values must lie in \[-2, 1\]"):
            weightkit.save(weightkit.edit(store).set("w2", np.array([2, 0, 0, 0, 0], np.int8)),
                           tmp_path / "bad.tflite")
    with weightkit.load(tmp_path / "edited.tflite") as back:
        assert back["w2"].read().tolist() == [1, 1, -2, -2, 0]
        assert back["w4"].read().tolist() == int4


def test_export_diff_pairs_checkpoint_style_names_and_skips_optimizer_state() -> None:
    """A source named as a checkpoint or tf.keras file names them (`d1/kernel`, a model scope,
    optimizer slots) pairs the same way; optimizer state is listed as not exported."""
    with weightkit.load(fixture("tldense--keras3.keras")) as keras, \
            weightkit.load(fixture("tldense--keras3-int8.tflite")) as lite:
        tensors = {f"model/{n}": t for n, t in keras.items()}  # d1/kernel as Keras names it
        tensors["optimizer/d1/kernel/m"] = Tensor.from_array(np.zeros((32, 64), np.float32),
                                                             {"role": "optimizer"})
        source = Store(tensors)
        from weightkit.diffing.engine import diff_stores
        result = diff_stores(source, dequantize(lite))
    pairs = {e.name_a: (e.name_b, e.status) for e in result.entries}
    assert pairs["model/d1/kernel"] == ("tldense_1/d1_1/MatMul", "changed")
    assert pairs["model/d3/bias"][0] == "tldense_1/d3_1/BiasAdd"
    assert result.summary["export"]["not_exported"] == ["optimizer/d1/kernel/m"]
    assert {e.status for e in result.entries} == {"changed"}


def test_two_tflite_models_of_different_quantization_say_how_to_compare_values() -> None:
    """A float32 .tflite against its int8 sibling (not an export pair): dtype changes whose
    rows compare stored integers with real values come with a note naming --dequantize."""
    result = run_cli("diff", fixture("tldense--keras3-f32.tflite"),
                     fixture("tldense--keras3-int8.tflite"))
    assert result.returncode == 1
    assert "note: 6 variable(s) are quantized on one side" in result.stdout
    assert "--dequantize compares their real values" in result.stdout
