"""`sfu serve`: a small static file server for development and demos.

It serves a repository tree the way nginx or a CDN would (GET and HEAD, one byte range with
206/416, ETag and Last-Modified with If-None-Match / If-Modified-Since / If-Range), streams
files with sendfile, and logs one line per request. It serves regular files only: no
directory listings, no dot-files (so `.sfu/` stays private), nothing outside the tree.
Production fleets should use a real static server; nothing here is needed for trust.
"""

from __future__ import annotations

import email.utils
import mimetypes
import os
import stat
import sys
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

Log = Callable[[str], None]
MAX_RANGE_HEADER: Final = 200


def _stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def parse_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """One `bytes=` range -> (start, end inclusive); None to ignore the header (malformed or
    several ranges: serve the whole file, as RFC 9110 allows); False if unsatisfiable."""
    if len(header) > MAX_RANGE_HEADER or not header.startswith("bytes="):
        return None
    spec = header[len("bytes="):].strip()
    if "," in spec or "-" not in spec:
        return None
    first, _, last = spec.partition("-")
    if not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            return False
        return max(0, size - suffix), size - 1
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return False
    return start, min(int(last), size - 1) if last else size - 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sfu-serve"
    timeout = 60  # a client that stops reading does not hold a thread forever
    # TCP_NODELAY, as nginx on kept-alive connections: else the body, sent after the headers,
    # waits for their ACK, which the client delays (40 ms per request on Linux).
    disable_nagle_algorithm = True
    server: RepoServer

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Replaced by one line per request in _done (with the bytes actually sent)."""

    def log_message(self, format: str, *args: object) -> None:
        self.server.log(f"{self.client_address[0]} - {format % args}")

    def _done(self, code: int, sent: int) -> None:
        self.server.log(f'{self.client_address[0]} "{self.requestline}" {code} {sent}')

    def _resolve(self) -> tuple[Path, os.stat_result] | None:
        parts = unquote(urlsplit(self.path).path).split("/")
        if any(p.startswith(".") or "\0" in p or "\\" in p for p in parts if p):
            return None
        path = self.server.root.joinpath(*[p for p in parts if p])
        try:
            real = path.resolve(strict=True)
            st = real.stat()
        except (OSError, RuntimeError):
            return None
        if not real.is_relative_to(self.server.root) or not stat.S_ISREG(st.st_mode):
            return None
        return real, st

    def _short(self, code: HTTPStatus, headers: dict[str, str] | None = None) -> None:
        body = f"{code.value} {code.phrase}\n".encode()
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._done(code.value, len(body))

    def _serve(self, send_body: bool) -> None:
        found = self._resolve()
        if found is None:
            self._short(HTTPStatus.NOT_FOUND)
            return
        path, st = found
        size = st.st_size
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        validators = {"ETag": etag, "Last-Modified": modified, "Accept-Ranges": "bytes"}
        if self._not_modified(etag, int(st.st_mtime)):
            self.send_response(HTTPStatus.NOT_MODIFIED)
            for name, value in validators.items():
                self.send_header(name, value)
            self.end_headers()
            self._done(304, 0)
            return
        start, end, code = 0, size - 1, HTTPStatus.OK
        range_header = self.headers.get("Range")
        if range_header and self._if_range_holds(etag, modified):
            parsed = parse_range(range_header, size)
            if parsed is False:
                self._short(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                            {"Content-Range": f"bytes */{size}", **validators})
                return
            if isinstance(parsed, tuple):
                start, end = parsed
                code = HTTPStatus.PARTIAL_CONTENT
        length = max(0, end - start + 1)
        self.send_response(code)
        for name, value in validators.items():
            self.send_header(name, value)
        self.send_header("Content-Type", mimetypes.guess_type(path.name)[0]
                         or "application/octet-stream")
        self.send_header("Content-Length", str(length))
        if code == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        sent = 0
        if send_body and length:
            try:
                with open(path, "rb") as f:
                    sent = self.connection.sendfile(f, offset=start, count=length)
            except (ConnectionError, TimeoutError):
                self.close_connection = True
        self._done(code.value, sent)

    def _not_modified(self, etag: str, mtime: int) -> bool:
        inm = self.headers.get("If-None-Match")
        if inm is not None:
            tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
            return "*" in tags or etag in tags
        ims = self.headers.get("If-Modified-Since")
        if ims is not None:
            try:
                since = email.utils.parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError):
                return False
            return mtime <= since
        return False

    def _if_range_holds(self, etag: str, modified: str) -> bool:
        if_range = self.headers.get("If-Range")
        return if_range is None or if_range in (etag, modified)


class RepoServer(ThreadingHTTPServer):
    """A threading static server rooted at a directory."""

    daemon_threads = True

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0,
                 log: Log = _stderr_log) -> None:
        self.root = root.resolve()
        self.log = log
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"
