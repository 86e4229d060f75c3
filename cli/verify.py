"""`weightkit verify FILE`: round-trip FILE through other formats and back, compared bit for bit.

Exit status: 0 every pair identical (or skipped), 1 something lossy or different (a framework
load included), 2 a conversion failed (or the request itself was wrong).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from contextlib import ExitStack
from typing import TextIO

from ..converters.edit import edit
from ..converters.errors import UsageError, WeightsNote
from ..converters.registry import get, load, save, template_refusal
from ..converters.source import is_url
from ..converters.store import Store
from ..diffing.verify import (LARGE_STORE, Trip, check_readable, default_vias, document,
                              framework_check, verify)
from .main import Exit
from .progress import Progress, data_bytes, tracked
from .report import destination
from .text import paint, safe, table

HELP = "round-trip a weights file through other formats and back, and compare bit for bit"
EXIT = {"ok": Exit.OK, "different": Exit.DIFFERENT, "error": Exit.ERROR}
_COLOURS = {"identical": "32", "skipped": "2", "lossy": "33", "different": "31", "failed": "31"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="weights file, checkpoint prefix or directory")
    parser.add_argument("--from", dest="src_format", metavar="FORMAT",
                        help="input format (default: detected from the content)")
    parser.add_argument("--via", metavar="FORMAT", action="append",
                        help="round-trip through FORMAT (repeatable; 'all': every format "
                             "that can hold the file without loss; default: all of them, or "
                             f"for a file of more than {LARGE_STORE:,} variables its own format, "
                             "safetensors and npz)")
    parser.add_argument("--like", metavar="TEMPLATE",
                        help="a file of a format that needs a template to be written (a "
                             "SavedModel directory, a .tflite or .keras model): the round trip "
                             "through its format writes into it, as convert --like does")
    parser.add_argument("--no-optimizer", action="store_true",
                        help="verify without the optimizer state (variables of role optimizer "
                             "or counter), as convert --no-optimizer writes: for a template "
                             "with no place for it, such as an export SavedModel")
    parser.add_argument("--weights-only", action="store_true",
                        help="verify the model weights only (without roles optimizer, counter, "
                             "metric)")
    parser.add_argument("--load", action="store_true",
                        help="also load the original and the round-tripped file with the "
                             "framework (needs the tensorflow extra)")
    parser.add_argument("--format", dest="output", choices=("text", "json"), default=None,
                        help="report format (default: as -o FILE's suffix says, else text)")
    parser.add_argument("--json", dest="output", action="store_const", const="json",
                        help="the same as --format json")
    parser.add_argument("-o", "--output", dest="output_file", metavar="FILE",
                        help="write the report to FILE (atomically) instead of standard output")
    parser.set_defaults(report_formats=("text", "json"))
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print nothing; report only through the exit status")


def run(args: argparse.Namespace) -> int:
    every = args.via is not None and "all" in args.via
    via = None if every or not args.via else list(dict.fromkeys(get(name).name  # each once
                                                                 for name in args.via))
    with load(args.file, args.src_format) as loaded, ExitStack() as stack:
        if args.weights_only or args.no_optimizer:
            loaded = _without_state(loaded, args.weights_only, stack)
        like = stack.enter_context(load(args.like)) if args.like else None
        note = None
        if via is None:
            via, note = default_vias(loaded, every)
            if like is not None and like.format not in via:
                via.append(like.format)  # the trip the template is for
        elif like is not None and like.format not in via:
            raise UsageError(f"--like {args.like} is a {like.format} file, and no trip goes "
                             f"through {like.format}: add --via {like.format}")
        if not via:
            raise UsageError("no format can hold this file without loss; name one with --via")
        refusal = template_refusal(like.format, like) if like is not None else None
        if refusal is not None:  # before any trip: its own would only fail or be skipped
            raise refusal
        if args.load and is_url(args.file):
            raise UsageError("--load: the framework loads local files; copy the file here "
                             "first")
        original = loaded.path if args.weights_only or args.no_optimizer else args.file
        check = framework_check(original, loaded) if args.load else None  # (what is verified)
        # read once here, then per target once to write it and once to compare
        with Progress("verify", data_bytes(loaded) * (1 + 2 * len(via)),
                      enabled=not args.quiet) as bar:
            store = tracked(loaded, bar)
            check_readable(store)
            trips = verify(store, via, check, optional=args.via is None or every,
                           workers=min(4, os.cpu_count() or 1), progress=bar.advance,
                           like=like)
        doc = document(args.file, store, trips, note)
        if not args.quiet or args.output_file:  # (--quiet prints nothing; -o FILE is written)
            with destination(args) as (out, colour_on):
                if args.output == "json":
                    json.dump(doc, out, indent=1)
                    print(file=out)
                else:
                    _print_table(args.file, store, trips, colour_on, out)
    if note and not args.quiet:  # on stderr, as convert's notes are
        warnings.warn(note, WeightsNote)
    return EXIT[doc["status"]]


def _without_state(store: Store, weights_only: bool, stack: ExitStack) -> Store:
    """`store` as `convert --no-optimizer` (`--weights-only`) writes it in its own format, read
    back from a temporary directory: the edit leaves the store metadata listing the state it
    dropped, which its format's writer brings up to date (so the file verified is the one
    convert writes)."""
    edited = edit(store, flags=True)
    edited = edited.weights_only() if weights_only else edited.drop_optimizer()
    workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="weightkit-verify-"))
    name = os.path.basename((store.path or "").rstrip("/")) or "weights"
    path = os.path.join(workdir, name)
    save(edited, path, store.format)
    return stack.enter_context(load(path, store.format))


MAX_DETAILS = 4  # findings a table row shows; --json has them all


def _detail(trip: Trip) -> str:
    """The table's details: the first line of each of the first MAX_DETAILS findings (--json
    has all of it): one difference per variable could otherwise fill a screen."""
    parts = trip.lost + trip.differences + ([trip.error] if trip.error else []) + trip.notes
    shown = [(p.splitlines() or [""])[0] for p in parts[:MAX_DETAILS]]
    if len(parts) > MAX_DETAILS:
        shown.append(f"{len(parts) - MAX_DETAILS:,} more (--json lists them)")
    return "; ".join(shown)


def _print_table(path: str, store: Store, trips: list[Trip], colour_on: bool = False,
                 out: TextIO = sys.stdout) -> None:
    with_load = any(t.load for t in trips)
    headers = ["via", "round trip", "details"] + (["framework load"] if with_load else [])
    rows = []
    for t in trips:
        row = [f"{store.format} -> {t.via} -> {store.format}" if t.via != store.format
               else f"{store.format} -> {t.via}", paint(t.status, _COLOURS.get(t.status, "0"),
                                                        colour_on), safe(_detail(t))]
        if with_load:  # the first line; --json has all of it
            row.append(safe(f"{t.load['status']}: {t.load['detail']}".splitlines()[0])
                       if t.load else "")
        rows.append(row)
    print(f"{safe(path)}: {store.format}, {len(store):,} variable{'s' * (len(store) != 1)}",
          file=out)
    print(table(rows, headers, wrap={2: 60, 3: 50}), file=out)
