"""The framework check of `weightkit verify --load`, run only in a child process:

    python -m weightkit.diffing.oracle JOBS.json RESULTS.json

It is the one module of weightkit that imports TensorFlow / Keras / tf_keras, and only when run
as a program (`verify --load` starts it; the weightkit process itself never imports them).
Each job names a format, the original file and its round-tripped copy; the framework loads both:

    tf-checkpoint     tf.train.load_checkpoint: every tensor (the object graph included)
    saved-model       tf.train.load_checkpoint on variables/ as above, then tf.saved_model.load
                      of both; the serving_default signature, if any, runs on a seeded input
    keras             keras.saving.load_model of both (compile=False): every weight, then the
                      outputs of both models on a seeded input that fits (`model_inputs`); a
                      forward pass the original cannot run is skipped, with the reason
    keras-h5          a full model (root attribute model_config): load_model with tf_keras when
                      keras_version is 2.x, else Keras 3; weights and outputs as above
    weights only      a Keras 3 .weights.h5 or a tf_keras save_weights .h5 holds no architecture,
                      so no framework can load it alone: reported as skipped (its tensors are
                      still compared bit for bit at the store level)

Results: {"status": "identical" | "different" | "failed" | "skipped", "detail": str}, compared bit
for bit (dtype, shape and bytes).
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

FRAMEWORK_FORMATS = ("tf-checkpoint", "saved-model", "keras", "keras-h5", "keras-weights-h5")
SEED = 1234


def _same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return a.tolist() == b.tolist()
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def _compare_lists(what: str, a: Sequence[tuple[str, Any]], b: Sequence[tuple[str, Any]]
                   ) -> list[str]:
    if [n for n, _ in a] != [n for n, _ in b]:
        return [f"{what}: names differ ({len(a)} against {len(b)})"]
    return [f"{what} {name}" for (name, x), (_, y) in zip(a, b) if not _same(x, y)]


def _checkpoint_tensors(prefix: str) -> list[tuple[str, Any]]:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    return [(name, reader.get_tensor(name))
            for name in sorted(reader.get_variable_to_shape_map())]


def _prefix(path: str) -> str:
    return path[: -len(".index")] if path.endswith(".index") else path


def check_checkpoint(original: str, copy: str) -> list[str]:
    return _compare_lists("tensor", _checkpoint_tensors(_prefix(original)),
                          _checkpoint_tensors(_prefix(copy)))


def _seeded(spec: Any, rng: np.random.Generator) -> Any:
    shape = [(2 if i == 0 else 3) if d is None else int(d) for i, d in enumerate(spec.shape)]
    dtype = np.dtype(getattr(spec.dtype, "as_numpy_dtype", spec.dtype))
    if dtype.kind in "iu":
        return rng.integers(0, 2, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    return rng.standard_normal(size=shape).astype(dtype)


def check_saved_model(original: str, copy: str) -> list[str]:
    import tensorflow as tf

    found = _compare_lists("variable", _checkpoint_tensors(os.path.join(original, "variables",
                                                                         "variables")),
                           _checkpoint_tensors(os.path.join(copy, "variables", "variables")))
    models = [tf.saved_model.load(path) for path in (original, copy)]
    signatures = [getattr(m, "signatures", {}) for m in models]
    if "serving_default" in signatures[0]:
        function = signatures[0]["serving_default"]
        _, kwargs = function.structured_input_signature
        rng = np.random.default_rng(SEED)
        inputs = {k: tf.constant(_seeded(spec, rng)) for k, spec in sorted(kwargs.items())}
        outputs = [s["serving_default"](**inputs) for s in signatures]
        found += _compare_lists("output", sorted((k, v.numpy()) for k, v in outputs[0].items()),
                                sorted((k, v.numpy()) for k, v in outputs[1].items()))
    return found


def _embedding_limits(model: Any) -> dict[int, int]:
    """{id of a model input: the smallest `input_dim` of the Embedding layers it feeds}: such
    an input gets integer indices below it (an index of -1 fails every route)."""
    limits: dict[int, int] = {}
    inputs = {id(t) for t in model.inputs}
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        stack += [l for l in getattr(layer, "layers", []) if l is not layer]
        dim = getattr(layer, "input_dim", None)
        if not isinstance(dim, int) or dim <= 0:
            continue
        try:
            fed = layer.input
        except (AttributeError, ValueError, RuntimeError):
            continue
        for tensor in fed if isinstance(fed, (list, tuple)) else [fed]:
            if id(tensor) in inputs:
                limits[id(tensor)] = min(dim, limits.get(id(tensor), dim))
    return limits


def model_inputs(model: Any) -> list[Any]:
    """A seeded input for each of the model's inputs that fits it: its shape (a batch of 2, 3
    for other unknown dimensions), its dtype as the config declares it, integer indices below
    the `input_dim` of an Embedding it feeds."""
    rng = np.random.default_rng(SEED)
    limits = _embedding_limits(model)
    out = []
    for tensor in model.inputs:
        value = _seeded(tensor, rng)
        if id(tensor) in limits:
            value = rng.integers(0, limits[id(tensor)], size=value.shape).astype(value.dtype)
        out.append(value)
    return out


def _model_outputs(model: Any) -> list[tuple[str, Any]]:
    inputs = model_inputs(model)
    outputs = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [(str(i), np.asarray(o)) for i, o in enumerate(outputs)]


class ForwardSkipped(Exception):
    """The original model's forward pass cannot be fed or run: outputs are not compared."""


def _reason(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def _compare_models(load_model: Callable[[str], Any], original: str, copy: str) -> list[str]:
    models = [load_model(path) for path in (original, copy)]
    found = _compare_lists("weight", [(w.path if hasattr(w, "path") else w.name, w.numpy())
                                      for w in models[0].weights],
                           [(w.path if hasattr(w, "path") else w.name, w.numpy())
                            for w in models[1].weights])
    try:
        want = _model_outputs(models[0])
    except Exception as exc:  # the original itself cannot run: nothing to compare against
        if found:
            return found
        raise ForwardSkipped(_reason(exc)) from None
    return found + _compare_lists("output", want, _model_outputs(models[1]))


def _keras3(path: str) -> Any:
    import keras

    return keras.saving.load_model(path, compile=False)


def _tf_keras(path: str) -> Any:
    import tf_keras

    return tf_keras.models.load_model(path, compile=False)


def check_keras(original: str, copy: str) -> list[str]:
    return _compare_models(_keras3, original, copy)


def _h5_attrs(path: str) -> dict[str, Any]:
    import h5py

    with h5py.File(path, "r") as f:
        return {k: f.attrs[k] for k in ("model_config", "keras_version") if k in f.attrs}


def check_keras_h5(original: str, copy: str) -> list[str] | None:
    attrs = _h5_attrs(original)
    if "model_config" not in attrs:
        return None
    version = attrs.get("keras_version", b"")
    version = version.decode() if isinstance(version, bytes) else str(version)
    return _compare_models(_tf_keras if version.startswith("2.") else _keras3, original, copy)


CHECKS: dict[str, Callable[[str, str], list[str] | None]] = {
    "tf-checkpoint": check_checkpoint,
    "saved-model": check_saved_model,
    "keras": check_keras,
    "keras-h5": check_keras_h5,
    "keras-weights-h5": lambda original, copy: None,
}
SKIPPED = ("a weights-only file holds no architecture, so no framework loads it alone "
           "(its tensors are compared bit for bit at the store level)")


def run_job(job: dict[str, str]) -> dict[str, str]:
    try:
        found = CHECKS[job["format"]](job["original"], job["copy"])
    except ForwardSkipped as exc:
        return {"status": "identical", "detail": "loaded by the framework: weights "
                f"bit-identical; forward pass skipped, the original cannot run: {exc}"}
    except Exception as exc:  # the framework refusing a file is the finding
        return {"status": "failed", "detail": f"{type(exc).__name__}: {str(exc)[:500]}"}
    if found is None:
        return {"status": "skipped", "detail": SKIPPED}
    if found:
        return {"status": "different", "detail": "; ".join(found[:20])}
    return {"status": "identical", "detail": "loaded by the framework: bit-identical"}


def main(argv: Sequence[str]) -> int:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    jobs_path, results_path = argv
    with open(jobs_path, encoding="utf-8") as f:
        jobs = json.load(f)
    results = [run_job(job) for job in jobs]
    with open(results_path, "w", encoding="utf-8") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
