"""npz: the conformance suite, numpy as the oracle (np.load reads what we write, we read what
np.savez writes), and hostile archives."""
from __future__ import annotations

import struct
import tracemalloc
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from conformance import FormatConformance, same_array, sample

import weightkit
from weightkit.converters import npz
from weightkit.converters.errors import (CorruptFileError, UnknownFormatError, UnsafeFileError,
                                         UsageError)
from weightkit.converters.store import Store

ALL_EXTRA = ("uint8", "int16", "uint16", "int32", "uint32", "uint64", "float64", "complex64",
             "complex128", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
             "float8_e8m0fnu", "string", "int4", "uint4", "float4_e2m1fn")


class TestNpzConformance(FormatConformance):
    format = "npz"
    suffix = ".npz"
    extra_dtypes = ALL_EXTRA


def load(path: Path) -> Store:
    return weightkit.load(path, "npz")


# -- numpy as oracle --------------------------------------------------------------------------

def test_np_load_reads_every_member_we_write(tmp_path: Path) -> None:
    arrays = {f"{d}/{i}": sample(d, s, seed=i) for i, (d, s) in enumerate(
        (d, s) for d in ("float32", "int8", "bool", "complex128", "bfloat16", "float8_e4m3fn",
                         "int4", "string") for s in ((2, 3), (0,), ()))}
    path = tmp_path / "x.npz"
    weightkit.save(Store.from_arrays(arrays), path)
    with np.load(path, allow_pickle=False) as loaded:
        assert [f for f in loaded.files if f != npz.CARRY_MEMBER] == list(arrays)
        for name, array in arrays.items():
            got = loaded[name]
            kind = name.split("/")[0]
            if kind == "bfloat16":
                assert got.dtype == np.uint16 and np.array_equal(got, array.view(np.uint16))
            elif kind == "float8_e4m3fn":
                assert got.dtype == np.uint8 and np.array_equal(got, array.view(np.uint8))
            elif kind == "int4":
                assert got.dtype == np.int8 and np.array_equal(got, array.astype(np.int8))
            elif kind == "string":
                assert got.dtype.kind == "S"
                assert got.tolist() == np.vectorize(lambda b: b.rstrip(b"\0"), otypes=[object])(
                    array).tolist() if array.size else got.size == 0
            else:
                assert same_array(got, array), name


def test_we_read_savez_and_savez_compressed(tmp_path: Path) -> None:
    arrays = {"c_order": np.arange(24, dtype=np.int32).reshape(4, 6),
              "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
              "big_endian": np.arange(5, dtype=">f8"), "scalar": np.array(3.5, np.float16),
              "empty": np.zeros((0, 4), np.uint8), "bytes": np.array([b"ab", b"c"]),
              "text": np.array(["é", "xyz"]), "flag": np.array([True, False])}
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / f"{save.__name__}.npz"
        save(path, **arrays)
        assert npz.sniff(str(path), path.read_bytes()[:4096])
        with load(path) as store:
            assert list(store) == list(arrays)
            for name, array in arrays.items():
                tensor = store[name]
                if array.dtype.kind in "SU":
                    want = [v.encode() if isinstance(v, str) else v for v in array.tolist()]
                    assert tensor.read().tolist() == want
                    continue
                assert tensor.dtype == array.dtype.newbyteorder("=")
                assert np.array_equal(tensor.read(), array), name
                if array.size and array.ndim:
                    assert np.array_equal(tensor[1:3], array[1:3]), name
                    assert np.array_equal(tensor[-1], array[-1]), name
                    assert np.array_equal(np.concatenate(list(tensor.iter_chunks(8))),
                                          array.reshape(-1)), name


def test_unicode_arrays_are_written_back_as_unicode(tmp_path: Path) -> None:
    np.savez(tmp_path / "u.npz", text=np.array(["é", "xyz"]))
    with load(tmp_path / "u.npz") as store:
        weightkit.save(store, tmp_path / "back.npz")
    with np.load(tmp_path / "back.npz") as loaded:
        assert loaded["text"].dtype == np.dtype("<U3")
        assert loaded["text"].tolist() == ["é", "xyz"]


def test_stored_members_are_zero_copy(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", a=np.arange(1000, dtype=np.float64))
    with load(tmp_path / "x.npz") as store:
        array = store["a"].read()
        assert not array.flags.owndata and not array.flags.writeable


def test_compressed_members_decompress_only_what_is_read(tmp_path: Path) -> None:
    path = tmp_path / "z.npz"
    np.savez_compressed(path, a=np.zeros((4096, 1024), np.float32))  # 16 MiB
    with load(path) as store:
        tracemalloc.start()
        try:
            count = sum(chunk.size for chunk in store["a"].iter_chunks(1 << 20))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert count == 4096 * 1024
    assert peak < 4 << 20, peak


def test_trailing_nul_strings_round_trip_exactly(tmp_path: Path) -> None:
    strings = np.array([b"a\x00", b"", b"\x00\x00", b"b"], dtype=object)
    weightkit.save(Store.from_arrays({"s": strings}), tmp_path / "s.npz")
    with load(tmp_path / "s.npz") as store:
        assert store["s"].read().tolist() == strings.tolist()
        assert store["s"][1:3].tolist() == strings[1:3].tolist()


def test_equal_stores_give_equal_bytes(tmp_path: Path) -> None:
    store = Store.from_arrays({"a": np.arange(3.0), "b/c": np.ones((2, 2), ml_dtypes.bfloat16)})
    weightkit.save(store, tmp_path / "1.npz")
    weightkit.save(store, tmp_path / "2.npz")
    assert (tmp_path / "1.npz").read_bytes() == (tmp_path / "2.npz").read_bytes()


@pytest.mark.parametrize("name", ["", "../x", "/abs", "a\\b", "a//b", "a/./b", "a/"])
def test_unsafe_tensor_names_are_refused_on_write(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError):
        weightkit.save(Store.from_arrays({name: np.zeros(1)}), tmp_path / "x.npz")
    assert not any(tmp_path.iterdir())


# -- hostile archives -------------------------------------------------------------------------

def npy_bytes(array: np.ndarray) -> bytes:
    import io
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def make_zip(path: Path, members: list[tuple[str, bytes]],
             compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("name", ["../evil.npy", "/abs.npy", "a\\b.npy", "a/../../b.npy",
                                  "C:x.npy"])
def test_unsafe_member_names_are_refused(tmp_path: Path, name: str) -> None:
    path = make_zip(tmp_path / "x.npz", [(name, npy_bytes(np.zeros(2)))])
    with pytest.raises(UnsafeFileError, match="member name"):
        npz.read(str(path))


def test_duplicate_members_are_refused(tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        path = make_zip(tmp_path / "x.npz", [("a.npy", npy_bytes(np.zeros(2))),
                                             ("a.npy", npy_bytes(np.ones(2)))])
    with pytest.raises(UnsafeFileError, match="twice"):
        npz.read(str(path))


def test_object_arrays_are_refused_without_unpickling(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "x.npz", [("o.npy", npy_bytes(np.array([{"a": 1}], object)))])
    with pytest.raises(UnsafeFileError, match="pickle"):
        npz.read(str(path))


def test_encrypted_and_exotic_compression_are_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "b.npz", [("a.npy", npy_bytes(np.zeros(100)))], zipfile.ZIP_BZIP2)
    with pytest.raises(UnsafeFileError, match="compression"):
        npz.read(str(path))
    path = make_zip(tmp_path / "e.npz", [("a.npy", npy_bytes(np.zeros(2)))])
    data = bytearray(path.read_bytes())
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + flag_at
        data[at] |= 1
    path.write_bytes(bytes(data))
    with pytest.raises(UnsafeFileError, match="encrypted"):
        npz.read(str(path))


def test_decompression_bomb_is_refused_before_reading(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "z.npz", [("a.npy", npy_bytes(np.zeros(1 << 16)))],
                    zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 0xF0000000)  # declared uncompressed size
    path.write_bytes(bytes(data))
    with pytest.raises(UnsafeFileError, match="bomb"):
        npz.read(str(path))


def test_legitimately_compressible_members_are_not_bombs(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "z.npz", a=np.zeros(1 << 22, np.uint8))
    with load(tmp_path / "z.npz") as store:
        assert store["a"].shape == (1 << 22,)


def test_header_shape_must_match_data(tmp_path: Path) -> None:
    good = npy_bytes(np.zeros(4, np.float32))
    lying = good.replace(b"(4,)", b"(9,)")
    path = make_zip(tmp_path / "x.npz", [("a.npy", lying)])
    with pytest.raises(CorruptFileError, match="needs 36 bytes"):
        npz.read(str(path))


@pytest.mark.parametrize("header", [b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), "
                                    b"'x': __import__('os')}",
                                    b"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}",
                                    b"{'descr': 'not a dtype', 'fortran_order': False, "
                                    b"'shape': (2,)}",
                                    # numpy parses a comma string's repeat counts with
                                    # ast.literal_eval, which raises SyntaxError (fuzz finding)
                                    b"{'descr': ',f4', 'fortran_order': False, 'shape': (2,)}",
                                    b"{'descr': '(2,,)f4', 'fortran_order': False, "
                                    b"'shape': (2,)}"])
def test_npy_headers_are_parsed_as_literals_only(tmp_path: Path, header: bytes) -> None:
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 8
    path = make_zip(tmp_path / "x.npz", [("a.npy", member)])
    with pytest.raises(CorruptFileError):
        npz.read(str(path))


def test_other_members_and_keras_archives(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "x.npz", [("a.npy", npy_bytes(np.zeros(2))), ("readme.txt", b"hi")])
    assert not npz.sniff(str(path), path.read_bytes()[:4096])
    with pytest.raises(UnknownFormatError, match="readme.txt"):
        npz.read(str(path))
    keras = make_zip(tmp_path / "m.keras", [("config.json", b"{}"), ("model.weights.h5", b"")])
    assert not npz.sniff(str(keras), keras.read_bytes()[:4096])


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", b"\x00" * 100])
def test_garbage_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(CorruptFileError):
        npz.read(str(path))


def test_corrupted_compressed_data_raises_a_weightkit_error(tmp_path: Path) -> None:
    path = tmp_path / "z.npz"
    np.savez_compressed(path, a=np.arange(100000, dtype=np.int64))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError):
        with npz.read(str(path)) as store:
            store["a"].read()


def test_a_flipped_bit_in_a_stored_member_fails_its_crc(tmp_path: Path) -> None:
    array = np.arange(64, dtype=np.float32)
    path = tmp_path / "x.npz"
    np.savez(path, a=array)
    data = bytearray(path.read_bytes())
    data[data.find(array.tobytes()) + 5] ^= 0x10
    path.write_bytes(bytes(data))
    with npz.read(str(path)) as store:
        assert store["a"].shape == (64,)  # metadata is still readable
        with pytest.raises(CorruptFileError, match="CRC"):
            store["a"][:2]


@pytest.mark.parametrize("flip", ["data", "header"])
def test_small_members_read_together_are_crc_checked(tmp_path: Path, flip: str) -> None:
    """Stored members are Extents: `read_many` reads neighbours in one read, and each member's
    zip CRC-32 (over its .npy header and data) is checked on those bytes before use; a flipped
    bit in either part is a CorruptFileError naming the member, big-endian and C-order members
    read as numpy reads them."""
    from weightkit.converters.store import Extent, read_many
    arrays = {f"w{i}": np.arange(i, i + 5, dtype=np.float32) for i in range(40)}
    arrays["be"] = np.arange(6, dtype=">i4").reshape(2, 3)
    path = tmp_path / "x.npz"
    np.savez(path, **arrays)
    with npz.read(str(path)) as store:
        assert all(isinstance(t._get, Extent) for t in store.values())
        for name, got in zip(store, read_many(list(store.values()))):
            np.testing.assert_array_equal(got, arrays[name])
    data = bytearray(path.read_bytes())
    target = arrays["w17"].tobytes()
    if flip == "data":
        data[data.find(target) + 3] ^= 0x10
    else:  # a padding space of the .npy header made a tab: the header still parses the same
        assert data[data.find(target) - 2] == 0x20
        data[data.find(target) - 2] = 0x09
    path.write_bytes(bytes(data))
    with npz.read(str(path)) as store:
        with pytest.raises(CorruptFileError, match="'w17.npy': CRC-32"):
            read_many(list(store.values()))


def test_names_with_colons_are_fine(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "x.npz", [("::error::x.npy", npy_bytes(np.zeros(2)))])
    with npz.read(str(path)) as store:
        assert list(store) == ["::error::x"]


def test_names_that_are_not_unicode_are_refused_and_metadata_survives(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not valid Unicode"):
        weightkit.save(Store.from_arrays({"a\ud800": np.zeros(1)}), tmp_path / "x.npz")
    assert not any(tmp_path.iterdir())
    store = Store.from_arrays({"a": np.zeros(1)}, meta={"odd": {"text": "\udcff é"}})
    weightkit.save(store, tmp_path / "x.npz")
    with load(tmp_path / "x.npz") as back:
        assert back.meta == store.meta


# -- the zip container, written by hand ------------------------------------------------------

def _zipfile_bytes(members: list[tuple[str, bytes, bool]]) -> bytes:
    """What zipfile writes for the same members: `ZipInfo(name, DATE)`, stored, the size known
    when the member is opened (its bytes whole, or streamed in two pieces)."""
    import io
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, data, streamed in members:
            info = zipfile.ZipInfo(name, npz.DATE)
            if streamed:
                info.file_size = len(data)
                with zf.open(info, "w") as member:
                    member.write(data[:3])
                    member.write(data[3:])
            else:
                zf.writestr(info, data)
    return out.getvalue()


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(members=st.lists(st.tuples(st.text(st.characters(blacklist_categories=("Cs",),
                                                        blacklist_characters="\x00/\\"),
                                          min_size=1, max_size=8),
                                  st.binary(max_size=300) | st.sampled_from(
                                      [bytes(n) for n in (38, 39, 40, 41, 143, 145, 150, 151)]),
                                  st.booleans()),
                        max_size=12, unique_by=lambda m: m[0]),
       limit=st.sampled_from([(1 << 31) - 1, 150, 40]), count_limit=st.sampled_from([65535, 3]))
def test_the_zip_writer_writes_zipfiles_bytes(members, limit, count_limit, monkeypatch_module
                                              ) -> None:
    """StoredZipWriter's archive is byte for byte zipfile's, zip64 records included: the size
    and count limits are lowered in both so that zip64 extra fields (sizes, offsets) and end
    records appear in small archives."""
    import io
    from weightkit.converters import zipwrite
    with monkeypatch_module.context() as patch:
        patch.setattr(zipfile, "ZIP64_LIMIT", limit)
        patch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", count_limit)
        patch.setattr(zipwrite, "ZIP64_LIMIT", limit)
        patch.setattr(zipwrite, "FILECOUNT_LIMIT", count_limit)
        expected = _zipfile_bytes(members)
        out = io.BytesIO()
        archive = zipwrite.StoredZipWriter(out, npz.DATE)
        for name, data, streamed in members:
            if streamed:
                assert archive.add_stream(name, len(data), [data[:3], data[3:]]) == len(data)
            else:
                archive.add(name, data)
        archive.close()
    assert out.getvalue() == expected


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch
