"""The report options every reporting command shares (`diff`, `show`, `trend`): one flag per job.

`--format text|json|markdown|html` names the report (`--json` is `--format json`), `-o FILE`
writes it atomically instead of printing it, `--by layer|module` rolls variables up, `--sort
FIELD` and `--top N` order and cut the rows, `--fail-if 'FIELD OP NUMBER'` gates CI.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TextIO

from ..converters.atomic import atomic_output
from ..converters.deps import require
from ..converters.errors import UsageError
from ..diffing.gates import Gate, example, parse_all
from ..diffing.render import View
from ..diffing.rollup import BY
from .text import colour, not_one_of

FORMATS = ("text", "json", "markdown", "html")
_GATE_EXAMPLES = (("rel_l2", "'rel_l2>0.05', 'nan_b>0'"),          # wdiff
                  ("rel_l2_prev", "'rel_l2_prev>0.05', 'nan>0'"),  # trend
                  ("std", "'nan>0', 'std>1'"))                     # show


def add_report_arguments(parser: argparse.ArgumentParser, numbers: Sequence[str], *,
                         formats: Sequence[str] = FORMATS, gates: bool = True,
                         legacy_input: Callable[[str], bool] | None = None) -> None:
    """--format/--json/-o, --by/--sort/--top, and --fail-if over the per-variable `numbers`.
    A value given to --format for which `legacy_input` holds (an input format, as `show
    --format` once took) parses as "input:NAME" for the command to turn into --from NAME with a
    warning."""
    group = parser.add_argument_group("report")
    group.add_argument("--format", dest="output", default=None,
                       metavar="{" + ",".join(formats) + "}",
                       type=_format_choice(formats, legacy_input),
                       help="report format (default: as -o FILE's suffix says: .json, .md, "
                            ".html; else text; html needs -o and weightkit[report])")
    parser.set_defaults(report_formats=tuple(formats))
    group.add_argument("--json", dest="output", action="store_const", const="json",
                       help="the same as --format json")
    group.add_argument("-o", "--output", dest="output_file", metavar="FILE",
                       help="write the report to FILE (atomically) instead of standard output")
    group.add_argument("--by", choices=BY, default="variable",
                       help="one row per variable (default), per layer (the name without its "
                            "last /part) or per module (its first /part), statistics combined "
                            "from exact sums")
    group.add_argument("--sort", metavar="FIELD", choices=("name", *numbers),
                       help="order rows by FIELD, largest magnitude first (name: "
                            f"alphabetically); FIELD one of name, {', '.join(numbers)}")
    group.add_argument("--top", metavar="N", type=_positive, help="list only the first N rows")
    if gates:
        examples = next((text for field, text in _GATE_EXAMPLES if field in numbers),
                        example(numbers))
        group.add_argument("--fail-if", metavar="'FIELD OP NUMBER'", action="append",
                           default=[],
                           help="exit 1 when some row's FIELD (one of the --sort fields but "
                                "name) satisfies OP NUMBER (>, >=, <, <=, ==, !=; repeatable), "
                                f"e.g. {examples}; otherwise exit 0"
                                + (", also when the files differ" if "rel_l2" in numbers
                                   else ""))


def add_selection_arguments(parser: argparse.ArgumentParser, filter_alias: bool = False) -> None:
    """--include/--exclude/--no-optimizer: the variables a command reads (show, diff, trend,
    convert)."""
    names = ("--include", "--filter") if filter_alias else ("--include",)
    parser.add_argument(*names, dest="include", metavar="GLOB", action="append", default=[],
                        help="only variables whose name or original key matches GLOB "
                             "(repeatable)"
                             + ("; --filter is the old spelling" if filter_alias else ""))
    parser.add_argument("--exclude", metavar="GLOB", action="append", default=[],
                        help="leave out variables whose name or original key matches GLOB "
                             "(repeatable)")
    parser.add_argument("--no-optimizer", action="store_true",
                        help="leave out optimizer slots and counters")
    parser.add_argument("--weights-only", action="store_true",
                        help="model weights only: leave out optimizer and metric state")


def _format_choice(formats: Sequence[str], legacy_input: Callable[[str], bool] | None = None):
    def check(value: str) -> str:
        value = "text" if value == "table" else value  # the old name of the text report
        if value not in formats and legacy_input is not None and legacy_input(value):
            return f"input:{value}"
        if value not in formats:
            raise argparse.ArgumentTypeError(not_one_of(formats, value))
        return value
    return check


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, received {value}")
    return value


def view(args: argparse.Namespace) -> View:
    return View(by=args.by, sort=args.sort, top=args.top, all=getattr(args, "all", False))


def gates(args: argparse.Namespace, numbers: Sequence[str]) -> list[Gate]:
    return parse_all(getattr(args, "fail_if", None), numbers)


def check_html(args: argparse.Namespace) -> None:
    """Before any work: `--format html` needs -o FILE and the report extra."""
    if args.output != "html":
        return
    if not args.output_file:
        raise UsageError("--format html: expected -o FILE (the report is one self-contained "
                         "HTML file)")
    require("plotly")


_SUFFIX_FORMATS = {".json": "json", ".md": "markdown", ".markdown": "markdown",
                   ".html": "html", ".htm": "html"}


def report_format(args: argparse.Namespace) -> None:
    """Set the report format not given by --format/--json: as `-o FILE`'s suffix says (one
    the command writes), else text."""
    if getattr(args, "report_formats", None) is None or args.output is not None:
        return
    suffix = os.path.splitext(args.output_file or "")[1].lower()
    chosen = _SUFFIX_FORMATS.get(suffix)
    args.output = chosen if chosen in args.report_formats else "text"


def check_report_output(args: argparse.Namespace) -> None:
    """Refuse a `-o FILE` that is one of the command's inputs (before any work is done)."""
    if not getattr(args, "output_file", None):
        return
    from .convert import check_output
    inputs = [getattr(args, k, None) for k in ("file", "a", "b")] + \
        list(getattr(args, "runs", None) or [])
    for given in inputs:
        if isinstance(given, str) and given:
            check_output(given, args.output_file)


@contextlib.contextmanager
def destination(args: argparse.Namespace) -> Iterator[tuple[TextIO, bool]]:
    """(stream, colour) for the report: standard output, or a buffer written atomically to
    `-o FILE` when the report is complete (an error leaves no partial file)."""
    choice = getattr(args, "color", "auto")
    if not args.output_file:
        yield sys.stdout, colour(sys.stdout, choice)
        return
    buffer = io.StringIO()
    yield buffer, choice == "always"
    with atomic_output() as out, open(out.path(args.output_file), "w", encoding="utf-8") as f:
        f.write(buffer.getvalue())
