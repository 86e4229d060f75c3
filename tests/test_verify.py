"""verify: bitwise store comparison, round-trip statuses and exit codes (issue 5 item 1)."""
from __future__ import annotations

import json
import os
import sys

import ml_dtypes
import numpy as np
import pytest

import weightkit
from weightkit import Store, Tensor
from weightkit.cli.main import main
from weightkit.diffing import verify as verify_module
from weightkit.converters.store import read_many
from weightkit.diffing.verify import compare, unequal_elements, verify


def sample_store() -> Store:
    rng = np.random.default_rng(5)
    return Store({
        "dense/kernel": Tensor.from_array(rng.normal(size=(8, 4)).astype(np.float32),
                                          {"key": "dense/kernel", "role": "weight"}),
        "dense/bias": Tensor.from_array(np.array([np.nan, -0.0, 1.0, np.inf], np.float32)),
        "bf": Tensor.from_array(rng.normal(size=(3,)).astype(ml_dtypes.bfloat16)),
        "empty": Tensor.from_array(np.zeros((0, 3), np.int8)),
        "step": Tensor.from_array(np.int64(9), {"role": "counter"}),
    }, format="memory", meta={"origin": {"a": [1, 2]}})


@pytest.fixture
def safetensors_file(tmp_path):
    path = tmp_path / "w.safetensors"
    weightkit.save(sample_store(), path, "safetensors")
    return path


def test_compare_identical_and_every_kind_of_difference():
    a = sample_store()
    assert compare(a, sample_store()) == []
    b = dict(a.items())
    nan_payload = np.array([np.nan, 0.0, 1.0, np.inf], np.float32)
    nan_payload.view(np.uint32)[0] |= 1  # another NaN
    b["dense/bias"] = Tensor.from_array(nan_payload)  # and +0.0 where A has -0.0
    b["bf"] = Tensor.from_array(a["bf"].read().astype(np.float32))
    b["step"] = a["step"].with_meta(role="optimizer", added="by a reader")
    b["dense/kernel"] = a["dense/kernel"].with_meta(key="other")
    del b["empty"]
    b["new"] = Tensor.from_array(np.ones(2))
    reordered = {"dense/bias": b.pop("dense/bias"), **b}
    found = compare(a, Store(reordered, meta={"origin": {"a": [1, 3]}, "reader": 1}))
    assert found == ["missing: empty", "unexpected: new", "order differs",
                     "dense/kernel: meta differs: key",
                     "dense/bias: 2 of 4 elements differ in their bytes",
                     "bf: dtype bfloat16 became float32", "step: role counter became optimizer",
                     "store metadata differs: origin"]


def test_unequal_elements_counts_bytes_in_chunks():
    x = np.arange(1000, dtype=np.float64)
    y = x.copy()
    y[[3, 500, 999]] = -1
    assert unequal_elements(Tensor.from_array(x), Tensor.from_array(y), max_bytes=64) == 3
    s = np.array([b"ab", b"", b"c"], dtype=object)
    t = np.array([b"ab", b"x", b"c"], dtype=object)
    assert unequal_elements(Tensor.from_array(s), Tensor.from_array(t)) == 1


@pytest.mark.parametrize("dtype", [np.complex128, np.float16, ml_dtypes.bfloat16, np.bool_, "V3"])
def test_unequal_elements_sees_every_byte(dtype):
    x = np.zeros(42, np.uint8).view(dtype) if dtype == "V3" else np.zeros(40, dtype)
    raw = np.frombuffer(x.tobytes(), np.uint8).copy()
    raw[[0, x.itemsize * 7 + x.itemsize - 1, raw.size - 1]] = 1  # first and last byte of elements
    y = raw.view(x.dtype)
    assert unequal_elements(Tensor.from_array(x), Tensor.from_array(y), max_bytes=48) == 3
    negative_zero = np.array([0.0, -0.0, np.nan])
    assert unequal_elements(Tensor.from_array(negative_zero),
                            Tensor.from_array(np.array([-0.0, -0.0, -np.nan]))) == 2


def test_round_trip_through_safetensors_is_identical(safetensors_file):
    with weightkit.load(safetensors_file, "safetensors") as store:
        (trip,) = verify(store, ["safetensors"])
    assert (trip.status, trip.lost, trip.differences, trip.error) == (
        "identical", [], [], None)


def test_a_writer_bug_is_reported_as_different(safetensors_file, monkeypatch):
    real_load = verify_module.load

    def corrupting_load(path, format=None):
        store = real_load(path, format)
        tensors = dict(store.items())
        tensors["dense/kernel"] = store["dense/kernel"].map(lambda a: a + np.float32(1e-6))
        return store.replace(tensors)

    monkeypatch.setattr(verify_module, "load", corrupting_load)
    with weightkit.load(safetensors_file, "safetensors") as store:
        (trip,) = verify(store, ["safetensors"])
    assert trip.status == "different"
    assert trip.differences == ["dense/kernel: 32 of 32 elements differ in their bytes"]


def test_a_failing_conversion_is_reported_with_its_error(safetensors_file, monkeypatch, capsys):
    def failing_save(*args, **kwargs):
        raise weightkit.CorruptFileError("the writer broke")

    monkeypatch.setattr(verify_module, "save", failing_save)
    assert main(["verify", str(safetensors_file), "--from", "safetensors", "--via", "safetensors", "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "error"
    assert report["trips"][0]["status"] == "failed"
    assert report["trips"][0]["error"] == "the writer broke"  # the message, as errors print

    def broken_save(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(verify_module, "save", broken_save)
    assert main(["verify", str(safetensors_file), "--via", "safetensors", "--json"]) == 2
    trip = json.loads(capsys.readouterr().out)["trips"][0]
    assert trip["error"] == "unexpected RuntimeError: a bug"  # not ours: the kind, as main says


def test_a_default_format_refusing_the_store_is_skipped(safetensors_file, monkeypatch, capsys):
    """A default target whose writer refuses the store as a request (UsageError: a SavedModel
    needs a graph) is skipped; named with --via, the same refusal is a failure."""
    real_save = verify_module.save

    def picky_save(store, path, format=None, **kwargs):
        if format == "npz":
            raise weightkit.UsageError("npz needs a template here")
        return real_save(store, path, format, **kwargs)

    monkeypatch.setattr(verify_module, "save", picky_save)
    monkeypatch.setattr(verify_module, "candidates", lambda store: ["safetensors", "npz"])
    assert main(["verify", str(safetensors_file), "--from", "safetensors", "--json"]) == 0
    trips = {t["via"]: t for t in json.loads(capsys.readouterr().out)["trips"]}
    assert trips["npz"]["status"] == "skipped"
    assert trips["npz"]["error"] == "npz needs a template here"  # no type, no temporary path
    assert trips["safetensors"]["status"] == "identical"
    assert main(["verify", str(safetensors_file), "--from", "safetensors", "--via", "npz"]) == 2


def test_the_way_back_may_take_the_original_as_template(safetensors_file, monkeypatch):
    real_save = verify_module.save
    templates = []

    def needs_template(store, path, format=None, *, like=None, **kwargs):
        if like is None and os.path.basename(os.path.dirname(path)) == "back":
            raise weightkit.UsageError("give --like")
        templates.append(like)
        return real_save(store, path, format, **kwargs)  # (safetensors takes no template)

    monkeypatch.setattr(verify_module, "save", needs_template)
    with weightkit.load(safetensors_file, "safetensors") as store:
        (trip,) = verify(store, ["npz"])
        assert templates == [None, store]
    assert trip.status == "identical"
    assert trip.notes == ["written back to safetensors with the original as template"]


def test_declared_losses_make_a_pair_lossy(safetensors_file, monkeypatch, capsys):
    real = verify_module.plan

    def moon(store, fmt, like=None):
        planned = real(store, fmt, like)
        planned.losses = ["the moon"]
        return planned
    monkeypatch.setattr(verify_module, "plan", moon)
    assert main(["verify", str(safetensors_file), "--from", "safetensors", "--via", "safetensors"]) == 1
    out = capsys.readouterr().out
    assert "lossy" in out and "safetensors: the moon" in out
    # --quiet: the README's "--quiet silences it" for every command that reads a whole model
    args = ["verify", str(safetensors_file), "--via", "safetensors", "--quiet"]
    assert main(args) == 1 and capsys.readouterr() == ("", "")
    assert main([*args, "--json"]) == 1 and capsys.readouterr() == ("", "")


def test_a_plain_safetensors_file_through_a_checkpoint_is_lossy_not_different(tmp_path):
    """A file the safetensors library wrote (no weightkit metadata) lists `l10` before `l2`; a
    checkpoint without an object graph gives them back by number: the order is declared lost."""
    from safetensors.numpy import save_file
    path = tmp_path / "plain.safetensors"
    save_file({"l2": np.ones(2, np.float32), "l10": np.zeros(3, np.float32)}, str(path))
    with weightkit.load(path) as store:
        assert list(store) == ["l10", "l2"]
        assert any("order" in text for text in weightkit.losses(store, "tf-checkpoint"))
        (trip,) = verify(store, ["tf-checkpoint"])
    assert trip.status == "lossy" and not trip.error


def test_cli_exit_zero_and_table(safetensors_file, capsys):
    assert main(["verify", str(safetensors_file), "--from", "safetensors", "--via", "safetensors"]) == 0
    out = capsys.readouterr().out
    assert "safetensors -> safetensors" in out and "identical" in out


def test_default_vias_are_the_formats_that_hold_the_store(safetensors_file):
    with weightkit.load(safetensors_file, "safetensors") as store:
        vias = verify_module.candidates(store)
    assert vias[0] == "safetensors"
    for name in vias:
        assert weightkit.losses(store, name) == []


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_every_default_round_trip_is_identical(tmp_path, fmt, capsys):
    """Strings, bfloat16, NaN and -0.0, zero-size and scalar through each container and back."""
    store = sample_store()
    tensors = dict(store.items())
    tensors["text"] = Tensor.from_array(np.array([b"a", b"", b"\xff\x00"], dtype=object))
    path = tmp_path / f"w.{fmt}"
    weightkit.save(store.replace(tensors), path, fmt)
    assert main(["verify", str(path), "--from", fmt, "--via", "npz", "--via", "safetensors",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {t["via"] for t in report["trips"]} == {"npz", "safetensors"}
    assert [t["status"] for t in report["trips"]] == ["identical"] * len(report["trips"])


def test_verify_leaves_no_temporary_files(safetensors_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    with weightkit.load(safetensors_file, "safetensors") as store:
        verify(store, ["safetensors"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_load_refuses_non_framework_formats(safetensors_file, capsys):
    assert main(["verify", str(safetensors_file), "--from", "safetensors", "--load"]) == 2
    assert "expected a framework format" in capsys.readouterr().err


# --- the framework check (verify --load) ------------------------------------------------------

def _oracle(tmp_path, jobs: list[dict]) -> list[dict]:
    import subprocess

    jobs_path, results_path = tmp_path / "jobs.json", tmp_path / "results.json"
    jobs_path.write_text(json.dumps(jobs))
    subprocess.run([sys.executable, "-m", "weightkit.diffing.oracle", str(jobs_path),
                    str(results_path)], check=True, timeout=600)
    return json.loads(results_path.read_text())


@pytest.mark.tensorflow
def test_oracle_tells_identical_from_different_files(tmp_path):
    """The framework loads pairs of files written by itself: the same weights, then one
    weight changed; the oracle must tell them apart for every kind it checks."""
    import keras
    import tensorflow as tf
    import tf_keras

    def nudge(model):
        weights = model.get_weights()
        weights[0].reshape(-1)[0] += np.float32(0.5)
        model.set_weights(weights)

    keras.utils.set_random_seed(0)
    tf_keras.utils.set_random_seed(0)
    k3 = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    tk = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3, name="d")])
    module = tf.Module()
    module.v = tf.Variable(np.arange(4, dtype=np.float32))
    module.f = tf.function(lambda x: x * module.v,
                           input_signature=[tf.TensorSpec([4], tf.float32)])
    paths = {}
    for variant in ("a", "b", "c"):
        if variant == "c":
            nudge(k3), nudge(tk), module.v.assign_add(np.float32([1, 0, 0, 0]))
        paths["keras", variant] = str(tmp_path / f"k3-{variant}.keras")
        k3.save(paths["keras", variant])
        paths["keras-h5", variant] = str(tmp_path / f"tk-{variant}.h5")
        tk.save(paths["keras-h5", variant])
        paths["tf-checkpoint", variant] = tf.train.Checkpoint(v=module.v).write(
            str(tmp_path / f"ck-{variant}"))
        paths["saved-model", variant] = str(tmp_path / f"sm-{variant}")
        tf.saved_model.save(module, paths["saved-model", variant],
                            signatures={"serving_default": module.f})
    k3.save_weights(str(tmp_path / "w.weights.h5"))
    kinds = ["keras", "keras-h5", "tf-checkpoint", "saved-model"]
    jobs = [{"format": kind, "original": paths[kind, "a"], "copy": paths[kind, other]}
            for other in ("b", "c") for kind in kinds]
    jobs.append({"format": "keras-weights-h5", "original": str(tmp_path / "w.weights.h5"),
                 "copy": str(tmp_path / "w.weights.h5")})
    results = _oracle(tmp_path, jobs)
    statuses = [r["status"] for r in results]
    assert statuses == ["identical"] * 4 + ["different"] * 4 + ["skipped"], results
    assert "weight" in results[4]["detail"] and "output" in results[4]["detail"]
    assert "output" in results[7]["detail"]


# --- the committed fixtures -------------------------------------------------------------------

def _fixture_entries() -> list[dict]:
    from fixtures_lib import manifest
    return list(manifest().values())


@pytest.mark.parametrize("entry", _fixture_entries(), ids=lambda e: e["path"])
def test_every_fixture_round_trips_identically_through_the_carriers(entry, capsys):
    """Each framework file, through its own format and through safetensors and npz (which
    carry everything a format needs in their metadata), comes back bit for bit."""
    from fixtures_lib import fixture
    vias = [entry["format"], "safetensors", "npz"]
    status = main(["verify", str(fixture(entry)), "--json",
                   *[arg for via in vias for arg in ("--via", via)]])
    report = json.loads(capsys.readouterr().out)
    assert {t["via"]: t["status"] for t in report["trips"]} == dict.fromkeys(vias, "identical")
    assert status == 0


LOAD_CASES = ["mlp--keras3.keras", "conv--keras3-before.keras", "bf16mixed--keras3.keras",
              "mlp--tfkeras-full.h5", "lstm--tfkeras-full.h5", "mlp--keras3-legacy.h5",
              "mlp--tfkeras.ckpt", "conv--keras3-after.ckpt", "tf1--partitioned.ckpt",
              "mlp--keras3-export", "mlp--tfkeras-savedmodel", "mlp--keras3.weights.h5"]


@pytest.mark.tensorflow
@pytest.mark.parametrize("name", LOAD_CASES)
def test_framework_loads_every_round_tripped_fixture_bit_identically(name, capsys):
    from fixtures_lib import fixture, manifest
    entry = manifest()[name]
    status = main(["verify", str(fixture(entry)), "--load", "--json", "--via", entry["format"],
                   "--via", "safetensors"])
    report = json.loads(capsys.readouterr().out)
    loads = [t["load"] for t in report["trips"]]
    expected = "skipped" if entry["format"] == "keras-weights-h5" else "identical"
    assert [load["status"] for load in loads] == [expected, expected], loads
    assert status == 0


def test_verify_and_edit_never_import_a_framework(tmp_path):
    """Without --load, verify and edit (dry run included) on Keras and checkpoint fixtures run
    with no TensorFlow, Keras or tf_keras module imported."""
    import subprocess
    from fixtures_lib import fixture, manifest

    keras_file = fixture(manifest()["mlp--keras3.keras"])
    checkpoint = fixture(manifest()["mlp--tfkeras.ckpt"])
    code = f"""
import sys
from weightkit.cli.main import main
runs = [["verify", {str(keras_file)!r}], ["verify", {str(checkpoint)!r}],
        ["edit", {str(keras_file)!r}, {str(tmp_path / 'e.keras')!r}, "--scale", "d1/0=2"],
        ["edit", {str(checkpoint)!r}, {str(tmp_path / 'e.ckpt')!r}, "--prune", "*kernel=0.5",
         "--dry-run"]]
codes = [main(args) for args in runs]
print(codes, sorted({{m.split('.')[0] for m in sys.modules}} & {{"tensorflow", "keras", "tf_keras"}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.strip().splitlines()[-1].endswith("[]"), done.stdout + done.stderr
    assert (tmp_path / "e.keras").exists()


def test_an_interrupt_wrapped_by_python_is_still_an_interrupt(monkeypatch, capsys):
    """SIGTERM while a class is made (an import under way) reaches the CLI as a RuntimeError
    from `__set_name__` whose cause is the KeyboardInterrupt: still 'interrupted', exit 130."""
    from weightkit.cli import main as cli_main, verify as cli_verify

    def run(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise RuntimeError("Error calling __set_name__ on 'Field' instance") from exc
    monkeypatch.setattr(cli_verify, "run", run)
    assert cli_main.main(["verify", "x.safetensors"], prog="weightkit") == 130
    assert capsys.readouterr().err.strip() == "weightkit: interrupted"


def _verify_until(tmp_path, when: str, **popen):
    """A `weightkit verify` of a 192 MiB file under its own TMPDIR, returned once `when`:
    "scratch made" (around the forks) or "trips writing" (files in the trips' directories)."""
    import subprocess
    import time
    from safetensors.numpy import save_file
    source = tmp_path / "big.safetensors"
    save_file({f"w{i}": np.full(1 << 20, i, np.float32) for i in range(48)}, str(source))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "weightkit.cli", "verify", str(source)],
                            env={**os.environ, "TMPDIR": str(scratch)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)

    def ready() -> bool:
        if when == "scratch made":
            return any(scratch.iterdir())
        return any(len(list(trip.rglob("*.*"))) for work in scratch.iterdir()
                   for trip in work.iterdir())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if ready():
                break
        except OSError:  # a directory went away while it was listed
            pass
        time.sleep(0.01)
    return proc, scratch


def _children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if os.path.exists(f"/proc/{pid}")
            and open(f"/proc/{pid}/stat").read().split()[2] != "Z"]


@pytest.mark.parametrize("when", ["scratch made", "trips writing"])
def test_interrupted_verify_says_so_and_leaves_no_scratch_files(tmp_path, when):
    """SIGTERM (as Ctrl-C) while round trips are written: 'interrupted' in one line, exit 130,
    and the scratch directory under TMPDIR removed (README: what remains after kill -9); the
    trips run in forked children, which are gone too. Signalled as soon as the scratch
    directory exists (around the forks), or once trips write their files."""
    import signal
    proc, scratch = _verify_until(tmp_path, when)
    children = _children(proc.pid)
    assert children or when == "scratch made" or proc.poll() is not None  # the trips' processes
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("verify finished before the signal arrived")
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "weightkit: interrupted", stderr
    assert list(scratch.iterdir()) == []
    assert not _alive(children)


def test_a_second_interrupt_during_teardown_does_not_hang_verify(tmp_path):
    """Ctrl-C as `timeout -s INT` sends it: to the process and to its whole process group, so
    the parent gets it twice, the second while it tears its trips' processes down (a pool once
    hung there for ever). Still 'interrupted', exit 130, nothing left behind, no child alive."""
    import signal
    proc, scratch = _verify_until(tmp_path, "trips writing", start_new_session=True)
    children = _children(proc.pid)
    if proc.poll() is not None:
        pytest.skip("verify finished before the signal arrived")
    assert children
    proc.send_signal(signal.SIGINT)
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "weightkit: interrupted", stderr
    assert list(scratch.iterdir()) == []
    assert not _alive(children)


def test_trips_in_children_give_what_trips_in_turn_give(tmp_path, monkeypatch):
    """Forked trips report exactly what the same trips run in turn report, findings included;
    a trip whose process ends without a Trip (here: every child dies at once), or that no
    process could be forked for (EAGAIN: a process limit), is run in the parent, with the same
    result."""
    arrays = {f"layer_{i}/w": np.full(i % 7 + 1, i, np.float32) for i in range(50)}
    arrays["s"] = np.array([b"a", b"bc"], object)
    path = tmp_path / "a.safetensors"
    weightkit.save(Store.from_arrays(arrays), path)
    real_load = verify_module.load

    def damaging_load(p, fmt=None):  # the npz trip reads one value back wrong: a finding
        store = real_load(p, fmt)
        if fmt == "npz":
            store = Store({n: (Tensor.from_array(np.zeros(1, np.float32), t.meta)
                               if n == "layer_3/w" else t) for n, t in store.items()},
                          format=store.format, meta=store.meta, path=store.path)
        return store
    monkeypatch.setattr(verify_module, "load", damaging_load)
    vias = ["safetensors", "npz", "tf-checkpoint"]
    with weightkit.load(path) as store:
        in_turn = [t.as_dict() for t in verify(store, vias)]
        forked = [t.as_dict() for t in verify(store, vias, workers=2)]
        monkeypatch.setattr(verify_module, "_child", lambda *args: os._exit(3))
        again = [t.as_dict() for t in verify(store, vias, workers=2)]
        import signal

        def no_process() -> int:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        monkeypatch.setattr(verify_module.os, "fork", no_process)
        signal.signal(signal.SIGALRM, lambda *_: pytest.fail("verify hung: no fork succeeded"))
        signal.alarm(60)
        try:
            unforked = [t.as_dict() for t in verify(store, vias, workers=2)]
        finally:
            signal.alarm(0)
    assert [t["status"] for t in in_turn] == ["identical", "different", "identical"]
    assert forked == in_turn
    assert again == in_turn
    assert unforked == in_turn
    assert not list(tmp_path.glob("weightkit-verify-*"))


@pytest.mark.parametrize("name", ["conv--tfjs-layers", "tlconv--keras3-f16.tflite",
                                  "consts--tf-frozen.pb", "dtypes--tfjs-encoded"])
def test_deployment_files_verify_clean(name, capsys):
    """Valid deployment files pass a default verify: a TF.js model round-tripped through a
    `.tflite` weights container keeps its model.json (the container's own tensor table is not
    written into it), and a default route whose way back would lose something is skipped with
    the reason, not reported as a lossy finding (exit 1)."""
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "fixtures" / name
    assert main(["verify", str(path), "--json"], prog="weightkit") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "ok"
    assert {t["status"] for t in doc["trips"]} <= {"identical", "skipped"}
    if name == "conv--tfjs-layers":
        assert main(["verify", str(path), "--via", "tflite"], prog="weightkit") == 0


def test_compare_reads_small_tensors_of_files_in_batches(tmp_path, monkeypatch):
    """Small tensors read from files are compared many at a time (read_many), across batch
    boundaries, and each difference is still named, in store order."""
    monkeypatch.setattr(verify_module, "CHUNK_BYTES", 1000)
    arrays = {f"layer_{i}/w": np.full(i % 5 + 1, i, np.float32) for i in range(300)}
    arrays["big"] = np.zeros(40000, np.float32)
    weightkit.save(Store.from_arrays(arrays), tmp_path / "a.safetensors")
    arrays["layer_150/w"] = arrays["layer_150/w"].copy()
    arrays["layer_150/w"][0] = -1
    arrays["layer_299/w"] = np.array([-0.0, 299, 299, 299, 299], np.float32)
    arrays["big"] = arrays["big"].copy()
    arrays["big"][7] = 1
    weightkit.save(Store.from_arrays(arrays), tmp_path / "b.safetensors")
    with weightkit.load(tmp_path / "a.safetensors") as a, \
            weightkit.load(tmp_path / "b.safetensors") as b:
        assert a["layer_1/w"].extent is not None  # the batched path is the one tested
        assert compare(a, b) == ["layer_150/w: 1 of 1 elements differ in their bytes",
                                 "layer_299/w: 1 of 5 elements differ in their bytes",
                                 "big: 1 of 40,000 elements differ in their bytes"]
        calls = []
        monkeypatch.setattr(verify_module, "read_many",
                            lambda tensors: calls.append(len(tensors)) or read_many(tensors))
        assert compare(a, a) == [] and calls == []  # equal batches: one comparison each
        assert len(compare(a, b)) == 3 and calls == []  # unequal ones: from the same reads


def test_a_name_based_checkpoint_carries_no_metadata_per_variable(tmp_path, capsys):
    """A variable of a name-based checkpoint stored under its name, as a weight, has no meta
    (nothing for a converted file to carry); a file converted by an earlier weightkit, which
    carried {"key": name, "role": "weight", "tf_checkpoint": {"keys": [name]}} for each,
    still verifies identical through a checkpoint (the entries its absence implies)."""
    arrays = {"dense/kernel": np.ones((2, 3), np.float32), "global_step": np.array(7)}
    weightkit.save(Store.from_arrays(arrays), tmp_path / "m.ckpt", "tf-checkpoint")
    with weightkit.load(tmp_path / "m.ckpt") as store:
        assert store["dense/kernel"].meta == {} and store["global_step"].meta == {
            "role": "counter"}
    old = {name: Tensor.from_array(a, {"key": name, "role": "weight",
                                       "tf_checkpoint": {"keys": [name]}})
           for name, a in arrays.items() if name != "global_step"}
    weightkit.save(Store(old, meta={"source_format": "tf-checkpoint"}), tmp_path / "old.npz")
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "old.npz"), "--via", "tf-checkpoint", "--json"],
                prog="weightkit") == 0
    (trip,) = json.loads(capsys.readouterr().out)["trips"]
    assert trip["status"] == "identical", trip
    renamed = {"dense/kernel": old["dense/kernel"].with_meta(key="other")}
    assert compare(Store(renamed), Store({"dense/kernel": Tensor.from_array(
        arrays["dense/kernel"])})) == ["dense/kernel: meta differs: key"]


def test_a_large_file_is_tried_through_its_own_format_and_the_archives(tmp_path, monkeypatch,
                                                                       capsys):
    """Above LARGE_STORE variables the default trips are the file's own format, safetensors and
    npz, and the report says so; --via all (and weightkit.verify(via=["all"])) tries every
    format that holds it, and naming formats is never cut."""
    monkeypatch.setattr(verify_module, "LARGE_STORE", 3)
    path = tmp_path / "w.h5"
    weightkit.save(Store.from_arrays({f"d/w{i}": np.full(3, i, np.float32) for i in range(5)}),
                   path, "keras-h5")
    assert main(["verify", str(path), "--quiet"], prog="weightkit") == 0
    assert capsys.readouterr() == ("", "")
    assert main(["verify", str(path)], prog="weightkit") == 0
    out, err = capsys.readouterr()  # a note goes to stderr, as convert's does
    assert "note" not in out
    assert main(["verify", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [t["via"] for t in doc["trips"]] == ["keras-h5", "safetensors", "npz"]
    assert doc["note"].startswith("a file of 5 variables (more than 3) is tried through "
                                  "keras-h5, safetensors, npz only; --via all")
    assert err == f"weightkit: note: {doc['note']}\n"
    every = [t["via"] for t in weightkit.verify(path, via=["all"])["trips"]]
    assert main(["verify", str(path), "--via", "all", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    with weightkit.load(path) as store:
        assert [t["via"] for t in doc["trips"]] == every == verify_module.candidates(store)
    assert len(every) > 3 and "note" not in doc
    assert main(["verify", str(path), "--via", "tflite", "--json"]) == 0
    assert [t["via"] for t in json.loads(capsys.readouterr().out)["trips"]] == ["tflite"]


def test_a_converted_file_keeps_its_origin_through_tfjs(tmp_path, capsys):
    """A safetensors file converted from a Keras 3 .weights.h5 records that origin
    (`source_format`); the TF.js writer dropped it from its carry, so the default verify of a
    valid file reported the tfjs trip 'different' (exit 1)."""
    from pathlib import Path
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "mlp--keras3.weights.h5"
    converted = tmp_path / "mlp.safetensors"
    assert main(["convert", str(fixture), str(converted), "-q"], prog="weightkit") == 0
    assert weightkit.load(converted).meta["source_format"] == "keras-weights-h5"
    capsys.readouterr()
    assert main(["verify", str(converted), "--via", "tfjs", "--json"], prog="weightkit") == 0
    assert json.loads(capsys.readouterr().out)["trips"][0]["status"] == "identical"


def test_like_gives_the_trip_through_its_format_a_template(tmp_path, capsys):
    """A SavedModel needs a graph to be written into: without one the trip through it fails
    (its error names no temporary path, and points at --like); `verify --like DIR` writes into
    the template's graph, as `convert --like` does. A --like no trip uses is an error."""
    from pathlib import Path
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "mlp--tfkeras-savedmodel"
    with weightkit.load(fixture) as model:
        plain = Store({name: Tensor.from_array(t.read(), {"role": t.role})
                       for name, t in model.items()})  # the weights and roles, no structure
    path = tmp_path / "plain.safetensors"
    weightkit.save(plain, path)
    assert main(["verify", str(path), "--via", "saved-model", "--json"], prog="weightkit") == 2
    trip = json.loads(capsys.readouterr().out)["trips"][0]
    assert trip["status"] == "failed" and "--like" in trip["error"]
    assert "weightkit-verify-" not in trip["error"] and str(tmp_path) not in trip["error"]
    assert main(["verify", str(path), "--via", "saved-model", "--like", str(fixture), "--json"],
                prog="weightkit") == 0
    assert json.loads(capsys.readouterr().out)["trips"][0]["status"] == "identical"
    assert main(["verify", str(path), "--via", "npz", "--like", str(fixture)],
                prog="weightkit") == 2
    assert "add --via saved-model" in capsys.readouterr().err


def test_a_template_of_another_structure_in_the_same_format_is_a_declared_loss(tmp_path,
                                                                               capsys):
    """A SavedModel verified through a template SavedModel whose structure differs (an asset
    more) comes back as the template's: lossy, the structure named, not identical."""
    import shutil
    from pathlib import Path
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "mlp--tfkeras-savedmodel"
    other = tmp_path / "other"
    shutil.copytree(fixture, other)
    (other / "assets").mkdir(exist_ok=True)
    (other / "assets" / "vocab.txt").write_text("a\nb\n")
    assert main(["verify", str(fixture), "--via", "saved-model", "--like", str(other), "--json"],
                prog="weightkit") == 1
    (trip,) = json.loads(capsys.readouterr().out)["trips"]
    assert trip["status"] == "lossy" and trip["differences"] == []
    assert trip["lost"] == ["saved-model: the saved-model graph (saved_model.pb, assets) (the "
                            "template's is written)"]
    assert main(["verify", str(fixture), "--via", "saved-model", "--like", str(fixture)],
                prog="weightkit") == 0


@pytest.mark.parametrize("name,flag", [("mlp--tfkeras-tf2.ckpt", "--no-optimizer"),
                                       ("mlp--keras3.keras", "--no-optimizer"),
                                       ("mlp--keras3.weights.h5", "--weights-only")])
def test_verify_without_optimizer_state_verifies_what_convert_writes(tmp_path, monkeypatch,
                                                                     name, flag, capsys):
    """--no-optimizer / --weights-only verify the file convert writes with the flag: every
    trip identical (the layout lists no dropped variable), no temporary file left."""
    from pathlib import Path
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / name
    assert main(["verify", str(fixture), flag, "--via", "safetensors", "--via", "npz",
                 "--json"], prog="weightkit") == 0, capsys.readouterr()
    doc = json.loads(capsys.readouterr().out)
    assert {t["status"] for t in doc["trips"]} == {"identical"}
    with weightkit.load(fixture) as store:
        kept = [n for n, t in store.items() if t.role in (
            ("weight",) if flag == "--weights-only" else ("weight", "metric"))]
    assert main(["verify", str(fixture), flag, "--via", "npz"], prog="weightkit") == 0
    assert f", {len(kept)} variables\n" in capsys.readouterr().out and len(kept) < len(store)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.tensorflow
def test_the_framework_loads_what_verify_without_optimizer_state_verifies(capsys):
    """--load with --no-optimizer has the framework load the file verified (the checkpoint
    without its optimizer state), not the original with it."""
    from pathlib import Path
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "mlp--tfkeras-tf2.ckpt"
    assert main(["verify", str(fixture), "--no-optimizer", "--load", "--via", "safetensors",
                 "--json"], prog="weightkit") == 0
    (trip,) = json.loads(capsys.readouterr().out)["trips"]
    assert trip["status"] == "identical" and trip["load"]["status"] == "identical", trip


@pytest.mark.parametrize("name,edit", [("mlp--keras3.keras", ["--no-optimizer"]),
                                       ("mlp--keras3.weights.h5", ["--weights-only"]),
                                       ("mlp--tfkeras-tf2.ckpt", ["--no-optimizer"]),
                                       ("name-based", ["--drop", "dense/bias"])])
def test_an_edited_file_carries_the_structure_the_edit_made(tmp_path, name, edit, capsys):
    """An edit written to safetensors carries each format's structure as that format's writer
    would write it for the edited store (`Format.current`): here, less the dropped state.
    Round trips through the formats of that structure are then identical, where the carried
    structure still listed what the edit had dropped."""
    from pathlib import Path
    if name == "name-based":
        source = tmp_path / "n.ckpt"
        weightkit.save(Store.from_arrays({"dense/kernel": np.ones((2, 3), np.float32),
                                          "dense/bias": np.zeros(3, np.float32)}),
                       source, "tf-checkpoint")
    else:
        source = Path(__file__).resolve().parents[1] / "fixtures" / name
    out = tmp_path / "edited.safetensors"
    assert main(["edit", str(source), str(out), *edit, "-q"], prog="weightkit") == 0
    capsys.readouterr()
    with weightkit.load(source) as original:
        own = original.format
    assert main(["verify", str(out), "--via", own, "--json"], prog="weightkit") == 0, \
        capsys.readouterr()
    (trip,) = json.loads(capsys.readouterr().out)["trips"]
    assert trip["status"] == "identical", trip


def test_an_export_template_takes_the_weights_without_optimizer_state(tmp_path, capsys):
    """A .keras model with its optimizer state, converted to safetensors, through an export
    SavedModel (no place for optimizer state): the trip fails naming what has no place and
    --no-optimizer; with --no-optimizer its values come back identical, and only the
    structure the template replaced is declared lost (not each key, not store metadata)."""
    from pathlib import Path
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    path = tmp_path / "m.safetensors"
    assert main(["convert", str(fixtures / "mlp--keras3.keras"), str(path), "-q"],
                prog="weightkit") == 0
    export = str(fixtures / "mlp--keras3-export")
    assert main(["verify", str(path), "--via", "saved-model", "--like", export, "--json"],
                prog="weightkit") == 2
    error = json.loads(capsys.readouterr().out)["trips"][0]["error"]
    assert "no place for 10 variable(s) of the weights: adam/iteration" in error
    assert "--no-optimizer leaves it out" in error and "missing" not in error
    assert main(["verify", str(path), "--like", export, "--json"], prog="weightkit") == 2
    trips = {t["via"]: t for t in json.loads(capsys.readouterr().out)["trips"]}
    assert trips["saved-model"]["status"] == "failed"  # asked for by --like: never skipped
    assert main(["verify", str(path), "--via", "saved-model", "--like", export, "--json",
                 "--no-optimizer"], prog="weightkit") == 1
    (trip,) = json.loads(capsys.readouterr().out)["trips"]
    assert trip["status"] == "lossy" and trip["differences"] == [], trip
    assert [text for text in trip["lost"] if "template's is written" not in text] == []


@pytest.mark.parametrize("name,via", [("conv--tfjs-graph", "tflite"),
                                      ("nested--tfjs-graph", "tflite"),
                                      ("tldense--keras3-f32.tflite", "tfjs"),
                                      ("tlconv--keras3-int8.tflite", "tfjs")])
def test_a_models_layouts_survive_a_weights_only_file(tmp_path, name, via, capsys):
    """A model's weights (a TF.js graph's, a .tflite model's), converted to safetensors, keep
    each variable's `layout` (derived from the model's operators); a .tflite weights container
    or a weights-only model.json has no operators to derive it from again, so it carries it:
    the trip through either is identical (it was 'different')."""
    from pathlib import Path
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / name
    converted = tmp_path / "w.safetensors"
    assert main(["convert", str(fixture), str(converted), "-q"], prog="weightkit") == 0
    assert any("layout" in t.meta for t in weightkit.load(converted).values())
    capsys.readouterr()
    assert main(["verify", str(converted), "--via", via, "--json"], prog="weightkit") == 0
    assert json.loads(capsys.readouterr().out)["trips"][0]["status"] == "identical"
