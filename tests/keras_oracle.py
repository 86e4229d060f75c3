"""The framework oracle for the Keras formats, run as a subprocess by the tests:

    python tests/keras_oracle.py FRAMEWORK '[["<fixture name>", "<converted path>"], ...]'

A pair may carry a third item, manifest fields that say how to load the converted file (e.g.
`{"layout": "tfkeras-weights-h5", "optimizer": false}` for a checkpoint converted to .h5); then
only the variables that load restores are compared.

For each pair the framework loads the committed fixture and the converted file the way that
layout is loaded (`fixtures/models.py`: `load_model`, or `load_weights` into a fresh build with
optimizer slots) and compares every weight and optimizer variable: names in order, dtypes,
shapes and bits. Prints one JSON line {converted path: "same" | what differs}.
"""
from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from fixtures_lib import manifest, models  # noqa: E402


def compare(want: dict, got: dict) -> str:
    if list(want) != list(got):
        return f"names differ: {list(want)} != {list(got)}"
    for name in want:
        a, b = np.asarray(want[name]), np.asarray(got[name])
        if a.dtype != b.dtype or a.shape != b.shape:
            return f"{name}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        if a.tobytes() != b.tobytes():
            return f"{name}: values differ"
    return "same"


def main(framework: str, pairs: list[list[str]]) -> dict[str, str]:
    entries = manifest()
    result = {}
    for name, path, *override in pairs:
        entry = entries[name]
        assert entry["framework"] == framework, (name, framework)
        want = models.restored_weights(entry)
        try:
            got = models.restored_weights({**entry, **(override[0] if override else {})}, path)
        except Exception as exc:  # the framework refused the file: report it as the difference
            result[path] = f"load failed: {type(exc).__name__}: {str(exc)[:300]}"
            continue
        if override:
            if not got or not set(got) <= set(want):
                result[path] = f"names differ: {list(got)} not within {list(want)}"
                continue
            want = {k: want[k] for k in got}
        result[path] = compare(want, got)
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]))))
