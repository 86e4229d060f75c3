"""Optional and heavy imports, made on first use with an install hint when missing."""
from __future__ import annotations

import importlib
import sys
from types import ModuleType

from .errors import MissingDependencyError

_INSTALL = {
    "h5py": "pip install h5py",
    "safetensors": "pip install safetensors",
    "google_crc32c": "pip install google-crc32c",
    "tensorflow": "pip install 'weightkit[tensorflow]'",
    "tf_keras": "pip install 'weightkit[tensorflow]'",
    "keras": "pip install 'weightkit[tensorflow]'",
    "plotly": "pip install 'weightkit[report]'",  # --format html
    "distributed": "pip install 'weightkit[dask]'",  # --scheduler
    "dask": "pip install 'weightkit[dask]'",
}


def require(module: str) -> ModuleType:
    """Import `module`, or raise MissingDependencyError with the command that installs it."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        return loaded
    try:
        return importlib.import_module(module)
    except ImportError:
        hint = _INSTALL.get(module.split(".")[0], f"pip install {module}")
        raise MissingDependencyError(f"this needs the package {module!r}: {hint}") from None
