"""A Keras 3 model and TF.js layers models (issue 16, item 2: "convert a Keras model to a TF.js
layers model").

TF.js 4.22 cannot load a Keras 3 model as a layers model, not even as the TF.js converter
(tensorflowjs 4.22) writes it: the converter copies the Keras 3 config, which TF.js layers cannot
read, and names a `.keras` archive's weights by position (`layers/dense/vars/0`), which no TF.js
layer owns. The oracles here: the converter itself and TF.js in node show that (so that the day
one of them learns Keras 3, this test fails and the refusal is revisited); weightkit refuses in
one line, naming the file and the route that works; and that route (the Keras 3 weights written
into a TF.js layers model of the same architecture, `--like WEB_MODEL --weights-only`) gives a
model TF.js loads with Keras 3's weights bit for bit and runs as Keras 3 does.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import weightkit
from conftest import run_cli
from fixtures_lib import fixture
from test_tfjs_oracle import JS, array, files, input_for, needs_tfjs, same_bits, tfjs

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
KERAS3 = ["mlp--keras3.keras", "nested--keras3.keras", "mlp--keras3-legacy.h5",
          "nested--keras3-legacy.h5"]
HAVE_CONVERTER = importlib.util.find_spec("tensorflowjs") is not None
needs_converter = pytest.mark.skipif(
    not HAVE_CONVERTER, reason="the TF.js converter is missing: pip install --no-deps "
                               "tensorflowjs==4.22.0 (make test and make fixtures do)")


def _refusal(source: Path, out: Path) -> str:
    result = run_cli("convert", source, out, "--to", "tfjs", "--allow-lossy")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert not out.exists()  # no partial output
    return lines[0]


# --- weightkit refuses, in one line naming the file and what to do ------------------------------

@pytest.mark.parametrize("name", KERAS3)
def test_keras3_model_to_tfjs_is_refused_naming_the_file_and_the_route(
        tmp_path: Path, name: str) -> None:
    """A Keras 3 `.keras` archive and a Keras 3 legacy `.h5`: exit 2, one line, whatever
    --allow-lossy says (nothing weightkit could write would load as a layers model)."""
    line = _refusal(fixture(name), tmp_path / "web_model")
    assert line.startswith(f"weightkit: error: {fixture(name)}: TF.js cannot load a Keras 3 "
                           "model (keras 3."), line
    assert "as a layers model" in line and "--like WEB_MODEL --weights-only" in line, line
    with weightkit.load(fixture(name)) as store:
        with pytest.raises(weightkit.UsageError, match="TF.js cannot load a Keras 3 model"):
            weightkit.save(store, tmp_path / "api", "tfjs", allow_lossy=True)
    assert not (tmp_path / "api").exists()


def test_keras3_model_carried_through_safetensors_is_refused_too(tmp_path: Path) -> None:
    """The `.keras` archive travels in safetensors' metadata: the same model, the same answer."""
    middle = tmp_path / "w.safetensors"
    assert run_cli("convert", fixture("mlp--keras3.keras"), middle).returncode == 0
    line = _refusal(middle, tmp_path / "web_model")
    assert line.startswith(f"weightkit: error: {middle}: TF.js cannot load a Keras 3 model"), line


def test_tf_keras_keras_archive_is_refused_for_its_positional_names(tmp_path: Path) -> None:
    """tf_keras 2.13+ also writes `.keras` archives (metadata.json: keras 2.x, a Keras 2
    config): TF.js could read that config, but the converter names the weights by position,
    which TF.js cannot match. Made from the mlp fixture with metadata.json saying 2.21.0."""
    source = tmp_path / "tfkeras.keras"
    with zipfile.ZipFile(fixture("mlp--keras3.keras")) as old, \
            zipfile.ZipFile(source, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename == "metadata.json":
                data = json.dumps({**json.loads(data), "keras_version": "2.21.0"}).encode()
            new.writestr(info, data)
    line = _refusal(source, tmp_path / "web_model")
    assert "TF.js cannot load a .keras archive (keras 2.21.0) as a layers model" in line, line
    assert "'layers/dense/vars/0'" in line and "--like WEB_MODEL" in line, line


def test_optimizer_state_has_no_place_in_a_layers_template(tmp_path: Path) -> None:
    """Without --weights-only the Keras 3 optimizer state has nowhere to go: the error says
    which flag leaves it out."""
    result = run_cli("convert", fixture("conv--keras3-before.keras"), tmp_path / "web_model",
                     "--to", "tfjs", "--like", fixture("conv--tfjs-layers"))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "no place for 14 optimizer or metric variable(s) (e.g. 'adam/iteration')" \
        in result.stderr and "--weights-only" in result.stderr, result.stderr
    assert not (tmp_path / "web_model").exists()


# --- the route that works: TF.js runs the Keras 3 weights -----------------------------------------

KERAS3_PREDICT = r"""
import json, os, sys
os.environ.pop("TF_USE_LEGACY_KERAS", None)
import numpy as np
import keras
path, x_path = sys.argv[1:]
model = keras.saving.load_model(path, compile=False)
x = json.load(open(x_path))
y = model.predict(np.asarray(x["values"], dtype=x["dtype"]).reshape(x["shape"]), verbose=0)
weights = {w.path: [str(w.dtype), list(w.shape), np.asarray(w.numpy()).tobytes().hex()]
           for w in model.weights}
print(json.dumps({"keras": keras.__version__, "y": y.astype("float32").tobytes().hex(),
                  "shape": list(y.shape), "weights": weights}))
"""


@pytest.mark.tensorflow
@needs_tfjs
def test_keras3_weights_in_a_tfjs_layers_model_load_and_predict_as_keras3(
        tmp_path: Path) -> None:
    """`weightkit convert conv--keras3-before.keras web --to tfjs --like conv--tfjs-layers
    --weights-only`: the template is the TF.js converter's layers model of the same
    architecture built by tf_keras (other values). TF.js loads the result with every weight
    Keras 3 has, bit for bit, and predicts what Keras 3 predicts (float32 through different
    kernels: rtol 1e-5, atol 1e-6); the model.json keeps the template's topology, manifest and
    file sizes."""
    source, template = fixture("conv--keras3-before.keras"), fixture("conv--tfjs-layers")
    out = tmp_path / "web_model"
    result = run_cli("convert", source, out, "--to", "tfjs", "--like", template,
                     "--weights-only", "--quiet")
    assert result.returncode == 0, result.stderr
    ours = json.loads((out / "model.json").read_text())
    theirs = json.loads((template / "model.json").read_text())
    for key in ("format", "generatedBy", "convertedBy", "modelTopology"):
        assert ours[key] == theirs[key], key
    assert [g["weights"] for g in ours["weightsManifest"]] == \
        [g["weights"] for g in theirs["weightsManifest"]]
    assert {k: len(v) for k, v in files(out).items() if k != "model.json"} == \
        {k: len(v) for k, v in files(template).items() if k != "model.json"}

    x = tmp_path / "x.json"
    x.write_text(json.dumps(input_for("conv")))
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    run = subprocess.run([sys.executable, "-c", KERAS3_PREDICT, str(source), str(x)],
                         capture_output=True, text=True, timeout=600,
                         env={**env, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})
    assert run.returncode == 0, run.stderr[-3000:]
    keras3 = json.loads(run.stdout.strip().splitlines()[-1])
    assert keras3["keras"].startswith("3.")

    decoded = tfjs("weights", out / "model.json")
    assert sorted(decoded) == sorted(keras3["weights"])
    template_weights = tfjs("weights", template / "model.json")
    for name, (dtype, shape, hexed) in keras3["weights"].items():
        want = np.frombuffer(bytes.fromhex(hexed), dtype).reshape(shape)
        assert same_bits(array(decoded[name]), want), name
    assert not all(same_bits(array(template_weights[n]), array(decoded[n])) for n in decoded)

    y = np.frombuffer(bytes.fromhex(keras3["y"]), np.float32).reshape(keras3["shape"])
    predicted = array(tfjs("predict", out / "model.json", x))
    np.testing.assert_allclose(predicted, y, rtol=1e-5, atol=1e-6)
    before = array(tfjs("predict", template / "model.json", x))
    assert not np.allclose(before, y, rtol=1e-5, atol=1e-6)  # the template alone does not


# --- the evidence: the TF.js converter's Keras 3 output does not load in TF.js ---------------------

CONVERT = r"""
import importlib, os, sys
from pathlib import Path
os.environ.pop("TF_USE_LEGACY_KERAS", None)
sys.path.insert(0, str(Path(sys.argv[5])))  # fixtures/: the converter set up as it makes them
import make_fixtures
make_fixtures.tensorflowjs()
converter = importlib.import_module("tensorflowjs.converters.converter")
keras_file, keras_out, h5_file, h5_out = sys.argv[1:5]
# tensorflowjs_converter --input_format keras_keras / --input_format keras (converter.py)
converter.dispatch_keras_keras_to_tfjs_layers_model_conversion(keras_file, keras_out)
converter.dispatch_keras_h5_to_tfjs_layers_model_conversion(h5_file, h5_out)
"""


@pytest.mark.tensorflow
@needs_tfjs
@needs_converter
def test_tfjs_converter_output_for_keras3_does_not_load_in_tfjs(tmp_path: Path) -> None:
    """tensorflowjs 4.22 converts mlp--keras3.keras (`keras_keras`; it unpacks the archive
    beside the file, hence the copy) and mlp--keras3-legacy.h5 (`keras`) into layers models
    with the Keras 3 config; TF.js 4.22 refuses both at their first layer. The `.keras` one
    also names its weights by HDF5 path and keeps the optimizer's (its int64 iteration cast to
    int32)."""
    work = tmp_path / "in"
    work.mkdir()
    keras_file = work / "mlp.keras"
    shutil.copyfile(fixture("mlp--keras3.keras"), keras_file)
    outs = {"keras_keras": tmp_path / "from-keras", "keras": tmp_path / "from-h5"}
    run = subprocess.run([sys.executable, "-c", CONVERT, str(keras_file), str(outs["keras_keras"]),
                          str(fixture("mlp--keras3-legacy.h5")), str(outs["keras"]),
                          str(fixture("mlp--keras3.keras").parent)],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                              "CUDA_VISIBLE_DEVICES": ""})
    assert run.returncode == 0, run.stderr[-3000:]
    names = {}
    for kind, out in outs.items():
        doc = json.loads((out / "model.json").read_text())
        assert doc["format"] == "layers-model"
        assert doc["convertedBy"] == "TensorFlow.js Converter v4.22.0"
        layers = doc["modelTopology"]["model_config"]["config"]["layers"]
        assert "batch_shape" in layers[0]["config"]  # the Keras 3 config, as it was
        names[kind] = [w["name"] for g in doc["weightsManifest"] for w in g["weights"]]
    assert names["keras_keras"][:4] == ["layers/dense/vars/0", "layers/dense/vars/1",
                                        "layers/dense_1/vars/0", "layers/dense_1/vars/1"]
    assert "optimizer/vars/0" in names["keras_keras"]
    assert names["keras"] == ["d1/kernel", "d1/bias", "d2/kernel", "d2/bias"]

    x = tmp_path / "x.json"
    x.write_text(json.dumps(input_for("mlp")))
    for kind, out in outs.items():
        load = subprocess.run(["node", "oracle.js", "predict", str(out / "model.json"), str(x)],
                              cwd=JS, capture_output=True, text=True, timeout=300)
        assert load.returncode != 0, (f"TF.js now loads what tensorflowjs_converter "
                                      f"--input_format {kind} writes for Keras 3: write that "
                                      "instead of refusing (converters/keras_config.py, "
                                      "tfjs_unloadable)")
        assert "An InputLayer should be passed either a `batchInputShape` or an " \
               "`inputShape`" in load.stderr, load.stderr[-2000:]
