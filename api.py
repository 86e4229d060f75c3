"""The Python API of the commands: each function returns the JSON document the command prints
with `--format json` (as plain dicts, lists, strings and numbers; non-finite numbers as the
strings "nan", "inf", "-inf"), so a script never has to shell out to `wdiff --format json`.

    import weightkit
    doc = weightkit.diff("before.h5", "after.h5", rtol=1e-4)
    changed = [v["name"] for v in doc["variables"] if v["status"] != "same"]
    nan_layers = [v["name"] for v in weightkit.stats("model.keras")["variables"] if v["nan"]]

Every function takes paths (any format weightkit reads) or open `Store`s, raises the same
`WeightsError` subclasses the commands report with exit status 2, and imports nothing heavy
until it runs. Schemas: `diff/schema.json`, `diff/schema-show.json`, `diff/schema-trend.json`
in the installed package `weightkit.diffing`.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

from .converters.store import Store

Source = "str | os.PathLike[str] | Store"


@contextlib.contextmanager
def _opened(source: Any, format: str | None = None) -> Iterator[tuple[Store, str]]:
    """(store, label): a path opened (and closed afterwards), or a store as it is."""
    if isinstance(source, Store):
        yield source, source.path or "<store>"
        return
    from .converters.registry import load
    path = os.fspath(source)
    with load(path, format) as store:
        yield store, path


def diff(a: Any, b: Any, *, atol: float = 0.0, rtol: float = 0.0,
         include: Sequence[str] = (), exclude: Sequence[str] = (), match: str = "auto",
         no_optimizer: bool = False, weights_only: bool = False, nan_equal: bool = True,
         dequantize: bool = False, by: str = "variable", sort: str | None = None,
         top: int | None = None, from_format: str | None = None) -> dict[str, Any]:
    """Compare two weights files or stores: the document `wdiff A B --format json` prints
    (`variables`: one entry per paired variable with its status and statistics; `summary`).

    Tolerances as numpy.isclose: |a−b| <= atol + rtol·|b| (0 and 0: exact). `include`/`exclude`
    are globs on names or original keys (a glob matching nothing raises UsageError naming the
    closest names); `match` is "auto", "name" or "structure"; `by` "variable", "layer" or
    "module" rolls statistics up from their sums; `sort`/`top` order and cut the listing as
    `--sort`/`--top` do. Raises `WeightsError` (bad file, bad option)."""
    from .diffing.engine import Options, diff_stores
    from .diffing.render import to_json
    from .diffing.render import View
    from .converters.quant import dequantize as dequantized
    try:
        options = Options(atol=atol, rtol=rtol, nan_equal=nan_equal, match=match,
                          include=tuple(include), exclude=tuple(exclude),
                          no_optimizer=no_optimizer, weights_only=weights_only,
                          norms=by != "variable")
    except ValueError as exc:
        from .converters.errors import UsageError
        raise UsageError(str(exc)) from None
    with _opened(a, from_format) as (store_a, label_a), _opened(b, from_format) as (store_b, label_b):
        if dequantize:
            store_a, store_b = dequantized(store_a), dequantized(store_b)
        result = diff_stores(store_a, store_b, options)
        view = View(by, sort, top)
        return to_json(result, {"path": label_a, "format": store_a.format},
                       {"path": label_b, "format": store_b.format}, view)


def stats(source: Any, *, include: Sequence[str] = (), exclude: Sequence[str] = (),
          no_optimizer: bool = False, weights_only: bool = False, statistics: bool = True,
          dequantize: bool = False, by: str = "variable", sort: str | None = None,
          top: int | None = None, from_format: str | None = None) -> dict[str, Any]:
    """Names, shapes, dtypes, roles and statistics (min, max, mean, std, zero fraction, NaN and
    Inf counts; exact, in one chunked pass) of every selected variable: the document
    `weightkit show FILE --format json` prints. `statistics=False` skips reading the values
    (`--no-stats`); `by`, `sort`, `top` as for `diff`. Raises `WeightsError`."""
    from .converters.names import roles_option, select
    from .converters.quant import dequantize as dequantized
    from .diffing.rollup import show_rows
    from .diffing.summary import show_document, stats_of
    with _opened(source, from_format) as (store, label):
        if dequantize:
            store = dequantized(store)
        names = select(store, include, exclude, roles_option(no_optimizer, weights_only))
        tensors = store.tensors(names)
        values = stats_of(tensors) if statistics else [None] * len(names)
        doc = show_document(store, names, values, label, tensors)
        show_rows(doc, names, values, by, sort, top)
        return doc


def verify(source: Any, *, via: Sequence[str] | None = None, load: bool = False,
           from_format: str | None = None) -> dict[str, Any]:
    """Round-trip a file through other formats and back and compare bit for bit: the document
    `weightkit verify FILE --format json` prints (`status` "ok", "different" or "error", and
    one entry per round trip). `via`: format names, or ["all"] for every format that can hold
    it without loss (default: all of them, or for a file of more than 10,000 variables its own
    format, safetensors and npz; see `diffing.verify`). `load=True` also has the framework load
    every file (needs the `tensorflow` extra; `source` must be a path). Raises `WeightsError`."""
    from .converters.registry import get
    from .diffing.verify import (check_readable, default_vias, document, framework_check,
                                 verify as run)
    every = via is not None and "all" in via
    formats = None if every or not via else list(dict.fromkeys(get(name).name for name in via))
    with _opened(source, from_format) as (store, label):
        note = None
        if formats is None:
            formats, note = default_vias(store, every)
        check_readable(store)
        check = framework_check(label, store) if load else None
        trips = run(store, formats, check, optional=not via or every)
        return document(label, store, trips, note)
