"""`weightkit trend RUN...`: how every variable moved over a training run's checkpoints.

RUN is a checkpoint directory with a TF `checkpoint` state file (all its checkpoints, oldest
first), or two or more files or checkpoint prefixes in the order given, in any format weightkit
reads (several directories and files are concatenated in order). Exit status: 0, or 1 when a
`--fail-if` gate trips; 2 trouble.
"""
from __future__ import annotations

import argparse
import contextlib
import sys

from ..converters.errors import UsageError
from ..converters.registry import load
from ..diffing.gates import evaluate, failed
from ..diffing.render import (Target, dump_json, print_gates, render_trend_markdown,
                           render_trend_text, trend_json, trend_rows)
from ..diffing.trend import STEP_FIELDS, VARIABLE_NUMBERS, TrendOptions, run_paths, trend_stores
from .cluster import add_scheduler_argument, cluster
from .main import Exit
from .progress import Progress
from .report import (add_report_arguments, add_selection_arguments, check_html, destination,
                     gates, view)
from .text import colour

HELP = ("how every variable moved over a run's checkpoints: change per step and since the "
        "first, norms, NaN/Inf, frozen and exploding variables")
NUMBERS = (*STEP_FIELDS, *VARIABLE_NUMBERS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="a checkpoint directory with a `checkpoint` state file, or two or "
                             "more weights files / checkpoint prefixes, oldest first")
    parser.add_argument("--from", dest="src_format", metavar="FORMAT",
                        help="read every checkpoint as this format (default: detected)")
    add_selection_arguments(parser)
    parser.add_argument("--explode", metavar="FACTOR", type=float, default=10.0,
                        help="flag a variable as exploding when its norm grows by more than "
                             "FACTOR from one checkpoint to the next (default 10)")
    add_report_arguments(parser, NUMBERS)
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print nothing; report only through the exit status")
    add_scheduler_argument(parser, "read and compare the checkpoints")


def run(args: argparse.Namespace) -> int:
    gate_list = gates(args, NUMBERS)
    check_html(args)
    try:
        opts = TrendOptions(include=tuple(args.include), exclude=tuple(args.exclude),
                            no_optimizer=args.no_optimizer, explode=args.explode,
                            weights_only=args.weights_only)
    except ValueError as exc:
        raise UsageError(f"--explode: {exc}") from None
    paths = run_paths(args.runs, args.src_format)
    with contextlib.ExitStack() as stack:
        stores = [stack.enter_context(load(p, args.src_format)) for p in paths]
        on_cluster = stack.enter_context(cluster(args))
        total = sum(t.nbytes for s in stores for t in s.values())
        with Progress("trend", total, enabled=not args.quiet) as bar:
            opts.progress = bar.advance
            if on_cluster is None:
                result = trend_stores(stores, opts, paths)
            else:
                from ..diffing.distributed import Source, trend_stores as trend_on
                result = trend_on(stores, [Source.of(p, args.src_format) for p in paths], opts,
                                  paths, on_cluster)
        v = view(args)
        rows = trend_rows(result, type(v)(by=v.by))
        tripped = evaluate(gate_list, [(r.name, r.as_dict()) for r in rows])
        if not args.quiet or args.output_file:  # (--quiet prints nothing; -o FILE is written)
            with destination(args) as (out, colour_on):
                target = Target(out, colour=colour_on, view=v, gates=tripped)
                gate_doc = [t.as_dict() for t in tripped] if gate_list else None
                if args.output == "json":
                    dump_json(trend_json(result, v, gate_doc), out)
                elif args.output == "markdown":
                    render_trend_markdown(result, target)
                elif args.output == "html":
                    from ..diffing.html import trend_report
                    out.write(trend_report(result, target))
                else:
                    render_trend_text(result, target)
            if tripped and (args.output != "text" or args.output_file) and not args.quiet:
                print_gates(tripped, sys.stderr, colour(sys.stderr, args.color))
    return Exit.DIFFERENT if failed(tripped) else Exit.OK
