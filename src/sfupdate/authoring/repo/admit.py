"""Admitting an SFUI into a repository: verify it completely while copying it in, one pass.

`sfu repo add` refuses what no device would install, so a bad file never replaces or hides a
good one: the signature must verify with one of the repository's firmware keys, and the
payload must be integrated, complete, of the declared size and digest, with nothing after it.
The bytes are hashed and copied to a temporary file in `targets/` as the reader consumes them,
so memory stays flat and the file is read once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sfupdate.authoring.author.encoded import read_base_image
from sfupdate.errors import SfuError, UsageError
from sfupdate.formats.sfui import EnvelopeReader, ImageInfo, Text, TrustedKey
from sfupdate.formats.sfui.cbor import Readable
from sfupdate.formats.sfui.encoding import Delta


@dataclass(frozen=True)
class Admitted:
    """A verified SFUI, copied to `tmp` (rename it into place, or unlink it)."""

    tmp: Path
    length: int
    sha256: str
    info: ImageInfo
    text: Text | None
    delta: Delta | None  # a delta's base, which the payload was verified against


class _Copying:
    """A read-only stream that copies and hashes every byte read through it."""

    def __init__(self, src: Readable, dst: BinaryIO) -> None:
        self._src, self._dst = src, dst
        self.hasher = hashlib.sha256()
        self.length = 0

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        self._dst.write(data)
        self.hasher.update(data)
        self.length += len(data)
        return data


def admit(src: BinaryIO, where: Path, into: Path, trusted: Sequence[TrustedKey],
          base_image: Callable[[Delta], bytes]) -> Admitted:
    """Verify the SFUI read from `src` (named `where` in errors) with `trusted` and copy it
    into a new temporary file in the directory `into`; a delta is applied to the image
    `base_image` gives for it and the result checked like any payload. Refusals are the
    reader's own error classes (format 3, authenticity 4), their message prefixed with
    `where`."""
    fd, tmp = tempfile.mkstemp(dir=into, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            copying = _Copying(src, out)
            try:
                reader = EnvelopeReader(copying)
                verified = reader.authenticate(trusted)
                if verified.info.vendor_id is None or verified.info.class_id is None:
                    raise UsageError("the manifest names no UUID vendor-id or no class-id, so "
                                     "no device could select it")
                delta = verified.encoding if isinstance(verified.encoding, Delta) else None
                base = None if delta is None else MemoryImage(base_image(delta))
                for _ in reader.every_payload(base=base):
                    pass  # an encrypted payload: its length; its device checks its digest
            except SfuError as exc:
                raise type(exc)(f"{where}: {exc}") from None
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Admitted(Path(tmp), copying.length, copying.hasher.hexdigest(), verified.info,
                    verified.text, delta)


class MemoryImage:
    """An image held in memory, as a delta's base (the repository's side only)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    def read_at(self, offset: int, length: int) -> bytes:
        return self._data[offset:offset + length]


def image_of(sfui: Path, digest: bytes) -> bytes | None:
    """The image the stored SFUI carries if its manifest names `digest`, else None."""
    with open(sfui, "rb") as f:
        info = ImageInfo.from_manifest(EnvelopeReader(f).unverified_manifest())
    if info.image_digest is None or info.image_digest.value != digest:
        return None
    return read_base_image(sfui)
