"""Atomic writes (issue 7.4): `weightkit convert` killed, interrupted or out of disk in the middle
of a write leaves the old destination (or nothing) and, except after kill -9, no temporary file.

A subprocess runs the real CLI `convert` with a store whose last tensor blocks when read: the
writer has then created its temporary and written the first 4 MiB into it. The test waits for
that moment (a marker file), then signals the process.

kill -9 cannot be cleaned up after by the killed process: the temporary stays, hidden, named
`.<destination>.wk-tmp-<random>`, and the destination is intact. weightkit does not remove such
temporaries on a later run: it cannot tell a dead writer's file from a live one's (two
conversions to one directory), and a name glob is enough to clean them up by hand.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from weightkit.converters.registry import FORMATS

OLD = b"the old destination, which must survive\n"
TEMP_MARK = ".wk-tmp-"

# format -> destination name; each writer is tested once it has landed.
WRITERS = {
    "safetensors": "out.safetensors",
    "npz": "out.npz",
    "keras-weights-h5": "out.weights.h5",
    "keras-h5": "out.h5",
    "tf-checkpoint": "out.index",
}

CHILD = textwrap.dedent("""
    import os, signal, sys, time
    import numpy as np
    import weightkit.cli.convert as convert
    from weightkit.cli.main import main
    from weightkit.converters.store import Store, Tensor

    dst, fmt, marker, mode = sys.argv[1:5]
    if mode == "fsize":
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    def slow(index):
        open(marker, "w").close()
        time.sleep(120)
        return np.zeros(1024, np.float32)[index]

    first = np.arange(1 << 20, dtype=np.float32)  # 4 MiB
    tensors = {"a/first": Tensor.from_array(first)}
    if mode == "slow":
        tensors["z/slow"] = Tensor((1024,), np.float32, slow)
    store = Store(tensors)
    convert.load = lambda path, format=None: store
    sys.exit(main(["convert", "--allow-lossy", "--to", fmt, "memory-store", dst], prog="weightkit"))
""")


def landed(fmt: str) -> bool:
    return fmt in FORMATS


@pytest.fixture(params=sorted(WRITERS))
def writer(request) -> tuple[str, str]:
    if not landed(request.param):
        pytest.skip(f"the {request.param} writer has not landed yet")
    return request.param, WRITERS[request.param]


def _start(dst: Path, fmt: str, mode: str) -> tuple[subprocess.Popen, Path]:
    marker = dst.parent.parent / f"marker-{dst.parent.name}"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(dst), fmt, str(marker), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, marker


def _wait_mid_write(proc: subprocess.Popen, marker: Path) -> None:
    deadline = time.monotonic() + 60
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the writer finished before blocking: {proc.communicate()}")
        assert time.monotonic() < deadline, "the writer never reached the blocking tensor"
        time.sleep(0.02)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _destination(tmp_path: Path, name: str, existing: bool) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    dst = out / name
    if existing:
        dst.write_bytes(OLD)
    return dst


@pytest.mark.parametrize("existing", [True, False], ids=["over-old-file", "new-file"])
def test_kill_9_mid_write_leaves_old_destination_or_nothing(writer, existing, tmp_path):
    fmt, name = writer
    dst = _destination(tmp_path, name, existing)
    before = _snapshot(dst.parent)
    proc, marker = _start(dst, fmt, "slow")
    _wait_mid_write(proc, marker)
    temps = [p for p in os.listdir(dst.parent) if TEMP_MARK in p]
    assert temps, "no temporary next to the destination while writing"
    proc.kill()
    proc.wait()
    after = _snapshot(dst.parent)
    for kept, data in before.items():
        assert after.get(kept) == data, f"{kept} changed"
    leftovers = set(os.listdir(dst.parent)) - set(before)
    assert all(n.startswith(".") and TEMP_MARK in n for n in leftovers), leftovers
    assert leftovers, "kill -9 cannot remove temporaries: the test did not kill mid-write"


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "ctrl-c"])
def test_interrupt_mid_write_removes_the_temporary(writer, how, tmp_path):
    fmt, name = writer
    dst = _destination(tmp_path, name, True)
    before = _snapshot(dst.parent)
    proc, marker = _start(dst, fmt, "slow")
    _wait_mid_write(proc, marker)
    proc.send_signal(how)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "weightkit: interrupted", stderr
    assert _snapshot(dst.parent) == before
    assert sorted(os.listdir(dst.parent)) == sorted(before)


def _assert_refused_cleanly(proc_result: subprocess.CompletedProcess, dst: Path, words: tuple) -> None:
    """Destination untouched, no temporary, exit 2, one clear line naming the destination."""
    assert dst.read_bytes() == OLD
    assert os.listdir(dst.parent) == [dst.name]
    assert proc_result.returncode == 2, proc_result.stderr
    lines = proc_result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc_result.stderr, proc_result.stderr
    assert any(w in lines[0] for w in words), lines[0]
    assert str(dst.parent) in lines[0] and "unexpected" not in lines[0], lines[0]  # names the file


def test_file_size_limit_leaves_destination_untouched(writer, tmp_path):
    """RLIMIT_FSIZE of 1 MiB (SIGXFSZ ignored, so writes fail with EFBIG): a full disk for one
    process, without root."""
    fmt, name = writer
    dst = _destination(tmp_path, name, True)
    result = subprocess.run([sys.executable, "-c", CHILD, str(dst), fmt, "-", "fsize"],
                            capture_output=True, text=True, timeout=120)
    _assert_refused_cleanly(result, dst, ("File too large", "No space", "too large"))


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 1 MiB tmpfs, when this process may mount one (root); skipped otherwise."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_leaves_destination_untouched(writer, tiny_tmpfs):
    fmt, name = writer
    out = tiny_tmpfs / "out"
    out.mkdir()
    dst = out / name
    dst.write_bytes(OLD)
    result = subprocess.run([sys.executable, "-c", CHILD, str(dst), fmt, "-", "fast"],
                            capture_output=True, text=True, timeout=120)
    _assert_refused_cleanly(result, dst, ("No space left", "full"))


def test_streamed_output_is_handed_to_the_disk_as_it_goes(tmp_path, monkeypatch):
    """Every WRITEBACK_BYTES the written range gets POSIX_FADV_DONTNEED (start writeback), so the
    fsync at commit waits for the last stretch only; the bytes are all there."""
    from weightkit.converters import atomic
    monkeypatch.setattr(atomic, "WRITEBACK_BYTES", 1000)
    calls = []
    real = os.posix_fadvise
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, offset, length, advice: (
        calls.append((offset, length, advice)), real(fd, offset, length, advice))[1])
    payload = os.urandom(3_500_000)  # more than the 1 MiB buffer, several times
    with atomic.atomic_output() as out:
        with out.open(tmp_path / "x.bin") as f:
            for i in range(0, len(payload), 300_000):
                f.write(payload[i:i + 300_000])
    assert (tmp_path / "x.bin").read_bytes() == payload
    assert len(calls) >= 3 and all(advice == os.POSIX_FADV_DONTNEED for *_, advice in calls)
    assert [offset for offset, *_ in calls] == sorted(offset for offset, *_ in calls)
    assert calls[0][0] == 0 and all(a + n == b for (a, n, _), (b, _, _) in zip(calls, calls[1:]))


def test_scratch_outputs_are_atomic_but_not_synced(tmp_path, monkeypatch):
    from weightkit.converters import atomic
    synced = []
    monkeypatch.setattr(atomic, "_fsync_file", synced.append)
    with atomic.scratch(), atomic.atomic_output() as out:
        with out.open(tmp_path / "scratch.bin") as f:
            f.write(b"x")
    assert synced == [] and (tmp_path / "scratch.bin").read_bytes() == b"x"
    with atomic.atomic_output() as out:
        with out.open(tmp_path / "kept.bin") as f:
            f.write(b"y")
    assert len(synced) == 1 and not any(TEMP_MARK in p.name for p in tmp_path.iterdir())
