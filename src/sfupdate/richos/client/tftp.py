"""A repository or image served over TFTP (RFC 1350, with RFC 2348/2349 options), by tftpy.

TFTP cannot start a transfer in the middle of a file, so a resumed attempt (`offset` > 0)
reads the file again from its start and drops the bytes already delivered; the downloader's
retries, size cap and minimum rate apply as for any source. tftpy's transfer loop is blocking:
it runs in a helper thread that hands each block over through a small bounded queue (memory
stays flat), and stops at its next block when the consumer goes away.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Final

import tftpy

from sfupdate.errors import (
    DownloadError,
    RemoteFileNotFoundError,
    TransferInterruptedError,
)
from sfupdate.richos.client.sources import clean_path, server_location

DEFAULT_PORT: Final = 69
BLKSIZE: Final = 1428  # fits one Ethernet frame with IP/UDP/TFTP headers
QUEUE_BLOCKS: Final = 64  # at most this many blocks wait for the consumer
#: How often tftpy re-sends its last packet after `read_timeout` without an answer before the
#: attempt fails (a lost UDP packet is normal; a silent server is an interrupted attempt).
RESENDS: Final = 2

logging.getLogger("tftpy").addHandler(logging.NullHandler())  # its errors become ours


class _Cancelled(Exception):
    """Raised in tftpy's loop when the consumer stopped reading."""


class _Pipe:
    """tftpy's output file: each written block goes to the consumer, or stops the loop."""

    def __init__(self) -> None:
        self.blocks: queue.Queue[bytes | BaseException | None] = queue.Queue(QUEUE_BLOCKS)
        self.cancelled = threading.Event()

    def write(self, data: bytes) -> None:
        self.put(bytes(data))

    def put(self, item: bytes | BaseException | None) -> None:
        while not self.cancelled.is_set():
            try:
                self.blocks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Cancelled


class TftpSource:
    """`tftp://host[:port]/directory`: files are requested as `directory/<path>`."""

    def __init__(self, url: str, read_timeout: float = 10.0) -> None:
        _, self.host, self.port, self.base = server_location(url, "tftp", "a TFTP",
                                                             DEFAULT_PORT)
        self.read_timeout = read_timeout

    def describe(self, path: str) -> str:
        return f"tftp://{self.host}:{self.port}/{self._name(path)}"

    def _name(self, path: str) -> str:
        return "/".join([self.base, *clean_path(path)] if self.base else clean_path(path))

    def size(self, path: str) -> int:
        """The size the server announces with the `tsize` option (RFC 2349)."""
        client, pipe, thread = self._start(path)
        try:
            first = pipe.blocks.get(timeout=self.read_timeout * (RESENDS + 1) + 1)
            if isinstance(first, BaseException):
                raise first
            tsize = client.context.options.get("tsize") if client.context else None
        finally:
            pipe.cancelled.set()
            thread.join()
        try:
            return int(tsize)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise DownloadError(f"{self.describe(path)}: the server does not announce the "
                                "file's size (TFTP tsize option)") from None

    def open(self, path: str, offset: int = 0) -> Iterator[bytes]:
        _, pipe, thread = self._start(path)
        skip = offset
        try:
            while True:
                try:
                    item = pipe.blocks.get(timeout=self.read_timeout * (RESENDS + 1) + 1)
                except queue.Empty:
                    raise TransferInterruptedError(
                        f"{self.describe(path)}: server stalled: no data for "
                        f"{self.read_timeout * (RESENDS + 1):g} s") from None
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                if skip:
                    dropped = min(skip, len(item))
                    item, skip = item[dropped:], skip - dropped
                if item:
                    yield item
        finally:
            pipe.cancelled.set()
            thread.join()

    def _start(self, path: str) -> tuple[tftpy.TftpClient, _Pipe, threading.Thread]:
        name = self._name(path)
        pipe = _Pipe()
        client = tftpy.TftpClient(self.host, self.port, {"blksize": BLKSIZE, "tsize": 0},
                                  flock=False)

        def run() -> None:
            try:
                client.download(name, pipe, timeout=self.read_timeout, retries=RESENDS + 1)
            except _Cancelled:
                return
            except tftpy.TftpFileNotFoundError:
                self._hand(pipe, RemoteFileNotFoundError(f"{self.describe(path)}: not found "
                                                         "on the server"))
            except tftpy.TftpTimeout:
                self._hand(pipe, TransferInterruptedError(
                    f"{self.describe(path)}: server stalled: no answer after "
                    f"{RESENDS} re-sends ({self.read_timeout:g} s each)"))
            except (tftpy.TftpException, OSError) as exc:
                self._hand(pipe, TransferInterruptedError(f"{self.describe(path)}: {exc}"))
            else:
                self._hand(pipe, None)

        thread = threading.Thread(target=run, name=f"tftp {name}", daemon=True)
        thread.start()
        return client, pipe, thread

    @staticmethod
    def _hand(pipe: _Pipe, item: BaseException | None) -> None:
        with contextlib.suppress(_Cancelled):
            pipe.put(item)
