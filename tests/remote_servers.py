"""Real servers on 127.0.0.1 for the remote-file tests, started and stopped by the test suite.

- `HttpFiles`: a small Range-capable HTTP file server of our own (GET and HEAD, one byte range
  per request, strong ETags, If-Match answered 412), which counts requests and can inject
  latency, errors (a status for paths matching a pattern) and ignore Range headers.
- `CountingProxy`: a reverse proxy in front of an emulator that counts requests the same way
  (and injects latency and errors): the emulators themselves say nothing about traffic.
- `s3_server`: moto in server mode (S3), reached by s3fs through AWS_ENDPOINT_URL.
- `gcs_server`: gcp-storage-emulator (GCS), reached by gcsfs through STORAGE_EMULATOR_HOST
  (with GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false: otherwise gcsfs probes the bucket type over
  gRPC with a 60 s timeout).

The emulators stall under many concurrent range requests: use them for correctness and request
counts, not speed (the HTTP server is the one for timings).
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class Traffic:
    """What a server saw: one (method, path, status, bytes sent) per request."""
    requests: list[tuple[str, str, int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: int = 0
    peak: int = 0  # most requests in flight at once

    def add(self, method: str, path: str, status: int, sent: int) -> None:
        with self.lock:
            self.requests.append((method, path, status, sent))

    def enter(self) -> None:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)

    def leave(self) -> None:
        with self.lock:
            self.active -= 1

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.peak = 0

    def count(self, method: str | None = None, pattern: str = "") -> int:
        return len([r for r in self.requests if (method is None or r[0] == method)
                    and re.search(pattern, r[1])])

    def sent(self) -> int:
        return sum(r[3] for r in self.requests)


@dataclass
class Faults:
    latency: float = 0.0  # seconds added to every request
    errors: dict[str, int] = field(default_factory=dict)  # path regex -> status to answer
    error_methods: tuple[str, ...] = ("GET", "HEAD", "PUT", "POST", "DELETE")
    no_ranges: bool = False  # answer range requests with the whole file (200)
    # A server that lies: "shift" answers a range from byte 0 with the length asked for (and a
    # Content-Range saying so); "overlong" sends 1 MiB more than the range asked for (chunked,
    # no Content-Length); "endless" ignores Range and streams a 200 without end.
    lie: str = ""
    bandwidth: float = 0.0  # bytes per second for all responses together (0: unlimited)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _free_at: float = 0.0  # when the shared link is next free

    def throttle(self, nbytes: int) -> None:
        """Wait until `nbytes` more fit the shared link (a token bucket of one link)."""
        if not self.bandwidth:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._free_at)
            self._free_at = start + nbytes / self.bandwidth
            wait = self._free_at - now
        time.sleep(wait)

    def status_for(self, method: str, path: str) -> int | None:
        if method not in self.error_methods:
            return None
        for pattern, status in self.errors.items():
            if re.search(pattern, path):
                return status
        return None


def _etag(path: Path) -> str:
    st = path.stat()
    return '"' + hashlib.sha1(f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}".encode()).hexdigest() \
        + '"'


class _FileHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        owner: HttpFiles = self.server.owner
        owner.traffic.enter()
        try:
            self._answer(owner, head)
        finally:
            owner.traffic.leave()

    def _answer(self, owner: "HttpFiles", head: bool) -> None:
        if owner.faults.latency:
            time.sleep(owner.faults.latency)
        path = self.path.split("?", 1)[0]
        status = owner.faults.status_for(self.command, path)
        if status is not None:
            return self._empty(owner, status)
        target = (owner.root / path.lstrip("/")).resolve()
        if owner.root.resolve() not in target.parents or not target.is_file():
            return self._empty(owner, 404)
        etag = _etag(target)
        wanted = self.headers.get("If-Match")
        if wanted and wanted != "*" and wanted != etag:
            return self._empty(owner, 412)
        size = target.stat().st_size
        start, end, status = 0, size, 200
        spec = self.headers.get("Range")
        if spec and not owner.faults.no_ranges:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", spec.strip())
            if match is None or int(match.group(1)) >= max(size, 1):
                return self._empty(owner, 416)
            start = int(match.group(1))
            end = min(size, int(match.group(2)) + 1) if match.group(2) else size
            status = 206
        lie = owner.faults.lie if self.command == "GET" else ""
        if lie:
            return self._lie(owner, lie, target, etag, start, end, size, status, path)
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "none" if owner.faults.no_ranges else "bytes")
        self.send_header("ETag", etag)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        sent = 0
        if not head and not owner.faults.bandwidth:  # the kernel copies: as fast as a server
            self.wfile.flush()
            with open(target, "rb") as f:
                while sent < end - start:
                    n = os.sendfile(self.connection.fileno(), f.fileno(), start + sent,
                                    end - start - sent)
                    if n == 0:
                        break
                    sent += n
        elif not head:
            with open(target, "rb") as f:
                f.seek(start)
                left = end - start
                while left:
                    chunk = f.read(min(left, 256 << 10))
                    if not chunk:
                        break
                    owner.faults.throttle(len(chunk))
                    self.wfile.write(chunk)
                    left -= len(chunk)
                    sent += len(chunk)
        owner.traffic.add(self.command, path, status, sent)

    def _lie(self, owner: "HttpFiles", lie: str, target: Path, etag: str, start: int, end: int,
             size: int, status: int, path: str) -> None:
        """Answer a GET as a broken or hostile server would (see `Faults.lie`)."""
        data = target.read_bytes()
        self.send_response(200 if lie == "endless" else status)
        self.send_header("ETag", etag)
        if lie == "shift":
            body = data[:end - start]
            self.send_header("Content-Length", str(len(body)))
            if status == 206:
                self.send_header("Content-Range", f"bytes 0-{end - start - 1}/{size}")
            self.end_headers()
            self.wfile.write(body)
            return owner.traffic.add("GET", path, status, len(body))
        self.send_header("Transfer-Encoding", "chunked")
        if status == 206 and lie == "overlong":
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        chunks = [data[start:end], bytes(1 << 20)] if lie == "overlong" else \
            (bytes(1 << 20) for _ in range(1 << 14))  # 16 GiB, or until the client hangs up
        sent = 0
        try:
            for chunk in chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            self.wfile.write(b"0\r\n\r\n")
        except (ConnectionError, BrokenPipeError):
            pass
        owner.traffic.add("GET", path, status, sent)

    def _empty(self, owner: "HttpFiles", status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()
        owner.traffic.add(self.command, self.path.split("?", 1)[0], status, 0)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: object

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError, TimeoutError)):
            super().handle_error(request, client_address)  # a client hanging up is no error


class _Served:
    """A server on 127.0.0.1 (a free port) with its handler, counting traffic, in a thread."""

    def _serve(self, handler: type) -> None:
        self.traffic = Traffic()
        self.faults = Faults()
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.owner = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HttpFiles(_Served):
    """Serves the files under `root` at http://127.0.0.1:PORT/ (see the module docstring)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._serve(_FileHandler)


_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailers", "transfer-encoding", "upgrade"}


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args: object) -> None:
        pass

    def _forward(self) -> None:
        owner: CountingProxy = self.server.owner
        owner.traffic.enter()
        try:
            self._relay(owner)
        finally:
            owner.traffic.leave()

    def _relay(self, owner: "CountingProxy") -> None:
        if owner.faults.latency:
            time.sleep(owner.faults.latency)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        path = self.path.split("?", 1)[0]
        status = owner.faults.status_for(self.command, self.path)
        if status is not None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            owner.traffic.add(self.command, self.path, status, 0)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        connection = http.client.HTTPConnection("127.0.0.1", owner.target, timeout=120)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in _HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        owner.traffic.add(self.command, self.path, response.status,
                          len(data) if self.command != "HEAD" else 0)
        del path

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _forward


class CountingProxy(_Served):
    """A reverse proxy to 127.0.0.1:`target` at http://127.0.0.1:PORT, counting requests."""

    def __init__(self, target: int):
        self.target = target
        self._serve(_ProxyHandler)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, process: subprocess.Popen, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {seconds} s")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tool(name: str) -> str | None:
    found = Path(sys.executable).with_name(name)
    return str(found) if found.exists() else shutil.which(name)


@dataclass
class Emulator:
    """A running emulator behind a counting proxy: `url` (the proxy's), `env` (what a fresh
    process needs to reach it), `traffic`, `faults`."""
    name: str
    proxy: CountingProxy
    env: dict[str, str]

    @property
    def traffic(self) -> Traffic:
        return self.proxy.traffic

    @property
    def faults(self) -> Faults:
        return self.proxy.faults


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_SESSION_TOKEN": "testing"}


@contextlib.contextmanager
def running_s3() -> Iterator[Emulator]:
    tool = _tool("moto_server")
    if tool is None:
        pytest.skip("moto[server] is not installed (the test extra)")
    port = _free_port()
    process = subprocess.Popen([tool, "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = None
    try:
        _wait_port(port, process, "moto_server")
        proxy = CountingProxy(port)
        yield Emulator("s3", proxy, {**S3_ENV, "AWS_ENDPOINT_URL": proxy.url})
    finally:
        if proxy is not None:
            proxy.close()
        _stop(process)


@contextlib.contextmanager
def running_gcs() -> Iterator[Emulator]:
    tool = _tool("gcp-storage-emulator")
    if tool is None:
        pytest.skip("gcp-storage-emulator is not installed (the test extra)")
    port = _free_port()
    process = subprocess.Popen([tool, "start", "--host", "127.0.0.1", "--port", str(port),
                                "--in-memory"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    proxy = None
    try:
        _wait_port(port, process, "gcp-storage-emulator")
        proxy = CountingProxy(port)
        yield Emulator("gs", proxy, {"STORAGE_EMULATOR_HOST": proxy.url,
                                     "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
                                     "FSSPEC_GCS_TOKEN": "anon", "FSSPEC_GCS_PROJECT": "test"})
    finally:
        if proxy is not None:
            proxy.close()
        _stop(process)


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """`env` set in os.environ (and fsspec's configuration read again) for the block."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _reset_fsspec()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _reset_fsspec()


def _reset_fsspec() -> None:
    """Filesystems made again with the environment as it is now (fsspec caches instances and
    reads its FSSPEC_* configuration once)."""
    import fsspec.config
    from weightkit.converters import source
    fsspec.config.conf.clear()
    fsspec.config.set_conf_env(fsspec.config.conf)
    for cls in {type(b.fs) for b in source._backends.values() if b._fs is not None}:
        cls.clear_instance_cache()
    source._backends.clear()
