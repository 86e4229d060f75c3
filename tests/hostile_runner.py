"""A fork server for the hostile-input tests: runs `weightkit` commands (or a full API read) in
forked child processes, each with its own stdout/stderr files, exit status, time limit, address
space limit and peak RSS. Forking a process that has already imported numpy and h5py costs a few
milliseconds instead of a fresh interpreter per command, so every crafted case can go through
every command.

    with ForkServer() as server:
        result = server.cli(["show", "x.safetensors"], cwd=tmp)   # Result(code, stdout, stderr, ...)
        result = server.api("x.safetensors", cwd=tmp)            # result.error: exception MRO names
        results = server.batch([cli_request(...), api_request(...)])  # run concurrently
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass

ADDRESS_SPACE = 3 << 30  # a reader that allocates what a bomb declares dies here
TIMEOUT = 20  # seconds; a reader blocked on a FIFO or streaming 16 GiB of fill dies here


@dataclass
class Result:
    code: int | None  # exit status, None if killed by a signal
    signal: int | None
    stdout: str
    stderr: str
    maxrss_mib: float
    error: list[str] | None = None  # api(): the exception's class MRO names, None on success
    message: str = ""


class ForkServer:
    """A long-lived helper process that forks one child per request."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, env=env)

    def batch(self, requests: list[dict]) -> list[Result]:
        """Run several requests (from `cli_request`/`api_request`) concurrently."""
        self._proc.stdin.write(json.dumps(requests) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the fork server died")
        return [Result(**r) for r in json.loads(line)]

    def cli(self, argv: list[str], cwd: str) -> Result:
        """`weightkit ARGV...` in a forked child."""
        return self.batch([cli_request(argv, cwd)])[0]

    def api(self, path: str, cwd: str, format: str | None = None) -> Result:
        """`weightkit.load(path, format)` and read every tensor chunk by chunk, in a forked child."""
        return self.batch([api_request(path, cwd, format)])[0]

    def close(self) -> None:
        self._proc.stdin.close()
        self._proc.wait(timeout=30)

    def __enter__(self) -> "ForkServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cli_request(argv: list[str], cwd: str, *, timeout: float = TIMEOUT,
                address_space: int = ADDRESS_SPACE) -> dict:
    return {"mode": "cli", "argv": argv, "cwd": str(cwd), "timeout": timeout,
            "address_space": address_space}


def api_request(path: str, cwd: str, format: str | None = None, *, timeout: float = TIMEOUT,
                address_space: int = ADDRESS_SPACE) -> dict:
    return {"mode": "api", "argv": [path, format], "cwd": str(cwd), "timeout": timeout,
            "address_space": address_space}


def _read_all(path: str, format: str | None) -> tuple[list[str] | None, str]:
    import weightkit
    try:
        with weightkit.load(path, format) as store:
            for name in store:
                for _ in store[name].iter_chunks():
                    pass
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which judges the type
        return [cls.__name__ for cls in type(exc).__mro__], f"{exc}\n{traceback.format_exc()}"
    return None, ""


def _child(request: dict, out: str, err: str) -> None:
    os.chdir(request["cwd"])
    resource.setrlimit(resource.RLIMIT_AS, (request["address_space"],) * 2)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(int(request["timeout"]))
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    code = 0
    try:
        if request["mode"] == "cli":
            from weightkit.cli.main import main
            code = main(request["argv"], prog="weightkit")
        else:
            error, message = _read_all(*request["argv"])
            print(json.dumps({"error": error, "message": message}))
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException:  # noqa: BLE001 - must never reach the server loop
        traceback.print_exc()
        code = 99
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve() -> None:
    import h5py  # noqa: F401 - imported once here, before the forks
    import numpy  # noqa: F401

    import weightkit  # noqa: F401
    from weightkit.cli.main import build_parser
    from weightkit.converters.registry import FORMATS
    try:
        build_parser()  # imports every command module once, not in every child
    except Exception:  # noqa: BLE001 - a command being written; the children will say
        pass
    list(FORMATS)  # imports every format module once, not in every child
    reply = sys.stdout
    with tempfile.TemporaryDirectory(prefix="wk-fork-") as tmp:
        for line in sys.stdin:
            batch = json.loads(line)
            reply.write(json.dumps(_run_batch(batch, tmp)) + "\n")
            reply.flush()


def _run_batch(batch: list[dict], tmp: str) -> list[dict]:
    """Fork one child per request, all at once (there are cores to spare), and collect them."""
    running = {}
    for i, request in enumerate(batch):
        out, err = os.path.join(tmp, f"out{i}"), os.path.join(tmp, f"err{i}")
        for path in (out, err):
            open(path, "w").close()
        pid = os.fork()
        if pid == 0:
            _child(request, out, err)
        running[pid] = (i, request, out, err)
    results: list[dict] = [{}] * len(batch)
    while running:
        pid, status, usage = os.wait4(-1, 0)
        i, request, out, err = running.pop(pid)
        with open(out, errors="replace") as f:
            stdout = f.read()
        with open(err, errors="replace") as f:
            stderr = f.read()
        result = {"code": os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
                  "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                  "stdout": stdout, "stderr": stderr, "maxrss_mib": usage.ru_maxrss / 1024}
        if request["mode"] == "api" and result["code"] == 0 and stdout.strip():
            result.update(json.loads(stdout.strip().splitlines()[-1]))
        results[i] = result
    return results

if __name__ == "__main__":
    _serve()
