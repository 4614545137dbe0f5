"""An install session's chunk messages seen as one byte stream with `.read(n)`, the shape
`EnvelopeReader` consumes. At most one chunk (one frame) is held at a time."""

from __future__ import annotations

from sfupdate.errors import IpcError
from sfupdate.formats.ipc.framing import Connection, PeerClosedError
from sfupdate.formats.ipc.messages import Chunk, InstallEnd, read_request


class ChunkStream:
    """Pulls `chunk` messages from the connection on demand; `install-end` is end of stream.

    Any other message, a malformed frame, a timeout or a closed connection raises IpcError:
    the install is then abandoned. With `limit` (the size the client announced) more bytes
    than announced is a protocol error too."""

    def __init__(self, conn: Connection, limit: int | None) -> None:
        self._conn = conn
        self._limit = limit
        self._chunk = b""
        self._pos = 0
        self.received = 0
        self.ended = False

    def read(self, n: int = -1) -> bytes:
        while self._pos >= len(self._chunk):
            if self.ended:
                return b""
            self._next()
        if n < 0:
            n = len(self._chunk) - self._pos
        if self._pos == 0 and n >= len(self._chunk):  # the common case: hand the frame over
            self._pos = len(self._chunk)
            return self._chunk
        data = self._chunk[self._pos:self._pos + n]
        self._pos += len(data)
        return data

    def _next(self) -> None:
        try:
            request = read_request(self._conn)
        except PeerClosedError:
            raise IpcError("the client abandoned the install session") from None
        if isinstance(request, InstallEnd):
            if self._limit is not None and self.received != self._limit:
                raise IpcError(f"install ended after {self.received} of the {self._limit} "
                               "bytes announced")
            self.ended = True
            return
        if not isinstance(request, Chunk):
            raise IpcError(f"'{request.op}' is not allowed inside an install session")
        self.received += len(request.data)
        if self._limit is not None and self.received > self._limit:
            raise IpcError(f"more than the {self._limit} bytes announced for this install")
        self._chunk, self._pos = request.data, 0
