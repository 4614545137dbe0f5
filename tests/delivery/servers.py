"""Real TFTP and FTP servers on 127.0.0.1 for the transport tests (tftpy's server, pyftpdlib),
each in a thread of the test process, serving a directory read-only.

`need(module)` imports a server package the tests need: under CI (`CI` set) a missing one
fails the test, elsewhere the test is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import time
from pathlib import Path
from typing import Any


def need(module: str) -> Path:
    """Where `module` is installed (found, not imported: gooseBit configures logging when
    imported, so it runs only in its own process)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        if os.environ.get("CI"):
            raise AssertionError(f"{module} is not installed; CI must run this test "
                                 "(pip install -e '.[dev]')")
        import pytest

        pytest.skip(f"{module} is not installed (pip install -e '.[dev]'); CI runs this test")
    return Path(spec.origin)


class TftpServer:
    """tftpy's server on an ephemeral UDP port of 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        import tftpy

        self.server = tftpy.TftpServer(str(root))
        self.thread = threading.Thread(target=self.server.listen,
                                       kwargs={"listenip": "127.0.0.1", "listenport": 0,
                                               "timeout": 0.5},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.is_running.is_set():
            assert time.monotonic() < deadline, "TFTP server did not start"
            time.sleep(0.01)
        self.url = f"tftp://127.0.0.1:{self.server.listenport}/"

    def stop(self) -> None:
        self.server.stop(now=True)
        self.thread.join(10)


class FtpServer:
    """pyftpdlib on an ephemeral TCP port of 127.0.0.1: anonymous read-only access to `root`.

    `cut_after`: the first RETR's data connection is closed by the server after this many
    bytes (the server answers 426 Transfer aborted), as a dropped link would. Every REST
    offset the clients asked for is recorded in `rests`.
    """

    def __init__(self, root: Path, cut_after: int | None = None) -> None:
        need("pyftpdlib")
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import DTPHandler, FTPHandler
        from pyftpdlib.servers import ThreadedFTPServer

        rests: list[str] = []
        cuts = [cut_after] if cut_after is not None else []

        class CuttingDTP(DTPHandler):  # type: ignore[misc]
            def use_sendfile(self) -> bool:
                return False  # every byte goes through send(), where the cut happens

            def send(self, data: Any) -> int:
                if cuts and self.tot_bytes_sent + len(data) > cuts[0]:
                    data = data[:cuts[0] - self.tot_bytes_sent]
                    sent = int(super().send(data)) if data else 0
                    if self.tot_bytes_sent >= cuts[0]:
                        cuts.clear()
                        self.handle_close()
                    return sent
                return int(super().send(data))

        class Handler(FTPHandler):  # type: ignore[misc]
            dtp_handler = CuttingDTP

            def ftp_REST(self, line: str) -> Any:
                rests.append(line)
                return super().ftp_REST(line)

        authorizer = DummyAuthorizer()
        authorizer.add_anonymous(str(root))  # read-only: "elr"
        Handler.authorizer = authorizer
        Handler.passive_ports = None
        self.rests = rests
        self.server = ThreadedFTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"timeout": 0.1, "handle_exit": False},
                                       daemon=True)
        self.thread.start()
        self.url = f"ftp://127.0.0.1:{self.server.address[1]}/"

    def stop(self) -> None:
        self.server.close_all()
        self.thread.join(10)


class CuttingProxy:
    """A TCP forwarder on 127.0.0.1 to `target` (host, port) that drops the first connection
    whose answer grows past `cut_after` bytes, right there: a link lost mid-download. Every
    later connection is forwarded whole."""

    def __init__(self, target: tuple[str, int], cut_after: int) -> None:
        import socket

        self.target, self.cut_after = target, cut_after
        self.cuts = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True),
                             daemon=True).start()

    def _pump(self, src: Any, dst: Any, answer: bool) -> None:
        import socket

        sent = 0
        try:
            while data := src.recv(65536):
                if answer:
                    with self._lock:
                        cut = not self.cuts and sent + len(data) > self.cut_after
                        if cut:
                            self.cuts += 1
                    if cut:
                        dst.sendall(data[:self.cut_after - sent])
                        break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def stop(self) -> None:
        self.listener.close()
