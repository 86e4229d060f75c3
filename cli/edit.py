"""`weightkit edit SRC DST`: chained edits applied in command-line order, written atomically."""
from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..converters.edit import Edit, EditedStore, edit
from ..converters.errors import UsageError, WeightsError
from ..converters.paths import check_input
from ..converters.registry import check, format_for_output, load, plan
from ..converters.store import Store
from .convert import add_output_arguments, check_output, like_names, note_losses, write
from .progress import Progress, data_bytes, tracked
from .text import colour, safe, table

HELP = ("edit weights (rename, drop, keep, no-optimizer, weights-only, cast, scale, prune, set, "
        "add) "
        "and write a new file")


def _split(option: str, value: str, what: str, last: bool = True) -> tuple[str, str]:
    """`LEFT=RIGHT` split at the last `=` (or the first when `last` is False)."""
    left, sep, right = value.rpartition("=") if last else value.partition("=")
    if not sep or not left:
        raise UsageError(f"{option}: expected {what}, received {value!r}")
    return left, right


def _number(option: str, text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{option}: expected {what} as a number, received {text!r}") from None


def _load_npy(option: str, path: str) -> np.ndarray:
    """A `.npy` file, memory-mapped when possible; never unpickles."""
    check_input(path)
    try:
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError:  # empty arrays cannot be mapped; object arrays fail again below
            array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UsageError(f"{option}: expected a .npy file without pickled objects, "
                         f"received {path!r} ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise UsageError(f"{option}: expected a .npy file, received an archive {path!r}")
    return array


Apply = Callable[[EditedStore, str, str], EditedStore]


def _rename(store: EditedStore, option: str, value: str) -> EditedStore:
    return store.rename(*_split(option, value, "REGEX=REPL"))


def _cast(store: EditedStore, option: str, value: str) -> EditedStore:
    return store.cast(*_split(option, value, "GLOB=DTYPE"))


def _scale(store: EditedStore, option: str, value: str) -> EditedStore:
    pattern, factor = _split(option, value, "GLOB=FACTOR")
    return store.scale(pattern, _number(option, factor, "FACTOR"))


def _prune(store: EditedStore, option: str, value: str) -> EditedStore:
    pattern, fraction = _split(option, value, "GLOB=FRACTION")
    return store.prune(pattern, _number(option, fraction, "FRACTION"))


def _set(store: EditedStore, option: str, value: str) -> EditedStore:
    name, path = _split(option, value, "NAME=FILE.npy", last=False)
    return store.set(name, _load_npy(option, path))


def _add(store: EditedStore, option: str, value: str) -> EditedStore:
    name, path = _split(option, value, "NAME=FILE.npy", last=False)
    return store.add(name, _load_npy(option, path))


# option: (metavar, help, how to apply it)
OPERATIONS: dict[str, tuple[str, str, Apply]] = {
    "rename": ("REGEX=REPL", "rename variables with re.sub (collisions are refused)", _rename),
    "drop": ("GLOB", "remove matching variables", lambda s, o, v: s.drop(v)),
    "keep": ("GLOB", "keep only matching variables", lambda s, o, v: s.keep(v)),
    "no-optimizer": ("", "drop the optimizer state (variables of role optimizer or counter)",
                     lambda s, o, v: s.drop_optimizer()),
    "weights-only": ("", "keep the model weights only (drop roles optimizer, counter, metric)",
                     lambda s, o, v: s.weights_only()),
    "cast": ("GLOB=DTYPE", "cast floating variables (float32, float16, bfloat16, ...)", _cast),
    "scale": ("GLOB=FACTOR", "multiply floating variables by FACTOR", _scale),
    "prune": ("GLOB=FRACTION", "zero the smallest-magnitude FRACTION of each matching variable",
              _prune),
    "set": ("NAME=FILE.npy", "replace a variable (same shape and dtype)", _set),
    "add": ("NAME=FILE.npy", "add a new variable", _add),
}


class _Append(argparse.Action):
    """Append `(operation, value)` to one shared list so operations keep their order."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        namespace.ops = [*getattr(namespace, "ops", []), (self.const, values)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_output_arguments(parser)
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would change (a diff table) and write nothing")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print nothing (errors still go to stderr)")
    add_operations(parser, tuple(OPERATIONS), "operations (applied in the order given, repeatable)")


def add_operations(parser: argparse.ArgumentParser, names: Sequence[str], title: str) -> None:
    """The flags of the operations `names` (edit: all; convert: the selection ones), each
    appending to `args.ops` so that they apply in command-line order."""
    group = parser.add_argument_group(title)
    for op in names:
        metavar, text, _ = OPERATIONS[op]
        group.add_argument(f"--{op}", metavar=metavar or None, nargs=None if metavar else 0,
                           help=text, action=_Append, const=op, dest="ops", default=[])


def apply(store: Store, ops: Sequence[tuple[str, str]]) -> EditedStore:
    """Apply `(operation, value)` pairs as given on the command line."""
    edited = edit(store, flags=True)
    for op, value in ops:
        edited = OPERATIONS[op][2](edited, f"--{op}", value)
    return edited


def run(args: argparse.Namespace) -> int:
    if not args.ops:
        raise UsageError("expected at least one operation (--rename, --drop, --keep, "
                         "--no-optimizer, --weights-only, --cast, --scale, --prune, --set, "
                         "--add); to only convert, use convert")
    if args.match != "name" and not args.like:
        raise UsageError("--match structure pairs the weights with a template: give --like")
    npy = [value.partition("=")[2] for op, value in args.ops if op in ("set", "add")]
    check_output(args.src, args.dst, args.like or "", *npy)
    fmt = args.to or format_for_output(args.dst, args.src, args.src_format)
    with load(args.src, args.src_format) as store, \
            Progress("edit", data_bytes(store), enabled=not args.quiet) as bar:
        edited = apply(tracked(store, bar), args.ops)
        if args.dry_run:
            if args.quiet:  # the exit status is the real run's: check what writing would refuse
                with contextlib.ExitStack() as stack:
                    template = stack.enter_context(load(args.like)) if args.like else None
                    check(edited, fmt, template, allow_lossy=args.allow_lossy, path=args.dst)
                return 0
            _print_dry_run(store, edited, args, fmt)
            return 0
        planned = write(edited, args, fmt)
        if not args.quiet:
            print_edits(edited.edits, f"wrote {args.dst} ({fmt})")
    note_losses(args, planned.losses)  # what --allow-lossy accepted (a rename not written)
    return 0


def _measured(record: Edit) -> str:
    numbers = record.measure()
    if not numbers:
        return ""
    text = f"max rounding error {numbers['max_abs_error']:.3g}"
    return text + (f", {numbers['overflow']:,} overflowed" if numbers["overflow"] else "")


def print_edits(edits: Sequence[Edit], heading: str) -> None:
    rows = [[f"--{e.op} {safe(e.arg)}", safe(e.name), e.detail, _measured(e)] for e in edits]
    print(safe(heading))
    print(table(rows, ["operation", "variable", "change", "measured"]))


def _print_dry_run(store: Store, edited: EditedStore, args: argparse.Namespace,
                   fmt: str) -> None:
    """The edits, what the output format would lose, and the diff of input and edited store;
    then the error writing would stop at (a loss without --allow-lossy, a drop the format
    cannot hold), if any, so that the exit status is the real run's."""
    from ..diffing.engine import diff_stores
    from ..diffing.render import Target, render_table

    print_edits(edited.edits, f"dry run: nothing written to {args.dst} ({fmt})")
    with contextlib.ExitStack() as stack:
        template = stack.enter_context(load(args.like)) if args.like else None
        written = like_names(edited, template, args.match) if template is not None else edited
        planned = plan(written, fmt, template)
        lost = planned.losses
        try:
            check(written, fmt, template, allow_lossy=args.allow_lossy, path=args.dst,
                  planned=planned)
            refused = None
        except WeightsError as exc:
            refused = exc
    if lost:
        print(safe(f"writing {fmt} would lose: {'; '.join(lost)}"
                   + ("" if args.allow_lossy else " (refused without --allow-lossy)")))
    print()
    target = Target(sys.stdout, colour=colour(sys.stdout, args.color))
    render_table(diff_stores(store, edited), target, f"{args.src} ({store.format})",
                 f"{args.dst} (edited)")
    if refused is not None:
        raise refused
