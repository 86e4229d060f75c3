"""`weightkit show FILE`: names, shapes, dtypes and statistics of every variable."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ..converters.names import lookup, roles_option, select as select_names
from ..converters.registry import load
from ..converters.store import Store
from ..diffing.summary import TensorStats, stats_of
from .progress import Progress
from .text import safe, table

HELP = "show the variables of a weights file: shapes, dtypes, statistics, values"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="weights file, checkpoint prefix or directory")
    parser.add_argument("--from", "--format", dest="format", metavar="FORMAT",
                        help="read as this format (default: detected from the content)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--filter", metavar="GLOB", action="append",
                        help="only names matching GLOB (repeatable)")
    parser.add_argument("--no-optimizer", action="store_true",
                        help="leave out optimizer slots and counters")
    parser.add_argument("--weights-only", action="store_true",
                        help="model weights only: leave out optimizer and metric state")
    parser.add_argument("--no-stats", action="store_true", help="names, shapes and dtypes only")
    parser.add_argument("--values", metavar="NAME", help="print the values of one variable")
    parser.add_argument("--full", action="store_true", help="with --values: the whole array")


def select(store: Store, patterns: list[str] | None, no_optimizer: bool,
           weights_only: bool = False) -> list[str]:
    """Names of `store` matching any of `patterns` (canonical names or original keys; all if
    none), less the roles the flags leave out; a UsageError when a pattern matches nothing or
    nothing is left (`names.select`)."""
    return select_names(store, patterns or (), (), roles_option(no_optimizer, weights_only),
                        include_option="--filter")


def run(args: argparse.Namespace) -> int:
    with load(args.file, args.format) as store:
        if args.values is not None:
            return _show_values(store, args)
        names = select(store, args.filter, args.no_optimizer, args.weights_only)
        stats: list[TensorStats | None] = [None] * len(names)
        if not args.no_stats:
            tensors = [store[name] for name in names]
            with Progress("show", sum(t.nbytes for t in tensors)) as bar:
                stats = stats_of(tensors, bar.advance)
        rows = [_row(store, name, s) for name, s in zip(names, stats)]
        if args.json:
            json.dump({"file": args.file, "format": store.format, "tensors": rows,
                       "totals": _totals(rows)}, sys.stdout, indent=1, allow_nan=False,
                      default=str)
            print()
        else:
            _print_table(store, rows, args.file)
    return 0


def _row(store: Store, name: str, stats: TensorStats | None) -> dict:
    tensor = store[name]
    row = {"name": name, "shape": list(tensor.shape), "dtype": tensor.dtype_name,
           "parameters": tensor.size, "bytes": tensor.nbytes, "role": tensor.role,
           "key": tensor.meta.get("key", name)}
    if stats is not None:
        row.update(min=stats.min, max=stats.max, mean=stats.mean, std=stats.std,
                   zero_fraction=stats.zero_fraction, nan=stats.nan, inf=stats.inf)
    return row


def _totals(rows: list[dict]) -> dict:
    return {"tensors": len(rows), "parameters": sum(r["parameters"] for r in rows),
            "bytes": sum(r["bytes"] for r in rows)}


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _print_table(store: Store, rows: list[dict], path: str) -> None:
    headers = ["name", "shape", "dtype", "params"]
    with_stats = bool(rows) and "min" in rows[0]
    if with_stats:
        headers += ["min", "max", "mean", "std", "zeros %", "nan/inf"]
    lines = []
    for r in rows:
        name = safe(r["name"]) + ("" if r["role"] == "weight" else f" [{r['role']}]")
        line = [name, "(" + ", ".join(map(str, r["shape"])) + ")", r["dtype"], f"{r['parameters']:,}"]
        if with_stats:
            zeros = "" if r["zero_fraction"] is None else f"{100 * r['zero_fraction']:.1f}"
            bad = f"{r['nan']}/{r['inf']}" if r["nan"] or r["inf"] else ""
            line += [_fmt(r["min"]), _fmt(r["max"]), _fmt(r["mean"]), _fmt(r["std"]), zeros, bad]
        lines.append(line)
    print(f"{safe(path)}: {store.format}")
    if lines:
        print(table(lines, headers))
    totals = _totals(rows)
    print(f"{totals['tensors']} tensors, {totals['parameters']:,} parameters, "
          f"{_human_bytes(totals['bytes'])}")


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _show_values(store: Store, args: argparse.Namespace) -> int:
    name = lookup(store, args.values)
    tensor = store[name]
    array = tensor.read()
    options = {"threshold": sys.maxsize} if args.full else {}
    with np.printoptions(**options):
        print(f"{safe(name)}: shape {tensor.shape} {tensor.dtype_name}")
        text = np.array2string(array, separator=", ") if array.dtype != object else repr(array.tolist())
        print(safe(text).replace("\\x0a", "\n"))
    return 0
