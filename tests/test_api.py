"""The Python API returns the documents the commands print (`--format json`), for paths and for
open stores alike, and `weightkit.diff` stays the function whatever was imported before."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import weightkit
import weightkit.diffing.engine  # noqa: F401 - the subpackage of the folder diff/, imported first
from fixtures_lib import FIXTURES

BEFORE, AFTER = FIXTURES / "conv--keras3-before.keras", FIXTURES / "conv--keras3-after.weights.h5"
MODEL = FIXTURES / "mlp--keras3.keras"


def cli_json(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "weightkit.cli", *args, "--format", "json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_diff_is_the_function_after_the_subpackage_is_imported():
    assert callable(weightkit.diff) and weightkit.diff.__module__ == "weightkit.api"
    with pytest.raises(ImportError, match="weightkit.diffing"):
        __import__("weightkit.diff")


@pytest.mark.parametrize("options, flags", [
    ({}, []),
    ({"rtol": 1e-3, "include": ["c1/*", "bn/*"]}, ["--rtol", "1e-3", "--include", "c1/*",
                                                   "--include", "bn/*"]),
    ({"by": "layer", "sort": "rel_l2", "top": 2}, ["--by", "layer", "--sort", "rel_l2",
                                                   "--top", "2"]),
])
def test_diff_returns_what_wdiff_prints(options, flags):
    assert weightkit.diff(BEFORE, AFTER, **options) == cli_json("diff", str(BEFORE), str(AFTER),
                                                                *flags)


def test_diff_of_open_stores(tmp_path):
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)}
    a = weightkit.Store.from_arrays(arrays)
    b = weightkit.Store.from_arrays({**arrays, "b": np.zeros(3, np.float32)})
    doc = weightkit.diff(a, b)
    assert doc["summary"]["identical"] is False
    assert {v["name"]: v["status"] for v in doc["variables"]} == {"w": "same", "b": "changed"}
    assert doc["a"] == {"path": "<store>", "format": "memory"}
    with pytest.raises(weightkit.UsageError, match="did you mean .b."):
        weightkit.diff(a, b, include=["bb"])


def test_stats_returns_what_show_prints():
    assert weightkit.stats(MODEL) == cli_json("show", str(MODEL))
    assert weightkit.stats(MODEL, weights_only=True, statistics=False) == \
        cli_json("show", str(MODEL), "--weights-only", "--no-stats")
    assert weightkit.stats(MODEL, by="layer", sort="std", top=2) == \
        cli_json("show", str(MODEL), "--by", "layer", "--sort", "std", "--top", "2")


def test_verify_returns_what_verify_prints():
    got = weightkit.verify(MODEL, via=["safetensors", "npz"])
    assert got == cli_json("verify", str(MODEL), "--via", "safetensors", "--via", "npz")
    assert got["status"] == "ok"


def test_the_package_ships_its_type_marker():
    root = Path(weightkit.__file__).parent
    assert (root / "py.typed").is_file()
