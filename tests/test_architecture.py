"""The architecture's promises: a format is one module and its record, third-party formats plug in
through entry points, nothing outside a format's module knows its internals, every format runs
the conformance suite, and importing weightkit has no side effects."""
from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import weightkit
from conformance import EXEMPT, FormatConformance
from weightkit.converters import registry

ROOT = Path(__file__).resolve().parent.parent
TOY = Path(__file__).resolve().parent / "toy_format"



@pytest.fixture(autouse=True, scope="module")
def toy_registered():
    """The toy format, registered in this process for this module's tests only."""
    sys.path.insert(0, str(TOY))
    registry.register(importlib.import_module("wk_toy"), clobber=True)
    yield
    registry.unregister("toy")
    sys.path.remove(str(TOY))


class TestToyConformance(FormatConformance):
    """The third-party toy format passes the same suite as the built-in ones."""
    format = "toy"
    suffix = ".toy"
    extra_dtypes = ("uint8", "complex64")
    lossy_dtypes = ("float64",)
    carries_metadata = False
    byte_identical = True

    def probe_env(self, directory: Path) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(_toy_site(directory))}


# --- one module per format ---------------------------------------------------------------------

def _format_modules() -> set[str]:
    return set(registry.BUILTIN.values())


def _imported_modules(path: Path) -> set[str]:
    """The weightkit modules `path` imports, as `converters.x` / `diffing.x` / `cli.x` names."""
    package = path.parent.name
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = [] if node.level > 1 else [package]
            parts = base + (node.module.split(".") if node.module else [])
            targets = [".".join(parts)] if node.module else []
            targets += [".".join(parts + [alias.name]) for alias in node.names]
            found.update(t for t in targets if t.count(".") == 1)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("weightkit."):
            found.add(node.module.split(".", 1)[1])
    return found


# The Keras 3 formats share their weights tree through keras3_tree.py and keras_names.py.
KNOWN_CROSS_IMPORTS: set[tuple[str, str]] = set()


def test_no_module_outside_a_format_imports_its_internals():
    formats = _format_modules()
    offenders = []
    for folder in ("converters", "diff", "cli"):
        for path in sorted((ROOT / folder).glob("*.py")):
            own = path.stem if folder == "converters" else None
            for module in _imported_modules(path):
                package, _, name = module.partition(".")
                if package == "converters" and name in formats and name != own \
                        and (own, name) not in KNOWN_CROSS_IMPORTS:
                    offenders.append(f"{folder}/{path.name} imports converters.{name}")
    assert offenders == []


def test_every_format_runs_the_conformance_suite_or_is_exempt():
    covered = set()
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                     for t in n.targets if isinstance(t, ast.Name)
                     and isinstance(n.value, ast.Constant)}
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(
                    getattr(b, "id", None) == "FormatConformance" for b in node.bases):
                for item in node.body:
                    if isinstance(item, ast.Assign) and [getattr(t, "id", "") for t in
                                                         item.targets] == ["format"]:
                        value = item.value
                        covered.add(value.value if isinstance(value, ast.Constant)
                                    else constants.get(getattr(value, "id", "")))
    missing = [name for name in registry.names() if name not in covered and name not in EXEMPT]
    assert missing == [], f"formats neither in the conformance suite nor exempt: {missing}"
    assert all(reason for reason in EXEMPT.values())


def test_records_say_what_other_modules_used_to_hard_code():
    ckpt = registry.get("tf-checkpoint")
    assert ckpt.index is not None and registry.get("ckpt") is ckpt
    assert set(registry.git_patterns()) >= {"*.h5", "*.keras", "*.safetensors", "*.npz",
                                            "*.index", "*.toy"}
    assert registry.by_namespace("keras").structure.startswith("the .keras archive")
    with pytest.raises(weightkit.UsageError, match="did you mean safetensors"):
        registry.get("safetensor")


def test_what_a_conversion_loses_is_named_in_the_formats_own_names():
    # "writing tfjs would lose: the keras_h5 file structure": an internal metadata namespace
    # in a message whose every other format name is the one the user types (keras-h5).
    for record in registry.FORMATS.values():
        if record.structure and record.namespace != record.name:  # saved_model.pb is a file
            assert not re.search(rf"\b{record.namespace}\b(?!\.)", record.structure), \
                (record.name, record.structure)


# --- plug-ins through entry points ---------------------------------------------------------------

def _toy_site(tmp_path: Path) -> Path:
    """A directory on which the toy format is an installed distribution with an entry point."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(TOY / "wk_toy.py", site / "wk_toy.py")
    info = site / "wk_toy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wk-toy\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[weightkit.formats]\ntoy = wk_toy:FORMAT\n")
    return site


def _cli(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "weightkit.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_third_party_format_works_in_every_command(tmp_path):
    site = _toy_site(tmp_path)
    arrays = {"enc/kernel": np.arange(12, dtype=np.float32).reshape(3, 4),
              "enc/bias": np.ones(4, np.float16)}
    weightkit.save(weightkit.Store.from_arrays(arrays), tmp_path / "a.safetensors")

    done = _cli(site, "convert", "a.safetensors", "a.toy", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a.toy").read_bytes().startswith(b"WKTOY1\n")
    shown = _cli(site, "show", "a.toy", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["format"] == "toy"
    assert [r["name"] for r in doc["variables"]] == ["enc/kernel", "enc/bias"]
    assert _cli(site, "convert", "a.toy", "b.npz", cwd=tmp_path).returncode == 0
    same = _cli(site, "diff", "a.toy", "b.npz", cwd=tmp_path)
    assert same.returncode == 0, same.stdout + same.stderr
    weightkit.save(weightkit.Store.from_arrays({**arrays, "enc/bias": np.zeros(4, np.float16)}),
                   tmp_path / "c.safetensors")
    assert _cli(site, "convert", "c.safetensors", "c.toy", cwd=tmp_path).returncode == 0
    different = _cli(site, "diff", "a.toy", "c.toy", "--format", "json", cwd=tmp_path)
    assert different.returncode == 1, different.stderr
    assert "enc/bias" in different.stdout
    verified = _cli(site, "verify", "a.toy", "--via", "toy", cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # without the distribution, the format is unknown and the error says what is known
    gone = subprocess.run([sys.executable, "-m", "weightkit.cli", "show", "a.toy"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert gone.returncode == 2 and "unrecognised file" in gone.stderr


def test_a_broken_plugin_does_not_break_the_builtin_formats(tmp_path):
    site = _toy_site(tmp_path)
    (site / "wk_toy-1.0.dist-info" / "entry_points.txt").write_text(
        "[weightkit.formats]\ntoy = wk_toy_missing:FORMAT\n")
    weightkit.save(weightkit.Store.from_arrays({"w": np.ones(2, np.float32)}),
                   tmp_path / "a.safetensors")
    done = _cli(site, "show", "a.safetensors", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    unknown = _cli(site, "show", "a.safetensors", "--from", "toy", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown format 'toy'" in unknown.stderr


# --- importing weightkit -------------------------------------------------------------------------

IMPORT_PROBE = """
import json, os, sys, threading
import numpy
from threadpoolctl import threadpool_info
before = (dict(os.environ), threading.active_count(), threadpool_info())
import weightkit
after = (dict(os.environ), threading.active_count(), threadpool_info())
heavy = sorted(m for m in ("tensorflow", "keras", "tf_keras", "h5py", "threadpoolctl.x")
               if m in sys.modules)
print(json.dumps({"same": before == after, "heavy": heavy}))
"""


def test_importing_weightkit_changes_no_environment_or_threads():
    env = {k: v for k, v in os.environ.items() if not k.endswith("NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", IMPORT_PROBE], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"same": True, "heavy": []}


LAZY_PROBE = """
import sys, weightkit
with weightkit.load(sys.argv[1]) as store:
    list(store)
print(sorted(m.rsplit(".", 1)[1] for m in sys.modules if m.startswith("weightkit.converters.")))
"""


def test_detection_imports_format_modules_only_as_far_as_it_goes(tmp_path):
    """Detection tries the built-in formats in order and stops at the first that recognises
    the file: a safetensors file imports none of the HDF5, TFLite, TF.js or GraphDef readers."""
    weightkit.save(weightkit.Store.from_arrays({"w": np.ones(2, np.float32)}),
                   tmp_path / "w.safetensors")
    done = subprocess.run([sys.executable, "-c", LAZY_PROBE, str(tmp_path / "w.safetensors")],
                          capture_output=True, text=True, timeout=120)
    loaded = set(json.loads(done.stdout.replace("'", '"')))
    assert "safetensors" in loaded, done.stderr
    assert not loaded & {"keras_v3", "keras_v3_weights", "keras_h5", "tflite", "tfjs",
                         "graphdef", "hdf5", "keras_names"}, loaded
