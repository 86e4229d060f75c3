"""The TFLite interpreter (and Keras 3) as the oracle on .tflite files, run as a script in a
subprocess with a JSON list of jobs; prints `@@RESULT@@` and a JSON list of results:

    ["tensors", PATH]            -> {name: {"dtype", "shape", "values", "quantization"}} of every
                                    constant tensor of the primary subgraph the interpreter
                                    lists (values as nested lists, strings as hex; sparse ones
                                    left out)
    ["invoke", PATH, CASE]       -> the output of `invoke()` on tflite_fixtures.sample_input(CASE)
    ["lstm_state", SOURCE, CASE, FILL]
                                 -> the Keras source model's output when its LSTM starts from
                                    h = c = FILL (what a .tflite whose initial state is edited
                                    to FILL must compute)
    ["quant_error", PATH, SOURCE]-> per quantized weight of the primary subgraph: numpy's
                                    scale·(q − zero_point) of the interpreter's tensor against
                                    the Keras weight it came from (the named layer's kernel or
                                    bias in TFLite's layout, BatchNorm folded with the layer's
                                    own epsilon): {name: {max_abs, rel_l2, worst: [axis, index,
                                    max_abs]}}

`run(jobs)` does this from a test.
"""
from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))

import numpy as np  # noqa: E402

MARK = "@@RESULT@@"


def _interpreter(path: str):
    import warnings
    import tensorflow as tf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=path)
    interpreter.allocate_tensors()
    return interpreter


def tensors(path: str) -> dict:
    interpreter = _interpreter(path)
    out = {}
    for d in interpreter.get_tensor_details():
        if d.get("sparsity_parameters"):
            continue
        try:
            value = interpreter.get_tensor(d["index"])
        except ValueError:  # an activation: no data yet
            continue
        q = d["quantization_parameters"]
        values = ([bytes(v).hex() for v in value.reshape(-1)] if value.dtype.kind in "OS"
                  else value.tolist())
        out[d["name"]] = {"dtype": np.dtype(d["dtype"]).name, "shape": [int(x) for x in d["shape"]],
                          "values": values,
                          "quantization": {"scales": q["scales"].tolist(),
                                           "zero_points": q["zero_points"].tolist(),
                                           "axis": int(q["quantized_dimension"])}}
    return out


def invoke(path: str, case: str) -> list:
    import tflite_fixtures
    interpreter = _interpreter(path)
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], tflite_fixtures.sample_input(case))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).tolist()


def lstm_state(source: str, case: str, fill: float) -> list:
    import keras
    import tflite_fixtures
    model = keras.models.load_model(source)
    x = tflite_fixtures.sample_input(case)
    lstm = model.get_layer("lstm")
    state = np.full((1, lstm.units), fill, np.float32)
    h = lstm(x, initial_state=[state, state])
    return np.asarray(model.get_layer("out")(h)).tolist()


def _keras_weights(source: str) -> dict:
    """{layer name: (class name, {kernel|bias|gamma|...: value}, epsilon)} of the source."""
    import keras
    model = keras.models.load_model(source)
    out = {}
    for layer in model.layers:
        values = {}
        for w in layer.weights:
            values[w.path.rsplit("/", 1)[-1]] = np.asarray(w.numpy(), np.float64)
        out[layer.name] = (type(layer).__name__, values, getattr(layer, "epsilon", None))
    return out


def _to_tflite(kind: str, kernel: np.ndarray) -> np.ndarray:
    """A Keras kernel in TFLite's layout (DEPLOY-FORMATS.md §1)."""
    if kind == "Dense":
        return kernel.T
    if kind == "Conv2D":
        return kernel.transpose(3, 0, 1, 2)
    if kind == "DepthwiseConv2D":
        return kernel.reshape(1, *kernel.shape[:2], -1)
    if kind == "Conv2DTranspose":
        return kernel.transpose(2, 0, 1, 3)
    raise ValueError(kind)


def quant_error(path: str, source: str) -> dict:
    """See the module docstring; weights are matched to layers by the layer name in the tensor
    name (`tlconv_1/c1_1/convolution`: c1), biases by the operator that reads them."""
    interpreter = _interpreter(path)
    layers = _keras_weights(source)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    out = {}
    for op in ops:
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV",
                                 "FULLY_CONNECTED"):
            continue
        weight_at = 1
        bias_at = 3 if op["op_name"] == "TRANSPOSE_CONV" else 2
        weight = details[op["inputs"][weight_at]]
        parts = {p.rsplit("_", 1)[0] for loc in weight["name"].split(";") for p in loc.split("/")}
        layer = next(n for n in layers if n in parts and "kernel" in layers[n][1]
                     or n in parts and "depthwise_kernel" in layers[n][1])
        kind, values, _ = layers[layer]
        kernel = values.get("kernel", values.get("depthwise_kernel"))
        bias = values.get("bias", np.zeros(kernel.shape[-2 if kind == "Conv2DTranspose" else -1]
                                           if kind != "DepthwiseConv2D"
                                           else kernel.shape[2] * kernel.shape[3]))
        names = list(layers)
        after = names[names.index(layer) + 1] if names.index(layer) + 1 < len(names) else None
        if after and layers[after][0] == "BatchNormalization":
            _, bn, eps = layers[after]
            s = bn["gamma"] / np.sqrt(bn["moving_variance"] + eps)
            kernel = kernel * s  # the output channel is the last axis of Conv2D/Dense kernels
            bias = (bias - bn["moving_mean"]) * s + bn["beta"]
        wanted = {op["inputs"][weight_at]: _to_tflite(kind, kernel)}
        if len(op["inputs"]) > bias_at and op["inputs"][bias_at] >= 0:
            wanted[op["inputs"][bias_at]] = bias
        for index, want in wanted.items():
            d = details[index]
            q = d["quantization_parameters"]
            if not len(q["scales"]):
                continue
            raw = interpreter.get_tensor(index).astype(np.int64)
            axis = int(q["quantized_dimension"]) if len(q["scales"]) > 1 else None
            shape = [1] * raw.ndim
            if axis is not None:
                shape[axis] = -1
            real = ((raw - q["zero_points"].reshape(shape)).astype(np.float32)
                    * q["scales"].astype(np.float32).reshape(shape)).astype(np.float64)
            diff = real - want
            entry = {"max_abs": float(np.abs(diff).max()),
                     "rel_l2": float(np.linalg.norm(diff) / np.linalg.norm(want))}
            if axis is not None:
                per = np.abs(np.moveaxis(diff, axis, 0)).reshape(raw.shape[axis], -1).max(1)
                entry["worst"] = [axis, int(per.argmax()), float(per.max())]
            out[d["name"]] = entry
    return out


JOBS = {"tensors": tensors, "invoke": invoke, "lstm_state": lstm_state,
        "quant_error": quant_error}


def run(jobs: list[list]) -> list:
    """Run `jobs` in a fresh Python process; returns their results in order."""
    import subprocess
    done = subprocess.run([sys.executable, os.path.abspath(__file__), json.dumps(jobs)],
                          capture_output=True, text=True, timeout=900)
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise AssertionError(f"TFLite jobs {jobs} failed:\n{done.stderr[-3000:]}")


if __name__ == "__main__":
    results = [JOBS[job[0]](*job[1:]) for job in json.loads(sys.argv[1])]
    print(MARK + json.dumps(results))
