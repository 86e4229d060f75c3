"""Keras 3 itself checks the naming table (`weightkit.converters.keras_names`): for every
built-in layer class in the table and every optimizer, Keras writes a model
(`keras_names_cases.py`), and weightkit must name each variable of the `.keras` and of the bare
`.weights.h5` exactly as Keras does (`variable.path`), paired with the right values; where a bare
file cannot tell variables apart it keeps their positions (its one assumption: an optimizer
without `use_ema` or gradient accumulation when such a plan fits, keras_names.optimizer_names)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import keras_names_cases
import weightkit
from weightkit.converters.keras_names import LAYERS, OPTIMIZERS, layer_variables, to_snake_case

# In a bare .weights.h5 (no config.json) one variable of a LayerNormalization or three of a
# BatchNormalization could be gamma or beta: the table cannot tell, the names stay positional.
AMBIGUOUS_WITHOUT_CONFIG = {"batchnorm-noscale", "batchnorm-nocenter", "layernorm-nocenter"}
# A quantized layer lists its variables (`layer.weights`) in another order than it saves them.
QUANTIZED = {"dense-int8", "embedding-int8"}


def digest(value) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(value)).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, list[str]]:
    directory = tmp_path_factory.mktemp("keras_names")
    return directory, keras_names_cases.run(str(directory))


def named(path: Path) -> list[tuple[str, str]]:
    with weightkit.load(path) as store:
        return [(name, digest(tensor.read())) for name, tensor in store.items()]


@pytest.mark.tensorflow
def test_archives_name_every_variable_as_keras(written) -> None:
    directory, cases = written
    assert len(cases) > 50
    for case in cases:
        account = json.loads((directory / f"{case}.json").read_text())
        want = [tuple(v) for v in account["weights"] + account["optimizer"]]
        got = named(directory / f"{case}.keras")
        if case in QUANTIZED:
            assert sorted(got) == sorted(want), case
        else:
            assert got == want, case


@pytest.mark.tensorflow
def test_bare_weights_name_what_they_can_tell(written) -> None:
    directory, cases = written
    for case in cases:
        account = json.loads((directory / f"{case}.json").read_text())
        got = dict(named(directory / f"{case}.weights.h5"))
        want = {name: d for name, d in account["weights"] + account["optimizer"]}
        if case in AMBIGUOUS_WITHOUT_CONFIG:
            by_digest = {d: name for name, d in want.items()}
            positional = [n for n in got if n.rsplit("/", 1)[1].isdigit()]
            assert positional and all(by_digest[got[n]].rsplit("/", 1)[0] == n.rsplit("/", 1)[0]
                                      for n in positional), case
            assert {n: d for n, d in got.items() if n not in positional} == \
                {n: d for n, d in want.items() if d not in {got[p] for p in positional}}, case
        else:
            assert got == want, case


@pytest.mark.tensorflow
def test_every_table_class_is_built_by_keras(written) -> None:
    """The table holds no class Keras does not have under that name, and the cases cover the
    table (wrappers and models are covered through what they hold)."""
    directory, cases = written
    built = set()
    for case in cases:
        built |= set(json.loads((directory / f"{case}.json").read_text())["classes"].values())
    cells = {"LSTMCell", "GRUCell", "SimpleRNNCell", "ConvLSTMCell"}
    missing = set(LAYERS) - built - cells - {"RNN", "ConvLSTM1D", "ConvLSTM3D", "InputLayer",
                                               "Functional", "Sequential"}
    assert not missing


def test_table_variants_follow_the_config_flags() -> None:
    """With a config the flags choose (no guessing from shapes); without one, a variant is
    taken only when the held shapes and dtypes allow no other."""
    f32 = "float32"
    assert [v[0] for v in layer_variables("Dense", {"use_bias": False}, [((3, 4), f32)])] == \
        ["kernel"]
    assert layer_variables("Dense", {"use_bias": True}, [((3, 4), f32)]) is None
    assert [v[0] for v in layer_variables("BatchNormalization", {"scale": False},
                                          [((3,), f32)] * 3)] == \
        ["beta", "moving_mean", "moving_variance"]
    assert layer_variables("BatchNormalization", None, [((3,), f32)] * 3) is None
    assert [v[0] for v in layer_variables("Dense", None, [((3, 4), "int8"), ((4,), f32),
                                                          ((4,), f32)])] == \
        ["kernel", "bias", "kernel_scale"]
    assert layer_variables("Dense", None, [((4,), f32), ((3, 4), f32)]) is None
    assert layer_variables("MyLayer", None, [((3, 4), f32)]) is None
    assert to_snake_case("PReLU") == "p_re_lu" and to_snake_case("ConvLSTM2D") == "conv_lstm2d"
    assert set(OPTIMIZERS) >= {"Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Nadam", "Lion"}
