"""The progress callback every long operation accepts: (bytes done, bytes total)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int], None]


def no_progress(done: int, total: int) -> None:
    """The default: report nothing."""
