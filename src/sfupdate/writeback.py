"""Writing a large file so that its final fsync is short: the kernel is asked to start writing
each complete window of the file back to the disk as soon as it is written (on Linux,
POSIX_FADV_DONTNEED starts the writeback of a range's dirty pages without waiting for it), so
the writing to disk overlaps the hashing and copying that produce the next bytes instead of
following them all. Durability is unchanged: only the final fsync promises anything."""

from __future__ import annotations

import os
from typing import Final

#: The bytes written before their writeback is started.
WINDOW: Final = 8 << 20


def start_writeback(fd: int, before: int, after: int) -> None:
    """Call after writing the file offsets [before, after) of `fd`: starts the writeback of
    the WINDOW-aligned window that write completed, if it completed one."""
    boundary = after - after % WINDOW
    if boundary > before and hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, boundary - WINDOW, WINDOW, os.POSIX_FADV_DONTNEED)
