"""`weightkit extract MODEL NAME OUT`: the weights of a model nested in MODEL (a Keras
functional or sequential model used as a layer, e.g. `encoder`) as a file that model loads on
its own, written atomically.

    Keras 3 .keras -> .keras       the nested model's config.json entry (as data) and weights:
                                   keras.models.load_model(OUT)
    Keras 3 .keras/.weights.h5     its weights tree: encoder.load_weights(OUT)
                   -> .weights.h5
    Keras .h5 -> .h5               tf_keras or Keras 3 legacy: a full-model .h5 (model_config
                                   from the parent's) from a full-model parent, else a
                                   save_weights .h5
    anything -> safetensors, npz   the variables under NAME/, without the prefix
"""
from __future__ import annotations

import argparse

from ..converters.errors import UsageError
from ..converters.names import select
from ..converters.registry import format_for_output, get, load, save
from ..converters.store import Store
from .convert import check_output
from .text import safe

HELP = "write the weights of a nested model (e.g. encoder) as a file that model loads alone"
# Output formats that keep a model's file structure (their record's `extract`), by the input
# formats they extract from.
STRUCTURED = {"keras": ("keras",), "keras-weights-h5": ("keras-weights-h5", "keras"),
              "keras-h5": ("keras-h5",)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the parent model's file")
    parser.add_argument("name", help="the nested model, by its name in the parent (its scope "
                                     "in weightkit's names: `encoder` for encoder/...)")
    parser.add_argument("out", help="output path (its suffix names the format unless --to)")
    parser.add_argument("--to", metavar="FORMAT",
                        help="output format (default: from the output name)")
    parser.add_argument("--from", dest="src_format", metavar="FORMAT",
                        help="input format (default: detected from the content)")


def extracted(store: Store, name: str, fmt: str) -> Store:
    """The store to write in `fmt`: the format's own extraction (a file the nested model
    loads), or for formats without model structure its variables under `name/`, renamed."""
    record = get(fmt)
    if record.extract is not None:
        if store.format not in STRUCTURED.get(fmt, (fmt,)):
            raise UsageError(f"a {fmt} file of a nested model is extracted from "
                             f"{' or '.join(STRUCTURED[fmt])}, not {store.format}; extract to "
                             "safetensors or npz, or convert the parent first")
        return record.extract(store, name)
    chosen = select(store, (f"{name}/*",), roles="weights", include_option="extract")
    return Store({n[len(name) + 1:]: store[n] for n in chosen}, format=store.format)


def run(args: argparse.Namespace) -> int:
    check_output(args.model, args.out)
    fmt = get(args.to).name if args.to else format_for_output(args.out)
    with load(args.model, args.src_format) as store:
        sub = extracted(store, args.name, fmt)
        save(sub, args.out, fmt)
        print(safe(f"wrote {args.out} ({fmt}): {len(sub)} variable{'s' * (len(sub) != 1)} of {args.name!r}"))
    return 0
