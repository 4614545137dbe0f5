"""File locks the board backends share: the storage lock and the one-agent lock."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sfupdate.errors import AgentBusyError


class ReentrantFlock:
    """An exclusive flock on `path` across processes, re-entrant within this process.

    `hold` numbers the holds: it changes each time the flock is taken anew, so a value seen
    under the lock stays true while `hold` is the same (nobody else had the lock since)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._depth = 0
        self._fd: int | None = None
        self._thread_lock = threading.RLock()
        self.hold = 0

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._thread_lock:
            if self._depth == 0:
                fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._fd = fd
                self.hold += 1
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    os.close(self._fd)  # releases the flock
                    self._fd = None


@contextmanager
def agent_lock(path: Path, holder: str, board: str) -> Iterator[None]:
    """An flock on `path`, which names its holder (the lock dies with the process, so a
    killed agent leaves nothing to clean up)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 512, 0).decode(errors="replace").strip() or "unknown"
            raise AgentBusyError(f"board {board} is already served by another agent "
                                 f"({other})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        yield
    finally:
        os.close(fd)
