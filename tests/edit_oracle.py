"""Framework side of the edit tests, run as a subprocess (one framework per process):

    python tests/edit_oracle.py '[["<fixture name>", "<path>", "<out.npz>"(, {options})], ...]'

For each job the framework restores the fixture's model from `path` the way its layout is loaded
(`fixtures/models.py: restored_weights`) and the weights, in the framework's order, are saved to
`out.npz` as `names` plus one array per weight (`w0`, `w1`, ...), for the test to compare, and
`iterations`: the optimizer's step count after loading (-1 without an optimizer).

Options: `"weights_only": true` saves the model's weights without the optimizer's (for files
whose optimizer state was dropped); `"by_name": true` loads a weights file with
`load_weights(by_name=True)` into a fresh build (tf_keras); other keys override the fixture's
manifest fields (e.g. `"optimizer": false`).
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


def restored(entry: dict, path: str, options: dict) -> tuple[dict, int]:
    """(weights by name, optimizer iterations or -1) of the model loaded from `path`."""
    if options.get("by_name"):
        model = models.build(entry["case"], entry["framework"])
        model.load_weights(path, by_name=True)
    else:
        model = models.restore(entry, path)
    # As models.restored_weights, which would load the file a second time for the optimizer.
    slots = entry["optimizer"] and entry["layout"] not in models.SLOTS_NOT_RESTORED
    weights = models.weights_of(model, entry["framework"], include_optimizer=bool(
        slots and not options.get("weights_only") and not options.get("by_name")))
    optimizer = getattr(model, "optimizer", None)
    return weights, int(optimizer.iterations.numpy()) if optimizer is not None else -1


if __name__ == "__main__":
    for name, path, out, *more in json.loads(sys.argv[1]):
        options = dict(more[0]) if more else {}
        flags = {key: options.pop(key) for key in ("weights_only", "by_name") if key in options}
        weights, iterations = restored({**manifest()[name], **options}, path, flags)
        np.savez(out, names=np.array(list(weights)), iterations=np.array(iterations),
                 **{f"w{i}": value for i, value in enumerate(weights.values())})
