"""`weightkit convert SRC DST`: rewrite weights in another format, atomically."""
from __future__ import annotations

import argparse
import contextlib
import os
import warnings
from collections.abc import Callable
from typing import Any

from ..converters.errors import UsageError, WeightsError, WeightsNote
from ..converters.format import WritePlan
from ..converters.names import OPTIMIZER_ROLES
from ..converters.quant import dequantize
from ..converters.paths import same_file
from ..converters.registry import detect, format_for_output, get, load, plan, save
from ..converters.source import display, is_url, local_path
from ..converters.store import Store
from .progress import Progress, data_bytes, tracked
from .text import safe

HELP = "convert a weights file to another format (written atomically; never over an input)"


SELECTION = ("keep", "drop", "no-optimizer", "weights-only")  # edit's operations that choose variables


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_output_arguments(parser)
    from .edit import add_operations
    add_operations(parser, SELECTION, "selection (edit's operations, applied in the order given)")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print nothing (with a selection: not the variables it dropped)")
    parser.add_argument("--dequantize", action="store_true",
                        help="write quantized tensors (TFLite, TF.js) as float32 real values")
    from .cluster import add_scheduler_argument
    add_scheduler_argument(parser, "read and write (one task per output shard: TF checkpoint "
                                   "data shards, sharded Keras 3 .weights.json)")


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
    parser.add_argument("--match", choices=("name", "structure"), default="name",
                        help="with --like: pair the weights with the template's variables by "
                             "name (default) or by structure (order and shape, per role), "
                             "e.g. a tf_keras .h5 into a Keras 3 .keras template")


def like_names(store: Store, template: Store, match: str) -> Store:
    """`store` with the template's names, paired by structure (`--match structure`), or as it
    is (`name`). Every template variable must find one, except the template's optimizer state
    and counters (the writer takes those from the template): a UsageError names those that
    do not (and the variables of `store` left over)."""
    if match != "structure":
        return store
    from ..diffing.match import Var, match as pair
    def vars_of(s: Store) -> list[Var]:
        return [Var(n, t.role, t.shape, t.dtype_name) for n, t in s.items()]
    found = pair(vars_of(store), vars_of(template), "structure")
    # The template's own optimizer state fills what the weights lack (format.py's rule).
    missing = [n for n in found.only_b if template[n].role not in OPTIMIZER_ROLES]
    if found.only_a or missing:
        lacking = ", ".join(repr(n) for n in missing[:3])
        extra = ", ".join(repr(n) for n in found.only_a[:3])
        raise UsageError(
            "--match structure: "
            + (f"{len(missing)} template variable(s) found no weights of their shape and "
               f"role (e.g. {lacking})" if missing else "")
            + ("; " if missing and found.only_a else "")
            + (f"{len(found.only_a)} variable(s) found no place in the template (e.g. {extra})"
               if found.only_a else "")
            + " (edit --no-optimizer or --weights-only leaves the weights' optimizer out; the "
            "template's is then written)")
    names = {p.a: p.b for p in found.pairs}
    return store.replace({names[n]: t for n, t in store.items()}, aliases={})


def check_output(src: str, dst: str, *others: str) -> None:
    """Refuse an output that is one of the inputs (a URL: the same URL), under any name the
    input's format gives it (`Format.stored_as`: a checkpoint's prefix, `.index`, data files
    and directory name one checkpoint); local paths through symlinks and `file://`."""
    for path in (src, *others):
        if not path:
            continue
        try:
            stored_as = get(detect(path)).stored_as
        except WeightsError:  # (not readable: loading it says why)
            stored_as = None

        def names(p: str) -> set[str]:
            return {p, *(stored_as(p) if stored_as is not None else ())}
        if is_url(path) or is_url(dst):
            same = bool({display(p).rstrip("/") for p in names(path)}
                        & {display(p).rstrip("/") for p in names(dst)})
        else:  # (file:// URLs as paths; symlinked directories resolved)
            source, target = local_path(path), local_path(dst)
            same = same_file(source, target) or bool(
                {os.path.realpath(p) for p in names(source)}
                & {os.path.realpath(p) for p in names(target)}) or _inside(target, source)
        if same:
            raise UsageError(f"refusing to overwrite the input {safe(display(path))!r}", dst)


def _inside(target: str, source: str) -> bool:
    """Whether `target` would replace a file of the input directory `source` (its SavedModel
    graph, TF.js manifest, checkpoint state file, a checkpoint's `.index` in it); a new file
    in it (another checkpoint of a run) is fine."""
    if not os.path.isdir(source):
        return False
    folder = os.path.realpath(source) + os.sep
    return any(os.path.realpath(p).startswith(folder) and os.path.lexists(p)
               for p in (target, target + ".index"))


def run(args: argparse.Namespace) -> int:
    from .edit import apply, print_edits
    check_output(args.src, args.dst, args.like or "")
    if args.match != "name" and not args.like:
        raise UsageError("--match structure pairs the weights with a template: give --like")
    fmt = args.to or format_for_output(args.dst, args.src, args.src_format)
    if getattr(args, "scheduler", None):
        return _run_on_cluster(args, fmt)
    with load(args.src, args.src_format) as store, \
            Progress("convert", data_bytes(store), enabled=not args.quiet) as bar:
        if args.dequantize:
            store = dequantize(store)
        store = tracked(store, bar)
        if args.ops:
            store = apply(store, args.ops)
        planned = write(store, args, fmt)
        if args.ops and not args.quiet:
            print_edits(store.edits, f"wrote {args.dst} ({fmt})")
    note_losses(args, planned.losses)  # (the progress line gone)
    return 0


def write(store: Store, args: argparse.Namespace, fmt: str) -> WritePlan:
    """Write `store` to `args.dst` in `fmt` (into the structure of `--like`, paired as
    `--match` says); returns the plan, whose losses `note_losses` reports."""
    with contextlib.ExitStack() as stack:
        template = stack.enter_context(load(args.like)) if args.like else None
        written = store if template is None else like_names(store, template, args.match)
        planned = plan(written, fmt, template)
        save(written, args.dst, fmt, allow_lossy=args.allow_lossy, like=template,
             planned=planned)
    for note in planned.notes if not args.quiet else ():
        warnings.warn(f"{display(args.dst)}: {note}", WeightsNote)
    return planned


def note_losses(args: argparse.Namespace, losses: list[str]) -> None:
    """What --allow-lossy accepted, said once on stderr (not with --quiet)."""
    if losses and not args.quiet:
        warnings.warn(f"{display(args.dst)}: written without {'; '.join(losses)} "
                      "(--allow-lossy)", WeightsNote)


def _run_on_cluster(args: argparse.Namespace, fmt: str) -> int:
    """`convert --scheduler`: the workers read the input and write the output, one task per
    output shard; the driver reads metadata only (`distributed.convert_store`)."""
    from ..diffing.distributed import Conversion, Source, convert_store
    from .cluster import cluster
    from .edit import print_edits
    ops = tuple((op, tuple(v) if isinstance(v, list) else v) for op, v in args.ops)
    conversion = Conversion(
        Source.of(args.src, args.src_format, args.dequantize), args.dst, fmt, args.allow_lossy,
        Source.of(args.like) if args.like else None, (ops, args.match))
    with contextlib.ExitStack() as stack:
        opened: dict = {}

        def open_store(source: Any) -> Store:
            if source not in opened:
                opened[source] = stack.enter_context(source.open())
            return opened[source]
        store, like = build(conversion, open_store)
        on_cluster = stack.enter_context(cluster(args))
        with Progress("convert", data_bytes(store), enabled=not args.quiet) as bar:
            lost = convert_store(store, like, conversion, build, on_cluster, bar.advance)
        if ops and not args.quiet:
            print_edits(_edited(conversion, open_store).edits, f"wrote {args.dst} ({fmt})")
    note_losses(args, lost)
    return 0


def build(conversion: Any, open_store: Callable[[Any], Store]) -> tuple[Store, Store | None]:
    """The store `convert` writes and its template, from `conversion` (its `edits`: the
    selection operations and --match): on the driver and on every Dask worker alike."""
    store = _edited(conversion, open_store)
    like = open_store(conversion.like) if conversion.like is not None else None
    if like is not None:
        store = like_names(store, like, conversion.edits[1])
    return store, like


def _edited(conversion: Any, open_store: Callable[[Any], Store]) -> Store:
    from .edit import apply
    ops = conversion.edits[0]
    store = open_store(conversion.src)
    if ops:
        store = apply(store, [(op, list(v) if isinstance(v, tuple) else v) for op, v in ops])
    return store
