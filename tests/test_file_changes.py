"""A file that shrinks while weightkit reads it (issue 11.9): an error naming the file and saying
it changed, on every path the bytes take (a mapped page touched by numpy: SIGBUS; a write(2)
from such a page: EFAULT; a pread; libhdf5, which reads zeros past the end), nothing left behind;
and a SIGBUS that is not weightkit's still ends the process as before."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import weightkit
from weightkit.converters import mapped
from weightkit.converters.mapped import FileChangedError
from weightkit.converters.store import Store, Tensor

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux SIGBUS")
BIG = np.arange(1 << 20, dtype=np.float32)  # 4 MiB: read through maps, not preads


@pytest.fixture(autouse=True)
def _forget_earlier_files():
    """An earlier test's arrays (kept alive by its traceback's frames until a collection) keep
    its shrunk file watched: collect them, so that each test sees only its own file."""
    import gc
    gc.collect()
    yield
    gc.collect()


def _safetensors(path: Path) -> Path:
    from safetensors.numpy import save_file
    save_file({"a": BIG, "b": BIG[::-1].copy()}, str(path))
    return path


def test_touching_a_truncated_mapping_reads_zeros_and_the_next_read_raises(tmp_path):
    path = _safetensors(tmp_path / "w.safetensors")
    with weightkit.load(path) as store:
        array = store["a"].read()
        os.truncate(path, 0)
        assert float(array.sum()) == 0.0  # SIGBUS handled: zero pages, not a dead process
        with pytest.raises(FileChangedError, match="changed") as info:
            store["b"].read()
        assert str(path) in str(info.value)


def test_chunk_iteration_raises_after_the_chunk_in_use(tmp_path):
    path = _safetensors(tmp_path / "w.safetensors")
    with weightkit.load(path) as store:
        chunks = store["a"].iter_chunks(1 << 20)
        first = next(chunks)
        os.truncate(path, 1000)
        first.sum()
        with pytest.raises(FileChangedError):
            next(chunks)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz", ".h5"])
def test_a_write_from_a_truncated_mapping_names_the_input(tmp_path, suffix):
    """The kernel refuses write(2) from a page past the end with EFAULT ("Bad address")."""
    path = _safetensors(tmp_path / "w.safetensors")
    out = tmp_path / "out"
    out.mkdir()
    with weightkit.load(path) as store:
        source = store["a"]

        def get(index):
            data = source[index]
            os.truncate(path, 1000)
            return data
        shrinking = Store({"layer/a": Tensor(source.shape, source.dtype, get)})  # .h5: scoped
        with pytest.raises(FileChangedError, match="changed") as info:
            weightkit.save(shrinking, str(out / f"x{suffix}"))
    assert str(path) in str(info.value)
    assert os.listdir(out) == []


def test_libhdf5_zero_fill_past_the_end_is_caught(tmp_path):
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("w", data=BIG, chunks=(1 << 16,))
    with weightkit.load(path) as store:
        os.truncate(path, os.path.getsize(path) // 2)
        with pytest.raises(FileChangedError):
            store["w"].read()


SCRIPT = """
import os, sys
from weightkit.converters import mapped
from weightkit.cli.main import main
original = mapped.MappedFile.array
def array(self, *args, **kwargs):
    out = original(self, *args, **kwargs)
    if out.nbytes >= mapped.SMALL_READ:
        os.truncate(self.path, 1000)  # another process truncates the file right now
    return out
mapped.MappedFile.array = array
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", ["show", "convert", "diff", "verify"])
def test_every_command_says_the_file_changed_in_one_line(tmp_path, command):
    path = _safetensors(tmp_path / "w.safetensors")
    other = _safetensors(tmp_path / "v.safetensors")
    argv = {"show": ["show", str(path)], "convert": ["convert", str(path), str(tmp_path / "o.npz")],
            "diff": ["diff", str(path), str(other)], "verify": ["verify", str(path)]}[command]
    done = subprocess.run([sys.executable, "-c", SCRIPT, *argv], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "changed" in lines[0], done.stderr
    assert str(path) in lines[0] or (command == "diff" and str(other) in lines[0]), done.stderr
    assert sorted(os.listdir(tmp_path)) == ["v.safetensors", "w.safetensors"]


def test_a_sigbus_that_is_not_weightkits_still_ends_the_process(tmp_path):
    """The handler gives a fault it cannot explain back to the previous disposition."""
    code = textwrap.dedent(f"""
        import mmap, os, numpy as np, weightkit
        from safetensors.numpy import save_file
        save_file({{"a": np.ones(1 << 20, np.float32)}}, {str(tmp_path / 'w.safetensors')!r})
        with weightkit.load({str(tmp_path / 'w.safetensors')!r}) as store:
            store["a"].read()  # installs the handler
        other = {str(tmp_path / 'other.bin')!r}
        with open(other, "wb") as f:
            f.write(b"x" * (1 << 20))
        f = open(other, "rb")
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        os.truncate(other, 0)
        print(np.frombuffer(m, np.uint8).sum())
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGBUS, done.stderr[-2000:]


def test_pread_short_of_the_size_at_opening_raises(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 5000)
    f = mapped.MappedFile(str(path))
    try:
        assert f.pread(4990, 100) == b"x" * 10  # past the end as opened: short, no error
        os.truncate(path, 100)
        with pytest.raises(FileChangedError):
            f.pread(0, 4000)
        with pytest.raises(FileChangedError):
            f.array(0, np.dtype(np.uint8), (4000,))
    finally:
        f.close()
