"""SHA-256 of a stream of chunks, computed on a second thread.

Streaming an image is read, hash, write, one chunk after another. hashlib releases the GIL for
large buffers, as reads and writes do, so hashing one chunk on a second thread while this one
reads or writes the next one makes the pipeline cost about what the slowest step costs instead
of the sum of all three. The chunks are hashed in the order given.
"""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Final

#: Chunks whose hashing may be pending at once (each is held until it is hashed).
DEPTH: Final = 2


class BackgroundHash:
    """A SHA-256 whose `update` returns before the chunk is hashed. Use it as a context
    manager (the thread stops on leaving it).

    After `update(chunk)` returns, at most `depth` chunks are still being hashed: a buffer
    handed over may be refilled once `depth` more updates were made after it (or after
    `digest()`). Hand over immutable bytes and this takes care of itself."""

    def __init__(self, depth: int = DEPTH) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._hash = hashlib.sha256()
        self._depth = depth
        self._pending: deque[Future[None]] = deque()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sfu-hash")

    def __enter__(self) -> BackgroundHash:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self._pending.append(self._thread.submit(self._hash.update, chunk))
        while len(self._pending) > self._depth:
            self._pending.popleft().result()

    def digest(self) -> bytes:
        """The digest of every chunk given so far (waits for them)."""
        while self._pending:
            self._pending.popleft().result()
        return self._hash.digest()
