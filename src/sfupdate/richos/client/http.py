"""`HttpSource`: a repository served over HTTP(S) by any static server, on the standard
library's `http.client`.

One persistent connection per server, reused from request to request (the index refresh's
four requests and the image's download cost one TCP and TLS handshake when the server keeps
connections alive); the body is read in large pieces (`read1`: up to `CHUNK` bytes, what the
socket holds, so a slow server's bytes still reach the agent as they arrive) straight from
the socket into the bytes handed on, without a copy in between. No HTTP library is imported
for it: the client's start-up is part of every update's fixed cost (issue 15).
"""

from __future__ import annotations

import base64
import http.client
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Final
from urllib.parse import SplitResult, quote, unquote, urljoin, urlsplit

from sfupdate.errors import (
    DownloadError,
    RemoteFileNotFoundError,
    TransferInterruptedError,
)
from sfupdate.richos.client.sources import CHUNK, RETRYABLE_STATUS, clean_path, skip_first

#: Redirects followed for one request (as browsers and curl's default 50, but fewer).
MAX_REDIRECTS: Final = 10
#: A response body up to this size (an error page) is read to keep the connection; a larger
#: one closes it.
DRAIN_LIMIT: Final = 64 * 1024
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
#: Sent to the repository's own server only, never after a redirect to another origin.
_CREDENTIALS: Final = frozenset({"authorization", "cookie"})
_Origin = tuple[str, str, int]


class HttpSource:
    """A repository served over HTTP(S) by any static server.

    One GET per attempt, `Range: bytes=N-` when resuming, no content coding (the bytes are
    hashed as served), connect and read timeouts from the policy, redirects followed (up to
    MAX_REDIRECTS, http and https only); `headers` are sent with every request (a DDI server's
    authorization), credentials only to the origin of `base_url`. HTTPS checks the server's
    certificate against the system's trust store (OpenSSL's defaults: SSL_CERT_FILE and
    SSL_CERT_DIR are honoured). A proxy is taken from the environment as curl and urllib take
    it (`http_proxy`, `https_proxy`, `no_proxy`, in either case): an http:// proxy, with
    user:password in its URL if it asks for them; HTTPS goes through it in a CONNECT tunnel,
    so the certificate checked is still the repository's.
    """

    def __init__(self, base_url: str, connect_timeout: float = 5.0,
                 read_timeout: float = 10.0, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._headers = {"Accept-Encoding": "identity", "User-Agent": "sfu-client",
                         **(headers or {})}
        self._origin = _origin(urlsplit(self.base_url))
        self._connections: dict[_Origin, http.client.HTTPConnection] = {}
        self._proxies: dict[_Origin, _Proxy | None] = {}  # the environment's, per origin
        self._tls: ssl.SSLContext | None = None

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    def describe(self, path: str) -> str:
        return self.base_url + "/".join(clean_path(path))

    def size(self, path: str) -> int:
        url = self.describe(path)
        try:
            response, _ = self._request("HEAD", url, {})
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(f"{url}: {self._why(exc)}") from None
        self._check_status(response, url)
        length = response.getheader("Content-Length")
        if length is None or not length.isdigit():
            raise DownloadError(f"{url}: the server gives no usable Content-Length")
        return int(length)

    def open(self, path: str, offset: int = 0) -> Iterator[bytes]:
        url = self.describe(path)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        connection: http.client.HTTPConnection | None = None
        try:
            response, connection = self._request("GET", url, headers)
            self._check_status(response, url)
            skip = self._start(response, url, offset)
            yield from skip_first(iter(partial(response.read1, CHUNK), b""), skip)
            if response.length:  # the server closed before the length it declared
                raise http.client.IncompleteRead(b"", response.length)
            response.read()  # the end of the body: the connection can serve the next request
        except (OSError, http.client.HTTPException) as exc:
            raise TransferInterruptedError(f"{url}: {self._why(exc)}") from None
        finally:
            if connection is not None and not response.isclosed():
                response.close()  # stopped mid-body: the connection is unusable
                self._drop(connection)

    # --- plumbing ----------------------------------------------------------------------------

    def _request(self, method: str, url: str, extra: dict[str, str]
                 ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        """Send one request, following redirects: the final response (status not checked)
        and its connection."""
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            origin = _origin(parts)
            headers = {**self._headers, **extra}
            if origin != self._origin:
                headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIALS}
            target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
            if parts.query:
                target += "?" + parts.query
            proxy = self._proxy(origin)
            if proxy is not None and origin[0] == "http":  # the absolute form (RFC 9112 3.2.2)
                target = f"http://{parts.netloc.rpartition('@')[2]}{target}"
                headers.update(proxy.headers)
            response, connection = self._exchange(origin, method, target, headers)
            location = response.getheader("Location")
            if response.status not in _REDIRECTS or location is None:
                return response, connection
            if not response.isclosed():
                self._drop(connection)  # a long body: not worth reading
            url = urljoin(url, location)
            if urlsplit(url).scheme not in ("http", "https"):
                raise DownloadError(f"{url}: redirected to a scheme other than http(s)")
        raise DownloadError(f"{url}: more than {MAX_REDIRECTS} redirects")

    def _exchange(self, origin: _Origin, method: str, target: str, headers: dict[str, str]
                  ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        """One request and its response's head on the origin's connection. A kept-alive
        connection the server has closed since is opened again, once."""
        connection = self._connections.get(origin)
        reused = connection is not None and connection.sock is not None
        if connection is None:
            connection = self._connections[origin] = self._connection(origin)
        try:
            return self._send(connection, method, target, headers), connection
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self._drop(connection)
            if not reused:
                raise
        return self._send(connection, method, target, headers), connection

    def _send(self, connection: http.client.HTTPConnection, method: str, target: str,
              headers: dict[str, str]) -> http.client.HTTPResponse:
        try:
            if connection.sock is None:
                self._connect(connection)
            connection.request(method, target, headers=headers)
            response = connection.getresponse()
        except BaseException:
            self._drop(connection)
            raise
        if response.status not in (200, 206) and not response.isclosed():
            if response.length is not None and response.length <= DRAIN_LIMIT:
                response.read()  # a short error page: keep the connection
            else:
                self._drop(connection)
        return response

    def _connect(self, connection: http.client.HTTPConnection) -> None:
        """Connect within the connect timeout; then every read gets the read timeout."""
        try:
            connection.connect()
        except ssl.SSLCertVerificationError as exc:  # final: retrying cannot change it
            raise DownloadError(f"https://{connection.host}:{connection.port}/: the server's "
                                f"certificate is not trusted ({exc.verify_message})") from None
        except TimeoutError:
            raise _ConnectFailed("connection timed out") from None
        except OSError as exc:
            raise _ConnectFailed(exc.strerror or str(exc)) from None
        assert connection.sock is not None
        connection.sock.settimeout(self.read_timeout)

    def _connection(self, origin: _Origin) -> http.client.HTTPConnection:
        scheme, host, port = origin
        proxy = self._proxy(origin)
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            if proxy is None:
                return http.client.HTTPSConnection(host, port, timeout=self.connect_timeout,
                                                   context=self._tls)
            tunnel = http.client.HTTPSConnection(proxy.host, proxy.port,
                                                 timeout=self.connect_timeout,
                                                 context=self._tls)
            tunnel.set_tunnel(host, port, headers=proxy.headers)
            return tunnel
        if proxy is None:
            return http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        return http.client.HTTPConnection(proxy.host, proxy.port, timeout=self.connect_timeout)

    def _proxy(self, origin: _Origin) -> _Proxy | None:
        if origin not in self._proxies:
            self._proxies[origin] = _proxy_for(origin[0], origin[1])
        return self._proxies[origin]

    @staticmethod
    def _drop(connection: http.client.HTTPConnection) -> None:
        connection.close()  # the next request on it connects again

    @staticmethod
    def _check_status(response: http.client.HTTPResponse, url: str) -> None:
        code = response.status
        if code in (404, 410):
            raise RemoteFileNotFoundError(f"{url}: not found on the server (HTTP {code})")
        if code in RETRYABLE_STATUS:
            raise TransferInterruptedError(f"{url}: server answered HTTP {code}")
        if code == 416:
            raise DownloadError(f"{url}: server says the requested range is not satisfiable "
                                "(the file is shorter than the index declares)")
        if code not in (200, 206):
            raise DownloadError(f"{url}: server answered HTTP {code}")

    @staticmethod
    def _start(response: http.client.HTTPResponse, url: str, offset: int) -> int:
        """How many leading bytes to drop: a server may ignore Range and send it all."""
        if not offset or response.status == 200:
            return offset
        content_range = response.getheader("Content-Range", "")
        if not content_range.startswith(f"bytes {offset}-"):
            raise DownloadError(f"{url}: asked for bytes from {offset}, server sent "
                                f"Content-Range {content_range!r}")
        return 0

    def _why(self, exc: OSError | http.client.HTTPException) -> str:
        if isinstance(exc, TimeoutError):
            return f"server stalled: no data for {self.read_timeout:g} s"
        if isinstance(exc, (http.client.IncompleteRead, http.client.RemoteDisconnected,
                            ConnectionResetError, BrokenPipeError)):
            return f"connection dropped mid-transfer ({type(exc).__name__})"
        if isinstance(exc, _ConnectFailed):
            return f"cannot connect ({exc})"
        if isinstance(exc, OSError):
            return exc.strerror or str(exc) or type(exc).__name__
        return f"{type(exc).__name__}: {exc}"


class _ConnectFailed(OSError):
    """The connection (TCP, and TLS with its certificate check) could not be made."""


@dataclass(frozen=True)
class _Proxy:
    host: str
    port: int
    headers: dict[str, str]  # Proxy-Authorization, if the proxy's URL carries credentials


def _proxy_for(scheme: str, host: str) -> _Proxy | None:
    """The proxy the environment names for `scheme` and `host` (`http_proxy`/`https_proxy`,
    `no_proxy`), or None. urllib's reading of them, imported only when one is set."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None
    from urllib.request import getproxies_environment, proxy_bypass

    url = getproxies_environment().get(scheme)
    if not url or proxy_bypass(host):  # no_proxy (on POSIX: the environment only)
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise DownloadError(f"{scheme}_proxy {url!r}: only an http://host:port proxy is "
                            "supported")
    headers = {}
    if parts.username is not None:
        secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(secret).decode()
    try:
        port = parts.port or 80
    except ValueError:
        raise DownloadError(f"{scheme}_proxy {url!r}: bad port") from None
    return _Proxy(parts.hostname, port, headers)


def _origin(parts: SplitResult) -> _Origin:
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        raise DownloadError(f"{parts.geturl()}: bad port") from None
    return scheme, parts.hostname or "", port or (443 if scheme == "https" else 80)
