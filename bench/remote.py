#!/usr/bin/env python3
"""Weights where they live: requests, bytes and time of weightkit commands on URLs.

    .venv/bin/python bench/remote.py                       # both parts, the 256 MiB corpus
    .venv/bin/python bench/remote.py --only requests --size 64
    .venv/bin/python bench/remote.py --only latency --latency 0.02,0.1 --bandwidth 100

The corpus is bench/run.py's (`bench/out/corpus-<MiB>/`, built once with TensorFlow by
../shared/bench/make_corpus.py; `--corpus DIR` takes one already built): before/after in
safetensors, HDF5 and a TF checkpoint, and an npz and a TF.js model converted from the
safetensors pair by weightkit. Servers are the test suite's (`tests/remote_servers.py`), on
127.0.0.1:

- requests: moto (S3) and gcp-storage-emulator (GCS) behind counting proxies. For each command
  and format: requests by kind (listings, reads, HEAD), bytes served against the bytes of the
  files, and the wall time (the emulators are slow and stall under concurrent ranges: counts
  carry over to the cloud, times do not).
- latency: our HTTP server with `--latency` seconds added to every request (and optionally a
  shared link of `--bandwidth` MiB/s). Each command on the URL against downloading the whole
  files first (one GET each, to a local file) and running the command on them.

Each command is a child process (wall clock around it); prints tables and writes
`bench/out/remote-<UTC time>.json`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(REPO / "tests"))
MIB = 1 << 20
WK = [sys.executable, "-m", "weightkit.cli"]

from remote_servers import HttpFiles, environment, running_gcs, running_s3  # noqa: E402


def corpus(args: argparse.Namespace) -> Path:
    """The corpus with npz and TF.js copies of the safetensors pair."""
    root = Path(args.corpus) if args.corpus else OUT / f"corpus-{args.size}"
    if not (root / "before.safetensors").exists():
        sys.exit(f"bench: no corpus in {root}: build it with `bench/run.py --size {args.size}` "
                 "(or ../shared/bench/make_corpus.py), or give --corpus DIR")
    extra = OUT / f"remote-extra-{root.name}"
    extra.mkdir(parents=True, exist_ok=True)
    for tag in ("before", "after"):
        for suffix, fmt in ((".npz", "npz"), ("-tfjs", "tfjs")):
            target = extra / f"{tag}{suffix}"
            if not target.exists():
                subprocess.run([*WK, "convert", str(root / f"{tag}.safetensors"), str(target),
                                "--to", fmt, "-q"], check=True)
    return root


FORMATS = {  # format -> (before, after) relative to the corpus, and the files of each
    "safetensors": ("before.safetensors", "after.safetensors"),
    "h5": ("before.h5", "after.h5"),
    "checkpoint": ("before_ckpt/ckpt", "after_ckpt/ckpt"),
    "npz": ("before.npz", "after.npz"),
    "tfjs": ("before-tfjs/model.json", "after-tfjs/model.json"),
}


def layout(root: Path) -> Path:
    """One directory holding every input (the corpus and the converted copies), for serving."""
    served = OUT / f"remote-served-{root.name}"
    served.mkdir(parents=True, exist_ok=True)
    extra = OUT / f"remote-extra-{root.name}"
    for base in (root, extra):
        for item in base.rglob("*"):
            target = served / item.relative_to(base)
            if item.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif not target.exists() and item.name != ".complete":
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(item, target)  # the server serves no symlinks
                except OSError:
                    import shutil
                    shutil.copyfile(item, target)
    return served


def files_of(served: Path, rel: str) -> list[Path]:
    path = served / rel
    if rel.endswith("/ckpt"):
        return sorted(path.parent.iterdir())
    if rel.endswith("model.json"):
        return sorted(path.parent.iterdir())
    return [path]


def run(argv: list[str], env: dict, timeout: float = 3600) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - start, done.returncode, (done.stderr.strip().splitlines()
                                                          or [""])[-1][:200]


COMMANDS = {  # name -> argv after weightkit, given the before and after URLs
    "show": lambda a, b: ["show", a],
    "show --no-stats": lambda a, b: ["show", "--no-stats", a],
    "wdiff": lambda a, b: ["diff", a, b],
    "convert": lambda a, b: ["convert", a, "{out}/copy.safetensors", "-q"],
}


def classify(request: tuple[str, str, int, int]) -> str:
    method, path = request[0], request[1]
    if method == "HEAD":
        return "head"
    if "list-type=" in path or "/o?" in path or path.rstrip("/").endswith("/o") \
            or "prefix=" in path:
        return "list"
    return "read" if method == "GET" else method.lower()


def bench_requests(served: Path, args: argparse.Namespace) -> list[dict]:
    rows = []
    for starter in (running_s3, running_gcs):
        with starter() as emulator, environment(emulator.env):
            import fsspec
            fs = fsspec.filesystem(emulator.name)
            fs.mkdir("bench")
            for fmt in args.formats:
                for rel in FORMATS[fmt]:
                    for path in files_of(served, rel):
                        fs.put_file(str(path), f"bench/{path.relative_to(served)}")
            env = {**os.environ, **emulator.env}
            for fmt in args.formats:
                before, after = FORMATS[fmt]
                size = sum(p.stat().st_size for p in files_of(served, before))
                for name, make in COMMANDS.items():
                    with tempfile.TemporaryDirectory() as out:
                        argv = [a.replace("{out}", out) for a in make(
                            f"{emulator.name}://bench/{before}", f"{emulator.name}://bench/{after}")]
                        emulator.traffic.reset()
                        wall, status, tail = run([*WK, *argv], env)
                    kinds: dict[str, int] = {}
                    for request in emulator.traffic.requests:
                        kinds[classify(request)] = kinds.get(classify(request), 0) + 1
                    inputs = size * (2 if name == "wdiff" else 1)
                    row = {"server": emulator.name, "format": fmt, "command": name,
                           "requests": len(emulator.traffic.requests), **kinds,
                           "bytes": emulator.traffic.sent(), "input_bytes": inputs,
                           "wall_s": round(wall, 2), "status": status, "error": tail
                           if status not in (0, 1) else ""}
                    rows.append(row)
                    print(f"  {emulator.name} {fmt} {name}: {row['requests']} requests "
                          f"{kinds}, {row['bytes'] / MIB:.1f} of {inputs / MIB:.1f} MiB, "
                          f"{wall:.2f} s, exit {status} {row['error']}", file=sys.stderr,
                          flush=True)
    return rows


DOWNLOAD = """
import sys, urllib.request
for url, path in zip(sys.argv[1::2], sys.argv[2::2]):
    with urllib.request.urlopen(url) as r, open(path, "wb") as f:
        while chunk := r.read(1 << 20):
            f.write(chunk)
"""


def bench_latency(served: Path, args: argparse.Namespace) -> list[dict]:
    rows = []
    server = HttpFiles(served)
    env = dict(os.environ)
    try:
        for latency in args.latency:
            server.faults.latency = latency
            server.faults.bandwidth = args.bandwidth * MIB if args.bandwidth else 0.0
            for fmt in args.formats:
                before, after = FORMATS[fmt]
                for name, make in COMMANDS.items():
                    with tempfile.TemporaryDirectory() as out:
                        argv = [a.replace("{out}", out) for a in make(
                            f"{server.url}/{before}", f"{server.url}/{after}")]
                        server.traffic.reset()
                        remote, status, tail = run([*WK, *argv], env)
                        requests = len(server.traffic.requests)
                        # the same after downloading every file the command reads
                        wanted = [before, after] if name == "wdiff" else [before]
                        pairs = []
                        for rel in wanted:
                            for path in files_of(served, rel):
                                local = Path(out) / "dl" / path.relative_to(served)
                                local.parent.mkdir(parents=True, exist_ok=True)
                                pairs += [f"{server.url}/{path.relative_to(served)}", str(local)]
                        start = time.perf_counter()
                        subprocess.run([sys.executable, "-c", DOWNLOAD, *pairs], check=True)
                        download = time.perf_counter() - start
                        local_argv = [a.replace(server.url, f"{out}/dl") for a in argv]
                        local, _, _ = run([*WK, *local_argv], env)
                    row = {"latency_ms": round(latency * 1000), "bandwidth_mib_s":
                           args.bandwidth or None, "format": fmt, "command": name,
                           "remote_s": round(remote, 2), "requests": requests,
                           "download_s": round(download, 2), "local_s": round(local, 2),
                           "download_then_local_s": round(download + local, 2),
                           "status": status, "error": tail if status not in (0, 1) else ""}
                    rows.append(row)
                    print(f"  {latency * 1000:.0f} ms {fmt} {name}: remote {remote:.2f} s "
                          f"({requests} requests) vs download {download:.2f} s + local "
                          f"{local:.2f} s, exit {status} {row['error']}", file=sys.stderr,
                          flush=True)
    finally:
        server.close()
    return rows


def print_tables(results: dict) -> None:
    if results.get("requests"):
        print("\n| server | format | command | requests | listings | reads | HEAD | MiB served "
              "| MiB of input | s (emulator) |\n|---|---|---|---|---|---|---|---|---|---|")
        for r in results["requests"]:
            print(f"| {r['server']} | {r['format']} | {r['command']} | {r['requests']} | "
                  f"{r.get('list', 0)} | {r.get('read', 0)} | {r.get('head', 0)} | "
                  f"{r['bytes'] / MIB:.1f} | {r['input_bytes'] / MIB:.1f} | {r['wall_s']} |")
    if results.get("latency"):
        print("\n| latency | format | command | on the URL s | requests | download s | then "
              "local s | download + local s |\n|---|---|---|---|---|---|---|---|")
        for r in results["latency"]:
            print(f"| {r['latency_ms']} ms | {r['format']} | {r['command']} | {r['remote_s']} | "
                  f"{r['requests']} | {r['download_s']} | {r['local_s']} | "
                  f"{r['download_then_local_s']} |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="corpus size in MiB (256)")
    parser.add_argument("--corpus", help="a corpus directory already built")
    parser.add_argument("--only", choices=("requests", "latency"), action="append")
    parser.add_argument("--formats", default="safetensors,h5,checkpoint,npz,tfjs")
    parser.add_argument("--latency", default="0.02,0.1",
                        help="seconds added to every HTTP request, comma-separated (0.02,0.1)")
    parser.add_argument("--bandwidth", type=float, default=0.0,
                        help="MiB/s of the HTTP server's one shared link (default: unlimited)")
    args = parser.parse_args(argv)
    args.formats = [f for f in args.formats.split(",") if f]
    args.latency = [float(x) for x in args.latency.split(",") if x]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = corpus(args)
    served = layout(root)
    results: dict = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "corpus": str(root), "args": {k: v for k, v in vars(args).items()}}
    parts = args.only or ["requests", "latency"]
    if "requests" in parts:
        results["requests"] = bench_requests(served, args)
    if "latency" in parts:
        results["latency"] = bench_latency(served, args)
    print_tables(results)
    OUT.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    (OUT / f"remote-{stamp}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
