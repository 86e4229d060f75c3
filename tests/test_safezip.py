"""The one zip reader of npz and .keras (converters/safezip.py): its rules on names, sizes and
layout, and that real archives (numpy's, zlib's best compression) pass them. The crafted corpus
(tests/make_crafted.py) runs the same attacks through every command of both formats."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from make_crafted import _local_method, _zip_patch, npy_bytes, overlapping_zip, zip_bytes
from weightkit.converters.errors import CorruptFileError, UnsafeFileError
from weightkit.converters.safezip import SafeZip, check_member_name
from weightkit.converters.store import check_shape, shown


@pytest.mark.parametrize("name", ["../x", "a/../b", "/etc/x", "a\\b", "C:x", "a//b", "./a", "a/./b",
                                  "", "a\x00b", "a/.."])
def test_names_that_could_leave_the_archive_are_refused(name):
    with pytest.raises(UnsafeFileError):
        check_member_name(name, "x.zip")


@pytest.mark.parametrize("name", ["a.npy", "dense/kernel.npy", "assets/", "assets/vocab.txt",
                                  "a..b.npy", ".hidden", "é/ü.npy"])
def test_ordinary_names_pass(name):
    check_member_name(name, "x.zip")


def _open(tmp_path: Path, data: bytes) -> SafeZip:
    path = tmp_path / "x.zip"
    path.write_bytes(data)
    return SafeZip(str(path))


def test_numpy_archives_and_zlib_zeros_are_read(tmp_path):
    buf = io.BytesIO()
    np.savez_compressed(buf, zeros=np.zeros(1 << 22, np.uint8), w=np.arange(5))
    with _open(tmp_path, buf.getvalue()) as archive:  # zeros deflate 1028:1, under 1032:1
        names = [m.name for m in archive.members]
        assert names == ["zeros.npy", "w.npy"]
        data = archive.read(archive.by_name["zeros.npy"])
        assert len(data) > 1 << 22


def test_crc_is_checked_for_stored_members(tmp_path):
    data = bytearray(zip_bytes([("a.npy", npy_bytes(np.arange(100)))]))
    data[data.find(np.arange(100).tobytes()) + 3] ^= 1
    with _open(tmp_path, bytes(data)) as archive, pytest.raises(CorruptFileError, match="CRC"):
        archive.read(archive.members[0])


@pytest.mark.parametrize("make, error, match", [
    (lambda v: overlapping_zip([("a.npy", npy_bytes(np.arange(3)))]), UnsafeFileError, "share"),
    (lambda v: _local_method(v, "a.npy", 8), CorruptFileError, "method"),
    (lambda v: _zip_patch(v, "a.npy", file_size=0x7FFFFFFF), CorruptFileError, "stored"),
    (lambda v: _zip_patch(v, "a.npy", flags=0x40), UnsafeFileError, "encrypted"),
    (lambda v: _zip_patch(v, "a.npy", version=99), CorruptFileError, "version"),
])
def test_layout_lies_are_refused_before_reading(tmp_path, make, error, match):
    valid = zip_bytes([("a.npy", npy_bytes(np.arange(3)))])
    with pytest.raises(error, match=match):
        _open(tmp_path, make(valid))


def test_a_deflated_member_declaring_more_than_deflate_gives_is_a_bomb(tmp_path):
    valid = zip_bytes([("a.npy", npy_bytes(np.zeros(1 << 16)))], deflate=True)
    with pytest.raises(UnsafeFileError, match="bomb"):
        _open(tmp_path, _zip_patch(valid, "a.npy", file_size=0xF0000000))


def test_shapes_numpy_cannot_hold_are_named_without_printing_them():
    with pytest.raises(CorruptFileError, match="rank 65"):
        check_shape([1] * 65, "t", "f")
    with pytest.raises(CorruptFileError, match="2\\*\\*63 bytes or more.*about 2\\*\\*"):
        check_shape([10 ** 4000, 10 ** 4000], "t", "f")
    with pytest.raises(CorruptFileError, match="negative"):
        check_shape([3, -1], "t", "f")
    with pytest.raises(CorruptFileError):
        check_shape([0, 1 << 62, 1 << 62], "t", "f", 4)  # zero-size, yet numpy refuses it
    assert check_shape([0, 1 << 40], "t", "f", 4) == (0, 1 << 40)
    assert np.empty((0, 1 << 40), np.float32).size == 0  # what numpy accepts, we accept
    assert "about 2**13287" in shown([10 ** 4000])
