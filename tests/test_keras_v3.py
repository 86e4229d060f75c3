"""Keras 3 formats: `.weights.h5` and sharded `.weights.json` (keras-weights-h5), `.keras`
archives (keras). Exact write-back of every fixture, directly and through safetensors; names
from the layers' `name` attrs or config.json; hostile archives refused; Keras 3 loads what we
write with bit-identical weights and optimizer state."""
from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import weightkit
from conformance import FormatConformance
from fixtures_lib import canonical_names, fixture, models, select
from keras_lib import h5_tree, keras_member_tree, oracle
from weightkit.converters import keras_v3
from weightkit.converters.errors import CorruptFileError, UnsafeFileError, UsageError, WeightsError
from weightkit.converters.store import Store

WEIGHTS = select(format="keras-weights-h5")
ARCHIVES = select(format="keras")


class TestKerasWeightsH5Conformance(FormatConformance):
    format = "keras-weights-h5"
    suffix = ".weights.h5"
    extra_dtypes = ("float64", "complex64", "uint8", "int32", "uint64", "float8_e4m3fn")
    lossy_dtypes = ("int4", "string")
    carries_metadata = False

    def names(self, n: int) -> list[str]:
        return [f"block_{i:03d}/0" for i in range(n)]


def files_of(path: Path) -> dict[str, object]:
    """What a written Keras 3 file consists of, comparable across writes: HDF5 trees, the
    sharded index (shard names relative to the stem), archive members and their bytes."""
    name = path.name
    if name.endswith(".weights.json"):
        stem = name[:-len(".weights.json")]
        index = json.loads(path.read_text())
        shards = sorted({f for fs in index["weight_map"].values() for f in fs})
        index["weight_map"] = {g: [f.replace(stem, "STEM") for f in fs]
                               for g, fs in index["weight_map"].items()}
        return {"index": index, **{s.replace(stem, "STEM"): h5_tree(path.parent / s)
                                   for s in shards}}
    if name.endswith(".keras"):
        with zipfile.ZipFile(path) as zf:
            members = [(i.filename, i.compress_type, i.date_time) for i in zf.infolist()]
            other = {i.filename: zf.read(i) for i in zf.infolist()
                     if i.filename != "model.weights.h5"}
        return {"members": members, "other": other, "weights": keras_member_tree(path)}
    return {"tree": h5_tree(path)}


@pytest.mark.parametrize("entry", WEIGHTS + ARCHIVES, ids=[e["path"] for e in WEIGHTS + ARCHIVES])
def test_exact_write_back_direct_and_through_safetensors(entry: dict, tmp_path: Path) -> None:
    source = fixture(entry)
    suffix = ".weights.json" if entry["path"].endswith(".json") else \
        ".keras" if entry["format"] == "keras" else ".weights.h5"
    direct, back = tmp_path / f"direct{suffix}", tmp_path / f"back{suffix}"
    via = tmp_path / "via.safetensors"
    with weightkit.load(source) as store:
        assert store.format == entry["format"]
        weightkit.save(store, direct)
        weightkit.save(store, via)
    with weightkit.load(via) as carried:
        weightkit.save(carried, back, entry["format"])
    want = files_of(source)
    assert files_of(direct) == want
    assert files_of(back) == want


@pytest.mark.parametrize("entry", WEIGHTS + ARCHIVES, ids=[e["path"] for e in WEIGHTS + ARCHIVES])
def test_canonical_names_are_the_keras_paths(entry: dict) -> None:
    """Every Keras 3 file names its variables as Keras does (`variable.path`, which the
    manifest records from the framework): `d1/kernel`, `lstm/lstm_cell/recurrent_kernel`,
    `mha/query/kernel`, `adam/d1_kernel_momentum`, in the model's order for `.keras` and
    sharded files; the positional names of before (`d1/0`, `optimizer/3`) stay aliases."""
    with weightkit.load(fixture(entry)) as store:
        weights = [n for n, t in store.items() if t.role == "weight"]
        optimizer = [n for n, t in store.items() if t.role != "weight"]
        want = canonical_names(entry)
        want_opt = [v["name"] for v in entry.get("optimizer_variables") or []]
        if entry["format"] == "keras" or entry["path"].endswith(".json"):
            assert weights == want and optimizer == want_opt
        else:
            assert sorted(weights) == sorted(want) and optimizer == want_opt
        digests = dict(zip(canonical_names(entry, optimizer=True),
                           [v["sha256"] for v in entry["variables"]
                            + (entry.get("optimizer_variables") or [])]))
        for name, tensor in store.items():
            assert models.value_digest(tensor.read()) == digests[name]
        if optimizer:
            assert store[optimizer[0]].role == "counter" and optimizer[0].endswith("/iteration")
            assert store["optimizer/0"] is store[optimizer[0]]  # the old positional name
        for name, alias in store.aliases.items():
            assert store[name] is store[alias]
        first = weights[0]
        index = store[first].meta["key"].rsplit("/", 1)[1]
        assert store[f"{first.rsplit('/', 1)[0]}/{index}"] is store[first]


def test_bfloat16_tags_read_and_written(tmp_path: Path) -> None:
    entry = select(path="bf16--keras3.weights.h5")[0]
    with weightkit.load(fixture(entry)) as store:
        assert store["d1/kernel"].dtype_name == "bfloat16"
        plain = Store.from_arrays({"d1/0": store["d1/kernel"].read()})
    out = tmp_path / "bf.weights.h5"
    weightkit.save(plain, out)
    with h5py.File(out, "r") as f:
        ds = f["layers/d1/vars/0"]
        assert ds.dtype == np.dtype("V2") and ds.attrs["dtype"] == "bfloat16"


def rewrite_archive(source: Path, target: Path, config: bytes | None = None,
                    strip_names: bool = False) -> Path:
    """A copy of a .keras archive with another config.json, or whose `vars` groups lack the
    `name` attr (as older Keras 3 wrote)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "config.json" and config is not None:
                data = config
            if info.filename == "model.weights.h5" and strip_names:
                buffer = io.BytesIO(data)
                with h5py.File(buffer, "a") as f:
                    f.visititems(lambda name, obj: obj.attrs.__delitem__("name")
                                 if isinstance(obj, h5py.Group) and "name" in obj.attrs else None)
                data = buffer.getvalue()
            zout.writestr(info, data)
    return target


@pytest.mark.parametrize("case", ["mlp--keras3.keras", "conv--keras3-before.keras",
                                  "mha--keras3.keras"])
def test_layer_names_from_config_when_attrs_are_missing(case: str, tmp_path: Path) -> None:
    stripped = rewrite_archive(fixture(case), tmp_path / "old.keras", strip_names=True)
    with weightkit.load(fixture(case)) as want, weightkit.load(stripped) as got:
        assert [n.split("/")[0] for n in got] == [n.split("/")[0] for n in want]


def test_detected_by_content_whatever_the_suffix(tmp_path: Path) -> None:
    renamed = tmp_path / "renamed.h5"
    shutil.copy(fixture("mlp--keras3.weights.h5"), renamed)
    assert weightkit.detect(renamed) == "keras-weights-h5"
    legacy = tmp_path / "legacy.weights.h5"
    shutil.copy(fixture("mlp--tfkeras-weights.h5"), tmp_path / "tf.h5")
    assert weightkit.detect(tmp_path / "tf.h5") == "keras-h5"
    shutil.copy(fixture("mlp--keras3.keras"), legacy.with_suffix(".zip"))
    assert weightkit.detect(legacy.with_suffix(".zip")) == "keras"


def test_weights_without_names_keep_class_paths(tmp_path: Path) -> None:
    path = tmp_path / "x.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.ones((2, 2), np.float32))
        f.create_dataset("layers/dense_1/vars/0", data=np.ones(2, np.float32))
        f.create_group("vars")
    with weightkit.load(path) as store:
        # the group says Dense; one 2-D float variable can only be a kernel (use_bias=False),
        # a 1-D one is no Dense variable at all: it keeps its position
        assert list(store) == ["dense/kernel", "dense_1/0"]


def test_foreign_store_to_archive_needs_a_template(tmp_path: Path) -> None:
    case = fixture("mlp--keras3.keras")
    with weightkit.load(case) as template:
        plain = Store.from_arrays({n: t.read() * 2 for n, t in template.items()},)
        plain = plain.replace({n: t.with_meta(role=template[n].role) for n, t in plain.items()})
        with pytest.raises(UsageError, match="config.json"):
            weightkit.save(plain, tmp_path / "x.keras")
        weightkit.save(plain, tmp_path / "x.keras", like=template)
    with weightkit.load(tmp_path / "x.keras") as back:
        assert list(back) == list(plain)
        for name in plain:
            assert back[name].read().tobytes() == plain[name].read().tobytes()


def test_sharded_output_is_renamed_after_its_index(tmp_path: Path) -> None:
    out = tmp_path / "renamed.weights.json"
    with weightkit.load(fixture("mlp--keras3-sharded.weights.json")) as store:
        weightkit.save(store, out)
    index = json.loads(out.read_text())
    shards = {f for fs in index["weight_map"].values() for f in fs}
    assert shards == {f"renamed_{i:05d}.weights.h5" for i in range(3)}
    assert all((tmp_path / s).is_file() for s in shards)


def test_missing_shard_and_escaping_shard_names(tmp_path: Path) -> None:
    source = fixture("mlp--keras3-sharded.weights.json")
    index = json.loads(source.read_text())
    bad = tmp_path / "bad.weights.json"
    bad.write_text(json.dumps(index))
    with pytest.raises(CorruptFileError, match="missing shard"):
        weightkit.load(bad)
    group = next(iter(index["weight_map"]))
    index["weight_map"][group] = ["../outside.weights.h5"]
    bad.write_text(json.dumps(index))
    with pytest.raises(UnsafeFileError):
        weightkit.load(bad)
    bad.write_text('{"weight_map": {}, "weight_map": {}}')
    with pytest.raises(CorruptFileError, match="duplicate"):
        weightkit.load(bad)


# -- hostile archives ----------------------------------------------------------------------------

def _archive(tmp_path: Path, members: list[tuple[str, bytes]], **kwargs) -> Path:
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(path, "w", **kwargs) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def _weights_bytes() -> bytes:
    with zipfile.ZipFile(fixture("mlp--keras3.keras")) as zf:
        return zf.read("model.weights.h5")


@pytest.mark.parametrize("name", ["../evil.json", "/abs.json", "assets\\x.txt", "a/../../b"])
def test_unsafe_member_names_refused(name: str, tmp_path: Path) -> None:
    path = _archive(tmp_path, [("config.json", b"{}"), (name, b"x"),
                               ("model.weights.h5", _weights_bytes())])
    with pytest.raises(UnsafeFileError):
        weightkit.load(path)


def test_duplicate_encrypted_and_bomb_members_refused(tmp_path: Path) -> None:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dup = _archive(tmp_path, [("config.json", b"{}"), ("config.json", b"{}"),
                                  ("model.weights.h5", _weights_bytes())])
    with pytest.raises(UnsafeFileError, match="twice"):
        weightkit.load(dup)
    encrypted = tmp_path / "enc.keras"
    data = bytearray(dup.read_bytes())
    data[6] |= 1  # general-purpose flag bit 0 of the first local header...
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 1  # ...and of its central directory entry
    encrypted.write_bytes(bytes(data))
    with pytest.raises(UnsafeFileError):
        weightkit.load(encrypted)
    zeros = _archive(tmp_path, [("config.json", b"{}"), ("assets/zeros", b"\0" * (4 << 20)),
                                ("model.weights.h5", _weights_bytes())],
                     compression=zipfile.ZIP_DEFLATED)
    with weightkit.load(zeros) as store:  # 1028:1, as zlib packs zeros: real, not a bomb
        assert len(store) > 0
    data = bytearray(zeros.read_bytes())  # the same member declaring what deflate cannot give
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = data.find(signature)
        while data[at + name_at:at + name_at + 12] != b"assets/zeros":
            at = data.find(signature, at + 4)
        struct.pack_into("<I", data, at + size_at, 0xF0000000)
    bomb = tmp_path / "bomb.keras"
    bomb.write_bytes(bytes(data))
    with pytest.raises(UnsafeFileError, match="bomb"):
        weightkit.load(bomb)


def test_deflated_weights_read_in_memory_and_config_never_deserialized(tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    config = {"class_name": "Lambda", "module": "os", "config": {
        "function": f"__import__('os').system('touch {sentinel}')"}}
    path = _archive(tmp_path, [("metadata.json", b"{}"), ("config.json", json.dumps(config).encode()),
                               ("model.weights.h5", _weights_bytes())],
                    compression=zipfile.ZIP_DEFLATED)
    with weightkit.load(path) as store:
        assert store["d1/0"] is store["d1/kernel"] and store["d1/0"].read().shape == (8, 16)
    assert not sentinel.exists()


@pytest.mark.parametrize("members", [
    [("config.json", b"{}")],
    [("config.json", b"{not json"), ("model.weights.h5", b"")],
    [("config.json", b"{}"), ("model.weights.h5", b"not hdf5")],
])
def test_broken_archives_raise_weightkit_errors(members: list, tmp_path: Path) -> None:
    path = _archive(tmp_path, members)
    with pytest.raises(WeightsError):
        keras_v3.read(str(path)).close()


def test_truncated_archive(tmp_path: Path) -> None:
    data = fixture("mlp--keras3.keras").read_bytes()
    bad = tmp_path / "t.keras"
    for cut in (10, len(data) // 2, len(data) - 30):
        bad.write_bytes(data[:cut])
        with pytest.raises(WeightsError):
            with keras_v3.read(str(bad)) as store:
                [t.read() for t in store.values()]


# -- the framework as oracle ---------------------------------------------------------------------

@pytest.mark.tensorflow
def test_keras3_loads_our_files_bit_identically(tmp_path: Path) -> None:
    """X -> safetensors -> X for every .weights.h5, sharded and .keras fixture, plus a .keras
    rebuilt from a plain store with a template; a tampered file is caught."""
    pairs = []
    for entry in WEIGHTS + ARCHIVES:
        out_dir = tmp_path / entry["path"].replace(".", "_")
        out_dir.mkdir()
        via, out = out_dir / "via.safetensors", out_dir / entry["path"]
        with weightkit.load(fixture(entry)) as store:
            weightkit.save(store, via)
        with weightkit.load(via) as carried:
            weightkit.save(carried, out, entry["format"])
        pairs.append((entry["path"], str(out)))
    with weightkit.load(fixture("mlp--keras3.keras")) as template:
        plain = Store({n: t.with_meta(role=t.role) for n, t in
                       Store.from_arrays({n: t.read() for n, t in template.items()}).items()})
        plain = plain.replace({n: t.with_meta(role=template[n].role) for n, t in plain.items()})
        templated = tmp_path / "templated.keras"
        weightkit.save(plain, templated, like=template)
        tampered = tmp_path / "tampered.keras"
        edited = plain.replace({**dict(plain), "d1/kernel": plain["d1/kernel"].map(lambda a: -a)})
        weightkit.save(edited, tampered, like=template)
    pairs += [("mlp--keras3.keras", str(templated)), ("mlp--keras3.keras", str(tampered))]
    result = oracle("keras3", pairs)
    assert result.pop(str(tampered)) != "same"
    assert result == {p: "same" for _, p in pairs[:-1]}


def test_copy_of_fixture_is_not_modified(tmp_path: Path) -> None:
    """Reading never writes: the archive bytes are unchanged after a read and close."""
    copy = tmp_path / "m.keras"
    shutil.copy(fixture("mlp--keras3.keras"), copy)
    before = copy.read_bytes()
    with weightkit.load(copy) as store:
        [t.read() for t in store.values()]
    assert copy.read_bytes() == before


class TestKerasArchiveConformance(FormatConformance):
    """A `.keras` archive holds the variables its config.json declares, so the suite writes a
    Keras-written archive's own variables with fresh bit patterns (every dtype and shape of HDF5
    writing is covered by the `.weights.h5` suite above, which shares the HDF5 writer)."""
    format = "keras"
    suffix = ".keras"
    template = "mlp--keras3.keras"
    template_reason = "its config.json declares the variables (see TestKerasWeightsH5Conformance)"
    carries_metadata = False


def test_one_shard_read_alone_points_to_its_index(capsys) -> None:
    """A shard of a sharded `.weights.json` read alone is part of the model with positional
    optimizer names: a note names the index to read instead; the index itself reads quietly."""
    from weightkit.cli.main import main
    shard = str(fixture("mlp--keras3-sharded_00001.weights.h5"))
    assert main(["show", shard], prog="weightkit") == 0
    err = capsys.readouterr().err
    assert "note:" in err and "mlp--keras3-sharded.weights.json" in err
    assert main(["show", str(fixture("mlp--keras3-sharded.weights.json"))], prog="weightkit") == 0
    assert "note:" not in capsys.readouterr().err
