"""`weightkit convert SRC DST`: rewrite weights in another format, atomically."""
from __future__ import annotations

import argparse
import os

from ..converters.errors import UsageError
from ..converters.quant import dequantize
from ..converters.paths import same_file
from ..converters.registry import format_for_output, load, save
from ..converters.source import display, is_url
from .progress import Progress, data_bytes, tracked
from .text import safe

HELP = "convert a weights file to another format (written atomically; never over an input)"


SELECTION = ("keep", "drop", "no-optimizer")  # edit's operations that choose variables


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_output_arguments(parser)
    from .edit import add_operations
    add_operations(parser, SELECTION, "selection (edit's operations, applied in the order given)")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print nothing (with a selection: not the variables it dropped)")
    parser.add_argument("--dequantize", action="store_true",
                        help="write quantized tensors (TFLite, TF.js) as float32 real values")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """SRC, DST and the options of every command that writes weights (convert, edit)."""
    parser.add_argument("src", help="input weights file, checkpoint prefix or directory")
    parser.add_argument("dst", help="output path (its suffix names the format unless --to)")
    parser.add_argument("--to", metavar="FORMAT", help="output format (default: from the output name)")
    parser.add_argument("--from", dest="src_format", metavar="FORMAT", help="input format (default: detected from the content)")
    parser.add_argument("--allow-lossy", action="store_true",
                        help="write even if the output cannot hold everything (what is lost is listed)")
    parser.add_argument("--like", metavar="TEMPLATE",
                        help="take what the weights lack (config, object graph) from TEMPLATE")


def check_output(src: str, dst: str, *others: str) -> None:
    """Refuse an output that is one of the inputs (a URL: the same URL)."""
    for path in (src, *others):
        if not path:
            continue
        if is_url(path) or is_url(dst):
            same = display(path).rstrip("/") == display(dst).rstrip("/")
        else:
            same = same_file(path, dst) or os.path.abspath(path) == os.path.abspath(dst)
        if same:
            raise UsageError(f"refusing to overwrite the input {safe(display(path))!r}", dst)


def run(args: argparse.Namespace) -> int:
    from .edit import apply, print_edits
    check_output(args.src, args.dst, args.like or "")
    fmt = args.to or format_for_output(args.dst)
    with load(args.src, args.src_format) as store, \
            Progress("convert", data_bytes(store), enabled=not args.quiet) as bar:
        if args.dequantize:
            store = dequantize(store)
        store = tracked(store, bar.advance)
        if args.ops:
            store = apply(store, args.ops)
        if args.like:
            with load(args.like) as template:
                save(store, args.dst, fmt, allow_lossy=args.allow_lossy, like=template)
        else:
            save(store, args.dst, fmt, allow_lossy=args.allow_lossy)
        if args.ops and not args.quiet:
            print_edits(store.edits, f"wrote {args.dst} ({fmt})")
    return 0
