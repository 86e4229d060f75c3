"""Weights where they live (issue 15): every command on s3://, gs:// and http:// URLs, against real
servers on 127.0.0.1 that the tests start (`remote_servers.py`): moto (S3), gcp-storage-emulator
(GCS), and our own Range-capable HTTP server. The oracle is the local file: a URL reads the same
bytes as the path. Request counts are counted by the servers (a proxy in front of the
emulators), so that a regression to a request per tensor fails.

The default run keeps a fast subset (one file of each format per server); the sweeps over every
fixture are marked `slow`.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

fsspec = pytest.importorskip("fsspec", reason="the remote extra (weightkit[remote])")

import weightkit  # noqa: E402
from weightkit.converters import registry, source  # noqa: E402
from weightkit.converters.errors import MissingDependencyError, UnsafeFileError, \
    UsageError, WeightsError  # noqa: E402
from weightkit.converters.mapped import FileChangedError  # noqa: E402

from remote_servers import HttpFiles, environment, running_gcs, running_s3  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
ONE_OF_EACH = [  # one input of every format (and of each shape of input)
    "mlp--keras3.ckpt", "run--tfkeras-ckptdir", "sharded--tf2.ckpt", "tf1--partitioned.ckpt",
    "mlp--keras3.keras", "mlp--keras3.weights.h5", "mlp--keras3-sharded.weights.json",
    "mlp--tfkeras-full.h5", "tldense--keras3-int8.tflite", "conv--tf-frozen.pb",
    "conv--tfjs-layers", "mlp--tfkeras-savedmodel", "made.safetensors", "made.npz",
]


def _all_fixtures() -> list[str]:
    names = []
    for path in sorted(FIXTURES.iterdir()):
        name = path.name
        if name.endswith((".py", ".sh")) or name == "manifest.json" or ".data-" in name \
                or name.startswith(("__", ".")):  # __pycache__ of `make fixtures`'s modules
            continue
        names.append(name[:-len(".index")] if name.endswith(".index") else name)
    return names + ["made.safetensors", "made.npz"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixtures, with a safetensors and an npz file made from one of them."""
    out = tmp_path_factory.mktemp("corpus")
    for path in FIXTURES.iterdir():
        if path.is_dir():
            import shutil
            shutil.copytree(path, out / path.name)
        elif not path.name.endswith((".py", ".sh")):
            (out / path.name).write_bytes(path.read_bytes())
    with registry.load(FIXTURES / "mlp--keras3.ckpt") as store:
        registry.save(store, out / "made.safetensors")
        registry.save(store, out / "made.npz")
    return out


@pytest.fixture(scope="module")
def http(corpus: Path):
    server = HttpFiles(corpus)
    yield server
    server.close()


@pytest.fixture(scope="module")
def s3(corpus: Path):
    with running_s3() as emulator, environment(emulator.env):
        fs = fsspec.filesystem("s3")
        fs.mkdir("weights")
        fs.put(str(corpus) + "/", "weights/", recursive=True)
        emulator.base = "s3://weights"
        yield emulator


@pytest.fixture(scope="module")
def gcs(corpus: Path):
    with running_gcs() as emulator, environment(emulator.env):
        fs = fsspec.filesystem("gs")
        fs.mkdir("weights")
        fs.put(str(corpus) + "/", "weights/", recursive=True)
        emulator.base = "gs://weights"
        yield emulator


@pytest.fixture(autouse=True)
def default_budget():
    source.set_io_budget(None)
    yield
    source.set_io_budget(None)


def digest(store) -> dict[str, tuple]:
    """Every tensor's dtype, shape and a hash of its bytes, and the store's format and meta."""
    out: dict[str, tuple] = {"": (store.format, json.dumps(store.meta, sort_keys=True,
                                                           default=str))}
    for name, tensor in store.items():
        array = tensor.read()
        raw = repr(array.tolist()).encode() if array.dtype == object else \
            np.ascontiguousarray(array).tobytes()
        out[name] = (tensor.dtype_name, tensor.shape, hashlib.sha256(raw).hexdigest(),
                     json.dumps(tensor.meta, sort_keys=True, default=str))
    return out


def same_as_local(corpus: Path, url: str, name: str) -> None:
    with registry.load(corpus / name) as local:
        expected = digest(local)
    with registry.load(url) as remote:
        found = digest(remote)
    expected[""] = (expected[""][0], expected[""][1].replace(str(corpus / name), url))
    assert found.keys() == expected.keys()
    assert found[""][0] == expected[""][0]
    assert {k: v for k, v in found.items() if k} == {k: v for k, v in expected.items() if k}


# -- the seam ------------------------------------------------------------------------------------

OPENERS = {"open", "h5py.File", "zipfile.ZipFile", "mmap.mmap", "os.open", "io.open",
           "np.load", "np.memmap"}
SEAM = {"source.py", "mapped.py", "atomic.py"}  # the byte seam and atomic output
SCRATCH = {("keras_v3.py", "weights_path")}  # a writer reading back the file it just wrote


def _call_name(node: ast.Call) -> str:
    parts, func = [], node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _reads(node: ast.Call) -> bool:
    """Whether a call opens something for reading (writes go through atomic outputs)."""
    mode = node.args[1] if len(node.args) > 1 else next(
        (k.value for k in node.keywords if k.arg == "mode"), None)
    if isinstance(mode, ast.Constant) and isinstance(mode.value, str):
        return "r" in mode.value or mode.value == ""
    return mode is None


def test_no_reader_opens_a_file_itself():
    """Every reader gets its bytes through the seam (`converters/source.py`): no module of
    converters/ calls open(), h5py.File, zipfile.ZipFile, mmap or np.load to read, except the
    seam itself; h5py and zipfile get the seam's file objects (h5py a local path the seam
    handed it)."""
    offenders = []
    for path in sorted((ROOT / "converters").glob("*.py")):
        if path.name in SEAM:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = _call_name(node)
            if name not in OPENERS or not _reads(node):
                continue
            first = node.args[0] if node.args else None
            seam_handle = isinstance(first, ast.Attribute) and first.attr in ("local", "file") \
                or isinstance(first, ast.Name) and first.id in ("source", "f", "stream") \
                or isinstance(first, ast.Call) and _call_name(first).endswith(".fileobj")
            if name in ("h5py.File", "zipfile.ZipFile") and seam_handle:
                continue
            if isinstance(first, ast.Name) and (path.name, first.id) in SCRATCH:
                continue
            offenders.append(f"{path.name}:{node.lineno} {name}")
    assert offenders == []


def test_without_the_extra_one_line_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)
    monkeypatch.setattr(source, "_backends", {})
    monkeypatch.setattr(sys.modules["fsspec.registry"], "_registry", {})
    with pytest.raises(MissingDependencyError) as caught:
        registry.load("s3://bucket/model.safetensors")
    assert "weightkit[remote]" in str(caught.value) and "\n" not in str(caught.value)


def test_messages_never_show_credentials():
    shown = source.display("https://user:secret@host/a/model.safetensors?X-Amz-Signature=abc")
    assert shown == "https://host/a/model.safetensors"
    error = UsageError("no such file or object", "https://u:p@h/x.bin?sig=1")
    assert "p@" not in str(error) and "sig" not in str(error)


def test_merge_gaps_and_piece_limit():
    merged = source.merge([(0, 10), (10 + source.MERGE_GAP, 20 + source.MERGE_GAP),
                           (30 + 2 * source.MERGE_GAP, 40 + 2 * source.MERGE_GAP)],
                          source.MERGE_GAP, 1 << 20)
    assert merged == [(0, 20 + source.MERGE_GAP), (30 + 2 * source.MERGE_GAP,
                                                   40 + 2 * source.MERGE_GAP)]
    assert source.merge([(0, 100)], 0, 30) == [(0, 30), (30, 60), (60, 90), (90, 100)]


def test_sizes_parse():
    assert source.parse_size("256M") == 256 << 20 and source.parse_size("1GiB") == 1 << 30
    assert source.parse_size("64MB") == 64_000_000 and source.parse_size("4096") == 4096
    with pytest.raises(UsageError, match="expected a size"):
        source.parse_size("lots")


def test_a_local_file_is_still_mapped(tmp_path):
    """The seam gives local files their map: zero-copy read-only views, nothing planned."""
    path = tmp_path / "x.bin"
    path.write_bytes(bytes(range(256)) * 1024)
    with source.open_source(str(path)) as src:
        assert src.local == str(path)
        view = src.array(128 << 10, np.dtype(np.uint8), (128 << 10,))
        assert view.base is not None and not view.flags.writeable
        assert src.preads([(0, 4), (256, 2)]) == [b"\0\1\2\3", b"\0\1"]


# -- HTTP (our own server: ranges, ETags, counts, faults) ---------------------------------------

HTTP_NAMES = [n for n in ONE_OF_EACH if n not in ("run--tfkeras-ckptdir", "conv--tfjs-layers",
                                                   "mlp--tfkeras-savedmodel")]


@pytest.mark.parametrize("name", HTTP_NAMES)
def test_http_reads_the_same_bytes(corpus, http, name):
    same_as_local(corpus, f"{http.url}/{name}", name)


def test_http_tfjs_model_json(corpus, http):
    same_as_local(corpus, f"{http.url}/conv--tfjs-layers/model.json",
                  "conv--tfjs-layers/model.json")


def test_http_directories_cannot_be_listed(http):
    with pytest.raises(WeightsError) as caught:
        registry.load(f"{http.url}/mlp--tfkeras-savedmodel/")
    assert "\n" not in str(caught.value)


def test_http_missing_and_denied_are_one_line(http, capsys):
    from weightkit.cli.main import main
    assert main(["show", f"{http.url}/nothing.safetensors"]) == 2
    assert capsys.readouterr().err.strip().endswith("nothing.safetensors: no such file or object")
    http.faults.errors = {"made.safetensors": 403}
    try:
        assert main(["show", f"{http.url}/made.safetensors?token=secret"]) == 2
    finally:
        http.faults.errors = {}
    err = capsys.readouterr().err.strip()
    assert "access denied" in err and "secret" not in err and len(err.splitlines()) == 1


def test_http_file_replaced_while_read_is_an_error(many, http):
    """The ETag seen at open is sent with every range (If-Match): bytes of two versions are
    never mixed. (A small budget: the file is read in pieces, not whole at once.)"""
    source.set_io_budget(1 << 20)
    target = many / "replaced.safetensors"
    target.write_bytes((many / "many.safetensors").read_bytes())
    with registry.load(f"{http.url}/replaced.safetensors") as store:
        data = bytearray(target.read_bytes())
        os.unlink(target)
        target.write_bytes(bytes(data))  # the same bytes, a new file: a new ETag
        with pytest.raises(FileChangedError, match="replaced.safetensors: the object changed"):
            for tensor in store.values():
                tensor.read()


def test_http_server_without_ranges_is_read_whole_once(corpus, http):
    http.faults.no_ranges = True
    http.traffic.reset()
    try:
        same_as_local(corpus, f"{http.url}/made.safetensors", "made.safetensors")
    finally:
        http.faults.no_ranges = False
    assert http.traffic.count("GET", "made.safetensors") <= 2


@pytest.mark.parametrize("lie, message", [
    ("shift", "bytes 0-1048575 came for a request of bytes 1048576-2097151"),
    ("overlong", "bytes past byte"),
    ("endless", "bytes past byte")])
def test_http_server_answering_other_bytes_is_an_error(many, http, tmp_path, lie, message):
    """A server answering a range with other bytes than those asked for (a range from byte 0
    that says so, more bytes than asked for, a body without end) is one line and exit 2:
    never values read from the wrong bytes (before: `shift` read as exit 0 with other values),
    never more written to the cache than was asked for (before: `endless` filled the disk)."""
    from weightkit.cli.main import main
    http.faults.lie = lie
    try:
        with contextlib.redirect_stdout(open(os.devnull, "w")):
            code = main(["--io-budget", "4M", "show", f"{http.url}/many.safetensors"])
    finally:
        http.faults.lie = ""
    assert code == 2
    assert sum(sent for method, path, _, sent in http.traffic.requests if method == "GET"
               and "many.safetensors" in path) < 64 << 20 or lie != "endless"


def test_http_lies_reach_one_line(many, http, capsys):
    from weightkit.cli.main import main
    http.faults.lie = "shift"
    try:
        assert main(["--io-budget", "4M", "show", f"{http.url}/many.safetensors"]) == 2
    finally:
        http.faults.lie = ""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "many.safetensors" in err
    assert "came for a request of bytes" in err


@pytest.mark.parametrize("path", ["%2e%2e/secret.bin", "%2E%2E/secret.bin", ".%2e/secret.bin",
                                  "..%2fsecret.bin", "x.bin?../../secret.bin",
                                  "x.bin#/../secret.bin"])
def test_http_tfjs_manifest_cannot_leave_the_prefix_encoded(corpus, http, path):
    """An HTTP client decodes `%2e%2e` and the server goes up (before: the weights were read
    from /secret.bin); the manifest path is checked as it will be resolved."""
    (corpus / "evil-http").mkdir(exist_ok=True)
    doc = {"format": "layers-model", "weightsManifest": [
        {"paths": [path], "weights": [{"name": "w", "shape": [1], "dtype": "float32"}]}]}
    (corpus / "evil-http" / "model.json").write_text(json.dumps(doc))
    (corpus / "secret.bin").write_bytes(b"\0\0\0\0")
    http.traffic.reset()
    with pytest.raises(UnsafeFileError, match="refusing path"):
        registry.load(f"{http.url}/evil-http/model.json")
    assert http.traffic.count(pattern="secret") == 0, http.traffic.requests


def _requests_to_show(server, url: str, budget: str | None = None) -> int:
    from weightkit.cli.main import main
    server.traffic.reset()
    args = ["--io-budget", budget] if budget else []
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        assert main([*args, "show", url]) == 0
    return len(server.traffic.requests)


@pytest.fixture(scope="module")
def many(corpus: Path) -> Path:
    """192 variables of 48 KiB (9 MiB) in safetensors, checkpoint, npz, HDF5 and TF.js: with a
    1 MiB I/O budget, reading one request per variable would take 192 requests."""
    rng = np.random.default_rng(15)
    arrays = {f"layer_{i // 2}/{'kernel' if i % 2 == 0 else 'bias'}":
              rng.standard_normal((96, 128), dtype=np.float32) for i in range(192)}
    store = weightkit.Store.from_arrays(arrays)
    for name, fmt in [("many.safetensors", None), ("many.ckpt", "tf-checkpoint"),
                      ("many.npz", None), ("many.weights.h5", None), ("many-tfjs", "tfjs")]:
        registry.save(store, corpus / name, fmt, allow_lossy=True)
    return corpus


@pytest.mark.parametrize("name, most", [("many.safetensors", 12), ("many.ckpt", 16),
                                        ("many.npz", 12), ("many.weights.h5", 22),
                                        ("many-tfjs/model.json", 16)])
def test_http_requests_per_format_are_few(many, http, name, most):
    """`show` reads every variable: with a 4 MiB budget (4 MiB requests, a file over 1 MiB
    read as its format plans it) the 9 MiB take a few requests (measured: 5, 8, 6, 11 and
    8), not one per variable (192)."""
    count = _requests_to_show(http, f"{http.url}/{name}", "4M")
    assert count <= most, http.traffic.requests
    same_as_local(many, f"{http.url}/{name}", name)


def test_http_small_file_takes_one_read(many, http):
    """Within a quarter of the budget, a file is read whole on first use: a HEAD and a GET."""
    assert _requests_to_show(http, f"{http.url}/many.safetensors") == 2


def test_http_bytes_in_flight_are_bounded(many, http):
    http.faults.latency = 0.02
    try:
        _requests_to_show(http, f"{http.url}/many.safetensors", "2M")
    finally:
        http.faults.latency = 0.0
    assert http.traffic.peak <= 2  # a 2 MiB budget: two 1 MiB requests in flight at most


def test_http_forked_reader_shares_the_cache(many, http):
    """A forked worker (the diff engine's, the HDF5 vetting child) reads through its own
    connection and shares what the parent fetched."""
    source.set_io_budget(1 << 20)
    http.traffic.reset()
    with source.session(), source.open_source(f"{http.url}/many.safetensors") as src:
        first = src.pread(0, 1000)
        pid = os.fork()
        if pid == 0:
            ok = src.pread(0, 1000) == first and len(src.pread(3 << 20, 4096)) == 4096
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        gets = http.traffic.count("GET")
        assert src.pread(3 << 20, 4096) == (many / "many.safetensors").read_bytes()[
            3 << 20:(3 << 20) + 4096]
        assert http.traffic.count("GET") == gets  # the child's block, not fetched again


# -- S3 (moto) ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ONE_OF_EACH)
def test_s3_reads_the_same_bytes(corpus, s3, name):
    same_as_local(corpus, f"{s3.base}/{name}", name)


@pytest.mark.slow
@pytest.mark.parametrize("name", _all_fixtures())
def test_s3_every_fixture(corpus, s3, name):
    same_as_local(corpus, f"{s3.base}/{name}", name)


def test_s3_checkpoint_requests(corpus, s3):
    """A checkpoint prefix: one listing (the index and its shards), the index in one request,
    the data in one."""
    s3.traffic.reset()
    with registry.load(f"{s3.base}/sharded--tf2.ckpt") as store:
        digest(store)
    gets = [r for r in s3.traffic.requests if r[0] == "GET"]
    listings = [r for r in gets if "list-type" in r[1] or "prefix=" in r[1]]
    reads = [r for r in gets if r not in listings]
    assert len(listings) == 1
    assert len([r for r in reads if r[1].split("?")[0].endswith(".index")]) == 1
    assert len(reads) == 1 + 5  # the index, each of the 5 shards once


def _changed_copy(path: Path) -> bytes:
    """The file's bytes with its last byte changed (the same size, another ETag)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    return bytes(data)


def test_s3_object_replaced_while_read(many, s3):
    """The ETag seen at open goes with every range (If-Match): a replaced object is an error
    naming it, never a mix of two versions."""
    fs = fsspec.filesystem("s3")
    fs.put(str(many / "many.safetensors"), "weights/moving.safetensors")
    source.set_io_budget(4 << 20)
    with registry.load(f"{s3.base}/moving.safetensors") as store:
        fs.pipe("weights/moving.safetensors", _changed_copy(many / "many.safetensors"))
        with pytest.raises(FileChangedError, match="moving.safetensors: the object changed"):
            for tensor in store.values():
                tensor.read()


def test_s3_missing_bucket_and_object(s3, capsys):
    from weightkit.cli.main import main
    for url in (f"{s3.base}/absent.safetensors", "s3://no-such-bucket/x.safetensors"):
        assert main(["show", url]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and url in err


def test_s3_denied(s3, capsys):
    from weightkit.cli.main import main
    s3.faults.errors = {"made": 403}
    try:
        assert main(["show", f"{s3.base}/made.safetensors"]) == 2
    finally:
        s3.faults.errors = {}
    err = capsys.readouterr().err
    assert "access denied" in err and len(err.strip().splitlines()) == 1


def test_s3_state_file_cannot_send_reads_elsewhere(corpus, s3, recwarn):
    """A `checkpoint` state file naming another bucket (or `../`) is never followed: the
    checkpoint of that name inside the prefix is read, with a note."""
    fs = fsspec.filesystem("s3")
    for other in ("s3://other-bucket/run/ckpt-1", "../outside/ckpt-1"):
        fs.pipe("weights/trap/checkpoint", f'model_checkpoint_path: "{other}"\n'.encode())
        for suffix in (".index", ".data-00000-of-00001"):
            fs.put(str(corpus / f"mlp--keras3.ckpt{suffix}"), f"weights/trap/ckpt-1{suffix}")
        with registry.load(f"{s3.base}/trap") as store:
            assert store.path == f"{s3.base}/trap"
        assert any("reading" in str(w.message) and "outside" in str(w.message)
                   for w in recwarn.list)
        recwarn.clear()
    assert s3.traffic.count(pattern="other-bucket") == 0


def test_s3_tfjs_manifest_cannot_leave_the_prefix(s3):
    fs = fsspec.filesystem("s3")
    doc = {"format": "layers-model", "weightsManifest": [
        {"paths": ["../secret.bin"], "weights": [{"name": "w", "shape": [1], "dtype": "float32"}]}]}
    fs.pipe("weights/evil/model.json", json.dumps(doc).encode())
    fs.pipe("weights/secret.bin", b"\0\0\0\0")
    with pytest.raises(UnsafeFileError, match="outside"):
        registry.load(f"{s3.base}/evil/model.json")


@pytest.mark.parametrize("backend", ["s3", "gcs"])
def test_a_crowded_prefix_is_not_listed_whole(corpus, backend, request, monkeypatch):
    """A model.json among more objects than a scan lists (SCAN_LIMIT: 10,000; here 5) reads
    the same, its weight files asked for by name, and no listing of the crowd is kept (a
    model.json at the top of a bucket of millions listed them all, in memory)."""
    server = request.getfixturevalue(backend)
    monkeypatch.setattr(source, "SCAN_LIMIT", 5)
    fs = fsspec.filesystem("s3" if backend == "s3" else "gs")
    local = corpus / "conv--tfjs-layers"
    for path in local.iterdir():
        fs.pipe(f"weights/crowd-{backend}/{path.name}", path.read_bytes())
    for i in range(12):
        fs.pipe(f"weights/crowd-{backend}/other-{i:02d}.bin", b"x")
    with source.session(), registry.load(local) as want, \
            registry.load(f"{server.base}/crowd-{backend}/model.json") as got:
        assert list(got) == list(want)
        for name in want:
            np.testing.assert_array_equal(got[name].read(), want[name].read())
        kept = source._listings().prefixes
        assert kept and not any(p.endswith(f"crowd-{backend}/") for p in kept), kept


def test_s3_convert_writes_the_index_last_and_atomically(corpus, s3):
    fs = fsspec.filesystem("s3")
    with registry.load(corpus / "mlp--keras3.ckpt") as store:
        s3.traffic.reset()
        registry.save(store, f"{s3.base}/out/ckpt", "tf-checkpoint")
        puts = [r[1].split("?")[0] for r in s3.traffic.requests if r[0] == "PUT"]
        assert puts[-1].endswith("/out/ckpt.index") and len(puts) == 2
        same_as_local(corpus, f"{s3.base}/out/ckpt", "mlp--keras3.ckpt")
        # a failed upload of the index leaves no index (and no data of the new write)
        s3.faults.errors = {r"out/ckpt\.index": 500}
        s3.faults.error_methods = ("PUT",)
        try:
            with pytest.raises(WeightsError):
                registry.save(store, f"{s3.base}/out/ckpt", "tf-checkpoint")
        finally:
            s3.faults.errors, s3.faults.error_methods = {}, Faults_default()
    assert not fs.exists("weights/out/ckpt.index")
    assert not fs.exists("weights/out/ckpt.data-00000-of-00001")


def Faults_default() -> tuple[str, ...]:
    from remote_servers import Faults
    return Faults().error_methods


def test_s3_every_command(corpus, s3, tmp_path, capsys):
    """show, wdiff (local against remote), convert (remote to remote), verify, edit, trend."""
    from weightkit.cli.main import main, wdiff
    base = s3.base
    assert main(["show", f"{base}/mlp--keras3.keras"]) == 0
    assert wdiff([str(corpus / "conv--keras3-before.ckpt"), f"{base}/conv--keras3-before.ckpt"]) == 0
    assert wdiff([str(corpus / "conv--keras3-before.ckpt"), f"{base}/conv--keras3-after.ckpt"]) == 1
    assert main(["convert", f"{base}/mlp--keras3.keras", f"{base}/out/mlp.safetensors"]) == 0
    assert main(["convert", f"{base}/mlp--keras3.keras", f"{base}/mlp--keras3.keras"]) == 2
    assert main(["verify", f"{base}/mlp--keras3.keras"]) == \
        main(["verify", str(corpus / "mlp--keras3.keras")])
    assert main(["edit", f"{base}/out/mlp.safetensors", f"{base}/out/renamed.safetensors",
                 "--rename", "^d1/=first/"]) == 0
    with registry.load(f"{base}/out/renamed.safetensors") as store:
        assert any(k.startswith("first/") for k in store)
    docs = []
    for run in (f"{base}/run--tfkeras-ckptdir", str(corpus / "run--tfkeras-ckptdir")):
        capsys.readouterr()
        main(["trend", run, "--format", "json"])
        doc = json.loads(capsys.readouterr().out)
        assert [c["path"] for c in doc.pop("checkpoints")] == [f"{run}/ckpt-{i}" for i in range(6)]
        docs.append(doc)
    assert docs[0] == docs[1]


def test_load_in_a_fresh_process_from_the_environment(corpus, s3):
    """`weightkit.load(url)` in a new process given only the URL and the environment (what a
    Dask worker has)."""
    code = textwrap.dedent(f"""
        import hashlib, weightkit
        with weightkit.load({f'{s3.base}/made.safetensors'!r}) as store:
            print(sorted(store)[0], store[sorted(store)[0]].read().sum())
    """)
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **s3.env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with registry.load(corpus / "made.safetensors") as store:
        first = sorted(store)[0]
        assert done.stdout.split()[0] == first
        assert float(done.stdout.split()[1]) == pytest.approx(float(store[first].read().sum()))


# -- GCS (gcp-storage-emulator) -------------------------------------------------------------------

GCS_NAMES = ["mlp--keras3.ckpt", "run--tfkeras-ckptdir", "mlp--keras3.keras",
             "mlp--tfkeras-full.h5", "conv--tfjs-layers", "made.npz", "made.safetensors"]


@pytest.mark.parametrize("name", GCS_NAMES)
def test_gcs_reads_the_same_bytes(corpus, gcs, name):
    same_as_local(corpus, f"{gcs.base}/{name}", name)


@pytest.mark.slow
@pytest.mark.parametrize("name", _all_fixtures())
def test_gcs_every_fixture(corpus, gcs, name):
    same_as_local(corpus, f"{gcs.base}/{name}", name)


def test_gcs_object_replaced_while_read(many, gcs):
    """The emulator reports no generation on downloads; a replacement of another size is seen
    in Content-Range (real GCS also answers x-goog-generation, and 404 for a pinned
    generation that is gone)."""
    fs = fsspec.filesystem("gs")
    fs.put(str(many / "many.safetensors"), "weights/moving.safetensors")
    source.set_io_budget(4 << 20)
    with registry.load(f"{gcs.base}/moving.safetensors") as store:
        fs.pipe("weights/moving.safetensors", (many / "many.safetensors").read_bytes() + b" ")
        with pytest.raises(FileChangedError, match="moving.safetensors"):
            for tensor in store.values():
                tensor.read()


def test_gcs_convert_and_missing(corpus, gcs, capsys):
    from weightkit.cli.main import main
    assert main(["convert", f"{gcs.base}/mlp--keras3.ckpt", f"{gcs.base}/out/m.npz"]) == 0
    same_as_local(corpus, f"{gcs.base}/out/m.npz", "made.npz") if False else None
    with registry.load(f"{gcs.base}/out/m.npz") as a, registry.load(corpus / "made.npz") as b:
        assert list(a) == list(b)
    assert main(["show", f"{gcs.base}/absent.h5"]) == 2
    assert "absent.h5: no such file or object" in capsys.readouterr().err


def test_npz_members_with_long_local_extra_fields_over_http(corpus, http):
    """A URL's npz members are read from their local headers with an allowance for the extra
    field; a longer one (400 bytes: zipfile keeps whatever extra a writer gives) has its .npy
    header read on its own, not taken from a short window as the member's start."""
    import io
    import struct
    import zipfile
    source.set_io_budget(1 << 20)  # read in pieces, not whole
    arrays = {"a": np.arange(10, dtype=np.float32), "big": np.zeros(300_000, np.float32)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, value in arrays.items():
            member = io.BytesIO()
            np.save(member, value)
            info = zipfile.ZipInfo(name + ".npy", (1980, 1, 1, 0, 0, 0))
            info.extra = struct.pack("<HH", 0xCAFE, 396) + bytes(396)
            zf.writestr(info, member.getvalue())
    (corpus / "long-extra.npz").write_bytes(buf.getvalue())
    with registry.load(f"{http.url}/long-extra.npz") as store:
        for name, value in arrays.items():
            np.testing.assert_array_equal(store[name].read(), value)
