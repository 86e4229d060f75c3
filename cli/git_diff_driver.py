"""`weightkit git-diff-driver`: what git runs once `weightkit git-config` has set it up.

- As git's external diff driver, with git's seven arguments
  `PATH OLD-FILE OLD-HEX OLD-MODE NEW-FILE NEW-HEX NEW-MODE` (nine after a rename: plus
  `NEW-PATH` and a similarity message; one, `PATH`, for an unmerged path): prints the weight
  table of `weightkit diff`. An added or removed file arrives as `/dev/null` and is compared
  with an empty store.
- As a textconv filter (`--textconv FILE`, for `git log -p`, `git show`, blame): prints one
  stable line per variable (name, shape, dtype, content hash, statistics) for git to diff.

Git stops at a driver that exits non-zero, so a file that cannot be read is reported in the
output in one line and the exit status stays 0. A checkpoint `.index` needs its `.data-*` files
beside it: git hands the driver the old `.index` alone, so such a diff says it cannot compare.
"""
from __future__ import annotations

import argparse
import sys
from typing import TextIO

from ..converters.errors import UsageError, WeightsError
from ..converters.registry import load
from ..converters.store import Store
from ..diff.engine import diff_stores, fingerprint
from ..diff.summary import tensor_stats
from .diff import add_diff_options, options, report
from .text import safe

HELP = "git diff driver (git's 7 arguments) and textconv filter (--textconv FILE)"

NULL = "/dev/null"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="+", metavar="ARG",
                        help="PATH OLD-FILE OLD-HEX OLD-MODE NEW-FILE NEW-HEX NEW-MODE, as git passes")
    parser.add_argument("--textconv", action="store_true",
                        help="print a text form of one file (ARG) for git's textconv")
    add_diff_options(parser)


def _open(path: str) -> Store:
    return Store(format="none") if path == NULL else load(path)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def textconv(path: str, out: TextIO | None = None) -> None:
    """One line per variable; a change anywhere in a tensor changes its line."""
    out = out or sys.stdout
    with load(path) as store:
        print(f"# weightkit: {store.format}, {len(store)} variables", file=out)
        for name, tensor in store.items():
            stats = tensor_stats(tensor)
            role = "" if tensor.role == "weight" else f" [{tensor.role}]"
            shape = "(" + ", ".join(map(str, tensor.shape)) + ")"
            print(f"{safe(name)}{role} {shape} {tensor.dtype_name} "
                  f"blake2b:{fingerprint(tensor).hex()[:16]} min={_fmt(stats.min)} "
                  f"max={_fmt(stats.max)} mean={_fmt(stats.mean)} std={_fmt(stats.std)} "
                  f"nan={stats.nan} inf={stats.inf}", file=out)


def diff_files(args: argparse.Namespace, path: str, old: str, new: str,
               new_path: str | None = None, out: TextIO | None = None) -> None:
    """The weight table of OLD against NEW, under a git-style header."""
    out = out or sys.stdout
    label_a = NULL if old == NULL else f"a/{path}"
    label_b = NULL if new == NULL else f"b/{new_path or path}"
    print(f"diff --weightkit a/{safe(path)} b/{safe(new_path or path)}", file=out)
    with _open(old) as store_a, _open(new) as store_b:
        result = diff_stores(store_a, store_b, options(args))
        report(result, args, label_a, label_b, store_a.format, store_b.format, stream=out)


def run(args: argparse.Namespace) -> int:
    values = args.args
    try:
        if args.textconv:
            if len(values) != 1:
                raise UsageError(f"--textconv takes one file; received {len(values)} arguments")
            textconv(values[0])
        elif len(values) == 1:
            print(f"* Unmerged path {safe(values[0])}")
        elif len(values) in (7, 9):
            path, old, _, _, new = values[:5]
            diff_files(args, path, old, new, values[7] if len(values) == 9 else None)
        else:
            raise UsageError("expected git's arguments PATH OLD-FILE OLD-HEX OLD-MODE NEW-FILE "
                             f"NEW-HEX NEW-MODE; received {len(values)} arguments")
    except UsageError:
        raise
    except WeightsError as exc:  # without the path: git's temporary file names change each run
        print(f"weightkit: cannot {'read' if args.textconv else 'compare'}: {safe(exc.message)}")
    return 0
