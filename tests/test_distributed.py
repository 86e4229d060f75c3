"""`--scheduler`: trend, wdiff and convert on a Dask cluster give the local results exactly.

Two kinds of test:
- the plan and the reduction in this process (`InProcess`: tasks run here, one after the
  other), with a tiny piece grid and tiny tasks so that every variable is cut into many ranges:
  fast, and checked on many kinds of values;
- the real thing on one 2-worker `LocalCluster` for the whole session, with worker *processes*
  (not threads): the workers open the files themselves, every task and result is pickled across
  processes as on a real cluster, and nothing a test patches in this process reaches them. A
  worker process starts in about a second; one cluster serves every test. The local run is the
  oracle: every number of the JSON documents compared with `==`, output files byte for byte.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES

import weightkit
from weightkit.cli.main import main
from weightkit.converters.store import Store, Tensor
from weightkit.diffing import distributed as D
from weightkit.diffing import engine, numeric
from weightkit.diffing.engine import Options, compare_tensors, diff_stores
from weightkit.diffing.trend import TrendOptions, trend_stores

distributed = pytest.importorskip("distributed")


# --- in this process -------------------------------------------------------------------------

class InProcess:
    """A stand-in for `Cluster`: the tasks run here, in order (BLAS on one thread meanwhile,
    as on a worker, and restored after)."""

    def __init__(self) -> None:
        self.run_id = "in-process"
        self.tasks: list[tuple] = []

    def run(self, fn, tasks, sizes, progress=None):
        from threadpoolctl import threadpool_limits
        self.tasks += [(fn, t) for t in tasks]
        with threadpool_limits(limits=1, user_api="blas"):
            return [fn(*task) for task in tasks]


@pytest.fixture
def in_process(monkeypatch):
    monkeypatch.setattr(D, "_READY", True)  # no persistent BLAS limit in the test process
    cluster = InProcess()
    yield cluster
    D._forget(cluster.run_id)


def save(tmp_path: Path, name: str, arrays: dict) -> str:
    path = str(tmp_path / name)
    weightkit.save(Store.from_arrays(arrays), path)
    return path


def same_diff(a_path: str, b_path: str, opts: Options, cluster) -> engine.DiffResult:
    """The distributed diff, checked equal to the local one in every number (and the sums)."""
    with weightkit.load(a_path) as a, weightkit.load(b_path) as b:
        local = diff_stores(a, b, opts)
        there = D.diff_stores(a, b, (D.Source.of(a_path), D.Source.of(b_path)), opts, cluster)
    assert json.dumps(there.as_dict()) == json.dumps(local.as_dict())
    assert [e.sums for e in there.entries] == [e.sums for e in local.entries]
    return there


def pairs_of_every_kind(rng: np.random.Generator) -> tuple[dict, dict]:
    shape = (37, 29)  # 1073 elements: with PIECE 16, 68 pieces
    a, b = {}, {}
    x = rng.standard_normal(shape).astype(np.float32)
    a["changed"], b["changed"] = x, x + rng.standard_normal(shape).astype(np.float32) * 1e-3
    y = rng.standard_normal(shape)
    late = y.copy()
    late.reshape(-1)[900:] += 1.0  # identical pieces first: Σa² read again
    a["late"], b["late"] = y, late
    z = rng.standard_normal(shape).astype(np.float32)
    middle = z.copy()
    middle.reshape(-1)[300:310] = np.nan  # NaN in a few pieces, then identical pieces
    a["middle"], b["middle"] = z, middle
    a["same"] = b["same"] = rng.standard_normal(shape).astype(np.float16)
    i = rng.integers(-1000, 1000, shape).astype(np.int64)
    j = i.copy()
    j[5:7] += 3
    a["ints"], b["ints"] = i, j
    c = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    a["complex"], b["complex"] = c, c * np.complex64(1 + 1e-3j)
    a["wider"], b["wider"] = x, x.astype(np.float64) + 1e-9  # float32 against float64
    a["small"], b["small"] = np.arange(5.0), np.arange(5.0) * 2
    a["only_a"], b["only_b"] = np.ones(3), np.zeros(4)
    a["reshaped"], b["reshaped"] = np.ones((2, 3)), np.ones((3, 2))
    return a, b


@pytest.mark.parametrize("norms", [False, True])
def test_plan_and_reduce_give_the_local_diff_exactly(tmp_path, in_process, monkeypatch, norms):
    monkeypatch.setattr(numeric, "PIECE", 16)
    monkeypatch.setattr(D, "TASK_BYTES", 1000)  # every variable of 8 KiB in ranges of ~1 KB
    a, b = pairs_of_every_kind(np.random.default_rng(1))
    pa, pb = save(tmp_path, "a.safetensors", a), save(tmp_path, "b.safetensors", b)
    same_diff(pa, pb, Options(norms=norms), in_process)
    units = [u for _, task in in_process.tasks for u in task[2]]
    ranged = [u for u in units if u[0] == "pair" and u[3] is not None]
    assert len(ranged) > 30  # the large pairs were cut into ranges
    assert any(u[0] == "squares" for u in units) != norms  # Σa² read again only without norms
    assert {u[0] for u in units} >= {"pair", "read"}


def test_tolerances_and_nan_unequal(tmp_path, in_process, monkeypatch):
    monkeypatch.setattr(numeric, "PIECE", 16)
    monkeypatch.setattr(D, "TASK_BYTES", 1000)
    a, b = pairs_of_every_kind(np.random.default_rng(2))
    pa, pb = save(tmp_path, "a.safetensors", a), save(tmp_path, "b.safetensors", b)
    same_diff(pa, pb, Options(atol=1e-4, rtol=1e-3, nan_equal=False), in_process)


def test_renames_are_found_by_hashes_the_workers_compute(tmp_path, in_process):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((40, 30))
    pa = save(tmp_path, "a.safetensors", {"dense/kernel": w, "dense/bias": np.ones(30)})
    pb = save(tmp_path, "b.safetensors", {"renamed/w": w, "dense/bias": np.ones(30)})
    result = same_diff(pa, pb, Options(), in_process)
    assert [e.status for e in result.entries] == ["renamed", "same"]
    assert any(u[0] == "hash" for _, task in in_process.tasks for u in task[2])


def test_a_selection_of_renamed_variables_on_the_cluster(tmp_path, in_process):
    """--include/--exclude select from the whole files' pairs (`engine.pairing`): the hashes
    and comparisons the workers make are those of pairs outside the selection's names too."""
    rng = np.random.default_rng(4)
    w, v = rng.standard_normal((40, 30)), np.zeros(30)
    pa = save(tmp_path, "a.safetensors", {"encoder/w": w, "encoder/b": v, "aux/b": v})
    pb = save(tmp_path, "b.safetensors", {"enc/w": w * 1.001, "encoder/b": v, "debug/b": v})
    for opts in (Options(include=("encoder/*",)), Options(exclude=("debug/*",)),
                 Options(include=("enc/*",), exclude=("aux/*",))):
        same_diff(pa, pb, opts, in_process)


def test_plan_and_reduce_give_the_local_trend_exactly(tmp_path, in_process, monkeypatch):
    monkeypatch.setattr(numeric, "PIECE", 16)
    monkeypatch.setattr(D, "TASK_BYTES", 3000)
    rng = np.random.default_rng(4)
    current = {"kernel": rng.standard_normal((40, 30)).astype(np.float32),
               "frozen": rng.standard_normal(700), "step": np.array(0, np.int64),
               "counts": rng.integers(0, 9, 900).astype(np.int32)}
    paths = []
    for t in range(5):
        current = {k: v.copy() for k, v in current.items()}
        current["kernel"].reshape(-1)[t * 100:] *= 1.01
        current["step"] = np.array(t * 10, np.int64)
        current["counts"][t] += 1
        if t == 3:
            current["kernel"][0, 0] = np.nan
        arrays = dict(current)
        if t >= 2:
            arrays["slot"] = np.full(600, float(t))  # appears later
        paths.append(save(tmp_path, f"ckpt-{t}.safetensors", arrays))
    stores = [weightkit.load(p) for p in paths]
    try:
        local = trend_stores(stores, TrendOptions(), paths)
        there = D.trend_stores(stores, [D.Source.of(p) for p in paths], TrendOptions(), paths,
                               in_process)
    finally:
        for s in stores:
            s.close()
    assert json.dumps(there.as_dict()) == json.dumps(local.as_dict())
    assert [s.sums for s in there.series] == [s.sums for s in local.series]
    assert sum(1 for _, task in in_process.tasks for u in task[2] if u[2] is not None) > 10


@pytest.mark.parametrize("shape", [(), (7,), (5, 6), (3, 4, 5), (2, 0, 3), (2, 3, 4, 5)])
def test_range_indices_cover_exactly_the_range(shape):
    a = np.arange(math.prod(shape)).reshape(shape)
    n = a.size
    for start in range(0, n + 1, max(1, n // 7)):
        for stop in range(start, n + 1, max(1, n // 5)):
            for max_bytes in (8, 40, 1 << 20):
                blocks = [a[i].reshape(-1) for i in D.range_indices(shape, start, stop, 8,
                                                                     max_bytes)]
                got = np.concatenate(blocks) if blocks else np.empty(0, a.dtype)
                assert got.tolist() == a.reshape(-1)[start:stop].tolist()
                assert all(b.size <= max(max_bytes // 8, 1) or b.size == 1 for b in blocks)


@pytest.mark.parametrize("dtypes", [(np.float32, np.float32), (np.float32, np.float64),
                                    (np.int16, np.int64), (np.complex64, np.complex128)])
def test_the_grid_makes_results_independent_of_chunking(dtypes):
    """Sums are taken over one grid of pieces: any read budget gives the same bits."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(300_001) * 100).astype(dtypes[0])
    y = (x + 1).astype(dtypes[1])
    ta, tb = Tensor.from_array(x.reshape(-1, 1)), Tensor.from_array(y.reshape(-1, 1))
    results = {json.dumps(dataclasses.asdict(compare_tensors(ta, tb, Options(max_bytes=m))))
               for m in (1 << 20, 777_777, 100_003, 8 << 20)}
    assert len(results) == 1


def test_tasks_are_at_least_task_bytes_and_split_on_whole_pieces():
    tasks = D.plan_tasks([10, 20, 300, 5, 1000, 7], [1, 1, 30, 0, 3, 0], task_bytes=100)
    assert [[(w.item, w.pieces) for w in t] for t in tasks] == [
        [(2, (0, 10))], [(2, (10, 20))], [(2, (20, 30))],
        [(4, (0, 1))], [(4, (1, 2))], [(4, (2, 3))],
        [(0, None), (1, None), (3, None), (5, None)]]
    assert all(sum(w.nbytes for w in t) >= 100 for t in tasks[:-1])


# --- on a LocalCluster of 2 worker processes ---------------------------------------------------

@pytest.fixture(scope="session")
def scheduler():
    """The address of one LocalCluster (2 worker processes, 1 thread each) for the session."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=50,
                                       scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def cli(*args: str, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_reads_here(monkeypatch):
    """Any read of a tensor's values in this process (the driver) fails the test."""
    from weightkit.converters import bundle

    def refuse(*args, **kwargs):
        raise AssertionError("the driver read tensor values")
    monkeypatch.setattr(Tensor, "__getitem__", refuse)
    monkeypatch.setattr(Tensor, "iter_chunks", refuse)
    monkeypatch.setattr(bundle.BundleTensor, "iter_chunks", refuse)


@pytest.fixture
def results_seen(monkeypatch):
    """Every task's result as it reaches the driver, with the bytes its task read."""
    seen: list[tuple[object, int]] = []
    run = D.Cluster.run

    def recording(self, fn, tasks, sizes, progress=None):
        results = run(self, fn, tasks, sizes, progress)
        seen.extend(zip(results, sizes))
        return results
    monkeypatch.setattr(D.Cluster, "run", recording)
    return seen


def only_numbers(value: object) -> bool:
    """Plain numbers, flags, names and short hashes, in tuples, lists and dataclasses."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, bytes):
        return len(value) <= 64  # a content hash
    if isinstance(value, (list, tuple)):
        return all(map(only_numbers, value))
    if dataclasses.is_dataclass(value):
        return all(only_numbers(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False  # an ndarray, a numpy scalar, anything else


@pytest.fixture
def run_dir(tmp_path):
    """Five checkpoints of a run (TF checkpoints written by weightkit), 1.2 MB per variable."""
    rng = np.random.default_rng(6)
    current = {"dense/kernel": rng.standard_normal((600, 500)).astype(np.float32),
               "dense/bias": rng.standard_normal(500).astype(np.float32),
               "embed/embeddings": rng.standard_normal((300, 1000)).astype(np.float32),
               "step": np.array(0, np.int64)}
    paths = []
    for t in range(5):
        current = {k: v.copy() for k, v in current.items()}
        current["dense/kernel"] *= np.float32(1.0 + 0.01 * t)
        current["embed/embeddings"][200 + t] += 0.5  # late rows: identical pieces first
        current["step"] = np.array(100 * t, np.int64)
        if t == 4:
            current["dense/bias"][3] = np.inf
        paths.append(save(tmp_path, f"ckpt-{t}.ckpt", current))
    return paths


def test_trend_on_the_cluster_is_the_local_document(run_dir, scheduler, capsys, monkeypatch,
                                                    no_reads_here, results_seen):
    local = subprocess.run([sys.executable, "-m", "weightkit.cli", "trend", *run_dir, "--json"],
                           capture_output=True, text=True, check=True).stdout
    monkeypatch.setattr(D, "TASK_BYTES", 1 << 20)  # ranges of the 1.2 MB variables
    code, out, err = cli("trend", *run_dir, "--json", "--scheduler", scheduler, capsys=capsys)
    assert (code, err) == (0, "")
    assert json.loads(out) == json.loads(local) and out == local
    ranged = [r for r, _ in results_seen if isinstance(r, list) and r and isinstance(r[0], list)]
    assert ranged  # ranges of pieces came back as per-piece sums
    for result, nbytes in results_seen:
        assert only_numbers(result)
        assert len(pickle.dumps(result)) <= nbytes // 50 + 4096


def test_the_python_api_takes_a_scheduler(run_dir, scheduler):
    assert weightkit.trend(run_dir, scheduler=scheduler) == weightkit.trend(run_dir)


def test_wdiff_on_the_cluster_is_the_local_document(run_dir, scheduler, capsys, monkeypatch,
                                                    no_reads_here, results_seen):
    monkeypatch.setattr(D, "TASK_BYTES", 1 << 20)
    for extra in ([], ["--by", "layer", "--all"], ["--atol", "1e-3"]):
        argv = [run_dir[0], run_dir[4], "--json", *extra]
        local = subprocess.run([sys.executable, "-m", "weightkit.cli", "diff", *argv],
                               capture_output=True, text=True)
        code, out, err = cli("diff", *argv, "--scheduler", scheduler, capsys=capsys)
        assert (code, out, err) == (local.returncode, local.stdout, "")
        assert code == 1
    kinds = {type(r[0]).__name__ for r, _ in results_seen if isinstance(r, list) and r}
    assert {"PairStats", "list"} <= kinds
    for result, nbytes in results_seen:
        assert only_numbers(result)
        assert len(pickle.dumps(result)) <= nbytes // 50 + 4096


def test_wdiff_of_framework_files_on_the_cluster(scheduler, capsys, no_reads_here):
    for a, b in [("conv--keras3-before.ckpt", "conv--keras3-after.ckpt"),
                 ("conv--tfkeras-before-full.h5", "conv--tfkeras-after-full.h5"),
                 ("conv--keras3-before.keras", "conv--keras3-after.weights.h5")]:
        argv = [FIXTURES / a, FIXTURES / b, "--json", "--all"]
        local = subprocess.run([sys.executable, "-m", "weightkit.cli", "diff", *map(str, argv)],
                               capture_output=True, text=True)
        code, out, err = cli("diff", *argv, "--scheduler", scheduler, capsys=capsys)
        assert (code, out, err) == (local.returncode, local.stdout, ""), (a, b, local.stderr)


@pytest.mark.parametrize("src,dst", [
    ("sharded--tf2.ckpt", "out.ckpt"),  # 5 data shards: 5 tasks, the .index last
    ("mlp--keras3-sharded.weights.json", "out.weights.json"),  # 3 HDF5 shards and the index
    ("sharded--tf2.ckpt", "out.safetensors"),  # no sharded form: one task writes it whole
    ("tf1--partitioned.ckpt", "out.ckpt"),
])
def test_convert_on_the_cluster_writes_the_local_bytes(tmp_path, scheduler, capsys, src, dst,
                                                       no_reads_here):
    (tmp_path / "local").mkdir()
    (tmp_path / "there").mkdir()
    subprocess.run([sys.executable, "-m", "weightkit.cli", "convert", str(FIXTURES / src),
                    str(tmp_path / "local" / dst)], check=True)
    code, out, err = cli("convert", FIXTURES / src, tmp_path / "there" / dst, "--scheduler",
                         scheduler, capsys=capsys)
    assert (code, err) == (0, "")
    local = sorted(os.listdir(tmp_path / "local"))
    assert sorted(os.listdir(tmp_path / "there")) == local  # and no scratch directory left
    for name in local:
        assert (tmp_path / "there" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_convert_with_a_selection_and_a_template_on_the_cluster(tmp_path, scheduler, capsys):
    src = FIXTURES / "mlp--keras3.ckpt"  # the template's optimizer state fills in
    outputs = []
    for where, extra in (("local", []), ("there", ["--scheduler", scheduler])):
        (tmp_path / where).mkdir()
        code, out, err = cli("convert", src, tmp_path / where / "out.ckpt", "--like", src,
                             "--no-optimizer", "--match", "structure", *extra, capsys=capsys)
        assert (code, err) == (0, "")
        outputs.append(out.replace(where, "WHERE"))
    assert outputs[0] == outputs[1] and "dropped (optimizer)" in outputs[0]
    for name in os.listdir(tmp_path / "local"):
        assert (tmp_path / "there" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_accepted_losses_are_said_alike_on_the_cluster(tmp_path, scheduler, capsys):
    """--allow-lossy: the losses accepted are one note on stderr, here and on a cluster."""
    src = FIXTURES / "mlp--keras3.weights.h5"
    notes = []
    for where, extra in (("local", []), ("there", ["--scheduler", scheduler])):
        (tmp_path / where).mkdir()
        code, _, err = cli("convert", src, tmp_path / where / "out.ckpt", "--allow-lossy",
                           *extra, capsys=capsys)
        assert code == 0
        notes.append(err.replace(where, "WHERE"))
    assert notes[0] == notes[1]
    assert ": note: " in notes[0] and "(--allow-lossy)" in notes[0]
    assert "the order of variables" in notes[0] and notes[0].count("\n") == 1


def corrupt(prefix: str) -> str:
    """Flip one byte of the checkpoint's data: a crc mismatch only a full read finds."""
    data = Path(prefix + ".data-00000-of-00001")
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    return str(data)


def test_a_worker_error_is_one_line_and_exit_2(run_dir, scheduler, capsys, monkeypatch):
    monkeypatch.setattr(D, "TASK_BYTES", 1 << 20)
    data = corrupt(run_dir[2])
    for argv in (["trend", *run_dir], ["diff", run_dir[1], run_dir[2]]):
        code, out, err = cli(*argv, "--scheduler", scheduler, capsys=capsys)
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and "checksum does not match" in err and data in err, err


def test_a_failed_convert_task_leaves_nothing(run_dir, tmp_path, scheduler, capsys):
    corrupt(run_dir[0])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = cli("convert", run_dir[0], out_dir / "x.ckpt", "--scheduler", scheduler,
                       capsys=capsys)
    assert code == 2 and "checksum does not match" in err and err.count("\n") == 1
    assert os.listdir(out_dir) == []


def test_a_file_the_workers_cannot_see_is_named(tmp_path, scheduler):
    path = save(tmp_path, "a.safetensors", {"w": np.ones(3)})
    with weightkit.load(path) as a:
        os.rename(path, path + ".moved")  # the driver has it open; the workers look it up
        with D.Cluster(scheduler) as cluster, pytest.raises(weightkit.UsageError) as caught:
            D.diff_stores(a, a, (D.Source.of(path), D.Source.of(path)), Options(), cluster)
    assert "workers must see every input at the same path" in str(caught.value)
    assert path in str(caught.value)


def test_an_unreachable_scheduler_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(D, "CONNECT_TIMEOUT", "0.5s")
    a = FIXTURES / "conv--keras3-before.ckpt"
    code, out, err = cli("diff", a, a, "--scheduler", "tcp://127.0.0.1:9", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "cannot reach the Dask scheduler" in err


def test_malformed_local_form_and_the_missing_extra(capsys):
    a = str(FIXTURES / "conv--keras3-before.ckpt")
    code, _, err = cli("diff", a, a, "--scheduler", "local:two", capsys=capsys)
    assert code == 2 and "local:N" in err
    hide = ("import sys; sys.modules['distributed'] = None; sys.modules['dask'] = None; "
            "from weightkit.cli.main import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", hide, "trend", a, a, "--scheduler", "local:2"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "pip install 'weightkit[dask]'" in done.stderr


def test_dask_is_never_imported_without_the_flag():
    a = str(FIXTURES / "conv--keras3-before.ckpt")
    code = ("import sys; from weightkit.cli.main import main; "
            "status = main(['diff', sys.argv[1], sys.argv[1], '-q']); "
            "main(['trend', sys.argv[1], sys.argv[1], '-q']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    done = subprocess.run([sys.executable, "-c", code, a], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_local_n_starts_its_own_cluster(run_dir, capsys):
    local = subprocess.run([sys.executable, "-m", "weightkit.cli", "trend", *run_dir, "--json"],
                           capture_output=True, text=True, check=True).stdout
    code, out, err = cli("trend", *run_dir, "--json", "--scheduler", "local:2", capsys=capsys)
    assert (code, out, err) == (0, local, "")
