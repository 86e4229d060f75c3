"""`--scheduler ADDRESS`, shared by `trend`, `wdiff` and `convert`: run the work on a Dask
cluster (`weightkit.diffing.distributed`). Dask is imported only when the flag is given."""
from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any


def add_scheduler_argument(parser: argparse.ArgumentParser, work: str) -> None:
    parser.add_argument(
        "--scheduler", metavar="ADDRESS",
        help=f"{work} on a Dask cluster: the address of its scheduler (tcp://HOST:8786), or "
             "local:N for N local worker processes; the workers open the files themselves (the "
             "same paths, or URLs) and send back only sums: the same results as a local run "
             "(needs pip install 'weightkit[dask]')")


@contextlib.contextmanager
def cluster(args: argparse.Namespace) -> Iterator[Any]:
    """The Cluster `--scheduler` names for the time of the block, or None without it."""
    if not getattr(args, "scheduler", None):
        yield None
        return
    from ..diffing.distributed import Cluster
    with Cluster(args.scheduler) as found:
        yield found
