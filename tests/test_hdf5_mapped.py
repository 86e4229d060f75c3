"""Contiguous HDF5 datasets are read through a map of their bytes: same values as h5py gives."""
import h5py
import numpy as np
import pytest

from weightkit.converters import hdf5
from weightkit.converters.errors import UsageError

CASES = {
    "f32": np.arange(24, dtype=np.float32).reshape(4, 6),
    "f64_3d": np.linspace(-1, 1, 60).reshape(3, 4, 5),
    "i8": np.arange(-5, 5, dtype=np.int8),
    "big_endian": np.arange(12, dtype=">i4").reshape(3, 4),
    "bool": np.array([True, False, True]),
    "scalar": np.array(3.5, dtype=np.float16),
    "empty_rows": np.zeros((5, 0), np.float32),
}
INDEXES = [(), (slice(1, 3),), (0,), (-1,), (slice(None, None, 2),), (1, slice(1, 3))]


@pytest.fixture
def h5(tmp_path):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        for name, array in CASES.items():
            f.create_dataset(name, data=array)
        f.create_dataset("chunked", data=CASES["f32"], chunks=(2, 3))
    f = h5py.File(path, "r")
    yield f
    f.close()


def described(h5, name: str) -> hdf5.Described:
    """The dataset as the readers get it: described by the vetting walk."""
    return dict(hdf5.describe(h5, h5.filename)[1])[name]


@pytest.mark.parametrize("name", [*CASES, "chunked"])
def test_values_match_h5py(h5, name):
    ds = described(h5, name)
    assert ds.shape == h5[name].shape and ds.dtype == h5[name].dtype and ds._dataset is None
    mapped = ds.offset is not None
    assert mapped == (name not in ("chunked", "empty_rows"))  # an empty dataset has no bytes
    tensor = hdf5.lazy_tensor(ds, ds.dtype.newbyteorder("="), {"key": name}, None)
    ds = h5[name]
    for index in INDEXES:
        try:
            expected = ds[index] if index else ds[()]
        except (ValueError, IndexError, TypeError):
            continue
        got = tensor[index]
        assert got.dtype == expected.dtype.newbyteorder("=") and np.array_equal(got, expected)


def test_closed_file_is_refused(h5):
    tensor = hdf5.lazy_tensor(described(h5, "f32"), np.dtype(np.float32), {"key": "f32"}, None)
    h5.close()
    with pytest.raises(UsageError):
        tensor[0]


@pytest.mark.parametrize("fixture", ["mlp--tfkeras-full.h5", "nested--keras3.weights.h5",
                                     "mlp--keras3-legacy.h5"])
def test_the_vetting_child_sends_the_walk_it_made(fixture, monkeypatch):
    """The child's walk reaches the parent, sent in pieces (`_walk_json`), as the same tree,
    datasets and offsets the walk gives in-process."""
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "fixtures" / fixture
    if not path.exists():
        pytest.skip(f"no fixture {fixture}")
    hdf5._VETTED.clear()
    with h5py.File(path, "r") as f:
        tree, datasets = hdf5.describe(f, str(path))
        pieces = []
        original = hdf5.in_child

        def counted(work, where, encode):
            pieces.append(sum(1 for _ in encode(work())))
            return original(work, where, encode)
        monkeypatch.setattr(hdf5, "in_child", counted)
        hdf5._VETTED.clear()
        assert hdf5.describe(f, str(path))[0] == tree
        monkeypatch.setattr(hdf5, "in_child", lambda work, where, encode: None)
        hdf5._VETTED.clear()
        here, here_datasets = hdf5.describe(f, str(path))
    assert here == tree and pieces[0] > len(datasets)
    assert [(w, d.shape, d.dtype, d.offset) for w, d in here_datasets] == \
        [(w, d.shape, d.dtype, d.offset) for w, d in datasets]
