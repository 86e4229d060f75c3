"""TF checkpoints (TensorBundle) read and written without TensorFlow; TensorFlow is the oracle.

The TensorFlow-written cases come from `tf_cases.py`, run in subprocesses once per session.
"""
from __future__ import annotations

import filecmp
import hashlib
import io
import json
import os
import shutil
import struct
import sys
from collections import Counter
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import weightkit
from conformance import FormatConformance
from conftest import run_cli
from tf_cases import make_cases, run as tf_run
from weightkit.converters import checkpoint, object_graph as og, protowire as pw, sstable
from weightkit.converters.carry import b64
from weightkit.converters.errors import CorruptFileError, UnsafeFileError, UsageError, WeightsError, \
    WeightsNote
from weightkit.converters.names import select
from weightkit.converters.store import Store, Tensor

CKPT = "tf-checkpoint"


def digest(array) -> str:
    array = np.asarray(array)
    if array.dtype == object:
        return hashlib.sha256(b"\x00".join(bytes(v) for v in array.reshape(-1))).hexdigest()
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def files_of(prefix: str) -> list[str]:
    d, base = os.path.split(prefix)
    return sorted(n[len(base):] for n in os.listdir(d)
                  if n.startswith(base + ".") and not n.endswith(".meta"))


def assert_same_files(a: str, b: str) -> None:
    assert files_of(a) == files_of(b)
    for suffix in files_of(a):
        assert filecmp.cmp(a + suffix, b + suffix, shallow=False), suffix


def copy_checkpoint(prefix: str, directory: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    for suffix in files_of(prefix):
        shutil.copy(prefix + suffix, directory / (os.path.basename(prefix) + suffix))
    return str(directory / os.path.basename(prefix))


# --- TensorFlow-written cases -------------------------------------------------------------------

GROUPS = {  # one process per framework: Keras 3 and tf_keras do not mix
    "tf": ["dtypes", "tf1-partitioned", "sharded", "variant"],
    "keras3": ["keras3-ckpt", "keras3-ckpt-noopt", "keras3-wide-ckpt", "keras3-heads-ckpt",
               "keras3-heads-net-ckpt"],
    "tf_keras": ["tfkeras-ckpt", "tfkeras-lstm-ckpt", "tfkeras-wide-ckpt"],
}
CHECKPOINT_CASES = ["dtypes", "tf1-partitioned", "sharded", "variant", "keras3-ckpt",
                    "keras3-ckpt-noopt", "tfkeras-ckpt", "tfkeras-lstm-ckpt", "keras3-wide-ckpt",
                    "tfkeras-wide-ckpt", "keras3-heads-ckpt"]


@pytest.fixture(scope="session")
def tf_made(tmp_path_factory) -> dict[str, str]:
    """{case: path} of every case, written by TensorFlow (three processes in parallel)."""
    return make_cases(tmp_path_factory.mktemp("tf_made"), GROUPS)


def tf_dump(paths: list[str]) -> list[dict]:
    return tf_run([["dump", p] for p in paths])


def keys_of(name: str, tensor: Tensor) -> list[str]:
    """The checkpoint keys a variable is stored under (none recorded: its name)."""
    return tensor.meta.get("tf_checkpoint", {}).get("keys", [name])


def our_dump(path: str, fmt: str = CKPT) -> dict:
    """{key: sha256} of every checkpoint key as weightkit reads it."""
    out = {}
    with weightkit.load(path, fmt) as store:
        for name, tensor in store.items():
            value = tensor.read()
            for key in keys_of(name, tensor):
                out[key] = digest(value)
    return out


@pytest.mark.tensorflow
def test_tensorflow_reads_what_we_read(tf_made):
    paths = [tf_made[c] for c in CHECKPOINT_CASES]
    for case, path, theirs in zip(CHECKPOINT_CASES, paths, tf_dump(paths)):
        ours = our_dump(path)
        theirs.pop(og.GRAPH_KEY, None)
        variants = {k for k, v in theirs.items() if v[0] == "variant"}
        assert set(ours) == set(theirs), case
        assert {k: v for k, v in ours.items() if k not in variants} == \
            {k: v[2] for k, v in theirs.items() if k not in variants}, case


@pytest.mark.tensorflow
def test_variant_tensors_are_kept_opaque(tf_made, tmp_path):
    """A dataset iterator's state (a variant tensor) survives a trip through safetensors, and
    TensorFlow resumes the iterator from what we wrote."""
    with weightkit.load(tf_made["variant"], CKPT) as store:
        (state,) = [t for t in store.values() if t.meta["tf_checkpoint"].get("dtype") == 21]
        assert state.dtype == np.uint8 and state.meta["tf_checkpoint"]["shape"]
        weightkit.save(store, tmp_path / "v.safetensors")
    with weightkit.load(tmp_path / "v.safetensors", "safetensors") as carried:
        weightkit.save(carried, tmp_path / "back", CKPT)
    assert tf_run([["next", str(tmp_path / "back")]]) == [[3, 4, 5]]


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_unchanged_rewrite_is_byte_identical(tf_made, case, tmp_path):
    path = tf_made[case]
    with weightkit.load(path, CKPT) as store:
        weightkit.save(store, tmp_path / "out", CKPT)
    assert_same_files(path, str(tmp_path / "out"))


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_through_safetensors_is_byte_identical(tf_made, case, tmp_path):
    path = tf_made[case]
    with weightkit.load(path, CKPT) as store:
        weightkit.save(store, tmp_path / "x.safetensors")
    with weightkit.load(tmp_path / "x.safetensors", "safetensors") as store:
        weightkit.save(store, tmp_path / "back", CKPT)
    assert_same_files(path, str(tmp_path / "back"))


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", ["keras3-wide-ckpt", "tfkeras-wide-ckpt"])
def test_variables_listed_in_creation_order(tf_made, case):
    """Twelve layers: the store lists weights and optimizer variables in the order the framework
    created them (`dense_2` before `dense_10`), not in key order; variables the framework does
    not list (save_counter, a tf_keras learning rate) come after."""
    path = tf_made[case]
    want = json.loads((Path(path).parent / "creation_order.json").read_text())
    with weightkit.load(path, CKPT) as store:
        names = list(store)
    assert [n for n in names if n in want] == want
    assert names[:len(want)] == want


@pytest.mark.tensorflow
def test_dtypes_strings_and_bfloat16(tf_made):
    with weightkit.load(tf_made["dtypes"], CKPT) as store:
        assert store["bf16"].dtype == np.dtype(ml_dtypes.bfloat16)
        assert store["i4"].read().tolist() == [-8, -1, 0, 7]
        assert store["words"].read().tolist() == [[b"alpha", b""], [b"\x00\xff", "é".encode()]]
        assert store["word"].read()[()] == b"scalar string"
        assert store["empty"].shape == (0, 3) and store["scalar"].read()[()] == 2.5
        assert store["u64"].read().tolist() == [0, 2**64 - 1]


@pytest.mark.tensorflow
def test_names_and_roles(tf_made):
    with weightkit.load(tf_made["keras3-ckpt"], CKPT) as store:
        kernel = store["c1/kernel"]
        assert kernel.meta["key"] == "optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE"
        assert kernel.role == "weight" and store["bn/moving_mean"].role == "weight"
        assert store["adam/c1_kernel_momentum"].role == "optimizer"
        assert store["adam/iteration"].role == store["save_counter"].role == "counter"
    with weightkit.load(tf_made["tfkeras-ckpt"], CKPT) as store:
        assert store["c1/kernel"].meta["key"] == "layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"
        slots = [t for t in store.values() if "/_variables/" in t.meta["key"]]
        assert len(slots) == 12 and {t.role for t in slots} == {"optimizer"}
        assert store["iteration"].role == "counter"
    with weightkit.load(tf_made["tf1-partitioned"], CKPT) as store:
        assert store["part"].shape == (10, 3)
        assert len(store.meta["tf_checkpoint"]["slices"]["part"]["extents"]) == 3
        roles = {name: store[name].role for name in store}
        assert roles["part/Adam_1"] == roles["beta1_power"] == "optimizer"
        assert roles["global_step"] == "counter" and roles["dense/kernel"] == "weight"
    with weightkit.load(tf_made["sharded"], CKPT) as store:
        assert store.meta["tf_checkpoint"]["header"]
        assert len(store.meta["tf_checkpoint"]["shards"]) > 1


def test_trainable_weights_are_selected_by_their_path_through_the_model(fixtures_dir):
    """`Checkpoint(model=, optimizer=)` of Keras 3: TensorFlow keys each variable by its
    shortest object path, and the optimizer lists the trainable ones, so the model's kernels
    are keyed `optimizer/_trainable_variables/N`. `model/*` selects the model's variables by
    their path through the model; names stay Keras' paths."""
    prefix = str(fixtures_dir / "mlp--keras3.ckpt")
    with weightkit.load(prefix) as store:
        assert store["d1/kernel"].meta["key"].startswith("optimizer/_trainable_variables/0/")
        assert select(store, include=["model/*"]) == \
            ["d1/kernel", "d1/bias", "d2/kernel", "d2/bias"]
        assert store.resolve("model/_operations/1/_kernel") == "d1/kernel"
    done = run_cli("show", prefix, "--include", "model/*", "--no-stats")
    assert done.returncode == 0, done.stderr
    assert "4 variables" in done.stdout and "adam/" not in done.stdout


@pytest.mark.tensorflow
def test_colliding_paths_fall_back_to_the_path_through_the_model(tf_made, tmp_path):
    """Two nested models' `head/kernel` (one Keras 3 path): each is named by its path through
    the model, not by its key under the optimizer; their slots keep the optimizer's keys; an
    unchanged rewrite leaves the object graph as it was (the other cases of CHECKPOINT_CASES)."""
    with weightkit.load(tf_made["keras3-heads-ckpt"], CKPT) as store:
        heads = [n for n, t in store.items() if t.meta["tf_checkpoint"].get("full_name")
                 == "head/kernel"]
        assert heads == ["model/_operations/1/_operations/2/_kernel",
                         "model/_operations/2/_operations/2/_kernel"]
        assert all(store[n].meta["key"].startswith("optimizer/_trainable_variables/")
                   for n in heads)
        slots = [n for n, t in store.items() if t.meta["tf_checkpoint"].get("full_name")
                 == "adam/head_kernel_momentum"]
        assert len(slots) == 2 and all(n.startswith("optimizer/_variables/") for n in slots)
        assert not [n for n in store if n.startswith("optimizer/_trainable_variables/")]
        chosen = select(store, include=["model/*"])
        assert len(chosen) == 10 and not [n for n in chosen if store[n].role != "weight"]


@pytest.mark.tensorflow
def test_optimizer_state_is_told_by_the_graph_whatever_it_is_called(tf_made):
    """`Checkpoint(net=model, opt=optimizer)`: the optimizer's variables are keyed `opt/...`,
    not `optimizer/...`; the graph reaches them only through the optimizer (also tracked as
    `net/optimizer`), so they are optimizer state, and `--weights-only` keeps the model's."""
    with weightkit.load(tf_made["keras3-heads-net-ckpt"], CKPT) as store:
        roles = Counter(t.role for t in store.values())
        assert roles == {"weight": 10, "optimizer": 21, "counter": 2}, roles
        assert store["adam/learning_rate"].meta["key"].startswith("opt/")
        assert store["adam/learning_rate"].role == "optimizer"
        assert store["adam/a_d_kernel_momentum"].role == "optimizer"
        weights = select(store, roles="weights")
        assert len(weights) == 10 and select(store, include=["net/*"]) == weights

@pytest.mark.tensorflow
def test_edited_values_are_what_tensorflow_reads(tf_made, tmp_path):
    """Every dtype and the partitioned and sharded layouts, edited, read back by TensorFlow."""
    outputs = []
    expected = []
    for case in ("dtypes", "tf1-partitioned", "sharded"):
        with weightkit.load(tf_made[case], CKPT) as store:
            edited = {}
            for name, tensor in store.items():
                value = tensor.read()
                if value.dtype == object:
                    value = np.vectorize(lambda b: b + b"!", otypes=[object])(value) \
                        if value.size else value
                elif value.dtype == np.bool_:
                    value = ~value
                elif value.size:
                    value = value.copy()
                    value.reshape(-1)[0] = value.reshape(-1)[-1]
                    value = np.flip(value)
                edited[name] = Tensor.from_array(value, tensor.meta)
            out = str(tmp_path / case / "ckpt")
            os.makedirs(os.path.dirname(out))
            weightkit.save(store.replace(edited), out, CKPT)
            outputs.append(out)
            expected.append({k: digest(edited[n].read()) for n in edited
                             for k in keys_of(n, edited[n])})
    for want, theirs in zip(expected, tf_dump(outputs)):
        theirs.pop(og.GRAPH_KEY, None)
        assert {k: v[2] for k, v in theirs.items()} == want


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", ["keras3-ckpt", "keras3-ckpt-noopt", "tfkeras-ckpt",
                                  "tfkeras-lstm-ckpt"])
def test_model_restores_our_checkpoint_and_trains(tf_made, case, tmp_path):
    """Double every weight (and through safetensors); the model restores it with
    assert_consumed(), holds exactly our values, and trains on."""
    with weightkit.load(tf_made[case], CKPT) as store:
        doubled = {n: Tensor.from_array(t.read() * 2 if t.role == "weight" else t.read(), t.meta)
                   for n, t in store.items()}
        want = {n: digest(t.read()) for n, t in doubled.items()}
        weights = {n for n, t in store.items() if t.role == "weight"}
        weightkit.save(store.replace(doubled), tmp_path / "mid.safetensors")
    with weightkit.load(tmp_path / "mid.safetensors", "safetensors") as mid:
        weightkit.save(mid, tmp_path / "out", CKPT)
    (restored,) = tf_run([["restore", case, str(tmp_path / "out")]])
    assert_restored(restored, want, weights)


def assert_restored(restored: dict, want: dict, weights: set) -> None:
    """Every variable the model restored holds one of our values, and every weight of ours is
    among them (framework names differ from canonical ones, so values are matched)."""
    ours = Counter(want.values())
    got = Counter(restored.values())
    assert not got - ours, "the model holds values we did not write"
    assert not Counter(want[n] for n in weights) - got, "some of our weights were not restored"


@pytest.mark.tensorflow
def test_template_rebuilds_the_object_graph(tf_made, tmp_path):
    """A store from elsewhere (plain arrays, canonical names) written `like=` a checkpoint is
    restored by the model with assert_consumed()."""
    case = "tfkeras-ckpt"
    with weightkit.load(tf_made[case], CKPT) as template:
        plain = Store.from_arrays({n: t.read() + (1 if t.role == "weight" else 0)
                                   for n, t in template.items()})
        want = {n: digest(plain[n].read()) for n in plain}
        weightkit.save(plain, tmp_path / "out", CKPT, like=template)
        with pytest.raises(UsageError, match="template does not fit"):
            weightkit.save(Store.from_arrays({"other": np.zeros(2)}), tmp_path / "bad", CKPT,
                           like=template)
        weights = {n for n, t in template.items() if t.role == "weight"}
    (restored,) = tf_run([["restore", case, str(tmp_path / "out")]])
    assert_restored(restored, want, weights)


@pytest.mark.tensorflow
def test_h5_to_checkpoint_like_template_restores(tmp_path):
    """tf_keras .h5 -> checkpoint with the tf_keras checkpoint as template: the model restores it
    with assert_consumed() and holds the .h5's weights (the learning rate the .h5 lacks is the
    template's)."""
    from fixtures_lib import fixture
    h5, template = fixture("mlp--tfkeras-full.h5"), fixture("mlp--tfkeras.ckpt")
    with weightkit.load(h5) as store, weightkit.load(template) as like:
        edited = store.replace({n: Tensor.from_array(t.read() * 3 if t.role == "weight"
                                                     else t.read(), t.meta)
                                for n, t in store.items()})
        want = {n: digest(t.read()) for n, t in edited.items()}
        want["learning_rate"] = digest(like["learning_rate"].read())
        weights = {n for n, t in store.items() if t.role == "weight"}
        weightkit.save(edited, tmp_path / "out", CKPT, like=like)
    (restored,) = tf_run([["restore", "tfkeras-mlp-ckpt", str(tmp_path / "out")]])
    assert_restored(restored, want, weights)


# --- without TensorFlow --------------------------------------------------------------------------

def test_name_based_checkpoint_round_trip(tmp_path):
    arrays = {"dense/kernel": np.arange(6, dtype=np.float32).reshape(2, 3),
              "dense/bias": np.zeros(3, ml_dtypes.bfloat16),
              "words": np.array([b"a", b"", b"\xff"], dtype=object),
              "global_step": np.int64(7)}
    weightkit.save(Store.from_arrays(arrays), tmp_path / "m.ckpt", CKPT)
    assert sorted(os.listdir(tmp_path)) == ["m.ckpt.data-00000-of-00001", "m.ckpt.index"]
    for given in ("m.ckpt", "m.ckpt.index", "m.ckpt.data-00000-of-00001"):
        with weightkit.load(tmp_path / given) as store:
            assert store.format == CKPT and sorted(store) == sorted(arrays)
            for name, value in arrays.items():
                assert digest(store[name].read()) == digest(value)
            assert store["global_step"].role == "counter"


def test_directory_with_state_file(tmp_path):
    weightkit.save(Store.from_arrays({"w": np.ones(2, np.float32)}), tmp_path / "ckpt-3", CKPT)
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "ckpt-3"\n'
                                         'all_model_checkpoint_paths: "ckpt-3"\n')
    with weightkit.load(tmp_path) as store:
        assert store.format == CKPT and list(store) == ["w"]
    # a path leading out is never followed: the directory's only checkpoint is read, with a note
    for outside in ("../elsewhere/ckpt", "/etc/ckpt"):
        (tmp_path / "checkpoint").write_text(f'model_checkpoint_path: "{outside}"\n')
        with pytest.warns(WeightsNote, match="outside the directory"):
            with weightkit.load(tmp_path) as store:
                assert list(store) == ["w"]
    weightkit.save(Store.from_arrays({"v": np.ones(2, np.float32)}), tmp_path / "ckpt-4", CKPT)
    with pytest.raises(CorruptFileError, match="holds 2 checkpoints"):
        weightkit.load(tmp_path)


def test_table_round_trip_over_many_blocks():
    items = sorted((f"key/{i:06d}/{'x' * (i % 50)}".encode(), os.urandom(i % 300))
                   for i in range(5000))
    out = io.BytesIO()
    sstable.write_table(out, items)
    assert sstable.read_table(out.getvalue()) == items
    assert len(out.getvalue()) > 3 * sstable.BLOCK_SIZE


def test_snappy_blocks_are_read():
    # "abcd" literal, then a 1-byte-offset copy of length 8 at offset 4: "abcdabcdabcd"
    compressed = bytes([12, 3 << 2]) + b"abcd" + bytes([1 | (8 - 4) << 2, 4])
    assert sstable.snappy_decompress(compressed) == b"abcd" * 3
    block = sstable._BlockBuilder(16)
    block.add(b"k", b"value")
    contents = block.finish()
    literal = sstable.put_varint(len(contents)) + bytes([(len(contents) - 1) << 2]) + contents
    trailer = b"\x01" + struct.pack("<I", sstable.mask_crc(sstable.crc32c(b"\x01",
                                                                          sstable.crc32c(literal))))
    index = sstable._BlockBuilder(1)
    index.add(b"l", sstable.put_varint(0) + sstable.put_varint(len(literal)))
    index_contents = index.finish()
    index_at = len(literal) + 5
    data = literal + trailer + index_contents + b"\x00" + struct.pack(
        "<I", sstable.mask_crc(sstable.crc32c(b"\x00", sstable.crc32c(index_contents))))
    footer = (sstable.put_varint(0) + sstable.put_varint(0) + sstable.put_varint(index_at)
              + sstable.put_varint(len(index_contents))).ljust(40, b"\x00")
    data += footer + struct.pack("<Q", sstable.MAGIC)
    assert sstable.read_table(data) == [(b"k", b"value")]
    with pytest.raises(CorruptFileError):
        sstable.snappy_decompress(bytes([100, 1 | 4 << 2, 9]))


def test_protowire_keeps_unknown_fields():
    entry = {"dtype": 1, "shape": {"dim": [{"size": 3}, {}]}, "offset": 5, "crc32c": 7,
             "slices": [{"extent": [{"start": 0, "length": 0}, {}]}]}
    raw = pw.encode(entry, pw.BUNDLE_ENTRY) + b"\xa0\x06\x05"  # field 100, varint 5
    decoded = pw.decode(raw, pw.BUNDLE_ENTRY)
    assert decoded["_unknown"] == b"\xa0\x06\x05" and decoded["slices"][0]["extent"][0] == \
        {"length": 0}
    assert pw.encode(decoded, pw.BUNDLE_ENTRY) == raw
    with pytest.raises(CorruptFileError):
        pw.decode(b"\x0a\x05ab", pw.BUNDLE_ENTRY)


def _small(tmp_path: Path) -> str:
    prefix = str(tmp_path / "small")
    weightkit.save(Store.from_arrays({"a": np.arange(1000, dtype=np.float32),
                                      "s": np.array([b"xy"], dtype=object)}), prefix, CKPT)
    return prefix


def test_bit_flips_raise_corrupt_file_error(tmp_path):
    prefix = _small(tmp_path)
    data = prefix + ".data-00000-of-00001"
    blob = bytearray(open(data, "rb").read())
    blob[100] ^= 1
    open(data, "wb").write(bytes(blob))
    with weightkit.load(prefix) as store:
        with pytest.raises(CorruptFileError, match="checksum"):
            store["a"].read()
        with pytest.raises(CorruptFileError, match="checksum"):
            for _ in store["a"].iter_chunks(256):
                pass
        assert store["s"].read().tolist() == [b"xy"]
    index = bytearray(open(prefix + ".index", "rb").read())
    index[5] ^= 0x10
    open(prefix + ".index", "wb").write(bytes(index))
    with pytest.raises(CorruptFileError, match="checksum"):
        weightkit.load(prefix)


def test_broken_checkpoints_raise_only_weightkit_errors(tmp_path):
    prefix = _small(tmp_path)
    index = open(prefix + ".index", "rb").read()
    data = open(prefix + ".data-00000-of-00001", "rb").read()
    cases = {"empty": (b"", data), "truncated-index": (index[:-10], data),
             "garbage": (os.urandom(500), data), "truncated-data": (index, data[:100])}
    for name, (i, d) in cases.items():
        bad = tmp_path / name
        bad.mkdir()
        (bad / "c.index").write_bytes(i)
        (bad / "c.data-00000-of-00001").write_bytes(d)
        with pytest.raises(WeightsError):
            with weightkit.load(bad / "c", CKPT) as store:
                for tensor in store.values():
                    tensor.read()
    os.remove(prefix + ".data-00000-of-00001")
    with pytest.raises(CorruptFileError, match="missing data shard"):
        weightkit.load(prefix)


def test_lying_entry_sizes_are_refused(tmp_path):
    """An entry claiming a huge shape, or bytes past its data file, is refused before reading."""
    prefix = str(tmp_path / "lie")
    entries = {"big": {"dtype": 1, "shape": {"dim": [{"size": 1 << 40}]}, "size": 8},
               "past": {"dtype": 1, "shape": {"dim": [{"size": 4}]}, "offset": 4, "size": 16}}
    for key, entry in entries.items():
        header = pw.encode({"num_shards": 1, "version": {"producer": 1}}, pw.BUNDLE_HEADER)
        with open(prefix + ".index", "wb") as f:
            sstable.write_table(f, [(b"", header), (key.encode(), pw.encode(entry, pw.BUNDLE_ENTRY))])
        open(prefix + ".data-00000-of-00001", "wb").write(b"\x00" * 16)
        with pytest.raises(CorruptFileError):
            weightkit.load(prefix)


def test_unknown_dtype_is_refused(tmp_path):
    prefix = str(tmp_path / "odd")
    header = pw.encode({"num_shards": 1, "version": {"producer": 1}}, pw.BUNDLE_HEADER)
    entry = pw.encode({"dtype": 20, "shape": {}}, pw.BUNDLE_ENTRY)  # DT_RESOURCE
    with open(prefix + ".index", "wb") as f:
        sstable.write_table(f, [(b"", header), (b"r", entry)])
    open(prefix + ".data-00000-of-00001", "wb").close()
    with pytest.raises(WeightsError, match="dtype enum 20"):
        weightkit.load(prefix)


def test_show_does_not_import_tensorflow(tmp_path):
    prefix = _small(tmp_path)
    code = ("import sys; from weightkit.cli.main import main; rc = main(['show', sys.argv[1]]); "
            "assert not [m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'tf_keras')], 'framework imported'; sys.exit(rc)")
    import subprocess
    done = subprocess.run([sys.executable, "-c", code, prefix], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "a" in done.stdout and "1,000" in done.stdout or "1000" in done.stdout


def test_cli_reports_corruption_in_one_line(tmp_path):
    prefix = _small(tmp_path)
    data = prefix + ".data-00000-of-00001"
    blob = bytearray(open(data, "rb").read())
    blob[10] ^= 4
    open(data, "wb").write(bytes(blob))
    done = run_cli("show", prefix)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "checksum" in done.stderr


class TestCheckpointConformance(FormatConformance):
    format = CKPT
    suffix = ""
    extra_dtypes = ("string", "complex64", "complex128", "float8_e4m3fn", "float8_e5m2",
                    "int4", "uint64", "float64")
    lossy_dtypes = ("float8_e8m0fnu",)
    carries_metadata = False

    def path(self, directory: Path, stem: str) -> Path:
        return directory / f"{stem}.index"


# --- committed fixtures (written by TensorFlow, read without it) ---------------------------------

def _fixture_entries(fmt: str) -> list:
    from fixtures_lib import select
    return select(format=fmt)


@pytest.mark.parametrize("entry", _fixture_entries(CKPT) + _fixture_entries("saved-model"),
                         ids=lambda e: e["path"])
def test_fixtures_read_and_rewrite_identically(entry, tmp_path):
    """Every committed checkpoint and SavedModel: all tensors read (crc verified), and written
    back, directly and through safetensors, byte for byte."""
    from fixtures_lib import fixture
    path = fixture(entry)
    fmt = entry["format"]
    with weightkit.load(path) as store:
        assert store.format == fmt and len(store) > 0
        for tensor in store.values():
            tensor.read()
        weightkit.save(store, tmp_path / "x.safetensors")
        out = tmp_path / "same"
        weightkit.save(store, out, fmt)
    with weightkit.load(tmp_path / "x.safetensors", "safetensors") as carried:
        weightkit.save(carried, tmp_path / "back", fmt)
    for written in (tmp_path / "same", tmp_path / "back"):
        for name in entry["files"]:
            rel = os.path.relpath(name, entry["path"]) if fmt == "saved-model" else None
            if rel is not None:
                original, copy = fixture(entry) / rel, written / rel
            elif path.is_dir():  # a directory with a `checkpoint` state file
                if name.endswith("/checkpoint"):
                    continue
                prefix = checkpoint.resolve_prefix(str(path))[0]
                original = Path(fixture(name))
                if not str(original).startswith(prefix + "."):
                    continue  # a run's earlier checkpoints: the directory reads as its latest
                copy = Path(str(written) + str(original)[len(prefix):])
            else:
                original = fixture(name)
                copy = Path(str(written) + name[len(entry["path"]):])
            assert original.read_bytes() == copy.read_bytes(), (written.name, name)


def test_mutated_entries_raise_only_weightkit_errors(tmp_path):
    """Byte mutations inside index entries and header, with valid block crcs (the table is
    rebuilt), so the entry parser itself is fuzzed: only weightkit's errors may escape, reading
    the checkpoint or its index alone."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    prefix = str(tmp_path / "base")
    weightkit.save(Store.from_arrays({"a": np.arange(12, dtype=np.float32).reshape(3, 4),
                                      "s": np.array([b"xy", b""], dtype=object),
                                      "z": np.zeros((0, 2), np.int8)}), prefix, CKPT)
    with open(prefix + ".index", "rb") as f:
        items = sstable.read_table(f.read())
    data = open(prefix + ".data-00000-of-00001", "rb").read()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, len(items) - 1), st.integers(0, 200), st.integers(0, 255),
           st.sampled_from(["set", "insert", "delete", "truncate"]))
    def mutate(which, position, byte, how):
        key, value = items[which]
        position %= max(len(value), 1)
        value = {"set": value[:position] + bytes([byte]) + value[position + 1:],
                 "insert": value[:position] + bytes([byte]) + value[position:],
                 "delete": value[:position] + value[position + 1:],
                 "truncate": value[:position]}[how]
        target = tmp_path / "m"
        target.mkdir(exist_ok=True)
        with open(target / "c.index", "wb") as f:
            sstable.write_table(f, [*items[:which], (key, value), *items[which + 1:]])
        (target / "c.data-00000-of-00001").write_bytes(data)
        try:
            with weightkit.load(target / "c", CKPT) as store:
                for tensor in store.values():
                    tensor.read()
                    list(tensor.iter_chunks(8))
        except WeightsError:
            pass
        try:  # the index alone, as git's diff driver reads it
            with checkpoint.read_index(str(target / "c.index")) as listed:
                [(t.shape, t.dtype, t.meta["checksum"]) for t in listed.values()]
        except WeightsError:
            pass

    mutate()


@pytest.mark.parametrize("layout", [None, "text", {"shards": "x"}, {"shards": [[1]]},
                                    {"shards": [["a"]], "slices": {"a": 3}},
                                    {"shards": [["a"]], "header": 5}])
def test_malformed_layout_metadata_is_refused(tmp_path, layout):
    """Layout metadata may arrive from an untrusted file (safetensors `__metadata__`)."""
    store = Store.from_arrays({"a": np.ones(2, np.float32)}, meta={"tf_checkpoint": layout})
    if layout is None:
        weightkit.save(store, tmp_path / "ok", CKPT)
        return
    with pytest.raises(CorruptFileError, match="malformed"):
        weightkit.save(store, tmp_path / "bad", CKPT)
    assert not list(tmp_path.iterdir())


# --- variable order ------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", [e for e in _fixture_entries(CKPT) + _fixture_entries("saved-model")
                                   if e.get("variables")], ids=lambda e: e["path"])
def test_fixture_variables_in_framework_order(entry):
    """The model's weights and its optimizer's variables, as the framework lists them, come in
    that order in the store (key order put `bn/moving_mean` first and `_variables/10` before
    `_variables/2`)."""
    from fixtures_lib import fixture
    want = [v["name"].removesuffix(":0")
            for v in entry["variables"] + entry.get("optimizer_variables", [])]
    with weightkit.load(fixture(entry)) as store:
        listed = [name for name in store if name in want]
    assert listed == [name for name in want if name in listed]
    assert set(listed) >= {v["name"].removesuffix(":0") for v in entry["variables"]}


def test_keras_against_checkpoint_pairs_by_structure():
    """A Keras 3 `.keras` before a training step against the checkpoint after it: both name
    every variable, optimizer slots too, as Keras does (`adam/c1_kernel_momentum`), so they pair
    by name although no value is equal; in key order the slots of the last layer
    (`_variables/10..13`) came first."""
    from fixtures_lib import fixture, manifest
    from weightkit.diffing.engine import diff_stores

    after = manifest()["conv--keras3-after.ckpt"]
    slots = [v["name"] for v in after["optimizer_variables"]]
    with weightkit.load(fixture("conv--keras3-before.keras")) as a, \
            weightkit.load(fixture(after)) as b:
        result = diff_stores(a, b)
    pairs = {e.name_a: e.name_b for e in result.entries}
    assert not result.summary["unmatched_a"] and not result.summary["unmatched_b"]
    assert [pairs[name] for name in slots] == slots
    assert {e.matched_by for e in result.entries} == {"name"}
    assert {e.status for e in result.entries} == {"changed", "same"}


def _graph(nodes: list[dict]) -> bytes:
    return pw.encode({"nodes": nodes}, pw.OBJECT_GRAPH)


def _with_graph(tmp_path: Path, keys: list[str], graph: bytes) -> Store:
    """A checkpoint written with `keys` and a given object graph, read back."""
    tensors = {key: Tensor.from_array(np.full(2, i, np.float32),
                                      {"key": key, "role": "weight",
                                       "tf_checkpoint": {"keys": [key]}})
               for i, key in enumerate(keys)}
    layout = {"shards": [[og.GRAPH_KEY, *keys]], "slices": {},
              "object_graph": b64(graph)}
    tmp_path.mkdir(exist_ok=True)
    weightkit.save(Store(tensors, meta={"tf_checkpoint": layout}), tmp_path / "g", CKPT)
    return weightkit.load(tmp_path / "g", CKPT)


def test_hostile_object_graph_order(tmp_path):
    """Cycles, shared nodes, slot variables and node ids out of range: each node is visited once,
    bad ids are skipped, and what the graph does not reach follows in natural key order."""
    key = lambda name: f"{name}{og.VALUE_SUFFIX}"  # noqa: E731
    nodes = [
        {"children": [{"node_id": 0, "local_name": "root"}, {"node_id": 2, "local_name": "b"},
                      {"node_id": 999, "local_name": "far"}, {"node_id": -1, "local_name": "neg"},
                      {"node_id": 1, "local_name": "a"}, {"node_id": 2, "local_name": "again"}]},
        {"attributes": [{"name": "VARIABLE_VALUE", "checkpoint_key": key("a")}]},
        {"attributes": [{"name": "VARIABLE_VALUE", "checkpoint_key": key("b")}],
         "children": [{"node_id": 0, "local_name": "up"}],
         "slot_variables": [{"original_variable_node_id": 1, "slot_name": "m",
                             "slot_variable_node_id": 3}]},
        {"attributes": [{"name": "VARIABLE_VALUE", "checkpoint_key": key("c")}]},
    ]
    keys = [key(n) for n in ("a", "b", "c", "z10", "z2")]
    with _with_graph(tmp_path, keys, _graph(nodes)) as store:
        assert list(store) == ["b", "c", "a", "z2", "z10"]
    with _with_graph(tmp_path / "empty", keys, _graph([])) as store:
        assert list(store) == ["a", "b", "c", "z2", "z10"]


def test_name_based_checkpoint_lists_numbers_by_value(tmp_path):
    """Without an object graph keys come in natural order (`layer_2` before `layer_10`), and a
    writer declares an order it would not give back by that same rule."""
    names = ["global_step", "layer_1/w", "layer_2/w", "layer_10/w", "layer_10/w_1"]
    arrays = {n: np.full(2, i, np.float32) for i, n in enumerate(names)}
    store = Store.from_arrays(arrays, meta={"keras": {}})
    assert not [x for x in weightkit.losses(store, CKPT) if "order" in x]
    weightkit.save(store, tmp_path / "n.ckpt", CKPT, allow_lossy=True)
    with weightkit.load(tmp_path / "n.ckpt", CKPT) as back:
        assert list(back) == names
    swapped = Store.from_arrays(dict(reversed(arrays.items())), meta={"keras": {}})
    assert [x for x in weightkit.losses(swapped, CKPT) if "order" in x]


# --- slices, names and state files that must not mislead the reader -----------------------------

def _partitioned(prefix: Path, shape: tuple[int, ...], parts: list[tuple[tuple, np.ndarray]]) -> None:
    """A checkpoint holding float32 `w` of `shape` as the slices `parts` ([(extents, values)],
    extents as ((start, length), ...)), written entry by entry as TensorFlow lays them out."""
    from weightkit.converters.bundle import slice_key
    data, entries = b"", [(b"", pw.encode({"num_shards": 1, "version": {"producer": 1}},
                                           pw.BUNDLE_HEADER))]
    for extents, values in parts:
        raw = np.ascontiguousarray(values, np.float32).tobytes()
        entry = {"dtype": 1, "shape": {"dim": [{"size": d} for d in values.shape]},
                 "offset": len(data), "size": len(raw),
                 "crc32c": sstable.mask_crc(sstable.crc32c(raw))}
        entries.append((slice_key("w", extents), pw.encode(entry, pw.BUNDLE_ENTRY)))
        data += raw
    full = {"dtype": 1, "shape": {"dim": [{"size": d} for d in shape]},
            "slices": [{"extent": [{"start": s, "length": n} for s, n in extents]}
                       for extents, _ in parts]}
    entries.append((b"w", pw.encode(full, pw.BUNDLE_ENTRY)))
    with open(f"{prefix}.index", "wb") as f:
        sstable.write_table(f, sorted(dict(reversed(entries)).items()))  # a slice key once
    Path(f"{prefix}.data-00000-of-00001").write_bytes(data)


def test_slices_must_tile_the_tensor_exactly(tmp_path):
    """Slices naming [0,2) twice add up to the element count but leave [2,4) unread: refused
    before anything is allocated, never filled from uninitialised memory."""
    two = np.array([1.0, 2.0], np.float32)
    _partitioned(tmp_path / "twice", (4,), [(((0, 2),), two), (((0, 2),), two)])
    with pytest.raises(CorruptFileError, match="overlap"):
        weightkit.load(tmp_path / "twice", CKPT)
    done = run_cli("show", str(tmp_path / "twice"))
    status, _, err = done.returncode, done.stdout, done.stderr
    assert status == 2 and "slices overlap" in err and len(err.strip().splitlines()) == 1
    grid = np.arange(12, dtype=np.float32).reshape(4, 3)
    tiles = [(((0, 2), (0, 3)), grid[:2]), (((2, 2), (0, 2)), grid[2:, :2]),
             (((2, 2), (2, 1)), grid[2:, 2:])]
    _partitioned(tmp_path / "tiled", (4, 3), tiles)
    with weightkit.load(tmp_path / "tiled", CKPT) as store:
        assert np.array_equal(store["w"].read(), grid)
    gap = [(((0, 2), (0, 3)), grid[:2]), (((1, 2), (0, 3)), grid[1:3])]
    _partitioned(tmp_path / "gap", (4, 3), gap)
    with pytest.raises(CorruptFileError, match="hold 12 elements|overlap"):
        weightkit.load(tmp_path / "gap", CKPT)


def _attribute(key: str, full_name: str) -> dict:
    return {"attributes": [{"name": "VARIABLE_VALUE", "full_name": full_name,
                            "checkpoint_key": f"{key}{og.VALUE_SUFFIX}"}]}


def test_a_fallback_name_never_overwrites_another_variable(tmp_path):
    """Keys a, b, c, d whose graph names a 'a', b 'd' and d 'a': four variables, each once."""
    keys = [f"{k}{og.VALUE_SUFFIX}" for k in "abcd"]
    nodes = [{"children": [{"node_id": i + 1, "local_name": k} for i, k in enumerate("abcd")]},
             _attribute("a", "a"), _attribute("b", "d"), {}, _attribute("d", "a")]
    with _with_graph(tmp_path, keys, _graph(nodes)) as store:
        assert sorted(store) == ["a", "b", "c", "d"]
        assert {name: float(t.read()[0]) for name, t in store.items()} == \
            {"a": 0.0, "b": 1.0, "c": 2.0, "d": 3.0}


def test_only_parallel_copies_of_one_variable_are_merged(tmp_path):
    """Metric variables sharing a full_name (`count`, equal values) stay apart, each named by
    its key and marked `metric`; Keras 3 export's copies (the same full_name and bytes in the
    lists `variables` and `_all_variables`) are one variable written to both keys."""
    keys = ["keras_api/metrics/0/count", "keras_api/metrics/1/count", "variables/0",
            "_all_variables/0"]
    full = ["count", "count", "d/kernel", "d/kernel"]
    tensors = {key: Tensor.from_array(np.full(2, 1000.0 if "count" in key else 7.0, np.float32),
                                      {"key": key + og.VALUE_SUFFIX, "tf_checkpoint":
                                       {"keys": [key + og.VALUE_SUFFIX]}})
               for key in keys}
    nodes = [{"children": [{"node_id": i + 1, "local_name": str(i)} for i in range(4)]},
             *[_attribute(k, f) for k, f in zip(keys, full)]]
    layout = {"shards": [[og.GRAPH_KEY, *[k + og.VALUE_SUFFIX for k in keys]]], "slices": {},
              "object_graph": b64(_graph(nodes))}
    weightkit.save(Store(tensors, meta={"tf_checkpoint": layout}), tmp_path / "m", CKPT)
    with weightkit.load(tmp_path / "m", CKPT) as store:
        assert sorted(store) == ["d/kernel", "keras_api/metrics/0/count",
                                 "keras_api/metrics/1/count"]
        assert store["keras_api/metrics/0/count"].role == "metric"
        assert len(store["d/kernel"].meta["tf_checkpoint"]["keys"]) == 2
        edited = weightkit.edit(store).scale("d/kernel", 2.0)
        weightkit.save(edited, tmp_path / "m2", CKPT)
    with weightkit.load(tmp_path / "m2", CKPT) as back:
        bundle = checkpoint.read_index(str(tmp_path / "m2.index"))
        assert {n for n in bundle if "variables/0" in n} == {"variables/0", "_all_variables/0"}
        assert float(back["d/kernel"].read()[0]) == 14.0


def test_renames_reach_the_checkpoint(tmp_path):
    """A rename is written as the new full name (TF2: restore goes by the graph) or the new key
    (a name-based checkpoint: restore goes by name)."""
    key = f"layer/kernel{og.VALUE_SUFFIX}"
    nodes = [{"children": [{"node_id": 1, "local_name": "layer"}]},
             _attribute("layer/kernel", "dense/kernel")]
    with _with_graph(tmp_path, [key], _graph(nodes)) as store:
        weightkit.save(weightkit.edit(store).rename("^dense/", "head/"), tmp_path / "r", CKPT)
    with weightkit.load(tmp_path / "r", CKPT) as back:
        assert list(back) == ["head/kernel"] and back["head/kernel"].meta["key"] == key
    weightkit.save(Store.from_arrays({"dense/kernel": np.ones(2, np.float32)}), tmp_path / "n",
                   CKPT)
    with weightkit.load(tmp_path / "n", CKPT) as named:
        renamed = weightkit.edit(named).rename("^dense/", "head/")
        assert renamed["head/kernel"].meta["key"] == "dense/kernel"  # what the file calls it
        assert list(weightkit.edit(renamed).scale("dense/*", 2.0)) == ["head/kernel"]
        weightkit.save(renamed, tmp_path / "n2", CKPT)
    with weightkit.load(tmp_path / "n2", CKPT) as back:
        assert list(back) == ["head/kernel"] and "key" not in back["head/kernel"].meta


@pytest.mark.tensorflow
def test_a_checkpoint_without_its_optimizer_state_restores_with_a_fresh_optimizer(tf_made,
                                                                                  tmp_path):
    """`convert --no-optimizer` to a TF2 checkpoint leaves the optimizer's attributes out of
    the object graph too: TensorFlow restores the model into a model with a fresh optimizer
    (it looked up every attribute's key and failed on the dropped ones), and trains on."""
    path = tf_made["keras3-ckpt"]
    out = tmp_path / "noopt" / "ckpt"
    out.parent.mkdir()
    done = run_cli("convert", path, out, "--to", CKPT, "--no-optimizer", "-q")
    assert done.returncode == 0, done.stderr
    with weightkit.load(path, CKPT) as store:
        want = sorted(digest(t.read()) for t in store.values() if t.role == "weight")
    (got,) = tf_run([["restore-fresh", "keras3-ckpt", str(out)]])
    assert got["iterations"] == 0 and sorted(got["weights"].values()) == want


def _state_dir(tmp_path: Path, target: str, name: str = "run") -> Path:
    directory = tmp_path / name
    directory.mkdir()
    weightkit.save(Store.from_arrays({"w": np.arange(3, dtype=np.float32)}),
                   directory / "ckpt-7", CKPT)
    (directory / "checkpoint").write_text(f'model_checkpoint_path: "{target}"\n'
                                          f'all_model_checkpoint_paths: "{target}"\n')
    return directory


def test_a_state_file_naming_another_machine_reads_the_local_checkpoint(tmp_path):
    """Copied from the training machine, the state file names an absolute path there: the
    checkpoint of that name here is read, with a one-line note, and nothing outside is read."""
    directory = _state_dir(tmp_path, "/home/trainer/run/ckpt-7")
    done = run_cli("show", str(directory))
    status, err = done.returncode, done.stderr
    assert status == 0, err
    assert "note:" in err and "/home/trainer/run/ckpt-7" in err and len(err.splitlines()) == 1
    other = _state_dir(tmp_path, "/elsewhere/ckpt-9", "single")
    with pytest.warns(Warning, match="reading"):
        with weightkit.load(other) as store:
            assert list(store) == ["w"]
    assert checkpoint.state_prefixes(str(other)) == [str(other / "ckpt-7")]


def test_a_state_file_that_is_a_symlink_out_is_refused(tmp_path):
    outside = _state_dir(tmp_path, "ckpt-7", "outside")
    directory = _state_dir(tmp_path, "ckpt-7")
    (directory / "checkpoint").unlink()
    (directory / "checkpoint").symlink_to(outside / "checkpoint")
    with pytest.raises(UnsafeFileError, match="outside"):
        weightkit.load(directory)


def _without_state_file(fixtures_dir: Path, name: str, directory: Path) -> Path:
    """A copy of the checkpoint directory fixture `name` without its `checkpoint` state file,
    as `tf.train.Checkpoint.write()` leaves a directory."""
    shutil.copytree(fixtures_dir / name, directory)
    (directory / "checkpoint").unlink()
    return directory


def test_a_directory_without_state_file_holding_one_checkpoint_is_read(fixtures_dir, tmp_path):
    directory = _without_state_file(fixtures_dir, "mlp--keras3-ckptdir", tmp_path / "one")
    done = run_cli("show", str(directory), "--no-stats")
    assert done.returncode == 0, done.stderr
    with weightkit.load(directory) as store, weightkit.load(directory / "ckpt-1") as prefix:
        assert store.format == CKPT and list(store) == list(prefix)
        assert store.path == str(directory)


def test_a_directory_without_state_file_holding_several_checkpoints_names_them(fixtures_dir,
                                                                                tmp_path):
    """TensorFlow finds a directory's checkpoint only through its state file; without one,
    several prefixes are an error naming them (natural order, the last as the example)."""
    directory = _without_state_file(fixtures_dir, "run--tfkeras-ckptdir", tmp_path / "run")
    done = run_cli("show", str(directory))
    assert done.returncode == 2 and done.stderr.strip() == (
        f"weightkit: error: {directory} holds checkpoint prefixes ckpt-0, ckpt-1, ckpt-2, "
        f"ckpt-3, ckpt-4, ckpt-5 but no 'checkpoint' state file: pass one prefix, e.g. "
        f"{directory / 'ckpt-5'}")
    for n in range(6, 11):
        for suffix in (".index", ".data-00000-of-00001"):
            shutil.copy(directory / f"ckpt-5{suffix}", directory / f"ckpt-{n}{suffix}")
    with pytest.raises(UsageError, match=r"ckpt-0, ckpt-1, ckpt-2, ckpt-3, ckpt-4, \.\.\., "
                                         r"ckpt-10 but no .* e\.g\. .*ckpt-10$"):
        weightkit.load(directory)


def test_a_directory_without_state_file_never_leads_outside(fixtures_dir, tmp_path):
    """Its one `.index`, or a data file, a symlink to a checkpoint elsewhere: refused."""
    source = fixtures_dir / "mlp--keras3-ckptdir"
    for linked in ("ckpt-1.index", "ckpt-1.data-00000-of-00001"):
        directory = tmp_path / linked
        directory.mkdir()
        for name in ("ckpt-1.index", "ckpt-1.data-00000-of-00001"):
            if name == linked:
                (directory / name).symlink_to(source / name)
            else:
                shutil.copy(source / name, directory / name)
        with pytest.raises(UnsafeFileError, match="outside"):
            weightkit.load(directory)


def test_empty_basename_checkpoint_round_trips(tmp_path):
    """Some packages ship TF1 checkpoints as DIR/.index + DIR/.data-00000-of-00001."""
    directory = tmp_path / "pkg"
    directory.mkdir()
    weightkit.save(Store.from_arrays({"w": np.arange(4, dtype=np.float32)}),
                   str(directory) + os.sep, CKPT)
    assert sorted(p.name for p in directory.iterdir()) == [".data-00000-of-00001", ".index"]
    done = run_cli("verify", str(directory / ".index"))
    status, out, err = done.returncode, done.stdout, done.stderr
    assert status == 0, out + err
    done = run_cli("convert", str(directory / ".index"), str(tmp_path / "w.npz"))
    status, out, err = done.returncode, done.stdout, done.stderr
    assert status == 0, err


@settings(max_examples=300, deadline=None)
@given(dtype=st.integers(0, 30), shape=st.lists(st.integers(0, 2**40), max_size=5),
       shard=st.integers(0, 3), offset=st.integers(0, 2**40), size=st.integers(0, 2**40),
       crc=st.integers(0, 2**32 - 1))
def test_entry_bytes_equal_the_generic_encoder(dtype, shape, shard, offset, size, crc) -> None:
    from weightkit.converters.bundle_store import entry_bytes
    generic = pw.encode({"dtype": dtype, "shape": {"dim": [{"size": d} for d in shape]},
                         "shard_id": shard, "offset": offset, "size": size, "crc32c": crc},
                        pw.BUNDLE_ENTRY)
    assert entry_bytes(dtype, tuple(shape), shard, offset, size, crc) == generic


def test_small_tensors_read_together_are_still_crc_checked(tmp_path) -> None:
    """show reads small tensors many at a time (read_many): each one's bytes are still checked
    against its crc32c, and a data shard that shrinks while open is an error, not zeros."""
    from weightkit.converters.store import read_many
    prefix = str(tmp_path / "many")
    weightkit.save(Store.from_arrays({f"v{i:03d}": np.full(3, i, np.float32)
                                      for i in range(200)}), prefix, CKPT)
    with weightkit.load(prefix) as store:
        assert store["v007"].extent is not None
        assert [a.tolist() for a in read_many(list(store.values()))][7] == [7.0] * 3
    data = prefix + ".data-00000-of-00001"
    with weightkit.load(prefix) as store:
        offset = store["v150"].extent.offset
    blob = bytearray(open(data, "rb").read())
    blob[offset] ^= 1
    open(data, "wb").write(bytes(blob))
    with weightkit.load(prefix) as store, \
            pytest.raises(weightkit.CorruptFileError, match="'v150': checksum does not match"):
        read_many(list(store.values()))
    assert run_cli("show", prefix).returncode == 2
    with weightkit.load(prefix) as store:  # shrinks while open: an error, never zeros
        open(data, "wb").write(bytes(blob[:offset]))
        with pytest.raises(weightkit.CorruptFileError):
            read_many(list(store.values()))


def test_entries_parsed_from_known_shapes_are_the_entries_parsed_in_full(tmp_path):
    """bundle._known_entry (an entry whose dtype and shape bytes were parsed before in the same
    index) gives what the full parse gives, on entries TensorFlow's layout writes and on
    mutations of them; where the full parse raises, so does the whole read."""
    from hypothesis import HealthCheck, given, settings, strategies as st
    from weightkit.converters import bundle

    prefix = str(tmp_path / "base")
    weightkit.save(Store.from_arrays({f"w{i}": np.full((3, 4), i, np.float32)
                                      for i in range(3)}), prefix, CKPT)
    with open(prefix + ".index", "rb") as f:
        items = [(k, v) for k, v in sstable.read_table(f.read()) if k.startswith(b"w")]
    first_key, first = items[0]
    known: dict = {}
    bundle._parse_entry(first_key.decode(), first, known)
    assert len(known) == 1

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(1, len(items) - 1), st.integers(0, 60), st.integers(0, 255),
           st.sampled_from(["set", "insert", "delete", "truncate", "append", "none"]))
    def same(which, position, byte, how):
        key, value = items[which]
        position %= max(len(value), 1)
        value = {"set": value[:position] + bytes([byte]) + value[position + 1:],
                 "insert": value[:position] + bytes([byte]) + value[position:],
                 "delete": value[:position] + value[position + 1:],
                 "truncate": value[:position], "append": value + bytes([byte]),
                 "none": value}[how]
        outcomes = []
        for memo in (dict(known), None):
            try:
                outcomes.append(bundle._parse_entry(key.decode(), value, memo))
            except WeightsError as exc:
                outcomes.append(type(exc))
        assert outcomes[0] == outcomes[1]
    same()
    assert bundle._known_entry(items[1][0].decode(), items[1][1], known) is not None


def test_a_repeated_dtype_or_shape_field_is_not_taken_as_a_known_prefix():
    """Protobuf's last value of a field wins: an entry repeating its dtype or shape after the
    leading ones has another dtype or shape than those alone say, so its leading bytes are not
    remembered for the entries after it (one would have read float32 data as int32)."""
    from weightkit.converters import bundle
    prefix = bytes([0x08, 0x01, 0x12, 0x04, 0x12, 0x02, 0x08, 0x03])  # float32, shape [3]
    plain = prefix + bytes([0x28, 0x0C])
    for first in (prefix + bytes([0x08, 0x03, 0x28, 0x0C]),  # dtype again: int32
                  prefix + bytes([0x12, 0x04, 0x12, 0x02, 0x08, 0x06, 0x28, 0x0C])):  # [6]
        known: dict = {}
        bundle._parse_entry("a", first, known)
        assert known == {}
        assert bundle._parse_entry("b", plain, known) == bundle._parse_entry("b", plain)
        assert bundle._parse_entry("b", plain, known).dtype == 1
