"""safetensors: the conformance suite, interoperability with the reference library, and
strict validation of hostile headers."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_
import safetensors
import safetensors.numpy
from conformance import FormatConformance, same_array, sample

import weightkit
from weightkit.converters import safetensors as st
from weightkit.converters.errors import CorruptFileError, UnknownFormatError, UnsafeFileError
from weightkit.converters.store import Store

ALL_EXTRA = ("uint8", "int16", "uint16", "int32", "uint32", "uint64", "float64", "complex64",
             "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
             "float8_e8m0fnu", "complex128", "string", "int4", "uint4", "float4_e2m1fn")
# dtypes the reference library writes from numpy
REFERENCE_DTYPES = ("bool", "uint8", "int8", "int16", "uint16", "int32", "uint32", "int64",
                    "uint64", "float16", "bfloat16", "float32", "float64", "complex64",
                    "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
                    "float8_e8m0fnu")
NUMPY_LOADABLE = ("bool", "uint8", "int8", "int16", "uint16", "int32", "uint32", "int64",
                  "uint64", "float16", "float32", "float64", "complex64")


class TestSafetensorsConformance(FormatConformance):
    format = "safetensors"
    suffix = ".safetensors"
    extra_dtypes = ALL_EXTRA


def reference_arrays(dtypes=REFERENCE_DTYPES) -> dict[str, np.ndarray]:
    return {f"{dtype}/{i}": sample(dtype, shape, seed=i)
            for i, (dtype, shape) in enumerate((d, s) for d in dtypes
                                               for s in ((3, 5), (0, 2), (), (150, 120)))}


def sorted_like_reference(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The order in which the reference lays tensors out (descending alignment, then name)."""
    rank = {code: i for i, code in enumerate(st._RANK)}
    code = {name: st._CODES[weightkit.Tensor.from_array(a).dtype_name] for name, a in arrays.items()}
    return {n: arrays[n] for n in sorted(arrays, key=lambda n: (-rank[code[n]], n))}


def header_of(path: Path) -> dict:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n])


# -- the reference library as oracle --------------------------------------------------------

@pytest.mark.parametrize("metadata", [None, {"format": "pt"}])
def test_bytes_equal_the_reference_writer(tmp_path: Path, metadata) -> None:
    arrays = sorted_like_reference(reference_arrays())
    ref = tmp_path / "ref.safetensors"
    safetensors.numpy.save_file(arrays, ref, metadata=metadata)
    ours = tmp_path / "ours.safetensors"
    meta = {} if metadata is None else {"safetensors": {"metadata": metadata}}
    weightkit.save(Store.from_arrays(arrays, meta=meta), ours)
    assert ours.read_bytes() == ref.read_bytes()
    again = tmp_path / "again.safetensors"  # from the file: small tensors read in runs
    with weightkit.load(ref) as store:
        weightkit.save(store, again)
    assert again.read_bytes() == ref.read_bytes()


def test_reference_reads_what_we_write(tmp_path: Path) -> None:
    arrays = reference_arrays()
    path = tmp_path / "ours.safetensors"
    weightkit.save(Store.from_arrays(arrays), path)
    loadable = [n for n in arrays if n.split("/")[0] in NUMPY_LOADABLE]
    with safetensors.safe_open(path, framework="np") as f:
        assert set(f.keys()) == set(arrays)
        for name in loadable:
            assert same_array(f.get_tensor(name), arrays[name]), name
    assert set(safetensors.numpy.load_file(ours_plain(tmp_path, arrays, loadable))) == set(loadable)
    # BF16 and F8 have no numpy dtype in the reference: compare their raw bytes.
    raw = dict(safetensors.deserialize(path.read_bytes()))
    assert set(raw) == set(arrays)
    for name, array in arrays.items():
        assert list(raw[name]["shape"]) == list(array.shape)
        assert bytes(raw[name]["data"]) == np.ascontiguousarray(array).tobytes(), name


def ours_plain(tmp_path: Path, arrays: dict, names: list[str]) -> Path:
    path = tmp_path / "plain.safetensors"
    weightkit.save(Store.from_arrays({n: arrays[n] for n in names}), path)
    return path


def test_we_read_what_the_reference_writes(tmp_path: Path) -> None:
    arrays = reference_arrays()
    path = tmp_path / "ref.safetensors"
    safetensors.numpy.save_file(arrays, path, metadata={"format": "np", "b": "2"})
    with weightkit.load(path, "safetensors") as store:
        assert set(store) == set(arrays)
        for name, array in arrays.items():
            assert same_array(store[name].read(), array), name
        assert store.meta == {"safetensors": {"metadata": {"format": "np", "b": "2"}}}
        rewritten = tmp_path / "rewritten.safetensors"
        weightkit.save(store, rewritten)
    assert rewritten.read_bytes() == path.read_bytes()


def test_views_are_zero_copy_and_aligned(tmp_path: Path) -> None:
    arrays = reference_arrays()
    path = tmp_path / "x.safetensors"
    weightkit.save(Store.from_arrays(arrays), path)
    header = header_of(path)
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert n % 8 == 0
    for name, info in header.items():
        if name != "__metadata__":
            itemsize = st._TYPES[info["dtype"]].itemsize
            assert (8 + n + info["data_offsets"][0]) % itemsize == 0, name
    with weightkit.load(path, "safetensors") as store:
        array = store[next(n for n in store if n.startswith("float32/"))].read()
        assert not array.flags.owndata and not array.flags.writeable
        assert array.flags.aligned


def test_other_tools_metadata_survives_a_trip_through_npz(tmp_path: Path) -> None:
    path = tmp_path / "ref.safetensors"
    safetensors.numpy.save_file({"w": np.ones((2, 2), np.float32)}, path,
                                metadata={"format": "pt"})
    with weightkit.load(path, "safetensors") as store:
        weightkit.save(store, tmp_path / "x.npz")
    with weightkit.load(tmp_path / "x.npz", "npz") as store:
        assert store.meta["source_format"] == "safetensors"
        weightkit.save(store, tmp_path / "back.safetensors")
    assert (tmp_path / "back.safetensors").read_bytes() == path.read_bytes()


def test_carry_restores_dtype_shape_meta_and_source(tmp_path: Path) -> None:
    strings = np.array([[b"a\x00", b""], [b"\xff", b"xyz"]], dtype=object)
    store = Store.from_arrays({"s": strings, "c": np.array([1 + 2j, -0.0 - 1j]),
                               "i": np.array([-8, 7], ml_dtypes.int4)},
                              format="keras-h5", meta={"keras_h5": {"backend": "tensorflow"}})
    path = tmp_path / "x.safetensors"
    weightkit.save(store, path)
    header = header_of(path)
    assert (header["s"]["dtype"], header["s"]["shape"]) == ("U8", [6])
    assert (header["c"]["dtype"], header["c"]["shape"]) == ("F64", [2, 2])
    assert header["i"]["dtype"] == "I8"
    carried = json.loads(header["__metadata__"]["weightkit"])
    assert carried["source_format"] == "keras-h5"
    with weightkit.load(path, "safetensors") as back:
        assert back.format == "safetensors"
        assert back.meta == {"keras_h5": {"backend": "tensorflow"}, "source_format": "keras-h5"}
        for name in store:
            assert same_array(back[name].read(), store[name].read()), name
        assert list(back) == ["s", "c", "i"]


def test_packed_f4_is_refused_clearly(tmp_path: Path) -> None:
    packed = np.array([0x21, 0x43], np.uint8)
    data = safetensors.serialize({"q": safetensors.TensorSpec(
        dtype="float4_e2m1fn_x2", shape=(2,), data_ptr=packed.ctypes.data, data_len=2)},
        metadata=None)
    path = tmp_path / "f4.safetensors"
    path.write_bytes(bytes(data))
    with pytest.raises(UnknownFormatError, match="F4"):
        weightkit.load(path, "safetensors")


# -- hostile and broken headers ---------------------------------------------------------------

def craft(tmp_path: Path, header: bytes | str, data: bytes = b"", length: int | None = None) -> Path:
    header = header.encode() if isinstance(header, str) else header
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + data)
    return path


F32x2 = '"dtype":"F32","shape":[2],"data_offsets":[0,8]'
BAD_HEADERS = {
    "header longer than file": ("{}", b"", 1000, CorruptFileError, "past the end"),
    # (a header over the cap that the file really holds: tests/make_crafted.py header-huge)
    "huge header past the end": ("{}", b"", 200_000_000, CorruptFileError, "past the end"),
    "not utf-8": (b'{"\xff":1}', b"", None, CorruptFileError, "UTF-8"),
    "not an object": ("[1, 2]", b"", None, CorruptFileError, "does not start"),
    "not json": ("{nope", b"", None, CorruptFileError, "not valid JSON"),
    "duplicate key": ('{"a":{%s},"a":{%s}}' % (F32x2, F32x2), b"\0" * 8, None,
                      CorruptFileError, "twice"),
    "NaN constant": ('{"a":{"dtype":"F32","shape":[NaN],"data_offsets":[0,0]}}', b"", None,
                     CorruptFileError, "NaN"),
    "unknown dtype": ('{"a":{"dtype":"F128","shape":[2],"data_offsets":[0,32]}}', b"\0" * 32,
                      None, CorruptFileError, "unknown dtype"),
    "dtype not a string": ('{"a":{"dtype":["F32"],"shape":[2],"data_offsets":[0,8]}}',
                           b"\0" * 8, None, CorruptFileError, "unknown dtype"),
    "shape times itemsize": ('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', b"\0" * 8,
                             None, CorruptFileError, "needs 12 bytes"),
    "negative dim": ('{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', b"\0" * 8, None,
                     CorruptFileError, "bad shape"),
    "bool dim": ('{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}', b"\0" * 4, None,
                 CorruptFileError, "bad shape"),
    "overlap": ('{"a":{%s},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}' % F32x2,
                b"\0" * 12, None, CorruptFileError, "overlaps"),
    "hole": ('{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', b"\0" * 12, None,
             CorruptFileError, "hole"),
    "past the end": ('{"a":{%s}}' % F32x2, b"\0" * 4, None, CorruptFileError, "run past the end of the data"),
    "trailing bytes": ('{"a":{%s}}' % F32x2, b"\0" * 9, None, CorruptFileError, "cover 8 bytes"),
    "reversed offsets": ('{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}', b"", None,
                         CorruptFileError, "bad data_offsets"),
    "missing field": ('{"a":{"dtype":"F32","shape":[2]}}', b"\0" * 8, None, CorruptFileError,
                      "expected an object"),
    "metadata not strings": ('{"__metadata__":{"a":1}}', b"", None, CorruptFileError,
                             "strings to strings"),
    "deep nesting": ("{\"a\":" + "[" * 100_000 + "]" * 100_000 + "}", b"", None,
                     CorruptFileError, "JSON"),
    # orjson reads 1,024 levels but writes 254: its parse of this cannot be checked by writing
    "nesting orjson reads": ("{\"a\":" + "[" * 300 + "]" * 300 + "}", b"", None,
                             CorruptFileError, "expected an object"),
    "UTF-16 header": (('{"a":{%s}}' % F32x2).encode("utf-16-le"),
                      b"\0" * 8, None, CorruptFileError, "not valid JSON"),
    "UTF-32 header": (('{"a":{%s}}' % F32x2).encode("utf-32-le"),
                      b"\0" * 8, None, CorruptFileError, "not valid JSON"),
    "repeated key, later one valid": ('{"a":{"dtype":"F32"},"a":{%s}}' % F32x2, b"\0" * 8,
                                      None, CorruptFileError, "twice"),
    "carry not json": ('{"__metadata__":{"weightkit":"{"}}', b"", None, CorruptFileError,
                       "weightkit metadata"),
    "carry order wrong": ('{"__metadata__":{"weightkit":"{\\"order\\":[\\"b\\"]}"},"a":{%s}}'
                          % F32x2, b"\0" * 8, None, CorruptFileError, "order"),
    "carry order not names": ('{"__metadata__":{"weightkit":"{\\"order\\":[1,\\"a\\"]}"},"a":{%s}}'
                              % F32x2, b"\0" * 8, None, CorruptFileError, "order"),
    "carry encoding mismatch": (
        '{"__metadata__":{"weightkit":"{\\"tensors\\":{\\"a\\":{\\"dtype\\":\\"complex128\\"}}}"},'
        '"a":{%s}}' % F32x2, b"\0" * 8, None, CorruptFileError, "does not match"),
    "carry string lengths": (
        '{"__metadata__":{"weightkit":"{\\"tensors\\":{\\"a\\":{\\"dtype\\":\\"string\\",'
        '\\"shape\\":[2],\\"lengths\\":[1]}}}"},"a":{"dtype":"U8","shape":[1],'
        '"data_offsets":[0,1]}}', b"x", None, CorruptFileError, "lengths"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_bad_headers_are_refused_in_one_line(tmp_path: Path, case: str) -> None:
    header, data, length, error, message = BAD_HEADERS[case]
    path = craft(tmp_path, header, data, length)
    with pytest.raises(error, match=message) as info:
        st.read(str(path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content", [b"", b"\x01\x00", b"\x00" * 8])
def test_tiny_files_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(content)
    with pytest.raises(CorruptFileError):
        st.read(str(path))


def test_sniff_accepts_safetensors_only(tmp_path: Path) -> None:
    good = tmp_path / "a.safetensors"
    weightkit.save(Store.from_arrays({"a": np.zeros(2)}), good)
    np.savez(tmp_path / "b.npz", a=np.zeros(2))
    (tmp_path / "c.json").write_text('{"a": 1}')
    assert st.sniff(str(good), good.read_bytes()[:4096])
    for other in ("b.npz", "c.json"):
        assert not st.sniff(str(tmp_path / other), (tmp_path / other).read_bytes()[:4096])


def test_a_tensor_named_like_the_metadata_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(weightkit.UsageError, match="__metadata__"):
        weightkit.save(Store.from_arrays({"__metadata__": np.zeros(1)}), tmp_path / "x.safetensors")


@settings(max_examples=60, deadline=None)
@given(names=st_.lists(st_.text(min_size=0, max_size=12).filter(lambda n: n != "__metadata__"),
                       min_size=0, max_size=6, unique=True),
       dtype=st_.sampled_from(["float32", "bfloat16", "int4", "string", "complex128", "bool"]),
       data=st_.data())
def test_any_names_shapes_and_dtypes_round_trip(tmp_path_factory, names, dtype, data) -> None:
    shapes = [tuple(data.draw(st_.lists(st_.integers(0, 3), max_size=3))) for _ in names]
    store = Store.from_arrays({n: sample(dtype, s, i) for i, (n, s) in enumerate(zip(names, shapes))})
    path = tmp_path_factory.mktemp("h") / "x.safetensors"
    try:
        weightkit.save(store, path, "safetensors")
    except weightkit.UsageError as exc:
        assert any(not _utf8(n) for n in names), exc
        return
    with weightkit.load(path, "safetensors") as back:
        assert list(back) == names
        for name in names:
            assert same_array(back[name].read(), store[name].read())


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def test_names_that_are_not_unicode_are_refused_and_metadata_survives(tmp_path: Path) -> None:
    with pytest.raises(weightkit.UsageError, match="not valid Unicode"):
        weightkit.save(Store.from_arrays({"a\ud800": np.zeros(1)}), tmp_path / "x.safetensors")
    assert not any(tmp_path.iterdir())
    store = Store.from_arrays({"a": np.zeros(1)}, meta={"odd": {"text": "\udcff é"}})
    weightkit.save(store, tmp_path / "x.safetensors")
    with weightkit.load(tmp_path / "x.safetensors", "safetensors") as back:
        assert back.meta == store.meta


JSON = st_.recursive(st_.none() | st_.booleans() | st_.integers(-3, 10) | st_.text(max_size=8),
                     lambda inner: st_.lists(inner, max_size=4)
                     | st_.dictionaries(st_.text(max_size=8), inner, max_size=4), max_leaves=12)
CARRY_FIELDS = st_.fixed_dictionaries({}, optional={
    "version": JSON, "source_format": JSON, "meta": JSON, "order": JSON | st_.just(["b", "a"]),
    "tensors": JSON | st_.fixed_dictionaries({"a": st_.fixed_dictionaries({}, optional={
        "meta": JSON, "dtype": JSON | st_.sampled_from(["string", "complex128", "int4", "x"]),
        "shape": JSON, "lengths": JSON})})})


@settings(max_examples=150, deadline=None)
@given(doc=CARRY_FIELDS)
def test_any_carry_document_reads_or_raises_a_weightkit_error(tmp_path_factory, doc) -> None:
    header = {"__metadata__": {"weightkit": json.dumps(doc)},
              "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
              "b": {"dtype": "F64", "shape": [1, 2], "data_offsets": [4, 20]}}
    path = craft(tmp_path_factory.mktemp("c"), json.dumps(header), b"\x01" * 20)
    try:
        with st.read(str(path)) as store:
            for tensor in store.values():
                tensor.read()
    except weightkit.WeightsError:
        pass


def test_header_over_the_cap_is_refused_before_it_is_read(tmp_path):
    from weightkit.converters.safetensors import MAX_HEADER

    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as f:  # sparse: the file really holds the header it declares
        f.write(struct.pack("<Q", MAX_HEADER + 1) + b"{")
        f.truncate(8 + MAX_HEADER + 1)
    with pytest.raises(UnsafeFileError, match="at most"):
        weightkit.load(path)


class _Kind(__import__("enum").Enum):
    DENSE = 1


@pytest.mark.parametrize("value", [_Kind.DENSE, __import__("uuid").UUID(int=7), float("nan"),
                                   np.float32(0.5)])
def test_metadata_json_cannot_hold_is_a_loss_not_a_quiet_conversion(tmp_path: Path,
                                                                     value) -> None:
    """Tensor metadata that JSON cannot hold as it is (orjson would write an enum as its value,
    a UUID as a string) is reported lost, as json.dumps decides, and written only when allowed
    (then left out)."""
    from weightkit.converters.errors import LossyConversionError
    tensor = Store.from_arrays({"w": np.zeros(2, np.float32)})["w"].with_meta(note=value)
    store = Store({"w": tensor})
    with pytest.raises(LossyConversionError, match="not JSON"):
        weightkit.save(store, tmp_path / "m.safetensors")
    weightkit.save(store, tmp_path / "m.safetensors", allow_lossy=True)
    with weightkit.load(tmp_path / "m.safetensors") as back:
        assert "note" not in back["w"].meta
