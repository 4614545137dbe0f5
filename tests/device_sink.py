"""A real verifying sink standing in for the agent until the device side is merged.

It implements the two calls the client makes (`status()`, `install(chunks, size, progress)`)
by running the streamed SFUI through `EnvelopeReader` with a trusted key, applying vendor,
class and anti-rollback checks, and writing the payload to a file with fsync; only a fully
verified image is kept. It is a verifier, not a mock: a bad image makes it raise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sfupdate.errors import DowngradeError, WrongClassError, WrongVendorError
from sfupdate.progress import Progress
from sfupdate.sfui import EnvelopeReader, TrustedKey


@dataclass(frozen=True)
class SinkStatus:
    vendor_id: str
    class_id: str
    running_sequence: int
    rollback_floor: int


@dataclass(frozen=True)
class SinkInstalled:
    slot: str
    sequence: int
    digest: str


class ChunkStream:
    """`.read(n)` over an iterable of chunks (what the agent does with IPC frames)."""

    def __init__(self, chunks: Iterable[bytes], progress: Progress | None, size: int | None
                 ) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = bytearray()
        self._progress = progress
        self._size = size or 0
        self.consumed = 0

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buffer) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self.consumed += len(chunk)
            if self._progress:
                self._progress(self.consumed, self._size)
            self._buffer += chunk
        if n < 0:
            n = len(self._buffer)
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out


@dataclass
class VerifyingSink:
    trusted: TrustedKey
    out_dir: Path
    vendor_id: uuid.UUID
    class_id: uuid.UUID
    running_sequence: int = 1
    rollback_floor: int = 1
    installed: list[SinkInstalled] = field(default_factory=list)
    attempts: int = 0

    def status(self) -> SinkStatus:
        return SinkStatus(str(self.vendor_id), str(self.class_id), self.running_sequence,
                          self.rollback_floor)

    @property
    def slot_file(self) -> Path:
        return self.out_dir / "slot-b.bin"

    def install(self, chunks: Iterable[bytes], size: int | None = None,
                progress: Progress | None = None) -> SinkInstalled:
        self.attempts += 1
        stream = ChunkStream(chunks, progress, size)
        reader = EnvelopeReader(stream)  # type: ignore[arg-type]
        verified = reader.authenticate([self.trusted])
        info = verified.info
        if info.vendor_id != self.vendor_id:
            raise WrongVendorError(f"vendor-id is {info.vendor_id}")
        if info.class_id != self.class_id:
            raise WrongClassError(f"class-id is {info.class_id}")
        if info.sequence_number <= max(self.running_sequence, self.rollback_floor):
            raise DowngradeError(f"sequence {info.sequence_number} is not above "
                                 f"{max(self.running_sequence, self.rollback_floor)}")
        partial = self.out_dir / "slot-b.partial"
        try:
            with open(partial, "wb") as out:
                for chunk in reader.payload(64 * 1024):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, self.slot_file)
        finally:
            partial.unlink(missing_ok=True)
        assert info.image_digest is not None
        result = SinkInstalled("B", info.sequence_number, info.image_digest.value.hex())
        self.installed.append(result)
        return result
