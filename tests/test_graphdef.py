"""The tf-graphdef format (frozen GraphDef constants): conformance, TensorFlow's own reading of
every Const encoding, write-back TensorFlow imports and runs, hostile protobufs."""
from __future__ import annotations

from conformance import FormatConformance


class TestGraphDefConformance(FormatConformance):
    format = "tf-graphdef"
    suffix = ".pb"
    extra_dtypes = ("string", "complex64", "complex128", "float64", "int32", "uint8", "int16",
                    "uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2", "int4", "uint4")
    carries_metadata = False


# --- the committed fixtures (written by TensorFlow, read without it) ------------------------------

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import weightkit  # noqa: E402
from fixtures_lib import fixture, models, select  # noqa: E402

FROZEN = select(format="tf-graphdef")


@pytest.mark.parametrize("entry", FROZEN, ids=lambda e: e["path"])
def test_constants_read_as_tensorflow_reads_them(entry: dict) -> None:
    """Every encoding TensorFlow wrote (tensor_content, broadcast float_val, half_val for
    float16 and bfloat16, string_val, bool_val, scomplex_val, int8 in int_val) gives the values
    tf.make_ndarray gave when the fixture was made."""
    with weightkit.load(fixture(entry)) as store:
        got = [(name, list(t.shape), t.dtype_name, models.value_digest(t.read()))
               for name, t in store.items()]
    names = {"half": "float16"}  # TensorFlow's name for float16
    want = [(c["name"], c["shape"], names.get(c["dtype"], c["dtype"]), c["sha256"])
            for c in entry["graph_constants"]]
    assert got == want


def test_the_fixtures_cover_every_encoding() -> None:
    with weightkit.load(fixture("consts--tf-frozen.pb")) as store:
        fields = {store[n].meta["tf_graphdef"]["field"] for n in store}
        assert store["broadcast"].meta["tf_graphdef"] == {"field": "float_val", "values": 1,
                                                          "packed": True}
    assert {"tensor_content", "float_val", "half_val", "string_val", "bool_val",
            "scomplex_val"} <= fields


@pytest.mark.parametrize("entry", FROZEN, ids=lambda e: e["path"])
def test_write_back_gives_the_same_bytes(tmp_path: Path, entry: dict) -> None:
    with weightkit.load(fixture(entry)) as store:
        weightkit.save(store, tmp_path / "out.pb")
        via = tmp_path / "via.safetensors"
        weightkit.save(store, via)
    assert (tmp_path / "out.pb").read_bytes() == fixture(entry).read_bytes()
    with weightkit.load(via) as carried:
        weightkit.save(carried, tmp_path / "back.pb", "tf-graphdef")
    assert (tmp_path / "back.pb").read_bytes() == fixture(entry).read_bytes()


def test_a_template_graph_wins_over_the_stores_own(tmp_path: Path) -> None:
    """format.py's rule: with --like, the structure written is the template's (here the same
    constants in a graph with one more node), the values the store's."""
    original = fixture("conv--tf-frozen.pb").read_bytes()
    extra = b"\x0a\x13\x0a\x0bextra_no_op\x12\x04NoOp"  # GraphDef.node: NodeDef(name, op)
    template = tmp_path / "template.pb"
    template.write_bytes(original + extra)
    name = "conv/out/MatMul/ReadVariableOp/resource"
    with weightkit.load(fixture("conv--tf-frozen.pb")) as store, weightkit.load(template) as like:
        weightkit.save(weightkit.edit(store).scale(name, 2.0), tmp_path / "out.pb", like=like)
        want = store[name].read() * 2
    written = (tmp_path / "out.pb").read_bytes()
    assert written.endswith(extra)
    with weightkit.load(tmp_path / "out.pb") as back:
        assert np.array_equal(back[name].read(), want)


def test_a_saved_model_pb_points_to_the_saved_model_format(tmp_path: Path) -> None:
    path = fixture("mlp--tfkeras-savedmodel") / "saved_model.pb"
    with pytest.raises(weightkit.UnknownFormatError, match="saved-model"):
        weightkit.load(path)


def test_constants_keep_their_dtype_and_shape(tmp_path: Path) -> None:
    with weightkit.load(fixture("conv--tf-frozen.pb")) as store:
        name = "conv/out/MatMul/ReadVariableOp/resource"
        with pytest.raises(weightkit.UsageError, match="float32 constant of shape"):
            weightkit.save(weightkit.edit(store).cast(name, "float16"), tmp_path / "x.pb")
        with pytest.raises(weightkit.UsageError, match="cannot drop"):
            weightkit.save(weightkit.edit(store).drop(name), tmp_path / "x.pb")
    assert not (tmp_path / "x.pb").exists()


TF_RUN = r"""
import json, sys
import numpy as np
import tensorflow as tf
jobs = json.loads(sys.argv[1])
out = {}
for job in jobs:
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(open(job["path"], "rb").read())
    consts = {n.name: tf.make_ndarray(n.attr["value"].tensor) for n in graph_def.node
              if n.op == "Const"}
    result = {"consts": {k: [str(v.dtype), list(v.shape),
                             v.reshape(-1).tolist() if v.dtype == object else v.tobytes().hex()]
                         for k, v in consts.items()}}
    if job.get("run"):
        graph = tf.Graph()
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
        x = np.asarray(job["run"]["x"], np.float32).reshape(job["run"]["shape"])
        with tf.compat.v1.Session(graph=graph) as sess:
            y = sess.run(job["run"]["output"], {job["run"]["input"]: x})
        result["y"] = np.asarray(y, np.float32).tobytes().hex()
    out[job["path"]] = result
print(json.dumps(out, default=lambda b: b.decode("latin-1")))
"""


def tensorflow(jobs: list[dict]) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", TF_RUN, json.dumps(jobs)], capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.tensorflow
def test_tensorflow_imports_and_runs_the_written_graphs(tmp_path: Path) -> None:
    """TensorFlow imports every graph weightkit writes and reads each constant as weightkit
    wrote it: an edited frozen Keras model (its last Dense doubled: the output doubles exactly),
    edited constants of every encoding (a broadcast made non-uniform becomes tensor_content),
    and a graph of Const nodes made from another format."""
    x, _ = models.sample_data("conv", n=2)
    run = {"x": x.reshape(-1).tolist(), "shape": list(x.shape), "input": "x:0",
           "output": "Identity:0"}
    with weightkit.load(fixture("conv--tf-frozen.pb")) as store:
        edited = weightkit.edit(store).scale("conv/out/*", 2.0)
        weightkit.save(edited, tmp_path / "conv.pb")
    with weightkit.load(fixture("consts--tf-frozen.pb")) as store:
        new = {"broadcast": np.array([1, 2, 3, 4], np.float32),
               "half": np.array(-0.25, np.float16), "words": np.array([b"x", b"", b"\xff"], object),
               "flags": np.array([False, False, True]), "small": np.array([127, -128], np.int8)}
        weightkit.save(_replaced(store, new), tmp_path / "consts.pb")
    arrays = {"a/float32": np.arange(6, dtype=np.float32).reshape(2, 3),
              "b.bf16": np.array([1.5, -2], "bfloat16"), "c_i64": np.array([2**40], np.int64),
              "d": np.array([b"s", b"t"], object), "e": np.array(True), "f": np.zeros((0, 2))}
    weightkit.save(weightkit.Store.from_arrays(arrays), tmp_path / "new.pb", "tf-graphdef")
    jobs = [{"path": str(fixture("conv--tf-frozen.pb")), "run": run},
            {"path": str(tmp_path / "conv.pb"), "run": run},
            {"path": str(tmp_path / "consts.pb")}, {"path": str(tmp_path / "new.pb")}]
    result = tensorflow(jobs)
    before = np.frombuffer(bytes.fromhex(result[jobs[0]["path"]]["y"]), np.float32)
    after = np.frombuffer(bytes.fromhex(result[jobs[1]["path"]]["y"]), np.float32)
    assert after.tobytes() == (before * np.float32(2)).tobytes()
    consts = result[jobs[2]["path"]]["consts"]
    for name, value in new.items():
        dtype, shape, data = consts[name]
        assert shape == list(value.shape), name
        if value.dtype == object:
            assert [v.encode("latin-1") if isinstance(v, str) else v for v in data] == \
                value.tolist(), name
        else:
            assert bytes.fromhex(data) == value.tobytes(), name
    made = result[jobs[3]["path"]]["consts"]
    assert set(made) == set(arrays)
    for name, value in arrays.items():
        dtype, shape, data = made[name]
        assert shape == list(value.shape), name
        if value.dtype != object:
            assert bytes.fromhex(data) == value.tobytes(), name


def _replaced(store: weightkit.Store, values: dict) -> weightkit.Store:
    """The store with some tensors' values replaced (meta kept, as `edit --set` does)."""
    tensors = {name: (weightkit.Tensor.from_array(values[name], store[name].meta)
                      if name in values else t) for name, t in store.items()}
    return store.replace(tensors)


def test_a_constant_far_larger_than_the_graph_is_written_back(tmp_path: Path) -> None:
    """The graph without its values (the skeleton) is never expanded, so the shape-bomb budget
    of reading (1024 times the file) does not apply to it: a 2.4 MB constant in a graph of a
    few bytes is edited and written back."""
    big = np.ones(600_000, np.float32)
    weightkit.save(weightkit.Store.from_arrays({"k": big}), tmp_path / "big.pb", "tf-graphdef")
    with weightkit.load(tmp_path / "big.pb") as store:
        weightkit.save(weightkit.edit(store).scale("k", 2.0), tmp_path / "edited.pb")
    with weightkit.load(tmp_path / "edited.pb") as back:
        assert back["k"].read().tobytes() == (big * 2).tobytes()


def test_a_broadcast_constant_is_expanded_a_block_at_a_time(tmp_path) -> None:
    """One float_val broadcast to 1 GiB in a 1 MiB file (inside the 1024:1 budget): show and
    convert expand it a block of rows at a time (before: the whole tensor for every block,
    2.1 GiB and 19 s for show)."""
    from hostile_runner import ForkServer, cli_request
    from make_crafted import _field, const_node
    path = tmp_path / "broadcast.pb"
    path.write_bytes(const_node("k", 1, (1 << 14, 1 << 14), typed=_field(5, b"\0\0\xc0\x3f"),
                                extra=_field(1000, bytes(1 << 20))))
    runs = {"show": ["show", "--json", str(path)],
            "convert": ["convert", str(path), str(tmp_path / "k.safetensors")]}
    with ForkServer() as server:
        results = server.batch([cli_request(argv, tmp_path, timeout=60)
                                for argv in runs.values()])
    for name, result in zip(runs, results):
        assert result.code == 0, (name, result.stderr)
        assert result.maxrss_mib < 600, (name, result.maxrss_mib)
    row = json.loads(results[0].stdout)["variables"][0]
    assert row["min"] == row["max"] == 1.5 and row["parameters"] == 1 << 28
