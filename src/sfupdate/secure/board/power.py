"""The simulated board's power supply: every mutating file operation goes through `Power`, which
counts it and can cut power at a chosen one.

Model of a cut at operation N (1-based, counted per `Power` object, i.e. per opened board):
* a `write` at N is torn: only the first half of its bytes reaches the file;
* an `fsync`, `rename` or `unlink` at N does not happen;
* every byte written to a file since that file's last fsync is lost (reads back as zeros);
* then `PowerCut` is raised, and every later operation raises it again (the board is dead
  until it is opened afresh: the "reboot").
Renames and unlinks that completed are durable (a journaled file system's metadata).
With `exit_on_cut` the process exits at once instead (code POWER_CUT_EXIT): what the board
directory's `power-cut-at` knob does, so a separate process (agent, boot) can be cut too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Final

POWER_CUT_EXIT: Final = 75
POWER_CUT_ENV: Final = "SFU_SIM_POWER_CUT_AT"


class PowerCut(BaseException):
    """The simulated board lost power. A BaseException, so no `except Exception` survives it."""


class Power:
    def __init__(self, cut_at: int | None = None, exit_on_cut: bool = False) -> None:
        self.cut_at = cut_at
        self.exit_on_cut = exit_on_cut
        self.ops = 0  # mutating operations so far
        self.dead = False
        self._dirty: dict[int, list[tuple[int, int]]] = {}  # fd -> unsynced (offset, length)

    def _next(self) -> bool:
        """Count one operation; True if power fails at it."""
        if self.dead:
            raise PowerCut("the board has no power")
        self.ops += 1
        return self.ops == self.cut_at

    def _die(self, what: str) -> PowerCut:
        self.dead = True
        for fd, ranges in self._dirty.items():
            for offset, length in ranges:
                os.pwrite(fd, bytes(length), offset)
        self._dirty.clear()
        if self.exit_on_cut:
            sys.stderr.write(f"sfu: power cut at write {self.ops} ({what})\n")
            sys.stderr.flush()
            os._exit(POWER_CUT_EXIT)
        return PowerCut(f"power cut at write {self.ops} ({what})")

    # --- the mutating operations ----------------------------------------------------------

    def write(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        if self._next():
            torn = len(data) // 2
            os.pwrite(fd, data[:torn], offset)
            raise self._die(f"write of {len(data)} bytes torn after {torn}")
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], offset + done)
        self._dirty.setdefault(fd, []).append((offset, len(data)))

    def fsync(self, fd: int) -> None:
        if self._next():
            raise self._die("fsync")
        os.fsync(fd)
        self._dirty.pop(fd, None)

    def fsync_dir(self, path: Path) -> None:
        if self._next():
            raise self._die(f"fsync of directory {path.name}")
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: Path, dst: Path) -> None:
        if self._next():
            raise self._die(f"rename to {dst.name}")
        os.replace(src, dst)

    def unlink(self, path: Path) -> None:
        if self._next():
            raise self._die(f"unlink of {path.name}")
        path.unlink(missing_ok=True)

    def closed(self, fd: int) -> None:
        """Forget a file being closed. Unsynced bytes of a closed file are kept: every caller
        fsyncs before it relies on a file, and a cut during the same process still sees them."""
        self._dirty.pop(fd, None)

    # --- helpers built from the operations ------------------------------------------------

    def write_new(self, path: Path, data: bytes) -> None:
        """Create (or truncate) path, owner-only, with data, and fsync it."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self.write(fd, data, 0)
            self.fsync(fd)
        finally:
            self.closed(fd)
            os.close(fd)

    def write_file(self, path: Path, data: bytes) -> None:
        """Write-new + fsync file + rename + fsync directory."""
        tmp = path.with_name(f".{path.name}.tmp")
        self.write_new(tmp, data)
        self.rename(tmp, path)
        self.fsync_dir(path.parent)
