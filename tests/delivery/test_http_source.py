"""HttpSource on the standard library's http.client: one kept-alive connection for a whole
update, a connection the server closed meanwhile opened again, redirects followed without
carrying credentials to another origin, nor forever, and HTTPS checked against the device's
trust store."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sfupdate import errors
from sfupdate.authoring.repo import RepoServer
from sfupdate.richos.client import HttpSource, TransferPolicy, fetch, update
from tests.delivery.device import Device
from tests.delivery.netsim import FAST, HostileServer, RepoWorld, pause_halfway
from tests.delivery.netsim import _Handler as Handler

Hostile = Callable[[Path], HostileServer]


class CountingServer(RepoServer):
    """`sfu serve`'s server (HTTP/1.1, kept-alive connections), counting the connections."""

    connections = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1
        super().process_request(request, client_address)


def test_index_and_image_travel_on_one_kept_alive_connection(world: RepoWorld,
                                                             device: Device) -> None:
    """The refresh's requests (the next root's 404, timestamp, snapshot, targets) and the
    image's download: one TCP connection, not one each."""
    world.publish(world.image(2))
    server = CountingServer(world.dir, "127.0.0.1", 0, log=lambda _line: None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        result = update(world.index(server.url), device)
    finally:
        server.shutdown()
        server.server_close()
    assert result.installed is not None and result.installed.sequence == 2
    assert server.connections == 1


def _recorded(seen: list[tuple[str, str | None]], then: Callable[[Handler], None]
              ) -> Callable[[Handler, int], None]:
    """A route that records (path, Authorization header), then answers with `then`."""
    def run(h: Handler, start: int) -> None:
        seen.append((h.path, h.headers.get("Authorization")))
        then(h)
    return run


def _redirect(location: str) -> Callable[[Handler], None]:
    return lambda h: h.head(302, {"Location": location, "Content-Length": "0"})


def _body(data: bytes) -> Callable[[Handler], None]:
    def run(h: Handler) -> None:
        h.head(200, {"Content-Length": str(len(data))})
        h.wfile.write(data)
    return run


def test_credentials_never_follow_a_redirect_to_another_origin(tmp_path: Path,
                                                               hostile: Hostile) -> None:
    """A DDI server's token goes to its own origin only, even when it redirects a download
    to a CDN (another port here is another origin)."""
    origin, cdn = hostile(tmp_path), hostile(tmp_path)
    seen: list[tuple[str, str | None]] = []
    origin.routes["/moved"] = _recorded(seen, _redirect("/here"))
    origin.routes["/here"] = _recorded(seen, _redirect(cdn.url + "fw.sfui"))
    cdn.routes["/fw.sfui"] = _recorded(seen, _body(b"image"))
    source = HttpSource(origin.url, 2.0, 2.0, {"Authorization": "TargetToken secret"})
    assert b"".join(fetch(source, "moved", 5, FAST)) == b"image"
    assert seen == [("/moved", "TargetToken secret"), ("/here", "TargetToken secret"),
                    ("/fw.sfui", None)]


def test_a_redirect_loop_is_abandoned(tmp_path: Path, hostile: Hostile) -> None:
    server = hostile(tmp_path)
    server.routes["/loop"] = lambda h, start: _redirect("/loop")(h)
    with pytest.raises(errors.DownloadError, match="more than 10 redirects"):
        list(fetch(HttpSource(server.url, 2.0, 2.0), "loop", None, FAST))
    assert len(server.fetched("/loop")) == 11


def test_a_redirect_to_another_scheme_is_refused(tmp_path: Path, hostile: Hostile) -> None:
    server = hostile(tmp_path)
    server.routes["/fw.sfui"] = lambda h, start: _redirect("file:///etc/passwd")(h)
    with pytest.raises(errors.DownloadError, match="scheme other than http"):
        list(fetch(HttpSource(server.url, 2.0, 2.0), "fw.sfui", None, FAST))


def _kept_alive_once(data: bytes) -> Callable[[Handler, int], None]:
    """Answers as if the connection stayed open (no `Connection: close`), then closes it:
    what a server does when its keep-alive timeout ends between two requests."""
    def run(h: Handler, start: int) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()
        h.connection.shutdown(socket.SHUT_RDWR)
    return run


def test_a_connection_the_server_closed_is_opened_again(tmp_path: Path,
                                                        hostile: Hostile) -> None:
    """The second request finds the kept connection closed: it is sent again on a new one,
    at once, without counting as a failed attempt (no retry, no pause)."""
    server = hostile(tmp_path)
    server.routes["/a"] = _kept_alive_once(b"first")
    server.routes["/b"] = _kept_alive_once(b"second")
    source = HttpSource(server.url, 2.0, 2.0)
    no_retry = TransferPolicy(retries=0)
    assert b"".join(fetch(source, "a", 5, no_retry)) == b"first"
    assert b"".join(fetch(source, "b", 6, no_retry)) == b"second"
    assert [path for path, _ in server.requests] == ["/a", "/b"]


def test_https_with_an_untrusted_certificate_is_refused_at_once(
        https_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Not trusted by the system's store: refused, final (no retry can change it)."""
    url, _ = https_server
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(errors.DownloadError, match="certificate is not trusted") as refused:
        list(fetch(HttpSource(url, 2.0, 2.0), "fw.sfui", 5, TransferPolicy(retries=3)))
    assert "giving up after" not in str(refused.value)


def test_https_with_a_certificate_the_device_trusts(https_server: tuple[str, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    url, cert = https_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    source = HttpSource(url, 2.0, 2.0)
    assert source.size("fw.sfui") == 5
    assert b"".join(fetch(source, "fw.sfui", 5, FAST)) == b"image"


def test_a_transfer_that_completes_is_not_judged_too_slow(tmp_path: Path,
                                                          hostile: Hostile) -> None:
    """A small file whose last bytes come after a pause: the rate over the window is far
    below the minimum, but the declared length arrived, so it is not slow retrieval. With
    no length known the same transfer is judged (and abandoned)."""
    server = hostile(tmp_path)
    server.routes["/small"] = pause_halfway(b"a small index file", 0.4)
    strict = TransferPolicy(retries=0, min_rate=2000.0, rate_window=0.2, read_timeout=2.0)
    source = HttpSource(server.url, 2.0, 2.0)
    assert b"".join(fetch(source, "small", 18, strict)) == b"a small index file"
    with pytest.raises(errors.DownloadError, match="too slow"):
        list(fetch(source, "small", None, strict))
