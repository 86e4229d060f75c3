"""The order in which the Keras 3 readers list variables: the model's (`model.weights`, then
`optimizer.variables`), not HDF5's alphabetical group order. `.keras` takes it from config.json,
a sharded `.weights.json` from its weight_map; a bare `.weights.h5` lists groups in natural order.
A config that is hostile or does not match the weights changes neither names nor values, only
leaves natural order. The framework-written cases come from `tf_cases.py` in a subprocess."""
from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import weightkit
from fixtures_lib import fixture, manifest, models, select, same_weights
from test_keras_v3 import rewrite_archive
from tf_cases import digest, make_cases
from weightkit.cli.main import main
from weightkit.converters import keras_v3

ARCHIVES = select(format="keras")
SHARDED = select(layout="keras3-weights-h5-sharded")
ORDER_CASES = ["keras3-order-sequential", "keras3-order-functional", "keras3-order-nested",
               "keras3-order-composite"]


def model_order(entry: dict) -> list[str]:
    """The digests of a fixture's variables in the framework's order (the manifest's)."""
    return [v["sha256"] for v in entry["variables"] + (entry.get("optimizer_variables") or [])]


def listed(path: Path | str, how=models.value_digest) -> list[str]:
    with weightkit.load(path) as store:
        return [how(t.read()) for t in store.values()]


def contents(path: Path | str) -> dict[str, tuple]:
    """{name: (role, dtype, shape, bytes)}: what a store holds, whatever its order."""
    with weightkit.load(path) as store:
        return {n: (t.role, t.dtype_name, t.shape, t.read().tobytes()) for n, t in store.items()}


def config_of(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("config.json"))


# -- committed fixtures (no framework) -----------------------------------------------------------

@pytest.mark.parametrize("entry", ARCHIVES + SHARDED, ids=[e["path"] for e in ARCHIVES + SHARDED])
def test_fixtures_list_the_models_order(entry: dict) -> None:
    """conv lists c1, bn, out (not batch_normalization, conv2d, dense); mha its query, key,
    value and output projections in that order."""
    assert listed(fixture(entry)) == model_order(entry)


@pytest.mark.parametrize("case", ["mlp--keras3.keras", "conv--keras3-before.keras",
                                  "mha--keras3.keras"])
def test_order_from_config_when_name_attrs_are_missing(case: str, tmp_path: Path) -> None:
    stripped = rewrite_archive(fixture(case), tmp_path / "old.keras", strip_names=True)
    assert listed(stripped) == model_order(manifest()[case])


def test_bare_weights_list_sublayers_in_creation_order() -> None:
    """A bare .weights.h5 has no model order; inside a layer, MultiHeadAttention's projections
    still come as Keras creates them (its groups are saved by attribute name)."""
    entry = manifest()["mha--keras3.weights.h5"]
    with weightkit.load(fixture(entry)) as store:
        mha = [models.value_digest(t.read()) for n, t in store.items() if n.startswith("mha/")]
    want = [v["sha256"] for v in entry["variables"] if v["name"].startswith("mha/")]
    assert mha == want


def test_bare_weights_in_natural_order(tmp_path: Path) -> None:
    """Numbers by value (`dense_2` before `dense_10`, `vars/9` before `vars/10`), a layer's own
    variables before its sublayers', the model's own variables first, the optimizer last."""
    path = tmp_path / "x.weights.h5"
    with h5py.File(path, "w") as f:
        for i in (10, 2, 1, 0):
            f.create_dataset(f"layers/dense_{i}/vars/0", data=np.full(2, i, np.float32))
        f.create_group("layers/dense")
        for i in range(12):
            f.create_dataset(f"layers/dense/vars/{i}", data=np.full(1, i, np.float32))
        f.create_dataset("layers/wrapper/inner/vars/0", data=np.zeros(3, np.float32))
        f.create_dataset("layers/wrapper/vars/0", data=np.ones(3, np.float32))
        for i in range(12):
            f.create_dataset(f"optimizer/vars/{i}", data=np.full(1, i, np.float32))
        f.create_dataset("vars/0", data=np.ones(4, np.float32))
    with weightkit.load(path) as store:
        keys = [t.meta["key"] for t in store.values()]
    assert keys == ["vars/0", *[f"layers/dense/vars/{i}" for i in range(12)],
                    *[f"layers/dense_{i}/vars/0" for i in (0, 1, 2, 10)],
                    "layers/wrapper/vars/0", "layers/wrapper/inner/vars/0",
                    *[f"optimizer/vars/{i}" for i in range(12)]]


def test_numbers_too_long_for_int_are_ordered(tmp_path: Path) -> None:
    """Group names are untrusted: a 5000-digit number (past Python's int() limit) sorts by
    value like any other."""
    path = tmp_path / "x.weights.h5"
    long, longer = "9" * 5000, "1" + "0" * 5000
    with h5py.File(path, "w") as f:
        for where in (f"layers/dense_{longer}/vars/0", f"layers/dense_{long}/vars/0",
                      f"layers/dense_2/vars/{long}", "layers/dense_2/vars/3"):
            f.create_dataset(where, data=np.zeros(1, np.float32))
    with weightkit.load(path) as store:
        keys = [t.meta["key"] for t in store.values()]
    assert keys == ["layers/dense_2/vars/3", f"layers/dense_2/vars/{long}",
                    f"layers/dense_{long}/vars/0", f"layers/dense_{longer}/vars/0"]


def test_sharded_weights_in_index_order_across_shards(tmp_path: Path) -> None:
    """The weight_map lists the `vars` groups as Keras saved them; a group split across shards
    (the optimizer's) keeps its numbering."""
    shards = {"s_00000.weights.h5": ["layers/conv2d/vars/0", "layers/conv2d/vars/1",
                                     "layers/batch_normalization/vars/0",
                                     *[f"optimizer/vars/{i}" for i in range(10)]],
              "s_00001.weights.h5": ["optimizer/vars/10", "optimizer/vars/11",
                                     "layers/dense/vars/0"]}
    for name, paths in shards.items():
        with h5py.File(tmp_path / name, "w") as f:
            for i, where in enumerate(paths):
                f.create_dataset(where, data=np.full(2, i, np.float32))
    index = {"weight_map": {"/layers/conv2d/vars": ["s_00000.weights.h5"],
                            "/layers/batch_normalization/vars": ["s_00000.weights.h5"],
                            "/layers/dense/vars": ["s_00001.weights.h5"],
                            "/optimizer/vars": ["s_00000.weights.h5", "s_00001.weights.h5"]}}
    (tmp_path / "s.weights.json").write_text(json.dumps(index))
    with weightkit.load(tmp_path / "s.weights.json") as store:
        keys = [t.meta["key"].split(":", 1)[1] for t in store.values()]
    assert keys == ["layers/conv2d/vars/0", "layers/conv2d/vars/1",
                    "layers/batch_normalization/vars/0", "layers/dense/vars/0",
                    *[f"optimizer/vars/{i}" for i in range(12)]]


def _pairs_by_structure(a: Path | str, b: Path | str, capsys) -> dict:
    code = main(["diff", str(a), str(b), "--match", "structure", "--format", "json"],
                prog="weightkit")
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1), report
    return report


TWINS = [(e, t) for group in same_weights().values() for e in group if e["format"] == "keras"
         for t in group if t["format"] == "tf-checkpoint"]


@pytest.mark.parametrize("keras_entry,ckpt_entry", TWINS, ids=[e["path"] for e, _ in TWINS])
def test_structure_diff_against_the_checkpoint_twin(keras_entry: dict, ckpt_entry: dict,
                                                    capsys) -> None:
    """wdiff --match structure pairs each variable of a .keras with the same variable of the
    same model's checkpoint (by position in both lists, whatever the names)."""
    report = _pairs_by_structure(fixture(keras_entry), fixture(ckpt_entry), capsys)
    with weightkit.load(fixture(keras_entry)) as store:
        ours = list(store)
    theirs = [v["name"] for v in ckpt_entry["variables"] + ckpt_entry["optimizer_variables"]]
    assert {e["name_a"]: e["name_b"] for e in report["variables"]} == dict(zip(ours, theirs))
    assert {e["status"] for e in report["variables"]} == {"same"}


# -- hostile or lying configs -------------------------------------------------------------------

def _with_layers(base: str, entries) -> bytes:
    config = config_of(fixture(base))
    return json.dumps({**config, "config": {**config["config"], "layers": entries}}).encode()


def _hostile_configs() -> list[tuple[str, str, bytes]]:
    """(what, base archive, config.json): conv's model order is c1, bn, out, its natural order
    bn, c1, out; mlp's are both d1, d2, so a config listing d2 first would show."""
    conv, mlp = "conv--keras3-before.keras", "mlp--keras3.keras"
    layers = config_of(fixture(conv))["config"]["layers"]
    x, d1, d2 = config_of(fixture(mlp))["config"]["layers"]
    return [
        ("not JSON", conv, b"{not json"),
        ("not UTF-8", conv, b'{"config": "\xff\xfe"}'),
        ("duplicate keys", conv, b'{"config": {}, "config": {}}'),
        ("a 5000-digit integer", conv, b'{"config": {"layers": [' + b"1" * 5000 + b"]}}"),
        ("deep nesting", conv, b"[" * 200_000 + b"]" * 200_000),
        ("over MAX_CONFIG_BYTES", conv,
         json.dumps(config_of(fixture(conv))).encode() + b" " * keras_v3.MAX_CONFIG_BYTES),
        ("a list", conv, b"[]"),
        ("null", conv, b"null"),
        ("config a list", conv, b'{"config": []}'),
        ("layers a string", conv, b'{"config": {"layers": "c1"}}'),
        ("layers of numbers", conv, _with_layers(conv, [1, 2, 3])),
        ("a number among the layers", conv, _with_layers(conv, [*layers, 4])),
        ("layers without names", conv, _with_layers(conv, [{"config": {"name": 5}}] * 9)),
        ("a name twice", conv, _with_layers(conv, [*layers, layers[1]])),
        ("dense_1 before dense", mlp, _with_layers(mlp, [x, d2, d1])),
    ]


def test_hostile_configs_fall_back_silently(tmp_path: Path) -> None:
    """Each config is read as plain data or not at all: the archive reads, with the same names,
    roles and values, in natural order (that of the same weights without a config)."""
    twins = {"conv--keras3-before.keras": "conv--keras3-before.weights.h5",
             "mlp--keras3.keras": "mlp--keras3.weights.h5"}
    for what, base, config in _hostile_configs():
        path = rewrite_archive(fixture(base), tmp_path / "hostile.keras", config)
        got = contents(path)
        assert got == contents(fixture(base)), what
        assert list(got) == list(contents(fixture(twins[base]))), what


def test_groups_the_config_does_not_mention_come_after(tmp_path: Path) -> None:
    base = fixture("conv--keras3-before.keras")
    by_name = {layer["config"]["name"]: layer for layer in config_of(base)["config"]["layers"]}
    config = _with_layers(base.name, [by_name["out"], by_name["c1"], by_name["x"]])
    path = rewrite_archive(base, tmp_path / "partial.keras", config)
    got = contents(path)
    assert got == contents(base)
    weights = [n for n, (role, *_) in got.items() if role == "weight"]
    assert weights == ["out/kernel", "out/bias", "c1/kernel", "c1/bias", "bn/gamma", "bn/beta",
                       "bn/moving_mean", "bn/moving_variance"]


# -- models written by Keras 3 ------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras_made(tmp_path_factory) -> dict[str, Path]:
    """{case: directory} of the `keras3-order-*` cases, written by Keras 3 in one subprocess."""
    made = make_cases(tmp_path_factory.mktemp("keras_order"), {"keras3": ORDER_CASES})
    return {case: Path(path) for case, path in made.items()}


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", ORDER_CASES)
def test_keras_written_models_list_keras_order(keras_made: dict, case: str,
                                               tmp_path: Path) -> None:
    """`.keras` and sharded `.weights.json` list `model.weights` then `optimizer.variables`
    exactly as Keras does: a Sequential and a Functional (with a `keras.ops` call) of more than
    ten layers, models nested three deep, MultiHeadAttention (gated), Bidirectional and
    GroupQueryAttention; also from class names, without the `vars` `name` attrs. A bare
    `.weights.h5` holds the same variables, those of each layer (with its sublayers) in Keras'
    order."""
    directory = keras_made[case]
    want = json.loads((directory / "order.json").read_text())
    assert listed(directory / "model.keras", digest) == want
    assert listed(directory / "model.weights.json", digest) == want
    if case != "keras3-order-composite":  # its GroupQueryAttention is saved under another name
        stripped = rewrite_archive(directory / "model.keras", tmp_path / "old.keras",
                                   strip_names=True)
        assert listed(stripped, digest) == want
    archive = contents(directory / "model.keras")
    bare = contents(directory / "model.weights.h5")
    assert {n: c for n, c in bare.items() if c[0] == "weight"} == \
        {n: c for n, c in archive.items() if c[0] == "weight"}
    # Without config.json the optimizer's slots are named only when one order of the layers
    # fits their shapes; here several do (same-shaped layers of several classes): positions.
    assert sorted(c for c in bare.values() if c[0] != "weight") == \
        sorted(c for c in archive.values() if c[0] != "weight")
    with weightkit.load(directory / "model.weights.h5") as store:
        groups = {n: re.sub(r"/vars/\d+$", "", t.meta["key"]) for n, t in store.items()
                  if t.role == "weight"}
    # the layer that holds each variable: a top-level layer (with its sublayers), or a layer
    # of a nested model
    owner = {n: g.split("/")[1] if g.startswith("layers/") and "/layers/" not in g else g
             for n, g in groups.items()}
    for layer in set(owner.values()):
        assert [n for n in owner if owner[n] == layer] == \
            [n for n in archive if n in owner and owner[n] == layer], layer


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", ORDER_CASES)
def test_keras_written_models_pair_with_their_checkpoint(keras_made: dict, case: str,
                                                         capsys) -> None:
    """The .keras against the TF checkpoint of the same model: every variable pairs by
    structure with its twin (equal values); only the checkpoint's save_counter is left."""
    directory = keras_made[case]
    report = _pairs_by_structure(directory / "model.keras", directory / "ckpt-1", capsys)
    assert {e["status"] for e in report["variables"] if e["name_a"]} == {"same"}
    assert not report["summary"]["unmatched_a"]
    assert report["summary"]["unmatched_b"] == ["save_counter"]
