"""TensorFlow-written checkpoints and SavedModels for the checkpoint tests, and TensorFlow as the
oracle on what weightkit writes. Run as a script in a subprocess (Keras 3 and tf_keras do not
mix in one process) with a JSON list of jobs; prints `@@RESULT@@` and a JSON list of results:

    ["make", CASE, DIR]      -> {"path": ...} of the checkpoint or SavedModel TensorFlow wrote
                                (the `*-wide-ckpt` cases also write DIR/creation_order.json:
                                the framework's variable names in the order it created them)
    ["dump", PATH]           -> {key: [dtype, shape, sha256]} read by tf.train.load_checkpoint
    ["restore", CASE, PATH]  -> rebuilds CASE's model, restores PATH with assert_consumed(),
                                trains one step; {name: sha256} of the restored variables
    ["restore-fresh", CASE, PATH] -> the same with a fresh optimizer, from a checkpoint without
                                optimizer state: {"weights": {name: sha256}, "iterations": n}
    ["serve", DIR, TAGS?]    -> outputs of serving_default on a fixed input (of the meta graph
                                with TAGS, a list, when the SavedModel holds several)
    ["next", PATH]           -> the next batch of the `variant` case's restored dataset iterator

The `keras3-order-*` cases write DIR/model.keras, DIR/model.weights.h5, the sharded
DIR/model.weights.json, a checkpoint DIR/ckpt-1 of model and optimizer, and DIR/order.json: the
digests of `model.weights` then `optimizer.variables`, in the framework's order.

`run(jobs)` does this from a test.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))

import numpy as np  # noqa: E402

import models  # noqa: E402

MODEL_CASES = {  # case -> (framework, model, how it is saved)
    "keras3-ckpt": ("keras3", "conv", "checkpoint"),
    "keras3-ckpt-noopt": ("keras3", "mlp", "checkpoint-model-only"),
    "tfkeras-ckpt": ("tf_keras", "conv", "save_weights"),
    "tfkeras-lstm-ckpt": ("tf_keras", "lstm", "save_weights"),
    "tfkeras-mlp-ckpt": ("tf_keras", "mlp", "save_weights"),
    "keras3-export": ("keras3", "mlp", "export"),
    "tfkeras-savedmodel": ("tf_keras", "mlp", "savedmodel"),
}


# Twelve Dense layers trained one step, so keys count past ten (`layer_with_weights-10`,
# `_operations/10`, `optimizer/_variables/10`) and sort differently from creation order.
WIDE_CASES = {"keras3-wide-ckpt": "keras3", "tfkeras-wide-ckpt": "tf_keras"}
WIDE_LAYERS = 12


def digest(value) -> str:
    array = np.asarray(value)
    if array.dtype == object:
        return hashlib.sha256(b"\x00".join(bytes(v) for v in array.reshape(-1))).hexdigest()
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _keras_model(case: str):
    framework, model_case, how = MODEL_CASES[case]
    return models.build(model_case, framework, optimizer=how not in ("checkpoint-model-only",
                                                                      "export")), framework, \
        model_case, how


def _tf_checkpoint(model, how: str):
    import tensorflow as tf
    if how == "checkpoint":
        return tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    return tf.train.Checkpoint(model=model)


def _wide(framework: str, directory: str) -> dict:
    """The wide model saved as a checkpoint, and its creation order in creation_order.json."""
    import tensorflow as tf
    k = models.framework_module(framework)
    k.backend.clear_session()
    models.seed_everything(framework)
    inp = k.Input((3,), name="x")
    h = inp
    for i in range(WIDE_LAYERS):
        h = k.layers.Dense(3, name=f"dense_{i}")(h)
    model = k.Model(inp, h, name="wide")
    models.compile_model(model, framework)
    rng = np.random.default_rng(0)
    model.train_on_batch(rng.standard_normal((4, 3)).astype("float32"),
                         rng.standard_normal((4, 3)).astype("float32"))
    names = [models.variable_name(v, framework).removesuffix(":0")
             for v in [*model.weights, *models.optimizer_variables(model)]]
    with open(os.path.join(directory, "creation_order.json"), "w") as f:
        json.dump(names, f)
    if framework == "keras3":
        ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
        return {"path": ckpt.save(os.path.join(directory, "ckpt"))}
    path = os.path.join(directory, "w.ckpt")
    model.save_weights(path)
    return {"path": path}


# Two nested Functional models with a Dense `head` each: Keras 3 gives both the path
# `head/kernel`, and its optimizer lists the trainable ones, so TensorFlow keys them
# `optimizer/_trainable_variables/N`; saved as `Checkpoint(net=model, opt=optimizer)`, the
# optimizer's own variables are `opt/...` and reachable as `net/optimizer/...` too.
HEADS_CASES = {"keras3-heads-ckpt": "model-and-optimizer", "keras3-heads-net-ckpt": "net"}


def _heads(how: str, directory: str) -> dict:
    """The two-heads model trained one step, as `Checkpoint(model=, optimizer=)` or (`net`)
    as `Checkpoint(net=, opt=)`."""
    import keras
    import tensorflow as tf
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    L = keras.layers

    def branch(name: str):
        x = keras.Input((4,))
        return keras.Model(x, L.Dense(3, name="head")(L.Dense(4, name=f"{name}_d")(x)), name=name)
    x = keras.Input((4,), name="x")
    h = L.Concatenate(name="cat")([branch("a")(x), branch("b")(x)])
    model = keras.Model(x, L.Dense(2, name="out")(h), name="heads")
    model.compile(optimizer=keras.optimizers.Adam(0.01, name="adam"), loss="mse")
    rng = np.random.default_rng(0)
    model.train_on_batch(rng.standard_normal((4, 4)).astype("float32"),
                         rng.standard_normal((4, 2)).astype("float32"))
    objects = {"net": model, "opt": model.optimizer} if how == "net" else \
        {"model": model, "optimizer": model.optimizer}
    return {"path": tf.train.Checkpoint(**objects).save(os.path.join(directory, "ckpt"))}


def _order_model(case: str):
    """A Keras 3 model whose HDF5 group order (by name) is not its order: Sequential and
    Functional with more than ten layers, models nested in models, layers made of sublayers."""
    import keras
    L = keras.layers
    if case == "keras3-order-sequential":
        return keras.Sequential([keras.Input((4,))] + [
            L.BatchNormalization() if i % 4 == 3 else L.Dense(4) for i in range(12)])
    x = keras.Input((4,), name="x")
    if case == "keras3-order-functional":
        h, side = x, L.Dense(4, name="side")(x)
        for i in range(11):
            h = L.Dense(4, name=f"d{i}")(h)
            if i == 4:
                h = L.BatchNormalization(name="bn")(h)
        h = L.LayerNormalization(name="ln")(keras.ops.add(h, side))  # an operation, not a layer
        return keras.Model(x, L.Dense(2, name="out")(h))
    if case == "keras3-order-nested":
        fx = keras.Input((4,))
        deepest = keras.Model(fx, L.Dense(4, name="fd")(L.Dense(5, name="fc")(fx)), name="deep")
        inner = keras.Sequential([L.Dense(4, name="s0"), L.BatchNormalization(name="sbn"), deepest,
                                  L.Dense(4, name="s1")], name="inner")
        gx = keras.Input((4,))
        side = keras.Model(gx, L.Dense(4, name="g0")(gx), name="side")
        a = L.Dense(4, name="pre")(x)
        h = L.Concatenate(name="cat")([inner(a), side(a)])
        return keras.Model(x, L.Dense(2, name="post")(h))
    if case == "keras3-order-composite":
        seq = keras.Input((5, 4), name="x")
        h = L.MultiHeadAttention(2, 3, use_gate=True, name="mha")(seq, seq)
        h = L.Bidirectional(L.LSTM(3, return_sequences=True), name="bi")(h)
        h = L.GroupQueryAttention(3, 2, 1, name="gqa")(h, h)
        return keras.Model(seq, L.TimeDistributed(L.Dense(2), name="td")(h))
    raise SystemExit(f"unknown case {case!r}")


def _ordered(case: str, directory: str) -> dict:
    """An `_order_model` trained one step and saved every Keras 3 way, with order.json."""
    import keras
    import tensorflow as tf
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = _order_model(case)
    model.compile(optimizer=keras.optimizers.Adam(0.01, name="adam"), loss="mse")
    rng = np.random.default_rng(0)
    x_shape, y_shape = model.input_shape[1:], model.output_shape[1:]
    model.train_on_batch(rng.standard_normal((4, *x_shape)).astype("float32"),
                         rng.standard_normal((4, *y_shape)).astype("float32"))
    model.save(os.path.join(directory, "model.keras"))
    model.save_weights(os.path.join(directory, "model.weights.h5"))
    model.save_weights(os.path.join(directory, "model.weights.json"), max_shard_size=2e-6)
    tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(
        os.path.join(directory, "ckpt"))
    with open(os.path.join(directory, "order.json"), "w") as f:
        json.dump([digest(v.numpy()) for v in [*model.weights, *model.optimizer.variables]], f)
    return {"path": directory}


def make(case: str, directory: str) -> dict:
    import tensorflow as tf
    os.makedirs(directory, exist_ok=True)
    if case in WIDE_CASES:
        return _wide(WIDE_CASES[case], directory)
    if case.startswith("keras3-order-"):
        return _ordered(case, directory)
    if case in HEADS_CASES:
        return _heads(HEADS_CASES[case], directory)
    if case in MODEL_CASES:
        model, framework, model_case, how = _keras_model(case)
        if getattr(model, "optimizer", None) is not None:
            models.train(model, model_case, 2)
        if how in ("checkpoint", "checkpoint-model-only"):
            return {"path": _tf_checkpoint(model, how).save(os.path.join(directory, "ckpt"))}
        if how == "save_weights":
            path = os.path.join(directory, "w.ckpt")
            model.save_weights(path)
            return {"path": path}
        if how == "export":
            path = os.path.join(directory, "exported")
            model.export(path, verbose=False)
            return {"path": path}
        path = os.path.join(directory, "saved")
        model.save(path)
        return {"path": path}
    if case == "dtypes":
        import ml_dtypes
        rng = np.random.default_rng(0)
        values = {
            "bf16": tf.constant(rng.standard_normal((3, 5)).astype(ml_dtypes.bfloat16)),
            "f16": tf.constant(rng.standard_normal((4,)).astype(np.float16)),
            "i8": tf.constant(np.arange(-5, 5, dtype=np.int8)),
            "flag": tf.constant([True, False, True]),
            "c64": tf.constant(np.array([1 + 2j, 3 - 4j], np.complex64)),
            "c128": tf.constant(np.array([[1 + 2j]], np.complex128)),
            "words": tf.constant([[b"alpha", b""], [b"\x00\xff", "é".encode()]]),
            "word": tf.constant(b"scalar string"),
            "f8": tf.constant(rng.standard_normal(6).astype(ml_dtypes.float8_e4m3fn)),
            "u64": tf.constant(np.array([0, 2**64 - 1], np.uint64)),
            "i4": tf.constant(np.array([-8, -1, 0, 7], ml_dtypes.int4)),
            "empty": tf.zeros((0, 3)),
            "scalar": tf.constant(2.5, tf.float64),
        }
        ckpt = tf.train.Checkpoint(**{k: tf.Variable(v, name=k) for k, v in values.items()})
        return {"path": ckpt.write(os.path.join(directory, "ckpt"))}
    if case == "tf1-partitioned":
        g = tf.Graph()
        with g.as_default():
            v1 = tf.compat.v1
            part = v1.get_variable("part", shape=(10, 3), partitioner=v1.fixed_size_partitioner(3),
                                   initializer=v1.random_normal_initializer(seed=1))
            dense = v1.get_variable("dense/kernel", shape=(3, 2),
                                    initializer=v1.random_normal_initializer(seed=2))
            loss = tf.reduce_sum(tf.matmul(part, dense))
            step = v1.train.get_or_create_global_step()
            train = v1.train.AdamOptimizer(0.1).minimize(loss, global_step=step)
            saver = v1.train.Saver()
            with v1.Session(graph=g) as sess:
                sess.run(v1.global_variables_initializer())
                sess.run(train)
                path = saver.save(sess, os.path.join(directory, "model.ckpt"), global_step=step)
        return {"path": path}
    if case == "sharded":
        rng = np.random.default_rng(1)
        variables = {f"v{i}": tf.Variable(rng.standard_normal((64, 50)).astype(np.float32),
                                          name=f"v{i}") for i in range(6)}
        ckpt = tf.train.Checkpoint(**variables)
        policy = tf.train.experimental.MaxShardSizePolicy(max_shard_size=20000)
        options = tf.train.CheckpointOptions(experimental_sharding_callback=policy)
        return {"path": ckpt.write(os.path.join(directory, "ckpt"), options=options)}
    if case == "variant":
        iterator = iter(tf.data.Dataset.range(10).batch(3))
        next(iterator)
        ckpt = tf.train.Checkpoint(it=iterator, w=tf.Variable([1.0, 2.0], name="w"))
        return {"path": ckpt.save(os.path.join(directory, "ckpt"))}
    if case == "tf-savedmodel":
        module = tf.Module()
        module.w = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="w")
        module.b = tf.Variable(np.ones(3, np.float32), name="b")
        module.f = tf.function(lambda x: {"y": tf.matmul(x, module.w) + module.b},
                               input_signature=[tf.TensorSpec((None, 2), tf.float32)])
        path = os.path.join(directory, "module")
        tf.saved_model.save(module, path, signatures={"serving_default": module.f})
        return {"path": path}
    if case == "tf-constants-savedmodel":  # weights as constants: variables/ has none
        rng = np.random.default_rng(0)
        module = tf.Module()
        w = tf.constant(rng.standard_normal((2, 3)).astype(np.float32))
        b = tf.constant(np.full(3, 0.25, np.float32))  # one float_val, broadcast
        module.f = tf.function(lambda x: {"y": tf.matmul(x, w) + b},
                               input_signature=[tf.TensorSpec((None, 2), tf.float32)])
        path = os.path.join(directory, "constants")
        tf.saved_model.save(module, path, signatures={"serving_default": module.f})
        return {"path": path}
    raise SystemExit(f"unknown case {case!r}")


def dump(path: str) -> dict:
    import tensorflow as tf
    reader = tf.train.load_checkpoint(path)
    out = {}
    for key, shape in reader.get_variable_to_shape_map().items():
        dtype = reader.get_variable_to_dtype_map()[key].name
        value = None if dtype == "variant" else digest(reader.get_tensor(key))
        out[key] = [dtype, list(shape), value]
    return out


def restore(case: str, path: str) -> dict:
    model, framework, model_case, how = _keras_model(case)
    if how == "save_weights":
        model.load_weights(path).assert_consumed()
    else:
        _tf_checkpoint(model, how).restore(path).assert_consumed()
    restored = models.weights_of(model, framework, include_optimizer=True)
    if getattr(model, "optimizer", None) is not None:
        models.train(model, model_case, 1)
    return {name: digest(value) for name, value in restored.items()}


def restore_fresh(case: str, path: str) -> dict:
    """Rebuild CASE's model with a fresh optimizer (built), read PATH (a checkpoint without
    optimizer state) with assert_existing_objects_matched(), train one step; the model's
    weights as restored and the optimizer's iterations."""
    import tensorflow as tf
    model, framework, model_case, how = _keras_model(case)
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    tf.train.Checkpoint(model=model, optimizer=optimizer).read(path) \
        .assert_existing_objects_matched()
    restored = models.weights_of(model, framework, include_optimizer=False)
    iterations = int(np.asarray(optimizer.iterations))
    models.train(model, model_case, 1)
    return {"weights": {name: digest(value) for name, value in restored.items()},
            "iterations": iterations}


def next_batch(path: str) -> list:
    """Restore the `variant` case's dataset iterator from PATH; its next batch."""
    import tensorflow as tf
    iterator = iter(tf.data.Dataset.range(10).batch(3))
    tf.train.Checkpoint(it=iterator, w=tf.Variable([0.0, 0.0])).restore(path).assert_consumed()
    return next(iterator).numpy().tolist()


def serve(path: str, tags: list[str] | None = None) -> dict:
    import tensorflow as tf
    loaded = tf.saved_model.load(path, tags=tags)
    fn = loaded.signatures["serving_default"]
    spec = list(fn.structured_input_signature[1].values())[0]
    shape = [2 if d is None else d for d in spec.shape]
    x = tf.constant(np.linspace(-1, 1, int(np.prod(shape)), dtype=np.float32).reshape(shape))
    return {k: np.asarray(v).tolist() for k, v in fn(x).items()}


COMMANDS = {"make": make, "dump": dump, "restore": restore, "restore-fresh": restore_fresh,
            "serve": serve, "next": next_batch}
MARK = "@@RESULT@@"


def run(jobs: list[list[str]]) -> list:
    """Run `jobs` in a fresh Python process; returns their results in order."""
    import subprocess
    done = subprocess.run([sys.executable, os.path.abspath(__file__), json.dumps(jobs)],
                          capture_output=True, text=True, timeout=600)
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise AssertionError(f"TensorFlow jobs {jobs} failed:\n{done.stderr[-3000:]}")


def make_cases(root, groups: dict[str, list[str]]) -> dict[str, str]:
    """{case: path} of every case in `groups`, written under `root` by TensorFlow: one process
    per group (Keras 3 and tf_keras do not mix in one), the groups in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    def make_group(cases):
        return run([["make", case, os.path.join(str(root), case)] for case in cases])

    with ThreadPoolExecutor(len(groups)) as pool:
        results = dict(zip(groups, pool.map(make_group, groups.values())))
    return {case: result["path"] for group, cases in groups.items()
            for case, result in zip(cases, results[group])}


if __name__ == "__main__":
    results = [COMMANDS[command](*args) for command, *args in json.loads(sys.argv[1])]
    print(MARK + json.dumps(results))
