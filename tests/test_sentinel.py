"""Nothing from a file is executed (issue 7.3): models whose Lambda layer would write a sentinel
file go through show, convert, diff and verify; no sentinel appears and neither keras nor
tensorflow is imported by weightkit. Making the models needs the frameworks; reading them must not.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from weightkit.cli.main import COMMANDS
from weightkit.converters.registry import FORMATS

pytestmark = pytest.mark.tensorflow

FRAMEWORKS = ("tensorflow", "keras", "tf_keras")

RUN = textwrap.dedent("""
    import json, sys
    from weightkit.cli.main import main
    code = main(sys.argv[2:], prog="weightkit")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {frameworks!r})
    with open(sys.argv[1], "w") as f:
        json.dump({{"code": code, "frameworks": loaded}}, f)
""").format(frameworks=set(FRAMEWORKS))

MAKE_KERAS3 = textwrap.dedent("""
    import os, sys
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras
    sentinel, out = sys.argv[1:3]
    writes = eval(f"lambda x: (open({sentinel!r}, 'w').close(), x)[1]")  # the path in the bytecode
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense"),
                              keras.layers.Lambda(writes, name="payload")])
    model(keras.ops.ones((1, 4)))
    model.save(out)
    os.unlink(sentinel)
    keras.saving.load_model(out, safe_mode=False)(keras.ops.ones((1, 4)))  # the payload is live
""")

MAKE_TF_KERAS = textwrap.dedent("""
    import os, sys
    import tf_keras as keras
    sentinel, out = sys.argv[1:3]
    writes = eval(f"lambda x: (open({sentinel!r}, 'w').close(), x)[1]")  # the path in the bytecode
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense"),
                              keras.layers.Lambda(writes, name="payload")])
    model.compile(optimizer="adam", loss="mse")
    model.save(out)
    os.unlink(sentinel)
    keras.models.load_model(out, safe_mode=False)(keras.backend.ones((1, 4)))  # the payload is live
""")

CASES = {  # name -> (format read, script making it and proving the payload runs, file name)
    "keras3-lambda.keras": ("keras", MAKE_KERAS3, "model.keras"),
    "tf-keras-lambda.h5": ("keras-h5", MAKE_TF_KERAS, "model.h5"),
}


def landed(fmt: str) -> bool:
    return fmt in FORMATS


@pytest.fixture(scope="module", params=sorted(CASES))
def payload_model(request, tmp_path_factory) -> tuple[str, Path, Path]:
    fmt, script, name = CASES[request.param]
    if not all(landed(f) for f in FORMATS):  # show, diff and verify detect formats
        pytest.skip("detection needs every format module; not all have landed")
    tmp = tmp_path_factory.mktemp(request.param)
    sentinel, model = tmp / "SENTINEL", tmp / name
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", script, str(sentinel), str(model)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sentinel.exists(), "the frameworks never ran the payload: a test that cannot fail"
    sentinel.unlink()
    return fmt, model, sentinel


def _commands(model: Path, out: Path) -> dict[str, list[str]]:
    commands = {"show": ["show", str(model)], "show-json": ["show", "--json", str(model)],
                "convert": ["convert", str(model), str(out / "copy.safetensors")],
                "diff": ["diff", str(model), str(model)], "verify": ["verify", str(model)]}
    return {k: v for k, v in commands.items() if k.split("-")[0] in COMMANDS}


def test_payload_is_not_executed_and_no_framework_is_imported(payload_model, tmp_path):
    fmt, model, sentinel = payload_model
    out = tmp_path / "out"
    out.mkdir()
    for name, argv in _commands(model, out).items():
        report = tmp_path / f"{name}.json"
        done = subprocess.run([sys.executable, "-c", RUN, str(report), *argv],
                              capture_output=True, text=True, timeout=300)
        result = json.loads(report.read_text())
        assert result["code"] in (0, 1), f"{name}: {done.stderr}"
        assert result["frameworks"] == [], f"{name} imported {result['frameworks']}"
        assert not sentinel.exists(), f"{name} ran the Lambda layer's code"
