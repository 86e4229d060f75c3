"""The one zip reader of npz and .keras (converters/safezip.py): its rules on names, sizes and
layout, and that real archives (numpy's, zlib's best compression) pass them. The crafted corpus
(tests/make_crafted.py) runs the same attacks through every command of both formats."""
from __future__ import annotations

import io
import zipfile
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


def test_zipfile_failing_once_is_not_asked_again(tmp_path, monkeypatch):
    """Deflated members are inflated by zipfile, opened once per archive; when it cannot read
    the archive, every deflated read fails with the file named, without opening it again."""
    from weightkit.converters import safezip
    buf = io.BytesIO()
    np.savez_compressed(buf, a=np.arange(5), b=np.arange(7))
    opened = []

    def refuse(file):
        opened.append(file)
        raise zipfile.BadZipFile("Bad magic number for central directory")
    monkeypatch.setattr(safezip.zipfile, "ZipFile", refuse)
    with _open(tmp_path, buf.getvalue()) as archive:
        for name in ("a.npy", "b.npy", "a.npy"):
            with pytest.raises(CorruptFileError, match=f"x.zip.*{name}"):
                archive.read(archive.by_name[name])
    assert len(opened) == 1 and opened[0].closed


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


# -- the central directory, parsed by hand: zipfile as the oracle ------------------------------

class _Bytes:
    """The little of a seam source `directory` uses, over bytes in memory."""

    def __init__(self, data: bytes):
        self.data, self.size = data, len(data)

    def pread(self, offset: int, n: int) -> bytes:
        return self.data[offset:offset + n]


def _zipfile_view(data: bytes) -> list[tuple] | None:
    import zipfile
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return [(i.orig_filename, i.compress_type, i.flag_bits, i.CRC, i.compress_size,
                     i.file_size, i.header_offset, i.extract_version, i.date_time,
                     i.external_attr) for i in zf.infolist()]
    except Exception:
        return None


def _our_view(data: bytes) -> list[tuple] | None:
    from weightkit.converters.safezip import ZipFormatError, directory
    try:
        members, _ = directory(_Bytes(data))
    except ZipFormatError:
        return None
    return [(m.name, m.method, m.flags, m.crc, m.compressed, m.size, m.header_offset,
             m.extract_version, m.date_time, m.external_attr) for m in members]


from hypothesis import assume, given, settings, strategies as st  # noqa: E402


@settings(max_examples=80, deadline=None)
@given(names=st.lists(st.text(st.characters(blacklist_categories=("Cs",),
                                            blacklist_characters="\x00"), min_size=1,
                              max_size=6), max_size=6, unique=True),
       deflate=st.booleans(), zip64=st.booleans(), comment=st.binary(max_size=40),
       prefix=st.binary(max_size=30), flips=st.lists(st.tuples(st.integers(0, 10 ** 6),
                                                                st.integers(1, 255)),
                                                      max_size=3))
def test_the_directory_reads_as_zipfile_reads_it(names, deflate, zip64, comment, prefix, flips):
    """`directory` lists what zipfile lists (names, methods, flags, CRCs, sizes, offsets,
    versions, times, attributes) for archives zipfile writes, with comments, zip64 records and
    data prepended; with bytes flipped anywhere, whenever both parse they agree."""
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as zf:
        for i, name in enumerate(names):
            with zf.open(zipfile.ZipInfo(name, (2020, 1, 2, 3, 4, 6)), "w",
                         force_zip64=zip64) as member:
                member.write(bytes(range(i * 7 % 256)) * 3)
        zf.comment = comment
    data = bytearray(prefix + buf.getvalue())
    expected = _zipfile_view(bytes(data))
    assume(expected is not None)  # (a comment holding the end record's signature fools both)
    assert _our_view(bytes(data)) == expected
    for at, xor in flips:
        data[at % len(data)] ^= xor
    ours, theirs = _our_view(bytes(data)), _zipfile_view(bytes(data))
    if ours is not None and theirs is not None:
        assert ours == theirs


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="a/.\\:\x00Cé", max_size=8))
def test_the_quick_name_check_refuses_what_the_rules_refuse(name):
    """check_member_name decides common names at once; it refuses exactly what the rules
    (relative path, non-empty parts, no '.' or '..', no backslash, NUL or drive) refuse."""
    parts = name.split("/")
    refused = (not name or name.startswith("/") or "\\" in name or "\x00" in name
               or (len(name) > 1 and name[0].isalpha() and name[1] == ":")
               or any(p in ("", ".", "..") for p in parts[:-1] + [parts[-1] or "x"]))
    try:
        check_member_name(name, "x.zip")
    except UnsafeFileError:
        assert refused
    else:
        assert not refused
