"""Make SFD1 patches (the format: sfupdate.formats.delta.patch).

The matching is bsdiff's (`bsdiff4`, a suffix sort of the old image: the smallest patches on
executables, where code moves and pointers shift by constant amounts). Its three streams, the
records, the bytewise differences and the literal bytes, are cut into bounded blocks and each
block's streams are compressed on their own (LZMA2 by default, zstd on request), which is what
lets a device apply the patch reading it once, in flat memory. The author's side holds both
images in memory, as bsdiff needs.
"""

from __future__ import annotations

import array
import lzma
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

import bsdiff4.core  # type: ignore[import-untyped]
import zstandard

from sfupdate.formats.delta.patch import (
    BLOCK,
    CODEC_LZMA,
    CODEC_ZSTD,
    LZMA_FILTERS,
    MAGIC,
    MAX_RECORDS,
)

ZSTD_LEVEL: Final = 19
LZMA_PRESET: Final = 9 | lzma.PRESET_EXTREME


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _compress(data: bytes, codec: int) -> bytes:
    if not data:
        return b""
    if codec == CODEC_ZSTD:
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
    filters = [{**LZMA_FILTERS[0], "preset": LZMA_PRESET}]
    return lzma.compress(data, lzma.FORMAT_RAW, filters=filters)


@dataclass
class _Block:
    records: list[tuple[int, int, int]] = field(default_factory=list)
    out: int = 0
    diff: int = 0  # where this block's diff and extra bytes start in bsdiff's streams
    extra: int = 0
    diff_len: int = 0
    extra_len: int = 0


def _blocks(triples: Iterator[tuple[int, int, int]]) -> Iterator[_Block]:
    """bsdiff's records (add x, insert y, then seek z) as SFD1 records (seek z, then add x,
    insert y), cut so that no block produces more than BLOCK bytes or holds more than
    MAX_RECORDS records. A record cut in two seeks only before its first part; a bsdiff
    record that only seeks is folded into the next one's seek."""
    block = _Block()
    seek = 0
    for x, y, z in triples:
        while x or y:
            if block.out == BLOCK or len(block.records) == MAX_RECORDS:
                yield block
                block = _Block(diff=block.diff + block.diff_len,
                               extra=block.extra + block.extra_len)
            room = BLOCK - block.out
            tx = min(x, room)
            ty = min(y, room - tx) if tx == x else 0
            x, y = x - tx, y - ty
            block.records.append((tx, ty, seek))
            seek = 0
            block.out += tx + ty
            block.diff_len += tx
            block.extra_len += ty
        seek += z
    if block.records:
        yield block


def _triples(control: bytes) -> Iterator[tuple[int, int, int]]:
    decode = bsdiff4.core.decode_int64
    for i in range(0, len(control), 24):
        yield (decode(control[i:i + 8]), decode(control[i + 8:i + 16]),
               decode(control[i + 16:i + 24]))


def make_patch(old: bytes, new: bytes, codec: int = CODEC_LZMA) -> bytes:
    """The SFD1 patch that rebuilds `new` from `old`."""
    control, diff, extra = bsdiff4.core.diff(old, new)
    blocks = (encode_block(block.records, diff[block.diff:block.diff + block.diff_len],
                           extra[block.extra:block.extra + block.extra_len], codec)
              for block in _blocks(_triples(control)))
    return patch_bytes(blocks, codec)


def patch_bytes(blocks: Iterable[bytes], codec: int) -> bytes:
    """A whole patch: the magic and codec, the encoded blocks, the end mark."""
    return b"".join([MAGIC, bytes([codec]), *blocks, _uvarint(0)])


def encode_block(records: Sequence[tuple[int, int, int]], diff: bytes, extra: bytes,
                 codec: int, out: int | None = None) -> bytes:
    """One block: its records (x, y, z), diff and extra bytes. `out` (default: what the
    records produce) is the declared size; only a hostile patch makes them differ."""
    columns = [array.array("q", (record[i] for record in records)) for i in range(3)]
    if sys.byteorder != "little":
        for column in columns:
            column.byteswap()
    ctrl = b"".join(column.tobytes() for column in columns)
    sections = [_compress(ctrl, codec), _compress(diff, codec), _compress(extra, codec)]
    produced = sum(x + y for x, y, _ in records) if out is None else out
    return b"".join([_uvarint(produced), _uvarint(len(ctrl)),
                     *(_uvarint(len(s)) for s in sections), *sections])
