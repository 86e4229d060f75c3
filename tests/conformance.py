"""The conformance suite every format module runs, written once (as zarr's `StoreTests`).

Run it for a format by subclassing `FormatConformance` in a `tests/test_*.py` file (pytest only
collects those):

    from conformance import FormatConformance

    class TestKerasH5Conformance(FormatConformance):
        format = "keras-h5"                    # the registry name
        suffix = ".h5"                         # appended by path() to make output names
        extra_dtypes = ("complex64",)          # dtypes beyond COMMON_DTYPES it holds exactly
        lossy_dtypes = ("string",)             # dtypes it cannot hold: losses() names them,
                                               # save() refuses them without allow_lossy
        def names(self, n):                    # n canonical names valid for the format
            return [f"dense_{i}/kernel" for i in range(n)]

Optional hooks and switches: `path(directory, stem)` (where a file goes: a prefix for
checkpoints), `tensor_meta(i)` (meta given to the i-th tensor), `carries_metadata` (False if
arbitrary store/tensor metadata cannot round-trip), `byte_identical` (False if writing the same
store twice may give different bytes), `lazy_tensor_mib` (size of the laziness probe),
`adapt(store)` (what a store needs besides its tensors to be written: a SavedModel the graph files
of a fixture). A format that can only write the variables a template declares (a `.keras`
archive: its config.json names them) sets `template` to a fixture of its own: the dtype matrix is
then the template's variables with fresh bit patterns, and the tests that need stores of any
shape are skipped with the reason in `template_reason`.

Every registered format subclasses this suite somewhere in tests/, or is listed in
`EXEMPT` with the reason (tests/test_architecture.py checks it).

What every format must pass: a round trip of the whole dtype matrix (values bit for bit, shapes,
dtypes, names in order; zero-size and scalar tensors included); an empty store; metadata round
trip; laziness (opening and listing a file allocates almost nothing; chunks stay bounded; a
chunked pass over 64 MiB grows resident memory, memory maps included, by < 24 MiB);
`iter_chunks` and indexing agree with `read()`; losses named and refused; atomic writes (a tensor failing mid-write
leaves no output and no temporary, and an existing destination untouched); X -> safetensors -> X
and X -> npz -> X giving back the same store (and the same bytes); truncated and bit-flipped
files raising only weightkit's own errors.
"""
from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

import weightkit
from weightkit.converters.dtypes import dtype_from_name, is_string
from weightkit.converters.errors import LossyConversionError, WeightsError
from weightkit.converters import registry
from weightkit.converters.store import Store, Tensor

COMMON_DTYPES = ("float32", "float16", "bfloat16", "int8", "int64", "bool")
SHAPES = ((3, 4), (0, 3), ())  # a matrix, a zero-size tensor, a scalar
CARRIERS = ("safetensors", "npz")
META_NAMESPACE = "conformance"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
EXEMPT: dict[str, str] = {}  # format name -> why it does not run the suite


def sample(dtype_name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Values of `dtype_name` that exercise every bit: random bit patterns for floats
    (NaNs, infinities, subnormals, -0.0 included), random integers, awkward bytes for strings."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    if dtype_name == "string":
        pool = [b"", b"a", b"trailing\x00", b"\x00", b"\xff\xfe not utf-8", "é".encode(), b"x" * 40]
        values = np.empty(size, dtype=object)
        for i in range(size):
            values[i] = pool[int(rng.integers(len(pool)))]
        return values.reshape(shape)
    dtype = dtype_from_name(dtype_name)
    if dtype_name == "bool":
        return rng.integers(0, 2, size).astype(bool).reshape(shape)
    if dtype_name in ("int4", "uint4"):
        info = ml_dtypes.iinfo(dtype)
        return rng.integers(int(info.min), int(info.max) + 1, size).astype(dtype).reshape(shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size, dtype=dtype, endpoint=True).reshape(shape)
    if dtype_name == "float4_e2m1fn":
        return rng.integers(0, 16, size, dtype=np.uint8).view(dtype).reshape(shape)
    bits = rng.integers(0, 256, size * dtype.itemsize, dtype=np.uint8)
    return bits.view(dtype).reshape(shape)


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bits (strings: equal bytes objects)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if is_string(a.dtype):
        return a.reshape(-1).tolist() == b.reshape(-1).tolist()
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def assert_same_store(got: Store, want: Store, *, meta: bool = True) -> None:
    """Names in order, dtypes, shapes, bits; and metadata where `want` has some."""
    assert list(got) == list(want)
    for name in want:
        g, w = got[name], want[name]
        assert (g.shape, g.dtype) == (w.shape, w.dtype), name
        assert same_array(g.read(), w.read()), name
        if meta:
            assert {k: g.meta.get(k) for k in w.meta} == w.meta, name


RSS_PROBE = """
import sys
import weightkit

def peak():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) << 10 for line in f if line.startswith("VmHWM"))

path, fmt, name = sys.argv[1:]
with weightkit.load(path, fmt) as store:
    tensor = store[name]
    before, count = peak(), 0
    for chunk in tensor.iter_chunks(4 << 20):
        count += int(chunk.sum())
    print(count, peak() - before)
"""


def _contents(path: Path) -> Any:
    """A written file's bytes, or a directory's files and their bytes."""
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
                if p.is_file()}
    return path.read_bytes()


def _failing(shape: tuple[int, ...]) -> Tensor:
    def get(index: Any) -> np.ndarray:
        raise RuntimeError("conformance: this tensor fails to read")
    return Tensor(shape, np.float32, get)


class FormatConformance:
    """Base class of the suite; see the module docstring for how to subclass it."""

    format: str = ""
    suffix: str = ""
    extra_dtypes: tuple[str, ...] = ()
    lossy_dtypes: tuple[str, ...] = ()
    carries_metadata: bool = True
    byte_identical: bool = True
    lazy_tensor_mib: int = 16
    template: str | None = None  # a fixture under fixtures/ whose variables the format writes
    template_reason: str = ""

    # -- hooks -------------------------------------------------------------------------------

    def names(self, n: int) -> list[str]:
        """`n` distinct canonical names valid for the format, in an order it keeps."""
        return [f"layer_{i:03d}/weight" for i in range(n)]

    def path(self, directory: Path, stem: str) -> Path:
        return directory / f"{stem}{self.suffix}"

    def tensor_meta(self, i: int) -> dict:
        return {META_NAMESPACE: {"index": i, "note": f"tensor {i}"}}

    def adapt(self, store: Store) -> Store:
        """`store` as this format can write it (default: as it is)."""
        return store

    def probe_env(self, directory: Path) -> dict[str, str] | None:
        """The environment of the subprocess that measures memory (a plug-in's needs it on
        its path); None: this process's."""
        return None

    def any_store(self) -> None:
        """Skip a test that writes stores of arbitrary names and shapes, for a template format."""
        if self.template:
            pytest.skip(f"{self.format} writes only its template's variables: {self.template_reason}")

    # -- helpers -----------------------------------------------------------------------------

    @property
    def dtypes(self) -> tuple[str, ...]:
        return COMMON_DTYPES + tuple(self.extra_dtypes)

    def matrix_store(self, with_meta: bool = False) -> Store:
        if self.template:
            return self.template_store(with_meta)
        cases = [(d, s) for d in self.dtypes for s in SHAPES]
        names = self.names(len(cases))
        tensors = {}
        for i, (name, (dtype, shape)) in enumerate(zip(names, cases)):
            meta = self.tensor_meta(i) if with_meta else {}
            tensors[name] = Tensor.from_array(sample(dtype, shape, seed=i), meta)
        meta = {META_NAMESPACE: {"list": [1, "two", None, {"x": 2.5}], "text": "é\n"}} \
            if with_meta else {}
        return Store(tensors, meta=meta)

    def template_store(self, with_meta: bool) -> Store:
        """The template's variables, structure and metadata, with fresh bit patterns."""
        with weightkit.load(FIXTURES / self.template, self.format) as template:
            tensors = {}
            for i, (name, t) in enumerate(template.items()):
                meta = {**t.meta, **(self.tensor_meta(i) if with_meta else {})}
                tensors[name] = Tensor.from_array(sample(t.dtype_name, t.shape, seed=i), meta)
            meta = {**template.meta, **({META_NAMESPACE: {"text": "é\n"}} if with_meta else {})}
            return Store(tensors, format=template.format, meta=meta)

    def write(self, store: Store, path: Path, **kwargs: Any) -> None:
        weightkit.save(self.adapt(store), path, self.format, **kwargs)

    def load(self, path: Path) -> Store:
        return weightkit.load(path, self.format)

    def listing(self, directory: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}

    # -- tests -------------------------------------------------------------------------------

    def test_round_trip_dtype_matrix(self, tmp_path: Path) -> None:
        store = self.matrix_store()
        assert weightkit.losses(store, self.format) == []
        path = self.path(tmp_path, "matrix")
        self.write(store, path)
        with self.load(path) as back:
            assert back.format == self.format
            assert_same_store(back, store, meta=False)

    def test_empty_store_round_trip(self, tmp_path: Path) -> None:
        self.any_store()
        path = self.path(tmp_path, "empty")
        self.write(Store({}), path)
        with self.load(path) as back:
            assert list(back) == []

    def test_metadata_round_trip(self, tmp_path: Path) -> None:
        if not self.carries_metadata:
            pytest.skip(f"{self.format} does not carry arbitrary metadata")
        store = self.matrix_store(with_meta=True)
        path = self.path(tmp_path, "meta")
        self.write(store, path)
        with self.load(path) as back:
            assert_same_store(back, store)
            assert back.meta[META_NAMESPACE] == store.meta[META_NAMESPACE]

    def test_reading_is_lazy_and_chunks_are_bounded(self, tmp_path: Path) -> None:
        self.any_store()
        n = self.lazy_tensor_mib << 18  # float32 elements
        big = np.arange(n, dtype=np.float32).reshape(-1, 256)
        names = self.names(2)
        path = self.path(tmp_path, "lazy")
        self.write(Store.from_arrays({names[0]: big, names[1]: np.ones(3, np.float32)}), path)
        del big
        tracemalloc.start()
        try:
            with self.load(path) as store:
                described = [(t.shape, t.dtype, t.nbytes) for t in store.values()]
                opened = tracemalloc.get_traced_memory()[1]
                tracemalloc.reset_peak()
                count, last = 0, None
                for chunk in store[names[0]].iter_chunks(1 << 20):
                    count, last = count + chunk.size, float(chunk[-1])
                chunked = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert described[0] == ((n // 256, 256), np.dtype(np.float32), n * 4)
        assert (count, last) == (n, float(n - 1))
        assert opened < (1 << 20), f"opening allocated {opened} bytes"
        assert chunked < (4 << 20), f"1 MiB chunks peaked at {chunked} bytes"

    def test_chunked_pass_keeps_resident_memory_bounded(self, tmp_path: Path) -> None:
        """Memory maps count in RSS too: a chunked pass over 64 MiB must not keep 64 MiB."""
        self.any_store()
        name = self.names(1)[0]
        path = self.path(tmp_path, "rss")
        self.write(Store.from_arrays({name: np.ones((256, 65536), np.float32)}), path)
        result = subprocess.run([sys.executable, "-c", RSS_PROBE, str(path), self.format, name],
                                capture_output=True, text=True, timeout=300,
                                env=self.probe_env(tmp_path))
        assert result.returncode == 0, result.stderr
        count, grown = map(int, result.stdout.split())
        assert count == 256 * 65536
        assert grown < 24 << 20, f"resident memory grew by {grown >> 20} MiB over a 64 MiB pass"

    def test_iter_chunks_and_indexing_agree_with_read(self, tmp_path: Path) -> None:
        self.any_store()
        array = np.arange(5 * 7 * 3, dtype=np.float32).reshape(5, 7, 3)
        name = self.names(1)[0]
        path = self.path(tmp_path, "chunks")
        self.write(Store.from_arrays({name: array}), path)
        with self.load(path) as store:
            tensor = store[name]
            for max_bytes in (1, 40, 84, 1000, 1 << 20):
                chunks = list(tensor.iter_chunks(max_bytes))
                assert np.array_equal(np.concatenate(chunks), array.reshape(-1))
            for index in ((), (2,), (slice(1, 4),), (-1,), (slice(None), 3), (4, slice(2, 5), 1)):
                assert np.array_equal(tensor[index], array[index]), index

    def test_losses_are_named_and_refused(self, tmp_path: Path) -> None:
        self.any_store()
        if not self.lossy_dtypes:
            pytest.skip(f"{self.format} holds every dtype (see test_round_trip_dtype_matrix)")
        for dtype in self.lossy_dtypes:
            name = self.names(1)[0]
            store = Store.from_arrays({name: sample(dtype, (2, 3), 0)})
            lost = " ".join(weightkit.losses(store, self.format))
            assert dtype in lost and name in lost, lost
            path = self.path(tmp_path, f"lossy-{dtype}")
            before = self.listing(tmp_path)
            with pytest.raises(LossyConversionError):
                self.write(store, path)
            assert self.listing(tmp_path) == before
            self.write(store, path, allow_lossy=True)
            with self.load(path) as back:
                assert name in back

    def test_failed_write_leaves_nothing(self, tmp_path: Path) -> None:
        self.any_store()
        names = self.names(3)
        good = np.arange(6, dtype=np.float32).reshape(2, 3)
        store = Store({names[0]: Tensor.from_array(good), names[1]: _failing((2, 3)),
                       names[2]: Tensor.from_array(good)})
        path = self.path(tmp_path, "atomic")
        with pytest.raises(RuntimeError, match="fails to read"):
            self.write(store, path)
        assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())
        self.write(Store.from_arrays({names[0]: good}), path)
        before = self.listing(tmp_path)
        with pytest.raises(RuntimeError, match="fails to read"):
            self.write(store, path)
        assert self.listing(tmp_path) == before

    @pytest.mark.parametrize("carrier", CARRIERS)
    def test_round_trip_through_carrier(self, tmp_path: Path, carrier: str) -> None:
        first = self.path(tmp_path, "first")
        self.write(self.matrix_store(with_meta=self.carries_metadata), first)
        second = self.path(tmp_path, "second")
        via = tmp_path / f"via.{carrier}"
        with self.load(first) as original:
            weightkit.save(original, via, carrier)
            with weightkit.load(via, carrier) as carried:
                assert carried.format == carrier
                if carrier != self.format:
                    assert carried.meta.get("source_format") == self.format
                assert_same_store(carried, original)
                self.write(carried, second)
            with self.load(second) as back:
                assert_same_store(back, original)
                strip = {"source_format"}
                assert ({k: v for k, v in back.meta.items() if k not in strip}
                        == {k: v for k, v in original.meta.items() if k not in strip})
        if self.byte_identical:
            assert _contents(first) == _contents(second)

    def test_truncated_and_flipped_files_raise_weightkit_errors(self, tmp_path: Path) -> None:
        path = self.path(tmp_path, "fuzz")
        self.write(self.matrix_store(with_meta=self.carries_metadata), path)
        data = path.read_bytes()
        cuts = sorted({0, 1, 7, 8, 9, len(data) // 2, len(data) - 1,
                       *range(0, len(data), max(1, len(data) // 16))})
        damaged = [data[:cut] for cut in cuts if cut < len(data)]
        rng = np.random.default_rng(0)
        for position in rng.integers(0, len(data), 48):
            flipped = bytearray(data)
            flipped[position] ^= 1 << int(rng.integers(8))
            damaged.append(bytes(flipped))
        bad = self.path(tmp_path, "damaged")
        for content in damaged:
            bad.write_bytes(content)
            try:
                with registry.get(self.format).read(str(bad)) as store:
                    for tensor in store.values():
                        tensor.read()
            except WeightsError:
                pass
