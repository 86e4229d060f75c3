"""`weightkit diff A B` (also `wdiff A B`): compare two weights files of any supported formats.

Exit status as diff(1) and h5diff: 0 nothing differs beyond the tolerance, 1 something differs,
2 trouble (a bad or unknown file, a bad option), reported in one line on stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import TextIO

from ..converters.errors import UsageError
from ..converters.quant import dequantize, is_quantized
from ..converters.registry import FORMATS, index_format, load
from ..converters.store import Store
from ..diffing.engine import MATCH_MODES, DiffResult, Options, diff_stores
from ..diffing.gates import Tripped, evaluate, failed
from ..diffing.index_diff import diff_checksums
from ..diffing.render import (DIFF_NUMBERS, Target, print_gates, render_json, render_markdown,
                              render_table)
from ..diffing.rollup import rollup_diff
from .cluster import add_scheduler_argument, cluster
from .main import Exit
from .progress import Progress, data_bytes
from .report import FORMATS as REPORTS
from .report import (add_report_arguments, add_selection_arguments, check_html, destination,
                     gates, view)
from .text import colour

HELP = "compare two weights files (any formats): exit 0 same, 1 different, 2 trouble"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The diff options, shared with the git diff driver."""
    parser.add_argument("a", help="first weights file, checkpoint prefix or directory")
    parser.add_argument("b", help="second weights file, checkpoint prefix or directory")
    parser.add_argument("--from", dest="src_format", metavar="FORMAT",
                        help="read both files as this format (default: detected from content)")
    add_diff_options(parser)
    parser.add_argument("--dequantize", action="store_true",
                        help="compare quantized tensors (TFLite, TF.js) by their float32 real "
                             "values: scale * (q - zero_point)")
    add_scheduler_argument(parser, "compare")


def add_diff_options(parser: argparse.ArgumentParser, formats: Sequence[str] = REPORTS,
                     gates: bool = True) -> None:
    parser.add_argument("--atol", type=float, default=0.0,
                        help="absolute tolerance: a, b differ when |a-b| > atol + rtol*|b| (default 0)")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0)")
    add_selection_arguments(parser)
    parser.add_argument("--match", choices=MATCH_MODES, default="auto",
                        help="pair variables by name, by structure (order and shape), or auto: "
                             "names, normalized names, equal values, then structure (default)")
    parser.add_argument("--index-only", action="store_true",
                        help="TF checkpoints (an .index, a prefix or a directory): compare "
                             "the dtypes, shapes and checksums their .index files record, "
                             "without reading the data files")
    parser.add_argument("--nan-unequal", action="store_true",
                        help="count NaN as different from NaN (default: NaN equals NaN)")
    parser.add_argument("--all", action="store_true", help="list every variable, not only changes")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print nothing; report only through the exit status")
    add_report_arguments(parser, DIFF_NUMBERS, formats=formats, gates=gates)


def options(args: argparse.Namespace) -> Options:
    """Engine options from parsed arguments."""
    try:
        return Options(atol=args.atol, rtol=args.rtol, nan_equal=not args.nan_unequal,
                       match=args.match, include=tuple(args.include),
                       exclude=tuple(args.exclude), no_optimizer=args.no_optimizer,
                       weights_only=args.weights_only,
                       norms=args.by != "variable" or args.output == "html")
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def gate_rows(result: DiffResult, by: str) -> list[tuple[str, dict]]:
    """What --fail-if tests: every variable, or with --by every group."""
    if by != "variable":
        return [(g.name, g.as_dict()) for g in rollup_diff(result.entries, by)]
    return [(e.name, e.as_dict()) for e in result.entries]


def report(result: DiffResult, args: argparse.Namespace, label_a: str, label_b: str,
           format_a: str, format_b: str, stream: TextIO | None = None,
           tripped: list[Tripped] | None = None, stores: tuple | None = None) -> None:
    """Print `result` as asked by `args` (with --quiet: nothing printed; `-o FILE` written)."""
    if args.quiet and not args.output_file:
        return
    tripped = tripped or []
    with contextlib.ExitStack() as stack:
        if stream is None:
            stream, colour_on = stack.enter_context(destination(args))
        else:
            colour_on = colour(stream, getattr(args, "color", "auto"))
        target = Target(stream, colour=colour_on, view=view(args), gates=tripped)
        file_a = {"path": label_a, "format": format_a}
        file_b = {"path": label_b, "format": format_b}
        if args.output == "json":
            render_json(result, target, file_a, file_b)
        elif args.output == "markdown":
            render_markdown(result, target, label_a, label_b)
        elif args.output == "html":
            from ..diffing.html import diff_report
            stream.write(diff_report(result, target, file_a, file_b, stores))
        else:
            render_table(result, target, f"{label_a} ({format_a})", f"{label_b} ({format_b})")
    if tripped and (args.output != "text" or args.output_file) and not args.quiet:
        print_gates(tripped, sys.stderr, colour(sys.stderr, getattr(args, "color", "auto")))


def read_index(path: str) -> Store:
    """What the index file `path` records (dtypes, shapes, checksums), without its data files:
    for formats with index-only reading (a TF checkpoint's `.index`)."""
    record = index_format(path) or next(
        (f for f in FORMATS.values() if f.index is not None and f.index.index_of is not None
         and f.index.index_of(path) is not None), None)
    if record is None:
        with_index = [f.name for f in FORMATS.values() if f.index is not None]
        raise UsageError(f"--index-only reads index files of {', '.join(with_index)}; this is "
                         "not one", path)
    return record.index.read(path)


def run(args: argparse.Namespace) -> int:
    opts = options(args)
    gate_list = gates(args, DIFF_NUMBERS)
    check_html(args)
    read, compare = partial(load, format=args.src_format), diff_stores
    if args.index_only:
        read, compare = read_index, diff_checksums
    with read(args.a) as store_a, read(args.b) as store_b, \
            cluster(None if args.index_only else args) as on_cluster:
        quantized = getattr(args, "dequantize", False)
        if quantized:
            store_a, store_b = dequantize(store_a), dequantize(store_b)
        if on_cluster is not None:
            from ..diffing.distributed import Source, diff_stores as diff_on
            sources = tuple(Source.of(p, args.src_format, quantized) for p in (args.a, args.b))
            compare = partial(diff_on, sources=sources, cluster=on_cluster)
        total = data_bytes(store_a) + data_bytes(store_b)
        with Progress("diff", total, enabled=not args.quiet) as bar:
            result = compare(store_a, store_b, opts=replace(opts, progress=bar.advance))
        if not quantized and not args.index_only:
            _hint_dequantize(result, store_a, store_b)
        tripped = evaluate(gate_list, gate_rows(result, args.by))
        report(result, args, args.a, args.b, store_a.format, store_b.format, tripped=tripped,
               stores=None if args.index_only else (store_a, store_b))
    if gate_list:
        return Exit.DIFFERENT if failed(tripped) else Exit.OK
    return Exit.OK if result.identical else Exit.DIFFERENT


def _hint_dequantize(result: DiffResult, store_a: Store, store_b: Store) -> None:
    """A note when variables changed dtype because one side is quantized (a float model
    against its int8 export): their rows compare stored integers with real values."""
    quantized = [e for e in result.entries if e.status == "dtype_changed"
                 and any(name in store and is_quantized(store[name])
                         for store, name in ((store_a, e.name_a), (store_b, e.name_b)))]
    if quantized and "export" not in result.summary:  # an export diff's summary says it
        result.summary.setdefault("notes", []).append(
            f"{len(quantized)} variable(s) are quantized on one side and compared as stored "
            "integers; --dequantize compares their real values (scale * (q - zero_point))")
