"""Stream helpers between an SFUI and a slot."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import TracebackType
from typing import Self

from sfupdate.errors import DeviceStateError, TooLargeError
from sfupdate.formats.sfui.cbor import Readable
from sfupdate.secure.board.power import Power
from sfupdate.writeback import start_writeback


class HeaderRecorder:
    """Wraps a stream and records the bytes read until `header()` is called: fed to an
    EnvelopeReader, that is exactly the SFUI header (envelope up to the payload bytes) to store
    with the slot. The reader bounds how much it reads before the payload."""

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self._recorded: bytearray | None = bytearray()

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        if self._recorded is not None:
            self._recorded += data
        return data

    def header(self) -> bytes:
        """The bytes read so far; recording stops."""
        if self._recorded is None:
            raise RuntimeError("the SFUI header was already taken")
        data, self._recorded = bytes(self._recorded), None
        return data


class ChainStream:
    """A read(n) stream over bytes followed by an iterator of chunks (header + slot content)."""

    def __init__(self, head: bytes, rest: Iterator[bytes]) -> None:
        self._buffer = head
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buffer) < n:
            chunk = next(self._rest, None)
            if chunk is None:
                break
            self._buffer += chunk
        if n < 0:
            n = len(self._buffer)
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data


class _ClosedOnExit:
    """A context manager whose exit calls `_release()`."""

    def _release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._release()


class PoweredSlotWriter(_ClosedOnExit):
    """Streams an image into an open file from offset 0, each write through the board's
    `Power` (so tests can cut power at any of them), never past `size`. A backend subclasses
    it for `finish()`, which makes the image and its SFUI header durable its own way; leaving
    the context without finish() aborts."""

    def __init__(self, power: Power, fd: int, size: int) -> None:
        self._power = power
        self._fd: int | None = fd
        self._size = size
        self._written = 0

    @property
    def written(self) -> int:
        return self._written

    def _open_fd(self) -> int:
        if self._fd is None:
            raise DeviceStateError("the slot writer is closed")
        return self._fd

    def write(self, chunk: bytes) -> None:
        fd = self._open_fd()
        if self._written + len(chunk) > self._size:
            raise TooLargeError(f"image exceeds the slot size ({self._size} bytes)")
        self._power.write(fd, chunk, self._written)
        start_writeback(fd, self._written, self._written + len(chunk))
        self._written += len(chunk)

    def abort(self) -> None:
        self._close()

    def _release(self) -> None:
        self.abort()

    def _close(self) -> None:
        if self._fd is not None:
            self._power.closed(self._fd)
            os.close(self._fd)
            self._fd = None


class SlotImageReader(_ClosedOnExit):
    """The first `size` bytes of a slot, read at random (positioned reads): the base image a
    delta update is rebuilt from. Closing it closes the slot."""

    def __init__(self, fd: int, size: int, name: str) -> None:
        self._fd: int | None = fd
        self._size = size
        self._name = name

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        if self._fd is None:
            raise DeviceStateError(f"slot {self._name} reader is closed")
        if offset < 0 or offset + length > self._size:
            raise DeviceStateError(f"read outside the image in slot {self._name}")
        data = os.pread(self._fd, length, offset)
        while len(data) < length:
            more = os.pread(self._fd, length - len(data), offset + len(data))
            if not more:
                raise DeviceStateError(f"slot {self._name} is shorter than its image")
            data += more
        return data

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
