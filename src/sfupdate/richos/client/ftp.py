"""A repository or image served over FTP (RFC 959), by the standard library's ftplib.

One control connection per attempt: login (anonymous unless the URL names a user), binary
mode, passive data connection, and `REST <offset>` (RFC 3659) before `RETR` when resuming, so
a resumed attempt asks only for the missing bytes. A server that refuses `REST` gets the file
from its start and the bytes already delivered are dropped. Connect and read timeouts come
from the policy; retries live in the downloader as for every source.
"""

from __future__ import annotations

import ftplib
import socket
from collections.abc import Iterator
from functools import partial
from typing import Final
from urllib.parse import unquote

from sfupdate.errors import (
    DownloadError,
    RemoteFileNotFoundError,
    TransferInterruptedError,
)
from sfupdate.richos.client.sources import CHUNK, clean_path, server_location, skip_first

DEFAULT_PORT: Final = 21


class FtpSource:
    """`ftp://[user[:password]@]host[:port]/directory`: files are `directory/<path>`, relative
    to the login directory."""

    def __init__(self, url: str, connect_timeout: float = 5.0,
                 read_timeout: float = 10.0) -> None:
        parts, self.host, self.port, self.base = server_location(url, "ftp", "an FTP",
                                                                 DEFAULT_PORT)
        self.user = unquote(parts.username) if parts.username else "anonymous"
        self.password = unquote(parts.password) if parts.password else ""
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout

    def describe(self, path: str) -> str:
        return f"ftp://{self.host}:{self.port}/{self._name(path)}"  # never the password

    def _name(self, path: str) -> str:
        return "/".join([self.base, *clean_path(path)] if self.base else clean_path(path))

    def _login(self, path: str) -> ftplib.FTP:
        ftp = ftplib.FTP()
        try:
            ftp.connect(self.host, self.port, timeout=self.connect_timeout)
            ftp.timeout = self.read_timeout  # for the data connections from now on ...
            ftp.sock.settimeout(self.read_timeout)  # type: ignore[union-attr]  # ... and this one
            ftp.login(self.user, self.password)
            ftp.voidcmd("TYPE I")
        except (ftplib.Error, OSError, EOFError) as exc:
            ftp.close()
            raise self._error(exc, path) from None
        return ftp

    def size(self, path: str) -> int:
        ftp = self._login(path)
        try:
            size = ftp.size(self._name(path))
        except (ftplib.Error, OSError, EOFError) as exc:
            raise self._error(exc, path) from None
        finally:
            ftp.close()
        if size is None:
            raise DownloadError(f"{self.describe(path)}: the server gives no size")
        return size

    def open(self, path: str, offset: int = 0) -> Iterator[bytes]:
        ftp = self._login(path)
        try:
            yield from self._retrieve(ftp, path, offset)
        except (ftplib.Error, OSError, EOFError) as exc:
            raise self._error(exc, path) from None
        finally:
            ftp.close()

    def _retrieve(self, ftp: ftplib.FTP, path: str, offset: int) -> Iterator[bytes]:
        skip = 0
        try:
            conn = ftp.transfercmd(f"RETR {self._name(path)}", rest=offset or None)
        except ftplib.error_perm as exc:
            if not offset or not str(exc).startswith(("500", "501", "502", "504")):
                raise
            conn, skip = ftp.transfercmd(f"RETR {self._name(path)}"), offset  # no REST
        with conn:
            yield from skip_first(iter(partial(conn.recv, CHUNK), b""), skip)
        ftp.voidresp()  # 226: the server says the whole file was sent

    def _error(self, exc: ftplib.Error | OSError | EOFError, path: str) -> DownloadError:
        where = self.describe(path)
        if isinstance(exc, ftplib.error_perm):
            reply = str(exc)
            if reply.startswith("550"):
                return RemoteFileNotFoundError(f"{where}: not found on the server ({reply})")
            if reply.startswith("530"):
                return DownloadError(f"{where}: login refused ({reply})")
            return DownloadError(f"{where}: server refused: {reply}")
        if isinstance(exc, ftplib.error_temp):
            return TransferInterruptedError(f"{where}: server answered {exc}")
        if isinstance(exc, TimeoutError | socket.timeout):
            return TransferInterruptedError(f"{where}: server stalled: no data for "
                                            f"{self.read_timeout:g} s")
        if isinstance(exc, ConnectionRefusedError):
            return TransferInterruptedError(f"{where}: cannot connect (connection refused)")
        return TransferInterruptedError(f"{where}: connection dropped mid-transfer "
                                        f"({type(exc).__name__}: {exc})")
