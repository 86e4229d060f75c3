"""`weightkit git-diff-driver`: what git runs once `weightkit git-config` has set it up.

- As git's external diff driver, with git's seven arguments
  `PATH OLD-FILE OLD-HEX OLD-MODE NEW-FILE NEW-HEX NEW-MODE` (nine after a rename: plus
  `NEW-PATH` and a similarity message; one, `PATH`, for an unmerged path): prints the weight
  table of `weightkit diff`. An added or removed file arrives as `/dev/null` and is compared
  with an empty store.
- As a textconv filter (`--textconv FILE`, for `git log -p`, `git show`, blame): prints one
  stable line per variable (name, shape, dtype, content hash, statistics) for git to diff.

A TF checkpoint's `.index` arrives alone: git stores `.data-*` files as separate blobs and
hands a driver one file. Its entries still record every variable's dtype, shape and crc32c, so
`.index` files are compared by those (`diff/index_diff.py`: added, removed, shape or dtype
changed, changed or same by checksum, no value statistics), unless both sides have their data
files beside them (`git diff --no-index` of two working trees): then the full diff runs. The
textconv form of an `.index` always lists names, shapes, dtypes and checksums only, so that the
old side (a blob) and the new one (a working-tree file) give comparable text.

Git stops at a driver that exits non-zero, so a file that cannot be read is reported in the
output in one line and the exit status stays 0.
"""
from __future__ import annotations

import argparse
import sys
from typing import TextIO

from ..converters.errors import UsageError, WeightsError
from ..converters.registry import index_format, load
from ..converters.store import Store
from ..diffing.engine import diff_stores, fingerprint
from ..diffing.index_diff import diff_checksums
from ..diffing.summary import tensor_stats
from .diff import add_diff_options, options, read_index, report
from .text import safe

HELP = "git diff driver (git's 7 arguments) and textconv filter (--textconv FILE)"

NULL = "/dev/null"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="+", metavar="ARG",
                        help="PATH OLD-FILE OLD-HEX OLD-MODE NEW-FILE NEW-HEX NEW-MODE, as git passes")
    parser.add_argument("--textconv", action="store_true",
                        help="print a text form of one file (ARG) for git's textconv")
    add_diff_options(parser, formats=("text", "json", "markdown"), gates=False)


def _open(path: str, index_only: bool = False) -> Store:
    if path == NULL:
        return Store(format="none")
    return read_index(path) if index_only else load(path)


def _index_only(old: str, new: str) -> bool:
    """Compare by the index alone: both sides are index files of a format that can (or absent),
    and at least one lacks its data files."""
    sides = [index_format(p) and p for p in (old, new) if p != NULL]
    return all(sides) and any(index_format(p).index.lacks_data(p) for p in sides)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _role(tensor) -> str:
    return "" if tensor.role == "weight" else f" [{tensor.role}]"


def _shape(tensor) -> str:
    return "(" + ", ".join(map(str, tensor.shape)) + ")"


def textconv_index(path: str, out: TextIO) -> None:
    """One line per entry of a checkpoint `.index`: name, shape, dtype, recorded checksum."""
    with read_index(path) as store:
        print(f"# weightkit: {store.format}, {len(store)} variables (checksums of the data "
              "files, which are not read)", file=out)
        for name, tensor in store.items():
            print(f"{safe(name)}{_role(tensor)} {_shape(tensor)} {tensor.dtype_name} "
                  f"{safe(tensor.meta['checksum'])}", file=out)
        for what, checksum in store.meta.get("index_checksums", {}).items():
            print(f"# {safe(what)} {safe(checksum)}", file=out)


def textconv(path: str, out: TextIO | None = None) -> None:
    """One line per variable; a change anywhere in a tensor changes its line. The lines are
    printed once every variable has been read: a file damaged in a later variable gives only
    the line saying it cannot be read, never part of its listing."""
    out = out or sys.stdout
    if index_format(path) is not None:
        textconv_index(path, out)
        return
    with load(path) as store:
        lines = [f"# weightkit: {store.format}, {len(store)} variables"]
        for name, tensor in store.items():
            stats = tensor_stats(tensor)
            lines.append(f"{safe(name)}{_role(tensor)} {_shape(tensor)} {tensor.dtype_name} "
                         f"blake2b:{fingerprint(tensor).hex()[:16]} min={_fmt(stats.min)} "
                         f"max={_fmt(stats.max)} mean={_fmt(stats.mean)} std={_fmt(stats.std)} "
                         f"nan={stats.nan} inf={stats.inf}")
    out.write("\n".join(lines) + "\n")


def diff_files(args: argparse.Namespace, path: str, old: str, new: str,
               new_path: str | None = None, out: TextIO | None = None) -> None:
    """The weight table of OLD against NEW, under a git-style header."""
    out = out or sys.stdout
    label_a = NULL if old == NULL else f"a/{path}"
    label_b = NULL if new == NULL else f"b/{new_path or path}"
    print(f"diff --weightkit a/{safe(path)} b/{safe(new_path or path)}", file=out)
    index_only = args.index_only or _index_only(old, new)
    compare = diff_checksums if index_only else diff_stores
    with _open(old, index_only) as store_a, _open(new, index_only) as store_b:
        result = compare(store_a, store_b, options(args))
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
