"""Shared test setup. TensorFlow is only an oracle here: tests that import it are marked
`tensorflow`, and weightkit itself never imports it."""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The committed, framework-written fixtures (read-only: copy before modifying)."""
    return FIXTURES


def run_cli(*args: str, cwd: str | os.PathLike | None = None, input: bytes | None = None):
    """Run `python -m weightkit.cli ...` in a subprocess; returns CompletedProcess (text)."""
    import subprocess

    code = "import sys; from weightkit.cli.main import main; sys.exit(main(sys.argv[1:], prog='weightkit'))"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
