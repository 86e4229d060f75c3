#!/usr/bin/env python3
"""`weightkit trend` on a Dask cluster of 1, 2 and 4 workers against the local engine.

    .venv/bin/python bench/dask_trend.py                  # 256 MiB corpus, 10 checkpoints
    .venv/bin/python bench/dask_trend.py --size 64 --repeat 1

The run is `bench/run.py`'s trend run (safetensors checkpoints derived from the shared corpus;
every third variable moves a little each step), built once under `bench/out/`. For each worker
count a LocalCluster of that many worker processes (one thread each) is started here, warmed
by one untimed run (the workers import weightkit and numpy), and `weightkit trend RUN --json
--scheduler ADDRESS` is timed as a child process, best wall of --repeat; the peak RSS of every
worker process comes from the workers themselves (`getrusage`, asked through the client). The
local engine (`weightkit trend RUN --json`, its own forked workers) is timed the same way.
`local:N` (the CLI starting its own cluster) is timed once more at the end: the start-up cost.
Every run's JSON is checked equal to the local one. Uses this interpreter's weightkit (the
development venv: its editable install costs ~20 ms per start). Writes
`bench/out/dask-<UTC time>.json`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402  (bench/run.py: corpus, trend run, timed children)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="corpus size in MiB (256)")
    parser.add_argument("--steps", type=int, default=10, help="checkpoints in the run (10)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts (1,2,4)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs each, best kept (2)")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster

    bench.OUT.mkdir(parents=True, exist_ok=True)
    root = bench.corpus(args.size, args)
    paths = bench.trend_run(root, args.steps)
    data = sum(p.stat().st_size for p in paths)
    trend = [sys.executable, "-m", "weightkit.cli", "trend", *map(str, paths), "--json"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def timed(label: str, argv: list[str]) -> tuple[bench.Measure, str]:
        bench.run_child(argv, capture=False, timeout=args.timeout, env=env)  # untimed warm-up
        m = bench.measure(label, argv, paths, args, env=env)
        out = bench.subprocess.run(argv, capture_output=True, text=True, env=env).stdout
        return m, out

    print(f"trend over {len(paths)} checkpoints, {data / 2**20:.0f} MiB:", file=sys.stderr)
    local, expected = timed("local engine", trend)
    rows = [{"run": "local engine", "workers": None, "wall_s": local.wall_s,
             "cpu_s": local.cpu_s, "rss_mib": local.rss_mib, "speedup": 1.0,
             "worker_rss_mib": None, "same_json": True}]
    for n in [int(x) for x in args.workers.split(",")]:
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          dashboard_address=None, silence_logs=50,
                          scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster, \
                Client(cluster) as client:
            m, out = timed(f"dask {n} worker(s)", [*trend, "--scheduler", cluster.scheduler_address])
            worker_rss = sorted(client.run(peak_rss_mib).values())
        rows.append({"run": f"--scheduler, {n} worker(s)", "workers": n, "wall_s": m.wall_s,
                     "cpu_s": m.cpu_s, "rss_mib": m.rss_mib,
                     "speedup": local.wall_s / m.wall_s if m.wall_s else None,
                     "worker_rss_mib": worker_rss, "same_json": out == expected})
    n = max(int(x) for x in args.workers.split(","))
    start = time.perf_counter()
    done = bench.subprocess.run([*trend, "--scheduler", f"local:{n}"], capture_output=True,
                                text=True, env=env)
    wall = time.perf_counter() - start
    rows.append({"run": f"--scheduler local:{n} (cluster started by the command)", "workers": n,
                 "wall_s": wall, "cpu_s": None, "rss_mib": None,
                 "speedup": local.wall_s / wall, "worker_rss_mib": None,
                 "same_json": done.stdout == expected})
    info = bench.machine()
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "size_mib": args.size, "steps": args.steps, "data_mib": data / 2**20,
              "repeat": args.repeat, "machine": info, "rows": rows}
    path = bench.OUT / f"dask-{dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print("\n| run | wall s | speed-up | peak RSS per worker MiB | driver RSS MiB | same JSON |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        rss = ", ".join(f"{x:.0f}" for x in r["worker_rss_mib"]) if r["worker_rss_mib"] else ""
        driver = "" if r["rss_mib"] is None else f"{r['rss_mib']:.0f}"
        print(f"| {r['run']} | {r['wall_s']:.2f} | {r['speedup']:.2f}x | {rss} | {driver} | "
              f"{'yes' if r['same_json'] else 'NO'} |")
    print(f"\nresults: {path.relative_to(bench.REPO)}")
    return 0 if all(r["same_json"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
