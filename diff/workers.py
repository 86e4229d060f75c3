"""Run a function over many tensors on every core.

Large jobs on Linux go to forked worker processes: each inherits the open stores, so only a job's
index and its small result cross. Threads would share one interpreter lock, handed back and forth
around every short numpy call, and one address space whose map/unmap calls they contend for: on
two cores they compared a 1 GiB pair 1.3x faster than one thread, processes 1.85x. Small jobs (and
other systems, where fork is unsafe or absent) run in threads.

While they run, BLAS is held to one thread (threadpoolctl; forked workers inherit the limit),
one job or many: OpenBLAS threads inside each np.dot on top of the workers oversubscribe the
cores (a diff was 5x slower on 2 cores), and a dot product split over threads is summed in
another order (np.dot of 20,000 float64 values or more gives another last bit on two threads
than on one), which would make a result depend on how many jobs ran beside it, and a Dask
worker's (one BLAS thread, `distributed.py`) differ from the local one. The limit is lifted when
the jobs end, so a program using weightkit keeps its own BLAS threads.
"""
from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..converters.store import Progress

Result = TypeVar("Result")

PROCESS_MIN_BYTES = 64 << 20  # smaller jobs finish before forked workers would pay off
_JOBS: list[tuple[Callable[..., Any], tuple]] = []  # inherited by forked workers, never pickled


def run_all(fn: Callable[..., Result], jobs: Sequence[tuple], sizes: Sequence[int], *,
            workers: int = 0, progress: Progress | None = None) -> list[Result]:
    """`[fn(*job, progress) for job in jobs]`, in parallel. `sizes` are the jobs' bytes. In
    threads `fn` reports its own progress; a worker process gets None and the job's size is
    reported here when it ends. `workers` 0: one per core, at most 4."""
    workers = min(workers or min(4, os.cpu_count() or 1), len(jobs))
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        if workers <= 1:
            return [fn(*job, progress) for job in jobs]
        if sum(sizes) >= PROCESS_MIN_BYTES and sys.platform.startswith("linux"):
            return _in_processes(fn, jobs, sizes, workers, progress)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda job: fn(*job, progress), jobs))


def _in_processes(fn: Callable[..., Result], jobs: Sequence[tuple], sizes: Sequence[int],
                  workers: int, progress: Progress | None) -> list[Result]:
    import multiprocessing  # (here: 9 ms of every command's start otherwise)
    from concurrent.futures import ProcessPoolExecutor
    global _JOBS
    _JOBS = [(fn, job) for job in jobs]
    context = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
            futures = [pool.submit(_run_job, i) for i in range(len(jobs))]
            if progress is not None:
                for future, size in zip(futures, sizes):
                    future.add_done_callback(lambda _, n=size: progress(n))
            return [future.result() for future in futures]
    finally:
        _JOBS = []


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_job(index: int) -> Any:
    fn, job = _JOBS[index]
    return fn(*job, None)
