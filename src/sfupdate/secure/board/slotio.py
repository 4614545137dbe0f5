"""Stream helpers between an SFUI and a slot."""

from __future__ import annotations

from collections.abc import Iterator

from sfupdate.formats.sfui.cbor import Readable


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
