"""Shared test setup. TensorFlow is only an oracle here: tests that import it are marked
`tensorflow`, and weightkit itself never imports it."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

# A suite started in the background by a shell without job control (`nohup ... &`) inherits
# SIGINT ignored, and so would every command a test starts (an ignored signal stays ignored
# across exec): the tests that press Ctrl-C on a command would wait for it in vain. A handler
# here makes the commands start with SIGINT at its default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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
