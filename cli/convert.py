"""`weightkit convert SRC DST`: rewrite weights in another format, atomically."""
from __future__ import annotations

import argparse
import os

from ..converters.errors import UsageError
from ..converters.paths import same_file
from ..converters.registry import format_for_output, load, save
from .progress import Progress, data_bytes, tracked
from .text import safe

HELP = "convert a weights file to another format (written atomically; never over an input)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_output_arguments(parser)


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
    """Refuse an output that is one of the inputs."""
    for path in (src, *others):
        if path and (same_file(path, dst) or os.path.abspath(path) == os.path.abspath(dst)):
            raise UsageError(f"refusing to overwrite the input {safe(path)!r}", dst)


def run(args: argparse.Namespace) -> int:
    check_output(args.src, args.dst, args.like or "")
    fmt = args.to or format_for_output(args.dst)
    with load(args.src, args.src_format) as store, Progress("convert", data_bytes(store)) as bar:
        store = tracked(store, bar.advance)
        if args.like:
            with load(args.like) as template:
                save(store, args.dst, fmt, allow_lossy=args.allow_lossy, like=template)
        else:
            save(store, args.dst, fmt, allow_lossy=args.allow_lossy)
    return 0
