"""Generate the crafted corpus of hostile and broken weights files (issue 7).

    python tests/make_crafted.py OUT_DIR     # writes the corpus and OUT_DIR/MANIFEST.json

`make_corpus(root)` returns a `Corpus`: one valid base file per format, the crafted cases that
weightkit must refuse (each naming the format it targets, the path to give weightkit and the
error types acceptable for it), files with hostile tensor names that must be shown escaped, and
valid files under a wrong suffix that must be read by content. Everything is built from bytes,
numpy, zipfile and h5py: no TensorFlow and no weightkit writer, so a broken writer cannot hide a
broken reader. Files far bigger than they look (bombs, huge headers) are sparse.
"""
from __future__ import annotations

import json
import os
import struct
import sys
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

CORRUPT = ("CorruptFileError",)  # the format is certain, the content is not
UNSAFE = ("UnsafeFileError",)
BROKEN = ("CorruptFileError", "UnknownFormatError")  # a reader may not even recognise it
REFUSED = ("CorruptFileError", "UnsafeFileError", "UnknownFormatError")  # a bomb or a big lie
NOT_INPUT = ("UsageError", "UnsafeFileError", "CorruptFileError", "UnknownFormatError")

HOSTILE_NAMES = ("evil\nname", "\x1b[31mred\x1b[0m", "::error::pwned", "rtl\u202eevil")
KERNEL = (np.arange(12, dtype=np.float32).reshape(4, 3) / 10).astype(np.float32)
BIAS = np.array([0.5, -0.5, 1.0], dtype=np.float32)
BOMB_ELEMENTS = 1 << 32  # float32: 16 GiB declared, a few bytes stored


@dataclass(frozen=True)
class Case:
    name: str  # "<format>/<case>"
    format: str  # registry format name the case targets
    path: str  # relative to the corpus root: what weightkit is given
    errors: tuple[str, ...]  # acceptable weightkit error class names
    about: str
    named: str = ""  # what the error line must name if not `path` (the part at fault)


@dataclass(frozen=True)
class Valid:
    """A file that is strange but valid: every command reads it right (exit 0)."""
    name: str  # "<format>/<case>"
    format: str
    path: str
    expected: str  # an .npz (written by numpy) of the values every variable must have
    about: str


@dataclass
class Corpus:
    root: Path
    bases: dict[str, str] = field(default_factory=dict)  # format -> valid file
    cases: list[Case] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # format -> file with HOSTILE_NAMES
    suffixes: list[tuple[str, str]] = field(default_factory=list)  # (format, misnamed valid file)
    sentinels: list[str] = field(default_factory=list)  # files a payload would create
    valids: list[Valid] = field(default_factory=list)

    def add(self, fmt: str, case: str, path: str, errors: tuple[str, ...], about: str,
            named: str = "") -> None:
        self.cases.append(Case(f"{fmt}/{case}", fmt, path, errors, about, named))

    def valid(self, fmt: str, case: str, path: str, values: dict[str, np.ndarray],
              about: str) -> None:
        """A valid file at `path` whose variables (canonical names) hold `values`."""
        expected = self.path(f"expected/{fmt}/{case}.npz")
        expected.parent.mkdir(parents=True, exist_ok=True)
        np.savez(expected, **{f"v{i}": v for i, v in enumerate(values.values())},
                 names=np.array(list(values), dtype=object) if values else np.array([]))
        self.valids.append(Valid(f"{fmt}/{case}", fmt, path,
                                 str(expected.relative_to(self.root)), about))

    def expected(self, valid: Valid) -> dict[str, np.ndarray]:
        with np.load(self.path(valid.expected), allow_pickle=True) as z:  # our own file
            names = list(z["names"])
            return {n: z[f"v{i}"] for i, n in enumerate(names)}

    def path(self, rel: str) -> Path:
        return self.root / rel

    def manifest(self) -> dict:
        return {"bases": self.bases, "cases": [asdict(c) for c in self.cases],
                "names": self.names, "suffixes": self.suffixes, "sentinels": self.sentinels,
                "valids": [asdict(v) for v in self.valids], "hostile_names": list(HOSTILE_NAMES)}


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _sparse(path: Path, head: bytes, size: int) -> Path:
    """A file of `size` bytes that starts with `head` and occupies almost no disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return path


def _flip(data: bytes, offset: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1 << bit
    return bytes(out)


def _common(c: Corpus, fmt: str, suffix: str, valid: bytes) -> None:
    """Cases that apply to every single-file format."""
    d = fmt
    c.add(fmt, "empty", str(_write(c.path(f"{d}/empty{suffix}"), b"").relative_to(c.root)),
          BROKEN, "an empty file")
    c.add(fmt, "garbage", str(_write(c.path(f"{d}/garbage{suffix}"),
                                     bytes(range(256)) * 8).relative_to(c.root)),
          BROKEN, "bytes of no format")
    for name, size in (("truncated-half", len(valid) // 2), ("truncated-head", 16),
                       ("truncated-tail", len(valid) - 7)):
        c.add(fmt, name, str(_write(c.path(f"{d}/{name}{suffix}"), valid[:size])
                             .relative_to(c.root)), BROKEN, f"the first {size} of {len(valid)} bytes")
    c.path(f"{d}/directory{suffix}").mkdir(parents=True)
    c.add(fmt, "directory", f"{d}/directory{suffix}", NOT_INPUT, "a directory named like a file")
    os.mkfifo(c.path(f"{d}/fifo{suffix}"))
    c.add(fmt, "fifo", f"{d}/fifo{suffix}", NOT_INPUT, "a FIFO (reading it would block)")
    os.symlink("/dev/zero", c.path(f"{d}/device{suffix}"))
    c.add(fmt, "device", f"{d}/device{suffix}", NOT_INPUT, "a symlink to /dev/zero")


# ---------------------------------------------------------------------------------------------
# safetensors

def safetensors_bytes(header: dict | bytes, data: bytes, length: int | None = None) -> bytes:
    """A safetensors file from a header (dict, or raw JSON bytes) and data; `length` may lie."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def _st_header() -> dict:
    return {"__metadata__": {"source": "make_crafted"},
            "dense/bias": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
            "dense/kernel": {"dtype": "F32", "shape": [4, 3], "data_offsets": [12, 60]}}


ST_DATA = BIAS.tobytes() + KERNEL.tobytes()


def _safetensors(c: Corpus) -> None:
    fmt, d = "safetensors", "safetensors"
    valid = safetensors_bytes(_st_header(), ST_DATA)
    c.bases[fmt] = str(_write(c.path(f"{d}/valid.safetensors"), valid).relative_to(c.root))
    _common(c, fmt, ".safetensors", valid)

    def case(name: str, data: bytes, errors: tuple[str, ...], about: str) -> None:
        c.add(fmt, name, str(_write(c.path(f"{d}/{name}.safetensors"), data).relative_to(c.root)),
              errors, about)

    raw = json.dumps(_st_header()).encode()
    case("header-longer-than-file", safetensors_bytes(raw, ST_DATA, len(raw) + len(ST_DATA) + 100),
         BROKEN, "header length runs past the end of the file")
    case("header-length-2^63", safetensors_bytes(raw, ST_DATA, 1 << 63), REFUSED,
         "header length 2**63")
    _sparse(c.path(f"{d}/header-huge.safetensors"), struct.pack("<Q", 1 << 31) + b"{", 8 + (1 << 31))
    c.add(fmt, "header-huge", f"{d}/header-huge.safetensors", REFUSED,
          "a 2 GiB header that is really there (sparse): refuse before reading it")
    case("header-not-json", safetensors_bytes(b"{not json", ST_DATA), BROKEN, "header is not JSON")
    case("header-not-object", safetensors_bytes(b"[1, 2, 3]", ST_DATA), BROKEN,
         "header is a JSON list")
    case("header-not-utf8", safetensors_bytes(b'{"\xff\xfe": 1}', ST_DATA), BROKEN,
         "header is not UTF-8")
    case("header-nan", safetensors_bytes(
        raw.replace(b'"shape": [3]', b'"shape": [NaN]'), ST_DATA), BROKEN, "a NaN in a shape")
    dup = raw.replace(b'"dense/kernel"', b'"dense/bias": {"dtype": "F32", "shape": [3], '
                      b'"data_offsets": [0, 12]}, "dense/kernel"')
    case("duplicate-keys", safetensors_bytes(dup, ST_DATA), BROKEN, "the same tensor name twice")
    lies = {
        "offsets-past-end": ({"dense/kernel": {"data_offsets": [12, 1000]}}, BROKEN,
                             "data offsets run past the end of the file"),
        "offsets-overlap": ({"dense/kernel": {"data_offsets": [8, 56]}}, BROKEN,
                            "two tensors share bytes"),
        "offsets-reversed": ({"dense/kernel": {"data_offsets": [60, 12]}}, BROKEN,
                             "end offset before begin"),
        "offsets-negative": ({"dense/kernel": {"data_offsets": [-12, 36]}}, BROKEN,
                             "negative offset"),
        "offsets-missing": ({"dense/kernel": {"data_offsets": None}}, BROKEN,
                            "data_offsets is null"),
        "offsets-not-pair": ({"dense/kernel": {"data_offsets": [12]}}, BROKEN,
                             "data_offsets has one number"),
        "shape-bytes-mismatch": ({"dense/kernel": {"shape": [4, 4]}}, BROKEN,
                                 "shape x dtype = 64 bytes, offsets give 48"),
        "shape-negative": ({"dense/kernel": {"shape": [-4, -3]}}, BROKEN, "negative dimensions"),
        "shape-not-int": ({"dense/kernel": {"shape": [4.5, 3]}}, BROKEN, "a fractional dimension"),
        "shape-not-list": ({"dense/kernel": {"shape": "4x3"}}, BROKEN, "shape is a string"),
        "shape-bomb": ({"dense/kernel": {"shape": [1 << 40, 1 << 40]}}, REFUSED,
                       "shape of 2**80 elements over 48 bytes"),
        "dtype-unknown": ({"dense/kernel": {"dtype": "F7"}}, BROKEN, "dtype F7"),
        "dtype-not-string": ({"dense/kernel": {"dtype": 32}}, BROKEN, "dtype is a number"),
        "entry-not-object": ({"dense/kernel": None}, BROKEN, "a tensor entry that is null"),
        "metadata-not-strings": ({"__metadata__": {"n": 1}}, BROKEN,
                                 "__metadata__ values must be strings"),
    }
    for name, (changes, errors, about) in lies.items():
        header = _st_header()
        for key, entry in changes.items():
            header[key] = None if entry is None else {**header[key], **entry}
        case(name, safetensors_bytes(header, ST_DATA), errors, about)
    case("data-truncated", safetensors_bytes(_st_header(), ST_DATA[:-8]), BROKEN,
         "data shorter than the offsets say")

    def shaped(shape_text: str, offsets: str = "[12, 60]") -> bytes:
        raw = (b'{"dense/bias": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}, '
               b'"dense/kernel": {"dtype": "F32", "shape": %s, "data_offsets": %s}}'
               % (shape_text.encode(), offsets.encode()))
        return safetensors_bytes(raw, ST_DATA)
    big = "1" + "0" * 4000  # 10**4000: formatting a message with its square fails in Python
    case("shape-4000-digits", shaped(f"[{big}, {big}]"), CORRUPT,
         "dimensions of 10**4000 (Python cannot print their product)")
    case("shape-5000-digits", shaped("[" + "9" * 5000 + "]"), CORRUPT,
         "a dimension of 5000 digits (more than Python parses into an int)")
    case("shape-2^63", shaped(f"[{1 << 63}]"), CORRUPT, "a dimension of 2**63")
    case("shape-rank-65", shaped("[" + ", ".join(["1"] * 64) + ", 12]"), CORRUPT,
         "65 dimensions (numpy holds 64)")
    case("shape-zero-huge", shaped(f"[0, {1 << 62}, {1 << 62}]", "[12, 12]"), CORRUPT,
         "a zero-size tensor whose other dimensions numpy cannot hold")
    case("offsets-4000-digits", shaped("[4, 3]", f"[12, {big}]"), CORRUPT,
         "an offset of 10**4000")
    huge = np.array([1.7e308, -1.7e308, 1e300, 3.0])
    c.valid(fmt, "huge-values", str(_write(c.path(f"{d}/huge-values.safetensors"),
                                            safetensors_bytes({"w": {
                                                "dtype": "F64", "shape": [4],
                                                "data_offsets": [0, 32]}}, huge.tobytes()))
                                     .relative_to(c.root)),
            {"w": huge}, "values near the float64 limit: statistics must not overflow")
    zero = {"a": np.zeros((0,), np.float32), "b": np.zeros((3, 0), np.float32),
            "c": np.zeros((0, 1 << 40), np.float32)}
    c.valid(fmt, "zero-size", str(_write(c.path(f"{d}/zero-size.safetensors"), safetensors_bytes(
        {n: {"dtype": "F32", "shape": list(a.shape), "data_offsets": [0, 0]}
         for n, a in zero.items()}, b"")).relative_to(c.root)),
        zero, "zero-size tensors, one with a dimension of 2**40")
    many = {f"layer_{i}/{j}": np.full(3, i + j / 10, np.float32) for i in range(1000)
            for j in range(2)}
    header, data = {}, b""
    for name, array in many.items():
        header[name] = {"dtype": "F32", "shape": [3], "data_offsets": [len(data), len(data) + 12]}
        data += array.tobytes()
    c.valid(fmt, "many-variables", str(_write(c.path(f"{d}/many-variables.safetensors"),
                                               safetensors_bytes(header, data))
                                        .relative_to(c.root)),
            many, "2000 small variables")

    names = {"__metadata__": {}}
    data = b""
    for name in HOSTILE_NAMES:
        names[name] = {"dtype": "F32", "shape": [3], "data_offsets": [len(data), len(data) + 12]}
        data += BIAS.tobytes()
    c.names[fmt] = str(_write(c.path(f"{d}/names.safetensors"), safetensors_bytes(names, data))
                       .relative_to(c.root))
    c.suffixes.append((fmt, str(_write(c.path(f"{d}/really-safetensors.h5"), valid)
                                .relative_to(c.root))))


# ---------------------------------------------------------------------------------------------
# zip archives (npz, .keras)

def npy_bytes(array: np.ndarray | None = None, *, header: str | None = None, data: bytes = b"",
              version: tuple[int, int] = (1, 0)) -> bytes:
    """An .npy member: numpy's own bytes for `array`, or a hand-made `header` over `data`."""
    if array is not None:
        import io
        buf = io.BytesIO()
        np.lib.format.write_array(buf, array, allow_pickle=False)
        return buf.getvalue()
    text = header.encode("latin1")
    text += b" " * ((-(len(text) + 11)) % 64) + b"\n"
    size = struct.pack("<H" if version[0] == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes(version) + size + text + data


def zip_bytes(members: list[tuple[str, bytes]], deflate: bool = False) -> bytes:
    """A zip of `members` in order (names as given, duplicates allowed)."""
    import io
    import warnings
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names
        with zipfile.ZipFile(buf, "w", method) as z:
            for name, data in members:
                info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
                info.compress_type = method
                z.writestr(info, data)
    return buf.getvalue()


def _zip_patch(data: bytes, member: str, *, flags: int | None = None,
               file_size: int | None = None, version: int | None = None) -> bytes:
    """Set the general-purpose flags, the declared size or the version needed to extract of
    `member` in both its local and central headers (the CRC stays)."""
    out = bytearray(data)
    name = member.encode()
    for sig, flag_at, size_at, name_len_at, name_at in ((b"PK\x03\x04", 6, 22, 26, 30),
                                                        (b"PK\x01\x02", 8, 24, 28, 46)):
        pos = out.find(sig)
        while pos >= 0:
            n = struct.unpack_from("<H", out, pos + name_len_at)[0]
            if out[pos + name_at:pos + name_at + n] == name:
                if flags is not None:
                    struct.pack_into("<H", out, pos + flag_at, flags)
                if file_size is not None:
                    struct.pack_into("<I", out, pos + size_at, file_size)
                if version is not None:
                    struct.pack_into("<H", out, pos + flag_at - 2, version)
            pos = out.find(sig, pos + 4)
    return bytes(out)


def zip64_offset(data: bytes, member: str, offset: int) -> bytes:
    """`member`'s central entry given a zip64 extra field that puts its local header at
    `offset` (the entry's own offset field 0xFFFFFFFF; APPNOTE 4.5.3)."""
    out = bytearray(data)
    start, end = out.find(b"PK\x01\x02"), out.rfind(b"PK\x05\x06")
    entries, pos = [], start
    while pos < end:
        name_len, extra_len, comment_len = struct.unpack_from("<3H", out, pos + 28)
        entry = bytearray(out[pos:pos + 46 + name_len + extra_len + comment_len])
        if entry[46:46 + name_len] == member.encode():
            extra = struct.pack("<HHQ", 1, 8, offset)
            struct.pack_into("<H", entry, 30, len(extra))
            struct.pack_into("<H", entry, 32, 0)
            struct.pack_into("<I", entry, 42, 0xFFFFFFFF)
            entry = entry[:46 + name_len] + extra
        entries.append(bytes(entry))
        pos += 46 + name_len + extra_len + comment_len
    directory = b"".join(entries)
    tail = bytearray(out[end:])
    struct.pack_into("<I", tail, 12, len(directory))
    return bytes(out[:start]) + directory + bytes(tail)


def overlapping_zip(members: list[tuple[str, bytes]]) -> bytes:
    """A zip of `members` plus one more, `extra.npy`, whose central entry points at a copy of
    its local header and data stored inside the first member's data."""
    extra = zip_bytes([("extra.npy", npy_bytes(BIAS))])
    record = extra[:extra.find(b"PK\x01\x02")]  # its local header and data
    first_name, first_data = members[0]
    data = bytearray(zip_bytes([(first_name, first_data + record)] + members[1:]
                               + [("extra.npy", npy_bytes(BIAS))]))
    inner = data.find(record)  # the copy inside the first member's data
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        n = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46:pos + 46 + n] == b"extra.npy":
            struct.pack_into("<I", data, pos + 42, inner)
        pos = data.find(b"PK\x01\x02", pos + 4)
    return bytes(data)


def _local_method(data: bytes, member: str, method: int) -> bytes:
    """Set the compression method of `member`'s local header only."""
    out = bytearray(data)
    pos = out.find(b"PK\x03\x04")
    while pos >= 0:
        n = struct.unpack_from("<H", out, pos + 26)[0]
        if out[pos + 30:pos + 30 + n] == member.encode():
            struct.pack_into("<H", out, pos + 8, method)
        pos = out.find(b"PK\x03\x04", pos + 4)
    return bytes(out)


class _Payload:
    """Pickles to a call of os.system: what an object array in an .npy would run if unpickled."""

    def __init__(self, sentinel: str):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def _npz(c: Corpus) -> None:
    import pickle
    fmt, d = "npz", "npz"
    members = [("dense/kernel.npy", npy_bytes(KERNEL)), ("dense/bias.npy", npy_bytes(BIAS))]
    valid = zip_bytes(members)
    c.bases[fmt] = str(_write(c.path(f"{d}/valid.npz"), valid).relative_to(c.root))
    _common(c, fmt, ".npz", valid)

    def case(name: str, data: bytes, errors: tuple[str, ...], about: str) -> None:
        c.add(fmt, name, str(_write(c.path(f"{d}/{name}.npz"), data).relative_to(c.root)),
              errors, about)

    sentinel = str(c.path(f"{d}/SENTINEL-pickle"))
    c.sentinels.append(sentinel)
    payload = pickle.dumps(np.array([_Payload(sentinel)], dtype=object), protocol=2)
    obj = npy_bytes(header="{'descr': '|O', 'fortran_order': False, 'shape': (1,), }",
                    data=payload)
    case("pickle", zip_bytes(members + [("obj.npy", obj)]), UNSAFE,
         "an object array whose pickle would run os.system")
    case("member-dotdot", zip_bytes(members + [("../evil.npy", npy_bytes(BIAS))]), UNSAFE,
         "a member named ../evil.npy")
    case("member-absolute", zip_bytes(members + [("/tmp/evil.npy", npy_bytes(BIAS))]), UNSAFE,
         "a member with an absolute name")
    case("member-backslash", zip_bytes(members + [("..\\evil.npy", npy_bytes(BIAS))]), UNSAFE,
         "a member named ..\\evil.npy")
    case("member-duplicate", zip_bytes(members + [("dense/kernel.npy", npy_bytes(KERNEL * 2))]),
         REFUSED, "two members with the same name")
    case("member-encrypted", _zip_patch(valid, "dense/kernel.npy", flags=1), REFUSED,
         "a member flagged as encrypted")
    case("member-oversized", _zip_patch(valid, "dense/kernel.npy", file_size=0xFFFFFFF0), REFUSED,
         "a stored member declaring 4 GiB")
    case("zip-version-unsupported", _zip_patch(valid, "dense/kernel.npy", version=99), BROKEN,
         "a member needing zip version 9.9 to extract (zipfile: NotImplementedError)")
    case("zip64-offset-2^63", zip64_offset(valid, "dense/kernel.npy", 1 << 63), CORRUPT,
         "a zip64 extra field putting a local header at 2^63 (os.pread: OverflowError)")
    case("member-not-npy", zip_bytes([("dense/kernel.npy", b"not an npy file at all" * 4)]),
         CORRUPT, "a member without the .npy magic")
    case("member-crc", _flip(valid, valid.find(KERNEL.tobytes()) + 5), CORRUPT,
         "a flipped bit in a member (zip CRC mismatch)")
    fmt_header = "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}"
    case("npy-shape-mismatch",
         zip_bytes([("dense/kernel.npy", npy_bytes(header=fmt_header.format("<f4", "(4, 4)"),
                                                   data=KERNEL.tobytes()))]),
         CORRUPT, "an .npy header declaring 64 bytes over 48")
    case("npy-dtype-unknown",
         zip_bytes([("dense/kernel.npy", npy_bytes(header=fmt_header.format("<q7", "(4, 3)"),
                                                   data=KERNEL.tobytes()))]),
         BROKEN, "an .npy with dtype <q7")
    case("npy-dtype-structured",
         zip_bytes([("dense/kernel.npy", npy_bytes(
             header="{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4, 3), }",
             data=KERNEL.tobytes()))]),
         BROKEN, "an .npy with a structured dtype")
    case("npy-header-not-dict",
         zip_bytes([("dense/kernel.npy", npy_bytes(header="__import__('os').system('true')",
                                                   data=KERNEL.tobytes()))]),
         CORRUPT, "an .npy header that is an expression, not a literal")
    bomb = npy_bytes(header=fmt_header.format("<f4", f"({BOMB_ELEMENTS},)"), data=b"\0" * 64)
    case("npy-shape-bomb", zip_bytes([("dense/kernel.npy", bomb)], deflate=True), REFUSED,
         "an .npy declaring 16 GiB in a member of a few bytes")
    big_header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }" + " " * (64 << 20)
    case("npy-header-huge",
         zip_bytes([("dense/kernel.npy", npy_bytes(header=big_header, data=KERNEL.tobytes(),
                                                   version=(2, 0)))], deflate=True),
         REFUSED, "a 64 MiB .npy header (deflated to a few KiB)")
    for descr in ("|S0", "<U0", "|V0"):
        zero = npy_bytes(header=fmt_header.format(descr, "(1000000000000,)"))
        case(f"npy-{descr[1:]}-bomb", zip_bytes(members + [("zero.npy", zero)]), BROKEN,
             f"10**12 elements of the zero-width dtype {descr}: 0 bytes needed, 0 stored")
    case("npy-rank-65", zip_bytes([("dense/kernel.npy", npy_bytes(
        header=fmt_header.format("<f4", "(" + "1, " * 64 + "12)"), data=KERNEL.tobytes()))]),
        CORRUPT, "65 dimensions (numpy holds 64)")
    case("npy-shape-2^63", zip_bytes([("dense/kernel.npy", npy_bytes(
        header=fmt_header.format("<f4", f"({1 << 63},)"), data=KERNEL.tobytes()))]),
        CORRUPT, "a dimension of 2**63")
    case("npy-shape-4000-digits", zip_bytes([("dense/kernel.npy", npy_bytes(
        header=fmt_header.format("<f4", "(1" + "0" * 4000 + ", 0)"), data=b""))]),
        CORRUPT, "a zero-size array with a dimension of 10**4000")
    case("member-overlap", overlapping_zip(members), UNSAFE,
         "a member whose local header lies inside another member's data (overlapping members "
         "inflate a small zip into terabytes)")
    case("member-method-mismatch", _local_method(valid, "dense/kernel.npy", 8), CORRUPT,
         "the local header says deflated, the central directory stored")
    text = np.array(["abc", "de"], "<U3")
    c.valid(fmt, "unicode-strings", str(_write(c.path(f"{d}/unicode-strings.npz"),
                                                zip_bytes([("w.npy", npy_bytes(text))]))
                                         .relative_to(c.root)),
            {"w": np.array([b"abc", b"de"], dtype=object)},
            "np.savez of a <U3 array: read, written and verified as strings")
    huge = np.array([1.7e308] * 1000 + [-1.7e308], np.float64)
    c.valid(fmt, "huge-values", str(_write(c.path(f"{d}/huge-values.npz"),
                                            zip_bytes([("w.npy", npy_bytes(huge))], deflate=True))
                                     .relative_to(c.root)),
            {"w": huge}, "values near the float64 limit, deflated")
    many = {f"v{i}": np.full(2, i, np.int32) for i in range(2000)}
    c.valid(fmt, "many-members", str(_write(c.path(f"{d}/many-members.npz"), zip_bytes(
        [(f"{n}.npy", npy_bytes(a)) for n, a in many.items()])).relative_to(c.root)),
        many, "2000 members")
    names = zip_bytes([(f"{n}.npy", npy_bytes(BIAS)) for n in HOSTILE_NAMES])
    c.names[fmt] = str(_write(c.path(f"{d}/names.npz"), names).relative_to(c.root))
    c.suffixes.append((fmt, str(_write(c.path(f"{d}/really-npz.safetensors"), valid)
                                .relative_to(c.root))))


# ---------------------------------------------------------------------------------------------
# HDF5 (Keras layouts)

def _h5():
    import h5py
    return h5py


def _outside(c: Corpus) -> Path:
    """A directory beside the inputs holding what a hostile file points at."""
    out = c.path("outside")
    if not out.exists():
        h5py = _h5()
        out.mkdir()
        with h5py.File(out / "secret.h5", "w") as f:
            f["data"] = KERNEL
        _write(out / "secret.bin", KERNEL.tobytes())
    return out


def _tf_keras_weights(f, names: tuple[str, ...] = ("dense",)) -> None:
    """tf.keras save_weights layout (FORMATS.md 3b) at the root of `f`."""
    f.attrs["backend"] = "tensorflow"
    f.attrs["keras_version"] = "2.21.0"
    f.attrs["layer_names"] = [n.encode() for n in names]
    for n in names:
        g = f.create_group(n)
        g.attrs["weight_names"] = [f"{n}/kernel:0".encode(), f"{n}/bias:0".encode()]
        g[f"{n}/kernel:0"] = KERNEL
        g[f"{n}/bias:0"] = BIAS


def _keras3_weights(f) -> None:
    """Keras 3 .weights.h5 layout (FORMATS.md 3c)."""
    g = f.create_group("layers/dense/vars")
    g.attrs["name"] = "dense"
    g["0"] = KERNEL
    g["1"] = BIAS
    f.create_group("optimizer/vars")


H5_LAYOUTS = {  # format -> (suffix, builder, path of the kernel dataset)
    "keras-h5": (".h5", _tf_keras_weights, "dense/dense/kernel:0"),
    "keras-weights-h5": (".weights.h5", _keras3_weights, "layers/dense/vars/0"),
}


def _h5_attacks(c: Corpus, fmt: str) -> None:
    h5py = _h5()
    suffix, build, kernel = H5_LAYOUTS[fmt]
    d = fmt
    outside = _outside(c)
    c.path(d).mkdir(parents=True, exist_ok=True)
    valid_path = c.path(f"{d}/valid{suffix}")
    with h5py.File(valid_path, "w") as f:
        build(f)
    c.bases[fmt] = str(valid_path.relative_to(c.root))
    valid = valid_path.read_bytes()
    _common(c, fmt, suffix, valid)
    c.add(fmt, "bitflip-superblock", str(_write(c.path(f"{d}/bitflip-superblock{suffix}"),
                                                _flip(valid, 9)).relative_to(c.root)),
          BROKEN, "a flipped bit in the HDF5 superblock version")
    _write(c.path(f"{d}/signature-then-garbage{suffix}"), b"\x89HDF\r\n\x1a\n" + b"\xa5" * 4096)
    c.add(fmt, "signature-then-garbage", f"{d}/signature-then-garbage{suffix}", BROKEN,
          "the HDF5 signature followed by garbage")

    def attack(name: str, errors: tuple[str, ...], about: str, replace) -> None:
        path = c.path(f"{d}/{name}{suffix}")
        with h5py.File(path, "w") as f:
            build(f)
            del f[kernel]
            replace(f, kernel)
        c.add(fmt, name, str(path.relative_to(c.root)), errors, about)

    secret_h5, secret_bin = str(outside / "secret.h5"), str(outside / "secret.bin")
    attack("external-link", UNSAFE, "the kernel is an external link to another file",
           lambda f, k: f.__setitem__(k, h5py.ExternalLink(secret_h5, "/data")))
    attack("external-link-relative", UNSAFE, "an external link with a relative ../ path",
           lambda f, k: f.__setitem__(k, h5py.ExternalLink("../outside/secret.h5", "/data")))

    def soft_to_external(f, k):
        f["escape"] = h5py.ExternalLink(secret_h5, "/data")
        f[k] = h5py.SoftLink("/escape")
    attack("soft-link-to-external", UNSAFE, "a soft link to an external link", soft_to_external)
    attack("soft-link-dangling", REFUSED, "a soft link to nothing",
           lambda f, k: f.__setitem__(k, h5py.SoftLink("/nowhere/at/all")))
    attack("external-storage", UNSAFE, "raw data stored in a file outside (h5py external=)",
           lambda f, k: f.create_dataset(k, shape=(4, 3), dtype="<f4",
                                         external=[(secret_bin, 0, 48)]))

    def virtual(f, k):
        layout = h5py.VirtualLayout(shape=(4, 3), dtype="<f4")
        layout[:] = h5py.VirtualSource(secret_h5, "data", shape=(4, 3))
        f.create_virtual_dataset(k, layout)
    attack("virtual-dataset", UNSAFE, "a virtual dataset mapping a file outside", virtual)

    def unknown_filter(f, k):
        from h5py import h5d, h5p, h5s, h5t, h5z
        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_chunk((2, 3))
        dcpl.set_filter(32001, h5z.FLAG_OPTIONAL, ())
        h5d.create(f.id, k.encode(), h5t.IEEE_F32LE, h5s.create_simple((4, 3)), dcpl=dcpl)
        f[k][...] = KERNEL
    attack("unknown-filter", UNSAFE, "a dataset in filter 32001 (a dynamic plugin)",
           unknown_filter)
    attack("shape-bomb", REFUSED, "a chunked gzip dataset declaring 16 GiB, storing nothing",
           lambda f, k: f.create_dataset(k, shape=(BOMB_ELEMENTS,), dtype="<f4",
                                         chunks=(1 << 20,), compression="gzip"))
    attack("dtype-reference", BROKEN, "a dataset of object references",
           lambda f, k: f.create_dataset(k, shape=(2,), dtype=h5py.ref_dtype))
    attack("dtype-compound", BROKEN, "a dataset of a compound type with three fields",
           lambda f, k: f.create_dataset(k, shape=(2,), dtype=np.dtype(
               [("a", "<i4"), ("b", "<f8"), ("c", "u1")])))
    if fmt == "keras-h5":
        attack("missing-dataset", CORRUPT, "weight_names lists a dataset that is gone",
               lambda f, k: None)
    attack("vlen-never-written", CORRUPT,
           "a variable-length string dataset declaring 2**33 elements, never written",
           lambda f, k: f.create_dataset(k, shape=(1 << 33,), dtype=h5py.string_dtype(),
                                         chunks=(1 << 16,)))
    attack("vlen-zero-width-compressed", REFUSED,
           "2**40 variable-length strings, gzip-chunked, never written",
           lambda f, k: f.create_dataset(k, shape=(1 << 40,), dtype=h5py.string_dtype(),
                                         chunks=(1 << 16,), compression="gzip"))

    # A variable beside the kernel (a name the base does not have: diff lists it as added).
    extra_path = {"keras-h5": "dense/dense/extra:0", "keras-weights-h5": "layers/dense/vars/2"}[fmt]

    def extra(name: str, errors: tuple[str, ...], about: str, make, patch=None) -> None:
        path = c.path(f"{d}/{name}{suffix}")
        with h5py.File(path, "w") as f:
            build(f)
            make(f, extra_path)
            if fmt == "keras-h5":
                f["dense"].attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0",
                                                    extra_path.split("/", 1)[1].encode()]
        if patch is not None:
            path.write_bytes(patch(path.read_bytes()))
        c.add(fmt, name, str(path.relative_to(c.root)), errors, about)

    marker = np.arange(1, 9, dtype=np.float32) * 1.25
    extra("fletcher32-flipped", CORRUPT,
          "an added variable whose fletcher32-checked chunk has a flipped bit (diff must read "
          "it, not call it added)",
          lambda f, k: f.create_dataset(k, data=marker, chunks=(8,), fletcher32=True),
          lambda data: _flip(data, data.find(marker.tobytes()) + 9))

    storage = {}

    def strings(f, k):
        ds = f.create_dataset(k, data=np.array([b"x" * (1 << 20)] + [b"y"] * 2047, dtype=object),
                              dtype=h5py.string_dtype("ascii"))
        storage["at"] = ds.id.get_offset()  # contiguous: 2048 descriptors of 16 bytes

    def shared_heap(data: bytes) -> bytes:  # every descriptor names the first element's string
        out, first = bytearray(data), storage["at"]
        for i in range(1, 2048):
            out[first + 16 * i:first + 16 * i + 16] = out[first:first + 16]
        return bytes(out)
    extra("vlen-shared-heap", UNSAFE,
          "2048 variable-length strings whose descriptors all name one 1 MiB heap object "
          "(2 GiB read from a 1 MiB file)", strings, shared_heap)

    heap = valid.find(b"GCOL")  # the global heap holding the vars group's `name` string
    if heap >= 0:
        lie = bytearray(valid)
        struct.pack_into("<Q", lie, heap + 24, 0x405)  # its first object: 5 bytes -> 1029
        _write(c.path(f"{d}/heap-object-size-lie{suffix}"), bytes(lie))
        c.add(fmt, "heap-object-size-lie", f"{d}/heap-object-size-lie{suffix}", REFUSED,
              "a global heap object (a string attribute) declaring more than its collection: "
              "libhdf5 1.14 loops forever reading it (found by the fuzzer)")

    names_path = c.path(f"{d}/names{suffix}")
    with h5py.File(names_path, "w") as f:
        if fmt == "keras-h5":
            _tf_keras_weights(f, HOSTILE_NAMES)
        else:
            for i, n in enumerate(HOSTILE_NAMES):
                g = f.create_group(f"layers/{n}/vars")
                g["0"] = BIAS * i
    c.names[fmt] = str(names_path.relative_to(c.root))


def _keras_h5_extra(c: Corpus) -> None:
    h5py = _h5()
    rng = np.random.default_rng(11)
    values = rng.standard_normal(100_000).astype(np.float32)
    path = c.path("keras-h5/chunks-100k.h5")
    with h5py.File(path, "w") as f:
        _tf_keras_weights(f)
        f["dense"].attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0", b"dense/big:0"]
        f["dense"].create_dataset("dense/big:0", data=values, chunks=(1,))
    c.valid("keras-h5", "chunks-100k", str(path.relative_to(c.root)),
            {"dense/kernel": KERNEL, "dense/bias": BIAS, "dense/big": values},
            "a dataset stored in 100,000 one-element chunks")
    vocab = np.array([b"a", b"", "\u00e9t\u00e9".encode(), b"x" * 300], dtype=object)
    path = c.path("keras-h5/vlen-strings.h5")
    with h5py.File(path, "w") as f:
        _tf_keras_weights(f)
        f["dense"].attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0",
                                            b"dense/vocab:0"]
        f["dense"].create_dataset("dense/vocab:0", data=vocab, dtype=h5py.string_dtype("ascii"))
    c.valid("keras-h5", "vlen-strings", str(path.relative_to(c.root)),
            {"dense/kernel": KERNEL, "dense/bias": BIAS, "dense/vocab": vocab},
            "variable-length strings, one empty, one longer than a descriptor")
    path = c.path("keras-h5/layer-missing.h5")
    with h5py.File(path, "w") as f:
        _tf_keras_weights(f)
        f.attrs["layer_names"] = [b"dense", b"dense_1"]
    c.add("keras-h5", "layer-missing", str(path.relative_to(c.root)), CORRUPT,
          "layer_names lists a layer that has no group")
    c.suffixes.append(("keras-h5", str(_write(c.path("keras-h5/really-h5.npz"),
                                              c.path(c.bases["keras-h5"]).read_bytes())
                                       .relative_to(c.root))))


def _sharded(c: Corpus) -> None:
    """Keras 3 sharded weights: x.weights.json (weight_map) + x_00000.weights.h5."""
    fmt, d = "keras-weights-h5", "keras-weights-h5/sharded"
    c.path(d).mkdir(parents=True)
    shard = c.path(f"{d}/model_00000.weights.h5")
    with _h5().File(shard, "w") as f:
        _keras3_weights(f)

    def index(name: str, target, errors: tuple[str, ...] | None, about: str = "") -> None:
        meta = {"metadata": {"total_size": 60}, "weight_map": {"/layers/dense/vars": target}}
        path = _write(c.path(f"{d}/{name}.weights.json"), json.dumps(meta).encode())
        if errors is None:
            c.bases["keras-weights-json"] = str(path.relative_to(c.root))
        else:  # the error may name the index or the shard at fault
            c.add(fmt, f"sharded-{name}", str(path.relative_to(c.root)), errors, about,
                  named=d)

    index("valid", "model_00000.weights.h5", None)
    index("shard-missing", "model_00001.weights.h5", CORRUPT, "the weight map names a missing shard")
    index("shard-dotdot", "../../outside/secret.h5", UNSAFE, "a shard path with ../")
    index("shard-absolute", str(_outside(c) / "secret.h5"), UNSAFE, "an absolute shard path")
    os.symlink(_outside(c) / "secret.h5", c.path(f"{d}/linked_00000.weights.h5"))
    index("shard-symlink-out", "linked_00000.weights.h5", UNSAFE,
          "a shard that is a symlink leading outside the directory")
    index("shard-fifo", "fifo_00000.weights.h5", NOT_INPUT, "a shard that is a FIFO")
    os.mkfifo(c.path(f"{d}/fifo_00000.weights.h5"))
    _write(c.path(f"{d}/not-json.weights.json"), b"{\"weight_map\": ")
    c.add(fmt, "sharded-not-json", f"{d}/not-json.weights.json", BROKEN, "a truncated weight map")


KERAS_CONFIG = {"module": "keras", "class_name": "Sequential", "config": {
    "name": "sequential", "layers": [
        {"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [None, 4]}},
        {"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense", "units": 3}}]}}
KERAS_METADATA = {"keras_version": "3.15.0", "date_saved": "2026-01-01@00:00:00"}


def _keras_zip(c: Corpus) -> None:
    fmt, d = "keras", "keras"
    c.path(d).mkdir(parents=True)
    weights = c.path(c.bases["keras-weights-h5"]).read_bytes()
    base = [("metadata.json", json.dumps(KERAS_METADATA).encode()),
            ("config.json", json.dumps(KERAS_CONFIG).encode()), ("model.weights.h5", weights)]
    valid = zip_bytes(base)
    c.bases[fmt] = str(_write(c.path(f"{d}/valid.keras"), valid).relative_to(c.root))
    _common(c, fmt, ".keras", valid)

    def case(name: str, data: bytes, errors: tuple[str, ...], about: str) -> None:
        c.add(fmt, name, str(_write(c.path(f"{d}/{name}.keras"), data).relative_to(c.root)),
              errors, about)

    case("member-dotdot", zip_bytes(base + [("../evil.txt", b"x")]), UNSAFE, "a member ../evil.txt")
    case("member-absolute", zip_bytes(base + [("/etc/evil.txt", b"x")]), UNSAFE,
         "a member /etc/evil.txt")
    case("member-backslash", zip_bytes(base + [("assets\\..\\..\\evil.txt", b"x")]), UNSAFE,
         "a member with backslashes")
    case("member-duplicate", zip_bytes(base + [("model.weights.h5", weights)]), REFUSED,
         "model.weights.h5 twice")
    case("member-encrypted", _zip_patch(valid, "model.weights.h5", flags=1), REFUSED,
         "model.weights.h5 flagged as encrypted")
    case("member-oversized", _zip_patch(valid, "model.weights.h5", file_size=0xFFFFFFF0), REFUSED,
         "a stored model.weights.h5 declaring 4 GiB")
    case("zip-version-unsupported", _zip_patch(valid, "model.weights.h5", version=99), BROKEN,
         "model.weights.h5 needs zip version 9.9 to extract (zipfile: NotImplementedError)")
    case("weights-missing", zip_bytes(base[:2]), CORRUPT, "no model.weights.h5")
    case("weights-garbage", zip_bytes(base[:2] + [("model.weights.h5", b"\x89HDF" + b"\0" * 200)]),
         CORRUPT, "model.weights.h5 is not HDF5")
    inner = c.path("keras-weights-h5/external-link.weights.h5").read_bytes()
    case("weights-external-link", zip_bytes(base[:2] + [("model.weights.h5", inner)]), UNSAFE,
         "model.weights.h5 holds an external link")
    inner = c.path("keras-weights-h5/heap-object-size-lie.weights.h5").read_bytes()
    case("weights-heap-loop", zip_bytes(base[:2] + [("model.weights.h5", inner)]), REFUSED,
         "model.weights.h5 holds a heap object that makes libhdf5 loop")
    inner = c.path("keras-weights-h5/shape-bomb.weights.h5").read_bytes()
    case("weights-shape-bomb", zip_bytes(base[:2] + [("model.weights.h5", inner)]), REFUSED,
         "model.weights.h5 holds a 16 GiB dataset that stores nothing")
    case("member-overlap", overlapping_zip(base[::-1]), UNSAFE,
         "a member whose local header lies inside another member's data")
    case("member-method-mismatch", _local_method(valid, "model.weights.h5", 8), CORRUPT,
         "the local header of model.weights.h5 says deflated, the directory stored")
    case("member-dot-part", zip_bytes(base + [("assets/./x.txt", b"x")]), UNSAFE,
         "a member named assets/./x.txt")
    inner = c.path("keras-weights-h5/vlen-never-written.weights.h5").read_bytes()
    case("weights-vlen-never-written", zip_bytes(base[:2] + [("model.weights.h5", inner)]),
         CORRUPT, "model.weights.h5 holds 2**33 variable-length strings never written")
    inner = c.path("keras-weights-h5/vlen-shared-heap.weights.h5").read_bytes()
    case("weights-vlen-shared-heap", zip_bytes(base[:2] + [("model.weights.h5", inner)]),
         UNSAFE, "model.weights.h5 holds strings that all name one heap object")
    c.names[fmt] = str(_write(c.path(f"{d}/names.keras"), zip_bytes(
        base[:2] + [("model.weights.h5", c.path(c.names["keras-weights-h5"]).read_bytes())]))
        .relative_to(c.root))


# ---------------------------------------------------------------------------------------------
# TF checkpoints (TensorBundle) and SavedModel

DT = {"float32": 1, "float64": 2, "int32": 3, "uint8": 4, "int8": 6, "string": 7, "int64": 9,
      "bool": 10, "bfloat16": 14, "float16": 19}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, bytes):
        return _varint(number << 3 | 2) + _varint(len(value)) + value
    return _varint(number << 3) + _varint(value & 0xFFFFFFFFFFFFFFFF)


def masked_crc(data: bytes) -> int:
    import google_crc32c
    c = google_crc32c.value(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def bundle_header(num_shards: int = 1) -> bytes:
    return _field(1, num_shards) + _field(3, _field(1, 1))


def bundle_entry(dtype: int, shape: tuple[int, ...], offset: int, size: int, crc: int,
                 shard: int = 0) -> bytes:
    dims = b"".join(_field(2, _field(1, d)) for d in shape)
    out = _field(1, dtype) + _varint(2 << 3 | 2) + _varint(len(dims)) + dims
    if shard:
        out += _field(3, shard)
    if offset:
        out += _field(4, offset)
    return out + _field(5, size) + _varint(6 << 3 | 5) + struct.pack("<I", crc)


def _block(entries: list[tuple[bytes, bytes]], declared: dict[bytes, int] | None = None) -> bytes:
    """An SSTable block with a restart point at every entry; `declared` lies about value lengths."""
    body, restarts = bytearray(), []
    for key, value in entries:
        restarts.append(len(body))
        length = (declared or {}).get(key, len(value))
        body += _varint(0) + _varint(len(key)) + _varint(length) + key + value
    restarts = restarts or [0]
    return bytes(body) + b"".join(struct.pack("<I", r) for r in restarts) + \
        struct.pack("<I", len(restarts))


def sstable(entries: list[tuple[bytes, bytes]], declared: dict[bytes, int] | None = None) -> bytes:
    """A TensorBundle .index: one data block, an empty metaindex, the index block, the footer."""
    out = bytearray()

    def put(block: bytes) -> bytes:
        handle = _varint(len(out)) + _varint(len(block))
        out.extend(block + b"\0" + struct.pack("<I", masked_crc(block + b"\0")))
        return handle

    data = put(_block(sorted(entries), declared))
    meta = put(_block([]))
    index = put(_block([(max(k for k, _ in entries) + b"\xff", data)]))
    footer = (meta + index).ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
    return bytes(out + footer)


def checkpoint_files(prefix: Path, tensors: dict[str, np.ndarray], **lie) -> None:
    """Write `prefix.index` and `prefix.data-00000-of-00001` for name-based `tensors`.

    `lie` overrides entry fields of tensor `lie["target"]`: dtype, shape, offset, size, crc, shard,
    and `value_len` (the length of its entry in the index block, whose crc stays valid);
    `num_shards` overrides the header. Object arrays are string tensors (lengths, crc, bytes).
    """
    prefix.parent.mkdir(parents=True, exist_ok=True)
    data, entries = bytearray(), [(b"", bundle_header(lie.get("num_shards", 1)))]
    for name, array in tensors.items():
        if array.dtype == object:
            raw, crc, dtype = *_string_bytes(array), "string"
        else:
            raw = np.ascontiguousarray(array).tobytes()
            crc, dtype = masked_crc(raw), array.dtype.name
        fields = {"dtype": DT[dtype], "shape": array.shape, "offset": len(data),
                  "size": len(raw), "crc": crc, "shard": 0}
        if lie.get("target") == name:
            fields.update({k: v for k, v in lie.items() if k in fields})
        entries.append((name.encode("utf-8", "surrogateescape"), bundle_entry(**fields)))
        data += raw
    declared = {lie["target"].encode(): lie["value_len"]} if "value_len" in lie else None
    _write(Path(f"{prefix}.index"), sstable(entries, declared))
    _write(Path(f"{prefix}.data-00000-of-00001"), bytes(data))


def _string_bytes(array: np.ndarray) -> tuple[bytes, int]:
    """TensorBundle string data (varint64 lengths, masked crc32c of the lengths, the bytes) and
    its entry crc. An element that is an int instead of bytes declares that length over nothing."""
    lengths = [e if isinstance(e, int) else len(e) for e in array.flat]
    hashed = b"".join(struct.pack("<I" if n < 1 << 32 else "<Q", n) for n in lengths)
    length_crc = struct.pack("<I", masked_crc(hashed))
    strings = b"".join(e for e in array.flat if isinstance(e, bytes))
    return (b"".join(_varint(n) for n in lengths) + length_crc + strings,
            masked_crc(hashed + length_crc + strings))


CKPT_TENSORS = {"dense/kernel": KERNEL, "dense/bias": BIAS}


def _checkpoint(c: Corpus) -> None:
    fmt, d = "tf-checkpoint", "tf-checkpoint"
    checkpoint_files(c.path(f"{d}/valid/model"), CKPT_TENSORS)
    c.bases[fmt] = f"{d}/valid/model"
    checkpoint_files(c.path("outside/ckpt/model"), CKPT_TENSORS)
    _write(c.path("outside/ckpt/checkpoint"), b'model_checkpoint_path: "model"\n')
    index = c.path(f"{d}/valid/model.index").read_bytes()
    data = c.path(f"{d}/valid/model.data-00000-of-00001").read_bytes()

    def case(name: str, errors: tuple[str, ...], about: str, *, index_bytes: bytes | None = None,
             data_bytes: bytes | None = None, **lie) -> None:
        prefix = c.path(f"{d}/{name}/model")
        checkpoint_files(prefix, CKPT_TENSORS, **lie)
        if index_bytes is not None:
            _write(Path(f"{prefix}.index"), index_bytes)
        if data_bytes is not None:
            _write(Path(f"{prefix}.data-00000-of-00001"), data_bytes)
        c.add(fmt, name, f"{d}/{name}/model", errors, about)

    case("index-empty", BROKEN, "an empty .index", index_bytes=b"")
    case("index-garbage", BROKEN, "an .index of garbage", index_bytes=bytes(range(256)) * 4)
    case("index-truncated", BROKEN, "half an .index", index_bytes=index[:len(index) // 2])
    case("index-footer-only", BROKEN, "an .index cut to its footer", index_bytes=index[-48:])
    case("index-bitflip", CORRUPT, "a flipped bit in a data block (block crc mismatch)",
         index_bytes=_flip(index, 20))
    case("index-bad-magic", BROKEN, "the footer magic is wrong", index_bytes=_flip(index, len(index) - 1))
    bad_handle = index[:-48] + (_varint(0) + _varint(8) + _varint(len(index) * 1000) +
                                _varint(1 << 40)).ljust(40, b"\0") + index[-8:]
    case("index-handle-past-end", CORRUPT, "the index block handle points past the file",
         index_bytes=bad_handle)
    case("data-bitflip", CORRUPT, "a flipped bit in the data (entry crc mismatch)",
         data_bytes=_flip(data, 30))
    case("data-truncated", CORRUPT, "the data file is shorter than the entries",
         data_bytes=data[:20])
    prefix = c.path(f"{d}/data-missing/model")
    checkpoint_files(prefix, CKPT_TENSORS)
    os.unlink(f"{prefix}.data-00000-of-00001")
    c.add(fmt, "data-missing", f"{d}/data-missing/model", CORRUPT, "the data shard is missing")
    case("entry-past-end", CORRUPT, "an entry whose offset+size runs past the data file",
         target="dense/kernel", offset=1 << 20)
    case("entry-size-mismatch", CORRUPT, "entry size 40 for a (4, 3) float32",
         target="dense/kernel", size=40)
    case("entry-dtype-unknown", BROKEN, "entry dtype 99", target="dense/kernel", dtype=99)
    case("entry-shape-bomb", REFUSED, "an entry declaring 16 GiB", target="dense/kernel",
         shape=(BOMB_ELEMENTS,), size=BOMB_ELEMENTS * 4)
    case("entry-shape-negative", CORRUPT, "a dimension of -4", target="dense/kernel", shape=(-4, 3))
    case("entry-shard-out-of-range", CORRUPT, "shard_id 5 of 1", target="dense/kernel", shard=5)
    case("header-two-shards", CORRUPT, "the header says 2 shards, one exists", num_shards=2)
    case("index-value-length-lie", CORRUPT, "an index entry declaring a 2 GiB value (block crc valid)",
         target="dense/kernel", value_len=1 << 31)
    strings = {"dense/kernel": KERNEL, "vocab": np.array([b"a", b"bc", 1 << 40], dtype=object)}
    checkpoint_files(c.path(f"{d}/string-length-bomb/model"), strings)
    c.add(fmt, "string-length-bomb", f"{d}/string-length-bomb/model", REFUSED,
          "a string tensor whose third element declares 1 TiB")

    case("entry-rank-65", CORRUPT, "an entry of 65 dimensions (numpy holds 64)",
         target="dense/kernel", shape=(1,) * 64 + (12,))
    case("entry-dim-2^63-1", CORRUPT, "a zero-size entry with a dimension of 2**63 - 1",
         target="dense/kernel", shape=(0, (1 << 63) - 1), size=0)
    # Two shards, the second a directory holding the one variable the base lacks: diff must read
    # it (not call it added) and fail as show does.
    prefix = c.path(f"{d}/shard-directory/model")
    prefix.parent.mkdir(parents=True)
    raw = KERNEL.tobytes()
    entries = [(b"", bundle_header(2)),
               (b"dense/kernel", bundle_entry(DT["float32"], KERNEL.shape, 0, len(raw),
                                              masked_crc(raw))),
               (b"extra", bundle_entry(DT["float32"], BIAS.shape, 0, 12,
                                       masked_crc(BIAS.tobytes()), shard=1))]
    _write(Path(f"{prefix}.index"), sstable(entries))
    _write(Path(f"{prefix}.data-00000-of-00002"), raw)
    Path(f"{prefix}.data-00001-of-00002").mkdir()
    c.add(fmt, "shard-directory", f"{d}/shard-directory/model", NOT_INPUT,
          "the second data shard, holding a variable the base lacks, is a directory")

    def state(name: str, target: str, about: str) -> None:
        # Two checkpoints here, none named like the target: a path leading out is never
        # followed, and there is no single local checkpoint to read instead.
        directory = c.path(f"{d}/{name}")
        checkpoint_files(directory / "one", CKPT_TENSORS)
        checkpoint_files(directory / "two", CKPT_TENSORS)
        _write(directory / "checkpoint", f'model_checkpoint_path: "{target}"\n'
               f'all_model_checkpoint_paths: "{target}"\n'.encode())
        c.add(fmt, name, f"{d}/{name}", REFUSED, about)

    state("state-dotdot", "../../outside/ckpt/model",
          "a `checkpoint` state file pointing at a real checkpoint outside its directory")
    state("state-dotdot-etc", "../../etc/x", "a `checkpoint` state file pointing at ../../etc/x")
    state("state-absolute", str(c.path("outside/ckpt/model")),
          "a `checkpoint` state file with an absolute path")
    directory = c.path(f"{d}/state-symlink-out")
    checkpoint_files(directory / "model", CKPT_TENSORS)
    os.symlink(c.path("outside/ckpt/checkpoint"), directory / "checkpoint")
    c.add(fmt, "state-symlink-out", f"{d}/state-symlink-out", UNSAFE,
          "the `checkpoint` state file is a symlink leading outside the directory")
    prefix = c.path(f"{d}/data-symlink-out/model")
    checkpoint_files(prefix, CKPT_TENSORS)
    os.unlink(f"{prefix}.data-00000-of-00001")
    os.symlink(c.path("outside/ckpt/model.data-00000-of-00001"), f"{prefix}.data-00000-of-00001")
    c.add(fmt, "data-symlink-out", f"{d}/data-symlink-out/model", UNSAFE,
          "the data file is a symlink leading outside the checkpoint directory",
          named=f"{d}/data-symlink-out")
    prefix = c.path(f"{d}/data-fifo/model")
    checkpoint_files(prefix, CKPT_TENSORS)
    os.unlink(f"{prefix}.data-00000-of-00001")
    os.mkfifo(f"{prefix}.data-00000-of-00001")
    c.add(fmt, "data-fifo", f"{d}/data-fifo/model", NOT_INPUT, "the data file is a FIFO")
    checkpoint_files(c.path(f"{d}/names/model"), {n: BIAS for n in HOSTILE_NAMES})
    c.names[fmt] = f"{d}/names/model"


def _saved_model(c: Corpus) -> None:
    fmt, d = "saved-model", "saved-model"

    def model(name: str) -> Path:
        directory = c.path(f"{d}/{name}")
        _write(directory / "saved_model.pb", _field(1, 1))  # SavedModel{schema_version: 1}
        checkpoint_files(directory / "variables" / "variables", CKPT_TENSORS)
        return directory

    c.bases[fmt] = str(model("valid").relative_to(c.root))
    variables = model("variables-missing") / "variables"
    for p in variables.iterdir():
        p.unlink()
    variables.rmdir()
    c.add(fmt, "variables-missing", f"{d}/variables-missing", CORRUPT,
          "no variables/ directory, and no meta graph whose constants would be the weights")

    def constants(name: str, nodes: bytes, errors: tuple[str, ...], about: str) -> None:
        """A SavedModel of constants (no variables/): one meta graph of `nodes`."""
        _write(c.path(f"{d}/{name}") / "saved_model.pb",
               _field(1, 1) + _field(2, _field(2, nodes)))
        c.add(fmt, name, f"{d}/{name}", errors, about)

    constants("constants-bomb", const_node("k", 1, (1 << 40,), typed=_field(5, b"\0\0\x80\x3f")),
              REFUSED, "a graph constant of one float_val broadcast to 2^40 elements")
    constants("constants-content-short",
              const_node("k", 1, (4, 3), content=KERNEL.tobytes()[:-4]), CORRUPT,
              "a graph constant's tensor_content 4 bytes short of its shape")
    constants("constants-twice", const_node("k", 1, (3,), content=BIAS.tobytes()) * 2, CORRUPT,
              "two Const nodes of one meta graph named alike")
    constants("constants-shape-twice", const_node(
        "k", 1, (2,), typed=_field(5, b"\0\0\x80\x3f"), extra=_field(2, _field(2, _field(1, 3)))),
        CORRUPT, "a graph constant with tensor_shape twice (TensorFlow merges them: [2, 3])")
    two = _field(1, 1) + _field(2, _field(2, const_node("k", 1, (3,), content=BIAS.tobytes())
                                           + const_node("k@1", 1, (3,), content=BIAS.tobytes())))
    _write(c.path(f"{d}/constants-copy-name") / "saved_model.pb", two + _field(2, _field(
        2, const_node("k", 1, (3,), content=(BIAS * 2).tobytes()))))
    c.add(fmt, "constants-copy-name", f"{d}/constants-copy-name", CORRUPT,
          "a Const named k@1 beside k, whose differing copy in meta graph 1 is named k@1 too")
    constants("constants-graph-truncated",
              (const_node("k", 1, (3,), content=BIAS.tobytes()))[:-5], BROKEN,
              "a meta graph's GraphDef cut inside a node")
    data = model("data-symlink-out") / "variables" / "variables.data-00000-of-00001"
    data.unlink()
    os.symlink(c.path("outside/ckpt/model.data-00000-of-00001"), data)
    c.add(fmt, "data-symlink-out", f"{d}/data-symlink-out", UNSAFE,
          "variables data is a symlink leading outside the SavedModel")
    variables = model("variables-symlink-out") / "variables"
    for p in variables.iterdir():
        p.unlink()
    variables.rmdir()
    (c.path("outside/variables")).mkdir(exist_ok=True)
    checkpoint_files(c.path("outside/variables/variables"), CKPT_TENSORS)
    os.symlink(c.path("outside/variables"), variables)
    c.add(fmt, "variables-symlink-out", f"{d}/variables-symlink-out", UNSAFE,
          "variables/ is a symlink to a directory outside")
    index = model("index-bitflip") / "variables" / "variables.index"
    index.write_bytes(_flip(index.read_bytes(), 20))
    c.add(fmt, "index-bitflip", f"{d}/index-bitflip", CORRUPT, "a flipped bit in variables.index")
    names = c.path(f"{d}/names")
    _write(names / "saved_model.pb", _field(1, 1))
    checkpoint_files(names / "variables" / "variables", {n: BIAS for n in HOSTILE_NAMES})
    c.names[fmt] = f"{d}/names"
    os.mkfifo(model("fifo-inside") / "assets.fifo")
    c.add(fmt, "fifo-inside", f"{d}/fifo-inside", NOT_INPUT, "a FIFO inside the SavedModel")


# ---------------------------------------------------------------------------------------------
# TFLite (FlatBuffers built with the flatbuffers runtime's Builder, slot by slot)

TFL_TYPES = {"float32": 0, "int32": 2, "string": 5, "int8": 9}


def tflite_bytes(tensors: list[dict], *, version: int = 3, identifier: bytes = b"TFL3",
                 subgraph_copies: int = 1, extra_tensor_field: bool = False,
                 positions: dict | None = None,
                 operators: list[tuple[int, list[int], list[int], int]] = ()) -> bytes:
    """A TFLite model of one subgraph of constant tensors and no operators (a weights
    container). Each tensor: {name, shape, type (TFL_TYPES key or code), data (bytes), and
    optionally buffer (an index to use instead of its own), external_buffer, sparsity
    (traversal_order, dims [(dense_size) for a DENSE dimension, or (segments, indices) for a
    SPARSE_CSR one]), outside ((offset, size) instead of data), quantization ({scale,
    zero_point, dim}), copies (how many offsets to the tensor the tensors vector holds)}.
    `subgraph_copies` repeats the offset to the one subgraph (a DAG, not more bytes);
    `extra_tensor_field` gives each tensor a 12th field the schema does not know;
    `positions`, if given, receives where the tensors vector's length and the root are;
    `operators`: (builtin code, inputs, outputs, copies) each, the operator's offset repeated
    `copies` times."""
    import flatbuffers
    b = flatbuffers.Builder(1024)

    def ints(values: list[int]) -> int:
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependInt32(v)
        return b.EndVector()

    def table(fields: list[tuple[str, int, object]], n: int) -> int:
        b.StartObject(n)
        for kind, slot, value in fields:
            getattr(b, f"Prepend{kind}Slot")(slot, value, 0)
        return b.EndObject()

    buffers = [table([], 3)]
    buffer_of = []
    for t in tensors:
        if "buffer" in t:
            buffer_of.append(t["buffer"])
            continue
        if "outside" in t:
            offset, size = t["outside"]
            buffers.append(table([("Uint64", 1, offset), ("Uint64", 2, size)], 3))
        else:
            data = b.CreateByteVector(t["data"])
            buffers.append(table([("UOffsetTRelative", 0, data)], 3))
        buffer_of.append(len(buffers) - 1)
    offsets = []
    for t, buf in zip(tensors, buffer_of):
        name = b.CreateString(t["name"])
        shape = ints(list(t["shape"]))
        sparsity = None
        if "sparsity" in t:
            dims = []
            for size in t["sparsity"]["dims"]:
                if isinstance(size, tuple):  # SPARSE_CSR: Int32Vector segments and indices
                    segments = table([("UOffsetTRelative", 0, ints(list(size[0])))], 1)
                    indices = table([("UOffsetTRelative", 0, ints(list(size[1])))], 1)
                    dims.append(table([("Int8", 0, 1), ("Uint8", 2, 1),
                                       ("UOffsetTRelative", 3, segments), ("Uint8", 4, 1),
                                       ("UOffsetTRelative", 5, indices)], 6))
                    continue
                dims.append(table([("Int32", 1, size)], 4))
            b.StartVector(4, len(dims), 4)
            for d in reversed(dims):
                b.PrependUOffsetTRelative(d)
            dim_vec = b.EndVector()
            order = ints(t["sparsity"]["traversal_order"])
            sparsity = table([("UOffsetTRelative", 0, order), ("UOffsetTRelative", 2, dim_vec)], 3)
        quantization = None
        if "quantization" in t:
            q = t["quantization"]
            scale = b.CreateNumpyVector(np.asarray(q["scale"], np.float32))
            zero = b.CreateNumpyVector(np.asarray(q["zero_point"], np.int64))
            quantization = table([("UOffsetTRelative", 2, scale), ("UOffsetTRelative", 3, zero),
                                  ("Int32", 6, q.get("dim", 0))], 7)
        kind = t["type"]
        fields = [("UOffsetTRelative", 0, shape), ("Int8", 1, TFL_TYPES.get(kind, kind)),
                  ("Uint32", 2, buf), ("UOffsetTRelative", 3, name), ("Bool", 8, True)]
        if quantization is not None:
            fields.append(("UOffsetTRelative", 4, quantization))
        if sparsity is not None:
            fields.append(("UOffsetTRelative", 6, sparsity))
        if t.get("external_buffer"):
            fields.append(("Uint32", 10, t["external_buffer"]))
        if extra_tensor_field:
            fields.append(("Int32", 11, 7))
        offsets += [table(fields, 12 if extra_tensor_field else 11)] * t.get("copies", 1)
    b.StartVector(4, len(offsets), 4)
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    tensor_vec = b.EndVector()
    empty = ints([])
    sg_name = b.CreateString("main")
    codes = sorted({code for code, _, _, _ in operators})
    ops = []
    for code, inputs, outputs, copies in operators:
        op = table([("Uint32", 0, codes.index(code)), ("UOffsetTRelative", 1, ints(inputs)),
                    ("UOffsetTRelative", 2, ints(outputs))], 3)
        ops += [op] * copies
    b.StartVector(4, len(ops), 4)
    for o in reversed(ops):
        b.PrependUOffsetTRelative(o)
    operators_vec = b.EndVector()
    code_tables = [table([("Int8", 0, min(code, 127)), ("Int32", 2, 1), ("Int32", 3, code)], 4)
                   for code in codes]
    b.StartVector(4, len(code_tables), 4)
    for o in reversed(code_tables):
        b.PrependUOffsetTRelative(o)
    code_vec = b.EndVector()
    subgraph = table([("UOffsetTRelative", 0, tensor_vec), ("UOffsetTRelative", 1, empty),
                      ("UOffsetTRelative", 2, empty), ("UOffsetTRelative", 3, operators_vec),
                      ("UOffsetTRelative", 4, sg_name)], 6)
    b.StartVector(4, subgraph_copies, 4)
    for _ in range(subgraph_copies):
        b.PrependUOffsetTRelative(subgraph)
    subgraphs = b.EndVector()
    b.StartVector(4, len(buffers), 4)
    for o in reversed(buffers):
        b.PrependUOffsetTRelative(o)
    buffer_vec = b.EndVector()
    description = b.CreateString("make_crafted")
    model = table([("Uint32", 0, version), ("UOffsetTRelative", 1, code_vec),
                   ("UOffsetTRelative", 2, subgraphs), ("UOffsetTRelative", 3, description),
                   ("UOffsetTRelative", 4, buffer_vec)], 10)
    b.Finish(model, file_identifier=identifier)
    out = bytes(b.Output())
    if positions is not None:
        positions["tensors"] = len(out) - tensor_vec
    return out


TFL_BASE = [{"name": "dense/kernel", "shape": [4, 3], "type": "float32", "data": KERNEL.tobytes()},
            {"name": "dense/bias", "shape": [3], "type": "float32", "data": BIAS.tobytes()}]


def tflite_strings(values: list[bytes], offsets: list[int] | None = None) -> bytes:
    """A TFLite string buffer: int32 count, count + 1 int32 offsets, the bytes."""
    header = 4 * (len(values) + 2)
    starts = offsets or list(np.cumsum([header] + [len(v) for v in values]))
    return struct.pack(f"<{len(starts) + 1}i", len(values), *starts) + b"".join(values)


def tflite_overlapping_structure() -> bytes:
    """A model whose tensor `b` has its data vector moved onto bytes the FlatBuffer reads as
    structure (a's vector length), its shape made to fit: an edit of `b` in place would
    rewrite them."""
    data_a, data_b = np.float32([1, 2, 3]).tobytes(), np.float32([4, 5, 6, 7, 8]).tobytes()
    out = bytearray(tflite_bytes([{"name": "a", "shape": [3], "type": "float32", "data": data_a},
                                  {"name": "b", "shape": [5], "type": "float32", "data": data_b}]))
    a_length = out.index(data_a) - 4  # a's vector length: structure
    vector_b = out.index(data_b) - 4
    pointer = next(p for p in range(0, len(out) - 4, 4)
                   if p + struct.unpack_from("<I", out, p)[0] == vector_b)
    for target in range(pointer + 4, len(out) - 8, 4):
        n = struct.unpack_from("<I", out, target)[0]
        if n in (4, 8, 12) and target + 4 <= a_length < target + 4 + n:
            struct.pack_into("<I", out, pointer, target - pointer)
            shape = out.index(struct.pack("<II", 1, 5))
            struct.pack_into("<I", out, shape + 4, n // 4)
            return bytes(out)
    raise AssertionError("no length field to move b's data onto")


def _tflite(c: Corpus) -> None:
    fmt, d = "tflite", "tflite"
    valid = tflite_bytes(TFL_BASE)
    c.bases[fmt] = str(_write(c.path(f"{d}/valid.tflite"), valid).relative_to(c.root))
    _common(c, fmt, ".tflite", valid)

    def case(name: str, data: bytes, errors: tuple[str, ...], about: str, **kw) -> None:
        c.add(fmt, name, str(_write(c.path(f"{d}/{name}.tflite"), data).relative_to(c.root)),
              errors, about, **kw)

    def variant(**changes) -> list[dict]:
        return [{**TFL_BASE[0], **changes}, TFL_BASE[1]]

    root = struct.unpack_from("<I", valid, 0)[0]
    case("root-past-end", struct.pack("<I", len(valid) + 64) + valid[4:], BROKEN,
         "the root table offset points past the end of the file")
    vtable_lie = bytearray(valid)
    struct.pack_into("<i", vtable_lie, root, -(1 << 30))
    case("vtable-past-end", bytes(vtable_lie), BROKEN, "the model's vtable lies past the end")
    vtable_neg = bytearray(valid)
    struct.pack_into("<i", vtable_neg, root, root + 1000)
    case("vtable-before-start", bytes(vtable_neg), BROKEN,
         "the model's vtable lies before the file (a negative position)")
    where: dict = {}
    huge = bytearray(tflite_bytes(TFL_BASE, positions=where))
    struct.pack_into("<I", huge, where["tensors"], 0x7FFFFFFF)
    case("vector-huge", bytes(huge), BROKEN, "the tensors vector claims 2**31 - 1 entries")
    case("dag-bomb", tflite_bytes(TFL_BASE, subgraph_copies=400_000), REFUSED,
         "400,000 offsets to one subgraph: 1.6 million tables from 1.6 MB")
    case("version-2", tflite_bytes(TFL_BASE, version=2), BROKEN, "schema version 2")
    case("shape-bomb", tflite_bytes(variant(shape=[1 << 30, 1 << 30])), REFUSED,
         "a shape of 2**60 elements over 48 bytes")
    case("shape-negative", tflite_bytes(variant(shape=[-4, 3])), BROKEN, "a negative dimension")
    case("type-unknown", tflite_bytes(variant(type=99)), BROKEN, "tensor type 99")
    case("buffer-out-of-range", tflite_bytes(variant(buffer=99)), BROKEN,
         "a tensor naming buffer 99 of 3")
    case("external-file", tflite_bytes(variant(external_buffer=1)), UNSAFE,
         "a tensor whose data is in an external file (Tensor.external_buffer)")
    size = len(valid) + 4096
    case("outside-past-end", tflite_bytes(variant(outside=(size, 48))), BROKEN,
         "a buffer stored 'after the FlatBuffer' at an offset past the end of the file")
    case("outside-in-structure", tflite_bytes(variant(outside=(8, 48))) + bytes(64), BROKEN,
         "a buffer 'after the FlatBuffer' that points into the FlatBuffer itself")
    body = tflite_bytes([{**TFL_BASE[0], "outside": (0, 0)}])
    base = len(body) + (-len(body)) % 16 + 4096
    overlapping = tflite_bytes([{**TFL_BASE[0], "outside": (base, 48)},
                                {**TFL_BASE[1], "shape": [12], "outside": (base + 16, 48)}])
    case("outside-overlapping", overlapping + bytes(base + 64 - len(overlapping)), BROKEN,
         "two buffers after the FlatBuffer that partly overlap")
    case("sparse-bomb", tflite_bytes(variant(shape=[1 << 16, 1 << 16], sparsity={
        "traversal_order": [0, 1], "dims": [1 << 16, 1 << 16]})), REFUSED,
         "48 bytes of sparse values that would densify to 16 GiB")
    strings = tflite_strings([b"ab", b"c"], offsets=[16, 18, 4000])
    case("string-offsets", tflite_bytes([{"name": "vocab", "shape": [2], "type": "string",
                                          "data": strings}, TFL_BASE[1]]), CORRUPT,
         "string offsets past the end of the string buffer")
    case("identifier-missing", valid[:4] + b"XXXX" + valid[8:], BROKEN,
         "a FlatBuffer without the TFL3 identifier")
    # Round three: shared vectors, quantization the interpreter refuses, shapes numpy cannot
    # hold, a sparse tensor made dense a block at a time.
    wide = np.full(50_000, 0.5, np.float32)
    case("dag-shared-vectors", tflite_bytes([TFL_BASE[0], TFL_BASE[1], {
        "name": "act", "shape": [wide.size], "type": "int8", "buffer": 0, "copies": 5000,
        "quantization": {"scale": wide, "zero_point": np.zeros(wide.size, np.int64)}}]),
        REFUSED, "a tensor with 50,000 scales reached through 5,000 offsets: 3 GB from 0.6 MB")
    case("dag-shared-inputs", tflite_bytes(TFL_BASE, operators=[
        (9, [0] * 100_000, [1], 5000)]), REFUSED,
         "an operator of 100,000 inputs reached through 5,000 offsets")

    def quantized(scale: list, zero: list, dim: int = 0) -> bytes:
        return tflite_bytes([{**TFL_BASE[0], "type": "int8", "data": bytes(12),
                              "quantization": {"scale": scale, "zero_point": zero, "dim": dim}},
                             TFL_BASE[1]])
    case("quant-zero-points", quantized([0.1] * 4, [0]), CORRUPT,
         "4 scales and 1 zero point (the interpreter refuses the model)")
    case("quant-scales-count", quantized([0.1] * 3, [0] * 3), CORRUPT,
         "3 scales for dimension 0 of size 4")
    case("quant-axis-outside", quantized([0.1], [0], dim=5), CORRUPT,
         "quantized_dimension 5 of a rank-2 tensor")
    case("quant-scales-huge", quantized([0.1] * 200_000, [0] * 200_000), CORRUPT,
         "200,000 scales for a [4, 3] tensor (refused before they are read)")
    case("quant-zero-point-int64", quantized([0.5], [1 << 40]), CORRUPT,
         "a zero point of 2**40 (the interpreter keeps int32 and would cut it)")
    case("data-on-structure", tflite_overlapping_structure(), BROKEN,
         "a buffer's data vector lying on another vector's length field")
    case("rank-100", tflite_bytes(variant(shape=[1] * 100, data=KERNEL.tobytes()[:4])), CORRUPT,
         "a constant tensor of rank 100")
    big = (1 << 31) - 1
    case("zero-size-huge", tflite_bytes(variant(shape=[0, big, big, big], data=b"")),
         CORRUPT, "an empty constant whose other dimensions make 2**93 elements")
    rows, cols = 4096, 4096
    counts = (np.arange(rows) % 7) + 1
    segments = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    indices = np.concatenate([(np.arange(k) * 577 + r) % cols for r, k in enumerate(counts)])
    values = np.arange(1, segments[-1] + 1, dtype=np.float32)
    dense = np.zeros((rows, cols), np.float32)
    dense[np.repeat(np.arange(rows), counts), indices] = values
    c.valid(fmt, "sparse-by-rows", str(_write(c.path(f"{d}/sparse-by-rows.tflite"), tflite_bytes([
        {"name": "w", "shape": [rows, cols], "type": "float32", "data": values.tobytes(),
         "sparsity": {"traversal_order": [0, 1], "dims": [rows, (segments, indices)]}},
        {"name": "in", "shape": [1, cols], "type": "float32", "buffer": 0},
        {"name": "out", "shape": [1, rows], "type": "float32", "buffer": 0}],
        operators=[(124, [0], [2], 1)])).relative_to(c.root)), {"w": dense},
        "a sparse tensor (CSR rows) that is 64 MiB dense, read a block of rows at a time")

    names = [{"name": n, "shape": [3], "type": "float32", "data": BIAS.tobytes()}
             for n in HOSTILE_NAMES]
    c.names[fmt] = str(_write(c.path(f"{d}/names.tflite"), tflite_bytes(names))
                       .relative_to(c.root))
    c.suffixes.append((fmt, str(_write(c.path(f"{d}/really-tflite.h5"), valid)
                                .relative_to(c.root))))
# TF.js models (model.json + weight files) and frozen GraphDefs (issue 16)

def tfjs_model(directory: Path, weights: list[dict], files: dict[str, bytes],
               paths: list[str] | None = None, doc: dict | bytes | None = None) -> Path:
    """A TF.js model directory: model.json with one manifest group over `files`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        _write(directory / name, data)
    if doc is None:
        doc = {"format": "layers-model", "weightsManifest": [
            {"paths": list(files) if paths is None else paths, "weights": weights}]}
    _write(directory / "model.json", doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    return directory


TFJS_WEIGHTS = [{"name": "dense/kernel", "shape": [4, 3], "dtype": "float32"},
                {"name": "dense/bias", "shape": [3], "dtype": "float32"}]
TFJS_DATA = KERNEL.tobytes() + BIAS.tobytes()


def _tfjs(c: Corpus) -> None:
    fmt, d = "tfjs", "tfjs"

    def case(name: str, errors: tuple[str, ...], about: str, **model) -> None:
        weights = model.pop("weights", TFJS_WEIGHTS)
        files = model.pop("files", {"group1-shard1of1.bin": TFJS_DATA})
        tfjs_model(c.path(f"{d}/{name}"), weights, files, **model)
        c.add(fmt, name, f"{d}/{name}", errors, about)

    c.bases[fmt] = str(tfjs_model(c.path(f"{d}/valid"), TFJS_WEIGHTS,
                                  {"group1-shard1of1.bin": TFJS_DATA}).relative_to(c.root))
    _write(c.path("outside/tfjs.bin"), TFJS_DATA)
    case("path-dotdot", UNSAFE, "a manifest path ../../outside/tfjs.bin", files={},
         paths=["../../outside/tfjs.bin"])
    case("path-absolute", UNSAFE, "an absolute manifest path", files={},
         paths=[str(c.path("outside/tfjs.bin"))])
    case("path-backslash", UNSAFE, "a manifest path with backslashes", files={},
         paths=["..\\..\\outside\\tfjs.bin"])
    case("shard-symlink-out", UNSAFE, "a weight file that is a symlink leading outside", files={},
         paths=["group1-shard1of1.bin"])
    os.symlink(c.path("outside/tfjs.bin"), c.path(f"{d}/shard-symlink-out/group1-shard1of1.bin"))
    link = c.path(f"{d}/model-json-symlink-out")
    link.mkdir(parents=True)
    _write(link / "group1-shard1of1.bin", TFJS_DATA)
    _write(c.path("outside/tfjs/model.json"), json.dumps({"format": "layers-model",
           "weightsManifest": [{"paths": ["group1-shard1of1.bin"],
                                "weights": TFJS_WEIGHTS}]}).encode())
    os.symlink(c.path("outside/tfjs/model.json"), link / "model.json")
    c.add(fmt, "model-json-symlink-out", f"{d}/model-json-symlink-out", UNSAFE,
          "the directory's model.json is a symlink to a file outside it")
    case("shard-missing", CORRUPT, "the manifest names a weight file that is not there", files={},
         paths=["group1-shard1of1.bin"])
    case("shard-fifo", NOT_INPUT, "a weight file that is a FIFO", files={},
         paths=["group1-shard1of1.bin"])
    os.mkfifo(c.path(f"{d}/shard-fifo/group1-shard1of1.bin"))
    case("shard-short", CORRUPT, "weight files 8 bytes shorter than the manifest says",
         files={"a.bin": TFJS_DATA[:30], "b.bin": TFJS_DATA[30:-8]})
    case("shard-long", CORRUPT, "weight files longer than the manifest says",
         files={"group1-shard1of1.bin": TFJS_DATA + b"\0" * 16})
    case("shape-huge", CORRUPT, "a weight of shape [2^40, 2^40] in 60 bytes",
         weights=[{"name": "big", "shape": [1 << 40, 1 << 40], "dtype": "float32"}])
    case("shape-negative", CORRUPT, "a weight of shape [-1, 15]",
         weights=[{"name": "neg", "shape": [-1, 15], "dtype": "float32"}])
    case("rank-100", CORRUPT, "a weight of rank 100",
         weights=[{"name": "deep", "shape": [1] * 100, "dtype": "float32"}],
         files={"group1-shard1of1.bin": TFJS_DATA[:4]})
    case("zero-size-huge", CORRUPT, "an empty weight whose other dimensions make 2**80 elements",
         weights=[{"name": "none", "shape": [0, 1 << 40, 1 << 40], "dtype": "float32"}],
         files={"group1-shard1of1.bin": b""})
    strings = (3).to_bytes(4, "little") + b"abc" + (0xFFFFFFF0).to_bytes(4, "little") + b"xy"
    case("string-length-past-end", CORRUPT, "a string element claiming 4 GiB in a 13-byte file",
         weights=[{"name": "s", "shape": [2], "dtype": "string"}],
         files={"group1-shard1of1.bin": strings})
    case("string-count-huge", CORRUPT, "2^40 string elements in 13 bytes",
         weights=[{"name": "s", "shape": [1 << 40], "dtype": "string"}],
         files={"group1-shard1of1.bin": strings})
    case("dtype-unknown", CORRUPT, "a weight of dtype float64 (TF.js has none)",
         weights=[{**TFJS_WEIGHTS[0], "dtype": "float64"}, TFJS_WEIGHTS[1]])
    case("quantization-no-scale", CORRUPT, "uint8 quantization without scale and min",
         weights=[{**TFJS_WEIGHTS[0], "quantization": {"dtype": "uint8"}}, TFJS_WEIGHTS[1]],
         files={"group1-shard1of1.bin": bytes(12) + BIAS.tobytes()})
    case("quantization-nan", CORRUPT, "uint8 quantization with a scale of 1e999 (infinite)",
         doc=(b'{"weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": [{"name": '
              b'"k", "shape": [12], "dtype": "float32", "quantization": {"dtype": "uint8", '
              b'"scale": 1e999, "min": 0}}]}]}'), files={"group1-shard1of1.bin": bytes(12)})
    case("duplicate-names", CORRUPT, "two weights of the same name",
         weights=[TFJS_WEIGHTS[0], {**TFJS_WEIGHTS[1], "name": "dense/kernel"}])
    case("json-duplicate-keys", CORRUPT, "model.json with the key weightsManifest twice",
         doc=b'{"weightsManifest": [], "weightsManifest": []}')
    case("json-broken", BROKEN, "model.json that is not JSON", doc=b'{"weightsManifest": [')
    case("manifest-not-list", CORRUPT, "weightsManifest that is an object",
         doc=b'{"weightsManifest": {"paths": []}}')
    huge = c.path(f"{d}/json-huge")
    huge.mkdir(parents=True)
    _sparse(huge / "model.json", b'{"weightsManifest": [', 300 << 20)
    c.add(fmt, "json-huge", f"{d}/json-huge", REFUSED, "a 300 MiB model.json")
    names = [{"name": n, "shape": [3], "dtype": "float32"} for n in HOSTILE_NAMES]
    c.names[fmt] = str(tfjs_model(c.path(f"{d}/names"), names, {
        "group1-shard1of1.bin": BIAS.tobytes() * len(HOSTILE_NAMES)}).relative_to(c.root))


def const_node(name: str, dtype: int, shape: tuple[int, ...], *, content: bytes | None = None,
               typed: bytes = b"", extra: bytes = b"") -> bytes:
    """A NodeDef `name` = Const of a TensorProto (tensor_content or typed value fields)."""
    dims = b"".join(_field(2, _field(1, d) if d else b"") for d in shape)
    tensor = _field(1, dtype) + _field(2, dims) + (b"" if content is None else _field(4, content))
    tensor += typed + extra
    attrs = (_field(5, _field(1, b"dtype") + _field(2, _field(6, dtype)))
             + _field(5, _field(1, b"value") + _field(2, _field(8, tensor))))
    return _field(1, _field(1, name.encode()) + _field(2, b"Const") + attrs)


def _graphdef(c: Corpus) -> None:
    fmt, d = "tf-graphdef", "tf-graphdef"
    kernel = const_node("dense/kernel", 1, (4, 3), content=KERNEL.tobytes())
    bias = const_node("dense/bias", 1, (3,), content=BIAS.tobytes())
    valid = kernel + bias
    c.bases[fmt] = str(_write(c.path(f"{d}/valid.pb"), valid).relative_to(c.root))

    def case(name: str, data: bytes, errors: tuple[str, ...], about: str) -> None:
        c.add(fmt, name, str(_write(c.path(f"{d}/{name}.pb"), data).relative_to(c.root)), errors,
              about)

    case("garbage", b"\x0a\x05" + bytes(range(256)) * 8, BROKEN, "bytes of no format")
    for name, size in (("truncated-half", len(valid) // 2), ("truncated-tail", len(valid) - 7)):
        case(name, valid[:size], BROKEN, f"the first {size} of {len(valid)} bytes")
    c.path(f"{d}/directory.pb").mkdir(parents=True)
    c.add(fmt, "directory", f"{d}/directory.pb", NOT_INPUT, "a directory named like a file")
    os.mkfifo(c.path(f"{d}/fifo.pb"))
    c.add(fmt, "fifo", f"{d}/fifo.pb", NOT_INPUT, "a FIFO (reading it would block)")
    saved = c.path(f"{d}/savedmodel/saved_model.pb")
    _write(saved, _field(1, 1) + _field(2, _field(2, valid)))
    c.add(fmt, "saved-model-pb", f"{d}/savedmodel/saved_model.pb", BROKEN,
          "a SavedModel's saved_model.pb given as a frozen graph")
    case("content-short", const_node("k", 1, (4, 3), content=KERNEL.tobytes()[:-4]), CORRUPT,
         "tensor_content 4 bytes short of its shape")
    case("broadcast-bomb", const_node("k", 1, (1 << 40,), typed=_field(5, b"\0\0\x80\x3f")),
         REFUSED, "one float_val broadcast to 2^40 elements")
    case("dtype-unknown", const_node("k", 99, (3,), content=BIAS.tobytes()), CORRUPT,
         "a Const of TensorFlow dtype 99")
    case("dim-negative", const_node("k", 1, (3,), content=BIAS.tobytes())
         .replace(_field(2, _field(2, _field(1, 3))), _field(2, _field(2, _field(1, -3)))),
         CORRUPT, "a dimension of -3")
    case("string-content", const_node("k", 7, (2,), content=b"abcd"), CORRUPT,
         "a string Const in tensor_content")
    case("length-past-end", b"\x0a\xff\xff\xff\x0f" + valid, BROKEN,
         "a node claiming 4 GiB in a small file")
    case("varint-overlong", valid[:-len(bias)] + b"\x0a" + b"\xff" * 11 + b"\x01", CORRUPT,
         "a varint of 12 bytes")
    case("packed-truncated", const_node("k", 3, (3,), typed=_field(7, b"\x01\x82")), CORRUPT,
         "packed int_val ending inside a varint")
    case("duplicate-names", kernel + kernel, CORRUPT, "two Const nodes of the same name")
    case("wire-group", valid + b"\x0b\x0c", CORRUPT, "a (deprecated) group wire type")
    # Round three: fields protobuf would merge (TensorFlow reads another tensor than a reader
    # taking the last one), DT_INVALID, a dtype attr that disagrees, a wire type protobuf
    # skips, shapes numpy cannot hold.
    one, two = _field(5, struct.pack("<f", 1.0)), _field(5, struct.pack("<f", 2.0))
    dims = lambda *ds: _field(2, b"".join(_field(2, _field(1, x)) for x in ds))  # noqa: E731

    def raw_const(tensor: bytes, dtype: int = 1, attrs: bytes | None = None) -> bytes:
        if attrs is None:
            attrs = (_field(5, _field(1, b"dtype") + _field(2, _field(6, dtype)))
                     + _field(5, _field(1, b"value") + _field(2, _field(8, tensor))))
        return _field(1, _field(1, b"k") + _field(2, b"Const") + attrs)
    case("shape-twice", raw_const(_field(1, 1) + dims(2) + dims(3) + one), CORRUPT,
         "tensor_shape given twice: TensorFlow merges them into [2, 3], the last alone is [3]")
    case("tensor-twice", raw_const(b"", attrs=_field(5, _field(1, b"dtype") + _field(
        2, _field(6, 1))) + _field(5, _field(1, b"value") + _field(2, _field(
            8, _field(1, 1) + dims(3) + one) + _field(8, two)))), CORRUPT,
         "AttrValue.tensor given twice: TensorFlow merges them into [1, 2, 2], the last is 2.0")
    case("value-twice", raw_const(b"", attrs=_field(5, _field(1, b"value") + _field(
        2, _field(8, _field(1, 1) + dims(3) + one))) + _field(5, _field(1, b"value") + _field(
            2, _field(6, 1)))), CORRUPT, "the attr value twice, the last not a tensor")
    case("dtype-missing", raw_const(dims(3) + _field(4, BIAS.tobytes())), CORRUPT,
         "a TensorProto without a dtype (DT_INVALID, which TensorFlow refuses)")
    case("dtype-attr-differs", raw_const(_field(1, 1) + dims(3) + one, dtype=3), CORRUPT,
         "attr dtype int32 on a float tensor (TensorFlow refuses the node)")
    case("string-wire", raw_const(_field(1, 7) + dims(2) + b"\x40\x05" + _field(8, b"ab"),
                                  dtype=7), CORRUPT,
         "a string_val of wire type varint (protobuf skips it: TensorFlow reads [ab, ab])")
    case("rank-100", const_node("k", 1, (1,) * 100, content=BIAS.tobytes()[:4]), CORRUPT,
         "a constant of rank 100")
    case("zero-size-huge", const_node("k", 1, (0, 1 << 40, 1 << 40)), CORRUPT,
         "an empty constant whose other dimensions make 2**80 elements")
    floats = np.array([0.5, -1.25, 3.0], np.float32)
    c.valid(fmt, "unpacked-floats", str(_write(c.path(f"{d}/unpacked-floats.pb"), const_node(
        "k", 1, (3,), typed=b"".join(b"\x2d" + v.tobytes() for v in floats))).relative_to(c.root)),
        {"k": floats}, "float_val given one field per value (unpacked): written back so")
    rows, cols = 4096, 1024
    c.valid(fmt, "broadcast-by-rows", str(_write(c.path(f"{d}/broadcast-by-rows.pb"), const_node(
        "k", 1, (rows, cols), typed=_field(5, np.float32([0.5, -2.0, 1.5]).tobytes()),
        extra=_field(1000, bytes(16 << 10)))).relative_to(c.root)),
        {"k": np.concatenate([[0.5, -2.0], np.full(rows * cols - 2, 1.5)]).astype(
            np.float32).reshape(rows, cols)},
        "three float_val broadcast to 16 MiB, made a block of rows at a time")
    deep = b"\x01"
    for _ in range(200):
        deep = _field(1, deep)
    c.suffixes.append((fmt, str(_write(c.path(f"{d}/deep-unknown-field.pb"),
                                       valid + _field(1000, deep)).relative_to(c.root))))
    c.names[fmt] = str(_write(c.path(f"{d}/names.pb"), b"".join(
        const_node(n, 1, (3,), content=BIAS.tobytes()) for n in HOSTILE_NAMES))
        .relative_to(c.root))


def make_corpus(root: str | os.PathLike) -> Corpus:
    """Write the whole crafted corpus under `root` (which must not exist or be empty)."""
    c = Corpus(Path(root))
    c.root.mkdir(parents=True, exist_ok=True)
    _safetensors(c)
    _npz(c)
    for fmt in H5_LAYOUTS:
        _h5_attacks(c, fmt)
    _keras_h5_extra(c)
    _sharded(c)
    _keras_zip(c)
    _checkpoint(c)
    _saved_model(c)
    _tflite(c)
    _tfjs(c)
    _graphdef(c)
    _write(c.root / "MANIFEST.json", json.dumps(c.manifest(), indent=1).encode())
    return c


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR")
    corpus = make_corpus(sys.argv[1])
    for case in corpus.cases:
        print(f"{case.name:50} {case.path}")
    print(f"{len(corpus.cases)} crafted cases, {len(corpus.names)} hostile-name files, "
          f"{len(corpus.suffixes)} wrong-suffix files in {corpus.root}")
