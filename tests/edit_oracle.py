"""Framework side of the edit tests, run as a subprocess (one framework per process):

    python tests/edit_oracle.py '[["<fixture name>", "<path>", "<out.npz>"], ...]'

For each job the framework restores the fixture's model from `path` the way its layout is loaded
(`fixtures/models.py: restored_weights`) and the weights, in the framework's order, are saved to
`out.npz` as `names` plus one array per weight (`w0`, `w1`, ...), for the test to compare.
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

if __name__ == "__main__":
    for name, path, out in json.loads(sys.argv[1]):
        weights = models.restored_weights(manifest()[name], path)
        np.savez(out, names=np.array(list(weights)),
                 **{f"w{i}": value for i, value in enumerate(weights.values())})
