"""`weightkit diff A B` (also `wdiff A B`): compare two weights files of any supported formats.

Exit status as diff(1) and h5diff: 0 nothing differs beyond the tolerance, 1 something differs,
2 trouble (a bad or unknown file, a bad option), reported in one line on stderr.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import TextIO

from ..converters.errors import UsageError
from ..converters.registry import FORMATS, index_format, load
from ..converters.store import Store
from ..diffing.engine import MATCH_MODES, DiffResult, Options, diff_stores
from ..diffing.index_diff import diff_checksums
from ..diffing.render import Target, colour, render_json, render_markdown, render_table
from .main import Exit
from .progress import Progress, data_bytes

HELP = "compare two weights files (any formats): exit 0 same, 1 different, 2 trouble"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The diff options, shared with the git diff driver."""
    parser.add_argument("a", help="first weights file, checkpoint prefix or directory")
    parser.add_argument("b", help="second weights file, checkpoint prefix or directory")
    add_diff_options(parser)


def add_diff_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--atol", type=float, default=0.0,
                        help="absolute tolerance: a, b differ when |a-b| > atol + rtol*|b| (default 0)")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0)")
    parser.add_argument("--include", metavar="GLOB", action="append", default=[],
                        help="only variables whose name or original key matches GLOB "
                             "(repeatable)")
    parser.add_argument("--exclude", metavar="GLOB", action="append", default=[],
                        help="leave out variables whose name or original key matches GLOB "
                             "(repeatable)")
    parser.add_argument("--no-optimizer", action="store_true",
                        help="leave out optimizer slots and counters")
    parser.add_argument("--weights-only", action="store_true",
                        help="model weights only: leave out optimizer and metric state")
    parser.add_argument("--match", choices=MATCH_MODES, default="auto",
                        help="pair variables by name, by structure (order and shape), or auto: "
                             "names, normalized names, equal values, then structure (default)")
    parser.add_argument("--index-only", action="store_true",
                        help="TF checkpoints: compare the dtypes, shapes and checksums their "
                             ".index files record, without reading the data files")
    parser.add_argument("--nan-unequal", action="store_true",
                        help="count NaN as different from NaN (default: NaN equals NaN)")
    parser.add_argument("--format", dest="output", choices=("table", "json", "markdown"),
                        default="table", help="report format (default: table)")
    parser.add_argument("--all", action="store_true", help="list every variable, not only changes")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print nothing; report only through the exit status")


def options(args: argparse.Namespace) -> Options:
    """Engine options from parsed arguments."""
    try:
        return Options(atol=args.atol, rtol=args.rtol, nan_equal=not args.nan_unequal,
                       match=args.match, include=tuple(args.include),
                       exclude=tuple(args.exclude), no_optimizer=args.no_optimizer,
                       weights_only=args.weights_only)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def report(result: DiffResult, args: argparse.Namespace, label_a: str, label_b: str,
           format_a: str, format_b: str, stream: TextIO | None = None) -> None:
    """Print `result` as asked by `args` (nothing with --quiet)."""
    stream = stream or sys.stdout
    if args.quiet:
        return
    target = Target(stream, colour=colour(stream), all=args.all)
    if args.output == "json":
        render_json(result, target, {"path": label_a, "format": format_a},
                    {"path": label_b, "format": format_b})
    elif args.output == "markdown":
        render_markdown(result, target, label_a, label_b)
    else:
        render_table(result, target, f"{label_a} ({format_a})", f"{label_b} ({format_b})")


def read_index(path: str) -> Store:
    """What the index file `path` records (dtypes, shapes, checksums), without its data files:
    for formats with index-only reading (a TF checkpoint's `.index`)."""
    record = index_format(path)
    if record is None:
        with_index = [f.name for f in FORMATS.values() if f.index is not None]
        raise UsageError(f"--index-only reads index files of {', '.join(with_index)}; this is "
                         "not one", path)
    return record.index.read(path)


def run(args: argparse.Namespace) -> int:
    opts = options(args)
    read, compare = load, diff_stores
    if args.index_only:
        read, compare = read_index, diff_checksums
    with read(args.a) as store_a, read(args.b) as store_b:
        total = data_bytes(store_a) + data_bytes(store_b)
        with Progress("diff", total, enabled=not args.quiet) as bar:
            result = compare(store_a, store_b, replace(opts, progress=bar.advance))
        report(result, args, args.a, args.b, store_a.format, store_b.format)
    return Exit.OK if result.identical else Exit.DIFFERENT
