#!/usr/bin/env python3
"""Benchmark weightkit against its peers, timed in the same run, as ratios.

    make bench                    # 1 GiB corpus (needs ~8 GiB free disk and ~4 GiB RAM to build)
    make bench SIZE=64            # quick run
    python bench/run.py --size 1024 --sizes 256,1024,4096 --repeat 3

The corpus comes from `../shared/bench/make_corpus.py OUT SIZE_MIB` (it needs TensorFlow) and is
cached in `bench/out/corpus-<SIZE>/`. Every measurement is a separate child process, timed by wall
clock, with its peak RSS from `os.wait4` (the child's max RSS, including children it waited for).
The input files are read once before each task so that every tool starts from a warm page cache;
each command then runs `--repeat` times and the best wall time is kept (peak RSS: the largest seen).

Tasks and peers:
  diff-h5           wdiff before.h5 after.h5            vs  h5diff -d 1e-6 (hdf5-tools)
  diff-safetensors  wdiff on the safetensors pair       vs  safetensors.numpy.load_file + numpy loop
  diff-checkpoint   wdiff on the checkpoint pair        vs  tf.train.load_checkpoint + numpy loop
  every diff        also vs reading both files from the page cache (`cat A B > /dev/null`)
  convert           weightkit convert ckpt -> .safetensors  vs  tf.train.load_checkpoint + save_file
  show              weightkit show on a tiny checkpoint vs  python -m ...inspect_checkpoint
  trend             weightkit trend over a run of --run-steps safetensors checkpoints made from
                    the corpus (every third variable moves a little each step, the rest stay)
                    vs  the same numbers from a numpy loop (safetensors.numpy.load_file)
  flat-rss          wdiff and convert peak RSS at each of --sizes
  count             show --json, show and verify on files of 1k/10k/100k small variables
                    (safetensors, npz; h5: one dataset in that many chunks)  vs  the format's
                    reader computing each tensor's std in a loop (safe_open, np.load, h5py)

Prints a table and writes `bench/out/results-<UTC date and time>.json` with the machine's facts.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
CORPUS_SCRIPT = next((p / "shared" / "bench" / "make_corpus.py" for p in (REPO.parent, REPO.parents[1])
                      if (p / "shared" / "bench" / "make_corpus.py").exists()),
                     REPO.parent / "shared" / "bench" / "make_corpus.py")  # beside, or a worktree's
BIN = Path(sys.executable).parent
WK_BIN = BIN  # where the weightkit under test is installed (see install_weightkit)
MIB = 2 ** 20
RSS_LIMIT_MIB = 256

# The peers, as Python programs run in their own interpreter (argv: the two inputs, or src dst).
NUMPY_DIFF = """
import sys
import numpy as np
from safetensors.numpy import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
worst = {k: float(np.abs(a[k] - b[k]).max()) if a[k].size else 0.0 for k in a}
print(sum(v > 1e-6 for v in worst.values()), "of", len(worst), "tensors differ")
"""
# A run of checkpoints from the corpus: argv OUT STEPS SOURCE. Step t adds N(0, 1e-3) noise to
# every third variable of step t-1; a NaN appears in the last step's first variable.
MAKE_RUN = """
import sys
import numpy as np
from safetensors.numpy import load_file, save_file
out, steps, source = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(1)
current = load_file(source)
for t in range(steps):
    if t:
        for j, (name, array) in enumerate(current.items()):
            if j % 3 == 0:
                array += rng.standard_normal(array.shape, dtype=np.float32) * np.float32(1e-3)
    if t == steps - 1:
        next(iter(current.values())).reshape(-1)[7] = np.nan
    save_file(current, f"{out}/ckpt-{t:03d}.safetensors")
"""
# The same numbers as `weightkit trend` (float64, over finite values), with numpy alone.
NUMPY_TREND = """
import sys
import numpy as np
from safetensors.numpy import load_file
first = prev = None
rows = []
for path in sys.argv[1:]:
    current = {k: v.astype(np.float64) for k, v in load_file(path).items()}
    for name, x in current.items():
        finite = np.isfinite(x)
        nan, inf = int(np.isnan(x).sum()), int((~finite).sum()) - int(np.isnan(x).sum())
        norm = float(np.linalg.norm(x[finite]))
        row = [name, norm, nan, inf]
        for ref in (prev, first):
            if ref is not None:
                r = ref[name]
                both = finite & np.isfinite(r)
                d = x[both] - r[both]
                row += [np.linalg.norm(d) / np.linalg.norm(r[both]), np.abs(d).max(),
                        int((x != r).sum())]
        rows.append(row)
    first = current if first is None else first
    prev = current
print(len(rows), "rows")
"""
TF_DIFF = """
import sys
import numpy as np
import tensorflow as tf
ra, rb = tf.train.load_checkpoint(sys.argv[1]), tf.train.load_checkpoint(sys.argv[2])
differ = 0
for key in ra.get_variable_to_shape_map():
    a, b = ra.get_tensor(key), rb.get_tensor(key)
    if a.dtype.kind in "fiu" and a.size:
        differ += float(np.abs(a - b).max()) > 1e-6
    else:
        differ += not np.array_equal(a, b)
print(differ, "tensors differ")
"""
TF_CONVERT = """
import sys
import tensorflow as tf
from safetensors.numpy import save_file
reader = tf.train.load_checkpoint(sys.argv[1])
dtypes = reader.get_variable_to_dtype_map()
save_file({k: reader.get_tensor(k) for k, d in dtypes.items() if d != tf.string}, sys.argv[2])
"""
NUMPY_READ = """
import mmap, sys
import numpy as np
total = 0.0
for path in sys.argv[1:]:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        total += float(np.frombuffer(m, np.float32, len(m) // 4).sum(dtype=np.float64))
print(total)
"""
TINY_CHECKPOINT = """
import sys
import numpy as np
import tensorflow as tf
rng = np.random.default_rng(0)
shapes = {"dense/kernel": (32, 16), "dense/bias": (16,), "out/kernel": (16, 4), "out/bias": (4,)}
tracked = {n.replace("/", "_"): tf.Variable(rng.standard_normal(s, dtype=np.float32), name=n)
           for n, s in shapes.items()}
tf.train.Checkpoint(**tracked).write(sys.argv[1])
"""
NO_TF_CHECK = """
import contextlib, io, json, sys
from weightkit.cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    status = main(["show", sys.argv[1]])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print(json.dumps({"status": status, "heavy_modules": heavy[:5]}))
"""


@dataclass
class Run:
    """One timed child process."""
    wall_s: float
    cpu_s: float
    rss_mib: float
    status: int
    tail: str = ""


@dataclass
class Measure:
    """The best of several runs of one command."""
    label: str
    argv: list[str]
    runs: list[Run] = field(default_factory=list)
    ok_status: tuple[int, ...] = (0,)

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.status in self.ok_status for r in self.runs)

    @property
    def wall_s(self) -> float | None:
        return min(r.wall_s for r in self.runs) if self.ok else None

    @property
    def cpu_s(self) -> float | None:
        return min(r.cpu_s for r in self.runs) if self.ok else None

    @property
    def rss_mib(self) -> float | None:
        return max(r.rss_mib for r in self.runs) if self.ok else None

    @property
    def error(self) -> str:
        bad = [r for r in self.runs if r.status not in self.ok_status]
        return f"exit {bad[0].status}: {bad[0].tail}" if bad else ""

    def as_dict(self) -> dict:
        return {"label": self.label, "argv": self.argv, "ok": self.ok, "wall_s": self.wall_s,
                "cpu_s": self.cpu_s, "rss_mib": self.rss_mib, "error": self.error,
                "runs": [asdict(r) for r in self.runs]}


def run_child(argv: list[str], *, capture: bool, timeout: float, env: dict | None = None) -> Run:
    """Run `argv` once; wall clock, user+sys CPU and max RSS come from wait4 on that child."""
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out if capture else subprocess.DEVNULL, stderr=err,
                                stdin=subprocess.DEVNULL, env=env)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        _, wait_status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        timer.cancel()
        proc.returncode = status = os.waitstatus_to_exitcode(wait_status)
        text = b""
        for stream in (out, err):
            stream.seek(0)
            text += stream.read()[-4000:]
    lines = [line for line in text.decode(errors="replace").splitlines() if line.strip()]
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, status,
               " | ".join(lines[-3:])[-400:])


def warm(paths: list[Path]) -> None:
    """Read files once so that every tool starts from the page cache."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(16 * MIB):
                pass


def measure(label: str, argv: list[str], inputs: list[Path], args: argparse.Namespace, *,
            repeat: int | None = None, capture: bool = True, ok_status: tuple[int, ...] = (0,),
            cleanup: Path | None = None, env: dict | None = None) -> Measure:
    """Best of `repeat` runs of `argv`, after warming the page cache with `inputs`."""
    m = Measure(label, [str(a) for a in argv], ok_status=ok_status)
    warm(inputs)
    for _ in range(repeat or args.repeat):
        run = run_child(m.argv, capture=capture, timeout=args.timeout, env=env)
        if cleanup is not None and cleanup.exists():
            cleanup.unlink()
        m.runs.append(run)
        print(f"  {label}: {run.wall_s:.3f} s, {run.rss_mib:.0f} MiB, exit {run.status}"
              + ("" if run.status in ok_status else f" ({run.tail})"), file=sys.stderr, flush=True)
        if run.status not in ok_status:
            break
    return m


def corpus(size: int, args: argparse.Namespace) -> Path:
    """The corpus of `size` MiB, built once with the shared generator and cached."""
    where = OUT / f"corpus-{size}"
    done = where / ".complete"
    if done.exists():
        return where
    if not CORPUS_SCRIPT.exists():
        sys.exit(f"bench: the corpus generator {CORPUS_SCRIPT} is missing")
    print(f"building the {size} MiB corpus in {where} (TensorFlow, a few minutes for 1 GiB)",
          file=sys.stderr, flush=True)
    shutil.rmtree(where, ignore_errors=True)
    subprocess.run([sys.executable, str(CORPUS_SCRIPT), str(where), str(size)], check=True,
                   env=quiet_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done.touch()
    return where


def tiny_checkpoint() -> Path:
    """A checkpoint of four small variables written by TensorFlow, for `show`."""
    prefix = OUT / "tiny_ckpt" / "ckpt"
    if not prefix.with_suffix(".index").exists():
        prefix.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-c", TINY_CHECKPOINT, str(prefix)], check=True,
                       env=quiet_env(), capture_output=True)
    return prefix


def quiet_env() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def wk_env() -> dict:
    """weightkit as installed by pip: byte code cached (here under bench/out, not in the source
    tree), even where the session sets PYTHONDONTWRITEBYTECODE."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(OUT / "pycache")}


def install_weightkit() -> Path:
    """weightkit as a user installs it: `pip install .` into a venv of its own under bench/out
    (the development venv's editable install adds an import hook, ~20 ms, to every start)."""
    venv = OUT / "venv"
    if not (venv / "bin" / "python").exists():
        print(f"installing weightkit into {venv}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    built_before = (REPO / "build").exists()
    subprocess.run([*pip, str(REPO)], check=True, stdout=subprocess.DEVNULL)  # and dependencies
    subprocess.run([*pip, "--force-reinstall", "--no-deps", str(REPO)], check=True,
                   stdout=subprocess.DEVNULL)  # this commit's code, whatever the version says
    if not built_before:
        shutil.rmtree(REPO / "build", ignore_errors=True)  # setuptools' leftovers
    return venv / "bin"


def pair(root: Path, kind: str) -> tuple[Path, Path, list[Path]]:
    """The (before, after) inputs of one format and the files they consist of."""
    if kind == "checkpoint":
        a, b = root / "before_ckpt" / "ckpt", root / "after_ckpt" / "ckpt"
        files = [p for x in (a, b) for p in sorted(x.parent.iterdir())]
        return a, b, files
    suffix = {"h5": ".h5", "safetensors": ".safetensors"}[kind]
    a, b = root / f"before{suffix}", root / f"after{suffix}"
    return a, b, [a, b]


def wk(*argv: str) -> list[str]:
    return [str(WK_BIN / "weightkit"), *argv]


def measure_wk(label: str, argv: list[str], inputs: list[Path], args: argparse.Namespace,
               **kwargs) -> Measure:
    """A weightkit command, after one untimed run that fills the byte-code cache."""
    warm(inputs)
    run_child(argv, capture=False, timeout=args.timeout, env=wk_env())
    cleanup = kwargs.get("cleanup")
    if cleanup is not None and cleanup.exists():
        cleanup.unlink()
    return measure(label, argv, inputs, args, env=wk_env(), **kwargs)


DIFF_OK = (0, 1)  # diff(1) convention: 1 means "differences found"


def bench_diffs(root: Path, args: argparse.Namespace) -> list[dict]:
    """wdiff against the format's peer and against reading both files from the page cache."""
    rows = []
    peers = {
        "h5": ("h5diff -d 1e-6", lambda a, b: [args.h5diff, "-d", "1e-6", str(a), str(b)], False),
        "safetensors": ("numpy loop (safetensors.numpy)",
                        lambda a, b: [sys.executable, "-c", NUMPY_DIFF, str(a), str(b)], True),
        "checkpoint": ("TF load_checkpoint loop",
                       lambda a, b: [sys.executable, "-c", TF_DIFF, str(a), str(b)], True),
    }
    for kind in args.formats:
        a, b, files = pair(root, kind)
        print(f"diff-{kind}:", file=sys.stderr)
        ours = measure_wk(f"wdiff {kind}", wk("diff", str(a), str(b)), files, args,
                          ok_status=DIFF_OK)
        name, peer_argv, capture = peers[kind]
        peer = measure(name, peer_argv(a, b), files, args, ok_status=DIFF_OK, capture=capture,
                       env=quiet_env())
        cat = measure("cat (page cache)", ["sh", "-c", 'cat "$@" > /dev/null', "cat",
                                           *map(str, files)], files, args)
        npread = measure("numpy mmap sum (page cache)",
                         [sys.executable, "-c", NUMPY_READ, *map(str, files)], files, args)
        rows += [compare(f"diff {kind}", ours, peer, 1.0),
                 compare(f"diff {kind}", ours, cat, 1.5),
                 compare(f"diff {kind}", ours, npread, None)]
    return rows


def bench_convert(root: Path, args: argparse.Namespace) -> list[dict]:
    """checkpoint -> safetensors: weightkit against TensorFlow's reader + safetensors' writer."""
    a, _, files = pair(root, "checkpoint")
    dst = OUT / "tmp" / "converted.safetensors"
    dst.parent.mkdir(parents=True, exist_ok=True)
    print("convert:", file=sys.stderr)
    ours = measure_wk("weightkit convert", wk("convert", str(a), str(dst)), files[:2], args,
                      cleanup=dst)
    peer = measure("TF load_checkpoint + save_file",
                   [sys.executable, "-c", TF_CONVERT, str(a), str(dst)], files[:2], args,
                   cleanup=dst, env=quiet_env())
    return [compare("convert ckpt->safetensors", ours, peer, 0.25)]


def bench_show(args: argparse.Namespace) -> tuple[list[dict], dict]:
    """`show` on a tiny checkpoint against TensorFlow's inspect_checkpoint; and no TF import."""
    prefix = tiny_checkpoint()
    files = sorted(prefix.parent.iterdir())
    print("show:", file=sys.stderr)
    repeat = max(args.repeat, 5)
    ours = measure_wk("weightkit show", wk("show", str(prefix)), files, args, repeat=repeat)
    peer = measure("inspect_checkpoint", [sys.executable, "-m",
                                          "tensorflow.python.tools.inspect_checkpoint",
                                          f"--file_name={prefix}"], files, args, repeat=repeat,
                   env=quiet_env())
    check = subprocess.run([str(WK_BIN / "python"), "-c", NO_TF_CHECK, str(prefix)], capture_output=True,
                           text=True, env=wk_env())
    try:
        imports = json.loads(check.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        imports = {"status": check.returncode, "error": check.stderr.strip()[-400:]}
    row = compare("show tiny checkpoint", ours, peer, None)
    row["target"] = "<= 0.3 s"
    row["met"] = ours.ok and ours.wall_s <= 0.3 and not imports.get("heavy_modules", ["?"])
    row["no_tensorflow_import"] = imports
    return [row], imports


SAFE_OPEN_STD = """
import sys
import numpy as np
from safetensors import safe_open
with safe_open(sys.argv[1], framework="numpy") as f:
    stds = [float(t.std()) if t.size else None for t in map(f.get_tensor, f.keys())]
print(len(stds), "tensors")
"""
NP_LOAD_STD = """
import sys
import numpy as np
with np.load(sys.argv[1]) as z:
    stds = [float(z[k].std()) if z[k].size else None for k in z.files]
print(len(stds), "tensors")
"""
H5PY_STD = """
import sys
import h5py
with h5py.File(sys.argv[1], "r") as f:
    stds = []
    f.visititems(lambda name, obj: stds.append(float(obj[()].std()))
                 if isinstance(obj, h5py.Dataset) else None)
print(len(stds), "datasets")
"""
CHECKPOINT_STD = """
import sys
import tensorflow as tf
reader = tf.train.load_checkpoint(sys.argv[1])
stds = [float(reader.get_tensor(k).std()) for k in reader.get_variable_to_shape_map()]
print(len(stds), "tensors")
"""
COUNT_FILES = """
import sys
import h5py
import numpy as np
from safetensors.numpy import save_file
kind, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
if kind == "checkpoint":  # TensorFlow's own writer: a name-based bundle of n entries
    import tensorflow as tf
    tf.raw_ops.SaveV2(prefix=path, tensor_names=[f"block_{i // 8}/w{i % 8}" for i in range(n)],
                      shape_and_slices=[""] * n,
                      tensors=[rng.standard_normal(4).astype(np.float32) for _ in range(n)])
elif kind == "safetensors":  # one in seven tensors has zero size
    save_file({f"block_{i // 8}/w{i % 8}": rng.standard_normal(0 if i % 7 == 3 else 4)
               .astype(np.float32) for i in range(n)}, path)
elif kind == "npz":
    np.savez(path, **{f"v{i}": rng.standard_normal(4).astype(np.float32) for i in range(n)})
else:  # one dataset in n one-element chunks (a tf.keras save_weights layout)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"d"]
        f.create_group("d").attrs["weight_names"] = [b"d/kernel:0"]
        f["d"].create_dataset("d/kernel:0", data=rng.standard_normal(n).astype(np.float32),
                              chunks=(1,))
"""
COUNT_PEERS = {"safetensors": ("safe_open loop, std of each", SAFE_OPEN_STD, ".safetensors"),
               "npz": ("np.load loop, std of each", NP_LOAD_STD, ".npz"),
               "h5": ("h5py read, std", H5PY_STD, ".h5"),
               "checkpoint": ("tf.train.load_checkpoint loop, std of each", CHECKPOINT_STD,
                              ".ckpt")}


def count_file(kind: str, n: int) -> Path:
    """A file of `n` small variables (h5: one dataset of `n` one-element chunks; checkpoint:
    a prefix whose index is written last), cached."""
    path = OUT / "count" / f"{kind}-{n}{COUNT_PEERS[kind][2]}"
    if kind == "checkpoint":
        if not Path(f"{path}.index").exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-c", COUNT_FILES, kind, str(n), str(path)],
                           check=True, env=quiet_env())
        return path
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(".tmp-" + path.name)
        subprocess.run([sys.executable, "-c", COUNT_FILES, kind, str(n), str(temp)], check=True)
        temp.rename(path)
    return path


def bench_count(args: argparse.Namespace) -> list[dict]:
    """Per-variable overhead: `show --json`, the `show` table and `verify` on files of 1k, 10k
    and 100k small variables, against each format's reader computing every tensor's std in a
    loop, in the same run. Rows carry the per-variable microseconds."""
    rows = []
    for kind in args.count_formats:
        for n in args.counts:
            path = count_file(kind, n)
            files = sorted(path.parent.glob(path.name + ".*")) if kind == "checkpoint" \
                else [path]
            print(f"count {kind} {n}:", file=sys.stderr)
            name, code, _ = COUNT_PEERS[kind]
            peer = measure(name, [sys.executable, "-c", code, str(path)], files, args,
                           env=quiet_env())
            for task, argv, ok in (("show --json", ["show", "--json"], (0,)),
                                   ("show", ["show"], (0,)),
                                   ("verify", ["verify"], (0,))):  # the default formats
                if task == "verify" and n > args.verify_max:
                    continue
                ours = measure_wk(f"weightkit {task}", wk(*argv, str(path)), files, args,
                                  ok_status=ok)
                row = compare(f"{task} {kind} {n:,}", ours, peer, None)
                row["count"] = n
                row["us_per_variable"] = None if ours.wall_s is None else ours.wall_s / n * 1e6
                rows.append(row)
    return rows


def bench_flat(args: argparse.Namespace, main_rows: list[dict]) -> list[dict]:
    """Peak RSS of wdiff and convert at every size of --sizes (one run each)."""
    rows = []
    dst = OUT / "tmp" / "converted.safetensors"
    for size in args.sizes:
        if size == args.size:
            found = {r["ours"]["label"]: r["ours"] for r in main_rows}
            entry = {"size_mib": size}
            for label, m in found.items():
                if label.startswith(("wdiff", "weightkit convert")):
                    entry[label] = m["rss_mib"]
            rows.append(entry)
            continue
        root = corpus(size, args)
        print(f"flat-rss {size} MiB:", file=sys.stderr)
        entry = {"size_mib": size}
        for kind in args.formats:
            a, b, files = pair(root, kind)
            entry[f"wdiff {kind}"] = measure(f"wdiff {kind}", wk("diff", str(a), str(b)), files,
                                             args, repeat=1, ok_status=DIFF_OK,
                                             env=wk_env()).rss_mib
        a, _, files = pair(root, "checkpoint")
        entry["weightkit convert"] = measure("weightkit convert", wk("convert", str(a), str(dst)),
                                             files[:2], args, repeat=1, cleanup=dst,
                                             env=wk_env()).rss_mib
        rows.append(entry)
    return rows


def trend_run(root: Path, steps: int) -> list[Path]:
    """A run of `steps` safetensors checkpoints derived from the corpus (built once)."""
    where = OUT / f"run-{root.name}-{steps}"
    done = where / ".complete"
    paths = [where / f"ckpt-{t:03d}.safetensors" for t in range(steps)]
    if not done.exists():
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        subprocess.run([sys.executable, "-c", MAKE_RUN, str(where), str(steps),
                        str(root / "before.safetensors")], check=True)
        done.touch()
    return paths


def bench_trend(root: Path, args: argparse.Namespace) -> list[dict]:
    """`weightkit trend` over a run against the same numbers from a numpy loop."""
    paths = trend_run(root, args.run_steps)
    print(f"trend ({len(paths)} checkpoints):", file=sys.stderr)
    ours = measure_wk(f"weightkit trend ({len(paths)} ckpts)",
                      wk("trend", *map(str, paths), "--format", "json"), paths, args)
    peer = measure("numpy loop (safetensors.numpy)",
                   [sys.executable, "-c", NUMPY_TREND, *map(str, paths)], paths, args)
    return [compare(f"trend {len(paths)} checkpoints", ours, peer, None)]


def compare(task: str, ours: Measure, peer: Measure, target: float | None) -> dict:
    """One table row: weightkit's wall time as a ratio of the peer's, with the target if any."""
    ratio = ours.wall_s / peer.wall_s if ours.ok and peer.ok and peer.wall_s else None
    met = None
    if target is not None and ratio is not None:
        met = ratio <= target and ours.rss_mib <= RSS_LIMIT_MIB
    return {"task": task, "ours": ours.as_dict(), "peer": peer.as_dict(), "ratio": ratio,
            "target": None if target is None else f"<= {target:g}x, RSS <= {RSS_LIMIT_MIB} MiB",
            "met": met}


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def print_tables(results: dict) -> None:
    from weightkit.cli.text import table

    rows = []
    for r in results["rows"]:
        if "count" in r:
            continue
        ours, peer = r["ours"], r["peer"]
        rows.append([r["task"], _num(ours["wall_s"], ".3f"), _num(ours["cpu_s"], ".3f"),
                     _num(ours["rss_mib"], ".0f"),
                     peer["label"], _num(peer["wall_s"], ".3f"), _num(peer["rss_mib"], ".0f"),
                     _num(r["ratio"], ".2f"), r["target"] or "",
                     {True: "yes", False: "NO", None: ""}[r["met"]]])
    if rows:
        print(f"\nweightkit vs peers, {results['size_mib']} MiB corpus, best of "
              f"{results['repeat']} wall times from a warm page cache; cpu = least user+sys CPU "
              "of the runs; RSS = peak of the child process")
        print(table(rows, ["task", "weightkit s", "cpu s", "RSS MiB", "peer", "peer s",
                           "peer RSS MiB", "ratio", "target", "met"], markdown=True))
    errors = [(r["task"], m["label"], m["error"]) for r in results["rows"]
              for m in (r["ours"], r["peer"]) if m["error"]]
    for task, label, error in dict.fromkeys(errors):
        print(f"  {task}: {label} failed: {error}")
    counted = [r for r in results["rows"] if "count" in r]
    if counted:
        print("\nper-variable overhead: files of small variables (h5: one dataset in that many "
              "one-element chunks); peer = the format's reader computing each tensor's std")
        print(table([[r["task"], _num(r["ours"]["wall_s"], ".3f"), _num(r["ours"]["cpu_s"], ".3f"),
                      _num(r["us_per_variable"], ".1f"), _num(r["ours"]["rss_mib"], ".0f"),
                      r["peer"]["label"], _num(r["peer"]["wall_s"], ".3f"),
                      _num(r["peer"]["cpu_s"], ".3f"), _num(r["ratio"], ".2f"),
                      _num(r["ours"]["cpu_s"] / r["peer"]["cpu_s"]
                           if r["ours"]["cpu_s"] and r["peer"]["cpu_s"] else None, ".2f")]
                     for r in counted],
                    ["task", "weightkit s", "cpu s", "us/variable", "RSS MiB", "peer", "peer s",
                     "peer cpu s", "ratio", "cpu ratio"], markdown=True))
    show = next((r for r in results["rows"] if r["task"].startswith("show tiny")), None)
    if show is not None:
        print(f"  show imports of tensorflow/keras: {show['no_tensorflow_import']}")
    if results["flat_rss"]:
        labels = sorted({k for e in results["flat_rss"] for k in e if k != "size_mib"})
        print("\npeak RSS (MiB) by corpus size")
        print(table([[str(e["size_mib"]), *(_num(e.get(k), ".0f") for k in labels)]
                     for e in results["flat_rss"]], ["size MiB", *labels], markdown=True))
    m = results["machine"]
    print(f"\nmachine: {m['cpu']}, {m['nproc']} cores, {m['mem_gib']} GiB; "
          f"load average {m['loadavg_start']} at start, {m['loadavg_end']} at end")


def machine() -> dict:
    """Facts about the machine and the software measured."""
    info = {"nproc": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "loadavg_start": _loadavg()}
    try:
        cpu = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
               if line.startswith("model name")]
        info["cpu"] = cpu[0] if cpu else platform.processor()
        mem = next(line for line in open("/proc/meminfo") if line.startswith("MemTotal"))
        info["mem_gib"] = round(int(mem.split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        info.setdefault("cpu", platform.processor())
        info.setdefault("mem_gib", None)
    versions = {}
    for package in ("weightkit", "numpy", "h5py", "safetensors", "tensorflow-cpu", "tensorflow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    h5 = subprocess.run([shutil.which("h5diff") or "h5diff", "--version"], capture_output=True,
                        text=True) if shutil.which("h5diff") else None
    versions["h5diff"] = h5.stdout.strip().split()[-1] if h5 and h5.stdout.strip() else None
    info["versions"] = versions
    git = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                         capture_output=True, text=True)
    info["weightkit_commit"] = git.stdout.strip() or None
    return info


def _loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="corpus size in MiB (1024)")
    parser.add_argument("--sizes", help="sizes in MiB for the peak-RSS flatness check, "
                        "comma-separated (default: SIZE/4 and SIZE); 4096 needs ~10 GiB RAM")
    parser.add_argument("--repeat", type=int, default=3, help="runs per command, best kept (3)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run (1800)")
    parser.add_argument("--run-steps", type=int, default=10,
                        help="checkpoints in the run that `trend` reads (10)")
    parser.add_argument("--only", action="append",
                        choices=("diff", "convert", "show", "flat", "trend", "count"),
                        help="run only these tasks (repeatable)")
    parser.add_argument("--counts", default="1000,10000,100000",
                        help="variable counts of the per-variable overhead task (count)")
    parser.add_argument("--count-formats", default="safetensors,npz,h5,checkpoint",
                        help="formats of the count task (safetensors,npz,h5,checkpoint)")
    parser.add_argument("--verify-max", type=int, default=100000,
                        help="largest count verify is measured at")
    parser.add_argument("--formats", default="h5,safetensors,checkpoint",
                        help="diff pairs to measure (h5,safetensors,checkpoint)")
    args = parser.parse_args(argv)
    args.sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
                  else sorted({max(1, args.size // 4), args.size}))
    args.formats = [f for f in args.formats.split(",") if f]
    args.only = set(args.only or ("diff", "convert", "show", "flat", "trend", "count"))
    args.counts = [int(n) for n in args.counts.split(",") if n]
    args.count_formats = [f for f in args.count_formats.split(",") if f]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.h5diff = shutil.which("h5diff")
    if "diff" in args.only and "h5" in args.formats and not args.h5diff:
        sys.exit("bench: h5diff not found; install it with `apt-get install -y hdf5-tools` "
                 "(Debian/Ubuntu) or `brew install hdf5` (macOS), or leave it out with "
                 "--formats safetensors,checkpoint")
    if not (BIN / "weightkit").exists():
        sys.exit(f"bench: {BIN / 'weightkit'} not found; run `make setup` first")
    OUT.mkdir(parents=True, exist_ok=True)
    global WK_BIN
    WK_BIN = install_weightkit()
    started = dt.datetime.now(dt.timezone.utc)
    info = machine()
    rows: list[dict] = []
    if "count" in args.only:
        rows += bench_count(args)
    root = corpus(args.size, args) if args.only - {"count"} else None
    if "diff" in args.only:
        rows += bench_diffs(root, args)
    if "convert" in args.only:
        rows += bench_convert(root, args)
    if "show" in args.only:
        rows += bench_show(args)[0]
    if "trend" in args.only:
        rows += bench_trend(root, args)
    flat = bench_flat(args, rows) if "flat" in args.only else []
    info["loadavg_end"] = _loadavg()
    results = {"date": started.isoformat(timespec="seconds"), "size_mib": args.size,
               "repeat": args.repeat, "timing": f"best wall of {args.repeat} runs after warming "
               "the page cache (weightkit: after one untimed run, byte code cached as after a "
               "pip install); RSS is the largest ru_maxrss of the runs",
               "machine": info, "rows": rows, "flat_rss": flat}
    path = OUT / f"results-{started.strftime('%Y-%m-%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print_tables(results)
    print(f"\nresults: {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
