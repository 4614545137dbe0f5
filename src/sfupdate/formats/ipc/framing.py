"""Frames on a Unix stream socket: a 4-byte big-endian length, then one deterministic CBOR map.

Every frame is capped (`MAX_FRAME`) before a byte of its body is read, every read runs against
a deadline for the whole frame (a peer that trickles one byte at a time does not hold a reader
forever), and every body goes through the strict CBOR decoder. What comes out is a `dict`
with text keys; what the map must contain is `sfupdate.formats.ipc.messages`' business.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Sequence
from typing import Any, Final

from sfupdate.errors import FormatError, IpcError
from sfupdate.formats.sfui import cbor

#: Largest payload a single chunk message carries.
MAX_CHUNK: Final = 1024 * 1024
#: Largest frame body accepted: one full chunk plus room for the map around it.
MAX_FRAME: Final = MAX_CHUNK + 1024
#: Seconds a reader waits for one whole message (both sides' default).
DEFAULT_TIMEOUT: Final = 30.0
#: Messages are flat maps (status holds one nested level for the slots).
MAX_DEPTH: Final = 4

_HEADER: Final = struct.Struct(">I")
_MIN_BUFFER: Final = 4096


def decode_map(body: bytes | memoryview) -> dict[str, Any]:
    """Strictly decode a frame body that must be one deterministic CBOR map."""
    try:
        message = cbor.loads(bytes(body), "IPC message", max_depth=MAX_DEPTH)
    except FormatError as exc:
        raise IpcError(f"malformed message: {exc}") from None
    if not isinstance(message, dict):
        raise IpcError("malformed message: not a CBOR map")
    return message


class PeerClosedError(IpcError):
    """The peer closed the connection cleanly between two frames."""


class Connection:
    """One framed connection. Not thread-safe: one reader and one writer at a time."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self._buffer: memoryview | None = None

    def send(self, message: dict[str, Any]) -> None:
        """Encode and send one message; IpcError if the peer is gone or does not read."""
        self.send_parts([cbor.dumps(message)])

    def send_parts(self, parts: Sequence[bytes]) -> None:
        """Send one frame whose body is the concatenation of `parts` (already encoded), without
        copying them into one buffer."""
        length = sum(len(part) for part in parts)
        if length > MAX_FRAME:
            raise IpcError(f"message of {length} bytes exceeds the frame cap of {MAX_FRAME}")
        deadline = time.monotonic() + self.timeout
        try:
            for part in (_HEADER.pack(length), *parts):
                self.sock.settimeout(max(deadline - time.monotonic(), 1e-3))
                self.sock.sendall(part)
        except TimeoutError:
            raise IpcError(f"peer did not accept a message within {self.timeout:g} s") from None
        except OSError as exc:
            raise IpcError(f"connection lost while sending: {exc.strerror or exc}") from None

    def recv(self, timeout: float | None = None) -> dict[str, Any]:
        """Receive one message within `timeout` seconds (default: the connection's)."""
        return decode_map(self.recv_body(timeout))

    def recv_body(self, timeout: float | None = None) -> memoryview:
        """Receive one frame's body, not yet decoded. The view is into a buffer this connection
        reuses: it is valid until the next receive."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        header = self._read_exact(_HEADER.size, deadline, at_boundary=True)
        (length,) = _HEADER.unpack(header)
        if length > MAX_FRAME:
            raise IpcError(f"frame of {length} bytes exceeds the cap of {MAX_FRAME}")
        if length == 0:
            raise IpcError("empty frame")
        return self._read_exact(length, deadline, at_boundary=False)

    def readable(self) -> bool:
        """True if the peer has sent something (or closed) that has not been read yet."""
        ready, _, _ = select.select([self.sock], [], [], 0)
        return bool(ready)

    def close(self) -> None:
        self.sock.close()

    def _read_exact(self, n: int, deadline: float, at_boundary: bool) -> memoryview:
        if self._buffer is None or len(self._buffer) < n:
            # Grown on demand, then reused: a fresh 1 MiB buffer per frame costs more than the
            # hashing of its bytes, and one allocated up front would cost every connection,
            # even an idle one, a MiB.
            self._buffer = memoryview(bytearray(max(n, _MIN_BUFFER)))
        view = self._buffer[:n]
        got = 0
        while got < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise IpcError(f"no complete message within {self.timeout:g} s")
            self.sock.settimeout(remaining)
            try:
                count = self.sock.recv_into(view[got:])
            except TimeoutError:
                raise IpcError(f"no complete message within {self.timeout:g} s") from None
            except OSError as exc:
                raise IpcError(f"connection lost while receiving: {exc.strerror or exc}") from None
            if count == 0:
                if at_boundary and got == 0:
                    raise PeerClosedError("peer closed the connection")
                raise IpcError(f"connection closed inside a frame ({got} of {n} bytes)")
            got += count
        return view
