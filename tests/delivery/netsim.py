"""A repository simulator and deliberately hostile HTTP servers for the delivery tests.

`RepoWorld` owns a real repository (real keys, real signed SFUIs, real TUF metadata), keeps
a frozen copy of the tree after every publish, and a client state directory, so a test can
say "serve the index of publish 2 and the image of publish 3" in a line or two.

`HostileServer` is a real HTTP server on 127.0.0.1 (a thread) that serves a directory by
default and lets a test replace any path with a misbehaviour: wrong bytes, endless data, a
stall, a drip, a connection dropped once.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sfupdate.authoring.repo import Repository
from sfupdate.formats.sfui import TrustedKey
from sfupdate.richos.client import HttpSource, RepositoryIndex, Source, TransferPolicy

# Short limits so hostile servers are detected within a few seconds (a loaded machine
# stalls a honest transfer for most of a second, so the rate window is not shorter).
FAST = TransferPolicy(retries=2, backoff=0.01, backoff_max=0.05, min_rate=2000.0,
                      rate_window=2.0, connect_timeout=2.0, read_timeout=0.5)


class RepoWorld:
    """A repository, its publishes, and one client's trusted state."""

    def __init__(self, base: Path, key_file: Path, sign: Callable[..., Path],
                 firmware_keys: Sequence[TrustedKey]) -> None:
        self.base = base
        self.dir = base / "repo"
        self.key_file = key_file
        self._sign = sign
        self.repo = Repository.init(self.dir, key_file, firmware_keys)
        self.publishes: list[Path] = [self._freeze()]
        self.state = base / "client-state"
        self.trusted_root = self.dir / "metadata" / "1.root.json"

    def _freeze(self) -> Path:
        copy = self.base / f"publish-{len(getattr(self, 'publishes', []))}"
        shutil.copytree(self.dir, copy, ignore=shutil.ignore_patterns(".sfu"))
        return copy

    def image(self, sequence: int, size: int = 200_000, **kwargs: object) -> Path:
        payload = hashlib.sha256(str(sequence).encode()).digest() * (size // 32)
        return self._sign(payload, sequence=sequence, version_text=f"{sequence}.0", **kwargs)

    def publish(self, *images: Path, now: datetime | None = None) -> Path:
        """Add images and publish; return the frozen copy of the tree after it."""
        for image in images:
            self.repo.add(image)
        self.repo.publish(now)
        self.publishes.append(self._freeze())
        return self.publishes[-1]

    def index(self, source: Source | str, policy: TransferPolicy = FAST,
              log: Callable[[str], None] | None = None) -> RepositoryIndex:
        if isinstance(source, str):
            source = HttpSource(source, policy.connect_timeout, policy.read_timeout)
        return RepositoryIndex(source, self.state, self.trusted_root, policy, log)


def target_path(image: Path) -> str:
    """The URL path under which the repository stores an SFUI (consistent snapshots)."""
    return f"/targets/{hashlib.sha256(image.read_bytes()).hexdigest()}.{image.name}"


Behaviour = Callable[["_Handler", int], None]  # (handler, requested start offset)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        start = 0
        range_header = self.headers.get("Range")
        if range_header and range_header.startswith("bytes=") and range_header.endswith("-"):
            start = int(range_header[len("bytes="):-1])
        self.server.owner.requests.append((path, range_header))
        self.close_connection = True
        behaviour = self.server.owner.routes.get(path)
        if behaviour is None:
            file = self.server.owner.root / path.lstrip("/")
            if not path.lstrip("/") or not file.is_file():
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                return
            behaviour = serve(file.read_bytes())
        with contextlib.suppress(ConnectionError, OSError):
            behaviour(self, start)

    def head(self, code: int, headers: dict[str, str]) -> None:
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: HostileServer


class HostileServer:
    """Serves `root`, except for paths a test has routed to a misbehaviour."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.routes: dict[str, Behaviour] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def fetched(self, prefix: str) -> list[tuple[str, str | None]]:
        return [r for r in self.requests if r[0].startswith(prefix)]


def serve(data: bytes) -> Behaviour:
    """Honest: the bytes, from the requested offset (206 when resuming)."""
    def run(h: _Handler, start: int) -> None:
        if start:
            h.head(206, {"Content-Length": str(len(data) - start),
                         "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        else:
            h.head(200, {"Content-Length": str(len(data))})
        h.wfile.write(data[start:])
    return run


def pause_halfway(data: bytes, pause: float) -> Behaviour:
    """The first half, a pause (shorter than the client's read timeout), the rest."""
    def run(h: _Handler, start: int) -> None:
        h.head(200, {"Content-Length": str(len(data))})
        h.wfile.write(data[:len(data) // 2])
        h.wfile.flush()
        if h.server.owner.stopping.wait(pause):
            return
        h.wfile.write(data[len(data) // 2:])
    return run


def endless(prefix: bytes) -> Behaviour:
    """The file's bytes, then more, forever (no Content-Length: it ends when we stop)."""
    def run(h: _Handler, start: int) -> None:
        h.head(200, {})
        h.wfile.write(prefix)
        filler = b"\0" * 65536
        while not h.server.owner.stopping.is_set():
            h.wfile.write(filler)
    return run


def stall_after(data: bytes, sent: int) -> Behaviour:
    """Declares the full length, sends `sent` bytes, then goes silent."""
    def run(h: _Handler, start: int) -> None:
        h.head(200, {"Content-Length": str(len(data))})
        h.wfile.write(data[:sent])
        h.wfile.flush()
        h.server.owner.stopping.wait(30)
    return run


def drip(data: bytes, every: float) -> Behaviour:
    """One byte at a time, each well within the read timeout: alive, but useless."""
    def run(h: _Handler, start: int) -> None:
        h.head(200, {"Content-Length": str(len(data))})
        for i in range(len(data)):
            if h.server.owner.stopping.is_set():
                return
            h.wfile.write(data[i:i + 1])
            h.wfile.flush()
            time.sleep(every)
    return run


def drop_once(data: bytes, after: int, honour_range: bool = True) -> Behaviour:
    """The first GET is cut after `after` bytes; later ones are served in full, from the
    requested offset (206) or, like some servers, ignoring Range (200, whole file)."""
    calls = []

    def run(h: _Handler, start: int) -> None:
        calls.append(start)
        if len(calls) > 1:
            serve(data)(h, start if honour_range else 0)
            return
        h.head(200, {"Content-Length": str(len(data))})
        h.wfile.write(data[:after])
        h.wfile.flush()
        h.connection.shutdown(2)
    return run
