"""Keras 3 writes one small model per built-in layer class (and per optimizer) of the naming
table (`weightkit.converters.keras_names`), for tests/test_keras_names.py. Run as a script in a
subprocess with an output directory; for each case writes CASE.keras, CASE.weights.h5 and
CASE.json, the framework's own account:

    {"weights": [[variable.path, sha256], ...],        # model.weights, in order
     "optimizer": [[variable.path, sha256], ...],      # optimizer.variables, in order
     "classes": {layer name: class name}}

Every variable holds distinct seeded values (optimizer slots too), so that a name paired with
the wrong variable shows. `run(directory)` does this from a test and returns the case names.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def _digest(value) -> str:
    import numpy as np
    return hashlib.sha256(np.ascontiguousarray(np.asarray(value)).tobytes()).hexdigest()


def _cases():
    """{case: (build() -> model, optimizer factory or None)}."""
    import keras
    L = keras.layers

    def single(layer, shape, dtype="float32", two_inputs=False):
        def build():
            inp = keras.Input(shape, dtype=dtype)
            out = layer()(inp, inp) if two_inputs else layer()(inp)
            return keras.Model(inp, out)
        return build

    def quantized(layer, shape, dtype="float32"):
        def build():
            model = single(layer, shape, dtype)()
            model.quantize("int8")
            return model
        return build

    def normalization():
        inp = keras.Input((3,))
        layer = L.Normalization()
        layer.adapt(__import__("numpy").arange(12, dtype="float32").reshape(4, 3))
        return keras.Model(inp, layer(inp))

    def nested_sequential():
        inner = keras.Sequential([L.Dense(3, name="a"), L.BatchNormalization(name="b")],
                                 name="inner")
        inp = keras.Input((4,))
        return keras.Model(inp, L.Dense(2, name="head")(inner(inp)))

    def top_sequential():
        return keras.Sequential([keras.Input((4,)), L.Dense(3, name="s1"),
                                 L.LayerNormalization(name="s2")], name="top")

    def small():
        inp = keras.Input((3,))
        h = L.Dense(4, name="d")(inp)
        h = L.BatchNormalization(name="bn")(h)
        return keras.Model(inp, L.Dense(2, name="out")(h))

    O = keras.optimizers
    cases = {
        "dense": (single(lambda: L.Dense(4), (3,)), None),
        "dense-nobias": (single(lambda: L.Dense(4, use_bias=False), (3,)), None),
        "dense-int8": (quantized(lambda: L.Dense(4), (3,)), None),
        "einsum": (single(lambda: L.EinsumDense("ab,bc->ac", 4, bias_axes="c"), (3,)), None),
        "einsum-nobias": (single(lambda: L.EinsumDense("ab,bc->ac", 4), (3,)), None),
        "conv1d": (single(lambda: L.Conv1D(4, 3), (8, 3)), None),
        "conv2d": (single(lambda: L.Conv2D(4, 3, groups=2), (8, 8, 2)), None),
        "conv3d": (single(lambda: L.Conv3D(2, 2, use_bias=False), (4, 4, 4, 2)), None),
        "conv1d-transpose": (single(lambda: L.Conv1DTranspose(4, 3), (8, 2)), None),
        "conv2d-transpose": (single(lambda: L.Conv2DTranspose(4, 3), (8, 8, 2)), None),
        "conv3d-transpose": (single(lambda: L.Conv3DTranspose(2, 2), (4, 4, 4, 2)), None),
        "depthwise1d": (single(lambda: L.DepthwiseConv1D(3), (8, 5)), None),
        "depthwise2d": (single(lambda: L.DepthwiseConv2D(3, depth_multiplier=2), (8, 8, 5)),
                        None),
        "separable1d": (single(lambda: L.SeparableConv1D(4, 3), (8, 5)), None),
        "separable2d": (single(lambda: L.SeparableConv2D(4, 3, depth_multiplier=2), (8, 8, 5)),
                        None),
        "batchnorm": (single(lambda: L.BatchNormalization(), (3,)), None),
        "batchnorm-noscale": (single(lambda: L.BatchNormalization(scale=False), (3,)), None),
        "batchnorm-nocenter": (single(lambda: L.BatchNormalization(center=False), (3,)), None),
        "layernorm": (single(lambda: L.LayerNormalization(), (3,)), None),
        "layernorm-nocenter": (single(lambda: L.LayerNormalization(center=False), (3,)), None),
        "groupnorm": (single(lambda: L.GroupNormalization(groups=2), (4,)), None),
        "rmsnorm": (single(lambda: L.RMSNormalization(), (3,)), None),
        "embedding": (single(lambda: L.Embedding(10, 4), (5,), "int32"), None),
        "embedding-int8": (quantized(lambda: L.Embedding(10, 4), (5,), "int32"), None),
        "lstm": (single(lambda: L.LSTM(4), (5, 3)), None),
        "lstm-nobias": (single(lambda: L.LSTM(4, use_bias=False), (5, 3)), None),
        "gru": (single(lambda: L.GRU(4), (5, 3)), None),
        "gru-v1": (single(lambda: L.GRU(4, reset_after=False), (5, 3)), None),
        "simple-rnn": (single(lambda: L.SimpleRNN(4), (5, 3)), None),
        "conv-lstm2d": (single(lambda: L.ConvLSTM2D(2, 3), (4, 6, 6, 2)), None),
        "bidirectional": (single(lambda: L.Bidirectional(L.GRU(3), name="bi"), (5, 3)), None),
        "bidirectional-backward": (single(lambda: L.Bidirectional(
            L.LSTM(3), backward_layer=L.LSTM(3, go_backwards=True, name="back")), (5, 3)), None),
        "time-distributed": (single(lambda: L.TimeDistributed(L.Dense(2), name="td"), (5, 3)),
                             None),
        "mha": (single(lambda: L.MultiHeadAttention(2, 4, name="mha"), (5, 3), two_inputs=True),
                None),
        "mha-nobias": (single(lambda: L.MultiHeadAttention(2, 4, use_bias=False), (5, 3),
                              two_inputs=True), None),
        "gqa": (single(lambda: L.GroupQueryAttention(4, 2, 1), (5, 8), two_inputs=True), None),
        "prelu": (single(lambda: L.PReLU(), (5, 3)), None),
        "normalization": (normalization, None),
        "nested-sequential": (nested_sequential, None),
        "top-sequential": (top_sequential, None),
    }
    optimizers = {
        "adam": lambda: O.Adam(), "adamw": lambda: O.AdamW(), "amsgrad": lambda: O.Adam(amsgrad=True),
        "nadam": lambda: O.Nadam(), "sgd": lambda: O.SGD(), "sgd-momentum": lambda: O.SGD(momentum=0.9),
        "rmsprop": lambda: O.RMSprop(),
        "rmsprop-centered": lambda: O.RMSprop(momentum=0.9, centered=True),
        "adagrad": lambda: O.Adagrad(), "adamax": lambda: O.Adamax(),
        "adadelta": lambda: O.Adadelta(), "ftrl": lambda: O.Ftrl(), "lion": lambda: O.Lion(),
        "adam-schedule": lambda: O.Adam(O.schedules.ExponentialDecay(0.1, 10, 0.9)),
    }
    cases.update({f"optimizer-{name}": (small, make) for name, make in optimizers.items()})
    return cases


def write(directory: str) -> list[str]:
    import keras
    import numpy as np
    done = []
    for number, (case, (build, optimizer)) in enumerate(_cases().items()):
        keras.utils.set_random_seed(number)
        model = build()
        rng = np.random.default_rng(number)
        for variable in model.weights:
            if variable.dtype in ("float32", "float16"):
                variable.assign(rng.standard_normal(tuple(variable.shape)).astype(variable.dtype))
        opt_vars = []
        if optimizer is not None:
            model.compile(optimizer=optimizer(), loss="mse")
            model.optimizer.build(model.trainable_variables)
            opt_vars = list(model.optimizer.variables)
            for variable in opt_vars:
                if variable.dtype == "float32":
                    variable.assign(rng.standard_normal(tuple(variable.shape)).astype("float32"))
                else:
                    variable.assign(np.full(tuple(variable.shape), number + 3, variable.dtype))
        model.save(os.path.join(directory, f"{case}.keras"))
        model.save_weights(os.path.join(directory, f"{case}.weights.h5"))
        account = {
            "weights": [[v.path, _digest(v.numpy())] for v in model.weights],
            "optimizer": [[v.path, _digest(v.numpy())] for v in opt_vars],
            "classes": {layer.name: type(layer).__name__ for layer in model.layers},
        }
        with open(os.path.join(directory, f"{case}.json"), "w") as f:
            json.dump(account, f)
        done.append(case)
    return done


def run(directory: str) -> list[str]:
    """Write every case into `directory` in a Keras 3 subprocess; the case names."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), directory],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-4000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(write(sys.argv[1])))
