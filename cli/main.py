"""Entry points: `weightkit COMMAND ...` and `wdiff A B` (the same as `weightkit diff A B`).

Each command lives in its own module in this package with `HELP`, `add_arguments(parser)` and
`run(args) -> int`. Errors from files become one line on stderr and exit status 2; `--debug`
shows the traceback instead. A command runs in one session of the byte seam (a URL prefix is
listed once for the whole command) with the I/O budget `--io-budget` sets.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import re
import signal
import sys
import traceback
import warnings
from collections.abc import Sequence
from enum import IntEnum
from typing import Any, NoReturn

from ..converters import source, store
from ..converters.errors import WeightsError, WeightsNote
from .report import check_report_output, report_format
from .text import COLOR_CHOICES, colour, not_one_of, paint, safe

# The cyclic collector's thresholds while a command runs. CPython's default collects the young
# generation every 700 new container objects, and a file of 100,000 variables makes millions
# (plans, header entries, rows): collections took 60% of planning a safetensors write of one,
# and nearly all of those objects are freed by reference counting anyway. Measured with
# verify and show of 100,000 variables (bench/run.py count).
GC_THRESHOLDS = (100_000, 20, 20)
COMMANDS = ("show", "convert", "verify", "edit", "extract", "diff", "trend", "git_config",
            "git_diff_driver")


class Exit(IntEnum):
    OK = 0
    DIFFERENT = 1
    ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse's parser, its usage errors one line like every other error (`weightkit: error:
    --sort: expected one of name, ...; received 'foo'`), exit status 2; `--help` has the
    usage. Subcommand parsers are of the same class (argparse's default)."""

    colour = "auto"  # --color as the command line gives it (`main` sets it before parsing)

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"^argument ([^:]+): ", r"\1: ", message)  # as our errors name options
        program = self.prog.split(" ", 1)[0]  # `weightkit`, not `weightkit show`: as every error
        self.exit(Exit.ERROR, f"{program}: {_error(argparse.Namespace(color=Parser.colour))}: "
                              f"{safe(message)}\n")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # (argparse's own message, with the options meant where one is close)
            self.error(f"unrecognized arguments: {' '.join(extras)}"
                       f"{self._meant(parsed, extras)}")
        return parsed

    def _meant(self, parsed: argparse.Namespace, extras: list[str]) -> str:
        """`; did you mean --include?` for unknown options close to one of the command's."""
        import difflib
        parser: argparse.ArgumentParser = self
        for action in self._actions:  # the command's own parser, when there are commands
            if isinstance(action, argparse._SubParsersAction):
                parser = action.choices.get(getattr(parsed, "command", None), self)
        options = {o[2:]: o for a in parser._actions for o in a.option_strings
                   if o.startswith("--")}  # (compared without the dashes all of them share)
        meant = {}
        for extra in extras:
            given = extra.split("=", 1)[0]
            near = difflib.get_close_matches(given.lstrip("-"), options, n=1, cutoff=0.7) \
                if given.startswith("-") else []
            if near:
                meant[given] = options[near[0]]
        if not meant:
            return ""
        if len(meant) == 1:
            return f"; did you mean {next(iter(meant.values()))}?"
        return "; did you mean " + ", ".join(f"{o} (for {g})" for g, o in meant.items()) + "?"

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # argparse's own message quotes every choice, and differently across Python versions
        if action.choices is not None and value not in action.choices:
            raise argparse.ArgumentError(action, not_one_of(action.choices, value))


def _command_name(module: str) -> str:
    return module.replace("_", "-")


def build_parser(prog: str | None = None, only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; with `only`, the other commands' modules are not imported
    (they stay valid choices), which keeps the start of a single command short."""
    parser = Parser(
        prog=prog, description="Convert, inspect, diff, verify and edit TensorFlow/Keras weights.")
    _common_arguments(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS:
        if only is not None and _command_name(module_name) != only:
            sub.add_parser(_command_name(module_name))
            continue
        module = importlib.import_module(f"{__package__}.{module_name}")
        command = sub.add_parser(_command_name(module_name), help=module.HELP,
                                 description=module.HELP)
        _common_arguments(command)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def _common_arguments(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """--debug and --color, accepted before the command and after it (where they do not
    overwrite what was given before it)."""
    default = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    parser.add_argument("--debug", action="store_true", default=default(False),
                        help="show tracebacks on errors")
    parser.add_argument("--color", "--colour", choices=COLOR_CHOICES, default=default("auto"),
                        help="colour the output: auto (a terminal, unless NO_COLOR is set or "
                             "FORCE_COLOR forces it), always, never (default: auto)")
    parser.add_argument("--io-budget", metavar="SIZE", default=default(None),
                        help="for files at URLs (s3://, gs://, https://): bytes in flight and "
                             "cached per file, at most (e.g. 64M, 1G; default 256M, or "
                             "WEIGHTKIT_IO_BUDGET)")
    if top:
        parser.add_argument("--version", action="version", version=_version())


def build_wdiff_parser() -> argparse.ArgumentParser:
    """`wdiff`: the diff command's parser under its own name."""
    from . import diff
    parser = Parser(prog="wdiff", description=diff.HELP)
    _common_arguments(parser, top=True)
    diff.add_arguments(parser)
    parser.set_defaults(run=diff.run, command="diff")
    return parser


def _requested(argv: list[str]) -> str | None:
    """The command that `argv` runs, or None when it asks for the overall help or names none."""
    names = {_command_name(m) for m in COMMANDS}
    for arg in argv:
        if arg in names:
            return arg
        if arg not in ("--debug", "--color", "--colour", "--io-budget", *COLOR_CHOICES) and \
                not arg.startswith(("--color=", "--colour=", "--io-budget=")) and \
                not _size_like(arg):
            return None
    return None


def _size_like(arg: str) -> bool:
    """An argument that may be --io-budget's value (so that `--io-budget 64M show` is seen)."""
    return bool(arg) and arg[0].isdigit()


def _version() -> str:
    from .. import __version__
    return f"weightkit {__version__}"


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through atomic writers, which remove their temporaries


def main(argv: list[str] | None = None, prog: str | None = None,
         parser: argparse.ArgumentParser | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = parser or build_parser(prog, only=_requested(argv))
    Parser.colour = _colour_option(argv)  # for a usage error, before the arguments are parsed
    args = parser.parse_args(argv)
    report_format(args)  # (before a command reads args.output)
    store.FREEZE_AFTER_BULK = True  # a command's stores live until it ends (see gc_paused)
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    previous = signal.signal(signal.SIGTERM, _terminate)
    warned = warnings.catch_warnings()  # restored when the command ends
    warned.__enter__()
    warnings.simplefilter("always", WeightsNote)  # every note, each time, whatever -W says

    def one_line(message: Warning | str, category: type, *_: object, **__: object) -> None:
        kind = "note" if issubclass(category, WeightsNote) else "warning"
        print(f"{parser.prog}: {kind}: {safe(str(message))}", file=sys.stderr)
    warnings.showwarning = one_line
    try:
        if getattr(args, "io_budget", None) is not None:
            source.set_io_budget(source.parse_size(args.io_budget))
        with source.session():
            check_report_output(args)
            return int(args.run(args))
    except WeightsError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"{parser.prog}: {_error(args)}: {safe(exc)}", file=sys.stderr)
        return Exit.ERROR
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return Exit.OK
    except OSError as exc:  # the system, not the data: a full disk, a file size limit, permissions
        if args.debug:
            traceback.print_exc()
        where = f"{safe(exc.filename)}: " if exc.filename else ""
        print(f"{parser.prog}: {_error(args)}: {where}{safe(exc.strerror or exc)}",
              file=sys.stderr)
        return Exit.ERROR
    except Exception as exc:  # a bug, or a library error a reader failed to translate
        if _interrupted(exc):  # Ctrl-C or SIGTERM inside code that wrapped it (an import)
            print(f"{parser.prog}: interrupted", file=sys.stderr)
            return 130
        if args.debug:
            traceback.print_exc()
        print(f"{parser.prog}: {_error(args)}: unexpected {type(exc).__name__}: {safe(exc)} "
              "(--debug shows the traceback)", file=sys.stderr)
        return Exit.ERROR
    finally:
        signal.signal(signal.SIGTERM, previous)
        warned.__exit__(None, None, None)
        gc.set_threshold(*thresholds)


def _interrupted(exc: BaseException) -> bool:
    """Whether `exc` was caused by an interrupt: Python wraps a KeyboardInterrupt raised while
    a class is made (`__set_name__`) in a RuntimeError, for one."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _colour_option(argv: list[str]) -> str:
    """The --color (--colour) value of a command line not yet parsed (the last given wins)."""
    value = "auto"
    for flag, following in zip(argv, [*argv[1:], ""]):
        name, equals, given = flag.partition("=")
        if name in ("--color", "--colour"):
            value = given if equals else following
    return value if value in COLOR_CHOICES else "auto"


def _error(args: argparse.Namespace) -> str:
    return paint("error", "31", colour(sys.stderr, getattr(args, "color", "auto")))


def wdiff(argv: list[str] | None = None) -> int:
    """`wdiff A B ...`: the same as `weightkit diff A B ...`, its help and errors under the
    name `wdiff`."""
    return main(argv, parser=build_wdiff_parser())


def entry() -> None:
    sys.exit(main())


def wdiff_entry() -> None:
    sys.exit(wdiff())
