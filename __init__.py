"""weightkit: convert, inspect, diff, verify and edit TensorFlow/Keras model weights.

    import weightkit
    with weightkit.load("model.h5") as store:          # a lazy Mapping[name, Tensor]
        weightkit.save(store, "model.safetensors")
    doc = weightkit.diff("before.h5", "after.h5")     # what `wdiff --format json` prints
    doc = weightkit.stats("model.keras")              # what `weightkit show --format json` prints

Importing weightkit never imports TensorFlow or Keras and changes no environment variable or
thread setting.
"""
from .converters.errors import (CorruptFileError, LossyConversionError, MissingDependencyError,
                                UnknownFormatError, UnsafeFileError, UsageError, WeightsError)
from .converters.registry import FORMATS, detect, load, losses, save
from .converters.edit import EditedStore, edit
from .converters.store import Store, Tensor
from .api import diff, stats, verify

__version__ = "0.1.0"


def trend(runs, **options):  # noqa: ANN001, ANN003, ANN201 (the signature is diffing.trend.trend's)
    """The trend of a training run's checkpoints as the JSON document of `weightkit trend
    --format json`: see `weightkit.diffing.trend.trend` for the arguments."""
    from .diffing.trend import trend as _trend
    return _trend(runs, **options)


__all__ = [
    "FORMATS", "Store", "Tensor", "EditedStore", "detect", "edit", "load", "losses", "save",
    "WeightsError", "UnknownFormatError", "CorruptFileError", "UnsafeFileError",
    "LossyConversionError", "MissingDependencyError", "UsageError", "diff", "stats", "trend",
    "verify",
]
