"""The benchmark harness measures what it says (bench/run.py), and weightkit keeps BLAS single-threaded."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_child_peak_rss_and_status_are_the_childs():
    # Linux carries the parent's RSS high-water mark into a child through (v)fork + exec, so the
    # measurement is made from a small process, as the harness runs: a large pytest process
    # would set a floor under every child's figure.
    grab = "import sys; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); sys.exit(3)"
    code = f"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("bench_run", {str(RUN)!r})
bench = importlib.util.module_from_spec(spec); sys.modules[spec.name] = bench
spec.loader.exec_module(bench)
big = bench.run_child([sys.executable, "-c", {grab!r}], capture=True, timeout=60)
small = bench.run_child([sys.executable, "-c", "pass"], capture=True, timeout=60)
print(json.dumps([big.status, big.rss_mib, big.wall_s, small.rss_mib, small.wall_s]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    status, rss, wall, small_rss, small_wall = json.loads(out.stdout)
    assert status == 3
    assert 200 <= rss < 300
    assert small_rss < 100
    assert 0 < small_wall < wall + 5


def test_timeout_kills_the_child(bench):
    run = bench.run_child([sys.executable, "-c", "import time; time.sleep(30)"], capture=False,
                          timeout=0.5)
    assert run.status < 0 and run.wall_s < 10


def test_ratio_and_target(bench):
    def measure(wall, rss, status=0):
        m = bench.Measure("x", ["x"])
        m.runs = [bench.Run(wall + 1, 0, rss, status), bench.Run(wall, 0, rss - 1, status)]
        return m
    row = bench.compare("t", measure(1.0, 100), measure(4.0, 900), 0.25)
    assert row["ratio"] == 0.25 and row["met"] is True
    assert bench.compare("t", measure(1.0, 300), measure(4.0, 10), 0.25)["met"] is False
    assert bench.compare("t", measure(2.0, 100), measure(4.0, 10), 0.25)["met"] is False
    failed = bench.compare("t", measure(1.0, 100, status=2), measure(4.0, 10), 1.0)
    assert failed["ratio"] is None and failed["met"] is None and failed["ours"]["error"]


def test_default_sizes_are_a_quarter_and_the_size(bench):
    assert bench.parse_args(["--size", "64"]).sizes == [16, 64]
    assert bench.parse_args(["--sizes", "256,1024,4096"]).sizes == [256, 1024, 4096]


BLAS_PROBE = """
import json
from threadpoolctl import threadpool_info
from weightkit.diffing.workers import run_all

def blas():
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

print(json.dumps([blas(), run_all(lambda i, progress: blas(), [(0,), (1,)], [1, 1], workers=2)[0],
                  blas()]))
"""


def test_workers_hold_blas_to_one_thread_and_give_it_back():
    """While weightkit's own workers run, BLAS runs on one thread each (no oversubscription);
    before and after, the process keeps its own setting (importing weightkit changes nothing)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", BLAS_PROBE], capture_output=True, text=True,
                         env={**env, "OPENBLAS_NUM_THREADS": "2"})
    before, during, after = json.loads(out.stdout)
    assert before == after == [2] and during == [1], out.stdout + out.stderr


def test_one_command_imports_only_its_module(tmp_path):
    import numpy as np
    np.savez(tmp_path / "w.npz", kernel=np.ones((3, 2), np.float32))
    code = ("import sys; from weightkit.cli.main import main; status = main(['show', sys.argv[1]]); "
            "print(status, sorted(m for m in sys.modules if m.startswith('weightkit.cli.')))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "w.npz")],
                         capture_output=True, text=True)
    status, modules = out.stdout.strip().splitlines()[-1].split(" ", 1)
    assert status == "0", out.stderr
    assert "weightkit.cli.show" in modules and "weightkit.cli.diff" not in modules


@pytest.mark.parametrize("argv, expected", [
    (["show", "x"], "show"), (["--debug", "diff", "a", "b"], "diff"), (["-h"], None),
    (["--version"], None), ([], None), (["nonsense"], None)])
def test_requested_command(argv, expected):
    from weightkit.cli.main import _requested
    assert _requested(argv) == expected


def test_help_still_lists_every_command(capsys):
    from weightkit.cli.main import COMMANDS, main
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert all(name.replace("_", "-") in listed for name in COMMANDS)
