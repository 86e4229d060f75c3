"""weightkit: convert, inspect, diff, verify and edit TensorFlow/Keras model weights.

    import weightkit
    with weightkit.load("model.h5") as store:
        weightkit.save(store, "model.safetensors")

Importing weightkit never imports TensorFlow or Keras.
"""
import os
import sys

# The diff engine and show run their own workers over tensors; OpenBLAS threads inside each
# np.dot on top of them oversubscribe the cores (a diff 5x slower on 2 cores). Only effective
# before numpy is first imported; a value the caller set wins. BLAS_PINNED tells diff/numeric.py
# whether np.dot runs on one thread.
BLAS_PINNED = "numpy" not in sys.modules or os.environ.get("OPENBLAS_NUM_THREADS") == "1"
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .converters.errors import (CorruptFileError, LossyConversionError, MissingDependencyError,
                                UnknownFormatError, UnsafeFileError, UsageError, WeightsError)
from .converters.registry import FORMATS, detect, load, losses, save
from .converters.edit import EditedStore, edit
from .converters.store import Store, Tensor

__version__ = "0.1.0"


def trend(runs, **options):  # noqa: ANN001, ANN003, ANN201 (the signature is diff.trend.trend's)
    """The trend of a training run's checkpoints as the JSON document of `weightkit trend
    --format json`: see `weightkit.diff.trend.trend` for the arguments."""
    from .diff.trend import trend as _trend
    return _trend(runs, **options)

__all__ = [
    "FORMATS", "Store", "Tensor", "EditedStore", "detect", "edit", "load", "losses", "save",
    "WeightsError", "UnknownFormatError", "CorruptFileError", "UnsafeFileError",
    "LossyConversionError", "MissingDependencyError", "UsageError", "trend",
]
