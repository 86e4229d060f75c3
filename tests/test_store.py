"""The core: Tensor and Store (store.py), the registry, atomic output, dtypes, input paths and
the escaping of untrusted text (cli/text.py)."""
from __future__ import annotations

import math
import os
import re
import stat

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from fixtures_lib import FIXTURES

import weightkit
from weightkit.cli.text import safe
from weightkit.converters import registry
from weightkit.converters.atomic import atomic_output
from weightkit.converters.dtypes import (STRING, dtype_from_name, dtype_name, is_floating,
                                         is_string)
from weightkit.converters.errors import (LossyConversionError, UnknownFormatError,
                                         UnsafeFileError, UsageError)
from weightkit.converters.paths import check_input, check_tree, inside, same_file
from weightkit.converters.mapped import FileChangedError, MappedFile
from weightkit.converters.store import Extent, Store, Tensor, block_indices, read_many

# -- Tensor -----------------------------------------------------------------------------------

def test_tensor_reports_shape_and_dtype_without_reading() -> None:
    reads = []
    tensor = Tensor((3, 4), np.float16, lambda index: reads.append(index) or np.zeros((3, 4))[index])
    assert (tensor.shape, tensor.dtype, tensor.size, tensor.nbytes, tensor.ndim) == (
        (3, 4), np.dtype(np.float16), 12, 24, 2)
    assert (tensor.role, tensor.dtype_name, reads) == ("weight", "float16", [])
    assert tensor[1].dtype == np.float16 and reads == [(1,)]
    assert np.asarray(tensor, dtype=np.float64).dtype == np.float64


@settings(max_examples=200, deadline=None)
@given(shape=st.lists(st.integers(0, 6), max_size=4).map(tuple),
       max_bytes=st.integers(1, 300),
       dtype=st.sampled_from(["float32", "int8", "bfloat16", "complex128", "bool"]))
def test_iter_chunks_cover_the_array_in_order_within_the_budget(shape, max_bytes, dtype) -> None:
    array = np.arange(math.prod(shape)).astype(dtype_from_name(dtype)).reshape(shape)
    chunks = list(Tensor.from_array(array).iter_chunks(max_bytes))
    itemsize = array.dtype.itemsize
    assert all(c.ndim == 1 and c.nbytes <= max(max_bytes, itemsize) for c in chunks)
    flat = np.concatenate(chunks) if chunks else np.empty(0, array.dtype)
    assert flat.tobytes() == array.tobytes()
    assert (len(chunks) == 0) == (array.size == 0)


def test_read_many_gives_what_each_read_gives(tmp_path, monkeypatch) -> None:
    """Extents of two files, out of order, with gaps, overlaps, a scalar, an empty and a large
    one, a big-endian one and tensors of other getters: each array as Tensor.read() gives it,
    the small extents of a file read in runs (one pread per run)."""
    import weightkit.converters.store as store_module
    monkeypatch.setattr(store_module, "READ_MANY_RUN", 256)
    rng = np.random.default_rng(0)
    blobs = [rng.integers(0, 256, 5000, dtype=np.uint8).tobytes() for _ in range(2)]
    files = []
    for i, blob in enumerate(blobs):
        (tmp_path / f"f{i}").write_bytes(blob)
        files.append(MappedFile(str(tmp_path / f"f{i}")))
    specs = [(1, 8, "<f4", (3, 2)), (0, 100, "<i2", ()), (0, 0, "<f8", (0, 4)),
             (0, 4, "<f4", (5,)), (1, 0, ">i4", (2, 2)), (0, 4, "<u1", (3,)),
             (0, 3000, "<f4", (400,)), (0, 200, "<u2", (30,)), (1, 600, "<f2", (2, 3, 4))]
    tensors = [Tensor(shape, np.dtype(code).newbyteorder("="),
                      Extent(files[f], offset, np.dtype(code), shape))
               for f, offset, code, shape in specs]
    tensors.insert(3, Tensor.from_array(np.arange(6.0).reshape(2, 3)))
    reads = []
    for file in files:
        monkeypatch.setattr(file, "pread", lambda o, n, _f=file.pread: reads.append(n) or _f(o, n))
    got = read_many(tensors, small=1000)
    assert len(reads) < len(tensors) - 2  # runs, not one read each
    for tensor, array in zip(tensors, got):
        want = tensor.read()
        assert (array.dtype, array.shape) == (want.dtype, want.shape)
        assert array.tobytes() == want.tobytes()
    for file in files:
        file.close()


def test_raw_parts_cut_from_a_read_per_run(tmp_path, monkeypatch) -> None:
    """Each tensor's bytes cut from one read per run of neighbours (any order, small gaps,
    empty ones at any offset, unread), each checksum checked on its own bytes; None for a
    dtype the tensor converts to, another getter, or extents past the end of the file."""
    import weightkit.converters.store as store_module
    from weightkit.converters.store import raw_parts
    monkeypatch.setattr(store_module, "READ_MANY_GAP", 16)
    blob = bytes(range(256)) * 4
    for name in ("f", "g"):
        (tmp_path / name).write_bytes(blob)
    f, g = MappedFile(str(tmp_path / "f")), MappedFile(str(tmp_path / "g"))
    checked, reads = [], []
    for file in (f, g):
        monkeypatch.setattr(file, "pread", lambda o, n, _p=file.pread: reads.append((o, n))
                            or _p(o, n))

    class Checked(Extent):
        __slots__ = ()

        def verify(self, data: memoryview) -> None:
            checked.append(bytes(data))

    def at(file, offset, code="<f4", shape=(2,), extent=Checked):
        dtype = np.dtype(code)
        return Tensor(shape, dtype.newbyteorder("="), extent(file, offset, dtype, shape))
    run = [at(f, 16, "<u1", (3,)), at(f, 8), at(f, 700, "<u1", (0,)), at(f, 22, "<i2", ()),
           at(g, 4), at(f, 100, "<u1", (1,))]
    assert [bytes(p) for p in raw_parts(run)] == [blob[16:19], blob[8:16], b"", blob[22:24],
                                                  blob[4:12], blob[100:101]]
    assert sorted(checked) == sorted([blob[16:19], blob[8:16], b"", blob[22:24], blob[4:12],
                                      blob[100:101]])
    assert sorted(reads) == [(4, 8), (8, 16), (100, 1)]  # runs: f 8..24, f 100, g 4..12
    assert raw_parts([]) == [] and [bytes(p) for p in raw_parts([at(f, 5, "<u1", (0,))])] == [b""]
    for tensors in ([at(f, 8, ">f4")], [Tensor.from_array(np.ones(2))],
                    [at(f, 8), at(f, 1020)]):
        assert raw_parts(tensors) is None
    with pytest.raises(ValueError):  # a checksum that fails fails as a read does
        def fail(self, data):
            raise ValueError("crc")
        raw_parts([at(f, 8, extent=type("Bad", (Extent,), {"verify": fail}))])
    f.close()
    g.close()


def test_read_many_notices_a_file_that_shrank(tmp_path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(4096))
    file = MappedFile(str(path))
    tensors = [Tensor((4,), np.float32, Extent(file, 16 * i, np.dtype("<f4"), (4,)))
               for i in range(200)]
    os.truncate(path, 100)
    with pytest.raises(FileChangedError):
        read_many(tensors)
    file.close()


def test_block_indices_of_a_scalar_and_of_empty_shapes() -> None:
    assert list(block_indices((), 4, 10)) == [()]
    assert list(block_indices((0, 5), 4, 10)) == []
    assert list(block_indices((5, 0), 4, 10)) == []


def test_string_tensors_chunk_by_element_count() -> None:
    values = np.array([b"a", b"bb", b"", b"ccc"], dtype=object)
    tensor = Tensor.from_array(values)
    assert is_string(tensor.dtype) and tensor.dtype_name == "string"
    assert [c.tolist() for c in tensor.iter_chunks(16)] == [[b"a", b"bb"], [b"", b"ccc"]]


def test_with_meta_and_map_are_lazy_and_keep_the_original() -> None:
    calls = []
    base = Tensor((4,), np.float32, lambda i: calls.append(i) or np.arange(4, dtype=np.float32)[i],
                  {"role": "optimizer", "key": "k"})
    renamed = base.with_meta(key="other")
    assert (base.meta["key"], renamed.meta, renamed.role) == (
        "k", {"role": "optimizer", "key": "other"}, "optimizer")
    doubled = base.map(lambda a: a * 2, dtype=np.float64)
    assert calls == []
    assert doubled[1:3].tolist() == [2.0, 4.0] and doubled.dtype == np.float64
    assert calls == [(slice(1, 3),)]


# -- Store ------------------------------------------------------------------------------------

def test_store_is_an_ordered_read_only_mapping_that_closes_once() -> None:
    closed = []
    store = Store.from_arrays({"b": np.zeros(1), "a": np.ones(2)}, format="npz",
                              meta={"x": 1}, on_close=lambda: closed.append(1))
    assert list(store) == ["b", "a"] and len(store) == 2 and "a" in store
    with pytest.raises(TypeError):
        store["c"] = store["a"]  # type: ignore[index]
    other = store.replace({"a": store["a"]}, meta={})
    assert (list(other), other.format, other.meta, store.meta) == (["a"], "npz", {}, {"x": 1})
    with store:
        pass
    store.close()
    assert closed == [1]
    assert "npz" in repr(store)


# -- dtypes -----------------------------------------------------------------------------------

NAMES = ["bool", "int4", "uint4", "int8", "uint8", "int16", "uint16", "int32", "uint32",
         "int64", "uint64", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
         "float8_e8m0fnu", "float4_e2m1fn", "bfloat16", "float16", "float32", "float64",
         "complex64", "complex128", "string"]


@pytest.mark.parametrize("name", NAMES)
def test_dtype_names_round_trip(name: str) -> None:
    assert dtype_name(dtype_from_name(name)) == name
    floating = name.startswith(("float", "bfloat"))
    assert is_floating(dtype_from_name(name)) == floating


def test_dtype_names_ignore_byte_order_and_refuse_the_unknown() -> None:
    assert dtype_name(np.dtype(">f4")) == "float32" and dtype_name(np.dtype("<i8")) == "int64"
    assert dtype_from_name("string") == STRING
    with pytest.raises(UsageError, match="unsupported dtype"):
        dtype_name(np.dtype("S3"))
    with pytest.raises(UsageError, match="known: bool"):
        dtype_from_name("float128")


# -- registry ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path, fmt", [
    ("m.safetensors", "safetensors"), ("M.SAFETENSORS", "safetensors"), ("a/b.npz", "npz"),
    ("m.weights.h5", "keras-weights-h5"), ("m.weights.json", "keras-weights-h5"),
    ("m.h5", "keras-h5"), ("m.hdf5", "keras-h5"), ("m.keras", "keras"),
    ("ckpt.index", "tf-checkpoint"), ("model.ckpt", "tf-checkpoint")])
def test_output_format_from_the_suffix(path: str, fmt: str) -> None:
    assert registry.format_for_output(path) == fmt


def test_output_format_of_a_saved_model_directory_and_of_nothing(tmp_path) -> None:
    (tmp_path / "saved_model.pb").write_bytes(b"")
    assert registry.format_for_output(tmp_path) == "saved-model"
    with pytest.raises(UsageError, match="--to FORMAT") as refused:
        registry.format_for_output(tmp_path / "weights.bin")
    assert "did you mean" not in str(refused.value)
    with pytest.raises(UsageError, match=r"from the name \(did you mean \.safetensors\?\)"):
        registry.format_for_output(tmp_path / "weights.safetenors")
    for typo, meant in (("model.weights.h", ".weights.h5"), ("m.kera", ".keras"),
                        ("m.kears", ".keras"), ("m.h", ".h5"), ("m.np", ".npz")):
        with pytest.raises(UsageError, match=rf"\(did you mean {re.escape(meant)}\?\)"):
            registry.format_for_output(tmp_path / typo)
    with pytest.raises(UsageError, match="unknown format 'onnx'"):
        registry.get("onnx")


@pytest.mark.parametrize("name, fmt", [("ck/after", "tf-checkpoint"),
                                       ("ck/model.ckpt-100", "tf-checkpoint"),
                                       ("ck/after.bin", None), ("ck", None)])
def test_a_name_without_a_suffix_is_a_checkpoint_prefix_for_a_checkpoint(tmp_path, name,
                                                                        fmt) -> None:
    """TensorFlow names checkpoints by a prefix without a suffix; converting one to such a
    name writes a checkpoint. Other inputs, other suffixes and directories still need --to."""
    prefix = str(FIXTURES / "mlp--keras3.ckpt")
    (tmp_path / "ck").mkdir()
    for source, source_format in ((prefix, None), (prefix, "ckpt"),
                                  (FIXTURES / "mlp--keras3.weights.h5", None)):
        is_ckpt = source == prefix
        if fmt is not None and is_ckpt:
            assert registry.format_for_output(tmp_path / name, source, source_format) == fmt
        else:
            with pytest.raises(UsageError, match="--to FORMAT"):
                registry.format_for_output(tmp_path / name, source, source_format)
    with pytest.raises(UsageError, match="--to FORMAT"):
        registry.format_for_output(tmp_path / "ck" / "x", prefix, "safetensors")
    with pytest.raises(UsageError, match="a checkpoint is written to a prefix in one: give "):
        registry.format_for_output(tmp_path / "ck", prefix)  # a directory: says what to give


def test_load_with_a_format_checks_the_content(tmp_path) -> None:
    np.savez(tmp_path / "x.npz", a=np.zeros(2))
    with pytest.raises(UnknownFormatError, match="not a safetensors file") as refused:
        weightkit.load(tmp_path / "x.npz", "safetensors")
    # the format that does read it is named (a new user tried --from keras on a tf.keras .h5)
    assert refused.value.message == ("not a safetensors file; it reads as npz (NumPy .npz "
                                     "archive): use --from npz, or no --from")
    (tmp_path / "x.bin").write_bytes(b"\x00garbage" * 50)
    with pytest.raises(UnknownFormatError) as refused:
        weightkit.load(tmp_path / "x.bin", "safetensors")
    assert refused.value.message == "not a safetensors file"  # nothing reads it: no guess


def test_save_refuses_what_the_format_would_lose(tmp_path, monkeypatch) -> None:
    from weightkit.converters import npz
    monkeypatch.setattr(npz, "losses", lambda store, like=None: ["everything"])
    store = Store.from_arrays({"a": np.zeros(1)})
    with pytest.raises(LossyConversionError, match="would lose: everything"):
        weightkit.save(store, tmp_path / "x.npz")
    assert not any(tmp_path.iterdir())
    weightkit.save(store, tmp_path / "x.npz", allow_lossy=True)
    assert weightkit.losses(store, "npz") == ["everything"]


def test_detection_reads_content_and_names_the_formats(tmp_path) -> None:
    weightkit.save(Store.from_arrays({"a": np.zeros(2)}), tmp_path / "a.safetensors")
    os.replace(tmp_path / "a.safetensors", tmp_path / "a.npz")
    assert registry.detect(tmp_path / "a.npz") == "safetensors"
    (tmp_path / "junk").write_bytes(b"junk")
    with pytest.raises(UnknownFormatError, match="supported formats: safetensors, saved-model"):
        registry.detect(tmp_path / "junk")


# -- atomic output ----------------------------------------------------------------------------

def test_atomic_output_renames_on_success_with_ordinary_permissions(tmp_path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    with atomic_output() as out:
        temp = out.path(tmp_path / "f.bin")
        with open(temp, "wb") as f:
            f.write(b"new")
        directory = out.path(tmp_path / "d", directory=True)
        (tmp_path / directory / "inner").write_bytes(b"x")
        assert not (tmp_path / "f.bin").exists()
    assert (tmp_path / "f.bin").read_bytes() == b"new"
    assert (tmp_path / "d" / "inner").read_bytes() == b"x"
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o777 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f.bin"]


def test_atomic_output_keeps_old_files_and_removes_temporaries_on_error(tmp_path) -> None:
    (tmp_path / "f.bin").write_bytes(b"old")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "old").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output() as out:
            with open(out.path(tmp_path / "f.bin"), "wb") as f:
                f.write(b"new")
            out.path(tmp_path / "d", directory=True)
            raise KeyboardInterrupt
    assert (tmp_path / "f.bin").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f.bin"]
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["old"]
    with atomic_output() as out:
        (tmp_path / out.path(tmp_path / "d", directory=True) / "new").write_bytes(b"new")
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f.bin"]


def test_atomic_output_needs_an_existing_directory(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        with atomic_output() as out:
            out.path(tmp_path / "missing" / "f.bin")


# -- input paths ------------------------------------------------------------------------------

def test_check_input_refuses_missing_files_and_fifos(tmp_path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        check_input(str(tmp_path / "missing"))
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UnsafeFileError, match="FIFO"):
        check_input(str(tmp_path / "fifo"))
    assert stat.S_ISDIR(check_input(str(tmp_path)).st_mode)


def test_inside_refuses_names_and_links_that_leave_the_directory(tmp_path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    assert inside(str(root), "sub/x") == str(root / "sub" / "x")
    for name in ("../x", "/etc/passwd", "a\\b", "a\x00b", "sub/../../x"):
        with pytest.raises(UnsafeFileError):
            inside(str(root), name)
    (root / "out").symlink_to(tmp_path)
    with pytest.raises(UnsafeFileError, match="outside"):
        inside(str(root), "out/x")
    with pytest.raises(UnsafeFileError, match="outside"):
        check_tree(str(root))
    (root / "out").unlink()
    (root / "fine").symlink_to(root / "sub")
    check_tree(str(root))
    os.mkfifo(root / "sub" / "fifo")
    with pytest.raises(UnsafeFileError, match="not a regular file"):
        check_tree(str(root))


def test_same_file_follows_links(tmp_path) -> None:
    (tmp_path / "a").write_bytes(b"")
    os.link(tmp_path / "a", tmp_path / "b")
    assert same_file(str(tmp_path / "a"), str(tmp_path / "b"))
    assert not same_file(str(tmp_path / "a"), str(tmp_path / "missing"))


# -- escaping ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("dense/kernel:0", "dense/kernel:0"),
    ("a\nb", "a\\x0ab"), ("\x1b[31mred", "\\x1b[31mred"), ("tab\there", "tab\\x09here"),
    ("back\\slash", "back\\\\slash"), ("::error::x", ":\\x3aerror:\\x3ax"),
    (":::", ":\\x3a:"), ("\u202eevil", "\\u202eevil"), ("zero\u200bwidth", "zero\\u200bwidth"),
    ("line\u2028sep", "line\\u2028sep"), ("\x85c1", "\\x85c1"), ("é漢字", "é漢字")])
def test_safe_escapes_what_could_reach_a_terminal_or_ci_log(text: str, want: str) -> None:
    assert safe(text) == want


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_safe_never_lets_controls_or_workflow_commands_through(text: str) -> None:
    out = safe(text)
    assert "::" not in out and "\n" not in out and "\x1b" not in out and "\r" not in out
    assert all(ord(c) >= 0x20 and not 0x7f <= ord(c) <= 0x9f for c in out)


def test_read_many_reads_far_extents_one_by_one(tmp_path, monkeypatch) -> None:
    """Small extents further apart than READ_MANY_GAP are each their own run: one read each,
    no bytes between them read."""
    path = tmp_path / "f"
    path.write_bytes(bytes(2_000 * 8192))
    file = MappedFile(str(path))
    tensors = [Tensor((4,), np.float32, Extent(file, 8192 * i, np.dtype("<f4"), (4,)))
               for i in range(2_000)]
    reads = []
    monkeypatch.setattr(file, "pread", lambda o, n, _f=file.pread: reads.append(n) or _f(o, n))
    assert len(read_many(tensors)) == 2_000
    assert reads == [16] * 2_000
    file.close()


def test_a_write_plan_lays_out_when_first_asked_and_again_after_an_unrefused_error() -> None:
    """WritePlan.of computes the detail when the detail or refusal is first read (losses need
    no layout); an error of `refused` is the refusal, any other is raised, and raised again
    on the next read rather than leaving a plan that looks made."""
    from weightkit.converters.errors import UsageError
    from weightkit.converters.format import WritePlan
    calls = []

    def layout():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk gone")
        raise UsageError("cannot hold it")
    plan = WritePlan.of(Store(), None, ["a loss"], layout)
    assert plan.losses == ["a loss"] and calls == []
    with pytest.raises(OSError):
        plan.refusal
    assert isinstance(plan.refusal, UsageError) and plan.detail is None and len(calls) == 2
    plan.refusal  # made once: not laid out again
    assert len(calls) == 2
