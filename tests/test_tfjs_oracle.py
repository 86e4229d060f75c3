"""TF.js itself (in node, tests/js/oracle.js) and tf_keras as the oracles of the tfjs format:
TF.js loads what weightkit writes with the same weights bit for bit and runs it; the TF.js
converter's own output is what weightkit writes for a tf.keras model; tf_keras loads the full
`.h5` weightkit makes from a TF.js layers model and predicts what TF.js predicts."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import weightkit
from fixtures_lib import fixture, manifest, models, select
from weightkit.converters.quant import dequantize

JS = Path(__file__).resolve().parent / "js"
HAVE_TFJS = (JS / "node_modules" / "@tensorflow" / "tfjs").is_dir() and shutil.which("node")
needs_tfjs = pytest.mark.skipif(not HAVE_TFJS, reason="TF.js missing: npm ci --prefix tests/js "
                                                      "(make test does)")
TFJS = [e["path"] for e in select(format="tfjs")]
QUANTIZED = {e["path"] for e in select(format="tfjs") if e.get("quantization")}
NODE_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_,
               "complex64": np.complex64}


def tfjs(*args: str) -> dict:
    result = subprocess.run(["node", "oracle.js", *map(str, args)], cwd=JS, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def array(record: dict) -> np.ndarray:
    """A tensor as TF.js gave it."""
    if record["dtype"] == "string":
        values = np.empty(len(record["data"]), dtype=object)
        values[:] = [base64.b64decode(x) for x in record["data"]]
        return values.reshape(record["shape"])
    raw = base64.b64decode(record["data"])
    return np.frombuffer(raw, NODE_DTYPES[record["dtype"]]).reshape(record["shape"])


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == object or b.dtype == object:
        return a.shape == b.shape and a.reshape(-1).tolist() == b.reshape(-1).tolist()
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def input_for(case: str) -> dict:
    x, _ = models.sample_data(case, n=3)
    return {"shape": list(x.shape), "values": x.reshape(-1).tolist(),
            "dtype": "int32" if x.dtype.kind == "i" else "float32"}


# --- reading and writing back -------------------------------------------------------------------

@pytest.mark.parametrize("name", TFJS)
def test_write_back_gives_the_same_files(tmp_path: Path, name: str) -> None:
    with weightkit.load(fixture(name)) as store:
        weightkit.save(store, tmp_path / "out", "tfjs")
    assert files(tmp_path / "out") == files(fixture(name))


@needs_tfjs
@pytest.mark.parametrize("name", [n for n in TFJS if n not in QUANTIZED])
def test_tfjs_decodes_every_weight_as_weightkit_reads_it(name: str) -> None:
    decoded = tfjs("weights", fixture(name) / "model.json")
    with weightkit.load(fixture(name)) as store:
        assert list(store) == list(decoded)
        for key, record in decoded.items():
            assert same_bits(store[key].read(), array(record)), key


@pytest.mark.parametrize("name", sorted(QUANTIZED))
def test_quantized_weights_read_as_stored_with_their_parameters(name: str) -> None:
    doc = json.loads((fixture(name) / "model.json").read_text())
    entries = {w["name"]: w for g in doc["weightsManifest"] for w in g["weights"]}
    with weightkit.load(fixture(name)) as store:
        for key, tensor in store.items():
            q = entries[key]["quantization"]
            assert tensor.dtype_name == q["dtype"]
            assert tensor.meta["tfjs"] == {"dtype": entries[key]["dtype"], "quantization": q}
            expected = ({"scheme": "cast", "dtype": "float32"} if q["dtype"] == "float16" else
                        {"scheme": "min_scale", "scale": q["scale"], "min": q["min"],
                         "dtype": "float32"})
            assert tensor.meta["quantization"] == expected


# Quantized weights TF.js decodes with every rounding its decoder has: float32 from uint8 and
# uint16, int32 with halves of both signs (Math.round: toward +inf), values that wrap modulo
# 2^32, infinity (ToInt32: 0) and steps that are not exact in binary.
DEQUANTIZE_CASES = [  # name, dtype, quantized dtype, scale, min
    ("f_u8", "float32", "uint8", 0.1, -12.8),
    ("f_u16", "float32", "uint16", 3.0517578125e-05 / 3, -1.0),
    ("i_u8_halves", "int32", "uint8", 0.5, -64.5),
    ("i_u8_tenths", "int32", "uint8", 0.1, -12.85),
    ("i_u16_wraps", "int32", "uint16", 65537.0, 2147483000.0),
    ("i_u16_infinite", "int32", "uint16", 1e308, -1e308),
]


@needs_tfjs
@pytest.mark.parametrize("name", sorted(QUANTIZED) + ["hand-made"])
def test_dequantized_weights_are_what_tfjs_decodes(tmp_path: Path, name: str) -> None:
    """`--dequantize` gives, bit for bit, the tensors TF.js's own decoder (tfjs-core
    `decodeWeight`) loads: the converter's uint8 and float16 models, and hand-made int32 and
    float32 weights of every rounding case (int32 weights dequantize to int32, as TF.js loads
    them)."""
    if name == "hand-made":
        rng = np.random.default_rng(0)
        weights, data = [], b""
        for key, dtype, stored, scale, low in DEQUANTIZE_CASES:
            q = np.arange(256 if stored == "uint8" else 2048).astype(stored)
            if stored == "uint16":
                q = np.concatenate([q, rng.integers(0, 65536, 2048).astype(stored)])
            weights.append({"name": key, "shape": [int(q.size)], "dtype": dtype,
                            "quantization": {"dtype": stored, "scale": scale, "min": low}})
            data += q.astype(f"<{np.dtype(stored).str[1:]}").tobytes()
        path = tmp_path / "model"
        path.mkdir()
        (path / "group1-shard1of1.bin").write_bytes(data)
        (path / "model.json").write_text(json.dumps({
            "format": "graph-model", "generatedBy": "test", "convertedBy": None,
            "modelTopology": {"node": []},
            "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": weights}]}))
    else:
        path = fixture(name)
    decoded = tfjs("weights", path / "model.json")
    with weightkit.load(path) as store:
        plain = dequantize(store)
        assert list(plain) == list(decoded)
        for key, record in decoded.items():
            got = plain[key].read()
            assert plain[key].meta["dequantized"]["from"] == store[key].dtype_name
            assert same_bits(got, array(record)), key
            assert np.array_equal(np.concatenate(list(plain[key].iter_chunks(37))),
                                  got.reshape(-1)), key
    if name == "hand-made":
        ints = [array(decoded[k]) for k in ("i_u8_halves", "i_u16_wraps", "i_u16_infinite")]
        assert {-2, 2}.issubset(set(ints[0].tolist()))  # halves of both signs were rounded
        assert ints[1].min() < 0 < ints[1].max() and (ints[2] == 0).all()


def test_weights_spanning_shards_read_across_files() -> None:
    entry = manifest()["conv--tfjs-layers"]
    assert len([f for f in entry["files"] if f.endswith(".bin")]) == 3
    with weightkit.load(fixture(entry)) as store:
        kernel = store["c1/kernel"]  # bytes 32..464 of the group: all three files
        whole = kernel.read()
        assert np.array_equal(np.concatenate(list(kernel.iter_chunks(40))), whole.reshape(-1))
        assert np.array_equal(kernel[1:3], whole[1:3])
    variables = {v["name"]: v["sha256"] for v in entry["variables"]}
    with weightkit.load(fixture(entry)) as store:
        for name, tensor in store.items():
            assert models.value_digest(tensor.read()) == variables[f"{name}:0"], name


@needs_tfjs
def test_edited_layers_model_loads_in_tfjs_with_the_edited_weights(tmp_path: Path) -> None:
    with weightkit.load(fixture("conv--tfjs-layers")) as store:
        edited = weightkit.edit(store).scale("c1/kernel", 0.5).scale("out/*", 2.0)
        weightkit.save(edited, tmp_path / "edited", "tfjs")
        want = {name: edited[name].read() for name in edited}
    decoded = tfjs("weights", tmp_path / "edited" / "model.json")
    assert {k: same_bits(want[k], array(v)) for k, v in decoded.items()} == dict.fromkeys(want, True)
    # the same files and sizes: only bytes changed
    assert {k: len(v) for k, v in files(tmp_path / "edited").items()} == \
        {k: len(v) for k, v in files(fixture("conv--tfjs-layers")).items()}
    x = tmp_path / "x.json"
    x.write_text(json.dumps(input_for("conv")))
    assert tfjs("predict", tmp_path / "edited" / "model.json", x)["shape"] == [3, 3]


@needs_tfjs
def test_edited_graph_model_runs_in_tfjs_with_the_new_constants(tmp_path: Path) -> None:
    """Doubling the last MatMul's weights and bias doubles the output exactly."""
    x = tmp_path / "x.json"
    x.write_text(json.dumps(input_for("conv")))
    with weightkit.load(fixture("conv--tfjs-graph")) as store:
        weights = [n for n in store if "/out/" in n]
        edited = weightkit.edit(store).scale("*/out/*", 2.0)
        weightkit.save(edited, tmp_path / "edited", "tfjs")
    assert len(weights) == 2
    before = array(tfjs("predict", fixture("conv--tfjs-graph") / "model.json", x))
    after = array(tfjs("predict", tmp_path / "edited" / "model.json", x))
    assert same_bits(after, before * np.float32(2))


@needs_tfjs
def test_every_dtype_through_other_formats_loads_in_tfjs(tmp_path: Path) -> None:
    """A store from elsewhere: dtypes TF.js lacks are stored in forms it loads."""
    arrays = {"f16": np.array([1.5, -2.25], np.float16), "u8": np.array([0, 200, 255], np.uint8),
              "i8": np.array([-128, 5], np.int8), "bf": np.array([3.5], "bfloat16"),
              "i64": np.array([2**40 + 3], np.int64), "s": np.array([b"x", b""], object)}
    weightkit.save(weightkit.Store.from_arrays(arrays), tmp_path / "m", "tfjs")
    decoded = tfjs("weights", tmp_path / "m" / "model.json")
    assert array(decoded["f16"]).tolist() == [1.5, -2.25]
    assert array(decoded["u8"]).tolist() == [0, 200, 255]
    assert array(decoded["i8"]).tolist() == [-128, 5]
    assert array(decoded["bf"]).tolist() == [3.5]
    assert array(decoded["i64"]).reshape(-1).view(np.int64).tolist() == [2**40 + 3]
    assert array(decoded["s"]).tolist() == [b"x", b""]
    with weightkit.load(tmp_path / "m") as back:
        for name, value in arrays.items():
            assert same_bits(back[name].read(), value), name


# --- Keras <-> TF.js ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["conv--tfjs-layers", "lstm--tfjs-layers"])
def test_keras_h5_converts_as_the_tfjs_converter_does(tmp_path: Path, name: str) -> None:
    """The converter's model.json (topology, manifest order, names, shapes, dtypes) and weight
    bytes, from the same .h5; weightkit names itself as converter, and leaves the optimizer."""
    entry = manifest()[name]
    with weightkit.load(fixture(entry["source"])) as store:
        lost = " ".join(weightkit.losses(store, "tfjs"))
        assert "optimizer" in lost and "keras-h5 file structure" in lost
        with pytest.raises(weightkit.LossyConversionError):
            weightkit.save(store, tmp_path / "out", "tfjs")
        weightkit.save(store, tmp_path / "out", "tfjs", allow_lossy=True)
    ours = json.loads((tmp_path / "out" / "model.json").read_text())
    theirs = json.loads((fixture(name) / "model.json").read_text())
    assert ours["convertedBy"].startswith("weightkit ")
    for key in ("format", "generatedBy", "modelTopology"):
        assert ours[key] == theirs[key], key
    assert [g["weights"] for g in ours["weightsManifest"]] == \
        [g["weights"] for g in theirs["weightsManifest"]]

    def data(directory: Path, doc: dict) -> bytes:
        return b"".join((directory / p).read_bytes() for g in doc["weightsManifest"]
                        for p in g["paths"])
    assert data(tmp_path / "out", ours) == data(fixture(name), theirs)


TF_KERAS_PREDICT = r"""
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tf_keras
path, x_path = sys.argv[1:]
model = tf_keras.models.load_model(path, compile=False)
x = json.load(open(x_path))
inputs = np.asarray(x["values"], dtype=x["dtype"]).reshape(x["shape"])
y = model.predict(inputs, verbose=0)
weights = {w.name: w.numpy().tobytes().hex() for w in model.weights}
print(json.dumps({"y": y.astype("float32").tobytes().hex(), "shape": list(y.shape),
                  "weights": weights}))
"""


@pytest.mark.tensorflow
@needs_tfjs
@pytest.mark.parametrize("name,case", [("conv--tfjs-layers", "conv"),
                                       ("lstm--tfjs-layers", "lstm"),
                                       ("mlp--tfjs-saved", None)])
def test_tfjs_layers_model_to_tf_keras_h5_predicts_what_tfjs_predicts(
        tmp_path: Path, name: str, case: str | None) -> None:
    h5 = tmp_path / "model.h5"
    with weightkit.load(fixture(name)) as store:
        weightkit.save(store, h5, "keras-h5", allow_lossy=True)  # the tfjs file structure
        read = {n: store[n].read() for n in store}
    with weightkit.load(h5) as back:
        assert back.meta["keras_h5"]["layout"] == "model"
    x = tmp_path / "x.json"
    if case is None:
        values = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
        x.write_text(json.dumps({"shape": [3, 4], "values": values.reshape(-1).tolist(),
                                 "dtype": "float32"}))
    else:
        x.write_text(json.dumps(input_for(case)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", TF_KERAS_PREDICT, str(h5), str(x)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    keras = json.loads(result.stdout.strip().splitlines()[-1])
    # every weight tf_keras loaded is the TF.js weight of that name, bit for bit
    loaded = {k[:-2] if k.endswith(":0") else k: v for k, v in keras["weights"].items()}
    assert len(loaded) == len(read)
    for key, hexed in loaded.items():
        match = key if key in read else next(n for n in read if n.split("/")[-1] ==
                                             key.split("/")[-1] and n.split("/")[0] ==
                                             key.split("/")[0])
        assert bytes.fromhex(hexed) == np.ascontiguousarray(read[match]).tobytes(), key
    ours = np.frombuffer(bytes.fromhex(keras["y"]), np.float32).reshape(keras["shape"])
    theirs = array(tfjs("predict", fixture(name) / "model.json", x))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


# --- a graph model against its Keras source (wdiff SOURCE GRAPH_MODEL) -----------------------------

GRAPHS = [e["path"] for e in select(format="tfjs", layout="tfjs-converter-graph")]


def _export_diff(a: Path, b: Path) -> dict:
    report = weightkit.diff(a, b)
    assert report["summary"]["export"]["side"] == ("a" if a.suffix != ".h5" else "b")
    return report


@pytest.mark.parametrize("name", GRAPHS)
def test_graph_model_pairs_every_weight_with_its_keras_source(name: str) -> None:
    """Each constant of the converter's graph model is paired with the Keras variable it came
    from (named by the layer names the converter kept in the node names), every pair identical
    but for the float32 rounding of a folded BatchNormalization, whose variables are `folded`;
    shape constants are structural. Either order."""
    entry = manifest()[name]
    source = fixture(entry["source"])
    report = _export_diff(source, fixture(name))
    assert report["summary"]["identical"], [e for e in report["variables"]
                                            if e["status"] not in ("same", "folded")]
    by_a = {e["name_a"]: e for e in report["variables"]}
    weights = sorted(by_a)  # tf_keras' names leave the nested model out: the ends are the same
    assert sorted(n for n in weights) == sorted(
        next(n for n in weights if n.endswith(v["name"].removesuffix(":0")))
        for v in entry["variables"])
    assert all(e["matched_by"] == "export" for e in report["variables"])
    for weight, e in by_a.items():  # the converter kept the layer's name in the node's
        layer = weight.rsplit("/", 1)[0].split("/")[-1]
        if e["status"] != "folded":  # (a folded layer names the constant it went into)
            assert f"/{layer}/" in e["name_b"], (weight, e["name_b"])
    folded = {n for n, e in by_a.items() if e["status"] == "folded"}
    assert folded == {n for n in weights if n.split("/")[-2] in ("bn", "enc_bn")
                      and n.rsplit("/", 1)[1] in (("gamma", "beta", "moving_mean",
                                                   "moving_variance") if "conv" in name else
                                                  ("moving_mean", "moving_variance"))}
    backward = _export_diff(fixture(name), source)
    assert {(e["name_b"], e["name_a"], e["status"]) for e in backward["variables"]} == \
        {(e["name_a"], e["name_b"], e["status"]) for e in report["variables"]}


def test_batchnorm_kept_as_scale_and_offset_constants_is_shown_as_folded() -> None:
    """After a Dense layer the converter keeps a BatchNormalization as `bn/batchnorm/mul` =
    gamma / √(variance + ε) and `bn/batchnorm/sub` = beta − mean·mul: gamma and beta are
    compared with those, the moving statistics are `folded` into them."""
    report = _export_diff(fixture("nested--tfkeras-trained-full.h5"),
                          fixture("nested--tfjs-graph"))
    by_a = {e["name_a"]: e for e in report["variables"]}
    for layer, prefix in (("encoder/enc_bn", "encoder/enc_bn"), ("bn", "bn")):
        scale = f"StatefulPartitionedCall/nested/{prefix}/batchnorm/mul"
        offset = f"StatefulPartitionedCall/nested/{prefix}/batchnorm/sub"
        assert (by_a[f"{layer}/gamma"]["name_b"], by_a[f"{layer}/gamma"]["status"]) == \
            (scale, "same")
        assert (by_a[f"{layer}/beta"]["name_b"], by_a[f"{layer}/beta"]["status"]) == \
            (offset, "same")
        assert "ε=0.001" in by_a[f"{layer}/gamma"]["transform"]
        assert (by_a[f"{layer}/moving_variance"]["status"],
                by_a[f"{layer}/moving_variance"]["name_b"]) == ("folded", scale)
        assert (by_a[f"{layer}/moving_mean"]["status"],
                by_a[f"{layer}/moving_mean"]["name_b"]) == ("folded", offset)


@needs_tfjs
def test_graph_model_drift_is_what_numpy_finds_on_tfjs_weights(tmp_path: Path) -> None:
    """A graph model whose BatchNormalization scale, Dense kernel and folded convolution were
    changed: wdiff reports, per pair, the max |a − b| numpy finds between the weights TF.js
    decodes and the Keras values (folded with ε = 0.001 where the converter folded)."""
    with weightkit.load(fixture("nested--tfjs-graph")) as store:
        edited = weightkit.edit(store).scale("*/bn/batchnorm/mul", 1.01) \
            .scale("*/d1/MatMul/ReadVariableOp", 0.5)
        weightkit.save(edited, tmp_path / "nested", "tfjs")
    with weightkit.load(fixture("conv--tfjs-graph")) as store:
        weightkit.save(weightkit.edit(store).scale("*/c1/Conv2D_weights", 0.9),
                       tmp_path / "conv", "tfjs")
    nested = tfjs("weights", tmp_path / "nested" / "model.json")
    conv = tfjs("weights", tmp_path / "conv" / "model.json")
    with weightkit.load(fixture("nested--tfkeras-trained-full.h5")) as keras:
        k = {n: keras[n].read().astype(np.float64) for n in keras}
    with weightkit.load(fixture("conv--tfkeras-before-full.h5")) as keras:
        c = {n: keras[n].read().astype(np.float64) for n in keras}
    s_bn = k["bn/gamma"] / np.sqrt(k["bn/moving_variance"] + 1e-3)
    s_conv = c["bn/gamma"] / np.sqrt(c["bn/moving_variance"] + 1e-3)
    want = {
        "bn/gamma": (nested, "StatefulPartitionedCall/nested/bn/batchnorm/mul", s_bn),
        "d1/kernel": (nested, "StatefulPartitionedCall/nested/d1/MatMul/ReadVariableOp",
                      k["d1/kernel"]),
        "c1/kernel": (conv, "StatefulPartitionedCall/conv/c1/Conv2D_weights",
                      c["c1/kernel"] * s_conv),
    }
    reports = {"nested": _export_diff(fixture("nested--tfkeras-trained-full.h5"),
                                      tmp_path / "nested"),
               "conv": _export_diff(fixture("conv--tfkeras-before-full.h5"), tmp_path / "conv")}
    for weight, (decoded, exported, expected) in want.items():
        report = reports["conv" if decoded is conv else "nested"]
        e = {x["name_a"]: x for x in report["variables"]}[weight]
        assert (e["name_b"], e["status"]) == (exported, "changed")
        have = array(decoded[exported]).astype(np.float64)
        assert e["max_abs_diff"] == pytest.approx(np.abs(expected - have).max(), rel=1e-6)
    untouched = {x["name_a"]: x["status"] for x in reports["nested"]["variables"]}
    assert untouched["head/kernel"] == "same" and untouched["bn/beta"] == "same"
