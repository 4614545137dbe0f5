"""Writing a signed file atomically: a temporary file beside it, renamed over it at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sfupdate.errors import UsageError


@contextmanager
def atomic_output(output: Path, firmware: Path | str) -> Iterator[Path]:
    """A temporary path beside `output` to write (and fsync) in; renamed over `output` when
    the block succeeds, removed when it fails. An OSError becomes a UsageError naming both
    (`firmware`: what is signed, a file or words such as "the components")."""
    tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot sign {firmware} into {output}: {exc.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
