"""The payload-decoding stage: an encoded payload's chunks in, the image's chunks out, in
bounded memory. The envelope reader hashes and counts what comes out against the signed
image-digest and image-size; this stage refuses early what can never match (an expansion past
the signed size, a corrupt frame, a delta without its base)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, cast

import zstandard

from sfupdate.errors import DeltaBaseError, PatchError, PayloadTooLongError
from sfupdate.formats.delta.patch import BaseImage, apply_patch
from sfupdate.formats.sfui.encoding import ZSTD_MAX_WINDOW, Compressed, Delta, PayloadEncoding


class _ChunkReader:
    """Chunks read as a stream with `.read(n)` (what zstandard's stream reader pulls from)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, n: int = -1) -> bytes:
        if not self._buffer:
            self._buffer = next(self._chunks, b"")
        if n < 0:
            n = len(self._buffer)
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data


def decoded(encoding: PayloadEncoding, raw: Iterator[bytes], size: int,
            base: BaseImage | None, chunk_size: int) -> Iterator[bytes]:
    """The image `raw` encodes, `size` bytes, in chunks of at most `chunk_size`."""
    if isinstance(encoding, Compressed):
        return _unzstd(raw, size, chunk_size)
    return _undelta(encoding, raw, size, base)


def _unzstd(raw: Iterator[bytes], size: int, chunk_size: int) -> Iterator[bytes]:
    """zstd frames decompressed in bounded steps: never more than `chunk_size` bytes at a
    time nor a window over ZSTD_MAX_WINDOW, and one byte past `size` is refused."""
    decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    stream = decompressor.stream_reader(cast(IO[bytes], _ChunkReader(raw)), read_size=chunk_size,
                                        read_across_frames=True)
    produced = 0
    try:
        while out := stream.read(min(chunk_size, size - produced + 1)):
            produced += len(out)
            if produced > size:
                raise PayloadTooLongError(f"the compressed payload expands past the signed "
                                          f"image-size {size}: refused as a decompression "
                                          "bomb")
            yield out
    except zstandard.ZstdError as exc:
        raise PatchError(f"the compressed payload does not decompress: {exc}") from None


def _undelta(delta: Delta, raw: Iterator[bytes], size: int,
             base: BaseImage | None) -> Iterator[bytes]:
    if base is None:
        raise DeltaBaseError(f"this delta rebuilds its image from base image "
                             f"sha256:{delta.base_digest.hex()} ({delta.base_size} bytes), "
                             "which was not given")
    if base.size != delta.base_size:
        raise DeltaBaseError(f"the delta's base image is {delta.base_size} bytes, the base "
                             f"given is {base.size}")
    return apply_patch(raw, base, size)
