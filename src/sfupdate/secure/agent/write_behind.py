"""Writing a slot behind the reader: the install's socket reads and hashing overlap its slot
writes.

The install thread reads a chunk from the socket and hashes it (both release the GIL for
large buffers) while a writer thread writes the previous ones (`os.pwrite` releases it too),
so an install takes about the longer of hashing and writing instead of their sum. At most
DEPTH chunks wait in between (at most 1 MiB each: memory stays flat); the writes keep their
order, so the board sees exactly the operations it would see from one thread (the power-cut
sweeps count the same ones). An error of the writer (a full disk, a power cut) reaches the
install thread at its next `write` or at `close`.
"""

from __future__ import annotations

import queue
import threading
from typing import Final

from sfupdate.secure.board.hal import SlotWriter

DEPTH: Final = 4


class WriteBehind:
    def __init__(self, writer: SlotWriter) -> None:
        self._writer = writer
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="slot-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:  # after an error, drain: the reader must never block
                try:
                    self._writer.write(chunk)
                except BaseException as exc:  # handed to the install thread
                    self._error = exc

    def write(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def close(self) -> None:
        """Wait until every queued chunk is written; raise the writer's error, if any."""
        self.stop()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Wait for the writer thread to end (the install failed: its error wins)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
