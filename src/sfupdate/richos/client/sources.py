"""Where the client's bytes come from: the `Source` interface and its implementations.

A source maps a repository-relative path ("metadata/timestamp.json",
"targets/<sha256>.fw.sfui") to a stream of byte chunks. It does ONE attempt and says how it
ended; retries, resume, size caps and rate limits live in `sfupdate.richos.client.download`, so a
new transport (TFTP, a vendor FOTA API, ...) only implements `size` and `open`:

- `open(path, offset)` yields the file's bytes from `offset` on, in chunks of any size;
  it may stop early only by raising. It raises `RemoteFileNotFoundError` for a missing
  file, `TransferInterruptedError` for a failure worth retrying (the downloader then calls
  `open` again with the offset reached), and `DownloadError` for anything final.
- `size(path)` returns the file's length (for `update --from`), same errors.
- `describe(path)` names the file for messages (a URL, a file path).

Sources are untrusted plumbing: everything they return is checked against the signed index
or by the agent.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Final, Protocol
from urllib.parse import SplitResult, unquote, urlsplit

from sfupdate.errors import (
    DownloadError,
    RemoteFileNotFoundError,
    TransferInterruptedError,
    UsageError,
)

#: Bytes read at a time: the agent's largest chunk message (formats/ipc MAX_CHUNK).
CHUNK: Final = 1024 * 1024
RETRYABLE_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})


class Source(Protocol):
    """One transport to a repository tree (see the module docstring for the contract)."""

    def describe(self, path: str) -> str: ...

    def size(self, path: str) -> int: ...

    def open(self, path: str, offset: int = 0) -> Iterator[bytes]: ...


def clean_path(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") or "\0" in p for p in parts):
        raise DownloadError(f"refusing repository path {path!r}")
    return parts


class FileSource:
    """A repository or image on a mounted file system (SD card, USB stick, NFS...)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self, path: str) -> str:
        return str(self.root.joinpath(*clean_path(path)))

    def size(self, path: str) -> int:
        try:
            return os.stat(self.describe(path)).st_size
        except FileNotFoundError:
            raise RemoteFileNotFoundError(f"{self.describe(path)}: no such file") from None
        except OSError as exc:
            raise DownloadError(f"{self.describe(path)}: {exc.strerror}") from None

    def open(self, path: str, offset: int = 0) -> Iterator[bytes]:
        name = self.describe(path)
        with _open(name) as f:
            try:
                f.seek(offset)
                while chunk := f.read(CHUNK):
                    yield chunk
            except OSError as exc:
                raise TransferInterruptedError(f"{name}: read failed: {exc.strerror}") from None


def skip_first(chunks: Iterable[bytes], skip: int) -> Iterator[bytes]:
    """`chunks` without their first `skip` bytes (a server that ignored the resume offset
    sends the file from its start), and without empty chunks."""
    for chunk in chunks:
        if skip:
            dropped = min(skip, len(chunk))
            chunk, skip = chunk[dropped:], skip - dropped
        if chunk:
            yield chunk


def _open(name: str) -> BinaryIO:
    try:
        return open(name, "rb")
    except FileNotFoundError:
        raise RemoteFileNotFoundError(f"{name}: no such file") from None
    except OSError as exc:
        raise DownloadError(f"{name}: {exc.strerror}") from None


# --- which source a location names -----------------------------------------------------------

def server_location(url: str, scheme: str, what: str,
                    default_port: int) -> tuple[SplitResult, str, int, str]:
    """`scheme://[user[:password]@]host[:port]/directory` (what: "an FTP", "a TFTP"): the split
    URL, host, port and directory. UsageError for another scheme, no host or a bad port."""
    parts = urlsplit(url)
    if parts.scheme != scheme or not parts.hostname:
        raise UsageError(f"not {what} URL: {url!r} (expected {scheme}://host[:port]/dir)")
    try:
        port = parts.port or default_port
    except ValueError:
        raise UsageError(f"bad port in {url!r}") from None
    return parts, parts.hostname, port, unquote(parts.path).strip("/")


#: URL schemes the client speaks; a location without one is a local path.
SCHEMES: Final = ("http", "https", "tftp", "ftp", "file")


def open_source(location: str, connect_timeout: float = 5.0,
                read_timeout: float = 10.0) -> Source:
    """The source for a `--repo` location: `http(s)://`, `tftp://`, `ftp://`, `file://` or a
    local path. Any other scheme is a usage error (never read as a relative directory).
    Each transport's module is imported only when a location of its kind is used."""
    scheme, sep, rest = location.partition("://")
    if not sep:
        return FileSource(Path(location))
    scheme = scheme.lower()
    if scheme in ("http", "https"):
        from sfupdate.richos.client.http import HttpSource

        return HttpSource(location, connect_timeout, read_timeout)
    if scheme == "tftp":
        from sfupdate.richos.client.tftp import TftpSource

        return TftpSource(location, read_timeout)
    if scheme == "ftp":
        from sfupdate.richos.client.ftp import FtpSource

        return FtpSource(location, connect_timeout, read_timeout)
    if scheme == "file":
        host, _, path = rest.partition("/")
        if host not in ("", "localhost"):
            raise UsageError(f"{location!r}: a file:// URL must name a local path "
                             "(file:///path)")
        return FileSource(Path("/" + unquote(path)))
    raise UsageError(f"{location!r}: unknown URL scheme {scheme!r}; the client speaks "
                     + ", ".join(f"{s}://" for s in SCHEMES) + " and local paths")
