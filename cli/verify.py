"""`weightkit verify FILE`: round-trip FILE through other formats and back, compared bit for bit.

Exit status: 0 every pair identical (or skipped), 1 something lossy or different (a framework
load included), 2 a conversion failed (or the request itself was wrong).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

from ..converters.deps import require
from ..converters.errors import UsageError
from ..converters.registry import get, load
from ..converters.store import Store
from ..diffing.oracle import FRAMEWORK_FORMATS
from ..diffing.verify import Trip, candidates, verify
from .main import Exit
from .progress import Progress, data_bytes, tracked
from .text import colour, paint, safe, table

HELP = "round-trip a weights file through other formats and back, and compare bit for bit"
SCHEMA_VERSION = 1
_COLOURS = {"identical": "32", "skipped": "2", "lossy": "33", "different": "31", "failed": "31"}
LOAD_TIMEOUT = 1800


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="weights file, checkpoint prefix or directory")
    parser.add_argument("--from", dest="src_format", metavar="FORMAT",
                        help="input format (default: detected from the content)")
    parser.add_argument("--via", metavar="FORMAT", action="append",
                        help="round-trip through FORMAT (repeatable; default: every format "
                             "that can hold the file without loss)")
    parser.add_argument("--load", action="store_true",
                        help="also load the original and the round-tripped file with the "
                             "framework (needs the tensorflow extra)")
    parser.add_argument("--format", dest="output", choices=("text", "json"), default="text",
                        help="report format (default: text)")
    parser.add_argument("--json", dest="output", action="store_const", const="json",
                        help="the same as --format json")


def run(args: argparse.Namespace) -> int:
    via = list(dict.fromkeys(get(name).name for name in args.via)) if args.via else None  # once
    with load(args.file, args.src_format) as loaded:
        vias = via or candidates(loaded)
        if not vias:
            raise UsageError("no format can hold this file without loss; name one with --via")
        check = None
        if args.load:
            if loaded.format not in FRAMEWORK_FORMATS:
                raise UsageError(f"--load: expected a framework format "
                                 f"({', '.join(FRAMEWORK_FORMATS)}), received {loaded.format}")
            _need_framework()
            check = lambda s, trips: _framework_check(args.file, s, trips)  # noqa: E731
        # read once here, then per target once to write it and once to compare
        with Progress("verify", data_bytes(loaded) * (1 + 2 * len(vias))) as bar:
            store = tracked(loaded, bar.advance)
            _read_through(store)
            trips = verify(store, via, check)
        status = exit_status(trips)
        if args.output == "json":
            json.dump({"schema_version": SCHEMA_VERSION, "file": args.file,
                       "format": store.format, "status": status.name.lower(),
                       "trips": [t.as_dict() for t in trips]}, sys.stdout, indent=1)
            print()
        else:
            _print_table(args.file, store, trips, colour(sys.stdout, args.color))
    return status


def _read_through(store: Store) -> None:
    """Read every tensor once, so that a damaged input fails with its own one-line error
    instead of as every round trip in the table."""
    for tensor in store.values():
        for _ in tensor.iter_chunks():
            pass


def exit_status(trips: list[Trip]) -> Exit:
    """2 if any conversion failed, 1 if anything was lost or differs, else 0."""
    if any(t.status == "failed" for t in trips):
        return Exit.ERROR
    if any(t.status not in ("identical", "skipped")
           or (t.load or {}).get("status") in ("different", "failed")
           for t in trips):
        return Exit.DIFFERENT
    return Exit.OK


def _need_framework() -> None:
    if importlib.util.find_spec("tensorflow") is None:
        require("tensorflow")  # raises MissingDependencyError with the install command


def _framework_check(original: str, store: Store, trips: list[Trip]) -> None:
    """Have the framework load the original and every round-tripped file, in a child process
    (so that this process never imports TensorFlow)."""
    checked = [t for t in trips if t.files and t.status not in ("failed", "skipped")]
    if not checked:
        return
    jobs = [{"format": store.format, "original": os.path.abspath(original),
             "copy": t.files[-1]} for t in checked]
    with tempfile.TemporaryDirectory(prefix="weightkit-load-") as work:
        jobs_path, results_path = os.path.join(work, "jobs.json"), os.path.join(work, "results.json")
        with open(jobs_path, "w", encoding="utf-8") as f:
            json.dump(jobs, f)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        env.setdefault("KERAS_BACKEND", "tensorflow")
        done = subprocess.run([sys.executable, "-m", "weightkit.diffing.oracle", jobs_path,
                               results_path], env=env, capture_output=True, text=True,
                              timeout=LOAD_TIMEOUT)
        if done.returncode != 0 or not os.path.exists(results_path):
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise UsageError(f"--load: the framework check failed: {tail[0]}")
        with open(results_path, encoding="utf-8") as f:
            results = json.load(f)
    for trip, result in zip(checked, results):
        trip.load = result


def _detail(trip: Trip) -> str:
    """The table's details: the first line of each (--json has all of it)."""
    parts = trip.lost + trip.differences + ([trip.error] if trip.error else []) + trip.notes
    return "; ".join((p.splitlines() or [""])[0] for p in parts)


def _print_table(path: str, store: Store, trips: list[Trip], colour_on: bool = False) -> None:
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
    print(f"{safe(path)}: {store.format}, {len(store)} variables")
    print(table(rows, headers, wrap={2: 60, 3: 50}))
