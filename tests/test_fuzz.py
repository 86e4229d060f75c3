"""Fuzzing every reader (issue 7.6): only weightkit's own errors may escape.

Two kinds:
- byte mutation: valid small files (from make_crafted) get bit flips, interesting integers,
  truncations, inserted, deleted and duplicated bytes; each mutant is loaded and every tensor read
  in full. Each format is fuzzed in a subprocess (this file run as a script) with an address
  space limit, and each mutant is read in a forked child with an alarm, so that a crash or an
  endless loop in a C library (libhdf5) or a huge allocation is a finding rather than a dead
  test run. Findings are saved for reproduction.
- property tests (hypothesis): random safetensors headers and .npy headers over random data.

Bounded for CI (about 4 s per format plus the property tests). For a longer run:
`make fuzz` or `WEIGHTKIT_FUZZ_SECONDS=300 pytest tests/test_fuzz.py` (seconds per format; the
property tests then run 20x more examples).
"""
from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

FUZZ_SECONDS = float(os.environ.get("WEIGHTKIT_FUZZ_SECONDS", "4"))
MIN_RUNS = 12  # mutations tried whatever the time (a busy CI machine gets fewer per second)
LONG = FUZZ_SECONDS > 30
EXAMPLES = 3000 if LONG else 150
PER_INPUT_SECONDS = 5
ADDRESS_SPACE = 3 << 30
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 31, 1 << 32,
               1 << 40, (1 << 63) - 1, 1 << 63, (1 << 64) - 1)


# ---------------------------------------------------------------------------------------------
# seeds: (format, {file name: bytes}, the file to mutate, the path to load)

def _h5_bytes(build) -> bytes:
    import h5py
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.h5")
        with h5py.File(path, "w") as f:
            build(f)
        return Path(path).read_bytes()


def seeds() -> dict[str, tuple[str, dict[str, bytes], list[str], str]]:
    """Per target: (format, files, names worth mutating, what to load)."""
    import make_crafted as mc
    out = {}
    out["safetensors"] = ("safetensors", {"x.safetensors": mc.safetensors_bytes(
        mc._st_header(), mc.ST_DATA)}, ["x.safetensors"], "x.safetensors")
    members = [("dense/kernel.npy", mc.npy_bytes(mc.KERNEL)), ("dense/bias.npy", mc.npy_bytes(mc.BIAS))]
    out["npz"] = ("npz", {"x.npz": mc.zip_bytes(members)}, ["x.npz"], "x.npz")
    out["npz-deflated"] = ("npz", {"x.npz": mc.zip_bytes(members, deflate=True)}, ["x.npz"], "x.npz")
    tf_keras = _h5_bytes(mc._tf_keras_weights)
    keras3 = _h5_bytes(mc._keras3_weights)
    out["keras-h5"] = ("keras-h5", {"x.h5": tf_keras}, ["x.h5"], "x.h5")
    out["keras-weights-h5"] = ("keras-weights-h5", {"x.weights.h5": keras3}, ["x.weights.h5"],
                               "x.weights.h5")
    out["keras"] = ("keras", {"x.keras": mc.zip_bytes([
        ("metadata.json", json.dumps(mc.KERAS_METADATA).encode()),
        ("config.json", json.dumps(mc.KERAS_CONFIG).encode()),
        ("model.weights.h5", keras3)])}, ["x.keras"], "x.keras")
    with tempfile.TemporaryDirectory() as tmp:
        mc.checkpoint_files(Path(tmp) / "model", mc.CKPT_TENSORS)
        files = {p.name: p.read_bytes() for p in Path(tmp).iterdir()}
    out["tf-checkpoint"] = ("tf-checkpoint", files, ["model.index", "model.index",
                                                     "model.data-00000-of-00001"], "model")
    out["tflite"] = ("tflite", {"x.tflite": mc.tflite_bytes(mc.TFL_BASE)}, ["x.tflite"],
                     "x.tflite")
    # a model with operators: a quantized weight, a sparse (CSR) one feeding DENSIFY
    sparse = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    out["tflite-ops"] = ("tflite", {"x.tflite": mc.tflite_bytes([
        {"name": "in", "shape": [1, 3], "type": "float32", "buffer": 0},
        {"name": "fc/kernel", "shape": [4, 3], "type": "int8", "data": bytes(range(12)),
         "quantization": {"scale": [0.5, 0.25, 1.0, 2.0], "zero_point": [0, 1, 0, -1]}},
        {"name": "out", "shape": [1, 4], "type": "float32", "buffer": 0},
        {"name": "sparse", "shape": [3, 4], "type": "float32", "data": sparse.tobytes(),
         "sparsity": {"traversal_order": [0, 1], "dims": [3, ([0, 1, 3, 4], [2, 0, 3, 1])]}},
        {"name": "dense", "shape": [3, 4], "type": "float32", "buffer": 0}],
        operators=[(9, [0, 1, -1], [2], 1), (124, [3], [4], 1)])}, ["x.tflite"], "x.tflite")
    strings = b"".join(len(s).to_bytes(4, "little") + s for s in (b"ab", b"", b"h\xc3\xa9"))
    tfjs_weights = mc.TFJS_WEIGHTS + [
        {"name": "q", "shape": [4], "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "s", "shape": [3], "dtype": "string"}]
    tfjs_doc = json.dumps({"format": "layers-model", "weightsManifest": [
        {"paths": ["a.bin", "b.bin"], "weights": tfjs_weights}]}).encode()
    data = mc.TFJS_DATA + bytes([0, 1, 2, 255]) + strings
    out["tfjs"] = ("tfjs", {"model.json": tfjs_doc, "a.bin": data[:23], "b.bin": data[23:]},
                   ["model.json", "a.bin", "b.bin"], ".")
    graph = (mc.const_node("dense/kernel", 1, (4, 3), content=mc.KERNEL.tobytes())
             + mc.const_node("half", 19, (), typed=mc._field(13, mc._varint(15872)))
             + mc.const_node("broadcast", 1, (8,), typed=mc._field(5, b"\0\0\xc0\x3f"))
             + mc.const_node("words", 7, (2,), typed=mc._field(8, b"ab") + mc._field(8, b""))
             + mc.const_node("unpacked", 1, (3,), typed=b"\x2d\0\0\x80\x3f" * 3)
             + mc.const_node("ints", 3, (2, 2), typed=mc._field(7, b"\x01\x7f\x80\x01")))
    out["tf-graphdef"] = ("tf-graphdef", {"x.pb": graph}, ["x.pb"], "x.pb")
    # exports read against their sources (wdiff SOURCE EXPORT --dequantize): diff/export.py
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    out["tflite-export"] = ("export:tlconv--keras3.keras", {
        "x.tflite": (fixtures / "tlconv--keras3-int8.tflite").read_bytes()}, ["x.tflite"],
        "x.tflite")
    graph_model = fixtures / "conv--tfjs-graph"
    out["tfjs-export"] = ("export:conv--tfkeras-before-full.h5", {
        p.name: p.read_bytes() for p in graph_model.iterdir()}, ["model.json"] + sorted(
        p.name for p in graph_model.iterdir() if p.suffix == ".bin"), ".")
    return out


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One to three random mutations; returns the mutant and what was done."""
    out = bytearray(data)
    done = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        n = len(out)
        kind = rng.choice(("flip", "flip", "byte", "int", "truncate", "insert", "delete", "dup"))
        at = rng.randrange(n) if n else 0
        if kind == "flip" and n:
            out[at] ^= 1 << rng.randrange(8)
        elif kind == "byte" and n:
            out[at] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif kind == "int" and n >= 8:
            size, fmt = rng.choice(((1, "<B"), (2, "<H"), (4, "<I"), (8, "<Q")))
            at = min(at, n - size)
            value = rng.choice(INTERESTING + (n, n - 1, n + 1, rng.randrange(1 << 64)))
            struct.pack_into(fmt, out, at, value & ((1 << (8 * size)) - 1))
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif kind == "delete":
            del out[at:at + rng.randint(1, 16)]
        elif kind == "dup" and n:
            span = out[at:at + rng.randint(1, 64)]
            where = rng.randrange(n)
            out[where:where] = span
        done.append(f"{kind}@{at}")
    return bytes(out), " ".join(done)


def read_everything(path: str, fmt: str) -> None:
    import weightkit
    from weightkit.converters.quant import dequantize
    if fmt.startswith("export:"):  # an export against its source, both ways
        source = Path(__file__).resolve().parent.parent / "fixtures" / fmt.split(":", 1)[1]
        weightkit.diff(source, path, dequantize=True)
        weightkit.diff(path, source)
        return
    with weightkit.load(path, fmt) as store:
        for name in store:
            tensor = store[name]
            for chunk in tensor.iter_chunks():
                assert chunk.dtype == tensor.dtype
            _ = tensor.meta, tensor.shape, tensor.role
        for tensor in dequantize(store).values():  # --dequantize: parameters from the file
            for chunk in tensor.iter_chunks():
                assert chunk.dtype == tensor.dtype


def _judge(path: str, fmt: str, report: int) -> None:
    """In a forked child: read everything; write a finding to fd `report` unless the outcome is
    success or a weightkit error. A hang in C code ends with the alarm's default action."""
    from weightkit import WeightsError
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(PER_INPUT_SECONDS)
    finding = None
    try:
        read_everything(path, fmt)
    except WeightsError:
        pass
    except BaseException as exc:  # noqa: BLE001 - every other type is a finding
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if "/converters/" in f.filename or "/cli/" in f.filename]
        at = (ours or frames)[-1] if frames else None
        finding = {"where": f"{at.filename}:{at.lineno}" if at else "?",
                   "error": f"{type(exc).__qualname__}: {str(exc)[:300]}"}
    os.write(report, json.dumps(finding).encode())
    os._exit(0)


def _run_one(path: str, fmt: str) -> dict | None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _judge(path, fmt, write_end)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        answer = f.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        what = f"no answer within {PER_INPUT_SECONDS} s" if sig == "SIGALRM" else "crashed"
        return {"where": sig, "error": f"{what} ({sig})"}
    return json.loads(answer) if answer else {"where": "?", "error": f"exit status {status}"}


def worker(target: str, seed: int, seconds: float, out_dir: str) -> None:
    """Fuzz one target for `seconds`, each mutant read in a forked child; print a JSON report
    and save the mutants behind findings under out_dir."""
    import resource

    import weightkit  # noqa: F401 - imported before the forks
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    fmt, files, mutable, load = seeds()[target]
    rng = random.Random(seed)
    work = Path(out_dir) / f"work-{target}"
    work.mkdir(parents=True, exist_ok=True)
    findings, signatures, runs = [], set(), 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or runs < MIN_RUNS:  # a loaded machine still fuzzes
        victim = rng.choice(mutable)
        mutant, how = mutate(files[victim], rng)
        for name, data in files.items():
            (work / name).write_bytes(mutant if name == victim else data)
        runs += 1
        finding = _run_one(str(work / load), fmt)
        if finding is None:
            continue
        signature = (finding["error"].split(":")[0], finding["where"])
        if signature not in signatures and len(findings) < 20:
            signatures.add(signature)
            saved = Path(out_dir) / f"finding-{target}-{len(findings)}-{victim}"
            saved.write_bytes(mutant)
            findings.append({"mutation": how, "file": str(saved), **finding})
    print(json.dumps({"target": target, "runs": runs, "findings": findings}))


# ---------------------------------------------------------------------------------------------
# tests

TARGETS = ("safetensors", "npz", "npz-deflated", "keras-h5", "keras-weights-h5", "keras",
           "tf-checkpoint", "tflite", "tflite-ops", "tfjs", "tf-graphdef", "tflite-export",
           "tfjs-export")


def landed(fmt: str) -> bool:
    from weightkit.converters.registry import FORMATS
    return fmt in FORMATS


@pytest.mark.parametrize("target", TARGETS)
def test_byte_mutations_raise_only_weightkit_errors(target, tmp_path):
    fmt = {"npz-deflated": "npz", "tflite-ops": "tflite", "tflite-export": "tflite",
           "tfjs-export": "tfjs"}.get(target, target)
    if not landed(fmt):
        pytest.skip(f"the {fmt} reader has not landed yet")
    seed = int(os.environ.get("WEIGHTKIT_FUZZ_SEED", "0")) or random.SystemRandom().randrange(1 << 30)
    done = subprocess.run([sys.executable, __file__, target, str(seed), str(FUZZ_SECONDS),
                           str(tmp_path)], capture_output=True, text=True,
                          timeout=FUZZ_SECONDS + 120, cwd=Path(__file__).parent)
    assert done.returncode == 0, (f"the fuzzer died (seed {seed}, exit {done.returncode}):\n"
                                  f"{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["runs"] >= MIN_RUNS
    assert not report["findings"], (
        f"seed {seed} (WEIGHTKIT_FUZZ_SEED={seed} reproduces): "
        + json.dumps(report["findings"], indent=1))


# Property tests --------------------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

ST_DTYPES = ("F32", "F16", "BF16", "F64", "I8", "U8", "I16", "I32", "I64", "BOOL", "F8_E4M3",
             "F8_E5M2", "C64", "F4", "F6_E2M3", "X", "", "f32")
dims = st.one_of(st.integers(0, 8), st.integers(-3, 1 << 70))
entries = st.fixed_dictionaries({
    "dtype": st.one_of(st.sampled_from(ST_DTYPES), st.integers(), st.none()),
    "shape": st.one_of(st.lists(dims, max_size=4), st.text(max_size=3), st.none()),
    "data_offsets": st.one_of(st.tuples(st.integers(-8, 80), st.integers(-8, 80)).map(list),
                              st.lists(st.integers(0, 80), max_size=3), st.none()),
}, optional={"extra": st.integers()})
names = st.text(min_size=0, max_size=12)
headers = st.dictionaries(names, entries, max_size=4).flatmap(
    lambda h: st.one_of(st.just(h), st.dictionaries(st.text(max_size=5), st.one_of(
        st.text(max_size=5), st.integers()), max_size=2).map(lambda m: {**h, "__metadata__": m})))


def _assert_reads_or_refuses(path: Path, fmt: str) -> None:
    from weightkit import WeightsError
    try:
        read_everything(str(path), fmt)
    except WeightsError:
        return
    size = path.stat().st_size
    import weightkit
    with weightkit.load(str(path), fmt) as store:
        declared = sum(store[n].nbytes for n in store)
    assert declared <= size, f"accepted {declared} bytes of tensors from a {size}-byte file"


@SETTINGS
@given(header=headers, data=st.binary(max_size=96), pad=st.integers(0, 9))
def test_random_safetensors_headers(header, data, pad, tmp_path_factory):
    if not landed("safetensors"):
        pytest.skip("the safetensors reader has not landed yet")
    raw = json.dumps(header).encode() + b" " * pad
    path = tmp_path_factory.mktemp("st") / "x.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    _assert_reads_or_refuses(path, "safetensors")


NPY_DESCRS = ("<f4", ">f4", "<f2", "|b1", "|u1", "<i8", "<c8", "|O", "|V2", "<U3", "|S4", "<M8",
              "<m8[s]", "bogus", "<f16")
npy_headers = st.fixed_dictionaries({
    "descr": st.one_of(st.sampled_from(NPY_DESCRS), st.integers()),
    "fortran_order": st.one_of(st.booleans(), st.integers(0, 2)),
    "shape": st.one_of(st.lists(dims, max_size=3).map(tuple), st.integers(-2, 5)),
})


@SETTINGS
@given(header=npy_headers, data=st.binary(max_size=96), version=st.sampled_from([(1, 0), (2, 0), (3, 0)]),
       deflate=st.booleans())
def test_random_npy_headers(header, data, version, deflate, tmp_path_factory):
    if not landed("npz"):
        pytest.skip("the npz reader has not landed yet")
    import make_crafted as mc
    member = mc.npy_bytes(header=repr(header), data=data, version=version)
    path = tmp_path_factory.mktemp("npz") / "x.npz"
    path.write_bytes(mc.zip_bytes([("a.npy", member), ("b.npy", mc.npy_bytes(mc.BIAS))],
                                  deflate=deflate))
    _assert_reads_or_refuses(path, "npz")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    worker(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
